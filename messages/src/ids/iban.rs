//! International Bank Account Number with the Italian CIN check.

use super::checksum::{mod97, odd_even_check_letter};
use super::error::IdError;
use super::macros::{string_id_impls, string_schema};

/// An IBAN, normalised: whitespace removed, letters upper-cased.
///
/// Strict shape (ISO 13616, checked by [`Iban::parse`]): 15–34 ASCII
/// alphanumerics = 2-letter country code, 2 check digits, BBAN; the whole
/// string satisfies ISO 7064 mod 97-10 (rearranged value `mod 97 == 1`).
/// For `IT` and `SM` (same BBAN): exactly 27 characters,
/// `CIN letter + ABI 5 digits + CAB 5 digits + account 12 alphanumerics`, and
/// the CIN must match the Italian algorithm over ABI+CAB+account (odd/even
/// tables of the fiscal-code check character, `sum % 26` → `A..Z`).
///
/// SOAP `stIBAN` is just a string of 1..35 characters (SPEC §4.1; the Node
/// checks IBANs semantically), so [`Iban::parse_unchecked`] accepts 1–35
/// alphanumerics: use it for IBANs received from pagoPA or Ente files and ask
/// [`Iban::is_valid`] if needed. Serde: plain string, deserialized through
/// `parse_unchecked`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Iban(String);

fn normalise(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

impl Iban {
    /// Strict parse (after normalisation): ISO 13616 shape, mod 97, and for
    /// `IT`/`SM` the 27-character layout and the CIN letter.
    ///
    /// # Errors
    /// [`IdError::Shape`], [`IdError::Mod97`] ("IBAN check digits do not
    /// match (mod 97)") or [`IdError::CheckMismatch`] ("IBAN CIN is A,
    /// expected X").
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let iban = Self(normalise(s));
        iban.validate()?;
        Ok(iban)
    }

    /// Lenient parse (after normalisation): 1–35 ASCII letters or digits.
    ///
    /// # Errors
    /// [`IdError::Shape`] otherwise.
    pub fn parse_unchecked(s: &str) -> Result<Self, IdError> {
        let n = normalise(s);
        if (1..=35).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(Self(n))
        } else {
            Err(IdError::Shape {
                what: "IBAN",
                expected: "1 to 35 letters and digits",
            })
        }
    }

    /// The normalised IBAN (no spaces, upper case).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first two characters: the ISO 3166 country code for any IBAN that
    /// passes [`Iban::parse`] (for a value from `parse_unchecked` it may be
    /// shorter or not letters).
    pub fn country(&self) -> &str {
        self.0.get(..2).unwrap_or(&self.0)
    }

    /// Everything after the country code and check digits (empty when the
    /// value is shorter than 5 characters).
    pub fn bban(&self) -> &str {
        self.0.get(4..).unwrap_or("")
    }

    /// Whether this IBAN would pass the strict [`Iban::parse`].
    pub fn is_valid(&self) -> bool {
        self.validate().is_ok()
    }

    /// The Italian CIN letter for `ABI (5 digits) + CAB (5 digits) + account
    /// (12 letters or digits)` = 22 characters (case-insensitive).
    ///
    /// # Errors
    /// [`IdError::Shape`] unless the input has that shape.
    pub fn compute_italian_cin(abi_cab_account: &str) -> Result<char, IdError> {
        const SHAPE: IdError = IdError::Shape {
            what: "ABI + CAB + account",
            expected: "22 characters: 5 digits, 5 digits, 12 letters or digits",
        };
        let up = abi_cab_account.to_ascii_uppercase();
        let ok_shape = up.len() == 22
            && up.bytes().enumerate().all(|(i, b)| {
                if i < 10 {
                    b.is_ascii_digit()
                } else {
                    b.is_ascii_alphanumeric()
                }
            });
        if !ok_shape {
            return Err(SHAPE);
        }
        odd_even_check_letter(up.as_bytes()).ok_or(SHAPE)
    }

    /// ISO 13616 check digits (`98 - (BBAN + country + "00") mod 97`) for a
    /// 2-letter country code and a BBAN of ASCII alphanumerics.
    ///
    /// # Errors
    /// [`IdError::Shape`] on a malformed country code or BBAN.
    pub fn compute_check_digits(country: &str, bban: &str) -> Result<u8, IdError> {
        let country = country.to_ascii_uppercase();
        let bban = bban.to_ascii_uppercase();
        if country.len() != 2
            || !country.bytes().all(|b| b.is_ascii_uppercase())
            || bban.is_empty()
            || !bban.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(IdError::Shape {
                what: "IBAN country code and BBAN",
                expected: "2 letters and 1 or more letters or digits",
            });
        }
        let r = mod97(bban.bytes().chain(country.bytes()).chain(*b"00"))
            .ok_or(IdError::Mod97 { what: "IBAN" })?;
        u8::try_from(98 - r).map_err(|_| IdError::Mod97 { what: "IBAN" })
    }

    fn validate(&self) -> Result<(), IdError> {
        let s = self.0.as_str();
        let b = s.as_bytes();
        let shape_ok = (15..=34).contains(&b.len())
            && b.iter().all(u8::is_ascii_alphanumeric)
            && b.iter().take(2).all(u8::is_ascii_uppercase)
            && b.iter().skip(2).take(2).all(u8::is_ascii_digit);
        if !shape_ok {
            return Err(IdError::Shape {
                what: "IBAN",
                expected:
                    "15 to 34 letters and digits: 2-letter country code, 2 check digits, account",
            });
        }
        let italian = matches!(self.country(), "IT" | "SM");
        let italian_parts = if italian {
            const IT_SHAPE: IdError = IdError::Shape {
                what: "Italian IBAN",
                expected: "27 characters: IT or SM, 2 check digits, CIN letter, \
                           5-digit ABI, 5-digit CAB, 12-character account",
            };
            let cin = b.get(4).copied().filter(u8::is_ascii_uppercase);
            let (Some(cin), true) = (cin, b.len() == 27) else {
                return Err(IT_SHAPE);
            };
            let expected =
                Self::compute_italian_cin(s.get(5..).unwrap_or("")).map_err(|_| IT_SHAPE)?;
            Some((char::from(cin), expected))
        } else {
            None
        };
        let rearranged = b.iter().skip(4).chain(b.iter().take(4)).copied();
        if mod97(rearranged) != Some(1) {
            return Err(IdError::Mod97 { what: "IBAN" });
        }
        if let Some((found, expected)) = italian_parts {
            if found != expected {
                return Err(IdError::CheckMismatch {
                    what: "IBAN CIN",
                    found: found.to_string(),
                    expected: expected.to_string(),
                });
            }
        }
        Ok(())
    }
}

