//! The Ente outbox (issue 13): one notification per stored receipt of an organization that has
//! a notification endpoint, enqueued by [`crate::ReceiptRepository::apply_receipt`] in the
//! receipt's own unit of work (no receipt without its notification, also across a crash), then
//! drained by that Ente's connector.
//!
//! Trees (see [`crate::trees`]): `outbox` holds every notification (compact record), keyed
//! `org ++ 0x00 ++ id`; `outbox_open` holds the keys of those still PENDING or RETRYING, so a
//! connector reads only its open work, in enqueue order. An attempt's outcome is written with
//! compare-and-swap on the stored record (a resend meanwhile wins; the outcome is dropped).

use chrono::{DateTime, Utc};
use mpay_messages::domain::delivery::{revocation_target, Notification, NotificationState};

use crate::receipts::ReceiptRepository as _;

use crate::codec::{decode_record, encode_record};
use crate::error::LedgerError;
use crate::ledger::{Page, SledLedger};
use crate::receipts::OUTBOX;
use crate::trees::{org_prefix, outbox_key};
use crate::tx::{transact, Abort, LedgerTx};

/// Enqueues a new notification inside a unit of work: the record (`outbox`, `record` =
/// [`encode_record`] of the notification) and its entry in the open index (`outbox_open`, what a
/// connector drains) — the one way every writer (receipt, revocation, reporting flow) adds one.
pub(crate) fn enqueue(
    outbox: &sled::transaction::TransactionalTree,
    open: &sled::transaction::TransactionalTree,
    key: &[u8],
    record: &[u8],
) -> Result<(), sled::transaction::UnabortableTransactionError> {
    outbox.insert(key, record)?;
    open.insert(key, &[][..])?;
    Ok(())
}

/// Backlog of one Ente.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Open notifications (PENDING + RETRYING).
    pub open: u64,
    /// When the oldest open one was enqueued.
    pub oldest: Option<DateTime<Utc>>,
}

impl SledLedger {
    /// The organizations whose receipts get a notification from now on (those with a
    /// notification endpoint; set at start-up from the configuration).
    pub fn set_notified_organizations(&self, orgs: impl IntoIterator<Item = String>) {
        let mut set = self
            .receipts
            .notified
            .write()
            .unwrap_or_else(|p| p.into_inner());
        set.clear();
        set.extend(orgs);
    }

    fn decode_notification(key: &[u8], bytes: &[u8]) -> Result<Notification, LedgerError> {
        Ok(decode_record(OUTBOX, key, bytes)?)
    }

    /// The open notifications of `org` in enqueue order, at most `limit`.
    pub fn open_notifications(
        &self,
        org: &str,
        limit: usize,
    ) -> Result<Vec<Notification>, LedgerError> {
        self.open_notifications_except(org, &std::collections::HashSet::new(), limit)
    }

    /// The open notifications of `org` in enqueue order, at most `limit`, leaving out the ids
    /// in `skip` (a connector's notifications already in hand: read, in flight, or with an
    /// outcome not yet written); those are passed over by key, without reading their record.
    pub fn open_notifications_except(
        &self,
        org: &str,
        skip: &std::collections::HashSet<u64>,
        limit: usize,
    ) -> Result<Vec<Notification>, LedgerError> {
        let t = &self.receipts;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for item in t.outbox_open.scan_prefix(org_prefix(org)) {
            let (k, _) = item?;
            let id = k
                .len()
                .checked_sub(8)
                .and_then(|at| k.get(at..))
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes);
            if id.is_some_and(|id| skip.contains(&id)) {
                continue;
            }
            if let Some(v) = t.outbox.get(&k)? {
                out.push(Self::decode_notification(&k, &v)?);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Open notifications of `org` and the oldest one's enqueue time.
    pub fn outbox_backlog(&self, org: &str) -> Result<Backlog, LedgerError> {
        let t = &self.receipts;
        let mut b = Backlog::default();
        for item in t.outbox_open.scan_prefix(org_prefix(org)) {
            let (k, _) = item?;
            if b.oldest.is_none() {
                if let Some(v) = t.outbox.get(&k)? {
                    b.oldest = Some(Self::decode_notification(&k, &v)?.created_at);
                }
            }
            b.open += 1;
        }
        Ok(b)
    }

    /// Enqueues the revocation of receipt `receipt_id` of `org` (a reporting flow listed it as
    /// REVOKED), behind its payment notification (same ordering key). `None`: the Ente has no
    /// endpoint, the receipt was never notified, or its revocation is already queued.
    pub fn enqueue_revocation(
        &self,
        org: &str,
        receipt_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Notification>, LedgerError> {
        if !self.receipts.is_notified(org) {
            return Ok(None);
        }
        // one writer per receipt (the receipt's own stripe): never two revocations
        let _guard = self
            .receipts
            .stripes
            .get(crate::receipts::stripe(receipt_id))
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()));
        let t = &self.receipts;
        let mut of_receipt = Vec::new();
        for item in t.outbox.scan_prefix(org_prefix(org)) {
            let (k, v) = item?;
            let n = Self::decode_notification(&k, &v)?;
            if n.receipt_id == receipt_id {
                of_receipt.push(n);
            }
        }
        let Some(payment) = revocation_target(&of_receipt) else {
            return Ok(None);
        };
        let n = Notification::revocation_of(payment, self.db.generate_id()?, now);
        let key = outbox_key(org, n.id);
        let bytes = encode_record(OUTBOX, &n)?;
        transact(
            self.ledger_trees(),
            &[&t.outbox, &t.outbox_open],
            |_: &LedgerTx<'_>, trees| {
                let [outbox, open] = trees else {
                    return Err(Abort::Storage(sled::Error::ReportableBug(
                        "an outbox unit of work lost its trees".into(),
                    )));
                };
                enqueue(outbox, open, &key, &bytes)?;
                Ok::<_, Abort<LedgerError>>(())
            },
        )?;
        Ok(Some(n))
    }

