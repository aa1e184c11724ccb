//! The message bus (DESIGN §5): events published where facts become durable, consumed by the
//! actors that react to them, so that nothing polls the ledger for changes.
//!
//! [`Bus`] is the one interface; [`InProcessBus`] is the single-node implementation (a tokio
//! broadcast channel: every subscriber sees every event published after it subscribed). An
//! event is a wake-up, not the durable record: the durable record is the store (the Ente
//! outbox), so a subscriber that lags behind or starts late loses nothing — it is told it
//! lagged ([`Received::Lagged`]) and rereads its work from the store.
//!
//! Subjects are versioned, `mpay.v1.<kind>.<organization>`; envelopes carry id, type, schema
//! version, node and timestamp. A NATS implementation (JetStream) is a later step of issue 13.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Schema version of the envelopes and events.
pub const SCHEMA_VERSION: u32 = 1;

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
    /// An operator put a receipt's e-mail back in the mail queue.
    MailRequeued {
        /// The organization of the receipt.
        organization: String,
        /// receiptId.
        receipt_id: String,
    },
}

impl Event {
    /// The type name (the envelope's `type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ReceiptStored { .. } => "receipt.stored",
            Event::NotificationRequeued { .. } => "notification.requeued",
            Event::MailRequeued { .. } => "mail.requeued",
        }
    }

    /// The organization it concerns.
    pub fn organization(&self) -> &str {
        match self {
            Event::ReceiptStored { organization, .. }
            | Event::NotificationRequeued { organization, .. }
            | Event::MailRequeued { organization, .. } => organization,
        }
    }

    /// `mpay.v1.<kind>.<organization>`.
    pub fn subject(&self) -> String {
        format!(
            "mpay.v{SCHEMA_VERSION}.{}.{}",
            self.kind(),
            self.organization()
        )
    }
}

/// An event as carried by the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Unique id (`<node>-<sequence>`).
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

/// A subscription to every event published after it was made.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<Envelope>>,
}

impl Subscription {
    /// Waits for the next event.
    pub async fn recv(&mut self) -> Received {
        match self.rx.recv().await {
            Ok(e) => Received::Event(e),
            Err(broadcast::error::RecvError::Lagged(n)) => Received::Lagged(n),
            Err(broadcast::error::RecvError::Closed) => Received::Closed,
        }
    }
}

/// The bus.
pub trait Bus: Send + Sync {
    /// Publishes an event (fire and forget: the fact is already durable).
    fn publish(&self, event: Event);
    /// Subscribes to every event published from now on.
    fn subscribe(&self) -> Subscription;
}

/// The single-node bus.
pub struct InProcessBus {
    tx: broadcast::Sender<Arc<Envelope>>,
    node: String,
    seq: AtomicU64,
}

impl InProcessBus {
    /// A bus of node `node` keeping up to `capacity` events for slow subscribers.
    pub fn new(node: &str, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        InProcessBus {
            tx,
            node: node.to_string(),
            seq: AtomicU64::new(0),
        }
    }
}

impl Bus for InProcessBus {
    fn publish(&self, event: Event) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let envelope = Envelope {
            id: format!("{}-{seq}", self.node),
            subject: event.subject(),
            kind: event.kind().to_string(),
            version: SCHEMA_VERSION,
            node: self.node.clone(),
            at: Utc::now(),
            event,
        };
        metrics::counter!("mpay_bus_events_total", "type" => envelope.kind.clone()).increment(1);
        // no subscriber = nobody to wake: fine, the store holds the work
        let _ = self.tx.send(Arc::new(envelope));
    }

    fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_enveloped_events_and_learn_when_they_lag() {
        let bus = InProcessBus::new("n1", 16);
        bus.publish(Event::ReceiptStored {
            organization: "80001234568".into(),
            receipt_id: "before".into(),
        });
        let mut sub = bus.subscribe();
        bus.publish(Event::ReceiptStored {
            organization: "80001234568".into(),
            receipt_id: "r1".into(),
        });
        let Received::Event(e) = sub.recv().await else {
            panic!("no event")
        };
        assert_eq!(e.subject, "mpay.v1.receipt.stored.80001234568");
        assert_eq!(e.kind, "receipt.stored");
        assert_eq!(e.version, 1);
        assert_eq!(e.node, "n1");
        assert_eq!(e.id, "n1-2");
        let json = serde_json::to_value(&*e).unwrap();
        assert_eq!(json["event"]["type"], "RECEIPT_STORED");
        assert_eq!(json["event"]["receipt_id"], "r1");
        for i in 0..40 {
            bus.publish(Event::NotificationRequeued {
                organization: "80001234568".into(),
                id: i,
            });
        }
        assert!(matches!(sub.recv().await, Received::Lagged(_)));
        assert!(matches!(sub.recv().await, Received::Event(_)));
    }
}
