//! Ledger behaviour on a real sled store in a temp dir.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mpay_messages::domain::{Action, PositionError};
use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use mpay_messages::position::*;
use mpay_messages::{Amount, FiscalCode, Iban, NoticeLayout, NoticeNumber, OrgFiscalCode};
use mpay_storage::{LedgerError, ListOrder, PositionFilter, PositionRepository, Store, TimerKind};

const ORG: &str = "80001234568";
const OTHER: &str = "01987654322";
const LAYOUT: NoticeLayout = NoticeLayout::Aux3 {
    segregation_code: 12,
};

fn org(cf: &str) -> OrgFiscalCode {
    OrgFiscalCode::parse(cf).unwrap()
}

fn position(store: &Store, org_cf: &str, iupd: &str, cents: i64) -> DebtPosition {
    let nav = store.ledger.next_notice(&org(org_cf), &LAYOUT).unwrap();
    position_with(org_cf, iupd, cents, nav)
}

fn position_with(org_cf: &str, iupd: &str, cents: i64, nav: NoticeNumber) -> DebtPosition {
    let now = Utc::now();
    DebtPosition {
        organization_fiscal_code: org(org_cf),
        iupd: iupd.into(),
        debtor: Debtor {
            kind: DebtorType::F,
            fiscal_code: FiscalCode::parse("RSSMRA80A01H501U").unwrap(),
            full_name: "Mario Rossi".into(),
            street_name: None,
            civic_number: None,
            postal_code: None,
            city: None,
            province: None,
            region: None,
            country: None,
            email: None,
            phone: None,
        },
        switch_to_expired: false,
        pay_stand_in: true,
        company_name: "Comune di Borgo Demo".into(),
        office_name: None,
        service_code: None,
        validity_date: None,
        status: PositionStatus::Valid,
        inserted_date: now,
        publish_date: Some(now),
        last_updated_date: now,
        payment_date: None,
        payment_options: vec![PaymentOption {
            iuv: nav.iuv(),
            nav,
            amount: Amount::from_cents(cents).unwrap(),
            description: "TARI 2026".into(),
            is_partial_payment: false,
            due_date: now + Duration::days(30),
            retention_date: None,
            fee: Amount::ZERO,
            notification_fee: Amount::ZERO,
            status: OptionStatus::PoUnpaid,
            payment_date: None,
            transfers: vec![Transfer {
                id_transfer: 1,
                amount: Amount::from_cents(cents).unwrap(),
                organization_fiscal_code: None,
                remittance_information: "TARI 2026".into(),
                category: "9/0101108TS/".into(),
                destination: Destination::Iban {
                    iban: Iban::parse("IT47D0103002600000061234567").unwrap(),
                    postal_iban: None,
                },
                company_name: None,
                metadata: vec![],
            }],
            metadata: vec![],
            details: Default::default(),
        }],
        revision: 0,
        origin: mpay_messages::position::Origin::Rest,
    }
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn create_get_find_and_uniqueness() {
    let (_d, store) = open();
    let p = position(&store, ORG, "IUPD-1", 12_345);
    let nav = p.payment_options[0].nav.clone();
    let created = store.ledger.create(p.clone()).unwrap();
    assert_eq!(created.revision, 1);
    assert_eq!(
        store.ledger.get(&org(ORG), "IUPD-1").unwrap().unwrap(),
        created
    );
    assert_eq!(
        store
            .ledger
            .find_by_notice(&org(ORG), &nav)
            .unwrap()
            .unwrap()
            .iupd,
        "IUPD-1"
    );
    // the same notice under another organization is unknown there
    assert!(store
        .ledger
        .find_by_notice(&org(OTHER), &nav)
        .unwrap()
        .is_none());
    assert!(matches!(
        store.ledger.create(p.clone()),
        Err(LedgerError::AlreadyExists(_))
    ));
    let mut dup = p.clone();
    dup.iupd = "IUPD-2".into();
    assert!(matches!(
        store.ledger.create(dup),
        Err(LedgerError::NoticeInUse { .. })
    ));
    // nothing half-written by the refused create
    assert!(store.ledger.get(&org(ORG), "IUPD-2").unwrap().is_none());
    assert_eq!(store.ledger.count(), 1);
    assert!(store.ledger.verify().unwrap().is_consistent());
}

#[test]
fn create_many_is_all_or_nothing() {
    let (_d, store) = open();
    let a = position(&store, ORG, "A", 100);
    let mut b = position(&store, ORG, "B", 100);
    b.payment_options[0].nav = a.payment_options[0].nav.clone();
    b.payment_options[0].iuv = a.payment_options[0].iuv.clone();
    assert!(store.ledger.create_many(vec![a, b]).is_err());
    assert_eq!(store.ledger.count(), 0);
    assert!(store.ledger.get(&org(ORG), "A").unwrap().is_none());
    assert!(store.ledger.verify().unwrap().is_consistent());
}

#[test]
fn change_many_is_all_or_nothing() {
    let (_d, store) = open();
    let a = store
        .ledger
        .create(position(&store, ORG, "A", 100))
        .unwrap();
    let b = store
        .ledger
        .create(position(&store, ORG, "B", 100))
        .unwrap();
    let c = store
        .ledger
        .create(position(&store, ORG, "C", 100))
        .unwrap();
    let iupds = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // the second change refuses: the first is not written
    let refused = store
        .ledger
        .change_many(&org(ORG), &iupds(&["A", "B"]), &|p| {
            if p.iupd == "B" {
                return Err(LedgerError::Contended);
            }
            let mut n = p.clone();
            n.payment_options[0].description = "changed".into();
            Ok(Some(n))
        });
    assert!(matches!(refused, Err(LedgerError::Contended)));
    assert_eq!(store.ledger.get(&org(ORG), "A").unwrap().unwrap(), a);
    // the second replacement claims a notice number held by C: nothing written
    let c_nav = c.payment_options[0].nav.clone();
    let taken = store
        .ledger
        .change_many(&org(ORG), &iupds(&["A", "B"]), &|p| {
            let mut n = p.clone();
            n.company_name = "changed".into();
            if p.iupd == "B" {
                n.payment_options[0].nav = c_nav.clone();
                n.payment_options[0].iuv = c_nav.iuv();
            }
            Ok(Some(n))
        });
    assert!(matches!(taken, Err(LedgerError::NoticeInUse { .. })));
    assert_eq!(store.ledger.get(&org(ORG), "A").unwrap().unwrap(), a);
    assert_eq!(store.ledger.get(&org(ORG), "B").unwrap().unwrap(), b);
    // a missing position: nothing deleted
    let missing = store
        .ledger
        .change_many(&org(ORG), &iupds(&["A", "NOPE"]), &|_| Ok(None));
    assert!(matches!(missing, Err(LedgerError::NotFound)));
    assert!(store.ledger.get(&org(ORG), "A").unwrap().is_some());
    assert_eq!(store.ledger.count(), 3);
    // all accepted: one replaced (revision bumped), one deleted
    let done = store
        .ledger
        .change_many(&org(ORG), &iupds(&["A", "B"]), &|p| {
            Ok((p.iupd == "A").then(|| {
                let mut n = p.clone();
                n.company_name = "changed".into();
                n
            }))
        })
        .unwrap();
    assert_eq!(done.len(), 2);
    let a2 = store.ledger.get(&org(ORG), "A").unwrap().unwrap();
    assert_eq!(a2.company_name, "changed");
    assert_eq!(a2.revision, a.revision + 1);
    assert!(store.ledger.get(&org(ORG), "B").unwrap().is_none());
    assert_eq!(store.ledger.count(), 2);
    assert!(store.ledger.verify().unwrap().is_consistent());
}

#[test]
fn gpd_identifiers_are_stored_apart_from_pagopa_organizations() {
    let (_d, store) = open();
    // an 11-digit organization whose code is the first 11 digits of GPD's test organization
    let short = OrgFiscalCode::parse_unchecked("70012345678").unwrap();
    let long = OrgFiscalCode::parse_gpd("700123456789001").unwrap();
    let nav = NoticeNumber::parse_gpd("9001234567890123456789012").unwrap();
    let mut p = position_with(ORG, "P", 100, nav.clone());
    p.organization_fiscal_code = long.clone();
    p.switch_to_expired = true;
    let mut q = position(&store, ORG, "9001", 100);
    q.organization_fiscal_code = short.clone();
    store.ledger.create(p.clone()).unwrap();
    store.ledger.create(q).unwrap();
    let read = store.ledger.get(&long, "P").unwrap().unwrap();
    assert_eq!(read.payment_options[0].nav, nav);
    assert_eq!(read.payment_options[0].iuv.as_str(), nav.as_str());
    assert_eq!(
        store
            .ledger
            .find_by_notice(&long, &nav)
            .unwrap()
            .unwrap()
            .iupd,
        "P"
    );
    // each organization lists only its own
    let list = |o: &OrgFiscalCode| {
        store
            .ledger
            .list(o, &PositionFilter::default(), ListOrder::IupdAsc, 0, 10)
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.iupd)
            .collect::<Vec<_>>()
    };
    assert_eq!(list(&long), ["P"]);
    assert_eq!(list(&short), ["9001"]);
    assert!(store.ledger.find_by_notice(&short, &nav).unwrap().is_none());
    // timers of both are read back with their organization
    let due = store
        .ledger
        .due_timers(Utc::now() + Duration::days(400), 10)
        .unwrap();
    assert!(
        due.iter().any(|(_, o, i)| *o == long && i == "P"),
        "{due:?}"
    );
    // debtor index, export and import keep it
    let by_debtor = store.ledger.by_debtor("RSSMRA80A01H501U").unwrap();
    assert_eq!(by_debtor.len(), 2);
    assert!(store.ledger.verify().unwrap().is_consistent());
    let mut out = Vec::new();
    store.ledger.export(&mut out).unwrap();
    let (_d2, other) = open();
    other.ledger.import(&mut out.as_slice()).unwrap();
    assert_eq!(other.ledger.get(&long, "P").unwrap().unwrap().iupd, "P");
    assert!(other.ledger.verify().unwrap().is_consistent());
}

