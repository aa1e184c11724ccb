//! Issue 9 (hostile traffic), points 2, 5, 6, 11, 15: secrets never logged and stored salted,
//! the FTP flood refused while the station answers, slow bodies cut, failed logins throttled,
//! the FTP folders and quota.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mpay_config::hash_api_key;

const BIN: &str = env!("CARGO_BIN_EXE_mpay");
const SERVER_SECRET: &str = "a-server-secret-of-at-least-32-characters!";

fn envelope(inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:pafn="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><soapenv:Header/><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"#
    )
}

/// A verify of an unknown notice of organization A: the station answers it (a KO fault).
fn verify_body() -> String {
    envelope(&format!(
        "<pafn:paVerifyPaymentNoticeReq><idPA>{ORG_A}</idPA><idBrokerPA>{ORG_B}</idBrokerPA><idStation>{ORG_B}_01</idStation><qrCode><fiscalCode>{ORG_A}</fiscalCode><noticeNumber>312000000000000099</noticeNumber></qrCode></pafn:paVerifyPaymentNoticeReq>"
    ))
}

fn blocking_verify(client: &reqwest::blocking::Client, base: &str) -> (u16, String, Duration) {
    let t = Instant::now();
    let r = client
        .post(format!("{base}/pagopa/paForNode"))
        .header("content-type", "text/xml; charset=utf-8")
        .header("SOAPAction", "paVerifyPaymentNotice")
        .body(verify_body())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().unwrap(), t.elapsed())
}

