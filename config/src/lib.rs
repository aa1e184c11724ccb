//! `mpay-config`: typed settings loaded with the `config` crate.
//!
//! Layers, later wins: the embedded `config/default.toml` ← (with `--demo`) the embedded
//! `config/demo.toml` ← an optional file given with `--config PATH` ← the environment
//! `MPAY__SECTION__KEY` (double underscore between levels, e.g. `MPAY__HTTP__BIND`).
//!
//! After deserialization every setting is checked ([`Settings::validate`]); an error names the
//! key (e.g. `organizations[0].fiscal_code`) and the reason. Secrets are [`secrecy`] types and
//! never printed.
//!
//! Size (~1 150 lines of code): one file on purpose — the settings types and their one
//! validation pass read together (every key, its default and its check side by side); the
//! parts that stand alone live in their own files (`access.rs`, `catalogue.rs`, `mail.rs`,
//! `notification.rs`, `portal.rs`, `reporting.rs`, `documents.rs`, `secrets.rs`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub mod access;
pub mod biz_events;
pub mod catalogue;
pub mod documents;
pub mod mail;
pub mod notification;
pub mod portal;
pub mod reporting;
pub mod secrets;
pub use catalogue::{Catalogue, OrgEntry, StationEntry, StationRelation};
pub use secrets::{HashForm, SecretHash};

use mpay_messages::{Iban, NoticeLayout, OrgFiscalCode};
use secrecy::SecretString;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The embedded defaults.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");
/// The embedded demo organization.
pub const DEMO_TOML: &str = include_str!("../demo.toml");

/// A configuration that cannot be loaded: the key and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or the environment could not be read or has a wrong type.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value is present but wrong.
    #[error("configuration key `{key}`: {reason}")]
    Invalid {
        /// Path of the key, e.g. `organizations[0].fiscal_code`.
        key: String,
        /// Why it is wrong.
        reason: String,
    },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// All settings of one node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// This node.
    pub node: NodeSettings,
    /// HTTP server.
    pub http: HttpSettings,
    /// REST API limits.
    pub api: ApiSettings,
    /// The intermediary (broker PA) — the first broker; more in `[[brokers]]`.
    pub broker: BrokerSettings,
    /// Further brokers hosted on this platform (Enti that are their own intermediary and use
    /// the platform as technology partner). Their stations name them in `stations[].broker`.
    #[serde(default)]
    pub brokers: Vec<BrokerSettings>,
    /// The pagoPA station endpoint.
    pub station: StationEndpointSettings,
    /// Timed jobs.
    pub scheduler: SchedulerSettings,
    /// Journal of exchanges.
    pub journal: JournalSettings,
    /// Actor watchdog.
    pub watchdog: WatchdogSettings,
    /// pagoPA stations of the broker.
    #[serde(default)]
    pub stations: Vec<StationSettings>,
    /// Organizations (Enti Creditori) served.
    #[serde(default)]
    pub organizations: Vec<OrganizationSettings>,
    /// Service catalogue (TipologiaServizio).
    #[serde(default)]
    pub services: Vec<ServiceSettings>,
    /// Bulk feeds (REST upload limit, resume, drop folder).
    #[serde(default)]
    pub feeds: FeedsSettings,
    /// FTP server for bulk feeds.
    #[serde(default)]
    pub ftp: FtpSettings,
    /// Stored secrets and the throttling of failed logins.
    #[serde(default)]
    pub auth: AuthSettings,
    /// Citizen portal and cart (`[portal]`, see `portal.rs`).
    #[serde(default)]
    pub portal: crate::portal::PortalSettings,
    /// pagoPA Checkout, where carts are paid (`[checkout]`, see `portal.rs`).
    #[serde(default)]
    pub checkout: crate::portal::CheckoutSettings,
    /// Delivery policy of Ente notifications (`[notifications]`, see `notification.rs`).
    #[serde(default)]
    pub notifications: crate::notification::NotificationPolicySettings,
    /// pagoPA's FdR API, where reporting flows are downloaded (`[fdr]`, see `reporting.rs`).
    #[serde(default)]
    pub fdr: crate::reporting::FdrSettings,
    /// The receipt e-mail's SMTP server and retries (`[mail]`, see `mail.rs`).
    #[serde(default)]
    pub mail: crate::mail::MailSettings,
    /// The message bus (`[bus]`): in-process unless a NATS URL is given.
    #[serde(default)]
    pub bus: BusSettings,
    /// Payment notices and receipts as PDF (`[documents]`, see `documents.rs`).
    #[serde(default)]
    pub documents: crate::documents::DocumentsSettings,
    /// pagoPA's biz-events API, where missing receipts are recovered (`[biz_events]`, see
    /// `biz_events.rs`).
    #[serde(default)]
    pub biz_events: crate::biz_events::BizEventsSettings,
}

/// `[bus]`: the message bus between the actors (and the nodes).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusSettings {
    /// NATS server URL (`nats://host:4222`, JetStream enabled); empty = the in-process bus.
    /// `mpay serve --nats URL` overrides it.
    pub nats_url: String,
}

/// `[feeds]`: bulk debt-position feeds (FORMAT.md §5).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedsSettings {
    /// Largest feed accepted by `POST .../feeds`, bytes (default 512 MiB). Uploads stream to a
    /// file under `<data_dir>/feeds`, so memory does not grow with it.
    pub max_upload_bytes: u64,
    /// At start-up, resume loads left RUNNING by a crash or a stop (false = mark them FAILED).
    pub resume_interrupted: bool,
    /// Drop folder: `<drop_dir>/<organization fiscal code>/` is watched for new feed files;
    /// results go to its `out/` subfolder. Empty = no drop folder.
    pub drop_dir: Option<PathBuf>,
    /// Drop folder: polling interval, ms (also the fallback when file events are missed).
    pub drop_poll_ms: u64,
    /// Drop folder: a file is complete when its size and time did not change for this long, ms.
    pub drop_settle_ms: u64,
    /// Zip feeds: most entries in the archive (default 16).
    pub zip_max_entries: usize,
    /// Zip feeds: largest uncompressed CSV, bytes (default 512 MiB).
    pub zip_max_csv_bytes: u64,
    /// Zip feeds: largest ratio uncompressed / compressed (default 200).
    pub zip_max_ratio: u64,
}