#[test]
fn modify_is_compare_and_swap_under_concurrency() {
    let (_d, store) = open();
    store
        .ledger
        .create(position(&store, ORG, "P", 100))
        .unwrap();
    let ledger = store.ledger.clone();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    ledger
                        .modify(&org(ORG), "P", &mut |p| {
                            let c = p.payment_options[0].amount.cents();
                            p.payment_options[0].amount = Amount::from_cents(c + 1).unwrap();
                            Ok(())
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let p = store.ledger.get(&org(ORG), "P").unwrap().unwrap();
    assert_eq!(
        p.payment_options[0].amount.cents(),
        100 + 8 * 50,
        "no lost update"
    );
    assert_eq!(p.revision, 1 + 8 * 50);
}

#[test]
fn modify_refusal_changes_nothing_and_index_follows_changes() {
    let (_d, store) = open();
    store
        .ledger
        .create(position(&store, ORG, "P", 100))
        .unwrap();
    let err = store
        .ledger
        .modify(&org(ORG), "P", &mut |_| {
            Err(LedgerError::Rule(PositionError::InvalidState {
                action: Action::Update,
                status: PositionStatus::Paid,
            }))
        })
        .unwrap_err();
    assert!(matches!(err, LedgerError::Rule(_)));
    assert_eq!(
        store.ledger.get(&org(ORG), "P").unwrap().unwrap().revision,
        1
    );
    // change the notice number: old index entry goes, new one comes
    let new_nav = store.ledger.next_notice(&org(ORG), &LAYOUT).unwrap();
    let old_nav = store
        .ledger
        .get(&org(ORG), "P")
        .unwrap()
        .unwrap()
        .payment_options[0]
        .nav
        .clone();
    store
        .ledger
        .modify(&org(ORG), "P", &mut |p| {
            p.payment_options[0].nav = new_nav.clone();
            p.payment_options[0].iuv = new_nav.iuv();
            Ok(())
        })
        .unwrap();
    assert!(store
        .ledger
        .find_by_notice(&org(ORG), &old_nav)
        .unwrap()
        .is_none());
    assert!(store
        .ledger
        .find_by_notice(&org(ORG), &new_nav)
        .unwrap()
        .is_some());
    assert!(store.ledger.verify().unwrap().is_consistent());
}

#[test]
fn delete_checks_then_removes_indexes() {
    let (_d, store) = open();
    let p = position(&store, ORG, "P", 100);
    let nav = p.payment_options[0].nav.clone();
    store.ledger.create(p).unwrap();
    assert!(store
        .ledger
        .delete(&org(ORG), "P", &|p| p
            .may(Action::Delete)
            .map_err(LedgerError::from))
        .is_err());
    assert!(store.ledger.get(&org(ORG), "P").unwrap().is_some());
    store.ledger.delete(&org(ORG), "P", &|_| Ok(())).unwrap();
    assert!(store.ledger.get(&org(ORG), "P").unwrap().is_none());
    assert!(store
        .ledger
        .find_by_notice(&org(ORG), &nav)
        .unwrap()
        .is_none());
    assert!(matches!(
        store.ledger.delete(&org(ORG), "P", &|_| Ok(())),
        Err(LedgerError::NotFound)
    ));
    assert_eq!(store.ledger.count(), 0);
    let r = store.ledger.verify().unwrap();
    assert!(r.is_consistent() && r.index_entries == 0, "{r:?}");
}

#[test]
fn list_filters_orders_pages_and_isolates_organizations() {
    let (_d, store) = open();
    for i in 0..25 {
        let mut p = position(&store, ORG, &format!("P{i:02}"), 100 + i);
        p.inserted_date = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::minutes(i);
        p.payment_options[0].due_date =
            Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap() + Duration::days(i);
        if i % 5 == 0 {
            p.status = PositionStatus::Draft;
        }
        store.ledger.create(p).unwrap();
    }
    store
        .ledger
        .create(position(&store, OTHER, "X", 1))
        .unwrap();
    let all = store
        .ledger
        .list(
            &org(ORG),
            &PositionFilter::default(),
            ListOrder::InsertedDesc,
            0,
            10,
        )
        .unwrap();
    assert_eq!(all.total_items, 25);
    assert_eq!(all.items.len(), 10);
    assert_eq!(all.items[0].iupd, "P24");
    let last = store
        .ledger
        .list(
            &org(ORG),
            &PositionFilter::default(),
            ListOrder::InsertedDesc,
            2,
            10,
        )
        .unwrap();
    assert_eq!(last.items.len(), 5);
    let drafts = store
        .ledger
        .list(
            &org(ORG),
            &PositionFilter {
                status: Some(PositionStatus::Draft),
                ..Default::default()
            },
            ListOrder::IupdAsc,
            0,
            100,
        )
        .unwrap();
    assert_eq!(
        drafts
            .items
            .iter()
            .map(|p| p.iupd.as_str())
            .collect::<Vec<_>>(),
        vec!["P00", "P05", "P10", "P15", "P20"]
    );
    let due = store
        .ledger
        .list(
            &org(ORG),
            &PositionFilter {
                due_from: Some(chrono::NaiveDate::from_ymd_opt(2026, 3, 3).unwrap()),
                due_to: Some(chrono::NaiveDate::from_ymd_opt(2026, 3, 5).unwrap()),
                ..Default::default()
            },
            ListOrder::IupdAsc,
            0,
            100,
        )
        .unwrap();
    assert_eq!(
        due.items
            .iter()
            .map(|p| p.iupd.as_str())
            .collect::<Vec<_>>(),
        vec!["P02", "P03", "P04"]
    );
    let other = store
        .ledger
        .list(
            &org(OTHER),
            &PositionFilter::default(),
            ListOrder::IupdAsc,
            0,
            100,
        )
        .unwrap();
    assert_eq!(other.total_items, 1);
}

#[test]
fn debtor_index_spans_organizations() {
    let (_d, store) = open();
    store.ledger.create(position(&store, ORG, "A", 1)).unwrap();
    store
        .ledger
        .create(position(&store, OTHER, "B", 1))
        .unwrap();
    let mine = store.ledger.by_debtor("RSSMRA80A01H501U").unwrap();
    assert_eq!(mine.len(), 2);
    assert!(store
        .ledger
        .by_debtor("VRDLGU80A01H501X")
        .unwrap()
        .is_empty());
}

#[test]
fn timers_for_validity_and_expiry() {
    let (_d, store) = open();
    let now = Utc::now();
    let mut p = position(&store, ORG, "E", 1);
    p.switch_to_expired = true;
    p.payment_options[0].due_date = now - Duration::days(2);
    store.ledger.create(p).unwrap();
    let mut q = position(&store, ORG, "V", 1);
    q.status = PositionStatus::Published;
    q.validity_date = Some(now - Duration::minutes(1));
    store.ledger.create(q).unwrap();
    let mut r = position(&store, ORG, "F", 1);
    r.switch_to_expired = true; // due in 30 days: no timer yet
    store.ledger.create(r).unwrap();
    let due = store.ledger.due_timers(now, 100).unwrap();
    let kinds: HashSet<_> = due.iter().map(|(k, _, i)| (*k, i.clone())).collect();
    assert_eq!(
        kinds,
        HashSet::from([
            (TimerKind::Expire, "E".to_string()),
            (TimerKind::Validate, "V".to_string())
        ])
    );
    // once expired, the timer is gone
    store
        .ledger
        .modify(&org(ORG), "E", &mut |p| {
            p.status = PositionStatus::Expired;
            Ok(())
        })
        .unwrap();
    assert_eq!(store.ledger.due_timers(now, 100).unwrap().len(), 1);
}

#[test]
fn notice_numbers_never_repeat_across_threads_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = HashSet::new();
    for _round in 0..3 {
        let store = Store::open(dir.path()).unwrap();
        let ledger = store.ledger.clone();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let ledger = Arc::clone(&ledger);
                std::thread::spawn(move || {
                    (0..700)
                        .map(|_| ledger.next_notice(&org(ORG), &LAYOUT).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for nav in h.join().unwrap() {
                assert!(nav.check().is_valid(), "{nav}");
                assert!(seen.insert(nav.to_string()), "{nav} handed out twice");
            }
        }
        // no flush at the end: a "restart" without clean shutdown
        drop(ledger);
        drop(store);
    }
    assert_eq!(seen.len(), 3 * 4 * 700);
}

#[test]
fn generated_numbers_skip_those_already_loaded() {
    let (_d, store) = open();
    // a position loaded with the number the sequence would give next
    let next = LAYOUT.generate(1).unwrap();
    store
        .ledger
        .create(position_with(ORG, "TIPO-A", 1, next.clone()))
        .unwrap();
    let got = store.ledger.next_notice(&org(ORG), &LAYOUT).unwrap();
    assert_ne!(got, next);
}

#[test]
fn export_import_round_trips() {
    let (_d, store) = open();
    for i in 0..10 {
        store
            .ledger
            .create(position(&store, ORG, &format!("P{i}"), 100 + i))
            .unwrap();
    }
    let mut buf = Vec::new();
    let lines = store.ledger.export(&mut buf).unwrap();
    assert_eq!(lines, 11, "10 positions + 1 counter");

    let (_d2, other) = open();
    let read = other.ledger.import(&mut buf.as_slice()).unwrap();
    assert_eq!(read, 11);
    assert_eq!(other.ledger.count(), 10);
    assert!(other.ledger.verify().unwrap().is_consistent());
    for i in 0..10 {
        assert_eq!(
            other.ledger.get(&org(ORG), &format!("P{i}")).unwrap(),
            store.ledger.get(&org(ORG), &format!("P{i}")).unwrap()
        );
    }
    // the counter came along: new numbers do not collide with imported ones
    let nav = other.ledger.next_notice(&org(ORG), &LAYOUT).unwrap();
    assert!(other
        .ledger
        .find_by_notice(&org(ORG), &nav)
        .unwrap()
        .is_none());
    // importing twice is refused, nothing changes
    assert!(other.ledger.import(&mut buf.as_slice()).is_err());
    assert_eq!(other.ledger.count(), 10);
}

/// The list filters of issue 11: debtor fiscal code, notice number, IUV, iupd prefix and service,
/// each answered from an index or key range, combined with the other filters, never crossing
/// organizations.
#[test]
fn list_filters_by_debtor_notice_iuv_iupd_prefix_and_service() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut navs = Vec::new();
    for i in 0..6 {
        let mut p = position(&store, ORG, &format!("TARI-{i}"), 100 + i);
        if i % 2 == 0 {
            p.debtor.fiscal_code = FiscalCode::parse("VRDGPP75C41F205I").unwrap();
            p.service_code = Some("AOC".into());
        }
        navs.push(p.payment_options[0].nav.clone());
        store.ledger.create(p).unwrap();
    }
    store
        .ledger
        .create(position(&store, ORG, "CDS-1", 5))
        .unwrap();
    let mut other = position(&store, OTHER, "TARI-9", 7);
    other.debtor.fiscal_code = FiscalCode::parse("VRDGPP75C41F205I").unwrap();
    store.ledger.create(other).unwrap();

    let list = |f: PositionFilter| {
        let mut v: Vec<String> = store
            .ledger
            .list(&org(ORG), &f, ListOrder::IupdAsc, 0, 100)
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.iupd)
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        list(PositionFilter {
            debtor_fiscal_code: Some("VRDGPP75C41F205I".into()),
            ..Default::default()
        }),
        vec!["TARI-0", "TARI-2", "TARI-4"],
        "the other organization's position of the same debtor is not listed"
    );
    assert_eq!(
        list(PositionFilter {
            notice_number: Some(navs[3].to_string()),
            ..Default::default()
        }),
        vec!["TARI-3"]
    );
    assert_eq!(
        list(PositionFilter {
            iuv: Some(navs[5].iuv().to_string()),
            ..Default::default()
        }),
        vec!["TARI-5"]
    );
    assert!(list(PositionFilter {
        notice_number: Some("312000000000000000".into()),
        ..Default::default()
    })
    .is_empty());
    assert_eq!(
        list(PositionFilter {
            iupd_prefix: Some("CDS-".into()),
            ..Default::default()
        }),
        vec!["CDS-1"]
    );
    assert_eq!(
        list(PositionFilter {
            iupd_prefix: Some("TARI-".into()),
            service_code: Some("AOC".into()),
            ..Default::default()
        }),
        vec!["TARI-0", "TARI-2", "TARI-4"]
    );
    assert!(
        list(PositionFilter {
            debtor_fiscal_code: Some("VRDGPP75C41F205I".into()),
            notice_number: Some(navs[1].to_string()),
            ..Default::default()
        })
        .is_empty(),
        "filters combine: TARI-1 is not of that debtor"
    );
}

/// Writes `value` as the previous build did: schema byte 1, then JSON.
fn old_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![1u8];
    out.extend(serde_json::to_vec(value).unwrap());
    out
}

