//! `Scheduler`: every tick, applies the ledger's due timers (PUBLISHED → VALID at the validity
//! date; VALID → EXPIRED after the last due day, Europe/Rome, for positions with
//! `switchToExpired`) and prunes the journal past its retention (hourly) and past its size
//! bound (`[journal] max_bytes`, checked every pass: one atomic read), oldest first. Metrics:
//! `mpay_journal_bytes`, `mpay_journal_pruned_total{reason}`.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use mpay_messages::position::PositionStatus;
use mpay_storage::{JournalStore, LedgerError, PositionRepository, TimerKind};

use crate::health::{ActorState, HealthRegistry};

const KIND: &str = "Scheduler";

/// Settings of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Time between passes.
    pub tick: Duration,
    /// Journal retention.
    pub journal_retention: chrono::Duration,
    /// Journal size bound, bytes (0 = by age only).
    pub journal_max_bytes: u64,
}

/// Runs one pass now; answers the number of positions changed.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Tick;

/// The scheduler actor (one per node).
pub struct Scheduler {
    ledger: Arc<dyn PositionRepository>,
    journal: Arc<dyn JournalStore>,
    registry: HealthRegistry,
    config: SchedulerConfig,
    running: bool,
    last_prune: Option<chrono::DateTime<Utc>>,
}

/// Outcome of one pass.
#[derive(Debug, Default)]
struct Pass {
    validated: u64,
    expired: u64,
    pruned: u64,
    errors: Vec<String>,
}

fn run_pass(
    ledger: &dyn PositionRepository,
    journal: &dyn JournalStore,
    retention: chrono::Duration,
    max_bytes: u64,
    prune: bool,
) -> Pass {
    let mut pass = Pass::default();
    let now = Utc::now();
    loop {
        let due = match ledger.due_timers(now, 1000) {
            Ok(d) => d,
            Err(e) => {
                pass.errors.push(e.to_string());
                break;
            }
        };
        let batch = due.len();
        for (kind, org, iupd) in due {
            // the domain decides (DebtPosition::apply_timers): the same rule the station
            // uses to answer PAA_PAGAMENTO_SCADUTO
            let result = ledger.modify(&org, &iupd, &mut |p| {
                p.apply_timers(now);
                Ok(())
            });
            match result {
                Ok(p) => match (kind, p.status) {
                    (TimerKind::Validate, PositionStatus::Valid) => pass.validated += 1,
                    (TimerKind::Expire, PositionStatus::Expired) => pass.expired += 1,
                    _ => {}
                },
                Err(LedgerError::NotFound) => {}
                Err(e) => pass.errors.push(format!("{org}/{iupd}: {e}")),
            }
        }
        if batch < 1000 || !pass.errors.is_empty() {
            break;
        }
    }
    if prune {
        match journal.prune(now - retention) {
            Ok(n) => {
                pass.pruned = n;
                metrics::counter!("mpay_journal_pruned_total", "reason" => "age").increment(n);
            }
            Err(e) => pass.errors.push(e.to_string()),
        }
    }
    if max_bytes > 0 && journal.size_bytes() > max_bytes {
        match journal.prune_to_size(max_bytes) {
            Ok(n) => {
                pass.pruned += n;
                metrics::counter!("mpay_journal_pruned_total", "reason" => "size").increment(n);
            }
            Err(e) => pass.errors.push(e.to_string()),
        }
    }
    metrics::gauge!("mpay_journal_bytes").set(journal.size_bytes() as f64);
    pass
}

impl Scheduler {
    /// A scheduler over the ledger and journal.
    pub fn new(
        ledger: Arc<dyn PositionRepository>,
        journal: Arc<dyn JournalStore>,
        registry: HealthRegistry,
        config: SchedulerConfig,
    ) -> Self {
        registry.register(KIND, "main", true);
        Scheduler {
            ledger,
            journal,
            registry,
            config,
            running: false,
            last_prune: None,
        }
    }

    fn pass(&mut self, ctx: &mut Context<Self>) {
        self.registry.heartbeat(KIND, "main", 0);
        if self.running {
            return;
        }
        self.running = true;
        let now = Utc::now();
        let prune = self
            .last_prune
            .is_none_or(|t| now - t > chrono::Duration::hours(1));
        if prune {
            self.last_prune = Some(now);
        }
        let ledger = self.ledger.clone();
        let journal = self.journal.clone();
        let retention = self.config.journal_retention;
        let max_bytes = self.config.journal_max_bytes;
        let work = tokio::task::spawn_blocking(move || {
            run_pass(
                ledger.as_ref(),
                journal.as_ref(),
                retention,
                max_bytes,
                prune,
            )
        });
        ctx.spawn(work.into_actor(self).map(|res, this, _| {
            this.running = false;
            match res {
                Ok(pass) => {
                    metrics::counter!("mpay_positions_validated_total").increment(pass.validated);
                    metrics::counter!("mpay_positions_expired_total").increment(pass.expired);
                    if pass.validated + pass.expired + pass.pruned > 0 {
                        tracing::info!(
                            validated = pass.validated,
                            expired = pass.expired,
                            journal_pruned = pass.pruned,
                            "scheduler pass"
                        );
                    }
                    if let Some(e) = pass.errors.first() {
                        this.registry.error(KIND, "main", e);
                    }
                }
                Err(e) => this.registry.error(KIND, "main", &e.to_string()),
            }
        }));
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.registry.heartbeat(KIND, "main", 0);
        self.pass(ctx);
        ctx.run_interval(self.config.tick, |this, ctx| this.pass(ctx));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.registry.set_state(KIND, "main", ActorState::Stopped);
    }
}

impl Supervised for Scheduler {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.running = false;
        self.registry.restarted(KIND, "main");
    }
}

impl Handler<Tick> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Self::Context) {
        self.pass(ctx);
    }
}
