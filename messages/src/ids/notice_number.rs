//! Notice number (NAV, "codice avviso"), its check digit and layout, and how an organization
//! numbers its notices ([`NoticeLayout`]: one file, the two types are defined by each other).

use super::aux_digit::AuxDigit;
use super::checksum::{all_digits, two_digits};
use super::error::IdError;
use super::iuv::Iuv;
use super::macros::{string_id_impls, string_schema};

/// The pagoPA mod 93 check digit of a decimal string (SACI 3.x / SPEC §7.1):
/// the integer value of the digits modulo 93, computed digit by digit
/// (`r = (r * 10 + d) % 93`, no length limit). The result 0..=92 is rendered
/// elsewhere as exactly two digits (`06`). For notice numbers it is computed
/// over aux digit + application/segregation code + base (16 digits).
///
/// # Errors
/// [`IdError::Shape`] unless `digits` is a non-empty string of ASCII digits.
pub fn check_digit(digits: &str) -> Result<u8, IdError> {
    if !all_digits(digits) {
        return Err(IdError::Shape {
            what: "check digit input",
            expected: "a non-empty string of decimal digits",
        });
    }
    let r = digits
        .bytes()
        .fold(0u32, |r, b| (r * 10 + u32::from(b - b'0')) % 93);
    u8::try_from(r).map_err(|_| IdError::Shape {
        what: "check digit input",
        expected: "a non-empty string of decimal digits",
    })
}

/// Outcome of [`NoticeNumber::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NoticeCheck {
    /// The layout read from the notice number.
    pub layout: NoticeLayout,
    /// `(found, expected)` check digit (0..=99 found, 0..=92 expected);
    /// `None` for aux 1, which has no check digit.
    pub check_digit: Option<(u8, u8)>,
}

impl NoticeCheck {
    /// Whether the check digit matches (always `true` for aux 1).
    pub fn is_valid(&self) -> bool {
        self.check_digit
            .is_none_or(|(found, expected)| found == expected)
    }
}

/// A notice number (NAV, `stNoticeNumber`, SPEC §4.1 / §7.1): exactly 18
/// ASCII digits whose first digit is the aux digit 0..=3.
///
/// Layout (SPEC §7.1): `0 <app 2> <base 13> <cd 2>`, `1 <base 17>`,
/// `2 <base 15> <cd 2>`, `3 <seg 2> <base 13> <cd 2>`; `cd` = [`check_digit`]
/// of the first 16 digits.
///
/// * [`NoticeNumber::parse`] — strict: shape and, for aux 0/2/3, check digit
///   (for numbers we generate or a person types);
/// * [`NoticeNumber::parse_unchecked`] — shape only (numbers received from
///   pagoPA/PSPs: many official test numbers have a wrong check digit and the
///   Node does not enforce it); ask [`NoticeNumber::check`] to log it.
///
/// An aux digit 4..=9 is rejected even by `parse_unchecked` (no such layout
/// exists); a SOAP handler may want to answer it as an unknown payment rather
/// than as a syntax error. Serde: plain string, deserialized through
/// `parse_unchecked`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NoticeNumber(String);

