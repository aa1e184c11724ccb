//! Money as integer euro cents; text `12.34` only at the XML edge (SPEC §4.1).

use std::fmt;

/// An amount in euro cents. Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cents(pub i64);

/// Largest amount the schemas allow (`999999999.99`).
pub const MAX_CENTS: i64 = 99_999_999_999;

impl Cents {
    /// Parses the strict SOAP form `\d+\.\d{2}` (no sign, no exponent, exactly two decimals).
    pub fn parse_xml(text: &str) -> Result<Cents, String> {
        let t = text.trim();
        let (int, dec) = t
            .split_once('.')
            .ok_or_else(|| format!("amount {t:?} has no decimal point"))?;
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("amount {t:?}: bad integer part"));
        }
        if dec.len() != 2 || !dec.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("amount {t:?}: must have exactly two decimals"));
        }
        let int_trim = int.trim_start_matches('0');
        if int_trim.len() > 9 {
            return Err(format!("amount {t:?} is too large"));
        }
        let euros: i64 = if int_trim.is_empty() {
            0
        } else {
            int_trim.parse().map_err(|e| format!("amount {t:?}: {e}"))?
        };
        let cents: i64 = dec.parse().map_err(|e| format!("amount {t:?}: {e}"))?;
        Ok(Cents(euros * 100 + cents))
    }

    /// Formats as `12.34` (the only form the schemas accept).
    pub fn to_xml(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_xml())
    }
}

impl std::ops::Add for Cents {
    type Output = Cents;
    fn add(self, rhs: Cents) -> Cents {
        Cents(self.0.saturating_add(rhs.0))
    }
}

impl std::iter::Sum for Cents {
    fn sum<I: Iterator<Item = Cents>>(iter: I) -> Cents {
        iter.fold(Cents(0), |a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        assert_eq!(Cents::parse_xml("150.00"), Ok(Cents(15000)));
        assert_eq!(Cents::parse_xml("0.01"), Ok(Cents(1)));
        assert_eq!(Cents::parse_xml("999999999.99"), Ok(Cents(MAX_CENTS)));
        assert!(Cents::parse_xml("150.0").is_err());
        assert!(Cents::parse_xml("150").is_err());
        assert!(Cents::parse_xml("1,50").is_err());
        assert!(Cents::parse_xml("-1.50").is_err());
        assert!(Cents::parse_xml(".50").is_err());
        assert!(Cents::parse_xml("1e3.00").is_err());
        assert!(Cents::parse_xml("1000000000.00").is_err());
        assert_eq!(Cents(12050).to_xml(), "120.50");
        assert_eq!(Cents(5).to_xml(), "0.05");
        assert_eq!(Cents(0).to_xml(), "0.00");
    }
}
