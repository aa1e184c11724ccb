//! The receipt e-mail (issue 15), pure: who receives a stored receipt, what the message says
//! (Italian), and where its delivery stands. Time is always given (`now`); the random part of
//! a backoff (jitter, per mille) is given by the caller.
//!
//! - [`recipients`]: the addresses a receipt is sent to (the portal cart's, the payer's, the
//!   debtor's in the receipt, the debtor's of the position), plausible ones only, each once.
//! - [`MailState`]: PENDING → (RETRYING)* → SENT | FAILED; a resend puts it back to PENDING.
//!   Backoff and horizon are the Ente notifications' ([`DeliveryPolicy::after_failure`]).
//! - [`receipt_text`]: subject and body.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use super::cart::{format_amount_it, valid_email};
use super::delivery::{DeliveryPolicy, Retry};

/// Most addresses one receipt e-mail goes to.
pub const MAX_RECIPIENTS: usize = 4;

/// The addresses a receipt is sent to, in this order: the portal cart's (`cart`), the payer's
/// and the debtor's written in the receipt, the debtor's of the position. Implausible ones
/// ([`valid_email`]) are skipped; the same address (case-insensitive) only once.
pub fn recipients<'a>(candidates: impl IntoIterator<Item = Option<&'a str>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in candidates.into_iter().flatten() {
        let c = c.trim();
        if !valid_email(c) || out.iter().any(|o| o.eq_ignore_ascii_case(c)) {
            continue;
        }
        if out.len() < MAX_RECIPIENTS {
            out.push(c.to_string());
        }
    }
    out
}

/// Where a receipt e-mail stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MailState {
    /// Enqueued with the receipt (or put back by a resend), not tried yet.
    Pending,
    /// Tried and failed at least once (server down, temporary refusal); due again at
    /// `next_attempt_at`.
    Retrying,
    /// Accepted by the SMTP server: never sent again by itself.
    Sent,
    /// Refused for good (a permanent SMTP reply) or not sent within the horizon: stays
    /// visible, sent again only on a resend.
    Failed,
}

impl MailState {
    /// Still to be sent.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Retrying)
    }

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Retrying => "RETRYING",
            Self::Sent => "SENT",
            Self::Failed => "FAILED",
        }
    }
}

/// The e-mail of one stored receipt (one per receipt, keyed by its receiptId).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptMail {
    /// The receipt (receiptId, as received).
    pub receipt_id: String,
    /// Organization of the receipt.
    pub organization: String,
    /// Notice number.
    pub notice_number: String,
    /// Where it goes.
    pub recipients: Vec<String>,
    /// State.
    pub state: MailState,
    /// Attempts made (the successful one included).
    pub attempts: u32,
    /// Enqueued (UTC): the receipt's arrival.
    pub created_at: DateTime<Utc>,
    /// Start of the current sending window (enqueued, or the last resend): the horizon counts
    /// from here.
    pub window_start: DateTime<Utc>,
    /// When it may be tried next (open states).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last attempt.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the SMTP server accepted it.
    pub sent_at: Option<DateTime<Utc>>,
}

impl ReceiptMail {
    /// A new PENDING e-mail of a receipt, due `now`.
    pub fn of_receipt(
        receipt_id: &str,
        organization: &str,
        notice_number: &str,
        recipients: Vec<String>,
        now: DateTime<Utc>,
    ) -> Self {
        ReceiptMail {
            receipt_id: receipt_id.to_string(),
            organization: organization.to_string(),
            notice_number: notice_number.to_string(),
            recipients,
            state: MailState::Pending,
            attempts: 0,
            created_at: now,
            window_start: now,
            next_attempt_at: Some(now),
            last_attempt_at: None,
            last_error: None,
            sent_at: None,
        }
    }

