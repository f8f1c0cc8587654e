//! Chat completions: the request as clients send it, the validated request the gateway works
//! with, and the response and stream chunk shapes.
//!
//! Parsing is liberal where generic OpenAI clients differ (unknown fields, nulls, `user`,
//! `store`, `metadata`, string or part-list content) and strict where a value is wrong: a wrong
//! type or an out-of-range number is an error that names the field.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ApiError, ErrorCode};
use crate::message::message_content;
pub use crate::message::{MAX_CONTENT_PARTS, Message, Role};
use crate::model_id::ModelId;
use crate::money::Amount;
use crate::tools::{
    FunctionCall, FunctionCallDelta, Tool, ToolCall, ToolCallDelta, ToolChoice,
    check_function_name, parse_tools,
};

/// OpenAI allows at most four stop sequences.
pub const MAX_STOP_SEQUENCES: usize = 4;
/// A stop sequence longer than this is a mistake, and each costs a scan per token.
pub const MAX_STOP_SEQUENCE_BYTES: usize = 256;

/// A role as sent: the legacy `function` role is read as `tool`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawRole {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

/// A message as sent, before its content is checked.
#[derive(Debug, Deserialize)]
struct RawMessage {
    role: RawRole,
    #[serde(default)]
    content: Value,
    #[serde(default)]
    tool_calls: Option<Vec<RawToolCall>>,
    /// Legacy: the one call of an assistant message.
    #[serde(default)]
    function_call: Option<RawFunctionCall>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawToolCall {
    id: Option<String>,
    function: RawFunctionCall,
}

#[derive(Debug, Deserialize)]
struct RawFunctionCall {
    name: String,
    /// JSON text as OpenAI sends it; some clients send the object itself.
    #[serde(default)]
    arguments: Value,
}

impl RawFunctionCall {
    fn into_call(self, param: &str) -> Result<FunctionCall, ApiError> {
        check_function_name(&self.name, &format!("{param}.name"))?;
        let arguments = match self.arguments {
            Value::Null => "{}".to_owned(),
            Value::String(text) => text,
            object @ Value::Object(_) => object.to_string(),
            _ => {
                return Err(ApiError::invalid(
                    format!("{param}.arguments"),
                    format!("{param}.arguments must be a JSON object as a string"),
                ));
            }
        };
        Ok(FunctionCall {
            name: self.name,
            arguments,
        })
    }
}

#[derive(Debug, Deserialize)]
struct RawStreamOptions {
    include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct RawResponseFormat {
    r#type: String,
    json_schema: Option<RawJsonSchema>,
}

#[derive(Debug, Deserialize)]
struct RawJsonSchema {
    schema: Option<Value>,
}

/// `venice_parameters` as sent. Unknown ones are accepted and listed as ignored.
#[derive(Debug, Default, Deserialize)]
struct RawVeniceParameters {
    include_venice_system_prompt: Option<bool>,
    strip_thinking_response: Option<bool>,
    disable_thinking: Option<bool>,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

/// The request body exactly as a client may send it. Fields absent here (`user`, `store`,
/// `metadata`, `functions`, …) are accepted and ignored.
#[derive(Debug, Deserialize)]
struct RawChatRequest {
    model: Option<String>,
    messages: Option<Vec<RawMessage>>,
    stream: Option<bool>,
    stream_options: Option<RawStreamOptions>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    min_p: Option<f64>,
    seed: Option<i64>,
    #[serde(default)]
    stop: Value,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    repetition_penalty: Option<f64>,
    response_format: Option<RawResponseFormat>,
    n: Option<u64>,
    logprobs: Option<bool>,
    top_logprobs: Option<u64>,
    #[serde(default)]
    tools: Value,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    /// Legacy tools.
    #[serde(default)]
    functions: Value,
    function_call: Option<Value>,
    #[serde(default)]
    stop_token_ids: Option<Vec<i64>>,
    reasoning_effort: Option<String>,
    reasoning: Option<RawReasoning>,
    venice_parameters: Option<RawVeniceParameters>,
    prompt_cache_key: Option<String>,
}

/// The fields [`RawChatRequest`] reads. Any other top-level field is accepted, and named in
/// the reply as having no effect.
const KNOWN_FIELDS: [&str; 29] = [
    "prompt_cache_key",
    "model",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "response_format",
    "n",
    "logprobs",
    "top_logprobs",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "stop_token_ids",
    "reasoning_effort",
    "reasoning",
    "venice_parameters",
];

/// The top-level fields of `body` (an object that parsed already) that are neither
/// [`KNOWN_FIELDS`] nor null. One more pass over the bytes, which keeps nothing but those
/// names: cheaper than buffering every value to find them while parsing.
fn unknown_fields(body: &[u8]) -> Vec<String> {
    struct Fields;

    impl<'de> serde::de::Visitor<'de> for Fields {
        type Value = Vec<String>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("an object")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut unknown = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                let value = map.next_value::<Option<serde::de::IgnoredAny>>()?;
                if value.is_some() && !KNOWN_FIELDS.contains(&key.as_str()) {
                    unknown.push(key);
                }
            }
            Ok(unknown)
        }
    }

    serde::Deserializer::deserialize_map(&mut serde_json::Deserializer::from_slice(body), Fields)
        .unwrap_or_default()
}

#[derive(Debug, Deserialize)]
struct RawReasoning {
    effort: Option<String>,
}

/// Most choices one request may ask for (`n`): each is a whole generation.
pub const MAX_CHOICES: u64 = 8;
/// Most ignored parameters a reply names.
pub const MAX_IGNORED_NAMES: usize = 32;
/// Most stop token ids one request may give.
pub const MAX_STOP_TOKEN_IDS: usize = 64;
/// Reasoning effort levels, as OpenAI and Venice name them.
const REASONING_EFFORTS: [&str; 7] = ["none", "minimal", "low", "medium", "high", "xhigh", "max"];

/// Sampling controls; `None` means the serving model's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    /// The JSON Schema the output must match.
    JsonSchema(Value),
}

