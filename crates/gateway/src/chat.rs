//! `POST /chat/completions`: validate, choose a provider, fail over until the first token, then
//! relay the stream chunk by chunk (or gather it for a non-streaming reply).
//!
//! The request a provider receives is rebuilt from parsed fields only: no client header,
//! address, key or `user` field reaches it, and it carries a fresh random request id. Nothing
//! here logs or stores content; the log line of a request holds ids, model, provider, sizes,
//! status and timings.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
use wire::chat::{
    ChatCompletion, ChatCompletionChunk, ChatRequest, Choice, Cost, Message, ProviderChatRequest,
    ResponseMessage, Role, Usage,
};
use wire::error::{ApiError, Dialect, ErrorCode, ErrorSource};
use wire::money::Amount;
use wire::provider::PROVIDER_CHAT_PATH;
use wire::sse::{SseEvent, SseParser};

use crate::metrics::{AttemptLabels, ModelLabels, RequestLabels, TokenLabels};
use crate::rate_limit::RateStatus;
use crate::registry::{Attempt, NoProvider, Provider};
use crate::settlement::{self, Tally, UsageBound};
use crate::thinking::ThinkingFilter;
use crate::{AppState, error_response};

/// Leading chunks with nothing in them (a bare role announcement) that are held back while
/// waiting for the first token; a provider sending more than this before any text is faulty.
const MAX_EMPTY_LEADING_CHUNKS: usize = 8;
/// A body over the limit is still read (and thrown away) up to this much, so that a client that
/// is still uploading gets its 413 instead of a reset connection (nginx's "lingering close").
const DRAIN_LIMIT_BYTES: usize = 16 * 1024 * 1024;
/// ...and for at most this long.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Most of a provider's error body that is read to learn what went wrong.
const MAX_PROVIDER_ERROR_BODY_BYTES: usize = 64 * 1024;
/// Most bytes of events gathered into one frame of a streamed reply.
const MAX_FRAME_BYTES: usize = 64 * 1024;

pub(crate) type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

pub(crate) async fn handle(
    state: Arc<AppState>,
    dialect: Dialect,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let request_id = format!("chatcmpl-{}", random_hex(12));
    let mut rate = None;
    let mut seen = Seen::default();
    match serve(
        &state,
        &headers,
        body,
        &request_id,
        started,
        &mut rate,
        &mut seen,
    )
    .await
    {
        Ok(response) => response,
        Err((error, model)) => refused(
            &state,
            dialect,
            "chat",
            &request_id,
            started,
            &error,
            model,
            rate,
            &seen,
        ),
    }
}

/// The response to a refused request (`route` is its metric label), after counting it: a
/// failure against the caller, the metric, the log line; with the rate, balance and
/// tokens-required headers of what `seen` learned.
#[expect(
    clippy::too_many_arguments,
    reason = "one argument per thing a refusal reports"
)]
pub(crate) fn refused(
    state: &AppState,
    dialect: Dialect,
    route: &'static str,
    request_id: &str,
    started: Instant,
    error: &ApiError,
    model: String,
    rate: Option<RateStatus>,
    seen: &Seen,
) -> Response {
    let status = error.status();
    if let Some(caller) = &seen.caller
        && (400..500).contains(&status)
        && status != 429
    {
        let tiers = &state.tiers;
        state.rate.record_failure(
            caller,
            tiers.failure_budget,
            tiers.failure_window,
            Instant::now(),
        );
    }
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            model,
            status,
        })
        .inc();
    tracing::info!(
        request_id = %request_id,
        route,
        status,
        code = error.code.as_str(),
        duration_ms = started.elapsed().as_millis() as u64,
        "request refused"
    );
    let mut response = error_response(error, dialect);
    if let Some(rate) = rate {
        insert_rate_headers(response.headers_mut(), &rate);
    }
    if let Some(balance) = seen.balance {
        insert_balance_headers(response.headers_mut(), &balance);
    }
    if let Some(required) = seen.tokens_required {
        insert_header(
            response.headers_mut(),
            privacy::tokens::TOKENS_REQUIRED_HEADER,
            &required.to_string(),
        );
    }
    response
}

/// What the error path needs to know of a request that got far enough.
#[derive(Default)]
pub(crate) struct Seen {
    /// The rate-limit identity of an authenticated caller.
    pub(crate) caller: Option<String>,
    /// The account's balance before the request.
    pub(crate) balance: Option<economy::meter::Balance>,
    /// How many tokens the request needs, when it carried too few.
    pub(crate) tokens_required: Option<u128>,
}

