//! Gondola's gateway: the one door clients knock on.
//!
//! It authenticates each request, checks its limits, picks a provider node for the model, fails
//! over between providers until the first token, then relays the stream. Providers join by
//! signed registration and stay by heartbeat ([`registry`]).
//!
//! The gateway never writes request content anywhere: not to logs, not to disk, not to metric
//! labels. The request a provider gets is rebuilt from parsed fields and carries nothing that
//! identifies the client: no address, no header, no key, no `user`.

mod auth;
mod background;
mod catalogue;
mod chain_mode;
mod challenge;
pub mod characters;
mod chat;
pub mod cluster;
pub mod config;
mod economy_api;
mod embeddings;
mod image_edits;
mod images;
mod metrics;
pub mod oblivious;
mod pipeline;
mod prompt_cache;
mod provider_api;
mod query;
mod rate_limit;
mod registry;
mod sealed;
mod speech;
mod thinking;
pub mod tokens;
mod transcription;
mod upload;
mod video;
mod web;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Extension, Json, Router};
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use wire::error::{ApiError, Dialect, ErrorCode};
use wire::models::ModelList;
use wire::provider::{HEARTBEAT_PATH, REGISTER_PATH, REGISTRATION_CHALLENGE_PATH};

pub use auth::hash_secret;
pub use config::GatewayConfig;
pub use economy::EconomyConfig;
pub use server::ServeLimits;

use crate::auth::Authenticator;
use crate::catalogue::Catalogue;
use crate::metrics::{Metrics, RequestLabels};
use crate::rate_limit::RateLimiter;
use crate::registry::Registry;

/// How long a registration challenge stays good: a provider asks for one just before it
/// registers.
const REGISTRATION_CHALLENGE_SECONDS: u64 = 60;
/// Providers whose last registration challenge is remembered at once (to refuse its replay);
/// beyond it registrations are refused until challenges expire. Also the most providers the
/// registry holds.
const MAX_PROVIDERS: usize = 10_000;
/// What a web3 key challenge begins with (the text a wallet signs).
const KEY_CHALLENGE_PREFIX: &str = "gondola-key-challenge-";
/// How long a web3 key challenge stays valid.
const KEY_CHALLENGE_SECONDS: u64 = 15 * 60;
/// Wallets that minted a key within one challenge lifetime, remembered at once (each had to
/// sign with staked sVVV to get here); beyond it, web3 minting is refused until some expire.
const MAX_KEY_CHALLENGE_WALLETS: usize = 100_000;
/// Idle connections kept open to each provider, so requests skip the TCP handshake.
const PROVIDER_POOL_IDLE_PER_HOST: usize = 64;

const OPENAPI_DOCUMENT: &str = include_str!("openapi.json");

pub(crate) struct AppState {
    config: GatewayConfig,
    /// The store shared with the other replicas; `None`: this process alone.
    cluster: Option<Arc<cluster::Cluster>>,
    auth: Authenticator,
    registry: Registry,
    catalogue: Catalogue,
    rate: RateLimiter,
    metrics: Metrics,
    /// Client for providers, one per serving thread (see [`server::PerThread`]).
    http: server::PerThread<reqwest::Client>,
    economy: Option<Arc<economy::Economy>>,
    /// Chain mode: the accounts' stake on the chain.
    chain: Option<Arc<chain::stakes::Stakes>>,
    tiers: config::TierConfig,
    oblivious: Option<Arc<oblivious::ObliviousGateway>>,
    /// Privacy Pass issuance and redemption; only with a ledger.
    tokens: Option<Arc<tokens::Tokens>>,
    /// Challenges providers sign into their registrations.
    registration_challenges: challenge::Challenges,
    /// The newest challenge each provider key registered with.
    registration_challenge_uses: challenge::UsedStamps<[u8; 32]>,
    /// Web3 key challenges: stateless, so asking for them fills nothing.
    key_challenges: challenge::Challenges,
    /// The newest challenge each wallet minted a key with, so none is used twice.
    key_challenge_uses: challenge::UsedStamps<ledger::Address>,
    /// The key prompt cache namespaces are derived under (see [`prompt_cache`]): new at each
    /// start, so a restart begins every namespace afresh.
    prompt_cache_secret: [u8; 32],
    /// The key video queue ids are bound under (see [`video`]).
    video_key: [u8; 32],
}

