//! [`Store`]: the opened sled database and its repositories.

use std::path::Path;
use std::sync::Arc;

use crate::archive::SledArchive;
use crate::durability::Durability;
use crate::error::StorageError;
use crate::journal::FileJournal;
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
    /// Journal of exchanges (its own files in `<dir>/journal`, not sled).
    pub journal: Arc<FileJournal>,
    /// Reporting flows, bank credits and rejected files (reconciliation).
    pub reconciliation: Arc<crate::reconciliation::SledReconciliation>,
    /// Group commit.
    pub durability: Durability,
    cache_bytes: u64,
}

/// How long an open waits for the store's lock to be released by a handle of this same process
/// that is closing: sled's background flusher keeps the files open for up to one flush interval
/// (500 ms) after the last handle is dropped. Another process holding the store (a running
/// `mpay serve`) still gets the "locked" error, after this wait.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn open_sled(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StorageError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(e) => {
                let e = StorageError::from(e);
                if !e.is_locked() || std::time::Instant::now() >= deadline {
                    return Err(e);
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

impl Store {
    /// A reporting flow of `org` was stored (a new flow or a higher revision — REST import,
    /// FdR sync, `mpay fdr import`): the revocations its latest revision announces (outcome-3
    /// rows for receipts the Ente was notified of) go to the Ente's outbox
    /// ([`SledLedger::enqueue_flow_revocations`]). The one function every import path calls;
    /// the caller makes them durable (`Durability::commit` / a flush) and, with a node running,
    /// wakes the connector (`FdrAcquired`).
    pub fn enqueue_revocations_of_flow(
        &self,
        org: &str,
        flow_id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<mpay_messages::domain::delivery::Notification>, crate::error::LedgerError> {
        let revisions = self
            .reconciliation
            .revisions(org, flow_id)
            .map_err(crate::error::LedgerError::Storage)?;
        match revisions.last() {
            Some(stored) => self.ledger.enqueue_flow_revocations(org, &stored.flow, now),
            None => Ok(Vec::new()),
        }
    }

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
        // sled reports most damage as errors but panics on some (a page that passes its
        // checksum and does not decode): both become one clear "store corrupt" error.
        let opened = std::panic::catch_unwind(|| Self::open_parts(dir, cache_bytes));
        let (db, ledger, archive, journal, reconciliation) = match opened {
            Ok(Ok(parts)) => parts,
            Ok(Err(e)) => return Err(StorageError::corrupt_store(dir, e)),
            Err(panic) => {
                let detail = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a failure while reading its files");
                return Err(StorageError::CorruptStore {
                    dir: dir.display().to_string(),
                    detail: format!("the store failed while reading its files ({detail})"),
                });
            }
        };
        tracing::info!(cache_bytes, dir = %dir.display(), "store opened");
        let durability = Durability::new(db.clone(), Some(dir));
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

    #[allow(clippy::type_complexity)]
    fn open_parts(
        dir: &Path,
        cache_bytes: u64,
    ) -> Result<
        (
            sled::Db,
            Arc<SledLedger>,
            Arc<SledArchive>,
            Arc<FileJournal>,
            Arc<crate::reconciliation::SledReconciliation>,
        ),
        StorageError,
    > {
        let db = open_sled(dir, cache_bytes)?;
        let ledger = Arc::new(SledLedger::open(&db)?);
        crate::receipts::upgrade(&db, &ledger.receipts)?;
        crate::ledger::upgrade(&db, &ledger)?;
        let archive = Arc::new(SledArchive::open(&db, ledger.clone())?);
        let journal = Arc::new(FileJournal::open(dir, &db)?);
        let reconciliation = Arc::new(crate::reconciliation::SledReconciliation::open(&db)?);
        Ok((db, ledger, archive, journal, reconciliation))
    }

    /// The durable work queue `name` of the in-process bus ([`SledWorkQueue`]).
    /// Errors: the trees cannot be opened.
    pub fn work_queue(&self, name: &str) -> Result<crate::SledWorkQueue, StorageError> {
        crate::SledWorkQueue::open(&self.db, name)
    }

    /// The receipt-recovery queue (`recovery`, `recovery_calls`; issue 14).
    /// Errors: the trees cannot be opened.
    pub fn recovery(&self) -> Result<crate::recovery::SledRecovery, StorageError> {
        crate::recovery::SledRecovery::open(&self.db)
    }

    /// The page cache the store was opened with (bytes).
    pub fn cache_bytes(&self) -> u64 {
        self.cache_bytes
    }

    /// Flushes everything to disk now (blocking). Used at shutdown and by the CLI.
    pub fn flush_blocking(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        self.durability.sync_data_file()
    }

    /// Writes and flushes a small record (tree `store_probe`, left out of backups): Ok when the store can write. sled does
    /// not recover in place from a failed write (a full disk): once this fails it keeps failing
    /// until the store is opened again.
    /// Errors: the write or the flush failed.
    pub fn probe_write(&self) -> Result<(), StorageError> {
        let probe = self.db.open_tree(crate::trees::PROBE_TREE)?;
        probe.insert(b"probe", chrono::Utc::now().to_rfc3339().as_bytes())?;
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
