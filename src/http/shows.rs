//! The public show list, by id or busiest first.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::ApiJson;
use super::AppState;
use crate::domain::{Show, ShowId, ShowState};
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

/// How the list is ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    /// By id, oldest show first.
    #[default]
    Id,
    /// Busiest first: live demand (waiting + pre-queued + active), from the
    /// queue store's demand ranking; equal demand by id.
    Demand,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `id` (the default) or `demand`.
    #[serde(default)]
    #[param(inline)]
    pub sort: Sort,
}

/// Lists shows with the size of their queues.
#[utoipa::path(get, path = "/v1/shows", tag = "shows", operation_id = "list_shows", params(ListParams),
    responses((status = 200, body = [ShowView]),
        (status = 400, description = "`invalid_query`: an unknown `sort`")))]
pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<ApiJson<Vec<ShowView>>, ApiError> {
    let Query(params) = params?;
    let mut shows = state.queue().shows().await?;
    shows.sort_by_key(|show| show.id);
    if params.sort == Sort::Demand {
        let ranked: HashMap<ShowId, usize> = state
            .queue()
            .demand()
            .await?
            .into_iter()
            .enumerate()
            .map(|(place, (show, _))| (show, place))
            .collect();
        // Stable: the shows with no demand keep their id order, last.
        shows.sort_by_key(|show| ranked.get(&show.id).copied().unwrap_or(usize::MAX));
    }
    let mut out = Vec::with_capacity(shows.len());
    for show in shows {
        let counts = state.queue().counts(show.id).await?;
        out.push(ShowView::new(show, counts));
    }
    Ok(ApiJson(out))
}
