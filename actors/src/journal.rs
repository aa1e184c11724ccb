//! `JournalWriter`: receives one [`Record`] per exchange and writes them to the store in
//! batches (at most `batch_max` entries, at least every `interval`).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use mpay_messages::journal::JournalEntry;
use mpay_storage::JournalStore;

use crate::health::HealthRegistry;

const KIND: &str = "JournalWriter";

/// One journal entry to write.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Record(pub JournalEntry);

/// Writes the pending batch now; answers how many entries were written.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<usize, String>")]
pub struct FlushJournal;

/// The journal writer actor (one per node).
pub struct JournalWriter {
    store: Arc<dyn JournalStore>,
    registry: HealthRegistry,
    buffer: Vec<JournalEntry>,
    batch_max: usize,
    interval: Duration,
}

impl JournalWriter {
    /// A writer into `store`.
    pub fn new(
        store: Arc<dyn JournalStore>,
        registry: HealthRegistry,
        batch_max: usize,
        interval: Duration,
    ) -> Self {
        registry.register(KIND, "main", true);
        JournalWriter {
            store,
            registry,
            buffer: Vec::with_capacity(batch_max),
            batch_max: batch_max.max(1),
            interval,
        }
    }

    fn write_batch(&mut self) -> Result<usize, String> {
        if self.buffer.is_empty() {
            return Ok(0);
        }
        let n = self.buffer.len();
        match self.store.append(&self.buffer) {
            Ok(()) => {
                self.buffer.clear();
                metrics::counter!("mpay_journal_entries_written_total").increment(n as u64);
                Ok(n)
            }
            Err(e) => {
                // keep the entries for the next attempt, but never grow without bound
                let msg = e.to_string();
                self.registry.error(KIND, "main", &msg);
                if self.buffer.len() > self.batch_max.saturating_mul(64) {
                    let dropped = self.buffer.len() - self.batch_max;
                    self.buffer.drain(..dropped);
                    metrics::counter!("mpay_journal_entries_dropped_total")
                        .increment(dropped as u64);
                }
                Err(msg)
            }
        }
    }
}

impl Actor for JournalWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.registry.heartbeat(KIND, "main", 0);
        ctx.run_interval(self.interval, |this, _| {
            let _ = this.write_batch();
            this.registry
                .heartbeat(KIND, "main", this.buffer.len() as u64);
        });
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        let _ = self.write_batch();
        Running::Stop
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.registry
            .set_state(KIND, "main", crate::health::ActorState::Stopped);
    }
}

impl Supervised for JournalWriter {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.registry.restarted(KIND, "main");
    }
}

impl Handler<Record> for JournalWriter {
    type Result = ();

    fn handle(&mut self, msg: Record, _: &mut Self::Context) {
        self.buffer.push(msg.0);
        if self.buffer.len() >= self.batch_max {
            let _ = self.write_batch();
        }
    }
}

impl Handler<FlushJournal> for JournalWriter {
    type Result = Result<usize, String>;

    fn handle(&mut self, _: FlushJournal, _: &mut Self::Context) -> Self::Result {
        self.write_batch()
    }
}
