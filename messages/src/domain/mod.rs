//! The domain's behaviour: the rules every surface (station, REST, Archivio Carichi, feeds,
//! scheduler, portal) applies to debt positions and receipts, written once, pure (no I/O, no
//! clock: every function that depends on time takes `now`), and unit-tested here.
//!
//! - [`position`]: lifecycle transitions (publish, invalidate), what may change and who may
//!   change it, timers (validity, expiry), [`NotPayable`] — whether a notice can be paid now;
//! - [`receipt`]: what a receipt does to a position ([`ReceiptEffect`]: disposition, new state,
//!   anomalies);
//! - [`dates`]: which calendar dates a position may carry (1900-01-01 ..= 2999-12-31), for
//!   every edge;
//! - [`reconcile`]: which receipt a reporting-flow row reports, how far bank credits settle a
//!   flow, and the label of every payment, row and credit.
//! - [`reporting`]: a payment's operating day D (13:00 cut, Italian calendar) and the D+2
//!   deadline after which a receipt no flow reports is followed up.
//! - [`delivery`]: notifications to an Ente — states, backoff with jitter, horizon, circuit
//!   breaker, order per position.
//! - [`recovery`]: receipt recovery from biz-events — the queue's states, bounded attempts
//!   with backoff, the hourly quota.
//! - [`mail`]: the receipt e-mail — who receives it, its Italian text, its states (the
//!   backoff and horizon of [`delivery`]).
//!
//! The records themselves live in [`crate::position`]; edges map [`PositionError`] and
//! [`NotPayable`] once each (station → `PAA_*` fault in [`crate::wire::faults`], REST → problem
//! JSON in the web crate).

pub mod cart;
pub mod dates;
pub mod delivery;
pub mod mail;
pub mod position;
pub mod receipt;
pub mod reconcile;
pub mod recovery;
pub mod reporting;

pub use position::{
    Action, FeeError, NotPayable, NoticeStatus, PaidOutsideError, PaymentFacts, PositionError,
    ReportError, TimerKind,
};
pub use receipt::{AnomalyKind, ReceiptDisposition, ReceiptEffect};
