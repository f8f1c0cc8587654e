//! Sealed requests: chat requests encrypted to this provider's key, which the gateway routes
//! without being able to read them. The provider sees the request, and nothing of who sent it;
//! its reply is sealed to the client event by event and ends with a receipt, signed by the
//! provider's identity key, over the hashes of the request and of the reply.
//!
//! What the gateway learns in the clear: the declared model and `max_tokens` (in headers, which
//! the sealed request is held to), when the first token came, how many sealed bytes followed
//! and, at the end, the token counts it charges by.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures_util::StreamExt;
use http::HeaderMap;
use privacy::framing::EventSplitter;
use privacy::sealed::{Inner, ReplySealer};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use wire::chat::{ChatCompletionChunk, ChatRequest, ProviderChatRequest, Usage};
use wire::error::{ApiError, Dialect, ErrorCode};
use wire::provider::{RECEIPT_PURPOSE, Receipt, SignedEnvelope, provider_id};
use wire::sealed::{IMAGES_HEADER, MAX_TOKENS_HEADER, MODEL_HEADER, SealedEvent};

use crate::{AppState, check_lease, error_response, generate, sse_frame, sse_response};

/// Largest event of the backend's stream that is read as one.
const MAX_BACKEND_EVENT_BYTES: usize = 1024 * 1024;

/// What a sealed request gets back, inside the seal.
enum Reply {
    /// The request was refused for a reason that may quote it: said only to the client.
    Refused(ApiError),
    /// The backend's stream, passed on as a stream or gathered into one completion.
    Generated {
        response: Response,
        stream: bool,
        include_usage: bool,
    },
}

pub(crate) async fn chat(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(error) = check_lease(&state, &headers).await {
        return error_response(&error);
    }
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let model_id = state.backend.model_id().to_owned();
    if header(MODEL_HEADER) != Some(model_id.as_str()) {
        return error_response(&ApiError::new(
            ErrorCode::ModelNotFound,
            format!("this provider serves {model_id}"),
        ));
    }
    let paid = |name: &str| header(name).and_then(|value| value.parse::<u32>().ok());
    let (paid_tokens, paid_images) = (paid(MAX_TOKENS_HEADER), paid(IMAGES_HEADER));
    if paid_tokens.is_none() && paid_images.is_none() {
        return error_response(&ApiError::new(
            ErrorCode::InvalidRequest,
            format!("a sealed request needs {MAX_TOKENS_HEADER} or {IMAGES_HEADER}"),
        ));
    }
    let Ok(permit) = Arc::clone(&state.in_flight).try_acquire_owned() else {
        return error_response(
            &ApiError::new(ErrorCode::ModelAtCapacity, "this provider is at capacity")
                .with_retry_after(1),
        );
    };
    let (inner, request_body, sealer, sealed_reply) = match state.sealing.open(&body).await {
        Ok(opened) => opened,
        Err(error) => {
            return error_response(&ApiError::new(ErrorCode::InvalidRequest, error.to_string()));
        }
    };
    let paid_tokens = match (inner, paid_tokens, paid_images) {
        (Inner::Chat, Some(tokens), _) => tokens,
        (Inner::Image, _, Some(images)) => {
            return image_request(state, &request_body, images, sealer, sealed_reply, permit).await;
        }
        _ => {
            return error_response(&ApiError::new(
                ErrorCode::InvalidRequest,
                "the sealed request asks for another thing than it was paid for",
            ));
        }
    };
    let request_id = header("x-request-id").unwrap_or("unknown").to_owned();
    let reply = match inner_request(&request_body, paid_tokens) {
        Err(error) => Reply::Refused(error),
        Ok(request) => {
            // Without a limit of its own, each choice gets its share of what was paid.
            let per_choice = (paid_tokens / request.n.max(1)).max(1);
            let provider_request = ProviderChatRequest::from_chat(&request, &model_id, per_choice);
            match generate(&state, provider_request, request_id).await {
                // Busy or broken: said in the clear, so the gateway tries another provider.
                Err(error) if error.status() == 429 || error.status() >= 500 => {
                    return error_response(&error);
                }
                Err(error) => Reply::Refused(error),
                Ok(response) => Reply::Generated {
                    response,
                    stream: request.stream,
                    include_usage: request.include_usage,
                },
            }
        }
    };
    let (usage_sender, usage) = oneshot::channel();
    tokio::spawn(async move {
        // A failure here is the gateway hanging up or the backend breaking off; the reply then
        // ends without its final chunk, which the client notices.
        if let Err(error) = write_reply(&state, sealer, reply, usage_sender, permit).await {
            tracing::debug!(%error, "a sealed reply ended early");
        }
    });
    sealed_response(sealed_reply, usage)
}

