//! `ReceiptMailer` (issue 15): sends each stored receipt to its payer/debtor by e-mail — the
//! Italian text of [`mpay_messages::domain::mail::receipt_text`], the receipt PDF (from the
//! injected [`ReceiptPdf`] renderer) and the pagoPA receipt XML attached — over SMTP
//! (`lettre`: STARTTLS, TLS, or plain for a local relay).
//!
//! The queue is durable: the store enqueues the e-mail in the receipt's own unit of work
//! (`mail_open`), the mailer drains it. It is woken by the bus (a receipt stored, an e-mail
//! requeued), by its own timer at the next due attempt, and at start (what a previous run left
//! open, in-flight ones included, is sent again).
//!
//! Delivery is at least once: once the SMTP server has accepted a message (`250` after DATA)
//! the e-mail is marked SENT and that record is flushed before the next message is sent. If
//! the process dies between the server's acceptance and that flush, the e-mail is sent again
//! after the restart with the same `Message-ID` (one window per e-mail, at most one duplicate).
//!
//! Failures: no answer (connection refused, timeout, TLS) or a reply that concerns the server
//! rather than the message (421, AUTH) means the server is down: the e-mails due in this pass
//! get the failure recorded (backoff with jitter) without one connection each, so an outage
//! costs one connection attempt per pass, logged once. A permanent refusal of the message or
//! its address (501, 550–554) is FAILED at once; any other 4xx/5xx is retried. Past the
//! horizon an e-mail is FAILED; `POST …/email/resend` puts it back.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use mpay_messages::domain::delivery::DeliveryPolicy;
use mpay_messages::domain::mail::{next_due, receipt_text, MailState, ReceiptFacts, ReceiptMail};
use mpay_storage::{DurabilityPoint, ReceiptRepository as _, Store, StoredReceipt};
use rand::Rng as _;
use secrecy::{ExposeSecret as _, SecretString};

use crate::bus::{Bus, Delivery};
use crate::health::{ActorState, HealthRegistry};
use crate::watchdog::{ActorHandle, Watchdog};

/// Actor kind in `/health/actors`.
pub const KIND: &str = "ReceiptMailer";

/// Renders a stored receipt as PDF bytes; runs on a blocking thread. `Err`: why it could not
/// (the attempt is retried with backoff).
pub type ReceiptPdf = Arc<dyn Fn(&StoredReceipt) -> Result<Vec<u8>, String> + Send + Sync>;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// STARTTLS, required.
    Starttls,
    /// TLS from the first byte.
    Tls,
    /// None (local relay, tests).
    Plain,
}

/// The SMTP server (from `[mail]`).
#[derive(Clone)]
pub struct SmtpSettings {
    /// Host (and TLS name).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Protection.
    pub security: SmtpSecurity,
    /// Sender.
    pub from: String,
    /// AUTH user and password.
    pub credentials: Option<(String, SecretString)>,
    /// PEM of a further CA to trust.
    pub ca_pem: Option<Vec<u8>>,
    /// EHLO name.
    pub hello_name: String,
    /// Timeout of one SMTP exchange.
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("from", &self.from)
            .field(
                "user",
                &self
                    .credentials
                    .as_ref()
                    .map(|(u, _)| format!("{u} (password ***)")),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

type Transport = AsyncSmtpTransport<Tokio1Executor>;

impl SmtpSettings {
    /// The transport and the sender. Errors: a sender that is not an address, a CA PEM that
    /// cannot be used.
    pub fn transport(&self) -> Result<(Transport, Mailbox), String> {
        let from: Mailbox = self
            .from
            .trim()
            .parse()
            .map_err(|e| format!("sender {:?}: {e}", self.from))?;
        let tls = |host: &str| -> Result<TlsParameters, String> {
            let mut b = TlsParameters::builder(host.to_string());
            if let Some(pem) = &self.ca_pem {
                let c = Certificate::from_pem(pem).map_err(|e| format!("CA certificate: {e}"))?;
                b = b.add_root_certificate(c);
            }
            b.build_rustls().map_err(|e| format!("TLS: {e}"))
        };
        let security = match self.security {
            SmtpSecurity::Starttls => Tls::Required(tls(&self.host)?),
            SmtpSecurity::Tls => Tls::Wrapper(tls(&self.host)?),
            SmtpSecurity::Plain => Tls::None,
        };
        let mut b = Transport::builder_dangerous(self.host.trim())
            .port(self.port)
            .tls(security)
            .timeout(Some(self.timeout))
            .hello_name(ClientId::Domain(self.hello_name.clone()));
        if let Some((user, password)) = &self.credentials {
            b = b.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_string(),
            ));
        }
        Ok((b.build(), from))
    }
}

