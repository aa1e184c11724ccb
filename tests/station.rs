//! The pagoPA station end to end: the real node (temp store, random port) driven over SOAP by
//! hand-written requests and by the independent simulator `pagopa-sim` (its own XML, libxml2
//! XSD validation of every answer). The spec pack is read at run time from
//! `../shared/pagopa` (skipped loudly when absent).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mpay::app::Application;
use mpay_config::{hash_api_key, Settings, Sources};
use mpay_messages::wire::pafornode::{check_response, Operation};
use mpay_messages::{NoticeNumber, OrgFiscalCode};
use mpay_storage::{
    AnomalyKind, JournalQuery, JournalStore, ListOrder, PositionFilter, PositionRepository,
    ReceiptRepository,
};
use serde_json::{json, Value};

const ORG: &str = "77777777777";
const OTHER: &str = "80001234568";
const BROKER: &str = "99999999999";
const ST1: &str = "99999999999_01";
const ST2: &str = "99999999999_02";
const KEY: &str = "station-test-key";
const KEY_OTHER: &str = "station-test-key-other";
const IBAN: &str = "IT56B9999999999000000000001";
const POSTAL: &str = "IT32Z0760103200000099999999";
const IBAN_OTHER: &str = "IT47D0103002600000061234567";

fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("PAGOPA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pagopa"));
    if dir.join("schemas").is_dir() {
        Some(dir)
    } else {
        if std::env::var_os("MPAY_REQUIRE_SHARED").is_some_and(|v| v == "1") {
            panic!("reference material missing and MPAY_REQUIRE_SHARED=1");
        }
        eprintln!(
            "SKIPPED: pagoPA spec pack not found at {} (set PAGOPA_SHARED)",
            dir.display()
        );
        None
    }
}

fn config(data: &Path) -> String {
    format!(
        r#"
[node]
id = "station-test"
data_dir = "{data}"
[http]
bind = "127.0.0.1:0"
workers = 2
[api]
bulk_limit = 500
[broker]
fiscal_code = "{BROKER}"
[station]
body_limit_bytes = 65536
demand_due_days = 30
[journal]
batch_interval_ms = 20
[[stations]]
id = "{ST1}"
organizations = ["{ORG}"]
[[stations]]
id = "{ST2}"
organizations = ["{OTHER}"]
[[organizations]]
fiscal_code = "{ORG}"
name = "Comune di Esempio"
aux_digit = 3
segregation_code = 12
ibans = ["{IBAN}", "IT33C9999999999000000000002"]
postal_ibans = ["{POSTAL}"]
api_key_hashes = ["{k}"]
[[organizations]]
fiscal_code = "{OTHER}"
name = "Comune di Borgo Demo"
aux_digit = 3
segregation_code = 44
ibans = ["{IBAN_OTHER}"]
api_key_hashes = ["{ko}"]
[[services]]
organization = "{ORG}"
code = "TASSAAUTO"
label = "Tassa automobilistica"
category = "9/0101002IM/"
iban = "{IBAN}"
demand_service_id = "00001"
amount = {{ kind = "fixed", cents = 18740 }}
"#,
        data = data.display(),
        k = hash_api_key(KEY),
        ko = hash_api_key(KEY_OTHER),
    )
}

struct Node {
    base: String,
    client: reqwest::Client,
    store: mpay_storage::Store,
    dir: tempfile::TempDir,
    /// Every answer received, for one libxml2 validation pass at the end.
    answers: std::cell::RefCell<Vec<String>>,
}

async fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mpay.toml");
    std::fs::write(&cfg, config(&dir.path().join("data"))).unwrap();
    let settings = Settings::load(&Sources {
        demo: false,
        file: Some(cfg),
        env: false,
    })
    .unwrap();
    let app = Application::build(settings, false).await.unwrap();
    let base = format!("http://{}", app.addr);
    let store = app.store.clone();
    actix_rt::spawn(async move {
        let _ = app.run_until_stopped().await;
    });
    Node {
        base,
        client: reqwest::Client::new(),
        store,
        dir,
        answers: Default::default(),
    }
}