/// The sealed reply as server-sent events: the sealed bytes as they are written, then the
/// counts (`usage`, once the reply is written) in the clear, then `[DONE]`.
pub(crate) fn sealed_response(
    sealed_reply: tokio::io::DuplexStream,
    usage: oneshot::Receiver<Usage>,
) -> Response {
    let pieces = tokio_util::io::ReaderStream::new(sealed_reply)
        .take_while(|piece| std::future::ready(piece.is_ok()))
        .filter_map(|piece| std::future::ready(piece.ok()))
        .map(|piece| {
            sse_frame(&SealedEvent {
                sealed: Some(BASE64.encode(&piece)),
                ..SealedEvent::default()
            })
        });
    let end = futures_util::stream::once(usage).flat_map(|usage| {
        let frames = match usage {
            Ok(usage) => vec![
                sse_frame(&SealedEvent {
                    usage: Some(usage),
                    ..SealedEvent::default()
                }),
                Bytes::from_static(b"data: [DONE]\n\n"),
            ],
            Err(_) => Vec::new(),
        };
        futures_util::stream::iter(frames)
    });
    sse_response(pieces.chain(end))
}

/// The sealed chat request, parsed and held to what was paid for.
fn inner_request(body: &[u8], paid_tokens: u32) -> Result<ChatRequest, ApiError> {
    let request = ChatRequest::parse(body)?;
    if request.venice.character_slug.is_some() {
        // Characters live in the gateway's configuration, which never sees a sealed request.
        return Err(ApiError::invalid(
            "venice_parameters.character_slug",
            "characters are applied by the gateway, which cannot read a sealed request: send the character's prompt as the system message",
        ));
    }
    // Every choice may be as long as max_tokens: all of them together were paid for.
    if let Some(max_tokens) = request
        .max_tokens
        .filter(|max| max.saturating_mul(request.n) > paid_tokens)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "max_tokens is {max_tokens} for each of {} choices, but the request was paid for {paid_tokens} in all",
                request.n
            ),
        )
        .with_param("max_tokens"));
    }
    Ok(request)
}

/// Writes the reply through `sealer`, ends it with the signed receipt, then hands the token
/// counts to the response.
async fn write_reply(
    state: &AppState,
    mut sealer: ReplySealer,
    reply: Reply,
    usage_sender: oneshot::Sender<Usage>,
    permit: OwnedSemaphorePermit,
) -> std::io::Result<()> {
    let mut usage = Usage::default();
    match reply {
        Reply::Refused(error) => {
            sealer.head(error.status(), "application/json").await?;
            sealer.whole(error.body(Dialect::OpenAi).as_bytes()).await?;
        }
        Reply::Generated {
            response,
            stream,
            include_usage,
        } => {
            let mut frames = response.into_body().into_data_stream();
            let mut splitter = EventSplitter::new(MAX_BACKEND_EVENT_BYTES);
            let mut gathered = Gathered::default();
            let mut started = false;
            while let Some(frame) = frames.next().await {
                let frame = frame.map_err(std::io::Error::other)?;
                if !started {
                    // Written with the first token, so that the gateway's wait for a first
                    // token means the same as for a request in the clear.
                    let content_type = if stream {
                        "text/event-stream"
                    } else {
                        "application/json"
                    };
                    sealer.head(200, content_type).await?;
                    started = true;
                }
                for event in splitter.push(&frame) {
                    let parsed = BackendEvent::parse(&event);
                    if let BackendEvent::Chunk(chunk) = &parsed
                        && let Some(counted) = chunk.usage
                    {
                        usage = counted;
                        if !include_usage && stream {
                            continue;
                        }
                    }
                    if stream {
                        sealer.events(&event).await?;
                    } else {
                        gathered.push(parsed);
                    }
                }
            }
            if !stream {
                sealer.whole(&gathered.into_body()).await?;
            }
        }
    }
    finish_with_receipt(state, sealer, usage).await?;
    drop(permit);
    let _ = usage_sender.send(usage);
    Ok(())
}