/// Retries and pass size (from `[mail]`).
#[derive(Debug, Clone, Copy)]
pub struct MailerSettings {
    /// Backoff and horizon (the breaker fields are not used).
    pub policy: DeliveryPolicy,
    /// Most e-mails sent per pass.
    pub batch: usize,
}

/// A receiptId usable in a file name and a Message-ID.
fn file_safe(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if out.is_empty() {
        "ricevuta".into()
    } else {
        out
    }
}

/// The message of a receipt's e-mail: text, PDF (when rendered) and XML attached. The
/// `Message-ID` is the same on every attempt of one sending window.
pub fn build_message(
    from: &Mailbox,
    mail: &ReceiptMail,
    receipt: &StoredReceipt,
    pdf: Option<Vec<u8>>,
) -> Result<Message, String> {
    let r = &receipt.receipt;
    let paid_at = receipt_paid_at(receipt);
    let text = receipt_text(&ReceiptFacts {
        organization_name: &r.company_name,
        organization_fiscal_code: &receipt.organization,
        notice_number: &receipt.notice_number,
        iuv: &r.creditor_reference_id,
        description: &r.description,
        amount_cents: r.payment_amount.cents(),
        paid_at,
        psp: &r.psp_company_name,
        receipt_id: &receipt.receipt_id,
        with_pdf: pdf.is_some(),
    });
    let name = file_safe(&receipt.receipt_id);
    let domain = from.email.domain().to_string();
    let mut b = Message::builder()
        .from(from.clone())
        .subject(text.subject)
        .message_id(Some(format!(
            "<ricevuta.{name}.{}@{domain}>",
            mail.window_start.timestamp_millis()
        )));
    for to in &mail.recipients {
        let mbox: Mailbox = to.parse().map_err(|e| format!("address {to:?}: {e}"))?;
        b = b.to(mbox);
    }
    let mut parts = MultiPart::mixed().singlepart(SinglePart::plain(text.body));
    if let Some(pdf) = pdf {
        parts = parts.singlepart(Attachment::new(format!("ricevuta-{name}.pdf")).body(
            pdf,
            ContentType::parse("application/pdf").map_err(|e| e.to_string())?,
        ));
    }
    // a receipt recovered from biz-events keeps pagoPA's JSON as its raw document
    let (ext, mime) = if receipt.recovered {
        ("json", "application/json")
    } else {
        ("xml", "application/xml")
    };
    parts = parts.singlepart(Attachment::new(format!("ricevuta-{name}.{ext}")).body(
        receipt.raw_xml.clone().into_bytes(),
        ContentType::parse(mime).map_err(|e| e.to_string())?,
    ));
    b.multipart(parts).map_err(|e| format!("message: {e}"))
}

/// When the receipt was paid, Europe/Rome wall clock (as written in the receipt; else the
/// arrival).
fn receipt_paid_at(r: &StoredReceipt) -> chrono::NaiveDateTime {
    let written = r.receipt.payment_date_time.as_deref().and_then(|t| {
        let t = t.trim();
        DateTime::parse_from_rfc3339(t)
            .map(|d| mpay_messages::time::rome_datetime(d.with_timezone(&Utc)))
            .ok()
            .or_else(|| {
                let head = t.get(..19).unwrap_or(t);
                chrono::NaiveDateTime::parse_from_str(head, "%Y-%m-%dT%H:%M:%S").ok()
            })
    });
    written.unwrap_or_else(|| mpay_messages::time::rome_datetime(r.received_at))
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the server.
    Sent,
    /// Refused for good (this message or its addresses).
    Refused(String),
    /// Refused for now (4xx, another 5xx): this e-mail is retried.
    Later(String),
    /// The server is unreachable or refuses us (connection, TLS, timeout, 421, AUTH).
    ServerDown(String),
}

