#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Receipt recovery ("blindatura", issue 14) end to end: the real node (temp store, random
//! port) and the simulator's biz-events API (`pagopa_sim::biz_events`, built from the spec
//! pack, on port 0). A payment whose paSendRT was lost (paGetPayment answered, no receipt) is
//! recovered through the same storage path as paSendRT: the receipt appears, flagged
//! recovered with the API's JSON byte-exact, the position is paid, the Ente's outbox has one
//! notification; asking again or the late paSendRT changes nothing; the hourly quota holds
//! (asserted on the queue's state); an unknown receipt ends NOT_FOUND after bounded attempts.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::*;
use mpay_storage::ReceiptRepository;
use pagopa_sim::biz_events::{receipt_json, serve, BizEventsSim, KnownReceipt};
use serde_json::{json, Value};

const BIZ_KEY: &str = "biz-events-subscription-key";
const SECRET: &str = "webhook-secret-of-a";

/// The simulated biz-events API on port 0; its base URL.
fn biz_events(sim: Arc<BizEventsSim>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve(sim, "/bizevents/service/v1", listener).unwrap();
    actix_rt::spawn(server);
    format!("http://{addr}/bizevents/service/v1")
}

/// Organization A notifies a webhook that never answers (its notifications stay in the
/// outbox, where they are counted), and `[biz_events]` points at the simulator.
fn config(cfg: String, base_url: &str, biz: &str) -> String {
    let mut cfg = cfg;
    let table = format!(
        "\n[organizations.notification]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"{SECRET}\"\ntimeout_ms = 500\n"
    );
    let second = cfg.match_indices("[[organizations]]").nth(1).unwrap().0;
    cfg.insert_str(second, &table);
    cfg.push_str(&format!(
        "\n[biz_events]\nbase_url = \"{base_url}\"\nsubscription_key = \"{BIZ_KEY}\"\npoll_secs = 1\n{biz}\n"
    ));
    cfg
}

/// Creates a published position of organization A; its notice number.
async fn create(app: &TestApp, iupd: &str, cents: i64) -> String {
    let r = app
        .client
        .post(format!("{}?toPublish=true", app.positions_url(ORG_A)))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .json(&position_body(iupd, cents))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    v["paymentOption"][0]["nav"].as_str().unwrap().to_string()
}

fn ids() -> pagopa_sim::build::StationIds {
    pagopa_sim::build::StationIds {
        id_pa: ORG_A.into(),
        id_broker_pa: ORG_B.into(),
        id_station: format!("{ORG_B}_01"),
    }
}

/// The PSP asks for the payment data (paGetPaymentV2 answered OK) and collects the money: the
/// receipt the simulator builds, never sent to the station (the paSendRT is "lost").
async fn pay_without_receipt(app: &TestApp, nav: &str) -> pagopa_sim::build::Receipt {
    use pagopa_sim::build::{
        get_payment_request, receipt_from_payment, GetPaymentOpts, PspInfo, QrCode, ReceiptDates,
        ReceiptOpts, Version,
    };
    use pagopa_sim::model::{parse_payment_data, parse_response};
    let qr = QrCode {
        fiscal_code: ORG_A.into(),
        notice_number: nav.into(),
    };
    let answer = station_soap(
        &app.client,
        &app.base,
        "paGetPaymentV2",
        get_payment_request(Version::V2, &ids(), &qr, &GetPaymentOpts::default()),
    )
    .await;
    let res = parse_response(&answer).unwrap();
    assert_eq!(res.outcome, "OK", "{answer}");
    let data = parse_payment_data(res.body.child("data").unwrap()).unwrap();
    let psp = PspInfo {
        id_psp: "88888888888".into(),
        fiscal_code: Some("88888888888".into()),
        partita_iva: None,
        company_name: "PSP di Prova".into(),
        id_channel: "88888888888_01".into(),
        channel_description: "app".into(),
        payment_method: Some("creditCard".into()),
        fee: None,
    };
    receipt_from_payment(
        Version::V2,
        &qr,
        &data,
        &psp,
        &ReceiptDates::now(),
        &ReceiptOpts::default(),
        &mut rand::rng(),
    )
    .unwrap()
}

