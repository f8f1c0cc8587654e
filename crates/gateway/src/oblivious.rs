//! Oblivious HTTP (RFC 9458) at the gateway. A client encrypts a whole Binary HTTP (RFC 9292)
//! request to the gateway's key and sends it through a relay; the relay sees the client's
//! address and an opaque body, the gateway sees the request but not who sent it.
//!
//! - `GET /.well-known/ohttp-gateway`: the key configuration list (RFC 9540,
//!   `application/ohttp-keys`). The keys are derived from a 32-byte seed kept in the data
//!   directory, so restarts and replicas sharing the seed publish the same keys: X25519, and
//!   with post-quantum sealing on (`gateway.x_wing`) an X-Wing key listed before it.
//! - `POST /ohttp` (`message/ohttp-req`): decapsulates, checks the inner request against the
//!   short list of API routes it may reach, runs it through the gateway's own router (same
//!   authentication, metering and limits as any request, minus a client address, which the
//!   inner request never has), and encapsulates the response (`message/ohttp-res`).
//!
//! The same endpoint takes chunked requests (`message/ohttp-chunked-req`) and answers them in
//! chunked form (`message/ohttp-chunked-res`): the reply is an indeterminate-length Binary HTTP
//! response sealed piece by piece, one chunk for its head and one per server-sent event, each
//! padded to a size bucket, so a stream reaches the client token by token. A whole-message
//! request gets a whole-message reply, read in full (bounded) and padded to a bucket.

use std::io::Cursor;
use std::path::Path;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bhttp::{Message, Mode, StatusCode as BhttpStatus};
use http::{HeaderValue, StatusCode, header};
use tower::ServiceExt;

use privacy::keys::KeySet;
pub use privacy::{
    CHUNKED_REQUEST_MEDIA_TYPE, CHUNKED_RESPONSE_MEDIA_TYPE, GATEWAY_PATH, KEYS_MEDIA_TYPE,
    KEYS_PATH, REQUEST_MEDIA_TYPE, RESPONSE_MEDIA_TYPE,
};
use privacy::{RETURNED_HEADERS, framing};

/// The one key's identifier in the configuration (clients name it in every request).
const KEY_ID: u8 = 1;
/// Bytes of seed the key is derived from.
pub const SEED_BYTES: usize = 32;
/// Headers of the inner request that reach the API; everything else is dropped.
const FORWARDED_HEADERS: [&str; 2] = ["authorization", "content-type"];

/// Why the gateway's oblivious key could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read or create the OHTTP seed {path}: {error}")]
    Seed {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("the OHTTP seed {0} is not {SEED_BYTES} bytes")]
    SeedLength(std::path::PathBuf),
    #[error("cannot build the OHTTP key: {0}")]
    Key(#[from] ohttp::Error),
}

/// The gateway's OHTTP keys and their published configuration.
pub struct ObliviousGateway {
    keys: KeySet,
}

impl ObliviousGateway {
    /// The keys derived from `seed` (X25519 and, with `post_quantum`, X-Wing listed first;
    /// HKDF-SHA256, AES-128-GCM or ChaCha20-Poly1305).
    pub fn from_seed(seed: &[u8; SEED_BYTES], post_quantum: bool) -> Result<Self, SetupError> {
        Ok(Self {
            keys: KeySet::derive(KEY_ID, seed, post_quantum)?,
        })
    }

    /// Reads the seed at `path`, or creates it (random, mode 0600) when there is none.
    pub fn from_seed_file(path: &Path, post_quantum: bool) -> Result<Self, SetupError> {
        let seed = read_or_create_seed(path).map_err(|error| SetupError::Seed {
            path: path.to_owned(),
            error,
        })?;
        let seed: [u8; SEED_BYTES] = seed
            .try_into()
            .map_err(|_| SetupError::SeedLength(path.to_owned()))?;
        Self::from_seed(&seed, post_quantum)
    }

    /// The `application/ohttp-keys` body.
    pub fn encoded_keys(&self) -> &[u8] {
        self.keys.encoded()
    }
}

/// The seed at `path`, created (random, mode 0600) on first start.
pub(crate) fn read_or_create_seed(path: &Path) -> std::io::Result<Vec<u8>> {
    keyfile::read_or_create(path, || {
        let mut seed = vec![0u8; SEED_BYTES];
        rand::fill(seed.as_mut_slice());
        seed
    })
}

