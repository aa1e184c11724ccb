//! Reporting flows (FdR, "flussi di rendicontazione", SPEC §9): what a PSP says it paid to an
//! organization in one bank transfer, read from every form a flow arrives in, never refused
//! for one bad row.
//!
//! - [`xml`]: FlussoRiversamento 1.0.4 / 1.0.5 (any prefix or the default namespace, tabs and
//!   CRLF, base64-wrapped as `nodoChiediFlussoRendicontazione` returned it, or the whole SOAP
//!   answer);
//! - [`rest`]: the FdR REST API for organizations (`fdr_organization.json`: the single-flow
//!   header and its payment pages), amounts read from the JSON text, never through a float;
//! - [`remittance`]: the flow id (or a legacy single-payment IUV) inside a bank credit's
//!   remittance text, tolerant of what treasury software does to it (SPEC §9.4).
//!
//! A [`Flow`] keeps every row as sent; what is odd about a row is a [`RowProblem`] on it and
//! what is odd about the flow is a [`FlowFlag`]: unknown outcome codes, duplicated rows
//! (kept, counted once), header count and total that disagree with the rows. Only a file that
//! is not a flow at all (not XML, no flow id, no receiver) is a [`FlowError`].

pub mod remittance;
pub mod rest;
pub mod xml;

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Outcome of one payment in a flow: `codiceEsitoSingoloPagamento` (XML) / `payStatus` (REST).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PayStatus {
    /// `0` / `EXECUTED`: paid.
    Executed,
    /// `3` / `REVOKED`: a payment revoked (1.0.4 only).
    Revoked,
    /// `4` / `STAND_IN`: paid in Stand-In.
    StandIn,
    /// `8` / `STAND_IN_NO_RPT`: paid in Stand-In without a receipt.
    StandInNoRpt,
    /// `9` / `NO_RPT`: money collected without a receipt (PSP-side exception).
    NoRpt,
    /// Anything else, kept as sent (flagged, never fatal).
    Unknown(String),
}

impl PayStatus {
    /// From the XML code (`0`, `3`, `4`, `8`, `9`).
    pub fn from_code(code: &str) -> Self {
        match code.trim() {
            "0" => Self::Executed,
            "3" => Self::Revoked,
            "4" => Self::StandIn,
            "8" => Self::StandInNoRpt,
            "9" => Self::NoRpt,
            other => Self::Unknown(other.to_string()),
        }
    }

    /// From the REST name (`EXECUTED`, `REVOKED`, `STAND_IN`, `STAND_IN_NO_RPT`, `NO_RPT`).
    pub fn from_rest(name: &str) -> Self {
        match name.trim() {
            "EXECUTED" => Self::Executed,
            "REVOKED" => Self::Revoked,
            "STAND_IN" => Self::StandIn,
            "STAND_IN_NO_RPT" => Self::StandInNoRpt,
            "NO_RPT" => Self::NoRpt,
            other => Self::Unknown(other.to_string()),
        }
    }

    /// The XML code (the text as sent for an unknown one).
    pub fn code(&self) -> &str {
        match self {
            Self::Executed => "0",
            Self::Revoked => "3",
            Self::StandIn => "4",
            Self::StandInNoRpt => "8",
            Self::NoRpt => "9",
            Self::Unknown(s) => s,
        }
    }

    /// Money was collected for this row (everything but a revocation and an unknown code).
    pub fn is_collected(&self) -> bool {
        matches!(
            self,
            Self::Executed | Self::StandIn | Self::StandInNoRpt | Self::NoRpt
        )
    }

    /// A receipt is expected to exist for this row (`0`, `4`); `8` and `9` say there is none.
    pub fn expects_receipt(&self) -> bool {
        matches!(self, Self::Executed | Self::StandIn)
    }

    /// Paid in Stand-In (`4`, `8`).
    pub fn is_stand_in(&self) -> bool {
        matches!(self, Self::StandIn | Self::StandInNoRpt)
    }
}

/// How the PSP (sender) is identified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SenderKind {
    /// `G` / `LEGAL_PERSON`: fiscal code.
    LegalPerson,
    /// `A` / `ABI_CODE`.
    AbiCode,
    /// `B` / `BIC_CODE`.
    BicCode,
    /// Anything else, as sent.
    Other(String),
}

