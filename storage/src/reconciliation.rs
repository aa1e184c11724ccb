//! Reporting flows and bank credits of each organization, and the reconciliation over them and
//! the stored receipts (SPEC §9.5 layers 2 and 3; the rules are
//! [`mpay_messages::domain::reconcile`]).
//!
//! Trees (JSON records behind the schema byte):
//! - `fdr_flows`: `org ++ 0x00 ++ flowId ++ 0x00 ++ sender ++ 0x00 ++ revision (u32 BE)` →
//!   [`StoredFlow`]. Every revision is kept; reconciliation uses the highest of each
//!   (flow id, sender). An XML file has no revision: it is revision 0.
//! - `bank_credits`: `org ++ 0x00 ++ account ++ 0x00 ++ bank reference or content key ++
//!   0x00 ++ reversal` → [`StoredCredit`]: importing the same statement twice changes nothing.
//! - `fdr_rejects`: `org ++ 0x00 ++ instant` → [`RejectedFile`]: files that are not flows or
//!   statements, kept for inspection.
//! - `fdr_cursors`: `org` → `published` of the last flow acquired from the FdR API in order.
//! - `recon_runs`: `org` → [`ReconRun`], the summary of the last run of the
//!   `ReconciliationWorker` (when, why, totals per label).
//! - `recon_exports`: `org ++ 0x00 ++ YYYY-MM-DD` → [`ExportDelivery`]: what the daily export
//!   batch produced for that business day and where it delivered it (a restart never sends a
//!   day twice).
//!
//! Forwarding to the Ente (issue 13): for an organization that asked for its flows
//! ([`SledReconciliation::set_flow_forwarding`], from `[organizations.notification] flows`),
//! [`SledReconciliation::put_flow`] writes the flow and its `REPORTING_FLOW` notification in the
//! Ente's outbox (`outbox` + `outbox_open`) in one transaction: no stored flow without its
//! notification, also across a crash. The same flow again (UNCHANGED) enqueues nothing; a flow
//! addressed to another receiver (`OtherReceiver`) is never forwarded.
//!
//! Reconciliation is incremental ([`crate::recon_state`]): storing a flow or a credit marks it
//! for the next run in the same transaction; a run files the receipts that arrived since the
//! previous one and matches only the flows and credits marked.

use std::collections::{BTreeMap, HashSet};
use std::sync::RwLock;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional as _;

use mpay_messages::bank::{self, Credit};
use mpay_messages::domain::delivery::{FlowRef, Notification};
use mpay_messages::domain::reconcile::{Label, MatchWarning, Settlement};
use mpay_messages::fdr::{self, Flow, FlowFlag, PayStatus};

use crate::codec::{decode, encode, encode_record};
use crate::error::StorageError;
use crate::receipts::OUTBOX;
use crate::trees::{instant_bytes, org_prefix, outbox_key};

/// A flow as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredFlow {
    /// The organization it was acquired for.
    pub organization: String,
    /// The flow.
    pub flow: Flow,
    /// Where it came from (file name, `fdr-rest`).
    pub source: String,
    /// When it was acquired.
    pub acquired_at: DateTime<Utc>,
}

impl StoredFlow {
    /// The revision (0 for an XML file).
    pub fn revision(&self) -> u32 {
        self.flow.header.revision.unwrap_or(0)
    }

    /// The sender of the flow: the PSP's pagoPA id, else its identifier.
    pub fn sender(&self) -> &str {
        self.flow
            .header
            .psp_id
            .as_deref()
            .unwrap_or(&self.flow.header.sender_id)
    }
}

/// What storing a flow did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlowImport {
    /// A flow not seen before.
    New,
    /// A higher revision of a flow seen before: it supersedes the earlier ones.
    Revision,
    /// The same flow and revision again: nothing changed.
    Unchanged,
    /// The same flow and revision with other content (a corrected file): replaced.
    Replaced,
}

/// A bank credit as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredCredit {
    /// The organization.
    pub organization: String,
    /// The credit.
    pub credit: Credit,
    /// The file it came from.
    pub source: String,
    /// When it was imported.
    pub imported_at: DateTime<Utc>,
}

/// How much of a refused file is kept for inspection (the first bytes say what it is).
pub const MAX_REJECTED_BYTES: usize = 64 * 1024;

