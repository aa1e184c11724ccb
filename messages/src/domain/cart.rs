//! The citizen's cart (portal "Carrello", SPEC §3.3): what may go in it, when it is payable, when
//! it holds its notices, when it expires. Pure; `now` is always a parameter.
//!
//! pagoPA Checkout takes 1..5 notices per cart (`CartRequest.paymentNotices`, maxItems 5), no
//! duplicates, amounts in integer cents ≥ 1, and keeps a cart for about ten minutes. While a
//! cart is at Checkout its notices stay reserved; after that window, if no receipt arrived, the
//! cart is payable again.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Most notices in one cart (Checkout `paymentNotices` maxItems).
pub const MAX_ITEMS: usize = 5;
/// Longest `companyName` / `description` Checkout accepts.
pub const MAX_TEXT: usize = 140;

/// One notice in a cart: what Checkout receives and what our paGetPayment will answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CartItem {
    /// The organization's fiscal code (11 digits).
    pub organization: String,
    /// The organization's name (`companyName`).
    pub company_name: String,
    /// The 18-digit notice number.
    pub notice_number: String,
    /// The IUV (shown to the citizen).
    pub iuv: String,
    /// Amount in integer cents (≥ 1).
    pub amount_cents: i64,
    /// Causale (`description`).
    pub description: String,
    /// Due date (Europe/Rome business day), when the notice has one.
    pub due_date: Option<NaiveDate>,
    /// The position's iupd (to find it again).
    pub iupd: String,
}

/// Where a cart's checkout stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CartState {
    /// Being filled; payable when not empty.
    Open,
    /// Our POST /carts is on its way (saved before sending: after a crash we know it may have
    /// been received).
    CheckoutSending {
        /// When the POST started.
        at: DateTime<Utc>,
    },
    /// Checkout accepted the cart (302): the citizen is paying there.
    AtCheckout {
        /// When Checkout answered.
        at: DateTime<Utc>,
        /// Where the browser was sent.
        location: String,
    },
    /// Every item has its receipt.
    Paid {
        /// When the last receipt was seen.
        at: DateTime<Utc>,
    },
    /// Idle too long, or emptied by the expiry: nothing reserved any more.
    Expired {
        /// When.
        at: DateTime<Utc>,
    },
}

/// The last attempt to hand the cart to Checkout that did not end at Checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckoutFailure {
    /// When.
    pub at: DateTime<Utc>,
    /// What the citizen reads (Italian).
    pub message_it: String,
    /// Whether Checkout may have received the cart anyway (a timeout after sending): a new
    /// attempt creates a second Checkout session, said so in the cart.
    pub maybe_received: bool,
}

/// A cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cart {
    /// Unguessable id (also `idCart` at Checkout).
    pub id: String,
    /// Notices, in the order they were added.
    pub items: Vec<CartItem>,
    /// E-mail for Checkout's outcome message.
    pub email: Option<String>,
    /// Checkout state.
    pub state: CartState,
    /// How many times the cart was sent to Checkout.
    pub attempts: u32,
    /// Last failed attempt, if the cart is open again after it.
    pub last_failure: Option<CheckoutFailure>,
    /// Created (UTC).
    pub created_at: DateTime<Utc>,
    /// Last change (UTC): the idle clock.
    pub updated_at: DateTime<Utc>,
    /// Receipts stored by the station (paSendRT/V2) for the cart's notices: the only thing
    /// that makes an item, and the cart, paid (never the browser's return from Checkout).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receipts: Vec<ItemReceipt>,
}

/// The receipt of one item, as the station stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemReceipt {
    /// Organization.
    pub organization: String,
    /// Notice number.
    pub notice_number: String,
    /// The receipt's id (`receiptId`).
    pub receipt_id: String,
}

