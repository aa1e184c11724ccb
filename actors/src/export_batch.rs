//! `ExportBatch` (issue 14, "Surfaces"): once a day, from `[fdr] daily_export_hour`
//! (Europe/Rome), the previous business day's reconciliation exports of every organization with
//! `[organizations.exports]` — the kinds and formats it asks for — e-mailed as attachments
//! (`lettre`, the `[mail]` SMTP server) and / or uploaded by FTP (`suppaftp`; `ftps://` =
//! explicit TLS, `AUTH TLS`, webpki roots).
//!
//! Exactly once across restarts: what was delivered is recorded per organization and day in
//! `recon_exports` (`storage::reconciliation::ExportDelivery`) and flushed after each channel
//! succeeds; a pass skips the channels already done. A failed channel is tried again at the
//! next pass (every `check_every`) of the same day. A crash between the server's acceptance and
//! the flush sends that channel again (the same files: the export of a past day is stable).
//!
//! The files are rendered by the injected [`ExportRender`] (the binary passes `mpay-web`'s
//! exports: only that crate compiles the XLSX writer).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, NaiveDate, Timelike as _, Utc};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncTransport as _, Message};
use mpay_storage::reconciliation::ExportDelivery;
use mpay_storage::{DurabilityPoint, Store};
use secrecy::{ExposeSecret as _, SecretString};

use crate::health::{ActorState, HealthRegistry};
use crate::mailer::SmtpSettings;
use crate::watchdog::Watchdog;

/// Actor kind in `/health/actors`.
pub const KIND: &str = "ExportBatch";

/// Renders one export on a blocking thread: (store, organization, kind, format, day) → (file
/// name, bytes). Kinds `payments|flows|reconciliation`, formats `csv|xlsx`.
pub type ExportRender = Arc<
    dyn Fn(&Store, &str, &str, &str, NaiveDate) -> Result<(String, Vec<u8>), String> + Send + Sync,
>;

/// Where files are uploaded.
#[derive(Clone)]
pub struct FtpTarget {
    /// Host.
    pub host: String,
    /// Port (21 by default).
    pub port: u16,
    /// User.
    pub user: String,
    /// Password.
    pub password: SecretString,
    /// Folder to change to before the upload (empty: the login folder).
    pub folder: String,
    /// Explicit TLS (`AUTH TLS`) before the login.
    pub tls: bool,
}

impl std::fmt::Debug for FtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}@{}:{}/{} (password ***)",
            if self.tls { "ftps" } else { "ftp" },
            self.user,
            self.host,
            self.port,
            self.folder
        )
    }
}

