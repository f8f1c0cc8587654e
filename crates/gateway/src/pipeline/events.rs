//! A provider's server-sent events: its body read with an idle timeout between reads and
//! parsed into events, for any operation that streams.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use wire::error::{ApiError, ErrorCode, ErrorSource};
use wire::sse::{SseEvent, SseParser};

pub(crate) type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A provider's SSE body read into parsed events, with an idle timeout on each read; shared by
/// the plain and the sealed paths.
pub(crate) struct ProviderEvents {
    body: ByteStream,
    parser: SseParser,
    events: VecDeque<SseEvent>,
    idle_timeout: Duration,
}

impl ProviderEvents {
    pub(crate) fn new(
        response: reqwest::Response,
        max_event_bytes: usize,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            body: Box::pin(response.bytes_stream()),
            parser: SseParser::new(max_event_bytes),
            events: VecDeque::new(),
            idle_timeout,
        }
    }

    /// The next event already received, if any.
    pub(crate) fn pop(&mut self) -> Option<SseEvent> {
        self.events.pop_front()
    }

    /// Waits (at most the idle timeout) for more of the body and parses it: `false` when the
    /// body has ended.
    pub(crate) async fn receive(&mut self) -> Result<bool, ApiError> {
        match tokio::time::timeout(self.idle_timeout, self.body.next()).await {
            Err(_) => Err(upstream_error(
                ErrorCode::RequestTimeout,
                "the provider stalled mid-stream",
            )),
            Ok(None) => Ok(false),
            Ok(Some(Err(_))) => Err(upstream_error(
                ErrorCode::InferenceFailed,
                "the connection to the provider broke mid-stream",
            )),
            Ok(Some(Ok(bytes))) => {
                let events = self.parser.push(&bytes).map_err(|error| {
                    upstream_error(
                        ErrorCode::UpstreamError,
                        &format!("the provider's stream is invalid: {error}"),
                    )
                })?;
                self.events.extend(events);
                Ok(true)
            }
        }
    }
}

/// The error a provider's broken stream ends in.
pub(crate) fn upstream_error(code: ErrorCode, message: &str) -> ApiError {
    ApiError::new(code, message).with_source(ErrorSource::Upstream)
}
