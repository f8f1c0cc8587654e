//! `POST /privacy/chat`: chat requests sealed to providers' keys (see [`wire::sealed`]), and
//! `GET /privacy/providers`, the keys to seal them to.
//!
//! The gateway authenticates and charges a sealed request as it does any other, from what the
//! client declares in the clear (model and `max_tokens`; the sealed size stands for the prompt),
//! sends each provider only the copy sealed to it, fails over among the copies until one
//! provider produces a first token, and passes the sealed reply through, piece by piece. It
//! reads no content: it cannot. Accounts are charged by the token counts the provider reports at
//! the end.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::HeaderMap;
use wire::chat::Usage;
use wire::error::{ApiError, Dialect, ErrorCode};
use wire::provider::PROVIDER_SEALED_CHAT_PATH;
use wire::sealed::{
    MAX_TARGETS, MAX_TOKENS_HEADER, MODEL_HEADER, PROVIDER_HEADER, SealedChat, SealedError,
    SealedEvent, SealingProviders,
};
use wire::sse::SseEvent;

use crate::AppState;
use crate::chat::{
    Failure, FailureKind, ProviderEvents, Refusal, Seen, insert_balance_headers, insert_header,
    insert_rate_headers, random_hex, refuse, sse_data, upstream_error,
};
use crate::metrics::{ModelLabels, RequestLabels, TokenLabels};
use crate::registry::{Attempt, Provider};
use crate::settlement::{self, Tally, UsageBound};

/// Largest body of a sealed chat request for a gateway whose chat bodies may be `max_body_bytes`:
/// [`MAX_TARGETS`] copies, each padded and sealed, in base64, with room for the JSON around them.
pub(crate) fn body_limit(max_body_bytes: usize) -> usize {
    let sealed_copy =
        privacy::framing::message_bucket(max_body_bytes.saturating_add(4096)).saturating_add(1024);
    sealed_copy
        .saturating_mul(MAX_TARGETS)
        .saturating_mul(4)
        .div_ceil(3)
        .saturating_add(64 * 1024)
}

/// `GET /privacy/providers`: public keys, so public.
pub(crate) async fn providers(state: &AppState) -> Response {
    let now = Instant::now();
    let live = state.registry.live_models(now);
    // Aliases configured over traits, as the catalogue resolves them (traits first).
    let mut aliases = state.catalogue.aliases(&live);
    aliases.extend(state.catalogue.traits(&live));
    Json(SealingProviders {
        object: "list".into(),
        data: state.registry.sealing_providers(now),
        aliases,
    })
    .into_response()
}

pub(crate) async fn handle(
    state: Arc<AppState>,
    dialect: Dialect,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let request_id = format!("sealed-{}", random_hex(12));
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
        Err((error, model)) => crate::chat::refused(
            &state,
            dialect,
            "sealed_chat",
            &request_id,
            started,
            &error,
            model,
            rate,
            &seen,
        ),
    }
}

/// A sealed copy, decoded, for the provider it is sealed to.
struct Copy {
    provider: String,
    sealed: Bytes,
}

/// The declared request, checked: model, `max_tokens`, and one copy per provider.
fn parse(state: &AppState, body: &[u8]) -> Result<(SealedChat, Vec<Copy>), ApiError> {
    let limits = &state.config.limits;
    let request: SealedChat = serde_json::from_slice(body).map_err(|error| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("not a sealed chat request: {error}"),
        )
    })?;
    if request.sealed.is_empty() || request.sealed.len() > MAX_TARGETS {
        return Err(ApiError::invalid(
            "sealed",
            format!("a request is sealed to 1 to {MAX_TARGETS} providers"),
        ));
    }
    if request.max_tokens == 0 || request.max_tokens > limits.max_output_tokens {
        return Err(ApiError::new(
            ErrorCode::TooManyTokens,
            format!(
                "max_tokens is {}; this server allows 1 to {}",
                request.max_tokens, limits.max_output_tokens
            ),
        )
        .with_param("max_tokens"));
    }
    let largest = body_limit(limits.max_body_bytes) / MAX_TARGETS;
    let mut copies: Vec<Copy> = Vec::with_capacity(request.sealed.len());
    for (index, target) in request.sealed.iter().enumerate() {
        if copies.iter().any(|copy| copy.provider == target.provider) {
            return Err(ApiError::invalid(
                format!("sealed[{index}].provider"),
                "each copy must be sealed to another provider",
            ));
        }
        let sealed = BASE64
            .decode(&target.request)
            .ok()
            .filter(|sealed| !sealed.is_empty() && sealed.len() <= largest)
            .ok_or_else(|| {
                ApiError::invalid(
                    format!("sealed[{index}].request"),
                    format!("must be a sealed request in base64, at most {largest} bytes"),
                )
            })?;
        copies.push(Copy {
            provider: target.provider.clone(),
            sealed: Bytes::from(sealed),
        });
    }
    Ok((request, copies))
}

