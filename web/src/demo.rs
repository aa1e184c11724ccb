//! Demo data for `mpay serve --demo`: a few debt positions of the demo organization, created
//! through the same validation path as the REST API.

use chrono::{Duration, Utc};
use serde_json::json;

use crate::api::model::{to_domain, PaymentPositionModel};
use crate::state::AppState;
use mpay_storage::{LedgerError, PositionRepository};

/// Error while seeding.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// A demo record failed validation (a bug in the demo data).
    #[error("demo position {0} is invalid: {1}")]
    Invalid(String, String),
    /// The ledger refused it.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Creates the demo positions for `org_fiscal_code` when the organization has none.
/// Returns how many were created (0 when positions already exist).
pub fn seed(state: &AppState, org_fiscal_code: &str) -> Result<usize, SeedError> {
    let Some(org) = state.orgs.get(org_fiscal_code).cloned() else {
        return Ok(0);
    };
    let ledger = state.store.ledger.clone();
    let existing = ledger.list(
        &org.fiscal_code,
        &mpay_storage::PositionFilter::default(),
        mpay_storage::ListOrder::IupdAsc,
        0,
        1,
    )?;
    if existing.total_items > 0 {
        return Ok(0);
    }
    let iban = org.settings.ibans.first().cloned().unwrap_or_default();
    let due = |days: i64| {
        (Utc::now() + Duration::days(days))
            .format("%Y-%m-%d")
            .to_string()
    };
    let year = Utc::now().format("%Y").to_string();
    let models = vec![
        json!({
            "iupd": format!("{org_fiscal_code}-LOCULI-{year}-0001"), "type": "F",
            "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi",
            "email": "mario.rossi@example.org", "companyName": org.name, "serviceCode": "AOC",
            "paymentOption": [{
                "amount": 35000, "description": "Concessione loculo cimiteriale", "isPartialPayment": false,
                "dueDate": due(60),
                "transfer": [{"idTransfer": "1", "amount": 35000, "remittanceInformation": "LOCULI CIMITERIALI - concessione",
                              "category": "9/0201133IM/", "iban": iban}]
            }]
        }),
        json!({
            "iupd": format!("{org_fiscal_code}-TARI-{year}-0001"), "type": "F",
            "fiscalCode": "VRDGPP75C41F205I", "fullName": "Giuseppina Verdi", "companyName": org.name,
            "switchToExpired": false,
            "paymentOption": [
                {"amount": 24000, "description": format!("TARI {year} - unica soluzione"), "isPartialPayment": false, "dueDate": due(30),
                 "transfer": [{"idTransfer": "1", "amount": 24000, "remittanceInformation": format!("TARI {year}"), "category": "9/0101108TS/", "iban": iban}]},
                {"amount": 12000, "description": format!("TARI {year} - rata 1 di 2"), "isPartialPayment": true, "dueDate": due(30),
                 "transfer": [{"idTransfer": "1", "amount": 12000, "remittanceInformation": format!("TARI {year} rata 1"), "category": "9/0101108TS/", "iban": iban}]},
                {"amount": 12000, "description": format!("TARI {year} - rata 2 di 2"), "isPartialPayment": true, "dueDate": due(90),
                 "transfer": [{"idTransfer": "1", "amount": 12000, "remittanceInformation": format!("TARI {year} rata 2"), "category": "9/0101108TS/", "iban": iban}]}
            ]
        }),
        json!({
            "iupd": format!("{org_fiscal_code}-CDS-{year}-0001"), "type": "G",
            "fiscalCode": "01987654322", "fullName": "Trasporti Demo S.r.l.", "companyName": org.name,
            "switchToExpired": true,
            "paymentOption": [{
                "amount": 17300, "description": "Sanzione codice della strada", "isPartialPayment": false, "dueDate": due(15),
                "transfer": [{"idTransfer": "1", "amount": 17300, "remittanceInformation": "Verbale CDS n. 1234/2026", "category": "9/0301104SP/", "iban": iban}]
            }]
        }),
    ];
    let mut positions = Vec::new();
    for m in models {
        let iupd = m
            .get("iupd")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string();
        let model: PaymentPositionModel = serde_json::from_value(m)
            .map_err(|e| SeedError::Invalid(iupd.clone(), e.to_string()))?;
        let draft = to_domain(&model, &org, "", Utc::now()).map_err(|e| {
            SeedError::Invalid(
                iupd.clone(),
                e.iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let mut p = draft.position;
        for o in draft.options {
            let nav = ledger.next_notice(&org.fiscal_code, &org.layout)?;
            p.payment_options.push(o.finish(nav));
        }
        p.status = mpay_messages::position::PositionStatus::Valid;
        p.publish_date = Some(Utc::now());
        positions.push(p);
    }
    let n = positions.len();
    ledger.create_many(positions)?;
    state.store.flush_blocking().map_err(LedgerError::from)?;
    Ok(n)
}