/// `venice_parameters` after validation, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VeniceParameters {
    pub include_venice_system_prompt: bool,
    pub strip_thinking_response: bool,
    pub disable_thinking: bool,
    /// The operator-defined character to play (the gateway applies it).
    pub character_slug: Option<String>,
    /// Parameters accepted but not acted on, reported back in the response echo.
    pub ignored: Vec<String>,
}

impl Default for VeniceParameters {
    fn default() -> Self {
        Self {
            include_venice_system_prompt: true,
            strip_thinking_response: false,
            disable_thinking: false,
            character_slug: None,
            ignored: Vec::new(),
        }
    }
}

impl VeniceParameters {
    /// The echo returned with a response: every parameter Venice's API echoes, as applied
    /// (web search, scraping and Venice's end-to-end encryption are not features of this
    /// server, so they are off), and what was ignored.
    pub fn echo(&self) -> Value {
        let mut echo = serde_json::json!({
            "enable_e2ee": false,
            "enable_web_search": "off",
            "enable_web_citations": false,
            "enable_web_scraping": false,
            "include_venice_system_prompt": self.include_venice_system_prompt,
            "include_search_results_in_stream": false,
            "return_search_results_as_documents": false,
            "strip_thinking_response": self.strip_thinking_response,
            "disable_thinking": self.disable_thinking,
        });
        if let Some(slug) = &self.character_slug {
            echo["character_slug"] = Value::from(slug.clone());
        }
        if !self.ignored.is_empty() {
            echo["ignored_parameters"] = Value::from(self.ignored_names());
            echo["note"] = Value::from(
                "these parameters are accepted for compatibility and have no effect on this server",
            );
        }
        echo
    }

    /// The names of what was ignored, as a reply may carry them: at most
    /// [`MAX_IGNORED_NAMES`], each shown only if it is a plain name.
    pub fn ignored_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .ignored
            .iter()
            .take(MAX_IGNORED_NAMES)
            .map(|name| {
                let plain = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|byte| byte.is_ascii_alphanumeric() || b"_-.".contains(&byte));
                if plain {
                    name.clone()
                } else {
                    "(unnamed)".to_owned()
                }
            })
            .collect();
        if self.ignored.len() > MAX_IGNORED_NAMES {
            names.push(format!(
                "(and {} more)",
                self.ignored.len() - MAX_IGNORED_NAMES
            ));
        }
        names
    }

    fn set(&mut self, name: &str, value: Value, param: &str) -> Result<(), ApiError> {
        let flag = |value: &Value| match value {
            Value::Bool(flag) => Ok(*flag),
            Value::String(text) if text == "true" => Ok(true),
            Value::String(text) if text == "false" => Ok(false),
            _ => Err(ApiError::invalid(
                param,
                format!("{param} must be true or false"),
            )),
        };
        match name {
            "include_venice_system_prompt" => self.include_venice_system_prompt = flag(&value)?,
            "strip_thinking_response" => self.strip_thinking_response = flag(&value)?,
            "disable_thinking" => self.disable_thinking = flag(&value)?,
            "character_slug" => match value {
                Value::String(slug) if !slug.is_empty() && slug.len() <= 64 => {
                    self.character_slug = Some(slug);
                }
                Value::Null => self.character_slug = None,
                _ => {
                    return Err(ApiError::invalid(
                        param,
                        format!("{param} is a character's slug (1 to 64 characters)"),
                    ));
                }
            },
            other => {
                if !self.ignored.iter().any(|known| known == other) {
                    self.ignored.push(other.to_owned());
                }
            }
        }
        Ok(())
    }
}

/// A chat request after validation: every field typed, in range, and only what a model needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The model, trait or alias asked for, without its suffix.
    pub model: String,
    pub messages: Vec<Message>,
    pub stream: bool,
    pub include_usage: bool,
    pub sampling: Sampling,
    pub stop: Vec<String>,
    pub max_tokens: Option<u32>,
    pub response_format: ResponseFormat,
    pub venice: VeniceParameters,
    /// The functions offered; empty when none are.
    pub tools: Vec<Tool>,
    /// [`ToolChoice::None`] whenever `tools` is empty.
    pub tool_choice: ToolChoice,
    pub parallel_tool_calls: bool,
    /// The tools came as legacy `functions`: the reply uses `function_call`.
    pub legacy_functions: bool,
    /// Log-probabilities wanted, with this many alternatives per token (`top_logprobs`).
    pub logprobs: Option<u32>,
    /// Token ids at which generation stops (not emitted).
    pub stop_token_ids: Vec<u32>,
    /// How many choices to generate (1 to [`MAX_CHOICES`]).
    pub n: u32,
    /// The client's name for a prompt cache of its own (OpenAI's `prompt_cache_key`): its
    /// requests that share it, and only those, share cached prompts.
    pub prompt_cache_key: Option<String>,
}

/// Longest `prompt_cache_key`.
pub const MAX_PROMPT_CACHE_KEY_BYTES: usize = 256;

impl ChatRequest {
    /// The kinds of input beside text the conversation carries (`image`, `audio`, `video`,
    /// `file`), each once.
    pub fn media(&self) -> std::collections::BTreeSet<&'static str> {
        self.messages.iter().flat_map(Message::media).collect()
    }
}

