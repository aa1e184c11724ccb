//! Reconciliation rules (SPEC §9.5, layers 2 and 3), pure: which receipt transfer a flow row
//! reports, how far a flow is settled by bank credits, and the one label every payment, row
//! and credit ends with (the MyPivot vocabulary PU uses).
//!
//! Matching a row: the key is (receiving organization, IUV, IUR = receiptId, idTransfer); when
//! the IUR differs (PSPs send their own) the fallback is (IUV, idTransfer, amount), with a
//! warning. A receipt transfer is reported by at most one row: a repeated row never counts
//! twice.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::fdr::FlowRow;

/// A stored receipt's transfer, as reconciliation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidTransfer {
    /// The transfer's beneficiary (the organization whose flow reports it).
    pub organization: String,
    /// IUV of the notice.
    pub iuv: String,
    /// The receipt's id (the IUR the flow should carry).
    pub receipt_id: String,
    /// `idTransfer` (1..=5).
    pub id_transfer: u8,
    /// Amount, cents.
    pub amount_cents: i64,
    /// A digital stamp: its money is never reported in a flow.
    pub stamp: bool,
}

/// Something to look at in a match that was made anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchWarning {
    /// The row's IUR is not the receipt's id (matched by IUV, index and amount).
    IurDiffers {
        /// As in the flow.
        iur: String,
        /// As in the receipt.
        receipt_id: String,
    },
    /// Matched by key, but the amounts differ.
    AmountDiffers {
        /// In the flow, cents.
        row_cents: i64,
        /// In the receipt, cents.
        receipt_cents: i64,
    },
}

/// What a flow row is, after matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMatch {
    /// The row's number in the flow.
    pub row: usize,
    /// Index (in the `receipts` slice given) of the receipt transfer it reports.
    pub receipt: Option<usize>,
    /// What to look at.
    pub warnings: Vec<MatchWarning>,
    /// The row repeats an earlier one (nothing counted).
    pub duplicate: bool,
}

/// Matches a flow's rows to receipt transfers of its receiving organization.
pub fn match_rows(receiver: &str, rows: &[FlowRow], receipts: &[PaidTransfer]) -> Vec<RowMatch> {
    let mut by_key: HashMap<(&str, &str, u8), usize> = HashMap::new();
    let mut by_iuv: HashMap<(&str, u8), Vec<usize>> = HashMap::new();
    for (i, r) in receipts.iter().enumerate() {
        if r.organization != receiver {
            continue;
        }
        by_key.insert((r.iuv.as_str(), r.receipt_id.as_str(), r.id_transfer), i);
        by_iuv
            .entry((r.iuv.as_str(), r.id_transfer))
            .or_default()
            .push(i);
    }
    let mut taken = vec![false; receipts.len()];
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut m = RowMatch {
            row: row.number,
            receipt: None,
            warnings: Vec::new(),
            duplicate: !row.counted(),
        };
        if m.duplicate || !row.status.is_collected() {
            out.push(m);
            continue;
        }
        // a row without an index reports the notice's only (first) transfer
        let index = row.id_transfer.unwrap_or(1);
        let exact = by_key
            .get(&(row.iuv.as_str(), row.iur.as_str(), index))
            .copied()
            .filter(|i| !taken.get(*i).copied().unwrap_or(true));
        let chosen = exact.or_else(|| {
            by_iuv.get(&(row.iuv.as_str(), index)).and_then(|cands| {
                cands.iter().copied().find(|i| {
                    !taken.get(*i).copied().unwrap_or(true)
                        && receipts.get(*i).map(|r| Some(r.amount_cents)) == Some(row.amount_cents)
                })
            })
        });
        if let Some(i) = chosen {
            if let Some(t) = taken.get_mut(i) {
                *t = true;
            }
            if let Some(r) = receipts.get(i) {
                if exact.is_none() {
                    m.warnings.push(MatchWarning::IurDiffers {
                        iur: row.iur.clone(),
                        receipt_id: r.receipt_id.clone(),
                    });
                }
                if row.amount_cents != Some(r.amount_cents) {
                    m.warnings.push(MatchWarning::AmountDiffers {
                        row_cents: row.amount_cents.unwrap_or(0),
                        receipt_cents: r.amount_cents,
                    });
                }
            }
            m.receipt = Some(i);
        }
        out.push(m);
    }
    out
}

