//! Fiscal code of a natural person (codice fiscale alfanumerico).

use super::checksum::odd_even_check_letter;
use super::error::IdError;
use super::macros::{string_id_impls, string_schema};

/// 0-based positions that hold digits, or an omocodia letter replacing a digit.
const DIGIT_POSITIONS: [usize; 7] = [6, 7, 9, 10, 12, 13, 14];
/// Omocodia substitutes for the digits 0..=9 (in order).
const OMOCODIA: &[u8; 10] = b"LMNPQRSTUV";
/// Valid month letters (January..December).
const MONTHS: &[u8; 12] = b"ABCDEHLMPRST";

/// Fiscal code of a natural person: 16 upper-case ASCII characters.
///
/// Shape (DM 23/12/1976, Agenzia delle Entrate): 6 letters (surname, name),
/// 2 digits (year), month letter in `ABCDEHLMPRST`, 2 digits day (`01`–`31`
/// for men, `41`–`71` for women), 1 letter + 3 digits (birthplace code), check
/// letter. Any of the 7 digits (1-based positions 7, 8, 10, 11, 13, 14, 15) may
/// be replaced by the omocodia letters `L M N P Q R S T U V` (= 0..9); they
/// are decoded before the day range is checked and the code is kept as given.
///
/// Input is trimmed and upper-cased. The check letter is computed over the
/// first 15 characters with the official odd/even tables, `sum % 26` → `A..Z`.
///
/// * [`PersonFiscalCode::parse`] — strict: shape **and** check letter;
/// * [`PersonFiscalCode::parse_unchecked`] — shape only (month letter and day
///   range included); ask [`PersonFiscalCode::check_char_ok`] afterwards.
///
/// Serde: plain string, deserialized through `parse_unchecked`.
/// Error messages never contain the code itself (personal data).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersonFiscalCode(String);

