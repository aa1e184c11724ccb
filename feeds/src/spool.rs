//! The spool: where an upload waits, loads and stays (`<data_dir>/feeds/<org>/<flowId>/`):
//! `upload` (the file as received), `job.json` ([`FeedJob`]), `feed.csv` (the CSV extracted
//! from a zip). Partial files are `tempfile`s in the same folder, renamed into place when
//! complete, so a crash never leaves a half-written file under a final name.

use std::path::{Path, PathBuf};

use mpay_messages::feeds::checksum::ExpectedChecksum;
use mpay_messages::feeds::{FeedFileName, FeedMode};
use serde::{Deserialize, Serialize};

pub(crate) const JOB_FILE: &str = "job.json";
pub(crate) const UPLOAD_FILE: &str = "upload";
pub(crate) const CSV_FILE: &str = "feed.csv";

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
    /// and `<basename>-RESULT.zip` are written at the end (FTP `out/`, drop folder `out/`, the
    /// CLI: next to the file); `None` = only through the API.
    pub out_dir: Option<PathBuf>,
    /// Checksums the Ente declared for the upload (sidecars, HTTP `checksum` parameter),
    /// verified before the load (FORMAT.md §5.2).
    #[serde(default)]
    pub checksums: Vec<ExpectedChecksum>,
    /// Name of the outcome report in `out_dir` instead of `<basename>-ESITO.csv` (CLI
    /// `--report`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_name: Option<String>,
}

impl FeedJob {
    /// A DELTA job of `organization` for `file_name`, flow id from the name, no outputs.
    pub fn new(organization: impl Into<String>, file_name: impl Into<String>) -> Self {
        let file_name = file_name.into();
        FeedJob {
            organization: organization.into(),
            flow_id: flow_id_for(&file_name),
            file_name,
            mode: None,
            require_standard_name: false,
            dry_run: false,
            out_dir: None,
            checksums: Vec::new(),
            report_name: None,
        }
    }

    /// `<org>/<flowId>`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.organization, self.flow_id)
    }
}

/// How a load starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// A new load.
    Fresh,
    /// Resume a RUNNING load from its last committed group.
    Resume,
    /// Apply a FULL load held by `FULL_FEED_GUARD` (operator confirmation).
    Confirm,
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

/// The spool folder.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    /// A spool in `root` (created with its `tmp/` if missing).
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn new(root: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(Spool { root })
    }

    /// The folder of one load.
    pub fn job_dir(&self, org: &str, flow_id: &str) -> PathBuf {
        self.root
            .join(encode_component(org))
            .join(encode_component(flow_id))
    }

    /// A fresh, empty file for an upload being received (same file system as the spool, so that
    /// it can be moved in). The caller owns it; it is not removed automatically.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn temp_upload(&self) -> std::io::Result<PathBuf> {
        let t = tempfile::Builder::new()
            .prefix("upload-")
            .suffix(".part")
            .tempfile_in(self.root.join("tmp"))?;
        t.into_temp_path().keep().map_err(|e| e.error)
    }

    /// Puts `upload` into a fresh job folder with its `job.json`: moved, or (`keep_source`, the
    /// CLI's file stays where it is) hard-linked or copied.
    ///
    /// # Errors
    /// File-system errors.
    pub fn put(&self, job: &FeedJob, upload: &Path, keep_source: bool) -> std::io::Result<()> {
        let dir = self.job_dir(&job.organization, &job.flow_id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        let target = dir.join(UPLOAD_FILE);
        if keep_source {
            if std::fs::hard_link(upload, &target).is_err() {
                let tmp = tempfile::NamedTempFile::new_in(&dir)?;
                std::fs::copy(upload, tmp.path())?;
                tmp.persist(&target).map_err(|e| e.error)?;
            }
        } else if std::fs::rename(upload, &target).is_err() {
            std::fs::copy(upload, &target)?;
            let _ = std::fs::remove_file(upload);
        }
        self.write_job(job)
    }

    /// Writes `job.json` (through a temporary file).
    ///
    /// # Errors
    /// File-system errors.
    pub fn write_job(&self, job: &FeedJob) -> std::io::Result<()> {
        let dir = self.job_dir(&job.organization, &job.flow_id);
        let json = serde_json::to_vec_pretty(job).map_err(std::io::Error::other)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
        std::io::Write::write_all(&mut tmp, &json)?;
        tmp.persist(dir.join(JOB_FILE)).map_err(|e| e.error)?;
        Ok(())
    }

    /// The job of a spooled load, when its upload is still there.
    pub fn read_job(&self, org: &str, flow_id: &str) -> Option<FeedJob> {
        let dir = self.job_dir(org, flow_id);
        if !dir.join(UPLOAD_FILE).is_file() {
            return None;
        }
        let bytes = std::fs::read(dir.join(JOB_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The CSV kept for a load: the extracted CSV of a zip, else the upload when it is not a
    /// zip.
    pub fn stored_csv(&self, org: &str, flow_id: &str) -> Option<PathBuf> {
        let dir = self.job_dir(org, flow_id);
        let extracted = dir.join(CSV_FILE);
        if extracted.is_file() {
            return Some(extracted);
        }
        let upload = dir.join(UPLOAD_FILE);
        (upload.is_file() && !is_zip(&upload)).then_some(upload)
    }
}

/// Is this file a zip (local file header magic)?
pub(crate) fn is_zip(path: &Path) -> bool {
    use std::io::Read as _;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"PK\x03\x04"
}
