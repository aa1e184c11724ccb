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
//! Passwords are checked against their configured SHA-256. Plain FTP unless `ftp.tls_cert` /
//! `ftp.tls_key` are set; then explicit FTPS (AUTH TLS) is offered and, unless
//! `ftp.ftps_required = false`, required: `USER` / `PASS` before `AUTH TLS` and data
//! connections without `PROT P` are refused (534), so an Ente's password and files never travel
//! in clear. libunftp builds its rustls configuration with an explicit provider (its `ring`
//! feature), so no process-wide default provider is needed here.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use libunftp::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetail, UserDetailError,
    UserDetailProvider,
};
use libunftp::notification::{DataEvent, DataListener, EventMeta};
use libunftp::options::FtpsRequired;
use mpay_actors::feed_loader::{flow_id_for, FeedJob, FeedLauncher};
use mpay_config::Settings;
use mpay_messages::feeds::checksum::{sidecar_names, ExpectedChecksum, MAX_SIDECAR_BYTES};
use unftp_sbe_fs::Filesystem;

#[derive(Debug, Clone)]
struct Account {
    organization: String,
    password_hash: String,
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

#[derive(Debug)]
struct Accounts {
    by_user: HashMap<String, Account>,
    root: PathBuf,
}

#[async_trait]
impl Authenticator for Accounts {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let a = self
            .by_user
            .get(username)
            .ok_or(AuthenticationError::BadUser)?;
        let pw = creds
            .password
            .as_deref()
            .ok_or(AuthenticationError::BadPassword)?;
        let given = mpay_config::hash_api_key(pw);
        // compare all bytes (no early exit)
        let same = given.len() == a.password_hash.len()
            && given
                .bytes()
                .zip(a.password_hash.to_ascii_lowercase().bytes())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0;
        if same {
            Ok(Principal {
                username: username.to_string(),
            })
        } else {
            Err(AuthenticationError::BadPassword)
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
                    password_hash: a.password_hash.to_ascii_lowercase(),
                },
            );
        }
        std::fs::create_dir_all(&root)?;
        // fail early and clearly on an address in use
        drop(
            std::net::TcpListener::bind(&settings.ftp.bind)
                .with_context(|| format!("ftp.bind: cannot bind {}", settings.ftp.bind))?,
        );
        let accounts = Arc::new(Accounts {
            by_user,
            root: root.clone(),
        });
        let fs_root = root.clone();
        let mut builder = libunftp::ServerBuilder::with_authenticator(
            Box::new(move || {
                let _ = std::fs::create_dir_all(&fs_root);
                // libunftp's factory cannot return an error; the root was created at start-up
                #[allow(clippy::expect_used)]
                let fs = Filesystem::new(fs_root.clone()).expect("the FTP root folder must exist");
                fs
            }),
            accounts.clone(),
        )
        .user_detail_provider(accounts.clone())
        .greeting("mpay feeds FTP")
        .passive_ports(settings.ftp.passive_port_min..=settings.ftp.passive_port_max)
        .notify_data(Uploads { accounts, launcher });
        if let (Some(cert), Some(key)) = (&settings.ftp.tls_cert, &settings.ftp.tls_key) {
            builder = builder.ftps(cert.clone(), key.clone());
            if settings.ftp.ftps_required {
                builder = builder.ftps_required(FtpsRequired::All, FtpsRequired::All);
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = builder
            .shutdown_indicator(async move {
                let _ = rx.await;
                libunftp::options::Shutdown::new().grace_period(std::time::Duration::from_secs(2))
            })
            .build()
            .map_err(|e| anyhow::anyhow!("ftp: {e}"))?;
        let bind = settings.ftp.bind.clone();
        let b2 = bind.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ftp")
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("ftp-server".into())
            .spawn(move || {
                if let Err(e) = rt.block_on(server.listen(b2)) {
                    tracing::error!(error = %e, "FTP server stopped");
                }
            })?;
        // ready only once it accepts connections: `listen` binds asynchronously on its own
        // thread, and a client (or a test) connecting earlier would be refused — or, when the
        // port was free at the check above, reach whatever bound it meanwhile
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
