#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The documents as a reader sees them: each PDF is rasterized with `pdftoppm` (Debian
//! poppler-utils), its QR codes decoded with `zbarimg` (zbar-tools) and its Data Matrix with
//! `dmtxread` (dmtx-utils), and the payloads compared byte for byte with SPEC §8; the text is
//! read back with `pdftotext`. The tools are required (`ops/test` installs them): a missing
//! tool fails the test with the package to install.
//!
//! `MPAY_DOCUMENTS_OUT=DIR` also keeps the rendered PDFs and PNGs in DIR.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{NaiveDate, TimeZone, Utc};
use mpay_documents::payload::{datamatrix_payload, PostalFields, DM_AMOUNT, DM_EC, DM_NAV};
use mpay_documents::{
    render_notice, render_notices, render_receipt, Language, NoticeInput, NoticeOption, OptionKind,
    Party, ReceiptInput, ReceiptTransfer, StampInfo,
};

const EC: &str = "77777777777";
const NAV1: &str = "312202600000000171";
const NAV2: &str = "312202600000000272";
const NAV3: &str = "344012345678901286";
const NAV4: &str = "312000000000000119";

fn tool(name: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("{name} is missing: apt-get install {package} (ops/test installs it)")
        })
}

fn debtor() -> Party {
    Party {
        name: "Anna D’Esempio".into(),
        fiscal_code: "DSMNNA80A41H501X".into(),
        address: Some("Via Roma 1, 00100 Roma (RM)".into()),
    }
}

fn option(
    kind: OptionKind,
    nav: &str,
    cents: i64,
    due: (i32, u32, u32),
    description: &str,
) -> NoticeOption {
    NoticeOption {
        kind,
        nav: nav.into(),
        amount_cents: cents,
        due_date: NaiveDate::from_ymd_opt(due.0, due.1, due.2).unwrap(),
        description: description.into(),
        postal_account: None,
    }
}

fn notice(options: Vec<NoticeOption>) -> NoticeInput {
    NoticeInput {
        ec_name: "Comune di Città d’Esempio".into(),
        ec_fiscal_code: EC.into(),
        cbill: Some("A0EDT".into()),
        ec_office: Some("Servizio Tributi".into()),
        debtor: debtor(),
        subject: "TARI 2026 — tassa sui rifiuti".into(),
        options,
        language: Language::It,
    }
}

/// A scratch folder for one test; kept under MPAY_DOCUMENTS_OUT when set.
struct Out {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

fn out(name: &str) -> Out {
    let tmp = tempfile::tempdir().unwrap();
    let dir = match std::env::var_os("MPAY_DOCUMENTS_OUT") {
        Some(base) => PathBuf::from(base).join(name),
        None => tmp.path().join(name),
    };
    std::fs::create_dir_all(&dir).unwrap();
    Out { _tmp: tmp, dir }
}

fn write_pdf(out: &Out, name: &str, pdf: &[u8]) -> PathBuf {
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
    let path = out.dir.join(format!("{name}.pdf"));
    std::fs::write(&path, pdf).unwrap();
    path
}

/// Every page as a PNG at `dpi`.
fn rasterize(pdf: &Path, dpi: u32) -> Vec<PathBuf> {
    let prefix = pdf.with_extension("");
    let status = Command::new(tool("pdftoppm", "poppler-utils"))
        .args(["-r", &dpi.to_string(), "-png"])
        .arg(pdf)
        .arg(&prefix)
        .status()
        .unwrap();
    assert!(status.success(), "pdftoppm failed on {}", pdf.display());
    let stem = prefix.file_name().unwrap().to_string_lossy().into_owned();
    let mut pages: Vec<PathBuf> = std::fs::read_dir(pdf.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(&format!("{stem}-")) && n.ends_with(".png")
        })
        .collect();
    pages.sort();
    assert!(!pages.is_empty(), "no page rendered");
    pages
}

