//! pagoPA's biz-events receipt (`biz_events.json`, `getOrganizationReceiptIur` /
//! `getOrganizationReceiptIuvIur`: `CtReceiptModelResponse`) read into the receipt our paSendRT
//! path stores ([`Receipt`]), for receipt recovery ("blindatura", issue 14).
//!
//! Amounts are JSON numbers in euros: they are read from their text (`10.5`, `10`, `10.50`,
//! also a quoted `"10.50"`), never through a float; an exponent, a sign or a third decimal is
//! refused. Empty strings count as absent (the API's required `iban` / `mbdAttachment` are
//! empty for the other kind of transfer).

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ids::Amount;
use crate::wire::pafornode::{read_marca_da_bollo, Receipt, ReceiptTransfer, Subject};

/// Why a biz-events answer is not a receipt we can store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BizReceiptError {
    /// Not the `CtReceiptModelResponse` JSON.
    #[error("not a biz-events receipt: {0}")]
    Unreadable(String),
    /// A required field is missing or malformed.
    #[error("biz-events receipt, field {field}: {reason}")]
    Field {
        /// JSON field name.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn field(name: &str, reason: impl Into<String>) -> BizReceiptError {
    BizReceiptError::Field {
        field: name.to_string(),
        reason: reason.into(),
    }
}

