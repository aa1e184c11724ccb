//! Money amount in integer euro cents.

use super::error::IdError;

/// A non-negative amount of euro, held as integer **cents** in an `i64`:
/// `0 ..= 99_999_999_999` cents (= `0.00 ..= 999999999.99` €, the `stAmount`
/// range, SPEC §4.1). No floating point is ever involved.
///
/// * SOAP text form (`stAmount`, `\d+\.\d{2}`): [`Amount::parse_decimal`] /
///   [`Amount::to_decimal_string`] (also `Display` / `FromStr`);
/// * CSV / form input: [`Amount::parse_decimal_lenient`] (`150`, `150.5`);
/// * JSON (GPD convention, SPEC §12): serde as an integer number of cents,
///   range-checked on deserialization.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Amount(i64);

/// Largest amount in cents (999999999.99 €).
const MAX_CENTS: i64 = 99_999_999_999;

impl Amount {
    /// Zero euro.
    pub const ZERO: Amount = Amount(0);
    /// The largest amount allowed by `stAmount`: 999999999.99 €.
    pub const MAX: Amount = Amount(MAX_CENTS);

    /// An amount from integer cents.
    ///
    /// # Errors
    /// [`IdError::OutOfRange`] unless `0 <= cents <= 99_999_999_999`.
    pub fn from_cents(cents: i64) -> Result<Self, IdError> {
        if (0..=MAX_CENTS).contains(&cents) {
            Ok(Self(cents))
        } else {
            Err(IdError::OutOfRange {
                what: "amount in cents",
                value: cents.to_string(),
                min: "0".into(),
                max: MAX_CENTS.to_string(),
            })
        }
    }

    /// The amount in integer cents.
    pub fn cents(self) -> i64 {
        self.0
    }

    /// Whether the amount is zero (`stAmountNotZero` requires it not to be).
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Strict XSD form `\d+\.\d{2}` (SPEC §4.1): `150.00`, `0.00`,
    /// `999999999.99`; leading zeros are allowed as in `xsd:decimal`.
    ///
    /// # Errors
    /// [`IdError::Shape`] on `150`, `150.0`, `1,50`, `-1.00`, `+1.00`,
    /// `1.234`, whitespace; [`IdError::OutOfRange`] above 999999999.99.
    pub fn parse_decimal(s: &str) -> Result<Self, IdError> {
        const SHAPE: IdError = IdError::Shape {
            what: "amount",
            expected: "digits, a dot and exactly two decimals (e.g. 150.00)",
        };
        let (int, frac) = s.split_once('.').ok_or(SHAPE)?;
        if frac.len() != 2 {
            return Err(SHAPE);
        }
        Self::from_parts(int, frac, SHAPE)
    }

    /// Lenient form for CSV files and forms: surrounding whitespace trimmed,
    /// then `\d+(\.\d{1,2})?` — `150`, `150.5`, `150.50`. Still no sign, no
    /// comma, no more than two decimals.
    ///
    /// # Errors
    /// [`IdError::Shape`] or [`IdError::OutOfRange`] as for
    /// [`Amount::parse_decimal`].
    pub fn parse_decimal_lenient(s: &str) -> Result<Self, IdError> {
        const SHAPE: IdError = IdError::Shape {
            what: "amount",
            expected: "digits, optionally a dot and one or two decimals (e.g. 150 or 150.5)",
        };
        let s = s.trim();
        match s.split_once('.') {
            None => Self::from_parts(s, "00", SHAPE),
            Some((int, frac)) if frac.len() == 1 || frac.len() == 2 => {
                let frac2 = format!("{frac:0<2}");
                Self::from_parts(int, &frac2, SHAPE)
            }
            Some(_) => Err(SHAPE),
        }
    }

    /// `int` = 1+ digits, `frac` = exactly 2 digits.
    fn from_parts(int: &str, frac: &str, shape: IdError) -> Result<Self, IdError> {
        let digits_only = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits_only(int) || !digits_only(frac) || frac.len() != 2 {
            return Err(shape);
        }
        let too_big = || IdError::OutOfRange {
            what: "amount",
            value: format!("{int}.{frac}"),
            min: "0.00".into(),
            max: "999999999.99".into(),
        };
        let mut cents: i64 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            cents = cents
                .checked_mul(10)
                .and_then(|c| c.checked_add(i64::from(b - b'0')))
                .ok_or_else(too_big)?;
        }
        if cents > MAX_CENTS {
            return Err(too_big());
        }
        Ok(Self(cents))
    }

    /// The XSD text form: euros, a dot, exactly two decimals (`12.34`,
    /// `0.05`, `150.00`).
    pub fn to_decimal_string(self) -> String {
        format!("{}.{:02}", self.0 / 100, self.0 % 100)
    }

    /// Sum, `None` if the result would exceed [`Amount::MAX`].
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0
            .checked_add(other.0)
            .and_then(|c| Self::from_cents(c).ok())
    }

    /// Difference, `None` if it would be negative.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0
            .checked_sub(other.0)
            .and_then(|c| Self::from_cents(c).ok())
    }

    /// Sum of all amounts (e.g. Σ transferAmount == paymentAmount, SPEC §5.2);
    /// `ZERO` for an empty iterator, `None` if any partial sum exceeds
    /// [`Amount::MAX`].
    pub fn checked_sum<I: IntoIterator<Item = Amount>>(iter: I) -> Option<Amount> {
        iter.into_iter().try_fold(Self::ZERO, Amount::checked_add)
    }
}

