//! Reconciliation end to end (issue 14): positions created over REST, paid through the station
//! as the Node does (paGetPaymentV2 + paSendRTV2, built by `pagopa-sim`), a reporting flow and
//! a bank statement imported over REST, every payment labelled; then the faults: a row for an
//! unknown IUV, a repeated row, an IUR that is not the receipt id, a credit that explains
//! nothing, a partial settlement, a file that is not a flow, and importing twice.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{position_body, spawn_app, spawn_app_with, TestApp, IBAN_A, KEY_A, ORG_A};
use serde_json::Value;

struct Paid {
    iuv: String,
    receipt_id: String,
    cents: i64,
}

/// Creates a published position and pays it through the station; returns its IUV and receipt.
async fn create_and_pay(app: &TestApp, iupd: &str, cents: i64) -> Paid {
    let r = app
        .post(ORG_A, KEY_A, "?toPublish=true", &position_body(iupd, cents))
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let created: Value = r.json().await.unwrap();
    let nav = created["paymentOption"][0]["nav"].as_str().unwrap();
    let paid = common::pay_notice(&app.client, &app.base, ORG_A, nav).await;
    Paid {
        iuv: paid.iuv,
        receipt_id: paid.receipt_id,
        cents,
    }
}

fn euros(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A FlussoRiversamento (namespace prefix, CRLF) with rows `(iuv, iur, index, cents, code)`.
fn flow_xml(id: &str, rows: &[(String, String, u8, i64, &str)]) -> String {
    let total: i64 = rows.iter().map(|r| r.3).sum();
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<pag:FlussoRiversamento xmlns:pag=\"http://www.digitpa.gov.it/schemas/2011/Pagamenti/\">\r\n\
<pag:versioneOggetto>1.0</pag:versioneOggetto><pag:identificativoFlusso>{id}</pag:identificativoFlusso>\
<pag:dataOraFlusso>2026-07-04T08:30:00</pag:dataOraFlusso><pag:identificativoUnivocoRegolamento>TRN-{id}</pag:identificativoUnivocoRegolamento>\
<pag:dataRegolamento>2026-07-03</pag:dataRegolamento><pag:istitutoMittente><pag:identificativoUnivocoMittente>\
<pag:tipoIdentificativoUnivoco>B</pag:tipoIdentificativoUnivoco><pag:codiceIdentificativoUnivoco>PSPXITXXXXX</pag:codiceIdentificativoUnivoco>\
</pag:identificativoUnivocoMittente><pag:denominazioneMittente>PSP di Prova</pag:denominazioneMittente></pag:istitutoMittente>\
<pag:istitutoRicevente><pag:identificativoUnivocoRicevente><pag:tipoIdentificativoUnivoco>G</pag:tipoIdentificativoUnivoco>\
<pag:codiceIdentificativoUnivoco>{ORG_A}</pag:codiceIdentificativoUnivoco></pag:identificativoUnivocoRicevente></pag:istitutoRicevente>\r\n\
<pag:numeroTotalePagamenti>{n}</pag:numeroTotalePagamenti><pag:importoTotalePagamenti>{t}</pag:importoTotalePagamenti>\r\n",
        n = rows.len(),
        t = euros(total)
    );
    for (iuv, iur, idx, cents, code) in rows {
        x.push_str(&format!(
            "<pag:datiSingoliPagamenti>\r\n\t<pag:identificativoUnivocoVersamento>{iuv}</pag:identificativoUnivocoVersamento>\
<pag:identificativoUnivocoRiscossione>{iur}</pag:identificativoUnivocoRiscossione><pag:indiceDatiSingoloPagamento>{idx}</pag:indiceDatiSingoloPagamento>\
<pag:singoloImportoPagato>{a}</pag:singoloImportoPagato><pag:codiceEsitoSingoloPagamento>{code}</pag:codiceEsitoSingoloPagamento>\
<pag:dataEsitoSingoloPagamento>2026-07-02</pag:dataEsitoSingoloPagamento></pag:datiSingoliPagamenti>\r\n",
            a = euros(*cents)
        ));
    }
    x.push_str("</pag:FlussoRiversamento>\r\n");
    x
}

