//! The reconciliation's own state, kept up to date incrementally (issue 14: a year of a large
//! Ente, 10 M rows, reconciles without reading everything again).
//!
//! A run ([`advance`], [`with_run`]) does only what changed since the previous one:
//! 1. **ingest**: the receipts stored since the last run (queued in `recon_new` by the
//!    receipt's own transaction) become one compact entry per transfer, filed under the
//!    transfer's beneficiary (`recon_paid`) and listed as not yet reported
//!    (`recon_unreported`); a receipt for an IUV a flow watches (a row it reports without a
//!    receipt, or one it matched by the fallback) makes that flow dirty again;
//! 2. **flows**: each flow made dirty by [`crate::reconciliation::SledReconciliation::put_flow`]
//!    (a new flow, a revision, a corrected file) or by step 1 is matched again: its latest
//!    revision's rows are matched ([`mpay_messages::domain::reconcile::match_rows`]) against
//!    the entries of its rows' IUVs only (those it claims and those nobody claims), what it no
//!    longer claims is released, and what it claims, the rows it reports without a receipt and
//!    its totals are written. A flow is its **flow id** (it embeds the PSP's id): the same flow
//!    imported as XML (sender by BIC) and acquired from the FdR API (sender by pagoPA id) is one
//!    flow, the higher revision reconciled;
//! 3. **credits**: each credit made dirty by `put_credits`, or naming among its candidate ids a
//!    flow seen for the first time (`recon_credit_ids`), is attributed to the first candidate
//!    that is a known flow.
//!
//! Labels are never stored: a line's label follows from its flow's settlement, computed from
//! the credits attributed to it when read, so a credit changes no payment entry; so is the
//! `UnknownPsp` flag (from `recon_psps` when read). The run's summary ([`summary`]) reads the
//! flows' states, the unreported entries and the unexplained credits — never the reported
//! entries. [`report`] (the API, the CSV, the exports) reads the organization's entries: that
//! is reading a report, not reconciling. Both read under the run's lock ([`with_run`]): never
//! a state half written by a concurrent run.
//!
//! Trees (`org ++ 0x00` first in every key but `recon_new` and `recon_psps`):
//! - `recon_new` (a receipt tree, written with each receipt): receiptId → () until filed;
//! - `recon_paid`: `org, iuv, 0, receiptId, 0, idTransfer` → [`PaidEntry`];
//! - `recon_unreported`: `org, paid instant, receiptId, 0, idTransfer` → the `recon_paid` key;
//! - `recon_flow_state`: `org, flowId` → [`FlowState`];
//! - `recon_claims`: `org, flowId` → the `recon_paid` keys the flow claims, as one value (each:
//!   length u16 BE, bytes);
//! - `recon_open_rows`: `org, iuv, 0, flowId` → (): the IUVs a flow watches;
//! - `recon_flow_credits`: `org, flowId, 0,` credit key → signed cents (i64 BE);
//! - `recon_credit_flow`: credit key → the flow id it settles (empty: none);
//! - `recon_credit_ids`: `org, candidate id, 0,` credit key → (): every flow id a credit's
//!   remittance texts may name;
//! - `recon_unexplained`: credit key → ();
//! - `recon_dirty_flows` / `recon_dirty_credits`: `org, flowId` / credit key → a write id
//!   (removed by compare-and-swap, so a flow stored again during a run stays dirty);
//! - `recon_psps`: idPSP → () for every PSP a receipt came from.
//!
//! All of them are derived ([`DERIVED_TREES`]): a backup leaves them out and a restored store
//! rebuilds them at its first open (the upgrade below), so an online backup never captures a
//! run half done.
//!
//! Crash safety: a receipt's watchers are marked dirty before its entry is written; a flow's
//! claims are first written as the union of what it held and what it takes, then the entries,
//! then the claims alone, and its dirty mark is removed last; a run cut short is redone from the
//! same marks and converges (releasing follows the claims, an entry no flow claims is released
//! again, matching accepts entries claimed by the same flow). The ingest writes a transfer's
//! entry before its unreported index entry and dequeues the receipt after both; filed again
//! after a crash, an entry found already gets its unreported entry back if it lacks it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use mpay_messages::domain::reconcile::{
    label_credit, label_payment, label_row, match_rows, settlement, Label, MatchWarning,
    PaidTransfer, Settlement,
};
use mpay_messages::fdr::{remittance, FlowFlag, PayStatus};

use crate::codec::{decode, encode};
use crate::error::StorageError;
use crate::receipts::StoredReceipt;
use crate::reconciliation::{
    CreditLine, FlowLine, PaymentLine, ReconRun, Report, RowLine, StoredCredit, StoredFlow,
};
use crate::trees::{instant_bytes, org_prefix};

/// The trees of the reconciliation's state: derived from receipts, flows and credits, never
/// backed up, rebuilt when missing.
pub(crate) const DERIVED_TREES: &[&str] = &[
    "recon_new",
    "recon_paid",
    "recon_unreported",
    "recon_flow_state",
    "recon_claims",
    "recon_open_rows",
    "recon_flow_credits",
    "recon_credit_flow",
    "recon_credit_ids",
    "recon_unexplained",
    "recon_dirty_flows",
    "recon_dirty_credits",
    "recon_psps",
];

/// The `meta` key of the upgrade that (re)builds the state.
pub(crate) const UPGRADE: &str = "recon_state";

/// The state trees (opened with the reconciliation's).
pub(crate) struct ReconTrees {
    paid: sled::Tree,
    unreported: sled::Tree,
    flow_state: sled::Tree,
    claims: sled::Tree,
    open_rows: sled::Tree,
    flow_credits: sled::Tree,
    credit_flow: sled::Tree,
    credit_ids: sled::Tree,
    unexplained: sled::Tree,
    pub(crate) dirty_flows: sled::Tree,
    pub(crate) dirty_credits: sled::Tree,
    psps: sled::Tree,
    /// One run at a time (the worker, the API and the CLI may ask together), and reads of the
    /// state never meet a run half done.
    run: Mutex<()>,
}

impl ReconTrees {
    pub(crate) fn open(db: &sled::Db) -> Result<Self, StorageError> {
        Ok(Self {
            paid: db.open_tree("recon_paid")?,
            unreported: db.open_tree("recon_unreported")?,
            flow_state: db.open_tree("recon_flow_state")?,
            claims: db.open_tree("recon_claims")?,
            open_rows: db.open_tree("recon_open_rows")?,
            flow_credits: db.open_tree("recon_flow_credits")?,
            credit_flow: db.open_tree("recon_credit_flow")?,
            credit_ids: db.open_tree("recon_credit_ids")?,
            unexplained: db.open_tree("recon_unexplained")?,
            dirty_flows: db.open_tree("recon_dirty_flows")?,
            dirty_credits: db.open_tree("recon_dirty_credits")?,
            psps: db.open_tree("recon_psps")?,
            run: Mutex::new(()),
        })
    }
}

/// A store of the previous build, or a restored one, has receipts, flows and credits but no
/// state: every receipt is queued and every flow and credit made dirty once.
pub(crate) fn upgrade(
    db: &sled::Db,
    flows: &sled::Tree,
    credits: &sled::Tree,
    t: &ReconTrees,
) -> Result<(), StorageError> {
    crate::trees::upgrade_once(db, UPGRADE, || {
        let mut n = 0u64;
        let receipts = db.open_tree("receipts")?;
        let queue = db.open_tree("recon_new")?;
        for item in receipts.iter() {
            let (k, _) = item?;
            queue.insert(k, &[][..])?;
            n += 1;
        }
        for item in flows.iter() {
            let (k, v) = item?;
            let f: StoredFlow = decode("fdr_flows", &k, &v)?;
            t.dirty_flows.insert(
                state_key(&f.organization, &f.flow.header.flow_id),
                &db.generate_id()?.to_be_bytes()[..],
            )?;
            n += 1;
        }
        for item in credits.iter() {
            let (k, _) = item?;
            t.dirty_credits
                .insert(k, &db.generate_id()?.to_be_bytes()[..])?;
            n += 1;
        }
        Ok(n)
    })
}

/// A receipt transfer paid to an organization, as reconciliation keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaidEntry {
    /// Receipt id.
    pub receipt_id: String,
    /// IUV.
    pub iuv: String,
    /// Transfer index.
    pub id_transfer: u8,
    /// Amount, cents.
    pub amount_cents: i64,
    /// A stand-alone digital stamp (never reported, by design).
    pub stamp: bool,
    /// When it was paid (`paymentDateTime`, else the arrival).
    pub paid_at: DateTime<Utc>,
    /// The organization owning the notice (the receipt's; the beneficiary may be another).
    pub owner: String,
    /// The position the receipt paid, when it paid one (what a report marks).
    pub iupd: Option<String>,
    /// The flow id whose row reports it.
    pub claim: Option<String>,
    /// What to look at in that match.
    pub warnings: Vec<MatchWarning>,
}

