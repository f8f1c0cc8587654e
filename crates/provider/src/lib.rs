//! A Gondola provider node: an independent machine that serves inference to a gateway.
//!
//! It owns its identity ([`identity`]), keeps a lease with its gateway ([`lease`]), and serves
//! one model: chat completions, embeddings, speech, transcription, images or video, from the embedded llama.cpp engine or any
//! OpenAI-compatible engine (vLLM, llama.cpp's server, Ollama, SGLang) behind it, or an image
//! engine (AUTOMATIC1111 or Forge, ComfyUI, an OpenAI-compatible images server). It serves its gateway only: every
//! request must carry the lease's secret. It never logs request content.

mod embedded;
mod embeddings;
pub mod identity;
pub mod images;
pub mod lease;
mod sealed;
mod speech;
mod transcription;
mod video;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use engine::{Embedder, Engine, SubmitError};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{RwLock, Semaphore, oneshot, watch};
use wire::chat::ProviderChatRequest;
use wire::error::{ApiError, Dialect, ErrorCode};
use wire::models::ModelType;
use wire::provider::{
    ModelAdvert, PROVIDER_BACKGROUND_REMOVAL_PATH, PROVIDER_CHAT_PATH, PROVIDER_EMBEDDINGS_PATH,
    PROVIDER_IMAGE_EDIT_PATH, PROVIDER_IMAGES_PATH, PROVIDER_SEALED_CHAT_PATH,
    PROVIDER_SPEECH_PATH, PROVIDER_TRANSCRIPTION_PATH, PROVIDER_UPSCALE_PATH,
    PROVIDER_VIDEO_JOBS_PATH, PROVIDER_VIDEO_QUEUE_PATH, ProviderLoad, RegistrationAccepted,
};

use crate::lease::{LeaseTerms, LeaseToken, LoadSource};

/// Largest request body from the gateway (it enforces its own, smaller, limit first).
const MAX_REQUEST_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Time to connect to an upstream engine.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for any single read from an upstream engine (queueing included).
const UPSTREAM_READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Most of an upstream's error body that is read.
const MAX_UPSTREAM_ERROR_BYTES: usize = 64 * 1024;

/// Where the provider's answers come from.
pub enum Backend {
    /// llama.cpp inside this process.
    Embedded {
        engine: Arc<Engine>,
        model_id: String,
    },
    /// An embedding model run by llama.cpp inside this process.
    EmbeddedEmbeddings {
        embedder: Arc<Embedder>,
        model_id: String,
    },
    /// A voice run by ONNX Runtime inside this process.
    EmbeddedSpeech {
        voice: Arc<voice::Voice>,
        model_id: String,
    },
    /// A Whisper model run by CTranslate2 inside this process.
    EmbeddedTranscription {
        listener: Arc<transcribe::Listener>,
        model_id: String,
    },
    /// A background remover (U²-Net) run by ONNX Runtime inside this process.
    EmbeddedBackgroundRemoval {
        remover: Arc<vision::BackgroundRemover>,
        model_id: String,
    },
    /// An upscaler (Real-ESRGAN) run by ONNX Runtime inside this process.
    EmbeddedUpscaler {
        upscaler: Arc<vision::Upscaler>,
        model_id: String,
    },
    /// Another engine: an OpenAI-compatible server, e.g. `http://127.0.0.1:8000/v1` for
    /// vLLM, or one with an API of its own (`api`).
    Upstream {
        api: UpstreamApi,
        base_url: String,
        upstream_model: String,
        model_id: String,
        api_key: Option<String>,
        /// What the engine's model serves: chat completions or embeddings.
        model_type: ModelType,
        context_tokens: u32,
        /// Kinds of input beside text the engine takes (`image`, `audio`, `video`, `file`), as
        /// its operator says: passed to it as sent.
        input_media: Vec<String>,
        /// An image model's sizes and steps (used when `model_type` is `Image`).
        image_limits: wire::images::ImageLimits,
        /// A video model's durations and resolutions (used when `model_type` is `Video`).
        video_limits: Box<wire::video::VideoLimits>,
    },
}