impl FtpTarget {
    /// Reads `ftp://user@host:port/folder` or `ftps://…`; the password comes from elsewhere
    /// (never in the URL).
    pub fn parse(url: &str, password: Option<SecretString>) -> Result<FtpTarget, String> {
        let url = url.trim();
        let (tls, rest) = if let Some(r) = url.strip_prefix("ftps://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("ftp://") {
            (false, r)
        } else {
            return Err("must start with ftp:// or ftps://".into());
        };
        let (authority, folder) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, hostport) = authority
            .rsplit_once('@')
            .ok_or("needs a user: ftp://user@host/folder")?;
        if user.contains(':') {
            return Err("the password does not go in the URL (ftp_password_env)".into());
        }
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("port {p:?} is not a number"))?,
            ),
            None => (hostport, 21),
        };
        if host.is_empty() || user.is_empty() {
            return Err("needs a user and a host".into());
        }
        Ok(FtpTarget {
            host: host.to_string(),
            port,
            user: user.to_string(),
            password: password.unwrap_or_else(|| SecretString::from(String::new())),
            folder: folder.trim_end_matches('/').to_string(),
            tls,
        })
    }

    /// Uploads `files` (blocking).
    pub fn upload(&self, files: &[(String, Vec<u8>)]) -> Result<(), String> {
        use suppaftp::types::FileType;
        let addr = format!("{}:{}", self.host, self.port);
        let fail = |what: &str, e: suppaftp::FtpError| format!("FTP {what} {addr}: {e}");
        let mut ftp = suppaftp::RustlsFtpStream::connect(&addr).map_err(|e| fail("connect", e))?;
        if self.tls {
            let mut roots = suppaftp::rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let cfg = suppaftp::rustls::ClientConfig::builder_with_provider(Arc::new(
                suppaftp::rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            ftp = ftp
                .into_secure(suppaftp::RustlsConnector::from(Arc::new(cfg)), &self.host)
                .map_err(|e| fail("AUTH TLS", e))?;
        }
        ftp.login(self.user.as_str(), self.password.expose_secret())
            .map_err(|e| fail("login", e))?;
        if !self.folder.is_empty() {
            ftp.cwd(&self.folder).map_err(|e| fail("cwd", e))?;
        }
        ftp.transfer_type(FileType::Binary)
            .map_err(|e| fail("TYPE I", e))?;
        for (name, bytes) in files {
            ftp.put_file(name, &mut std::io::Cursor::new(bytes))
                .map_err(|e| fail(&format!("STOR {name}"), e))?;
        }
        let _ = ftp.quit();
        Ok(())
    }
}

/// One organization's exports.
#[derive(Debug, Clone)]
pub struct OrgExports {
    /// Organization.
    pub organization: String,
    /// E-mail recipients (none = no e-mail).
    pub email_to: Vec<String>,
    /// FTP upload.
    pub ftp: Option<FtpTarget>,
    /// `payments`, `flows`, `reconciliation`.
    pub kinds: Vec<String>,
    /// `csv`, `xlsx`.
    pub formats: Vec<String>,
}

/// What the batch needs.
#[derive(Debug, Clone)]
pub struct ExportBatchSettings {
    /// From this hour (Europe/Rome) the previous day is exported.
    pub hour: u32,
    /// How often the batch looks whether something is due.
    pub check_every: Duration,
    /// The SMTP server (`[mail]`); `None`: organizations asking for e-mail are reported as
    /// failed.
    pub smtp: Option<SmtpSettings>,
    /// Organizations with exports.
    pub organizations: Vec<OrgExports>,
}

/// The day exported at `now`, when the batch is due: the day before today (Europe/Rome) once
/// the local hour reaches `hour`.
pub fn due_day(now: DateTime<Utc>, hour: u32) -> Option<NaiveDate> {
    let local = mpay_messages::time::rome_datetime(now);
    if local.hour() < hour {
        return None;
    }
    local.date().pred_opt()
}

/// How many days back a batch catches up after a stop (the due day included).
pub const CATCH_UP_DAYS: u32 = 7;

/// The days a batch exports at `now`, oldest first, within [`CATCH_UP_DAYS`] of the due day
/// ([`due_day`]): the due day; when the node was stopped across earlier due hours, every day
/// after `last` (the last day with a record for the organization); and every day of
/// `incomplete` (a record whose e-mail or upload has not succeeded yet: tried again). An
/// organization never exported before starts from the due day (no history is back-filled when
/// exports are switched on).
pub fn days_due(
    now: DateTime<Utc>,
    hour: u32,
    last: Option<NaiveDate>,
    incomplete: &[NaiveDate],
) -> Vec<NaiveDate> {
    let Some(due) = due_day(now, hour) else {
        return Vec::new();
    };
    let earliest = catch_up_from(due);
    let from = match last.and_then(|l| l.succ_opt()) {
        Some(next) if next < due => next.max(earliest),
        _ => due,
    };
    let mut days: Vec<NaiveDate> = from.iter_days().take_while(|d| *d <= due).collect();
    days.extend(
        incomplete
            .iter()
            .copied()
            .filter(|d| *d >= earliest && *d <= due),
    );
    days.sort();
    days.dedup();
    days
}

/// The first day a batch due for `due` looks at.
fn catch_up_from(due: NaiveDate) -> NaiveDate {
    due.checked_sub_days(chrono::Days::new(u64::from(
        CATCH_UP_DAYS.saturating_sub(1),
    )))
    .unwrap_or(due)
}

struct Inner {
    store: Store,
    settings: ExportBatchSettings,
    render: ExportRender,
    health: HealthRegistry,
    running: tokio::sync::Mutex<()>,
}

/// The handle.
#[derive(Clone)]
pub struct ExportBatch {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ExportBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportBatch")
            .field("settings", &self.inner.settings)
            .finish()
    }
}

