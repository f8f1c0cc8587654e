//! `POST /chat/completions`: the chat operation on the request pipeline. Its body is parsed
//! and checked, its model resolved through the catalogue (ids, traits, aliases), and it is
//! priced per token; then a provider is tried until one produces a first token, and the stream
//! is relayed chunk by chunk (or gathered for a non-streaming reply).
//!
//! The request a provider receives is rebuilt from parsed fields only: no client header,
//! address, key or `user` field reaches it, and it carries a fresh random request id. Nothing
//! here logs or stores content; the request's one log line (ids, model, provider, sizes,
//! status and timings) is written by its settlement record.

mod upstream;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;
use wire::chat::{
    ChatCompletion, ChatCompletionChunk, ChatRequest, Choice, ChoiceLogprobs, Cost, Message,
    ProviderChatRequest, ResponseMessage, Role, Usage,
};
use wire::error::{ApiError, ErrorCode};
use wire::money::Amount;
use wire::provider::PROVIDER_CHAT_PATH;
use wire::tools::{FunctionCallDelta, ToolCallDelta, ToolCallGatherer};

use self::upstream::UpstreamStream;
use crate::AppState;
use crate::catalogue::LiveModels;
use crate::pipeline::dispatch::{Failure, FailureKind, dispatch_with, send_to_provider};
use crate::pipeline::events::upstream_error;
use crate::pipeline::pricing::{UsageBound, estimate_prompt_tokens};
use crate::pipeline::respond::{insert_header, sse_data};
use crate::pipeline::settlement::{Record, Tally};
use crate::pipeline::{Admitted, Operation, Resolved};
use crate::registry::{Attempt, Provider};
use crate::thinking::ThinkingFilter;

/// Leading chunks with nothing in them (a bare role announcement) that are held back while
/// waiting for the first token; a provider sending more than this before any text is faulty.
const MAX_EMPTY_LEADING_CHUNKS: usize = 8;
/// Most bytes of events gathered into one frame of a streamed reply.
const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Most token log-probabilities gathered into a whole reply; a provider sending more is cut
/// there (each is a token, and no reply here is longer).
const MAX_LOGPROB_ENTRIES: usize = 65_536;

/// The chat operation.
pub(crate) struct Chat;

impl Operation for Chat {
    const ROUTE: &'static str = "chat";
    const ID_PREFIX: &'static str = "chatcmpl";
    type Request = ChatRequest;

    fn body_limit(state: &AppState) -> usize {
        state.config.limits.max_body_bytes
    }

    fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
        crate::pipeline::check_json_content_type(headers)
    }

    fn parse(
        state: &AppState,
        _headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<ChatRequest, ApiError> {
        let limits = &state.config.limits;
        let mut request = ChatRequest::parse(body)?;
        if let Some(slug) = request.venice.character_slug.clone() {
            play_character(state.config.characters.get(&slug)?, &mut request);
        }
        if request.messages.len() > limits.max_messages {
            return Err(ApiError::invalid(
                "messages",
                format!(
                    "at most {} messages are allowed per request",
                    limits.max_messages
                ),
            ));
        }
        if let Some(max_tokens) = request
            .max_tokens
            .filter(|max| *max > limits.max_output_tokens)
        {
            return Err(ApiError::new(
                ErrorCode::TooManyTokens,
                format!(
                    "max_tokens is {max_tokens}; this server allows at most {}",
                    limits.max_output_tokens
                ),
            )
            .with_param("max_tokens"));
        }
        Ok(request)
    }

    fn resolve(
        state: &AppState,
        request: &ChatRequest,
        live: &LiveModels,
    ) -> Result<Resolved, ApiError> {
        let resolved = state
            .catalogue
            .resolve(&request.model, live)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::ModelNotFound,
                    format!(
                        "model {:?} is not served here; GET /v1/models lists the models",
                        request.model
                    ),
                )
                .with_param("model")
            })?;
        let model_id = resolved.model_id;
        let advert = live.get(&model_id).map(|(advert, _)| advert);
        if let Some(advert) = advert
            && advert.model_type != wire::models::ModelType::Text
        {
            return Err(ApiError::invalid(
                "model",
                format!(
                    "model {model_id:?} serves {}, not chat completions; GET /v1/models lists the chat models",
                    advert.model_type.serves()
                ),
            ));
        }
        if !request.tools.is_empty()
            && advert.is_some_and(|advert| !advert.supports_function_calling)
        {
            return Err(ApiError::invalid(
                "tools",
                format!(
                    "model {model_id:?} does not call tools (supportsFunctionCalling is false in /v1/models)"
                ),
            ));
        }
        if request.logprobs.is_some() && advert.is_some_and(|advert| !advert.supports_logprobs) {
            return Err(ApiError::invalid(
                "logprobs",
                format!(
                    "model {model_id:?} does not give log-probabilities (supportsLogProbs is false in /v1/models)"
                ),
            ));
        }
        let media = request.media();
        if let Some(advert) = advert
            && let Some(kind) = media
                .iter()
                .find(|kind| !advert.input_media.iter().any(|known| known == *kind))
        {
            let takes = if advert.input_media.is_empty() {
                "text only".to_owned()
            } else {
                format!("text and {}", advert.input_media.join(", "))
            };
            return Err(ApiError::invalid(
                "messages",
                format!(
                    "model {model_id:?} takes {takes}, not {kind} (see supportsVision, supportsAudioInput and supportsVideoInput in /v1/models)"
                ),
            ));
        }
        let model_name = advert.map_or_else(|| model_id.clone(), |advert| advert.name.clone());
        Ok(Resolved {
            model_id,
            model_name,
        })
    }

    fn bound(state: &AppState, request: &ChatRequest, body: &Bytes) -> UsageBound {
        let platform_prompt_bytes = if request.venice.include_venice_system_prompt {
            state.config.system_prompt.len()
        } else {
            0
        };
        // A character's prompt is not in the body either.
        let character_prompt_bytes = request
            .venice
            .character_slug
            .as_deref()
            .and_then(|slug| state.config.characters.get(slug).ok())
            .map_or(0, |character| character.system_prompt.len());
        let system_prompt_bytes = platform_prompt_bytes + character_prompt_bytes;
        // Each choice may be as long as `max_tokens`.
        UsageBound::for_chat(
            body.len(),
            request.messages.len(),
            system_prompt_bytes,
            request
                .max_tokens
                .unwrap_or(state.config.limits.max_output_tokens)
                .saturating_mul(request.n),
        )
    }

    async fn respond(admitted: Admitted<ChatRequest>) -> Result<Response, ApiError> {
        let Admitted { request, paid } = admitted;
        let state = Arc::clone(&paid.state);
        let model = Resolved {
            model_id: paid.model.model_id.clone(),
            model_name: paid.model.model_name.clone(),
        };
        let mut provider_request = provider_request(&state, &request, &model.model_id);
        provider_request.cache_namespace = crate::prompt_cache::namespace(
            &state.prompt_cache_secret,
            paid.cache_scope.as_deref(),
            request.prompt_cache_key.as_deref(),
            wire::clock::unix_seconds() / 86_400,
        );
        let prompt_estimate = estimate_prompt_tokens(
            provider_request
                .messages
                .iter()
                .map(|message| message.content.len())
                .sum(),
        );
        let provider_body = Bytes::from(serde_json::to_vec(&provider_request).map_err(|_| {
            ApiError::new(
                ErrorCode::Internal,
                "the provider request could not be encoded",
            )
        })?);
        let committed = dispatch(&state, &model.model_id, provider_body).await?;
        let tally = Tally::new(paid.bound, prompt_estimate);
        let record = paid
            .commit(
                Self::ROUTE,
                "chat completion",
                &committed.attempt.provider,
                committed.attempts,
                tally,
            )
            .await?;
        let relay = Relay {
            record,
            created: wire::clock::unix_seconds(),
            include_usage: request.include_usage,
            strip_thinking: request.venice.strip_thinking_response
                || request.venice.disable_thinking,
            choices: (0..request.n).map(|_| ChoiceState::default()).collect(),
            steps: VecDeque::new(),
            pending: committed.first_chunks.into(),
            upstream: Some(committed.stream),
            legacy_functions: request.legacy_functions,
        };
        let wants_logprobs = request.logprobs.is_some();
        let mut response = if request.stream {
            stream_response(relay)
        } else {
            complete_response(relay, request.venice.echo(), wants_logprobs).await?
        };
        let headers = response.headers_mut();
        insert_header(headers, "x-venice-model-id", &model.model_id);
        insert_header(headers, "x-venice-model-name", &model.model_name);
        if !request.venice.ignored.is_empty() {
            // Streamed replies carry no echo: what had no effect is said here for every reply.
            insert_header(
                headers,
                "x-gondola-ignored-parameters",
                &request.venice.ignored_names().join(", "),
            );
        }
        Ok(response)
    }
}

