//! Reconciliation end to end with the simulator (issue 14): the real node (temp sled store,
//! HTTP on port 0) is paid by `pagopa-sim psp` (its own XML, every answer XSD-checked), the
//! simulator builds the PSPs' reporting flows from the payments it recorded and serves them on
//! its FdR REST API (`fdr serve`, port 0, subscription key), the node downloads them
//! (`POST …/fdrs/sync` with `[fdr] base_url` pointing at the simulator), the simulator writes
//! the bank's statement (camt.053 or OPI giornale di cassa) and the node imports it
//! (`POST …/bank-statements`): every payment ends `RT_IUF_TES`. Then the faults (a revised flow,
//! repeated rows, a code-9 row for an unknown IUV before the normal rows, an unknown outcome
//! code, a header that disagrees with its rows, an IUR that is not the receiptId, a flow settled
//! by two credits, treasury spaces inside the id, a credit nobody explains), each ending with
//! its label or flag and no flow aborted; and a simulated month, printed day by day.
//! The spec pack is read at run time from `../shared/pagopa` (skipped loudly when absent).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{spawn_app_with, TestApp, IBAN_A, KEY_A, ORG_A, ORG_B};
use serde_json::Value;

const FDR_KEY: &str = "fdr-subscription-key-of-the-broker";

fn shared() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pagopa");
    if dir.join("schemas").is_dir() {
        Some(dir)
    } else {
        if std::env::var_os("MPAY_REQUIRE_SHARED").is_some_and(|v| v == "1") {
            panic!("reference material missing and MPAY_REQUIRE_SHARED=1");
        }
        eprintln!("SKIPPED: pagoPA spec pack not found at {}", dir.display());
        None
    }
}

/// The simulator binary built next to this test (cargo builds every workspace binary before
/// running the workspace's tests); built on demand otherwise.
fn sim_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("pagopa-sim");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "pagopa-sim", "--bin", "pagopa-sim"])
            .status()
            .unwrap();
        assert!(status.success(), "could not build pagopa-sim");
    }
    bin
}

/// The simulator's files and commands for one test.
struct Sim {
    bin: PathBuf,
    schemas: PathBuf,
    dir: tempfile::TempDir,
}

