//! Fuzz targets (bolero) for every parser that reads outside input: the station's SOAP
//! envelope and paForNode bodies, MPay Archivio Carichi, feed CSV (MyPay/GPD versions and
//! GovPay), feed zip containers, FdR XML and REST JSON, bank statements (camt.053/054, OPI),
//! the remittance-text flow-id extractor and an Ente's `notificaPagamento` answer.
//!
//! Each target runs on stable under `cargo test` / `cargo nextest`: first the corpus kept in
//! `tests/__fuzz__/<target>/corpus/` (small hand-made seeds), then random inputs for a bounded
//! time ([`CI_TIME`] per target, overridden by `BOLERO_RANDOM_TEST_TIME_MS` or
//! `BOLERO_RANDOM_ITERATIONS`). Random bytes alone rarely get past an XML prolog, so every
//! input is also *spliced* into a seed (the corpus files plus, when `../shared` is there, the
//! spec pack's examples, read at run time and never copied into the repository): the first
//! bytes choose a seed, a position and an edit, the rest is the text edited in. With
//! `cargo bolero test` (nightly, libFuzzer) the same targets run coverage-guided for hours:
//! `ops/fuzz`.
//!
//! Properties, not only "no panic": every decode returns `Ok` or the parser's typed error;
//! every accepted paForNode request re-encodes canonically to the same value, and the fault
//! we would answer for it passes our schema check; a rejected one carries
//! PAA_SINTASSI_XSD / PAA_SINTASSI_EXTRAXSD; Archivio Carichi answers (echoing what was read)
//! are well-formed XML; CSV rows are numbered 1, 2, 3… and a failure names its row; no field
//! or row outgrows the reader's caps; a zip never yields more than its budget, whatever the
//! headers claim, and what was zipped comes back byte for byte; statements' credits are
//! magnitudes; FdR rows are numbered in order. Slow decodes are printed, never asserted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mpay_messages::archivio;
use mpay_messages::bank;
use mpay_messages::fdr;
use mpay_messages::feeds::{
    self, ErrorCode, FeedMode, FeedReader, ReadOptions, ZipLimits, MAX_COLUMNS, MAX_LINE_BYTES,
};
use mpay_messages::wire::faults::{Fault, FaultCode};
use mpay_messages::wire::pafornode::{
    check_response, decode_request, encode_fault, encode_soap_fault, Request,
};
use mpay_messages::wire::{ente, xml};

mod common;

/// Random-input time per target under `cargo test` (the corpus always runs whole). Nine
/// targets: about 20 s of wall time on 2 cores in a debug build.
const CI_TIME: Duration = Duration::from_secs(4);

/// Longest random input (bytes); splices make seeds grow by at most this much.
const MAX_LEN: usize = 4096;

/// A decode slower than this is printed (real ones take microseconds to milliseconds).
const SLOW: Duration = Duration::from_millis(500);

// ---- seeds and splicing -------------------------------------------------------------------------

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/__fuzz__")
        .join(target)
        .join("corpus")
}

/// `../shared` next to the repository, when present (never copied into it).
fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    p.is_dir().then_some(p)
}

fn files_in(dir: &Path, keep: &dyn Fn(&str) -> bool) -> Vec<Vec<u8>> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(keep))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter(|b| b.len() <= 256 * 1024)
        .collect()
}

/// The target's corpus plus the spec pack's files in `shared_dirs` (relative to `../shared`)
/// whose names `keep` accepts.
fn seeds(target: &str, shared_dirs: &[&str], keep: &dyn Fn(&str) -> bool) -> Vec<Vec<u8>> {
    let mut out = files_in(&corpus_dir(target), &|n| !n.starts_with('.'));
    assert!(
        !out.is_empty(),
        "no corpus in {}",
        corpus_dir(target).display()
    );
    let mut from_shared = 0;
    if let Some(root) = shared() {
        for d in shared_dirs {
            let more = files_in(&root.join(d), keep);
            from_shared += more.len();
            out.extend(more);
        }
    }
    eprintln!(
        "{target}: {} seeds ({from_shared} read from ../shared)",
        out.len()
    );
    out
}

