//! The NATS bus (`mpay serve --nats URL`): core NATS for live events, queue groups and
//! request/reply; JetStream for what must survive — the events stream `MPAY_EVENTS` (subjects
//! `mpay.v1.<root>.>` of [`super::EVENT_ROOTS`], file storage, deduplicated by envelope id)
//! read by durable pull consumers ([`Bus::consume`]), and one work-queue stream per
//! [`Bus::work_queue`] (`MPAY_WORK_<name>`, subject `mpay.v1.work.<name>`).
//!
//! Publishing never blocks the caller: envelopes go, in order, through one task that retries
//! until JetStream acknowledges them (a NATS server that restarts loses none; the client
//! reconnects by itself). A job is acked with a double ack (the server confirms it): once
//! acked it is never handed out again. A job handed out and not acked in `ack_wait` is handed
//! out again (at-least-once before the ack).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream, AckKind};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt as _, StreamExt as _};
use tokio::sync::mpsc;

use super::{
    check_queue_name, Acker, Bus, BusError, Consumer, Delivery, Envelope, Event, Ids, Job,
    Received, Request, Requests, Subscription, WorkQueue, EVENT_ROOTS, SCHEMA_VERSION,
};

/// The JetStream stream of events.
pub const EVENTS_STREAM: &str = "MPAY_EVENTS";
/// How long an unacked job waits before it is handed out again.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
const MSG_ID: &str = "Nats-Msg-Id";

/// Returns once the server has registered every subscription `client` sent before: a probe
/// subscription of its own, then a message to it, on the same connection — the server handles
/// a connection's commands in order, so the probe comes back only after the earlier ones took
/// effect. (`Client::flush` only empties the socket's buffer: a publish from another
/// connection could still reach the server first and find no subscriber.)
async fn registered(client: &async_nats::Client) -> Result<(), BusError> {
    let inbox = client.new_inbox();
    let mut probe = client.subscribe(inbox.clone()).await.map_err(unavailable)?;
    client
        .publish(inbox, Vec::new().into())
        .await
        .map_err(unavailable)?;
    client.flush().await.map_err(unavailable)?;
    match tokio::time::timeout(Duration::from_secs(30), probe.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(unavailable("the connection closed")),
        Err(_) => Err(unavailable("the server did not confirm the subscription")),
    }
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// The bus over a NATS server with JetStream.
pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
    ids: Ids,
    out: mpsc::UnboundedSender<Envelope>,
    ack_wait: Duration,
}

impl NatsBus {
    /// Connects to `url` as node `node` and makes sure the events stream exists. The client
    /// reconnects by itself for as long as the node runs.
    /// Errors: the server cannot be reached (within 10 s) or has no JetStream.
    pub async fn connect(url: &str, node: &str) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("mpay-{node}"))
            .connection_timeout(Duration::from_secs(10))
            .max_reconnects(None)
            .connect(url)
            .await
            .map_err(|e| BusError::Unavailable(format!("NATS {url}: {e}")))?;
        let js = jetstream::new(client.clone());
        js.get_or_create_stream(stream::Config {
            name: EVENTS_STREAM.to_string(),
            subjects: EVENT_ROOTS
                .iter()
                .map(|r| format!("mpay.v{SCHEMA_VERSION}.{r}.>"))
                .collect(),
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::Unavailable(format!("JetStream stream {EVENTS_STREAM}: {e}")))?;
        let (out, rx) = mpsc::unbounded_channel();
        tokio::spawn(publisher(js.clone(), rx));
        tracing::info!(url, node, "NATS bus connected");
        Ok(NatsBus {
            client,
            js,
            ids: Ids::new(node),
            out,
            ack_wait: ACK_WAIT,
        })
    }

    /// How long a job handed out and not acked waits before it is handed out again, for the
    /// consumers created from now on (default [`ACK_WAIT`]).
    pub fn with_ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }
}

/// Publishes the envelopes, each until JetStream has it: what is waiting is sent in one go
/// (up to 512) and the acks awaited together; what failed is sent again after a pause (in its
/// order; a retry may overtake nothing of its batch, and the server deduplicates by id).
async fn publisher(js: jetstream::Context, mut rx: mpsc::UnboundedReceiver<Envelope>) {
    while let Some(first) = rx.recv().await {
        let mut pending = vec![first];
        while pending.len() < 512 {
            match rx.try_recv() {
                Ok(e) => pending.push(e),
                Err(_) => break,
            }
        }
        let mut wait = Duration::from_millis(50);
        loop {
            let mut acks = Vec::with_capacity(pending.len());
            let mut failed = Vec::new();
            for env in pending {
                let Ok(payload) = serde_json::to_vec(&env) else {
                    continue;
                };
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(MSG_ID, env.id.as_str());
                match js
                    .publish_with_headers(env.subject.clone(), headers, payload.into())
                    .await
                {
                    Ok(ack) => acks.push((env, ack)),
                    Err(e) => {
                        tracing::debug!(error = %e, id = %env.id, "event not sent");
                        failed.push(env);
                    }
                }
            }
            for (env, ack) in acks {
                if let Err(e) = ack.await {
                    tracing::debug!(error = %e, id = %env.id, "event not acknowledged");
                    failed.push(env);
                }
            }
            if failed.is_empty() {
                break;
            }
            metrics::counter!("mpay_bus_publish_retries_total").increment(failed.len() as u64);
            tracing::warn!(events = failed.len(), "events not yet in JetStream; again");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
            pending = failed;
        }
    }
}

