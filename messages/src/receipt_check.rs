//! The acceptance rule for an incoming receipt (paSendRT / paSendRTV2): collected money is
//! never refused (SPEC §6.3, GovPay's bug history).
//!
//! [`decide`] is the ONE place that says accept, accept with flags, or refuse:
//! * **refuse** only what is not ours or cannot be attributed: a broker that is not ours, a
//!   station that is not ours or belongs to another of our brokers, an organization we do not
//!   serve, or a receipt that records no payment (`outcome` other than `OK`);
//!   (a receipt whose identifying fields cannot be read at all never gets here: the decoder
//!   answers PAA_SINTASSI_XSD);
//! * **accept with flags** every departure that does not change who paid what: XSD departures
//!   (e.g. a missing `transferCategory`, which pagoPA's own paSendRT example omits), texts with
//!   surrounding/repeated whitespace or control characters, a remittance text changed by the PSP,
//!   transfers different from what we sent, a station that is not the organization's current
//!   one (station migration). The receipt is stored byte-exact, answered OK, and the flags become
//!   an anomaly an operator sees;
//! * **accept** the rest.

use serde::{Deserialize, Serialize};

use crate::intermediary::{Route, StationRelation};
use crate::text::normalise;
use crate::wire::faults::FaultCode;
use crate::wire::pafornode::Receipt;
use crate::Amount;

/// A transfer as we sent it (getPayment), to compare the receipt with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedTransfer {
    /// 1-based position.
    pub id_transfer: u8,
    /// Cents.
    pub amount: Amount,
    /// Beneficiary organization.
    pub fiscal_code: String,
    /// Remittance information we sent.
    pub remittance_information: String,
    /// Accounts the PSP may credit (bank IBAN, postal IBAN); empty for a stamp.
    pub ibans: Vec<String>,
}

/// What we sent for the notice (from its payment option), when the notice is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The transfers.
    pub transfers: Vec<ExpectedTransfer>,
}

/// Everything the rule looks at.
#[derive(Debug, Clone, Copy)]
pub struct ReceiptFacts<'a> {
    /// broker → station → organization.
    pub route: &'a Route,
    /// idBrokerPA as received.
    pub id_broker_pa: &'a str,
    /// The station the receipt arrived on.
    pub station: &'a str,
    /// The receipt as read.
    pub receipt: &'a Receipt,
    /// XSD departures reported by the decoder.
    pub departures: &'a [String],
    /// What we sent, when the notice is known.
    pub expected: Option<&'a Expected>,
}

/// Why an accepted receipt needs an operator's eye.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReceiptFlag {
    /// The request departs from the XSD (first violation found, as the validator reports it).
    SchemaDeparture {
        /// The violation.
        detail: String,
    },
    /// A transfer without `transferCategory`.
    MissingTransferCategory {
        /// idTransfer.
        transfer: u8,
    },
    /// A text with leading/trailing/repeated whitespace or control characters.
    UntidyText {
        /// The field, e.g. `receipt.transferList.transfer[0].remittanceInformation`.
        field: String,
    },
    /// The PSP changed the remittance information we sent.
    RemittanceChanged {
        /// idTransfer.
        transfer: u8,
        /// What we sent.
        sent: String,
        /// What the receipt carries.
        received: String,
    },
    /// A transfer differs from what we sent (amount, beneficiary, account, count).
    TransferDiffers {
        /// idTransfer (0 = the list as a whole).
        transfer: u8,
        /// What differs.
        detail: String,
    },
    /// Σ transferAmount ≠ paymentAmount.
    TransfersSumDiffers {
        /// Σ transferAmount.
        sum: Amount,
        /// paymentAmount.
        payment_amount: Amount,
    },
    /// The receipt arrived on a station that is not the organization's current one for it.
    StationMismatch {
        /// The station it arrived on.
        station: String,
        /// How that station relates to the organization.
        relation: StationRelation,
    },
}

impl ReceiptFlag {
    /// Is this a station flag (its own anomaly kind) rather than a content departure?
    pub fn is_station(&self) -> bool {
        matches!(self, ReceiptFlag::StationMismatch { .. })
    }
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Store it and answer OK; `flags` (possibly empty) go to an anomaly.
    Accept {
        /// Departures found.
        flags: Vec<ReceiptFlag>,
    },
    /// Answer KO with this code (nothing stored).
    Refuse {
        /// Fault code.
        code: FaultCode,
        /// Why, for the fault description.
        reason: String,
    },
}

