//! Whole-store backups: every tree, byte for byte (positions, indexes, receipts with their raw
//! XML, anomalies and their acknowledgements, the Ente outbox, carts, archive documents, feed
//! records and outputs, reporting flows and bank credits, counters, upgrade marks; the journal
//! on request), so that a restored store answers exactly as the original did — a Node retry of
//! an acknowledged receipt is answered OK again, not `PAA_RECEIPT_DUPLICATA`.
//!
//! The file is JSON lines, readable with standard tools:
//!
//! ```text
//! {"format":"mpay-store-backup","version":2,"created_at":"…","journal":false}
//! {"tree":"positions","k":"<base64>","v":"<base64>"}
//! …
//! {"end":{"records":1234,"sha256":"<hex>"}}
//! ```
//!
//! The last line counts the records and carries a SHA-256 over every (tree, key, value), so a
//! truncated or altered file is refused as a whole. A restore goes into an empty store only and
//! leaves it empty when the file is refused (nothing half-restored).
//!
//! An **online** backup runs while the node serves: it holds the unit-of-work gate
//! ([`crate::tx`]) while it copies, so the copy never contains half of a unit of work; writes
//! wait for the copy (the station answers late, not wrong; the Node retries what times out).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::StorageError;
use crate::store::Store;
use crate::trees::PROBE_TREE;

/// The `format` of the first line.
pub const FORMAT: &str = "mpay-store-backup";
/// The version of the format.
pub const VERSION: u32 = 2;
/// sled's default tree (its name as `tree_names` lists it).
const DEFAULT_TREE: &[u8] = b"__sled__default";
/// Trees left out unless asked for.
const JOURNAL_TREES: &[&str] = &["journal"];

/// What a backup or a restore covered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackupSummary {
    /// Records per tree.
    pub trees: BTreeMap<String, u64>,
    /// All records.
    pub records: u64,
    /// SHA-256 over every (tree, key, value), hex.
    pub sha256: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    created_at: DateTime<Utc>,
    journal: bool,
}

#[derive(Serialize, Deserialize)]
struct Record {
    tree: String,
    k: String,
    v: String,
}

#[derive(Serialize, Deserialize)]
struct End {
    records: u64,
    sha256: String,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Record(Record),
    End { end: End },
    Header(Header),
}

fn digest_record(h: &mut Sha256, tree: &[u8], k: &[u8], v: &[u8]) {
    for part in [tree, k, v] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
}

fn write_err(e: std::io::Error) -> StorageError {
    StorageError::file("writing the backup", e)
}

fn json_line(out: &mut dyn Write, value: &impl Serialize) -> Result<(), StorageError> {
    serde_json::to_writer(&mut *out, value).map_err(|e| StorageError::Encode {
        tree: "backup",
        source: std::sync::Arc::new(e),
    })?;
    out.write_all(b"\n").map_err(write_err)
}

