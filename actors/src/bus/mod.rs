//! The message bus (DESIGN §5, issue 13): events published where facts become durable,
//! consumed by the actors that react to them, so that nothing polls the ledger for changes.
//!
//! [`Bus`] is the one interface, with two implementations: [`InProcessBus`] (the default, one
//! node: a tokio broadcast channel for events, channels for queue groups and requests, the
//! durable work queue in the node's sled store) and [`nats::NatsBus`] (`mpay serve --nats URL`:
//! core NATS for live events, queue groups and request/reply; JetStream streams and durable
//! pull consumers for durable events and work queues).
//!
//! The bus offers:
//! - [`Bus::publish`]: fire and forget (the fact is already durable in the store);
//! - [`Bus::subscribe`]: every event from now on, matching a subject filter;
//! - [`Bus::queue_subscribe`]: each matching event to one member of a group;
//! - [`Bus::consume`]: a durable consumer of events ([`Job`]s to ack): over NATS a JetStream
//!   durable consumer (events published while it was away are handed out when it is back; an
//!   acked event is never handed out again); in-process a live subscription whose acks are
//!   no-ops (one node: whatever it missed is in the store, which every consumer rereads when it
//!   starts or learns that it lagged);
//! - [`Bus::request`] / [`Bus::serve`]: request/reply, a request answered by one server;
//! - [`Bus::work_queue`]: a durable queue of work items, deduplicated by id, with ack and
//!   nak-with-delay (in-process in sled: `mpay_storage::SledWorkQueue`; over NATS a JetStream
//!   work-queue stream).
//!
//! An event is a wake-up, not the durable record: the durable record is the store (the Ente
//! outbox), so a subscriber that lags behind or starts late loses nothing — it is told it
//! lagged ([`Received::Lagged`]) and rereads its work from the store.
//!
//! Subjects are versioned, `mpay.v1.<kind>.<organization>` (kinds: [`Event::kind`]); work
//! queues `mpay.v1.work.<name>`; requests whatever subject a server serves (`mpay.v1.rpc.…`).
//! Envelopes carry id, type, schema version, node and timestamp.

pub mod nats;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};

/// Schema version of the envelopes and events.
pub const SCHEMA_VERSION: u32 = 1;

/// The first token of every event kind: the subjects `mpay.v1.<root>.>` hold the events (the
/// NATS events stream captures exactly these).
pub const EVENT_ROOTS: &[&str] = &["receipt", "notification", "position", "feed", "fdr", "mail"];

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Event {
    /// A receipt was stored and flushed (its notification, if any, is in the outbox).
    ReceiptStored {
        /// The Ente.
        organization: String,
        /// receiptId.
        receipt_id: String,
    },
    /// An operator put a notification back in the outbox.
    NotificationRequeued {
        /// The Ente.
        organization: String,
        /// Notification id.
        id: u64,
    },
    /// A debt position was created (stored and flushed).
    PositionCreated {
        /// The Ente.
        organization: String,
        /// The position.
        iupd: String,
    },
    /// A debt position was changed (update, publish, invalidate, …).
    PositionUpdated {
        /// The Ente.
        organization: String,
        /// The position.
        iupd: String,
    },
    /// A debt position was cancelled (deleted or invalidated).
    PositionCancelled {
        /// The Ente.
        organization: String,
        /// The position.
        iupd: String,
    },
    /// A feed load finished (committed and flushed).
    FeedLoaded {
        /// The Ente.
        organization: String,
        /// The feed's flow id.
        flow_id: String,
        /// Its final state (`LOADED`, `PARTIAL`, `FAILED`, …).
        state: String,
    },
    /// A reporting flow was acquired (stored).
    FdrAcquired {
        /// The Ente.
        organization: String,
        /// The flow id.
        flow_id: String,
    },
    /// An operator put a receipt's e-mail back in the mail queue.
    MailRequeued {
        /// The organization of the receipt.
        organization: String,
        /// receiptId.
        receipt_id: String,
    },
    /// A bank statement was imported (its new credits stored and flushed).
    BankStatementImported {
        /// The Ente.
        organization: String,
        /// Credits not seen before.
        new_credits: usize,
    },
    /// The `ReconciliationWorker` reconciled an organization (its summary is stored).
    ReconCompleted {
        /// The Ente.
        organization: String,
        /// Receipt transfers labelled.
        payments: usize,
        /// Flow rows without a receipt.
        rows_without_receipt: usize,
        /// Receipts past D+2 that no flow reports.
        unreported: usize,
    },
}

