//! MPay Archivio Carichi SOAP (`/ArchivioCarichiService/integraecdifferito`, INTERFACES.md §5.1)
//! against the real node: every operation, every `codiceEsito` we raise, authentication, the
//! station paying what the archive created, and concurrent inserts of the same document.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use mpay_messages::position::{OptionStatus, PositionStatus};
use mpay_messages::wire::xml::{self, Element};
use mpay_messages::{NoticeLayout, NoticeNumber, OrgFiscalCode, PersonFiscalCode};
use mpay_storage::PositionRepository;
use serde_json::Value;

const PATH: &str = "/ArchivioCarichiService/integraecdifferito";
const DATI: &str = "http://dati.integraecdifferito.webservice.archiviocarichi.payer.esed.com";

/// A male person's fiscal code with a correct check letter (born 10/12/1985).
fn male_cf() -> String {
    let first = "RSSMRA85T10A562";
    format!(
        "{first}{}",
        PersonFiscalCode::compute_check_char(first).unwrap()
    )
}

fn female_cf() -> String {
    let first = "BNCLRA85T52F205";
    format!(
        "{first}{}",
        PersonFiscalCode::compute_check_char(first).unwrap()
    )
}

fn envelope(inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:dat="{DATI}"><soapenv:Header/><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"#
    )
}

fn base(ente: &str) -> String {
    format!(
        "<dat:codiceUtente>000RM</dat:codiceUtente><dat:tipoServizio>EP</dat:tipoServizio><dat:codiceEnte>{ente}</dat:codiceEnte><dat:tipoUfficio></dat:tipoUfficio><dat:codiceUfficio></dat:codiceUfficio><dat:impostaServizio>TARI</dat:impostaServizio>"
    )
}

/// One installment: (number, due date GG/MM/AAAA, euros, optional notice number).
struct Rata<'a>(u32, &'a str, &'a str, Option<String>);

/// One tributo: (codice, euros, optional beneficiary domain, optional bank IBAN).
struct Tributo<'a>(&'a str, &'a str, Option<&'a str>, Option<&'a str>);

struct Doc<'a> {
    op: &'a str,
    numero: &'a str,
    flow: &'a str,
    generate: bool,
    nav: Option<String>,
    total: &'a str,
    cf: String,
    tipo: &'a str,
    service: &'a str,
    rate: Vec<Rata<'a>>,
    tributi: Vec<Tributo<'a>>,
    extra_conf: &'a str,
}

impl<'a> Doc<'a> {
    fn new(numero: &'a str, flow: &'a str, total: &'a str) -> Self {
        Doc {
            op: "InserimentoEcRequest",
            numero,
            flow,
            generate: true,
            nav: None,
            total,
            cf: male_cf(),
            tipo: "M",
            service: "AOC",
            rate: vec![Rata(1, "31/12/2099", total, None)],
            tributi: vec![Tributo("3944", total, None, None)],
            extra_conf: "",
        }
    }

    fn xml(&self) -> String {
        let nav = |n: &Option<String>| match n {
            Some(n) => format!("<dat:numeroBollettinoPagoPA>{n}</dat:numeroBollettinoPagoPA>",),
            None => String::new(),
        };
        let iuv = |n: &Option<String>| match n {
            Some(n) => format!(
                "<dat:identificativoUnivocoVersamento>{}</dat:identificativoUnivocoVersamento>",
                &n[1..]
            ),
            None => String::new(),
        };
        let mut s = format!(
            "<dat:{op}>{base}<dat:configurazione><dat:flagGenerazioneIUV>{g}</dat:flagGenerazioneIUV>{extra}<dat:flagStampaAvviso>N</dat:flagStampaAvviso><dat:identificativoFlusso>{flow}</dat:identificativoFlusso></dat:configurazione>\
             <dat:ruolo><dat:descrizioneImpostaServizio>Tassa</dat:descrizioneImpostaServizio><dat:codiceTipologiaServizio>{svc}</dat:codiceTipologiaServizio><dat:descrizioneTipologiaServizio>Loculi</dat:descrizioneTipologiaServizio></dat:ruolo>\
             <dat:documento><dat:numeroDocumento>{num}</dat:numeroDocumento><dat:annoEmissione>2026</dat:annoEmissione><dat:numeroEmissione>1</dat:numeroEmissione>{nav}<dat:impBollettinoTotaleDocumento>{total}</dat:impBollettinoTotaleDocumento><dat:ibanAccredito>{IBAN_A}</dat:ibanAccredito><dat:flagFatturazioneElettronica>N</dat:flagFatturazioneElettronica>{iuv}<dat:causale>Concessione loculo {num}</dat:causale><dat:tassonomia>0201133IM</dat:tassonomia></dat:documento>\
             <dat:anagrafica><dat:codiceFiscale>{cf}</dat:codiceFiscale><dat:denominazione>Mario Rossi</dat:denominazione><dat:tipoAnagrafica>{tipo}</dat:tipoAnagrafica><dat:dataNascita>10/12/1985</dat:dataNascita><dat:indirizzoFiscale>Via Roma 1</dat:indirizzoFiscale><dat:codiceBelfioreComuneFiscale>H501</dat:codiceBelfioreComuneFiscale><dat:email>mario@example.org</dat:email></dat:anagrafica>",
            op = self.op,
            base = base("05671"),
            g = if self.generate { "Y" } else { "N" },
            extra = self.extra_conf,
            flow = self.flow,
            svc = self.service,
            num = self.numero,
            nav = nav(&self.nav),
            iuv = iuv(&self.nav),
            total = self.total,
            cf = self.cf,
            tipo = self.tipo,
        );
        for r in &self.rate {
            s.push_str(&format!(
                "<dat:listScadenze><dat:numeroRata>{}</dat:numeroRata><dat:dataScadenzaRata>{}</dat:dataScadenzaRata>{}<dat:impBollettinoRata>{}</dat:impBollettinoRata>{}</dat:listScadenze>",
                r.0,
                r.1,
                nav(&r.3),
                r.2,
                iuv(&r.3)
            ));
        }
        for (i, t) in self.tributi.iter().enumerate() {
            s.push_str(&format!(
                "<dat:listTributi><dat:codiceTributo>{}</dat:codiceTributo><dat:annoTributo>2026</dat:annoTributo><dat:progressivoTributo>{}</dat:progressivoTributo><dat:impTributo>{}</dat:impTributo>{}{}<dat:metadatiPagoPATariTefaKey>TARI-TEFA-1</dat:metadatiPagoPATariTefaKey><dat:metadatiPagoPATariTefaValue>A000|2026|{}</dat:metadatiPagoPATariTefaValue></dat:listTributi>",
                t.0,
                i + 1,
                t.1,
                t.2.map(|d| format!("<dat:identificativoDominio>{d}</dat:identificativoDominio>")).unwrap_or_default(),
                t.3.map(|d| format!("<dat:IBANBancario>{d}</dat:IBANBancario>")).unwrap_or_default(),
                t.0,
            ));
        }
        s.push_str(&format!("</dat:{}>", self.op));
        envelope(&s)
    }
}

