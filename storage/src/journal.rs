//! The journal of exchanges, in its own append-only files (`<store>/journal/`), not in sled:
//! whatever the traffic, the journal takes a bounded amount of memory (sled 0.34 keeps per-page
//! state outside its `cache_capacity`: reading 165 MiB of journal from sled grew the process by
//! 76 MiB — issue 9.1), and retention removes whole files.
//!
//! Layout: segments `<first entry's UTC nanoseconds, 20 digits>-<sequence, 8 digits>.jsonl`, one
//! [`JournalEntry`] as JSON per line, readable with standard tools (`jq`, `grep`). A segment is
//! closed when it reaches its size (`[journal] max_bytes` / 16, set by the node at start-up) or
//! when it is a day old, so that age retention removes a day at a time; every start writes a new
//! segment (a line torn by a crash is skipped when read, never fatal).
//!
//! Written in batches by the `JournalWriter` actor (one `write` per batch, no fsync: the journal
//! is a diagnostic record, the receipts' legal copy lives in the ledger); pruned by the scheduler
//! after the retention period and, past `[journal] max_bytes`, oldest segments first.
//!
//! A store of the previous build kept its journal in the sled tree `journal`: it is moved into
//! segments at the first open, then the tree is dropped. A backup with `--journal` writes the
//! entries as records of that tree, and a restored store moves them again at its first open.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use mpay_messages::journal::JournalEntry;

use crate::codec::decode;
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
    /// Appends entries in one batch. Errors: `Io`.
    fn append(&self, entries: &[JournalEntry]) -> Result<(), StorageError>;
    /// Newest entries first.
    fn query(&self, q: &JournalQuery) -> Result<Vec<JournalEntry>, StorageError>;
    /// Removes entries older than `before` (whole segments: an entry goes with the newest entry
    /// of its segment); returns how many.
    fn prune(&self, before: DateTime<Utc>) -> Result<u64, StorageError>;
    /// Removes the oldest entries until the journal holds at most `max_bytes` (down to 90 % of
    /// it, so that the next passes do not remove a little each); returns how many. Errors: `Io`.
    fn prune_to_size(&self, max_bytes: u64) -> Result<u64, StorageError>;
    /// Bytes stored.
    fn size_bytes(&self) -> u64;
    /// Entries stored.
    fn len(&self) -> usize;
    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The folder of the journal's segments inside the store's folder.
pub const JOURNAL_DIR: &str = "journal";
/// The sled tree of the previous build's journal (moved into segments at open).
pub(crate) const LEGACY_TREE: &str = "journal";
/// Segment size until the node sets its own ([`FileJournal::set_segment_bytes`]).
const DEFAULT_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Smallest and largest segment.
const MIN_SEGMENT_BYTES: u64 = 4 * 1024;
const MAX_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// A segment is closed when its first entry is this old (nanoseconds: one day).
const SEGMENT_MAX_AGE_NANOS: u64 = 24 * 3600 * 1_000_000_000;

fn nanos(t: DateTime<Utc>) -> u64 {
    t.timestamp_nanos_opt()
        .map(|n| n.max(0) as u64)
        .unwrap_or(0)
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// UTC nanoseconds of its first entry (from its name).
    first: u64,
    /// Upper bound of its entries' instants: the newest written by this process, else the
    /// file's modification time (an entry is written after its exchange); never past the next
    /// segment's first entry (entries are appended in time order).
    last: u64,
    bytes: u64,
    /// Entries, once counted (segments of a previous run are counted on first need).
    entries: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// Oldest first; the last one is written to while `writer` is set.
    segments: Vec<Segment>,
    writer: Option<File>,
    next_seq: u64,
}

/// The journal in append-only segment files (see the module docs).
#[derive(Debug)]
pub struct FileJournal {
    dir: PathBuf,
    state: Mutex<State>,
    segment_bytes: AtomicU64,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> StorageError {
    move |e| StorageError::file(context, e)
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".jsonl")?;
    let (first, seq) = stem.split_once('-')?;
    Some((first.parse().ok()?, seq.parse().ok()?))
}

fn mtime_nanos(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .map(|t| nanos(DateTime::<Utc>::from(t)))
        .unwrap_or(u64::MAX)
}

