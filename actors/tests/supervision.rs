//! The watchdog respawns an actor that died of a panic (which kills an actix Supervisor too),
//! counts the restart, and readiness follows; the journal writer batches into a real store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use mpay_actors::{ActorState, FlushJournal, HealthRegistry, JournalWriter, Record, Watchdog};
use mpay_messages::journal::JournalEntry;
use mpay_storage::{JournalQuery, JournalStore, Store};

struct Fragile {
    registry: HealthRegistry,
}

impl Actor for Fragile {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Self::Context) {
        self.registry.heartbeat("Fragile", "t", 0);
    }
}

impl Supervised for Fragile {}

#[derive(Message)]
#[rtype(result = "u32")]
struct Ping;

#[derive(Message)]
#[rtype(result = "()")]
struct Boom;

impl Handler<Ping> for Fragile {
    type Result = u32;
    fn handle(&mut self, _: Ping, _: &mut Self::Context) -> u32 {
        42
    }
}

impl Handler<Boom> for Fragile {
    type Result = ();
    fn handle(&mut self, _: Boom, _: &mut Self::Context) {
        panic!("deliberate panic in a handler");
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn watchdog_respawns_a_panicked_actor_and_counts_it() {
    let registry = HealthRegistry::new();
    let mut wd = Watchdog::new(registry.clone(), Duration::from_millis(20));
    let reg = registry.clone();
    let handle = wd.watch("Fragile", "t", move || {
        let reg = reg.clone();
        reg.register("Fragile", "t", true);
        Supervisor::start(move |_| Fragile { registry: reg })
    });
    let _wd = wd.start();
    wait_until("first start", || registry.not_ready().is_empty()).await;
    assert_eq!(handle.addr().send(Ping).await.unwrap(), 42);

    let _ = handle.addr().send(Boom).await; // the actor and its supervisor die
    wait_until("restart counted", || {
        registry
            .get("Fragile", "t")
            .is_some_and(|a| a.restarts == 1)
    })
    .await;
    wait_until("running again", || {
        registry
            .get("Fragile", "t")
            .is_some_and(|a| a.state == ActorState::Running)
    })
    .await;
    // the shared handle reaches the new instance
    assert_eq!(handle.addr().send(Ping).await.unwrap(), 42);
    let a = registry.get("Fragile", "t").unwrap();
    assert!(a.last_error.unwrap().contains("restarted by the watchdog"));
}

#[actix_rt::test]
async fn readiness_is_false_while_a_required_actor_is_down() {
    let registry = HealthRegistry::new();
    registry.register("Needed", "x", true);
    registry.register("Optional", "y", false);
    assert_eq!(registry.not_ready(), vec!["Needed/x".to_string()]);
    registry.heartbeat("Needed", "x", 3);
    assert!(registry.not_ready().is_empty());
    assert_eq!(registry.get("Needed", "x").unwrap().mailbox_backlog, 3);
}

#[actix_rt::test]
async fn journal_writer_batches_into_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let registry = HealthRegistry::new();
    let js: Arc<dyn JournalStore> = store.journal.clone();
    // long interval: only the batch size or an explicit flush writes
    let addr =
        JournalWriter::new(js.clone(), registry.clone(), 10, Duration::from_secs(3600)).start();
    for i in 0..25 {
        addr.send(Record(JournalEntry {
            at: Utc::now(),
            channel: "rest".into(),
            operation: "POST /x".into(),
            organization: Some(
                if i % 2 == 0 {
                    "80001234568"
                } else {
                    "01987654322"
                }
                .into(),
            ),
            key: Some(format!("k{i}")),
            status: 201,
            outcome: "OK".into(),
            latency_us: 10,
            request_id: format!("r{i}"),
            note: None,
            payload: None,
        }))
        .await
        .unwrap();
    }
    assert_eq!(js.len(), 20, "two full batches written, five pending");
    assert_eq!(addr.send(FlushJournal).await.unwrap().unwrap(), 5);
    assert_eq!(js.len(), 25);
    let mine = js
        .query(&JournalQuery {
            organization: Some("80001234568".into()),
            from: None,
            limit: 100,
        })
        .unwrap();
    assert_eq!(mine.len(), 13);
    assert_eq!(mine[0].key.as_deref(), Some("k24"), "newest first");
}