/// The answer: HTTP status and the response element (or the Fault).
struct Answer {
    status: u16,
    text: String,
    el: Element,
}

impl Answer {
    fn text_of(&self, local: &str) -> String {
        find(&self.el, local)
            .map(|e| e.text.clone())
            .unwrap_or_default()
    }

    fn esito(&self) -> String {
        self.text_of("codiceEsito")
    }

    fn assert_esito(&self, code: &str) {
        assert_eq!(self.status, 200, "{}", self.text);
        assert_eq!(self.esito(), code, "{}", self.text);
    }
}

fn find<'a>(e: &'a Element, local: &str) -> Option<&'a Element> {
    if e.local == local {
        return Some(e);
    }
    e.children.iter().find_map(|c| find(c, local))
}

enum Cred<'a> {
    None,
    Key(&'a str),
    Basic(&'a str),
}

async fn call(app: &TestApp, body: &str, cred: Cred<'_>) -> Answer {
    let mut req = app
        .client
        .post(format!("{}{PATH}", app.base))
        .header("content-type", "text/xml; charset=utf-8")
        .header("SOAPAction", "\"\"")
        .body(body.to_string());
    req = match cred {
        Cred::None => req,
        Cred::Key(k) => req.header("Ocp-Apim-Subscription-Key", k),
        Cred::Basic(k) => req.basic_auth("000RM", Some(k)),
    };
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let root = xml::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}"));
    let el = root.children[0].children[0].clone();
    if status == 200 {
        assert_eq!(el.ns.as_deref(), Some(DATI), "{text}");
    }
    Answer { status, text, el }
}

async fn send(app: &TestApp, doc: &Doc<'_>) -> Answer {
    call(app, &doc.xml(), Cred::Key(KEY_A)).await
}

fn cancel_xml(ente: &str, numero: &str) -> String {
    envelope(&format!(
        "<dat:CancellazioneEcRequest>{}<dat:numeroDocumento>{numero}</dat:numeroDocumento></dat:CancellazioneEcRequest>",
        base(ente)
    ))
}

fn discharge_xml(numero: &str, lines: &[(&str, u32, &str)]) -> String {
    let mut s = format!(
        "<dat:DiscaricoEcRequest>{}<dat:documento><dat:numeroDocumento>{numero}</dat:numeroDocumento></dat:documento>",
        base("05671")
    );
    for (codice, prog, euros) in lines {
        s.push_str(&format!(
            "<dat:listTributi><dat:codiceTributo>{codice}</dat:codiceTributo><dat:annoTributo>2026</dat:annoTributo><dat:progressivoTributo>{prog}</dat:progressivoTributo><dat:impTributo>{euros}</dat:impTributo></dat:listTributi>"
        ));
    }
    s.push_str("</dat:DiscaricoEcRequest>");
    envelope(&s)
}

fn print_xml(numero: &str, cf: &str, cents: &str) -> String {
    envelope(&format!(
        "<dat:RichiestaAvvisoPagoPaRequest>{}<dat:stampaDocumento><dat:codiceFiscale>{cf}</dat:codiceFiscale><dat:numeroDocumento>{numero}</dat:numeroDocumento><dat:importoTotaleDocumento>{cents}</dat:importoTotaleDocumento><dat:flagDatiAttualizzati>Y</dat:flagDatiAttualizzati></dat:stampaDocumento></dat:RichiestaAvvisoPagoPaRequest>",
        base("05671")
    ))
}

