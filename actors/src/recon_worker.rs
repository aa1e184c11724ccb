//! `ReconciliationWorker` (issue 14): keeps every served organization's reconciliation current.
//!
//! - **Acquiring**: every `[fdr] sync_interval_secs` (and on demand, `POST …/fdrs/sync` through
//!   [`ReconWorker::sync`]) it downloads each organization's new flows from the FdR API
//!   ([`crate::fdr_sync::FdrApi`]); for every revision stored it queues the revocations the
//!   flow announces to the Ente, flushes, and publishes `fdr.acquired`. Syncs never overlap (one
//!   at a time per node); one organization's failure never stops the others.
//! - **Reconciling**: it does not poll the store for changes. It hears the bus (`fdr.acquired`:
//!   a new flow or a higher revision — the run always uses the latest; `fdr.statement_imported`: a
//!   statement's new credits) and re-runs the organizations concerned, once per burst:
//!   `storage::recon_state::advance` (incremental; it calls `mark_reported`, the domain's
//!   `report_transfer`: options reach `PO_REPORTED` / `PO_PARTIALLY_REPORTED`), the receipts
//!   past their D+2 deadline (`domain::reporting`), the run's summary stored (`recon_runs`,
//!   what `GET …/reconciliation` shows as `lastRun`), flushed, then `fdr.reconciled` published.
//! - Metrics: `mpay_recon_runs_total`, `mpay_recon_unmatched_rows`,
//!   `mpay_recon_unreported_receipts` (after D+2), `mpay_recon_unexplained_credits`,
//!   `mpay_recon_options_reported_total` (per organization); the sync counts
//!   `mpay_fdr_flows_acquired_total`.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use mpay_storage::reconciliation::{self as recon, ReconRun};
use mpay_storage::{DurabilityPoint, Store};

use crate::bus::{Bus, Delivery, Event};
use crate::fdr_sync::{FdrApi, SyncError, SyncReport};
use crate::health::{ActorState, HealthRegistry};
use crate::watchdog::{ActorHandle, Watchdog};

/// Actor kind in `/health/actors`.
pub const KIND: &str = "ReconciliationWorker";

/// What the worker needs.
#[derive(Debug, Clone)]
pub struct ReconSettings {
    /// The FdR API (`None`: flows come from files only; reconciliation still runs on events).
    pub api: Option<FdrApi>,
    /// How often every organization is synced (`[fdr] sync_interval_secs`); zero = never on a
    /// schedule (on demand only).
    pub sync_interval: Duration,
    /// The organizations served.
    pub organizations: Vec<String>,
}

/// Reconcile these organizations (a wake-up; bursts are merged).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Reconcile {
    /// Organization.
    pub organization: String,
    /// Why (`fdr.acquired`, `fdr.statement_imported`, `start`, …).
    pub reason: String,
}

/// The scheduled sync.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
struct SyncAll;

/// The actor.
pub struct ReconciliationWorker {
    inner: Arc<Inner>,
    dirty: BTreeMap<String, String>,
    running: bool,
}

struct Inner {
    store: Store,
    settings: ReconSettings,
    health: HealthRegistry,
    bus: OnceLock<Arc<dyn Bus>>,
    /// One sync at a time (scheduled and on demand).
    syncing: tokio::sync::Mutex<()>,
    /// The actor, to be told directly when no bus listens.
    me: OnceLock<ActorHandle<ReconciliationWorker>>,
}

impl Actor for ReconciliationWorker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        let h = &self.inner.health;
        h.register(KIND, "main", false);
        h.set_state(KIND, "main", ActorState::Running);
        h.heartbeat(KIND, "main", 0);
        ctx.run_interval(Duration::from_secs(5), |this, _| {
            this.inner
                .health
                .heartbeat(KIND, "main", this.dirty.len() as u64);
        });
        let every = self.inner.settings.sync_interval;
        if self.inner.settings.api.is_some() && !every.is_zero() {
            ctx.run_interval(every, |_, ctx| ctx.notify(SyncAll));
        }
        // no run at start: a run is caused by a flow or a statement (over NATS, a durable
        // consumer hands out what was published while the node was away); a restored store
        // stays byte-identical to its backup
    }
}

impl Supervised for ReconciliationWorker {}

impl Handler<Reconcile> for ReconciliationWorker {
    type Result = ();

    fn handle(&mut self, msg: Reconcile, ctx: &mut Self::Context) {
        // a burst runs once, recorded with its latest reason
        self.dirty.insert(msg.organization, msg.reason);
        if !self.running {
            self.next_pass(ctx);
        }
    }
}

impl Handler<SyncAll> for ReconciliationWorker {
    type Result = ();

