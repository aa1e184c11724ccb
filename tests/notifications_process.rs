//! SIGKILL during delivery (issue 13): the `mpay` binary as a process, a webhook Ente in the
//! test (slow on purpose, so kills land mid-delivery), payments through the station, and the
//! node killed with SIGKILL at random moments, round after round, on the same store. After
//! the last restart every receipt the station acknowledged is notified, exactly once from the
//! Ente's point of view (it dedupes by `Idempotency-Key`); redeliveries — allowed only before
//! our record of the ack reached the disk — are counted and bounded; none comes after the
//! backlog is acknowledged.
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
use common::{config_text, IBAN_A, KEY_A, ORG_A};
use rand::Rng as _;
use serde_json::{json, Value};

const SECRET: &str = "webhook-secret-of-the-ente-0123";

type Log = Arc<Mutex<Vec<(String, String, bool)>>>;

async fn receive(req: HttpRequest, body: web::Bytes, log: web::Data<Log>) -> HttpResponse {
    // a slow Ente: deliveries are in flight when the node is killed
    actix_rt::time::sleep(Duration::from_millis(25)).await;
    let key = req
        .headers()
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let ts: i64 = req
        .headers()
        .get("X-Mpay-Timestamp")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    let sig = req
        .headers()
        .get("X-Mpay-Signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let signed = mpay_messages::wire::ente::verify_signature(SECRET.as_bytes(), ts, &body, sig);
    log.lock()
        .unwrap()
        .push((key, String::from_utf8_lossy(&body).into_owned(), signed));
    HttpResponse::NoContent().finish()
}

/// Creates a position and pays it; returns the receipt id acknowledged by the station.
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
async fn sigkill_during_delivery_loses_no_notification_and_repeats_none_after_the_ack() {
    let log: Log = Arc::default();
    let data = web::Data::new(log.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(receive))
    })
    .workers(2)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    actix_rt::spawn(server.run());

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
    let mut acked = Vec::new();
    let rounds = 5;
    for round in 0..rounds {
        let mut node = start(&cfg, &[]);
        ready(&client, &node.base).await;
        for i in 0..6 {
            acked.push(create_and_pay(&client, &node.base, &format!("K-{round}-{i}")).await);
        }
        // kill at a random moment of the delivery
        let wait = rand::rng().random_range(0..150);
        actix_rt::time::sleep(Duration::from_millis(wait)).await;
        node.child.kill().unwrap(); // SIGKILL
        node.child.wait().unwrap();
    }
    // the last life: everything left is delivered
    let mut node = start(&cfg, &[]);
    ready(&client, &node.base).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = client
            .get(format!(
                "{}/api/v1/organizations/{ORG_A}/notifications?state=DELIVERED&limit=50",
                node.base
            ))
            .header("Ocp-Apim-Subscription-Key", KEY_A)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        if v["pageInfo"]["items_found"].as_u64() == Some(acked.len() as u64) {
            break;
        }
        assert!(Instant::now() < deadline, "not all delivered: {v}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let before = log.lock().unwrap().len();
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let entries = log.lock().unwrap().clone();
    assert_eq!(
        entries.len(),
        before,
        "nothing delivered again after the acks"
    );
    node.child.kill().unwrap();
    node.child.wait().unwrap();

    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for (key, body, signed) in &entries {
        assert!(signed, "every delivery signed");
        by_key.entry(key.clone()).or_default().push(body.clone());
    }
    let notified: HashSet<String> = by_key
        .values()
        .map(|bodies| {
            let v: Value = serde_json::from_str(&bodies[0]).unwrap();
            assert!(
                bodies.iter().all(|b| b == &bodies[0]),
                "a key always carries the same notification"
            );
            v["receipt"]["receiptId"].as_str().unwrap().to_string()
        })
        .collect();
    let expected: HashSet<String> = acked.iter().cloned().collect();
    assert_eq!(
        notified, expected,
        "every acknowledged receipt notified, no other"
    );
    assert_eq!(by_key.len(), acked.len(), "one notification per receipt");
    let redeliveries = entries.len() - by_key.len();
    eprintln!(
        "{} receipts, {} deliveries, {} redeliveries across {rounds} SIGKILLs",
        acked.len(),
        entries.len(),
        redeliveries
    );
    // a redelivery is possible only for what was in flight (one batch) when a kill landed
    assert!(redeliveries <= rounds * 4, "{redeliveries} redeliveries");
}
