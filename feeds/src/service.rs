//! [`FeedService`]: the one entry point of a feed, whatever the transport. The CLI calls
//! [`FeedService::submit`] (accept + run + outputs, blocking); the `FeedLoader` actor (behind
//! the REST upload, the FTP server and the drop folder) calls [`FeedService::accept`], then
//! [`FeedService::run`] on a blocking thread and [`FeedService::write_outputs`] at the end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mpay_messages::feeds::ZipLimits;
use mpay_messages::OrgFiscalCode;
use mpay_storage::feeds::{
    get_feed, mark_failed, FeedError, FeedLoadRecord, FeedOrg, FeedProgress, FeedSource,
    FeedStatus, FileSource, ProgressControl,
};
use mpay_storage::Store;

use crate::spool::{FeedJob, Intent, Spool};

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

struct Inner {
    store: Store,
    orgs: HashMap<String, FeedOrg>,
    spool: Spool,
    zip_limits: ZipLimits,
}

/// The feed capability of a node: spool, pipeline, outputs. Cheap to clone.
#[derive(Clone)]
pub struct FeedService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FeedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedService")
            .field("spool", &self.inner.spool)
            .field("organizations", &self.inner.orgs.len())
            .finish()
    }
}

impl FeedService {
    /// A service spooling into `spool` (created if missing).
    ///
    /// # Errors
    /// The spool folder cannot be created.
    pub fn new(
        store: Store,
        orgs: HashMap<String, FeedOrg>,
        spool: PathBuf,
        zip_limits: ZipLimits,
    ) -> std::io::Result<Self> {
        Ok(FeedService {
            inner: Arc::new(Inner {
                store,
                orgs,
                spool: Spool::new(spool)?,
                zip_limits,
            }),
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The spool.
    pub fn spool(&self) -> &Spool {
        &self.inner.spool
    }

    /// The feed configuration of an organization.
    pub fn organization(&self, fiscal_code: &str) -> Option<&FeedOrg> {
        self.inner.orgs.get(fiscal_code)
    }

    fn org(&self, fiscal_code: &str) -> Result<&FeedOrg, SubmitError> {
        self.organization(fiscal_code)
            .ok_or_else(|| SubmitError::UnknownOrganization(fiscal_code.to_string()))
    }

    /// Accepts a new load: the organization is configured, the flow id is new (FORMAT.md §5.2:
    /// a FAILED load with nothing applied may be replaced), and the upload goes into the spool
    /// with its `job.json` (moved; `keep_source` = linked or copied). Blocking.
    ///
    /// # Errors
    /// [`SubmitError::UnknownOrganization`], [`FeedError::Duplicate`] (as
    /// [`SubmitError::Feed`]), [`SubmitError::Io`].
    pub fn accept(
        &self,
        job: &FeedJob,
        upload: &Path,
        keep_source: bool,
    ) -> Result<(), SubmitError> {
        let org = self.org(&job.organization)?;
        if let Some(r) = get_feed(&self.inner.store, &org.fiscal_code, &job.flow_id)? {
            if !(r.status == FeedStatus::Failed && r.groups_committed == 0) {
                return Err(FeedError::Duplicate {
                    flow_id: job.flow_id.clone(),
                    status: r.status,
                    file_name: r.file_name,
                }
                .into());
            }
        }
        self.inner
            .spool
            .put(job, upload, keep_source)
            .map_err(|e| SubmitError::Io(e.to_string()))
    }

    /// Runs the pipeline of a spooled job ([`crate::pipeline::run`]). Blocking.
    ///
    /// # Errors
    /// As [`crate::pipeline::run`]; [`FeedError::NotFound`] for an unknown organization.
    pub fn run(
        &self,
        job: &FeedJob,
        intent: Intent,
        progress: &mut dyn FnMut(&FeedProgress) -> ProgressControl,
    ) -> Result<FeedLoadRecord, FeedError> {
        let org = self
            .inner
            .orgs
            .get(&job.organization)
            .ok_or(FeedError::NotFound)?;
        let dir = self.inner.spool.job_dir(&job.organization, &job.flow_id);
        crate::pipeline::run(
            &self.inner.store,
            org,
            self.inner.zip_limits,
            &dir,
            job,
            intent,
            progress,
        )
    }

    /// Writes the outputs of a job into its `out_dir` ([`crate::outputs::write_outputs`]).
    ///
    /// # Errors
    /// File-system and storage errors.
    pub fn write_outputs(&self, job: &FeedJob) -> std::io::Result<Vec<PathBuf>> {
        let org = OrgFiscalCode::parse_unchecked(&job.organization)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let csv = self.stored_csv(&job.organization, &job.flow_id);
        crate::outputs::write_outputs(&self.inner.store, &org, job, csv)
    }

    /// A whole load in the calling thread (the CLI): [`FeedService::accept`] (the file stays
    /// where it is), [`FeedService::run`], a flush, the outputs. With `intent` Resume / Confirm
    /// the spooled job is used (the file is spooled again only when the spool lost it).
    ///
    /// # Errors
    /// As [`FeedService::accept`] and [`FeedService::run`].
    pub fn submit(
        &self,
        job: &FeedJob,
        file: &Path,
        intent: Intent,
        progress: &mut dyn FnMut(&FeedProgress) -> ProgressControl,
    ) -> Result<(FeedLoadRecord, Vec<PathBuf>), SubmitError> {
        let job = match intent {
            Intent::Fresh => {
                self.accept(job, file, true)?;
                job.clone()
            }
            Intent::Resume | Intent::Confirm => {
                match self.inner.spool.read_job(&job.organization, &job.flow_id) {
                    Some(mut spooled) => {
                        spooled.out_dir = job.out_dir.clone().or(spooled.out_dir);
                        spooled.report_name = job.report_name.clone().or(spooled.report_name);
                        spooled
                    }
                    None => {
                        self.org(&job.organization)?;
                        self.inner
                            .spool
                            .put(job, file, true)
                            .map_err(|e| SubmitError::Io(e.to_string()))?;
                        job.clone()
                    }
                }
            }
        };
        let rec = match self.ended(&job, intent)? {
            // the load had ended when the process stopped (killed while writing its reports):
            // resuming writes the reports again, nothing is loaded twice
            Some(ended) => ended,
            None => self.run(&job, intent, progress)?,
        };
        self.inner.store.flush_blocking().map_err(FeedError::from)?;
        let written = self
            .write_outputs(&job)
            .map_err(|e| SubmitError::Io(e.to_string()))?;
        Ok((rec, written))
    }

    /// The record of `job`'s load when a resume finds it ended (DONE or FAILED).
    fn ended(&self, job: &FeedJob, intent: Intent) -> Result<Option<FeedLoadRecord>, FeedError> {
        if !matches!(intent, Intent::Resume) {
            return Ok(None);
        }
        let Ok(org) = OrgFiscalCode::parse(&job.organization) else {
            return Ok(None);
        };
        Ok(get_feed(&self.inner.store, &org, &job.flow_id)?
            .filter(|r| matches!(r.status, FeedStatus::Done | FeedStatus::Failed)))
    }

    /// Marks a load FAILED with `reason` and writes its outputs (when its job is spooled).
    ///
    /// # Errors
    /// As `mpay_storage::feeds::mark_failed`.
    pub fn fail(
        &self,
        org: &OrgFiscalCode,
        flow_id: &str,
        reason: &str,
    ) -> Result<FeedLoadRecord, FeedError> {
        let rec = mark_failed(&self.inner.store, org, flow_id, reason)?;
        if let Some(job) = self.inner.spool.read_job(org.as_str(), flow_id) {
            if let Err(e) = self.write_outputs(&job) {
                tracing::error!(error = %e, "cannot write the feed outputs");
            }
        }
        Ok(rec)
    }

    /// The CSV of a load kept in the spool (see [`Spool::stored_csv`]).
    pub fn stored_csv(&self, org: &str, flow_id: &str) -> Option<PathBuf> {
        self.inner.spool.stored_csv(org, flow_id)
    }

    /// Writes `<basename>-RESULT.zip` of a load (FORMAT.md §5.7) to `out`, streaming; the
    /// copies are read from the stored upload. Blocking. Returns the output and the entry names.
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
        mpay_storage::feeds_output::write_result_zip(
            &self.inner.store,
            org,
            flow_id,
            &rec.file_name,
            csv.as_ref().map(|c| c as &dyn FeedSource),
            out,
        )
    }
}
