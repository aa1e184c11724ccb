//! Wiring of one node: store, actors under the watchdog, web server.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Supervisor};
use anyhow::Context as _;
use mpay_actors::bus::nats::NatsBus;
use mpay_actors::bus::{Bus, InProcessBus};
use mpay_actors::cart::CartRegistry;
use mpay_actors::ente_connector::{ConnectorSettings, Connectors, Dialect, EnteEndpoint};
use mpay_actors::mailer::{Mailer, MailerSettings, ReceiptPdf};
use mpay_actors::node_channel::{CheckoutSettings, CheckoutVersion, NodeChannel};
use mpay_actors::{
    ActorHandle, FlushJournal, HealthRegistry, JournalWriter, Scheduler, SchedulerConfig, Tick,
    Watchdog,
};
use mpay_config::Settings;
use mpay_messages::domain::cart::CartTimers;
use mpay_messages::domain::delivery::DeliveryPolicy;
use mpay_storage::carts::CartStore;
use mpay_storage::{JournalStore, PositionRepository, Store};
use mpay_web::AppState;

/// A random API key (48 hex characters).
pub fn random_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The demo API key: `MPAY_DEMO_API_KEY`, else the one kept in the data directory, else a new
/// one. The key in use is always written to `<data_dir>/demo-api-key`, so that file never
/// holds a stale key.
pub fn demo_api_key(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("demo-api-key");
    if let Ok(k) = std::env::var("MPAY_DEMO_API_KEY") {
        if !k.trim().is_empty() {
            let key = k.trim().to_string();
            std::fs::create_dir_all(data_dir)?;
            if std::fs::read_to_string(&path)
                .ok()
                .as_deref()
                .map(str::trim)
                != Some(key.as_str())
            {
                std::fs::write(&path, &key)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            return Ok(key);
        }
    }
    if let Ok(k) = std::fs::read_to_string(&path) {
        if !k.trim().is_empty() {
            return Ok(k.trim().to_string());
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let key = random_key();
    std::fs::write(&path, &key).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

fn settings_portal_enabled(state: &AppState) -> bool {
    state.settings.portal.enabled
}

/// The demo's MPay `extern.do` link (as an Ente publishes it) for the organization's
/// "LOCULI CIMITERIALI" service (code AOC): printed in the banner, followed by the browser tests.
pub fn extern_do_link(base: &str, org: &mpay_config::OrganizationSettings) -> String {
    format!(
        "{base}/mpay/pagonet/extern.do?formName=formExtern&payerTipoBollettino=SPOM&payerCodiceUtente={}&payerTipologiaServizio=AOC&payerCodiceEnte={}&payerImporto=15&payerImportoCent=32&payerCausale=CONCESSIONE+LOCULO",
        org.mpay.codice_utente, org.mpay.codice_ente
    )
}

/// How a cart finds the receipt the station stored for one of its notices: the first one
/// received (a later one is a double payment the station flags).
fn receipt_lookup(ledger: Arc<mpay_storage::SledLedger>) -> mpay_actors::cart::ReceiptLookup {
    Arc::new(move |org: &str, nav: &str| {
        let org = mpay_messages::OrgFiscalCode::parse_unchecked(org).ok()?;
        let nav = mpay_messages::NoticeNumber::parse_unchecked(nav).ok()?;
        mpay_storage::ReceiptRepository::receipts_for_notice(ledger.as_ref(), &org, &nav)
            .ok()?
            .into_iter()
            .min_by_key(|r| r.received_at)
            .map(|r| r.receipt_id)
    })
}

/// The NodeChannel's view of `[checkout]`.
pub fn checkout_settings(settings: &Settings) -> CheckoutSettings {
    use secrecy::ExposeSecret as _;
    let c = &settings.checkout;
    CheckoutSettings {
        base_url: c.base_url.clone(),
        version: if c.api_version == 1 {
            CheckoutVersion::V1
        } else {
            CheckoutVersion::V2
        },
        subscription_key: c
            .subscription_key
            .as_ref()
            .map(|k| k.expose_secret().to_string()),
        timeout: Duration::from_millis(c.timeout_ms.max(1)),
        connect_retries: c.connect_retries,
    }
}

/// The connectors' view of every `[organizations.notification]` (PEM files read here, once).
/// Errors: a certificate or key file that cannot be read.
pub fn ente_endpoints(settings: &Settings) -> anyhow::Result<Vec<EnteEndpoint>> {
    use mpay_config::notification::EndpointKind;
    use secrecy::ExposeSecret as _;
    let mut out = Vec::new();
    for o in &settings.organizations {
        let Some(n) = &o.notification else { continue };
        let read = |p: &Path| {
            std::fs::read(p).with_context(|| {
                format!(
                    "organization {}: cannot read {}",
                    o.fiscal_code,
                    p.display()
                )
            })
        };
        let identity_pem = match (&n.client_cert, &n.client_key) {
            (Some(c), Some(k)) => {
                let mut pem = read(c.as_path())?;
                pem.push(b'\n');
                pem.extend(read(k.as_path())?);
                Some(pem)
            }
            (Some(c), None) => Some(read(c.as_path())?),
            _ => None,
        };
        let codice_ente = o.mpay.codice_ente.trim();
        out.push(EnteEndpoint {
            organization: o.fiscal_code.clone(),
            codice_ente: if codice_ente.is_empty() {
                o.fiscal_code.clone()
            } else {
                codice_ente.to_string()
            },
            dialect: match n.kind {
                EndpointKind::Webhook => Dialect::Webhook {
                    secret: n
                        .secret
                        .as_ref()
                        .map(|s| s.expose_secret().as_bytes().to_vec())
                        .unwrap_or_default(),
                },
                EndpointKind::Soap => Dialect::Soap,
            },
            url: n.url.trim().to_string(),
            basic: n.basic_user.as_ref().map(|u| {
                (
                    u.clone(),
                    n.basic_password
                        .as_ref()
                        .map(|p| p.expose_secret().to_string()),
                )
            }),
            identity_pem,
            ca_pem: n.ca_cert.as_deref().map(read).transpose()?,
            timeout: Duration::from_millis(n.timeout_ms.max(1)),
            flows_url: n.flows_target(),
        });
    }
    Ok(out)
}

/// The delivery policy of `[notifications]`.
pub fn connector_settings(settings: &Settings) -> ConnectorSettings {
    let n = &settings.notifications;
    let ms = |v: u64| chrono::Duration::milliseconds(i64::try_from(v).unwrap_or(i64::MAX / 2));
    ConnectorSettings {
        policy: DeliveryPolicy {
            backoff_base: ms(n.backoff_base_ms),
            backoff_max: ms(n.backoff_max_ms),
            horizon: ms(n.horizon_secs.saturating_mul(1000)),
            breaker_failures: n.breaker_failures,
            breaker_open: ms(n.breaker_open_ms),
        },
        batch: n.batch,
        concurrency: n.concurrency,
    }
}

/// The receipt PDF renderer of `mpay serve` (the receipt e-mail's attachment; rendering runs
/// on a blocking thread): the same PDF as `GET …/receipts/{id}/pdf`, its QR code linking to the
/// verification page at `[portal] public_url` (else the HTTP bind address). `None` when the
/// verification key cannot be read or created: the e-mail then carries the receipt XML only.
pub fn receipt_pdf_renderer(settings: &Settings) -> Option<ReceiptPdf> {
    let key = match mpay_web::documents::VerifyKey::load(settings) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "receipt e-mails without PDF: the verification key cannot be read");
            return None;
        }
    };
    let configured = settings.portal.public_url.trim().trim_end_matches('/');
    let origin = if configured.is_empty() {
        format!("http://{}", settings.http.bind)
    } else {
        configured.to_owned()
    };
    let names: std::collections::HashMap<String, String> = settings
        .organizations
        .iter()
        .map(|o| (o.fiscal_code.clone(), o.name.clone()))
        .collect();
    Some(Arc::new(move |r: &mpay_storage::StoredReceipt| {
        let name = names.get(&r.organization).cloned().unwrap_or_default();
        let url = format!(
            "{origin}/ricevute/verify/{}",
            key.id(&r.organization, &r.receipt_id)
        );
        let input = mpay_web::documents::receipt_input(r, &name, url);
        mpay_documents::render_receipt(&input).map_err(|e| e.to_string())
    }))
}

/// The mailer's retries (`[mail]`).
pub fn mailer_settings(settings: &Settings) -> MailerSettings {
    let m = &settings.mail;
    let ms = |v: u64| chrono::Duration::milliseconds(i64::try_from(v).unwrap_or(i64::MAX / 2));
    MailerSettings {
        policy: DeliveryPolicy {
            backoff_base: ms(m.backoff_base_ms),
            backoff_max: ms(m.backoff_max_ms),
            horizon: ms(m.horizon_secs.saturating_mul(1000)),
            ..DeliveryPolicy::default()
        },
        batch: m.batch,
    }
}

/// A started node (actors running, HTTP bound but not yet served until
/// [`Application::run_until_stopped`]).
pub struct Application {
    /// The bound address.
    pub addr: std::net::SocketAddr,
    /// The store.
    pub store: Store,
    /// Web state (settings, organizations, health).
    pub state: AppState,
    /// Journal writer.
    pub journal: ActorHandle<JournalWriter>,
    /// Scheduler.
    pub scheduler: ActorHandle<Scheduler>,
    /// The demo organization (fiscal code, name, API key) with `--demo`.
    pub demo: Option<(String, String, String)>,
    /// Bulk feeds: launcher, FTP server, drop folder (feeds addition).
    pub feeds: crate::feeds::FeedServices,
    /// The station's mutual-TLS listener (`[station] tls_bind`), when configured.
    pub station_tls_addr: Option<std::net::SocketAddr>,
    server: actix_web::dev::Server,
}

impl Application {
    /// Opens the store, starts the actors under the watchdog, seeds the demo data (with `demo`)
    /// and binds the HTTP listener. Must run inside an actix `System`.
    ///
    /// Errors: the store cannot be opened (locked by another process, permissions), the address
    /// cannot be bound, the organizations' settings are unusable.
    pub async fn build(settings: Settings, demo: bool) -> anyhow::Result<Self> {
        let pdf = receipt_pdf_renderer(&settings);
        Self::build_with_receipt_pdf(settings, demo, pdf).await
    }

    /// [`Application::build`] with the receipt PDF renderer of the receipt e-mail given
    /// (tests inject one; `mpay serve` uses [`receipt_pdf_renderer`]).
    pub async fn build_with_receipt_pdf(
        settings: Settings,
        demo: bool,
        receipt_pdf: Option<ReceiptPdf>,
    ) -> anyhow::Result<Self> {
        let legacy = settings.legacy_secret_keys();
        if !legacy.is_empty() {
            tracing::warn!(
                entries = %legacy.join(", "),
                "unsalted SHA-256 secrets in the configuration (accepted): replace them with the output of `mpay hash-secret`"
            );
        }
        // --- portal addition: with --demo and no [checkout] base_url, the simulated pagoPA
        // Checkout runs embedded on a second port
        let mut settings = settings;
        let checkout_sim = if demo && settings.checkout.base_url.trim().is_empty() {
            let host = settings
                .http
                .bind
                .rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .unwrap_or_else(|| "127.0.0.1".into());
            let l = TcpListener::bind(format!("{host}:0"))
                .context("cannot bind the simulated Checkout")?;
            settings.checkout.base_url = format!("http://{}/checkout/ec/v2", l.local_addr()?);
            Some(l)
        } else {
            None
        };
        // --- end portal addition
        let dir = settings.store_dir();
        let store =
            Store::open_with_cache(&dir, settings.node.cache_mb.saturating_mul(1024 * 1024))
                .with_context(|| {
                    format!(
                        "cannot open the store in {} (is another `mpay` running on it?)",
                        dir.display()
                    )
                })?;
        let health = HealthRegistry::new();

        let mut extra_keys = Vec::new();
        let mut demo_info = None;
        if demo {
            if let Some(org) = settings.organizations.first() {
                let key = demo_api_key(&settings.node.data_dir)?;
                extra_keys.push((org.fiscal_code.clone(), mpay_config::hash_api_key(&key)));
                demo_info = Some((org.fiscal_code.clone(), org.name.clone(), key));
            }
        }

        let mut watchdog = Watchdog::new(
            health.clone(),
            Duration::from_millis(settings.watchdog.interval_ms),
        );
        // the size bound removes a sixteenth of the journal at a time (whole segments)
        store
            .journal
            .set_segment_bytes(settings.journal.max_bytes / 16);
        let journal_store: Arc<dyn JournalStore> = store.journal.clone();
        let (js, reg, batch_max, interval) = (
            journal_store.clone(),
            health.clone(),
            settings.journal.batch_max,
            Duration::from_millis(settings.journal.batch_interval_ms),
        );
        let journal = watchdog.watch("JournalWriter", "main", move || {
            let (js, reg) = (js.clone(), reg.clone());
            Supervisor::start(move |_| JournalWriter::new(js, reg, batch_max, interval))
        });
        let ledger: Arc<dyn PositionRepository> = store.ledger.clone();
        let (reg, cfg) = (
            health.clone(),
            SchedulerConfig {
                tick: Duration::from_secs(settings.scheduler.tick_secs),
                journal_retention: chrono::Duration::days(i64::from(
                    settings.journal.retention_days,
                )),
                journal_max_bytes: settings.journal.max_bytes,
            },
        );
        let scheduler = watchdog.watch("Scheduler", "main", move || {
            let (l, j, r, c) = (
                ledger.clone(),
                journal_store.clone(),
                reg.clone(),
                cfg.clone(),
            );
            Supervisor::start(move |_| Scheduler::new(l, j, r, c))
        });
        // --- portal addition: NodeChannel (outbound to pagoPA Checkout) under the watchdog
        let checkout = checkout_settings(&settings);
        let (reg, cs) = (health.clone(), checkout.clone());
        let node_channel = watchdog.watch("NodeChannel", "main", move || {
            let (reg, cs) = (reg.clone(), cs.clone());
            Supervisor::start(move |_| NodeChannel::new(cs, reg))
        });
        // --- end portal addition
        // Ente notifications: the store enqueues a notification with every receipt of an
        // organization that has an endpoint; one EnteConnector per such Ente drains it, woken
        // by the bus when a receipt is stored
        let _ = rustls::crypto::ring::default_provider().install_default();
        let endpoints = ente_endpoints(&settings)?;
        store
            .ledger
            .set_notified_organizations(endpoints.iter().map(|e| e.organization.clone()));
        // reporting flows of the Enti that asked for them go to the same outbox, with the flow
        store.reconciliation.set_flow_forwarding(
            endpoints
                .iter()
                .filter(|e| e.flows_url.is_some())
                .map(|e| e.organization.clone()),
        );
        let connectors = Connectors::start(
            &mut watchdog,
            endpoints,
            &store,
            &health,
            connector_settings(&settings),
        )
        .map_err(|e| anyhow::anyhow!("notification endpoint: {e}"))?;
        // the receipt e-mail: the store enqueues it with the receipt; the ReceiptMailer sends it
        store.ledger.set_receipt_mail(settings.mail.enabled);
        let mailer = if settings.mail.enabled {
            Some(
                Mailer::start(
                    &mut watchdog,
                    &crate::smtp::smtp_settings(&settings)?,
                    mailer_settings(&settings),
                    receipt_pdf,
                    &store,
                    &health,
                )
                .map_err(|e| anyhow::anyhow!("[mail]: {e}"))?,
            )
        } else {
            None
        };
        // the bus: in-process, or NATS JetStream when a URL is configured (`--nats`)
        let bus: Arc<dyn Bus> = if settings.bus.nats_url.trim().is_empty() {
            Arc::new(InProcessBus::new(&settings.node.id, 4096).with_store(store.clone()))
        } else {
            Arc::new(
                NatsBus::connect(settings.bus.nats_url.trim(), &settings.node.id)
                    .await
                    .map_err(|e| anyhow::anyhow!("[bus] nats_url: {e}"))?,
            )
        };
        connectors.listen(bus.clone());
        if let Some(m) = &mailer {
            m.listen(bus.clone());
        }
        // reconciliation: FdR sync on a schedule and on demand, runs on fdr.acquired /
        // fdr.statement_imported
        let recon = mpay_actors::recon_worker::ReconWorker::start(
            &mut watchdog,
            mpay_actors::recon_worker::ReconSettings {
                api: mpay_web::api::reconciliation::fdr_api(&settings.fdr),
                sync_interval: Duration::from_secs(settings.fdr.sync_interval_secs),
                organizations: settings
                    .organizations
                    .iter()
                    .map(|o| o.fiscal_code.clone())
                    .collect(),
            },
            &store,
            &health,
        );
        recon.listen(bus.clone());
        // the daily reconciliation exports (e-mail / FTP) of the organizations that want them
        if let Some(x) = crate::recon_cli::export_batch_settings(&settings)? {
            mpay_actors::export_batch::ExportBatch::start(
                &mut watchdog,
                x,
                crate::recon_cli::export_render(),
                &store,
                &health,
            );
        }

        // receipt recovery from pagoPA's biz-events API ([biz_events]; issue 14)
        let _recovery = mpay_actors::receipt_recovery::ReceiptRecovery::start(
            &mut watchdog,
            recovery_settings(&settings.biz_events),
            &store,
            &health,
        )
        .with_bus(bus.clone());
        watchdog.start();

        // --- feeds addition: FeedLoader launcher (resumes interrupted loads), FTP, drop folder
        let feeds =
            crate::feeds::FeedServices::start(&settings, &store, &health, Some(bus.clone()))?;
        // --- end feeds addition

        let state = AppState::new(
            settings.clone(),
            store.clone(),
            health,
            Some(journal.clone()),
            &extra_keys,
        )?
        .with_feeds(feeds.launcher.clone())
        .with_bus(bus.clone())
        .with_recon(recon);
        if let Some((cf, _, _)) = &demo_info {
            let (st, cf2) = (state.clone(), cf.clone());
            let n = tokio::task::spawn_blocking(move || mpay_web::demo::seed(&st, &cf2)).await??;
            if n > 0 {
                tracing::info!(organization = %cf, positions = n, "demo positions created");
            }
        }

        // --- portal addition: cart sessions (resumed from their store) and the portal
        let portal = if settings.portal.enabled {
            let carts_dir = settings.node.data_dir.join("carts-v1");
            let cart_store = CartStore::open(&carts_dir).with_context(|| {
                format!("cannot open the cart store in {}", carts_dir.display())
            })?;
            let p = &settings.portal;
            let carts = CartRegistry::new(
                cart_store,
                CartTimers {
                    idle: chrono::Duration::minutes(i64::from(p.cart_idle_minutes)),
                    checkout_window: chrono::Duration::minutes(i64::from(
                        p.checkout_window_minutes,
                    )),
                },
                Duration::from_secs(p.cart_tick_secs.max(1)),
                state.health.clone(),
                node_channel.clone(),
                receipt_lookup(store.ledger.clone()),
            );
            let resumed = carts.resume_all().map_err(|e| anyhow::anyhow!("{e}"))?;
            if resumed > 0 {
                tracing::info!(carts = resumed, "cart sessions resumed");
            }
            Some(mpay_web::portal::Portal::new(carts, &checkout.base_url)?)
        } else {
            None
        };
        // --- end portal addition

        let listener = TcpListener::bind(&settings.http.bind)
            .with_context(|| format!("cannot bind {}", settings.http.bind))?;
        let addr = listener.local_addr()?;
        mpay_web::ops::write_ops_file(&settings.ops_file_path(), addr)
            .context("cannot write the operator file (ops.json) in the data directory")?;
        // the station's mutual-TLS listener (issue 9.12), when configured
        let tls_bind = settings.station.tls_bind.trim();
        let station_tls = if tls_bind.is_empty() {
            None
        } else {
            Some(
                TcpListener::bind(tls_bind)
                    .with_context(|| format!("station.tls_bind: cannot bind {tls_bind}"))?,
            )
        };
        let station_tls_addr = match &station_tls {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let server = mpay_web::server_with_listeners(state.clone(), listener, station_tls, portal)?;
        if let Some(l) = checkout_sim {
            let cfg = pagopa_sim::checkout::CheckoutSimConfig {
                station_url: format!("http://{addr}/pagopa/paForNode"),
                broker: settings.broker.fiscal_code.clone(),
                station: settings
                    .stations
                    .first()
                    .map(|s| s.id.clone())
                    .unwrap_or_default(),
            };
            actix_rt::spawn(pagopa_sim::checkout::serve(cfg, l)?);
        }
        Ok(Application {
            addr,
            store,
            state,
            journal,
            scheduler,
            demo: demo_info,
            feeds,
            station_tls_addr,
            server,
        })
    }

    /// Prints where the node listens and, with `--demo`, the demo organization and key.
    pub fn print_banner(&self) {
        use std::io::Write as _;
        let base = format!("http://{}", self.addr);
        println!("mpay {} listening on {base}", env!("CARGO_PKG_VERSION"));
        if settings_portal_enabled(&self.state) {
            println!("  citizen portal: {base}/");
        }
        println!("  API docs:   {base}/api/docs/");
        println!("  OpenAPI:    {base}/api/openapi.json");
        println!("  health:     {base}/health/ready  {base}/health/actors  {base}/metrics");
        println!("  pagoPA station (SOAP, POST):   {base}/pagopa/paForNode   (WSDL: ?wsdl)");
        if let Some(a) = self.station_tls_addr {
            println!("  pagoPA station over mutual TLS: https://{a}/pagopa/paForNode");
        }
        println!(
            "  MPay Archivio Carichi (SOAP, POST):  {base}/ArchivioCarichiService/integraecdifferito   (WSDL: ?wsdl)"
        );
        let settings = &self.state.settings;
        if settings.portal.enabled && !settings.checkout.base_url.is_empty() {
            println!("  pagoPA Checkout (carts): {}", settings.checkout.base_url);
        }
        let data_dir = std::path::absolute(&settings.node.data_dir)
            .unwrap_or_else(|_| settings.node.data_dir.clone());
        println!("  data dir:   {}", data_dir.display());
        if settings.ftp.enabled {
            println!("  feeds FTP:  ftp://{}", settings.ftp.bind);
        } else {
            println!("  feeds FTP:  off ([ftp] enabled = false)");
        }
        if settings.mail.enabled {
            println!(
                "  receipt e-mails: SMTP {}:{} (tls = {})",
                settings.mail.host,
                settings.mail.port,
                settings.mail.tls.as_str()
            );
        }
        match &settings.feeds.drop_dir {
            Some(d) => println!("  feeds drop folder: {}/<fiscal code>/", d.display()),
            None => println!("  feeds drop folder: off ([feeds] drop_dir unset)"),
        }
        if let Some((cf, name, key)) = &self.demo {
            println!("  demo organization: {name} — fiscal code {cf}");
            if let Some(ipa) = settings
                .organization(cf)
                .and_then(|o| o.ipa_code.as_deref())
            {
                println!(
                    "  demo feed file names: {ipa}-<flowId>-<version>.csv|zip (ipa_code {ipa})"
                );
            }
            println!("  demo API key (header Ocp-Apim-Subscription-Key): {key}");
            if settings.portal.enabled {
                if let Some(o) = settings.organization(cf) {
                    println!("  extern.do link: {}", extern_do_link(&base, o));
                }
            }
            println!("  try: curl -H 'Ocp-Apim-Subscription-Key: {key}' {base}/api/v1/organizations/{cf}/debtpositions");
        }
        let _ = std::io::stdout().flush();
    }

    /// A handle that stops the server gracefully (like SIGTERM).
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Asks the scheduler for a pass now.
    pub fn tick_scheduler(&self) {
        self.scheduler.addr().do_send(Tick);
    }

    /// Serves until SIGTERM/SIGINT (or a stop through [`Application::server_handle`]): stops
    /// accepting, lets in-flight requests finish, then writes the pending journal and flushes the
    /// store.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let gave_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = actix_rt::spawn(probe_store(
            self.store.clone(),
            self.state.health.clone(),
            self.server.handle(),
            self.state.settings.node.store_probe_secs,
            self.state.settings.node.unwritable_exit_secs,
            gave_up.clone(),
        ));
        self.server.await?;
        probe.abort();
        if gave_up.load(std::sync::atomic::Ordering::SeqCst) {
            self.feeds.launcher.shutdown();
            return Err(StoreUnwritable.into());
        }
        // --- feeds addition: running loads pause after their current group (resumed at start)
        self.feeds.launcher.shutdown();
        for _ in 0..200 {
            if self.feeds.launcher.active_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // --- end feeds addition
        tracing::info!("HTTP server stopped; flushing");
        if let Ok(Err(e)) = self.journal.addr().send(FlushJournal).await {
            tracing::warn!(error = %e, "journal flush failed");
        }
        let st = self.store.clone();
        tokio::task::spawn_blocking(move || st.flush_blocking()).await??;
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

/// The node stopped because its store could not write (exit code 75 for the supervisor).
#[derive(Debug, thiserror::Error)]
#[error(
    "the store could not write for [node] unwritable_exit_secs: stopping so that the supervisor \
     starts the node again (free disk space; the store does not recover in place)"
)]
pub struct StoreUnwritable;