async fn position(app: &TestApp, iupd: &str) -> Value {
    let r = app.get(ORG_A, KEY_A, &format!("/{iupd}")).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn org_a() -> OrgFiscalCode {
    OrgFiscalCode::parse(ORG_A).unwrap()
}

async fn verify(app: &TestApp, nav: &str) -> String {
    let body = format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:pafn="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><soapenv:Body><pafn:paVerifyPaymentNoticeReq><idPA>{ORG_A}</idPA><idBrokerPA>{ORG_B}</idBrokerPA><idStation>{ORG_B}_01</idStation><qrCode><fiscalCode>{ORG_A}</fiscalCode><noticeNumber>{nav}</noticeNumber></qrCode></pafn:paVerifyPaymentNoticeReq></soapenv:Body></soapenv:Envelope>"#
    );
    app.client
        .post(format!("{}/pagopa/paForNode", app.base))
        .header("content-type", "text/xml")
        .header("SOAPAction", "paVerifyPaymentNotice")
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[actix_rt::test]
async fn an_inserted_document_is_a_payable_position_with_installments_and_two_beneficiaries() {
    let app = spawn_app().await;
    let mut doc = Doc::new("TARI-2026-0001", "FLUSSO-1", "300.00");
    doc.rate = vec![
        Rata(1, "31/03/2099", "100.00", None),
        Rata(2, "30/06/2099", "100.00", None),
        Rata(3, "30/09/2099", "100.00", None),
    ];
    doc.tributi = vec![
        Tributo("3944", "270.00", None, None),
        Tributo("TEFA", "30.00", Some(ORG_B), Some(IBAN_B)),
    ];
    let a = send(&app, &doc).await;
    a.assert_esito("00");
    let nav = a.text_of("numeroBollettinoPagoPA");
    let iuv = a.text_of("identificativoUnivocoVersamento");
    let n = NoticeNumber::parse(&nav).unwrap();
    assert_eq!(
        n.layout(),
        NoticeLayout::Aux3 {
            segregation_code: 12
        }
    );
    assert_eq!(n.iuv().as_str(), iuv);
    assert_eq!(a.text_of("numeroDocumento"), "TARI-2026-0001");

    let p = position(&app, "TARI-2026-0001").await;
    assert_eq!(p["status"], "VALID");
    let opts = p["paymentOption"].as_array().unwrap();
    assert_eq!(opts.len(), 4, "single solution + 3 installments: {p}");
    let single = opts
        .iter()
        .find(|o| o["isPartialPayment"] == false)
        .unwrap();
    assert_eq!(single["nav"], nav.as_str());
    assert_eq!(single["amount"], 30000);
    for o in opts {
        let t = o["transfer"].as_array().unwrap();
        assert_eq!(t.len(), 2, "{o}");
        let sum: i64 = t.iter().map(|t| t["amount"].as_i64().unwrap()).sum();
        assert_eq!(sum, o["amount"].as_i64().unwrap());
        // 90 % / 10 % split
        assert_eq!(
            t[1]["amount"].as_i64().unwrap() * 10,
            o["amount"].as_i64().unwrap()
        );
        assert_eq!(t[1]["organizationFiscalCode"], ORG_B);
        assert_eq!(t[1]["iban"], IBAN_B);
        assert_eq!(t[0]["iban"], IBAN_A);
        assert_eq!(t[0]["category"], "9/0201133IM/");
        // TARI/TEFA metadata longer than the XSD's 3 characters is kept (MPay was lenient)
        assert_eq!(t[0]["transferMetadata"][0]["key"], "TARI-TEFA-1", "{o}");
    }
    assert_eq!(p["email"], "mario@example.org");
    assert_eq!(p["fiscalCode"], male_cf());

    // the station answers for every notice the archive created
    for o in opts {
        let answer = verify(&app, o["nav"].as_str().unwrap()).await;
        assert!(answer.contains("<outcome>OK</outcome>"), "{answer}");
    }

    // the same document again: 03; the same flow id with another document: 04
    let again = send(&app, &Doc::new("TARI-2026-0001", "FLUSSO-2", "300.00")).await;
    again.assert_esito("03");
    // an Ente that lost the first answer gets its numbers back with the 03
    assert_eq!(again.text_of("numeroBollettinoPagoPA"), nav);
    // the REST API does not change an archive document behind the archive's back
    let r = app
        .put(
            ORG_A,
            KEY_A,
            "/TARI-2026-0001",
            &position_body("TARI-2026-0001", 100),
        )
        .await;
    assert_eq!(r.status(), 409);
    let r = app
        .client
        .post(format!(
            "{}/TARI-2026-0001/invalidate",
            app.positions_url(ORG_A)
        ))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let same_flow = send(&app, &Doc::new("TARI-2026-0002", "FLUSSO-1", "10.00")).await;
    same_flow.assert_esito("04");
    assert!(same_flow.text_of("messaggioEsito").contains("FLUSSO-1"));
    assert!(app
        .store
        .ledger
        .get(&org_a(), "TARI-2026-0002")
        .unwrap()
        .is_none());
}

#[actix_rt::test]
async fn validation_and_configuration_errors_store_nothing() {
    let app = spawn_app().await;
    type Change = Box<dyn Fn(&mut Doc)>;
    let cases: Vec<(&str, Change)> = vec![
        ("04", Box::new(|d: &mut Doc| d.total = "99.00")), // total ≠ Σ rate
        (
            "04",
            Box::new(|d: &mut Doc| d.tributi = vec![Tributo("3944", "50.00", None, None)]),
        ),
        ("04", Box::new(|d: &mut Doc| d.rate[0].1 = "31/02/2099")),
        ("04", Box::new(|d: &mut Doc| d.rate[0].1 = "31/12/99")),
        ("04", Box::new(|d: &mut Doc| d.rate[0].1 = "1/3/2099")),
        ("04", Box::new(|d: &mut Doc| d.rate[0].2 = "10,00")),
        ("04", Box::new(|d: &mut Doc| d.tipo = "F")), // male CF declared female
        ("04", Box::new(|d: &mut Doc| d.cf = female_cf())), // female CF, tipo M
        ("04", Box::new(|d: &mut Doc| d.tipo = "A")), // person CF for a company
        ("04", Box::new(|d: &mut Doc| d.tipo = "X")),
        ("02", Box::new(|d: &mut Doc| d.service = "ZZZ")), // unknown service
        (
            "02",
            Box::new(|d: &mut Doc| {
                d.extra_conf = "<dat:configurazioneIUV><dat:identificativoDominio>80001234568</dat:identificativoDominio><dat:auxDigit>0</dat:auxDigit><dat:applicationCode>01</dat:applicationCode></dat:configurazioneIUV>"
            }),
        ),
        (
            "02",
            Box::new(|d: &mut Doc| {
                d.extra_conf = "<dat:configurazioneIUV><dat:identificativoDominio>80001234568</dat:identificativoDominio><dat:auxDigit>3</dat:auxDigit><dat:segregationCode>13</dat:segregationCode></dat:configurazioneIUV>"
            }),
        ),
        (
            "04",
            Box::new(|d: &mut Doc| {
                d.tributi = vec![
                    Tributo("A", "4.00", None, None),
                    Tributo("B", "3.00", Some("01987654322"), Some(IBAN_B)),
                    Tributo("C", "3.00", Some("00000000000"), Some(IBAN_B)),
                ]
            }),
        ), // three beneficiaries
        (
            "04",
            Box::new(|d: &mut Doc| d.tributi = vec![Tributo("A", "10.00", None, Some(IBAN_B))]),
        ), // IBAN not registered for the organization
        (
            "04",
            Box::new(|d: &mut Doc| {
                d.numero = "N-123456789-123456789-123456789-123456789-123456789"
            }),
        ), // longer than 50
    ];
    for (i, (code, change)) in cases.iter().enumerate() {
        let numero = format!("DOC-{i}");
        let flow = format!("F-{i}");
        let mut d = Doc::new(&numero, &flow, "10.00");
        change(&mut d);
        let a = send(&app, &d).await;
        a.assert_esito(code);
        assert!(!a.text_of("messaggioEsito").is_empty());
    }
    assert_eq!(app.store.ledger.count(), 0);
    // configured right, the configurazioneIUV is accepted
    let mut d = Doc::new("DOC-OK", "F-OK", "10.00");
    d.extra_conf = "<dat:configurazioneIUV><dat:identificativoDominio>80001234568</dat:identificativoDominio><dat:auxDigit>3</dat:auxDigit><dat:segregationCode>12</dat:segregationCode></dat:configurazioneIUV>";
    send(&app, &d).await.assert_esito("00");
    // a missing mandatory element names its path
    let missing = Doc::new("DOC-M", "F-M", "10.00")
        .xml()
        .replace("<dat:annoEmissione>2026</dat:annoEmissione>", "");
    let a = call(&app, &missing, Cred::Key(KEY_A)).await;
    a.assert_esito("04");
    assert!(a
        .text_of("messaggioEsito")
        .contains("documento/annoEmissione"));
    assert_eq!(a.text_of("codiceEnte"), "05671");
}

#[actix_rt::test]
async fn generated_numbers_use_the_code_chosen_in_configurazione_iuv() {
    // an organization with two segregation codes (12 default, 47 for another back office)
    let app = spawn_app_edited(|c| {
        c.replacen(
            "[organizations.mpay]\ncodice_utente = \"000RM\"\ncodice_ente = \"05671\"",
            "[[organizations.notice_codes]]\nsegregation_code = 47\n[organizations.mpay]\ncodice_utente = \"000RM\"\ncodice_ente = \"05671\"",
            1,
        )
    })
    .await;
    let conf = |seg: &str| {
        format!("<dat:configurazioneIUV><dat:identificativoDominio>{ORG_A}</dat:identificativoDominio><dat:auxDigit>3</dat:auxDigit><dat:segregationCode>{seg}</dat:segregationCode></dat:configurazioneIUV>")
    };
    let c47 = conf("47");
    let mut d = Doc::new("SEG-47", "G-47", "10.00");
    d.extra_conf = &c47;
    let a = send(&app, &d).await;
    a.assert_esito("00");
    let nav = a.text_of("numeroBollettinoPagoPA");
    assert!(nav.starts_with("347"), "generated with code 47: {nav}");
    // without configurazioneIUV: the default code
    let a = send(&app, &Doc::new("SEG-DEF", "G-DEF", "10.00")).await;
    a.assert_esito("00");
    assert!(a.text_of("numeroBollettinoPagoPA").starts_with("312"));
    // a code the organization does not have: 02, naming the configured ones, nothing stored
    let c13 = conf("13");
    let mut d = Doc::new("SEG-13", "G-13", "10.00");
    d.extra_conf = &c13;
    let a = send(&app, &d).await;
    a.assert_esito("02");
    let msg = a.text_of("messaggioEsito");
    assert!(
        msg.contains("codice 12") && msg.contains("codice 47"),
        "{msg}"
    );
    assert!(app.store.ledger.get(&org_a(), "SEG-13").unwrap().is_none());
    // the notice generated with code 47 is the station's to answer
    let p = app.store.ledger.get(&org_a(), "SEG-47").unwrap().unwrap();
    assert_eq!(p.payment_options[0].nav.as_str(), nav);
}

#[actix_rt::test]
async fn supplied_notice_numbers_are_checked_and_must_be_unique() {
    let app = spawn_app().await;
    let layout = NoticeLayout::Aux3 {
        segregation_code: 12,
    };
    let n1 = layout.generate(900_001).unwrap().as_str().to_string();
    let n2 = layout.generate(900_002).unwrap().as_str().to_string();
    let n3 = layout.generate(900_003).unwrap().as_str().to_string();
    let mut d = Doc::new("SUP-1", "S-1", "20.00");
    d.generate = false;
    d.nav = Some(n1.clone());
    d.rate = vec![
        Rata(1, "31/01/2099", "10.00", Some(n2.clone())),
        Rata(2, "28/02/2099", "10.00", Some(n3.clone())),
    ];
    let a = send(&app, &d).await;
    a.assert_esito("00");
    assert_eq!(a.text_of("numeroBollettinoPagoPA"), n1);
    let p = app.store.ledger.get(&org_a(), "SUP-1").unwrap().unwrap();
    let mut navs: Vec<&str> = p.payment_options.iter().map(|o| o.nav.as_str()).collect();
    navs.sort();
    assert_eq!(navs, vec![n1.as_str(), n2.as_str(), n3.as_str()]);

    // the same notice number in another document: 04, nothing stored
    let mut d = Doc::new("SUP-2", "S-2", "10.00");
    d.generate = false;
    d.nav = Some(n2.clone());
    let a = send(&app, &d).await;
    a.assert_esito("04");
    assert!(a.text_of("messaggioEsito").contains("SUP-1"), "{}", a.text);
    assert!(app.store.ledger.get(&org_a(), "SUP-2").unwrap().is_none());

    // wrong check digits, another segregation code, missing notice
    let mut bad = n1.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == '0' { '1' } else { '0' });
    let other_seg = NoticeLayout::Aux3 {
        segregation_code: 13,
    }
    .generate(5)
    .unwrap()
    .as_str()
    .to_string();
    // a legacy notice failing mod 93 is matched, not judged (DESIGN §3)
    let mut d = Doc::new("SUP-LEGACY", "S-L", "10.00");
    d.generate = false;
    d.nav = Some(bad);
    send(&app, &d).await.assert_esito("00");
    // one number twice in a document (single solution and a rata): 04
    let n4 = layout.generate(900_004).unwrap().as_str().to_string();
    let n5 = layout.generate(900_005).unwrap().as_str().to_string();
    let mut d = Doc::new("SUP-TWICE", "S-T", "20.00");
    d.generate = false;
    d.nav = Some(n4.clone());
    d.rate = vec![
        Rata(1, "31/01/2099", "10.00", Some(n4.clone())),
        Rata(2, "28/02/2099", "10.00", Some(n5.clone())),
    ];
    send(&app, &d).await.assert_esito("04");
    for (i, nav) in [Some(other_seg), None].into_iter().enumerate() {
        let numero = format!("SUP-BAD-{i}");
        let flow = format!("SB-{i}");
        let mut d = Doc::new(&numero, &flow, "10.00");
        d.generate = false;
        d.nav = nav;
        send(&app, &d).await.assert_esito("04");
    }
}

