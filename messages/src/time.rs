//! Business time: business dates live in Europe/Rome, timestamps are UTC.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Europe::Rome;

/// Error for a date or date-time that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid date-time {input:?}: expected RFC 3339 (2026-12-31T23:59:59Z or +01:00), a local date-time (2026-12-31T23:59:59, read in Europe/Rome) or a date (2026-12-31)")]
pub struct DateTimeError {
    /// The text that failed to parse.
    pub input: String,
}

/// The business date (Europe/Rome) of a UTC instant.
pub fn rome_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&Rome).date_naive()
}

/// Today's business date in Europe/Rome.
pub fn rome_today() -> NaiveDate {
    rome_date(Utc::now())
}

/// Reads a date-time as sent by Ente systems (GPD JSON `format: date-time`, feed files):
/// - RFC 3339 with offset or `Z` → that instant;
/// - a local date-time without offset (`2026-12-31T23:59:59`, optional fraction) → read in Europe/Rome;
/// - a bare date (`2026-12-31`) → 23:59:59 of that day in Europe/Rome (a due date is payable all day).
///
/// Errors: [`DateTimeError`] naming the input.
pub fn parse_api_datetime(input: &str) -> Result<DateTime<Utc>, DateTimeError> {
    let s = input.trim();
    let err = || DateTimeError {
        input: input.to_string(),
    };
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Ok(dt.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            return rome_local_to_utc(naive).ok_or_else(err);
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let naive = date.and_time(NaiveTime::from_hms_opt(23, 59, 59).ok_or_else(err)?);
        return rome_local_to_utc(naive).ok_or_else(err);
    }
    Err(err())
}

/// A Europe/Rome wall-clock time to UTC (earliest instant when the clock goes back; the
/// hour skipped in spring is moved forward).
pub fn rome_local_to_utc(naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    match Rome.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        chrono::LocalResult::Ambiguous(a, _) => Some(a.with_timezone(&Utc)),
        chrono::LocalResult::None => Rome
            .from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// The Europe/Rome wall-clock time of a UTC instant.
pub fn rome_datetime(at: DateTime<Utc>) -> NaiveDateTime {
    at.with_timezone(&Rome).naive_local()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_local_and_dates() {
        let z = parse_api_datetime("2026-12-31T10:00:00Z").unwrap();
        assert_eq!(z.to_rfc3339(), "2026-12-31T10:00:00+00:00");
        // winter: Rome = UTC+1
        let local = parse_api_datetime("2026-12-31T10:00:00").unwrap();
        assert_eq!(local.to_rfc3339(), "2026-12-31T09:00:00+00:00");
        // summer: Rome = UTC+2
        let local = parse_api_datetime("2026-07-01T10:00:00.123").unwrap();
        assert_eq!(local.format("%H:%M").to_string(), "08:00");
        let day = parse_api_datetime("2026-12-31").unwrap();
        assert_eq!(rome_date(day).to_string(), "2026-12-31");
        assert!(parse_api_datetime("31/12/2026").is_err());
    }

    #[test]
    fn rome_date_edge_after_midnight() {
        // 23:30 UTC on the 30th is 00:30 on the 31st in Rome (winter)
        let t = parse_api_datetime("2026-12-30T23:30:00Z").unwrap();
        assert_eq!(rome_date(t).to_string(), "2026-12-31");
    }
}