/// A running gateway's shared state. It can serve several listeners at once (say, TLS for
/// clients and plain loopback HTTP for a provider in the same process).
pub struct Gateway {
    state: Arc<AppState>,
    sweeper: tokio::task::JoinHandle<()>,
    flusher: Option<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Must be called inside a Tokio runtime: it starts the lease sweeper.
    pub fn new(config: GatewayConfig) -> std::io::Result<Self> {
        Self::in_cluster(config, None)
    }

    /// As [`Gateway::new`], one of a cluster's replicas where `cluster` is given: spent
    /// tokens, rate and failure budgets are kept in the store it shares with the others, and
    /// the keys they must agree on come from its seed.
    pub fn in_cluster(
        config: GatewayConfig,
        cluster: Option<Arc<cluster::Cluster>>,
    ) -> std::io::Result<Self> {
        server::install_crypto_provider();
        let limits = &config.limits;
        let http = server::http_clients(server::HttpClientSettings {
            connect_timeout: limits.connect_timeout,
            read_timeout: None,
            max_idle_per_host: Some(PROVIDER_POOL_IDLE_PER_HOST),
        })?;
        let economy = match &config.economy {
            Some(economy) => {
                let mut economy = economy.clone();
                // Replicas of a cluster with PostgreSQL share one ledger journal.
                if let Some(shared) = cluster.as_ref().and_then(|cluster| cluster.shared_ledger()) {
                    economy.shared = Some(shared);
                }
                let economy = economy::Economy::open(economy)?;
                if let Some(cluster) = &cluster
                    && economy.config.shared.is_some()
                {
                    cluster.attach_meter(&economy.meter);
                }
                Some(economy)
            }
            None => None,
        };
        // Replicas of a cluster derive their keys from its seed, so they agree on them.
        let oblivious = match (&config.oblivious_seed, &cluster) {
            (Some(_), Some(cluster)) => Some(Arc::new(
                oblivious::ObliviousGateway::from_seed(
                    &cluster.derived_seed("oblivious http"),
                    config.oblivious_x_wing,
                )
                .map_err(std::io::Error::other)?,
            )),
            (Some(path), None) => Some(Arc::new(
                oblivious::ObliviousGateway::from_seed_file(path, config.oblivious_x_wing)
                    .map_err(std::io::Error::other)?,
            )),
            (None, _) => None,
        };
        let video_key = match (&config.jobs_seed, &cluster) {
            (_, Some(cluster)) => cluster.derived_seed("video queue ids"),
            (Some(path), None) => keyfile::read_or_create(path, || {
                let mut seed = vec![0u8; 32];
                rand::fill(&mut seed[..]);
                seed
            })?
            .try_into()
            .map_err(|_| {
                std::io::Error::other(format!("{}: not a 32-byte seed", path.display()))
            })?,
            (None, None) => {
                let mut key = [0u8; 32];
                rand::fill(&mut key);
                key
            }
        };
        let metrics = Metrics::default();
        let tokens = match (&config.tokens, &economy) {
            (Some(tokens), Some(economy)) => Some(Arc::new(tokens::Tokens::open(
                tokens,
                Arc::clone(economy),
                metrics.token_signature_checks.clone(),
                cluster.clone(),
            )?)),
            _ => None,
        };
        // A wallet may take a challenge from one replica and answer it at another.
        let key_challenges = match &cluster {
            Some(cluster) => challenge::Challenges::with_key(
                "gondola web3 key challenge",
                KEY_CHALLENGE_PREFIX,
                KEY_CHALLENGE_SECONDS,
                cluster.derived_seed("web3 key challenges"),
            ),
            None => challenge::Challenges::new(
                "gondola web3 key challenge",
                KEY_CHALLENGE_PREFIX,
                KEY_CHALLENGE_SECONDS,
            ),
        };
        let chain = match (&config.chain, &economy) {
            (Some(chain_config), Some(economy)) => {
                let stakes = chain::stakes::Stakes::new(chain_config.clone())
                    .map_err(std::io::Error::other)?;
                economy
                    .meter
                    .set_stake_source(Arc::new(chain_mode::ChainStakeSource(Arc::clone(&stakes))));
                Some(stakes)
            }
            (Some(_), None) => {
                return Err(std::io::Error::other(
                    "chain mode needs the ledger ([gateway.ledger]) for usage, credits and keys",
                ));
            }
            _ => None,
        };
        let state = Arc::new(AppState {
            oblivious,
            tokens,
            economy: economy.clone(),
            chain: chain.clone(),
            tiers: config.tiers.clone(),
            auth: Authenticator::new(config.auth.clone()),
            registry: Registry::new(
                config.lease_ttl,
                limits.breaker_failure_threshold,
                limits.breaker_open_for,
                limits.max_in_flight_per_provider,
            ),
            catalogue: Catalogue::new(config.catalogue.clone()),
            rate: RateLimiter::default(),
            metrics,
            http,
            config,
            cluster,
            registration_challenges: challenge::Challenges::new(
                "gondola provider registration",
                "gondola-registration-",
                REGISTRATION_CHALLENGE_SECONDS,
            ),
            registration_challenge_uses: challenge::UsedStamps::new(MAX_PROVIDERS),
            key_challenges,
            key_challenge_uses: challenge::UsedStamps::new(MAX_KEY_CHALLENGE_WALLETS),
            prompt_cache_secret: {
                let mut secret = [0u8; 32];
                rand::fill(&mut secret);
                secret
            },
            video_key,
        });
        let sweeper = tokio::spawn(sweep_leases(Arc::clone(&state)));
        if let (Some(chain_config), Some(economy)) = (&state.config.chain, &economy)
            && let Some(key) = &chain_config.anchor_key
        {
            let signer = wallet::Wallet::load(key)
                .map_err(|error| {
                    std::io::Error::other(format!("the anchor key {}: {error}", key.display()))
                })?
                .secret_hex()
                .parse::<alloy::signers::local::PrivateKeySigner>()
                .map_err(std::io::Error::other)?;
            tokio::spawn(chain_mode::operator_loop(
                Arc::downgrade(economy),
                chain_config.clone(),
                signer,
            ));
        }
        if let (Some(stakes), Some(economy)) = (chain, &economy) {
            let (listing, refreshing) = (Arc::downgrade(economy), Arc::downgrade(economy));
            tokio::spawn(stakes.run(
                move || {
                    listing.upgrade().map_or_else(Vec::new, |economy| {
                        economy
                            .keys
                            .accounts()
                            .into_iter()
                            .map(wallet::to_alloy)
                            .collect()
                    })
                },
                move |account| {
                    if let Some(economy) = refreshing.upgrade() {
                        economy.refresh_account(wallet::from_alloy(account));
                    }
                },
            ));
        }
        let flusher = economy.map(|economy| {
            let interval = economy.config.usage_flush_interval;
            tokio::spawn(economy::flush_loop(Arc::downgrade(&economy), interval))
        });
        Ok(Self {
            state,
            sweeper,
            flusher,
        })
    }

