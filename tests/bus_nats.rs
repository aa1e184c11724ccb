//! The NATS bus against a real `nats-server` with JetStream (issue 13): durable events and a
//! durable work queue through a server restart — every item handed out, none handed out again
//! once its ack was confirmed; request/reply and queue groups over core NATS.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::NatsServer;
use mpay_actors::bus::nats::NatsBus;
use mpay_actors::bus::{Bus, Delivery, Event, Job, Received};

/// What a consumer saw: deliveries per id, the ids whose ack the server confirmed, and any
/// id handed out again after that.
#[derive(Default)]
struct Seen {
    deliveries: HashMap<String, u32>,
    acked: HashSet<String>,
    after_ack: Vec<String>,
}

async fn settle(seen: &Arc<Mutex<Seen>>, job: Job) {
    {
        let mut s = seen.lock().unwrap();
        if s.acked.contains(&job.id) {
            s.after_ack.push(job.id.clone());
        }
        *s.deliveries.entry(job.id.clone()).or_default() += 1;
    }
    // an ack that fails (server restarting) is tried again; only a confirmed one counts
    for _ in 0..100 {
        if job.ack().await.is_ok() {
            seen.lock().unwrap().acked.insert(job.id.clone());
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_all(seen: &Arc<Mutex<Seen>>, expected: &HashSet<String>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if expected.is_subset(&seen.lock().unwrap().acked) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not all acked in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn restart(nats: &mut NatsServer) {
    nats.stop();
    std::thread::sleep(Duration::from_millis(300));
    nats.start_again();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_events_and_work_survive_a_server_restart_and_none_comes_back_after_its_ack() {
    let Some(mut nats) = NatsServer::start() else {
        return;
    };
    let bus = Arc::new(
        NatsBus::connect(&nats.url(), "node-a")
            .await
            .unwrap()
            .with_ack_wait(Duration::from_secs(2)),
    );

    // durable consumer of receipt events, created before anything is published
    let mut consumer = bus
        .consume("test-observer", &["mpay.v1.receipt.stored.>"])
        .await
        .unwrap();
    let events: Arc<Mutex<Seen>> = Arc::default();
    let ev = events.clone();
    let event_ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let eids = event_ids.clone();
    tokio::spawn(async move {
        while let Ok(Delivery::Job(job)) = consumer.next().await {
            let env = job.envelope().unwrap();
            assert_eq!(env.id, job.id, "JetStream id = envelope id");
            assert_eq!(env.kind, "receipt.stored");
            eids.lock().unwrap().push(env.id.clone());
            settle(&ev, job).await;
        }
    });

    // the work queue, its consumer in the same way
    let queue = bus.work_queue("restart-test").await.unwrap();
    let work: Arc<Mutex<Seen>> = Arc::default();
    let (q, w) = (queue.clone(), work.clone());
    tokio::spawn(async move {
        while let Ok(job) = q.next().await {
            settle(&w, job).await;
        }
    });

    let mut expected_work = HashSet::new();
    for i in 0..200 {
        if i == 100 {
            // mid-stream: the server stops (gracefully) and comes back on the same store
            restart(&mut nats);
        }
        bus.publish(Event::ReceiptStored {
            organization: "80001234568".into(),
            receipt_id: format!("r-{i}"),
        });
        let id = format!("w-{i}");
        // a push is durable when it returns; while the server is away it fails and is tried again
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = queue.push(&id, format!("job {i}").into_bytes()).await {
            assert!(Instant::now() < deadline, "push {id}: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // a second push of the same id is deduplicated by the server
        if i % 50 == 0 {
            queue.push(&id, b"again".to_vec()).await.unwrap();
        }
        expected_work.insert(id);
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    wait_all(&work, &expected_work, "work").await;
    // every event published (through the restart) reaches the durable consumer
    let deadline = Instant::now() + Duration::from_secs(90);
    while event_ids.lock().unwrap().len() < 200 || events.lock().unwrap().acked.len() < 200 {
        assert!(
            Instant::now() < deadline,
            "events: {} of 200",
            event_ids.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // a while more: nothing acked comes back (ack wait is 2 s)
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (what, seen) in [("work", &work), ("events", &events)] {
        let s = seen.lock().unwrap();
        assert!(
            s.after_ack.is_empty(),
            "{what}: handed out again after the ack: {:?}",
            s.after_ack
        );
        let again = s.deliveries.values().filter(|n| **n > 1).count();
        eprintln!(
            "{what}: {} items, {again} handed out more than once before their ack",
            s.deliveries.len()
        );
    }
    assert_eq!(
        work.lock().unwrap().deliveries.len(),
        200,
        "no duplicate item"
    );
    let ids: HashSet<String> = event_ids.lock().unwrap().iter().cloned().collect();
    assert_eq!(ids.len(), 200, "200 distinct events, none lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_queue_groups_and_live_subscriptions_over_core_nats() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let a = Arc::new(NatsBus::connect(&nats.url(), "node-a").await.unwrap());
    let b = Arc::new(NatsBus::connect(&nats.url(), "node-b").await.unwrap());
    assert!(matches!(
        a.request("mpay.v1.rpc.echo", b"x".to_vec(), Duration::from_secs(2))
            .await,
        Err(mpay_actors::bus::BusError::NoResponders(_))
    ));
    let mut reqs = b.serve("mpay.v1.rpc.echo", "echo").await.unwrap();
    tokio::spawn(async move {
        while let Some(r) = reqs.recv().await {
            let mut answer = b"node-b:".to_vec();
            answer.extend_from_slice(&r.payload);
            r.respond(answer).await.unwrap();
        }
    });
    let answer = a
        .request("mpay.v1.rpc.echo", b"hi".to_vec(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(answer, b"node-b:hi");

    // a queue group over two nodes: each event to one of them; a live subscriber sees all
    let mut g1 = a.queue_subscribe("mpay.v1.position.>", "g").await.unwrap();
    let mut g2 = b.queue_subscribe("mpay.v1.position.>", "g").await.unwrap();
    let mut all = b.subscribe(&["mpay.v1.position.>"]).await.unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let (s1, s2) = (seen.clone(), seen.clone());
    tokio::spawn(async move {
        while let Received::Event(e) = g1.recv().await {
            s1.lock().unwrap().push(e.id.clone());
        }
    });
    tokio::spawn(async move {
        while let Received::Event(e) = g2.recv().await {
            s2.lock().unwrap().push(e.id.clone());
        }
    });
    for i in 0..20 {
        a.publish(Event::PositionCreated {
            organization: "80001234568".into(),
            iupd: format!("P-{i}"),
        });
    }
    let mut live = Vec::new();
    while live.len() < 20 {
        match tokio::time::timeout(Duration::from_secs(60), all.recv()).await {
            Ok(Received::Event(e)) => {
                assert_eq!(e.node, "node-a");
                assert!(e.subject.starts_with("mpay.v1.position.created."));
                live.push(e.id.clone());
            }
            other => panic!("live subscription: {other:?}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < 20 {
        assert!(
            Instant::now() < deadline,
            "queue group got {:?}",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    let n = got.len();
    got.dedup();
    assert_eq!((n, got.len()), (20, 20), "each event to exactly one member");
}
