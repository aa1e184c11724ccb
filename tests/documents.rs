#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Payment documents through the real node: the REST API's notice and receipt PDFs (API keys,
//! tenants, 404 problem JSON), the public verification page and downloads of the portal, and
//! the asynchronous mass-print job. PDFs are read back as a reader would: rasterized with
//! `pdftoppm`, QR codes decoded with `zbarimg`, the Data Matrix with `dmtxread` (`ops/test`
//! installs them; a missing tool fails the test with the package to install).

mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn tool(name: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("{name} is missing: apt-get install {package} (ops/test installs it)")
        })
}

/// QR payloads and Data Matrix payloads of the first page of `pdf`.
/// `data_matrices`: how many to look for (0: do not run dmtxread, which scans a page without
/// one until its time limit).
fn codes(dir: &Path, name: &str, pdf: &[u8], data_matrices: u32) -> (Vec<String>, Vec<String>) {
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
    let file = dir.join(format!("{name}.pdf"));
    std::fs::write(&file, pdf).unwrap();
    let prefix = dir.join(name);
    let ok = Command::new(tool("pdftoppm", "poppler-utils"))
        .args(["-r", "200", "-png", "-f", "1", "-l", "1", "-singlefile"])
        .arg(&file)
        .arg(&prefix)
        .status()
        .unwrap();
    assert!(ok.success());
    let png = prefix.with_extension("png");
    let qr = Command::new(tool("zbarimg", "zbar-tools"))
        .args(["--quiet", "--raw", "-Sdisable", "-Sqrcode.enable"])
        .arg(&png)
        .output()
        .unwrap();
    let lines = |b: Vec<u8>| {
        String::from_utf8(b)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let dm = if data_matrices == 0 {
        vec![]
    } else {
        let out = Command::new(tool("dmtxread", "dmtx-utils"))
            .args(["-n", "-N", &data_matrices.to_string(), "-m", "60000"])
            .arg(&png)
            .output()
            .unwrap();
        lines(out.stdout)
    };
    (lines(qr.stdout), dm)
}

fn postal_position(iupd: &str, cents: i64) -> Value {
    let mut body = position_body(iupd, cents);
    body["fullName"] = json!("Anna D’Esempio");
    body["paymentOption"][0]["transfer"][0]["postalIban"] = json!(POSTAL_A);
    body
}

async fn create(app: &TestApp, body: &Value) -> Value {
    let r = app.post(ORG_A, KEY_A, "?toPublish=true", body).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

/// A client that never reuses a connection: decoding a page blocks this thread for seconds,
/// longer than the server keeps an idle connection open.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn get_key(_app: &TestApp, url: &str, key: Option<&str>) -> reqwest::Response {
    let mut rq = fresh_client().get(url);
    if let Some(k) = key {
        rq = rq.header("Ocp-Apim-Subscription-Key", k);
    }
    rq.send().await.unwrap()
}

#[actix_web::test]
async fn notice_pdfs_over_rest_carry_the_spec_codes_and_respect_tenants() {
    let app = spawn_app().await;
    let created = create(&app, &postal_position("doc-1", 12345)).await;
    let nav = created["paymentOption"][0]["nav"]
        .as_str()
        .unwrap()
        .to_owned();
    let api = format!("{}/api/v1/organizations/{ORG_A}", app.base);

    let r = get_key(
        &app,
        &format!("{api}/debtpositions/doc-1/notices/pdf"),
        Some(KEY_A),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let pdf = r.bytes().await.unwrap();
    let (qr, dm) = codes(app.dir.path(), "position", &pdf, 1);
    assert_eq!(qr, vec![format!("PAGOPA|002|{nav}|{ORG_A}|12345")]);
    assert_eq!(dm.len(), 1, "one Poste Data Matrix: {dm:?}");
    let dm = &dm[0];
    assert_eq!(dm.len(), 256);
    assert_eq!(&dm[15..33], nav);
    assert_eq!(
        &dm[35..47],
        "000012345678",
        "the postal account of {POSTAL_A}"
    );
    assert_eq!(&dm[49..59], "0000012345");
    assert_eq!(&dm[66..77], ORG_A);
    assert_eq!(&dm[93..133], format!("{:<40}", "Anna D'Esempio"));

    // the same notice by number
    let r = get_key(&app, &format!("{api}/notices/{nav}/pdf"), Some(KEY_A)).await;
    assert_eq!(r.status(), 200);
    let (qr, _) = codes(app.dir.path(), "by-number", &r.bytes().await.unwrap(), 0);
    assert_eq!(qr, vec![format!("PAGOPA|002|{nav}|{ORG_A}|12345")]);

    // a notice number that is not ours: 404 problem JSON
    for other in ["312000000009999999", "not-a-number"] {
        let r = get_key(&app, &format!("{api}/notices/{other}/pdf"), Some(KEY_A)).await;
        assert_eq!(r.status(), 404, "{other}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json"));
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["status"], 404);
    }
    // no key, another tenant's key
    assert_eq!(
        get_key(&app, &format!("{api}/notices/{nav}/pdf"), None)
            .await
            .status(),
        401
    );
    assert_eq!(
        get_key(&app, &format!("{api}/notices/{nav}/pdf"), Some(KEY_B))
            .await
            .status(),
        403
    );
    assert_eq!(
        get_key(
            &app,
            &format!("{api}/debtpositions/doc-1/notices/pdf"),
            Some(KEY_B)
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        get_key(
            &app,
            &format!("{api}/debtpositions/nope/notices/pdf"),
            Some(KEY_A)
        )
        .await
        .status(),
        404
    );

    // the portal's "Scarica l'avviso": public, by organization and notice number
    let r = get_key(
        &app,
        &format!("{}/avvisi/{ORG_A}/{nav}/pdf", app.base),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let (qr, _) = codes(app.dir.path(), "portal", &r.bytes().await.unwrap(), 0);
    assert_eq!(qr, vec![format!("PAGOPA|002|{nav}|{ORG_A}|12345")]);
    let r = get_key(
        &app,
        &format!("{}/avvisi/{ORG_A}/312000000009999999/pdf", app.base),
        None,
    )
    .await;
    assert_eq!(r.status(), 404);

    // documented
    let doc: Value = fresh_client()
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for p in [
        "/api/v1/organizations/{organizationfiscalcode}/debtpositions/{iupd}/notices/pdf",
        "/api/v1/organizations/{organizationfiscalcode}/notices/{noticeNumber}/pdf",
        "/api/v1/organizations/{organizationfiscalcode}/receipts/{receiptId}/pdf",
        "/api/v1/organizations/{organizationfiscalcode}/notices/print-jobs",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} not in the OpenAPI");
    }
    app.handle.stop(true).await;
}

#[actix_web::test]
async fn receipt_pdf_links_to_a_verification_page_nobody_can_guess() {
    let app = spawn_app().await;
    let created = create(&app, &position_body("doc-paid", 5000)).await;
    let nav = created["paymentOption"][0]["nav"]
        .as_str()
        .unwrap()
        .to_owned();
    let paid = pay_notice(&fresh_client(), &app.base, ORG_A, &nav).await;
    let api = format!("{}/api/v1/organizations/{ORG_A}", app.base);

    let r = get_key(
        &app,
        &format!("{api}/receipts/{}/pdf", paid.receipt_id),
        Some(KEY_A),
    )
    .await;
    assert_eq!(r.status(), 200);
    let (qr, _) = codes(app.dir.path(), "receipt", &r.bytes().await.unwrap(), 0);
    assert_eq!(qr.len(), 1, "{qr:?}");
    let verify = &qr[0];
    let prefix = format!("{}/ricevute/verify/", app.base);
    assert!(verify.starts_with(&prefix), "{verify}");
    let id = &verify[prefix.len()..];

    // the page a third party sees
    let r = get_key(&app, verify, None).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("Ricevuta autentica"), "{html}");
    assert!(
        html.contains(&paid.receipt_id),
        "the receipt id, unmodified"
    );
    assert!(html.contains("50,00"));
    assert!(
        !html.contains("RSSMRA80A01H501U"),
        "no debtor's fiscal code on a public page"
    );
    // its download (the outcome page's "Scarica la ricevuta")
    let r = get_key(&app, &format!("{}/ricevute/{id}/pdf", app.base), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    // a forged or altered id finds nothing
    let (name, tag) = id.rsplit_once('.').unwrap();
    let flipped: String = tag.chars().rev().collect();
    for bad in [
        format!("{name}.{flipped}"),
        format!("{name}.{}", "0".repeat(32)),
        "x".into(),
    ] {
        assert_eq!(
            get_key(&app, &format!("{}/ricevute/verify/{bad}", app.base), None)
                .await
                .status(),
            404,
            "{bad}"
        );
        assert_eq!(
            get_key(&app, &format!("{}/ricevute/{bad}/pdf", app.base), None)
                .await
                .status(),
            404,
            "{bad}"
        );
    }
    // tenants
    assert_eq!(
        get_key(
            &app,
            &format!("{api}/receipts/{}/pdf", paid.receipt_id),
            Some(KEY_B)
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        get_key(&app, &format!("{api}/receipts/unknown/pdf"), Some(KEY_A))
            .await
            .status(),
        404
    );
    app.handle.stop(true).await;
}

#[actix_web::test]
async fn print_job_renders_the_selection_into_a_zip_once_per_idempotency_key() {
    let app = spawn_app().await;
    let mut navs = Vec::new();
    for i in 0..3 {
        let c = create(&app, &position_body(&format!("mass-{i}"), 1000 + i)).await;
        navs.push(c["paymentOption"][0]["nav"].as_str().unwrap().to_owned());
    }
    let url = format!(
        "{}/api/v1/organizations/{ORG_A}/notices/print-jobs",
        app.base
    );
    let client = fresh_client();
    let post = |key: &'static str, body: Value| {
        client
            .post(&url)
            .header("Ocp-Apim-Subscription-Key", KEY_A)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let bad = post("k0", json!({"status": "VALID", "feed": "x"}))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let r = post("k1", json!({"status": "VALID"})).await.unwrap();
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    let id = job["jobId"].as_str().unwrap().to_owned();
    let again: Value = post("k1", json!({"status": "VALID"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        again["jobId"],
        id.as_str(),
        "same Idempotency-Key, same job"
    );

    let status_url = format!("{url}/{id}");
    let mut status = Value::Null;
    for _ in 0..600 {
        status = get_key(&app, &status_url, Some(KEY_A))
            .await
            .json()
            .await
            .unwrap();
        if status["status"] == "DONE" || status["status"] == "FAILED" {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status["status"], "DONE", "{status}");
    assert_eq!(status["total"], 3);
    assert_eq!(status["done"], 3);
    assert_eq!(get_key(&app, &status_url, Some(KEY_B)).await.status(), 403);

    let zip_bytes = get_key(&app, &format!("{status_url}/result.zip"), Some(KEY_A))
        .await
        .bytes()
        .await
        .unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes.to_vec())).unwrap();
    let mut names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    names.sort();
    let mut expected: Vec<String> = navs.iter().map(|n| format!("{n}.pdf")).collect();
    expected.sort();
    assert_eq!(names, expected);
    let mut pdf = Vec::new();
    zip.by_name(&format!("{}.pdf", navs[2]))
        .unwrap()
        .read_to_end(&mut pdf)
        .unwrap();
    let (qr, _) = codes(app.dir.path(), "zipped", &pdf, 0);
    assert_eq!(qr, vec![format!("PAGOPA|002|{}|{ORG_A}|1002", navs[2])]);
    app.handle.stop(true).await;
}