impl Default for FeedsSettings {
    fn default() -> Self {
        FeedsSettings {
            max_upload_bytes: 512 * 1024 * 1024,
            resume_interrupted: true,
            drop_dir: None,
            drop_poll_ms: 1000,
            drop_settle_ms: 1000,
            zip_max_entries: 16,
            zip_max_csv_bytes: 512 * 1024 * 1024,
            zip_max_ratio: 200,
        }
    }
}

/// `[ftp]`: FTP server for bulk feeds; each organization is jailed in
/// `<data_dir>/ftp/<fiscal code>/` with `in/` (uploads) and `out/` (reports).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FtpSettings {
    /// Start the FTP server (default false).
    pub enabled: bool,
    /// Control connection address, `host:port`.
    pub bind: String,
    /// Lowest passive data port.
    pub passive_port_min: u16,
    /// Highest passive data port.
    pub passive_port_max: u16,
    /// FTPS: PEM certificate chain; with `tls_key` enables explicit TLS (AUTH TLS). Default off.
    pub tls_cert: Option<PathBuf>,
    /// FTPS: PEM private key.
    pub tls_key: Option<PathBuf>,
    /// With `tls_cert` / `tls_key` set: refuse logins and data transfers that are not protected
    /// by TLS (`AUTH TLS` before `USER`/`PASS`, `PROT P` for data), so an Ente's credentials and
    /// files never travel in clear. Default true; false lets plain-FTP clients in as well.
    /// Without TLS configured the server is plain FTP and this has no effect.
    pub ftps_required: bool,
    /// Accounts, one per organization.
    pub accounts: Vec<FtpAccount>,
    /// Control connections open at once, all clients; a further one is answered 421 and
    /// closed. Default 64.
    pub max_connections: usize,
    /// Control connections one client IP may hold. Default 8.
    pub max_connections_per_ip: usize,
    /// A connection must log in within this time or it is closed, seconds. Default 30.
    pub login_timeout_secs: u64,
    /// An idle session is closed after this time, seconds. Default 300.
    pub idle_timeout_secs: u64,
    /// Bytes an account may keep in its folder (`in/` + `out/`); an upload beyond it is
    /// refused. Default 1 GiB; 0 = no quota.
    pub quota_bytes: u64,
    /// Files in an account's `in/` and `out/` older than this are removed by the housekeeping
    /// (hourly and at start-up), days. Default 30; 0 = keep forever.
    pub retention_days: u64,
}

impl Default for FtpSettings {
    fn default() -> Self {
        FtpSettings {
            enabled: false,
            bind: "127.0.0.1:2121".into(),
            passive_port_min: 49152,
            passive_port_max: 49200,
            tls_cert: None,
            tls_key: None,
            ftps_required: true,
            accounts: Vec::new(),
            max_connections: 64,
            max_connections_per_ip: 8,
            login_timeout_secs: 30,
            idle_timeout_secs: 300,
            quota_bytes: 1 << 30,
            retention_days: 30,
        }
    }
}

/// `[[ftp.accounts]]`: the FTP login of one organization.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FtpAccount {
    /// Organization fiscal code.
    pub organization: String,
    /// User name.
    pub user: String,
    /// The password as an argon2id PHC string (`mpay hash-secret --kind ftp-password`), or
    /// the legacy SHA-256 in hex (accepted, warned about at start-up). Never printed.
    pub password_hash: SecretHash,
}

/// `[node]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// Node id (logs, journal, cluster).
    pub id: String,
    /// Data directory (the store lives in a versioned folder under it).
    pub data_dir: PathBuf,
    /// Store page cache in MiB (sled `cache_capacity`); size it to the hot working set.
    #[serde(default = "default_cache_mb")]
    pub cache_mb: u64,
    /// How often the node checks that its store can still write (seconds; 0 = never).
    #[serde(default = "default_store_probe_secs")]
    pub store_probe_secs: u64,
    /// After the store has failed to write for this long (seconds), the node stops with exit
    /// code 75 so that its supervisor restarts it on a store that can write again (the store
    /// does not recover from a write failure in place); 0 = keep running, not ready.
    #[serde(default = "default_unwritable_exit_secs")]
    pub unwritable_exit_secs: u64,
    /// `development` (default: a station with no allow-list and no mTLS answers anyone, with
    /// one warning at start-up) or `production` (the station answers only peers in
    /// `[station] allowed_networks` or authenticated by its mTLS listener).
    #[serde(default)]
    pub environment: crate::access::Environment,
}

/// As `config/default.toml` and `mpay_storage::DEFAULT_CACHE_BYTES`: 1 GiB, so that a 1 M-position
/// working set stays in memory.
fn default_cache_mb() -> u64 {
    1024
}

fn default_store_probe_secs() -> u64 {
    2
}

fn default_unwritable_exit_secs() -> u64 {
    30
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Bind address, `host:port`.
    pub bind: String,
    /// Largest request body, bytes.
    pub body_limit_bytes: usize,
    /// Worker threads; 0 = one per core.
    pub workers: usize,
    /// A request's head must arrive within this time after the connection opens or the
    /// previous request ends (actix `client_request_timeout`), milliseconds. Default 5000.
    #[serde(default = "default_head_timeout_ms")]
    pub head_timeout_ms: u64,
    /// A request's body must arrive whole within this time of its head (slow-body clients are
    /// answered 408 and disconnected), milliseconds. Default 10000.
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// An idle keep-alive connection is closed after this time, seconds. Default 5.
    #[serde(default = "default_keep_alive_secs")]
    pub keep_alive_secs: u64,
    /// Open connections one client IP may hold; a request on a further one is answered 429 and
    /// the connection closed. Default 64; 0 = no limit.
    #[serde(default = "default_http_per_ip")]
    pub max_connections_per_ip: usize,
    /// Reverse proxies whose `X-Forwarded-For` / `Forwarded` headers are believed (CIDR
    /// ranges or addresses); from any other peer those headers are ignored.
    #[serde(default, deserialize_with = "crate::access::trusted_proxies")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Requests in flight on every route but the station's (REST, portal, Archivio Carichi,
    /// WSDL, ops); one more is answered 503 with `Retry-After`, so that the station always
    /// has room. Default 256; 0 = no limit.
    #[serde(default = "default_max_inflight_other")]
    pub max_inflight_other: usize,
}

fn default_max_inflight_other() -> usize {
    256
}