impl SenderKind {
    /// From the XML letter or the REST name.
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "G" | "LEGAL_PERSON" => Self::LegalPerson,
            "A" | "ABI_CODE" => Self::AbiCode,
            "B" | "BIC_CODE" => Self::BicCode,
            other => Self::Other(other.to_string()),
        }
    }
}

/// The header of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowHeader {
    /// `identificativoFlusso` / `fdr`: an opaque key (its date prefix is not relied on).
    pub flow_id: String,
    /// REST revision; `None` for an XML file (which has none).
    pub revision: Option<u32>,
    /// `dataOraFlusso` / `fdrDate`, as sent.
    pub flow_date: String,
    /// `identificativoUnivocoRegolamento` / `regulation`: the credit's TRN or EndToEndId.
    pub regulation: String,
    /// `dataRegolamento` / `regulationDate`: the credit's execution date.
    pub regulation_date: Option<NaiveDate>,
    /// How the PSP is identified.
    pub sender_kind: SenderKind,
    /// The PSP's identifier (fiscal code, ABI or BIC).
    pub sender_id: String,
    /// The PSP's id on pagoPA (REST `pspId`), when known.
    pub psp_id: Option<String>,
    /// The PSP's name.
    pub sender_name: Option<String>,
    /// BIC of the paying bank.
    pub bic_pouring_bank: Option<String>,
    /// The receiving organization's fiscal code, as sent.
    pub receiver_id: String,
    /// Its name.
    pub receiver_name: Option<String>,
    /// `numeroTotalePagamenti` / `totPayments`, when readable.
    pub declared_count: Option<u64>,
    /// `importoTotalePagamenti` / `sumPayments` in cents, when readable.
    pub declared_total_cents: Option<i64>,
}

/// Something odd about one row; the row is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RowProblem {
    /// No IUV.
    MissingIuv,
    /// No IUR.
    MissingIur,
    /// The transfer index is not 1..=5 (text as sent).
    BadIndex(String),
    /// The amount is not an amount (text as sent).
    BadAmount(String),
    /// The date is not a date (text as sent).
    BadDate(String),
    /// An outcome code we do not know (text as sent).
    UnknownStatus(String),
    /// Same IUV, IUR and index as an earlier row (1-based row number): counted once.
    Duplicate {
        /// The row it repeats.
        first_row: usize,
    },
}

/// One payment (one transfer of a receipt) in a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowRow {
    /// 1-based position in the flow.
    pub number: usize,
    /// IUV of the notice.
    pub iuv: String,
    /// IUR: the receipt id (`receiptId`) it should be.
    pub iur: String,
    /// The receipt transfer's `idTransfer` (1..=5), when sent and valid.
    pub id_transfer: Option<u8>,
    /// Amount in cents, when readable.
    pub amount_cents: Option<i64>,
    /// Outcome.
    pub status: PayStatus,
    /// The payment's business day, when readable (a timestamp keeps its written date).
    pub date: Option<NaiveDate>,
    /// What is odd about it.
    pub problems: Vec<RowProblem>,
}

impl FlowRow {
    /// Counted in the flow's sums (not a repetition of an earlier row).
    pub fn counted(&self) -> bool {
        !self
            .problems
            .iter()
            .any(|p| matches!(p, RowProblem::Duplicate { .. }))
    }
}

/// What is odd about a flow as a whole; the flow is kept and reconciled anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowFlag {
    /// The header's count is not the number of rows listed.
    CountMismatch {
        /// Declared.
        declared: u64,
        /// Rows listed.
        rows: u64,
    },
    /// The header's total is not the sum of the rows listed.
    TotalMismatch {
        /// Declared, cents.
        declared_cents: i64,
        /// Sum of the rows listed, cents.
        rows_cents: i64,
    },
    /// The header's count or total is missing or unreadable.
    UnreadableTotals,
    /// Rows with a problem other than being a duplicate.
    BadRows(usize),
    /// Rows repeating an earlier one.
    DuplicateRows(usize),
    /// Rows with an outcome code we do not know.
    UnknownStatuses(usize),
    /// Rows paid in Stand-In.
    StandInRows(usize),
    /// Revoked rows.
    RevokedRows(usize),
    /// Rows of money collected without a receipt (code 8 or 9).
    NoReceiptRows(usize),
    /// No rows at all.
    Empty,
    /// The API listed it for an organization we asked about, but it is addressed to another
    /// (its `receiver`): kept for inspection, never reconciled against the organization's
    /// receipts, never in the way of the other flows.
    OtherReceiver {
        /// The receiver named by the flow.
        receiver: String,
    },
    /// Sent by a PSP (its pagoPA id) that no receipt we hold came from: kept and reconciled,
    /// to be looked at (set by reconciliation, not by parsing).
    UnknownPsp {
        /// The PSP's id as the flow names it.
        psp: String,
    },
}