/// Edits a seed with the fuzzer's bytes: `[seed, pos_hi, pos_lo, op, text…]`. `op` overwrites,
/// inserts, deletes `text.len()` bytes, replaces a range, or duplicates a range at `pos`
/// (a fraction of the seed's length, so every part of a long seed is reached).
fn splice(seeds: &[Vec<u8>], data: &[u8]) -> Option<Vec<u8>> {
    let [sel, hi, lo, op, text @ ..] = data else {
        return None;
    };
    let seed = seeds.get(usize::from(*sel) % seeds.len())?;
    let pos = (usize::from(u16::from_be_bytes([*hi, *lo])) * (seed.len() + 1)) >> 16;
    // half the time the text is CSV-ish (UTF-8: digits, letters, separators, quotes, newlines),
    // so edits reach the row checks instead of failing the whole file's encoding
    const CSVISH: &[u8] = b"0123456789;;;;\n\n\"..,,--/ ABCIUVaeiouxyz";
    let text: Vec<u8> = if op & 0x80 == 0 {
        text.iter()
            .map(|b| CSVISH[usize::from(*b) % CSVISH.len()])
            .collect()
    } else {
        text.to_vec()
    };
    let text = text.as_slice();
    let mut out = seed.clone();
    match op % 5 {
        0 => {
            for (i, b) in text.iter().enumerate() {
                if let Some(slot) = out.get_mut(pos + i) {
                    *slot = *b;
                }
            }
        }
        1 => {
            out.splice(pos..pos, text.iter().copied());
        }
        2 => {
            let end = (pos + text.len()).min(out.len());
            out.drain(pos..end);
        }
        3 => {
            let (len, rest) = text.split_first().map_or((0, &[][..]), |(l, r)| (*l, r));
            let end = (pos + usize::from(len)).min(out.len());
            out.splice(pos..end, rest.iter().copied());
        }
        _ => {
            let end = (pos + text.len()).min(out.len());
            let part = out[pos..end].to_vec();
            out.splice(end..end, part);
        }
    }
    Some(out)
}

/// Runs `check` on the raw input and on its splice into a seed. A macro, so that bolero's
/// `check!` names the target after the test function (its corpus folder, `cargo bolero`'s
/// target name).
macro_rules! fuzz {
    ($target:literal, $seeds:expr, $check:expr) => {{
        let seeds: Vec<Vec<u8>> = $seeds;
        let check: fn(&[u8]) = $check;
        bolero::check!()
            .with_test_time(CI_TIME)
            .with_max_len(MAX_LEN)
            .for_each(|data: &[u8]| {
                timed($target, data, check);
                if let Some(m) = splice(&seeds, data) {
                    timed($target, &m, check);
                }
            });
    }};
}

fn timed(target: &str, data: &[u8], check: fn(&[u8])) {
    let t = Instant::now();
    check(data);
    let took = t.elapsed();
    if took > SLOW {
        eprintln!("SLOW {target}: {took:?} on {} bytes", data.len());
    }
}

// ---- paForNode -----------------------------------------------------------------------------------

fn check_pafornode(bytes: &[u8]) {
    match decode_request(bytes, Some("paVerifyPaymentNotice")) {
        Ok((op, r)) => {
            let departed =
                matches!(&r, Request::SendRt { departures, .. } if !departures.is_empty());
            if !departed {
                let again = common::write_request(op, &r);
                let (op2, r2) = decode_request(again.as_bytes(), None)
                    .unwrap_or_else(|e| panic!("re-encoded request refused: {e:?}\n{again}"));
                assert_eq!(op, op2);
                assert_eq!(r, r2, "round trip changed the request\n{again}");
            }
            let fault = Fault {
                code: FaultCode::PagamentoSconosciuto,
                id: r.ids().id_pa.clone(),
                description: format!("notice of {}", r.ids().id_station),
            };
            check_response(op, &encode_fault(op, &fault)).expect("fault answer valid");
        }
        Err(rej) => {
            assert!(
                matches!(
                    rej.error.fault_code(),
                    FaultCode::SintassiXsd | FaultCode::SintassiExtraXsd
                ),
                "{:?}",
                rej.error
            );
            match rej.operation {
                Some(op) => {
                    let fault = Fault {
                        code: rej.error.fault_code(),
                        id: rej.id_pa.clone().unwrap_or_default(),
                        description: rej.error.to_string(),
                    };
                    check_response(op, &encode_fault(op, &fault)).expect("rejection answer valid");
                }
                None => {
                    xml::parse(encode_soap_fault(&rej.error.to_string()).as_bytes())
                        .expect("SOAP fault well-formed");
                }
            }
        }
    }
}