fn range_f32(
    value: Option<f64>,
    param: &str,
    low: f64,
    high: f64,
    low_inclusive: bool,
) -> Result<Option<f32>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    let above_low = if low_inclusive {
        value >= low
    } else {
        value > low
    };
    if !value.is_finite() || !above_low || value > high {
        let open = if low_inclusive { "" } else { " (exclusive)" };
        return Err(ApiError::invalid(
            param,
            format!("{param} must be between {low}{open} and {high}, got {value}"),
        ));
    }
    #[expect(clippy::cast_possible_truncation, reason = "range-checked just above")]
    Ok(Some(value as f32))
}

fn stop_sequences(stop: Value) -> Result<Vec<String>, ApiError> {
    let stops = match stop {
        Value::Null => Vec::new(),
        Value::String(stop) => vec![stop],
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(stop) => Ok(stop),
                _ => Err(ApiError::invalid(
                    format!("stop[{index}]"),
                    "stop sequences must be strings",
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ApiError::invalid(
                "stop",
                "stop must be a string or a list of strings",
            ));
        }
    };
    if stops.len() > MAX_STOP_SEQUENCES {
        return Err(ApiError::invalid(
            "stop",
            format!(
                "at most {MAX_STOP_SEQUENCES} stop sequences are allowed, got {}",
                stops.len()
            ),
        ));
    }
    if let Some(index) = stops
        .iter()
        .position(|stop| stop.is_empty() || stop.len() > MAX_STOP_SEQUENCE_BYTES)
    {
        return Err(ApiError::invalid(
            format!("stop[{index}]"),
            format!("stop sequences must be 1 to {MAX_STOP_SEQUENCE_BYTES} bytes"),
        ));
    }
    Ok(stops)
}

