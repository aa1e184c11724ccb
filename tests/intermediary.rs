//! An intermediary that hosts many Enti (issue 10), end to end through the real server:
//! two brokers, four stations (one a previous station), an organization with two segregation
//! codes routed to two stations; the Stand-In probe on every station for every organization;
//! receipts that depart from the XSD or from what we sent accepted, stored byte-exact and
//! flagged, read back through the receipts and anomalies APIs; text hygiene towards the Node;
//! the fault `id` for an organization we do not serve.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::{Duration, Instant};

use mpay::app::Application;
use mpay_config::{hash_api_key, Settings, Sources};
use mpay_messages::wire::pafornode::{check_response, Operation};
use mpay_storage::{JournalQuery, JournalStore, ReceiptRepository};
use serde_json::{json, Value};

/// Broker 1 (`[broker]`) and broker 2 (`[[brokers]]`: an Ente that is its own intermediary).
const BROKER: &str = "01987654322";
const BROKER2: &str = "99999999999";
/// Stations of broker 1: `_01` (code 12), `_02` (code 47), `_00` (previous station of ORG).
const ST1: &str = "01987654322_01";
const ST2: &str = "01987654322_02";
const ST_OLD: &str = "01987654322_00";
/// Station of broker 2.
const ST_B2: &str = "99999999999_01";
/// An organization with two segregation codes (12 default, 47 for the TARI back office).
const ORG: &str = "80001234568";
/// The organization of broker 2.
const ORG2: &str = "77777777777";
const KEY: &str = "intermediary-key-org";
const KEY2: &str = "intermediary-key-org2";
const IBAN: &str = "IT47D0103002600000061234567";
const IBAN2: &str = "IT56B9999999999000000000001";
const PROBE: &str = "000000000000000000";

fn config(data: &Path) -> String {
    format!(
        r#"
[node]
id = "intermediary-test"
data_dir = "{data}"
[http]
bind = "127.0.0.1:0"
workers = 2
[broker]
fiscal_code = "{BROKER}"
[[brokers]]
fiscal_code = "{BROKER2}"
[journal]
batch_interval_ms = 20

[[stations]]
id = "{ST1}"
organizations = ["{ORG}"]
[[stations]]
id = "{ST2}"
[[stations]]
id = "{ST_OLD}"
[[stations]]
id = "{ST_B2}"
broker = "{BROKER2}"
organizations = ["{ORG2}"]

[[organizations]]
fiscal_code = "{ORG}"
name = "Comune di Borgo Demo"
aux_digit = 3
segregation_code = 12
ibans = ["{IBAN}"]
api_key_hashes = ["{k}"]
previous_stations = ["{ST_OLD}"]
[[organizations.notice_codes]]
segregation_code = 47
station = "{ST2}"

[[organizations]]
fiscal_code = "{ORG2}"
name = "Comune di Esempio"
aux_digit = 3
segregation_code = 12
ibans = ["{IBAN2}"]
api_key_hashes = ["{k2}"]

[[services]]
organization = "{ORG}"
code = "TARI"
label = "TARI"
category = "9/0101100IM/"
iban = "{IBAN}"
amount = {{ kind = "free" }}
segregation_code = 47
"#,
        data = data.display(),
        k = hash_api_key(KEY),
        k2 = hash_api_key(KEY2),
    )
}

struct Node {
    base: String,
    client: reqwest::Client,
    store: mpay_storage::Store,
    _dir: tempfile::TempDir,
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
        _dir: dir,
    }
}

fn envelope(inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:pafn="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"#
    )
}

fn ids(org: &str, broker: &str, station: &str) -> String {
    format!("<idPA>{org}</idPA><idBrokerPA>{broker}</idBrokerPA><idStation>{station}</idStation>")
}

fn verify(org: &str, broker: &str, station: &str, nav: &str) -> String {
    envelope(&format!(
        "<pafn:paVerifyPaymentNoticeReq>{}<qrCode><fiscalCode>{org}</fiscalCode><noticeNumber>{nav}</noticeNumber></qrCode></pafn:paVerifyPaymentNoticeReq>",
        ids(org, broker, station)
    ))
}

fn get_payment(org: &str, broker: &str, station: &str, nav: &str) -> String {
    envelope(&format!(
        "<pafn:paGetPaymentReq>{}<qrCode><fiscalCode>{org}</fiscalCode><noticeNumber>{nav}</noticeNumber></qrCode><amount>1.00</amount></pafn:paGetPaymentReq>",
        ids(org, broker, station)
    ))
}

