//! When a payment must have been reported (SPEC §9.1), pure: the payment's operating day **D**
//! (Europe/Rome, Italian calendar: payments up to 13:00 belong to D, from 13:01 to the next
//! operating day; a payment made on a Saturday, Sunday or national holiday belongs to the next
//! operating day), and the PSP's deadline to publish its flow, the end of **D+2** operating
//! days. A receipt that no flow reports once that day is over is on the follow-up list
//! ("RT senza FdR", SPEC §9.5 layer 2) — except a stand-alone digital stamp, whose money is
//! never reported by design.
//!
//! The clock is the caller's: every function takes the instant or the business day it judges.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc, Weekday};

use crate::time::rome_datetime;

/// Operating days the PSP has after D to publish its flow.
pub const PUBLICATION_DAYS: u32 = 2;

/// Easter Sunday of `year` (Gregorian calendar, anonymous algorithm), `None` outside chrono's
/// range.
pub fn easter_sunday(year: i32) -> Option<NaiveDate> {
    let a = year.rem_euclid(19);
    let b = year.div_euclid(100);
    let c = year.rem_euclid(100);
    let d = b.div_euclid(4);
    let e = b.rem_euclid(4);
    let f = (b + 8).div_euclid(25);
    let g = (b - f + 1).div_euclid(3);
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c.div_euclid(4);
    let k = c.rem_euclid(4);
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l).div_euclid(451);
    let month = (h + l - 7 * m + 114).div_euclid(31);
    let day = (h + l - 7 * m + 114).rem_euclid(31) + 1;
    NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?)
}

/// An Italian national holiday (banks and the Node's calendar): 1 and 6 January, Easter Monday,
/// 25 April, 1 May, 2 June, 15 August, 1 November, 8, 25 and 26 December.
pub fn is_italian_holiday(d: NaiveDate) -> bool {
    let fixed = matches!(
        (d.month(), d.day()),
        (1, 1)
            | (1, 6)
            | (4, 25)
            | (5, 1)
            | (6, 2)
            | (8, 15)
            | (11, 1)
            | (12, 8)
            | (12, 25)
            | (12, 26)
    );
    fixed || easter_sunday(d.year()).and_then(|e| e.succ_opt()) == Some(d)
}

/// Monday to Friday and not a national holiday.
pub fn is_operating_day(d: NaiveDate) -> bool {
    !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && !is_italian_holiday(d)
}

/// The first operating day on or after `d`.
pub fn operating_day_from(d: NaiveDate) -> NaiveDate {
    let mut day = d;
    // at most a long weekend plus holidays: the loop ends within days
    while !is_operating_day(day) {
        match day.succ_opt() {
            Some(n) => day = n,
            None => break,
        }
    }
    day
}

/// `d` plus `n` operating days (`d` itself need not be one).
pub fn add_operating_days(d: NaiveDate, n: u32) -> NaiveDate {
    let mut day = d;
    for _ in 0..n {
        day = operating_day_from(day + Duration::days(1));
    }
    day
}

/// The Node's operating day **D** of a payment made at `paid_at`: its Rome day when paid up to
/// 13:00 (13:00:59 included), else the next day; moved to the next operating day when that day
/// is not one.
pub fn payment_day(paid_at: DateTime<Utc>) -> NaiveDate {
    let local = rome_datetime(paid_at);
    let day = local.date();
    let after_cut = (local.hour(), local.minute()) > (13, 0);
    let day = if after_cut {
        day.succ_opt().unwrap_or(day)
    } else {
        day
    };
    operating_day_from(day)
}

/// The last day on which the PSP may publish the flow reporting a payment made at `paid_at`:
/// D + [`PUBLICATION_DAYS`] operating days (until 24:00 Rome).
pub fn publication_deadline(paid_at: DateTime<Utc>) -> NaiveDate {
    add_operating_days(payment_day(paid_at), PUBLICATION_DAYS)
}

/// Whether a payment made at `paid_at` and reported by no flow is overdue on business day
/// `as_of` (Europe/Rome): the deadline day is over.
pub fn is_overdue(paid_at: DateTime<Utc>, as_of: NaiveDate) -> bool {
    as_of > publication_deadline(paid_at)
}

/// A payment as the follow-up list sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidNotReported<'a> {
    /// Receipt id.
    pub receipt_id: &'a str,
    /// When it was paid (the receipt's `paymentDateTime`, else its arrival).
    pub paid_at: DateTime<Utc>,
    /// Whether a flow reports it.
    pub reported: bool,
    /// A stand-alone digital stamp (never reported by design).
    pub stamp: bool,
}

