//! FTP transport for bulk feeds (libunftp + the file-system back end).
//!
//! Each `[[ftp.accounts]]` entry logs one organization in, jailed (capability-based file system,
//! `UserDetail::home`) in `<data_dir>/ftp/<fiscal code>/`, which holds `in/` and `out/`. A
//! completed upload into `in/` (a finished STOR, or a rename into `in/`) starts its load: the
//! file moves to the spool, and when the load ends `out/` gets `<basename>-ESITO.csv`,
//! `<basename>-IUV-EXCHANGE.csv`, the MyPay / PU compatibility copies (`<basename>_SCARTI.csv`
//! or `ERROR-<basename>.csv`, `<basename>_IUV.csv` or `<basename>_iuv.csv`) and
//! `<basename>-RESULT.zip` with all of them (FORMAT.md §5.5, §5.7); a refused file (duplicate
//! flow id, unknown name) gets `out/<file>.ERRORE.txt`. File names must be standard
//! (`<ipa>-<flowId>-<version>.csv|zip`, FORMAT.md §5.2); a zip may carry `manifest.json` (mode
//! FULL, §5.6).
//!
//! Integrity (FORMAT.md §5.2): a sidecar `<basename>.md5` / `<basename>.sha256` (or
//! `<file>.md5` / `<file>.sha256`) found next to the file **when its upload completes** is
//! read, removed and verified before the load; a mismatch is `FILE_CHECKSUM_MISMATCH`. So the
//! sidecar is uploaded first; one arriving after its file is not used (it stays in `in/` and
//! applies to the next upload of that name).
//!
//! Passwords are checked against their configured argon2id PHC string (or a legacy SHA-256,
//! `mpay_config::secrets`), off the executor; the accounts' `Debug` never shows them (libunftp
//! records its configuration in its tracing spans). Plain FTP unless `ftp.tls_cert` /
//! `ftp.tls_key` are set; then explicit FTPS (AUTH TLS) is offered and, unless
//! `ftp.ftps_required = false`, required: `USER` / `PASS` before `AUTH TLS` and data
//! connections without `PROT P` are refused (534), so an Ente's password and files never travel
//! in clear. libunftp builds its rustls configuration with an explicit provider (its `ring`
//! feature), so no process-wide default provider is needed here.

//!
//! Hostile traffic (issue 9.2, 9.11, 9.15): the accept loop is ours, not libunftp's. It admits at
//! most `ftp.max_connections` control connections and `ftp.max_connections_per_ip` per client
//! (a further one is answered `421` and closed at once, counted in
//! `mpay_ftp_connections_refused_total`), refuses a client throttled for failed logins (`421`),
//! closes a connection that has not logged in within `ftp.login_timeout_secs` or sits idle for
//! `ftp.idle_timeout_secs`, and backs off (10 ms doubling to 1 s) when `accept` fails — e.g. out
//! of file descriptors — logging such failures at most every 10 s. Each admitted connection is
//! served by [`libunftp::Server::service`] on a server built for it. The file system seen by an
//! account is [`FeedFs`]: `in/` and `out/` cannot be removed, no folder can be made, only feed
//! files and their checksum sidecars (and `.part` / `.tmp` names renamed into them) can be
//! stored in `in/`, within the account's `ftp.quota_bytes`; files older than
//! `ftp.retention_days` are removed hourly.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use libunftp::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetail, UserDetailError,
    UserDetailProvider,
};
use libunftp::notification::{DataEvent, DataListener, EventMeta};
use libunftp::options::FtpsRequired;
use libunftp::storage::{Error as StorageError, ErrorKind, Fileinfo, StorageBackend};
use mpay_actors::feed_loader::{flow_id_for, FeedJob, FeedLauncher};
use mpay_config::{SecretHash, Settings};
use mpay_messages::feeds::checksum::{sidecar_names, ExpectedChecksum, MAX_SIDECAR_BYTES};
use mpay_web::throttle::{Attempt, AuthThrottle};
use unftp_sbe_fs::Filesystem;

