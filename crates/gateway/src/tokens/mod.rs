//! The gateway's half of capacity tokens (Privacy Pass, type 0x0002; the format and the
//! client's half are in `privacy::tokens`): the issuer, which sells an account tokens out of
//! its daily allowance, and the redeemer, which takes tokens instead of an API key.
//!
//! The issuer's key changes every epoch (a UTC day on the economy's clock). Each epoch's RSA
//! key is derived from a stored seed and the epoch number, so restarts and replicas sharing
//! the seed agree on it without storing keys. A token carries its key's id: a token of another
//! epoch (or another issuer) names a key the gateway does not hold and is refused, so the
//! allowance a token stands for ends with its day.
//!
//! What the issuer learns is an account and a count; the signatures are blind, so no token can
//! be traced back to the batch it came from. What the redeemer learns is that a request was
//! paid for.

pub mod spent;

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use blind_rsa_signatures::{Deterministic, KeyPair as GenericKeyPair, PSS, Sha384, Signature};
use bytes::Bytes;
use http::{HeaderMap, header};
use privacy::tokens::{
    BATCH_REQUEST_MEDIA_TYPE, BATCH_RESPONSE_MEDIA_TYPE, IssuerDirectory, MAX_BATCH,
    MAX_BATCH_REQUEST_BYTES, TokenKeyEntry, token_input,
};
use privacypass::TruncatedTokenKeyId;
use privacypass::generic_tokens::{
    GenericBatchTokenRequest, GenericBatchTokenResponse, GenericTokenRequest, GenericTokenResponse,
    OptionalTokenResponse,
};
use privacypass::public_tokens::PublicToken;
use privacypass::public_tokens::server::{IssuerKeyStore, IssuerServer};
use privacypass::{Serialize as _, TokenType};
use rand_rsa::SeedableRng as _;
use sha2::Digest as _;
use wire::error::{ApiError, Dialect, ErrorCode};
use wire::money::Amount;

use crate::{AppState, error_response};
use economy::Economy;

type KeyPair = GenericKeyPair<Sha384, PSS, Deterministic>;

/// The modulus of every issuer key (RFC 9578 fixes 2048 bits for type 0x0002).
const MODULUS_BITS: usize = 2048;
use ledger::SECONDS_PER_DAY;
pub const SEED_BYTES: usize = 32;

pub use crate::config::TokensConfig;

/// One epoch's issuer key, with what signs and checks under it.
pub struct EpochKey {
    epoch: u64,
    pair: KeyPair,
    key_id: [u8; 32],
    truncated_id: TruncatedTokenKeyId,
    challenge_digest: [u8; 32],
    /// The issuer directory naming this key, ready to send.
    directory: Bytes,
}