fn classify(e: &lettre::transport::smtp::Error) -> Outcome {
    let text = e.to_string();
    match e.status().map(|c| c.to_string()) {
        None => Outcome::ServerDown(text),
        Some(code) => match code.as_str() {
            "501" | "550" | "551" | "552" | "553" | "554" => Outcome::Refused(text),
            "421" | "530" | "534" | "535" | "538" | "454" => Outcome::ServerDown(text),
            _ => Outcome::Later(text),
        },
    }
}

/// Wake up: there may be work.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct WakeMailer;

/// The mailer of a node.
pub struct ReceiptMailer {
    inner: Arc<Inner>,
    running: bool,
    again: bool,
    timer: Option<SpawnHandle>,
}

struct Inner {
    transport: Transport,
    from: Mailbox,
    pdf: Option<ReceiptPdf>,
    store: Store,
    health: HealthRegistry,
    settings: MailerSettings,
    /// The server was unreachable at the last attempt (to log the change once).
    down: std::sync::atomic::AtomicBool,
}

impl ReceiptMailer {
    fn report(&self) {
        let b = self.inner.store.ledger.mail_backlog().unwrap_or_default();
        self.inner.health.heartbeat(KIND, "main", b.open);
        metrics::gauge!("mpay_mail_pending").set(b.open as f64);
        let oldest = b
            .oldest
            .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        metrics::gauge!("mpay_mail_oldest_pending_seconds").set(oldest);
    }

    fn start_pass(&mut self, ctx: &mut Context<Self>) {
        self.running = true;
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        let inner = self.inner.clone();
        ctx.spawn(
            async move { inner.pass().await }
                .into_actor(self)
                .map(|next, act, ctx| {
                    act.running = false;
                    act.report();
                    if std::mem::take(&mut act.again) {
                        ctx.notify(WakeMailer);
                    } else if let Some(at) = next {
                        let wait = (at - Utc::now())
                            .to_std()
                            .unwrap_or(Duration::ZERO)
                            .max(Duration::from_millis(5));
                        act.timer = Some(ctx.notify_later(WakeMailer, wait));
                    }
                }),
        );
    }
}

impl Actor for ReceiptMailer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        self.inner.health.register(KIND, "main", false);
        self.inner
            .health
            .set_state(KIND, "main", ActorState::Running);
        self.report();
        ctx.run_interval(Duration::from_secs(5), |this, _| this.report());
        // what a previous run left open (in-flight ones included) goes again
        ctx.notify(WakeMailer);
    }
}

impl Supervised for ReceiptMailer {}

impl Handler<WakeMailer> for ReceiptMailer {
    type Result = ();

    fn handle(&mut self, _: WakeMailer, ctx: &mut Self::Context) {
        if self.running {
            self.again = true;
        } else {
            self.start_pass(ctx);
        }
    }
}

