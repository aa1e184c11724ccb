//! The receipt e-mail end to end (issue 15): the real node (temp store, random port) with a
//! receipt PDF renderer injected, payments made over the station with the simulator's own XML,
//! and a real SMTP server — `aiosmtpd` (Python, installed by `ops/test`) running
//! `tests/smtp_sink.py`, which writes every accepted message to a folder as JSON (headers,
//! text, attachments in hex). The server is started late, or stopped, to play an outage.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::smtp::{messages, messages_of, SmtpSink};
use common::*;
use mpay::app::Application;
use mpay_config::{Settings, Sources};
use serde_json::{json, Value};

/// The PDF the injected renderer returns (a known byte string).
const TEST_PDF: &[u8] = b"%PDF-1.4\n% mpay receipt e-mail test\n%%EOF\n";
const DEBTOR_EMAIL: &str = "mario.rossi@example.org";

fn mail_config(port: u16) -> String {
    format!(
        "\n[mail]\nenabled = true\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"Comune di Borgo Demo <ricevute@borgo-demo.example.it>\"\ntimeout_ms = 2000\nbackoff_base_ms = 100\nbackoff_max_ms = 400\n"
    )
}

/// The node with `[mail]` on `port` and the test renderer.
async fn spawn_mail_app(port: u16) -> TestApp {
    spawn_mail_app_with(&mail_config(port)).await
}

