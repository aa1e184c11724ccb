//! The watchdog: notices dead actors and respawns them from their factory (which rebuilds the
//! actor from persisted state), counting restarts in the [`HealthRegistry`].

use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;

use crate::health::HealthRegistry;

/// A shared, replaceable address of a supervised actor: after a restart every holder of the
/// handle reaches the new instance. Cheap to clone.
pub struct ActorHandle<A: Actor> {
    addr: Arc<RwLock<Addr<A>>>,
}

impl<A: Actor> Clone for ActorHandle<A> {
    fn clone(&self) -> Self {
        ActorHandle {
            addr: self.addr.clone(),
        }
    }
}

impl<A: Actor> ActorHandle<A> {
    /// Wraps an address.
    pub fn new(addr: Addr<A>) -> Self {
        ActorHandle {
            addr: Arc::new(RwLock::new(addr)),
        }
    }

    /// The current address.
    pub fn addr(&self) -> Addr<A> {
        self.addr.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn replace(&self, addr: Addr<A>) {
        *self.addr.write().unwrap_or_else(|p| p.into_inner()) = addr;
    }

    /// Is the current instance alive?
    pub fn connected(&self) -> bool {
        self.addr
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .connected()
    }
}

trait Watched {
    fn kind(&self) -> &str;
    fn id(&self) -> &str;
    fn alive(&self) -> bool;
    fn respawn(&self);
}

struct Slot<A: Actor> {
    kind: String,
    id: String,
    handle: ActorHandle<A>,
    factory: Box<dyn Fn() -> Addr<A>>,
}

impl<A: Actor> Watched for Slot<A> {
    fn kind(&self) -> &str {
        &self.kind
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn alive(&self) -> bool {
        self.handle.connected()
    }
    fn respawn(&self) {
        self.handle.replace((self.factory)());
    }
}

/// Polls watched actors every `interval`; respawns the dead ones.
pub struct Watchdog {
    registry: HealthRegistry,
    interval: Duration,
    slots: Vec<Box<dyn Watched>>,
}

impl Watchdog {
    /// A watchdog reporting into `registry`.
    pub fn new(registry: HealthRegistry, interval: Duration) -> Self {
        Watchdog {
            registry,
            interval,
            slots: Vec::new(),
        }
    }

    /// Starts an actor through `factory` (which should use `actix::Supervisor::start` and
    /// register the actor in the registry), watches it and returns its shared handle.
    /// Call before the watchdog is started.
    pub fn watch<A: Actor>(
        &mut self,
        kind: &str,
        id: &str,
        factory: impl Fn() -> Addr<A> + 'static,
    ) -> ActorHandle<A> {
        let handle = ActorHandle::new(factory());
        self.slots.push(Box::new(Slot {
            kind: kind.to_string(),
            id: id.to_string(),
            handle: handle.clone(),
            factory: Box::new(factory),
        }));
        handle
    }

    fn check(&mut self) {
        for slot in &self.slots {
            if !slot.alive() {
                tracing::error!(kind = slot.kind(), id = slot.id(), "actor died; restarting");
                self.registry.restarted(slot.kind(), slot.id());
                slot.respawn();
            }
        }
    }
}

impl Actor for Watchdog {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.registry.register("Watchdog", "main", true);
        self.registry.heartbeat("Watchdog", "main", 0);
        ctx.run_interval(self.interval, |this, _| {
            this.check();
            this.registry.heartbeat("Watchdog", "main", 0);
        });
    }
}
