//! `POST /audio/transcriptions`: the transcription operation on the request pipeline. Its
//! multipart body is read (OpenAI's fields and Venice's), its model resolved through the
//! catalogue (ids and the `whisper-1`-style aliases) and held to be a transcription model; it
//! is priced per second of audio, reserved for the most the upload can hold and charged for
//! what the provider heard. The provider's transcript is written in the format asked for.
//!
//! The provider receives the audio and the language hint. Nothing here logs or stores audio
//! or text; the request's one log line is its settlement record's.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use wire::chat::Usage;
use wire::error::{ApiError, ErrorCode};
use wire::models::ModelType;
use wire::provider::PROVIDER_TRANSCRIPTION_PATH;
use wire::transcription::{
    MAX_UPLOAD_BYTES, Part, ProviderTranscriptionRequest, Transcript, TranscriptionRequest,
};

use crate::AppState;
use crate::catalogue::LiveModels;
use crate::pipeline::dispatch::{Failure, dispatch_with, read_whole, send_to_provider};
use crate::pipeline::pricing::UsageBound;
use crate::pipeline::respond::insert_header;
use crate::pipeline::settlement::Tally;
use crate::pipeline::{Admitted, Operation, Resolved, resolve_typed};
use crate::registry::Provider;

/// The model a request that names none is for: an alias of whatever transcription model this
/// gateway serves.
const DEFAULT_MODEL: &str = "whisper-1";
/// Longest audio transcribed per request, in seconds (the provider stops decoding there).
const MAX_SECONDS: u64 = 600;
/// Most parts a multipart body may have.
const MAX_PARTS: usize = 16;
/// Most bytes of a provider's transcript.
const MAX_TRANSCRIPT_BYTES: usize = 4 * 1024 * 1024;

/// The transcription operation.
pub(crate) struct Transcription;

/// The parts of a transcription request's multipart body.
fn parts(headers: &HeaderMap, body: &Bytes) -> Result<Vec<Part>, ApiError> {
    crate::pipeline::admission::multipart_parts(
        headers,
        body,
        MAX_PARTS,
        "file",
        "a transcription request is multipart/form-data with the audio in a part named `file`",
    )
}

impl Operation for Transcription {
    const ROUTE: &'static str = "transcription";
    const ID_PREFIX: &'static str = "transcription";
    type Request = TranscriptionRequest;

    fn body_limit(_state: &AppState) -> usize {
        MAX_UPLOAD_BYTES + 64 * 1024
    }

    fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
        let multipart = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                value
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
            });
        if multipart {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::InvalidContentType,
                "a transcription request is multipart/form-data with the audio in a part named `file`",
            ))
        }
    }

    fn parse(
        _state: &AppState,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<TranscriptionRequest, ApiError> {
        TranscriptionRequest::from_parts(parts(headers, body)?, DEFAULT_MODEL)
    }

    fn resolve(
        state: &AppState,
        request: &TranscriptionRequest,
        live: &LiveModels,
    ) -> Result<Resolved, ApiError> {
        resolve_typed(state, &request.model, live, ModelType::Asr, "transcription")
    }

    fn bound(_state: &AppState, request: &TranscriptionRequest, _body: &Bytes) -> UsageBound {
        // Priced per second of audio (at the model's input price): reserved for the most the
        // upload can hold.
        UsageBound {
            prompt_tokens: request.max_seconds(MAX_SECONDS),
            completion_tokens: 0,
        }
    }

    async fn respond(admitted: Admitted<TranscriptionRequest>) -> Result<Response, ApiError> {
        let Admitted { request, paid } = admitted;
        let state = Arc::clone(&paid.state);
        let model_id = paid.model.model_id.clone();
        let model_name = paid.model.model_name.clone();
        let body = Bytes::from(
            serde_json::to_vec(&ProviderTranscriptionRequest::new(
                &request,
                model_id.clone(),
            ))
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::Internal,
                    "the provider request could not be encoded",
                )
            })?,
        );
        let (attempt, attempts, transcript) = dispatch_with(&state, &model_id, None, |provider| {
            transcribe(&state, provider, body.clone())
        })
        .await?;
        let bound = paid.bound;
        let mut record = paid
            .commit(
                Self::ROUTE,
                "transcription",
                &attempt.provider,
                attempts,
                Tally::new(bound, bound.prompt_tokens),
            )
            .await?;
        // Whole seconds heard, at least one.
        let seconds = (f64::from(transcript.duration.max(0.0)).ceil() as u64).max(1);
        record.tally.report(Usage::counts(seconds, 0));
        record.status = Some(200);
        let provider_id = record.provider.id.clone();
        drop(record);
        let (body, content_type) = transcript.render(&request);
        let mut response = (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, content_type)],
            body,
        )
            .into_response();
        let headers = response.headers_mut();
        insert_header(headers, "x-venice-model-id", &model_id);
        insert_header(headers, "x-venice-model-name", &model_name);
        insert_header(headers, "x-gondola-provider", &provider_id);
        Ok(response)
    }
}

/// Sends the upload to one provider and reads its transcript.
async fn transcribe(
    state: &AppState,
    provider: Arc<Provider>,
    body: Bytes,
) -> Result<Transcript, Failure> {
    let deadline = tokio::time::Instant::now() + state.config.limits.first_byte_timeout;
    let request_id = economy::random_hex(16);
    let response = send_to_provider(
        state,
        &provider,
        PROVIDER_TRANSCRIPTION_PATH,
        &[
            (http::header::CONTENT_TYPE.as_str(), "application/json"),
            ("x-request-id", &request_id),
        ],
        body,
        deadline,
    )
    .await?;
    let reply = read_whole(response, deadline, MAX_TRANSCRIPT_BYTES, "transcript").await?;
    serde_json::from_slice(&reply).map_err(|_| {
        Failure::fault(
            ErrorCode::UpstreamError,
            "the provider's answer is not a transcript",
        )
    })
}
