//! Bulk feeds end to end (FORMAT.md §5): HTTP upload of every sample of
//! `shared/feeds/samples` with its per-row outcome, status/progress, report and IUV file
//! download, duplicate flow id (409), cross-organization refusal, FULL zip with manifest and the
//! cancel guard, FTP (suppaftp: report in `out/`, jail), drop folder, CLI, and a SIGKILL during
//! a CLI load followed by a resume.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use mpay_messages::position::{OptionStatus, PositionStatus};
use mpay_messages::OrgFiscalCode;
use mpay_storage::PositionRepository;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mpay");

fn samples() -> Option<PathBuf> {
    let dir = std::env::var_os("FEEDS_SAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/feeds/samples")
        });
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("SKIPPED: feed samples not found at {}", dir.display());
        None
    }
}

fn feeds_url(app: &TestApp, org: &str) -> String {
    format!("{}/api/v1/organizations/{org}/feeds", app.base)
}

async fn upload_raw(
    app: &TestApp,
    org: &str,
    key: &str,
    name: &str,
    body: Vec<u8>,
    query: &str,
) -> reqwest::Response {
    app.client
        .post(format!("{}?fileName={name}{query}", feeds_url(app, org)))
        .header("Ocp-Apim-Subscription-Key", key)
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn upload_multipart(
    app: &TestApp,
    org: &str,
    key: &str,
    name: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(body).file_name(name.to_string());
    let form = reqwest::multipart::Form::new().part("file", part);
    app.client
        .post(feeds_url(app, org))
        .header("Ocp-Apim-Subscription-Key", key)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn get_json(app: &TestApp, url: &str, key: &str) -> (u16, Value) {
    let r = app
        .client
        .get(url)
        .header("Ocp-Apim-Subscription-Key", key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls the status until it is not RUNNING (20 s).
async fn wait_done(app: &TestApp, org: &str, key: &str, flow: &str) -> Value {
    let url = format!("{}/{flow}", feeds_url(app, org));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, v) = get_json(app, &url, key).await;
        assert_eq!(code, 200, "{v}");
        if v["status"] != "RUNNING"
            && app
                .app_state
                .feeds
                .as_ref()
                .map(|l| !l.is_active(org, flow))
                .unwrap_or(true)
        {
            return v;
        }
        assert!(Instant::now() < deadline, "feed {flow} still running: {v}");
        actix_rt::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn download(app: &TestApp, org: &str, key: &str, flow: &str, what: &str) -> String {
    let r = app
        .client
        .get(format!("{}/{flow}/{what}", feeds_url(app, org)))
        .header("Ocp-Apim-Subscription-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    r.text().await.unwrap()
}

/// (numRiga, esito, azioneEseguita, codiceEsito) of each report line.
/// (numRiga, esito, azioneEseguita, codiceEsito).
type Line = (String, String, String, String);

fn summary(report: &str) -> Vec<Line> {
    report
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(';').collect();
            (
                f[0].to_string(),
                f[4].to_string(),
                f[5].to_string(),
                f[10].to_string(),
            )
        })
        .collect()
}

fn s(row: &str, esito: &str, done: &str, code: &str) -> Line {
    (row.into(), esito.into(), done.into(), code.into())
}

#[actix_rt::test]
async fn http_upload_of_every_sample_with_its_outcome() {
    let Some(dir) = samples() else { return };
    let app = spawn_feeds_app(free_port(), 41000).await;
    let cases: Vec<(&str, &str, &str, Vec<Line>)> = vec![
        (
            "ours_a_delta_tipoA__c_x000-TARI2025A-2_0.csv",
            "c_x000-TARI2025A-2_0.csv",
            "TARI2025A",
            vec![
                s("1", "OK", "INSERITO", "OK"),
                s("2", "OK", "INSERITO", "OK"),
                s("3", "KO", "SCARTATO", "ROW_NOT_FOUND"),
            ],
        ),
        (
            "ours_b_delta_tipoB__c_x000-CDS2025B-2_0.csv",
            "c_x000-CDS2025B-2_0.csv",
            "CDS2025B",
            vec![
                s("1", "OK", "INSERITO", "OK"),
                s("2", "OK", "INSERITO", "OK"),
                s("3", "OK", "INSERITO", "OK"),
            ],
        ),
        (
            "c_x000-DEMO20250301A-1_3.csv",
            "c_x000-DEMO20250301A-1_3.csv",
            "DEMO20250301A",
            vec![
                s("1", "WARN", "INSERITO", "WARN_LEGACY_FIELD_IGNORED"),
                s("2", "OK", "INSERITO", "OK"),
                s("3", "KO", "SCARTATO", "ROW_NOT_FOUND"),
            ],
        ),
        (
            "c_x000-DEMO20250301B-1_4.csv",
            "c_x000-DEMO20250301B-1_4.csv",
            "DEMO20250301B",
            vec![
                s("1", "WARN", "INSERITO", "WARN_LEGACY_FIELD_IGNORED"),
                s("2", "OK", "INSERITO", "OK"),
            ],
        ),
        (
            "c_x000-RETTE2025-2_0.csv",
            "c_x000-RETTE2025-2_0.csv",
            "RETTE2025",
            vec![
                s("1", "OK", "INSERITO", "OK"),
                s("2", "OK", "INSERITO", "OK"),
                s("3", "OK", "INSERITO", "OK"),
            ],
        ),
        (
            "c_x000-FINES2025-2_0_eng.csv",
            "c_x000-FINES2025-2_0_eng.csv",
            "FINES2025",
            vec![
                s("1", "OK", "INSERITO", "OK"),
                s("2", "OK", "INSERITO", "OK"),
                s("3", "KO", "SCARTATO", "ROW_NOT_FOUND"),
            ],
        ),
    ];
    for (i, (sample, name, flow, expected)) in cases.into_iter().enumerate() {
        let bytes = std::fs::read(dir.join(sample)).unwrap();
        let r = if i % 2 == 0 {
            upload_multipart(&app, ORG_C, KEY_C, name, bytes).await
        } else {
            upload_raw(&app, ORG_C, KEY_C, name, bytes, "&mode=delta").await
        };
        assert_eq!(r.status(), 202, "{name}: {}", r.text().await.unwrap());
        assert_eq!(
            r.headers()["location"].to_str().unwrap(),
            format!("/api/v1/organizations/{ORG_C}/feeds/{flow}")
        );
        let v = wait_done(&app, ORG_C, KEY_C, flow).await;
        assert_eq!(v["status"], "DONE", "{v}");
        let p = &v["progress"];
        assert_eq!(p["rowsTotal"].as_u64(), Some(expected.len() as u64), "{v}");
        assert_eq!(p["rowsRead"], p["rowsTotal"]);
        assert_eq!(p["percent"], 100);
        let ko = expected.iter().filter(|e| e.1 == "KO").count() as u64;
        assert_eq!(p["rowsRejected"].as_u64(), Some(ko));
        assert_eq!(p["rowsLoaded"].as_u64(), Some(expected.len() as u64 - ko));
        let report = download(&app, ORG_C, KEY_C, flow, "report").await;
        assert!(report.starts_with("numRiga;IUPD;IUD;"), "{report}");
        assert_eq!(summary(&report), expected, "{name}:\n{report}");
    }
    // Tipo B: three generated IUVs in the exchange file
    let x = download(&app, ORG_C, KEY_C, "CDS2025B", "iuv-file").await;
    assert_eq!(
        x.split("\r\n").filter(|l| l.contains(";B;")).count(),
        3,
        "{x}"
    );
    let cf = OrgFiscalCode::parse(ORG_C).unwrap();
    let p = app.store.ledger.get(&cf, "CDS-2025-0102").unwrap().unwrap();
    assert_eq!(p.payment_options.len(), 3);
    // list
    let (code, list) = get_json(&app, &feeds_url(&app, ORG_C), KEY_C).await;
    assert_eq!(code, 200);
    assert_eq!(list.as_array().unwrap().len(), 6);
    // health: loaders unregistered when done
    assert!(app
        .app_state
        .health
        .snapshot()
        .iter()
        .all(|a| a.kind != "FeedLoader"));
}

#[actix_rt::test]
async fn duplicate_flow_id_is_409_and_other_organizations_are_refused() {
    let Some(dir) = samples() else { return };
    let app = spawn_feeds_app(free_port(), 41100).await;
    let bytes = std::fs::read(dir.join("ours_a_delta_tipoA__c_x000-TARI2025A-2_0.csv")).unwrap();
    let r = upload_raw(
        &app,
        ORG_C,
        KEY_C,
        "c_x000-TARI2025A-2_0.csv",
        bytes.clone(),
        "",
    )
    .await;
    assert_eq!(r.status(), 202);
    wait_done(&app, ORG_C, KEY_C, "TARI2025A").await;
    let r = upload_multipart(
        &app,
        ORG_C,
        KEY_C,
        "c_x000-TARI2025A-2_0.csv",
        bytes.clone(),
    )
    .await;
    assert_eq!(r.status(), 409);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("problem+json"));
    let p: Value = r.json().await.unwrap();
    assert!(
        p["detail"].as_str().unwrap().starts_with("FILE_DUPLICATE"),
        "{p}"
    );
    // another organization's key: 403 on C's feeds, and C's feed is not visible under A
    let r = upload_raw(&app, ORG_C, KEY_A, "c_x000-X-2_0.csv", bytes.clone(), "").await;
    assert_eq!(r.status(), 403);
    let (code, _) = get_json(
        &app,
        &format!("{}/TARI2025A", feeds_url(&app, ORG_C)),
        KEY_A,
    )
    .await;
    assert_eq!(code, 403);
    let (code, _) = get_json(
        &app,
        &format!("{}/TARI2025A/report", feeds_url(&app, ORG_C)),
        KEY_A,
    )
    .await;
    assert_eq!(code, 403);
    let (code, _) = get_json(
        &app,
        &format!("{}/TARI2025A", feeds_url(&app, ORG_A)),
        KEY_A,
    )
    .await;
    assert_eq!(code, 404);
    let (code, list) = get_json(&app, &feeds_url(&app, ORG_A), KEY_A).await;
    assert_eq!((code, list.as_array().map(Vec::len)), (200, Some(0)));
    // no key
    let r = app.client.get(feeds_url(&app, ORG_C)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // a raw upload without a name, and a bad mode
    let r = app
        .client
        .post(feeds_url(&app, ORG_C))
        .header("Ocp-Apim-Subscription-Key", KEY_C)
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = upload_raw(&app, ORG_C, KEY_C, "x.csv", bytes, "&mode=sometimes").await;
    assert_eq!(r.status(), 400);
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[actix_rt::test]
async fn full_zip_with_manifest_never_cancels_paid_and_guard_waits_for_confirmation() {
    let Some(dir) = samples() else { return };
    let app = spawn_feeds_app(free_port(), 41200).await;
    // the state sample (c) assumes: 0001..0004, 0002 paid
    let csv = "IUPD;descrizionePosizioneDebitoria;indiceOpzionePagamento;tipoOpzionePagamento;descrizioneOpzionePagamento;IUD;codIuv;tipoIdentificativoUnivoco;codiceIdentificativoUnivoco;anagraficaPagatore;mailPagatore;dataEsecuzionePagamento;importoDovuto;tipoDovuto;causaleVersamento;datiSpecificiRiscossione;flgGeneraIuv;flagPagamentoPu;azione\r\n\
TARI-2025-0001;TARI 2025 utenza 0001;1;SINGLE_INSTALLMENT;Rata unica;TARI25-0001-U;01000000000100121;F;TSTPRV80A01H501A;Persona Prova Uno;uno@example.invalid;2025-06-30;245.80;TARI;TARI 2025 rata unica;9/0101101IM/;true;true;I\r\n\
TARI-2025-0002;TARI 2025 utenza 0002;1;SINGLE_INSTALLMENT;Rata unica;TARI25-0002-U;01000000000100222;G;01234567897;Ditta Esempio Srl;;2025-06-30;1310.00;TARI;TARI 2025 rata unica;9/0101101IM/;true;true;I\r\n\
TARI-2025-0003;TARI 2025 utenza 0003;1;SINGLE_INSTALLMENT;Rata unica;TARI25-0003-U;01000000000100727;F;TSTFNT85E50D612X;Fantasia Quattro Persona;;2025-06-30;77.00;TARI;TARI 2025 rata unica;9/0101101IM/;true;true;I\r\n\
TARI-2025-0004;TARI 2025 utenza 0004;1;SINGLE_INSTALLMENT;Rata unica;TARI25-0004-U;01000000000100828;F;TSTDMO90C15L219D;Demo Tre Persona;;2025-06-30;35.00;TARI;TARI 2025 rata unica;9/0101101IM/;true;true;I\r\n".to_string();
    let r = upload_raw(
        &app,
        ORG_C,
        KEY_C,
        "c_x000-PRE-2_0.csv",
        csv.into_bytes(),
        "",
    )
    .await;
    assert_eq!(r.status(), 202);
    let v = wait_done(&app, ORG_C, KEY_C, "PRE").await;
    assert_eq!(v["progress"]["rowsLoaded"], 4, "{v}");
    let cf = OrgFiscalCode::parse(ORG_C).unwrap();
    app.store
        .ledger
        .modify(&cf, "TARI-2025-0002", &mut |p| {
            p.status = PositionStatus::Paid;
            for o in &mut p.payment_options {
                o.status = OptionStatus::PoPaid;
            }
            Ok(())
        })
        .unwrap();
    // FULL with only 0001: 2 of 3 unpaid cancelled > 20 % → held
    let full =
        std::fs::read_to_string(dir.join("ours_c_full__c_x000-TARI2025FULL-2_0.csv")).unwrap();
    let one: String = full.split_inclusive("\r\n").take(2).collect();
    let manifest = std::fs::read(dir.join("ours_c_full__manifest.json")).unwrap();
    let z = zip_of(&[
        ("c_x000-TARIG-2_0.csv", one.as_bytes()),
        ("manifest.json", &manifest),
    ]);
    let r = upload_multipart(&app, ORG_C, KEY_C, "c_x000-TARIG-2_0.zip", z).await;
    assert_eq!(r.status(), 202);
    let v = wait_done(&app, ORG_C, KEY_C, "TARIG").await;
    assert_eq!(v["status"], "AWAITING_CONFIRMATION", "{v}");
    assert_eq!(v["mode"], "FULL");
    assert_eq!(v["error"]["code"], "FULL_FEED_GUARD");
    let p4 = app
        .store
        .ledger
        .get(&cf, "TARI-2025-0004")
        .unwrap()
        .unwrap();
    assert_eq!(
        p4.status,
        PositionStatus::Valid,
        "nothing applied while held"
    );
    // reject it; it cannot be confirmed afterwards
    let r = app
        .client
        .post(format!("{}/TARIG/reject", feeds_url(&app, ORG_C)))
        .header("Ocp-Apim-Subscription-Key", KEY_C)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .post(format!("{}/TARIG/confirm", feeds_url(&app, ORG_C)))
        .header("Ocp-Apim-Subscription-Key", KEY_C)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    // the real FULL sample in a zip with its manifest
    let z = zip_of(&[
        ("c_x000-TARI2025FULL-2_0.csv", full.as_bytes()),
        ("manifest.json", &manifest),
    ]);
    let r = upload_multipart(&app, ORG_C, KEY_C, "c_x000-TARI2025FULL-2_0.zip", z).await;
    assert_eq!(r.status(), 202);
    let v = wait_done(&app, ORG_C, KEY_C, "TARI2025FULL").await;
    assert_eq!(v["status"], "DONE", "{v}");
    let report = download(&app, ORG_C, KEY_C, "TARI2025FULL", "report").await;
    assert_eq!(
        summary(&report),
        vec![
            s("1", "OK", "MODIFICATO", "OK"),
            s("2", "OK", "INVARIATO", "OK"),
            s("3", "OK", "INSERITO", "OK"),
            s("", "WARN", "NON_ANNULLABILE", "SKIPPED_PAID"),
            s("", "OK", "ANNULLATO", "OK"),
        ],
        "{report}"
    );
    let paid = app
        .store
        .ledger
        .get(&cf, "TARI-2025-0002")
        .unwrap()
        .unwrap();
    assert_eq!(paid.status, PositionStatus::Paid);
    // a zip without a CSV: file-level FILE_NO_CSV, reported
    let z = zip_of(&[("readme.txt", b"nothing")]);
    let r = upload_multipart(&app, ORG_C, KEY_C, "c_x000-EMPTYZIP-2_0.zip", z).await;
    assert_eq!(r.status(), 202);
    let v = wait_done(&app, ORG_C, KEY_C, "EMPTYZIP").await;
    assert_eq!(
        (v["status"].as_str(), v["error"]["code"].as_str()),
        (Some("FAILED"), Some("FILE_NO_CSV")),
        "{v}"
    );
    let report = download(&app, ORG_C, KEY_C, "EMPTYZIP", "report").await;
    assert!(report.contains(";FILE_NO_CSV;"), "{report}");
}

async fn wait_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn ftp_upload_report_in_out_and_organizations_are_jailed() {
    let Some(dir) = samples() else { return };
    let port = free_port();
    let app = spawn_feeds_app(port, 41300).await;
    let sample = std::fs::read(dir.join("ours_b_delta_tipoB__c_x000-CDS2025B-2_0.csv")).unwrap();
    let addr = format!("127.0.0.1:{port}");
    let a2 = addr.clone();
    let listing = actix_rt::task::spawn_blocking(move || {
        let mut ftp = suppaftp::FtpStream::connect(&a2).unwrap();
        ftp.login("ente_c", FTP_PASSWORD_C).unwrap();
        ftp.cwd("in").unwrap();
        ftp.put_file("c_x000-CDS2025B-2_0.csv", &mut std::io::Cursor::new(sample))
            .unwrap();
        let root = ftp.nlst(Some("/")).unwrap();
        let _ = ftp.quit();
        root
    })
    .await
    .unwrap();
    assert!(
        listing.iter().any(|n| n.ends_with("in")) && listing.iter().any(|n| n.ends_with("out")),
        "{listing:?}"
    );
    let out = app.dir.path().join("data/ftp").join(ORG_C).join("out");
    wait_file(&out.join("c_x000-CDS2025B-2_0-ESITO.csv")).await;
    wait_file(&out.join("c_x000-CDS2025B-2_0-IUV-EXCHANGE.csv")).await;
    let v = wait_done(&app, ORG_C, KEY_C, "CDS2025B").await;
    assert_eq!(v["status"], "DONE");
    // the report over FTP, and the jail
    let a2 = addr.clone();
    let (report, escapes) = actix_rt::task::spawn_blocking(move || {
        let mut ftp = suppaftp::FtpStream::connect(&a2).unwrap();
        ftp.login("ente_c", FTP_PASSWORD_C).unwrap();
        let report = ftp
            .retr_as_buffer("/out/c_x000-CDS2025B-2_0-ESITO.csv")
            .unwrap()
            .into_inner();
        let mut escapes = Vec::new();
        escapes.push(ftp.cwd(format!("/../{ORG_A}")).is_ok());
        escapes.push(ftp.cwd(format!("../{ORG_A}")).is_ok());
        escapes.push(
            ftp.retr_as_buffer(&format!("/../{ORG_A}/out/x.csv"))
                .is_ok(),
        );
        let l = ftp.nlst(Some("/..")).unwrap_or_default();
        escapes.push(l.iter().any(|n| n.contains(ORG_A)));
        let _ = ftp.quit();
        // organization A sees only its own (empty) folders
        let mut ftp = suppaftp::FtpStream::connect(&a2).unwrap();
        ftp.login("ente_a", FTP_PASSWORD_A).unwrap();
        let mine = ftp.nlst(Some("/out")).unwrap_or_default();
        escapes.push(!mine.is_empty());
        escapes.push(
            ftp.retr_as_buffer(&format!("/../{ORG_C}/out/c_x000-CDS2025B-2_0-ESITO.csv"))
                .is_ok(),
        );
        // a wrong password is refused
        let mut bad = suppaftp::FtpStream::connect(&a2).unwrap();
        escapes.push(bad.login("ente_a", "wrong").is_ok());
        (report, escapes)
    })
    .await
    .unwrap();
    let report = String::from_utf8(report).unwrap();
    assert_eq!(summary(&report).len(), 3, "{report}");
    assert_eq!(
        escapes,
        vec![false; 7],
        "an organization got out of its folder"
    );
    // the same file again: refused with an error file
    let a2 = addr.clone();
    let sample = std::fs::read(dir.join("ours_b_delta_tipoB__c_x000-CDS2025B-2_0.csv")).unwrap();
    actix_rt::task::spawn_blocking(move || {
        let mut ftp = suppaftp::FtpStream::connect(&a2).unwrap();
        ftp.login("ente_c", FTP_PASSWORD_C).unwrap();
        ftp.put_file(
            "/in/c_x000-CDS2025B-2_0.csv",
            &mut std::io::Cursor::new(sample),
        )
        .unwrap();
        let _ = ftp.quit();
    })
    .await
    .unwrap();
    let err = out.join("c_x000-CDS2025B-2_0.csv.ERRORE.txt");
    wait_file(&err).await;
    assert!(std::fs::read_to_string(err)
        .unwrap()
        .starts_with("FILE_DUPLICATE"));
}

#[actix_rt::test]
async fn drop_folder_loads_complete_files() {
    let Some(dir) = samples() else { return };
    let app = spawn_feeds_app(free_port(), 41400).await;
    let drop = app.dir.path().join("data/drop").join(ORG_C);
    let bytes = std::fs::read(dir.join("c_x000-RETTE2025-2_0.csv")).unwrap();
    // written under a temporary name, then renamed: only the complete file is taken
    std::fs::write(drop.join(".c_x000-RETTE2025-2_0.csv.part"), &bytes).unwrap();
    std::fs::rename(
        drop.join(".c_x000-RETTE2025-2_0.csv.part"),
        drop.join("c_x000-RETTE2025-2_0.csv"),
    )
    .unwrap();
    let report = drop.join("out/c_x000-RETTE2025-2_0-ESITO.csv");
    wait_file(&report).await;
    let text = std::fs::read_to_string(&report).unwrap();
    assert_eq!(
        summary(&text),
        vec![
            s("1", "OK", "INSERITO", "OK"),
            s("2", "OK", "INSERITO", "OK"),
            s("3", "OK", "INSERITO", "OK")
        ]
    );
    assert!(
        !drop.join("c_x000-RETTE2025-2_0.csv").exists(),
        "the file left the drop folder"
    );
    // a non-standard name is refused by the file channels (FILE_NAME_INVALID)
    std::fs::write(drop.join("whatever.csv"), &bytes).unwrap();
    let report = drop.join("out/whatever-ESITO.csv");
    wait_file(&report).await;
    assert!(std::fs::read_to_string(&report)
        .unwrap()
        .contains("FILE_NAME_INVALID"));
}

/// A config file for CLI runs (no server) with organization C.
fn cli_config(root: &Path) -> PathBuf {
    let data = root.join("data");
    let mut text = config_text(&data);
    text.push_str(&feeds_config_text(&data, 1, 40000).replace("enabled = true", "enabled = false"));
    let cfg = root.join("mpay.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn mpay(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .env("MPAY_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn cli_load_writes_the_report_next_to_the_file() {
    let Some(dir) = samples() else { return };
    let root = tempfile::tempdir().unwrap();
    let cfg = cli_config(root.path());
    let file = root.path().join("c_x000-DEMO20250301A-1_3.csv");
    std::fs::copy(dir.join("c_x000-DEMO20250301A-1_3.csv"), &file).unwrap();
    let out = mpay(&[
        "feed",
        "load",
        "--org",
        ORG_C,
        file.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--quiet",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Done"), "{stdout}");
    let report =
        std::fs::read_to_string(root.path().join("c_x000-DEMO20250301A-1_3-ESITO.csv")).unwrap();
    assert_eq!(
        summary(&report),
        vec![
            s("1", "WARN", "INSERITO", "WARN_LEGACY_FIELD_IGNORED"),
            s("2", "OK", "INSERITO", "OK"),
            s("3", "KO", "SCARTATO", "ROW_NOT_FOUND")
        ]
    );
    assert!(root
        .path()
        .join("c_x000-DEMO20250301A-1_3-IUV-EXCHANGE.csv")
        .exists());
    // again: duplicate
    let out = mpay(&[
        "feed",
        "load",
        "--org",
        ORG_C,
        file.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FILE_DUPLICATE"));
    let out = mpay(&[
        "feed",
        "status",
        "--org",
        ORG_C,
        "DEMO20250301A",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(out.status.success());
}

#[test]
fn sigkill_during_a_cli_load_then_resume_leaves_no_half_applied_position() {
    let root = tempfile::tempdir().unwrap();
    let cfg = cli_config(root.path());
    let file = root.path().join("c_x000-CRASH-2_0.csv");
    let rows = 20_000u64;
    let out = mpay(&[
        "feed",
        "gen",
        "--out",
        file.to_str().unwrap(),
        "--rows",
        &rows.to_string(),
        "--tipo-dovuto",
        "TARI",
        "--iban2",
        IBAN_C,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = std::process::Command::new(BIN)
        .args([
            "feed",
            "load",
            "--org",
            ORG_C,
            file.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--quiet",
        ])
        .env("MPAY_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let finished_before_kill = child.try_wait().unwrap().is_some();
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    let status = mpay(&[
        "feed",
        "status",
        "--org",
        ORG_C,
        "CRASH",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    if finished_before_kill || status.contains("Done") {
        println!("SKIPPED (crash part): the load ended before the kill: {status}");
    } else {
        assert!(status.contains("Running"), "{status}");
        let out = mpay(&[
            "feed",
            "load",
            "--org",
            ORG_C,
            file.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--quiet",
            "--resume",
        ]);
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let verify = mpay(&["store", "verify", "--config", cfg.to_str().unwrap()]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let report = std::fs::read_to_string(root.path().join("c_x000-CRASH-2_0-ESITO.csv")).unwrap();
    let lines = summary(&report);
    assert_eq!(lines.len() as u64, rows);
    assert!(
        lines.iter().all(|l| l.1 == "OK" && l.2 == "INSERITO"),
        "{:?}",
        lines.iter().find(|l| l.1 != "OK")
    );
    // every position complete: as many options as rows of its IUPD
    let store = mpay_storage::Store::open(&root.path().join("data/store-v1")).unwrap();
    let cf = OrgFiscalCode::parse(ORG_C).unwrap();
    for (iupd, options) in [("BENCH-00000005", 2usize), ("BENCH-00000006", 1)] {
        let p = store.ledger.get(&cf, iupd).unwrap().unwrap();
        assert_eq!(p.payment_options.len(), options, "{iupd}");
    }
}
