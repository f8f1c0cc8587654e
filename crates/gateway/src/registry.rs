//! The providers the gateway knows: their leases, reported load, in-flight counts and circuit
//! breakers, and the choice of provider for each attempt.
//!
//! Routing is power of two choices: of the healthy providers serving a model, two are picked at
//! random and the less loaded one wins (load = requests the gateway has in flight there plus the
//! queue the provider last reported). This spreads load nearly as well as "least loaded" without
//! herding every request onto the same provider between heartbeats.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use rand::Rng;
use wire::provider::{ModelAdvert, ProviderLoad};

/// One provider under a live (or lapsed) lease.
pub struct Provider {
    pub id: String,
    pub key: VerifyingKey,
    pub lease_id: String,
    pub lease_token: String,
    pub endpoint: String,
    pub models: Vec<ModelAdvert>,
    pub max_in_flight: u32,
    /// Its key for sealed requests (base64 `application/ohttp-keys`), if it takes them.
    pub sealing_keys: Option<String>,
    in_flight: AtomicU32,
    state: Mutex<ProviderState>,
}

struct ProviderState {
    lease_expires: Instant,
    last_heartbeat_issued_ms: u64,
    load: ProviderLoad,
    breaker: Breaker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe request is out; others wait for its outcome.
    HalfOpen,
}