impl PersonFiscalCode {
    /// Strict parse: shape (see the type docs) and check letter.
    ///
    /// # Errors
    /// [`IdError::Shape`], [`IdError::FiscalCodeMonth`], [`IdError::FiscalCodeDay`]
    /// or [`IdError::CheckMismatch`] ("personal fiscal code check character is
    /// X, expected S").
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let code = Self::parse_unchecked(s)?;
        let (found, expected) = code.found_expected();
        if found == expected {
            Ok(code)
        } else {
            Err(IdError::CheckMismatch {
                what: "personal fiscal code check character",
                found: found.to_string(),
                expected: expected.to_string(),
            })
        }
    }

    /// Lenient parse: shape, month letter and day range; the check letter is
    /// only required to be a letter, not verified.
    ///
    /// # Errors
    /// [`IdError::Shape`], [`IdError::FiscalCodeMonth`] or [`IdError::FiscalCodeDay`].
    pub fn parse_unchecked(s: &str) -> Result<Self, IdError> {
        const SHAPE: IdError = IdError::Shape {
            what: "personal fiscal code",
            expected:
                "16 characters: 6 letters, 2 digits, month letter, 2 digits, \
                       1 letter, 3 digits, check letter (digits may be omocodia letters LMNPQRSTUV)",
        };
        let upper = s.trim().to_ascii_uppercase();
        let bytes = upper.as_bytes();
        if bytes.len() != 16 {
            return Err(SHAPE);
        }
        let mut day: u8 = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if DIGIT_POSITIONS.contains(&i) {
                let d = decode_digit(b).ok_or(SHAPE)?;
                if i == 9 || i == 10 {
                    day = day * 10 + d;
                }
            } else if !b.is_ascii_uppercase() {
                return Err(SHAPE);
            } else if i == 8 && !MONTHS.contains(&b) {
                return Err(IdError::FiscalCodeMonth(char::from(b)));
            }
        }
        if !matches!(day, 1..=31 | 41..=71) {
            return Err(IdError::FiscalCodeDay(day));
        }
        Ok(Self(upper))
    }

    /// The 16 upper-case characters, omocodia letters kept as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the 16th character equals the check letter computed over the
    /// first 15.
    pub fn check_char_ok(&self) -> bool {
        let (found, expected) = self.found_expected();
        found == expected
    }

    /// The check letter for the first 15 characters of a personal fiscal
    /// code (upper-case letters and digits; no shape check beyond that).
    ///
    /// # Errors
    /// [`IdError::Shape`] unless `first_fifteen` is 15 ASCII alphanumerics.
    pub fn compute_check_char(first_fifteen: &str) -> Result<char, IdError> {
        let upper = first_fifteen.to_ascii_uppercase();
        if upper.len() != 15 {
            return Err(IdError::Shape {
                what: "personal fiscal code without check character",
                expected: "15 letters or digits",
            });
        }
        odd_even_check_letter(upper.as_bytes()).ok_or(IdError::Shape {
            what: "personal fiscal code without check character",
            expected: "15 letters or digits",
        })
    }

    /// Whether the code belongs to a woman (day encoded as 41–71).
    pub fn is_female(&self) -> bool {
        let mut it = self.0.bytes().skip(9);
        let tens = it.next().and_then(decode_digit).unwrap_or(0);
        tens >= 4
    }

    /// The encoded birth data: (two-digit year, month 1..=12, day 1..=31), omocodia decoded.
    /// The century is not encoded in a fiscal code.
    pub fn birth(&self) -> (u8, u8, u8) {
        let b = self.0.as_bytes();
        let digit = |i: usize| b.get(i).copied().and_then(decode_digit).unwrap_or(0);
        let month = b
            .get(8)
            .and_then(|m| MONTHS.iter().position(|x| x == m))
            .map(|p| p as u8 + 1)
            .unwrap_or(0);
        let day = digit(9) * 10 + digit(10);
        (
            digit(6) * 10 + digit(7),
            month,
            if day > 40 { day - 40 } else { day },
        )
    }

    /// Whether any digit position holds an omocodia letter.
    pub fn is_omocode(&self) -> bool {
        self.0
            .bytes()
            .enumerate()
            .any(|(i, b)| DIGIT_POSITIONS.contains(&i) && !b.is_ascii_digit())
    }

    /// (found, expected) check letters; shape is guaranteed by construction.
    fn found_expected(&self) -> (char, char) {
        let bytes = self.0.as_bytes();
        let found = bytes.get(15).map_or('?', |&b| char::from(b));
        let expected = bytes
            .get(..15)
            .and_then(odd_even_check_letter)
            .unwrap_or('?');
        (found, expected)
    }
}

/// A digit or its omocodia letter → 0..=9.
fn decode_digit(b: u8) -> Option<u8> {
    if b.is_ascii_digit() {
        return Some(b - b'0');
    }
    OMOCODIA
        .iter()
        .position(|&o| o == b)
        .and_then(|p| u8::try_from(p).ok())
}

