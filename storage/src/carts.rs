//! Citizen carts (`CartSession` state), in their own sled database (`<data_dir>/carts-v1`), so
//! the ledger's layout is untouched. Every change is flushed before it is acknowledged: a restart
//! (or SIGKILL) loses no cart.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `carts` | cart id | version byte 1 ++ JSON [`Cart`] |
//! | `carts_by_notice` | `org ++ nav` | cart id (the cart that last took the notice) |
//!
//! "A notice cannot be in two live carts": [`CartStore::save`] refuses, in the same
//! transaction, a cart that takes a notice held by another cart that still
//! [`Cart::holds_notices`].

use std::path::Path;

use chrono::{DateTime, Utc};
use mpay_messages::domain::cart::{Cart, CartTimers};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::StorageError;

const VERSION: u8 = 1;

/// Why a cart was not saved.
#[derive(Debug, thiserror::Error)]
pub enum CartStoreError {
    /// A notice of the cart is held by another live cart.
    #[error("notice {notice_number} of {organization} is in cart {other}")]
    NoticeInAnotherCart {
        /// Organization.
        organization: String,
        /// Notice.
        notice_number: String,
        /// The other cart.
        other: String,
    },
    /// Store failure.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The cart store.
#[derive(Clone)]
pub struct CartStore {
    db: sled::Db,
    carts: sled::Tree,
    by_notice: sled::Tree,
}

fn notice_key(org: &str, nav: &str) -> Vec<u8> {
    let mut k = org.as_bytes().to_vec();
    k.extend_from_slice(nav.as_bytes());
    k
}

fn encode(cart: &Cart) -> Result<Vec<u8>, StorageError> {
    let mut v = vec![VERSION];
    serde_json::to_writer(&mut v, cart).map_err(|e| StorageError::Io(e.to_string()))?;
    Ok(v)
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<Cart, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        tree: "carts",
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    match bytes.split_first() {
        Some((&VERSION, json)) => serde_json::from_slice(json).map_err(|e| corrupt(e.to_string())),
        Some((v, _)) => Err(corrupt(format!("unknown schema version {v}"))),
        None => Err(corrupt("empty record".into())),
    }
}

impl CartStore {
    /// Opens (or creates) the cart database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::Io(e.to_string()))?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(16 * 1024 * 1024)
            .open()?;
        Ok(CartStore {
            carts: db.open_tree("carts")?,
            by_notice: db.open_tree("carts_by_notice")?,
            db,
        })
    }

    /// A cart by id.
    pub fn get(&self, id: &str) -> Result<Option<Cart>, StorageError> {
        self.carts
            .get(id.as_bytes())?
            .map(|v| decode(id.as_bytes(), &v))
            .transpose()
    }

    /// Every stored cart (start-up: the sessions to resume).
    pub fn all(&self) -> Result<Vec<Cart>, StorageError> {
        self.carts
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }

    /// The id of the cart that last took a notice (live or not): where a receipt for the
    /// notice goes.
    pub fn cart_of_notice(&self, org: &str, nav: &str) -> Result<Option<String>, StorageError> {
        Ok(self
            .by_notice
            .get(notice_key(org, nav))?
            .map(|id| String::from_utf8_lossy(&id).into_owned()))
    }

    /// The cart holding a notice now, if any (and it still holds it at `now`).
    pub fn holder(
        &self,
        org: &str,
        nav: &str,
        now: DateTime<Utc>,
        timers: CartTimers,
    ) -> Result<Option<Cart>, StorageError> {
        let Some(id) = self.by_notice.get(notice_key(org, nav))? else {
            return Ok(None);
        };
        let Some(cart) = self.get(&String::from_utf8_lossy(&id))? else {
            return Ok(None);
        };
        Ok(cart.holds_notices(now, timers).then_some(cart))
    }

