//! Tests of the `mpay` binary as a process: `serve --demo` on a fresh directory, restart,
//! SIGTERM, the CLI tools, a bad configuration, and the SIGKILL crash test of the store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mpay_messages::OrgFiscalCode;
use mpay_storage::{PositionRepository, Store};
use rand::Rng;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_mpay");
const DEMO_ORG: &str = "80001234568";
const DEMO_KEY: &str = "demo-key-for-tests";

struct Server {
    child: Child,
    base: String,
}

/// Starts `mpay serve --demo` in `cwd` on a random port; waits for the banner and readiness.
fn serve_demo(cwd: &Path) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--demo", "--bind", "127.0.0.1:0"])
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
    let mut base = None;
    let mut banner = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        banner.push_str(&line);
        banner.push('\n');
        if let Some(rest) = line.split("listening on ").nth(1) {
            base = Some(rest.trim().to_string());
        }
        if line.contains("demo API key") {
            break;
        }
    }
    let base = base.unwrap_or_else(|| panic!("no banner from mpay serve:\n{banner}"));
    assert!(banner.contains(DEMO_ORG), "{banner}");
    assert!(
        banner.contains(DEMO_KEY),
        "the demo key from MPAY_DEMO_API_KEY is printed: {banner}"
    );
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if client
            .get(format!("{base}/health/ready"))
            .send()
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        assert!(Instant::now() < deadline, "not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, base }
}