impl NoticeNumber {
    /// Strict parse: 18 digits, aux digit 0..=3, and the mod 93 check digit
    /// for aux 0, 2, 3.
    ///
    /// # Errors
    /// [`IdError::Shape`] or [`IdError::CheckMismatch`] ("notice number check
    /// digit is 42, expected 71").
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let n = Self::parse_unchecked(s)?;
        match n.check().check_digit {
            Some((found, expected)) if found != expected => Err(IdError::CheckMismatch {
                what: "notice number check digit",
                found: format!("{found:02}"),
                expected: format!("{expected:02}"),
            }),
            _ => Ok(n),
        }
    }

    /// Lenient parse: 18 digits with aux digit 0..=3; the check digit is not
    /// verified.
    ///
    /// # Errors
    /// [`IdError::Shape`].
    pub fn parse_unchecked(s: &str) -> Result<Self, IdError> {
        if s.len() != 18 || !all_digits(s) {
            return Err(IdError::Shape {
                what: "notice number",
                expected: "18 digits",
            });
        }
        if !matches!(s.as_bytes().first(), Some(b'0'..=b'3')) {
            return Err(IdError::Shape {
                what: "notice number",
                expected: "18 digits starting with the aux digit 0, 1, 2 or 3",
            });
        }
        Ok(Self(s.to_owned()))
    }

    /// GPD's looser form, for an organization with `gpd_compat.free_identifiers` only (its
    /// REST API, see [`crate::ids::gpd`]): 1 to 30 ASCII digits. A value of pagoPA's shape
    /// (18 digits from aux 0..3) is a pagoPA notice number as with
    /// [`NoticeNumber::parse_unchecked`]; any other is GPD's (`is_pagopa() == false`): it has
    /// no layout nor check digit, its [`NoticeNumber::iuv`] is itself, and it can never reach
    /// the station.
    ///
    /// # Errors
    /// [`IdError::Shape`].
    pub fn parse_gpd(s: &str) -> Result<Self, IdError> {
        if super::gpd::is_gpd_digits(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::Shape {
                what: "notice number",
                expected: "1 to 30 digits (GPD) or 18 digits",
            })
        }
    }

    /// Whether this is a pagoPA notice number (18 digits, aux digit 0..3), not GPD's looser
    /// form. [`NoticeNumber::aux_digit`], [`NoticeNumber::layout`] and
    /// [`NoticeNumber::check`] describe pagoPA numbers only: callers that may hold a GPD
    /// number ask this first.
    pub fn is_pagopa(&self) -> bool {
        self.0.len() == 18 && matches!(self.0.as_bytes().first(), Some(b'0'..=b'3'))
    }

    /// Builds the notice number of `iuv` under `layout` (SPEC §7.1): aux 0 →
    /// `0 + application code + IUV(15)`; aux 1/2 → `aux + IUV(17)`; aux 3 →
    /// `3 + IUV(17)` where the IUV must start with the segregation code. The
    /// check digit is not verified (the IUV may come from outside); use
    /// [`NoticeNumber::check`].
    ///
    /// # Errors
    /// [`IdError::LayoutMismatch`] when the IUV is not numeric, has the wrong
    /// length, or does not start with the segregation code;
    /// [`IdError::OutOfRange`] when the layout's code is above 99.
    pub fn from_iuv(iuv: &Iuv, layout: &NoticeLayout) -> Result<Self, IdError> {
        let digits = layout.notice_digits_for(iuv.as_str())?;
        Self::parse_unchecked(&digits)
    }

    /// The 18 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The aux digit (first digit).
    pub fn aux_digit(&self) -> AuxDigit {
        match self.0.as_bytes().first() {
            Some(b'0') => AuxDigit::Zero,
            Some(b'1') => AuxDigit::One,
            Some(b'2') => AuxDigit::Two,
            // '3' by construction
            _ => AuxDigit::Three,
        }
    }

    /// The 2-digit code after the aux digit for aux 0 and 3 (0..=99).
    fn code(&self) -> u8 {
        self.0.get(1..3).and_then(two_digits).unwrap_or(0)
    }

    /// The layout read from the number (application / segregation code
    /// included).
    pub fn layout(&self) -> NoticeLayout {
        match self.aux_digit() {
            AuxDigit::Zero => NoticeLayout::Aux0 {
                application_code: self.code(),
            },
            AuxDigit::One => NoticeLayout::Aux1,
            AuxDigit::Two => NoticeLayout::Aux2,
            AuxDigit::Three => NoticeLayout::Aux3 {
                segregation_code: self.code(),
            },
        }
    }

    /// The IUV (SPEC §7.1): characters 1..18 for aux 1, 2, 3 (17 digits),
    /// 3..18 for aux 0 (15 digits); for GPD's looser form, the number itself.
    pub fn iuv(&self) -> Iuv {
        if !self.is_pagopa() {
            return Iuv::from_validated(self.0.clone());
        }
        let start = match self.aux_digit() {
            AuxDigit::Zero => 3,
            AuxDigit::One | AuxDigit::Two | AuxDigit::Three => 1,
        };
        Iuv::from_validated(self.0.get(start..).unwrap_or("").to_owned())
    }

    /// Layout and check-digit comparison (no check digit for aux 1).
    pub fn check(&self) -> NoticeCheck {
        let layout = self.layout();
        let check_digit = if layout.has_check_digit() {
            let found = self.0.get(16..).and_then(two_digits).unwrap_or(0);
            let expected = self
                .0
                .get(..16)
                .and_then(|p| check_digit(p).ok())
                .unwrap_or(0);
            Some((found, expected))
        } else {
            None
        };
        NoticeCheck {
            layout,
            check_digit,
        }
    }

    /// Shorthand for `self.check().is_valid()`.
    pub fn check_digit_ok(&self) -> bool {
        self.check().is_valid()
    }
}

