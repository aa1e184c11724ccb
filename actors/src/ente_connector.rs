//! `EnteConnector` (DESIGN §5, issue 13): one actor per Ente with a notification endpoint. It
//! drains the Ente's outbox (written by the store in the receipt's own unit of work), delivers
//! each notification — signed JSON webhook or MPay's SOAP `notificaPagamento` — in order per
//! position, records the outcome durably, and retries with the domain's policy
//! ([`mpay_messages::domain::delivery`]: backoff with jitter, horizon, circuit breaker).
//!
//! It is woken by the bus ([`crate::bus`]: a receipt stored, a notification requeued) and by
//! its own timer at the next due attempt; at start it drains what is open (after a restart or
//! a crash). It never reads the ledger for changes.
//!
//! Reporting flows (INTERFACES.md §6.3): an Ente configured with `flows = true` also gets each
//! stored flow revision (a `REPORTING_FLOW` notification the store wrote with the flow) — SOAP
//! `inviaFlussoRend` or the signed webhook body [`ente_flow::FlowNotification`] — to its
//! `flows_url` (default: its notification URL), with the same retries, breaker and ack; the
//! ordering key is the flow id.
//!
//! Acknowledgement: HTTP 2xx (webhook) or `retcode 00` (SOAP). An acknowledged notification is
//! marked DELIVERED and flushed before the connector lets go of it (until then it stays in
//! hand and no read takes it or its position again); it is never delivered again by the
//! connector (only an operator's resend does that). If the process dies between the Ente's ack
//! and that flush, the notification is delivered again with the same `Idempotency-Key`
//! (at-least-once before our record of the ack, never after; at most `batch` of them).
//!
//! Outcomes: an answer that is not an ack but shows the endpoint alive (HTTP 4xx, `retcode
//! 01`, a SOAP Fault) is a failed attempt that leaves the breaker closed; no answer (connection
//! refused, timeout, HTTP 5xx without a SOAP answer) counts towards opening the breaker. While
//! the breaker is open nothing is sent; after its cool-down one probe goes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use mpay_messages::domain::delivery::{
    deliverable, next_due, Breaker, BreakerState, DeliveryPolicy, Notification, NotificationKind,
    NotificationState,
};
use mpay_messages::position::{DebtPosition, Origin};
use mpay_messages::wire::ente::{
    self, Estesi, NotificaPagamento, PagamentoSpontaneo, Pagato, PaymentNotification, TipoSpontaneo,
};
use mpay_messages::wire::ente_flow::{self, FlowNotification, InviaFlussoRend};
use mpay_messages::wire::receipt_json::ReceiptModel;
use mpay_messages::OrgFiscalCode;
use mpay_storage::reconciliation::StoredFlow;
use mpay_storage::{DurabilityPoint, PositionRepository, ReceiptRepository, Store, StoredReceipt};
use rand::Rng as _;

use crate::bus::{Bus, Delivery};
use crate::health::{ActorState, HealthRegistry};
use crate::watchdog::{ActorHandle, Watchdog};

/// Actor kind in `/health/actors`.
pub const KIND: &str = "EnteConnector";

/// The dialect and its secret.
#[derive(Clone)]
pub enum Dialect {
    /// Signed JSON webhook; the HMAC key.
    Webhook {
        /// HMAC-SHA256 key.
        secret: Vec<u8>,
    },
    /// SOAP `notificaPagamento`.
    Soap,
}

/// One Ente's endpoint (from `[organizations.notification]`).
#[derive(Clone)]
pub struct EnteEndpoint {
    /// The Ente (fiscal code).
    pub organization: String,
    /// MPay `codiceEnte` (SOAP `codiceEnte`; the fiscal code when not configured).
    pub codice_ente: String,
    /// Dialect.
    pub dialect: Dialect,
    /// URL.
    pub url: String,
    /// HTTP Basic user and password.
    pub basic: Option<(String, Option<String>)>,
    /// mTLS: PEM with the client certificate and its key.
    pub identity_pem: Option<Vec<u8>>,
    /// PEM of further CAs to trust.
    pub ca_pem: Option<Vec<u8>>,
    /// Timeout of one call.
    pub timeout: Duration,
    /// Where reporting flows go (`None`: the Ente does not get them).
    pub flows_url: Option<String>,
}

impl std::fmt::Debug for EnteEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnteEndpoint")
            .field("organization", &self.organization)
            .field(
                "dialect",
                &match self.dialect {
                    Dialect::Webhook { .. } => "webhook (secret ***)",
                    Dialect::Soap => "soap",
                },
            )
            .field("url", &self.url)
            .field("flows_url", &self.flows_url)
            .field("basic_user", &self.basic.as_ref().map(|(u, _)| u))
            .field("mtls", &self.identity_pem.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl EnteEndpoint {
    /// The HTTP client of this endpoint (rustls; client certificate and CA when configured).
    /// Errors: a PEM that cannot be used.
    pub fn client(&self) -> Result<reqwest::Client, String> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.timeout.min(Duration::from_secs(5)))
            .timeout(self.timeout);
        if let Some(pem) = &self.identity_pem {
            let id =
                reqwest::Identity::from_pem(pem).map_err(|e| format!("client certificate: {e}"))?;
            b = b.identity(id);
        }
        if let Some(pem) = &self.ca_pem {
            for c in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("CA certificate: {e}"))?
            {
                b = b.add_root_certificate(c);
            }
        }
        b.build().map_err(|e| format!("HTTP client: {e}"))
    }
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Acknowledged (HTTP 2xx / `retcode 00`).
    Ack,
    /// The endpoint answered but did not acknowledge (4xx, `retcode 01`, SOAP Fault).
    Refused(String),
    /// No usable answer (connection, timeout, 5xx): counts for the breaker.
    Unreachable(String),
}

