//! Applying bulk debt-position feeds to the ledger (FORMAT.md §5.5–§5.7; DESIGN §5 `FeedLoader`).
//!
//! [`load_feed`] reads a feed twice, streaming: a **pre-scan** (file-level errors such as
//! `FILE_ENCODING` reject the whole file before anything is applied; in-file duplicate IUDs and
//! non-contiguous positions are found; FULL-mode guards are evaluated), then the **apply** pass
//! by row groups (= one position, all its rows, FORMAT.md §5.6 "Atomicity"), each validated and
//! applied all-or-nothing. Groups are committed in **batches**
//! ([`LoadOptions::batch_positions`], default [`DEFAULT_BATCH_POSITIONS`]): the positions with
//! their index entries, the per-row outcomes and the feed record checkpoint of a whole batch go
//! in **one** sled transaction. A crash therefore leaves the ledger exactly at a committed
//! checkpoint — no half-applied position, nothing applied beyond the checkpoint — and the load
//! resumes after it ([`LoadOptions::resume`]) or is marked failed ([`mark_failed`]). Positions
//! written by a feed also carry the flow id in their option metadata (re-applying a group of a
//! load interrupted by an older version, which checkpointed separately, stays idempotent).
//!
//! Each group is planned against the store and the groups planned before it in the same batch
//! (IUV / notice-number uniqueness, existing positions); the transaction then only re-checks
//! that nothing changed concurrently (compare-and-swap on the stored bytes, index holders) and,
//! if something did, the batch is split and planned again.
//!
//! Memory stays bounded whatever the file: rows are streamed; a batch holds at most 4096 rows;
//! outcomes go to the store with their batch; the pre-scan's work set (the file's IUDs and
//! IUPDs) is kept in memory up to 96 MiB, then in the `feed_seen` tree; FULL mode streams the
//! organization's positions instead of listing them.
//!
//! Trees (own, opened from the store's `sled::Db`):
//! - `feeds`: `org ++ flowId` → [`FeedLoadRecord`]
//! - `feed_outcomes`: `org ++ flowId ++ 0x00 ++ 0x01 ++ firstRow(u64 BE) ++ '+'` → up to 12
//!   consecutive row outcomes (packed: JSON arrays, not objects); `... ++ 0x01 ++
//!   row(u64 BE)` → one row outcome (written by earlier versions); `... ++ 0x02 ++ IUD` (FULL-mode
//!   derived lines) → [`StoredOutcome`]
//! - `feed_seen`: `org ++ flowId ++ 0x00 ++ 'I' ++ IUD` / `'P' ++ IUPD` → ∅ (work set of the
//!   pre-scan when it outgrew memory), `'C'` → key of the last position handled by the FULL-mode
//!   cancellations (resume point); removed when the load ends

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;
use std::io::{Read, Write};
use std::ops::{Bound, Range};
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use mpay_messages::feeds::{
    ErrorCode, FeedFileError, FeedFileName, FeedManifest, FeedMode, FeedReader, FeedRecord,
    FeedRow, FeedVersion, IuvExchangeLine, IuvExchangeWriter, IuvKind, Mb14AmountMode,
    NoticeRequest, OutcomeLine, OutcomeWriter, ReadOptions, RowAction, RowIssue, RowOutcome,
};
use mpay_messages::position::{
    DebtPosition, Destination, MapEntry, OptionStatus, PaymentOption, PositionStatus, Transfer,
};
use mpay_messages::time::rome_local_to_utc;
use mpay_messages::{Iban, NoticeLayout, NoticeNumber, OrgFiscalCode};
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::codec::{decode, encode};
use crate::ledger::{
    apply_prepared, claim_conflict, position_key, prepare, unique_claims, unique_releases, Abort,
    LedgerError, PreparedWrite, SledLedger,
};
use crate::{StorageError, Store};

/// Option metadata keys written by feeds (FORMAT.md §5.1 data model; ≤ 10 per option).
pub mod meta {
    /// Installment id.
    pub const IUD: &str = "IUD";
    /// Flow id of the feed that last wrote the option (origin marker).
    pub const FLOW: &str = mpay_messages::domain::position::FEED_FLOW_KEY;
    /// `A` supplied / `B` generated.
    pub const IUV_KIND: &str = "tipoIuv";
    /// `indiceOpzionePagamento`.
    pub const OPTION_INDEX: &str = "indiceOpzionePagamento";
    /// `tipoOpzionePagamento`.
    pub const OPTION_TYPE: &str = "tipoOpzionePagamento";
    /// `descrizioneOpzionePagamento`.
    pub const OPTION_DESCRIPTION: &str = "descrizioneOpzionePagamento";
    /// `descrizionePosizioneDebitoria`.
    pub const POSITION_DESCRIPTION: &str = "descrizionePosizioneDebitoria";
    /// `datiSpecificiRiscossione`.
    pub const DATI_RISCOSSIONE: &str = "datiSpecificiRiscossione";
    /// `flgGeneraIuv`.
    pub const GENERATE_IUV: &str = "flgGeneraIuv";
    /// `dataNotifica`.
    pub const NOTIFICATION_DATE: &str = "dataNotifica";
}

/// A debt type (`tipoDovuto`, our service / TipologiaServizio) as the loader needs it
/// (FORMAT.md §5.4: "its configuration gives IBAN, taxonomy, due-date requirement,
/// anonymous-payer permission").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedService {
    /// `tipoDovuto` code.
    pub code: String,
    /// Credit IBAN of the primary transfer (default: the organization's first IBAN).
    pub iban: Option<Iban>,
    /// Taxonomy used when a row has no `datiSpecificiRiscossione`.
    pub category: Option<String>,
    /// A row without `dataEsecuzionePagamento` is rejected (`ROW_BAD_DUE_DATE`).
    pub due_date_required: bool,
    /// Disabled types reject rows (`ROW_TIPO_DOVUTO_DISABLED`).
    pub active: bool,
    /// `ANONIMO` debtors allowed.
    pub anonymous_allowed: bool,
}

/// What the loader needs to know about the organization (Ente); built by the caller from its
/// configuration so that storage does not depend on `config` / `web`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedOrg {
    /// Fiscal code.
    pub fiscal_code: OrgFiscalCode,
    /// Name (company name of the positions).
    pub name: String,
    /// IPA code, compared with the file name (`FILE_ENTE_MISMATCH`); `None` = not checked.
    pub ipa_code: Option<String>,
    /// Notice layout (aux digit, segregation / application code): Tipo A IUVs must fit it,
    /// Tipo B IUVs are generated with it (FORMAT.md §5.5).
    pub layout: NoticeLayout,
    /// The organization's further notice codes (`notice_codes`): Tipo A IUVs of any of them are
    /// recognised as well.
    #[serde(default)]
    pub other_layouts: Vec<NoticeLayout>,
    /// Registered IBANs: an explicit primary transfer to the Ente must use one of them.
    pub ibans: Vec<Iban>,
    /// Debt types enabled for feeds.
    pub services: Vec<FeedService>,
    /// 1.4 multi-beneficiary amount mode (FORMAT.md §5.4).
    pub mb14_amount_mode: Mb14AmountMode,
    /// Due date given to installments without one (1.2+ allows it); default 2099-12-31.
    pub default_due_date: Option<NaiveDate>,
}

/// Options of one load (FORMAT.md §5.6; a zip's `manifest.json` fills them through
/// [`LoadOptions::with_manifest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// File name as uploaded (`<ipa>-<flowId>-<version>.csv|zip` or any unique name).
    pub file_name: String,
    /// Flow id; `None` = taken from the file name (or the name itself when not standard).
    pub flow_id: Option<String>,
    /// Refuse names that are not `<ipa>-<flowId>-<version>` (`FILE_NAME_INVALID`): file-drop
    /// channels; the REST API only needs a unique name.
    pub require_standard_name: bool,
    /// DELTA or FULL.
    pub mode: FeedMode,
    /// FULL scope (`scope.tipiDovuto`); `None` = the `tipoDovuto` values of the file.
    pub scope_tipi_dovuto: Option<Vec<String>>,
    /// FULL guard: most cancellations, per-mille of the in-scope installments (default 200).
    pub max_cancel_permille: u32,
    /// FULL guard: accept a file without data rows.
    pub allow_empty: bool,
    /// Validate and report without writing anything (no IUV generated).
    pub dry_run: bool,
    /// Resume a load left RUNNING (crash or stop) from its last committed group.
    pub resume: bool,
    /// Operator confirmation of a load stopped by `FULL_FEED_GUARD`.
    pub confirm_guard: bool,
    /// Reject Tipo A IUVs whose mod-93 check digit is wrong (`ROW_BAD_IUV`, FORMAT.md §5.5).
    pub strict_iuv_check: bool,
    /// Row groups (positions) read per batch (default [`DEFAULT_BATCH_POSITIONS`]; at least
    /// 1). A batch is written in as few transactions as possible — each with the positions,
    /// their outcome lines and the checkpoint, about 256 KiB at most — and the progress
    /// callback runs after each batch, so this is also the granularity of a stop. Larger
    /// batches hold sled's transaction lock (which every reader of the store waits for) longer.
    pub batch_positions: usize,
}

/// Default [`LoadOptions::batch_positions`]: one transaction (and one log write) per this many
/// positions instead of two per position, with readers of the store delayed a few
/// milliseconds at most by a commit.
pub const DEFAULT_BATCH_POSITIONS: usize = 128;

/// Most data rows in one batch, whatever `batch_positions` says: bounds a batch's memory (a
/// position may have up to 100 rows).
const MAX_BATCH_ROWS: usize = 4096;

/// Row outcomes stored per `feed_outcomes` entry: one tree insert per this many rows, and an
/// entry small enough (about 6 KiB) for sled to keep its nodes inline.
const OUTCOME_CHUNK: usize = 12;

/// Last byte of the key of a chunk of row outcomes (`... 0x01 ++ firstRow(u64 BE) ++ '+'`);
/// keys without it hold one outcome (loads written before chunks existed). Both sort by row.
const CHUNK_MARK: u8 = b'+';

/// Entries of the `feed_seen` work set written per `apply_batch` during the pre-scan.
const SEEN_BATCH: usize = 8192;

/// FULL mode: positions scanned per cancellation transaction at most (the cursor advances
/// with each one, so a resumed load does not rescan them).
const CANCEL_SCAN_BATCH: usize = 8192;

impl LoadOptions {
    /// DELTA defaults for `file_name`.
    pub fn new(file_name: impl Into<String>) -> Self {
        Self {
            file_name: file_name.into(),
            flow_id: None,
            require_standard_name: false,
            mode: FeedMode::Delta,
            scope_tipi_dovuto: None,
            max_cancel_permille: 200,
            allow_empty: false,
            dry_run: false,
            resume: false,
            confirm_guard: false,
            strict_iuv_check: true,
            batch_positions: DEFAULT_BATCH_POSITIONS,
        }
    }

    /// Applies a `manifest.json` (FORMAT.md §5.6).
    pub fn with_manifest(mut self, m: &FeedManifest) -> Self {
        self.mode = m.mode;
        self.scope_tipi_dovuto = m.tipi_dovuto.clone();
        self.max_cancel_permille = m.max_cancel_permille;
        self.allow_empty = m.allow_empty;
        self.dry_run = m.dry_run;
        self
    }
}

/// A re-readable feed (the loader streams it twice). Implemented for in-memory bytes and files;
/// zips are first extracted with [`mpay_messages::feeds::extract_zip`] into a file.
pub trait FeedSource {
    /// Opens the CSV from its beginning.
    ///
    /// # Errors
    /// I/O errors.
    fn open(&self) -> std::io::Result<Box<dyn Read + '_>>;
}

/// A feed held in memory.
#[derive(Debug, Clone)]
pub struct BytesSource(pub Vec<u8>);

impl FeedSource for BytesSource {
    fn open(&self) -> std::io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(self.0.as_slice()))
    }
}

/// A feed in a file.
#[derive(Debug, Clone)]
pub struct FileSource(pub PathBuf);

impl FeedSource for FileSource {
    fn open(&self) -> std::io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(std::io::BufReader::new(std::fs::File::open(
            &self.0,
        )?)))
    }
}

/// Status of a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FeedStatus {
    /// Loading, or interrupted (crash / stop) — resumable.
    Running,
    /// Finished; every row has an outcome.
    Done,
    /// Stopped for good: file-level error (nothing applied) or marked failed after a crash.
    Failed,
    /// FULL feed held by `FULL_FEED_GUARD` until an operator confirms (nothing applied).
    AwaitingConfirmation,
}

