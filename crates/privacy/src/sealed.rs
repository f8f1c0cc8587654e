//! The inner layer: chat requests sealed to providers' keys, and the providers' signed receipts.
//!
//! A client seals its chat request (as a chunked Oblivious HTTP request) once to each of a few
//! providers of the model, whose keys the gateway lists ([`wire::sealed`]). The gateway routes
//! one copy to its provider and passes the sealed reply back without being able to read either.
//! The provider opens the request with [`ProviderKeys::open`], and writes its reply through a
//! [`ReplySealer`]: each server-sent event padded and sealed alone as it is generated, then a
//! trailer with its [`Receipt`] signed over the hashes of the request and of the reply. The
//! client opens the reply with [`SealedRequest::open`], which checks the receipt at the end
//! ([`verify_receipt`]).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::{AsyncWrite, AsyncWriteExt, Stream, StreamExt};
use rand::seq::SliceRandom;
use sha2::{Digest, Sha256};
use wire::provider::{EnvelopeError, RECEIPT_PURPOSE, Receipt, SignedEnvelope};
use wire::sealed::{
    MAX_TARGETS, RECEIPT_FIELD, SealedChat, SealedEvent, SealedTarget, SealingProvider,
};
use wire::sse::{SseEvent, SseParser};

use crate::client::{ClientError, GatewayKeys, ResponseOpener, seal_chunked};
use crate::framing;

/// The path a sealed chat request names inside its seal.
pub const INNER_CHAT_PATH: &str = "/v1/chat/completions";
/// The path a sealed image request names inside its seal (Venice's shape).
pub const INNER_IMAGE_PATH: &str = "/v1/image/generate";

/// What a sealed request asks for, by the path inside its seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inner {
    Chat,
    Image,
}
/// Largest event of a sealed reply stream (base64 of one sealed piece).
pub const MAX_SEALED_EVENT_BYTES: usize = 4 * 1024 * 1024;
/// Largest server-sent event a provider seals as one piece; a larger one is passed on in pieces.
const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Bytes of sealed reply buffered between a provider's sealing task and its connection.
const SEALED_BUFFER_BYTES: usize = 64 * 1024;
/// Label under which a provider's sealing key is derived from its identity's secret.
const KEY_LABEL: &[u8] = b"gondola/provider-sealing-key/v1";

/// Up to [`MAX_TARGETS`] of `providers` that serve `model`, in random order (so that the order
/// says nothing about the client, and load spreads).
pub fn targets<'a>(providers: &'a [SealingProvider], model: &str) -> Vec<&'a SealingProvider> {
    let mut serving: Vec<&SealingProvider> = providers
        .iter()
        .filter(|provider| provider.models.iter().any(|served| served == model))
        .collect();
    serving.shuffle(&mut rand::rng());
    serving.truncate(MAX_TARGETS);
    serving
}

struct Target {
    opener: ResponseOpener,
    public_key: String,
}

/// A chat request sealed to one or more providers: the [`SealedChat`] body to send, and what
/// opens whichever provider's reply comes back.
pub struct SealedRequest {
    pub body: Vec<u8>,
    targets: HashMap<String, Target>,
    request_sha256: [u8; 32],
}

/// Seals the chat request `chat_body` (OpenAI JSON naming `model`) to each of `targets`,
/// declaring `model` and `max_tokens` to the gateway.
pub async fn seal_chat(
    targets: &[&SealingProvider],
    model: &str,
    max_tokens: u32,
    chat_body: &[u8],
) -> Result<SealedRequest, ClientError> {
    let (sealed, openers) = seal_to(targets, model, INNER_CHAT_PATH, chat_body).await?;
    let body = serde_json::to_vec(&SealedChat {
        model: model.to_owned(),
        max_tokens,
        sealed,
    })
    .map_err(|error| ClientError::Seal(error.to_string()))?;
    Ok(SealedRequest {
        body,
        targets: openers,
        request_sha256: Sha256::digest(chat_body).into(),
    })
}

