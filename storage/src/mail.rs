//! The receipt e-mail queue (issue 15): one [`ReceiptMail`] per stored receipt whose payer or
//! debtor has an address, enqueued by [`crate::ReceiptRepository::apply_receipt`] in the
//! receipt's own unit of work (one insert into `mail_open`), then drained by the mailer actor.
//!
//! Trees (see [`crate::trees`]): `mail_open` holds the open e-mails (PENDING, RETRYING) keyed
//! by receiptId — the mailer reads only this tree, small while the SMTP server is up —;
//! `mail_done` holds them once SENT or FAILED. A state change is a compare-and-swap on the
//! stored record that moves it between the two trees in one transaction: a resend meanwhile
//! wins and the stale outcome is dropped.

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use mpay_messages::domain::mail::{MailState, ReceiptMail};
use sled::Transactional as _;

use crate::codec::{decode, encode};
use crate::error::LedgerError;
use crate::ledger::SledLedger;

const OPEN: &str = "mail_open";
const DONE: &str = "mail_done";

/// How many e-mails stand where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailCounts {
    /// PENDING + RETRYING.
    pub open: u64,
    /// When the oldest open one was enqueued.
    pub oldest: Option<DateTime<Utc>>,
}

impl SledLedger {
    /// Stored receipts get an e-mail from now on (`[mail]` configured; set at start-up).
    pub fn set_receipt_mail(&self, enabled: bool) {
        self.receipts.mail_enabled.store(enabled, Ordering::Relaxed);
    }

    /// Do stored receipts get an e-mail?
    pub fn receipt_mail_enabled(&self) -> bool {
        self.receipts.mail_enabled.load(Ordering::Relaxed)
    }

    /// The e-mail of a receipt, wherever it stands. `None`: the receipt has none (no address,
    /// e-mail off when it was stored, or no such receipt).
    pub fn receipt_mail(&self, receipt_id: &str) -> Result<Option<ReceiptMail>, LedgerError> {
        let t = &self.receipts;
        let key = receipt_id.as_bytes();
        if let Some(v) = t.mail_open.get(key)? {
            return Ok(Some(decode(OPEN, key, &v)?));
        }
        match t.mail_done.get(key)? {
            Some(v) => Ok(Some(decode(DONE, key, &v)?)),
            None => Ok(None),
        }
    }

    /// Every open e-mail (the mailer picks the due ones).
    pub fn open_mails(&self) -> Result<Vec<ReceiptMail>, LedgerError> {
        let mut out = Vec::new();
        for item in self.receipts.mail_open.iter() {
            let (k, v) = item?;
            out.push(decode(OPEN, &k, &v)?);
        }
        Ok(out)
    }

    /// Open e-mails and the oldest one's enqueue time.
    pub fn mail_backlog(&self) -> Result<MailCounts, LedgerError> {
        let mut c = MailCounts::default();
        for item in self.receipts.mail_open.iter() {
            let (k, v) = item?;
            let m: ReceiptMail = decode(OPEN, &k, &v)?;
            c.open += 1;
            c.oldest = Some(c.oldest.map_or(m.created_at, |o| o.min(m.created_at)));
        }
        Ok(c)
    }

    /// Replaces `before` with `after` (same receipt) when the stored record is still `before`,
    /// in `mail_open` or `mail_done` as `after`'s state says. `Ok(false)`: it changed
    /// meanwhile, nothing written.
    pub fn update_mail(
        &self,
        before: &ReceiptMail,
        after: &ReceiptMail,
    ) -> Result<bool, LedgerError> {
        let t = &self.receipts;
        let key = after.receipt_id.as_bytes();
        let old = encode(before)?;
        let new = encode(after)?;
        let r = (&t.mail_open, &t.mail_done).transaction(|(open, done)| {
            let (from, to) = if before.state.is_open() {
                (open, done)
            } else {
                (done, open)
            };
            if from.get(key)?.as_deref() != Some(old.as_slice()) {
                return sled::transaction::abort(());
            }
            if after.state.is_open() == before.state.is_open() {
                from.insert(key, new.as_slice())?;
            } else {
                from.remove(key)?;
                to.insert(key, new.as_slice())?;
            }
            Ok(())
        });
        match r {
            Ok(()) => Ok(true),
            Err(sled::transaction::TransactionError::Abort(())) => Ok(false),
            Err(sled::transaction::TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Puts a receipt's e-mail back to PENDING, due `now` (an operator's resend). `None`: the
    /// receipt has no e-mail.
    pub fn resend_mail(
        &self,
        receipt_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ReceiptMail>, LedgerError> {
        for _ in 0..100 {
            let Some(before) = self.receipt_mail(receipt_id)? else {
                return Ok(None);
            };
            let after = before.resent(now);
            if self.update_mail(&before, &after)? {
                return Ok(Some(after));
            }
        }
        Err(LedgerError::Contended)
    }

    /// E-mails in a final state, counted by state (for the metrics at start-up).
    pub fn mail_done_counts(&self) -> Result<(u64, u64), LedgerError> {
        let (mut sent, mut failed) = (0, 0);
        for item in self.receipts.mail_done.iter() {
            let (k, v) = item?;
            let m: ReceiptMail = decode(DONE, &k, &v)?;
            match m.state {
                MailState::Sent => sent += 1,
                _ => failed += 1,
            }
        }
        Ok((sent, failed))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use mpay_messages::domain::delivery::DeliveryPolicy;

    use super::*;
    use crate::store::Store;

    #[test]
    fn moves_between_open_and_done_with_compare_and_swap() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let l = &store.ledger;
        let now = Utc::now();
        let m = ReceiptMail::of_receipt("r1", "80001234568", "n1", vec!["a@x.it".into()], now);
        // enqueued as apply_receipt does
        l.receipts
            .mail_open
            .insert("r1", encode(&m).unwrap())
            .unwrap();
        assert_eq!(l.open_mails().unwrap(), vec![m.clone()]);
        assert_eq!(l.mail_backlog().unwrap().open, 1);
        let retry = m.retry_later(&DeliveryPolicy::default(), "down", now, 0);
        assert!(l.update_mail(&m, &retry).unwrap());
        assert!(!l.update_mail(&m, &m.sent(now)).unwrap(), "stale outcome");
        let sent = retry.sent(now);
        assert!(l.update_mail(&retry, &sent).unwrap());
        assert!(l.open_mails().unwrap().is_empty());
        assert_eq!(l.receipt_mail("r1").unwrap(), Some(sent.clone()));
        assert_eq!(l.mail_done_counts().unwrap(), (1, 0));
        let again = l.resend_mail("r1", now).unwrap().unwrap();
        assert_eq!(again.state, MailState::Pending);
        assert_eq!(l.open_mails().unwrap().len(), 1);
        assert_eq!(l.mail_done_counts().unwrap(), (0, 0));
        assert!(l.resend_mail("nope", now).unwrap().is_none());
        assert!(l.receipt_mail("nope").unwrap().is_none());
    }
}
