//! The real `mpay serve --demo` process: a cart sent to Checkout survives a SIGKILL; after the
//! restart the receipt arrives (this test plays the Node with the simulator's own XML:
//! paGetPaymentV2 with paymentNote = idCart, then paSendRTV2) and the outcome page shows paid.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pagopa_sim::amount::Cents;
use pagopa_sim::build::{
    get_payment_request, receipt_from_payment, send_rt_request, GetPaymentOpts, PspInfo, QrCode,
    ReceiptDates, ReceiptOpts, StationIds, Version,
};
use pagopa_sim::model::{parse_payment_data, parse_response};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mpay");
const DEMO_ORG: &str = "80001234568";
const DEMO_KEY: &str = "demo-key-for-portal-tests";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(cwd: &Path, port: u16) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--demo", "--bind", &format!("127.0.0.1:{port}")])
        .current_dir(cwd)
        .env("MPAY_DEMO_API_KEY", DEMO_KEY)
        .env("MPAY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut banner = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("try: curl") {
            break;
        }
    }
    assert!(banner.contains("citizen portal"), "{banner}");
    assert!(banner.contains("extern.do link"), "{banner}");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client
        .get(format!("{base}/health/ready"))
        .send()
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, base)
}

struct Browser {
    client: reqwest::blocking::Client,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn send(&mut self, r: reqwest::blocking::RequestBuilder) -> (u16, String, Option<String>) {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let r = r.header("Cookie", cookie).send().unwrap();
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let kv = c.split(';').next().unwrap();
            let (k, v) = kv.split_once('=').unwrap();
            self.cookies.insert(k.into(), v.into());
        }
        let loc = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        (r.status().as_u16(), r.text().unwrap(), loc)
    }
    fn get(&mut self, url: &str) -> (u16, String, Option<String>) {
        let rb = self.client.get(url);
        self.send(rb)
    }
    fn post(&mut self, url: &str, form: &[(&str, &str)]) -> (u16, String, Option<String>) {
        let csrf = self.cookies.get("mpay_csrf").cloned().unwrap_or_default();
        let mut f = form.to_vec();
        f.push(("csrf", &csrf));
        let rb = self.client.post(url).form(&f);
        self.send(rb)
    }
}

fn soap(base: &str, action: &str, body: String) -> pagopa_sim::model::SoapResponse {
    let text = reqwest::blocking::Client::new()
        .post(format!("{base}/pagopa/paForNode"))
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", action)
        .body(body)
        .send()
        .unwrap()
        .text()
        .unwrap();
    parse_response(&text).unwrap()
}

#[test]
fn a_cart_at_checkout_survives_sigkill_and_is_paid_by_its_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut child, base) = serve(dir.path(), port);
    // a VALID demo notice
    let list: Value = reqwest::blocking::Client::new()
        .get(format!(
            "{base}/api/v1/organizations/{DEMO_ORG}/debtpositions?status=VALID&limit=50&page=0"
        ))
        .header("Ocp-Apim-Subscription-Key", DEMO_KEY)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let p = &list["payment_position_list"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))[0];
    let nav = p["paymentOption"][0]["nav"].as_str().unwrap().to_string();
    let cents = p["paymentOption"][0]["amount"].as_i64().unwrap();

    let mut b = Browser {
        client: reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        cookies: HashMap::new(),
    };
    b.get(&format!("{base}/"));
    let (s, _, loc) = b.post(
        &format!("{base}/carrello/aggiungi"),
        &[("ente", DEMO_ORG), ("avviso", &nav)],
    );
    assert_eq!(s, 303);
    let cart_path = loc.unwrap();
    let cart_id = cart_path.trim_start_matches("/carrello/").to_string();
    let (s, _, loc) = b.post(&format!("{base}{cart_path}/paga"), &[("email", "")]);
    assert_eq!(s, 303);
    assert!(loc.unwrap().contains("/checkout/pay/"));

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (mut child, base) = serve(dir.path(), port);

    // the Node activates and sends the receipt after the restart
    let ids = StationIds {
        id_pa: DEMO_ORG.into(),
        id_broker_pa: "01987654322".into(),
        id_station: "01987654322_01".into(),
    };
    let qr = QrCode {
        fiscal_code: DEMO_ORG.into(),
        notice_number: nav.clone(),
    };
    let r = soap(
        &base,
        "paGetPaymentV2",
        get_payment_request(
            Version::V2,
            &ids,
            &qr,
            &GetPaymentOpts {
                amount: Some(Cents(cents)),
                payment_note: Some(cart_id.clone()),
                ..Default::default()
            },
        ),
    );
    assert_eq!(r.label(), "OK");
    let data = parse_payment_data(r.body.child("data").unwrap()).unwrap();
    assert_eq!(
        data.payment_amount.0, cents,
        "the cart's amount is what paGetPayment answers"
    );
    // before the receipt the outcome page waits
    let (_, html, _) = b.get(&format!("{base}{cart_path}/esito?esito=ok"));
    assert!(
        html.contains("attendendo") || html.contains("in lavorazione"),
        "{html}"
    );
    let psp = PspInfo {
        id_psp: "TESTPSP".into(),
        fiscal_code: Some("00000000000".into()),
        partita_iva: None,
        company_name: "PSP di prova".into(),
        id_channel: "TESTPSP_01".into(),
        channel_description: "app".into(),
        payment_method: Some("CP".into()),
        fee: Some(Cents(100)),
    };
    let receipt = receipt_from_payment(
        Version::V2,
        &qr,
        &data,
        &psp,
        &ReceiptDates::now(),
        &ReceiptOpts {
            payment_note: Some(cart_id.clone()),
            primary_ci_incurred_fee: Some(Cents(0)),
            ..Default::default()
        },
        &mut rand::rng(),
    )
    .unwrap();
    let r = soap(
        &base,
        "paSendRTV2",
        send_rt_request(Version::V2, &ids, &receipt).unwrap(),
    );
    assert_eq!(r.label(), "OK");
    // the station told the resumed cart: its own page shows the item paid, nothing to pay
    let (s, html, _) = b.get(&format!("{base}{cart_path}"));
    assert_eq!(s, 200);
    assert!(
        html.contains("Pagato") && !html.contains("Paga con pagoPA"),
        "{html}"
    );
    let (s, html, _) = b.get(&format!("{base}{cart_path}/esito?esito=ok"));
    assert_eq!(s, 200);
    assert!(html.contains("Pagamento completato"), "{html}");
    assert!(
        html.contains(&receipt.receipt_id),
        "receipt id listed: {html}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