fn default_head_timeout_ms() -> u64 {
    5000
}
fn default_body_timeout_ms() -> u64 {
    10_000
}
fn default_keep_alive_secs() -> u64 {
    5
}
fn default_http_per_ip() -> usize {
    64
}

/// `[auth]`: the server secret of API key digests and the throttling of failed logins (issue
/// 9.5, 9.11).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Key of the `hmac-sha256:` API key entries (at least 32 characters). Set it through the
    /// environment (`MPAY__AUTH__HASH_SECRET`), not in a file kept with the configuration.
    pub hash_secret: Option<SecretString>,
    /// Failed authentications (REST API key, FTP login) allowed per client IP, and per
    /// presented key prefix / FTP user, within `failure_window_secs`; beyond them the client is
    /// throttled (REST 429 with Retry-After, FTP 421 / refused logins) until the window ends.
    pub failure_limit: u32,
    /// The window of `failure_limit`, seconds.
    pub failure_window_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            hash_secret: None,
            failure_limit: 20,
            failure_window_secs: 60,
        }
    }
}

impl AuthSettings {
    /// The server secret's bytes, if configured.
    pub fn server_secret(&self) -> Option<&[u8]> {
        use secrecy::ExposeSecret as _;
        self.hash_secret
            .as_ref()
            .map(|s| s.expose_secret().as_bytes())
    }
}

/// `[api]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Most positions in one bulk create.
    pub bulk_limit: usize,
    /// Largest page size of list endpoints.
    pub max_page_limit: usize,
}

/// `[broker]`: the intermediary (idBrokerPA).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    /// Broker fiscal code (11 digits) or empty when not configured.
    pub fiscal_code: String,
    /// Station password for SOAP calls to the Node (`stPassword`), if any. Never printed.
    #[serde(default)]
    pub node_password: Option<SecretString>,
    /// Subscription key for the Node's REST APIs. Never printed.
    #[serde(default)]
    pub node_subscription_key: Option<SecretString>,
    /// Broker-level API keys of the REST API: each acts for every organization served by a
    /// station of this broker (GPD's API-management subscription of an intermediary),
    /// optionally only for some segregation codes.
    #[serde(default)]
    pub api_keys: Vec<BrokerKeySettings>,
}

/// `[[broker.api_keys]]` / `[[brokers.api_keys]]`: one broker-level API key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerKeySettings {
    /// The key's digest, as `mpay hash-secret --kind api-key` prints it (`hmac-sha256:…`), or
    /// the legacy SHA-256 in hex. Never printed.
    pub hash: SecretHash,
    /// Segregation codes (aux digit 3, 0..=99) the key may act on; empty = every notice of the
    /// broker's organizations. A notice outside them is refused (403), as GPD does.
    #[serde(default)]
    pub segregation_codes: Vec<u8>,
}

/// `[organizations.gpd_compat]`: where GPD is looser than mpay, the GPD behaviour for one
/// organization (an Ente migrating a client written for pagoPA GPD). Every flag defaults to
/// false: mpay's stricter checks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpdCompat {
    /// Transfer IBANs are checked only as GPD does (`^[A-Za-z0-9]{1,35}$`): no mod 97, no
    /// Italian layout, not required to be registered for the organization.
    pub iban_format_only: bool,
    /// Any IUV is accepted (any segregation code, as GPD without `segregationCodes`), not only
    /// the organization's configured codes; its notice number is aux digit + IUV.
    pub any_iuv_prefix: bool,
    /// DELETE removes any position not yet paid (DRAFT, PUBLISHED, VALID, EXPIRED, INVALID) as
    /// GPD does, instead of DRAFT only.
    pub delete_unpaid: bool,
    /// GPD's looser identifiers (`mpay_messages::ids::gpd`): the organization's `fiscal_code`
    /// may be 1 to 30 digits (GPD's `\d{1,30}`, e.g. its test organization `700123456789001`)
    /// and its REST positions may carry notice numbers and IUVs of 1 to 30 digits (GPD's test
    /// suite sends 25). A position holding one is REST-only: the station answers the Node that
    /// the notice is unknown. An organization whose code is not 11 digits is REST-only as a
    /// whole: no feeds, Archivio Carichi or portal (the Node cannot name it). Everything else
    /// keeps pagoPA's 11-digit codes and 18-digit notice numbers.
    pub free_identifiers: bool,
    /// The payment-options API answers for DRAFT positions too, their options shown as they
    /// will be once published (GPD does); default: 404, as the station does not know a DRAFT.
    pub draft_payment_options: bool,
}

impl GpdCompat {
    /// Parses an organization fiscal code of this organization's configuration or REST API:
    /// GPD's looser form with `free_identifiers`, pagoPA's 11 digits otherwise.
    ///
    /// # Errors
    /// The identifier's error.
    pub fn org_code(&self, s: &str) -> Result<OrgFiscalCode, mpay_messages::IdError> {
        if self.free_identifiers {
            OrgFiscalCode::parse_gpd(s)
        } else {
            OrgFiscalCode::parse_unchecked(s)
        }
    }
}

/// `[station]`: the pagoPA station endpoint (paForNode).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationEndpointSettings {
    /// Largest SOAP request accepted, bytes.
    pub body_limit_bytes: usize,
    /// Answer `PAA_RECEIPT_DUPLICATA` (instead of OK) when the same receiptId arrives again
    /// (SPEC §14 open point; default OK: the receipt is stored once either way).
    #[serde(default)]
    pub duplicate_receipt_is_ko: bool,
    /// Days a position created by paDemandPaymentNotice stays payable.
    pub demand_due_days: u32,
    /// Station access (issue 9.12, see `access.rs` and docs/DEPLOYMENT.md): the networks
    /// (CIDR, IPv4 or IPv6, or single addresses) the station answers — pagoPA's egress ranges.
    #[serde(default, deserialize_with = "crate::access::allowed_networks")]
    pub allowed_networks: Vec<ipnet::IpNet>,
    /// The station's mutual-TLS listener, `host:port` (empty = none).
    #[serde(default)]
    pub tls_bind: String,
    /// PEM certificate chain of the mTLS listener.
    #[serde(default)]
    pub tls_cert: String,
    /// PEM private key of the mTLS listener.
    #[serde(default)]
    pub tls_key: String,
    /// PEM CA certificate(s) a client certificate must chain to.
    #[serde(default)]
    pub client_ca: String,
    /// When not empty, a client certificate must also carry one of these names as its subject
    /// common name or as a DNS subject alternative name.
    #[serde(default)]
    pub client_subjects: Vec<String>,
}