    /// Is an attempt due at `now`?
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.state.is_open() && self.next_attempt_at.is_none_or(|t| t <= now)
    }

    /// The SMTP server accepted it at `now`.
    pub fn sent(&self, now: DateTime<Utc>) -> Self {
        ReceiptMail {
            state: MailState::Sent,
            attempts: self.attempts.saturating_add(1),
            last_attempt_at: Some(now),
            next_attempt_at: None,
            last_error: None,
            sent_at: Some(now),
            ..self.clone()
        }
    }

    /// An attempt at `now` failed for a reason that may pass (server unreachable, a 4xx
    /// reply): RETRYING at the policy's next time, FAILED past the horizon.
    pub fn retry_later(
        &self,
        policy: &DeliveryPolicy,
        error: &str,
        now: DateTime<Utc>,
        jitter: u32,
    ) -> Self {
        let attempts = self.attempts.saturating_add(1);
        let (state, next) = match policy.after_failure(attempts, self.window_start, now, jitter) {
            Retry::At(t) => (MailState::Retrying, Some(t)),
            Retry::GiveUp => (MailState::Failed, None),
        };
        ReceiptMail {
            state,
            attempts,
            last_attempt_at: Some(now),
            next_attempt_at: next,
            last_error: Some(error.to_string()),
            ..self.clone()
        }
    }

    /// The server refused it for good at `now` (a 5xx reply: no such mailbox, …): FAILED.
    pub fn refused(&self, error: &str, now: DateTime<Utc>) -> Self {
        ReceiptMail {
            state: MailState::Failed,
            attempts: self.attempts.saturating_add(1),
            last_attempt_at: Some(now),
            next_attempt_at: None,
            last_error: Some(error.to_string()),
            ..self.clone()
        }
    }

    /// An operator asked for it again at `now`: PENDING, due now, a new window.
    pub fn resent(&self, now: DateTime<Utc>) -> Self {
        ReceiptMail {
            state: MailState::Pending,
            window_start: now,
            next_attempt_at: Some(now),
            sent_at: None,
            ..self.clone()
        }
    }
}

/// The earliest next attempt among `mails` (open ones).
pub fn next_due<'a>(mails: impl IntoIterator<Item = &'a ReceiptMail>) -> Option<DateTime<Utc>> {
    mails
        .into_iter()
        .filter(|m| m.state.is_open())
        .filter_map(|m| m.next_attempt_at)
        .min()
}

/// What the text of a receipt e-mail shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptFacts<'a> {
    /// The organization's name.
    pub organization_name: &'a str,
    /// Its fiscal code.
    pub organization_fiscal_code: &'a str,
    /// Notice number.
    pub notice_number: &'a str,
    /// IUV.
    pub iuv: &'a str,
    /// The payment's subject.
    pub description: &'a str,
    /// Amount paid, cents.
    pub amount_cents: i64,
    /// When it was paid (Europe/Rome wall clock).
    pub paid_at: NaiveDateTime,
    /// The PSP's name.
    pub psp: &'a str,
    /// receiptId.
    pub receipt_id: &'a str,
    /// The receipt PDF is attached.
    pub with_pdf: bool,
}

/// Subject and plain-text body of a receipt e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailText {
    /// Subject.
    pub subject: String,
    /// Body (plain text, UTF-8).
    pub body: String,
}

