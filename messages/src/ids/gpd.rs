//! GPD's looser identifiers, for organizations that opt in with
//! `[organizations.gpd_compat] free_identifiers = true` (configuration and REST API only).
//!
//! pagoPA GPD checks an organization fiscal code and a notice number only as `\d{1,30}`
//! (`IPaymentsController`: `@Pattern(regexp = "\\d{1,30}")` on `organizationfiscalcode`,
//! `^\d{1,30}$` on `nav`) and an IUV only as not blank; its own test suite uses organization
//! `700123456789001` with 25-digit notice numbers. mpay accepts the same **digits, 1 to 30**
//! for the three of them, through the `parse_gpd` constructors of [`OrgFiscalCode`],
//! [`NoticeNumber`] and [`Iuv`], and only where an opted-in organization's REST call or
//! configuration is read. Everywhere else (station, feeds, Archivio Carichi, portal, serde of
//! request bodies) the pagoPA shapes stay the only ones accepted: `parse` / `parse_unchecked`
//! and the types' `Deserialize` are unchanged.
//!
//! A value in the GPD form answers `is_pagopa() == false`; a position holding one is REST-only
//! (`DebtPosition::rest_only`): the station answers the Node that the notice is unknown. Stored
//! positions read such values back through the deserializers of this module (used with
//! `#[serde(deserialize_with)]` on the position's identifier fields only).
//!
//! [`OrgFiscalCode`]: super::OrgFiscalCode
//! [`NoticeNumber`]: super::NoticeNumber
//! [`Iuv`]: super::Iuv

use serde::{Deserialize, Deserializer};

use super::{Iuv, NoticeNumber, OrgFiscalCode};

/// The longest GPD identifier (`\d{1,30}`).
pub const GPD_MAX_DIGITS: usize = 30;

/// GPD's identifier shape: 1 to 30 ASCII digits.
pub fn is_gpd_digits(s: &str) -> bool {
    (1..=GPD_MAX_DIGITS).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

fn err<E: serde::de::Error>(e: super::IdError) -> E {
    E::custom(e)
}

/// A stored organization fiscal code: pagoPA's 11 digits or GPD's form.
///
/// # Errors
/// When the stored string is neither.
pub fn org<'de, D: Deserializer<'de>>(d: D) -> Result<OrgFiscalCode, D::Error> {
    OrgFiscalCode::parse_gpd(&String::deserialize(d)?).map_err(err)
}

/// [`org`] for an optional field.
///
/// # Errors
/// When the stored string is neither form.
pub fn org_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OrgFiscalCode>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| OrgFiscalCode::parse_gpd(&s).map_err(err))
        .transpose()
}

/// A stored notice number: pagoPA's 18 digits or GPD's form.
///
/// # Errors
/// When the stored string is neither.
pub fn nav<'de, D: Deserializer<'de>>(d: D) -> Result<NoticeNumber, D::Error> {
    NoticeNumber::parse_gpd(&String::deserialize(d)?).map_err(err)
}

/// A stored IUV: pagoPA's (15 or 17 digits, RF reference) or GPD's form.
///
/// # Errors
/// When the stored string is neither.
pub fn iuv<'de, D: Deserializer<'de>>(d: D) -> Result<Iuv, D::Error> {
    Iuv::parse_gpd(&String::deserialize(d)?).map_err(err)
}