/// The webhook body of a stored receipt.
pub fn webhook_body(n: &Notification, r: &StoredReceipt) -> PaymentNotification {
    PaymentNotification {
        notification_id: ente::idempotency_key(&n.organization, n.id),
        event: match n.kind {
            NotificationKind::PaymentReceipt => ente::PAYMENT_RECEIPT_EVENT,
            NotificationKind::PaymentRevocation => ente::PAYMENT_REVOKED_EVENT,
            // a flow has its own body (flow_webhook_body); never built from a receipt
            NotificationKind::ReportingFlow => ente_flow::REPORTING_FLOW_EVENT,
        }
        .into(),
        version: ente::WEBHOOK_VERSION,
        organization_fiscal_code: r.organization.clone(),
        iupd: r.iupd.clone(),
        notice_number: r.notice_number.clone(),
        iuv: r.receipt.creditor_reference_id.clone(),
        disposition: serde_json::to_value(r.disposition)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        operation: r.operation.clone(),
        received_at: r.received_at,
        receipt: ReceiptModel::from(&r.receipt),
    }
}

/// `dataPagamento` (`yyyyMMddHHmmss`, Europe/Rome): the receipt's payment time as written
/// (a local time is Rome's; an offset is converted), else the arrival.
pub fn data_pagamento(r: &StoredReceipt) -> String {
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
    written
        .unwrap_or_else(|| mpay_messages::time::rome_datetime(r.received_at))
        .format("%Y%m%d%H%M%S")
        .to_string()
}

/// `notificaPagamento` of a stored receipt (INTERFACES.md §6.1): a spontaneous payment (a
/// position the portal or a PSP demand created for a service) as `pagamentoSpontaneo`, any
/// other as `numeroAvvisoPagoPA`; the extended fields unless the URL is a *sanità* endpoint.
pub fn notifica(
    n: &Notification,
    r: &StoredReceipt,
    position: Option<&DebtPosition>,
    endpoint: &EnteEndpoint,
) -> NotificaPagamento {
    let rc = &r.receipt;
    let data = data_pagamento(r);
    let service = position.and_then(|p| match &p.origin {
        Origin::Portal { service } | Origin::PspDemand { service } => Some(service.clone()),
        _ => None,
    });
    let pagato = match service {
        Some(service) => {
            let d = &rc.debtor;
            let indirizzo = [d.street_name.as_deref(), d.civic_number.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            Pagato::Spontaneo(Box::new(PagamentoSpontaneo {
                denominazione: d.full_name.clone(),
                indirizzo,
                codice_belfiore_comune: String::new(),
                sigla_provincia: d.state_province_region.clone().unwrap_or_default(),
                cap: d.postal_code.clone().unwrap_or_default(),
                descrizione_tipologia_servizio: rc.description.clone(),
                codice_tipologia_servizio: service,
                tipo_spontaneo: TipoSpontaneo {
                    causale_servizio: rc.description.clone(),
                    anno_riferimento: data.get(..4).unwrap_or_default().to_string(),
                    cespite: String::new(),
                },
            }))
        }
        None => Pagato::Avviso(r.notice_number.clone()),
    };
    NotificaPagamento {
        codice_transazione: r.receipt_id.clone(),
        codice_dettaglio_transazione: n.id.to_string(),
        codice_ente: endpoint.codice_ente.clone(),
        codice_fiscale: rc.debtor.id_value.clone(),
        numero_documento: r.iupd.clone(),
        pagato,
        importo_pagato: rc.payment_amount.cents(),
        data_pagamento: data,
        // a receipt recovered from biz-events has no RT XML (its raw document is JSON)
        rt_xml: (!r.recovered).then(|| r.raw_xml.clone()),
        estesi: ente::sends_extended_fields(&endpoint.url).then(|| Estesi {
            iur: r.receipt_id.clone(),
            tassonomia: rc
                .transfers
                .first()
                .map(|t| t.transfer_category.clone())
                .unwrap_or_default(),
            iuv: rc.creditor_reference_id.clone(),
        }),
    }
}

fn brief(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", s.get(..i).unwrap_or(s)),
        None => s.to_string(),
    }
}

fn transport_error(e: &reqwest::Error) -> Attempt {
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    Attempt::Unreachable(format!("{what}: {e}"))
}

/// The webhook body of a stored reporting flow.
pub fn flow_webhook_body(n: &Notification, f: &StoredFlow) -> FlowNotification {
    FlowNotification::of(
        ente::idempotency_key(&n.organization, n.id),
        &n.organization,
        &f.flow,
        &f.source,
        f.acquired_at,
    )
}

/// What a notification carries, as read from the store.
#[derive(Debug, Clone)]
pub enum Subject {
    /// A receipt (payment or revocation) and, for SOAP, its position; `None`: not in the store.
    Receipt(Box<(Option<StoredReceipt>, Option<DebtPosition>)>),
    /// A reporting flow revision; `None`: not in the store.
    Flow(Option<Box<StoredFlow>>),
}