/// A camt.053.001.02 with booked credits `(reference, cents, remittance)` on the Ente's IBAN.
fn camt(credits: &[(&str, i64, String)]) -> String {
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.053.001.02\"><BkToCstmrStmt>\
<GrpHdr><MsgId>M1</MsgId><CreDtTm>2026-07-04T02:00:00</CreDtTm></GrpHdr><Stmt><Id>S1</Id><CreDtTm>2026-07-04T02:00:00</CreDtTm>",
    );
    x.push_str(&format!("<Acct><Id><IBAN>{IBAN_A}</IBAN></Id></Acct>"));
    for (r, cents, text) in credits {
        x.push_str(&format!(
            "<Ntry><Amt Ccy=\"EUR\">{a}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><BookgDt><Dt>2026-07-03</Dt></BookgDt>\
<ValDt><Dt>2026-07-03</Dt></ValDt><AcctSvcrRef>{r}</AcctSvcrRef><NtryDtls><TxDtls><Refs><EndToEndId>E2E-{r}</EndToEndId></Refs>\
<RltdPties><Dbtr><Nm>PSP di Prova Servizio pagoPA</Nm></Dbtr></RltdPties><RmtInf><Ustrd>{text}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>",
            a = euros(*cents)
        ));
    }
    x.push_str("</Stmt></BkToCstmrStmt></Document>");
    x
}

