//! Parsed identifiers and amounts of the pagoPA domain ("parse, don't
//! validate" newtypes with private fields).
//!
//! Project rule — "judge what we make, match what we receive": identifiers we
//! generate and values typed by a person go through the strict `parse`
//! (shape **and** check digit); identifiers received from pagoPA, Ente files
//! or configuration go through `parse_unchecked` (shape only), and the check
//! digit can be queried afterwards (`check_digit_ok`, `check_char_ok`,
//! `is_valid`, `check`) to log anomalies. Serde deserialization always uses the
//! lenient constructor; `FromStr` uses the strict one.
//!
//! Sources: SACI 3.x and SPEC §4.1 (simple types), §7.1 (notice number, IUV,
//! mod 93 check digit), §7.2 (RF creditor reference); Italian fiscal-code and
//! VAT algorithms (DM 23/12/1976); ISO 13616 (IBAN) and the Italian CIN.

mod amount;
mod aux_digit;
mod checksum;
mod error;
mod fiscal_code;
pub mod gpd;
mod iban;
mod iuv;
mod macros;
mod notice_number;
mod org_fiscal_code;
mod person_fiscal_code;

#[cfg(test)]
mod tests;

pub use amount::Amount;
pub use aux_digit::AuxDigit;
pub use error::IdError;
pub use fiscal_code::{FiscalCode, ANONYMOUS_FISCAL_CODE};
pub use iban::Iban;
pub use iuv::Iuv;
pub use notice_number::{check_digit, NoticeCheck, NoticeLayout, NoticeNumber};
pub use org_fiscal_code::OrgFiscalCode;
pub use person_fiscal_code::PersonFiscalCode;