fn envelope_received(payload: &[u8]) -> Option<Received> {
    serde_json::from_slice::<Envelope>(payload)
        .ok()
        .map(|e| Received::Event(Arc::new(e)))
}

fn forward(mut sub: async_nats::Subscriber) -> Subscription {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(r) = envelope_received(&m.payload) {
                if tx.send(r).await.is_err() {
                    break;
                }
            }
        }
    });
    Subscription::channel(rx)
}

struct NatsAcker(jetstream::Message);

impl Acker for NatsAcker {
    fn ack(&self) -> BoxFuture<'_, Result<(), BusError>> {
        async move { self.0.double_ack().await.map_err(unavailable) }.boxed()
    }
    fn nak(&self, delay: Duration) -> BoxFuture<'_, Result<(), BusError>> {
        async move {
            self.0
                .ack_with(AckKind::Nak(Some(delay)))
                .await
                .map_err(unavailable)
        }
        .boxed()
    }
}

fn job_of(m: jetstream::Message) -> Job {
    let (seq, deliveries) = m
        .info()
        .map(|i| (i.stream_sequence, u64::try_from(i.delivered).unwrap_or(1)))
        .unwrap_or((0, 1));
    let id = m
        .headers
        .as_ref()
        .and_then(|h| h.get(MSG_ID))
        .map(|v| v.as_str().to_string())
        .unwrap_or_else(|| seq.to_string());
    Job::new(
        id,
        m.subject.to_string(),
        m.payload.to_vec(),
        deliveries,
        Box::new(NatsAcker(m)),
    )
}

/// A durable pull consumer, its message stream reopened when it ends or fails.
struct Pull {
    consumer: jetstream::consumer::Consumer<pull::Config>,
    messages: Option<pull::Stream>,
}

impl Pull {
    async fn next_job(&mut self) -> Job {
        loop {
            let messages = match &mut self.messages {
                Some(m) => m,
                None => match self.consumer.messages().await {
                    Ok(m) => self.messages.insert(m),
                    Err(e) => {
                        tracing::warn!(error = %e, "JetStream consumer not reachable; again");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                },
            };
            match messages.next().await {
                Some(Ok(m)) => return job_of(m),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "JetStream pull interrupted");
                    self.messages = None;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None => self.messages = None,
            }
        }
    }
}

impl Drop for Pull {
    fn drop(&mut self) {
        // the message stream unsubscribes on a spawned task: dropped outside a runtime (the
        // process ending), it is left to the process's end instead of panicking
        if tokio::runtime::Handle::try_current().is_err() {
            if let Some(m) = self.messages.take() {
                std::mem::forget(m);
            }
        }
    }
}

impl Consumer for Pull {
    fn next(&mut self) -> BoxFuture<'_, Result<Delivery, BusError>> {
        async move { Ok(Delivery::Job(self.next_job().await)) }.boxed()
    }
}

fn pull_config(durable: &str, filters: Vec<String>, ack_wait: Duration) -> pull::Config {
    let mut c = pull::Config {
        durable_name: Some(durable.to_string()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait,
        deliver_policy: jetstream::consumer::DeliverPolicy::New,
        ..Default::default()
    };
    match <[String; 1]>::try_from(filters) {
        Ok([one]) => c.filter_subject = one,
        Err(many) => c.filter_subjects = many,
    }
    c
}

/// A work-queue stream and its one durable consumer.
struct NatsWorkQueue {
    js: jetstream::Context,
    subject: String,
    pull: tokio::sync::Mutex<Pull>,
}

impl WorkQueue for NatsWorkQueue {
    fn push(&self, id: &str, payload: Vec<u8>) -> BoxFuture<'_, Result<(), BusError>> {
        let id = id.to_string();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(MSG_ID, id.as_str());
            self.js
                .publish_with_headers(self.subject.clone(), headers, payload.into())
                .await
                .map_err(unavailable)?
                .await
                .map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn next(&self) -> BoxFuture<'_, Result<Job, BusError>> {
        async move { Ok(self.pull.lock().await.next_job().await) }.boxed()
    }
}

impl Bus for NatsBus {
    fn node(&self) -> &str {
        &self.ids.node
    }

    fn publish(&self, event: Event) {
        let env = self.ids.envelope(event);
        if self.out.send(env).is_err() {
            tracing::warn!("NATS publisher stopped: event dropped (the store holds the fact)");
        }
    }

