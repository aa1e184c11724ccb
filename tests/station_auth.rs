#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Station access (issue 9.12), the station's share of capacity (9.6) and the journal's size
//! bound (9.1), over real HTTP on port 0 and real TLS (rcgen certificates).
//!
//! Client addresses: every 127.0.0.0/8 address is local on Linux, so a client bound to
//! 127.0.0.2 or 127.0.0.3 reaches the node on 127.0.0.1 from a different peer address.

mod common;

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use mpay::app::Application;
use mpay_config::{Settings, Sources};
use mpay_storage::JournalStore as _;
use pagopa_sim::build::{verify_request, QrCode, StationIds};

/// A node built from the test configuration edited by `edit`; also the mTLS address.
struct Node {
    base: String,
    tls: Option<SocketAddr>,
    store: mpay_storage::Store,
    scheduler: mpay_actors::ActorHandle<mpay_actors::Scheduler>,
    handle: actix_web::dev::ServerHandle,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let h = self.handle.clone();
        actix_rt::spawn(async move { h.stop(false).await });
    }
}

async fn node(edit: impl FnOnce(String) -> String) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mpay.toml");
    std::fs::write(&cfg, edit(config_text(&dir.path().join("data")))).unwrap();
    node_with(dir, cfg).await
}

async fn node_with(dir: tempfile::TempDir, cfg: std::path::PathBuf) -> Node {
    let settings = Settings::load(&Sources {
        demo: false,
        file: Some(cfg),
        env: false,
    })
    .unwrap();
    let app = Application::build(settings, false).await.unwrap();
    let n = Node {
        base: format!("http://{}", app.addr),
        tls: app.station_tls_addr,
        store: app.store.clone(),
        scheduler: app.scheduler.clone(),
        handle: app.server_handle(),
        _dir: dir,
    };
    actix_rt::spawn(async move {
        let _ = app.run_until_stopped().await;
    });
    let client = reqwest::Client::new();
    for _ in 0..200 {
        let ready = client
            .get(format!("{}/health/ready", n.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("node not ready");
}

/// Adds `lines` after the `[section]` header of the test configuration.
fn under(section: &str, lines: &str) -> impl Fn(String) -> String {
    let (section, lines) = (format!("[{section}]\n"), lines.to_string());
    move |text: String| {
        if text.contains(&section) {
            text.replacen(&section, &format!("{section}{lines}\n"), 1)
        } else {
            format!("{text}\n{section}{lines}\n")
        }
    }
}

fn station_section(lines: &str) -> String {
    format!("body_limit_bytes = 65536\ndemand_due_days = 30\n{lines}")
}

fn from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

fn verify_body() -> String {
    verify_request(
        &StationIds {
            id_pa: ORG_A.into(),
            id_broker_pa: ORG_B.into(),
            id_station: format!("{ORG_B}_01"),
        },
        &QrCode {
            fiscal_code: ORG_A.into(),
            notice_number: "312000000000000099".into(),
        },
    )
}

/// Posts a verify; (HTTP status, body).
async fn verify(client: &reqwest::Client, base: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut r = client
        .post(format!("{base}/pagopa/paForNode"))
        .header("content-type", "text/xml; charset=utf-8")
        .header("SOAPAction", "paVerifyPaymentNotice");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let res = r.body(verify_body()).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

fn assert_answered(status: u16, body: &str) {
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("paVerifyPaymentNoticeRes"), "{body}");
}

fn assert_refused(status: u16, body: &str) {
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("soapenv:Fault"), "{body}");
    assert!(body.contains("PAA_STAZIONE_INT_ERRATA"), "{body}");
}

#[actix_web::test]
async fn in_production_an_allowed_address_passes_and_any_other_is_refused_with_a_fault() {
    let n = node(|t| {
        let t = under("node", "environment = \"production\"")(t);
        under(
            "station",
            &station_section("allowed_networks = [\"127.0.0.2/32\", \"2001:db8::/32\"]"),
        )(t)
    })
    .await;
    let (s, b) = verify(&from("127.0.0.2"), &n.base, &[]).await;
    assert_answered(s, &b);
    let (s, b) = verify(&from("127.0.0.3"), &n.base, &[]).await;
    assert_refused(s, &b);
    assert!(b.contains("127.0.0.3"), "{b}");
    // the allow-list is the station's: the rest of the node answers the same peer
    let r = from("127.0.0.3")
        .get(format!("{}/health/ready", n.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let metrics = reqwest::get(format!("{}/metrics", n.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mpay_station_refused_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[actix_web::test]
async fn production_without_an_allow_list_refuses_and_development_answers_anyone() {
    let prod = node(under("node", "environment = \"production\"")).await;
    let (s, b) = verify(&from("127.0.0.1"), &prod.base, &[]).await;
    assert_refused(s, &b);
    let dev = node(|t| t).await;
    let (s, b) = verify(&from("127.0.0.3"), &dev.base, &[]).await;
    assert_answered(s, &b);
    // an allow-list is enforced in development too
    let dev_listed = node(under(
        "station",
        &station_section("allowed_networks = [\"127.0.0.2\"]"),
    ))
    .await;
    let (s, b) = verify(&from("127.0.0.3"), &dev_listed.base, &[]).await;
    assert_refused(s, &b);
}

#[actix_web::test]
async fn forwarded_for_is_ignored_from_an_untrusted_peer_and_honoured_from_a_trusted_proxy() {
    let n = node(|t| {
        let t = under("node", "environment = \"production\"")(t);
        let t = under("http", "trusted_proxies = [\"127.0.0.5/32\"]")(t);
        under(
            "station",
            &station_section("allowed_networks = [\"127.0.0.2/32\"]"),
        )(t)
    })
    .await;
    // an untrusted peer claiming to forward for an allowed address
    let (s, b) = verify(
        &from("127.0.0.3"),
        &n.base,
        &[("x-forwarded-for", "127.0.0.2")],
    )
    .await;
    assert_refused(s, &b);
    let (s, b) = verify(
        &from("127.0.0.3"),
        &n.base,
        &[("forwarded", "for=127.0.0.2")],
    )
    .await;
    assert_refused(s, &b);
    // the trusted proxy forwarding for the allowed address (a spoofed left part is not read)
    let proxy = from("127.0.0.5");
    let (s, b) = verify(
        &proxy,
        &n.base,
        &[("x-forwarded-for", "198.51.100.7, 127.0.0.2")],
    )
    .await;
    assert_answered(s, &b);
    let (s, b) = verify(&proxy, &n.base, &[("forwarded", "for=\"127.0.0.2:4711\"")]).await;
    assert_answered(s, &b);
    // the proxy forwarding for someone else: the right-most untrusted address decides
    let (s, b) = verify(
        &proxy,
        &n.base,
        &[("x-forwarded-for", "127.0.0.2, 198.51.100.7")],
    )
    .await;
    assert_refused(s, &b);
    // the proxy itself is not allowed when it forwards nobody
    let (s, b) = verify(&proxy, &n.base, &[]).await;
    assert_refused(s, &b);
}

fn ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(p, key))
}

/// A certificate issued by `issuer`: (cert PEM, key PEM).
fn leaf(
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
    cn: &str,
    sans: Vec<String>,
) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(sans).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let cert = p.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// PEM material: (CA cert, server cert, server key, good client cert+key, client of another
/// CA cert+key, client of the CA with a subject not allowed cert+key).
fn pki() -> (String, String, String, String, String, String) {
    let (ca_pem, issuer) = ca("pagoPA test CA");
    let (_, other) = ca("some other CA");
    let (server, server_key) = leaf(
        &issuer,
        "mpay station",
        vec!["localhost".into(), "127.0.0.1".into()],
    );
    let (good, good_key) = leaf(&issuer, "pagopa-node", vec!["node.pagopa.test".into()]);
    let (foreign, foreign_key) = leaf(&other, "pagopa-node", vec!["node.pagopa.test".into()]);
    let (wrong, wrong_key) = leaf(&issuer, "someone-else", vec!["else.test".into()]);
    (
        ca_pem,
        server,
        server_key,
        format!("{good}{good_key}"),
        format!("{foreign}{foreign_key}"),
        format!("{wrong}{wrong_key}"),
    )
}

fn tls_client(ca: &str, identity: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(id.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

#[actix_web::test]
async fn mtls_admits_a_client_of_the_ca_with_an_allowed_subject_and_nobody_else() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (ca, server, server_key, good, foreign, wrong) = pki();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let (ca_f, cert_f, key_f) = (
        write("ca.pem", &ca),
        write("server.pem", &server),
        write("server.key", &server_key),
    );
    let cfg = dir.path().join("mpay.toml");
    let text = under("node", "environment = \"production\"")(config_text(&dir.path().join("data")));
    let text = under(
        "station",
        &station_section(&format!(
            "tls_bind = \"127.0.0.1:0\"\ntls_cert = \"{cert_f}\"\ntls_key = \"{key_f}\"\nclient_ca = \"{ca_f}\"\nclient_subjects = [\"node.pagopa.test\"]"
        )),
    )(text);
    std::fs::write(&cfg, text).unwrap();
    let n = node_with(dir, cfg).await;
    let tls = format!("https://{}", n.tls.expect("the mTLS listener"));
    // the good client: CA and subject (its DNS SAN) pass
    let (s, b) = verify(&tls_client(&ca, Some(&good)), &tls, &[]).await;
    assert_answered(s, &b);
    // a certificate of the CA naming another subject: the handshake passes, the station refuses
    let (s, b) = verify(&tls_client(&ca, Some(&wrong)), &tls, &[]).await;
    assert_refused(s, &b);
    assert!(b.contains("someone-else"), "{b}");
    // no certificate, or one of another CA: no TLS session at all
    for id in [None, Some(foreign.as_str())] {
        let r = tls_client(&ca, id)
            .post(format!("{tls}/pagopa/paForNode"))
            .header("SOAPAction", "paVerifyPaymentNotice")
            .body(verify_body())
            .send()
            .await;
        match r {
            Err(_) => {}
            Ok(res) => panic!(
                "TLS without a valid client certificate answered {}",
                res.status()
            ),
        }
    }
    // production, no allow-list: the plain listener refuses the station
    let (s, b) = verify(&from("127.0.0.1"), &n.base, &[]).await;
    assert_refused(s, &b);
}

/// Opens a REST request that declares a body and sends only part of it: it holds its place
/// among `max_inflight_other` until the connection closes.
fn slow_rest_request(base: &str) -> std::net::TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /api/v1/organizations/{ORG_A}/debtpositions HTTP/1.1\r\nHost: {addr}\r\nOcp-Apim-Subscription-Key: {KEY_A}\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{{\"iupd\":"
    );
    s.write_all(head.as_bytes()).unwrap();
    s
}

#[actix_web::test]
async fn the_station_answers_while_the_other_routes_are_saturated() {
    let n = node(under("http", "max_inflight_other = 4")).await;
    // four slow REST bodies take the four places. A holder may reach the server after a GET
    // of the loop below took a place: it is then answered 503 itself, so holders that got an
    // answer are replaced until four wait at once.
    let answered = |h: &std::net::TcpStream| {
        h.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let got =
            !matches!(h.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        h.set_nonblocking(false).unwrap();
        got
    };
    let mut holders: Vec<std::net::TcpStream> = Vec::new();
    let client = reqwest::Client::new();
    // every place of the other routes is taken: the next REST request is told to come back
    let mut busy = None;
    for _ in 0..200 {
        holders.retain(|h| !answered(h));
        while holders.len() < 4 {
            holders.push(slow_rest_request(&n.base));
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
        let r = client
            .get(n.base.clone() + "/api/v1/organizations/" + ORG_A + "/debtpositions")
            .header("Ocp-Apim-Subscription-Key", KEY_A)
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            busy = Some(r);
            break;
        }
    }
    let busy = busy.expect("503 once the other routes are saturated");
    assert_eq!(busy.headers()["retry-after"], "1");
    assert!(busy.text().await.unwrap().contains("BUSY"));
    // the station still has room
    for _ in 0..5 {
        let (s, b) = verify(&client, &n.base, &[]).await;
        assert_answered(s, &b);
    }
    // the holders go away: the places come back
    drop(holders);
    let mut ok = false;
    for _ in 0..100 {
        let r = client
            .get(format!(
                "{}/api/v1/organizations/{ORG_A}/debtpositions",
                n.base
            ))
            .header("Ocp-Apim-Subscription-Key", KEY_A)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        ok,
        "the other routes answer again once their places are free"
    );
}

#[actix_web::test]
async fn a_journal_flood_stays_under_its_size_bound() {
    const MAX: u64 = 256 * 1024;
    let n = node(under("journal", &format!("max_bytes = {MAX}"))).await;
    // junk SOAP and verifies: every one journaled (junk truncated to 1 KiB)
    let client = reqwest::Client::new();
    let junk = format!("<x>{}</x>", "j".repeat(4000));
    for i in 0..1200 {
        let body = if i % 2 == 0 {
            junk.clone()
        } else {
            verify_body()
        };
        let _ = client
            .post(format!("{}/pagopa/paForNode", n.base))
            .header("SOAPAction", "paVerifyPaymentNotice")
            .body(body)
            .send()
            .await
            .unwrap();
    }
    // the writer flushes every 20 ms in the tests
    let journal = n.store.journal.clone();
    // every exchange is written before the pass (else late batches land after it)
    for _ in 0..200 {
        if journal.len() >= 1200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = journal.size_bytes();
    let entries_before = journal.len();
    assert!(
        before > MAX,
        "the flood went past the bound: {before} bytes"
    );
    let mut after = before;
    for _ in 0..100 {
        n.scheduler.addr().do_send(mpay_actors::Tick);
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = journal.size_bytes();
        if after <= MAX {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let entries_after = journal.len();
    println!(
        "journal flood: {before} bytes / {entries_before} entries → {after} bytes / {entries_after} entries (max_bytes {MAX})"
    );
    assert!(after <= MAX, "{after} > {MAX}");
    assert!(entries_after > 0 && entries_after < entries_before);
    // the newest entries are the ones kept
    let newest = journal
        .query(&mpay_storage::JournalQuery {
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(newest.len(), 1);
    let metrics = reqwest::get(format!("{}/metrics", n.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mpay_journal_pruned_total{reason=\"size\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("mpay_journal_bytes"), "{metrics}");
}
