//! The single error type of the identifier module.

/// Why a string (or number) could not be turned into one of the identifier
/// types of [`crate::ids`].
///
/// Every message is plain English naming the identifier and the problem, e.g.
/// "organization fiscal code must be 11 digits",
/// "IBAN check digits do not match (mod 97)",
/// "notice number check digit is 42, expected 71".
/// The messages contain the offending value only when it is a code fragment
/// (a check digit, a month letter), never a whole personal identifier, so they
/// are safe to log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum IdError {
    /// The value does not have the required shape (length, character classes).
    #[error("{what} must be {expected}")]
    Shape {
        /// The identifier, e.g. "notice number".
        what: &'static str,
        /// The required shape, e.g. "18 digits".
        expected: &'static str,
    },
    /// A check digit / check character does not match the one computed from the
    /// rest of the value.
    #[error("{what} is {found}, expected {expected}")]
    CheckMismatch {
        /// What is being compared, e.g. "notice number check digit".
        what: &'static str,
        /// The value found in the input.
        found: String,
        /// The value computed from the rest of the input.
        expected: String,
    },
    /// An ISO 7064 mod 97-10 checksum (IBAN, RF creditor reference) does not hold.
    #[error("{what} check digits do not match (mod 97)")]
    Mod97 {
        /// The identifier, e.g. "IBAN".
        what: &'static str,
    },
    /// The month letter (9th character) of a personal fiscal code is not one of
    /// `ABCDEHLMPRST`.
    #[error("personal fiscal code month letter must be one of ABCDEHLMPRST, got '{0}'")]
    FiscalCodeMonth(char),
    /// The day (characters 10-11, after omocodia decoding) of a personal fiscal
    /// code is not in 01-31 (men) or 41-71 (women).
    #[error("personal fiscal code day must be 01-31 (men) or 41-71 (women), got {0:02}")]
    FiscalCodeDay(u8),
    /// A number is outside its allowed range.
    #[error("{what} {value} is out of range ({min}..={max})")]
    OutOfRange {
        /// What the number is, e.g. "amount in cents".
        what: &'static str,
        /// The rejected value as text.
        value: String,
        /// Smallest allowed value as text.
        min: String,
        /// Largest allowed value as text.
        max: String,
    },
    /// An IUV cannot be turned into a notice number under the given layout.
    #[error("IUV does not fit notice layout ({layout}): {reason}")]
    LayoutMismatch {
        /// The layout, as displayed by `NoticeLayout`'s `Display`.
        layout: String,
        /// Why it does not fit.
        reason: &'static str,
    },
}