fn sigterm(mut server: Server) {
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "mpay exited with {status} after SIGTERM");
            return;
        }
        assert!(Instant::now() < deadline, "mpay did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mpay(cwd: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env("MPAY_LOG", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn demo_serves_creates_restarts_and_the_cli_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_demo(dir.path());
    let client = reqwest::blocking::Client::new();
    let url = format!(
        "{}/api/v1/organizations/{DEMO_ORG}/debtpositions",
        server.base
    );

    // the demo data is there
    let list: Value = client
        .get(&url)
        .header("Ocp-Apim-Subscription-Key", DEMO_KEY)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list["page_info"]["items_found"], 3, "{list}");

    let body = json!({
        "iupd": "E2E-1", "type": "F", "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi",
        "companyName": "Comune di Borgo Demo",
        "paymentOption": [{"amount": 35000, "description": "Loculo", "isPartialPayment": false,
            "dueDate": "2030-06-30",
            "transfer": [{"idTransfer": "1", "amount": 35000, "remittanceInformation": "LOCULI CIMITERIALI",
                          "category": "9/0201133IM/", "iban": "IT47D0103002600000061234567"}]}]
    });
    let res = client
        .post(format!("{url}?toPublish=true"))
        .header("Ocp-Apim-Subscription-Key", DEMO_KEY)
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().unwrap();
    let nav = created["paymentOption"][0]["nav"]
        .as_str()
        .unwrap()
        .to_string();

    let (ok, out) = mpay(dir.path(), &["iuv", "check", &nav]);
    assert!(
        ok && out.contains("OK") && out.contains("segregation code 12"),
        "{out}"
    );
    let mut wrong = nav.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    let (ok, out) = mpay(dir.path(), &["iuv", "check", &wrong]);
    assert!(!ok && out.contains("WRONG"), "{out}");

    // the store is locked while the server runs: a clear message, not a crash
    let (ok, out) = mpay(dir.path(), &["store", "verify", "--demo"]);
    assert!(
        !ok && (out.contains("is another") || out.contains("running")),
        "{out}"
    );

    sigterm(server);

    let (ok, out) = mpay(dir.path(), &["store", "verify", "--demo"]);
    assert!(
        ok && out.contains("consistent") && out.contains("4 positions"),
        "{out}"
    );
    let (ok, out) = mpay(dir.path(), &["iuv", "next", "--org", DEMO_ORG, "--demo"]);
    assert!(ok, "{out}");
    assert_ne!(out.trim(), nav, "a new number, never the same again");

    // export / import into a fresh directory
    let export = dir.path().join("backup.jsonl");
    let (ok, out) = mpay(
        dir.path(),
        &[
            "store",
            "export",
            "--demo",
            "--out",
            export.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    let other = tempfile::tempdir().unwrap();
    let (ok, out) = mpay(
        other.path(),
        &["store", "import", "--demo", export.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    let (ok, out) = mpay(other.path(), &["store", "verify", "--demo"]);
    assert!(ok && out.contains("4 positions"), "{out}");

    // restart keeps the position (and the same demo key from the environment)
    let server = serve_demo(dir.path());
    let got: Value = client
        .get(format!(
            "{}/api/v1/organizations/{DEMO_ORG}/debtpositions/E2E-1",
            server.base
        ))
        .header("Ocp-Apim-Subscription-Key", DEMO_KEY)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(got["paymentOption"][0]["nav"], nav.as_str());
    assert_eq!(got["status"], "VALID");
    sigterm(server);
}

#[test]
fn a_bad_configuration_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[[organizations]]\nfiscal_code = \"8000123456\"\nname = \"x\"\naux_digit = 3\nsegregation_code = 1\n",
    )
    .unwrap();
    let (ok, out) = mpay(dir.path(), &["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("organizations[0].fiscal_code"), "{out}");
    let (ok, out) = mpay(dir.path(), &["serve", "--config", "/nonexistent.toml"]);
    assert!(!ok && out.contains("does not exist"), "{out}");
}

/// A child writes positions and prints `ACK` after each durable write; it is killed with SIGKILL
/// at a random moment, repeatedly, on the same store. After each kill every acknowledged write
/// must be there and the indexes must agree with the ledger.
#[test]
fn sigkill_during_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let org = OrgFiscalCode::parse_unchecked(DEMO_ORG).unwrap();
    let mut rng = rand::rng();
    let mut total_acked = 0;
    for round in 0..6 {
        let mut child = Command::new(BIN)
            .args([
                "store",
                "stress-writer",
                "--dir",
                store_dir.to_str().unwrap(),
                "--prefix",
                &format!("R{round}"),
            ])
            .env("MPAY_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // wait for the first ACK (the store is open and writing), then a random time
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("writer never acknowledged");
        std::thread::sleep(Duration::from_millis(rng.random_range(50..400)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let acks: Vec<String> = std::iter::once(first).chain(rx.try_iter()).collect();

        let store = Store::open(&store_dir).unwrap();
        let mut creates = 0;
        for ack in &acks {
            let parts: Vec<&str> = ack.split(' ').collect();
            match parts.as_slice() {
                ["ACK", "C", iupd] => {
                    creates += 1;
                    assert!(
                        store.ledger.get(&org, iupd).unwrap().is_some(),
                        "round {round}: acknowledged create {iupd} lost"
                    );
                }
                ["ACK", "M", iupd, rev] => {
                    let p = store.ledger.get(&org, iupd).unwrap().unwrap();
                    assert!(
                        p.revision >= rev.parse::<u64>().unwrap(),
                        "round {round}: acknowledged update {iupd} r{rev} lost (found r{})",
                        p.revision
                    );
                }
                // the last line may be cut by the kill
                _ => {}
            }
        }
        let report = store.ledger.verify().unwrap();
        assert!(report.is_consistent(), "round {round}: {report:?}");
        assert!(creates > 0);
        total_acked += acks.len();
        drop(store);
    }
    eprintln!("crash test: {total_acked} acknowledged writes checked over 6 SIGKILLs");
}

/// Issue 11: `serve --demo --data-dir` from any directory, the demo key file follows
/// MPAY_DEMO_API_KEY, the store commands say what to do while the server runs, and a log sent
/// to a file has no colour escapes.
#[test]
fn data_dir_key_file_store_in_use_and_plain_logs() {
    let cwd = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("mpay-data");
    // a stale key file from an earlier run
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("demo-api-key"), "stale-key").unwrap();
    let log_path = cwd.path().join("mpay.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--demo", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .current_dir(cwd.path())
        .env("MPAY_DEMO_API_KEY", DEMO_KEY)
        .env("MPAY_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = String::new();
    let mut base = String::new();
    for line in lines.by_ref().map_while(Result::ok) {
        banner.push_str(&line);
        banner.push('\n');
        if let Some(rest) = line.split("listening on ").nth(1) {
            base = rest.trim().to_string();
        }
        if line.contains("demo API key") {
            break;
        }
    }
    // keep reading stdout (the server must not see a closed pipe)
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client
        .get(format!("{base}/health/ready"))
        .send()
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "not ready: {banner}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(banner.contains(&data_dir.display().to_string()), "{banner}");
    assert!(banner.contains("c_demo"), "the demo ipa_code: {banner}");
    assert!(banner.contains("?wsdl"), "{banner}");
    assert!(
        data_dir.join("store-v1").is_dir(),
        "the store is in --data-dir"
    );
    assert!(!cwd.path().join("data").exists(), "nothing in the cwd");
    assert_eq!(
        std::fs::read_to_string(data_dir.join("demo-api-key")).unwrap(),
        DEMO_KEY,
        "the key file holds the key in use"
    );
    // read-only commands while the server runs: a clear message, not a sled error
    let d = data_dir.to_str().unwrap();
    for args in [
        vec!["store", "verify", "--demo", "--data-dir", d],
        vec!["feed", "list", "--demo", "--data-dir", d],
    ] {
        let (ok, text) = mpay(cwd.path(), &args);
        assert!(!ok, "{args:?}: {text}");
        assert!(text.contains("in use by a running `mpay serve`"), "{text}");
        assert!(text.contains("/api/v1/organizations/"), "{text}");
        assert!(text.contains("stop the server first"), "{text}");
    }
    sigterm(Server { child, base });
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colour escapes in a log file:\n{log}"
    );
    // the server stopped: the same command works
    let (ok, text) = mpay(cwd.path(), &["store", "verify", "--demo", "--data-dir", d]);
    assert!(ok, "{text}");
    assert!(text.contains("consistent"), "{text}");
    // `feed load` without --demo names the way out
    let (ok, text) = mpay(
        cwd.path(),
        &["feed", "load", "--org", DEMO_ORG, "--data-dir", d, "x.csv"],
    );
    assert!(!ok);
    assert!(text.contains("add --demo"), "{text}");
}