impl ChatRequest {
    /// Parses and validates a request body. Errors name the offending field.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let deserializer = &mut serde_json::Deserializer::from_slice(body);
        let raw: RawChatRequest =
            serde_path_to_error::deserialize(deserializer).map_err(|error| {
                let path = error.path().to_string();
                let inner = error.into_inner();
                if inner.is_syntax() || inner.is_eof() {
                    ApiError::new(
                        ErrorCode::InvalidRequest,
                        format!("the request body is not valid JSON: {inner}"),
                    )
                } else if path == "." {
                    ApiError::new(
                        ErrorCode::InvalidRequest,
                        format!("the request body must be a JSON object: {inner}"),
                    )
                } else {
                    ApiError::invalid(path.clone(), format!("{path}: {inner}"))
                }
            })?;
        Self::validate(raw, unknown_fields(body))
    }

    fn validate(raw: RawChatRequest, unknown: Vec<String>) -> Result<Self, ApiError> {
        let model_text = raw
            .model
            .ok_or_else(|| ApiError::invalid("model", "model is required"))?;
        let model_id = ModelId::parse(&model_text).map_err(|error| {
            ApiError::new(ErrorCode::InvalidModel, error.to_string()).with_param("model")
        })?;
        let raw_messages = raw
            .messages
            .ok_or_else(|| ApiError::invalid("messages", "messages is required"))?;
        if raw_messages.is_empty() {
            return Err(ApiError::invalid(
                "messages",
                "messages must contain at least one message",
            ));
        }
        // Prompt-cache hints on content parts (Anthropic's, which Venice takes) have no effect
        // on an engine without a prompt cache: said in the reply like other such fields.
        let cache_control = raw_messages.iter().any(|message| {
            message.content.as_array().is_some_and(|parts| {
                parts.iter().any(|part| {
                    part.get("cache_control")
                        .is_some_and(|value| !value.is_null())
                })
            })
        });
        let messages = raw_messages
            .into_iter()
            .enumerate()
            .map(|(index, message)| validate_message(message, index))
            .collect::<Result<Vec<_>, ApiError>>()?;
        let n = match raw.n.unwrap_or(1) {
            n @ 1..=MAX_CHOICES => u32::try_from(n).unwrap_or(1),
            n => {
                return Err(ApiError::invalid(
                    "n",
                    format!("n must be between 1 and {MAX_CHOICES}, got {n}"),
                ));
            }
        };
        let logprobs = match (raw.logprobs.unwrap_or(false), raw.top_logprobs) {
            (false, None) => None,
            (false, Some(_)) => {
                return Err(ApiError::invalid(
                    "top_logprobs",
                    "top_logprobs needs logprobs: true",
                ));
            }
            (true, top) => match top.unwrap_or(0) {
                top @ 0..=20 => Some(u32::try_from(top).unwrap_or(0)),
                top => {
                    return Err(ApiError::invalid(
                        "top_logprobs",
                        format!("top_logprobs must be between 0 and 20, got {top}"),
                    ));
                }
            },
        };
        let (tools, tool_choice, legacy_functions) =
            validate_tools(raw.tools, raw.tool_choice, raw.functions, raw.function_call)?;
        // Venice: a limit of 0 or less is no limit (the model's default maximum applies).
        let max_tokens = raw
            .max_completion_tokens
            .filter(|value| *value > 0)
            .or(raw.max_tokens.filter(|value| *value > 0))
            .map(|value| u32::try_from(value).unwrap_or(u32::MAX));
        let stop_token_ids = match raw.stop_token_ids {
            None => Vec::new(),
            Some(ids) if ids.len() > MAX_STOP_TOKEN_IDS => {
                return Err(ApiError::invalid(
                    "stop_token_ids",
                    format!("at most {MAX_STOP_TOKEN_IDS} stop token ids"),
                ));
            }
            Some(ids) => ids
                .into_iter()
                .map(|id| {
                    u32::try_from(id).map_err(|_| {
                        ApiError::invalid("stop_token_ids", format!("{id} is not a token id"))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let effort = match (
            raw.reasoning_effort,
            raw.reasoning.and_then(|reasoning| reasoning.effort),
        ) {
            (Some(effort), _) => Some(("reasoning_effort", effort)),
            (None, Some(effort)) => Some(("reasoning.effort", effort)),
            (None, None) => None,
        };
        if let Some((param, effort)) = &effort
            && !REASONING_EFFORTS.contains(&effort.as_str())
        {
            return Err(ApiError::invalid(
                *param,
                format!("{param} is one of {}", REASONING_EFFORTS.join(", ")),
            ));
        }
        if let Some(key) = &raw.prompt_cache_key
            && key.len() > MAX_PROMPT_CACHE_KEY_BYTES
        {
            return Err(ApiError::invalid(
                "prompt_cache_key",
                format!("prompt_cache_key is at most {MAX_PROMPT_CACHE_KEY_BYTES} bytes"),
            ));
        }
        let mut ignored_fields = unknown;
        if cache_control {
            ignored_fields.push("cache_control".into());
        }
        let top_k = match raw.top_k {
            None => None,
            Some(value) if (0..=100_000).contains(&value) => u32::try_from(value).ok(),
            Some(value) => {
                return Err(ApiError::invalid(
                    "top_k",
                    format!("top_k must be between 0 and 100000, got {value}"),
                ));
            }
        };
        let sampling = Sampling {
            temperature: range_f32(raw.temperature, "temperature", 0.0, 2.0, true)?,
            // 0 keeps only the likeliest token.
            top_p: range_f32(raw.top_p, "top_p", 0.0, 1.0, true)?,
            top_k,
            min_p: range_f32(raw.min_p, "min_p", 0.0, 1.0, true)?,
            // Engines take 32-bit seeds; any integer is accepted and mapped onto that range.
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "seeds wrap by design"
            )]
            seed: raw.seed.map(|seed| seed as u32),
            frequency_penalty: range_f32(
                raw.frequency_penalty,
                "frequency_penalty",
                -2.0,
                2.0,
                true,
            )?,
            presence_penalty: range_f32(raw.presence_penalty, "presence_penalty", -2.0, 2.0, true)?,
            // 1 is no penalty; Venice sets no upper bound, and a large one only forbids repeats.
            repetition_penalty: range_f32(
                raw.repetition_penalty,
                "repetition_penalty",
                0.0,
                f64::from(f32::MAX),
                false,
            )?,
        };
        let response_format = match raw.response_format {
            None => ResponseFormat::Text,
            Some(format) => match format.r#type.as_str() {
                "text" => ResponseFormat::Text,
                "json_object" => ResponseFormat::JsonObject,
                "json_schema" => match format.json_schema.and_then(|schema| schema.schema) {
                    Some(schema @ Value::Object(_)) => ResponseFormat::JsonSchema(schema),
                    _ => {
                        return Err(ApiError::invalid(
                            "response_format.json_schema.schema",
                            "response_format of type json_schema needs json_schema.schema, a JSON Schema object",
                        ));
                    }
                },
                other => {
                    return Err(ApiError::invalid(
                        "response_format.type",
                        format!(
                            "response_format.type must be text, json_object or json_schema, got {other:?}"
                        ),
                    ));
                }
            },
        };
        let mut venice = VeniceParameters::default();
        if let Some(parameters) = raw.venice_parameters {
            if let Some(flag) = parameters.include_venice_system_prompt {
                venice.include_venice_system_prompt = flag;
            }
            if let Some(flag) = parameters.strip_thinking_response {
                venice.strip_thinking_response = flag;
            }
            if let Some(flag) = parameters.disable_thinking {
                venice.disable_thinking = flag;
            }
            for (name, value) in parameters.other {
                venice.set(&name, value, &format!("venice_parameters.{name}"))?;
            }
        }
        // Suffix parameters override the body, as the model id is the more specific setting.
        for (name, value) in model_id.parameters {
            venice.set(&name, Value::String(value), "model")?;
        }
        // A reasoning model asked for no effort does not think; other levels leave thinking
        // on (the engine has no finer control).
        if effort.as_ref().is_some_and(|(_, effort)| effort == "none") {
            venice.disable_thinking = true;
        }
        for field in ignored_fields {
            if !venice.ignored.contains(&field) {
                venice.ignored.push(field);
            }
        }
        Ok(Self {
            model: model_id.model,
            messages,
            stream: raw.stream.unwrap_or(false),
            include_usage: raw
                .stream_options
                .and_then(|options| options.include_usage)
                .unwrap_or(false),
            sampling,
            stop: stop_sequences(raw.stop)?,
            max_tokens,
            response_format,
            venice,
            tools,
            tool_choice,
            parallel_tool_calls: raw.parallel_tool_calls.unwrap_or(true),
            legacy_functions,
            logprobs,
            stop_token_ids,
            n,
            prompt_cache_key: raw.prompt_cache_key.filter(|key| !key.is_empty()),
        })
    }
}

fn validate_message(message: RawMessage, index: usize) -> Result<Message, ApiError> {
    let param = format!("messages[{index}]");
    let role = match message.role {
        RawRole::System => Role::System,
        RawRole::Developer => Role::Developer,
        RawRole::User => Role::User,
        RawRole::Assistant => Role::Assistant,
        RawRole::Tool | RawRole::Function => Role::Tool,
    };
    let (content, parts) = message_content(message.content, &format!("{param}.content"))?;
    let mut tool_calls = Vec::new();
    if let Some(calls) = message.tool_calls {
        for (call_index, call) in calls.into_iter().enumerate() {
            let call_param = format!("{param}.tool_calls[{call_index}]");
            let id = call.id.filter(|id| !id.is_empty()).ok_or_else(|| {
                ApiError::invalid(
                    format!("{call_param}.id"),
                    format!("{call_param}.id is required"),
                )
            })?;
            tool_calls.push(ToolCall {
                id,
                kind: "function".into(),
                function: call.function.into_call(&format!("{call_param}.function"))?,
            });
        }
    }
    if let Some(call) = message.function_call {
        let function = call.into_call(&format!("{param}.function_call"))?;
        tool_calls.push(ToolCall {
            id: format!("call_{}", function.name),
            kind: "function".into(),
            function,
        });
    }
    if !tool_calls.is_empty() && role != Role::Assistant {
        return Err(ApiError::invalid(
            format!("{param}.tool_calls"),
            "only assistant messages carry tool calls",
        ));
    }
    let legacy_function = matches!(message.role, RawRole::Function);
    if role == Role::Tool {
        if legacy_function {
            if message.name.as_deref().is_none_or(str::is_empty) {
                return Err(ApiError::invalid(
                    format!("{param}.name"),
                    "a function message names its function",
                ));
            }
        } else if message.tool_call_id.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::invalid(
                format!("{param}.tool_call_id"),
                "a tool message names the call it answers in tool_call_id",
            ));
        }
    }
    let tool_call_id = match (role, legacy_function) {
        (Role::Tool, true) => message.name.as_ref().map(|name| format!("call_{name}")),
        (Role::Tool, false) => message.tool_call_id,
        _ => None,
    };
    Ok(Message {
        role,
        content,
        parts,
        tool_calls,
        tool_call_id,
        name: message.name.filter(|_| role == Role::Tool),
    })
}