#[derive(Clone)]
struct Account {
    organization: String,
    password: SecretHash,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Account({})", self.organization)
    }
}

/// A logged-in organization.
#[derive(Debug, Clone)]
pub struct FtpUser {
    username: String,
    organization: String,
    home: PathBuf,
}

impl UserDetail for FtpUser {
    fn home(&self) -> Option<&Path> {
        Some(&self.home)
    }
}

impl fmt::Display for FtpUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.username, self.organization)
    }
}

struct Accounts {
    by_user: HashMap<String, Account>,
    root: PathBuf,
    throttle: Arc<AuthThrottle>,
}

impl fmt::Debug for Accounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // never the stored secrets: libunftp puts its configuration in its tracing spans
        write!(f, "Accounts({} users)", self.by_user.len())
    }
}

impl Accounts {
    /// Checks a login: throttled → refused without checking; else the password verified off
    /// the executor (argon2 takes tens of milliseconds); an unknown user costs as much as a
    /// known one.
    async fn check(&self, username: &str, creds: &Credentials) -> Result<(), LoginRefused> {
        let attempt = Attempt::ftp(creds.source_ip, username);
        if let Some(wait) = self.throttle.check(&attempt) {
            return Err(LoginRefused::Throttled(wait));
        }
        let password = creds.password.clone().unwrap_or_default();
        let stored = self.by_user.get(username).map(|a| a.password.clone());
        let ok = tokio::task::spawn_blocking(move || match stored {
            Some(h) => h.verify(&password, None),
            None => {
                let _ =
                    SecretHash::new(mpay_config::secrets::dummy_argon2()).verify(&password, None);
                false
            }
        })
        .await
        .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            self.throttle.failed(&attempt);
            Err(LoginRefused::Bad)
        }
    }
}

enum LoginRefused {
    Bad,
    Throttled(Duration),
}

/// The authenticator of one control connection: tells the connection's watcher when it
/// logged in (login timeout) or must be closed (throttled).
struct ConnAuth {
    accounts: Arc<Accounts>,
    logged_in: Arc<AtomicBool>,
    kick: Arc<tokio::sync::Notify>,
}

impl fmt::Debug for ConnAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnAuth")
    }
}

#[async_trait]
impl Authenticator for ConnAuth {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        match self.accounts.check(username, creds).await {
            Ok(()) => {
                self.logged_in.store(true, Ordering::Release);
                Ok(Principal {
                    username: username.to_string(),
                })
            }
            Err(LoginRefused::Bad) => Err(AuthenticationError::BadPassword),
            Err(LoginRefused::Throttled(wait)) => {
                // slow the guesser down, then close the connection (after the 530 is sent)
                tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
                self.kick.notify_one();
                Err(AuthenticationError::new("too many failed logins"))
            }
        }
    }
}

#[async_trait]
impl UserDetailProvider for Accounts {
    type User = FtpUser;

    async fn provide_user_detail(&self, principal: &Principal) -> Result<FtpUser, UserDetailError> {
        let a = self
            .by_user
            .get(&principal.username)
            .ok_or_else(|| UserDetailError::new("unknown user"))?;
        Ok(FtpUser {
            username: principal.username.clone(),
            organization: a.organization.clone(),
            home: self.root.join(&a.organization),
        })
    }
}

/// The path inside an account's folder, without `.`/`..` (the jail holds anyway; this is the
/// policy's view): `/in/x.csv` → `["in", "x.csv"]`.
fn segments(path: &Path) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// A name an account may store in `in/`: a feed file, a checksum sidecar, or a temporary name
/// (`.part`, `.tmp`, `.filepart`) renamed into one of those.
pub fn is_upload_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if name.contains('/') || name.contains('\\') || name.is_empty() {
        return false;
    }
    is_feed_name(name)
        || lower.ends_with(".md5")
        || lower.ends_with(".sha256")
        || lower.ends_with(".part")
        || lower.ends_with(".tmp")
        || lower.ends_with(".filepart")
}