#[test]
fn pafornode_request() {
    let seeds = seeds("pafornode_request", &["pagopa/examples"], &|n| {
        n.ends_with(".xml") && n.contains("_req")
    });
    fuzz!("pafornode_request", seeds, check_pafornode);
}

// ---- Archivio Carichi ----------------------------------------------------------------------------

fn check_archivio(bytes: &[u8]) {
    match archivio::decode(bytes) {
        Ok(d) => {
            // the answer echoes the request's base fields: it must stay well-formed XML
            let answer = archivio::encode_response(
                d.operation,
                &d.base,
                archivio::Esito::Validazione,
                "importo non valido",
                &archivio::ResponseBody::NumeroDocumento(d.base.codice_ente.clone()),
                d.soap12,
            );
            xml::parse(answer.as_bytes())
                .unwrap_or_else(|e| panic!("answer not well-formed: {e}\n{answer}"));
        }
        Err(e) => {
            let soap12 = match &e {
                archivio::DecodeError::Missing {
                    operation,
                    base,
                    soap12,
                    ..
                } => {
                    // answered 04 with whatever of the base fields could be read
                    let answer = archivio::encode_response(
                        *operation,
                        base,
                        archivio::Esito::Validazione,
                        &e.to_string(),
                        &archivio::ResponseBody::NumeroDocumento(String::new()),
                        *soap12,
                    );
                    xml::parse(answer.as_bytes())
                        .unwrap_or_else(|e| panic!("04 answer not well-formed: {e}\n{answer}"));
                    *soap12
                }
                archivio::DecodeError::Malformed(_)
                | archivio::DecodeError::UnknownOperation(_) => false,
            };
            let fault = archivio::encode_fault(4, &e.to_string(), soap12);
            xml::parse(fault.as_bytes())
                .unwrap_or_else(|e| panic!("fault not well-formed: {e}\n{fault}"));
        }
    }
    // the amount and date helpers see the same outside text
    let text = String::from_utf8_lossy(bytes);
    let field = text.get(..text.len().min(40)).unwrap_or("");
    if let Ok(a) = archivio::parse_euros("importo", field) {
        assert_eq!(
            archivio::parse_euros("importo", &archivio::format_euros(a)),
            Ok(a),
            "{field:?}"
        );
    }
    let _ = archivio::parse_date("data", field);
}

#[test]
fn archivio_request() {
    let seeds = seeds("archivio_request", &[], &|_| false);
    fuzz!("archivio_request", seeds, check_archivio);
}

// ---- feed CSV ------------------------------------------------------------------------------------

fn read_feed(bytes: &[u8], mode: FeedMode, name_version: Option<feeds::FeedVersion>) {
    let opts = ReadOptions {
        mode,
        mb14_amount_mode: Default::default(),
        name_version,
    };
    let reader = match FeedReader::new(Cursor::new(bytes), opts) {
        Ok(r) => r,
        Err(e) => {
            assert_eq!(e.row, None, "a header failure names no row: {e:?}");
            assert!(
                matches!(
                    e.code,
                    ErrorCode::FileEncoding
                        | ErrorCode::FileVersionUnknown
                        | ErrorCode::FileVersionMismatch
                ),
                "{e:?}"
            );
            return;
        }
    };
    assert!(reader.header().len() <= MAX_COLUMNS + 1 || reader.header().is_empty());
    let mut reader = reader;
    let mut last = 0u64;
    while let Some(item) = reader.next() {
        match item {
            Ok(row) => {
                assert_eq!(row.number, last + 1, "rows are numbered in order");
                last = row.number;
                assert!(
                    row.raw.len() <= MAX_COLUMNS,
                    "{} columns kept",
                    row.raw.len()
                );
                assert!(row.raw.iter().all(|f| f.len() <= MAX_LINE_BYTES));
                if let Err(issues) = &row.record {
                    assert!(!issues.is_empty(), "row {} refused without a reason", last);
                    assert!(issues.iter().all(|i| !i.message.is_empty()));
                }
            }
            Err(e) => {
                assert_eq!(e.row, Some(last + 1), "a row failure names its row: {e:?}");
                assert!(
                    reader.next().is_none(),
                    "the reader stops after a file error"
                );
                break;
            }
        }
    }
    assert_eq!(reader.rows_read(), last);
}