/// A reporting flow: header, every row as sent, and what is odd about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Flow {
    /// Header.
    pub header: FlowHeader,
    /// Rows in order.
    pub rows: Vec<FlowRow>,
    /// Flags, computed by [`Flow::new`].
    pub flags: Vec<FlowFlag>,
}

impl Flow {
    /// Builds a flow: marks repeated rows (same IUV, IUR, index) and computes the flags.
    pub fn new(header: FlowHeader, mut rows: Vec<FlowRow>) -> Self {
        let mut seen: HashMap<(String, String, Option<u8>), usize> = HashMap::new();
        for row in &mut rows {
            let key = (row.iuv.clone(), row.iur.clone(), row.id_transfer);
            match seen.get(&key) {
                Some(first) => row
                    .problems
                    .push(RowProblem::Duplicate { first_row: *first }),
                None => {
                    seen.insert(key, row.number);
                }
            }
        }
        let mut flags = Vec::new();
        let listed = u64::try_from(rows.len()).unwrap_or(u64::MAX);
        let listed_cents: i64 = rows.iter().filter_map(|r| r.amount_cents).sum();
        match (header.declared_count, header.declared_total_cents) {
            (Some(count), Some(total)) => {
                if count != listed {
                    flags.push(FlowFlag::CountMismatch {
                        declared: count,
                        rows: listed,
                    });
                }
                if total != listed_cents {
                    flags.push(FlowFlag::TotalMismatch {
                        declared_cents: total,
                        rows_cents: listed_cents,
                    });
                }
            }
            _ => flags.push(FlowFlag::UnreadableTotals),
        }
        let count = |f: &dyn Fn(&FlowRow) -> bool| rows.iter().filter(|r| f(r)).count();
        let counters = [
            (
                count(&|r| {
                    r.problems
                        .iter()
                        .any(|p| !matches!(p, RowProblem::Duplicate { .. }))
                }),
                FlowFlag::BadRows as fn(usize) -> FlowFlag,
            ),
            (count(&|r| !r.counted()), FlowFlag::DuplicateRows),
            (
                count(&|r| matches!(r.status, PayStatus::Unknown(_))),
                FlowFlag::UnknownStatuses,
            ),
            (count(&|r| r.status.is_stand_in()), FlowFlag::StandInRows),
            (
                count(&|r| r.status == PayStatus::Revoked),
                FlowFlag::RevokedRows,
            ),
            (
                count(&|r| matches!(r.status, PayStatus::StandInNoRpt | PayStatus::NoRpt)),
                FlowFlag::NoReceiptRows,
            ),
        ];
        for (n, flag) in counters {
            if n > 0 {
                flags.push(flag(n));
            }
        }
        if rows.is_empty() {
            flags.push(FlowFlag::Empty);
        }
        Self {
            header,
            rows,
            flags,
        }
    }

    /// Sum of the counted rows' amounts (each repeated row once), cents.
    pub fn counted_total_cents(&self) -> i64 {
        self.rows
            .iter()
            .filter(|r| r.counted())
            .filter_map(|r| r.amount_cents)
            .sum()
    }
}

/// A file or answer that is not a reporting flow at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// Not well-formed XML / JSON, or not text.
    #[error("not a readable flow: {0}")]
    Unreadable(String),
    /// Well-formed, but its root is not a flow.
    #[error("not a FlussoRiversamento: the document is <{0}>")]
    NotAFlow(String),
    /// A field without which the flow cannot be attributed.
    #[error("the flow has no {0}")]
    Missing(&'static str),
}

/// A business day from a date or a timestamp, keeping the day as written (an offset or `Z`
/// never moves it).
pub(crate) fn business_day(text: &str) -> Option<NaiveDate> {
    let t = text.trim();
    let day = t.get(..10)?;
    NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()
}

