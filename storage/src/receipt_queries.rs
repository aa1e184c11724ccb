//! Reading receipts and anomalies per organization (REST `…/receipts`, `…/anomalies`) and the
//! operator's acknowledgement of an anomaly.
//!
//! Receipts are paged through `receipts_by_org` (organization, arrival): the date range is a
//! key range, the total is counted on keys, only the page's receipts are decoded (a filter on
//! IUV or debtor decodes the receipts of the range; a notice number goes through
//! `receipts_by_notice`). Anomalies are paged through `anomalies_by_org`, the state filter
//! reads `anomaly_acks` keys only. Acknowledgements live in their own tree `anomaly_acks`
//! (anomaly id → [`Acknowledgement`]) so the anomaly record stays as raised.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::ledger::{LedgerError, Page, SledLedger};
use crate::receipts::{Anomaly, StoredReceipt};
use crate::trees::{instant_bytes, org_prefix};

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
    /// Receipts of an organization matching `filter`, newest first (ties: receipt id), one
    /// page.
    pub fn list_receipts(
        &self,
        org: &str,
        filter: &ReceiptFilter,
        page: usize,
        limit: usize,
    ) -> Result<Page<StoredReceipt>, LedgerError> {
        let rt = &self.receipts;
        let read = |id: &[u8]| -> Result<Option<StoredReceipt>, LedgerError> {
            match rt.receipts.get(id)? {
                Some(b) => Ok(Some(decode("receipts", id, &b)?)),
                None => Ok(None),
            }
        };
        if let Some(nav) = &filter.notice_number {
            // few receipts per notice: read them all
            let mut prefix = crate::keys::position_key(org, nav);
            prefix.push(0);
            let mut all = Vec::new();
            for item in rt.by_notice.scan_prefix(&prefix) {
                let (k, _) = item?;
                let id = k.get(prefix.len()..).unwrap_or_default();
                if let Some(r) = read(id)? {
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
            return Ok(page_of(all, page, limit));
        }
        let prefix = org_prefix(org);
        let key_at = |t: Option<DateTime<Utc>>, end: bool| {
            let mut k = prefix.clone();
            match t {
                Some(t) => k.extend_from_slice(&instant_bytes(t)),
                None if end => k.extend_from_slice(&[0xff; 9]),
                None => {}
            }
            k
        };
        let range = key_at(filter.from, false)..key_at(filter.to, true);
        let decode_all = filter.iuv.is_some() || filter.debtor.is_some();
        // (time bytes, receipt id) newest first; equal times keep the id order ascending
        let mut keys: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut decoded: Vec<StoredReceipt> = Vec::new();
        for item in rt.by_org.range(range).rev() {
            let (k, _) = item?;
            let time = k.get(prefix.len()..prefix.len() + 8).unwrap_or_default();
            let id = k.get(prefix.len() + 8..).unwrap_or_default();
            if decode_all {
                if let Some(r) = read(id)? {
                    if filter.matches(&r) {
                        decoded.push(r);
                    }
                }
            } else {
                keys.push((time.to_vec(), id.to_vec()));
            }
        }
        if decode_all {
            decoded.sort_by(|a, b| {
                b.received_at
                    .cmp(&a.received_at)
                    .then_with(|| a.receipt_id.cmp(&b.receipt_id))
            });
            return Ok(page_of(decoded, page, limit));
        }
        keys.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let total_items = keys.len();
        let mut items = Vec::new();
        for (_, id) in keys.iter().skip(page.saturating_mul(limit)).take(limit) {
            if let Some(r) = read(id)? {
                items.push(r);
            }
        }
        Ok(Page {
            items,
            page,
            limit,
            total_items,
        })
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
        let rt = &self.receipts;
        let prefix = org_prefix(org);
        let mut ids = Vec::new();
        for item in rt.anomalies_by_org.scan_prefix(&prefix).rev() {
            let (k, _) = item?;
            let Some(Ok(id)) = k.get(prefix.len()..).map(<[u8; 8]>::try_from) else {
                continue;
            };
            let wanted = match state {
                None => true,
                Some(s) => {
                    let acked = rt.acks.contains_key(id)?;
                    (s == AnomalyState::Acknowledged) == acked
                }
            };
            if wanted {
                ids.push(id);
            }
        }
        let total_items = ids.len();
        let mut items = Vec::new();
        for key in ids.iter().skip(page.saturating_mul(limit)).take(limit) {
            let Some(v) = rt.anomalies.get(key)? else {
                continue;
            };
            let anomaly: Anomaly = decode("anomalies", key, &v)?;
            let acknowledgement = match rt.acks.get(key)? {
                Some(b) => Some(decode("anomaly_acks", key, &b)?),
                None => None,
            };
            items.push(AnomalyRecord {
                id: u64::from_be_bytes(*key),
                anomaly,
                acknowledgement,
            });
        }
        Ok(Page {
            items,
            page,
            limit,
            total_items,
        })
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
