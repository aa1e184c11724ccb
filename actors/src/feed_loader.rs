//! `FeedLoader`: one supervised actor per bulk feed load (FORMAT.md §5), and [`FeedLauncher`],
//! the single entry point of every transport (REST upload, FTP, drop folder, node start-up).
//!
//! A load is spooled first: the uploaded file is moved into
//! `<spool>/<org>/<flowId>/upload` with a `job.json` describing it, so that a crash or a stop
//! leaves everything needed to resume ([`FeedLauncher::resume_interrupted`]). The actor runs
//! [`load_feed`] on a blocking thread (zips are extracted first, with the core's guards),
//! reports progress to the [`HealthRegistry`] (kind `FeedLoader`, id = feed id, not required,
//! backlog = rows remaining), commits with [`DurabilityPoint::BulkLoad`], writes the outputs
//! into the job's `out_dir` (file channels: outcome report, IUV exchange file, the MyPay / PU
//! compatibility copies and `<basename>-RESULT.zip` bundling them, FORMAT.md §5.5, §5.7) and
//! unregisters. Failures of the blocking work (I/O, storage, a panic) are retried with `resume`
//! up to [`MAX_ATTEMPTS`] times, then the load is marked FAILED with the reason.
//!
//! Before anything is read, the upload's SHA-256 is computed and stored (FORMAT.md §5.2 "we
//! always store our own SHA-256") and the checksums the Ente declared ([`FeedJob::checksums`]:
//! sidecar files, the HTTP `checksum` parameter) are verified: a mismatch is the file-level
//! error `FILE_CHECKSUM_MISMATCH`, nothing applied.
//!
//! The spooled upload stays in its folder after the load (it is not deleted when the load
//! ends): the compatibility copies quote rejected rows verbatim, and the HTTP API builds
//! `result.zip` from it on request ([`FeedLauncher::write_result_zip`]).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use mpay_messages::feeds::checksum::{digest, mismatch_error, ChecksumAlgorithm, ExpectedChecksum};
use mpay_messages::feeds::{extract_zip, FeedFileName, FeedMode, ZipLimits};
use mpay_messages::OrgFiscalCode;
use mpay_storage::feeds::{
    get_feed, interrupted_feeds, load_feed, mark_failed, reject_file, write_iuv_exchange,
    write_outcome_report, FeedError, FeedLoadRecord, FeedOrg, FeedProgress, FeedSource, FeedStatus,
    FileSource, LoadOptions, ProgressControl,
};
use mpay_storage::feeds_output::{
    get_file_info, output_plan, put_file_info, write_iuv_copy, write_rejects_copy,
    write_result_zip, FeedFileInfo,
};
use mpay_storage::{DurabilityPoint, Store};
use serde::{Deserialize, Serialize};

use crate::health::HealthRegistry;

/// Health registry kind of feed loaders.
pub const KIND: &str = "FeedLoader";
/// Attempts of one load before it is marked failed.
pub const MAX_ATTEMPTS: u32 = 3;

const JOB_FILE: &str = "job.json";
const UPLOAD_FILE: &str = "upload";
const CSV_FILE: &str = "feed.csv";

/// What to load and where its results go; persisted as `job.json` next to the spooled file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedJob {
    /// Organization fiscal code.
    pub organization: String,
    /// Flow id (identity of the load within the organization).
    pub flow_id: String,
    /// File name as uploaded.
    pub file_name: String,
    /// Load mode asked by the transport; `None` = the zip's `manifest.json`, else DELTA.
    pub mode: Option<FeedMode>,
    /// File channels require `<ipa>-<flowId>-<version>` names (FORMAT.md §5.2).
    pub require_standard_name: bool,
    /// Validate and report only.
    pub dry_run: bool,
    /// Where `<basename>-ESITO.csv`, `<basename>-IUV-EXCHANGE.csv`, the compatibility copies
    /// and `<basename>-RESULT.zip` are written at the end (FTP `out/`, drop folder `out/`);
    /// `None` = only through the API.
    pub out_dir: Option<PathBuf>,
    /// Checksums the Ente declared for the upload (sidecars, HTTP `checksum` parameter),
    /// verified before the load (FORMAT.md §5.2).
    #[serde(default)]
    pub checksums: Vec<ExpectedChecksum>,
}

