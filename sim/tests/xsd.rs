//! XSD checks with libxml2 on the spec pack's examples and on every message the simulator builds.
//!
//! The schemas and examples are read at run time from `$PAGOPA_SCHEMAS` (examples: its sibling
//! `examples/`) or `<workspace>/../shared/pagopa/`; when absent each test prints a loud
//! `SKIPPED:` line and returns.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand::SeedableRng;

use pagopa_sim::amount::Cents;
use pagopa_sim::build::{
    demand_request, get_payment_request, marca_da_bollo_xml, receipt_from_payment, send_rt_request,
    stand_in_receipt, verify_request, GetPaymentOpts, MarcaDaBollo, PspInfo, QrCode,
    ReceiptAccount, ReceiptDates, ReceiptOpts, StandInInput, StationIds, Version,
};
use pagopa_sim::model::{parse_payment_data, parse_response, parse_verify_data, Subject};
use pagopa_sim::validate::{schemas_dir_for_tests, Validator};
use pagopa_sim::xml::{extract_body_child, parse_document};

fn setup(test: &str) -> Option<(Validator, PathBuf)> {
    let schemas = schemas_dir_for_tests(test)?;
    let examples = schemas.join("../examples");
    if !examples.join("paVerifyPaymentNotice_req.xml").is_file() {
        let msg = format!(
            "\nSKIPPED: {test}: pagoPA examples not found at {}",
            examples.display()
        );
        pagopa_sim::validate::loud(&msg);
        return None;
    }
    let v = match Validator::load(&schemas) {
        Ok(v) => v,
        Err(e) => panic!("schemas present but not loadable: {e}"),
    };
    Some((v, examples))
}

fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    out.sort();
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn ids() -> StationIds {
    StationIds {
        id_pa: "77777777777".into(),
        id_broker_pa: "99999999999".into(),
        id_station: "99999999999_01".into(),
    }
}

fn psp() -> PspInfo {
    PspInfo {
        id_psp: "88888888888".into(),
        fiscal_code: Some("88888888888".into()),
        partita_iva: Some("88888888888".into()),
        company_name: "PSP di Prova S.p.A.".into(),
        id_channel: "88888888888_01".into(),
        channel_description: "app".into(),
        payment_method: Some("creditCard".into()),
        fee: Some(Cents(150)),
    }
}

fn must_validate(v: &mut Validator, what: &str, xml: &str) {
    if let Err(errs) = v.validate_soap(xml.as_bytes()) {
        panic!("{what} does not validate:\n{}\n---\n{xml}", errs.join("\n"));
    }
}

#[test]
fn every_example_validates() {
    let Some((mut v, examples)) = setup("every_example_validates") else {
        return;
    };
    let mut n_soap = 0;
    for f in xml_files(&examples) {
        let text = read(&f);
        let res = if extract_body_child(&text).is_ok() {
            n_soap += 1;
            v.validate_soap(text.as_bytes()).map(|_| ())
        } else {
            v.validate_standalone(&text)
        };
        if let Err(errs) = res {
            panic!("{} should validate:\n{}", f.display(), errs.join("\n"));
        }
    }
    assert!(n_soap >= 15, "only {n_soap} SOAP examples found");
}

#[test]
fn every_negative_example_fails() {
    let Some((mut v, examples)) = setup("every_negative_example_fails") else {
        return;
    };
    let files = xml_files(&examples.join("negative"));
    assert!(!files.is_empty());
    for f in files {
        let text = read(&f);
        assert!(
            v.validate_soap(text.as_bytes()).is_err(),
            "{} should FAIL validation",
            f.display()
        );
    }
}

#[test]
fn mutations_fail() {
    let Some((mut v, examples)) = setup("mutations_fail") else {
        return;
    };
    let ok = read(&examples.join("paVerifyPaymentNotice_res_OK.xml"));
    must_validate(&mut v, "original", &ok);
    let cases = [
        ("<amount>150.00</amount>", "<amount>150</amount>"),
        ("<outcome>OK</outcome>", "<outcome>ok</outcome>"),
        (
            "<fiscalCodePA>77777777777</fiscalCodePA>",
            "<fiscalCodePA>7777777777</fiscalCodePA>",
        ),
        ("<options>EQ</options>", ""),
        // default namespace makes the children qualified: invalid
        (
            "<pafn:paVerifyPaymentNoticeRes>",
            "<pafn:paVerifyPaymentNoticeRes xmlns=\"http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd\">",
        ),
        // wrong wrapper namespace
        (
            "xmlns:pafn=\"http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd\"",
            "xmlns:pafn=\"http://pagopa-api.pagopa.gov.it/paForNode\"",
        ),
    ];
    for (from, to) in cases {
        let bad = ok.replacen(from, to, 1);
        assert_ne!(bad, ok, "mutation {from:?} did not apply");
        assert!(
            v.validate_soap(bad.as_bytes()).is_err(),
            "mutation {from:?} -> {to:?} should fail"
        );
    }
    // two Body children
    let two = ok.replace(
        "</pafn:paVerifyPaymentNoticeRes>",
        "</pafn:paVerifyPaymentNoticeRes><pafn:paSendRTRes><outcome>OK</outcome></pafn:paSendRTRes>",
    );
    assert!(v.validate_soap(two.as_bytes()).is_err());
    // other prefixes: still valid
    let other = ok
        .replace("soapenv:", "S:")
        .replace("xmlns:soapenv=", "xmlns:S=")
        .replace("pafn:", "x:")
        .replace("xmlns:pafn=", "xmlns:x=");
    must_validate(&mut v, "renamed prefixes", &other);
    // wrapper namespace declared on Body instead of Envelope: still valid
    let on_body = ok
        .replace(
            " xmlns:pafn=\"http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd\"",
            "",
        )
        .replace(
            "<soapenv:Body>",
            "<soapenv:Body xmlns:pafn=\"http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd\">",
        );
    assert_ne!(on_body, ok);
    must_validate(&mut v, "declaration on Body", &on_body);
}

