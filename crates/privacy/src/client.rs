//! Sealing requests to a gateway's key and opening its replies.
//!
//! [`seal`] and [`Sealed::open`] are the whole-message form (`message/ohttp-req`): the reply
//! arrives at once. [`seal_chunked`] and [`ResponseOpener::open`] are the chunked form
//! (`message/ohttp-chunked-req`), whose reply is read as it arrives, event by event. Both pad the
//! request to a size bucket before sealing it.

use std::io::Cursor;

use bhttp::{Message, Mode};
use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::{AsyncReadExt, AsyncWriteExt, StreamExt, TryStreamExt};
use ohttp::{ClientRequest, KeyConfig};
use tokio_util::compat::TokioAsyncReadCompatExt;
use tokio_util::io::StreamReader;

use crate::framing::pad_message;
use crate::{KEYS_PATH, MAX_KEYS_BYTES};

/// Why a request could not be sealed or a reply opened.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the gateway's key configuration is unusable: {0}")]
    Keys(String),
    #[error("cannot fetch the gateway's key configuration from {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("cannot seal the request: {0}")]
    Seal(String),
    #[error("the reply could not be decrypted: {0}")]
    Open(String),
    #[error("the decrypted reply is not Binary HTTP: {0}")]
    Format(String),
}

/// A gateway's key configuration, as a client uses it.
#[derive(Debug, Clone)]
pub struct GatewayKeys {
    config: KeyConfig,
}

impl GatewayKeys {
    /// The first usable configuration of an `application/ohttp-keys` body. (Chosen explicitly:
    /// the crate's own list helper takes the last entry.)
    pub fn decode(encoded: &[u8]) -> Result<Self, ClientError> {
        let configs = KeyConfig::decode_list(encoded)
            .map_err(|error| ClientError::Keys(error.to_string()))?;
        let config = configs
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Keys("the list is empty".into()))?;
        Ok(Self { config })
    }

    /// Fetches and decodes the configuration published under `base` (a gateway, or a relay that
    /// forwards the well-known path).
    pub async fn fetch(http: &reqwest::Client, base: &str) -> Result<Self, ClientError> {
        let url = format!("{}{KEYS_PATH}", base.trim_end_matches('/'));
        let failed = |reason: String| ClientError::Fetch {
            url: url.clone(),
            reason,
        };
        let response = http
            .get(&url)
            .send()
            .await
            .map_err(|error| failed(error.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("answered {}", response.status())));
        }
        let body = crate::read_bounded(response, MAX_KEYS_BYTES)
            .await
            .map_err(failed)?;
        Self::decode(&body)
    }

    fn request(&self) -> Result<ClientRequest, ClientError> {
        let mut config = self.config.clone();
        ClientRequest::from_config(&mut config)
            .map_err(|error| ClientError::Keys(error.to_string()))
    }
}

/// A request as padded Binary HTTP.
fn encode_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<u8>, ClientError> {
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
        .map_err(|error| ClientError::Seal(error.to_string()))?;
    pad_message(&mut plaintext);
    Ok(plaintext)
}

/// A sealed request and what opens its reply.
pub struct Sealed {
    pub body: Vec<u8>,
    opener: ohttp::ClientResponse,
}

/// A reply, decrypted.
#[derive(Debug)]
pub struct Opened {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Seals `method path` with `headers` and `body` to the first usable configuration of
/// `encoded_keys` (an `application/ohttp-keys` body), as one message.
pub fn seal(
    encoded_keys: &[u8],
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Sealed, ClientError> {
    let keys = GatewayKeys::decode(encoded_keys)?;
    let plaintext = encode_request(method, path, headers, body)?;
    let (body, opener) = keys
        .request()?
        .encapsulate(&plaintext)
        .map_err(|error| ClientError::Seal(error.to_string()))?;
    Ok(Sealed { body, opener })
}

fn fields(header: &bhttp::FieldSection) -> Vec<(String, String)> {
    header
        .iter()
        .map(|field| {
            (
                String::from_utf8_lossy(field.name()).into_owned(),
                String::from_utf8_lossy(field.value()).into_owned(),
            )
        })
        .collect()
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
        Ok(Opened {
            status,
            headers: fields(message.header()),
            body: message.content().to_vec(),
        })
    }
}

/// The sealed reply's bytes, handed to the opener once the reply has started to arrive.
type ReplyBytes = BoxStream<'static, std::io::Result<Bytes>>;
/// Opens the chunked reply to one chunked request.
pub struct ResponseOpener {
    /// Decrypts the reply's chunks (the crate does not name its type).
    opener: Box<dyn futures_util::AsyncRead + Send + Unpin>,
    reply: tokio::sync::oneshot::Sender<ReplyBytes>,
}

/// The value of field `name` among `headers`, if there is one.
pub(crate) fn field<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(field, _)| field.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// A chunked reply, opened: status and fields at once, the body as it arrives.
pub struct OpenedStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The decrypted body. An error means the reply was cut short or tampered with.
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
    /// The reply's trailer fields, once the body has been read to its end (dropped unsent if
    /// the body broke off).
    pub trailer: tokio::sync::oneshot::Receiver<Vec<(String, String)>>,
}

