//! Prompt cache namespaces. A provider's engine reuses a cached prompt prefix only between
//! requests of one namespace, so that no caller can learn from a quick first token that
//! someone else sent a prefix before. The namespace is an HMAC, under a secret of this
//! gateway's, of whom the request is charged to (an account, a configured key, or the
//! anonymous caller of an open gateway), the UTC day, and the client's own
//! `prompt_cache_key`: the provider cannot tell who it stands for, and cannot link one
//! caller's requests across days. A request paid with privacy tokens has no one to charge:
//! it gets a namespace only from a `prompt_cache_key` it sends, which links the requests
//! that share that key (and nothing else) for the day; without one it is not cached. Callers
//! without a key are one caller on a gateway only this machine reaches, and strangers to each
//! other elsewhere: there, they are treated as token holders are.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::auth::Caller;

/// Who a request is charged to, for its cache namespace; `None` for one paid with tokens, or
/// from a caller without a key where such callers do not share a cache.
pub(crate) fn scope(caller: &Caller, tokens: bool, share_anonymous: bool) -> Option<String> {
    match (tokens, caller.account, caller.kind) {
        (true, _, _) => None,
        (false, Some(account), _) => Some(format!("account {account}")),
        (false, None, None) => share_anonymous.then(|| "anonymous".to_owned()),
        (false, None, Some(_)) => Some(format!("key {}", caller.name)),
    }
}

/// The namespace (64 hex digits) of a request charged to `scope`, with the client's `key`, on
/// UTC day `day`; `None` when it is not cached.
pub(crate) fn namespace(
    secret: &[u8; 32],
    scope: Option<&str>,
    key: Option<&str>,
    day: u64,
) -> Option<String> {
    let scope = match (scope, key) {
        (Some(scope), _) => scope,
        (None, Some(_)) => "prompt_cache_key",
        (None, None) => return None,
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(b"gondola prompt cache namespace v1");
    mac.update(&day.to_be_bytes());
    for part in [scope, key.unwrap_or("")] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    Some(hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_part_callers_days_and_keys_and_tokens_need_a_key() {
        let secret = [7u8; 32];
        let alice = namespace(&secret, Some("account a"), None, 1).expect("cached");
        assert_eq!(alice.len(), 64);
        assert_eq!(
            namespace(&secret, Some("account a"), None, 1),
            Some(alice.clone())
        );
        for other in [
            namespace(&secret, Some("account b"), None, 1),
            namespace(&secret, Some("account a"), None, 2),
            namespace(&secret, Some("account a"), Some("conversation"), 1),
            namespace(&[8u8; 32], Some("account a"), None, 1),
            namespace(&secret, None, Some("conversation"), 1),
        ] {
            assert_ne!(other.expect("cached"), alice);
        }
        // Lengths are part of what is signed: no two splits of one string collide.
        assert_ne!(
            namespace(&secret, Some("ab"), Some("c"), 1),
            namespace(&secret, Some("a"), Some("bc"), 1)
        );
        assert_eq!(namespace(&secret, None, None, 1), None);
        let anonymous = Caller {
            name: "anonymous".into(),
            kind: None,
            rate: crate::config::RateLimit {
                requests_per_minute: 1,
                tokens_per_minute: 1,
            },
            account: None,
            key_id: None,
        };
        assert_eq!(scope(&anonymous, false, true).as_deref(), Some("anonymous"));
        assert_eq!(scope(&anonymous, false, false), None);
        let keyed = Caller {
            kind: Some(crate::config::KeyKind::Inference),
            name: "app".into(),
            ..anonymous.clone()
        };
        assert_eq!(scope(&keyed, false, false).as_deref(), Some("key app"));
        assert_eq!(scope(&keyed, true, true), None);
    }
}