/// Phase reached by a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FeedPhase {
    /// Row groups being applied.
    Rows,
    /// FULL-mode cancellations being applied.
    Cancellations,
    /// Finished.
    Finished,
}

/// The persisted record of one load (tree `feeds`), identity (organization, flow id)
/// (FORMAT.md §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedLoadRecord {
    /// `<org>/<flowId>`.
    pub id: String,
    /// Organization.
    pub organization: OrgFiscalCode,
    /// File name as uploaded.
    pub file_name: String,
    /// Flow id.
    pub flow_id: String,
    /// DELTA / FULL.
    pub mode: FeedMode,
    /// Detected version.
    pub version: Option<FeedVersion>,
    /// Status.
    pub status: FeedStatus,
    /// Phase.
    pub phase: FeedPhase,
    /// Dry run.
    pub dry_run: bool,
    /// Data rows in the file (pre-scan).
    pub rows_total: u64,
    /// Data rows processed (committed).
    pub rows_read: u64,
    /// Rows applied (OK or WARN).
    pub rows_loaded: u64,
    /// Rows rejected (KO).
    pub rows_rejected: u64,
    /// Rows applied with warnings.
    pub rows_warned: u64,
    /// FULL: installments cancelled because absent.
    pub cancelled: u64,
    /// FULL: absent installments left alone because paid.
    pub skipped_paid: u64,
    /// Row groups committed.
    pub groups_committed: u64,
    /// Last data row of the last committed group (resume point).
    pub last_committed_row: u64,
    /// Byte offset after that row.
    pub last_committed_offset: u64,
    /// File-level failure or the reason it was marked failed.
    pub error: Option<FeedFileError>,
    /// File-level warnings (header aliases, ignored columns).
    pub warnings: Vec<RowIssue>,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Last checkpoint.
    pub updated_at: DateTime<Utc>,
    /// Ended (DONE / FAILED).
    pub finished_at: Option<DateTime<Utc>>,
}

/// One stored outcome: the report line and, when the row got or confirmed an IUV, its IUV
/// exchange line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredOutcome {
    /// `-ESITO.csv` line.
    pub line: OutcomeLine,
    /// `-IUV-EXCHANGE.csv` line.
    pub iuv: Option<IuvExchangeLine>,
}

/// A row outcome as stored in a chunk of `feed_outcomes`: the report line as a JSON array (no
/// field names: about half the bytes of [`StoredOutcome`]'s JSON, and faster to read back),
/// and of its IUV exchange line only what the report line does not already say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Packed(
    Option<u64>,
    String,
    String,
    String,
    RowOutcome,
    String,
    String,
    String,
    String,
    String,
    Vec<String>,
    Vec<String>,
    /// IUV exchange line: `indiceOpzionePagamento`, `tipoIuv`, `codiceFiscaleEnte`; the rest
    /// equals the report line.
    Option<(u32, IuvKind, String)>,
    /// IUV exchange line that differs from the report line in some other field (in full).
    Option<IuvExchangeLine>,
);

impl Packed {
    fn pack(o: StoredOutcome) -> Self {
        let StoredOutcome { line: l, iuv } = o;
        let (short, full) = match iuv {
            Some(x)
                if Some(x.row) == l.row
                    && x.iupd == l.iupd
                    && x.iud == l.iud
                    && x.iuv == l.iuv
                    && x.nav == l.nav
                    && x.amount == l.amount
                    && x.due_date == l.due_date
                    && x.performed == l.performed =>
            {
                (Some((x.option_index, x.kind, x.org_fiscal_code)), None)
            }
            other => (None, other),
        };
        Packed(
            l.row,
            l.iupd,
            l.iud,
            l.requested,
            l.outcome,
            l.performed,
            l.iuv,
            l.nav,
            l.amount,
            l.due_date,
            l.codes,
            l.descriptions,
            short,
            full,
        )
    }

    fn unpack(self) -> StoredOutcome {
        let Packed(
            row,
            iupd,
            iud,
            requested,
            outcome,
            performed,
            iuv,
            nav,
            amount,
            due_date,
            codes,
            descriptions,
            short,
            full,
        ) = self;
        let xl = match (short, full) {
            (Some((option_index, kind, org_fiscal_code)), _) => Some(IuvExchangeLine {
                row: row.unwrap_or(0),
                iupd: iupd.clone(),
                iud: iud.clone(),
                option_index,
                kind,
                iuv: iuv.clone(),
                nav: nav.clone(),
                org_fiscal_code,
                amount: amount.clone(),
                due_date: due_date.clone(),
                performed: performed.clone(),
            }),
            (None, full) => full,
        };
        StoredOutcome {
            line: OutcomeLine {
                row,
                iupd,
                iud,
                requested,
                outcome,
                performed,
                iuv,
                nav,
                amount,
                due_date,
                codes,
                descriptions,
            },
            iuv: xl,
        }
    }
}

/// Progress reported after each committed group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedProgress {
    /// Rows in the file.
    pub rows_total: u64,
    /// Rows processed.
    pub rows_read: u64,
    /// Rows applied.
    pub rows_loaded: u64,
    /// Rows rejected.
    pub rows_rejected: u64,
    /// Groups committed.
    pub groups_committed: u64,
}

/// What the progress callback wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressControl {
    /// Go on.
    Continue,
    /// Stop after this group; the load stays RUNNING and can be resumed.
    Stop,
}

/// Result of [`load_feed`]: the record (status DONE, FAILED with the file-level error,
/// AWAITING_CONFIRMATION, or RUNNING when stopped by the callback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedOutcome {
    /// The persisted record.
    pub record: FeedLoadRecord,
}

/// Why a load could not run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FeedError {
    /// Same organization + flow id already loaded (`FILE_DUPLICATE`, FORMAT.md §5.2).
    #[error(
        "FILE_DUPLICATE: il flusso {flow_id} è già stato caricato (stato {status:?}, {file_name})"
    )]
    Duplicate {
        /// Flow id.
        flow_id: String,
        /// Status of the earlier load.
        status: FeedStatus,
        /// Its file name.
        file_name: String,
    },
    /// `resume` / `confirm_guard` asked for a flow that is not in a resumable state.
    #[error("nothing to resume for flow {0}")]
    NotResumable(String),
    /// No such load.
    #[error("feed not found")]
    NotFound,
    /// Reading the source failed (the load stays RUNNING; resume later).
    #[error("cannot read the feed: {0}")]
    Io(String),
    /// Ledger / storage failure (the load stays RUNNING; resume later).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<StorageError> for FeedError {
    fn from(e: StorageError) -> Self {
        FeedError::Ledger(LedgerError::Storage(e))
    }
}

impl From<sled::Error> for FeedError {
    fn from(e: sled::Error) -> Self {
        FeedError::Ledger(e.into())
    }
}

struct Trees {
    feeds: sled::Tree,
    outcomes: sled::Tree,
    seen: sled::Tree,
}

impl Trees {
    fn open(store: &Store) -> Result<Self, FeedError> {
        Ok(Self {
            feeds: store.db.open_tree("feeds")?,
            outcomes: store.db.open_tree("feed_outcomes")?,
            seen: store.db.open_tree("feed_seen")?,
        })
    }
}

fn feed_key(org: &OrgFiscalCode, flow: &str) -> Vec<u8> {
    let mut k = org.as_str().as_bytes().to_vec();
    k.extend_from_slice(flow.as_bytes());
    k
}

fn sub_key(feed: &[u8], tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(feed.len() + 2 + rest.len());
    k.extend_from_slice(feed);
    k.push(0);
    k.push(tag);
    k.extend_from_slice(rest);
    k
}

fn sub_prefix(feed: &[u8]) -> Vec<u8> {
    let mut k = feed.to_vec();
    k.push(0);
    k
}

fn get_record(t: &Trees, key: &[u8]) -> Result<Option<FeedLoadRecord>, FeedError> {
    match t.feeds.get(key)? {
        Some(b) => Ok(Some(decode("feeds", key, &b)?)),
        None => Ok(None),
    }
}

fn put_record(t: &Trees, key: &[u8], r: &FeedLoadRecord) -> Result<(), FeedError> {
    t.feeds.insert(key, encode(r)?)?;
    Ok(())
}

/// Removes every key under `prefix`, [`SEEN_BATCH`] keys per `apply_batch`: one huge batch
/// would keep all its log writes in memory until it is sealed.
fn clear_prefix(tree: &sled::Tree, prefix: &[u8]) -> Result<(), FeedError> {
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for item in tree.scan_prefix(prefix).keys() {
        batch.remove(item?);
        n += 1;
        if n >= SEEN_BATCH {
            tree.apply_batch(std::mem::take(&mut batch))?;
            n = 0;
        }
    }
    if n > 0 {
        tree.apply_batch(batch)?;
    }
    Ok(())
}

/// Most memory the pre-scan work set ([`SeenSet`]) takes before it moves to the store.
const SEEN_MEMORY_BUDGET: usize = 96 * 1024 * 1024;
/// Arena chunk of [`KeySet`] (also the longest key kept there).
const KEY_CHUNK: usize = 1 << 20;

/// An exact set of byte strings, compact: keys are appended to 1 MiB arena chunks and an
/// open-addressing table (linear probing) holds one `u64` per key — chunk (24 bits), offset
/// (20 bits), length (20 bits) — so an entry costs its length plus 9 to 18 bytes.
struct KeySet {
    hasher: std::hash::RandomState,
    slots: Vec<u64>,
    len: usize,
    chunks: Vec<Vec<u8>>,
    /// Keys that do not fit an arena slot (absurdly long fields).
    big: HashSet<Vec<u8>>,
    big_bytes: usize,
}

impl KeySet {
    fn new() -> Self {
        Self {
            hasher: std::hash::RandomState::new(),
            slots: vec![0; 1024],
            len: 0,
            chunks: Vec::new(),
            big: HashSet::new(),
            big_bytes: 0,
        }
    }

    fn bytes(&self) -> usize {
        self.slots.len() * 8 + self.chunks.len() * KEY_CHUNK + self.big_bytes
    }

    fn key_of(chunks: &[Vec<u8>], r: u64) -> &[u8] {
        let chunk = usize::try_from(r >> 40).unwrap_or(usize::MAX);
        let off = usize::try_from((r >> 20) & 0xF_FFFF).unwrap_or(0);
        let len = usize::try_from(r & 0xF_FFFF).unwrap_or(0);
        chunks
            .get(chunk)
            .and_then(|c| c.get(off..off + len))
            .unwrap_or_default()
    }

    /// Slot holding `k`, or the empty slot where it would go.
    fn find(&self, k: &[u8], h: u64) -> (usize, bool) {
        let mask = self.slots.len() - 1;
        let mut i = usize::try_from(h).unwrap_or(0) & mask;
        loop {
            match self.slots.get(i).copied().unwrap_or(0) {
                0 => return (i, false),
                r if Self::key_of(&self.chunks, r) == k => return (i, true),
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn contains(&self, k: &[u8]) -> bool {
        if k.len() >= KEY_CHUNK {
            return self.big.contains(k);
        }
        self.find(k, self.hasher.hash_one(k)).1
    }

    /// Adds `k` (non-empty); `false` when it was already there.
    fn insert(&mut self, k: &[u8]) -> bool {
        if k.len() >= KEY_CHUNK {
            let new = self.big.insert(k.to_vec());
            if new {
                self.big_bytes += k.len();
            }
            return new;
        }
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow();
        }
        let h = self.hasher.hash_one(k);
        let (i, found) = self.find(k, h);
        if found {
            return false;
        }
        if self
            .chunks
            .last()
            .is_none_or(|c| c.len() + k.len() > KEY_CHUNK)
        {
            self.chunks.push(Vec::with_capacity(KEY_CHUNK));
        }
        let chunk = self.chunks.len() - 1;
        let Some(c) = self.chunks.last_mut() else {
            return false;
        };
        let off = c.len();
        c.extend_from_slice(k);
        let r = ((chunk as u64) << 40) | ((off as u64) << 20) | k.len() as u64;
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = r;
        }
        self.len += 1;
        true
    }

    fn grow(&mut self) {
        let mut slots = vec![0u64; self.slots.len() * 2];
        let mask = slots.len() - 1;
        for &r in self.slots.iter().filter(|r| **r != 0) {
            let h = self.hasher.hash_one(Self::key_of(&self.chunks, r));
            let mut i = usize::try_from(h).unwrap_or(0) & mask;
            while slots.get(i).is_some_and(|s| *s != 0) {
                i = (i + 1) & mask;
            }
            if let Some(s) = slots.get_mut(i) {
                *s = r;
            }
        }
        self.slots = slots;
    }

    /// Every key, in no particular order.
    fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.slots
            .iter()
            .filter(|r| **r != 0)
            .map(|r| Self::key_of(&self.chunks, *r))
            .chain(self.big.iter().map(Vec::as_slice))
    }
}