/// A paSendRT receipt; `transfer` is the inner XML of the one transfer.
struct Rt<'a> {
    org: &'a str,
    broker: &'a str,
    station: &'a str,
    receipt_id: &'a str,
    nav: &'a str,
    cents: i64,
    description: &'a str,
    transfer: String,
}

fn transfer(cents: i64, remittance: &str, category: Option<&str>) -> String {
    format!(
        "<idTransfer>1</idTransfer><transferAmount>{}.{:02}</transferAmount><fiscalCodePA>{ORG}</fiscalCodePA><IBAN>{IBAN}</IBAN><remittanceInformation>{remittance}</remittanceInformation>{}",
        cents / 100,
        cents % 100,
        category
            .map(|c| format!("<transferCategory>{c}</transferCategory>"))
            .unwrap_or_default()
    )
}

fn send_rt(rt: &Rt<'_>) -> String {
    let iuv = rt.nav.get(1..).unwrap_or_default();
    envelope(&format!(
        "<pafn:paSendRTReq>{ids}<receipt><receiptId>{rid}</receiptId><noticeNumber>{nav}</noticeNumber><fiscalCode>{org}</fiscalCode><outcome>OK</outcome><creditorReferenceId>{iuv}</creditorReferenceId><paymentAmount>{eur}.{cc:02}</paymentAmount><description>{desc}</description><companyName>Comune di Borgo Demo</companyName><debtor><uniqueIdentifier><entityUniqueIdentifierType>F</entityUniqueIdentifierType><entityUniqueIdentifierValue>RSSMRA80A01H501U</entityUniqueIdentifierValue></uniqueIdentifier><fullName>Mario Rossi</fullName></debtor><transferList><transfer>{tr}</transfer></transferList><idPSP>88888888888</idPSP><PSPCompanyName>PSP di Prova</PSPCompanyName><idChannel>88888888888_01</idChannel><channelDescription>app</channelDescription><paymentDateTime>2026-07-02T10:15:30</paymentDateTime></receipt></pafn:paSendRTReq>",
        ids = ids(rt.org, rt.broker, rt.station),
        rid = rt.receipt_id,
        nav = rt.nav,
        org = rt.org,
        eur = rt.cents / 100,
        cc = rt.cents % 100,
        desc = rt.description,
        tr = rt.transfer,
    ))
}

fn position(iupd: &str, cents: i64, service: Option<&str>) -> Value {
    let mut p = json!({
        "iupd": iupd, "type": "F", "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi",
        "companyName": "Comune di Borgo Demo",
        "paymentOption": [{
            "amount": cents, "description": format!("Posizione {iupd}"), "isPartialPayment": false,
            "dueDate": "2030-12-31",
            "transfer": [{"idTransfer": "1", "amount": cents, "remittanceInformation": "TARI 2026",
                          "category": "9/0101100IM/", "iban": IBAN}]
        }]
    });
    if let Some(s) = service {
        p["serviceCode"] = json!(s);
    }
    p
}

impl Node {
    async fn soap(&self, body: &str) -> String {
        let r = self
            .client
            .post(format!("{}/pagopa/paForNode", self.base))
            .header("content-type", "text/xml; charset=utf-8")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let op = Operation::ALL
            .into_iter()
            .find(|o| text.contains(&format!(":{}>", o.response_element())))
            .unwrap_or_else(|| panic!("no paForNode response in {text}"));
        check_response(op, &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "control character in {text:?}"
        );
        text
    }