/// Why a cart refuses a change. Each has the Italian sentence the portal shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    /// Already [`MAX_ITEMS`] notices.
    #[error("the cart already holds {MAX_ITEMS} notices")]
    Full,
    /// The notice is already in this cart.
    #[error("the notice is already in the cart")]
    Duplicate,
    /// The notice is in another live cart.
    #[error("the notice is in another cart")]
    InAnotherCart,
    /// The cart is at Checkout, paid or expired.
    #[error("the cart cannot change now")]
    Locked,
    /// Nothing to pay.
    #[error("the cart is empty")]
    Empty,
    /// No such item.
    #[error("no such item in the cart")]
    NoSuchItem,
    /// Amount below one cent.
    #[error("the amount must be at least one cent")]
    BadAmount,
    /// The e-mail is not an address.
    #[error("not an e-mail address")]
    BadEmail,
    /// An item already has its receipt: paying the cart again would pay it twice.
    #[error("an item of the cart is already paid")]
    ItemPaid,
}

impl CartError {
    /// The sentence the citizen reads.
    pub fn message_it(&self) -> &'static str {
        match self {
            Self::Full => "Il carrello contiene già 5 avvisi, il massimo pagabile in un'unica transazione: paga questi oppure rimuovine uno.",
            Self::Duplicate => "L'avviso è già nel carrello.",
            Self::InAnotherCart => "L'avviso è già in un altro carrello in corso di pagamento: riprova tra qualche minuto.",
            Self::Locked => "Il carrello è in fase di pagamento o concluso e non può essere modificato.",
            Self::Empty => "Il carrello è vuoto.",
            Self::NoSuchItem => "L'avviso non è nel carrello.",
            Self::BadAmount => "L'importo deve essere di almeno 0,01 euro.",
            Self::BadEmail => "Indirizzo e-mail non valido (esempio: nome@dominio.it).",
            Self::ItemPaid => "Un avviso del carrello risulta già pagato (la ricevuta è arrivata): rimuovilo e paga gli altri.",
        }
    }
}

/// Timing rules of carts (configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CartTimers {
    /// An open cart untouched this long expires.
    pub idle: Duration,
    /// How long Checkout keeps a cart (notices stay reserved, then the cart is payable again).
    pub checkout_window: Duration,
}

impl Cart {
    /// A new empty open cart.
    pub fn new(id: impl Into<String>, now: DateTime<Utc>) -> Self {
        Cart {
            id: id.into(),
            items: Vec::new(),
            email: None,
            state: CartState::Open,
            attempts: 0,
            last_failure: None,
            created_at: now,
            updated_at: now,
            receipts: Vec::new(),
        }
    }

    /// The receipt id of the notice `notice_number` of `organization`, when it arrived.
    pub fn receipt_of(&self, organization: &str, notice_number: &str) -> Option<&str> {
        self.receipts
            .iter()
            .find(|r| r.organization == organization && r.notice_number == notice_number)
            .map(|r| r.receipt_id.as_str())
    }

    /// Whether every item has its receipt (and there is at least one item).
    pub fn all_receipts(&self) -> bool {
        !self.items.is_empty()
            && self
                .items
                .iter()
                .all(|i| self.receipt_of(&i.organization, &i.notice_number).is_some())
    }

    /// The station stored receipt `receipt_id` for a notice: kept when the notice is one of the
    /// cart's items (the first receipt wins; a later one is a double payment the station
    /// flags). When every item has its receipt the cart is paid, whatever its state (a receipt
    /// may arrive after Checkout's window reopened the cart). Returns whether the cart changed.
    pub fn record_receipt(
        &mut self,
        organization: &str,
        notice_number: &str,
        receipt_id: &str,
        now: DateTime<Utc>,
    ) -> bool {
        let ours = self
            .items
            .iter()
            .any(|i| i.organization == organization && i.notice_number == notice_number);
        let mut changed = false;
        if ours && self.receipt_of(organization, notice_number).is_none() {
            self.receipts.push(ItemReceipt {
                organization: organization.to_string(),
                notice_number: notice_number.to_string(),
                receipt_id: receipt_id.to_string(),
            });
            self.updated_at = now;
            changed = true;
        }
        if self.all_receipts() && !matches!(self.state, CartState::Paid { .. }) {
            self.mark_paid(now);
            changed = true;
        }
        changed
    }