    /// Writes metered usage to the ledger and checkpoints it. Call after the last `serve`
    /// returns; requests still running afterwards are not metered into the ledger.
    pub async fn close(&self) {
        if let Some(flusher) = &self.flusher {
            flusher.abort();
        }
        if let Some(economy) = &self.state.economy {
            economy.close().await;
        }
        if let Some(cluster) = &self.state.cluster {
            cluster.leave().await;
        }
    }

    /// Serves on `listener` until `shutdown` completes, then drains open requests.
    pub async fn serve(
        &self,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let limits = ServeLimits {
            max_connections: self.state.config.limits.max_connections,
            body_read_timeout: self.state.config.limits.body_read_timeout,
            ..ServeLimits::default()
        };
        server::serve(
            listener,
            router(Arc::clone(&self.state)),
            tls,
            limits,
            shutdown,
        )
        .await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.sweeper.abort();
        if let Some(flusher) = &self.flusher {
            flusher.abort();
        }
    }
}

/// Serves a gateway on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: GatewayConfig,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let gateway = Gateway::new(config)?;
    let served = gateway.serve(listener, tls, shutdown).await;
    gateway.close().await;
    served
}

async fn sweep_leases(state: Arc<AppState>) {
    let period = (state.config.lease_ttl / 3).max(Duration::from_millis(100));
    let mut interval = tokio::time::interval(period);
    loop {
        interval.tick().await;
        let live = state.registry.sweep(Instant::now());
        state
            .metrics
            .live_providers
            .set(i64::try_from(live).unwrap_or(i64::MAX));
    }
}