/// Checks every `every_secs` that the store can write; keeps readiness and
/// `mpay_store_writable` true to it; after `exit_secs` of failures stops the server (and sets
/// `gave_up`), so that the supervisor starts the node again on a store that can write.
async fn probe_store(
    store: Store,
    health: HealthRegistry,
    server: actix_web::dev::ServerHandle,
    every_secs: u64,
    exit_secs: u64,
    gave_up: Arc<std::sync::atomic::AtomicBool>,
) {
    if every_secs == 0 {
        return;
    }
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(every_secs)).await;
        let st = store.clone();
        let result = match tokio::task::spawn_blocking(move || st.probe_write()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => {
                if failing_since.take().is_some() {
                    tracing::info!("the store writes again");
                }
                health.set_store_writable(true);
                metrics::gauge!("mpay_store_writable").set(1.0);
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(|| {
                    tracing::error!(error = %e, "the store cannot write: not ready (free disk space)");
                    std::time::Instant::now()
                });
                health.set_store_writable(false);
                metrics::gauge!("mpay_store_writable").set(0.0);
                metrics::counter!("mpay_store_write_failures_total").increment(1);
                if exit_secs > 0 && since.elapsed() >= Duration::from_secs(exit_secs) {
                    tracing::error!(
                        after_secs = since.elapsed().as_secs(),
                        "the store still cannot write: stopping (exit code 75) for the supervisor to restart the node"
                    );
                    gave_up.store(true, std::sync::atomic::Ordering::SeqCst);
                    server.stop(true).await;
                    return;
                }
            }
        }
    }
}

/// The receipt recovery's settings from `[biz_events]` (the API only when `base_url` is set).
fn recovery_settings(
    b: &mpay_config::biz_events::BizEventsSettings,
) -> mpay_actors::receipt_recovery::RecoverySettings {
    use secrecy::ExposeSecret;
    let secs = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
    mpay_actors::receipt_recovery::RecoverySettings {
        api: (!b.base_url.trim().is_empty()).then(|| mpay_actors::receipt_recovery::BizEventsApi {
            base_url: b.base_url.trim().to_string(),
            subscription_key: b
                .subscription_key
                .as_ref()
                .map(|k| k.expose_secret().to_string()),
            timeout: Duration::from_millis(b.timeout_ms),
        }),
        policy: mpay_messages::domain::recovery::RecoveryPolicy {
            calls_per_hour: b.calls_per_hour,
            max_attempts: b.max_attempts,
            first_backoff: chrono::Duration::seconds(secs(b.backoff_secs)),
        },
        delay: chrono::Duration::seconds(secs(b.delay_secs)),
        poll: Duration::from_secs(b.poll_secs),
    }
}
