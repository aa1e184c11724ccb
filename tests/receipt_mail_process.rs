//! The receipt e-mail queue across restarts (issue 15): the `mpay` binary as a process with
//! `[mail]` on a port where no SMTP server listens yet, receipts paid through the station, the
//! node killed with SIGKILL while their e-mails wait (and are being retried), then a real SMTP
//! server (`tests/smtp_sink.py`, aiosmtpd) and a new life of the node on the same store: every
//! acknowledged receipt's e-mail arrives, once each; after that a second kill in the middle of
//! sending loses none either (a repeat is allowed only for what was in flight).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::node::{ready, start};
use common::smtp::{messages, SmtpSink};
use common::{config_text, free_port, IBAN_A, KEY_A, ORG_A};
use serde_json::{json, Value};

/// Creates a position whose debtor has an e-mail and pays it; returns the receipt id.
async fn create_and_pay(client: &reqwest::Client, base: &str, iupd: &str) -> String {
    let body = json!({
        "iupd": iupd, "type": "F", "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi",
        "companyName": "Comune", "email": format!("{}@example.org", iupd.to_lowercase()),
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

async fn email_state(client: &reqwest::Client, base: &str, receipt_id: &str) -> Value {
    client
        .get(format!(
            "{base}/api/v1/organizations/{ORG_A}/receipts/{receipt_id}/email"
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Messages received per receipt id (by the XML attachment's name).
fn by_receipt(out: &std::path::Path) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for m in messages(out) {
        for a in m["attachments"].as_array().unwrap() {
            let name = a["filename"].as_str().unwrap();
            if let Some(id) = name
                .strip_prefix("ricevuta-")
                .and_then(|s| s.strip_suffix(".xml"))
            {
                *n.entry(id.to_string()).or_default() += 1;
            }
        }
    }
    n
}

async fn all_sent(client: &reqwest::Client, base: &str, ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in ids {
        loop {
            let v = email_state(client, base, id).await;
            if v["state"] == "SENT" {
                break;
            }
            assert!(Instant::now() < deadline, "not sent: {id} {v}");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[actix_web::test]
async fn a_restart_loses_no_receipt_email_and_sends_each_once() {
    let port = free_port();
    let out = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mpay.toml");
    let mut text = config_text(&dir.path().join("data"));
    text.push_str(&format!(
        "\n[mail]\nenabled = true\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"ricevute@borgo-demo.example.it\"\ntimeout_ms = 2000\nbackoff_base_ms = 50\nbackoff_max_ms = 200\n"
    ));
    std::fs::write(&cfg, text).unwrap();
    let client = reqwest::Client::new();

    // first life: the SMTP server is down; the e-mails wait and are retried
    let mut node = start(&cfg, &[]);
    ready(&client, &node.base).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(create_and_pay(&client, &node.base, &format!("Q-{i}")).await);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = email_state(&client, &node.base, &ids[0]).await;
        if v["state"] == "RETRYING" {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    node.child.kill().unwrap(); // SIGKILL
    node.child.wait().unwrap();

    // the server is up; the second life sends every queued e-mail, once
    let _sink = SmtpSink::start(port, out.path());
    let mut node = start(&cfg, &[]);
    ready(&client, &node.base).await;
    all_sent(&client, &node.base, &ids).await;
    let counts = by_receipt(out.path());
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "{id}: {counts:?}");
    }
    assert_eq!(counts.len(), ids.len());

    // more receipts, killed while their e-mails go out: after the next start none is missing
    let mut more = Vec::new();
    for i in 0..6 {
        more.push(create_and_pay(&client, &node.base, &format!("R-{i}")).await);
    }
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    let mut node = start(&cfg, &[]);
    ready(&client, &node.base).await;
    all_sent(&client, &node.base, &more).await;
    let counts = by_receipt(out.path());
    let repeats: usize = more
        .iter()
        .map(|id| {
            let n = *counts.get(id).unwrap_or(&0);
            assert!(n >= 1, "{id} lost: {counts:?}");
            n - 1
        })
        .sum();
    // only the one in flight when the kill landed may go twice
    assert!(repeats <= 1, "{repeats} repeats: {counts:?}");
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "the first ones never again");
    }
    node.child.kill().unwrap();
    node.child.wait().unwrap();
}
