//! Payment documents on the web side: domain records mapped to the input of `mpay-documents`
//! (notice of a debt position, receipt of a stored receipt), rendering on the blocking pool,
//! and the receipts' public verification ids.
//!
//! **Verification id** (`/ricevute/verify/{id}`, also the public receipt download
//! `/ricevute/{id}/pdf`): `base64url(org ":" receiptId) "." hex(HMAC-SHA256(key,
//! "mpay-receipt-verify\0" org "\0" receiptId))[..32]`. It names the receipt (no index needed)
//! and cannot be made without the key: 128 bits of tag, checked in constant time. The key is
//! `[documents] verify_secret`, else a random key created once in
//! `<data_dir>/documents/verify.key`.

use std::path::Path;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use mpay_config::documents::NoticeLanguage;
use mpay_documents::{
    Language, NoticeInput, NoticeOption, OptionKind, Party, ReceiptInput, ReceiptTransfer,
    StampInfo,
};
use mpay_messages::position::{DebtPosition, Destination, PaymentOption};
use mpay_storage::StoredReceipt;
use secrecy::ExposeSecret as _;
use sha2::Sha256;

use crate::problem::Problem;
use mpay_config::OrganizationSettings;

/// The key of the verification ids.
#[derive(Clone)]
pub struct VerifyKey(Vec<u8>);

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifyKey(…)")
    }
}

const TAG_HEX: usize = 32;

impl VerifyKey {
    /// The configured key, else the one kept in `<data_dir>/documents/verify.key` (created with
    /// 32 random bytes the first time).
    pub fn load(settings: &mpay_config::Settings) -> std::io::Result<Self> {
        if let Some(s) = &settings.documents.verify_secret {
            return Ok(VerifyKey(s.expose_secret().as_bytes().to_vec()));
        }
        Self::from_file(&settings.node.data_dir.join("documents").join("verify.key"))
    }

    fn from_file(path: &Path) -> std::io::Result<Self> {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(bytes) = hex::decode(text.trim()) {
                if bytes.len() >= 16 {
                    return Ok(VerifyKey(bytes));
                }
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        use rand::RngCore;
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, hex::encode(&key))?;
        std::fs::rename(&tmp, path)?;
        Ok(VerifyKey(key))
    }

    /// A key for tests.
    pub fn from_bytes(key: &[u8]) -> Self {
        VerifyKey(key.to_vec())
    }