/// POSTs a signed webhook body.
async fn post_webhook(
    req: reqwest::RequestBuilder,
    secret: &[u8],
    n: &Notification,
    body: Result<Vec<u8>, serde_json::Error>,
) -> Attempt {
    let body = match body {
        Ok(b) => b,
        Err(e) => return Attempt::Refused(format!("body not encoded: {e}")),
    };
    let ts = Utc::now().timestamp();
    let resp = req
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(ente::TIMESTAMP_HEADER, ts.to_string())
        .header(ente::SIGNATURE_HEADER, ente::signature(secret, ts, &body))
        .header(
            ente::IDEMPOTENCY_HEADER,
            ente::idempotency_key(&n.organization, n.id),
        )
        .body(body)
        .send()
        .await;
    match resp {
        Ok(resp) if resp.status().is_success() => Attempt::Ack,
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            let e = format!("HTTP {status}: {}", brief(&text));
            if status >= 500 || status == 429 {
                Attempt::Unreachable(e)
            } else {
                Attempt::Refused(e)
            }
        }
        Err(e) => transport_error(&e),
    }
}

/// POSTs a SOAP envelope and reads the Ente's `retcode` with `decode`.
async fn post_soap(
    req: reqwest::RequestBuilder,
    body: String,
    decode: fn(&[u8]) -> Result<ente::Risultato, String>,
) -> Attempt {
    let resp = req
        .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .header("SOAPAction", "\"\"")
        .body(body)
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return transport_error(&e),
    };
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    match decode(&bytes) {
        Ok(ris) if ris.is_ack() && (200..300).contains(&status) => Attempt::Ack,
        Ok(ris) => Attempt::Refused(format!(
            "retcode {}: {}",
            ris.retcode,
            brief(&ris.retmessage)
        )),
        Err(e) if e.starts_with("SOAP Fault") => Attempt::Refused(e),
        Err(e) if status >= 500 || status == 429 => {
            Attempt::Unreachable(format!("HTTP {status}: {e}"))
        }
        Err(e) => Attempt::Refused(format!("HTTP {status}: {e}")),
    }
}

fn with_basic(
    client: &reqwest::Client,
    endpoint: &EnteEndpoint,
    url: &str,
) -> reqwest::RequestBuilder {
    let mut req = client.post(url);
    if let Some((user, password)) = &endpoint.basic {
        req = req.basic_auth(user, password.as_ref());
    }
    req
}

/// One attempt to deliver `n` (its receipt `r`) to `endpoint`.
pub async fn deliver(
    client: &reqwest::Client,
    endpoint: &EnteEndpoint,
    n: &Notification,
    r: &StoredReceipt,
    position: Option<&DebtPosition>,
) -> Attempt {
    let req = with_basic(client, endpoint, &endpoint.url);
    match &endpoint.dialect {
        Dialect::Webhook { secret } => {
            post_webhook(req, secret, n, serde_json::to_vec(&webhook_body(n, r))).await
        }
        Dialect::Soap => {
            let notifica = notifica(n, r, position, endpoint);
            let body = match n.kind {
                NotificationKind::PaymentReceipt => notifica.to_soap(),
                NotificationKind::PaymentRevocation => notifica.to_soap_revoca(None),
                NotificationKind::ReportingFlow => {
                    return Attempt::Refused("a reporting flow is not a receipt".into())
                }
            };
            post_soap(req, body, ente::decode_risultato).await
        }
    }
}

/// One attempt to forward the reporting flow `f` of notification `n` to `endpoint`'s
/// `flows_url`: the signed `REPORTING_FLOW` webhook, or `inviaFlussoRend` (Basic auth when
/// configured; `retcode 00` is the ack).
pub async fn deliver_flow(
    client: &reqwest::Client,
    endpoint: &EnteEndpoint,
    n: &Notification,
    f: &StoredFlow,
) -> Attempt {
    let Some(url) = endpoint.flows_url.as_deref() else {
        return Attempt::Refused(
            "reporting flows are not forwarded to this Ente (flows = false)".into(),
        );
    };
    let req = with_basic(client, endpoint, url);
    match &endpoint.dialect {
        Dialect::Webhook { secret } => {
            post_webhook(req, secret, n, serde_json::to_vec(&flow_webhook_body(n, f))).await
        }
        Dialect::Soap => {
            let body = InviaFlussoRend::of(&f.flow, &endpoint.codice_ente).to_soap();
            post_soap(req, body, ente_flow::decode_invia_flusso_response).await
        }
    }
}

/// One attempt for a notification and what it carries.
async fn attempt(
    client: &reqwest::Client,
    endpoint: &EnteEndpoint,
    n: &Notification,
    subject: &Subject,
) -> Attempt {
    match subject {
        Subject::Receipt(loaded) => match &**loaded {
            (Some(r), position) => deliver(client, endpoint, n, r, position.as_ref()).await,
            (None, _) => Attempt::Refused(format!("receipt {} not in the store", n.receipt_id)),
        },
        Subject::Flow(Some(f)) => deliver_flow(client, endpoint, n, f).await,
        Subject::Flow(None) => Attempt::Refused(format!(
            "reporting flow {} ({}) not in the store",
            n.receipt_id, n.notice_number
        )),
    }
}

