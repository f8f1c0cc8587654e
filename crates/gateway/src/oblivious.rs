//! Oblivious HTTP (RFC 9458) at the gateway. A client encrypts a whole Binary HTTP (RFC 9292)
//! request to the gateway's key and sends it through a relay; the relay sees the client's
//! address and an opaque body, the gateway sees the request but not who sent it.
//!
//! - `GET /.well-known/ohttp-gateway`: the key configuration list (RFC 9540,
//!   `application/ohttp-keys`). The key is derived from a 32-byte seed kept in the data
//!   directory, so restarts and replicas sharing the seed publish the same key.
//! - `POST /ohttp` (`message/ohttp-req`): decapsulates, checks the inner request against the
//!   short list of API routes it may reach, runs it through the gateway's own router (same
//!   authentication, metering and limits as any request, minus a client address, which the
//!   inner request never has), and encapsulates the response (`message/ohttp-res`).
//!
//! Responses are returned whole, so a streamed chat reply arrives at once when it is done;
//! chunked OHTTP (one encrypted chunk per event) is the streaming form and not built yet.

use std::io::Cursor;
use std::path::Path;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bhttp::{Message, Mode, StatusCode as BhttpStatus};
use http::{HeaderValue, StatusCode, header};
use ohttp::hpke::{Aead, Kdf, Kem};
use ohttp::{KeyConfig, Server, SymmetricSuite};
use tower::ServiceExt;

/// Media types of RFC 9458 and RFC 9540.
pub const KEYS_MEDIA_TYPE: &str = "application/ohttp-keys";
pub const REQUEST_MEDIA_TYPE: &str = "message/ohttp-req";
pub const RESPONSE_MEDIA_TYPE: &str = "message/ohttp-res";

/// Where the key configuration is published, and where encapsulated requests go.
pub const KEYS_PATH: &str = "/.well-known/ohttp-gateway";
pub const GATEWAY_PATH: &str = "/ohttp";

/// The one key's identifier in the configuration (clients name it in every request).
const KEY_ID: u8 = 1;
/// Bytes of seed the key is derived from.
pub const SEED_BYTES: usize = 32;
/// Headers of the inner request that reach the API; everything else is dropped.
const FORWARDED_HEADERS: [&str; 2] = ["authorization", "content-type"];
/// Headers of the API's response that go back inside the encapsulated response.
const RETURNED_HEADERS: [&str; 4] = [
    "content-type",
    "x-venice-balance-diem",
    "x-venice-balance-usd",
    "retry-after",
];

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

/// The gateway's OHTTP key and its published configuration.
pub struct ObliviousGateway {
    server: Server,
    encoded_keys: Vec<u8>,
}

impl ObliviousGateway {
    /// The key derived from `seed` (X25519, HKDF-SHA256, AES-128-GCM or ChaCha20-Poly1305).
    pub fn from_seed(seed: &[u8; SEED_BYTES]) -> Result<Self, SetupError> {
        let config = KeyConfig::derive(
            KEY_ID,
            Kem::X25519Sha256,
            vec![
                SymmetricSuite::new(Kdf::HkdfSha256, Aead::Aes128Gcm),
                SymmetricSuite::new(Kdf::HkdfSha256, Aead::ChaCha20Poly1305),
            ],
            seed,
        )?;
        let encoded_keys = KeyConfig::encode_list(&[&config])?;
        Ok(Self {
            server: Server::new(config)?,
            encoded_keys,
        })
    }

    /// Reads the seed at `path`, or creates it (random, mode 0600) when there is none.
    pub fn from_seed_file(path: &Path) -> Result<Self, SetupError> {
        let seed = read_or_create_seed(path).map_err(|error| SetupError::Seed {
            path: path.to_owned(),
            error,
        })?;
        let seed: [u8; SEED_BYTES] = seed
            .try_into()
            .map_err(|_| SetupError::SeedLength(path.to_owned()))?;
        Self::from_seed(&seed)
    }

    /// The `application/ohttp-keys` body.
    pub fn encoded_keys(&self) -> &[u8] {
        &self.encoded_keys
    }
}

fn read_or_create_seed(path: &Path) -> std::io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(seed) => return Ok(seed),
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        Err(_) => {}
    }
    use std::io::Write;
    let mut seed = [0u8; SEED_BYTES];
    rand::Rng::fill(&mut rand::rng(), &mut seed[..]);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(&seed)?;
    file.as_file().sync_all()?;
    // Another process may have created it meanwhile: keep theirs, so both use one key.
    match file.persist_noclobber(path) {
        Ok(_) => Ok(seed.to_vec()),
        Err(error) if error.error.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(path)
        }
        Err(error) => Err(error.error),
    }
}

/// `GET /.well-known/ohttp-gateway`.
pub(crate) fn keys_response(gateway: &ObliviousGateway) -> Response {
    (
        [
            (header::CONTENT_TYPE, KEYS_MEDIA_TYPE),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        gateway.encoded_keys.clone(),
    )
        .into_response()
}

/// A failure before there is anything to encapsulate: answered in the clear, saying only what
/// was wrong with the envelope.
fn plain_error(status: StatusCode, message: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], message).into_response()
}