async fn recover(app: &TestApp, body: Value) -> Value {
    let r = app
        .client
        .post(format!(
            "{}/api/v1/organizations/{ORG_A}/receipts/recover",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 202, "{v}");
    v
}

async fn queue(app: &TestApp, org: &str, key: &str, query: &str) -> Value {
    let r = app
        .client
        .get(format!(
            "{}/api/v1/organizations/{org}/receipts/recovery{query}",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn entry(app: &TestApp, iuv: &str) -> Value {
    let all = queue(app, ORG_A, KEY_A, "").await;
    all.as_array()
        .unwrap()
        .iter()
        .find(|e| e["iuv"] == iuv)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits (60 s: a slow machine is not a failure, a lost recovery is) until the entry of `iuv`
/// is in `state`; returns it.
async fn until_state(app: &TestApp, iuv: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let e = entry(app, iuv).await;
        if e["state"] == state {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {iuv} to be {state}: {e}"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn notifications_of(app: &TestApp, receipt_id: &str) -> usize {
    let r = app
        .client
        .get(format!(
            "{}/api/v1/organizations/{ORG_A}/notifications?limit=50",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["receiptId"] == receipt_id)
        .count()
}

async fn recovery_actor(app: &TestApp) -> Value {
    let actors: Value = app
        .client
        .get(format!("{}/health/actors", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    actors
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "ReceiptRecovery")
        .cloned()
        .unwrap_or_else(|| panic!("ReceiptRecovery not in /health/actors: {actors}"))
}

#[actix_web::test]
async fn a_lost_receipt_is_recovered_once_and_the_quota_holds() {
    let sim = BizEventsSim::new(vec![], Some(BIZ_KEY.into()), None);
    let base = biz_events(sim.clone());
    // one call an hour: the first notice takes it, the second waits
    let app = spawn_app_edited(|c| {
        config(
            c,
            &base,
            "calls_per_hour = 1\ndelay_secs = 86400\nmax_attempts = 3",
        )
    })
    .await;
    let nav = create(&app, "RECOVER-1", 12_345).await;
    let receipt = pay_without_receipt(&app, &nav).await;
    let json_text = receipt_json(&receipt);
    sim.add(KnownReceipt::parse(&json_text).unwrap());
    let iuv = receipt.creditor_reference_id.clone();

    // an operator asks for the notice: 202 + the entry, WAITING
    let e = recover(&app, json!({ "noticeNumber": nav })).await;
    assert_eq!(e["iuv"], iuv.as_str(), "{e}");
    assert_eq!(e["noticeNumber"], nav.as_str());
    assert_eq!(e["reason"], "OPERATOR");
    assert!(e["state"] == "WAITING" || e["state"] == "RECOVERED", "{e}");
    let done = until_state(&app, &iuv, "RECOVERED").await;
    assert_eq!(done["receiptId"], receipt.receipt_id.as_str(), "{done}");
    assert_eq!(done["attempts"], 1);
    assert_eq!(sim.requests(), 1);

    // the receipt is stored as paSendRT stores it, flagged recovered, the JSON byte-exact
    let stored = app
        .store
        .ledger
        .receipt(&receipt.receipt_id)
        .unwrap()
        .unwrap();
    assert!(stored.recovered);
    assert_eq!(stored.raw_xml, json_text);
    assert_eq!(stored.operation, "getOrganizationReceipt");
    assert_eq!(stored.receipt.payment_amount.cents(), 12_345);
    assert_eq!(stored.notice_number, nav);
    let r = app
        .client
        .get(format!(
            "{}/api/v1/organizations/{ORG_A}/receipts/{}",
            app.base, receipt.receipt_id
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // the position is paid
    let p: Value = app
        .client
        .get(format!("{}/RECOVER-1", app.positions_url(ORG_A)))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p["status"], "PAID", "{p}");
    // the Ente's outbox has its notification, once
    assert_eq!(notifications_of(&app, &receipt.receipt_id).await, 1);

    // asking again changes nothing: the entry stays RECOVERED, no call is made
    let again = recover(&app, json!({ "iuv": iuv })).await;
    assert_eq!(again["state"], "RECOVERED", "{again}");
    assert_eq!(again["attempts"], 1);
    // the late paSendRT of the same receipt is not stored twice either
    let late = pagopa_sim::build::send_rt_request(pagopa_sim::build::Version::V2, &ids(), &receipt)
        .unwrap();
    station_soap(&app.client, &app.base, "paSendRTV2", late).await;
    let org = mpay_messages::OrgFiscalCode::parse(ORG_A).unwrap();
    let n = mpay_messages::NoticeNumber::parse_unchecked(&nav).unwrap();
    assert_eq!(
        app.store
            .ledger
            .receipts_for_notice(&org, &n)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(notifications_of(&app, &receipt.receipt_id).await, 1);

    // the quota (1 an hour) is spent: a second notice waits, no call is made for it
    let nav2 = create(&app, "RECOVER-2", 500).await;
    let receipt2 = pay_without_receipt(&app, &nav2).await;
    sim.add(KnownReceipt::parse(&receipt_json(&receipt2)).unwrap());
    let queued = recover(&app, json!({ "noticeNumber": nav2 })).await;
    assert_eq!(queued["state"], "WAITING");
    let asked = Utc::now();
    // a pass that saw it and left it waiting (backlog 1, after the request)
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = recovery_actor(&app).await;
        let beat = a["lastHeartbeat"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        if a["mailboxBacklog"] == 1 && beat.is_some_and(|b| b > asked) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no pass saw the second notice: {a}"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let waiting = entry(&app, &receipt2.creditor_reference_id).await;
    assert_eq!(waiting["state"], "WAITING", "{waiting}");
    assert_eq!(waiting["attempts"], 0, "{waiting}");
    assert_eq!(sim.requests(), 1, "the quota holds");
    let listed = queue(&app, ORG_A, KEY_A, "?state=WAITING").await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert!(app
        .store
        .ledger
        .receipts_for_notice(
            &org,
            &mpay_messages::NoticeNumber::parse_unchecked(&nav2).unwrap()
        )
        .unwrap()
        .is_empty());

    // the other tenant sees none of it; a bad filter is refused
    let b = queue(&app, ORG_B, KEY_B, "").await;
    assert_eq!(b, json!([]));
    let r = app
        .client
        .get(format!(
            "{}/api/v1/organizations/{ORG_A}/receipts/recovery?state=LOST",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // the routes are in the OpenAPI document
    let doc: Value = app
        .client
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/organizations/{organizationfiscalcode}/receipts/recover",
        "/api/v1/organizations/{organizationfiscalcode}/receipts/recovery",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} not documented");
    }
}

#[actix_web::test]
async fn an_unknown_receipt_ends_not_found_and_a_stale_payment_is_recovered_by_itself() {
    let sim = BizEventsSim::new(vec![], Some(BIZ_KEY.into()), None);
    let base = biz_events(sim.clone());
    // two attempts a second apart; payments in progress without a receipt are queued at once
    let app = spawn_app_edited(|c| {
        config(
            c,
            &base,
            "calls_per_hour = 100\ndelay_secs = 0\nmax_attempts = 2\nbackoff_secs = 1",
        )
    })
    .await;

    // an IUV pagoPA does not know: NOT_FOUND after the two attempts, and no third call
    let e = recover(&app, json!({ "iuv": "99000000000000001" })).await;
    assert_eq!(e["state"], "WAITING");
    let ended = until_state(&app, "99000000000000001", "NOT_FOUND").await;
    assert_eq!(ended["attempts"], 2, "{ended}");
    assert!(ended.get("nextAttempt").is_none(), "{ended}");
    assert!(
        ended["lastError"].as_str().unwrap().contains("404"),
        "{ended}"
    );
    let calls = sim.requests();
    assert_eq!(calls, 2);

    // a payment in progress whose receipt never came is queued and recovered by the worker
    let nav = create(&app, "STALE-1", 2_000).await;
    let receipt = pay_without_receipt(&app, &nav).await;
    sim.add(KnownReceipt::parse(&receipt_json(&receipt)).unwrap());
    let done = until_state(&app, &receipt.creditor_reference_id, "RECOVERED").await;
    assert_eq!(done["reason"], "PAYMENT_IN_PROGRESS", "{done}");
    assert_eq!(done["noticeNumber"], nav.as_str());
    assert!(
        app.store
            .ledger
            .receipt(&receipt.receipt_id)
            .unwrap()
            .unwrap()
            .recovered
    );
    assert_eq!(notifications_of(&app, &receipt.receipt_id).await, 1);

    // the ended entry never loops: still NOT_FOUND, still two calls for it
    let still = entry(&app, "99000000000000001").await;
    assert_eq!(still["state"], "NOT_FOUND");
    assert_eq!(still["attempts"], 2);
    // an operator re-arms it
    let rearmed = recover(&app, json!({ "iuv": "99000000000000001" })).await;
    assert_eq!(rearmed["state"], "WAITING", "{rearmed}");
    assert_eq!(rearmed["attempts"], 0);
}
