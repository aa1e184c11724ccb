//! `mpay-storage`: the sled store (DESIGN §4) — ledger of debt positions with its indexes,
//! IUV sequences, journal — behind per-aggregate repository traits. No sled type leaves this
//! crate. Records carry a schema version byte; the store lives in a versioned folder.
//!
//! Durability: writes are atomic (one unit of work — [`tx`] — per state change, indexes
//! included); they are durable once [`Durability::commit`] returns (group commit: concurrent
//! callers share one flush).
//!
//! Layout of the crate (no file imports a file that imports it): `error` and `codec` (schema
//! byte, JSON v1 / compact v2) and `records` (compact record types) at the bottom; `keys`
//! (index enum, key layout), `trees` (receipt trees and keys, one-time upgrades) and `tx` (the
//! unit-of-work helper) above them; the repositories `ledger` (positions), `receipts` +
//! `receipt_queries`, `outbox` (Ente notifications), `mail` (receipt e-mails), `archive`, `journal`, feeds on top; [`Store`] and its async wrappers
//! (`asynch`) over all of them.

pub mod archive;
mod asynch;
pub mod backup;
pub mod carts;
mod codec;
pub mod durability;
mod error;
pub mod feeds;
pub use feeds::output as feeds_output;
pub mod journal;
pub mod keys;
pub mod ledger;
pub mod mail;
pub mod outbox;
pub mod receipt_queries;
pub mod receipts;
pub mod recon_state;
pub mod reconciliation;
mod records;
pub mod recovery;
mod store;
mod trees;
pub mod tx;
pub mod workqueue;

pub use archive::{ArchiveRepository, SledArchive};
pub use durability::{Durability, DurabilityPoint};
pub use error::{is_locked, LedgerError, StorageError};
pub use journal::{FileJournal, JournalQuery, JournalStore};
pub use keys::Index;
pub use ledger::{
    ListOrder, Page, PositionFilter, PositionRepository, SledLedger, TimerKind, VerifyReport,
};
pub use mail::MailCounts;
pub use outbox::Backlog;
pub use receipt_queries::{Acknowledgement, AnomalyRecord, AnomalyState, ReceiptFilter};
pub use receipts::{Anomaly, AnomalyKind, ReceiptDisposition, ReceiptRepository, StoredReceipt};
pub use store::{Store, DEFAULT_CACHE_BYTES};
pub use workqueue::{QueuedItem, SledWorkQueue};
