//! `POST /privacy/chat`: chat requests sealed to providers' keys (see [`wire::sealed`]), and
//! `GET /privacy/providers`, the keys to seal them to.
//!
//! Sealed chat is an operation on the request pipeline like plain chat: the gateway
//! authenticates and charges it from what the client declares in the clear (model and
//! `max_tokens`; the sealed size stands for the prompt), sends each provider only the copy
//! sealed to it, fails over among the copies until one provider produces a first token, and
//! passes the sealed reply through, piece by piece. It reads no content: it cannot. Accounts
//! are charged by the token counts the provider reports at the end, held to what was paid for
//! (or, for a reply cut short, by the pieces passed on).

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
use wire::error::{ApiError, ErrorCode};
use wire::provider::PROVIDER_SEALED_CHAT_PATH;
use wire::sealed::{
    IMAGES_HEADER, MAX_TARGETS, MAX_TOKENS_HEADER, MODEL_HEADER, PROVIDER_HEADER, SealedChat,
    SealedError, SealedEvent, SealedImages, SealedTarget, SealingProviders,
};
use wire::sse::SseEvent;

use crate::AppState;
use crate::catalogue::LiveModels;
use crate::pipeline::dispatch::{Failure, FailureKind, dispatch_with, send_to_provider};
use crate::pipeline::events::{ProviderEvents, upstream_error};
use crate::pipeline::pricing::{UsageBound, estimate_prompt_tokens};
use crate::pipeline::respond::{insert_header, sse_data};
use crate::pipeline::settlement::{Record, Tally};
use crate::pipeline::{Admitted, Operation, Resolved};
use crate::registry::{Attempt, Provider};

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

/// The sealed chat operation.
pub(crate) struct SealedChatOperation;

/// A sealed request: what it declares in the clear, and its copies.
pub(crate) struct Declared {
    chat: SealedChat,
    copies: Vec<Copy>,
}

impl Declared {
    /// The largest copy's size: it stands for the prompt, which the seal hides.
    fn largest(&self) -> usize {
        self.copies
            .iter()
            .map(|copy| copy.sealed.len())
            .max()
            .unwrap_or(0)
    }
}

impl Operation for SealedChatOperation {
    const ROUTE: &'static str = "sealed_chat";
    const ID_PREFIX: &'static str = "sealed";
    type Request = Declared;

    fn body_limit(state: &AppState) -> usize {
        body_limit(state.config.limits.max_body_bytes)
    }

    fn check_content_type(_: &HeaderMap) -> Result<(), ApiError> {
        // The body's shape is checked when it is parsed; sealed clients label it as they like.
        Ok(())
    }

    fn parse(state: &AppState, _headers: &HeaderMap, body: &Bytes) -> Result<Declared, ApiError> {
        let (chat, copies) = parse(state, body)?;
        Ok(Declared { chat, copies })
    }

    fn resolve(_: &AppState, request: &Declared, live: &LiveModels) -> Result<Resolved, ApiError> {
        // A sealed request names a served id: the providers it is sealed to were chosen for it.
        let model_id = request.chat.model.clone();
        if !live.contains_key(&model_id) {
            return Err(ApiError::new(
                ErrorCode::ModelNotFound,
                format!(
                    "model {model_id:?} is not served here; {} lists the models that take sealed requests",
                    wire::sealed::PROVIDERS_PATH
                ),
            )
            .with_param("model"));
        }
        Ok(Resolved {
            model_name: model_id.clone(),
            model_id,
        })
    }

    fn bound(_: &AppState, request: &Declared, _: &Bytes) -> UsageBound {
        // Every byte of the largest copy counted as a prompt token: the seal hides how many
        // there are, and the padded, sealed size is never smaller.
        UsageBound::for_chat(request.largest(), 0, 0, request.chat.max_tokens)
    }