impl Event {
    /// The type name (the envelope's `type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ReceiptStored { .. } => "receipt.stored",
            Event::NotificationRequeued { .. } => "notification.requeued",
            Event::PositionCreated { .. } => "position.created",
            Event::PositionUpdated { .. } => "position.updated",
            Event::PositionCancelled { .. } => "position.cancelled",
            Event::FeedLoaded { .. } => "feed.loaded",
            Event::FdrAcquired { .. } => "fdr.acquired",
            Event::MailRequeued { .. } => "mail.requeued",
            // under the existing `fdr` root: a new root changes the NATS events stream's
            // subjects (an existing stream would need updating)
            Event::BankStatementImported { .. } => "fdr.statement_imported",
            Event::ReconCompleted { .. } => "fdr.reconciled",
        }
    }

    /// The organization it concerns.
    pub fn organization(&self) -> &str {
        match self {
            Event::ReceiptStored { organization, .. }
            | Event::NotificationRequeued { organization, .. }
            | Event::PositionCreated { organization, .. }
            | Event::PositionUpdated { organization, .. }
            | Event::PositionCancelled { organization, .. }
            | Event::FeedLoaded { organization, .. }
            | Event::FdrAcquired { organization, .. }
            | Event::MailRequeued { organization, .. }
            | Event::BankStatementImported { organization, .. }
            | Event::ReconCompleted { organization, .. } => organization,
        }
    }

    /// `mpay.v1.<kind>.<organization>` (a GPD-style `#code#` organization keeps its digits).
    pub fn subject(&self) -> String {
        let org: String = self
            .organization()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        format!("mpay.v{SCHEMA_VERSION}.{}.{org}", self.kind())
    }
}

/// An event as carried by the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Unique id (`<node>-<start>-<sequence>`).
    pub id: String,
    /// Subject.
    pub subject: String,
    /// Event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Schema version.
    pub version: u32,
    /// Node that published it.
    pub node: String,
    /// When (UTC).
    pub at: DateTime<Utc>,
    /// The event.
    pub event: Event,
}

/// Envelope ids: the node, the start of this process (ms) and a sequence, so that ids stay
/// unique across restarts (the NATS bus deduplicates by them).
struct Ids {
    node: String,
    start: i64,
    seq: AtomicU64,
}

impl Ids {
    fn new(node: &str) -> Self {
        Ids {
            node: node.to_string(),
            start: Utc::now().timestamp_millis(),
            seq: AtomicU64::new(0),
        }
    }

    fn envelope(&self, event: Event) -> Envelope {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!("mpay_bus_events_total", "type" => event.kind()).increment(1);
        Envelope {
            id: format!("{}-{}-{seq}", self.node, self.start),
            subject: event.subject(),
            kind: event.kind().to_string(),
            version: SCHEMA_VERSION,
            node: self.node.clone(),
            at: Utc::now(),
            event,
        }
    }
}

/// Does `subject` match `filter` (NATS wildcards: `*` one token, `>` the rest)?
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut s = subject.split('.');
    for f in filter.split('.') {
        match (f, s.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (f, Some(t)) if f == t => {}
            _ => return false,
        }
    }
    s.next().is_none()
}

/// A failure of the bus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The bus (or the store behind it) cannot be used now.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// Nobody serves the subject.
    #[error("no responder for {0}")]
    NoResponders(String),
    /// No answer in time.
    #[error("request timed out")]
    Timeout,
    /// A message that is not what it should be.
    #[error("bad message: {0}")]
    Codec(String),
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// The next event.
    Event(Arc<Envelope>),
    /// `n` events were missed (the subscriber was too slow): reread the store.
    Lagged(u64),
    /// The bus is gone.
    Closed,
}

enum SubInner {
    Broadcast(broadcast::Receiver<Arc<Envelope>>, Vec<String>),
    Channel(mpsc::Receiver<Received>),
}

/// A subscription.
pub struct Subscription {
    inner: SubInner,
}

impl Subscription {
    fn channel(rx: mpsc::Receiver<Received>) -> Self {
        Subscription {
            inner: SubInner::Channel(rx),
        }
    }