/// `[scheduler]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Seconds between expiry/validity passes.
    pub tick_secs: u64,
}

/// `[journal]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSettings {
    /// Days an entry is kept.
    pub retention_days: u32,
    /// Most entries written in one batch.
    pub batch_max: usize,
    /// Longest wait before a batch is written, ms.
    pub batch_interval_ms: u64,
    /// Keep SOAP request payloads in the journal: in full (up to 256 KiB) for requests
    /// attributed to a served organization, truncated to `unattributed_payload_bytes` for any
    /// other (malformed, unknown organization, unauthenticated), counted in
    /// `mpay_journal_payloads_truncated_total`.
    #[serde(default = "yes")]
    pub keep_payloads: bool,
    /// Bytes kept of the payload of a request not attributed to a served organization.
    #[serde(default = "unattributed_payload_bytes")]
    pub unattributed_payload_bytes: usize,
    /// Upper bound of the journal's stored size (keys + values), bytes: past it the scheduler's
    /// pass removes the oldest entries first. Default 1 GiB; 0 = age only.
    #[serde(default = "journal_max_bytes")]
    pub max_bytes: u64,
}

fn journal_max_bytes() -> u64 {
    1 << 30
}

fn unattributed_payload_bytes() -> usize {
    1024
}

fn yes() -> bool {
    true
}

/// `[watchdog]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogSettings {
    /// Check interval, ms.
    pub interval_ms: u64,
}

/// `[[stations]]`: a station of a broker (idStation) and the organizations on it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationSettings {
    /// idStation, e.g. `01987654322_01` (stText35).
    pub id: String,
    /// Fiscal code of the broker owning the station; default `[broker] fiscal_code`.
    #[serde(default)]
    pub broker: Option<String>,
    /// Fiscal codes of the organizations served by this station.
    #[serde(default)]
    pub organizations: Vec<String>,
}

/// `[[organizations.notice_codes]]`: a further segregation code (aux 3) or application code
/// (aux 0) of an organization (one per back-office system issuing notices), with the station
/// pagoPA routes its notices to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeCodeSettings {
    /// Segregation code (aux digit 3), 0..=99.
    #[serde(default)]
    pub segregation_code: Option<u8>,
    /// Application code (aux digit 0), 0..=99.
    #[serde(default)]
    pub application_code: Option<u8>,
    /// idStation serving the notices of this code; default: the organization's stations.
    #[serde(default)]
    pub station: Option<String>,
}

impl NoticeCodeSettings {
    /// The layout of this code.
    pub fn layout(&self) -> Result<NoticeLayout, String> {
        match (self.segregation_code, self.application_code) {
            (Some(segregation_code), None) => Ok(NoticeLayout::Aux3 { segregation_code }),
            (None, Some(application_code)) => Ok(NoticeLayout::Aux0 { application_code }),
            _ => Err("give exactly one of segregation_code and application_code".into()),
        }
    }
}

/// MPay legacy codes of an organization (INTERFACES.md §1).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MpayCodes {
    /// CodiceUtente (5 chars, e.g. `000RM`).
    #[serde(default)]
    pub codice_utente: String,
    /// CodiceEnte (5 digits).
    #[serde(default)]
    pub codice_ente: String,
    /// TipoUfficio (0..1 char).
    #[serde(default)]
    pub tipo_ufficio: String,
    /// CodiceUfficio.
    #[serde(default)]
    pub codice_ufficio: String,
    /// Accept Archivio Carichi SOAP calls for this organization without an API key (MPay
    /// deployments that protect the endpoint by network only). Default false: the caller sends
    /// the organization's API key (`Ocp-Apim-Subscription-Key` or HTTP Basic password).
    #[serde(default)]
    pub archivio_carichi_open: bool,
}

/// `[[organizations]]`: an Ente Creditore.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationSettings {
    /// Fiscal code (11 digits; 1 to 30 with `gpd_compat.free_identifiers`).
    pub fiscal_code: String,
    /// Name.
    pub name: String,
    /// Notice aux digit: 0, 1, 2 or 3 (SPEC §7.1; only 3 for new notices).
    pub aux_digit: u8,
    /// Segregation code (aux 3), 0..=99.
    #[serde(default)]
    pub segregation_code: Option<u8>,
    /// Application code (aux 0), 0..=99.
    #[serde(default)]
    pub application_code: Option<u8>,
    /// Bank IBANs registered for the organization.
    #[serde(default)]
    pub ibans: Vec<String>,
    /// Postal IBANs.
    #[serde(default)]
    pub postal_ibans: Vec<String>,
    /// Digests of the API keys accepted for this organization (`Ocp-Apim-Subscription-Key`):
    /// `hmac-sha256:…` as `mpay hash-secret --kind api-key` prints it, or the legacy SHA-256 in
    /// hex. Never printed.
    #[serde(default)]
    pub api_key_hashes: Vec<SecretHash>,
    /// MPay legacy codes.
    #[serde(default)]
    pub mpay: MpayCodes,
    /// IPA code (`codIpaEnte`, e.g. `c_x000`): feed file names must start with it
    /// (FORMAT.md §5.2, `FILE_ENTE_MISMATCH`); empty = not checked.
    #[serde(default)]
    pub ipa_code: Option<String>,
    /// 1.4 multi-beneficiary amount mode for feeds: `MYPAY` (default) or `PU` (FORMAT.md §5.4).
    #[serde(default)]
    pub mb14_amount_mode: Option<String>,
    /// Due date of feed installments without one (`YYYY-MM-DD`, a real calendar day between
    /// 2000 and 2099; default 2099-12-31). Parsed once here: `2025-02-30` stops start-up.
    #[serde(default)]
    pub feed_default_due_date: Option<chrono::NaiveDate>,
    /// Further segregation/application codes of the organization, each optionally mapped to a
    /// station. Notices of every code are recognised; new notices use the default code
    /// (`segregation_code`/`application_code` above) unless the service names another.
    #[serde(default)]
    pub notice_codes: Vec<NoticeCodeSettings>,
    /// Stations the organization was moved away from (station migration): receipts and
    /// verifies still arriving there are accepted with a warning in the journal.
    #[serde(default)]
    pub previous_stations: Vec<String>,
    /// GPD-compatibility settings (all off by default: mpay's stricter checks).
    #[serde(default)]
    pub gpd_compat: GpdCompat,
    /// Province (2-letter abbreviation, e.g. `AN`) under which the portal lists it.
    #[serde(default)]
    pub province: Option<String>,
    /// Where the Ente learns of its payments (`[organizations.notification]`, see
    /// `notification.rs`); none = no notifications (receipts stay retrievable by REST).
    #[serde(default)]
    pub notification: Option<crate::notification::NotificationSettings>,
    /// CBILL code printed on the organization's notices (home banking), when it has one.
    #[serde(default)]
    pub cbill: Option<String>,
    /// Languages of the organization's notices: `it` (default) or `it-de`.
    #[serde(default)]
    pub notice_language: crate::documents::NoticeLanguage,
    /// The reconciliation exports the daily batch delivers (`[organizations.exports]`); none =
    /// download only.
    #[serde(default)]
    pub exports: Option<crate::reporting::OrgExportSettings>,
}

