//! `mpay-messages`: everything that flows through the platform — domain identifiers
//! (fiscal codes, IBAN, IUV / notice numbers, amounts), the debt-position model (GPD),
//! journal entries and business-time helpers. Pure: no I/O.
#![deny(clippy::float_arithmetic)]

pub mod archivio;
pub mod bank;
pub mod domain;
pub mod fdr;
pub mod feeds;
pub mod ids;
pub mod intermediary;
pub mod journal;
pub mod position;
pub mod receipt_check;
pub mod text;
pub mod time;
pub mod wire;

pub use ids::*;