/// Whether `path` (as libunftp passes it, joined to the session's folder) is a file an account
/// may write: `in/<allowed name>`.
fn writable(path: &Path) -> bool {
    matches!(segments(path).as_slice(), [dir, name] if dir == "in" && is_upload_name(name))
}

fn denied() -> StorageError {
    StorageError::from(ErrorKind::PermissionDenied)
}

/// Bytes of the files under `dir` (two levels: `in/`, `out/`).
fn usage(dir: &Path) -> u64 {
    fn walk(d: &Path, depth: u8) -> u64 {
        let Ok(rd) = std::fs::read_dir(d) else {
            return 0;
        };
        rd.filter_map(Result::ok)
            .map(|e| match e.metadata() {
                Ok(m) if m.is_file() => m.len(),
                Ok(m) if m.is_dir() && depth > 0 => walk(&e.path(), depth - 1),
                _ => 0,
            })
            .sum()
    }
    walk(dir, 1)
}

/// The file system of an account: the jailed local folder with the feed policy (see the
/// module's documentation).
#[derive(Debug)]
pub struct FeedFs {
    inner: Filesystem,
    quota_bytes: u64,
}

#[async_trait]
impl StorageBackend<FtpUser> for FeedFs {
    type Metadata = <Filesystem as StorageBackend<FtpUser>>::Metadata;

    fn enter(&mut self, user: &FtpUser) -> std::io::Result<()> {
        StorageBackend::<FtpUser>::enter(&mut self.inner, user)
    }

    fn supported_features(&self) -> u32 {
        StorageBackend::<FtpUser>::supported_features(&self.inner)
    }

    async fn metadata<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> libunftp::storage::Result<Self::Metadata> {
        self.inner.metadata(user, path).await
    }

    async fn list<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> libunftp::storage::Result<Vec<Fileinfo<PathBuf, Self::Metadata>>>
    where
        <Self as StorageBackend<FtpUser>>::Metadata: libunftp::storage::Metadata,
    {
        self.inner.list(user, path).await
    }

    async fn get<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
    ) -> libunftp::storage::Result<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>> {
        self.inner.get(user, path, start_pos).await
    }

    async fn put<
        P: AsRef<Path> + Send + fmt::Debug,
        R: tokio::io::AsyncRead + Send + Sync + Unpin + 'static,
    >(
        &self,
        user: &FtpUser,
        bytes: R,
        path: P,
        start_pos: u64,
    ) -> libunftp::storage::Result<u64> {
        if !writable(path.as_ref()) {
            return Err(StorageError::from(ErrorKind::FileNameNotAllowedError));
        }
        if self.quota_bytes == 0 {
            return self.inner.put(user, bytes, path, start_pos).await;
        }
        let home = user.home.clone();
        let used = tokio::task::spawn_blocking(move || usage(&home))
            .await
            .unwrap_or(u64::MAX);
        let left = self.quota_bytes.saturating_sub(used);
        if left == 0 {
            return Err(StorageError::from(
                ErrorKind::ExceededStorageAllocationError,
            ));
        }
        use tokio::io::AsyncReadExt as _;
        let limited = bytes.take(left.saturating_add(1));
        let path = path.as_ref().to_path_buf();
        let written = self
            .inner
            .put(user, limited, path.clone(), start_pos)
            .await?;
        if written > left {
            let _ = self.inner.del(user, path).await;
            tracing::warn!(user = %user, "FTP upload refused: quota exceeded");
            return Err(StorageError::from(
                ErrorKind::ExceededStorageAllocationError,
            ));
        }
        Ok(written)
    }

    async fn del<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> libunftp::storage::Result<()> {
        match segments(path.as_ref()).as_slice() {
            [dir, _] if dir == "in" || dir == "out" => self.inner.del(user, path).await,
            _ => Err(denied()),
        }
    }

    async fn mkd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _user: &FtpUser,
        _path: P,
    ) -> libunftp::storage::Result<()> {
        Err(denied())
    }

    async fn rename<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        from: P,
        to: P,
    ) -> libunftp::storage::Result<()> {
        let from_ok =
            matches!(segments(from.as_ref()).as_slice(), [dir, _] if dir == "in" || dir == "out");
        if !from_ok || !writable(to.as_ref()) {
            return Err(denied());
        }
        self.inner.rename(user, from, to).await
    }

    async fn rmd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _user: &FtpUser,
        _path: P,
    ) -> libunftp::storage::Result<()> {
        // `in/` and `out/` are the only folders and stay
        Err(denied())
    }

    async fn cwd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> libunftp::storage::Result<()> {
        self.inner.cwd(user, path).await
    }
}