/// Makes `request` a conversation with `character`: its prompt first (before the client's own
/// system message, in one system message), played by its model if it names one.
fn play_character(character: &crate::characters::Character, request: &mut ChatRequest) {
    if let Some(model) = &character.model {
        request.model.clone_from(model);
    }
    match request.messages.first_mut() {
        Some(first) if matches!(first.role, Role::System | Role::Developer) => {
            first.content = format!("{}\n\n{}", character.system_prompt, first.content);
            first.role = Role::System;
        }
        _ => request.messages.insert(
            0,
            Message::text(Role::System, character.system_prompt.clone()),
        ),
    }
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
            _ => messages.insert(0, Message::text(Role::System, platform_prompt)),
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
            first_token(state, provider, body.clone(), economy::random_hex(16))
        })
        .await?;
    Ok(Committed {
        attempt,
        attempts,
        first_chunks,
        stream,
    })
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
                            || choice
                                .delta
                                .tool_calls
                                .as_ref()
                                .is_some_and(|calls| !calls.is_empty())
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

/// Carries one request from its provider to its client; its record settles the request when it
/// is dropped (which also covers a client that goes away mid-stream).
struct Relay {
    record: Record,
    created: u64,
    include_usage: bool,
    strip_thinking: bool,
    /// One per choice the request asked for (`n`).
    choices: Vec<ChoiceState>,
    /// Steps decided already, handed out before anything else.
    steps: VecDeque<Step>,
    pending: VecDeque<ChatCompletionChunk>,
    upstream: Option<UpstreamStream>,
    /// The request sent legacy `functions`: calls go out as `function_call`.
    legacy_functions: bool,
}

/// What the relay keeps for one choice of the reply.
#[derive(Default)]
struct ChoiceState {
    thinking: ThinkingFilter,
    finish_reason: Option<String>,
    sent_role: bool,
}