/// Every route under `/v1` and `/api/v1`: its path and its handlers. The router is built from
/// this table, and the test that `openapi.json` documents every route reads it too.
fn api_route_table(state: &Arc<AppState>) -> Vec<(&'static str, MethodRouter<Arc<AppState>>)> {
    vec![
        ("/chat/completions", post(operation::<chat::Chat>)),
        ("/embeddings", post(operation::<embeddings::Embeddings>)),
        ("/audio/speech", post(operation::<speech::Speech>)),
        ("/audio/voices", get(list_voices)),
        (
            "/audio/transcriptions",
            post(operation::<transcription::Transcription>),
        ),
        (
            "/image/generate",
            post(operation::<images::ImageGeneration<images::VeniceImage>>),
        ),
        (
            "/image/background-remove",
            post(operation::<background::BackgroundRemoval>),
        ),
        ("/image/edit", post(operation::<image_edits::ImageEdit>)),
        (
            "/image/upscale",
            post(operation::<image_edits::ImageUpscale>),
        ),
        ("/video/queue", post(operation::<video::VideoQueue>)),
        ("/video/quote", post(video_quote)),
        ("/video/retrieve", post(video_retrieve)),
        ("/video/complete", post(video_complete)),
        (
            "/images/generations",
            post(operation::<images::ImageGeneration<images::OpenAiImageGeneration>>),
        ),
        (
            "/image/styles",
            get(|| async { Json(images::styles()).into_response() }),
        ),
        (
            "/privacy/chat",
            post(operation::<sealed::SealedChatOperation>).layer(DefaultBodyLimit::max(
                sealed::body_limit(state.config.limits.max_body_bytes),
            )),
        ),
        (
            "/privacy/images",
            post(operation::<sealed::SealedImagesOperation>).layer(DefaultBodyLimit::max(
                sealed::body_limit(state.config.limits.max_body_bytes),
            )),
        ),
        (
            "/privacy/providers",
            get(
                |State(state): State<Arc<AppState>>| async move { sealed::providers(&state).await },
            ),
        ),
        ("/models", get(list_models)),
        ("/models/traits", get(list_traits)),
        ("/models/compatibility_mapping", get(list_aliases)),
        ("/providers", get(list_providers)),
        ("/characters", get(list_characters)),
        ("/characters/{slug}", get(get_character)),
        (
            "/privacy/tokens",
            post(tokens::issue).layer(DefaultBodyLimit::max(
                privacy::tokens::MAX_BATCH_REQUEST_BYTES,
            )),
        ),
        ("/ledger/status", get(economy_api::status)),
        ("/ledger/accounts/{address}", get(economy_api::account)),
        ("/chain/airdrop/{address}", get(economy_api::airdrop)),
        ("/ledger/quote", get(economy_api::quote)),
        (
            "/ledger/operations",
            post(economy_api::submit)
                .layer(DefaultBodyLimit::max(economy_api::MAX_ECONOMY_BODY_BYTES)),
        ),
        (
            "/api_keys",
            get(economy_api::list_keys)
                .post(economy_api::create_key)
                .patch(economy_api::update_key)
                .delete(economy_api::delete_key)
                .layer(DefaultBodyLimit::max(economy_api::MAX_ECONOMY_BODY_BYTES)),
        ),
        ("/api_keys/rate_limits", get(economy_api::rate_limits)),
        (
            "/api_keys/rate_limits/log",
            get(economy_api::rate_limit_log),
        ),
        (
            "/api_keys/generate_web3_key",
            get(economy_api::web3_challenge)
                .post(economy_api::web3_key)
                .layer(DefaultBodyLimit::max(economy_api::MAX_ECONOMY_BODY_BYTES)),
        ),
        ("/api_keys/{id}", get(economy_api::get_key)),
        ("/billing/balance", get(economy_api::billing_balance)),
        ("/billing/usage-history", get(economy_api::usage_history)),
        ("/billing/usage-days", get(economy_api::usage_days)),
        (
            "/admin/clock",
            post(economy_api::advance_clock)
                .layer(DefaultBodyLimit::max(economy_api::MAX_ECONOMY_BODY_BYTES)),
        ),
    ]
}