/// Reads a segment's entries in order, calling `each`; a line that does not decode (torn by a
/// crash) is skipped. Memory: one line at a time.
fn read_segment(
    path: &Path,
    mut each: impl FnMut(JournalEntry) -> bool,
) -> Result<(), StorageError> {
    let file = match File::open(path) {
        Ok(f) => f,
        // removed by retention meanwhile
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::file(format!("reading {}", path.display()), e)),
    };
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(io(format!("reading {}", path.display())))?;
        if n == 0 {
            return Ok(());
        }
        if let Ok(entry) = serde_json::from_slice::<JournalEntry>(&line) {
            if !each(entry) {
                return Ok(());
            }
        }
    }
}

fn count_lines(path: &Path) -> u64 {
    let Ok(file) = File::open(path) else {
        return 0;
    };
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut n = 0u64;
    loop {
        let Ok(buf) = reader.fill_buf() else {
            return n;
        };
        if buf.is_empty() {
            return n;
        }
        n += buf.iter().filter(|b| **b == b'\n').count() as u64;
        let len = buf.len();
        reader.consume(len);
    }
}

impl FileJournal {
    /// Opens (or creates) the journal in `<store_dir>/journal`, moving the previous build's sled
    /// tree into it. Errors: the folder cannot be read or written.
    pub(crate) fn open(store_dir: &Path, db: &sled::Db) -> Result<Self, StorageError> {
        let dir = store_dir.join(JOURNAL_DIR);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let mut segments = Vec::new();
        let mut next_seq = 0u64;
        for item in std::fs::read_dir(&dir).map_err(io(format!("reading {}", dir.display())))? {
            let item = item.map_err(io(format!("reading {}", dir.display())))?;
            let name = item.file_name();
            let Some((first, seq)) = name.to_str().and_then(parse_name) else {
                continue;
            };
            let meta = item
                .metadata()
                .map_err(io(format!("reading {}", item.path().display())))?;
            next_seq = next_seq.max(seq + 1);
            segments.push(Segment {
                path: item.path(),
                first,
                last: mtime_nanos(&meta).max(first),
                bytes: meta.len(),
                entries: None,
            });
        }
        segments.sort_by(|a, b| a.path.cmp(&b.path));
        // entries are appended in time order: a segment ends before the next one begins
        let firsts: Vec<u64> = segments.iter().map(|s| s.first).collect();
        for (seg, next) in segments.iter_mut().zip(firsts.iter().skip(1)) {
            seg.last = seg.last.min((*next).max(seg.first));
        }
        let journal = FileJournal {
            dir,
            state: Mutex::new(State {
                segments,
                writer: None,
                next_seq,
            }),
            segment_bytes: AtomicU64::new(DEFAULT_SEGMENT_BYTES),
        };
        journal.move_legacy_tree(db)?;
        Ok(journal)
    }

