//! The sample configuration loads, and the job plan honours the shares.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use pagopa_sim::amount::Cents;
use pagopa_sim::build::QrCode;
use pagopa_sim::config::PspConfig;
use pagopa_sim::psp::{plan, plan_json, JobKind};
use pagopa_sim::rest::Notice;

fn sample() -> PspConfig {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/psp.toml");
    PspConfig::load(&p).unwrap_or_else(|e| panic!("{e}"))
}

fn notices(n: usize) -> Vec<Notice> {
    (0..n)
        .map(|i| {
            let first16 = format!("312{:013}", i);
            let nav = format!(
                "{first16}{}",
                pagopa_sim::nav::check_digits(&first16).unwrap()
            );
            Notice {
                qr: QrCode {
                    fiscal_code: "77777777777".into(),
                    notice_number: nav,
                },
                amount: Some(Cents(1000 + i as i64)),
                description: None,
                company_name: None,
                expect: None,
            }
        })
        .collect()
}

#[test]
fn sample_config_loads() {
    let c = sample();
    assert_eq!(c.station.id_station, "99999999999_01");
    assert_eq!(c.notices.list.len(), 3);
    assert!(c.notices.discover.is_some());
    assert_eq!(c.expect.duplicate_receipt, vec!["OK".to_string()]);
}

#[test]
fn bad_configs_are_refused() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/psp.toml"))
            .unwrap();
    for (from, to) in [
        ("v2_share = 0.5", "v2_share = 1.5"),
        (
            "channel_description = \"app\"",
            "channel_description = \"a channel description much longer than thirty-five\"",
        ),
        (
            "notice_number = \"312202600000000171\"",
            "notice_number = \"3122026\"",
        ),
        ("seed = 42", "seed = 42\nunknown_key = 1"),
    ] {
        let bad = text.replacen(from, to, 1);
        assert_ne!(bad, text);
        assert!(PspConfig::parse(&bad).is_err(), "{to} should be refused");
    }
}

#[test]
fn plan_counts() {
    let c = sample();
    let ns = notices(200);
    let jobs = plan(&c, &ns, 100, Some("77777777777"), Some("12")).unwrap();
    let p = plan_json(&jobs);
    // 100 payments (5 of them Stand-In) + 5 unknown probes
    assert_eq!(jobs.len(), 105);
    assert_eq!(p["stand_in"], 5);
    assert_eq!(p["unknown_probes"], 5);
    assert_eq!(p["duplicate_receipts"], 10);
    assert_eq!(
        p["payments_v1"].as_u64().unwrap() + p["payments_v2"].as_u64().unwrap(),
        95
    );
    // every probe is an aux-3 NAV with the segregation code and a valid check digit
    for j in &jobs {
        if let JobKind::Unknown { .. } = j.kind {
            let nav = &j.notice.qr.notice_number;
            assert_eq!(pagopa_sim::nav::segregation_of(nav), Some("12"));
            assert_eq!(
                pagopa_sim::nav::check_digits(&nav[..16]).as_deref(),
                Some(&nav[16..])
            );
        }
    }
    // same seed, same plan
    let again = plan(&c, &ns, 100, Some("77777777777"), Some("12")).unwrap();
    let a: Vec<_> = jobs
        .iter()
        .map(|j| j.notice.qr.notice_number.clone())
        .collect();
    let b: Vec<_> = again
        .iter()
        .map(|j| j.notice.qr.notice_number.clone())
        .collect();
    assert_eq!(a, b);
    // never more payments than payable notices
    let few = plan(&c, &ns[..3], 100, Some("77777777777"), Some("12")).unwrap();
    assert!(
        few.iter()
            .filter(|j| !matches!(j.kind, JobKind::Unknown { .. }))
            .count()
            <= 3
    );
}
