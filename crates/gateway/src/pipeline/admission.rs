//! Admission: who is asking (an API key, privacy tokens or nobody), whether they are blocked,
//! the body read within its bounds, and the caller's per-minute budget for the model. The first
//! stage of every operation; nothing here knows what the operation is.

use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::HeaderMap;
use wire::error::{ApiError, ErrorCode};

use super::{Refusal, Seen, refuse};
use crate::AppState;
use crate::rate_limit::RateStatus;

/// Who is asking, for reads: an API key as [`authenticate`] takes it, or Privacy Pass tokens,
/// which are checked but not spent.
pub(crate) async fn authenticated(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<crate::auth::Caller, ApiError> {
    match presented_tokens(state, headers)? {
        Some(tokens) => {
            state
                .tokens
                .as_ref()
                .ok_or_else(tokens_not_taken)?
                .check(&tokens)
                .await?;
            Ok(crate::auth::Caller::token_holder())
        }
        None => authenticate(state, headers),
    }
}

pub(crate) fn tokens_not_taken() -> ApiError {
    ApiError::new(
        ErrorCode::AuthenticationFailed,
        "this gateway takes no privacy tokens; send an API key",
    )
}

/// The Privacy Pass tokens a request carries instead of an API key, if it does.
pub(crate) fn presented_tokens(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Vec<privacypass::public_tokens::PublicToken>>, ApiError> {
    let Some(value) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return Ok(None);
    };
    match privacy::tokens::parse_authorization(value) {
        Ok(None) => Ok(None),
        Ok(Some(_)) if state.tokens.is_none() => Err(tokens_not_taken()),
        Ok(Some(tokens)) => Ok(Some(tokens)),
        Err(error) => Err(ApiError::new(
            ErrorCode::AuthenticationFailed,
            error.to_string(),
        )),
    }
}

/// Who is asking: a configured key, a key an account created, or an anonymous caller.
pub(crate) fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<crate::auth::Caller, ApiError> {
    let Some(economy) = &state.economy else {
        return state.auth.authenticate(headers);
    };
    let stored_keys_exist = !economy.keys.is_empty();
    state
        .auth
        .authenticate_with(headers, stored_keys_exist, |hash| {
            let key = economy.keys.find(hash)?;
            let now = economy.clock.now();
            if key.expires_at.is_some_and(|expiry| expiry <= now) {
                return Some(Err(ApiError::new(
                    ErrorCode::AuthenticationFailed,
                    "the API key has expired",
                )));
            }
            Some(Ok(crate::auth::Caller {
                name: key.id.clone(),
                kind: Some(key.kind),
                rate: state.tiers.limit_for(""),
                account: Some(key.account.0),
                key_id: Some(key.id),
            }))
        })
}

/// A body over the limit is still read (and thrown away) up to this much, so that a client that
/// is still uploading gets its 413 instead of a reset connection (nginx's "lingering close").
const DRAIN_LIMIT_BYTES: usize = 16 * 1024 * 1024;
/// ...and for at most this long.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Privacy Pass tokens, if the request pays with them.
pub(crate) type Tokens = Option<Vec<privacypass::public_tokens::PublicToken>>;

/// Who is asking, or why they may not: tokens (checked later, against the cost) or an API key,
/// and a caller blocked for too many failed requests.
pub(crate) async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    seen: &mut Seen,
) -> Result<(Tokens, crate::auth::Caller), Refusal> {
    // A request paid with tokens has no caller to limit or block: what it may cost is bounded
    // by the tokens it carries, and how many tokens an account gets by the issuer.
    let tokens = presented_tokens(state, headers).map_err(refuse)?;
    let caller = match &tokens {
        Some(_) => crate::auth::Caller::token_holder(),
        None => authenticate(state, headers).map_err(refuse)?,
    };
    if tokens.is_none() {
        seen.caller = Some(caller.name.clone());
    }
    let blocked = match (&seen.caller, &state.cluster) {
        (None, _) => None,
        (Some(caller), Some(cluster)) => cluster
            .failure_block(caller)
            .await
            .map_err(|error| refuse(error.to_api_error()))?,
        (Some(caller), None) => state.rate.failure_block(caller, Instant::now()),
    };
    if let Some(blocked) = blocked {
        return Err(refuse(
            ApiError::new(
                ErrorCode::RateLimitExceeded,
                "too many failed requests; wait before trying again",
            )
            .with_retry_after(blocked.as_secs().max(1)),
        ));
    }
    Ok((tokens, caller))
}

