//! Keeping a lease with a gateway (one such loop per gateway the provider serves): register
//! with a signed message, then send signed heartbeats with the current load. A gateway that forgets the lease (restart, lapse) gets a
//! new registration. Retries back off, and every wait is bounded.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use tokio::sync::{RwLock, oneshot, watch};
use wire::provider::{
    HEARTBEAT_PATH, HEARTBEAT_PURPOSE, Heartbeat, ModelAdvert, ProviderLoad, REGISTER_PATH,
    REGISTRATION_CHALLENGE_PATH, REGISTRATION_PURPOSE, Registration, RegistrationAccepted,
    RegistrationChallenge, SignedEnvelope,
};

/// First wait after a failed registration; doubles up to the maximum.
const REGISTER_RETRY_FIRST: Duration = Duration::from_millis(200);
const REGISTER_RETRY_MAX: Duration = Duration::from_secs(5);
/// A request to the gateway that takes longer than this has failed.
const GATEWAY_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeats go out at least this often, whatever the gateway asks.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

/// What the provider tells the gateway about itself.
pub struct LeaseTerms {
    pub gateway_url: String,
    pub endpoint: String,
    pub models: Vec<ModelAdvert>,
    pub max_in_flight: u32,
    /// The sealing key list (base64 `application/ohttp-keys`) published with the registration.
    pub sealing_keys: Option<String>,
}

/// The secret of the current lease with each gateway (one slot per gateway, `None` while
/// unregistered), checked on every request from a gateway.
pub type LeaseToken = Arc<RwLock<Vec<Option<String>>>>;

/// One gateway's slot among the lease secrets.
pub struct Slot {
    pub tokens: LeaseToken,
    pub index: usize,
}

/// Reads the current load for heartbeats.
pub trait LoadSource: Send + Sync + 'static {
    fn load(&self) -> ProviderLoad;
}

pub async fn maintain(
    key: SigningKey,
    terms: LeaseTerms,
    slot: Slot,
    load: Arc<dyn LoadSource>,
    mut ready: Option<oneshot::Sender<RegistrationAccepted>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = match reqwest::Client::builder()
        .timeout(GATEWAY_REQUEST_TIMEOUT)
        .no_proxy()
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the HTTP client for the gateway");
            return;
        }
    };
    let base = terms.gateway_url.trim_end_matches('/').to_owned();
    let mut retry = REGISTER_RETRY_FIRST;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = register(&client, &base, &key, &terms) => accepted,
        };
        let accepted = match accepted {
            Ok(accepted) => accepted,
            Err(reason) => {
                tracing::warn!(gateway = %base, %reason, retry_in_ms = retry.as_millis() as u64, "registration failed");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(REGISTER_RETRY_MAX);
                continue;
            }
        };
        retry = REGISTER_RETRY_FIRST;
        if let Some(token) = slot.tokens.write().await.get_mut(slot.index) {
            *token = Some(accepted.lease_token.clone());
        }
        tracing::info!(gateway = %base, provider = %accepted.provider_id, lease_ttl_ms = accepted.lease_ttl_ms, "registered with the gateway");
        let interval =
            Duration::from_millis(accepted.heartbeat_interval_ms).max(MIN_HEARTBEAT_INTERVAL);
        let lease_id = accepted.lease_id.clone();
        if let Some(ready) = ready.take() {
            let _ = ready.send(accepted);
        }
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(interval) => {}
            }
            match send_heartbeat(&client, &base, &key, &lease_id, load.load()).await {
                Ok(HeartbeatOutcome::Kept) => {}
                Ok(HeartbeatOutcome::Lost) => {
                    tracing::warn!("the gateway no longer knows this lease; registering again");
                    break;
                }
                Err(reason) => tracing::warn!(%reason, "heartbeat failed"),
            }
        }
    }
}

async fn register(
    client: &reqwest::Client,
    base: &str,
    key: &SigningKey,
    terms: &LeaseTerms,
) -> Result<RegistrationAccepted, String> {
    // A fresh challenge for each registration: the gateway takes none twice.
    let challenge: RegistrationChallenge = client
        .get(format!("{base}{REGISTRATION_CHALLENGE_PATH}"))
        .send()
        .await
        .map_err(|error| format!("the gateway could not be reached: {error}"))?
        .error_for_status()
        .map_err(|error| format!("the gateway gave no registration challenge: {error}"))?
        .json()
        .await
        .map_err(|error| format!("the gateway's registration challenge is unreadable: {error}"))?;
    let registration = Registration {
        purpose: REGISTRATION_PURPOSE.into(),
        issued_at_ms: wire::clock::unix_millis(),
        challenge: challenge.challenge,
        endpoint: terms.endpoint.clone(),
        models: terms.models.clone(),
        max_in_flight: terms.max_in_flight,
        software_version: env!("CARGO_PKG_VERSION").into(),
        sealing_keys: terms.sealing_keys.clone(),
    };
    let envelope = SignedEnvelope::sign(key, &registration).map_err(|error| error.to_string())?;
    let response = client
        .post(format!("{base}{REGISTER_PATH}"))
        .json(&envelope)
        .send()
        .await
        .map_err(|error| format!("the gateway could not be reached: {error}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!(
            "the gateway refused the registration ({status}): {}",
            body.chars().take(300).collect::<String>()
        ));
    }
    response
        .json()
        .await
        .map_err(|error| format!("the gateway's answer is not a lease: {error}"))
}

enum HeartbeatOutcome {
    Kept,
    Lost,
}

async fn send_heartbeat(
    client: &reqwest::Client,
    base: &str,
    key: &SigningKey,
    lease_id: &str,
    load: ProviderLoad,
) -> Result<HeartbeatOutcome, String> {
    let heartbeat = Heartbeat {
        purpose: HEARTBEAT_PURPOSE.into(),
        issued_at_ms: wire::clock::unix_millis(),
        lease_id: lease_id.into(),
        load,
    };
    let envelope = SignedEnvelope::sign(key, &heartbeat).map_err(|error| error.to_string())?;
    let response = client
        .post(format!("{base}{HEARTBEAT_PATH}"))
        .json(&envelope)
        .send()
        .await
        .map_err(|error| format!("the gateway could not be reached: {error}"))?;
    match response.status().as_u16() {
        200..=299 => Ok(HeartbeatOutcome::Kept),
        401 | 404 => Ok(HeartbeatOutcome::Lost),
        status => Err(format!("the gateway answered {status}")),
    }
}