impl Inner {
    /// Sends what is due; returns when to look again.
    async fn pass(&self) -> Option<DateTime<Utc>> {
        let retry_soon = || Some(Utc::now() + chrono::Duration::seconds(5));
        loop {
            let open = match self.store.blocking(|s| s.ledger.open_mails()).await {
                Ok(o) => o,
                Err(e) => {
                    self.health
                        .error(KIND, "main", &format!("mail queue not read: {e}"));
                    return retry_soon();
                }
            };
            let now = Utc::now();
            let due: Vec<ReceiptMail> = open
                .iter()
                .filter(|m| m.is_due(now))
                .take(self.settings.batch)
                .cloned()
                .collect();
            if due.is_empty() {
                return next_due(&open);
            }
            let mut rest = due.into_iter();
            while let Some(m) = rest.next() {
                let outcome = self.attempt(&m).await;
                let now = Utc::now();
                let jitter: u32 = rand::rng().random_range(0..=1000);
                let policy = &self.settings.policy;
                let after = match &outcome {
                    Outcome::Sent => {
                        if self.down.swap(false, std::sync::atomic::Ordering::Relaxed) {
                            tracing::info!(
                                "SMTP server reachable again; sending queued receipt e-mails"
                            );
                        }
                        metrics::counter!("mpay_mail_sent_total").increment(1);
                        let lag = (now - m.created_at).num_milliseconds().max(0) as f64 / 1000.0;
                        metrics::histogram!("mpay_mail_lag_seconds").record(lag);
                        m.sent(now)
                    }
                    Outcome::Refused(e) => {
                        tracing::warn!(receipt = %m.receipt_id, error = %e, "receipt e-mail refused by the SMTP server");
                        m.refused(e, now)
                    }
                    Outcome::Later(e) => {
                        tracing::debug!(receipt = %m.receipt_id, error = %e, "receipt e-mail deferred");
                        metrics::counter!("mpay_mail_attempt_failures_total", "reason" => "deferred").increment(1);
                        m.retry_later(policy, e, now, jitter)
                    }
                    Outcome::ServerDown(e) => {
                        if !self.down.swap(true, std::sync::atomic::Ordering::Relaxed) {
                            tracing::warn!(error = %e, "SMTP server unreachable; receipt e-mails wait in the queue and are retried with backoff");
                        } else {
                            tracing::debug!(error = %e, "SMTP server still unreachable");
                        }
                        metrics::counter!("mpay_mail_attempt_failures_total", "reason" => "unreachable").increment(1);
                        m.retry_later(policy, e, now, jitter)
                    }
                };
                if after.state == MailState::Failed {
                    metrics::counter!("mpay_mail_failed_total").increment(1);
                    self.health.error(
                        KIND,
                        "main",
                        &format!(
                            "e-mail of receipt {} FAILED after {} attempts: {}",
                            m.receipt_id,
                            after.attempts,
                            after.last_error.as_deref().unwrap_or_default()
                        ),
                    );
                }
                if !self.record(&m, &after).await {
                    return retry_soon();
                }
                if outcome == Outcome::Sent {
                    // SENT reaches the disk before anything else is sent
                    if let Err(e) = self.store.durability.commit(DurabilityPoint::Mail).await {
                        self.health
                            .error(KIND, "main", &format!("mail queue flush failed: {e}"));
                    }
                }
                if let Outcome::ServerDown(e) = &outcome {
                    // the others due now would fail the same way: recorded without a connection
                    for other in rest.by_ref() {
                        let jitter: u32 = rand::rng().random_range(0..=1000);
                        let after = other.retry_later(policy, e, now, jitter);
                        if after.state == MailState::Failed {
                            metrics::counter!("mpay_mail_failed_total").increment(1);
                        }
                        if !self.record(&other, &after).await {
                            return retry_soon();
                        }
                    }
                    return match self.store.blocking(|s| s.ledger.open_mails()).await {
                        Ok(open) => next_due(&open),
                        Err(_) => retry_soon(),
                    };
                }
            }
        }
    }

    /// Writes an outcome (compare-and-swap: a resend meanwhile wins). `false`: the store
    /// refused it.
    async fn record(&self, before: &ReceiptMail, after: &ReceiptMail) -> bool {
        let (b, a) = (before.clone(), after.clone());
        match self
            .store
            .blocking(move |s| s.ledger.update_mail(&b, &a))
            .await
        {
            Ok(_) => true,
            Err(e) => {
                self.health
                    .error(KIND, "main", &format!("e-mail outcome not recorded: {e}"));
                false
            }
        }
    }

    /// One attempt: reads the receipt, renders its PDF off the async threads, sends.
    async fn attempt(&self, m: &ReceiptMail) -> Outcome {
        let id = m.receipt_id.clone();
        let receipt = match self.store.blocking(move |s| s.ledger.receipt(&id)).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Outcome::Refused(format!("receipt {} not in the store", m.receipt_id))
            }
            Err(e) => return Outcome::Later(format!("receipt not read: {e}")),
        };
        let pdf = match &self.pdf {
            Some(render) => {
                let (render, r) = (render.clone(), receipt.clone());
                match tokio::task::spawn_blocking(move || render(&r)).await {
                    Ok(Ok(bytes)) => Some(bytes),
                    Ok(Err(e)) => return Outcome::Later(format!("receipt PDF not rendered: {e}")),
                    Err(e) => return Outcome::Later(format!("receipt PDF not rendered: {e}")),
                }
            }
            None => None,
        };
        let message = match build_message(&self.from, m, &receipt, pdf) {
            Ok(msg) => msg,
            Err(e) => return Outcome::Refused(e),
        };
        match self.transport.send(message).await {
            Ok(_) => Outcome::Sent,
            Err(e) => classify(&e),
        }
    }
}