/// Seals the image request `image_body` (Venice's `/image/generate` JSON naming `model`) to
/// each of `targets`, declaring `model` and `variants` to the gateway.
pub async fn seal_images(
    targets: &[&SealingProvider],
    model: &str,
    variants: u32,
    image_body: &[u8],
) -> Result<SealedRequest, ClientError> {
    let (sealed, openers) = seal_to(targets, model, INNER_IMAGE_PATH, image_body).await?;
    let body = serde_json::to_vec(&wire::sealed::SealedImages {
        model: model.to_owned(),
        variants,
        sealed,
    })
    .map_err(|error| ClientError::Seal(error.to_string()))?;
    Ok(SealedRequest {
        body,
        targets: openers,
        request_sha256: Sha256::digest(image_body).into(),
    })
}

/// `body`, as a request for `path`, sealed once to each of `targets` (at most
/// [`MAX_TARGETS`]): the copies, and what opens each one's reply.
async fn seal_to(
    targets: &[&SealingProvider],
    model: &str,
    path: &str,
    body: &[u8],
) -> Result<(Vec<SealedTarget>, HashMap<String, Target>), ClientError> {
    if targets.is_empty() {
        return Err(ClientError::Seal(format!(
            "no provider of {model} takes sealed requests"
        )));
    }
    let mut sealed = Vec::with_capacity(targets.len());
    let mut openers = HashMap::with_capacity(targets.len());
    for provider in targets.iter().take(MAX_TARGETS) {
        let encoded = BASE64
            .decode(&provider.keys)
            .map_err(|error| ClientError::Keys(format!("provider {}: {error}", provider.id)))?;
        let keys = GatewayKeys::decode(&encoded)?;
        let (request, opener) = seal_chunked(
            &keys,
            "POST",
            path,
            &[("content-type", "application/json")],
            body,
        )
        .await?;
        sealed.push(SealedTarget {
            provider: provider.id.clone(),
            request: BASE64.encode(request),
        });
        openers.insert(
            provider.id.clone(),
            Target {
                opener,
                public_key: provider.public_key.clone(),
            },
        );
    }
    Ok((sealed, openers))
}

/// Why a receipt was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("the reply carries no receipt")]
    Missing,
    #[error("the receipt is malformed: {0}")]
    Malformed(String),
    #[error("the receipt's signature does not verify: {0}")]
    Signature(#[from] EnvelopeError),
    #[error("the receipt is signed by another key than the provider's")]
    WrongSigner,
    #[error("the receipt is for another {0}")]
    Mismatch(&'static str),
}

/// Checks a receipt (`envelope`, the trailer field's JSON): signed by `public_key` (hex), a
/// receipt, for `provider`, over a request and a reply with these hashes.
pub fn verify_receipt(
    envelope: &str,
    public_key: &str,
    provider: &str,
    request_sha256: &[u8; 32],
    response_sha256: &[u8; 32],
) -> Result<Receipt, ReceiptError> {
    let envelope: SignedEnvelope = serde_json::from_str(envelope)
        .map_err(|error| ReceiptError::Malformed(error.to_string()))?;
    if !envelope.public_key.eq_ignore_ascii_case(public_key) {
        return Err(ReceiptError::WrongSigner);
    }
    let (_, receipt): (_, Receipt) = envelope.verify()?;
    if receipt.purpose != RECEIPT_PURPOSE {
        return Err(ReceiptError::Mismatch("purpose"));
    }
    if receipt.provider != provider {
        return Err(ReceiptError::Mismatch("provider"));
    }
    if !receipt
        .request_sha256
        .eq_ignore_ascii_case(&hex::encode(request_sha256))
    {
        return Err(ReceiptError::Mismatch("request"));
    }
    if !receipt
        .response_sha256
        .eq_ignore_ascii_case(&hex::encode(response_sha256))
    {
        return Err(ReceiptError::Mismatch("reply"));
    }
    Ok(receipt)
}

/// A provider's sealed reply, opened: its status and fields at once, its content as it
/// arrives, and the verdict on its receipt once the content has ended.
pub struct SealedReply {
    pub provider: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The decrypted content. It ends with an error if the reply breaks off, was tampered with
    /// or its receipt does not verify.
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
    /// The checked receipt, or why it failed, once `body` has ended (dropped unsent if the
    /// reply broke off first).
    pub receipt: tokio::sync::oneshot::Receiver<Result<Receipt, ReceiptError>>,
}

impl SealedReply {
    /// The value of field `name`, if the reply has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::client::field(&self.headers, name)
    }
}