/// What the relay hands its client next.
enum Step {
    /// For choice `index`: visible text (possibly empty), pieces of tool calls, and at the
    /// end the finish reason.
    Chunk {
        index: u32,
        content: String,
        reasoning: Option<String>,
        tool_calls: Option<Vec<ToolCallDelta>>,
        logprobs: Option<ChoiceLogprobs>,
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
            if let Some(step) = self.steps.pop_front() {
                return Some(step);
            }
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
                            // What each choice's thinking filter held back is text after all.
                            for (index, choice) in (0u32..).zip(self.choices.iter_mut()) {
                                let tail = if self.strip_thinking {
                                    choice.thinking.finish()
                                } else {
                                    String::new()
                                };
                                if !tail.is_empty() {
                                    self.steps.push_back(Step::Chunk {
                                        index,
                                        content: tail,
                                        reasoning: None,
                                        tool_calls: None,
                                        logprobs: None,
                                        finish_reason: None,
                                    });
                                }
                            }
                            self.steps.push_back(Step::End);
                            continue;
                        }
                        Err(error) => {
                            self.upstream = None;
                            return Some(Step::Failed(error));
                        }
                    }
                }
            };
            let ChatCompletionChunk {
                id,
                object,
                created,
                model,
                choices,
                usage,
            } = chunk;
            if let Some(usage) = usage {
                self.record.tally.report(usage);
            }
            let mut choices = choices.into_iter();
            let Some(choice) = choices.next() else {
                continue;
            };
            // A chunk with several choices is taken one choice at a time.
            let rest: Vec<_> = choices.collect();
            if !rest.is_empty() {
                self.pending.push_front(ChatCompletionChunk {
                    id,
                    object,
                    created,
                    model,
                    choices: rest,
                    usage: None,
                });
            }
            let index = choice.index;
            let Some(slot) = usize::try_from(index)
                .ok()
                .filter(|slot| *slot < self.choices.len())
            else {
                self.upstream = None;
                self.pending.clear();
                return Some(Step::Failed(upstream_error(
                    ErrorCode::UpstreamError,
                    "the provider sent a choice the request did not ask for",
                )));
            };
            let mut content = choice.delta.content.unwrap_or_default();
            let mut reasoning = choice
                .delta
                .reasoning_content
                .filter(|text| !text.is_empty());
            let tool_calls = choice.delta.tool_calls.filter(|calls| !calls.is_empty());
            let logprobs = choice
                .logprobs
                .filter(|logprobs| !logprobs.content.is_empty());
            if !content.is_empty()
                || reasoning.is_some()
                || tool_calls.is_some()
                || logprobs.is_some()
            {
                // Each piece of text is at least one token. A provider that sends more pieces
                // than the request paid for is cut off there: the reply ends as if it had
                // reached max_tokens, and the excess counts against the provider.
                if self.record.tally.at_bound() {
                    self.record.tally.sent_past_bound();
                    self.upstream = None;
                    self.pending.clear();
                    for (index, choice) in (0u32..).zip(self.choices.iter_mut()) {
                        if choice.finish_reason.is_none() {
                            choice.finish_reason = Some("length".into());
                            self.steps.push_back(Step::Chunk {
                                index,
                                content: String::new(),
                                reasoning: None,
                                tool_calls: None,
                                logprobs: None,
                                finish_reason: Some("length".into()),
                            });
                        }
                    }
                    self.steps.push_back(Step::End);
                    continue;
                }
                self.record.tally.delivered_one();
            }
            let state = &mut self.choices[slot];
            if self.strip_thinking {
                content = state.thinking.push(&content);
                reasoning = None;
            }
            if (!content.is_empty() || tool_calls.is_some()) && self.record.first_token_at.is_none()
            {
                self.record.first_token_at = Some(Instant::now());
            }
            let finish_reason = choice.finish_reason.map(|reason| {
                if self.legacy_functions && reason == "tool_calls" {
                    "function_call".to_owned()
                } else {
                    reason
                }
            });
            if let Some(reason) = &finish_reason {
                state.finish_reason = Some(reason.clone());
            }
            if content.is_empty()
                && reasoning.is_none()
                && tool_calls.is_none()
                && logprobs.is_none()
                && finish_reason.is_none()
                && state.sent_role
            {
                continue;
            }
            return Some(Step::Chunk {
                index,
                content,
                reasoning,
                tool_calls,
                logprobs,
                finish_reason,
            });
        }
    }

    /// What the request is charged for (see [`Tally::settle`]).
    fn usage(&self) -> Usage {
        self.record.usage()
    }

    fn cost(&self) -> Cost {
        let (usd, diem) = self.record.cost_split();
        Cost {
            usd: Amount(usd),
            diem: Amount(diem),
        }
    }

    fn chunk_json(
        &mut self,
        index: u32,
        content: String,
        reasoning: Option<String>,
        tool_calls: Option<Vec<ToolCallDelta>>,
        logprobs: Option<ChoiceLogprobs>,
        finish_reason: Option<String>,
    ) -> Bytes {
        let state = usize::try_from(index)
            .ok()
            .and_then(|slot| self.choices.get_mut(slot));
        let role = state.map(|state| {
            let first = !state.sent_role;
            state.sent_role = true;
            first
        });
        let role = role.unwrap_or(false).then_some(Role::Assistant);
        // Calls carry no text: their chunks say `content: null`, as OpenAI's do.
        let content = (tool_calls.is_none() || !content.is_empty()).then_some(content);
        let (tool_calls, function_call) = match tool_calls {
            Some(calls) if self.legacy_functions => (None, legacy_function_call(calls)),
            calls => (calls, None),
        };
        let chunk = ChatCompletionChunk {
            id: self.record.request_id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.record.model_id.clone(),
            choices: vec![wire::chat::ChunkChoice {
                index,
                delta: wire::chat::Delta {
                    role,
                    content,
                    reasoning_content: reasoning,
                    tool_calls,
                    function_call,
                },
                finish_reason,
                logprobs,
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
            id: &self.record.request_id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.record.model_id,
            choices: [],
            usage: self.usage(),
            cost: self.cost(),
        })
    }
}