async fn upload(app: &TestApp, what: &str, name: &str, body: String) -> reqwest::Response {
    app.client
        .post(format!("{}/api/v1/organizations/{ORG_A}/{what}", app.base))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .header("X-File-Name", name)
        .body(body)
        .send()
        .await
        .unwrap()
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

fn label_of(report: &Value, receipt_id: &str) -> String {
    report["payments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["receiptId"] == receipt_id)
        .map(|p| p["label"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no payment line for {receipt_id}: {report}"))
}

#[actix_rt::test]
async fn payments_flows_and_credits_are_labelled_and_faults_never_abort_a_flow() {
    let app = spawn_app().await;
    let a = create_and_pay(&app, "RECON-1", 12_000).await;
    let b = create_and_pay(&app, "RECON-2", 1_029).await;
    let c = create_and_pay(&app, "RECON-3", 500).await;
    let d = create_and_pay(&app, "RECON-4", 700).await;

    // nothing reported yet: every payment is RT_NO_IUF
    let r = report(&app).await;
    for p in [&a, &b, &c, &d] {
        assert_eq!(label_of(&r, &p.receipt_id), "RT_NO_IUF");
    }

    // flow 1: a and b exactly, b's row repeated, a code-9 row for an unknown IUV first
    let f1 = "2026-07-0388888888888-S0000001";
    let rows = vec![
        (
            "99999999999999999".to_string(),
            "NO-RT".to_string(),
            1,
            300,
            "9",
        ),
        (a.iuv.clone(), a.receipt_id.clone(), 1, a.cents, "0"),
        (b.iuv.clone(), b.receipt_id.clone(), 1, b.cents, "0"),
        (b.iuv.clone(), b.receipt_id.clone(), 1, b.cents, "0"),
    ];
    let resp = upload(&app, "fdrs/import", "flow1.xml", flow_xml(f1, &rows)).await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let imported: Value = resp.json().await.unwrap();
    assert_eq!(imported["rows"], 4);
    assert_eq!(
        imported["totalCents"],
        300 + a.cents + b.cents,
        "the repeated row counts once"
    );
    assert!(
        imported["flags"].to_string().contains("DuplicateRows"),
        "{imported}"
    );
    // the same file again changes nothing
    let again = upload(&app, "fdrs/import", "flow1.xml", flow_xml(f1, &rows)).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["outcome"], "UNCHANGED");

    // flow 2: c with the PSP's own IUR (matched by IUV, index and amount, with a warning)
    let f2 = "2026-07-0388888888888-S0000002";
    let rows2 = vec![(c.iuv.clone(), "PSP-OWN-IUR".to_string(), 1, c.cents, "0")];
    let resp = upload(&app, "fdrs/import", "flow2.xml", flow_xml(f2, &rows2)).await;
    assert_eq!(resp.status(), 201);

    let r = report(&app).await;
    assert_eq!(
        label_of(&r, &a.receipt_id),
        "RT_IUF",
        "reported, money not yet there"
    );
    assert_eq!(label_of(&r, &c.receipt_id), "RT_IUF");
    assert_eq!(label_of(&r, &d.receipt_id), "RT_NO_IUF");
    let c_line = r["payments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["receiptId"] == c.receipt_id.as_str())
        .unwrap();
    assert!(
        c_line["warnings"].to_string().contains("IurDiffers"),
        "{c_line}"
    );
    let orphans = r["rowsWithoutReceipt"].as_array().unwrap();
    assert_eq!(orphans.len(), 1, "{r}");
    assert_eq!(orphans[0]["label"], "IUV_NO_RT");
    assert_eq!(orphans[0]["iuv"], "99999999999999999");

    // the bank: flow 1 settled in full by an ordinary credit (treasury spaces inside the id),
    // flow 2 only in part, and a credit nobody can explain
    let total1 = 300 + a.cents + b.cents;
    let statement = camt(&[
        (
            "REF-1",
            total1,
            "/PUR/LGPE-RIVERSAMENTO/TXT/0/URI/2026-07-03 88888888888-S0000001".to_string(),
        ),
        (
            "REF-2",
            c.cents - 100,
            format!("RI1/PUR/LGPE-RIVERSAMENTO/URI/{f2}"),
        ),
        ("REF-3", 4_242, "BONIFICO DA PRIVATO".to_string()),
    ]);
    let resp = upload(&app, "bank-statements", "stmt.xml", statement.clone()).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let s: Value = resp.json().await.unwrap();
    assert_eq!(
        (s["credits"].as_i64(), s["new"].as_i64()),
        (Some(3), Some(3))
    );
    let again: Value = upload(&app, "bank-statements", "stmt.xml", statement)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["alreadyKnown"], 3, "importing twice changes nothing");
    // the statement's new credits reached the ReconciliationWorker through the bus: its run
    // (recorded with the reason) already sees the settled flow
    app.wait_for("a run caused by the statement", || async {
        let r = report(&app).await;
        r["lastRun"]["reason"] == "fdr.statement_imported"
            && r["lastRun"]["totals"]["RT_IUF_TES"][0].as_i64() >= Some(2)
    })
    .await;

    let r = report(&app).await;
    assert_eq!(label_of(&r, &a.receipt_id), "RT_IUF_TES");
    assert_eq!(label_of(&r, &b.receipt_id), "RT_IUF_TES");
    assert_eq!(label_of(&r, &c.receipt_id), "IUF_TES_DIV_IMP");
    assert_eq!(label_of(&r, &d.receipt_id), "RT_NO_IUF");
    let flow2 = r["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["flowId"] == f2)
        .unwrap();
    assert_eq!(flow2["settlement"]["Partial"]["residual"], 100, "{flow2}");
    let credits = r["credits"].as_array().unwrap();
    let unexplained: Vec<&Value> = credits
        .iter()
        .filter(|c| c["label"] == "TES_NO_IUF_OR_IUV")
        .collect();
    assert_eq!(unexplained.len(), 1, "{r}");
    assert_eq!(unexplained[0]["credit"]["amountCents"], 4_242);
    assert_eq!(r["totals"]["RT_IUF_TES"][0], 2);

    // the same as CSV for the treasury's spreadsheet
    let csv = app
        .client
        .get(format!(
            "{}/api/v1/organizations/{ORG_A}/reconciliation?format=csv",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("tipo;etichetta;flusso;"), "{csv}");
    assert!(
        csv.contains(&format!(
            "PAGAMENTO;RT_IUF_TES;{f1};{};{};1;120,00;",
            a.iuv, a.receipt_id
        )),
        "{csv}"
    );
    assert!(
        csv.contains("ACCREDITO;TES_NO_IUF_OR_IUV;;;;;42,42;2026-07-03;REF-3;BONIFICO DA PRIVATO"),
        "{csv}"
    );

    // a file that is not a flow: 422, kept for inspection; the flows stay as they were
    let bad = upload(&app, "fdrs/import", "junk.xml", "<a>not a flow</a>".into()).await;
    assert_eq!(bad.status(), 422);
    let rejected = app.store.reconciliation.rejected(ORG_A).unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].name, "junk.xml");
    // a big refused file is kept only in part: its beginning says what it was
    let big = upload(&app, "fdrs/import", "big.txt", "x".repeat(300_000)).await;
    assert_eq!(big.status(), 422);
    let rejected = app.store.reconciliation.rejected(ORG_A).unwrap();
    let kept = rejected.iter().find(|r| r.name == "big.txt").unwrap();
    assert_eq!(
        kept.content.len(),
        mpay_storage::reconciliation::MAX_REJECTED_BYTES
    );
    let listed: Value = app
        .client
        .get(format!("{}/api/v1/organizations/{ORG_A}/fdrs", app.base))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["flows"].as_array().unwrap().len(), 2);

    // no [fdr] base_url: flows come from files only, and the sync says so
    let sync = app
        .client
        .post(format!(
            "{}/api/v1/organizations/{ORG_A}/fdrs/sync",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(sync.status(), 409);
    assert!(sync.text().await.unwrap().contains("FDR_NOT_CONFIGURED"));

    // another organization's key reads nothing of this one
    let other = app
        .client
        .get(format!(
            "{}/api/v1/organizations/{ORG_A}/reconciliation",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", common::KEY_B)
        .send()
        .await
        .unwrap();
    assert!(
        matches!(other.status().as_u16(), 401 | 403),
        "{}",
        other.status()
    );
}

/// `mpay fdr import|list`, `mpay bank import`, `mpay recon run` on a stopped node (the demo
/// organization): the same imports as the REST API, a refused file exits 1.
#[test]
fn the_commands_import_and_reconcile_on_a_stopped_node() {
    const BIN: &str = env!("CARGO_BIN_EXE_mpay");
    const DEMO: &str = "80001234568";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .args(["--demo", "--data-dir", data.to_str().unwrap()])
            .env("MPAY_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let flow = flow_xml(
        "2026-07-0388888888888-S0000009",
        &[
            ("01000000000000042".into(), "IUR-1".into(), 1, 1_500, "0"),
            ("01000000000000043".into(), "IUR-2".into(), 1, 250, "8"),
        ],
    )
    .replace(ORG_A, DEMO);
    let flow_file = dir.path().join("flow.xml");
    std::fs::write(&flow_file, flow).unwrap();
    let f = flow_file.to_str().unwrap();
    let (code, out, err) = run(&["fdr", "import", "--org", DEMO, f]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("New") && out.contains("17.50 EUR"), "{out}");
    let (code, out, _) = run(&["fdr", "import", "--org", DEMO, f]);
    assert_eq!(code, Some(0));
    assert!(out.contains("Unchanged"), "{out}");
    let junk = dir.path().join("junk.xml");
    std::fs::write(&junk, "<a/>").unwrap();
    let (code, out, _) = run(&["fdr", "import", "--org", DEMO, junk.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(out.contains("REFUSED"), "{out}");
    let statement = dir.path().join("camt.xml");
    std::fs::write(
        &statement,
        camt(&[(
            "REF-9",
            1_750,
            "/PUR/LGPE-RIVERSAMENTO/URI/2026-07-0388888888888-S0000009".into(),
        )])
        .replace(IBAN_A, "IT60X0542811101000000123456"),
    )
    .unwrap();
    let (code, out, err) = run(&["bank", "import", "--org", DEMO, statement.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("1 credits (1 new"), "{out}");
    let (code, out, _) = run(&["fdr", "list", "--org", DEMO]);
    assert_eq!(code, Some(0));
    assert!(out.contains("S0000009") && out.contains("Settled"), "{out}");
    let (code, out, _) = run(&["recon", "run", "--org", DEMO]);
    assert_eq!(code, Some(0));
    // no receipts in this store: both rows are reported without one
    assert!(
        out.contains("IUV_NO_RT") && out.contains("01000000000000043"),
        "{out}"
    );
    let (code, _, err) = run(&["recon", "run", "--org", "12345678901"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not configured"), "{err}");
}

/// pagoPA's FdR API as the test plays it: flows of (fdr, psp, revision, published, rows), a set
/// of flows whose header answers 500, and the `publishedGt` values asked.
/// A published flow: (fdr, revision, published, rows of (iuv, iur, cents)).
type PublishedFlow = (String, u32, String, Vec<(String, String, i64)>);

#[derive(Default)]
struct FdrApiState {
    flows: Vec<PublishedFlow>,
    failing: std::collections::HashSet<String>,
    /// Flows whose header names another receiver than the organization asked about.
    other_receiver: std::collections::HashSet<String>,
    published_gt: Vec<Option<String>>,
}

type Shared = std::sync::Arc<std::sync::Mutex<FdrApiState>>;

fn page_of<T: Clone>(items: &[T], page: usize, size: usize) -> (Vec<T>, usize) {
    let total = items.len().div_ceil(size).max(1);
    let from = (page - 1) * size;
    (items.iter().skip(from).take(size).cloned().collect(), total)
}

async fn fdr_list(
    st: actix_web::web::Data<Shared>,
    q: actix_web::web::Query<std::collections::HashMap<String, String>>,
) -> actix_web::HttpResponse {
    let mut st = st.lock().unwrap();
    let gt = q.get("publishedGt").cloned();
    if q.get("page").map(String::as_str) == Some("1") {
        st.published_gt.push(gt.clone());
    }
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let size: usize = q.get("size").and_then(|p| p.parse().ok()).unwrap_or(1000);
    let listed: Vec<Value> = st
        .flows
        .iter()
        .filter(|f| gt.as_ref().is_none_or(|g| f.2 > *g))
        .map(|f| {
            serde_json::json!({"fdr": f.0, "pspId": "88888888888", "revision": f.1,
            "published": f.2, "flowDate": "2026-07-04T06:30:00Z"})
        })
        .collect();
    let (data, total) = page_of(&listed, page, size);
    actix_web::HttpResponse::Ok().json(serde_json::json!({
        "metadata": {"pageSize": size, "pageNumber": page, "totPage": total},
        "count": listed.len(), "data": data}))
}

async fn fdr_flow(
    st: actix_web::web::Data<Shared>,
    path: actix_web::web::Path<(String, String, u32, String)>,
) -> actix_web::HttpResponse {
    let (org, fdr, rev, psp) = path.into_inner();
    let st = st.lock().unwrap();
    if st.failing.contains(&fdr) {
        return actix_web::HttpResponse::InternalServerError()
            .json(serde_json::json!({"appErrorCode": "FDR-0500", "title": "boom"}));
    }
    let Some(f) = st.flows.iter().find(|f| f.0 == fdr && f.1 == rev) else {
        return actix_web::HttpResponse::NotFound()
            .json(serde_json::json!({"appErrorCode": "FDR-3001"}));
    };
    let sum: i64 = f.3.iter().map(|r| r.2).sum();
    let org = if st.other_receiver.contains(&fdr) {
        "99999999999".to_string()
    } else {
        org
    };
    actix_web::HttpResponse::Ok().json(serde_json::json!({
        "status": "PUBLISHED", "revision": rev, "fdr": fdr, "fdrDate": "2026-07-04T06:30:00Z",
        "regulation": "TRN-1", "regulationDate": "2026-07-03",
        "sender": {"type": "LEGAL_PERSON", "id": psp, "pspId": psp, "pspName": "PSP di Prova"},
        "receiver": {"id": org, "organizationId": org, "organizationName": "Comune"},
        "totPayments": f.3.len(), "sumPayments": serde_json::from_str::<Value>(&euros(sum)).unwrap()}))
}

async fn fdr_payments(
    st: actix_web::web::Data<Shared>,
    path: actix_web::web::Path<(String, String, u32, String)>,
    q: actix_web::web::Query<std::collections::HashMap<String, String>>,
) -> actix_web::HttpResponse {
    let (_, fdr, rev, _) = path.into_inner();
    let st = st.lock().unwrap();
    let Some(f) = st.flows.iter().find(|f| f.0 == fdr && f.1 == rev) else {
        return actix_web::HttpResponse::NotFound().finish();
    };
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let size: usize = q.get("size").and_then(|p| p.parse().ok()).unwrap_or(1000);
    let rows: Vec<Value> =
        f.3.iter()
            .enumerate()
            .map(|(i, r)| {
                // `pay` is a JSON number written as pagoPA does (130.0): read from its text
                let pay: Value =
                    serde_json::from_str(&format!("{}.{:02}", r.2 / 100, r.2 % 100)).unwrap();
                serde_json::json!({"index": i + 1, "iuv": r.0, "iur": r.1, "idTransfer": 1,
                "pay": pay, "payStatus": "EXECUTED", "payDate": "2026-07-02T23:30:00Z"})
            })
            .collect();
    let (data, total) = page_of(&rows, page, size);
    actix_web::HttpResponse::Ok().json(serde_json::json!({
        "metadata": {"pageSize": size, "pageNumber": page, "totPage": total},
        "count": rows.len(), "data": data}))
}

/// Flows downloaded from the FdR API: paging of the list and of the payments, a flow whose
/// header fails is fetched again at the next sync (the cursor waits for it), a higher revision
/// supersedes the earlier one, nothing is fetched twice.
#[actix_rt::test]
async fn flows_are_downloaded_from_the_fdr_api_with_a_cursor_and_revisions() {
    let shared: Shared = Default::default();
    let data = actix_web::web::Data::new(shared.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .route(
                "/organizations/{org}/fdrs",
                actix_web::web::get().to(fdr_list),
            )
            .route(
                "/organizations/{org}/fdrs/{fdr}/revisions/{rev}/psps/{psp}",
                actix_web::web::get().to(fdr_flow),
            )
            .route(
                "/organizations/{org}/fdrs/{fdr}/revisions/{rev}/psps/{psp}/payments",
                actix_web::web::get().to(fdr_payments),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);

    let app = spawn_app_with(&format!(
        "\n[fdr]\nbase_url = \"http://127.0.0.1:{port}/\"\npage_size = 1\n"
    ))
    .await;
    let a = create_and_pay(&app, "SYNC-1", 13_000).await;
    let b = create_and_pay(&app, "SYNC-2", 29).await;
    let c = create_and_pay(&app, "SYNC-3", 700).await;
    let (f1, f2) = (
        "2026-07-0388888888888-S0000101",
        "2026-07-0388888888888-S0000102",
    );
    {
        let mut st = shared.lock().unwrap();
        st.flows.push((
            f1.into(),
            1,
            "2026-07-04T06:31:00Z".into(),
            vec![
                (a.iuv.clone(), a.receipt_id.clone(), a.cents),
                (b.iuv.clone(), b.receipt_id.clone(), b.cents),
            ],
        ));
        st.flows.push((
            f2.into(),
            1,
            "2026-07-04T07:00:00Z".into(),
            vec![(c.iuv.clone(), c.receipt_id.clone(), c.cents)],
        ));
        st.failing.insert(f2.into());
    }
    let sync = || async {
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
        r.json::<Value>().await.unwrap()
    };
    let first = sync().await;
    assert_eq!(first["listed"], 2, "{first}");
    assert_eq!(first["stored"], 1, "{first}");
    assert_eq!(first["failed"][0]["fdr"], f2, "{first}");
    assert!(
        first["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"),
        "{first}"
    );
    assert_eq!(first["cursor"], "2026-07-04T06:31:00Z");
    let r = report(&app).await;
    assert_eq!(label_of(&r, &a.receipt_id), "RT_IUF");
    assert_eq!(
        label_of(&r, &b.receipt_id),
        "RT_IUF",
        "amount 0.29 read exactly from the JSON number"
    );
    assert_eq!(label_of(&r, &c.receipt_id), "RT_NO_IUF");

    // the failing flow is back, and the PSP republishes the first as revision 2
    {
        let mut st = shared.lock().unwrap();
        st.failing.clear();
        st.flows.push((
            f1.into(),
            2,
            "2026-07-05T06:00:00Z".into(),
            vec![
                (a.iuv.clone(), a.receipt_id.clone(), a.cents),
                (b.iuv.clone(), b.receipt_id.clone(), b.cents),
            ],
        ));
    }
    let second = sync().await;
    assert_eq!(
        second["listed"], 2,
        "only what was published after the cursor: {second}"
    );
    assert_eq!(second["stored"], 2, "{second}");
    assert_eq!(second["revisions"], 1, "{second}");
    assert_eq!(second["cursor"], "2026-07-05T06:00:00Z");
    let r = report(&app).await;
    assert_eq!(label_of(&r, &c.receipt_id), "RT_IUF");
    let flows = r["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 2, "{r}");
    assert!(
        flows
            .iter()
            .any(|f| f["flowId"] == f1 && f["revision"] == 2),
        "{r}"
    );
    assert_eq!(
        app.store.reconciliation.revisions(ORG_A, f1).unwrap().len(),
        2,
        "every revision kept"
    );

    let third = sync().await;
    assert_eq!(
        (third["listed"].as_i64(), third["stored"].as_i64()),
        (Some(0), Some(0)),
        "{third}"
    );
    // the ReconciliationWorker heard fdr.acquired: the reported options reach PO_REPORTED
    // through the domain's rule, its run is recorded and shown with the report
    for iupd in ["SYNC-1", "SYNC-2", "SYNC-3"] {
        app.wait_for("the position reported", || async {
            let p: Value = app
                .get(ORG_A, KEY_A, &format!("/{iupd}"))
                .await
                .json()
                .await
                .unwrap();
            p["status"] == "REPORTED" && p["paymentOption"][0]["status"] == "PO_REPORTED"
        })
        .await;
    }
    app.wait_for("the worker's run recorded", || async {
        let r = report(&app).await;
        r["lastRun"]["payments"] == 3 && r["lastRun"]["rowsWithoutReceipt"] == 0
    })
    .await;
    let actors: Value = app
        .client
        .get(format!("{}/health/actors", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        actors.to_string().contains("ReconciliationWorker"),
        "{actors}"
    );
    // receipts past D+2 without a flow: none of the reported ones; a new payment only once its
    // deadline is over
    let d = create_and_pay(&app, "SYNC-4", 1_500).await;
    let unreported = |as_of: String| {
        let app = &app;
        async move {
            let r = app
                .client
                .get(format!(
                    "{}/api/v1/organizations/{ORG_A}/reconciliation/unreported?asOf={as_of}",
                    app.base
                ))
                .header("Ocp-Apim-Subscription-Key", KEY_A)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let today = mpay_messages::time::rome_today();
    let now = unreported(today.to_string()).await;
    assert_eq!(now["count"], 0, "{now}");
    let later = unreported((today + chrono::Duration::days(10)).to_string()).await;
    assert_eq!(later["count"], 1, "{later}");
    assert_eq!(later["receipts"][0]["receiptId"], d.receipt_id, "{later}");
    let deadline: chrono::NaiveDate =
        serde_json::from_value(later["receipts"][0]["deadline"].clone()).unwrap();
    assert!(deadline >= today + chrono::Duration::days(2), "{later}");
    let bad = app
        .client
        .get(format!(
            "{}/api/v1/organizations/{ORG_A}/reconciliation/unreported?asOf=yesterday",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let asked = shared.lock().unwrap().published_gt.clone();
    assert_eq!(
        asked,
        vec![
            None,
            Some("2026-07-04T06:31:00Z".into()),
            Some("2026-07-05T06:00:00Z".into())
        ]
    );
    // a flow addressed to an organization we do not serve, listed before a normal one: stored
    // and flagged, never reconciled against our receipts, never in the way of the next flow
    let (f3, f4) = (
        "2026-07-0688888888888-S0000103",
        "2026-07-0688888888888-S0000104",
    );
    {
        let mut st = shared.lock().unwrap();
        st.flows.push((
            f3.into(),
            1,
            "2026-07-06T06:00:00Z".into(),
            vec![("01000000000000099".into(), "IUR-X".into(), 1_000)],
        ));
        st.other_receiver.insert(f3.into());
        st.flows.push((
            f4.into(),
            1,
            "2026-07-06T07:00:00Z".into(),
            vec![(d.iuv.clone(), d.receipt_id.clone(), d.cents)],
        ));
    }
    let fourth = sync().await;
    assert_eq!(fourth["stored"], 2, "{fourth}");
    assert_eq!(fourth["flagged"], 1, "{fourth}");
    assert_eq!(fourth["failed"].as_array().unwrap().len(), 0, "{fourth}");
    assert_eq!(fourth["cursor"], "2026-07-06T07:00:00Z");
    let r = report(&app).await;
    let other = r["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["flowId"] == f3)
        .unwrap_or_else(|| panic!("{r}"));
    assert!(other["flags"].to_string().contains("99999999999"), "{r}");
    assert!(
        !r["rowsWithoutReceipt"].to_string().contains("IUR-X"),
        "its rows are not ours: {r}"
    );
    assert_eq!(label_of(&r, &d.receipt_id), "RT_IUF");
    handle.stop(true).await;
}
