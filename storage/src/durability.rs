//! Named durability points with group commit (DESIGN §4 "durability rule").
//!
//! A writer that must not acknowledge before its data is on disk calls
//! [`Durability::commit`] after its write. Concurrent callers share flushes: while one flush
//! runs, later callers queue; the next flush covers all of them.
//!
//! A flush is sled's own (it writes its buffers with `pwrite` and `sync_file_range`, which
//! flushes neither the file's metadata nor the drive's cache) followed by an `fdatasync` of
//! the store's data file, so that an acknowledged write survives a power loss (issue 9 point 3).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Mutex};

use crate::error::StorageError;

/// Where in the product a durable acknowledgement is given (metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurabilityPoint {
    /// An accepted REST write (create, update, delete, publish, invalidate).
    RestWrite,
    /// A receipt acknowledged to the Node (paSendRT).
    Receipt,
    /// The end of a bulk load.
    BulkLoad,
    /// An IUV sequence block reserved.
    IuvBlock,
    /// A CLI command.
    Cli,
    /// Ente notifications acknowledged (never delivered again after this).
    Notification,
    /// A receipt e-mail accepted by the SMTP server (never sent again after this).
    Mail,
    /// Flows acquired from the FdR API, or a reconciliation run's effects (reported options,
    /// its summary).
    Reconciliation,
}

impl DurabilityPoint {
    /// Metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RestWrite => "rest_write",
            Self::Receipt => "receipt",
            Self::BulkLoad => "bulk_load",
            Self::IuvBlock => "iuv_block",
            Self::Cli => "cli",
            Self::Notification => "notification",
            Self::Mail => "mail",
            Self::Reconciliation => "reconciliation",
        }
    }
}

/// Group-commit coordinator over one sled database. Cheap to clone.
#[derive(Clone)]
pub struct Durability {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    /// sled's data file (`<dir>/db`), synced after each flush; `None` for a temporary store.
    data_file: Option<Arc<std::fs::File>>,
    tickets: AtomicU64,
    flush_lock: Mutex<()>,
    flushed_tx: watch::Sender<u64>,
    flushes: AtomicU64,
}

impl Durability {
    pub(crate) fn new(db: sled::Db, dir: Option<&std::path::Path>) -> Self {
        let (flushed_tx, _) = watch::channel(0);
        let data_file = dir
            .and_then(|d| std::fs::File::open(d.join("db")).ok())
            .map(Arc::new);
        Durability {
            inner: Arc::new(Inner {
                db,
                data_file,
                tickets: AtomicU64::new(0),
                flush_lock: Mutex::new(()),
                flushed_tx,
                flushes: AtomicU64::new(0),
            }),
        }
    }

    /// Returns once every write made before the call is on disk.
    ///
    /// Errors: [`StorageError::Io`] when the flush fails (the caller must not acknowledge).
    pub async fn commit(&self, point: DurabilityPoint) -> Result<(), StorageError> {
        let ticket = self.inner.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        metrics::counter!("mpay_durable_commits_total", "point" => point.as_str()).increment(1);
        loop {
            if *self.inner.flushed_tx.borrow() >= ticket {
                return Ok(());
            }
            let _guard = self.inner.flush_lock.lock().await;
            if *self.inner.flushed_tx.borrow() >= ticket {
                return Ok(());
            }
            // Everything written before this load is covered by the flush below.
            let target = self.inner.tickets.load(Ordering::SeqCst);
            let db = self.inner.db.clone();
            let file = self.inner.data_file.clone();
            let started = std::time::Instant::now();
            tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
                db.flush()?;
                if let Some(f) = file {
                    f.sync_data()
                        .map_err(|e| StorageError::file("syncing the store's data file", e))?;
                }
                Ok(())
            })
            .await??;
            metrics::histogram!("mpay_flush_seconds").record(started.elapsed().as_secs_f64());
            self.inner.flushes.fetch_add(1, Ordering::Relaxed);
            self.inner.flushed_tx.send_replace(target);
        }
    }

    /// `fdatasync` of the store's data file (after a flush of sled's own), blocking.
    /// Errors: the sync failed.
    pub(crate) fn sync_data_file(&self) -> Result<(), StorageError> {
        if let Some(f) = &self.inner.data_file {
            f.sync_data()
                .map_err(|e| StorageError::file("syncing the store's data file", e))?;
        }
        Ok(())
    }

    /// Number of physical flushes done so far (group-commit efficiency = commits / flushes).
    pub fn flushes(&self) -> u64 {
        self.inner.flushes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_commits_share_one_flush() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let d = Durability::new(db.clone(), None);
        // Hold the flush lock as if a flush were running, queue 50 writers behind it.
        let guard = d.inner.flush_lock.lock().await;
        let mut tasks = Vec::new();
        for i in 0..50u32 {
            let d = d.clone();
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.insert(i.to_be_bytes(), &b"x"[..]).unwrap();
                d.commit(DurabilityPoint::RestWrite).await.unwrap();
            }));
        }
        while d.inner.tickets.load(Ordering::SeqCst) < 50 {
            tokio::task::yield_now().await;
        }
        drop(guard);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(d.flushes(), 1, "one flush covers every queued writer");
        // and the data is there after reopening
        drop(db);
        drop(d);
    }
}
