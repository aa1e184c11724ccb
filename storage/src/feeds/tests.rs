//! Unit tests of the feed store internals.

use mpay_messages::feeds::{IuvExchangeLine, IuvKind, OutcomeLine, RowOutcome};
use mpay_messages::NoticeLayout;

use super::{engine::*, outcomes::*, seen::*};
use crate::codec::{decode, encode};

#[test]
fn the_iuv_layout_is_explained_in_italian_only() {
    let m = iuv_layout_it(&NoticeLayout::Aux3 {
        segregation_code: 1,
    });
    assert_eq!(
        m,
        "lo IUV deve avere 17 cifre e iniziare con il codice di segregazione 01"
    );
    assert!(!m.contains("IUV does"), "{m}");
}

fn sample_outcome(row: u64) -> StoredOutcome {
    let line = OutcomeLine {
        row: Some(row),
        iupd: format!("P-{row}"),
        iud: format!("P-{row}-U"),
        requested: "I".into(),
        outcome: RowOutcome::Warn,
        performed: "INSERITO".into(),
        iuv: "01000000000100121".into(),
        nav: "301000000000100121".into(),
        amount: "10.00".into(),
        due_date: "2025-06-30".into(),
        codes: vec!["WARN_BOOLEAN_ALIAS".into(), "X;\"y\"".into()],
        descriptions: vec!["a | b".into(), "è".into()],
    };
    let iuv = IuvExchangeLine {
        row,
        iupd: line.iupd.clone(),
        iud: line.iud.clone(),
        option_index: 2,
        kind: IuvKind::B,
        iuv: line.iuv.clone(),
        nav: line.nav.clone(),
        org_fiscal_code: "80000000010".into(),
        amount: line.amount.clone(),
        due_date: line.due_date.clone(),
        performed: line.performed.clone(),
    };
    StoredOutcome {
        line,
        iuv: Some(iuv),
    }
}

#[test]
fn packed_outcomes_round_trip() {
    let same = sample_outcome(7);
    let mut differs = sample_outcome(8);
    if let Some(x) = &mut differs.iuv {
        x.amount = "11.00".into();
    }
    let mut none = sample_outcome(9);
    none.iuv = None;
    none.line.row = None;
    for o in [same, differs, none] {
        let bytes = encode(&vec![Packed::pack(o.clone())]).unwrap();
        let back: Vec<Packed> = decode("t", b"k", &bytes).unwrap();
        assert_eq!(
            back.into_iter().map(Packed::unpack).collect::<Vec<_>>(),
            [o]
        );
    }
    let full = encode(&sample_outcome(7)).unwrap().len();
    let packed = encode(&vec![Packed::pack(sample_outcome(7))])
        .unwrap()
        .len();
    assert!(packed * 10 < full * 7, "{packed} vs {full}");
}

#[test]
fn key_set_is_exact_across_growth_and_chunks() {
    let mut s = KeySet::new();
    for i in 0..100_000u32 {
        assert!(s.insert(format!("I{i}").as_bytes()), "{i}");
    }
    for i in 0..100_000u32 {
        assert!(!s.insert(format!("I{i}").as_bytes()), "{i}");
        assert!(s.contains(format!("I{i}").as_bytes()));
        assert!(!s.contains(format!("P{i}").as_bytes()));
    }
    // keys spanning chunk ends, and one longer than a chunk
    let long = vec![b'x'; KEY_CHUNK - 10];
    assert!(s.insert(&long));
    assert!(s.insert(b"I-after-long"));
    let huge = vec![b'y'; KEY_CHUNK + 1];
    assert!(s.insert(&huge));
    assert!(!s.insert(&huge));
    assert!(s.contains(&long) && s.contains(&huge) && s.contains(b"I-after-long"));
    assert_eq!(s.keys().count(), 100_003);
}

#[test]
fn seen_set_spills_to_the_tree_and_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let tree = db.open_tree("feed_seen").unwrap();
    let mut s = SeenSet::new(tree.clone(), b"80000000010FLOW");
    s.budget = 64 * 1024; // spills after a few thousand keys
    for i in 0..20_000u32 {
        assert!(s.insert(b'I', &format!("IUD-{i}")).unwrap(), "{i}");
        if i % 3 == 0 {
            assert!(!s.insert(b'I', &format!("IUD-{}", i / 2)).unwrap(), "{i}");
        }
    }
    assert!(s.mem.is_none(), "spilled");
    s.flush().unwrap();
    for i in 0..20_000u32 {
        assert!(s.contains(b'I', &format!("IUD-{i}")).unwrap());
        assert!(!s.contains(b'P', &format!("IUD-{i}")).unwrap());
    }
    assert_eq!(tree.len(), 20_000);
    s.clear().unwrap();
    assert_eq!(tree.len(), 0);
    assert!(!s.contains(b'I', "IUD-1").unwrap());
}