impl Store {
    /// Writes a backup of every tree (the journal too when `journal`) to `out`. Safe while the
    /// node serves: units of work wait while the trees are copied.
    /// Errors: the store cannot be read, `out` cannot be written.
    pub fn backup(
        &self,
        out: &mut dyn Write,
        journal: bool,
    ) -> Result<BackupSummary, StorageError> {
        let _paused = crate::tx::pause_units_of_work();
        json_line(
            out,
            &Header {
                format: FORMAT.to_owned(),
                version: VERSION,
                created_at: Utc::now(),
                journal,
            },
        )?;
        let mut summary = BackupSummary::default();
        let mut hash = Sha256::new();
        let mut names = self.db.tree_names();
        names.sort();
        let derived_upgrade = format!("upgrade/{}", crate::recon_state::UPGRADE);
        for name in names {
            let tree_name = String::from_utf8_lossy(&name).into_owned();
            if tree_name == PROBE_TREE
                || JOURNAL_TREES.contains(&tree_name.as_str())
                || crate::recon_state::DERIVED_TREES.contains(&tree_name.as_str())
            {
                // the reconciliation's state is derived: a restored store rebuilds it (a backup
                // taken during a run would otherwise capture it half written)
                continue;
            }
            let tree = if name.as_ref() == DEFAULT_TREE {
                (*self.db).clone()
            } else {
                self.db.open_tree(&name)?
            };
            let mut n = 0u64;
            for item in tree.iter() {
                let (k, v) = item?;
                if tree_name == "meta" && k.as_ref() == derived_upgrade.as_bytes() {
                    // ... and its upgrade runs again there
                    continue;
                }
                digest_record(&mut hash, &name, &k, &v);
                json_line(
                    out,
                    &Record {
                        tree: tree_name.clone(),
                        k: B64.encode(&k),
                        v: B64.encode(&v),
                    },
                )?;
                n += 1;
            }
            summary.records += n;
            if n > 0 {
                summary.trees.insert(tree_name, n);
            }
        }
        if journal {
            // the journal lives in its own files: its entries are written as records of the
            // previous build's tree, which a restored store moves into files at its first open
            let tree = crate::journal::LEGACY_TREE;
            let mut n = 0u64;
            self.journal.for_each(|entry| {
                let at = entry
                    .at
                    .timestamp_nanos_opt()
                    .map(|t| t.max(0) as u64)
                    .unwrap_or(0);
                let mut k = at.to_be_bytes().to_vec();
                k.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
                let v = crate::codec::encode(&entry)?;
                digest_record(&mut hash, tree.as_bytes(), &k, &v);
                json_line(
                    out,
                    &Record {
                        tree: tree.to_owned(),
                        k: B64.encode(&k),
                        v: B64.encode(&v),
                    },
                )?;
                n += 1;
                Ok(())
            })?;
            summary.records += n;
            if n > 0 {
                summary.trees.insert(tree.to_owned(), n);
            }
        }
        summary.sha256 = hex(&hash.finalize());
        json_line(
            out,
            &serde_json::json!({"end": {"records": summary.records, "sha256": summary.sha256}}),
        )?;
        out.flush().map_err(write_err)?;
        Ok(summary)
    }
}

/// Restores a backup written by [`Store::backup`] into the empty store in `dir`, then flushes
/// it. The store must not be open elsewhere (open it with [`Store::open`] afterwards: the
/// repositories read their trees at open). A file that is not a backup, truncated or altered
/// (record count or digest differ) is refused and the store is left empty.
/// Errors: [`StorageError::Corrupt`] naming the line, I/O errors.
pub fn restore(
    dir: &std::path::Path,
    input: &mut dyn BufRead,
) -> Result<BackupSummary, StorageError> {
    // no background flusher: its thread would hold the store (and its lock) for a while after
    // this returns, and the caller opens the store next
    let db = sled::Config::new().path(dir).flush_every_ms(None).open()?;
    for name in db.tree_names() {
        let tree = if name.as_ref() == DEFAULT_TREE {
            (*db).clone()
        } else {
            db.open_tree(&name)?
        };
        if !tree.is_empty() {
            return Err(StorageError::Corrupt {
                tree: "restore",
                key: dir.display().to_string(),
                reason: "the store is not empty: restore only into an empty store".into(),
            });
        }
    }
    match restore_into(&db, input) {
        Ok(summary) => {
            db.flush()?;
            Ok(summary)
        }
        Err(e) => {
            for name in db.tree_names() {
                if name.as_ref() == DEFAULT_TREE {
                    db.clear()?;
                } else {
                    db.drop_tree(&name)?;
                }
            }
            db.flush()?;
            Err(e)
        }
    }
}

fn bad_line(line: usize, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        tree: "backup",
        key: format!("line {line}"),
        reason: reason.into(),
    }
}