#[actix_rt::test]
async fn variation_replaces_the_document_unless_payments_or_discharges_exist() {
    let app = spawn_app().await;
    send(&app, &Doc::new("VAR-1", "V-1", "50.00"))
        .await
        .assert_esito("00");
    let old = app.store.ledger.get(&org_a(), "VAR-1").unwrap().unwrap();
    let mut v = Doc::new("VAR-1", "V-1", "80.00");
    v.op = "VariazioneEcRequest";
    let a = send(&app, &v).await;
    a.assert_esito("00");
    let new_nav = a.text_of("numeroBollettinoPagoPA");
    assert_ne!(
        new_nav,
        old.payment_options[0].nav.as_str(),
        "new IUVs when generation is on"
    );
    let p = app.store.ledger.get(&org_a(), "VAR-1").unwrap().unwrap();
    assert_eq!(p.payment_options[0].amount.cents(), 8000);
    assert_eq!(p.inserted_date, old.inserted_date);
    // the old notice is gone from the station
    let answer = verify(&app, old.payment_options[0].nav.as_str()).await;
    assert!(answer.contains("PAA_PAGAMENTO_SCONOSCIUTO"), "{answer}");
    // the same variation flow again: its `_v` id is taken
    send(&app, &v).await.assert_esito("04");
    // variation of an absent document
    let mut absent = Doc::new("VAR-404", "V-404", "1.00");
    absent.op = "VariazioneEcRequest";
    send(&app, &absent).await.assert_esito("05");

    // discharges exist → 07
    let d = call(
        &app,
        &discharge_xml("VAR-1", &[("3944", 1, "5.00")]),
        Cred::Key(KEY_A),
    )
    .await;
    d.assert_esito("00");
    let mut v2 = Doc::new("VAR-1", "V-2", "80.00");
    v2.op = "VariazioneEcRequest";
    send(&app, &v2).await.assert_esito("07");

    // payments exist → 06 (variation, cancellation, discharge)
    send(&app, &Doc::new("VAR-2", "V-3", "40.00"))
        .await
        .assert_esito("00");
    app.store
        .ledger
        .modify(&org_a(), "VAR-2", &mut |p| {
            p.status = PositionStatus::Paid;
            p.payment_options[0].status = OptionStatus::PoPaid;
            Ok(())
        })
        .unwrap();
    let mut v3 = Doc::new("VAR-2", "V-4", "40.00");
    v3.op = "VariazioneEcRequest";
    send(&app, &v3).await.assert_esito("06");
    call(&app, &cancel_xml("05671", "VAR-2"), Cred::Key(KEY_A))
        .await
        .assert_esito("06");
    call(
        &app,
        &discharge_xml("VAR-2", &[("3944", 1, "1.00")]),
        Cred::Key(KEY_A),
    )
    .await
    .assert_esito("06");
}

