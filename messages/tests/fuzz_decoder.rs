//! Property-based fuzzing of the station codec (DESIGN §10): `decode_request` on arbitrary bytes,
//! on XML-ish token soups and on structured mutations of valid requests, and the response
//! encoders on arbitrary data.
//!
//! Properties: no panic; every call returns within a bounded time; every accepted request
//! re-encodes (with the canonical writer below) to a message that decodes to the same value;
//! every rejection carries PAA_SINTASSI_XSD or PAA_SINTASSI_EXTRAXSD; every encoded response
//! passes our own schema check (`check_response`).
//!
//! Bounded for CI: a few thousand cases in total, a few seconds. Raise with
//! `PROPTEST_CASES=100000 cargo test -p mpay-messages --test fuzz_decoder --release`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{wrap, write_request};
use mpay_messages::wire::faults::{Fault, FaultCode};
use mpay_messages::wire::pafornode::*;
use mpay_messages::Amount;
use proptest::prelude::*;

mod common;

/// Decodes slower than this are printed (a real one takes microseconds).
const MAX_DECODE: Duration = Duration::from_millis(500);

const IDS: &str = "<idPA>77777777777</idPA><idBrokerPA>99999999999</idBrokerPA><idStation>99999999999_01</idStation>";
const QR: &str = "<qrCode><fiscalCode>77777777777</fiscalCode><noticeNumber>312202600000000171</noticeNumber></qrCode>";
const SUBJECT: &str = "<uniqueIdentifier><entityUniqueIdentifierType>F</entityUniqueIdentifierType><entityUniqueIdentifierValue>RSSMRA80A01H501U</entityUniqueIdentifierValue></uniqueIdentifier><fullName>Mario Rossi</fullName><streetName>Via Roma</streetName><civicNumber>1</civicNumber><postalCode>60100</postalCode><city>Ancona</city><stateProvinceRegion>AN</stateProvinceRegion><country>IT</country><e-mail>m.r@example.org</e-mail>";

fn receipt(v2: bool) -> String {
    let mbd = base64::engine::general_purpose::STANDARD.encode(
        r#"<marcaDaBollo xmlns="http://www.agenziaentrate.gov.it/2014/MarcaDaBollo"><PSP><CodiceFiscale>88888888888</CodiceFiscale><Denominazione>PSP</Denominazione></PSP><IUBD>01234567890123</IUBD><OraAcquisto>2026-07-02T10:20:00</OraAcquisto><Importo>16.00</Importo><TipoBollo>01</TipoBollo><ImprontaDocumento><DigestValue>AAAA</DigestValue></ImprontaDocumento></marcaDaBollo>"#,
    );
    let t2 = if v2 {
        format!("<transfer><idTransfer>2</idTransfer><transferAmount>16.00</transferAmount><fiscalCodePA>77777777777</fiscalCodePA><companyName>Comune</companyName><MBDAttachment>{mbd}</MBDAttachment><remittanceInformation>Bollo</remittanceInformation><transferCategory>9/0101002IM/</transferCategory></transfer>")
    } else {
        "<transfer><idTransfer>2</idTransfer><transferAmount>16.00</transferAmount><fiscalCodePA>77777777777</fiscalCodePA><IBAN>IT56B9999999999000000000002</IBAN><remittanceInformation>Bollo</remittanceInformation><transferCategory>9/0101002IM/</transferCategory></transfer>".to_string()
    };
    let v2_fields = if v2 {
        "<paymentNote>CART-1</paymentNote><fee>1.50</fee><primaryCiIncurredFee>0.10</primaryCiIncurredFee><idBundle>b1</idBundle><idCiBundle>cb1</idCiBundle>"
    } else {
        "<fee>1.50</fee>"
    };
    format!(
        "{IDS}<receipt><receiptId>7d41c0e2a9b84f5c8e3a2b1c0d9e8f7a</receiptId><noticeNumber>312202600000000171</noticeNumber><fiscalCode>77777777777</fiscalCode><outcome>OK</outcome><creditorReferenceId>12202600000000171</creditorReferenceId><paymentAmount>26.00</paymentAmount><description>TARI &amp; bollo</description><companyName>Comune</companyName><officeName>Tributi</officeName><debtor>{SUBJECT}</debtor><transferList><transfer><idTransfer>1</idTransfer><transferAmount>10.00</transferAmount><fiscalCodePA>77777777777</fiscalCodePA><IBAN>IT56B9999999999000000000001</IBAN><remittanceInformation>TARI</remittanceInformation><transferCategory>9/0101002IM/</transferCategory><metadata><mapEntry><key>k</key><value>v</value></mapEntry></metadata></transfer>{t2}</transferList><idPSP>88888888888</idPSP><pspFiscalCode>88888888888</pspFiscalCode><pspPartitaIVA>88888888888</pspPartitaIVA><PSPCompanyName>PSP</PSPCompanyName><idChannel>88888888888_01</idChannel><channelDescription>app</channelDescription><payer>{SUBJECT}</payer><paymentMethod>creditCard</paymentMethod>{v2_fields}<paymentDateTime>2026-07-02T10:20:00</paymentDateTime><applicationDate>2026-07-02</applicationDate><transferDate>2026-07-03</transferDate><metadata><mapEntry><key>a</key><value>b</value></mapEntry></metadata><standIn>true</standIn></receipt>"
    )
}

