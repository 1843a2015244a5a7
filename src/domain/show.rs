use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use super::{schema, ShowId, Timestamp};

/// Where a show's sale stands: what `GET /v1/shows` reports and what decides
/// whether a join is taken and whether anyone is admitted.
///
/// Only `Open`, `Paused`, `SoldOut` and `Closed` are stored (what the
/// operator or the last sale set); `Scheduled` and `Prequeue` follow from the
/// clock and the show's times ([`Show::state_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShowState {
    /// Before the pre-queue opens (or before `starts_at` without one): joins
    /// are refused.
    Scheduled,
    /// From `prequeue_opens_at` until `starts_at`: joins are taken, unranked,
    /// and put in a random order at the start.
    Prequeue,
    Open,
    /// Joins queue, nobody is admitted.
    Paused,
    /// Every seat is sold: joins are refused, the line is let go.
    SoldOut,
    /// Closed by the operator: joins are refused, the line is let go.
    Closed,
}

impl ShowState {
    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ShowState::Scheduled => "scheduled",
            ShowState::Prequeue => "prequeue",
            ShowState::Open => "open",
            ShowState::Paused => "paused",
            ShowState::SoldOut => "sold_out",
            ShowState::Closed => "closed",
        }
    }

    /// A stored state (`None` for one the clock decides, or an unknown name).
    pub fn stored(s: &str) -> Option<Self> {
        Some(match s {
            "open" => ShowState::Open,
            "paused" => ShowState::Paused,
            "sold_out" => ShowState::SoldOut,
            "closed" => ShowState::Closed,
            _ => return None,
        })
    }

    /// Whether the sale is over for good: nobody joins or waits any more.
    pub fn is_final(self) -> bool {
        matches!(self, ShowState::SoldOut | ShowState::Closed)
    }
}

/// A show on sale and the settings of its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Show {
    pub id: ShowId,
    pub title: String,
    /// When admission starts; joins before it are refused, or pre-queued
    /// from `prequeue_opens_at`.
    pub starts_at: Option<DateTime<Utc>>,
    /// When joins open before `starts_at`, unranked (always before
    /// `starts_at`; `None`: no pre-queue).
    pub prequeue_opens_at: Option<DateTime<Utc>>,
    /// The stored state: `Open`, `Paused`, `SoldOut` or `Closed`. What holds
    /// now is [`Show::state_at`].
    pub state: ShowState,
    /// How many fans may be active (admitted) at once.
    pub capacity: u32,
    /// At most this many admissions in any minute, on top of `capacity`.
    pub admission_rate: Option<AdmissionRate>,
    /// How long an admitted fan stays active before the session expires.
    pub session_ttl: Duration,
    /// How long a waiting fan may go without a live connection or a status
    /// poll before the spot is given up.
    pub abandon_grace: Duration,
    /// The proof of work a join must carry.
    pub challenge_cost: ChallengeCost,
    /// What the operator tells the show's fans now (`PATCH`), if anything.
    pub notice: Option<Notice>,
}

impl Show {
    /// The show's state at `now`: a final state holds; before `starts_at`
    /// the show is pre-queueing (from `prequeue_opens_at`) or scheduled;
    /// after it, open or paused as stored.
    pub fn state_at(&self, now: Timestamp) -> ShowState {
        if self.state.is_final() {
            return self.state;
        }
        match self.starts_at.map(Timestamp::from) {
            Some(start) if now < start => match self.prequeue_opens_at.map(Timestamp::from) {
                Some(opens) if opens <= now => ShowState::Prequeue,
                _ => ShowState::Scheduled,
            },
            _ => self.state,
        }
    }

    pub fn state_now(&self) -> ShowState {
        self.state_at(Timestamp::now())
    }

    /// The next moment the clock changes this show's state (the pre-queue
    /// opening, the start), if one is ahead of `now`.
    pub fn next_transition(&self, now: Timestamp) -> Option<Timestamp> {
        if self.state.is_final() {
            return None;
        }
        [self.prequeue_opens_at, self.starts_at]
            .into_iter()
            .flatten()
            .map(Timestamp::from)
            .find(|t| now < *t)
    }