#[actix_rt::test]
async fn cancellation_and_discharge() {
    let app = spawn_app().await;
    let mut doc = Doc::new("CAN-1", "C-1", "100.00");
    doc.tributi = vec![
        Tributo("3944", "60.00", None, None),
        Tributo("3945", "40.00", None, None),
    ];
    doc.rate = vec![
        Rata(1, "31/01/2099", "50.00", None),
        Rata(2, "28/02/2099", "50.00", None),
    ];
    send(&app, &doc).await.assert_esito("00");

    // partial discharge: 30 € off → single solution 70 €, last installment 20 €
    call(
        &app,
        &discharge_xml("CAN-1", &[("3944", 1, "30.00")]),
        Cred::Key(KEY_A),
    )
    .await
    .assert_esito("00");
    let p = app.store.ledger.get(&org_a(), "CAN-1").unwrap().unwrap();
    let amounts: Vec<(bool, i64)> = p
        .payment_options
        .iter()
        .map(|o| (o.is_partial_payment, o.amount.cents()))
        .collect();
    assert_eq!(amounts, vec![(false, 7000), (true, 5000), (true, 2000)]);
    // more than the residual (30 € left on 3944) → 04; unknown tributo → 05
    call(
        &app,
        &discharge_xml("CAN-1", &[("3944", 1, "30.01")]),
        Cred::Key(KEY_A),
    )
    .await
    .assert_esito("04");
    call(
        &app,
        &discharge_xml("CAN-1", &[("9999", 1, "1.00")]),
        Cred::Key(KEY_A),
    )
    .await
    .assert_esito("05");
    // the rest: nothing left to pay → position INVALID
    call(
        &app,
        &discharge_xml("CAN-1", &[("3944", 1, "30.00"), ("3945", 2, "40.00")]),
        Cred::Key(KEY_A),
    )
    .await
    .assert_esito("00");
    let p = app.store.ledger.get(&org_a(), "CAN-1").unwrap().unwrap();
    assert_eq!(p.status, PositionStatus::Invalid);

    // cancellation
    send(&app, &Doc::new("CAN-2", "C-2", "10.00"))
        .await
        .assert_esito("00");
    let nav = app
        .store
        .ledger
        .get(&org_a(), "CAN-2")
        .unwrap()
        .unwrap()
        .payment_options[0]
        .nav
        .as_str()
        .to_string();
    let a = call(&app, &cancel_xml("05671", "CAN-2"), Cred::Key(KEY_A)).await;
    a.assert_esito("00");
    assert_eq!(a.text_of("numeroDocumento"), "CAN-2");
    let answer = verify(&app, &nav).await;
    assert!(answer.contains("PAA_PAGAMENTO_ANNULLATO"), "{answer}");
    call(&app, &cancel_xml("05671", "CAN-2"), Cred::Key(KEY_A))
        .await
        .assert_esito("05");
    // a cancelled document may be inserted again
    send(&app, &Doc::new("CAN-2", "C-3", "12.00"))
        .await
        .assert_esito("00");
    let p = app.store.ledger.get(&org_a(), "CAN-2").unwrap().unwrap();
    assert_eq!(p.status, PositionStatus::Valid);
    assert_eq!(p.payment_options[0].amount.cents(), 1200);
    // positions made by the REST API are not archive documents
    let r = app
        .post(ORG_A, KEY_A, "", &position_body("REST-1", 1000))
        .await;
    assert_eq!(r.status(), 201);
    call(&app, &cancel_xml("05671", "REST-1"), Cred::Key(KEY_A))
        .await
        .assert_esito("05");
    send(&app, &Doc::new("REST-1", "C-4", "10.00"))
        .await
        .assert_esito("03");
}