string_id_impls!(
    NoticeNumber,
    NoticeNumber::parse_unchecked,
    "a notice number (18 digits)"
);
string_schema!(
    NoticeNumber,
    "pagoPA notice number (NAV, codice avviso): 18 digits, first digit = aux digit 0..3.",
    Some("^[0-3][0-9]{17}$"),
    18,
    18,
    "312202600000000171"
);

/// How an organization (or one of its generation points) numbers its
/// notices: the aux digit and, for aux 0 / aux 3, the 2-digit code that routes
/// the notice to a station (SACI 3.x / SPEC §7.1).
///
/// | layout | notice number | base width |
/// |---|---|---|
/// | `Aux0` | `0 <application code 2> <base 13> <cd 2>` | 13 |
/// | `Aux1` | `1 <base 17>` (no check digit) | 17 |
/// | `Aux2` | `2 <base 15> <cd 2>` | 15 |
/// | `Aux3` | `3 <segregation code 2> <base 13> <cd 2>` | 13 |
///
/// Codes must be 0..=99; a larger value makes [`NoticeLayout::generate`] and
/// [`NoticeNumber::from_iuv`] fail and is rejected by deserialization.
/// Serde (camelCase): `{"auxDigit":3,"segregationCode":12}`,
/// `{"auxDigit":0,"applicationCode":1}`, `{"auxDigit":1}`, `{"auxDigit":2}`.
/// Display: "aux 3, segregation code 12", "aux 0, application code 01", "aux 1".
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "NoticeLayoutRepr", into = "NoticeLayoutRepr")]
pub enum NoticeLayout {
    /// Aux digit 0 with the given application code (00..=99).
    Aux0 {
        /// Application code, 0..=99, printed with two digits.
        application_code: u8,
    },
    /// Aux digit 1 (no check digit).
    Aux1,
    /// Aux digit 2.
    Aux2,
    /// Aux digit 3 with the given segregation code (00..=99).
    Aux3 {
        /// Segregation code, 0..=99, printed with two digits.
        segregation_code: u8,
    },
}

impl NoticeLayout {
    /// The aux digit of this layout.
    pub fn aux_digit(&self) -> AuxDigit {
        match self {
            Self::Aux0 { .. } => AuxDigit::Zero,
            Self::Aux1 => AuxDigit::One,
            Self::Aux2 => AuxDigit::Two,
            Self::Aux3 { .. } => AuxDigit::Three,
        }
    }

    /// The application code (aux 0) or segregation code (aux 3).
    pub fn code(&self) -> Option<u8> {
        match self {
            Self::Aux0 { application_code } => Some(*application_code),
            Self::Aux3 { segregation_code } => Some(*segregation_code),
            Self::Aux1 | Self::Aux2 => None,
        }
    }

    /// Whether notices of this layout end with a 2-digit mod 93 check digit.
    pub fn has_check_digit(&self) -> bool {
        self.aux_digit().has_check_digit()
    }

    /// Number of digits of the free "base" part (13, 17, 15, 13 for aux 0..3).
    pub fn base_width(&self) -> usize {
        match self {
            Self::Aux0 { .. } | Self::Aux3 { .. } => 13,
            Self::Aux1 => 17,
            Self::Aux2 => 15,
        }
    }

