//! The feed trees (`feeds`, `feed_outcomes`, `feed_seen`) and their key layout; record get/put; prefix removal.

use mpay_messages::OrgFiscalCode;

use crate::codec::{decode, encode};
use crate::Store;

use super::types::*;

pub(crate) struct Trees {
    pub(crate) feeds: sled::Tree,
    pub(crate) outcomes: sled::Tree,
    pub(crate) seen: sled::Tree,
}

impl Trees {
    pub(crate) fn open(store: &Store) -> Result<Self, FeedError> {
        Ok(Self {
            feeds: store.db.open_tree("feeds")?,
            outcomes: store.db.open_tree("feed_outcomes")?,
            seen: store.db.open_tree("feed_seen")?,
        })
    }
}

pub(crate) fn feed_key(org: &OrgFiscalCode, flow: &str) -> Vec<u8> {
    let mut k = org.as_str().as_bytes().to_vec();
    k.extend_from_slice(flow.as_bytes());
    k
}

pub(crate) fn sub_key(feed: &[u8], tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(feed.len() + 2 + rest.len());
    k.extend_from_slice(feed);
    k.push(0);
    k.push(tag);
    k.extend_from_slice(rest);
    k
}

pub(crate) fn sub_prefix(feed: &[u8]) -> Vec<u8> {
    let mut k = feed.to_vec();
    k.push(0);
    k
}

pub(crate) fn get_record(t: &Trees, key: &[u8]) -> Result<Option<FeedLoadRecord>, FeedError> {
    match t.feeds.get(key)? {
        Some(b) => Ok(Some(decode("feeds", key, &b)?)),
        None => Ok(None),
    }
}

pub(crate) fn put_record(t: &Trees, key: &[u8], r: &FeedLoadRecord) -> Result<(), FeedError> {
    t.feeds.insert(key, encode(r)?)?;
    Ok(())
}

/// Removes every key under `prefix`, [`SEEN_BATCH`] keys per `apply_batch`: one huge batch
/// would keep all its log writes in memory until it is sealed.
pub(crate) fn clear_prefix(tree: &sled::Tree, prefix: &[u8]) -> Result<(), FeedError> {
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for item in tree.scan_prefix(prefix).keys() {
        batch.remove(item?);
        n += 1;
        if n >= SEEN_BATCH {
            tree.apply_batch(std::mem::take(&mut batch))?;
            n = 0;
        }
    }
    if n > 0 {
        tree.apply_batch(batch)?;
    }
    Ok(())
}
