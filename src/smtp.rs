//! The node's SMTP settings (`[mail]`), shared by the receipt mailer (`app.rs`) and the daily
//! reconciliation exports (`recon_cli.rs`).

use std::time::Duration;

use anyhow::Context as _;
use mpay_actors::mailer::{SmtpSecurity, SmtpSettings};
use mpay_config::Settings;

/// The mailer's view of `[mail]` (the password read here, once: from the settings or
/// `password_file`). Errors: a password file that cannot be read.
pub fn smtp_settings(settings: &Settings) -> anyhow::Result<SmtpSettings> {
    use mpay_config::mail::MailTls;
    let m = &settings.mail;
    let password = m.password().map_err(|e| anyhow::anyhow!(e))?;
    let ca_pem = match &m.ca_cert {
        Some(p) => Some(
            std::fs::read(p)
                .with_context(|| format!("mail.ca_cert: cannot read {}", p.display()))?,
        ),
        None => None,
    };
    Ok(SmtpSettings {
        host: m.host.trim().to_string(),
        port: m.port,
        security: match m.tls {
            MailTls::Starttls => SmtpSecurity::Starttls,
            MailTls::Tls => SmtpSecurity::Tls,
            MailTls::None => SmtpSecurity::Plain,
        },
        from: m.from.trim().to_string(),
        credentials: match (&m.username, password) {
            (Some(u), Some(p)) => Some((u.clone(), p)),
            (Some(u), None) => Some((u.clone(), secrecy::SecretString::from(String::new()))),
            _ => None,
        },
        ca_pem,
        hello_name: if m.hello_name.trim().is_empty() {
            settings.node.id.clone()
        } else {
            m.hello_name.trim().to_string()
        },
        timeout: Duration::from_millis(m.timeout_ms.max(1)),
    })
}
