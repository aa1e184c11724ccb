//! Reading receipts and anomalies per organization (REST `…/receipts`, `…/anomalies`) and the
//! operator's acknowledgement of an anomaly.
//!
//! Receipts are found through `receipts_by_notice` (keys start with the organization's fiscal
//! code), anomalies by a scan of `anomalies` filtered by organization (they are few); both are
//! sorted newest first and paged in memory. Acknowledgements live in their own tree
//! `anomaly_acks` (anomaly id → [`Acknowledgement`]) so the anomaly record stays as raised.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::ledger::{LedgerError, Page, SledLedger};
use crate::receipts::{Anomaly, StoredReceipt};

/// Filters of the receipts list (all optional, combined with AND).
#[derive(Debug, Clone, Default)]
pub struct ReceiptFilter {
    /// Received at or after.
    pub from: Option<DateTime<Utc>>,
    /// Received before.
    pub to: Option<DateTime<Utc>>,
    /// Notice number.
    pub notice_number: Option<String>,
    /// IUV (`creditorReferenceId`).
    pub iuv: Option<String>,
    /// Debtor's fiscal code (case-insensitive).
    pub debtor: Option<String>,
}

impl ReceiptFilter {
    fn matches(&self, r: &StoredReceipt) -> bool {
        self.from.is_none_or(|f| r.received_at >= f)
            && self.to.is_none_or(|t| r.received_at < t)
            && self
                .notice_number
                .as_deref()
                .is_none_or(|n| r.notice_number.trim() == n)
            && self
                .iuv
                .as_deref()
                .is_none_or(|i| r.receipt.creditor_reference_id.trim() == i)
            && self
                .debtor
                .as_deref()
                .is_none_or(|d| r.receipt.debtor.id_value.trim().eq_ignore_ascii_case(d))
    }
}

/// State of an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AnomalyState {
    /// Not yet seen by an operator.
    Open,
    /// Acknowledged.
    Acknowledged,
}

/// An operator's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Acknowledgement {
    /// When (UTC).
    pub at: DateTime<Utc>,
    /// Free note (e.g. the refund reference).
    pub note: Option<String>,
}

/// An anomaly with its id and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnomalyRecord {
    /// Id (unique in the store).
    pub id: u64,
    /// The anomaly as raised.
    pub anomaly: Anomaly,
    /// Its acknowledgement, if any.
    pub acknowledgement: Option<Acknowledgement>,
}

impl AnomalyRecord {
    /// Open or acknowledged.
    pub fn state(&self) -> AnomalyState {
        if self.acknowledgement.is_some() {
            AnomalyState::Acknowledged
        } else {
            AnomalyState::Open
        }
    }
}

fn page_of<T>(mut all: Vec<T>, page: usize, limit: usize) -> Page<T> {
    let total_items = all.len();
    let start = page.saturating_mul(limit).min(total_items);
    let end = start.saturating_add(limit).min(total_items);
    let items: Vec<T> = all.drain(start..end).collect();
    Page {
        items,
        page,
        limit,
        total_items,
    }
}

impl SledLedger {
    /// Receipts of an organization matching `filter`, newest first, one page.
    pub fn list_receipts(
        &self,
        org: &str,
        filter: &ReceiptFilter,
        page: usize,
        limit: usize,
    ) -> Result<Page<StoredReceipt>, LedgerError> {
        let mut all = Vec::new();
        for item in self.receipts.by_notice.scan_prefix(org.as_bytes()) {
            let (k, _) = item?;
            let Some(sep) = k.iter().rposition(|b| *b == 0) else {
                continue;
            };
            let id = k.get(sep + 1..).unwrap_or_default();
            if let Some(b) = self.receipts.receipts.get(id)? {
                let r: StoredReceipt = decode("receipts", id, &b)?;
                if r.organization == org && filter.matches(&r) {
                    all.push(r);
                }
            }
        }
        all.sort_by(|a, b| {
            b.received_at
                .cmp(&a.received_at)
                .then_with(|| a.receipt_id.cmp(&b.receipt_id))
        });
        Ok(page_of(all, page, limit))
    }

    /// A receipt of an organization (`None` if absent or another organization's).
    pub fn organization_receipt(
        &self,
        org: &str,
        receipt_id: &str,
    ) -> Result<Option<StoredReceipt>, LedgerError> {
        match self.receipts.receipts.get(receipt_id.as_bytes())? {
            Some(b) => {
                let r: StoredReceipt = decode("receipts", receipt_id.as_bytes(), &b)?;
                Ok((r.organization == org).then_some(r))
            }
            None => Ok(None),
        }
    }

    /// Anomalies of an organization, newest first, optionally only in `state`, one page.
    pub fn list_anomalies(
        &self,
        org: &str,
        state: Option<AnomalyState>,
        page: usize,
        limit: usize,
    ) -> Result<Page<AnomalyRecord>, LedgerError> {
        let mut all = Vec::new();
        for item in self.receipts.anomalies.iter().rev() {
            let (k, v) = item?;
            let anomaly: Anomaly = decode("anomalies", &k, &v)?;
            if anomaly.organization != org {
                continue;
            }
            let Ok(bytes) = <[u8; 8]>::try_from(k.as_ref()) else {
                continue;
            };
            let id = u64::from_be_bytes(bytes);
            let acknowledgement = match self.receipts.acks.get(k)? {
                Some(b) => Some(decode("anomaly_acks", &bytes, &b)?),
                None => None,
            };
            let rec = AnomalyRecord {
                id,
                anomaly,
                acknowledgement,
            };
            if state.is_none_or(|s| rec.state() == s) {
                all.push(rec);
            }
        }
        Ok(page_of(all, page, limit))
    }

    /// Acknowledges an anomaly of `org` (idempotent: the first acknowledgement is kept).
    /// `Ok(None)` when there is no such anomaly for this organization.
    pub fn acknowledge_anomaly(
        &self,
        org: &str,
        id: u64,
        note: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<Option<AnomalyRecord>, LedgerError> {
        let key = id.to_be_bytes();
        let Some(v) = self.receipts.anomalies.get(key)? else {
            return Ok(None);
        };
        let anomaly: Anomaly = decode("anomalies", &key, &v)?;
        if anomaly.organization != org {
            return Ok(None);
        }
        let ack = Acknowledgement { at, note };
        let bytes = encode(&ack).map_err(LedgerError::Storage)?;
        let previous =
            self.receipts
                .acks
                .compare_and_swap(key, None as Option<&[u8]>, Some(bytes))?;
        let acknowledgement = match previous {
            Ok(()) => ack,
            Err(cas) => match cas.current {
                Some(b) => decode("anomaly_acks", &key, &b)?,
                None => ack,
            },
        };
        Ok(Some(AnomalyRecord {
            id,
            anomaly,
            acknowledgement: Some(acknowledgement),
        }))
    }
}