/// The pre-scan's work set of one load: the file's IUDs (`I` ++ IUD) and the IUPDs met so far
/// (`P` ++ IUPD). In memory ([`KeySet`]) up to [`SEEN_MEMORY_BUDGET`]; past it, moved to the
/// `feed_seen` tree under the load's prefix, so that memory stays bounded whatever the size of
/// the file (the tree is only slower). Rebuilt by every pre-scan, so nothing of it needs to
/// survive a crash.
struct SeenSet {
    tree: sled::Tree,
    prefix: Vec<u8>,
    mem: Option<KeySet>,
    /// Memory budget of `mem` ([`SEEN_MEMORY_BUDGET`]).
    budget: usize,
    /// Spilled mode: keys written since the last `apply_batch`.
    pending: HashSet<Vec<u8>>,
    batch: sled::Batch,
}

impl SeenSet {
    fn new(tree: sled::Tree, feed_key: &[u8]) -> Self {
        Self {
            tree,
            prefix: sub_prefix(feed_key),
            mem: Some(KeySet::new()),
            budget: SEEN_MEMORY_BUDGET,
            pending: HashSet::new(),
            batch: sled::Batch::default(),
        }
    }

    fn tree_key(&self, k: &[u8]) -> Vec<u8> {
        let mut t = Vec::with_capacity(self.prefix.len() + k.len());
        t.extend_from_slice(&self.prefix);
        t.extend_from_slice(k);
        t
    }

    fn key(tag: u8, value: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + value.len());
        k.push(tag);
        k.extend_from_slice(value.as_bytes());
        k
    }

    /// Adds `tag ++ value`; `false` when it was already there.
    fn insert(&mut self, tag: u8, value: &str) -> Result<bool, FeedError> {
        let k = Self::key(tag, value);
        if let Some(m) = &mut self.mem {
            let new = m.insert(&k);
            if m.bytes() > self.budget {
                self.spill()?;
            }
            return Ok(new);
        }
        let tk = self.tree_key(&k);
        if self.pending.contains(&tk) || self.tree.contains_key(&tk)? {
            return Ok(false);
        }
        self.batch.insert(tk.as_slice(), &[]);
        self.pending.insert(tk);
        if self.pending.len() >= SEEN_BATCH {
            self.flush()?;
        }
        Ok(true)
    }

    fn contains(&self, tag: u8, value: &str) -> Result<bool, FeedError> {
        let k = Self::key(tag, value);
        if let Some(m) = &self.mem {
            return Ok(m.contains(&k));
        }
        let tk = self.tree_key(&k);
        Ok(self.pending.contains(&tk) || self.tree.contains_key(&tk)?)
    }

    /// Moves the in-memory keys to the tree.
    fn spill(&mut self) -> Result<(), FeedError> {
        let Some(m) = self.mem.take() else {
            return Ok(());
        };
        tracing::info!(
            keys = m.len,
            "feed work set over its memory budget: moved to the store"
        );
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for k in m.keys() {
            batch.insert(self.tree_key(k), &[]);
            n += 1;
            if n >= SEEN_BATCH {
                self.tree.apply_batch(std::mem::take(&mut batch))?;
                n = 0;
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Writes the spilled keys not written yet.
    fn flush(&mut self) -> Result<(), FeedError> {
        if !self.pending.is_empty() {
            self.tree.apply_batch(std::mem::take(&mut self.batch))?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Empties the set (and its part of the tree, `I` and `P` keys only).
    fn clear(&mut self) -> Result<(), FeedError> {
        self.mem = Some(KeySet::new());
        self.pending.clear();
        self.batch = sled::Batch::default();
        clear_prefix(&self.tree, &self.tree_key(b"I"))?;
        clear_prefix(&self.tree, &self.tree_key(b"P"))?;
        Ok(())
    }
}

fn open_source(source: &dyn FeedSource) -> Result<Box<dyn Read + '_>, FeedError> {
    source.open().map_err(|e| FeedError::Io(e.to_string()))
}

/// Business due instant: 23:59:59 Europe/Rome of the day.
fn due_instant(day: NaiveDate) -> DateTime<Utc> {
    rome_local_to_utc(day.and_time(NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(NaiveTime::MIN)))
        .unwrap_or_else(Utc::now)
}

fn meta_get<'a>(o: &'a PaymentOption, key: &str) -> Option<&'a str> {
    o.metadata
        .iter()
        .find(|m| m.key == key)
        .map(|m| m.value.as_str())
}

fn cut140(s: &str) -> String {
    s.chars().take(140).collect()
}

/// Option without the origin marker, for "identical?" comparisons.
fn strip(o: &PaymentOption) -> PaymentOption {
    let mut o = o.clone();
    o.metadata.retain(|m| m.key != meta::FLOW);
    o
}

/// Whether every option of the position was written by a feed (FORMAT.md §5.6 FULL scope:
/// "positions whose origin is a bulk feed").
fn is_feed_position(p: &DebtPosition) -> bool {
    use mpay_messages::position::Origin;
    match p.origin {
        Origin::Feed { .. } => return true,
        Origin::Unrecorded => {}
        _ => return false, // REST, archive, PSP demand, portal: never a feed's to cancel
    }
    // recorded before origins were: every option carries a feed's IUD
    !p.payment_options.is_empty()
        && p.payment_options
            .iter()
            .all(|o| meta_get(o, meta::IUD).is_some())
}

/// The state shared by the steps of one load.
struct Ctx<'a> {
    store: &'a Store,
    org: &'a FeedOrg,
    opts: &'a LoadOptions,
    trees: Trees,
    key: Vec<u8>,
    rec: FeedLoadRecord,
    version: FeedVersion,
    dup_rows: HashSet<u64>,
    split_rows: HashSet<u64>,
    file_tipi: BTreeSet<String>,
    seen: SeenSet,
}

fn issue(code: ErrorCode, msg: impl Into<String>) -> RowIssue {
    RowIssue::new(None, code, msg)
}

/// One row being processed in a group.
struct Work<'r> {
    row: &'r FeedRow,
    issues: Vec<RowIssue>,
    performed: &'static str,
    kind: Option<IuvKind>,
    nav: Option<NoticeNumber>,
    due: Option<NaiveDate>,
}

impl<'r> Work<'r> {
    fn record(&self) -> Option<&'r FeedRecord> {
        self.row.record.as_ref().ok()
    }
}

/// A row group validated and planned, waiting for its batch's transaction.
struct GroupPlan<'r> {
    work: Vec<Work<'r>>,
    write: Option<PlannedWrite>,
}

/// A position to write in the batch's transaction.
struct PlannedWrite {
    /// State it replaces (index entries to drop); `None` = created.
    old: Option<DebtPosition>,
    new: DebtPosition,
    /// What the `positions` tree must hold at commit time (compare-and-swap).
    expect: Expect,
    /// The tree operations, prepared outside the transaction.
    prepared: PreparedWrite,
}

impl PlannedWrite {
    fn new(
        old: Option<DebtPosition>,
        new: DebtPosition,
        expect: Expect,
    ) -> Result<Self, FeedError> {
        let prepared = prepare(old.as_ref(), &new)?;
        Ok(Self {
            old,
            new,
            expect,
            prepared,
        })
    }
}

/// Most bytes one batch transaction adds to the store's log (about): sled pins its log while
/// a transaction commits, and one that outgrows an I/O buffer (a 512 KiB segment) slows the
/// whole store down. A batch stops growing at this size, whatever `batch_positions` says.
const TX_BYTES_BUDGET: usize = 256 * 1024;

/// Bytes of one row's stored outcome (about), for [`TX_BYTES_BUDGET`].
const OUTCOME_BYTES: usize = 600;

/// Compare-and-swap expectation of a planned write.
enum Expect {
    /// No position with that key.
    Absent,
    /// The stored bytes read when planning.
    Bytes(sled::IVec),
    /// Written earlier in the same transaction (nothing else can interleave).
    Batch,
}

/// What the groups planned earlier in a batch changed, so that later groups of the same batch
/// see it before it is committed.
#[derive(Default)]
struct BatchView {
    /// Positions planned in this batch: iupd → index of its plan.
    positions: HashMap<String, usize>,
    /// Index keys (0 notice number, 1 IUV) claimed (`Some(iupd)`) or released (`None`).
    claims: HashMap<(usize, Vec<u8>), Option<String>>,
    /// Sequence numbers checked against the store by one range scan.
    window: Option<NumberWindow>,
}

/// The index keys found in the store for the notice numbers (and IUVs) of the sequence numbers
/// `lo..hi` of the organization's layout: fixed-width digits, so they are contiguous in key
/// order and one range scan per index answers "taken?" for all of them.
struct NumberWindow {
    lo: u64,
    hi: u64,
    taken: HashSet<(usize, Vec<u8>)>,
}

/// Sequence numbers covered by one [`NumberWindow`] scan.
const NUMBER_WINDOW: u64 = 1024;

impl BatchView {
    fn claimed(&self, tree: usize, key: &[u8]) -> bool {
        matches!(self.claims.get(&(tree, key.to_vec())), Some(Some(_)))
    }
}

/// Inside a transaction: the `positions` tree still holds what the plan expects; otherwise
/// the batch is planned again ([`LedgerError::Contended`]).
fn check_expected(
    positions: &sled::transaction::TransactionalTree,
    key: &[u8],
    expect: &Expect,
) -> Result<(), Abort> {
    let ok = match expect {
        Expect::Absent => positions.get(key)?.is_none(),
        Expect::Bytes(b) => positions.get(key)?.as_deref() == Some(b.as_ref()),
        Expect::Batch => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Abort::Abort(LedgerError::Contended))
    }
}

/// Transaction aborts that mean "someone else changed the ledger since the plan".
fn is_concurrent_change(e: &LedgerError) -> bool {
    matches!(
        e,
        LedgerError::Contended
            | LedgerError::NoticeInUse { .. }
            | LedgerError::IuvInUse { .. }
            | LedgerError::AlreadyExists(_)
    )
}