string_id_impls!(
    Iban,
    Iban::parse_unchecked,
    "an IBAN (1 to 35 letters and digits)"
);
string_schema!(
    Iban,
    "IBAN, normalised (no spaces, upper case); Italian IBANs have 27 characters.",
    Some("^[A-Z0-9]{1,35}$"),
    1,
    35,
    "IT60X0542811101000000123456"
);

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn well_known_example() {
        let i = Iban::parse("it60 x054 2811 1010 0000 0123 456").unwrap();
        assert_eq!(i.as_str(), "IT60X0542811101000000123456");
        assert_eq!(i.country(), "IT");
        assert_eq!(i.bban(), "X0542811101000000123456");
        assert_eq!(
            Iban::compute_italian_cin("0542811101000000123456").unwrap(),
            'X'
        );
        assert_eq!(
            Iban::compute_check_digits("IT", "X0542811101000000123456").unwrap(),
            60
        );
        // foreign IBANs: only mod 97
        for s in [
            "DE89370400440532013000",
            "GB82WEST12345698765432",
            "NO9386011117947",
            "FR1420041010050500013M02606",
        ] {
            assert!(Iban::parse(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn italian_cin_on_computed_iban() {
        // ABI 03069 (example), CAB 09606, account 100000012345 -> compute CIN and check digits
        let body = "0306909606100000012345";
        let cin = Iban::compute_italian_cin(body).unwrap();
        let bban = format!("{cin}{body}");
        let cd = Iban::compute_check_digits("IT", &bban).unwrap();
        let s = format!("IT{cd:02}{bban}");
        let iban = Iban::parse(&s).unwrap();
        assert!(iban.is_valid());
        // Same BBAN with a wrong CIN but correct mod 97: CIN error.
        let wrong_cin = if cin == 'A' { 'B' } else { 'A' };
        let bban2 = format!("{wrong_cin}{body}");
        let cd2 = Iban::compute_check_digits("IT", &bban2).unwrap();
        let err = Iban::parse(&format!("IT{cd2:02}{bban2}")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("IBAN CIN is {wrong_cin}, expected {cin}")
        );
        // San Marino uses the same BBAN
        let cd_sm = Iban::compute_check_digits("SM", &bban).unwrap();
        assert!(Iban::parse(&format!("SM{cd_sm:02}{bban}")).is_ok());
    }

    #[test]
    fn errors() {
        assert_eq!(
            Iban::parse("IT61X0542811101000000123456")
                .unwrap_err()
                .to_string(),
            "IBAN check digits do not match (mod 97)"
        );
        assert!(matches!(
            Iban::parse("IT60X054281110100000012345"),
            Err(IdError::Shape { .. })
        ));
        assert!(matches!(
            Iban::parse("DE89 3704 0044 0532 0130 00 é"),
            Err(IdError::Shape { .. })
        ));
        assert!(matches!(Iban::parse(""), Err(IdError::Shape { .. })));
        // Italian shape: CIN must be a letter
        let body = "10542811101000000123456";
        let cd = Iban::compute_check_digits("IT", body).unwrap();
        assert!(matches!(
            Iban::parse(&format!("IT{cd:02}{body}")),
            Err(IdError::Shape {
                what: "Italian IBAN",
                ..
            })
        ));
    }

    #[test]
    fn unchecked() {
        let i = Iban::parse_unchecked("IT61X0542811101000000123456").unwrap();
        assert!(!i.is_valid());
        let short = Iban::parse_unchecked("1").unwrap();
        assert_eq!(short.country(), "1");
        assert_eq!(short.bban(), "");
        assert!(Iban::parse_unchecked(&"A".repeat(36)).is_err());
        assert!(Iban::parse_unchecked("IT60-X054").is_err());
        let j: Iban = serde_json::from_str("\"it61 x0542811101000000123456\"").unwrap();
        assert_eq!(
            serde_json::to_string(&j).unwrap(),
            "\"IT61X0542811101000000123456\""
        );
    }
}