/// Reads `tools` and `tool_choice`, or the legacy `functions` and `function_call`.
fn validate_tools(
    tools: Value,
    tool_choice: Option<Value>,
    functions: Value,
    function_call: Option<Value>,
) -> Result<(Vec<Tool>, ToolChoice, bool), ApiError> {
    let legacy = !functions.is_null();
    if legacy && !tools.is_null() {
        return Err(ApiError::invalid(
            "functions",
            "send tools or the legacy functions, not both",
        ));
    }
    let (tools, choice, choice_param) = if legacy {
        (
            parse_tools(functions, true)?,
            function_call,
            "function_call",
        )
    } else {
        (parse_tools(tools, false)?, tool_choice, "tool_choice")
    };
    let choice = match choice {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(value) => ToolChoice::from_openai(&value, choice_param)?,
    };
    if tools.is_empty() {
        return match choice {
            ToolChoice::None | ToolChoice::Auto => Ok((tools, ToolChoice::None, legacy)),
            _ => Err(ApiError::invalid(
                choice_param,
                format!("{choice_param} asks for a tool call but no tools are given"),
            )),
        };
    }
    if let ToolChoice::Function(name) = &choice
        && !tools.iter().any(|tool| &tool.function.name == name)
    {
        return Err(ApiError::invalid(
            choice_param,
            format!("{choice_param} names {name:?}, which is not among the tools"),
        ));
    }
    Ok((tools, choice, legacy))
}

/// What the gateway sends a provider: an OpenAI-compatible streaming request built from parsed
/// fields only. No client header, address, key or `user` ever gets in here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub stream: bool,
    pub stream_options: StreamOptions,
    #[serde(flatten)]
    pub sampling: Sampling,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    pub max_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// Understood by vLLM, SGLang and llama.cpp's server; the embedded engine reads it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template_kwargs: Option<ChatTemplateKwargs>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logprobs: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_token_ids: Vec<u32>,
    /// Choices to generate, when more than one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// The prompt cache the request may read and leave its prompt in (64 hex digits), set by
    /// the gateway: opaque to the provider, it names no caller. Absent: no prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_namespace: Option<String>,
}

impl ProviderChatRequest {
    /// The streaming request for `model_id` built from `request`'s validated fields only, with
    /// `default_max_tokens` where the client set no limit.
    pub fn from_chat(request: &ChatRequest, model_id: &str, default_max_tokens: u32) -> Self {
        Self {
            model: model_id.to_owned(),
            messages: request.messages.clone(),
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            sampling: request.sampling.clone(),
            stop: request.stop.clone(),
            max_tokens: request.max_tokens.unwrap_or(default_max_tokens),
            response_format: request.response_format.to_openai(),
            chat_template_kwargs: request
                .venice
                .disable_thinking
                .then_some(ChatTemplateKwargs {
                    enable_thinking: false,
                }),
            tools: request.tools.clone(),
            tool_choice: (!request.tools.is_empty()).then(|| request.tool_choice.clone()),
            parallel_tool_calls: (!request.tools.is_empty()).then_some(request.parallel_tool_calls),
            logprobs: request.logprobs.is_some(),
            top_logprobs: request.logprobs,
            stop_token_ids: request.stop_token_ids.clone(),
            n: (request.n > 1).then_some(request.n),
            cache_namespace: None,
        }
    }

