//! The citizen portal in a real browser: headless Chromium (Debian `chromium`) driven over
//! WebDriver (`chromedriver`, Debian `chromium-driver`) with `fantoccini`, against the real node
//! on port 0 and the simulated pagoPA Checkout the demo embeds (`pagopa_sim::checkout`, which
//! pays by calling the station's paGetPaymentV2 / paSendRTV2 as the Node does).
//!
//! Every flow runs at a phone width (375 px) and a desktop width (1280 px): a spontaneous payment
//! from the home page to the outcome page, a notice payment, a cart of two organizations, the
//! seed's `extern.do` link (GET, and the same fields POSTed by an Ente's form), an expired
//! notice. axe-core (npm, `web/package.json` devDependencies) is injected into every page of
//! ours that the browser shows: no serious or critical violation. Screenshots are written to
//! `target/screenshots/` (or `$CARGO_TARGET_DIR/screenshots/`).
//!
//! Needs `chromium`, `chromium-driver` and `npm ci` in `web/` (ops/test installs them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use mpay::app::Application;
use mpay_config::{Settings, Sources};
use serde_json::{json, Value};

/// Chromium's flags: headless, and nothing that reaches for the network by itself (this
/// machine has none: without them Chromium stalls on its background services).
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// `chromedriver` on a free port, stopped when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    async fn start() -> Self {
        let bin = on_path(&["chromedriver"]).unwrap_or_else(|| {
            panic!("chromedriver is missing: apt-get install chromium chromium-driver (ops/test installs them)")
        });
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let driver = ChromeDriver { child, url };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = reqwest::get(format!("{}/status", driver.url))
                .await
                .map(|r| r.status() == 200)
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        driver
    }

    /// A new Chromium session with its own fresh profile, `width` CSS pixels wide.
    async fn session(&self, width: u32, profile: &Path) -> Client {
        let chromium = on_path(&["chromium", "chromium-browser"]).unwrap_or_else(|| {
            panic!("chromium is missing: apt-get install chromium chromium-driver (ops/test installs them)")
        });
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!("--window-size={width},900"));
        let phone = width < 600;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": args,
                "mobileEmulation": {"deviceMetrics": {
                    "width": width, "height": 900, "pixelRatio": 1.0, "mobile": phone, "touch": phone
                }}
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap();
        client
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// axe-core's findings over the pages checked.
struct Axe {
    source: String,
    pages: Vec<String>,
    by_impact: BTreeMap<String, usize>,
    by_rule: BTreeMap<String, usize>,
    blocking: Vec<String>,
}

impl Axe {
    fn load() -> Self {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("web/node_modules/axe-core/axe.min.js");
        let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: run `npm ci` in web/ (ops/test does; axe-core is a devDependency)",
                path.display()
            )
        });
        Axe {
            source,
            pages: Vec::new(),
            by_impact: BTreeMap::new(),
            by_rule: BTreeMap::new(),
            blocking: Vec::new(),
        }
    }

    /// Injects axe-core into the page shown and runs every rule (WCAG 2.x A/AA and best
    /// practices).
    async fn check(&mut self, c: &Client, page: &str) {
        let loaded: Value = c.execute("return typeof window.axe", vec![]).await.unwrap();
        if loaded != json!("object") {
            c.execute(&format!("{}\nreturn true;", self.source), vec![])
                .await
                .unwrap();
        }
        let result: Value = c
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                axe.run(document, { resultTypes: ['violations'] })
                  .then(r => done(r.violations.map(v => ({
                      id: v.id, impact: v.impact, help: v.help,
                      nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5) }))))
                  .catch(e => done({ error: String(e) }));"#,
                vec![],
            )
            .await
            .unwrap();
        let violations = result
            .as_array()
            .unwrap_or_else(|| panic!("axe failed on {page}: {result}"));
        self.pages.push(page.to_string());
        for v in violations {
            let impact = v["impact"].as_str().unwrap_or("unknown").to_string();
            let line = format!(
                "{page}: {} ({impact}) {} at {}",
                v["id"].as_str().unwrap_or("?"),
                v["help"].as_str().unwrap_or(""),
                v["nodes"]
            );
            println!("axe: {line}");
            *self.by_impact.entry(impact.clone()).or_default() += 1;
            *self
                .by_rule
                .entry(v["id"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
            if impact == "serious" || impact == "critical" {
                self.blocking.push(line);
            }
        }
    }

    fn summary(&self, width: u32) {
        println!(
            "axe-core summary at {width}px: {} pages checked, violations by impact {:?}, by rule {:?}",
            self.pages.len(),
            self.by_impact,
            self.by_rule
        );
        assert!(
            self.blocking.is_empty(),
            "serious or critical accessibility violations:\n{}",
            self.blocking.join("\n")
        );
        assert!(self.pages.len() >= 10, "{:?}", self.pages);
    }
}