/// How far a flow is settled by the bank credits attributed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Settlement {
    /// No credit yet.
    Awaiting,
    /// Credits add up to less than the flow: `residual` cents still expected.
    Partial {
        /// Cents still to be credited.
        residual: i64,
    },
    /// Credits add up to the flow's total.
    Settled,
    /// Credits add up to more than the flow's total.
    Over {
        /// Cents credited beyond the total.
        excess: i64,
    },
}

/// The settlement of a flow worth `total_cents` by credits worth `credits` (one flow may be
/// paid by an ordinary credit plus integrative ones, `TXT/1..9`, or `LGPE-INTEGRAZIONE`).
pub fn settlement(total_cents: i64, credits: &[i64]) -> Settlement {
    if credits.is_empty() {
        return Settlement::Awaiting;
    }
    let credited: i64 = credits.iter().sum();
    match credited.cmp(&total_cents) {
        std::cmp::Ordering::Less => Settlement::Partial {
            residual: total_cents - credited,
        },
        std::cmp::Ordering::Equal => Settlement::Settled,
        std::cmp::Ordering::Greater => Settlement::Over {
            excess: credited - total_cents,
        },
    }
}

/// The one label of a payment, a flow row or a credit (MyPivot / PU vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Label {
    /// Receipt, flow and money all match.
    RtIufTes,
    /// Receipt reported in a flow; the money is not (fully) there yet.
    RtIuf,
    /// Paid (receipt), not yet reported.
    RtNoIuf,
    /// Reported, no receipt.
    IuvNoRt,
    /// The flow and the money credited for it disagree.
    IufTesDivImp,
    /// A credit that explains nothing we know.
    TesNoIufOrIuv,
    /// A stand-alone digital stamp: never reported in a flow, by design.
    RtNoIufBollo,
}

impl Label {
    /// The label's code.
    pub fn code(self) -> &'static str {
        match self {
            Self::RtIufTes => "RT_IUF_TES",
            Self::RtIuf => "RT_IUF",
            Self::RtNoIuf => "RT_NO_IUF",
            Self::IuvNoRt => "IUV_NO_RT",
            Self::IufTesDivImp => "IUF_TES_DIV_IMP",
            Self::TesNoIufOrIuv => "TES_NO_IUF_OR_IUV",
            Self::RtNoIufBollo => "RT_NO_IUF_BOLLO",
        }
    }
}

/// The label of a receipt transfer: `reported_in` = the settlement of the flow whose row
/// reports it, if any.
pub fn label_payment(transfer: &PaidTransfer, reported_in: Option<Settlement>) -> Label {
    match reported_in {
        None if transfer.stamp => Label::RtNoIufBollo,
        None => Label::RtNoIuf,
        Some(s) => flow_label(s),
    }
}

/// The label of a flow row: with its receipt it shares the flow's settlement; without one it
/// is `IUV_NO_RT` (to recover: the receipt may exist at pagoPA).
pub fn label_row(matched: bool, settlement: Settlement) -> Label {
    if matched {
        flow_label(settlement)
    } else {
        Label::IuvNoRt
    }
}

/// The label of a bank credit: attributed to a flow (its settlement) or not.
pub fn label_credit(flow: Option<Settlement>) -> Label {
    match flow {
        None => Label::TesNoIufOrIuv,
        Some(Settlement::Settled) => Label::RtIufTes,
        Some(_) => Label::IufTesDivImp,
    }
}