/// `mpay hash-secret` with the secret on standard input.
fn hash_secret(kind: &str, secret: &str, config: Option<&Path>) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["hash-secret", "--kind", kind])
        .env("MPAY__AUTH__HASH_SECRET", SERVER_SECRET)
        .env("MPAY_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{secret}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

struct Proc {
    child: Child,
    base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mpay serve --config cfg`, stderr into `log`; waits for readiness.
fn serve(cfg: &Path, log: &Path, mpay_log: Option<&str>) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config"])
        .arg(cfg)
        .env("MPAY__AUTH__HASH_SECRET", SERVER_SECRET)
        .env_remove("MPAY_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()));
    if let Some(l) = mpay_log {
        cmd.env("MPAY_LOG", l);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut base = String::new();
    let mut banner = String::new();
    for line in lines.by_ref().map_while(Result::ok) {
        banner.push_str(&line);
        banner.push('\n');
        if let Some(rest) = line.split("listening on ").nth(1) {
            base = rest.trim().to_string();
            break;
        }
    }
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    assert!(!base.is_empty(), "no banner: {banner}");
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !client
        .get(format!("{base}/health/ready"))
        .send()
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    Proc { child, base }
}

fn stop(mut p: Proc) {
    let _ = Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 9.5: FTP passwords stored as argon2id, API keys as HMAC with the server secret
/// (`mpay hash-secret`), legacy SHA-256 entries still accepted (and named in a warning); no
/// secret nor any form of its hash ever appears in the log, even at INFO with libunftp's own
/// lines (before: every FTP command logged the accounts' SHA-256 hashes).
#[test]
fn secrets_and_their_hashes_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (port, pasv) = (free_port(), 30900);
    let cfg = dir.path().join("mpay.toml");
    // first a configuration with the legacy forms, for `hash-secret --kind api-key --config`
    let legacy_text = format!(
        "{}{}",
        config_text(&data),
        feeds_config_text(&data, port, pasv)
    );
    std::fs::write(&cfg, &legacy_text).unwrap();
    let argon = hash_secret("ftp-password", FTP_PASSWORD_C, None);
    assert!(argon.starts_with("$argon2id$"), "{argon}");
    let hmac = hash_secret("api-key", KEY_C, Some(&cfg));
    assert!(hmac.starts_with("hmac-sha256:"), "{hmac}");
    // organization C: the new forms; organization A: the legacy SHA-256 of the key and FTP
    let text = legacy_text
        .replace(&hash_api_key(FTP_PASSWORD_C), &argon)
        .replace(&hash_api_key(KEY_C), &hmac);
    std::fs::write(&cfg, &text).unwrap();
    let log = dir.path().join("mpay.log");
    let p = serve(&cfg, &log, Some("info,libunftp=debug"));
    let addr = format!("127.0.0.1:{port}");
    let mut ftp = suppaftp::FtpStream::connect(&addr).unwrap();
    ftp.login("ente_c", FTP_PASSWORD_C).unwrap();
    ftp.cwd("in").unwrap();
    let _ = ftp.nlst(None);
    let _ = ftp.quit();
    let mut ftp = suppaftp::FtpStream::connect(&addr).unwrap();
    ftp.login("ente_a", FTP_PASSWORD_A).unwrap();
    let _ = ftp.quit();
    let mut bad = suppaftp::FtpStream::connect(&addr).unwrap();
    assert!(bad.login("ente_c", "wrong-password").is_err());
    assert!(bad.login("nobody", FTP_PASSWORD_C).is_err());
    let client = reqwest::blocking::Client::new();
    for (org, key) in [(ORG_C, KEY_C), (ORG_A, KEY_A)] {
        let r = client
            .get(format!(
                "{}/api/v1/organizations/{org}/debtpositions",
                p.base
            ))
            .header("Ocp-Apim-Subscription-Key", key)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{org}");
    }
    stop(p);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("FTP server for feeds started"), "{log}");
    assert!(
        log.contains("unsalted SHA-256") && log.contains("ftp.accounts[1].password_hash"),
        "the legacy entries are named:\n{log}"
    );
    let argon_hash_part = argon.rsplit('$').next().unwrap().to_string();
    let hmac_hex = hmac.trim_start_matches("hmac-sha256:").to_string();
    for secret in [
        FTP_PASSWORD_C.to_string(),
        FTP_PASSWORD_A.to_string(),
        KEY_C.to_string(),
        KEY_A.to_string(),
        SERVER_SECRET.to_string(),
        argon_hash_part,
        hmac_hex,
        hash_api_key(FTP_PASSWORD_A),
        hash_api_key(KEY_A),
        hash_api_key(KEY_B),
    ] {
        assert!(
            !log.contains(&secret),
            "{secret} is in the log ({} bytes)",
            log.len()
        );
    }
}

/// Issue 9.2: a flood of bare TCP connections to the FTP port is refused at once (421) beyond
/// the limits, admitted ones that never log in are closed after the login timeout, the log
/// stays small, and the station answers a verify meanwhile (before: every connection was
/// accepted and logged with the whole configuration).
#[test]
fn ftp_flood_is_refused_and_the_station_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (port, pasv) = (free_port(), 30920);
    let text = format!(
        "{}{}",
        config_text(&data),
        feeds_config_text(&data, port, pasv).replacen(
            "[[ftp.accounts]]",
            "max_connections = 20\nmax_connections_per_ip = 5\nlogin_timeout_secs = 8\n\n[[ftp.accounts]]",
            1
        )
    );
    let cfg = dir.path().join("mpay.toml");
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("mpay.log");
    let p = serve(&cfg, &log, None);
    let log_before = std::fs::metadata(&log).unwrap().len();
    let addr = format!("127.0.0.1:{port}");
    let client = reqwest::blocking::Client::new();
    let started = Instant::now();
    let mut conns = Vec::new();
    for _ in 0..600 {
        if let Ok(s) = TcpStream::connect(&addr) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            conns.push(s);
        }
    }
    // the station answers while the connections are held
    let (status, body, took) = blocking_verify(&client, &p.base);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("paVerifyPaymentNoticeRes"), "{body}");
    assert!(took < Duration::from_secs(2), "verify took {took:?}");
    let (mut admitted, mut refused) = (0, 0);
    let mut admitted_conns = Vec::new();
    for mut s in conns {
        let mut first = [0u8; 3];
        match s.read_exact(&mut first) {
            Ok(()) if &first == b"421" => {
                refused += 1;
                // and closed at once
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
            }
            Ok(()) if &first == b"220" => {
                admitted += 1;
                admitted_conns.push(s);
            }
            other => panic!("unexpected greeting {other:?} {first:?}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refusals were slow: {:?}",
        started.elapsed()
    );
    // (the login timeout is longer than the flood takes even on a loaded machine: no slot is
    // freed while the 600 connections arrive)
    assert_eq!(admitted, 5, "per-IP limit (refused {refused})");
    assert_eq!(refused, 595);
    // the admitted ones never log in: closed after the login timeout (8 s)
    let t = Instant::now();
    for mut s in admitted_conns {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    assert!(
        t.elapsed() < Duration::from_secs(12),
        "not closed after the login timeout: {:?}",
        t.elapsed()
    );
    // a legitimate client gets in again
    let mut ftp = suppaftp::FtpStream::connect(&addr).unwrap();
    ftp.login("ente_c", FTP_PASSWORD_C).unwrap();
    let _ = ftp.quit();
    let (status, _, _) = blocking_verify(&client, &p.base);
    assert_eq!(status, 200);
    let metrics = client
        .get(format!("{}/metrics", p.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("mpay_ftp_connections_refused_total"),
        "{metrics}"
    );
    let grown = std::fs::metadata(&log).unwrap().len() - log_before;
    stop(p);
    assert!(
        grown < 16 * 1024,
        "the log grew by {grown} bytes for 600 connections:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

/// Behind a trusted reverse proxy every client reaches mpay from the proxy's address: the
/// throttle counts failures against the forwarded client, so one guesser does not lock out the
/// other clients of the proxy (before: one bucket for the proxy, the right key got 429 too).
#[actix_rt::test]
async fn behind_a_trusted_proxy_the_throttle_counts_the_forwarded_client() {
    let app = common::spawn_app_edited(|text| {
        let text = text.replacen(
            "[http]\n",
            "[http]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
            1,
        );
        format!("{text}\n[auth]\nfailure_limit = 5\nfailure_window_secs = 60\n")
    })
    .await;
    let url = app.positions_url(common::ORG_A);
    let get = |client: &'static str, key: String| {
        app.client
            .get(&url)
            .header("X-Forwarded-For", client)
            .header("Ocp-Apim-Subscription-Key", key)
            .send()
    };
    for i in 0..5 {
        let r = get("203.0.113.7", format!("guess-{i:04}-xxxxxxxxxxxx"))
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "attempt {i}");
    }
    let r = get("203.0.113.7", common::KEY_A.to_string()).await.unwrap();
    assert_eq!(
        r.status(),
        429,
        "the guesser waits, even with the right key"
    );
    let r = get("198.51.100.9", common::KEY_A.to_string())
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "another client of the same proxy is not throttled"
    );
    // its own wrong key is a plain 401 (a key prefix the guesser did not use)
    let r = get("198.51.100.9", "other-5555-yyyyyyyyyyyy".to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Issue 9.11: wrong API keys and FTP passwords are throttled per IP and per key prefix / user:
/// after `failure_limit` failures the REST API answers 429 with Retry-After (even the right
/// key, from that IP) and FTP refuses the login; metrics count both.
#[actix_rt::test]
async fn failed_authentications_are_throttled() {
    let port = free_port();
    let app = spawn_feeds_app_with(port, 30940, |text, _| {
        format!("{text}\n[auth]\nfailure_limit = 5\nfailure_window_secs = 60\n")
    })
    .await;
    let url = app.positions_url(ORG_C);
    for i in 0..5 {
        let r = app
            .client
            .get(&url)
            .header(
                "Ocp-Apim-Subscription-Key",
                format!("guess-{i:04}-xxxxxxxxxxxx"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "attempt {i}");
    }
    let r = app
        .client
        .get(&url)
        .header("Ocp-Apim-Subscription-Key", "guess-9999-xxxxxxxxxxxx")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "AUTH_THROTTLED", "{v}");
    // the right key from the throttled address waits too
    let r = app
        .client
        .get(&url)
        .header("Ocp-Apim-Subscription-Key", KEY_C)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mpay_auth_failures_total{surface=\"rest\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mpay_auth_throttled_total{surface=\"rest\"}"),
        "{metrics}"
    );
    // FTP: five wrong passwords, then even the right one is refused
    let addr = format!("127.0.0.1:{port}");
    let (wrong, right, reconnect) = actix_rt::task::spawn_blocking(move || {
        let mut wrong = 0;
        for _ in 0..5 {
            let mut ftp = suppaftp::FtpStream::connect(&addr).unwrap();
            if ftp.login("ente_c", "not-the-password").is_err() {
                wrong += 1;
            }
        }
        let right = suppaftp::FtpStream::connect(&addr)
            .map(|mut f| f.login("ente_c", FTP_PASSWORD_C).is_ok())
            .unwrap_or(false);
        // a new connection from the throttled address is refused with 421
        let reconnect = match TcpStream::connect(&addr) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut b = [0u8; 3];
                s.read_exact(&mut b).map(|_| b.to_vec()).unwrap_or_default()
            }
            Err(_) => Vec::new(),
        };
        (wrong, right, reconnect)
    })
    .await
    .unwrap();
    assert_eq!(wrong, 5);
    assert!(!right, "the right password was accepted while throttled");
    assert_eq!(reconnect, b"421".to_vec());
}

/// Issue 9.6: a client that declares a large body and trickles it is answered 408 and cut
/// after the body timeout while a normal verify succeeds; a client IP beyond its connection
/// limit is answered 429 (before: the slow body held its connection for as long as it
/// trickled).
#[actix_rt::test]
async fn slow_bodies_are_cut_and_connections_per_ip_limited() {
    let app = spawn_app_edited(|t| {
        t.replacen(
            "workers = 2",
            "workers = 2\nbody_timeout_ms = 1000\nhead_timeout_ms = 10000\nmax_connections_per_ip = 12",
            1,
        )
    })
    .await;
    let host = app.base.trim_start_matches("http://").to_string();
    let h2 = host.clone();
    let slow = actix_rt::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut s = TcpStream::connect(&h2).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        write!(
            s,
            "POST /pagopa/paForNode HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nSOAPAction: paVerifyPaymentNotice\r\nContent-Length: 1000000\r\n\r\n<"
        )
        .unwrap();
        let mut answer = Vec::new();
        // a byte every 300 ms for up to 8 s, until the server answers or closes
        while started.elapsed() < Duration::from_secs(8) {
            if s.write_all(b" ").is_err() {
                break;
            }
            let mut buf = [0u8; 4096];
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (
            started.elapsed(),
            String::from_utf8_lossy(&answer).to_string(),
        )
    });
    // meanwhile a normal verify
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let body = station_soap(
        &app.client,
        &app.base,
        "paVerifyPaymentNotice",
        verify_body(),
    )
    .await;
    assert!(body.contains("paVerifyPaymentNoticeRes"), "{body}");
    assert!(t.elapsed() < Duration::from_secs(1));
    let (took, answer) = slow.await.unwrap();
    assert!(
        took < Duration::from_secs(4),
        "the slow body held its connection for {took:?}: {answer}"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("BODY_TIMEOUT"), "{answer}");
    // the connection limit per IP: 12 idle connections, then a request on a 13th
    let idle: Vec<TcpStream> = (0..12)
        .map(|_| TcpStream::connect(&host).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let r = fresh
        .get(format!("{}/health/live", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "TOO_MANY_CONNECTIONS");
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = fresh
            .get(format!("{}/health/live", app.base))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {}", r.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 9.15: an FTP account cannot remove `in/` or `out/`, make folders, or store anything
/// but feed files and checksum sidecars in `in/`, within its quota; the housekeeping removes
/// old files (before: `RMD in` worked and any file of any size was kept).
#[actix_rt::test]
async fn ftp_folders_stay_only_feed_files_within_the_quota() {
    let port = free_port();
    let app = spawn_feeds_app_with(port, 30960, |text, _| {
        text.replacen(
            "[[ftp.accounts]]",
            "quota_bytes = 100000\nretention_days = 30\n\n[[ftp.accounts]]",
            1,
        )
    })
    .await;
    let addr = format!("127.0.0.1:{port}");
    let home = app.dir.path().join("data/ftp").join(ORG_C);
    let results = actix_rt::task::spawn_blocking(move || {
        let mut ftp = suppaftp::FtpStream::connect(&addr).unwrap();
        ftp.login("ente_c", FTP_PASSWORD_C).unwrap();
        let mut r = vec![("rmdir in", ftp.rmdir("in").is_ok())];
        r.push(("rmdir /out", ftp.rmdir("/out").is_ok()));
        r.push(("mkdir x", ftp.mkdir("x").is_ok()));
        r.push((
            "put notes.txt",
            ftp.put_file(
                "/in/notes.txt",
                &mut std::io::Cursor::new(b"hello".to_vec()),
            )
            .is_ok(),
        ));
        r.push((
            "put /x.csv",
            ftp.put_file("/x.csv", &mut std::io::Cursor::new(b"a;b".to_vec()))
                .is_ok(),
        ));
        r.push((
            "put over quota",
            ftp.put_file(
                "/in/c_x000-BIG-1_0.md5",
                &mut std::io::Cursor::new(vec![b'0'; 200_000]),
            )
            .is_ok(),
        ));
        r.push((
            "rename to txt",
            ftp.put_file(
                "/in/c_x000-OK-1_0.md5",
                &mut std::io::Cursor::new(b"0123".to_vec()),
            )
            .is_ok()
                && ftp.rename("/in/c_x000-OK-1_0.md5", "/in/evil.txt").is_ok(),
        ));
        let _ = ftp.quit();
        r
    })
    .await
    .unwrap();
    for (what, ok) in &results {
        assert!(!ok, "{what} was allowed: {results:?}");
    }
    assert!(home.join("in").is_dir() && home.join("out").is_dir());
    assert!(
        !home.join("in/c_x000-BIG-1_0.md5").exists(),
        "over-quota file kept"
    );
    assert!(!home.join("in/notes.txt").exists());
    // a sidecar within the quota is stored
    assert!(home.join("in/c_x000-OK-1_0.md5").is_file());
    // housekeeping: a 40-day-old file goes, a new one stays
    let old = home.join("out/old-ESITO.csv");
    std::fs::write(&old, "x").unwrap();
    let st = Command::new("touch")
        .args(["-d", "40 days ago"])
        .arg(&old)
        .status()
        .unwrap();
    assert!(st.success());
    let root = app.dir.path().join("data/ftp");
    let removed = mpay::feeds::ftp::housekeeping(&root, &[ORG_C.to_string()], 30);
    assert_eq!(removed, 1);
    assert!(!old.exists());
    assert!(home.join("in/c_x000-OK-1_0.md5").is_file());
}