/// The sealed bytes carried by a stream of [`SealedEvent`]s; an error event or a garbled stream
/// ends it with an error.
fn sealed_bytes<E>(
    events: impl Stream<Item = Result<Bytes, E>> + Send + 'static,
) -> BoxStream<'static, std::io::Result<Bytes>>
where
    E: std::error::Error + Send + Sync + 'static,
{
    struct State<S> {
        events: S,
        parser: SseParser,
        pending: std::collections::VecDeque<SseEvent>,
    }
    let state = State {
        events: Box::pin(events),
        parser: SseParser::new(MAX_SEALED_EVENT_BYTES),
        pending: std::collections::VecDeque::new(),
    };
    stream::try_unfold(state, |mut state| async move {
        loop {
            match state.pending.pop_front() {
                Some(SseEvent::Done) => return Ok(None),
                Some(SseEvent::Data(data)) => {
                    let event: SealedEvent = serde_json::from_str(&data).map_err(|_| {
                        std::io::Error::other("the gateway sent a malformed sealed event")
                    })?;
                    if let Some(error) = event.error {
                        return Err(std::io::Error::other(format!(
                            "the reply broke off ({}): {}",
                            error.code, error.message
                        )));
                    }
                    if let Some(sealed) = event.sealed {
                        let bytes = BASE64.decode(sealed).map_err(|_| {
                            std::io::Error::other(
                                "the gateway sent sealed bytes that are not base64",
                            )
                        })?;
                        return Ok(Some((Bytes::from(bytes), state)));
                    }
                }
                None => match state.events.next().await {
                    // The opener notices a reply cut short.
                    None => return Ok(None),
                    Some(Err(error)) => return Err(std::io::Error::other(error)),
                    Some(Ok(bytes)) => {
                        let events = state.parser.push(&bytes).map_err(std::io::Error::other)?;
                        state.pending.extend(events);
                    }
                },
            }
        }
    })
    .boxed()
}

impl SealedRequest {
    /// Opens the reply of `provider` (one of the targets; the gateway names it in
    /// [`wire::sealed::PROVIDER_HEADER`]) from the gateway's stream of [`SealedEvent`]s.
    pub async fn open<E>(
        mut self,
        provider: &str,
        events: impl Stream<Item = Result<Bytes, E>> + Send + 'static,
    ) -> Result<SealedReply, ClientError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let target = self.targets.remove(provider).ok_or_else(|| {
            ClientError::Open(format!(
                "the gateway answered for {provider}, which the request was not sealed to"
            ))
        })?;
        let opened = target.opener.open(sealed_bytes(events)).await?;
        let (verdict, receipt) = tokio::sync::oneshot::channel();
        let check = Check {
            body: opened.body,
            hasher: Sha256::new(),
            trailer: Some(opened.trailer),
            verdict: Some(verdict),
            public_key: target.public_key,
            provider: provider.to_owned(),
            request_sha256: self.request_sha256,
        };
        let body = stream::try_unfold(check, |mut check| async move {
            match check.body.next().await {
                Some(Ok(bytes)) => {
                    check.hasher.update(&bytes);
                    Ok(Some((bytes, check)))
                }
                Some(Err(error)) => Err(error),
                None => {
                    let Some(trailer) = check.trailer.take() else {
                        return Ok(None);
                    };
                    let fields = trailer.await.map_err(|_| {
                        std::io::Error::other("the reply ended without its trailer")
                    })?;
                    let response_sha256: [u8; 32] =
                        std::mem::take(&mut check.hasher).finalize().into();
                    let verdict = fields
                        .iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case(RECEIPT_FIELD))
                        .ok_or(ReceiptError::Missing)
                        .and_then(|(_, envelope)| {
                            verify_receipt(
                                envelope,
                                &check.public_key,
                                &check.provider,
                                &check.request_sha256,
                                &response_sha256,
                            )
                        });
                    let failed = verdict.as_ref().err().cloned();
                    if let Some(sender) = check.verdict.take() {
                        let _ = sender.send(verdict);
                    }
                    match failed {
                        Some(error) => Err(std::io::Error::other(error)),
                        None => Ok(None),
                    }
                }
            }
        })
        .boxed();
        Ok(SealedReply {
            provider: provider.to_owned(),
            status: opened.status,
            headers: opened.headers,
            body,
            receipt,
        })
    }
}