/// Settings every connector shares.
#[derive(Debug, Clone, Copy)]
pub struct ConnectorSettings {
    /// Backoff, horizon, breaker.
    pub policy: DeliveryPolicy,
    /// Notifications held at once: read and not yet durably recorded (also the most a crash
    /// can have delivered again).
    pub batch: usize,
    /// Calls in flight at once (each for a different position).
    pub concurrency: usize,
}

/// Wake up: there may be work.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Wake;

/// The connector of one Ente.
pub struct EnteConnector {
    endpoint: Arc<EnteEndpoint>,
    client: reqwest::Client,
    store: Store,
    health: HealthRegistry,
    settings: ConnectorSettings,
    breaker: Option<Breaker>,
    running: bool,
    again: bool,
    timer: Option<SpawnHandle>,
}

impl EnteConnector {
    /// A connector (the client is built by [`EnteEndpoint::client`]).
    pub fn new(
        endpoint: Arc<EnteEndpoint>,
        client: reqwest::Client,
        store: Store,
        health: HealthRegistry,
        settings: ConnectorSettings,
    ) -> Self {
        EnteConnector {
            breaker: Some(Breaker::new(&settings.policy)),
            endpoint,
            client,
            store,
            health,
            settings,
            running: false,
            again: false,
            timer: None,
        }
    }

    fn org(&self) -> &str {
        &self.endpoint.organization
    }

    fn report(&self) {
        let org = self.org().to_string();
        let backlog = self.store.ledger.outbox_backlog(&org).unwrap_or_default();
        self.health.heartbeat(KIND, &org, backlog.open);
        let oldest = backlog
            .oldest
            .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        metrics::gauge!("mpay_ente_backlog", "organization" => org.clone())
            .set(backlog.open as f64);
        metrics::gauge!("mpay_ente_oldest_pending_seconds", "organization" => org.clone())
            .set(oldest);
        if let Some(b) = &self.breaker {
            metrics::gauge!("mpay_ente_breaker_state", "organization" => org)
                .set(b.state(Utc::now()).gauge());
        }
    }

    fn start_pass(&mut self, ctx: &mut Context<Self>) {
        let Some(breaker) = self.breaker.take() else {
            self.again = true;
            return;
        };
        self.running = true;
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        let pass = Pass {
            endpoint: self.endpoint.clone(),
            client: self.client.clone(),
            store: self.store.clone(),
            settings: self.settings,
            health: self.health.clone(),
        };
        ctx.spawn(
            pass.run(breaker)
                .into_actor(self)
                .map(|(breaker, next), act, ctx| {
                    act.breaker = Some(breaker);
                    act.running = false;
                    act.report();
                    if std::mem::take(&mut act.again) {
                        ctx.notify(Wake);
                    } else if let Some(at) = next {
                        let wait = (at - Utc::now())
                            .to_std()
                            .unwrap_or(Duration::ZERO)
                            .max(Duration::from_millis(5));
                        act.timer = Some(ctx.notify_later(Wake, wait));
                    }
                }),
        );
    }
}

impl Actor for EnteConnector {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        let org = self.org().to_string();
        self.health.register(KIND, &org, false);
        self.health.set_state(KIND, &org, ActorState::Running);
        self.report();
        ctx.run_interval(Duration::from_secs(5), |this, _| this.report());
        // drain what a previous run left open
        ctx.notify(Wake);
    }
}

impl Supervised for EnteConnector {}

impl Handler<Wake> for EnteConnector {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        if self.running {
            self.again = true;
        } else {
            self.start_pass(ctx);
        }
    }
}

/// One drain of the outbox, off the actor (it owns the breaker while it runs).
struct Pass {
    endpoint: Arc<EnteEndpoint>,
    client: reqwest::Client,
    store: Store,
    settings: ConnectorSettings,
    health: HealthRegistry,
}

type Loaded = (Notification, Subject);

/// One read of the outbox: what to deliver now (with what it carries) and when the earliest
/// of the notifications read that is not due yet becomes due.
struct Batch {
    ready: Vec<Loaded>,
    next: Option<DateTime<Utc>>,
}

/// A write of outcomes: their ids and whether they were recorded.
type Writing = BoxFuture<'static, (Vec<u64>, Result<(), String>)>;

/// What a pass waits for.
enum Event {
    /// A call ended.
    Done(Box<(Notification, Attempt)>),
    /// A read of the outbox ended.
    Read(Result<Batch, String>),
    /// A group of outcomes was written (and flushed when it held an ack): their ids.
    Wrote(Vec<u64>, Result<(), String>),
}

/// Reads the receipts (and, for SOAP, the positions) and the flows of `ready`.
fn load(
    s: &Store,
    ready: Vec<Notification>,
    soap: bool,
) -> Result<Vec<Loaded>, mpay_storage::LedgerError> {
    let mut out = Vec::with_capacity(ready.len());
    let mut positions: HashMap<String, Option<DebtPosition>> = HashMap::new();
    for n in ready {
        if n.kind == NotificationKind::ReportingFlow {
            let f = match n.flow_ref() {
                Some(fr) => s
                    .reconciliation
                    .flow_of(&n.organization, &fr)
                    .map_err(mpay_storage::LedgerError::Storage)?,
                None => None,
            };
            out.push((n, Subject::Flow(f.map(Box::new))));
            continue;
        }
        let r = s.ledger.receipt(&n.receipt_id)?;
        let p = match (&r, soap) {
            (Some(r), true) => match (&r.iupd, OrgFiscalCode::parse_unchecked(&r.organization)) {
                (Some(iupd), Ok(org)) => {
                    if let Some(p) = positions.get(iupd) {
                        p.clone()
                    } else {
                        let p = s.ledger.get(&org, iupd)?;
                        positions.insert(iupd.clone(), p.clone());
                        p
                    }
                }
                _ => None,
            },
            _ => None,
        };
        out.push((n, Subject::Receipt(Box::new((r, p)))));
    }
    Ok(out)
}