    fn handle(&mut self, _: SyncAll, ctx: &mut Self::Context) {
        let inner = self.inner.clone();
        ctx.spawn(
            async move {
                for org in inner.settings.organizations.clone() {
                    if let Err(e) = inner.sync_org(&org).await {
                        tracing::warn!(organization = %org, error = %e, "scheduled FdR sync failed; again at the next one");
                        inner.health.error(KIND, "main", &e.to_string());
                    }
                }
            }
            .into_actor(self),
        );
    }
}

impl ReconciliationWorker {
    /// Runs the dirty organizations one after the other, then looks again.
    fn next_pass(&mut self, ctx: &mut Context<Self>) {
        let Some(org) = self.dirty.keys().next().cloned() else {
            self.running = false;
            return;
        };
        let reason = self.dirty.remove(&org).unwrap_or_default();
        self.running = true;
        let inner = self.inner.clone();
        ctx.spawn(
            async move { inner.reconcile(&org, &reason).await }
                .into_actor(self)
                .map(|_, act, ctx| act.next_pass(ctx)),
        );
    }
}

impl Inner {
    fn publish(&self, event: Event) {
        if let Some(bus) = self.bus.get() {
            bus.publish(event);
        }
    }

    /// Syncs `org` from the FdR API; each revision stored: its revocations queued, flushed,
    /// `fdr.acquired` published (or, without a bus, the organization reconciled directly).
    async fn sync_org(&self, org: &str) -> Result<SyncReport, SyncError> {
        let Some(api) = &self.settings.api else {
            return Ok(SyncReport::default());
        };
        let _one = self.syncing.lock().await;
        let report = api.sync(&self.store, org).await?;
        if report.acquired.is_empty() {
            return Ok(report);
        }
        let (o, ids) = (org.to_string(), report.acquired.clone());
        let queued = self
            .store
            .blocking(move |s| {
                let mut queued = 0;
                for id in &ids {
                    if let Some(stored) = s
                        .reconciliation
                        .revisions(&o, id)
                        .map_err(mpay_storage::LedgerError::Storage)?
                        .last()
                    {
                        queued += s
                            .ledger
                            .enqueue_flow_revocations(&o, &stored.flow, Utc::now())?
                            .len();
                    }
                }
                Ok::<_, mpay_storage::LedgerError>(queued)
            })
            .await
            .map_err(|e| SyncError::List(format!("revocations not queued: {e}")))?;
        self.store
            .durability
            .commit(DurabilityPoint::Reconciliation)
            .await
            .map_err(SyncError::Storage)?;
        if queued > 0 {
            tracing::info!(
                organization = org,
                revocations = queued,
                "revocations queued for the Ente"
            );
        }
        for id in &report.acquired {
            self.publish(Event::FdrAcquired {
                organization: org.to_string(),
                flow_id: id.clone(),
            });
        }
        if self.bus.get().is_none() {
            if let Some(me) = self.me.get() {
                let _ = me.addr().try_send(Reconcile {
                    organization: org.to_string(),
                    reason: "fdr.acquired".into(),
                });
            }
        }
        Ok(report)
    }

    /// One run for `org`.
    async fn reconcile(&self, org: &str, reason: &str) {
        let (o, why) = (org.to_string(), reason.to_string());
        let done = self
            .store
            .blocking(move |s| {
                let now = Utc::now();
                let storage = mpay_storage::LedgerError::Storage;
                // only what changed since the last run is matched; the positions of what a
                // flow reports are marked, its rows without a receipt queued for recovery; the
                // summary read under the same lock
                let (adv, run) = mpay_storage::recon_state::with_run(s, &o, now, |adv| {
                    let open = mpay_storage::recon_state::unreported_payments(s, &o)?;
                    let late = recon::unreported(&open, mpay_messages::time::rome_date(now)).len();
                    let run = mpay_storage::recon_state::summary(
                        s,
                        &o,
                        now,
                        &why,
                        adv.options_reported,
                        late,
                    )?;
                    Ok((adv.clone(), run))
                })
                .map_err(storage)?;
                tracing::debug!(organization = %o, work = ?adv.work, "reconciliation run");
                // a run that finds what the last one found is not written again (a restored
                // store stays byte-identical to its backup)
                let last = s
                    .reconciliation
                    .last_run(&o)
                    .map_err(mpay_storage::LedgerError::Storage)?;
                let same = last.is_some_and(|l| {
                    ReconRun {
                        at: run.at,
                        reason: run.reason.clone(),
                        ..l
                    } == run
                });
                if !same {
                    s.reconciliation
                        .record_run(&run)
                        .map_err(mpay_storage::LedgerError::Storage)?;
                }
                Ok::<_, mpay_storage::LedgerError>(run)
            })
            .await;
        let run = match done {
            Ok(run) => run,
            Err(e) => {
                tracing::warn!(organization = org, error = %e, "reconciliation run failed");
                self.health.error(KIND, "main", &e.to_string());
                return;
            }
        };
        if let Err(e) = self
            .store
            .durability
            .commit(DurabilityPoint::Reconciliation)
            .await
        {
            tracing::warn!(organization = org, error = %e, "reconciliation run not flushed");
            self.health.error(KIND, "main", &e.to_string());
            return;
        }
        let org_label = org.to_string();
        metrics::counter!("mpay_recon_runs_total").increment(1);
        metrics::counter!("mpay_recon_options_reported_total", "organization" => org_label.clone())
            .increment(run.options_reported as u64);
        metrics::gauge!("mpay_recon_unmatched_rows", "organization" => org_label.clone())
            .set(run.rows_without_receipt as f64);
        metrics::gauge!("mpay_recon_unreported_receipts", "organization" => org_label.clone())
            .set(run.unreported_after_deadline as f64);
        metrics::gauge!("mpay_recon_unexplained_credits", "organization" => org_label)
            .set(run.unexplained_credits as f64);
        tracing::info!(
            organization = org,
            reason,
            payments = run.payments,
            rows_without_receipt = run.rows_without_receipt,
            options_reported = run.options_reported,
            unreported = run.unreported_after_deadline,
            "reconciliation run"
        );
        self.publish(Event::ReconCompleted {
            organization: org.to_string(),
            payments: run.payments,
            rows_without_receipt: run.rows_without_receipt,
            unreported: run.unreported_after_deadline,
        });
    }
}