/// The Italian text of a receipt e-mail.
pub fn receipt_text(f: &ReceiptFacts<'_>) -> MailText {
    let amount = format_amount_it(f.amount_cents);
    let subject = format!(
        "Ricevuta di pagamento pagoPA – {} – avviso {}",
        f.organization_name, f.notice_number
    );
    let attached = if f.with_pdf {
        "In allegato trova la ricevuta in formato PDF e la ricevuta telematica pagoPA (XML)."
    } else {
        "In allegato trova la ricevuta telematica pagoPA (XML)."
    };
    let body = format!(
        "Gentile utente,\n\n\
         il pagamento di {amount} euro a favore di {org} (codice fiscale {cf}) è stato \
         eseguito con esito positivo.\n\n\
         Causale: {desc}\n\
         Codice avviso: {nav}\n\
         IUV: {iuv}\n\
         Data e ora del pagamento: {when}\n\
         Prestatore del servizio di pagamento: {psp}\n\
         Identificativo della ricevuta: {rid}\n\n\
         {attached}\n\
         Conservi questa ricevuta: attesta il pagamento.\n\n\
         Questo messaggio è stato inviato automaticamente: non risponda a questo indirizzo.\n",
        org = f.organization_name,
        cf = f.organization_fiscal_code,
        desc = f.description,
        nav = f.notice_number,
        iuv = f.iuv,
        when = f.paid_at.format("%d/%m/%Y %H:%M"),
        psp = f.psp,
        rid = f.receipt_id,
    );
    MailText { subject, body }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000 + s, 0).unwrap()
    }

    #[test]
    fn recipients_are_plausible_and_unique() {
        assert_eq!(
            recipients([
                Some(" Mario.Rossi@example.it "),
                None,
                Some("mario.rossi@EXAMPLE.it"),
                Some("not an address"),
                Some("anna@example.org"),
            ]),
            vec!["Mario.Rossi@example.it", "anna@example.org"]
        );
        assert!(recipients([None, Some(""), Some("x@y")]).is_empty());
        let many = ["a@x.it", "b@x.it", "c@x.it", "d@x.it", "e@x.it"];
        assert_eq!(recipients(many.map(Some)).len(), MAX_RECIPIENTS);
    }

    #[test]
    fn retries_until_the_horizon_then_fails() {
        let policy = DeliveryPolicy {
            backoff_base: chrono::Duration::seconds(10),
            backoff_max: chrono::Duration::seconds(60),
            horizon: chrono::Duration::seconds(100),
            ..DeliveryPolicy::default()
        };
        let m = ReceiptMail::of_receipt("r1", "80001234568", "3120", vec!["a@x.it".into()], t(0));
        assert!(m.is_due(t(0)));
        let r = m.retry_later(&policy, "connection refused", t(1), 1000);
        assert_eq!(r.state, MailState::Retrying);
        assert_eq!(r.next_attempt_at, Some(t(11)));
        assert!(!r.is_due(t(5)) && r.is_due(t(11)));
        assert_eq!(next_due([&m, &r]), Some(t(0)));
        let late = r.retry_later(&policy, "connection refused", t(100), 0);
        assert_eq!((late.state, late.attempts), (MailState::Failed, 2));
        assert!(!late.is_due(t(1000)));
        let again = late.resent(t(200));
        assert!(again.is_due(t(200)));
        assert_eq!(again.window_start, t(200));
        let sent = again.sent(t(201));
        assert_eq!((sent.state, sent.attempts), (MailState::Sent, 3));
        assert_eq!(sent.sent_at, Some(t(201)));
        assert!(next_due([&sent]).is_none());
        let refused = m.refused("550 no such user", t(2));
        assert_eq!(refused.state, MailState::Failed);
    }

    #[test]
    fn the_text_is_italian_with_the_facts() {
        let paid_at =
            NaiveDateTime::parse_from_str("2026-11-30 10:05:00", "%Y-%m-%d %H:%M:%S").unwrap();
        let f = ReceiptFacts {
            organization_name: "Comune di Borgo Demo",
            organization_fiscal_code: "80001234568",
            notice_number: "312000000000000099",
            iuv: "12000000000000099",
            description: "Loculo",
            amount_cents: 123_456,
            paid_at,
            psp: "Banca Demo",
            receipt_id: "tok-1",
            with_pdf: true,
        };
        let t = receipt_text(&f);
        assert_eq!(
            t.subject,
            "Ricevuta di pagamento pagoPA – Comune di Borgo Demo – avviso 312000000000000099"
        );
        assert!(t
            .body
            .contains("il pagamento di 1.234,56 euro a favore di Comune di Borgo Demo"));
        assert!(t
            .body
            .contains("Data e ora del pagamento: 30/11/2026 10:05"));
        assert!(t.body.contains("in formato PDF"));
        let xml_only = receipt_text(&ReceiptFacts {
            with_pdf: false,
            ..f
        });
        assert!(!xml_only.body.contains("PDF"));
    }
}