struct Check {
    body: BoxStream<'static, std::io::Result<Bytes>>,
    hasher: Sha256,
    trailer: Option<tokio::sync::oneshot::Receiver<Vec<(String, String)>>>,
    verdict: Option<tokio::sync::oneshot::Sender<Result<Receipt, ReceiptError>>>,
    public_key: String,
    provider: String,
    request_sha256: [u8; 32],
}

/// Why a provider could not open a sealed request.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the sealed request could not be decrypted")]
    Undecryptable,
    #[error("the decrypted request is not Binary HTTP")]
    NotBinaryHttp,
    #[error("a sealed request may only be POST {INNER_CHAT_PATH} or {INNER_IMAGE_PATH}")]
    NotChat,
    #[error("cannot encrypt the reply")]
    Sealer,
}

/// A provider's sealing keys, derived from its identity's secret, and their published form.
pub struct ProviderKeys {
    keys: crate::keys::KeySet,
}

impl ProviderKeys {
    /// The keys derived from `secret` (X25519 and, with `post_quantum`, X-Wing listed first;
    /// HKDF-SHA256, AES-128-GCM or ChaCha20-Poly1305): the same secret gives the same keys
    /// after every restart.
    pub fn derive(secret: &[u8], post_quantum: bool) -> Result<Self, ohttp::Error> {
        let mut ikm = Sha256::new();
        ikm.update(KEY_LABEL);
        ikm.update(secret);
        Ok(Self {
            keys: crate::keys::KeySet::derive(0, &ikm.finalize(), post_quantum)?,
        })
    }

    /// The `application/ohttp-keys` list, base64, as registrations carry it.
    pub fn encoded_base64(&self) -> String {
        BASE64.encode(self.keys.encoded())
    }

    /// Opens a sealed request: what it asks for, its JSON body, the sealer its reply is written
    /// through, and the sealed reply's bytes as the sealer produces them.
    pub async fn open(
        &self,
        sealed: &[u8],
    ) -> Result<(Inner, Vec<u8>, ReplySealer, tokio::io::DuplexStream), OpenError> {
        use futures_util::AsyncReadExt;
        use tokio_util::compat::TokioAsyncWriteCompatExt;

        let mut request = self
            .keys
            .server_for(sealed)
            .ok_or(OpenError::Undecryptable)?
            .decapsulate_stream(sealed);
        let mut plaintext = Vec::new();
        request
            .read_to_end(&mut plaintext)
            .await
            .map_err(|_| OpenError::Undecryptable)?;
        let message = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&plaintext[..]))
            .map_err(|_| OpenError::NotBinaryHttp)?;
        let control = message.control();
        if control.method() != Some(b"POST".as_slice()) {
            return Err(OpenError::NotChat);
        }
        let inner = match control.path() {
            Some(path) if path == INNER_CHAT_PATH.as_bytes() => Inner::Chat,
            Some(path) if path == INNER_IMAGE_PATH.as_bytes() => Inner::Image,
            _ => return Err(OpenError::NotChat),
        };
        let body = message.content().to_vec();
        let request_sha256 = Sha256::digest(&body).into();
        let (sink, source) = tokio::io::duplex(SEALED_BUFFER_BYTES);
        let writer = request
            .response(sink.compat_write())
            .map_err(|_| OpenError::Sealer)?;
        Ok((
            inner,
            body,
            ReplySealer {
                writer: Box::new(writer),
                hasher: Sha256::new(),
                request_sha256,
                splitter: framing::EventSplitter::new(MAX_EVENT_BYTES),
            },
            source,
        ))
    }
}

