//! The embedded engine as a provider backend: a gateway's chat request turned into an engine
//! request, and the engine's events turned into OpenAI stream chunks, tool calls included.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::StreamExt;

use axum::response::Response;
use bytes::Bytes;
use engine::{
    Engine, Event, FinishReason, GenerationRequest, OutputFormat, ParsedReply, ReplyParser,
    ToolCallMessage, ToolMode, ToolSpec, ToolUse,
};
use wire::chat::{
    ChatCompletionChunk, ChoiceLogprobs, ChunkChoice, CompletionTokensDetails, Delta, Message,
    PromptTokensDetails, ProviderChatRequest, ResponseFormat, Role, TokenLogprob, TopLogprob,
    Usage,
};
use wire::error::{ApiError, ErrorCode};
use wire::tools::{FunctionCall, ToolCall, ToolCallDelta, ToolChoice};

use crate::{sse_frame, sse_response, submit_error};

/// The engine's streamed answer to `request`.
pub(crate) async fn generate(
    engine: &Arc<Engine>,
    model_id: &str,
    request: ProviderChatRequest,
    request_id: String,
) -> Result<Response, ApiError> {
    if let Some(part) = request.messages.iter().flat_map(Message::media).next() {
        // The gateway checks the model's inputs first; this holds for a sealed request too.
        return Err(ApiError::invalid(
            "messages",
            format!("this model reads text only, not {part} parts"),
        ));
    }
    let format = match ResponseFormat::from_openai(request.response_format.as_ref())? {
        ResponseFormat::Text => OutputFormat::Text,
        ResponseFormat::JsonObject => OutputFormat::JsonObject,
        ResponseFormat::JsonSchema(schema) => OutputFormat::JsonSchema(schema.to_string()),
    };
    let tools = tool_use(&request);
    let choices = request.n.unwrap_or(1).clamp(1, MAX_CHOICES);
    let cache_namespace = request.cache_namespace_bytes();
    let generation = GenerationRequest {
        messages: request.messages.into_iter().map(engine_message).collect(),
        sampling: sampling(&request.sampling),
        max_tokens: request.max_tokens.max(1),
        stop: request.stop,
        stop_tokens: request.stop_token_ids,
        format,
        enable_thinking: request
            .chat_template_kwargs
            .is_none_or(|kwargs| kwargs.enable_thinking),
        tools,
        logprobs: request.logprobs.then(|| request.top_logprobs.unwrap_or(0)),
        cache_namespace,
    };
    let tool_format = generation.tools.as_ref().map(|_| engine.info().tool_format);
    // Rendering, tokenizing and building the grammar take milliseconds to a second for the
    // largest bodies: off the serving thread, which has other connections to answer.
    let reasons = engine.info().supports_reasoning;
    let engine = Arc::clone(engine);
    let receivers = tokio::task::spawn_blocking(move || {
        // Each choice is a generation of its own; with a seed, choice i samples with seed + i
        // so that they differ (as they do without one).
        (0..choices)
            .map(|index| {
                let mut one = generation.clone();
                one.sampling.seed = one.sampling.seed.map(|seed| seed.wrapping_add(index));
                engine.submit(one)
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|_| ApiError::new(ErrorCode::Internal, "the engine could not take the request"))?
    .map_err(submit_error)?;
    let events = futures_util::stream::select_all(receivers.into_iter().zip(0u32..).map(
        |(receiver, index)| {
            futures_util::stream::unfold(receiver, |mut receiver| async move {
                let event = receiver.recv().await?;
                Some((event, receiver))
            })
            .map(move |event| (index, event))
            .boxed()
        },
    ));
    let state = EmbeddedStream {
        events,
        chunks: Chunks {
            id: request_id,
            model: model_id.to_owned(),
            created: wire::clock::unix_seconds(),
        },
        choices: (0..choices)
            .map(|_| ChoiceStream {
                parser: tool_format.map(ReplyParser::new),
                calls: 0,
                logprobs: Vec::new(),
                first: true,
                done: None,
            })
            .collect(),
        reasons,
        include_usage: request.stream_options.include_usage,
        pending: VecDeque::new(),
        finished: false,
    };
    let frames = futures_util::stream::unfold(state, |mut state| async move {
        let frame = state.next_frame().await?;
        Some((frame, state))
    });
    Ok(sse_response(frames))
}

/// Most choices one request may ask for.
const MAX_CHOICES: u32 = 8;

fn sampling(requested: &wire::chat::Sampling) -> engine::Sampling {
    let defaults = engine::Sampling::default();
    engine::Sampling {
        temperature: requested.temperature.unwrap_or(defaults.temperature),
        top_p: requested.top_p.unwrap_or(defaults.top_p),
        top_k: requested.top_k.map_or(defaults.top_k, |top_k| {
            i32::try_from(top_k).unwrap_or(i32::MAX)
        }),
        min_p: requested.min_p.unwrap_or(defaults.min_p),
        repetition_penalty: requested
            .repetition_penalty
            .unwrap_or(defaults.repetition_penalty),
        frequency_penalty: requested
            .frequency_penalty
            .unwrap_or(defaults.frequency_penalty),
        presence_penalty: requested
            .presence_penalty
            .unwrap_or(defaults.presence_penalty),
        seed: requested.seed,
    }
}

/// The request's tools as the engine takes them; `None` when there are none or the client
/// chose `none` (the conversation's earlier calls and results are still rendered).
fn tool_use(request: &ProviderChatRequest) -> Option<ToolUse> {
    let mode = match request.tool_choice.as_ref().unwrap_or(&ToolChoice::Auto) {
        _ if request.tools.is_empty() => return None,
        ToolChoice::None => return None,
        ToolChoice::Auto => ToolMode::Auto,
        ToolChoice::Required => ToolMode::Required,
        ToolChoice::Function(name) => ToolMode::Named(name.clone()),
    };
    Some(ToolUse {
        tools: request
            .tools
            .iter()
            .map(|tool| ToolSpec {
                name: tool.function.name.clone(),
                description: tool.function.description.clone(),
                parameters: tool.function.parameters.clone(),
            })
            .collect(),
        mode,
        parallel: request.parallel_tool_calls.unwrap_or(true),
    })
}

fn engine_message(message: Message) -> engine::ChatMessage {
    engine::ChatMessage {
        role: message.role.as_str().to_owned(),
        content: message.content,
        tool_calls: message
            .tool_calls
            .into_iter()
            .map(|call| ToolCallMessage {
                id: call.id,
                name: call.function.name,
                arguments: call.function.arguments,
            })
            .collect(),
        tool_call_id: message.tool_call_id,
        name: message.name,
    }
}

/// Writes the chunks of one reply.
struct Chunks {
    id: String,
    model: String,
    created: u64,
}

impl Chunks {
    fn choice(
        &self,
        index: u32,
        delta: Delta,
        finish_reason: Option<&str>,
        logprobs: Vec<TokenLogprob>,
    ) -> Bytes {
        sse_frame(&ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index,
                delta,
                finish_reason: finish_reason.map(str::to_owned),
                logprobs: (!logprobs.is_empty()).then_some(ChoiceLogprobs { content: logprobs }),
            }],
            usage: None,
        })
    }

    fn usage(&self, usage: Usage) -> Bytes {
        sse_frame(&ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: Vec::new(),
            usage: Some(usage),
        })
    }
}

