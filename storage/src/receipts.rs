//! Receipts (paSendRT / paSendRTV2, SPEC §5.4–§6) and anomalies.
//!
//! A receipt is applied in ONE sled transaction together with the position it pays (option →
//! PO_PAID, position → PAID / PARTIALLY_PAID, indexes) and any anomaly it raises; the raw XML is
//! kept byte-exact. Idempotent on `receiptId`: a receipt already stored is a no-op
//! ([`ReceiptDisposition::Duplicate`]), also under concurrency (writers of the same receipt id
//! are serialised by a striped lock, the position by compare-and-swap).
//!
//! Trees and keys: see [`crate::trees`]. Receipts and anomalies are also indexed by
//! organization (`receipts_by_org` by arrival, `anomalies_by_org`), written in the same unit of
//! work; a store of the previous build gets these indexes built once when it is opened
//! ([`upgrade`]).

use chrono::{DateTime, Utc};
use mpay_messages::domain::delivery::Notification;
use mpay_messages::domain::mail::ReceiptMail;
use mpay_messages::domain::PaymentFacts;
use mpay_messages::position::DebtPosition;
use mpay_messages::receipt_check::ReceiptFlag;
use mpay_messages::wire::pafornode::Receipt;
use mpay_messages::{NoticeNumber, OrgFiscalCode};
use serde::{Deserialize, Serialize};
use sled::transaction::TransactionalTree;

use crate::codec::{decode, encode, encode_record};
use crate::error::LedgerError;
use crate::error::StorageError;
use crate::keys::{position_key, Index};
use crate::ledger::SledLedger;
use crate::trees::{
    anomaly_org_key, notice_key, outbox_key, receipt_org_key, upgrade_once, ReceiptTrees, STRIPES,
};
use crate::tx::{transact, write_position, Abort, LedgerTx};

pub use mpay_messages::domain::ReceiptDisposition;

/// A receipt as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredReceipt {
    /// receiptId (paymentToken).
    pub receipt_id: String,
    /// Organization owning the notice (`receipt.fiscalCode`).
    pub organization: String,
    /// idPA of the request (differs for copies sent to secondary organizations).
    pub id_pa: String,
    /// The station it arrived on.
    pub id_station: String,
    /// Notice number.
    pub notice_number: String,
    /// The position it belongs to, when known.
    pub iupd: Option<String>,
    /// Operation (`paSendRT` / `paSendRTV2`).
    pub operation: String,
    /// Arrival (UTC).
    pub received_at: DateTime<Utc>,
    /// Disposition decided when it was stored.
    pub disposition: ReceiptDisposition,
    /// The request body, byte-exact (UTF-8); for a receipt recovered from biz-events
    /// (`recovered`), the API's JSON answer, byte-exact.
    pub raw_xml: String,
    /// The decoded receipt.
    pub receipt: Receipt,
    /// Departures flagged by the acceptance rule ([`mpay_messages::receipt_check::decide`]);
    /// stored with the receipt and raised as anomalies.
    #[serde(default)]
    pub flags: Vec<ReceiptFlag>,
    /// The e-mail address the payer gave in the portal's cart that paid this notice (the
    /// receipt e-mail goes there too); not part of the receipt itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_email: Option<String>,
    /// Recovered from pagoPA's biz-events API (`getOrganizationReceipt`) instead of arriving
    /// through paSendRT: `raw_xml` holds the API's JSON, and no RT XML exists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovered: bool,
}

pub use mpay_messages::domain::AnomalyKind;

/// The anomalies a receipt's flags raise: the domain's rule.
fn flag_anomalies(s: &StoredReceipt) -> Vec<AnomalyKind> {
    mpay_messages::domain::receipt::flag_anomalies(&s.flags)
}

/// An anomaly for operators (reconciliation, refunds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Anomaly {
    /// Kind and details.
    pub kind: AnomalyKind,
    /// Organization.
    pub organization: String,
    /// Notice.
    pub notice_number: String,
    /// Receipt that raised it.
    pub receipt_id: String,
    /// When (UTC).
    pub at: DateTime<Utc>,
    /// The whole receipt (kept for double payments and orphans).
    pub receipt: Option<Receipt>,
}