    /// Moves the previous build's journal (sled tree `journal`, also where a restored backup
    /// puts it) into segments, in key order, then drops the tree.
    fn move_legacy_tree(&self, db: &sled::Db) -> Result<(), StorageError> {
        if !db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == LEGACY_TREE.as_bytes())
        {
            return Ok(());
        }
        let tree = db.open_tree(LEGACY_TREE)?;
        let mut batch = Vec::with_capacity(1024);
        let mut moved = 0u64;
        for item in tree.iter() {
            let (k, v) = item?;
            batch.push(decode::<JournalEntry>("journal", &k, &v)?);
            if batch.len() >= 1024 {
                self.append(&batch)?;
                moved += batch.len() as u64;
                batch.clear();
            }
        }
        moved += batch.len() as u64;
        self.append(&batch)?;
        self.close_writer()?;
        drop(tree);
        db.drop_tree(LEGACY_TREE)?;
        if moved > 0 {
            tracing::info!(entries = moved, dir = %self.dir.display(), "journal moved out of sled into its own files");
        }
        Ok(())
    }

    /// Sets the size at which a segment is closed (the node: `[journal] max_bytes` / 16, so
    /// that the size bound removes a sixteenth at a time), between 4 KiB and 64 MiB.
    pub fn set_segment_bytes(&self, bytes: u64) {
        self.segment_bytes.store(
            bytes.clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
            Ordering::Relaxed,
        );
    }

    /// The folder of the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn close_writer(&self) -> Result<(), StorageError> {
        let mut state = self.lock();
        if let Some(file) = state.writer.take() {
            file.sync_data()
                .map_err(io("closing a journal segment".into()))?;
        }
        Ok(())
    }

    /// Every entry, oldest first (a backup with the journal). Memory: one line at a time.
    pub fn for_each(
        &self,
        mut each: impl FnMut(JournalEntry) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let paths: Vec<PathBuf> = self
            .lock()
            .segments
            .iter()
            .map(|s| s.path.clone())
            .collect();
        let mut failed = None;
        for path in paths {
            read_segment(&path, |e| match each(e) {
                Ok(()) => true,
                Err(err) => {
                    failed = Some(err);
                    false
                }
            })?;
            if let Some(err) = failed.take() {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Removes the `count` oldest segments from the state and the disk (the one being written
    /// too when `count` covers all); returns the entries removed and their bytes.
    fn remove_oldest(&self, state: &mut State, count: usize) -> Result<(u64, u64), StorageError> {
        let mut entries = 0u64;
        let mut bytes = 0u64;
        let count = count.min(state.segments.len());
        if count == state.segments.len() {
            state.writer = None;
        }
        for seg in state.segments.drain(..count) {
            entries += seg.entries.unwrap_or_else(|| count_lines(&seg.path));
            bytes += seg.bytes;
            match std::fs::remove_file(&seg.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StorageError::file(
                        format!("removing {}", seg.path.display()),
                        e,
                    ))
                }
            }
        }
        Ok((entries, bytes))
    }
}

impl JournalStore for FileJournal {
    fn append(&self, entries: &[JournalEntry]) -> Result<(), StorageError> {
        let Some(head) = entries.first() else {
            return Ok(());
        };
        let mut buf = Vec::with_capacity(entries.len() * 512);
        let mut newest = 0u64;
        for e in entries {
            serde_json::to_writer(&mut buf, e).map_err(|err| StorageError::Encode {
                tree: "journal",
                source: std::sync::Arc::new(err),
            })?;
            buf.push(b'\n');
            newest = newest.max(nanos(e.at));
        }
        let max = self.segment_bytes.load(Ordering::Relaxed);
        let mut state = self.lock();
        let rotate = match (state.writer.is_some(), state.segments.last()) {
            (true, Some(seg)) => {
                seg.bytes >= max
                    || nanos(head.at).saturating_sub(seg.first) >= SEGMENT_MAX_AGE_NANOS
            }
            _ => true,
        };
        if rotate {
            if let Some(file) = state.writer.take() {
                file.sync_data()
                    .map_err(io("closing a journal segment".into()))?;
            }
            let first = nanos(head.at);
            if let Some(prev) = state.segments.last_mut() {
                prev.last = prev.last.min(first.max(prev.first));
            }
            let seq = state.next_seq;
            state.next_seq += 1;
            let path = self.dir.join(format!("{first:020}-{seq:08}.jsonl"));
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(io(format!("creating {}", path.display())))?;
            state.writer = Some(file);
            state.segments.push(Segment {
                path,
                first,
                last: first,
                bytes: 0,
                entries: Some(0),
            });
        }
        let State {
            writer, segments, ..
        } = &mut *state;
        if let (Some(file), Some(seg)) = (writer.as_mut(), segments.last_mut()) {
            file.write_all(&buf)
                .map_err(io(format!("writing {}", seg.path.display())))?;
            seg.bytes += buf.len() as u64;
            seg.last = seg.last.max(newest);
            seg.entries = seg.entries.map(|n| n + entries.len() as u64);
        }
        Ok(())
    }

    fn query(&self, q: &JournalQuery) -> Result<Vec<JournalEntry>, StorageError> {
        let from = q.from.map(nanos).unwrap_or(0);
        let limit = q.limit;
        let segments: Vec<(PathBuf, u64)> = self
            .lock()
            .segments
            .iter()
            .rev()
            .map(|s| (s.path.clone(), s.last))
            .collect();
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for (path, last) in segments {
            if last < from {
                break;
            }
            // the newest `limit - out.len()` matching entries of this segment
            let want = limit - out.len();
            let mut ring: VecDeque<JournalEntry> = VecDeque::with_capacity(want.min(1024));
            read_segment(&path, |e| {
                let wanted = nanos(e.at) >= from
                    && q.organization
                        .as_ref()
                        .is_none_or(|o| e.organization.as_ref() == Some(o));
                if wanted {
                    if ring.len() == want {
                        ring.pop_front();
                    }
                    ring.push_back(e);
                }
                true
            })?;
            let mut found: Vec<JournalEntry> = ring.into_iter().collect();
            found.sort_by_key(|e| std::cmp::Reverse(e.at));
            out.extend(found);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn prune(&self, before: DateTime<Utc>) -> Result<u64, StorageError> {
        let before = nanos(before);
        let mut state = self.lock();
        let count = state
            .segments
            .iter()
            .take_while(|s| s.last < before)
            .count();
        let (entries, _) = self.remove_oldest(&mut state, count)?;
        Ok(entries)
    }

    fn prune_to_size(&self, max_bytes: u64) -> Result<u64, StorageError> {
        let mut state = self.lock();
        let total: u64 = state.segments.iter().map(|s| s.bytes).sum();
        if total <= max_bytes {
            return Ok(0);
        }
        let target = max_bytes / 10 * 9;
        let mut left = total;
        let mut count = 0usize;
        for seg in &state.segments {
            if left <= target {
                break;
            }
            left -= seg.bytes;
            count += 1;
        }
        let (entries, _) = self.remove_oldest(&mut state, count)?;
        Ok(entries)
    }

    fn size_bytes(&self) -> u64 {
        self.lock().segments.iter().map(|s| s.bytes).sum()
    }

    fn len(&self) -> usize {
        let mut state = self.lock();
        let mut n = 0u64;
        for seg in &mut state.segments {
            let path = &seg.path;
            n += *seg.entries.get_or_insert_with(|| count_lines(path));
        }
        usize::try_from(n).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn entry(i: i64) -> JournalEntry {
        JournalEntry {
            at: DateTime::<Utc>::from_timestamp(1_700_000_000 + i, 0).unwrap(),
            channel: "soap".into(),
            operation: "paVerifyPaymentNotice".into(),
            organization: Some(if i % 2 == 0 { "even" } else { "odd" }.into()),
            key: Some(format!("k{i}")),
            status: 200,
            outcome: "OK".into(),
            latency_us: 1,
            request_id: "r".into(),
            note: None,
            payload: Some("x".repeat(900)),
        }
    }

    fn stored(dir: &Path) -> u64 {
        std::fs::read_dir(dir.join(JOURNAL_DIR))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }

    fn keys(v: &[JournalEntry]) -> Vec<String> {
        v.iter().map(|e| e.key.clone().unwrap()).collect()
    }

    #[test]
    fn the_size_bound_removes_the_oldest_segments_and_the_count_follows_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let j = FileJournal::open(dir.path(), &db).unwrap();
        j.set_segment_bytes(64 * 1024);
        for chunk in (0..1000).collect::<Vec<_>>().chunks(50) {
            j.append(&chunk.iter().map(|i| entry(*i)).collect::<Vec<_>>())
                .unwrap();
        }
        assert_eq!(j.size_bytes(), stored(dir.path()));
        assert_eq!(j.len(), 1000);
        let total = j.size_bytes();
        assert!(total > 900_000, "{total}");
        // reopened: sizes from the files, entries counted on demand, a new segment for writes
        drop(j);
        let j = FileJournal::open(dir.path(), &db).unwrap();
        j.set_segment_bytes(64 * 1024);
        assert_eq!((j.size_bytes(), j.len()), (total, 1000));
        let max = total / 4;
        let n = j.prune_to_size(max).unwrap();
        assert!(n > 0);
        assert!(j.size_bytes() <= max / 10 * 9, "{} > {max}", j.size_bytes());
        // a segment closes at 64 KiB plus at most one batch of 50 entries
        assert!(
            j.size_bytes() + 128 * 1024 >= max / 10 * 9,
            "removed too much"
        );
        assert_eq!(j.size_bytes(), stored(dir.path()));
        assert_eq!(j.len() as u64, 1000 - n);
        // the newest stayed, the oldest went
        let all = j
            .query(&JournalQuery {
                limit: 10_000,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.len() as u64, 1000 - n);
        assert_eq!(all[0].key.as_deref(), Some("k999"));
        assert_eq!(all.last().unwrap().key, Some(format!("k{n}")));
        // under the bound: nothing to do
        assert_eq!(j.prune_to_size(max).unwrap(), 0);
        // appends after the reopen go on; age pruning removes whole segments older than `before`
        j.append(&[entry(1000)]).unwrap();
        let kept = j.len() as u64;
        let removed = j.prune(entry(950).at).unwrap();
        assert_eq!(j.len() as u64, kept - removed);
        assert_eq!(j.size_bytes(), stored(dir.path()));
        let left = j
            .query(&JournalQuery {
                limit: 10_000,
                ..Default::default()
            })
            .unwrap();
        assert!(removed > 0);
        assert!(left.iter().any(|e| e.key.as_deref() == Some("k950")));
        // only the segment holding k950 keeps older entries (at most ~110 of them)
        let oldest: i64 = left.last().unwrap().key.as_ref().unwrap()[1..]
            .parse()
            .unwrap();
        assert!((840..=950).contains(&oldest), "oldest kept: k{oldest}");
    }

    #[test]
    fn queries_filter_by_organization_and_instant_newest_first_and_skip_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let j = FileJournal::open(dir.path(), &db).unwrap();
        j.set_segment_bytes(8 * 1024);
        j.append(&(0..40).map(entry).collect::<Vec<_>>()).unwrap();
        for i in 40..60 {
            j.append(&[entry(i)]).unwrap();
        }
        // a crash in the middle of a write leaves half a line
        let last = j.lock().segments.last().unwrap().path.clone();
        OpenOptions::new()
            .append(true)
            .open(&last)
            .unwrap()
            .write_all(b"{\"at\":\"2023-")
            .unwrap();
        let q = |org: Option<&str>, from: Option<i64>, limit| {
            keys(
                &j.query(&JournalQuery {
                    organization: org.map(str::to_owned),
                    from: from.map(|i| entry(i).at),
                    limit,
                })
                .unwrap(),
            )
        };
        assert_eq!(q(None, None, 3), ["k59", "k58", "k57"]);
        assert_eq!(q(Some("even"), None, 3), ["k58", "k56", "k54"]);
        assert_eq!(q(Some("odd"), Some(55), 100), ["k59", "k57", "k55"]);
        assert_eq!(q(None, None, 1000).len(), 60);
        assert!(q(None, None, 0).is_empty());
        // the torn line is not an entry; writing goes on in a new segment after a reopen
        drop(j);
        let j = FileJournal::open(dir.path(), &db).unwrap();
        j.append(&[entry(60)]).unwrap();
        let all = j
            .query(&JournalQuery {
                limit: 1000,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.len(), 61);
        assert_eq!(all[0].key.as_deref(), Some("k60"));
    }

    #[test]
    fn the_previous_builds_sled_journal_is_moved_into_segments_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree(LEGACY_TREE).unwrap();
        for i in 0..2500u32 {
            let mut key = nanos(entry(i64::from(i)).at).to_be_bytes().to_vec();
            key.extend_from_slice(&i.to_be_bytes());
            tree.insert(key, crate::codec::encode(&entry(i64::from(i))).unwrap())
                .unwrap();
        }
        drop(tree);
        let j = FileJournal::open(dir.path(), &db).unwrap();
        assert!(!db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == LEGACY_TREE.as_bytes()));
        assert_eq!(j.len(), 2500);
        let newest = j
            .query(&JournalQuery {
                limit: 2,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(keys(&newest), ["k2499", "k2498"]);
        let mut seen = Vec::new();
        j.for_each(|e| {
            seen.push(e.key.unwrap());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 2500);
        assert_eq!(seen[0], "k0");
        // opening again moves nothing more
        drop(j);
        assert_eq!(FileJournal::open(dir.path(), &db).unwrap().len(), 2500);
    }
}