/// Loads a feed (FORMAT.md §5): see the module documentation. Blocking: run it on a blocking
/// thread. `progress` is called after every committed group; returning
/// [`ProgressControl::Stop`] leaves the load RUNNING (resume with `opts.resume`).
///
/// # Errors
/// [`FeedError::Duplicate`] (same flow id already loaded), [`FeedError::NotResumable`],
/// [`FeedError::Io`] / [`FeedError::Ledger`] (the load stays RUNNING and can be resumed or
/// [`mark_failed`]). File-level problems are not errors: the outcome has status FAILED and
/// `record.error` set.
pub fn load_feed(
    store: &Store,
    org: &FeedOrg,
    source: &dyn FeedSource,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(&FeedProgress) -> ProgressControl,
) -> Result<FeedOutcome, FeedError> {
    let trees = Trees::open(store)?;
    let parsed_name = FeedFileName::parse(&opts.file_name);
    let flow_id = match (&opts.flow_id, &parsed_name) {
        (Some(f), _) => f.clone(),
        (None, Ok(n)) => n.flow_id.clone(),
        (None, Err(_)) => {
            let base = opts
                .file_name
                .rsplit(['/', '\\'])
                .next()
                .unwrap_or(&opts.file_name);
            base.rsplit_once('.')
                .map(|(s, _)| s)
                .unwrap_or(base)
                .to_string()
        }
    };
    let key = feed_key(&org.fiscal_code, &flow_id);
    let now = Utc::now();
    let existing = get_record(&trees, &key)?;
    let resuming = match &existing {
        None => false,
        Some(r) if r.status == FeedStatus::Running && opts.resume => true,
        Some(r) if r.status == FeedStatus::AwaitingConfirmation && opts.confirm_guard => false,
        Some(r) if r.status == FeedStatus::Failed && r.groups_committed == 0 && !opts.resume => {
            false
        }
        Some(r) => {
            if opts.resume || opts.confirm_guard {
                return Err(FeedError::NotResumable(flow_id));
            }
            return Err(FeedError::Duplicate {
                flow_id,
                status: r.status,
                file_name: r.file_name.clone(),
            });
        }
    };
    if existing.is_none() && (opts.resume || opts.confirm_guard) {
        return Err(FeedError::NotResumable(flow_id));
    }
    let rec = match (&existing, resuming) {
        (Some(r), true) => r.clone(),
        _ => {
            clear_prefix(&trees.outcomes, &sub_prefix(&key))?;
            clear_prefix(&trees.seen, &sub_prefix(&key))?;
            FeedLoadRecord {
                id: format!("{}/{}", org.fiscal_code, flow_id),
                organization: org.fiscal_code.clone(),
                file_name: opts.file_name.clone(),
                flow_id: flow_id.clone(),
                mode: opts.mode,
                version: None,
                status: FeedStatus::Running,
                phase: FeedPhase::Rows,
                dry_run: opts.dry_run,
                rows_total: 0,
                rows_read: 0,
                rows_loaded: 0,
                rows_rejected: 0,
                rows_warned: 0,
                cancelled: 0,
                skipped_paid: 0,
                groups_committed: 0,
                last_committed_row: 0,
                last_committed_offset: 0,
                error: None,
                warnings: Vec::new(),
                started_at: now,
                updated_at: now,
                finished_at: None,
            }
        }
    };
    put_record(&trees, &key, &rec)?;
    let seen = SeenSet::new(trees.seen.clone(), &key);
    let mut ctx = Ctx {
        store,
        org,
        opts,
        trees,
        key,
        rec,
        version: FeedVersion::V2_0,
        dup_rows: HashSet::new(),
        split_rows: HashSet::new(),
        file_tipi: BTreeSet::new(),
        seen,
    };

    // file name checks
    if let Ok(n) = &parsed_name {
        if let Some(ipa) = &org.ipa_code {
            if !n.ipa_code.eq_ignore_ascii_case(ipa) {
                return ctx.fail(FeedFileError::new(
                    ErrorCode::FileEnteMismatch,
                    format!(
                        "il nome del file indica l'ente {} ma il flusso è dell'ente {ipa}",
                        n.ipa_code
                    ),
                ));
            }
        }
    } else if let Err(e) = &parsed_name {
        if opts.require_standard_name {
            return ctx.fail(e.clone());
        }
    }
    let name_version = parsed_name.as_ref().ok().map(|n| n.version);

    // pass 1: pre-scan
    if let Err(e) = ctx.prescan(source, name_version)? {
        return ctx.fail(e);
    }

    // FULL guards (before anything is applied)
    if opts.mode == FeedMode::Full
        && ctx.rec.phase == FeedPhase::Rows
        && ctx.rec.groups_committed == 0
        && !opts.confirm_guard
        && !opts.dry_run
    {
        if let Some(guard) = ctx.full_guard()? {
            ctx.rec.status = FeedStatus::AwaitingConfirmation;
            ctx.rec.error = Some(guard);
            ctx.rec.updated_at = Utc::now();
            put_record(&ctx.trees, &ctx.key, &ctx.rec)?;
            return Ok(FeedOutcome { record: ctx.rec });
        }
    }

    // pass 2: apply
    if ctx.rec.phase == FeedPhase::Rows {
        match ctx.apply_rows(source, name_version, progress)? {
            ProgressControl::Stop => return Ok(FeedOutcome { record: ctx.rec }),
            ProgressControl::Continue => {}
        }
        ctx.rec.phase = if opts.mode == FeedMode::Full {
            FeedPhase::Cancellations
        } else {
            FeedPhase::Finished
        };
        ctx.rec.updated_at = Utc::now();
        put_record(&ctx.trees, &ctx.key, &ctx.rec)?;
    }
    if ctx.rec.phase == FeedPhase::Cancellations {
        ctx.cancel_absent()?;
        ctx.rec.phase = FeedPhase::Finished;
    }
    ctx.rec.status = FeedStatus::Done;
    ctx.rec.finished_at = Some(Utc::now());
    ctx.rec.updated_at = Utc::now();
    put_record(&ctx.trees, &ctx.key, &ctx.rec)?;
    clear_prefix(&ctx.trees.seen, &sub_prefix(&ctx.key))?;
    store.flush_blocking()?;
    Ok(FeedOutcome { record: ctx.rec })
}

