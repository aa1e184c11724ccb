//! `ops/bench/recon` (issue 14): reconciliation of a reporting flow against stored receipts, on a
//! real sled store in a temporary directory. Prints, never asserts a timing.
//!
//! 1. **One large flow**: ROWS receipts stored (the station's `apply_receipt`), then a flow of
//!    ROWS rows reporting all of them. Baseline (same run): parsing the flow's XML alone. Timed:
//!    the import (parse + store) and the reconciliation run that files the ROWS receipts and
//!    matches the flow; then the same with the receipts already filed by earlier runs (the
//!    steady state: receipts are filed by the runs that follow their arrival). Peak RSS.
//! 2. **A year, incrementally**: DAYS days of PER_DAY payments: each day its receipts are
//!    stored, a run files them, the day's flow and its bank credit arrive, a run matches them.
//!    The time and the work (receipts read, rows matched, entries read) of the first, middle and
//!    last day's runs: flat when the run reads only what changed, whatever is stored.
//!
//! `cargo run --release -p mpay-storage --example bench_recon -- [ROWS] [DAYS] [PER_DAY]`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Instant;

use chrono::{Duration, NaiveDate, Utc};
use mimalloc::MiMalloc;
use mpay_messages::bank::Credit;
use mpay_messages::domain::ReceiptDisposition;
use mpay_messages::fdr::xml;
use mpay_messages::wire::pafornode::{Receipt, ReceiptTransfer, Subject};
use mpay_messages::Amount;
use mpay_storage::receipts::StoredReceipt;
use mpay_storage::recon_state::{advance, summary};
use mpay_storage::{ReceiptRepository as _, Store};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const ORG: &str = "77777777777";
const PSP: &str = "88888888888";
/// sled's page cache: a node's `[storage] cache_mb` of a small installation.
const CACHE: u64 = 128 << 20;

fn flow_xml(flow_id: &str, day: NaiveDate, first: usize, rows: usize, prefix: &str) -> String {
    let mut x = String::with_capacity(rows * 420);
    x.push_str(&format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><FlussoRiversamento xmlns=\"http://www.digitpa.gov.it/schemas/2011/Pagamenti/\">\
<versioneOggetto>1.0</versioneOggetto><identificativoFlusso>{flow_id}</identificativoFlusso>\
<dataOraFlusso>{day}T08:30:00</dataOraFlusso><identificativoUnivocoRegolamento>TRN-{flow_id}</identificativoUnivocoRegolamento>\
<dataRegolamento>{day}</dataRegolamento><istitutoMittente><identificativoUnivocoMittente><tipoIdentificativoUnivoco>B</tipoIdentificativoUnivoco>\
<codiceIdentificativoUnivoco>PSPXITXXXXX</codiceIdentificativoUnivoco></identificativoUnivocoMittente></istitutoMittente>\
<istitutoRicevente><identificativoUnivocoRicevente><tipoIdentificativoUnivoco>G</tipoIdentificativoUnivoco>\
<codiceIdentificativoUnivoco>{ORG}</codiceIdentificativoUnivoco></identificativoUnivocoRicevente></istitutoRicevente>\
<numeroTotalePagamenti>{rows}</numeroTotalePagamenti><importoTotalePagamenti>{rows}.00</importoTotalePagamenti>"
    ));
    for i in first..first + rows {
        x.push_str(&format!(
            "<datiSingoliPagamenti><identificativoUnivocoVersamento>{i:017}</identificativoUnivocoVersamento>\
<identificativoUnivocoRiscossione>{prefix}{i:012}</identificativoUnivocoRiscossione><indiceDatiSingoloPagamento>1</indiceDatiSingoloPagamento>\
<singoloImportoPagato>1.00</singoloImportoPagato><codiceEsitoSingoloPagamento>0</codiceEsitoSingoloPagamento>\
<dataEsitoSingoloPagamento>{day}</dataEsitoSingoloPagamento></datiSingoliPagamenti>"
        ));
    }
    x.push_str("</FlussoRiversamento>");
    x
}

