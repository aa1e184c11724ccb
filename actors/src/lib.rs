//! `mpay-actors`: the long-lived actix actors of a node, their supervision and health.
//!
//! - [`health::HealthRegistry`]: what `/health/actors` and `/health/ready` report.
//! - [`watchdog::Watchdog`]: actix `Supervisor` does not survive a panic inside a handler (the
//!   actor and its supervisor share one task), so the watchdog polls every registered actor's
//!   `Addr::connected()` and respawns dead ones through their factory, counting restarts.
//! - [`journal::JournalWriter`]: batches journal entries into the store.
//! - [`scheduler::Scheduler`]: timed transitions (PUBLISHED → VALID, VALID → EXPIRED) and journal
//!   retention.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod feed_loader;
pub mod health;
pub mod journal;
pub mod scheduler;
pub mod watchdog;

pub use health::{ActorHealth, ActorState, HealthRegistry};
pub use journal::{FlushJournal, JournalWriter, Record};
pub use scheduler::{Scheduler, SchedulerConfig, Tick};
pub use watchdog::{ActorHandle, Watchdog};
