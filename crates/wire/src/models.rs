//! The model catalogue as the API serves it (`GET /models`), in Venice's shape: an OpenAI model
//! object with a `model_spec` carrying capabilities, privacy, pricing and context length.

use serde::{Deserialize, Serialize};

use crate::money::Amount;

/// What kind of model a model is: which operations it serves. Venice's `type` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    /// Chat completions.
    #[default]
    Text,
    /// `/embeddings`.
    Embedding,
    /// `/audio/speech`.
    Tts,
    /// `/audio/transcriptions`.
    Asr,
    /// `/image/generate` and `/images/generations`.
    Image,
    /// `/video/queue` and its jobs.
    Video,
    /// `/image/background-remove`.
    #[serde(rename = "background-removal")]
    BackgroundRemoval,
    /// `/image/upscale`.
    Upscale,
}

impl ModelType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Embedding => "embedding",
            Self::Tts => "tts",
            Self::Asr => "asr",
            Self::Image => "image",
            Self::Video => "video",
            Self::BackgroundRemoval => "background-removal",
            Self::Upscale => "upscale",
        }
    }

    /// The operation's name, for errors that say what a model serves.
    pub fn serves(self) -> &'static str {
        match self {
            Self::Text => "chat completions",
            Self::Embedding => "embeddings",
            Self::Tts => "speech",
            Self::Asr => "transcription",
            Self::Image => "image generation",
            Self::Video => "video generation",
            Self::BackgroundRemoval => "background removal",
            Self::Upscale => "upscaling",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    /// The type of models listed (the `type` filter, `text` when none was given).
    pub r#type: String,
    pub data: Vec<Model>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub id: String,
    pub object: &'static str,
    pub r#type: &'static str,
    pub owned_by: String,
    pub created: u64,
    pub context_length: u32,
    pub model_spec: ModelSpec,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    pub name: String,
    pub description: String,
    pub model_source: String,
    /// True when no live provider serves the model right now.
    pub offline: bool,
    /// `private`: served by providers under the operator's policy, nothing retained.
    pub privacy: &'static str,
    pub traits: Vec<String>,
    pub capabilities: Capabilities,
    pub constraints: Constraints,
    pub pricing: Pricing,
    pub available_context_tokens: u32,
    /// The most a reply may be: the gateway's bound, within the context.
    pub max_completion_tokens: u32,
    /// Gondola: how many providers serve this model right now.
    pub providers: usize,
    /// A speech model's voices, its default first (as Venice lists them for `tts` models).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voices: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    pub optimized_for_code: bool,
    pub quantization: String,
    pub supports_function_calling: bool,
    pub supports_reasoning: bool,
    pub supports_vision: bool,
    pub supports_response_schema: bool,
    pub supports_log_probs: bool,
    pub supports_web_search: bool,
    #[serde(rename = "supportsE2EE")]
    pub supports_e2ee: bool,
    pub supports_tee_attestation: bool,
    pub supports_audio_input: bool,
    pub supports_video_input: bool,
    pub supports_multiple_images: bool,
    pub supports_reasoning_effort: bool,
    pub supports_x_search: bool,
}

/// Venice's name for a quantization (`int4`, `int8`, `fp16`, `bf16`, …) from a GGUF one
/// (`Q4_1`, `Q8_0`, `F16`, …); `not-available` when there is no such name.
pub fn venice_quantization(gguf: &str) -> &'static str {
    let upper = gguf.to_ascii_uppercase();
    match upper.as_str() {
        "F16" => "fp16",
        "BF16" => "bf16",
        _ if upper.starts_with("Q4") || upper.starts_with("IQ4") => "int4",
        _ if upper.starts_with("Q8") => "int8",
        _ => "not-available",
    }
}

/// What a model's requests may ask for: sampling defaults for a text model; prompt length,
/// steps and size divisor for an image model (Venice's "Image Model Constraints").
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Constraints {
    Text {
        temperature: DefaultValue,
        top_p: DefaultValue,
    },
    #[serde(rename_all = "camelCase")]
    Image {
        prompt_character_limit: u32,
        steps: Steps,
        width_height_divisor: u32,
    },
}

/// An image model's default and most steps.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Steps {
    pub default: u32,
    pub max: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct DefaultValue {
    pub default: f32,
}

/// A model's prices: per million tokens (or characters, or seconds of audio), or per image.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
pub enum Pricing {
    Tokens {
        input: Price,
        output: Price,
        /// Prompt tokens read from a provider's prompt cache (Venice's `cache_input`).
        cache_input: Price,
    },
    Image {
        /// Each image made.
        generation: Price,
    },
    Video {
        /// Each second of video made (`/video/quote` gives a request's price).
        per_second: Price,
    },
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Price {
    pub usd: Amount,
    pub diem: Amount,
}

impl Price {
    /// DIEM is priced 1:1 with USD.
    pub fn usd(usd: Amount) -> Self {
        Self { usd, diem: usd }
    }
}