    /// How many distinct bases exist: `10^base_width` (sequences
    /// `0..base_capacity()` can be generated).
    pub fn base_capacity(&self) -> u64 {
        match self {
            Self::Aux0 { .. } | Self::Aux3 { .. } => 10_000_000_000_000,
            Self::Aux1 => 100_000_000_000_000_000,
            Self::Aux2 => 1_000_000_000_000_000,
        }
    }

    /// Length of the IUV of notices with this layout (15 for aux 0, else 17).
    pub fn iuv_len(&self) -> usize {
        match self {
            Self::Aux0 { .. } => 15,
            Self::Aux1 | Self::Aux2 | Self::Aux3 { .. } => 17,
        }
    }

    /// Checks that the code, if any, is 0..=99.
    ///
    /// # Errors
    /// [`IdError::OutOfRange`].
    pub fn validate(&self) -> Result<(), IdError> {
        match self {
            Self::Aux0 {
                application_code: c,
            } if *c > 99 => Err(IdError::OutOfRange {
                what: "application code",
                value: c.to_string(),
                min: "0".into(),
                max: "99".into(),
            }),
            Self::Aux3 {
                segregation_code: c,
            } if *c > 99 => Err(IdError::OutOfRange {
                what: "segregation code",
                value: c.to_string(),
                min: "0".into(),
                max: "99".into(),
            }),
            _ => Ok(()),
        }
    }

    /// The digits before the base: the aux digit and, for aux 0 / 3, the
    /// 2-digit code.
    fn prefix(&self) -> String {
        match self.code() {
            Some(code) => format!("{}{code:02}", self.aux_digit()),
            None => self.aux_digit().to_string(),
        }
    }

    /// Generates the notice number whose base is `sequence` zero-padded to
    /// [`NoticeLayout::base_width`], followed by the mod 93 check digit where
    /// the layout has one (SPEC §7.1). E.g. `Aux3 { segregation_code: 12 }`,
    /// sequence `2026000000001` → `312202600000000171`.
    ///
    /// # Errors
    /// [`IdError::OutOfRange`] when `sequence >= base_capacity()` or the code
    /// is above 99.
    pub fn generate(&self, sequence: u64) -> Result<NoticeNumber, IdError> {
        self.validate()?;
        let capacity = self.base_capacity();
        if sequence >= capacity {
            return Err(IdError::OutOfRange {
                what: "notice sequence",
                value: sequence.to_string(),
                min: "0".into(),
                max: (capacity - 1).to_string(),
            });
        }
        let body = format!(
            "{}{sequence:0width$}",
            self.prefix(),
            width = self.base_width()
        );
        let digits = if self.has_check_digit() {
            format!("{body}{:02}", check_digit(&body)?)
        } else {
            body
        };
        NoticeNumber::parse(&digits)
    }

    /// Assembles the notice number for `iuv` under this layout (without
    /// verifying the check digit; call [`NoticeNumber::check`] for that).
    pub(super) fn notice_digits_for(&self, iuv: &str) -> Result<String, IdError> {
        self.validate()?;
        let mismatch = |reason| IdError::LayoutMismatch {
            layout: self.to_string(),
            reason,
        };
        if !iuv.bytes().all(|b| b.is_ascii_digit()) {
            return Err(mismatch("a notice IUV must be numeric"));
        }
        if iuv.len() != self.iuv_len() {
            return Err(mismatch(if self.iuv_len() == 15 {
                "aux 0 needs a 15-digit IUV"
            } else {
                "this layout needs a 17-digit IUV"
            }));
        }
        match self {
            Self::Aux0 { application_code } => Ok(format!("0{application_code:02}{iuv}")),
            Self::Aux3 { segregation_code } => {
                if iuv.starts_with(&format!("{segregation_code:02}")) {
                    Ok(format!("3{iuv}"))
                } else {
                    Err(mismatch("the IUV must start with the segregation code"))
                }
            }
            Self::Aux1 | Self::Aux2 => Ok(format!("{}{iuv}", self.aux_digit())),
        }
    }
}

impl std::fmt::Display for NoticeLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Aux0 { application_code } => {
                write!(f, "aux 0, application code {application_code:02}")
            }
            Self::Aux1 => f.write_str("aux 1"),
            Self::Aux2 => f.write_str("aux 2"),
            Self::Aux3 { segregation_code } => {
                write!(f, "aux 3, segregation code {segregation_code:02}")
            }
        }
    }
}