    async fn create(&self, org: &str, key: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!(
                "{}/api/v1/organizations/{org}/debtpositions?toPublish=true",
                self.base
            ))
            .header("Ocp-Apim-Subscription-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn get(&self, key: Option<&str>, path: &str) -> (u16, Value) {
        let mut r = self.client.get(format!("{}{path}", self.base));
        if let Some(k) = key {
            r = r.header("Ocp-Apim-Subscription-Key", k);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Ocp-Apim-Subscription-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Waits until the journal holds an entry matching `pred` (the writer batches).
    async fn journal_has(
        &self,
        what: &str,
        pred: impl Fn(&mpay_messages::journal::JournalEntry) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all = self
                .store
                .journal
                .query(&JournalQuery {
                    organization: None,
                    from: None,
                    limit: usize::MAX,
                })
                .unwrap();
            if all.iter().any(&pred) {
                return;
            }
            assert!(Instant::now() < deadline, "journal: no {what}");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Anomalies of ORG of one kind (through the API).
    async fn anomalies_of(&self, receipt_id: &str) -> Vec<Value> {
        let (s, page) = self
            .get(
                Some(KEY),
                &format!("/api/v1/organizations/{ORG}/anomalies?limit=50"),
            )
            .await;
        assert_eq!(s, 200, "{page}");
        page["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["receiptId"] == receipt_id)
            .cloned()
            .collect()
    }
}

fn fault_of(xml: &str) -> Option<(String, String)> {
    let code = xml
        .split("<faultCode>")
        .nth(1)?
        .split('<')
        .next()?
        .to_string();
    let id = xml.split("<id>").nth(1)?.split('<').next()?.to_string();
    Some((code, id))
}

#[actix_web::test]
async fn the_stand_in_probe_is_answered_for_every_organization_on_every_station() {
    let n = node().await;
    let stations = [
        (BROKER, ST1),
        (BROKER, ST2),
        (BROKER, ST_OLD),
        (BROKER2, ST_B2),
    ];
    let mut probes = 0;
    for org in [ORG, ORG2] {
        for (broker, station) in stations {
            let answer = n.soap(&verify(org, broker, station, PROBE)).await;
            assert_eq!(
                fault_of(&answer),
                Some(("PAA_PAGAMENTO_SCONOSCIUTO".into(), org.into())),
                "{org} on {station}: {answer}"
            );
            probes += 1;
        }
    }
    // a probe for an organization we do not serve is not ours: the fault id is its idPA
    let answer = n.soap(&verify("12345678903", BROKER, ST1, PROBE)).await;
    assert_eq!(
        fault_of(&answer),
        Some(("PAA_ID_DOMINIO_ERRATO".into(), "12345678903".into()))
    );
    // no journal entry for the probes: a later exchange is journaled, the probes are not
    let marker = n
        .soap(&verify(ORG, BROKER, ST1, "312000000000000099"))
        .await;
    assert!(marker.contains("PAA_PAGAMENTO_SCONOSCIUTO"));
    n.journal_has("marker verify", |e| {
        e.key.as_deref() == Some("312000000000000099")
    })
    .await;
    let journal = n
        .store
        .journal
        .query(&JournalQuery {
            organization: None,
            from: None,
            limit: usize::MAX,
        })
        .unwrap();
    // (the refusal for the organization we do not serve is an ordinary exchange)
    assert!(
        !journal.iter().any(|e| e.key.as_deref() == Some(PROBE)
            && e.organization
                .as_deref()
                .is_some_and(|o| o == ORG || o == ORG2)),
        "a probe was journaled"
    );
    assert!(journal
        .iter()
        .any(|e| e.key.as_deref() == Some(PROBE) && e.outcome == "PAA_ID_DOMINIO_ERRATO"));
    // counted in a metric instead
    let metrics = n
        .client
        .get(format!("{}/metrics", n.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("mpay_station_standin_probes_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, probes, "{metrics}");
    // the ledger was never read for them: nothing was created either
    assert_eq!(n.store.ledger.receipt_count(), 0);
}

#[actix_web::test]
async fn brokers_stations_and_segregation_codes_route_requests() {
    let n = node().await;
    // generated notices: the service's code (47) or the default (12)
    let (s, tari) = n
        .create(ORG, KEY, position("TARI-1", 5_000, Some("TARI")))
        .await;
    assert_eq!(s, 201, "{tari}");
    let nav47 = tari["paymentOption"][0]["nav"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(nav47.starts_with("347"), "{nav47}");
    let (s, plain) = n.create(ORG, KEY, position("PLAIN-1", 1_000, None)).await;
    assert_eq!(s, 201, "{plain}");
    let nav12 = plain["paymentOption"][0]["nav"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(nav12.starts_with("312"), "{nav12}");
    // a notice of either code supplied by the Ente is recognised; another code is not
    let mut given = position("GIVEN-47", 700, None);
    given["paymentOption"][0]["iuv"] = json!("47000000000012353");
    let (s, v) = n.create(ORG, KEY, given).await;
    assert_eq!(s, 201, "{v}");
    assert!(v["paymentOption"][0]["nav"]
        .as_str()
        .unwrap()
        .starts_with("347"));
    let mut other = position("GIVEN-13", 700, None);
    other["paymentOption"][0]["nav"] = json!("313000000000000159");
    let (s, v) = n.create(ORG, KEY, other).await;
    assert_eq!(s, 400, "{v}");

    // each code on its station
    assert!(n
        .soap(&verify(ORG, BROKER, ST2, &nav47))
        .await
        .contains("<outcome>OK</outcome>"));
    assert!(n
        .soap(&verify(ORG, BROKER, ST1, &nav12))
        .await
        .contains("<outcome>OK</outcome>"));
    // code 47 asked on the code-12 station: served, with a journal warning
    assert!(n
        .soap(&verify(ORG, BROKER, ST1, &nav47))
        .await
        .contains("<outcome>OK</outcome>"));
    n.journal_has("other-code station warning", |e| {
        e.key.as_deref() == Some(nav47.as_str())
            && e.note.as_deref().is_some_and(|x| x.contains("routed to"))
    })
    .await;
    // the previous station: verify and getPayment served with a journal warning
    assert!(n
        .soap(&verify(ORG, BROKER, ST_OLD, &nav12))
        .await
        .contains("<outcome>OK</outcome>"));
    assert!(n
        .soap(&get_payment(ORG, BROKER, ST_OLD, &nav12))
        .await
        .contains("<outcome>OK</outcome>"));
    n.journal_has("previous station warning", |e| {
        e.note
            .as_deref()
            .is_some_and(|x| x.contains("previous station") && x.contains(ST_OLD))
    })
    .await;
    // a station of the other broker, named with that broker: not the organization's
    let a = n.soap(&verify(ORG, BROKER2, ST_B2, &nav12)).await;
    assert_eq!(
        fault_of(&a),
        Some(("PAA_STAZIONE_INT_ERRATA".into(), ORG.into()))
    );
    // a station named with the wrong broker
    let a = n.soap(&verify(ORG, BROKER2, ST1, &nav12)).await;
    assert_eq!(fault_of(&a).unwrap().0, "PAA_STAZIONE_INT_ERRATA");
    // a foreign broker
    let a = n.soap(&verify(ORG, "12345678903", ST1, &nav12)).await;
    assert_eq!(fault_of(&a).unwrap().0, "PAA_ID_INTERMEDIARIO_ERRATO");
    // broker 2's organization on broker 2's station
    let mut b2 = position("B2-1", 1_500, None);
    b2["paymentOption"][0]["transfer"][0]["iban"] = json!(IBAN2);
    let (s, p2) = n.create(ORG2, KEY2, b2).await;
    assert_eq!(s, 201, "{p2}");
    let nav_b2 = p2["paymentOption"][0]["nav"].as_str().unwrap().to_string();
    assert!(n
        .soap(&verify(ORG2, BROKER2, ST_B2, &nav_b2))
        .await
        .contains("<outcome>OK</outcome>"));
    // fault id for an organization we do not serve = the idPA received
    let a = n.soap(&verify("12345678903", BROKER, ST1, &nav12)).await;
    assert_eq!(
        fault_of(&a),
        Some(("PAA_ID_DOMINIO_ERRATO".into(), "12345678903".into()))
    );
    // and for a body that cannot be read, when it names an idPA
    let broken = envelope(&format!(
        "<pafn:paVerifyPaymentNoticeReq>{}<qrCode><fiscalCode>1</fiscalCode></qrCode></pafn:paVerifyPaymentNoticeReq>",
        ids("12345678903", BROKER, ST1)
    ));
    let a = n.soap(&broken).await;
    assert_eq!(
        fault_of(&a),
        Some(("PAA_SINTASSI_XSD".into(), "12345678903".into()))
    );
}

#[actix_web::test]
async fn collected_money_is_never_refused_and_every_departure_is_flagged() {
    let n = node().await;
    let mut navs = Vec::new();
    for i in 0..6 {
        let (s, p) = n
            .create(ORG, KEY, position(&format!("RT-{i}"), 5_000, None))
            .await;
        assert_eq!(s, 201, "{p}");
        navs.push(p["paymentOption"][0]["nav"].as_str().unwrap().to_string());
    }
    let good = transfer(5_000, "TARI 2026", Some("0101100IM"));
    let rt =
        |rid: &'static str, i: usize, station: &'static str, tr: String, desc: &'static str| {
            let nav = navs[i].clone();
            move || {
                send_rt(&Rt {
                    org: ORG,
                    broker: BROKER,
                    station,
                    receipt_id: rid,
                    nav: &nav,
                    cents: 5_000,
                    description: desc,
                    transfer: tr.clone(),
                })
            }
        };
    // (receipt id, request, anomaly kind expected, flag kind expected)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "rt-no-category",
            rt(
                "rt-no-category",
                0,
                ST1,
                transfer(5_000, "TARI 2026", None),
                "TARI",
            )(),
            "RECEIPT_DEPARTURE",
            "MISSING_TRANSFER_CATEGORY",
        ),
        (
            "rt-remittance",
            rt(
                "rt-remittance",
                1,
                ST1,
                transfer(5_000, "/RFB/0001/50.00/TXT/TARI", Some("0101100IM")),
                "TARI",
            )(),
            "RECEIPT_DEPARTURE",
            "REMITTANCE_CHANGED",
        ),
        (
            "rt-whitespace",
            rt("rt-whitespace", 2, ST1, good.clone(), "TARI 2026   ")(),
            "RECEIPT_DEPARTURE",
            "UNTIDY_TEXT",
        ),
        (
            "rt-previous-station",
            rt("rt-previous-station", 3, ST_OLD, good.clone(), "TARI")(),
            "STATION_MISMATCH",
            "STATION_MISMATCH",
        ),
    ];
    for (rid, body, anomaly_kind, flag_kind) in &cases {
        let answer = n.soap(body).await;
        assert!(answer.contains("<outcome>OK</outcome>"), "{rid}: {answer}");
        // stored byte-exact, flagged, read through the API
        let (s, r) = n
            .get(
                Some(KEY),
                &format!("/api/v1/organizations/{ORG}/receipts/{rid}"),
            )
            .await;
        assert_eq!(s, 200, "{rid}: {r}");
        assert_eq!(r["rawXml"].as_str().unwrap(), body.as_str(), "{rid}");
        assert_eq!(r["disposition"], "APPLIED", "{rid}");
        assert!(
            r["flags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["kind"] == *flag_kind),
            "{rid}: {r}"
        );
        assert_eq!(r["receipt"]["receiptId"], *rid);
        assert!(r["receipt"]["transferList"][0]["fiscalCodePA"] == ORG);
        let anomalies = n.anomalies_of(rid).await;
        assert!(
            anomalies
                .iter()
                .any(|a| a["kind"] == *anomaly_kind && a["state"] == "OPEN"),
            "{rid}: {anomalies:?}"
        );
    }
    // the payment counted: the positions are PAID
    for (i, _) in cases.iter().enumerate() {
        let (_, p) = n
            .get(
                Some(KEY),
                &format!("/api/v1/organizations/{ORG}/debtpositions/RT-{i}"),
            )
            .await;
        assert_eq!(p["status"], "PAID", "RT-{i}");
    }
    n.journal_has("station migration note on a receipt", |e| {
        e.operation == "paSendRT"
            && e.note
                .as_deref()
                .is_some_and(|x| x.contains("previous station"))
    })
    .await;

    // a second receipt for a paid notice: a double payment, answered OK and flagged
    let double = rt("rt-double", 0, ST1, good.clone(), "TARI")();
    assert!(n.soap(&double).await.contains("<outcome>OK</outcome>"));
    let a = n.anomalies_of("rt-double").await;
    assert!(
        a.iter().any(|x| x["kind"] == "POSSIBLE_DOUBLE_PAYMENT"),
        "{a:?}"
    );
    // a receipt for a notice we never issued: stored, OK, UNKNOWN notice anomaly
    let orphan = send_rt(&Rt {
        org: ORG,
        broker: BROKER,
        station: ST1,
        receipt_id: "rt-orphan",
        nav: "312999999999999957",
        cents: 100,
        description: "x",
        transfer: transfer(100, "x", Some("0101100IM")),
    });
    assert!(n.soap(&orphan).await.contains("<outcome>OK</outcome>"));
    let a = n.anomalies_of("rt-orphan").await;
    assert!(a.iter().any(|x| x["kind"] == "ORPHAN_RECEIPT"), "{a:?}");

    // refused: a foreign broker, an organization not ours
    let stored = n.store.ledger.receipt_count();
    for (broker, station, org, code) in [
        ("12345678903", ST1, ORG, "PAA_ID_INTERMEDIARIO_ERRATO"),
        (BROKER, ST1, "12345678903", "PAA_ID_DOMINIO_ERRATO"),
    ] {
        let body = send_rt(&Rt {
            org,
            broker,
            station,
            receipt_id: "rt-refused",
            nav: &navs[4],
            cents: 5_000,
            description: "TARI",
            transfer: good.clone(),
        });
        let answer = n.soap(&body).await;
        assert_eq!(
            fault_of(&answer),
            Some((code.to_string(), org.to_string())),
            "{answer}"
        );
    }
    assert_eq!(
        n.store.ledger.receipt_count(),
        stored,
        "a refused receipt was stored"
    );
    // a receipt whose identity cannot be read: PAA_SINTASSI_XSD, nothing stored
    let unreadable = send_rt(&Rt {
        org: ORG,
        broker: BROKER,
        station: ST1,
        receipt_id: "rt-x",
        nav: &navs[4],
        cents: 5_000,
        description: "TARI",
        transfer: good.clone(),
    })
    .replace("<receiptId>rt-x</receiptId>", "");
    assert_eq!(
        fault_of(&n.soap(&unreadable).await).unwrap().0,
        "PAA_SINTASSI_XSD"
    );
    assert_eq!(n.store.ledger.receipt_count(), stored);

    // receipts API: filters and paging
    let list = |q: &'static str| {
        let n = &n;
        async move {
            let (s, v) = n
                .get(
                    Some(KEY),
                    &format!("/api/v1/organizations/{ORG}/receipts{q}"),
                )
                .await;
            assert_eq!(s, 200, "{q}: {v}");
            v
        }
    };
    let all = list("?limit=50").await;
    assert_eq!(all["receipts"].as_array().unwrap().len(), 6, "{all}");
    assert!(all["receipts"][0].get("rawXml").is_none());
    let by_notice = n
        .get(
            Some(KEY),
            &format!(
                "/api/v1/organizations/{ORG}/receipts?noticeNumber={}",
                navs[0]
            ),
        )
        .await
        .1;
    assert_eq!(
        by_notice["receipts"].as_array().unwrap().len(),
        2,
        "{by_notice}"
    );
    let by_iuv = n
        .get(
            Some(KEY),
            &format!("/api/v1/organizations/{ORG}/receipts?iuv={}", &navs[1][1..]),
        )
        .await
        .1;
    assert_eq!(by_iuv["receipts"][0]["receiptId"], "rt-remittance");
    assert_eq!(
        list("?debtor=rssmra80a01h501u&limit=50").await["receipts"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        list("?debtor=VRDGPP80A01H501X").await["receipts"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        list("?from=2000-01-01&to=2099-12-31&limit=50").await["receipts"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        list("?to=2000-01-01").await["receipts"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let paged = list("?limit=4&page=1").await;
    assert_eq!(paged["receipts"].as_array().unwrap().len(), 2);
    assert_eq!(paged["pageInfo"]["total_pages"], 2);
    let (s, bad) = n
        .get(
            Some(KEY),
            &format!("/api/v1/organizations/{ORG}/receipts?from=yesterday"),
        )
        .await;
    assert_eq!(s, 400, "{bad}");
    // an unknown filter is refused, naming it (not silently ignored)
    for path in ["receipts", "anomalies"] {
        let (s, bad) = n
            .get(
                Some(KEY),
                &format!("/api/v1/organizations/{ORG}/{path}?fiscalCode=RSSMRA80A01H501U"),
            )
            .await;
        assert_eq!(s, 400, "{path}: {bad}");
        assert!(bad.to_string().contains("fiscalCode"), "{path}: {bad}");
    }

    // anomalies: acknowledge, filter by state
    let first = n.anomalies_of("rt-no-category").await[0].clone();
    let id = first["id"].as_str().unwrap().to_string();
    let (s, acked) = n
        .post(
            KEY,
            &format!("/api/v1/organizations/{ORG}/anomalies/{id}/acknowledge"),
            json!({"note": "checked with the PSP"}),
        )
        .await;
    assert_eq!(s, 200, "{acked}");
    assert_eq!(acked["state"], "ACKNOWLEDGED");
    assert_eq!(acked["acknowledgementNote"], "checked with the PSP");
    let (_, open) = n
        .get(
            Some(KEY),
            &format!("/api/v1/organizations/{ORG}/anomalies?state=OPEN&limit=50"),
        )
        .await;
    assert!(!open["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == id.as_str()));
    let (_, done) = n
        .get(
            Some(KEY),
            &format!("/api/v1/organizations/{ORG}/anomalies?state=ACKNOWLEDGED"),
        )
        .await;
    assert_eq!(done["anomalies"][0]["id"], id.as_str());

    // cross-tenant: the other organization's key, no key, another organization's receipt
    let (s, _) = n
        .get(Some(KEY2), &format!("/api/v1/organizations/{ORG}/receipts"))
        .await;
    assert_eq!(s, 403);
    let (s, _) = n
        .get(None, &format!("/api/v1/organizations/{ORG}/anomalies"))
        .await;
    assert_eq!(s, 401);
    let (s, _) = n
        .get(
            Some(KEY2),
            &format!("/api/v1/organizations/{ORG2}/receipts/rt-no-category"),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = n
        .post(
            KEY2,
            &format!("/api/v1/organizations/{ORG2}/anomalies/{id}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = n
        .post(
            KEY2,
            &format!("/api/v1/organizations/{ORG}/anomalies/{id}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(s, 403);
    let (_, other) = n
        .get(
            Some(KEY2),
            &format!("/api/v1/organizations/{ORG2}/anomalies"),
        )
        .await;
    assert_eq!(other["anomalies"].as_array().unwrap().len(), 0);

    // the OpenAPI describes them
    let (_, doc) = n.get(None, "/api/openapi.json").await;
    for p in [
        "/api/v1/organizations/{organizationfiscalcode}/receipts",
        "/api/v1/organizations/{organizationfiscalcode}/receipts/{receiptId}",
        "/api/v1/organizations/{organizationfiscalcode}/anomalies",
        "/api/v1/organizations/{organizationfiscalcode}/anomalies/{id}/acknowledge",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI"
        );
    }
    // a station of another of our brokers, for our organization: the money is ours, so it is
    // accepted and flagged (only what is not ours is refused)
    let body = send_rt(&Rt {
        org: ORG,
        broker: BROKER2,
        station: ST1,
        receipt_id: "rt-other-broker-station",
        nav: &navs[4],
        cents: 5_000,
        description: "TARI",
        transfer: good.clone(),
    });
    let answer = n.soap(&body).await;
    assert!(answer.contains("<outcome>OK</outcome>"), "{answer}");
    let a = n.anomalies_of("rt-other-broker-station").await;
    assert!(a.iter().any(|x| x["kind"] == "STATION_MISMATCH"), "{a:?}");
}

#[actix_web::test]
async fn texts_are_normalised_with_a_warning_and_never_reach_the_node_garbled() {
    let n = node().await;
    let mut p = position("TXT-1", 2_500, None);
    p["companyName"] = json!("\n\nComune di\tBorgo\r\nDemo  ");
    p["paymentOption"][0]["description"] = json!(format!("Canone\u{0007}2026 {}", "x".repeat(200)));
    p["paymentOption"][0]["transfer"][0]["remittanceInformation"] = json!("TARI   2026 ");
    let r = n
        .client
        .post(format!(
            "{}/api/v1/organizations/{ORG}/debtpositions?toPublish=true",
            n.base
        ))
        .header("Ocp-Apim-Subscription-Key", KEY)
        .json(&p)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("warning").is_some());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["companyName"], "Comune di Borgo Demo");
    let description = v["paymentOption"][0]["description"].as_str().unwrap();
    assert!(description.starts_with("Canone 2026 xxx"), "{description}");
    assert_eq!(description.chars().count(), 140);
    let warned: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        warned,
        [
            "companyName",
            "paymentOption[0].description",
            "paymentOption[0].transfer[0].remittanceInformation"
        ]
    );
    // nothing left of a required text: refused, naming the field
    let mut empty = position("TXT-2", 2_500, None);
    empty["companyName"] = json!("\n\n");
    let (s, e) = n.create(ORG, KEY, empty).await;
    assert_eq!(s, 400, "{e}");
    assert!(e.to_string().contains("companyName"), "{e}");
    // what the Node receives
    let nav = v["paymentOption"][0]["nav"].as_str().unwrap();
    let verify_answer = n.soap(&verify(ORG, BROKER, ST1, nav)).await;
    assert!(verify_answer.contains("<companyName>Comune di Borgo Demo</companyName>"));
    let pay = n.soap(&get_payment(ORG, BROKER, ST1, nav)).await;
    assert!(
        pay.contains("<remittanceInformation>TARI 2026</remittanceInformation>"),
        "{pay}"
    );
}