impl PaidEntry {
    fn transfer(&self, org: &str) -> PaidTransfer {
        PaidTransfer {
            organization: org.to_string(),
            iuv: self.iuv.clone(),
            receipt_id: self.receipt_id.clone(),
            id_transfer: self.id_transfer,
            amount_cents: self.amount_cents,
            stamp: self.stamp,
        }
    }

    fn line(&self, org: &str, settlement: Option<Settlement>) -> PaymentLine {
        let reported = self
            .claim
            .as_ref()
            .map(|_| settlement.unwrap_or(Settlement::Awaiting));
        PaymentLine {
            receipt_id: self.receipt_id.clone(),
            iuv: self.iuv.clone(),
            id_transfer: self.id_transfer,
            amount_cents: self.amount_cents,
            paid_at: self.paid_at,
            label: label_payment(&self.transfer(org), reported),
            flow_id: self.claim.clone(),
            warnings: self.warnings.clone(),
        }
    }
}

/// A flow row reported without a receipt, as kept in its flow's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenRow {
    /// Row number.
    pub row: usize,
    /// IUV.
    pub iuv: String,
    /// IUR.
    pub iur: String,
    /// Amount, cents.
    pub amount_cents: Option<i64>,
    /// Outcome code.
    pub status: PayStatus,
}

/// What the last match of a flow (its latest revision) found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowState {
    /// Flow id.
    pub flow_id: String,
    /// Sender of the revision matched.
    pub sender: String,
    /// Its pagoPA PSP id, when the flow names it (the FdR API does; an XML file names a BIC).
    pub psp_id: Option<String>,
    /// Revision matched.
    pub revision: u32,
    /// Regulation date.
    pub regulation_date: Option<NaiveDate>,
    /// Sum of the counted rows, cents.
    pub total_cents: i64,
    /// The flow's flags.
    pub flags: Vec<FlowFlag>,
    /// Addressed to another organization: listed, never matched.
    pub other_receiver: bool,
    /// Receipt transfers it reports.
    pub matched: usize,
    /// Their amount, cents.
    pub matched_cents: i64,
    /// Rows reported without a receipt.
    pub rows: Vec<OpenRow>,
    /// The IUVs it watches in `recon_open_rows`: its rows without a receipt and the rows it
    /// matched by the fallback (a receipt arriving for one may match better).
    pub watched: Vec<String>,
}

/// What one run did (the work is what "incremental" means: it grows with what changed, not with
/// what is stored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Work {
    /// Receipts read by the ingest (those stored since the last run).
    pub receipts_read: usize,
    /// Transfers filed for the first time.
    pub transfers_filed: usize,
    /// Flows matched (new, revised, or with a receipt for an IUV they watch).
    pub flows_matched: usize,
    /// Rows of those flows.
    pub rows_matched: usize,
    /// Entries read as candidates for those rows.
    pub entries_read: usize,
    /// Credits attributed (again).
    pub credits_attributed: usize,
}

/// What a run changed.
#[derive(Debug, Clone, Default)]
pub struct Advance {
    /// Payment options that became reported (`PO_REPORTED` / `PO_PARTIALLY_REPORTED`).
    pub options_reported: usize,
    /// Rows without a receipt queued (again) for the receipt recovery.
    pub recoveries_queued: usize,
    /// The work done.
    pub work: Work,
}

fn push_sep(k: &mut Vec<u8>, s: &str) {
    k.extend_from_slice(s.as_bytes());
    k.push(0);
}

fn paid_key(org: &str, iuv: &str, receipt_id: &str, idx: u8) -> Vec<u8> {
    let mut k = org_prefix(org);
    push_sep(&mut k, iuv);
    push_sep(&mut k, receipt_id);
    k.push(idx);
    k
}

fn iuv_prefix(org: &str, iuv: &str) -> Vec<u8> {
    let mut k = org_prefix(org);
    push_sep(&mut k, iuv);
    k
}

fn unreported_key(org: &str, e: &PaidEntry) -> Vec<u8> {
    let mut k = org_prefix(org);
    k.extend_from_slice(&instant_bytes(e.paid_at));
    push_sep(&mut k, &e.receipt_id);
    k.push(e.id_transfer);
    k
}

/// The key of a flow's state (and of its dirty mark, its claims).
pub(crate) fn state_key(org: &str, flow_id: &str) -> Vec<u8> {
    let mut k = org_prefix(org);
    k.extend_from_slice(flow_id.as_bytes());
    k
}

/// `org, flow id, 0`: the prefix of the flow's revisions in `fdr_flows`, of its credits in
/// `recon_flow_credits`, of the credits naming it in `recon_credit_ids`.
fn flow_id_prefix(org: &str, flow_id: &str) -> Vec<u8> {
    let mut k = org_prefix(org);
    push_sep(&mut k, flow_id);
    k
}

fn open_row_key(org: &str, iuv: &str, flow_id: &str) -> Vec<u8> {
    let mut k = iuv_prefix(org, iuv);
    k.extend_from_slice(flow_id.as_bytes());
    k
}

/// A set of keys as one value: for each, its length (u16 BE) then its bytes.
fn pack_keys(keys: &BTreeSet<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(keys.iter().map(|k| k.len() + 2).sum());
    for k in keys {
        let len = u16::try_from(k.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(k.get(..usize::from(len)).unwrap_or(k));
    }
    out
}

fn unpack_keys(mut v: &[u8]) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    while let Some((len, rest)) = v.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len));
        let Some(k) = rest.get(..len) else { break };
        out.insert(k.to_vec());
        v = rest.get(len..).unwrap_or_default();
    }
    out
}

fn fresh_mark(db: &sled::Db) -> Result<[u8; 8], StorageError> {
    Ok(db.generate_id()?.to_be_bytes())
}

/// Brings the state of `org` up to date (and files every new receipt of every organization).
/// For each flow matched: the positions of the transfers it newly claims are marked reported
/// ([`mark_reported`], idempotent) before the claims are written, and its rows without a
/// receipt are queued for the receipt recovery before its mark is removed — so a run cut short,
/// or a run made by the API or the command line rather than the worker, loses neither.
pub fn advance(
    store: &crate::Store,
    org: &str,
    now: DateTime<Utc>,
) -> Result<Advance, StorageError> {
    with_run(store, org, now, |adv| Ok(adv.clone()))
}

/// [`advance`], then `read` of the state it left, under the run's lock (a concurrent run never
/// shows a state half written).
pub fn with_run<R>(
    store: &crate::Store,
    org: &str,
    now: DateTime<Utc>,
    read: impl FnOnce(&Advance) -> Result<R, StorageError>,
) -> Result<R, StorageError> {
    let t = &store.reconciliation.state;
    let _one = t.run.lock().unwrap_or_else(|p| p.into_inner());
    let mut adv = Advance::default();
    ingest(store, t, &mut adv.work)?;
    // a flow that releases a transfer makes the flows watching its IUV dirty: passes until
    // none is left (bounded: a transfer moves only to a flow that reports it)
    for _pass in 0..16 {
        let mut dirty: Vec<(sled::IVec, sled::IVec)> = Vec::new();
        for item in t.dirty_flows.scan_prefix(org_prefix(org)) {
            dirty.push(item?);
        }
        if dirty.is_empty() {
            break;
        }
        for (key, mark) in dirty {
            let flow_id = key
                .get(org_prefix(org).len()..)
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(str::to_string);
            if let Some(flow_id) = flow_id {
                let (options, rows) = match_flow(store, t, org, &flow_id, now, &mut adv.work)?;
                adv.options_reported += options;
                adv.recoveries_queued +=
                    crate::recovery::queue_rows_without_receipt(store, org, &rows, now)?;
            }
            // a flow stored again meanwhile keeps its (new) mark
            let _ = t
                .dirty_flows
                .compare_and_swap(&key, Some(mark), None as Option<&[u8]>)?;
        }
    }
    for item in t.dirty_credits.scan_prefix(org_prefix(org)) {
        let (key, mark) = item?;
        attribute(store, t, org, &key)?;
        adv.work.credits_attributed += 1;
        let _ = t
            .dirty_credits
            .compare_and_swap(&key, Some(mark), None as Option<&[u8]>)?;
    }
    read(&adv)
}

/// Files the transfers of the receipts stored since the last ingest (`recon_new`, written in
/// each receipt's own transaction: no ordering of arrival times is assumed).
fn ingest(store: &crate::Store, t: &ReconTrees, work: &mut Work) -> Result<(), StorageError> {
    let queue = &store.ledger.receipts.recon_new;
    let receipts = &store.ledger.receipts.receipts;
    for item in queue.iter() {
        let (receipt_id, _) = item?;
        if let Some(v) = receipts.get(&receipt_id)? {
            let r: StoredReceipt = decode("receipts", &receipt_id, &v)?;
            work.receipts_read += 1;
            file_receipt(&store.db, t, &r, work)?;
        }
        queue.remove(&receipt_id)?;
    }
    Ok(())
}

