//! Embeddings: the request a client sends (OpenAI's and Venice's shape), the one a provider
//! gets, and the list of vectors that comes back.
//!
//! `input` is a string, an array of strings, an array of token ids, or an array of such
//! arrays. Token ids are of the served model's own vocabulary (as llama.cpp's server takes
//! them); Venice refuses them, OpenAI takes them in its own tokenizer's ids. Vectors travel
//! from the provider as JSON numbers; `encoding_format: "base64"` is the gateway's to apply
//! (little-endian 32-bit floats, as OpenAI encodes them).

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Most inputs in one request (OpenAI's and Venice's limit).
pub const MAX_INPUTS: usize = 2048;

/// One input to embed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Tokens(Vec<u32>),
}

impl EmbeddingInput {
    /// Bytes (text) or token ids (tokens) it holds: what its bound is reckoned from.
    pub fn size(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Tokens(tokens) => tokens.len(),
        }
    }
}

/// How vectors are written in the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

/// A client's embedding request, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRequest {
    pub model: String,
    pub inputs: Vec<EmbeddingInput>,
    pub encoding_format: EncodingFormat,
    /// The length of vector asked for, where the model allows choosing it.
    pub dimensions: Option<u32>,
}

/// Fields beyond these are ignored, as OpenAI's API does.
#[derive(Deserialize)]
struct RawRequest {
    model: String,
    input: serde_json::Value,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<i64>,
    /// Discarded: nothing about the caller reaches a provider.
    #[serde(default)]
    #[expect(dead_code, reason = "read to be accepted, never used")]
    user: Option<serde_json::Value>,
}

impl EmbeddingRequest {
    /// Parses and checks a request body: the error names the field at fault.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let raw: RawRequest = serde_json::from_slice(body).map_err(|error| {
            let message = error.to_string();
            let param = ["model", "input", "encoding_format", "dimensions"]
                .into_iter()
                .find(|field| message.contains(&format!("`{field}`")))
                .unwrap_or("input");
            ApiError::invalid(param, format!("not a valid embedding request: {message}"))
        })?;
        if raw.model.trim().is_empty() {
            return Err(ApiError::invalid("model", "model must name a model"));
        }
        let inputs = parse_input(raw.input)?;
        let encoding_format = match raw.encoding_format.as_deref() {
            None | Some("float") => EncodingFormat::Float,
            Some("base64") => EncodingFormat::Base64,
            Some(other) => {
                return Err(ApiError::invalid(
                    "encoding_format",
                    format!("encoding_format is \"float\" or \"base64\", not {other:?}"),
                ));
            }
        };
        let dimensions = match raw.dimensions {
            None => None,
            Some(dimensions) if dimensions >= 1 => Some(
                u32::try_from(dimensions)
                    .map_err(|_| ApiError::invalid("dimensions", "dimensions is too large"))?,
            ),
            Some(dimensions) => {
                return Err(ApiError::invalid(
                    "dimensions",
                    format!("dimensions must be at least 1, not {dimensions}"),
                ));
            }
        };
        Ok(Self {
            model: raw.model,
            inputs,
            encoding_format,
            dimensions,
        })
    }
}

fn parse_input(input: serde_json::Value) -> Result<Vec<EmbeddingInput>, ApiError> {
    use serde_json::Value;
    let empty = |index: Option<usize>| {
        ApiError::invalid(
            "input",
            match index {
                Some(index) => format!("input[{index}] is empty; every input needs some text"),
                None => "input is empty; give some text to embed".to_owned(),
            },
        )
    };
    let token = |value: &Value| -> Result<u32, ApiError> {
        value
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| {
                ApiError::invalid(
                    "input",
                    "a token array holds non-negative integer token ids only",
                )
            })
    };
    match input {
        Value::String(text) if text.is_empty() => Err(empty(None)),
        Value::String(text) => Ok(vec![EmbeddingInput::Text(text)]),
        Value::Array(items) if items.is_empty() => Err(empty(None)),
        Value::Array(items) if items.len() > MAX_INPUTS => Err(ApiError::invalid(
            "input",
            format!(
                "input holds {} items; at most {MAX_INPUTS} are allowed per request",
                items.len()
            ),
        )),
        Value::Array(items) if items.iter().all(Value::is_number) => {
            Ok(vec![EmbeddingInput::Tokens(
                items.iter().map(token).collect::<Result<_, _>>()?,
            )])
        }
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(text) if text.is_empty() => Err(empty(Some(index))),
                Value::String(text) => Ok(EmbeddingInput::Text(text)),
                Value::Array(ids) if ids.is_empty() => Err(empty(Some(index))),
                Value::Array(ids) => Ok(EmbeddingInput::Tokens(
                    ids.iter().map(token).collect::<Result<_, _>>()?,
                )),
                _ => Err(ApiError::invalid(
                    "input",
                    format!("input[{index}] is neither a string nor an array of token ids"),
                )),
            })
            .collect(),
        _ => Err(ApiError::invalid(
            "input",
            "input is a string, an array of strings, or token ids",
        )),
    }
}

