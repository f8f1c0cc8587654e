//! Dispatch: a provider for the request's model (power of two choices among the live,
//! unbroken, non-full ones), and failover to another while nothing has reached the client. An
//! operation says how one provider is tried; this module says which, how many times, and what
//! each failure means for the provider's breaker.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use wire::error::{ApiError, ErrorCode, ErrorSource};

use crate::AppState;
use crate::metrics::AttemptLabels;
use crate::registry::{Attempt, NoProvider, Provider};

/// Most of a provider's error body that is read to learn what went wrong.
const MAX_PROVIDER_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Tries providers of `model_id` (only those in `allowed`, when given) with `try_one` until
/// one succeeds, the request itself is refused, or attempts run out: the provider, how many
/// attempts it took, and what `try_one` returned. Each attempt is counted in the metrics and
/// a fault against the provider's breaker.
pub(crate) async fn dispatch_with<T, Tried>(
    state: &Arc<AppState>,
    model_id: &str,
    allowed: Option<&[String]>,
    mut try_one: impl FnMut(Arc<Provider>) -> Tried,
) -> Result<(Attempt, u32, T), ApiError>
where
    Tried: std::future::Future<Output = Result<T, Failure>>,
{
    let limits = &state.config.limits;
    let mut tried: Vec<String> = Vec::new();
    let mut last_error: Option<ApiError> = None;
    for attempt_number in 0..limits.max_attempts.max(1) {
        let attempt = match state
            .registry
            .choose(model_id, allowed, &tried, Instant::now())
        {
            Ok(attempt) => attempt,
            Err(reason) => {
                return Err(last_error.unwrap_or_else(|| match (reason, allowed) {
                    (NoProvider::Offline, None) => ApiError::new(
                        ErrorCode::ModelOffline,
                        format!("no provider is serving {model_id} right now"),
                    )
                    .with_retry_after(5),
                    (NoProvider::Offline, Some(_)) => ApiError::new(
                        ErrorCode::ModelOffline,
                        format!(
                            "none of the providers the request is sealed to serves \
                             {model_id} right now; fetch {} and seal it again",
                            wire::sealed::PROVIDERS_PATH
                        ),
                    )
                    .with_retry_after(1),
                    (NoProvider::Unavailable, None) => ApiError::new(
                        ErrorCode::ModelAtCapacity,
                        format!("every provider of {model_id} is busy"),
                    )
                    .with_retry_after(1),
                    (NoProvider::Unavailable, Some(_)) => ApiError::new(
                        ErrorCode::ModelAtCapacity,
                        "every provider the request is sealed to is busy",
                    )
                    .with_retry_after(1),
                }));
            }
        };
        if attempt_number > 0 {
            state.metrics.failovers.inc();
        }
        tried.push(attempt.provider.id.clone());
        let outcome = try_one(Arc::clone(&attempt.provider)).await;
        let label = match &outcome {
            Ok(_) => "ok",
            Err(failure) => match failure.kind {
                FailureKind::Busy => "busy",
                FailureKind::Fault => "fault",
                FailureKind::Refused => "refused",
            },
        };
        state
            .metrics
            .provider_attempts
            .get_or_create(&AttemptLabels {
                provider: attempt.provider.id.clone(),
                outcome: label,
            })
            .inc();
        match outcome {
            Ok(value) => {
                state.registry.record_success(&attempt.provider);
                return Ok((attempt, attempt_number + 1, value));
            }
            Err(failure) => {
                tracing::debug!(provider = %attempt.provider.id, outcome = label, code = failure.error.code.as_str(), "provider attempt failed");
                match failure.kind {
                    FailureKind::Refused => return Err(failure.error),
                    FailureKind::Fault => state
                        .registry
                        .record_failure(&attempt.provider, Instant::now()),
                    FailureKind::Busy => {}
                }
                last_error = Some(failure.error);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| {
        ApiError::new(
            ErrorCode::ModelAtCapacity,
            "no provider could take the request",
        )
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// The provider is full: try another, but it is not broken.
    Busy,
    /// The provider failed: try another and count it against its breaker.
    Fault,
    /// The request is at fault: no other provider would do better.
    Refused,
}

pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    pub(crate) error: ApiError,
}

impl Failure {
    pub(crate) fn fault(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Fault,
            error: ApiError::new(code, message).with_source(ErrorSource::Upstream),
        }
    }
}

/// Sends `body` to `path` at `provider` with its lease secret and `headers`: its
/// successful response, or the failure that says whether to try elsewhere.
pub(crate) async fn send_to_provider(
    state: &AppState,
    provider: &Provider,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    deadline: tokio::time::Instant,
) -> Result<reqwest::Response, Failure> {
    let url = format!("{}{path}", provider.endpoint.trim_end_matches('/'));
    let mut request = state
        .http
        .get()
        .post(url)
        .bearer_auth(&provider.lease_token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = match tokio::time::timeout_at(deadline, request.body(body).send()).await {
        Err(_) => {
            return Err(Failure::fault(
                ErrorCode::RequestTimeout,
                "the provider did not answer in time",
            ));
        }
        Ok(Err(error)) => {
            let what = if error.is_connect() {
                "could not be reached"
            } else {
                "failed"
            };
            return Err(Failure::fault(
                ErrorCode::UpstreamError,
                format!("the provider {what}"),
            ));
        }
        Ok(Ok(response)) => response,
    };
    if !response.status().is_success() {
        return Err(provider_error(response, deadline).await);
    }
    Ok(response)
}

/// Reads a provider's whole answer, at most `limit` bytes, before `deadline`: a fault
/// otherwise (`what` names the answer in the error).
pub(crate) async fn read_whole(
    response: reqwest::Response,
    deadline: tokio::time::Instant,
    limit: usize,
    what: &str,
) -> Result<Vec<u8>, Failure> {
    let mut reply = Vec::new();
    let mut chunks = response.bytes_stream();
    loop {
        match tokio::time::timeout_at(deadline, chunks.next()).await {
            Err(_) => {
                return Err(Failure::fault(
                    ErrorCode::RequestTimeout,
                    format!("the provider did not finish {what} in time"),
                ));
            }
            Ok(None) => return Ok(reply),
            Ok(Some(Err(_))) => {
                return Err(Failure::fault(
                    ErrorCode::UpstreamError,
                    "the provider's answer broke off",
                ));
            }
            Ok(Some(Ok(chunk))) => {
                if reply.len() + chunk.len() > limit {
                    return Err(Failure::fault(
                        ErrorCode::UpstreamError,
                        format!("the provider's {what} is larger than allowed"),
                    ));
                }
                reply.extend_from_slice(&chunk);
            }
        }
    }
}

/// Reads a provider's error answer: its status says whether to try elsewhere.
pub(crate) async fn provider_error(
    response: reqwest::Response,
    deadline: tokio::time::Instant,
) -> Failure {
    let status = response.status().as_u16();
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, chunks.next()).await {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_PROVIDER_ERROR_BODY_BYTES {
            break;
        }
    }
    let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let error = parsed.as_ref().and_then(|value| value.get("error"));
    let message = error
        .and_then(|error| error.get("message").or(Some(error)))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("the provider failed")
        .to_owned();
    let code = error
        .and_then(|error| error.get("code"))
        .and_then(serde_json::Value::as_str)
        .and_then(ErrorCode::parse);
    let param = error
        .and_then(|error| error.get("param"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    match status {
        429 | 503 => Failure {
            kind: FailureKind::Busy,
            error: ApiError::new(code.unwrap_or(ErrorCode::ModelAtCapacity), message)
                .with_source(ErrorSource::Upstream)
                .with_retry_after(1),
        },
        401 | 403 => Failure::fault(
            ErrorCode::UpstreamError,
            "the provider refused the gateway's lease",
        ),
        400..=499 => {
            let mut error = ApiError::new(code.unwrap_or(ErrorCode::InvalidRequest), message)
                .with_source(ErrorSource::Client);
            error.param = param;
            Failure {
                kind: FailureKind::Refused,
                error,
            }
        }
        _ => Failure::fault(
            code.filter(|code| code.status() >= 500)
                .unwrap_or(ErrorCode::UpstreamError),
            message,
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::config::GatewayConfig;
    use crate::pipeline::testing;

    /// Runs `dispatch_with` over providers `ids` of model `m`, answering each attempt with
    /// `outcome(attempt number)`: the result and the providers tried, in order.
    async fn dispatch(
        ids: &[&str],
        outcome: impl Fn(usize) -> Result<(), FailureKind> + Send + Sync,
    ) -> (
        Result<(Attempt, u32, String), ApiError>,
        Vec<String>,
        crate::Gateway,
    ) {
        let gateway = testing::gateway(GatewayConfig::default());
        let state = Arc::clone(testing::state(&gateway));
        for id in ids {
            testing::provider(&state, id, "m", 8);
        }
        let tried = Mutex::new(Vec::new());
        let result = dispatch_with(&state, "m", None, |provider| {
            let number = {
                let mut tried = tried.lock().expect("lock");
                tried.push(provider.id.clone());
                tried.len() - 1
            };
            let outcome = outcome(number);
            async move {
                match outcome {
                    Ok(()) => Ok(provider.id.clone()),
                    Err(kind) => Err(Failure {
                        kind,
                        error: ApiError::new(ErrorCode::UpstreamError, "a fault"),
                    }),
                }
            }
        })
        .await;
        let tried = tried.into_inner().expect("lock");
        (result, tried, gateway)
    }

    /// Attempts on `provider` that ended in `outcome`, as the metrics count them.
    fn counted(gateway: &crate::Gateway, provider: &str, outcome: &'static str) -> u64 {
        testing::state(gateway)
            .metrics
            .provider_attempts
            .get_or_create(&AttemptLabels {
                provider: provider.to_owned(),
                outcome,
            })
            .get()
    }

    #[tokio::test]
    async fn a_fault_moves_the_request_to_another_provider_and_counts_against_the_first() {
        let (result, tried, gateway) = dispatch(&["a", "b"], |number| {
            if number == 0 {
                Err(FailureKind::Fault)
            } else {
                Ok(())
            }
        })
        .await;
        let (attempt, attempts, served_by) = result.expect("served by the second");
        assert_eq!(attempts, 2);
        assert_eq!(tried.len(), 2);
        assert_ne!(tried[0], tried[1], "a provider is tried once per request");
        assert_eq!(served_by, tried[1]);
        assert_eq!(attempt.provider.id, tried[1]);
        assert_eq!(counted(&gateway, &tried[0], "fault"), 1);
        assert_eq!(counted(&gateway, &tried[1], "ok"), 1);
        assert_eq!(testing::state(&gateway).metrics.failovers.get(), 1);
    }

    #[tokio::test]
    async fn a_request_the_provider_refuses_is_not_tried_elsewhere() {
        let (result, tried, _gateway) = dispatch(&["a", "b"], |_| Err(FailureKind::Refused)).await;
        assert_eq!(
            result.err().map(|error| error.code),
            Some(ErrorCode::UpstreamError)
        );
        assert_eq!(tried.len(), 1);
    }

    #[tokio::test]
    async fn a_busy_provider_is_passed_over_without_a_mark_on_its_breaker() {
        let (result, tried, gateway) = dispatch(&["a", "b"], |number| {
            if number == 0 {
                Err(FailureKind::Busy)
            } else {
                Ok(())
            }
        })
        .await;
        result.expect("served by the second");
        assert_eq!(counted(&gateway, &tried[0], "busy"), 1);
        let views = testing::state(&gateway).registry.views(Instant::now());
        assert!(
            views.iter().all(|view| view.breaker == "closed"),
            "{views:?}"
        );
    }

    #[tokio::test]
    async fn attempts_are_bounded_whatever_the_number_of_providers() {
        let (result, tried, gateway) =
            dispatch(&["a", "b", "c", "d", "e"], |_| Err(FailureKind::Fault)).await;
        assert!(result.is_err());
        let max_attempts = testing::state(&gateway).config.limits.max_attempts;
        assert_eq!(tried.len(), max_attempts as usize);
    }

    #[tokio::test]
    async fn a_model_nobody_serves_is_offline_and_a_full_one_at_capacity() {
        let (result, tried, _gateway) = dispatch(&[], |_| Ok(())).await;
        assert_eq!(
            result.err().map(|error| error.code),
            Some(ErrorCode::ModelOffline)
        );
        assert!(tried.is_empty());
        let full = testing::gateway(GatewayConfig::default());
        let state = Arc::clone(testing::state(&full));
        testing::provider(&state, "full", "m", 1);
        let held = state
            .registry
            .choose("m", None, &[], Instant::now())
            .expect("its one place");
        let refused = dispatch_with(&state, "m", None, |provider| async move {
            Ok::<_, Failure>(provider.id.clone())
        })
        .await;
        assert_eq!(
            refused.err().map(|error| error.code),
            Some(ErrorCode::ModelAtCapacity)
        );
        drop(held);
    }
}