impl EpochKey {
    /// The key of `epoch` derived from `seed` (tens of milliseconds of CPU), and its directory
    /// naming tokens worth `token_value` base units.
    pub fn derive(
        seed: &[u8; SEED_BYTES],
        epoch: u64,
        token_value: u128,
    ) -> Result<Self, &'static str> {
        let pair = derive_key(seed, epoch).map_err(|error| {
            tracing::error!(error = %error, epoch, "cannot derive the issuer key");
            "the issuer key could not be derived"
        })?;
        let spki = pair
            .pk
            .to_spki()
            .map_err(|_| "the issuer key could not be encoded")?;
        let key_id = privacy::tokens::token_key_id(&spki);
        let directory = IssuerDirectory {
            issuer_request_uri: privacy::tokens::ISSUE_PATH.to_owned(),
            token_keys: vec![TokenKeyEntry {
                token_type: TokenType::Public as u16,
                token_key: {
                    use base64::Engine as _;
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&spki)
                },
                not_before: Some(epoch.saturating_mul(SECONDS_PER_DAY)),
            }],
            epoch,
            epoch_ends: epoch.saturating_add(1).saturating_mul(SECONDS_PER_DAY),
            token_value_usd: Amount(token_value).to_decimal_string(),
            max_batch: MAX_BATCH,
        };
        let directory = serde_json::to_vec(&directory)
            .map_err(|_| "the issuer directory could not be encoded")?;
        Ok(Self {
            epoch,
            truncated_id: key_id[31],
            key_id,
            pair,
            challenge_digest: privacy::tokens::challenge_digest()
                .map_err(|_| "the token challenge could not be encoded")?,
            directory: Bytes::from(directory),
        })
    }

    /// The issuer directory (JSON) naming this key.
    pub fn directory(&self) -> &Bytes {
        &self.directory
    }

    /// Checks what costs nothing to check: that `token` names this key and Gondola's
    /// challenge. Its signature is [`Self::verify_signature`]'s to check.
    pub fn check_format(&self, token: &PublicToken) -> Result<(), Refusal> {
        if token.token_type() != TokenType::Public {
            return Err(Refusal::Invalid);
        }
        if token.token_key_id() != &self.key_id {
            return Err(Refusal::UnknownKey);
        }
        if token.challenge_digest() != &self.challenge_digest {
            return Err(Refusal::Invalid);
        }
        Ok(())
    }

    /// Checks that `token` was signed under this key for Gondola's challenge.
    pub fn verify(&self, token: &PublicToken) -> Result<(), Refusal> {
        self.check_format(token)?;
        self.verify_signature(token)
    }

    /// Checks the blind RSA signature alone (an RSA verification: tens of microseconds).
    pub fn verify_signature(&self, token: &PublicToken) -> Result<(), Refusal> {
        self.pair
            .pk
            .verify(
                &Signature(token.authenticator().to_vec()),
                None,
                token_input(token),
            )
            .map_err(|_| Refusal::Invalid)
    }

    /// Blind-signs every request of `batch` (about a millisecond of CPU each; call it off the
    /// runtime): the encoded batch response. `Err` when a request is not for this key.
    pub fn sign(
        self: &Arc<Self>,
        batch: GenericBatchTokenRequest,
    ) -> Result<Vec<u8>, &'static str> {
        let store = OneKey(Arc::clone(self));
        let server = IssuerServer::new();
        let mut responses = Vec::with_capacity(batch.token_requests.len());
        for request in batch.token_requests {
            let GenericTokenRequest::Public(request) = request else {
                return Err("this issuer signs blind RSA tokens (type 0x0002) only");
            };
            // The issuer's signing is written as async for key stores that do IO; this one
            // holds the key, so it completes at its first poll.
            let response = futures_util::FutureExt::now_or_never(
                server.issue_token_response(&store, *request),
            )
            .ok_or("the issuer's key store did not answer at once")?
            .map_err(|_| {
                "a token request is not for today's issuer key; fetch the issuer directory again"
            })?;
            responses.push(OptionalTokenResponse {
                token_response: Some(GenericTokenResponse::Public(Box::new(response))),
            });
        }
        GenericBatchTokenResponse {
            token_responses: responses,
        }
        .tls_serialize_detached()
        .map_err(|_| "the signed batch could not be encoded")
    }
}

/// Derives the key of `epoch` from `seed`: RSA key generation fed by a ChaCha stream seeded
/// with SHA-256 of a label, the seed, the epoch and an attempt number.
///
/// A token request names its key by one byte only (the truncated key id, RFC 9578), and the
/// gateway accepts tokens of yesterday's key while it signs with today's: were the two keys'
/// bytes equal, a client holding yesterday's directory would get a signature it cannot
/// unblind instead of a clear refusal. So the first attempt whose truncated id has the
/// epoch's parity in its low bit is kept: adjacent epochs never share a truncated id. Each
/// attempt succeeds with probability 1/2; 64 failures in a row do not happen.
fn derive_key(seed: &[u8; SEED_BYTES], epoch: u64) -> Result<KeyPair, blind_rsa_signatures::Error> {
    for attempt in 0u32..64 {
        let mut hasher = sha2::Sha256::new();
        hasher.update(b"gondola privacy pass issuer key v2");
        hasher.update(seed);
        hasher.update(epoch.to_be_bytes());
        hasher.update(attempt.to_be_bytes());
        let mut rng = rand_rsa::rngs::StdRng::from_seed(hasher.finalize().into());
        let pair = KeyPair::generate(&mut rng, MODULUS_BITS)?;
        if truncated_id(&pair)? & 1 == (epoch & 1) as u8 {
            return Ok(pair);
        }
    }
    Err(blind_rsa_signatures::Error::InternalError)
}

/// The one byte a token request names `pair`'s key by: the last byte of its key id.
fn truncated_id(pair: &KeyPair) -> Result<u8, blind_rsa_signatures::Error> {
    Ok(privacy::tokens::token_key_id(&pair.pk.to_spki()?)[31])
}