/// Applies the caller's per-minute budget for `model_id` (none for a request paid with
/// tokens): its status and the limiter's key, or the refusal.
pub(crate) async fn check_rate(
    state: &AppState,
    caller: &crate::auth::Caller,
    paid_with_tokens: bool,
    model_id: &str,
    now: Instant,
) -> Result<(Option<RateStatus>, String), Refusal> {
    // Accounts are limited per model size tier; configured keys and anonymous callers by
    // their own limits.
    let (rate_key, rate_limit, tier) = match caller.account {
        Some(account) => {
            let (tier, limit) = state.tiers.tier_of(model_id);
            (format!("{account}/{tier}"), limit, Some(tier))
        }
        None => (caller.name.clone(), caller.rate, None),
    };
    let rate = match (paid_with_tokens, &state.cluster) {
        (true, _) => None,
        (false, Some(cluster)) => Some(
            cluster
                .rate_check(&rate_key, rate_limit)
                .await
                .map_err(|error| (error.to_api_error(), model_id.to_owned()))?,
        ),
        (false, None) => Some(state.rate.check(&rate_key, rate_limit, now)),
    };
    if let Some(rate) = rate.filter(|rate| !rate.allowed) {
        if let (Some(economy), Some(account), Some(tier)) = (&state.economy, caller.account, tier) {
            let hit = economy::RateLimitHit {
                key_id: caller.key_id.clone(),
                model_id: model_id.to_owned(),
                tier: tier.to_owned(),
                limit_type: if rate.remaining_requests == 0 {
                    "RPM"
                } else {
                    "TPM"
                },
                timestamp_seconds: economy.clock.now(),
            };
            // A cluster keeps the log in its shared store, so any replica shows it.
            match &state.cluster {
                Some(cluster) => {
                    if let Err(error) = cluster.log_refusal(account, &hit).await {
                        tracing::warn!(%error, "a rate-limit refusal was not logged");
                    }
                }
                None => economy.rate_limit_log.record(account, hit),
            }
        }
        return Err((
            ApiError::new(
                ErrorCode::RateLimitExceeded,
                "rate limit exceeded; see the x-ratelimit-* headers",
            )
            .with_retry_after(rate.reset_after.as_secs().max(1)),
            model_id.to_owned(),
        ));
    }
    Ok((rate, rate_key))
}

/// Reads a body of at most `limit` bytes; see [`DRAIN_LIMIT_BYTES`] for what happens beyond.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut chunks = body.into_data_stream();
    let mut collected = bytes::BytesMut::new();
    let mut too_large = false;
    let mut discarded = 0usize;
    let drain_deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    loop {
        let next = if too_large {
            match tokio::time::timeout_at(drain_deadline, chunks.next()).await {
                Ok(next) => next,
                Err(_) => break,
            }
        } else {
            chunks.next().await
        };
        match next {
            None => break,
            Some(Err(_)) if too_large => break,
            Some(Err(error)) => {
                return Err(match server::body_refusal(&error) {
                    Some(server::BodyRefused::ServerFull) => {
                        ApiError::new(ErrorCode::ModelAtCapacity, error.to_string())
                            .with_retry_after(1)
                    }
                    Some(server::BodyRefused::TimedOut) => ApiError::new(
                        ErrorCode::InvalidRequest,
                        "the request body did not arrive in time",
                    ),
                    None => ApiError::new(
                        ErrorCode::InvalidRequest,
                        "the request body could not be read",
                    ),
                });
            }
            Some(Ok(chunk)) if too_large => {
                discarded += chunk.len();
                if discarded > DRAIN_LIMIT_BYTES {
                    break;
                }
            }
            Some(Ok(chunk)) => {
                if collected.len() + chunk.len() > limit {
                    too_large = true;
                    collected = bytes::BytesMut::new();
                } else {
                    collected.extend_from_slice(&chunk);
                }
            }
        }
    }
    if too_large {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes"),
        ));
    }
    Ok(collected.freeze())
}