/// A file that could not be read as a flow or a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedFile {
    /// The organization it was meant for.
    pub organization: String,
    /// File name.
    pub name: String,
    /// Why.
    pub error: String,
    /// The first [`MAX_REJECTED_BYTES`] bytes as received (lossy UTF-8).
    pub content: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The flows, credits and rejected files of every organization.
pub struct SledReconciliation {
    flows: sled::Tree,
    credits: sled::Tree,
    rejects: sled::Tree,
    cursors: sled::Tree,
    runs: sled::Tree,
    exports: sled::Tree,
    /// The Ente outbox (the same trees as [`crate::SledLedger`]'s): a forwarded flow's
    /// notification is written with the flow.
    outbox: sled::Tree,
    outbox_open: sled::Tree,
    db: sled::Db,
    /// Organizations whose flows go to their Ente.
    forwarded: RwLock<HashSet<String>>,
    /// The incremental reconciliation's state ([`crate::recon_state`]).
    pub(crate) state: crate::recon_state::ReconTrees,
}

/// What the daily export batch did for one organization and business day.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportDelivery {
    /// Organization.
    pub organization: String,
    /// The business day exported (Europe/Rome).
    pub day: Option<NaiveDate>,
    /// The files produced (names) and their sizes.
    pub files: Vec<(String, usize)>,
    /// When the e-mail was accepted by the SMTP server (`None`: not sent yet, or no e-mail
    /// configured).
    pub emailed_at: Option<DateTime<Utc>>,
    /// When the files were uploaded over FTP.
    pub uploaded_at: Option<DateTime<Utc>>,
    /// The last failure, if any (retried at the next pass).
    pub last_error: Option<String>,
}

fn export_key(org: &str, day: NaiveDate) -> Vec<u8> {
    let mut k = org_prefix(org);
    k.extend_from_slice(day.format("%Y-%m-%d").to_string().as_bytes());
    k
}

fn flow_key(org: &str, flow_id: &str, sender: &str, revision: u32) -> Vec<u8> {
    let mut k = org_prefix(org);
    k.extend_from_slice(flow_id.as_bytes());
    k.push(0);
    k.extend_from_slice(sender.as_bytes());
    k.push(0);
    k.extend_from_slice(&revision.to_be_bytes());
    k
}

fn credit_key(org: &str, c: &Credit) -> Vec<u8> {
    let mut k = org_prefix(org);
    k.extend_from_slice(c.account.as_bytes());
    k.push(0);
    match &c.bank_ref {
        Some(r) => {
            k.extend_from_slice(b"R");
            k.extend_from_slice(r.as_bytes());
        }
        None => {
            let content = format!(
                "C{}|{:?}|{:?}|{}|{}",
                c.amount_cents,
                c.booking_date,
                c.end_to_end_id,
                c.provisional.as_deref().unwrap_or_default(),
                c.texts.first().map(String::as_str).unwrap_or_default()
            );
            k.extend_from_slice(content.as_bytes());
        }
    }
    k.push(0);
    k.push(u8::from(c.reversal));
    k
}

impl SledReconciliation {
    /// Opens the trees.
    pub(crate) fn open(db: &sled::Db) -> Result<Self, StorageError> {
        let flows = db.open_tree("fdr_flows")?;
        let credits = db.open_tree("bank_credits")?;
        let state = crate::recon_state::ReconTrees::open(db)?;
        crate::recon_state::upgrade(db, &flows, &credits, &state)?;
        Ok(Self {
            flows,
            credits,
            rejects: db.open_tree("fdr_rejects")?,
            cursors: db.open_tree("fdr_cursors")?,
            runs: db.open_tree("recon_runs")?,
            exports: db.open_tree("recon_exports")?,
            outbox: db.open_tree(OUTBOX)?,
            outbox_open: db.open_tree("outbox_open")?,
            db: db.clone(),
            forwarded: RwLock::default(),
            state,
        })
    }

    pub(crate) fn flows_tree(&self) -> &sled::Tree {
        &self.flows
    }

    pub(crate) fn credits_tree(&self) -> &sled::Tree {
        &self.credits
    }

    /// The organizations whose reporting flows are forwarded to their Ente from now on (set at
    /// start-up from `[organizations.notification] flows`).
    pub fn set_flow_forwarding(&self, orgs: impl IntoIterator<Item = String>) {
        let mut set = self.forwarded.write().unwrap_or_else(|p| p.into_inner());
        set.clear();
        set.extend(orgs);
    }

