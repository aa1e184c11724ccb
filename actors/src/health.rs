//! The health registry: one entry per long-lived actor (kind, id, state, restarts, mailbox
//! backlog, last error, last heartbeat). Shared by actors (writers) and HTTP handlers (readers).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Life state of an actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorState {
    /// Being started.
    Starting,
    /// Running and answering.
    Running,
    /// Found dead; the watchdog is restarting it.
    Restarting,
    /// Stopped (shutdown).
    Stopped,
}

/// One actor as reported at `/health/actors`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActorHealth {
    /// Actor kind (`JournalWriter`, `Scheduler`, ...).
    pub kind: String,
    /// Instance id (`main`, an organization fiscal code, a feed id, ...).
    pub id: String,
    /// State.
    pub state: ActorState,
    /// Does readiness depend on it?
    pub required: bool,
    /// Times the watchdog restarted it.
    pub restarts: u64,
    /// Work waiting (messages or buffered items).
    pub mailbox_backlog: u64,
    /// Last error seen, if any.
    pub last_error: Option<String>,
    /// Last sign of life (UTC).
    pub last_heartbeat: Option<DateTime<Utc>>,
}

/// Registry of actor health. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct HealthRegistry {
    inner: Arc<RwLock<BTreeMap<(String, String), ActorHealth>>>,
    store_unwritable: Arc<std::sync::atomic::AtomicBool>,
}

impl HealthRegistry {
    /// Empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<(String, String), ActorHealth>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers (or re-registers) an actor in state `Starting`.
    pub fn register(&self, kind: &str, id: &str, required: bool) {
        let mut map = self.write();
        let e = map
            .entry((kind.to_string(), id.to_string()))
            .or_insert_with(|| ActorHealth {
                kind: kind.to_string(),
                id: id.to_string(),
                state: ActorState::Starting,
                required,
                restarts: 0,
                mailbox_backlog: 0,
                last_error: None,
                last_heartbeat: None,
            });
        e.required = required;
        e.state = ActorState::Starting;
    }

    /// Removes an actor (e.g. a finished feed loader).
    pub fn unregister(&self, kind: &str, id: &str) {
        self.write().remove(&(kind.to_string(), id.to_string()));
    }

    fn update(&self, kind: &str, id: &str, f: impl FnOnce(&mut ActorHealth)) {
        if let Some(e) = self.write().get_mut(&(kind.to_string(), id.to_string())) {
            f(e);
        }
    }

    /// Marks a sign of life with the current backlog; state becomes `Running`.
    pub fn heartbeat(&self, kind: &str, id: &str, backlog: u64) {
        self.update(kind, id, |e| {
            e.state = ActorState::Running;
            e.mailbox_backlog = backlog;
            e.last_heartbeat = Some(Utc::now());
        });
    }

    /// Records an error (the actor keeps running).
    pub fn error(&self, kind: &str, id: &str, error: &str) {
        self.update(kind, id, |e| e.last_error = Some(error.to_string()));
        metrics::counter!("mpay_actor_errors_total", "kind" => kind.to_string()).increment(1);
    }

    /// Sets the state.
    pub fn set_state(&self, kind: &str, id: &str, state: ActorState) {
        self.update(kind, id, |e| e.state = state);
    }

    /// Counts a restart (state `Restarting`, error noted).
    pub fn restarted(&self, kind: &str, id: &str) {
        self.update(kind, id, |e| {
            e.restarts += 1;
            e.state = ActorState::Restarting;
            e.last_error =
                Some("actor stopped unexpectedly (panic?); restarted by the watchdog".into());
        });
        metrics::counter!("mpay_actor_restarts_total", "kind" => kind.to_string()).increment(1);
    }

    /// Snapshot of every actor, ordered by kind and id.
    pub fn snapshot(&self) -> Vec<ActorHealth> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// One actor.
    pub fn get(&self, kind: &str, id: &str) -> Option<ActorHealth> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(kind.to_string(), id.to_string()))
            .cloned()
    }

    /// Required actors that are not running (empty = ready).
    pub fn not_ready(&self) -> Vec<String> {
        let mut down: Vec<String> = self
            .snapshot()
            .into_iter()
            .filter(|a| a.required && a.state != ActorState::Running)
            .map(|a| format!("{}/{}", a.kind, a.id))
            .collect();
        if !self.store_writable() {
            down.push("store/unwritable".into());
        }
        down
    }

    /// Records whether the store could write at its last probe.
    pub fn set_store_writable(&self, writable: bool) {
        self.store_unwritable
            .store(!writable, std::sync::atomic::Ordering::SeqCst);
    }

    /// Could the store write at its last probe (true until a probe fails)?
    pub fn store_writable(&self) -> bool {
        !self
            .store_unwritable
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}
