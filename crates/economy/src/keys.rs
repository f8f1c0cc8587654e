//! API keys bound to ledger accounts: created by an account's ADMIN key or minted with a wallet
//! signature, stored hashed (the secret is shown once), with expiry, description, last use and
//! an optional spend cap per UTC day, calendar month or lifetime. The table lives in memory and
//! is written to one JSON file atomically (temporary file, fsync, rename) on every change to
//! the set of keys, and with usage at each usage flush.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ledger::Address;
use serde::{Deserialize, Serialize};
use wallet::Units;
pub use wire::economy::{KeyKind, LimitPeriod};

/// Keys one account may hold at once.
pub const MAX_KEYS_PER_ACCOUNT: usize = 500;
/// Keys the gateway holds in all.
const MAX_KEYS: usize = 200_000;
pub const MAX_DESCRIPTION_CHARS: usize = 64;

/// SHA-256 of a key's secret: how keys are known (the secret itself is never stored).
pub fn hash_secret(secret: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes()).into()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendLimit {
    pub usd_units: Units,
    pub period: LimitPeriod,
}

/// One stored key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    pub id: String,
    pub secret_sha256: String,
    pub last6: String,
    pub kind: KeyKind,
    pub account: wallet::JsonAddress,
    pub description: String,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub last_used_at: Option<u64>,
    pub limit: Option<SpendLimit>,
    /// The period `spent_units` counts, in the limit's terms.
    pub spent_period: u64,
    pub spent_units: Units,
    pub lifetime_units: Units,
    /// What the key spent on each of its last [`RECENT_DAYS`] UTC days of use, oldest first.
    #[serde(default)]
    pub recent_days: Vec<DaySpend>,
}

/// Days of spend a key remembers one by one: a week, Venice's `trailingSevenDays`.
pub const RECENT_DAYS: u64 = 7;

/// What a key spent on one UTC day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaySpend {
    pub day: u64,
    pub units: Units,
}

impl StoredKey {
    /// What the key spent on the [`RECENT_DAYS`] UTC days that end with `today`.
    pub fn spent_in_week_to(&self, today: u64) -> u128 {
        let first = today.saturating_sub(RECENT_DAYS - 1);
        self.recent_days
            .iter()
            .filter(|spend| (first..=today).contains(&spend.day))
            .map(|spend| spend.units.0)
            .fold(0, u128::saturating_add)
    }