    /// Sum of the items, cents.
    pub fn total_cents(&self) -> i64 {
        self.items.iter().map(|i| i.amount_cents).sum()
    }

    /// Whether items may be added or removed.
    pub fn is_open(&self) -> bool {
        self.state == CartState::Open
    }

    /// Adds a notice. Errors: [`CartError::Locked`], [`CartError::Full`],
    /// [`CartError::Duplicate`], [`CartError::BadAmount`].
    pub fn add(&mut self, item: CartItem, now: DateTime<Utc>) -> Result<(), CartError> {
        if !self.is_open() {
            return Err(CartError::Locked);
        }
        if self
            .items
            .iter()
            .any(|i| i.organization == item.organization && i.notice_number == item.notice_number)
        {
            return Err(CartError::Duplicate);
        }
        if self.items.len() >= MAX_ITEMS {
            return Err(CartError::Full);
        }
        if item.amount_cents < 1 {
            return Err(CartError::BadAmount);
        }
        self.items.push(item);
        self.updated_at = now;
        Ok(())
    }

    /// Removes the notice `notice_number` of `organization`.
    /// Errors: [`CartError::Locked`], [`CartError::NoSuchItem`].
    pub fn remove(
        &mut self,
        organization: &str,
        notice_number: &str,
        now: DateTime<Utc>,
    ) -> Result<CartItem, CartError> {
        if !self.is_open() {
            return Err(CartError::Locked);
        }
        let pos = self
            .items
            .iter()
            .position(|i| i.organization == organization && i.notice_number == notice_number)
            .ok_or(CartError::NoSuchItem)?;
        self.updated_at = now;
        self.receipts
            .retain(|r| !(r.organization == organization && r.notice_number == notice_number));
        Ok(self.items.remove(pos))
    }

    /// Sets (or clears, with an empty text) the e-mail for the outcome.
    /// Errors: [`CartError::Locked`], [`CartError::BadEmail`].
    pub fn set_email(&mut self, email: &str, now: DateTime<Utc>) -> Result<(), CartError> {
        if !self.is_open() {
            return Err(CartError::Locked);
        }
        let email = email.trim();
        if email.is_empty() {
            self.email = None;
        } else if valid_email(email) {
            self.email = Some(email.to_string());
        } else {
            return Err(CartError::BadEmail);
        }
        self.updated_at = now;
        Ok(())
    }

    /// Before POST /carts: the cart is saved in `CheckoutSending` first, so that a crash or a
    /// timeout leaves a trace that Checkout may have it. Errors: [`CartError::Locked`],
    /// [`CartError::Empty`].
    pub fn begin_checkout(&mut self, now: DateTime<Utc>) -> Result<(), CartError> {
        if !self.is_open() {
            return Err(CartError::Locked);
        }
        if self.items.is_empty() {
            return Err(CartError::Empty);
        }
        if self
            .items
            .iter()
            .any(|i| self.receipt_of(&i.organization, &i.notice_number).is_some())
        {
            return Err(CartError::ItemPaid);
        }
        self.state = CartState::CheckoutSending { at: now };
        self.attempts = self.attempts.saturating_add(1);
        self.updated_at = now;
        Ok(())
    }

    /// Checkout answered 302 to `location`.
    pub fn checkout_accepted(&mut self, location: String, now: DateTime<Utc>) {
        self.state = CartState::AtCheckout { at: now, location };
        self.last_failure = None;
        self.updated_at = now;
    }

    /// The POST failed: the cart is open (payable) again, with the reason kept.
    pub fn checkout_failed(
        &mut self,
        message_it: String,
        maybe_received: bool,
        now: DateTime<Utc>,
    ) {
        self.state = CartState::Open;
        self.last_failure = Some(CheckoutFailure {
            at: now,
            message_it,
            maybe_received,
        });
        self.updated_at = now;
    }