impl Node {
    async fn create(&self, org: &str, key: &str, body: Value, publish: bool) -> Value {
        let q = if publish { "?toPublish=true" } else { "" };
        let r = self
            .client
            .post(format!(
                "{}/api/v1/organizations/{org}/debtpositions{q}",
                self.base
            ))
            .header("Ocp-Apim-Subscription-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "{v}");
        v
    }

    async fn post(&self, iupd_action: &str) {
        let r = self
            .client
            .post(format!(
                "{}/api/v1/organizations/{ORG}/debtpositions/{iupd_action}",
                self.base
            ))
            .header("Ocp-Apim-Subscription-Key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// Posts a SOAP request; returns (HTTP status, body). Checks every 200 answer against our
    /// own schema model and keeps it for the libxml2 pass.
    async fn soap(&self, action: Option<&str>, body: &str) -> (u16, String) {
        let mut req = self
            .client
            .post(format!("{}/pagopa/paForNode", self.base))
            .header("content-type", "text/xml; charset=utf-8")
            .body(body.to_string());
        if let Some(a) = action {
            req = req.header("SOAPAction", a);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        if status == 200 {
            let op = Operation::ALL
                .into_iter()
                .find(|o| text.contains(&format!(":{}>", o.response_element())))
                .unwrap_or_else(|| panic!("no paForNode response in {text}"));
            check_response(op, &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        }
        self.answers.borrow_mut().push(text.clone());
        (status, text)
    }

    /// Validates every answer received with the simulator (libxml2, official XSDs).
    fn validate_answers_with_libxml(&self) {
        let Some(shared) = shared() else { return };
        let dir = self.dir.path().join("answers");
        std::fs::create_dir_all(&dir).unwrap();
        let mut files = Vec::new();
        for (i, a) in self.answers.borrow().iter().enumerate() {
            if a.contains("soapenv:Fault") {
                continue; // a SOAP Fault is not a paForNode body
            }
            let f = dir.join(format!("answer-{i:04}.xml"));
            std::fs::write(&f, a).unwrap();
            files.push(f);
        }
        let out = Command::new(sim_binary())
            .arg("--schemas")
            .arg(shared.join("schemas"))
            .arg("validate")
            .args(&files)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "libxml2 rejected station answers:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The simulator binary built next to this test (cargo builds every workspace binary before
/// running tests); built on demand otherwise.
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

fn position(iupd: &str, cents: i64, due: &str) -> Value {
    json!({
        "iupd": iupd, "type": "F", "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi",
        "companyName": "Comune di Esempio",
        "paymentOption": [{
            "amount": cents, "description": format!("Posizione {iupd}"), "isPartialPayment": false,
            "dueDate": due,
            "transfer": [{"idTransfer": "1", "amount": cents, "remittanceInformation": "Tributo",
                          "category": "9/0101100IM/", "iban": IBAN}]
        }]
    })
}

fn nav_of(v: &Value, i: usize) -> String {
    v["paymentOption"][i]["nav"].as_str().unwrap().to_string()
}

fn envelope(inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:pafn="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><soapenv:Header/><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"#
    )
}

fn ids(org: &str, broker: &str, station: &str) -> String {
    format!("<idPA>{org}</idPA><idBrokerPA>{broker}</idBrokerPA><idStation>{station}</idStation>")
}

fn verify_req(org: &str, nav: &str) -> String {
    verify_with(org, BROKER, ST1, nav)
}

fn verify_with(org: &str, broker: &str, station: &str, nav: &str) -> String {
    envelope(&format!(
        "<pafn:paVerifyPaymentNoticeReq>{}<qrCode><fiscalCode>{org}</fiscalCode><noticeNumber>{nav}</noticeNumber></qrCode></pafn:paVerifyPaymentNoticeReq>",
        ids(org, broker, station)
    ))
}

fn get_payment_req(org: &str, nav: &str, v2: bool) -> String {
    let el = if v2 {
        "paGetPaymentV2Request"
    } else {
        "paGetPaymentReq"
    };
    envelope(&format!(
        "<pafn:{el}>{}<qrCode><fiscalCode>{org}</fiscalCode><noticeNumber>{nav}</noticeNumber></qrCode></pafn:{el}>",
        ids(org, BROKER, ST1)
    ))
}

fn amount_text(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn receipt_req(
    org: &str,
    station: &str,
    receipt_id: &str,
    nav: &str,
    cents: i64,
    stand_in: bool,
) -> String {
    let a = amount_text(cents);
    let iuv = &nav[1..];
    envelope(&format!(
        "<pafn:paSendRTReq>{}<receipt><receiptId>{receipt_id}</receiptId><noticeNumber>{nav}</noticeNumber><fiscalCode>{org}</fiscalCode><outcome>OK</outcome><creditorReferenceId>{iuv}</creditorReferenceId><paymentAmount>{a}</paymentAmount><description>Pagamento</description><companyName>Comune</companyName><debtor><uniqueIdentifier><entityUniqueIdentifierType>F</entityUniqueIdentifierType><entityUniqueIdentifierValue>RSSMRA80A01H501U</entityUniqueIdentifierValue></uniqueIdentifier><fullName>Mario Rossi</fullName></debtor><transferList><transfer><idTransfer>1</idTransfer><transferAmount>{a}</transferAmount><fiscalCodePA>{org}</fiscalCodePA><IBAN>{IBAN}</IBAN><remittanceInformation>Tributo</remittanceInformation><transferCategory>0101100IM</transferCategory></transfer></transferList><idPSP>88888888888</idPSP><PSPCompanyName>PSP di Prova</PSPCompanyName><idChannel>88888888888_01</idChannel><channelDescription>app</channelDescription><paymentDateTime>2026-11-30T10:00:00</paymentDateTime><standIn>{stand_in}</standIn></receipt></pafn:paSendRTReq>",
        ids(org, BROKER, station)
    ))
}

fn fault_code(xml: &str) -> Option<String> {
    let start = xml.find("<faultCode>")? + "<faultCode>".len();
    let end = xml[start..].find('<')? + start;
    Some(xml[start..end].to_string())
}

fn outcome(xml: &str) -> String {
    fault_code(xml).unwrap_or_else(|| {
        assert!(xml.contains("<outcome>OK</outcome>"), "{xml}");
        "OK".into()
    })
}

#[actix_web::test]
async fn verify_and_get_payment_answer_the_current_position() {
    let n = node().await;
    let mut body = position("V-1", 15_000, "2030-06-30");
    body["officeName"] = json!("Ufficio Tributi");
    body["paymentOption"][0]["transfer"] = json!([
        {"idTransfer": "1", "amount": 12_000, "remittanceInformation": "Quota comune", "category": "9/0101100IM/", "postalIban": POSTAL},
        {"idTransfer": "2", "amount": 3_000, "remittanceInformation": "Quota provincia", "category": "9/0201102IM/",
         "organizationFiscalCode": "77777777778", "iban": "IT33C9999999999000000000002", "companyName": "Provincia di Esempio"}
    ]);
    let p = n.create(ORG, KEY, body, true).await;
    let nav = nav_of(&p, 0);
    let (status, v) = n
        .soap(Some("paVerifyPaymentNotice"), &verify_req(ORG, &nav))
        .await;
    assert_eq!((status, outcome(&v).as_str()), (200, "OK"));
    assert!(
        v.contains("<amount>150.00</amount>") && v.contains("<options>EQ</options>"),
        "{v}"
    );
    assert!(v.contains("<dueDate>2030-06-30</dueDate>"), "{v}");
    assert!(
        v.contains("<allCCP>false</allCCP>"),
        "the second transfer has no postal account: {v}"
    );
    assert!(
        v.contains("<fiscalCodePA>77777777777</fiscalCodePA>")
            && v.contains("<officeName>Ufficio Tributi</officeName>")
    );

    // verify is read-only: the same answer twice
    let (_, again) = n.soap(None, &verify_req(ORG, &nav)).await;
    assert_eq!(v, again);

    let (_, g) = n
        .soap(Some("paGetPayment"), &get_payment_req(ORG, &nav, false))
        .await;
    assert_eq!(outcome(&g), "OK");
    assert!(g.contains(&format!(
        "<creditorReferenceId>{}</creditorReferenceId>",
        &nav[1..]
    )));
    assert!(g.contains("<paymentAmount>150.00</paymentAmount>"));
    assert!(g.contains(&format!("<IBAN>{POSTAL}</IBAN>")), "{g}");
    assert!(g.contains("<fiscalCodePA>77777777778</fiscalCodePA>"));
    assert!(
        g.contains("<transferCategory>0101100IM</transferCategory>"),
        "taxonomy without slashes: {g}"
    );
    assert!(
        g.contains("<remittanceInformation>Quota comune</remittanceInformation>"),
        "{g}"
    );
    assert!(
        !g.contains("<companyName>Provincia"),
        "no transfer companyName in V1: {g}"
    );
    let (_, g2) = n
        .soap(Some("paGetPaymentV2"), &get_payment_req(ORG, &nav, true))
        .await;
    assert!(
        g2.contains("<companyName>Provincia di Esempio</companyName>"),
        "{g2}"
    );
    let pos = n
        .store
        .ledger
        .get(&OrgFiscalCode::parse_unchecked(ORG).unwrap(), "V-1")
        .unwrap()
        .unwrap();
    assert_eq!(pos.revision, 1, "verify and getPayment change nothing");
    n.validate_answers_with_libxml();
}

#[actix_web::test]
async fn every_refusal_has_its_fault_code() {
    let n = node().await;
    let draft = n
        .create(ORG, KEY, position("F-DRAFT", 100, "2030-01-01"), false)
        .await;
    let cancelled = n
        .create(ORG, KEY, position("F-INV", 100, "2030-01-01"), true)
        .await;
    n.post("F-INV/invalidate").await;
    let mut e = position("F-EXP", 100, "2020-01-01");
    e["switchToExpired"] = json!(true);
    let expired = n.create(ORG, KEY, e, true).await;
    let mut t = position(
        "F-TODAY",
        100,
        &mpay_messages::time::rome_today().to_string(),
    );
    t["switchToExpired"] = json!(true);
    let today = n.create(ORG, KEY, t, true).await;
    let mut s = position("F-STAMP", 2_600, "2030-01-01");
    s["paymentOption"][0]["transfer"] = json!([
        {"idTransfer": "1", "amount": 1_000, "remittanceInformation": "Diritti", "category": "9/0101002IM/", "iban": IBAN},
        {"idTransfer": "2", "amount": 1_600, "remittanceInformation": "Bollo", "category": "9/0101002IM/",
         "stamp": {"hashDocument": "6Uh9j7P6PGFQxX6O2IdHaM/RtBaNjgsmFG+MmDzbcgg=", "stampType": "01", "provincialResidence": "AN"}}
    ]);
    let stamp = n.create(ORG, KEY, s, true).await;
    let other = n.create(OTHER, KEY_OTHER, json!({
        "iupd": "O-1", "type": "F", "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi", "companyName": "Borgo",
        "paymentOption": [{"amount": 100, "description": "x", "isPartialPayment": false, "dueDate": "2030-01-01",
            "transfer": [{"idTransfer": "1", "amount": 100, "remittanceInformation": "x", "category": "9/0101100IM/", "iban": IBAN_OTHER}]}]
    }), true).await;

    let cases: Vec<(String, String, &str)> = vec![
        (
            verify_req(ORG, "312202600000099999"),
            "unknown notice".into(),
            "PAA_PAGAMENTO_SCONOSCIUTO",
        ),
        (
            verify_req(ORG, &nav_of(&draft, 0)),
            "draft".into(),
            "PAA_PAGAMENTO_SCONOSCIUTO",
        ),
        (
            verify_req(ORG, &nav_of(&cancelled, 0)),
            "invalidated".into(),
            "PAA_PAGAMENTO_ANNULLATO",
        ),
        (
            verify_req(ORG, &nav_of(&expired, 0)),
            "expired".into(),
            "PAA_PAGAMENTO_SCADUTO",
        ),
        (
            verify_req(ORG, &nav_of(&today, 0)),
            "due today".into(),
            "OK",
        ),
        (
            verify_with(ORG, "11111111111", ST1, &nav_of(&today, 0)),
            "broker".into(),
            "PAA_ID_INTERMEDIARIO_ERRATO",
        ),
        (
            verify_with(ORG, BROKER, "99999999999_09", &nav_of(&today, 0)),
            "station".into(),
            "PAA_STAZIONE_INT_ERRATA",
        ),
        (
            verify_with("12345678901", BROKER, ST1, &nav_of(&today, 0)),
            "organization".into(),
            "PAA_ID_DOMINIO_ERRATO",
        ),
        (
            verify_with(OTHER, BROKER, ST1, &nav_of(&other, 0)),
            "organization on another station".into(),
            "PAA_STAZIONE_INT_ERRATA",
        ),
        (
            verify_with(OTHER, BROKER, ST2, &nav_of(&other, 0)),
            "its own station".into(),
            "OK",
        ),
        (
            get_payment_req(ORG, &nav_of(&stamp, 0), false),
            "stamp via V1".into(),
            "PAA_SEMANTICA",
        ),
        (
            get_payment_req(ORG, &nav_of(&stamp, 0), true),
            "stamp via V2".into(),
            "OK",
        ),
        (
            verify_req(ORG, "31220260000000017"),
            "17-digit notice".into(),
            "PAA_SINTASSI_XSD",
        ),
        (
            verify_req(ORG, "312202600000000171")
                .replace("<idPA>", "<pafn:idPA>")
                .replace("</idPA>", "</pafn:idPA>"),
            "qualified child".into(),
            "PAA_SINTASSI_XSD",
        ),
        (
            verify_req(ORG, "312202600000000171").replace("pa/paForNode.xsd", "paForNode"),
            "wrong namespace".into(),
            "PAA_SINTASSI_XSD",
        ),
        ("<not xml".into(), "not XML".into(), "PAA_SINTASSI_EXTRAXSD"),
        (
            envelope(&format!(
                "<pafn:paVerifyPaymentNoticeReq>{}</pafn:paVerifyPaymentNoticeReq>",
                "x".repeat(70_000)
            )),
            "oversized".into(),
            "PAA_SINTASSI_EXTRAXSD",
        ),
    ];
    for (body, what, expected) in &cases {
        let action = if what == "not XML" || what == "oversized" {
            Some("paVerifyPaymentNotice")
        } else {
            None
        };
        let (status, answer) = n.soap(action, body).await;
        assert_eq!(status, 200, "{what}: {answer}");
        assert_eq!(outcome(&answer), *expected, "{what}: {answer}");
        if *expected != "OK" {
            assert!(
                answer.contains("<faultString>")
                    && answer.contains("<id>")
                    && answer.contains("<description>"),
                "{what}: {answer}"
            );
        }
    }
    let (_, v2) = n
        .soap(None, &get_payment_req(ORG, &nav_of(&stamp, 0), true))
        .await;
    assert!(v2.contains("<richiestaMarcaDaBollo><hashDocumento>6Uh9j7P6PGFQxX6O2IdHaM/RtBaNjgsmFG+MmDzbcgg=</hashDocumento><tipoBollo>01</tipoBollo><provinciaResidenza>AN</provinciaResidenza></richiestaMarcaDaBollo>"), "{v2}");
    // the fault id is the organization's fiscal code
    let (_, a) = n.soap(None, &verify_req(ORG, "312202600000099999")).await;
    assert!(a.contains(&format!("<id>{ORG}</id>")), "{a}");
    // no operation can be told: a SOAP Fault, HTTP 500, still a SOAP body
    let (status, f) = n.soap(None, &envelope("<pafn:paDoSomething/>")).await;
    assert_eq!(status, 500);
    assert!(
        f.contains("<soapenv:Fault>") && f.contains("PAA_SINTASSI_EXTRAXSD"),
        "{f}"
    );
    n.validate_answers_with_libxml();
}

/// After paGetPayment (a payment in progress, its token not expired), a PUT may not replace the
/// notice number or the amounts of that notice (409 `PAYMENT_IN_PROGRESS`, saying why), else
/// the receipt would find no notice and the new notice would be payable again; other changes
/// pass, and the receipt then settles the notice the Node was given.
#[actix_web::test]
async fn a_put_cannot_replace_a_notice_with_a_payment_in_progress() {
    let n = node().await;
    let p = n
        .create(ORG, KEY, position("G-1", 5_000, "2030-01-01"), true)
        .await;
    let nav = nav_of(&p, 0);
    let iuv = p["paymentOption"][0]["iuv"].as_str().unwrap().to_string();
    let put = |body: Value| {
        let (client, base) = (n.client.clone(), n.base.clone());
        async move {
            let r = client
                .put(format!(
                    "{base}/api/v1/organizations/{ORG}/debtpositions/G-1?toPublish=true"
                ))
                .header("Ocp-Apim-Subscription-Key", KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    // before any payment, a PUT that keeps the notice passes
    let mut same = position("G-1", 5_000, "2030-01-01");
    same["paymentOption"][0]["iuv"] = json!(iuv);
    assert_eq!(put(same.clone()).await.0, 200);
    let (_, g) = n
        .soap(Some("paGetPayment"), &get_payment_req(ORG, &nav, false))
        .await;
    assert_eq!(outcome(&g), "OK");
    // another notice number (the IUV omitted: a new one is generated), another amount
    let renumbered = position("G-1", 5_000, "2030-01-01");
    let mut dearer = same.clone();
    dearer["paymentOption"][0]["amount"] = json!(6_000);
    dearer["paymentOption"][0]["transfer"][0]["amount"] = json!(6_000);
    for body in [renumbered, dearer] {
        let (status, problem) = put(body).await;
        assert_eq!(status, 409, "{problem}");
        assert_eq!(problem["code"], "PAYMENT_IN_PROGRESS", "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(&nav) && detail.contains("payment in progress"),
            "{detail}"
        );
    }
    // a change that keeps the notice and its amounts passes
    let mut reworded = same.clone();
    reworded["paymentOption"][0]["description"] = json!("Nuova descrizione");
    let (status, v) = put(reworded).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(nav_of(&v, 0), nav);
    // the receipt settles the notice the Node was given
    let (_, a) = n
        .soap(
            Some("paSendRT"),
            &receipt_req(ORG, ST1, "rcpt-prog-1", &nav, 5_000, false),
        )
        .await;
    assert_eq!(outcome(&a), "OK");
    let pos = n
        .store
        .ledger
        .get(&OrgFiscalCode::parse_unchecked(ORG).unwrap(), "G-1")
        .unwrap()
        .unwrap();
    assert_eq!(pos.status.as_str(), "PAID", "{pos:?}");
    assert!(
        n.store
            .ledger
            .receipts_for_notice(
                &OrgFiscalCode::parse_unchecked(ORG).unwrap(),
                &NoticeNumber::parse_unchecked(&nav).unwrap()
            )
            .unwrap()
            .len()
            == 1
    );
}

#[actix_web::test]
async fn receipts_are_idempotent_atomic_and_flag_anomalies() {
    let n = node().await;
    let org = OrgFiscalCode::parse_unchecked(ORG).unwrap();
    let p = n
        .create(ORG, KEY, position("R-1", 5_000, "2030-01-01"), true)
        .await;
    let nav = nav_of(&p, 0);

    // same receipt twice, then ten times at once: OK every time, one record
    let rt = receipt_req(ORG, ST1, "rcpt-0001", &nav, 5_000, false);
    for _ in 0..2 {
        let (_, a) = n.soap(Some("paSendRT"), &rt).await;
        assert_eq!(outcome(&a), "OK");
    }
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let client = n.client.clone();
        let url = format!("{}/pagopa/paForNode", n.base);
        let body = rt.clone();
        tasks.push(actix_rt::spawn(async move {
            client
                .post(url)
                .body(body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(outcome(&t.await.unwrap()), "OK");
    }
    let navn = NoticeNumber::parse_unchecked(&nav).unwrap();
    assert_eq!(
        n.store
            .ledger
            .receipts_for_notice(&org, &navn)
            .unwrap()
            .len(),
        1
    );
    let paid = n.store.ledger.get(&org, "R-1").unwrap().unwrap();
    assert_eq!(paid.status.as_str(), "PAID");
    assert!(paid.payment_date.is_some());
    let stored = n.store.ledger.receipt("rcpt-0001").unwrap().unwrap();
    assert_eq!(stored.raw_xml, rt, "raw receipt kept byte-exact");

    // paid notice: verify answers DUPLICATO
    let (_, v) = n.soap(None, &verify_req(ORG, &nav)).await;
    assert_eq!(outcome(&v), "PAA_PAGAMENTO_DUPLICATO");

    // a different receipt for the paid notice: collected money is never refused — OK and a
    // double-payment anomaly (SPEC §6.3)
    let (_, a) = n
        .soap(
            None,
            &receipt_req(ORG, ST1, "rcpt-0002", &nav, 5_000, false),
        )
        .await;
    assert_eq!(outcome(&a), "OK");
    let anomalies = n.store.ledger.anomalies(10).unwrap();
    let double = anomalies
        .iter()
        .find(|a| a.receipt_id == "rcpt-0002")
        .expect("double payment anomaly");
    assert!(
        matches!(&double.kind, AnomalyKind::PossibleDoublePayment { first_receipt_id: Some(f) } if f == "rcpt-0001")
    );
    assert_eq!(
        double.receipt.as_ref().unwrap().receipt_id,
        "rcpt-0002",
        "the whole receipt is kept"
    );

    // Stand-In: no getPayment before, amount different → OK, paid, anomaly
    let s = n
        .create(ORG, KEY, position("R-SI", 5_000, "2030-01-01"), true)
        .await;
    let (_, a) = n
        .soap(
            None,
            &receipt_req(ORG, ST1, "rcpt-si", &nav_of(&s, 0), 5_100, true),
        )
        .await;
    assert_eq!(outcome(&a), "OK");
    assert_eq!(
        n.store
            .ledger
            .get(&org, "R-SI")
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "PAID"
    );
    assert!(n.store.ledger.anomalies(10).unwrap().iter().any(|a| a.receipt_id == "rcpt-si"
        && matches!(a.kind, AnomalyKind::PaidWithDifference { expected, paid } if expected.cents() == 5_000 && paid.cents() == 5_100)));

    // orphan: a receipt for a notice we do not know is stored, answered OK, flagged
    let (_, a) = n
        .soap(
            None,
            &receipt_req(ORG, ST1, "rcpt-orphan", "312202600000098765", 700, false),
        )
        .await;
    assert_eq!(outcome(&a), "OK");
    assert!(n.store.ledger.receipt("rcpt-orphan").unwrap().is_some());
    assert!(n
        .store
        .ledger
        .anomalies(10)
        .unwrap()
        .iter()
        .any(|a| a.receipt_id == "rcpt-orphan" && a.kind == AnomalyKind::OrphanReceipt));

    // station migration: a receipt for OTHER arriving on station 01 is accepted, with a journal note
    let o = n.create(OTHER, KEY_OTHER, json!({
        "iupd": "M-1", "type": "F", "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi", "companyName": "Borgo",
        "paymentOption": [{"amount": 100, "description": "x", "isPartialPayment": false, "dueDate": "2030-01-01",
            "transfer": [{"idTransfer": "1", "amount": 100, "remittanceInformation": "x", "category": "9/0101100IM/", "iban": IBAN_OTHER}]}]
    }), true).await;
    let (_, a) = n
        .soap(
            None,
            &receipt_req(OTHER, ST1, "rcpt-migr", &nav_of(&o, 0), 100, false),
        )
        .await;
    assert_eq!(outcome(&a), "OK");
    let other = OrgFiscalCode::parse_unchecked(OTHER).unwrap();
    assert_eq!(
        n.store
            .ledger
            .get(&other, "M-1")
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "PAID"
    );
    let journal = n.store.journal.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let notes = journal
            .query(&JournalQuery {
                organization: Some(OTHER.into()),
                from: None,
                limit: 100,
            })
            .unwrap();
        if notes.iter().any(|e| {
            e.channel == "soap"
                && e.note
                    .as_deref()
                    .is_some_and(|n| n.contains("does not serve"))
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no journal note for the station migration"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(n.store.ledger.verify().unwrap().is_consistent());
    n.validate_answers_with_libxml();
}

#[actix_web::test]
async fn installments_and_the_single_solution_exclude_each_other() {
    let n = node().await;
    let org = OrgFiscalCode::parse_unchecked(ORG).unwrap();
    let opt = |cents: i64, partial: bool, due: &str, d: &str| {
        json!({
        "amount": cents, "description": d, "isPartialPayment": partial, "dueDate": due,
        "transfer": [{"idTransfer": "1", "amount": cents, "remittanceInformation": d, "category": "9/0101100IM/", "iban": IBAN}]})
    };
    let body = |iupd: &str| {
        json!({
        "iupd": iupd, "type": "F", "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi", "companyName": "Comune di Esempio",
        "paymentOption": [opt(20_000, false, "2030-01-31", "unica"), opt(10_000, true, "2030-01-31", "rata 1"), opt(10_000, true, "2030-03-31", "rata 2")]})
    };
    let p = n.create(ORG, KEY, body("I-1"), true).await;
    let (single, r1, r2) = (nav_of(&p, 0), nav_of(&p, 1), nav_of(&p, 2));
    let (_, a) = n
        .soap(None, &receipt_req(ORG, ST1, "i1-r1", &r1, 10_000, false))
        .await;
    assert_eq!(outcome(&a), "OK");
    assert_eq!(
        n.store
            .ledger
            .get(&org, "I-1")
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "PARTIALLY_PAID"
    );
    let (_, v) = n.soap(None, &verify_req(ORG, &single)).await;
    assert_eq!(
        outcome(&v),
        "PAA_PAGAMENTO_DUPLICATO",
        "single solution closed by an installment"
    );
    let (_, v) = n.soap(None, &verify_req(ORG, &r2)).await;
    assert_eq!(outcome(&v), "OK");
    let (_, a) = n
        .soap(None, &receipt_req(ORG, ST1, "i1-r2", &r2, 10_000, false))
        .await;
    assert_eq!(outcome(&a), "OK");
    assert_eq!(
        n.store
            .ledger
            .get(&org, "I-1")
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "PAID"
    );

    let p = n.create(ORG, KEY, body("I-2"), true).await;
    let (_, a) = n
        .soap(
            None,
            &receipt_req(ORG, ST1, "i2-single", &nav_of(&p, 0), 20_000, false),
        )
        .await;
    assert_eq!(outcome(&a), "OK");
    let (_, v) = n.soap(None, &verify_req(ORG, &nav_of(&p, 1))).await;
    assert_eq!(
        outcome(&v),
        "PAA_PAGAMENTO_DUPLICATO",
        "installments closed by the single solution"
    );
    n.validate_answers_with_libxml();
}

#[actix_web::test]
async fn demand_payment_notice_creates_a_payable_position() {
    let n = node().await;
    let data = base64_of(b"<ta:tassaAuto xmlns:ta=\"http://PuntoAccessoPSP.spcoop.gov.it/TassaAuto\"><ta:veicoloConTarga><ta:tipoVeicoloTarga>1</ta:tipoVeicoloTarga><ta:veicoloTarga>ZZ000ZZ</ta:veicoloTarga></ta:veicoloConTarga></ta:tassaAuto>");
    let req = |service: &str| {
        envelope(&format!(
        "<pafn:paDemandPaymentNoticeRequest>{}<idServizio>{service}</idServizio><idSoggettoServizio>00001</idSoggettoServizio><datiSpecificiServizioRequest>{data}</datiSpecificiServizioRequest></pafn:paDemandPaymentNoticeRequest>",
        ids(ORG, BROKER, ST1)
    ))
    };
    let (_, a) = n.soap(Some("paDemandPaymentNotice"), &req("00001")).await;
    assert_eq!(outcome(&a), "OK");
    assert!(a.contains("<amount>187.40</amount>"), "{a}");
    let start = a.find("<noticeNumber>").unwrap() + 14;
    let nav = &a[start..start + 18];
    assert!(
        NoticeNumber::parse(nav).is_ok(),
        "generated with a valid check digit"
    );
    let (_, v) = n.soap(None, &verify_req(ORG, nav)).await;
    assert_eq!(outcome(&v), "OK");
    let (_, a) = n.soap(None, &req("00009")).await;
    assert_eq!(outcome(&a), "PAA_SEMANTICA");
    n.validate_answers_with_libxml();
}

fn base64_of(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `pagopa-sim replay` over the spec pack's examples: every example gets the expected outcome.
#[actix_web::test]
async fn simulator_replays_the_spec_examples() {
    let Some(shared) = shared() else { return };
    let n = node().await;
    // the notices the examples use
    let mut p171 = position("EX-171", 15_000, "2030-12-31");
    p171["paymentOption"][0]["iuv"] = json!("12202600000000171");
    p171["paymentOption"][0]["transfer"] = json!([
        {"idTransfer": "1", "amount": 12_000, "remittanceInformation": "TARI", "category": "9/0101100IM/", "postalIban": POSTAL},
        {"idTransfer": "2", "amount": 3_000, "remittanceInformation": "TEFA", "category": "9/0201102IM/",
         "organizationFiscalCode": "77777777778", "iban": "IT33C9999999999000000000002"}]);
    n.create(ORG, KEY, p171, true).await;
    let mut p272 = position("EX-272", 2_600, "2030-12-31");
    p272["paymentOption"][0]["iuv"] = json!("12202600000000272");
    p272["paymentOption"][0]["transfer"] = json!([
        {"idTransfer": "1", "amount": 1_000, "remittanceInformation": "Diritti", "category": "9/0101002IM/", "iban": IBAN},
        {"idTransfer": "2", "amount": 1_600, "remittanceInformation": "Bollo", "category": "9/0101002IM/",
         "stamp": {"hashDocument": "6Uh9j7P6PGFQxX6O2IdHaM/RtBaNjgsmFG+MmDzbcgg=", "stampType": "01", "provincialResidence": "AN"}}]);
    n.create(ORG, KEY, p272, true).await;
    // files run in name order: verify comes after the receipt that paid 171
    let expect = n.dir.path().join("expect.toml");
    std::fs::write(
        &expect,
        "\"paVerifyPaymentNotice_req.xml\" = [{ fault = \"PAA_PAGAMENTO_DUPLICATO\" }]\n",
    )
    .unwrap();
    let station = format!("{}/pagopa/paForNode", n.base);
    let run = move |expect: &Path| {
        Command::new(sim_binary())
            .arg("--schemas")
            .arg(shared.join("schemas"))
            .args(["replay", "--station", &station])
            .arg(shared.join("examples"))
            .arg("--expect")
            .arg(expect)
            .output()
            .unwrap()
    };
    let out = tokio::task::spawn_blocking({
        let expect = expect.clone();
        let run = run.clone();
        move || run(&expect)
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "replay failed:\n{text}");
    let org = OrgFiscalCode::parse_unchecked(ORG).unwrap();
    for iupd in ["EX-171", "EX-272"] {
        assert_eq!(
            n.store
                .ledger
                .get(&org, iupd)
                .unwrap()
                .unwrap()
                .status
                .as_str(),
            "PAID",
            "{iupd}"
        );
    }
    let stamp = n
        .store
        .ledger
        .receipt("7d41c0e2a9b84f5c8e3a2b1c0d9e8f7a")
        .unwrap()
        .unwrap();
    let marca = stamp
        .receipt
        .transfers
        .iter()
        .find_map(|t| t.marca_da_bollo.clone())
        .expect("stamp decoded and stored");
    assert_eq!(
        marca.document_digest,
        "6Uh9j7P6PGFQxX6O2IdHaM/RtBaNjgsmFG+MmDzbcgg="
    );

    // a second pass: the receipts are idempotent (OK), the paid notices are DUPLICATO
    std::fs::write(
        &expect,
        "\"paVerifyPaymentNotice_req.xml\" = [{ fault = \"PAA_PAGAMENTO_DUPLICATO\" }]\n\"paGetPayment_req.xml\" = [{ fault = \"PAA_PAGAMENTO_DUPLICATO\" }]\n\"paGetPaymentV2_req.xml\" = [{ fault = \"PAA_PAGAMENTO_DUPLICATO\" }]\n",
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || run(&expect))
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "second replay failed:\n{text}");
    assert_eq!(n.store.ledger.receipt_count(), 2);
}

/// `pagopa-sim psp`: N payments (default 10 000; `MPAY_PSP_PAYMENTS` to change) with retries,
/// duplicate receipts, Stand-In and unknown notices; every answer XSD-valid (checked by the
/// simulator), every receipt stored once, every paid position PAID, the journal complete.
#[actix_web::test]
async fn simulator_pays_notices_end_to_end() {
    let Some(shared) = shared() else { return };
    let payments: usize = std::env::var("MPAY_PSP_PAYMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let n = node().await;
    let batch = 500;
    let mut created = 0;
    while created < payments {
        let k = batch.min(payments - created);
        let positions: Vec<Value> = (created..created + k)
            .map(|i| {
                position(
                    &format!("PSP-{i:06}"),
                    1_000 + (i as i64 % 5_000),
                    "2030-12-31",
                )
            })
            .collect();
        let r = n
            .client
            .post(format!(
                "{}/api/v1/organizations/{ORG}/debtpositions/bulk?toPublish=true",
                n.base
            ))
            .header("Ocp-Apim-Subscription-Key", KEY)
            .json(&json!({ "paymentPositions": positions }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        created += k;
    }
    let cfg = n.dir.path().join("psp.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[station]
id_broker_pa = "{BROKER}"
id_station = "{ST1}"
[psp]
id_psp = "88888888888"
id_broker_psp = "88888888888"
id_channel = "88888888888_01"
channel_description = "app"
company_name = "PSP di Prova S.p.A."
fiscal_code = "88888888888"
payment_method = "creditCard"
fee_cents = 100
[mix]
v2_share = 0.5
retry_verify_share = 0.1
retry_get_payment_share = 0.1
duplicate_receipt_share = 0.1
stand_in_share = 0.05
unknown_notice_share = 0.02
seed = 7
[expect]
duplicate_receipt = ["OK"]
stand_in_receipt = ["OK"]
stand_in_different_amount = ["OK"]
unknown_notice = ["PAA_PAGAMENTO_SCONOSCIUTO"]
[stand_in]
different_amount_share = 0.5
amount_delta_cents = 100
iban = "{IBAN}"
transfer_category = "0101100IM"
[notices.discover]
rest = "{base}"
api_key = "{KEY}"
organizations = ["{ORG}"]
limit = 50
"#,
            base = n.base
        ),
    )
    .unwrap();
    let station = format!("{}/pagopa/paForNode", n.base);
    let schemas = shared.join("schemas");
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(sim_binary())
            .arg("--schemas")
            .arg(schemas)
            .args(["psp", "--station", &station, "--config"])
            .arg(cfg)
            .args(["--payments", &payments.to_string(), "--concurrency", "8"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "psp run failed:\n{text}");
    let summary: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SUMMARY "))
        .map(|s| serde_json::from_str(s).unwrap())
        .expect("SUMMARY line");
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["xsd_failures"], 0);
    eprintln!(
        "psp: {payments} payments, {} requests in {:.1?} ({} req/s)",
        summary["requests"],
        started.elapsed(),
        summary["requests_per_s"]
    );

    // every position paid, every receipt stored exactly once
    let org = OrgFiscalCode::parse_unchecked(ORG).unwrap();
    let paid = n
        .store
        .ledger
        .list(
            &org,
            &PositionFilter {
                status: Some(mpay_messages::position::PositionStatus::Paid),
                ..Default::default()
            },
            ListOrder::IupdAsc,
            0,
            1,
        )
        .unwrap();
    assert_eq!(paid.total_items, payments, "every paid position is PAID");
    assert_eq!(
        n.store.ledger.receipt_count(),
        payments,
        "one receipt per payment, duplicates not stored twice"
    );
    assert!(n.store.ledger.verify().unwrap().is_consistent());

    // the journal holds every SOAP exchange
    let requests = summary["requests"].as_u64().unwrap() as usize;
    let journal = n.store.journal.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let soap = journal
            .query(&JournalQuery {
                organization: None,
                from: None,
                limit: usize::MAX,
            })
            .unwrap()
            .into_iter()
            .filter(|e| e.channel == "soap")
            .count();
        if soap == requests {
            break;
        }
        assert!(
            soap < requests,
            "more journal entries ({soap}) than requests ({requests})"
        );
        assert!(
            Instant::now() < deadline,
            "journal has {soap} of {requests} exchanges"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}