fn restore_into(db: &sled::Db, input: &mut dyn BufRead) -> Result<BackupSummary, StorageError> {
    let mut summary = BackupSummary::default();
    let mut hash = Sha256::new();
    let mut current: Option<(String, sled::Tree, sled::Batch, usize)> = None;
    let mut header_seen = false;
    let mut end: Option<End> = None;
    let mut buf = String::new();
    let mut lineno = 0usize;
    loop {
        buf.clear();
        let read = input
            .read_line(&mut buf)
            .map_err(|e| StorageError::file("reading the backup", e))?;
        if read == 0 {
            break;
        }
        lineno += 1;
        let text = buf.trim_end();
        if text.is_empty() {
            continue;
        }
        if end.is_some() {
            return Err(bad_line(lineno, "text after the end line"));
        }
        let line: Line = serde_json::from_str(text)
            .map_err(|e| bad_line(lineno, format!("not a backup line: {e}")))?;
        match line {
            Line::Header(h) => {
                if header_seen || lineno != 1 {
                    return Err(bad_line(lineno, "a second header"));
                }
                if h.format != FORMAT || h.version != VERSION {
                    return Err(bad_line(
                        lineno,
                        format!(
                            "format {} version {} (this build reads {FORMAT} version {VERSION})",
                            h.format, h.version
                        ),
                    ));
                }
                header_seen = true;
            }
            Line::Record(r) => {
                if !header_seen {
                    return Err(bad_line(lineno, "no header: not an mpay store backup"));
                }
                let k = B64
                    .decode(&r.k)
                    .map_err(|e| bad_line(lineno, format!("key: {e}")))?;
                let v = B64
                    .decode(&r.v)
                    .map_err(|e| bad_line(lineno, format!("value: {e}")))?;
                digest_record(&mut hash, r.tree.as_bytes(), &k, &v);
                let same = matches!(&current, Some((name, ..)) if *name == r.tree);
                if !same {
                    if let Some((_, tree, batch, _)) = current.take() {
                        tree.apply_batch(batch)?;
                    }
                    let tree = if r.tree.as_bytes() == DEFAULT_TREE {
                        (**db).clone()
                    } else {
                        db.open_tree(r.tree.as_bytes())?
                    };
                    current = Some((r.tree.clone(), tree, sled::Batch::default(), 0));
                }
                if let Some((_, tree, batch, pending)) = current.as_mut() {
                    batch.insert(k, v);
                    *pending += 1;
                    if *pending >= 10_000 {
                        tree.apply_batch(std::mem::take(batch))?;
                        *pending = 0;
                    }
                }
                summary.records += 1;
                *summary.trees.entry(r.tree).or_default() += 1;
            }
            Line::End { end: e } => end = Some(e),
        }
    }
    if let Some((_, tree, batch, _)) = current.take() {
        tree.apply_batch(batch)?;
    }
    let Some(end) = end else {
        return Err(bad_line(
            lineno,
            "the file ends before its end line: the backup is truncated",
        ));
    };
    summary.sha256 = hex(&hash.finalize());
    if end.records != summary.records || end.sha256 != summary.sha256 {
        return Err(bad_line(
            lineno,
            format!(
                "the backup says {} records / sha256 {}, the file holds {} / {}: it was altered",
                end.records, end.sha256, summary.records, summary.sha256
            ),
        ));
    }
    Ok(summary)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::journal::{JournalQuery, JournalStore as _};
    use mpay_messages::journal::JournalEntry;

    fn entry(i: i64) -> JournalEntry {
        JournalEntry {
            at: DateTime::<Utc>::from_timestamp(1_700_000_000 + i, 0).unwrap(),
            channel: "soap".into(),
            operation: "paSendRTV2".into(),
            organization: Some("77777777777".into()),
            key: Some(format!("k{i}")),
            status: 200,
            outcome: "OK".into(),
            latency_us: 1,
            request_id: format!("r{i}"),
            note: None,
            payload: Some(format!("<body>{i}</body>")),
        }
    }

    #[test]
    fn the_journal_in_its_files_is_backed_up_on_request_and_restored_into_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a")).unwrap();
        store.journal.set_segment_bytes(4096);
        for chunk in 0..10 {
            store
                .journal
                .append(&(0..30).map(|i| entry(chunk * 30 + i)).collect::<Vec<_>>())
                .unwrap();
        }
        let mut without = Vec::new();
        let plain = store.backup(&mut without, false).unwrap();
        assert!(!plain.trees.contains_key("journal"));
        let mut with = Vec::new();
        let full = store.backup(&mut with, true).unwrap();
        assert_eq!(full.trees.get("journal"), Some(&300));
        assert_eq!(full.records, plain.records + 300);

        let target = dir.path().join("b");
        let restored = restore(&target, &mut with.as_slice()).unwrap();
        assert_eq!(restored.sha256, full.sha256);
        let again = Store::open(&target).unwrap();
        assert_eq!(again.journal.len(), 300);
        let newest = again
            .journal
            .query(&JournalQuery {
                limit: 1,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(newest[0], entry(299));
        // moved into files: the restored store's own backup is the same
        let mut copy = Vec::new();
        assert_eq!(again.backup(&mut copy, true).unwrap().sha256, full.sha256);
    }
}