    fn subscribe(&self, filters: &[&str]) -> BoxFuture<'_, Result<Subscription, BusError>> {
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        async move {
            let (tx, rx) = mpsc::channel(1024);
            let mut subs = Vec::with_capacity(filters.len());
            for f in filters {
                subs.push(self.client.subscribe(f).await.map_err(unavailable)?);
            }
            // the server has the subscriptions before this returns
            registered(&self.client).await?;
            for mut sub in subs {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(m) = sub.next().await {
                        if let Some(r) = envelope_received(&m.payload) {
                            if tx.send(r).await.is_err() {
                                break;
                            }
                        }
                    }
                });
            }
            Ok(Subscription::channel(rx))
        }
        .boxed()
    }

    fn queue_subscribe(
        &self,
        filter: &str,
        group: &str,
    ) -> BoxFuture<'_, Result<Subscription, BusError>> {
        let (filter, group) = (filter.to_string(), group.to_string());
        async move {
            let sub = self
                .client
                .queue_subscribe(filter, group)
                .await
                .map_err(unavailable)?;
            registered(&self.client).await?;
            Ok(forward(sub))
        }
        .boxed()
    }

    fn consume(
        &self,
        durable: &str,
        filters: &[&str],
    ) -> BoxFuture<'_, Result<Box<dyn Consumer>, BusError>> {
        let durable = durable.to_string();
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        async move {
            check_queue_name(&durable)?;
            let stream = self
                .js
                .get_stream(EVENTS_STREAM)
                .await
                .map_err(unavailable)?;
            let consumer = stream
                .get_or_create_consumer(&durable, pull_config(&durable, filters, self.ack_wait))
                .await
                .map_err(unavailable)?;
            Ok(Box::new(Pull {
                consumer,
                messages: None,
            }) as Box<dyn Consumer>)
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
            match tokio::time::timeout(
                timeout,
                self.client.request(subject.clone(), payload.into()),
            )
            .await
            {
                Err(_) => Err(BusError::Timeout),
                Ok(Ok(m)) => Ok(m.payload.to_vec()),
                Ok(Err(e)) => match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => {
                        Err(BusError::NoResponders(subject))
                    }
                    async_nats::RequestErrorKind::TimedOut => Err(BusError::Timeout),
                    _ => Err(unavailable(e)),
                },
            }
        }
        .boxed()
    }

    fn serve(&self, subject: &str, group: &str) -> BoxFuture<'_, Result<Requests, BusError>> {
        let (subject, group) = (subject.to_string(), group.to_string());
        async move {
            let mut sub = self
                .client
                .queue_subscribe(subject, group)
                .await
                .map_err(unavailable)?;
            // served once the server has the subscription
            registered(&self.client).await?;
            let (tx, rx) = mpsc::channel(256);
            let client = self.client.clone();
            tokio::spawn(async move {
                while let Some(m) = sub.next().await {
                    let Some(reply) = m.reply.clone() else {
                        continue;
                    };
                    let client = client.clone();
                    let r = Request::new(
                        m.subject.to_string(),
                        m.payload.to_vec(),
                        Box::new(move |answer: Vec<u8>| {
                            async move {
                                client
                                    .publish(reply, answer.into())
                                    .await
                                    .map_err(unavailable)?;
                                client.flush().await.map_err(unavailable)
                            }
                            .boxed()
                        }),
                    );
                    if tx.send(r).await.is_err() {
                        break;
                    }
                }
            });
            Ok(Requests::new(rx))
        }
        .boxed()
    }

    fn work_queue(&self, name: &str) -> BoxFuture<'_, Result<Arc<dyn WorkQueue>, BusError>> {
        let name = name.to_string();
        async move {
            check_queue_name(&name)?;
            let subject = format!("mpay.v{SCHEMA_VERSION}.work.{name}");
            let stream_name = format!("MPAY_WORK_{}", name.replace('-', "_"));
            let stream = self
                .js
                .get_or_create_stream(stream::Config {
                    name: stream_name.clone(),
                    subjects: vec![subject.clone()],
                    retention: stream::RetentionPolicy::WorkQueue,
                    storage: stream::StorageType::File,
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                })
                .await
                .map_err(|e| BusError::Unavailable(format!("stream {stream_name}: {e}")))?;
            let mut config = pull_config(&name, vec![subject.clone()], self.ack_wait);
            config.deliver_policy = jetstream::consumer::DeliverPolicy::All;
            let consumer = stream
                .get_or_create_consumer(&name, config)
                .await
                .map_err(unavailable)?;
            Ok(Arc::new(NatsWorkQueue {
                js: self.js.clone(),
                subject,
                pull: tokio::sync::Mutex::new(Pull {
                    consumer,
                    messages: None,
                }),
            }) as Arc<dyn WorkQueue>)
        }
        .boxed()
    }
}
