//! The configuration file (TOML) and how it combines with flags and environment variables:
//! flags > environment > file > defaults. The file is parsed into raw structs that reject
//! unknown keys, then validated into the gateway's and provider's typed configurations.
//! Secrets are never written in the file: a key is given as `env::NAME` (read from the
//! environment) or as the SHA-256 of its secret; a URL that carries a password or a provider's
//! key (Redis, PostgreSQL, a chain's RPC endpoint) may be given as `env::NAME` too.

mod chain_mode;

pub use chain_mode::{RawChain, chain_config};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ed25519_dalek::VerifyingKey;
use gateway::config::{
    Admission, ApiKey, AuthConfig, CatalogueConfig, GatewayConfig, KeyKind, Limits, ModelPricing,
    RateLimit, TierConfig,
};
use serde::Deserialize;
use wire::money::Amount;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub log: Option<String>,
    #[serde(default)]
    pub gateway: RawGateway,
    #[serde(default)]
    pub provider: RawProvider,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub listen: Option<String>,
    pub system_prompt: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `open` or `allowlist`.
    pub admission: Option<String>,
    #[serde(default)]
    pub allowed_providers: Vec<String>,
    #[serde(default)]
    pub limits: RawLimits,
    pub anonymous: Option<RawAnonymous>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    #[serde(default)]
    pub models: RawModels,
    #[serde(default)]
    pub ledger: RawLedger,
    /// `[gateway.rate_limits.<tier>]`: each tier's per-account limits (small, medium, large).
    #[serde(default)]
    pub rate_limits: BTreeMap<String, RawTierLimit>,
    /// Oblivious HTTP relays (`gondola relay`, run by someone else) the web app's private mode
    /// may use, as origins: `https://relay.example` or `http://127.0.0.1:8090`.
    #[serde(default)]
    pub relays: Vec<String>,
    /// Also publish an X-Wing key (ML-KEM-768 + X25519, post-quantum) for Oblivious HTTP,
    /// listed before the X25519 key; clients that cannot use it keep using X25519.
    #[serde(default)]
    pub x_wing: bool,
    /// `[[gateway.characters]]`: personas requests may name (`character_slug`).
    #[serde(default)]
    pub characters: Vec<RawCharacter>,
    /// `[gateway.cluster]`: the store this gateway shares with its replicas.
    pub cluster: Option<RawCluster>,
    /// `[gateway.chain]`: chain mode, stake from the contracts on a chain.
    pub chain: Option<RawChain>,
}

/// `[gateway.cluster]`: many gateways as one service, sharing spent tokens and rate budgets
/// in Redis.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// `redis://host:port/db`, `rediss://…` or `redis+unix:///path/to/socket`; or `env::NAME`
    /// where it carries a password.
    pub redis_url: String,
    /// The seed every replica must be given (the same file, or a copy); default
    /// `<data_dir>/cluster.seed`, made on first start.
    pub seed: Option<PathBuf>,
    /// Prefix of the keys in Redis; default `gondola`.
    pub prefix: Option<String>,
    /// Start against a Redis that does not sync its append-only file before answering.
    #[serde(default)]
    pub allow_volatile: bool,
    /// The certificate authority (PEM) a `rediss://` server is checked against, instead of
    /// the system's.
    pub ca_file: Option<PathBuf>,
    /// The PostgreSQL server of the ledger journal the replicas share
    /// (`postgresql://user@host/db`, or `host=/run/postgresql user=gondola dbname=gondola`; or
    /// `env::NAME` where it carries a password); without it each replica keeps a ledger of its
    /// own.
    pub postgres_url: Option<String>,
    /// The certificate authority (PEM) PostgreSQL's certificate is checked against, instead of
    /// the system's (with `sslmode=require` in the URL).
    pub postgres_ca_file: Option<PathBuf>,
}

/// The shared store's settings, from `[gateway.cluster]`.
pub fn cluster_config(
    raw: Option<&RawCluster>,
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<gateway::cluster::ClusterConfig>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    Ok(Some(gateway::cluster::ClusterConfig {
        redis_url: url_or_reference(&raw.redis_url, "gateway.cluster.redis_url")?,
        seed: raw
            .seed
            .clone()
            .unwrap_or_else(|| data_dir.join("cluster.seed")),
        prefix: raw.prefix.clone().unwrap_or_else(|| "gondola".into()),
        allow_volatile: raw.allow_volatile,
        ca_file: raw.ca_file.clone(),
        postgres_url: raw
            .postgres_url
            .as_deref()
            .map(|url| url_or_reference(url, "gateway.cluster.postgres_url"))
            .transpose()?,
        postgres_ca_file: raw.postgres_ca_file.clone(),
    }))
}