/// The node with the `[mail]` section `mail` and the test renderer.
async fn spawn_mail_app_with(mail: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mpay.toml");
    let text = format!("{}{mail}", config_text(&dir.path().join("data")));
    std::fs::write(&cfg, text).unwrap();
    let settings = Settings::load(&Sources {
        demo: false,
        file: Some(cfg),
        env: false,
    })
    .unwrap();
    let renderer: mpay_actors::mailer::ReceiptPdf = Arc::new(|r: &mpay_storage::StoredReceipt| {
        assert!(!r.receipt_id.is_empty());
        Ok(TEST_PDF.to_vec())
    });
    let app = Application::build_with_receipt_pdf(settings, false, Some(renderer))
        .await
        .unwrap();
    let t = TestApp {
        base: format!("http://{}", app.addr),
        client: reqwest::Client::new(),
        dir,
        store: app.store.clone(),
        app_state: app.state.clone(),
        scheduler: app.scheduler.clone(),
        handle: app.server_handle(),
    };
    actix_rt::spawn(async move {
        let _ = app.run_until_stopped().await;
    });
    t.wait_for("readiness", || async {
        t.client
            .get(format!("{}/health/ready", t.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    t
}

/// Creates a published one-option position (debtor e-mail `email`) and pays it at the
/// station; returns the receipt id.
async fn create_and_pay(app: &TestApp, iupd: &str, email: Option<&str>) -> String {
    let mut body = json!({
        "iupd": iupd, "type": "F", "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi",
        "companyName": "Comune di Borgo Demo",
        "paymentOption": [{"amount": 123456, "description": "Concessione loculo",
            "isPartialPayment": false, "dueDate": "2030-12-31T23:59:59",
            "transfer": [{"idTransfer": "1", "amount": 123456,
                "remittanceInformation": "Concessione loculo", "category": "9/0201133IM/",
                "iban": IBAN_A}]}]
    });
    if let Some(e) = email {
        body["email"] = json!(e);
    }
    let r = app
        .client
        .post(format!("{}?toPublish=true", app.positions_url(ORG_A)))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    let nav = v["paymentOption"][0]["nav"].as_str().unwrap().to_string();
    pay_notice(&app.client, &app.base, ORG_A, &nav)
        .await
        .receipt_id
}

/// `GET /api/v1/organizations/{org}{path}` with `key`.
async fn api_get(app: &TestApp, org: &str, key: &str, path: &str) -> reqwest::Response {
    app.client
        .get(format!("{}/api/v1/organizations/{org}{path}", app.base))
        .header("Ocp-Apim-Subscription-Key", key)
        .send()
        .await
        .unwrap()
}

async fn email_state(app: &TestApp, receipt_id: &str) -> (u16, Value) {
    let r = api_get(app, ORG_A, KEY_A, &format!("/receipts/{receipt_id}/email")).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn wait_messages(out: &Path, receipt_id: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = messages_of(out, receipt_id);
        if m.len() >= n {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{n} message(s) of {receipt_id} not received: {:?}",
            messages(out)
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_state(app: &TestApp, receipt_id: &str, what: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = email_state(app, receipt_id).await;
        if status == 200 && what(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "e-mail state: {status} {v}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn the_receipt_arrives_by_email_with_its_pdf_its_xml_and_an_italian_text() {
    let port = free_port();
    let out = tempfile::tempdir().unwrap();
    let _sink = SmtpSink::start(port, out.path());
    let app = spawn_mail_app(port).await;

    let receipt_id = create_and_pay(&app, "MAIL-1", Some(DEBTOR_EMAIL)).await;
    let m = wait_messages(out.path(), &receipt_id, 1).await;
    let m = &m[0];
    assert_eq!(m["rcptTos"], json!([DEBTOR_EMAIL]));
    assert_eq!(m["mailFrom"], "ricevute@borgo-demo.example.it");
    let subject = m["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("Ricevuta di pagamento pagoPA – Comune di Borgo Demo – avviso 3"),
        "{subject}"
    );
    let text = m["text"].as_str().unwrap();
    assert!(text.starts_with("Gentile utente,"), "{text}");
    assert!(
        text.contains("il pagamento di 1.234,56 euro a favore di Comune di Borgo Demo (codice fiscale 80001234568) è stato eseguito"),
        "{text}"
    );
    assert!(text.contains("Causale: Concessione loculo"), "{text}");
    assert!(text.contains(&format!("Identificativo della ricevuta: {receipt_id}")));
    assert!(text.contains("in formato PDF"));
    let attachments = m["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 2, "{attachments:?}");
    let pdf = &attachments[0];
    assert_eq!(pdf["contentType"], "application/pdf");
    assert_eq!(
        pdf["filename"],
        format!("ricevuta-{receipt_id}.pdf").as_str()
    );
    assert_eq!(
        hex::decode(pdf["hex"].as_str().unwrap()).unwrap(),
        TEST_PDF,
        "the injected renderer's bytes, unchanged"
    );
    let xml = &attachments[1];
    assert_eq!(xml["contentType"], "application/xml");
    let stored: Value = api_get(&app, ORG_A, KEY_A, &format!("/receipts/{receipt_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(hex::decode(xml["hex"].as_str().unwrap()).unwrap()).unwrap(),
        stored["rawXml"].as_str().unwrap(),
        "the receipt as received, byte-exact"
    );

    // visible per receipt
    let v = wait_state(&app, &receipt_id, |v| v["state"] == "SENT").await;
    assert_eq!(v["recipients"], json!([DEBTOR_EMAIL]));
    assert_eq!(v["attempts"], 1);
    assert!(v["sentAt"].is_string() && v.get("nextAttemptAt").is_none());
    // the mailer is a supervised actor; its numbers are in the metrics
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
        actors.to_string().contains("ReceiptMailer"),
        "/health/actors: {actors}"
    );
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sent: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mpay_mail_sent_total "))
        .unwrap_or_else(|| panic!("no mpay_mail_sent_total: {metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(sent >= 1.0, "{metrics}");
    assert!(metrics.contains("mpay_mail_pending"), "{metrics}");

    // a receipt nobody can be written to: no e-mail, and the API says so
    let silent = create_and_pay(&app, "MAIL-2", None).await;
    let (status, v) = email_state(&app, &silent).await;
    assert_eq!(status, 404, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("has no e-mail"),
        "{v}"
    );
    // another organization's key sees nothing of it
    let r = api_get(&app, ORG_B, KEY_B, &format!("/receipts/{receipt_id}/email")).await;
    assert_eq!(r.status(), 404);
    let r = api_get(&app, ORG_A, KEY_B, &format!("/receipts/{receipt_id}/email")).await;
    assert_eq!(r.status(), 403);

    // resend: one more copy, SENT again
    let r = app
        .client
        .post(format!(
            "{}/api/v1/organizations/{ORG_A}/receipts/{receipt_id}/email/resend",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let copies = wait_messages(out.path(), &receipt_id, 2).await;
    assert_eq!(copies.len(), 2);
    wait_state(&app, &receipt_id, |v| {
        v["state"] == "SENT" && v["attempts"] == 2
    })
    .await;
    app.handle.stop(true).await;
}

#[actix_web::test]
async fn an_smtp_outage_delays_the_email_which_arrives_once_when_the_server_is_back() {
    let port = free_port();
    let out = tempfile::tempdir().unwrap();
    // no SMTP server yet
    let app = spawn_mail_app(port).await;
    let receipt_id = create_and_pay(&app, "OUT-1", Some(DEBTOR_EMAIL)).await;
    let v = wait_state(&app, &receipt_id, |v| {
        v["state"] == "RETRYING" && v["attempts"].as_u64() >= Some(2)
    })
    .await;
    assert!(v["lastError"].is_string(), "{v}");
    assert!(v["nextAttemptAt"].is_string(), "{v}");
    assert!(messages(out.path()).is_empty());

    // the server comes back on the same port: the queued e-mail arrives
    let _sink = SmtpSink::start(port, out.path());
    wait_messages(out.path(), &receipt_id, 1).await;
    let v = wait_state(&app, &receipt_id, |v| v["state"] == "SENT").await;
    assert!(v["attempts"].as_u64().unwrap() >= 3, "{v}");

    // later work goes through, and the first receipt was not sent again
    let second = create_and_pay(&app, "OUT-2", Some("anna.bianchi@example.org")).await;
    wait_messages(out.path(), &second, 1).await;
    wait_state(&app, &second, |v| v["state"] == "SENT").await;
    assert_eq!(
        messages_of(out.path(), &receipt_id).len(),
        1,
        "exactly once"
    );
    assert_eq!(messages(out.path()).len(), 2);
    app.handle.stop(true).await;
}

#[actix_web::test]
async fn starttls_with_a_private_ca_and_auth_with_the_password_from_a_file() {
    let port = free_port();
    let out = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = files.path().join("smtp-cert.pem");
    let key = files.path().join("smtp-key.pem");
    let password = files.path().join("smtp-password");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    std::fs::write(&password, "pw-of-the-relay-0001\n").unwrap();
    let _sink = SmtpSink::start_with(
        port,
        out.path(),
        &[
            cert.as_os_str(),
            key.as_os_str(),
            "mpay".as_ref(),
            "pw-of-the-relay-0001".as_ref(),
        ],
    );
    let app = spawn_mail_app_with(&format!(
        "\n[mail]\nenabled = true\nhost = \"localhost\"\nport = {port}\ntls = \"starttls\"\nfrom = \"ricevute@borgo-demo.example.it\"\nusername = \"mpay\"\npassword_file = \"{}\"\nca_cert = \"{}\"\ntimeout_ms = 2000\nbackoff_base_ms = 100\nbackoff_max_ms = 400\n",
        password.display(),
        cert.display()
    ))
    .await;
    let receipt_id = create_and_pay(&app, "TLS-1", Some(DEBTOR_EMAIL)).await;
    let m = wait_messages(out.path(), &receipt_id, 1).await;
    assert_eq!(m[0]["rcptTos"], json!([DEBTOR_EMAIL]));
    let v = wait_state(&app, &receipt_id, |v| v["state"] == "SENT").await;
    assert_eq!(v["attempts"], 1, "accepted at the first attempt: {v}");
    app.handle.stop(true).await;
}