/// Ends a sealed reply with this provider's receipt: signed over the request's and the
/// reply's hashes, the model, and `usage` (tokens, or images as prompt units).
pub(crate) async fn finish_with_receipt(
    state: &AppState,
    sealer: ReplySealer,
    usage: Usage,
) -> std::io::Result<()> {
    let advert = state.backend.advert();
    let receipt = Receipt {
        purpose: RECEIPT_PURPOSE.into(),
        provider: provider_id(&state.identity.verifying_key()),
        model: advert.id,
        quantization: advert.quantization,
        request_sha256: sealer.request_sha256(),
        response_sha256: String::new(),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        issued_at_ms: wire::clock::unix_millis(),
    };
    sealer
        .finish(|response_sha256| {
            let receipt = Receipt {
                response_sha256,
                ..receipt
            };
            SignedEnvelope::sign(&state.identity, &receipt)
                .ok()
                .and_then(|envelope| serde_json::to_string(&envelope).ok())
                // Unreachable for these types; the client would see an unverifiable receipt.
                .unwrap_or_default()
        })
        .await
}

/// A sealed image request (Venice's `/image/generate` body, opened by the caller), held to
/// the images it was paid for: the images made and the Venice-shaped answer written through
/// `sealer`, ended with this provider's receipt (whose prompt count is the images made). A
/// refusal that may quote the request is said inside the seal; busy and broken are said in the
/// clear, so that the gateway tries another provider.
pub(crate) async fn image_request(
    state: Arc<AppState>,
    body: &[u8],
    paid: u32,
    mut sealer: ReplySealer,
    sealed_reply: tokio::io::DuplexStream,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    let model_id = state.backend.model_id().to_owned();
    let outcome = crate::images::sealed_images(&state, body, paid, &model_id).await;
    if let Err(error) = &outcome
        && (error.status() == 429 || error.status() >= 500)
    {
        return error_response(error);
    }
    let (usage_sender, usage) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let written = async {
            let usage = match outcome {
                Err(error) => {
                    sealer.head(error.status(), "application/json").await?;
                    sealer
                        .whole(error.body(wire::error::Dialect::Venice).as_bytes())
                        .await?;
                    wire::chat::Usage::default()
                }
                Ok((answer, made)) => {
                    sealer.head(200, "application/json").await?;
                    sealer
                        .whole(&serde_json::to_vec(&answer).unwrap_or_default())
                        .await?;
                    wire::chat::Usage::counts(made, 0)
                }
            };
            finish_with_receipt(&state, sealer, usage).await?;
            Ok::<_, std::io::Error>(usage)
        }
        .await;
        drop(permit);
        match written {
            Ok(usage) => {
                let _ = usage_sender.send(usage);
            }
            Err(error) => tracing::debug!(%error, "a sealed image reply ended early"),
        }
    });
    sealed_response(sealed_reply, usage)
}

/// One event of the backend's stream.
enum BackendEvent {
    Chunk(Box<ChatCompletionChunk>),
    Error(serde_json::Value),
    Other,
}

