//! [`Store`]: the opened sled database and its repositories.

use std::path::Path;
use std::sync::Arc;

use crate::archive::SledArchive;
use crate::durability::Durability;
use crate::error::StorageError;
use crate::journal::SledJournal;
use crate::ledger::SledLedger;

/// Default sled page cache: 1 GiB, so that the working set of a 1 M-position store (records,
/// indexes, and sled's in-memory page overhead) stays in memory. sled counts decoded pages, not
/// bytes on disk; the resident memory of a node is about this figure plus ~100 MB.
pub const DEFAULT_CACHE_BYTES: u64 = 1024 * 1024 * 1024;

/// The opened store of one node: every repository shares one sled database.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: sled::Db,
    /// Debt positions, indexes and IUV sequences; receipts and anomalies
    /// ([`crate::ReceiptRepository`] is implemented on it, so that one unit of work spans a receipt
    /// and the position it pays).
    pub ledger: Arc<SledLedger>,
    /// Archivio Carichi documents.
    pub archive: Arc<SledArchive>,
    /// Journal of exchanges.
    pub journal: Arc<SledJournal>,
    /// Reporting flows, bank credits and rejected files (reconciliation).
    pub reconciliation: Arc<crate::reconciliation::SledReconciliation>,
    /// Group commit.
    pub durability: Durability,
    cache_bytes: u64,
}

impl Store {
    /// Opens (or creates) the store in `dir` with the [`DEFAULT_CACHE_BYTES`] page cache.
    /// Errors: [`StorageError`] when the folder cannot be opened (permissions, another process
    /// holds the lock).
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens the store with a page cache of `cache_bytes` (sled keeps hot pages decoded in
    /// memory; a cache much smaller than the working set makes every read page in and out).
    /// A store of the previous build gets its missing indexes built, once.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::file(format!("creating {}", dir.display()), e))?;
        let cache_bytes = cache_bytes.max(MIN_CACHE_BYTES);
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()?;
        tracing::info!(cache_bytes, dir = %dir.display(), "store opened");
        let ledger = Arc::new(SledLedger::open(&db)?);
        crate::receipts::upgrade(&db, &ledger.receipts)?;
        let archive = Arc::new(SledArchive::open(&db, ledger.clone())?);
        let journal = Arc::new(SledJournal::open(&db)?);
        let reconciliation = Arc::new(crate::reconciliation::SledReconciliation::open(&db)?);
        let durability = Durability::new(db.clone());
        Ok(Store {
            db,
            ledger,
            archive,
            journal,
            reconciliation,
            durability,
            cache_bytes,
        })
    }

    /// The durable work queue `name` of the in-process bus ([`SledWorkQueue`]).
    /// Errors: the trees cannot be opened.
    pub fn work_queue(&self, name: &str) -> Result<crate::SledWorkQueue, StorageError> {
        crate::SledWorkQueue::open(&self.db, name)
    }

    /// The page cache the store was opened with (bytes).
    pub fn cache_bytes(&self) -> u64 {
        self.cache_bytes
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

/// The smallest page cache sled accepts (it splits the cache in 256 shards).
const MIN_CACHE_BYTES: u64 = 1024 * 1024;

impl AsRef<SledArchive> for Store {
    fn as_ref(&self) -> &SledArchive {
        &self.archive
    }
}
