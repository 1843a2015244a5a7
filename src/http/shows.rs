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
    pub starts_at: Option<DateTime<Utc>>,
    pub state: ShowState,
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
}

impl ShowView {
    pub fn new(show: Show, counts: Counts) -> Self {
        Self {
            id: show.id.0,
            title: show.title,
            starts_at: show.starts_at,
            state: show.state,
            session_ttl_seconds: show.session_ttl.as_secs(),
            abandon_grace_seconds: show.abandon_grace.as_secs(),
            challenge_cost: show.challenge_cost.get(),
            queue: QueueSize {
                capacity: show.capacity,
                active: counts.active,
                waiting: counts.waiting,
            },
        }
    }
}

/// Lists shows with the size of their queues.
#[utoipa::path(get, path = "/v1/shows", responses((status = 200, body = [ShowView])))]
pub async fn list(State(state): State<AppState>) -> Result<ApiJson<Vec<ShowView>>, ApiError> {
    let shows = state.queue().shows().await?;
    let mut out = Vec::with_capacity(shows.len());
    for show in shows {
        let counts = state.queue().counts(show.id).await?;
        out.push(ShowView::new(show, counts));
    }
    Ok(ApiJson(out))
}
