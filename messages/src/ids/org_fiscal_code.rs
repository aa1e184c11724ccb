//! Fiscal code of an organization (codice fiscale numerico / partita IVA).

use super::error::IdError;
use super::macros::{string_id_impls, string_schema};

/// Fiscal code of an organization: exactly 11 ASCII digits, the last one a
/// check digit computed with the Italian VAT number (partita IVA) algorithm.
///
/// Shape: `stFiscalCodePA` = `[0-9]{11}` (SPEC §4.1, SACI `sac-common-types`).
/// Used for creditor institutions (EC, `idPA`, `fiscalCodePA`) and for
/// debtors that are legal persons (also for persons' temporary 11-digit codes).
///
/// * [`OrgFiscalCode::parse`] — strict: shape **and** check digit (config,
///   values typed by a person, values we generate);
/// * [`OrgFiscalCode::parse_unchecked`] — shape only (values received from
///   pagoPA or Ente files); ask [`OrgFiscalCode::check_digit_ok`] afterwards.
///
/// Surrounding whitespace is trimmed; serde uses the plain string and
/// deserializes through `parse_unchecked`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgFiscalCode(String);

impl OrgFiscalCode {
    /// Strict parse: 11 digits (after trimming) whose last digit is the VAT
    /// check digit.
    ///
    /// # Errors
    /// [`IdError::Shape`] ("organization fiscal code must be 11 digits") or
    /// [`IdError::CheckMismatch`] ("organization fiscal code check digit is 3,
    /// expected 5").
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let code = Self::parse_unchecked(s)?;
        let (found, expected) = code.digits_found_expected();
        if found == expected {
            Ok(code)
        } else {
            Err(IdError::CheckMismatch {
                what: "organization fiscal code check digit",
                found: found.to_string(),
                expected: expected.to_string(),
            })
        }
    }

    /// Lenient parse: 11 digits after trimming; the check digit is not verified.
    ///
    /// # Errors
    /// [`IdError::Shape`] when the trimmed input is not exactly 11 ASCII digits.
    pub fn parse_unchecked(s: &str) -> Result<Self, IdError> {
        let s = s.trim();
        if s.len() == 11 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::Shape {
                what: "organization fiscal code",
                expected: "11 digits",
            })
        }
    }

    /// GPD's looser form, for an organization with `gpd_compat.free_identifiers` only
    /// (its configuration and REST API, see [`crate::ids::gpd`]): 1 to 30 digits after
    /// trimming. An 11-digit code is pagoPA's as with [`OrgFiscalCode::parse_unchecked`].
    ///
    /// # Errors
    /// [`IdError::Shape`] when the trimmed input is not 1 to 30 ASCII digits.
    pub fn parse_gpd(s: &str) -> Result<Self, IdError> {
        let s = s.trim();
        if super::gpd::is_gpd_digits(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::Shape {
                what: "organization fiscal code",
                expected: "1 to 30 digits (GPD) or 11 digits",
            })
        }
    }

    /// Whether this is a pagoPA organization fiscal code (11 digits), not GPD's looser form.
    pub fn is_pagopa(&self) -> bool {
        self.0.len() == 11
    }

    /// The digits (11 for pagoPA).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the 11th digit equals the VAT check digit of the first ten (false for GPD's
    /// looser form, which has no check digit).
    pub fn check_digit_ok(&self) -> bool {
        let (found, expected) = self.digits_found_expected();
        self.is_pagopa() && found == expected
    }

    /// The VAT check digit computed over the first ten digits of `first_ten`
    /// (Luhn-like: odd 1-based positions summed as they are, even positions
    /// doubled minus 9 when above 9; check = `(10 - sum % 10) % 10`).
    ///
    /// # Errors
    /// [`IdError::Shape`] unless `first_ten` is exactly 10 ASCII digits.
    pub fn compute_check_digit(first_ten: &str) -> Result<u8, IdError> {
        if first_ten.len() != 10 || !first_ten.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::Shape {
                what: "organization fiscal code without check digit",
                expected: "10 digits",
            });
        }
        Ok(vat_check_digit(first_ten.bytes()))
    }

    /// (found check digit, expected check digit); the shape is guaranteed by
    /// construction.
    fn digits_found_expected(&self) -> (u8, u8) {
        let bytes = self.0.as_bytes();
        let found = bytes.get(10).map_or(0, |b| b - b'0');
        let expected = vat_check_digit(bytes.iter().take(10).copied());
        (found, expected)
    }
}

/// VAT check digit over ASCII digits (callers guarantee digits).
fn vat_check_digit(digits: impl Iterator<Item = u8>) -> u8 {
    let mut sum: u32 = 0;
    for (i, b) in digits.enumerate() {
        let d = u32::from(b.wrapping_sub(b'0') % 10);
        sum += if i % 2 == 0 {
            d
        } else if d * 2 > 9 {
            d * 2 - 9
        } else {
            d * 2
        };
    }
    u8::try_from((10 - sum % 10) % 10).unwrap_or(0)
}

string_id_impls!(
    OrgFiscalCode,
    OrgFiscalCode::parse_unchecked,
    "an organization fiscal code (11 digits)"
);
string_schema!(
    OrgFiscalCode,
    "Organization fiscal code / partita IVA: 11 digits (stFiscalCodePA).",
    Some("^[0-9]{11}$"),
    11,
    11,
    "00000000018"
);

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn known_codes() {
        // Agenzia delle Entrate's own fiscal code and a few well-known ones.
        for s in ["06363391001", "80078750587", "00000000018", " 02438750586 "] {
            let c = OrgFiscalCode::parse(s).unwrap();
            assert!(c.check_digit_ok(), "{s}");
            assert_eq!(c.as_str(), s.trim());
        }
    }

    #[test]
    fn wrong_check_digit() {
        let err = OrgFiscalCode::parse("06363391002").unwrap_err();
        assert_eq!(
            err.to_string(),
            "organization fiscal code check digit is 2, expected 1"
        );
        let lenient = OrgFiscalCode::parse_unchecked("06363391002").unwrap();
        assert!(!lenient.check_digit_ok());
    }

    #[test]
    fn bad_shapes() {
        for s in [
            "",
            "0636339100",
            "063633910011",
            "0636339100a",
            "06363 391001",
            "٠٦٣٦٣٣٩١٠٠١",
        ] {
            assert_eq!(
                OrgFiscalCode::parse_unchecked(s).unwrap_err().to_string(),
                "organization fiscal code must be 11 digits",
                "{s:?}"
            );
        }
    }

    #[test]
    fn serde_is_plain_string_and_lenient() {
        let c: OrgFiscalCode = serde_json::from_str("\"06363391002\"").unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"06363391002\"");
        assert!(serde_json::from_str::<OrgFiscalCode>("\"123\"").is_err());
        assert!(serde_json::from_str::<OrgFiscalCode>("6363391001").is_err());
    }
}