#[derive(Debug, Deserialize)]
struct MapEntry {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubjectJson {
    #[serde(default)]
    entity_unique_identifier_type: Option<String>,
    #[serde(default)]
    entity_unique_identifier_value: Option<String>,
    #[serde(default)]
    full_name: Option<String>,
    #[serde(default)]
    street_name: Option<String>,
    #[serde(default)]
    civic_number: Option<String>,
    #[serde(default)]
    postal_code: Option<String>,
    #[serde(default)]
    city: Option<String>,
    #[serde(default)]
    state_province_region: Option<String>,
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransferJson<'a> {
    #[serde(borrow, default)]
    id_transfer: Option<&'a RawValue>,
    #[serde(borrow, default)]
    transfer_amount: Option<&'a RawValue>,
    #[serde(rename = "fiscalCodePA", default)]
    fiscal_code_pa: Option<String>,
    #[serde(default)]
    iban: Option<String>,
    #[serde(default)]
    mbd_attachment: Option<String>,
    #[serde(default)]
    remittance_information: Option<String>,
    #[serde(default)]
    transfer_category: Option<String>,
    #[serde(default)]
    metadata: Option<Vec<MapEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReceiptJson<'a> {
    #[serde(default)]
    receipt_id: Option<String>,
    #[serde(default)]
    notice_number: Option<String>,
    #[serde(default)]
    fiscal_code: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    creditor_reference_id: Option<String>,
    #[serde(borrow, default)]
    payment_amount: Option<&'a RawValue>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    company_name: Option<String>,
    #[serde(default)]
    office_name: Option<String>,
    #[serde(default)]
    debtor: Option<SubjectJson>,
    #[serde(borrow, default)]
    transfer_list: Option<Vec<TransferJson<'a>>>,
    #[serde(rename = "idPSP", default)]
    id_psp: Option<String>,
    #[serde(default)]
    psp_fiscal_code: Option<String>,
    #[serde(rename = "pspPartitaIVA", default)]
    psp_partita_iva: Option<String>,
    #[serde(default)]
    psp_company_name: Option<String>,
    #[serde(default)]
    id_channel: Option<String>,
    #[serde(default)]
    channel_description: Option<String>,
    #[serde(default)]
    payer: Option<SubjectJson>,
    #[serde(default)]
    payment_method: Option<String>,
    #[serde(borrow, default)]
    fee: Option<&'a RawValue>,
    #[serde(borrow, default)]
    primary_ci_incurred_fee: Option<&'a RawValue>,
    #[serde(default)]
    id_bundle: Option<String>,
    #[serde(default)]
    id_ci_bundle: Option<String>,
    #[serde(default)]
    payment_date_time: Option<String>,
    #[serde(default)]
    payment_date_time_formatted: Option<String>,
    #[serde(default)]
    application_date: Option<String>,
    #[serde(default)]
    transfer_date: Option<String>,
    #[serde(default)]
    metadata: Option<Vec<MapEntry>>,
}

/// `Some(trimmed)` unless absent or blank.
fn present(s: Option<String>) -> Option<String> {
    s.map(|x| x.trim().to_string()).filter(|x| !x.is_empty())
}

fn required(s: Option<String>, name: &str) -> Result<String, BizReceiptError> {
    present(s).ok_or_else(|| field(name, "missing"))
}

/// An amount in euros from the JSON text of a number (or a quoted decimal): cents, exactly.
///
/// # Errors
/// The text is not `\d+(\.\d{1,2})?` (exponents, signs, three decimals, `null`).
pub fn amount_of_json(raw: &str, name: &str) -> Result<Amount, BizReceiptError> {
    let t = raw.trim();
    let t = t
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(t);
    Amount::parse_decimal_lenient(t).map_err(|e| field(name, e.to_string()))
}

fn amount(raw: Option<&RawValue>, name: &str) -> Result<Option<Amount>, BizReceiptError> {
    match raw {
        None => Ok(None),
        Some(r) if r.get().trim() == "null" => Ok(None),
        Some(r) => amount_of_json(r.get(), name).map(Some),
    }
}

fn map(m: Option<Vec<MapEntry>>) -> Vec<(String, String)> {
    m.unwrap_or_default()
        .into_iter()
        .filter(|e| !e.key.trim().is_empty())
        .map(|e| (e.key, e.value.unwrap_or_default()))
        .collect()
}

fn subject(s: SubjectJson, name: &str) -> Result<Subject, BizReceiptError> {
    Ok(Subject {
        kind: required(
            s.entity_unique_identifier_type,
            &format!("{name}.entityUniqueIdentifierType"),
        )?,
        id_value: required(
            s.entity_unique_identifier_value,
            &format!("{name}.entityUniqueIdentifierValue"),
        )?,
        full_name: required(s.full_name, &format!("{name}.fullName"))?,
        street_name: present(s.street_name),
        civic_number: present(s.civic_number),
        postal_code: present(s.postal_code),
        city: present(s.city),
        state_province_region: present(s.state_province_region),
        country: present(s.country),
        email: present(s.email),
    })
}

fn transfer(t: TransferJson<'_>, position: usize) -> Result<ReceiptTransfer, BizReceiptError> {
    let name = |f: &str| format!("transferList[{position}].{f}");
    let id_transfer = match t.id_transfer {
        // the API marks it optional: the position in the list numbers it then, as getPayment does
        None => u8::try_from(position + 1).map_err(|_| field(&name("idTransfer"), "over 5"))?,
        Some(r) => r
            .get()
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|n| (1..=5).contains(n))
            .ok_or_else(|| field(&name("idTransfer"), "must be an integer 1..5"))?,
    };
    let amount = amount(t.transfer_amount, &name("transferAmount"))?
        .ok_or_else(|| field(&name("transferAmount"), "missing"))?;
    let mbd_attachment = present(t.mbd_attachment);
    let (marca_da_bollo, marca_da_bollo_error) = match &mbd_attachment {
        Some(b64) => match read_marca_da_bollo(b64) {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(e)),
        },
        None => (None, None),
    };
    Ok(ReceiptTransfer {
        id_transfer,
        amount,
        fiscal_code_pa: required(t.fiscal_code_pa, &name("fiscalCodePA"))?,
        company_name: None,
        iban: present(t.iban),
        mbd_attachment,
        marca_da_bollo,
        marca_da_bollo_error,
        remittance_information: present(t.remittance_information).unwrap_or_default(),
        transfer_category: present(t.transfer_category).unwrap_or_default(),
        metadata: map(t.metadata),
    })
}

