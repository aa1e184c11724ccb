//! Which calendar dates a position may carry: its options' due dates, validity and retention
//! dates, a feed row's or an Archivio Carichi document's dates. One rule for every edge (REST v1
//! and v3, feeds, Archivio Carichi), so what is stored can always be answered to the Node.
//!
//! The range is **1900-01-01 ..= 2999-12-31** (the Europe/Rome calendar day of an instant):
//! - every such day is a valid `xs:date` / `xs:dateTime` with a four-digit, positive year, as
//!   `paForNode.xsd` and the MPay / feed formats write them (year `0000` is no `xs:date`; a
//!   negative or five-digit year is refused by the Node and by the Ente's systems);
//! - nothing owed to an Ente falls due before 1900 or after 2999: such a date is a typo, and
//!   accepting it would make the notice unpayable or payable forever.

use chrono::{DateTime, NaiveDate, Utc};

/// The first day a position's date may fall on.
pub fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN)
}

/// The last day a position's date may fall on.
pub fn last_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2999, 12, 31).unwrap_or(NaiveDate::MAX)
}

/// A date outside [`first_day`] ..= [`last_day`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateOutOfRange {
    /// The day given (Europe/Rome).
    pub day: NaiveDate,
}

impl DateOutOfRange {
    /// For the REST API's problem JSON (the edge names the field).
    pub fn message_en(&self) -> String {
        format!(
            "{} is outside the accepted range {} .. {}",
            self.day,
            first_day(),
            last_day()
        )
    }

    /// For feed rows and Archivio Carichi answers (the edge names the field).
    pub fn message_it(&self) -> String {
        format!(
            "data {} fuori dall'intervallo ammesso (dal {} al {})",
            self.day.format("%d/%m/%Y"),
            first_day().format("%d/%m/%Y"),
            last_day().format("%d/%m/%Y")
        )
    }
}

impl std::fmt::Display for DateOutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message_en())
    }
}

impl std::error::Error for DateOutOfRange {}

/// Checks a calendar day.
///
/// # Errors
/// [`DateOutOfRange`] outside 1900-01-01 ..= 2999-12-31.
pub fn check_day(day: NaiveDate) -> Result<NaiveDate, DateOutOfRange> {
    if (first_day()..=last_day()).contains(&day) {
        Ok(day)
    } else {
        Err(DateOutOfRange { day })
    }
}

/// Checks an instant by its Europe/Rome calendar day.
///
/// # Errors
/// [`DateOutOfRange`] when that day is outside 1900-01-01 ..= 2999-12-31.
pub fn check_instant(at: DateTime<Utc>) -> Result<DateTime<Utc>, DateOutOfRange> {
    check_day(crate::time::rome_date(at)).map(|_| at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_api_datetime;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn the_range_is_inclusive_and_schema_safe() {
        assert!(check_day(day(1900, 1, 1)).is_ok());
        assert!(check_day(day(2999, 12, 31)).is_ok());
        for bad in [
            day(0, 1, 1),
            day(-1, 1, 1),
            day(1899, 12, 31),
            day(3000, 1, 1),
        ] {
            let e = check_day(bad).unwrap_err();
            assert_eq!(e.day, bad);
            assert!(e.message_en().contains("1900-01-01 .. 2999-12-31"), "{e}");
            assert!(e.message_it().contains("dal 01/01/1900 al 31/12/2999"));
        }
    }

    #[test]
    fn instants_are_judged_by_their_rome_day() {
        // 1899-12-31T23:30Z is 1900-01-01 in Rome
        assert!(check_instant(parse_api_datetime("1899-12-31T23:30:00Z").unwrap()).is_ok());
        assert!(check_instant(parse_api_datetime("1899-12-31T22:30:00Z").unwrap()).is_err());
        assert!(check_instant(parse_api_datetime("0000-01-01").unwrap()).is_err());
        assert!(check_instant(parse_api_datetime("2999-12-31").unwrap()).is_ok());
        // 2999-12-31T23:30Z is already 3000 in Rome
        assert!(check_instant(parse_api_datetime("2999-12-31T23:30:00Z").unwrap()).is_err());
    }
}