/// Valid requests of every operation.
fn seeds() -> Vec<String> {
    vec![
        wrap("paVerifyPaymentNoticeReq", &format!("{IDS}{QR}")),
        wrap("paGetPaymentReq", &format!("{IDS}{QR}")),
        wrap(
            "paGetPaymentV2Request",
            &format!("{IDS}{QR}<amount>150.00</amount><paymentNote>CART &lt;1&gt;</paymentNote><transferType>POSTAL</transferType><dueDate>2026-12-31</dueDate>"),
        ),
        wrap("paSendRTReq", &receipt(false)),
        wrap("paSendRTV2Request", &receipt(true)),
        wrap(
            "paDemandPaymentNoticeRequest",
            &format!("{IDS}<idServizio>00001</idServizio><idSoggettoServizio>00002</idSoggettoServizio><datiSpecificiServizioRequest>PHg+MTwveD4=</datiSpecificiServizioRequest>"),
        ),
    ]
}

/// Decodes (reporting slow decodes) and checks the properties of the answer.
fn check_decode(bytes: &[u8]) -> Option<(Operation, Request)> {
    let t = Instant::now();
    let res = decode_request(bytes, Some("paVerifyPaymentNotice"));
    let took = t.elapsed();
    // Reported, never asserted (tests do not fail on timing): a slow decode is a finding.
    if took > MAX_DECODE {
        eprintln!("SLOW DECODE: {took:?} on {} bytes", bytes.len());
    }
    match res {
        Ok((op, r)) => {
            // a receipt read despite XSD departures (collected money is never refused) is not
            // canonical: the round trip applies to schema-valid requests
            let departed =
                matches!(&r, Request::SendRt { departures, .. } if !departures.is_empty());
            if !departed {
                // re-encode canonically and decode again: same request
                let again = write_request(op, &r);
                let (op2, r2) = decode_request(again.as_bytes(), None)
                    .unwrap_or_else(|e| panic!("re-encoded request refused: {e:?}\n{again}"));
                assert_eq!(op, op2);
                assert_eq!(r, r2, "round trip changed the request\n{again}");
            }
            // a fault answer for it is schema-valid
            let fault = Fault {
                code: FaultCode::PagamentoSconosciuto,
                id: r.ids().id_pa.clone(),
                description: format!("notice of {}", r.ids().id_station),
            };
            check_response(op, &encode_fault(op, &fault)).expect("fault answer valid");
            Some((op, r))
        }
        Err(rej) => {
            assert!(matches!(
                rej.error.fault_code(),
                FaultCode::SintassiXsd | FaultCode::SintassiExtraXsd
            ));
            if let Some(op) = rej.operation {
                let fault = Fault {
                    code: rej.error.fault_code(),
                    id: "77777777777".into(),
                    description: rej.error.to_string(),
                };
                check_response(op, &encode_fault(op, &fault)).expect("rejection answer valid");
            } else {
                // the SOAP Fault must at least be well-formed XML
                mpay_messages::wire::xml::parse(
                    encode_soap_fault(&rej.error.to_string()).as_bytes(),
                )
                .expect("SOAP fault well-formed");
            }
            None
        }
    }
}

#[test]
fn seeds_decode_and_round_trip() {
    for s in seeds() {
        assert!(check_decode(s.as_bytes()).is_some(), "seed refused: {s}");
    }
}

// ---- strategies -------------------------------------------------------------------------------

