//! Reconciliation exports (issue 14, "Surfaces"): the download of each kind in CSV and XLSX
//! (the XLSX opened with `calamine`, amounts read as numbers), bad parameters answered with a
//! problem naming them, another organization's key refused; the daily batch delivering one
//! business day to a real SMTP server (`tests/smtp_sink.py`) and a real FTP server (libunftp
//! on a folder) exactly once across a restart of the store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use chrono::NaiveDate;
use common::smtp::{messages, SmtpSink};
use common::{position_body, spawn_app, TestApp, IBAN_A, KEY_A, KEY_B, ORG_A};
use serde_json::Value;

fn euros(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A FlussoRiversamento regulated on `day` with rows `(iuv, iur, index, cents, code)`.
fn flow_xml(id: &str, day: NaiveDate, rows: &[(String, String, u8, i64, &str)]) -> String {
    let total: i64 = rows.iter().map(|r| r.3).sum();
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><pag:FlussoRiversamento xmlns:pag=\"http://www.digitpa.gov.it/schemas/2011/Pagamenti/\">\
<pag:versioneOggetto>1.0</pag:versioneOggetto><pag:identificativoFlusso>{id}</pag:identificativoFlusso>\
<pag:dataOraFlusso>{day}T08:30:00</pag:dataOraFlusso><pag:identificativoUnivocoRegolamento>TRN-{id}</pag:identificativoUnivocoRegolamento>\
<pag:dataRegolamento>{day}</pag:dataRegolamento><pag:istitutoMittente><pag:identificativoUnivocoMittente>\
<pag:tipoIdentificativoUnivoco>B</pag:tipoIdentificativoUnivoco><pag:codiceIdentificativoUnivoco>PSPXITXXXXX</pag:codiceIdentificativoUnivoco>\
</pag:identificativoUnivocoMittente><pag:denominazioneMittente>PSP di Prova</pag:denominazioneMittente></pag:istitutoMittente>\
<pag:istitutoRicevente><pag:identificativoUnivocoRicevente><pag:tipoIdentificativoUnivoco>G</pag:tipoIdentificativoUnivoco>\
<pag:codiceIdentificativoUnivoco>{ORG_A}</pag:codiceIdentificativoUnivoco></pag:identificativoUnivocoRicevente></pag:istitutoRicevente>\
<pag:numeroTotalePagamenti>{n}</pag:numeroTotalePagamenti><pag:importoTotalePagamenti>{t}</pag:importoTotalePagamenti>",
        n = rows.len(),
        t = euros(total)
    );
    for (iuv, iur, idx, cents, code) in rows {
        x.push_str(&format!(
            "<pag:datiSingoliPagamenti><pag:identificativoUnivocoVersamento>{iuv}</pag:identificativoUnivocoVersamento>\
<pag:identificativoUnivocoRiscossione>{iur}</pag:identificativoUnivocoRiscossione><pag:indiceDatiSingoloPagamento>{idx}</pag:indiceDatiSingoloPagamento>\
<pag:singoloImportoPagato>{a}</pag:singoloImportoPagato><pag:codiceEsitoSingoloPagamento>{code}</pag:codiceEsitoSingoloPagamento>\
<pag:dataEsitoSingoloPagamento>{day}</pag:dataEsitoSingoloPagamento></pag:datiSingoliPagamenti>",
            a = euros(*cents)
        ));
    }
    x.push_str("</pag:FlussoRiversamento>");
    x
}

/// A camt.053 with one booked credit of `cents` whose remittance names `flow`.
fn camt(flow: &str, cents: i64, day: NaiveDate) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.053.001.02\"><BkToCstmrStmt>\
<GrpHdr><MsgId>M1</MsgId><CreDtTm>{day}T02:00:00</CreDtTm></GrpHdr><Stmt><Id>S1</Id><CreDtTm>{day}T02:00:00</CreDtTm>\
<Acct><Id><IBAN>{IBAN_A}</IBAN></Id></Acct>\
<Ntry><Amt Ccy=\"EUR\">{a}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><BookgDt><Dt>{day}</Dt></BookgDt>\
<ValDt><Dt>{day}</Dt></ValDt><AcctSvcrRef>REF-{flow}</AcctSvcrRef><NtryDtls><TxDtls><Refs><EndToEndId>E2E-{flow}</EndToEndId></Refs>\
<RmtInf><Ustrd>/PUR/LGPE-RIVERSAMENTO/URI/{flow}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry></Stmt></BkToCstmrStmt></Document>",
        a = euros(cents)
    )
}