    /// Saves a cart and its notice index in one transaction, then flushes. Errors:
    /// [`CartStoreError::NoticeInAnotherCart`] when another cart still holds one of its notices
    /// (nothing is written), `Storage`.
    pub fn save(
        &self,
        cart: &Cart,
        now: DateTime<Utc>,
        timers: CartTimers,
    ) -> Result<(), CartStoreError> {
        let value = encode(cart)?;
        let id = cart.id.as_bytes();
        let _running = crate::tx::unit_of_work();
        let result = (&self.carts, &self.by_notice).transaction(|(carts, by_notice)| {
            let old = match carts.get(id)? {
                Some(v) => decode(id, &v).ok(),
                None => None,
            };
            let holds = cart.holds_notices(now, timers);
            for item in &cart.items {
                let key = notice_key(&item.organization, &item.notice_number);
                if let Some(other) = by_notice.get(&key)?.filter(|_| holds) {
                    if other.as_ref() != id {
                        let other_cart = carts
                            .get(other.as_ref())?
                            .and_then(|v| decode(other.as_ref(), &v).ok());
                        if other_cart.is_some_and(|c| c.holds_notices(now, timers)) {
                            return Err(ConflictableTransactionError::Abort(
                                CartStoreError::NoticeInAnotherCart {
                                    organization: item.organization.clone(),
                                    notice_number: item.notice_number.clone(),
                                    other: String::from_utf8_lossy(&other).into_owned(),
                                },
                            ));
                        }
                    }
                }
                if holds {
                    by_notice.insert(key, id)?;
                }
            }
            // notices removed from the cart (or a cart that holds nothing any more) free their
            // index entries when they point to this cart
            if let Some(old) = old {
                for item in &old.items {
                    let still = holds
                        && cart.items.iter().any(|i| {
                            i.organization == item.organization
                                && i.notice_number == item.notice_number
                        });
                    let key = notice_key(&item.organization, &item.notice_number);
                    if !still && by_notice.get(&key)?.is_some_and(|v| v.as_ref() == id) {
                        by_notice.remove(key)?;
                    }
                }
            }
            if !holds {
                for item in &cart.items {
                    let key = notice_key(&item.organization, &item.notice_number);
                    if by_notice.get(&key)?.is_some_and(|v| v.as_ref() == id) {
                        by_notice.remove(key)?;
                    }
                }
            }
            carts.insert(id, value.clone())?;
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(StorageError::from(e).into()),
        }
        self.db.flush().map_err(StorageError::from)?;
        Ok(())
    }

    /// Removes a cart that holds nothing (expired long ago).
    pub fn remove(&self, id: &str) -> Result<(), StorageError> {
        self.carts.remove(id.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use mpay_messages::domain::cart::CartItem;

    const TIMERS: CartTimers = CartTimers {
        idle: Duration::minutes(30),
        checkout_window: Duration::minutes(10),
    };

    fn item(nav: &str) -> CartItem {
        CartItem {
            organization: "80001234568".into(),
            company_name: "Comune".into(),
            notice_number: nav.into(),
            iuv: nav[1..].into(),
            amount_cents: 100,
            description: "TARI".into(),
            due_date: None,
            iupd: "X".into(),
        }
    }

    #[test]
    fn a_notice_is_in_one_live_cart_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc.with_ymd_and_hms(2027, 3, 1, 10, 0, 0).unwrap();
        let store = CartStore::open(dir.path()).unwrap();
        let mut a = Cart::new("a", now);
        a.add(item("302120000000000001"), now).unwrap();
        store.save(&a, now, TIMERS).unwrap();
        let mut b = Cart::new("b", now);
        b.add(item("302120000000000001"), now).unwrap();
        assert!(matches!(
            store.save(&b, now, TIMERS),
            Err(CartStoreError::NoticeInAnotherCart { .. })
        ));
        assert_eq!(store.get("b").unwrap(), None);
        // a removes it: b may take it
        a.remove("80001234568", "302120000000000001", now).unwrap();
        store.save(&a, now, TIMERS).unwrap();
        store.save(&b, now, TIMERS).unwrap();
        assert_eq!(
            store
                .holder("80001234568", "302120000000000001", now, TIMERS)
                .unwrap()
                .unwrap()
                .id,
            "b"
        );
        // b idles out: a may take it back
        let later = now + Duration::minutes(31);
        a.add(item("302120000000000001"), later).unwrap();
        store.save(&a, later, TIMERS).unwrap();
        drop(store);
        let store = CartStore::open(dir.path()).unwrap();
        assert_eq!(store.get("a").unwrap().unwrap(), a);
        assert_eq!(store.all().unwrap().len(), 2);
    }
}