const TOKENS: &[&str] = &[
    "<",
    ">",
    "</",
    "/>",
    "=",
    "\"",
    "'",
    " ",
    "\n",
    "\r",
    "\t",
    "&",
    ";",
    "&amp;",
    "&lt;",
    "&#",
    "&#x",
    "&#13;",
    "&#0;",
    "&foo;",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<?",
    "?>",
    "<?xml version=\"1.0\"?>",
    "<!DOCTYPE x>",
    "xmlns",
    "xmlns:",
    "xmlns=\"\"",
    ":",
    "soapenv",
    "pafn",
    "http://schemas.xmlsoap.org/soap/envelope/",
    "http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd",
    "Envelope",
    "Header",
    "Body",
    "paVerifyPaymentNoticeReq",
    "paSendRTV2Request",
    "receipt",
    "idPA",
    "qrCode",
    "noticeNumber",
    "transferList",
    "transfer",
    "idTransfer",
    "1",
    "0",
    "9",
    "77777777777",
    "312202600000000171",
    "150.00",
    "2026-02-30",
    "true",
    "QUJD",
    "==",
    "\u{e8}",
    "\u{1F600}",
    "\u{feff}",
    "\u{0}",
    "\u{1}",
    "\u{FFFF}",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..120).prop_map(|v| v.concat())
}

fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,20}",
        "[0-9]{1,10}\\.[0-9]{0,3}",
        "[ \t\r\n]{0,3}[0-9a-zA-Z+/=.:-]{0,40}[ \t\r\n]{0,3}",
        "\\PC{0,300}",
        prop::sample::select(TOKENS).prop_map(str::to_string),
        Just(String::new()),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the text between the n-th `>` and the next `<`.
    Value(usize, String),
    /// Delete a byte range (clamped to char boundaries).
    Delete(usize, usize),
    /// Insert raw text at a position.
    Insert(usize, String),
    /// Duplicate a range right after itself.
    Duplicate(usize, usize),
    /// Swap the n-th element of the message with the next element start.
    SwapTags(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), value_text()).prop_map(|(i, v)| Mutation::Value(i, v)),
        1 => (any::<usize>(), 0usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        2 => (any::<usize>(), prop_oneof![token_soup(), value_text()]).prop_map(|(i, s)| Mutation::Insert(i, s)),
        1 => (any::<usize>(), 0usize..200).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        1 => any::<usize>().prop_map(Mutation::SwapTags),
    ]
}

fn boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(s: &mut String, m: &Mutation) {
    if s.is_empty() {
        return;
    }
    match m {
        Mutation::Value(i, v) => {
            let gts: Vec<usize> = s.match_indices('>').map(|(p, _)| p + 1).collect();
            let start = gts[i % gts.len()];
            let end = s[start..].find('<').map_or(s.len(), |e| start + e);
            s.replace_range(start..end, &v.replace('<', "&lt;").replace('&', "&amp;"));
        }
        Mutation::Delete(i, n) => {
            let a = boundary(s, i % s.len());
            let b = boundary(s, a + n);
            s.replace_range(a..b, "");
        }
        Mutation::Insert(i, t) => {
            let a = boundary(s, i % s.len());
            s.insert_str(a, t);
        }
        Mutation::Duplicate(i, n) => {
            let a = boundary(s, i % s.len());
            let b = boundary(s, a + n);
            let part = s[a..b].to_string();
            s.insert_str(b, &part);
        }
        Mutation::SwapTags(i) => {
            // swap two sibling-looking elements `<x>..</x><y>..</y>`
            let starts: Vec<usize> = s.match_indices("><").map(|(p, _)| p + 1).collect();
            if starts.len() < 3 {
                return;
            }
            let a = starts[i % (starts.len() - 2)];
            let b = starts[i % (starts.len() - 2) + 1];
            let c = starts[i % (starts.len() - 2) + 2];
            let (x, y) = (s[a..b].to_string(), s[b..c].to_string());
            s.replace_range(a..c, &format!("{y}{x}"));
        }
    }
}

fn text_any() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,200}",
        ".{0,50}",
        Just(String::new()),
        "[ \t\r\n\u{0}-\u{1f}]{0,5}"
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text_any())
}

fn subject() -> impl Strategy<Value = Subject> {
    (
        text_any(),
        text_any(),
        text_any(),
        opt_text(),
        opt_text(),
        opt_text(),
        opt_text(),
    )
        .prop_map(
            |(kind, id_value, full_name, street, city, country, email)| Subject {
                kind,
                id_value,
                full_name,
                street_name: street,
                civic_number: None,
                postal_code: None,
                city,
                state_province_region: None,
                country,
                email,
            },
        )
}

