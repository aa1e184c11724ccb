//! `mpay-actors`: the long-lived actix actors of a node, their supervision and health.
//!
//! - [`health::HealthRegistry`]: what `/health/actors` and `/health/ready` report.
//! - [`watchdog::Watchdog`]: actix `Supervisor` does not survive a panic inside a handler (the
//!   actor and its supervisor share one task), so the watchdog polls every registered actor's
//!   `Addr::connected()` and respawns dead ones through their factory, counting restarts.
//! - [`journal::JournalWriter`]: batches journal entries into the store.
//! - [`cart::CartSession`] (one per citizen cart, started by [`cart::CartRegistry`]) and
//!   [`node_channel::NodeChannel`] (outbound calls to pagoPA: Checkout carts; the FdR download
//!   is [`fdr_sync::FdrApi`]).
//! - [`scheduler::Scheduler`]: timed transitions (PUBLISHED → VALID, VALID → EXPIRED) and journal
//!   retention.
//! - [`bus`]: the message bus ([`bus::Bus`], in-process implementation): events published where
//!   facts become durable.
//! - [`ente_connector::EnteConnector`] (one per Ente with a notification endpoint, started by
//!   [`ente_connector::Connectors`] and woken by the bus): delivers the Ente's outbox.
//! - [`mailer::ReceiptMailer`] (one per node, started by [`mailer::Mailer`], woken by the
//!   bus): sends each receipt's e-mail from the durable mail queue (SMTP, `lettre`).
//! - [`recon_worker::ReconciliationWorker`] (one per node, started by
//!   [`recon_worker::ReconWorker`]): syncs flows from the FdR API on a schedule and on demand,
//!   re-runs reconciliation on `fdr.acquired` / `fdr.statement_imported`, publishes `fdr.reconciled`.
//! - [`receipt_recovery::ReceiptRecoveryActor`] (one per node, started by
//!   [`receipt_recovery::ReceiptRecovery`]): the rate-limited recovery of missing receipts from
//!   pagoPA's biz-events API, stored through the paSendRT path's storage function.

pub mod bus;
pub mod cart;
pub mod ente_connector;
pub mod export_batch;
pub mod fdr_sync;
pub mod feed_loader;
pub mod health;
pub mod journal;
pub mod mailer;
pub mod node_channel;
pub mod receipt_recovery;
pub mod recon_worker;
pub mod scheduler;
pub mod watchdog;

pub use health::{ActorHealth, ActorState, HealthRegistry};
pub use journal::{FlushJournal, JournalWriter, Record};
pub use scheduler::{Scheduler, SchedulerConfig, Tick};
pub use watchdog::{ActorHandle, Watchdog};
