//! `gondola relay`: an Oblivious HTTP relay (RFC 9458, section 6.2), meant to be run by
//! someone other than the gateway's operator.
//!
//! It forwards sealed requests to one gateway and streams the sealed replies back, chunk by
//! chunk as they come. It holds no key and cannot read what it carries. Of the client's request
//! it passes on the body and its media type and nothing else: no address, no other header. It
//! logs a request id, sizes, status and latency; never an address.
//!
//! Browsers may use it from any page (CORS, without credentials): a web app in private mode
//! sends its sealed requests here from the gateway's origin. The page's origin is not passed on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode, header};
use tokio::sync::Semaphore;

use crate::{
    CHUNKED_REQUEST_MEDIA_TYPE, CHUNKED_RESPONSE_MEDIA_TYPE, GATEWAY_PATH, KEYS_MEDIA_TYPE,
    KEYS_PATH, MAX_KEYS_BYTES, REQUEST_MEDIA_TYPE, RESPONSE_MEDIA_TYPE,
};

/// How a relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The gateway's base URL; sealed requests go to its `/ohttp`.
    pub gateway: String,
    /// Largest sealed request accepted.
    pub max_request_bytes: usize,
    /// Requests carried at once; more are refused with 503.
    pub max_in_flight: usize,
    /// How long the gateway has to start answering (the headers of its reply).
    pub response_timeout: Duration,
    /// How long a streamed reply may go without a byte before it is cut.
    pub idle_timeout: Duration,
}

impl RelayConfig {
    pub fn new(gateway: impl Into<String>) -> Self {
        Self {
            gateway: gateway.into(),
            max_request_bytes: 8 * 1024 * 1024,
            max_in_flight: 1024,
            response_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

struct Relay {
    config: RelayConfig,
    gateway_url: String,
    keys_url: String,
    http: reqwest::Client,
    in_flight: Arc<Semaphore>,
}

/// The relay's routes: `POST /ohttp` and `GET /.well-known/ohttp-gateway`, forwarded.
pub fn router(config: RelayConfig) -> Result<Router, reqwest::Error> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(config.idle_timeout)
        .build()?;
    let base = config.gateway.trim_end_matches('/').to_owned();
    let relay = Arc::new(Relay {
        gateway_url: format!("{base}{GATEWAY_PATH}"),
        keys_url: format!("{base}{KEYS_PATH}"),
        in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
        http,
        config,
    });
    let limit = relay.config.max_request_bytes;
    Ok(Router::new()
        .route(
            GATEWAY_PATH,
            post(forward).layer(DefaultBodyLimit::max(limit)),
        )
        .route(KEYS_PATH, get(keys))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            plain(
                StatusCode::NOT_FOUND,
                "a relay carries POST /ohttp and GET /.well-known/ohttp-gateway only",
            )
        })
        .with_state(relay)
        .layer(cors()))
}

/// Any page may send sealed requests and fetch the key configuration; no cookie or
/// authorization travels (a sealed request carries its own inside the seal).
fn cors() -> tower_http::cors::CorsLayer {
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([http::Method::GET, http::Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
}

fn plain(status: StatusCode, message: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], message).into_response()
}

fn request_id() -> String {
    let mut bytes = [0u8; 8];
    rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `POST /ohttp`: the sealed request to the gateway, the sealed reply back as it streams.
async fn forward(State(relay): State<Arc<Relay>>, headers: HeaderMap, body: Bytes) -> Response {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let media_type = match media_type {
        Some(REQUEST_MEDIA_TYPE) => REQUEST_MEDIA_TYPE,
        Some(CHUNKED_REQUEST_MEDIA_TYPE) => CHUNKED_REQUEST_MEDIA_TYPE,
        _ => {
            return plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a relay carries message/ohttp-req and message/ohttp-chunked-req",
            );
        }
    };
    let Ok(permit) = Arc::clone(&relay.in_flight).try_acquire_owned() else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the relay is at capacity");
    };
    let id = request_id();
    let started = Instant::now();
    let request_bytes = body.len();
    let sent = relay
        .http
        .post(&relay.gateway_url)
        .header(header::CONTENT_TYPE, media_type)
        .body(body)
        .send();
    let response = match tokio::time::timeout(relay.config.response_timeout, sent).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            tracing::warn!(request_id = %id, error = %error.without_url(), "the gateway could not be reached");
            return plain(StatusCode::BAD_GATEWAY, "the gateway could not be reached");
        }
        Err(_) => {
            tracing::warn!(request_id = %id, "the gateway did not answer in time");
            return plain(
                StatusCode::GATEWAY_TIMEOUT,
                "the gateway did not answer in time",
            );
        }
    };
    let status = response.status();
    // The reply's media type passes if it is one a gateway sends; nothing else of its headers.
    let reply_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .filter(|value| {
            [
                RESPONSE_MEDIA_TYPE,
                CHUNKED_RESPONSE_MEDIA_TYPE,
                "text/plain",
            ]
            .contains(value)
        })
        .unwrap_or("application/octet-stream")
        .to_owned();
    tracing::info!(
        request_id = %id,
        request_bytes,
        status = status.as_u16(),
        first_byte_ms = started.elapsed().as_millis() as u64,
        "relayed"
    );
    // The permit travels with the body, so a long stream counts as in flight until it ends.
    let body = response.bytes_stream().map(move |chunk| {
        let _held = &permit;
        chunk
    });
    (
        status,
        [
            (header::CONTENT_TYPE, reply_type),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// `GET /.well-known/ohttp-gateway`: the gateway's key configuration, so that a client can
/// fetch it without showing the gateway its address.
async fn keys(State(relay): State<Arc<Relay>>) -> Response {
    let fetched = async {
        let response = relay.http.get(&relay.keys_url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = crate::read_bounded(response, MAX_KEYS_BYTES).await.ok()?;
        Some(body)
    };
    match tokio::time::timeout(relay.config.response_timeout, fetched).await {
        Ok(Some(body)) => (
            [
                (header::CONTENT_TYPE, KEYS_MEDIA_TYPE),
                (header::CACHE_CONTROL, "max-age=3600"),
            ],
            body,
        )
            .into_response(),
        _ => plain(
            StatusCode::BAD_GATEWAY,
            "the gateway's key configuration could not be fetched",
        ),
    }
}
