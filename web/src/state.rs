//! Shared application state of the web layer.

use std::collections::HashMap;
use std::sync::Arc;

use actix::Addr;
use mpay_actors::{ActorHandle, HealthRegistry, JournalWriter};
use mpay_config::{Catalogue, OrgEntry, OrganizationSettings, Settings};
use mpay_messages::{Iban, NoticeLayout, OrgFiscalCode};
use mpay_storage::Store;

/// A configured organization, with its parsed identifiers.
#[derive(Debug, Clone)]
pub struct OrgContext {
    /// Fiscal code.
    pub fiscal_code: OrgFiscalCode,
    /// Name.
    pub name: String,
    /// Notice layout of generated notices by default (aux digit and segregation/application
    /// code).
    pub layout: NoticeLayout,
    /// Every code of the organization, its stations and per-service codes (from the catalogue).
    pub entry: OrgEntry,
    /// Registered bank and postal IBANs (normalised).
    pub ibans: Vec<Iban>,
    /// The raw settings.
    pub settings: OrganizationSettings,
}

impl OrgContext {
    /// Is a notice of this layout one of the organization's (any of its codes)?
    pub fn recognises(&self, layout: &NoticeLayout) -> bool {
        self.entry.recognises(layout)
    }

    /// The layout of notices generated for `service` (its code, else the default).
    pub fn layout_for_service(&self, service: Option<&str>) -> NoticeLayout {
        self.entry.layout_for_service(service)
    }
}

/// Everything a handler needs. Cloned into each worker (cheap: Arcs).
#[derive(Clone)]
pub struct AppState {
    /// Settings.
    pub settings: Arc<Settings>,
    /// The store.
    pub store: Store,
    /// Organizations by fiscal code.
    pub orgs: Arc<HashMap<String, Arc<OrgContext>>>,
    /// API key digest (`hmac-sha256:<hex>` or legacy hex SHA-256) → organization.
    pub api_keys: Arc<HashMap<String, Arc<OrgContext>>>,
    /// Broker-level API key digest → what it opens.
    pub broker_keys: Arc<HashMap<String, Arc<BrokerKey>>>,
    /// Actor health.
    pub health: HealthRegistry,
    /// The journal writer (replaced by the watchdog after a restart).
    pub journal: Option<ActorHandle<JournalWriter>>,
    /// Brokers, stations and organizations (built once from the settings).
    pub catalogue: Arc<Catalogue>,
    /// Bulk feed loads (REST `/feeds`); `None` = feeds not enabled on this node.
    pub feeds: Option<mpay_actors::feed_loader::FeedLauncher>,
    /// The portal's carts, told by the station when a receipt is stored; `None` = no portal.
    pub carts: Option<mpay_actors::cart::CartRegistry>,
    /// The message bus (events where facts become durable); `None` = nobody listens.
    pub bus: Option<Arc<dyn mpay_actors::bus::Bus>>,
    /// Failed-authentication counters (REST API keys; the FTP server has its own).
    pub throttle: Arc<crate::throttle::AuthThrottle>,
    /// The key of the receipts' public verification ids (`crate::documents`).
    pub verify_key: crate::documents::VerifyKey,
    /// Asynchronous mass-print jobs (`POST …/notices/print-jobs`).
    pub print_jobs: crate::print_jobs::PrintJobs,
    /// The reconciliation worker (FdR sync on demand); `None` = the handlers sync themselves.
    pub recon: Option<mpay_actors::recon_worker::ReconWorker>,
    /// Who may call the station (`[station] allowed_networks`, mTLS, `[node] environment`).
    pub station_access: Arc<crate::station_access::StationAccess>,
}

/// A broker-level API key: acts for every organization served by a station of the broker,
/// optionally only on some segregation codes.
#[derive(Debug, Clone)]
pub struct BrokerKey {
    /// The broker (idBrokerPA).
    pub broker: String,
    /// Fiscal codes of the organizations it opens (those on the broker's stations).
    pub organizations: std::collections::HashSet<String>,
    /// Segregation codes it is limited to; empty = no limit.
    pub segregation_codes: Vec<u8>,
}

/// A configuration that cannot serve (bad organization settings).
#[derive(Debug, thiserror::Error)]
#[error("organization {fiscal_code}: {reason}")]
pub struct StateError {
    /// Which organization.
    pub fiscal_code: String,
    /// Why.
    pub reason: String,
}

