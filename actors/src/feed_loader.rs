//! `FeedLoader`: one supervised actor per bulk feed load (FORMAT.md §5; DESIGN §5), and
//! [`FeedLauncher`], which starts them for the REST upload, the FTP server, the drop folder and
//! the node start-up.
//!
//! The work itself is the one pipeline of [`mpay_feeds::FeedService`] (the CLI runs the same one
//! in its own thread): the launcher accepts the upload into the spool
//! ([`FeedService::accept`]), the actor runs [`FeedService::run`] on a blocking thread, reports
//! progress to the [`HealthRegistry`] (kind `FeedLoader`, id = feed id, not required, backlog =
//! rows remaining), commits with [`DurabilityPoint::BulkLoad`], writes the outputs
//! ([`FeedService::write_outputs`]) and unregisters. Failures of the blocking work (I/O,
//! storage, a panic) are retried with `resume` up to [`MAX_ATTEMPTS`] times, then the load is
//! marked FAILED with the reason.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use mpay_feeds::FeedService;
use mpay_messages::OrgFiscalCode;
use mpay_storage::feeds::{
    get_feed, interrupted_feeds, FeedError, FeedLoadRecord, FeedOrg, FeedProgress, FeedStatus,
    ProgressControl,
};
use mpay_storage::{DurabilityPoint, Store};

use crate::health::HealthRegistry;

pub use mpay_feeds::{flow_id_for, output_basename, FeedJob, Intent, SubmitError};

/// Health registry kind of feed loaders.
pub const KIND: &str = "FeedLoader";
/// Attempts of one load before it is marked failed.
pub const MAX_ATTEMPTS: u32 = 3;

struct Inner {
    service: FeedService,
    registry: HealthRegistry,
    arbiter: ArbiterHandle,
    active: Mutex<HashMap<String, Option<Addr<FeedLoader>>>>,
    stopping: AtomicBool,
    bus: std::sync::OnceLock<Arc<dyn crate::bus::Bus>>,
}

/// Starts, resumes and confirms loads in actors; shared by the asynchronous transports. Cheap
/// to clone.
#[derive(Clone)]
pub struct FeedLauncher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FeedLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedLauncher")
            .field("service", &self.inner.service)
            .finish()
    }
}

