//! The provider protocol: messages between provider nodes and the gateway.
//!
//! A provider's identity is an Ed25519 key. It registers by sending a [`Registration`] signed
//! with that key and keeps its lease with signed [`Heartbeat`]s. Each payload is signed as the
//! exact bytes sent (the JSON text inside [`SignedEnvelope::payload`]), so no canonical JSON is
//! needed, and each carries a `purpose` so that one kind of message cannot pass for another.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub const REGISTRATION_PURPOSE: &str = "gondola/provider-registration/v1";
pub const HEARTBEAT_PURPOSE: &str = "gondola/provider-heartbeat/v1";
pub const RECEIPT_PURPOSE: &str = "gondola/provider-receipt/v1";

/// Gateway routes of the provider protocol.
pub const REGISTER_PATH: &str = "/provider/v1/register";
pub const HEARTBEAT_PATH: &str = "/provider/v1/heartbeat";
/// Gateway route that hands out the fresh challenge a registration must carry.
pub const REGISTRATION_CHALLENGE_PATH: &str = "/provider/v1/challenge";
/// Provider route the gateway sends inference to.
pub const PROVIDER_CHAT_PATH: &str = "/provider/v1/chat/completions";
/// Provider route the gateway sends embedding requests to.
pub const PROVIDER_EMBEDDINGS_PATH: &str = "/provider/v1/embeddings";
/// Provider route the gateway sends speech requests to.
pub const PROVIDER_SPEECH_PATH: &str = "/provider/v1/audio/speech";
/// Provider route the gateway sends transcription requests to.
pub const PROVIDER_TRANSCRIPTION_PATH: &str = "/provider/v1/audio/transcriptions";
/// Provider route the gateway sends image requests to.
pub const PROVIDER_IMAGES_PATH: &str = "/provider/v1/images/generations";
/// Provider route the gateway sends background removals to.
pub const PROVIDER_BACKGROUND_REMOVAL_PATH: &str = "/provider/v1/image/background-remove";
/// Provider route the gateway sends image edits to.
pub const PROVIDER_IMAGE_EDIT_PATH: &str = "/provider/v1/image/edit";
/// Provider route the gateway sends upscales to.
pub const PROVIDER_UPSCALE_PATH: &str = "/provider/v1/image/upscale";
/// Provider route the gateway queues video jobs at.
pub const PROVIDER_VIDEO_QUEUE_PATH: &str = "/provider/v1/video/queue";
/// Provider route of one video job (`{id}`): its status (GET), its removal (DELETE); and,
/// with `/content`, its video.
pub const PROVIDER_VIDEO_JOBS_PATH: &str = "/provider/v1/video/jobs";
/// Provider route the gateway sends sealed requests to (see [`crate::sealed`]).
pub const PROVIDER_SEALED_CHAT_PATH: &str = "/provider/v1/sealed/chat";

/// A payload and its signature by `public_key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedEnvelope {
    /// Hex of the 32-byte Ed25519 public key.
    pub public_key: String,
    /// The signed JSON text of the payload.
    pub payload: String,
    /// Hex of the 64-byte signature over `payload`'s bytes.
    pub signature: String,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the public key is not a valid Ed25519 key")]
    BadKey,
    #[error("the signature is malformed or does not match the payload")]
    BadSignature,
    #[error("the payload is not a valid message: {0}")]
    BadPayload(String),
}

impl SignedEnvelope {
    pub fn sign<T: Serialize>(key: &SigningKey, payload: &T) -> Result<Self, serde_json::Error> {
        let payload = serde_json::to_string(payload)?;
        let signature = key.sign(payload.as_bytes());
        Ok(Self {
            public_key: hex::encode(key.verifying_key().as_bytes()),
            payload,
            signature: hex::encode(signature.to_bytes()),
        })
    }

    /// Checks the signature, then parses the payload.
    pub fn verify<T: DeserializeOwned>(&self) -> Result<(VerifyingKey, T), EnvelopeError> {
        let key_bytes: [u8; 32] = hex::decode(&self.public_key)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(EnvelopeError::BadKey)?;
        let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| EnvelopeError::BadKey)?;
        let signature_bytes: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(EnvelopeError::BadSignature)?;
        key.verify_strict(
            self.payload.as_bytes(),
            &Signature::from_bytes(&signature_bytes),
        )
        .map_err(|_| EnvelopeError::BadSignature)?;
        let payload = serde_json::from_str(&self.payload)
            .map_err(|error| EnvelopeError::BadPayload(error.to_string()))?;
        Ok((key, payload))
    }
}

/// A provider's short public id: `pv-` and the first 16 hex digits of its public key.
pub fn provider_id(key: &VerifyingKey) -> String {
    format!("pv-{}", &hex::encode(key.as_bytes())[..16])
}

