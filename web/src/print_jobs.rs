//! The print jobs of a node (mass printing of notices, `…/notices/print-jobs`): their state,
//! kept in memory while the node runs; the REST endpoints are in `api/documents.rs`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The state of a print job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrintJobModel {
    /// Job id.
    pub job_id: String,
    /// QUEUED, RUNNING, DONE or FAILED.
    pub status: String,
    /// Positions selected.
    pub total: usize,
    /// Positions rendered.
    pub done: usize,
    /// Positions that could not be rendered (named in `errors`).
    pub failed: usize,
    /// Up to 100 `iupd: reason` lines.
    pub errors: Vec<String>,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// Where the result is, once DONE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) org: String,
    pub(crate) model: PrintJobModel,
    pub(crate) path: PathBuf,
}

/// The print jobs of this node: kept in memory while it runs (a restart forgets the jobs; their
/// finished zips stay under `<data_dir>/documents/print-jobs/`).
#[derive(Debug, Clone)]
pub struct PrintJobs {
    pub(crate) dir: PathBuf,
    pub(crate) jobs: Arc<Mutex<HashMap<String, Job>>>,
    pub(crate) idempotency: Arc<Mutex<HashMap<(String, String), String>>>,
}

impl PrintJobs {
    /// Jobs writing their results under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        PrintJobs {
            dir,
            jobs: Arc::default(),
            idempotency: Arc::default(),
        }
    }

    pub(crate) fn get(&self, org: &str, id: &str) -> Option<(PrintJobModel, PathBuf)> {
        let jobs = self.jobs.lock().ok()?;
        jobs.get(id)
            .filter(|j| j.org == org)
            .map(|j| (j.model.clone(), j.path.clone()))
    }

    pub(crate) fn update(&self, id: &str, f: impl FnOnce(&mut PrintJobModel)) {
        if let Ok(mut jobs) = self.jobs.lock() {
            if let Some(j) = jobs.get_mut(id) {
                f(&mut j.model);
            }
        }
    }
}