/// The QR payloads zbar finds on the pages.
fn qr_codes(pages: &[PathBuf]) -> Vec<String> {
    let mut found = Vec::new();
    for page in pages {
        let output = Command::new(tool("zbarimg", "zbar-tools"))
            .args(["--quiet", "--raw", "-Sdisable", "-Sqrcode.enable"])
            .arg(page)
            .output()
            .unwrap();
        // exit 4: no symbol on that page
        assert!(
            output.status.success() || output.status.code() == Some(4),
            "zbarimg failed: {output:?}"
        );
        found.extend(
            String::from_utf8(output.stdout)
                .unwrap()
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }
    found
}

/// The Data Matrix payloads dmtxread finds on a page.
fn data_matrices(page: &Path, max: u32) -> Vec<String> {
    let output = Command::new(tool("dmtxread", "dmtx-utils"))
        .args(["-n", "-N", &max.to_string(), "-m", "60000"])
        .arg(page)
        .output()
        .unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The text (`-raw`: content order, so a wrapped cell reads as one run).
fn text_of(pdf: &Path) -> String {
    let output = Command::new(tool("pdftotext", "poppler-utils"))
        .args(["-raw", "-enc", "UTF-8"])
        .arg(pdf)
        .arg("-")
        .output()
        .unwrap();
    assert!(output.status.success(), "pdftotext failed: {output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

#[test]
fn single_notice_qr_code_decodes_to_the_spec_payload() {
    let out = out("single");
    let n = notice(vec![option(
        OptionKind::Single,
        NAV1,
        15000,
        (2026, 12, 31),
        "TARI 2026 rata unica",
    )]);
    let pdf = write_pdf(&out, "single", &render_notice(&n).unwrap());
    let pages = rasterize(&pdf, 150);
    assert_eq!(pages.len(), 1);
    assert_eq!(
        qr_codes(&pages),
        vec!["PAGOPA|002|312202600000000171|77777777777|15000".to_owned()]
    );
    let text = text_of(&pdf);
    for expected in [
        "Anna D’Esempio",
        "Comune di Città d’Esempio",
        "3122 0260 0000 0001 71",
        "150,00 € entro il 31/12/2026",
        "A0EDT",
        "77777777777",
        "RATA UNICA",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    assert!(
        !text.contains("BOLLETTINO POSTALE"),
        "no postal account, no bollettino"
    );
}

#[test]
fn installment_plan_has_one_qr_code_per_option() {
    let out = out("installments");
    let n = notice(vec![
        option(
            OptionKind::Single,
            NAV1,
            30000,
            (2026, 3, 31),
            "Soluzione unica",
        ),
        option(
            OptionKind::Installment { number: 1, of: 3 },
            NAV2,
            10000,
            (2026, 3, 31),
            "Prima rata",
        ),
        option(
            OptionKind::Installment { number: 2, of: 3 },
            NAV3,
            10000,
            (2026, 6, 30),
            "Seconda rata",
        ),
        option(
            OptionKind::Installment { number: 3, of: 3 },
            NAV4,
            10000,
            (2026, 9, 30),
            "Terza rata",
        ),
    ]);
    let pdf = write_pdf(&out, "installments", &render_notice(&n).unwrap());
    let pages = rasterize(&pdf, 150);
    let expected: Vec<String> = [(NAV1, 30000), (NAV2, 10000), (NAV3, 10000), (NAV4, 10000)]
        .iter()
        .map(|(nav, c)| format!("PAGOPA|002|{nav}|{EC}|{c}"))
        .collect();
    let found = qr_codes(&pages);
    assert_eq!(found.len(), 4, "one QR code per option: {found:?}");
    assert_eq!(set(&found), set(&expected));
    let text = text_of(&pdf);
    for expected in [
        "RATA 1 DI 3",
        "RATA 3 DI 3",
        "100,00 € entro il 30/09/2026",
        "3440 1234 5678 9012 86",
        "Seconda rata",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
}

#[test]
fn postal_notice_data_matrix_is_the_spec_layout_byte_for_byte() {
    let out = out("postal");
    let mut o = option(
        OptionKind::Single,
        NAV1,
        15000,
        (2026, 12, 31),
        "TARI 2026 città",
    );
    o.postal_account = Some("1234567".into());
    let n = notice(vec![o]);
    let pdf = write_pdf(&out, "postal", &render_notice(&n).unwrap());
    let pages = rasterize(&pdf, 200);
    // written out by hand from SPEC §8
    let expected = format!(
        "codfase=NBPA;18{NAV1}12{:0>12}10{:010}38961P1{EC}{:<16}{:<40}{:<110}{}A",
        "1234567",
        15000,
        "DSMNNA80A41H501X",
        "Anna D'Esempio",
        "TARI 2026 citta'",
        " ".repeat(12)
    );
    assert_eq!(expected.len(), 256);
    let built = datamatrix_payload(&PostalFields {
        nav: NAV1,
        postal_account: "1234567",
        amount_cents: 15000,
        ec_fiscal_code: EC,
        debtor_fiscal_code: "DSMNNA80A41H501X",
        debtor_name: "Anna D’Esempio",
        subject: "TARI 2026 città",
    })
    .unwrap();
    assert_eq!(built, expected);
    let matrices = data_matrices(&pages[0], 1);
    assert_eq!(
        matrices,
        vec![expected.clone()],
        "Data Matrix read from the page"
    );
    let dm = &matrices[0];
    assert_eq!(&dm[DM_NAV], NAV1);
    assert_eq!(&dm[DM_AMOUNT], "0000015000");
    assert_eq!(&dm[DM_EC], EC);
    assert_eq!(
        qr_codes(&pages),
        vec![format!("PAGOPA|002|{NAV1}|{EC}|15000")]
    );
    let text = text_of(&pdf);
    for expected in [
        "BOLLETTINO POSTALE PA",
        "1234567",
        "TARI 2026 città",
        "Anna D’Esempio",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
}

#[test]
fn bilingual_notice_prints_german_labels() {
    let out = out("german");
    let mut n = notice(vec![
        option(
            OptionKind::Installment { number: 1, of: 2 },
            NAV2,
            5000,
            (2026, 3, 31),
            "Erste Rate / prima rata",
        ),
        option(
            OptionKind::Installment { number: 2, of: 2 },
            NAV3,
            5000,
            (2026, 6, 30),
            "Zweite Rate / seconda rata",
        ),
    ]);
    n.language = Language::ItDe;
    let pdf = write_pdf(&out, "german", &render_notice(&n).unwrap());
    let text = text_of(&pdf);
    for expected in [
        "AVVISO DI PAGAMENTO / ZAHLUNGSMITTEILUNG",
        "RATA 2 DI 2 / RATE 2 VON 2",
        "Zahlungscode",
        "bis zum",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    assert_eq!(qr_codes(&rasterize(&pdf, 150)).len(), 2);
}

fn long_text(i: usize) -> String {
    let base = format!("Causale {i}: versamento dell’imposta comunale per l’anno 2026, servizio di raccolta differenziata, quota fissa e variabile n.{i} ");
    let mut s = base.repeat(3);
    s.truncate(s.char_indices().nth(140).map_or(s.len(), |(b, _)| b));
    let s = s.trim_end().to_owned();
    assert!(s.chars().count() >= 135 && s.chars().count() <= 140);
    s
}

fn receipt(transfers: usize) -> ReceiptInput {
    ReceiptInput {
        ec_name: "Comune di Città d’Esempio".into(),
        ec_fiscal_code: EC.into(),
        debtor: debtor(),
        payer: Some(Party {
            name: "Mario Rossi".into(),
            fiscal_code: "RSSMRA80A01H501U".into(),
            address: None,
        }),
        nav: NAV1.into(),
        iuv: "12202600000000171".into(),
        receipt_id: "c1a5d3e0b7f94e2a8d6c5b4a3f2e1d0c".into(),
        description: "TARI 2026".into(),
        total_cents: 1000 * transfers as i64,
        fee_cents: Some(150),
        transfers: (1..=transfers)
            .map(|i| ReceiptTransfer {
                amount_cents: 1000,
                beneficiary_fiscal_code: format!("7777777777{}", i % 10),
                beneficiary_name: Some(format!(
                    "Beneficiario numero {i} con un nome piuttosto lungo"
                )),
                remittance_information: long_text(i),
                iban: Some("IT60X0542811101000000123456".into()),
            })
            .collect(),
        psp: "Banca d’Esempio (ABI01234)".into(),
        channel: "ABI01234_01 · carta".into(),
        paid_at: Utc.with_ymd_and_hms(2026, 7, 1, 10, 15, 30).unwrap(),
        outcome: "OK".into(),
        stamps: vec![StampInfo {
            iubd: "01234567890123".into(),
            amount_cents: 1600,
            purchased_at: "2026-07-01T12:15:00".into(),
            document_digest: "wpa9DvQwpqqzQvA0u7bVh2TiTzUZ8IiRcXjMiDA7A8c=".into(),
        }],
        verify_url: "https://mpay.example.it/ricevute/verify/Zr4kq3n0b8Lr2xY".into(),
    }
}

#[test]
fn receipt_with_five_long_transfers_renders_every_text_and_a_verify_qr() {
    let out = out("receipt");
    let r = receipt(5);
    let pdf = write_pdf(&out, "receipt", &render_receipt(&r).unwrap());
    let pages = rasterize(&pdf, 150);
    assert_eq!(qr_codes(&pages), vec![r.verify_url.clone()]);
    let text = text_of(&pdf);
    for i in 1..=5 {
        let t = long_text(i);
        assert!(text.contains(&t), "transfer {i} text {t:?} not in {text}");
        assert!(
            text.contains(&format!(
                "Beneficiario numero {i} con un nome piuttosto lungo"
            )),
            "beneficiary {i}"
        );
    }
    for expected in [
        "c1a5d3e0b7f94e2a8d6c5b4a3f2e1d0c",
        // 10:15:30 UTC in July = 12:15:30 in Rome
        "01/07/2026 12:15:30",
        "Anna D’Esempio",
        "Mario Rossi",
        "50,00 €",
        "01234567890123",
        "wpa9DvQwpqqzQvA0u7bVh2TiTzUZ8IiRcXjMiDA7A8c=",
        "3122 0260 0000 0001 71",
        "12202600000000171",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    assert!(
        !text.contains("c1a5d3e0b7f94e2a8d6c5b4a3f2e1d0c-1"),
        "receipt id never with a transfer index"
    );
}

#[test]
fn notice_with_long_descriptions_keeps_every_word() {
    let out = out("long");
    let options: Vec<NoticeOption> = [NAV1, NAV2, NAV3, NAV4]
        .iter()
        .enumerate()
        .map(|(i, nav)| {
            let mut o = option(
                OptionKind::Installment {
                    number: i as u32 + 1,
                    of: 4,
                },
                nav,
                2500,
                (2026, 3 + i as u32, 1),
                &long_text(i + 1),
            );
            o.postal_account = Some("000012345678".into());
            o
        })
        .collect();
    let mut n = notice(options);
    n.ec_name = "Unione dei Comuni della Valle d’Esempio e dei territori limitrofi — Servizio associato per la riscossione delle entrate".into();
    n.subject = long_text(9);
    let pdf = write_pdf(&out, "long", &render_notice(&n).unwrap());
    let text = text_of(&pdf);
    for i in 1..=4 {
        assert!(text.contains(&long_text(i)), "description {i} cut");
    }
    assert!(text.contains(&long_text(9)), "subject cut");
    assert!(
        text.contains("Servizio associato per la riscossione delle entrate"),
        "EC name cut"
    );
    let pages = rasterize(&pdf, 150);
    assert!(pages.len() >= 2, "eight boxes do not fit one page");
    assert_eq!(qr_codes(&pages).len(), 4);
}

#[test]
fn merged_notices_keep_every_notice_in_order() {
    let out = out("merged");
    let a = notice(vec![option(
        OptionKind::Single,
        NAV1,
        100,
        (2026, 1, 31),
        "a",
    )]);
    let mut b = notice(vec![option(
        OptionKind::Single,
        NAV2,
        200,
        (2026, 2, 28),
        "b",
    )]);
    b.debtor.name = "Secondo Debitore".into();
    let c = notice(vec![
        option(
            OptionKind::Installment { number: 1, of: 2 },
            NAV3,
            300,
            (2026, 3, 31),
            "c1",
        ),
        option(
            OptionKind::Installment { number: 2, of: 2 },
            NAV4,
            400,
            (2026, 4, 30),
            "c2",
        ),
    ]);
    let pdf = write_pdf(&out, "merged", &render_notices([&a, &b, &c]).unwrap());
    let pages = rasterize(&pdf, 150);
    assert_eq!(pages.len(), 3, "one page per notice");
    assert_eq!(
        qr_codes(&pages[..1]),
        vec![format!("PAGOPA|002|{NAV1}|{EC}|100")]
    );
    assert_eq!(
        qr_codes(&pages[1..2]),
        vec![format!("PAGOPA|002|{NAV2}|{EC}|200")]
    );
    assert_eq!(qr_codes(&pages[2..]).len(), 2);
    assert!(text_of(&pdf).contains("Secondo Debitore"));
}

#[test]
fn bad_input_is_refused_before_drawing() {
    let mut n = notice(vec![option(
        OptionKind::Single,
        "12345",
        100,
        (2026, 1, 31),
        "x",
    )]);
    assert!(matches!(
        render_notice(&n),
        Err(mpay_documents::DocumentError::InvalidNoticeNumber(_))
    ));
    n.options.clear();
    assert_eq!(
        render_notice(&n),
        Err(mpay_documents::DocumentError::NoOptions)
    );
    let mut merged = mpay_documents::MergedNotices::new();
    let mut bad = notice(vec![option(
        OptionKind::Single,
        NAV1,
        100,
        (2026, 1, 31),
        "x",
    )]);
    bad.options[0].postal_account = Some("not digits".into());
    assert!(merged.add(&bad).is_err());
    assert!(merged.is_empty());
}
