//! `CartSession`: one actor per citizen cart (DESIGN §5). It owns the cart's state, applies the
//! domain rules (`mpay_messages::domain::cart`), saves every change in the [`CartStore`] before
//! answering (a restart or SIGKILL loses no cart), runs the cart's timers (Checkout window, idle
//! expiry) and hands the cart to pagoPA Checkout through the [`NodeChannel`].
//!
//! [`CartRegistry`] starts sessions (new carts, or carts reloaded from the store after a restart
//! or when a session died), lists each in the health registry as `CartSession/<id>`, and is
//! what the portal talks to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use mpay_messages::domain::cart::{Cart, CartError, CartItem, CartState, CartTimers};
use mpay_storage::carts::{CartStore, CartStoreError};

use crate::health::{ActorState, HealthRegistry};
use crate::node_channel::{CheckoutCart, CheckoutNotice, NodeChannel, PostCart, ReturnUrls};
use crate::watchdog::ActorHandle;

/// Why a cart operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartOpError {
    /// A domain rule refused it.
    #[error(transparent)]
    Rule(#[from] CartError),
    /// Checkout did not take the cart (the cart is open again).
    #[error("checkout: {0}")]
    Checkout(String),
    /// The store failed.
    #[error("storage: {0}")]
    Storage(String),
    /// The session is gone.
    #[error("cart session unavailable")]
    Unavailable,
}

impl CartOpError {
    /// The sentence the citizen reads.
    pub fn message_it(&self) -> String {
        match self {
            Self::Rule(e) => e.message_it().to_string(),
            Self::Checkout(m) => m.clone(),
            Self::Storage(_) | Self::Unavailable => {
                "Si è verificato un errore interno: riprova tra qualche minuto.".into()
            }
        }
    }
}

fn store_error(e: CartStoreError) -> CartOpError {
    match e {
        CartStoreError::NoticeInAnotherCart { .. } => CartOpError::Rule(CartError::InAnotherCart),
        CartStoreError::Storage(s) => CartOpError::Storage(s.to_string()),
    }
}

/// What a session answers: the cart after the operation.
pub type CartReply = Result<Cart, CartOpError>;

/// Read the cart.
#[derive(Debug, Message)]
#[rtype(result = "CartReply")]
pub struct GetCart;

/// Add a notice.
#[derive(Debug, Message)]
#[rtype(result = "CartReply")]
pub struct AddItem(pub CartItem);

/// Remove a notice.
#[derive(Debug, Message)]
#[rtype(result = "CartReply")]
pub struct RemoveItem {
    /// Organization.
    pub organization: String,
    /// Notice number.
    pub notice_number: String,
}

/// Set the e-mail for the outcome.
#[derive(Debug, Message)]
#[rtype(result = "CartReply")]
pub struct SetEmail(pub String);

/// Send the cart to Checkout. `Ok` carries the cart in `AT_CHECKOUT` (its `location`).
#[derive(Debug, Message)]
#[rtype(result = "CartReply")]
pub struct StartCheckout {
    /// Our return URLs (they carry the cart id).
    pub return_urls: ReturnUrls,
    /// All transfers on postal IBANs.
    pub all_postal: bool,
}

/// The station stored a receipt for one of the cart's notices (paSendRT/V2). The cart is
/// paid when every item has one: never because the browser came back from Checkout.
#[derive(Debug, Message)]
#[rtype(result = "CartReply")]
pub struct ReceiptStored {
    /// Organization.
    pub organization: String,
    /// Notice number.
    pub notice_number: String,
    /// `receiptId`.
    pub receipt_id: String,
}

/// Look the receipts of the cart's unpaid items up in the receipt store (the outcome page, a
/// session resumed after a restart), then answer the cart.
#[derive(Debug, Message)]
#[rtype(result = "CartReply")]
pub struct CheckReceipts;

/// Finds the receipt the station stored for a notice: `(organization, notice number)` → the
/// first `receiptId`. Given by the composition root (the receipt repository).
pub type ReceiptLookup = Arc<dyn Fn(&str, &str) -> Option<String> + Send + Sync>;

/// Checkout sent the citizen back without paying (cancel or error URL): the cart is open
/// again with this message. Receipts that arrive anyway are still booked by the station.
#[derive(Debug, Message)]
#[rtype(result = "CartReply")]
pub struct Reopen(pub String);

/// One cart's actor.
pub struct CartSession {
    cart: Cart,
    store: CartStore,
    timers: CartTimers,
    tick: Duration,
    health: HealthRegistry,
    node: ActorHandle<NodeChannel>,
    receipts: ReceiptLookup,
}