/// The parts of a multipart body (the boundary from `headers`), read from memory, at most
/// `max_parts`; errors name `param`, and `shape` says what the body should be.
pub(crate) fn multipart_parts(
    headers: &HeaderMap,
    body: &Bytes,
    max_parts: usize,
    param: &str,
    shape: &str,
) -> Result<Vec<wire::transcription::Part>, ApiError> {
    use futures_util::FutureExt as _;
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| ApiError::new(ErrorCode::InvalidContentType, shape))?;
    let body = body.clone();
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let reading = async move {
        let mut parts = Vec::new();
        while let Some(field) = multipart.next_field().await? {
            if parts.len() == max_parts {
                return Ok(None);
            }
            let name = field.name().unwrap_or_default().to_owned();
            let file_name = field.file_name().map(str::to_owned);
            let bytes = field.bytes().await?.to_vec();
            parts.push(wire::transcription::Part {
                name,
                file_name,
                bytes,
            });
        }
        Ok::<_, multer::Error>(Some(parts))
    };
    // The body is in memory: every step is ready at once.
    match reading.now_or_never() {
        Some(Ok(Some(parts))) => Ok(parts),
        Some(Ok(None)) => Err(ApiError::invalid(
            param,
            format!("the body has at most {max_parts} parts"),
        )),
        Some(Err(error)) => Err(ApiError::invalid(
            param,
            format!("the multipart body is not valid: {error}"),
        )),
        None => Err(ApiError::new(
            ErrorCode::Internal,
            "the multipart body could not be read",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthConfig, GatewayConfig, RateLimit};
    use crate::pipeline::testing;

    #[tokio::test]
    async fn a_body_within_its_limit_is_read_whole_and_one_past_it_is_refused_with_413() {
        let read = read_body(Body::from(vec![7u8; 10]), 10)
            .await
            .expect("within the limit");
        assert_eq!(read.len(), 10);
        let refused = read_body(Body::from(vec![7u8; 11]), 10)
            .await
            .expect_err("past the limit");
        assert_eq!(refused.status(), 413);
        assert_eq!(refused.code, ErrorCode::PayloadTooLarge);
    }

    #[tokio::test]
    async fn a_caller_that_failed_too_often_is_refused_before_its_body_is_read() {
        let rate = RateLimit {
            requests_per_minute: 100,
            tokens_per_minute: 100_000,
        };
        let gateway = testing::gateway(GatewayConfig {
            auth: AuthConfig {
                keys: Vec::new(),
                anonymous: Some(rate),
                anonymous_share_prompt_cache: false,
            },
            ..GatewayConfig::default()
        });
        let state = testing::state(&gateway);
        let mut seen = Seen::default();
        let (tokens, caller) = admit(state, &HeaderMap::new(), &mut seen)
            .await
            .expect("anonymous is let in");
        assert!(tokens.is_none());
        assert_eq!(seen.caller.as_deref(), Some("anonymous"));
        let tiers = &state.tiers;
        for _ in 0..tiers.failure_budget {
            state.rate.record_failure(
                &caller.name,
                tiers.failure_budget,
                tiers.failure_window,
                Instant::now(),
            );
        }
        let Err((error, model)) = admit(state, &HeaderMap::new(), &mut Seen::default()).await
        else {
            panic!("a blocked caller was let in");
        };
        assert_eq!(error.status(), 429);
        assert_eq!(model, "unknown");
        assert!(error.retry_after_s.is_some_and(|seconds| seconds >= 1));
    }

    #[tokio::test]
    async fn the_per_minute_budget_counts_requests_per_caller_and_refuses_past_it() {
        let gateway = testing::gateway(GatewayConfig::default());
        let state = testing::state(&gateway);
        let caller = crate::auth::Caller {
            name: "app".into(),
            kind: None,
            rate: RateLimit {
                requests_per_minute: 2,
                tokens_per_minute: 1_000_000,
            },
            account: None,
            key_id: None,
        };
        let now = Instant::now();
        for remaining in [1, 0] {
            let (status, key) = check_rate(state, &caller, false, "m", now)
                .await
                .expect("within");
            assert_eq!(key, "app");
            assert_eq!(
                status.map(|status| status.remaining_requests),
                Some(remaining)
            );
        }
        let Err((error, model)) = check_rate(state, &caller, false, "m", now).await else {
            panic!("a request past the budget was let in");
        };
        assert_eq!((error.status(), model.as_str()), (429, "m"));
        // A request paid with tokens has no caller to count.
        let (status, _) = check_rate(state, &caller, true, "m", now)
            .await
            .expect("tokens");
        assert!(status.is_none());
    }
}