/// The API an upstream engine speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamApi {
    /// OpenAI's: `/chat/completions`, `/embeddings`, `/audio/speech`, `/audio/transcriptions`.
    OpenAi,
    /// Piper's HTTP server (`python -m piper.http_server`): `POST /synthesize` answers WAV;
    /// speech only. Other formats are encoded here by FFmpeg.
    Piper { ffmpeg: std::path::PathBuf },
    /// AUTOMATIC1111's Stable Diffusion web UI, or a fork with its API such as Forge
    /// (`/sdapi/v1/txt2img`); images only.
    Automatic1111,
    /// ComfyUI (`/prompt`, `/history`, `/view`), running `workflow` (its API format, with
    /// placeholders; [`images::COMFYUI_TXT2IMG_WORKFLOW`] by default); images only.
    ComfyUi { workflow: serde_json::Value },
}

impl Backend {
    fn advert(&self) -> ModelAdvert {
        match self {
            Self::Embedded { engine, model_id } => {
                let info = engine.info();
                ModelAdvert {
                    model_type: ModelType::Text,
                    id: model_id.clone(),
                    name: info.name.clone(),
                    context_tokens: info.context_tokens,
                    quantization: info.quantization.clone(),
                    parameters: info.parameters,
                    supports_response_schema: true,
                    supports_reasoning: info.supports_reasoning,
                    supports_function_calling: true,
                    supports_logprobs: true,
                    // The embedded engine reads text only.
                    input_media: Vec::new(),
                    backend: "embedded".into(),
                    voices: Vec::new(),
                    image: None,
                    video: None,
                }
            }
            Self::EmbeddedEmbeddings { embedder, model_id } => {
                let info = embedder.info();
                ModelAdvert {
                    model_type: ModelType::Embedding,
                    id: model_id.clone(),
                    name: info.name.clone(),
                    context_tokens: info.max_input_tokens,
                    quantization: "F32".into(),
                    parameters: info.parameters,
                    supports_response_schema: false,
                    supports_reasoning: false,
                    supports_function_calling: false,
                    supports_logprobs: false,
                    input_media: Vec::new(),
                    backend: "embedded".into(),
                    voices: Vec::new(),
                    image: None,
                    video: None,
                }
            }
            Self::EmbeddedSpeech { voice, model_id } => ModelAdvert {
                model_type: ModelType::Tts,
                id: model_id.clone(),
                name: format!("Piper {} ({})", voice.info().name, voice.info().language),
                context_tokens: 0,
                quantization: "F32".into(),
                parameters: 0,
                supports_response_schema: false,
                supports_reasoning: false,
                supports_function_calling: false,
                supports_logprobs: false,
                input_media: Vec::new(),
                backend: "embedded".into(),
                voices: vec![voice.info().name.clone()],
                image: None,
                video: None,
            },
            Self::EmbeddedTranscription { model_id, .. } => ModelAdvert {
                model_type: ModelType::Asr,
                id: model_id.clone(),
                name: "Whisper tiny.en".into(),
                context_tokens: 0,
                quantization: "F16".into(),
                parameters: 39_000_000,
                supports_response_schema: false,
                supports_reasoning: false,
                supports_function_calling: false,
                supports_logprobs: false,
                input_media: vec!["audio".into()],
                backend: "embedded".into(),
                voices: Vec::new(),
                image: None,
                video: None,
            },
            Self::EmbeddedBackgroundRemoval { remover, model_id } => image_tool_advert(
                ModelType::BackgroundRemoval,
                model_id,
                format!("U²-Net ({})", remover.name()),
                "F32",
                1_131_000,
            ),
            Self::EmbeddedUpscaler { upscaler, model_id } => image_tool_advert(
                ModelType::Upscale,
                model_id,
                format!("Real-ESRGAN ({})", upscaler.name()),
                "F16",
                620_000,
            ),
            Self::Upstream {
                api,
                upstream_model,
                model_id,
                model_type,
                context_tokens,
                input_media,
                image_limits,
                video_limits,
                ..
            } => ModelAdvert {
                model_type: *model_type,
                id: model_id.clone(),
                name: upstream_model.clone(),
                // Image and video models read no context of tokens.
                context_tokens: if matches!(
                    model_type,
                    ModelType::Image | ModelType::Video | ModelType::Upscale
                ) {
                    0
                } else {
                    *context_tokens
                },
                quantization: "unknown".into(),
                parameters: 0,
                supports_response_schema: *model_type == ModelType::Text,
                supports_reasoning: false,
                // Tools are passed through; an engine that has none answers with its own error.
                supports_function_calling: *model_type == ModelType::Text,
                supports_logprobs: *model_type == ModelType::Text,
                input_media: input_media.clone(),
                backend: "upstream".into(),
                // Piper's server is started with its voice; an OpenAI-compatible engine's
                // voices are its own to list.
                voices: match api {
                    UpstreamApi::Piper { .. } => vec![upstream_model.clone()],
                    UpstreamApi::OpenAi
                    | UpstreamApi::Automatic1111
                    | UpstreamApi::ComfyUi { .. } => Vec::new(),
                },
                image: (*model_type == ModelType::Image).then_some(*image_limits),
                video: (*model_type == ModelType::Video).then(|| video_limits.as_ref().clone()),
            },
        }
    }