impl AppState {
    /// Builds the state from validated settings. `extra_keys` adds API key hashes at run time
    /// (the demo key), as (organization fiscal code, sha256 hex).
    pub fn new(
        settings: Settings,
        store: Store,
        health: HealthRegistry,
        journal: Option<ActorHandle<JournalWriter>>,
        extra_keys: &[(String, String)],
    ) -> Result<Self, StateError> {
        let catalogue = Catalogue::build(&settings).map_err(|e| StateError {
            fiscal_code: "-".into(),
            reason: e.to_string(),
        })?;
        let mut orgs = HashMap::new();
        let mut api_keys = HashMap::new();
        let mut mpay_codes = HashMap::new();
        for o in &settings.organizations {
            let err = |reason: String| StateError {
                fiscal_code: o.fiscal_code.clone(),
                reason,
            };
            let m = &o.mpay;
            if !m.codice_utente.trim().is_empty() {
                let codes = [
                    &m.codice_utente,
                    &m.codice_ente,
                    &m.tipo_ufficio,
                    &m.codice_ufficio,
                ]
                .map(|c| c.trim().to_ascii_uppercase());
                if let Some(other) = mpay_codes.insert(codes, o.fiscal_code.clone()) {
                    return Err(err(format!(
                        "MPay codes (codice_utente {}, codice_ente {}) already belong to organization {other}",
                        m.codice_utente, m.codice_ente
                    )));
                }
            }
            let Some(entry) = catalogue.organization(&o.fiscal_code) else {
                return Err(err("missing from the catalogue".into()));
            };
            let fiscal_code = entry.fiscal_code.clone();
            if fiscal_code.is_pagopa() && !fiscal_code.check_digit_ok() {
                tracing::warn!(organization = %fiscal_code, "organization fiscal code fails the check digit (accepted)");
            }
            let ctx = Arc::new(OrgContext {
                fiscal_code,
                name: o.name.clone(),
                layout: entry.default_layout,
                ibans: entry.ibans.clone(),
                entry: entry.clone(),
                settings: o.clone(),
            });
            for h in o.api_key_hashes.iter().filter_map(|h| h.lookup_key()) {
                api_keys.insert(h, ctx.clone());
            }
            orgs.insert(o.fiscal_code.clone(), ctx);
        }
        for (cf, hash) in extra_keys {
            if let Some(ctx) = orgs.get(cf) {
                api_keys.insert(hash.to_ascii_lowercase(), ctx.clone());
            }
        }
        let mut broker_keys = HashMap::new();
        let brokers = std::iter::once(&settings.broker).chain(settings.brokers.iter());
        for b in brokers.filter(|b| !b.fiscal_code.is_empty()) {
            let organizations: std::collections::HashSet<String> = catalogue
                .stations()
                .filter(|st| st.broker.as_str() == b.fiscal_code)
                .flat_map(|st| st.organizations.iter().cloned())
                .collect();
            for k in &b.api_keys {
                let Some(lookup) = k.hash.lookup_key() else {
                    continue;
                };
                broker_keys.insert(
                    lookup,
                    Arc::new(BrokerKey {
                        broker: b.fiscal_code.clone(),
                        organizations: organizations.clone(),
                        segregation_codes: k.segregation_codes.clone(),
                    }),
                );
            }
        }
        let verify_key = crate::documents::VerifyKey::load(&settings).map_err(|e| StateError {
            fiscal_code: "-".into(),
            reason: format!("documents verification key: {e}"),
        })?;
        let print_jobs = crate::print_jobs::PrintJobs::new(
            settings.node.data_dir.join("documents").join("print-jobs"),
        );
        Ok(AppState {
            throttle: Arc::new(crate::throttle::AuthThrottle::from_settings(&settings.auth)),
            station_access: Arc::new(crate::station_access::StationAccess::new(&settings)),
            verify_key,
            print_jobs,
            broker_keys: Arc::new(broker_keys),
            catalogue: Arc::new(catalogue),
            settings: Arc::new(settings),
            store,
            orgs: Arc::new(orgs),
            api_keys: Arc::new(api_keys),
            health,
            journal,
            feeds: None,
            carts: None,
            bus: None,
            recon: None,
        })
    }

    /// Enables the bulk feed API with this launcher.
    pub fn with_feeds(mut self, launcher: mpay_actors::feed_loader::FeedLauncher) -> Self {
        self.feeds = Some(launcher);
        self
    }

