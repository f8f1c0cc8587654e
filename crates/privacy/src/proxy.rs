//! `gondola proxy`: an OpenAI-compatible endpoint on localhost that sends every request down
//! the private path. Point any OpenAI client, agent framework or the web app at it and each
//! chat request is padded, sealed to the gateway's key (chunked OHTTP), carried by a relay that
//! cannot read it, and the reply streamed back event by event as the gateway releases it.
//!
//! It serves `POST /v1/chat/completions`, `/v1/embeddings`, `/v1/audio/speech`,
//! `/v1/audio/transcriptions`, `/v1/images/generations`, `/v1/image/generate` and the video
//! routes (`/v1/video/quote`, `queue`, `retrieve`, `complete`), `GET /v1/models`,
//! `/v1/audio/voices` and `/v1/image/styles`, and the same under `/api/v1`. A whole answer
//! through it is at most the gateway's bound on a sealed answer (4 MiB by default): a few
//! images, not a video. Chat and Venice's image requests are sealed to the model's providers
//! as well, where they take sealed requests, and their receipts checked. The
//! API key is the proxy's own (`--api-key`) or, without one, whatever the local client sends.
//! Where the gateway issues privacy tokens, the key only buys them (sealed, in batches) and
//! each request carries tokens instead, so the gateway cannot tie a request to an account;
//! where it does not, the key travels inside the sealed request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use std::collections::VecDeque;

use privacypass::public_tokens::PublicToken;
use tokio::sync::{Mutex, RwLock};
use wire::error::{ApiError, Dialect, ErrorCode};

use crate::client::{ClientError, GatewayKeys, OpenedStream, seal_chunked};
use crate::framing::{EventSplitter, strip_event_padding};
use crate::sealed::{ReceiptError, SealedRequest, seal_chat, seal_images, targets};
use crate::tokens::IssuerKey;
use crate::{
    CHUNKED_REQUEST_MEDIA_TYPE, CHUNKED_RESPONSE_MEDIA_TYPE, GATEWAY_PATH, RETURNED_HEADERS,
};
use wire::provider::Receipt;
use wire::sealed::{
    PROVIDER_HEADER, PROVIDERS_PATH, SEALED_CHAT_PATH, SEALED_IMAGES_PATH, SealingProviders,
};

/// What the proxy seals to providers.
#[derive(Clone, Copy)]
enum Sealable {
    Chat,
    Images,
}

/// How a proxy runs.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The relay's base URL: sealed requests go to its `/ohttp`.
    pub relay: String,
    /// Where the gateway's key configuration is fetched: the relay by default, so the gateway
    /// does not see this machine's address even then.
    pub keys_from: String,
    /// The API key sent inside every sealed request; `None` passes on the local client's.
    pub api_key: Option<String>,
    /// Largest request body accepted from the local client.
    pub max_body_bytes: usize,
    /// How long the relay has to start answering.
    pub response_timeout: Duration,
    /// How long a streamed reply may go without a byte.
    pub idle_timeout: Duration,
}