/// A claim on one in-flight place at a provider; released on drop.
pub struct Attempt {
    pub provider: Arc<Provider>,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.provider.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why no provider could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoProvider {
    /// None serves the model under a live lease.
    Offline,
    /// Some do, but all are full, broken or already tried.
    Unavailable,
}

/// A provider as the admin view shows it.
#[derive(Debug, serde::Serialize)]
pub struct ProviderView {
    pub id: String,
    pub models: Vec<String>,
    pub in_flight: u32,
    pub max_in_flight: u32,
    pub queue_depth: u32,
    pub recent_tokens_per_second: f64,
    pub breaker: &'static str,
    pub lease_expires_in_ms: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeartbeatError {
    #[error("no live lease with this id; register again")]
    UnknownLease,
    #[error("the heartbeat is signed by another key than the lease's")]
    WrongKey,
    #[error("the heartbeat is older than one already received")]
    Replayed,
}

pub struct Registry {
    providers: RwLock<HashMap<String, Arc<Provider>>>,
    lease_ttl: Duration,
    breaker_failure_threshold: u32,
    breaker_open_for: Duration,
    max_in_flight_per_provider: u32,
}

impl Registry {
    pub fn new(
        lease_ttl: Duration,
        breaker_failure_threshold: u32,
        breaker_open_for: Duration,
        max_in_flight_per_provider: u32,
    ) -> Self {
        Self {
            providers: RwLock::new(HashMap::new()),
            lease_ttl,
            breaker_failure_threshold: breaker_failure_threshold.max(1),
            breaker_open_for,
            max_in_flight_per_provider,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Provider>>> {
        self.providers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Provider>>> {
        self.providers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a provider `id` may register with at most `capacity` providers held: always
    /// when it holds a lease already (it is replaced), else when there is room.
    pub fn has_room_for(&self, id: &str, capacity: usize) -> bool {
        let providers = self.read();
        providers.contains_key(id) || providers.len() < capacity
    }

    /// Starts (or restarts) a provider's lease. A provider that registers again replaces its
    /// previous lease: it restarted, and its old endpoint may be gone.
    #[expect(
        clippy::too_many_arguments,
        reason = "one field per part of a registration"
    )]
    pub fn register(
        &self,
        id: String,
        key: VerifyingKey,
        lease_id: String,
        lease_token: String,
        endpoint: String,
        models: Vec<ModelAdvert>,
        max_in_flight: u32,
        sealing_keys: Option<String>,
        issued_at_ms: u64,
        now: Instant,
    ) {
        let provider = Arc::new(Provider {
            id: id.clone(),
            key,
            lease_id,
            lease_token,
            endpoint,
            models,
            max_in_flight: max_in_flight.clamp(1, self.max_in_flight_per_provider.max(1)),
            sealing_keys,
            in_flight: AtomicU32::new(0),
            state: Mutex::new(ProviderState {
                lease_expires: now + self.lease_ttl,
                last_heartbeat_issued_ms: issued_at_ms,
                load: ProviderLoad::default(),
                breaker: Breaker::Closed {
                    consecutive_failures: 0,
                },
            }),
        });
        self.write().insert(id, provider);
    }

    pub fn heartbeat(
        &self,
        lease_id: &str,
        key: &VerifyingKey,
        issued_at_ms: u64,
        load: ProviderLoad,
        now: Instant,
    ) -> Result<(), HeartbeatError> {
        let providers = self.read();
        let provider = providers
            .values()
            .find(|provider| provider.lease_id == lease_id)
            .ok_or(HeartbeatError::UnknownLease)?;
        if provider.key != *key {
            return Err(HeartbeatError::WrongKey);
        }
        let mut state = provider.lock_state();
        if state.lease_expires <= now {
            return Err(HeartbeatError::UnknownLease);
        }
        if issued_at_ms <= state.last_heartbeat_issued_ms {
            return Err(HeartbeatError::Replayed);
        }
        state.last_heartbeat_issued_ms = issued_at_ms;
        state.lease_expires = now + self.lease_ttl;
        state.load = load;
        Ok(())
    }

    /// Drops providers whose lease lapsed; returns how many remain.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut providers = self.write();
        providers.retain(|_, provider| provider.lock_state().lease_expires > now);
        providers.len()
    }

    /// Ids of the models served under live leases, with how many providers serve each.
    pub fn live_models(&self, now: Instant) -> HashMap<String, (ModelAdvert, usize)> {
        let mut models: HashMap<String, (ModelAdvert, usize)> = HashMap::new();
        for provider in self
            .read()
            .values()
            .filter(|provider| provider.is_live(now))
        {
            for advert in &provider.models {
                models
                    .entry(advert.id.clone())
                    .or_insert_with(|| (advert.clone(), 0))
                    .1 += 1;
            }
        }
        models
    }

    pub fn live_count(&self, now: Instant) -> usize {
        self.read()
            .values()
            .filter(|provider| provider.is_live(now))
            .count()
    }

    /// The live providers that take sealed requests, with their keys.
    pub fn sealing_providers(&self, now: Instant) -> Vec<wire::sealed::SealingProvider> {
        let mut listed: Vec<wire::sealed::SealingProvider> = self
            .read()
            .values()
            .filter(|provider| provider.is_live(now))
            .filter_map(|provider| {
                Some(wire::sealed::SealingProvider {
                    id: provider.id.clone(),
                    public_key: hex::encode(provider.key.as_bytes()),
                    keys: provider.sealing_keys.clone()?,
                    models: provider
                        .models
                        .iter()
                        .map(|advert| advert.id.clone())
                        .collect(),
                })
            })
            .collect();
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        listed
    }

    /// Chooses a provider for `model` (among those in `allowed`, when given), skipping those
    /// in `tried`, and claims an in-flight place.
    pub fn choose(
        &self,
        model: &str,
        allowed: Option<&[String]>,
        tried: &[String],
        now: Instant,
    ) -> Result<Attempt, NoProvider> {
        let providers = self.read();
        let serving: Vec<&Arc<Provider>> = providers
            .values()
            .filter(|provider| {
                provider.is_live(now)
                    && provider.models.iter().any(|advert| advert.id == model)
                    && allowed.is_none_or(|allowed| allowed.contains(&provider.id))
            })
            .collect();
        if serving.is_empty() {
            return Err(NoProvider::Offline);
        }
        let mut candidates: Vec<&Arc<Provider>> = serving
            .into_iter()
            .filter(|provider| !tried.contains(&provider.id))
            .filter(|provider| provider.in_flight.load(Ordering::Acquire) < provider.max_in_flight)
            .filter(|provider| provider.breaker_allows(now))
            .collect();
        // Two random candidates, the less loaded wins; retry if it filled up in the meantime.
        let mut rng = rand::rng();
        while !candidates.is_empty() {
            let first = rng.random_range(0..candidates.len());
            let second = rng.random_range(0..candidates.len());
            let pick = if candidates[second].score() < candidates[first].score() {
                second
            } else {
                first
            };
            let provider = candidates[pick];
            if provider.try_claim() {
                if !provider.take_probe_if_half_open(now) {
                    provider.in_flight.fetch_sub(1, Ordering::AcqRel);
                    candidates.swap_remove(pick);
                    continue;
                }
                return Ok(Attempt {
                    provider: Arc::clone(provider),
                });
            }
            candidates.swap_remove(pick);
        }
        Err(NoProvider::Unavailable)
    }

    pub fn record_success(&self, provider: &Provider) {
        provider.lock_state().breaker = Breaker::Closed {
            consecutive_failures: 0,
        };
    }

    pub fn record_failure(&self, provider: &Provider, now: Instant) {
        let mut state = provider.lock_state();
        state.breaker = match state.breaker {
            Breaker::Closed {
                consecutive_failures,
            } if consecutive_failures + 1 < self.breaker_failure_threshold => Breaker::Closed {
                consecutive_failures: consecutive_failures + 1,
            },
            _ => {
                tracing::warn!(provider = %provider.id, open_for_ms = self.breaker_open_for.as_millis() as u64, "circuit breaker opened");
                Breaker::Open {
                    until: now + self.breaker_open_for,
                }
            }
        };
    }

    pub fn views(&self, now: Instant) -> Vec<ProviderView> {
        let mut views: Vec<ProviderView> = self
            .read()
            .values()
            .filter(|provider| provider.is_live(now))
            .map(|provider| {
                let state = provider.lock_state();
                ProviderView {
                    id: provider.id.clone(),
                    models: provider
                        .models
                        .iter()
                        .map(|advert| advert.id.clone())
                        .collect(),
                    in_flight: provider.in_flight.load(Ordering::Acquire),
                    max_in_flight: provider.max_in_flight,
                    queue_depth: state.load.queue_depth,
                    #[expect(clippy::cast_precision_loss, reason = "a display figure")]
                    recent_tokens_per_second: state.load.recent_tokens_per_second_milli as f64
                        / 1000.0,
                    breaker: match state.breaker {
                        Breaker::Closed { .. } => "closed",
                        Breaker::Open { until } if until > now => "open",
                        Breaker::Open { .. } | Breaker::HalfOpen => "half_open",
                    },
                    lease_expires_in_ms: u64::try_from(
                        state
                            .lease_expires
                            .saturating_duration_since(now)
                            .as_millis(),
                    )
                    .unwrap_or(u64::MAX),
                }
            })
            .collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        views
    }
}

impl Provider {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, ProviderState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_live(&self, now: Instant) -> bool {
        self.lock_state().lease_expires > now
    }

