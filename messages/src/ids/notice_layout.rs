//! How an organization numbers its notices.

use super::aux_digit::AuxDigit;
use super::error::IdError;
use super::notice_number::{check_digit, NoticeNumber};

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
