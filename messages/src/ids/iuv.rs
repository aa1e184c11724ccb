//! IUV (identificativo univoco di versamento) = `creditorReferenceId`.

use super::checksum::{all_digits, mod97};
use super::error::IdError;
use super::macros::{string_id_impls, string_schema};

const NUMERIC_SHAPE: IdError = IdError::Shape {
    what: "IUV",
    expected: "15 or 17 digits",
};
const RF_SHAPE: IdError = IdError::Shape {
    what: "RF creditor reference",
    expected: "RF, 2 check digits and 1 to 21 letters or digits",
};

/// The IUV of a notice (`creditorReferenceId` in `paGetPayment` and in
/// receipts, SPEC §7.1): 15 digits (notices with aux digit 0) or 17 digits
/// (aux 1, 2, 3). It is the notice number without the aux digit (and without
/// the application code for aux 0); its check digit, when any, depends on the
/// notice layout, so it is verified on [`crate::ids::NoticeNumber`], not here.
///
/// Also holds, for historical data only, an ISO 11649 structured creditor
/// reference `RF<2 check digits><1..21 alphanumerics>` (SPEC §7.2, legacy
/// Modello 1 "schema D"), built with [`Iuv::parse_rf`] (mod 97 verified) or
/// accepted by [`Iuv::parse_unchecked`] (shape only).
///
/// Serde: plain string, deserialized through `parse_unchecked`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Iuv(String);

impl Iuv {
    /// Parses a numeric IUV: exactly 15 or 17 ASCII digits.
    ///
    /// # Errors
    /// [`IdError::Shape`] ("IUV must be 15 or 17 digits").
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if (s.len() == 15 || s.len() == 17) && all_digits(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(NUMERIC_SHAPE)
        }
    }

    /// Strict parse of an ISO 11649 RF creditor reference (SPEC §7.2):
    /// `RF` + 2 digits + 1..21 ASCII alphanumerics (case-insensitive input,
    /// stored upper case, surrounding whitespace and inner spaces removed), with
    /// the rearranged value `mod 97 == 1`.
    ///
    /// # Errors
    /// [`IdError::Shape`] or [`IdError::Mod97`] ("RF creditor reference check
    /// digits do not match (mod 97)").
    pub fn parse_rf(s: &str) -> Result<Self, IdError> {
        let iuv = Self::parse_rf_unchecked(s)?;
        if iuv.rf_check_ok() == Some(true) {
            Ok(iuv)
        } else {
            Err(IdError::Mod97 {
                what: "RF creditor reference",
            })
        }
    }

    /// Builds the RF creditor reference for `reference` (1..21 ASCII
    /// alphanumerics, e.g. `539007547034` → `RF18539007547034`, SPEC §7.2).
    ///
    /// # Errors
    /// [`IdError::Shape`] when `reference` has the wrong length or characters.
    pub fn rf_from_reference(reference: &str) -> Result<Self, IdError> {
        let reference = reference.to_ascii_uppercase();
        if !(1..=21).contains(&reference.len())
            || !reference.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(RF_SHAPE);
        }
        let r = mod97(reference.bytes().chain(*b"RF00")).ok_or(RF_SHAPE)?;
        Ok(Self(format!("RF{:02}{reference}", 98 - r)))
    }

    /// Lenient parse: a numeric IUV (15 or 17 digits) or an RF creditor
    /// reference whose check digits are not verified.
    ///
    /// # Errors
    /// [`IdError::Shape`] when the input is neither.
    pub fn parse_unchecked(s: &str) -> Result<Self, IdError> {
        if let Ok(iuv) = Self::parse(s) {
            return Ok(iuv);
        }
        Self::parse_rf_unchecked(s).map_err(|_| IdError::Shape {
            what: "IUV",
            expected: "15 or 17 digits, or an RF creditor reference",
        })
    }

    fn parse_rf_unchecked(s: &str) -> Result<Self, IdError> {
        let n: String = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let b = n.as_bytes();
        let ok = (5..=25).contains(&b.len())
            && b.starts_with(b"RF")
            && b.iter().skip(2).take(2).all(u8::is_ascii_digit)
            && b.iter().skip(4).all(u8::is_ascii_alphanumeric);
        if ok {
            Ok(Self(n))
        } else {
            Err(RF_SHAPE)
        }
    }

    /// GPD's looser form, for an organization with `gpd_compat.free_identifiers` only (its
    /// REST API, see [`crate::ids::gpd`]): a pagoPA IUV as [`Iuv::parse_unchecked`] reads it,
    /// or 1 to 30 ASCII digits (`is_pagopa() == false` unless 15 or 17 of them).
    ///
    /// # Errors
    /// [`IdError::Shape`].
    pub fn parse_gpd(s: &str) -> Result<Self, IdError> {
        if super::gpd::is_gpd_digits(s) {
            return Ok(Self(s.to_owned()));
        }
        Self::parse_unchecked(s).map_err(|_| IdError::Shape {
            what: "IUV",
            expected: "1 to 30 digits (GPD), or an RF creditor reference",
        })
    }

    /// Whether this is a pagoPA IUV (15 or 17 digits, or an RF creditor reference), not
    /// GPD's looser form.
    pub fn is_pagopa(&self) -> bool {
        !self.is_numeric() || self.0.len() == 15 || self.0.len() == 17
    }

    /// The IUV as given (digits, or `RF…` upper case).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a numeric IUV (15 or 17 digits, usable in a notice; or GPD's looser
    /// digits, see [`Iuv::is_pagopa`]).
    pub fn is_numeric(&self) -> bool {
        all_digits(&self.0)
    }

    /// For an RF creditor reference, whether its mod 97 check holds; `None`
    /// for numeric IUVs.
    pub fn rf_check_ok(&self) -> Option<bool> {
        if self.is_numeric() {
            return None;
        }
        let b = self.0.as_bytes();
        let rearranged = b.iter().skip(4).chain(b.iter().take(4)).copied();
        Some(mod97(rearranged) == Some(1))
    }

    /// Crate-internal constructor for digits already validated by the caller
    /// (a slice of a valid notice number).
    pub(super) fn from_validated(digits: String) -> Self {
        Self(digits)
    }
}

