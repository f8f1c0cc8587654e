//! A provider's stream of chat chunks: its events decoded into chunks (an event naming an
//! error becomes the error), with a clean end told from a stream cut before its finish.

use std::time::Duration;

use wire::chat::ChatCompletionChunk;
use wire::error::{ApiError, ErrorCode};
use wire::sse::SseEvent;

use crate::pipeline::events::{ProviderEvents, upstream_error};

/// A provider's stream of chat chunks.
pub(super) struct UpstreamStream {
    events: ProviderEvents,
    saw_finish: bool,
    done: bool,
}

impl UpstreamStream {
    pub(super) fn new(
        response: reqwest::Response,
        max_event_bytes: usize,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            events: ProviderEvents::new(response, max_event_bytes, idle_timeout),
            saw_finish: false,
            done: false,
        }
    }

    /// The next chunk; `None` at a clean end. Errors are upstream faults.
    pub(super) async fn next(&mut self) -> Result<Option<ChatCompletionChunk>, ApiError> {
        loop {
            if let Some(item) = self.next_received() {
                return item;
            }
            self.receive().await?;
        }
    }

    /// The next chunk among the bytes already received, without waiting: `None` when more must
    /// be read first.
    pub(super) fn next_received(
        &mut self,
    ) -> Option<Result<Option<ChatCompletionChunk>, ApiError>> {
        if self.done {
            return Some(Ok(None));
        }
        let event = self.events.pop()?;
        Some(match event {
            SseEvent::Done => {
                self.done = true;
                Ok(None)
            }
            SseEvent::Data(data) => self.decode(&data).map(Some),
        })
    }

    fn decode(&mut self, data: &str) -> Result<ChatCompletionChunk, ApiError> {
        // Only an event that names an "error" key can be an error; every other one is parsed
        // straight into a chunk, without an intermediate JSON tree.
        let chunk = if data.contains("\"error\"") {
            let value: serde_json::Value = serde_json::from_str(data).map_err(|_| {
                upstream_error(
                    ErrorCode::UpstreamError,
                    "the provider sent a malformed event",
                )
            })?;
            if let Some(error) = value.get("error") {
                let message = error
                    .get("message")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("the provider failed");
                let code = error
                    .get("code")
                    .and_then(serde_json::Value::as_str)
                    .and_then(ErrorCode::parse);
                return Err(upstream_error(
                    code.filter(|code| code.status() >= 500)
                        .unwrap_or(ErrorCode::InferenceFailed),
                    message,
                ));
            }
            serde_json::from_value(value).map_err(|_| {
                upstream_error(
                    ErrorCode::UpstreamError,
                    "the provider sent a malformed chunk",
                )
            })?
        } else {
            serde_json::from_str::<ChatCompletionChunk>(data).map_err(|error| {
                upstream_error(
                    ErrorCode::UpstreamError,
                    if error.is_data() {
                        "the provider sent a malformed chunk"
                    } else {
                        "the provider sent a malformed event"
                    },
                )
            })?
        };
        if chunk
            .choices
            .iter()
            .any(|choice| choice.finish_reason.is_some())
        {
            self.saw_finish = true;
        }
        Ok(chunk)
    }

    /// Waits for more of the stream; a clean end marks the stream done.
    pub(super) async fn receive(&mut self) -> Result<(), ApiError> {
        if self.events.receive().await? {
            return Ok(());
        }
        self.done = true;
        if self.saw_finish {
            Ok(())
        } else {
            Err(upstream_error(
                ErrorCode::InferenceFailed,
                "the provider closed the stream before finishing",
            ))
        }
    }
}
