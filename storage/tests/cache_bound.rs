#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Does `[node] cache_mb` (sled `cache_capacity`) bound the memory a full read of the store
//! takes (issue 9.1)? Writes ~48 MB of journal, reopens the store with a small cache, reads
//! every entry once (the journal's size count scans the whole tree) and measures the process's
//! resident memory before and after. Own test binary: nextest runs it in its own process.

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

// Measured 2026-12-05 (debug build): with glibc malloc, cache_capacity 8 MiB, a full read of
// 55 MiB of journal grew RSS by 31–34 MiB; with mimalloc (the binaries' allocator, used here)
// +26 MiB for 55 MiB read and +76 MiB for 165 MiB read (`CACHE_BOUND_CHUNKS=144`): the growth
// follows the data read (~0.46 byte per byte), not the cache. sled 0.34 keeps per-page state
// outside `cache_capacity` (its page table and snapshot grow with the store: spacejam/sled#1410,
// #986), so `[node] cache_mb` bounds only part of the memory. Kept as a measurement
// (`--run-ignored only`) until the bound is made real (the journal out of sled, or another
// store).
#[test]
#[ignore = "measurement: sled 0.34 cache_capacity does not bound memory (RSS grows ~0.46x the data read with an 8 MiB cache)"]
fn a_full_read_of_the_store_takes_memory_bounded_by_the_cache_not_by_the_data() {
    const CACHE: u64 = 8 << 20;
    let dir = tempfile::tempdir().unwrap();
    let pad = "p".repeat(1000);
    {
        let store = Store::open_with_cache(dir.path(), CACHE).unwrap();
        let chunks: i64 = std::env::var("CACHE_BOUND_CHUNKS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(48);
        for chunk in 0..chunks {
            let batch: Vec<_> = (0..1000).map(|i| entry(chunk * 1000 + i, &pad)).collect();
            store.journal.append(&batch).unwrap();
        }
        store.flush_blocking().unwrap();
    }
    let store = Store::open_with_cache(dir.path(), CACHE).unwrap();
    let before = rss_bytes();
    let data = store.journal.size_bytes();
    let after = rss_bytes();
    let grew = after.saturating_sub(before);
    println!(
        "cache_capacity {} MiB: read {} MiB of journal, RSS {} → {} MiB (+{} MiB)",
        CACHE >> 20,
        data >> 20,
        before >> 20,
        after >> 20,
        grew >> 20
    );
    assert!(data > 45 << 20, "{data}");
    // bounded by the cache (with sled's own overhead per cached page), not by the data read
    assert!(
        grew < data / 2,
        "a full read grew RSS by {grew} bytes for {data} bytes read with an {CACHE}-byte cache"
    );
}