/// `POST /ohttp`: one encapsulated request through `inner` (the gateway's API router).
pub(crate) async fn handle(
    gateway: &ObliviousGateway,
    inner: axum::Router,
    content_type: Option<&HeaderValue>,
    body: bytes::Bytes,
    max_response_bytes: usize,
) -> Response {
    if content_type.and_then(|value| value.to_str().ok()) != Some(REQUEST_MEDIA_TYPE) {
        return plain_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "an oblivious request is message/ohttp-req",
        );
    }
    let Ok((plaintext, responder)) = gateway.server.decapsulate(&body) else {
        return plain_error(
            StatusCode::BAD_REQUEST,
            "the request could not be decrypted with this gateway's key",
        );
    };
    let inner_response = match inner_request(&plaintext) {
        Ok(request) => match inner.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        Err(message) => plain_error(StatusCode::BAD_REQUEST, message),
    };
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
    match responder.encapsulate(&encoded) {
        Ok(sealed) => ([(header::CONTENT_TYPE, RESPONSE_MEDIA_TYPE)], sealed).into_response(),
        Err(_) => plain_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encrypt the response",
        ),
    }
}

/// The HTTP request a Binary HTTP message stands for, if it is one the gateway lets through:
/// `POST` to the chat API or `GET` of the model list, under `/v1` or `/api/v1`, with only the
/// authorization and content type carried over.
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
        (b"POST", "/v1/chat/completions" | "/api/v1/chat/completions")
            | (b"GET", "/v1/models" | "/api/v1/models")
    );
    if !allowed {
        return Err("an oblivious request may only reach the chat and model APIs");
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

/// The client side, for `gondola` clients and tests: fetches nothing itself, it only seals
/// requests to a key configuration list and opens the responses.
pub mod client {
    use std::io::Cursor;

    use bhttp::{Message, Mode};
    use ohttp::{ClientRequest, ClientResponse, KeyConfig};

    /// Why a request could not be sealed or a response opened.
    #[derive(Debug, thiserror::Error)]
    pub enum ClientError {
        #[error("the gateway's key configuration is unusable: {0}")]
        Keys(String),
        #[error("the response could not be decrypted: {0}")]
        Open(String),
        #[error("the decrypted response is not Binary HTTP: {0}")]
        Format(String),
    }

    /// A sealed request and what opens its response.
    pub struct Sealed {
        pub body: Vec<u8>,
        opener: ClientResponse,
    }

    /// A response, decrypted.
    #[derive(Debug)]
    pub struct Opened {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    /// Seals `method path` with `headers` and `body` to the first usable configuration of
    /// `encoded_keys` (an `application/ohttp-keys` body).
    pub fn seal(
        encoded_keys: &[u8],
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Sealed, ClientError> {
        let mut configs = KeyConfig::decode_list(encoded_keys)
            .map_err(|error| ClientError::Keys(error.to_string()))?;
        // Chosen explicitly: the crate's own list helper takes the last entry.
        let config = configs
            .first_mut()
            .ok_or_else(|| ClientError::Keys("the list is empty".into()))?;
        let mut message = Message::request(
            method.as_bytes().to_vec(),
            b"https".to_vec(),
            b"gondola".to_vec(),
            path.as_bytes().to_vec(),
        );
        for (name, value) in headers {
            message.put_header(*name, *value);
        }
        message.write_content(body);
        let mut plaintext = Vec::new();
        message
            .write_bhttp(Mode::KnownLength, &mut plaintext)
            .map_err(|error| ClientError::Keys(error.to_string()))?;
        let request = ClientRequest::from_config(config)
            .map_err(|error| ClientError::Keys(error.to_string()))?;
        let (body, opener) = request
            .encapsulate(&plaintext)
            .map_err(|error| ClientError::Keys(error.to_string()))?;
        Ok(Sealed { body, opener })
    }

    impl Sealed {
        /// Opens the gateway's `message/ohttp-res` body.
        pub fn open(self, response: &[u8]) -> Result<Opened, ClientError> {
            let plaintext = self
                .opener
                .decapsulate(response)
                .map_err(|error| ClientError::Open(error.to_string()))?;
            let message = Message::read_bhttp(&mut Cursor::new(&plaintext[..]))
                .map_err(|error| ClientError::Format(error.to_string()))?;
            let status = message
                .control()
                .status()
                .map(|status| status.code())
                .ok_or_else(|| ClientError::Format("not a response".into()))?;
            let headers = message
                .header()
                .iter()
                .map(|field| {
                    (
                        String::from_utf8_lossy(field.name()).into_owned(),
                        String::from_utf8_lossy(field.value()).into_owned(),
                    )
                })
                .collect();
            Ok(Opened {
                status,
                headers,
                body: message.content().to_vec(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_file_gives_the_same_key_every_time_and_another_seed_another_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ohttp.seed");
        let first = ObliviousGateway::from_seed_file(&path).expect("created");
        let again = ObliviousGateway::from_seed_file(&path).expect("read");
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
        let other =
            ObliviousGateway::from_seed_file(&dir.path().join("other.seed")).expect("created");
        assert_ne!(first.encoded_keys(), other.encoded_keys());

        std::fs::write(&path, [1u8; 5]).expect("write");
        assert!(matches!(
            ObliviousGateway::from_seed_file(&path),
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
}