impl Ctx<'_> {
    fn read_options(&self, name_version: Option<FeedVersion>) -> ReadOptions {
        ReadOptions {
            mode: self.opts.mode,
            mb14_amount_mode: self.org.mb14_amount_mode,
            name_version,
        }
    }

    /// Records a file-level failure (nothing applied) and returns the outcome.
    fn fail(mut self, e: FeedFileError) -> Result<FeedOutcome, FeedError> {
        self.rec.status = FeedStatus::Failed;
        self.rec.error = Some(e);
        self.rec.finished_at = Some(Utc::now());
        self.rec.updated_at = Utc::now();
        put_record(&self.trees, &self.key, &self.rec)?;
        clear_prefix(&self.trees.seen, &sub_prefix(&self.key))?;
        Ok(FeedOutcome { record: self.rec })
    }

    /// Pass 1 (FORMAT.md §5.2/§5.3): file-level errors, row count, in-file duplicate IUDs,
    /// non-contiguous positions, the IUD set for FULL mode.
    fn prescan(
        &mut self,
        source: &dyn FeedSource,
        name_version: Option<FeedVersion>,
    ) -> Result<Result<(), FeedFileError>, FeedError> {
        // the work set of this pass ('I' and 'P' keys; a FULL-mode cancellation cursor 'C'
        // survives: it belongs to a resumed load's cancellation phase)
        self.seen.clear()?;
        let input = open_source(source)?;
        let reader = match FeedReader::new(input, self.read_options(name_version)) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        self.version = reader.version();
        self.rec.version = Some(reader.version());
        self.rec.warnings = reader.file_warnings().to_vec();
        let positional = reader.version().is_positional();
        let mut rows = 0u64;
        let mut prev_iupd = String::new();
        for row in reader {
            let row = match row {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            rows += 1;
            let (iud, iupd, tipo) = match &row.record {
                Ok(r) => (
                    r.iud.as_str(),
                    r.iupd.as_str(),
                    Some(r.tipo_dovuto.as_str()),
                ),
                Err(_) => (row.echo.iud.as_str(), row.echo.iupd.as_str(), None),
            };
            if let Some(t) = tipo {
                if self.file_tipi.len() < 1000 && !self.file_tipi.contains(t) {
                    self.file_tipi.insert(t.to_string());
                }
            }
            if !iud.is_empty() && !self.seen.insert(b'I', iud)? {
                self.dup_rows.insert(row.number);
            }
            if !positional && !iupd.is_empty() && iupd != prev_iupd {
                if !self.seen.insert(b'P', iupd)? {
                    self.split_rows.insert(row.number);
                }
                prev_iupd.clear();
                prev_iupd.push_str(iupd);
            }
        }
        self.seen.flush()?;
        self.rec.rows_total = rows;
        put_record(&self.trees, &self.key, &self.rec)?;
        Ok(Ok(()))
    }

    fn in_scope(&self, service: Option<&str>) -> bool {
        let Some(s) = service else { return false };
        match &self.opts.scope_tipi_dovuto {
            Some(list) => list.iter().any(|t| t == s),
            None => self.file_tipi.contains(s),
        }
    }

    fn seen_iud(&self, iud: &str) -> Result<bool, FeedError> {
        self.seen.contains(b'I', iud)
    }

    /// Streams the organization's positions in FULL scope (not cancelled, written by feeds, of a
    /// `tipoDovuto` in scope), in key (= iupd) order, starting after the position key `after`:
    /// (key, stored bytes, position). Nothing is collected: memory stays bounded whatever the
    /// organization's size.
    fn scope_scan(
        &self,
        after: Option<Vec<u8>>,
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec, DebtPosition), FeedError>> + '_ {
        let prefix = self.org.fiscal_code.as_str().as_bytes().to_vec();
        let start = match after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Included(prefix.clone()),
        };
        self.store
            .ledger
            .positions
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take_while(move |item| {
                item.as_ref()
                    .map_or(true, |(k, _)| k.starts_with(prefix.as_slice()))
            })
            .filter_map(move |item| {
                let (k, v) = match item {
                    Ok(kv) => kv,
                    Err(e) => return Some(Err(e.into())),
                };
                match SledLedger::decode_position(&k, &v) {
                    Ok(p) => (p.status != PositionStatus::Invalid
                        && is_feed_position(&p)
                        && self.in_scope(p.service_code.as_deref()))
                    .then_some(Ok((k, v, p))),
                    Err(e) => Some(Err(e.into())),
                }
            })
    }

    /// FULL guards (FORMAT.md §5.6): empty file, cancel ratio. The ratio's denominator is the
    /// number of in-scope installments after the load (existing ∪ new rows).
    fn full_guard(&self) -> Result<Option<FeedFileError>, FeedError> {
        if self.rec.rows_total == 0 && !self.opts.allow_empty {
            return Ok(Some(FeedFileError::new(
                ErrorCode::FullFeedGuard,
                "flusso completo senza righe: conferma dell'operatore richiesta (allowEmpty=false)",
            )));
        }
        let mut existing = 0u64;
        let mut matched = 0u64;
        let mut cancels = 0u64;
        for item in self.scope_scan(None) {
            let (_, _, p) = item?;
            for o in &p.payment_options {
                let Some(iud) = meta_get(o, meta::IUD) else {
                    continue;
                };
                existing += 1;
                if self.seen_iud(iud)? {
                    matched += 1;
                } else if !p.status.has_payments() && o.status == OptionStatus::PoUnpaid {
                    cancels += 1;
                }
            }
        }
        let file_iuds = self
            .rec
            .rows_total
            .saturating_sub(self.dup_rows.len() as u64);
        let denominator = existing + file_iuds.saturating_sub(matched);
        if cancels.saturating_mul(1000)
            > u64::from(self.opts.max_cancel_permille).saturating_mul(denominator)
        {
            return Ok(Some(FeedFileError::new(
                ErrorCode::FullFeedGuard,
                format!(
                    "il flusso completo annullerebbe {cancels} rate su {denominator} (oltre il \
                     {}‰ ammesso): conferma dell'operatore richiesta",
                    self.opts.max_cancel_permille
                ),
            )));
        }
        Ok(None)
    }

    /// Pass 2: groups rows by position (row group) and applies the groups in batches of
    /// [`LoadOptions::batch_positions`], one transaction per batch.
    fn apply_rows(
        &mut self,
        source: &dyn FeedSource,
        name_version: Option<FeedVersion>,
        progress: &mut dyn FnMut(&FeedProgress) -> ProgressControl,
    ) -> Result<ProgressControl, FeedError> {
        let input = open_source(source)?;
        let reader = FeedReader::new(input, self.read_options(name_version))
            .map_err(|e| FeedError::Io(e.to_string()))?;
        let positional = reader.version().is_positional();
        let skip_to = self.rec.last_committed_row;
        let limit = self.opts.batch_positions.max(1);
        // the rows of the batch, and its groups as ranges of them (no allocation per group;
        // the vectors are reused from batch to batch)
        let mut rows: Vec<FeedRow> = Vec::new();
        let mut groups: Vec<Range<usize>> = Vec::new();
        let mut start = 0usize;
        let mut group_key = String::new();
        for row in reader {
            let row = row.map_err(|e| FeedError::Io(e.to_string()))?;
            if row.number <= skip_to {
                continue;
            }
            let open = rows.len() > start;
            let same_group = !positional
                && open
                && match &row.record {
                    Ok(r) => r.iupd == group_key,
                    Err(_) => row.echo.iupd == group_key,
                };
            if open && !same_group {
                groups.push(start..rows.len());
                start = rows.len();
                if groups.len() >= limit || rows.len() >= MAX_BATCH_ROWS {
                    if self.process_batch(&rows, &groups, progress)? == ProgressControl::Stop {
                        return Ok(ProgressControl::Stop);
                    }
                    rows.clear();
                    groups.clear();
                    start = 0;
                }
            }
            if !same_group && !positional {
                group_key.clear();
                group_key.push_str(match &row.record {
                    Ok(r) => &r.iupd,
                    Err(_) => &row.echo.iupd,
                });
            }
            rows.push(row);
        }
        if rows.len() > start {
            groups.push(start..rows.len());
        }
        if !groups.is_empty()
            && self.process_batch(&rows, &groups, progress)? == ProgressControl::Stop
        {
            return Ok(ProgressControl::Stop);
        }
        Ok(ProgressControl::Continue)
    }

    fn service(&self, code: &str) -> Option<&FeedService> {
        self.org.services.iter().find(|s| s.code == code)
    }

    /// Row checks that need the organization's settings (FORMAT.md §5.4, §5.5).
    fn org_checks(&self, w: &mut Work) {
        let dup = self.dup_rows.contains(&w.row.number);
        let split = self.split_rows.contains(&w.row.number);
        if dup {
            w.issues.push(issue(
                ErrorCode::RowDuplicateIud,
                format!("IUD {} duplicato nel file", w.row.echo.iud),
            ));
        }
        if split {
            w.issues.push(issue(
                ErrorCode::RowOptionInconsistent,
                format!(
                    "le righe della posizione {} non sono contigue nel file",
                    w.row.echo.iupd
                ),
            ));
        }
        let row = w.row;
        let Ok(r) = &row.record else { return };
        if r.action == Some(RowAction::Annul) {
            return;
        }
        match self.service(&r.tipo_dovuto) {
            None => w.issues.push(issue(
                ErrorCode::RowUnknownTipoDovuto,
                format!("tipoDovuto {} inesistente per l'ente", r.tipo_dovuto),
            )),
            Some(s) if !s.active => w.issues.push(issue(
                ErrorCode::RowTipoDovutoDisabled,
                format!("tipoDovuto {} non attivo per l'ente", r.tipo_dovuto),
            )),
            Some(s) => {
                if s.due_date_required && r.due_date.is_none() {
                    w.issues.push(issue(
                        ErrorCode::RowBadDueDate,
                        "dataEsecuzionePagamento non presente (obbligatoria per il tipoDovuto)",
                    ));
                }
                if r.debtor.fiscal_code.is_anonymous() && !s.anonymous_allowed {
                    w.issues.push(issue(
                        ErrorCode::RowBadFiscalCode,
                        "debitore ANONIMO non ammesso per il tipoDovuto",
                    ));
                }
                if r.collection_data.is_none() && s.category.is_none() {
                    w.issues.push(issue(
                        ErrorCode::RowBadDatiRiscossione,
                        "datiSpecificiRiscossione assenti e nessuna tassonomia configurata",
                    ));
                }
                if s.iban.is_none() && self.org.ibans.is_empty() && r.primary.is_none() {
                    w.issues.push(issue(
                        ErrorCode::RowBadBeneficiary,
                        "nessun IBAN configurato per il tipoDovuto",
                    ));
                }
            }
        }
        if let Some(p) = &r.primary {
            if p.org_fiscal_code == self.org.fiscal_code
                && !self.org.ibans.is_empty()
                && !self.org.ibans.contains(&p.iban)
            {
                w.issues.push(issue(
                    ErrorCode::RowBadBeneficiary,
                    "ibanAccreditoEnte_1 non registrato per l'ente",
                ));
            }
        }
        if let NoticeRequest::Supplied { iuv, nav } = &r.notice {
            let recognised = std::iter::once(&self.org.layout)
                .chain(&self.org.other_layouts)
                .find_map(|l| NoticeNumber::from_iuv(iuv, l).ok());
            match recognised.ok_or(()) {
                Err(_) => w.issues.push(issue(
                    ErrorCode::RowBadIuv,
                    format!(
                        "codIuv non conforme alla configurazione dell'ente: {}",
                        iuv_layout_it(&self.org.layout)
                    ),
                )),
                Ok(n) => {
                    if nav.as_ref().is_some_and(|given| *given != n) {
                        w.issues.push(issue(
                            ErrorCode::RowBadIuv,
                            "numeroAvviso non conforme alla configurazione dell'ente",
                        ));
                    } else if self.opts.strict_iuv_check && !n.check_digit_ok() {
                        w.issues.push(issue(
                            ErrorCode::RowBadIuv,
                            "codIuv con cifra di controllo errata",
                        ));
                    }
                    w.nav = Some(n);
                }
            }
        }
    }

    fn dovuto(&self) -> bool {
        self.version.is_positional()
    }

    fn build_option(
        &self,
        r: &FeedRecord,
        nav: &NoticeNumber,
        kind: IuvKind,
    ) -> Option<PaymentOption> {
        let svc = self.service(&r.tipo_dovuto);
        let category = r
            .collection_data
            .clone()
            .or_else(|| svc.and_then(|s| s.category.clone()))
            .unwrap_or_default();
        let primary = match &r.primary {
            Some(p) => Transfer {
                id_transfer: 1,
                amount: r.primary_amount,
                organization_fiscal_code: (p.org_fiscal_code != self.org.fiscal_code)
                    .then(|| p.org_fiscal_code.clone()),
                remittance_information: p.remittance.clone(),
                category: p.category.clone().unwrap_or_else(|| category.clone()),
                destination: Destination::Iban {
                    iban: p.iban.clone(),
                    postal_iban: None,
                },
                company_name: p.name.clone(),
                metadata: Vec::new(),
            },
            None => {
                let iban = svc
                    .and_then(|s| s.iban.clone())
                    .or_else(|| self.org.ibans.first().cloned())?;
                Transfer {
                    id_transfer: 1,
                    amount: r.primary_amount,
                    organization_fiscal_code: None,
                    remittance_information: r.remittance.clone(),
                    category: category.clone(),
                    destination: Destination::Iban {
                        iban,
                        postal_iban: None,
                    },
                    company_name: None,
                    metadata: Vec::new(),
                }
            }
        };
        let mut transfers = vec![primary];
        for (i, t) in r.others.iter().enumerate() {
            transfers.push(Transfer {
                id_transfer: u8::try_from(i + 2).unwrap_or(5),
                amount: t.amount,
                organization_fiscal_code: (t.org_fiscal_code != self.org.fiscal_code)
                    .then(|| t.org_fiscal_code.clone()),
                remittance_information: t.remittance.clone(),
                category: t.category.clone().unwrap_or_else(|| category.clone()),
                destination: Destination::Iban {
                    iban: t.iban.clone(),
                    postal_iban: None,
                },
                company_name: t.name.clone(),
                metadata: Vec::new(),
            });
        }
        let m = |k: &str, v: String| MapEntry {
            key: k.to_string(),
            value: cut140(&v),
        };
        let mut metadata = vec![
            m(meta::IUD, r.iud.clone()),
            m(meta::FLOW, self.rec.flow_id.clone()),
            m(
                meta::IUV_KIND,
                match kind {
                    IuvKind::A => "A".into(),
                    IuvKind::B => "B".into(),
                },
            ),
            m(meta::OPTION_INDEX, r.option_index.to_string()),
            m(meta::OPTION_TYPE, r.option_type.as_str().to_string()),
            m(meta::GENERATE_IUV, r.generate_notice.to_string()),
        ];
        if let Some(d) = &r.option_description {
            metadata.push(m(meta::OPTION_DESCRIPTION, d.clone()));
        }
        if let Some(d) = &r.position_description {
            metadata.push(m(meta::POSITION_DESCRIPTION, d.clone()));
        }
        if let Some(d) = &r.collection_data {
            metadata.push(m(meta::DATI_RISCOSSIONE, d.clone()));
        }
        if let Some(d) = r.notification_date {
            metadata.push(m(meta::NOTIFICATION_DATE, d.to_string()));
        }
        let due_day = r
            .due_date
            .or(self.org.default_due_date)
            .or_else(|| NaiveDate::from_ymd_opt(2099, 12, 31))
            .unwrap_or(NaiveDate::MAX);
        Some(PaymentOption {
            nav: nav.clone(),
            iuv: nav.iuv(),
            amount: r.amount,
            description: cut140(&r.remittance),
            is_partial_payment: r.option_type.is_installments(),
            due_date: due_instant(due_day),
            retention_date: None,
            fee: mpay_messages::Amount::ZERO,
            notification_fee: mpay_messages::Amount::ZERO,
            status: OptionStatus::PoUnpaid,
            payment_date: None,
            transfers,
            metadata,
        })
    }

    fn new_position(&self, r: &FeedRecord) -> DebtPosition {
        let now = Utc::now();
        let validity = r
            .validity_date
            .and_then(|d| rome_local_to_utc(d.and_time(NaiveTime::MIN)))
            .filter(|v| *v > now);
        let status = if r.draft || !r.pagopa_payment {
            PositionStatus::Draft
        } else if validity.is_some() {
            PositionStatus::Published
        } else {
            PositionStatus::Valid
        };
        DebtPosition {
            organization_fiscal_code: self.org.fiscal_code.clone(),
            iupd: r.iupd.clone(),
            debtor: r.debtor.clone(),
            switch_to_expired: false,
            pay_stand_in: true,
            company_name: self.org.name.clone(),
            office_name: None,
            service_code: Some(r.tipo_dovuto.clone()),
            validity_date: validity,
            status,
            inserted_date: now,
            publish_date: (status != PositionStatus::Draft).then_some(now),
            last_updated_date: now,
            payment_date: None,
            payment_options: Vec::new(),
            revision: 0,
            origin: mpay_messages::position::Origin::Feed {
                flow_id: self.rec.flow_id.clone(),
            },
        }
    }

    /// Checks of a row against the stored position (FORMAT.md §5.6): existence, status,
    /// immutable fields. Returns issues placed before the syntax ones (§5.8 d).
    fn ledger_checks(&self, w: &Work, existing: Option<&DebtPosition>) -> Vec<RowIssue> {
        let mut out = Vec::new();
        let iud = match w.record() {
            Some(r) => r.iud.clone(),
            None => w.row.echo.iud.clone(),
        };
        let action = match w.record() {
            Some(r) => r.action,
            None => match w.row.echo.action.to_ascii_uppercase().as_str() {
                "I" => Some(RowAction::Insert),
                "M" => Some(RowAction::Modify),
                "A" => Some(RowAction::Annul),
                _ => None,
            },
        };
        if iud.is_empty() {
            return out;
        }
        let live = existing.filter(|p| p.status != PositionStatus::Invalid);
        let opt = live.and_then(|p| {
            p.payment_options
                .iter()
                .find(|o| meta_get(o, meta::IUD) == Some(iud.as_str()))
        });
        let ours = opt.is_some_and(|o| meta_get(o, meta::FLOW) == Some(self.rec.flow_id.as_str()));
        let dovuto = if self.dovuto() { "Dovuto" } else { "Rata" };
        match (self.opts.mode, action) {
            (FeedMode::Delta, Some(RowAction::Insert)) => {
                if let Some(p) = live {
                    if (opt.is_some() && !ours) || (!is_feed_position(p) && opt.is_none()) {
                        out.push(issue(
                            ErrorCode::RowAlreadyExists,
                            format!("{dovuto} con IUD {iud} già presente"),
                        ));
                    }
                }
            }
            (_, Some(RowAction::Modify)) | (_, Some(RowAction::Annul)) => {
                let annul = action == Some(RowAction::Annul);
                match (existing, opt) {
                    (None, _) => out.push(issue(
                        ErrorCode::RowNotFound,
                        format!("{dovuto} con IUD {iud} inesistente"),
                    )),
                    (Some(p), _) if p.status == PositionStatus::Invalid && annul => {}
                    (Some(p), _) if p.status == PositionStatus::Invalid => out.push(issue(
                        ErrorCode::RowInvalidStatus,
                        format!("{dovuto} con IUD {iud} annullato"),
                    )),
                    (Some(_), None) => out.push(issue(
                        ErrorCode::RowNotFound,
                        format!("{dovuto} con IUD {iud} inesistente"),
                    )),
                    (Some(p), Some(o)) => {
                        if p.status.has_payments() || o.status != OptionStatus::PoUnpaid {
                            out.push(issue(
                                ErrorCode::RowInvalidStatus,
                                format!(
                                    "{dovuto} con IUD {iud} in stato {}: non modificabile",
                                    p.status.as_str()
                                ),
                            ));
                        }
                    }
                }
            }
            (FeedMode::Full, None | Some(RowAction::Insert)) => {
                if let (Some(p), Some(o)) = (live, opt) {
                    if p.status.has_payments() || o.status != OptionStatus::PoUnpaid {
                        out.push(issue(
                            ErrorCode::RowInvalidStatus,
                            format!(
                                "{dovuto} con IUD {iud} in stato {}: non modificabile",
                                p.status.as_str()
                            ),
                        ));
                    }
                } else if let Some(p) = live {
                    if !is_feed_position(p) {
                        out.push(issue(
                            ErrorCode::RowAlreadyExists,
                            format!("posizione {} già presente (non da flusso)", p.iupd),
                        ));
                    }
                }
            }
            (FeedMode::Delta, None) => {}
        }
        out
    }

    /// Applies a batch of row groups: each group (one position) all-or-nothing, the whole batch
    /// — positions, index entries, outcome lines and the checkpoint record — in one transaction.
    /// A crash leaves either all of it or none of it, so a resumed load restarts exactly after
    /// the last committed batch. A concurrent change of a position (or of an IUV / notice number
    /// the batch claims) between planning and commit aborts the transaction; the batch is then
    /// split in halves, each planned again from the new state and committed on its own, down to
    /// single positions retried like a lone compare-and-swap.
    fn process_batch(
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
    fn commit_groups(
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
    fn try_batch(
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
        let result = (
            &l.positions,
            &l.by_notice,
            &l.by_iuv,
            &l.by_debtor,
            &l.by_due,
            &l.timers,
            &self.trees.feeds,
            &self.trees.outcomes,
        )
            .transaction(|(p, n, i, d, due, t, f, o)| {
                let ledger = [p, n, i, d, due, t];
                for w in &writes {
                    check_expected(p, w.prepared.key(), &w.expect)?;
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
    fn outcome_chunk(
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

    /// The stored (or, earlier in this batch, planned) state of a position.
    fn lookup(
        &self,
        iupd: &str,
        earlier: &[GroupPlan<'_>],
        view: &BatchView,
    ) -> Result<(Option<DebtPosition>, Expect), FeedError> {
        if let Some(w) = view
            .positions
            .get(iupd)
            .and_then(|i| earlier.get(*i))
            .and_then(|p| p.write.as_ref())
        {
            return Ok((Some(w.new.clone()), Expect::Batch));
        }
        let key = position_key(self.org.fiscal_code.as_str(), iupd);
        match self.store.ledger.positions.get(&key)? {
            Some(bytes) => Ok((
                Some(SledLedger::decode_position(&key, &bytes)?),
                Expect::Bytes(bytes),
            )),
            None => Ok((None, Expect::Absent)),
        }
    }

    /// Who holds an index key (0 notice number, 1 IUV): a position planned earlier in this
    /// batch, else the store.
    fn holder(
        &self,
        tree: usize,
        key: &[u8],
        view: &BatchView,
    ) -> Result<Option<Vec<u8>>, FeedError> {
        if let Some(h) = view.claims.get(&(tree, key.to_vec())) {
            return Ok(h.as_ref().map(|s| s.as_bytes().to_vec()));
        }
        let t = if tree == 0 {
            &self.store.ledger.by_notice
        } else {
            &self.store.ledger.by_iuv
        };
        Ok(t.get(key)?.map(|v| v.to_vec()))
    }

    /// Whether a generated number (sequence `seq`) is free: not claimed in this batch and not in
    /// the store (as of the last window scan; the transaction checks again).
    fn number_free(
        &self,
        seq: u64,
        n: &NoticeNumber,
        view: &mut BatchView,
    ) -> Result<bool, FeedError> {
        let org = self.org.fiscal_code.as_str();
        let nav_key = position_key(org, n.as_str());
        let iuv_key = position_key(org, n.iuv().as_str());
        if view.claimed(0, &nav_key) || view.claimed(1, &iuv_key) {
            return Ok(false);
        }
        let covered = view
            .window
            .as_ref()
            .is_some_and(|w| w.lo <= seq && seq < w.hi);
        if !covered {
            let hi = seq.saturating_add(NUMBER_WINDOW);
            let Ok(end) = self.org.layout.generate(hi) else {
                // the end of the sequence: look the number up
                return Ok(self.holder(0, &nav_key, view)?.is_none()
                    && self.holder(1, &iuv_key, view)?.is_none());
            };
            let l = &*self.store.ledger;
            let mut taken = HashSet::new();
            for (t, tree, from, to) in [
                (0, &l.by_notice, &nav_key, position_key(org, end.as_str())),
                (
                    1,
                    &l.by_iuv,
                    &iuv_key,
                    position_key(org, end.iuv().as_str()),
                ),
            ] {
                for item in tree.range(from.clone()..to) {
                    taken.insert((t, item?.0.to_vec()));
                }
            }
            view.window = Some(NumberWindow { lo: seq, hi, taken });
        }
        Ok(view
            .window
            .as_ref()
            .is_none_or(|w| !w.taken.contains(&(0, nav_key)) && !w.taken.contains(&(1, iuv_key))))
    }

    /// Validates one row group against the store (and the groups planned before it in the
    /// batch) and plans its write; nothing is written here except IUV sequence blocks.
    fn plan_group<'r>(
        &self,
        rows: &'r [FeedRow],
        earlier: &[GroupPlan<'_>],
        view: &mut BatchView,
    ) -> Result<GroupPlan<'r>, FeedError> {
        let mut work: Vec<Work<'r>> = rows
            .iter()
            .map(|row| Work {
                issues: Vec::new(),
                performed: "SCARTATO",
                kind: None,
                nav: None,
                due: None,
                row,
            })
            .collect();
        for w in &mut work {
            self.org_checks(w);
        }
        let iupd = work
            .iter()
            .find_map(|w| w.record().map(|r| r.iupd.clone()))
            .or_else(|| work.first().map(|w| w.row.echo.iupd.clone()))
            .unwrap_or_default();
        let (existing, expect) = if iupd.is_empty() {
            (None, Expect::Absent)
        } else {
            self.lookup(&iupd, earlier, view)?
        };
        for w in &mut work {
            let mut pre = self.ledger_checks(w, existing.as_ref());
            pre.append(&mut w.issues);
            w.issues = pre;
        }
        let rejected = |work| GroupPlan { work, write: None };
        // build the new state
        let mut new_pos: Option<DebtPosition> = None;
        if work
            .iter()
            .all(|w| w.issues.is_empty() && w.record().is_some())
        {
            new_pos = self.build_group(&mut work, existing.as_ref());
        }
        let all_ok = work
            .iter()
            .all(|w| w.issues.is_empty() && w.row.record.is_ok());
        if !all_ok {
            let any_bad = work
                .iter()
                .any(|w| !w.issues.is_empty() || w.row.record.is_err());
            for w in &mut work {
                if w.issues.is_empty() && w.row.record.is_ok() && any_bad {
                    w.issues.push(issue(
                        ErrorCode::RowPositionRejected,
                        format!("posizione {iupd} scartata per errori su altre righe"),
                    ));
                }
            }
            return Ok(rejected(work));
        }
        let mut pos = match new_pos {
            Some(p) => p,
            None => return Ok(rejected(work)),
        };
        let needs_write = existing.as_ref().is_none_or(|e| !same_position(e, &pos));
        if self.opts.dry_run {
            return Ok(rejected(work));
        }
        // generate IUVs (Tipo B); numbers are never handed out twice (durable blocks)
        let org = self.org.fiscal_code.as_str();
        let mut generation_error = None;
        // index keys of the numbers generated here: free in the store (checked by
        // `next_notice`) and in this batch (checked below)
        let mut fresh: Vec<(usize, Vec<u8>)> = Vec::new();
        for w in &mut work {
            if w.kind == Some(IuvKind::B) && w.nav.is_none() {
                // numbers held in the store or claimed earlier in this batch are skipped
                let generated = loop {
                    match self
                        .store
                        .ledger
                        .next_notice_candidate(&self.org.fiscal_code, &self.org.layout)
                    {
                        Ok((seq, n)) => {
                            if self.number_free(seq, &n, view)? {
                                break Ok(n);
                            }
                        }
                        Err(e) => break Err(e),
                    }
                };
                match generated {
                    Ok(n) => {
                        fresh.push((0, position_key(org, n.as_str())));
                        fresh.push((1, position_key(org, n.iuv().as_str())));
                        let iud = w.record().map(|r| r.iud.as_str()).unwrap_or_default();
                        if let Some(o) = pos
                            .payment_options
                            .iter_mut()
                            .find(|o| meta_get(o, meta::IUD) == Some(iud))
                        {
                            o.nav = n.clone();
                            o.iuv = n.iuv();
                        }
                        w.nav = Some(n);
                    }
                    Err(LedgerError::Storage(e)) => return Err(e.into()),
                    Err(e) => {
                        generation_error = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        if let Some(e) = generation_error {
            for w in &mut work {
                w.issues.push(issue(
                    ErrorCode::IuvGenerationFailed,
                    format!("generazione IUV non riuscita: {e}"),
                ));
            }
            return Ok(rejected(work));
        }
        if !needs_write {
            return Ok(rejected(work));
        }
        // the ledger's bookkeeping, as `create_many` / `modify` would do it
        match &existing {
            None => pos.revision = 1,
            Some(e) => {
                pos.organization_fiscal_code = e.organization_fiscal_code.clone();
                pos.iupd = e.iupd.clone();
                pos.inserted_date = e.inserted_date;
                pos.revision = e.revision.saturating_add(1);
                pos.last_updated_date = Utc::now();
            }
        }
        // IUV / notice number uniqueness per organization (store and this batch)
        let claims = unique_claims(existing.as_ref(), &pos);
        for (t, k) in &claims {
            let holder = if fresh.iter().any(|(ft, fk)| ft == t && fk == k) {
                None
            } else {
                self.holder(*t, k, view)?
            };
            if let Some(h) = holder {
                if h != pos.iupd.as_bytes() {
                    let e = claim_conflict(*t, k, &h);
                    for w in &mut work {
                        w.issues
                            .push(issue(ErrorCode::RowIuvDuplicate, e.to_string()));
                        w.performed = "SCARTATO";
                    }
                    return Ok(rejected(work));
                }
            }
        }
        for (t, k) in unique_releases(existing.as_ref(), &pos) {
            view.claims.insert((t, k), None);
        }
        for (t, k) in claims {
            view.claims.insert((t, k), Some(pos.iupd.clone()));
        }
        Ok(GroupPlan {
            work,
            write: Some(PlannedWrite::new(existing, pos, expect)?),
        })
    }

    /// Applies the rows of a group to the stored position in memory; records issues
    /// (immutable fields, option consistency) in `work`.
    fn build_group(
        &self,
        work: &mut [Work],
        existing: Option<&DebtPosition>,
    ) -> Option<DebtPosition> {
        let live = existing
            .filter(|p| p.status != PositionStatus::Invalid)
            .cloned();
        let first = work
            .iter()
            .find_map(|w| w.record().filter(|r| r.action != Some(RowAction::Annul)));
        let mut pos = match (&live, first) {
            (Some(p), _) => p.clone(),
            (None, Some(r)) => {
                let mut p = self.new_position(r);
                if let Some(e) = existing {
                    p.inserted_date = e.inserted_date;
                }
                p
            }
            (None, None) => existing.cloned()?, // only annulments of a cancelled position
        };
        let mut annulled: Vec<String> = Vec::new();
        let mut option_types: BTreeMap<u32, (String, usize)> = BTreeMap::new();
        for w in work.iter_mut() {
            let Some(r) = w.record() else {
                continue;
            };
            w.due = r.due_date;
            let idx = pos
                .payment_options
                .iter()
                .position(|o| meta_get(o, meta::IUD) == Some(r.iud.as_str()));
            if r.action == Some(RowAction::Annul) {
                match (existing.map(|p| p.status), idx) {
                    (Some(PositionStatus::Invalid), _) | (_, None) => {
                        w.performed = "INVARIATO";
                        if let Some(o) = existing.and_then(|p| {
                            p.payment_options
                                .iter()
                                .find(|o| meta_get(o, meta::IUD) == Some(r.iud.as_str()))
                        }) {
                            w.nav = Some(o.nav.clone());
                            w.kind = iuv_kind_of(o);
                        }
                    }
                    (_, Some(i)) => {
                        if let Some(o) = pos.payment_options.get(i) {
                            w.nav = Some(o.nav.clone());
                            w.kind = iuv_kind_of(o);
                        }
                        annulled.push(r.iud.clone());
                        w.performed = "ANNULLATO";
                    }
                }
                continue;
            }
            let entry = option_types
                .entry(r.option_index)
                .or_insert((r.option_type.as_str().to_string(), 0));
            entry.1 += 1;
            if entry.0 != r.option_type.as_str()
                || (!r.option_type.is_installments() && entry.1 > 1)
            {
                w.issues.push(issue(
                    ErrorCode::RowOptionInconsistent,
                    format!(
                        "opzione {} della posizione {} incoerente (tipo o numero di rate)",
                        r.option_index, r.iupd
                    ),
                ));
            }
            if pos.debtor.fiscal_code != r.debtor.fiscal_code {
                let code = if idx.is_some() || live.is_some() {
                    ErrorCode::RowImmutableField
                } else {
                    ErrorCode::RowOptionInconsistent
                };
                w.issues.push(issue(
                    code,
                    "debitore diverso da quello della posizione (coobbligati non supportati)",
                ));
            }
            if pos.service_code.as_deref() != Some(r.tipo_dovuto.as_str()) {
                w.issues.push(issue(
                    if live.is_some() {
                        ErrorCode::RowImmutableField
                    } else {
                        ErrorCode::RowOptionInconsistent
                    },
                    "tipoDovuto diverso da quello della posizione",
                ));
            }
            match idx.and_then(|i| pos.payment_options.get(i).cloned().map(|o| (i, o))) {
                None => {
                    // new installment
                    let (kind, nav) = match (&r.notice, &w.nav) {
                        (NoticeRequest::Supplied { .. }, Some(n)) => (IuvKind::A, Some(n.clone())),
                        _ => (IuvKind::B, placeholder_nav(&self.org.layout)),
                    };
                    w.kind = Some(kind);
                    match nav.and_then(|nav| self.build_option(r, &nav, kind)) {
                        Some(opt) => pos.payment_options.push(opt),
                        None => w.issues.push(issue(
                            ErrorCode::RowBadBeneficiary,
                            "nessun IBAN configurato per il tipoDovuto",
                        )),
                    }
                    w.performed = "INSERITO";
                }
                Some((i, old)) => {
                    let kind = iuv_kind_of(&old).unwrap_or(IuvKind::A);
                    if let (NoticeRequest::Supplied { .. }, Some(n)) = (&r.notice, &w.nav) {
                        if *n != old.nav {
                            w.issues.push(issue(
                                ErrorCode::RowImmutableField,
                                "codIuv diverso da quello assegnato: non modificabile",
                            ));
                        }
                    }
                    let Some(mut opt) = self.build_option(r, &old.nav, kind) else {
                        w.issues.push(issue(
                            ErrorCode::RowBadBeneficiary,
                            "nessun IBAN configurato per il tipoDovuto",
                        ));
                        continue;
                    };
                    opt.status = old.status;
                    opt.payment_date = old.payment_date;
                    if opt.transfers.len() != old.transfers.len() {
                        w.issues.push(issue(
                            ErrorCode::RowImmutableField,
                            "numero di beneficiari non modificabile",
                        ));
                    }
                    for k in [meta::DATI_RISCOSSIONE, meta::GENERATE_IUV] {
                        if meta_get(&old, k).is_some() && meta_get(&old, k) != meta_get(&opt, k) {
                            w.issues.push(issue(
                                ErrorCode::RowImmutableField,
                                format!("{k} non modificabile"),
                            ));
                        }
                    }
                    w.kind = Some(kind);
                    w.nav = Some(old.nav.clone());
                    let ours = meta_get(&old, meta::FLOW) == Some(self.rec.flow_id.as_str());
                    if strip(&opt) == strip(&old) && pos.debtor == r.debtor {
                        w.performed = match (ours, r.action) {
                            (true, Some(RowAction::Insert)) => "INSERITO",
                            (true, _) if self.opts.resume => "MODIFICATO",
                            _ => "INVARIATO",
                        };
                    } else {
                        if let Some(slot) = pos.payment_options.get_mut(i) {
                            *slot = opt;
                        }
                        w.performed = "MODIFICATO";
                    }
                }
            }
            pos.debtor = r.debtor.clone();
        }
        if !annulled.is_empty() {
            let remaining = pos
                .payment_options
                .iter()
                .filter(|o| meta_get(o, meta::IUD).is_none_or(|i| !annulled.iter().any(|a| a == i)))
                .count();
            if remaining == 0 {
                pos.status = PositionStatus::Invalid;
            } else {
                pos.payment_options.retain(|o| {
                    meta_get(o, meta::IUD).is_none_or(|i| !annulled.iter().any(|a| a == i))
                });
            }
        }
        if pos.payment_options.len() > 100 {
            for w in work.iter_mut() {
                w.issues.push(issue(
                    ErrorCode::RowOptionInconsistent,
                    "troppe rate nella posizione (massimo 100)",
                ));
            }
        }
        Some(pos)
    }

    /// The outcome line (and IUV exchange line) of a processed row (FORMAT.md §5.7, §5.5).
    fn line(&self, w: &Work) -> (OutcomeLine, Option<IuvExchangeLine>) {
        let e = &w.row.echo;
        let requested = e.action.to_ascii_uppercase();
        if !w.issues.is_empty() || w.row.record.is_err() {
            let mut issues = w.issues.clone();
            if let Err(syntax) = &w.row.record {
                issues.extend(syntax.iter().cloned());
            }
            let mut codes: Vec<String> = Vec::new();
            let mut descriptions = Vec::new();
            for i in &issues {
                if !codes.iter().any(|c| c == i.code.as_str()) {
                    codes.push(i.code.as_str().to_string());
                    descriptions.push(i.message.clone());
                }
            }
            return (
                OutcomeLine {
                    row: Some(w.row.number),
                    iupd: e.iupd.clone(),
                    iud: e.iud.clone(),
                    requested,
                    outcome: RowOutcome::Ko,
                    performed: "SCARTATO".into(),
                    iuv: e.iuv.clone(),
                    nav: String::new(),
                    amount: e.amount.clone(),
                    due_date: e.due_date.clone(),
                    codes,
                    descriptions,
                },
                None,
            );
        }
        let Some(r) = w.record() else {
            return (self.internal_line(w), None);
        };
        let dovuto = self.dovuto();
        let (m, f) = if dovuto {
            ("Dovuto", "o")
        } else {
            ("Rata", "a")
        };
        let generated = w.kind == Some(IuvKind::B) && w.performed == "INSERITO";
        let mut desc = match w.performed {
            "INSERITO" => format!("{m} inserit{f}"),
            "MODIFICATO" => format!("{m} aggiornat{f}"),
            "ANNULLATO" => format!("{m} annullat{f}"),
            "INVARIATO" if r.action == Some(RowAction::Annul) => {
                format!("{m} già annullat{f} o assente")
            }
            _ => "Nessuna variazione".to_string(),
        };
        if generated {
            desc.push_str(", IUV generato");
        }
        if self.opts.dry_run {
            desc.push_str(" (simulazione: nulla applicato)");
        }
        let mut codes = vec!["OK".to_string()];
        let mut descriptions = vec![desc];
        let mut outcome = RowOutcome::Ok;
        if !w.row.warnings.is_empty() {
            outcome = RowOutcome::Warn;
            codes = w
                .row
                .warnings
                .iter()
                .map(|i| i.code.as_str().to_string())
                .collect();
            descriptions.extend(w.row.warnings.iter().map(|i| i.message.clone()));
        }
        let (iuv, nav) = match (&w.nav, self.opts.dry_run && generated) {
            (Some(n), false) => (n.iuv().to_string(), n.to_string()),
            _ => (String::new(), String::new()),
        };
        let due = w.due.map(|d| d.to_string()).unwrap_or_default();
        let line = OutcomeLine {
            row: Some(w.row.number),
            iupd: r.iupd.clone(),
            iud: r.iud.clone(),
            requested: r.action.map(|a| a.letter().to_string()).unwrap_or_default(),
            outcome,
            performed: w.performed.to_string(),
            iuv: iuv.clone(),
            nav: nav.clone(),
            amount: r.amount.to_decimal_string(),
            due_date: due.clone(),
            codes,
            descriptions,
        };
        let xl =
            (!iuv.is_empty() && w.performed != "ANNULLATO" && r.action != Some(RowAction::Annul))
                .then(|| IuvExchangeLine {
                    row: w.row.number,
                    iupd: r.iupd.clone(),
                    iud: r.iud.clone(),
                    option_index: r.option_index,
                    kind: w.kind.unwrap_or(IuvKind::A),
                    iuv,
                    nav,
                    org_fiscal_code: self.org.fiscal_code.to_string(),
                    amount: r.amount.to_decimal_string(),
                    due_date: due,
                    performed: w.performed.to_string(),
                });
        (line, xl)
    }

    fn internal_line(&self, w: &Work) -> OutcomeLine {
        OutcomeLine {
            row: Some(w.row.number),
            iupd: w.row.echo.iupd.clone(),
            iud: w.row.echo.iud.clone(),
            requested: w.row.echo.action.clone(),
            outcome: RowOutcome::Ko,
            performed: "SCARTATO".into(),
            iuv: String::new(),
            nav: String::new(),
            amount: w.row.echo.amount.clone(),
            due_date: w.row.echo.due_date.clone(),
            codes: vec![ErrorCode::InternalError.as_str().into()],
            descriptions: vec!["errore interno".into()],
        }
    }

    /// FULL mode (FORMAT.md §5.6): every in-scope installment absent from the file is
    /// cancelled unless paid (then reported `NON_ANNULLABILE` / `SKIPPED_PAID`). The scope is
    /// streamed in key order, never collected; each transaction covers up to
    /// [`LoadOptions::batch_positions`] touched positions with their outcome lines, the record
    /// and the scan cursor, so a resumed load continues after the last committed position
    /// (nothing cancelled or counted twice).
    fn cancel_absent(&mut self) -> Result<(), FeedError> {
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
    fn cancel_batch(&mut self, cursor_key: &[u8]) -> Result<Option<bool>, FeedError> {
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
            let cancel_iuds: Vec<&str> = absent
                .iter()
                .filter(|o| !paid_position && o.status == OptionStatus::PoUnpaid)
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
        )
            .transaction(|(p, n, i, d, due, t, f, o, seen)| {
                let ledger = [p, n, i, d, due, t];
                for w in &writes {
                    check_expected(p, w.prepared.key(), &w.expect)?;
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

fn iuv_kind_of(o: &PaymentOption) -> Option<IuvKind> {
    match meta_get(o, meta::IUV_KIND) {
        Some("B") => Some(IuvKind::B),
        Some("A") => Some(IuvKind::A),
        _ => None,
    }
}

/// A syntactically valid notice number of the layout, replaced by the generated one before the
/// write (used only in memory).
/// What an IUV of the organization's layout looks like, in Italian (the outcome report is an
/// Ente-facing surface: one language per message).
fn iuv_layout_it(layout: &NoticeLayout) -> String {
    match layout {
        NoticeLayout::Aux3 { segregation_code } => format!(
            "lo IUV deve avere 17 cifre e iniziare con il codice di segregazione {segregation_code:02}"
        ),
        NoticeLayout::Aux0 { application_code } => format!(
            "lo IUV deve avere 15 cifre (codice applicazione {application_code:02} nel numero avviso)"
        ),
        NoticeLayout::Aux1 => "lo IUV deve avere 17 cifre".into(),
        NoticeLayout::Aux2 => "lo IUV deve avere 15 cifre".into(),
    }
}

fn placeholder_nav(layout: &NoticeLayout) -> Option<NoticeNumber> {
    layout
        .generate(0)
        .ok()
        .or_else(|| NoticeNumber::parse_unchecked("300000000000000000").ok())
}

/// Identical content, ignoring bookkeeping (revision, timestamps, origin markers).
fn same_position(a: &DebtPosition, b: &DebtPosition) -> bool {
    let norm = |p: &DebtPosition| {
        let mut p = p.clone();
        p.revision = 0;
        p.last_updated_date = DateTime::<Utc>::MIN_UTC;
        p.inserted_date = DateTime::<Utc>::MIN_UTC;
        p.publish_date = None;
        p.payment_options = p.payment_options.iter().map(strip).collect();
        p
    };
    norm(a) == norm(b)
}

/// The persisted record of a load.
///
/// # Errors
/// Storage errors.
pub fn get_feed(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
) -> Result<Option<FeedLoadRecord>, FeedError> {
    let t = Trees::open(store)?;
    get_record(&t, &feed_key(org, flow_id))
}

/// Every load of an organization (or of all organizations).
///
/// # Errors
/// Storage errors.
pub fn list_feeds(
    store: &Store,
    org: Option<&OrgFiscalCode>,
) -> Result<Vec<FeedLoadRecord>, FeedError> {
    let t = Trees::open(store)?;
    let prefix = org
        .map(|o| o.as_str().as_bytes().to_vec())
        .unwrap_or_default();
    let mut out = Vec::new();
    for item in t.feeds.scan_prefix(prefix) {
        let (k, v) = item?;
        out.push(decode("feeds", &k, &v)?);
    }
    Ok(out)
}

/// Loads left RUNNING (a crash or a stop): at start-up the caller resumes them
/// ([`LoadOptions::resume`]) or marks them failed ([`mark_failed`]).
///
/// # Errors
/// Storage errors.
pub fn interrupted_feeds(store: &Store) -> Result<Vec<FeedLoadRecord>, FeedError> {
    Ok(list_feeds(store, None)?
        .into_iter()
        .filter(|r| r.status == FeedStatus::Running)
        .collect())
}

/// Marks a RUNNING / AWAITING_CONFIRMATION load FAILED with a reason. What it had committed
/// stays applied and reported (`rows_read`, the outcome lines); the report says where it
/// stopped.
///
/// # Errors
/// [`FeedError::NotFound`], [`FeedError::NotResumable`] for DONE / FAILED loads, storage errors.
pub fn mark_failed(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
    reason: &str,
) -> Result<FeedLoadRecord, FeedError> {
    let t = Trees::open(store)?;
    let key = feed_key(org, flow_id);
    let mut r = get_record(&t, &key)?.ok_or(FeedError::NotFound)?;
    if !matches!(
        r.status,
        FeedStatus::Running | FeedStatus::AwaitingConfirmation
    ) {
        return Err(FeedError::NotResumable(flow_id.to_string()));
    }
    r.status = FeedStatus::Failed;
    r.error = Some(FeedFileError {
        code: ErrorCode::InternalError,
        message: format!(
            "caricamento interrotto dopo la riga {} ({} posizioni applicate): {reason}",
            r.last_committed_row, r.groups_committed
        ),
        row: Some(r.last_committed_row),
    });
    r.finished_at = Some(Utc::now());
    r.updated_at = Utc::now();
    put_record(&t, &key, &r)?;
    clear_prefix(&t.seen, &sub_prefix(&key))?;
    Ok(r)
}

/// The stored outcomes of a load in report order (rows, then FULL-mode derived lines).
///
/// # Errors
/// Storage errors.
pub fn outcomes(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
) -> Result<impl Iterator<Item = Result<StoredOutcome, FeedError>>, FeedError> {
    let t = Trees::open(store)?;
    let prefix = sub_prefix(&feed_key(org, flow_id));
    // `prefix ++ 0x01 ++ row(8) ++ CHUNK_MARK`: a chunk of row outcomes
    let chunk_len = prefix.len() + 1 + 8 + 1;
    let tag_at = prefix.len();
    Ok(t.outcomes.scan_prefix(prefix).flat_map(move |item| {
        let one = |r: Result<StoredOutcome, FeedError>| vec![r];
        let (k, v) = match item {
            Ok(kv) => kv,
            Err(e) => return one(Err(e.into())),
        };
        if k.len() == chunk_len && k.get(tag_at) == Some(&1) && k.last() == Some(&CHUNK_MARK) {
            match decode::<Vec<Packed>>("feed_outcomes", &k, &v) {
                Ok(chunk) => chunk.into_iter().map(|p| Ok(p.unpack())).collect(),
                Err(e) => one(Err(e.into())),
            }
        } else {
            one(decode::<StoredOutcome>("feed_outcomes", &k, &v).map_err(Into::into))
        }
    }))
}

/// Writes `<basename>-ESITO.csv` (FORMAT.md §5.7), streaming; returns the lines written. A
/// file-level failure is written as one line with the file code.
///
/// # Errors
/// Storage errors; [`FeedError::Io`] for write errors.
pub fn write_outcome_report(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
    out: &mut dyn Write,
) -> Result<u64, FeedError> {
    let io = |e: std::io::Error| FeedError::Io(e.to_string());
    let mut w = OutcomeWriter::new(out).map_err(io)?;
    let mut n = 0;
    if let Some(r) = get_feed(store, org, flow_id)? {
        if let Some(e) = r.error.as_ref().filter(|_| r.groups_committed == 0) {
            w.write(&OutcomeLine {
                row: e.row,
                iupd: String::new(),
                iud: String::new(),
                requested: String::new(),
                outcome: RowOutcome::Ko,
                performed: "SCARTATO".into(),
                iuv: String::new(),
                nav: String::new(),
                amount: String::new(),
                due_date: String::new(),
                codes: vec![e.code.as_str().into()],
                descriptions: vec![e.message.clone()],
            })
            .map_err(io)?;
            n += 1;
        }
    }
    for o in outcomes(store, org, flow_id)? {
        w.write(&o?.line).map_err(io)?;
        n += 1;
    }
    w.finish().map_err(io)?;
    Ok(n)
}

/// Writes `<basename>-IUV-EXCHANGE.csv` (FORMAT.md §5.5), streaming; returns the lines written
/// (0 = the file need not be delivered).
///
/// # Errors
/// Storage errors; [`FeedError::Io`] for write errors.
pub fn write_iuv_exchange(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
    out: &mut dyn Write,
) -> Result<u64, FeedError> {
    let io = |e: std::io::Error| FeedError::Io(e.to_string());
    let mut w = IuvExchangeWriter::new(out).map_err(io)?;
    let mut n = 0;
    for o in outcomes(store, org, flow_id)? {
        if let Some(l) = o?.iuv {
            w.write(&l).map_err(io)?;
            n += 1;
        }
    }
    w.finish().map_err(io)?;
    Ok(n)
}

/// Records a load that failed before its CSV could be read (a zip without a usable CSV, a
/// checksum mismatch — FORMAT.md §5.2 file-level codes found by the transport) as FAILED with
/// `error`, nothing applied, so that its status and report look like any other file-level
/// failure. The same duplicate rule as [`load_feed`] applies (a FAILED load with nothing
/// applied may be replaced).
///
/// # Errors
/// [`FeedError::Duplicate`], storage errors.
pub fn reject_file(
    store: &Store,
    org: &OrgFiscalCode,
    flow_id: &str,
    opts: &LoadOptions,
    error: FeedFileError,
) -> Result<FeedLoadRecord, FeedError> {
    let t = Trees::open(store)?;
    let key = feed_key(org, flow_id);
    if let Some(r) = get_record(&t, &key)? {
        if !(r.status == FeedStatus::Failed && r.groups_committed == 0) {
            return Err(FeedError::Duplicate {
                flow_id: flow_id.to_string(),
                status: r.status,
                file_name: r.file_name,
            });
        }
    }
    clear_prefix(&t.outcomes, &sub_prefix(&key))?;
    let now = Utc::now();
    let rec = FeedLoadRecord {
        id: format!("{org}/{flow_id}"),
        organization: org.clone(),
        file_name: opts.file_name.clone(),
        flow_id: flow_id.to_string(),
        mode: opts.mode,
        version: None,
        status: FeedStatus::Failed,
        phase: FeedPhase::Rows,
        dry_run: opts.dry_run,
        rows_total: 0,
        rows_read: 0,
        rows_loaded: 0,
        rows_rejected: 0,
        rows_warned: 0,
        cancelled: 0,
        skipped_paid: 0,
        groups_committed: 0,
        last_committed_row: 0,
        last_committed_offset: 0,
        error: Some(error),
        warnings: Vec::new(),
        started_at: now,
        updated_at: now,
        finished_at: Some(now),
    };
    put_record(&t, &key, &rec)?;
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_iuv_layout_is_explained_in_italian_only() {
        let m = iuv_layout_it(&NoticeLayout::Aux3 {
            segregation_code: 1,
        });
        assert_eq!(
            m,
            "lo IUV deve avere 17 cifre e iniziare con il codice di segregazione 01"
        );
        assert!(!m.contains("IUV does"), "{m}");
    }

    fn sample_outcome(row: u64) -> StoredOutcome {
        let line = OutcomeLine {
            row: Some(row),
            iupd: format!("P-{row}"),
            iud: format!("P-{row}-U"),
            requested: "I".into(),
            outcome: RowOutcome::Warn,
            performed: "INSERITO".into(),
            iuv: "01000000000100121".into(),
            nav: "301000000000100121".into(),
            amount: "10.00".into(),
            due_date: "2025-06-30".into(),
            codes: vec!["WARN_BOOLEAN_ALIAS".into(), "X;\"y\"".into()],
            descriptions: vec!["a | b".into(), "è".into()],
        };
        let iuv = IuvExchangeLine {
            row,
            iupd: line.iupd.clone(),
            iud: line.iud.clone(),
            option_index: 2,
            kind: IuvKind::B,
            iuv: line.iuv.clone(),
            nav: line.nav.clone(),
            org_fiscal_code: "80000000010".into(),
            amount: line.amount.clone(),
            due_date: line.due_date.clone(),
            performed: line.performed.clone(),
        };
        StoredOutcome {
            line,
            iuv: Some(iuv),
        }
    }

    #[test]
    fn packed_outcomes_round_trip() {
        let same = sample_outcome(7);
        let mut differs = sample_outcome(8);
        if let Some(x) = &mut differs.iuv {
            x.amount = "11.00".into();
        }
        let mut none = sample_outcome(9);
        none.iuv = None;
        none.line.row = None;
        for o in [same, differs, none] {
            let bytes = encode(&vec![Packed::pack(o.clone())]).unwrap();
            let back: Vec<Packed> = decode("t", b"k", &bytes).unwrap();
            assert_eq!(
                back.into_iter().map(Packed::unpack).collect::<Vec<_>>(),
                [o]
            );
        }
        let full = encode(&sample_outcome(7)).unwrap().len();
        let packed = encode(&vec![Packed::pack(sample_outcome(7))])
            .unwrap()
            .len();
        assert!(packed * 10 < full * 7, "{packed} vs {full}");
    }

    #[test]
    fn key_set_is_exact_across_growth_and_chunks() {
        let mut s = KeySet::new();
        for i in 0..100_000u32 {
            assert!(s.insert(format!("I{i}").as_bytes()), "{i}");
        }
        for i in 0..100_000u32 {
            assert!(!s.insert(format!("I{i}").as_bytes()), "{i}");
            assert!(s.contains(format!("I{i}").as_bytes()));
            assert!(!s.contains(format!("P{i}").as_bytes()));
        }
        // keys spanning chunk ends, and one longer than a chunk
        let long = vec![b'x'; KEY_CHUNK - 10];
        assert!(s.insert(&long));
        assert!(s.insert(b"I-after-long"));
        let huge = vec![b'y'; KEY_CHUNK + 1];
        assert!(s.insert(&huge));
        assert!(!s.insert(&huge));
        assert!(s.contains(&long) && s.contains(&huge) && s.contains(b"I-after-long"));
        assert_eq!(s.keys().count(), 100_003);
    }

    #[test]
    fn seen_set_spills_to_the_tree_and_stays_exact() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("feed_seen").unwrap();
        let mut s = SeenSet::new(tree.clone(), b"80000000010FLOW");
        s.budget = 64 * 1024; // spills after a few thousand keys
        for i in 0..20_000u32 {
            assert!(s.insert(b'I', &format!("IUD-{i}")).unwrap(), "{i}");
            if i % 3 == 0 {
                assert!(!s.insert(b'I', &format!("IUD-{}", i / 2)).unwrap(), "{i}");
            }
        }
        assert!(s.mem.is_none(), "spilled");
        s.flush().unwrap();
        for i in 0..20_000u32 {
            assert!(s.contains(b'I', &format!("IUD-{i}")).unwrap());
            assert!(!s.contains(b'P', &format!("IUD-{i}")).unwrap());
        }
        assert_eq!(tree.len(), 20_000);
        s.clear().unwrap();
        assert_eq!(tree.len(), 0);
        assert!(!s.contains(b'I', "IUD-1").unwrap());
    }
}