impl ProxyConfig {
    pub fn new(relay: impl Into<String>) -> Self {
        let relay = relay.into();
        Self {
            keys_from: relay.clone(),
            relay,
            api_key: None,
            max_body_bytes: 2 * 1024 * 1024,
            response_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Why a request could not be carried.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the relay could not be reached: {0}")]
    Unreachable(String),
    #[error("the relay did not answer in {0:?}")]
    Timeout(Duration),
    #[error("the relay or gateway refused the sealed request ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("privacy tokens: {0}")]
    Tokens(String),
}

/// Sends requests down the private path: keys fetched once (and again if the gateway no
/// longer accepts them), requests sealed, replies opened.
pub struct PrivateClient {
    config: ProxyConfig,
    http: reqwest::Client,
    relay_url: String,
    keys: RwLock<Option<GatewayKeys>>,
    purse: Mutex<Purse>,
    /// The providers that take sealed requests, as last listed, and when.
    providers: Mutex<Option<(Instant, SealingProviders)>>,
}

/// Tokens bought with the API key and not yet spent, and the issuer key they were bought under.
#[derive(Default)]
struct Purse {
    issuer: Issuer,
    tokens: VecDeque<PublicToken>,
}

#[derive(Default)]
enum Issuer {
    /// Not asked yet (or asked to ask again).
    #[default]
    Unknown,
    /// The gateway issues no tokens: requests carry the API key.
    Absent,
    Known(IssuerKey),
}

/// Tokens bought at once: enough that buying is rare and does not mark out single requests,
/// few enough that little is lost if the proxy stops or the day ends.
const TOKEN_BATCH: usize = 20;

/// Longest plain-text refusal kept from a relay or gateway.
const MAX_REFUSAL_BYTES: usize = 4096;

impl PrivateClient {
    pub fn new(config: ProxyConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(config.idle_timeout)
            .build()?;
        Ok(Self {
            relay_url: format!("{}{GATEWAY_PATH}", config.relay.trim_end_matches('/')),
            config,
            http,
            keys: RwLock::new(None),
            purse: Mutex::new(Purse::default()),
            providers: Mutex::new(None),
        })
    }

    async fn keys(&self, refresh: bool) -> Result<GatewayKeys, ClientError> {
        if !refresh && let Some(keys) = self.keys.read().await.as_ref() {
            return Ok(keys.clone());
        }
        let keys = GatewayKeys::fetch(&self.http, &self.config.keys_from).await?;
        *self.keys.write().await = Some(keys.clone());
        Ok(keys)
    }

    /// Sends `method path` with `headers` and `body` through the relay; returns the gateway's
    /// reply as it streams.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<OpenedStream, SendError> {
        let mut refreshed = false;
        loop {
            let keys = self.keys(refreshed).await?;
            let (sealed, opener) = seal_chunked(&keys, method, path, headers, body).await?;
            let sent = self
                .http
                .post(&self.relay_url)
                .header(header::CONTENT_TYPE, CHUNKED_REQUEST_MEDIA_TYPE)
                .body(sealed)
                .send();
            let response = match tokio::time::timeout(self.config.response_timeout, sent).await {
                Ok(Ok(response)) => response,
                Ok(Err(error)) => {
                    return Err(SendError::Unreachable(error.without_url().to_string()));
                }
                Err(_) => return Err(SendError::Timeout(self.config.response_timeout)),
            };
            let media_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            if response.status().is_success() && media_type == CHUNKED_RESPONSE_MEDIA_TYPE {
                return Ok(opener.open(response.bytes_stream()).await?);
            }
            let status = response.status().as_u16();
            let message = refusal_text(response).await;
            // A gateway that cannot decrypt may have a new key: fetch it once and try again
            // (nothing ran, so nothing runs twice).
            if status == 400 && !refreshed {
                refreshed = true;
                continue;
            }
            return Err(SendError::Refused { status, message });
        }
    }
}

/// What a request is paid with.
enum Payment {
    /// Nothing: the gateway serves anonymous callers.
    None,
    /// The API key itself (the gateway issues no tokens).
    Key(String),
    /// Tokens, spent if the request reaches a provider.
    Tokens(Vec<PublicToken>),
}

impl PrivateClient {
    /// Sends an API request paid for by the API key behind `authorization`: with tokens bought
    /// from the gateway's issuer (through the relay, in batches) where it issues them, so the
    /// request itself carries no key; with the key where it does not. Tokens a request did not
    /// spend (it was refused before reaching a provider) go back into the purse. A refusal for
    /// too few tokens is retried once with as many as the gateway asks for, and a refusal of
    /// the tokens themselves (a new day's key) once with new tokens.
    pub async fn send_paid(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<OpenedStream, SendError> {
        let spends = method == "POST";
        let mut count = 1;
        // Each kind of refusal is retried once: too few tokens, tokens of a past day, a token
        // spent already.
        let (mut recounted, mut renewed, mut replaced) = (false, false, false);
        loop {
            let payment = match self.payment(path, authorization, count, spends).await? {
                Ok(payment) => payment,
                Err(refusal) => return Ok(refusal),
            };
            let header = match &payment {
                Payment::None => None,
                Payment::Key(key) => Some(key.clone()),
                Payment::Tokens(tokens) => Some(
                    crate::tokens::authorization_value(tokens)
                        .map_err(|error| SendError::Tokens(error.to_string()))?,
                ),
            };
            let mut headers = Vec::with_capacity(2);
            if let Some(header) = &header {
                headers.push(("authorization", header.as_str()));
            }
            if let Some(content_type) = content_type {
                headers.push(("content-type", content_type));
            }
            let opened = self.send(method, path, &headers, body).await;
            let Payment::Tokens(tokens) = payment else {
                return opened;
            };
            let opened = match opened {
                Ok(opened) => opened,
                Err(error) => {
                    // Whether the gateway spent them is unknown: they are kept, and if they
                    // were spent, the request that next sends them is refused without harm
                    // and tried again with others.
                    self.give_back(tokens).await;
                    return Err(error);
                }
            };
            let required = opened
                .header(crate::tokens::TOKENS_REQUIRED_HEADER)
                .and_then(|value| value.parse::<usize>().ok());
            match (opened.status, required) {
                (200..=299, _) => {
                    if !spends {
                        self.give_back(tokens).await;
                    }
                    return Ok(opened);
                }
                (402, Some(required)) if !recounted && required > count => {
                    self.give_back(tokens).await;
                    count = required.min(crate::tokens::MAX_TOKENS_PER_REQUEST);
                    recounted = true;
                }
                (402, None) if !replaced => {
                    // One of them was spent already: they are dropped.
                    replaced = true;
                }
                (401, _) if !renewed => {
                    // Refused tokens: most likely a new day. Start over with its key.
                    *self.purse.lock().await = Purse::default();
                    renewed = true;
                }
                (401 | 402, _) => return Ok(opened),
                _ => {
                    self.give_back(tokens).await;
                    return Ok(opened);
                }
            }
        }
    }

    /// Puts unspent tokens back, first in line.
    async fn give_back(&self, tokens: Vec<PublicToken>) {
        let mut purse = self.purse.lock().await;
        for token in tokens.into_iter().rev() {
            purse.tokens.push_front(token);
        }
    }

    /// How to pay for a request under `path`: `Err` carries the gateway's refusal to issue
    /// tokens (its own error, passed on).
    async fn payment(
        &self,
        path: &str,
        authorization: Option<&str>,
        count: usize,
        spends: bool,
    ) -> Result<Result<Payment, OpenedStream>, SendError> {
        let Some(authorization) = authorization else {
            return Ok(Ok(Payment::None));
        };
        let mut purse = self.purse.lock().await;
        if matches!(purse.issuer, Issuer::Unknown) {
            purse.issuer = self.issuer().await?;
            purse.tokens.clear();
        }
        let key = match &purse.issuer {
            Issuer::Known(key) => key.clone(),
            Issuer::Absent | Issuer::Unknown => {
                return Ok(Ok(Payment::Key(authorization.to_owned())));
            }
        };
        let wanted = if spends { count } else { 1 };
        if purse.tokens.len() < wanted {
            let buy = (wanted - purse.tokens.len())
                .max(TOKEN_BATCH)
                .min(key.max_batch);
            match self.buy(&key, path, authorization, buy).await? {
                Ok(tokens) => purse.tokens.extend(tokens),
                // Not an account's key (an operator's key, or a gateway open to all): it buys
                // nothing, and requests carry it as they would without tokens.
                Err(refusal) if refusal.status == 403 => {
                    tracing::warn!(
                        "the gateway issues no tokens for this API key; requests carry the key"
                    );
                    purse.issuer = Issuer::Absent;
                    return Ok(Ok(Payment::Key(authorization.to_owned())));
                }
                Err(refusal) => return Ok(Err(refusal)),
            }
        }
        // A read (the model list) shows one token without spending it; it comes back after.
        Ok(Ok(Payment::Tokens(purse.tokens.drain(..wanted).collect())))
    }

    /// The gateway's issuer key, read from its directory through the relay.
    async fn issuer(&self) -> Result<Issuer, SendError> {
        let mut opened = self
            .send("GET", crate::tokens::ISSUER_DIRECTORY_PATH, &[], &[])
            .await?;
        if opened.status == 404 {
            return Ok(Issuer::Absent);
        }
        let status = opened.status;
        let body = read_opened(&mut opened, crate::tokens::MAX_DIRECTORY_BYTES).await?;
        if status != 200 {
            return Err(SendError::Refused {
                status,
                message: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        crate::tokens::IssuerKey::from_directory_json(&body)
            .map(Issuer::Known)
            .map_err(|error| SendError::Tokens(error.to_string()))
    }

    /// Buys `count` tokens under `key` with the API key: the issuer's refusal, if it refuses.
    async fn buy(
        &self,
        key: &IssuerKey,
        path: &str,
        authorization: &str,
        count: usize,
    ) -> Result<Result<Vec<PublicToken>, OpenedStream>, SendError> {
        let (request, pending) = crate::tokens::request_batch(key, count)
            .map_err(|error| SendError::Tokens(error.to_string()))?;
        // The issuer answers in the dialect of the request it pays for.
        let issue_path = if path.starts_with("/api/") {
            format!("/api{}", crate::tokens::ISSUE_PATH)
        } else {
            crate::tokens::ISSUE_PATH.to_owned()
        };
        let mut opened = self
            .send(
                "POST",
                &issue_path,
                &[
                    ("authorization", authorization),
                    ("content-type", crate::tokens::BATCH_REQUEST_MEDIA_TYPE),
                ],
                &request,
            )
            .await?;
        if opened.status != 200 {
            return Ok(Err(opened));
        }
        let body = read_opened(&mut opened, MAX_SIGNED_BATCH_BYTES).await?;
        let tokens = pending
            .finish(&body)
            .map_err(|error| SendError::Tokens(error.to_string()))?;
        tracing::debug!(count = tokens.len(), epoch = key.epoch, "bought tokens");
        Ok(Ok(tokens))
    }
}

/// How long a list of the providers that take sealed requests is used before it is fetched
/// again (sooner when the gateway says that none of a request's providers is there).
const PROVIDERS_TTL: Duration = Duration::from_secs(30);
/// Largest provider list read.
const MAX_PROVIDERS_BYTES: usize = 1024 * 1024;
/// What a sealed request declares, and pays for, when the client set no `max_tokens`.
pub const DEFAULT_SEALED_MAX_TOKENS: u32 = 1024;

/// A chat reply: the provider's own, opened, when the request was sealed to providers; the
/// gateway's otherwise (or when it refused the request).
pub struct ChatReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>,
    /// For a sealed reply: the provider that answered, and its receipt's verdict once the body
    /// has ended.
    pub sealed: Option<(
        String,
        tokio::sync::oneshot::Receiver<Result<Receipt, ReceiptError>>,
    )>,
}

impl ChatReply {
    /// The value of field `name`, if the reply has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::client::field(&self.headers, name)
    }

    fn from_gateway(opened: OpenedStream) -> Self {
        Self {
            status: opened.status,
            headers: opened.headers,
            body: opened.body,
            sealed: None,
        }
    }
}

impl PrivateClient {
    /// Sends a chat request (`path` under `/v1` or `/api/v1`). Where providers of its model take
    /// sealed requests, it is sealed to a few of them, so that the gateway routes and charges it
    /// without reading it, and the reply is the provider's own, with its receipt checked;
    /// otherwise it goes to the gateway's chat API (still sealed to the gateway).
    pub async fn send_chat(
        &self,
        path: &str,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<ChatReply, SendError> {
        self.send_sealed(path, authorization, body, Sealable::Chat)
            .await
    }

    /// An image request (Venice's `/image/generate`) as [`Self::send_chat`] sends chat: sealed
    /// to providers of its model where any take sealed requests (the reply's receipt checked
    /// as it is read), else sealed to the gateway alone.
    pub async fn send_images(
        &self,
        path: &str,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<ChatReply, SendError> {
        self.send_sealed(path, authorization, body, Sealable::Images)
            .await
    }

    async fn send_sealed(
        &self,
        path: &str,
        authorization: Option<&str>,
        body: &[u8],
        kind: Sealable,
    ) -> Result<ChatReply, SendError> {
        for attempt in 0..2 {
            let sealed = match kind {
                Sealable::Chat => self.seal(body, attempt > 0).await?,
                Sealable::Images => self.seal_images(body, attempt > 0).await?,
            };
            let Some(sealed) = sealed else {
                break;
            };
            let route = match kind {
                Sealable::Chat => SEALED_CHAT_PATH,
                Sealable::Images => SEALED_IMAGES_PATH,
            };
            let sealed_path = if path.starts_with("/api/") {
                format!("/api{route}")
            } else {
                route.to_owned()
            };
            let outer = self
                .send_paid(
                    "POST",
                    &sealed_path,
                    authorization,
                    Some("application/json"),
                    &sealed.body,
                )
                .await?;
            let provider = outer.header(PROVIDER_HEADER).map(str::to_owned);
            match (outer.status, provider) {
                (200, Some(provider)) => {
                    // Balances and the like come from the gateway; the rest from the provider.
                    let gateway_fields: Vec<(String, String)> = outer
                        .headers
                        .iter()
                        .filter(|(name, _)| !name.eq_ignore_ascii_case("content-type"))
                        .cloned()
                        .collect();
                    let reply = sealed.open(&provider, outer.body).await?;
                    let mut headers = reply.headers;
                    headers.extend(gateway_fields);
                    return Ok(ChatReply {
                        status: reply.status,
                        headers,
                        body: reply.body,
                        sealed: Some((provider, reply.receipt)),
                    });
                }
                // None of the providers it was sealed to is there any more: list them again.
                (503, _) if attempt == 0 => continue,
                _ => return Ok(ChatReply::from_gateway(outer)),
            }
        }
        let opened = self
            .send_paid("POST", path, authorization, Some("application/json"), body)
            .await?;
        Ok(ChatReply::from_gateway(opened))
    }

    /// The image request `body` sealed to providers of its model, if any take sealed requests,
    /// naming the served model inside the seal. A body that does not parse, or asks for a
    /// binary answer (a sealed reply is JSON), goes to the gateway as it is.
    async fn seal_images(
        &self,
        body: &[u8],
        refresh: bool,
    ) -> Result<Option<SealedRequest>, SendError> {
        let Ok(request) = wire::images::ImageRequest::parse_venice(body, "default") else {
            return Ok(None);
        };
        if request.answer != (wire::images::Answer::Venice { binary: false }) {
            return Ok(None);
        }
        let Some((model, chosen)) = self.sealing_targets(&request.model, refresh).await? else {
            return Ok(None);
        };
        let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_slice(body) else {
            return Ok(None);
        };
        fields.insert("model".into(), serde_json::Value::String(model.clone()));
        let inner = serde_json::to_vec(&fields).unwrap_or_default();
        let chosen: Vec<&wire::sealed::SealingProvider> = chosen.iter().collect();
        Ok(Some(
            seal_images(&chosen, &model, request.variants, &inner).await?,
        ))
    }

    /// The served model `requested` names (an id, or another name of one) and up to
    /// [`wire::sealed::MAX_TARGETS`] providers of it that take sealed requests; `None` when
    /// none do.
    async fn sealing_targets(
        &self,
        requested: &str,
        refresh: bool,
    ) -> Result<Option<(String, Vec<wire::sealed::SealingProvider>)>, SendError> {
        let listed = self.sealing_providers(refresh).await?;
        let model = if listed
            .data
            .iter()
            .any(|provider| provider.models.iter().any(|served| served == requested))
        {
            requested.to_owned()
        } else {
            match listed.aliases.get(requested) {
                Some(model) => model.clone(),
                None => requested.to_owned(),
            }
        };
        let chosen: Vec<wire::sealed::SealingProvider> =
            targets(&listed.data, &model).into_iter().cloned().collect();
        if chosen.is_empty() {
            tracing::debug!(model = %model, "no provider of the model takes sealed requests");
            return Ok(None);
        }
        Ok(Some((model, chosen)))
    }

    /// The chat request `body` sealed to providers of its model, if any take sealed requests.
    /// A body that does not parse goes to the gateway as it is, to be refused in the API's words.
    async fn seal(&self, body: &[u8], refresh: bool) -> Result<Option<SealedRequest>, SendError> {
        let Ok(request) = wire::chat::ChatRequest::parse(body) else {
            return Ok(None);
        };
        let requested = request
            .model
            .split_once(':')
            .map_or(request.model.as_str(), |(base, _)| base);
        let listed = self.sealing_providers(refresh).await?;
        let model = if listed
            .data
            .iter()
            .any(|provider| provider.models.iter().any(|served| served == requested))
        {
            requested.to_owned()
        } else {
            match listed.aliases.get(requested) {
                Some(model) => model.clone(),
                None => requested.to_owned(),
            }
        };
        let chosen = targets(&listed.data, &model);
        if chosen.is_empty() {
            tracing::debug!(model = %model, "no provider of the model takes sealed requests");
            return Ok(None);
        }
        // What is paid covers every choice.
        let max_tokens = request
            .max_tokens
            .unwrap_or(DEFAULT_SEALED_MAX_TOKENS)
            .saturating_mul(request.n);
        Ok(Some(seal_chat(&chosen, &model, max_tokens, body).await?))
    }

    /// The providers that take sealed requests, and the other names of their models (none
    /// from a gateway that lists none).
    async fn sealing_providers(&self, refresh: bool) -> Result<SealingProviders, SendError> {
        let mut cached = self.providers.lock().await;
        if !refresh
            && let Some((fetched, listed)) = cached.as_ref()
            && fetched.elapsed() < PROVIDERS_TTL
        {
            return Ok(listed.clone());
        }
        let mut opened = self.send("GET", PROVIDERS_PATH, &[], &[]).await?;
        let unlisted = SealingProviders {
            object: "list".into(),
            data: Vec::new(),
            aliases: Default::default(),
        };
        let listed = if opened.status == 200 {
            let body = read_opened(&mut opened, MAX_PROVIDERS_BYTES).await?;
            serde_json::from_slice::<SealingProviders>(&body).unwrap_or(unlisted)
        } else {
            unlisted
        };
        *cached = Some((Instant::now(), listed.clone()));
        Ok(listed)
    }
}

/// Largest signed batch read: a length prefix and, per token, an option tag, a type and a
/// 256-byte signature.
const MAX_SIGNED_BATCH_BYTES: usize = 16 + crate::tokens::MAX_BATCH * (1 + 2 + 256);

/// An opened reply's body, read whole up to `limit` bytes.
async fn read_opened(opened: &mut OpenedStream, limit: usize) -> Result<Vec<u8>, SendError> {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    while let Some(piece) = opened.body.next().await {
        let piece = piece.map_err(|error| ClientError::Open(error.to_string()))?;
        if body.len() + piece.len() > limit {
            return Err(SendError::Tokens(format!(
                "the gateway's answer is over {limit} bytes"
            )));
        }
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

async fn refusal_text(response: reqwest::Response) -> String {
    match crate::read_bounded(response, MAX_REFUSAL_BYTES).await {
        Ok(text) => String::from_utf8_lossy(&text).into_owned(),
        Err(reason) => format!("(an unreadable refusal: {reason})"),
    }
}

/// The proxy's routes.
pub fn router(config: ProxyConfig) -> Result<Router, reqwest::Error> {
    let limit = config.max_body_bytes;
    let client = Arc::new(PrivateClient::new(config)?);
    // Whole paths, not nested routers: the path is passed on as it is.
    Ok(Router::new()
        .route("/v1/chat/completions", post(forward))
        .route("/api/v1/chat/completions", post(forward))
        .route("/v1/models", get(forward))
        .route("/api/v1/models", get(forward))
        .route("/v1/embeddings", post(forward))
        .route("/api/v1/embeddings", post(forward))
        .route("/v1/audio/speech", post(forward))
        .route("/api/v1/audio/speech", post(forward))
        .route("/v1/audio/transcriptions", post(forward))
        .route("/api/v1/audio/transcriptions", post(forward))
        .route("/v1/audio/voices", get(forward))
        .route("/api/v1/audio/voices", get(forward))
        .route("/v1/images/generations", post(forward))
        .route("/api/v1/images/generations", post(forward))
        .route("/v1/image/generate", post(forward))
        .route("/api/v1/image/generate", post(forward))
        .route("/v1/image/styles", get(forward))
        .route("/api/v1/image/styles", get(forward))
        .route("/v1/video/quote", post(forward))
        .route("/api/v1/video/quote", post(forward))
        .route("/v1/video/queue", post(forward))
        .route("/api/v1/video/queue", post(forward))
        .route("/v1/video/retrieve", post(forward))
        .route("/api/v1/video/retrieve", post(forward))
        .route("/v1/video/complete", post(forward))
        .route("/api/v1/video/complete", post(forward))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(not_carried)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(client))
}

fn dialect(uri: &Uri) -> Dialect {
    if uri.path().starts_with("/api/") {
        Dialect::Venice
    } else {
        Dialect::OpenAi
    }
}

fn error_response(error: &ApiError, dialect: Dialect) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        error.body(dialect),
    )
        .into_response()
}

/// Largest event passed on whole; a larger one goes on in pieces.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// A reply's events with the padding taken off: it has crossed the network, and local clients
/// get the stream exactly as the API sends it.
fn without_padding(
    body: futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    use futures_util::StreamExt;
    let splitter = EventSplitter::new(MAX_EVENT_BYTES);
    futures_util::stream::unfold(
        (body, Some(splitter)),
        |(mut body, mut splitter)| async move {
            let active = splitter.as_mut()?;
            match body.next().await {
                Some(Ok(bytes)) => {
                    let mut events = Vec::with_capacity(bytes.len());
                    for event in active.push(&bytes) {
                        events.extend_from_slice(strip_event_padding(&event));
                    }
                    Some((Ok(Bytes::from(events)), (body, splitter)))
                }
                Some(Err(error)) => Some((Err(error), (body, None))),
                None => {
                    let rest = splitter.take()?.finish().unwrap_or_default();
                    Some((Ok(Bytes::from(rest)), (body, None)))
                }
            }
        },
    )
    .filter(|item| std::future::ready(!matches!(item, Ok(bytes) if bytes.is_empty())))
}

async fn not_carried(uri: Uri) -> Response {
    error_response(
        &ApiError::new(
            ErrorCode::NotFound,
            "the private proxy carries the chat completions and model list APIs only",
        ),
        dialect(&uri),
    )
}

async fn forward(
    State(client): State<Arc<PrivateClient>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let dialect = dialect(&uri);
    let authorization = match &client.config.api_key {
        Some(key) => Some(format!("Bearer {key}")),
        None => headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
    };
    // Chat and Venice's image requests are sealed twice (to the provider inside, to the
    // gateway outside); embeddings, speech, transcription, OpenAI's image requests and video,
    // which no provider takes sealed, are sealed to the gateway.
    let sent = if method == Method::POST && uri.path().ends_with("/chat/completions") {
        client
            .send_chat(uri.path(), authorization.as_deref(), &body)
            .await
    } else if method == Method::POST && uri.path().ends_with("/image/generate") {
        client
            .send_images(uri.path(), authorization.as_deref(), &body)
            .await
    } else {
        // The client's own type: JSON, or a multipart upload's boundary.
        let content_type = (method == Method::POST).then(|| {
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("application/json")
        });
        client
            .send_paid(
                method.as_str(),
                uri.path(),
                authorization.as_deref(),
                content_type,
                &body,
            )
            .await
            .map(ChatReply::from_gateway)
    };
    let mut opened = match sent {
        Ok(opened) => opened,
        Err(error) => {
            tracing::warn!(error = %error, "a private request failed");
            let code = match error {
                SendError::Timeout(_) => ErrorCode::RequestTimeout,
                _ => ErrorCode::UpstreamError,
            };
            return error_response(&ApiError::new(code, error.to_string()), dialect);
        }
    };
    if let Some((provider, receipt)) = opened.sealed.take() {
        // The body ends in an error if the receipt fails, which breaks the local client's
        // connection; this says why.
        tokio::spawn(async move {
            match receipt.await {
                Ok(Ok(receipt)) => tracing::debug!(
                    provider = %provider,
                    completion_tokens = receipt.completion_tokens,
                    "the provider's receipt verified"
                ),
                Ok(Err(error)) => {
                    tracing::warn!(provider = %provider, error = %error, "a sealed reply failed its receipt");
                }
                Err(_) => {}
            }
        });
    }
    let status = StatusCode::from_u16(opened.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = Response::builder().status(status);
    for name in RETURNED_HEADERS {
        if let Some(value) = opened
            .header(name)
            .and_then(|value| HeaderValue::from_str(value).ok())
        {
            response = response.header(name, value);
        }
    }
    let is_stream = opened
        .header("content-type")
        .is_some_and(|value| value.starts_with("text/event-stream"));
    let body = if is_stream {
        Body::from_stream(without_padding(opened.body))
    } else {
        Body::from_stream(opened.body)
    };
    response.body(body).unwrap_or_else(|_| {
        error_response(
            &ApiError::new(
                ErrorCode::UpstreamError,
                "the gateway's reply was malformed",
            ),
            dialect,
        )
    })
}