/// Removes files older than `days` from every account's `in/` and `out/`. Blocking.
pub fn housekeeping(root: &Path, organizations: &[String], days: u64) -> usize {
    if days == 0 {
        return 0;
    }
    let Some(limit) =
        std::time::SystemTime::now().checked_sub(Duration::from_secs(days.saturating_mul(86_400)))
    else {
        return 0;
    };
    let mut removed = 0;
    for org in organizations {
        for sub in ["in", "out"] {
            let Ok(rd) = std::fs::read_dir(root.join(org).join(sub)) else {
                continue;
            };
            for e in rd.filter_map(Result::ok) {
                let old = e
                    .metadata()
                    .ok()
                    .filter(|m| m.is_file())
                    .and_then(|m| m.modified().ok())
                    .is_some_and(|t| t < limit);
                if old && std::fs::remove_file(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, days, "FTP housekeeping removed old files");
    }
    removed
}

/// Starts loads for completed uploads into `in/`.
struct Uploads {
    accounts: Arc<Accounts>,
    launcher: FeedLauncher,
}

impl fmt::Debug for Uploads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Uploads")
    }
}

/// A file name in `in/` that should be loaded (not a hidden / partial / checksum file).
pub fn is_feed_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\\')
        && (lower.ends_with(".csv") || lower.ends_with(".zip"))
}

/// The checksum sidecars of `file` present in its folder now (FORMAT.md §5.2), read and
/// removed: they are consumed by this upload. A sidecar without a usable digest still counts
/// (it fails the load rather than being ignored).
pub fn take_sidecars(file: &Path) -> Vec<ExpectedChecksum> {
    use std::io::Read as _;
    let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
        return Vec::new();
    };
    let name = name.to_string_lossy();
    let mut out = Vec::new();
    for (alg, sidecar) in sidecar_names(&name) {
        let path = dir.join(&sidecar);
        if !path.is_file() {
            continue;
        }
        let mut content = Vec::new();
        let read = std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_SIDECAR_BYTES).read_to_end(&mut content));
        if read.is_ok() {
            out.push(ExpectedChecksum::from_sidecar(alg, &sidecar, &content));
        }
        let _ = std::fs::remove_file(&path);
    }
    out
}

/// Hands a complete file of an organization to the launcher, with the checksums of its
/// sidecars; a refusal is written as `<out>/<name>.ERRORE.txt` and the file is removed.
/// Blocking.
pub fn submit_file(launcher: &FeedLauncher, organization: &str, file: &Path, out_dir: &Path) {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let checksums = take_sidecars(file);
    let job = FeedJob {
        organization: organization.to_string(),
        flow_id: flow_id_for(&name),
        file_name: name.clone(),
        mode: None,
        require_standard_name: true,
        dry_run: false,
        out_dir: Some(out_dir.to_path_buf()),
        checksums,
        report_name: None,
    };
    match launcher.submit(job, file) {
        Ok(id) => tracing::info!(feed = %id, file = %name, "feed file accepted"),
        Err(e) => {
            tracing::warn!(file = %name, error = %e, "feed file refused");
            let _ = std::fs::create_dir_all(out_dir);
            let _ = std::fs::write(
                out_dir.join(format!("{name}.ERRORE.txt")),
                format!("{e}\r\n"),
            );
            let _ = std::fs::remove_file(file);
        }
    }
}