async fn serve(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    request_id: &str,
    started: Instant,
    rate_out: &mut Option<crate::rate_limit::RateStatus>,
    seen: &mut Seen,
) -> Result<Response, Refusal> {
    let limits = &state.config.limits;
    let (tokens, caller) = crate::chat::admit(state, headers, seen)?;
    let body = crate::chat::read_body(body, body_limit(limits.max_body_bytes))
        .await
        .map_err(refuse)?;
    let (request, copies) = parse(state, &body).map_err(refuse)?;
    let now = Instant::now();
    let model_id = request.model.clone();
    if !state.registry.live_models(now).contains_key(&model_id) {
        return Err(refuse(
            ApiError::new(
                ErrorCode::ModelNotFound,
                format!(
                    "model {model_id:?} is not served here; {} lists the models that take sealed requests",
                    wire::sealed::PROVIDERS_PATH
                ),
            )
            .with_param("model"),
        ));
    }
    let (rate, rate_key) =
        crate::chat::check_rate(state, &caller, tokens.is_some(), &model_id, now)?;
    *rate_out = rate;
    // Every byte of the largest copy counted as a prompt token: the seal hides how many there
    // are, and the padded, sealed size is never smaller.
    let largest = copies
        .iter()
        .map(|copy| copy.sealed.len())
        .max()
        .unwrap_or(0);
    let bound = UsageBound::for_chat(largest, 0, 0, request.max_tokens);
    let pricing = state.catalogue.pricing(&model_id);
    let max_cost = bound.max_cost(pricing);
    let (reservation, metering) =
        crate::chat::pay(state, &tokens, &caller, max_cost, &model_id, seen).await?;
    let committed = dispatch(state, &model_id, request.max_tokens, &copies)
        .await
        .map_err(|error| (error, model_id.clone()))?;
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
    let provider = committed.attempt.provider.id.clone();
    let relay = SealedRelay {
        state: Arc::clone(state),
        rate_key: rate.is_some().then_some(rate_key),
        metering,
        request_id: request_id.to_owned(),
        model_id,
        attempt: committed.attempt,
        attempts: committed.attempts,
        pending: committed.first.into(),
        upstream: committed.stream,
        started,
        first_token_at: Some(Instant::now()),
        // The prompt is sealed: if the provider never reports its size, the sealed size
        // stands for it.
        tally: Tally::sealed(bound, settlement::estimate_prompt_tokens(largest)),
        pricing,
        max_cost,
        sealed_pieces: 0,
        sealed_bytes: 0,
        outcome: None,
        finished: false,
        paid_with: match (&tokens, caller.account) {
            (Some(_), _) => "tokens",
            (None, Some(_)) => "account",
            (None, None) => "none",
        },
    };
    state.metrics.in_flight.inc();
    let frames = futures_util::stream::unfold(relay, |mut relay| async move {
        let frame = relay.next_frame().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(frame), relay))
    });
    let mut response = Response::new(Body::from_stream(frames));
    let headers = response.headers_mut();
    insert_header(headers, "content-type", "text/event-stream");
    insert_header(headers, "cache-control", "no-cache");
    insert_header(headers, PROVIDER_HEADER, &provider);
    insert_header(headers, "x-request-id", request_id);
    if let Some(rate) = &rate {
        insert_rate_headers(headers, rate);
    }
    if let Some(balance) = balance {
        insert_balance_headers(headers, &balance);
    }
    Ok(response)
}