/// `GET /.well-known/ohttp-gateway`.
pub(crate) fn keys_response(gateway: &ObliviousGateway) -> Response {
    (
        [
            (header::CONTENT_TYPE, KEYS_MEDIA_TYPE),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        gateway.encoded_keys().to_vec(),
    )
        .into_response()
}

/// A failure before there is anything to encapsulate: answered in the clear, saying only what
/// was wrong with the envelope.
fn plain_error(status: StatusCode, message: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], message).into_response()
}

/// `POST /ohttp`: one encapsulated request through `inner` (the gateway's API router), whole
/// or chunked as the request's media type says.
pub async fn handle(
    gateway: &ObliviousGateway,
    inner: axum::Router,
    content_type: Option<&HeaderValue>,
    body: bytes::Bytes,
    max_response_bytes: usize,
) -> Response {
    match content_type.and_then(|value| value.to_str().ok()) {
        Some(REQUEST_MEDIA_TYPE) => handle_whole(gateway, inner, &body, max_response_bytes).await,
        Some(CHUNKED_REQUEST_MEDIA_TYPE) => {
            handle_chunked(gateway, inner, &body, max_response_bytes).await
        }
        _ => plain_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "an oblivious request is message/ohttp-req or message/ohttp-chunked-req",
        ),
    }
}

const UNDECRYPTABLE: &str = "the request could not be decrypted with this gateway's key";

/// Runs a decrypted request through the API, or refuses it.
async fn run_inner(inner: axum::Router, plaintext: &[u8]) -> Response {
    match inner_request(plaintext) {
        Ok(request) => match inner.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        Err(message) => plain_error(StatusCode::BAD_REQUEST, message),
    }
}

async fn handle_whole(
    gateway: &ObliviousGateway,
    inner: axum::Router,
    body: &[u8],
    max_response_bytes: usize,
) -> Response {
    let Some(Ok((plaintext, responder))) = gateway
        .keys
        .server_for(body)
        .map(|server| server.decapsulate(body))
    else {
        return plain_error(StatusCode::BAD_REQUEST, UNDECRYPTABLE);
    };
    let inner_response = run_inner(inner, &plaintext).await;
    let message = match to_bhttp_response(inner_response, max_response_bytes).await {
        Ok(message) => message,
        Err(problem) => {
            let Ok(status) = BhttpStatus::try_from(502u16) else {
                return plain_error(StatusCode::INTERNAL_SERVER_ERROR, problem);
            };
            let mut response = Message::response(status);
            response.put_header("content-type", "text/plain");
            response.write_content(problem);
            response
        }
    };
    let mut encoded = Vec::new();
    if message
        .write_bhttp(Mode::KnownLength, &mut encoded)
        .is_err()
    {
        return plain_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the response",
        );
    }
    framing::pad_message(&mut encoded);
    match responder.encapsulate(&encoded) {
        Ok(sealed) => ([(header::CONTENT_TYPE, RESPONSE_MEDIA_TYPE)], sealed).into_response(),
        Err(_) => plain_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encrypt the response",
        ),
    }
}

/// Bytes of sealed reply buffered between the sealing task and the connection.
const SEALED_BUFFER_BYTES: usize = 64 * 1024;
/// Largest server-sent event sealed as one piece; a larger one is passed on in pieces.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

async fn handle_chunked(
    gateway: &ObliviousGateway,
    inner: axum::Router,
    body: &[u8],
    max_response_bytes: usize,
) -> Response {
    use futures_util::AsyncReadExt;
    use tokio_util::compat::TokioAsyncWriteCompatExt;

    // The request is already whole (the body limit bounds it), and what decrypts from it is
    // no larger.
    let Some(server) = gateway.keys.server_for(body) else {
        return plain_error(StatusCode::BAD_REQUEST, UNDECRYPTABLE);
    };
    let mut request = server.decapsulate_stream(body);
    let mut plaintext = Vec::new();
    if request.read_to_end(&mut plaintext).await.is_err() {
        return plain_error(StatusCode::BAD_REQUEST, UNDECRYPTABLE);
    }
    let (sink, source) = tokio::io::duplex(SEALED_BUFFER_BYTES);
    let Ok(sealed) = request.response(sink.compat_write()) else {
        return plain_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encrypt the response",
        );
    };
    drop(request);
    tokio::spawn(async move {
        let response = run_inner(inner, &plaintext).await;
        // A failure here is the client going away or the API's stream breaking; the client
        // sees a reply that ends without its final chunk either way.
        if let Err(error) = seal_stream(response, sealed, max_response_bytes).await {
            tracing::debug!(%error, "a chunked oblivious reply ended early");
        }
    });
    (
        [
            (header::CONTENT_TYPE, CHUNKED_RESPONSE_MEDIA_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(source)),
    )
        .into_response()
}