    /// The cache namespace as bytes, when it is 64 hex digits.
    pub fn cache_namespace_bytes(&self) -> Option<[u8; 32]> {
        let text = self.cache_namespace.as_deref()?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(bytes)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct StreamOptions {
    pub include_usage: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ChatTemplateKwargs {
    pub enable_thinking: bool,
}

impl ResponseFormat {
    /// The OpenAI `response_format` object for this format.
    pub fn to_openai(&self) -> Option<Value> {
        match self {
            Self::Text => None,
            Self::JsonObject => Some(serde_json::json!({ "type": "json_object" })),
            Self::JsonSchema(schema) => Some(serde_json::json!({
                "type": "json_schema",
                "json_schema": { "name": "response", "schema": schema, "strict": true },
            })),
        }
    }

    /// Reads back what [`Self::to_openai`] wrote (providers parse the gateway's requests).
    pub fn from_openai(value: Option<&Value>) -> Result<Self, ApiError> {
        let Some(value) = value else {
            return Ok(Self::Text);
        };
        match value.get("type").and_then(Value::as_str) {
            None | Some("text") => Ok(Self::Text),
            Some("json_object") => Ok(Self::JsonObject),
            Some("json_schema") => match value.pointer("/json_schema/schema") {
                Some(schema @ Value::Object(_)) => Ok(Self::JsonSchema(schema.clone())),
                _ => Err(ApiError::invalid(
                    "response_format.json_schema.schema",
                    "a JSON Schema object is required",
                )),
            },
            Some(other) => Err(ApiError::invalid(
                "response_format.type",
                format!("unknown response_format type {other:?}"),
            )),
        }
    }
}

/// Token counts, as OpenAI reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Of the prompt, how much came from the engine's prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Of the completion, how much was reasoning; absent when the engine does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

impl Usage {
    /// Counts alone, with no details.
    pub fn counts(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            prompt_tokens_details: None,
            completion_tokens_details: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    #[serde(default)]
    pub reasoning_tokens: u64,
}

/// What a request cost, split by the currency that paid it: `diem` from an account's daily
/// DIEM allowance (or privacy tokens bought with it), `usd` from dollar credit and bundled
/// credits. DIEM is priced 1:1 with the dollar, so the two add up to the price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cost {
    pub usd: Amount,
    pub diem: Amount,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResponseMessage {
    pub role: Role,
    /// `null` when the reply is tool calls and nothing else, as OpenAI sends it.
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Legacy: the reply's call, for a request that sent `functions`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    pub index: u32,
    pub message: ResponseMessage,
    pub finish_reason: String,
    /// Present (not null) when the request asked for `logprobs`.
    pub logprobs: Option<ChoiceLogprobs>,
}

/// `choices[].logprobs`: one entry per generated token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChoiceLogprobs {
    pub content: Vec<TokenLogprob>,
}

/// One token's log-probability, and its likeliest alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    /// The token's UTF-8 bytes (a token may hold part of a character).
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
    #[serde(default)]
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
}

/// A non-streaming response.
#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: Usage,
    pub cost: Cost,
    pub venice_parameters: Value,
}

/// A stream chunk's delta; every field optional, as engines differ in what they send.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// Legacy: a piece of the reply's call, for a request that sent `functions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCallDelta>,
}

impl Delta {
    /// Text alone.
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            content: Some(content.into()),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Delta,
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// The log-probabilities of the tokens this chunk's text came from, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<ChoiceLogprobs>,
}

/// One streamed chunk (`chat.completion.chunk`). Parsed liberally from providers and upstream
/// engines; written by the gateway with its own id and model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    #[serde(default)]
    pub id: String,
    #[serde(default = "chunk_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

