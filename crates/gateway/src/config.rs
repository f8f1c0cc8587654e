//! The gateway's typed configuration. Parsing files, environment and flags into it is the
//! binary's job; everything here is already validated.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use wire::money::Amount;

/// Every bound the gateway enforces, each with the reason for its default.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body (413 beyond). Long conversations fit comfortably in 2 MiB of text.
    pub max_body_bytes: usize,
    /// Most messages in one request: bounds template and tokenizer work per request.
    pub max_messages: usize,
    /// Largest `max_tokens` a client may ask for, and the default when it asks for none.
    pub max_output_tokens: u32,
    /// Requests the gateway sends one provider at once, whatever the provider advertises.
    pub max_in_flight_per_provider: u32,
    /// Time to open a TCP connection to a provider before trying another.
    pub connect_timeout: Duration,
    /// Time from sending a request to a provider until its first token, queueing included.
    pub first_byte_timeout: Duration,
    /// Longest silence between two chunks of a stream before it is ended with an error.
    pub idle_chunk_timeout: Duration,
    /// Providers tried for one request before giving up (first attempt included).
    pub max_attempts: u32,
    /// Consecutive failures after which a provider gets no traffic for `breaker_open_for`.
    pub breaker_failure_threshold: u32,
    /// How long an open breaker stays open before one probe request is let through.
    pub breaker_open_for: Duration,
    /// Largest SSE event accepted from a provider; a provider sending more is faulty.
    pub max_provider_event_bytes: usize,
    /// Largest response returned through Oblivious HTTP (read whole before it is sealed).
    pub max_oblivious_response_bytes: usize,
    /// Client connections open at once. When all are taken, the one idle longest is closed
    /// for a newcomer; only connections with requests in flight are never closed for room.
    pub max_connections: usize,
    /// Longest a client may take to send a request's body, start to end (a slow upload holds a
    /// connection slot and the memory read so far).
    pub body_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 2 * 1024 * 1024,
            max_messages: 512,
            max_output_tokens: 4096,
            max_in_flight_per_provider: 64,
            connect_timeout: Duration::from_secs(2),
            first_byte_timeout: Duration::from_secs(120),
            idle_chunk_timeout: Duration::from_secs(30),
            max_attempts: 3,
            breaker_failure_threshold: 3,
            breaker_open_for: Duration::from_secs(10),
            max_provider_event_bytes: 1024 * 1024,
            // A 4,096-token reply streamed as SSE is well under 1 MiB.
            max_oblivious_response_bytes: 4 * 1024 * 1024,
            max_connections: server::ServeLimits::default().max_connections,
            // 2 MiB at 100 KiB/s, a slow mobile uplink, takes 20 s.
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

pub use economy::KeyKind;

/// One API key. Only the SHA-256 of the secret is kept.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// A label for logs and metrics; never the secret.
    pub name: String,
    pub kind: KeyKind,
    pub secret_sha256: [u8; 32],
    pub rate: RateLimit,
}

/// Per-minute budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests_per_minute: u32,
    pub tokens_per_minute: u64,
}

#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub keys: Vec<ApiKey>,
    /// Requests without a key are served under this shared limit; `None` refuses them (401).
    pub anonymous: Option<RateLimit>,
    /// Whether requests without a key share one prompt cache: on a gateway that only this
    /// machine reaches (its user's); elsewhere each would learn from the others' first
    /// tokens, so they are cached only under a `prompt_cache_key` of their own.
    pub anonymous_share_prompt_cache: bool,
}

/// Which providers may register.
#[derive(Debug, Clone)]
pub enum Admission {
    /// Any provider with a valid signature.
    Open,
    /// Only these provider keys.
    Allowlist(Vec<VerifyingKey>),
}

/// Prices, per million tokens (characters of speech, seconds of transcribed audio) or per
/// image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPricing {
    pub input_per_million: Amount,
    pub output_per_million: Amount,
    /// Prompt tokens read from a provider's prompt cache (never more than `input_per_million`).
    pub cache_input_per_million: Amount,
    /// Each image an image model makes.
    pub per_image: Amount,
    /// Each second of video a video model makes.
    pub per_video_second: Amount,
}

impl ModelPricing {
    /// These prices for an operation priced per image: each image one unit of "input".
    pub fn per_image_units(self) -> Self {
        self.per_unit(self.per_image)
    }

    /// These prices for an operation priced per second of video: each second one unit.
    pub fn per_video_second_units(self) -> Self {
        self.per_unit(self.per_video_second)
    }

    fn per_unit(self, price: Amount) -> Self {
        Self {
            input_per_million: Amount(price.0.saturating_mul(1_000_000)),
            output_per_million: Amount(0),
            cache_input_per_million: Amount(0),
            ..self
        }
    }
}