    async fn respond(admitted: Admitted<Declared>) -> Result<Response, ApiError> {
        let Admitted { request, paid } = admitted;
        let committed = dispatch(
            &paid.state,
            &paid.model.model_id,
            (MAX_TOKENS_HEADER, request.chat.max_tokens.to_string()),
            &request.copies,
        )
        .await?;
        let provider = committed.attempt.provider.id.clone();
        // The prompt is sealed: if the provider never reports its size, the sealed size stands
        // for it.
        let tally = Tally::sealed(paid.bound, estimate_prompt_tokens(request.largest()));
        let record = paid
            .commit(
                Self::ROUTE,
                "sealed chat completion",
                &committed.attempt.provider,
                committed.attempts,
                tally,
            )
            .await?;
        Ok(relayed(record, committed, &provider))
    }
}

/// The sealed reply passed on as it comes, settled by `record` when it ends.
fn relayed(mut record: Record, committed: Committed, provider: &str) -> Response {
    record.first_token_at = Some(Instant::now());
    record.sealed_bytes = Some(0);
    let relay = SealedRelay {
        record,
        pending: committed.first.into(),
        upstream: committed.stream,
        sealed_pieces: 0,
        finished: false,
    };
    let frames = futures_util::stream::unfold(relay, |mut relay| async move {
        let frame = relay.next_frame().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(frame), relay))
    });
    let mut response = Response::new(Body::from_stream(frames));
    let headers = response.headers_mut();
    insert_header(headers, "content-type", "text/event-stream");
    insert_header(headers, "cache-control", "no-cache");
    insert_header(headers, PROVIDER_HEADER, provider);
    response
}

/// The sealed image operation (`POST /privacy/images`): charged per image from the declared
/// model and `variants`, passed on like sealed chat.
pub(crate) struct SealedImagesOperation;

/// A sealed image request: what it declares in the clear, and its copies.
pub(crate) struct DeclaredImages {
    images: SealedImages,
    copies: Vec<Copy>,
}

impl Operation for SealedImagesOperation {
    const ROUTE: &'static str = "sealed_images";
    const ID_PREFIX: &'static str = "sealed";
    type Request = DeclaredImages;

    fn body_limit(state: &AppState) -> usize {
        body_limit(state.config.limits.max_body_bytes)
    }

    fn check_content_type(_: &HeaderMap) -> Result<(), ApiError> {
        Ok(())
    }

    fn parse(
        state: &AppState,
        _headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<DeclaredImages, ApiError> {
        let images: SealedImages = serde_json::from_slice(body).map_err(|error| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("not a sealed image request: {error}"),
            )
        })?;
        if !(1..=wire::images::MAX_VARIANTS).contains(&images.variants) {
            return Err(ApiError::invalid(
                "variants",
                format!("variants is from 1 to {}", wire::images::MAX_VARIANTS),
            ));
        }
        let copies = copies_of(state, &images.sealed)?;
        Ok(DeclaredImages { images, copies })
    }

    fn resolve(
        state: &AppState,
        request: &DeclaredImages,
        live: &LiveModels,
    ) -> Result<Resolved, ApiError> {
        let model_id = request.images.model.clone();
        if !live.contains_key(&model_id) {
            return Err(ApiError::new(
                ErrorCode::ModelNotFound,
                format!(
                    "model {model_id:?} is not served here; {} lists the models that take sealed requests",
                    wire::sealed::PROVIDERS_PATH
                ),
            )
            .with_param("model"));
        }
        crate::pipeline::resolve_typed(
            state,
            &model_id,
            live,
            wire::models::ModelType::Image,
            "image",
        )
    }

    fn bound(_: &AppState, request: &DeclaredImages, _: &Bytes) -> UsageBound {
        UsageBound {
            prompt_tokens: u64::from(request.images.variants),
            completion_tokens: 0,
        }
    }

    fn priced(pricing: crate::config::ModelPricing) -> crate::config::ModelPricing {
        pricing.per_image_units()
    }

    async fn respond(admitted: Admitted<DeclaredImages>) -> Result<Response, ApiError> {
        let Admitted { request, paid } = admitted;
        let committed = dispatch(
            &paid.state,
            &paid.model.model_id,
            (IMAGES_HEADER, request.images.variants.to_string()),
            &request.copies,
        )
        .await?;
        let provider = committed.attempt.provider.id.clone();
        // Without a report (a reply cut short), every image paid for is charged: the seal
        // hides how many were made.
        let tally = Tally::sealed(paid.bound, u64::from(request.images.variants));
        let record = paid
            .commit(
                Self::ROUTE,
                "sealed image",
                &committed.attempt.provider,
                committed.attempts,
                tally,
            )
            .await?;
        Ok(relayed(record, committed, &provider))
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
    let copies = copies_of(state, &request.sealed)?;
    Ok((request, copies))
}