/// A store written by the previous build (every record schema 1 JSON, no organization indexes
/// of receipts and anomalies, no `meta` tree) opens with this build, and every position,
/// receipt, anomaly and index serves; a change then writes the compact encoding beside the old
/// records.
#[test]
fn a_store_of_the_previous_build_opens_and_serves() {
    let (_g, gen) = open();
    let positions: Vec<DebtPosition> = (0..3)
        .map(|i| position(&gen, ORG, &format!("OLD-{i}"), 100 + i))
        .map(|mut p| {
            p.revision = 1;
            p
        })
        .collect();
    let nav0 = positions[0].payment_options[0].nav.clone();
    let received = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
    let receipt_json = serde_json::json!({
        "receiptId": "R-OLD-1",
        "organization": ORG,
        "idPa": ORG,
        "idStation": "77777777777_01",
        "noticeNumber": nav0.as_str(),
        "iupd": "OLD-0",
        "operation": "paSendRTV2",
        "receivedAt": received,
        "disposition": "APPLIED",
        "rawXml": "<soapenv:Envelope>  byte-exact </soapenv:Envelope>",
        "receipt": {
            "receiptId": "R-OLD-1",
            "noticeNumber": nav0.as_str(),
            "fiscalCode": ORG,
            "outcome": "OK",
            "creditorReferenceId": nav0.iuv().as_str(),
            "paymentAmount": 100,
            "description": "TARI 2026",
            "companyName": "Comune di Borgo Demo",
            "debtor": {"kind": "F", "idValue": "RSSMRA80A01H501U", "fullName": "Mario Rossi"},
            "transfers": [{
                "idTransfer": 1, "amount": 100, "fiscalCodePa": ORG,
                "iban": "IT47D0103002600000061234567",
                "remittanceInformation": "TARI 2026", "transferCategory": "9/0101108TS/",
                "metadata": []
            }],
            "idPsp": "PSP1", "pspCompanyName": "PSP", "idChannel": "CH1",
            "channelDescription": "app", "metadata": [], "standIn": false
        }
    });
    let anomaly_json = serde_json::json!({
        "kind": {"kind": "ORPHAN_RECEIPT"},
        "organization": ORG,
        "noticeNumber": "399000000000000000",
        "receiptId": "R-ORPHAN",
        "at": received,
        "receipt": null
    });
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let tree = |name: &str| db.open_tree(name).unwrap();
        for p in &positions {
            let mut key = ORG.as_bytes().to_vec();
            key.extend_from_slice(p.iupd.as_bytes());
            tree("positions").insert(key, old_bytes(p)).unwrap();
            for e in mpay_storage::keys::index_entries(p) {
                tree(e.index.tree_name()).insert(e.key, e.value).unwrap();
            }
        }
        tree("receipts")
            .insert("R-OLD-1", old_bytes(&receipt_json))
            .unwrap();
        let mut nk = ORG.as_bytes().to_vec();
        nk.extend_from_slice(nav0.as_str().as_bytes());
        nk.push(0);
        nk.extend_from_slice(b"R-OLD-1");
        tree("receipts_by_notice").insert(nk, &b""[..]).unwrap();
        tree("anomalies")
            .insert(7u64.to_be_bytes(), old_bytes(&anomaly_json))
            .unwrap();
        db.flush().unwrap();
    }

    let store = Store::open(dir.path()).unwrap();
    let o = org(ORG);
    for p in &positions {
        assert_eq!(store.ledger.get(&o, &p.iupd).unwrap().as_ref(), Some(p));
        let nav = &p.payment_options[0].nav;
        assert_eq!(
            store.ledger.find_by_notice(&o, nav).unwrap().as_ref(),
            Some(p)
        );
        let by_iuv = PositionFilter {
            iuv: Some(p.payment_options[0].iuv.to_string()),
            ..Default::default()
        };
        let page = store
            .ledger
            .list(&o, &by_iuv, ListOrder::IupdAsc, 0, 10)
            .unwrap();
        assert_eq!(page.items, vec![p.clone()]);
    }
    let all = store
        .ledger
        .list(&o, &PositionFilter::default(), ListOrder::IupdAsc, 0, 10)
        .unwrap();
    assert_eq!(all.total_items, 3);
    assert_eq!(store.ledger.by_debtor("RSSMRA80A01H501U").unwrap().len(), 3);
    assert!(store.ledger.verify().unwrap().is_consistent());

    // receipts: by id, by notice, and through the organization index built at open
    use mpay_storage::{AnomalyState, ReceiptFilter, ReceiptRepository};
    let r = store.ledger.receipt("R-OLD-1").unwrap().unwrap();
    assert_eq!(
        r.raw_xml,
        "<soapenv:Envelope>  byte-exact </soapenv:Envelope>"
    );
    assert_eq!(
        store.ledger.receipts_for_notice(&o, &nav0).unwrap(),
        vec![r.clone()]
    );
    let listed = store
        .ledger
        .list_receipts(ORG, &ReceiptFilter::default(), 0, 10)
        .unwrap();
    assert_eq!((listed.total_items, listed.items), (1, vec![r.clone()]));
    let in_range = ReceiptFilter {
        from: Some(received),
        to: Some(received + Duration::seconds(1)),
        ..Default::default()
    };
    assert_eq!(
        store
            .ledger
            .list_receipts(ORG, &in_range, 0, 10)
            .unwrap()
            .total_items,
        1
    );
    let after = ReceiptFilter {
        from: Some(received + Duration::nanoseconds(1)),
        ..Default::default()
    };
    assert_eq!(
        store
            .ledger
            .list_receipts(ORG, &after, 0, 10)
            .unwrap()
            .total_items,
        0
    );
    assert_eq!(
        store
            .ledger
            .list_receipts(OTHER, &ReceiptFilter::default(), 0, 10)
            .unwrap()
            .total_items,
        0
    );
    let anomalies = store.ledger.list_anomalies(ORG, None, 0, 10).unwrap();
    assert_eq!(anomalies.total_items, 1);
    assert_eq!(anomalies.items[0].id, 7);
    assert_eq!(anomalies.items[0].anomaly.receipt_id, "R-ORPHAN");
    let open_ones = store
        .ledger
        .list_anomalies(ORG, Some(AnomalyState::Open), 0, 10)
        .unwrap();
    assert_eq!(open_ones.total_items, 1);
    assert_eq!(
        store
            .ledger
            .list_anomalies(OTHER, None, 0, 10)
            .unwrap()
            .total_items,
        0
    );

    // a change writes the new encoding; old and new records live side by side
    let changed = store
        .ledger
        .modify(&o, "OLD-1", &mut |p| {
            p.company_name = "Comune nuovo".into();
            Ok(())
        })
        .unwrap();
    assert_eq!(store.ledger.get(&o, "OLD-1").unwrap(), Some(changed));
    assert!(store.ledger.verify().unwrap().is_consistent());
    drop(store);

    // the indexes were built once and recorded: a second open finds them and serves the same
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store
            .ledger
            .list_receipts(ORG, &ReceiptFilter::default(), 0, 10)
            .unwrap()
            .total_items,
        1
    );
    assert_eq!(
        store
            .ledger
            .list_anomalies(ORG, None, 0, 10)
            .unwrap()
            .total_items,
        1
    );
}

/// Bytes on disk per position after a load (printed; the figure of the table).
#[test]
fn store_bytes_per_position() {
    let (dir, store) = open();
    let n = 5_000;
    let mut batch = Vec::new();
    for i in 0..n {
        batch.push(position(&store, ORG, &format!("B-{i:06}"), 100 + i));
        if batch.len() == 500 {
            store
                .ledger
                .create_many(std::mem::take(&mut batch))
                .unwrap();
        }
    }
    store.flush_blocking().unwrap();
    let bytes = store.size_on_disk();
    println!(
        "store on disk: {} bytes for {n} positions = {} bytes per position",
        bytes,
        bytes / n as u64
    );
    assert!(bytes > 0);
    drop(dir);
}
