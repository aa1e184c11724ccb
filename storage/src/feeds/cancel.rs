//! FULL mode: cancellation of the in-scope installments absent from the file, resumable by a cursor.

use chrono::Utc;
use mpay_messages::feeds::{ErrorCode, OutcomeLine, RowOutcome};
use mpay_messages::position::{OptionStatus, PositionStatus};
use sled::Transactional;

use crate::codec::encode;
use crate::ledger::{apply_prepared, guard_payments, LedgerError};

use super::engine::*;
use super::keys::*;
use super::outcomes::*;
use super::types::*;

impl Ctx<'_> {
    /// FULL mode (FORMAT.md §5.6): every in-scope installment absent from the file is
    /// cancelled unless paid (then reported `NON_ANNULLABILE` / `SKIPPED_PAID`). The scope is
    /// streamed in key order, never collected; each transaction covers up to
    /// [`LoadOptions::batch_positions`] touched positions with their outcome lines, the record
    /// and the scan cursor, so a resumed load continues after the last committed position
    /// (nothing cancelled or counted twice).
    pub(crate) fn cancel_absent(&mut self) -> Result<(), FeedError> {
        let cursor_key = sub_key(&self.key, b'C', b"");
        loop {
            let mut attempts = 0;
            let more = loop {
                match self.cancel_batch(&cursor_key)? {
                    Some(more) => break more,
                    None => {
                        attempts += 1;
                        if attempts >= 5 {
                            return Err(FeedError::Ledger(LedgerError::Contended));
                        }
                    }
                }
            };
            if !more {
                return Ok(());
            }
        }
    }

    /// One cancellation transaction: `Some(more to scan)`, or `None` when a position changed
    /// concurrently (scan again from the same cursor).
    pub(crate) fn cancel_batch(&mut self, cursor_key: &[u8]) -> Result<Option<bool>, FeedError> {
        let after = self.trees.seen.get(cursor_key)?.map(|v| v.to_vec());
        let limit = self.opts.batch_positions.max(1);
        let mut rec = self.rec.clone();
        let mut writes: Vec<PlannedWrite> = Vec::new();
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let (mut touched, mut scanned, mut bytes_planned) = (0usize, 0usize, 0usize);
        let mut last_key: Option<sled::IVec> = None;
        let mut more = false;
        for item in self.scope_scan(after) {
            let (k, bytes, p) = item?;
            if touched >= limit || scanned >= CANCEL_SCAN_BATCH || bytes_planned >= TX_BYTES_BUDGET
            {
                more = true;
                break;
            }
            scanned += 1;
            last_key = Some(k);
            let mut absent = Vec::new();
            for o in &p.payment_options {
                if let Some(iud) = meta_get(o, meta::IUD) {
                    if !self.seen_iud(iud)? {
                        absent.push(o);
                    }
                }
            }
            if absent.is_empty() {
                continue;
            }
            touched += 1;
            let paid_position = p.status.has_payments();
            // notices being paid (paGetPayment answered, token not expired) are left alone:
            // checked here, when planned, and again inside the batch's transaction (a
            // paGetPayment in between aborts it; the batch is planned again from the same
            // cursor and leaves that notice alone)
            let paying = self.store.ledger.payments_in_progress(&p, Utc::now())?;
            let cancel_iuds: Vec<&str> = absent
                .iter()
                .filter(|o| {
                    !paid_position
                        && o.status == OptionStatus::PoUnpaid
                        && !paying.contains_key(&o.nav)
                })
                .filter_map(|o| meta_get(o, meta::IUD))
                .collect();
            if !cancel_iuds.is_empty() && !self.opts.dry_run {
                let mut new = p.clone();
                if cancel_iuds.len() == p.payment_options.len() {
                    new.status = PositionStatus::Invalid;
                } else {
                    new.payment_options.retain(|o| {
                        meta_get(o, meta::IUD).is_none_or(|i| !cancel_iuds.contains(&i))
                    });
                }
                new.revision = p.revision.saturating_add(1);
                new.last_updated_date = Utc::now();
                bytes_planned += OUTCOME_BYTES * absent.len();
                let w = PlannedWrite::new(Some(p.clone()), new, Expect::Bytes(bytes))?;
                bytes_planned += w.prepared.size();
                writes.push(w);
            }
            for o in &absent {
                let iud = meta_get(o, meta::IUD).unwrap_or_default();
                let (outcome, performed, code, desc) = if cancel_iuds.contains(&iud) {
                    rec.cancelled += 1;
                    (
                        RowOutcome::Ok,
                        "ANNULLATO",
                        "OK",
                        "Assente dal flusso completo: annullata",
                    )
                } else if !paid_position && paying.contains_key(&o.nav) {
                    rec.skipped_paid += 1;
                    (
                        RowOutcome::Warn,
                        "NON_ANNULLABILE",
                        ErrorCode::SkippedInPayment.as_str(),
                        "Assente dal flusso ma con un pagamento in corso: non annullata",
                    )
                } else {
                    rec.skipped_paid += 1;
                    (
                        RowOutcome::Warn,
                        "NON_ANNULLABILE",
                        ErrorCode::SkippedPaid.as_str(),
                        "Assente dal flusso ma gia' pagata: non annullata",
                    )
                };
                let line = OutcomeLine {
                    row: None,
                    iupd: p.iupd.clone(),
                    iud: iud.to_string(),
                    requested: String::new(),
                    outcome,
                    performed: performed.into(),
                    iuv: o.iuv.to_string(),
                    nav: o.nav.to_string(),
                    amount: o.amount.to_decimal_string(),
                    due_date: o.due_day().to_string(),
                    codes: vec![code.into()],
                    descriptions: vec![desc.into()],
                };
                entries.push((
                    sub_key(&self.key, 2, iud.as_bytes()),
                    encode(&StoredOutcome { line, iuv: None })?,
                ));
            }
        }
        let Some(last_key) = last_key else {
            return Ok(Some(false));
        };
        rec.updated_at = Utc::now();
        let rec_bytes = encode(&rec)?;
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
            &self.trees.seen,
            &l.in_progress,
        )
            .transaction(|(p, n, i, d, due, t, f, o, seen, paying)| {
                let ledger = [p, n, i, d, due, t];
                for w in &writes {
                    check_expected(p, w.prepared.key(), &w.expect)?;
                    if let Some(old) = &w.old {
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
                seen.insert(cursor_key, last_key.clone())?;
                Ok(())
            });
        match result {
            Ok(()) => {
                self.rec = rec;
                Ok(Some(more))
            }
            Err(sled::transaction::TransactionError::Abort(e)) if is_concurrent_change(&e) => {
                metrics::counter!("mpay_feed_batch_retries_total").increment(1);
                Ok(None)
            }
            Err(sled::transaction::TransactionError::Abort(e)) => Err(e.into()),
            Err(sled::transaction::TransactionError::Storage(e)) => Err(e.into()),
        }
    }
}
