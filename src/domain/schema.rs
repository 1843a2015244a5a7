//! The bounds of validated values as JSON Schema, for the OpenAPI document.
//!
//! Each `schema()` beside a parse function is built from the constants that
//! function checks, so the document's request schemas accept exactly what
//! the server accepts (the unit tests beside each parse function hold the
//! two together, and schemathesis checks the running gateway against the
//! document). What JSON Schema cannot say — a field bounded by another, a
//! limit on the sum of several — the parse functions still check, and the
//! document says in words.

use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr, Schema};

/// What `str::trim` removes (Unicode `White_Space`, [`char::is_whitespace`]),
/// as the body of a regex character class. Written as `\uXXXX` escapes,
/// which ECMAScript, Python and Rust regexes read alike.
pub const TRIMMED: &str =
    r"\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// An integer from `min` to `max`, both included.
pub fn integer(min: u64, max: u64) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min))
        .maximum(Some(max))
        .build()
}

/// Text that, trimmed of white space, is 1 to `max` characters.
pub fn trimmed_text(max: usize) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(trimmed_text_pattern(max)))
        .build()
}

/// The pattern of [`trimmed_text`]: white space, a first and (up to `max -
/// 2` characters later) a last character that are not white space, white
/// space.
pub fn trimmed_text_pattern(max: usize) -> String {
    let last = match max {
        0 | 1 => String::new(),
        _ => format!("(?:[\\s\\S]{{0,{}}}[^{TRIMMED}])?", max - 2),
    };
    format!("^[{TRIMMED}]*[^{TRIMMED}]{last}[{TRIMMED}]*$")
}

/// `schema`, or `null`: an optional field that accepts an explicit `null`.
pub fn or_null(mut schema: Object) -> Object {
    let mut types = match &schema.schema_type {
        SchemaType::Type(t) => vec![t.clone()],
        SchemaType::Array(ts) => ts.clone(),
        SchemaType::AnyValue => return schema,
    };
    if !types.contains(&Type::Null) {
        types.push(Type::Null);
    }
    schema.schema_type = SchemaType::from_iter(types);
    schema
}

/// A list of `min` to `max` items, each the component schema `item`.
pub fn list_of(item: &str, min: usize, max: usize, nullable: bool) -> RefOr<Schema> {
    let array = ArrayBuilder::new()
        .items(Ref::from_schema_name(item))
        .min_items(Some(min))
        .max_items(Some(max));
    let array = if nullable {
        array.schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
    } else {
        array
    };
    RefOr::T(Schema::Array(array.build()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The pattern of `schema`, compiled (Rust's regex reads `\uXXXX` as
    /// ECMAScript does).
    pub(crate) fn pattern_of(schema: &Object) -> regex::Regex {
        regex::Regex::new(schema.pattern.as_deref().expect("a pattern")).expect("compiles")
    }

    /// Whether `n` is within an integer schema's bounds.
    pub(crate) fn in_range(schema: &Object, n: u64) -> bool {
        let bound = |b: &Option<utoipa::Number>| match b {
            Some(utoipa::Number::UInt(u)) => *u as u64,
            _ => panic!("not an unsigned bound"),
        };
        (bound(&schema.minimum)..=bound(&schema.maximum)).contains(&n)
    }

    /// Strings that probe a trimmed, bounded text: every kind of white
    /// space, at each end and inside, and lengths around the bound.
    pub(crate) fn probes(max: usize) -> Vec<String> {
        let mut out = vec![String::new(), "a".into(), "a b".into(), "é".into()];
        for c in (0..=0x3000u32)
            .chain([0xFEFF, 0x180E])
            .filter_map(char::from_u32)
        {
            out.push(c.to_string());
            out.push(format!("{c}a"));
            out.push(format!("a{c}"));
            out.push(format!("a{c}b"));
        }
        for n in [max - 1, max, max + 1] {
            out.push("x".repeat(n));
            out.push(format!(" {} ", "x".repeat(n)));
            out.push(format!("é{}é", " ".repeat(n.saturating_sub(2))));
        }
        out
    }

    #[test]
    fn the_trimmed_class_is_what_trim_removes() {
        let class = regex::Regex::new(&format!("^[{TRIMMED}]$")).expect("compiles");
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            assert_eq!(
                class.is_match(c.encode_utf8(&mut [0; 4])),
                c.is_whitespace(),
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn trimmed_text_matches_exactly_what_trims_to_one_to_max_characters() {
        for max in [1, 2, 3, 32] {
            let pattern = pattern_of(&trimmed_text(max));
            for s in probes(max) {
                let n = s.trim().chars().count();
                assert_eq!(pattern.is_match(&s), (1..=max).contains(&n), "{max}: {s:?}");
            }
        }
    }

    #[test]
    fn or_null_adds_null() {
        let schema = or_null(integer(1, 2));
        assert!(schema.schema_type == SchemaType::from_iter([Type::Integer, Type::Null]));
        let twice = or_null(schema);
        assert!(twice.schema_type == SchemaType::from_iter([Type::Integer, Type::Null]));
    }
}
