//! anteroom: a real-time virtual waiting room gateway.
//!
//! Fans join a show's queue and hold a WebSocket (SSE, then REST polling as
//! fallbacks); anteroom pushes their exact rank and the moment they are
//! admitted. Admission is event-driven: a slot frees on payment, session
//! expiry (a timer at the exact deadline), leaving, or abandonment, and each
//! of those events admits the next fan. See `docs/architecture.md` for one
//! promotion followed from the freeing event to the frame on the fan's socket.
//!
//! # Layout
//!
//! Imports flow one way: edges → services → backends; `domain` does no I/O.
//!
//! - [`startup`]: builds everything from [`config`], binds, serves HTTP/1
//!   connections (header-read timeout), tracks every task and watches the
//!   critical ones, stops in order (readiness off, drain, 1012, exit).
//! - [`config`]: the settings, each declared once with its default; layered
//!   TOML file → `ANTEROOM_*` env → flags.
//! - [`telemetry`]: logging, the metric catalogue ([`telemetry::metrics`],
//!   listed in docs/metrics.md) and what `/metrics` reads at each scrape.
//! - [`http`] (edge): routes, handlers, extractors, [`http::error::ApiError`],
//!   the generated OpenAPI and AsyncAPI documents ([`http::openapi`],
//!   [`http::asyncapi`]); rate limits ([`http::limits`]), the
//!   client's address behind proxies ([`http::proxies`]), the Origin check
//!   and CORS ([`http::origin`]), the access log, and the fan's page built
//!   into the binary ([`http::assets`]).
//! - [`push`] (edge): WebSocket and SSE endpoints and the per-connection push
//!   loop with its ordering and coalescing rules.
//! - [`queue`] (service): join, status, leave, the admission rules, ending a
//!   session ([`queue::QueueService::end_session`]), the admission event
//!   consumer, the deadlines and the live view's reports ([`queue::jobs`]),
//!   the node-local live view that computes ranks ([`queue::ranks`]) and
//!   wakes connections (a chunk at a time: [`queue::fanout`]), the node lease that lets survivors reap a dead
//!   node's connections and closed connections' batched detaches
//!   ([`queue::presence`]), the sale's lifecycle — the
//!   schedule and pre-queue, the fair opening, the admission rate, live
//!   operator changes, sold out — and how every node learns of it
//!   ([`queue::lifecycle`]; the pre-queue's order is drawn as fans join:
//!   [`store::drawn_place`]), the thread the start and the rate's
//!   promotions run on ([`queue::lane`]), and putting back a queue the
//!   store lost ([`queue::QueueService::rebuild`]; from memory, tickets and
//!   access tokens).
//! - [`sales`] (service): the seat map (layout, per-section availability
//!   bitmaps kept in place and versioned, deltas to admitted fans), seat holds (per-seat
//!   locks over database fencing), points, idempotent payments (and whether
//!   one ends the payer's session), and the outbox relay that publishes their
//!   events.
//! - [`auth`]: who a fan is (demo sign-in, or the ticketing site's JWT) and
//!   the Ed25519 admission tokens an origin verifies with the public JWKS.
//! - [`tokens`]: HMAC-signed demo user tokens and queue tickets (each bound
//!   to one spot).
//! - [`challenge`]: proof of work on join (ALTCHA): signed challenges, their
//!   check, and the record (Redis or in-process) that lets each solution
//!   admit one join.
//! - [`store`] (backend): the queue store (atomic primitives, and the
//!   shows' demand ranking kept in the same steps) and the
//!   database (users, shows, seats, holds, points, payments, the outbox),
//!   each with an embedded implementation; the database's backends only load
//!   and store around the domain's sale rules. Every Redis user shares one
//!   connection with a deadline that follows a Sentinel failover
//!   ([`store::redis_conn`]), and calls Lua scripts through
//!   [`store::script`].
//! - [`events`] (backend): the domain event bus.
//! - [`resilience`]: bounded failure at every backend: a circuit breaker per
//!   backend (Redis, database, Kafka producer), call deadlines, and the
//!   signal a recovered backend gives (the queue then re-checks its
//!   overdue deadlines).
//! - [`domain`]: ids, validated values, shows, the sale rules (holds,
//!   payments, credits: decided here, stored by the backends), events, pushed
//!   messages.
//!
//! Beside the library: `src/main.rs` (the gateway binary) and
//! `src/bin/anteroom-bench/` (the benchmark harness, which drives a gateway
//! process through its public API; docs/benchmarks.md).

pub mod auth;
pub mod challenge;
pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod push;
pub mod queue;
pub mod resilience;
pub mod sales;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tokens;