fn api_routes(state: &Arc<AppState>, dialect: Dialect) -> Router {
    let mut router = Router::new();
    for (path, handlers) in api_route_table(state) {
        router = router.route(path, handlers);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(dialect))
        .with_state(Arc::clone(state))
}

/// Every route outside `/v1` and `/api/v1` but the web app's files and Oblivious HTTP's (the
/// provider protocol, health, metrics, the issuer directory).
fn root_route_table() -> Vec<(&'static str, MethodRouter<Arc<AppState>>)> {
    vec![
        (
            REGISTRATION_CHALLENGE_PATH,
            get(provider_api::registration_challenge),
        ),
        (
            REGISTER_PATH,
            post(provider_api::register).layer(DefaultBodyLimit::max(
                provider_api::MAX_PROVIDER_MESSAGE_BYTES,
            )),
        ),
        (
            HEARTBEAT_PATH,
            post(provider_api::heartbeat).layer(DefaultBodyLimit::max(
                provider_api::MAX_PROVIDER_MESSAGE_BYTES,
            )),
        ),
        ("/healthz", get(health)),
        ("/metrics", get(metrics)),
        (
            privacy::tokens::ISSUER_DIRECTORY_PATH,
            get(tokens::directory),
        ),
    ]
}

fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.config.limits.max_body_bytes;
    let oblivious = oblivious_routes(&state, body_limit);
    let records_usage = state
        .economy
        .as_ref()
        .is_some_and(|economy| economy.records_usage());
    let mut root = Router::new();
    for (path, handlers) in root_route_table() {
        root = root.route(path, handlers);
    }
    let router = root
        .with_state(Arc::clone(&state))
        .merge(web::routes(
            &state.config.web_relays,
            state.config.chain.as_ref(),
        ))
        .nest("/v1", api_routes(&state, Dialect::OpenAi))
        .nest(
            "/api/v1",
            api_routes(&state, Dialect::Venice).route("/openapi.json", get(openapi)),
        )
        .merge(oblivious)
        .fallback(not_found_openai)
        .layer(DefaultBodyLimit::max(body_limit));
    if records_usage {
        router.layer(axum::middleware::from_fn(
            pipeline::recording::hold_until_recorded,
        ))
    } else {
        router
    }
}

/// Bytes an encapsulated request adds to the request it seals: padding to its size bucket (at
/// most 64 KiB above 64 KiB), the HPKE encapsulated key, key id, suite, tags and chunk lengths,
/// Binary HTTP framing and a few headers, with room to spare.
const OBLIVIOUS_OVERHEAD_BYTES: usize = privacy::framing::LARGE_MESSAGE_STEP_BYTES + 16 * 1024;