impl OrganizationSettings {
    /// The notice layout of this organization. Errors name the missing code.
    pub fn layout(&self) -> Result<NoticeLayout, String> {
        match self.aux_digit {
            0 => self
                .application_code
                .map(|application_code| NoticeLayout::Aux0 { application_code })
                .ok_or_else(|| "aux_digit 0 needs application_code".to_string()),
            1 => Ok(NoticeLayout::Aux1),
            2 => Ok(NoticeLayout::Aux2),
            3 => self
                .segregation_code
                .map(|segregation_code| NoticeLayout::Aux3 { segregation_code })
                .ok_or_else(|| "aux_digit 3 needs segregation_code".to_string()),
            other => Err(format!("aux_digit must be 0, 1, 2 or 3, not {other}")),
        }
    }
}

/// How a service's amount is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AmountRule {
    /// Fixed amount in cents.
    Fixed {
        /// Cents.
        cents: i64,
    },
    /// Free amount between bounds, cents inclusive.
    Range {
        /// Lowest, cents.
        min_cents: i64,
        /// Highest, cents.
        max_cents: i64,
    },
    /// Free amount.
    Free,
}

/// `[[services]]`: a service of the catalogue (MPay TipologiaServizio).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// Organization fiscal code.
    pub organization: String,
    /// TipologiaServizio code (e.g. `AOC`).
    pub code: String,
    /// Label (e.g. `LOCULI CIMITERIALI`).
    pub label: String,
    /// pagoPA taxonomy code (tassonomia), e.g. `9/0201133IM/`.
    pub category: String,
    /// IBAN credited.
    pub iban: String,
    /// Can a citizen pay it without a notice (spontaneous payment)?
    #[serde(default)]
    pub spontaneous: bool,
    /// Amount rule.
    pub amount: AmountRule,
    /// pagoPA Catalogo Servizi id (`idServizio`, 5 characters) when PSPs may create a position
    /// for this service with paDemandPaymentNotice.
    #[serde(default)]
    pub demand_service_id: Option<String>,
    /// Usable as `tipoDovuto` in bulk feeds (default true; false = `ROW_TIPO_DOVUTO_DISABLED`).
    #[serde(default = "yes")]
    pub feeds_enabled: bool,
    /// Feed rows of this type need `dataEsecuzionePagamento` (`ROW_BAD_DUE_DATE`).
    #[serde(default)]
    pub due_date_required: bool,
    /// Feed rows of this type may have an anonymous debtor (`ANONIMO`).
    #[serde(default)]
    pub anonymous_allowed: bool,
    /// Segregation code (aux 3) of the notices generated for this service; default the
    /// organization's. Must be one of the organization's codes.
    #[serde(default)]
    pub segregation_code: Option<u8>,
    /// Application code (aux 0) of the notices generated for this service.
    #[serde(default)]
    pub application_code: Option<u8>,
    /// Extra fields of the portal's spontaneous-payment form (beyond amount, date, debtor
    /// fiscal code and causale, which every form has).
    #[serde(default)]
    pub fields: Vec<crate::portal::ServiceField>,
}

/// Where the settings come from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Layer the embedded demo organization.
    pub demo: bool,
    /// Optional file (TOML).
    pub file: Option<PathBuf>,
    /// Read `MPAY__*` from the environment.
    pub env: bool,
}