impl FeedLauncher {
    /// A launcher over `service`, starting its actors on the current actix arbiter (call inside
    /// an actix `System`).
    pub fn new(service: FeedService, registry: HealthRegistry) -> Self {
        FeedLauncher {
            inner: Arc::new(Inner {
                service,
                registry,
                arbiter: Arbiter::current(),
                active: Mutex::new(HashMap::new()),
                stopping: AtomicBool::new(false),
                bus: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Publishes `FeedLoaded` on `bus` when a load ends (set once, before loads start).
    pub fn set_bus(&self, bus: Arc<dyn crate::bus::Bus>) {
        let _ = self.inner.bus.set(bus);
    }

    /// The feed service.
    pub fn service(&self) -> &FeedService {
        &self.inner.service
    }

    /// The store.
    pub fn store(&self) -> &Store {
        self.inner.service.store()
    }

    /// The feed configuration of an organization.
    pub fn organization(&self, fiscal_code: &str) -> Option<&FeedOrg> {
        self.inner.service.organization(fiscal_code)
    }

    /// A fresh file for an upload being received (in the spool's `tmp/`, so that
    /// [`FeedLauncher::submit`] can move it).
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn temp_upload_path(&self) -> std::io::Result<PathBuf> {
        self.inner.service.spool().temp_upload()
    }

    fn lock_active(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<Addr<FeedLoader>>>> {
        self.inner.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The CSV of a load kept in the spool.
    pub fn stored_csv(&self, org: &str, flow_id: &str) -> Option<PathBuf> {
        self.inner.service.stored_csv(org, flow_id)
    }

    /// Writes `<basename>-RESULT.zip` of a load (see [`FeedService::write_result_zip`]).
    ///
    /// # Errors
    /// [`FeedError::NotFound`] (no such load), storage and I/O errors.
    pub fn write_result_zip<W: std::io::Write>(
        &self,
        org: &OrgFiscalCode,
        flow_id: &str,
        out: W,
    ) -> Result<(W, Vec<String>), FeedError> {
        self.inner.service.write_result_zip(org, flow_id, out)
    }

    /// Is a load of this flow running in this process?
    pub fn is_active(&self, org: &str, flow_id: &str) -> bool {
        self.lock_active().contains_key(&format!("{org}/{flow_id}"))
    }

    /// Number of loads running in this process.
    pub fn active_count(&self) -> usize {
        self.lock_active().len()
    }

    /// Accepts a load ([`FeedService::accept`]: the flow id is new, the upload moves into the
    /// spool) and starts a [`FeedLoader`]. Returns the feed id (`<org>/<flowId>`). Blocking
    /// (file system and store): call from a blocking context.
    ///
    /// # Errors
    /// [`SubmitError::UnknownOrganization`], [`FeedError::Duplicate`] (as
    /// [`SubmitError::Feed`]) when the flow id is loaded or loading, [`SubmitError::Io`].
    pub fn submit(&self, job: FeedJob, upload: &Path) -> Result<String, SubmitError> {
        let id = job.id();
        let mut active = self.lock_active();
        if active.contains_key(&id) {
            return Err(FeedError::Duplicate {
                flow_id: job.flow_id.clone(),
                status: FeedStatus::Running,
                file_name: job.file_name.clone(),
            }
            .into());
        }
        self.inner.service.accept(&job, upload, false)?;
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

    /// Rejects a FULL load held by `FULL_FEED_GUARD`: FAILED, nothing applied.
    ///
    /// # Errors
    /// As [`FeedLauncher::confirm`].
    pub fn reject(&self, org: &str, flow_id: &str) -> Result<FeedLoadRecord, SubmitError> {
        self.held_job(org, flow_id)?;
        let fc = OrgFiscalCode::parse_unchecked(org)
            .map_err(|_| SubmitError::UnknownOrganization(org.to_string()))?;
        Ok(self
            .inner
            .service
            .fail(&fc, flow_id, "caricamento FULL rifiutato dall'operatore")?)
    }

    fn held_job(&self, org: &str, flow_id: &str) -> Result<FeedJob, SubmitError> {
        let fc = OrgFiscalCode::parse_unchecked(org)
            .map_err(|_| SubmitError::UnknownOrganization(org.to_string()))?;
        let rec = get_feed(self.store(), &fc, flow_id)?.ok_or(FeedError::NotFound)?;
        if rec.status != FeedStatus::AwaitingConfirmation || self.is_active(org, flow_id) {
            return Err(FeedError::NotResumable(flow_id.to_string()).into());
        }
        self.inner
            .service
            .spool()
            .read_job(org, flow_id)
            .ok_or_else(|| FeedError::NotResumable(flow_id.to_string()).into())
    }

    /// At node start: every load left RUNNING is resumed (its spooled file is there and
    /// `resume` is true) or marked FAILED with the reason. Returns (feed id, resumed?).
    ///
    /// # Errors
    /// Storage errors listing the loads.
    pub fn resume_interrupted(&self, resume: bool) -> Result<Vec<(String, bool)>, FeedError> {
        let mut out = Vec::new();
        for r in interrupted_feeds(self.store())? {
            let org = r.organization.to_string();
            if self.is_active(&org, &r.flow_id) {
                continue;
            }
            let job = self
                .inner
                .service
                .spool()
                .read_job(&org, &r.flow_id)
                .filter(|_| self.organization(&org).is_some());
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
                    self.inner
                        .service
                        .fail(&r.organization, &r.flow_id, reason)?;
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
        let id = job.id();
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

/// The blocking part of a load: the service's pipeline, with progress to the registry and the
/// stop flag.
fn run_blocking(inner: &Inner, job: &FeedJob, intent: Intent) -> Result<FeedLoadRecord, FeedError> {
    let id = job.id();
    let registry = inner.registry.clone();
    let stopping = &inner.stopping;
    inner.service.run(job, intent, &mut |p: &FeedProgress| {
        registry.heartbeat(KIND, &id, p.rows_total.saturating_sub(p.rows_read));
        if stopping.load(Ordering::SeqCst) {
            ProgressControl::Stop
        } else {
            ProgressControl::Continue
        }
    })
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
        let id = job.id();
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
        let work = tokio::task::spawn_blocking(move || run_blocking(&inner, &job, intent));
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
                    Ok(fc) => mpay_storage::feeds::mark_failed(
                        self.launcher.store(),
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
        let durability = inner.service.store().durability.clone();
        let work = async move {
            match durability.commit(DurabilityPoint::BulkLoad).await {
                Err(e) => tracing::error!(error = %e, "bulk load commit failed"),
                Ok(()) => {
                    if let Some(bus) = inner.bus.get() {
                        bus.publish(crate::bus::Event::FeedLoaded {
                            organization: job.organization.clone(),
                            flow_id: job.flow_id.clone(),
                            state: serde_json::to_value(status)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_else(|| format!("{status:?}")),
                        });
                    }
                }
            }
            let _ = tokio::task::spawn_blocking(move || {
                // the spool folder stays: its upload feeds the compatibility copies and
                // `result.zip` (and a held FULL load needs it for the confirmation)
                match inner.service.write_outputs(&job) {
                    Ok(_) => tracing::debug!(feed = %job.flow_id, ?status, "feed outputs written"),
                    Err(e) => tracing::error!(error = %e, "cannot write the feed outputs"),
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
