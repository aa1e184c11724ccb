//! Bank and treasury statements (`../shared/treasury/FORMATS.md`): the money that reached an
//! organization's account, read from ISO 20022 camt.053 / camt.054 (001.02 to 001.08, bare or
//! in the Italian CBI envelopes) and from the treasury's OPI "giornale di cassa" (SIOPE+,
//! 1.4 to 1.8, no version marker). Streamed, never a whole-document tree.
//!
//! Every incoming movement becomes a [`Credit`] with the texts where a pagoPA flow id may hide
//! (in the order the flow-id extractor should try them: [`crate::fdr::remittance`]); a
//! reversal of an earlier credit (camt `RvslInd`, OPI `STORNATO`) is a credit with
//! `reversal = true`; debits, pending entries and accounting-only states are counted as
//! skipped. A movement that cannot be read is a problem of the statement, never fatal.

mod camt;
mod opi;
mod walk;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// The format a statement came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    /// ISO 20022 camt.053 (account statement).
    Camt053,
    /// ISO 20022 camt.054 (debit/credit notification).
    Camt054,
    /// OPI "giornale di cassa".
    Opi,
}

/// Money received (or a reversal of money received earlier).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credit {
    /// The account credited: IBAN (camt) or `conto_evidenza` (OPI).
    pub account: String,
    /// The bank's reference of the movement: camt `AcctSvcrRef`, OPI `numero_bolletta_quietanza`
    /// (when present) — the key that makes importing the same statement twice harmless.
    pub bank_ref: Option<String>,
    /// Amount in cents (a magnitude; see `reversal`).
    pub amount_cents: i64,
    /// Booking date.
    pub booking_date: Option<NaiveDate>,
    /// Value date (OPI: `data_valuta_ente`, else `data_movimento`).
    pub value_date: Option<NaiveDate>,
    /// Texts that may carry the remittance information, most specific first.
    pub texts: Vec<String>,
    /// The SCT's EndToEndId (AT-41), unless a placeholder (`NOTPROVIDED`).
    pub end_to_end_id: Option<String>,
    /// The payer (on a pagoPA credit: "<PSP> Servizio pagoPA").
    pub payer: Option<String>,
    /// Reverses an earlier credit.
    pub reversal: bool,
    /// OPI: the provisional receipt number (`numero_documento` of the SOSPESO ENTRATA).
    pub provisional: Option<String>,
}

/// A statement's credits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    /// Format read.
    pub format: Format,
    /// Credits (and reversals) in document order.
    pub credits: Vec<Credit>,
    /// Movements that are not money received: debits, pending entries, accounting states.
    pub skipped: usize,
    /// Movements that could not be read (what and why), kept out of `credits`.
    pub problems: Vec<String>,
}

/// A file that is not a statement we read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// Not well-formed XML or not UTF-8.
    #[error("not a readable statement: {0}")]
    Unreadable(String),
    /// Well-formed, of another kind.
    #[error("not a camt.053/054 or OPI giornale di cassa: <{0}> ({1})")]
    Unknown(String, String),
}

