//! Bulk feeds end to end (FORMAT.md §5): HTTP upload of every sample of
//! `shared/feeds/samples` with its per-row outcome, status/progress, report and IUV file
//! download, `result.zip` with the MyPay / PU compatibility copies (rejected rows verbatim),
//! SHA-256 in the status, declared checksums (HTTP parameter, FTP / drop sidecars) and
//! `FILE_CHECKSUM_MISMATCH`, duplicate flow id (409), cross-organization refusal, FULL zip with
//! manifest and the cancel guard, FTP (suppaftp: outputs in `out/`, jail), explicit FTPS with a
//! self-signed certificate (plain login refused), drop folder, CLI, and a SIGKILL during a CLI
//! load followed by a resume.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read as _, Write as _};
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
        if std::env::var_os("MPAY_REQUIRE_SHARED").is_some_and(|v| v == "1") {
            panic!("reference material missing and MPAY_REQUIRE_SHARED=1");
        }
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

/// GET a feed sub-resource: (status, content type, body).
async fn fetch(
    app: &TestApp,
    org: &str,
    key: &str,
    flow: &str,
    what: &str,
) -> (u16, String, Vec<u8>) {
    let r = app
        .client
        .get(format!("{}/{flow}/{what}", feeds_url(app, org)))
        .header("Ocp-Apim-Subscription-Key", key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.bytes().await.unwrap().to_vec())
}

/// The entries of a zip, in archive order.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..a.len())
        .map(|i| {
            let mut f = a.by_index(i).unwrap();
            let mut v = Vec::new();
            f.read_to_end(&mut v).unwrap();
            (f.name().to_string(), v)
        })
        .collect()
}

/// `result.zip` of a load, unzipped (its content type and disposition checked).
async fn result_zip(app: &TestApp, org: &str, key: &str, flow: &str) -> Vec<(String, Vec<u8>)> {
    let r = app
        .client
        .get(format!("{}/{flow}/result.zip", feeds_url(app, org)))
        .header("Ocp-Apim-Subscription-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("-RESULT.zip"));
    unzip(&r.bytes().await.unwrap())
}

fn names(entries: &[(String, Vec<u8>)]) -> Vec<&str> {
    entries.iter().map(|(n, _)| n.as_str()).collect()
}

fn entry<'a>(entries: &'a [(String, Vec<u8>)], name: &str) -> &'a str {
    let (_, b) = entries
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} not in {:?}", names(entries)));
    std::str::from_utf8(b).unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

fn md5_hex(b: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(b))
}