/// The OHTTP key configuration and gateway resource, when the gateway has a key: encapsulated
/// requests run through the same API routes as plain ones.
fn oblivious_routes(state: &Arc<AppState>, body_limit: usize) -> Router {
    let Some(gateway) = &state.oblivious else {
        return Router::new();
    };
    let inner = Router::new()
        .route(
            privacy::tokens::ISSUER_DIRECTORY_PATH,
            get(tokens::directory).with_state(Arc::clone(state)),
        )
        .nest("/v1", api_routes(state, Dialect::OpenAi))
        .nest("/api/v1", api_routes(state, Dialect::Venice))
        .layer(DefaultBodyLimit::max(body_limit));
    let max_response_bytes = state.config.limits.max_oblivious_response_bytes;
    let keys = Arc::clone(gateway);
    let gateway = Arc::clone(gateway);
    Router::new()
        .route(
            oblivious::KEYS_PATH,
            get(move || async move { oblivious::keys_response(&keys) }),
        )
        .route(
            oblivious::GATEWAY_PATH,
            post(move |headers: HeaderMap, body: bytes::Bytes| async move {
                oblivious::handle(
                    &gateway,
                    inner,
                    headers.get(http::header::CONTENT_TYPE),
                    body,
                    max_response_bytes,
                )
                .await
            })
            // Large enough for a sealed chat request (several sealed copies of a chat body);
            // each inner route holds its request to its own limit.
            .layer(DefaultBodyLimit::max(
                sealed::body_limit(body_limit).saturating_add(OBLIVIOUS_OVERHEAD_BYTES),
            )),
        )
}

pub(crate) fn error_response(error: &ApiError, dialect: Dialect) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        error.body(dialect),
    )
        .into_response();
    if let Some(seconds) = error.retry_after_s
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, value);
    }
    response
}

/// A route served by the pipeline's operation `O`, in the dialect of its prefix.
async fn operation<O: pipeline::Operation>(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    pipeline::run::<O>(state, dialect, headers, body).await
}

async fn video_quote(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    video::quote(state, headers, body)
        .await
        .unwrap_or_else(|error| error_response(&error, dialect))
}

async fn video_retrieve(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    video::retrieve(state, headers, body)
        .await
        .unwrap_or_else(|error| error_response(&error, dialect))
}

async fn video_complete(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    video::complete(state, headers, body)
        .await
        .unwrap_or_else(|error| error_response(&error, dialect))
}

async fn list_voices(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
) -> Response {
    if let Err(error) = pipeline::admission::authenticated(&state, &headers).await {
        return error_response(&error, dialect);
    }
    let live = state.registry.live_models(Instant::now());
    Json(serde_json::json!({ "object": "list", "data": speech::voices(&live) })).into_response()
}

#[derive(serde::Deserialize)]
struct TypeFilter {
    r#type: Option<String>,
}

/// Which models a `type` filter lists.
enum Listed {
    /// Every type (`all`).
    All,
    /// One type this server serves (`text` when no filter is given, as Venice does).
    Only(wire::models::ModelType),
    /// A type Venice knows and this server serves no model of.
    Nothing,
}

fn type_matches(filter: &TypeFilter) -> Result<Listed, ApiError> {
    use wire::models::ModelType;
    match filter.r#type.as_deref() {
        None | Some("text") => Ok(Listed::Only(ModelType::Text)),
        Some("embedding") => Ok(Listed::Only(ModelType::Embedding)),
        Some("tts") => Ok(Listed::Only(ModelType::Tts)),
        Some("asr") => Ok(Listed::Only(ModelType::Asr)),
        Some("image") => Ok(Listed::Only(ModelType::Image)),
        Some("video") => Ok(Listed::Only(ModelType::Video)),
        Some("background-removal") => Ok(Listed::Only(ModelType::BackgroundRemoval)),
        Some("upscale") => Ok(Listed::Only(ModelType::Upscale)),
        Some("all") => Ok(Listed::All),
        Some("inpaint" | "code" | "music") => Ok(Listed::Nothing),
        Some(other) => Err(ApiError::invalid(
            "type",
            format!("unknown model type {other:?}"),
        )),
    }
}

/// The `type` a listing answers with: the filter, or `text`.
fn listed_type(filter: &TypeFilter) -> String {
    filter.r#type.clone().unwrap_or_else(|| "text".to_owned())
}