    /// What the key spent in its limit's period that holds `day` (zero without a limit).
    pub fn spent_in_period_of(&self, day: u64) -> u128 {
        match self.limit {
            Some(limit) if self.spent_period == limit.period.period_of(day) => self.spent_units.0,
            _ => 0,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    keys: Vec<StoredKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("this account already has {MAX_KEYS_PER_ACCOUNT} keys; delete one first")]
    TooManyForAccount,
    #[error("the gateway holds its maximum number of keys")]
    TooMany,
    #[error("no such key")]
    NotFound,
    #[error("cannot save the key table {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The key table the replicas of a cluster share could not be written: the change did
    /// not reach the other replicas.
    #[error("the shared key table cannot be reached: {0}")]
    Unavailable(String),
}

pub struct KeyStore {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    keys: HashMap<String, StoredKey>,
    by_hash: HashMap<[u8; 32], String>,
    /// What requests in flight have reserved against each capped key (memory only: a restart
    /// ends every request that held a reservation).
    reserved: HashMap<String, u128>,
    dirty: bool,
}

/// A new key's secret and its stored record.
pub struct Minted {
    pub secret: String,
    pub key: StoredKey,
}

impl KeyStore {
    /// Opens the table at `path` (a missing file is an empty table).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut inner = Inner::default();
        match std::fs::read(path) {
            Ok(bytes) => {
                let file: KeyFile = serde_json::from_slice(&bytes).map_err(|error| {
                    std::io::Error::other(format!(
                        "the key table {} is damaged: {error}",
                        path.display()
                    ))
                })?;
                if file.version != 1 {
                    return Err(std::io::Error::other(format!(
                        "the key table {} has version {}, which this gateway does not read",
                        path.display(),
                        file.version
                    )));
                }
                for key in file.keys {
                    let hash = parse_hash(&key.secret_sha256).ok_or_else(|| {
                        std::io::Error::other(format!(
                            "the key table {} has a damaged hash for key {}",
                            path.display(),
                            key.id
                        ))
                    })?;
                    inner.by_hash.insert(hash, key.id.clone());
                    inner.keys.insert(key.id.clone(), key);
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(std::io::Error::other(format!(
                    "cannot read the key table {}: {error}",
                    path.display()
                )));
            }
        }
        Ok(Self {
            path: path.to_owned(),
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn is_empty(&self) -> bool {
        self.lock().keys.is_empty()
    }

    /// Every account that holds a key.
    pub fn accounts(&self) -> Vec<Address> {
        let mut accounts: Vec<Address> =
            self.lock().keys.values().map(|key| key.account.0).collect();
        accounts.sort();
        accounts.dedup();
        accounts
    }

    /// The key whose secret hashes to `hash`, if it exists.
    pub fn find(&self, hash: &[u8; 32]) -> Option<StoredKey> {
        let inner = self.lock();
        let id = inner.by_hash.get(hash)?;
        inner.keys.get(id).cloned()
    }

    /// Creates a key and saves the table before the secret is returned.
    pub fn create(
        &self,
        account: Address,
        kind: KeyKind,
        description: String,
        expires_at: Option<u64>,
        limit: Option<SpendLimit>,
        now: u64,
    ) -> Result<Minted, KeyError> {
        let secret = format!("gk-{}", crate::random_hex(24));
        let hash = hash_secret(&secret);
        let key = StoredKey {
            id: format!("key_{}", crate::random_hex(8)),
            secret_sha256: hex::encode(hash),
            last6: secret[secret.len() - 6..].to_owned(),
            kind,
            account: wallet::JsonAddress(account),
            description,
            created_at: now,
            expires_at,
            last_used_at: None,
            limit,
            spent_period: 0,
            spent_units: Units(0),
            lifetime_units: Units(0),
            recent_days: Vec::new(),
        };
        let mut inner = self.lock();
        if inner.keys.len() >= MAX_KEYS {
            return Err(KeyError::TooMany);
        }
        let held = inner
            .keys
            .values()
            .filter(|existing| existing.account.0 == account)
            .count();
        if held >= MAX_KEYS_PER_ACCOUNT {
            return Err(KeyError::TooManyForAccount);
        }
        inner.by_hash.insert(hash, key.id.clone());
        inner.keys.insert(key.id.clone(), key.clone());
        self.save_locked(&mut inner)?;
        Ok(Minted { secret, key })
    }

    /// The keys of `account`, oldest first.
    pub fn list(&self, account: Address) -> Vec<StoredKey> {
        let mut keys: Vec<StoredKey> = self
            .lock()
            .keys
            .values()
            .filter(|key| key.account.0 == account)
            .cloned()
            .collect();
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        keys
    }

    /// Changes a key of `account`.
    pub fn update(
        &self,
        account: Address,
        id: &str,
        change: impl FnOnce(&mut StoredKey),
    ) -> Result<StoredKey, KeyError> {
        let mut inner = self.lock();
        let key = inner
            .keys
            .get_mut(id)
            .filter(|key| key.account.0 == account)
            .ok_or(KeyError::NotFound)?;
        change(key);
        let updated = key.clone();
        self.save_locked(&mut inner)?;
        Ok(updated)
    }

    pub fn delete(&self, account: Address, id: &str) -> Result<(), KeyError> {
        let mut inner = self.lock();
        let key = inner
            .keys
            .get(id)
            .filter(|key| key.account.0 == account)
            .ok_or(KeyError::NotFound)?;
        let hash = parse_hash(&key.secret_sha256);
        inner.keys.remove(id);
        if let Some(hash) = hash {
            inner.by_hash.remove(&hash);
        }
        self.save_locked(&mut inner)
    }

    /// The key `id` of `account`, if it has one.
    pub fn get(&self, account: Address, id: &str) -> Option<StoredKey> {
        self.lock()
            .keys
            .get(id)
            .filter(|key| key.account.0 == account)
            .cloned()
    }

    /// Takes a key as another replica of the cluster made or changed it (`Some`), or deleted
    /// it (`None`). What this replica counted of a key's use (last use, spend) is its own and
    /// is kept. Returns the account whose keys changed.
    pub fn apply_shared(&self, id: &str, key: Option<StoredKey>) -> Option<Address> {
        let mut inner = self.lock();
        let account = match key {
            None => {
                let removed = inner.keys.remove(id)?;
                if let Some(hash) = parse_hash(&removed.secret_sha256) {
                    inner.by_hash.remove(&hash);
                }
                removed.account.0
            }
            Some(mut key) => {
                let hash = parse_hash(&key.secret_sha256)?;
                if let Some(local) = inner.keys.get(id) {
                    key.last_used_at = local.last_used_at;
                    key.spent_period = local.spent_period;
                    key.spent_units = local.spent_units;
                    key.lifetime_units = local.lifetime_units;
                    key.recent_days = local.recent_days.clone();
                    if let Some(old) = parse_hash(&local.secret_sha256) {
                        inner.by_hash.remove(&old);
                    }
                } else if inner.keys.len() >= MAX_KEYS {
                    tracing::warn!(
                        "the key table is full; a key made at another replica is not taken"
                    );
                    return None;
                }
                let account = key.account.0;
                inner.by_hash.insert(hash, id.to_owned());
                inner.keys.insert(id.to_owned(), key);
                account
            }
        };
        inner.dirty = true;
        Some(account)
    }

    /// Removes a key this replica made but could not share (undoing [`KeyStore::create`]).
    pub(crate) fn forget(&self, id: &str) {
        let _ = self.apply_shared(id, None);
    }

    /// Every key, for publishing a table kept alone until now.
    pub(crate) fn all(&self) -> Vec<StoredKey> {
        self.lock().keys.values().cloned().collect()
    }

    /// What is left under the key's cap in the period of `day`, less what requests in flight
    /// have reserved, or `None` without a cap.
    #[cfg(test)]
    pub fn cap_remaining(&self, id: &str, day: u64) -> Option<(u128, LimitPeriod)> {
        let inner = self.lock();
        remaining_share_locked(&inner, id, day, 1)
    }

    /// Reserves `amount` under the key's cap for a request about to run, so that concurrent
    /// requests can never spend past it together: what was reserved (zero for a key without
    /// a cap), or what is left and the cap's period when `amount` does not fit.
    pub fn reserve_cap(
        &self,
        id: &str,
        day: u64,
        amount: u128,
    ) -> Result<u128, (u128, LimitPeriod)> {
        self.reserve_cap_share(id, day, amount, 1)
    }

    /// [`KeyStore::reserve_cap`] on one of `replicas` gateways sharing the key: each holds
    /// the key to its share of the cap (what it counted spent, and what it reserved, within
    /// 1/`replicas` of it), so together they cannot pass it.
    pub fn reserve_cap_share(
        &self,
        id: &str,
        day: u64,
        amount: u128,
        replicas: u64,
    ) -> Result<u128, (u128, LimitPeriod)> {
        let mut inner = self.lock();
        let Some((remaining, period)) = remaining_share_locked(&inner, id, day, replicas) else {
            return Ok(0);
        };
        if remaining < amount {
            return Err((remaining, period));
        }
        let held = inner.reserved.entry(id.to_owned()).or_default();
        *held = held.saturating_add(amount);
        Ok(amount)
    }

    /// Gives back a reservation whose request never ran.
    pub fn release_cap(&self, id: &str, reserved: u128) {
        let mut inner = self.lock();
        release_locked(&mut inner, id, reserved);
    }

    /// Records a request's cost against its key (saved at the next flush), in place of what it
    /// reserved.
    pub fn record_use(&self, id: &str, day: u64, now: u64, reserved: u128, cost: u128) {
        let mut inner = self.lock();
        release_locked(&mut inner, id, reserved);
        if let Some(key) = inner.keys.get_mut(id) {
            key.last_used_at = Some(now);
            let period = key.limit.map_or(day, |limit| limit.period.period_of(day));
            if key.spent_period != period {
                key.spent_period = period;
                key.spent_units = Units(0);
            }
            key.spent_units = Units(key.spent_units.0.saturating_add(cost));
            key.lifetime_units = Units(key.lifetime_units.0.saturating_add(cost));
            match key.recent_days.last_mut() {
                Some(last) if last.day == day => {
                    last.units = Units(last.units.0.saturating_add(cost))
                }
                _ => key.recent_days.push(DaySpend {
                    day,
                    units: Units(cost),
                }),
            }
            let first = day.saturating_sub(RECENT_DAYS - 1);
            key.recent_days.retain(|spend| spend.day >= first);
            inner.dirty = true;
        }
    }

    /// Saves the table if usage changed it since the last save.
    pub fn flush(&self) -> Result<(), KeyError> {
        let mut inner = self.lock();
        if inner.dirty {
            self.save_locked(&mut inner)?;
        }
        Ok(())
    }

    fn save_locked(&self, inner: &mut Inner) -> Result<(), KeyError> {
        let mut keys: Vec<StoredKey> = inner.keys.values().cloned().collect();
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        let io = |error| KeyError::Io {
            path: self.path.clone(),
            error,
        };
        let bytes = serde_json::to_vec_pretty(&KeyFile { version: 1, keys })
            .map_err(|error| io(std::io::Error::other(error)))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut file, &bytes).map_err(io)?;
        file.as_file().sync_all().map_err(io)?;
        file.persist(&self.path).map_err(|error| io(error.error))?;
        inner.dirty = false;
        Ok(())
    }
}

fn remaining_share_locked(
    inner: &Inner,
    id: &str,
    day: u64,
    replicas: u64,
) -> Option<(u128, LimitPeriod)> {
    let key = inner.keys.get(id)?;
    let mut limit = key.limit?;
    limit.usd_units = Units(limit.usd_units.0 / u128::from(replicas.max(1)));
    let period = limit.period.period_of(day);
    let spent = if key.spent_period == period {
        key.spent_units.0
    } else {
        0
    };
    let reserved = inner.reserved.get(id).copied().unwrap_or(0);
    Some((
        limit
            .usd_units
            .0
            .saturating_sub(spent)
            .saturating_sub(reserved),
        limit.period,
    ))
}

fn release_locked(inner: &mut Inner, id: &str, reserved: u128) {
    if reserved == 0 {
        return;
    }
    if let Some(held) = inner.reserved.get_mut(id) {
        *held = held.saturating_sub(reserved);
        if *held == 0 {
            inner.reserved.remove(id);
        }
    }
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_of_three_holds_a_key_to_a_third_of_its_cap() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = KeyStore::open(&dir.path().join("api-keys.json")).expect("opens");
        let minted = store
            .create(
                Address([6; 20]),
                KeyKind::Inference,
                "capped".into(),
                None,
                Some(SpendLimit {
                    usd_units: Units(300),
                    period: LimitPeriod::Epoch,
                }),
                1,
            )
            .expect("created");
        let id = &minted.key.id;
        assert_eq!(
            store.reserve_cap_share(id, 10, 101, 3),
            Err((100, LimitPeriod::Epoch))
        );
        let held = store.reserve_cap_share(id, 10, 60, 3).expect("fits");
        store.record_use(id, 10, 11, held, 60);
        assert_eq!(
            store.reserve_cap_share(id, 10, 41, 3),
            Err((40, LimitPeriod::Epoch)),
            "what this replica spent counts against its share"
        );
        assert_eq!(store.reserve_cap_share(id, 10, 40, 3), Ok(40));
    }

    #[test]
    fn a_cap_is_reserved_by_requests_in_flight_so_together_they_cannot_pass_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = KeyStore::open(&dir.path().join("api-keys.json")).expect("opens");
        let minted = store
            .create(
                Address([5; 20]),
                KeyKind::Inference,
                "capped".into(),
                None,
                Some(SpendLimit {
                    usd_units: Units(100),
                    period: LimitPeriod::Lifetime,
                }),
                1,
            )
            .expect("created");
        let id = &minted.key.id;
        // Three requests that may cost 40 each: the third does not fit beside the first two.
        let first = store.reserve_cap(id, 10, 40).expect("fits");
        let second = store.reserve_cap(id, 10, 40).expect("fits");
        assert_eq!(
            store.reserve_cap(id, 10, 40),
            Err((20, LimitPeriod::Lifetime))
        );
        // The first costs 10 in the end; the second never runs.
        store.record_use(id, 10, 11, first, 10);
        store.release_cap(id, second);
        assert_eq!(
            store.cap_remaining(id, 10),
            Some((90, LimitPeriod::Lifetime))
        );
        // A key without a cap reserves nothing and is never refused.
        let open = store
            .create(
                Address([5; 20]),
                KeyKind::Inference,
                "open".into(),
                None,
                None,
                1,
            )
            .expect("created");
        assert_eq!(store.reserve_cap(&open.key.id, 10, u128::MAX), Ok(0));
    }