    /// Waits for the next event.
    pub async fn recv(&mut self) -> Received {
        match &mut self.inner {
            SubInner::Broadcast(rx, filters) => loop {
                match rx.recv().await {
                    Ok(e) => {
                        if filters.iter().any(|f| subject_matches(f, &e.subject)) {
                            return Received::Event(e);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => return Received::Lagged(n),
                    Err(broadcast::error::RecvError::Closed) => return Received::Closed,
                }
            },
            SubInner::Channel(rx) => rx.recv().await.unwrap_or(Received::Closed),
        }
    }
}

/// Settles a [`Job`].
pub trait Acker: Send + Sync {
    /// Done: never handed out again (durable before it returns). May be tried again after
    /// an error.
    fn ack(&self) -> BoxFuture<'_, Result<(), BusError>>;
    /// Not done: hand it out again after `delay`.
    fn nak(&self, delay: Duration) -> BoxFuture<'_, Result<(), BusError>>;
}

struct NoAck;

impl Acker for NoAck {
    fn ack(&self) -> BoxFuture<'_, Result<(), BusError>> {
        async { Ok(()) }.boxed()
    }
    fn nak(&self, _: Duration) -> BoxFuture<'_, Result<(), BusError>> {
        async { Ok(()) }.boxed()
    }
}

/// A durable item handed to a consumer: settle it with [`Job::ack`] or [`Job::nak`] (an
/// unsettled job is handed out again after a while, or after a restart).
pub struct Job {
    /// The pusher's id (work queue) or the envelope id (events).
    pub id: String,
    /// Subject.
    pub subject: String,
    /// Payload (an [`Envelope`] as JSON for events).
    pub payload: Vec<u8>,
    /// How many times it was handed out (1 the first time).
    pub deliveries: u64,
    acker: Box<dyn Acker>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .field("deliveries", &self.deliveries)
            .finish()
    }
}

impl Job {
    /// A job settled by `acker`.
    pub fn new(
        id: String,
        subject: String,
        payload: Vec<u8>,
        deliveries: u64,
        acker: Box<dyn Acker>,
    ) -> Self {
        Job {
            id,
            subject,
            payload,
            deliveries,
            acker,
        }
    }

    /// The event it carries.
    pub fn envelope(&self) -> Result<Envelope, BusError> {
        serde_json::from_slice(&self.payload).map_err(|e| BusError::Codec(e.to_string()))
    }

    /// Done: never handed out again once this returns Ok (after an error the job may be
    /// handed out again, or the ack tried again).
    pub async fn ack(&self) -> Result<(), BusError> {
        self.acker.ack().await
    }

    /// Not done: again after `delay`.
    pub async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        self.acker.nak(delay).await
    }
}

/// What a durable consumer gets.
#[derive(Debug)]
pub enum Delivery {
    /// The next job.
    Job(Job),
    /// Events were missed (in-process only): reread the store.
    Lagged,
    /// The bus is gone.
    Closed,
}

/// A durable consumer of events.
pub trait Consumer: Send {
    /// The next delivery.
    fn next(&mut self) -> BoxFuture<'_, Result<Delivery, BusError>>;
}

/// A durable work queue.
pub trait WorkQueue: Send + Sync {
    /// Enqueues `payload` under `id` (durable when it returns; an id already queued is not
    /// queued twice).
    fn push(&self, id: &str, payload: Vec<u8>) -> BoxFuture<'_, Result<(), BusError>>;
    /// Waits for the next due item.
    fn next(&self) -> BoxFuture<'_, Result<Job, BusError>>;
}

type Replier = Box<dyn FnOnce(Vec<u8>) -> BoxFuture<'static, Result<(), BusError>> + Send>;

/// A request to answer.
pub struct Request {
    /// Subject.
    pub subject: String,
    /// Payload.
    pub payload: Vec<u8>,
    reply: Replier,
}

impl Request {
    /// A request answered through `reply`.
    pub fn new(subject: String, payload: Vec<u8>, reply: Replier) -> Self {
        Request {
            subject,
            payload,
            reply,
        }
    }

    /// Answers it.
    pub async fn respond(self, payload: Vec<u8>) -> Result<(), BusError> {
        (self.reply)(payload).await
    }
}

/// The requests of a server.
pub struct Requests {
    rx: mpsc::Receiver<Request>,
}

impl Requests {
    /// Wraps a channel of requests.
    pub fn new(rx: mpsc::Receiver<Request>) -> Self {
        Requests { rx }
    }