/// How the actor starts its load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// A new load.
    Fresh,
    /// Resume a RUNNING load from its last committed group.
    Resume,
    /// Apply a FULL load held by `FULL_FEED_GUARD` (operator confirmation).
    Confirm,
}

/// Why a load could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The organization has no feed configuration.
    #[error("organization {0} is not configured for feeds")]
    UnknownOrganization(String),
    /// The core refused (duplicate flow id, not resumable, not found, storage).
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// The upload could not be spooled.
    #[error("cannot keep the uploaded file: {0}")]
    Io(String),
}

/// The flow id the core derives from a file name when none is given (FORMAT.md §5.2): the
/// `flowId` part of a standard name, else the base name without its extension.
pub fn flow_id_for(file_name: &str) -> String {
    if let Ok(n) = FeedFileName::parse(file_name) {
        return n.flow_id;
    }
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    base.rsplit_once('.')
        .map(|(s, _)| s)
        .unwrap_or(base)
        .to_string()
}

/// `name.csv` / `name.zip` → `name` (the basename of the outputs, FORMAT.md §5.5, §5.7).
pub fn output_basename(file_name: &str) -> String {
    mpay_storage::feeds_output::basename_of(file_name)
}

/// A path component for any flow id: `[A-Za-z0-9_-]` kept, every other byte `%XX`.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Inner {
    store: Store,
    registry: HealthRegistry,
    orgs: HashMap<String, FeedOrg>,
    spool: PathBuf,
    arbiter: ArbiterHandle,
    active: Mutex<HashMap<String, Option<Addr<FeedLoader>>>>,
    stopping: AtomicBool,
    zip_limits: ZipLimits,
}

/// Starts, resumes and confirms loads; shared by every transport. Cheap to clone.
#[derive(Clone)]
pub struct FeedLauncher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FeedLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedLauncher")
            .field("spool", &self.inner.spool)
            .field("organizations", &self.inner.orgs.len())
            .finish()
    }
}