fn check_feed_csv(bytes: &[u8]) {
    read_feed(bytes, FeedMode::Delta, None);
    read_feed(bytes, FeedMode::Full, Some(feeds::FeedVersion::V1_3));
    // GovPay's CSV is converted to the PU layout on the fly: any input gives Ok or an I/O error
    let mut out = Vec::new();
    let _ = feeds::govpay::GovPayToPu::new(Cursor::new(bytes))
        .take(1 << 20)
        .read_to_end(&mut out);
}

#[test]
fn feed_csv() {
    let seeds = seeds("feed_csv", &["feeds/samples"], &|n| n.ends_with(".csv"));
    fuzz!("feed_csv", seeds, check_feed_csv);
}

// ---- feed zip ------------------------------------------------------------------------------------

/// Small budgets, so that bombs are cheap to build and to refuse.
const ZIP_LIMITS: ZipLimits = ZipLimits {
    max_entries: 16,
    max_csv_bytes: 256 * 1024,
    max_ratio: 200,
    max_manifest_bytes: 4096,
};

/// A sink that fails the test as soon as more than the budget is written to it.
struct Budget(Vec<u8>, u64);
impl Write for Budget {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(b);
        assert!(
            self.0.len() as u64 <= self.1,
            "extracted {} bytes, over the budget of {}",
            self.0.len(),
            self.1
        );
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn extract(bytes: &[u8]) -> (Result<feeds::ZipContents, feeds::FeedFileError>, Vec<u8>) {
    let mut out = Budget(Vec::new(), ZIP_LIMITS.max_csv_bytes);
    let r = feeds::extract_zip(Cursor::new(bytes), &mut out, ZIP_LIMITS);
    match &r {
        Ok(c) => {
            assert_eq!(c.csv_bytes, out.0.len() as u64);
            assert!(c.csv_name.to_ascii_lowercase().ends_with(".csv"));
            assert!(!c.csv_name.contains("..") && !c.csv_name.starts_with(['/', '\\']));
        }
        Err(e) => assert!(
            e.code.as_str().starts_with("FILE_") && e.row.is_none(),
            "{e:?}"
        ),
    }
    (r, out.0)
}

fn zip_of(entries: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, body) in entries {
        w.start_file(
            *name,
            zip::write::SimpleFileOptions::default().compression_method(method),
        )
        .unwrap();
        w.write_all(body).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn check_feed_zip(bytes: &[u8]) {
    let _ = extract(bytes);
    // what we zip comes back byte for byte (below the budget: at most MAX_LEN bytes here)
    let Some((&flags, csv)) = bytes.split_first() else {
        return;
    };
    let deflate = flags & 1 == 1;
    let mut entries: Vec<(&str, &[u8])> = vec![("c_x000-F1-2_0.csv", csv)];
    if flags & 2 == 2 {
        entries.push(("__MACOSX/._c_x000-F1-2_0.csv", b"junk"));
    }
    if flags & 4 == 4 {
        entries.push(("manifest.json", br#"{"mode":"FULL","allowEmpty":true}"#));
    }
    let (r, out) = extract(&zip_of(&entries, deflate));
    let c = r.unwrap_or_else(|e| panic!("our own zip refused: {e:?}"));
    assert_eq!(out, csv, "round trip");
    assert_eq!(c.manifest.is_some(), flags & 4 == 4);
    if flags & 8 == 8 {
        // a second CSV is refused, whatever its name's case
        entries.push(("OTHER.CSV", b"x"));
        let (r, _) = extract(&zip_of(&entries, deflate));
        assert_eq!(r.unwrap_err().code, ErrorCode::FileMultipleCsv);
    }
    if flags & 0x10 != 0 {
        // a bomb: zeros compress ~1000:1; over the budget it must be refused within it
        let n = (usize::from(flags >> 5) + 1) * 48 * 1024;
        let zeros = vec![0u8; n];
        let (r, out) = extract(&zip_of(&[("c_x000-F1-2_0.csv", &zeros)], true));
        assert!(out.len() as u64 <= ZIP_LIMITS.max_csv_bytes);
        if n as u64 > ZIP_LIMITS.max_csv_bytes {
            assert!(r.is_err(), "a bomb of {n} bytes was extracted");
        }
        match r {
            Ok(_) => assert_eq!(out, zeros),
            Err(e) => assert_eq!(e.code, ErrorCode::FileNoCsv),
        }
    }
}

#[test]
fn feed_zip() {
    let mut seeds = seeds("feed_zip", &[], &|_| false);
    // the spec pack's CSVs, zipped at run time
    if let Some(root) = shared() {
        for csv in files_in(&root.join("feeds/samples"), &|n| n.ends_with(".csv")) {
            seeds.push(zip_of(&[("c_x000-S-2_0.csv", &csv)], true));
        }
    }
    fuzz!("feed_zip", seeds, check_feed_zip);
}

// ---- FdR -----------------------------------------------------------------------------------------

fn check_flow(flow: &fdr::Flow, first: usize) {
    for (i, row) in flow.rows.iter().enumerate() {
        assert_eq!(row.number, first + i, "rows numbered in order");
        if let Some(c) = row.amount_cents {
            assert!(c >= 0, "an amount is a magnitude: {c}");
        }
    }
    let _ = flow.counted_total_cents();
}

fn check_fdr_xml(bytes: &[u8]) {
    match fdr::xml::decode(bytes) {
        Ok(flow) => check_flow(&flow, 1),
        Err(
            fdr::FlowError::Unreadable(_)
            | fdr::FlowError::NotAFlow(_)
            | fdr::FlowError::Missing(_),
        ) => {}
    }
}

#[test]
fn fdr_xml() {
    let seeds = seeds("fdr_xml", &["pagopa/examples"], &|n| {
        n.starts_with("FlussoRiversamento") || n.starts_with("nodoChiediFlussoRendicontazione_res")
    });
    fuzz!("fdr_xml", seeds, check_fdr_xml);
}

fn check_fdr_rest(bytes: &[u8]) {
    let _ = fdr::rest::decode_list(bytes);
    if let Ok(h) = fdr::rest::decode_header(bytes) {
        assert!(!h.flow_id.trim().is_empty());
        assert!(!h.receiver_id.trim().is_empty());
    }
    if let Ok((rows, _)) = fdr::rest::decode_payments(bytes, 7) {
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.number, 7 + i);
        }
    }
    if let Ok(flow) = fdr::rest::decode_flow(bytes, [bytes]) {
        check_flow(&flow, 1);
    }
}

#[test]
fn fdr_rest() {
    let seeds = seeds("fdr_rest", &["pagopa/examples/json"], &|n| {
        n.starts_with("fdr_rest")
    });
    fuzz!("fdr_rest", seeds, check_fdr_rest);
}

// ---- bank statements and remittance texts --------------------------------------------------------

fn check_bank(bytes: &[u8]) {
    match bank::decode(bytes) {
        Ok(s) => {
            for c in &s.credits {
                assert!(c.amount_cents >= 0, "a credit is a magnitude: {c:?}");
                for t in &c.texts {
                    check_remittance(t);
                }
            }
        }
        Err(bank::StatementError::Unreadable(_) | bank::StatementError::Unknown(..)) => {}
    }
}

fn check_remittance(text: &str) {
    if let Some(r) = fdr::remittance::parse(text) {
        if let Some(c) = r.first_candidate() {
            assert!(!c.is_empty());
            assert_eq!(r.flow_id(|k| k == c), Some(c));
        }
    }
}

#[test]
fn bank_statement() {
    let seeds = seeds("bank_statement", &["treasury/samples"], &|n| {
        n.ends_with(".xml")
    });
    fuzz!("bank_statement", seeds, check_bank);
}

#[test]
fn remittance_text() {
    let seeds = seeds("remittance_text", &[], &|_| false);
    fuzz!("remittance_text", seeds, |b| {
        check_remittance(&String::from_utf8_lossy(b));
    });
}

// ---- an Ente's answer to notificaPagamento -------------------------------------------------------

#[test]
fn ente_answer() {
    let seeds = seeds("ente_answer", &[], &|_| false);
    fuzz!("ente_answer", seeds, |b| {
        if let Ok(r) = ente::decode_risultato(b) {
            assert_eq!(r.is_ack(), r.retcode.trim() == "00");
        }
    });
}