    #[test]
    fn keys_survive_a_reopen_hashed_and_caps_reset_with_their_period() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("api-keys.json");
        let store = KeyStore::open(&path).expect("opens");
        let account = Address([3; 20]);
        let minted = store
            .create(
                account,
                KeyKind::Inference,
                "laptop".into(),
                None,
                Some(SpendLimit {
                    usd_units: Units(100),
                    period: LimitPeriod::Epoch,
                }),
                1,
            )
            .expect("created");
        let text = std::fs::read_to_string(&path).expect("saved");
        assert!(!text.contains(&minted.secret), "the secret is never stored");
        store.record_use(&minted.key.id, 10, 11, 0, 60);
        store.flush().expect("flushed");
        let reopened = KeyStore::open(&path).expect("reopens");
        let found = reopened
            .find(&hash_secret(&minted.secret))
            .expect("found by its secret");
        assert_eq!(found.last6, minted.secret[minted.secret.len() - 6..]);
        assert_eq!(
            reopened.cap_remaining(&found.id, 10),
            Some((40, LimitPeriod::Epoch))
        );
        assert_eq!(
            reopened.cap_remaining(&found.id, 11),
            Some((100, LimitPeriod::Epoch))
        );
        reopened.delete(account, &found.id).expect("deleted");
        assert!(reopened.find(&hash_secret(&minted.secret)).is_none());
        assert!(matches!(
            reopened.delete(Address([4; 20]), &found.id),
            Err(KeyError::NotFound)
        ));
    }

    #[test]
    fn a_keys_week_of_spend_counts_its_last_seven_days_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = KeyStore::open(&dir.path().join("api-keys.json")).expect("opens");
        let minted = store
            .create(
                Address([5; 20]),
                KeyKind::Inference,
                String::new(),
                None,
                None,
                1,
            )
            .expect("created");
        let id = &minted.key.id;
        for (day, cost) in [(100, 1), (100, 2), (103, 10), (106, 100), (107, 1000)] {
            store.record_use(id, day, day * 86_400, 0, cost);
        }
        let key = store.find(&hash_secret(&minted.secret)).expect("found");
        // Days 101 to 107: day 100 has left the week.
        assert_eq!(key.spent_in_week_to(107), 1110);
        // Day 100 was forgotten when day 107 was recorded.
        assert_eq!(key.spent_in_week_to(106), 110);
        assert_eq!(key.spent_in_week_to(120), 0);
        assert!(key.recent_days.len() <= RECENT_DAYS as usize);
        assert_eq!(key.lifetime_units, Units(1113));
        // No limit, no period to count.
        assert_eq!(key.spent_in_period_of(107), 0);
    }
}
