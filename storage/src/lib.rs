//! `mpay-storage`: the sled store (DESIGN §4) — ledger of debt positions with its indexes,
//! IUV sequences, journal — behind per-aggregate repository traits. No sled type leaves this
//! crate. Records carry a schema version byte; the store lives in a versioned folder.
//!
//! Durability: writes are atomic (one sled transaction per state change, indexes included);
//! they are durable once [`Durability::commit`] returns (group commit: concurrent callers share
//! one flush).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod archive;
mod codec;
pub mod durability;
pub mod feeds;
pub mod feeds_output;
pub mod journal;
pub mod ledger;
pub mod receipt_queries;
pub mod receipts;

use std::path::Path;
use std::sync::Arc;

pub use durability::{Durability, DurabilityPoint};
pub use journal::{JournalQuery, JournalStore, SledJournal};
pub use ledger::{
    LedgerError, ListOrder, Page, PositionFilter, PositionRepository, SledLedger, TimerKind,
    VerifyReport,
};
pub use receipt_queries::{Acknowledgement, AnomalyRecord, AnomalyState, ReceiptFilter};
pub use receipts::{Anomaly, AnomalyKind, ReceiptDisposition, ReceiptRepository, StoredReceipt};

/// A storage-level failure (I/O, corrupt record).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The embedded store failed (I/O, out of space, ...).
    #[error("store I/O error: {0}")]
    Io(String),
    /// A record could not be decoded.
    #[error("corrupt record in {tree} at {key}: {reason}")]
    Corrupt {
        /// Tree name.
        tree: &'static str,
        /// Key (printable form).
        key: String,
        /// Why.
        reason: String,
    },
}

impl From<sled::Error> for StorageError {
    fn from(e: sled::Error) -> Self {
        StorageError::Io(e.to_string())
    }
}

/// True when `e` says the store is locked by another process (a running `mpay serve`): sled
/// lets one process open a store at a time, even for reading.
pub fn is_locked(e: &StorageError) -> bool {
    matches!(e, StorageError::Io(m) if m.contains("could not acquire lock"))
}

/// Default sled page cache: 256 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// The opened store of one node: every repository shares one sled database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// Debt positions, indexes and IUV sequences.
    pub ledger: Arc<SledLedger>,
    /// Journal of exchanges.
    pub journal: Arc<SledJournal>,
    /// Group commit.
    pub durability: Durability,
}

impl Store {
    /// Opens (or creates) the store in `dir`. Errors: [`StorageError::Io`] when the folder cannot
    /// be opened (permissions, another process holds the lock).
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens the store with a page cache of `cache_bytes` (sled keeps hot pages decoded in
    /// memory; a cache much smaller than the working set makes every read page in and out).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::Io(e.to_string()))?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()?;
        let ledger = Arc::new(SledLedger::open(&db)?);
        let journal = Arc::new(SledJournal::open(&db)?);
        let durability = Durability::new(db.clone());
        Ok(Store {
            db,
            ledger,
            journal,
            durability,
        })
    }

    /// Flushes everything to disk now (blocking). Used at shutdown and by the CLI.
    pub fn flush_blocking(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        Ok(())
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}
