//! Prometheus metrics. Labels hold only fixed route names, catalogue model ids, provider ids,
//! status codes and outcomes: never a key, an address, or anything from a request's content.
//! A model a client asks for that is not in the catalogue is counted as `unknown`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub model: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub model: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub provider: String,
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<ModelLabels, Histogram>,
    pub first_token_seconds: Family<ModelLabels, Histogram>,
    pub tokens: Family<TokenLabels, Counter>,
    pub provider_attempts: Family<AttemptLabels, Counter>,
    /// Requests whose provider claimed or sent more than was paid for (charged at the bound).
    pub provider_overshoots: Family<ProviderLabels, Counter>,
    pub failovers: Counter,
    /// RSA verifications of privacy tokens: what token-paid requests cost the gateway in CPU.
    pub token_signature_checks: Counter,
    pub live_providers: Gauge,
    pub in_flight: Gauge,
    /// Chain mode: the follower's head block, accounts followed and read, and how long ago its
    /// last poll completed (−1 before the first), which an operator alerts on.
    pub chain_head_block: Gauge,
    pub chain_followed_accounts: Gauge,
    pub chain_account_reads: Counter,
    pub chain_seconds_since_poll: Gauge,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 4.5 minutes.
    Histogram::new(exponential_buckets(0.001, 2.0, 19))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("gondola");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "API requests by route, model and status",
            requests.clone(),
        );
        let request_seconds = Family::<ModelLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Chat request time, to the last byte",
            request_seconds.clone(),
        );
        let first_token_seconds = Family::<ModelLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "time_to_first_token_seconds",
            "Chat request time to the first token",
            first_token_seconds.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "tokens",
            "Tokens processed, by model and kind (prompt, completion)",
            tokens.clone(),
        );
        let provider_attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "provider_attempts",
            "Requests sent to providers, by outcome",
            provider_attempts.clone(),
        );
        let provider_overshoots = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "provider_overshoots",
            "Requests whose provider reported or sent more tokens than the request paid for; \
             the excess is the provider's loss",
            provider_overshoots.clone(),
        );
        let failovers = Counter::default();
        registry.register(
            "failovers",
            "Requests moved to another provider before their first byte",
            failovers.clone(),
        );
        let token_signature_checks = Counter::default();
        registry.register(
            "token_signature_checks",
            "Privacy token signatures verified (one RSA verification each)",
            token_signature_checks.clone(),
        );
        let live_providers = Gauge::default();
        registry.register(
            "live_providers",
            "Providers holding a live lease",
            live_providers.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_requests",
            "Chat requests being served",
            in_flight.clone(),
        );
        let chain_head_block = Gauge::default();
        registry.register(
            "chain_head_block",
            "Chain mode: the head block of the stake follower's last complete poll",
            chain_head_block.clone(),
        );
        let chain_followed_accounts = Gauge::default();
        registry.register(
            "chain_followed_accounts",
            "Chain mode: accounts whose stake the gateway follows (those with API keys)",
            chain_followed_accounts.clone(),
        );
        let chain_account_reads = Counter::default();
        registry.register(
            "chain_account_reads",
            "Chain mode: accounts read from the contracts by the follower's polls",
            chain_account_reads.clone(),
        );
        let chain_seconds_since_poll = Gauge::default();
        registry.register(
            "chain_seconds_since_poll",
            "Chain mode: seconds since the follower's last complete poll (-1 before the first)",
            chain_seconds_since_poll.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            first_token_seconds,
            tokens,
            provider_attempts,
            provider_overshoots,
            failovers,
            token_signature_checks,
            live_providers,
            in_flight,
            chain_head_block,
            chain_followed_accounts,
            chain_account_reads,
            chain_seconds_since_poll,
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