/// One width's run: the browser, axe, the screenshots.
struct Run {
    c: Client,
    width: u32,
    axe: Axe,
    shots: PathBuf,
    base: String,
}

impl Run {
    /// The page now shown: axe-core, then a screenshot `<width>-<name>.png`.
    async fn page(&mut self, name: &str) {
        let ready: Value = self
            .c
            .execute("return document.readyState", vec![])
            .await
            .unwrap();
        assert_eq!(ready, json!("complete"), "{name}");
        // nothing wider than the screen: the page reflows (WCAG 1.4.10), no sideways scrolling
        let widths: Value = self
            .c
            .execute(
                "const d = document.documentElement; return [window.innerWidth, d.scrollWidth <= d.clientWidth]",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            widths,
            json!([self.width, true]),
            "{name}: page wider than the screen"
        );
        self.axe.check(&self.c, name).await;
        self.shot(name).await;
    }

    async fn shot(&mut self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}");
        let path = self.shots.join(format!("{}-{name}.png", self.width));
        std::fs::write(&path, png).unwrap();
    }

    async fn goto(&mut self, path: &str) {
        let url = if path.starts_with("http") || path.starts_with("data:") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        self.c.goto(&url).await.unwrap();
    }

    /// Clicks what `locator` finds and waits for the next page to be loaded.
    async fn click_and_wait(&self, what: &str, locator: Locator<'_>) {
        self.c
            .execute("window.__mpayOldPage = true", vec![])
            .await
            .unwrap();
        let e = self
            .c
            .find(locator)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        self.c
            .execute(
                "arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})",
                vec![serde_json::to_value(&e).unwrap()],
            )
            .await
            .unwrap();
        if let Err(err) = e.click().await {
            let png = self.c.screenshot().await.unwrap();
            let path = self.shots.join(format!("{}-FAILED-click.png", self.width));
            std::fs::write(&path, png).unwrap();
            panic!("{what}: {err} (screenshot {})", path.display());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state: Value = self
                .c
                .execute(
                    "return window.__mpayOldPage === true ? 'old' : document.readyState",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            if state == json!("complete") {
                break;
            }
            if Instant::now() > deadline {
                let png = self.c.screenshot().await.unwrap();
                let path = self.shots.join(format!("{}-FAILED-wait.png", self.width));
                std::fs::write(&path, png).unwrap();
                panic!("{what}: no new page (screenshot {})", path.display());
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn click(&self, css: &str) {
        self.click_and_wait(css, Locator::Css(css)).await;
    }

    /// Clicks the link or button showing `text` and waits for the next page.
    async fn click_text(&self, text: &str) {
        let xpath = format!("//*[(self::a or self::button) and normalize-space(.)=\"{text}\"]");
        self.click_and_wait(text, Locator::XPath(&xpath)).await;
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self
            .c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    async fn select(&self, css: &str, value: &str) {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .select_by_value(value)
            .await
            .unwrap();
    }

    async fn value(&self, css: &str) -> String {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    async fn text(&self, css: &str) -> String {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn source(&self) -> String {
        self.c.source().await.unwrap()
    }

    async fn path(&self) -> String {
        self.c.current_url().await.unwrap().path().to_string()
    }

    /// From the cart: pay, then "Paga" on the simulated Checkout; waits for the outcome page
    /// to show every item paid (it refreshes itself until the receipts are there).
    async fn pay_cart(&mut self, flow: &str, items: usize) {
        self.fill("#email", "mario.rossi@example.org").await;
        self.click_text("Paga con pagoPA").await;
        assert!(
            self.path().await.starts_with("/checkout/pay/"),
            "{flow}: at Checkout"
        );
        // the simulated Checkout's page is not ours: a screenshot, no axe
        self.shot(&format!("{flow}-checkout")).await;
        self.click("#paga").await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let html = self.source().await;
            if html.contains("Pagamento completato") {
                break;
            }
            assert!(Instant::now() < deadline, "{flow}: not paid: {html}");
            actix_rt::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(self.path().await.ends_with("/esito"), "{flow}");
        let html = self.source().await;
        assert_eq!(html.matches(">Pagato<").count(), items, "{flow}: {html}");
        self.page(&format!("{flow}-esito")).await;
    }
}

/// Percent-encodes everything but unreserved characters (a `data:` URL).
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Node {
    app: TestApp,
    org_a: mpay_config::OrganizationSettings,
}

/// The node with two organizations and the demo's services, and the simulated Checkout.
async fn spawn_node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let sim_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sim_addr = sim_listener.local_addr().unwrap();
    let base_cfg = config_text(&data_dir);
    // the demo's "LOCULI CIMITERIALI": the citizen types the amount (extern.do links too)
    let fixed = r#"amount = { kind = "fixed", cents = 35000 }"#;
    assert!(base_cfg.contains(fixed));
    let base_cfg = base_cfg.replace(
        fixed,
        r#"spontaneous = true
amount = { kind = "range", min_cents = 100, max_cents = 1000000 }"#,
    );
    let cfg_text = format!(
        r#"{base_cfg}
[[services]]
organization = "{ORG_A}"
code = "UBC"
label = "CANONE UTILIZZO IMMOBILE"
category = "9/0101108TS/"
iban = "{IBAN_A}"
spontaneous = true
amount = {{ kind = "range", min_cents = 100, max_cents = 500000 }}
fields = [{{ key = "immobile", label = "Immobile (indirizzo)", kind = "text", max_length = 60, required = true }}]

[portal]
cart_tick_secs = 1
receipt_wait_secs = 30

[checkout]
base_url = "http://{sim_addr}/checkout/ec/v2"
api_version = 2
timeout_ms = 10000
"#
    );
    let cfg = dir.path().join("mpay-portal.toml");
    std::fs::write(&cfg, cfg_text).unwrap();
    let settings = Settings::load(&Sources {
        demo: false,
        file: Some(cfg),
        env: false,
    })
    .unwrap();
    let org_a = settings.organization(ORG_A).unwrap().clone();
    let app = Application::build(settings, false).await.unwrap();
    let base = format!("http://{}", app.addr);
    pagopa_sim::checkout::serve(
        pagopa_sim::checkout::CheckoutSimConfig {
            station_url: format!("{base}/pagopa/paForNode"),
            broker: ORG_B.into(),
            station: format!("{ORG_B}_01"),
        },
        sim_listener,
    )
    .map(actix_rt::spawn)
    .unwrap();
    let t = TestApp {
        base,
        client: reqwest::Client::new(),
        store: app.store.clone(),
        app_state: app.state.clone(),
        scheduler: app.scheduler.clone(),
        handle: app.server_handle(),
        dir,
    };
    actix_rt::spawn(async move {
        let _ = app.run_until_stopped().await;
    });
    Node { app: t, org_a }
}

/// A VALID position of `org`; returns its notice number.
async fn notice(app: &TestApp, org: &str, iupd: &str, cents: i64, expired: bool) -> String {
    let mut b = position_body(iupd, cents);
    let key = if org == ORG_B { KEY_B } else { KEY_A };
    if org == ORG_B {
        b["paymentOption"][0]["transfer"][0]["iban"] = json!(IBAN_B);
        b["companyName"] = json!("Provincia di Prova");
        b["paymentOption"][0]["description"] = json!("Canone occupazione suolo");
    }
    if expired {
        b["switchToExpired"] = json!(true);
        b["paymentOption"][0]["dueDate"] = json!("2020-01-31T23:59:59");
    }
    let r = app.post(org, key, "?toPublish=true", &b).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    v["paymentOption"][0]["nav"].as_str().unwrap().to_string()
}

async fn every_flow_at(width: u32) {
    let node = spawn_node().await;
    let app = &node.app;
    let tag = |s: &str| format!("{s}-{width}");
    let nav_notice = notice(app, ORG_A, &tag("N"), 12050, false).await;
    let nav_a = notice(app, ORG_A, &tag("A"), 3000, false).await;
    let nav_b = notice(app, ORG_B, &tag("B"), 4525, false).await;
    let nav_expired = notice(app, ORG_A, &tag("X"), 9900, true).await;

    let driver = ChromeDriver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let c = driver.session(width, profile.path()).await;
    let mut r = Run {
        c,
        width,
        axe: Axe::load(),
        shots: screenshot_dir(),
        base: app.base.clone(),
    };

    // 1. spontaneous payment: home → organization → service → form → cart → Checkout → outcome
    r.goto("/").await;
    let inner: Value =
        r.c.execute("return window.innerWidth", vec![])
            .await
            .unwrap();
    assert_eq!(inner, json!(width), "viewport width");
    r.page("home").await;
    r.select("#ente", ORG_A).await;
    r.click_text("Mostra i servizi").await;
    assert!(r.source().await.contains("Servizi di Comune di Borgo Demo"));
    r.page("home-servizi").await;
    r.click_text("CANONE UTILIZZO IMMOBILE").await;
    assert_eq!(r.path().await, format!("/servizio/{ORG_A}/UBC"));
    r.page("servizio").await;
    // bad input first: messages next to the fields, what was typed is kept
    r.fill("#f-importo", "15,321").await;
    r.fill("#f-codice_fiscale", "RSSMRA80A01H501X").await;
    r.fill("#f-nominativo", "Mario Rossi").await;
    r.fill("#f-causale", "Canone marzo").await;
    r.c.execute(
        "document.getElementById('f-data').value = '2027-03-01'",
        vec![],
    )
    .await
    .unwrap();
    r.click_text("Aggiungi al carrello").await;
    let html = r.source().await;
    assert!(
        html.contains("usa la virgola") && html.contains("carattere di controllo"),
        "{html}"
    );
    assert_eq!(r.value("#f-importo").await, "15,321");
    assert_eq!(r.value("#f-causale").await, "Canone marzo");
    r.page("servizio-errori").await;
    r.fill("#f-importo", "15,32").await;
    r.fill("#f-codice_fiscale", "RSSMRA80A01H501U").await;
    r.fill("#f-immobile", "Via Roma 1").await;
    r.click_text("Aggiungi al carrello").await;
    assert!(r.path().await.starts_with("/carrello/"));
    assert!(r.text("#totale").await.contains("15,32"));
    r.page("spontaneo-carrello").await;
    r.pay_cart("spontaneo", 1).await;

    // 2. a notice: "Paga un avviso" → look-up → add → pay
    r.goto("/").await;
    r.click_text("Paga un avviso").await;
    assert_eq!(r.path().await, "/avviso");
    r.page("avviso").await;
    r.select("#ente", ORG_A).await;
    r.fill("#codice", &nav_notice).await;
    r.click_text("Cerca l'avviso").await;
    assert!(r.text("#importo").await.contains("120,50"));
    r.page("avviso-trovato").await;
    r.click_text("Aggiungi al carrello").await;
    assert!(r.source().await.contains(&nav_notice));
    r.page("avviso-carrello").await;
    r.pay_cart("avviso", 1).await;

    // 3. a cart of two organizations, paid in one Checkout transaction
    for (org, nav) in [(ORG_A, &nav_a), (ORG_B, &nav_b)] {
        r.goto("/avviso").await;
        r.select("#ente", org).await;
        r.fill("#codice", nav).await;
        r.click_text("Cerca l'avviso").await;
        r.click_text("Aggiungi al carrello").await;
    }
    let html = r.source().await;
    assert!(html.contains(&nav_a) && html.contains(&nav_b), "{html}");
    assert!(
        html.contains("Comune di Borgo Demo") && html.contains("Provincia di Prova"),
        "{html}"
    );
    assert!(r.text("#totale").await.contains("75,25"));
    r.page("due-enti-carrello").await;
    r.pay_cart("due-enti", 2).await;

    // 4. the seed's extern.do link (GET) and the same fields POSTed by an Ente's page
    let link = mpay::app::extern_do_link(&app.base, &node.org_a);
    r.goto(&link).await;
    assert_eq!(r.path().await, "/mpay/pagonet/extern.do");
    assert!(r.source().await.contains("LOCULI CIMITERIALI"));
    assert_eq!(r.value("#f-importo").await, "15,32");
    assert_eq!(r.value("#f-causale").await, "CONCESSIONE LOCULO");
    r.page("extern-get").await;
    let query = link.split_once('?').unwrap().1;
    let inputs: String = query
        .split('&')
        .map(|kv| kv.split_once('=').unwrap())
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                v.replace('+', " ")
            )
        })
        .collect();
    let ente_page = format!(
        "<!doctype html><html lang=\"it\"><title>Ente</title><form id=\"f\" method=\"post\" action=\"{}/mpay/pagonet/extern.do\">{inputs}<button id=\"vai\" type=\"submit\">Paga online</button></form></html>",
        app.base
    );
    r.goto(&format!(
        "data:text/html;charset=utf-8,{}",
        percent(&ente_page)
    ))
    .await;
    r.click("#vai").await;
    assert_eq!(r.path().await, "/mpay/pagonet/extern.do");
    assert_eq!(r.value("#f-importo").await, "15,32");
    assert_eq!(r.value("#f-causale").await, "CONCESSIONE LOCULO");
    r.page("extern-post").await;

    // 5. an expired notice: its Italian message (the station's outcome for the Node)
    r.goto("/avviso").await;
    r.select("#ente", ORG_A).await;
    r.fill("#codice", &nav_expired).await;
    r.click_text("Cerca l'avviso").await;
    assert!(
        r.text("#esito-avviso")
            .await
            .contains("L'avviso è scaduto e non può più essere pagato."),
        "{}",
        r.source().await
    );
    r.page("avviso-scaduto").await;

    // an error page
    r.goto("/carrello/0000/esito").await;
    assert!(r.text("#errore").await.contains("Il carrello non esiste"));
    r.page("errore").await;

    r.c.clone().close().await.unwrap();
    r.axe.summary(width);
    println!("screenshots at {width}px in {}", r.shots.display());
}

#[actix_rt::test]
async fn every_flow_in_chromium_at_phone_width_375() {
    every_flow_at(375).await;
}

#[actix_rt::test]
async fn every_flow_in_chromium_at_desktop_width_1280() {
    every_flow_at(1280).await;
}