#[async_trait]
impl DataListener for Uploads {
    async fn receive_data_event(&self, e: DataEvent, m: EventMeta) {
        let path = match e {
            DataEvent::Put { path, .. } => path,
            DataEvent::Renamed { to, .. } => to,
            _ => return,
        };
        let Some(account) = self.accounts.by_user.get(&m.username) else {
            return;
        };
        // libunftp reports the path as the client sent it: absolute (`/in/x.csv`) or relative
        // to the session's directory (`x.csv` after `CWD in`), which the listener does not
        // know; a bare name is taken as `in/` when that file exists there.
        let home = self.accounts.root.join(&account.organization);
        let name = if let Some(abs) = path.strip_prefix('/') {
            abs.strip_prefix("in/").map(str::to_string)
        } else if let Some(rel) = path.strip_prefix("in/") {
            Some(rel.to_string())
        } else if !path.contains('/') && home.join("in").join(&path).is_file() {
            Some(path.clone())
        } else {
            None
        };
        let Some(name) = name else {
            return;
        };
        if !is_feed_name(&name) {
            return;
        }
        let (file, out) = (home.join("in").join(&name), home.join("out"));
        let (launcher, org) = (self.launcher.clone(), account.organization.clone());
        let _ =
            tokio::task::spawn_blocking(move || submit_file(&launcher, &org, &file, &out)).await;
    }
}

/// The running FTP server; dropping it shuts the server down.
pub struct FtpServer {
    /// `<data_dir>/ftp`.
    pub root: PathBuf,
    /// Control address.
    pub bind: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FtpServer {
    /// Creates the organizations' folders and starts the server on its own thread.
    ///
    /// # Errors
    /// Folders cannot be created, the address cannot be bound, TLS files unusable.
    pub fn start(settings: &Settings, launcher: FeedLauncher) -> anyhow::Result<Self> {
        let root = settings.node.data_dir.join("ftp");
        let mut by_user = HashMap::new();
        for a in &settings.ftp.accounts {
            for sub in ["in", "out"] {
                let d = root.join(&a.organization).join(sub);
                std::fs::create_dir_all(&d)
                    .with_context(|| format!("cannot create {}", d.display()))?;
            }
            by_user.insert(
                a.user.clone(),
                Account {
                    organization: a.organization.clone(),
                    password: a.password_hash.clone(),
                },
            );
        }
        std::fs::create_dir_all(&root)?;
        let accounts = Arc::new(Accounts {
            by_user,
            root: root.clone(),
            throttle: Arc::new(AuthThrottle::from_settings(&settings.auth)),
        });
        let ctx = Arc::new(ConnFactory {
            accounts: accounts.clone(),
            uploads: Arc::new(Uploads { accounts, launcher }),
            settings: settings.ftp.clone(),
            root: root.clone(),
            open: ConnCounts::default(),
        });
        // the TLS files (and everything else) are checked once now: a connection builds the
        // same server
        ctx.build(ConnAuth {
            accounts: ctx.accounts.clone(),
            logged_in: Arc::new(AtomicBool::new(false)),
            kick: Arc::new(tokio::sync::Notify::new()),
        })?;
        let bind = settings.ftp.bind.clone();
        let std_listener = std::net::TcpListener::bind(&bind)
            .with_context(|| format!("ftp.bind: cannot bind {bind}"))?;
        std_listener.set_nonblocking(true)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ftp")
            .enable_all()
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let organizations: Vec<String> = settings
            .ftp
            .accounts
            .iter()
            .map(|a| a.organization.clone())
            .collect();
        let retention_days = settings.ftp.retention_days;
        let thread = std::thread::Builder::new()
            .name("ftp-server".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "FTP server stopped");
                            return;
                        }
                    };
                    let hk_root = ctx.root.clone();
                    tokio::spawn(async move {
                        let mut tick = tokio::time::interval(Duration::from_secs(3600));
                        loop {
                            tick.tick().await;
                            let (r, o) = (hk_root.clone(), organizations.clone());
                            let _ = tokio::task::spawn_blocking(move || {
                                housekeeping(&r, &o, retention_days)
                            })
                            .await;
                        }
                    });
                    accept_loop(listener, ctx, rx).await;
                });
            })?;
        wait_until_listening(&bind, &thread)?;
        tracing::info!(bind = %bind, root = %root.display(), "FTP server for feeds started");
        Ok(FtpServer {
            root,
            bind,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }
}

