//! Challenges the gateway hands out and later checks, without a table of the ones outstanding:
//! each is a stamp and random bytes authenticated with a key only this gateway holds, so
//! anyone may ask for as many as they like and nothing fills up. A challenge is single use
//! per party (a wallet minting a key, a provider registering): the party's newest stamp
//! used is remembered, and a challenge is taken only if its stamp is newer. What that
//! remembers grows with the parties that proved who they are (a signature over the
//! challenge), never with those that merely asked.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wire::clock::unix_nanos;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of randomness in each challenge, so two are never alike even with equal stamps.
const RANDOM_BYTES: usize = 16;

/// Issues and checks challenges of one purpose (the purpose is bound into each one's MAC, so
/// a challenge for one purpose is refused by another).
pub(crate) struct Challenges {
    key: [u8; 32],
    purpose: &'static str,
    /// Prefix of every challenge's text, so that what a party signs says what it is for.
    prefix: &'static str,
    /// How long a challenge is good for, in nanoseconds.
    ttl_nanos: u64,
    /// The last stamp handed out: stamps strictly increase, so "newer" is well defined.
    last_stamp: AtomicU64,
}

/// Why a challenge was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChallengeError {
    /// Not one of this gateway's challenges (or altered, or for another purpose).
    Unknown,
    Expired,
    /// Its party already used this challenge or a newer one.
    Used,
    /// Too many parties used challenges within their lifetime.
    Busy,
}

impl Challenges {
    /// Challenges prefixed `prefix`, good for `ttl_seconds`, under a fresh random key (a
    /// restart voids those outstanding; their holders ask again).
    pub(crate) fn new(purpose: &'static str, prefix: &'static str, ttl_seconds: u64) -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Self::with_key(purpose, prefix, ttl_seconds, key)
    }

    /// Challenges under `key`: the replicas of a cluster derive the same one, so a challenge
    /// issued by one is checked by any other.
    pub(crate) fn with_key(
        purpose: &'static str,
        prefix: &'static str,
        ttl_seconds: u64,
        key: [u8; 32],
    ) -> Self {
        Self {
            key,
            purpose,
            prefix,
            ttl_nanos: ttl_seconds.saturating_mul(1_000_000_000),
            last_stamp: AtomicU64::new(0),
        }
    }

    /// The MAC of a challenge's stamp and random bytes, under this purpose.
    fn mac(&self, stamp: u64, random: &[u8]) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(self.purpose.as_bytes());
        mac.update(&[0]);
        mac.update(&stamp.to_be_bytes());
        mac.update(random);
        mac
    }

    /// A new challenge and when it expires (Unix seconds).
    pub(crate) fn issue(&self) -> (String, u64) {
        let now = unix_nanos();
        let previous = self
            .last_stamp
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last.saturating_add(1)))
            })
            .unwrap_or_else(|last| last);
        let stamp = now.max(previous.saturating_add(1));
        let mut random = [0u8; RANDOM_BYTES];
        rand::fill(&mut random);
        let mac = self.mac(stamp, &random).finalize().into_bytes();
        let text = format!(
            "{}{stamp:016x}-{}-{}",
            self.prefix,
            hex::encode(random),
            hex::encode(mac)
        );
        (text, stamp.saturating_add(self.ttl_nanos) / 1_000_000_000)
    }

    /// The stamp of `challenge` if it is one of ours, for this purpose, and unexpired.
    pub(crate) fn check(&self, challenge: &str) -> Result<u64, ChallengeError> {
        let rest = challenge
            .strip_prefix(self.prefix)
            .ok_or(ChallengeError::Unknown)?;
        let mut parts = rest.splitn(3, '-');
        let (Some(stamp), Some(random), Some(mac)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ChallengeError::Unknown);
        };
        if stamp.len() != 16 || random.len() != 2 * RANDOM_BYTES || mac.len() != 64 {
            return Err(ChallengeError::Unknown);
        }
        let stamp = u64::from_str_radix(stamp, 16).map_err(|_| ChallengeError::Unknown)?;
        let random = hex::decode(random).map_err(|_| ChallengeError::Unknown)?;
        let presented = hex::decode(mac).map_err(|_| ChallengeError::Unknown)?;
        self.mac(stamp, &random)
            .verify_slice(&presented)
            .map_err(|_| ChallengeError::Unknown)?;
        if unix_nanos() > stamp.saturating_add(self.ttl_nanos) {
            return Err(ChallengeError::Expired);
        }
        Ok(stamp)
    }

    /// How long a challenge lives, in nanoseconds.
    pub(crate) fn ttl_nanos(&self) -> u64 {
        self.ttl_nanos
    }
}