fn file_receipt(
    db: &sled::Db,
    t: &ReconTrees,
    r: &StoredReceipt,
    work: &mut Work,
) -> Result<(), StorageError> {
    let paid_at = r
        .receipt
        .payment_date_time
        .as_deref()
        .and_then(|s| mpay_messages::time::parse_api_datetime(s).ok())
        .unwrap_or(r.received_at);
    if !t.psps.contains_key(r.receipt.id_psp.as_bytes())? {
        t.psps.insert(r.receipt.id_psp.as_bytes(), &[][..])?;
    }
    for tr in &r.receipt.transfers {
        let org = tr.fiscal_code_pa.as_str();
        let iuv = r.receipt.creditor_reference_id.as_str();
        // the flows watching this IUV are matched again (marked first: also when the entry was
        // filed by a run cut short)
        let p = iuv_prefix(org, iuv);
        for item in t.open_rows.scan_prefix(&p) {
            let (k, _) = item?;
            let mut sk = org_prefix(org);
            sk.extend_from_slice(k.get(p.len()..).unwrap_or_default());
            t.dirty_flows.insert(sk, &fresh_mark(db)?[..])?;
        }
        let key = paid_key(org, iuv, &r.receipt_id, tr.id_transfer);
        if let Some(v) = t.paid.get(&key)? {
            // filed already (a run cut short): its unreported entry may be what is missing
            let e: PaidEntry = decode("recon_paid", &key, &v)?;
            if e.claim.is_none() {
                t.unreported
                    .insert(unreported_key(org, &e), key.as_slice())?;
            }
            continue;
        }
        let entry = PaidEntry {
            receipt_id: r.receipt_id.clone(),
            iuv: iuv.to_string(),
            id_transfer: tr.id_transfer,
            amount_cents: tr.amount.cents(),
            stamp: tr.iban.is_none() && tr.mbd_attachment.is_some(),
            paid_at,
            owner: r.organization.clone(),
            iupd: r.iupd.clone(),
            claim: None,
            warnings: Vec::new(),
        };
        // single writes, entry first; the receipt leaves `recon_new` after them
        t.paid.insert(key.as_slice(), encode(&entry)?)?;
        t.unreported
            .insert(unreported_key(org, &entry), key.as_slice())?;
        work.transfers_filed += 1;
    }
    Ok(())
}

/// The latest revision of one flow of `org`, whatever its sender is named by (a BIC in an XML
/// file, the pagoPA id from the FdR API): the highest revision, the last stored on a tie.
fn latest_flow(
    store: &crate::Store,
    org: &str,
    flow_id: &str,
) -> Result<Option<StoredFlow>, StorageError> {
    let flows = store.reconciliation.flows_tree();
    let mut best: Option<(u32, sled::IVec)> = None;
    for item in flows.scan_prefix(flow_id_prefix(org, flow_id)) {
        let (k, _) = item?;
        let revision = k
            .len()
            .checked_sub(4)
            .and_then(|i| k.get(i..))
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_be_bytes);
        if best.as_ref().is_none_or(|(r, _)| revision >= *r) {
            best = Some((revision, k));
        }
    }
    let Some((_, key)) = best else {
        return Ok(None);
    };
    match flows.get(&key)? {
        Some(v) => Ok(Some(decode("fdr_flows", &key, &v)?)),
        None => Ok(None),
    }
}

/// What matching one flow found: the payment options that became reported, its rows without a
/// receipt.
type Matched = (usize, Vec<RowLine>);

/// Matches one flow again.
fn match_flow(
    store: &crate::Store,
    t: &ReconTrees,
    org: &str,
    flow_id: &str,
    now: DateTime<Utc>,
    work: &mut Work,
) -> Result<Matched, StorageError> {
    let skey = state_key(org, flow_id);
    let old: Option<FlowState> = match t.flow_state.get(&skey)? {
        Some(v) => Some(decode("recon_flow_state", &skey, &v)?),
        None => None,
    };
    let Some(stored) = latest_flow(store, org, flow_id)? else {
        return Ok((0, Vec::new()));
    };
    let flow = &stored.flow;
    work.flows_matched += 1;
    work.rows_matched += flow.rows.len();
    let other_receiver = flow
        .flags
        .iter()
        .any(|f| matches!(f, FlowFlag::OtherReceiver { .. }));
    let mine = |e: &PaidEntry| e.claim.as_deref() == Some(flow_id);

    // entries this flow claimed before (released unless matched again)
    let before: BTreeSet<Vec<u8>> = match t.claims.get(&skey)? {
        Some(v) => unpack_keys(&v),
        None => BTreeSet::new(),
    };
    // candidates: the entries of the rows' IUVs claimed by this flow or by none
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut entries: Vec<PaidEntry> = Vec::new();
    if !other_receiver {
        let iuvs: BTreeSet<&str> = flow.rows.iter().map(|r| r.iuv.as_str()).collect();
        for iuv in iuvs {
            for item in t.paid.scan_prefix(iuv_prefix(org, iuv)) {
                let (k, v) = item?;
                let e: PaidEntry = decode("recon_paid", &k, &v)?;
                work.entries_read += 1;
                if e.claim.is_some() && !mine(&e) {
                    continue;
                }
                keys.push(k.to_vec());
                entries.push(e);
            }
        }
    }
    let transfers: Vec<PaidTransfer> = entries.iter().map(|e| e.transfer(org)).collect();
    let matches = if other_receiver {
        Vec::new()
    } else {
        match_rows(org, &flow.rows, &transfers)
    };
    let mut state = FlowState {
        flow_id: flow_id.to_string(),
        sender: stored.sender().to_string(),
        psp_id: flow.header.psp_id.clone(),
        revision: stored.revision(),
        regulation_date: flow.header.regulation_date,
        total_cents: flow.counted_total_cents(),
        flags: flow.flags.clone(),
        other_receiver,
        matched: 0,
        matched_cents: 0,
        rows: Vec::new(),
        watched: Vec::new(),
    };
    let mut claimed: BTreeMap<Vec<u8>, PaidEntry> = BTreeMap::new();
    let mut newly: Vec<&PaidEntry> = Vec::new();
    let mut unchanged: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut watched: BTreeSet<String> = BTreeSet::new();
    for (row, m) in flow.rows.iter().zip(matches) {
        match m.receipt {
            Some(i) => {
                let (Some(k), Some(e)) = (keys.get(i), entries.get(i)) else {
                    continue;
                };
                if e.claim.is_none() {
                    newly.push(e);
                }
                if mine(e) && e.warnings == m.warnings {
                    unchanged.insert(k.clone());
                }
                if m.warnings
                    .iter()
                    .any(|w| matches!(w, MatchWarning::IurDiffers { .. }))
                {
                    // the receipt the row names may still come: it would match better
                    watched.insert(row.iuv.clone());
                }
                let mut e = e.clone();
                e.claim = Some(flow_id.to_string());
                e.warnings = m.warnings;
                state.matched += 1;
                state.matched_cents += e.amount_cents;
                claimed.insert(k.clone(), e);
            }
            None if !m.duplicate => {
                watched.insert(row.iuv.clone());
                state.rows.push(OpenRow {
                    row: row.number,
                    iuv: row.iuv.clone(),
                    iur: row.iur.clone(),
                    amount_cents: row.amount_cents,
                    status: row.status.clone(),
                });
            }
            None => {}
        }
    }
    state.watched = watched.into_iter().collect();
    let rows: Vec<RowLine> = state
        .rows
        .iter()
        .map(|r| RowLine {
            flow_id: flow_id.to_string(),
            row: r.row,
            iuv: r.iuv.clone(),
            iur: r.iur.clone(),
            amount_cents: r.amount_cents,
            status: r.status.clone(),
            label: Label::IuvNoRt,
        })
        .collect();

    // 0. the positions of what is newly reported (idempotent: a run cut short after this marks
    //    nothing twice, and the claims below are written only after it)
    let options = mark_reported(store, &newly, flow_id, now)?;
    // 1. claims, first the union of what it held and what it takes: a run cut short releases
    //    what it had claimed, whatever the entries say (the set alone is written at the end)
    let now_claimed: BTreeSet<Vec<u8>> = claimed.keys().cloned().collect();
    if now_claimed != before {
        let union: BTreeSet<Vec<u8>> = before.union(&now_claimed).cloned().collect();
        t.claims.insert(&skey, pack_keys(&union))?;
    }
    // 2. entries and the unreported index (single writes: sled applies a batch of this size
    //    several times slower); an entry claimed by nobody is released again (a run cut short
    //    between its two writes)
    let mut released: BTreeSet<String> = BTreeSet::new();
    for k in before.difference(&now_claimed) {
        let Some(v) = t.paid.get(k)? else { continue };
        let mut e: PaidEntry = decode("recon_paid", k, &v)?;
        if e.claim.is_some() && !mine(&e) {
            continue;
        }
        e.claim = None;
        e.warnings.clear();
        t.paid.insert(k.as_slice(), encode(&e)?)?;
        t.unreported.insert(unreported_key(org, &e), k.as_slice())?;
        released.insert(e.iuv);
    }
    for (k, e) in &claimed {
        if unchanged.contains(k) {
            continue;
        }
        t.paid.insert(k.as_slice(), encode(e)?)?;
        t.unreported.remove(unreported_key(org, e))?;
    }
    // 3. the IUVs it watches
    for iuv in old.iter().flat_map(|o| o.watched.iter()) {
        if state.watched.binary_search(iuv).is_err() {
            t.open_rows.remove(open_row_key(org, iuv, flow_id))?;
        }
    }
    for iuv in &state.watched {
        t.open_rows
            .insert(open_row_key(org, iuv, flow_id), &[][..])?;
    }
    // 4. a flow seen for the first time: the credits that may name it are attributed again
    //    (before its state is written: a run cut short sees it as new again)
    if old.is_none() {
        for item in t.credit_ids.scan_prefix(flow_id_prefix(org, flow_id)) {
            let (k, _) = item?;
            let prefix = flow_id_prefix(org, flow_id).len();
            let mut credit = org_prefix(org);
            credit.extend_from_slice(k.get(prefix..).unwrap_or_default());
            t.dirty_credits
                .insert(credit, &fresh_mark(&store.db)?[..])?;
        }
    }
    // 5. the flow's state, and its claims alone
    t.flow_state.insert(&skey, encode(&state)?)?;
    if now_claimed != before {
        t.claims.insert(&skey, pack_keys(&now_claimed))?;
    }
    // 6. another flow that reported a released transfer again (listed without a receipt) may
    //    now claim it: matched again in this run
    for iuv in &released {
        let p = iuv_prefix(org, iuv);
        for item in t.open_rows.scan_prefix(&p) {
            let (k, _) = item?;
            let mut other = org_prefix(org);
            other.extend_from_slice(k.get(p.len()..).unwrap_or_default());
            if other != skey {
                t.dirty_flows.insert(other, &fresh_mark(&store.db)?[..])?;
            }
        }
    }
    Ok((options, rows))
}