/// The payments that should have been reported by `as_of` and are not, each with its deadline,
/// oldest deadline first.
pub fn overdue<'a>(
    payments: &[PaidNotReported<'a>],
    as_of: NaiveDate,
) -> Vec<(PaidNotReported<'a>, NaiveDate)> {
    let mut out: Vec<_> = payments
        .iter()
        .filter(|p| !p.reported && !p.stamp && is_overdue(p.paid_at, as_of))
        .map(|p| (p.clone(), publication_deadline(p.paid_at)))
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.receipt_id.cmp(b.0.receipt_id)));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::time::parse_api_datetime;

    fn at(s: &str) -> DateTime<Utc> {
        parse_api_datetime(s).unwrap()
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn easter_and_holidays() {
        assert_eq!(easter_sunday(2026), Some(day("2026-04-05")));
        assert_eq!(easter_sunday(2027), Some(day("2027-03-28")));
        assert_eq!(easter_sunday(2024), Some(day("2024-03-31")));
        assert!(is_italian_holiday(day("2026-04-06"))); // Easter Monday
        assert!(!is_italian_holiday(day("2026-04-07")));
        assert!(is_italian_holiday(day("2026-12-08")));
        assert!(is_italian_holiday(day("2026-06-02")));
        assert!(!is_operating_day(day("2026-12-05"))); // Saturday
        assert!(!is_operating_day(day("2026-12-06"))); // Sunday
        assert!(is_operating_day(day("2026-12-07"))); // Monday
    }

    #[test]
    fn the_13_00_cut_belongs_to_the_same_day() {
        // Tuesday 1 Dec 2026, Rome = UTC+1
        assert_eq!(
            payment_day(at("2026-12-01T13:00:59+01:00")),
            day("2026-12-01")
        );
        assert_eq!(
            payment_day(at("2026-12-01T13:01:00+01:00")),
            day("2026-12-02")
        );
        // 23:30 UTC on Monday 30 Nov is 00:30 on Tuesday in Rome
        assert_eq!(payment_day(at("2026-11-30T23:30:00Z")), day("2026-12-01"));
    }

    #[test]
    fn weekends_and_holidays_move_the_deadline() {
        // Monday morning: D = Mon, deadline Wed
        assert_eq!(
            publication_deadline(at("2026-11-30T10:00:00+01:00")),
            day("2026-12-02")
        );
        // Thursday morning: D = Thu, D+2 = Mon (the weekend does not count)
        assert_eq!(
            publication_deadline(at("2026-12-03T09:00:00+01:00")),
            day("2026-12-07")
        );
        // Friday afternoon: D = Mon 7 Dec, 8 Dec is a holiday: Wed, Thu → 10 Dec
        assert_eq!(
            payment_day(at("2026-12-04T15:00:00+01:00")),
            day("2026-12-07")
        );
        assert_eq!(
            publication_deadline(at("2026-12-04T15:00:00+01:00")),
            day("2026-12-10")
        );
        // Saturday: D = Monday
        assert_eq!(
            payment_day(at("2026-12-05T09:00:00+01:00")),
            day("2026-12-07")
        );
        // Christmas Eve afternoon: 25, 26 (Sat), 27 (Sun) skipped: D = Mon 28, deadline Wed 30
        assert_eq!(
            publication_deadline(at("2026-12-24T14:00:00+01:00")),
            day("2026-12-30")
        );
    }

    #[test]
    fn overdue_only_after_the_deadline_day_and_never_stamps_or_reported() {
        let paid = at("2026-12-03T09:00:00+01:00"); // deadline Mon 7 Dec
        assert!(!is_overdue(paid, day("2026-12-05")));
        assert!(!is_overdue(paid, day("2026-12-07")));
        assert!(is_overdue(paid, day("2026-12-08")));
        let list = [
            PaidNotReported {
                receipt_id: "late",
                paid_at: paid,
                reported: false,
                stamp: false,
            },
            PaidNotReported {
                receipt_id: "reported",
                paid_at: paid,
                reported: true,
                stamp: false,
            },
            PaidNotReported {
                receipt_id: "bollo",
                paid_at: paid,
                reported: false,
                stamp: true,
            },
            PaidNotReported {
                receipt_id: "recent",
                paid_at: at("2026-12-07T09:00:00+01:00"),
                reported: false,
                stamp: false,
            },
            PaidNotReported {
                receipt_id: "older",
                paid_at: at("2026-11-30T09:00:00+01:00"),
                reported: false,
                stamp: false,
            },
        ];
        let got = overdue(&list, day("2026-12-08"));
        let ids: Vec<_> = got.iter().map(|(p, _)| p.receipt_id).collect();
        assert_eq!(ids, ["older", "late"]);
        assert_eq!(got[1].1, day("2026-12-07"));
    }
}
