//! Counters, latencies and samples of a run, and the printed summary.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

/// How many unexpected outcomes / XSD failures are kept with their bodies.
pub const MAX_SAMPLES: usize = 5;
/// Bodies are cut to this many characters in samples.
pub const MAX_BODY_CHARS: usize = 4000;

/// One unexpected outcome.
#[derive(Debug, Clone)]
pub struct Unexpected {
    /// Which job / file.
    pub context: String,
    /// Operation.
    pub op: String,
    /// What was accepted.
    pub expected: String,
    /// What came.
    pub got: String,
    /// The answer (cut).
    pub body: String,
}

/// One XSD failure.
#[derive(Debug, Clone)]
pub struct XsdFailure {
    /// Which job / file.
    pub context: String,
    /// Operation.
    pub op: String,
    /// `response` or `request` (a request the simulator built: a simulator bug).
    pub direction: String,
    /// libxml2's messages.
    pub errors: Vec<String>,
    /// The document (cut).
    pub body: String,
}

#[derive(Debug, Default)]
struct OpStats {
    outcomes: BTreeMap<String, u64>,
    latencies_us: Vec<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    ops: BTreeMap<String, OpStats>,
    xsd_failures: u64,
    xsd_samples: Vec<XsdFailure>,
    unexpected: u64,
    unexpected_samples: Vec<Unexpected>,
    counters: BTreeMap<String, u64>,
}

/// Thread-safe run statistics.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Inner>,
}

/// Cuts a body for printing.
pub fn cut(body: &str) -> String {
    if body.chars().count() <= MAX_BODY_CHARS {
        body.to_string()
    } else {
        let mut s: String = body.chars().take(MAX_BODY_CHARS).collect();
        s.push_str("\n…[cut]");
        s
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // nearest rank
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted.len()) - 1;
    sorted.get(idx).copied().unwrap_or(0)
}

fn ms(us: u64) -> f64 {
    (us as f64) / 1000.0
}

impl Stats {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut g)
    }

    /// Records one exchange: its outcome label and latency.
    pub fn record(&self, op: &str, label: &str, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.with(|i| {
            let s = i.ops.entry(op.to_string()).or_default();
            *s.outcomes.entry(label.to_string()).or_default() += 1;
            s.latencies_us.push(us);
        });
    }

    /// Records an unexpected outcome (kept with its body for the first few).
    pub fn unexpected(&self, u: Unexpected) {
        self.with(|i| {
            i.unexpected += 1;
            if i.unexpected_samples.len() < MAX_SAMPLES {
                i.unexpected_samples.push(Unexpected {
                    body: cut(&u.body),
                    ..u
                });
            }
        });
    }

    /// Records an XSD failure.
    pub fn xsd_failure(&self, f: XsdFailure) {
        self.with(|i| {
            i.xsd_failures += 1;
            if i.xsd_samples.len() < MAX_SAMPLES {
                i.xsd_samples.push(XsdFailure {
                    body: cut(&f.body),
                    ..f
                });
            }
        });
    }

    /// Bumps a named counter (payments completed, probes, ...).
    pub fn count(&self, name: &str) {
        self.with(|i| *i.counters.entry(name.to_string()).or_default() += 1);
    }

    /// Number of unexpected outcomes so far.
    pub fn unexpected_count(&self) -> u64 {
        self.with(|i| i.unexpected)
    }

    /// Number of XSD failures so far.
    pub fn xsd_failure_count(&self) -> u64 {
        self.with(|i| i.xsd_failures)
    }

    /// The machine-readable summary.
    pub fn summary_json(&self, elapsed: Duration, extra: Value) -> Value {
        self.with(|i| {
            let mut ops = serde_json::Map::new();
            let mut total = 0u64;
            for (name, s) in &i.ops {
                let mut lat = s.latencies_us.clone();
                lat.sort_unstable();
                let count = lat.len() as u64;
                total += count;
                ops.insert(
                    name.clone(),
                    json!({
                        "count": count,
                        "outcomes": s.outcomes,
                        "latency_ms": {
                            "p50": ms(percentile(&lat, 50.0)),
                            "p90": ms(percentile(&lat, 90.0)),
                            "p99": ms(percentile(&lat, 99.0)),
                            "max": ms(lat.last().copied().unwrap_or(0)),
                        }
                    }),
                );
            }
            let secs = elapsed.as_secs_f64();
            json!({
                "ops": ops,
                "requests": total,
                "elapsed_s": (secs * 1000.0).round() / 1000.0,
                "requests_per_s": if secs > 0.0 { ((total as f64 / secs) * 10.0).round() / 10.0 } else { 0.0 },
                "counters": i.counters,
                "xsd_failures": i.xsd_failures,
                "unexpected": i.unexpected,
                "ok": i.xsd_failures == 0 && i.unexpected == 0,
                "run": extra,
            })
        })
    }

    /// Prints the human summary (per operation outcomes and latencies, failures with bodies).
    pub fn print_human(&self, elapsed: Duration) {
        self.with(|i| {
            println!();
            println!("== pagopa-sim summary ({:.1} s) ==", elapsed.as_secs_f64());
            println!(
                "{:<24} {:>7} {:>9} {:>9} {:>9} {:>9}  outcomes",
                "operation", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
            );
            for (name, s) in &i.ops {
                let mut lat = s.latencies_us.clone();
                lat.sort_unstable();
                let outcomes = s
                    .outcomes
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                println!(
                    "{:<24} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1}  {}",
                    name,
                    lat.len(),
                    ms(percentile(&lat, 50.0)),
                    ms(percentile(&lat, 90.0)),
                    ms(percentile(&lat, 99.0)),
                    ms(lat.last().copied().unwrap_or(0)),
                    outcomes
                );
            }
            if !i.counters.is_empty() {
                let c = i
                    .counters
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                println!("counters: {c}");
            }
            println!("XSD failures: {}", i.xsd_failures);
            for f in &i.xsd_samples {
                println!(
                    "  --- XSD failure ({}) {} {}:",
                    f.direction, f.context, f.op
                );
                for e in f.errors.iter().take(10) {
                    println!("      {e}");
                }
                println!("{}", indent(&f.body));
            }
            println!("unexpected outcomes: {}", i.unexpected);
            for u in &i.unexpected_samples {
                println!(
                    "  --- {} {}: expected {} got {}",
                    u.context, u.op, u.expected, u.got
                );
                if !u.body.is_empty() {
                    println!("{}", indent(&u.body));
                }
            }
        });
    }
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("      | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[7], 90.0), 7);
    }
}