/// Why a request's tokens were not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Signed under a key this gateway does not hold now: another epoch or issuer.
    UnknownKey,
    /// Not a token this issuer made for this challenge.
    Invalid,
    /// Spent before.
    Reused,
    /// The spent-token store could not be used.
    Unavailable,
}

impl Refusal {
    pub(crate) fn to_api_error(&self) -> ApiError {
        match self {
            Self::UnknownKey => ApiError::new(
                ErrorCode::AuthenticationFailed,
                "a token was issued under another epoch's or issuer's key; fetch the issuer \
                 directory and new tokens",
            ),
            Self::Invalid => ApiError::new(
                ErrorCode::AuthenticationFailed,
                "a token is not valid: its signature does not verify",
            ),
            Self::Reused => ApiError::new(
                ErrorCode::InsufficientBalance,
                "a token was already spent; every token pays for one request only",
            ),
            Self::Unavailable => ApiError::new(
                ErrorCode::ModelAtCapacity,
                "spent tokens cannot be recorded right now",
            )
            .with_retry_after(1),
        }
    }
}

pub(crate) struct Tokens {
    seed: [u8; SEED_BYTES],
    token_value: u128,
    economy: Arc<Economy>,
    /// Keys of at most two epochs (today's, and yesterday's until it is pruned).
    keys: Mutex<Vec<Arc<EpochKey>>>,
    /// One derivation at a time: a burst at midnight derives the new key once.
    deriving: tokio::sync::Mutex<()>,
    spent: spent::SpentStore,
    /// Counts every RSA verification (the metric `gondola_token_signature_checks`).
    signature_checks: prometheus_client::metrics::counter::Counter,
}

impl Tokens {
    pub(crate) fn open(
        config: &TokensConfig,
        economy: Arc<Economy>,
        signature_checks: prometheus_client::metrics::counter::Counter,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> std::io::Result<Self> {
        // Replicas of a cluster derive the issuer's seed from its seed, so they issue and
        // take the same tokens.
        let seed = match &cluster {
            Some(cluster) => cluster.derived_seed("privacy pass issuer").to_vec(),
            None => crate::oblivious::read_or_create_seed(&config.seed)?,
        };
        let seed: [u8; SEED_BYTES] = seed.try_into().map_err(|_| {
            std::io::Error::other(format!(
                "the issuer seed {} is not {SEED_BYTES} bytes",
                config.seed.display()
            ))
        })?;
        let spent = match cluster {
            Some(cluster) => spent::SpentStore::Shared(cluster),
            None => spent::SpentStore::Local(spent::SpentTokens::open(
                &config.spent_dir,
                economy.clock.today(),
            )?),
        };
        Ok(Self {
            seed,
            token_value: config.token_value.0.max(1),
            economy,
            keys: Mutex::new(Vec::new()),
            deriving: tokio::sync::Mutex::new(()),
            spent,
            signature_checks,
        })
    }

    pub(crate) fn token_value(&self) -> u128 {
        self.token_value
    }

    pub(crate) fn today(&self) -> u64 {
        self.economy.clock.today()
    }

    fn cached(&self, epoch: u64) -> Option<Arc<EpochKey>> {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|key| key.epoch == epoch)
            .cloned()
    }

    /// The key of `epoch`, derived on first use (tens of milliseconds, off the runtime).
    pub(crate) async fn key(&self, epoch: u64) -> Result<Arc<EpochKey>, ApiError> {
        if let Some(key) = self.cached(epoch) {
            return Ok(key);
        }
        let _deriving = self.deriving.lock().await;
        if let Some(key) = self.cached(epoch) {
            return Ok(key);
        }
        let seed = self.seed;
        let value = self.token_value;
        let key = tokio::task::spawn_blocking(move || EpochKey::derive(&seed, epoch, value))
            .await
            .map_err(|_| internal("the issuer key could not be derived"))?
            .map_err(internal)?;
        let key = Arc::new(key);
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.retain(|kept| kept.epoch + 1 >= epoch && kept.epoch <= epoch + 1);
        keys.push(Arc::clone(&key));
        Ok(key)
    }

    /// Today's issuer directory.
    pub(crate) async fn directory(&self) -> Result<Bytes, ApiError> {
        Ok(self.key(self.today()).await?.directory.clone())
    }