/// Open control connections, in total and per client IP.
#[derive(Debug, Default)]
struct ConnCounts {
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; frees its place when dropped.
struct ConnSlot {
    factory: Arc<ConnFactory>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let open = &self.factory.open;
        open.total.fetch_sub(1, Ordering::AcqRel);
        if let Ok(mut m) = open.per_ip.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

/// Why a connection was not admitted (metric label, 421 text).
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Total,
    PerIp,
    Throttled,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerIp => "per_ip",
            Refusal::Throttled => "throttled",
        }
    }

    fn reply(self) -> &'static [u8] {
        match self {
            Refusal::Total => b"421 Too many connections, try again later\r\n",
            Refusal::PerIp => b"421 Too many connections from your address\r\n",
            Refusal::Throttled => b"421 Too many failed logins, try again later\r\n",
        }
    }
}

/// Builds the libunftp server of each admitted connection.
struct ConnFactory {
    accounts: Arc<Accounts>,
    uploads: Arc<Uploads>,
    settings: mpay_config::FtpSettings,
    root: PathBuf,
    open: ConnCounts,
}

impl ConnFactory {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, Refusal> {
        let ip_only = Attempt {
            surface: "ftp",
            ip: Some(ip),
            subject: None,
        };
        if self.accounts.throttle.check(&ip_only).is_some() {
            return Err(Refusal::Throttled);
        }
        let mut per_ip = self.open.per_ip.lock().map_err(|_| Refusal::Total)?;
        if self.open.total.load(Ordering::Acquire) >= self.settings.max_connections {
            return Err(Refusal::Total);
        }
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.settings.max_connections_per_ip {
            return Err(Refusal::PerIp);
        }
        *n += 1;
        self.open.total.fetch_add(1, Ordering::AcqRel);
        Ok(ConnSlot {
            factory: self.clone(),
            ip,
        })
    }

    fn build(&self, auth: ConnAuth) -> anyhow::Result<libunftp::Server<FeedFs, FtpUser>> {
        let fs_root = self.root.clone();
        let quota_bytes = self.settings.quota_bytes;
        let mut builder = libunftp::ServerBuilder::with_user_detail_provider(
            Box::new(move || {
                let _ = std::fs::create_dir_all(&fs_root);
                // libunftp's factory cannot return an error; the root was created at start-up
                #[allow(clippy::expect_used)]
                let inner =
                    Filesystem::new(fs_root.clone()).expect("the FTP root folder must exist");
                FeedFs { inner, quota_bytes }
            }),
            self.accounts.clone(),
        )
        .authenticator(Arc::new(auth))
        .greeting("mpay feeds FTP")
        .idle_session_timeout(self.settings.idle_timeout_secs)
        .passive_ports(self.settings.passive_port_min..=self.settings.passive_port_max)
        .notify_data(SharedUploads(self.uploads.clone()));
        if let (Some(cert), Some(key)) = (&self.settings.tls_cert, &self.settings.tls_key) {
            builder = builder.ftps(cert.clone(), key.clone());
            if self.settings.ftps_required {
                builder = builder.ftps_required(FtpsRequired::All, FtpsRequired::All);
            }
        }
        builder.build().map_err(|e| anyhow::anyhow!("ftp: {e}"))
    }