    fn model_id(&self) -> &str {
        match self {
            Self::Embedded { model_id, .. }
            | Self::EmbeddedEmbeddings { model_id, .. }
            | Self::EmbeddedSpeech { model_id, .. }
            | Self::EmbeddedTranscription { model_id, .. }
            | Self::EmbeddedBackgroundRemoval { model_id, .. }
            | Self::EmbeddedUpscaler { model_id, .. }
            | Self::Upstream { model_id, .. } => model_id,
        }
    }
}

/// What an embedded model that takes an image and gives one back (a background remover, an
/// upscaler) advertises.
fn image_tool_advert(
    model_type: ModelType,
    model_id: &str,
    name: String,
    quantization: &str,
    parameters: u64,
) -> ModelAdvert {
    ModelAdvert {
        model_type,
        id: model_id.to_owned(),
        name,
        context_tokens: 0,
        quantization: quantization.into(),
        parameters,
        supports_response_schema: false,
        supports_reasoning: false,
        supports_function_calling: false,
        supports_logprobs: false,
        input_media: vec!["image".into()],
        backend: "embedded".into(),
        voices: Vec::new(),
        image: None,
        video: None,
    }
}

pub struct ProviderConfig {
    /// The gateways to register with, e.g. `http://127.0.0.1:8844`: one, or every replica of
    /// a service (a lease is kept with each, and requests are taken from all of them).
    pub gateway_urls: Vec<String>,
    /// Where the gateway reaches this provider; defaults to `http://` + the bound address.
    pub advertise_url: Option<String>,
    /// Holds the provider's key.
    pub data_dir: PathBuf,
    /// Requests served at once (beyond this: 503, and the gateway tries another provider).
    pub max_in_flight: u32,
    /// Also publish an X-Wing (post-quantum hybrid) sealing key, listed before the X25519 one.
    pub x_wing: bool,
}

struct AppState {
    backend: Backend,
    /// Opens sealed requests; its public half is published with the registration.
    sealing: privacy::sealed::ProviderKeys,
    /// Signs receipts (the identity key).
    identity: ed25519_dalek::SigningKey,
    token: LeaseToken,
    in_flight: Arc<Semaphore>,
    max_in_flight: u32,
    /// Client for the upstream engine, one per serving thread (see [`server::PerThread`]).
    http: server::PerThread<reqwest::Client>,
    /// A video model's jobs, in the data directory.
    jobs: Option<video::Jobs>,
}

struct Load {
    state: Arc<AppState>,
    last: std::sync::Mutex<(Instant, u64)>,
}

