//! The aux digit (first digit) of a notice number.

use super::error::IdError;

/// The aux digit ("cifra ausiliaria"), first digit of a notice number, that
/// selects the numbering layout (SACI 3.x / SPEC §7.1). Serde: the integer
/// 0..=3.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "u8", into = "u8")]
pub enum AuxDigit {
    /// `0`: single generation point, archive split by a 2-digit application
    /// code; IUV 15 digits with check digit (deprecated).
    Zero,
    /// `1`: legacy pre-existing codes, 17-digit IUV, no check digit (deprecated).
    One,
    /// `2`: single generation point, 17-digit IUV with check digit (deprecated).
    Two,
    /// `3`: the only scheme for new notices; 2-digit segregation code, 17-digit
    /// IUV with check digit.
    Three,
}

impl AuxDigit {
    /// The digit value 0..=3.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Zero => 0,
            Self::One => 1,
            Self::Two => 2,
            Self::Three => 3,
        }
    }

    /// The ASCII digit `'0'..='3'`.
    pub fn as_char(self) -> char {
        char::from(b'0' + self.as_u8())
    }

    /// Whether notice numbers with this aux digit end with a mod 93 check digit
    /// (all but aux 1).
    pub fn has_check_digit(self) -> bool {
        !matches!(self, Self::One)
    }

    /// The aux digit for an ASCII digit character.
    ///
    /// # Errors
    /// [`IdError::Shape`] unless `c` is `'0'..='3'`.
    pub fn from_char(c: char) -> Result<Self, IdError> {
        match c {
            '0' => Ok(Self::Zero),
            '1' => Ok(Self::One),
            '2' => Ok(Self::Two),
            '3' => Ok(Self::Three),
            _ => Err(IdError::Shape {
                what: "aux digit",
                expected: "0, 1, 2 or 3",
            }),
        }
    }
}

impl TryFrom<u8> for AuxDigit {
    type Error = IdError;
    /// `0..=3` → the aux digit; [`IdError::Shape`] otherwise.
    fn try_from(v: u8) -> Result<Self, IdError> {
        match v {
            0 => Ok(Self::Zero),
            1 => Ok(Self::One),
            2 => Ok(Self::Two),
            3 => Ok(Self::Three),
            _ => Err(IdError::Shape {
                what: "aux digit",
                expected: "0, 1, 2 or 3",
            }),
        }
    }
}

impl From<AuxDigit> for u8 {
    fn from(a: AuxDigit) -> u8 {
        a.as_u8()
    }
}

impl std::fmt::Display for AuxDigit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.as_u8())
    }
}

impl utoipa::PartialSchema for AuxDigit {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .description(Some("Notice number aux digit (0..3); 3 for new notices."))
            .minimum(Some(0))
            .maximum(Some(3))
            .into()
    }
}

impl utoipa::ToSchema for AuxDigit {}