    /// Serves one admitted connection until it ends, closing it when it has not logged in
    /// within the login timeout or was throttled.
    async fn serve(self: Arc<Self>, stream: tokio::net::TcpStream, slot: ConnSlot) {
        let _slot = slot;
        // a second handle on the socket, to shut it down under libunftp's feet
        let Ok(std_stream) = stream.into_std() else {
            return;
        };
        let Ok(closer) = std_stream.try_clone() else {
            return;
        };
        let Ok(stream) = tokio::net::TcpStream::from_std(std_stream) else {
            return;
        };
        let logged_in = Arc::new(AtomicBool::new(false));
        let kick = Arc::new(tokio::sync::Notify::new());
        let server = match self.build(ConnAuth {
            accounts: self.accounts.clone(),
            logged_in: logged_in.clone(),
            kick: kick.clone(),
        }) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "FTP connection not served");
                return;
            }
        };
        let service = server.service(stream);
        tokio::pin!(service);
        let login_deadline =
            tokio::time::sleep(Duration::from_secs(self.settings.login_timeout_secs));
        tokio::pin!(login_deadline);
        let mut closed = false;
        loop {
            tokio::select! {
                _ = &mut service => return,
                _ = &mut login_deadline, if !closed => {
                    if !logged_in.load(Ordering::Acquire) {
                        metrics::counter!("mpay_ftp_connections_closed_total", "reason" => "login_timeout").increment(1);
                        let _ = closer.shutdown(std::net::Shutdown::Both);
                        closed = true;
                    }
                }
                _ = kick.notified(), if !closed => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    metrics::counter!("mpay_ftp_connections_closed_total", "reason" => "throttled").increment(1);
                    let _ = closer.shutdown(std::net::Shutdown::Both);
                    closed = true;
                }
                // a shut-down connection whose loop does not end is given up after 10 s
                _ = tokio::time::sleep(Duration::from_secs(10)), if closed => return,
            }
        }
    }
}

/// The data listener shared by the connections' servers.
struct SharedUploads(Arc<Uploads>);

impl fmt::Debug for SharedUploads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Uploads")
    }
}

#[async_trait]
impl DataListener for SharedUploads {
    async fn receive_data_event(&self, e: DataEvent, m: EventMeta) {
        self.0.receive_data_event(e, m).await;
    }
}

/// Whether a rate-limited log line may be written now (one per 10 s).
fn log_due(last: &mut Option<Instant>) -> bool {
    let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
    if due {
        *last = Some(Instant::now());
    }
    due
}

/// Accepts control connections until `shutdown`: admission limits, `421` for the refused,
/// back-off on accept errors (out of descriptors), no log line per connection.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    factory: Arc<ConnFactory>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let mut backoff = Duration::from_millis(10);
    let mut errors_since_log = 0u64;
    let mut refused_since_log = 0u64;
    let mut last_log: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = &mut shutdown => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                let peer: SocketAddr = peer;
                match factory.admit(peer.ip()) {
                    Ok(slot) => {
                        tokio::spawn(factory.clone().serve(stream, slot));
                    }
                    Err(why) => {
                        metrics::counter!("mpay_ftp_connections_refused_total", "reason" => why.label())
                            .increment(1);
                        // the send buffer of a new socket is empty: this does not block
                        let _ = stream.try_write(why.reply());
                        drop(stream);
                        refused_since_log += 1;
                        if log_due(&mut last_log) {
                            tracing::warn!(
                                refused = refused_since_log,
                                last_reason = why.label(),
                                "FTP connections refused (limits of [ftp]); next report in 10 s at the earliest"
                            );
                            refused_since_log = 0;
                        }
                    }
                }
            }
            Err(e) => {
                metrics::counter!("mpay_ftp_accept_errors_total").increment(1);
                errors_since_log += 1;
                if log_due(&mut last_log) {
                    tracing::error!(error = %e, errors = errors_since_log, "FTP accept failing; backing off");
                    errors_since_log = 0;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut shutdown => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Waits (up to 10 s) until the FTP server accepts a TCP connection on `bind` (an unspecified
/// address is probed on loopback). Errors when its thread ended (bind failed) or time ran out.
fn wait_until_listening(bind: &str, thread: &std::thread::JoinHandle<()>) -> anyhow::Result<()> {
    let mut addr: std::net::SocketAddr = bind
        .parse()
        .with_context(|| format!("ftp.bind: {bind} is not an address:port"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if thread.is_finished() {
            anyhow::bail!(
                "ftp: the server stopped at start-up (see the log): cannot listen on {bind}"
            );
        }
        if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200))
            .is_ok()
        {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!("ftp: not listening on {bind} after 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // do not wait for the grace period in tests / shutdown paths
        let _ = self.thread.take();
    }
}
