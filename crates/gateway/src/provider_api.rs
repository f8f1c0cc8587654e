//! The provider protocol at the gateway: a fresh registration challenge, registration (a
//! message signed by the provider's Ed25519 key, carrying that challenge, under the operator's
//! admission policy) and heartbeats that keep the lease.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use wire::error::{ApiError, Dialect, ErrorCode};
use wire::provider::{
    HEARTBEAT_PURPOSE, Heartbeat, REGISTRATION_CHALLENGE_PATH, REGISTRATION_PURPOSE, Registration,
    RegistrationAccepted, RegistrationChallenge, SignedEnvelope, provider_id,
};

use crate::config::Admission;
use crate::registry::HeartbeatError;
use crate::{AppState, MAX_PROVIDERS, challenge, error_response};

/// Largest provider-protocol message: a registration lists models, nothing more.
pub(crate) const MAX_PROVIDER_MESSAGE_BYTES: usize = 64 * 1024;
/// Most models one provider may advertise.
const MAX_MODELS_PER_PROVIDER: usize = 64;
/// Longest model id a provider may advertise.
const MAX_ADVERTISED_MODEL_ID_BYTES: usize = 128;
/// Longest provider endpoint URL.
const MAX_ENDPOINT_BYTES: usize = 512;

fn provider_error(status: StatusCode, message: impl Into<String>) -> Response {
    let code = match status.as_u16() {
        401 => ErrorCode::AuthenticationFailed,
        403 => ErrorCode::Unauthorized,
        404 => ErrorCode::NotFound,
        _ => ErrorCode::InvalidRequest,
    };
    let mut response = error_response(&ApiError::new(code, message), Dialect::OpenAi);
    *response.status_mut() = status;
    response
}

fn parse_envelope(body: &[u8]) -> Result<SignedEnvelope, String> {
    serde_json::from_slice(body).map_err(|error| format!("not a signed message: {error}"))
}