/// Accept / accept with flags / refuse (module docs). Pure.
pub fn decide(f: &ReceiptFacts<'_>) -> Decision {
    let refuse = |code, reason: String| Decision::Refuse { code, reason };
    let Route::Ours(relation) = f.route else {
        let (code, reason) = f
            .route
            .refusal(f.id_broker_pa, f.station)
            .unwrap_or((FaultCode::SystemError, "unroutable".into()));
        return refuse(code, reason);
    };
    let r = f.receipt;
    if r.outcome.trim() != "OK" {
        return refuse(
            FaultCode::Semantica,
            "only receipts with outcome OK record a payment".into(),
        );
    }
    if r.payment_amount.cents() <= 0 {
        // no money was collected (the XSD's stAmountNotZero): nothing to keep
        return refuse(
            FaultCode::SintassiXsd,
            "paymentAmount must be greater than 0.00".into(),
        );
    }
    let mut flags: Vec<ReceiptFlag> = f
        .departures
        .iter()
        .map(|d| ReceiptFlag::SchemaDeparture { detail: d.clone() })
        .collect();
    if *relation != StationRelation::Current {
        flags.push(ReceiptFlag::StationMismatch {
            station: f.station.to_string(),
            relation: relation.clone(),
        });
    }
    untidy_texts(r, &mut flags);
    for t in &r.transfers {
        if t.transfer_category.trim().is_empty() {
            flags.push(ReceiptFlag::MissingTransferCategory {
                transfer: t.id_transfer,
            });
        }
    }
    match Amount::checked_sum(r.transfers.iter().map(|t| t.amount)) {
        Some(sum) if sum == r.payment_amount => {}
        sum => flags.push(ReceiptFlag::TransfersSumDiffers {
            sum: sum.unwrap_or(Amount::ZERO),
            payment_amount: r.payment_amount,
        }),
    }
    if let Some(expected) = f.expected {
        compare(r, expected, &mut flags);
    }
    Decision::Accept { flags }
}

fn untidy_texts(r: &Receipt, flags: &mut Vec<ReceiptFlag>) {
    let mut check = |field: String, value: &str| {
        if normalise(value, usize::MAX).1 {
            flags.push(ReceiptFlag::UntidyText { field });
        }
    };
    check("receipt.description".into(), &r.description);
    check("receipt.companyName".into(), &r.company_name);
    if let Some(o) = &r.office_name {
        check("receipt.officeName".into(), o);
    }
    check("receipt.debtor.fullName".into(), &r.debtor.full_name);
    for (i, t) in r.transfers.iter().enumerate() {
        check(
            format!("receipt.transferList.transfer[{i}].remittanceInformation"),
            &t.remittance_information,
        );
    }
}

fn same_text(a: &str, b: &str) -> bool {
    normalise(a, usize::MAX).0 == normalise(b, usize::MAX).0
}