impl Settings {
    /// Loads and validates the settings from `sources`.
    ///
    /// Errors: [`ConfigError::Load`] for an unreadable file or a wrong type (the `config` crate
    /// names the key), [`ConfigError::Invalid`] for a wrong value.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let mut b = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if sources.demo {
            b = b.add_source(config::File::from_str(DEMO_TOML, config::FileFormat::Toml));
        }
        if let Some(path) = &sources.file {
            if !path.exists() {
                return Err(invalid(
                    "--config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            b = b.add_source(config::File::from(path.as_path()).format(config::FileFormat::Toml));
        }
        if sources.env {
            b = b.add_source(
                config::Environment::with_prefix("MPAY")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            );
        }
        let settings: Settings = b.build()?.try_deserialize()?;
        settings.validate()?;
        Catalogue::build(&settings)?;
        Ok(settings)
    }

    /// Checks the values: fiscal codes (shape; check digit only warned about elsewhere — they are
    /// matched, not judged), layouts, IBANs, hashes, references between sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node.id.trim().is_empty() {
            return Err(invalid("node.id", "must not be empty"));
        }
        if self.http.bind.parse::<std::net::SocketAddr>().is_err() && !self.http.bind.contains(':')
        {
            return Err(invalid("http.bind", "must be host:port"));
        }
        if self.http.body_limit_bytes < 1024 {
            return Err(invalid("http.body_limit_bytes", "must be at least 1024"));
        }
        if self.api.bulk_limit == 0 {
            return Err(invalid("api.bulk_limit", "must be at least 1"));
        }
        if self.api.max_page_limit == 0 {
            return Err(invalid("api.max_page_limit", "must be at least 1"));
        }
        self.notifications.check().map_err(|(k, r)| invalid(k, r))?;
        self.mail.check().map_err(|(k, r)| invalid(k, r))?;
        self.biz_events.check().map_err(|(k, r)| invalid(k, r))?;
        if !(1..=1000).contains(&self.fdr.page_size) {
            return Err(invalid(
                "fdr.page_size",
                "must be 1..=1000 (the API's maximum)",
            ));
        }
        let fdr_url = self.fdr.base_url.trim();
        let http = fdr_url.starts_with("https://") || fdr_url.starts_with("http://");
        if !fdr_url.is_empty() && !http {
            return Err(invalid("fdr.base_url", "must be an http(s) URL"));
        }
        if self.scheduler.tick_secs == 0 {
            return Err(invalid("scheduler.tick_secs", "must be at least 1"));
        }
        let st = &self.station;
        if !st.tls_bind.trim().is_empty() {
            if st.tls_bind.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid("station.tls_bind", "must be ip:port"));
            }
            for (k, v) in [
                ("station.tls_cert", &st.tls_cert),
                ("station.tls_key", &st.tls_key),
                ("station.client_ca", &st.client_ca),
            ] {
                if v.trim().is_empty() {
                    return Err(invalid(k, "required when station.tls_bind is set"));
                }
            }
        }
        if self.journal.batch_max == 0 {
            return Err(invalid("journal.batch_max", "must be at least 1"));
        }
        if self.watchdog.interval_ms == 0 {
            return Err(invalid("watchdog.interval_ms", "must be at least 1"));
        }
        if !self.broker.fiscal_code.is_empty() {
            OrgFiscalCode::parse_unchecked(&self.broker.fiscal_code)
                .map_err(|e| invalid("broker.fiscal_code", e.to_string()))?;
        }
        for (i, b) in self.brokers.iter().enumerate() {
            OrgFiscalCode::parse_unchecked(&b.fiscal_code)
                .map_err(|e| invalid(format!("brokers[{i}].fiscal_code"), e.to_string()))?;
        }
        let broker_keys = std::iter::once(("broker".to_string(), &self.broker)).chain(
            self.brokers
                .iter()
                .enumerate()
                .map(|(i, b)| (format!("brokers[{i}]"), b)),
        );
        for (name, b) in broker_keys {
            for (j, k) in b.api_keys.iter().enumerate() {
                let key = format!("{name}.api_keys[{j}]");
                if b.fiscal_code.is_empty() {
                    return Err(invalid(key, "a broker key needs the broker's fiscal_code"));
                }
                self.check_api_key_hash(&format!("{key}.hash"), &k.hash)?;
                if k.segregation_codes.iter().any(|c| *c > 99) {
                    return Err(invalid(
                        format!("{key}.segregation_codes"),
                        "must be 0..=99",
                    ));
                }
            }
        }
        let mut seen = HashSet::new();
        for (i, org) in self.organizations.iter().enumerate() {
            let key = |k: &str| format!("organizations[{i}].{k}");
            org.gpd_compat
                .org_code(&org.fiscal_code)
                .map_err(|e| invalid(key("fiscal_code"), e.to_string()))?;
            if !seen.insert(org.fiscal_code.clone()) {
                return Err(invalid(key("fiscal_code"), "appears twice"));
            }
            if org.name.trim().is_empty() {
                return Err(invalid(key("name"), "must not be empty"));
            }
            org.layout().map_err(|e| invalid(key("aux_digit"), e))?;
            for code in [org.segregation_code, org.application_code]
                .into_iter()
                .flatten()
            {
                if code > 99 {
                    return Err(invalid(key("segregation_code"), "must be 0..=99"));
                }
            }
            for (j, iban) in org.ibans.iter().enumerate() {
                Iban::parse(iban)
                    .map_err(|e| invalid(key(&format!("ibans[{j}]")), e.to_string()))?;
            }
            for (j, iban) in org.postal_ibans.iter().enumerate() {
                Iban::parse(iban)
                    .map_err(|e| invalid(key(&format!("postal_ibans[{j}]")), e.to_string()))?;
            }
            if let Some(n) = &org.notification {
                n.check()
                    .map_err(|(k, r)| invalid(key(&format!("notification.{k}")), r))?;
            }
            for (j, h) in org.api_key_hashes.iter().enumerate() {
                self.check_api_key_hash(&key(&format!("api_key_hashes[{j}]")), h)?;
            }
        }
        for (i, st) in self.stations.iter().enumerate() {
            if st.id.is_empty() || st.id.len() > 35 {
                return Err(invalid(
                    format!("stations[{i}].id"),
                    "must be 1..35 characters",
                ));
            }
            for (j, cf) in st.organizations.iter().enumerate() {
                if !seen.contains(cf) {
                    return Err(invalid(
                        format!("stations[{i}].organizations[{j}]"),
                        format!("organization {cf} is not configured"),
                    ));
                }
            }
        }
        let mut codes = HashSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let key = |k: &str| format!("services[{i}].{k}");
            if !seen.contains(&s.organization) {
                return Err(invalid(
                    key("organization"),
                    format!("organization {} is not configured", s.organization),
                ));
            }
            if s.code.is_empty() || s.code.len() > 35 {
                return Err(invalid(key("code"), "must be 1..35 characters"));
            }
            if !codes.insert((s.organization.clone(), s.code.clone())) {
                return Err(invalid(key("code"), "appears twice for this organization"));
            }
            Iban::parse(&s.iban).map_err(|e| invalid(key("iban"), e.to_string()))?;
            if let Some(id) = &s.demand_service_id {
                if id.chars().count() != 5 {
                    return Err(invalid(
                        key("demand_service_id"),
                        "must be exactly 5 characters",
                    ));
                }
            }
            match s.amount {
                AmountRule::Fixed { cents } if cents <= 0 => {
                    return Err(invalid(key("amount.cents"), "must be positive"))
                }
                AmountRule::Range {
                    min_cents,
                    max_cents,
                } if min_cents <= 0 || max_cents < min_cents => {
                    return Err(invalid(key("amount"), "needs 0 < min_cents <= max_cents"))
                }
                _ => {}
            }
        }
        self.validate_feeds(&seen)
    }

    fn validate_feeds(&self, orgs: &HashSet<String>) -> Result<(), ConfigError> {
        for (i, org) in self.organizations.iter().enumerate() {
            let key = |k: &str| format!("organizations[{i}].{k}");
            if let Some(ipa) = &org.ipa_code {
                if ipa.is_empty()
                    || ipa.len() > 35
                    || ipa.contains('-')
                    || !ipa.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(invalid(
                        key("ipa_code"),
                        "must be 1..35 letters, digits or `_` (no `-`: it separates the parts of a feed file name)",
                    ));
                }
            }
            if let Some(m) = &org.mb14_amount_mode {
                if !matches!(m.to_ascii_uppercase().as_str(), "MYPAY" | "PU") {
                    return Err(invalid(key("mb14_amount_mode"), "must be MYPAY or PU"));
                }
            }
            if let Some(d) = org.feed_default_due_date {
                use chrono::Datelike;
                if !(2000..=2099).contains(&d.year()) {
                    return Err(invalid(
                        key("feed_default_due_date"),
                        format!(
                            "{d} is out of range: a due date between 2000-01-01 and 2099-12-31"
                        ),
                    ));
                }
            }
            if let Some(x) = &org.exports {
                if let Err((k, why)) = x.check() {
                    return Err(invalid(key(&k), why));
                }
            }
        }
        if self.fdr.daily_export_hour > 23 {
            return Err(invalid(
                "fdr.daily_export_hour",
                "must be 0..=23 (Europe/Rome)",
            ));
        }
        if self.feeds.max_upload_bytes < 1024 {
            return Err(invalid("feeds.max_upload_bytes", "must be at least 1024"));
        }
        if self.feeds.drop_poll_ms == 0 {
            return Err(invalid("feeds.drop_poll_ms", "must be at least 1"));
        }
        if self.ftp.enabled {
            if self.ftp.bind.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid("ftp.bind", "must be ip:port"));
            }
            if self.ftp.passive_port_min == 0
                || self.ftp.passive_port_max < self.ftp.passive_port_min
            {
                return Err(invalid(
                    "ftp.passive_port_min",
                    "needs 0 < passive_port_min <= passive_port_max",
                ));
            }
            if self.ftp.tls_cert.is_some() != self.ftp.tls_key.is_some() {
                return Err(invalid("ftp.tls_key", "tls_cert and tls_key go together"));
            }
        }
        let mut users = HashSet::new();
        for (i, a) in self.ftp.accounts.iter().enumerate() {
            let key = |k: &str| format!("ftp.accounts[{i}].{k}");
            if !orgs.contains(&a.organization) {
                return Err(invalid(
                    key("organization"),
                    format!("organization {} is not configured", a.organization),
                ));
            }
            if a.user.trim().is_empty() || !users.insert(a.user.clone()) {
                return Err(invalid(key("user"), "must be non-empty and unique"));
            }
            match a.password_hash.form() {
                Ok(HashForm::Argon2 | HashForm::LegacySha256) => {}
                Ok(HashForm::Hmac) => {
                    return Err(invalid(
                        key("password_hash"),
                        "an FTP password is stored as argon2id; make one with `mpay hash-secret --kind ftp-password`",
                    ))
                }
                Err(e) => return Err(invalid(key("password_hash"), e)),
            }
        }
        if self.ftp.max_connections == 0 || self.ftp.max_connections_per_ip == 0 {
            return Err(invalid(
                "ftp.max_connections",
                "max_connections and max_connections_per_ip must be at least 1",
            ));
        }
        if let Some(s) = self.auth.server_secret() {
            if s.len() < 32 {
                return Err(invalid(
                    "auth.hash_secret",
                    "must be at least 32 characters",
                ));
            }
        }
        if self.auth.failure_limit == 0 || self.auth.failure_window_secs == 0 {
            return Err(invalid(
                "auth.failure_limit",
                "failure_limit and failure_window_secs must be at least 1",
            ));
        }
        Ok(())
    }

    fn check_api_key_hash(&self, key: &str, h: &SecretHash) -> Result<(), ConfigError> {
        match h.form() {
            Ok(HashForm::LegacySha256) => Ok(()),
            Ok(HashForm::Hmac) if self.auth.hash_secret.is_some() => Ok(()),
            Ok(HashForm::Hmac) => Err(invalid(
                key,
                "an hmac-sha256: entry needs the server secret auth.hash_secret (MPAY__AUTH__HASH_SECRET)",
            )),
            Ok(HashForm::Argon2) => Err(invalid(
                key,
                "API keys are checked on every request: store them as hmac-sha256 (`mpay hash-secret --kind api-key`), not argon2",
            )),
            Err(e) => Err(invalid(key, e)),
        }
    }

    /// The configuration keys whose entries are still the legacy unsalted SHA-256 (to warn
    /// about at start-up; the values are never named).
    pub fn legacy_secret_keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        let brokers = std::iter::once(("broker".to_string(), &self.broker)).chain(
            self.brokers
                .iter()
                .enumerate()
                .map(|(i, b)| (format!("brokers[{i}]"), b)),
        );
        for (name, b) in brokers {
            for (j, k) in b.api_keys.iter().enumerate() {
                if k.hash.form() == Ok(HashForm::LegacySha256) {
                    out.push(format!("{name}.api_keys[{j}].hash"));
                }
            }
        }
        for (i, o) in self.organizations.iter().enumerate() {
            for (j, h) in o.api_key_hashes.iter().enumerate() {
                if h.form() == Ok(HashForm::LegacySha256) {
                    out.push(format!("organizations[{i}].api_key_hashes[{j}]"));
                }
            }
        }
        for (i, a) in self.ftp.accounts.iter().enumerate() {
            if a.password_hash.form() == Ok(HashForm::LegacySha256) {
                out.push(format!("ftp.accounts[{i}].password_hash"));
            }
        }
        out
    }

    /// The organization with this fiscal code.
    pub fn organization(&self, fiscal_code: &str) -> Option<&OrganizationSettings> {
        self.organizations
            .iter()
            .find(|o| o.fiscal_code == fiscal_code)
    }

    /// The folder holding the store of this data format version.
    pub fn store_dir(&self) -> PathBuf {
        store_dir(&self.node.data_dir)
    }

    /// Where a running node writes its address and the token of its operator endpoints
    /// (`/ops/…`, `ops.json`): whoever can read the data directory may ask for a backup.
    pub fn ops_file_path(&self) -> PathBuf {
        self.node.data_dir.join("ops.json")
    }

    /// Where a running node writes online backups.
    pub fn backups_dir(&self) -> PathBuf {
        self.node.data_dir.join("backups")
    }
}