/// A URL as written, or read from the environment where it is given as `env::NAME` (for one
/// that carries a password or a provider's key).
pub(crate) fn url_or_reference(value: &str, what: &str) -> anyhow::Result<String> {
    if value.starts_with("env::") {
        secret_from_reference(value, what)
    } else {
        Ok(value.to_owned())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCharacter {
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    pub system_prompt: String,
    /// The model (id, trait or alias) that plays the character; absent: the request's.
    pub model: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub adult: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTierLimit {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
}

/// `[gateway.ledger]`: the economy the gateway meters against.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLedger {
    /// Dollars of inference a day shared among active stakers by staked sVVV (a decimal).
    pub network_capacity_usd_per_day: Option<String>,
    /// Days an account counts as an active API user after a request.
    pub active_window_days: Option<u64>,
    /// How often metered usage is written to the ledger, in milliseconds.
    pub usage_flush_ms: Option<u64>,
    /// Ledger operations one signer may commit a minute (each is a journal record kept
    /// forever); the operator's own are not limited.
    pub operations_per_minute_per_signer: Option<u32>,
    /// Airdrop allocations written at genesis (only when the ledger is created).
    #[serde(default)]
    pub airdrop: Vec<RawAllocation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllocation {
    pub address: String,
    /// Whole VVV, as a decimal.
    pub vvv: String,
}

/// The economy's configuration for a data directory.
pub fn economy_config(
    raw: &RawLedger,
    data_dir: &Path,
    adjustable_clock: bool,
) -> anyhow::Result<gateway::EconomyConfig> {
    let mut config = gateway::EconomyConfig::in_dir(data_dir);
    if let Some(capacity) = &raw.network_capacity_usd_per_day {
        config.network_capacity_usd_units_per_day = Amount::parse_decimal(capacity)
            .context("gateway.ledger.network_capacity_usd_per_day")?
            .0;
    }
    if let Some(days) = raw.active_window_days {
        if days == 0 {
            bail!("gateway.ledger.active_window_days must be at least 1");
        }
        config.active_window_days = days;
    }
    if let Some(ms) = raw.usage_flush_ms {
        config.usage_flush_interval =
            Duration::from_millis(within(ms, 10..=60_000, "gateway.ledger.usage_flush_ms")?);
    }
    if let Some(operations) = raw.operations_per_minute_per_signer {
        if operations == 0 {
            bail!("gateway.ledger.operations_per_minute_per_signer must be at least 1");
        }
        config.operations_per_minute_per_signer = operations;
    }
    for allocation in &raw.airdrop {
        let address = ledger::Address::from_hex(&allocation.address).with_context(|| {
            format!(
                "gateway.ledger.airdrop: {:?} is not an address (0x and 40 hex digits)",
                allocation.address
            )
        })?;
        let vvv_units = Amount::parse_decimal(&allocation.vvv)
            .with_context(|| format!("gateway.ledger.airdrop {}", allocation.address))?
            .0;
        config
            .airdrop
            .push(ledger::Allocation { address, vvv_units });
    }
    config.adjustable_clock = adjustable_clock;
    Ok(config)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_body_bytes: Option<usize>,
    pub max_messages: Option<usize>,
    pub max_output_tokens: Option<u32>,
    pub max_in_flight_per_provider: Option<u32>,
    pub connect_timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub idle_chunk_timeout_ms: Option<u64>,
    pub max_attempts: Option<u32>,
    pub breaker_failure_threshold: Option<u32>,
    pub breaker_open_ms: Option<u64>,
    pub lease_ttl_ms: Option<u64>,
    pub heartbeat_interval_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub body_read_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnonymous {
    pub enabled: bool,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub name: String,
    /// `inference` (default) or `admin`.
    pub kind: Option<String>,
    /// `env::NAME`: the secret is read from that environment variable.
    pub secret: Option<String>,
    /// Hex SHA-256 of the secret.
    pub sha256: Option<String>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModels {
    pub default: Option<String>,
    #[serde(default)]
    pub traits: BTreeMap<String, String>,
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    #[serde(default)]
    pub pricing: BTreeMap<String, RawPricing>,
    /// Model id → rate-limit tier (small, medium, large) for account keys.
    #[serde(default)]
    pub tiers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPricing {
    /// USD per million input tokens, as a decimal string (`"0.02"`); the default price when
    /// unset.
    pub input_usd_per_million: Option<String>,
    pub output_usd_per_million: Option<String>,
    /// For prompt tokens read from a provider's prompt cache; half the input price when unset.
    pub cache_input_usd_per_million: Option<String>,
    /// USD per image, for an image model; one cent when unset.
    pub image_usd: Option<String>,
    /// USD per second of video, for a video model; five cents when unset.
    pub video_usd_per_second: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub gateway: Option<String>,
    /// Further gateways (the replicas of a service), each holding a lease.
    #[serde(default)]
    pub gateways: Vec<String>,
    pub listen: Option<String>,
    pub advertise: Option<String>,
    pub max_in_flight: Option<u32>,
    pub model: Option<String>,
    pub model_id: Option<String>,
    pub upstream: Option<String>,
    pub upstream_model: Option<String>,
    /// `openai` (the default), `piper`, `automatic1111` or `comfyui`.
    pub upstream_api: Option<String>,
    /// A ComfyUI workflow in its API format, with placeholders (`comfyui` only).
    pub comfyui_workflow: Option<String>,
    /// An image model's sizes and steps.
    #[serde(default)]
    pub image: RawImage,
    /// A video model's durations and resolutions.
    #[serde(default)]
    pub video: RawVideo,
    /// `env::NAME` for the upstream engine's API key.
    pub upstream_api_key: Option<String>,
    pub context_tokens: Option<u32>,
    /// Also publish an X-Wing sealing key (post-quantum hybrid), listed before the X25519 one.
    #[serde(default)]
    pub x_wing: bool,
    #[serde(default)]
    pub engine: RawEngine,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImage {
    pub max_width: Option<u32>,
    pub max_height: Option<u32>,
    /// Width and height must be multiples of this.
    pub size_divisor: Option<u32>,
    pub default_steps: Option<u32>,
    pub max_steps: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVideo {
    /// Seconds the model makes videos of.
    pub durations: Option<Vec<u32>>,
    /// Resolutions it makes (Venice's names: `480p`, `720p`, …), the default first.
    pub resolutions: Option<Vec<String>>,
}

/// A video model's limits from `[provider.video]`, each checked; the usual ones where unset.
pub fn video_limits(raw: &RawVideo) -> anyhow::Result<wire::video::VideoLimits> {
    let usual = wire::video::VideoLimits::default();
    let mut durations = raw.durations.clone().unwrap_or(usual.durations);
    durations.sort_unstable();
    durations.dedup();
    if durations.is_empty()
        || durations
            .iter()
            .any(|seconds| !(1..=wire::video::MAX_SECONDS).contains(seconds))
    {
        bail!(
            "provider.video.durations: 1 to {} seconds each, at least one",
            wire::video::MAX_SECONDS
        );
    }
    let resolutions = raw.resolutions.clone().unwrap_or(usual.resolutions);
    if resolutions.is_empty()
        || resolutions
            .iter()
            .any(|resolution| !wire::video::RESOLUTIONS.contains(&resolution.as_str()))
    {
        bail!(
            "provider.video.resolutions: at least one of {}",
            wire::video::RESOLUTIONS.join(", ")
        );
    }
    Ok(wire::video::VideoLimits {
        durations,
        resolutions,
    })
}

/// Most steps an image model may be advertised to take.
const MAX_IMAGE_STEPS: u32 = 150;

/// An image model's limits from `[provider.image]`, each checked; the usual ones where unset.
pub fn image_limits(raw: &RawImage) -> anyhow::Result<wire::images::ImageLimits> {
    let usual = wire::images::ImageLimits::default();
    let side = wire::images::MAX_SIDE;
    let max_steps = within(
        raw.max_steps.unwrap_or(usual.max_steps),
        1..=MAX_IMAGE_STEPS,
        "provider.image.max_steps",
    )?;
    Ok(wire::images::ImageLimits {
        max_width: within(
            raw.max_width.unwrap_or(usual.max_width),
            64..=side,
            "provider.image.max_width",
        )?,
        max_height: within(
            raw.max_height.unwrap_or(usual.max_height),
            64..=side,
            "provider.image.max_height",
        )?,
        divisor: within(
            raw.size_divisor.unwrap_or(usual.divisor),
            1..=64,
            "provider.image.size_divisor",
        )?,
        default_steps: within(
            raw.default_steps
                .unwrap_or(usual.default_steps.min(max_steps)),
            1..=max_steps,
            "provider.image.default_steps (at most max_steps)",
        )?,
        max_steps,
        // Whether the engine edits images is its API's to say (see the provider's command).
        edits: false,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    pub threads: Option<u32>,
    pub prompt_threads: Option<u32>,
    pub max_sequences: Option<u32>,
    pub context_tokens_per_sequence: Option<u32>,
    pub batch_tokens: Option<u32>,
    pub queue_depth: Option<usize>,
    /// Host memory for saved prompts (the prompt cache beyond the sequences), in MiB.
    pub prompt_cache_mib: Option<usize>,
    /// How the KV cache holds keys and values: `q8_0` (the default) or `f16`.
    pub kv_cache: Option<String>,
}

/// The engine's settings from flags (which win) and the file, as given.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineFlags {
    pub threads: Option<u32>,
    pub parallel: Option<u32>,
    pub context: Option<u32>,
}

/// Most threads the engine is given (the machine's cores are the real bound; this catches typos).
const MAX_ENGINE_THREADS: u32 = 256;
/// Most sequences the engine decodes together.
const MAX_SEQUENCES: u32 = 64;
/// Smallest context window worth serving: a short prompt and a reply.
const MIN_CONTEXT_TOKENS: u32 = 64;
/// Most requests waiting for a free sequence.
const MAX_QUEUE_DEPTH: usize = 4096;
/// Most host memory for saved prompts, in MiB.
const MAX_PROMPT_CACHE_MIB: usize = 1024 * 1024;
/// Most requests a provider takes at once.
const MAX_PROVIDER_IN_FLIGHT: u32 = 4096;
/// What a provider in front of an upstream engine takes at once by default (the engine's own
/// capacity is not known to it).
pub const DEFAULT_UPSTREAM_MAX_IN_FLIGHT: u32 = 32;

/// `value` if it lies in `range`, else an error that names the flag and the file's key.
fn within<T: PartialOrd + std::fmt::Display + Copy>(
    value: T,
    range: std::ops::RangeInclusive<T>,
    names: &str,
) -> anyhow::Result<T> {
    if range.contains(&value) {
        Ok(value)
    } else {
        bail!(
            "{names} is {value}; it must be {} to {}",
            range.start(),
            range.end()
        )
    }
}

/// The engine's configuration for the model at `model_path`: flags over the file over the
/// defaults, each value checked (a value out of range is an error naming it, never clamped).
pub fn engine_config(
    flags: EngineFlags,
    raw: &RawEngine,
    model_path: std::path::PathBuf,
) -> anyhow::Result<engine::EngineConfig> {
    let mut config = engine::EngineConfig::new(model_path);
    let thread_count = |value: u32, names: &str| {
        within(value, 1..=MAX_ENGINE_THREADS, names)
            .map(|threads| std::num::NonZeroU32::new(threads).unwrap_or(std::num::NonZeroU32::MIN))
    };
    if let Some(threads) = flags.threads.or(raw.threads) {
        let threads = thread_count(threads, "--threads (provider.engine.threads)")?;
        config.decode_threads = threads;
        config.prompt_threads = threads;
    }
    if let Some(threads) = raw.prompt_threads {
        config.prompt_threads = thread_count(threads, "provider.engine.prompt_threads")?;
    }
    if let Some(parallel) = flags.parallel.or(raw.max_sequences) {
        config.max_sequences = within(
            parallel,
            1..=MAX_SEQUENCES,
            "--parallel (provider.engine.max_sequences)",
        )?;
    }
    if let Some(context) = flags.context.or(raw.context_tokens_per_sequence) {
        config.context_tokens_per_sequence = within(
            context,
            MIN_CONTEXT_TOKENS..=u32::MAX,
            "--context (provider.engine.context_tokens_per_sequence)",
        )?;
    }
    if let Some(batch) = raw.batch_tokens {
        config.batch_tokens = within(batch, 1..=u32::MAX, "provider.engine.batch_tokens")?;
    }
    if let Some(depth) = raw.queue_depth {
        config.queue_depth = within(depth, 0..=MAX_QUEUE_DEPTH, "provider.engine.queue_depth")?;
    }
    if let Some(mib) = raw.prompt_cache_mib {
        config.prompt_cache_bytes = within(
            mib,
            0..=MAX_PROMPT_CACHE_MIB,
            "provider.engine.prompt_cache_mib",
        )? * 1024
            * 1024;
    }
    if let Some(format) = &raw.kv_cache {
        config.kv_format = engine::KvFormat::parse(format).with_context(|| {
            format!("provider.engine.kv_cache is {format:?}; it must be \"q8_0\" or \"f16\"")
        })?;
    }
    Ok(config)
}

/// How many requests a provider takes at once: the flag, else the file, else what its backend
/// can hold (an embedded engine's sequences and queue; a fixed number in front of an upstream
/// engine). The one rule for `serve` and `provider` alike.
/// Requests an embedding provider takes at once: its engine answers them in turn, batching
/// what waits.
pub const EMBEDDING_MAX_IN_FLIGHT: u32 = 64;
/// Requests a speech provider takes at once: each holds a sentence's synthesis at a time, and
/// FFmpeg and espeak-ng processes of its own.
pub const SPEECH_MAX_IN_FLIGHT: u32 = 8;
/// Requests a transcription provider takes at once: each decodes with an FFmpeg process of
/// its own and holds up to ten minutes of audio (38 MB of samples).
pub const TRANSCRIPTION_MAX_IN_FLIGHT: u32 = 4;
/// Background removals a provider runs at once (each about 0.7 s of one core).
pub const BACKGROUND_MAX_IN_FLIGHT: u32 = 4;
/// Upscales a provider runs at once: each takes every core it is given for up to a minute
/// (4 megapixels doubled), so two wait behind the one running rather than share the cores.
pub const UPSCALE_MAX_IN_FLIGHT: u32 = 2;

pub fn provider_max_in_flight(
    flag: Option<u32>,
    raw: &RawProvider,
    engine: Option<&engine::EngineConfig>,
) -> anyhow::Result<u32> {
    match flag.or(raw.max_in_flight) {
        Some(value) => within(
            value,
            1..=MAX_PROVIDER_IN_FLIGHT,
            "--max-in-flight (provider.max_in_flight)",
        ),
        None => Ok(engine.map_or(DEFAULT_UPSTREAM_MAX_IN_FLIGHT, |engine| {
            let capacity = u64::from(engine.max_sequences)
                .saturating_add(u64::try_from(engine.queue_depth).unwrap_or(u64::MAX));
            u32::try_from(capacity.min(u64::from(MAX_PROVIDER_IN_FLIGHT))).unwrap_or(1)
        })),
    }
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("the config file {} is not valid", path.display()))
    }
}

/// Reads a secret given by reference. Inline secrets are refused: config files get copied,
/// committed and pasted into issues.
pub fn secret_from_reference(reference: &str, what: &str) -> anyhow::Result<String> {
    let Some(name) = reference.strip_prefix("env::") else {
        bail!(
            "{what} must be given as env::VARIABLE_NAME (the secret itself never goes in the config file)"
        );
    };
    std::env::var(name).with_context(|| {
        format!("{what} refers to the environment variable {name}, which is not set")
    })
}

fn parse_listen(text: &str) -> anyhow::Result<SocketAddr> {
    text.parse().with_context(|| {
        format!("{text:?} is not a HOST:PORT listen address (e.g. 127.0.0.1:8844)")
    })
}

pub fn listen_address(
    flag: Option<&str>,
    file: Option<&str>,
    default: &str,
) -> anyhow::Result<SocketAddr> {
    parse_listen(flag.or(file).unwrap_or(default))
}

/// A relay's origin (`scheme://host[:port]`), as a Content-Security-Policy names it.
fn relay_origin(relay: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(relay)
        .with_context(|| format!("gateway.relays: {relay:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || url.path() != "/"
        || url.query().is_some()
        || !url.username().is_empty()
    {
        bail!(
            "gateway.relays: {relay:?} must be a relay's origin, such as https://relay.example or \
             http://127.0.0.1:8090 (no path, query or user)"
        );
    }
    Ok(url.origin().ascii_serialization())
}

fn millis(value: Option<u64>, default: Duration) -> Duration {
    value.map_or(default, Duration::from_millis)
}

/// Builds the gateway's configuration. `listen` decides the safe defaults: on loopback,
/// anonymous access and open admission; elsewhere, neither unless the file says so.
pub fn gateway_config(
    raw: &RawGateway,
    listen: SocketAddr,
    system_prompt_flag: Option<String>,
) -> anyhow::Result<GatewayConfig> {
    let defaults = Limits::default();
    let base = GatewayConfig::default();
    let raw_limits = &raw.limits;
    let limits = Limits {
        max_body_bytes: raw_limits.max_body_bytes.unwrap_or(defaults.max_body_bytes),
        max_messages: raw_limits.max_messages.unwrap_or(defaults.max_messages),
        max_output_tokens: raw_limits
            .max_output_tokens
            .unwrap_or(defaults.max_output_tokens),
        max_in_flight_per_provider: raw_limits
            .max_in_flight_per_provider
            .unwrap_or(defaults.max_in_flight_per_provider),
        connect_timeout: millis(raw_limits.connect_timeout_ms, defaults.connect_timeout),
        first_byte_timeout: millis(
            raw_limits.first_byte_timeout_ms,
            defaults.first_byte_timeout,
        ),
        idle_chunk_timeout: millis(
            raw_limits.idle_chunk_timeout_ms,
            defaults.idle_chunk_timeout,
        ),
        max_attempts: raw_limits.max_attempts.unwrap_or(defaults.max_attempts),
        breaker_failure_threshold: raw_limits
            .breaker_failure_threshold
            .unwrap_or(defaults.breaker_failure_threshold),
        breaker_open_for: millis(raw_limits.breaker_open_ms, defaults.breaker_open_for),
        max_provider_event_bytes: defaults.max_provider_event_bytes,
        max_oblivious_response_bytes: defaults.max_oblivious_response_bytes,
        max_connections: raw_limits
            .max_connections
            .unwrap_or(defaults.max_connections),
        body_read_timeout: millis(raw_limits.body_read_timeout_ms, defaults.body_read_timeout),
    };
    if limits.max_attempts == 0
        || limits.max_body_bytes == 0
        || limits.max_output_tokens == 0
        || limits.max_connections == 0
        || limits.body_read_timeout.is_zero()
    {
        bail!(
            "gateway.limits: max_attempts, max_body_bytes, max_output_tokens, max_connections \
             and body_read_timeout_ms must be at least 1"
        );
    }
    let mut keys = Vec::new();
    for key in &raw.keys {
        let kind = match key.kind.as_deref().unwrap_or("inference") {
            "inference" | "INFERENCE" => KeyKind::Inference,
            "admin" | "ADMIN" => KeyKind::Admin,
            other => bail!(
                "gateway.keys {:?}: kind must be inference or admin, not {other:?}",
                key.name
            ),
        };
        let secret_sha256 = match (&key.secret, &key.sha256) {
            (Some(reference), None) => gateway::hash_secret(&secret_from_reference(
                reference,
                &format!("the secret of key {:?}", key.name),
            )?),
            (None, Some(digest)) => hex::decode(digest.trim())
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .with_context(|| {
                    format!("gateway.keys {:?}: sha256 must be 64 hex digits", key.name)
                })?,
            _ => bail!(
                "gateway.keys {:?}: give exactly one of secret = \"env::NAME\" or sha256 = \"<hex>\"",
                key.name
            ),
        };
        keys.push(ApiKey {
            name: key.name.clone(),
            kind,
            secret_sha256,
            rate: RateLimit {
                requests_per_minute: key.requests_per_minute.unwrap_or(600),
                tokens_per_minute: key.tokens_per_minute.unwrap_or(1_000_000),
            },
        });
    }
    let loopback = listen.ip().is_loopback();
    let anonymous = match &raw.anonymous {
        Some(anonymous) if anonymous.enabled => Some(RateLimit {
            requests_per_minute: anonymous.requests_per_minute.unwrap_or(120),
            tokens_per_minute: anonymous.tokens_per_minute.unwrap_or(1_000_000),
        }),
        Some(_) => None,
        None if keys.is_empty() && loopback => Some(RateLimit {
            requests_per_minute: 600,
            tokens_per_minute: 10_000_000,
        }),
        None if keys.is_empty() => bail!(
            "the gateway listens on {listen}, beyond this machine, and has no API keys: add [[gateway.keys]] to the config, \
             or set [gateway.anonymous] enabled = true to serve anyone"
        ),
        None => None,
    };
    let admission = match raw.admission.as_deref() {
        Some("open") => Admission::Open,
        Some("allowlist") => Admission::Allowlist(parse_provider_keys(&raw.allowed_providers)?),
        Some(other) => bail!("gateway.admission must be open or allowlist, not {other:?}"),
        None if loopback && raw.allowed_providers.is_empty() => Admission::Open,
        None => Admission::Allowlist(parse_provider_keys(&raw.allowed_providers)?),
    };
    let mut pricing = BTreeMap::new();
    for (model, price) in &raw.models.pricing {
        let parse = |text: &str| {
            Amount::parse_decimal(text).with_context(|| format!("gateway.models.pricing.{model}"))
        };
        let defaults = ModelPricing::default();
        let input_per_million = match &price.input_usd_per_million {
            Some(text) => parse(text)?,
            None => defaults.input_per_million,
        };
        let cache_input_per_million = match &price.cache_input_usd_per_million {
            Some(text) => parse(text)?,
            None => Amount(input_per_million.0 / 2),
        };
        if cache_input_per_million > input_per_million {
            bail!(
                "gateway.models.pricing.{model}: cache_input_usd_per_million is at most input_usd_per_million"
            );
        }
        pricing.insert(
            model.clone(),
            ModelPricing {
                input_per_million,
                output_per_million: match &price.output_usd_per_million {
                    Some(text) => parse(text)?,
                    None => defaults.output_per_million,
                },
                cache_input_per_million,
                per_image: match &price.image_usd {
                    Some(text) => parse(text)?,
                    None => defaults.per_image,
                },
                per_video_second: match &price.video_usd_per_second {
                    Some(text) => parse(text)?,
                    None => defaults.per_video_second,
                },
            },
        );
    }
    let mut tiers = TierConfig::default();
    for (tier, limit) in &raw.rate_limits {
        let Some(current) = tiers.tiers.get_mut(tier) else {
            bail!("gateway.rate_limits.{tier}: the tier must be small, medium or large");
        };
        if let Some(requests) = limit.requests_per_minute {
            current.requests_per_minute = requests;
        }
        if let Some(tokens) = limit.tokens_per_minute {
            current.tokens_per_minute = tokens;
        }
        if current.requests_per_minute == 0 || current.tokens_per_minute == 0 {
            bail!("gateway.rate_limits.{tier}: limits must be at least 1");
        }
    }
    for (model, tier) in &raw.models.tiers {
        if !tiers.tiers.contains_key(tier) {
            bail!(
                "gateway.models.tiers.{model}: the tier must be small, medium or large, not {tier:?}"
            );
        }
        tiers.model_tiers.insert(model.clone(), tier.clone());
    }
    let characters = gateway::characters::Characters::new(
        raw.characters
            .iter()
            .map(|character| gateway::characters::Character {
                slug: character.slug.clone(),
                name: character.name.clone(),
                description: character.description.clone(),
                system_prompt: character.system_prompt.clone(),
                model: character.model.clone(),
                tags: character.tags.clone(),
                adult: character.adult,
            })
            .collect(),
        wire::clock::unix_seconds(),
    )
    .map_err(|error| anyhow::anyhow!("gateway.characters: {error}"))?;
    Ok(GatewayConfig {
        characters,
        economy: None,
        chain: None,
        oblivious_seed: None,
        jobs_seed: None,
        oblivious_x_wing: raw.x_wing,
        tokens: None,
        web_relays: raw
            .relays
            .iter()
            .map(|relay| relay_origin(relay))
            .collect::<anyhow::Result<_>>()?,
        tiers,
        limits,
        auth: AuthConfig {
            keys,
            anonymous,
            anonymous_share_prompt_cache: loopback,
        },
        admission,
        catalogue: CatalogueConfig {
            default_model: raw.models.default.clone(),
            traits: raw.models.traits.clone(),
            aliases: raw.models.aliases.clone(),
            pricing,
            default_pricing: ModelPricing::default(),
        },
        system_prompt: system_prompt_flag
            .or_else(|| raw.system_prompt.clone())
            .unwrap_or_else(default_system_prompt),
        lease_ttl: millis(raw_limits.lease_ttl_ms, base.lease_ttl),
        heartbeat_interval: millis(raw_limits.heartbeat_interval_ms, base.heartbeat_interval),
        max_clock_skew: base.max_clock_skew,
    })
}

/// The operator's default platform prompt: short, so that small models keep their own voice.
pub fn default_system_prompt() -> String {
    "You are a helpful assistant. Answer clearly and concisely.".to_owned()
}

fn parse_provider_keys(keys: &[String]) -> anyhow::Result<Vec<VerifyingKey>> {
    keys.iter()
        .map(|text| {
            let bytes: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .with_context(|| format!("gateway.allowed_providers: {text:?} is not a 64-hex-digit Ed25519 public key"))?;
            VerifyingKey::from_bytes(&bytes).with_context(|| format!("gateway.allowed_providers: {text:?} is not a valid Ed25519 key"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawGateway {
        toml::from_str::<FileConfig>(text)
            .expect("valid file")
            .gateway
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<FileConfig>("[gateway]\nlisten_on = \"x\"").is_err());
        assert!(toml::from_str::<FileConfig>("[gateway.limits]\nmax_body = 3").is_err());
    }

    #[test]
    fn loopback_defaults_to_anonymous_and_open_admission_but_elsewhere_needs_keys() {
        let local: SocketAddr = "127.0.0.1:8844".parse().expect("address");
        let public: SocketAddr = "0.0.0.0:8844".parse().expect("address");
        let config = gateway_config(&raw(""), local, None).expect("valid");
        assert!(config.auth.anonymous.is_some());
        assert!(matches!(config.admission, Admission::Open));
        let error = gateway_config(&raw(""), public, None).expect_err("needs keys");
        assert!(error.to_string().contains("no API keys"));
        let digest = hex::encode(gateway::hash_secret("sk-test"));
        let config = gateway_config(
            &raw(&format!(
                "[[gateway.keys]]\nname = \"ops\"\nkind = \"admin\"\nsha256 = \"{digest}\""
            )),
            public,
            None,
        )
        .expect("valid");
        assert!(config.auth.anonymous.is_none());
        assert!(matches!(config.admission, Admission::Allowlist(ref keys) if keys.is_empty()));
    }

    #[test]
    fn engine_settings_out_of_range_are_errors_that_name_them_never_clamped() {
        let path = std::path::PathBuf::from("model.gguf");
        let raw = RawEngine::default();
        let flags = |threads, parallel, context| EngineFlags {
            threads,
            parallel,
            context,
        };
        let config = engine_config(flags(Some(3), Some(8), Some(4096)), &raw, path.clone())
            .expect("in range");
        assert_eq!(
            (
                config.decode_threads.get(),
                config.prompt_threads.get(),
                config.max_sequences,
                config.context_tokens_per_sequence
            ),
            (3, 3, 8, 4096)
        );
        for (flags, named) in [
            (flags(None, Some(65), None), "--parallel"),
            (flags(None, Some(0), None), "--parallel"),
            (flags(Some(0), None, None), "--threads"),
            (flags(None, None, Some(10)), "--context"),
        ] {
            let error = engine_config(flags, &raw, path.clone())
                .expect_err("out of range")
                .to_string();
            assert!(error.contains(named), "{error}");
        }
        // The file's values are checked the same way, named by their keys.
        let file = RawEngine {
            max_sequences: Some(100),
            ..RawEngine::default()
        };
        let error = engine_config(EngineFlags::default(), &file, path.clone())
            .expect_err("out of range")
            .to_string();
        assert!(error.contains("provider.engine.max_sequences"), "{error}");
        // A flag wins over the file.
        let config =
            engine_config(flags(None, Some(2), None), &file, path.clone()).expect("the flag wins");
        assert_eq!(config.max_sequences, 2);
        // The KV cache format: q8_0 unless the file says f16; anything else is named.
        let kv = |format: &str| {
            engine_config(
                EngineFlags::default(),
                &RawEngine {
                    kv_cache: Some(format.into()),
                    ..RawEngine::default()
                },
                path.clone(),
            )
        };
        assert_eq!(
            engine_config(EngineFlags::default(), &RawEngine::default(), path.clone())
                .expect("defaults")
                .kv_format,
            engine::KvFormat::Q8_0
        );
        assert_eq!(kv("f16").expect("f16").kv_format, engine::KvFormat::F16);
        let error = kv("q4").expect_err("not a format").to_string();
        assert!(error.contains("provider.engine.kv_cache"), "{error}");
    }

    #[test]
    fn a_providers_requests_in_flight_default_to_what_its_backend_holds() {
        let mut engine = engine::EngineConfig::new("model.gguf".into());
        engine.max_sequences = 4;
        engine.queue_depth = 12;
        let raw = RawProvider::default();
        assert_eq!(
            provider_max_in_flight(None, &raw, Some(&engine)).ok(),
            Some(16)
        );
        assert_eq!(
            provider_max_in_flight(None, &raw, None).ok(),
            Some(DEFAULT_UPSTREAM_MAX_IN_FLIGHT)
        );
        let file = RawProvider {
            max_in_flight: Some(7),
            ..RawProvider::default()
        };
        assert_eq!(
            provider_max_in_flight(None, &file, Some(&engine)).ok(),
            Some(7)
        );
        assert_eq!(provider_max_in_flight(Some(9), &file, None).ok(), Some(9));
        let error = provider_max_in_flight(Some(0), &file, None)
            .expect_err("zero")
            .to_string();
        assert!(error.contains("--max-in-flight"), "{error}");
    }

    #[test]
    fn the_readme_configuration_examples_are_valid() {
        let readme = include_str!("../../../README.md");
        let examples: Vec<&str> = readme
            .split("```toml\n")
            .skip(1)
            .map(|rest| rest.split("```").next().expect("end of the example"))
            .collect();
        assert!(
            examples.len() >= 2,
            "the configuration and cluster examples"
        );
        for example in &examples {
            toml::from_str::<FileConfig>(example)
                .unwrap_or_else(|error| panic!("a README example does not parse: {error}"));
        }
        // The cluster's example names Redis; the configuration section's is the full one.
        let cluster: FileConfig = toml::from_str(
            examples
                .iter()
                .find(|example| example.contains("[gateway.cluster]"))
                .expect("the cluster example"),
        )
        .expect("parses");
        assert!(
            cluster
                .gateway
                .cluster
                .is_some_and(|cluster| cluster.redis_url.starts_with("redis://"))
        );
        let section = &readme[readme.find("## Configuration").expect("the section")..];
        let start = section.find("```toml\n").expect("a TOML example") + "```toml\n".len();
        let end = start + section[start..].find("```").expect("end of the example");
        let file: FileConfig =
            toml::from_str(&section[start..end]).expect("the README example parses");
        assert_eq!(file.gateway.keys.len(), 1);
        assert_eq!(file.gateway.relays, ["https://relay.example"]);
        assert!(
            file.gateway
                .models
                .pricing
                .contains_key("smollm2-135m-instruct")
        );
    }

    #[test]
    fn urls_may_be_read_from_the_environment() {
        // PATH is set wherever tests run; what matters is that the reference is followed.
        let path = std::env::var("PATH").expect("PATH");
        assert_eq!(
            url_or_reference("env::PATH", "rpc_url").expect("read"),
            path
        );
        assert_eq!(
            url_or_reference("http://127.0.0.1:8545", "rpc_url").expect("as written"),
            "http://127.0.0.1:8545"
        );
        let error = url_or_reference("env::GONDOLA_NO_SUCH_VARIABLE_51", "gateway.chain.rpc_url")
            .expect_err("unset");
        assert!(format!("{error:#}").contains("GONDOLA_NO_SUCH_VARIABLE_51"));
    }

    #[test]
    fn inline_secrets_are_refused() {
        let local: SocketAddr = "127.0.0.1:1".parse().expect("address");
        let error = gateway_config(
            &raw("[[gateway.keys]]\nname = \"a\"\nsecret = \"sk-inline\""),
            local,
            None,
        )
        .expect_err("inline");
        assert!(format!("{error:#}").contains("env::"));
    }

    #[test]
    fn prices_are_exact_decimals() {
        let local: SocketAddr = "127.0.0.1:1".parse().expect("address");
        let config = gateway_config(
            &raw("[gateway.models.pricing.m]\ninput_usd_per_million = \"0.5\"\noutput_usd_per_million = \"1\""),
            local,
            None,
        )
        .expect("valid");
        assert_eq!(
            config.catalogue.pricing["m"].input_per_million,
            Amount(500_000_000_000_000_000)
        );
        // Cached prompt tokens cost half the input price unless set.
        assert_eq!(
            config.catalogue.pricing["m"].cache_input_per_million,
            Amount(250_000_000_000_000_000)
        );
        assert!(gateway_config(&raw("[gateway.models.pricing.m]\ninput_usd_per_million = \"-1\"\noutput_usd_per_million = \"1\""), local, None).is_err());
        assert!(gateway_config(&raw("[gateway.models.pricing.m]\ninput_usd_per_million = \"1\"\noutput_usd_per_million = \"1\"\ncache_input_usd_per_million = \"2\""), local, None).is_err());
    }

    #[test]
    fn tier_limits_can_be_set_and_nonsense_is_refused() {
        let local: SocketAddr = "127.0.0.1:1".parse().expect("address");
        let config = gateway_config(
            &raw("[gateway.rate_limits.large]\nrequests_per_minute = 7"),
            local,
            None,
        )
        .expect("valid");
        let large = config.tiers.tiers["large"];
        assert_eq!(large.requests_per_minute, 7);
        assert_eq!(
            large.tokens_per_minute,
            TierConfig::default().tiers["large"].tokens_per_minute,
            "what is not set keeps its default"
        );
        for bad in [
            "[gateway.rate_limits.huge]\nrequests_per_minute = 7",
            "[gateway.rate_limits.small]\nrequests_per_minute = 0",
        ] {
            assert!(gateway_config(&raw(bad), local, None).is_err(), "{bad}");
        }
        assert!(
            toml::from_str::<FileConfig>("[gateway.rate_limits.small]\nrequests_per_hour = 7")
                .is_err()
        );
    }

    #[test]
    fn relays_are_origins_and_anything_else_is_refused() {
        let local: SocketAddr = "127.0.0.1:1".parse().expect("address");
        let config = gateway_config(
            &raw("[gateway]\nrelays = [\"https://Relay.example\", \"http://127.0.0.1:8090/\"]"),
            local,
            None,
        )
        .expect("valid");
        assert_eq!(
            config.web_relays,
            ["https://relay.example", "http://127.0.0.1:8090"]
        );
        for bad in [
            "relay.example",
            "ftp://relay.example",
            "https://relay.example/ohttp",
            "https://relay.example/?a=1",
            "https://user@relay.example",
        ] {
            let error = gateway_config(
                &raw(&format!("[gateway]\nrelays = [\"{bad}\"]")),
                local,
                None,
            )
            .expect_err(bad);
            assert!(
                format!("{error:#}").contains("gateway.relays"),
                "{bad}: {error:#}"
            );
        }
    }
}