#[test]
fn built_requests_validate() {
    let Some((mut v, examples)) = setup("built_requests_validate") else {
        return;
    };
    let qr = QrCode {
        fiscal_code: "77777777777".into(),
        notice_number: "312202600000000171".into(),
    };
    must_validate(&mut v, "verify", &verify_request(&ids(), &qr));
    for ver in [Version::V1, Version::V2] {
        must_validate(
            &mut v,
            "getPayment (bare)",
            &get_payment_request(ver, &ids(), &qr, &GetPaymentOpts::default()),
        );
        let full = GetPaymentOpts {
            amount: Some(Cents(15000)),
            payment_note: Some("CART <&> 'x'".into()),
            transfer_type: Some("POSTAL".into()),
            due_date: Some("2026-12-31".into()),
        };
        must_validate(
            &mut v,
            "getPayment (full)",
            &get_payment_request(ver, &ids(), &qr, &full),
        );
    }
    let tassa = std::fs::read(examples.join("datiSpecificiServizio_tassaAuto_sample.xml")).unwrap();
    must_validate(
        &mut v,
        "demand",
        &demand_request(&ids(), "00001", "00001", &tassa),
    );
}

#[test]
fn built_receipts_validate() {
    let Some((mut v, examples)) = setup("built_receipts_validate") else {
        return;
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let dates = ReceiptDates::now();

    // V1 receipt from the multi-beneficiary V1 answer, then also as V2
    let res = parse_response(&read(
        &examples.join("paGetPayment_res_OK_multibeneficiary.xml"),
    ))
    .unwrap();
    let data = parse_payment_data(res.body.child("data").unwrap()).unwrap();
    assert_eq!(data.payment_amount, Cents(15000));
    assert_eq!(data.transfers_total(), data.payment_amount);
    let qr = QrCode {
        fiscal_code: "77777777777".into(),
        notice_number: "312202600000000171".into(),
    };
    for ver in [Version::V1, Version::V2] {
        let r = receipt_from_payment(
            ver,
            &qr,
            &data,
            &psp(),
            &dates,
            &ReceiptOpts::default(),
            &mut rng,
        )
        .unwrap();
        let xml = send_rt_request(ver, &ids(), &r).unwrap();
        must_validate(&mut v, "sendRT from multibeneficiary", &xml);
        // echo: the built receipt carries the transfers and metadata of the answer
        let dom = parse_document(&extract_body_child(&xml).unwrap().document).unwrap();
        let rc = dom.child("receipt").unwrap();
        assert_eq!(rc.text_of("paymentAmount"), Some("150.00"));
        assert_eq!(
            rc.child("transferList")
                .unwrap()
                .children_named("transfer")
                .count(),
            2
        );
        assert_eq!(rc.text_of("standIn"), Some("false"));
        assert!(xml.contains("<key>idPosizioneInterna</key>"));
        assert!(xml.contains("<key>capitoloBilancio</key>"));
    }

    // V2 receipt with a stamp: MBDAttachment built from richiestaMarcaDaBollo
    let res = parse_response(&read(
        &examples.join("paGetPaymentV2_res_OK_with_marca_da_bollo.xml"),
    ))
    .unwrap();
    let data = parse_payment_data(res.body.child("data").unwrap()).unwrap();
    let qr2 = QrCode {
        fiscal_code: "77777777777".into(),
        notice_number: "312202600000000272".into(),
    };
    let opts = ReceiptOpts {
        payment_note: Some("CART-2026-0001".into()),
        id_bundle: Some("bundle-0001".into()),
        primary_ci_incurred_fee: Some(Cents(0)),
        ..ReceiptOpts::default()
    };
    let r =
        receipt_from_payment(Version::V2, &qr2, &data, &psp(), &dates, &opts, &mut rng).unwrap();
    let ReceiptAccount::MbdAttachment(b64) = &r.transfers[1].account else {
        panic!("transfer 2 should carry an MBDAttachment");
    };
    let mbd = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap();
    v.validate_standalone(&mbd)
        .unwrap_or_else(|e| panic!("marcaDaBollo invalid: {e:?}\n{mbd}"));
    let md = parse_document(&mbd).unwrap();
    let digest = md
        .children
        .iter()
        .find(|c| c.name == "ImprontaDocumento")
        .and_then(|i| i.children.iter().find(|c| c.name == "DigestValue"))
        .unwrap();
    assert_eq!(
        digest.trimmed(),
        "6Uh9j7P6PGFQxX6O2IdHaM/RtBaNjgsmFG+MmDzbcgg="
    );
    let importo = md.children.iter().find(|c| c.name == "Importo").unwrap();
    assert_eq!(importo.trimmed(), "16.00");
    let xml = send_rt_request(Version::V2, &ids(), &r).unwrap();
    must_validate(&mut v, "sendRTV2 with stamp", &xml);
    assert!(xml.contains("<paymentNote>CART-2026-0001</paymentNote>"));
    // a stamp cannot travel in V1
    assert!(
        receipt_from_payment(Version::V1, &qr2, &data, &psp(), &dates, &opts, &mut rng).is_err()
    );
    assert!(send_rt_request(Version::V1, &ids(), &r).is_err());

    // Stand-In receipts, same and different amount, with characters that need escaping
    for (amount, desc) in [
        (Cents(15000), "TARI 2026"),
        (Cents(15100), "Tassa <rifiuti> & \"altro\" l'anno"),
    ] {
        let input = StandInInput {
            notice: qr.clone(),
            amount,
            description: desc.into(),
            company_name: "Comune di Esempio & C.".into(),
            iban: "IT56B9999999999000000000001".into(),
            transfer_category: "0101100IM".into(),
            debtor: Subject::anonymous(),
        };
        let r = stand_in_receipt(&input, &psp(), &dates, &mut rng);
        for ver in [Version::V1, Version::V2] {
            let xml = send_rt_request(ver, &ids(), &r).unwrap();
            must_validate(&mut v, "stand-in receipt", &xml);
            let dom = parse_document(&extract_body_child(&xml).unwrap().document).unwrap();
            let rc = dom.child("receipt").unwrap();
            assert_eq!(rc.text_of("standIn"), Some("true"));
            assert_eq!(rc.text_of("description"), Some(desc));
            assert_eq!(rc.text_of("paymentAmount"), Some(amount.to_xml().as_str()));
            assert_eq!(rc.text_of("creditorReferenceId"), Some("12202600000000171"));
        }
    }
}

#[test]
fn built_marca_da_bollo_validates() {
    let Some((mut v, _)) = setup("built_marca_da_bollo_validates") else {
        return;
    };
    let xml = marca_da_bollo_xml(&MarcaDaBollo {
        psp_fiscal_code: "88888888888".into(),
        psp_name: "PSP & Co".into(),
        iubd: "01234567890123".into(),
        ora_acquisto: "2026-07-02T10:20:00+02:00".into(),
        importo: Cents(1600),
        tipo_bollo: "01".into(),
        digest_value: "6Uh9j7P6PGFQxX6O2IdHaM/RtBaNjgsmFG+MmDzbcgg=".into(),
    });
    v.validate_standalone(&xml)
        .unwrap_or_else(|e| panic!("{e:?}\n{xml}"));
}

#[test]
fn example_answers_read_back() {
    let Some((_v, examples)) = setup("example_answers_read_back") else {
        return;
    };
    let r = parse_response(&read(&examples.join("paVerifyPaymentNotice_res_OK.xml"))).unwrap();
    assert_eq!(r.label(), "OK");
    let d = parse_verify_data(&r.body).unwrap();
    assert_eq!(d.amount, Some(Cents(15000)));
    assert_eq!(d.company_name.as_deref(), Some("Comune di Esempio"));
    let r = parse_response(&read(
        &examples.join("paVerifyPaymentNotice_res_KO_PAGAMENTO_SCONOSCIUTO.xml"),
    ))
    .unwrap();
    assert_eq!(r.label(), "PAA_PAGAMENTO_SCONOSCIUTO");
    let r = parse_response(&read(
        &examples.join("paSendRT_res_KO_RECEIPT_DUPLICATA.xml"),
    ))
    .unwrap();
    assert_eq!(r.label(), "PAA_RECEIPT_DUPLICATA");
    assert_eq!(r.element, "paSendRTRes");
    let r = parse_response(&read(&examples.join("paDemandPaymentNotice_res_OK.xml"))).unwrap();
    let d = parse_verify_data(&r.body).unwrap();
    assert_eq!(
        d.qr_code,
        Some(("77777777777".to_string(), "312202600000000373".to_string()))
    );
}
