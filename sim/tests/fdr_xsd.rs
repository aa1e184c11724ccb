//! The simulator's FdR side against the official schemas (libxml2): its flows as
//! FlussoRiversamento (1.0.4 and 1.0.5), its bank statements as camt.053.001.02 and OPI giornale
//! di cassa 1.8 (`../shared/treasury`). Skipped loudly when the reference material is absent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use libxml::parser::Parser;
use libxml::schemas::{SchemaParserContext, SchemaValidationContext};
use pagopa_sim::bank::{camt053, credits, opi, BankArgs, BankFormat, Remittance};
use pagopa_sim::fdr::{build_flows, flow_xml, PaymentRecord, TransferRecord};
use pagopa_sim::validate::{schemas_dir_for_tests, Validator};

fn payments() -> Vec<PaymentRecord> {
    (1..=4)
        .map(|i| PaymentRecord {
            organization: "80001234568".into(),
            notice_number: format!("31200000000000000{i}"),
            iuv: format!("1200000000000000{i}"),
            receipt_id: format!("{i:032x}"),
            psp_id: "88888888888".into(),
            psp_name: "PSP di Prova S.p.A.".into(),
            channel_id: "88888888888_01".into(),
            payment_date_time: format!("2026-07-0{}T1{i}:00:00", 1 + i % 2),
            stand_in: false,
            transfers: vec![TransferRecord {
                id_transfer: 1,
                amount_cents: 1_029 * i64::from(i),
                organization: "80001234568".into(),
                iban: Some("IT47D0103002600000061234567".into()),
            }],
        })
        .collect()
}

fn validate(xsd: &Path, xml: &str) -> Vec<String> {
    let mut parser = SchemaParserContext::from_file(xsd.to_str().unwrap());
    let mut ctx = SchemaValidationContext::from_parser(&mut parser)
        .unwrap_or_else(|e| panic!("{}: {e:?}", xsd.display()));
    let doc = Parser::default().parse_string(xml.as_bytes()).unwrap();
    match ctx.validate_document(&doc) {
        Ok(()) => Vec::new(),
        Err(errs) => errs
            .iter()
            .map(|e| format!("line {:?}: {:?}", e.line, e.message))
            .collect(),
    }
}

#[test]
fn flows_and_statements_validate_against_the_official_schemas() {
    let Some(schemas) = schemas_dir_for_tests("flows_and_statements_validate") else {
        return;
    };
    let treasury: PathBuf = schemas.join("../../treasury");
    let flows = build_flows(&payments(), &[], chrono::Utc::now()).unwrap();
    assert_eq!(flows.flows.len(), 2);
    let mut v = Validator::load(&schemas).unwrap();
    for f in &flows.flows {
        let x = flow_xml(f);
        v.validate_standalone(&x)
            .unwrap_or_else(|e| panic!("{}: {e:?}\n{x}", f.fdr));
    }
    let args = BankArgs {
        flows: PathBuf::new(),
        format: BankFormat::Camt053,
        out: PathBuf::new(),
        organization: Some("80001234568".into()),
        remittance: Remittance::Mixed,
        split: vec![1],
        spaces: vec![2],
        unexplained: vec![4_242],
    };
    let list = credits(&flows, &args);
    assert_eq!(list.len(), 4);
    let camt = camt053(&list);
    let camt_xsd = treasury.join("camt/camt.053.001.02.xsd");
    let errs = validate(&camt_xsd, &camt);
    assert!(errs.is_empty(), "{errs:?}\n{camt}");
    // the check is real: an entry without its status is refused
    assert!(!validate(&camt_xsd, &camt.replacen("<Sts>BOOK</Sts>", "", 1)).is_empty());
    let gdc = opi(&list, "80001234568");
    let opi_xsd = treasury.join("opi/OPI_GIORNALE_DI_CASSA_V_1_8.xsd");
    let errs = validate(&opi_xsd, &gdc);
    assert!(errs.is_empty(), "{errs:?}\n{gdc}");
    assert!(!validate(&opi_xsd, &gdc.replacen("<importo>", "<importo_x>", 1)).is_empty());
}