/// Marks reported, through the domain's rule ([`DebtPosition::report_transfer`]), the
/// transfers `entries` that flow `flow_id` reports, on the positions their receipts paid: the
/// option becomes `PO_REPORTED` (all its transfers) or `PO_PARTIALLY_REPORTED`, the position
/// `REPORTED` when all its paid options are. Returns the options changed. Idempotent: a
/// transfer its position shows as reported already is not written again; an entry whose receipt
/// paid no position (an orphan) has nothing to mark.
///
/// [`DebtPosition::report_transfer`]: mpay_messages::position::DebtPosition::report_transfer
fn mark_reported(
    store: &crate::Store,
    entries: &[&PaidEntry],
    flow_id: &str,
    now: DateTime<Utc>,
) -> Result<usize, StorageError> {
    use crate::{LedgerError, PositionRepository as _};
    use mpay_messages::ids::OrgFiscalCode;
    let mut changed = 0;
    for e in entries {
        let Some(iupd) = e.iupd.as_deref() else {
            continue;
        };
        let Ok(owner) = OrgFiscalCode::parse_gpd(&e.owner)
            .or_else(|_| OrgFiscalCode::parse_unchecked(&e.owner))
        else {
            continue;
        };
        let position = match store.ledger.get(&owner, iupd) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(LedgerError::Storage(err)) => return Err(err),
            Err(err) => {
                tracing::warn!(receipt = %e.receipt_id, error = %err, "position not read");
                continue;
            }
        };
        let pending = position.payment_options.iter().any(|o| {
            o.iuv.as_str() == e.iuv
                && o.transfers.iter().any(|t| t.id_transfer == e.id_transfer)
                && !o.details.reported_transfers.contains(&e.id_transfer)
        });
        if !pending {
            continue;
        }
        let mut refused = None;
        let r = store.ledger.modify(&owner, iupd, &mut |pos| {
            pos.report_transfer(&e.iuv, e.id_transfer, Some(flow_id), now)
                .map_err(|why| {
                    refused = Some(why.to_string());
                    LedgerError::Contended
                })
        });
        match (r, refused) {
            (Ok(_), _) => changed += 1,
            (Err(LedgerError::Contended), Some(why)) => tracing::warn!(
                receipt = %e.receipt_id,
                iuv = %e.iuv,
                id_transfer = e.id_transfer,
                %why,
                "a reported transfer could not be marked on its position"
            ),
            (Err(LedgerError::Storage(err)), _) => return Err(err),
            (Err(err), _) => tracing::warn!(
                receipt = %e.receipt_id,
                error = %err,
                "a reported transfer could not be marked on its position"
            ),
        }
    }
    Ok(changed)
}

/// Attributes one credit to the first of its candidate flow ids that is a flow of `org`, and
/// files it under every candidate (a flow seen later makes it dirty again).
fn attribute(
    store: &crate::Store,
    t: &ReconTrees,
    org: &str,
    key: &[u8],
) -> Result<(), StorageError> {
    let Some(v) = store.reconciliation.credits_tree().get(key)? else {
        return Ok(());
    };
    let c: StoredCredit = decode("bank_credits", key, &v)?;
    let credit_suffix = key.get(org_prefix(org).len()..).unwrap_or_default();
    let parsed: Vec<remittance::Reference> = c
        .credit
        .texts
        .iter()
        .filter_map(|text| remittance::parse(text))
        .collect();
    for r in &parsed {
        for candidate in r.candidates() {
            let mut k = flow_id_prefix(org, candidate);
            k.extend_from_slice(credit_suffix);
            t.credit_ids.insert(k, &[][..])?;
        }
    }
    let known = |id: &str| {
        t.flow_state
            .contains_key(state_key(org, id))
            .unwrap_or(false)
    };
    let id = parsed
        .iter()
        .find_map(|r| r.flow_id(known).map(str::to_string));
    let before: Option<String> = t
        .credit_flow
        .get(key)?
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .filter(|s| !s.is_empty());
    if let Some(old) = before.as_ref().filter(|old| Some(*old) != id.as_ref()) {
        let mut k = flow_id_prefix(org, old);
        k.extend_from_slice(key);
        t.flow_credits.remove(k)?;
    }
    match &id {
        Some(flow_id) => {
            let signed = if c.credit.reversal {
                -c.credit.amount_cents
            } else {
                c.credit.amount_cents
            };
            let mut k = flow_id_prefix(org, flow_id);
            k.extend_from_slice(key);
            t.flow_credits.insert(k, &signed.to_be_bytes()[..])?;
            t.unexplained.remove(key)?;
        }
        None => {
            t.unexplained.insert(key, &[][..])?;
        }
    }
    t.credit_flow
        .insert(key, id.unwrap_or_default().as_bytes())?;
    Ok(())
}

/// The credits attributed to each flow id of `org` (signed cents).
fn credited(t: &ReconTrees, org: &str) -> Result<HashMap<String, Vec<i64>>, StorageError> {
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    let p = org_prefix(org);
    for item in t.flow_credits.scan_prefix(&p) {
        let (k, v) = item?;
        let rest = k.get(p.len()..).unwrap_or_default();
        let Some(sep) = rest.iter().position(|b| *b == 0) else {
            continue;
        };
        let id = String::from_utf8_lossy(rest.get(..sep).unwrap_or_default()).into_owned();
        let cents = v
            .as_ref()
            .try_into()
            .map(i64::from_be_bytes)
            .unwrap_or_default();
        out.entry(id).or_default().push(cents);
    }
    Ok(out)
}

/// The flows of `org` (latest revisions) with their settlement, as the state says (call it in
/// [`with_run`]).
pub fn flow_lines(store: &crate::Store, org: &str) -> Result<Vec<FlowLine>, StorageError> {
    let t = &store.reconciliation.state;
    let credited = credited(t, org)?;
    states(t, org)?
        .iter()
        .map(|s| flow_line(t, s, &credited))
        .collect()
}

fn states(t: &ReconTrees, org: &str) -> Result<Vec<FlowState>, StorageError> {
    t.flow_state
        .scan_prefix(org_prefix(org))
        .map(|item| {
            let (k, v) = item?;
            decode("recon_flow_state", &k, &v)
        })
        .collect()
}

/// A flow's line; its `UnknownPsp` flag judged now (a receipt of the PSP may have come since).
fn flow_line(
    t: &ReconTrees,
    s: &FlowState,
    credited: &HashMap<String, Vec<i64>>,
) -> Result<FlowLine, StorageError> {
    let amounts = credited.get(&s.flow_id).map(Vec::as_slice).unwrap_or(&[]);
    let mut flags = s.flags.clone();
    if let Some(psp) = &s.psp_id {
        if !t.psps.contains_key(psp.as_bytes())? {
            flags.push(FlowFlag::UnknownPsp { psp: psp.clone() });
        }
    }
    Ok(FlowLine {
        flow_id: s.flow_id.clone(),
        revision: s.revision,
        regulation_date: s.regulation_date,
        total_cents: s.total_cents,
        credited_cents: amounts.iter().sum(),
        settlement: settlement(s.total_cents, amounts),
        flags,
    })
}

