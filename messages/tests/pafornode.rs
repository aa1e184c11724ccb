//! The station codec on the spec pack's example messages (read at run time from
//! `../shared/pagopa/examples`; skipped loudly when absent) and on hand-made edge cases.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use mpay_messages::wire::faults::{Fault, FaultCode};
use mpay_messages::wire::pafornode::*;
use mpay_messages::Amount;

fn examples() -> Option<PathBuf> {
    let dir = std::env::var_os("PAGOPA_EXAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/pagopa/examples")
        });
    if dir.is_dir() {
        Some(dir)
    } else {
        if std::env::var_os("MPAY_REQUIRE_SHARED").is_some_and(|v| v == "1") {
            panic!("reference material missing and MPAY_REQUIRE_SHARED=1");
        }
        eprintln!(
            "SKIPPED: pagoPA examples not found at {} (set PAGOPA_EXAMPLES)",
            dir.display()
        );
        None
    }
}

#[test]
fn every_example_request_decodes() {
    let Some(dir) = examples() else { return };
    let mut n = 0;
    let mut stamps = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("pa") || !name.contains("_req") || !name.ends_with(".xml") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let (op, req) = decode_request(&bytes, None).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(name.starts_with(op.name()), "{name} decoded as {op:?}");
        assert_eq!(req.ids().id_broker_pa, "99999999999");
        n += 1;
        if let Request::SendRt {
            receipt, v2: true, ..
        } = &req
        {
            let stamp = receipt
                .transfers
                .iter()
                .find_map(|t| t.marca_da_bollo.clone())
                .expect("stamp decoded");
            assert_eq!(stamp.amount, Some(Amount::from_cents(1600).unwrap()));
            assert_eq!(
                stamp.document_digest,
                "6Uh9j7P6PGFQxX6O2IdHaM/RtBaNjgsmFG+MmDzbcgg="
            );
            assert_eq!(receipt.payment_amount.cents(), 2600);
            assert_eq!(receipt.payment_note.as_deref(), Some("CART-2026-0001"));
            stamps += 1;
        }
    }
    assert_eq!(n, 6, "one example request per operation");
    assert_eq!(stamps, 1, "the V2 receipt with its marca da bollo");
}

#[test]
fn the_qualified_child_example_is_a_schema_error() {
    let Some(dir) = examples() else { return };
    let bytes =
        std::fs::read(dir.join("negative/paVerifyPaymentNotice_req_INVALID_qualified_child.xml"))
            .unwrap();
    let err = decode_request(&bytes, None).unwrap_err();
    assert_eq!(err.operation, Some(Operation::VerifyPaymentNotice));
    assert_eq!(err.error.fault_code(), FaultCode::SintassiXsd);
}

const VERIFY: &str = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><p:paVerifyPaymentNoticeReq xmlns:p="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><idPA>77777777777</idPA><idBrokerPA>99999999999</idBrokerPA><idStation>99999999999_01</idStation><qrCode><fiscalCode>77777777777</fiscalCode><noticeNumber>312202600000000171</noticeNumber></qrCode></p:paVerifyPaymentNoticeReq></s:Body></s:Envelope>"#;

#[test]
fn prefixes_do_not_matter_namespaces_do() {
    let (op, _) = decode_request(VERIFY.as_bytes(), None).unwrap();
    assert_eq!(op, Operation::VerifyPaymentNotice);
    // default namespace on the wrapper, children reset to no namespace
    let default_ns = VERIFY
        .replace(
            "<p:paVerifyPaymentNoticeReq xmlns:p=",
            "<paVerifyPaymentNoticeReq xmlns=",
        )
        .replace(
            "</p:paVerifyPaymentNoticeReq>",
            "</paVerifyPaymentNoticeReq>",
        )
        .replace("<idPA>", "<idPA xmlns=\"\">");
    // idBrokerPA etc. are now qualified: a schema error
    let e = decode_request(default_ns.as_bytes(), None).unwrap_err();
    assert_eq!(e.error.fault_code(), FaultCode::SintassiXsd, "{e:?}");
    // wrong namespace on the wrapper
    let wrong = VERIFY.replace("pa/paForNode.xsd", "paForNode");
    let e = decode_request(wrong.as_bytes(), None).unwrap_err();
    assert_eq!(
        (e.operation, e.error.fault_code()),
        (Some(Operation::VerifyPaymentNotice), FaultCode::SintassiXsd)
    );
    // not XML at all, with a SOAPAction naming the operation
    let e = decode_request(b"hello", Some("\"paGetPaymentV2\"")).unwrap_err();
    assert_eq!(
        (e.operation, e.error.fault_code()),
        (Some(Operation::GetPaymentV2), FaultCode::SintassiExtraXsd)
    );
    // unknown operation
    let unknown = VERIFY.replace("paVerifyPaymentNoticeReq", "paDoSomething");
    let e = decode_request(unknown.as_bytes(), None).unwrap_err();
    assert_eq!(
        (e.operation, e.error.fault_code()),
        (None, FaultCode::SintassiExtraXsd)
    );
    // element order matters
    let swapped = VERIFY.replace(
        "<idBrokerPA>99999999999</idBrokerPA><idStation>99999999999_01</idStation>",
        "<idStation>99999999999_01</idStation><idBrokerPA>99999999999</idBrokerPA>",
    );
    assert!(decode_request(swapped.as_bytes(), None).is_err());
    // entity expansion is refused
    let dtd = format!("<!DOCTYPE x [<!ENTITY a \"aaaa\">]>{VERIFY}");
    let e = decode_request(dtd.as_bytes(), None).unwrap_err();
    assert_eq!(e.error.fault_code(), FaultCode::SintassiExtraXsd);
}