/// A model a provider serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelAdvert {
    /// The id clients ask for.
    pub id: String,
    /// What the model serves. Absent in an older provider's advert: a text model.
    #[serde(default, rename = "type")]
    pub model_type: crate::models::ModelType,
    /// Human-readable name.
    pub name: String,
    pub context_tokens: u32,
    pub quantization: String,
    pub parameters: u64,
    pub supports_response_schema: bool,
    pub supports_reasoning: bool,
    /// Takes `tools` and answers with `tool_calls`. Absent in an older provider's advert.
    #[serde(default)]
    pub supports_function_calling: bool,
    /// Answers `logprobs` with token log-probabilities. Absent in an older provider's advert.
    #[serde(default)]
    pub supports_logprobs: bool,
    /// Kinds of input beside text the model takes (`image`, `audio`, `video`, `file`), passed
    /// to it as sent. Empty: text only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_media: Vec<String>,
    /// `embedded` (llama.cpp in the provider) or `upstream` (an OpenAI-compatible engine).
    pub backend: String,
    /// A speech model's voices, its default first. Empty for other types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voices: Vec<String>,
    /// An image model's sizes and steps. Absent for other types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<crate::images::ImageLimits>,
    /// A video model's durations and resolutions. Absent for other types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<crate::video::VideoLimits>,
}

/// "Let me serve these models at this address." Signed by the provider's key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registration {
    pub purpose: String,
    /// Milliseconds since the Unix epoch; the gateway refuses stale or future registrations.
    pub issued_at_ms: u64,
    /// A challenge the gateway issued moments before ([`REGISTRATION_CHALLENGE_PATH`]): it
    /// takes each provider's challenges once and in order, so a captured registration cannot
    /// be sent again to replace the provider's lease.
    #[serde(default)]
    pub challenge: String,
    /// Where the gateway reaches this provider (`http://host:port`).
    pub endpoint: String,
    pub models: Vec<ModelAdvert>,
    /// Requests the provider accepts at once; the gateway sends no more.
    pub max_in_flight: u32,
    pub software_version: String,
    /// The provider's Oblivious HTTP key configuration list (`application/ohttp-keys`,
    /// base64), to which clients seal requests that only this provider can read. Absent from
    /// providers that take no sealed requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealing_keys: Option<String>,
}

/// A challenge for the next registration, and when it expires (Unix seconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistrationChallenge {
    pub challenge: String,
    pub expires_at: u64,
}

/// The gateway's answer to an accepted registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistrationAccepted {
    pub provider_id: String,
    pub lease_id: String,
    /// A secret the gateway presents (as a bearer token) on every request to this provider, so
    /// that the provider serves its gateway and nobody else.
    pub lease_token: String,
    /// Without a heartbeat for this long, the lease ends and the provider gets no traffic.
    pub lease_ttl_ms: u64,
    pub heartbeat_interval_ms: u64,
}

/// "I am alive, and this is my load." Signed by the provider's key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub purpose: String,
    pub issued_at_ms: u64,
    pub lease_id: String,
    pub load: ProviderLoad,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderLoad {
    pub in_flight: u32,
    pub queue_depth: u32,
    /// Recent generation rate, in thousandths of a token per second.
    pub recent_tokens_per_second_milli: u64,
}

/// "I ran this request and gave this answer." Signed by the provider's key, handed to the client
/// inside the sealed reply (the `gondola-receipt` trailer field), kept by the client only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub purpose: String,
    /// The provider's id (as [`provider_id`] makes it from the signing key).
    pub provider: String,
    pub model: String,
    /// The model's quantization as the provider advertises it (`Q4_1`, …).
    pub quantization: String,
    /// Hex SHA-256 of the chat request's body, as the client sealed it.
    pub request_sha256: String,
    /// Hex SHA-256 of the reply's content, every byte the client decrypts before the trailer.
    pub response_sha256: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// When the reply ended, in milliseconds since the Unix epoch.
    pub issued_at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        SigningKey::from_bytes(&seed)
    }

    fn heartbeat() -> Heartbeat {
        Heartbeat {
            purpose: HEARTBEAT_PURPOSE.into(),
            issued_at_ms: 1,
            lease_id: "l".into(),
            load: ProviderLoad::default(),
        }
    }

    #[test]
    fn a_signed_message_verifies_and_names_its_signer() {
        let key = key();
        let envelope = SignedEnvelope::sign(&key, &heartbeat()).expect("signs");
        let (signer, message): (VerifyingKey, Heartbeat) = envelope.verify().expect("verifies");
        assert_eq!(signer, key.verifying_key());
        assert_eq!(message.lease_id, "l");
        assert!(provider_id(&signer).starts_with("pv-"));
    }

    #[test]
    fn tampering_or_another_key_is_refused() {
        let key = key();
        let mut envelope = SignedEnvelope::sign(&key, &heartbeat()).expect("signs");
        envelope.payload = envelope.payload.replace("\"l\"", "\"m\"");
        assert_eq!(
            envelope.verify::<Heartbeat>().err(),
            Some(EnvelopeError::BadSignature)
        );
        let mut envelope = SignedEnvelope::sign(&key, &heartbeat()).expect("signs");
        envelope.public_key = hex::encode(self::key().verifying_key().as_bytes());
        assert_eq!(
            envelope.verify::<Heartbeat>().err(),
            Some(EnvelopeError::BadSignature)
        );
        envelope.public_key = "zz".into();
        assert_eq!(
            envelope.verify::<Heartbeat>().err(),
            Some(EnvelopeError::BadKey)
        );
    }
}