    /// Whether `org`'s flows are forwarded to its Ente.
    pub fn forwards_flows(&self, org: &str) -> bool {
        self.forwarded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(org)
    }

    /// The flow revision a `REPORTING_FLOW` notification of `org` forwards.
    pub fn flow_of(&self, org: &str, r: &FlowRef) -> Result<Option<StoredFlow>, StorageError> {
        let key = flow_key(org, &r.flow_id, &r.sender, r.revision);
        match self.flows.get(&key)? {
            Some(v) => Ok(Some(decode("fdr_flows", &key, &v)?)),
            None => Ok(None),
        }
    }

    /// Whether this revision of a PSP's flow is stored.
    pub fn has_flow(
        &self,
        org: &str,
        flow_id: &str,
        sender: &str,
        revision: u32,
    ) -> Result<bool, StorageError> {
        Ok(self
            .flows
            .contains_key(flow_key(org, flow_id, sender, revision))?)
    }

    /// The FdR API cursor of `org`: `published` of the last flow acquired in order.
    pub fn cursor(&self, org: &str) -> Result<Option<String>, StorageError> {
        Ok(self
            .cursors
            .get(org.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Moves the FdR API cursor of `org`.
    pub fn set_cursor(&self, org: &str, published: &str) -> Result<(), StorageError> {
        self.cursors.insert(org.as_bytes(), published.as_bytes())?;
        Ok(())
    }

    /// Stores a flow for `org` (see [`FlowImport`]). A new flow, a higher revision or a
    /// corrected one of an organization that forwards its flows gets its `REPORTING_FLOW`
    /// notification in the Ente's outbox in the same transaction (not a flow addressed to
    /// another receiver). Nothing is flushed here: the caller commits.
    pub fn put_flow(&self, org: &str, stored: &StoredFlow) -> Result<FlowImport, StorageError> {
        let h = &stored.flow.header;
        let key = flow_key(org, &h.flow_id, stored.sender(), stored.revision());
        let mut prefix = org_prefix(org);
        prefix.extend_from_slice(h.flow_id.as_bytes());
        prefix.push(0);
        prefix.extend_from_slice(stored.sender().as_bytes());
        prefix.push(0);
        let earlier = self
            .flows
            .scan_prefix(&prefix)
            .next()
            .transpose()?
            .is_some();
        let forward = self.forwards_flows(org)
            && !stored
                .flow
                .flags
                .iter()
                .any(|f| matches!(f, FlowFlag::OtherReceiver { .. }));
        let bytes = encode(stored)?;
        let notification = if forward {
            let n = Notification::of_flow(
                self.db.generate_id()?,
                org,
                &FlowRef {
                    flow_id: h.flow_id.clone(),
                    sender: stored.sender().to_string(),
                    revision: stored.revision(),
                },
                stored.acquired_at,
            );
            Some((outbox_key(org, n.id), encode_record(OUTBOX, &n)?))
        } else {
            None
        };
        let dirty_key = crate::recon_state::state_key(org, &h.flow_id);
        let mark = self.db.generate_id()?.to_be_bytes();
        let _running = crate::tx::unit_of_work();
        let result = (
            &self.flows,
            &self.outbox,
            &self.outbox_open,
            &self.state.dirty_flows,
        )
            .transaction(|(flows, outbox, open, dirty)| {
                let outcome = match flows.get(&key)? {
                    Some(old_bytes) => {
                        let old: StoredFlow = decode("fdr_flows", &key, &old_bytes)
                            .map_err(ConflictableTransactionError::Abort)?;
                        if old.flow == stored.flow {
                            return Ok(FlowImport::Unchanged);
                        }
                        FlowImport::Replaced
                    }
                    None if earlier => FlowImport::Revision,
                    None => FlowImport::New,
                };
                flows.insert(key.as_slice(), bytes.as_slice())?;
                // the next reconciliation run matches it (again)
                dirty.insert(dirty_key.as_slice(), &mark[..])?;
                if let Some((nkey, nbytes)) = &notification {
                    crate::outbox::enqueue(outbox, open, nkey, nbytes)?;
                }
                Ok(outcome)
            });
        match result {
            Ok(o) => Ok(o),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(StorageError::from(e)),
        }
    }

    /// The latest revision of each flow of `org`.
    pub fn flows(&self, org: &str) -> Result<Vec<StoredFlow>, StorageError> {
        let mut latest: BTreeMap<(String, String), StoredFlow> = BTreeMap::new();
        for item in self.flows.scan_prefix(org_prefix(org)) {
            let (k, v) = item?;
            let f: StoredFlow = decode("fdr_flows", &k, &v)?;
            let key = (f.flow.header.flow_id.clone(), f.sender().to_string());
            // keys are ordered by revision: the last one read wins
            latest.insert(key, f);
        }
        Ok(latest.into_values().collect())
    }

    /// Every revision of one flow of `org`, oldest first.
    pub fn revisions(&self, org: &str, flow_id: &str) -> Result<Vec<StoredFlow>, StorageError> {
        let mut prefix = org_prefix(org);
        prefix.extend_from_slice(flow_id.as_bytes());
        prefix.push(0);
        self.flows
            .scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item?;
                decode("fdr_flows", &k, &v)
            })
            .collect()
    }

    /// Stores the credits of a statement; returns (new, already known).
    pub fn put_credits(
        &self,
        org: &str,
        credits: &[Credit],
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<(usize, usize), StorageError> {
        let (mut new, mut known) = (0, 0);
        for c in credits {
            let key = credit_key(org, c);
            if self.credits.contains_key(&key)? {
                known += 1;
                continue;
            }
            let stored = StoredCredit {
                organization: org.to_string(),
                credit: c.clone(),
                source: source.to_string(),
                imported_at: now,
            };
            let bytes = encode(&stored)?;
            let mark = self.db.generate_id()?.to_be_bytes();
            // stored and marked for the next reconciliation run together
            (&self.credits, &self.state.dirty_credits)
                .transaction(|(credits, dirty)| {
                    credits.insert(key.as_slice(), bytes.as_slice())?;
                    dirty.insert(key.as_slice(), &mark[..])?;
                    Ok::<_, ConflictableTransactionError<StorageError>>(())
                })
                .map_err(|e| match e {
                    TransactionError::Abort(e) => e,
                    TransactionError::Storage(e) => StorageError::from(e),
                })?;
            new += 1;
        }
        Ok((new, known))
    }

    /// Every credit of `org`.
    pub fn credits(&self, org: &str) -> Result<Vec<StoredCredit>, StorageError> {
        self.credits
            .scan_prefix(org_prefix(org))
            .map(|item| {
                let (k, v) = item?;
                decode("bank_credits", &k, &v)
            })
            .collect()
    }

    /// The summary of the last reconciliation run of `org`.
    pub fn last_run(&self, org: &str) -> Result<Option<ReconRun>, StorageError> {
        match self.runs.get(org.as_bytes())? {
            Some(v) => Ok(Some(decode("recon_runs", org.as_bytes(), &v)?)),
            None => Ok(None),
        }
    }

    /// Records the summary of a reconciliation run of `org`.
    pub fn record_run(&self, run: &ReconRun) -> Result<(), StorageError> {
        self.runs
            .insert(run.organization.as_bytes(), encode(run)?)?;
        Ok(())
    }

    /// What the daily export batch did for `org` and `day`.
    pub fn export_delivery(
        &self,
        org: &str,
        day: NaiveDate,
    ) -> Result<Option<ExportDelivery>, StorageError> {
        let k = export_key(org, day);
        match self.exports.get(&k)? {
            Some(v) => Ok(Some(decode("recon_exports", &k, &v)?)),
            None => Ok(None),
        }
    }

    /// The last business day the daily export batch produced files for `org`.
    pub fn last_export_day(&self, org: &str) -> Result<Option<NaiveDate>, StorageError> {
        match self.exports.scan_prefix(org_prefix(org)).next_back() {
            Some(item) => {
                let (k, v) = item?;
                let d: ExportDelivery = decode("recon_exports", &k, &v)?;
                Ok(d.day)
            }
            None => Ok(None),
        }
    }

    /// Records what the daily export batch did for `d.organization` and `d.day` (flush
    /// before acting on it).
    pub fn record_export_delivery(&self, d: &ExportDelivery) -> Result<(), StorageError> {
        let Some(day) = d.day else {
            return Err(StorageError::file(
                "recording an export",
                std::io::Error::other("an export delivery without its day"),
            ));
        };
        self.exports
            .insert(export_key(&d.organization, day), encode(d)?)?;
        Ok(())
    }

    /// Keeps a file that could not be read.
    pub fn reject(&self, file: &RejectedFile) -> Result<(), StorageError> {
        let mut key = org_prefix(&file.organization);
        key.extend_from_slice(&instant_bytes(file.at));
        key.extend_from_slice(file.name.as_bytes());
        self.rejects.insert(key, encode(file)?)?;
        Ok(())
    }

    /// The files of `org` that could not be read, oldest first.
    pub fn rejected(&self, org: &str) -> Result<Vec<RejectedFile>, StorageError> {
        self.rejects
            .scan_prefix(org_prefix(org))
            .map(|item| {
                let (k, v) = item?;
                decode("fdr_rejects", &k, &v)
            })
            .collect()
    }
}

/// What importing a file did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum FileImport<T> {
    /// Read and stored.
    Imported(T),
    /// Not a flow / statement: kept in `fdr_rejects` (the reason).
    Rejected(String),
    /// A flow for another organization (its receiver): not stored.
    OtherOrganization(String),
}

/// A flow imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowImported {
    /// Flow id.
    pub flow_id: String,
    /// Revision (0 for a file).
    pub revision: u32,
    /// New, revision, unchanged, replaced.
    pub outcome: FlowImport,
    /// Rows listed.
    pub rows: usize,
    /// Sum of the counted rows, cents.
    pub total_cents: i64,
    /// Flags of the flow.
    pub flags: Vec<FlowFlag>,
}

