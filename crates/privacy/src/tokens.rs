//! Capacity tokens: Privacy Pass (RFC 9576, RFC 9577, RFC 9578) publicly verifiable tokens,
//! type 0x0002 (blind RSA 2048, RSABSSA-SHA384-PSS-Deterministic, RFC 9474).
//!
//! An account's API key buys tokens from the gateway's issuer in batches, each worth a fixed
//! amount of the account's daily allowance; the issuer signs them blind, so it learns how many
//! an account took and never which request spends which. A chat request then carries tokens
//! instead of the key (`Authorization: PrivateToken token=…`), and the gateway checks each one
//! against the key of the current epoch (a UTC day) and records its nonce so it is spent once.
//!
//! This module holds what both sides share (the issuer directory, the challenge, the header) and
//! the client's half of issuance. The gateway's half is in the gateway crate.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use privacypass::auth::authenticate::TokenChallenge;
use privacypass::generic_tokens::{
    GenericBatchTokenRequest, GenericBatchTokenResponse, GenericToken, TokenStates,
};
use privacypass::public_tokens::{PublicKey, PublicToken, TokenRequest};
use privacypass::{Deserialize as _, Serialize as _, TokenType};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// Where a gateway publishes its issuer directory (RFC 9578, section 4).
pub const ISSUER_DIRECTORY_PATH: &str = "/.well-known/private-token-issuer-directory";
pub const DIRECTORY_MEDIA_TYPE: &str = "application/private-token-issuer-directory";
/// The issuer's endpoint (also under `/api/v1`): an account's API key, a batch of blinded
/// token requests in, as many blind signatures out.
pub const ISSUE_PATH: &str = "/v1/privacy/tokens";
/// Media types of a batch of token requests and of its responses (the batched-issuance
/// encoding of the `privacypass` crate: a vector of token requests, a vector of optional
/// responses).
pub const BATCH_REQUEST_MEDIA_TYPE: &str = "application/private-token-batch-request";
pub const BATCH_RESPONSE_MEDIA_TYPE: &str = "application/private-token-batch-response";
/// Most tokens issued in one batch.
pub const MAX_BATCH: usize = privacypass::DEFAULT_MAX_BATCH_SIZE;
/// Most tokens one request may carry.
pub const MAX_TOKENS_PER_REQUEST: usize = 64;
/// On a refusal for too few tokens: how many the request needs.
pub const TOKENS_REQUIRED_HEADER: &str = "x-gondola-tokens-required";
/// The issuer name in every token's challenge.
pub const ISSUER_NAME: &str = "gondola";
/// Bytes of a type 0x0002 token: type, nonce, challenge digest, key id, authenticator.
pub const TOKEN_BYTES: usize = 2 + 32 + 32 + 32 + 256;
/// Largest issuer directory a client reads.
pub const MAX_DIRECTORY_BYTES: usize = 16 * 1024;
/// Largest batch request body: the vector's length prefix and `MAX_BATCH` requests of a type,
/// a key id and a 256-byte blinded message each.
pub const MAX_BATCH_REQUEST_BYTES: usize = 8 + MAX_BATCH * (2 + 1 + 256);

/// Why tokens could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the issuer directory is not valid: {0}")]
    Directory(String),
    #[error("the token request could not be built: {0}")]
    Request(String),
    #[error("the issuer's answer is not valid: {0}")]
    Response(String),
    #[error("the PrivateToken authorization is malformed: {0}")]
    Header(&'static str),
}

/// The one challenge every Gondola token answers: type 0x0002, issuer `gondola`, no redemption
/// context, no origin. Tokens are bound to an issuer and an epoch by their key, so a client's
/// tokens all look alike.
pub fn challenge() -> TokenChallenge {
    TokenChallenge::new(TokenType::Public, ISSUER_NAME, None, &[])
}

/// SHA-256 of [`challenge`], as carried in every token.
pub fn challenge_digest() -> Result<[u8; 32], TokenError> {
    challenge()
        .digest()
        .map_err(|error| TokenError::Request(error.to_string()))
}

/// A token key's id: SHA-256 of its SubjectPublicKeyInfo.
pub fn token_key_id(spki: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(spki).into()
}