    fn score(&self) -> u64 {
        u64::from(self.in_flight.load(Ordering::Acquire))
            + u64::from(self.lock_state().load.queue_depth)
    }

    fn try_claim(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |in_flight| {
                (in_flight < self.max_in_flight).then_some(in_flight + 1)
            })
            .is_ok()
    }

    fn breaker_allows(&self, now: Instant) -> bool {
        match self.lock_state().breaker {
            Breaker::Closed { .. } => true,
            Breaker::Open { until } => until <= now,
            Breaker::HalfOpen => false,
        }
    }

    /// An open breaker whose time is up lets exactly one probe through.
    fn take_probe_if_half_open(&self, now: Instant) -> bool {
        let mut state = self.lock_state();
        match state.breaker {
            Breaker::Closed { .. } => true,
            Breaker::Open { until } if until <= now => {
                state.breaker = Breaker::HalfOpen;
                true
            }
            Breaker::Open { .. } | Breaker::HalfOpen => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn advert(id: &str) -> ModelAdvert {
        ModelAdvert {
            model_type: wire::models::ModelType::Text,
            id: id.into(),
            name: id.into(),
            context_tokens: 2048,
            quantization: "Q4_1".into(),
            parameters: 1,
            supports_response_schema: true,
            supports_reasoning: false,
            supports_function_calling: true,
            supports_logprobs: true,
            input_media: Vec::new(),
            backend: "embedded".into(),
            voices: Vec::new(),
            image: None,
            video: None,
        }
    }

    fn registry_with(ids: &[&str], now: Instant) -> Registry {
        let registry = Registry::new(Duration::from_secs(15), 2, Duration::from_secs(10), 2);
        for (index, id) in ids.iter().enumerate() {
            let key = SigningKey::from_bytes(&[u8::try_from(index).expect("small") + 1; 32])
                .verifying_key();
            registry.register(
                (*id).into(),
                key,
                format!("lease-{id}"),
                "token".into(),
                "http://x".into(),
                vec![advert("m")],
                8,
                None,
                0,
                now,
            );
        }
        registry
    }

    #[test]
    fn chooses_only_live_untried_providers_with_room() {
        let now = Instant::now();
        let registry = registry_with(&["a", "b"], now);
        assert_eq!(
            registry.choose("other", None, &[], now).err(),
            Some(NoProvider::Offline)
        );
        let first = registry
            .choose("m", None, &["a".into()], now)
            .expect("b is left");
        assert_eq!(first.provider.id, "b");
        let _second = registry
            .choose("m", None, &["a".into()], now)
            .expect("b has two places");
        assert_eq!(
            registry.choose("m", None, &["a".into()], now).err(),
            Some(NoProvider::Unavailable)
        );
        drop(first);
        assert!(
            registry.choose("m", None, &["a".into()], now).is_ok(),
            "a place was released"
        );
        let later = now + Duration::from_secs(16);
        assert_eq!(
            registry.choose("m", None, &[], later).err(),
            Some(NoProvider::Offline),
            "leases lapsed"
        );
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_lets_one_probe_through() {
        let now = Instant::now();
        let registry = registry_with(&["a"], now);
        let provider = registry
            .choose("m", None, &[], now)
            .expect("live")
            .provider
            .clone();
        registry.record_failure(&provider, now);
        assert!(
            registry.choose("m", None, &[], now).is_ok(),
            "one failure is below the threshold"
        );
        registry.record_failure(&provider, now);
        assert_eq!(
            registry.choose("m", None, &[], now).err(),
            Some(NoProvider::Unavailable),
            "open"
        );
        let later = now + Duration::from_secs(11);
        let probe = registry.choose("m", None, &[], later).expect("one probe");
        assert_eq!(
            registry.choose("m", None, &[], later).err(),
            Some(NoProvider::Unavailable),
            "only one probe"
        );
        registry.record_success(&probe.provider);
        drop(probe);
        assert!(
            registry.choose("m", None, &[], later).is_ok(),
            "closed again"
        );
    }

    #[test]
    fn heartbeats_extend_the_lease_and_replays_are_refused() {
        let now = Instant::now();
        let registry = registry_with(&["a"], now);
        let key = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let other = SigningKey::from_bytes(&[9; 32]).verifying_key();
        let later = now + Duration::from_secs(10);
        assert_eq!(
            registry.heartbeat("lease-a", &other, 5, ProviderLoad::default(), later),
            Err(HeartbeatError::WrongKey)
        );
        registry
            .heartbeat("lease-a", &key, 5, ProviderLoad::default(), later)
            .expect("accepted");
        assert_eq!(
            registry.heartbeat("lease-a", &key, 5, ProviderLoad::default(), later),
            Err(HeartbeatError::Replayed)
        );
        assert_eq!(
            registry.heartbeat("nope", &key, 6, ProviderLoad::default(), later),
            Err(HeartbeatError::UnknownLease)
        );
        assert!(
            registry
                .choose("m", None, &[], now + Duration::from_secs(20))
                .is_ok(),
            "lease extended"
        );
        assert_eq!(registry.sweep(now + Duration::from_secs(26)), 0);
    }
}