    fn tag(&self, org: &str, receipt_id: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new();
        };
        mac.update(b"mpay-receipt-verify\0");
        mac.update(org.as_bytes());
        mac.update(b"\0");
        mac.update(receipt_id.as_bytes());
        let mut tag = hex::encode(mac.finalize().into_bytes());
        tag.truncate(TAG_HEX);
        tag
    }

    /// The public id of a receipt.
    pub fn id(&self, org: &str, receipt_id: &str) -> String {
        let name =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{org}:{receipt_id}"));
        format!("{name}.{}", self.tag(org, receipt_id))
    }

    /// The (organization, receiptId) an id names, when its tag is right.
    pub fn open(&self, id: &str) -> Option<(String, String)> {
        let (name, tag) = id.rsplit_once('.')?;
        if tag.len() != TAG_HEX || name.len() > 200 {
            return None;
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(name)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (org, receipt_id) = text.split_once(':')?;
        let expected = self.tag(org, receipt_id);
        let same = expected.len() == tag.len()
            && expected
                .bytes()
                .zip(tag.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        same.then(|| (org.to_owned(), receipt_id.to_owned()))
    }
}

/// The postal account an option's money goes to, when all of it goes to one BancoPosta
/// account (the Poste bollettino carries one account for the whole amount): a transfer's
/// postal IBAN, or its IBAN when that is a Poste Italiane IBAN (ABI 07601).
fn postal_account(option: &PaymentOption) -> Option<String> {
    let mut account: Option<String> = None;
    for t in &option.transfers {
        let iban = match &t.destination {
            Destination::PostalIban { postal_iban } => postal_iban,
            Destination::Iban {
                postal_iban: Some(p),
                ..
            } => p,
            Destination::Iban {
                iban,
                postal_iban: None,
            } => iban,
            Destination::Stamp(_) => return None,
        };
        let this = mpay_documents::payload::postal_account_from_iban(iban.as_str())?;
        match &account {
            Some(a) if *a != this => return None,
            _ => account = Some(this),
        }
    }
    account
}

fn language(org: &OrganizationSettings) -> Language {
    match org.notice_language {
        NoticeLanguage::It => Language::It,
        NoticeLanguage::ItDe => Language::ItDe,
    }
}

/// The notice of a position: the single solution(s) first, then each plan's installments by
/// due date; `only` keeps the options of one notice number (with the plan it belongs to
/// numbered as in the whole notice).
pub fn notice_input(
    org: &OrganizationSettings,
    p: &DebtPosition,
    only: Option<&str>,
) -> NoticeInput {
    let mut options: Vec<NoticeOption> = Vec::new();
    let mut singles: Vec<&PaymentOption> = p
        .payment_options
        .iter()
        .filter(|o| !o.is_partial_payment)
        .collect();
    singles.sort_by_key(|o| o.due_date);
    for o in singles {
        options.push(option_of(o, OptionKind::Single));
    }
    let mut plans: Vec<&str> = p
        .payment_options
        .iter()
        .filter_map(PaymentOption::plan_key)
        .collect();
    plans.sort_unstable();
    plans.dedup();
    for plan in plans {
        let mut rates: Vec<&PaymentOption> = p
            .payment_options
            .iter()
            .filter(|o| o.plan_key() == Some(plan))
            .collect();
        rates.sort_by_key(|o| o.due_date);
        let of = u32::try_from(rates.len()).unwrap_or(u32::MAX);
        for (i, o) in rates.into_iter().enumerate() {
            let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
            options.push(option_of(o, OptionKind::Installment { number, of }));
        }
    }
    if let Some(nav) = only {
        options.retain(|o| o.nav == nav);
    }
    let d = &p.debtor;
    let address = [
        d.street_name
            .as_deref()
            .map(|s| match d.civic_number.as_deref() {
                Some(n) if !n.trim().is_empty() => format!("{s} {n}"),
                _ => s.to_owned(),
            }),
        d.postal_code.clone(),
        d.city.as_deref().map(|c| match d.province.as_deref() {
            Some(pr) if !pr.trim().is_empty() => format!("{c} ({pr})"),
            _ => c.to_owned(),
        }),
    ]
    .into_iter()
    .flatten()
    .filter(|s| !s.trim().is_empty())
    .collect::<Vec<_>>()
    .join(", ");
    let subject = p
        .payment_options
        .iter()
        .find(|o| !o.is_partial_payment)
        .or_else(|| p.payment_options.first())
        .map(|o| o.description.clone())
        .unwrap_or_default();
    NoticeInput {
        ec_name: if p.company_name.trim().is_empty() {
            org.name.clone()
        } else {
            p.company_name.clone()
        },
        ec_fiscal_code: p.organization_fiscal_code.as_str().to_owned(),
        cbill: org.cbill.clone().filter(|c| !c.trim().is_empty()),
        ec_office: p.office_name.clone(),
        debtor: Party {
            name: d.full_name.clone(),
            fiscal_code: d.fiscal_code.as_str().to_owned(),
            address: (!address.is_empty()).then_some(address),
        },
        subject,
        options,
        language: language(org),
    }
}

fn option_of(o: &PaymentOption, kind: OptionKind) -> NoticeOption {
    NoticeOption {
        kind,
        nav: o.nav.as_str().to_owned(),
        amount_cents: o.amount.cents(),
        due_date: o.due_day(),
        description: o.description.clone(),
        postal_account: postal_account(o),
    }
}

/// The receipt of a stored receipt; `ec_name` when the receipt carries none.
pub fn receipt_input(s: &StoredReceipt, ec_name: &str, verify_url: String) -> ReceiptInput {
    let r = &s.receipt;
    let party = |x: &mpay_messages::wire::pafornode::Subject| Party {
        name: x.full_name.clone(),
        fiscal_code: x.id_value.clone(),
        address: None,
    };
    let paid_at = r
        .payment_date_time
        .as_deref()
        .and_then(|t| mpay_messages::time::parse_api_datetime(t).ok())
        .unwrap_or(s.received_at);
    let psp = match r.psp_fiscal_code.as_deref() {
        Some(cf) if !cf.trim().is_empty() => format!("{} ({}, {cf})", r.psp_company_name, r.id_psp),
        _ => format!("{} ({})", r.psp_company_name, r.id_psp),
    };
    let channel = [
        Some(r.id_channel.as_str()),
        Some(r.channel_description.as_str()),
        r.payment_method.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter(|c| !c.trim().is_empty())
    .collect::<Vec<_>>()
    .join(" · ");
    ReceiptInput {
        ec_name: if r.company_name.trim().is_empty() {
            ec_name.to_owned()
        } else {
            r.company_name.clone()
        },
        ec_fiscal_code: r.fiscal_code.clone(),
        debtor: party(&r.debtor),
        payer: r.payer.as_ref().map(party),
        nav: r.notice_number.clone(),
        iuv: r.creditor_reference_id.clone(),
        receipt_id: s.receipt_id.clone(),
        description: r.description.clone(),
        total_cents: r.payment_amount.cents(),
        fee_cents: r.fee.map(|f| f.cents()),
        transfers: r
            .transfers
            .iter()
            .map(|t| ReceiptTransfer {
                amount_cents: t.amount.cents(),
                beneficiary_fiscal_code: t.fiscal_code_pa.clone(),
                beneficiary_name: t.company_name.clone(),
                remittance_information: t.remittance_information.clone(),
                iban: t.iban.clone(),
            })
            .collect(),
        psp,
        channel,
        paid_at,
        outcome: r.outcome.clone(),
        stamps: r
            .transfers
            .iter()
            .filter_map(|t| t.marca_da_bollo.as_ref().map(|m| (t, m)))
            .map(|(t, m)| StampInfo {
                iubd: m.iubd.clone(),
                amount_cents: m.amount.map_or(t.amount.cents(), |a| a.cents()),
                purchased_at: m.purchased_at.clone(),
                document_digest: m.document_digest.clone(),
            })
            .collect(),
        verify_url,
    }
}

/// Renders on the blocking pool (never on the async threads).
pub async fn render<F>(f: F) -> Result<Vec<u8>, Problem>
where
    F: FnOnce() -> Result<Vec<u8>, mpay_documents::DocumentError> + Send + 'static,
{
    actix_web::web::block(f)
        .await
        .map_err(Problem::internal)?
        .map_err(|e| Problem::internal(format!("document rendering: {e}")))
}

/// A PDF answer, shown inline with its file name.
pub fn pdf_response(bytes: Vec<u8>, file_name: &str) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("inline; filename=\"{file_name}\""),
        ))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .body(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn verify_ids_name_the_receipt_and_cannot_be_forged() {
        let key = VerifyKey::from_bytes(b"0123456789abcdef0123456789abcdef");
        let id = key.id("77777777777", "c1a5d3e0b7f94e2a8d6c5b4a3f2e1d0c");
        assert_eq!(
            key.open(&id),
            Some((
                "77777777777".into(),
                "c1a5d3e0b7f94e2a8d6c5b4a3f2e1d0c".into()
            ))
        );
        let other = VerifyKey::from_bytes(b"another key of thirty-two bytes!");
        assert_eq!(other.open(&id), None, "another key");
        let (name, tag) = id.rsplit_once('.').unwrap();
        let mut bad = tag.to_owned();
        bad.replace_range(0..1, if tag.starts_with('0') { "1" } else { "0" });
        assert_eq!(key.open(&format!("{name}.{bad}")), None, "tampered tag");
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("77777777777:other");
        assert_eq!(
            key.open(&format!("{forged}.{tag}")),
            None,
            "tag of another receipt"
        );
        assert_eq!(key.open("garbage"), None);
    }

    #[test]
    fn the_key_file_is_created_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("mpay-verify-key-{}", std::process::id()));
        let path = dir.join("documents").join("verify.key");
        let a = VerifyKey::from_file(&path).unwrap();
        let b = VerifyKey::from_file(&path).unwrap();
        assert_eq!(a.id("1", "2"), b.id("1", "2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