fn compare(r: &Receipt, expected: &Expected, flags: &mut Vec<ReceiptFlag>) {
    if r.transfers.len() != expected.transfers.len() {
        flags.push(ReceiptFlag::TransferDiffers {
            transfer: 0,
            detail: format!(
                "{} transfers received, {} sent",
                r.transfers.len(),
                expected.transfers.len()
            ),
        });
    }
    for t in &r.transfers {
        let Some(e) = expected
            .transfers
            .iter()
            .find(|e| e.id_transfer == t.id_transfer)
        else {
            continue;
        };
        let mut differs = |detail: String| {
            flags.push(ReceiptFlag::TransferDiffers {
                transfer: t.id_transfer,
                detail,
            })
        };
        if t.amount != e.amount {
            differs(format!("amount {} received, {} sent", t.amount, e.amount));
        }
        if t.fiscal_code_pa.trim() != e.fiscal_code {
            differs(format!(
                "beneficiary {} received, {} sent",
                t.fiscal_code_pa, e.fiscal_code
            ));
        }
        if let Some(iban) = &t.iban {
            let iban = iban.trim();
            if !e.ibans.is_empty() && !e.ibans.iter().any(|x| x.eq_ignore_ascii_case(iban)) {
                differs(format!("account {iban} is not the one sent"));
            }
        }
        // what we sent went through the Node's text hygiene (`clean`, 140 characters)
        let sent = normalise(&e.remittance_information, 140).0;
        if !same_text(&t.remittance_information, &sent) {
            flags.push(ReceiptFlag::RemittanceChanged {
                transfer: t.id_transfer,
                sent,
                received: t.remittance_information.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::pafornode::{ReceiptTransfer, Subject};

    fn cents(c: i64) -> Amount {
        Amount::from_cents(c).unwrap()
    }

    fn receipt() -> Receipt {
        Receipt {
            receipt_id: "r1".into(),
            notice_number: "312202600000000171".into(),
            fiscal_code: "77777777777".into(),
            outcome: "OK".into(),
            creditor_reference_id: "12202600000000171".into(),
            payment_amount: cents(15_000),
            description: "TARI 2026".into(),
            company_name: "Comune di Esempio".into(),
            office_name: None,
            debtor: Subject {
                kind: "F".into(),
                id_value: "RSSMRA80A01H501U".into(),
                full_name: "Mario Rossi".into(),
                ..Subject::default()
            },
            transfers: vec![
                ReceiptTransfer {
                    id_transfer: 1,
                    amount: cents(12_000),
                    fiscal_code_pa: "77777777777".into(),
                    company_name: None,
                    iban: Some("IT56B9999999999000000000001".into()),
                    mbd_attachment: None,
                    marca_da_bollo: None,
                    marca_da_bollo_error: None,
                    remittance_information: "TARI quota comunale".into(),
                    transfer_category: "0101100IM".into(),
                    metadata: vec![],
                },
                ReceiptTransfer {
                    id_transfer: 2,
                    amount: cents(3_000),
                    fiscal_code_pa: "77777777778".into(),
                    company_name: None,
                    iban: Some("IT33C9999999999000000000002".into()),
                    mbd_attachment: None,
                    marca_da_bollo: None,
                    marca_da_bollo_error: None,
                    remittance_information: "TEFA".into(),
                    transfer_category: "0201102IM".into(),
                    metadata: vec![],
                },
            ],
            id_psp: "88888888888".into(),
            psp_fiscal_code: None,
            psp_partita_iva: None,
            psp_company_name: "PSP".into(),
            id_channel: "88888888888_01".into(),
            channel_description: "app".into(),
            payer: None,
            payment_method: None,
            payment_note: None,
            fee: None,
            primary_ci_incurred_fee: None,
            id_bundle: None,
            id_ci_bundle: None,
            payment_date_time: None,
            application_date: None,
            transfer_date: None,
            metadata: vec![],
            stand_in: false,
        }
    }

    fn expected() -> Expected {
        Expected {
            transfers: vec![
                ExpectedTransfer {
                    id_transfer: 1,
                    amount: cents(12_000),
                    fiscal_code: "77777777777".into(),
                    remittance_information: "TARI quota comunale".into(),
                    ibans: vec![
                        "IT56B9999999999000000000001".into(),
                        "IT32Z0760103200000099999999".into(),
                    ],
                },
                ExpectedTransfer {
                    id_transfer: 2,
                    amount: cents(3_000),
                    fiscal_code: "77777777778".into(),
                    remittance_information: "TEFA".into(),
                    ibans: vec!["IT33C9999999999000000000002".into()],
                },
            ],
        }
    }

    const OURS: Route = Route::Ours(StationRelation::Current);

    fn run(route: &Route, r: &Receipt, departures: &[String], e: Option<&Expected>) -> Decision {
        decide(&ReceiptFacts {
            route,
            id_broker_pa: "99999999999",
            station: "99999999999_01",
            receipt: r,
            departures,
            expected: e,
        })
    }

    fn flags(d: Decision) -> Vec<ReceiptFlag> {
        match d {
            Decision::Accept { flags } => flags,
            Decision::Refuse { code, reason } => panic!("refused {code:?}: {reason}"),
        }
    }

    #[test]
    fn a_clean_receipt_is_accepted_without_flags() {
        assert_eq!(
            flags(run(&OURS, &receipt(), &[], Some(&expected()))),
            vec![]
        );
        assert_eq!(flags(run(&OURS, &receipt(), &[], None)), vec![]);
    }

    #[test]
    fn a_zero_amount_records_no_payment_and_is_refused() {
        let mut r = receipt();
        r.payment_amount = cents(0);
        assert!(matches!(
            run(&OURS, &r, &[], None),
            Decision::Refuse {
                code: FaultCode::SintassiXsd,
                ..
            }
        ));
    }

    #[test]
    fn a_station_of_ours_missing_from_the_configuration_does_not_refuse_money() {
        for route in [
            Route::UnknownStation,
            Route::StationOfAnotherBroker {
                owner: "88888888888".into(),
            },
        ] {
            // our broker and organization: accepted, flagged as a station mismatch
            let r = route.clone().for_receipt(true);
            assert_eq!(r, Route::Ours(StationRelation::Unrelated));
            assert!(matches!(
                run(&r, &receipt(), &[], None),
                Decision::Accept { .. }
            ));
            // an organization we do not serve: still refused
            assert_eq!(route.clone().for_receipt(false), route);
        }
        assert_eq!(Route::ForeignBroker.for_receipt(true), Route::ForeignBroker);
    }

    #[test]
    fn a_missing_transfer_category_is_accepted_and_flagged() {
        let mut r = receipt();
        r.transfers[1].transfer_category = String::new();
        let deps = vec!["transfer: missing transferCategory".to_string()];
        let f = flags(run(&OURS, &r, &deps, Some(&expected())));
        assert_eq!(
            f,
            vec![
                ReceiptFlag::SchemaDeparture {
                    detail: deps[0].clone()
                },
                ReceiptFlag::MissingTransferCategory { transfer: 2 }
            ]
        );
    }

    #[test]
    fn a_changed_remittance_text_is_accepted_and_flagged() {
        let mut r = receipt();
        r.transfers[0].remittance_information = "/RFB/12202600000000171/150.00/TXT/TARI".into();
        let f = flags(run(&OURS, &r, &[], Some(&expected())));
        assert!(matches!(
            f.as_slice(),
            [ReceiptFlag::RemittanceChanged { transfer: 1, .. }]
        ));
        // only whitespace differs: untidy, not changed
        let mut r = receipt();
        r.transfers[0].remittance_information = "TARI quota comunale  ".into();
        let f = flags(run(&OURS, &r, &[], Some(&expected())));
        assert_eq!(
            f,
            vec![ReceiptFlag::UntidyText {
                field: "receipt.transferList.transfer[0].remittanceInformation".into()
            }]
        );
    }

    #[test]
    fn trailing_whitespace_and_control_characters_are_flagged() {
        let mut r = receipt();
        r.description = "TARI 2026 ".into();
        r.company_name = "Comune\n\ndi Esempio".into();
        let f = flags(run(&OURS, &r, &[], None));
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f
            .iter()
            .all(|x| matches!(x, ReceiptFlag::UntidyText { .. })));
    }

    #[test]
    fn transfers_that_differ_are_flagged() {
        let mut r = receipt();
        r.transfers[1].iban = Some("IT60X0542811101000000123456".into());
        r.transfers[1].amount = cents(2_000);
        let f = flags(run(&OURS, &r, &[], Some(&expected())));
        assert!(f
            .iter()
            .any(|x| matches!(x, ReceiptFlag::TransfersSumDiffers { .. })));
        assert_eq!(
            f.iter()
                .filter(|x| matches!(x, ReceiptFlag::TransferDiffers { transfer: 2, .. }))
                .count(),
            2
        );
        // the postal account we offered is fine
        let mut r = receipt();
        r.transfers[0].iban = Some("IT32Z0760103200000099999999".into());
        assert_eq!(flags(run(&OURS, &r, &[], Some(&expected()))), vec![]);
    }

    #[test]
    fn station_migration_is_accepted_and_flagged() {
        for relation in [
            StationRelation::Previous,
            StationRelation::Unrelated,
            StationRelation::OtherCodeStation {
                expected: "99999999999_02".into(),
            },
        ] {
            let f = flags(run(&Route::Ours(relation.clone()), &receipt(), &[], None));
            assert_eq!(
                f,
                vec![ReceiptFlag::StationMismatch {
                    station: "99999999999_01".into(),
                    relation
                }]
            );
            assert!(f[0].is_station());
        }
    }

    #[test]
    fn only_what_is_not_ours_or_records_no_payment_is_refused() {
        let cases = [
            (Route::ForeignBroker, FaultCode::IdIntermediarioErrato),
            (Route::UnknownStation, FaultCode::StazioneIntErrata),
            (
                Route::StationOfAnotherBroker {
                    owner: "01987654322".into(),
                },
                FaultCode::StazioneIntErrata,
            ),
            (
                Route::UnknownOrganization {
                    fiscal_code: "12345678901".into(),
                },
                FaultCode::IdDominioErrato,
            ),
        ];
        for (route, code) in cases {
            assert!(
                matches!(run(&route, &receipt(), &[], None), Decision::Refuse { code: c, .. } if c == code),
                "{route:?}"
            );
        }
        let mut r = receipt();
        r.outcome = "KO".into();
        assert!(matches!(
            run(&OURS, &r, &[], None),
            Decision::Refuse {
                code: FaultCode::Semantica,
                ..
            }
        ));
    }
}