impl FeedLauncher {
    /// A launcher spooling into `spool` (created if missing) and starting its actors on the
    /// current actix arbiter (call inside an actix `System`).
    ///
    /// # Errors
    /// The spool folder cannot be created.
    pub fn new(
        store: Store,
        registry: HealthRegistry,
        orgs: HashMap<String, FeedOrg>,
        spool: PathBuf,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(spool.join("tmp"))?;
        Ok(FeedLauncher {
            inner: Arc::new(Inner {
                store,
                registry,
                orgs,
                spool,
                arbiter: Arbiter::current(),
                active: Mutex::new(HashMap::new()),
                stopping: AtomicBool::new(false),
                zip_limits: ZipLimits::default(),
            }),
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The feed configuration of an organization.
    pub fn organization(&self, fiscal_code: &str) -> Option<&FeedOrg> {
        self.inner.orgs.get(fiscal_code)
    }

    /// A fresh path for an upload being received (same file system as the spool, so that
    /// [`FeedLauncher::submit`] can move it).
    pub fn temp_upload_path(&self) -> PathBuf {
        self.inner
            .spool
            .join("tmp")
            .join(format!("{}.part", uuid_like()))
    }

    fn job_dir(&self, org: &str, flow_id: &str) -> PathBuf {
        self.inner
            .spool
            .join(encode_component(org))
            .join(encode_component(flow_id))
    }

    fn lock_active(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<Addr<FeedLoader>>>> {
        self.inner.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The CSV of a load kept in the spool (the extracted CSV of a zip, or the upload itself
    /// when it is a CSV); `None` when there is none (never uploaded here, a zip without a usable
    /// CSV, or the spool was cleaned).
    pub fn stored_csv(&self, org: &str, flow_id: &str) -> Option<PathBuf> {
        stored_csv(&self.job_dir(org, flow_id))
    }

    /// Writes `<basename>-RESULT.zip` of a load (FORMAT.md §5.7) to `out`, streaming: outcome
    /// report, IUV exchange file and the MyPay / PU compatibility copies, the copies read from
    /// the stored upload. Blocking. Returns the output and the entry names.
    ///
    /// # Errors
    /// [`FeedError::NotFound`] (no such load), storage and I/O errors.
    pub fn write_result_zip<W: std::io::Write>(
        &self,
        org: &OrgFiscalCode,
        flow_id: &str,
        out: W,
    ) -> Result<(W, Vec<String>), FeedError> {
        let rec = get_feed(&self.inner.store, org, flow_id)?.ok_or(FeedError::NotFound)?;
        let csv = self.stored_csv(org.as_str(), flow_id).map(FileSource);
        write_result_zip(
            &self.inner.store,
            org,
            flow_id,
            &rec.file_name,
            csv.as_ref().map(|c| c as &dyn FeedSource),
            out,
        )
    }

    /// Is a load of this flow running in this process?
    pub fn is_active(&self, org: &str, flow_id: &str) -> bool {
        self.lock_active().contains_key(&format!("{org}/{flow_id}"))
    }

    /// Number of loads running in this process.
    pub fn active_count(&self) -> usize {
        self.lock_active().len()
    }

    /// Accepts a load: checks the flow id is new (FORMAT.md §5.2, same rule as the core), moves
    /// `upload` into the spool, writes `job.json` and starts a [`FeedLoader`]. Returns the feed
    /// id (`<org>/<flowId>`). Blocking (file system and store): call from a blocking context.
    ///
    /// # Errors
    /// [`SubmitError::UnknownOrganization`], [`FeedError::Duplicate`] (as
    /// [`SubmitError::Feed`]) when the flow id is loaded or loading, [`SubmitError::Io`].
    pub fn submit(&self, job: FeedJob, upload: &Path) -> Result<String, SubmitError> {
        let fc = OrgFiscalCode::parse_unchecked(&job.organization)
            .map_err(|_| SubmitError::UnknownOrganization(job.organization.clone()))?;
        if !self.inner.orgs.contains_key(&job.organization) {
            return Err(SubmitError::UnknownOrganization(job.organization.clone()));
        }
        let id = format!("{}/{}", job.organization, job.flow_id);
        let mut active = self.lock_active();
        if active.contains_key(&id) {
            return Err(FeedError::Duplicate {
                flow_id: job.flow_id.clone(),
                status: FeedStatus::Running,
                file_name: job.file_name.clone(),
            }
            .into());
        }
        if let Some(r) = get_feed(&self.inner.store, &fc, &job.flow_id)? {
            if !(r.status == FeedStatus::Failed && r.groups_committed == 0) {
                return Err(FeedError::Duplicate {
                    flow_id: job.flow_id.clone(),
                    status: r.status,
                    file_name: r.file_name,
                }
                .into());
            }
        }
        let dir = self.job_dir(&job.organization, &job.flow_id);
        let io = |e: std::io::Error| SubmitError::Io(e.to_string());
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io)?;
        }
        std::fs::create_dir_all(&dir).map_err(io)?;
        let target = dir.join(UPLOAD_FILE);
        if std::fs::rename(upload, &target).is_err() {
            std::fs::copy(upload, &target).map_err(io)?;
            let _ = std::fs::remove_file(upload);
        }
        let json = serde_json::to_vec_pretty(&job).map_err(|e| SubmitError::Io(e.to_string()))?;
        std::fs::write(dir.join(JOB_FILE), json).map_err(io)?;
        active.insert(id.clone(), None);
        drop(active);
        self.spawn(job, Intent::Fresh);
        Ok(id)
    }

    /// Applies a FULL load held by `FULL_FEED_GUARD` (operator confirmation).
    ///
    /// # Errors
    /// [`FeedError::NotFound`], [`FeedError::NotResumable`] when it is not awaiting
    /// confirmation or its file is gone.
    pub fn confirm(&self, org: &str, flow_id: &str) -> Result<String, SubmitError> {
        let job = self.held_job(org, flow_id)?;
        let id = format!("{org}/{flow_id}");
        self.lock_active().insert(id.clone(), None);
        self.spawn(job, Intent::Confirm);
        Ok(id)
    }

    /// Rejects a FULL load held by `FULL_FEED_GUARD`: FAILED, nothing applied, spool removed.
    ///
    /// # Errors
    /// As [`FeedLauncher::confirm`].
    pub fn reject(&self, org: &str, flow_id: &str) -> Result<FeedLoadRecord, SubmitError> {
        let job = self.held_job(org, flow_id)?;
        let fc = OrgFiscalCode::parse_unchecked(org)
            .map_err(|_| SubmitError::UnknownOrganization(org.to_string()))?;
        let rec = mark_failed(
            &self.inner.store,
            &fc,
            flow_id,
            "caricamento FULL rifiutato dall'operatore",
        )?;
        let _ = write_outputs(&self.inner.store, &fc, &job, &self.job_dir(org, flow_id));
        Ok(rec)
    }

    fn held_job(&self, org: &str, flow_id: &str) -> Result<FeedJob, SubmitError> {
        let fc = OrgFiscalCode::parse_unchecked(org)
            .map_err(|_| SubmitError::UnknownOrganization(org.to_string()))?;
        let rec = get_feed(&self.inner.store, &fc, flow_id)?.ok_or(FeedError::NotFound)?;
        if rec.status != FeedStatus::AwaitingConfirmation || self.is_active(org, flow_id) {
            return Err(FeedError::NotResumable(flow_id.to_string()).into());
        }
        self.read_job(org, flow_id)
            .ok_or_else(|| FeedError::NotResumable(flow_id.to_string()).into())
    }

    fn read_job(&self, org: &str, flow_id: &str) -> Option<FeedJob> {
        let dir = self.job_dir(org, flow_id);
        if !dir.join(UPLOAD_FILE).is_file() {
            return None;
        }
        let bytes = std::fs::read(dir.join(JOB_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// At node start: every load left RUNNING is resumed (its spooled file is there and
    /// `resume` is true) or marked FAILED with the reason. Returns (feed id, resumed?).
    ///
    /// # Errors
    /// Storage errors listing the loads.
    pub fn resume_interrupted(&self, resume: bool) -> Result<Vec<(String, bool)>, FeedError> {
        let mut out = Vec::new();
        for r in interrupted_feeds(&self.inner.store)? {
            let org = r.organization.to_string();
            if self.is_active(&org, &r.flow_id) {
                continue;
            }
            let job = self
                .read_job(&org, &r.flow_id)
                .filter(|_| self.inner.orgs.contains_key(&org));
            match job {
                Some(job) if resume => {
                    tracing::info!(feed = %r.id, row = r.last_committed_row, "resuming interrupted feed load");
                    self.lock_active().insert(r.id.clone(), None);
                    self.spawn(job, Intent::Resume);
                    out.push((r.id.clone(), true));
                }
                job => {
                    let reason = if job.is_none() {
                        "file sorgente non più disponibile per la ripresa"
                    } else {
                        "ripresa automatica disattivata (feeds.resume_interrupted = false)"
                    };
                    tracing::warn!(feed = %r.id, reason, "interrupted feed load marked failed");
                    mark_failed(&self.inner.store, &r.organization, &r.flow_id, reason)?;
                    if let Some(job) = job {
                        let dir = self.job_dir(&org, &r.flow_id);
                        let _ = write_outputs(&self.inner.store, &r.organization, &job, &dir);
                    }
                    out.push((r.id.clone(), false));
                }
            }
        }
        Ok(out)
    }

    /// Asks running loads to stop after their current group (they stay RUNNING and resume at
    /// the next start).
    pub fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
    }

    fn spawn(&self, job: FeedJob, intent: Intent) {
        let launcher = self.clone();
        let id = format!("{}/{}", job.organization, job.flow_id);
        let _ = self.inner.arbiter.spawn_fn(move || {
            let l2 = launcher.clone();
            let addr = Supervisor::start(move |_| FeedLoader::new(l2, job, intent));
            let mut active = launcher.lock_active();
            if let Some(slot) = active.get_mut(&id) {
                *slot = Some(addr);
            }
        });
    }

    fn finish(&self, id: &str) {
        self.lock_active().remove(id);
        self.inner.registry.unregister(KIND, id);
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{t:x}-{}-{n}", std::process::id())
}

/// Is this file a zip (local file header magic)?
fn is_zip(path: &Path) -> bool {
    use std::io::Read as _;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"PK\x03\x04"
}

/// The CSV kept in a job folder: the extracted CSV of a zip, else the upload when it is not a
/// zip.
fn stored_csv(dir: &Path) -> Option<PathBuf> {
    let extracted = dir.join(CSV_FILE);
    if extracted.is_file() {
        return Some(extracted);
    }
    let upload = dir.join(UPLOAD_FILE);
    (upload.is_file() && !is_zip(&upload)).then_some(upload)
}

/// Writes `path` through `.<name>.part` renamed at the end; `write` returns the lines written
/// and the file is kept only if `keep(lines)`.
fn write_atomically(
    dir: &Path,
    name: &str,
    keep: impl Fn(u64) -> bool,
    write: impl FnOnce(&mut dyn std::io::Write) -> Result<u64, FeedError>,
) -> std::io::Result<bool> {
    let target = dir.join(name);
    let part = dir.join(format!(".{name}.part"));
    let n = {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&part)?);
        let n = write(&mut w).map_err(|e| std::io::Error::other(e.to_string()))?;
        w.flush()?;
        n
    };
    if keep(n) {
        std::fs::rename(&part, &target)?;
        Ok(true)
    } else {
        std::fs::remove_file(&part)?;
        Ok(false)
    }
}

/// Writes the outputs of a load into the job's `out_dir` (FORMAT.md §5.5, §5.7), each through a
/// `.part` file renamed at the end: `<basename>-ESITO.csv` (always), `-IUV-EXCHANGE.csv`, the
/// compatibility copies (`_SCARTI.csv` or `ERROR-….csv`; `_IUV.csv` or `_iuv.csv`) when they
/// have lines, and `<basename>-RESULT.zip` with all of them. `dir` is the job's spool folder
/// (the stored CSV).
fn write_outputs(
    store: &Store,
    org: &OrgFiscalCode,
    job: &FeedJob,
    dir: &Path,
) -> std::io::Result<()> {
    let Some(out) = &job.out_dir else {
        return Ok(());
    };
    std::fs::create_dir_all(out)?;
    let flow = job.flow_id.as_str();
    let csv = stored_csv(dir).map(FileSource);
    let src = csv.as_ref().map(|c| c as &dyn FeedSource);
    let plan = output_plan(store, org, flow, &job.file_name, src)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    write_atomically(
        out,
        &plan.outcome,
        |_| true,
        |w| write_outcome_report(store, org, flow, w),
    )?;
    if let Some(name) = &plan.iuv_exchange {
        write_atomically(
            out,
            name,
            |n| n > 0,
            |w| write_iuv_exchange(store, org, flow, w),
        )?;
    }
    if let Some(name) = &plan.rejects {
        write_atomically(
            out,
            name,
            |n| n > 0,
            |w| write_rejects_copy(store, org, flow, plan.flavour, src, w),
        )?;
    }
    if let (Some(name), Some(src)) = (&plan.iuv_copy, src) {
        write_atomically(
            out,
            name,
            |n| n > 0,
            |w| write_iuv_copy(store, org, flow, src, w),
        )?;
    }
    write_atomically(
        out,
        &plan.result_zip,
        |_| true,
        |w| {
            write_result_zip(store, org, flow, &job.file_name, src, w)
                .map(|(_, entries)| entries.len() as u64)
        },
    )?;
    Ok(())
}

/// Computes and stores the upload's digests and verifies the declared checksums (FORMAT.md
/// §5.2). `Some(error)` = `FILE_CHECKSUM_MISMATCH`.
fn verify_upload(
    inner: &Inner,
    org: &FeedOrg,
    job: &FeedJob,
    upload: &Path,
) -> Result<Option<mpay_messages::feeds::FeedFileError>, FeedError> {
    let io = |e: std::io::Error| FeedError::Io(e.to_string());
    let with_md5 = job
        .checksums
        .iter()
        .any(|c| c.algorithm == ChecksumAlgorithm::Md5);
    let f = std::fs::File::open(upload).map_err(io)?;
    let digests = digest(std::io::BufReader::with_capacity(256 * 1024, f), with_md5).map_err(io)?;
    let info = FeedFileInfo::new(&job.file_name, digests, &job.checksums);
    put_file_info(&inner.store, &org.fiscal_code, &job.flow_id, &info)?;
    let failed: Vec<(&ExpectedChecksum, Option<&str>)> = info
        .failed()
        .map(|c| (&c.expected, c.actual.as_deref()))
        .collect();
    if failed.is_empty() {
        return Ok(None);
    }
    tracing::warn!(feed = %job.flow_id, file = %job.file_name, "feed checksum mismatch");
    Ok(Some(mismatch_error(&failed)))
}

/// The blocking part of a load: extract (zip), build the options, run the core.
fn run_blocking(
    inner: &Inner,
    dir: &Path,
    job: &FeedJob,
    intent: Intent,
) -> Result<FeedLoadRecord, FeedError> {
    let org = inner
        .orgs
        .get(&job.organization)
        .ok_or(FeedError::NotFound)?;
    let io = |e: std::io::Error| FeedError::Io(e.to_string());
    let upload = dir.join(UPLOAD_FILE);
    let mut opts = LoadOptions::new(job.file_name.clone());
    opts.flow_id = Some(job.flow_id.clone());
    opts.require_standard_name = job.require_standard_name;
    opts.dry_run = job.dry_run;
    opts.resume = intent == Intent::Resume;
    opts.confirm_guard = intent == Intent::Confirm;
    if let Some(mode) = job.mode {
        opts.mode = mode;
    }
    let known = get_file_info(&inner.store, &org.fiscal_code, &job.flow_id)?.is_some();
    if intent == Intent::Fresh || !known {
        if let Some(e) = verify_upload(inner, org, job, &upload)? {
            return reject_file(&inner.store, &org.fiscal_code, &job.flow_id, &opts, e);
        }
    }
    let source = if is_zip(&upload) {
        let csv = dir.join(CSV_FILE);
        let part = dir.join(format!("{CSV_FILE}.part"));
        let f = std::fs::File::open(&upload).map_err(io)?;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&part).map_err(io)?);
        match extract_zip(std::io::BufReader::new(f), &mut out, inner.zip_limits) {
            Ok(contents) => {
                out.flush().map_err(io)?;
                drop(out);
                std::fs::rename(&part, &csv).map_err(io)?;
                if let Some(m) = &contents.manifest {
                    opts = opts.with_manifest(m);
                    opts.dry_run = opts.dry_run || job.dry_run;
                }
            }
            Err(e) => {
                drop(out);
                let _ = std::fs::remove_file(&part);
                if let Some(mode) = job.mode {
                    opts.mode = mode;
                }
                return reject_file(&inner.store, &org.fiscal_code, &job.flow_id, &opts, e);
            }
        }
        FileSource(csv)
    } else {
        FileSource(upload)
    };
    if let Some(mode) = job.mode {
        opts.mode = mode;
    }
    let id = format!("{}/{}", job.organization, job.flow_id);
    let registry = inner.registry.clone();
    let stopping = &inner.stopping;
    let src: &dyn FeedSource = &source;
    let out = load_feed(&inner.store, org, src, &opts, &mut |p: &FeedProgress| {
        registry.heartbeat(KIND, &id, p.rows_total.saturating_sub(p.rows_read));
        if stopping.load(Ordering::SeqCst) {
            ProgressControl::Stop
        } else {
            ProgressControl::Continue
        }
    })?;
    Ok(out.record)
}

/// One load (one actor per upload). Started by [`FeedLauncher`]; never start it directly.
pub struct FeedLoader {
    launcher: FeedLauncher,
    job: FeedJob,
    intent: Intent,
    attempts: u32,
    id: String,
}

impl FeedLoader {
    fn new(launcher: FeedLauncher, job: FeedJob, intent: Intent) -> Self {
        let id = format!("{}/{}", job.organization, job.flow_id);
        launcher.inner.registry.register(KIND, &id, false);
        FeedLoader {
            launcher,
            job,
            intent,
            attempts: 0,
            id,
        }
    }

    fn run(&mut self, ctx: &mut Context<Self>) {
        self.attempts += 1;
        let inner = self.launcher.inner.clone();
        let job = self.job.clone();
        let intent = self.intent;
        let dir = self
            .launcher
            .job_dir(&self.job.organization, &self.job.flow_id);
        let work = tokio::task::spawn_blocking(move || run_blocking(&inner, &dir, &job, intent));
        ctx.spawn(actix::fut::wrap_future::<_, Self>(work).map(
            |res, act: &mut Self, ctx: &mut Context<Self>| {
                let res = match res {
                    Ok(r) => r,
                    Err(e) => Err(FeedError::Io(format!("load thread failed: {e}"))),
                };
                act.finished(res, ctx);
            },
        ));
    }

    fn finished(&mut self, res: Result<FeedLoadRecord, FeedError>, ctx: &mut Context<Self>) {
        let registry = &self.launcher.inner.registry;
        match res {
            Ok(rec) if rec.status == FeedStatus::Running => {
                // stopped for shutdown: stays RUNNING, resumed at the next start
                tracing::info!(feed = %self.id, row = rec.last_committed_row, "feed load paused for shutdown");
                self.launcher.finish(&self.id);
                ctx.stop();
            }
            Ok(rec) => {
                tracing::info!(feed = %self.id, status = ?rec.status, loaded = rec.rows_loaded, rejected = rec.rows_rejected, "feed load ended");
                self.complete(rec.status, ctx);
            }
            Err(e @ (FeedError::Duplicate { .. } | FeedError::NotResumable(_))) => {
                tracing::warn!(feed = %self.id, error = %e, "feed load refused");
                self.launcher.finish(&self.id);
                ctx.stop();
            }
            Err(e) => {
                registry.error(KIND, &self.id, &e.to_string());
                if self.attempts < MAX_ATTEMPTS
                    && !self.launcher.inner.stopping.load(Ordering::SeqCst)
                {
                    tracing::warn!(feed = %self.id, attempt = self.attempts, error = %e, "feed load failed; resuming");
                    if self.intent == Intent::Fresh {
                        self.intent = Intent::Resume;
                    }
                    ctx.run_later(Duration::from_millis(200), |act, ctx| act.run(ctx));
                    return;
                }
                tracing::error!(feed = %self.id, error = %e, "feed load failed for good");
                let status = match OrgFiscalCode::parse_unchecked(&self.job.organization) {
                    Ok(fc) => mark_failed(
                        &self.launcher.inner.store,
                        &fc,
                        &self.job.flow_id,
                        &e.to_string(),
                    )
                    .map(|r| r.status)
                    .unwrap_or(FeedStatus::Failed),
                    Err(_) => FeedStatus::Failed,
                };
                self.complete(status, ctx);
            }
        }
    }

    /// Durable commit, outputs, unregistration.
    fn complete(&mut self, status: FeedStatus, ctx: &mut Context<Self>) {
        let inner = self.launcher.inner.clone();
        let job = self.job.clone();
        let dir = self
            .launcher
            .job_dir(&self.job.organization, &self.job.flow_id);
        let durability = inner.store.durability.clone();
        let work = async move {
            if let Err(e) = durability.commit(DurabilityPoint::BulkLoad).await {
                tracing::error!(error = %e, "bulk load commit failed");
            }
            let _ = tokio::task::spawn_blocking(move || {
                // the spool folder stays: its upload feeds the compatibility copies and
                // `result.zip` (and a held FULL load needs it for the confirmation)
                if let Ok(fc) = OrgFiscalCode::parse_unchecked(&job.organization) {
                    match write_outputs(&inner.store, &fc, &job, &dir) {
                        Ok(()) => {
                            tracing::debug!(feed = %job.flow_id, ?status, "feed outputs written")
                        }
                        Err(e) => tracing::error!(error = %e, "cannot write the feed outputs"),
                    }
                }
            })
            .await;
        };
        ctx.spawn(actix::fut::wrap_future::<_, Self>(work).map(
            |_, act: &mut Self, ctx: &mut Context<Self>| {
                act.launcher.finish(&act.id);
                ctx.stop();
            },
        ));
    }
}

impl Actor for FeedLoader {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.launcher.inner.registry.heartbeat(KIND, &self.id, 0);
        self.run(ctx);
    }
}

impl Supervised for FeedLoader {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.launcher.inner.registry.restarted(KIND, &self.id);
        if self.intent == Intent::Fresh {
            self.intent = Intent::Resume;
        }
    }
}