/// The versioned store folder under a data directory (`<data_dir>/store-v1`).
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("store-v1")
}

/// SHA-256 hex of an API key: the legacy form of `api_key_hashes` (still accepted; new
/// entries come from `mpay hash-secret`).
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn defaults_load() {
        let s = Settings::load(&Sources::default()).unwrap();
        assert_eq!(s.http.bind, "127.0.0.1:8080");
        assert!(s.organizations.is_empty());
    }

    #[test]
    fn demo_loads_with_services() {
        let s = Settings::load(&Sources {
            demo: true,
            ..Default::default()
        })
        .unwrap();
        let org = s.organization("80001234568").unwrap();
        assert_eq!(
            org.layout().unwrap(),
            NoticeLayout::Aux3 {
                segregation_code: 12
            }
        );
        assert!(s.services.iter().any(|x| x.code == "AOC"));
        assert_eq!(s.stations[0].organizations, vec!["80001234568"]);
    }

    fn with_file(text: &str) -> Result<Settings, ConfigError> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        Settings::load(&Sources {
            demo: false,
            file: Some(f.path().to_path_buf()),
            env: false,
        })
    }

    #[test]
    fn station_networks_are_parsed_at_load_and_a_bad_one_names_its_key() {
        let ok = with_file(
            "[station]\nbody_limit_bytes = 65536\ndemand_due_days = 30\nallowed_networks = [\"203.0.113.0/24\", \"2001:db8::/32\"]\n[http]\nbind = \"127.0.0.1:0\"\nbody_limit_bytes = 65536\nworkers = 1\ntrusted_proxies = [\"10.1.2.3\"]\n",
        )
        .unwrap();
        assert_eq!(ok.station.allowed_networks.len(), 2);
        assert_eq!(ok.http.trusted_proxies[0].to_string(), "10.1.2.3/32");
        let bad = with_file(
            "[station]\nbody_limit_bytes = 65536\ndemand_due_days = 30\nallowed_networks = [\"203.0.113.0/24\", \"203.0.113.0/40\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("station.allowed_networks[1]"), "{bad}");
        let tls = with_file("[station]\nbody_limit_bytes = 65536\ndemand_due_days = 30\ntls_bind = \"127.0.0.1:0\"\n")
            .unwrap_err()
            .to_string();
        assert!(tls.contains("station.tls_cert"), "{tls}");
    }

    #[test]
    fn gpd_organization_codes_only_with_free_identifiers() {
        let org = "[[organizations]]\nfiscal_code = \"700123456789001\"\nname = \"x\"\naux_digit = 3\nsegregation_code = 1\n";
        let e = with_file(org).unwrap_err().to_string();
        assert!(
            e.contains("organizations[0].fiscal_code") && e.contains("11 digits"),
            "{e}"
        );
        let s = with_file(&format!(
            "{org}[organizations.gpd_compat]\nfree_identifiers = true\n"
        ))
        .unwrap();
        let o = s.organization("700123456789001").unwrap();
        assert!(o.gpd_compat.free_identifiers);
        assert!(!o.gpd_compat.org_code(&o.fiscal_code).unwrap().is_pagopa());
        assert!(!o.gpd_compat.draft_payment_options);
        // GPD's form is digits, at most 30
        let e = with_file(
            "[[organizations]]\nfiscal_code = \"70012345678900A\"\nname = \"x\"\naux_digit = 3\nsegregation_code = 1\n[organizations.gpd_compat]\nfree_identifiers = true\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("1 to 30 digits"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = with_file(
            "[[organizations]]\nfiscal_code = \"123\"\nname = \"x\"\naux_digit = 3\nsegregation_code = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("organizations[0].fiscal_code"), "{e}");

        let e = with_file(
            "[[organizations]]\nfiscal_code = \"80001234568\"\nname = \"x\"\naux_digit = 3\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("organizations[0].aux_digit") && e.contains("segregation_code"),
            "{e}"
        );

        let e = with_file("[http]\nbody_limit_bytes = \"lots\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("body_limit_bytes"), "{e}");

        // an impossible calendar day stops start-up (it used to be dropped silently)
        let org = "[[organizations]]\nfiscal_code = \"80001234568\"\nname = \"x\"\naux_digit = 3\nsegregation_code = 1\n";
        let e = with_file(&format!("{org}feed_default_due_date = \"2025-02-30\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("feed_default_due_date"), "{e}");
        let e = with_file(&format!("{org}feed_default_due_date = \"0000-01-01\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("feed_default_due_date"), "{e}");
        let ok = with_file(&format!("{org}feed_default_due_date = \"2027-02-28\"\n")).unwrap();
        assert_eq!(
            ok.organizations[0].feed_default_due_date,
            chrono::NaiveDate::from_ymd_opt(2027, 2, 28)
        );

        let e = with_file("[http]\nbindd = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bindd"), "{e}");

        let e = with_file(
            "[[organizations]]\nfiscal_code = \"80001234568\"\nname = \"x\"\naux_digit = 3\nsegregation_code = 1\nibans = [\"IT00X0000000000000000000000\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("organizations[0].ibans[0]"), "{e}");
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = with_file(
            "[broker]\nfiscal_code = \"01987654322\"\nnode_subscription_key = \"s3cr3t-value\"\n",
        )
        .unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("s3cr3t-value"));
    }

    #[test]
    fn feed_keys_are_validated_by_name() {
        let org = "[[organizations]]\nfiscal_code = \"80001234568\"\nname = \"x\"\naux_digit = 3\nsegregation_code = 1\n";
        let e = with_file(&format!("{org}ipa_code = \"c-x\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("organizations[0].ipa_code"), "{e}");
        let e = with_file(&format!("{org}mb14_amount_mode = \"X\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("organizations[0].mb14_amount_mode"), "{e}");
        let e = with_file(&format!(
            "[[ftp.accounts]]\norganization = \"80001234568\"\nuser = \"u\"\npassword_hash = \"x\"\n{org}"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("ftp.accounts[0].password_hash"), "{e}");
        let e = with_file("[feeds]\nmax_upload_bytes = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("feeds.max_upload_bytes"), "{e}");
        let s = with_file(&format!("{org}ipa_code = \"c_x000\"\n")).unwrap();
        assert_eq!(s.feeds.max_upload_bytes, 512 * 1024 * 1024);
        assert!(!s.ftp.enabled);
    }

    #[test]
    fn api_key_hash_is_sha256_hex() {
        assert_eq!(
            hash_api_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
