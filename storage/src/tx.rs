//! Units of work: the one transaction helper ([`transact`]) every multi-tree write goes
//! through, and the write of a position with its index entries inside it.
//!
//! A position and its index entries live in six trees (`positions`, `by_notice`, `by_iuv`,
//! `by_debtor`, `by_due`, `timers`); a receipt, an archive document or a feed checkpoint adds
//! its own trees to the same transaction. Why a transaction and not one sled `Batch`: a batch
//! applies blind writes to ONE tree, while these writes must read first (compare-and-swap on
//! the stored position, uniqueness of notice numbers and IUVs across positions) and span
//! several trees. Single-tree writes that need no read (journal appends and pruning, index
//! builds at start-up) use a `Batch`.

use std::collections::BTreeSet;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use mpay_messages::position::DebtPosition;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use crate::codec::encode_record;
use crate::error::{LedgerError, StorageError};
use crate::keys::{code_of_key, conflict, index_entries, position_key, Index, IndexEntry};

/// Every multi-tree unit of work of the process holds this gate for reading while it runs; an
/// online backup holds it for writing while it copies the trees, so that the copy never sees
/// half of a unit of work (a receipt without the position it paid). Single-tree writes
/// (journal, counters) do not take it: each of their records is consistent on its own.
static UNITS_OF_WORK: RwLock<()> = RwLock::new(());

/// Held by a unit of work while it runs (see [`UNITS_OF_WORK`]).
pub(crate) fn unit_of_work() -> RwLockReadGuard<'static, ()> {
    UNITS_OF_WORK.read().unwrap_or_else(|p| p.into_inner())
}

/// Held by an online backup: waits for the running units of work, holds back new ones.
pub(crate) fn pause_units_of_work() -> RwLockWriteGuard<'static, ()> {
    UNITS_OF_WORK.write().unwrap_or_else(|p| p.into_inner())
}

/// What a unit of work's closure returns to stop (`Abort(e)`) or on a storage error.
pub type Abort<E = LedgerError> = ConflictableTransactionError<E>;

/// The ledger's trees in a unit of work.
pub struct LedgerTx<'a> {
    /// `positions`.
    pub positions: &'a TransactionalTree,
    notice: &'a TransactionalTree,
    iuv: &'a TransactionalTree,
    debtor: &'a TransactionalTree,
    due: &'a TransactionalTree,
    timer: &'a TransactionalTree,
}

impl<'a> LedgerTx<'a> {
    /// From the six trees in the order `positions, by_notice, by_iuv, by_debtor, by_due, timers`.
    pub fn new(t: [&'a TransactionalTree; 6]) -> Self {
        let [positions, notice, iuv, debtor, due, timer] = t;
        LedgerTx {
            positions,
            notice,
            iuv,
            debtor,
            due,
            timer,
        }
    }

    /// The tree of an index.
    pub fn index_tree(&self, i: Index) -> &'a TransactionalTree {
        match i {
            Index::Notice => self.notice,
            Index::Iuv => self.iuv,
            Index::Debtor => self.debtor,
            Index::Due => self.due,
            Index::Timer => self.timer,
        }
    }
}