impl Pass {
    /// Delivers what is due; returns the breaker and when to look again.
    ///
    /// A pass is a pipeline of three steps that overlap: **read** (on a blocking thread: up to
    /// `batch` open notifications not already in hand, the first due one of each position
    /// ([`deliverable`]) whose position has nothing in hand, and their receipts — positions for
    /// SOAP), **deliver** (up to `concurrency` calls in flight, each for a different
    /// position), **write** (the outcomes that ended, one unit of work
    /// [`mpay_storage::SledLedger::update_notifications`], flushed with
    /// `Durability::commit(Notification)` when it holds an ack; one write at a time, so the
    /// outcomes that end during a write and its flush go together in the next one). The next
    /// read starts while calls are in flight, the write while the next calls go out.
    ///
    /// "In hand" are the notifications read and not yet written (queued, in flight, or with
    /// an outcome waiting for its write): at most `batch` of them, by id and position. A read
    /// passes over them and over every notification of their positions, so order per
    /// position holds (a position's next notification is read only after the earlier one's
    /// outcome is in the store) and nothing is sent twice within the process. They leave the
    /// hand only when their write (and flush) is done.
    ///
    /// Why grouping cannot lose a notification: an ack is recorded only after the Ente
    /// answered, and the record that closes the notification reaches the disk only with the
    /// flush of its write; a crash before it leaves the notification open in the durable store,
    /// so it is delivered again after the restart with the same `Idempotency-Key`
    /// (at-least-once before our durable record of the ack, as for a single write) — at most
    /// the `batch` in hand. A crash cannot make the store say DELIVERED for a call that was not
    /// acknowledged: the record is written only from an `Attempt::Ack`. Failures (RETRYING)
    /// lost in a crash only mean an earlier retry.
    ///
    /// The pass ends when a read finds nothing to deliver and no outcome was written since,
    /// or — after what is in flight ended and was written — when the breaker holds calls back
    /// or the store failed.
    async fn run(self, mut breaker: Breaker) -> (Breaker, Option<DateTime<Utc>>) {
        let org = self.endpoint.organization.clone();
        let concurrency = self.settings.concurrency.max(1);
        let window = self.settings.batch.max(1);
        let delivered =
            metrics::counter!("mpay_ente_deliveries_total", "organization" => org.clone());
        let lag = metrics::histogram!("mpay_ente_delivery_lag_seconds");
        let (client, endpoint) = (&self.client, &*self.endpoint);
        // in hand: id → position
        let mut hand: HashMap<u64, String> = HashMap::new();
        let mut queue: VecDeque<Loaded> = VecDeque::new();
        let mut in_flight = FuturesUnordered::new();
        let mut outcomes: Vec<(Notification, Notification)> = Vec::new();
        let mut acked = false;
        let mut reading: Option<BoxFuture<'static, Result<Batch, String>>> = None;
        let mut writing: Option<Writing> = None;
        // the last read found nothing to deliver / outcomes were written since it began
        let (mut exhausted, mut recorded) = (false, false);
        let mut next: Option<DateTime<Utc>> = None;
        let mut held_back = false;
        // the store failed: finish what is in flight, then come back at this time
        let mut retry: Option<DateTime<Utc>> = None;
        loop {
            while in_flight.len() < concurrency && !held_back && retry.is_none() {
                let Some((n, subject)) = queue.pop_front() else {
                    break;
                };
                if !breaker.admit(Utc::now()) {
                    // nothing leaves while the breaker is open; what is in flight ends
                    held_back = true;
                    break;
                }
                in_flight.push(async move {
                    let attempt = attempt(client, endpoint, &n, &subject).await;
                    Box::new((n, attempt))
                });
            }
            let halted =
                held_back || retry.is_some() || breaker.state(Utc::now()) == BreakerState::Open;
            if reading.is_none() && !halted && (!exhausted || recorded) {
                let room = window.saturating_sub(hand.len());
                if room > 0 && (room >= window.div_ceil(4) || queue.len() < concurrency) {
                    let skip: HashSet<u64> = hand.keys().copied().collect();
                    let positions: HashSet<String> = hand.values().cloned().collect();
                    reading = Some(self.read(skip, positions, room));
                    recorded = false;
                }
            }
            if writing.is_none() && !outcomes.is_empty() {
                writing =
                    Some(self.write(std::mem::take(&mut outcomes), std::mem::take(&mut acked)));
            }
            if in_flight.is_empty() && reading.is_none() && writing.is_none() {
                if let Some(at) = retry {
                    return (breaker, Some(at));
                }
                if halted {
                    metrics::gauge!("mpay_ente_breaker_state", "organization" => org.clone())
                        .set(breaker.state(Utc::now()).gauge());
                    // look again when the breaker half-opens (what was held back is due now)
                    let at = breaker.retry_at().or(next);
                    return (breaker, at);
                }
                if queue.is_empty() && exhausted && !recorded {
                    metrics::gauge!("mpay_ente_breaker_state", "organization" => org.clone())
                        .set(breaker.state(Utc::now()).gauge());
                    return (breaker, next);
                }
            }
            let event = std::future::poll_fn(|cx| {
                if let Some(f) = writing.as_mut() {
                    if let Poll::Ready((ids, r)) = f.as_mut().poll(cx) {
                        writing = None;
                        return Poll::Ready(Event::Wrote(ids, r));
                    }
                }
                if let Some(f) = reading.as_mut() {
                    if let Poll::Ready(r) = f.as_mut().poll(cx) {
                        reading = None;
                        return Poll::Ready(Event::Read(r));
                    }
                }
                match in_flight.poll_next_unpin(cx) {
                    Poll::Ready(Some(done)) => Poll::Ready(Event::Done(done)),
                    _ => Poll::Pending,
                }
            })
            .await;
            match event {
                Event::Wrote(ids, r) => {
                    for id in ids {
                        hand.remove(&id);
                    }
                    recorded = true;
                    if let Err(e) = r {
                        // the store refused the outcomes: not again at once (the Ente dedupes
                        // a repeat)
                        self.health.error(KIND, &org, &e);
                        retry = Some(Utc::now() + chrono::Duration::seconds(5));
                    }
                }
                Event::Read(Ok(batch)) => {
                    exhausted = batch.ready.is_empty();
                    next = batch.next;
                    for (n, subject) in batch.ready {
                        hand.insert(n.id, n.position.clone());
                        queue.push_back((n, subject));
                    }
                }
                Event::Read(Err(e)) => {
                    self.health.error(KIND, &org, &e);
                    retry = Some(Utc::now() + chrono::Duration::seconds(5));
                }
                Event::Done(done) => {
                    let (n, attempt) = *done;
                    let now = Utc::now();
                    let after = match &attempt {
                        Attempt::Ack => {
                            breaker.success();
                            acked = true;
                            delivered.increment(1);
                            lag.record(
                                (now - n.created_at).num_milliseconds().max(0) as f64 / 1000.0,
                            );
                            n.delivered(now)
                        }
                        Attempt::Refused(e) | Attempt::Unreachable(e) => {
                            self.failed(&mut breaker, &n, &attempt, e, now)
                        }
                    };
                    outcomes.push((n, after));
                }
            }
        }
    }

