//! The pre-scan work set (IUDs / IUPDs of the file): in memory up to a budget, then in `feed_seen`.

use super::keys::*;
use super::types::*;
use std::collections::HashSet;
use std::hash::BuildHasher;

/// Most memory the pre-scan work set ([`SeenSet`]) takes before it moves to the store.
pub(crate) const SEEN_MEMORY_BUDGET: usize = 96 * 1024 * 1024;
/// Arena chunk of [`KeySet`] (also the longest key kept there).
pub(crate) const KEY_CHUNK: usize = 1 << 20;

/// An exact set of byte strings, compact: keys are appended to 1 MiB arena chunks and an
/// open-addressing table (linear probing) holds one `u64` per key — chunk (24 bits), offset
/// (20 bits), length (20 bits) — so an entry costs its length plus 9 to 18 bytes.
pub(crate) struct KeySet {
    pub(crate) hasher: std::hash::RandomState,
    pub(crate) slots: Vec<u64>,
    pub(crate) len: usize,
    pub(crate) chunks: Vec<Vec<u8>>,
    /// Keys that do not fit an arena slot (absurdly long fields).
    pub(crate) big: HashSet<Vec<u8>>,
    pub(crate) big_bytes: usize,
}

impl KeySet {
    pub(crate) fn new() -> Self {
        Self {
            hasher: std::hash::RandomState::new(),
            slots: vec![0; 1024],
            len: 0,
            chunks: Vec::new(),
            big: HashSet::new(),
            big_bytes: 0,
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.slots.len() * 8 + self.chunks.len() * KEY_CHUNK + self.big_bytes
    }

    pub(crate) fn key_of(chunks: &[Vec<u8>], r: u64) -> &[u8] {
        let chunk = usize::try_from(r >> 40).unwrap_or(usize::MAX);
        let off = usize::try_from((r >> 20) & 0xF_FFFF).unwrap_or(0);
        let len = usize::try_from(r & 0xF_FFFF).unwrap_or(0);
        chunks
            .get(chunk)
            .and_then(|c| c.get(off..off + len))
            .unwrap_or_default()
    }

    /// Slot holding `k`, or the empty slot where it would go.
    pub(crate) fn find(&self, k: &[u8], h: u64) -> (usize, bool) {
        let mask = self.slots.len() - 1;
        let mut i = usize::try_from(h).unwrap_or(0) & mask;
        loop {
            match self.slots.get(i).copied().unwrap_or(0) {
                0 => return (i, false),
                r if Self::key_of(&self.chunks, r) == k => return (i, true),
                _ => i = (i + 1) & mask,
            }
        }
    }

    pub(crate) fn contains(&self, k: &[u8]) -> bool {
        if k.len() >= KEY_CHUNK {
            return self.big.contains(k);
        }
        self.find(k, self.hasher.hash_one(k)).1
    }

    /// Adds `k` (non-empty); `false` when it was already there.
    pub(crate) fn insert(&mut self, k: &[u8]) -> bool {
        if k.len() >= KEY_CHUNK {
            let new = self.big.insert(k.to_vec());
            if new {
                self.big_bytes += k.len();
            }
            return new;
        }
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow();
        }
        let h = self.hasher.hash_one(k);
        let (i, found) = self.find(k, h);
        if found {
            return false;
        }
        if self
            .chunks
            .last()
            .is_none_or(|c| c.len() + k.len() > KEY_CHUNK)
        {
            self.chunks.push(Vec::with_capacity(KEY_CHUNK));
        }
        let chunk = self.chunks.len() - 1;
        let Some(c) = self.chunks.last_mut() else {
            return false;
        };
        let off = c.len();
        c.extend_from_slice(k);
        let r = ((chunk as u64) << 40) | ((off as u64) << 20) | k.len() as u64;
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = r;
        }
        self.len += 1;
        true
    }

    pub(crate) fn grow(&mut self) {
        let mut slots = vec![0u64; self.slots.len() * 2];
        let mask = slots.len() - 1;
        for &r in self.slots.iter().filter(|r| **r != 0) {
            let h = self.hasher.hash_one(Self::key_of(&self.chunks, r));
            let mut i = usize::try_from(h).unwrap_or(0) & mask;
            while slots.get(i).is_some_and(|s| *s != 0) {
                i = (i + 1) & mask;
            }
            if let Some(s) = slots.get_mut(i) {
                *s = r;
            }
        }
        self.slots = slots;
    }

    /// Every key, in no particular order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.slots
            .iter()
            .filter(|r| **r != 0)
            .map(|r| Self::key_of(&self.chunks, *r))
            .chain(self.big.iter().map(Vec::as_slice))
    }
}