impl CartSession {
    fn save(&mut self, next: Cart) -> CartReply {
        self.store
            .save(&next, Utc::now(), self.timers)
            .map_err(store_error)?;
        self.cart = next;
        self.health.heartbeat("CartSession", &self.cart.id, 0);
        Ok(self.cart.clone())
    }

    /// Records the receipts the store has for items without one; saves when something
    /// changed. Only for carts that went to Checkout at least once (others cannot be paid).
    fn check_receipts(&mut self) {
        if self.cart.attempts == 0
            || matches!(
                self.cart.state,
                CartState::Paid { .. } | CartState::Expired { .. }
            )
        {
            return;
        }
        let mut next = self.cart.clone();
        let now = Utc::now();
        let mut changed = false;
        for item in &self.cart.items {
            if next
                .receipt_of(&item.organization, &item.notice_number)
                .is_some()
            {
                continue;
            }
            if let Some(r) = (self.receipts)(&item.organization, &item.notice_number) {
                changed |= next.record_receipt(&item.organization, &item.notice_number, &r, now);
            }
        }
        if changed {
            if let Err(e) = self.save(next) {
                self.health
                    .error("CartSession", &self.cart.id, &e.to_string());
            }
        }
    }

    /// Applies the receipts the store has, then the timers (a paid cart is never reopened by
    /// Checkout's window); saves when they changed something.
    fn tick(&mut self) {
        self.check_receipts();
        let mut next = self.cart.clone();
        if next.apply_timers(Utc::now(), self.timers) {
            if let Err(e) = self.save(next) {
                self.health
                    .error("CartSession", &self.cart.id, &e.to_string());
            }
        }
    }

    fn change(&mut self, f: impl FnOnce(&mut Cart) -> Result<(), CartError>) -> CartReply {
        self.tick();
        let mut next = self.cart.clone();
        f(&mut next)?;
        self.save(next)
    }

    fn finished(&self) -> bool {
        matches!(
            self.cart.state,
            CartState::Paid { .. } | CartState::Expired { .. }
        )
    }
}