struct BatchActor {
    inner: Arc<Inner>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Pass;

impl Actor for BatchActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let h = &self.inner.health;
        h.register(KIND, "main", false);
        h.set_state(KIND, "main", ActorState::Running);
        h.heartbeat(KIND, "main", 0);
        ctx.notify(Pass);
        ctx.run_interval(self.inner.settings.check_every, |_, ctx| ctx.notify(Pass));
    }
}

impl Supervised for BatchActor {}

impl Handler<Pass> for BatchActor {
    type Result = ();

    fn handle(&mut self, _: Pass, ctx: &mut Self::Context) {
        let inner = self.inner.clone();
        inner.health.heartbeat(KIND, "main", 0);
        ctx.spawn(
            async move {
                let _ = inner.run_due(Utc::now()).await;
            }
            .into_actor(self),
        );
    }
}

impl ExportBatch {
    /// Starts the batch under the watchdog.
    pub fn start(
        watchdog: &mut Watchdog,
        settings: ExportBatchSettings,
        render: ExportRender,
        store: &Store,
        health: &HealthRegistry,
    ) -> ExportBatch {
        let inner = Arc::new(Inner {
            store: store.clone(),
            settings,
            render,
            health: health.clone(),
            running: tokio::sync::Mutex::new(()),
        });
        let i = inner.clone();
        let _ = watchdog.watch(KIND, "main", move || {
            let inner = i.clone();
            Supervisor::start(move |_| BatchActor { inner })
        });
        ExportBatch { inner }
    }