    /// The next request (None: the bus is gone).
    pub async fn recv(&mut self) -> Option<Request> {
        self.rx.recv().await
    }
}

/// The bus.
pub trait Bus: Send + Sync {
    /// This node's id.
    fn node(&self) -> &str;
    /// Publishes an event (fire and forget: the fact is already durable).
    fn publish(&self, event: Event);
    /// Every event from now on whose subject matches one of `filters`.
    fn subscribe(&self, filters: &[&str]) -> BoxFuture<'_, Result<Subscription, BusError>>;
    /// Each event matching `filter` to one member of `group`.
    fn queue_subscribe(
        &self,
        filter: &str,
        group: &str,
    ) -> BoxFuture<'_, Result<Subscription, BusError>>;
    /// A durable consumer named `durable` of the events matching `filters`.
    fn consume(
        &self,
        durable: &str,
        filters: &[&str],
    ) -> BoxFuture<'_, Result<Box<dyn Consumer>, BusError>>;
    /// Sends a request to one server of `subject`, waits for its answer.
    fn request(
        &self,
        subject: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<u8>, BusError>>;
    /// Serves `subject` as a member of `group` (each request to one member).
    fn serve(&self, subject: &str, group: &str) -> BoxFuture<'_, Result<Requests, BusError>>;
    /// The durable work queue `name` (one token: letters, digits, `-`, `_`).
    fn work_queue(&self, name: &str) -> BoxFuture<'_, Result<Arc<dyn WorkQueue>, BusError>>;
}

/// Checks a work-queue name (a subject token and a stream name).
pub fn check_queue_name(name: &str) -> Result<(), BusError> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(())
    } else {
        Err(BusError::Codec(format!("work queue name {name:?}")))
    }
}

struct Group {
    filter: String,
    members: Vec<mpsc::Sender<Received>>,
    next: usize,
}

#[derive(Default)]
struct Servers {
    members: Vec<mpsc::Sender<Request>>,
    next: usize,
}

/// The single-node bus.
pub struct InProcessBus {
    tx: broadcast::Sender<Arc<Envelope>>,
    ids: Ids,
    groups: Mutex<HashMap<(String, String), Group>>,
    servers: Mutex<HashMap<String, Servers>>,
    store: Option<mpay_storage::Store>,
    queues: Mutex<HashMap<String, Arc<InProcessWorkQueue>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl InProcessBus {
    /// A bus of node `node` keeping up to `capacity` events for slow subscribers (no work
    /// queues: see [`InProcessBus::with_store`]).
    pub fn new(node: &str, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        InProcessBus {
            tx,
            ids: Ids::new(node),
            groups: Mutex::default(),
            servers: Mutex::default(),
            store: None,
            queues: Mutex::default(),
        }
    }

    /// Work queues kept in `store`.
    pub fn with_store(mut self, store: mpay_storage::Store) -> Self {
        self.store = Some(store);
        self
    }
}

impl Bus for InProcessBus {
    fn node(&self) -> &str {
        &self.ids.node
    }

    fn publish(&self, event: Event) {
        let envelope = Arc::new(self.ids.envelope(event));
        {
            let mut groups = lock(&self.groups);
            for g in groups.values_mut() {
                if !subject_matches(&g.filter, &envelope.subject) {
                    continue;
                }
                g.members.retain(|m| !m.is_closed());
                // one member, round robin; a full member passes its turn
                for _ in 0..g.members.len() {
                    let i = g.next % g.members.len();
                    g.next = g.next.wrapping_add(1);
                    if let Some(m) = g.members.get(i) {
                        if m.try_send(Received::Event(envelope.clone())).is_ok() {
                            break;
                        }
                    }
                }
            }
        }
        // no subscriber = nobody to wake: fine, the store holds the work
        let _ = self.tx.send(envelope);
    }

    fn subscribe(&self, filters: &[&str]) -> BoxFuture<'_, Result<Subscription, BusError>> {
        let rx = self.tx.subscribe();
        let filters = filters.iter().map(|f| f.to_string()).collect();
        async move {
            Ok(Subscription {
                inner: SubInner::Broadcast(rx, filters),
            })
        }
        .boxed()
    }