impl OpenedStream {
    /// The value of field `name`, if the reply has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        field(&self.headers, name)
    }
}

/// Seals `method path` with `headers` and `body` as a chunked request: the `message/ohttp-chunked-req`
/// body to send, and what opens its `message/ohttp-chunked-res` reply.
pub async fn seal_chunked(
    keys: &GatewayKeys,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(Vec<u8>, ResponseOpener), ClientError> {
    let plaintext = encode_request(method, path, headers, body)?;
    let failed = |error: std::io::Error| ClientError::Seal(error.to_string());
    let mut sealed = Vec::with_capacity(plaintext.len() + 128);
    let mut writer = keys
        .request()?
        .encapsulate_stream(&mut sealed)
        .map_err(|error| ClientError::Seal(error.to_string()))?;
    writer.write_all(&plaintext).await.map_err(failed)?;
    writer.close().await.map_err(failed)?;
    // The reply's bytes come later, through this channel: the opener must be made now, from
    // the request's keys, while the reply does not exist yet.
    let (reply, arrived) = tokio::sync::oneshot::channel::<ReplyBytes>();
    let bytes: ReplyBytes = stream::once(async move {
        arrived.await.unwrap_or_else(|_| {
            stream::once(async {
                Err(std::io::Error::other(
                    "the reply was never handed to the opener",
                ))
            })
            .boxed()
        })
    })
    .flatten()
    .boxed();
    let opener = Box::new(
        writer
            .response(StreamReader::new(bytes).compat())
            .map_err(|error| ClientError::Seal(error.to_string()))?,
    );
    drop(writer);
    Ok((sealed, ResponseOpener { opener, reply }))
}

/// Largest piece of decrypted body handed on at once.
const READ_BYTES: usize = 16 * 1024;

impl ResponseOpener {
    /// Decrypts the reply `body` (the gateway's `message/ohttp-chunked-res` bytes, in any
    /// pieces): returns once the status and fields are in, with the body to follow.
    pub async fn open<E>(
        self,
        body: impl futures_util::Stream<Item = Result<Bytes, E>> + Send + 'static,
    ) -> Result<OpenedStream, ClientError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        // Only fails if the opener is gone, and it is right here.
        let _ = self.reply.send(body.map_err(std::io::Error::other).boxed());
        let mut message = <Message as bhttp::stream::AsyncReadMessage>::async_read(self.opener);
        let head = message.header().await.map_err(|error| match error {
            bhttp::Error::Io(error) => ClientError::Open(error.to_string()),
            other => ClientError::Format(other.to_string()),
        })?;
        let status = head
            .control()
            .status()
            .map(|status| status.code())
            .ok_or_else(|| ClientError::Format("not a response".into()))?;
        let headers = fields(&head);
        let (trailer_sender, trailer) = tokio::sync::oneshot::channel();
        let body = stream::try_unfold(
            (message, Some(trailer_sender)),
            |(mut message, mut trailer_sender)| async move {
                let mut buffer = vec![0u8; READ_BYTES];
                let read = match message.body() {
                    Ok(mut body) => body.read(&mut buffer).await?,
                    // The content has ended (a known-length body moves past it by itself).
                    Err(bhttp::Error::InvalidState) => 0,
                    Err(error) => return Err(std::io::Error::other(error)),
                };
                if read == 0 {
                    if let Some(sender) = trailer_sender.take() {
                        let trailer = message.trailer().await.map_err(std::io::Error::other)?;
                        // Nobody waiting for the trailer is fine.
                        let _ = sender.send(fields(&trailer));
                    }
                    return Ok(None);
                }
                buffer.truncate(read);
                Ok(Some((Bytes::from(buffer), (message, trailer_sender))))
            },
        )
        .boxed();
        Ok(OpenedStream {
            status,
            headers,
            body,
            trailer,
        })
    }
}