/// The worker of a node: started under the watchdog, woken by the bus. Cheap to clone.
#[derive(Clone)]
pub struct ReconWorker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ReconWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconWorker")
            .field("settings", &self.inner.settings)
            .finish()
    }
}

impl ReconWorker {
    /// Starts the worker under the watchdog (call before the watchdog starts).
    pub fn start(
        watchdog: &mut Watchdog,
        settings: ReconSettings,
        store: &Store,
        health: &HealthRegistry,
    ) -> Self {
        let inner = Arc::new(Inner {
            store: store.clone(),
            settings,
            health: health.clone(),
            bus: OnceLock::new(),
            syncing: tokio::sync::Mutex::new(()),
            me: OnceLock::new(),
        });
        let i = inner.clone();
        let handle = watchdog.watch(KIND, "main", move || {
            let inner = i.clone();
            Supervisor::start(move |_| ReconciliationWorker {
                inner,
                dirty: BTreeMap::new(),
                running: false,
            })
        });
        let _ = inner.me.set(handle);
        ReconWorker { inner }
    }

    /// Whether the FdR API is configured.
    pub fn can_sync(&self) -> bool {
        self.inner.settings.api.is_some()
    }

    /// Syncs `org` now (`POST …/fdrs/sync`): waits for a scheduled sync in progress, then
    /// downloads what is new; the flows stored are flushed and announced before it returns.
    ///
    /// # Errors
    /// [`SyncError`] when the API cannot be listed or the store fails.
    pub async fn sync(&self, org: &str) -> Result<SyncReport, SyncError> {
        self.inner.sync_org(org).await
    }

    /// Asks for a run of `org`.
    pub fn reconcile(&self, org: &str, reason: &str) {
        if let Some(me) = self.inner.me.get() {
            let _ = me.addr().try_send(Reconcile {
                organization: org.to_string(),
                reason: reason.to_string(),
            });
        }
    }

    /// Publishes on `bus` from now on and re-runs the organizations its `fdr.acquired` and
    /// `fdr.statement_imported` events name, until the bus closes.
    pub fn listen(&self, bus: Arc<dyn Bus>) {
        let _ = self.inner.bus.set(bus.clone());
        let this = self.clone();
        actix::spawn(async move {
            let durable = format!(
                "recon-worker-{}",
                crate::ente_connector::consumer_name(bus.node())
            );
            let filters = ["mpay.v1.fdr.acquired.>", "mpay.v1.fdr.statement_imported.>"];
            let mut consumer = loop {
                match bus.consume(&durable, &filters).await {
                    Ok(c) => break c,
                    Err(e) => {
                        tracing::warn!(error = %e, "bus consumer of the reconciliation worker not ready; again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            loop {
                match consumer.next().await {
                    Ok(Delivery::Job(job)) => {
                        match job.envelope() {
                            Ok(env) => {
                                this.reconcile(env.event.organization(), &env.kind);
                            }
                            Err(e) => tracing::warn!(error = %e, "unreadable event ignored"),
                        }
                        actix::spawn(async move {
                            if let Err(e) = job.ack().await {
                                tracing::debug!(error = %e, "event not acked (handed out again: harmless)");
                            }
                        });
                    }
                    Ok(Delivery::Lagged) => {
                        for org in &this.inner.settings.organizations {
                            this.reconcile(org, "lagged");
                        }
                    }
                    Ok(Delivery::Closed) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "bus consumer of the reconciliation worker failed; again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
}