/// The mailer of a node: started under the watchdog, woken by the bus.
#[derive(Clone)]
pub struct Mailer {
    handle: ActorHandle<ReceiptMailer>,
}

impl Mailer {
    /// Starts the mailer under the watchdog (call before the watchdog starts). `pdf`: the
    /// receipt renderer (`None`: the e-mail carries the receipt XML only).
    /// Errors: settings that cannot make a transport (sender, CA).
    pub fn start(
        watchdog: &mut Watchdog,
        smtp: &SmtpSettings,
        settings: MailerSettings,
        pdf: Option<ReceiptPdf>,
        store: &Store,
        health: &HealthRegistry,
    ) -> Result<Self, String> {
        let (transport, from) = smtp.transport()?;
        let inner = Arc::new(Inner {
            transport,
            from,
            pdf,
            store: store.clone(),
            health: health.clone(),
            settings,
            down: std::sync::atomic::AtomicBool::new(false),
        });
        let handle = watchdog.watch(KIND, "main", move || {
            let inner = inner.clone();
            Supervisor::start(move |_| ReceiptMailer {
                inner,
                running: false,
                again: false,
                timer: None,
            })
        });
        Ok(Mailer { handle })
    }

    /// Wakes the mailer. A full mailbox already holds a wake-up.
    pub fn wake(&self) {
        let _ = self.handle.addr().try_send(WakeMailer);
    }

    /// Wakes the mailer on the bus's receipt and requeue events, until the bus closes.
    pub fn listen(&self, bus: Arc<dyn Bus>) {
        let this = self.clone();
        actix::spawn(async move {
            let durable = format!(
                "receipt-mailer-{}",
                crate::ente_connector::consumer_name(bus.node())
            );
            let filters = ["mpay.v1.receipt.stored.>", "mpay.v1.mail.requeued.>"];
            let mut consumer = loop {
                match bus.consume(&durable, &filters).await {
                    Ok(c) => break c,
                    Err(e) => {
                        tracing::warn!(error = %e, "bus consumer of the mailer not ready; again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            // what was published before the consumer existed is in the queue: send it
            this.wake();
            loop {
                match consumer.next().await {
                    Ok(Delivery::Job(job)) => {
                        this.wake();
                        actix::spawn(async move {
                            if let Err(e) = job.ack().await {
                                tracing::debug!(error = %e, "wake-up not acked (handed out again: harmless)");
                            }
                        });
                    }
                    Ok(Delivery::Lagged) => this.wake(),
                    Ok(Delivery::Closed) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "bus consumer of the mailer failed; again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn file_names_and_message_ids_are_safe() {
        assert_eq!(file_safe("tok-1/../x y"), "tok-1____x_y");
        assert_eq!(file_safe("à"), "_");
        assert_eq!(file_safe(""), "ricevuta");
    }

    #[test]
    fn the_password_is_not_printed() {
        let s = SmtpSettings {
            host: "smtp.example.it".into(),
            port: 587,
            security: SmtpSecurity::Starttls,
            from: "ricevute@example.it".into(),
            credentials: Some(("mpay".into(), SecretString::from("s3cr3t-smtp"))),
            ca_pem: None,
            hello_name: "mpay-1".into(),
            timeout: Duration::from_secs(5),
        };
        let shown = format!("{s:?}");
        assert!(shown.contains("mpay (password ***)") && !shown.contains("s3cr3t"));
        assert!(s.transport().is_ok());
        let bad = SmtpSettings {
            from: "nobody".into(),
            ..s
        };
        assert!(bad.transport().is_err());
    }
}
