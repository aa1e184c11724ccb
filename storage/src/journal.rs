//! The journal of exchanges (`journal` tree): key = UTC nanoseconds (u64 BE) ++ sequence (u32 BE),
//! value = versioned [`JournalEntry`]. Written in batches by the `JournalWriter` actor; pruned by
//! the scheduler after the retention period.

use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use mpay_messages::journal::JournalEntry;

use crate::codec::{decode, encode};
use crate::error::StorageError;

/// A journal search.
#[derive(Debug, Clone, Default)]
pub struct JournalQuery {
    /// Only entries of this organization.
    pub organization: Option<String>,
    /// Entries at or after.
    pub from: Option<DateTime<Utc>>,
    /// Most entries returned (newest first).
    pub limit: usize,
}

/// The journal aggregate. Blocking calls.
pub trait JournalStore: Send + Sync {
    /// Appends entries in one batch (atomic). Errors: `Io`.
    fn append(&self, entries: &[JournalEntry]) -> Result<(), StorageError>;
    /// Newest entries first.
    fn query(&self, q: &JournalQuery) -> Result<Vec<JournalEntry>, StorageError>;
    /// Removes entries older than `before`; returns how many.
    fn prune(&self, before: DateTime<Utc>) -> Result<u64, StorageError>;
    /// Entries stored.
    fn len(&self) -> usize;
    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// sled implementation of [`JournalStore`].
pub struct SledJournal {
    tree: sled::Tree,
    seq: AtomicU32,
}

fn nanos(t: DateTime<Utc>) -> u64 {
    t.timestamp_nanos_opt()
        .map(|n| n.max(0) as u64)
        .unwrap_or(0)
}

impl SledJournal {
    pub(crate) fn open(db: &sled::Db) -> Result<Self, StorageError> {
        Ok(SledJournal {
            tree: db.open_tree("journal")?,
            seq: AtomicU32::new(0),
        })
    }
}

impl JournalStore for SledJournal {
    fn append(&self, entries: &[JournalEntry]) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for e in entries {
            let mut key = nanos(e.at).to_be_bytes().to_vec();
            key.extend_from_slice(&self.seq.fetch_add(1, Ordering::Relaxed).to_be_bytes());
            batch.insert(key, encode(e)?);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    fn query(&self, q: &JournalQuery) -> Result<Vec<JournalEntry>, StorageError> {
        let start = q.from.map(nanos).unwrap_or(0).to_be_bytes().to_vec();
        let mut out = Vec::new();
        for item in self.tree.range(start..).rev() {
            let (k, v) = item?;
            let e: JournalEntry = decode("journal", &k, &v)?;
            if q.organization
                .as_ref()
                .is_some_and(|o| e.organization.as_ref() != Some(o))
            {
                continue;
            }
            out.push(e);
            if out.len() >= q.limit {
                break;
            }
        }
        Ok(out)
    }

    fn prune(&self, before: DateTime<Utc>) -> Result<u64, StorageError> {
        let end = nanos(before).to_be_bytes().to_vec();
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in self.tree.range(..end) {
            let (k, _) = item?;
            batch.remove(k);
            n += 1;
        }
        self.tree.apply_batch(batch)?;
        Ok(n)
    }

    fn len(&self) -> usize {
        self.tree.len()
    }
}
