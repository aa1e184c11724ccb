//! Fuzz target (bolero) of the feed load engine on a real sled store: any CSV bytes, as an
//! Ente uploads them, go through `load_feed` (pre-scan, row checks, plan, commit, FULL
//! cancellation). The reader alone is `messages/tests/fuzz.rs::feed_csv`; this one covers
//! what the store does with what the reader yields.
//!
//! Properties: the load ends (never RUNNING without a stop), with `Ok` — a bad file is a
//! FAILED record with its file-level error, never an `Err`; a FAILED load applied nothing;
//! counters add up (loaded + rejected ≤ read); every outcome line names a row that was read;
//! the ESITO report of any load can be written. Inputs: the corpus in
//! `tests/__fuzz__/feed_load/corpus/`, `../shared/feeds/samples` when present (read at run
//! time), random bytes, and splices of those into the seeds. 4 s under `cargo test`
//! (`BOLERO_RANDOM_TEST_TIME_MS` to change); `ops/fuzz run feed_load SECONDS` for longer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mpay_messages::feeds::{FeedMode, Mb14AmountMode};
use mpay_messages::{Iban, NoticeLayout, OrgFiscalCode};
use mpay_storage::feeds::{
    load_feed, outcomes, write_outcome_report, BytesSource, FeedOrg, FeedService, FeedStatus,
    LoadOptions, ProgressControl,
};
use mpay_storage::Store;

const ORG: &str = "80000000010";

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
        ibans: vec![Iban::parse("IT60X0542811101000000123456").unwrap()],
        services: ["TARI", "CDS", "RETTA", "LICENZA_TEST"]
            .into_iter()
            .map(svc)
            .collect(),
        mb14_amount_mode: Mb14AmountMode::Mypay,
        default_due_date: None,
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("tests/__fuzz__/feed_load/corpus")];
    let shared = root.join("../../shared/feeds/samples");
    if shared.is_dir() {
        dirs.push(shared);
    }
    let mut out = Vec::new();
    for d in dirs {
        let mut paths: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "csv"))
            .collect();
        paths.sort();
        out.extend(paths.iter().map(|p| std::fs::read(p).unwrap()));
    }
    assert!(!out.is_empty());
    out
}

/// `[seed, pos_hi, pos_lo, op, text…]`: overwrite, insert, or delete at a fraction of the seed.
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
    match op % 3 {
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
        _ => {
            let end = (pos + text.len()).min(out.len());
            out.drain(pos..end);
        }
    }
    Some(out)
}

static FLOW: AtomicU64 = AtomicU64::new(0);
/// Loads that applied rows, and loads refused as a whole: the run must reach both paths.
static APPLIED: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);

fn check_load(store: &Store, bytes: Vec<u8>, flags: u8) {
    let flow = format!("FZ{}", FLOW.fetch_add(1, Ordering::Relaxed));
    // the version comes from the header; a standard name's token must agree with it
    // (FILE_VERSION_MISMATCH), tried one time in sixteen
    let mut opts = LoadOptions::new(if flags & 0xF0 == 0x80 {
        format!("c_x000-{flow}-2_0.csv")
    } else {
        format!("{flow}.csv")
    });
    opts.mode = if flags & 1 == 1 {
        FeedMode::Full
    } else {
        FeedMode::Delta
    };
    opts.dry_run = flags & 2 == 2;
    opts.batch_positions = if flags & 4 == 4 { 1 } else { 128 };
    let out = load_feed(store, &org(), &BytesSource(bytes), &opts, &mut |_| {
        ProgressControl::Continue
    })
    .unwrap_or_else(|e| panic!("a load of any bytes ends with a record, not {e:?}"));
    let r = out.record;
    assert_ne!(r.status, FeedStatus::Running, "{r:?}");
    assert!(
        r.rows_loaded + r.rows_rejected <= r.rows_read,
        "counters: {r:?}"
    );
    if r.status == FeedStatus::Failed {
        let e = r.error.as_ref().expect("a FAILED load says why");
        assert!(!e.message.is_empty());
        assert!(e.row.is_none_or(|n| n >= 1), "{e:?}");
        assert_eq!(r.rows_loaded, 0, "a FAILED load applied rows: {r:?}");
        assert_eq!(r.groups_committed, 0, "{r:?}");
    }
    if r.rows_loaded > 0 {
        APPLIED.fetch_add(1, Ordering::Relaxed);
    }
    if r.status == FeedStatus::Failed {
        REFUSED.fetch_add(1, Ordering::Relaxed);
    }
    let org_fc = OrgFiscalCode::parse(ORG).unwrap();
    for o in outcomes(store, &org_fc, &flow).unwrap() {
        let o = o.unwrap();
        if let Some(row) = o.line.row {
            assert!(
                (1..=r.rows_read.max(r.rows_total)).contains(&row),
                "outcome of row {row}, {} rows read",
                r.rows_read
            );
        }
    }
    let mut report = Vec::new();
    write_outcome_report(store, &org_fc, &flow, &mut report).unwrap();
}

#[test]
fn feed_load() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let store = AssertUnwindSafe(&store);
    let seeds = seeds();
    bolero::check!()
        .with_test_time(Duration::from_secs(4))
        .with_max_len(4096)
        .for_each(|data: &[u8]| {
            let flags = data.first().copied().unwrap_or(0);
            check_load(&store, data.to_vec(), flags);
            if let Some(m) = splice(&seeds, data) {
                check_load(&store, m, flags);
            }
        });
    let (applied, refused) = (
        APPLIED.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
    );
    eprintln!(
        "feed_load: {} loads, {applied} applied rows, {refused} refused",
        FLOW.load(Ordering::Relaxed)
    );
    assert!(
        applied > 0 && refused > 0,
        "the seeds reach both the commit and the refusal"
    );
}