    /// Every item has a receipt: the cart is paid (only through [`Cart::record_receipt`]).
    fn mark_paid(&mut self, now: DateTime<Utc>) {
        self.state = CartState::Paid { at: now };
        self.updated_at = now;
    }

    /// Whether the cart holds its notices (so no other cart may take them): open and not idle
    /// past `timers.idle`, or sent to Checkout within `timers.checkout_window`.
    pub fn holds_notices(&self, now: DateTime<Utc>, timers: CartTimers) -> bool {
        match &self.state {
            CartState::Open => now - self.updated_at < timers.idle,
            CartState::CheckoutSending { at } | CartState::AtCheckout { at, .. } => {
                now - *at < timers.checkout_window
            }
            CartState::Paid { .. } | CartState::Expired { .. } => false,
        }
    }

    /// Applies the clock (the `CartSession` calls it on its timer and before every use):
    /// a checkout older than the window without every receipt → open again (Checkout dropped
    /// it); an open cart idle past `timers.idle` → expired. Returns whether the cart changed.
    pub fn apply_timers(&mut self, now: DateTime<Utc>, timers: CartTimers) -> bool {
        match &self.state {
            CartState::CheckoutSending { at } | CartState::AtCheckout { at, .. }
                if now - *at >= timers.checkout_window =>
            {
                let maybe = matches!(self.state, CartState::CheckoutSending { .. });
                self.state = CartState::Open;
                self.last_failure = Some(CheckoutFailure {
                    at: now,
                    message_it: if maybe {
                        "L'invio del carrello a pagoPA non si è concluso: se hai pagato, l'esito arriverà comunque; altrimenti puoi pagare di nuovo.".into()
                    } else {
                        "Il pagamento su pagoPA non si è concluso entro il tempo previsto: il carrello è di nuovo pagabile.".into()
                    },
                    maybe_received: maybe,
                });
                self.updated_at = now;
                true
            }
            CartState::Open if now - self.updated_at >= timers.idle => {
                self.state = CartState::Expired { at: now };
                true
            }
            _ => false,
        }
    }
}

/// A plausible e-mail address: one `@`, a local part, a domain with a dot, no spaces, ≤ 254.
pub fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= 254
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Why an amount typed by a citizen is not an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountInputError {
    /// Empty.
    #[error("missing amount")]
    Missing,
    /// Not digits with an optional comma (or dot) and up to two decimals.
    #[error("not an amount")]
    Shape,
    /// Zero.
    #[error("zero amount")]
    Zero,
    /// Above 999999999,99.
    #[error("amount too large")]
    TooLarge,
}

impl AmountInputError {
    /// The sentence next to the field.
    pub fn message_it(self) -> &'static str {
        match self {
            Self::Missing => "Inserisci l'importo.",
            Self::Shape => "Importo non valido: usa la virgola per i decimali, al massimo due (esempio: 15,32).",
            Self::Zero => "L'importo deve essere maggiore di zero.",
            Self::TooLarge => "Importo troppo alto.",
        }
    }
}

/// Parses an amount as Italians type it: `15,32`, `15`, `1.234,50` (dots as thousands
/// separators), `15.32` (a dot followed by one or two digits is read as the decimal point)
/// → integer cents.
pub fn parse_amount_it(input: &str) -> Result<i64, AmountInputError> {
    let s: String = input.trim().chars().filter(|c| *c != ' ').collect();
    if s.is_empty() {
        return Err(AmountInputError::Missing);
    }
    let (int, frac) = if let Some((i, f)) = s.split_once(',') {
        (i.replace('.', ""), f.to_string())
    } else if let Some((i, f)) = s.rsplit_once('.') {
        if f.len() <= 2 && !i.contains('.') {
            (i.to_string(), f.to_string())
        } else if f.len() == 3 {
            (s.replace('.', ""), String::new())
        } else {
            return Err(AmountInputError::Shape);
        }
    } else {
        (s.clone(), String::new())
    };
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(&int) || !digits(&frac) || frac.len() > 2 {
        return Err(AmountInputError::Shape);
    }
    if int.len() > 9 {
        return Err(AmountInputError::TooLarge);
    }
    let euros: i64 = int.parse().map_err(|_| AmountInputError::Shape)?;
    let cents: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().map_err(|_| AmountInputError::Shape)? * 10,
        _ => frac.parse().map_err(|_| AmountInputError::Shape)?,
    };
    let total = euros * 100 + cents;
    if total == 0 {
        return Err(AmountInputError::Zero);
    }
    Ok(total)
}