fn amount() -> impl Strategy<Value = Amount> {
    (1i64..=99_999_999_999).prop_map(|c| Amount::from_cents(c).expect("in range"))
}

fn notice() -> impl Strategy<Value = NoticeDescription> {
    (
        amount(),
        opt_text(),
        any::<bool>(),
        text_any(),
        text_any(),
        opt_text(),
    )
        .prop_map(
            |(amount, detail, all_ccp, desc, company, office)| NoticeDescription {
                option: OptionDescription {
                    amount,
                    due_date: chrono::NaiveDate::from_ymd_opt(2026, 12, 31),
                    detail_description: detail,
                    all_ccp,
                },
                payment_description: desc,
                fiscal_code_pa: "77777777777".into(),
                company_name: company,
                office_name: office,
            },
        )
}

fn payment() -> impl Strategy<Value = PaymentData> {
    (
        text_any(),
        amount(),
        text_any(),
        text_any(),
        opt_text(),
        subject(),
        prop::collection::vec(
            (
                amount(),
                opt_text(),
                text_any(),
                text_any(),
                text_any(),
                prop::collection::vec((text_any(), text_any()), 0..20),
            ),
            1..=5,
        ),
        prop::collection::vec((text_any(), text_any()), 0..20),
    )
        .prop_map(
            |(iuv, total, desc, company, office, debtor, ts, metadata)| PaymentData {
                creditor_reference_id: iuv,
                payment_amount: total,
                due_date: chrono::NaiveDate::from_ymd_opt(2026, 12, 31).expect("date"),
                description: desc,
                company_name: company,
                office_name: office,
                debtor,
                transfers: ts
                    .into_iter()
                    .enumerate()
                    .map(
                        |(i, (amount, company, iban, rem, cat, md))| PaymentTransfer {
                            id_transfer: u8::try_from(i + 1).expect("≤5"),
                            amount,
                            fiscal_code_pa: "77777777777".into(),
                            company_name: company,
                            account: Account::Iban(iban),
                            remittance_information: rem,
                            transfer_category: cat,
                            metadata: md,
                        },
                    )
                    .collect(),
                metadata,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, max_shrink_iters: 2000, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_decode(&bytes);
    }

    #[test]
    fn xml_token_soup(body in token_soup()) {
        check_decode(body.as_bytes());
        // and inside a valid envelope, in place of the wrapper's content
        check_decode(wrap("paVerifyPaymentNoticeReq", &body).as_bytes());
    }

    #[test]
    fn mutated_valid_messages(seed in 0usize..6, muts in prop::collection::vec(mutation(), 1..4)) {
        let mut s = seeds().swap_remove(seed);
        for m in &muts {
            apply(&mut s, m);
        }
        check_decode(s.as_bytes());
    }

    #[test]
    fn verify_and_demand_answers_are_valid(n in notice(), nav in "[0-9]{18}") {
        let xml = encode_ok(Operation::VerifyPaymentNotice, &Response::Verify(n.clone()));
        prop_assert!(check_response(Operation::VerifyPaymentNotice, &xml).is_ok(), "{}", xml);
        let qr = QrCode { fiscal_code: "77777777777".into(), notice_number: nav };
        let xml = encode_ok(Operation::DemandPaymentNotice, &Response::Demand(qr, n));
        prop_assert!(check_response(Operation::DemandPaymentNotice, &xml).is_ok(), "{}", xml);
    }

    #[test]
    fn get_payment_answers_are_valid(p in payment(), v2 in any::<bool>()) {
        let op = if v2 { Operation::GetPaymentV2 } else { Operation::GetPayment };
        let xml = encode_ok(op, &Response::GetPayment(Box::new(p)));
        let r = check_response(op, &xml);
        prop_assert!(r.is_ok(), "{:?}\n{}", r, xml);
    }

    #[test]
    fn fault_answers_are_valid(desc in text_any(), id in text_any(), op in 0usize..6) {
        let op = Operation::ALL[op];
        let fault = Fault { code: FaultCode::Semantica, id, description: desc.clone() };
        let xml = encode_fault(op, &fault);
        let r = check_response(op, &xml);
        prop_assert!(r.is_ok(), "{:?}\n{}", r, xml);
        mpay_messages::wire::xml::parse(encode_soap_fault(&desc).as_bytes()).expect("well-formed");
    }
}