fn flow_label(s: Settlement) -> Label {
    match s {
        Settlement::Settled => Label::RtIufTes,
        Settlement::Awaiting => Label::RtIuf,
        Settlement::Partial { .. } | Settlement::Over { .. } => Label::IufTesDivImp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdr::PayStatus;

    fn row(n: usize, iuv: &str, iur: &str, idx: u8, cents: i64) -> FlowRow {
        FlowRow {
            number: n,
            iuv: iuv.into(),
            iur: iur.into(),
            id_transfer: Some(idx),
            amount_cents: Some(cents),
            status: PayStatus::Executed,
            date: None,
            problems: Vec::new(),
        }
    }

    fn rt(org: &str, iuv: &str, id: &str, idx: u8, cents: i64) -> PaidTransfer {
        PaidTransfer {
            organization: org.into(),
            iuv: iuv.into(),
            receipt_id: id.into(),
            id_transfer: idx,
            amount_cents: cents,
            stamp: false,
        }
    }

    #[test]
    fn rows_match_by_key_then_by_amount_with_a_warning() {
        let receipts = vec![
            rt("A", "IUV1", "R1", 1, 100),
            rt("A", "IUV2", "R2", 1, 50),
            rt("B", "IUV1", "R1", 2, 30), // the secondary beneficiary's transfer
        ];
        let rows = vec![
            row(1, "IUV1", "R1", 1, 100),
            row(2, "IUV2", "PSP-OWN-IUR", 1, 50),
            row(3, "IUV9", "R9", 1, 10),
        ];
        let m = match_rows("A", &rows, &receipts);
        assert_eq!(m[0].receipt, Some(0));
        assert!(m[0].warnings.is_empty());
        assert_eq!(m[1].receipt, Some(1));
        assert_eq!(
            m[1].warnings,
            vec![MatchWarning::IurDiffers {
                iur: "PSP-OWN-IUR".into(),
                receipt_id: "R2".into()
            }]
        );
        assert_eq!(m[2].receipt, None);
        // organization B's flow reports only B's transfer
        let m = match_rows("B", &[row(1, "IUV1", "R1", 2, 30)], &receipts);
        assert_eq!(m[0].receipt, Some(2));
    }

    #[test]
    fn a_receipt_is_reported_once_and_duplicates_count_nothing() {
        let receipts = vec![rt("A", "IUV1", "R1", 1, 100)];
        let flow = crate::fdr::Flow::new(
            crate::fdr::FlowHeader {
                flow_id: "F".into(),
                revision: None,
                flow_date: String::new(),
                regulation: String::new(),
                regulation_date: None,
                sender_kind: crate::fdr::SenderKind::BicCode,
                sender_id: String::new(),
                psp_id: None,
                sender_name: None,
                bic_pouring_bank: None,
                receiver_id: "A".into(),
                receiver_name: None,
                declared_count: Some(2),
                declared_total_cents: Some(200),
            },
            vec![row(1, "IUV1", "R1", 1, 100), row(2, "IUV1", "R1", 1, 100)],
        );
        let m = match_rows("A", &flow.rows, &receipts);
        assert_eq!(m[0].receipt, Some(0));
        assert!(m[1].duplicate);
        assert_eq!(m[1].receipt, None);
    }

    #[test]
    fn amounts_that_differ_are_matched_by_key_and_warned() {
        let receipts = vec![rt("A", "IUV1", "R1", 1, 100)];
        let m = match_rows("A", &[row(1, "IUV1", "R1", 1, 90)], &receipts);
        assert_eq!(m[0].receipt, Some(0));
        assert_eq!(
            m[0].warnings,
            vec![MatchWarning::AmountDiffers {
                row_cents: 90,
                receipt_cents: 100
            }]
        );
    }

    #[test]
    fn settlement_and_labels() {
        assert_eq!(settlement(130, &[]), Settlement::Awaiting);
        assert_eq!(
            settlement(130, &[100]),
            Settlement::Partial { residual: 30 }
        );
        assert_eq!(settlement(130, &[100, 30]), Settlement::Settled);
        assert_eq!(settlement(130, &[140]), Settlement::Over { excess: 10 });
        let t = rt("A", "IUV1", "R1", 1, 100);
        assert_eq!(label_payment(&t, None), Label::RtNoIuf);
        assert_eq!(
            label_payment(
                &PaidTransfer {
                    stamp: true,
                    ..t.clone()
                },
                None
            ),
            Label::RtNoIufBollo
        );
        assert_eq!(label_payment(&t, Some(Settlement::Awaiting)), Label::RtIuf);
        assert_eq!(
            label_payment(&t, Some(Settlement::Settled)),
            Label::RtIufTes
        );
        assert_eq!(
            label_payment(&t, Some(Settlement::Partial { residual: 1 })),
            Label::IufTesDivImp
        );
        assert_eq!(label_credit(None), Label::TesNoIufOrIuv);
        assert_eq!(label_credit(Some(Settlement::Settled)), Label::RtIufTes);
        assert_eq!(label_row(false, Settlement::Settled), Label::IuvNoRt);
        assert_eq!(label_row(true, Settlement::Settled), Label::RtIufTes);
        assert_eq!(Label::IufTesDivImp.code(), "IUF_TES_DIV_IMP");
    }
}