/// A statement imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementImported {
    /// Format read.
    pub format: bank::Format,
    /// Credits (and reversals) in the file.
    pub credits: usize,
    /// Of which new.
    pub new: usize,
    /// Of which already imported.
    pub already_known: usize,
    /// Movements that are not money received.
    pub skipped: usize,
    /// Movements that could not be read.
    pub problems: Vec<String>,
}

impl SledReconciliation {
    fn keep_rejected(
        &self,
        org: &str,
        name: &str,
        bytes: &[u8],
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        self.reject(&RejectedFile {
            organization: org.to_string(),
            name: name.to_string(),
            error: error.to_string(),
            content: String::from_utf8_lossy(bytes.get(..MAX_REJECTED_BYTES).unwrap_or(bytes))
                .into_owned(),
            at: now,
        })
    }

    /// Reads and stores a reporting-flow file (XML, base64 of it, or the old SOAP answer) for
    /// `org`: the one import path of the REST API and the CLI.
    pub fn import_flow_file(
        &self,
        org: &str,
        name: &str,
        bytes: &[u8],
        now: DateTime<Utc>,
    ) -> Result<FileImport<FlowImported>, StorageError> {
        let flow = match fdr::xml::decode(bytes) {
            Ok(f) => f,
            Err(e) => {
                let why = e.to_string();
                self.keep_rejected(org, name, bytes, &why, now)?;
                return Ok(FileImport::Rejected(why));
            }
        };
        if flow.header.receiver_id.trim() != org {
            return Ok(FileImport::OtherOrganization(flow.header.receiver_id));
        }
        let stored = StoredFlow {
            organization: org.to_string(),
            flow,
            source: name.to_string(),
            acquired_at: now,
        };
        let outcome = self.put_flow(org, &stored)?;
        Ok(FileImport::Imported(FlowImported {
            flow_id: stored.flow.header.flow_id.clone(),
            revision: stored.revision(),
            outcome,
            rows: stored.flow.rows.len(),
            total_cents: stored.flow.counted_total_cents(),
            flags: stored.flow.flags,
        }))
    }