impl Actor for CartSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        let id = self.cart.id.clone();
        self.health.register("CartSession", &id, false);
        self.health
            .set_state("CartSession", &id, ActorState::Running);
        self.health.heartbeat("CartSession", &id, 0);
        // a session resumed after a restart: receipts stored meanwhile count at once
        self.tick();
        ctx.run_interval(self.tick, |this, ctx| {
            this.tick();
            this.health.heartbeat("CartSession", &this.cart.id, 0);
            if this.finished() {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.health.unregister("CartSession", &self.cart.id);
    }
}

impl Supervised for CartSession {}

impl Handler<GetCart> for CartSession {
    type Result = CartReply;
    fn handle(&mut self, _: GetCart, _: &mut Self::Context) -> CartReply {
        self.tick();
        Ok(self.cart.clone())
    }
}

impl Handler<AddItem> for CartSession {
    type Result = CartReply;
    fn handle(&mut self, msg: AddItem, _: &mut Self::Context) -> CartReply {
        self.change(|c| c.add(msg.0, Utc::now()))
    }
}

impl Handler<RemoveItem> for CartSession {
    type Result = CartReply;
    fn handle(&mut self, msg: RemoveItem, _: &mut Self::Context) -> CartReply {
        self.change(|c| {
            c.remove(&msg.organization, &msg.notice_number, Utc::now())
                .map(|_| ())
        })
    }
}

impl Handler<SetEmail> for CartSession {
    type Result = CartReply;
    fn handle(&mut self, msg: SetEmail, _: &mut Self::Context) -> CartReply {
        self.change(|c| c.set_email(&msg.0, Utc::now()))
    }
}

impl Handler<Reopen> for CartSession {
    type Result = CartReply;
    fn handle(&mut self, msg: Reopen, _: &mut Self::Context) -> CartReply {
        if !matches!(self.cart.state, CartState::AtCheckout { .. }) {
            return Ok(self.cart.clone());
        }
        let mut next = self.cart.clone();
        next.checkout_failed(msg.0, false, Utc::now());
        self.save(next)
    }
}

impl Handler<ReceiptStored> for CartSession {
    type Result = CartReply;
    fn handle(&mut self, msg: ReceiptStored, ctx: &mut Self::Context) -> CartReply {
        let mut next = self.cart.clone();
        if !next.record_receipt(
            &msg.organization,
            &msg.notice_number,
            &msg.receipt_id,
            Utc::now(),
        ) {
            return Ok(self.cart.clone());
        }
        let r = self.save(next);
        if r.is_ok() && self.finished() {
            ctx.stop();
        }
        r
    }
}

impl Handler<CheckReceipts> for CartSession {
    type Result = CartReply;
    fn handle(&mut self, _: CheckReceipts, _: &mut Self::Context) -> CartReply {
        self.tick();
        Ok(self.cart.clone())
    }
}

impl Handler<StartCheckout> for CartSession {
    type Result = AtomicResponse<Self, CartReply>;

    fn handle(&mut self, msg: StartCheckout, _: &mut Self::Context) -> Self::Result {
        // saved as CHECKOUT_SENDING before the POST leaves
        let started = self.change(|c| c.begin_checkout(Utc::now()));
        let cart = match started {
            Ok(c) => c,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
        };
        let body = CheckoutCart {
            payment_notices: cart
                .items
                .iter()
                .map(|i| CheckoutNotice {
                    notice_number: i.notice_number.clone(),
                    fiscal_code: i.organization.clone(),
                    amount: i.amount_cents,
                    company_name: i.company_name.chars().take(140).collect(),
                    description: i.description.chars().take(140).collect(),
                })
                .collect(),
            return_urls: msg.return_urls,
            id_cart: cart.id.clone(),
            email_notice: cart.email.clone(),
            all_c_c_p: msg.all_postal,
        };
        let node = self.node.addr();
        AtomicResponse::new(Box::pin(
            async move {
                match node.send(PostCart(body)).await {
                    Ok(r) => r,
                    Err(_) => Err(crate::node_channel::ChannelError::Unavailable),
                }
            }
            .into_actor(self)
            .map(|result, this, _| {
                let mut next = this.cart.clone();
                let now = Utc::now();
                match result {
                    Ok(location) => {
                        next.checkout_accepted(location, now);
                        this.save(next)
                    }
                    Err(e) => {
                        let message = e.message_it();
                        next.checkout_failed(message.clone(), e.maybe_received(), now);
                        this.save(next)?;
                        Err(CartOpError::Checkout(message))
                    }
                }
            }),
        ))
    }
}

/// Starts and finds cart sessions. Cheap to clone.
#[derive(Clone)]
pub struct CartRegistry {
    inner: Arc<RegistryInner>,
}

struct RegistryInner {
    store: CartStore,
    timers: CartTimers,
    tick: Duration,
    health: HealthRegistry,
    node: ActorHandle<NodeChannel>,
    receipts: ReceiptLookup,
    sessions: Mutex<HashMap<String, Addr<CartSession>>>,
}

/// A new unguessable cart id: 128 random bits, hex.
pub fn new_cart_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl CartRegistry {
    /// A registry over `store`; `tick` is how often sessions apply their timers; `receipts`
    /// finds the receipt the station stored for a notice.
    pub fn new(
        store: CartStore,
        timers: CartTimers,
        tick: Duration,
        health: HealthRegistry,
        node: ActorHandle<NodeChannel>,
        receipts: ReceiptLookup,
    ) -> Self {
        CartRegistry {
            inner: Arc::new(RegistryInner {
                store,
                timers,
                tick,
                health,
                node,
                receipts,
                sessions: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The cart timing rules.
    pub fn timers(&self) -> CartTimers {
        self.inner.timers
    }

    /// The store (read-only uses: who holds a notice).
    pub fn store(&self) -> &CartStore {
        &self.inner.store
    }

    fn spawn(&self, cart: Cart) -> Addr<CartSession> {
        let i = &self.inner;
        let (store, timers, tick, health, node, receipts) = (
            i.store.clone(),
            i.timers,
            i.tick,
            i.health.clone(),
            i.node.clone(),
            i.receipts.clone(),
        );
        let id = cart.id.clone();
        let addr = Supervisor::start(move |_| CartSession {
            cart,
            store,
            timers,
            tick,
            health,
            node,
            receipts,
        });
        i.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, addr.clone());
        addr
    }

    /// Creates and saves a new empty cart; returns its id and session.
    ///
    /// Errors: the store failed.
    pub fn create(&self) -> Result<(String, Addr<CartSession>), CartOpError> {
        let cart = Cart::new(new_cart_id(), Utc::now());
        self.inner
            .store
            .save(&cart, Utc::now(), self.inner.timers)
            .map_err(store_error)?;
        let id = cart.id.clone();
        Ok((id, self.spawn(cart)))
    }

    /// The session of cart `id`: the running one, else reloaded from the store (after a restart
    /// or a crash of the session). `Ok(None)`: no such cart. Finished carts (paid, expired) get
    /// a short-lived session too, so reads go through one path.
    ///
    /// Errors: the store failed.
    pub fn session(&self, id: &str) -> Result<Option<Addr<CartSession>>, CartOpError> {
        if let Some(a) = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .filter(|a| a.connected())
        {
            return Ok(Some(a.clone()));
        }
        let Some(cart) = self
            .inner
            .store
            .get(id)
            .map_err(|e| CartOpError::Storage(e.to_string()))?
        else {
            return Ok(None);
        };
        Ok(Some(self.spawn(cart)))
    }

    /// Starts a session for every stored cart still in progress (node start-up). Returns how
    /// many.
    ///
    /// Errors: the store failed.
    pub fn resume_all(&self) -> Result<usize, CartOpError> {
        let carts = self
            .inner
            .store
            .all()
            .map_err(|e| CartOpError::Storage(e.to_string()))?;
        let mut n = 0;
        for c in carts {
            if !matches!(c.state, CartState::Paid { .. } | CartState::Expired { .. }) {
                self.spawn(c);
                n += 1;
            }
        }
        Ok(n)
    }

    /// The station stored receipt `receipt_id` for notice `notice_number` of `organization`
    /// (`payment_note`: the receipt's `paymentNote`, our cart id when the payment came through
    /// Checkout). Tells the cart that took the notice, found by the note or else by the
    /// notice index; returns its id. A receipt of a notice no cart took does nothing.
    ///
    /// Errors: the store failed.
    /// The e-mail address the citizen gave in the cart that took a notice (the receipt
    /// e-mail goes there): the cart named by the receipt's `paymentNote`, else the cart
    /// store's notice index. `None`: no cart, or no address.
    pub fn contact_email(
        &self,
        organization: &str,
        notice_number: &str,
        payment_note: Option<&str>,
    ) -> Option<String> {
        let store = &self.inner.store;
        let has = |c: &Cart| {
            c.items
                .iter()
                .any(|i| i.organization == organization && i.notice_number == notice_number)
        };
        let by_note = payment_note
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .and_then(|note| store.get(note).ok().flatten())
            .filter(|c| has(c));
        let cart = match by_note {
            Some(c) => c,
            None => {
                let id = store.cart_of_notice(organization, notice_number).ok()??;
                store.get(&id).ok()??
            }
        };
        cart.email
    }

    pub fn receipt_stored(
        &self,
        organization: &str,
        notice_number: &str,
        receipt_id: &str,
        payment_note: Option<&str>,
    ) -> Result<Option<String>, CartOpError> {
        let store = &self.inner.store;
        let has = |c: &Cart| {
            c.items
                .iter()
                .any(|i| i.organization == organization && i.notice_number == notice_number)
        };
        let by_note = match payment_note.map(str::trim).filter(|n| !n.is_empty()) {
            Some(note) => store
                .get(note)
                .map_err(|e| CartOpError::Storage(e.to_string()))?
                .filter(|c| has(c))
                .map(|c| c.id),
            None => None,
        };
        let id = match by_note {
            Some(id) => Some(id),
            None => store
                .cart_of_notice(organization, notice_number)
                .map_err(|e| CartOpError::Storage(e.to_string()))?,
        };
        let Some(id) = id else {
            return Ok(None);
        };
        if let Some(addr) = self.session(&id)? {
            addr.do_send(ReceiptStored {
                organization: organization.to_string(),
                notice_number: notice_number.to_string(),
                receipt_id: receipt_id.to_string(),
            });
        }
        Ok(Some(id))
    }

    /// Sends a message to cart `id`'s session. `Ok(None)`: no such cart.
    ///
    /// Errors: the session's answer, or [`CartOpError::Unavailable`].
    pub async fn ask<M>(&self, id: &str, msg: M) -> Result<Option<Cart>, CartOpError>
    where
        M: Message<Result = CartReply> + Send + 'static,
        CartSession: Handler<M>,
    {
        let Some(addr) = self.session(id)? else {
            return Ok(None);
        };
        match tokio::time::timeout(Duration::from_secs(60), addr.send(msg)).await {
            Ok(Ok(r)) => r.map(Some),
            _ => Err(CartOpError::Unavailable),
        }
    }
}