/// Writes `response` into `sealed` as an indeterminate-length Binary HTTP response: the head,
/// then each server-sent event as its own padded chunk (or a body that is not a stream as one
/// padded piece), then the end, then the final chunk.
async fn seal_stream(
    response: Response,
    mut sealed: impl futures_util::AsyncWrite + Unpin,
    max_response_bytes: usize,
) -> std::io::Result<()> {
    use futures_util::{AsyncWriteExt, StreamExt};

    let (parts, body) = response.into_parts();
    let is_stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    let fields = RETURNED_HEADERS.into_iter().filter_map(|name| {
        parts
            .headers
            .get(name)
            .map(|value| (name.as_bytes(), value.as_bytes()))
    });
    if is_stream {
        sealed
            .write_all(&framing::response_head(parts.status.as_u16(), fields))
            .await?;
        sealed.flush().await?;
        let mut splitter = framing::EventSplitter::new(MAX_EVENT_BYTES);
        let mut frames = body.into_data_stream();
        while let Some(frame) = frames.next().await {
            let frame = frame.map_err(std::io::Error::other)?;
            for event in splitter.push(&frame) {
                sealed
                    .write_all(&framing::content_chunk(&framing::pad_event(&event)))
                    .await?;
                sealed.flush().await?;
            }
        }
        if let Some(rest) = splitter.finish() {
            sealed
                .write_all(&framing::content_chunk(&framing::pad_event(&rest)))
                .await?;
        }
        sealed.write_all(&framing::END).await?;
    } else {
        let (mut message, content) = match axum::body::to_bytes(body, max_response_bytes).await {
            Ok(content) => (
                framing::response_head(parts.status.as_u16(), fields),
                content,
            ),
            Err(_) => (
                framing::response_head(502, [(&b"content-type"[..], &b"text/plain"[..])]),
                bytes::Bytes::from_static(
                    b"the response was larger than an oblivious response may be",
                ),
            ),
        };
        if !content.is_empty() {
            message.extend(framing::content_chunk(&content));
        }
        message.extend(framing::END);
        framing::pad_message(&mut message);
        sealed.write_all(&message).await?;
    }
    sealed.close().await
}

/// The HTTP request a Binary HTTP message stands for, if it is one the gateway lets through:
/// `POST` to the chat, embedding or speech API or `GET` of the model or voice list, under
/// `/v1` or `/api/v1`, with only the authorization and content type carried over.
fn inner_request(plaintext: &[u8]) -> Result<http::Request<Body>, &'static str> {
    let message = Message::read_bhttp(&mut Cursor::new(plaintext))
        .map_err(|_| "the decrypted request is not Binary HTTP")?;
    let control = message.control();
    let method = control
        .method()
        .ok_or("the decrypted message is not a request")?;
    let path = control.path().ok_or("the decrypted request has no path")?;
    let path = std::str::from_utf8(path).map_err(|_| "the path is not UTF-8")?;
    let allowed = matches!(
        (method, path),
        (
            b"POST",
            "/v1/chat/completions"
                | "/api/v1/chat/completions"
                | "/v1/embeddings"
                | "/api/v1/embeddings"
                | "/v1/audio/speech"
                | "/api/v1/audio/speech"
                | "/v1/audio/transcriptions"
                | "/api/v1/audio/transcriptions"
                | "/v1/images/generations"
                | "/api/v1/images/generations"
                | "/v1/image/generate"
                | "/api/v1/image/generate"
                | "/v1/video/quote"
                | "/api/v1/video/quote"
                | "/v1/video/queue"
                | "/api/v1/video/queue"
                | "/v1/video/retrieve"
                | "/api/v1/video/retrieve"
                | "/v1/video/complete"
                | "/api/v1/video/complete"
                | "/v1/privacy/tokens"
                | "/api/v1/privacy/tokens"
                | "/v1/privacy/chat"
                | "/api/v1/privacy/chat"
                | "/v1/privacy/images"
                | "/api/v1/privacy/images"
        ) | (
            b"GET",
            "/v1/models"
                | "/api/v1/models"
                | "/v1/audio/voices"
                | "/api/v1/audio/voices"
                | "/v1/image/styles"
                | "/api/v1/image/styles"
                | "/v1/privacy/providers"
                | "/api/v1/privacy/providers"
                | privacy::tokens::ISSUER_DIRECTORY_PATH
        )
    );
    if !allowed {
        return Err(
            "an oblivious request may only reach the chat, embedding, speech, transcription, image, video, model, token and sealed-chat APIs",
        );
    }
    let method = http::Method::from_bytes(method).map_err(|_| "bad method")?;
    let mut request = http::Request::builder().method(method).uri(path);
    for name in FORWARDED_HEADERS {
        if let Some(value) = message.header().get(name.as_bytes()) {
            request = request.header(name, value);
        }
    }
    request
        .body(Body::from(message.content().to_vec()))
        .map_err(|_| "the decrypted request's headers are not valid HTTP")
}