impl LoadSource for Load {
    fn load(&self) -> ProviderLoad {
        let in_flight = self.state.max_in_flight.saturating_sub(
            u32::try_from(self.state.in_flight.available_permits()).unwrap_or(u32::MAX),
        );
        let (queue_depth, generated) = match &self.state.backend {
            Backend::Embedded { engine, .. } => {
                let figures = engine.load_figures();
                (
                    u32::try_from(figures.queued).unwrap_or(u32::MAX),
                    figures.generated_tokens_total,
                )
            }
            Backend::EmbeddedEmbeddings { embedder, .. } => {
                (u32::try_from(embedder.waiting()).unwrap_or(u32::MAX), 0)
            }
            Backend::EmbeddedSpeech { .. }
            | Backend::EmbeddedTranscription { .. }
            | Backend::EmbeddedBackgroundRemoval { .. }
            | Backend::EmbeddedUpscaler { .. } => (0, 0),
            // Upstream engines report no token counts to the provider; their rate shows as 0.
            Backend::Upstream { .. } => (0, 0),
        };
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed_ms = u64::try_from(last.0.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let rate_milli = generated.saturating_sub(last.1).saturating_mul(1_000_000) / elapsed_ms;
        *last = (Instant::now(), generated);
        ProviderLoad {
            in_flight,
            queue_depth,
            recent_tokens_per_second_milli: rate_milli,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot derive the sealing key: {0}")]
    Sealing(String),
}

/// Serves the provider on `listener` and keeps its lease with the gateway until `shutdown`.
/// `ready` receives the lease once the gateway has accepted the provider.
pub async fn run(
    listener: TcpListener,
    config: ProviderConfig,
    backend: Backend,
    ready: Option<oneshot::Sender<RegistrationAccepted>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ProviderError> {
    server::install_crypto_provider();
    let key = identity::load_or_create(&config.data_dir)?;
    let sealing = privacy::sealed::ProviderKeys::derive(&key.to_bytes(), config.x_wing)
        .map_err(|error| ProviderError::Sealing(error.to_string()))?;
    let sealing_keys = Some(sealing.encoded_base64());
    let address: SocketAddr = listener.local_addr()?;
    let endpoint = config
        .advertise_url
        .clone()
        .unwrap_or_else(|| format!("http://{address}"));
    let http = server::http_clients(server::HttpClientSettings {
        connect_timeout: UPSTREAM_CONNECT_TIMEOUT,
        read_timeout: Some(UPSTREAM_READ_TIMEOUT),
        max_idle_per_host: None,
    })?;
    let max_in_flight = config.max_in_flight.max(1);
    let jobs = match &backend {
        Backend::Upstream {
            model_type: ModelType::Video,
            ..
        } => Some(video::Jobs::open(config.data_dir.join("video-jobs"))?),
        _ => None,
    };
    let state = Arc::new(AppState {
        jobs,
        backend,
        sealing,
        identity: key.clone(),
        token: Arc::new(RwLock::new(vec![None; config.gateway_urls.len()])),
        in_flight: Arc::new(Semaphore::new(usize::try_from(max_in_flight).unwrap_or(1))),
        max_in_flight,
        http,
    });
    let load: Arc<dyn LoadSource> = Arc::new(Load {
        state: Arc::clone(&state),
        last: std::sync::Mutex::new((Instant::now(), 0)),
    });
    let (stop_lease, lease_shutdown) = watch::channel(false);
    // One lease per gateway; `ready` is told of the first registration.
    let mut ready = ready;
    let lease_tasks: Vec<_> = config
        .gateway_urls
        .iter()
        .enumerate()
        .map(|(slot, gateway_url)| {
            let terms = LeaseTerms {
                gateway_url: gateway_url.clone(),
                endpoint: endpoint.clone(),
                models: vec![state.backend.advert()],
                max_in_flight,
                sealing_keys: sealing_keys.clone(),
            };
            tokio::spawn(lease::maintain(
                key.clone(),
                terms,
                lease::Slot {
                    tokens: Arc::clone(&state.token),
                    index: slot,
                },
                Arc::clone(&load),
                ready.take(),
                lease_shutdown.clone(),
            ))
        })
        .collect();
    let sweeper = tokio::spawn(video::sweep(Arc::clone(&state)));
    let app = Router::new()
        .route(PROVIDER_CHAT_PATH, post(chat))
        .route(PROVIDER_SEALED_CHAT_PATH, post(sealed::chat))
        .route(PROVIDER_EMBEDDINGS_PATH, post(embeddings::embeddings))
        .route(PROVIDER_SPEECH_PATH, post(speech::speech))
        .route(PROVIDER_IMAGES_PATH, post(images::images))
        .route(
            PROVIDER_BACKGROUND_REMOVAL_PATH,
            post(images::remove_background)
                .layer(DefaultBodyLimit::max(images::MAX_UPLOAD_BODY_BYTES)),
        )
        .route(
            PROVIDER_IMAGE_EDIT_PATH,
            post(images::edit).layer(DefaultBodyLimit::max(images::MAX_UPLOAD_BODY_BYTES)),
        )
        .route(
            PROVIDER_UPSCALE_PATH,
            post(images::upscale).layer(DefaultBodyLimit::max(images::MAX_UPLOAD_BODY_BYTES)),
        )
        .route(PROVIDER_VIDEO_QUEUE_PATH, post(video::queue))
        .route(
            &format!("{PROVIDER_VIDEO_JOBS_PATH}/{{id}}"),
            get(video::status).delete(video::remove),
        )
        .route(
            &format!("{PROVIDER_VIDEO_JOBS_PATH}/{{id}}/content"),
            get(video::content),
        )
        .route(
            PROVIDER_TRANSCRIPTION_PATH,
            post(transcription::transcriptions)
                .layer(DefaultBodyLimit::max(transcription::MAX_BODY_BYTES)),
        )
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .with_state(state);
    let served = server::serve(
        listener,
        app,
        None,
        server::ServeLimits::default(),
        shutdown,
    )
    .await;
    let _ = stop_lease.send(true);
    for lease_task in lease_tasks {
        let _ = lease_task.await;
    }
    sweeper.abort();
    served.map_err(ProviderError::from)
}

fn error_response(error: &ApiError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        error.body(Dialect::OpenAi),
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

/// Whether a request carries the current lease's secret; the error to answer otherwise.
pub(crate) async fn check_lease(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Every lease's secret is compared, so the time taken says nothing of which matched.
    let authorized = state
        .token
        .read()
        .await
        .iter()
        .flatten()
        .fold(false, |matched, token| {
            matched | bool::from(token.as_bytes().ct_eq(presented.as_bytes()))
        });
    if authorized {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::AuthenticationFailed,
            "this provider serves its gateways only",
        ))
    }
}

/// The backend's streamed answer to `request`, or why it could not start.
async fn generate(
    state: &AppState,
    request: ProviderChatRequest,
    request_id: String,
) -> Result<Response, ApiError> {
    match &state.backend {
        Backend::Embedded { engine, model_id } => {
            embedded::generate(engine, model_id, request, request_id).await
        }
        Backend::EmbeddedEmbeddings { model_id, .. }
        | Backend::EmbeddedSpeech { model_id, .. }
        | Backend::EmbeddedTranscription { model_id, .. }
        | Backend::EmbeddedBackgroundRemoval { model_id, .. }
        | Backend::EmbeddedUpscaler { model_id, .. }
        | Backend::Upstream {
            model_type:
                ModelType::Embedding
                | ModelType::Tts
                | ModelType::Asr
                | ModelType::Image
                | ModelType::Video
                | ModelType::BackgroundRemoval
                | ModelType::Upscale,
            model_id,
            ..
        } => Err(ApiError::invalid(
            "model",
            format!("{model_id} does not serve chat completions"),
        )),
        Backend::Upstream {
            base_url,
            upstream_model,
            api_key,
            ..
        } => {
            upstream(
                state.http.get(),
                base_url,
                upstream_model,
                api_key.as_deref(),
                request,
            )
            .await
        }
    }
}

/// The head every operation shares: the gateway's lease checked, the body read as `T`, the
/// model it names (`model`) checked against this provider's, and a place among the requests
/// in flight taken. An error is the answer to send.
pub(crate) async fn accept<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
    model: impl FnOnce(&T) -> &str,
) -> Result<(tokio::sync::OwnedSemaphorePermit, T), Response> {
    check_lease(state, headers)
        .await
        .map_err(|error| error_response(&error))?;
    let request: T = serde_json::from_slice(body).map_err(|error| {
        error_response(&ApiError::new(
            ErrorCode::InvalidRequest,
            format!("not {what}: {error}"),
        ))
    })?;
    if model(&request) != state.backend.model_id() {
        return Err(error_response(&ApiError::new(
            ErrorCode::ModelNotFound,
            format!("this provider serves {}", state.backend.model_id()),
        )));
    }
    let permit = Arc::clone(&state.in_flight)
        .try_acquire_owned()
        .map_err(|_| {
            error_response(
                &ApiError::new(ErrorCode::ModelAtCapacity, "this provider is at capacity")
                    .with_retry_after(1),
            )
        })?;
    Ok((permit, request))
}

/// `response` with `permit` held until its body ends or the gateway hangs up.
pub(crate) fn holding(
    permit: tokio::sync::OwnedSemaphorePermit,
    mut response: Response,
) -> Response {
    let body = std::mem::take(response.body_mut());
    let stream = body.into_data_stream().map(move |item| {
        let _held = &permit;
        item
    });
    *response.body_mut() = Body::from_stream(stream);
    response
}

async fn chat(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (permit, request) =
        match accept::<ProviderChatRequest>(&state, &headers, &body, "a chat request", |request| {
            &request.model
        })
        .await
        {
            Ok(accepted) => accepted,
            Err(response) => return response,
        };
    let request_id = headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("unknown")
        .to_owned();
    match generate(&state, request, request_id).await {
        Ok(response) => holding(permit, response),
        Err(error) => error_response(&error),
    }
}

pub(crate) fn sse_frame<T: serde::Serialize>(value: &T) -> Bytes {
    let mut frame = b"data: ".to_vec();
    let _ = serde_json::to_writer(&mut frame, value);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

pub(crate) fn submit_error(error: SubmitError) -> ApiError {
    match error {
        SubmitError::AtCapacity { .. } => {
            ApiError::new(ErrorCode::ModelAtCapacity, error.to_string()).with_retry_after(1)
        }
        SubmitError::PromptTooLong { .. } => {
            ApiError::new(ErrorCode::TooManyTokens, error.to_string()).with_param("messages")
        }
        SubmitError::Template(_) => {
            ApiError::new(ErrorCode::InvalidRequest, error.to_string()).with_param("messages")
        }
        SubmitError::Schema(_) => ApiError::new(ErrorCode::InvalidRequest, error.to_string())
            .with_param("response_format"),
        SubmitError::Tools(_) => {
            ApiError::new(ErrorCode::InvalidRequest, error.to_string()).with_param("tools")
        }
        SubmitError::Stopped => ApiError::new(ErrorCode::ModelOffline, error.to_string()),
    }
}

pub(crate) fn sse_response(
    frames: impl futures_util::Stream<Item = Bytes> + Send + 'static,
) -> Response {
    let body = Body::from_stream(frames.map(Ok::<Bytes, std::convert::Infallible>));
    let mut response = Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    response
}

/// Sends `call` to the upstream engine and reads its whole answer, at most `max_bytes`: its
/// status and body. What fails on the way is an upstream error.
pub(crate) async fn call_upstream(
    call: reqwest::RequestBuilder,
    max_bytes: usize,
) -> Result<(u16, Vec<u8>), ApiError> {
    use futures_util::StreamExt as _;
    let response = call.send().await.map_err(|error| {
        let what = if error.is_connect() {
            "could not be reached"
        } else {
            "failed"
        };
        ApiError::new(
            ErrorCode::UpstreamError,
            format!("the upstream engine {what}"),
        )
    })?;
    let status = response.status().as_u16();
    let mut reply = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::new(
                ErrorCode::UpstreamError,
                "the upstream engine's answer broke off",
            )
        })?;
        if reply.len() + chunk.len() > max_bytes {
            return Err(ApiError::new(
                ErrorCode::UpstreamError,
                "the upstream engine's answer is too large",
            ));
        }
        reply.extend_from_slice(&chunk);
    }
    Ok((status, reply))
}

