//! What a receipt (paSendRT / paSendRTV2, SPEC §5.4–§6) does to the position it pays.
//!
//! Collected money is never refused: every receipt that can be attributed is stored; this
//! module decides its [`ReceiptDisposition`], the position's new state and the anomalies an
//! operator must see. The storage layer applies the effect atomically with the receipt.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::Amount;
use crate::intermediary::StationRelation;
use crate::position::{DebtPosition, OptionStatus, PositionStatus};
use crate::receipt_check::ReceiptFlag;

/// What happened to a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReceiptDisposition {
    /// It paid its option (position now PAID or PARTIALLY_PAID).
    Applied,
    /// The same receiptId was already stored: nothing changed.
    Duplicate,
    /// A different receipt for a notice already paid: stored with a double-payment anomaly.
    DoublePayment,
    /// No position for the notice: stored as an orphan with an anomaly.
    Orphan,
}

/// Kinds of anomalies raised for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", tag = "kind")]
pub enum AnomalyKind {
    /// A receipt for a notice we do not know.
    OrphanReceipt,
    /// A second, different receipt for a notice already paid.
    PossibleDoublePayment {
        /// The receipt that paid first (filled in by the store, which knows the receipts).
        first_receipt_id: Option<String>,
    },
    /// Paid an amount different from the option's (e.g. Stand-In).
    PaidWithDifference {
        /// Expected, cents.
        expected: Amount,
        /// Paid, cents.
        paid: Amount,
    },
    /// Paid while the position was not payable (cancelled, expired, draft).
    PaidWhileNotPayable {
        /// Its status then.
        status: PositionStatus,
    },
    /// Arrived on a station that is not the organization's current one for the notice
    /// (station migration): accepted.
    StationMismatch {
        /// The station it arrived on.
        station: String,
        /// How that station relates to the organization.
        relation: StationRelation,
    },
    /// Departs from the XSD or from what we sent in ways that do not change who paid what:
    /// accepted, stored byte-exact.
    ReceiptDeparture {
        /// What departs.
        flags: Vec<ReceiptFlag>,
    },
}

/// The anomalies a receipt's acceptance flags ([`crate::receipt_check::decide`]) raise: one
/// per station mismatch, and one for all the content departures together.
pub fn flag_anomalies(flags: &[ReceiptFlag]) -> Vec<AnomalyKind> {
    let mut out = Vec::new();
    for f in flags {
        if let ReceiptFlag::StationMismatch { station, relation } = f {
            out.push(AnomalyKind::StationMismatch {
                station: station.clone(),
                relation: relation.clone(),
            });
        }
    }
    let departures: Vec<ReceiptFlag> = flags.iter().filter(|f| !f.is_station()).cloned().collect();
    if !departures.is_empty() {
        out.push(AnomalyKind::ReceiptDeparture { flags: departures });
    }
    out
}

/// The effect of one receipt on its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptEffect {
    /// Applied, double payment or orphan (a duplicate receiptId is found by the store first).
    pub disposition: ReceiptDisposition,
    /// The position's new state to store (`None`: the position does not change).
    pub position: Option<DebtPosition>,
    /// Anomalies to raise, in order.
    pub anomalies: Vec<AnomalyKind>,
}

impl ReceiptEffect {
    /// A receipt for a notice no position holds: stored as an orphan with its anomaly.
    pub fn orphan() -> Self {
        ReceiptEffect {
            disposition: ReceiptDisposition::Orphan,
            position: None,
            anomalies: vec![AnomalyKind::OrphanReceipt],
        }
    }
}