pub(crate) fn insert_balance_headers(headers: &mut HeaderMap, balance: &economy::meter::Balance) {
    insert_header(
        headers,
        "x-venice-balance-diem",
        &Amount(balance.free.allowance).to_decimal_string(),
    );
    insert_header(
        headers,
        "x-venice-balance-usd",
        &Amount(balance.free.usd).to_decimal_string(),
    );
}

pub(crate) type Refusal = (ApiError, String);

pub(crate) fn refuse(error: ApiError) -> Refusal {
    (error, "unknown".to_owned())
}

/// Privacy Pass tokens, if the request pays with them.
pub(crate) type Tokens = Option<Vec<privacypass::public_tokens::PublicToken>>;

/// Who is asking, or why they may not: tokens (checked later, against the cost) or an API key,
/// and a caller blocked for too many failed requests.
pub(crate) fn admit(
    state: &AppState,
    headers: &HeaderMap,
    seen: &mut Seen,
) -> Result<(Tokens, crate::auth::Caller), Refusal> {
    // A request paid with tokens has no caller to limit or block: what it may cost is bounded
    // by the tokens it carries, and how many tokens an account gets by the issuer.
    let tokens = crate::presented_tokens(state, headers).map_err(refuse)?;
    let caller = match &tokens {
        Some(_) => crate::auth::Caller::token_holder(),
        None => crate::authenticate(state, headers).map_err(refuse)?,
    };
    if tokens.is_none() {
        seen.caller = Some(caller.name.clone());
    }
    if let Some(blocked) = seen
        .caller
        .as_ref()
        .and_then(|caller| state.rate.failure_block(caller, Instant::now()))
    {
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
pub(crate) fn check_rate(
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
    let rate = (!paid_with_tokens).then(|| state.rate.check(&rate_key, rate_limit, now));
    if let Some(rate) = rate.filter(|rate| !rate.allowed) {
        if let (Some(economy), Some(account), Some(tier)) = (&state.economy, caller.account, tier) {
            economy.rate_limit_log.record(
                account,
                economy::RateLimitHit {
                    key_id: caller.key_id.clone(),
                    model_id: model_id.to_owned(),
                    tier: tier.to_owned(),
                    limit_type: if rate.remaining_requests == 0 {
                        "RPM"
                    } else {
                        "TPM"
                    },
                    timestamp_seconds: economy.clock.now(),
                },
            );
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

async fn serve(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    request_id: &str,
    started: Instant,
    rate_out: &mut Option<RateStatus>,
    seen: &mut Seen,
) -> Result<Response, Refusal> {
    let limits = &state.config.limits;
    let (tokens, caller) = admit(state, headers, seen)?;
    if let Some(content_type) = headers.get(http::header::CONTENT_TYPE) {
        let content_type = content_type
            .to_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        // `curl -d` labels bodies as form data by default; a JSON body under that label is
        // still JSON. Types that are clearly something else are refused.
        let json_like = ["json", "text/plain", "application/x-www-form-urlencoded"]
            .iter()
            .any(|kind| content_type.contains(kind));
        if !json_like {
            return Err(refuse(ApiError::new(
                ErrorCode::InvalidContentType,
                "the request body must be JSON (Content-Type: application/json)",
            )));
        }
    }
    let body = read_body(body, limits.max_body_bytes)
        .await
        .map_err(refuse)?;
    let request = ChatRequest::parse(&body).map_err(refuse)?;
    if request.messages.len() > limits.max_messages {
        return Err(refuse(ApiError::invalid(
            "messages",
            format!(
                "at most {} messages are allowed per request",
                limits.max_messages
            ),
        )));
    }
    if let Some(max_tokens) = request
        .max_tokens
        .filter(|max| *max > limits.max_output_tokens)
    {
        return Err(refuse(
            ApiError::new(
                ErrorCode::TooManyTokens,
                format!(
                    "max_tokens is {max_tokens}; this server allows at most {}",
                    limits.max_output_tokens
                ),
            )
            .with_param("max_tokens"),
        ));
    }
    let now = Instant::now();
    let live = state.registry.live_models(now);
    let resolved = state
        .catalogue
        .resolve(&request.model, &live)
        .ok_or_else(|| {
            refuse(
                ApiError::new(
                    ErrorCode::ModelNotFound,
                    format!(
                        "model {:?} is not served here; GET /v1/models lists the models",
                        request.model
                    ),
                )
                .with_param("model"),
            )
        })?;
    let model_id = resolved.model_id;
    let model_name = live
        .get(&model_id)
        .map_or_else(|| model_id.clone(), |(advert, _)| advert.name.clone());
    let (rate, rate_key) = check_rate(state, &caller, tokens.is_some(), &model_id, now)?;
    *rate_out = rate;
    let system_prompt_bytes = if request.venice.include_venice_system_prompt {
        state.config.system_prompt.len()
    } else {
        0
    };
    let bound = UsageBound::for_chat(
        body.len(),
        request.messages.len(),
        system_prompt_bytes,
        request.max_tokens.unwrap_or(limits.max_output_tokens),
    );
    let pricing = state.catalogue.pricing(&model_id);
    let max_cost = bound.max_cost(pricing);
    let (reservation, metering) = pay(state, &tokens, &caller, max_cost, &model_id, seen).await?;
    let provider_request = provider_request(state, &request, &model_id);
    let prompt_estimate = settlement::estimate_prompt_tokens(
        provider_request
            .messages
            .iter()
            .map(|message| message.content.len())
            .sum(),
    );
    let provider_body = Bytes::from(serde_json::to_vec(&provider_request).map_err(|_| {
        (
            ApiError::new(
                ErrorCode::Internal,
                "the provider request could not be encoded",
            ),
            model_id.clone(),
        )
    })?);
    let committed = dispatch(state, &model_id, provider_body)
        .await
        .map_err(|error| (error, model_id.clone()))?;
    // A provider has the request: its tokens are spent for good (until now a failure
    // released them, so the client may send them again).
    if let Some(reservation) = reservation {
        reservation.commit().await.map_err(|error| {
            tracing::error!(error = %error, "cannot record spent tokens");
            (
                crate::tokens::Refusal::Unavailable.to_api_error(),
                model_id.clone(),
            )
        })?;
    }
    let balance = metering.as_ref().map(|metering| metering.balance);
    let relay = Relay {
        state: Arc::clone(state),
        // A request paid with tokens has no caller whose limit it counts against.
        rate_key: rate.is_some().then_some(rate_key),
        metering,
        request_id: request_id.to_owned(),
        model_id: model_id.clone(),
        created: unix_seconds(),
        include_usage: request.include_usage,
        strip_thinking: request.venice.strip_thinking_response || request.venice.disable_thinking,
        thinking: ThinkingFilter::default(),
        pending: committed.first_chunks.into(),
        upstream: Some(committed.stream),
        attempt: committed.attempt,
        attempts: committed.attempts,
        started,
        first_token_at: None,
        tally: Tally::new(bound, prompt_estimate),
        pricing,
        max_cost,
        finish_reason: None,
        sent_role: false,
        outcome: Outcome::Unfinished,
        paid_with: match (&tokens, caller.account) {
            (Some(_), _) => "tokens",
            (None, Some(_)) => "account",
            (None, None) => "none",
        },
    };
    let mut response = if request.stream {
        stream_response(relay)
    } else {
        complete_response(relay, request.venice.echo())
            .await
            .map_err(|error| (error, model_id.clone()))?
    };
    let headers = response.headers_mut();
    insert_header(headers, "x-venice-model-id", &model_id);
    insert_header(headers, "x-venice-model-name", &model_name);
    insert_header(headers, "x-request-id", request_id);
    if let Some(rate) = &rate {
        insert_rate_headers(headers, rate);
    }
    if let Some(balance) = balance {
        insert_balance_headers(headers, &balance);
    }
    Ok(response)
}

/// Takes payment for a request that may cost up to `max_cost`: reserves its tokens, or
/// reserves the amount on the caller's account (callers without one pay nothing).
pub(crate) async fn pay(
    state: &AppState,
    tokens: &Tokens,
    caller: &crate::auth::Caller,
    max_cost: u128,
    model_id: &str,
    seen: &mut Seen,
) -> Result<
    (
        Option<crate::tokens::spent::Reservation>,
        Option<economy::Metering>,
    ),
    Refusal,
> {
    let reservation = match tokens {
        Some(tokens) => Some(
            redeem(state, tokens, max_cost, seen)
                .await
                .map_err(|error| (error, model_id.to_owned()))?,
        ),
        None => None,
    };
    let metering = match (&state.economy, caller.account) {
        (Some(economy), Some(account)) => {
            match economy::Metering::begin(economy, account, caller.key_id.as_deref(), max_cost) {
                Ok(metering) => {
                    seen.balance = Some(metering.balance);
                    Some(metering)
                }
                Err(refusal) => return Err((metering_error(refusal, seen), model_id.to_owned())),
            }
        }
        _ => None,
    };
    Ok((reservation, metering))
}

/// Checks the tokens a request carries and reserves them: enough of them to pay `max_cost`,
/// each valid for today and unspent.
pub(crate) async fn redeem(
    state: &AppState,
    tokens: &[privacypass::public_tokens::PublicToken],
    max_cost: u128,
    seen: &mut Seen,
) -> Result<crate::tokens::spent::Reservation, ApiError> {
    let issuer = state.tokens.as_ref().ok_or_else(crate::tokens_not_taken)?;
    let value = issuer.token_value();
    let required = max_cost.div_ceil(value).max(1);
    let sent = u128::try_from(tokens.len()).unwrap_or(u128::MAX);
    if sent < required {
        seen.tokens_required = Some(required);
        return Err(ApiError::new(
            ErrorCode::InsufficientBalance,
            format!(
                "this request may cost up to ${}, {required} tokens of ${} each; it carried \
                 {sent} (lower max_tokens to need fewer)",
                Amount(max_cost).to_decimal_string(),
                Amount(value).to_decimal_string(),
            ),
        ));
    }
    issuer
        .redeem(tokens)
        .await
        .map_err(|refusal| refusal.to_api_error())
}

pub(crate) fn metering_error(refusal: economy::MeterRefusal, seen: &mut Seen) -> ApiError {
    if let economy::MeterRefusal::Insufficient(shortfall) = &refusal {
        seen.balance = Some(shortfall.balance);
    }
    refusal_error(refusal)
}

/// What a client is told when its account cannot pay for what it asked.
pub(crate) fn refusal_error(refusal: economy::MeterRefusal) -> ApiError {
    use economy::MeterRefusal;
    match refusal {
        MeterRefusal::Insufficient(shortfall) => {
            let free = shortfall.balance.free;
            ApiError::new(
                ErrorCode::InsufficientBalance,
                format!(
                    "insufficient balance: this may cost up to ${}; the account has \
                     ${} of today's allowance, ${} of bundled credits and ${} left",
                    Amount(shortfall.needed).to_decimal_string(),
                    Amount(free.allowance).to_decimal_string(),
                    Amount(free.bundled).to_decimal_string(),
                    Amount(free.usd).to_decimal_string(),
                ),
            )
        }
        MeterRefusal::KeyCap { remaining, period } => ApiError::new(
            period.error_code(),
            format!(
                "this API key's spend limit is reached: ${} left this period",
                Amount(remaining).to_decimal_string()
            ),
        ),
        MeterRefusal::Unavailable => ApiError::new(
            ErrorCode::ModelAtCapacity,
            "the ledger is unavailable, so metered requests are refused",
        )
        .with_retry_after(5),
    }
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

/// Builds the provider's request from validated fields only, with the platform's system prompt
/// first unless the client opted out.
fn provider_request(
    state: &AppState,
    request: &ChatRequest,
    model_id: &str,
) -> ProviderChatRequest {
    let mut provider_request =
        ProviderChatRequest::from_chat(request, model_id, state.config.limits.max_output_tokens);
    let messages = &mut provider_request.messages;
    let platform_prompt = state.config.system_prompt.trim();
    if request.venice.include_venice_system_prompt && !platform_prompt.is_empty() {
        // One system message first: many chat templates accept no other arrangement.
        match messages.first_mut() {
            Some(first) if matches!(first.role, Role::System | Role::Developer) => {
                first.content = format!("{platform_prompt}\n\n{}", first.content);
                first.role = Role::System;
            }
            _ => messages.insert(
                0,
                Message {
                    role: Role::System,
                    content: platform_prompt.to_owned(),
                },
            ),
        }
    }
    provider_request
}

/// A provider that produced its first token, and its stream.
struct Committed {
    attempt: Attempt,
    attempts: u32,
    first_chunks: Vec<ChatCompletionChunk>,
    stream: UpstreamStream,
}

/// Tries providers until one produces a first token, or attempts run out.
async fn dispatch(
    state: &Arc<AppState>,
    model_id: &str,
    body: Bytes,
) -> Result<Committed, ApiError> {
    let (attempt, attempts, (first_chunks, stream)) =
        dispatch_with(state, model_id, None, |provider| {
            first_token(state, provider, body.clone(), random_hex(16))
        })
        .await?;
    Ok(Committed {
        attempt,
        attempts,
        first_chunks,
        stream,
    })
}

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

/// Sends the request to one provider and waits for its first token (or its end).
async fn first_token(
    state: &AppState,
    provider: Arc<Provider>,
    body: Bytes,
    provider_request_id: String,
) -> Result<(Vec<ChatCompletionChunk>, UpstreamStream), Failure> {
    let limits = &state.config.limits;
    let deadline = tokio::time::Instant::now() + limits.first_byte_timeout;
    let response = send_to_provider(
        state,
        &provider,
        PROVIDER_CHAT_PATH,
        &[
            (http::header::CONTENT_TYPE.as_str(), "application/json"),
            ("x-request-id", &provider_request_id),
        ],
        body,
        deadline,
    )
    .await?;
    let mut stream = UpstreamStream::new(
        response,
        limits.max_provider_event_bytes,
        limits.idle_chunk_timeout,
    );
    let mut first_chunks = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                return Err(Failure::fault(
                    ErrorCode::RequestTimeout,
                    "the provider produced no token in time",
                ));
            }
            Ok(Err(error)) => {
                return Err(Failure {
                    kind: FailureKind::Fault,
                    error,
                });
            }
            Ok(Ok(None)) => {
                return Err(Failure::fault(
                    ErrorCode::UpstreamError,
                    "the provider ended the stream without a reply",
                ));
            }
            Ok(Ok(Some(chunk))) => {
                let meaningful = chunk.usage.is_some()
                    || chunk.choices.iter().any(|choice| {
                        choice.finish_reason.is_some()
                            || choice
                                .delta
                                .content
                                .as_deref()
                                .is_some_and(|text| !text.is_empty())
                            || choice
                                .delta
                                .reasoning_content
                                .as_deref()
                                .is_some_and(|text| !text.is_empty())
                    });
                first_chunks.push(chunk);
                if meaningful {
                    return Ok((first_chunks, stream));
                }
                if first_chunks.len() > MAX_EMPTY_LEADING_CHUNKS {
                    return Err(Failure::fault(
                        ErrorCode::UpstreamError,
                        "the provider sent empty chunks and no token",
                    ));
                }
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

/// A provider's SSE stream, parsed into chunks, with an idle timeout between them.
/// A provider's SSE body read into parsed events, with an idle timeout on each read; shared by
/// the plain and the sealed paths.
pub(crate) struct ProviderEvents {
    body: ByteStream,
    parser: SseParser,
    events: VecDeque<SseEvent>,
    idle_timeout: Duration,
}

impl ProviderEvents {
    pub(crate) fn new(
        response: reqwest::Response,
        max_event_bytes: usize,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            body: Box::pin(response.bytes_stream()),
            parser: SseParser::new(max_event_bytes),
            events: VecDeque::new(),
            idle_timeout,
        }
    }

    /// The next event already received, if any.
    pub(crate) fn pop(&mut self) -> Option<SseEvent> {
        self.events.pop_front()
    }

    /// Waits (at most the idle timeout) for more of the body and parses it: `false` when the
    /// body has ended.
    pub(crate) async fn receive(&mut self) -> Result<bool, ApiError> {
        match tokio::time::timeout(self.idle_timeout, self.body.next()).await {
            Err(_) => Err(upstream_error(
                ErrorCode::RequestTimeout,
                "the provider stalled mid-stream",
            )),
            Ok(None) => Ok(false),
            Ok(Some(Err(_))) => Err(upstream_error(
                ErrorCode::InferenceFailed,
                "the connection to the provider broke mid-stream",
            )),
            Ok(Some(Ok(bytes))) => {
                let events = self.parser.push(&bytes).map_err(|error| {
                    upstream_error(
                        ErrorCode::UpstreamError,
                        &format!("the provider's stream is invalid: {error}"),
                    )
                })?;
                self.events.extend(events);
                Ok(true)
            }
        }
    }
}

/// The error a provider's broken stream ends in.
pub(crate) fn upstream_error(code: ErrorCode, message: &str) -> ApiError {
    ApiError::new(code, message).with_source(ErrorSource::Upstream)
}

/// A provider's stream of chat chunks.
struct UpstreamStream {
    events: ProviderEvents,
    saw_finish: bool,
    done: bool,
}

impl UpstreamStream {
    fn new(response: reqwest::Response, max_event_bytes: usize, idle_timeout: Duration) -> Self {
        Self {
            events: ProviderEvents::new(response, max_event_bytes, idle_timeout),
            saw_finish: false,
            done: false,
        }
    }

    /// The next chunk; `None` at a clean end. Errors are upstream faults.
    async fn next(&mut self) -> Result<Option<ChatCompletionChunk>, ApiError> {
        loop {
            if let Some(item) = self.next_received() {
                return item;
            }
            self.receive().await?;
        }
    }

    /// The next chunk among the bytes already received, without waiting: `None` when more must
    /// be read first.
    fn next_received(&mut self) -> Option<Result<Option<ChatCompletionChunk>, ApiError>> {
        if self.done {
            return Some(Ok(None));
        }
        let event = self.events.pop()?;
        Some(match event {
            SseEvent::Done => {
                self.done = true;
                Ok(None)
            }
            SseEvent::Data(data) => self.decode(&data).map(Some),
        })
    }

    fn decode(&mut self, data: &str) -> Result<ChatCompletionChunk, ApiError> {
        // Only an event that names an "error" key can be an error; every other one is parsed
        // straight into a chunk, without an intermediate JSON tree.
        let chunk = if data.contains("\"error\"") {
            let value: serde_json::Value = serde_json::from_str(data).map_err(|_| {
                upstream_error(
                    ErrorCode::UpstreamError,
                    "the provider sent a malformed event",
                )
            })?;
            if let Some(error) = value.get("error") {
                let message = error
                    .get("message")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("the provider failed");
                let code = error
                    .get("code")
                    .and_then(serde_json::Value::as_str)
                    .and_then(ErrorCode::parse);
                return Err(upstream_error(
                    code.filter(|code| code.status() >= 500)
                        .unwrap_or(ErrorCode::InferenceFailed),
                    message,
                ));
            }
            serde_json::from_value(value).map_err(|_| {
                upstream_error(
                    ErrorCode::UpstreamError,
                    "the provider sent a malformed chunk",
                )
            })?
        } else {
            serde_json::from_str::<ChatCompletionChunk>(data).map_err(|error| {
                upstream_error(
                    ErrorCode::UpstreamError,
                    if error.is_data() {
                        "the provider sent a malformed chunk"
                    } else {
                        "the provider sent a malformed event"
                    },
                )
            })?
        };
        if chunk
            .choices
            .iter()
            .any(|choice| choice.finish_reason.is_some())
        {
            self.saw_finish = true;
        }
        Ok(chunk)
    }

    /// Waits for more of the stream; a clean end marks the stream done.
    async fn receive(&mut self) -> Result<(), ApiError> {
        if self.events.receive().await? {
            return Ok(());
        }
        self.done = true;
        if self.saw_finish {
            Ok(())
        } else {
            Err(upstream_error(
                ErrorCode::InferenceFailed,
                "the provider closed the stream before finishing",
            ))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Unfinished,
    Completed,
    Failed(u16),
}

/// Carries one request from its provider to its client, and accounts for it when dropped
/// (which also covers a client that goes away mid-stream).
struct Relay {
    /// `tokens`, `account` (an account's key, metered) or `none`: for the log line.
    paid_with: &'static str,
    state: Arc<AppState>,
    /// The rate limiter's identity for this request (the account and tier, or the caller);
    /// `None` for a request paid with tokens.
    rate_key: Option<String>,
    metering: Option<economy::Metering>,
    request_id: String,
    model_id: String,
    created: u64,
    include_usage: bool,
    strip_thinking: bool,
    thinking: ThinkingFilter,
    pending: VecDeque<ChatCompletionChunk>,
    upstream: Option<UpstreamStream>,
    attempt: Attempt,
    attempts: u32,
    started: Instant,
    first_token_at: Option<Instant>,
    /// The gateway's own count of the reply and the provider's report: what is charged.
    tally: Tally,
    pricing: crate::config::ModelPricing,
    /// What was reserved: the charge never exceeds it.
    max_cost: u128,
    finish_reason: Option<String>,
    sent_role: bool,
    outcome: Outcome,
}

/// What the relay hands its client next.
enum Step {
    /// Visible text (possibly empty) and, at the end, the finish reason.
    Chunk {
        content: String,
        reasoning: Option<String>,
        finish_reason: Option<String>,
    },
    End,
    Failed(ApiError),
}

impl Relay {
    /// The next step, waiting for the provider when nothing received is left.
    async fn step(&mut self) -> Step {
        loop {
            if let Some(step) = self.step_received() {
                return step;
            }
            let Some(upstream) = self.upstream.as_mut() else {
                return Step::End;
            };
            if let Err(error) = upstream.receive().await {
                self.upstream = None;
                return Step::Failed(error);
            }
        }
    }

    /// The next step from what has already been received, without waiting: `None` when the
    /// provider must be read first.
    fn step_received(&mut self) -> Option<Step> {
        loop {
            let chunk = match self.pending.pop_front() {
                Some(chunk) => chunk,
                None => {
                    let Some(upstream) = self.upstream.as_mut() else {
                        return Some(Step::End);
                    };
                    match upstream.next_received()? {
                        Ok(Some(chunk)) => chunk,
                        Ok(None) => {
                            self.upstream = None;
                            let tail = if self.strip_thinking {
                                self.thinking.finish()
                            } else {
                                String::new()
                            };
                            if tail.is_empty() {
                                return Some(Step::End);
                            }
                            return Some(Step::Chunk {
                                content: tail,
                                reasoning: None,
                                finish_reason: None,
                            });
                        }
                        Err(error) => {
                            self.upstream = None;
                            return Some(Step::Failed(error));
                        }
                    }
                }
            };
            if let Some(usage) = chunk.usage {
                self.tally.report(usage);
            }
            let Some(choice) = chunk.choices.into_iter().next() else {
                continue;
            };
            let mut content = choice.delta.content.unwrap_or_default();
            let mut reasoning = choice
                .delta
                .reasoning_content
                .filter(|text| !text.is_empty());
            if !content.is_empty() || reasoning.is_some() {
                // Each piece of text is at least one token. A provider that sends more pieces
                // than the request paid for is cut off there: the reply ends as if it had
                // reached max_tokens, and the excess counts against the provider.
                if self.tally.at_bound() {
                    self.tally.sent_past_bound();
                    self.upstream = None;
                    self.pending.clear();
                    self.finish_reason = Some("length".into());
                    return Some(Step::Chunk {
                        content: String::new(),
                        reasoning: None,
                        finish_reason: Some("length".into()),
                    });
                }
                self.tally.delivered_one();
            }
            if self.strip_thinking {
                content = self.thinking.push(&content);
                reasoning = None;
            }
            if !content.is_empty() && self.first_token_at.is_none() {
                self.first_token_at = Some(Instant::now());
            }
            if let Some(reason) = &choice.finish_reason {
                self.finish_reason = Some(reason.clone());
            }
            if content.is_empty()
                && reasoning.is_none()
                && choice.finish_reason.is_none()
                && self.sent_role
            {
                continue;
            }
            return Some(Step::Chunk {
                content,
                reasoning,
                finish_reason: choice.finish_reason,
            });
        }
    }

    /// What the request is charged for (see [`Tally::settle`]).
    fn usage(&self) -> Usage {
        self.tally.settle().usage
    }

    fn cost(&self) -> Cost {
        let usage = self.usage();
        let usd = Amount(
            settlement::cost(self.pricing, usage.prompt_tokens, usage.completion_tokens)
                .min(self.max_cost),
        );
        Cost { usd, diem: usd }
    }

    fn chunk_json(
        &mut self,
        content: String,
        reasoning: Option<String>,
        finish_reason: Option<String>,
    ) -> Bytes {
        let role = (!self.sent_role).then_some(Role::Assistant);
        self.sent_role = true;
        let chunk = ChatCompletionChunk {
            id: self.request_id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model_id.clone(),
            choices: vec![wire::chat::ChunkChoice {
                index: 0,
                delta: wire::chat::Delta {
                    role,
                    content: Some(content),
                    reasoning_content: reasoning,
                },
                finish_reason,
            }],
            usage: None,
        };
        sse_data(&chunk)
    }

    fn usage_json(&self) -> Bytes {
        #[derive(Serialize)]
        struct UsageChunk<'a> {
            id: &'a str,
            object: &'static str,
            created: u64,
            model: &'a str,
            choices: [(); 0],
            usage: Usage,
            cost: Cost,
        }
        sse_data(&UsageChunk {
            id: &self.request_id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model_id,
            choices: [],
            usage: self.usage(),
            cost: self.cost(),
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let status = match self.outcome {
            Outcome::Completed => 200,
            Outcome::Failed(status) => status,
            // The client left before the end.
            Outcome::Unfinished => 499,
        };
        let settled = self.tally.settle();
        let usage = settled.usage;
        if settled.overshoot {
            settlement::charge_overshoot(&self.state, &self.attempt.provider, &self.request_id);
        }
        let metrics = &self.state.metrics;
        let model = self.model_id.clone();
        metrics
            .requests
            .get_or_create(&RequestLabels {
                route: "chat",
                model: model.clone(),
                status,
            })
            .inc();
        metrics
            .request_seconds
            .get_or_create(&ModelLabels {
                model: model.clone(),
            })
            .observe(self.started.elapsed().as_secs_f64());
        if let Some(first) = self.first_token_at {
            metrics
                .first_token_seconds
                .get_or_create(&ModelLabels {
                    model: model.clone(),
                })
                .observe(first.duration_since(self.started).as_secs_f64());
        }
        metrics
            .tokens
            .get_or_create(&TokenLabels {
                model: model.clone(),
                kind: "prompt",
            })
            .inc_by(usage.prompt_tokens);
        metrics
            .tokens
            .get_or_create(&TokenLabels {
                model,
                kind: "completion",
            })
            .inc_by(usage.completion_tokens);
        metrics.in_flight.dec();
        if let Some(rate_key) = &self.rate_key {
            self.state.rate.record_tokens(rate_key, usage.total_tokens);
        }
        if self.metering.is_some() {
            let cost = self.cost().usd.0;
            if let Some(metering) = self.metering.as_mut() {
                metering.finish(cost, usage.prompt_tokens, usage.completion_tokens);
            }
        }
        tracing::info!(
            request_id = %self.request_id,
            model = %self.model_id,
            provider = %self.attempt.provider.id,
            attempts = self.attempts,
            paid_with = self.paid_with,
            status,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            usage_reported = self.tally.has_report(),
            first_token_ms = self.first_token_at.map(|first| first.duration_since(self.started).as_millis() as u64),
            duration_ms = self.started.elapsed().as_millis() as u64,
            "chat completion"
        );
    }
}

fn stream_response(relay: Relay) -> Response {
    relay.state.metrics.in_flight.inc();
    let provider = relay.attempt.provider.id.clone();
    // Events that arrived together leave together: each frame holds every event already
    // received (up to MAX_FRAME_BYTES), so a burst from the provider costs the client one read
    // rather than one per event. The relay never waits to fill a frame.
    let frames = futures_util::stream::unfold(Some(relay), |relay| async move {
        let mut relay = relay?;
        let mut frame = Vec::new();
        let mut step = relay.step().await;
        loop {
            match step {
                Step::Chunk {
                    content,
                    reasoning,
                    finish_reason,
                } => frame.extend_from_slice(&relay.chunk_json(content, reasoning, finish_reason)),
                Step::End => {
                    relay.outcome = Outcome::Completed;
                    if relay.include_usage {
                        frame.extend_from_slice(&relay.usage_json());
                    }
                    frame.extend_from_slice(b"data: [DONE]\n\n");
                    return Some((Ok::<Bytes, std::convert::Infallible>(frame.into()), None));
                }
                Step::Failed(error) => {
                    relay.outcome = Outcome::Failed(error.status());
                    tracing::info!(request_id = %relay.request_id, code = error.code.as_str(), "stream failed after its first byte");
                    frame.extend_from_slice(error.sse_event().as_bytes());
                    return Some((Ok(frame.into()), None));
                }
            }
            if frame.len() >= MAX_FRAME_BYTES {
                break;
            }
            match relay.step_received() {
                Some(next) => step = next,
                None => break,
            }
        }
        Some((Ok(frame.into()), Some(relay)))
    });
    let mut response = Response::new(Body::from_stream(frames));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    insert_header(headers, "x-gondola-provider", &provider);
    response
}

async fn complete_response(
    mut relay: Relay,
    venice_echo: serde_json::Value,
) -> Result<Response, ApiError> {
    relay.state.metrics.in_flight.inc();
    let mut content = String::new();
    let mut reasoning = String::new();
    loop {
        match relay.step().await {
            Step::Chunk {
                content: text,
                reasoning: thought,
                ..
            } => {
                content.push_str(&text);
                if let Some(thought) = thought {
                    reasoning.push_str(&thought);
                }
            }
            Step::End => break,
            Step::Failed(error) => {
                relay.outcome = Outcome::Failed(error.status());
                return Err(error);
            }
        }
    }
    relay.outcome = Outcome::Completed;
    let usage = relay.usage();
    let completion = ChatCompletion {
        id: relay.request_id.clone(),
        object: "chat.completion",
        created: relay.created,
        model: relay.model_id.clone(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: Role::Assistant,
                content,
                reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
            },
            finish_reason: relay.finish_reason.clone().unwrap_or_else(|| "stop".into()),
            logprobs: None,
        }],
        usage,
        cost: relay.cost(),
        venice_parameters: venice_echo,
    };
    let body = serde_json::to_vec(&completion)
        .map_err(|_| ApiError::new(ErrorCode::Internal, "the response could not be encoded"))?;
    let mut response = (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    insert_header(
        response.headers_mut(),
        "x-gondola-provider",
        &relay.attempt.provider.id,
    );
    Ok(response)
}

pub(crate) fn sse_data<T: Serialize>(value: &T) -> Bytes {
    let mut frame = b"data: ".to_vec();
    if serde_json::to_writer(&mut frame, value).is_err() {
        frame.truncate(6);
        frame.extend_from_slice(
            br#"{"error":{"message":"encoding failed","code":"INTERNAL_ERROR"}}"#,
        );
    }
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

pub(crate) fn insert_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

pub(crate) fn insert_rate_headers(headers: &mut HeaderMap, rate: &RateStatus) {
    let reset = format!("{}s", rate.reset_after.as_secs().max(1));
    insert_header(
        headers,
        "x-ratelimit-limit-requests",
        &rate.limit.requests_per_minute.to_string(),
    );
    insert_header(
        headers,
        "x-ratelimit-remaining-requests",
        &rate.remaining_requests.to_string(),
    );
    insert_header(headers, "x-ratelimit-reset-requests", &reset);
    insert_header(
        headers,
        "x-ratelimit-limit-tokens",
        &rate.limit.tokens_per_minute.to_string(),
    );
    insert_header(
        headers,
        "x-ratelimit-remaining-tokens",
        &rate.remaining_tokens.to_string(),
    );
    insert_header(headers, "x-ratelimit-reset-tokens", &reset);
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::fill(buffer.as_mut_slice());
    hex::encode(buffer)
}

pub(crate) fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
