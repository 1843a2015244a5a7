//! The public show list.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::ApiJson;
use super::AppState;
use crate::domain::{Show, ShowState};
use crate::store::Counts;

#[derive(Debug, Serialize, ToSchema)]
pub struct ShowView {
    pub id: u64,
    pub title: String,
    /// When admission starts.
    pub starts_at: Option<DateTime<Utc>>,
    /// When the pre-queue opens (joins before `starts_at`, ordered at
    /// random at the start).
    pub prequeue_opens_at: Option<DateTime<Utc>>,
    /// Now: `scheduled`, `prequeue`, `open`, `paused`, `sold_out` or
    /// `closed`.
    pub state: ShowState,
    /// At most this many admissions in any minute; absent: capacity only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_rate_per_minute: Option<u32>,
    pub session_ttl_seconds: u64,
    pub abandon_grace_seconds: u64,
    /// Proof of work each join carries (ALTCHA's `maxnumber`); 0: none.
    pub challenge_cost: u32,
    pub queue: QueueSize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueSize {
    pub capacity: u32,
    pub active: u64,
    pub waiting: u64,
    pub prequeued: u64,
}

impl ShowView {
    pub fn new(show: Show, counts: Counts) -> Self {
        let state = show.state_now();
        Self {
            id: show.id.0,
            title: show.title,
            starts_at: show.starts_at,
            prequeue_opens_at: show.prequeue_opens_at,
            state,
            admission_rate_per_minute: show.admission_rate.map(|r| r.per_minute()),
            session_ttl_seconds: show.session_ttl.as_secs(),
            abandon_grace_seconds: show.abandon_grace.as_secs(),
            challenge_cost: show.challenge_cost.get(),
            queue: QueueSize {
                capacity: show.capacity,
                active: counts.active,
                waiting: counts.waiting,
                prequeued: counts.prequeued,
            },
        }
    }
}

/// Lists shows with the size of their queues.
#[utoipa::path(get, path = "/v1/shows", tag = "shows", operation_id = "list_shows",
    responses((status = 200, body = [ShowView])))]
pub async fn list(State(state): State<AppState>) -> Result<ApiJson<Vec<ShowView>>, ApiError> {
    let shows = state.queue().shows().await?;
    let mut out = Vec::with_capacity(shows.len());
    for show in shows {
        let counts = state.queue().counts(show.id).await?;
        out.push(ShowView::new(show, counts));
    }
    Ok(ApiJson(out))
}
