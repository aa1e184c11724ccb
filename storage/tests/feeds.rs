//! Bulk feeds applied to a real sled store (FORMAT.md §5): every sample of
//! `shared/feeds/samples` with its expected per-row outcome (byte-compared with the
//! `-ESITO` / `-IUV-EXCHANGE` samples), each version and mode, Tipo A / B, rejections, FULL-mode
//! cancellation never touching paid positions, duplicate flow id, resume after a stop.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use mpay_messages::feeds::{FeedManifest, FeedMode, Mb14AmountMode};
use mpay_messages::position::{OptionStatus, PositionStatus};
use mpay_messages::{Iban, NoticeLayout, OrgFiscalCode};
use mpay_storage::feeds::{
    get_feed, interrupted_feeds, load_feed, mark_failed, outcomes, write_iuv_exchange,
    write_outcome_report, BytesSource, FeedError, FeedOrg, FeedService, FeedStatus, LoadOptions,
    ProgressControl, StoredOutcome,
};
use mpay_storage::{PositionRepository, Store};

fn samples() -> Option<PathBuf> {
    let dir = std::env::var_os("FEEDS_SAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/feeds/samples")
        });
    if dir.is_dir() {
        Some(dir)
    } else {
        if std::env::var_os("MPAY_REQUIRE_SHARED").is_some_and(|v| v == "1") {
            panic!("reference material missing and MPAY_REQUIRE_SHARED=1");
        }
        eprintln!("SKIPPED: samples not found at {}", dir.display());
        None
    }
}