/// Receipts and anomalies.
pub trait ReceiptRepository: Send + Sync {
    /// Stores a receipt and applies it to its position in one transaction (see module docs).
    /// Errors: `Storage`, `Contended`.
    fn apply_receipt(&self, receipt: StoredReceipt) -> Result<ReceiptDisposition, LedgerError>;
    /// A receipt by id.
    fn receipt(&self, receipt_id: &str) -> Result<Option<StoredReceipt>, LedgerError>;
    /// Every receipt of a notice.
    fn receipts_for_notice(
        &self,
        org: &OrgFiscalCode,
        nav: &NoticeNumber,
    ) -> Result<Vec<StoredReceipt>, LedgerError>;
    /// Newest anomalies first.
    fn anomalies(&self, limit: usize) -> Result<Vec<Anomaly>, LedgerError>;
    /// Receipts stored.
    fn receipt_count(&self) -> usize;
}

pub(crate) fn stripe(id: &str) -> usize {
    id.bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
        % STRIPES
}

/// Writes a receipt, its index entries and its anomalies inside a unit of work; `t` are the
/// trees of [`ReceiptTrees::write_trees`].
fn insert_receipt_tx(
    t: &[TransactionalTree],
    receipt: &StoredReceipt,
    anomalies: &[(u64, Anomaly)],
    notification: Option<&Notification>,
    mail: Option<&ReceiptMail>,
) -> Result<(), Abort> {
    let [r, by_notice, by_org, a, a_by_org, outbox, outbox_open, mail_open, recon_new] = t else {
        return Err(Abort::Storage(sled::Error::ReportableBug(
            "a receipt unit of work lost its trees".into(),
        )));
    };
    let encoded = |e: StorageError| Abort::Abort(e.into());
    r.insert(
        receipt.receipt_id.as_bytes(),
        encode(receipt).map_err(encoded)?,
    )?;
    by_notice.insert(
        notice_key(
            &receipt.organization,
            &receipt.notice_number,
            &receipt.receipt_id,
        ),
        &[][..],
    )?;
    by_org.insert(
        receipt_org_key(
            &receipt.organization,
            receipt.received_at,
            &receipt.receipt_id,
        ),
        &[][..],
    )?;
    for (id, an) in anomalies {
        a.insert(&id.to_be_bytes(), encode(an).map_err(encoded)?)?;
        a_by_org.insert(anomaly_org_key(&an.organization, *id), &[][..])?;
    }
    if let Some(n) = notification {
        let key = outbox_key(&n.organization, n.id);
        let record = encode_record(OUTBOX, n).map_err(encoded)?;
        crate::outbox::enqueue(outbox, outbox_open, &key, &record)?;
    }
    if let Some(m) = mail {
        mail_open.insert(m.receipt_id.as_bytes(), encode(m).map_err(encoded)?)?;
    }
    // the next reconciliation run files it
    recon_new.insert(receipt.receipt_id.as_bytes(), &[][..])?;
    Ok(())
}

/// Name of the outbox tree.
pub(crate) const OUTBOX: &str = "outbox";

