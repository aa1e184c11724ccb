//! `ops/bench/recon`: a reporting flow of N rows (default 100 000) against N receipt transfers.
//! Prints the time to parse the flow alone (the baseline, same run) and to parse + match every
//! row to its receipt + settle + label, and the ratio. Prints, never asserts.
//!
//! `cargo run --release -p mpay-messages --example bench_recon -- [ROWS]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use mpay_messages::domain::reconcile::{label_payment, match_rows, settlement, PaidTransfer};
use mpay_messages::fdr::xml;

fn flow(rows: usize) -> String {
    let mut x = String::with_capacity(rows * 420);
    x.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><FlussoRiversamento xmlns=\"http://www.digitpa.gov.it/schemas/2011/Pagamenti/\">\
<versioneOggetto>1.0</versioneOggetto><identificativoFlusso>2026-07-0388888888888-S0000001</identificativoFlusso>\
<dataOraFlusso>2026-07-04T08:30:00</dataOraFlusso><identificativoUnivocoRegolamento>TRN</identificativoUnivocoRegolamento>\
<dataRegolamento>2026-07-03</dataRegolamento><istitutoMittente><identificativoUnivocoMittente><tipoIdentificativoUnivoco>B</tipoIdentificativoUnivoco>\
<codiceIdentificativoUnivoco>PSPXITXXXXX</codiceIdentificativoUnivoco></identificativoUnivocoMittente></istitutoMittente>\
<istitutoRicevente><identificativoUnivocoRicevente><tipoIdentificativoUnivoco>G</tipoIdentificativoUnivoco>\
<codiceIdentificativoUnivoco>77777777777</codiceIdentificativoUnivoco></identificativoUnivocoRicevente></istitutoRicevente>",
    );
    x.push_str(&format!(
        "<numeroTotalePagamenti>{rows}</numeroTotalePagamenti><importoTotalePagamenti>{}.00</importoTotalePagamenti>",
        rows
    ));
    for i in 0..rows {
        x.push_str(&format!(
            "<datiSingoliPagamenti><identificativoUnivocoVersamento>{i:017}</identificativoUnivocoVersamento>\
<identificativoUnivocoRiscossione>R{i:031}</identificativoUnivocoRiscossione><indiceDatiSingoloPagamento>1</indiceDatiSingoloPagamento>\
<singoloImportoPagato>1.00</singoloImportoPagato><codiceEsitoSingoloPagamento>0</codiceEsitoSingoloPagamento>\
<dataEsitoSingoloPagamento>2026-07-02</dataEsitoSingoloPagamento></datiSingoliPagamenti>"
        ));
    }
    x.push_str("</FlussoRiversamento>");
    x
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let text = flow(rows);
    let receipts: Vec<PaidTransfer> = (0..rows)
        .map(|i| PaidTransfer {
            organization: "77777777777".into(),
            iuv: format!("{i:017}"),
            receipt_id: format!("R{i:031}"),
            id_transfer: 1,
            amount_cents: 100,
            stamp: false,
        })
        .collect();
    let mb = text.len() as f64 / 1e6;
    // baseline: parse alone (best of 3)
    let mut parse_best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let f = xml::decode(text.as_bytes()).unwrap();
        assert_eq!(f.rows.len(), rows);
        parse_best = parse_best.min(t.elapsed().as_secs_f64());
    }
    let mut total_best = f64::MAX;
    let mut reported = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let f = xml::decode(text.as_bytes()).unwrap();
        let m = match_rows("77777777777", &f.rows, &receipts);
        let s = settlement(f.counted_total_cents(), &[f.counted_total_cents()]);
        reported = m.iter().filter(|m| m.receipt.is_some()).count();
        let labelled = receipts
            .iter()
            .map(|r| label_payment(r, Some(s)))
            .filter(|l| l.code() == "RT_IUF_TES")
            .count();
        assert_eq!(labelled, rows);
        total_best = total_best.min(t.elapsed().as_secs_f64());
    }
    assert_eq!(reported, rows);
    println!("recon bench: {rows} rows, flow {mb:.1} MB");
    println!("  parse only (baseline)        {parse_best:>8.3} s");
    println!(
        "  parse + match + label        {total_best:>8.3} s   ({:.2}x the parse; {:.3} s beyond it)",
        total_best / parse_best,
        total_best - parse_best
    );
    println!("  peak RSS                     {:>8.0} MB", rss_mb());
    println!("  targets: total <= 2 s, <= 0.5 s beyond parsing (storage reads not included here)");
}