/// Reads a biz-events receipt (`CtReceiptModelResponse`) into the receipt paSendRT stores.
///
/// # Errors
/// [`BizReceiptError`] when the body is not that JSON or misses what identifies the payment
/// (receiptId, noticeNumber, fiscalCode, creditorReferenceId, paymentAmount, outcome, debtor,
/// PSP, channel, a transfer list with amounts).
pub fn decode_receipt(body: &[u8]) -> Result<Receipt, BizReceiptError> {
    let j: ReceiptJson<'_> =
        serde_json::from_slice(body).map_err(|e| BizReceiptError::Unreadable(e.to_string()))?;
    let transfers = j
        .transfer_list
        .ok_or_else(|| field("transferList", "missing"))?
        .into_iter()
        .enumerate()
        .map(|(i, t)| transfer(t, i))
        .collect::<Result<Vec<_>, _>>()?;
    if transfers.is_empty() {
        return Err(field("transferList", "empty"));
    }
    let debtor = subject(
        j.debtor.ok_or_else(|| field("debtor", "missing"))?,
        "debtor",
    )?;
    // a payer with no identifier is no payer (biz-events fills the object with nulls)
    let payer = match j.payer {
        Some(p) if p.entity_unique_identifier_value.is_some() => Some(subject(p, "payer")?),
        _ => None,
    };
    Ok(Receipt {
        receipt_id: required(j.receipt_id, "receiptId")?,
        notice_number: required(j.notice_number, "noticeNumber")?,
        fiscal_code: required(j.fiscal_code, "fiscalCode")?,
        outcome: required(j.outcome, "outcome")?,
        creditor_reference_id: required(j.creditor_reference_id, "creditorReferenceId")?,
        payment_amount: amount(j.payment_amount, "paymentAmount")?
            .ok_or_else(|| field("paymentAmount", "missing"))?,
        description: present(j.description).unwrap_or_default(),
        company_name: present(j.company_name).unwrap_or_default(),
        office_name: present(j.office_name),
        debtor,
        transfers,
        id_psp: required(j.id_psp, "idPSP")?,
        psp_fiscal_code: present(j.psp_fiscal_code),
        psp_partita_iva: present(j.psp_partita_iva),
        psp_company_name: present(j.psp_company_name).unwrap_or_default(),
        id_channel: present(j.id_channel).unwrap_or_default(),
        channel_description: present(j.channel_description).unwrap_or_default(),
        payer,
        payment_method: present(j.payment_method),
        payment_note: None,
        fee: amount(j.fee, "fee")?,
        primary_ci_incurred_fee: amount(j.primary_ci_incurred_fee, "primaryCiIncurredFee")?,
        id_bundle: present(j.id_bundle),
        id_ci_bundle: present(j.id_ci_bundle),
        payment_date_time: present(j.payment_date_time).or(present(j.payment_date_time_formatted)),
        application_date: present(j.application_date),
        transfer_date: present(j.transfer_date),
        metadata: map(j.metadata),
        stand_in: false,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const RECEIPT: &str = r#"{
      "receiptId": "c0ffee00c0ffee00c0ffee00c0ffee00",
      "noticeNumber": "312000000000000042",
      "fiscalCode": "80001234568",
      "outcome": "OK",
      "creditorReferenceId": "12000000000000042",
      "paymentAmount": 150.5,
      "description": "TARI 2026",
      "companyName": "Comune di Borgo Demo",
      "officeName": null,
      "debtor": {"entityUniqueIdentifierType": "F", "entityUniqueIdentifierValue": "RSSMRA80A01H501U",
                 "fullName": "Mario Rossi", "email": "mario@example.org"},
      "transferList": [
        {"idTransfer": 1, "transferAmount": 100, "fiscalCodePA": "80001234568",
         "iban": "IT47D0103002600000061234567", "mbdAttachment": "",
         "remittanceInformation": "TARI", "transferCategory": "9/0101100IM/",
         "metadata": [{"key": "k", "value": "v"}]},
        {"idTransfer": 2, "transferAmount": 50.50, "fiscalCodePA": "01987654322",
         "iban": "IT55R0306902117100000046001", "mbdAttachment": "",
         "remittanceInformation": "TEFA", "transferCategory": "9/0101100IM/"}
      ],
      "idPSP": "88888888888", "pspCompanyName": "PSP di Prova", "pspPartitaIVA": "12345678901",
      "idChannel": "88888888888_01", "channelDescription": "app",
      "payer": {"entityUniqueIdentifierType": null, "entityUniqueIdentifierValue": null},
      "paymentMethod": "creditCard", "fee": 1.2,
      "paymentDateTime": "2026-12-05T10:15:30", "applicationDate": "2026-12-05",
      "transferDate": "2026-12-06"
    }"#;

    #[test]
    fn a_receipt_reads_with_exact_cents() {
        let r = decode_receipt(RECEIPT.as_bytes()).unwrap();
        assert_eq!(r.receipt_id, "c0ffee00c0ffee00c0ffee00c0ffee00");
        assert_eq!(r.notice_number, "312000000000000042");
        assert_eq!(r.creditor_reference_id, "12000000000000042");
        assert_eq!(r.payment_amount.cents(), 15050);
        assert_eq!(r.transfers.len(), 2);
        assert_eq!(r.transfers[0].amount.cents(), 10000);
        assert_eq!(r.transfers[1].amount.cents(), 5050);
        assert_eq!(r.transfers[1].id_transfer, 2);
        assert_eq!(r.transfers[0].mbd_attachment, None);
        assert_eq!(r.transfers[0].metadata, vec![("k".into(), "v".into())]);
        assert_eq!(r.fee.map(Amount::cents), Some(120));
        assert_eq!(r.psp_partita_iva.as_deref(), Some("12345678901"));
        assert_eq!(r.transfers[1].fiscal_code_pa, "01987654322");
        assert_eq!(r.debtor.email.as_deref(), Some("mario@example.org"));
        assert_eq!(r.payer, None, "a payer of nulls is no payer");
        assert_eq!(r.office_name, None);
        assert_eq!(r.payment_date_time.as_deref(), Some("2026-12-05T10:15:30"));
        assert!(!r.stand_in);
    }

    #[test]
    fn amounts_are_read_from_their_text() {
        assert_eq!(amount_of_json("0.1", "x").unwrap().cents(), 10);
        assert_eq!(amount_of_json("0.29", "x").unwrap().cents(), 29);
        assert_eq!(amount_of_json("\"12.34\"", "x").unwrap().cents(), 1234);
        assert_eq!(amount_of_json("7", "x").unwrap().cents(), 700);
        for bad in ["1e2", "-1.00", "1.234", "null", "\"\"", "1,50"] {
            assert!(amount_of_json(bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn what_identifies_the_payment_is_required() {
        let missing_id =
            RECEIPT.replace("\"receiptId\": \"c0ffee00c0ffee00c0ffee00c0ffee00\",", "");
        assert_eq!(
            decode_receipt(missing_id.as_bytes()).unwrap_err(),
            field("receiptId", "missing")
        );
        let blank_iuv = RECEIPT.replace("\"12000000000000042\"", "\"  \"");
        assert!(matches!(
            decode_receipt(blank_iuv.as_bytes()),
            Err(BizReceiptError::Field { field, .. }) if field == "creditorReferenceId"
        ));
        let float_trap = RECEIPT.replace("150.5", "1.505e2");
        assert!(matches!(
            decode_receipt(float_trap.as_bytes()),
            Err(BizReceiptError::Field { field, .. }) if field == "paymentAmount"
        ));
        let bad_index = RECEIPT.replace("\"idTransfer\": 2", "\"idTransfer\": 9");
        assert!(decode_receipt(bad_index.as_bytes()).is_err());
        assert!(matches!(
            decode_receipt(b"<xml/>"),
            Err(BizReceiptError::Unreadable(_))
        ));
    }

    #[test]
    fn a_transfer_without_index_takes_its_place_in_the_list() {
        let text = RECEIPT
            .replace("\"idTransfer\": 1, ", "")
            .replace("\"idTransfer\": 2, ", "");
        let r = decode_receipt(text.as_bytes()).unwrap();
        assert_eq!(
            r.transfers
                .iter()
                .map(|t| t.id_transfer)
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
    }
}