/// Turns engine events into SSE frames. Dropping it (the gateway hung up) drops the engine's
/// receivers, which cancels the generations at the engine's next step.
struct EmbeddedStream {
    /// Every choice's events, each tagged with its choice.
    events: futures_util::stream::SelectAll<futures_util::stream::BoxStream<'static, (u32, Event)>>,
    chunks: Chunks,
    choices: Vec<ChoiceStream>,
    /// The model can reason (its template has thinking controls).
    reasons: bool,
    include_usage: bool,
    pending: VecDeque<Bytes>,
    finished: bool,
}

/// One choice of the reply as it is written.
struct ChoiceStream {
    /// Reads tool calls out of the text, for a request with tools.
    parser: Option<ReplyParser>,
    /// Calls sent so far (the index of the next one).
    calls: u32,
    /// Log-probabilities of tokens whose text has not gone out yet.
    logprobs: Vec<TokenLogprob>,
    first: bool,
    /// How its generation ended, once it has.
    done: Option<engine::Completion>,
}

impl ChoiceStream {
    fn role(&mut self) -> Option<Role> {
        let role = self.first.then_some(Role::Assistant);
        self.first = false;
        role
    }
}

impl EmbeddedStream {
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Some(frame);
            }
            if self.finished {
                return None;
            }
            let Some((index, event)) = self.events.next().await else {
                self.finished = true;
                return Some(Bytes::from(
                    ApiError::new(ErrorCode::InferenceFailed, "the engine stopped").sse_event(),
                ));
            };
            let slot = usize::try_from(index).unwrap_or(usize::MAX);
            match event {
                Event::Text(text) => {
                    let choice = &mut self.choices[slot];
                    match choice.parser.as_mut() {
                        Some(parser) => {
                            let piece = parser.push(&text);
                            self.queue(index, piece);
                        }
                        None => {
                            let delta = Delta {
                                role: choice.role(),
                                ..Delta::text(text)
                            };
                            let logprobs = std::mem::take(&mut choice.logprobs);
                            return Some(self.chunks.choice(index, delta, None, logprobs));
                        }
                    }
                }
                Event::Logprob(token) => self.choices[slot].logprobs.push(wire_logprob(token)),
                Event::Done(completion) => self.end(index, completion),
                Event::Failed(reason) => {
                    self.finished = true;
                    tracing::warn!(%reason, "generation failed");
                    return Some(Bytes::from(
                        ApiError::new(ErrorCode::InferenceFailed, "the engine failed").sse_event(),
                    ));
                }
            }
        }
    }

    /// Queues a chunk for the text and one for the calls the parser handed out, if any.
    fn queue(&mut self, index: u32, piece: ParsedReply) {
        let slot = usize::try_from(index).unwrap_or(usize::MAX);
        let choice = &mut self.choices[slot];
        if !piece.content.is_empty() {
            let delta = Delta {
                role: choice.role(),
                ..Delta::text(piece.content)
            };
            let logprobs = std::mem::take(&mut choice.logprobs);
            self.pending
                .push_back(self.chunks.choice(index, delta, None, logprobs));
        }
        if piece.calls.is_empty() {
            return;
        }
        let calls = piece
            .calls
            .into_iter()
            .map(|call| {
                let call_index = choice.calls;
                choice.calls += 1;
                ToolCallDelta::whole(
                    call_index,
                    &ToolCall {
                        id: format!("call_{}", random_call_id()),
                        kind: "function".into(),
                        function: FunctionCall {
                            name: call.name,
                            arguments: call.arguments,
                        },
                    },
                )
            })
            .collect();
        let delta = Delta {
            role: choice.role(),
            content: None,
            tool_calls: Some(calls),
            ..Delta::default()
        };
        let logprobs = std::mem::take(&mut choice.logprobs);
        self.pending
            .push_back(self.chunks.choice(index, delta, None, logprobs));
    }

    /// Queues a choice's last frames (held text and calls, its finish reason); after the last
    /// choice, the usage of them all and the end of the stream.
    fn end(&mut self, index: u32, completion: engine::Completion) {
        let slot = usize::try_from(index).unwrap_or(usize::MAX);
        if let Some(parser) = self.choices[slot].parser.take() {
            let rest = parser.finish();
            self.queue(index, rest);
        }
        let choice = &mut self.choices[slot];
        let reason = match completion.finish_reason {
            // A reply that called tools says so; one cut by max_tokens keeps "length".
            FinishReason::Stop if choice.calls > 0 => "tool_calls",
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        };
        let last = Delta {
            role: choice.role(),
            ..Delta::text("")
        };
        let logprobs = std::mem::take(&mut choice.logprobs);
        choice.done = Some(completion);
        self.pending
            .push_back(self.chunks.choice(index, last, Some(reason), logprobs));
        if self.choices.iter().any(|choice| choice.done.is_none()) {
            return;
        }
        self.finished = true;
        if self.include_usage {
            // One prompt, read once per choice; the completions add up.
            let prompt_tokens = u64::from(completion.prompt_tokens);
            let completion_tokens = self
                .choices
                .iter()
                .filter_map(|choice| choice.done)
                .map(|done| u64::from(done.completion_tokens))
                .sum();
            self.pending.push_back(
                self.chunks.usage(Usage {
                    // What of the prompt the engine's prompt cache held (the first choice's: the
                    // others read the same prompt).
                    prompt_tokens_details: Some(PromptTokensDetails {
                        cached_tokens: u64::from(
                            self.choices
                                .first()
                                .and_then(|choice| choice.done)
                                .map_or(0, |done| done.cached_tokens),
                        ),
                    }),
                    // A model that does not reason spends nothing on reasoning; one that does is
                    // not counted apart.
                    completion_tokens_details: (!self.reasons).then_some(CompletionTokensDetails {
                        reasoning_tokens: 0,
                    }),
                    ..Usage::counts(prompt_tokens, completion_tokens)
                }),
            );
        }
        self.pending
            .push_back(Bytes::from_static(b"data: [DONE]\n\n"));
    }
}

/// A token's log-probability as the API writes it: the token as text (lossy where it holds
/// part of a character) and its exact bytes.
fn wire_logprob(token: engine::TokenLogprob) -> TokenLogprob {
    TokenLogprob {
        token: String::from_utf8_lossy(&token.bytes).into_owned(),
        logprob: token.logprob,
        bytes: Some(token.bytes),
        top_logprobs: token
            .top
            .into_iter()
            .map(|(bytes, logprob)| TopLogprob {
                token: String::from_utf8_lossy(&bytes).into_owned(),
                logprob,
                bytes: Some(bytes),
            })
            .collect(),
    }
}

/// A random call id: 24 hex digits, like the ids OpenAI gives its calls.
fn random_call_id() -> String {
    let bytes: [u8; 12] = rand::random();
    hex::encode(bytes)
}