/// The pre-scan's work set of one load: the file's IUDs (`I` ++ IUD) and the IUPDs met so far
/// (`P` ++ IUPD). In memory ([`KeySet`]) up to [`SEEN_MEMORY_BUDGET`]; past it, moved to the
/// `feed_seen` tree under the load's prefix, so that memory stays bounded whatever the size of
/// the file (the tree is only slower). Rebuilt by every pre-scan, so nothing of it needs to
/// survive a crash.
pub(crate) struct SeenSet {
    pub(crate) tree: sled::Tree,
    pub(crate) prefix: Vec<u8>,
    pub(crate) mem: Option<KeySet>,
    /// Memory budget of `mem` ([`SEEN_MEMORY_BUDGET`]).
    pub(crate) budget: usize,
    /// Spilled mode: keys written since the last `apply_batch`.
    pub(crate) pending: HashSet<Vec<u8>>,
    pub(crate) batch: sled::Batch,
}

impl SeenSet {
    pub(crate) fn new(tree: sled::Tree, feed_key: &[u8]) -> Self {
        Self {
            tree,
            prefix: sub_prefix(feed_key),
            mem: Some(KeySet::new()),
            budget: SEEN_MEMORY_BUDGET,
            pending: HashSet::new(),
            batch: sled::Batch::default(),
        }
    }

    pub(crate) fn tree_key(&self, k: &[u8]) -> Vec<u8> {
        let mut t = Vec::with_capacity(self.prefix.len() + k.len());
        t.extend_from_slice(&self.prefix);
        t.extend_from_slice(k);
        t
    }

    pub(crate) fn key(tag: u8, value: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + value.len());
        k.push(tag);
        k.extend_from_slice(value.as_bytes());
        k
    }

    /// Adds `tag ++ value`; `false` when it was already there.
    pub(crate) fn insert(&mut self, tag: u8, value: &str) -> Result<bool, FeedError> {
        let k = Self::key(tag, value);
        if let Some(m) = &mut self.mem {
            let new = m.insert(&k);
            if m.bytes() > self.budget {
                self.spill()?;
            }
            return Ok(new);
        }
        let tk = self.tree_key(&k);
        if self.pending.contains(&tk) || self.tree.contains_key(&tk)? {
            return Ok(false);
        }
        self.batch.insert(tk.as_slice(), &[]);
        self.pending.insert(tk);
        if self.pending.len() >= SEEN_BATCH {
            self.flush()?;
        }
        Ok(true)
    }

    pub(crate) fn contains(&self, tag: u8, value: &str) -> Result<bool, FeedError> {
        let k = Self::key(tag, value);
        if let Some(m) = &self.mem {
            return Ok(m.contains(&k));
        }
        let tk = self.tree_key(&k);
        Ok(self.pending.contains(&tk) || self.tree.contains_key(&tk)?)
    }

    /// Moves the in-memory keys to the tree.
    pub(crate) fn spill(&mut self) -> Result<(), FeedError> {
        let Some(m) = self.mem.take() else {
            return Ok(());
        };
        tracing::info!(
            keys = m.len,
            "feed work set over its memory budget: moved to the store"
        );
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for k in m.keys() {
            batch.insert(self.tree_key(k), &[]);
            n += 1;
            if n >= SEEN_BATCH {
                self.tree.apply_batch(std::mem::take(&mut batch))?;
                n = 0;
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Writes the spilled keys not written yet.
    pub(crate) fn flush(&mut self) -> Result<(), FeedError> {
        if !self.pending.is_empty() {
            self.tree.apply_batch(std::mem::take(&mut self.batch))?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Empties the set (and its part of the tree, `I` and `P` keys only).
    pub(crate) fn clear(&mut self) -> Result<(), FeedError> {
        self.mem = Some(KeySet::new());
        self.pending.clear();
        self.batch = sled::Batch::default();
        clear_prefix(&self.tree, &self.tree_key(b"I"))?;
        clear_prefix(&self.tree, &self.tree_key(b"P"))?;
        Ok(())
    }
}