    /// Enqueues the revocations a reporting flow of `org` announces: its REVOKED rows whose
    /// IUR is a stored receipt of `org` for the row's IUV (see [`Self::enqueue_revocation`]).
    /// The caller makes them durable (`Durability::commit`) and wakes the connector.
    pub fn enqueue_flow_revocations(
        &self,
        org: &str,
        flow: &mpay_messages::fdr::Flow,
        now: DateTime<Utc>,
    ) -> Result<Vec<Notification>, LedgerError> {
        let mut out = Vec::new();
        for row in &flow.rows {
            if row.status != mpay_messages::fdr::PayStatus::Revoked {
                continue;
            }
            let Some(r) = self.receipt(row.iur.trim())? else {
                continue;
            };
            if r.organization != org || r.receipt.creditor_reference_id.trim() != row.iuv.trim() {
                continue;
            }
            if let Some(n) = self.enqueue_revocation(org, &r.receipt_id, now)? {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// One notification of `org`.
    pub fn notification(&self, org: &str, id: u64) -> Result<Option<Notification>, LedgerError> {
        let key = outbox_key(org, id);
        match self.receipts.outbox.get(&key)? {
            Some(v) => Ok(Some(Self::decode_notification(&key, &v)?)),
            None => Ok(None),
        }
    }

    /// Replaces `before` with `after` (same id) when the stored record is still `before`;
    /// keeps `outbox_open` in step. `Ok(false)`: it changed meanwhile (a resend), nothing
    /// written.
    pub fn update_notification(
        &self,
        before: &Notification,
        after: &Notification,
    ) -> Result<bool, LedgerError> {
        let done = self.update_notifications(&[(before.clone(), after.clone())])?;
        Ok(done.first().copied().unwrap_or(false))
    }

    /// The outcomes of a connector's pass in one unit of work: each `(before, after)` is
    /// written when the stored record is still `before` (compare-and-swap per record, as
    /// [`Self::update_notification`]); one that changed meanwhile (a resend) is skipped and
    /// reported `false` at its index, the others are written all the same. Nothing is flushed
    /// here: the caller makes acks durable with `Durability::commit(Notification)`.
    pub fn update_notifications(
        &self,
        changes: &[(Notification, Notification)],
    ) -> Result<Vec<bool>, LedgerError> {
        let t = &self.receipts;
        let mut encoded = Vec::with_capacity(changes.len());
        for (before, after) in changes {
            encoded.push((
                outbox_key(&after.organization, after.id),
                encode_record(OUTBOX, before)?,
                encode_record(OUTBOX, after)?,
                after.state.is_open(),
            ));
        }
        transact(
            self.ledger_trees(),
            &[&t.outbox, &t.outbox_open],
            |_: &LedgerTx<'_>, trees| {
                let [outbox, open] = trees else {
                    return Err(Abort::Storage(sled::Error::ReportableBug(
                        "an outbox unit of work lost its trees".into(),
                    )));
                };
                let mut done = Vec::with_capacity(encoded.len());
                for (key, old_bytes, new_bytes, still_open) in &encoded {
                    if outbox.get(key)?.as_deref() != Some(old_bytes.as_slice()) {
                        done.push(false);
                        continue;
                    }
                    outbox.insert(key.as_slice(), new_bytes.as_slice())?;
                    if *still_open {
                        open.insert(key.as_slice(), &[][..])?;
                    } else {
                        open.remove(key.as_slice())?;
                    }
                    done.push(true);
                }
                Ok::<_, Abort<LedgerError>>(done)
            },
        )
    }

    /// Puts a notification back to PENDING, due `now` (an operator's resend). `None`: no
    /// such notification of `org`.
    pub fn resend_notification(
        &self,
        org: &str,
        id: u64,
        now: DateTime<Utc>,
    ) -> Result<Option<Notification>, LedgerError> {
        for _ in 0..100 {
            let Some(before) = self.notification(org, id)? else {
                return Ok(None);
            };
            let after = before.resent(now);
            if self.update_notification(&before, &after)? {
                return Ok(Some(after));
            }
        }
        Err(LedgerError::Contended)
    }

    /// The notifications of `org`, newest first, optionally only in `state`; `page` 0-based.
    pub fn list_notifications(
        &self,
        org: &str,
        state: Option<NotificationState>,
        page: usize,
        limit: usize,
    ) -> Result<Page<Notification>, LedgerError> {
        let t = &self.receipts;
        let mut items = Vec::new();
        let mut total = 0usize;
        let skip = page.saturating_mul(limit);
        let source: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = match state {
            // open states: walk the smaller open index
            Some(s) if s.is_open() => Box::new(t.outbox_open.scan_prefix(org_prefix(org)).rev()),
            _ => Box::new(t.outbox.scan_prefix(org_prefix(org)).rev()),
        };
        for item in source {
            let (k, v) = item?;
            let n = if v.is_empty() {
                match t.outbox.get(&k)? {
                    Some(v) => Self::decode_notification(&k, &v)?,
                    None => continue,
                }
            } else {
                Self::decode_notification(&k, &v)?
            };
            if state.is_some_and(|s| s != n.state) {
                continue;
            }
            if total >= skip && items.len() < limit {
                items.push(n);
            }
            total += 1;
        }
        Ok(Page {
            items,
            page,
            limit,
            total_items: total,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use mpay_messages::domain::delivery::DeliveryPolicy;

    use super::*;
    use crate::store::Store;

    #[test]
    fn updates_are_compare_and_swap_and_keep_the_open_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let l = &store.ledger;
        let now = Utc::now();
        let n = Notification::of_receipt(1, "80001234568", "r1", "n1", "P", now);
        // enqueue as apply_receipt does (outbox + open index)
        let key = outbox_key("80001234568", 1);
        l.receipts
            .outbox
            .insert(&key, encode_record(OUTBOX, &n).unwrap())
            .unwrap();
        l.receipts.outbox_open.insert(&key, &[][..]).unwrap();
        assert_eq!(
            l.open_notifications("80001234568", 10).unwrap(),
            vec![n.clone()]
        );
        assert_eq!(l.outbox_backlog("80001234568").unwrap().open, 1);
        assert!(l
            .open_notifications_except("80001234568", &[1].into_iter().collect(), 10)
            .unwrap()
            .is_empty());
        let failed = n.failed(&DeliveryPolicy::default(), "down", now, 500);
        assert!(l.update_notification(&n, &failed).unwrap());
        assert!(
            !l.update_notification(&n, &n.delivered(now)).unwrap(),
            "a stale outcome is dropped"
        );
        let done = failed.delivered(now);
        assert!(l.update_notification(&failed, &done).unwrap());
        assert!(l.open_notifications("80001234568", 10).unwrap().is_empty());
        assert_eq!(l.outbox_backlog("80001234568").unwrap(), Backlog::default());
        let page = l
            .list_notifications("80001234568", Some(NotificationState::Delivered), 0, 10)
            .unwrap();
        assert_eq!(page.total_items, 1);
        assert_eq!(page.items[0].attempts, 2);
        let again = l
            .resend_notification("80001234568", 1, now)
            .unwrap()
            .unwrap();
        assert_eq!(again.state, NotificationState::Pending);
        assert_eq!(l.open_notifications("80001234568", 10).unwrap().len(), 1);
        assert!(l
            .resend_notification("80001234568", 2, now)
            .unwrap()
            .is_none());
        assert!(l
            .resend_notification("01987654322", 1, now)
            .unwrap()
            .is_none());
    }
}
