//! Ente notifications end to end (issue 13): the real node (temp store, random port), payments
//! made over the station with the simulator's own XML (paGetPaymentV2 → paSendRTV2), and test
//! Ente servers on random ports that count what they receive — a webhook Ente that verifies
//! the HMAC signature with its own code and dedupes by `Idempotency-Key`, a SOAP Ente that can
//! answer `retcode 01`, and an Ente that goes down and comes back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const SECRET: &str = "webhook-secret-of-the-ente-0123";

/// One request the test Ente received.
#[derive(Debug, Clone)]
struct Received {
    idempotency_key: Option<String>,
    signature_ok: bool,
    authorization: Option<String>,
    body: String,
}

#[derive(Default)]
struct EnteState {
    received: Vec<Received>,
    /// SOAP answers to give, in order (then `00`).
    retcodes: Vec<&'static str>,
    /// Webhook calls answered after this many ms (0: at once), and calls of one position
    /// (`iupd`) that overlapped another of the same position.
    slow_ms: u64,
    in_call: HashMap<String, u32>,
    overlaps: u32,
}

/// A test Ente: real HTTP on a port of its own, can be stopped and started again on it.
#[derive(Clone)]
struct Ente {
    state: Arc<Mutex<EnteState>>,
    port: u16,
    handle: Arc<Mutex<Option<actix_web::dev::ServerHandle>>>,
}