fn receipt(id: String, iuv: String, day: NaiveDate) -> StoredReceipt {
    let at = day.and_hms_opt(10, 0, 0).unwrap().and_utc();
    let one = Amount::from_cents(100).unwrap();
    StoredReceipt {
        receipt_id: id.clone(),
        organization: ORG.into(),
        id_pa: ORG.into(),
        id_station: "77777777777_01".into(),
        notice_number: format!("3{iuv}"),
        iupd: None,
        operation: "paSendRTV2".into(),
        received_at: at,
        disposition: ReceiptDisposition::Applied,
        raw_xml: "<paSendRTV2Req/>".into(),
        receipt: Receipt {
            receipt_id: id,
            notice_number: format!("3{iuv}"),
            fiscal_code: ORG.into(),
            outcome: "OK".into(),
            creditor_reference_id: iuv,
            payment_amount: one,
            description: "TARI".into(),
            company_name: "Comune".into(),
            office_name: None,
            debtor: Subject {
                kind: "F".into(),
                id_value: "RSSMRA80A01H501U".into(),
                full_name: "Mario Rossi".into(),
                street_name: None,
                civic_number: None,
                postal_code: None,
                city: None,
                state_province_region: None,
                country: None,
                email: None,
            },
            transfers: vec![ReceiptTransfer {
                id_transfer: 1,
                amount: one,
                fiscal_code_pa: ORG.into(),
                company_name: None,
                iban: Some("IT60X0542811101000000123456".into()),
                mbd_attachment: None,
                marca_da_bollo: None,
                marca_da_bollo_error: None,
                remittance_information: "TARI".into(),
                transfer_category: "9/0101101IM/".into(),
                metadata: vec![],
            }],
            id_psp: PSP.into(),
            psp_fiscal_code: None,
            psp_partita_iva: None,
            psp_company_name: "PSP".into(),
            id_channel: "88888888888_01".into(),
            channel_description: "app".into(),
            payer: None,
            payment_method: None,
            payment_note: None,
            fee: None,
            primary_ci_incurred_fee: None,
            id_bundle: None,
            id_ci_bundle: None,
            payment_date_time: Some(format!("{day}T10:00:00")),
            application_date: None,
            transfer_date: None,
            metadata: vec![],
            stand_in: false,
        },
        flags: vec![],
        contact_email: None,
        recovered: false,
    }
}

fn credit(flow_id: &str, cents: i64, day: NaiveDate) -> Credit {
    Credit {
        account: "IT60X0542811101000000123456".into(),
        bank_ref: Some(format!("REF-{flow_id}")),
        amount_cents: cents,
        booking_date: Some(day),
        value_date: Some(day),
        texts: vec![format!("/PUR/LGPE-RIVERSAMENTO/URI/{flow_id}")],
        end_to_end_id: None,
        payer: None,
        reversal: false,
        provisional: None,
    }
}

fn rss_mb() -> f64 {
    status_mb("VmHWM:")
}

fn status_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn store_receipts(store: &Store, first: usize, n: usize, prefix: &str, day: NaiveDate) {
    for i in first..first + n {
        store
            .ledger
            .apply_receipt(receipt(format!("{prefix}{i:012}"), format!("{i:017}"), day))
            .unwrap();
    }
}