impl BackendEvent {
    fn parse(event: &[u8]) -> Self {
        let data: String = String::from_utf8_lossy(event)
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(str::trim_start)
            .collect();
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&data) else {
            return Self::Other;
        };
        if let Some(error) = value.get("error") {
            return Self::Error(serde_json::json!({ "error": error }));
        }
        serde_json::from_value(value).map_or(Self::Other, |chunk| Self::Chunk(Box::new(chunk)))
    }
}

/// A stream gathered into one `chat.completion`, for a sealed request that did not ask to
/// stream.
#[derive(Default)]
struct Gathered {
    id: String,
    created: u64,
    model: String,
    /// By choice index; the backend sends at most the choices the request asked for.
    choices: std::collections::BTreeMap<u32, GatheredChoice>,
    usage: Usage,
    error: Option<serde_json::Value>,
}

#[derive(Default)]
struct GatheredChoice {
    content: String,
    reasoning: String,
    finish_reason: Option<String>,
    calls: wire::tools::ToolCallGatherer,
    logprobs: Option<Vec<wire::chat::TokenLogprob>>,
}

/// Most choices a gathered reply holds (the request's `n` is at most this).
const MAX_GATHERED_CHOICES: u32 = 8;

impl Gathered {
    fn push(&mut self, event: BackendEvent) {
        match event {
            BackendEvent::Chunk(chunk) => {
                if self.id.is_empty() {
                    self.id = chunk.id;
                    self.created = chunk.created;
                    self.model = chunk.model;
                }
                if let Some(usage) = chunk.usage {
                    self.usage = usage;
                }
                for choice in chunk.choices {
                    if choice.index >= MAX_GATHERED_CHOICES {
                        continue;
                    }
                    let gathered = self.choices.entry(choice.index).or_default();
                    if let Some(text) = choice.delta.content {
                        gathered.content.push_str(&text);
                    }
                    if let Some(text) = choice.delta.reasoning_content {
                        gathered.reasoning.push_str(&text);
                    }
                    if let Some(logprobs) = choice.logprobs {
                        gathered
                            .logprobs
                            .get_or_insert_default()
                            .extend(logprobs.content);
                    }
                    for delta in choice.delta.tool_calls.iter().flatten() {
                        if let Err(error) = gathered.calls.push(delta) {
                            self.error = Some(serde_json::json!({ "error": {
                                "message": error.to_string(),
                                "code": ErrorCode::UpstreamError.as_str(),
                            }}));
                        }
                    }
                    if choice.finish_reason.is_some() {
                        gathered.finish_reason = choice.finish_reason;
                    }
                }
            }
            BackendEvent::Error(error) => self.error = Some(error),
            BackendEvent::Other => {}
        }
    }

    fn into_body(self) -> Vec<u8> {
        let body = match self.error {
            Some(error) => error,
            None => {
                let choices: Vec<serde_json::Value> = self
                    .choices
                    .into_iter()
                    .map(|(index, choice)| {
                        let calls = choice.calls.finish();
                        let mut message = serde_json::json!({
                            "role": "assistant",
                            "content": if calls.is_empty() || !choice.content.is_empty() {
                                serde_json::Value::from(choice.content)
                            } else {
                                serde_json::Value::Null
                            },
                        });
                        if !choice.reasoning.is_empty() {
                            message["reasoning_content"] = choice.reasoning.into();
                        }
                        if !calls.is_empty() {
                            message["tool_calls"] = serde_json::to_value(calls).unwrap_or_default();
                        }
                        serde_json::json!({
                            "index": index,
                            "message": message,
                            "finish_reason": choice.finish_reason.unwrap_or_else(|| "stop".into()),
                            "logprobs": choice.logprobs.map(|content| serde_json::json!({ "content": content })),
                        })
                    })
                    .collect();
                serde_json::json!({
                    "id": self.id,
                    "object": "chat.completion",
                    "created": self.created,
                    "model": self.model,
                    "choices": choices,
                    "usage": self.usage,
                })
            }
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}