impl DebtPosition {
    /// Applies a receipt of `paid` cents for notice `nav`, received at `now`:
    /// - the notice's option (or, for the single solution, the position) is already paid →
    ///   [`ReceiptDisposition::DoublePayment`], position unchanged, a double-payment anomaly;
    /// - otherwise the option becomes `PO_PAID` (payment date `now`) and the position `PAID`
    ///   (single solution, or every installment paid) or `PARTIALLY_PAID`, revision + 1; a
    ///   paid amount that differs from the option's (Stand-In) and a position that was not
    ///   payable (cancelled, expired, draft) are accepted and flagged.
    ///
    /// `None` when no option of this position has that notice number (the caller looked up a
    /// stale index entry and must read again).
    pub fn apply_payment(
        &self,
        nav: &str,
        paid: Amount,
        now: DateTime<Utc>,
    ) -> Option<ReceiptEffect> {
        let idx = self
            .payment_options
            .iter()
            .position(|o| o.nav.as_str() == nav)?;
        let option = self.payment_options.get(idx)?;
        let single = !option.is_partial_payment;
        let settled = matches!(self.status, PositionStatus::Paid | PositionStatus::Reported)
            || (single && self.status == PositionStatus::PartiallyPaid);
        if option.status != OptionStatus::PoUnpaid || settled {
            return Some(ReceiptEffect {
                disposition: ReceiptDisposition::DoublePayment,
                position: None,
                anomalies: vec![AnomalyKind::PossibleDoublePayment {
                    first_receipt_id: None,
                }],
            });
        }
        let mut anomalies = Vec::new();
        let mut new = self.clone();
        if let Some(o) = new.payment_options.get_mut(idx) {
            if o.amount != paid {
                anomalies.push(AnomalyKind::PaidWithDifference {
                    expected: o.amount,
                    paid,
                });
            }
            o.status = OptionStatus::PoPaid;
            o.payment_date = Some(now);
        }
        // the same rule the station answered with (cancelled, expired, draft, not yet valid,
        // past its due day with switchToExpired)
        if self.payable(nav, now).is_err() {
            anomalies.push(AnomalyKind::PaidWhileNotPayable {
                status: self.status,
            });
        }
        let all_installments_paid = new
            .payment_options
            .iter()
            .filter(|o| o.is_partial_payment)
            .all(|o| o.status != OptionStatus::PoUnpaid);
        if single || all_installments_paid {
            new.status = PositionStatus::Paid;
            new.payment_date = Some(now);
        } else {
            new.status = PositionStatus::PartiallyPaid;
        }
        new.revision = self.revision.saturating_add(1);
        new.last_updated_date = now;
        Some(ReceiptEffect {
            disposition: ReceiptDisposition::Applied,
            position: Some(new),
            anomalies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::{Debtor, Origin, PaymentOption};
    use crate::{FiscalCode, NoticeNumber, OrgFiscalCode};

    const SINGLE: &str = "312202600000000171";
    const RATA1: &str = "312202600000000272";
    const RATA2: &str = "312202600000000373";

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cents(c: i64) -> Amount {
        Amount::from_cents(c).unwrap()
    }

    fn plan() -> DebtPosition {
        let now = at("2026-01-01T00:00:00Z");
        let mut p = DebtPosition::new(
            OrgFiscalCode::parse("80001234568").unwrap(),
            "P",
            Debtor::new(FiscalCode::Anonymous, "x"),
            "C",
            Origin::Rest,
            now,
        );
        let due = at("2030-01-01T22:59:59Z");
        p.payment_options.push(PaymentOption::new(
            NoticeNumber::parse(SINGLE).unwrap(),
            cents(100),
            "unica",
            due,
        ));
        for nav in [RATA1, RATA2] {
            let mut o =
                PaymentOption::new(NoticeNumber::parse(nav).unwrap(), cents(50), "rata", due);
            o.is_partial_payment = true;
            p.payment_options.push(o);
        }
        p.mark_published(now);
        p
    }

    #[test]
    fn single_solution_pays_the_position() {
        let now = at("2026-03-01T10:00:00Z");
        let p = plan();
        let e = p.apply_payment(SINGLE, cents(100), now).unwrap();
        assert_eq!(e.disposition, ReceiptDisposition::Applied);
        assert!(e.anomalies.is_empty());
        let new = e.position.unwrap();
        assert_eq!(new.status, PositionStatus::Paid);
        assert_eq!(new.payment_date, Some(now));
        assert_eq!(new.revision, p.revision + 1);
        assert_eq!(new.payment_options[0].status, OptionStatus::PoPaid);
        // a second, different receipt: double payment, position untouched
        let again = new.apply_payment(SINGLE, cents(100), now).unwrap();
        assert_eq!(again.disposition, ReceiptDisposition::DoublePayment);
        assert!(again.position.is_none());
        // an installment after the single solution: double payment too
        let rata = new.apply_payment(RATA1, cents(50), now).unwrap();
        assert_eq!(rata.disposition, ReceiptDisposition::DoublePayment);
    }

    #[test]
    fn installments_pay_partially_then_fully() {
        let now = at("2026-03-01T10:00:00Z");
        let p = plan();
        let first = p
            .apply_payment(RATA1, cents(50), now)
            .unwrap()
            .position
            .unwrap();
        assert_eq!(first.status, PositionStatus::PartiallyPaid);
        assert_eq!(first.payment_date, None);
        // the single solution is no longer payable: a receipt for it is a double payment
        assert_eq!(
            first
                .apply_payment(SINGLE, cents(100), now)
                .unwrap()
                .disposition,
            ReceiptDisposition::DoublePayment
        );
        let second = first
            .apply_payment(RATA2, cents(50), now)
            .unwrap()
            .position
            .unwrap();
        assert_eq!(second.status, PositionStatus::Paid);
        assert_eq!(second.payment_date, Some(now));
    }

    #[test]
    fn odd_payments_are_accepted_and_flagged() {
        let now = at("2026-03-01T10:00:00Z");
        // Stand-In paid a different amount
        let e = plan().apply_payment(SINGLE, cents(90), now).unwrap();
        assert_eq!(e.disposition, ReceiptDisposition::Applied);
        assert_eq!(
            e.anomalies,
            vec![AnomalyKind::PaidWithDifference {
                expected: cents(100),
                paid: cents(90)
            }]
        );
        // paid while cancelled / expired / draft: the money is kept, the position is paid
        for status in [
            PositionStatus::Invalid,
            PositionStatus::Expired,
            PositionStatus::Draft,
        ] {
            let mut p = plan();
            p.status = status;
            let e = p.apply_payment(SINGLE, cents(100), now).unwrap();
            assert_eq!(e.disposition, ReceiptDisposition::Applied);
            assert_eq!(
                e.anomalies,
                vec![AnomalyKind::PaidWhileNotPayable { status }]
            );
            assert_eq!(e.position.unwrap().status, PositionStatus::Paid);
        }
        // a notice this position does not hold: the caller reads again
        assert!(plan()
            .apply_payment("312202600000000474", cents(1), now)
            .is_none());
        assert_eq!(
            ReceiptEffect::orphan().disposition,
            ReceiptDisposition::Orphan
        );
    }
}