    /// The show with `patch` applied, checked by the rules a new show is:
    /// `None` fields stay. The times can change only before the start (a
    /// line that is moving cannot go back to a pre-queue).
    pub fn patched(&self, patch: &ShowPatch, now: Timestamp) -> Result<Show, NewShowError> {
        let times_change = patch.starts_at.is_some() || patch.prequeue_opens_at.is_some();
        if times_change
            && !matches!(
                self.state_at(now),
                ShowState::Scheduled | ShowState::Prequeue
            )
        {
            return Err(NewShowError::AlreadyStarted);
        }
        let input = ShowInput {
            title: patch.title.clone().unwrap_or_else(|| self.title.clone()),
            starts_at: patch.starts_at.unwrap_or(self.starts_at),
            prequeue_opens_at: patch.prequeue_opens_at.unwrap_or(self.prequeue_opens_at),
            capacity: patch.capacity.unwrap_or(u64::from(self.capacity)),
            session_ttl_seconds: patch
                .session_ttl_seconds
                .unwrap_or(self.session_ttl.as_secs()),
            abandon_grace_seconds: Some(
                patch
                    .abandon_grace_seconds
                    .unwrap_or(self.abandon_grace.as_secs()),
            ),
            challenge_cost: Some(u64::from(self.challenge_cost.get())),
            admission_rate_per_minute: patch
                .admission_rate_per_minute
                .unwrap_or(self.admission_rate.map(|r| u64::from(r.per_minute()))),
        };
        let notice = match &patch.notice {
            Some(text) => Notice::parse(text.as_deref().unwrap_or(""))?,
            None => self.notice.clone(),
        };
        Ok(Show {
            notice,
            ..NewShow::parse(input)?.into_show(self.id, self.state)
        })
    }

    /// The stored state an operator's pause or resume leaves: refused once
    /// the sale is over.
    pub fn set_paused(&self, paused: bool) -> Result<ShowState, ShowState> {
        match self.state {
            s if s.is_final() => Err(s),
            _ if paused => Ok(ShowState::Paused),
            _ => Ok(ShowState::Open),
        }
    }
}

/// At most this many admissions in any minute (1 to 1,000,000), spaced
/// evenly: one every `60 s / per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionRate(u32);

impl AdmissionRate {
    pub const MAX: u32 = 1_000_000;

    pub fn new(per_minute: u64) -> Option<Self> {
        u32::try_from(per_minute)
            .ok()
            .filter(|r| (1..=Self::MAX).contains(r))
            .map(Self)
    }

    pub fn per_minute(self) -> u32 {
        self.0
    }
}

/// An operator's change to a show (`PATCH`): `None` leaves a field as it is;
/// `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShowPatch {
    pub title: Option<String>,
    pub capacity: Option<u64>,
    pub session_ttl_seconds: Option<u64>,
    pub abandon_grace_seconds: Option<u64>,
    pub admission_rate_per_minute: Option<Option<u64>>,
    pub prequeue_opens_at: Option<Option<DateTime<Utc>>>,
    pub starts_at: Option<Option<DateTime<Utc>>>,
    /// A new notice; `Some(None)` or an empty text clears it.
    pub notice: Option<Option<String>>,
}

/// An operator's message to a show's fans ("Gates open at 18:00"): 1 to
/// [`Notice::MAX_CHARS`] characters after trimming, no control characters
/// but line breaks. Shown by the fan's page as it is, never as markup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice(std::sync::Arc<str>);

impl Notice {
    pub const MAX_CHARS: usize = 500;

