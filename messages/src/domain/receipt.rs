//! What a receipt (paSendRT / paSendRTV2, SPEC §5.4–§6) does to the position it pays.
//!
//! Collected money is never refused: every receipt that can be attributed is stored; this
//! module decides its [`ReceiptDisposition`], the position's new state and the anomalies an
//! operator must see. The storage layer applies the effect atomically with the receipt.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::PaymentFacts;
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
        self.apply_payment_with(nav, paid, &PaymentFacts::default(), now)
    }

    /// [`Self::apply_payment`] with what the receipt says besides the amount: the option keeps
    /// when the citizen paid (`payment_date`, else `now`), the method, the PSP, the receipt id
    /// and the fee. Installments of one plan (GPD v3 `paymentOption`) pay the position when all
    /// of that plan are paid.
    pub fn apply_payment_with(
        &self,
        nav: &str,
        paid: Amount,
        facts: &PaymentFacts,
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
            o.payment_date = Some(facts.payment_date.unwrap_or(now));
            o.details.last_updated_date = Some(now);
            if facts.payment_method.is_some() {
                o.details.payment_method = facts.payment_method.clone();
            }
            if facts.psp_company.is_some() {
                o.details.psp_company = facts.psp_company.clone();
            }
            if facts.id_receipt.is_some() {
                o.details.id_receipt = facts.id_receipt.clone();
            }
            if let Some(fee) = facts.fee {
                o.fee = fee;
            }
        }
        // the same rule the station answered with (cancelled, expired, draft, not yet valid,
        // past its due day with switchToExpired)
        if self.payable(nav, now).is_err() {
            anomalies.push(AnomalyKind::PaidWhileNotPayable {
                status: self.status,
            });
        }
        let plan = option.plan_key();
        let all_installments_paid = new
            .payment_options
            .iter()
            .filter(|o| o.is_partial_payment && o.plan_key() == plan)
            .all(|o| o.status != OptionStatus::PoUnpaid);
        if single || all_installments_paid {
            new.status = PositionStatus::Paid;
            new.payment_date = Some(facts.payment_date.unwrap_or(now));
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

    /// Single solution + plan "1" (A1, A2) + plan "2" (B1, B2), published.
    fn two_plans() -> DebtPosition {
        let mut p = plan();
        p.payment_options.truncate(1);
        for (nav, plan) in [
            ("347000000000000011", "1"),
            ("347000000000000012", "1"),
            ("347000000000000013", "2"),
            ("347000000000000014", "2"),
        ] {
            let mut o = PaymentOption::new(
                NoticeNumber::parse_unchecked(nav).unwrap(),
                cents(50),
                "rata",
                at("2030-01-01T22:59:59Z"),
            );
            o.is_partial_payment = true;
            o.details.plan = Some(plan.into());
            o.transfers.push(crate::position::Transfer::to_iban(
                1,
                cents(50),
                crate::Iban::parse_unchecked("mockIban").unwrap(),
                "r",
                "9/0101108TS/",
            ));
            p.payment_options.push(o);
        }
        p
    }

    #[test]
    fn paying_an_installment_of_one_plan_sets_the_others_aside() {
        use crate::domain::{NotPayable, NoticeStatus, PaidOutsideError, PaymentFacts};
        let now = at("2026-03-01T10:00:00Z");
        let paid_at = at("2026-02-28T09:00:00Z");
        let facts = PaymentFacts {
            payment_date: Some(paid_at),
            payment_method: Some("CONTANTI".into()),
            ..Default::default()
        };
        let p = two_plans();
        let mut p = p
            .apply_payment_with("347000000000000011", cents(50), &facts, now)
            .unwrap()
            .position
            .unwrap();
        assert_eq!(p.status, PositionStatus::PartiallyPaid);
        let a1 = &p.payment_options[1];
        assert_eq!(a1.payment_date, Some(paid_at));
        assert_eq!(a1.details.payment_method.as_deref(), Some("CONTANTI"));
        // the station's rule and the organization's view agree
        for (nav, payable, status) in [
            ("347000000000000012", true, NoticeStatus::Unpaid),
            ("347000000000000013", false, NoticeStatus::Invalid),
            (SINGLE, false, NoticeStatus::Invalid),
            ("347000000000000011", false, NoticeStatus::Paid),
        ] {
            assert_eq!(p.payable(nav, now).is_ok(), payable, "{nav}");
            assert_eq!(p.notice_status(nav, now), Some(status), "{nav}");
        }
        assert_eq!(
            p.payable("347000000000000013", now).unwrap_err(),
            NotPayable::InstallmentPaid
        );
        // the other plan cannot be declared paid outside pagoPA either
        assert!(matches!(
            p.pay_outside("347000000000000013", PaymentFacts::default(), now),
            Err(PaidOutsideError::NotPayable(_))
        ));
        // the rest of plan 1 pays the position
        p.pay_outside("347000000000000012", PaymentFacts::default(), now)
            .unwrap();
        assert_eq!(p.status, PositionStatus::Paid);
        assert!(p.payment_options[2].details.paid_outside);
        assert_eq!(
            p.pay_outside("347000000000000012", PaymentFacts::default(), now),
            Err(PaidOutsideError::AlreadyPaid)
        );
        // reporting every paid transfer reports the position
        p.report_transfer("47000000000000011", 1, Some("FLOW-1"), now)
            .unwrap();
        assert_eq!(p.status, PositionStatus::Paid);
        p.report_transfer("347000000000000012", 1, None, now)
            .unwrap();
        assert_eq!(p.status, PositionStatus::Reported);
        assert_eq!(p.payment_options[1].status, OptionStatus::PoReported);
        assert_eq!(
            p.payment_options[1].details.id_flow_reporting.as_deref(),
            Some("FLOW-1")
        );
    }

    #[test]
    fn gpd_delete_rule_allows_any_position_without_payments() {
        use crate::domain::Action;
        let now = at("2026-03-01T10:00:00Z");
        let p = two_plans();
        assert!(p.may(Action::DeleteUnpaid).is_ok());
        assert!(p.may(Action::Delete).is_err());
        let paid = p
            .apply_payment("347000000000000011", cents(50), now)
            .unwrap()
            .position
            .unwrap();
        assert!(paid.may(Action::DeleteUnpaid).is_err());
    }

    #[test]
    fn notification_fee_moves_the_amount_and_iban_changes_only_unpaid_own_transfers() {
        let now = at("2026-03-01T10:00:00Z");
        let mut p = two_plans();
        p.set_notification_fee("47000000000000013", cents(150), now)
            .unwrap();
        p.set_notification_fee("47000000000000013", cents(100), now)
            .unwrap();
        let o = &p.payment_options[3];
        assert_eq!((o.amount, o.transfers[0].amount), (cents(150), cents(150)));
        assert_eq!(o.notification_fee, cents(100));
        let old = crate::Iban::parse_unchecked("mockIban").unwrap();
        let new = crate::Iban::parse_unchecked("newIban").unwrap();
        assert_eq!(p.replace_iban(&old, &new, now), 4);
        assert_eq!(p.replace_iban(&old, &new, now), 0);
    }
}
