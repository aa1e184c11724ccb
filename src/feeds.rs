//! Bulk feeds on a node: the organizations' feed configuration ([`feed_orgs`]), and the file
//! channels around the core — the FTP server ([`ftp`]) and the drop folder ([`drop`]). The
//! REST transport lives in `mpay-web` (`api::feeds`), the CLI in `feeds_cli`; all of them go
//! through one [`FeedLauncher`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use mpay_actors::feed_loader::FeedLauncher;
use mpay_actors::HealthRegistry;
use mpay_config::{OrganizationSettings, Settings};
use mpay_messages::feeds::Mb14AmountMode;
use mpay_messages::{Iban, OrgFiscalCode};
use mpay_storage::feeds::{FeedOrg, FeedService};
use mpay_storage::Store;

pub mod drop;
pub mod ftp;

/// The feed view of one configured organization (FORMAT.md §5.4, §5.5): IPA code, layout,
/// IBANs and the services usable as `tipoDovuto`.
///
/// # Errors
/// Unusable organization settings (they were validated at load: only a bug gets here).
pub fn feed_org(settings: &Settings, o: &OrganizationSettings) -> anyhow::Result<FeedOrg> {
    let fiscal_code = OrgFiscalCode::parse_unchecked(&o.fiscal_code)
        .with_context(|| format!("organization {}", o.fiscal_code))?;
    let layout = o.layout().map_err(anyhow::Error::msg)?;
    let other_layouts = o
        .notice_codes
        .iter()
        .map(|c| c.layout().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ibans = o
        .ibans
        .iter()
        .chain(&o.postal_ibans)
        .map(|i| Iban::parse_unchecked(i).map_err(|e| anyhow::anyhow!("{e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let services = settings
        .services
        .iter()
        .filter(|s| s.organization == o.fiscal_code)
        .map(|s| FeedService {
            code: s.code.clone(),
            iban: Iban::parse_unchecked(&s.iban).ok(),
            category: Some(s.category.clone()),
            due_date_required: s.due_date_required,
            active: s.feeds_enabled,
            anonymous_allowed: s.anonymous_allowed,
        })
        .collect();
    let mb14_amount_mode = match o.mb14_amount_mode.as_deref().map(str::to_ascii_uppercase) {
        Some(m) if m == "PU" => Mb14AmountMode::Pu,
        _ => Mb14AmountMode::Mypay,
    };
    let default_due_date = o.feed_default_due_date;
    Ok(FeedOrg {
        fiscal_code,
        name: o.name.clone(),
        ipa_code: o.ipa_code.clone(),
        layout,
        other_layouts,
        ibans,
        services,
        mb14_amount_mode,
        default_due_date,
    })
}

/// Every configured organization's [`FeedOrg`], by fiscal code.
///
/// # Errors
/// As [`feed_org`].
pub fn feed_orgs(settings: &Settings) -> anyhow::Result<HashMap<String, FeedOrg>> {
    settings
        .organizations
        .iter()
        .map(|o| Ok((o.fiscal_code.clone(), feed_org(settings, o)?)))
        .collect()
}

/// Where uploads wait while they load (`<data_dir>/feeds`).
pub fn spool_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("feeds")
}

/// The feed services of a running node; dropping it stops the FTP server and the drop folder.
pub struct FeedServices {
    /// The launcher shared with the REST API.
    pub launcher: FeedLauncher,
    /// The FTP server, when enabled.
    pub ftp: Option<ftp::FtpServer>,
    /// The drop-folder watcher, when configured.
    pub drop: Option<drop::DropFolder>,
}

impl FeedServices {
    /// Builds the launcher, resumes (or fails) interrupted loads, starts the FTP server and
    /// the drop folder as configured. Must run inside the actix `System`.
    ///
    /// # Errors
    /// Unusable settings, the spool / FTP / drop folders cannot be created, the FTP address
    /// cannot be bound.
    pub fn start(
        settings: &Settings,
        store: &Store,
        health: &HealthRegistry,
    ) -> anyhow::Result<Self> {
        let orgs = feed_orgs(settings)?;
        let spool = spool_dir(&settings.node.data_dir);
        let launcher = FeedLauncher::new(store.clone(), health.clone(), orgs, spool.clone())
            .with_context(|| format!("cannot create the feed spool {}", spool.display()))?;
        match launcher.resume_interrupted(settings.feeds.resume_interrupted) {
            Ok(v) if !v.is_empty() => {
                tracing::info!(
                    loads = v.len(),
                    "interrupted feed loads handled at start-up"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot list interrupted feed loads"),
        }
        let ftp = if settings.ftp.enabled {
            Some(ftp::FtpServer::start(settings, launcher.clone())?)
        } else {
            None
        };
        let drop = match &settings.feeds.drop_dir {
            Some(dir) => Some(drop::DropFolder::start(dir, settings, launcher.clone())?),
            None => None,
        };
        Ok(FeedServices {
            launcher,
            ftp,
            drop,
        })
    }
}