fn within_skew(state: &AppState, issued_at_ms: u64) -> bool {
    let skew = u64::try_from(state.config.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
    wire::clock::unix_millis().abs_diff(issued_at_ms) <= skew
}

/// `GET /provider/v1/challenge`: a fresh challenge for a registration (stateless: asking
/// for many fills nothing).
pub(crate) async fn registration_challenge(State(state): State<Arc<AppState>>) -> Response {
    let (challenge, expires_at) = state.registration_challenges.issue();
    Json(RegistrationChallenge {
        challenge,
        expires_at,
    })
    .into_response()
}

pub(crate) async fn register(State(state): State<Arc<AppState>>, body: bytes::Bytes) -> Response {
    let envelope = match parse_envelope(&body) {
        Ok(envelope) => envelope,
        Err(message) => return provider_error(StatusCode::BAD_REQUEST, message),
    };
    let (key, registration): (_, Registration) = match envelope.verify() {
        Ok(verified) => verified,
        Err(error) => return provider_error(StatusCode::UNAUTHORIZED, error.to_string()),
    };
    if registration.purpose != REGISTRATION_PURPOSE {
        return provider_error(
            StatusCode::BAD_REQUEST,
            "this message is not a registration",
        );
    }
    if !within_skew(&state, registration.issued_at_ms) {
        return provider_error(
            StatusCode::BAD_REQUEST,
            "the registration's timestamp is too far from the gateway's clock",
        );
    }
    let Ok(stamp) = state.registration_challenges.check(&registration.challenge) else {
        return provider_error(
            StatusCode::BAD_REQUEST,
            format!(
                "the registration's challenge is missing, unknown or expired; GET \
                 {REGISTRATION_CHALLENGE_PATH} for a new one"
            ),
        );
    };
    let id = provider_id(&key);
    if let Admission::Allowlist(allowed) = &state.config.admission
        && !allowed.contains(&key)
    {
        tracing::warn!(provider = %id, "registration refused: provider not on the allowlist");
        return provider_error(
            StatusCode::FORBIDDEN,
            "this provider's key is not admitted by the gateway's operator",
        );
    }
    let endpoint = registration.endpoint.trim().to_owned();
    if endpoint.len() > MAX_ENDPOINT_BYTES
        || !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
    {
        return provider_error(
            StatusCode::BAD_REQUEST,
            "endpoint must be an http:// or https:// URL",
        );
    }
    if registration.models.is_empty() || registration.models.len() > MAX_MODELS_PER_PROVIDER {
        return provider_error(
            StatusCode::BAD_REQUEST,
            format!("a provider advertises 1 to {MAX_MODELS_PER_PROVIDER} models"),
        );
    }
    if let Some(bad) = registration.models.iter().find(|advert| {
        advert.id.is_empty()
            || advert.id.len() > MAX_ADVERTISED_MODEL_ID_BYTES
            || advert.id.contains([':', '&', '='])
            || advert.id.chars().any(char::is_whitespace)
    }) {
        return provider_error(
            StatusCode::BAD_REQUEST,
            format!("model id {:?} is not valid", bad.id),
        );
    }
    if let Some(keys) = &registration.sealing_keys {
        use base64::Engine as _;
        let usable = keys.len() <= 4 * privacy::MAX_KEYS_BYTES.div_ceil(3)
            && base64::engine::general_purpose::STANDARD
                .decode(keys)
                .ok()
                .is_some_and(|encoded| privacy::client::GatewayKeys::decode(&encoded).is_ok());
        if !usable {
            return provider_error(
                StatusCode::BAD_REQUEST,
                "sealing_keys is not a base64 application/ohttp-keys list",
            );
        }
    }
    if !state.registry.has_room_for(&id, MAX_PROVIDERS) {
        return provider_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the gateway holds its maximum number of providers",
        );
    }
    // Taken last, once everything else about the registration is right: a provider's
    // challenges are taken once each and in order, so a registration sent again (by whoever
    // captured it) is refused instead of replacing the lease.
    match state.registration_challenge_uses.take(
        key.as_bytes(),
        stamp,
        state.registration_challenges.ttl_nanos(),
    ) {
        Ok(()) => {}
        Err(challenge::ChallengeError::Busy) => {
            return provider_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many providers are registering; try again shortly",
            );
        }
        Err(_) => {
            tracing::warn!(provider = %id, "registration refused: its challenge was used before");
            return provider_error(
                StatusCode::BAD_REQUEST,
                "this registration's challenge was used before; a registration is never \
                 taken twice",
            );
        }
    }
    let lease_id = format!("lease-{}", economy::random_hex(16));
    let lease_token = economy::random_hex(32);
    let models: Vec<String> = registration
        .models
        .iter()
        .map(|advert| advert.id.clone())
        .collect();
    state.registry.register(
        id.clone(),
        key,
        lease_id.clone(),
        lease_token.clone(),
        endpoint,
        registration.models,
        registration.max_in_flight,
        registration.sealing_keys,
        registration.issued_at_ms,
        Instant::now(),
    );
    state
        .metrics
        .live_providers
        .set(i64::try_from(state.registry.live_count(Instant::now())).unwrap_or(i64::MAX));
    tracing::info!(provider = %id, models = ?models, max_in_flight = registration.max_in_flight, "provider registered");
    let accepted = RegistrationAccepted {
        provider_id: id,
        lease_id,
        lease_token,
        lease_ttl_ms: u64::try_from(state.config.lease_ttl.as_millis()).unwrap_or(u64::MAX),
        heartbeat_interval_ms: u64::try_from(state.config.heartbeat_interval.as_millis())
            .unwrap_or(u64::MAX),
    };
    Json(accepted).into_response()
}

pub(crate) async fn heartbeat(State(state): State<Arc<AppState>>, body: bytes::Bytes) -> Response {
    let envelope = match parse_envelope(&body) {
        Ok(envelope) => envelope,
        Err(message) => return provider_error(StatusCode::BAD_REQUEST, message),
    };
    let (key, heartbeat): (_, Heartbeat) = match envelope.verify() {
        Ok(verified) => verified,
        Err(error) => return provider_error(StatusCode::UNAUTHORIZED, error.to_string()),
    };
    if heartbeat.purpose != HEARTBEAT_PURPOSE {
        return provider_error(StatusCode::BAD_REQUEST, "this message is not a heartbeat");
    }
    if !within_skew(&state, heartbeat.issued_at_ms) {
        return provider_error(
            StatusCode::BAD_REQUEST,
            "the heartbeat's timestamp is too far from the gateway's clock",
        );
    }
    match state.registry.heartbeat(
        &heartbeat.lease_id,
        &key,
        heartbeat.issued_at_ms,
        heartbeat.load,
        Instant::now(),
    ) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(HeartbeatError::UnknownLease) => provider_error(
            StatusCode::NOT_FOUND,
            HeartbeatError::UnknownLease.to_string(),
        ),
        Err(error @ HeartbeatError::WrongKey) => {
            provider_error(StatusCode::UNAUTHORIZED, error.to_string())
        }
        Err(error @ HeartbeatError::Replayed) => {
            provider_error(StatusCode::BAD_REQUEST, error.to_string())
        }
    }
}