/// Each sealed copy decoded, one per provider, each within the bound on a copy.
fn copies_of(state: &AppState, targets: &[SealedTarget]) -> Result<Vec<Copy>, ApiError> {
    if targets.is_empty() || targets.len() > MAX_TARGETS {
        return Err(ApiError::invalid(
            "sealed",
            format!("a request is sealed to 1 to {MAX_TARGETS} providers"),
        ));
    }
    let largest = body_limit(state.config.limits.max_body_bytes) / MAX_TARGETS;
    let mut copies: Vec<Copy> = Vec::with_capacity(targets.len());
    for (index, target) in targets.iter().enumerate() {
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
    Ok(copies)
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
    paid: (&'static str, String),
    copies: &[Copy],
) -> Result<Committed, ApiError> {
    let allowed: Vec<String> = copies.iter().map(|copy| copy.provider.clone()).collect();
    let (attempt, attempts, (first, stream)) =
        dispatch_with(state, model_id, Some(&allowed), |provider| {
            // Only the providers of `allowed` are chosen: each has its copy.
            let sealed = copies
                .iter()
                .find(|copy| copy.provider == provider.id)
                .map(|copy| copy.sealed.clone())
                .unwrap_or_default();
            first_piece(state, provider, model_id, (paid.0, &paid.1), sealed)
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
    paid: (&'static str, &str),
    sealed: Bytes,
) -> Result<(Vec<String>, SealedStream), Failure> {
    let limits = &state.config.limits;
    let deadline = tokio::time::Instant::now() + limits.first_byte_timeout;
    let request_id = economy::random_hex(16);
    let response = send_to_provider(
        state,
        &provider,
        PROVIDER_SEALED_CHAT_PATH,
        &[
            (
                http::header::CONTENT_TYPE.as_str(),
                privacy::CHUNKED_REQUEST_MEDIA_TYPE,
            ),
            (MODEL_HEADER, model_id),
            paid,
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

/// Carries one sealed reply from its provider to its client; its record settles the request
/// when it is dropped.
struct SealedRelay {
    record: Record,
    pending: VecDeque<String>,
    upstream: SealedStream,
    /// Sealed pieces passed on (all but the first stand for a token each if the reply is cut).
    sealed_pieces: u64,
    finished: bool,
}

impl SealedRelay {
    fn sealed_frame(&mut self, sealed: String) -> Bytes {
        if let Some(bytes) = self.record.sealed_bytes.as_mut() {
            *bytes += sealed.len();
        }
        // The first piece is the reply's head; each later one holds at least one event.
        if self.sealed_pieces > 0 {
            self.record.tally.delivered_one();
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
                self.record.tally.report(usage);
                // The client sees what it is charged, which is the report held to its bound.
                Some(sse_data(&SealedEvent {
                    usage: Some(self.record.usage()),
                    ..SealedEvent::default()
                }))
            }
            Ok(Next::Done) => {
                self.finished = true;
                self.record.status = Some(200);
                Some(Bytes::from_static(b"data: [DONE]\n\n"))
            }
            Err(error) => {
                self.finished = true;
                self.record.status = Some(error.status());
                Some(sse_data(&SealedEvent {
                    error: Some(SealedError::from(&error)),
                    ..SealedEvent::default()
                }))
            }
        }
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
