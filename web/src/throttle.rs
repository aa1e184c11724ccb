//! Throttling of failed authentications (issue 9.11), shared by the REST API (API keys) and
//! the FTP server (logins): each failure is counted against the client IP and against the
//! presented key's prefix / the FTP user; once a subject has `[auth] failure_limit` failures in
//! a fixed window of `failure_window_secs`, further attempts for it are refused without being
//! checked until the window ends (REST 429 with `Retry-After`, FTP 421 / 530). Metrics
//! `mpay_auth_failures_total{surface}` and `mpay_auth_throttled_total{surface}`; one WARN line
//! when a subject becomes throttled (the IP, the surface, never the secret).
//!
//! Memory is bounded: at most [`MAX_SUBJECTS`] subjects are tracked; when full, expired
//! windows are dropped first, and if none expired the failure is still counted against the
//! IP bucket of the overflow subject (`overflow`), so a flood of distinct prefixes cannot grow
//! the map nor escape the limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most subjects tracked at once.
pub const MAX_SUBJECTS: usize = 100_000;

/// Characters of a presented API key kept as its throttling subject (not enough to be the
/// key: keys are at least 32 characters).
pub const KEY_PREFIX_CHARS: usize = 6;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// The failure counters (one per process, shared by the surfaces).
#[derive(Debug)]
pub struct AuthThrottle {
    limit: u32,
    window: Duration,
    subjects: Mutex<HashMap<String, Window>>,
}

/// Who an attempt is counted against.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// `rest` or `ftp` (metric label).
    pub surface: &'static str,
    /// The client's address, when known.
    pub ip: Option<IpAddr>,
    /// The presented key's prefix or the FTP user name.
    pub subject: Option<String>,
}

impl Attempt {
    /// An API key attempt from `ip` (only the key's first [`KEY_PREFIX_CHARS`] characters are
    /// kept).
    pub fn api_key(ip: Option<IpAddr>, key: &str) -> Self {
        Attempt {
            surface: "rest",
            ip,
            subject: Some(key.chars().take(KEY_PREFIX_CHARS).collect()),
        }
    }

    /// An FTP login attempt of `user` from `ip`.
    pub fn ftp(ip: IpAddr, user: &str) -> Self {
        Attempt {
            surface: "ftp",
            ip: Some(ip),
            subject: Some(user.chars().take(64).collect()),
        }
    }

    fn keys(&self) -> Vec<String> {
        let mut k = Vec::with_capacity(2);
        if let Some(ip) = self.ip {
            k.push(format!("{}/ip/{ip}", self.surface));
        }
        if let Some(s) = &self.subject {
            k.push(format!("{}/who/{s}", self.surface));
        }
        k
    }
}

impl AuthThrottle {
    /// `limit` failures per `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        AuthThrottle {
            limit: limit.max(1),
            window,
            subjects: Mutex::new(HashMap::new()),
        }
    }

    /// From `[auth]`.
    pub fn from_settings(auth: &mpay_config::AuthSettings) -> Self {
        Self::new(
            auth.failure_limit,
            Duration::from_secs(auth.failure_window_secs),
        )
    }

    /// `Some(retry after)` when the attempt must be refused without being checked (counted in
    /// `mpay_auth_throttled_total`).
    pub fn check(&self, a: &Attempt) -> Option<Duration> {
        self.check_at(a, Instant::now())
    }

    fn check_at(&self, a: &Attempt, now: Instant) -> Option<Duration> {
        let map = self.subjects.lock().ok()?;
        let wait = a
            .keys()
            .iter()
            .filter_map(|k| map.get(k))
            .filter(|w| w.failures >= self.limit)
            .filter_map(|w| (w.start + self.window).checked_duration_since(now))
            .filter(|d| !d.is_zero())
            .max();
        if wait.is_some() {
            metrics::counter!("mpay_auth_throttled_total", "surface" => a.surface).increment(1);
        }
        wait
    }

    /// Records a failed attempt (counted in `mpay_auth_failures_total`); logs once when a
    /// subject reaches the limit.
    pub fn failed(&self, a: &Attempt) {
        self.failed_at(a, Instant::now());
    }

    fn failed_at(&self, a: &Attempt, now: Instant) {
        metrics::counter!("mpay_auth_failures_total", "surface" => a.surface).increment(1);
        let Ok(mut map) = self.subjects.lock() else {
            return;
        };
        if map.len() >= MAX_SUBJECTS {
            let window = self.window;
            map.retain(|_, w| now.duration_since(w.start) < window);
        }
        for key in a.keys() {
            let key = if map.len() >= MAX_SUBJECTS && !map.contains_key(&key) {
                format!("{}/overflow", a.surface)
            } else {
                key
            };
            let w = map.entry(key).or_insert(Window {
                start: now,
                failures: 0,
            });
            if now.duration_since(w.start) >= self.window {
                *w = Window {
                    start: now,
                    failures: 0,
                };
            }
            w.failures = w.failures.saturating_add(1);
            if w.failures == self.limit {
                tracing::warn!(
                    surface = a.surface,
                    ip = ?a.ip,
                    failures = w.failures,
                    window_secs = self.window.as_secs(),
                    "too many failed authentications: throttled until the window ends"
                );
            }
        }
    }

    /// Subjects tracked now.
    pub fn len(&self) -> usize {
        self.subjects.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no subject is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn throttles_after_the_limit_until_the_window_ends() {
        let t = AuthThrottle::new(3, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        let a = Attempt::api_key(Some(ip), "wrong-key-1");
        for _ in 0..3 {
            assert!(t.check_at(&a, now).is_none());
            t.failed_at(&a, now);
        }
        // same IP, another key: the IP bucket is full
        let b = Attempt::api_key(Some(ip), "other-key");
        let wait = t.check_at(&b, now + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        // another IP, another key prefix: free
        let c = Attempt::api_key(Some("10.0.0.2".parse().unwrap()), "zzzzzz-key");
        assert!(t.check_at(&c, now).is_none());
        // another IP, same key prefix: the prefix bucket is full
        let d = Attempt::api_key(Some("10.0.0.3".parse().unwrap()), "wrong-key-2");
        assert!(t.check_at(&d, now).is_some());
        // the window ended
        assert!(t.check_at(&b, now + Duration::from_secs(61)).is_none());
    }

    #[test]
    fn memory_is_bounded() {
        let t = AuthThrottle::new(3, Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..(MAX_SUBJECTS + 10) {
            t.failed_at(&Attempt::api_key(None, &format!("{i:06}")), now);
        }
        assert!(t.len() <= MAX_SUBJECTS + 1, "{}", t.len());
    }
}