    /// The batch without its timer (the CLI, tests): [`ExportBatch::run_due`] and
    /// [`ExportBatch::deliver_day`] run when called.
    pub fn manual(
        settings: ExportBatchSettings,
        render: ExportRender,
        store: &Store,
        health: &HealthRegistry,
    ) -> ExportBatch {
        ExportBatch {
            inner: Arc::new(Inner {
                store: store.clone(),
                settings,
                render,
                health: health.clone(),
                running: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// One pass at `now`: every organization's previous day when due (see [`due_day`]).
    pub async fn run_due(&self, now: DateTime<Utc>) -> Vec<ExportDelivery> {
        self.inner.run_due(now).await
    }

    /// Delivers `org`'s exports of `day` on every channel not done yet.
    pub async fn deliver_day(&self, org: &OrgExports, day: NaiveDate) -> ExportDelivery {
        self.inner.deliver_day(org, day).await
    }
}

impl Inner {
    async fn run_due(&self, now: DateTime<Utc>) -> Vec<ExportDelivery> {
        if due_day(now, self.settings.hour).is_none() {
            return Vec::new();
        }
        // one pass at a time (the timer and a caller)
        let _one = self.running.lock().await;
        let mut out = Vec::new();
        for org in &self.settings.organizations {
            let o = org.organization.clone();
            let (mail, ftp) = (!org.email_to.is_empty(), org.ftp.is_some());
            let Some(due) = due_day(now, self.settings.hour) else {
                continue;
            };
            let known = self
                .store
                .blocking(move |s| {
                    let last = s.reconciliation.last_export_day(&o)?;
                    let mut incomplete = Vec::new();
                    for day in catch_up_from(due).iter_days().take_while(|d| *d <= due) {
                        if let Some(d) = s.reconciliation.export_delivery(&o, day)? {
                            let done = (!mail || d.emailed_at.is_some())
                                && (!ftp || d.uploaded_at.is_some());
                            if !done {
                                incomplete.push(day);
                            }
                        }
                    }
                    Ok::<_, mpay_storage::StorageError>((last, incomplete))
                })
                .await;
            let (last, incomplete) = match known {
                Ok(k) => k,
                Err(e) => {
                    self.failed(&org.organization, &e.to_string());
                    (None, Vec::new())
                }
            };
            for day in days_due(now, self.settings.hour, last, &incomplete) {
                out.push(self.deliver_day(org, day).await);
            }
        }
        out
    }

    async fn record(&self, d: &ExportDelivery) -> Result<(), String> {
        let rec = d.clone();
        self.store
            .blocking(move |s| s.reconciliation.record_export_delivery(&rec))
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .durability
            .commit(DurabilityPoint::Reconciliation)
            .await
            .map_err(|e| e.to_string())
    }

    async fn deliver_day(&self, org: &OrgExports, day: NaiveDate) -> ExportDelivery {
        let o = org.organization.clone();
        let known = self
            .store
            .blocking(move |s| s.reconciliation.export_delivery(&o, day))
            .await;
        let mut d = match known {
            Ok(Some(d)) => d,
            Ok(None) => ExportDelivery {
                organization: org.organization.clone(),
                day: Some(day),
                ..ExportDelivery::default()
            },
            Err(e) => {
                self.failed(&org.organization, &e.to_string());
                return ExportDelivery {
                    organization: org.organization.clone(),
                    day: Some(day),
                    last_error: Some(e.to_string()),
                    ..ExportDelivery::default()
                };
            }
        };
        let want_mail = !org.email_to.is_empty() && d.emailed_at.is_none();
        let want_ftp = org.ftp.is_some() && d.uploaded_at.is_none();
        if !want_mail && !want_ftp {
            return d;
        }
        // render every file of the day
        let (render, o) = (self.render.clone(), org.organization.clone());
        let (kinds, formats) = (org.kinds.clone(), org.formats.clone());
        let files = self
            .store
            .blocking(move |s| {
                let mut files = Vec::new();
                for k in &kinds {
                    for f in &formats {
                        files.push(render(s, o.as_str(), k.as_str(), f.as_str(), day).map_err(
                            |e| {
                                mpay_storage::StorageError::file(
                                    "rendering an export",
                                    std::io::Error::other(e),
                                )
                            },
                        )?);
                    }
                }
                Ok::<_, mpay_storage::StorageError>(files)
            })
            .await;
        let files = match files {
            Ok(f) => f,
            Err(e) => {
                d.last_error = Some(e.to_string());
                self.failed(&org.organization, &e.to_string());
                let _ = self.record(&d).await;
                return d;
            }
        };
        d.files = files.iter().map(|(n, b)| (n.clone(), b.len())).collect();
        d.last_error = None;
        let mut errors = Vec::new();
        if want_mail {
            match self.mail(org, day, &files).await {
                Ok(()) => {
                    d.emailed_at = Some(Utc::now());
                    if let Err(e) = self.record(&d).await {
                        errors.push(e);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if want_ftp {
            if let Some(target) = org.ftp.clone() {
                let up = files.clone();
                match tokio::task::spawn_blocking(move || target.upload(&up)).await {
                    Ok(Ok(())) => {
                        d.uploaded_at = Some(Utc::now());
                        if let Err(e) = self.record(&d).await {
                            errors.push(e);
                        }
                    }
                    Ok(Err(e)) => errors.push(e),
                    Err(e) => errors.push(e.to_string()),
                }
            }
        }
        if errors.is_empty() {
            metrics::counter!("mpay_recon_exports_delivered_total").increment(1);
            tracing::info!(
                organization = %org.organization,
                %day,
                files = d.files.len(),
                "reconciliation exports delivered"
            );
        } else {
            let why = errors.join("; ");
            self.failed(&org.organization, &why);
            d.last_error = Some(why);
            let _ = self.record(&d).await;
        }
        d
    }

    fn failed(&self, org: &str, why: &str) {
        metrics::counter!("mpay_recon_export_failures_total").increment(1);
        tracing::warn!(
            organization = org,
            error = why,
            "reconciliation exports not delivered; again at the next pass"
        );
        self.health.error(KIND, "main", why);
    }

    async fn mail(
        &self,
        org: &OrgExports,
        day: NaiveDate,
        files: &[(String, Vec<u8>)],
    ) -> Result<(), String> {
        let smtp = self
            .settings
            .smtp
            .as_ref()
            .ok_or("e-mail asked but no SMTP server ([mail] host)")?;
        let (transport, from) = smtp.transport()?;
        let domain = from.email.domain().to_string();
        let mut b = Message::builder()
            .from(from)
            .subject(format!(
                "Riconciliazione pagoPA {} del {}",
                org.organization,
                day.format("%d/%m/%Y")
            ))
            .message_id(Some(format!(
                "<export.{}.{}@{domain}>",
                org.organization,
                day.format("%Y%m%d")
            )));
        for to in &org.email_to {
            let mbox: Mailbox = to
                .trim()
                .parse()
                .map_err(|e| format!("address {to:?}: {e}"))?;
            b = b.to(mbox);
        }
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        let text = format!(
            "In allegato i file di riconciliazione dell'ente {} per il giorno {}:\n\n{}\n\nMessaggio generato automaticamente da mpay.\n",
            org.organization,
            day.format("%d/%m/%Y"),
            names.join("\n")
        );
        let mut parts = MultiPart::mixed().singlepart(SinglePart::plain(text));
        for (name, bytes) in files {
            let ct = if name.ends_with(".xlsx") {
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            } else {
                "text/csv; charset=utf-8"
            };
            parts = parts.singlepart(Attachment::new(name.clone()).body(
                bytes.clone(),
                ContentType::parse(ct).map_err(|e| e.to_string())?,
            ));
        }
        let message = b.multipart(parts).map_err(|e| format!("message: {e}"))?;
        transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("SMTP: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_day_is_due_from_the_hour_in_rome() {
        // 05:59 UTC on 2026-07-04 = 07:59 in Rome (summer time)
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default()
        };
        assert_eq!(due_day(at("2026-07-04T03:59:00Z"), 6), None);
        assert_eq!(
            due_day(at("2026-07-04T04:00:00Z"), 6),
            NaiveDate::from_ymd_opt(2026, 7, 3)
        );
        // 23:30 UTC on 31 December = 00:30 on 1 January in Rome
        assert_eq!(
            due_day(at("2026-12-31T23:30:00Z"), 0),
            NaiveDate::from_ymd_opt(2026, 12, 31)
        );
    }

    #[test]
    fn after_a_stop_the_missed_and_the_failed_days_are_exported_up_to_a_week_back() {
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default()
        };
        let d = |m: u32, day: u32| NaiveDate::from_ymd_opt(2026, m, day).unwrap_or_default();
        let now = at("2026-07-10T05:00:00Z"); // 07:00 in Rome: 9 July is due at 06
        assert_eq!(days_due(now, 6, None, &[]), vec![d(7, 9)]);
        assert_eq!(days_due(now, 6, Some(d(7, 9)), &[]), vec![d(7, 9)]);
        assert_eq!(days_due(now, 6, Some(d(7, 8)), &[]), vec![d(7, 9)]);
        assert_eq!(
            days_due(now, 6, Some(d(7, 6)), &[]),
            vec![d(7, 7), d(7, 8), d(7, 9)]
        );
        // a month down: the last week only
        let week: Vec<NaiveDate> = (3..=9).map(|x| d(7, x)).collect();
        assert_eq!(days_due(now, 6, Some(d(6, 1)), &[]), week);
        // days whose e-mail or upload failed are tried again, within the week
        assert_eq!(
            days_due(now, 6, Some(d(7, 9)), &[d(6, 20), d(7, 4), d(7, 5)]),
            vec![d(7, 4), d(7, 5), d(7, 9)]
        );
        // before the hour: nothing
        assert!(days_due(at("2026-07-10T03:00:00Z"), 6, Some(d(7, 6)), &[d(7, 4)]).is_empty());
    }

    #[test]
    fn ftp_urls_name_user_host_port_and_folder_never_the_password() {
        let t = FtpTarget::parse("ftps://ente@ftp.example.it:2121/in/riconciliazione/", None)
            .map_err(|e| e.to_string());
        let t = t.as_ref().map(|t| {
            (
                t.tls,
                t.user.as_str(),
                t.host.as_str(),
                t.port,
                t.folder.as_str(),
            )
        });
        assert_eq!(
            t,
            Ok((true, "ente", "ftp.example.it", 2121, "in/riconciliazione"))
        );
        assert!(FtpTarget::parse("ftp://ente:secret@h/", None).is_err());
        assert!(FtpTarget::parse("http://ente@h/", None).is_err());
        assert!(FtpTarget::parse("ftp://h/", None).is_err());
    }
}