fn read(dir: &std::path::Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

const ORG: &str = "80000000010";
const IBAN: &str = "IT60X0542811101000000123456";

fn org() -> FeedOrg {
    let svc = |code: &str| FeedService {
        code: code.into(),
        iban: None,
        category: Some("9/0101101IM/".into()),
        due_date_required: false,
        active: true,
        anonymous_allowed: false,
        layout: None,
    };
    FeedOrg {
        fiscal_code: OrgFiscalCode::parse(ORG).unwrap(),
        name: "Ente di Esempio".into(),
        ipa_code: Some("c_x000".into()),
        layout: NoticeLayout::Aux3 {
            segregation_code: 1,
        },
        other_layouts: vec![],
        ibans: vec![Iban::parse(IBAN).unwrap()],
        services: ["TARI", "CDS", "RETTA", "LICENZA_TEST"]
            .into_iter()
            .map(svc)
            .collect(),
        mb14_amount_mode: Mb14AmountMode::Mypay,
        default_due_date: None,
    }
}

fn org_fc() -> OrgFiscalCode {
    OrgFiscalCode::parse(ORG).unwrap()
}

/// Sets the IUV sequence so the next generated notice has base `next` (the samples were
/// produced with a shared counter).
fn set_counter(store: &Store, next: u64) {
    let line = format!(
        "{{\"kind\":\"counter\",\"key\":\"iuv/{ORG}/3-01\",\"value\":{}}}\n",
        next - 1
    );
    store
        .ledger
        .import(&mut std::io::Cursor::new(line.into_bytes()))
        .unwrap();
}

fn load(store: &Store, bytes: Vec<u8>, opts: &LoadOptions) -> mpay_storage::feeds::FeedOutcome {
    load_feed(store, &org(), &BytesSource(bytes), opts, &mut |_| {
        ProgressControl::Continue
    })
    .unwrap()
}

fn lines(store: &Store, flow: &str) -> Vec<StoredOutcome> {
    outcomes(store, &org_fc(), flow)
        .unwrap()
        .map(|o| o.unwrap())
        .collect()
}

fn esito(store: &Store, flow: &str) -> String {
    let mut out = Vec::new();
    write_outcome_report(store, &org_fc(), flow, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// (row, esito, azioneEseguita, codiceEsito) of each report line.
fn summary(store: &Store, flow: &str) -> Vec<(Option<u64>, String, String, String)> {
    lines(store, flow)
        .into_iter()
        .map(|o| {
            (
                o.line.row,
                o.line.outcome.as_str().to_string(),
                o.line.performed,
                o.line.codes.join("|"),
            )
        })
        .collect()
}

fn s(row: u64, esito: &str, done: &str, code: &str) -> (Option<u64>, String, String, String) {
    (Some(row), esito.into(), done.into(), code.into())
}

/// Compares two CSV texts line by line; a timestamp-like column (none today) would be
/// tolerated by masking `\d{4}-\d\d-\d\dT...` values.
fn assert_same_csv(actual: &str, expected: &str) {
    let mask = |l: &str| {
        l.split(';')
            .map(|f| {
                if f.len() > 10 && f.contains('T') && f.starts_with("20") {
                    "<ts>"
                } else {
                    f
                }
            })
            .collect::<Vec<_>>()
            .join(";")
    };
    let a: Vec<String> = actual.split("\r\n").map(mask).collect();
    let e: Vec<String> = expected.split("\r\n").map(mask).collect();
    assert_eq!(a, e, "\nactual:\n{actual}\nexpected:\n{expected}");
}

fn tmp() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    (dir, store)
}

#[test]
fn sample_a_delta_tipo_a() {
    let Some(dir) = samples() else { return };
    let (_d, store) = tmp();
    let opts = LoadOptions::new("c_x000-TARI2025A-2_0.csv");
    let out = load(
        &store,
        read(&dir, "ours_a_delta_tipoA__c_x000-TARI2025A-2_0.csv"),
        &opts,
    );
    assert_eq!(out.record.status, FeedStatus::Done);
    assert_eq!(
        summary(&store, "TARI2025A"),
        vec![
            s(1, "OK", "INSERITO", "OK"),
            s(2, "OK", "INSERITO", "OK"),
            s(3, "KO", "SCARTATO", "ROW_NOT_FOUND"),
        ]
    );
    let p = store
        .ledger
        .get(&org_fc(), "TARI-2025-0001")
        .unwrap()
        .unwrap();
    assert_eq!(p.status, PositionStatus::Valid);
    assert_eq!(p.service_code.as_deref(), Some("TARI"));
    let o = &p.payment_options[0];
    assert_eq!(o.iuv.as_str(), "01000000000100121");
    assert_eq!(o.nav.as_str(), "301000000000100121");
    assert_eq!(o.amount.cents(), 24580);
    assert_eq!(o.transfers.len(), 1);
    assert_eq!(o.transfers[0].amount.cents(), 24580);
    // IUV exchange lists the two confirmed (Tipo A) IUVs
    let mut x = Vec::new();
    assert_eq!(
        write_iuv_exchange(&store, &org_fc(), "TARI2025A", &mut x).unwrap(),
        2
    );
    let x = String::from_utf8(x).unwrap();
    assert!(x.contains(
        "1;TARI-2025-0001;TARI25-0001-U;1;A;01000000000100121;301000000000100121;80000000010;245.80;2025-06-30;INSERITO\r\n"
    ));
    let r = get_feed(&store, &org_fc(), "TARI2025A").unwrap().unwrap();
    assert_eq!((r.rows_total, r.rows_loaded, r.rows_rejected), (3, 2, 1));
}

#[test]
fn duplicate_flow_id_is_refused() {
    let Some(dir) = samples() else { return };
    let (_d, store) = tmp();
    let bytes = read(&dir, "ours_a_delta_tipoA__c_x000-TARI2025A-2_0.csv");
    let opts = LoadOptions::new("c_x000-TARI2025A-2_0.csv");
    load(&store, bytes.clone(), &opts);
    let err = load_feed(&store, &org(), &BytesSource(bytes), &opts, &mut |_| {
        ProgressControl::Continue
    })
    .unwrap_err();
    assert!(matches!(err, FeedError::Duplicate { .. }), "{err}");
    assert!(err.to_string().starts_with("FILE_DUPLICATE"), "{err}");
}

#[test]
fn sample_b_tipo_b_matches_iuv_exchange_sample() {
    let Some(dir) = samples() else { return };
    let (_d, store) = tmp();
    set_counter(&store, 1004);
    let out = load(
        &store,
        read(&dir, "ours_b_delta_tipoB__c_x000-CDS2025B-2_0.csv"),
        &LoadOptions::new("c_x000-CDS2025B-2_0.csv"),
    );
    assert_eq!(out.record.status, FeedStatus::Done);
    let mut x = Vec::new();
    write_iuv_exchange(&store, &org_fc(), "CDS2025B", &mut x).unwrap();
    let expected = String::from_utf8(read(
        &dir,
        "ours_b_iuv_exchange__c_x000-CDS2025B-2_0-IUV-EXCHANGE.csv",
    ))
    .unwrap();
    assert_same_csv(&String::from_utf8(x).unwrap(), &expected);
    // one position, single option + two installments
    let p = store
        .ledger
        .get(&org_fc(), "CDS-2025-0102")
        .unwrap()
        .unwrap();
    assert_eq!(p.payment_options.len(), 3);
    assert!(!p.payment_options[0].is_partial_payment);
    assert!(p.payment_options[1].is_partial_payment && p.payment_options[2].is_partial_payment);
    let e = esito(&store, "CDS2025B");
    assert!(e.contains("Rata inserita, IUV generato"), "{e}");
}

/// A DELTA feed with the state sample (c) assumes before the FULL load.
fn full_prestate(store: &Store) {
    let csv = "IUPD;descrizionePosizioneDebitoria;indiceOpzionePagamento;tipoOpzionePagamento;descrizioneOpzionePagamento;IUD;codIuv;tipoIdentificativoUnivoco;codiceIdentificativoUnivoco;anagraficaPagatore;mailPagatore;dataEsecuzionePagamento;importoDovuto;tipoDovuto;causaleVersamento;datiSpecificiRiscossione;flgGeneraIuv;flagPagamentoPu;azione\r\n\
TARI-2025-0001;TARI 2025 utenza 0001;1;SINGLE_INSTALLMENT;Rata unica;TARI25-0001-U;01000000000100121;F;TSTPRV80A01H501A;Persona Prova Uno;uno@example.invalid;2025-06-30;245.80;TARI;TARI 2025 rata unica;9/0101101IM/;true;true;I\r\n\
TARI-2025-0002;TARI 2025 utenza 0002;1;SINGLE_INSTALLMENT;Rata unica;TARI25-0002-U;01000000000100222;G;01234567897;Ditta Esempio Srl;;2025-06-30;1310.00;TARI;TARI 2025 rata unica;9/0101101IM/;true;true;I\r\n\
TARI-2025-0003;TARI 2025 utenza 0003;1;SINGLE_INSTALLMENT;Rata unica;TARI25-0003-U;01000000000100727;F;TSTFNT85E50D612X;Fantasia Quattro Persona;;2025-06-30;77.00;TARI;TARI 2025 rata unica;9/0101101IM/;true;true;I\r\n\
TARI-2025-0004;TARI 2025 utenza 0004;1;SINGLE_INSTALLMENT;Rata unica;TARI25-0004-U;01000000000100828;F;TSTDMO90C15L219D;Demo Tre Persona;;2025-06-30;35.00;TARI;TARI 2025 rata unica;9/0101101IM/;true;true;I\r\n";
    let out = load(
        store,
        csv.as_bytes().to_vec(),
        &LoadOptions::new("c_x000-TARI2025PRE-2_0.csv"),
    );
    assert_eq!(
        out.record.rows_loaded,
        4,
        "{:?}",
        summary(store, "TARI2025PRE")
    );
    // TARI25-0002-U gets paid
    store
        .ledger
        .modify(&org_fc(), "TARI-2025-0002", &mut |p| {
            p.status = PositionStatus::Paid;
            for o in &mut p.payment_options {
                o.status = OptionStatus::PoPaid;
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn sample_c_full_matches_esito_and_never_cancels_paid() {
    let Some(dir) = samples() else { return };
    let (_d, store) = tmp();
    full_prestate(&store);
    set_counter(&store, 1009);
    let manifest =
        FeedManifest::parse(&String::from_utf8(read(&dir, "ours_c_full__manifest.json")).unwrap())
            .unwrap();
    let opts = LoadOptions::new("c_x000-TARI2025FULL-2_0.zip").with_manifest(&manifest);
    assert_eq!(opts.mode, FeedMode::Full);
    let out = load(
        &store,
        read(&dir, "ours_c_full__c_x000-TARI2025FULL-2_0.csv"),
        &opts,
    );
    assert_eq!(
        out.record.status,
        FeedStatus::Done,
        "{:?}",
        out.record.error
    );
    let expected =
        String::from_utf8(read(&dir, "ours_c_full__c_x000-TARI2025FULL-2_0-ESITO.csv")).unwrap();
    assert_same_csv(&esito(&store, "TARI2025FULL"), &expected);
    let paid = store
        .ledger
        .get(&org_fc(), "TARI-2025-0002")
        .unwrap()
        .unwrap();
    assert_eq!(paid.status, PositionStatus::Paid);
    assert_eq!(paid.payment_options[0].status, OptionStatus::PoPaid);
    let gone = store
        .ledger
        .get(&org_fc(), "TARI-2025-0004")
        .unwrap()
        .unwrap();
    assert_eq!(gone.status, PositionStatus::Invalid);
    assert_eq!((out.record.cancelled, out.record.skipped_paid), (1, 1));
}

#[test]
fn full_guard_holds_then_confirm_applies() {
    let Some(dir) = samples() else { return };
    let (_d, store) = tmp();
    full_prestate(&store);
    // a FULL file with only TARI25-0001-U: 2 of 3 unpaid in scope would be cancelled
    let full = String::from_utf8(read(&dir, "ours_c_full__c_x000-TARI2025FULL-2_0.csv")).unwrap();
    let one: String = full.split_inclusive("\r\n").take(2).collect();
    let mut opts = LoadOptions::new("c_x000-TARIG-2_0.csv");
    opts.mode = FeedMode::Full;
    let out = load(&store, one.clone().into_bytes(), &opts);
    assert_eq!(out.record.status, FeedStatus::AwaitingConfirmation);
    assert_eq!(
        out.record.error.as_ref().unwrap().code.as_str(),
        "FULL_FEED_GUARD"
    );
    let p4 = store
        .ledger
        .get(&org_fc(), "TARI-2025-0004")
        .unwrap()
        .unwrap();
    assert_eq!(
        p4.status,
        PositionStatus::Valid,
        "nothing applied while held"
    );
    opts.confirm_guard = true;
    let out = load(&store, one.into_bytes(), &opts);
    assert_eq!(out.record.status, FeedStatus::Done);
    assert_eq!(out.record.cancelled, 2);
    let p4 = store
        .ledger
        .get(&org_fc(), "TARI-2025-0004")
        .unwrap()
        .unwrap();
    assert_eq!(p4.status, PositionStatus::Invalid);
    let paid = store
        .ledger
        .get(&org_fc(), "TARI-2025-0002")
        .unwrap()
        .unwrap();
    assert_eq!(paid.status, PositionStatus::Paid);
}

const H13: &str = "IUD;codIuv;tipoIdentificativoUnivoco;codiceIdentificativoUnivoco;anagraficaPagatore;indirizzoPagatore;civicoPagatore;capPagatore;localitaPagatore;provinciaPagatore;nazionePagatore;mailPagatore;dataEsecuzionePagamento;importoDovuto;commissioneCaricoPa;tipoDovuto;tipoVersamento;causaleVersamento;datiSpecificiRiscossione;bilancio;flgGeneraIuv;azione\r\n";

fn row13(iud: &str, iuv: &str, cf: &str, due: &str, amount: &str, action: &str) -> String {
    format!("{iud};{iuv};F;{cf};Persona Prova Uno;;;;;;;;{due};{amount};;LICENZA_TEST;;Diritti pratica {iud};9/0101101IM/;;true;{action}\r\n")
}

#[test]
fn sample_d_rejections_match_esito() {
    let Some(dir) = samples() else { return };
    let (_d, store) = tmp();
    set_counter(&store, 1010);
    let csv = format!(
        "{H13}{}{}{}",
        row13(
            "DEMO-0001",
            "",
            "TSTPRV80A01H501A",
            "2025-06-30",
            "50.00",
            "I"
        ),
        row13(
            "DEMO-0002",
            "",
            "TSTPRV80A01H501A",
            "2025-06-30",
            "12,50",
            "I"
        ),
        row13("DEMO-0003", "", "BADCF", "", "30.00", "M"),
    );
    let out = load(
        &store,
        csv.into_bytes(),
        &LoadOptions::new("c_x000-DEMO20250301C-1_3.csv"),
    );
    assert_eq!(out.record.status, FeedStatus::Done);
    let expected = String::from_utf8(read(
        &dir,
        "ours_d_rejections__c_x000-DEMO20250301C-1_3-ESITO.csv",
    ))
    .unwrap();
    assert_same_csv(&esito(&store, "DEMO20250301C"), &expected);
}

#[test]
fn sample_mypay_1_3() {
    let Some(dir) = samples() else { return };
    let (_d, store) = tmp();
    let out = load(
        &store,
        read(&dir, "c_x000-DEMO20250301A-1_3.csv"),
        &LoadOptions::new("c_x000-DEMO20250301A-1_3.csv"),
    );
    assert_eq!(
        out.record.version.map(|v| v.to_string()).as_deref(),
        Some("1.3")
    );
    assert_eq!(
        summary(&store, "DEMO20250301A"),
        vec![
            // commissioneCaricoPa / tipoVersamento filled: legacy warning, once per file
            s(1, "WARN", "INSERITO", "WARN_LEGACY_FIELD_IGNORED"),
            s(2, "OK", "INSERITO", "OK"),
            s(3, "KO", "SCARTATO", "ROW_NOT_FOUND"),
        ]
    );
    let l = lines(&store, "DEMO20250301A");
    assert_eq!(
        l[0].iuv.as_ref().unwrap().kind,
        mpay_messages::feeds::IuvKind::B
    );
    let a = l[1].iuv.as_ref().unwrap();
    assert_eq!(
        (a.kind, a.iuv.as_str()),
        (mpay_messages::feeds::IuvKind::A, "01000000000101131")
    );
    assert_eq!(l[0].line.descriptions[0], "Dovuto inserito, IUV generato");
}

#[test]
fn sample_mypay_1_4_multi_beneficiary() {
    let Some(dir) = samples() else { return };
    let (_d, store) = tmp();
    load(
        &store,
        read(&dir, "c_x000-DEMO20250301B-1_4.csv"),
        &LoadOptions::new("c_x000-DEMO20250301B-1_4.csv"),
    );
    assert_eq!(
        summary(&store, "DEMO20250301B"),
        vec![
            s(1, "WARN", "INSERITO", "WARN_LEGACY_FIELD_IGNORED"),
            s(2, "OK", "INSERITO", "OK"),
        ]
    );
    // MYPAY mode: total = 80.00 + 20.00
    let p = store
        .ledger
        .get(&org_fc(), "DEMO-2025-0102")
        .unwrap()
        .unwrap();
    let o = &p.payment_options[0];
    assert_eq!(o.amount.cents(), 10000);
    let t: Vec<(u8, i64, Option<String>)> = o
        .transfers
        .iter()
        .map(|t| {
            (
                t.id_transfer,
                t.amount.cents(),
                t.organization_fiscal_code.as_ref().map(|c| c.to_string()),
            )
        })
        .collect();
    assert_eq!(
        t,
        vec![(1, 8000, None), (2, 2000, Some("80000000028".into()))]
    );
    assert_eq!(lines(&store, "DEMO20250301B")[1].line.amount, "100.00");
}

#[test]
fn sample_pu_2_0_installments_and_transfers() {
    let Some(dir) = samples() else { return };
    let (_d, store) = tmp();
    load(
        &store,
        read(&dir, "c_x000-RETTE2025-2_0.csv"),
        &LoadOptions::new("c_x000-RETTE2025-2_0.csv"),
    );
    assert_eq!(
        summary(&store, "RETTE2025"),
        vec![
            s(1, "OK", "INSERITO", "OK"),
            s(2, "OK", "INSERITO", "OK"),
            s(3, "OK", "INSERITO", "OK"),
        ]
    );
    let p = store
        .ledger
        .get(&org_fc(), "RETTA-2025-0201")
        .unwrap()
        .unwrap();
    let shares: Vec<Vec<i64>> = p
        .payment_options
        .iter()
        .map(|o| o.transfers.iter().map(|t| t.amount.cents()).collect())
        .collect();
    assert_eq!(
        shares,
        vec![vec![20000, 10000], vec![10000, 5000], vec![10000, 5000]]
    );
}

#[test]
fn sample_pu_2_0_eng() {
    let Some(dir) = samples() else { return };
    let (_d, store) = tmp();
    load(
        &store,
        read(&dir, "c_x000-FINES2025-2_0_eng.csv"),
        &LoadOptions::new("c_x000-FINES2025-2_0_eng.csv"),
    );
    assert_eq!(
        summary(&store, "FINES2025"),
        vec![
            s(1, "OK", "INSERITO", "OK"),
            s(2, "OK", "INSERITO", "OK"),
            s(3, "KO", "SCARTATO", "ROW_NOT_FOUND"),
        ]
    );
    let p = store
        .ledger
        .get(&org_fc(), "FINE-2025-0302")
        .unwrap()
        .unwrap();
    assert_eq!(p.payment_options[0].iuv.as_str(), "01000000000101232");
}

/// Tipo A IUVs of any of the organization's notice codes are recognised (issue 10: an
/// organization with several segregation codes); other codes stay refused.
#[test]
fn tipo_a_iuvs_of_every_notice_code_are_recognised() {
    let (_d, store) = tmp();
    let mut o = org();
    o.other_layouts = vec![NoticeLayout::Aux3 {
        segregation_code: 2,
    }];
    let csv = format!(
        "{H13}{}{}",
        row13(
            "S-1",
            "02000000000100161",
            "TSTPRV80A01H501A",
            "2025-06-30",
            "5.00",
            "I"
        ),
        row13(
            "S-2",
            "03000000000100101",
            "TSTPRV80A01H501A",
            "2025-06-30",
            "5.00",
            "I"
        ),
    );
    load_feed(
        &store,
        &o,
        &BytesSource(csv.into_bytes()),
        &LoadOptions::new("c_x000-SEG2-1_3.csv"),
        &mut |_| ProgressControl::Continue,
    )
    .unwrap();
    assert_eq!(
        summary(&store, "SEG2"),
        vec![
            s(1, "OK", "INSERITO", "OK"),
            s(2, "KO", "SCARTATO", "ROW_BAD_IUV")
        ]
    );
    let p = store.ledger.get(&org_fc(), "S-1").unwrap().unwrap();
    assert_eq!(p.payment_options[0].nav.as_str(), "302000000000100161");
}

#[test]
fn delta_modify_annul_and_rejections() {
    let (_d, store) = tmp();
    let csv = format!(
        "{H13}{}{}{}{}{}{}",
        row13("R-1", "", "TSTPRV80A01H501A", "2025-06-30", "10.00", "I"),
        row13("R-2", "", "TSTPRV80A01H501A", "2025-06-30", "20.00", "I"),
        row13("R-2", "", "TSTPRV80A01H501A", "2025-06-30", "20.00", "I"),
        // layout: segregation code 02 is not ours
        row13(
            "R-3",
            "02000000000100197",
            "TSTPRV80A01H501A",
            "2025-06-30",
            "5.00",
            "I"
        ),
        // wrong mod-93 check digit
        row13(
            "R-4",
            "01000000000100199",
            "TSTPRV80A01H501A",
            "2025-06-30",
            "5.00",
            "I"
        ),
        row13("R-5", "", "TSTPRV80A01H501A", "2025-06-30", "5.00", "X"),
    );
    load(
        &store,
        csv.into_bytes(),
        &LoadOptions::new("c_x000-D1-1_3.csv"),
    );
    assert_eq!(
        summary(&store, "D1"),
        vec![
            s(1, "OK", "INSERITO", "OK"),
            s(2, "OK", "INSERITO", "OK"),
            s(3, "KO", "SCARTATO", "ROW_DUPLICATE_IUD"),
            s(4, "KO", "SCARTATO", "ROW_BAD_IUV"),
            s(5, "KO", "SCARTATO", "ROW_BAD_IUV"),
            s(6, "KO", "SCARTATO", "ROW_BAD_ACTION"),
        ]
    );
    // R-2 paid; then M R-1, A R-1 is separate flow; M R-2 refused; Tipo A IUV of R-1 reused
    store
        .ledger
        .modify(&org_fc(), "R-2", &mut |p| {
            p.status = PositionStatus::Paid;
            Ok(())
        })
        .unwrap();
    let r1 = store.ledger.get(&org_fc(), "R-1").unwrap().unwrap();
    let r1_iuv = r1.payment_options[0].iuv.to_string();
    let csv = format!(
        "{H13}{}{}{}{}",
        row13("R-1", "", "TSTPRV80A01H501A", "2025-07-31", "11.00", "M"),
        row13("R-2", "", "TSTPRV80A01H501A", "2025-07-31", "21.00", "M"),
        row13(
            "R-6",
            &r1_iuv,
            "TSTPRV80A01H501A",
            "2025-07-31",
            "1.00",
            "I"
        ),
        row13("R-7", "", "TSTPRV80A01H501A", "2025-07-31", "1.00", "I")
            .replace("LICENZA_TEST", "NOPE"),
    );
    load(
        &store,
        csv.into_bytes(),
        &LoadOptions::new("c_x000-D2-1_3.csv"),
    );
    assert_eq!(
        summary(&store, "D2"),
        vec![
            s(1, "OK", "MODIFICATO", "OK"),
            s(2, "KO", "SCARTATO", "ROW_INVALID_STATUS"),
            s(3, "KO", "SCARTATO", "ROW_IUV_DUPLICATE"),
            s(4, "KO", "SCARTATO", "ROW_UNKNOWN_TIPO_DOVUTO"),
        ]
    );
    let r1 = store.ledger.get(&org_fc(), "R-1").unwrap().unwrap();
    assert_eq!(r1.payment_options[0].amount.cents(), 1100);
    assert_eq!(
        r1.payment_options[0].iuv.as_str(),
        r1_iuv,
        "M keeps the IUV"
    );
    let csv = format!(
        "{H13}{}{}{}",
        row13("R-1", "", "TSTPRV80A01H501A", "2025-07-31", "11.00", "A"),
        row13("R-2", "", "TSTPRV80A01H501A", "2025-07-31", "21.00", "A"),
        row13("R-1X", "", "TSTPRV80A01H501A", "2025-07-31", "11.00", "A"),
    );
    load(
        &store,
        csv.into_bytes(),
        &LoadOptions::new("c_x000-D3-1_3.csv"),
    );
    assert_eq!(
        summary(&store, "D3"),
        vec![
            s(1, "OK", "ANNULLATO", "OK"),
            s(2, "KO", "SCARTATO", "ROW_INVALID_STATUS"),
            s(3, "KO", "SCARTATO", "ROW_NOT_FOUND"),
        ]
    );
    let r1 = store.ledger.get(&org_fc(), "R-1").unwrap().unwrap();
    assert_eq!(r1.status, PositionStatus::Invalid);
    let r2 = store.ledger.get(&org_fc(), "R-2").unwrap().unwrap();
    assert_eq!(
        r2.status,
        PositionStatus::Paid,
        "paid positions are never touched"
    );
}

#[test]
fn v2_position_is_all_or_nothing() {
    let (_d, store) = tmp();
    let csv = "IUPD;descrizionePosizioneDebitoria;indiceOpzionePagamento;tipoOpzionePagamento;IUD;codIuv;tipoIdentificativoUnivoco;codiceIdentificativoUnivoco;anagraficaPagatore;dataEsecuzionePagamento;importoDovuto;tipoDovuto;causaleVersamento;azione\r\n\
P-1;Pos 1;1;SINGLE_INSTALLMENT;P1-U;;F;TSTPRV80A01H501A;Persona Prova Uno;2025-07-31;100.00;CDS;Verbale;I\r\n\
P-1;Pos 1;2;INSTALLMENTS;P1-R1;;F;TSTPRV80A01H501A;Persona Prova Uno;2025-07-31;50.00;CDS;Verbale r1;I\r\n\
P-1;Pos 1;2;INSTALLMENTS;P1-R2;;F;TSTPRV80A01H501A;Persona Prova Uno;2025-08-31;5O.00;CDS;Verbale r2;I\r\n\
P-2;Pos 2;1;SINGLE_INSTALLMENT;P2-U;;F;TSTPRV80A01H501A;Persona Prova Uno;2025-07-31;10.00;CDS;Verbale;I\r\n";
    load(
        &store,
        csv.as_bytes().to_vec(),
        &LoadOptions::new("c_x000-V2A-2_0.csv"),
    );
    assert_eq!(
        summary(&store, "V2A"),
        vec![
            s(1, "KO", "SCARTATO", "ROW_POSITION_REJECTED"),
            s(2, "KO", "SCARTATO", "ROW_POSITION_REJECTED"),
            s(3, "KO", "SCARTATO", "ROW_BAD_AMOUNT"),
            s(4, "OK", "INSERITO", "OK"),
        ]
    );
    assert!(store.ledger.get(&org_fc(), "P-1").unwrap().is_none());
    assert!(store.ledger.get(&org_fc(), "P-2").unwrap().is_some());
}

#[test]
fn file_level_errors_apply_nothing() {
    let (_d, store) = tmp();
    // comma-separated
    let out = load(
        &store,
        b"IUD,codIuv,azione\r\nX,,I\r\n".to_vec(),
        &LoadOptions::new("c_x000-BADSEP-1_1.csv"),
    );
    assert_eq!(out.record.status, FeedStatus::Failed);
    assert_eq!(
        out.record.error.as_ref().unwrap().code.as_str(),
        "FILE_VERSION_UNKNOWN"
    );
    // invalid UTF-8 on row 2: row 1 must not be applied
    let mut csv = format!(
        "{H13}{}",
        row13("E-1", "", "TSTPRV80A01H501A", "2025-06-30", "10.00", "I")
    )
    .into_bytes();
    csv.extend_from_slice(
        row13("E-2", "", "TSTPRV80A01H501A", "2025-06-30", "10.00", "I")
            .replace("Persona", "Pers\u{00e8}na")
            .as_bytes(),
    );
    let pos = csv.iter().rposition(|b| *b == 0xA8).unwrap();
    csv[pos] = 0xFF; // break the UTF-8 sequence
    let out = load(&store, csv, &LoadOptions::new("c_x000-BADENC-1_3.csv"));
    assert_eq!(out.record.status, FeedStatus::Failed);
    assert_eq!(
        out.record.error.as_ref().unwrap().code.as_str(),
        "FILE_ENCODING"
    );
    assert!(store.ledger.get(&org_fc(), "E-1").unwrap().is_none());
    let e = esito(&store, "BADENC");
    assert!(e.contains(";FILE_ENCODING;"), "{e}");
    // a failed file (nothing applied) may be uploaded again
    let ok = format!(
        "{H13}{}",
        row13("E-1", "", "TSTPRV80A01H501A", "2025-06-30", "10.00", "I")
    );
    let out = load(
        &store,
        ok.into_bytes(),
        &LoadOptions::new("c_x000-BADENC-1_3.csv"),
    );
    assert_eq!(out.record.status, FeedStatus::Done);
    // wrong Ente in the name
    let out = load(
        &store,
        b"x".to_vec(),
        &LoadOptions::new("c_y999-OTHER-1_3.csv"),
    );
    assert_eq!(
        out.record.error.as_ref().unwrap().code.as_str(),
        "FILE_ENTE_MISMATCH"
    );
    // name token disagrees with the header
    let out = load(
        &store,
        H13.as_bytes().to_vec(),
        &LoadOptions::new("c_x000-MISM-1_4.csv"),
    );
    assert_eq!(
        out.record.error.as_ref().unwrap().code.as_str(),
        "FILE_VERSION_MISMATCH"
    );
}

fn ten_rows() -> Vec<u8> {
    let mut csv = H13.to_string();
    for i in 1..=10 {
        csv.push_str(&row13(
            &format!("S-{i:02}"),
            "",
            "TSTPRV80A01H501A",
            "2025-06-30",
            "10.00",
            "I",
        ));
    }
    csv.into_bytes()
}

#[test]
fn resume_after_stop_and_reopen() {
    resume_after_stop_and_reopen_with(1, 3, 3);
    // batches of 4 positions: the stop comes after the first batch that reaches 3 groups
    resume_after_stop_and_reopen_with(4, 3, 4);
}

fn resume_after_stop_and_reopen_with(batch: usize, stop_after: u64, stopped_at: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut opts = LoadOptions::new("c_x000-RES-1_3.csv");
    opts.batch_positions = batch;
    {
        let store = Store::open(&path).unwrap();
        let out = load_feed(&store, &org(), &BytesSource(ten_rows()), &opts, &mut |p| {
            if p.groups_committed >= stop_after {
                ProgressControl::Stop
            } else {
                ProgressControl::Continue
            }
        })
        .unwrap();
        assert_eq!(out.record.status, FeedStatus::Running);
        assert_eq!(out.record.last_committed_row, stopped_at);
        assert_eq!(out.record.groups_committed, stopped_at);
        assert_eq!(
            store.ledger.count(),
            stopped_at,
            "nothing beyond the checkpoint"
        );
        store.flush_blocking().unwrap();
    }
    let store = Store::open(&path).unwrap();
    let running = interrupted_feeds(&store).unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].flow_id, "RES");
    // without resume: refused as duplicate
    let err = load_feed(&store, &org(), &BytesSource(ten_rows()), &opts, &mut |_| {
        ProgressControl::Continue
    })
    .unwrap_err();
    assert!(matches!(err, FeedError::Duplicate { .. }));
    let mut resume = opts.clone();
    resume.resume = true;
    let out = load(&store, ten_rows(), &resume);
    assert_eq!(out.record.status, FeedStatus::Done);
    assert_eq!((out.record.rows_loaded, out.record.rows_rejected), (10, 0));
    let l = summary(&store, "RES");
    assert_eq!(l.len(), 10);
    assert!(l.iter().all(|x| x.2 == "INSERITO"), "{l:?}");
    for i in 1..=10 {
        assert!(store
            .ledger
            .get(&org_fc(), &format!("S-{i:02}"))
            .unwrap()
            .is_some());
    }
    // IUVs are all distinct
    let mut iuvs: Vec<String> = lines(&store, "RES")
        .into_iter()
        .map(|o| o.line.iuv)
        .collect();
    iuvs.sort();
    iuvs.dedup();
    assert_eq!(iuvs.len(), 10);
}

#[test]
fn interrupted_load_can_be_marked_failed() {
    let (_d, store) = tmp();
    let mut opts = LoadOptions::new("c_x000-KILL-1_3.csv");
    opts.batch_positions = 1;
    load_feed(&store, &org(), &BytesSource(ten_rows()), &opts, &mut |_| {
        ProgressControl::Stop
    })
    .unwrap();
    let r = mark_failed(&store, &org_fc(), "KILL", "node restarted").unwrap();
    assert_eq!(r.status, FeedStatus::Failed);
    assert!(r.error.unwrap().message.contains("dopo la riga 1"));
    // partially applied: a new upload with the same flow id is refused
    let err = load_feed(&store, &org(), &BytesSource(ten_rows()), &opts, &mut |_| {
        ProgressControl::Continue
    })
    .unwrap_err();
    assert!(matches!(err, FeedError::Duplicate { .. }));
}

#[test]
fn dry_run_writes_nothing() {
    let (_d, store) = tmp();
    let mut opts = LoadOptions::new("c_x000-DRY-1_3.csv");
    opts.dry_run = true;
    let out = load(&store, ten_rows(), &opts);
    assert_eq!(out.record.status, FeedStatus::Done);
    assert_eq!(out.record.rows_loaded, 10);
    assert_eq!(store.ledger.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Batched loading: several positions per transaction (`LoadOptions::batch_positions`) must give
// exactly the outcomes of one position per transaction, and a crash never splits a batch.

const V2H: &str = "IUPD;descrizionePosizioneDebitoria;indiceOpzionePagamento;tipoOpzionePagamento;IUD;codIuv;tipoIdentificativoUnivoco;codiceIdentificativoUnivoco;anagraficaPagatore;dataEsecuzionePagamento;importoDovuto;tipoDovuto;causaleVersamento;azione\r\n";

/// One 2.0 row (option 1 = single installment, option 2 = installments).
fn v2row(iupd: &str, option: u32, iud: &str, iuv: &str, amount: &str, action: &str) -> String {
    let kind = if option == 1 {
        "SINGLE_INSTALLMENT"
    } else {
        "INSTALLMENTS"
    };
    format!("{iupd};Pos {iupd};{option};{kind};{iud};{iuv};F;TSTPRV80A01H501A;Persona Prova Uno;2025-07-31;{amount};CDS;Verbale {iud};{action}\r\n")
}

/// `positions` Tipo B positions `G-<n>`; every 5th also has a two-installment option.
/// Returns the CSV and the number of rows.
fn gen_v2(positions: u32, action: &str) -> (Vec<u8>, u64) {
    let mut csv = V2H.to_string();
    let mut rows = 0;
    for n in 1..=positions {
        let iupd = format!("G-{n:06}");
        csv.push_str(&v2row(&iupd, 1, &format!("{iupd}-U"), "", "30.00", action));
        rows += 1;
        if n % 5 == 0 {
            for r in 1..=2 {
                csv.push_str(&v2row(
                    &iupd,
                    2,
                    &format!("{iupd}-R{r}"),
                    "",
                    "15.00",
                    action,
                ));
                rows += 1;
            }
        }
    }
    (csv.into_bytes(), rows)
}

fn with_batch(name: &str, batch: usize) -> LoadOptions {
    let mut o = LoadOptions::new(name);
    o.batch_positions = batch;
    o
}

#[test]
fn non_contiguous_rows_of_a_position_are_refused_in_any_batch() {
    for batch in [1, 512] {
        let (_d, store) = tmp();
        let csv = format!(
            "{V2H}{}{}{}",
            v2row("P-A", 1, "A-U", "", "10.00", "I"),
            v2row("P-B", 1, "B-U", "", "10.00", "I"),
            v2row("P-A", 2, "A-R1", "", "5.00", "I"),
        );
        load(
            &store,
            csv.into_bytes(),
            &with_batch("c_x000-SPLIT-2_0.csv", batch),
        );
        assert_eq!(
            summary(&store, "SPLIT"),
            vec![
                s(1, "OK", "INSERITO", "OK"),
                s(2, "OK", "INSERITO", "OK"),
                s(3, "KO", "SCARTATO", "ROW_OPTION_INCONSISTENT"),
            ],
            "batch {batch}"
        );
        let a = store.ledger.get(&org_fc(), "P-A").unwrap().unwrap();
        assert_eq!(a.payment_options.len(), 1, "batch {batch}");
    }
}

#[test]
fn iuv_uniqueness_inside_one_batch_is_decided_per_position() {
    // row 1 supplies the IUV of sequence 1001 (Tipo A); row 2 supplies it again for another
    // position; row 3 is Tipo B and the generator stands at 1001: it must skip the number row 1
    // holds, whether row 1 is committed already (batch 1) or only planned (one batch).
    for batch in [1, 512] {
        let (_d, store) = tmp();
        set_counter(&store, 1001);
        let csv = format!(
            "{V2H}{}{}{}{}",
            v2row("P-1", 1, "P1-U", "01000000000100121", "10.00", "I"),
            v2row("P-2", 1, "P2-U", "01000000000100121", "10.00", "I"),
            v2row("P-3", 1, "P3-U", "", "10.00", "I"),
            v2row("P-4", 1, "P4-U", "", "10.00", "I"),
        );
        load(
            &store,
            csv.into_bytes(),
            &with_batch("c_x000-DUPA-2_0.csv", batch),
        );
        assert_eq!(
            summary(&store, "DUPA"),
            vec![
                s(1, "OK", "INSERITO", "OK"),
                s(2, "KO", "SCARTATO", "ROW_IUV_DUPLICATE"),
                s(3, "OK", "INSERITO", "OK"),
                s(4, "OK", "INSERITO", "OK"),
            ],
            "batch {batch}"
        );
        let iuvs: Vec<String> = lines(&store, "DUPA")
            .into_iter()
            .map(|o| o.line.iuv)
            .collect();
        assert_eq!(
            iuvs,
            [
                "01000000000100121",
                "01000000000100121",
                "01000000000100222",
                "01000000000100323"
            ],
            "batch {batch}"
        );
        assert!(store.ledger.get(&org_fc(), "P-2").unwrap().is_none());
        assert_eq!(store.ledger.count(), 3);
        assert!(store.ledger.verify().unwrap().is_consistent());
    }
}

#[test]
fn many_batches_load_everything_once_and_a_full_reload_changes_nothing() {
    let (_d, store) = tmp();
    let (csv, rows) = gen_v2(1500, "I");
    let out = load(&store, csv, &with_batch("c_x000-MANY-2_0.csv", 64));
    assert_eq!(out.record.status, FeedStatus::Done);
    assert_eq!(
        (out.record.rows_loaded, out.record.rows_rejected),
        (rows, 0)
    );
    assert_eq!(out.record.groups_committed, 1500);
    assert_eq!(store.ledger.count(), 1500);
    let l = lines(&store, "MANY");
    assert_eq!(l.len() as u64, rows);
    assert!(
        l.windows(2).all(|w| w[0].line.row < w[1].line.row),
        "report in row order"
    );
    let mut iuvs: Vec<&str> = l.iter().map(|o| o.line.iuv.as_str()).collect();
    iuvs.sort_unstable();
    iuvs.dedup();
    assert_eq!(iuvs.len() as u64, rows, "generated IUVs are all distinct");
    assert_eq!(
        store
            .ledger
            .get(&org_fc(), "G-000010")
            .unwrap()
            .unwrap()
            .payment_options
            .len(),
        3
    );
    assert!(store.ledger.verify().unwrap().is_consistent());
    // the same content as a FULL feed: every row unchanged, nothing cancelled
    let (csv, _) = gen_v2(1500, "");
    let mut opts = with_batch("c_x000-MANYFULL-2_0.csv", 100);
    opts.mode = FeedMode::Full;
    let out = load(&store, csv, &opts);
    assert_eq!(
        out.record.status,
        FeedStatus::Done,
        "{:?}",
        out.record.error
    );
    assert_eq!((out.record.cancelled, out.record.skipped_paid), (0, 0));
    assert!(lines(&store, "MANYFULL")
        .iter()
        .all(|o| o.line.performed == "INVARIATO"));
    // a FULL feed with the first 1000 positions only cancels the other 500 (confirmed guard),
    // several positions per cancellation transaction
    let (csv, _) = gen_v2(1000, "");
    let mut opts = with_batch("c_x000-MANYCUT-2_0.csv", 64);
    opts.mode = FeedMode::Full;
    opts.confirm_guard = false;
    opts.max_cancel_permille = 1000;
    let out = load(&store, csv, &opts);
    assert_eq!(
        out.record.status,
        FeedStatus::Done,
        "{:?}",
        out.record.error
    );
    assert_eq!(out.record.cancelled, 500 + 100 * 2);
    let derived: Vec<StoredOutcome> = lines(&store, "MANYCUT")
        .into_iter()
        .filter(|o| o.line.row.is_none())
        .collect();
    assert_eq!(derived.len(), 700);
    assert!(derived.iter().all(|o| o.line.performed == "ANNULLATO"));
    let gone = store.ledger.get(&org_fc(), "G-001500").unwrap().unwrap();
    assert_eq!(gone.status, PositionStatus::Invalid);
    assert!(store.ledger.verify().unwrap().is_consistent());
}

#[test]
fn full_cancellations_one_position_per_transaction() {
    let Some(dir) = samples() else { return };
    let (_d, store) = tmp();
    full_prestate(&store);
    let full = String::from_utf8(read(&dir, "ours_c_full__c_x000-TARI2025FULL-2_0.csv")).unwrap();
    let one: String = full.split_inclusive("\r\n").take(2).collect();
    let mut opts = with_batch("c_x000-TARIB1-2_0.csv", 1);
    opts.mode = FeedMode::Full;
    opts.max_cancel_permille = 1000;
    let out = load(&store, one.into_bytes(), &opts);
    assert_eq!(out.record.status, FeedStatus::Done);
    assert_eq!((out.record.cancelled, out.record.skipped_paid), (2, 1));
    let derived: Vec<(String, String)> = lines(&store, "TARIB1")
        .into_iter()
        .filter(|o| o.line.row.is_none())
        .map(|o| (o.line.iud, o.line.performed))
        .collect();
    assert_eq!(
        derived,
        [
            ("TARI25-0002-U".to_string(), "NON_ANNULLABILE".to_string()),
            ("TARI25-0003-U".into(), "ANNULLATO".into()),
            ("TARI25-0004-U".into(), "ANNULLATO".into()),
        ]
    );
}

#[test]
fn concurrent_changes_during_a_load_are_never_lost() {
    let (_d, store) = tmp();
    let (csv, _) = gen_v2(400, "I");
    load(&store, csv, &LoadOptions::new("c_x000-CC1-2_0.csv"));
    // a modify feed (new amounts) while another writer keeps changing the same positions
    let mut csv = V2H.to_string();
    for n in 1..=400 {
        let iupd = format!("G-{n:06}");
        csv.push_str(&v2row(&iupd, 1, &format!("{iupd}-U"), "", "31.00", "M"));
        if n % 5 == 0 {
            for r in 1..=2 {
                csv.push_str(&v2row(&iupd, 2, &format!("{iupd}-R{r}"), "", "15.00", "M"));
            }
        }
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let writes = std::thread::scope(|sc| {
        let writer = sc.spawn(|| {
            let mut writes = std::collections::HashMap::new();
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                i += 1;
                let iupd = format!("G-{:06}", 1 + i % 400);
                let name = format!("Ufficio {i}");
                store
                    .ledger
                    .modify(&org_fc(), &iupd, &mut |p| {
                        p.office_name = Some(name.clone());
                        Ok(())
                    })
                    .unwrap();
                writes.insert(iupd, name);
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            writes
        });
        let out = load(
            &store,
            csv.into_bytes(),
            &with_batch("c_x000-CC2-2_0.csv", 16),
        );
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(out.record.status, FeedStatus::Done);
        assert_eq!(out.record.rows_rejected, 0, "{:?}", summary(&store, "CC2"));
        writer.join().unwrap()
    });
    assert!(!writes.is_empty());
    for n in 1..=400 {
        let iupd = format!("G-{n:06}");
        let p = store.ledger.get(&org_fc(), &iupd).unwrap().unwrap();
        assert_eq!(
            p.payment_options[0].amount.cents(),
            3100,
            "{iupd}: the feed's change"
        );
        assert_eq!(
            p.office_name.as_ref(),
            writes.get(&iupd),
            "{iupd}: the other writer's last change"
        );
    }
    assert!(store.ledger.verify().unwrap().is_consistent());
}

/// Child side of [`sigkill_mid_batch_leaves_exactly_the_committed_batches`]: loads a feed
/// slowly, publishing each committed checkpoint, until the parent kills it. Once, after 64
/// positions, it flushes (a durability point: what was committed then must survive the kill;
/// what comes later survives only as far as sled's background flush got).
#[test]
fn crash_child_load() {
    let Some(dir) = std::env::var_os("FEEDS_CRASH_CHILD_DIR").map(PathBuf::from) else {
        return; // only runs as the child of the crash test
    };
    let store = Store::open(&dir.join("db")).unwrap();
    let (csv, _) = gen_v2(CRASH_POSITIONS, "I");
    load_feed(
        &store,
        &org(),
        &BytesSource(csv),
        &with_batch("c_x000-CRASH-2_0.csv", 32),
        &mut |p| {
            if p.groups_committed >= 64 && !dir.join("flushed").exists() {
                store.flush_blocking().unwrap();
                std::fs::write(dir.join("flushed"), p.groups_committed.to_string()).unwrap();
            }
            let tmp = dir.join("progress.tmp");
            std::fs::write(&tmp, p.groups_committed.to_string()).unwrap();
            std::fs::rename(&tmp, dir.join("progress")).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(15));
            ProgressControl::Continue
        },
    )
    .unwrap();
    std::fs::write(dir.join("finished"), b"").unwrap();
}

const CRASH_POSITIONS: u32 = 3000;

#[test]
fn sigkill_mid_batch_leaves_exactly_the_committed_batches() {
    let d = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child_load", "--nocapture"])
        .env("FEEDS_CRASH_CHILD_DIR", d.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // wait for a few committed batches, then kill at some point inside the following ones
    let started = std::time::Instant::now();
    loop {
        let g: u64 = std::fs::read_to_string(d.path().join("progress"))
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if g >= 96 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "child made no progress"
        );
        assert!(child.try_wait().unwrap().is_none(), "child ended early");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(
        u64::from(started.elapsed().subsec_nanos() % 40) + 5,
    ));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !d.path().join("finished").exists(),
        "the load must still be running when killed"
    );

    let store = Store::open(&d.path().join("db")).unwrap();
    let rec = get_feed(&store, &org_fc(), "CRASH").unwrap().unwrap();
    assert_eq!(rec.status, FeedStatus::Running);
    let flushed: u64 = std::fs::read_to_string(d.path().join("flushed"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rec.groups_committed >= flushed,
        "{} < {flushed}: a flushed checkpoint was lost",
        rec.groups_committed
    );
    // exactly the positions of the committed batches, each complete, nothing beyond
    assert_eq!(store.ledger.count(), rec.groups_committed);
    assert!(store.ledger.verify().unwrap().is_consistent());
    let committed = lines(&store, "CRASH");
    assert_eq!(committed.len() as u64, rec.rows_read);
    assert_eq!(
        committed.last().and_then(|o| o.line.row),
        Some(rec.last_committed_row)
    );
    for n in 1..=u64::from(CRASH_POSITIONS) {
        let p = store.ledger.get(&org_fc(), &format!("G-{n:06}")).unwrap();
        match p {
            Some(p) => {
                assert!(n <= rec.groups_committed, "G-{n:06} beyond the checkpoint");
                let want = if n % 5 == 0 { 3 } else { 1 };
                assert_eq!(p.payment_options.len(), want, "G-{n:06} half applied");
            }
            None => assert!(n > rec.groups_committed, "G-{n:06} lost"),
        }
    }
    // resume: the rest, each row once
    let (csv, rows) = gen_v2(CRASH_POSITIONS, "I");
    let mut opts = with_batch("c_x000-CRASH-2_0.csv", 32);
    opts.resume = true;
    let out = load(&store, csv, &opts);
    assert_eq!(out.record.status, FeedStatus::Done);
    assert_eq!(
        (out.record.rows_loaded, out.record.rows_rejected),
        (rows, 0)
    );
    assert_eq!(store.ledger.count(), u64::from(CRASH_POSITIONS));
    let all = lines(&store, "CRASH");
    assert_eq!(all.len() as u64, rows);
    assert!(all.iter().all(|o| o.line.performed == "INSERITO"));
    let mut iuvs: Vec<&str> = all.iter().map(|o| o.line.iuv.as_str()).collect();
    iuvs.sort_unstable();
    iuvs.dedup();
    assert_eq!(
        iuvs.len() as u64,
        rows,
        "no IUV handed out twice across the crash"
    );
    assert!(store.ledger.verify().unwrap().is_consistent());
}

/// Issue 10: Tipo B numbers are generated with the notice code of the row's service (its
/// back-office system), the organization's default otherwise — both in one batch, each from
/// its own sequence and free-number window.
#[test]
fn tipo_b_numbers_use_the_notice_code_of_the_service() {
    let (_d, store) = tmp();
    let mut o = org();
    o.other_layouts = vec![NoticeLayout::Aux3 {
        segregation_code: 47,
    }];
    if let Some(s) = o.services.iter_mut().find(|s| s.code == "CDS") {
        s.layout = Some(NoticeLayout::Aux3 {
            segregation_code: 47,
        });
    }
    let header = "IUPD;descrizionePosizioneDebitoria;indiceOpzionePagamento;tipoOpzionePagamento;descrizioneOpzionePagamento;IUD;codIuv;tipoIdentificativoUnivoco;codiceIdentificativoUnivoco;anagraficaPagatore;mailPagatore;dataEsecuzionePagamento;importoDovuto;tipoDovuto;causaleVersamento;datiSpecificiRiscossione;flgGeneraIuv;flagPagamentoPu;flagMultiBeneficiario;numeroBeneficiari;codiceFiscaleEnte_2;denominazioneEnte_2;ibanAccreditoEnte_2;causaleVersamentoEnte_2;importoVersamentoEnte_2;codiceTassonomiaEnte_2;azione\r\n";
    let row = |iupd: &str, tipo: &str| {
        format!("{iupd};Posizione;1;SINGLE_INSTALLMENT;Rata unica;{iupd}-U;;F;TSTPRV80A01H501A;Persona Prova;;2030-06-30;10.00;{tipo};Rata unica;9/0101101IM/;true;true;false;1;;;;;;;I\r\n")
    };
    let csv = format!(
        "{header}{}{}{}{}",
        row("B-1", "TARI"),
        row("B-2", "CDS"),
        row("B-3", "TARI"),
        row("B-4", "CDS")
    );
    load_feed(
        &store,
        &o,
        &BytesSource(csv.into_bytes()),
        &LoadOptions::new("c_x000-SEGB-2_0.csv"),
        &mut |_| ProgressControl::Continue,
    )
    .unwrap();
    let got: Vec<(String, String)> = lines(&store, "SEGB")
        .into_iter()
        .map(|o| (o.line.iupd, o.line.nav))
        .collect();
    assert_eq!(got.len(), 4, "{got:?}");
    for (iupd, nav) in &got {
        let want = if iupd == "B-2" || iupd == "B-4" {
            "347"
        } else {
            "301"
        };
        assert!(nav.starts_with(want), "{iupd}: {nav}");
        let p = store.ledger.get(&org_fc(), iupd).unwrap().unwrap();
        assert_eq!(p.payment_options[0].nav.as_str(), nav);
    }
    let mut navs: Vec<&String> = got.iter().map(|(_, n)| n).collect();
    navs.dedup();
    assert_eq!(navs.len(), 4, "{got:?}");
}

/// Issue 9.13 through the feeds: a notice whose payment is in progress (paGetPayment answered,
/// token not expired) keeps its number and amounts and is not cancelled, by a delta row (M, A)
/// or by a FULL load that leaves it out; other positions of the same files are applied.
#[test]
fn a_feed_leaves_a_notice_with_a_payment_in_progress_as_it_is() {
    let (_d, store) = tmp();
    let csv = format!(
        "{H13}{}{}{}",
        row13("P-1", "", "TSTPRV80A01H501A", "2030-06-30", "10.00", "I"),
        row13("P-2", "", "TSTPRV80A01H501A", "2030-06-30", "20.00", "I"),
        row13("P-3", "", "TSTPRV80A01H501A", "2030-06-30", "30.00", "I"),
    );
    load(
        &store,
        csv.into_bytes(),
        &LoadOptions::new("c_x000-G1-1_3.csv"),
    );
    let begin = |iupd: &str| {
        let p = store.ledger.get(&org_fc(), iupd).unwrap().unwrap();
        store
            .ledger
            .begin_payment(
                &org_fc(),
                iupd,
                &p.payment_options[0].nav,
                p.revision,
                chrono::Utc::now() + chrono::Duration::minutes(30),
            )
            .unwrap();
        p
    };
    let p1 = begin("P-1");
    let p2 = begin("P-2");
    // a new amount for P-1, a cancellation of P-2, a new amount for P-3 (not being paid)
    let csv = format!(
        "{H13}{}{}{}",
        row13("P-1", "", "TSTPRV80A01H501A", "2030-06-30", "11.00", "M"),
        row13("P-2", "", "TSTPRV80A01H501A", "2030-06-30", "20.00", "A"),
        row13("P-3", "", "TSTPRV80A01H501A", "2030-06-30", "31.00", "M"),
    );
    load(
        &store,
        csv.into_bytes(),
        &LoadOptions::new("c_x000-G2-1_3.csv"),
    );
    assert_eq!(
        summary(&store, "G2"),
        vec![
            s(1, "KO", "SCARTATO", "ROW_INVALID_STATUS"),
            s(2, "KO", "SCARTATO", "ROW_INVALID_STATUS"),
            s(3, "OK", "MODIFICATO", "OK"),
        ]
    );
    let why = &lines(&store, "G2")[0].line.descriptions;
    assert!(
        why.iter()
            .any(|d| d.contains("pagamento in corso")
                && d.contains(p1.payment_options[0].nav.as_str())),
        "{why:?}"
    );
    assert_eq!(
        store.ledger.get(&org_fc(), "P-1").unwrap().unwrap(),
        p1,
        "the notice being paid is unchanged"
    );
    assert_eq!(
        store.ledger.get(&org_fc(), "P-2").unwrap().unwrap(),
        p2,
        "the notice being paid is not cancelled"
    );
    assert_eq!(
        store
            .ledger
            .get(&org_fc(), "P-3")
            .unwrap()
            .unwrap()
            .payment_options[0]
            .amount
            .cents(),
        3100
    );
    // FULL with P-3 only: P-1 and P-2 are absent but being paid, so left alone
    let mut opts = LoadOptions::new("c_x000-G3-1_3.csv");
    opts.mode = FeedMode::Full;
    opts.max_cancel_permille = 1000;
    let csv = format!(
        "{H13}{}",
        row13("P-3", "", "TSTPRV80A01H501A", "2030-06-30", "31.00", "M"),
    );
    let out = load(&store, csv.into_bytes(), &opts);
    assert_eq!(out.record.status, FeedStatus::Done, "{:?}", out.record);
    assert_eq!(out.record.cancelled, 0);
    let skipped: Vec<_> = lines(&store, "G3")
        .into_iter()
        .filter(|o| o.line.row.is_none())
        .map(|o| (o.line.iupd, o.line.performed, o.line.codes.join("|")))
        .collect();
    assert_eq!(
        skipped,
        vec![
            (
                "P-1".into(),
                "NON_ANNULLABILE".into(),
                "SKIPPED_IN_PAYMENT".into()
            ),
            (
                "P-2".into(),
                "NON_ANNULLABILE".into(),
                "SKIPPED_IN_PAYMENT".into()
            ),
        ]
    );
    for p in [&p1, &p2] {
        assert_eq!(
            store
                .ledger
                .get(&org_fc(), &p.iupd)
                .unwrap()
                .unwrap()
                .status,
            PositionStatus::Valid
        );
    }
}

/// The receipt recovery's look at the payments in progress reads a time range of their index,
/// not the whole tree, lists a notice once at its latest paGetPayment, and prunes what its
/// lookback left behind (records long expired: they block nothing).
#[test]
fn payments_begun_reads_a_time_range_and_prunes_what_the_lookback_left() {
    use chrono::TimeZone as _;
    let (_d, store) = tmp();
    let csv = format!(
        "{H13}{}{}{}",
        row13("P-1", "", "TSTPRV80A01H501A", "2030-06-30", "10.00", "I"),
        row13("P-2", "", "TSTPRV80A01H501A", "2030-06-30", "20.00", "I"),
        row13("P-3", "", "TSTPRV80A01H501A", "2030-06-30", "30.00", "I"),
    );
    load(
        &store,
        csv.into_bytes(),
        &LoadOptions::new("c_x000-G1-1_3.csv"),
    );
    let window = mpay_messages::domain::position::payment_in_progress_window();
    let t0 = chrono::Utc.with_ymd_and_hms(2026, 11, 1, 10, 0, 0).unwrap();
    // began at t0 + offset (the record holds began + window)
    let begin = |iupd: &str, began: chrono::DateTime<chrono::Utc>| {
        let p = store.ledger.get(&org_fc(), iupd).unwrap().unwrap();
        store
            .ledger
            .begin_payment(
                &org_fc(),
                iupd,
                &p.payment_options[0].nav,
                p.revision,
                began + window,
            )
            .unwrap();
        p.payment_options[0].nav.to_string()
    };
    let n1 = begin("P-1", t0);
    let n2 = begin("P-2", t0 + chrono::Duration::days(1));
    let n3 = begin("P-3", t0 + chrono::Duration::days(10));
    // P-2 asked again a day later: listed once, at the later instant
    assert_eq!(begin("P-2", t0 + chrono::Duration::days(2)), n2);
    let q = store.recovery().unwrap();
    let d = chrono::Duration::days;
    let names = |v: Vec<(String, String)>| v.into_iter().map(|(_, n)| n).collect::<Vec<_>>();
    assert_eq!(
        names(q.payments_begun(t0 - d(1), t0 + d(20)).unwrap()),
        vec![n1.clone(), n2.clone(), n3.clone()]
    );
    assert_eq!(
        names(q.payments_begun(t0 - d(1), t0 + d(1)).unwrap()),
        vec![n1.clone()]
    );
    assert_eq!(
        names(q.payments_begun(t0 - d(1), t0 + d(3)).unwrap()),
        vec![n1.clone(), n2.clone()]
    );
    // the lookback moved past P-1: pruned, also from the records (expired long ago)
    assert_eq!(
        names(q.payments_begun(t0 + d(1), t0 + d(20)).unwrap()),
        vec![n2.clone(), n3.clone()]
    );
    assert_eq!(
        names(q.payments_begun(t0 - d(1), t0 + d(20)).unwrap()),
        vec![n2, n3]
    );
}
