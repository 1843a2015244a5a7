//! Integration tests: the real application on port 0, driven by real HTTP,
//! WebSocket and SSE clients.

mod abuse;
mod bad_input;
mod breakers;
mod challenge;
mod concurrency;
mod contract;
mod expiry_abandon;
mod faults;
mod helpers;
mod identity;
mod lost_queue;
mod multi_node;
mod node_loss;
mod observability;
mod onsale;
mod operations;
mod push;
mod readiness;
mod redelivery;
mod redis_deadline;
mod sales;
mod seat_map;
mod shutdown;
mod startup;
mod verifiers;