impl Default for ModelPricing {
    /// The default suits a small model on commodity hardware.
    fn default() -> Self {
        Self {
            input_per_million: Amount(20_000_000_000_000_000),
            output_per_million: Amount(80_000_000_000_000_000),
            // Half the input price, Venice's ratio.
            cache_input_per_million: Amount(10_000_000_000_000_000),
            // One cent an image, Venice's base price.
            per_image: Amount(10_000_000_000_000_000),
            // Five cents a second of video.
            per_video_second: Amount(50_000_000_000_000_000),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct CatalogueConfig {
    /// Model that traits and aliases point to unless mapped otherwise; when unset, the first
    /// live model by id.
    pub default_model: Option<String>,
    /// Trait → model id (`default`, `fastest`, `default_code`, …).
    pub traits: BTreeMap<String, String>,
    /// Alias → model id (`gpt-4o-mini` → …). Merged over the built-in OpenAI names.
    pub aliases: BTreeMap<String, String>,
    /// Per-model prices; others get `default_pricing`.
    pub pricing: BTreeMap<String, ModelPricing>,
    pub default_pricing: ModelPricing,
}

/// Per-account rate limits by model size tier.
#[derive(Debug, Clone)]
pub struct TierConfig {
    /// Tier name → limits.
    pub tiers: BTreeMap<String, RateLimit>,
    /// Model id → tier; models not listed are in `default_tier`.
    pub model_tiers: BTreeMap<String, String>,
    pub default_tier: String,
    /// Failed requests a caller may make in `failure_window` before it gets 429 for as long.
    pub failure_budget: u32,
    pub failure_window: Duration,
}

impl Default for TierConfig {
    /// Venice-like tiers: small models get the most requests, large the fewest.
    fn default() -> Self {
        let tier = |requests_per_minute, tokens_per_minute| RateLimit {
            requests_per_minute,
            tokens_per_minute,
        };
        Self {
            tiers: BTreeMap::from([
                ("small".to_owned(), tier(500, 2_000_000)),
                ("medium".to_owned(), tier(100, 1_000_000)),
                ("large".to_owned(), tier(20, 500_000)),
            ]),
            model_tiers: BTreeMap::new(),
            default_tier: "small".to_owned(),
            failure_budget: 50,
            failure_window: Duration::from_secs(30),
        }
    }
}

impl TierConfig {
    /// The tier of `model` and its limits.
    pub fn tier_of(&self, model: &str) -> (&str, RateLimit) {
        let name = self
            .model_tiers
            .get(model)
            .map_or(self.default_tier.as_str(), String::as_str);
        let limit = self.tiers.get(name).copied().unwrap_or(RateLimit {
            requests_per_minute: 60,
            tokens_per_minute: 100_000,
        });
        (name, limit)
    }

    pub fn limit_for(&self, model: &str) -> RateLimit {
        self.tier_of(model).1
    }
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub limits: Limits,
    pub auth: AuthConfig,
    pub admission: Admission,
    pub catalogue: CatalogueConfig,
    /// The operator's system prompt, prepended unless a request sets
    /// `venice_parameters.include_venice_system_prompt` to false. Empty: none.
    pub system_prompt: String,
    /// A provider without a heartbeat for this long gets no traffic.
    pub lease_ttl: Duration,
    /// How often providers are asked to send heartbeats.
    pub heartbeat_interval: Duration,
    /// How far a provider's clock may be from ours when it signs a registration.
    pub max_clock_skew: Duration,
    /// The ledger, metering and account keys; `None` runs a plain proxy (configured keys and
    /// anonymous access only).
    pub economy: Option<economy::EconomyConfig>,
    /// Chain mode: staked sVVV and DIEM come from the contracts on this chain (usage, credits
    /// and keys stay in the ledger); needs `economy`.
    pub chain: Option<chain::stakes::ChainConfig>,
    pub tiers: TierConfig,
    /// The seed file of the Oblivious HTTP key (created on first start); `None` serves no
    /// OHTTP endpoint.
    pub oblivious_seed: Option<std::path::PathBuf>,
    /// The seed of the key video queue ids are bound under (created if absent); `None`: a
    /// fresh key at each start, so queue ids do not outlive the process.
    pub jobs_seed: Option<std::path::PathBuf>,
    /// Also publish an X-Wing (post-quantum hybrid) OHTTP key, listed before the X25519 one.
    pub oblivious_x_wing: bool,
    /// Privacy Pass tokens (issued and taken only when there is a ledger); `None` takes none.
    pub tokens: Option<TokensConfig>,
    /// Origins of Oblivious HTTP relays the web app may send its private mode through (each
    /// `scheme://host[:port]`): listed in the page's Content-Security-Policy and offered in
    /// its settings. Empty: the web app has no private mode.
    pub web_relays: Vec<String>,
    /// Operator-defined personas (`GET /characters`, `character_slug`).
    pub characters: crate::characters::Characters,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            auth: AuthConfig::default(),
            admission: Admission::Open,
            catalogue: CatalogueConfig::default(),
            system_prompt: String::new(),
            lease_ttl: Duration::from_secs(15),
            heartbeat_interval: Duration::from_secs(5),
            max_clock_skew: Duration::from_secs(60),
            economy: None,
            chain: None,
            tiers: TierConfig::default(),
            oblivious_seed: None,
            jobs_seed: None,
            oblivious_x_wing: false,
            tokens: None,
            web_relays: Vec::new(),
            characters: crate::characters::Characters::default(),
        }
    }
}

/// How the gateway issues and takes tokens.
#[derive(Debug, Clone)]
pub struct TokensConfig {
    /// The seed every epoch's key is derived from (created on first start, mode 0600).
    pub seed: PathBuf,
    /// Where spent nonces are kept.
    pub spent_dir: PathBuf,
    /// What one token is worth, in base units of USD.
    pub token_value: Amount,
}

impl TokensConfig {
    /// Tokens worth $0.001 each, the seed and spent nonces under `dir`.
    pub fn in_dir(dir: &std::path::Path) -> Self {
        Self {
            seed: dir.join("issuer.seed"),
            spent_dir: dir.join("spent-tokens"),
            token_value: Amount(1_000_000_000_000_000),
        }
    }
}