fn large_flow(rows: usize) {
    let day = NaiveDate::from_ymd_opt(2026, 7, 2).unwrap();
    let text = flow_xml("2026-07-0388888888888-S0000001", day, 0, rows, "R");
    let mb = text.len() as f64 / 1e6;
    let mut parse = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let f = xml::decode(text.as_bytes()).unwrap();
        assert_eq!(f.rows.len(), rows);
        parse = parse.min(t.elapsed().as_secs_f64());
    }
    println!("1. one flow of {rows} rows ({mb:.1} MB) against {rows} stored receipts");
    println!("   parse only (baseline)                 {parse:>8.3} s");
    for steady in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with_cache(dir.path(), CACHE).unwrap();
        let t = Instant::now();
        store_receipts(&store, 0, rows, "R", day);
        let stored = t.elapsed().as_secs_f64();
        if steady {
            // the runs that followed the receipts' arrival filed them
            advance(&store, ORG, Utc::now()).unwrap();
        }
        let rss_before = status_mb("VmRSS:");
        let t = Instant::now();
        store
            .reconciliation
            .import_flow_file(ORG, "flow.xml", text.as_bytes(), Utc::now())
            .unwrap();
        let imported = t.elapsed().as_secs_f64();
        let adv = advance(&store, ORG, Utc::now()).unwrap();
        let total = t.elapsed().as_secs_f64();
        let rss_after = status_mb("VmRSS:");
        let run = summary(&store, ORG, Utc::now(), "bench", 0, 0).unwrap();
        assert_eq!(run.totals.get("RT_IUF").map(|t| t.0), Some(rows));
        println!(
            "   {}: import (parse + store) {imported:.3} s, + run {:.3} s = {total:.3} s \
             ({:.2}x the parse; {:.3} s beyond it); run read {} receipts, {} entries; \
             RSS {rss_before:.0} -> {rss_after:.0} MB [receipts stored beforehand in {stored:.1} s]",
            if steady {
                "receipts filed by earlier runs"
            } else {
                "receipts filed by this run    "
            },
            total - imported,
            total / parse,
            total - parse,
            adv.work.receipts_read,
            adv.work.entries_read,
        );
    }
    println!(
        "   peak RSS                              {:>8.0} MB",
        rss_mb()
    );
}

fn year(days: usize, per_day: usize) {
    println!(
        "2. {days} days x {per_day} payments, one flow and one credit a day, a run after each"
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with_cache(dir.path(), CACHE).unwrap();
    let start = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let mut rows_of_day = Vec::with_capacity(days);
    for d in 0..days {
        let day = start + Duration::days(d as i64);
        let first = d * per_day;
        store_receipts(&store, first, per_day, "Y", day);
        let t = Instant::now();
        let filed = advance(&store, ORG, Utc::now()).unwrap();
        let file_secs = t.elapsed().as_secs_f64();
        let flow_id = format!("{}88888888888-S{:07}", day + Duration::days(1), d + 1);
        let text = flow_xml(&flow_id, day, first, per_day, "Y");
        store
            .reconciliation
            .import_flow_file(ORG, "flow.xml", text.as_bytes(), Utc::now())
            .unwrap();
        store
            .reconciliation
            .put_credits(
                ORG,
                &[credit(&flow_id, per_day as i64 * 100, day)],
                "bank.xml",
                Utc::now(),
            )
            .unwrap();
        let t = Instant::now();
        let matched = advance(&store, ORG, Utc::now()).unwrap();
        let match_secs = t.elapsed().as_secs_f64();
        rows_of_day.push((d + 1, file_secs, match_secs, filed.work, matched.work));
    }
    for &i in &[0, days / 2, days - 1] {
        let (d, file_secs, match_secs, filed, matched) = &rows_of_day[i];
        println!(
            "   day {d:>3} ({:>8} receipts stored): filing run {:.3} s (read {} receipts), \
             matching run {:.3} s (rows {}, entries read {}, credits {})",
            d * per_day,
            file_secs,
            filed.receipts_read,
            match_secs,
            matched.rows_matched,
            matched.entries_read,
            matched.credits_attributed
        );
    }
    let t = Instant::now();
    let run = summary(&store, ORG, Utc::now(), "bench", 0, 0).unwrap();
    let summary_secs = t.elapsed().as_secs_f64();
    println!(
        "   the run's summary over {} flows: {summary_secs:.3} s; RT_IUF_TES {:?}",
        run.flows,
        run.totals.get("RT_IUF_TES")
    );
    let t = Instant::now();
    let report = mpay_storage::recon_state::report(&store, ORG).unwrap();
    println!(
        "   the whole report ({} payments: what the API and the exports read): {:.3} s",
        report.payments.len(),
        t.elapsed().as_secs_f64()
    );
}

fn main() {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(d)
    };
    let (rows, days, per_day) = (arg(1, 100_000), arg(2, 60), arg(3, 5_000));
    println!("recon bench (targets: total <= 2 s, <= 0.5 s beyond parsing; a year incremental)");
    large_flow(rows);
    year(days.max(1), per_day.max(1));
}