    fn queue_subscribe(
        &self,
        filter: &str,
        group: &str,
    ) -> BoxFuture<'_, Result<Subscription, BusError>> {
        let (tx, rx) = mpsc::channel(1024);
        lock(&self.groups)
            .entry((filter.to_string(), group.to_string()))
            .or_insert_with(|| Group {
                filter: filter.to_string(),
                members: Vec::new(),
                next: 0,
            })
            .members
            .push(tx);
        async move { Ok(Subscription::channel(rx)) }.boxed()
    }

    fn consume(
        &self,
        _durable: &str,
        filters: &[&str],
    ) -> BoxFuture<'_, Result<Box<dyn Consumer>, BusError>> {
        let sub = self.subscribe(filters);
        async move {
            let sub = sub.await?;
            Ok(Box::new(LiveConsumer { sub }) as Box<dyn Consumer>)
        }
        .boxed()
    }

    fn request(
        &self,
        subject: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<u8>, BusError>> {
        let subject = subject.to_string();
        async move {
            for _ in 0..8 {
                let member = {
                    let mut servers = lock(&self.servers);
                    let Some(s) = servers.get_mut(&subject) else {
                        break;
                    };
                    s.members.retain(|m| !m.is_closed());
                    if s.members.is_empty() {
                        break;
                    }
                    let i = s.next % s.members.len();
                    s.next = s.next.wrapping_add(1);
                    s.members.get(i).cloned()
                };
                let Some(member) = member else { break };
                let (tx, rx) = oneshot::channel::<Vec<u8>>();
                let reply: Replier = Box::new(move |answer| {
                    let _ = tx.send(answer);
                    async { Ok(()) }.boxed()
                });
                if member
                    .send(Request::new(subject.clone(), payload.clone(), reply))
                    .await
                    .is_err()
                {
                    continue;
                }
                return match tokio::time::timeout(timeout, rx).await {
                    Ok(Ok(answer)) => Ok(answer),
                    Ok(Err(_)) => Err(BusError::NoResponders(subject)),
                    Err(_) => Err(BusError::Timeout),
                };
            }
            Err(BusError::NoResponders(subject))
        }
        .boxed()
    }

    fn serve(&self, subject: &str, _group: &str) -> BoxFuture<'_, Result<Requests, BusError>> {
        let (tx, rx) = mpsc::channel(256);
        lock(&self.servers)
            .entry(subject.to_string())
            .or_default()
            .members
            .push(tx);
        async move { Ok(Requests::new(rx)) }.boxed()
    }

    fn work_queue(&self, name: &str) -> BoxFuture<'_, Result<Arc<dyn WorkQueue>, BusError>> {
        let name = name.to_string();
        async move {
            check_queue_name(&name)?;
            let Some(store) = &self.store else {
                return Err(BusError::Unavailable(
                    "this in-process bus has no store for work queues".into(),
                ));
            };
            if let Some(q) = lock(&self.queues).get(&name) {
                return Ok(q.clone() as Arc<dyn WorkQueue>);
            }
            let q = store
                .work_queue(&name)
                .map_err(|e| BusError::Unavailable(e.to_string()))?;
            let q = lock(&self.queues)
                .entry(name)
                .or_insert_with(|| {
                    Arc::new(InProcessWorkQueue {
                        q,
                        leased: Arc::default(),
                        notify: Arc::default(),
                    })
                })
                .clone();
            Ok(q as Arc<dyn WorkQueue>)
        }
        .boxed()
    }
}

/// The in-process durable consumer: live events, acks that do nothing (the store is the
/// durable record, reread by the consumer when it starts and when it lagged).
struct LiveConsumer {
    sub: Subscription,
}

impl Consumer for LiveConsumer {
    fn next(&mut self) -> BoxFuture<'_, Result<Delivery, BusError>> {
        async move {
            Ok(match self.sub.recv().await {
                Received::Event(e) => Delivery::Job(Job::new(
                    e.id.clone(),
                    e.subject.clone(),
                    serde_json::to_vec(&*e).map_err(|e| BusError::Codec(e.to_string()))?,
                    1,
                    Box::new(NoAck),
                )),
                Received::Lagged(_) => Delivery::Lagged,
                Received::Closed => Delivery::Closed,
            })
        }
        .boxed()
    }
}

