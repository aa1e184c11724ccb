#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Does a full read of a large journal take memory bounded by a constant, not by the data
//! (issue 9.1)? Writes ~48 MB of journal, reopens the store with a small cache, reads every
//! entry (count, a search that matches nothing, a size prune) and measures the process's
//! resident memory before and after. Own test binary: nextest runs it in its own process.
//!
//! History: with the journal in sled (until this build), the same read grew RSS by +26 MiB for
//! 55 MiB and +76 MiB for 165 MiB with an 8 MiB `cache_capacity` (mimalloc): sled 0.34 keeps
//! per-page state outside its cache (spacejam/sled#1410, #986), so the journal — the one tree
//! unauthenticated traffic makes grow — moved into its own files.

use mpay_messages::journal::JournalEntry;

/// The binaries' allocator (`src/main.rs`): RSS is measured as a running node would have it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use mpay_storage::{JournalStore as _, Store};

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

fn entry(i: i64, pad: &str) -> JournalEntry {
    JournalEntry {
        at: chrono::DateTime::from_timestamp(1_700_000_000 + i, 0).unwrap(),
        channel: "soap".into(),
        operation: "paVerifyPaymentNotice".into(),
        organization: None,
        key: Some(format!("k{i}")),
        status: 200,
        outcome: "OK".into(),
        latency_us: 1,
        request_id: format!("r{i}"),
        note: None,
        payload: Some(pad.to_string()),
    }
}

#[test]
fn a_full_read_of_the_journal_takes_memory_bounded_by_a_constant_not_by_the_data() {
    const CACHE: u64 = 8 << 20;
    let dir = tempfile::tempdir().unwrap();
    let pad = "p".repeat(1000);
    let chunks: i64 = std::env::var("CACHE_BOUND_CHUNKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    {
        let store = Store::open_with_cache(dir.path(), CACHE).unwrap();
        for chunk in 0..chunks {
            let batch: Vec<_> = (0..1000).map(|i| entry(chunk * 1000 + i, &pad)).collect();
            store.journal.append(&batch).unwrap();
        }
        store.flush_blocking().unwrap();
    }
    let store = Store::open_with_cache(dir.path(), CACHE).unwrap();
    let before = rss_bytes();
    let data = store.journal.size_bytes();
    let entries = store.journal.len();
    let none = store
        .journal
        .query(&mpay_storage::JournalQuery {
            organization: Some("nobody".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let newest = store
        .journal
        .query(&mpay_storage::JournalQuery {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    let removed = store.journal.prune_to_size(data / 2).unwrap();
    let after = rss_bytes();
    let grew = after.saturating_sub(before);
    println!(
        "read {} MiB of journal ({entries} entries, {removed} pruned), RSS {} → {} MiB (+{} KiB)",
        data >> 20,
        before >> 20,
        after >> 20,
        grew >> 10
    );
    assert!(data > 45 << 20, "{data}");
    assert_eq!(entries as i64, chunks * 1000);
    assert!(none.is_empty());
    assert_eq!(newest.len(), 100);
    assert_eq!(
        newest[0].key.as_deref(),
        Some(format!("k{}", entries - 1).as_str())
    );
    assert!(removed as usize > entries / 3, "{removed}");
    assert!(store.journal.size_bytes() <= data / 2);
    // a constant (buffers, one entry at a time), not a share of the data read
    assert!(
        grew < 8 << 20,
        "a full read grew RSS by {grew} bytes for {data} bytes read"
    );
}