    /// Reads and stores a bank statement (camt.053/054, OPI) for `org`.
    pub fn import_statement_file(
        &self,
        org: &str,
        name: &str,
        bytes: &[u8],
        now: DateTime<Utc>,
    ) -> Result<FileImport<StatementImported>, StorageError> {
        let statement = match bank::decode(bytes) {
            Ok(s) => s,
            Err(e) => {
                let why = e.to_string();
                self.keep_rejected(org, name, bytes, &why, now)?;
                return Ok(FileImport::Rejected(why));
            }
        };
        let (new, already_known) = self.put_credits(org, &statement.credits, name, now)?;
        Ok(FileImport::Imported(StatementImported {
            format: statement.format,
            credits: statement.credits.len(),
            new,
            already_known,
            skipped: statement.skipped,
            problems: statement.problems,
        }))
    }
}

/// One receipt transfer paid to the organization, labelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentLine {
    /// Receipt id.
    pub receipt_id: String,
    /// IUV.
    pub iuv: String,
    /// Transfer index.
    pub id_transfer: u8,
    /// Amount, cents.
    pub amount_cents: i64,
    /// When it was paid (the receipt's `paymentDateTime`, else its arrival).
    pub paid_at: DateTime<Utc>,
    /// Label.
    pub label: Label,
    /// The flow that reports it.
    pub flow_id: Option<String>,
    /// What to look at.
    pub warnings: Vec<MatchWarning>,
}