/// An upstream engine's error answer (`status`, `body`) as this provider's: its message kept,
/// its status saying whether the gateway should try elsewhere.
pub(crate) fn upstream_error(status: u16, body: &[u8]) -> ApiError {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| {
            let error = value.get("error")?;
            error
                .get("message")
                .or(Some(error))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("the upstream engine answered {status}"));
    match status {
        429 | 503 => ApiError::new(ErrorCode::ModelAtCapacity, message).with_retry_after(1),
        400..=499 => ApiError::new(ErrorCode::InvalidRequest, message),
        _ => ApiError::new(ErrorCode::UpstreamError, message),
    }
}

async fn upstream(
    http: &reqwest::Client,
    base_url: &str,
    upstream_model: &str,
    api_key: Option<&str>,
    mut request: ProviderChatRequest,
) -> Result<Response, ApiError> {
    request.model = upstream_model.to_owned();
    request.stream = true;
    // The namespace is for the embedded engine's cache; an engine's own API has no such field.
    request.cache_namespace = None;
    let mut call = http
        .post(format!(
            "{}/chat/completions",
            base_url.trim_end_matches('/')
        ))
        .json(&request);
    if let Some(key) = api_key {
        call = call.bearer_auth(key);
    }
    let response = call.send().await.map_err(|error| {
        let what = if error.is_connect() {
            "could not be reached"
        } else {
            "failed"
        };
        ApiError::new(
            ErrorCode::UpstreamError,
            format!("the upstream engine {what}"),
        )
    })?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_UPSTREAM_ERROR_BYTES {
                break;
            }
        }
        return Err(upstream_error(status, &body));
    }
    // Relayed as it comes: the gateway parses, checks and re-frames every event.
    let frames = response
        .bytes_stream()
        .take_while(|item| std::future::ready(item.is_ok()))
        .filter_map(|item| std::future::ready(item.ok()));
    Ok(sse_response(frames))
}