/// What the gateway sends a provider: the inputs and the model, nothing of the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderEmbeddingRequest {
    pub model: String,
    pub input: Vec<EmbeddingInput>,
    /// The length of vector the client asked for, where the model allows choosing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
}

/// One vector of the reply, as JSON numbers or base64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    pub object: String,
    pub index: u32,
    pub embedding: Vector,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}

/// The reply: one vector per input, in the inputs' order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingList {
    pub object: String,
    pub data: Vec<Embedding>,
    pub model: String,
    /// Absent from some engines' answers (read as zero: not reported).
    #[serde(default)]
    pub usage: EmbeddingUsage,
}

impl EmbeddingList {
    pub fn new(model: String, vectors: Vec<Vec<f32>>, prompt_tokens: u64) -> Self {
        Self {
            object: "list".into(),
            data: vectors
                .into_iter()
                .enumerate()
                .map(|(index, vector)| Embedding {
                    object: "embedding".into(),
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    embedding: Vector::Float(vector),
                })
                .collect(),
            model,
            usage: EmbeddingUsage {
                prompt_tokens,
                total_tokens: prompt_tokens,
            },
        }
    }
}

/// `vector` as OpenAI's base64: little-endian 32-bit floats.
pub fn to_base64(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_shape_parses_and_bad_ones_name_the_field() {
        let parse = |body: &str| EmbeddingRequest::parse(body.as_bytes());
        let one = parse(r#"{"model":"m","input":"hello"}"#).expect("a string");
        assert_eq!(one.inputs, vec![EmbeddingInput::Text("hello".into())]);
        assert_eq!(one.encoding_format, EncodingFormat::Float);
        let many = parse(r#"{"model":"m","input":["a","b"],"encoding_format":"base64"}"#)
            .expect("strings");
        assert_eq!(many.inputs.len(), 2);
        assert_eq!(many.encoding_format, EncodingFormat::Base64);
        let tokens = parse(r#"{"model":"m","input":[1,2,3]}"#).expect("token ids");
        assert_eq!(tokens.inputs, vec![EmbeddingInput::Tokens(vec![1, 2, 3])]);
        let arrays = parse(r#"{"model":"m","input":[[1,2],[3]],"user":"x"}"#).expect("arrays");
        assert_eq!(arrays.inputs.len(), 2);
        for (body, param) in [
            (r#"{"model":"m","input":""}"#, "input"),
            (r#"{"model":"m","input":[]}"#, "input"),
            (r#"{"model":"m","input":["a",""]}"#, "input"),
            (r#"{"model":"m","input":[-1]}"#, "input"),
            (r#"{"model":"m","input":[{"a":1}]}"#, "input"),
            (
                r#"{"model":"m","input":"a","encoding_format":"int8"}"#,
                "encoding_format",
            ),
            (r#"{"model":"m","input":"a","dimensions":0}"#, "dimensions"),
            (r#"{"model":"","input":"a"}"#, "model"),
            (r#"{"input":"a"}"#, "model"),
        ] {
            let error = parse(body).expect_err(body);
            assert_eq!(error.status(), 400, "{body}");
            assert_eq!(error.param.as_deref(), Some(param), "{body}");
        }
        let too_many = serde_json::json!({"model": "m", "input": vec!["a"; MAX_INPUTS + 1]});
        assert!(parse(&too_many.to_string()).is_err());
    }

    #[test]
    fn base64_is_little_endian_floats() {
        let encoded = to_base64(&[1.0, -2.5]);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64");
        assert_eq!(bytes.len(), 8);
        assert_eq!(f32::from_le_bytes(bytes[4..8].try_into().expect("4")), -2.5);
    }
}