/// A provider's stream of [`SealedEvent`]s, with an idle timeout between events.
struct SealedStream {
    events: ProviderEvents,
}

/// What a provider's sealed stream says next.
enum Next {
    Sealed(String),
    Usage(Usage),
    Done,
}

impl SealedStream {
    async fn next(&mut self) -> Result<Next, ApiError> {
        loop {
            if let Some(event) = self.events.pop() {
                let data = match event {
                    SseEvent::Done => return Ok(Next::Done),
                    SseEvent::Data(data) => data,
                };
                let event: SealedEvent = serde_json::from_str(&data).map_err(|_| {
                    upstream_error(
                        ErrorCode::UpstreamError,
                        "the provider sent a malformed event",
                    )
                })?;
                return match (event.sealed, event.usage) {
                    (Some(sealed), None) => Ok(Next::Sealed(sealed)),
                    (None, Some(usage)) => Ok(Next::Usage(usage)),
                    _ => Err(upstream_error(
                        ErrorCode::UpstreamError,
                        "the provider sent an event that is neither sealed bytes nor usage",
                    )),
                };
            }
            if !self.events.receive().await? {
                return Err(upstream_error(
                    ErrorCode::InferenceFailed,
                    "the provider closed the stream before finishing",
                ));
            }
        }
    }
}

/// A provider that sent the first piece of its sealed reply.
struct Committed {
    attempt: Attempt,
    attempts: u32,
    first: Vec<String>,
    stream: SealedStream,
}

/// Tries the providers the request was sealed to until one sends a first piece of its reply.
async fn dispatch(
    state: &Arc<AppState>,
    model_id: &str,
    max_tokens: u32,
    copies: &[Copy],
) -> Result<Committed, ApiError> {
    let allowed: Vec<String> = copies.iter().map(|copy| copy.provider.clone()).collect();
    let (attempt, attempts, (first, stream)) =
        crate::chat::dispatch_with(state, model_id, Some(&allowed), |provider| {
            // Only the providers of `allowed` are chosen: each has its copy.
            let sealed = copies
                .iter()
                .find(|copy| copy.provider == provider.id)
                .map(|copy| copy.sealed.clone())
                .unwrap_or_default();
            first_piece(state, provider, model_id, max_tokens, sealed)
        })
        .await?;
    Ok(Committed {
        attempt,
        attempts,
        first,
        stream,
    })
}

/// Sends one provider its copy and waits for the first piece of its sealed reply.
async fn first_piece(
    state: &AppState,
    provider: Arc<Provider>,
    model_id: &str,
    max_tokens: u32,
    sealed: Bytes,
) -> Result<(Vec<String>, SealedStream), Failure> {
    let limits = &state.config.limits;
    let deadline = tokio::time::Instant::now() + limits.first_byte_timeout;
    let max_tokens = max_tokens.to_string();
    let request_id = random_hex(16);
    let response = crate::chat::send_to_provider(
        state,
        &provider,
        PROVIDER_SEALED_CHAT_PATH,
        &[
            (
                http::header::CONTENT_TYPE.as_str(),
                privacy::CHUNKED_REQUEST_MEDIA_TYPE,
            ),
            (MODEL_HEADER, model_id),
            (MAX_TOKENS_HEADER, &max_tokens),
            ("x-request-id", &request_id),
        ],
        sealed,
        deadline,
    )
    .await?;
    let mut stream = SealedStream {
        events: ProviderEvents::new(
            response,
            privacy::sealed::MAX_SEALED_EVENT_BYTES,
            limits.idle_chunk_timeout,
        ),
    };
    match tokio::time::timeout_at(deadline, stream.next()).await {
        Err(_) => Err(Failure::fault(
            ErrorCode::RequestTimeout,
            "the provider produced no token in time",
        )),
        Ok(Err(error)) => Err(Failure {
            kind: FailureKind::Fault,
            error,
        }),
        Ok(Ok(Next::Sealed(first))) => Ok((vec![first], stream)),
        Ok(Ok(Next::Usage(_) | Next::Done)) => Err(Failure::fault(
            ErrorCode::UpstreamError,
            "the provider ended the stream without a reply",
        )),
    }
}