async fn list_models(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
    query::ApiQuery(filter): query::ApiQuery<TypeFilter>,
) -> Response {
    if let Err(error) = pipeline::admission::authenticated(&state, &headers).await {
        return error_response(&error, dialect);
    }
    let listed = match type_matches(&filter) {
        Ok(listed) => listed,
        Err(error) => return error_response(&error, dialect),
    };
    let live = state.registry.live_models(Instant::now());
    let only = match listed {
        Listed::All => None,
        Listed::Only(model_type) => Some(model_type),
        Listed::Nothing => None,
    };
    let mut data = if matches!(listed, Listed::Nothing) {
        Vec::new()
    } else {
        state.catalogue.list(
            &live,
            started_at(),
            state.config.limits.max_output_tokens,
            only,
        )
    };
    if dialect == Dialect::Venice {
        // The one value Venice's API gives this field; clients of it check it.
        for model in &mut data {
            "venice.ai".clone_into(&mut model.owned_by);
        }
    }
    count(&state, "models", 200);
    let body = serde_json::to_vec(&ModelList {
        object: "list",
        r#type: listed_type(&filter),
        data,
    })
    .unwrap_or_default();
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn list_traits(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
    query::ApiQuery(filter): query::ApiQuery<TypeFilter>,
) -> Response {
    name_map(&state, dialect, &headers, &filter, Catalogue::traits_of).await
}

async fn list_aliases(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
    query::ApiQuery(filter): query::ApiQuery<TypeFilter>,
) -> Response {
    name_map(&state, dialect, &headers, &filter, Catalogue::aliases_of).await
}

type NameMap = std::collections::BTreeMap<String, String>;

/// A `{name: model id}` listing (traits or aliases) in Venice's `{object, data}` shape.
async fn name_map(
    state: &AppState,
    dialect: Dialect,
    headers: &HeaderMap,
    filter: &TypeFilter,
    names: fn(&Catalogue, &catalogue::LiveModels, wire::models::ModelType) -> NameMap,
) -> Response {
    if let Err(error) = pipeline::admission::authenticated(state, headers).await {
        return error_response(&error, dialect);
    }
    match type_matches(filter) {
        Ok(listed) => {
            let live = state.registry.live_models(Instant::now());
            let data = match listed {
                Listed::Nothing => NameMap::new(),
                Listed::Only(model_type) => names(&state.catalogue, &live, model_type),
                Listed::All => [
                    wire::models::ModelType::Text,
                    wire::models::ModelType::Embedding,
                    wire::models::ModelType::Tts,
                    wire::models::ModelType::Asr,
                    wire::models::ModelType::Image,
                    wire::models::ModelType::Video,
                    wire::models::ModelType::BackgroundRemoval,
                    wire::models::ModelType::Upscale,
                ]
                .into_iter()
                .rev()
                .flat_map(|model_type| names(&state.catalogue, &live, model_type))
                .collect(),
            };
            Json(serde_json::json!({ "object": "list", "type": listed_type(filter), "data": data }))
                .into_response()
        }
        Err(error) => error_response(&error, dialect),
    }
}

async fn list_characters(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let result = async {
        pipeline::admission::authenticated(&state, &headers).await?;
        let query = characters::CharacterQuery::parse(query.as_deref())?;
        let data = state.config.characters.list(&query)?;
        Ok::<_, ApiError>(Json(serde_json::json!({ "object": "list", "data": data })))
    }
    .await;
    match result {
        Ok(body) => body.into_response(),
        Err(error) => error_response(&error, dialect),
    }
}

async fn get_character(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
    axum::extract::Path(slug): axum::extract::Path<String>,
) -> Response {
    let result = async {
        pipeline::admission::authenticated(&state, &headers).await?;
        let characters = &state.config.characters;
        let character = characters.get(&slug)?;
        Ok::<_, ApiError>(Json(
            serde_json::json!({ "object": "character", "data": characters.view(character) }),
        ))
    }
    .await;
    match result {
        Ok(body) => body.into_response(),
        Err(error) => error_response(&error, dialect),
    }
}

async fn list_providers(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
) -> Response {
    let caller = match pipeline::admission::authenticated(&state, &headers).await {
        Ok(caller) => caller,
        Err(error) => return error_response(&error, dialect),
    };
    if !caller.is_operator() {
        return error_response(
            &ApiError::new(
                ErrorCode::Unauthorized,
                "listing providers needs one of the operator's ADMIN keys",
            ),
            dialect,
        );
    }
    let data = state.registry.views(Instant::now());
    Json(serde_json::json!({ "object": "list", "data": data })).into_response()
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    Json(serde_json::json!({ "status": "ok", "providers": state.registry.live_count(Instant::now()) })).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state
        .metrics
        .live_providers
        .set(i64::try_from(state.registry.live_count(Instant::now())).unwrap_or(i64::MAX));
    if let Some(stakes) = &state.chain {
        chain_mode::record_follower(stakes, &state.metrics);
    }
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        OPENAPI_DOCUMENT,
    )
        .into_response()
}