#[actix_rt::test]
async fn the_notice_pdf_is_answered_in_base64() {
    use base64::Engine as _;
    let app = spawn_app().await;
    send(&app, &Doc::new("PDF-1", "P-1", "12.34"))
        .await
        .assert_esito("00");
    let a = call(
        &app,
        &print_xml("PDF-1", &male_cf(), "1234"),
        Cred::Key(KEY_A),
    )
    .await;
    a.assert_esito("00");
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(a.text_of("stampaPDFDocumentoPagoPA").trim())
        .unwrap();
    assert!(pdf.starts_with(b"%PDF-"), "a PDF");
    assert!(pdf.len() > 1000, "{} bytes", pdf.len());
    assert_eq!(a.text_of("numeroDocumento"), "PDF-1");
    call(
        &app,
        &print_xml("PDF-1", &female_cf(), "1234"),
        Cred::Key(KEY_A),
    )
    .await
    .assert_esito("04");
    call(
        &app,
        &print_xml("PDF-1", &male_cf(), "1000"),
        Cred::Key(KEY_A),
    )
    .await
    .assert_esito("04");
    call(
        &app,
        &print_xml("PDF-404", &male_cf(), "1234"),
        Cred::Key(KEY_A),
    )
    .await
    .assert_esito("05");
}

