//! API key authentication. Keys are known only by their SHA-256; a presented key is hashed and
//! compared against every known hash in constant time, so timing reveals nothing of a secret.

use http::HeaderMap;
use subtle::ConstantTimeEq;
use wire::error::{ApiError, ErrorCode};

use crate::config::{AuthConfig, KeyKind, RateLimit};

/// Who is asking: a named key, or an anonymous client.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's name (or `anonymous`), used for rate limiting; never the secret.
    pub name: String,
    pub kind: Option<KeyKind>,
    pub rate: RateLimit,
    /// The ledger account a key belongs to; `None` for configured keys and anonymous callers,
    /// which are not metered.
    pub account: Option<ledger::Address>,
    /// The stored key's id (for spend caps and last use).
    pub key_id: Option<String>,
}

/// The name a caller paying with tokens goes by.
const TOKEN_HOLDER: &str = "private-token";

impl Caller {
    /// Whether this caller holds the operator's powers (listing providers, moving the clock,
    /// creating keys for any account): only a configured ADMIN key does. An account's ADMIN
    /// key manages that account's keys and nothing more, however it was made.
    pub(crate) fn is_operator(&self) -> bool {
        self.kind == Some(KeyKind::Admin) && self.account.is_none()
    }

    /// Whom what this caller starts (a video job) belongs to: its account, or its configured
    /// key; nobody for an anonymous caller or one paying with tokens, whose jobs are held by
    /// whoever holds their ids.
    pub(crate) fn owner(&self) -> String {
        match (self.account, &self.kind) {
            (Some(account), _) => format!("account {account}"),
            (None, Some(_)) if self.name != TOKEN_HOLDER => format!("key {}", self.name),
            _ => String::new(),
        }
    }

    /// A request paid with Privacy Pass tokens: no key, no account, no name.
    pub(crate) fn token_holder() -> Self {
        Self {
            name: TOKEN_HOLDER.into(),
            kind: Some(KeyKind::Inference),
            rate: RateLimit {
                requests_per_minute: u32::MAX,
                tokens_per_minute: u64::MAX,
            },
            account: None,
            key_id: None,
        }
    }
}

pub struct Authenticator {
    config: AuthConfig,
}

/// Hash of a key secret, as the configuration and the key table store it.
pub use economy::hash_secret;

impl Authenticator {
    pub fn new(config: AuthConfig) -> Self {
        Self { config }
    }

    /// Authenticates against the configured keys only.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        self.authenticate_with(headers, false, |_| None)
    }

    /// Authenticates against the configured keys, then `stored` (the keys accounts created):
    /// `stored` answers a presented secret's SHA-256 with its caller, if any.
    pub fn authenticate_with(
        &self,
        headers: &HeaderMap,
        stored_keys_exist: bool,
        stored: impl FnOnce(&[u8; 32]) -> Option<Result<Caller, ApiError>>,
    ) -> Result<Caller, ApiError> {
        // With no keys at all there is nothing to check a key against: clients that must send
        // one (the OpenAI SDKs always do) are served anonymously, if that is allowed.
        if self.config.keys.is_empty()
            && !stored_keys_exist
            && let Some(rate) = self.config.anonymous
        {
            return Ok(Caller {
                name: "anonymous".into(),
                kind: None,
                rate,
                account: None,
                key_id: None,
            });
        }
        let presented = headers
            .get(http::header::AUTHORIZATION)
            .map(|value| value.to_str().unwrap_or_default())
            .map(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
                    .unwrap_or(value)
                    .trim()
            });
        let Some(presented) = presented.filter(|key| !key.is_empty()) else {
            return match self.config.anonymous {
                Some(rate) => Ok(Caller {
                    name: "anonymous".into(),
                    kind: None,
                    rate,
                    account: None,
                    key_id: None,
                }),
                None => Err(ApiError::new(
                    ErrorCode::AuthenticationFailed,
                    "an API key is required: send Authorization: Bearer <key>",
                )),
            };
        };
        let hash = hash_secret(presented);
        // Every key is compared, match or not, so the time taken does not depend on which one.
        let mut found = None;
        for key in &self.config.keys {
            if bool::from(key.secret_sha256.ct_eq(&hash)) {
                found = Some(key);
            }
        }
        if found.is_none()
            && let Some(caller) = stored(&hash)
        {
            return caller;
        }
        found
            .map(|key| Caller {
                name: key.name.clone(),
                kind: Some(key.kind),
                rate: key.rate,
                account: None,
                key_id: None,
            })
            .ok_or_else(|| {
                ApiError::new(ErrorCode::AuthenticationFailed, "the API key is not valid")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKey;

    fn authenticator(anonymous: bool) -> Authenticator {
        let rate = RateLimit {
            requests_per_minute: 10,
            tokens_per_minute: 1000,
        };
        Authenticator::new(AuthConfig {
            keys: vec![ApiKey {
                name: "ops".into(),
                kind: KeyKind::Admin,
                secret_sha256: hash_secret("sk-right"),
                rate,
            }],
            anonymous: anonymous.then_some(rate),
            anonymous_share_prompt_cache: false,
        })
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value.parse().expect("header"));
        headers
    }

    #[test]
    fn a_known_key_is_accepted_and_others_refused() {
        let auth = authenticator(false);
        let caller = auth
            .authenticate(&headers("Bearer sk-right"))
            .expect("valid key");
        assert_eq!(
            (caller.name.as_str(), caller.kind),
            ("ops", Some(KeyKind::Admin))
        );
        assert_eq!(
            auth.authenticate(&headers("Bearer sk-wrong"))
                .expect_err("bad key")
                .status(),
            401
        );
        assert_eq!(
            auth.authenticate(&HeaderMap::new())
                .expect_err("no key")
                .status(),
            401
        );
    }

    #[test]
    fn without_configured_keys_any_key_is_served_anonymously() {
        let rate = RateLimit {
            requests_per_minute: 1,
            tokens_per_minute: 1,
        };
        let open = Authenticator::new(AuthConfig {
            keys: Vec::new(),
            anonymous: Some(rate),
            anonymous_share_prompt_cache: false,
        });
        assert_eq!(
            open.authenticate(&headers("Bearer sk-anything"))
                .expect("anonymous")
                .name,
            "anonymous"
        );
        let closed = Authenticator::new(AuthConfig {
            keys: Vec::new(),
            anonymous: None,
            anonymous_share_prompt_cache: false,
        });
        assert_eq!(
            closed
                .authenticate(&headers("Bearer sk-anything"))
                .expect_err("no access")
                .status(),
            401
        );
    }

    #[test]
    fn anonymous_access_only_when_allowed_and_a_bad_key_is_still_refused() {
        let auth = authenticator(true);
        assert_eq!(
            auth.authenticate(&HeaderMap::new())
                .expect("anonymous")
                .name,
            "anonymous"
        );
        assert!(auth.authenticate(&headers("Bearer nope")).is_err());
    }
}