/// Wire form of [`NoticeLayout`].
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NoticeLayoutRepr {
    aux_digit: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    application_code: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    segregation_code: Option<u8>,
}

impl From<NoticeLayout> for NoticeLayoutRepr {
    fn from(l: NoticeLayout) -> Self {
        let (application_code, segregation_code) = match l {
            NoticeLayout::Aux0 { application_code } => (Some(application_code), None),
            NoticeLayout::Aux3 { segregation_code } => (None, Some(segregation_code)),
            NoticeLayout::Aux1 | NoticeLayout::Aux2 => (None, None),
        };
        Self {
            aux_digit: l.aux_digit().as_u8(),
            application_code,
            segregation_code,
        }
    }
}

impl TryFrom<NoticeLayoutRepr> for NoticeLayout {
    type Error = IdError;
    fn try_from(r: NoticeLayoutRepr) -> Result<Self, IdError> {
        let layout = match (r.aux_digit, r.application_code, r.segregation_code) {
            (0, Some(application_code), None) => Self::Aux0 { application_code },
            (1, None, None) => Self::Aux1,
            (2, None, None) => Self::Aux2,
            (3, None, Some(segregation_code)) => Self::Aux3 { segregation_code },
            _ => {
                return Err(IdError::Shape {
                    what: "notice layout",
                    expected: "auxDigit 0 with applicationCode, 1, 2, or 3 with segregationCode",
                })
            }
        };
        layout.validate()?;
        Ok(layout)
    }
}

impl utoipa::PartialSchema for NoticeLayout {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let code = |desc: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some(desc))
                .minimum(Some(0))
                .maximum(Some(99))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Notice numbering layout: auxDigit 0 (with applicationCode), 1, 2, \
                 or 3 (with segregationCode).",
            ))
            .property(
                "auxDigit",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(3)),
            )
            .required("auxDigit")
            .property(
                "applicationCode",
                code("Application code (aux 0 only), 0..99."),
            )
            .property(
                "segregationCode",
                code("Segregation code (aux 3 only), 0..99."),
            )
            .examples([serde_json::json!({"auxDigit": 3, "segregationCode": 12})])
            .into()
    }
}

impl utoipa::ToSchema for NoticeLayout {}

#[cfg(test)]
mod unit_tests {
    use super::*;

    /// Every row of the SPEC §7.1 worked-examples table:
    /// (layout, base, string fed to mod 93, mod 93, IUV, NAV).
    const TABLE: [(NoticeLayout, u64, &str, u8, &str, &str); 6] = [
        (
            NoticeLayout::Aux3 {
                segregation_code: 12,
            },
            2_026_000_000_001,
            "3122026000000001",
            71,
            "12202600000000171",
            "312202600000000171",
        ),
        (
            NoticeLayout::Aux3 {
                segregation_code: 12,
            },
            2_026_000_000_002,
            "3122026000000002",
            72,
            "12202600000000272",
            "312202600000000272",
        ),
        (
            NoticeLayout::Aux3 {
                segregation_code: 44,
            },
            123_456_789_012,
            "3440123456789012",
            86,
            "44012345678901286",
            "344012345678901286",
        ),
        (
            NoticeLayout::Aux3 {
                segregation_code: 12,
            },
            1,
            "3120000000000001",
            19,
            "12000000000000119",
            "312000000000000119",
        ),
        (
            NoticeLayout::Aux0 {
                application_code: 1,
            },
            2_600_000_000_123,
            "0012600000000123",
            6,
            "260000000012306",
            "001260000000012306",
        ),
        (
            NoticeLayout::Aux2,
            202_600_000_000_042,
            "2202600000000042",
            36,
            "20260000000004236",
            "220260000000004236",
        ),
    ];