/// Verifies `X-Mpay-Signature` as an Ente would, with its own HMAC code.
fn signature_ok(req: &HttpRequest, body: &[u8]) -> bool {
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (Some(ts), Some(sig)) = (h("X-Mpay-Timestamp"), h("X-Mpay-Signature")) else {
        return false;
    };
    let ts_num: i64 = ts.parse().unwrap();
    assert!(
        (chrono::Utc::now().timestamp() - ts_num).abs() < 300,
        "fresh timestamp"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    expected == sig
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    ente: web::Data<Arc<Mutex<EnteState>>>,
) -> HttpResponse {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let soap = header("content-type").is_some_and(|c| c.starts_with("text/xml"));
    let slow = ente.lock().unwrap().slow_ms;
    if slow > 0 && !soap {
        let iupd = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["iupd"].as_str().map(str::to_string))
            .unwrap_or_default();
        {
            let mut st = ente.lock().unwrap();
            let n = st.in_call.entry(iupd.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                st.overlaps += 1;
            }
        }
        actix_rt::time::sleep(Duration::from_millis(slow)).await;
        if let Some(n) = ente.lock().unwrap().in_call.get_mut(&iupd) {
            *n -= 1;
        }
    }
    let mut st = ente.lock().unwrap();
    st.received.push(Received {
        idempotency_key: header("Idempotency-Key"),
        signature_ok: !soap && signature_ok(&req, &body),
        authorization: header("authorization"),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if soap {
        let code = if st.retcodes.is_empty() {
            "00"
        } else {
            st.retcodes.remove(0)
        };
        let msg = if code == "00" {
            "OK"
        } else {
            "posizione non trovata"
        };
        // inviaFlussoRend has its own answer element (InviaFlussoRendResponse/response)
        let flow = String::from_utf8_lossy(&body).contains("InviaFlussoRendRequest");
        HttpResponse::Ok()
            .content_type("text/xml; charset=utf-8")
            .body(if flow {
                mpay_messages::wire::ente_flow::invia_flusso_response_soap(code, msg)
            } else {
                mpay_messages::wire::ente::risultato_soap(code, msg)
            })
    } else {
        HttpResponse::NoContent().finish()
    }
}

impl Ente {
    async fn start() -> Ente {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let ente = Ente {
            state: Arc::default(),
            port,
            handle: Arc::default(),
        };
        ente.serve(Some(l)).await;
        ente
    }

    async fn serve(&self, listener: Option<std::net::TcpListener>) {
        let data = web::Data::new(self.state.clone());
        let factory = move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        };
        let server = match listener {
            Some(l) => HttpServer::new(factory).workers(1).listen(l).unwrap(),
            None => {
                // back on the same port (SO_REUSEADDR: no wait for TIME_WAIT)
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let f = factory.clone();
                    match HttpServer::new(f).workers(1).bind(("127.0.0.1", self.port)) {
                        Ok(s) => break s,
                        Err(e) => {
                            assert!(Instant::now() < deadline, "cannot rebind: {e}");
                            actix_rt::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        }
        .disable_signals()
        .run();
        *self.handle.lock().unwrap() = Some(server.handle());
        actix_rt::spawn(server);
    }

    async fn stop(&self) {
        let h = self.handle.lock().unwrap().take();
        if let Some(h) = h {
            h.stop(false).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Distinct notifications (the Ente dedupes by Idempotency-Key).
    fn distinct(&self) -> Vec<Received> {
        let mut seen = std::collections::HashSet::new();
        self.received()
            .into_iter()
            .filter(|r| seen.insert(r.idempotency_key.clone().unwrap_or_else(|| r.body.clone())))
            .collect()
    }
}

/// Adds `[organizations.notification]` to organization A (webhook) and/or B (SOAP), and a
/// fast delivery policy.
fn with_endpoints(cfg: String, a: Option<&str>, b: Option<&str>) -> String {
    let mut cfg = cfg;
    if let Some(url) = a {
        let table = format!(
            "\n[organizations.notification]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\ntimeout_ms = 2000\n"
        );
        // after A's [organizations.mpay] table, before B's [[organizations]]
        let second = cfg.match_indices("[[organizations]]").nth(1).unwrap().0;
        cfg.insert_str(second, &table);
    }
    if let Some(url) = b {
        let table = format!(
            "\n[organizations.notification]\nkind = \"soap\"\nurl = \"{url}\"\nbasic_user = \"mpay\"\nbasic_password = \"pw-of-the-ente\"\ntimeout_ms = 2000\n"
        );
        let services = cfg.find("[[services]]").unwrap();
        cfg.insert_str(services, &table);
    }
    cfg.push_str(
        "\n[notifications]\nbackoff_base_ms = 100\nbackoff_max_ms = 400\nbreaker_failures = 2\nbreaker_open_ms = 300\n",
    );
    cfg
}

fn position(iupd: &str, iban: &str, installments: &[i64]) -> Value {
    let partial = installments.len() > 1;
    let options: Vec<Value> = installments
        .iter()
        .enumerate()
        .map(|(i, cents)| {
            json!({
                "amount": cents,
                "description": format!("Rata {}", i + 1),
                "isPartialPayment": partial,
                "dueDate": format!("2030-0{}-28T23:59:59", i + 1),
                "transfer": [{
                    "idTransfer": "1", "amount": cents, "remittanceInformation": "TARI 2026",
                    "category": "9/0101108TS/", "iban": iban
                }]
            })
        })
        .collect();
    json!({
        "iupd": iupd, "type": "F", "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi",
        "companyName": "Comune", "paymentOption": options
    })
}

/// Creates a published position; returns its notice numbers.
async fn create(app: &TestApp, org: &str, key: &str, body: Value) -> Vec<String> {
    let r = app
        .client
        .post(format!("{}?toPublish=true", app.positions_url(org)))
        .header("Ocp-Apim-Subscription-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    v["paymentOption"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["nav"].as_str().unwrap().to_string())
        .collect()
}

async fn soap(app: &TestApp, action: &str, body: String) -> String {
    common::station_soap(&app.client, &app.base, action, body).await
}

/// A PSP pays a notice: paGetPaymentV2 then paSendRTV2 (the simulator's XML). Returns the
/// receipt id and the paSendRTV2 request sent.
async fn pay(app: &TestApp, org: &str, nav: &str) -> (String, String) {
    let paid = common::pay_notice(&app.client, &app.base, org, nav).await;
    (paid.receipt_id, paid.request)
}

async fn notifications(app: &TestApp, org: &str, key: &str, query: &str) -> Value {
    let r = app
        .client
        .get(format!(
            "{}/api/v1/organizations/{org}/notifications{query}",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Polls `cond` until true (60 s deadline: a slow machine is not a failure, a lost delivery is).
async fn eventually<F: FnMut() -> bool>(what: &str, mut cond: F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metrics(app: &TestApp) -> String {
    app.client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[actix_web::test]
async fn a_webhook_ente_gets_every_payment_once_signed() {
    let ente = Ente::start().await;
    let url = ente.url("/mpay/notifications");
    let app = spawn_app_edited(|c| with_endpoints(c, Some(&url), None)).await;
    let mut paid = Vec::new();
    for i in 0..3 {
        let nav = create(
            &app,
            ORG_A,
            KEY_A,
            position(&format!("W-{i}"), IBAN_A, &[1000 + i]),
        )
        .await;
        paid.push((pay(&app, ORG_A, &nav[0]).await, 1000 + i));
    }
    eventually("three deliveries", || ente.received().len() >= 3).await;
    // the same receipt again: stored once, so no second notification
    let (_, again) = &paid[0].0;
    let answer = soap(&app, "paSendRTV2", again.clone()).await;
    assert!(answer.contains("<outcome>OK</outcome>"), "{answer}");
    // every notification DELIVERED after one attempt
    let app_ref = &app;
    let mut delivered = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        delivered = notifications(app_ref, ORG_A, KEY_A, "?state=DELIVERED").await;
        if delivered["pageInfo"]["items_found"] == 3 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(delivered["pageInfo"]["items_found"], 3, "{delivered}");
    for n in delivered["notifications"].as_array().unwrap() {
        assert_eq!(n["attempts"], 1, "{n}");
        assert!(n.get("nextAttemptAt").is_none(), "{n}");
        assert!(n["deliveredAt"].is_string());
    }
    let all = notifications(&app, ORG_A, KEY_A, "").await;
    assert_eq!(
        all["pageInfo"]["items_found"], 3,
        "one notification per receipt: {all}"
    );
    let got = ente.received();
    assert_eq!(got.len(), 3, "nothing delivered twice: {got:?}");
    for ((receipt_id, _), cents) in &paid {
        let r = got
            .iter()
            .find(|r| r.body.contains(receipt_id.as_str()))
            .unwrap_or_else(|| panic!("receipt {receipt_id} not notified"));
        assert!(r.signature_ok, "signature verified by the Ente");
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["event"], "PAYMENT_RECEIPT");
        assert_eq!(body["organizationFiscalCode"], ORG_A);
        assert_eq!(body["disposition"], "APPLIED");
        assert_eq!(body["receipt"]["receiptId"], receipt_id.as_str());
        assert_eq!(body["receipt"]["paymentAmount"], *cents, "amounts in cents");
        assert_eq!(body["receipt"]["transferList"][0]["transferAmount"], *cents);
        assert_eq!(
            r.idempotency_key.as_deref(),
            body["notificationId"].as_str(),
            "Idempotency-Key is the notification id"
        );
        assert!(r.authorization.is_none(), "no Basic auth configured for A");
    }
    // the other tenant cannot see A's notifications
    let r = app
        .client
        .get(format!(
            "{}/api/v1/organizations/{ORG_A}/notifications",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_B)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .client
        .get(format!(
            "{}/api/v1/organizations/{ORG_A}/notifications?state=LOST",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // resend: delivered again, same Idempotency-Key (the Ente dedupes it)
    let id = delivered["notifications"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .client
        .post(format!(
            "{}/api/v1/organizations/{ORG_A}/notifications/{id}/resend",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    eventually("the resend", || ente.received().len() == 4).await;
    assert_eq!(ente.distinct().len(), 3, "same key: the Ente sees it once");
    let m = metrics(&app).await;
    assert!(
        m.contains(&format!(
            "mpay_ente_deliveries_total{{organization=\"{ORG_A}\"}}"
        )),
        "{m}"
    );
    // the connector is in the actor list
    let actors: Value = app
        .client
        .get(format!("{}/health/actors", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        actors
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "EnteConnector" && a["id"] == ORG_A),
        "{actors}"
    );
    ente.stop().await;
}

#[actix_web::test]
async fn a_soap_ente_gets_notifica_pagamento_and_a_retcode_01_is_retried() {
    let ente = Ente::start().await;
    ente.state.lock().unwrap().retcodes = vec!["01"];
    let url = ente.url("/IntegraenteService/notifica");
    let app = spawn_app_edited(|c| with_endpoints(c, None, Some(&url))).await;
    let nav = create(&app, ORG_B, KEY_B, position("S-1", IBAN_B, &[4321])).await;
    let (receipt_id, request) = pay(&app, ORG_B, &nav[0]).await;
    eventually("an acknowledged notificaPagamento", || {
        ente.received().len() >= 2
    })
    .await;
    let got = ente.received();
    let n = mpay_messages::wire::ente::decode_notifica(got[1].body.as_bytes()).unwrap();
    assert_eq!(
        got[0].body, got[1].body,
        "the same request again after retcode 01"
    );
    assert_eq!(n.codice_transazione, receipt_id);
    assert_eq!(
        n.codice_ente, "00936",
        "MPay codiceEnte of the organization"
    );
    assert_eq!(n.codice_fiscale, "RSSMRA80A01H501U");
    assert_eq!(n.numero_documento.as_deref(), Some("S-1"));
    assert_eq!(
        n.pagato,
        mpay_messages::wire::ente::Pagato::Avviso(nav[0].clone())
    );
    assert_eq!(n.importo_pagato, 4321);
    assert_eq!(n.data_pagamento.len(), 14);
    assert_eq!(
        n.rt_xml.as_deref(),
        Some(request.as_str()),
        "the RT as received"
    );
    let e = n.estesi.unwrap();
    assert_eq!(e.iur, receipt_id);
    assert_eq!(e.iuv, nav[0][1..]);
    assert_eq!(
        got[0].authorization.as_deref(),
        Some("Basic bXBheTpwdy1vZi10aGUtZW50ZQ=="),
        "HTTP Basic mpay:pw-of-the-ente"
    );
    let app_ref = &app;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = notifications(app_ref, ORG_B, KEY_B, "").await;
        let n = &v["notifications"][0];
        if n["state"] == "DELIVERED" {
            assert_eq!(n["attempts"], 2);
            assert_eq!(
                n["lastError"], "retcode 01: posizione non trovata",
                "the refusal stays visible"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not delivered: {v}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ente.received().len(), 2, "never again after retcode 00");
    ente.stop().await;
}

#[actix_web::test]
async fn an_ente_down_gets_its_backlog_in_order_once_it_is_back() {
    let ente = Ente::start().await;
    let url = ente.url("/hook");
    let app = spawn_app_edited(|c| with_endpoints(c, Some(&url), None)).await;
    ente.stop().await;
    // a position in two installments (two receipts of one position) and a single one
    let navs = create(&app, ORG_A, KEY_A, position("D-1", IBAN_A, &[500, 700])).await;
    let single = create(&app, ORG_A, KEY_A, position("D-2", IBAN_A, &[900])).await;
    let (first, _) = pay(&app, ORG_A, &navs[0]).await;
    let (second, _) = pay(&app, ORG_A, &navs[1]).await;
    let (third, _) = pay(&app, ORG_A, &single[0]).await;
    // the backlog grows, the attempts fail, the breaker opens
    let app_ref = &app;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = metrics(app_ref).await;
        let v = notifications(app_ref, ORG_A, KEY_A, "?state=RETRYING").await;
        let open = format!("mpay_ente_breaker_state{{organization=\"{ORG_A}\"}} 1");
        if m.contains(&open) && v["pageInfo"]["items_found"].as_u64() >= Some(1) {
            let n = &v["notifications"][0];
            assert!(
                n["lastError"].as_str().unwrap().contains("connection"),
                "{n}"
            );
            assert!(n["nextAttemptAt"].is_string(), "{n}");
            break;
        }
        assert!(Instant::now() < deadline, "breaker never opened: {v}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let pending = notifications(&app, ORG_A, KEY_A, "").await;
    assert_eq!(pending["pageInfo"]["items_found"], 3);
    assert!(ente.received().is_empty());
    // the Ente comes back: everything arrives, the installments in order, the breaker closes
    ente.serve(None).await;
    eventually("the backlog delivered", || ente.distinct().len() == 3).await;
    let got = ente.distinct();
    let at = |id: &str| got.iter().position(|r| r.body.contains(id)).unwrap();
    assert!(at(&first) < at(&second), "one position's receipts in order");
    assert!(got.iter().any(|r| r.body.contains(third.as_str())));
    assert!(got.iter().all(|r| r.signature_ok));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = notifications(app_ref, ORG_A, KEY_A, "?state=DELIVERED").await;
        let m = metrics(app_ref).await;
        let closed = format!("mpay_ente_breaker_state{{organization=\"{ORG_A}\"}} 0");
        if v["pageInfo"]["items_found"] == 3 && m.contains(&closed) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all delivered / breaker not closed: {v}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        ente.received().len(),
        3,
        "each delivered once after the outage"
    );
    ente.stop().await;
}

/// The pipelined pass (reads while calls are in flight, outcomes written in groups) with a
/// backlog many times its window: every receipt delivered once, each position's installments
/// in order, with several positions in flight at once.
#[actix_web::test]
async fn a_backlog_larger_than_the_window_keeps_each_positions_order() {
    let ente = Ente::start().await;
    let url = ente.url("/hook");
    let app = spawn_app_edited(|c| {
        let mut c = with_endpoints(c, Some(&url), None);
        // a small window and several calls in flight: the backlog takes many reads
        c.push_str("batch = 5\nconcurrency = 3\n");
        c
    })
    .await;
    ente.stop().await;
    let mut by_position: Vec<Vec<String>> = Vec::new();
    let mut navs = Vec::new();
    for p in 0..5 {
        navs.push(
            create(
                &app,
                ORG_A,
                KEY_A,
                position(&format!("W-{p}"), IBAN_A, &[100, 200, 300]),
            )
            .await,
        );
        by_position.push(Vec::new());
    }
    // one position's installments after the other: a read holds several of one position,
    // and the next read must not take a later one while an earlier one is in hand
    for (p, nav) in navs.iter().enumerate() {
        for n in nav {
            let (receipt, _) = pay(&app, ORG_A, n).await;
            by_position[p].push(receipt);
        }
    }
    // a slow Ente: a later installment sent while an earlier one is in flight would overlap
    ente.state.lock().unwrap().slow_ms = 30;
    ente.serve(None).await;
    eventually("the backlog delivered", || ente.distinct().len() == 15).await;
    assert_eq!(
        ente.state.lock().unwrap().overlaps,
        0,
        "never two calls of one position at once"
    );
    let got = ente.distinct();
    for receipts in &by_position {
        let at: Vec<usize> = receipts
            .iter()
            .map(|id| {
                got.iter()
                    .position(|r| r.body.contains(id.as_str()))
                    .unwrap()
            })
            .collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "a position's receipts in order: {receipts:?} at {at:?}"
        );
    }
    assert!(got.iter().all(|r| r.signature_ok));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = notifications(&app, ORG_A, KEY_A, "?state=DELIVERED&limit=50").await;
        if v["pageInfo"]["items_found"] == 15 {
            break;
        }
        assert!(Instant::now() < deadline, "not all recorded: {v}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ente.received().len(), 15, "each delivered once");
    ente.stop().await;
}

/// A FlussoRiversamento for `receiver` with rows `(iuv, iur, cents, outcome code)`.
fn flow_for(receiver: &str, id: &str, rows: &[(String, String, i64, &str)]) -> String {
    let euros = |c: i64| format!("{}.{:02}", c / 100, c % 100);
    let total: i64 = rows.iter().map(|r| r.2).sum();
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><pag:FlussoRiversamento xmlns:pag=\"http://www.digitpa.gov.it/schemas/2011/Pagamenti/\">\
<pag:versioneOggetto>1.0</pag:versioneOggetto><pag:identificativoFlusso>{id}</pag:identificativoFlusso>\
<pag:dataOraFlusso>2026-07-04T08:30:00</pag:dataOraFlusso><pag:identificativoUnivocoRegolamento>TRN-{id}</pag:identificativoUnivocoRegolamento>\
<pag:dataRegolamento>2026-07-03</pag:dataRegolamento><pag:istitutoMittente><pag:identificativoUnivocoMittente>\
<pag:tipoIdentificativoUnivoco>B</pag:tipoIdentificativoUnivoco><pag:codiceIdentificativoUnivoco>PSPXITXXXXX</pag:codiceIdentificativoUnivoco>\
</pag:identificativoUnivocoMittente><pag:denominazioneMittente>PSP di Prova</pag:denominazioneMittente></pag:istitutoMittente>\
<pag:istitutoRicevente><pag:identificativoUnivocoRicevente><pag:tipoIdentificativoUnivoco>G</pag:tipoIdentificativoUnivoco>\
<pag:codiceIdentificativoUnivoco>{receiver}</pag:codiceIdentificativoUnivoco></pag:identificativoUnivocoRicevente></pag:istitutoRicevente>\
<pag:numeroTotalePagamenti>{n}</pag:numeroTotalePagamenti><pag:importoTotalePagamenti>{t}</pag:importoTotalePagamenti>",
        n = rows.len(),
        t = euros(total)
    );
    for (i, (iuv, iur, cents, code)) in rows.iter().enumerate() {
        x.push_str(&format!(
            "<pag:datiSingoliPagamenti><pag:identificativoUnivocoVersamento>{iuv}</pag:identificativoUnivocoVersamento>\
<pag:identificativoUnivocoRiscossione>{iur}</pag:identificativoUnivocoRiscossione><pag:indiceDatiSingoloPagamento>{idx}</pag:indiceDatiSingoloPagamento>\
<pag:singoloImportoPagato>{a}</pag:singoloImportoPagato><pag:codiceEsitoSingoloPagamento>{code}</pag:codiceEsitoSingoloPagamento>\
<pag:dataEsitoSingoloPagamento>2026-07-02</pag:dataEsitoSingoloPagamento></pag:datiSingoliPagamenti>",
            idx = i + 1,
            a = euros(*cents)
        ));
    }
    x.push_str("</pag:FlussoRiversamento>");
    x
}

#[actix_web::test]
async fn a_revoked_payment_reaches_the_soap_ente_as_notifica_revoca_pagamento_after_its_payment() {
    let ente = Ente::start().await;
    let url = ente.url("/IntegraenteService/notifica");
    let app = spawn_app_edited(|c| with_endpoints(c, None, Some(&url))).await;
    let navs = [
        create(&app, ORG_B, KEY_B, position("R-1", IBAN_B, &[1500])).await,
        create(&app, ORG_B, KEY_B, position("R-2", IBAN_B, &[2500])).await,
    ];
    let (revoked, _) = pay(&app, ORG_B, &navs[0][0]).await;
    let (kept, _) = pay(&app, ORG_B, &navs[1][0]).await;
    eventually("both payments notified", || ente.received().len() >= 2).await;

    // a reporting flow: the first payment revoked (outcome 3), the second executed (0); an
    // unknown receipt revoked is ignored
    let flow = flow_for(
        ORG_B,
        "2026-07-04PSPXITXXXXX-R1",
        &[
            (navs[0][0][1..].to_string(), revoked.clone(), 1500, "3"),
            (navs[1][0][1..].to_string(), kept.clone(), 2500, "0"),
            (
                "99999999999999999".to_string(),
                "unknown-iur".to_string(),
                100,
                "3",
            ),
        ],
    );
    let import = |body: String| {
        app.client
            .post(format!(
                "{}/api/v1/organizations/{ORG_B}/fdrs/import",
                app.base
            ))
            .header("Ocp-Apim-Subscription-Key", KEY_B)
            .header("X-File-Name", "flow-r1.xml")
            .body(body)
            .send()
    };
    let r = import(flow.clone()).await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    eventually("the revocation notified", || ente.received().len() >= 3).await;
    let got = ente.received();
    let body = &got[2].body;
    assert!(
        body.contains("NotificaRevocaPagamentoRequest"),
        "notificaRevocaPagamento: {body}"
    );
    assert!(!body.contains("<d:NotificaPagamentoRequest"));
    let fields = |b: &str, name: &str| {
        let open = format!("<d:{name}>");
        b.split(&open)
            .nth(1)
            .and_then(|rest| rest.split(&format!("</d:{name}>")).next())
            .map(str::to_string)
    };
    assert_eq!(
        fields(body, "codiceTransazionePagonet"),
        Some(revoked.clone())
    );
    assert_eq!(fields(body, "numeroAvvisoPagoPA"), Some(navs[0][0].clone()));
    assert_eq!(fields(body, "importoPagato").as_deref(), Some("1500"));
    assert!(fields(body, "rtXML").is_some(), "the RT goes along");
    // the same fields as the payment's notificaPagamento, in the same order
    let payment = got
        .iter()
        .find(|g| {
            g.body.contains("NotificaPagamentoRequest")
                && fields(&g.body, "codiceTransazionePagonet").as_deref() == Some(revoked.as_str())
        })
        .unwrap();
    assert_eq!(
        fields(&payment.body, "rtXML"),
        fields(body, "rtXML"),
        "same RT"
    );
    // a second import of the same flow (unchanged) and a later revision queue nothing more
    let r = import(flow).await.unwrap();
    assert_eq!(r.status(), 200);
    let v = notifications(&app, ORG_B, KEY_B, "").await;
    assert_eq!(v["pageInfo"]["items_found"], 3, "{v}");
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ente.received().len(), 3, "one revocation, once");
    ente.stop().await;
}

/// `mpay fdr import` (the CLI's import, run here on the node's store) queues the revocations
/// a flow announces with the same function as the REST import
/// (`Store::enqueue_revocations_of_flow`): visible in `GET …/notifications` at once, delivered
/// by the connector when it is woken (a node's start; here the `fdr.acquired` a running node
/// publishes), once; the same flow imported again queues nothing more.
#[actix_web::test]
async fn the_cli_flow_import_queues_the_revocations_the_rest_import_queues() {
    let ente = Ente::start().await;
    let url = ente.url("/IntegraenteService/notifica");
    let app = spawn_app_edited(|c| with_endpoints(c, None, Some(&url))).await;
    let nav = create(&app, ORG_B, KEY_B, position("CLI-1", IBAN_B, &[1500]))
        .await
        .remove(0);
    let (revoked, _) = pay(&app, ORG_B, &nav).await;
    eventually("the payment notified", || !ente.received().is_empty()).await;

    let flow_id = "2026-07-04PSPXITXXXXX-C1";
    let flow = flow_for(
        ORG_B,
        flow_id,
        &[(nav[1..].to_string(), revoked.clone(), 1500, "3")],
    );
    let file = app.dir.path().join("flow-c1.xml");
    std::fs::write(&file, flow).unwrap();
    let cli_import = |file: std::path::PathBuf| {
        let store = app.store.clone();
        actix_web::rt::task::spawn_blocking(move || {
            mpay::recon_cli::import(&store, ORG_B, mpay::recon_cli::Kind::Flow, &[file]).unwrap()
        })
    };
    let code = cli_import(file.clone()).await.unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let v = notifications(&app, ORG_B, KEY_B, "").await;
    assert_eq!(v["pageInfo"]["items_found"], 2, "{v}");
    let revocation = v["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "PAYMENT_REVOCATION")
        .unwrap_or_else(|| panic!("no revocation queued: {v}"))
        .clone();
    assert_eq!(revocation["receiptId"], revoked.as_str());
    // the same flow again: unchanged, nothing more queued
    let code = cli_import(file).await.unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let v = notifications(&app, ORG_B, KEY_B, "").await;
    assert_eq!(v["pageInfo"]["items_found"], 2, "{v}");

    app.app_state.tell(mpay_actors::bus::Event::FdrAcquired {
        organization: ORG_B.into(),
        flow_id: flow_id.into(),
    });
    eventually("the revocation notified", || ente.received().len() >= 2).await;
    let got = ente.received();
    assert!(
        got[1].body.contains("NotificaRevocaPagamentoRequest") && got[1].body.contains(&revoked),
        "notificaRevocaPagamento of {revoked}: {}",
        got[1].body
    );
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ente.received().len(), 2, "one revocation, once");
    ente.stop().await;
}

/// Certificates for the mTLS Ente: a private CA, the Ente's server certificate (localhost)
/// and mpay's client certificate, both issued by the CA. PEM: (ca, server cert, server key,
/// client cert + key).
fn mtls_material() -> (String, String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Ente test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["mpay-client".to_string()]).unwrap();
    client_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mpay");
    let client = client_params.signed_by(&client_key, &issuer).unwrap();
    (
        ca_cert.pem(),
        server.pem(),
        server_key.serialize_pem(),
        format!("{}{}", client.pem(), client_key.serialize_pem()),
    )
}

/// An Ente over HTTPS that requires a client certificate issued by `ca_pem`.
async fn mtls_ente(ca_pem: &str, cert_pem: &str, key_pem: &str) -> (Ente, u16) {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let ente = Ente {
        state: Arc::default(),
        port,
        handle: Arc::default(),
    };
    let data = web::Data::new(ente.state.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(receive))
    })
    .workers(1)
    .disable_signals()
    .listen_rustls_0_23(l, config)
    .unwrap()
    .run();
    *ente.handle.lock().unwrap() = Some(server.handle());
    actix_rt::spawn(server);
    (ente, port)
}

#[actix_web::test]
async fn an_mtls_ente_accepts_the_configured_client_certificate_and_refuses_a_node_without_it() {
    let (ca, server_cert, server_key, client) = mtls_material();
    let (ente, port) = mtls_ente(&ca, &server_cert, &server_key).await;
    let certs = tempfile::tempdir().unwrap();
    let (ca_path, client_path) = (certs.path().join("ca.pem"), certs.path().join("client.pem"));
    std::fs::write(&ca_path, &ca).unwrap();
    std::fs::write(&client_path, &client).unwrap();
    let url = format!("https://localhost:{port}/hook");
    let endpoint = |with_cert: bool| {
        let mut t = format!(
            "\n[organizations.notification]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\ntimeout_ms = 2000\nca_cert = \"{}\"\n",
            ca_path.display()
        );
        if with_cert {
            t.push_str(&format!("client_cert = \"{}\"\n", client_path.display()));
        }
        move |mut cfg: String| {
            let second = cfg.match_indices("[[organizations]]").nth(1).unwrap().0;
            cfg.insert_str(second, &t);
            cfg.push_str(
                "\n[notifications]\nbackoff_base_ms = 100\nbackoff_max_ms = 400\nbreaker_failures = 2\nbreaker_open_ms = 300\n",
            );
            cfg
        }
    };

    // with the client certificate: delivered, signed
    let app = spawn_app_edited(endpoint(true)).await;
    let nav = create(&app, ORG_A, KEY_A, position("M-1", IBAN_A, &[1000])).await;
    let (receipt_id, _) = pay(&app, ORG_A, &nav[0]).await;
    eventually("delivery over mTLS", || !ente.received().is_empty()).await;
    let got = ente.received();
    assert!(got[0].signature_ok);
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["receipt"]["receiptId"], receipt_id.as_str());

    // without it: the handshake fails, the notification is retried, the breaker opens
    let bare = spawn_app_edited(endpoint(false)).await;
    let nav = create(&bare, ORG_A, KEY_A, position("M-2", IBAN_A, &[1000])).await;
    pay(&bare, ORG_A, &nav[0]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = notifications(&bare, ORG_A, KEY_A, "?state=RETRYING").await;
        let m = metrics(&bare).await;
        let open = format!("mpay_ente_breaker_state{{organization=\"{ORG_A}\"}} 1");
        let n = &v["notifications"][0];
        if n["attempts"].as_u64().unwrap_or(0) >= 2 && m.contains(&open) {
            let e = n["lastError"].as_str().unwrap();
            assert!(e.contains("connection") || e.contains("transport"), "{e}");
            break;
        }
        assert!(Instant::now() < deadline, "not refused as expected: {v}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        ente.received().len(),
        1,
        "nothing reached the Ente without the certificate"
    );
    ente.stop().await;
}

/// `flows = true` on the endpoint whose URL is `url` (added by [`with_endpoints`]).
fn with_flows(cfg: String, url: &str) -> String {
    let line = format!("url = \"{url}\"\n");
    assert!(cfg.contains(&line), "no endpoint {url}");
    cfg.replace(&line, &format!("{line}flows = true\n"))
}

/// Imports a flow file through the REST API.
async fn import_flow(
    app: &TestApp,
    org: &str,
    key: &str,
    name: &str,
    body: String,
) -> (u16, Value) {
    let r = app
        .client
        .post(format!(
            "{}/api/v1/organizations/{org}/fdrs/import",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", key)
        .header("X-File-Name", name)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Polls the notifications of `org` until `cond` holds on the listing.
async fn eventually_listed(
    app: &TestApp,
    org: &str,
    key: &str,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = notifications(app, org, key, "").await;
        if cond(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reporting-flow forwarding to a webhook Ente (issue 13, INTERFACES.md §6.3): a flow imported
/// through `POST …/fdrs/import` reaches the Ente once, signed, with its header and every row in
/// cents; the same file again forwards nothing; a corrected file is forwarded again; the
/// listing tells the flow from receipts, and a resend delivers it again with the same key.
#[actix_web::test]
async fn a_webhook_ente_gets_each_stored_flow_once_signed_with_its_rows() {
    let ente = Ente::start().await;
    let url = ente.url("/hooks/mpay");
    let app = spawn_app_edited(|c| with_flows(with_endpoints(c, Some(&url), None), &url)).await;
    let flow_id = "2026-07-04PSPXITXXXXX-W1";
    let rows = |second: i64| {
        vec![
            (
                "01000000000000011".to_string(),
                "iur-w1".to_string(),
                1500,
                "0",
            ),
            (
                "01000000000000012".to_string(),
                "iur-w2".to_string(),
                second,
                "0",
            ),
        ]
    };
    let flow = flow_for(ORG_A, flow_id, &rows(2505));
    let (status, v) = import_flow(&app, ORG_A, KEY_A, "flow-w1.xml", flow.clone()).await;
    assert_eq!(status, 201, "{v}");
    eventually("the flow forwarded", || !ente.received().is_empty()).await;
    let got = ente.received();
    assert!(got[0].signature_ok, "signed with the Ente's secret");
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["event"], "REPORTING_FLOW");
    assert_eq!(body["organizationFiscalCode"], ORG_A);
    assert_eq!(body["flowId"], flow_id);
    assert_eq!(body["revision"], 0);
    assert_eq!(body["regulation"], format!("TRN-{flow_id}"));
    assert_eq!(body["regulationDate"], "2026-07-03");
    assert_eq!(body["senderId"], "PSPXITXXXXX");
    assert_eq!(body["source"], "flow-w1.xml");
    assert_eq!(body["declaredTotalCents"], 4005);
    assert_eq!(body["totalCents"], 4005);
    let got_rows = body["rows"].as_array().unwrap();
    assert_eq!(got_rows.len(), 2);
    assert_eq!(got_rows[0]["iuv"], "01000000000000011");
    assert_eq!(got_rows[0]["iur"], "iur-w1");
    assert_eq!(got_rows[0]["amountCents"], 1500);
    assert_eq!(got_rows[0]["payStatus"], "EXECUTED");
    assert_eq!(got_rows[1]["amountCents"], 2505);
    assert_eq!(got_rows[1]["date"], "2026-07-02");
    assert_eq!(
        got[0].idempotency_key.as_deref(),
        body["notificationId"].as_str()
    );
    let v = eventually_listed(&app, ORG_A, KEY_A, "the flow DELIVERED", |v| {
        v["notifications"][0]["state"] == "DELIVERED"
    })
    .await;
    assert_eq!(v["pageInfo"]["items_found"], 1, "{v}");
    let listed = &v["notifications"][0];
    assert_eq!(listed["kind"], "REPORTING_FLOW");
    assert_eq!(listed["flowId"], flow_id);
    assert_eq!(listed["flowRevision"], 0);
    assert_eq!(listed["flowSender"], "PSPXITXXXXX");
    assert_eq!(listed["idempotencyKey"], body["notificationId"]);

    // the same file again: unchanged, nothing forwarded
    let (status, v) = import_flow(&app, ORG_A, KEY_A, "flow-w1.xml", flow).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["outcome"], "UNCHANGED");
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        ente.received().len(),
        1,
        "an unchanged flow is not forwarded"
    );
    assert_eq!(
        notifications(&app, ORG_A, KEY_A, "").await["pageInfo"]["items_found"],
        1
    );

    // a corrected file of the same flow: forwarded again, as a new notification
    let (status, v) = import_flow(
        &app,
        ORG_A,
        KEY_A,
        "flow-w1-bis.xml",
        flow_for(ORG_A, flow_id, &rows(2600)),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["outcome"], "REPLACED");
    eventually("the corrected flow forwarded", || {
        ente.received().len() >= 2
    })
    .await;
    let got = ente.received();
    let second: Value = serde_json::from_str(&got[1].body).unwrap();
    assert!(got[1].signature_ok);
    assert_eq!(second["rows"][1]["amountCents"], 2600);
    assert_eq!(second["totalCents"], 4100);
    assert_ne!(got[1].idempotency_key, got[0].idempotency_key);

    // an operator's resend of the first: delivered again with the same key
    let id = listed["id"].as_str().unwrap();
    let r = app
        .client
        .post(format!(
            "{}/api/v1/organizations/{ORG_A}/notifications/{id}/resend",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    eventually("the resend", || ente.received().len() >= 3).await;
    let got = ente.received();
    assert_eq!(got[2].idempotency_key, got[0].idempotency_key);
    assert!(got[2].signature_ok);
    assert_eq!(ente.distinct().len(), 2, "two flow notifications in all");
    ente.stop().await;
}

/// Reporting-flow forwarding to a SOAP Ente: `inviaFlussoRend` with HTTP Basic auth to the
/// endpoint; `retcode 01` is retried, `00` acks it and nothing is sent after; the same flow
/// imported again is not forwarded. A receipt-only Ente (flows off) gets no flow.
#[actix_web::test]
async fn a_soap_ente_gets_invia_flusso_rend_and_a_retcode_01_is_retried() {
    let ente = Ente::start().await;
    ente.state.lock().unwrap().retcodes = vec!["01"];
    let hook = Ente::start().await;
    let url = ente.url("/RendicontazioneEnte/inviaFlussoRend");
    let hook_url = hook.url("/hooks/mpay");
    // B forwards its flows over SOAP; A has a webhook without flows
    let app =
        spawn_app_edited(|c| with_flows(with_endpoints(c, Some(&hook_url), Some(&url)), &url))
            .await;
    let flow_id = "2026-07-04PSPXITXXXXX-S1";
    let flow = flow_for(
        ORG_B,
        flow_id,
        &[
            (
                "01000000000000021".to_string(),
                "iur-s1".to_string(),
                1500,
                "0",
            ),
            (
                "01000000000000022".to_string(),
                "iur-s2".to_string(),
                2505,
                "0",
            ),
        ],
    );
    let (status, v) = import_flow(&app, ORG_B, KEY_B, "flow-s1.xml", flow.clone()).await;
    assert_eq!(status, 201, "{v}");
    let v = eventually_listed(&app, ORG_B, KEY_B, "the flow DELIVERED", |v| {
        v["notifications"][0]["state"] == "DELIVERED"
    })
    .await;
    let listed = &v["notifications"][0];
    assert_eq!(listed["kind"], "REPORTING_FLOW");
    assert_eq!(listed["attempts"], 2, "01 then 00: {v}");
    let got = ente.received();
    assert_eq!(got.len(), 2, "refused once, acked once");
    for g in &got {
        assert!(
            g.body.contains("<d:InviaFlussoRendRequest>"),
            "inviaFlussoRend: {}",
            g.body
        );
        assert_eq!(
            g.authorization.as_deref(),
            Some("Basic bXBheTpwdy1vZi10aGUtZW50ZQ=="),
            "HTTP Basic mpay:pw-of-the-ente"
        );
    }
    assert_eq!(got[0].body, got[1].body, "the same request again");
    let body = &got[1].body;
    assert!(body.contains(&format!(
        "<d:chiaveRendicontazione>{flow_id}</d:chiaveRendicontazione><d:tipoInvio>A</d:tipoInvio>"
    )));
    assert_eq!(body.matches("<d:RecordVersamento>").count(), 2);
    assert!(body.contains("<d:CodiceIUV>01000000000000021</d:CodiceIUV>"));
    assert!(body.contains("<d:ChiaveSpedizionePagamento>iur-s2</d:ChiaveSpedizionePagamento>"));
    assert!(body.contains("<d:Importo>25.05</d:Importo>"));
    assert!(body.contains(
        "<d:TotaleDocumenti>2</d:TotaleDocumenti><d:ImportoTotali>40.05</d:ImportoTotali>"
    ));
    let doc = mpay_messages::wire::xml::parse(body.as_bytes()).unwrap();
    assert_eq!(doc.local, "Envelope", "well-formed SOAP");

    // the same flow again: nothing more
    let (status, v) = import_flow(&app, ORG_B, KEY_B, "flow-s1.xml", flow).await;
    assert_eq!(status, 200, "{v}");
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ente.received().len(), 2, "nothing after the ack");
    // A forwards no flows: its flow is stored, its Ente hears nothing
    let (status, v) = import_flow(
        &app,
        ORG_A,
        KEY_A,
        "flow-a.xml",
        flow_for(
            ORG_A,
            "2026-07-04PSPXITXXXXX-A1",
            &[("01000000000000031".into(), "iur-a1".into(), 100, "0")],
        ),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert!(hook.received().is_empty(), "flows = false: no flow");
    assert_eq!(
        notifications(&app, ORG_A, KEY_A, "").await["pageInfo"]["items_found"],
        0
    );
    ente.stop().await;
    hook.stop().await;
}
