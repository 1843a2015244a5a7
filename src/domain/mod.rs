//! Domain types: identifiers, validated values, shows, queue changes and the
//! messages pushed to fans. Nothing here does I/O, so every other layer can
//! depend on it.

mod event;
mod ids;
mod message;
mod show;
mod time;

pub use event::{DomainEvent, EventKind};
pub use ids::{SessionId, ShowId, UserId, Username, UsernameError};
pub use message::{PushMessage, QueueState, Removal};
pub use show::{NewShow, NewShowError, Show, ShowState};
pub use time::Timestamp;