/// [`iuv`] for an optional field.
///
/// # Errors
/// When the stored string is neither form.
pub fn iuv_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Iuv>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| Iuv::parse_gpd(&s).map_err(err))
        .transpose()
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    const NAV25: &str = "0123456789012345678901234";

    #[test]
    fn gpd_digits() {
        assert!(is_gpd_digits("7"));
        assert!(is_gpd_digits(&"9".repeat(30)));
        for s in ["", "12a", " 12", &"9".repeat(31), "٠١٢"] {
            assert!(!is_gpd_digits(s), "{s:?}");
        }
    }

    #[test]
    fn organization() {
        let gpd = OrgFiscalCode::parse_gpd("700123456789001").unwrap();
        assert!(!gpd.is_pagopa());
        assert!(!gpd.check_digit_ok());
        assert_eq!(gpd.as_str(), "700123456789001");
        // an 11-digit code is pagoPA's, whatever the constructor
        let p = OrgFiscalCode::parse_gpd(" 77777777777 ").unwrap();
        assert!(p.is_pagopa());
        assert_eq!(p, OrgFiscalCode::parse_unchecked("77777777777").unwrap());
        for s in [
            "",
            "ABC",
            "7001234567890012345678901234567",
            "70012 3456789",
        ] {
            assert_eq!(
                OrgFiscalCode::parse_gpd(s).unwrap_err().to_string(),
                "organization fiscal code must be 1 to 30 digits (GPD) or 11 digits",
                "{s:?}"
            );
        }
        // the strict constructors and serde stay pagoPA's
        assert!(OrgFiscalCode::parse_unchecked("700123456789001").is_err());
        assert!(serde_json::from_str::<OrgFiscalCode>("\"700123456789001\"").is_err());
    }

    #[test]
    fn notice_number() {
        let n = NoticeNumber::parse_gpd(NAV25).unwrap();
        assert!(!n.is_pagopa());
        assert_eq!(n.as_str(), NAV25);
        // its IUV is itself (GPD's free notices: nav == iuv)
        assert_eq!(n.iuv().as_str(), NAV25);
        assert!(!n.iuv().is_pagopa());
        // 18 digits with aux 0..3 is a pagoPA notice number; 18 digits from 4 is GPD's
        assert!(NoticeNumber::parse_gpd("312202600000000171")
            .unwrap()
            .is_pagopa());
        assert!(!NoticeNumber::parse_gpd("412202600000000171")
            .unwrap()
            .is_pagopa());
        assert!(!NoticeNumber::parse_gpd("999999999999999")
            .unwrap()
            .is_pagopa());
        for s in ["", "ABCDEF", " 123", &"1".repeat(31)] {
            assert_eq!(
                NoticeNumber::parse_gpd(s).unwrap_err().to_string(),
                "notice number must be 1 to 30 digits (GPD) or 18 digits",
                "{s:?}"
            );
        }
        assert!(NoticeNumber::parse_unchecked(NAV25).is_err());
        assert!(serde_json::from_str::<NoticeNumber>(&format!("\"{NAV25}\"")).is_err());
    }

    #[test]
    fn iuv_forms() {
        let i = Iuv::parse_gpd(NAV25).unwrap();
        assert!(!i.is_pagopa());
        assert!(i.is_numeric());
        assert!(Iuv::parse_gpd("12202600000000171").unwrap().is_pagopa());
        assert!(Iuv::parse_gpd("RF18539007547034").unwrap().is_pagopa());
        for s in ["", "ABCDEF", &"1".repeat(31)] {
            assert!(Iuv::parse_gpd(s).is_err(), "{s:?}");
        }
        assert!(Iuv::parse_unchecked(NAV25).is_err());
    }

    #[test]
    fn stored_forms_read_back() {
        #[derive(serde::Deserialize)]
        struct Stored {
            #[serde(deserialize_with = "org")]
            org: OrgFiscalCode,
            #[serde(deserialize_with = "org_opt")]
            beneficiary: Option<OrgFiscalCode>,
            #[serde(deserialize_with = "nav")]
            nav: NoticeNumber,
            #[serde(deserialize_with = "iuv")]
            iuv: Iuv,
            #[serde(deserialize_with = "iuv_opt")]
            other: Option<Iuv>,
        }
        let s: Stored = serde_json::from_str(&format!(
            r#"{{"org":"700123456789001","beneficiary":null,"nav":"{NAV25}","iuv":"{NAV25}","other":"12202600000000171"}}"#
        ))
        .unwrap();
        assert_eq!(s.org.as_str(), "700123456789001");
        assert!(s.beneficiary.is_none());
        assert_eq!(s.nav.as_str(), NAV25);
        assert_eq!(s.iuv.as_str(), NAV25);
        assert!(s.other.unwrap().is_pagopa());
        let bad = serde_json::from_str::<Stored>(
            r#"{"org":"X","beneficiary":null,"nav":"1","iuv":"1","other":null}"#,
        );
        assert!(bad.is_err());
    }
}