string_id_impls!(
    PersonFiscalCode,
    PersonFiscalCode::parse_unchecked,
    "a personal fiscal code (16 characters)"
);
string_schema!(
    PersonFiscalCode,
    "Italian personal fiscal code (codice fiscale): 16 characters, upper case.",
    Some(
        "^[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]$"
    ),
    16,
    16,
    "RSSMRA85T10A562S"
);

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn birth_data_is_decoded_with_omocodia() {
        let m = PersonFiscalCode::parse_unchecked("RSSMRA85T10A562S").unwrap();
        assert_eq!(m.birth(), (85, 12, 10));
        let f = PersonFiscalCode::parse_unchecked("BNCLRA85T52F205X").unwrap();
        assert_eq!(f.birth(), (85, 12, 12));
        let o = PersonFiscalCode::parse_unchecked("RSSMRAURTMLA562S").unwrap();
        assert_eq!(o.birth(), (85, 12, 10));
    }

    #[test]
    fn classic_example() {
        let c = PersonFiscalCode::parse("RSSMRA85T10A562S").unwrap();
        assert!(c.check_char_ok());
        assert!(!c.is_female());
        assert!(!c.is_omocode());
        // lowercase and whitespace are normalised
        let c2 = PersonFiscalCode::parse("  rssmra85t10a562s\n").unwrap();
        assert_eq!(c, c2);
        assert_eq!(c2.to_string(), "RSSMRA85T10A562S");
    }

    #[test]
    fn wrong_check_char() {
        let err = PersonFiscalCode::parse("RSSMRA85T10A562X").unwrap_err();
        assert_eq!(
            err.to_string(),
            "personal fiscal code check character is X, expected S"
        );
        let c = PersonFiscalCode::parse_unchecked("RSSMRA85T10A562X").unwrap();
        assert!(!c.check_char_ok());
    }

    #[test]
    fn omocodia() {
        // Replace the last digit of the birthplace code (2 -> N), then the day
        // digits (1 -> M, 0 -> L) and recompute the check letter.
        for base in ["RSSMRA85T10A56N", "RSSMRA85TMLA56N", "RSSMRAUQTMLAQSN"] {
            let cc = PersonFiscalCode::compute_check_char(base).unwrap();
            let full = format!("{base}{cc}");
            let c = PersonFiscalCode::parse(&full).unwrap();
            assert!(c.is_omocode(), "{full}");
            assert!(c.check_char_ok());
        }
        // "RSSMRA85T10A56NH" is a known omocode of RSSMRA85T10A562S
        assert_eq!(
            PersonFiscalCode::compute_check_char("RSSMRA85T10A56N").unwrap(),
            'H'
        );
        // An omocodia letter outside LMNPQRSTUV at a digit position is rejected.
        assert!(PersonFiscalCode::parse_unchecked("RSSMRA85T10A56WH").is_err());
    }

    #[test]
    fn female_days() {
        for (day, ok) in [
            ("41", true),
            ("71", true),
            ("50", true),
            ("40", false),
            ("72", false),
            ("00", false),
            ("31", true),
            ("32", false),
        ] {
            let base = format!("BNCLRA90A{day}H501");
            let cc = PersonFiscalCode::compute_check_char(&base).unwrap();
            let full = format!("{base}{cc}");
            let res = PersonFiscalCode::parse(&full);
            assert_eq!(res.is_ok(), ok, "{full}");
            if ok {
                assert_eq!(
                    res.unwrap().is_female(),
                    day.starts_with(['4', '5', '6', '7'])
                );
            } else {
                assert_eq!(
                    res.unwrap_err().to_string(),
                    format!(
                        "personal fiscal code day must be 01-31 (men) or 41-71 (women), got {day}"
                    )
                );
            }
        }
        // omocode day "QL" = 40 -> invalid, "QM" = 41 -> valid
        let base = "BNCLRA90AQMH501";
        let full = format!(
            "{base}{}",
            PersonFiscalCode::compute_check_char(base).unwrap()
        );
        assert!(PersonFiscalCode::parse(&full).unwrap().is_female());
        assert_eq!(
            PersonFiscalCode::parse_unchecked("BNCLRA90AQLH501X").unwrap_err(),
            IdError::FiscalCodeDay(40)
        );
    }

    #[test]
    fn month_letter() {
        assert_eq!(
            PersonFiscalCode::parse_unchecked("RSSMRA85F10A562S")
                .unwrap_err()
                .to_string(),
            "personal fiscal code month letter must be one of ABCDEHLMPRST, got 'F'"
        );
    }

    #[test]
    fn bad_shapes() {
        for s in [
            "",
            "RSSMRA85T10A562",
            "RSSMRA85T10A562SS",
            "RSSMR185T10A562S",
            "RSSMRA85T10A5623",
            "RSSMRA85T10A56 S",
            "RSSMRA85T10Ä562",
        ] {
            assert!(
                matches!(
                    PersonFiscalCode::parse_unchecked(s),
                    Err(IdError::Shape { .. })
                ),
                "{s:?}"
            );
        }
    }
}