/// Carries one sealed reply from its provider to its client, and accounts for it when dropped.
struct SealedRelay {
    paid_with: &'static str,
    state: Arc<AppState>,
    rate_key: Option<String>,
    metering: Option<economy::Metering>,
    request_id: String,
    model_id: String,
    attempt: Attempt,
    attempts: u32,
    pending: VecDeque<String>,
    upstream: SealedStream,
    started: Instant,
    first_token_at: Option<Instant>,
    /// Sealed pieces passed on (all but the first stand for a token each if the reply is cut)
    /// and the provider's report: what is charged.
    tally: Tally,
    pricing: crate::config::ModelPricing,
    max_cost: u128,
    sealed_pieces: u64,
    sealed_bytes: usize,
    /// The status the log line reports, once the stream has ended (200, or the error's).
    outcome: Option<u16>,
    finished: bool,
}

impl SealedRelay {
    fn sealed_frame(&mut self, sealed: String) -> Bytes {
        self.sealed_bytes += sealed.len();
        // The first piece is the reply's head; each later one holds at least one event.
        if self.sealed_pieces > 0 {
            self.tally.delivered_one();
        }
        self.sealed_pieces += 1;
        sse_data(&SealedEvent {
            sealed: Some(sealed),
            ..SealedEvent::default()
        })
    }

    async fn next_frame(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        if let Some(sealed) = self.pending.pop_front() {
            return Some(self.sealed_frame(sealed));
        }
        match self.upstream.next().await {
            Ok(Next::Sealed(sealed)) => Some(self.sealed_frame(sealed)),
            Ok(Next::Usage(usage)) => {
                self.tally.report(usage);
                // The client sees what it is charged, which is the report held to its bound.
                Some(sse_data(&SealedEvent {
                    usage: Some(self.tally.settle().usage),
                    ..SealedEvent::default()
                }))
            }
            Ok(Next::Done) => {
                self.finished = true;
                self.outcome = Some(200);
                Some(Bytes::from_static(b"data: [DONE]\n\n"))
            }
            Err(error) => {
                self.finished = true;
                self.outcome = Some(error.status());
                Some(sse_data(&SealedEvent {
                    error: Some(SealedError::from(&error)),
                    ..SealedEvent::default()
                }))
            }
        }
    }
}

impl Drop for SealedRelay {
    fn drop(&mut self) {
        let settled = self.tally.settle();
        let usage = settled.usage;
        if settled.overshoot {
            crate::settlement::charge_overshoot(
                &self.state,
                &self.attempt.provider,
                &self.request_id,
            );
        }
        // A client that went away before the end: 499, as for a request in the clear.
        let status = self.outcome.unwrap_or(499);
        let metrics = &self.state.metrics;
        let model = self.model_id.clone();
        metrics
            .requests
            .get_or_create(&RequestLabels {
                route: "sealed_chat",
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
        for (kind, count) in [
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
        ] {
            metrics
                .tokens
                .get_or_create(&TokenLabels {
                    model: model.clone(),
                    kind,
                })
                .inc_by(count);
        }
        metrics.in_flight.dec();
        if let Some(rate_key) = &self.rate_key {
            self.state.rate.record_tokens(rate_key, usage.total_tokens);
        }
        if let Some(metering) = self.metering.as_mut() {
            let cost = settlement::cost(self.pricing, usage.prompt_tokens, usage.completion_tokens)
                .min(self.max_cost);
            metering.finish(cost, usage.prompt_tokens, usage.completion_tokens);
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
            sealed_bytes = self.sealed_bytes,
            usage_reported = self.tally.has_report(),
            first_token_ms = self.first_token_at.map(|first| first.duration_since(self.started).as_millis() as u64),
            duration_ms = self.started.elapsed().as_millis() as u64,
            "sealed chat completion"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_limit_holds_every_copy_of_the_largest_chat_body() {
        for max_body in [1024, 1024 * 1024, 4 * 1024 * 1024] {
            let limit = body_limit(max_body);
            let sealed = privacy::framing::message_bucket(max_body + 200) + 200;
            assert!(limit >= MAX_TARGETS * sealed * 4 / 3, "{max_body}");
            assert!(
                limit <= MAX_TARGETS * 3 * max_body.max(64 * 1024),
                "{max_body}"
            );
        }
    }
}