fn sample_payment(v2_stamp: bool) -> PaymentData {
    PaymentData {
        creditor_reference_id: "12202600000000171".into(),
        payment_amount: Amount::from_cents(2600).unwrap(),
        due_date: chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
        description: "Certificato\u{7} con <marca> & bollo".into(),
        company_name: "Comune di Esempio".into(),
        office_name: None,
        debtor: Subject {
            kind: "F".into(),
            id_value: "RSSMRA80A01H501U".into(),
            full_name: "Mario Rossi".repeat(10),
            email: Some("not an email".into()),
            country: Some("IT".into()),
            ..Default::default()
        },
        transfers: vec![
            PaymentTransfer {
                id_transfer: 1,
                amount: Amount::from_cents(1000).unwrap(),
                fiscal_code_pa: "77777777777".into(),
                company_name: Some("Comune di Esempio".into()),
                account: Account::Iban("IT56B9999999999000000000001".into()),
                remittance_information: "Diritti".into(),
                transfer_category: "0101002IM".into(),
                metadata: vec![("k".into(), "v".into())],
            },
            PaymentTransfer {
                id_transfer: 2,
                amount: Amount::from_cents(1600).unwrap(),
                fiscal_code_pa: "77777777777".into(),
                company_name: None,
                account: if v2_stamp {
                    Account::Stamp {
                        hash_document: "6Uh9j7P6PGFQxX6O2IdHaM/RtBaNjgsmFG+MmDzbcgg=".into(),
                        stamp_type: "01".into(),
                        province: "AN".into(),
                    }
                } else {
                    Account::Iban("IT56B9999999999000000000001".into())
                },
                remittance_information: "Bollo".into(),
                transfer_category: "0101002IM".into(),
                metadata: vec![],
            },
        ],
        metadata: vec![],
    }
}

#[test]
fn encoded_responses_are_schema_valid() {
    let notice = NoticeDescription {
        option: OptionDescription {
            amount: Amount::from_cents(12050).unwrap(),
            due_date: chrono::NaiveDate::from_ymd_opt(2026, 12, 31),
            detail_description: Some("TARI".into()),
            all_ccp: false,
        },
        payment_description: "TARI 2026".into(),
        fiscal_code_pa: "77777777777".into(),
        company_name: "Comune".into(),
        office_name: Some("".into()),
    };
    let cases = [
        (
            Operation::VerifyPaymentNotice,
            Response::Verify(notice.clone()),
        ),
        (
            Operation::GetPayment,
            Response::GetPayment(Box::new(sample_payment(false))),
        ),
        (
            Operation::GetPaymentV2,
            Response::GetPayment(Box::new(sample_payment(true))),
        ),
        (Operation::SendRt, Response::SendRt),
        (Operation::SendRtV2, Response::SendRt),
        (
            Operation::DemandPaymentNotice,
            Response::Demand(
                QrCode {
                    fiscal_code: "77777777777".into(),
                    notice_number: "312202600000000171".into(),
                },
                notice,
            ),
        ),
    ];
    for (op, r) in cases {
        let xml = encode_ok(op, &r);
        check_response(op, &xml).unwrap_or_else(|e| panic!("{op:?}: {e}\n{xml}"));
    }
    for op in Operation::ALL {
        for code in FaultCode::ALL {
            let xml = encode_fault(
                op,
                &Fault {
                    code,
                    id: "77777777777".into(),
                    description: "x < y & \u{1}".into(),
                },
            );
            check_response(op, &xml).unwrap_or_else(|e| panic!("{op:?} {code:?}: {e}"));
            assert!(xml.contains(code.code()));
        }
    }
}
