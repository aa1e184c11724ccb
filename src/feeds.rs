//! Bulk feeds on a node: the organizations' feed configuration ([`feed_orgs`]), and the file
//! channels around the core — the FTP server ([`ftp`]) and the drop folder ([`drop`]). The
//! REST transport lives in `mpay-web` (`api::feeds`), the CLI in `feeds_cli`; all of them go
//! through one `mpay_feeds::FeedService` (the asynchronous ones through the
//! [`FeedLauncher`]'s actors).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use mpay_actors::feed_loader::FeedLauncher;
use mpay_actors::HealthRegistry;
use mpay_config::Settings;
use mpay_feeds::FeedService;
use mpay_storage::Store;

pub mod drop;
pub mod ftp;

pub use mpay_feeds::{feed_org, feed_orgs};

/// The feed service of a node or of the CLI (organizations, spool, zip limits from `settings`).
///
/// # Errors
/// Unusable settings; the spool folder cannot be created.
pub fn feed_service(settings: &Settings, store: &Store) -> anyhow::Result<FeedService> {
    let spool = spool_dir(&settings.node.data_dir);
    FeedService::new(
        store.clone(),
        feed_orgs(settings)?,
        spool.clone(),
        mpay_feeds::zip_limits(settings),
    )
    .with_context(|| format!("cannot create the feed spool {}", spool.display()))
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
        bus: Option<std::sync::Arc<dyn mpay_actors::bus::Bus>>,
    ) -> anyhow::Result<Self> {
        let launcher = FeedLauncher::new(feed_service(settings, store)?, health.clone());
        if let Some(bus) = bus {
            launcher.set_bus(bus);
        }
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