/// Builds, once per store, the organization indexes of receipts and anomalies that a store of
/// the previous build lacks. Idempotent (safe to run again after a crash).
pub(crate) fn upgrade(db: &sled::Db, t: &ReceiptTrees) -> Result<(), StorageError> {
    upgrade_once(db, "receipts_by_org", || {
        let mut n = 0;
        let mut batch = sled::Batch::default();
        for item in t.receipts.iter() {
            let (k, v) = item?;
            let r: StoredReceipt = decode("receipts", &k, &v)?;
            batch.insert(
                receipt_org_key(&r.organization, r.received_at, &r.receipt_id),
                &[][..],
            );
            n += 1;
            if n % 10_000 == 0 {
                t.by_org.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        t.by_org.apply_batch(batch)?;
        Ok(n)
    })?;
    upgrade_once(db, "anomalies_by_org", || {
        let mut n = 0;
        let mut batch = sled::Batch::default();
        for item in t.anomalies.iter() {
            let (k, v) = item?;
            let a: Anomaly = decode("anomalies", &k, &v)?;
            let Ok(id) = <[u8; 8]>::try_from(k.as_ref()) else {
                continue;
            };
            batch.insert(
                anomaly_org_key(&a.organization, u64::from_be_bytes(id)),
                &[][..],
            );
            n += 1;
        }
        t.anomalies_by_org.apply_batch(batch)?;
        Ok(n)
    })
}

impl ReceiptRepository for SledLedger {
    fn apply_receipt(&self, mut stored: StoredReceipt) -> Result<ReceiptDisposition, LedgerError> {
        let rt = &self.receipts;
        let _guard = rt
            .stripes
            .get(stripe(&stored.receipt_id))
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()));
        if rt.receipts.contains_key(stored.receipt_id.as_bytes())? {
            metrics::counter!("mpay_receipts_total", "disposition" => "duplicate").increment(1);
            return Ok(ReceiptDisposition::Duplicate);
        }
        let org = stored.organization.clone();
        let nav = stored.notice_number.clone();
        let anomaly = |kind: AnomalyKind, with_receipt: bool, s: &StoredReceipt| Anomaly {
            kind,
            organization: s.organization.clone(),
            notice_number: s.notice_number.clone(),
            receipt_id: s.receipt_id.clone(),
            at: s.received_at,
            receipt: with_receipt.then(|| s.receipt.clone()),
        };
        for _attempt in 0..1000 {
            let holder = self.by_notice.get(position_key(&org, &nav))?;
            let Some(iupd) = holder else {
                // orphan: store with its anomaly
                stored.disposition = ReceiptDisposition::Orphan;
                stored.iupd = None;
                let mut an = vec![(
                    self.db.generate_id()?,
                    anomaly(AnomalyKind::OrphanReceipt, true, &stored),
                )];
                for kind in flag_anomalies(&stored) {
                    an.push((self.db.generate_id()?, anomaly(kind, false, &stored)));
                }
                let notice = position_key(&org, &nav);
                let note = self.notification_for(&stored, &nav)?;
                let mail = self.mail_for(&stored, None);
                transact(
                    self.ledger_trees(),
                    &rt.write_trees(),
                    |tx: &LedgerTx<'_>, t| {
                        if tx.index_tree(Index::Notice).get(&notice)?.is_some() {
                            return Err(Abort::Abort(LedgerError::Contended));
                        }
                        insert_receipt_tx(t, &stored, &an, note.as_ref(), mail.as_ref())
                    },
                )
                .or_else(|e| match e {
                    LedgerError::Contended => Ok(()),
                    other => Err(other),
                })?;
                if self.by_notice.contains_key(position_key(&org, &nav))?
                    && !rt.receipts.contains_key(stored.receipt_id.as_bytes())?
                {
                    continue; // a position appeared meanwhile: apply to it
                }
                metrics::counter!("mpay_receipts_total", "disposition" => "orphan").increment(1);
                return Ok(ReceiptDisposition::Orphan);
            };
            let iupd = String::from_utf8_lossy(&iupd).into_owned();
            let pkey = position_key(&org, &iupd);
            let Some(old_bytes) = self.positions.get(&pkey)? else {
                continue;
            };
            let old = Self::decode_position(&pkey, &old_bytes)?;
            let Some(effect) = old.apply_payment_with(
                &nav,
                stored.receipt.payment_amount,
                &PaymentFacts::of_receipt(&stored.receipt),
                Utc::now(),
            ) else {
                continue; // the index named a position that no longer holds the notice
            };
            stored.iupd = Some(iupd.clone());
            let disposition = effect.disposition;
            let mut anomalies = Vec::with_capacity(effect.anomalies.len());
            for kind in effect.anomalies {
                let kind = match kind {
                    AnomalyKind::PossibleDoublePayment { .. } => {
                        AnomalyKind::PossibleDoublePayment {
                            first_receipt_id: self.first_paying_receipt(&old, &org, &nav),
                        }
                    }
                    other => other,
                };
                anomalies.push(anomaly(kind, true, &stored));
            }
            let new = effect.position;
            stored.disposition = disposition;
            for kind in flag_anomalies(&stored) {
                anomalies.push(anomaly(kind, false, &stored));
            }
            let ids: Vec<(u64, Anomaly)> = anomalies
                .into_iter()
                .map(|a| Ok((self.db.generate_id()?, a)))
                .collect::<Result<_, sled::Error>>()?;
            let note = self.notification_for(&stored, &iupd)?;
            let mail = self.mail_for(&stored, old.debtor.email.as_deref());
            let result = transact(
                self.ledger_trees(),
                &rt.write_trees(),
                |tx: &LedgerTx<'_>, t| {
                    if tx.positions.get(&pkey)?.as_deref() != Some(old_bytes.as_ref()) {
                        return Err(Abort::Abort(LedgerError::Contended));
                    }
                    if let Some(new) = &new {
                        write_position(tx, Some(&old), Some(new))?;
                    }
                    insert_receipt_tx(t, &stored, &ids, note.as_ref(), mail.as_ref())
                },
            );
            match result {
                Ok(()) => {
                    let label = match disposition {
                        ReceiptDisposition::Applied => "applied",
                        _ => "double_payment",
                    };
                    metrics::counter!("mpay_receipts_total", "disposition" => label).increment(1);
                    return Ok(disposition);
                }
                Err(LedgerError::Contended) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(LedgerError::Contended)
    }

    fn receipt(&self, receipt_id: &str) -> Result<Option<StoredReceipt>, LedgerError> {
        match self.receipts.receipts.get(receipt_id.as_bytes())? {
            Some(b) => Ok(Some(decode("receipts", receipt_id.as_bytes(), &b)?)),
            None => Ok(None),
        }
    }

    fn receipts_for_notice(
        &self,
        org: &OrgFiscalCode,
        nav: &NoticeNumber,
    ) -> Result<Vec<StoredReceipt>, LedgerError> {
        self.receipts_for_notice_raw(org.as_str(), nav.as_str())
    }

    fn anomalies(&self, limit: usize) -> Result<Vec<Anomaly>, LedgerError> {
        let mut out = Vec::new();
        for item in self.receipts.anomalies.iter().rev().take(limit) {
            let (k, v) = item?;
            out.push(decode("anomalies", &k, &v)?);
        }
        Ok(out)
    }

    fn receipt_count(&self) -> usize {
        self.receipts.receipts.len()
    }
}

