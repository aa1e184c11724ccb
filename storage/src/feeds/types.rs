//! Types of the feed capability seen by callers: options of a load, sources, the load record and its status, progress, errors.

use crate::ledger::LedgerError;
use crate::StorageError;
use std::io::Read;
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use mpay_messages::feeds::{
    FeedFileError, FeedManifest, FeedMode, FeedVersion, Mb14AmountMode, RowIssue,
};
use mpay_messages::{Iban, NoticeLayout, OrgFiscalCode};
use serde::{Deserialize, Serialize};

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
    /// Notice code of the numbers generated for Tipo B rows of this type (issue 10: each
    /// back-office system its own segregation / application code); `None` = the
    /// organization's default layout.
    #[serde(default)]
    pub layout: Option<NoticeLayout>,
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
pub(crate) const MAX_BATCH_ROWS: usize = 4096;

/// Row outcomes stored per `feed_outcomes` entry: one tree insert per this many rows, and an
/// entry small enough (about 6 KiB) for sled to keep its nodes inline.
pub(crate) const OUTCOME_CHUNK: usize = 12;

/// Last byte of the key of a chunk of row outcomes (`... 0x01 ++ firstRow(u64 BE) ++ '+'`);
/// keys without it hold one outcome (loads written before chunks existed). Both sort by row.
pub(crate) const CHUNK_MARK: u8 = b'+';

/// Entries of the `feed_seen` work set written per `apply_batch` during the pre-scan.
pub(crate) const SEEN_BATCH: usize = 8192;

/// FULL mode: positions scanned per cancellation transaction at most (the cursor advances
/// with each one, so a resumed load does not rescan them).
pub(crate) const CANCEL_SCAN_BATCH: usize = 8192;

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
