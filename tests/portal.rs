//! Citizen portal and cart (issue 12), without JavaScript: plain HTTP form posts against the
//! real node on port 0 and the simulated pagoPA Checkout (`pagopa_sim::checkout`) on another
//! port, which pays by calling the station's paGetPaymentV2 / paSendRTV2 as the Node does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashMap;

use common::*;
use mpay::app::Application;
use mpay_config::{Settings, Sources};
use serde_json::{json, Value};

struct Portal {
    base: String,
    app: TestApp,
    _data_dir: std::path::PathBuf,
}

/// A browser without JavaScript: keeps its cookies, follows nothing by itself.
struct Browser {
    client: reqwest::Client,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
    fn keep(&mut self, r: &reqwest::Response) {
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (kv, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            self.cookies.insert(k.to_string(), v.to_string());
        }
    }
    async fn get(&mut self, url: &str) -> (u16, String, reqwest::header::HeaderMap) {
        let r = self
            .client
            .get(url)
            .header("Cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&r);
        let (s, h) = (r.status().as_u16(), r.headers().clone());
        (s, r.text().await.unwrap(), h)
    }
    async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> (u16, String, Option<String>) {
        let csrf = self.cookies.get("mpay_csrf").cloned().unwrap_or_default();
        let mut f: Vec<(&str, &str)> = form.to_vec();
        if !form.iter().any(|(k, _)| *k == "csrf") {
            f.push(("csrf", &csrf));
        }
        let r = self
            .client
            .post(url)
            .header("Cookie", self.cookie_header())
            .form(&f)
            .send()
            .await
            .unwrap();
        self.keep(&r);
        let loc = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        (r.status().as_u16(), r.text().await.unwrap(), loc)
    }
}

async fn spawn_portal(data: Option<std::path::PathBuf>, keep: Option<tempfile::TempDir>) -> Portal {
    spawn_portal_with(data, keep, None).await
}

/// `checkout`: `(base URL, timeout ms)` of another Checkout than the simulator (the
/// simulator still runs, unused).
async fn spawn_portal_with(
    data: Option<std::path::PathBuf>,
    keep: Option<tempfile::TempDir>,
    checkout: Option<(String, u64)>,
) -> Portal {
    let dir = keep.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let data_dir = data.unwrap_or_else(|| dir.path().join("data"));
    let sim_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sim_addr = sim_listener.local_addr().unwrap();
    let (checkout_url, timeout_ms) =
        checkout.unwrap_or_else(|| (format!("http://{sim_addr}/checkout/ec/v2"), 10_000));
    let cfg_text = format!(
        r#"{base}
[[services]]
organization = "{ORG_A}"
code = "UBC"
label = "CANONE UTILIZZO IMMOBILE"
category = "9/0101108TS/"
iban = "{IBAN_A}"
spontaneous = true
amount = {{ kind = "range", min_cents = 100, max_cents = 500000 }}
fields = [{{ key = "immobile", label = "Immobile", kind = "text", max_length = 60, required = true }}]

[portal]
cart_tick_secs = 1
receipt_wait_secs = 30

[checkout]
base_url = "{checkout_url}"
api_version = 2
timeout_ms = {timeout_ms}
"#,
        base = config_text(&data_dir)
    );
    let cfg = dir.path().join("mpay-portal.toml");
    std::fs::write(&cfg, cfg_text).unwrap();
    let settings = Settings::load(&Sources {
        demo: false,
        file: Some(cfg),
        env: false,
    })
    .unwrap();
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
        base: base.clone(),
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
    Portal {
        base,
        app: t,
        _data_dir: data_dir,
    }
}

/// Creates a VALID position of `org` and returns its notice number.
async fn notice(app: &TestApp, org: &str, key: &str, iupd: &str, cents: i64) -> String {
    let mut b = position_body(iupd, cents);
    if org == ORG_B {
        b["paymentOption"][0]["transfer"][0]["iban"] = json!(IBAN_B);
        b["companyName"] = json!("Provincia di Prova");
    }
    let r = app.post(org, key, "?toPublish=true", &b).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    v["paymentOption"][0]["nav"].as_str().unwrap().to_string()
}

async fn status_of(app: &TestApp, org: &str, key: &str, iupd: &str) -> String {
    let v: Value = app
        .get(org, key, &format!("/{iupd}"))
        .await
        .json()
        .await
        .unwrap();
    v["status"].as_str().unwrap_or("").to_string()
}

#[actix_rt::test]
async fn pages_assets_and_headers() {
    let p = spawn_portal(None, None).await;
    let mut b = Browser::new();
    let (s, html, h) = b.get(&format!("{}/", p.base)).await;
    assert_eq!(s, 200);
    assert!(html.contains("Pagamenti online") && html.contains("Paga un avviso"));
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(b.cookies.contains_key("mpay_csrf"));
    // province → organization → services
    let (_, html, _) = b.get(&format!("{}/?ente={ORG_A}", p.base)).await;
    assert!(html.contains(&format!("/servizio/{ORG_A}/UBC")), "{html}");
    // Bootstrap Italia served by the binary itself
    let (s, css, h) = b
        .get(&format!(
            "{}/static/bi/css/bootstrap-italia.min.css",
            p.base
        ))
        .await;
    assert_eq!(s, 200);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/css"));
    assert!(css.len() > 100_000);
    let (s, _, _) = b
        .get(&format!(
            "{}/static/bi/js/bootstrap-italia.bundle.min.js",
            p.base
        ))
        .await;
    assert_eq!(s, 200);
    let (s, _, _) = b.get(&format!("{}/static/portal/portal.css", p.base)).await;
    assert_eq!(s, 200);
    // a form without the CSRF token is refused
    let (s, html, _) = b
        .post(
            &format!("{}/avviso", p.base),
            &[("csrf", "0123"), ("ente", ORG_A), ("codice", "1")],
        )
        .await;
    assert_eq!(s, 403);
    assert!(html.contains("Sessione scaduta"));
    // the cart and outcome of an unknown id
    let (s, _, _) = b.get(&format!("{}/carrello/0000/esito", p.base)).await;
    assert_eq!(s, 404);
    // the actors are listed
    let actors: Value = reqwest::get(format!("{}/health/actors", p.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(actors.to_string().contains("NodeChannel"), "{actors}");
}

#[actix_rt::test]
async fn notice_messages_and_one_live_cart_per_notice() {
    let p = spawn_portal(None, None).await;
    let app = &p.app;
    let nav = notice(app, ORG_A, KEY_A, "P-1", 12050).await;
    let mut b = Browser::new();
    b.get(&format!("{}/avviso", p.base)).await;
    let url = format!("{}/avviso", p.base);
    // found: amount, causale, due date
    let (s, html, _) = b.post(&url, &[("ente", ORG_A), ("codice", &nav)]).await;
    assert_eq!(s, 200, "{html}");
    assert!(html.contains("120,50") && html.contains("TARI 2026") && html.contains("Scadenza"));
    assert!(html.contains("Aggiungi al carrello"));
    // by IUV too
    let (s, html, _) = b
        .post(&url, &[("ente", ORG_A), ("codice", &nav[1..])])
        .await;
    assert_eq!(s, 200, "{html}");
    // bad input: message next to the field, input kept
    let (s, html, _) = b.post(&url, &[("ente", ORG_A), ("codice", "12AB")]).await;
    assert_eq!(s, 422);
    assert!(html.contains("Codice non valido") && html.contains("value=\"12AB\""));
    // unknown notice
    // (a DRAFT is not visible: the citizen reads "not found", as the station answers the Node)
    let r = app
        .post(ORG_A, KEY_A, "", &position_body("P-DRAFT", 100))
        .await;
    let v: Value = r.json().await.unwrap();
    let other = v["paymentOption"][0]["nav"].as_str().unwrap().to_string();
    let (s, html, _) = b.post(&url, &[("ente", ORG_A), ("codice", &other)]).await;
    assert!(s == 422 && html.contains("Avviso non trovato"), "{html}");
    // one live cart per notice
    let (s, _, loc) = b
        .post(
            &format!("{}/carrello/aggiungi", p.base),
            &[("ente", ORG_A), ("avviso", &nav)],
        )
        .await;
    assert_eq!(s, 303);
    assert!(loc.unwrap().starts_with("/carrello/"));
    let mut b2 = Browser::new();
    b2.get(&format!("{}/avviso", p.base)).await;
    let (s, html, _) = b2
        .post(
            &format!("{}/carrello/aggiungi", p.base),
            &[("ente", ORG_A), ("avviso", &nav)],
        )
        .await;
    assert_eq!(s, 422);
    assert!(html.contains("già in un altro carrello"), "{html}");
    // cancelled notice: the station's outcome, in Italian
    let r = app.post(ORG_A, KEY_A, "/P-1/invalidate", &json!({})).await;
    assert!(r.status().is_success());
    let (s, html, _) = b.post(&url, &[("ente", ORG_A), ("codice", &nav)]).await;
    assert!(s == 422 && html.contains("annullato"), "{html}");
}

#[actix_rt::test]
async fn two_organizations_and_a_spontaneous_payment_paid_end_to_end() {
    let p = spawn_portal(None, None).await;
    let app = &p.app;
    let nav_a = notice(app, ORG_A, KEY_A, "A-1", 12050).await;
    let nav_b = notice(app, ORG_B, KEY_B, "B-1", 2000).await;
    let mut b = Browser::new();
    b.get(&format!("{}/", p.base)).await;
    let add = format!("{}/carrello/aggiungi", p.base);
    let (s, _, loc) = b.post(&add, &[("ente", ORG_A), ("avviso", &nav_a)]).await;
    assert_eq!(s, 303);
    let cart_path = loc.unwrap();
    let (s, _, loc) = b.post(&add, &[("ente", ORG_B), ("avviso", &nav_b)]).await;
    assert_eq!((s, loc.as_deref()), (303, Some(cart_path.as_str())));

    // spontaneous payment: bad input first (fiscal code check character, amount format)
    let svc = format!("{}/servizio/{ORG_A}/UBC", p.base);
    let (s, html, _) = b.get(&svc).await.into_parts();
    assert_eq!(s, 200, "{html}");
    let (s, html, _) = b
        .post(
            &svc,
            &[
                ("importo", "15,321"),
                ("data", "2027-03-01"),
                ("codice_fiscale", "RSSMRA80A01H501X"),
                ("nominativo", "Mario Rossi"),
                ("causale", "Canone marzo"),
                ("immobile", ""),
            ],
        )
        .await;
    assert_eq!(s, 422);
    assert!(html.contains("usa la virgola"), "{html}");
    assert!(html.contains("carattere di controllo"));
    assert!(html.contains("Campo obbligatorio"));
    assert!(html.contains("value=\"Canone marzo\"") && html.contains("value=\"15,321\""));
    let before: Value = app
        .get(ORG_A, KEY_A, "?limit=50&page=0")
        .await
        .json()
        .await
        .unwrap();
    let mut events = position_events(app).await;
    let (s, _, loc) = b
        .post(
            &svc,
            &[
                ("importo", "15,32"),
                ("data", "2027-03-01"),
                ("codice_fiscale", "RSSMRA80A01H501U"),
                ("nominativo", "Mario Rossi"),
                ("causale", "Canone marzo"),
                ("immobile", "Via Roma 1"),
            ],
        )
        .await;
    assert_eq!((s, loc.as_deref()), (303, Some(cart_path.as_str())));
    let after: Value = app
        .get(ORG_A, KEY_A, "?limit=50&page=0")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        after["payment_position_list"].as_array().unwrap().len(),
        before["payment_position_list"].as_array().unwrap().len() + 1
    );
    // the spontaneous payment's position is published on the bus once durable
    let iupds = |v: &Value| -> Vec<String> {
        v["payment_position_list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["iupd"].as_str().unwrap().to_string())
            .collect()
    };
    let old_iupds = iupds(&before);
    let created = iupds(&after)
        .into_iter()
        .find(|i| !old_iupds.contains(i))
        .unwrap();
    expect_position_event(&mut events, "position.created", ORG_A, &created).await;

    // the cart: three notices of two organizations
    let (s, html, _) = b.get(&format!("{}{cart_path}", p.base)).await.into_parts();
    assert_eq!(s, 200);
    assert!(html.contains(&nav_a) && html.contains(&nav_b) && html.contains("Canone marzo"));
    assert!(html.contains("155,82"), "{html}");

    // bad e-mail: message, cart unchanged
    let pay = format!("{}{cart_path}/paga", p.base);
    let (s, html, _) = b.post(&pay, &[("email", "mario@")]).await;
    assert_eq!(s, 422);
    assert!(html.contains("e-mail non valido") && html.contains("value=\"mario@\""));

    // pay → Checkout (simulated) → the station gets paGetPaymentV2 + paSendRTV2 → outcome
    let (s, _, loc) = b.post(&pay, &[("email", "mario.rossi@example.org")]).await;
    assert_eq!(s, 303);
    let checkout = loc.unwrap();
    assert!(checkout.contains("/checkout/pay/"), "{checkout}");
    let (s, _, h) = b.get(&format!("{checkout}?autopay=1")).await;
    assert_eq!(s, 303);
    let back = h["location"].to_str().unwrap().to_string();
    assert!(back.ends_with("/esito?esito=ok"), "{back}");
    let (s, html, _) = b.get(&back).await.into_parts();
    assert_eq!(s, 200);
    assert!(html.contains("Pagamento completato"), "{html}");
    assert_eq!(html.matches("Pagato").count(), 3, "{html}");
    assert_eq!(status_of(app, ORG_A, KEY_A, "A-1").await, "PAID");
    assert_eq!(status_of(app, ORG_B, KEY_B, "B-1").await, "PAID");
    // the receipts carry our cart id as paymentNote
    let cart_id = cart_path.trim_start_matches("/carrello/");
    let r = app
        .client
        .get(format!("{}/api/v1/organizations/{ORG_A}/receipts", p.base))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(r.contains(&nav_a), "{r}");
    // a paid notice cannot be added again
    let (s, html, _) = b.post(&add, &[("ente", ORG_A), ("avviso", &nav_a)]).await;
    assert!(s == 422 && html.contains("già pagato"), "{html}");
    let _ = cart_id;
}

#[actix_rt::test]
async fn cancel_at_checkout_reopens_the_cart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = spawn_portal(Some(data.clone()), Some(dir)).await;
    let nav = notice(&p.app, ORG_A, KEY_A, "C-1", 5000).await;
    let mut b = Browser::new();
    b.get(&format!("{}/", p.base)).await;
    let (_, _, loc) = b
        .post(
            &format!("{}/carrello/aggiungi", p.base),
            &[("ente", ORG_A), ("avviso", &nav)],
        )
        .await;
    let cart_path = loc.unwrap();
    let (s, _, loc) = b
        .post(&format!("{}{cart_path}/paga", p.base), &[("email", "")])
        .await;
    assert_eq!(s, 303);
    // at Checkout the cart cannot change
    let (s, html, _) = b
        .post(
            &format!("{}{cart_path}/rimuovi", p.base),
            &[("ente", ORG_A), ("avviso", &nav)],
        )
        .await;
    assert_eq!(s, 409, "{html}");
    // the citizen cancels at Checkout
    let checkout = loc.unwrap();
    let (s, _, back) = b.post(&format!("{checkout}/cancel"), &[]).await;
    assert_eq!(s, 303);
    let (_, html, _) = b.get(&back.unwrap()).await.into_parts();
    assert!(html.contains("Pagamento annullato"), "{html}");
    assert_eq!(status_of(&p.app, ORG_A, KEY_A, "C-1").await, "VALID");
    // payable again: remove it, the cart is empty
    let (s, _, _) = b
        .post(
            &format!("{}{cart_path}/rimuovi", p.base),
            &[("ente", ORG_A), ("avviso", &nav)],
        )
        .await;
    assert_eq!(s, 303);
    let (_, html, _) = b.get(&format!("{}{cart_path}", p.base)).await.into_parts();
    assert!(html.contains("Il carrello è vuoto"), "{html}");
}

#[actix_rt::test]
async fn extern_do_get_and_post_land_on_the_prefilled_form() {
    let p = spawn_portal(None, None).await;
    let mut b = Browser::new();
    let q = "formName=formExtern&payerTipoBollettino=SPOM&payerCodiceUtente=000RM&payerTipologiaServizio=UBC&payerCodiceEnte=05671&payerImporto=15&payerImportoCent=32&payerCausale=CANONE+UTILIZZO+IMMOBILE&payerCodiceFiscaleContribuente=RSSMRA80A01H501U&payerCognomeContribuente=Rossi&payerNomeContribuente=Mario";
    let (s, html, _) = b
        .get(&format!("{}/mpay/pagonet/extern.do?{q}", p.base))
        .await
        .into_parts();
    assert_eq!(s, 200, "{html}");
    assert!(html.contains("CANONE UTILIZZO IMMOBILE"));
    assert!(html.contains("value=\"15,32\""), "{html}");
    assert!(html.contains("value=\"RSSMRA80A01H501U\"") && html.contains("value=\"Mario Rossi\""));
    // POST, form-encoded, as Enti's pages submit it
    let form: Vec<(String, String)> = url_pairs(q);
    let r = reqwest::Client::new()
        .post(format!("{}/mpay/pagonet/extern.do", p.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("value=\"15,32\"") && html.contains("CANONE UTILIZZO IMMOBILE"));
    // unknown codes: an Italian page naming the code
    let (s, html, _) = b
        .get(&format!(
            "{}/mpay/pagonet/extern.do?formName=formExtern&payerTipoBollettino=SPOM&payerCodiceUtente=000RM&payerCodiceEnte=99999&payerTipologiaServizio=UBC",
            p.base
        ))
        .await
        .into_parts();
    assert_eq!(s, 404);
    assert!(html.contains("99999"), "{html}");
    let (s, html, _) = b
        .get(&format!(
            "{}/mpay/pagonet/extern.do?formName=formExtern&payerTipoBollettino=SPOM&payerCodiceUtente=000RM&payerCodiceEnte=05671&payerTipologiaServizio=ZZZ",
            p.base
        ))
        .await
        .into_parts();
    assert_eq!(s, 404);
    assert!(html.contains("ZZZ"), "{html}");
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace('+', " ")))
        .collect()
}

trait IntoParts {
    fn into_parts(self) -> (u16, String, reqwest::header::HeaderMap);
}
impl IntoParts for (u16, String, reqwest::header::HeaderMap) {
    fn into_parts(self) -> (u16, String, reqwest::header::HeaderMap) {
        self
    }
}

/// A stand-in for pagoPA Checkout that answers what the test tells it (422, 5xx ProblemJson,
/// nothing in time, 302) and counts the carts it received.
#[derive(Clone)]
struct FakeCheckout {
    base: String,
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    /// Slow answers actually sent (after the client gave up waiting).
    late: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

const FAKE_OK: u8 = 0;
const FAKE_422: u8 = 1;
const FAKE_503: u8 = 2;
const FAKE_400: u8 = 3;
const FAKE_SLOW: u8 = 4;

impl FakeCheckout {
    fn start() -> Self {
        use actix_web::{web, App, HttpResponse, HttpServer};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let fake = FakeCheckout {
            base: base.clone(),
            mode: Default::default(),
            bodies: Default::default(),
            late: Default::default(),
        };
        let f = fake.clone();
        let server = HttpServer::new(move || {
            let f = f.clone();
            App::new().route(
                "/checkout/ec/v2/carts",
                web::post().to(move |body: web::Json<Value>| {
                    let f = f.clone();
                    async move {
                        f.bodies.lock().unwrap().push(body.into_inner());
                        let problem = |status: u16, title: &str| {
                            HttpResponse::build(
                                actix_web::http::StatusCode::from_u16(status).unwrap(),
                            )
                            .content_type("application/problem+json")
                            .json(json!({"title": title, "status": status, "detail": "test"}))
                        };
                        match f.mode.load(std::sync::atomic::Ordering::SeqCst) {
                            FAKE_422 => problem(422, "Unprocessable Entity"),
                            FAKE_503 => problem(503, "Service Unavailable"),
                            FAKE_400 => problem(400, "Bad Request"),
                            FAKE_SLOW => {
                                actix_rt::time::sleep(std::time::Duration::from_secs(3)).await;
                                f.late.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                HttpResponse::Found()
                                    .insert_header(("Location", format!("{}/late", f.base)))
                                    .finish()
                            }
                            _ => HttpResponse::Found()
                                .insert_header(("Location", format!("{}/pay/1", f.base)))
                                .finish(),
                        }
                    }
                }),
            )
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        actix_rt::spawn(server);
        fake
    }
    fn set(&self, mode: u8) {
        self.mode.store(mode, std::sync::atomic::Ordering::SeqCst);
    }
    fn received(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }
}

#[actix_rt::test]
async fn checkout_errors_show_an_italian_page_and_the_cart_stays_payable() {
    let fake = FakeCheckout::start();
    let p = spawn_portal_with(
        None,
        None,
        Some((format!("{}/checkout/ec/v2", fake.base), 700)),
    )
    .await;
    let nav = notice(&p.app, ORG_A, KEY_A, "E-1", 4200).await;
    let mut b = Browser::new();
    b.get(&format!("{}/", p.base)).await;
    let (s, _, loc) = b
        .post(
            &format!("{}/carrello/aggiungi", p.base),
            &[("ente", ORG_A), ("avviso", &nav)],
        )
        .await;
    assert_eq!(s, 303);
    let cart_path = loc.unwrap();
    let cart_id = cart_path.trim_start_matches("/carrello/").to_string();
    let pay = format!("{}{cart_path}/paga", p.base);
    let cases = [
        (FAKE_422, "uno degli avvisi non risulta pagabile"),
        (FAKE_503, "Il servizio pagoPA ha avuto un errore"),
        (FAKE_400, "pagoPA ha rifiutato il carrello"),
        (FAKE_SLOW, "pagoPA non ha risposto in tempo"),
    ];
    for (n, (mode, text)) in cases.iter().enumerate() {
        fake.set(*mode);
        let (s, html, loc) = b.post(&pay, &[("email", "")]).await;
        assert_eq!((s, loc), (502, None), "{html}");
        assert!(html.contains(text), "{mode}: {html}");
        assert!(
            html.contains("Paga con pagoPA") && html.contains(&nav),
            "the cart stays payable: {html}"
        );
        // one POST per attempt: a cart that may have been received is never sent again
        // silently (not even after the timeout)
        assert_eq!(fake.received(), n + 1, "mode {mode}");
    }
    // the cart's state tells that Checkout may hold a session of it (the timeout)
    let (s, html, _) = b.get(&format!("{}{cart_path}", p.base)).await.into_parts();
    assert_eq!(s, 200);
    assert!(
        html.contains("pagoPA non ha risposto in tempo")
            && html.contains("tentativi di pagamento finora: 4"),
        "{html}"
    );
    // the late answer of the slow attempt changed nothing (wait until it was sent)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while fake.late.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow answer never left"
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(fake.received(), 4);
    // and the cart is still payable: Checkout takes it now
    fake.set(FAKE_OK);
    let (s, _, loc) = b.post(&pay, &[("email", "")]).await;
    assert_eq!(s, 303);
    assert_eq!(loc.unwrap(), format!("{}/pay/1", fake.base));
    assert_eq!(fake.received(), 5);
    let last = fake.bodies.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last["idCart"], json!(cart_id));
    assert_eq!(last["paymentNotices"][0]["amount"], json!(4200));
    assert!(last["returnUrls"]["returnWaitingUrl"]
        .as_str()
        .unwrap()
        .ends_with("/esito?esito=attesa"));
    // at Checkout now: the cart page says so and offers no second payment
    let (_, html, _) = b.get(&format!("{}{cart_path}", p.base)).await.into_parts();
    assert!(
        !html.contains("Paga con pagoPA") && html.contains("Vedi lo stato del pagamento"),
        "{html}"
    );
}

#[actix_rt::test]
async fn the_cart_is_paid_by_the_receipt_never_by_the_redirect() {
    let p = spawn_portal(None, None).await;
    let nav = notice(&p.app, ORG_A, KEY_A, "R-1", 7300).await;
    let mut b = Browser::new();
    b.get(&format!("{}/", p.base)).await;
    let (_, _, loc) = b
        .post(
            &format!("{}/carrello/aggiungi", p.base),
            &[("ente", ORG_A), ("avviso", &nav)],
        )
        .await;
    let cart_path = loc.unwrap();
    let (s, _, loc) = b
        .post(&format!("{}{cart_path}/paga", p.base), &[("email", "")])
        .await;
    assert_eq!(s, 303);
    let checkout = loc.unwrap();
    // a return URL saying "ok" before any receipt: waiting, not paid
    let (s, html, _) = b
        .get(&format!("{}{cart_path}/esito?esito=ok", p.base))
        .await
        .into_parts();
    assert_eq!(s, 200);
    assert!(
        html.contains("attendendo") && !html.contains("Pagamento completato"),
        "{html}"
    );
    assert!(html.contains("http-equiv=\"refresh\""), "{html}");
    // Checkout pays (paGetPaymentV2 + paSendRTV2 to the station); the browser does not come
    // back: the cart learns it from the station's receipt
    let (s, _, _) = b.get(&format!("{checkout}?autopay=1")).await;
    assert_eq!(s, 303);
    let (_, html, _) = b.get(&format!("{}{cart_path}", p.base)).await.into_parts();
    assert!(
        html.contains("Pagato")
            && html.contains("Vedi lo stato del pagamento")
            && !html.contains("Paga con pagoPA"),
        "{html}"
    );
    // a later "cancelled" return does not undo a receipt; the outcome lists the receipt id
    let (_, html, _) = b
        .get(&format!("{}{cart_path}/esito?esito=annullato", p.base))
        .await
        .into_parts();
    assert!(html.contains("Pagamento completato"), "{html}");
    let receipts = p
        .app
        .client
        .get(format!("{}/api/v1/organizations/{ORG_A}/receipts", p.base))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&receipts).unwrap();
    let mut ids = values_of(&v, "receiptId");
    ids.dedup();
    assert_eq!(ids.len(), 1, "{receipts}");
    assert!(
        html.contains(&ids[0]),
        "receipt id on the outcome page: {html}"
    );
    assert_eq!(status_of(&p.app, ORG_A, KEY_A, "R-1").await, "PAID");
}

/// Every string value of `key` anywhere in `v`.
fn values_of(v: &Value, key: &str) -> Vec<String> {
    match v {
        Value::Object(m) => m
            .iter()
            .flat_map(|(k, x)| {
                let mut out = values_of(x, key);
                if k == key {
                    out.extend(x.as_str().map(str::to_string));
                }
                out
            })
            .collect(),
        Value::Array(a) => a.iter().flat_map(|x| values_of(x, key)).collect(),
        _ => vec![],
    }
}

/// `(method, route)` → (count, sum of seconds) of the server's own request timer
/// (`mpay_http_request_duration_seconds`, measured by the middleware around each handler).
async fn server_times(base: &str) -> HashMap<(String, String), (f64, f64)> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut out: HashMap<(String, String), (f64, f64)> = HashMap::new();
    for line in text.lines() {
        let (which, rest) =
            if let Some(r) = line.strip_prefix("mpay_http_request_duration_seconds_sum{") {
                (1, r)
            } else if let Some(r) = line.strip_prefix("mpay_http_request_duration_seconds_count{") {
                (0, r)
            } else {
                continue;
            };
        let (labels, value) = rest.rsplit_once("} ").unwrap();
        let label = |k: &str| {
            labels
                .split("\",")
                .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                .unwrap_or("")
                .trim_end_matches('"')
                .to_string()
        };
        let e = out.entry((label("method"), label("route"))).or_default();
        let v: f64 = value.trim().parse().unwrap();
        if which == 0 {
            e.0 = v;
        } else {
            e.1 = v;
        }
    }
    out
}

/// Server time per portal page over a few hundred requests (debug or release build, whichever
/// runs the test): printed for the report, never asserted on (timing is measured, not tested).
#[actix_rt::test]
async fn page_server_times() {
    let p = spawn_portal(None, None).await;
    let nav = notice(&p.app, ORG_A, KEY_A, "T-1", 12050).await;
    let mut b = Browser::new();
    b.get(&format!("{}/", p.base)).await;
    let (_, _, loc) = b
        .post(
            &format!("{}/carrello/aggiungi", p.base),
            &[("ente", ORG_A), ("avviso", &nav)],
        )
        .await;
    let cart = loc.unwrap();
    let extern_q = "formName=formExtern&payerTipoBollettino=SPOM&payerCodiceUtente=000RM&payerTipologiaServizio=UBC&payerCodiceEnte=05671&payerImporto=15&payerImportoCent=32&payerCausale=CANONE";
    let before = server_times(&p.base).await;
    let rounds = 40;
    let mut client_side: HashMap<&str, Vec<f64>> = HashMap::new();
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        assert_eq!(b.get(&format!("{}/", p.base)).await.0, 200);
        client_side
            .entry("GET /")
            .or_default()
            .push(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        assert_eq!(b.get(&format!("{}/?ente={ORG_A}", p.base)).await.0, 200);
        client_side
            .entry("GET /?ente")
            .or_default()
            .push(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        assert_eq!(b.get(&format!("{}/avviso", p.base)).await.0, 200);
        client_side
            .entry("GET /avviso")
            .or_default()
            .push(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        let (s, _, _) = b
            .post(
                &format!("{}/avviso", p.base),
                &[("ente", ORG_A), ("codice", &nav)],
            )
            .await;
        assert_eq!(s, 200);
        client_side
            .entry("POST /avviso")
            .or_default()
            .push(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        assert_eq!(
            b.get(&format!("{}/servizio/{ORG_A}/UBC", p.base)).await.0,
            200
        );
        client_side
            .entry("GET /servizio")
            .or_default()
            .push(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        let (s, _, _) = b
            .post(
                &format!("{}/servizio/{ORG_A}/UBC", p.base),
                &[("importo", "15,321"), ("causale", "x")],
            )
            .await;
        assert_eq!(s, 422);
        client_side
            .entry("POST /servizio (422)")
            .or_default()
            .push(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        assert_eq!(
            b.get(&format!("{}/mpay/pagonet/extern.do?{extern_q}", p.base))
                .await
                .0,
            200
        );
        client_side
            .entry("GET extern.do")
            .or_default()
            .push(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        assert_eq!(b.get(&format!("{}{cart}", p.base)).await.0, 200);
        client_side
            .entry("GET /carrello/{id}")
            .or_default()
            .push(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        assert_eq!(b.get(&format!("{}{cart}/esito", p.base)).await.0, 200);
        client_side
            .entry("GET /carrello/{id}/esito")
            .or_default()
            .push(t.elapsed().as_secs_f64());
    }
    let after = server_times(&p.base).await;
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("portal server time per page ({build} build, {rounds} requests each, in-process node, loopback):");
    println!(
        "{:<8} {:<32} {:>6} {:>12}",
        "method", "route", "count", "mean server"
    );
    let mut rows: Vec<_> = after
        .iter()
        .filter(|((_, route), _)| {
            route == "/"
                || route.starts_with("/avviso")
                || route.starts_with("/servizio")
                || route.starts_with("/carrello")
                || route.starts_with("/mpay/")
        })
        .map(|(k, (count, sum))| {
            let (c0, s0) = before.get(k).copied().unwrap_or_default();
            (k.clone(), count - c0, sum - s0)
        })
        .filter(|(_, count, _)| *count > 0.0)
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut total = 0.0;
    for ((method, route), count, sum) in &rows {
        total += count;
        println!(
            "{method:<8} {route:<32} {count:>6} {:>9.0} µs",
            sum / count * 1e6
        );
    }
    let mut names: Vec<_> = client_side.keys().copied().collect();
    names.sort();
    println!("client-observed round trip (same requests): mean / p95");
    for n in names {
        let mut v = client_side[n].clone();
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let p95 = v[(v.len() * 95 / 100).min(v.len() - 1)];
        println!("  {n:<28} {:>7.0} µs / {:>7.0} µs", mean * 1e6, p95 * 1e6);
    }
    // the server timed every page request it served
    assert!(total >= f64::from(rounds * 9), "{rows:?}");
}

#[actix_rt::test]
async fn checkout_unreachable_is_said_in_italian_and_the_cart_stays_payable() {
    // nothing listens there: the request certainly did not leave (retried, then refused)
    let port = free_port();
    let p = spawn_portal_with(
        None,
        None,
        Some((format!("http://127.0.0.1:{port}/checkout/ec/v2"), 2000)),
    )
    .await;
    let nav = notice(&p.app, ORG_A, KEY_A, "U-1", 1500).await;
    let mut b = Browser::new();
    b.get(&format!("{}/", p.base)).await;
    let (_, _, loc) = b
        .post(
            &format!("{}/carrello/aggiungi", p.base),
            &[("ente", ORG_A), ("avviso", &nav)],
        )
        .await;
    let cart_path = loc.unwrap();
    let (s, html, loc) = b
        .post(&format!("{}{cart_path}/paga", p.base), &[("email", "")])
        .await;
    assert_eq!((s, loc), (502, None), "{html}");
    assert!(
        html.contains("non è raggiungibile") && html.contains("Paga con pagoPA"),
        "{html}"
    );
    // not "may have been received": no attempt count is shown
    let (_, html, _) = b.get(&format!("{}{cart_path}", p.base)).await.into_parts();
    assert!(
        html.contains("non è raggiungibile") && !html.contains("tentativi di pagamento"),
        "{html}"
    );
}