impl std::fmt::Display for Amount {
    /// Same as [`Amount::to_decimal_string`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.to_decimal_string())
    }
}

impl std::str::FromStr for Amount {
    type Err = IdError;
    /// Strict, same as [`Amount::parse_decimal`].
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse_decimal(s)
    }
}

impl TryFrom<i64> for Amount {
    type Error = IdError;
    /// Same as [`Amount::from_cents`].
    fn try_from(cents: i64) -> Result<Self, IdError> {
        Self::from_cents(cents)
    }
}

impl From<Amount> for i64 {
    fn from(a: Amount) -> i64 {
        a.0
    }
}

impl serde::Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Amount {
    /// An integer number of cents; range-checked; floats and strings rejected.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let cents = i64::deserialize(deserializer)?;
        Self::from_cents(cents).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Amount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .description(Some(
                "Amount in euro cents, 0..99999999999 (999999999.99 €).",
            ))
            .minimum(Some(0))
            .maximum(Some(MAX_CENTS))
            .examples([serde_json::Value::from(15000)])
            .into()
    }
}

impl utoipa::ToSchema for Amount {}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn strict_edges() {
        assert_eq!(Amount::parse_decimal("0.00").unwrap(), Amount::ZERO);
        assert_eq!(Amount::parse_decimal("999999999.99").unwrap(), Amount::MAX);
        assert_eq!(Amount::parse_decimal("150.00").unwrap().cents(), 15000);
        assert_eq!(Amount::parse_decimal("0012.34").unwrap().cents(), 1234);
        assert_eq!(
            Amount::parse_decimal("1000000000.00")
                .unwrap_err()
                .to_string(),
            "amount 1000000000.00 is out of range (0.00..=999999999.99)"
        );
        assert!(matches!(
            Amount::parse_decimal("99999999999999999999999.00"),
            Err(IdError::OutOfRange { .. })
        ));
        for s in [
            "0.1", "150", "150.0", "1,50", "-1.00", "+1.00", "1.234", " 1.00", "1.00 ", ".50",
            "1.", "", ".", "1.0a", "1..00", "1.-1",
        ] {
            assert!(
                matches!(Amount::parse_decimal(s), Err(IdError::Shape { .. })),
                "{s:?}"
            );
        }
        assert_eq!(
            Amount::parse_decimal("150").unwrap_err().to_string(),
            "amount must be digits, a dot and exactly two decimals (e.g. 150.00)"
        );
    }

    #[test]
    fn lenient() {
        assert_eq!(Amount::parse_decimal_lenient("150").unwrap().cents(), 15000);
        assert_eq!(
            Amount::parse_decimal_lenient("150.5").unwrap().cents(),
            15050
        );
        assert_eq!(Amount::parse_decimal_lenient(" 0.1 ").unwrap().cents(), 10);
        assert_eq!(
            Amount::parse_decimal_lenient("150.05").unwrap().cents(),
            15005
        );
        for s in ["1.234", "-1", "1,5", "", "1.", ".5", "1e3", "1 000"] {
            assert!(Amount::parse_decimal_lenient(s).is_err(), "{s:?}");
        }
        assert!(Amount::parse_decimal_lenient("1000000000").is_err());
    }

    #[test]
    fn formatting_and_arithmetic() {
        assert_eq!(Amount::from_cents(1234).unwrap().to_string(), "12.34");
        assert_eq!(Amount::from_cents(5).unwrap().to_decimal_string(), "0.05");
        assert_eq!(Amount::ZERO.to_string(), "0.00");
        assert_eq!(Amount::MAX.to_string(), "999999999.99");
        assert!(Amount::from_cents(-1).is_err());
        assert!(Amount::from_cents(MAX_CENTS + 1).is_err());
        let a = Amount::from_cents(700).unwrap();
        let b = Amount::from_cents(300).unwrap();
        assert_eq!(a.checked_add(b).unwrap().cents(), 1000);
        assert_eq!(a.checked_sub(b).unwrap().cents(), 400);
        assert_eq!(b.checked_sub(a), None);
        assert_eq!(
            Amount::MAX.checked_add(Amount::from_cents(1).unwrap()),
            None
        );
        assert_eq!(Amount::checked_sum([a, b, a]).unwrap().cents(), 1700);
        assert_eq!(Amount::checked_sum(std::iter::empty()), Some(Amount::ZERO));
        assert_eq!(Amount::checked_sum([Amount::MAX, Amount::MAX]), None);
    }

    #[test]
    fn serde_cents() {
        let a: Amount = serde_json::from_str("15000").unwrap();
        assert_eq!(a.to_string(), "150.00");
        assert_eq!(serde_json::to_string(&a).unwrap(), "15000");
        for bad in ["-1", "100000000000", "1.5", "\"150.00\""] {
            assert!(serde_json::from_str::<Amount>(bad).is_err(), "{bad}");
        }
    }
}