/// The in-process work queue: [`mpay_storage::SledWorkQueue`] plus the leases of this process
/// (a job handed out and not settled is not handed out again until the process restarts).
struct InProcessWorkQueue {
    q: mpay_storage::SledWorkQueue,
    leased: Arc<Mutex<HashSet<u64>>>,
    notify: Arc<Notify>,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

struct SledAcker {
    q: mpay_storage::SledWorkQueue,
    seq: u64,
    leased: Arc<Mutex<HashSet<u64>>>,
    notify: Arc<Notify>,
}

impl Acker for SledAcker {
    fn ack(&self) -> BoxFuture<'_, Result<(), BusError>> {
        async move {
            let (q, seq) = (self.q.clone(), self.seq);
            tokio::task::spawn_blocking(move || q.ack(seq))
                .await
                .map_err(unavailable)?
                .map_err(unavailable)?;
            lock(&self.leased).remove(&self.seq);
            Ok(())
        }
        .boxed()
    }

    fn nak(&self, delay: Duration) -> BoxFuture<'_, Result<(), BusError>> {
        async move {
            let (q, seq) = (self.q.clone(), self.seq);
            let due = Utc::now().timestamp_millis()
                + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
            tokio::task::spawn_blocking(move || q.nak(seq, due))
                .await
                .map_err(unavailable)?
                .map_err(unavailable)?;
            lock(&self.leased).remove(&self.seq);
            self.notify.notify_waiters();
            Ok(())
        }
        .boxed()
    }
}