/// Writes a provider's reply to a sealed request: head, content (each event padded and sealed
/// alone), then the trailer with the signed receipt. Hashes the content as it goes.
pub struct ReplySealer {
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    hasher: Sha256,
    request_sha256: [u8; 32],
    splitter: framing::EventSplitter,
}

impl ReplySealer {
    /// Hex SHA-256 of the request's body, for the receipt.
    pub fn request_sha256(&self) -> String {
        hex::encode(self.request_sha256)
    }

    /// The status and content type, padded to a bucket.
    pub async fn head(&mut self, status: u16, content_type: &str) -> std::io::Result<()> {
        let head = framing::response_head(
            status,
            [(b"content-type".as_slice(), content_type.as_bytes())],
        );
        self.writer.write_all(&head).await?;
        self.writer.flush().await
    }

    /// Stream bytes of a server-sent event reply, in any pieces: each whole event is padded to
    /// its bucket and sealed as one chunk.
    pub async fn events(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        for event in self.splitter.push(bytes) {
            self.piece(&framing::pad_event(&event)).await?;
        }
        Ok(())
    }

    /// A whole body (not a stream), padded to a bucket with trailing spaces (JSON allows them).
    pub async fn whole(&mut self, body: &[u8]) -> std::io::Result<()> {
        let mut padded = body.to_vec();
        padded.resize(framing::message_bucket(body.len()), b' ');
        self.piece(&padded).await
    }

    async fn piece(&mut self, content: &[u8]) -> std::io::Result<()> {
        if content.is_empty() {
            return Ok(());
        }
        self.hasher.update(content);
        self.writer
            .write_all(&framing::content_chunk(content))
            .await?;
        self.writer.flush().await
    }

