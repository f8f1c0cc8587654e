//! Gondola's private path, client side and in between.
//!
//! A client seals each API request with Oblivious HTTP (RFC 9458) to the gateway's published
//! key and sends it through a relay run by someone else. The relay sees the client's address and
//! padded sizes; the gateway sees the request but not who sent it. Streamed replies use chunked
//! OHTTP: the gateway seals every server-sent event as its own chunk, padded to a size bucket,
//! so tokens reach the client as they are generated without their lengths showing.
//!
//! - [`client`]: sealing requests and opening replies, whole or chunked.
//! - [`framing`]: the Binary HTTP (RFC 9292) framing the gateway streams with, and the padding
//!   both sides apply.
//! - [`keys`]: the key sets the gateway and providers publish: X25519, and X-Wing as an option.
//! - [`relay`]: `gondola relay`, which forwards sealed messages and holds no key.
//! - [`sealed`]: the inner layer: chat requests sealed to providers' keys, which the gateway
//!   routes without reading, and the providers' signed receipts.
//! - [`tokens`]: Privacy Pass capacity tokens, which a request carries instead of the API key.
//! - [`proxy`]: `gondola proxy`, an OpenAI-compatible endpoint on localhost that sends every
//!   request it gets down the private path, so any OpenAI client gets it unchanged.

pub mod client;
pub mod framing;
pub mod keys;
pub mod proxy;
pub mod relay;
pub mod sealed;
pub mod tokens;

/// Media types of RFC 9458, RFC 9540 and chunked OHTTP (draft-ietf-ohai-chunked-ohttp).
pub const KEYS_MEDIA_TYPE: &str = "application/ohttp-keys";
pub const REQUEST_MEDIA_TYPE: &str = "message/ohttp-req";
pub const RESPONSE_MEDIA_TYPE: &str = "message/ohttp-res";
pub const CHUNKED_REQUEST_MEDIA_TYPE: &str = "message/ohttp-chunked-req";
pub const CHUNKED_RESPONSE_MEDIA_TYPE: &str = "message/ohttp-chunked-res";

/// Where a gateway publishes its key configuration, and where sealed requests go (on the
/// gateway and, with the same paths, on a relay in front of it).
pub const KEYS_PATH: &str = "/.well-known/ohttp-gateway";
pub const GATEWAY_PATH: &str = "/ohttp";

/// Largest key configuration list a client or relay accepts.
pub const MAX_KEYS_BYTES: usize = 64 * 1024;

/// Headers of an API reply that travel back inside a sealed reply (and out of the proxy);
/// every other header of the reply stays behind.
pub const RETURNED_HEADERS: [&str; 6] = [
    "content-type",
    wire::sealed::PROVIDER_HEADER,
    "x-venice-balance-diem",
    "x-venice-balance-usd",
    "retry-after",
    tokens::TOKENS_REQUIRED_HEADER,
];

/// A reply's body, read whole up to `limit` bytes; `Err` with the reason otherwise.
pub(crate) async fn read_bounded(
    response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| error.without_url().to_string())?;
        if body.len() + chunk.len() > limit {
            return Err(format!("the body is over {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