/// Reads a statement, whichever of the supported formats it is.
///
/// # Errors
/// [`StatementError`] when the file is not one of them.
pub fn decode(input: &[u8]) -> Result<Statement, StatementError> {
    let text = std::str::from_utf8(input)
        .map_err(|_| StatementError::Unreadable("the file is not UTF-8 text".into()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (root, ns) = walk::root(text)?;
    match (root.as_str(), ns.as_str()) {
        ("flusso_giornale_di_cassa", _) => opi::decode(text),
        (_, ns) if ns.contains("camt.053") || ns.contains("CBIDlyStmtReqLogMsg") => {
            camt::decode(text, Format::Camt053)
        }
        (_, ns) if ns.contains("CBIBdyBkToCstmrStmtReq") || ns.contains("CBIBkToCstmrStmtReq") => {
            camt::decode(text, Format::Camt053)
        }
        (_, ns) if ns.contains("camt.054") => camt::decode(text, Format::Camt054),
        (r, ns) => Err(StatementError::Unknown(r.to_string(), ns.to_string())),
    }
}

/// Cents from a decimal text with up to five decimals (camt); digits beyond the cents must be
/// zeros (an amount that is not a whole number of cents is refused, never rounded silently).
pub(crate) fn cents_of(text: &str) -> Option<i64> {
    let t = text.trim();
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty()
        || frac.len() > 5
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let (cents, rest) = frac.split_at(frac.len().min(2));
    if rest.bytes().any(|b| b != b'0') {
        return None;
    }
    let padded = format!("{cents:0<2}");
    crate::fdr::cents_of(&format!("{int}.{padded}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdr::remittance;

    fn samples() -> Option<std::path::PathBuf> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/treasury/samples");
        if dir.is_dir() {
            Some(dir)
        } else {
            assert!(
                std::env::var_os("MPAY_REQUIRE_SHARED").is_none(),
                "../shared is required (MPAY_REQUIRE_SHARED)"
            );
            None
        }
    }

    fn flow_ids(s: &Statement) -> Vec<Option<String>> {
        s.credits
            .iter()
            .map(|c| {
                c.texts.iter().find_map(|t| {
                    remittance::parse(t)
                        .and_then(|r| r.flow_id(|id| id.len() >= 28).map(str::to_string))
                })
            })
            .collect()
    }

    #[test]
    fn amounts_up_to_five_decimals_only_in_whole_cents() {
        assert_eq!(cents_of("1234.56"), Some(123_456));
        assert_eq!(cents_of("10"), Some(1_000));
        assert_eq!(cents_of("10.5"), Some(1_050));
        assert_eq!(cents_of("10.50000"), Some(1_050));
        assert_eq!(cents_of("10.501"), None);
        assert_eq!(cents_of("-1.00"), None);
        assert_eq!(cents_of("1,00"), None);
    }

    #[test]
    fn camt053_credits_batches_and_reversals() {
        let Some(dir) = samples() else { return };
        let s =
            decode(&std::fs::read(dir.join("ours_camt053_001_02_pagopa.xml")).unwrap()).unwrap();
        assert_eq!(s.format, Format::Camt053);
        let amounts: Vec<(i64, bool)> = s
            .credits
            .iter()
            .map(|c| (c.amount_cents, c.reversal))
            .collect();
        // E1, E2, E3 split into its two transfers, E5 the reversal; E4 (a charge) skipped
        assert_eq!(
            amounts,
            vec![
                (123_456, false),
                (50_000, false),
                (1_000, false),
                (5_000, false),
                (25_000, true)
            ]
        );
        assert_eq!(s.skipped, 1);
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(s.credits[0].account, "IT60X0542811101000000123456");
        assert_eq!(s.credits[0].bank_ref.as_deref(), Some("0023000000000101"));
        assert_eq!(
            s.credits[0].end_to_end_id.as_deref(),
            Some("E2E-PSPX-20250304-0001")
        );
        assert_eq!(
            s.credits[3].end_to_end_id, None,
            "NOTPROVIDED is no reference"
        );
        let ids = flow_ids(&s);
        assert_eq!(ids[0].as_deref(), Some("2025-03-03PSPXITM1XXX-S0000000001"));
        assert_eq!(ids[1].as_deref(), Some("2025-03-03PSPYITM1XXX-S0000000002"));
        assert_eq!(ids[2].as_deref(), Some("2025-03-03PSPXITM1XXX-S0000000001"));
        assert_eq!(ids[3], None);
        assert_eq!(ids[4].as_deref(), Some("2025-02-27PSPZITM1XXX-S0000000009"));
    }

    #[test]
    fn opi_provisional_receipts_are_the_credits() {
        let Some(dir) = samples() else { return };
        let s = decode(&std::fs::read(dir.join("ours_opi_gdc_1_8_pagopa.xml")).unwrap()).unwrap();
        assert_eq!(s.format, Format::Opi);
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        let ids = flow_ids(&s);
        assert_eq!(ids[0].as_deref(), Some("2025-03-03PSPXITM1XXX-S0000000001"));
        assert_eq!(ids[1].as_deref(), Some("2025-03-03PSPYITM1XXX-S0000000002"));
        assert_eq!(ids[2].as_deref(), Some("2025-03-03PSPZITM1XXX-S0000000003"));
        assert_eq!(ids[3].as_deref(), Some("2025-03-03PSPXITM1XXX-S0000000001"));
        assert_eq!(ids[4], None, "an ordinary transfer names no flow");
        assert_eq!(s.credits[0].amount_cents, 123_456);
        assert_eq!(s.credits[0].provisional.as_deref(), Some("0001001"));
        assert!(s.skipped >= 1, "the MANDATO (USCITA) is not a credit");
        assert!(s.credits.iter().all(|c| c.account == "0000001"));
    }

    #[test]
    fn every_sample_of_the_pack_is_read() {
        let Some(dir) = samples() else { return };
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let s = decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let text = String::from_utf8_lossy(&bytes);
            let has_movements =
                text.contains("Ntry>") || text.contains("movimento_conto_evidenza>");
            assert!(
                !has_movements || !s.credits.is_empty() || s.skipped > 0,
                "{}: nothing read",
                path.display()
            );
        }
    }

    #[test]
    fn what_is_not_a_statement_is_an_error() {
        assert!(matches!(
            decode(b"<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:pain.001.001.03\"/>"),
            Err(StatementError::Unknown(..))
        ));
        assert!(matches!(
            decode(b"junk"),
            Err(StatementError::Unreadable(_))
        ));
        assert!(matches!(
            decode(b"<!DOCTYPE a><a/>"),
            Err(StatementError::Unreadable(_))
        ));
    }
}