#[actix_rt::test]
async fn credentials_faults_and_open_organizations() {
    let app = spawn_app().await;
    let body = Doc::new("AUTH-1", "A-1", "10.00").xml();
    let a = call(&app, &body, Cred::None).await;
    assert_eq!(a.status, 401, "{}", a.text);
    assert!(a.text.contains("srv:Fault"), "{}", a.text);
    let a = call(&app, &body, Cred::Key("wrong")).await;
    assert_eq!(a.status, 401);
    let a = call(&app, &body, Cred::Key(KEY_B)).await;
    assert_eq!(a.status, 403, "another organization's key");
    let a = call(&app, &body, Cred::Basic(KEY_A)).await;
    a.assert_esito("00");
    // ORG_B is configured open (archivio_carichi_open): no credential needed
    let a = call(&app, &cancel_xml("00936", "NONE"), Cred::None).await;
    a.assert_esito("05");
    // unknown MPay codes with a key
    let a = call(&app, &cancel_xml("99999", "NONE"), Cred::Key(KEY_A)).await;
    assert_eq!(a.status, 403);
    // not XML, not SOAP, unknown operation: SOAP Fault, HTTP 500
    for bad in [
        "not xml".to_string(),
        "<a/>".to_string(),
        envelope("<dat:FooRequest/>"),
    ] {
        let r = app
            .client
            .post(format!("{}{PATH}", app.base))
            .header("Ocp-Apim-Subscription-Key", KEY_A)
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500);
        let text = r.text().await.unwrap();
        assert!(text.contains("<srv:code>1</srv:code>"), "{text}");
    }
    // too large: a SOAP fault too, not an HTML or JSON error
    let huge = Doc::new("BIG", "B-1", "1.00")
        .xml()
        .replace("Mario Rossi", &"x".repeat(70_000));
    let r = app
        .client
        .post(format!("{}{PATH}", app.base))
        .header("Ocp-Apim-Subscription-Key", KEY_A)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("<srv:code>413</srv:code>"));
}