/// A flow row without a receipt (`IUV_NO_RT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RowLine {
    /// Flow.
    pub flow_id: String,
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
    /// Label.
    pub label: Label,
}

/// A credit, labelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditLine {
    /// The credit.
    pub credit: Credit,
    /// The flow it settles.
    pub flow_id: Option<String>,
    /// Label.
    pub label: Label,
}

/// A flow's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowLine {
    /// Flow id.
    pub flow_id: String,
    /// Revision reconciled (the latest).
    pub revision: u32,
    /// Regulation date.
    pub regulation_date: Option<NaiveDate>,
    /// Sum of the counted rows, cents.
    pub total_cents: i64,
    /// Credited so far (reversals subtracted), cents.
    pub credited_cents: i64,
    /// Settlement.
    pub settlement: Settlement,
    /// Flags of the flow.
    pub flags: Vec<FlowFlag>,
}

/// The reconciliation of one organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Organization.
    pub organization: String,
    /// Flows.
    pub flows: Vec<FlowLine>,
    /// Receipt transfers.
    pub payments: Vec<PaymentLine>,
    /// Reported rows without a receipt.
    pub rows_without_receipt: Vec<RowLine>,
    /// Credits.
    pub credits: Vec<CreditLine>,
    /// Count and cents per label (payments, rows without receipt and credits).
    pub totals: BTreeMap<&'static str, (usize, i64)>,
}

/// The latest flows of `org` with their settlement by the credits, after bringing the
/// reconciliation up to date ([`crate::recon_state::with_run`]).
pub fn flow_lines(store: &crate::Store, org: &str) -> Result<Vec<FlowLine>, StorageError> {
    crate::recon_state::with_run(store, org, Utc::now(), |_| {
        crate::recon_state::flow_lines(store, org)
    })
}

/// Reconciles `org`: brings its state up to date (only what changed since the last run) and
/// reads the whole report (receipts ↔ latest flows ↔ credits, every line labelled), under the
/// run's lock ([`crate::recon_state::with_run`]).
pub fn reconcile(store: &crate::Store, org: &str) -> Result<Report, StorageError> {
    crate::recon_state::with_run(store, org, Utc::now(), |_| {
        crate::recon_state::report(store, org)
    })
}

/// The transfers of `org` no flow reports yet, after bringing the reconciliation up to date
/// (read from their own index: the reported ones are not read).
pub fn unreported_payments(
    store: &crate::Store,
    org: &str,
) -> Result<Vec<PaymentLine>, StorageError> {
    crate::recon_state::with_run(store, org, Utc::now(), |_| {
        crate::recon_state::unreported_payments(store, org)
    })
}

/// The summary of one reconciliation run (what `GET …/reconciliation` shows as `lastRun`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconRun {
    /// Organization.
    pub organization: String,
    /// When it ran.
    pub at: DateTime<Utc>,
    /// What made it run (`schedule`, `fdr.acquired`, `fdr.statement_imported`, `start`, …).
    pub reason: String,
    /// Latest flows reconciled.
    pub flows: usize,
    /// Receipt transfers labelled.
    pub payments: usize,
    /// Flow rows without a receipt (`IUV_NO_RT`).
    pub rows_without_receipt: usize,
    /// Credits that explain nothing (`TES_NO_IUF_OR_IUV`).
    pub unexplained_credits: usize,
    /// Payment options that became reported (`PO_REPORTED` / `PO_PARTIALLY_REPORTED`) in this
    /// run.
    pub options_reported: usize,
    /// Receipts past their D+2 publication deadline that no flow reports, on the run's day.
    pub unreported_after_deadline: usize,
    /// Count and cents per label.
    pub totals: BTreeMap<String, (usize, i64)>,
}