/// The credits of `org`, each with the flow it settles and its label.
fn credit_lines(
    store: &crate::Store,
    org: &str,
    settlements: &HashMap<String, Settlement>,
) -> Result<Vec<CreditLine>, StorageError> {
    let t = &store.reconciliation.state;
    let mut out = Vec::new();
    for item in store
        .reconciliation
        .credits_tree()
        .scan_prefix(org_prefix(org))
    {
        let (k, v) = item?;
        let c: StoredCredit = decode("bank_credits", &k, &v)?;
        let flow_id = t
            .credit_flow
            .get(&k)?
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .filter(|s| !s.is_empty());
        let s = flow_id.as_ref().and_then(|id| settlements.get(id).copied());
        out.push(CreditLine {
            credit: c.credit,
            label: label_credit(s),
            flow_id,
        });
    }
    Ok(out)
}

/// The whole reconciliation of `org` as its state says (call it in [`with_run`]): every entry,
/// flow, row without a receipt and credit, labelled, with totals.
pub fn report(store: &crate::Store, org: &str) -> Result<Report, StorageError> {
    let t = &store.reconciliation.state;
    let credited = credited(t, org)?;
    let states = states(t, org)?;
    let mut settlements: HashMap<String, Settlement> = HashMap::new();
    let mut report = Report {
        organization: org.to_string(),
        flows: Vec::with_capacity(states.len()),
        payments: Vec::new(),
        rows_without_receipt: Vec::new(),
        credits: Vec::new(),
        totals: BTreeMap::new(),
    };
    for s in &states {
        let line = flow_line(t, s, &credited)?;
        settlements.insert(s.flow_id.clone(), line.settlement);
        for r in &s.rows {
            report.rows_without_receipt.push(RowLine {
                flow_id: s.flow_id.clone(),
                row: r.row,
                iuv: r.iuv.clone(),
                iur: r.iur.clone(),
                amount_cents: r.amount_cents,
                status: r.status.clone(),
                label: label_row(false, line.settlement),
            });
        }
        report.flows.push(line);
    }
    for item in t.paid.scan_prefix(org_prefix(org)) {
        let (k, v) = item?;
        let e: PaidEntry = decode("recon_paid", &k, &v)?;
        let s = e.claim.as_ref().and_then(|id| settlements.get(id).copied());
        report.payments.push(e.line(org, s));
    }
    report.payments.sort_by(|a, b| {
        (a.paid_at, &a.receipt_id, a.id_transfer).cmp(&(b.paid_at, &b.receipt_id, b.id_transfer))
    });
    report.credits = credit_lines(store, org, &settlements)?;
    report.count_totals();
    Ok(report)
}

/// The transfers of `org` no flow reports yet (labelled `RT_NO_IUF` or `RT_NO_IUF_BOLLO`),
/// oldest payment first: read from their own index, never from the reported ones (call it in
/// [`with_run`]).
pub fn unreported_payments(
    store: &crate::Store,
    org: &str,
) -> Result<Vec<PaymentLine>, StorageError> {
    let t = &store.reconciliation.state;
    let mut out = Vec::new();
    for item in t.unreported.scan_prefix(org_prefix(org)) {
        let (_, pkey) = item?;
        let Some(v) = t.paid.get(&pkey)? else {
            continue;
        };
        let e: PaidEntry = decode("recon_paid", &pkey, &v)?;
        if e.claim.is_none() {
            out.push(e.line(org, None));
        }
    }
    Ok(out)
}