    /// Ends the content (any unterminated last event first), then writes the trailer with the
    /// receipt that `sign` makes from the hex SHA-256 of all the content (what the client will
    /// have decrypted), then the final chunk.
    pub async fn finish(mut self, sign: impl FnOnce(String) -> String) -> std::io::Result<()> {
        let splitter = std::mem::replace(&mut self.splitter, framing::EventSplitter::new(1));
        if let Some(rest) = splitter.finish() {
            self.piece(&framing::pad_event(&rest)).await?;
        }
        let receipt = sign(hex::encode(self.hasher.clone().finalize()));
        let mut end = vec![0u8];
        framing::put_varint(&mut end, RECEIPT_FIELD.len() as u64);
        end.extend_from_slice(RECEIPT_FIELD.as_bytes());
        framing::put_varint(&mut end, receipt.len() as u64);
        end.extend_from_slice(receipt.as_bytes());
        end.push(0);
        self.writer.write_all(&end).await?;
        self.writer.close().await
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use wire::provider::provider_id;

    use super::*;

    const CHAT: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"hello"}]}"#;

    fn identity(byte: u8) -> SigningKey {
        SigningKey::from_bytes(&[byte; 32])
    }

    fn listed(key: &SigningKey, keys: &ProviderKeys) -> SealingProvider {
        SealingProvider {
            id: provider_id(&key.verifying_key()),
            public_key: hex::encode(key.verifying_key().as_bytes()),
            keys: keys.encoded_base64(),
            models: vec!["m".into()],
        }
    }

    /// The provider's side: opens `sealed` and writes two events and a receipt signed by
    /// `signer`, changed by `alter` before it is signed. Returns the sealed reply as the
    /// gateway passes it on, and the request's body as the provider read it.
    async fn provider_reply(
        keys: &ProviderKeys,
        signer: &SigningKey,
        sealed: &[u8],
        alter: impl FnOnce(&mut Receipt),
    ) -> (Vec<u8>, Vec<u8>) {
        use tokio::io::AsyncReadExt;
        let (inner, body, mut sealer, mut output) = keys.open(sealed).await.expect("opens");
        assert_eq!(inner, Inner::Chat);
        let writer = async move {
            sealer.head(200, "text/event-stream").await.expect("head");
            sealer
                .events(b"data: {\"a\":1}\n\ndata: [DONE]\n\n")
                .await
                .expect("events");
            let request_sha256 = sealer.request_sha256();
            sealer
                .finish(|response_sha256| {
                    let mut receipt = Receipt {
                        purpose: RECEIPT_PURPOSE.into(),
                        provider: provider_id(&signer.verifying_key()),
                        model: "m".into(),
                        quantization: "Q4_1".into(),
                        request_sha256,
                        response_sha256,
                        prompt_tokens: 3,
                        completion_tokens: 1,
                        issued_at_ms: 1,
                    };
                    alter(&mut receipt);
                    serde_json::to_string(&SignedEnvelope::sign(signer, &receipt).expect("signs"))
                        .expect("json")
                })
                .await
                .expect("finish");
        };
        let mut reply = Vec::new();
        let reader = output.read_to_end(&mut reply);
        let ((), read) = tokio::join!(writer, reader);
        read.expect("read");
        (reply, body)
    }

    /// The gateway's stream of events carrying `reply`, in pieces.
    fn events(reply: &[u8]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let mut frames: Vec<Result<Bytes, std::io::Error>> = reply
            .chunks(100)
            .map(|piece| {
                let event = SealedEvent {
                    sealed: Some(BASE64.encode(piece)),
                    ..SealedEvent::default()
                };
                Ok(Bytes::from(format!(
                    "data: {}\n\n",
                    serde_json::to_string(&event).expect("json")
                )))
            })
            .collect();
        frames.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
        stream::iter(frames)
    }

    async fn read(
        reply: SealedReply,
    ) -> (
        std::io::Result<Vec<u8>>,
        Option<Result<Receipt, ReceiptError>>,
    ) {
        let mut body = reply.body;
        let mut content = Vec::new();
        let mut outcome = Ok(());
        while let Some(piece) = body.next().await {
            match piece {
                Ok(piece) => content.extend_from_slice(&piece),
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        (outcome.map(|()| content), reply.receipt.await.ok())
    }

    #[tokio::test]
    async fn a_sealed_request_opens_only_at_its_provider_and_the_reply_verifies_against_its_receipt()
     {
        // With X25519 alone, and with X-Wing listed first (which the client then seals to).
        for post_quantum in [false, true] {
            let signer = identity(1);
            let keys = ProviderKeys::derive(&signer.to_bytes(), post_quantum).expect("keys");
            let again = ProviderKeys::derive(&signer.to_bytes(), post_quantum).expect("keys");
            assert_eq!(keys.encoded_base64(), again.encoded_base64());
            let other = ProviderKeys::derive(&identity(2).to_bytes(), post_quantum).expect("keys");
            assert_ne!(keys.encoded_base64(), other.encoded_base64());

            let provider = listed(&signer, &keys);
            let request = seal_chat(&[&provider], "m", 16, CHAT).await.expect("seals");
            let declared: SealedChat = serde_json::from_slice(&request.body).expect("json");
            assert_eq!((declared.model.as_str(), declared.max_tokens), ("m", 16));
            let sealed = BASE64.decode(&declared.sealed[0].request).expect("base64");
            assert!(!sealed.windows(5).any(|window| window == b"hello"));
            // Another provider's key does not open it.
            assert!(matches!(
                other.open(&sealed).await.err(),
                Some(OpenError::Undecryptable)
            ));
            let (reply, body) = provider_reply(&keys, &signer, &sealed, |_| {}).await;
            assert_eq!(body, CHAT);
            let opened = request
                .open(&provider.id, events(&reply))
                .await
                .expect("opens");
            assert_eq!(opened.status, 200);
            assert_eq!(opened.header("content-type"), Some("text/event-stream"));
            let (content, receipt) = read(opened).await;
            let content = content.expect("a verified reply");
            let events: Vec<Vec<u8>> = framing::EventSplitter::new(1 << 20).push(&content);
            let events: Vec<&[u8]> = events
                .iter()
                .map(|event| framing::strip_event_padding(event))
                .collect();
            assert_eq!(events, [&b"data: {\"a\":1}\n\n"[..], b"data: [DONE]\n\n"]);
            let receipt = receipt.expect("a verdict").expect("verifies");
            assert_eq!(receipt.provider, provider.id);
            assert_eq!(receipt.request_sha256, hex::encode(Sha256::digest(CHAT)));
            assert_eq!(
                receipt.response_sha256,
                hex::encode(Sha256::digest(&content))
            );
        }
    }

    #[tokio::test]
    async fn a_receipt_that_does_not_match_the_reply_or_its_provider_fails() {
        let signer = identity(3);
        let keys = ProviderKeys::derive(&signer.to_bytes(), false).expect("keys");
        let provider = listed(&signer, &keys);
        // A receipt over another reply, another request, for another provider, or signed by
        // another key: the reply's body ends in an error, and the verdict says why.
        type Case<'a> = (fn(&mut Receipt), &'a SigningKey, ReceiptError);
        let cases: [Case; 4] = [
            (
                |receipt| receipt.response_sha256 = hex::encode([0u8; 32]),
                &signer,
                ReceiptError::Mismatch("reply"),
            ),
            (
                |receipt| receipt.request_sha256 = hex::encode([0u8; 32]),
                &signer,
                ReceiptError::Mismatch("request"),
            ),
            (
                |receipt| receipt.provider = "pv-0000000000000000".into(),
                &signer,
                ReceiptError::Mismatch("provider"),
            ),
            (|_| {}, &identity(4), ReceiptError::WrongSigner),
        ];
        for (alter, key, expected) in cases {
            let request = seal_chat(&[&provider], "m", 16, CHAT).await.expect("seals");
            let declared: SealedChat = serde_json::from_slice(&request.body).expect("json");
            let sealed = BASE64.decode(&declared.sealed[0].request).expect("base64");
            let (reply, _) = provider_reply(&keys, key, &sealed, alter).await;
            let opened = request
                .open(&provider.id, events(&reply))
                .await
                .expect("opens");
            let (content, receipt) = read(opened).await;
            assert!(content.is_err(), "{expected}");
            assert_eq!(receipt, Some(Err(expected)));
        }

        // A tampered signature, and a reply tampered with on the way, fail too.
        let signed = SignedEnvelope::sign(
            &signer,
            &Receipt {
                purpose: RECEIPT_PURPOSE.into(),
                provider: provider.id.clone(),
                model: "m".into(),
                quantization: "Q4_1".into(),
                request_sha256: hex::encode([1u8; 32]),
                response_sha256: hex::encode([2u8; 32]),
                prompt_tokens: 1,
                completion_tokens: 1,
                issued_at_ms: 1,
            },
        )
        .expect("signs");
        let good = serde_json::to_string(&signed).expect("json");
        assert!(
            verify_receipt(
                &good,
                &provider.public_key,
                &provider.id,
                &[1; 32],
                &[2; 32]
            )
            .is_ok()
        );
        let forged = good.replace("\\\"completion_tokens\\\":1", "\\\"completion_tokens\\\":9");
        assert_ne!(forged, good);
        assert!(matches!(
            verify_receipt(
                &forged,
                &provider.public_key,
                &provider.id,
                &[1; 32],
                &[2; 32]
            ),
            Err(ReceiptError::Signature(_))
        ));

        let request = seal_chat(&[&provider], "m", 16, CHAT).await.expect("seals");
        let declared: SealedChat = serde_json::from_slice(&request.body).expect("json");
        let sealed = BASE64.decode(&declared.sealed[0].request).expect("base64");
        let (mut reply, _) = provider_reply(&keys, &signer, &sealed, |_| {}).await;
        let middle = reply.len() / 2;
        reply[middle] ^= 1;
        let opened = request.open(&provider.id, events(&reply)).await;
        match opened {
            Err(_) => {}
            Ok(opened) => {
                let (content, receipt) = read(opened).await;
                assert!(content.is_err());
                assert!(!matches!(receipt, Some(Ok(_))));
            }
        }
    }
}
