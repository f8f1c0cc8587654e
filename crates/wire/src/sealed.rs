//! Sealed chat: a chat request encrypted to providers' keys, which the gateway routes and meters
//! without being able to read it.
//!
//! The client reads the providers' keys from the gateway ([`SealingProviders`] at
//! [`PROVIDERS_PATH`]), seals its chat request once to each of up to [`MAX_TARGETS`] providers
//! of the model (chunked Oblivious HTTP, so only that provider can read it and the reply is
//! readable only by the client), and sends a [`SealedChat`] to [`SEALED_CHAT_PATH`]. The gateway
//! charges for the declared model and `max_tokens`, tries the targets in turn as it would any
//! provider, and passes the chosen provider's [`SealedEvent`]s through: pieces of the sealed
//! reply, then the token counts (in the clear, so accounts can be charged what was used).

use serde::{Deserialize, Serialize};

use crate::chat::Usage;
use crate::error::ApiError;

/// Gateway route listing the providers that take sealed requests, with their keys.
pub const PROVIDERS_PATH: &str = "/v1/privacy/providers";
/// Gateway route of sealed chat requests.
pub const SEALED_CHAT_PATH: &str = "/v1/privacy/chat";
/// Most providers one request is sealed to (each copy is routed only to its own provider).
pub const MAX_TARGETS: usize = 4;
/// Response header naming the provider whose sealed reply follows.
pub const PROVIDER_HEADER: &str = "x-gondola-provider";
/// Headers with which the gateway tells a provider what a sealed request was paid for; the
/// provider refuses a request that asks for more.
pub const MODEL_HEADER: &str = "x-gondola-model";
pub const MAX_TOKENS_HEADER: &str = "x-gondola-max-tokens";
/// Header with which the gateway tells a provider how many images a sealed image request was
/// paid for.
pub const IMAGES_HEADER: &str = "x-gondola-images";
/// Where clients send image requests sealed to providers (`/api/v1/...` too).
pub const SEALED_IMAGES_PATH: &str = "/v1/privacy/images";
/// Trailer field of the sealed reply that carries the provider's signed receipt.
pub const RECEIPT_FIELD: &str = "gondola-receipt";

/// One provider that takes sealed requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealingProvider {
    /// The provider's id (`pv-…`).
    pub id: String,
    /// Hex of its Ed25519 public key: receipts are signed with it.
    pub public_key: String,
    /// Its Oblivious HTTP key configuration list, base64 (`application/ohttp-keys`).
    pub keys: String,
    /// The catalogue ids of the models it serves.
    pub models: Vec<String>,
}

/// `GET /v1/privacy/providers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealingProviders {
    pub object: String,
    pub data: Vec<SealingProvider>,
    /// Other names of served models (traits such as `default`, compatibility aliases) and the
    /// model id each stands for: a sealed request declares the id.
    #[serde(default)]
    pub aliases: std::collections::BTreeMap<String, String>,
}

/// One copy of the request, sealed to one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedTarget {
    pub provider: String,
    /// The `message/ohttp-chunked-req` body, base64.
    pub request: String,
}

/// `POST /v1/privacy/chat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedChat {
    /// A served model id; every target must serve it.
    pub model: String,
    /// The most tokens the reply may have: what the request is charged for up front, and what
    /// the provider holds the sealed request to.
    pub max_tokens: u32,
    pub sealed: Vec<SealedTarget>,
}

/// An image request (Venice's `/image/generate` body) sealed to one or more providers, with
/// what the gateway charges by in the clear.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedImages {
    /// A served image model id; every target must serve it.
    pub model: String,
    /// How many images: what the request is charged for up front, and what the provider holds
    /// the sealed request to.
    pub variants: u32,
    pub sealed: Vec<SealedTarget>,
}

/// One server-sent event of a sealed reply, provider to gateway and gateway to client. Exactly
/// one field is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SealedEvent {
    /// The next bytes of the `message/ohttp-chunked-res` reply, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
    /// The token counts, once the reply is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The gateway's word that the reply broke off (the sealed part is cut short too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SealedError>,
}

/// A sealed reply's error event, in the OpenAI error shape's fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedError {
    pub code: String,
    pub message: String,
}

impl From<&ApiError> for SealedError {
    fn from(error: &ApiError) -> Self {
        Self {
            code: error.code.as_str().to_owned(),
            message: error.message.clone(),
        }
    }
}
