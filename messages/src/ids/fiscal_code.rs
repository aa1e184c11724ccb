//! Debtor / payer identifier: a person, an organization, or `ANONIMO`.

use super::error::IdError;
use super::macros::{string_id_impls, string_schema};
use super::org_fiscal_code::OrgFiscalCode;
use super::person_fiscal_code::PersonFiscalCode;

/// The pagoPA placeholder for an unknown debtor (SPEC §5.2, GPD uses `ANONIMO`).
pub const ANONYMOUS_FISCAL_CODE: &str = "ANONIMO";

/// Fiscal code of a debtor or payer (`ctSubject.uniqueIdentifier` value,
/// SPEC §5.2): a natural person (16 characters), an organization or a
/// person's temporary code (11 digits), or the placeholder `ANONIMO`.
///
/// Input is trimmed; `ANONIMO` is accepted in any letter case and always
/// printed `ANONIMO`. [`FiscalCode::parse`] is strict (check digit / check
/// letter verified), [`FiscalCode::parse_unchecked`] checks the shape only.
/// Serde: plain string, deserialized through `parse_unchecked`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FiscalCode {
    /// A natural person's 16-character code.
    Person(PersonFiscalCode),
    /// An 11-digit code (organization, or a person's temporary code).
    Organization(OrgFiscalCode),
    /// Unknown debtor, the pagoPA value `ANONIMO`.
    Anonymous,
}

const SHAPE: IdError = IdError::Shape {
    what: "fiscal code",
    expected: "16 characters (person), 11 digits (organization) or ANONIMO",
};

impl FiscalCode {
    /// Strict parse: dispatches on the trimmed input (`ANONIMO` in any case,
    /// 11 digits → [`OrgFiscalCode::parse`], 16 characters →
    /// [`PersonFiscalCode::parse`]).
    ///
    /// # Errors
    /// [`IdError::Shape`] when the input is none of the three forms, otherwise
    /// the error of the selected strict parser.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        Self::dispatch(s, OrgFiscalCode::parse, PersonFiscalCode::parse)
    }

    /// Lenient parse: same dispatch with the `parse_unchecked` constructors.
    ///
    /// # Errors
    /// [`IdError::Shape`] (or a month / day error for 16-character codes).
    pub fn parse_unchecked(s: &str) -> Result<Self, IdError> {
        Self::dispatch(
            s,
            OrgFiscalCode::parse_unchecked,
            PersonFiscalCode::parse_unchecked,
        )
    }

    fn dispatch(
        s: &str,
        org: fn(&str) -> Result<OrgFiscalCode, IdError>,
        person: fn(&str) -> Result<PersonFiscalCode, IdError>,
    ) -> Result<Self, IdError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case(ANONYMOUS_FISCAL_CODE) {
            Ok(Self::Anonymous)
        } else if s.len() == 11 && s.bytes().all(|b| b.is_ascii_digit()) {
            org(s).map(Self::Organization)
        } else if s.len() == 16 {
            person(s).map(Self::Person)
        } else {
            Err(SHAPE)
        }
    }

    /// The canonical string: the code, or `ANONIMO`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Person(p) => p.as_str(),
            Self::Organization(o) => o.as_str(),
            Self::Anonymous => ANONYMOUS_FISCAL_CODE,
        }
    }

    /// Whether the check digit / check letter holds (`true` for `ANONIMO`).
    pub fn check_ok(&self) -> bool {
        match self {
            Self::Person(p) => p.check_char_ok(),
            Self::Organization(o) => o.check_digit_ok(),
            Self::Anonymous => true,
        }
    }

    /// What the strict parse would object to (a wrong check character or check digit), for a
    /// code accepted leniently: pagoPA takes the debtor's code as the organization sends it
    /// (DESIGN §3), but the organization is told. `None` when the code is correct.
    pub fn check_problem(&self) -> Option<IdError> {
        if self.check_ok() {
            None
        } else {
            Self::parse(self.as_str()).err()
        }
    }

    /// Whether this is the `ANONIMO` placeholder.
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Self::Anonymous)
    }
}

impl From<PersonFiscalCode> for FiscalCode {
    fn from(p: PersonFiscalCode) -> Self {
        Self::Person(p)
    }
}

impl From<OrgFiscalCode> for FiscalCode {
    fn from(o: OrgFiscalCode) -> Self {
        Self::Organization(o)
    }
}

string_id_impls!(
    FiscalCode,
    FiscalCode::parse_unchecked,
    "a fiscal code (16 characters, 11 digits or ANONIMO)"
);
string_schema!(
    FiscalCode,
    "Debtor fiscal code: 16-character personal code, 11-digit code, or ANONIMO.",
    Some("^([A-Z0-9]{16}|[0-9]{11}|ANONIMO)$"),
    7,
    16,
    "RSSMRA85T10A562S"
);

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn dispatch() {
        assert_eq!(FiscalCode::parse("anonimo").unwrap(), FiscalCode::Anonymous);
        assert_eq!(
            FiscalCode::parse(" Anonimo ").unwrap().to_string(),
            "ANONIMO"
        );
        assert!(matches!(
            FiscalCode::parse("06363391001").unwrap(),
            FiscalCode::Organization(_)
        ));
        assert!(matches!(
            FiscalCode::parse("rssmra85t10a562s").unwrap(),
            FiscalCode::Person(_)
        ));
        assert_eq!(
            FiscalCode::parse("ANONYMOUS").unwrap_err().to_string(),
            "fiscal code must be 16 characters (person), 11 digits (organization) or ANONIMO"
        );
        assert!(FiscalCode::parse("06363391002").is_err());
        let lenient = FiscalCode::parse_unchecked("06363391002").unwrap();
        assert!(!lenient.check_ok());
        assert!(FiscalCode::parse("RSSMRA85T10A562X").is_err());
        assert!(FiscalCode::parse_unchecked("RSSMRA85T10A562X").is_ok());
    }

    #[test]
    fn check_problem_names_the_expected_character() {
        assert!(FiscalCode::parse_unchecked("RSSMRA85T10A562S")
            .unwrap()
            .check_problem()
            .is_none());
        assert!(FiscalCode::Anonymous.check_problem().is_none());
        let p = FiscalCode::parse_unchecked("RSSMRA85T10A562X")
            .unwrap()
            .check_problem()
            .unwrap();
        assert_eq!(
            p.to_string(),
            "personal fiscal code check character is X, expected S"
        );
        assert!(FiscalCode::parse_unchecked("06363391002")
            .unwrap()
            .check_problem()
            .is_some());
    }

    #[test]
    fn serde() {
        let v: Vec<FiscalCode> =
            serde_json::from_str(r#"["anonimo","06363391002","RSSMRA85T10A562S"]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"["ANONIMO","06363391002","RSSMRA85T10A562S"]"#
        );
        assert!(serde_json::from_str::<FiscalCode>("\"X\"").is_err());
    }
}