    /// A failed attempt: the breaker, the metrics, the notification's next state.
    fn failed(
        &self,
        breaker: &mut Breaker,
        n: &Notification,
        attempt: &Attempt,
        e: &str,
        now: DateTime<Utc>,
    ) -> Notification {
        let org = &self.endpoint.organization;
        let reason = if matches!(attempt, Attempt::Refused(_)) {
            breaker.success();
            "refused"
        } else {
            breaker.failure(now);
            "unreachable"
        };
        metrics::counter!("mpay_ente_delivery_failures_total", "organization" => org.clone(), "reason" => reason)
            .increment(1);
        tracing::warn!(organization = %org, notification = n.id, error = %e, "notification not acknowledged");
        let jitter: u32 = rand::rng().random_range(0..=1000);
        let f = n.failed(&self.settings.policy, e, now, jitter);
        if f.state == NotificationState::Failed {
            metrics::counter!("mpay_ente_notifications_failed_total", "organization" => org.clone())
                .increment(1);
            self.health.error(
                KIND,
                org,
                &format!(
                    "notification {} FAILED after {} attempts: {e}",
                    n.id, f.attempts
                ),
            );
        }
        f
    }

    /// Reads up to `limit` open notifications not in `skip`, keeps the first due one of each
    /// position not in `positions`, and loads what they carry (one blocking task).
    fn read(
        &self,
        skip: HashSet<u64>,
        positions: HashSet<String>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Batch, String>> {
        let org = self.endpoint.organization.clone();
        let soap = matches!(self.endpoint.dialect, Dialect::Soap);
        let store = self.store.clone();
        Box::pin(async move {
            store
                .blocking(move |s| {
                    let open = s.ledger.open_notifications_except(&org, &skip, limit)?;
                    let ready: Vec<Notification> = deliverable(&open, Utc::now())
                        .into_iter()
                        .filter(|n| !positions.contains(&n.position))
                        .cloned()
                        .collect();
                    let next = next_due(&open);
                    Ok::<_, mpay_storage::LedgerError>(Batch {
                        ready: load(s, ready, soap)?,
                        next,
                    })
                })
                .await
                .map_err(|e| format!("outbox not read: {e}"))
        })
    }

    /// Writes `outcomes` in one unit of work and, when one is an ack, makes them durable
    /// before the future ends (the acks recorded reach the disk before their ids leave the
    /// hand).
    fn write(&self, outcomes: Vec<(Notification, Notification)>, acked: bool) -> Writing {
        let (store, health) = (self.store.clone(), self.health.clone());
        let org = self.endpoint.organization.clone();
        let ids: Vec<u64> = outcomes.iter().map(|(n, _)| n.id).collect();
        Box::pin(async move {
            let written = store
                .blocking(move |s| s.ledger.update_notifications(&outcomes))
                .await;
            if let Err(e) = written {
                return (ids, Err(format!("outcomes not recorded: {e}")));
            }
            if acked {
                if let Err(e) = store.durability.commit(DurabilityPoint::Notification).await {
                    health.error(KIND, &org, &format!("outbox flush failed: {e}"));
                }
            }
            (ids, Ok(()))
        })
    }
}

/// The connectors of a node, by organization.
#[derive(Clone, Default)]
pub struct Connectors {
    by_org: Arc<HashMap<String, ActorHandle<EnteConnector>>>,
}

impl Connectors {
    /// Starts one connector per endpoint under the watchdog (call before the watchdog starts).
    /// Errors: an endpoint whose TLS material cannot be used (organization and reason).
    pub fn start(
        watchdog: &mut Watchdog,
        endpoints: Vec<EnteEndpoint>,
        store: &Store,
        health: &HealthRegistry,
        settings: ConnectorSettings,
    ) -> Result<Self, String> {
        let mut by_org = HashMap::new();
        for ep in endpoints {
            let client = ep
                .client()
                .map_err(|e| format!("organization {}: {e}", ep.organization))?;
            let org = ep.organization.clone();
            let ep = Arc::new(ep);
            let (store, health) = (store.clone(), health.clone());
            let handle = watchdog.watch(KIND, &org, move || {
                let (ep, client, store, health) =
                    (ep.clone(), client.clone(), store.clone(), health.clone());
                Supervisor::start(move |_| EnteConnector::new(ep, client, store, health, settings))
            });
            by_org.insert(org, handle);
        }
        Ok(Connectors {
            by_org: Arc::new(by_org),
        })
    }