/// The summary of a run over `org`'s state (call it in [`with_run`]): flows' states, unreported
/// entries and unexplained credits are read, the reported entries never (their count and cents
/// are in their flow's state).
pub fn summary(
    store: &crate::Store,
    org: &str,
    at: DateTime<Utc>,
    reason: &str,
    options_reported: usize,
    unreported_after_deadline: usize,
) -> Result<ReconRun, StorageError> {
    let t = &store.reconciliation.state;
    let credited = credited(t, org)?;
    let states = states(t, org)?;
    let mut totals: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    let mut add = |label: Label, n: usize, cents: i64| {
        if n == 0 {
            return;
        }
        let e = totals.entry(label.code().to_string()).or_insert((0, 0));
        e.0 += n;
        e.1 += cents;
    };
    let (mut payments, mut rows) = (0, 0);
    for s in &states {
        let line = flow_line(t, s, &credited)?;
        add(label_row(true, line.settlement), s.matched, s.matched_cents);
        payments += s.matched;
        for r in &s.rows {
            add(Label::IuvNoRt, 1, r.amount_cents.unwrap_or(0));
        }
        rows += s.rows.len();
    }
    for p in unreported_payments(store, org)? {
        add(p.label, 1, p.amount_cents);
        payments += 1;
    }
    let mut unexplained = 0;
    for item in t.unexplained.scan_prefix(org_prefix(org)) {
        let (k, _) = item?;
        if let Some(v) = store.reconciliation.credits_tree().get(&k)? {
            let c: StoredCredit = decode("bank_credits", &k, &v)?;
            add(Label::TesNoIufOrIuv, 1, c.credit.amount_cents);
            unexplained += 1;
        }
    }
    Ok(ReconRun {
        organization: org.to_string(),
        at,
        reason: reason.to_string(),
        flows: states.len(),
        payments,
        rows_without_receipt: rows,
        unexplained_credits: unexplained,
        options_reported,
        unreported_after_deadline,
        totals,
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    //! The incremental state is checked against the previous build's algorithm (kept here as
    //! the oracle: every flow, credit and receipt read again on each run) over random
    //! histories, and its work is checked to grow with what changed, not with what is stored.
    use std::collections::{HashMap, HashSet};

    use mpay_messages::bank::Credit;
    use mpay_messages::domain::ReceiptDisposition;
    use mpay_messages::fdr::{Flow, FlowHeader, FlowRow, SenderKind};
    use mpay_messages::wire::pafornode::{Receipt, ReceiptTransfer, Subject};
    use mpay_messages::Amount;

    use super::*;
    use crate::reconciliation::{FlowImport, StoredCredit};
    use crate::store::Store;
    use crate::trees::receipt_org_key;

    const A: &str = "80001234568";
    const B: &str = "01987654322";
    const PSP: &str = "88888888888";

    fn paid_transfers(
        receipts: &sled::Tree,
        org: &str,
    ) -> Result<Vec<(PaidTransfer, DateTime<Utc>)>, StorageError> {
        let mut out = Vec::new();
        for item in receipts.iter() {
            let (k, v) = item?;
            let r: StoredReceipt = decode("receipts", &k, &v)?;
            let paid_at = r
                .receipt
                .payment_date_time
                .as_deref()
                .and_then(|t| mpay_messages::time::parse_api_datetime(t).ok())
                .unwrap_or(r.received_at);
            for t in &r.receipt.transfers {
                if t.fiscal_code_pa != org {
                    continue;
                }
                out.push((
                    PaidTransfer {
                        organization: org.to_string(),
                        iuv: r.receipt.creditor_reference_id.clone(),
                        receipt_id: r.receipt_id.clone(),
                        id_transfer: t.id_transfer,
                        amount_cents: t.amount.cents(),
                        stamp: t.iban.is_none() && t.mbd_attachment.is_some(),
                    },
                    paid_at,
                ));
            }
        }
        Ok(out)
    }

    /// Attributes each credit to the flow its remittance text names (the first candidate id that is
    /// one of `flows`): the signed amounts credited per flow id (reversals negative), and each
    /// credit's flow in the credits' order.
    fn attribute_credits(
        flows: &[StoredFlow],
        credits: &[StoredCredit],
    ) -> (HashMap<String, Vec<i64>>, Vec<Option<String>>) {
        let known: HashSet<&str> = flows
            .iter()
            .map(|f| f.flow.header.flow_id.as_str())
            .collect();
        let mut credited: HashMap<String, Vec<i64>> = HashMap::new();
        let mut credit_flow = Vec::with_capacity(credits.len());
        for c in credits {
            let id = c.credit.texts.iter().find_map(|t| {
                remittance::parse(t)
                    .and_then(|r| r.flow_id(|id| known.contains(id)).map(str::to_string))
            });
            if let Some(id) = &id {
                let signed = if c.credit.reversal {
                    -c.credit.amount_cents
                } else {
                    c.credit.amount_cents
                };
                credited.entry(id.clone()).or_default().push(signed);
            }
            credit_flow.push(id);
        }
        (credited, credit_flow)
    }

    fn old_flow_line(f: &StoredFlow, credited: &HashMap<String, Vec<i64>>) -> FlowLine {
        let h = &f.flow.header;
        let total = f.flow.counted_total_cents();
        let amounts = credited.get(&h.flow_id).map(Vec::as_slice).unwrap_or(&[]);
        FlowLine {
            flow_id: h.flow_id.clone(),
            revision: f.revision(),
            regulation_date: h.regulation_date,
            total_cents: total,
            credited_cents: amounts.iter().sum(),
            settlement: settlement(total, amounts),
            flags: f.flow.flags.clone(),
        }
    }

    /// Reconciles `org`: receipts ↔ latest flows ↔ credits, every line labelled.
    fn from_scratch(store: &crate::Store, org: &str) -> Result<Report, StorageError> {
        let flows = store.reconciliation.flows(org)?;
        let credits = store.reconciliation.credits(org)?;
        let (transfers, paid_at): (Vec<PaidTransfer>, Vec<DateTime<Utc>>) =
            paid_transfers(&store.ledger.receipts.receipts, org)?
                .into_iter()
                .unzip();
        let (credited, credit_flow) = attribute_credits(&flows, &credits);
        let mut report = Report {
            organization: org.to_string(),
            flows: Vec::new(),
            payments: Vec::new(),
            rows_without_receipt: Vec::new(),
            credits: Vec::new(),
            totals: BTreeMap::new(),
        };
        let mut reported: HashMap<usize, (String, Settlement, Vec<MatchWarning>)> = HashMap::new();
        let mut settlements: HashMap<String, Settlement> = HashMap::new();
        for f in &flows {
            let h = &f.flow.header;
            let line = old_flow_line(f, &credited);
            let s = line.settlement;
            settlements.insert(h.flow_id.clone(), s);
            report.flows.push(line);
            if f.flow
                .flags
                .iter()
                .any(|fl| matches!(fl, FlowFlag::OtherReceiver { .. }))
            {
                // addressed to another organization: listed with its flag, its rows are not ours
                continue;
            }
            // one match per row, in the rows' order
            for (row, m) in f
                .flow
                .rows
                .iter()
                .zip(match_rows(org, &f.flow.rows, &transfers))
            {
                match m.receipt {
                    Some(i) => {
                        reported.insert(i, (h.flow_id.clone(), s, m.warnings));
                    }
                    None if !m.duplicate => report.rows_without_receipt.push(RowLine {
                        flow_id: h.flow_id.clone(),
                        row: row.number,
                        iuv: row.iuv.clone(),
                        iur: row.iur.clone(),
                        amount_cents: row.amount_cents,
                        status: row.status.clone(),
                        label: label_row(false, s),
                    }),
                    None => {}
                }
            }
        }
        for (i, t) in transfers.iter().enumerate() {
            let (flow_id, s, warnings) = match reported.remove(&i) {
                Some((id, s, w)) => (Some(id), Some(s), w),
                None => (None, None, Vec::new()),
            };
            report.payments.push(PaymentLine {
                receipt_id: t.receipt_id.clone(),
                iuv: t.iuv.clone(),
                id_transfer: t.id_transfer,
                amount_cents: t.amount_cents,
                paid_at: paid_at.get(i).copied().unwrap_or_default(),
                label: label_payment(t, s),
                flow_id,
                warnings,
            });
        }
        for (c, flow_id) in credits.into_iter().zip(credit_flow) {
            let s = flow_id.as_ref().and_then(|id| settlements.get(id).copied());
            report.credits.push(CreditLine {
                credit: c.credit,
                label: label_credit(s),
                flow_id,
            });
        }
        report.count_totals();
        Ok(report)
    }

    /// A receipt transfer of a test: (idTransfer, beneficiary, cents, stamp).
    type Transfer = (u8, &'static str, i64, bool);

    /// xorshift: reproducible histories without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    fn receipt(
        id: &str,
        iuv: &str,
        transfers: &[(u8, &str, i64, bool)],
        day: u32,
    ) -> StoredReceipt {
        let at = chrono::NaiveDate::from_ymd_opt(2026, 11, day)
            .unwrap()
            .and_hms_opt(9, 0, 0)
            .unwrap()
            .and_utc();
        let total: i64 = transfers.iter().map(|t| t.2).sum();
        StoredReceipt {
            receipt_id: id.into(),
            organization: A.into(),
            id_pa: A.into(),
            id_station: "01987654322_01".into(),
            notice_number: format!("3{iuv}"),
            iupd: None,
            operation: "paSendRTV2".into(),
            received_at: at,
            disposition: ReceiptDisposition::Orphan,
            raw_xml: "<x/>".into(),
            receipt: Receipt {
                receipt_id: id.into(),
                notice_number: format!("3{iuv}"),
                fiscal_code: A.into(),
                outcome: "OK".into(),
                creditor_reference_id: iuv.into(),
                payment_amount: Amount::from_cents(total).unwrap(),
                description: "Tributo".into(),
                company_name: "Comune".into(),
                office_name: None,
                debtor: Subject {
                    kind: "F".into(),
                    id_value: "RSSMRA80A01H501U".into(),
                    full_name: "Mario Rossi".into(),
                    street_name: None,
                    civic_number: None,
                    postal_code: None,
                    city: None,
                    state_province_region: None,
                    country: None,
                    email: None,
                },
                transfers: transfers
                    .iter()
                    .map(|(idx, org, cents, stamp)| ReceiptTransfer {
                        id_transfer: *idx,
                        amount: Amount::from_cents(*cents).unwrap(),
                        fiscal_code_pa: (*org).into(),
                        company_name: None,
                        iban: if *stamp {
                            None
                        } else {
                            Some("IT60X0542811101000000123456".into())
                        },
                        mbd_attachment: stamp.then(|| "PHg+".to_string()),
                        marca_da_bollo: None,
                        marca_da_bollo_error: None,
                        remittance_information: "Tributo".into(),
                        transfer_category: "9/0201133IM/".into(),
                        metadata: vec![],
                    })
                    .collect(),
                id_psp: PSP.into(),
                psp_fiscal_code: None,
                psp_partita_iva: None,
                psp_company_name: "PSP".into(),
                id_channel: "88888888888_01".into(),
                channel_description: "app".into(),
                payer: None,
                payment_method: None,
                payment_note: None,
                fee: None,
                primary_ci_incurred_fee: None,
                id_bundle: None,
                id_ci_bundle: None,
                payment_date_time: Some(format!("2026-11-{day:02}T10:00:00")),
                application_date: None,
                transfer_date: None,
                metadata: vec![],
                stand_in: false,
            },
            flags: vec![],
            contact_email: None,
            recovered: false,
        }
    }

    fn put_receipt(store: &Store, r: &StoredReceipt) {
        let t = &store.ledger.receipts;
        t.receipts
            .insert(r.receipt_id.as_bytes(), encode(r).unwrap())
            .unwrap();
        t.by_org
            .insert(
                receipt_org_key(&r.organization, r.received_at, &r.receipt_id),
                &[][..],
            )
            .unwrap();
        t.recon_new
            .insert(r.receipt_id.as_bytes(), &[][..])
            .unwrap();
    }

    fn flow(
        id: &str,
        revision: Option<u32>,
        psp_id: Option<&str>,
        rows: Vec<FlowRow>,
    ) -> StoredFlow {
        let total: i64 = rows.iter().filter_map(|r| r.amount_cents).sum();
        let n = rows.len() as u64;
        StoredFlow {
            organization: A.into(),
            flow: Flow::new(
                FlowHeader {
                    flow_id: id.into(),
                    revision,
                    flow_date: "2026-11-20T08:30:00".into(),
                    regulation: format!("TRN-{id}"),
                    regulation_date: None,
                    sender_kind: SenderKind::BicCode,
                    sender_id: "PSPXITXXXXX".into(),
                    psp_id: psp_id.map(str::to_string),
                    sender_name: None,
                    bic_pouring_bank: None,
                    receiver_id: A.into(),
                    receiver_name: None,
                    declared_count: Some(n),
                    declared_total_cents: Some(total),
                },
                rows,
            ),
            source: "test".into(),
            acquired_at: Utc::now(),
        }
    }

    fn row(number: usize, iuv: &str, iur: &str, idx: u8, cents: i64, status: PayStatus) -> FlowRow {
        FlowRow {
            number,
            iuv: iuv.into(),
            iur: iur.into(),
            id_transfer: Some(idx),
            amount_cents: Some(cents),
            status,
            date: None,
            problems: vec![],
        }
    }

    fn credit(n: u64, flow_id: &str, cents: i64) -> Credit {
        Credit {
            account: "IT60X0542811101000000123456".into(),
            bank_ref: Some(format!("REF{n}")),
            amount_cents: cents,
            booking_date: None,
            value_date: None,
            texts: vec![format!("/PUR/LGPE-RIVERSAMENTO/URI/{flow_id}")],
            end_to_end_id: None,
            payer: None,
            reversal: false,
            provisional: None,
        }
    }

    /// The state's report and the oracle's, in one order (the oracle lists payments in the
    /// receipts' key order).
    fn same(store: &Store, org: &str, ctx: &str) {
        let mut got = report(store, org).unwrap();
        let mut want = from_scratch(store, org).unwrap();
        for r in [&mut got, &mut want] {
            r.payments.sort_by(|a, b| {
                (&a.receipt_id, a.id_transfer).cmp(&(&b.receipt_id, b.id_transfer))
            });
            r.rows_without_receipt
                .sort_by(|a, b| (&a.flow_id, a.row).cmp(&(&b.flow_id, b.row)));
        }
        assert_eq!(got.flows, want.flows, "{ctx}: flows");
        assert_eq!(got.payments, want.payments, "{ctx}: payments");
        assert_eq!(
            got.rows_without_receipt, want.rows_without_receipt,
            "{ctx}: rows"
        );
        assert_eq!(got.credits, want.credits, "{ctx}: credits");
        assert_eq!(got.totals, want.totals, "{ctx}: totals");
        let s = summary(store, org, Utc::now(), "test", 0, 0).unwrap();
        let want_totals: BTreeMap<String, (usize, i64)> = want
            .totals
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect();
        assert_eq!(s.totals, want_totals, "{ctx}: summary totals");
        assert_eq!(s.payments, want.payments.len(), "{ctx}: summary payments");
        assert_eq!(
            s.rows_without_receipt,
            want.rows_without_receipt.len(),
            "{ctx}"
        );
    }

    #[test]
    fn random_histories_end_as_a_reconciliation_from_scratch_does() {
        for seed in 1..=40u64 {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let rec = &store.reconciliation;
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
            // the payments: (receipt id, iuv, transfers)
            let mut paid: Vec<(String, String, Vec<Transfer>)> = Vec::new();
            let mut flows: Vec<(String, Vec<FlowRow>, u32)> = Vec::new();
            let mut stored_receipts = 0usize;
            let mut credits = 0u64;
            let mut reported: HashSet<(String, u8)> = HashSet::new(); // (iuv, idTransfer)
            for step in 0..60 {
                match rng.below(10) {
                    // a payment (sometimes with a second beneficiary or a stamp)
                    // a notice paid twice: the same IUV and transfers, another receipt
                    0 if !paid.is_empty() && rng.below(3) == 0 => {
                        let n = paid.len();
                        let (_, iuv, tr) = paid[rng.below(n as u64) as usize].clone();
                        paid.push((format!("rcpt-{seed}-{n}"), iuv, tr));
                    }
                    0..=4 => {
                        let n = paid.len();
                        let iuv = format!("{:017}", 1_000 + n);
                        let mut tr = vec![(1u8, A, 100 + rng.below(5_000) as i64, false)];
                        match rng.below(6) {
                            0 => tr.push((2, B, 250, false)),
                            1 => tr.push((2, A, 16, true)),
                            _ => {}
                        }
                        paid.push((format!("rcpt-{seed}-{n}"), iuv, tr));
                    }
                    // receipts reach the store late (a flow may come first)
                    5 => {
                        while stored_receipts < paid.len() {
                            let (id, iuv, tr) = &paid[stored_receipts];
                            put_receipt(
                                &store,
                                &receipt(id, iuv, tr, 1 + (stored_receipts % 28) as u32),
                            );
                            stored_receipts += 1;
                        }
                    }
                    // a flow reporting some payments not reported yet (IUR that differs, a
                    // duplicated row, a code-9 row for an IUV we do not know)
                    6 | 7 => {
                        let id = format!("2026-11-20PSP-S{seed:03}{:04}", flows.len());
                        let mut rows = Vec::new();
                        // the latest receipt of a notice paid twice is the one reported
                        for (rid, iuv, tr) in paid.iter().rev() {
                            for (idx, org, cents, stamp) in tr {
                                if *org != A || *stamp || reported.contains(&(iuv.clone(), *idx)) {
                                    continue;
                                }
                                if rng.below(2) == 0 {
                                    continue;
                                }
                                reported.insert((iuv.clone(), *idx));
                                let iur = if rng.below(5) == 0 {
                                    format!("PSPIUR{}", rows.len())
                                } else {
                                    rid.clone()
                                };
                                rows.push(row(
                                    rows.len() + 1,
                                    iuv,
                                    &iur,
                                    *idx,
                                    *cents,
                                    PayStatus::Executed,
                                ));
                                if rng.below(8) == 0 {
                                    rows.push(row(
                                        rows.len() + 1,
                                        iuv,
                                        &iur,
                                        *idx,
                                        *cents,
                                        PayStatus::Executed,
                                    ));
                                }
                            }
                        }
                        if rng.below(3) == 0 {
                            rows.push(row(
                                rows.len() + 1,
                                &format!("{:017}", 900_000 + step),
                                "x",
                                1,
                                700,
                                PayStatus::NoRpt,
                            ));
                        }
                        let f = flow(&id, Some(1), None, rows.clone());
                        assert_ne!(rec.put_flow(A, &f).unwrap(), FlowImport::Unchanged);
                        flows.push((id, rows, 1));
                    }
                    // a revision drops a flow's last row (its payment unreported again)
                    8 if !flows.is_empty() => {
                        let i = rng.below(flows.len() as u64) as usize;
                        let (id, rows, revision) = &mut flows[i];
                        if let Some(r) = rows.pop() {
                            // unreported again unless a repeated row of it stays
                            if !rows
                                .iter()
                                .any(|x| x.iuv == r.iuv && x.id_transfer == r.id_transfer)
                            {
                                reported.remove(&(r.iuv.clone(), r.id_transfer.unwrap_or(1)));
                            }
                        }
                        *revision += 1 + rng.below(3) as u32;
                        rec.put_flow(A, &flow(id, Some(*revision), None, rows.clone()))
                            .unwrap();
                    }
                    // a credit: the whole flow, a part of it, or nothing we know
                    _ => {
                        credits += 1;
                        let c = if flows.is_empty() || rng.below(4) == 0 {
                            credit(credits, "2026-11-20UNKNOWN-S0", 4242)
                        } else if rng.below(4) == 0 {
                            // the bank is faster than the flow: it names the next one
                            let next = format!("2026-11-20PSP-S{seed:03}{:04}", flows.len());
                            credit(credits, &next, 1000)
                        } else {
                            let (id, rows, _) = &flows[rng.below(flows.len() as u64) as usize];
                            let total: i64 = rows.iter().filter_map(|r| r.amount_cents).sum();
                            credit(
                                credits,
                                id,
                                if rng.below(3) == 0 { total / 2 } else { total },
                            )
                        };
                        rec.put_credits(A, &[c], "test", Utc::now()).unwrap();
                    }
                }
                if rng.below(3) == 0 {
                    advance(&store, A, Utc::now()).unwrap();
                    same(&store, A, &format!("seed {seed} step {step}"));
                }
            }
            advance(&store, A, Utc::now()).unwrap();
            same(&store, A, &format!("seed {seed} end"));
            advance(&store, B, Utc::now()).unwrap();
            same(&store, B, &format!("seed {seed} end, beneficiary"));
        }
    }

    #[test]
    fn a_run_reads_what_changed_not_what_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let rec = &store.reconciliation;
        // 30 days of 40 payments each, one flow and one credit per day
        let mut works = Vec::new();
        for day in 1..=30u32 {
            let mut rows = Vec::new();
            for n in 0..40 {
                let id = format!("r{day}-{n}");
                let iuv = format!("{:09}{:08}", day, n);
                put_receipt(&store, &receipt(&id, &iuv, &[(1, A, 1000, false)], day));
                rows.push(row(n + 1, &iuv, &id, 1, 1000, PayStatus::Executed));
            }
            let adv = advance(&store, A, Utc::now()).unwrap();
            let fid = format!("2026-11-{day:02}PSP-S1");
            rec.put_flow(A, &flow(&fid, Some(1), Some(PSP), rows))
                .unwrap();
            rec.put_credits(
                A,
                &[credit(u64::from(day), &fid, 40_000)],
                "test",
                Utc::now(),
            )
            .unwrap();
            let adv2 = advance(&store, A, Utc::now()).unwrap();
            works.push((adv.work, adv2.work));
        }
        // the last day's runs did the last day's work: its 40 receipts, its flow of 40 rows and
        // 40 candidate entries, one credit
        let (filed, matched) = works.last().unwrap().clone();
        assert_eq!(filed.receipts_read, 40);
        assert_eq!(filed.transfers_filed, 40);
        assert_eq!(filed.flows_matched, 0);
        assert_eq!(matched.receipts_read, 0);
        assert_eq!(matched.flows_matched, 1);
        assert_eq!(matched.rows_matched, 40);
        assert_eq!(matched.entries_read, 40);
        assert_eq!(matched.credits_attributed, 1);
        // nothing new: nothing read
        let idle = advance(&store, A, Utc::now()).unwrap();
        assert_eq!(idle.work, Work::default());
        let s = summary(&store, A, Utc::now(), "test", 0, 0).unwrap();
        assert_eq!(s.totals.get("RT_IUF_TES"), Some(&(1200, 1_200_000)));
        assert_eq!(s.flows, 30);
        same(&store, A, "30 days");
        // a receipt for a row that had none matches its flow again, and only that one
        let rows = vec![row(
            1,
            "77700000000000001",
            "late-1",
            1,
            500,
            PayStatus::Executed,
        )];
        rec.put_flow(A, &flow("2026-11-30PSP-S2", Some(1), Some(PSP), rows))
            .unwrap();
        let adv = advance(&store, A, Utc::now()).unwrap();
        assert_eq!(report(&store, A).unwrap().rows_without_receipt.len(), 1);
        assert_eq!(adv.work.flows_matched, 1);
        put_receipt(
            &store,
            &receipt("late-1", "77700000000000001", &[(1, A, 500, false)], 30),
        );
        let adv = advance(&store, A, Utc::now()).unwrap();
        assert_eq!((adv.work.receipts_read, adv.work.flows_matched), (1, 1));
        assert!(report(&store, A).unwrap().rows_without_receipt.is_empty());
        same(&store, A, "late receipt");
    }

    /// A store with one receipt (`r1`, 10.00 EUR) and the flow row that reports it.
    fn one_payment() -> (tempfile::TempDir, Store, Vec<FlowRow>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        put_receipt(
            &store,
            &receipt("r1", "00000000000000001", &[(1, A, 1000, false)], 3),
        );
        let rows = vec![row(
            1,
            "00000000000000001",
            "r1",
            1,
            1000,
            PayStatus::Executed,
        )];
        (dir, store, rows)
    }

    #[test]
    fn a_payment_reported_by_two_flows_counts_once_and_moves_when_the_first_drops_it() {
        let (_dir, store, rows) = one_payment();
        let rec = &store.reconciliation;
        rec.put_flow(A, &flow("2026-11-04PSP-S1", Some(1), None, rows.clone()))
            .unwrap();
        advance(&store, A, Utc::now()).unwrap();
        rec.put_flow(A, &flow("2026-11-05PSP-S1", Some(1), None, rows))
            .unwrap();
        advance(&store, A, Utc::now()).unwrap();
        let r = report(&store, A).unwrap();
        // the first flow keeps it; the second's row is listed: reported twice, counted once
        assert_eq!(r.payments.len(), 1);
        assert_eq!(r.payments[0].flow_id.as_deref(), Some("2026-11-04PSP-S1"));
        assert_eq!(r.rows_without_receipt.len(), 1);
        assert_eq!(r.rows_without_receipt[0].flow_id, "2026-11-05PSP-S1");
        // a revision of the first flow without the row: the second flow claims it in the
        // same run
        rec.put_flow(A, &flow("2026-11-04PSP-S1", Some(2), None, vec![]))
            .unwrap();
        advance(&store, A, Utc::now()).unwrap();
        let r = report(&store, A).unwrap();
        assert_eq!(r.payments[0].flow_id.as_deref(), Some("2026-11-05PSP-S1"));
        assert!(r.rows_without_receipt.is_empty());
        same(&store, A, "moved");
    }

    #[test]
    fn runs_cut_short_converge_to_the_reconciliation_from_scratch() {
        // 1. a receipt whose entry a crashed run wrote, still queued: the flow watching its
        //    IUV is matched when it is filed again
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let rec = &store.reconciliation;
        let t = &rec.state;
        let rows = vec![row(
            1,
            "00000000000000007",
            "r7",
            1,
            700,
            PayStatus::Executed,
        )];
        rec.put_flow(A, &flow("2026-11-04PSP-S7", Some(1), None, rows))
            .unwrap();
        advance(&store, A, Utc::now()).unwrap();
        assert_eq!(report(&store, A).unwrap().rows_without_receipt.len(), 1);
        let r = receipt("r7", "00000000000000007", &[(1, A, 700, false)], 3);
        put_receipt(&store, &r);
        let entry = PaidEntry {
            receipt_id: "r7".into(),
            iuv: "00000000000000007".into(),
            id_transfer: 1,
            amount_cents: 700,
            stamp: false,
            paid_at: chrono::DateTime::parse_from_rfc3339("2026-11-03T10:00:00+01:00")
                .unwrap()
                .with_timezone(&Utc),
            owner: A.into(),
            iupd: None,
            claim: None,
            warnings: vec![],
        };
        let key = paid_key(A, "00000000000000007", "r7", 1);
        t.paid.insert(&key, encode(&entry).unwrap()).unwrap();
        advance(&store, A, Utc::now()).unwrap();
        let got = report(&store, A).unwrap();
        assert!(got.rows_without_receipt.is_empty(), "{got:?}");
        assert_eq!(got.payments[0].flow_id.as_deref(), Some("2026-11-04PSP-S7"));
        same(&store, A, "refiled");

        // 2. a revision that drops a payment, cut short after its entry was released and
        //    before its unreported entry was written: the run done again releases it fully
        //    and the other flow reporting it claims it
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let rec = &store.reconciliation;
        let t = &rec.state;
        put_receipt(&store, &r);
        let rows = vec![row(
            1,
            "00000000000000007",
            "r7",
            1,
            700,
            PayStatus::Executed,
        )];
        rec.put_flow(A, &flow("2026-11-04PSP-S1", Some(1), None, rows.clone()))
            .unwrap();
        advance(&store, A, Utc::now()).unwrap();
        rec.put_flow(A, &flow("2026-11-05PSP-S1", Some(1), None, rows))
            .unwrap();
        advance(&store, A, Utc::now()).unwrap();
        rec.put_flow(A, &flow("2026-11-04PSP-S1", Some(2), None, vec![]))
            .unwrap();
        // the crashed run: the claims as the union (unchanged here), the entry released
        let v = t.paid.get(&key).unwrap().unwrap();
        let mut e: PaidEntry = decode("recon_paid", &key, &v).unwrap();
        assert_eq!(e.claim.as_deref(), Some("2026-11-04PSP-S1"));
        e.claim = None;
        t.paid.insert(&key, encode(&e).unwrap()).unwrap();
        advance(&store, A, Utc::now()).unwrap();
        let got = report(&store, A).unwrap();
        assert_eq!(got.payments[0].flow_id.as_deref(), Some("2026-11-05PSP-S1"));
        assert!(got.rows_without_receipt.is_empty());
        assert!(unreported_payments(&store, A).unwrap().is_empty());
        same(&store, A, "released");
    }

    #[test]
    fn the_same_flow_from_a_file_and_from_the_fdr_api_is_one_flow() {
        let (_dir, store, rows) = one_payment();
        let rec = &store.reconciliation;
        // the XML file (sender by BIC, no revision) first, then the API's revision 1
        rec.put_flow(A, &flow("2026-11-04PSP-S1", None, None, rows.clone()))
            .unwrap();
        advance(&store, A, Utc::now()).unwrap();
        let mut api = flow("2026-11-04PSP-S1", Some(1), Some(PSP), rows);
        api.flow.header.sender_id = PSP.into();
        rec.put_flow(A, &api).unwrap();
        let lines = crate::reconciliation::flow_lines(&store, A).unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0].revision, 1);
        let r = crate::reconciliation::reconcile(&store, A).unwrap();
        assert!(r.rows_without_receipt.is_empty(), "{r:?}");
        assert_eq!(r.payments[0].flow_id.as_deref(), Some("2026-11-04PSP-S1"));
    }

    #[test]
    fn a_flow_from_a_psp_no_receipt_came_from_is_flagged_until_one_comes() {
        let (_dir, store, rows) = one_payment();
        let rec = &store.reconciliation;
        rec.put_flow(
            A,
            &flow("2026-11-04PSP-S1", Some(1), Some(PSP), rows.clone()),
        )
        .unwrap();
        rec.put_flow(
            A,
            &flow("2026-11-04OTHER-S1", Some(1), Some("99999999999"), rows),
        )
        .unwrap();
        let unknown = |store: &Store| -> Vec<String> {
            crate::reconciliation::flow_lines(store, A)
                .unwrap()
                .into_iter()
                .filter(|l| {
                    l.flags
                        .iter()
                        .any(|f| matches!(f, FlowFlag::UnknownPsp { .. }))
                })
                .map(|l| l.flow_id)
                .collect()
        };
        assert_eq!(unknown(&store), vec!["2026-11-04OTHER-S1".to_string()]);
        // a receipt from that PSP arrives: the flag is judged again when the flow is read
        let mut r = receipt("r2", "00000000000000002", &[(1, A, 500, false)], 4);
        r.receipt.id_psp = "99999999999".into();
        put_receipt(&store, &r);
        assert!(unknown(&store).is_empty());
    }

    #[test]
    fn a_store_of_the_previous_build_is_reconciled_from_its_flows_and_credits() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            put_receipt(
                &store,
                &receipt("r1", "00000000000000001", &[(1, A, 1000, false)], 3),
            );
            let rows = vec![row(
                1,
                "00000000000000001",
                "r1",
                1,
                1000,
                PayStatus::Executed,
            )];
            store
                .reconciliation
                .put_flow(A, &flow("2026-11-04PSP-S1", Some(1), None, rows))
                .unwrap();
            store
                .reconciliation
                .put_credits(A, &[credit(1, "2026-11-04PSP-S1", 1000)], "t", Utc::now())
                .unwrap();
            // as the previous build left it: no state, no marks, no upgrade done
            for name in ["recon_dirty_flows", "recon_dirty_credits", "recon_new"] {
                store.db.drop_tree(name).unwrap();
            }
            store
                .db
                .open_tree("meta")
                .unwrap()
                .remove("upgrade/recon_state")
                .unwrap();
            store.db.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let r = crate::reconciliation::reconcile(&store, A).unwrap();
        assert_eq!(r.totals.get("RT_IUF_TES"), Some(&(1, 1000)));
        same(&store, A, "upgraded");
    }
}
