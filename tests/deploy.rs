//! The deployment files set only settings the gateway actually reads.

use std::collections::BTreeSet;

use clap::CommandFactory;

/// `ANTEROOM_*` names in a file (variables, not prose mentioning a prefix).
fn anteroom_vars(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("ANTEROOM_") {
        let start = i + pos;
        let mut end = start + "ANTEROOM_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_uppercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        let name = text[start..end].trim_end_matches('_');
        if name.len() > "ANTEROOM_".len() {
            out.insert(name.to_owned());
        }
        i = end;
    }
    out
}

fn read(path: &str) -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_owned() + path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn deployment_files_use_only_variables_the_gateway_reads() {
    // The documented names: the short ones and those clap reads (ANTEROOM_CONFIG).
    let command = anteroom::config::Cli::command();
    let known: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .chain(
            anteroom::config::ENV_NAMES
                .iter()
                .map(|(name, _)| (*name).to_owned()),
        )
        .collect();
    assert!(known.contains("ANTEROOM_REDIS_URL"), "{known:?}");

    for file in ["docker-compose.yml", "Dockerfile"] {
        let used = anteroom_vars(&read(file));
        assert!(!used.is_empty(), "{file} sets no ANTEROOM_ variable");
        let unknown: Vec<&String> = used.difference(&known).collect();
        assert!(
            unknown.is_empty(),
            "{file} sets variables the gateway does not read: {unknown:?}"
        );
    }
    // The compose file wires every backend, so its gateways share a queue.
    let compose = anteroom_vars(&read("docker-compose.yml"));
    for needed in [
        "ANTEROOM_REDIS_URL",
        "ANTEROOM_DATABASE_URL",
        "ANTEROOM_KAFKA_BROKERS",
        "ANTEROOM_TICKET_SECRET",
    ] {
        assert!(
            compose.contains(needed),
            "docker-compose.yml does not set {needed}"
        );
    }
}

#[test]
fn the_variable_scan_finds_names_and_only_names() {
    let found =
        anteroom_vars("ANTEROOM_LISTEN: x\n# see ANTEROOM_* below\nfoo=${ANTEROOM_REDIS_URL}");
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["ANTEROOM_LISTEN", "ANTEROOM_REDIS_URL"]
    );
}