    /// Checks a read's tokens without spending them (for reads such as the model list): the
    /// first one alone, which is enough to show the caller holds a token of today's, so a read
    /// costs at most one RSA verification however many tokens it carries.
    pub(crate) async fn check(&self, tokens: &[PublicToken]) -> Result<(), ApiError> {
        let key = self.key(self.today()).await?;
        let first = tokens
            .first()
            .ok_or_else(|| Refusal::Invalid.to_api_error())?;
        key.check_format(first)
            .map_err(|refusal| refusal.to_api_error())?;
        self.signature_checks.inc();
        key.verify_signature(first)
            .map_err(|refusal| refusal.to_api_error())
    }

    /// Checks `tokens` and reserves their nonces for one request: commit the reservation when
    /// the request has a provider, drop it otherwise. Every token a request carries is spent.
    ///
    /// Cheap checks come first, so that a request's CPU is bounded by what it pays: every
    /// token's key id and challenge, then duplicates and spent nonces (a set lookup), and only
    /// then the RSA signatures, one at a time, stopping at the first that fails. A request
    /// whose token fails its signature after others passed loses those others (they are
    /// spent): forged tokens mixed with good ones cannot buy verifications for free.
    pub(crate) async fn redeem(
        &self,
        tokens: &[PublicToken],
    ) -> Result<spent::Reservation, Refusal> {
        let epoch = self.today();
        let key = self.key(epoch).await.map_err(|_| Refusal::Unavailable)?;
        for token in tokens {
            key.check_format(token)?;
        }
        let nonces = tokens.iter().map(PublicToken::nonce).collect();
        let mut reservation =
            self.spent
                .reserve(epoch, nonces)
                .await
                .map_err(|refused| match refused {
                    spent::Refused::Reused => Refusal::Reused,
                    spent::Refused::PastEpoch => Refusal::UnknownKey,
                    spent::Refused::Unavailable => Refusal::Unavailable,
                })?;
        for (index, token) in tokens.iter().enumerate() {
            self.signature_checks.inc();
            if let Err(refusal) = key.verify_signature(token) {
                // The tokens before this one were good: they pay for the verifications.
                let unchecked = reservation.split_off(index);
                drop(unchecked);
                if index > 0 {
                    tracing::info!(
                        spent = index,
                        "a request mixed a forged token with good ones; the good ones are spent"
                    );
                    if let Err(error) = reservation.commit().await {
                        tracing::error!(error = %error, "cannot record spent tokens");
                    }
                }
                return Err(refusal);
            }
        }
        Ok(reservation)
    }

    /// Reads a batch of blinded token requests (so the account can be charged for its size
    /// before anything is signed).
    pub(crate) fn parse_batch(body: &[u8]) -> Result<GenericBatchTokenRequest, ApiError> {
        let batch = GenericBatchTokenRequest::try_from_bytes(body).map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "the body is not a batch of Privacy Pass token requests",
            )
        })?;
        let count = batch.token_requests.len();
        if count == 0 || count > MAX_BATCH {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("a batch holds 1 to {MAX_BATCH} token requests, not {count}"),
            ));
        }
        if batch
            .token_requests
            .iter()
            .any(|request| !matches!(request, GenericTokenRequest::Public(_)))
        {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "this issuer signs blind RSA tokens (type 0x0002) only",
            ));
        }
        Ok(batch)
    }

    /// Blind-signs every request of `batch` under today's key, off the runtime. All or
    /// nothing: a request under another key fails the batch.
    pub(crate) async fn sign(&self, batch: GenericBatchTokenRequest) -> Result<Bytes, ApiError> {
        let key = self.key(self.today()).await?;
        let signed = tokio::task::spawn_blocking(move || key.sign(batch))
            .await
            .map_err(|_| internal("the tokens could not be signed"))?;
        signed
            .map(Bytes::from)
            .map_err(|message| ApiError::new(ErrorCode::InvalidRequest, message))
    }
}

fn internal(message: &'static str) -> ApiError {
    ApiError::new(ErrorCode::Internal, message)
}

/// The issuer key store `privacypass` signs from: today's key alone.
struct OneKey(Arc<EpochKey>);

#[async_trait]
impl IssuerKeyStore for OneKey {
    async fn insert(&self, _: TruncatedTokenKeyId, _: KeyPair) -> bool {
        false
    }