    /// `None` for an empty (or blank) text: no notice.
    pub fn parse(text: &str) -> Result<Option<Self>, NewShowError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let bad = |c: char| c.is_control() && c != '\n';
        if text.chars().count() > Self::MAX_CHARS || text.chars().any(bad) {
            return Err(NewShowError::Notice {
                max: Self::MAX_CHARS,
            });
        }
        Ok(Some(Self(text.into())))
    }

    /// The text [`Self::parse`] takes, as JSON Schema: blank (which clears
    /// the notice), or 1 to [`Self::MAX_CHARS`] characters after trimming,
    /// with no control character but line breaks.
    pub fn schema() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(Self::pattern()))
            .build()
    }

    fn pattern() -> String {
        use super::schema::TRIMMED;
        // `char::is_control`: Unicode's Cc.
        const CONTROL: &str = r"\u0000-\u001F\u007F-\u009F";
        let edge = format!("[^{TRIMMED}{CONTROL}]");
        let inner = r"[^\u0000-\u0009\u000B-\u001F\u007F-\u009F]";
        let last = format!("(?:{inner}{{0,{}}}{edge})?", Self::MAX_CHARS - 2);
        format!("^[{TRIMMED}]*(?:{edge}{last})?[{TRIMMED}]*$")
    }

    /// A notice read back from storage, as stored.
    pub fn stored(text: &str) -> Option<Self> {
        (!text.is_empty()).then(|| Self(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, shared (every connection of the show pushes the same).
    pub fn text(&self) -> std::sync::Arc<str> {
        self.0.clone()
    }
}

/// The proof of work a show asks of each join: ALTCHA's `maxnumber`, the
/// largest number a fan may have to try (half of it on average). 0, the
/// default, asks for none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChallengeCost(u32);

impl ChallengeCost {
    pub const OFF: Self = Self(0);
    pub const MAX: u32 = 10_000_000;

    /// `None` above [`ChallengeCost::MAX`].
    pub fn new(cost: u64) -> Option<Self> {
        u32::try_from(cost)
            .ok()
            .filter(|c| *c <= Self::MAX)
            .map(Self)
    }

    /// A cost read back from storage. The schema keeps it within bounds;
    /// one above would be read as the largest, never as none.
    pub fn stored(cost: u32) -> Self {
        Self(cost.min(Self::MAX))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// Whether a join must carry a solved challenge.
    pub fn is_required(self) -> bool {
        self.0 > 0
    }
}

/// A show's settings as an operator sends them, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShowInput {
    pub title: String,
    pub starts_at: Option<DateTime<Utc>>,
    pub prequeue_opens_at: Option<DateTime<Utc>>,
    pub capacity: u64,
    pub session_ttl_seconds: u64,
    pub abandon_grace_seconds: Option<u64>,
    pub challenge_cost: Option<u64>,
    pub admission_rate_per_minute: Option<u64>,
}

/// A validated request to create a show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewShow {
    pub title: String,
    pub starts_at: Option<DateTime<Utc>>,
    pub prequeue_opens_at: Option<DateTime<Utc>>,
    pub capacity: u32,
    pub admission_rate: Option<AdmissionRate>,
    pub session_ttl: Duration,
    pub abandon_grace: Duration,
    pub challenge_cost: ChallengeCost,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NewShowError {
    #[error("title must be 1 to {max} characters")]
    Title { max: usize },
    #[error("capacity must be between 1 and {max}")]
    Capacity { max: u32 },
    #[error("session_ttl_seconds must be between 1 and {max}")]
    SessionTtl { max: u64 },
    #[error("abandon_grace_seconds must be between 1 and {max}")]
    AbandonGrace { max: u64 },
    #[error("challenge_cost must be between 0 (no proof of work) and {max}")]
    ChallengeCost { max: u32 },
    #[error("admission_rate_per_minute must be between 1 and {max}, or null for none")]
    AdmissionRate { max: u32 },
    #[error("prequeue_opens_at needs a starts_at after it")]
    Prequeue,
    #[error("the show has started: starts_at and prequeue_opens_at can no longer change")]
    AlreadyStarted,
    #[error("notice must be at most {max} characters, with no control characters but line breaks (empty or null clears it)")]
    Notice { max: usize },
}

impl NewShow {
    pub const MAX_TITLE: usize = 200;
    pub const MAX_CAPACITY: u32 = 1_000_000;
    pub const MAX_TTL_SECS: u64 = 24 * 3600;
    pub const MAX_GRACE_SECS: u64 = 3600;
    pub const DEFAULT_GRACE_SECS: u64 = 60;

    pub fn parse(input: ShowInput) -> Result<Self, NewShowError> {
        let title = input.title.trim();
        if title.is_empty() || title.chars().count() > Self::MAX_TITLE {
            return Err(NewShowError::Title {
                max: Self::MAX_TITLE,
            });
        }
        let capacity = u32::try_from(input.capacity)
            .ok()
            .filter(|c| (1..=Self::MAX_CAPACITY).contains(c))
            .ok_or(NewShowError::Capacity {
                max: Self::MAX_CAPACITY,
            })?;
        if !(1..=Self::MAX_TTL_SECS).contains(&input.session_ttl_seconds) {
            return Err(NewShowError::SessionTtl {
                max: Self::MAX_TTL_SECS,
            });
        }
        let grace = input
            .abandon_grace_seconds
            .unwrap_or(Self::DEFAULT_GRACE_SECS);
        if !(1..=Self::MAX_GRACE_SECS).contains(&grace) {
            return Err(NewShowError::AbandonGrace {
                max: Self::MAX_GRACE_SECS,
            });
        }
        let challenge_cost = match input.challenge_cost {
            None => ChallengeCost::OFF,
            Some(cost) => ChallengeCost::new(cost).ok_or(NewShowError::ChallengeCost {
                max: ChallengeCost::MAX,
            })?,
        };
        let admission_rate = match input.admission_rate_per_minute {
            None => None,
            Some(rate) => Some(AdmissionRate::new(rate).ok_or(NewShowError::AdmissionRate {
                max: AdmissionRate::MAX,
            })?),
        };
        match (input.prequeue_opens_at, input.starts_at) {
            (Some(opens), Some(start)) if opens < start => {}
            (Some(_), _) => return Err(NewShowError::Prequeue),
            (None, _) => {}
        }
        Ok(Self {
            title: title.to_owned(),
            starts_at: input.starts_at,
            prequeue_opens_at: input.prequeue_opens_at,
            capacity,
            admission_rate,
            session_ttl: Duration::from_secs(input.session_ttl_seconds),
            abandon_grace: Duration::from_secs(grace),
            challenge_cost,
        })
    }

    /// The show stored under `id`, in `state`.
    pub fn into_show(self, id: ShowId, state: ShowState) -> Show {
        Show {
            id,
            state,
            title: self.title,
            starts_at: self.starts_at,
            prequeue_opens_at: self.prequeue_opens_at,
            capacity: self.capacity,
            admission_rate: self.admission_rate,
            session_ttl: self.session_ttl,
            abandon_grace: self.abandon_grace,
            challenge_cost: self.challenge_cost,
            notice: None,
        }
    }

    /// A show open at once with no proof of work or rate (demo shows, tests).
    pub fn simple(
        title: &str,
        capacity: u64,
        session_ttl_seconds: u64,
    ) -> Result<Self, NewShowError> {
        Self::parse(ShowInput {
            title: title.to_owned(),
            capacity,
            session_ttl_seconds,
            ..ShowInput::default()
        })
    }

    /// The bounds [`NewShow::parse`] checks on the title, as JSON Schema.
    pub fn title_schema() -> Object {
        schema::trimmed_text(Self::MAX_TITLE)
    }

    /// The bounds [`NewShow::parse`] checks on the capacity.
    pub fn capacity_schema() -> Object {
        schema::integer(1, Self::MAX_CAPACITY.into())
    }

    /// The bounds [`NewShow::parse`] checks on the session length.
    pub fn session_ttl_schema() -> Object {
        schema::integer(1, Self::MAX_TTL_SECS)
    }

    /// The bounds [`NewShow::parse`] checks on the abandonment grace.
    pub fn abandon_grace_schema() -> Object {
        schema::integer(1, Self::MAX_GRACE_SECS)
    }
}

impl AdmissionRate {
    /// The bounds [`AdmissionRate::new`] checks, as JSON Schema.
    pub fn schema() -> Object {
        schema::integer(1, Self::MAX.into())
    }
}

impl ChallengeCost {
    /// The bounds [`ChallengeCost::new`] checks, as JSON Schema.
    pub fn schema() -> Object {
        schema::integer(0, Self::MAX.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::schema::tests::{in_range, pattern_of, probes};

    #[test]
    fn the_notice_schema_accepts_exactly_what_parse_does() {
        let pattern = pattern_of(&Notice::schema());
        let mut texts = probes(Notice::MAX_CHARS);
        texts.extend([
            "line one\nline two".to_owned(),
            " \t\r\n ".to_owned(),
            format!("{}\n", "x".repeat(Notice::MAX_CHARS)),
            format!("a{}b", " ".repeat(Notice::MAX_CHARS)),
        ]);
        for text in texts {
            assert_eq!(
                pattern.is_match(&text),
                Notice::parse(&text).is_ok(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_schemas_accept_exactly_what_parse_does() {
        let numbers = [
            0, 1, 2, 59, 60, 3_600, 3_601, 86_400, 86_401, 1_000_000, 1_000_001,
        ]
        .into_iter()
        .chain([10_000_000, 10_000_001, u64::from(u32::MAX) + 1, u64::MAX]);
        for n in numbers {
            let parses = |input: ShowInput| NewShow::parse(input).is_ok();
            let field = |schema: Object, input: ShowInput| (n, in_range(&schema, n), parses(input));
            for (n, schema_says, parse_says) in [
                field(NewShow::capacity_schema(), input(n, 60)),
                field(NewShow::session_ttl_schema(), input(3, n)),
                field(
                    NewShow::abandon_grace_schema(),
                    ShowInput {
                        abandon_grace_seconds: Some(n),
                        ..input(3, 60)
                    },
                ),
                field(
                    ChallengeCost::schema(),
                    ShowInput {
                        challenge_cost: Some(n),
                        ..input(3, 60)
                    },
                ),
                field(
                    AdmissionRate::schema(),
                    ShowInput {
                        admission_rate_per_minute: Some(n),
                        ..input(3, 60)
                    },
                ),
            ] {
                assert_eq!(schema_says, parse_says, "{n}");
            }
        }
        let title = pattern_of(&NewShow::title_schema());
        for s in probes(NewShow::MAX_TITLE) {
            let parses = NewShow::parse(ShowInput {
                title: s.clone(),
                ..input(3, 60)
            })
            .is_ok();
            assert_eq!(title.is_match(&s), parses, "{s:?}");
        }
    }

    fn input(capacity: u64, ttl: u64) -> ShowInput {
        ShowInput {
            title: "Aurora".into(),
            capacity,
            session_ttl_seconds: ttl,
            ..ShowInput::default()
        }
    }

    #[test]
    fn new_show_bounds() {
        assert!(NewShow::parse(input(3, 60)).is_ok());
        assert_eq!(
            NewShow::parse(input(3, 60)).map(|s| s.abandon_grace),
            Ok(Duration::from_secs(60))
        );
        let blank = ShowInput {
            title: " ".into(),
            ..input(3, 60)
        };
        assert_eq!(NewShow::parse(blank), Err(NewShowError::Title { max: 200 }));
        for bad in [0, u64::MAX] {
            assert!(matches!(
                NewShow::parse(input(bad, 60)),
                Err(NewShowError::Capacity { .. })
            ));
        }
        assert!(matches!(
            NewShow::parse(input(1, 0)),
            Err(NewShowError::SessionTtl { .. })
        ));
        let no_grace = ShowInput {
            abandon_grace_seconds: Some(0),
            ..input(1, 10)
        };
        assert!(matches!(
            NewShow::parse(no_grace),
            Err(NewShowError::AbandonGrace { .. })
        ));
        for (rate, ok) in [(0, false), (1, true), (1_000_000, true), (1_000_001, false)] {
            let with_rate = ShowInput {
                admission_rate_per_minute: Some(rate),
                ..input(1, 10)
            };
            assert_eq!(NewShow::parse(with_rate).is_ok(), ok, "rate {rate}");
        }
    }

    #[test]
    fn challenge_cost_bounds() {
        let cost = |c| {
            NewShow::parse(ShowInput {
                challenge_cost: c,
                ..input(1, 10)
            })
            .map(|s| s.challenge_cost)
        };
        assert_eq!(cost(None), Ok(ChallengeCost::OFF));
        assert!(!ChallengeCost::OFF.is_required());
        assert_eq!(cost(Some(0)), Ok(ChallengeCost::OFF));
        assert_eq!(
            cost(Some(10_000_000)).map(ChallengeCost::get),
            Ok(10_000_000)
        );
        assert!(cost(Some(1)).is_ok_and(ChallengeCost::is_required));
        assert_eq!(ChallengeCost::stored(u32::MAX).get(), ChallengeCost::MAX);
        for too_much in [10_000_001, u64::from(u32::MAX) + 1, u64::MAX] {
            assert_eq!(
                cost(Some(too_much)),
                Err(NewShowError::ChallengeCost { max: 10_000_000 })
            );
        }
    }

    fn at(ms: i64) -> Option<DateTime<Utc>> {
        Some(Timestamp(ms).to_datetime())
    }

    fn show(prequeue: Option<DateTime<Utc>>, start: Option<DateTime<Utc>>) -> Show {
        NewShow::parse(ShowInput {
            prequeue_opens_at: prequeue,
            starts_at: start,
            ..input(2, 60)
        })
        .expect("valid")
        .into_show(ShowId(1), ShowState::Open)
    }

    #[test]
    fn the_clock_moves_a_scheduled_show_through_its_states() {
        let s = show(at(1_000), at(2_000));
        assert_eq!(s.state_at(Timestamp(999)), ShowState::Scheduled);
        assert_eq!(s.state_at(Timestamp(1_000)), ShowState::Prequeue);
        assert_eq!(s.state_at(Timestamp(1_999)), ShowState::Prequeue);
        assert_eq!(s.state_at(Timestamp(2_000)), ShowState::Open);
        assert_eq!(s.next_transition(Timestamp(0)), Some(Timestamp(1_000)));
        assert_eq!(s.next_transition(Timestamp(1_500)), Some(Timestamp(2_000)));
        assert_eq!(s.next_transition(Timestamp(2_000)), None);
        // No pre-queue: scheduled until the start.
        let s = show(None, at(2_000));
        assert_eq!(s.state_at(Timestamp(1_500)), ShowState::Scheduled);
        // A paused show pauses only once it has started; a final state holds
        // whatever the clock says.
        let paused = Show {
            state: ShowState::Paused,
            ..show(at(1_000), at(2_000))
        };
        assert_eq!(paused.state_at(Timestamp(1_500)), ShowState::Prequeue);
        assert_eq!(paused.state_at(Timestamp(2_500)), ShowState::Paused);
        let closed = Show {
            state: ShowState::Closed,
            ..paused
        };
        assert_eq!(closed.state_at(Timestamp(0)), ShowState::Closed);
        assert_eq!(closed.next_transition(Timestamp(0)), None);
        assert_eq!(closed.set_paused(false), Err(ShowState::Closed));
        // The pre-queue must open before the start.
        for (p, st) in [(at(2_000), at(2_000)), (at(1_000), None)] {
            let bad = ShowInput {
                prequeue_opens_at: p,
                starts_at: st,
                ..input(2, 60)
            };
            assert_eq!(NewShow::parse(bad), Err(NewShowError::Prequeue));
        }
    }

    #[test]
    fn a_patch_is_checked_like_a_new_show() {
        let s = show(at(1_000), at(2_000));
        let patch = ShowPatch {
            capacity: Some(5),
            admission_rate_per_minute: Some(Some(60)),
            starts_at: Some(at(3_000)),
            ..ShowPatch::default()
        };
        let p = s.patched(&patch, Timestamp(1_500)).expect("valid");
        assert_eq!(p.capacity, 5);
        assert_eq!(p.admission_rate.map(AdmissionRate::per_minute), Some(60));
        assert_eq!(p.starts_at, at(3_000));
        assert_eq!(p.title, s.title);
        // Invalid values change nothing.
        let bad = ShowPatch {
            capacity: Some(0),
            ..ShowPatch::default()
        };
        assert!(matches!(
            s.patched(&bad, Timestamp(0)),
            Err(NewShowError::Capacity { .. })
        ));
        // Clearing the rate; the times are fixed once the show started.
        let clear = ShowPatch {
            admission_rate_per_minute: Some(None),
            ..ShowPatch::default()
        };
        assert_eq!(
            p.patched(&clear, Timestamp(9_000))
                .map(|s| s.admission_rate),
            Ok(None)
        );
        assert_eq!(
            s.patched(&patch, Timestamp(2_000)),
            Err(NewShowError::AlreadyStarted)
        );
    }

    #[test]
    fn a_notice_is_set_kept_and_cleared_by_patches() {
        let s = show(None, None);
        let set = |text: Option<&str>| ShowPatch {
            notice: Some(text.map(str::to_owned)),
            ..ShowPatch::default()
        };
        let with = s
            .patched(
                &set(Some("  Gates open at 18:00\n게이트 오픈  ")),
                Timestamp(0),
            )
            .expect("valid");
        assert_eq!(
            with.notice.as_ref().map(Notice::as_str),
            Some("Gates open at 18:00\n게이트 오픈")
        );
        // Another change keeps it; an empty text or null clears it.
        let kept = with
            .patched(
                &ShowPatch {
                    capacity: Some(4),
                    ..ShowPatch::default()
                },
                Timestamp(0),
            )
            .expect("valid");
        assert_eq!(kept.notice, with.notice);
        for clear in [set(None), set(Some("")), set(Some("   "))] {
            assert_eq!(
                with.patched(&clear, Timestamp(0)).map(|s| s.notice),
                Ok(None)
            );
        }
        let longest = "가".repeat(Notice::MAX_CHARS);
        assert!(s.patched(&set(Some(&longest)), Timestamp(0)).is_ok());
        for bad in [format!("{longest}가"), "bell\u{7}".to_owned()] {
            assert_eq!(
                s.patched(&set(Some(&bad)), Timestamp(0)),
                Err(NewShowError::Notice { max: 500 })
            );
        }
    }
}