impl ReconRun {
    /// The summary of `report`, run at `at` because of `reason`.
    pub fn of(
        report: &Report,
        at: DateTime<Utc>,
        reason: &str,
        options_reported: usize,
        unreported_after_deadline: usize,
    ) -> Self {
        ReconRun {
            organization: report.organization.clone(),
            at,
            reason: reason.to_string(),
            flows: report.flows.len(),
            payments: report.payments.len(),
            rows_without_receipt: report.rows_without_receipt.len(),
            unexplained_credits: report
                .credits
                .iter()
                .filter(|c| c.label == Label::TesNoIufOrIuv)
                .count(),
            options_reported,
            unreported_after_deadline,
            totals: report
                .totals
                .iter()
                .map(|(k, v)| ((*k).to_string(), *v))
                .collect(),
        }
    }
}

/// The receipt transfers of `payments` that no flow reports although their PSP's publication
/// deadline (D+2 operating days, [`mpay_messages::domain::reporting`]) is over on business day
/// `as_of`, oldest deadline first, each with its deadline. Stand-alone stamps are never listed.
pub fn unreported(payments: &[PaymentLine], as_of: NaiveDate) -> Vec<(PaymentLine, NaiveDate)> {
    use mpay_messages::domain::reporting::{overdue, PaidNotReported};
    let seen: Vec<PaidNotReported<'_>> = payments
        .iter()
        .map(|p| PaidNotReported {
            receipt_id: &p.receipt_id,
            paid_at: p.paid_at,
            reported: p.flow_id.is_some(),
            stamp: p.label == Label::RtNoIufBollo,
        })
        .collect();
    let late = overdue(&seen, as_of);
    let mut out = Vec::with_capacity(late.len());
    for (p, deadline) in late {
        for line in payments
            .iter()
            .filter(|l| l.receipt_id == p.receipt_id && l.flow_id.is_none())
        {
            out.push((line.clone(), deadline));
        }
    }
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

fn euro_text(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{},{:02}", c / 100, c % 100)
}

impl Report {
    /// Counts and sums its lines per label into `totals`: every payment, every reported row
    /// without a receipt, every credit that explains nothing.
    pub(crate) fn count_totals(&mut self) {
        let mut totals: BTreeMap<&'static str, (usize, i64)> = BTreeMap::new();
        let mut add = |label: Label, cents: i64| {
            let e = totals.entry(label.code()).or_insert((0, 0));
            e.0 += 1;
            e.1 += cents;
        };
        for p in &self.payments {
            add(p.label, p.amount_cents);
        }
        for r in &self.rows_without_receipt {
            add(r.label, r.amount_cents.unwrap_or(0));
        }
        for c in &self.credits {
            if c.label == Label::TesNoIufOrIuv {
                add(c.label, c.credit.amount_cents);
            }
        }
        self.totals = totals;
    }

    /// The report as CSV for a treasury office's spreadsheet: `;`-separated, decimal comma,
    /// one line per payment, per reported row without a receipt and per credit.
    pub fn to_csv(&self) -> Result<Vec<u8>, StorageError> {
        let failed = |e: csv::Error| StorageError::file("writing the CSV", e.into());
        let mut w = csv::WriterBuilder::new()
            .delimiter(b';')
            .from_writer(Vec::new());
        w.write_record([
            "tipo",
            "etichetta",
            "flusso",
            "iuv",
            "iur_o_ricevuta",
            "indice",
            "importo_euro",
            "data",
            "riferimento_banca",
            "note",
        ])
        .map_err(failed)?;
        for p in &self.payments {
            let notes: Vec<String> = p.warnings.iter().map(|w| format!("{w:?}")).collect();
            w.write_record([
                "PAGAMENTO",
                p.label.code(),
                p.flow_id.as_deref().unwrap_or(""),
                &p.iuv,
                &p.receipt_id,
                &p.id_transfer.to_string(),
                &euro_text(p.amount_cents),
                "",
                "",
                &notes.join(" "),
            ])
            .map_err(failed)?;
        }
        for r in &self.rows_without_receipt {
            w.write_record([
                "RIGA_FLUSSO",
                r.label.code(),
                &r.flow_id,
                &r.iuv,
                &r.iur,
                "",
                &euro_text(r.amount_cents.unwrap_or(0)),
                "",
                "",
                &format!("esito {}", r.status.code()),
            ])
            .map_err(failed)?;
        }
        for c in &self.credits {
            let cr = &c.credit;
            w.write_record([
                if cr.reversal { "STORNO" } else { "ACCREDITO" },
                c.label.code(),
                c.flow_id.as_deref().unwrap_or(""),
                "",
                "",
                "",
                &euro_text(cr.amount_cents),
                &cr.value_date
                    .or(cr.booking_date)
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                cr.bank_ref.as_deref().unwrap_or(""),
                cr.texts.first().map(String::as_str).unwrap_or(""),
            ])
            .map_err(failed)?;
        }
        w.into_inner()
            .map_err(|e| StorageError::file("writing the CSV", e.into_error()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod forwarding_tests {
    use mpay_messages::domain::delivery::NotificationKind;
    use mpay_messages::fdr::{FlowHeader, FlowRow, SenderKind};

    use super::*;
    use crate::store::Store;

    const ORG: &str = "80001234568";

    fn stored(revision: Option<u32>, cents: i64, receiver_flag: bool) -> StoredFlow {
        let mut flow = Flow::new(
            FlowHeader {
                flow_id: "2026-07-04PSP-1".into(),
                revision,
                flow_date: "2026-07-04T08:30:00".into(),
                regulation: "TRN-1".into(),
                regulation_date: None,
                sender_kind: SenderKind::BicCode,
                sender_id: "PSPXITXXXXX".into(),
                psp_id: None,
                sender_name: None,
                bic_pouring_bank: None,
                receiver_id: ORG.into(),
                receiver_name: None,
                declared_count: Some(1),
                declared_total_cents: Some(cents),
            },
            vec![FlowRow {
                number: 1,
                iuv: "01000000000000001".into(),
                iur: "iur-1".into(),
                id_transfer: Some(1),
                amount_cents: Some(cents),
                status: PayStatus::Executed,
                date: None,
                problems: vec![],
            }],
        );
        if receiver_flag {
            flow.flags.push(FlowFlag::OtherReceiver {
                receiver: "01987654322".into(),
            });
        }
        StoredFlow {
            organization: ORG.into(),
            flow,
            source: "fdr-rest".into(),
            acquired_at: Utc::now(),
        }
    }

    fn open(store: &Store) -> Vec<Notification> {
        store.ledger.open_notifications(ORG, 100).unwrap()
    }

    #[test]
    fn a_forwarded_flow_is_enqueued_with_its_write_once_per_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = &store.reconciliation;
        // not forwarded: stored, nothing queued
        assert_eq!(
            r.put_flow(ORG, &stored(Some(1), 1500, false)).unwrap(),
            FlowImport::New
        );
        assert!(open(&store).is_empty());

        r.set_flow_forwarding([ORG.to_string()]);
        assert!(r.forwards_flows(ORG));
        // the same flow again: nothing
        assert_eq!(
            r.put_flow(ORG, &stored(Some(1), 1500, false)).unwrap(),
            FlowImport::Unchanged
        );
        assert!(open(&store).is_empty());
        // a higher revision: queued, naming that revision
        assert_eq!(
            r.put_flow(ORG, &stored(Some(2), 1500, false)).unwrap(),
            FlowImport::Revision
        );
        let queued = open(&store);
        assert_eq!(queued.len(), 1);
        let n = &queued[0];
        assert_eq!(n.kind, NotificationKind::ReportingFlow);
        let fref = n.flow_ref().unwrap();
        assert_eq!(
            (fref.flow_id.as_str(), fref.sender.as_str(), fref.revision),
            ("2026-07-04PSP-1", "PSPXITXXXXX", 2)
        );
        let back = r.flow_of(ORG, &fref).unwrap().unwrap();
        assert_eq!(back.revision(), 2);
        // again: unchanged, nothing more
        assert_eq!(
            r.put_flow(ORG, &stored(Some(2), 1500, false)).unwrap(),
            FlowImport::Unchanged
        );
        assert_eq!(open(&store).len(), 1);
        // corrected content of the same revision: replaced and forwarded again
        assert_eq!(
            r.put_flow(ORG, &stored(Some(2), 1600, false)).unwrap(),
            FlowImport::Replaced
        );
        assert_eq!(open(&store).len(), 2);
        // a flow addressed to another receiver: stored, never forwarded
        assert_eq!(
            r.put_flow(ORG, &stored(Some(3), 1500, true)).unwrap(),
            FlowImport::Revision
        );
        assert_eq!(open(&store).len(), 2);
        // the record reads back the same after a reopen (compact encoding of the new kind)
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let again = open(&store);
        assert_eq!(again.len(), 2);
        assert_eq!(again[0], *n);
    }
}