/// Cents as Italians read them: `1.234,50`.
pub fn format_amount_it(cents: i64) -> String {
    let neg = cents < 0;
    let c = cents.unsigned_abs();
    let euros = (c / 100).to_string();
    let mut grouped = String::new();
    for (i, ch) in euros.chars().enumerate() {
        if i > 0 && (euros.len() - i).is_multiple_of(3) {
            grouped.push('.');
        }
        grouped.push(ch);
    }
    format!("{}{},{:02}", if neg { "-" } else { "" }, grouped, c % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 3, 1, 10, 0, 0).unwrap() + Duration::minutes(min)
    }
    fn item(org: &str, nav: &str, cents: i64) -> CartItem {
        CartItem {
            organization: org.into(),
            company_name: "Comune".into(),
            notice_number: nav.into(),
            iuv: nav[1..].into(),
            amount_cents: cents,
            description: "TARI".into(),
            due_date: None,
            iupd: "X".into(),
        }
    }
    const TIMERS: CartTimers = CartTimers {
        idle: Duration::minutes(30),
        checkout_window: Duration::minutes(10),
    };

    #[test]
    fn five_items_no_duplicates_multi_beneficiary() {
        let mut c = Cart::new("c1", t(0));
        for n in 0..5 {
            let org = if n % 2 == 0 {
                "80001234568"
            } else {
                "01987654322"
            };
            c.add(item(org, &format!("30212000000000000{n}"), 100 + n), t(1))
                .unwrap();
        }
        assert_eq!(c.total_cents(), 510);
        assert_eq!(
            c.add(item("80001234568", "302120000000000009", 1), t(2)),
            Err(CartError::Full)
        );
        assert_eq!(
            c.add(item("80001234568", "302120000000000000", 1), t(2)),
            Err(CartError::Duplicate)
        );
        // same number, other organization: a different notice, but the cart is full
        c.remove("01987654322", "302120000000000001", t(3)).unwrap();
        assert_eq!(c.items.len(), 4);
        assert_eq!(
            c.remove("01987654322", "302120000000000001", t(3)),
            Err(CartError::NoSuchItem)
        );
        assert_eq!(
            c.add(item("80001234568", "302120000000000008", 0), t(3)),
            Err(CartError::BadAmount)
        );
    }

    #[test]
    fn checkout_locks_then_window_reopens() {
        let mut c = Cart::new("c1", t(0));
        assert_eq!(c.begin_checkout(t(0)), Err(CartError::Empty));
        c.add(item("80001234568", "302120000000000001", 100), t(0))
            .unwrap();
        c.begin_checkout(t(1)).unwrap();
        assert_eq!(c.attempts, 1);
        assert_eq!(
            c.add(item("80001234568", "302120000000000002", 1), t(1)),
            Err(CartError::Locked)
        );
        c.checkout_accepted("http://x/".into(), t(1));
        assert!(c.holds_notices(t(10), TIMERS));
        assert!(!c.apply_timers(t(10), TIMERS));
        assert!(!c.holds_notices(t(11), TIMERS));
        assert!(c.apply_timers(t(11), TIMERS));
        assert!(c.is_open());
        assert!(!c.last_failure.as_ref().unwrap().maybe_received);
        // idle expiry
        assert!(c.holds_notices(t(40), TIMERS));
        assert!(c.apply_timers(t(41), TIMERS));
        assert!(matches!(c.state, CartState::Expired { .. }));
        assert!(!c.holds_notices(t(41), TIMERS));
    }

    #[test]
    fn failed_post_keeps_cart_payable_and_says_if_received() {
        let mut c = Cart::new("c1", t(0));
        c.add(item("80001234568", "302120000000000001", 100), t(0))
            .unwrap();
        c.begin_checkout(t(1)).unwrap();
        c.checkout_failed("timeout".into(), true, t(2));
        assert!(c.is_open());
        assert!(c.last_failure.as_ref().unwrap().maybe_received);
        c.begin_checkout(t(3)).unwrap();
        assert_eq!(c.attempts, 2);
        // a crash while sending: the window reopens it, saying it may have been received
        assert!(c.apply_timers(t(13), TIMERS));
        assert!(c.last_failure.as_ref().unwrap().maybe_received);
    }

    #[test]
    fn paid_only_by_every_receipt_even_after_the_window() {
        let mut c = Cart::new("c1", t(0));
        c.add(item("80001234568", "302120000000000001", 100), t(0))
            .unwrap();
        c.add(item("01987654322", "302120000000000002", 200), t(0))
            .unwrap();
        c.begin_checkout(t(1)).unwrap();
        c.checkout_accepted("http://x/".into(), t(1));
        // a receipt of a notice that is not in the cart changes nothing
        assert!(!c.record_receipt("80001234568", "302120000000000009", "R0", t(2)));
        assert!(c.record_receipt("80001234568", "302120000000000001", "R1", t(2)));
        assert!(matches!(c.state, CartState::AtCheckout { .. }));
        // the same notice again: the first receipt stays
        assert!(!c.record_receipt("80001234568", "302120000000000001", "R9", t(3)));
        assert_eq!(
            c.receipt_of("80001234568", "302120000000000001"),
            Some("R1")
        );
        // Checkout's window reopens the cart; the half-paid cart cannot be sent again
        assert!(c.apply_timers(t(12), TIMERS));
        assert!(c.is_open());
        assert_eq!(c.begin_checkout(t(12)), Err(CartError::ItemPaid));
        // the last receipt arrives late: paid all the same
        assert!(c.record_receipt("01987654322", "302120000000000002", "R2", t(13)));
        assert!(matches!(c.state, CartState::Paid { .. }));
        assert!(!c.holds_notices(t(13), TIMERS));
        assert!(!c.record_receipt("01987654322", "302120000000000002", "R2", t(14)));
    }

    #[test]
    fn emails() {
        let mut c = Cart::new("c1", t(0));
        assert_eq!(c.set_email("mario", t(0)), Err(CartError::BadEmail));
        assert_eq!(c.set_email("a b@x.it", t(0)), Err(CartError::BadEmail));
        c.set_email(" mario.rossi@example.it ", t(0)).unwrap();
        assert_eq!(c.email.as_deref(), Some("mario.rossi@example.it"));
        c.set_email("", t(0)).unwrap();
        assert_eq!(c.email, None);
    }

    #[test]
    fn italian_amounts() {
        assert_eq!(parse_amount_it("15,32"), Ok(1532));
        assert_eq!(parse_amount_it(" 15 "), Ok(1500));
        assert_eq!(parse_amount_it("15,5"), Ok(1550));
        assert_eq!(parse_amount_it("1.234,50"), Ok(123450));
        assert_eq!(parse_amount_it("1.234"), Ok(123400));
        assert_eq!(parse_amount_it("15.32"), Ok(1532));
        assert_eq!(parse_amount_it(""), Err(AmountInputError::Missing));
        assert_eq!(parse_amount_it("0,00"), Err(AmountInputError::Zero));
        assert_eq!(parse_amount_it("15,321"), Err(AmountInputError::Shape));
        assert_eq!(parse_amount_it("-5"), Err(AmountInputError::Shape));
        assert_eq!(parse_amount_it("abc"), Err(AmountInputError::Shape));
        assert_eq!(
            parse_amount_it("1234567890"),
            Err(AmountInputError::TooLarge)
        );
        assert_eq!(format_amount_it(123450), "1.234,50");
        assert_eq!(format_amount_it(5), "0,05");
        assert_eq!(format_amount_it(35000), "350,00");
    }
}