#[actix_rt::test]
async fn concurrent_inserts_of_one_document_store_it_once() {
    let app = spawn_app().await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let client = app.client.clone();
        let url = format!("{}{PATH}", app.base);
        let flow = format!("CC-{i}");
        let body = Doc::new("CONC-1", &flow, "10.00").xml();
        tasks.push(actix_rt::spawn(async move {
            client
                .post(url)
                .header("Ocp-Apim-Subscription-Key", KEY_A)
                .body(body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        let text = t.await.unwrap();
        let root = xml::parse(text.as_bytes()).unwrap();
        codes.push(find(&root, "codiceEsito").unwrap().text.clone());
    }
    codes.sort();
    assert_eq!(codes[0], "00", "{codes:?}");
    assert_eq!(codes.iter().filter(|c| *c == "00").count(), 1, "{codes:?}");
    assert!(codes.iter().skip(1).all(|c| c == "03"), "{codes:?}");
    assert_eq!(app.store.ledger.count(), 1);
    let report = app.store.ledger.verify().unwrap();
    assert!(report.is_consistent(), "{report:?}");
}

#[actix_rt::test]
async fn the_readme_example_inserts_a_document() {
    let app = spawn_app().await;
    let body = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/archivio-inserimento.xml"),
    )
    .unwrap();
    let a = call(&app, &body, Cred::Key(KEY_A)).await;
    a.assert_esito("00");
    assert_eq!(a.text_of("numeroBollettinoPagoPA").len(), 18);
    call(&app, &body, Cred::Key(KEY_A)).await.assert_esito("03");
    let p = position(&app, "LOC-2026-0001").await;
    assert_eq!(p["paymentOption"].as_array().unwrap().len(), 3);
    // both exchanges are in the journal, with their outcome and the document as key
    use mpay_storage::{JournalQuery, JournalStore};
    app.wait_for("journal entries", || async {
        let entries = app
            .store
            .journal
            .query(&JournalQuery {
                organization: Some(ORG_A.into()),
                from: None,
                limit: 10,
            })
            .unwrap();
        let ours: Vec<_> = entries
            .iter()
            .filter(|e| e.channel == "archivio-carichi" && e.operation == "inserimentoEC")
            .collect();
        ours.len() == 2
            && ours.iter().any(|e| e.outcome == "00")
            && ours.iter().any(|e| e.outcome == "03")
            && ours
                .iter()
                .all(|e| e.key.as_deref() == Some("LOC-2026-0001"))
    })
    .await;
}

#[actix_rt::test]
async fn beneficiaries_get_exactly_their_share_over_the_installments() {
    let app = spawn_app().await;
    let sum_for =
        |p: &mpay_messages::position::DebtPosition, partial: bool, org: Option<&str>| -> i64 {
            p.payment_options
                .iter()
                .filter(|o| o.is_partial_payment == partial)
                .flat_map(|o| o.transfers.iter())
                .filter(|t| t.organization_fiscal_code.as_ref().map(|c| c.as_str()) == org)
                .map(|t| t.amount.cents())
                .sum()
        };
    // 50.01 / 49.99 over 33.33 + 33.33 + 33.34
    let mut doc = Doc::new("SPLIT-1", "SP-1", "100.00");
    doc.rate = vec![
        Rata(1, "31/01/2099", "33.33", None),
        Rata(2, "28/02/2099", "33.33", None),
        Rata(3, "31/03/2099", "33.34", None),
    ];
    doc.tributi = vec![
        Tributo("A", "50.01", None, None),
        Tributo("B", "49.99", Some(ORG_B), Some(IBAN_B)),
    ];
    send(&app, &doc).await.assert_esito("00");
    let p = app.store.ledger.get(&org_a(), "SPLIT-1").unwrap().unwrap();
    for partial in [false, true] {
        assert_eq!(sum_for(&p, partial, None), 5001);
        assert_eq!(sum_for(&p, partial, Some(ORG_B)), 4999);
    }
    for o in &p.payment_options {
        let s: i64 = o.transfers.iter().map(|t| t.amount.cents()).sum();
        assert_eq!(s, o.amount.cents());
        assert!(o.transfers.iter().all(|t| t.amount.cents() > 0));
    }
    // a one-cent share: the beneficiary is left out of the installments it has no cent in
    let mut doc = Doc::new("SPLIT-2", "SP-2", "100.00");
    doc.rate = vec![
        Rata(1, "31/01/2099", "50.00", None),
        Rata(2, "28/02/2099", "50.00", None),
    ];
    doc.tributi = vec![
        Tributo("A", "0.01", None, None),
        Tributo("B", "99.99", Some(ORG_B), Some(IBAN_B)),
    ];
    send(&app, &doc).await.assert_esito("00");
    let p = app.store.ledger.get(&org_a(), "SPLIT-2").unwrap().unwrap();
    assert_eq!(sum_for(&p, true, None), 1);
    assert_eq!(sum_for(&p, true, Some(ORG_B)), 9999);
    // after a discharge the residual shares hold exactly too
    let mut doc = Doc::new("SPLIT-3", "SP-3", "100.00");
    doc.rate = vec![
        Rata(1, "31/01/2099", "33.33", None),
        Rata(2, "28/02/2099", "33.33", None),
        Rata(3, "31/03/2099", "33.34", None),
    ];
    doc.tributi = vec![
        Tributo("A", "60.00", None, None),
        Tributo("B", "40.00", Some(ORG_B), Some(IBAN_B)),
    ];
    send(&app, &doc).await.assert_esito("00");
    call(
        &app,
        &discharge_xml("SPLIT-3", &[("A", 1, "59.99")]),
        Cred::Key(KEY_A),
    )
    .await
    .assert_esito("00");
    let p = app.store.ledger.get(&org_a(), "SPLIT-3").unwrap().unwrap();
    assert_eq!(sum_for(&p, true, None), 1);
    assert_eq!(sum_for(&p, true, Some(ORG_B)), 4000);
    assert_eq!(sum_for(&p, false, None), 1);
    // document numbers as Enti write them
    send(&app, &Doc::new("123/2026", "SP-4", "5.00"))
        .await
        .assert_esito("00");
    assert!(app
        .store
        .ledger
        .get(&org_a(), "123/2026")
        .unwrap()
        .is_some());
}

#[actix_rt::test]
async fn two_organizations_cannot_share_mpay_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mpay.toml");
    let text = config_text(&dir.path().join("data"))
        .replace("codice_ente = \"00936\"", "codice_ente = \"05671\"");
    std::fs::write(&cfg, text).unwrap();
    let settings = mpay_config::Settings::load(&mpay_config::Sources {
        demo: false,
        file: Some(cfg),
        env: false,
    })
    .unwrap();
    let err = match mpay::app::Application::build(settings, false).await {
        Ok(_) => panic!("shared MPay codes accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("MPay codes"), "{err}");
}

#[actix_rt::test]
async fn every_document_write_is_a_position_event_on_the_bus() {
    let app = spawn_app().await;
    let mut events = position_events(&app).await;
    let mut doc = Doc::new("EVT-1", "E-1", "100.00");
    doc.tributi = vec![Tributo("3944", "100.00", None, None)];
    send(&app, &doc).await.assert_esito("00");
    expect_position_event(&mut events, "position.created", ORG_A, "EVT-1").await;
    call(
        &app,
        &discharge_xml("EVT-1", &[("3944", 1, "30.00")]),
        Cred::Key(KEY_A),
    )
    .await
    .assert_esito("00");
    expect_position_event(&mut events, "position.updated", ORG_A, "EVT-1").await;
    call(&app, &cancel_xml("05671", "EVT-1"), Cred::Key(KEY_A))
        .await
        .assert_esito("00");
    expect_position_event(&mut events, "position.cancelled", ORG_A, "EVT-1").await;
}