/// What a token's authenticator signs: `token_type || nonce || challenge_digest || key_id`.
pub fn token_input(token: &PublicToken) -> Vec<u8> {
    let mut input = Vec::with_capacity(2 + 32 * 3);
    input.extend_from_slice(&(TokenType::Public as u16).to_be_bytes());
    input.extend_from_slice(&token.nonce());
    input.extend_from_slice(token.challenge_digest());
    input.extend_from_slice(token.token_key_id());
    input
}

/// The issuer directory (RFC 9578, section 4), with the epoch it is valid for and the worth of
/// a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuerDirectory {
    #[serde(rename = "issuer-request-uri")]
    pub issuer_request_uri: String,
    #[serde(rename = "token-keys")]
    pub token_keys: Vec<TokenKeyEntry>,
    /// The epoch (days since the Unix epoch, UTC) whose key this is; tokens of any other epoch
    /// are refused.
    pub epoch: u64,
    /// When the epoch ends (Unix seconds); tokens left then are worth nothing.
    #[serde(rename = "epoch-ends")]
    pub epoch_ends: u64,
    /// What one token is worth, in USD (a decimal string, exact).
    #[serde(rename = "token-value-usd")]
    pub token_value_usd: String,
    /// Most tokens in one batch.
    #[serde(rename = "max-batch")]
    pub max_batch: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenKeyEntry {
    #[serde(rename = "token-type")]
    pub token_type: u16,
    /// base64url of the key's SubjectPublicKeyInfo (RSASSA-PSS).
    #[serde(rename = "token-key")]
    pub token_key: String,
    #[serde(
        rename = "not-before",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before: Option<u64>,
}

/// An issuer's public key for one epoch, as a client uses it.
#[derive(Clone)]
pub struct IssuerKey {
    pub epoch: u64,
    pub epoch_ends: u64,
    pub max_batch: usize,
    public_key: PublicKey,
    pub key_id: [u8; 32],
}

impl std::fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKey")
            .field("epoch", &self.epoch)
            .field("key_id", &hex_prefix(&self.key_id))
            .finish_non_exhaustive()
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(4)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

impl IssuerKey {
    /// The type 0x0002 key of a directory.
    pub fn from_directory(directory: &IssuerDirectory) -> Result<Self, TokenError> {
        let entry = directory
            .token_keys
            .iter()
            .find(|entry| entry.token_type == TokenType::Public as u16)
            .ok_or_else(|| TokenError::Directory("it lists no blind RSA key".into()))?;
        let spki = decode_base64url(&entry.token_key)
            .ok_or_else(|| TokenError::Directory("the token key is not base64url".into()))?;
        let public_key = PublicKey::from_spki(&spki)
            .map_err(|error| TokenError::Directory(format!("the token key: {error}")))?;
        let spki = public_key
            .to_spki()
            .map_err(|error| TokenError::Directory(format!("the token key: {error}")))?;
        Ok(Self {
            epoch: directory.epoch,
            epoch_ends: directory.epoch_ends,
            max_batch: directory.max_batch.clamp(1, MAX_BATCH),
            key_id: token_key_id(&spki),
            public_key,
        })
    }

    /// Reads a directory body.
    pub fn from_directory_json(body: &[u8]) -> Result<Self, TokenError> {
        let directory: IssuerDirectory = serde_json::from_slice(body)
            .map_err(|error| TokenError::Directory(error.to_string()))?;
        Self::from_directory(&directory)
    }
}

fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

/// A batch of blinded token requests on its way to the issuer: what is needed to unblind the
/// answer.
pub struct PendingBatch {
    states: TokenStates,
    count: usize,
}

impl std::fmt::Debug for PendingBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingBatch")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// Builds a batch request for `count` tokens under `key` (each with a fresh random nonce,
/// blinded): the body to send to the issuer and what unblinds its answer.
pub fn request_batch(key: &IssuerKey, count: usize) -> Result<(Vec<u8>, PendingBatch), TokenError> {
    if count == 0 || count > key.max_batch {
        return Err(TokenError::Request(format!(
            "a batch holds 1 to {} tokens, not {count}",
            key.max_batch
        )));
    }
    let challenge = challenge();
    let mut rng = rand_rsa::rng();
    let mut builder = GenericBatchTokenRequest::builder();
    for _ in 0..count {
        let (request, state) = TokenRequest::new(&mut rng, key.public_key.clone(), &challenge)
            .map_err(|error| TokenError::Request(error.to_string()))?;
        builder = builder.add_token_request(request.into(), state.into());
    }
    let (request, states) = builder.build();
    let body = request
        .tls_serialize_detached()
        .map_err(|error| TokenError::Request(error.to_string()))?;
    Ok((body, PendingBatch { states, count }))
}