fn chunk_object() -> String {
    "chat.completion.chunk".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolChoice;

    fn parse(body: Value) -> Result<ChatRequest, ApiError> {
        ChatRequest::parse(body.to_string().as_bytes())
    }

    #[test]
    fn accepts_what_generic_openai_clients_send() {
        let request = parse(serde_json::json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]},
                {"role": "assistant", "content": null},
            ],
            "user": "someone", "store": false, "metadata": {"a": 1},
            "max_completion_tokens": null, "max_tokens": 20, "stream_options": null,
            "functions": null, "temperature": null, "tools": [], "n": 1,
        }))
        .expect("valid request");
        assert_eq!(request.model, "gpt-4o-mini");
        assert_eq!(request.messages[1].content, "Hello there");
        assert_eq!(request.messages[2].content, "");
        assert_eq!(request.max_tokens, Some(20));
        assert!(request.venice.include_venice_system_prompt);
    }

    #[test]
    fn wrong_types_and_ranges_name_the_field() {
        let base =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        let cases = [
            ("temperature", serde_json::json!("hot"), "temperature"),
            ("temperature", serde_json::json!(2.5), "temperature"),
            ("top_p", serde_json::json!(-0.1), "top_p"),
            ("max_tokens", serde_json::json!("many"), "max_tokens"),
            ("stop_token_ids", serde_json::json!([-1]), "stop_token_ids"),
            (
                "reasoning_effort",
                serde_json::json!("extreme"),
                "reasoning_effort",
            ),
            ("stop", serde_json::json!(["a", "b", "c", "d", "e"]), "stop"),
            ("stop", serde_json::json!([1]), "stop[0]"),
            ("n", serde_json::json!(9), "n"),
            ("n", serde_json::json!(0), "n"),
            ("top_logprobs", serde_json::json!(3), "top_logprobs"),
            ("messages", serde_json::json!([]), "messages"),
            (
                "messages",
                serde_json::json!([{"role": "wizard", "content": "x"}]),
                "messages[0].role",
            ),
            (
                "messages",
                serde_json::json!([{"role": "user", "content": 5}]),
                "messages[0].content",
            ),
            (
                "messages",
                serde_json::json!([{"role": "user", "content": [{"type": "image_url"}]}]),
                "messages[0].content[0].image_url.url",
            ),
            (
                "messages",
                serde_json::json!([{"role": "user", "content": [{"type": "hologram"}]}]),
                "messages[0].content[0]",
            ),
            (
                "response_format",
                serde_json::json!({"type": "yaml"}),
                "response_format.type",
            ),
            (
                "venice_parameters",
                serde_json::json!({"strip_thinking_response": "yes"}),
                "venice_parameters.strip_thinking_response",
            ),
        ];
        for (field, value, param) in cases {
            let mut body = base.clone();
            body[field] = value;
            let error = parse(body).expect_err(field);
            assert_eq!(error.status(), 400, "{field}");
            assert_eq!(
                error.param.as_deref(),
                Some(param),
                "{field}: {}",
                error.message
            );
        }
        let missing_model = parse(serde_json::json!({"messages": []})).expect_err("no model");
        assert_eq!(missing_model.param.as_deref(), Some("model"));
        let not_json = ChatRequest::parse(b"{not json").expect_err("syntax");
        assert!(not_json.message.contains("not valid JSON"));
    }

    #[test]
    fn tool_requests_parse_with_calls_and_results_in_the_conversation() {
        let request = parse(serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lyon"}}},
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false,
        }))
        .expect("valid");
        assert_eq!(request.tools.len(), 1);
        assert_eq!(
            request.tool_choice,
            ToolChoice::Function("get_weather".into())
        );
        assert!(!request.parallel_tool_calls);
        assert!(!request.legacy_functions);
        let calls = &request.messages[1].tool_calls;
        assert_eq!(calls[0].function.arguments, "{\"city\":\"Paris\"}");
        // Arguments sent as an object are carried as JSON text.
        assert_eq!(calls[1].function.arguments, "{\"city\":\"Lyon\"}");
        assert_eq!(request.messages[2].tool_call_id.as_deref(), Some("call_1"));
        let provider = ProviderChatRequest::from_chat(&request, "m", 16);
        let sent = serde_json::to_value(&provider).expect("encodes");
        assert_eq!(sent["tool_choice"]["function"]["name"], "get_weather");
        assert_eq!(sent["parallel_tool_calls"], false);
        assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], "call_1");
        assert_eq!(sent["messages"][2]["tool_call_id"], "call_1");
        let read_back: ProviderChatRequest = serde_json::from_value(sent).expect("decodes");
        assert_eq!(read_back.tools, request.tools);
        assert_eq!(read_back.tool_choice, Some(request.tool_choice.clone()));
    }

    #[test]
    fn media_parts_are_checked_and_reach_the_provider_as_sent() {
        let parts = serde_json::json!([
            {"type": "text", "text": "What is in "},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
            {"type": "text", "text": "this picture?"},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        ]);
        let request = parse(serde_json::json!({
            "model": "m",
            "messages": [{"role": "user", "content": parts}],
        }))
        .expect("valid");
        let message = &request.messages[0];
        assert_eq!(message.content, "What is in this picture?");
        assert_eq!(
            request.media().into_iter().collect::<Vec<_>>(),
            vec!["audio", "image"]
        );
        let sent = serde_json::to_value(ProviderChatRequest::from_chat(&request, "m", 8))
            .expect("encodes");
        assert_eq!(
            sent["messages"][0]["content"], parts,
            "the parts go as sent"
        );
        let read: ProviderChatRequest = serde_json::from_value(sent).expect("decodes");
        assert_eq!(read.messages[0], *message);
        // Text parts alone are text.
        let text = parse(serde_json::json!({
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        }))
        .expect("valid");
        assert!(text.messages[0].parts.is_empty());
        assert!(text.media().is_empty());
        let too_many: Vec<Value> = (0..=MAX_CONTENT_PARTS)
            .map(|_| serde_json::json!({"type": "text", "text": "x"}))
            .collect();
        assert!(
            parse(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": too_many}]}))
                .is_err()
        );
    }

    #[test]
    fn legacy_functions_read_as_tools() {
        let request = parse(serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}},
                {"role": "function", "name": "f", "content": "done"},
            ],
            "functions": [{"name": "f", "parameters": {"type": "object"}}],
            "function_call": {"name": "f"},
        }))
        .expect("valid");
        assert!(request.legacy_functions);
        assert_eq!(request.tool_choice, ToolChoice::Function("f".into()));
        assert_eq!(request.messages[1].tool_calls[0].function.name, "f");
        assert_eq!(request.messages[2].role, Role::Tool);
        assert_eq!(request.messages[2].name.as_deref(), Some("f"));
        // Without tools there is nothing to choose.
        let plain = parse(serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto",
        }))
        .expect("valid");
        assert_eq!(plain.tool_choice, ToolChoice::None);
        assert!(
            ProviderChatRequest::from_chat(&plain, "m", 1)
                .tool_choice
                .is_none()
        );
    }

    #[test]
    fn tool_mistakes_name_the_field() {
        let tools = serde_json::json!([{"type": "function", "function": {"name": "f"}}]);
        let cases = [
            (
                serde_json::json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "g"}}}),
                "tool_choice",
            ),
            (
                serde_json::json!({"tool_choice": "required"}),
                "tool_choice",
            ),
            (
                serde_json::json!({"tools": tools, "tool_choice": 3}),
                "tool_choice",
            ),
            (
                serde_json::json!({"tools": tools, "functions": [{"name": "f"}]}),
                "functions",
            ),
            (
                serde_json::json!({"messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].tool_call_id",
            ),
            (
                serde_json::json!({"messages": [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}),
                "messages[0].tool_calls[0].id",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": "x", "tool_calls": [{"id": "c", "function": {"name": "f"}}]}]}),
                "messages[0].tool_calls",
            ),
            (
                serde_json::json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": 5}}]}]}),
                "messages[0].tool_calls[0].function.arguments",
            ),
            (
                serde_json::json!({"messages": [{"role": "function", "content": "x"}]}),
                "messages[0].name",
            ),
        ];
        for (fields, param) in cases {
            let mut body =
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
            for (key, value) in fields.as_object().expect("object") {
                body[key] = value.clone();
            }
            let error = parse(body).expect_err(param);
            assert_eq!(
                error.param.as_deref(),
                Some(param),
                "{fields}: {}",
                error.message
            );
        }
    }

    #[test]
    fn the_rest_of_chat_reads_as_venice_says() {
        let request = parse(serde_json::json!({
            "model": "m",
            "max_tokens": 0, "top_p": 0, "repetition_penalty": 3.5,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}},
            ]}],
            "stop_token_ids": [2, 151645], "reasoning": {"effort": "none"},
            "user": "someone", "prompt_cache_key": "k", "store": null,
        }))
        .expect("valid");
        // 0 or less is no limit.
        assert_eq!(request.max_tokens, None);
        assert_eq!(request.sampling.top_p, Some(0.0));
        assert_eq!(request.sampling.repetition_penalty, Some(3.5));
        assert_eq!(request.stop_token_ids, vec![2, 151_645]);
        assert!(request.venice.disable_thinking);
        // Fields accepted with no effect are named; nulls are nothing.
        assert_eq!(
            request.venice.ignored,
            vec!["user".to_owned(), "cache_control".to_owned()]
        );
        assert_eq!(request.prompt_cache_key.as_deref(), Some("k"));
        assert_eq!(
            ProviderChatRequest::from_chat(&request, "m", 8).stop_token_ids,
            vec![2, 151_645]
        );
        let negative = parse(serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": -5, "max_completion_tokens": 7,
        }))
        .expect("valid");
        assert_eq!(negative.max_tokens, Some(7));
    }

    #[test]
    fn every_field_the_request_reads_is_known_and_none_is_named_as_ignored() {
        let common = serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": "x"}], "stream": false,
            "stream_options": {"include_usage": true}, "temperature": 1, "top_p": 1, "top_k": 1,
            "min_p": 0, "seed": 1, "stop": "x", "max_tokens": 1, "max_completion_tokens": 1,
            "frequency_penalty": 0, "presence_penalty": 0, "repetition_penalty": 1,
            "response_format": {"type": "text"}, "n": 1, "logprobs": true, "top_logprobs": 1,
            "stop_token_ids": [1], "reasoning_effort": "low", "reasoning": {"effort": "low"},
            "venice_parameters": {}, "prompt_cache_key": "thread",
        });
        let tool = serde_json::json!({"name": "f", "parameters": {"type": "object"}});
        let mut with_tools = common.clone();
        with_tools["tools"] = serde_json::json!([{"type": "function", "function": tool}]);
        with_tools["tool_choice"] = "auto".into();
        with_tools["parallel_tool_calls"] = true.into();
        let mut with_functions = common;
        with_functions["functions"] = serde_json::json!([tool]);
        with_functions["function_call"] = "auto".into();
        let mut seen: Vec<String> = Vec::new();
        for body in [with_tools, with_functions] {
            seen.extend(body.as_object().expect("object").keys().cloned());
            assert_eq!(
                parse(body).expect("valid").venice.ignored,
                Vec::<String>::new()
            );
        }
        for field in KNOWN_FIELDS {
            assert!(
                seen.iter().any(|name| name == field),
                "{field} is not exercised"
            );
        }
    }

    #[test]
    fn suffix_parameters_override_venice_parameters() {
        let request = parse(serde_json::json!({
            "model": "default:strip_thinking_response=true&character_slug=pirate",
            "messages": [{"role": "user", "content": "x"}],
            "venice_parameters": {"strip_thinking_response": false, "include_venice_system_prompt": false, "enable_web_search": "auto"},
        }))
        .expect("valid");
        assert_eq!(request.model, "default");
        assert!(request.venice.strip_thinking_response);
        assert!(!request.venice.include_venice_system_prompt);
        assert_eq!(request.venice.ignored, vec!["enable_web_search".to_owned()]);
        assert_eq!(request.venice.character_slug.as_deref(), Some("pirate"));
        assert_eq!(request.venice.echo()["character_slug"], "pirate");
        assert_eq!(
            request.venice.echo()["ignored_parameters"][0],
            "enable_web_search"
        );
    }

    #[test]
    fn response_formats_round_trip_through_the_provider_request() {
        let schema =
            serde_json::json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        for format in [
            ResponseFormat::Text,
            ResponseFormat::JsonObject,
            ResponseFormat::JsonSchema(schema),
        ] {
            assert_eq!(
                ResponseFormat::from_openai(format.to_openai().as_ref()).expect("reads back"),
                format
            );
        }
    }

    #[test]
    fn chunks_from_engines_parse_liberally() {
        let chunk: ChatCompletionChunk = serde_json::from_str(
            r#"{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"f","choices":[{"index":0,"delta":{"content":"hi"},"logprobs":null,"finish_reason":null}]}"#,
        )
        .expect("parses");
        assert_eq!(chunk.choices[0].delta.content.as_deref(), Some("hi"));
        let usage_only: ChatCompletionChunk = serde_json::from_str(
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        )
        .expect("parses");
        assert_eq!(usage_only.usage.map(|usage| usage.total_tokens), Some(7));
    }
}
