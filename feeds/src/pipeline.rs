//! The load pipeline of one spooled job, the same for every transport: integrity (our SHA-256,
//! the declared checksums), container (zip extracted with the configured limits), then the
//! store's parse → plan → write engine (`mpay_storage::feeds::load_feed`). A file-level failure
//! found here (checksum, zip) is recorded as a FAILED load with its code — nothing applied.

use std::io::Write as _;
use std::path::Path;

use mpay_messages::feeds::checksum::{digest, mismatch_error, ChecksumAlgorithm, ExpectedChecksum};
use mpay_messages::feeds::{extract_zip, FeedFileError, ZipLimits};
use mpay_storage::feeds::{
    load_feed, reject_file, FeedError, FeedLoadRecord, FeedOrg, FeedProgress, FileSource,
    LoadOptions, ProgressControl,
};
use mpay_storage::feeds_output::{get_file_info, put_file_info, FeedFileInfo};
use mpay_storage::Store;

use crate::spool::{is_zip, FeedJob, Intent, CSV_FILE, UPLOAD_FILE};

fn io(e: std::io::Error) -> FeedError {
    FeedError::Io(e.to_string())
}

/// Computes and stores the upload's digests and verifies the declared checksums (FORMAT.md
/// §5.2). `Some(error)` = `FILE_CHECKSUM_MISMATCH`.
fn verify_upload(
    store: &Store,
    org: &FeedOrg,
    job: &FeedJob,
    upload: &Path,
) -> Result<Option<FeedFileError>, FeedError> {
    let with_md5 = job
        .checksums
        .iter()
        .any(|c| c.algorithm == ChecksumAlgorithm::Md5);
    let f = std::fs::File::open(upload).map_err(io)?;
    let digests = digest(std::io::BufReader::with_capacity(256 * 1024, f), with_md5).map_err(io)?;
    let info = FeedFileInfo::new(&job.file_name, digests, &job.checksums);
    put_file_info(store, &org.fiscal_code, &job.flow_id, &info)?;
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

/// Runs the pipeline of the job spooled in `dir`. Blocking.
///
/// # Errors
/// As [`load_feed`]: duplicates, nothing to resume, I/O and storage failures (the load stays
/// RUNNING and can be resumed).
pub fn run(
    store: &Store,
    org: &FeedOrg,
    limits: ZipLimits,
    dir: &Path,
    job: &FeedJob,
    intent: Intent,
    progress: &mut dyn FnMut(&FeedProgress) -> ProgressControl,
) -> Result<FeedLoadRecord, FeedError> {
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
    let known = get_file_info(store, &org.fiscal_code, &job.flow_id)?.is_some();
    if intent == Intent::Fresh || !known {
        if let Some(e) = verify_upload(store, org, job, &upload)? {
            return reject_file(store, &org.fiscal_code, &job.flow_id, &opts, e);
        }
    }
    let source = if is_zip(&upload) {
        let f = std::fs::File::open(&upload).map_err(io)?;
        let part = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        let mut out = std::io::BufWriter::new(part);
        match extract_zip(std::io::BufReader::new(f), &mut out, limits) {
            Ok(contents) => {
                out.flush().map_err(io)?;
                let part = out.into_inner().map_err(|e| io(e.into_error()))?;
                part.persist(dir.join(CSV_FILE)).map_err(|e| io(e.error))?;
                if let Some(m) = &contents.manifest {
                    opts = opts.with_manifest(m);
                    opts.dry_run = opts.dry_run || job.dry_run;
                }
            }
            Err(e) => return reject_file(store, &org.fiscal_code, &job.flow_id, &opts, e),
        }
        if let Some(mode) = job.mode {
            opts.mode = mode;
        }
        FileSource(dir.join(CSV_FILE))
    } else {
        FileSource(upload)
    };
    Ok(load_feed(store, org, &source, &opts, progress)?.record)
}
