//! Drop-folder transport for bulk feeds: `<drop_dir>/<fiscal code>/` is polled; a new
//! `.csv` / `.zip` whose size and modification time stayed the same for `feeds.drop_settle_ms`
//! is complete and starts its load (it moves to the spool); results are written into
//! `<drop_dir>/<fiscal code>/out/` (FORMAT.md §5.5, §5.7: `-ESITO.csv`, `-IUV-EXCHANGE.csv`, the
//! MyPay / PU compatibility copies and `-RESULT.zip`), a refusal as `out/<file>.ERRORE.txt`.
//! Hidden files and other extensions (`.part`, `.md5`, ...) are ignored, so writers can upload
//! under a temporary name and rename. A checksum sidecar (`<basename>.md5` / `.sha256`) present
//! when the feed file is taken is verified and consumed, as on FTP ([`super::ftp`]): write the
//! sidecar first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use mpay_actors::feed_loader::FeedLauncher;
use mpay_config::Settings;

use super::ftp::{is_feed_name, submit_file};

/// The polling thread; dropping it stops the thread.
pub struct DropFolder {
    /// The watched root.
    pub root: PathBuf,
    stop: Arc<AtomicBool>,
}

struct Seen {
    len: u64,
    modified: Option<SystemTime>,
    since: Instant,
}

impl DropFolder {
    /// Creates `<dir>/<fiscal code>/out/` for every organization and starts polling.
    ///
    /// # Errors
    /// The folders cannot be created.
    pub fn start(dir: &Path, settings: &Settings, launcher: FeedLauncher) -> anyhow::Result<Self> {
        let orgs: Vec<String> = settings
            .organizations
            .iter()
            .map(|o| o.fiscal_code.clone())
            .collect();
        for o in &orgs {
            let d = dir.join(o).join("out");
            std::fs::create_dir_all(&d)
                .with_context(|| format!("cannot create {}", d.display()))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (root, stop2) = (dir.to_path_buf(), stop.clone());
        let poll = Duration::from_millis(settings.feeds.drop_poll_ms);
        let settle = Duration::from_millis(settings.feeds.drop_settle_ms);
        std::thread::Builder::new()
            .name("feed-drop".into())
            .spawn(move || {
                let mut seen: HashMap<PathBuf, Seen> = HashMap::new();
                while !stop2.load(Ordering::SeqCst) {
                    for o in &orgs {
                        scan(&root, o, &launcher, settle, &mut seen);
                    }
                    std::thread::sleep(poll);
                }
            })?;
        tracing::info!(dir = %dir.display(), "feed drop folder watched");
        Ok(DropFolder {
            root: dir.to_path_buf(),
            stop,
        })
    }
}

fn scan(
    root: &Path,
    org: &str,
    launcher: &FeedLauncher,
    settle: Duration,
    seen: &mut HashMap<PathBuf, Seen>,
) {
    let dir = root.join(org);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        let Ok(meta) = e.metadata() else { continue };
        if !meta.is_file() || !is_feed_name(&name) {
            continue;
        }
        let (len, modified) = (meta.len(), meta.modified().ok());
        let now = Instant::now();
        let entry = seen.entry(path.clone()).or_insert(Seen {
            len,
            modified,
            since: now,
        });
        if entry.len != len || entry.modified != modified {
            *entry = Seen {
                len,
                modified,
                since: now,
            };
            continue;
        }
        if now.duration_since(entry.since) >= settle {
            seen.remove(&path);
            submit_file(launcher, org, &path, &dir.join("out"));
        }
    }
    seen.retain(|p, _| p.exists());
}

impl Drop for DropFolder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