impl PendingBatch {
    /// Unblinds the issuer's answer into tokens, checking every signature against the key the
    /// batch was built for. All or nothing: an answer with a missing or bad token is refused.
    pub fn finish(self, body: &[u8]) -> Result<Vec<PublicToken>, TokenError> {
        let response = GenericBatchTokenResponse::try_from_bytes(body)
            .map_err(|error| TokenError::Response(error.to_string()))?;
        if response.token_responses.len() != self.count || response.issued_count() != self.count {
            return Err(TokenError::Response(format!(
                "{} of the {} tokens asked for were signed",
                response.issued_count(),
                self.count
            )));
        }
        response
            .issue_tokens(&self.states)
            .map_err(|error| TokenError::Response(error.to_string()))?
            .into_iter()
            .map(|token| match token {
                GenericToken::Public(token) => Ok(*token),
                _ => Err(TokenError::Response("a token of another type".into())),
            })
            .collect()
    }
}

/// The `Authorization` value that spends `tokens`: `PrivateToken token=…` for each, joined by
/// commas (RFC 9577, section 2.2).
pub fn authorization_value(tokens: &[PublicToken]) -> Result<String, TokenError> {
    let mut value = String::with_capacity(tokens.len() * (TOKEN_BYTES * 4 / 3 + 24));
    for (index, token) in tokens.iter().enumerate() {
        let bytes = token
            .tls_serialize_detached()
            .map_err(|_| TokenError::Header("a token could not be encoded"))?;
        if index > 0 {
            value.push_str(", ");
        }
        value.push_str("PrivateToken token=");
        value.push_str(&URL_SAFE.encode(bytes));
    }
    Ok(value)
}

/// Reads the tokens of an `Authorization` value; `Ok(None)` when it is not the `PrivateToken`
/// scheme.
pub fn parse_authorization(value: &str) -> Result<Option<Vec<PublicToken>>, TokenError> {
    let mut tokens = Vec::new();
    for (index, part) in value.split(',').enumerate() {
        let part = part.trim();
        let Some((scheme, parameters)) = part.split_once(char::is_whitespace) else {
            if index == 0 {
                return Ok(None);
            }
            return Err(TokenError::Header("a part is not `PrivateToken token=…`"));
        };
        if !scheme.eq_ignore_ascii_case("PrivateToken") {
            if index == 0 {
                return Ok(None);
            }
            return Err(TokenError::Header("a part is not `PrivateToken token=…`"));
        }
        if tokens.len() == MAX_TOKENS_PER_REQUEST {
            return Err(TokenError::Header("too many tokens in one request"));
        }
        let (name, encoded) = parameters
            .trim()
            .split_once('=')
            .ok_or(TokenError::Header("a part has no `token=`"))?;
        if !name.trim().eq_ignore_ascii_case("token") {
            return Err(TokenError::Header(
                "a part has a parameter other than `token`",
            ));
        }
        let encoded = encoded.trim().trim_matches('"');
        let bytes =
            decode_base64url(encoded).ok_or(TokenError::Header("a token is not base64url"))?;
        if bytes.len() != TOKEN_BYTES {
            return Err(TokenError::Header("a token is not a blind RSA token"));
        }
        let token = PublicToken::tls_deserialize_exact(&bytes)
            .map_err(|_| TokenError::Header("a token could not be read"))?;
        if token.token_type() != TokenType::Public {
            return Err(TokenError::Header("a token is not of type 0x0002"));
        }
        tokens.push(token);
    }
    Ok(Some(tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_schemes_are_not_tokens() {
        assert!(
            parse_authorization("Bearer abc")
                .expect("not an error")
                .is_none()
        );
        assert!(parse_authorization("abc").expect("not an error").is_none());
    }

    #[test]
    fn malformed_token_headers_are_refused() {
        for value in [
            "PrivateToken token=!!!",
            "PrivateToken token=AAAA",
            "PrivateToken nonce=AAAA",
            "PrivateToken token=AAAA, Bearer x",
        ] {
            assert!(parse_authorization(value).is_err(), "{value}");
        }
    }
}