impl Sim {
    fn new() -> Option<Sim> {
        let shared = shared()?;
        Some(Sim {
            bin: sim_binary(),
            schemas: shared.join("schemas"),
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs a simulator command to its end (off the test's runtime); returns its stdout.
    async fn run(&self, args: Vec<String>) -> String {
        let bin = self.bin.clone();
        let schemas = self.schemas.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(bin)
                .arg("--schemas")
                .arg(schemas)
                .args(&args)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "pagopa-sim failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// `pagopa-sim psp`: `count` fresh notices of `cents` created over REST and paid, dated
    /// over the `days` days before today, recorded in `payments.jsonl`.
    async fn pay(&self, app: &TestApp, count: usize, cents: i64, days: u32) {
        self.pay_with(app, count, cents, days, 0.0).await;
    }

    /// [`Sim::pay`] with a share of the payments closed by Stand-In receipts.
    async fn pay_with(&self, app: &TestApp, count: usize, cents: i64, days: u32, stand_in: f64) {
        let cfg = self.path(&format!("psp-{cents}.toml"));
        std::fs::write(
            &cfg,
            format!(
                r#"
[station]
id_broker_pa = "{ORG_B}"
id_station = "{ORG_B}_01"
[psp]
id_psp = "88888888888"
id_broker_psp = "88888888888"
id_channel = "88888888888_01"
company_name = "PSP di Prova S.p.A."
fiscal_code = "88888888888"
[mix]
v2_share = 0.5
stand_in_share = {stand_in}
seed = 7
[stand_in]
iban = "{IBAN_A}"
[notices.discover]
organizations = ["{ORG_A}"]
limit = 1
[notices.create]
organization = "{ORG_A}"
iban = "{IBAN_A}"
category = "9/0101108TS/"
amount_cents = {cents}
"#
            ),
        )
        .unwrap();
        let out = self
            .run(vec![
                "psp".into(),
                "--station".into(),
                format!("{}/pagopa/paForNode", app.base),
                "--config".into(),
                cfg.display().to_string(),
                "--rest".into(),
                app.base.clone(),
                "--key".into(),
                KEY_A.into(),
                "--create".into(),
                count.to_string(),
                "--concurrency".into(),
                "4".into(),
                "--payment-days".into(),
                days.to_string(),
                "--payments-out".into(),
                self.path("payments.jsonl").display().to_string(),
            ])
            .await;
        let summary: Value = out
            .lines()
            .find_map(|l| l.strip_prefix("SUMMARY "))
            .map(|s| serde_json::from_str(s).unwrap())
            .expect("SUMMARY line");
        assert_eq!(summary["ok"], true, "{summary}");
    }

    /// The payments recorded so far.
    fn payments(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("payments.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// `pagopa-sim fdr build` with `faults`; returns its stdout.
    async fn build(&self, faults: &[&str]) -> String {
        let mut args: Vec<String> = vec![
            "fdr".into(),
            "build".into(),
            "--payments".into(),
            self.path("payments.jsonl").display().to_string(),
            "--out".into(),
            self.path("flows.json").display().to_string(),
        ];
        for f in faults {
            args.push("--fault".into());
            args.push((*f).into());
        }
        self.run(args).await
    }

    /// `pagopa-sim fdr bank` with `extra` options; returns the statement's text.
    async fn bank(&self, format: &str, extra: &[&str]) -> String {
        let out = self.path(&format!("statement-{format}.xml"));
        let mut args: Vec<String> = vec![
            "fdr".into(),
            "bank".into(),
            "--flows".into(),
            self.path("flows.json").display().to_string(),
            "--format".into(),
            format.into(),
            "--organization".into(),
            ORG_A.into(),
            "--out".into(),
            out.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_string()));
        self.run(args).await;
        std::fs::read_to_string(out).unwrap()
    }

    /// `pagopa-sim fdr serve` on port 0 (the flows file may not exist yet).
    fn serve(&self) -> FdrServer {
        let mut child = Command::new(&self.bin)
            .args(["fdr", "serve", "--bind", "127.0.0.1:0", "--flows"])
            .arg(self.path("flows.json"))
            .args(["--subscription-key", FDR_KEY])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("fdr serve said {line:?}"))
            .to_string();
        FdrServer {
            child,
            base,
            _stdout: stdout,
        }
    }
}

/// The simulator's FdR API, stopped when dropped.
struct FdrServer {
    child: Child,
    base: String,
    /// Kept open while the server runs.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Drop for FdrServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FdrServer {
    async fn control(&self, what: &str) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}/_sim/{what}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{what}");
        r.json().await.unwrap()
    }
}

async fn node(fdr: &FdrServer) -> TestApp {
    spawn_app_with(&format!(
        "\n[fdr]\nbase_url = \"{}/\"\nsubscription_key = \"{FDR_KEY}\"\npage_size = 2\nsync_interval_secs = 0\n",
        fdr.base
    ))
    .await
}

async fn sync(app: &TestApp) -> Value {
    let r = app
        .client
        .post(format!(
            "{}/api/v1/organizations/{ORG_A}/fdrs/sync",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn import_statement(app: &TestApp, name: &str, body: String) -> Value {
    let r = app
        .client
        .post(format!(
            "{}/api/v1/organizations/{ORG_A}/bank-statements",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .header("X-File-Name", name)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

async fn report(app: &TestApp) -> Value {
    app.client
        .get(format!(
            "{}/api/v1/organizations/{ORG_A}/reconciliation",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn line_of<'a>(report: &'a Value, receipt_id: &str) -> &'a Value {
    report["payments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["receiptId"] == receipt_id)
        .unwrap_or_else(|| panic!("no payment line for {receipt_id}: {report}"))
}

fn label_of(report: &Value, receipt_id: &str) -> String {
    line_of(report, receipt_id)["label"]
        .as_str()
        .unwrap()
        .to_string()
}

fn flow<'a>(report: &'a Value, flow_id: &str) -> &'a Value {
    report["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["flowId"] == flow_id)
        .unwrap_or_else(|| panic!("no flow {flow_id}: {report}"))
}

/// Every revision the simulator built (its flows file).
fn flows_built(sim: &Sim) -> Vec<Value> {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(sim.path("flows.json")).unwrap()).unwrap();
    v["flows"].as_array().unwrap().clone()
}

fn flow_id(flows: &[Value], ordinal: u64) -> String {
    flows.iter().find(|f| f["ordinal"] == ordinal).unwrap()["fdr"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Payments → flows over the simulator's FdR API → the simulator's bank statement: every
/// payment `RT_IUF_TES`, in camt.053 (`format` = camt053) or OPI.
async fn every_payment_ends_rt_iuf_tes(format: &str) {
    let Some(sim) = Sim::new() else { return };
    let fdr = sim.serve();
    let app = node(&fdr).await;
    sim.pay(&app, 6, 5_000, 3).await;
    let payments = sim.payments();
    assert_eq!(payments.len(), 6);
    let r = report(&app).await;
    for p in &payments {
        assert_eq!(label_of(&r, p["receiptId"].as_str().unwrap()), "RT_NO_IUF");
    }

    let built = sim.build(&[]).await;
    assert_eq!(built.matches("FLOW ").count(), 3, "{built}");
    assert_eq!(fdr.control("reload").await["flows"], 3);
    // the simulator's API wants its subscription key
    let denied = reqwest::Client::new()
        .get(format!("{}/organizations/{ORG_A}/fdrs", fdr.base))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);

    let s = sync(&app).await;
    assert_eq!(
        (s["listed"].as_i64(), s["stored"].as_i64()),
        (Some(3), Some(3)),
        "{s}"
    );
    assert_eq!(s["failed"].as_array().unwrap().len(), 0, "{s}");
    let r = report(&app).await;
    for p in &payments {
        assert_eq!(
            label_of(&r, p["receiptId"].as_str().unwrap()),
            "RT_IUF",
            "reported, the money not there yet"
        );
    }

    let statement = sim.bank(format, &["--remittance", "mixed"]).await;
    let imported = import_statement(&app, &format!("{format}.xml"), statement.clone()).await;
    assert_eq!(
        (imported["credits"].as_i64(), imported["new"].as_i64()),
        (Some(3), Some(3)),
        "{imported}"
    );
    let again = import_statement(&app, &format!("{format}.xml"), statement).await;
    assert_eq!(again["alreadyKnown"], 3, "importing twice changes nothing");
    let r = report(&app).await;
    for p in &payments {
        assert_eq!(
            label_of(&r, p["receiptId"].as_str().unwrap()),
            "RT_IUF_TES",
            "{r}"
        );
    }
    for f in r["flows"].as_array().unwrap() {
        assert_eq!(f["settlement"], "Settled", "{f}");
        assert_eq!(f["flags"].as_array().unwrap().len(), 0, "{f}");
    }
    assert!(r["credits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["label"] == "RT_IUF_TES"));
    assert_eq!(r["totals"]["RT_IUF_TES"][0], 6, "{}", r["totals"]);
    assert_eq!(r["totals"]["RT_IUF_TES"][1], 30_000);
    // nothing new to download
    let s = sync(&app).await;
    assert_eq!(s["listed"], 0, "{s}");
    // the reported options reach PO_REPORTED through the ReconciliationWorker
    app.wait_for("the worker's run", || async {
        report(&app).await["lastRun"]["payments"] == 6
    })
    .await;
}

#[actix_rt::test]
async fn simulated_payments_flows_and_camt_credits_end_rt_iuf_tes() {
    every_payment_ends_rt_iuf_tes("camt053").await;
}

#[actix_rt::test]
async fn simulated_payments_flows_and_opi_credits_end_rt_iuf_tes() {
    every_payment_ends_rt_iuf_tes("opi").await;
}

/// Six flows, one fault each, settled by a statement with a split credit, treasury spaces and
/// a credit nobody explains: every payment ends `RT_IUF_TES` once the revised flow's second
/// revision is published, each fault is flagged or labelled, no flow is aborted.
#[actix_rt::test]
async fn faults_in_flows_and_credits_end_with_their_label_and_never_abort_a_flow() {
    let Some(sim) = Sim::new() else { return };
    let fdr = sim.serve();
    let app = node(&fdr).await;
    sim.pay(&app, 12, 5_000, 6).await;
    let payments = sim.payments();
    assert_eq!(payments.len(), 12);
    sim.build(&[
        "revised@1",
        "duplicate-rows@2",
        "code9@3",
        "unknown-code@4",
        "header-mismatch@5",
        "iur-differs@6",
    ])
    .await;
    let built = flows_built(&sim);
    assert_eq!(built.len(), 7, "six flows and a held revision");
    let ids: Vec<String> = (1..=6).map(|n| flow_id(&built, n)).collect();
    fdr.control("reload").await;

    let s = sync(&app).await;
    assert_eq!(
        (s["listed"].as_i64(), s["stored"].as_i64()),
        (Some(6), Some(6)),
        "every flow stored, none aborted: {s}"
    );
    assert_eq!(s["failed"].as_array().unwrap().len(), 0, "{s}");

    let statement = sim
        .bank(
            "camt053",
            &[
                "--remittance",
                "mixed",
                "--split-credit",
                "2",
                "--treasury-spaces",
                "3",
                "--unexplained-credit",
                "4242",
            ],
        )
        .await;
    assert!(
        statement.contains(&format!("{} {}", &ids[2][..10], &ids[2][10..])),
        "a space inside the id"
    );
    let imported = import_statement(&app, "faults.xml", statement).await;
    assert_eq!(imported["credits"], 8, "{imported}");

    // revision 1 of the first flow misses its last row: that payment is not reported and the
    // credit (the PSP paid the right amount) is more than the flow
    let r = report(&app).await;
    let f1 = flow(&r, &ids[0]);
    assert_eq!(f1["revision"], 1);
    assert_eq!(f1["settlement"]["Over"]["excess"], 5_000, "{f1}");
    let in_f1: Vec<&Value> = payments
        .iter()
        .filter(|p| {
            built.iter().any(|f| {
                f["ordinal"] == 1
                    && f["revision"] == 2
                    && f["rows"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|row| row["iur"] == p["receiptId"])
            })
        })
        .collect();
    assert_eq!(in_f1.len(), 2);
    let mut f1_labels: Vec<String> = in_f1
        .iter()
        .map(|p| label_of(&r, p["receiptId"].as_str().unwrap()))
        .collect();
    f1_labels.sort();
    assert_eq!(f1_labels, vec!["IUF_TES_DIV_IMP", "RT_NO_IUF"]);

    // the PSP publishes revision 2: it supersedes the first
    let published = fdr.control("publish").await;
    assert_eq!(published["published"].as_array().unwrap().len(), 1);
    let s = sync(&app).await;
    assert_eq!(
        (
            s["listed"].as_i64(),
            s["stored"].as_i64(),
            s["revisions"].as_i64()
        ),
        (Some(1), Some(1), Some(1)),
        "{s}"
    );
    assert_eq!(
        app.store
            .reconciliation
            .revisions(ORG_A, &ids[0])
            .unwrap()
            .len(),
        2,
        "every revision kept"
    );

    let r = report(&app).await;
    for p in &payments {
        assert_eq!(
            label_of(&r, p["receiptId"].as_str().unwrap()),
            "RT_IUF_TES",
            "{r}"
        );
    }
    assert_eq!(flow(&r, &ids[0])["revision"], 2);
    for id in &ids {
        assert_eq!(flow(&r, id)["settlement"], "Settled", "{}", flow(&r, id));
    }
    // repeated rows: flagged, counted once
    assert!(
        flow(&r, &ids[1])["flags"]
            .to_string()
            .contains("DuplicateRows"),
        "{}",
        flow(&r, &ids[1])
    );
    // the flow settled by two credits (TXT/0 and TXT/1)
    let f2_credits: Vec<&Value> = r["credits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["flowId"] == ids[1].as_str())
        .collect();
    assert_eq!(f2_credits.len(), 2, "{r}");
    assert!(f2_credits.iter().all(|c| c["label"] == "RT_IUF_TES"));
    // the code-9 row for an unknown IUV, first in its flow: no receipt, the rows after it matched
    let orphans = r["rowsWithoutReceipt"].as_array().unwrap();
    let no_rpt = orphans
        .iter()
        .find(|o| o["flowId"] == ids[2].as_str())
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(no_rpt["label"], "IUV_NO_RT");
    assert_eq!(no_rpt["row"], 1);
    assert_eq!(no_rpt["status"], "NoRpt", "{no_rpt}");
    assert!(flow(&r, &ids[2])["flags"]
        .to_string()
        .contains("NoReceiptRows"));
    // the unknown outcome code: flagged, its row listed, never fatal
    assert!(
        flow(&r, &ids[3])["flags"]
            .to_string()
            .contains("UnknownStatuses"),
        "{}",
        flow(&r, &ids[3])
    );
    assert!(orphans
        .iter()
        .any(|o| o["flowId"] == ids[3].as_str() && o["status"].to_string().contains("REFUNDED")));
    assert_eq!(orphans.len(), 2, "{orphans:?}");
    // the header that disagrees with its rows
    let f5 = flow(&r, &ids[4])["flags"].to_string();
    assert!(
        f5.contains("CountMismatch") && f5.contains("TotalMismatch"),
        "{f5}"
    );
    // the PSP's own IUR: matched by IUV, index and amount, with a warning
    let iur_row = built
        .iter()
        .find(|f| f["ordinal"] == 6)
        .map(|f| f["rows"][0].clone())
        .unwrap();
    let warned = payments
        .iter()
        .find(|p| p["iuv"] == iur_row["iuv"])
        .unwrap();
    let line = line_of(&r, warned["receiptId"].as_str().unwrap());
    assert!(
        line["warnings"].to_string().contains("IurDiffers"),
        "{line}"
    );
    // the credit nobody explains
    let unexplained: Vec<&Value> = r["credits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["label"] == "TES_NO_IUF_OR_IUV")
        .collect();
    assert_eq!(unexplained.len(), 1, "{r}");
    assert_eq!(unexplained[0]["credit"]["amountCents"], 4_242);
    assert_eq!(r["totals"]["RT_IUF_TES"][0], 12, "{}", r["totals"]);
}

/// Payments closed by Stand-In receipts are reported with outcome 4 (`STAND_IN`): matched,
/// settled, the flow flagged.
#[actix_rt::test]
async fn stand_in_payments_are_reported_flagged_and_settled() {
    let Some(sim) = Sim::new() else { return };
    let fdr = sim.serve();
    let app = node(&fdr).await;
    sim.pay_with(&app, 4, 3_000, 1, 0.5).await;
    let payments = sim.payments();
    assert_eq!(payments.len(), 4);
    assert_eq!(
        payments.iter().filter(|p| p["standIn"] == true).count(),
        2,
        "{payments:?}"
    );
    sim.build(&[]).await;
    fdr.control("reload").await;
    let s = sync(&app).await;
    assert_eq!(s["stored"], 1, "{s}");
    let statement = sim.bank("camt053", &["--remittance", "old"]).await;
    assert!(statement.contains("<Ustrd>/PUR/LGPE-RIVERSAMENTO/URI/"));
    import_statement(&app, "stand-in.xml", statement).await;
    let r = report(&app).await;
    for p in &payments {
        assert_eq!(
            label_of(&r, p["receiptId"].as_str().unwrap()),
            "RT_IUF_TES",
            "{r}"
        );
    }
    let f = &r["flows"][0];
    assert!(f["flags"].to_string().contains("StandInRows"), "{f}");
}

/// A month of payments (two runs, two amounts, dated over the 30 and the 7 days before today), one flow
/// per day, the month's statement: the summary per day is printed (run with `--nocapture`) and
/// every day is fully reconciled.
#[actix_rt::test]
async fn a_simulated_month_reconciles_day_by_day() {
    let Some(sim) = Sim::new() else { return };
    let fdr = sim.serve();
    let app = node(&fdr).await;
    // 2 payments of 25.00 a day over 30 days, 4 of 10.29 a day over the last 7
    sim.pay(&app, 60, 2_500, 30).await;
    sim.pay(&app, 28, 1_029, 7).await;
    let payments = sim.payments();
    assert_eq!(payments.len(), 88);
    sim.build(&[]).await;
    fdr.control("reload").await;
    let s = sync(&app).await;
    assert_eq!(s["stored"], 30, "{s}");
    let statement = sim
        .bank(
            "camt053",
            &["--remittance", "mixed", "--unexplained-credit", "9900"],
        )
        .await;
    import_statement(&app, "month.xml", statement).await;
    let r = report(&app).await;

    // per payment day (the simulator's record): payments, cents, labels
    let mut days: BTreeMap<String, (usize, i64, BTreeMap<String, usize>)> = BTreeMap::new();
    for p in &payments {
        let day = p["paymentDateTime"].as_str().unwrap()[..10].to_string();
        let line = line_of(&r, p["receiptId"].as_str().unwrap());
        let e = days.entry(day).or_default();
        e.0 += 1;
        e.1 += line["amountCents"].as_i64().unwrap();
        *e.2.entry(line["label"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let flows_by_day: BTreeMap<String, (String, i64, i64)> = r["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let id = f["flowId"].as_str().unwrap().to_string();
            (
                id[..10].to_string(),
                (
                    f["settlement"]
                        .as_str()
                        .map_or_else(|| f["settlement"].to_string(), str::to_string),
                    f["totalCents"].as_i64().unwrap(),
                    f["creditedCents"].as_i64().unwrap(),
                ),
            )
        })
        .collect();
    let eur = |c: i64| format!("{}.{:02}", c / 100, c % 100);
    let mut table = String::from(
        "payment day  payments      amount  labels                 flow (settlement day)  credited\n",
    );
    for (day, (n, cents, labels)) in &days {
        let settle = (chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap()
            + chrono::Duration::days(1))
        .to_string();
        let (state, total, credited) = flows_by_day.get(&settle).cloned().unwrap_or_default();
        let labels: Vec<String> = labels.iter().map(|(l, n)| format!("{l}={n}")).collect();
        table.push_str(&format!(
            "{day}  {n:>8}  {:>10}  {:<22} {settle} {state:<10} {:>9}\n",
            eur(*cents),
            labels.join(","),
            eur(credited)
        ));
        assert_eq!(total, *cents, "{day}: the flow reports the day's payments");
        assert_eq!(credited, *cents, "{day}: the day's credit");
        assert_eq!(labels, vec![format!("RT_IUF_TES={n}")], "{day}");
    }
    let total: i64 = days.values().map(|d| d.1).sum();
    table.push_str(&format!(
        "month        {:>8}  {:>10}  totals {}\n",
        payments.len(),
        eur(total),
        r["totals"]
    ));
    println!("RECONCILIATION SUMMARY OF A SIMULATED MONTH ({ORG_A})\n{table}");
    assert_eq!(days.len(), 30);
    assert_eq!(total, 60 * 2_500 + 28 * 1_029);
    assert_eq!(r["totals"]["RT_IUF_TES"][0], 88);
    assert_eq!(r["totals"]["TES_NO_IUF_OR_IUV"][1], 9_900);
    let summary = sim
        .run(vec![
            "fdr".into(),
            "summary".into(),
            "--flows".into(),
            sim.path("flows.json").display().to_string(),
        ])
        .await;
    println!("pagopa-sim fdr summary:\n{summary}");
    assert!(
        summary.contains(&format!("total          30    88 {:>10}", eur(total))),
        "{summary}"
    );
}
