//! The model catalogue as the API serves it (`GET /models`), in Venice's shape: an OpenAI model
//! object with a `model_spec` carrying capabilities, privacy, pricing and context length.

use serde::Serialize;

use crate::money::Amount;

#[derive(Debug, Clone, Serialize)]
pub struct ModelList {
    pub object: &'static str,
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
    /// Gondola: how many providers serve this model right now.
    pub providers: usize,
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
}

#[derive(Debug, Clone, Serialize)]
pub struct Constraints {
    pub temperature: DefaultValue,
    pub top_p: DefaultValue,
}

#[derive(Debug, Clone, Serialize)]
pub struct DefaultValue {
    pub default: f32,
}

/// Prices per million tokens.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Pricing {
    pub input: Price,
    pub output: Price,
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