impl WorkQueue for InProcessWorkQueue {
    fn push(&self, id: &str, payload: Vec<u8>) -> BoxFuture<'_, Result<(), BusError>> {
        let (q, id) = (self.q.clone(), id.to_string());
        async move {
            let now = Utc::now().timestamp_millis();
            tokio::task::spawn_blocking(move || q.push(&id, &payload, now))
                .await
                .map_err(unavailable)?
                .map_err(unavailable)?;
            self.notify.notify_waiters();
            Ok(())
        }
        .boxed()
    }

    fn next(&self) -> BoxFuture<'_, Result<Job, BusError>> {
        async move {
            loop {
                let notified = self.notify.notified();
                let leased = lock(&self.leased).clone();
                let q = self.q.clone();
                let now = Utc::now().timestamp_millis();
                let (taken, due) = tokio::task::spawn_blocking(move || {
                    let taken = q.take(now, &leased)?;
                    let due = match taken {
                        Some(_) => None,
                        None => q.next_due(&leased)?,
                    };
                    Ok::<_, mpay_storage::StorageError>((taken, due))
                })
                .await
                .map_err(unavailable)?
                .map_err(unavailable)?;
                if let Some((seq, item)) = taken {
                    let mut leased = lock(&self.leased);
                    if !leased.insert(seq) {
                        continue; // another taker of this process got it first
                    }
                    return Ok(Job::new(
                        item.id,
                        format!("mpay.v{SCHEMA_VERSION}.work"),
                        item.payload,
                        item.deliveries,
                        Box::new(SledAcker {
                            q: self.q.clone(),
                            seq,
                            leased: self.leased.clone(),
                            notify: self.notify.clone(),
                        }),
                    ));
                }
                let wait = due
                    .map(|d| (d - now).clamp(1, 250))
                    .unwrap_or(250)
                    .unsigned_abs();
                let _ = tokio::time::timeout(Duration::from_millis(wait), notified).await;
            }
        }
        .boxed()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn stored(id: &str) -> Event {
        Event::ReceiptStored {
            organization: "80001234568".into(),
            receipt_id: id.into(),
        }
    }

    #[test]
    fn subjects_match_with_nats_wildcards() {
        assert!(subject_matches("mpay.v1.>", "mpay.v1.receipt.stored.1"));
        assert!(subject_matches(
            "mpay.v1.*.stored.1",
            "mpay.v1.receipt.stored.1"
        ));
        assert!(!subject_matches("mpay.v1.receipt.>", "mpay.v1.receipt"));
        assert!(!subject_matches(
            "mpay.v1.position.>",
            "mpay.v1.receipt.stored.1"
        ));
        assert!(!subject_matches(
            "mpay.v1.receipt",
            "mpay.v1.receipt.stored"
        ));
        assert_eq!(
            Event::PositionCancelled {
                organization: "#123#".into(),
                iupd: "X".into()
            }
            .subject(),
            "mpay.v1.position.cancelled.123"
        );
    }

    #[tokio::test]
    async fn subscribers_get_enveloped_events_and_learn_when_they_lag() {
        let bus = InProcessBus::new("n1", 16);
        bus.publish(stored("before"));
        let mut sub = bus.subscribe(&["mpay.v1.receipt.>"]).await.unwrap();
        bus.publish(Event::PositionCreated {
            organization: "80001234568".into(),
            iupd: "P".into(),
        });
        bus.publish(stored("r1"));
        let Received::Event(e) = sub.recv().await else {
            panic!("no event")
        };
        assert_eq!(e.subject, "mpay.v1.receipt.stored.80001234568");
        assert_eq!(e.kind, "receipt.stored");
        assert_eq!(e.version, 1);
        assert_eq!(e.node, "n1");
        assert!(e.id.starts_with("n1-") && e.id.ends_with("-3"), "{}", e.id);
        let json = serde_json::to_value(&*e).unwrap();
        assert_eq!(json["event"]["type"], "RECEIPT_STORED");
        assert_eq!(json["event"]["receipt_id"], "r1");
        for i in 0..40 {
            bus.publish(Event::NotificationRequeued {
                organization: "80001234568".into(),
                id: i,
            });
        }
        let mut all = bus.subscribe(&["mpay.v1.>"]).await.unwrap();
        bus.publish(stored("r2"));
        assert!(matches!(sub.recv().await, Received::Lagged(_)));
        assert!(matches!(sub.recv().await, Received::Event(_)));
        assert!(matches!(all.recv().await, Received::Event(e) if e.kind == "receipt.stored"));
    }

    #[tokio::test]
    async fn a_queue_group_shares_events_and_requests_get_one_answer() {
        let bus = Arc::new(InProcessBus::new("n1", 16));
        let mut a = bus.queue_subscribe("mpay.v1.receipt.>", "g").await.unwrap();
        let mut b = bus.queue_subscribe("mpay.v1.receipt.>", "g").await.unwrap();
        for i in 0..4 {
            bus.publish(stored(&i.to_string()));
        }
        let mut ids = Vec::new();
        for sub in [&mut a, &mut b] {
            for _ in 0..2 {
                let Received::Event(e) = sub.recv().await else {
                    panic!()
                };
                ids.push(e.id.clone());
            }
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 4, "each event to exactly one member");

        assert_eq!(
            bus.request("mpay.v1.rpc.echo", b"x".to_vec(), Duration::from_secs(1))
                .await,
            Err(BusError::NoResponders("mpay.v1.rpc.echo".into()))
        );
        let mut reqs = bus.serve("mpay.v1.rpc.echo", "echo").await.unwrap();
        tokio::spawn(async move {
            while let Some(r) = reqs.recv().await {
                let mut answer = r.payload.clone();
                answer.extend_from_slice(b"!");
                r.respond(answer).await.unwrap();
            }
        });
        let answer = bus
            .request("mpay.v1.rpc.echo", b"hi".to_vec(), Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(answer, b"hi!");
    }

    #[tokio::test]
    async fn the_work_queue_lives_in_sled_acks_for_good_and_naks_with_a_delay() {
        let dir = tempfile::tempdir().unwrap();
        let store = mpay_storage::Store::open(dir.path()).unwrap();
        let bus = InProcessBus::new("n1", 16).with_store(store.clone());
        assert!(bus.work_queue("bad.name").await.is_err());
        let q = bus.work_queue("jobs").await.unwrap();
        q.push("a", b"1".to_vec()).await.unwrap();
        q.push("a", b"1".to_vec()).await.unwrap();
        q.push("b", b"2".to_vec()).await.unwrap();
        let a = q.next().await.unwrap();
        assert_eq!((a.id.as_str(), a.deliveries), ("a", 1));
        let b = q.next().await.unwrap();
        assert_eq!(b.id, "b");
        a.ack().await.unwrap();
        let t0 = std::time::Instant::now();
        b.nak(Duration::from_millis(300)).await.unwrap();
        let b = q.next().await.unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(250), "nak delayed it");
        assert_eq!((b.id.as_str(), b.deliveries), ("b", 2));
        // the process ends before b's ack: b is there at the next start, a is not
        drop((b, q, bus));
        let bus = InProcessBus::new("n1", 16).with_store(store);
        let q = bus.work_queue("jobs").await.unwrap();
        let b = q.next().await.unwrap();
        assert_eq!((b.id.as_str(), b.deliveries), ("b", 3));
        b.ack().await.unwrap();
        let none = tokio::time::timeout(Duration::from_millis(300), q.next()).await;
        assert!(none.is_err(), "nothing after the acks");
    }
}
