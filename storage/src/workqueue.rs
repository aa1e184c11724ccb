//! The in-process bus's durable work queue (issue 13): items pushed with an id (a second push
//! of the same id is ignored), handed out when due, removed by an ack (flushed: an acked item is
//! never handed out again, also across a crash), put back with a delay by a nak. What is handed
//! out and neither acked nor nakked when the process dies is handed out again at the next start
//! (at-least-once before the ack). The NATS bus keeps the same queue in a JetStream stream.
//!
//! Trees: `workq/<name>` keyed by sequence (u64 BE) holding the item (schema byte 1 + JSON),
//! `workq/<name>/ids` from the item's id to its sequence.

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::error::StorageError;

/// One queued item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedItem {
    /// The pusher's id (deduplication).
    pub id: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// Not handed out before (UTC millis).
    pub due_ms: i64,
    /// How many times it was handed out.
    pub deliveries: u64,
}

/// A durable queue in the node's store.
#[derive(Clone)]
pub struct SledWorkQueue {
    db: sled::Db,
    items: sled::Tree,
    ids: sled::Tree,
}

fn encode(item: &QueuedItem) -> Result<Vec<u8>, StorageError> {
    let mut v = vec![1u8];
    serde_json::to_writer(&mut v, item).map_err(|e| StorageError::Encode {
        tree: "workq",
        source: std::sync::Arc::new(e),
    })?;
    Ok(v)
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<QueuedItem, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        tree: "workq",
        key: seq_of(key).to_string(),
        reason,
    };
    match bytes.split_first() {
        Some((1, rest)) => serde_json::from_slice(rest).map_err(|e| corrupt(e.to_string())),
        _ => Err(corrupt("unknown schema byte".into())),
    }
}

fn seq_of(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(key) {
        *d = *s;
    }
    u64::from_be_bytes(b)
}

fn tx_error(e: TransactionError<StorageError>) -> StorageError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StorageError::Sled(e),
    }
}

impl SledWorkQueue {
    /// Opens the queue `name` of the store's database.
    pub(crate) fn open(db: &sled::Db, name: &str) -> Result<Self, StorageError> {
        Ok(SledWorkQueue {
            db: db.clone(),
            items: db.open_tree(format!("workq/{name}"))?,
            ids: db.open_tree(format!("workq/{name}/ids"))?,
        })
    }

    /// Enqueues `payload` under `id`, due at `due_ms`, durably (flushed). Returns false when
    /// an item with that id is already queued (nothing changes).
    pub fn push(&self, id: &str, payload: &[u8], due_ms: i64) -> Result<bool, StorageError> {
        let seq = self.db.generate_id()?;
        let item = QueuedItem {
            id: id.to_string(),
            payload: payload.to_vec(),
            due_ms,
            deliveries: 0,
        };
        let value = encode(&item)?;
        let added = (&self.items, &self.ids)
            .transaction(|(items, ids)| {
                if ids.get(id.as_bytes())?.is_some() {
                    return Ok(false);
                }
                ids.insert(id.as_bytes(), &seq.to_be_bytes())?;
                items.insert(&seq.to_be_bytes(), value.as_slice())?;
                Ok::<_, ConflictableTransactionError<StorageError>>(true)
            })
            .map_err(tx_error)?;
        self.db.flush()?;
        Ok(added)
    }

    /// The first item due at `now_ms` whose sequence is not in `leased`, counted as handed out.
    pub fn take(
        &self,
        now_ms: i64,
        leased: &std::collections::HashSet<u64>,
    ) -> Result<Option<(u64, QueuedItem)>, StorageError> {
        for entry in self.items.iter() {
            let (k, v) = entry?;
            let seq = seq_of(&k);
            if leased.contains(&seq) {
                continue;
            }
            let mut item = decode(&k, &v)?;
            if item.due_ms > now_ms {
                continue;
            }
            item.deliveries += 1;
            self.items.insert(&k, encode(&item)?)?;
            return Ok(Some((seq, item)));
        }
        Ok(None)
    }

    /// When the next item not in `leased` is due (UTC millis).
    pub fn next_due(
        &self,
        leased: &std::collections::HashSet<u64>,
    ) -> Result<Option<i64>, StorageError> {
        let mut next: Option<i64> = None;
        for entry in self.items.iter() {
            let (k, v) = entry?;
            if leased.contains(&seq_of(&k)) {
                continue;
            }
            let due = decode(&k, &v)?.due_ms;
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        Ok(next)
    }

    /// Removes item `seq` for good (flushed before it returns).
    pub fn ack(&self, seq: u64) -> Result<(), StorageError> {
        let key = seq.to_be_bytes();
        (&self.items, &self.ids)
            .transaction(|(items, ids)| {
                if let Some(v) = items.remove(&key)? {
                    let item = decode(&key, &v).map_err(ConflictableTransactionError::Abort)?;
                    ids.remove(item.id.as_bytes())?;
                }
                Ok::<_, ConflictableTransactionError<StorageError>>(())
            })
            .map_err(tx_error)?;
        self.db.flush()?;
        Ok(())
    }

    /// Puts item `seq` back, due at `due_ms`.
    pub fn nak(&self, seq: u64, due_ms: i64) -> Result<(), StorageError> {
        let key = seq.to_be_bytes();
        if let Some(v) = self.items.get(key)? {
            let mut item = decode(&key, &v)?;
            item.due_ms = due_ms;
            self.items.insert(key, encode(&item)?)?;
        }
        Ok(())
    }

    /// Items queued (handed out or not).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// No item queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashSet;

    use crate::Store;

    #[test]
    fn pushed_once_handed_out_when_due_gone_after_ack_back_after_nak_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let none = HashSet::new();
        {
            let store = Store::open(dir.path()).unwrap();
            let q = store.work_queue("t").unwrap();
            assert!(q.push("a", b"1", 0).unwrap());
            assert!(!q.push("a", b"1 again", 0).unwrap(), "same id ignored");
            assert!(q.push("b", b"2", 0).unwrap());
            assert!(q.push("c", b"3", 10_000).unwrap());
            let (sa, a) = q.take(5_000, &none).unwrap().unwrap();
            assert_eq!(
                (a.id.as_str(), a.payload.as_slice(), a.deliveries),
                ("a", &b"1"[..], 1)
            );
            q.ack(sa).unwrap();
            let (sb, b) = q.take(5_000, &HashSet::from([sa])).unwrap().unwrap();
            assert_eq!(b.id, "b");
            q.nak(sb, 20_000).unwrap();
            assert!(q.take(5_000, &none).unwrap().is_none(), "c and b not due");
            assert_eq!(q.next_due(&none).unwrap(), Some(10_000));
            // b handed out again (queue order), then the process "dies" before its ack
            let (_, b) = q.take(25_000, &none).unwrap().unwrap();
            assert_eq!((b.id.as_str(), b.deliveries), ("b", 2));
        }
        let store = Store::open(dir.path()).unwrap();
        let q = store.work_queue("t").unwrap();
        assert_eq!(q.len(), 2, "a acked for good; b and c survive the restart");
        let (_, b) = q.take(25_000, &none).unwrap().unwrap();
        assert_eq!((b.id.as_str(), b.deliveries), ("b", 3));
        assert!(
            q.push("a", b"1", 0).unwrap(),
            "an acked id may be queued again"
        );
    }
}