async fn upload(app: &TestApp, what: &str, name: &str, body: String) {
    let r = app
        .client
        .post(format!("{}/api/v1/organizations/{ORG_A}/{what}", app.base))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .header("X-File-Name", name)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

async fn get_export(app: &TestApp, key: &str, kind: &str, query: &str) -> reqwest::Response {
    app.client
        .get(format!(
            "{}/api/v1/organizations/{ORG_A}/reconciliation/exports/{kind}?{query}",
            app.base
        ))
        .header("Ocp-Apim-Subscription-Key", key)
        .send()
        .await
        .unwrap()
}

/// The sheet `name` of an XLSX as rows of cells.
fn sheet(bytes: &[u8], name: &str) -> Vec<Vec<Data>> {
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes.to_vec())).unwrap();
    let range = book.worksheet_range(name).unwrap();
    range.rows().map(<[Data]>::to_vec).collect()
}

fn text(d: &Data) -> String {
    match d {
        Data::String(s) => s.clone(),
        Data::Empty => String::new(),
        other => other.to_string(),
    }
}

fn col(header: &[Data], name: &str) -> usize {
    header
        .iter()
        .position(|h| text(h) == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

#[actix_rt::test]
async fn each_export_downloads_as_csv_and_xlsx_with_exact_amounts() {
    let app = spawn_app().await;
    let mut paid = Vec::new();
    for (iupd, cents) in [("EXP-1", 12_000_i64), ("EXP-2", 1_029)] {
        let r = app
            .post(ORG_A, KEY_A, "?toPublish=true", &position_body(iupd, cents))
            .await;
        assert_eq!(r.status(), 201);
        let created: Value = r.json().await.unwrap();
        let nav = created["paymentOption"][0]["nav"]
            .as_str()
            .unwrap()
            .to_string();
        let p = common::pay_notice(&app.client, &app.base, ORG_A, &nav).await;
        paid.push((p.iuv, p.receipt_id, cents));
    }
    let today = mpay_messages::time::rome_today();
    let mut rows: Vec<(String, String, u8, i64, &str)> = paid
        .iter()
        .map(|(iuv, rid, cents)| (iuv.clone(), rid.clone(), 1, *cents, "0"))
        .collect();
    // a row no receipt explains
    rows.push((
        "RF99000000000000000000001".into(),
        "IUR-X".into(),
        1,
        250,
        "9",
    ));
    let flow = format!("{today}88888888888-S0000001");
    upload(
        &app,
        "fdrs/import",
        "flow.xml",
        flow_xml(&flow, today, &rows),
    )
    .await;
    upload(
        &app,
        "bank-statements",
        "camt.xml",
        camt(&flow, 13_279, today),
    )
    .await;

    let period = format!(
        "from={}&to={}",
        today - chrono::Duration::days(30),
        today + chrono::Duration::days(1)
    );
    // payments, CSV: `;`, decimal comma, the label of each receipt
    let r = get_export(&app, KEY_A, "payments", &format!("{period}&format=csv")).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(&format!("pagamenti-{ORG_A}-")));
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "dataPagamento;IUV;IUR;indiceTrasferimento;importo;etichetta;identificativoFlusso;avvisi"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    for (iuv, rid, cents) in &paid {
        let line = lines
            .iter()
            .find(|l| l.contains(rid.as_str()))
            .unwrap_or_else(|| panic!("{rid} not in {csv}"));
        let cells: Vec<&str> = line.split(';').collect();
        assert_eq!(cells[1], iuv);
        assert_eq!(cells[4], format!("{},{:02}", cents / 100, cents % 100));
        assert_eq!(cells[5], "RT_IUF_TES");
        assert_eq!(cells[6], flow);
    }

    // payments, XLSX: the amounts are numbers
    let r = get_export(&app, KEY_A, "payments", &format!("{period}&format=xlsx")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let rows_x = sheet(&r.bytes().await.unwrap(), "Pagamenti");
    assert_eq!(rows_x.len(), 3);
    let (c_iur, c_amount, c_label) = (
        col(&rows_x[0], "IUR"),
        col(&rows_x[0], "importo"),
        col(&rows_x[0], "etichetta"),
    );
    for (_, rid, cents) in &paid {
        let row = rows_x.iter().find(|r| text(&r[c_iur]) == *rid).unwrap();
        assert_eq!(row[c_amount], Data::Float(*cents as f64 / 100.0));
        assert_eq!(text(&row[c_label]), "RT_IUF_TES");
    }
    // the payment day is a date cell
    assert!(
        matches!(rows_x[1][0], Data::DateTime(_)),
        "{:?}",
        rows_x[1][0]
    );

    // flows: one line per row, the flow's totals and settlement on each
    let r = get_export(&app, KEY_A, "flows", &format!("{period}&format=xlsx")).await;
    assert_eq!(r.status(), 200);
    let f = sheet(&r.bytes().await.unwrap(), "Flussi");
    assert_eq!(f.len(), 4, "{f:?}");
    let h = &f[0];
    for row in &f[1..] {
        assert_eq!(text(&row[col(h, "identificativoFlusso")]), flow);
        assert_eq!(row[col(h, "importoTotalePagamenti")], Data::Float(132.79));
        assert_eq!(row[col(h, "importoAccreditato")], Data::Float(132.79));
        assert_eq!(text(&row[col(h, "statoSquadratura")]), "QUADRATO");
    }
    let unknown = f
        .iter()
        .find(|r| text(&r[col(h, "IUV")]) == "RF99000000000000000000001")
        .unwrap();
    assert_eq!(unknown[col(h, "importo")], Data::Float(2.5));
    assert_eq!(text(&unknown[col(h, "esitoPagamento")]), "9");
    let r = get_export(&app, KEY_A, "flows", &period).await;
    assert_eq!(r.status(), 200);
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("identificativoFlusso;revisione;dataRegolamento;"));
    assert_eq!(csv.lines().count(), 4);
    assert!(csv.contains(";132,79;132,79;QUADRATO;"), "{csv}");

    // reconciliation: per day / flow / label, then the totals
    let r = get_export(
        &app,
        KEY_A,
        "reconciliation",
        &format!("{period}&format=csv"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("giorno;identificativoFlusso;etichetta;numero;importo\n"));
    assert!(csv.contains("TOTALE;;RT_IUF_TES;2;130,29"), "{csv}");
    assert!(
        csv.contains(&format!("{today};{flow};IUV_NO_RT;1;2,50")),
        "{csv}"
    );
    let r = get_export(
        &app,
        KEY_A,
        "reconciliation",
        &format!("{period}&format=xlsx"),
    )
    .await;
    let t = sheet(&r.bytes().await.unwrap(), "Riconciliazione");
    let total = t
        .iter()
        .find(|r| text(&r[0]) == "TOTALE" && text(&r[2]) == "RT_IUF_TES")
        .unwrap();
    assert_eq!(total[3], Data::Float(2.0));
    assert_eq!(total[4], Data::Float(130.29));

    // documented in the OpenAPI
    let spec: Value = app
        .client
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = &spec["paths"]
        ["/api/v1/organizations/{organizationfiscalcode}/reconciliation/exports/{kind}"];
    assert!(path["get"].is_object(), "{path}");

    // a period before everything: a header only
    let r = get_export(&app, KEY_A, "payments", "from=2020-01-01&to=2020-01-31").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap().lines().count(), 1);

    // bad parameters: a problem naming each
    for (kind, query, field) in [
        ("receipts", "from=2026-01-01&to=2026-01-31", "kind"),
        ("payments", "to=2026-01-31", "from"),
        ("payments", "from=2026-01-01", "to"),
        ("payments", "from=2026-02-30&to=2026-03-31", "from"),
        ("payments", "from=2026-03-01&to=2026-02-01", "to"),
        ("payments", "from=2024-01-01&to=2026-01-01", "to"),
        (
            "payments",
            "from=2026-01-01&to=2026-01-31&format=pdf",
            "format",
        ),
        ("payments", "from=2026-01-01&to=2026-01-31&fmt=csv", "fmt"),
    ] {
        let r = get_export(&app, KEY_A, kind, query).await;
        assert_eq!(r.status(), 400, "{kind}?{query}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("problem+json"));
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["errors"][0]["field"], field, "{kind}?{query}: {p}");
    }
    // another organization's key reads nothing of this one
    let r = get_export(&app, KEY_B, "payments", &period).await;
    assert_eq!(r.status(), 403);
    let r = get_export(&app, "no-such-key", "payments", &period).await;
    assert!(matches!(r.status().as_u16(), 401 | 403), "{}", r.status());
}

/// A plain FTP server (libunftp on a folder, any user) on `port`.
fn start_ftp(root: std::path::PathBuf, port: u16) {
    let server = libunftp::ServerBuilder::new(Box::new(move || {
        unftp_sbe_fs::Filesystem::new(root.clone()).unwrap()
    }))
    .greeting("test FTP")
    .build()
    .unwrap();
    actix_rt::spawn(async move {
        let _ = server.listen(format!("127.0.0.1:{port}")).await;
    });
}

#[actix_rt::test]
async fn the_daily_batch_mails_and_uploads_yesterday_once_across_a_restart() {
    use mpay_actors::export_batch::{ExportBatch, ExportBatchSettings, FtpTarget, OrgExports};
    use mpay_actors::mailer::{SmtpSecurity, SmtpSettings};
    let dir = tempfile::tempdir().unwrap();
    let (mail_out, ftp_root, data) = (
        dir.path().join("mail"),
        dir.path().join("ftp"),
        dir.path().join("store"),
    );
    std::fs::create_dir_all(&ftp_root).unwrap();
    let smtp_port = common::free_port();
    let _sink = SmtpSink::start(smtp_port, &mail_out);
    let ftp_port = common::free_port();
    start_ftp(ftp_root.clone(), ftp_port);

    let yesterday = mpay_messages::time::rome_today().pred_opt().unwrap();
    let flow = format!("{yesterday}88888888888-S0000042");
    {
        let store = mpay_storage::Store::open(&data).unwrap();
        let xml = flow_xml(
            &flow,
            yesterday,
            &[(
                "RF18000000000000000000042".into(),
                "IUR-42".into(),
                1,
                4_250,
                "0",
            )],
        );
        store
            .reconciliation
            .import_flow_file(ORG_A, "day.xml", xml.as_bytes(), chrono::Utc::now())
            .unwrap();
        store.flush_blocking().unwrap();
    }
    let settings = ExportBatchSettings {
        hour: 0,
        check_every: std::time::Duration::from_secs(3600),
        smtp: Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port: smtp_port,
            security: SmtpSecurity::Plain,
            from: "Riconciliazione <mpay@borgo-demo.example.it>".into(),
            credentials: None,
            ca_pem: None,
            hello_name: "mpay-test".into(),
            timeout: std::time::Duration::from_secs(5),
        }),
        organizations: vec![OrgExports {
            organization: ORG_A.into(),
            email_to: vec!["tesoreria@borgo-demo.example.it".into()],
            ftp: Some(
                FtpTarget::parse(
                    &format!("ftp://ente@127.0.0.1:{ftp_port}/"),
                    Some("secret".to_string().into()),
                )
                .unwrap(),
            ),
            kinds: vec!["flows".into(), "reconciliation".into()],
            formats: vec!["csv".into(), "xlsx".into()],
        }],
    };
    let names = [
        format!("flussi-{ORG_A}-{yesterday}-{yesterday}.csv"),
        format!("flussi-{ORG_A}-{yesterday}-{yesterday}.xlsx"),
        format!("riconciliazione-{ORG_A}-{yesterday}-{yesterday}.csv"),
        format!("riconciliazione-{ORG_A}-{yesterday}-{yesterday}.xlsx"),
    ];

    let open_batch = |store: &mpay_storage::Store, health: &mpay_actors::health::HealthRegistry| {
        ExportBatch::manual(
            settings.clone(),
            mpay::recon_cli::export_render(),
            store,
            health,
        )
    };

    // first run: one e-mail with the four files, the four files on the FTP server
    {
        let store = mpay_storage::Store::open(&data).unwrap();
        let health = mpay_actors::health::HealthRegistry::new();
        let batch = open_batch(&store, &health);
        let done = batch.run_due(chrono::Utc::now()).await;
        assert_eq!(done.len(), 1);
        assert!(done[0].emailed_at.is_some(), "{:?}", done[0]);
        assert!(done[0].uploaded_at.is_some(), "{:?}", done[0]);
        assert_eq!(done[0].last_error, None);
        store.flush_blocking().unwrap();
    }
    let mails = messages(&mail_out);
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["rcptTos"][0], "tesoreria@borgo-demo.example.it");
    let attached: Vec<String> = mails[0]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["filename"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(attached, names.to_vec());
    // the attachment is the export: the flow's row with its amount
    let csv_hex = mails[0]["attachments"][0]["hex"].as_str().unwrap();
    let csv = String::from_utf8(
        (0..csv_hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&csv_hex[i..i + 2], 16).unwrap())
            .collect(),
    )
    .unwrap();
    assert!(csv.contains(&flow) && csv.contains(";42,50;"), "{csv}");
    for n in &names {
        let uploaded = std::fs::read(ftp_root.join(n)).unwrap();
        assert!(!uploaded.is_empty());
    }
    let xlsx = std::fs::read(ftp_root.join(&names[1])).unwrap();
    let f = sheet(&xlsx, "Flussi");
    assert_eq!(f[1][col(&f[0], "importo")], Data::Float(42.5));
    for n in &names {
        std::fs::remove_file(ftp_root.join(n)).unwrap();
    }

    // "restart": the store opened again, a new batch: nothing sent twice
    {
        let store = mpay_storage::Store::open(&data).unwrap();
        let health = mpay_actors::health::HealthRegistry::new();
        let batch = open_batch(&store, &health);
        let done = batch.run_due(chrono::Utc::now()).await;
        assert_eq!(done.len(), 1);
        let recorded = store
            .reconciliation
            .export_delivery(ORG_A, yesterday)
            .unwrap()
            .unwrap();
        assert_eq!(recorded.files.len(), 4);
        assert_eq!(done[0], recorded);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(messages(&mail_out).len(), 1);
    assert_eq!(std::fs::read_dir(&ftp_root).unwrap().count(), 0);

    // the node was stopped for two more days: the next batch exports both missed days, oldest
    // first, each once
    {
        let store = mpay_storage::Store::open(&data).unwrap();
        let health = mpay_actors::health::HealthRegistry::new();
        let batch = open_batch(&store, &health);
        let later = chrono::Utc::now() + chrono::Duration::days(2);
        let done = batch.run_due(later).await;
        let days: Vec<_> = done.iter().map(|d| d.day.unwrap()).collect();
        let next = yesterday.succ_opt().unwrap();
        assert_eq!(days, vec![next, next.succ_opt().unwrap()]);
        assert!(done
            .iter()
            .all(|d| d.emailed_at.is_some() && d.uploaded_at.is_some()));
        let again = batch.run_due(later).await;
        assert_eq!(
            again.len(),
            1,
            "only the due day is looked at again: {again:?}"
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(messages(&mail_out).len(), 3, "one e-mail per missed day");
}

/// `mpay recon export` and `mpay fdr sync` on a stopped node (the demo organization).
#[test]
fn the_export_and_sync_commands_run_on_a_stopped_node() {
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
    let day = NaiveDate::from_ymd_opt(2026, 7, 3).unwrap();
    let flow = flow_xml(
        "2026-07-0388888888888-S0000077",
        day,
        &[("01000000000000077".into(), "IUR-77".into(), 1, 1_999, "0")],
    )
    .replace(ORG_A, DEMO);
    let flow_file = dir.path().join("flow.xml");
    std::fs::write(&flow_file, flow).unwrap();
    let (code, out, err) = run(&["fdr", "import", "--org", DEMO, flow_file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");

    let xlsx = dir.path().join("flussi.xlsx");
    let (code, out, err) = run(&[
        "recon",
        "export",
        "--org",
        DEMO,
        "--kind",
        "flows",
        "--from",
        "2026-07-01",
        "--to",
        "2026-07-31",
        "--format",
        "xlsx",
        "--out",
        xlsx.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("flussi.xlsx"), "{out}");
    let f = sheet(&std::fs::read(&xlsx).unwrap(), "Flussi");
    assert_eq!(f.len(), 2);
    assert_eq!(f[1][col(&f[0], "importo")], Data::Float(19.99));
    assert_eq!(text(&f[1][col(&f[0], "IUV")]), "01000000000000077");

    let csv = dir.path().join("r.csv");
    let (code, out, err) = run(&[
        "recon",
        "export",
        "--org",
        DEMO,
        "--kind",
        "reconciliation",
        "--from",
        "2026-07-01",
        "--to",
        "2026-07-31",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let text_csv = std::fs::read_to_string(&csv).unwrap();
    assert!(
        text_csv.contains("2026-07-03;2026-07-0388888888888-S0000077;IUV_NO_RT;1;19,99"),
        "{text_csv}"
    );

    let (code, _, err) = run(&[
        "recon",
        "export",
        "--org",
        DEMO,
        "--kind",
        "receipts",
        "--from",
        "2026-07-01",
        "--to",
        "2026-07-31",
    ]);
    assert_ne!(code, Some(0));
    assert!(err.contains("--kind"), "{err}");

    // `recon run --date`: the day judged for the receipts unreported after D+2
    let (code, out, err) = run(&["recon", "run", "--org", DEMO, "--date", "2026-07-10"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("0 receipts not reported after their D+2 deadline on 2026-07-10")
            && out.contains("IUV_NO_RT"),
        "{out}"
    );

    // no FdR API in the demo configuration: said so, exit 2
    let (code, _, err) = run(&["fdr", "sync", "--org", DEMO]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("[fdr] base_url"), "{err}");
}

/// The node itself: `[organizations.exports]` and `[fdr] daily_export_hour` configured, the
/// `ExportBatch` it starts delivers yesterday's files at once by e-mail and FTP and records it.
#[actix_rt::test]
async fn a_node_with_exports_configured_delivers_yesterday_by_mail_and_ftp() {
    use mpay_config::{Settings, Sources};
    let dir = tempfile::tempdir().unwrap();
    let (mail_out, ftp_root) = (dir.path().join("mail"), dir.path().join("ftp"));
    std::fs::create_dir_all(&ftp_root).unwrap();
    let smtp_port = common::free_port();
    let _sink = SmtpSink::start(smtp_port, &mail_out);
    let ftp_port = common::free_port();
    start_ftp(ftp_root.clone(), ftp_port);
    let exports = format!(
        "[organizations.exports]\nemail_to = [\"tesoreria@borgo-demo.example.it\"]\n\
ftp_url = \"ftp://ente@127.0.0.1:{ftp_port}/\"\nftp_password = \"secret\"\n\
kinds = [\"flows\"]\nformats = [\"csv\"]\n[organizations.mpay]"
    );
    let text = format!(
        "{}\n[mail]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\n\
from = \"Riconciliazione <mpay@borgo-demo.example.it>\"\ntimeout_ms = 2000\n\
[fdr]\ndaily_export_hour = 0\n",
        common::config_text(&dir.path().join("data")).replacen("[organizations.mpay]", &exports, 1)
    );
    let cfg = dir.path().join("mpay.toml");
    std::fs::write(&cfg, text).unwrap();
    let settings = Settings::load(&Sources {
        demo: false,
        file: Some(cfg),
        env: false,
    })
    .unwrap();
    let yesterday = mpay_messages::time::rome_today().pred_opt().unwrap();
    let flow = format!("{yesterday}88888888888-S0000055");
    {
        let store = mpay_storage::Store::open(&settings.store_dir()).unwrap();
        let xml = flow_xml(
            &flow,
            yesterday,
            &[("01000000000000055".into(), "IUR-55".into(), 1, 555, "0")],
        );
        store
            .reconciliation
            .import_flow_file(ORG_A, "day.xml", xml.as_bytes(), chrono::Utc::now())
            .unwrap();
        store.flush_blocking().unwrap();
    }
    let app = mpay::app::Application::build(settings, false)
        .await
        .unwrap();
    let store = app.store.clone();
    actix_rt::spawn(async move {
        let _ = app.run_until_stopped().await;
    });
    let name = format!("flussi-{ORG_A}-{yesterday}-{yesterday}.csv");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let done = store
            .reconciliation
            .export_delivery(ORG_A, yesterday)
            .unwrap()
            .is_some_and(|d| d.emailed_at.is_some() && d.uploaded_at.is_some());
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not delivered: {:?}",
            store.reconciliation.export_delivery(ORG_A, yesterday)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mails = messages(&mail_out);
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["attachments"][0]["filename"], name.as_str());
    let uploaded = std::fs::read_to_string(ftp_root.join(&name)).unwrap();
    assert!(
        uploaded.contains(&flow) && uploaded.contains(";5,55;"),
        "{uploaded}"
    );
}