/// An amount from its decimal text (`120`, `120.5`, `120.50`), cents.
pub(crate) fn cents_of(text: &str) -> Option<i64> {
    crate::Amount::parse_decimal_lenient(text)
        .ok()
        .map(crate::Amount::cents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(count: Option<u64>, total: Option<i64>) -> FlowHeader {
        FlowHeader {
            flow_id: "2026-07-0388888888888-S0000001".into(),
            revision: None,
            flow_date: String::new(),
            regulation: "TRN".into(),
            regulation_date: None,
            sender_kind: SenderKind::BicCode,
            sender_id: "PSPXITXXXXX".into(),
            psp_id: None,
            sender_name: None,
            bic_pouring_bank: None,
            receiver_id: "77777777777".into(),
            receiver_name: None,
            declared_count: count,
            declared_total_cents: total,
        }
    }

    fn row(n: usize, iuv: &str, iur: &str, cents: i64, status: PayStatus) -> FlowRow {
        FlowRow {
            number: n,
            iuv: iuv.into(),
            iur: iur.into(),
            id_transfer: Some(1),
            amount_cents: Some(cents),
            status,
            date: None,
            problems: Vec::new(),
        }
    }

    #[test]
    fn duplicates_are_kept_flagged_and_counted_once() {
        let f = Flow::new(
            header(Some(3), Some(300)),
            vec![
                row(1, "A", "R1", 100, PayStatus::Executed),
                row(2, "B", "R2", 100, PayStatus::Executed),
                row(3, "A", "R1", 100, PayStatus::Executed),
            ],
        );
        assert_eq!(f.rows.len(), 3);
        assert_eq!(
            f.rows[2].problems,
            vec![RowProblem::Duplicate { first_row: 1 }]
        );
        assert_eq!(f.counted_total_cents(), 200);
        assert_eq!(f.flags, vec![FlowFlag::DuplicateRows(1)]);
    }

    #[test]
    fn header_mismatches_and_odd_codes_are_flags() {
        let f = Flow::new(
            header(Some(5), Some(999)),
            vec![
                row(1, "A", "R1", 100, PayStatus::StandIn),
                row(2, "B", "R2", 50, PayStatus::from_code("7")),
                row(3, "C", "R3", 10, PayStatus::NoRpt),
            ],
        );
        assert!(f.flags.contains(&FlowFlag::CountMismatch {
            declared: 5,
            rows: 3
        }));
        assert!(f.flags.contains(&FlowFlag::TotalMismatch {
            declared_cents: 999,
            rows_cents: 160
        }));
        assert!(f.flags.contains(&FlowFlag::UnknownStatuses(1)));
        assert!(f.flags.contains(&FlowFlag::StandInRows(1)));
        assert!(f.flags.contains(&FlowFlag::NoReceiptRows(1)));
        assert_eq!(
            f.rows[1].status,
            PayStatus::Unknown("7".into()),
            "unknown code kept as sent"
        );
    }

    #[test]
    fn codes_and_names_agree() {
        for (code, name) in [
            ("0", "EXECUTED"),
            ("3", "REVOKED"),
            ("4", "STAND_IN"),
            ("8", "STAND_IN_NO_RPT"),
            ("9", "NO_RPT"),
        ] {
            assert_eq!(PayStatus::from_code(code), PayStatus::from_rest(name));
            assert_eq!(PayStatus::from_code(code).code(), code);
        }
        assert!(PayStatus::StandInNoRpt.is_collected());
        assert!(!PayStatus::StandInNoRpt.expects_receipt());
        assert!(!PayStatus::Revoked.is_collected());
    }

    #[test]
    fn business_days_keep_the_written_date() {
        let d = NaiveDate::from_ymd_opt(2026, 7, 2);
        assert_eq!(business_day("2026-07-02"), d);
        assert_eq!(business_day("2026-07-02T23:30:00Z"), d);
        assert_eq!(business_day("2026-07-02T00:10:00+02:00"), d);
        assert_eq!(business_day("02/07/2026"), None);
        assert_eq!(cents_of("120.0"), Some(12_000));
        assert_eq!(cents_of("0.29"), Some(29));
        assert_eq!(cents_of("1.234"), None);
        assert_eq!(cents_of("1e2"), None);
    }
}