/// Runs `f` as one atomic unit of work over the ledger's six trees (`[positions, by_notice,
/// by_iuv, by_debtor, by_due, timers]`) and the caller's `extra` trees (given to `f` in the same
/// order). `f` may run more than once (sled retries on conflict); it returns `Abort(e)` to stop
/// with `e`. A storage failure becomes `E::from(StorageError)`.
pub(crate) fn transact<R, E>(
    ledger: [&sled::Tree; 6],
    extra: &[&sled::Tree],
    f: impl Fn(&LedgerTx<'_>, &[TransactionalTree]) -> Result<R, Abort<E>>,
) -> Result<R, E>
where
    E: From<StorageError>,
{
    let _running = unit_of_work();
    let mut trees: Vec<&sled::Tree> = Vec::with_capacity(6 + extra.len());
    trees.extend_from_slice(&ledger);
    trees.extend_from_slice(extra);
    let result = trees
        .as_slice()
        .transaction(|view: &Vec<TransactionalTree>| {
            let Some((l, rest)) = view.split_first_chunk::<6>() else {
                return Err(Abort::Storage(sled::Error::ReportableBug(
                    "a unit of work lost its trees".into(),
                )));
            };
            let [a, b, c, d, e, g] = l;
            f(&LedgerTx::new([a, b, c, d, e, g]), rest)
        });
    match result {
        Ok(r) => Ok(r),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(E::from(StorageError::from(e))),
    }
}

fn entry_set(p: Option<&DebtPosition>) -> BTreeSet<IndexEntry> {
    p.map(index_entries)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Writes `new` over `old` (`None`: created / deleted) inside a unit of work: drops `old`'s
/// index entries that `new` lacks, refuses notice numbers and IUVs held by another position,
/// writes `new`'s entries and record (compact encoding).
pub fn write_position(
    tx: &LedgerTx<'_>,
    old: Option<&DebtPosition>,
    new: Option<&DebtPosition>,
) -> Result<(), Abort> {
    let old_entries = entry_set(old);
    let new_entries = entry_set(new);
    for e in old_entries.difference(&new_entries) {
        tx.index_tree(e.index).remove(e.key.as_slice())?;
    }
    if let Some(p) = new {
        for e in new_entries.difference(&old_entries) {
            let tree = tx.index_tree(e.index);
            if e.index.is_unique() {
                if let Some(holder) = tree.get(e.key.as_slice())? {
                    if holder.as_ref() != p.iupd.as_bytes() {
                        return Err(Abort::Abort(conflict(e.index, &e.code, &holder)));
                    }
                }
            }
            tree.insert(e.key.as_slice(), e.value.as_slice())?;
        }
        let key = position_key(p.organization_fiscal_code.as_str(), &p.iupd);
        let bytes = encode_record(POSITIONS, p).map_err(|e| Abort::Abort(e.into()))?;
        tx.positions.insert(key, bytes)?;
    } else if let Some(p) = old {
        tx.positions
            .remove(position_key(p.organization_fiscal_code.as_str(), &p.iupd))?;
    }
    Ok(())
}

/// Name of the positions tree.
pub(crate) const POSITIONS: &str = "positions";

/// [`write_position`] over the six trees as an array (the form the feed writer uses).
#[doc(hidden)]
pub fn apply(
    trees: &[&TransactionalTree; 6],
    old: Option<&DebtPosition>,
    new: Option<&DebtPosition>,
) -> Result<(), Abort> {
    let [a, b, c, d, e, g] = *trees;
    write_position(&LedgerTx::new([a, b, c, d, e, g]), old, new)
}

/// A position write prepared outside a transaction — record encoded, index entries to drop
/// and to add computed — so that a bulk writer's transaction (which holds sled's global
/// transaction lock, blocking every reader) does only the tree operations.
pub struct PreparedWrite {
    key: Vec<u8>,
    iupd: Vec<u8>,
    bytes: Vec<u8>,
    removes: Vec<(Index, Vec<u8>)>,
    inserts: Vec<IndexEntry>,
}

/// Prepares writing `new` over `old` (`None` = created): the same changes as
/// [`write_position`].
pub fn prepare(
    old: Option<&DebtPosition>,
    new: &DebtPosition,
) -> Result<PreparedWrite, StorageError> {
    let old_entries = entry_set(old);
    let new_entries = entry_set(Some(new));
    Ok(PreparedWrite {
        key: position_key(new.organization_fiscal_code.as_str(), &new.iupd),
        iupd: new.iupd.as_bytes().to_vec(),
        bytes: encode_record(POSITIONS, new)?,
        removes: old_entries
            .difference(&new_entries)
            .map(|e| (e.index, e.key.clone()))
            .collect(),
        inserts: new_entries.difference(&old_entries).cloned().collect(),
    })
}

impl PreparedWrite {
    /// Key of the position in the `positions` tree.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Bytes it adds to the store's log (about).
    pub fn size(&self) -> usize {
        self.key.len()
            + self.bytes.len()
            + self
                .inserts
                .iter()
                .map(|e| e.key.len() + e.value.len())
                .sum::<usize>()
    }

    /// Applies it inside a unit of work (see [`write_position`]).
    pub fn write(&self, tx: &LedgerTx<'_>) -> Result<(), Abort> {
        for (index, k) in &self.removes {
            tx.index_tree(*index).remove(k.as_slice())?;
        }
        for e in &self.inserts {
            let tree = tx.index_tree(e.index);
            if e.index.is_unique() {
                if let Some(holder) = tree.get(e.key.as_slice())? {
                    if holder.as_ref() != self.iupd.as_slice() {
                        return Err(Abort::Abort(conflict(e.index, &e.code, &holder)));
                    }
                }
            }
            tree.insert(e.key.as_slice(), e.value.as_slice())?;
        }
        tx.positions
            .insert(self.key.as_slice(), self.bytes.as_slice())?;
        Ok(())
    }
}

/// [`PreparedWrite::write`] over the six trees as an array (the form the feed writer uses).
#[doc(hidden)]
pub fn apply_prepared(trees: &[&TransactionalTree; 6], w: &PreparedWrite) -> Result<(), Abort> {
    let [a, b, c, d, e, g] = *trees;
    w.write(&LedgerTx::new([a, b, c, d, e, g]))
}

/// The unique index entries (notice numbers, IUVs) that writing `new` over `old` would claim:
/// exactly the keys [`write_position`] checks for another holder. Lets a bulk writer decide
/// uniqueness before its transaction, so that one conflicting position is rejected on its own
/// instead of aborting a whole batch.
pub fn claims(old: Option<&DebtPosition>, new: &DebtPosition) -> Vec<IndexEntry> {
    let old_entries = entry_set(old);
    index_entries(new)
        .into_iter()
        .filter(|e| e.index.is_unique() && !old_entries.contains(e))
        .collect()
}

/// The unique index entries that writing `new` over `old` would release (held by `old`, not
/// by `new`).
pub fn releases(old: Option<&DebtPosition>, new: &DebtPosition) -> Vec<IndexEntry> {
    let Some(old) = old else { return Vec::new() };
    let new_entries = entry_set(Some(new));
    index_entries(old)
        .into_iter()
        .filter(|e| e.index.is_unique() && !new_entries.contains(e))
        .collect()
}

/// [`claims`] as `(index number, key)` pairs (the form the feed writer uses).
#[doc(hidden)]
pub fn unique_claims(old: Option<&DebtPosition>, new: &DebtPosition) -> Vec<(usize, Vec<u8>)> {
    claims(old, new)
        .into_iter()
        .map(|e| (e.index.number(), e.key))
        .collect()
}

/// [`releases`] as `(index number, key)` pairs (the form the feed writer uses).
#[doc(hidden)]
pub fn unique_releases(old: Option<&DebtPosition>, new: &DebtPosition) -> Vec<(usize, Vec<u8>)> {
    releases(old, new)
        .into_iter()
        .map(|e| (e.index.number(), e.key))
        .collect()
}

/// The error when `key` of unique index number `tree` (0 notice, 1 IUV) is held by `holder`
/// (the form the feed writer uses; [`conflict`] takes the index and the code).
#[doc(hidden)]
pub fn claim_conflict(tree: usize, key: &[u8], holder: &[u8]) -> LedgerError {
    let index = Index::from_number(tree).unwrap_or(Index::Iuv);
    conflict(index, &code_of_key(key), holder)
}