impl SledLedger {
    /// The notification a stored receipt enqueues in its own unit of work, when its
    /// organization has a notification endpoint; `position` orders it (iupd, or the notice).
    fn notification_for(
        &self,
        stored: &StoredReceipt,
        position: &str,
    ) -> Result<Option<Notification>, LedgerError> {
        if !self.receipts.is_notified(&stored.organization) {
            return Ok(None);
        }
        Ok(Some(Notification::of_receipt(
            self.db.generate_id()?,
            &stored.organization,
            &stored.receipt_id,
            &stored.notice_number,
            position,
            stored.received_at,
        )))
    }

    /// The e-mail a stored receipt enqueues in its own unit of work: when e-mail is on, the
    /// payment succeeded and someone has an address (the cart's, the payer's, the debtor's in
    /// the receipt or in the position: [`mpay_messages::domain::mail::recipients`]).
    fn mail_for(
        &self,
        stored: &StoredReceipt,
        position_email: Option<&str>,
    ) -> Option<ReceiptMail> {
        if !self
            .receipts
            .mail_enabled
            .load(std::sync::atomic::Ordering::Relaxed)
            || !stored.receipt.outcome.trim().eq_ignore_ascii_case("OK")
        {
            return None;
        }
        let r = &stored.receipt;
        let to = mpay_messages::domain::mail::recipients([
            stored.contact_email.as_deref(),
            r.payer.as_ref().and_then(|p| p.email.as_deref()),
            r.debtor.email.as_deref(),
            position_email,
        ]);
        (!to.is_empty()).then(|| {
            ReceiptMail::of_receipt(
                &stored.receipt_id,
                &stored.organization,
                &stored.notice_number,
                to,
                stored.received_at,
            )
        })
    }

    /// The receipt that paid a notice of `position` first: the notice's own applied receipt,
    /// or one of another option of the same position (single solution vs installments).
    fn first_paying_receipt(
        &self,
        position: &DebtPosition,
        org: &str,
        nav: &str,
    ) -> Option<String> {
        let applied = |nav: &str| {
            self.receipts_for_notice_raw(org, nav)
                .ok()?
                .into_iter()
                .find(|r| r.disposition == ReceiptDisposition::Applied)
        };
        applied(nav)
            .or_else(|| {
                position
                    .payment_options
                    .iter()
                    .find_map(|o| applied(o.nav.as_str()))
            })
            .map(|r| r.receipt_id)
    }

    fn receipts_for_notice_raw(
        &self,
        org: &str,
        nav: &str,
    ) -> Result<Vec<StoredReceipt>, LedgerError> {
        let mut prefix = position_key(org, nav);
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.receipts.by_notice.scan_prefix(&prefix) {
            let (k, _) = item?;
            let id = k.get(prefix.len()..).unwrap_or_default();
            if let Some(b) = self.receipts.receipts.get(id)? {
                out.push(decode("receipts", id, &b)?);
            }
        }
        Ok(out)
    }
}