    /// The organizations served.
    pub fn organizations(&self) -> impl Iterator<Item = &String> {
        self.by_org.keys()
    }

    /// Wakes the connector of `org` (if any). A full mailbox already holds a wake-up.
    pub fn wake(&self, org: &str) {
        if let Some(h) = self.by_org.get(org) {
            let _ = h.addr().try_send(Wake);
        }
    }

    /// Wakes every connector.
    pub fn wake_all(&self) {
        for h in self.by_org.values() {
            let _ = h.addr().try_send(Wake);
        }
    }

    /// Wakes connectors on the bus's events (a receipt stored, a notification requeued),
    /// read through the bus's durable consumer `ente-connectors-<node>` (over NATS a JetStream
    /// consumer: a wake-up published while this node was away is handed out when it is back);
    /// each event is acked once its connector was told. The outbox stays the durable record:
    /// an event acked or lost changes nothing that was delivered (spawned on the current
    /// runtime; ends when the bus closes).
    pub fn listen(&self, bus: Arc<dyn Bus>) {
        let this = self.clone();
        actix::spawn(async move {
            let durable = format!("ente-connectors-{}", consumer_name(bus.node()));
            let filters = [
                "mpay.v1.receipt.stored.>",
                "mpay.v1.notification.requeued.>",
                // a reporting flow may have queued revocations
                "mpay.v1.fdr.acquired.>",
            ];
            let mut consumer = loop {
                match bus.consume(&durable, &filters).await {
                    Ok(c) => break c,
                    Err(e) => {
                        tracing::warn!(error = %e, "bus consumer of the connectors not ready; again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            // what was published before the consumer existed is in the outbox: drain it
            this.wake_all();
            loop {
                match consumer.next().await {
                    Ok(Delivery::Job(job)) => {
                        match job.envelope() {
                            Ok(e) => this.wake(e.event.organization()),
                            Err(_) => this.wake_all(),
                        }
                        // acked aside: the next wake-up need not wait for the server
                        actix::spawn(async move {
                            if let Err(e) = job.ack().await {
                                tracing::debug!(error = %e, "wake-up not acked (handed out again: harmless)");
                            }
                        });
                    }
                    Ok(Delivery::Lagged) => this.wake_all(),
                    Ok(Delivery::Closed) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "bus consumer of the connectors failed; again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
}

/// A node id as a consumer-name token.
pub(crate) fn consumer_name(node: &str) -> String {
    node.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use mpay_messages::domain::ReceiptDisposition;
    use mpay_messages::wire::pafornode::{Receipt, ReceiptTransfer, Subject};
    use mpay_messages::Amount;

    fn stored(payment_date_time: Option<&str>) -> StoredReceipt {
        StoredReceipt {
            receipt_id: "tok-1".into(),
            organization: "80001234568".into(),
            id_pa: "80001234568".into(),
            id_station: "01987654322_01".into(),
            notice_number: "312000000000000099".into(),
            iupd: Some("IUPD-1".into()),
            operation: "paSendRTV2".into(),
            received_at: DateTime::parse_from_rfc3339("2026-07-01T08:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            disposition: ReceiptDisposition::Applied,
            raw_xml: "<x/>".into(),
            receipt: Receipt {
                receipt_id: "tok-1".into(),
                notice_number: "312000000000000099".into(),
                fiscal_code: "80001234568".into(),
                outcome: "OK".into(),
                creditor_reference_id: "12000000000000099".into(),
                payment_amount: Amount::from_cents(12345).unwrap(),
                description: "Loculo".into(),
                company_name: "Comune".into(),
                office_name: None,
                debtor: Subject {
                    kind: "F".into(),
                    id_value: "RSSMRA80A01H501U".into(),
                    full_name: "Mario Rossi".into(),
                    street_name: Some("Via Roma".into()),
                    civic_number: Some("1".into()),
                    postal_code: Some("60100".into()),
                    city: None,
                    state_province_region: Some("AN".into()),
                    country: None,
                    email: None,
                },
                transfers: vec![ReceiptTransfer {
                    id_transfer: 1,
                    amount: Amount::from_cents(12345).unwrap(),
                    fiscal_code_pa: "80001234568".into(),
                    company_name: None,
                    iban: None,
                    mbd_attachment: None,
                    marca_da_bollo: None,
                    marca_da_bollo_error: None,
                    remittance_information: "Tributo".into(),
                    transfer_category: "9/0201133IM/".into(),
                    metadata: vec![],
                }],
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
                payment_date_time: payment_date_time.map(str::to_string),
                application_date: None,
                transfer_date: None,
                metadata: vec![],
                stand_in: false,
            },
            flags: vec![],
            contact_email: None,
            recovered: false,
        }
    }

    fn endpoint(url: &str) -> EnteEndpoint {
        EnteEndpoint {
            organization: "80001234568".into(),
            codice_ente: "05671".into(),
            dialect: Dialect::Soap,
            url: url.into(),
            basic: None,
            identity_pem: None,
            ca_pem: None,
            timeout: Duration::from_secs(1),
            flows_url: None,
        }
    }

    #[test]
    fn payment_date_is_rome_wall_clock_in_mpay_format() {
        assert_eq!(
            data_pagamento(&stored(Some("2026-11-30T10:00:00"))),
            "20261130100000"
        );
        assert_eq!(
            data_pagamento(&stored(Some("2026-11-30T10:00:00.123+01:00"))),
            "20261130100000"
        );
        assert_eq!(
            data_pagamento(&stored(Some("2026-07-01T08:00:00Z"))),
            "20260701100000",
            "UTC to Rome summer time"
        );
        assert_eq!(
            data_pagamento(&stored(None)),
            "20260701100000",
            "the arrival"
        );
    }

    #[test]
    fn notifica_of_a_notice_and_of_a_spontaneous_payment() {
        let r = stored(Some("2026-11-30T10:00:00"));
        let n = Notification::of_receipt(
            9,
            "80001234568",
            "tok-1",
            &r.notice_number,
            "IUPD-1",
            r.received_at,
        );
        let x = notifica(&n, &r, None, &endpoint("http://ente/ws/notifica"));
        assert_eq!(x.pagato, Pagato::Avviso("312000000000000099".into()));
        assert_eq!(x.importo_pagato, 12345);
        assert_eq!(x.codice_ente, "05671");
        assert_eq!(x.codice_fiscale, "RSSMRA80A01H501U");
        assert_eq!(x.numero_documento.as_deref(), Some("IUPD-1"));
        assert_eq!(x.codice_dettaglio_transazione, "9");
        assert_eq!(x.rt_xml.as_deref(), Some("<x/>"));
        let e = x.estesi.unwrap();
        assert_eq!(
            (e.iur.as_str(), e.tassonomia.as_str(), e.iuv.as_str()),
            ("tok-1", "9/0201133IM/", "12000000000000099")
        );
        let sanita = notifica(
            &n,
            &r,
            None,
            &endpoint("http://ente/IntegraenteService/integraentesanita"),
        );
        assert!(sanita.estesi.is_none());

        let debtor = mpay_messages::position::Debtor::new(
            mpay_messages::FiscalCode::parse_unchecked("RSSMRA80A01H501U").unwrap(),
            "Mario Rossi",
        );
        let portal = DebtPosition::new(
            OrgFiscalCode::parse_unchecked("80001234568").unwrap(),
            "IUPD-1",
            debtor,
            "Comune",
            Origin::Portal {
                service: "AOC".into(),
            },
            r.received_at,
        );
        let x = notifica(&n, &r, Some(&portal), &endpoint("http://ente/ws/notifica"));
        let Pagato::Spontaneo(s) = x.pagato else {
            panic!("a portal payment is spontaneous")
        };
        assert_eq!(s.codice_tipologia_servizio, "AOC");
        assert_eq!(s.denominazione, "Mario Rossi");
        assert_eq!(s.indirizzo, "Via Roma 1");
        assert_eq!(s.cap, "60100");
        assert_eq!(s.tipo_spontaneo.anno_riferimento, "2026");
        assert_eq!(s.tipo_spontaneo.causale_servizio, "Loculo");
    }

    #[test]
    fn webhook_body_has_pagopa_names_and_cents() {
        let r = stored(Some("2026-11-30T10:00:00"));
        let n = Notification::of_receipt(
            9,
            "80001234568",
            "tok-1",
            &r.notice_number,
            "IUPD-1",
            r.received_at,
        );
        let v = serde_json::to_value(webhook_body(&n, &r)).unwrap();
        assert_eq!(v["notificationId"], "mpay-80001234568-9");
        assert_eq!(v["event"], "PAYMENT_RECEIPT");
        assert_eq!(v["disposition"], "APPLIED");
        assert_eq!(v["iupd"], "IUPD-1");
        assert_eq!(v["receipt"]["paymentAmount"], 12345);
        assert_eq!(v["receipt"]["transferList"][0]["transferAmount"], 12345);
        assert_eq!(
            v["receipt"]["debtor"]["entityUniqueIdentifierValue"],
            "RSSMRA80A01H501U"
        );
        assert_eq!(v["receipt"]["idPSP"], "88888888888");
    }
}