/// The newest challenge stamp each party has used, for as long as such a challenge could
/// still be presented; at most `capacity` parties at once.
pub(crate) struct UsedStamps<Party> {
    used: Mutex<HashMap<Party, u64>>,
    capacity: usize,
}

impl<Party: Eq + Hash + Clone> UsedStamps<Party> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            used: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// Takes `stamp` for `party` if it is newer than any the party used; `ttl_nanos` says
    /// how long stamps stay presentable (older entries are forgotten when room is needed).
    pub(crate) fn take(
        &self,
        party: &Party,
        stamp: u64,
        ttl_nanos: u64,
    ) -> Result<(), ChallengeError> {
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(last) = used.get_mut(party) {
            if stamp <= *last {
                return Err(ChallengeError::Used);
            }
            *last = stamp;
            return Ok(());
        }
        if used.len() >= self.capacity {
            let oldest_presentable = unix_nanos().saturating_sub(ttl_nanos);
            used.retain(|_, last| *last >= oldest_presentable);
            if used.len() >= self.capacity {
                return Err(ChallengeError::Busy);
            }
        }
        used.insert(party.clone(), stamp);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_checks_once_per_party_and_altered_ones_never() {
        let challenges = Challenges::new("test", "test-challenge-", 60);
        let (first, expires) = challenges.issue();
        assert!(expires > unix_nanos() / 1_000_000_000);
        let stamp = challenges.check(&first).expect("ours");
        // Every character of the text is covered: change any one and it is refused.
        for at in "test-challenge-".len()..first.len() {
            let mut altered = first.clone().into_bytes();
            altered[at] = if altered[at] == b'0' { b'1' } else { b'0' };
            let altered = String::from_utf8(altered).expect("ASCII");
            assert_eq!(
                challenges.check(&altered),
                Err(ChallengeError::Unknown),
                "{altered}"
            );
        }
        let other_purpose = Challenges {
            purpose: "other",
            ..Challenges::new("test", "test-challenge-", 60)
        };
        assert_eq!(other_purpose.check(&first), Err(ChallengeError::Unknown));
        let used = UsedStamps::new(4);
        used.take(&"alice", stamp, challenges.ttl_nanos())
            .expect("first use");
        assert_eq!(
            used.take(&"alice", stamp, challenges.ttl_nanos()),
            Err(ChallengeError::Used),
            "a replay is refused"
        );
        // Another party may use its own challenge, and alice a newer one.
        let (second, _) = challenges.issue();
        let newer = challenges.check(&second).expect("ours");
        assert!(newer > stamp, "stamps increase");
        used.take(&"bob", stamp, challenges.ttl_nanos())
            .expect("bob's first");
        used.take(&"alice", newer, challenges.ttl_nanos())
            .expect("a newer one");
    }

    #[test]
    fn an_expired_challenge_is_refused() {
        let challenges = Challenges::new("test", "t-", 0);
        let (challenge, _) = challenges.issue();
        // Zero lifetime: expired as soon as the clock moves past its stamp (nanoseconds).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            match challenges.check(&challenge) {
                Err(ChallengeError::Expired) => break,
                Ok(_) if std::time::Instant::now() < deadline => {}
                other => panic!("a zero-lifetime challenge gave {other:?}"),
            }
        }
    }

    #[test]
    fn parties_are_bounded_and_only_expired_ones_make_room() {
        let used = UsedStamps::new(2);
        let now = unix_nanos();
        used.take(&1, now, 1_000_000_000_000).expect("one");
        used.take(&2, now, 1_000_000_000_000).expect("two");
        assert_eq!(
            used.take(&3, now, 1_000_000_000_000),
            Err(ChallengeError::Busy)
        );
        // With a lifetime that has passed for both, they make room.
        used.take(&3, now + 1, 0).expect("room made");
    }
}