/// Records of a `;` CSV (quotes honoured).
fn records(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .delimiter(b';')
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

/// A field as our writers quote it (only when needed).
fn quoted(s: &str) -> String {
    if s.contains([';', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The 1.4 header (PU `_iuv.csv` layout, FORMAT.md §2.2).
const H14: &str = "IUD;codIuv;tipoIdentificativoUnivoco;codiceIdentificativoUnivoco;anagraficaPagatore;indirizzoPagatore;civicoPagatore;capPagatore;localitaPagatore;provinciaPagatore;nazionePagatore;mailPagatore;dataEsecuzionePagamento;importoDovuto;commissioneCaricoPa;tipoDovuto;tipoVersamento;causaleVersamento;datiSpecificiRiscossione;bilancio;flgGeneraIuv;flagMultiBeneficiario;codiceFiscaleEnteSecondario;denominazioneEnteSecondario;ibanAccreditoEnteSecondario;indirizzoEnteSecondario;civicoEnteSecondario;capEnteSecondario;localitaEnteSecondario;provinciaEnteSecondario;nazioneEnteSecondario;datiSpecificiRiscossioneEnteSecondario;causaleVersamentoEnteSecondario;importoVersamentoEnteSecondario;azione";

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
    let app = spawn_feeds_app(free_port(), 30000).await;
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
        let sha = sha256_hex(&bytes);
        let size = bytes.len() as u64;
        let r = if i % 2 == 0 {
            upload_multipart(&app, ORG_C, KEY_C, name, bytes.clone()).await
        } else {
            upload_raw(&app, ORG_C, KEY_C, name, bytes.clone(), "&mode=delta").await
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
        // our SHA-256 of the bytes received, no declared checksum
        assert_eq!(v["sha256"].as_str(), Some(sha.as_str()), "{v}");
        assert_eq!(v["sizeBytes"].as_u64(), Some(size));
        assert_eq!(v["checksums"], serde_json::json!([]));
        assert_eq!(
            v["resultZip"],
            format!("/api/v1/organizations/{ORG_C}/feeds/{flow}/result.zip")
        );
        // result.zip: the report and the IUV exchange file as downloaded, and the copies of the
        // input's flavour (MyPay for 1.x, PU for 2.0), the rejects copy only with rejections
        let base = name.trim_end_matches(".csv");
        let z = result_zip(&app, ORG_C, KEY_C, flow).await;
        let mypay = name.contains("-1_");
        let mut want = vec![
            format!("{base}-ESITO.csv"),
            format!("{base}-IUV-EXCHANGE.csv"),
        ];
        if ko > 0 {
            want.push(if mypay {
                format!("{base}_SCARTI.csv")
            } else {
                format!("ERROR-{base}.csv")
            });
        }
        want.push(if mypay {
            format!("{base}_IUV.csv")
        } else {
            format!("{base}_iuv.csv")
        });
        assert_eq!(names(&z), want, "{name}");
        assert_eq!(entry(&z, &want[0]), report);
        let x = download(&app, ORG_C, KEY_C, flow, "iuv-file").await;
        assert_eq!(entry(&z, &want[1]), x);
        let iuv_copy = entry(&z, want.last().unwrap());
        let lines: Vec<&str> = iuv_copy.split_terminator("\r\n").collect();
        assert_eq!(
            lines.len() as u64,
            1 + expected.len() as u64 - ko,
            "{iuv_copy}"
        );
        if mypay {
            let original = std::str::from_utf8(&bytes).unwrap();
            assert_eq!(lines[0], original.split("\r\n").next().unwrap());
        } else {
            assert_eq!(lines[0], H14);
            assert!(records(iuv_copy)[1..]
                .iter()
                .all(|r| r.len() == 35 && r[16] == "ALL"));
        }
    }
    // the PU rejects copy of the 2.0 Tipo A sample: its row 3 verbatim with the PU code
    let original =
        std::fs::read_to_string(dir.join("ours_a_delta_tipoA__c_x000-TARI2025A-2_0.csv")).unwrap();
    let report = download(&app, ORG_C, KEY_C, "TARI2025A", "report").await;
    let desc = &records(&report)[3][11];
    let z = result_zip(&app, ORG_C, KEY_C, "TARI2025A").await;
    let lines: Vec<&str> = original.split("\r\n").collect();
    assert_eq!(
        entry(&z, "ERROR-c_x000-TARI2025A-2_0.csv"),
        format!(
            "{};cod_rifiuto;de_rifiuto\r\n{};DEBT_POSITION_BY_IUD_NOT_FOUND;{}\r\n",
            lines[0],
            lines[3],
            quoted(desc)
        )
    );
    let iuv = records(entry(&z, "c_x000-TARI2025A-2_0_iuv.csv"));
    assert_eq!(iuv[1][..3], ["TARI25-0001-U", "01000000000100121", "F"]);
    assert_eq!((iuv[1][13].as_str(), iuv[1][34].as_str()), ("245.80", "I"));
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
    let app = spawn_feeds_app(free_port(), 30100).await;
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

/// REST `flowId` is `[A-Za-z0-9_.-]{1,50}` and not dots only (`.`/`..` could never be reached
/// again), whether given or taken from the file name; what reaches a header is percent-encoded.
#[actix_web::test]
async fn rest_flow_ids_are_checked_and_headers_are_encoded() {
    let Some(dir) = samples() else { return };
    let app = spawn_feeds_app(free_port(), 30900).await;
    let bytes = std::fs::read(dir.join("ours_a_delta_tipoA__c_x000-TARI2025A-2_0.csv")).unwrap();
    for flow in [
        ".",
        "..",
        "...",
        "a%20b",
        "a%0D%0AX-Evil:%201",
        "%C3%A9",
        &"x".repeat(51),
    ] {
        let r = upload_raw(
            &app,
            ORG_C,
            KEY_C,
            "x.csv",
            bytes.clone(),
            &format!("&flowId={flow}"),
        )
        .await;
        assert_eq!(r.status(), 400, "{flow}");
        assert!(r.headers().get("location").is_none(), "{flow}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["code"], "INVALID_FLOW_ID", "{flow}: {p}");
        assert_eq!(p["errors"][0]["field"], "flowId", "{flow}: {p}");
    }
    // taken from a file name that does not give a valid one: the answer says to give flowId
    let r = upload_raw(
        &app,
        ORG_C,
        KEY_C,
        "t%C3%A0ri%202025.csv",
        bytes.clone(),
        "",
    )
    .await;
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "INVALID_FLOW_ID", "{p}");
    assert!(p.to_string().contains("give `flowId`"), "{p}");
    // nothing was recorded
    let (status, list) = get_json(&app, &feeds_url(&app, ORG_C), KEY_C).await;
    assert_eq!(status, 200);
    assert_eq!(list, serde_json::json!([]), "{list}");
    // a valid id with '.', '-' and '_' is accepted; a non-ASCII file name reaches the
    // Content-Disposition header percent-encoded, with an ASCII fallback
    let r = upload_raw(
        &app,
        ORG_C,
        KEY_C,
        "t%C3%A0ri%202025.csv",
        bytes.clone(),
        "&flowId=TARI.2025-a_1",
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("/api/v1/organizations/{ORG_C}/feeds/TARI.2025-a_1")
    );
    let v = wait_done(&app, ORG_C, KEY_C, "TARI.2025-a_1").await;
    assert_eq!(v["status"], "DONE", "{v}");
    let r = app
        .client
        .get(format!("{}/TARI.2025-a_1/report", feeds_url(&app, ORG_C)))
        .header("Ocp-Apim-Subscription-Key", KEY_C)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cd = r.headers()["content-disposition"].as_bytes().to_vec();
    assert!(cd.is_ascii(), "{cd:?}");
    assert_eq!(
        String::from_utf8(cd).unwrap(),
        "attachment; filename=\"t_ri 2025-ESITO.csv\"; filename*=UTF-8''t%C3%A0ri%202025-ESITO.csv"
    );
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
    let app = spawn_feeds_app(free_port(), 30200).await;
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
    let app = spawn_feeds_app(port, 30300).await;
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
    let app = spawn_feeds_app(free_port(), 30400).await;
    let drop = app.dir.path().join("data/drop").join(ORG_C);
    let bytes = std::fs::read(dir.join("c_x000-RETTE2025-2_0.csv")).unwrap();
    // the checksum sidecar first (`sha256sum` format), then the file
    std::fs::write(
        drop.join("c_x000-RETTE2025-2_0.csv.sha256"),
        format!("{}  c_x000-RETTE2025-2_0.csv\n", sha256_hex(&bytes)),
    )
    .unwrap();
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
    assert!(
        !drop.join("c_x000-RETTE2025-2_0.csv.sha256").exists(),
        "the sidecar was consumed"
    );
    wait_file(&drop.join("out/c_x000-RETTE2025-2_0-RESULT.zip")).await;
    let z = unzip(&std::fs::read(drop.join("out/c_x000-RETTE2025-2_0-RESULT.zip")).unwrap());
    assert_eq!(
        names(&z),
        [
            "c_x000-RETTE2025-2_0-ESITO.csv",
            "c_x000-RETTE2025-2_0-IUV-EXCHANGE.csv",
            "c_x000-RETTE2025-2_0_iuv.csv"
        ]
    );
    // the multi-beneficiary rows: transfer group 2 in the 1.4 secondary columns of `_iuv.csv`
    let iuv = records(entry(&z, "c_x000-RETTE2025-2_0_iuv.csv"));
    assert_eq!(iuv.len(), 4);
    assert_eq!(
        (
            iuv[2][21].as_str(),
            iuv[2][22].as_str(),
            iuv[2][33].as_str()
        ),
        ("true", "80000000028", "50.00")
    );
    let v = wait_done(&app, ORG_C, KEY_C, "RETTE2025").await;
    assert_eq!(
        v["checksums"][0]["source"],
        "c_x000-RETTE2025-2_0.csv.sha256"
    );
    assert_eq!(v["checksums"][0]["matched"], true, "{v}");
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
    for out in [
        "c_x000-DEMO20250301A-1_3-IUV-EXCHANGE.csv",
        "c_x000-DEMO20250301A-1_3_SCARTI.csv",
        "c_x000-DEMO20250301A-1_3_IUV.csv",
    ] {
        assert!(root.path().join(out).exists(), "{out}");
    }
    let z = unzip(&std::fs::read(root.path().join("c_x000-DEMO20250301A-1_3-RESULT.zip")).unwrap());
    assert_eq!(names(&z).len(), 4);
    // a sidecar next to the file that does not match: nothing loaded, exit code 1
    let bad = root.path().join("c_x000-DEMOSUM-1_3.csv");
    std::fs::copy(dir.join("c_x000-DEMO20250301A-1_3.csv"), &bad).unwrap();
    std::fs::write(
        root.path().join("c_x000-DEMOSUM-1_3.md5"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let out = mpay(&[
        "feed",
        "load",
        "--org",
        ORG_C,
        bad.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report = std::fs::read_to_string(root.path().join("c_x000-DEMOSUM-1_3-ESITO.csv")).unwrap();
    assert_eq!(
        summary(&report),
        vec![s("", "KO", "SCARTATO", "FILE_CHECKSUM_MISMATCH")]
    );
    let scarti =
        std::fs::read_to_string(root.path().join("c_x000-DEMOSUM-1_3_SCARTI.csv")).unwrap();
    assert!(scarti.contains(";PAA_IMPORT_NO_MATCH_MD5;"), "{scarti}");
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
    // `feed load --resume` of the same file
    let resume = || {
        mpay(&[
            "feed",
            "load",
            "--org",
            ORG_C,
            file.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--quiet",
            "--resume",
        ])
    };
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
        if !finished_before_kill {
            // killed after the load ended, perhaps while writing its report: resuming writes
            // the report again and loads nothing twice
            let out = resume();
            assert!(
                out.status.success(),
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    } else {
        assert!(status.contains("Running"), "{status}");
        let out = resume();
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
    // a report lost after the load ended (the process killed while writing it): resuming the
    // ended load writes it again, identical, and loads nothing
    std::fs::remove_file(root.path().join("c_x000-CRASH-2_0-ESITO.csv")).unwrap();
    let again = resume();
    assert!(
        again.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("c_x000-CRASH-2_0-ESITO.csv")).unwrap(),
        report
    );
    // every position complete: as many options as rows of its IUPD
    let store = mpay_storage::Store::open(&root.path().join("data/store-v1")).unwrap();
    let cf = OrgFiscalCode::parse(ORG_C).unwrap();
    for (iupd, options) in [("BENCH-00000005", 2usize), ("BENCH-00000006", 1)] {
        let p = store.ledger.get(&cf, iupd).unwrap().unwrap();
        assert_eq!(p.payment_options.len(), options, "{iupd}");
    }
}

/// A 1.3 file with two accepted rows and three rejected ones whose lines are unusual on
/// purpose: a quoted field holding `;` and `""`, a comma amount, a quoted field spanning two
/// lines with the MyPay `\"` escape; a blank and a whitespace-only line in between.
const COMPAT_13: [&str; 5] = [
    "CMP-0001;;F;TSTPRV80A01H501A;Persona Prova Uno;;;;;;IT;;2025-06-30;50.00;;LICENZA_TEST;;Diritti 0001;9/0101101IM/;;true;I",
    "CMP-0002 ;;F;TSTSMP75M41F205I;\"Esempio; Due\";;;;;;IT;;2025-06-30;12,50;;LICENZA_TEST;;\"Diritti \"\"speciali\"\" 0002\";9/0101101IM/;;true;I",
    "CMP-0003;;F;ABC;Demo Tre;;;;;;;;2025-06-30;30.00;;LICENZA_TEST;;Diritti 0003;9/0101101IM/;;false;M",
    "CMP-0004;;G;01234567897;Ditta Esempio Srl;;;;;;IT;;2025-07-15;80.00;;NON_ESISTE;;\"Canone \\\"2025\\\"\r\nseconda riga\";9/0101101IM/;;true;I",
    "CMP-0005;01000000000101131;G;01234567897;Ditta Esempio Srl;;;;;;IT;;2025-07-15;100;;LICENZA_TEST;ALL;Canone 2025;9/0101101IM/;;false;I",
];

const H13: &str = "IUD;codIuv;tipoIdentificativoUnivoco;codiceIdentificativoUnivoco;anagraficaPagatore;indirizzoPagatore;civicoPagatore;capPagatore;localitaPagatore;provinciaPagatore;nazionePagatore;mailPagatore;dataEsecuzionePagamento;importoDovuto;commissioneCaricoPa;tipoDovuto;tipoVersamento;causaleVersamento;datiSpecificiRiscossione;bilancio;flgGeneraIuv;azione";

fn compat_13_file() -> String {
    format!(
        "{H13}\r\n{}\r\n{}\r\n\r\n  ;  \r\n{}\r\n{}\r\n{}\r\n",
        COMPAT_13[0], COMPAT_13[1], COMPAT_13[2], COMPAT_13[3], COMPAT_13[4]
    )
}

/// Checks the MyPay copies of [`COMPAT_13`] against its report: `_SCARTI.csv` byte for byte
/// (original header + `cod_rifiuto;de_rifiuto`, each rejected line verbatim + MyPay code +
/// our description), `_IUV.csv` (original header, accepted rows at full width, `codIuv`
/// filled, amounts `0.00`).
fn check_compat_13(report: &str, scarti: &str, iuv: &str) {
    let esito = records(report);
    assert_eq!(
        esito[1..]
            .iter()
            .map(|r| (r[0].as_str(), r[4].as_str(), r[10].as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("1", "OK", "OK"),
            ("2", "KO", "ROW_BAD_AMOUNT"),
            ("3", "KO", "ROW_NOT_FOUND|ROW_BAD_FISCAL_CODE"),
            ("4", "KO", "ROW_UNKNOWN_TIPO_DOVUTO"),
            ("5", "WARN", "WARN_LEGACY_FIELD_IGNORED"),
        ],
        "{report}"
    );
    let mut want = format!("{H13};cod_rifiuto;de_rifiuto\r\n");
    for (row, code) in [
        (2, "PAA_IMPORT_SINTASSI_CSV_IMPORTO"),
        (3, "PAA_IMPORT_ERROR|PAA_IMPORT_SINTASSI_CSV_COD_FISC"),
        (4, "PAA_IMPORT_SINTASSI_CSV_TIPO_DOVUTO_INESISTENTE"),
    ] {
        want.push_str(&format!(
            "{};{code};{}\r\n",
            COMPAT_13[row - 1],
            quoted(&esito[row][11])
        ));
    }
    assert_eq!(scarti, want);
    let lines: Vec<&str> = iuv.split_terminator("\r\n").collect();
    assert_eq!(lines[0], H13);
    let r = records(iuv);
    assert_eq!(r.len(), 3, "{iuv}");
    assert!(r[1..].iter().all(|f| f.len() == 22));
    assert_eq!(r[1][0], "CMP-0001");
    assert_eq!(r[1][1], esito[1][6], "generated IUV filled in");
    assert_eq!(r[1][1].len(), 17);
    assert_eq!(r[1][13], "50.00");
    assert_eq!(
        (
            r[2][0].as_str(),
            r[2][1].as_str(),
            r[2][13].as_str(),
            r[2][16].as_str()
        ),
        ("CMP-0005", "01000000000101131", "100.00", "ALL")
    );
}

#[actix_rt::test]
async fn compat_copies_of_a_1_3_file_quote_rejected_rows_verbatim() {
    let app = spawn_feeds_app(free_port(), 30500).await;
    let file = compat_13_file().into_bytes();
    // a correct md5 declared with the upload
    let q = format!("&checksum=md5:{}", md5_hex(&file).to_uppercase());
    let r = upload_raw(
        &app,
        ORG_C,
        KEY_C,
        "c_x000-COMPAT13-1_3.csv",
        file.clone(),
        &q,
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let v = wait_done(&app, ORG_C, KEY_C, "COMPAT13").await;
    assert_eq!(v["status"], "DONE", "{v}");
    assert_eq!(v["sha256"].as_str(), Some(sha256_hex(&file).as_str()));
    assert_eq!(v["checksums"][0]["algorithm"], "md5");
    assert_eq!(v["checksums"][0]["source"], "parameter");
    assert_eq!(v["checksums"][0]["matched"], true, "{v}");
    let report = download(&app, ORG_C, KEY_C, "COMPAT13", "report").await;
    let z = result_zip(&app, ORG_C, KEY_C, "COMPAT13").await;
    assert_eq!(
        names(&z),
        [
            "c_x000-COMPAT13-1_3-ESITO.csv",
            "c_x000-COMPAT13-1_3-IUV-EXCHANGE.csv",
            "c_x000-COMPAT13-1_3_SCARTI.csv",
            "c_x000-COMPAT13-1_3_IUV.csv"
        ]
    );
    assert_eq!(entry(&z, "c_x000-COMPAT13-1_3-ESITO.csv"), report);
    check_compat_13(
        &report,
        entry(&z, "c_x000-COMPAT13-1_3_SCARTI.csv"),
        entry(&z, "c_x000-COMPAT13-1_3_IUV.csv"),
    );
    // documented with the other feed routes
    let doc: Value = app
        .client
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let feeds = "/api/v1/organizations/{organizationfiscalcode}/feeds";
    let zip = &doc["paths"][format!("{feeds}/{{flowid}}/result.zip")]["get"];
    assert!(
        zip["responses"]["200"]["content"]["application/zip"].is_object(),
        "{zip}"
    );
    let params = doc["paths"][feeds]["post"]["parameters"].to_string();
    assert!(params.contains("\"checksum\""), "{params}");
    // the stored upload is what the copies were read from: still there after the load
    let launcher = app.app_state.feeds.as_ref().unwrap();
    let kept = launcher.stored_csv(ORG_C, "COMPAT13").unwrap();
    assert_eq!(std::fs::read(kept).unwrap(), file);
}

#[actix_rt::test]
async fn bad_checksum_fails_the_load_and_nothing_is_applied() {
    let app = spawn_feeds_app(free_port(), 30600).await;
    let file = compat_13_file().into_bytes();
    // malformed parameters: 400 before anything is accepted
    for bad in ["sha256:1234", "crc32:00000000", "deadbeef"] {
        let r = upload_raw(
            &app,
            ORG_C,
            KEY_C,
            "c_x000-SUMS-1_3.csv",
            file.clone(),
            &format!("&checksum={bad}"),
        )
        .await;
        assert_eq!(r.status(), 400, "{bad}");
        let p: Value = r.json().await.unwrap();
        assert!(p.to_string().contains("checksum"), "{p}");
    }
    let wrong = sha256_hex(b"another file");
    let r = upload_raw(
        &app,
        ORG_C,
        KEY_C,
        "c_x000-SUMS-1_3.csv",
        file.clone(),
        &format!("&checksum=sha256:{wrong}"),
    )
    .await;
    assert_eq!(r.status(), 202);
    let v = wait_done(&app, ORG_C, KEY_C, "SUMS").await;
    assert_eq!(v["status"], "FAILED", "{v}");
    assert_eq!(v["error"]["code"], "FILE_CHECKSUM_MISMATCH", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains(&wrong));
    assert_eq!(v["progress"]["rowsLoaded"], 0);
    assert_eq!(v["sha256"].as_str(), Some(sha256_hex(&file).as_str()));
    assert_eq!(v["checksums"][0]["matched"], false);
    assert_eq!(v["checksums"][0]["expected"].as_str(), Some(wrong.as_str()));
    let report = download(&app, ORG_C, KEY_C, "SUMS", "report").await;
    assert_eq!(
        summary(&report),
        vec![s("", "KO", "SCARTATO", "FILE_CHECKSUM_MISMATCH")]
    );
    // nothing applied
    let cf = OrgFiscalCode::parse(ORG_C).unwrap();
    assert!(app.store.ledger.get(&cf, "CMP-0001").unwrap().is_none());
    // result.zip: the report and the MyPay rejects copy (1.x name): one line, empty data columns
    let z = result_zip(&app, ORG_C, KEY_C, "SUMS").await;
    assert_eq!(
        names(&z),
        ["c_x000-SUMS-1_3-ESITO.csv", "c_x000-SUMS-1_3_SCARTI.csv"]
    );
    let scarti = entry(&z, "c_x000-SUMS-1_3_SCARTI.csv");
    assert!(
        scarti.starts_with(&format!(
            "{H13};cod_rifiuto;de_rifiuto\r\n{}PAA_IMPORT_NO_MATCH_MD5;",
            ";".repeat(22)
        )),
        "{scarti}"
    );
    // the same flow again with the right checksum: accepted (nothing had been applied)
    let r = upload_raw(
        &app,
        ORG_C,
        KEY_C,
        "c_x000-SUMS-1_3.csv",
        file.clone(),
        &format!("&checksum=sha256:{}", sha256_hex(&file)),
    )
    .await;
    assert_eq!(r.status(), 202);
    // the 202 describes this upload, not the failed attempt it replaces (issue 11, point 3)
    let accepted: Value = r.json().await.unwrap();
    assert_ne!(accepted["status"], "FAILED", "{accepted}");
    assert!(accepted["error"].is_null(), "{accepted}");
    assert_eq!(accepted["fileName"], "c_x000-SUMS-1_3.csv", "{accepted}");
    let v = wait_done(&app, ORG_C, KEY_C, "SUMS").await;
    assert_eq!(v["status"], "DONE", "{v}");
    assert_eq!(v["checksums"][0]["matched"], true);
    assert_eq!(v["progress"]["rowsLoaded"], 2);
    // still loading → 409 for result.zip is covered by the status rule; unknown flow → 404
    let (code, _, _) = fetch(&app, ORG_C, KEY_C, "NOPE", "result.zip").await;
    assert_eq!(code, 404);
    let (code, _, _) = fetch(&app, ORG_C, KEY_A, "SUMS", "result.zip").await;
    assert_eq!(code, 403);
}

fn ftp_put(addr: &str, user: &str, password: &str, files: Vec<(String, Vec<u8>)>) {
    let mut ftp = suppaftp::FtpStream::connect(addr).unwrap();
    ftp.login(user, password).unwrap();
    ftp.cwd("in").unwrap();
    for (name, bytes) in files {
        ftp.put_file(&name, &mut std::io::Cursor::new(bytes))
            .unwrap();
    }
    let _ = ftp.quit();
}

#[actix_rt::test]
async fn ftp_sidecar_checksums_and_every_output_in_out() {
    let port = free_port();
    let app = spawn_feeds_app(port, 30700).await;
    let addr = format!("127.0.0.1:{port}");
    let home = app.dir.path().join("data/ftp").join(ORG_C);
    let file = compat_13_file().into_bytes();
    // the sidecar first (MyPay's `<basename>.md5`), then the file
    let files = vec![
        (
            "c_x000-FTP13-1_3.md5".to_string(),
            format!("{}\n", md5_hex(&file)).into_bytes(),
        ),
        ("c_x000-FTP13-1_3.csv".to_string(), file.clone()),
    ];
    let a2 = addr.clone();
    actix_rt::task::spawn_blocking(move || ftp_put(&a2, "ente_c", FTP_PASSWORD_C, files))
        .await
        .unwrap();
    let out = home.join("out");
    wait_file(&out.join("c_x000-FTP13-1_3-RESULT.zip")).await;
    let v = wait_done(&app, ORG_C, KEY_C, "FTP13").await;
    assert_eq!(v["status"], "DONE", "{v}");
    assert_eq!(v["checksums"][0]["source"], "c_x000-FTP13-1_3.md5", "{v}");
    assert_eq!(v["checksums"][0]["matched"], true);
    assert!(
        !home.join("in/c_x000-FTP13-1_3.md5").exists(),
        "sidecar consumed"
    );
    let mut listing: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    listing.sort();
    assert_eq!(
        listing,
        [
            "c_x000-FTP13-1_3-ESITO.csv",
            "c_x000-FTP13-1_3-IUV-EXCHANGE.csv",
            "c_x000-FTP13-1_3-RESULT.zip",
            "c_x000-FTP13-1_3_IUV.csv",
            "c_x000-FTP13-1_3_SCARTI.csv"
        ]
    );
    let read = |n: &str| std::fs::read_to_string(out.join(n)).unwrap();
    check_compat_13(
        &read("c_x000-FTP13-1_3-ESITO.csv"),
        &read("c_x000-FTP13-1_3_SCARTI.csv"),
        &read("c_x000-FTP13-1_3_IUV.csv"),
    );
    // the zip holds the same files, read back over FTP
    let a2 = addr.clone();
    let zipped = actix_rt::task::spawn_blocking(move || {
        let mut ftp = suppaftp::FtpStream::connect(&a2).unwrap();
        ftp.login("ente_c", FTP_PASSWORD_C).unwrap();
        ftp.transfer_type(suppaftp::types::FileType::Binary)
            .unwrap();
        let z = ftp
            .retr_as_buffer("/out/c_x000-FTP13-1_3-RESULT.zip")
            .unwrap()
            .into_inner();
        let _ = ftp.quit();
        z
    })
    .await
    .unwrap();
    let z = unzip(&zipped);
    assert_eq!(names(&z).len(), 4);
    for (name, bytes) in &z {
        assert_eq!(bytes, &std::fs::read(out.join(name)).unwrap(), "{name}");
    }
    // a 2.0 file whose `.sha256` sidecar does not match: FILE_CHECKSUM_MISMATCH, PU copy
    let Some(dir) = samples() else { return };
    let sample = std::fs::read(dir.join("ours_b_delta_tipoB__c_x000-CDS2025B-2_0.csv")).unwrap();
    let files = vec![
        (
            "c_x000-BADSUM-2_0.sha256".to_string(),
            format!("{}  c_x000-BADSUM-2_0.csv\n", sha256_hex(b"x")).into_bytes(),
        ),
        ("c_x000-BADSUM-2_0.csv".to_string(), sample),
    ];
    let a2 = addr.clone();
    actix_rt::task::spawn_blocking(move || ftp_put(&a2, "ente_c", FTP_PASSWORD_C, files))
        .await
        .unwrap();
    wait_file(&out.join("c_x000-BADSUM-2_0-RESULT.zip")).await;
    let report = read("c_x000-BADSUM-2_0-ESITO.csv");
    assert!(report.contains(";FILE_CHECKSUM_MISMATCH;"), "{report}");
    let error = read("ERROR-c_x000-BADSUM-2_0.csv");
    assert!(error.contains(";CSV_GENERIC_ERROR;"), "{error}");
    assert!(!out.join("c_x000-BADSUM-2_0-IUV-EXCHANGE.csv").exists());
    let cf = OrgFiscalCode::parse(ORG_C).unwrap();
    assert!(app
        .store
        .ledger
        .get(&cf, "CDS-2025-0102")
        .unwrap()
        .is_none());
}

/// A self-signed certificate for `localhost` (PEM files in `dir`) and its DER.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("ftp-cert.pem"), dir.join("ftp-key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key, ck.cert.der().to_vec())
}

fn tls_client(der: &[u8]) -> suppaftp::RustlsConnector {
    use suppaftp::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der.to_vec()))
        .unwrap();
    // explicit provider: no process-wide default is installed in tests (DESIGN §11)
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    suppaftp::RustlsConnector::from(std::sync::Arc::new(cfg))
}

/// Starts a node whose FTP server has TLS (`ftps_required` as given, `None` = default).
async fn spawn_ftps_app(port: u16, pasv: u16, required: Option<bool>) -> (TestApp, Vec<u8>) {
    let der = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let d2 = der.clone();
    let app = spawn_feeds_app_with(port, pasv, move |text, dir| {
        let (cert, key, der) = self_signed(dir);
        *d2.lock().unwrap() = der;
        let mut tls = format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        );
        if let Some(r) = required {
            tls.push_str(&format!("ftps_required = {r}\n"));
        }
        let anchor = format!("passive_port_max = {}\n", pasv + 19);
        assert!(text.contains(&anchor));
        text.replacen(&anchor, &format!("{anchor}{tls}"), 1)
    })
    .await;
    let der = der.lock().unwrap().clone();
    (app, der)
}

/// Connects and upgrades with AUTH TLS. Known flake (a few runs in ten of this test binary):
/// the client's TLS handshake sometimes reads a plain-text record (InvalidContentType) — cause
/// not found yet (see the closing note); a few attempts with a deadline, each failure printed.
fn secure_session(addr: &str, der: &[u8]) -> suppaftp::RustlsFtpStream {
    let mut last = String::new();
    for attempt in 1..=5 {
        match suppaftp::RustlsFtpStream::connect(addr)
            .and_then(|f| f.into_secure(tls_client(der), "localhost"))
        {
            Ok(f) => return f,
            Err(e) => {
                println!("AUTH TLS attempt {attempt} failed: {e:?}");
                last = format!("{e:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    panic!("AUTH TLS failed 5 times: {last}");
}

#[actix_rt::test]
async fn ftps_upload_with_a_self_signed_certificate_and_plain_login_refused() {
    let Some(dir) = samples() else { return };
    let port = free_port();
    let (app, der) = spawn_ftps_app(port, 30800, None).await;
    let addr = format!("127.0.0.1:{port}");
    let sample = std::fs::read(dir.join("c_x000-DEMO20250301A-1_3.csv")).unwrap();
    let (a2, der2) = (addr.clone(), der.clone());
    let (plain_login, plain_user_reply) = actix_rt::task::spawn_blocking(move || {
        // explicit FTPS: AUTH TLS, then login, PROT P data connections
        let mut ftp = secure_session(&a2, &der);
        ftp.login("ente_c", FTP_PASSWORD_C).unwrap();
        ftp.cwd("in").unwrap();
        ftp.put_file(
            "c_x000-DEMO20250301A-1_3.csv",
            &mut std::io::Cursor::new(sample),
        )
        .unwrap();
        let _ = ftp.quit();
        // the same credentials in clear: refused (534), the password is never checked
        let mut plain = suppaftp::FtpStream::connect(&a2).unwrap();
        let login = plain.login("ente_c", FTP_PASSWORD_C);
        let reply = match &login {
            Err(suppaftp::FtpError::UnexpectedResponse(r)) => {
                String::from_utf8_lossy(&r.body).to_string()
            }
            other => format!("{other:?}"),
        };
        (login.is_ok(), reply)
    })
    .await
    .unwrap();
    assert!(!plain_login, "plain login accepted with TLS configured");
    assert!(
        plain_user_reply.starts_with("534 A TLS connection is required"),
        "{plain_user_reply}"
    );
    let out = app.dir.path().join("data/ftp").join(ORG_C).join("out");
    wait_file(&out.join("c_x000-DEMO20250301A-1_3-RESULT.zip")).await;
    let v = wait_done(&app, ORG_C, KEY_C, "DEMO20250301A").await;
    assert_eq!(v["status"], "DONE", "{v}");
    // the report back over TLS
    let (a2, der) = (addr.clone(), der2);
    // Known flake under parallel load (about 1 run in 10 of the whole suite): the TLS handshake
    // of this second session sometimes reads a plain-text record (InvalidContentType); cause not
    // found yet (see the closing note). A few attempts with a deadline, each one printed.
    let report = actix_rt::task::spawn_blocking(move || {
        let mut last = String::new();
        for attempt in 1..=5 {
            let session = || -> Result<Vec<u8>, suppaftp::FtpError> {
                let mut ftp = secure_session(&a2, &der);
                ftp.login("ente_c", FTP_PASSWORD_C)?;
                let r = ftp
                    .retr_as_buffer("/out/c_x000-DEMO20250301A-1_3-ESITO.csv")?
                    .into_inner();
                let _ = ftp.quit();
                Ok(r)
            };
            match session() {
                Ok(r) => return r,
                Err(e) => {
                    println!("FTPS session attempt {attempt} failed: {e:?}");
                    last = format!("{e:?}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        panic!("FTPS download failed 5 times: {last}");
    })
    .await
    .unwrap();
    let report = String::from_utf8(report).unwrap();
    assert_eq!(
        summary(&report),
        vec![
            s("1", "WARN", "INSERITO", "WARN_LEGACY_FIELD_IGNORED"),
            s("2", "OK", "INSERITO", "OK"),
            s("3", "KO", "SCARTATO", "ROW_NOT_FOUND")
        ]
    );
    // ftps_required = false: clients in clear are let in as well
    let port = free_port();
    let (_open, _) = spawn_ftps_app(port, 30830, Some(false)).await;
    let a2 = format!("127.0.0.1:{port}");
    let ok = actix_rt::task::spawn_blocking(move || {
        let mut plain = suppaftp::FtpStream::connect(&a2).unwrap();
        let ok = plain.login("ente_c", FTP_PASSWORD_C).is_ok();
        let _ = plain.quit();
        ok
    })
    .await
    .unwrap();
    assert!(ok, "ftps_required = false must allow plain logins");
}

/// GovPay's default CSV tracciato (docs/GOVPAY-CSV.md) loads like the MyPay / PU files: one
/// voce, two voci, a document with a single solution and two installments, and the rows we
/// cannot read (stamp voce, cancellation) refused with their code.
#[actix_rt::test]
async fn a_govpay_csv_loads_like_the_pu_files() {
    let app = spawn_feeds_app(free_port(), 30200).await;
    let header = "idA2A,idPendenza,idDominio,numeroAvviso,tipoPendenza,idUnitaOperativa,causale,annoRiferimento,cartellaPagamento,datiAllegati,direzione,divisione,importo,dataValidita,dataScadenza,tassonomiaAvviso,tipoSoggettoPagatore,identificativoPagatore,anagraficaPagatore,indirizzoPagatore,civicoPagatore,capPagatore,localitaPagatore,provinciaPagatore,nazionePagatore,emailPagatore,cellularePagatore,idVoce1,importoVoce1,descrizioneVoce1,ibanAccreditoVoce1,ibanAppoggioVoce1,tipoContabilitaVoce1,codiceContabilitaVoce1,tipoEntrataVoce1,tipoBolloVoce1,hashBolloVoce1,provinciaBolloVoce1,idVoce2,importoVoce2,descrizioneVoce2,ibanAccreditoVoce2,ibanAppoggioVoce2,tipoContabilitaVoce2,codiceContabilitaVoce2,tipoEntrataVoce2,tipoBolloVoce2,hashBolloVoce2,provinciaBolloVoce2,dataAvvisatura,idDocumento,descrizioneDocumento,numeroRata,linguaSecondaria";
    let voce = |id: &str, eur: &str, desc: &str| {
        format!("{id},{eur},{desc},{IBAN_C},,ALTRO,0101101IM,,,,")
    };
    let empty_voce = ",,,,,,,,,,";
    let row = |pend: &str, eur: &str, causale: &str, voci: String, doc: &str| {
        format!(
            "GESTIONALE,{pend},{ORG_C},,TARI,,{causale},2026,,,,,{eur},,2030-12-31,,F,RSSMRA80A01H501U,Mario Rossi,Via Roma,1,60100,Ancona,AN,IT,,,{voci},{doc}"
        )
    };
    let lines = [
        header.to_string(),
        row(
            "GP-1",
            "120.00",
            "\"TARI 2026, acconto\"",
            format!("{},{empty_voce}", voce("V1", "120.00", "TARI")),
            ",,,,",
        ),
        row(
            "GP-2",
            "100.00",
            "Canone",
            format!(
                "{},{}",
                voce("V1", "70.00", "Quota 1"),
                voce("V2", "30.00", "Quota 2")
            ),
            ",,,,",
        ),
        row(
            "GP-3",
            "90.00",
            "Retta",
            format!("{},{empty_voce}", voce("V1", "90.00", "Retta")),
            ",DOC-1,Retta 2026,,",
        ),
        row(
            "GP-3-1",
            "45.00",
            "Retta rata 1",
            format!("{},{empty_voce}", voce("V1", "45.00", "Retta")),
            ",DOC-1,Retta 2026,1,",
        ),
        row(
            "GP-3-2",
            "45.00",
            "Retta rata 2",
            format!("{},{empty_voce}", voce("V1", "45.00", "Retta")),
            ",DOC-1,Retta 2026,2,",
        ),
        // a stamp voce: no IBAN
        row(
            "GP-4",
            "16.00",
            "Bollo",
            "B1,16.00,Bollo,,,,,,01,6Uh9j7P6PGFQxX6O2IdHaM/RtBaNjgsmFG+MmDzbcgg=,AN,,,,,,,,,,,"
                .to_string(),
            ",,,,",
        ),
        // GovPay's cancellation: importo 0
        row(
            "GP-1",
            "0",
            "TARI",
            format!("{},{empty_voce}", voce("V1", "0", "TARI")),
            ",,,,",
        ),
    ];
    let file = lines.join("\r\n") + "\r\n";
    let r = upload_raw(
        &app,
        ORG_C,
        KEY_C,
        "c_x000-GOVPAY1-govpay.csv",
        file.into_bytes(),
        "",
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let v = wait_done(&app, ORG_C, KEY_C, "GOVPAY1").await;
    assert_eq!(v["status"], "DONE", "{v}");
    let report = download(&app, ORG_C, KEY_C, "GOVPAY1", "report").await;
    let got = summary(&report);
    let ok: Vec<&Line> = got.iter().filter(|l| l.1 == "OK").collect();
    assert_eq!(ok.len(), 5, "{report}");
    assert_eq!(got.len(), 7, "{report}");
    let codes: Vec<&str> = got.iter().map(|l| l.3.as_str()).collect();
    assert_eq!(codes[5], "ROW_BAD_BENEFICIARY", "{report}");
    // the cancellation row: refused (amount rule of the tracciato), see docs/GOVPAY-CSV.md
    assert_eq!(got[6].1, "KO", "{report}");
    assert!(codes[6].starts_with("ROW_"), "{report}");
    // the positions, as the PU 2.0 equivalents
    let org = OrgFiscalCode::parse_unchecked(ORG_C).unwrap();
    let p1 = app.store.ledger.get(&org, "GP-1").unwrap().expect("GP-1");
    assert_eq!(p1.payment_options.len(), 1);
    assert_eq!(p1.payment_options[0].amount.cents(), 12_000);
    assert_eq!(p1.payment_options[0].description, "TARI 2026, acconto");
    assert!(p1.payment_options[0].nav.as_str().starts_with("301"));
    let p2 = app.store.ledger.get(&org, "GP-2").unwrap().expect("GP-2");
    let t: Vec<i64> = p2.payment_options[0]
        .transfers
        .iter()
        .map(|t| t.amount.cents())
        .collect();
    assert_eq!(t, vec![7_000, 3_000]);
    let doc = app.store.ledger.get(&org, "DOC-1").unwrap().expect("DOC-1");
    assert_eq!(doc.payment_options.len(), 3, "{doc:?}");
    assert_eq!(
        doc.payment_options
            .iter()
            .filter(|o| o.is_partial_payment)
            .count(),
        2
    );
    assert!(doc
        .payment_options
        .iter()
        .all(|o| o.status == OptionStatus::PoUnpaid));
    assert!(matches!(
        doc.status,
        PositionStatus::Valid | PositionStatus::Published
    ));
}

/// Generated IUVs / notice numbers replaced by their order of appearance: the numbers come from
/// durable blocks reserved per process (a CLI run starts a new block, a server continues its
/// own), so only their order and uniqueness are the same whatever the transport.
fn number_tokens(lines: Vec<String>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    lines
        .into_iter()
        .map(|l| {
            let (mut out, mut run) = (String::new(), String::new());
            let mut flush = |run: &mut String, out: &mut String| {
                let key = match run.len() {
                    18 if run.starts_with('3') => Some(run[1..].to_string()),
                    17 => Some(run.clone()),
                    _ => None,
                };
                match key {
                    Some(k) => {
                        let i = seen.iter().position(|s| *s == k).unwrap_or_else(|| {
                            seen.push(k);
                            seen.len() - 1
                        });
                        out.push_str(&format!("#{}{i}", if run.len() == 18 { "N" } else { "I" }));
                    }
                    None => out.push_str(run),
                }
                run.clear();
            };
            for c in l.chars() {
                if c.is_ascii_digit() {
                    run.push(c);
                } else {
                    flush(&mut run, &mut out);
                    out.push(c);
                }
            }
            flush(&mut run, &mut out);
            out
        })
        .collect()
}

/// What a load left in a store: its record (status, counts, file-level code), every outcome
/// line, and every position it touched (status, notice numbers, amounts).
fn snapshot(store: &mpay_storage::Store, flows: &[&str]) -> Vec<String> {
    let cf = OrgFiscalCode::parse(ORG_C).unwrap();
    let mut out = Vec::new();
    for flow in flows {
        let r = mpay_storage::feeds::get_feed(store, &cf, flow)
            .unwrap()
            .unwrap_or_else(|| panic!("no record of {flow}"));
        out.push(format!(
            "{flow}: {:?} {:?} total {} loaded {} rejected {} warned {} error {:?}",
            r.status,
            r.mode,
            r.rows_total,
            r.rows_loaded,
            r.rows_rejected,
            r.rows_warned,
            r.error
                .as_ref()
                .map(|e| (e.code.as_str(), e.message.clone()))
        ));
        let mut iupds = std::collections::BTreeSet::new();
        for o in mpay_storage::feeds::outcomes(store, &cf, flow).unwrap() {
            let o = o.unwrap();
            iupds.insert(o.line.iupd.clone());
            out.push(format!("{flow}: {:?} {:?}", o.line, o.iuv));
        }
        for iupd in iupds {
            if let Some(p) = store.ledger.get(&cf, &iupd).unwrap() {
                let options: Vec<String> = p
                    .payment_options
                    .iter()
                    .map(|o| format!("{} {} {:?}", o.nav, o.amount.to_decimal_string(), o.status))
                    .collect();
                out.push(format!("{flow}: {iupd} {:?} {options:?}", p.status));
            }
        }
    }
    number_tokens(out)
}

/// Issue 8: the same files give the same load records, outcomes and positions through the CLI,
/// the REST upload, FTP and the drop folder — a good file, one with row errors, a zip that is
/// not a zip and a zip over the configured limits (both recorded FAILED with their code).
#[actix_rt::test]
async fn the_same_files_give_the_same_result_through_every_transport() {
    let root = tempfile::tempdir().unwrap();
    let good_path = root.path().join("gen.csv");
    let out = mpay(&[
        "feed",
        "gen",
        "--out",
        good_path.to_str().unwrap(),
        "--rows",
        "60",
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
    let good = std::fs::read(&good_path).unwrap();
    // rows with errors: an unknown tipoDovuto on some positions, a bad amount on another
    let text = String::from_utf8(good.clone()).unwrap();
    let mut rows: Vec<String> = text.split("\r\n").map(str::to_string).collect();
    for i in [3usize, 10, 20] {
        rows[i] = rows[i].replace(";TARI;", ";NOPE;");
    }
    rows[30] = rows[30].replacen(";2030-06-30;", ";2030-06-30;abc", 1);
    let row_errors = rows.join("\r\n").replace("BENCH-", "ERR-").into_bytes();
    let bad_zip = b"PK\x03\x04 this is not a zip archive".to_vec();
    let big_zip = {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let deflated = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        w.start_file("c_x000-BIGZIP-2_0.csv", deflated).unwrap();
        w.write_all(text.replace("BENCH-", "BIG-").as_bytes())
            .unwrap();
        w.finish().unwrap().into_inner()
    };
    assert!(
        good.len() > 4096,
        "the test CSV must exceed the configured limit"
    );
    let files: Vec<(String, Vec<u8>)> = vec![
        ("c_x000-GOOD-2_0.csv".into(), good),
        ("c_x000-ROWERR-2_0.csv".into(), row_errors),
        ("c_x000-BADZIP-2_0.zip".into(), bad_zip),
        ("c_x000-BIGZIP-2_0.zip".into(), big_zip),
    ];
    let flows = ["GOOD", "ROWERR", "BADZIP", "BIGZIP"];
    // a CSV size the zipped file exceeds: the configured limit must apply everywhere
    let limit =
        |text: String, _: &Path| text.replace("[feeds]\n", "[feeds]\nzip_max_csv_bytes = 4096\n");

    // CLI
    let cfg = cli_config(root.path());
    std::fs::write(
        &cfg,
        limit(std::fs::read_to_string(&cfg).unwrap(), root.path()),
    )
    .unwrap();
    let cli_dir = root.path().join("cli");
    std::fs::create_dir_all(&cli_dir).unwrap();
    for (name, bytes) in &files {
        let path = cli_dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = mpay(&[
            "feed",
            "load",
            "--org",
            ORG_C,
            path.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--quiet",
        ]);
        assert!(
            out.status.code() == Some(0) || out.status.code() == Some(1),
            "{name}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let base = name.rsplit_once('.').unwrap().0;
        assert!(cli_dir.join(format!("{base}-ESITO.csv")).exists(), "{name}");
    }
    let cli = {
        let store = mpay_storage::Store::open(&root.path().join("data/store-v1")).unwrap();
        snapshot(&store, &flows)
    };
    assert!(
        cli[0].contains("Done") && cli[0].contains("loaded 60"),
        "{}",
        cli[0]
    );
    assert!(
        cli.iter()
            .any(|l| l.starts_with("ROWERR: Done") && !l.contains("rejected 0")),
        "{cli:?}"
    );
    assert!(
        cli.iter().any(|l| l.starts_with("BADZIP: Failed")),
        "{cli:?}"
    );
    assert!(
        cli.iter().any(|l| l.starts_with("BIGZIP: Failed")),
        "{cli:?}"
    );

    // REST (one file after the other, like the CLI: generated numbers follow the load order)
    let app = spawn_feeds_app_with(free_port(), 30500, limit).await;
    for ((name, bytes), flow) in files.iter().zip(flows) {
        let r = upload_raw(&app, ORG_C, KEY_C, name, bytes.clone(), "").await;
        assert_eq!(r.status().as_u16(), 202, "{name}");
        wait_done(&app, ORG_C, KEY_C, flow).await;
    }
    assert_eq!(
        snapshot(&app.store, &flows),
        cli,
        "REST differs from the CLI"
    );

    // FTP
    let port = free_port();
    let app = spawn_feeds_app_with(port, 30600, limit).await;
    let out_dir = app.dir.path().join("data/ftp").join(ORG_C).join("out");
    for ((name, bytes), flow) in files.iter().zip(flows) {
        let (addr, file) = (
            format!("127.0.0.1:{port}"),
            vec![(name.clone(), bytes.clone())],
        );
        actix_rt::task::spawn_blocking(move || ftp_put(&addr, "ente_c", FTP_PASSWORD_C, file))
            .await
            .unwrap();
        let base = name.rsplit_once('.').unwrap().0;
        wait_file(&out_dir.join(format!("{base}-ESITO.csv"))).await;
        wait_done(&app, ORG_C, KEY_C, flow).await;
    }
    assert_eq!(
        snapshot(&app.store, &flows),
        cli,
        "FTP differs from the CLI"
    );

    // drop folder
    let app = spawn_feeds_app_with(free_port(), 30700, limit).await;
    let drop = app.dir.path().join("data/drop").join(ORG_C);
    for ((name, bytes), flow) in files.iter().zip(flows) {
        std::fs::write(drop.join(format!(".{name}.part")), bytes).unwrap();
        std::fs::rename(drop.join(format!(".{name}.part")), drop.join(name)).unwrap();
        let base = name.rsplit_once('.').unwrap().0;
        wait_file(&drop.join("out").join(format!("{base}-ESITO.csv"))).await;
        wait_done(&app, ORG_C, KEY_C, flow).await;
    }
    assert_eq!(
        snapshot(&app.store, &flows),
        cli,
        "the drop folder differs from the CLI"
    );
}