    #[test]
    fn spec_7_1_table() {
        for (layout, base, fed, cd, iuv, nav) in TABLE {
            assert_eq!(check_digit(fed).unwrap(), cd, "{nav}");
            let generated = layout.generate(base).unwrap();
            assert_eq!(generated.as_str(), nav);
            let parsed = NoticeNumber::parse(nav).unwrap();
            assert_eq!(parsed, generated);
            assert_eq!(parsed.iuv().as_str(), iuv);
            assert_eq!(parsed.layout(), layout);
            assert_eq!(parsed.aux_digit(), layout.aux_digit());
            let check = parsed.check();
            assert_eq!(check.check_digit, Some((cd, cd)));
            assert!(check.is_valid());
            let iuv = Iuv::parse(iuv).unwrap();
            assert_eq!(NoticeNumber::from_iuv(&iuv, &layout).unwrap(), parsed);
        }
        // the python snippet: cd rendered with two digits
        assert_eq!(
            format!("{:02}", check_digit("0012600000000123").unwrap()),
            "06"
        );
    }

    #[test]
    fn third_party_aux0_notices() {
        for nav in ["001340000013900808", "001340000013900909"] {
            let n = NoticeNumber::parse(nav).unwrap();
            assert_eq!(
                n.layout(),
                NoticeLayout::Aux0 {
                    application_code: 1
                }
            );
            assert_eq!(n.iuv().as_str().len(), 15);
            assert_eq!(n.iuv().as_str(), &nav[3..]);
        }
        // leaving the application code out would give 61, not 08
        assert_eq!(check_digit("3400000139008").unwrap(), 61);
    }