    async fn get(&self, truncated_token_key_id: &TruncatedTokenKeyId) -> Option<KeyPair> {
        (*truncated_token_key_id == self.0.truncated_id).then(|| self.0.pair.clone())
    }

    async fn remove(&self, _: &TruncatedTokenKeyId) -> bool {
        false
    }
}

/// `GET /.well-known/private-token-issuer-directory`: today's key, in the clear (it is the
/// same for everyone).
pub(crate) async fn directory(
    State(state): State<Arc<AppState>>,
    dialect: Option<Extension<Dialect>>,
) -> Response {
    let dialect = dialect.map_or(Dialect::OpenAi, |Extension(dialect)| dialect);
    let result = match &state.tokens {
        Some(tokens) => tokens.directory().await,
        None => Err(not_issued()),
    };
    match result {
        Ok(directory) => (
            [
                (header::CONTENT_TYPE, privacy::tokens::DIRECTORY_MEDIA_TYPE),
                (header::CACHE_CONTROL, "max-age=300"),
            ],
            directory,
        )
            .into_response(),
        Err(error) => error_response(&error, dialect),
    }
}

fn not_issued() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "this gateway issues no privacy tokens (it runs without a ledger)",
    )
}

/// `POST /v1/privacy/tokens`: an account's API key and a batch of blinded token requests in;
/// the account is charged a token's worth for each, and the blind signatures come back.
pub(crate) async fn issue(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match issue_batch(&state, &headers, &body).await {
        Ok(signed) => ([(header::CONTENT_TYPE, BATCH_RESPONSE_MEDIA_TYPE)], signed).into_response(),
        Err(error) => error_response(&error, dialect),
    }
}

async fn issue_batch(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Bytes, ApiError> {
    let (Some(tokens), Some(economy)) = (&state.tokens, &state.economy) else {
        return Err(not_issued());
    };
    let caller = crate::pipeline::admission::authenticate(state, headers)?;
    let account = caller.account.ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthorized,
            "tokens are issued to ledger accounts: use an API key an account created",
        )
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !content_type.eq_ignore_ascii_case(BATCH_REQUEST_MEDIA_TYPE) {
        return Err(ApiError::new(
            ErrorCode::InvalidContentType,
            format!("the body must be {BATCH_REQUEST_MEDIA_TYPE}"),
        ));
    }
    if body.len() > MAX_BATCH_REQUEST_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("a batch request is at most {MAX_BATCH_REQUEST_BYTES} bytes"),
        ));
    }
    let batch = Tokens::parse_batch(body)?;
    let count = u128::try_from(batch.token_requests.len()).unwrap_or(u128::MAX);
    let price = tokens.token_value().saturating_mul(count);
    let mut metering = economy::Metering::begin(economy, account, caller.key_id.as_deref(), price)
        .map_err(crate::economy_api::meter_refusal_error)?;
    // Dropped unfinished (signing failed), the metering releases what it reserved.
    let signed = tokens.sign(batch).await?;
    if let Some(recorded) = metering.finish(price, 0, 0) {
        recorded
            .wait(crate::pipeline::recording::RECORDING_WAIT)
            .await;
    }
    Ok(signed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_epoch_has_its_own_key_and_the_seed_fixes_it() {
        let seed = [7u8; SEED_BYTES];
        let first = derive_key(&seed, 20_000).expect("derived");
        let again = derive_key(&seed, 20_000).expect("derived");
        let next = derive_key(&seed, 20_001).expect("derived");
        let other_seed = derive_key(&[8u8; SEED_BYTES], 20_000).expect("derived");
        let spki = |pair: &KeyPair| pair.pk.to_spki().expect("encoded");
        assert_eq!(spki(&first), spki(&again));
        assert_ne!(spki(&first), spki(&next));
        assert_ne!(spki(&first), spki(&other_seed));
    }

    #[test]
    fn adjacent_epochs_never_share_the_byte_a_token_request_names_its_key_by() {
        let seed = [9u8; SEED_BYTES];
        let ids: Vec<u8> = (30_000..30_006)
            .map(|epoch| truncated_id(&derive_key(&seed, epoch).expect("derived")).expect("id"))
            .collect();
        for (offset, pair) in ids.windows(2).enumerate() {
            assert_ne!(
                pair[0],
                pair[1],
                "epochs {offset} and {} collide",
                offset + 1
            );
        }
    }
}