/// The API's response as a Binary HTTP message: status, a few headers, and the body read whole
/// (at most `max_bytes`).
async fn to_bhttp_response(response: Response, max_bytes: usize) -> Result<Message, &'static str> {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, max_bytes)
        .await
        .map_err(|_| "the response was larger than an oblivious response may be")?;
    let status = BhttpStatus::try_from(parts.status.as_u16()).map_err(|_| "bad status")?;
    let mut message = Message::response(status);
    for name in RETURNED_HEADERS {
        if let Some(value) = parts.headers.get(name) {
            message.put_header(name, value.as_bytes());
        }
    }
    message.write_content(&body);
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_file_gives_the_same_key_every_time_and_another_seed_another_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ohttp.seed");
        let first = ObliviousGateway::from_seed_file(&path, false).expect("created");
        let again = ObliviousGateway::from_seed_file(&path, false).expect("read");
        assert_eq!(first.encoded_keys(), again.encoded_keys());
        assert_eq!(std::fs::read(&path).expect("seed").len(), SEED_BYTES);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = ObliviousGateway::from_seed_file(&dir.path().join("other.seed"), false)
            .expect("created");
        assert_ne!(first.encoded_keys(), other.encoded_keys());

        std::fs::write(&path, [1u8; 5]).expect("write");
        assert!(matches!(
            ObliviousGateway::from_seed_file(&path, false),
            Err(SetupError::SeedLength(_))
        ));
    }

    #[test]
    fn only_the_chat_and_model_apis_can_be_reached_and_only_two_headers_pass() {
        let encode = |method: &str, path: &str, headers: &[(&str, &str)]| {
            let mut message = Message::request(
                method.as_bytes().to_vec(),
                b"https".to_vec(),
                b"gondola".to_vec(),
                path.as_bytes().to_vec(),
            );
            for (name, value) in headers {
                message.put_header(*name, *value);
            }
            message.write_content(b"{}");
            let mut bytes = Vec::new();
            message
                .write_bhttp(Mode::KnownLength, &mut bytes)
                .expect("encode");
            bytes
        };
        let request = inner_request(&encode(
            "POST",
            "/api/v1/chat/completions",
            &[
                ("authorization", "Bearer k"),
                ("content-type", "application/json"),
                ("x-forwarded-for", "203.0.113.7"),
                ("cookie", "a=b"),
            ],
        ))
        .expect("allowed");
        assert_eq!(request.uri(), "/api/v1/chat/completions");
        let names: Vec<&str> = request
            .headers()
            .keys()
            .map(http::HeaderName::as_str)
            .collect();
        assert_eq!(names, ["authorization", "content-type"]);
        assert!(inner_request(&encode("GET", "/v1/models", &[])).is_ok());
        for (method, path) in [
            ("POST", "/api/v1/ledger/operations"),
            ("GET", "/api/v1/api_keys"),
            ("DELETE", "/v1/chat/completions"),
            ("POST", "/ohttp"),
            ("POST", "/v1/chat/completions/../../metrics"),
        ] {
            assert!(
                inner_request(&encode(method, path, &[])).is_err(),
                "{method} {path}"
            );
        }
        assert!(inner_request(b"not binary http").is_err());
    }

    /// A tiny API behind the oblivious endpoint: a stream of three events of very different
    /// lengths, and a JSON document.
    fn test_api() -> axum::Router {
        use axum::routing::{get, post};
        let events = [
            "data: {\"a\":1}\n\n".to_owned(),
            format!("data: {{\"b\":\"{}\"}}\n\n", "x".repeat(150)),
            "data: [DONE]\n\n".to_owned(),
        ];
        axum::Router::new()
            .route(
                "/v1/chat/completions",
                post(move || async move {
                    let pieces = futures_util::stream::iter(
                        events
                            .concat()
                            .into_bytes()
                            .chunks(7)
                            .map(|piece| {
                                Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(piece))
                            })
                            .collect::<Vec<_>>(),
                    );
                    (
                        [(header::CONTENT_TYPE, "text/event-stream")],
                        Body::from_stream(pieces),
                    )
                }),
            )
            .route(
                "/v1/models",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        "{\"data\":[]}",
                    )
                }),
            )
    }

    /// The lengths of the sealed chunks of a chunked reply (after its nonce), the final one last.
    fn chunk_lengths(reply: &[u8], nonce_bytes: usize) -> Vec<usize> {
        let mut at = nonce_bytes;
        let mut lengths = Vec::new();
        while at < reply.len() {
            let width = 1usize << (reply[at] >> 6);
            let mut length = u64::from(reply[at] & 0x3f);
            for &byte in &reply[at + 1..at + width] {
                length = length << 8 | u64::from(byte);
            }
            at += width;
            if length == 0 {
                // The final chunk runs to the end.
                lengths.push(reply.len() - at);
                break;
            }
            let length = usize::try_from(length).expect("fits");
            lengths.push(length);
            at += length;
        }
        lengths
    }

    async fn chunked_round_trip(
        gateway: &ObliviousGateway,
        method: &str,
        path: &str,
    ) -> (Vec<u8>, privacy::client::ResponseOpener) {
        let keys = privacy::client::GatewayKeys::decode(gateway.encoded_keys()).expect("keys");
        let (sealed, opener) = privacy::client::seal_chunked(
            &keys,
            method,
            path,
            &[("content-type", "application/json")],
            b"{}",
        )
        .await
        .expect("sealed");
        let content_type = HeaderValue::from_static(CHUNKED_REQUEST_MEDIA_TYPE);
        let response = handle(
            gateway,
            test_api(),
            Some(&content_type),
            sealed.into(),
            1 << 20,
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            CHUNKED_RESPONSE_MEDIA_TYPE
        );
        let reply = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("reply");
        (reply.to_vec(), opener)
    }

    async fn read_all(opened: privacy::client::OpenedStream) -> std::io::Result<Vec<u8>> {
        use futures_util::TryStreamExt;
        opened
            .body
            .try_fold(Vec::new(), |mut all, piece| async move {
                all.extend_from_slice(&piece);
                Ok(all)
            })
            .await
    }

    #[tokio::test]
    async fn a_chunked_reply_seals_each_event_alone_at_one_size_and_opens_to_the_same_events() {
        let gateway = ObliviousGateway::from_seed(&[7; SEED_BYTES], false).expect("key");
        let (reply, opener) = chunked_round_trip(&gateway, "POST", "/v1/chat/completions").await;
        // AES-128-GCM: a 16-byte response nonce, then the head, three events, the end, and
        // the final (empty) chunk.
        let lengths = chunk_lengths(&reply, 16);
        assert_eq!(lengths.len(), 6, "{lengths:?}");
        let tag = 16;
        assert_eq!(lengths[0], framing::EVENT_BUCKET_BYTES + tag, "the head");
        // Every event fills one bucket whatever its length: 12, 163 and 14 bytes of data.
        let varint = 2;
        for length in &lengths[1..4] {
            assert_eq!(*length, framing::EVENT_BUCKET_BYTES + varint + tag);
        }
        assert_eq!(lengths[4], framing::END.len() + tag);
        assert_eq!(lengths[5], tag);

        let opened = opener
            .open(futures_util::stream::iter([Ok::<_, std::io::Error>(
                bytes::Bytes::from(reply),
            )]))
            .await
            .expect("opens");
        assert_eq!(opened.status, 200);
        assert_eq!(opened.header("content-type"), Some("text/event-stream"));
        let body = read_all(opened).await.expect("whole");
        let mut parser = wire::sse::SseParser::new(1 << 20);
        let events = parser.push(&body).expect("sse");
        assert_eq!(
            events,
            [
                wire::sse::SseEvent::Data("{\"a\":1}".into()),
                wire::sse::SseEvent::Data(format!("{{\"b\":\"{}\"}}", "x".repeat(150))),
                wire::sse::SseEvent::Done,
            ]
        );
    }

    #[tokio::test]
    async fn a_chunked_reply_that_is_not_a_stream_is_one_padded_piece() {
        let gateway = ObliviousGateway::from_seed(&[7; SEED_BYTES], false).expect("key");
        let (reply, opener) = chunked_round_trip(&gateway, "GET", "/v1/models").await;
        let lengths = chunk_lengths(&reply, 16);
        assert_eq!(
            lengths,
            [framing::MIN_MESSAGE_BUCKET_BYTES + 16, 16],
            "one padded piece, then the final chunk"
        );
        let opened = opener
            .open(futures_util::stream::iter([Ok::<_, std::io::Error>(
                bytes::Bytes::from(reply),
            )]))
            .await
            .expect("opens");
        assert_eq!(opened.status, 200);
        assert_eq!(read_all(opened).await.expect("whole"), b"{\"data\":[]}");
    }

    #[tokio::test]
    async fn a_chunked_reply_with_any_piece_tampered_or_cut_short_fails_to_open() {
        let gateway = ObliviousGateway::from_seed(&[7; SEED_BYTES], false).expect("key");
        let (reply, _) = chunked_round_trip(&gateway, "POST", "/v1/chat/completions").await;
        let lengths = chunk_lengths(&reply, 16);
        // Where each sealed piece starts (all replies to this API are laid out alike).
        let mut starts = Vec::new();
        let mut at = 16;
        for length in &lengths[..lengths.len() - 1] {
            let width = 1usize << (reply[at] >> 6);
            starts.push(at + width);
            at += width + length;
        }
        for case in 0..=starts.len() {
            let (reply, opener) =
                chunked_round_trip(&gateway, "POST", "/v1/chat/completions").await;
            let damaged = match starts.get(case) {
                Some(&start) => {
                    let mut copy = reply.clone();
                    copy[start + 3] ^= 0x40;
                    copy
                }
                // Cut off before the content's end marker (which is sealed in its own chunk, so
                // no relay can forge an early end).
                None => reply[..starts[starts.len() - 1] - 1].to_vec(),
            };
            let opened = opener
                .open(futures_util::stream::iter([Ok::<_, std::io::Error>(
                    bytes::Bytes::from(damaged),
                )]))
                .await;
            match opened {
                Err(_) => assert_eq!(case, 0, "only a damaged head fails before the body"),
                Ok(opened) => assert!(read_all(opened).await.is_err(), "case {case}"),
            }
        }
    }

    #[tokio::test]
    async fn a_tampered_chunked_request_is_refused_in_the_clear() {
        let gateway = ObliviousGateway::from_seed(&[7; SEED_BYTES], false).expect("key");
        let keys = privacy::client::GatewayKeys::decode(gateway.encoded_keys()).expect("keys");
        let (sealed, _) = privacy::client::seal_chunked(&keys, "GET", "/v1/models", &[], b"")
            .await
            .expect("sealed");
        let content_type = HeaderValue::from_static(CHUNKED_REQUEST_MEDIA_TYPE);
        for position in [0, 5, 40, sealed.len() / 2, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[position] ^= 1;
            let response = handle(
                &gateway,
                test_api(),
                Some(&content_type),
                tampered.into(),
                1 << 20,
            )
            .await;
            assert_eq!(response.status(), 400, "byte {position}");
        }
        let cut = sealed[..sealed.len() - 1].to_vec();
        let response = handle(
            &gateway,
            test_api(),
            Some(&content_type),
            cut.into(),
            1 << 20,
        )
        .await;
        assert_eq!(response.status(), 400);
    }
}
