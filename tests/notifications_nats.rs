//! Ente notifications over the NATS bus (issue 13): the `mpay` binary with `--nats`, a real
//! `nats-server` with JetStream, a webhook Ente in the test, payments through the station —
//! and the NATS server stopped mid-run (payments keep coming while it is away) and started
//! again. Every receipt is notified exactly once from the Ente's point of view, nothing is
//! delivered again after the acks, and every `receipt.stored` / `position.created` event the
//! node published reaches a durable JetStream consumer once, none lost in the outage.
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

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::node::{ready, start};
use common::{config_text, NatsServer, IBAN_A, KEY_A, ORG_A};
use mpay_actors::bus::nats::NatsBus;
use mpay_actors::bus::{Bus, Delivery};
use serde_json::{json, Value};

const SECRET: &str = "webhook-secret-of-the-ente-0123";

type Log = Arc<Mutex<Vec<(String, String, bool)>>>;
/// What the observer saw: (envelope id, type) per delivery, ids acked, ids handed out again
/// after their ack.
type Observed = (Vec<(String, String)>, HashSet<String>, Vec<String>);

async fn receive(req: HttpRequest, body: web::Bytes, log: web::Data<Log>) -> HttpResponse {
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let ts: i64 = h("X-Mpay-Timestamp").parse().unwrap_or_default();
    let signed = mpay_messages::wire::ente::verify_signature(
        SECRET.as_bytes(),
        ts,
        &body,
        &h("X-Mpay-Signature"),
    );
    log.lock().unwrap().push((
        h("Idempotency-Key"),
        String::from_utf8_lossy(&body).into_owned(),
        signed,
    ));
    HttpResponse::NoContent().finish()
}

async fn create_and_pay(client: &reqwest::Client, base: &str, iupd: &str) -> String {
    let body = json!({
        "iupd": iupd, "type": "F", "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi",
        "companyName": "Comune",
        "paymentOption": [{"amount": 1200, "description": "TARI", "isPartialPayment": false,
            "dueDate": "2030-12-31T23:59:59",
            "transfer": [{"idTransfer": "1", "amount": 1200, "remittanceInformation": "TARI",
                          "category": "9/0101108TS/", "iban": IBAN_A}]}]
    });
    let r = client
        .post(format!(
            "{base}/api/v1/organizations/{ORG_A}/debtpositions?toPublish=true"
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let nav = v["paymentOption"][0]["nav"].as_str().unwrap().to_string();
    common::pay_notice(client, base, ORG_A, &nav)
        .await
        .receipt_id
}

#[actix_web::test]
async fn over_nats_every_payment_is_notified_once_through_a_server_restart() {
    let Some(mut nats) = NatsServer::start() else {
        return;
    };
    let log: Log = Arc::default();
    let data = web::Data::new(log.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(receive))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    actix_rt::spawn(server.run());

    // an observer on another connection: a durable consumer of the node's events
    let observer = NatsBus::connect(&nats.url(), "observer").await.unwrap();
    let mut events = observer
        .consume(
            "test-observer",
            &["mpay.v1.receipt.stored.>", "mpay.v1.position.created.>"],
        )
        .await
        .unwrap();
    let seen: Arc<Mutex<Observed>> = Arc::default();
    let s = seen.clone();
    actix_rt::spawn(async move {
        while let Ok(Delivery::Job(job)) = events.next().await {
            let env = job.envelope().unwrap();
            {
                let mut s = s.lock().unwrap();
                if s.1.contains(&env.id) {
                    s.2.push(env.id.clone());
                }
                s.0.push((env.id.clone(), env.kind.clone()));
            }
            for _ in 0..100 {
                if job.ack().await.is_ok() {
                    s.lock().unwrap().1.insert(env.id.clone());
                    break;
                }
                actix_rt::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mpay.toml");
    let mut text = config_text(&dir.path().join("data"));
    let second = text.match_indices("[[organizations]]").nth(1).unwrap().0;
    text.insert_str(
        second,
        &format!(
            "\n[organizations.notification]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"{SECRET}\"\n"
        ),
    );
    text.push_str(
        "\n[notifications]\nbackoff_base_ms = 50\nbackoff_max_ms = 200\nbreaker_failures = 5\nbreaker_open_ms = 200\nbatch = 4\n",
    );
    std::fs::write(&cfg, text).unwrap();

    let client = reqwest::Client::new();
    let node = start(&cfg, &["--nats", &nats.url()]);
    ready(&client, &node.base).await;
    let mut acked = Vec::new();
    for i in 0..4 {
        acked.push(create_and_pay(&client, &node.base, &format!("N-a-{i}")).await);
    }
    // the NATS server goes away mid-run; payments go on (the station does not need the bus)
    nats.stop();
    for i in 0..4 {
        acked.push(create_and_pay(&client, &node.base, &format!("N-b-{i}")).await);
    }
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    nats.start_again();
    for i in 0..4 {
        acked.push(create_and_pay(&client, &node.base, &format!("N-c-{i}")).await);
    }

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v: Value = client
            .get(format!(
                "{}/api/v1/organizations/{ORG_A}/notifications?state=DELIVERED&limit=50",
                node.base
            ))
            .header("Ocp-Apim-Subscription-Key", KEY_A)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["pageInfo"]["items_found"].as_u64() == Some(acked.len() as u64) {
            break;
        }
        assert!(Instant::now() < deadline, "not all delivered: {v}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    // every event the node published reached the durable consumer, through the outage
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (n_receipts, n_positions, n_acked) = {
            let s = seen.lock().unwrap();
            let count = |k: &str| {
                s.0.iter()
                    .filter(|(_, kind)| kind == k)
                    .map(|(id, _)| id.clone())
                    .collect::<HashSet<_>>()
                    .len()
            };
            (
                count("receipt.stored"),
                count("position.created"),
                s.1.len(),
            )
        };
        if n_receipts == acked.len() && n_positions == acked.len() && n_acked == 2 * acked.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events: {n_receipts} receipts, {n_positions} positions, {n_acked} acked"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let before = log.lock().unwrap().len();
    actix_rt::time::sleep(Duration::from_millis(1000)).await;
    let entries = log.lock().unwrap().clone();
    assert_eq!(
        entries.len(),
        before,
        "nothing delivered again after the acks"
    );
    drop(node);

    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for (key, body, signed) in &entries {
        assert!(signed, "every delivery signed");
        by_key.entry(key.clone()).or_default().push(body.clone());
    }
    assert_eq!(
        entries.len(),
        acked.len(),
        "one delivery per receipt: {by_key:?}"
    );
    let notified: HashSet<String> = by_key
        .values()
        .map(|b| {
            let v: Value = serde_json::from_str(&b[0]).unwrap();
            v["receipt"]["receiptId"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(notified, acked.iter().cloned().collect::<HashSet<_>>());
    assert!(
        seen.lock().unwrap().2.is_empty(),
        "an event handed out again after its ack"
    );
}