    /// Lets the station tell the portal's carts about the receipts it stores.
    pub fn with_carts(mut self, carts: mpay_actors::cart::CartRegistry) -> Self {
        self.carts = Some(carts);
        self
    }

    /// Syncs flows through this reconciliation worker.
    pub fn with_recon(mut self, recon: mpay_actors::recon_worker::ReconWorker) -> Self {
        self.recon = Some(recon);
        self
    }

    /// Publishes events on this bus.
    pub fn with_bus(mut self, bus: Arc<dyn mpay_actors::bus::Bus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Publishes `event` on the bus (if any): call it once the fact is durable.
    pub fn tell(&self, event: mpay_actors::bus::Event) {
        if let Some(bus) = &self.bus {
            bus.publish(event);
        }
    }

    /// Publishes a position event of `p` (`created`, `updated` or `cancelled`: an
    /// invalidated or deleted position is cancelled).
    pub fn tell_position(&self, change: PositionChange, p: &mpay_messages::position::DebtPosition) {
        self.tell_position_id(change, p.organization_fiscal_code.as_str(), &p.iupd);
    }

    /// [`AppState::tell_position`] by organization and iupd.
    pub fn tell_position_id(&self, change: PositionChange, organization: &str, iupd: &str) {
        use mpay_actors::bus::Event;
        let (organization, iupd) = (organization.to_string(), iupd.to_string());
        self.tell(match change {
            PositionChange::Created => Event::PositionCreated { organization, iupd },
            PositionChange::Updated => Event::PositionUpdated { organization, iupd },
            PositionChange::Cancelled => Event::PositionCancelled { organization, iupd },
        });
    }

    /// The organization an API key opens.
    /// Entries are looked up by their digest: the HMAC with the server secret
    /// (`hmac-sha256:` entries) or the legacy SHA-256 — two fast digests, no slow hash per
    /// request.
    pub fn org_for_key(&self, key: &str) -> Option<Arc<OrgContext>> {
        self.key_digests(key)
            .find_map(|d| self.api_keys.get(&d))
            .cloned()
    }

    /// The broker-level key an API key is, if it is one.
    pub fn broker_for_key(&self, key: &str) -> Option<Arc<BrokerKey>> {
        self.key_digests(key)
            .find_map(|d| self.broker_keys.get(&d))
            .cloned()
    }

    fn key_digests<'a>(&'a self, key: &'a str) -> impl Iterator<Item = String> + 'a {
        let hmac = self
            .settings
            .auth
            .server_secret()
            .map(|s| mpay_config::secrets::hmac_digest(s, key));
        hmac.into_iter()
            .chain(std::iter::once_with(|| mpay_config::hash_api_key(key)))
    }

    /// Sends one exchange to the journal, with the request body as payload when
    /// `journal.keep_payloads`: the first 256 KiB for a request attributed to a served
    /// organization, the first `journal.unattributed_payload_bytes` for any other (counted in
    /// `mpay_journal_payloads_truncated_total`), so unauthenticated junk cannot grow the journal
    /// by its size. Waits only when the writer's mailbox is full. No journal: no-op.
    pub async fn journal_exchange(
        &self,
        mut entry: mpay_messages::journal::JournalEntry,
        body: &[u8],
    ) {
        let Some(addr) = self.journal_addr() else {
            return;
        };
        let journal = &self.settings.journal;
        let served = entry
            .organization
            .as_deref()
            .is_some_and(|o| self.orgs.contains_key(o));
        let cap = if served {
            256 * 1024
        } else {
            journal.unattributed_payload_bytes
        };
        entry.payload = journal.keep_payloads.then(|| {
            if body.len() > cap && !served {
                metrics::counter!("mpay_journal_payloads_truncated_total").increment(1);
            }
            String::from_utf8_lossy(body.get(..body.len().min(cap)).unwrap_or_default())
                .into_owned()
        });
        if let Err(actix::dev::SendError::Full(r)) = addr.try_send(mpay_actors::Record(entry)) {
            let _ = addr.send(r).await;
        }
    }

    /// The journal writer's current address.
    pub fn journal_addr(&self) -> Option<Addr<JournalWriter>> {
        self.journal.as_ref().map(|h| h.addr())
    }
}

/// What happened to a position (the bus's position events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionChange {
    /// Created.
    Created,
    /// Changed (update, publish).
    Updated,
    /// Deleted or invalidated.
    Cancelled,
}