fn stream_response(relay: Relay) -> Response {
    let provider = relay.record.provider.id.clone();
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
                    index,
                    content,
                    reasoning,
                    tool_calls,
                    logprobs,
                    finish_reason,
                } => frame.extend_from_slice(&relay.chunk_json(
                    index,
                    content,
                    reasoning,
                    tool_calls,
                    logprobs,
                    finish_reason,
                )),
                Step::End => {
                    relay.record.status = Some(200);
                    if relay.include_usage {
                        frame.extend_from_slice(&relay.usage_json());
                    }
                    frame.extend_from_slice(b"data: [DONE]\n\n");
                    return Some((Ok::<Bytes, std::convert::Infallible>(frame.into()), None));
                }
                Step::Failed(error) => {
                    relay.record.status = Some(error.status());
                    tracing::info!(request_id = %relay.record.request_id, code = error.code.as_str(), "stream failed after its first byte");
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

/// A legacy reply's call: the first call's pieces, as `function_call`.
fn legacy_function_call(calls: Vec<ToolCallDelta>) -> Option<FunctionCallDelta> {
    calls
        .into_iter()
        .filter(|call| call.index == 0)
        .find_map(|call| call.function)
}

/// One choice of a whole reply, as it is gathered.
#[derive(Default)]
struct GatheredChoice {
    content: String,
    reasoning: String,
    calls: ToolCallGatherer,
    logprobs: Vec<wire::chat::TokenLogprob>,
}

async fn complete_response(
    mut relay: Relay,
    venice_echo: serde_json::Value,
    wants_logprobs: bool,
) -> Result<Response, ApiError> {
    let mut gathered: Vec<GatheredChoice> = relay
        .choices
        .iter()
        .map(|_| GatheredChoice::default())
        .collect();
    let mut logprob_entries = 0usize;
    loop {
        match relay.step().await {
            Step::Chunk {
                index,
                content: text,
                reasoning: thought,
                tool_calls,
                logprobs,
                ..
            } => {
                // The relay hands out only the choices the request asked for.
                let Some(choice) = usize::try_from(index)
                    .ok()
                    .and_then(|slot| gathered.get_mut(slot))
                else {
                    continue;
                };
                choice.content.push_str(&text);
                if let Some(logprobs) = logprobs {
                    let room = MAX_LOGPROB_ENTRIES.saturating_sub(logprob_entries);
                    let taken: Vec<_> = logprobs.content.into_iter().take(room).collect();
                    logprob_entries += taken.len();
                    choice.logprobs.extend(taken);
                }
                if let Some(thought) = thought {
                    choice.reasoning.push_str(&thought);
                }
                for delta in tool_calls.iter().flatten() {
                    if let Err(error) = choice.calls.push(delta) {
                        relay.record.status = Some(502);
                        return Err(upstream_error(ErrorCode::UpstreamError, &error.to_string()));
                    }
                }
            }
            Step::End => break,
            Step::Failed(error) => {
                relay.record.status = Some(error.status());
                return Err(error);
            }
        }
    }
    relay.record.status = Some(200);
    let usage = relay.usage();
    let choices = (0u32..)
        .zip(gathered)
        .zip(&relay.choices)
        .map(|((index, choice), state)| {
            let calls = choice.calls.finish();
            let (tool_calls, function_call) = if calls.is_empty() {
                (None, None)
            } else if relay.legacy_functions {
                (None, calls.into_iter().next().map(|call| call.function))
            } else {
                (Some(calls), None)
            };
            let has_calls = tool_calls.is_some() || function_call.is_some();
            Choice {
                index,
                message: ResponseMessage {
                    role: Role::Assistant,
                    content: (!has_calls || !choice.content.is_empty()).then_some(choice.content),
                    reasoning_content: (!choice.reasoning.is_empty()).then_some(choice.reasoning),
                    tool_calls,
                    function_call,
                },
                finish_reason: state.finish_reason.clone().unwrap_or_else(|| "stop".into()),
                logprobs: wants_logprobs.then_some(ChoiceLogprobs {
                    content: choice.logprobs,
                }),
            }
        })
        .collect();
    let completion = ChatCompletion {
        id: relay.record.request_id.clone(),
        object: "chat.completion",
        created: relay.created,
        model: relay.record.model_id.clone(),
        choices,
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
        &relay.record.provider.id,
    );
    Ok(response)
}
