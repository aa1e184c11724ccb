//! Committing a batch of planned groups: positions, index entries, outcome chunks and the checkpoint in one sled transaction.

use crate::codec::encode;
use chrono::Utc;
use mpay_messages::feeds::{FeedRow, RowOutcome};
use sled::Transactional;
use std::ops::Range;

use crate::ledger::{apply_prepared, guard_payments, LedgerError};
use mpay_messages::position::PositionStatus;

use super::engine::*;
use super::keys::*;
use super::outcomes::*;
use super::types::*;

impl Ctx<'_> {
    /// Applies a batch of row groups: each group (one position) all-or-nothing, the whole batch
    /// — positions, index entries, outcome lines and the checkpoint record — in one transaction.
    /// A crash leaves either all of it or none of it, so a resumed load restarts exactly after
    /// the last committed batch. A concurrent change of a position (or of an IUV / notice number
    /// the batch claims) between planning and commit aborts the transaction; the batch is then
    /// split in halves, each planned again from the new state and committed on its own, down to
    /// single positions retried like a lone compare-and-swap.
    pub(crate) fn process_batch(
        &mut self,
        rows: &[FeedRow],
        groups: &[Range<usize>],
        progress: &mut dyn FnMut(&FeedProgress) -> ProgressControl,
    ) -> Result<ProgressControl, FeedError> {
        self.commit_groups(rows, groups)?;
        Ok(progress(&FeedProgress {
            rows_total: self.rec.rows_total,
            rows_read: self.rec.rows_read,
            rows_loaded: self.rec.rows_loaded,
            rows_rejected: self.rec.rows_rejected,
            groups_committed: self.rec.groups_committed,
        }))
    }

    /// Commits `groups` in as few transactions as [`TX_BYTES_BUDGET`] allows.
    pub(crate) fn commit_groups(
        &mut self,
        rows: &[FeedRow],
        groups: &[Range<usize>],
    ) -> Result<(), FeedError> {
        let mut rest = groups;
        let mut conflicts = 0;
        while !rest.is_empty() {
            match self.try_batch(rows, rest)? {
                Some(done) => rest = rest.get(done..).unwrap_or_default(),
                None if rest.len() > 1 => {
                    let (a, b) = rest.split_at(rest.len() / 2);
                    self.commit_groups(rows, a)?;
                    rest = b;
                }
                None => {
                    conflicts += 1;
                    if conflicts >= 5 {
                        return Err(FeedError::Ledger(LedgerError::Contended));
                    }
                }
            }
        }
        Ok(())
    }

    /// Plans the first groups of `groups` (up to [`TX_BYTES_BUDGET`], at least one) and commits
    /// them in one transaction: `Some(groups committed)`, or `None` when something changed
    /// concurrently (plan again).
    pub(crate) fn try_batch(
        &mut self,
        rows: &[FeedRow],
        groups: &[Range<usize>],
    ) -> Result<Option<usize>, FeedError> {
        let mut view = BatchView::default();
        let mut plans = Vec::with_capacity(groups.len());
        let mut bytes = 0usize;
        for g in groups {
            if bytes >= TX_BYTES_BUDGET {
                break;
            }
            let group = rows.get(g.clone()).unwrap_or_default();
            let plan = self.plan_group(group, &plans, &mut view)?;
            bytes += OUTCOME_BYTES * group.len();
            if let Some(w) = &plan.write {
                bytes += w.prepared.size();
                view.positions.insert(w.new.iupd.clone(), plans.len());
            }
            plans.push(plan);
        }
        drop(view);
        let groups = groups.get(..plans.len()).unwrap_or_default();
        // outcome lines and the checkpoint record, encoded before the transaction
        let mut rec = self.rec.clone();
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut chunk: Vec<StoredOutcome> = Vec::with_capacity(OUTCOME_CHUNK);
        let mut created = 0u64;
        for plan in &plans {
            for w in &plan.work {
                let (line, iuv) = self.line(w);
                rec.rows_read += 1;
                match line.outcome {
                    RowOutcome::Ko => rec.rows_rejected += 1,
                    RowOutcome::Warn => {
                        rec.rows_loaded += 1;
                        rec.rows_warned += 1;
                    }
                    RowOutcome::Ok => rec.rows_loaded += 1,
                }
                chunk.push(StoredOutcome { line, iuv });
                if chunk.len() >= OUTCOME_CHUNK {
                    entries.push(self.outcome_chunk(&mut chunk)?);
                }
            }
            if let Some(w) = &plan.write {
                if w.old.is_none() {
                    created += 1;
                }
            }
        }
        if !chunk.is_empty() {
            entries.push(self.outcome_chunk(&mut chunk)?);
        }
        let last = groups
            .last()
            .and_then(|g| g.end.checked_sub(1))
            .and_then(|i| rows.get(i))
            .map(|r| (r.number, r.byte_offset))
            .unwrap_or((rec.last_committed_row, rec.last_committed_offset));
        rec.groups_committed += groups.len() as u64;
        rec.last_committed_row = last.0;
        rec.last_committed_offset = last.1;
        rec.updated_at = Utc::now();
        let rec_bytes = encode(&rec)?;
        // everything but the tree operations is done before the transaction: it holds sled's
        // global transaction lock, which every reader of the store waits for
        let writes: Vec<&PlannedWrite> = plans.iter().filter_map(|p| p.write.as_ref()).collect();
        let l = &*self.store.ledger;
        let now = Utc::now();
        let _running = crate::tx::unit_of_work();
        let result = (
            &l.positions,
            &l.by_notice,
            &l.by_iuv,
            &l.by_debtor,
            &l.by_due,
            &l.timers,
            &self.trees.feeds,
            &self.trees.outcomes,
            &l.in_progress,
        )
            .transaction(|(p, n, i, d, due, t, f, o, paying)| {
                let ledger = [p, n, i, d, due, t];
                for w in &writes {
                    check_expected(p, w.prepared.key(), &w.expect)?;
                    if let Some(old) = &w.old {
                        // a paGetPayment since the plan: the group is planned again (and
                        // refused there, with its reason)
                        let target = (w.new.status != PositionStatus::Invalid).then_some(&w.new);
                        match guard_payments(paying, old, target, now) {
                            Err(sled::transaction::ConflictableTransactionError::Abort(_)) => {
                                return Err(sled::transaction::ConflictableTransactionError::Abort(
                                    LedgerError::Contended,
                                ))
                            }
                            other => other?,
                        }
                    }
                    apply_prepared(&ledger, &w.prepared)?;
                }
                for (k, v) in &entries {
                    o.insert(k.as_slice(), v.as_slice())?;
                }
                f.insert(self.key.as_slice(), rec_bytes.as_slice())?;
                Ok(())
            });
        match result {
            Ok(()) => {
                l.note_created(created);
                self.rec = rec;
                Ok(Some(groups.len()))
            }
            Err(sled::transaction::TransactionError::Abort(e)) if is_concurrent_change(&e) => {
                metrics::counter!("mpay_feed_batch_retries_total").increment(1);
                Ok(None)
            }
            Err(sled::transaction::TransactionError::Abort(e)) => Err(e.into()),
            Err(sled::transaction::TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Key and value of a chunk of consecutive row outcomes (emptied).
    pub(crate) fn outcome_chunk(
        &self,
        chunk: &mut Vec<StoredOutcome>,
    ) -> Result<(Vec<u8>, Vec<u8>), FeedError> {
        let first = chunk.first().and_then(|o| o.line.row).unwrap_or(0);
        let mut rest = first.to_be_bytes().to_vec();
        rest.push(CHUNK_MARK);
        let packed: Vec<Packed> = chunk.drain(..).map(Packed::pack).collect();
        let value = encode(&packed)?;
        Ok((sub_key(&self.key, 1, &rest), value))
    }
}