string_id_impls!(
    Iuv,
    Iuv::parse_unchecked,
    "an IUV (15 or 17 digits, or an RF creditor reference)"
);
string_schema!(
    Iuv,
    "IUV / creditorReferenceId: 15 or 17 digits (RF creditor references only in historical data).",
    Some("^([0-9]{15}|[0-9]{17}|RF[0-9]{2}[A-Z0-9]{1,21})$"),
    5,
    25,
    "12202600000000171"
);

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn numeric() {
        assert!(Iuv::parse("260000000012306").is_ok());
        assert!(Iuv::parse("12202600000000171").is_ok());
        for s in [
            "",
            "1220260000000017",
            "122026000000001711",
            "12202600000000 71",
            "RF18539007547034",
        ] {
            assert_eq!(
                Iuv::parse(s).unwrap_err().to_string(),
                "IUV must be 15 or 17 digits",
                "{s:?}"
            );
        }
        let i = Iuv::parse("12202600000000171").unwrap();
        assert!(i.is_numeric());
        assert_eq!(i.rf_check_ok(), None);
    }

    #[test]
    fn rf_example_of_spec_7_2() {
        let rf = Iuv::rf_from_reference("539007547034").unwrap();
        assert_eq!(rf.as_str(), "RF18539007547034");
        assert_eq!(Iuv::parse_rf("rf18 5390 0754 7034").unwrap(), rf);
        assert_eq!(rf.rf_check_ok(), Some(true));
        assert_eq!(
            Iuv::parse_rf("RF19539007547034").unwrap_err().to_string(),
            "RF creditor reference check digits do not match (mod 97)"
        );
        let lenient = Iuv::parse_unchecked("RF19539007547034").unwrap();
        assert_eq!(lenient.rf_check_ok(), Some(false));
        assert!(!lenient.is_numeric());
        // ISO 11649 examples
        assert!(Iuv::parse_rf("RF712348231").is_ok());
        assert!(Iuv::parse_rf("RF18000000000539007547034").is_ok());
        assert!(Iuv::parse_rf("RF180000000000539007547034").is_err()); // 26 chars
        assert!(Iuv::rf_from_reference("").is_err());
        assert!(Iuv::rf_from_reference("A-B").is_err());
    }

    #[test]
    fn lenient_and_serde() {
        assert!(Iuv::parse_unchecked("1234").is_err());
        assert!(Iuv::parse_unchecked("123456789012345678").is_err());
        let v: Iuv = serde_json::from_str("\"260000000012306\"").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"260000000012306\"");
        assert!(serde_json::from_str::<Iuv>("\"abc\"").is_err());
    }
}