    #[test]
    fn official_doc_numbers_with_wrong_check_digit() {
        for (nav, found, expected) in [
            ("311111111112222222", 22, 47),
            (
                "302012387654312384",
                84,
                check_digit("3020123876543123").unwrap(),
            ),
            (
                "311111111111111116",
                16,
                check_digit("3111111111111111").unwrap(),
            ),
        ] {
            let err = NoticeNumber::parse(nav).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("notice number check digit is {found:02}, expected {expected:02}")
            );
            let n = NoticeNumber::parse_unchecked(nav).unwrap();
            assert!(!n.check_digit_ok());
            assert_eq!(n.check().check_digit, Some((found, expected)));
            // received values deserialize fine
            let d: NoticeNumber = serde_json::from_str(&format!("\"{nav}\"")).unwrap();
            assert_eq!(d, n);
        }
    }

    #[test]
    fn aux1_has_no_check_digit() {
        let n = NoticeNumber::parse("112345678901234567").unwrap();
        assert_eq!(n.layout(), NoticeLayout::Aux1);
        assert_eq!(n.check().check_digit, None);
        assert!(n.check().is_valid());
        assert_eq!(n.iuv().as_str(), "12345678901234567");
        assert_eq!(
            NoticeLayout::Aux1.generate(42).unwrap().as_str(),
            "100000000000000042"
        );
    }

    #[test]
    fn shapes() {
        for s in [
            "",
            "31220260000000017",
            "3122026000000001711",
            "31220260000000017a",
            "+12202600000000171",
        ] {
            assert_eq!(
                NoticeNumber::parse_unchecked(s).unwrap_err().to_string(),
                "notice number must be 18 digits",
                "{s:?}"
            );
        }
        assert_eq!(
            NoticeNumber::parse_unchecked("412202600000000171")
                .unwrap_err()
                .to_string(),
            "notice number must be 18 digits starting with the aux digit 0, 1, 2 or 3"
        );
        assert!(check_digit("").is_err());
        assert!(check_digit("12a").is_err());
        // no length limit
        assert_eq!(check_digit(&"9".repeat(100)).unwrap(), {
            let mut r = 0u32;
            for _ in 0..100 {
                r = (r * 10 + 9) % 93;
            }
            r as u8
        });
    }

    #[test]
    fn from_iuv_errors() {
        let seg12 = NoticeLayout::Aux3 {
            segregation_code: 12,
        };
        let iuv17 = Iuv::parse("44012345678901286").unwrap();
        assert_eq!(
            NoticeNumber::from_iuv(&iuv17, &seg12).unwrap_err().to_string(),
            "IUV does not fit notice layout (aux 3, segregation code 12): the IUV must start with the segregation code"
        );
        let iuv15 = Iuv::parse("260000000012306").unwrap();
        assert!(matches!(
            NoticeNumber::from_iuv(&iuv15, &seg12),
            Err(IdError::LayoutMismatch { .. })
        ));
        assert!(matches!(
            NoticeNumber::from_iuv(
                &iuv17,
                &NoticeLayout::Aux0 {
                    application_code: 1
                }
            ),
            Err(IdError::LayoutMismatch { .. })
        ));
        let rf = Iuv::parse_rf("RF18539007547034").unwrap();
        assert!(matches!(
            NoticeNumber::from_iuv(&rf, &NoticeLayout::Aux2),
            Err(IdError::LayoutMismatch { .. })
        ));
        assert!(matches!(
            NoticeNumber::from_iuv(
                &iuv17,
                &NoticeLayout::Aux3 {
                    segregation_code: 144
                }
            ),
            Err(IdError::OutOfRange { .. })
        ));
        // segregation code 0 is printed "00"
        let seg0 = NoticeLayout::Aux3 {
            segregation_code: 0,
        };
        let n = seg0.generate(5).unwrap();
        assert!(n.as_str().starts_with("300"));
        assert_eq!(NoticeNumber::from_iuv(&n.iuv(), &seg0).unwrap(), n);
    }

    #[test]
    fn generate_limits() {
        for layout in [
            NoticeLayout::Aux0 {
                application_code: 99,
            },
            NoticeLayout::Aux1,
            NoticeLayout::Aux2,
            NoticeLayout::Aux3 {
                segregation_code: 7,
            },
        ] {
            let cap = layout.base_capacity();
            assert_eq!(cap, 10u64.pow(layout.base_width() as u32));
            let last = layout.generate(cap - 1).unwrap();
            assert!(last.check_digit_ok());
            assert_eq!(last.layout(), layout);
            assert_eq!(last.iuv().as_str().len(), layout.iuv_len());
            let err = layout.generate(cap).unwrap_err();
            assert!(
                matches!(
                    err,
                    IdError::OutOfRange {
                        what: "notice sequence",
                        ..
                    }
                ),
                "{err}"
            );
            assert!(layout.generate(u64::MAX).is_err());
            assert_eq!(layout.generate(0).unwrap().layout(), layout);
        }
        assert_eq!(
            NoticeLayout::Aux0 {
                application_code: 100
            }
            .generate(1)
            .unwrap_err()
            .to_string(),
            "application code 100 is out of range (0..=99)"
        );
    }

    #[test]
    fn layout_serde_and_display() {
        let cases = [
            (
                NoticeLayout::Aux3 {
                    segregation_code: 12,
                },
                r#"{"auxDigit":3,"segregationCode":12}"#,
                "aux 3, segregation code 12",
            ),
            (
                NoticeLayout::Aux0 {
                    application_code: 1,
                },
                r#"{"auxDigit":0,"applicationCode":1}"#,
                "aux 0, application code 01",
            ),
            (NoticeLayout::Aux1, r#"{"auxDigit":1}"#, "aux 1"),
            (NoticeLayout::Aux2, r#"{"auxDigit":2}"#, "aux 2"),
        ];
        for (layout, json, display) in cases {
            assert_eq!(serde_json::to_string(&layout).unwrap(), json);
            assert_eq!(serde_json::from_str::<NoticeLayout>(json).unwrap(), layout);
            assert_eq!(layout.to_string(), display);
        }
        for bad in [
            r#"{"auxDigit":3}"#,
            r#"{"auxDigit":3,"segregationCode":100}"#,
            r#"{"auxDigit":1,"segregationCode":1}"#,
            r#"{"auxDigit":0,"segregationCode":1}"#,
            r#"{"auxDigit":4}"#,
            r#"{"auxDigit":2,"extra":true}"#,
        ] {
            assert!(serde_json::from_str::<NoticeLayout>(bad).is_err(), "{bad}");
        }
        assert_eq!(serde_json::to_string(&AuxDigit::Three).unwrap(), "3");
        assert!(serde_json::from_str::<AuxDigit>("4").is_err());
    }
}