async fn not_found(Extension(dialect): Extension<Dialect>) -> Response {
    error_response(
        &ApiError::new(ErrorCode::NotFound, "no such endpoint"),
        dialect,
    )
}

async fn not_found_openai() -> Response {
    error_response(
        &ApiError::new(ErrorCode::NotFound, "no such endpoint"),
        Dialect::OpenAi,
    )
}

async fn method_not_allowed(Extension(dialect): Extension<Dialect>) -> Response {
    error_response(
        &ApiError::new(
            ErrorCode::MethodNotAllowed,
            "this endpoint does not accept that method",
        ),
        dialect,
    )
}

fn count(state: &AppState, route: &'static str, status: u16) {
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            model: String::new(),
            status,
        })
        .inc();
}

fn started_at() -> u64 {
    static STARTED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *STARTED.get_or_init(wire::clock::unix_seconds)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use tower::ServiceExt;

    use super::*;

    const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

    /// `path` with its parameters filled in.
    fn concrete(path: &str) -> String {
        path.replace("{address}", "0x0000000000000000000000000000000000000001")
            .replace("{id}", "key_0")
    }

    /// Whether `router` serves `method` at `path`: anything but the router's own answers to an
    /// unknown path (404, "no such endpoint") or method (405).
    async fn served(router: &Router, method: &str, path: &str) -> bool {
        let request = http::Request::builder()
            .method(method)
            .uri(concrete(path))
            .body(axum::body::Body::empty())
            .expect("a request");
        let response = router.clone().oneshot(request).await.expect("an answer");
        match response.status().as_u16() {
            405 => false,
            404 => {
                let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
                    .await
                    .expect("a body");
                !String::from_utf8_lossy(&body).contains("no such endpoint")
            }
            _ => true,
        }
    }

    #[tokio::test]
    async fn every_route_is_in_openapi_json_and_every_documented_route_is_served() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut economy = EconomyConfig::in_dir(dir.path());
        economy.adjustable_clock = true;
        let gateway = Gateway::new(GatewayConfig {
            economy: Some(economy),
            tokens: Some(tokens::TokensConfig::in_dir(dir.path())),
            oblivious_seed: Some(dir.path().join("ohttp.seed")),
            ..GatewayConfig::default()
        })
        .expect("a gateway");
        let router = router(Arc::clone(&gateway.state));
        let document: serde_json::Value =
            serde_json::from_str(OPENAPI_DOCUMENT).expect("openapi.json parses");
        let documented: BTreeSet<(String, String)> = document["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, operations)| {
                operations
                    .as_object()
                    .expect("operations")
                    .keys()
                    .map(|method| (method.to_ascii_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        // Every path the router serves (the web app's own files apart, listed in web.rs).
        let mut paths: Vec<String> = root_route_table()
            .into_iter()
            .map(|(path, _)| path.to_owned())
            .collect();
        for prefix in ["/v1", "/api/v1"] {
            paths.extend(
                api_route_table(&gateway.state)
                    .into_iter()
                    .map(|(path, _)| format!("{prefix}{path}")),
            );
        }
        paths.extend([
            "/api/v1/openapi.json".to_owned(),
            privacy::KEYS_PATH.to_owned(),
            privacy::GATEWAY_PATH.to_owned(),
        ]);
        assert!(paths.len() > 40, "{paths:?}");
        for path in &paths {
            for method in METHODS {
                if served(&router, method, path).await {
                    assert!(
                        documented.contains(&(method.to_owned(), path.clone())),
                        "{method} {path} is served but openapi.json does not document it"
                    );
                }
            }
        }
        for (method, path) in &documented {
            assert!(
                served(&router, method, path).await,
                "openapi.json documents {method} {path}, which is not served"
            );
        }
    }
}
