//! The receipts aggregate's trees and their key layout (opened by the ledger, so that one unit
//! of work spans a receipt and the position it pays), and the store's `meta` tree that records
//! one-time upgrades.
//!
//! - `receipts`: receiptId → [`crate::StoredReceipt`]
//! - `receipts_by_notice`: `org ++ nav ++ 0x00 ++ receiptId` → ∅
//! - `receipts_by_org`: `org ++ 0x00 ++ receivedAt(nanos, i64 BE with the sign bit flipped) ++ receiptId` → ∅
//! - `anomalies`: id (u64 BE) → [`crate::Anomaly`]
//! - `anomalies_by_org`: `org ++ 0x00 ++ id (u64 BE)` → ∅
//! - `anomaly_acks`: id (u64 BE) → [`crate::Acknowledgement`]
//! - `outbox`: `org ++ 0x00 ++ id (u64 BE)` → [`mpay_messages::domain::delivery::Notification`]
//!   (compact record): every notification of an Ente, in the order they were enqueued
//! - `outbox_open`: same key → ∅, only while the notification is PENDING or RETRYING (what a
//!   connector drains)
//! - `mail_open`: receiptId → [`mpay_messages::domain::mail::ReceiptMail`] (JSON) while the
//!   receipt's e-mail is PENDING or RETRYING (what the mailer drains; one insert in the
//!   receipt's unit of work)
//! - `mail_done`: receiptId → the same record once SENT or FAILED (moved by the mailer)
//! - `meta`: `upgrade/<name>` → UTC instant (RFC 3339) the upgrade finished

use std::collections::HashSet;
use std::sync::{Mutex, RwLock};

use chrono::{DateTime, Utc};

use crate::error::StorageError;
use crate::keys::position_key;

/// Writers of one receipt id are serialised by one of this many locks.
pub(crate) const STRIPES: usize = 64;

/// The receipt trees.
pub struct ReceiptTrees {
    pub(crate) receipts: sled::Tree,
    pub(crate) by_notice: sled::Tree,
    pub(crate) by_org: sled::Tree,
    pub(crate) anomalies: sled::Tree,
    pub(crate) anomalies_by_org: sled::Tree,
    pub(crate) acks: sled::Tree,
    pub(crate) outbox: sled::Tree,
    pub(crate) outbox_open: sled::Tree,
    pub(crate) mail_open: sled::Tree,
    pub(crate) mail_done: sled::Tree,
    /// Receipts not yet filed by reconciliation (`receiptId` → ()): written with the receipt,
    /// removed by [`crate::recon_state`]'s ingest.
    pub(crate) recon_new: sled::Tree,
    /// Receipts get an e-mail to their payer/debtor (`[mail]` configured).
    pub(crate) mail_enabled: std::sync::atomic::AtomicBool,
    /// Organizations whose receipts get a notification (those with an endpoint).
    pub(crate) notified: RwLock<HashSet<String>>,
    pub(crate) stripes: Vec<Mutex<()>>,
}

impl ReceiptTrees {
    pub(crate) fn open(db: &sled::Db) -> Result<Self, StorageError> {
        Ok(ReceiptTrees {
            receipts: db.open_tree("receipts")?,
            by_notice: db.open_tree("receipts_by_notice")?,
            by_org: db.open_tree("receipts_by_org")?,
            anomalies: db.open_tree("anomalies")?,
            anomalies_by_org: db.open_tree("anomalies_by_org")?,
            acks: db.open_tree("anomaly_acks")?,
            outbox: db.open_tree("outbox")?,
            outbox_open: db.open_tree("outbox_open")?,
            mail_open: db.open_tree("mail_open")?,
            mail_done: db.open_tree("mail_done")?,
            recon_new: db.open_tree("recon_new")?,
            mail_enabled: std::sync::atomic::AtomicBool::new(false),
            notified: RwLock::new(HashSet::new()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        })
    }

    /// The trees a receipt write adds to a unit of work, in this order.
    pub(crate) fn write_trees(&self) -> [&sled::Tree; 9] {
        [
            &self.receipts,
            &self.by_notice,
            &self.by_org,
            &self.anomalies,
            &self.anomalies_by_org,
            &self.outbox,
            &self.outbox_open,
            &self.mail_open,
            &self.recon_new,
        ]
    }

    /// Does `org` get notifications?
    pub(crate) fn is_notified(&self, org: &str) -> bool {
        self.notified
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(org)
    }
}

/// `receipts_by_notice` key.
pub(crate) fn notice_key(org: &str, nav: &str, receipt_id: &str) -> Vec<u8> {
    let mut k = position_key(org, nav);
    k.push(0);
    k.extend_from_slice(receipt_id.as_bytes());
    k
}

/// Order-preserving bytes of an instant: nanoseconds since the epoch (i64, clamped to its
/// range, years 1677..2262) with the sign bit flipped, big-endian.
pub(crate) fn instant_bytes(t: DateTime<Utc>) -> [u8; 8] {
    let nanos = t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    });
    ((nanos as u64) ^ (1 << 63)).to_be_bytes()
}

/// `org ++ 0x00`: the prefix of an organization in the `…_by_org` trees.
pub(crate) fn org_prefix(org: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(org.len() + 1);
    k.extend_from_slice(org.as_bytes());
    k.push(0);
    k
}

/// `receipts_by_org` key.
pub(crate) fn receipt_org_key(org: &str, at: DateTime<Utc>, receipt_id: &str) -> Vec<u8> {
    let mut k = org_prefix(org);
    k.extend_from_slice(&instant_bytes(at));
    k.extend_from_slice(receipt_id.as_bytes());
    k
}

/// `outbox` / `outbox_open` key.
pub(crate) fn outbox_key(org: &str, id: u64) -> Vec<u8> {
    let mut k = org_prefix(org);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// `anomalies_by_org` key.
pub(crate) fn anomaly_org_key(org: &str, id: u64) -> Vec<u8> {
    let mut k = org_prefix(org);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Runs `build` once per store: when `meta` has no record of `name`, builds and records it.
/// `build` must be idempotent (it runs again if the process dies before the record).
pub(crate) fn upgrade_once(
    db: &sled::Db,
    name: &str,
    build: impl FnOnce() -> Result<u64, StorageError>,
) -> Result<(), StorageError> {
    let meta = db.open_tree("meta")?;
    let key = format!("upgrade/{name}");
    if meta.contains_key(key.as_bytes())? {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let n = build()?;
    db.flush()?;
    meta.insert(key.as_bytes(), Utc::now().to_rfc3339().as_bytes())?;
    db.flush()?;
    tracing::info!(
        upgrade = name,
        entries = n,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store upgraded"
    );
    Ok(())
}

/// The tree of the node's write probe (`Store::probe_write`; operational, never backed up: a
/// backup of a running node would otherwise differ from its restore by the probe's timestamp).
pub(crate) const PROBE_TREE: &str = "store_probe";
