//! `POST /provider/v1/audio/transcriptions`: the transcript of an upload from the embedded
//! Whisper model. The audio is decoded by FFmpeg and heard on a blocking thread; a file that is
//! not audio is the client's error.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use transcribe::{ListenError, Listener};
use wire::error::{ApiError, ErrorCode};
use wire::transcription::{ProviderTranscriptionRequest, TimedText, Transcript};

use crate::{AppState, Backend, check_lease, error_response};

/// Largest request from the gateway: the largest upload, in base64, and the rest.
pub(crate) const MAX_BODY_BYTES: usize = wire::transcription::MAX_UPLOAD_BYTES / 3 * 4 + 64 * 1024;

pub(crate) async fn transcriptions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(error) = check_lease(&state, &headers).await {
        return error_response(&error);
    }
    let request: ProviderTranscriptionRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return error_response(&ApiError::new(
                ErrorCode::InvalidRequest,
                format!("not a transcription request: {error}"),
            ));
        }
    };
    if request.model != state.backend.model_id() {
        return error_response(&ApiError::new(
            ErrorCode::ModelNotFound,
            format!("this provider serves {}", state.backend.model_id()),
        ));
    }
    let Ok(_permit) = Arc::clone(&state.in_flight).try_acquire_owned() else {
        return error_response(
            &ApiError::new(ErrorCode::ModelAtCapacity, "this provider is at capacity")
                .with_retry_after(1),
        );
    };
    let Backend::EmbeddedTranscription { listener, .. } = &state.backend else {
        return error_response(&ApiError::invalid(
            "model",
            format!("{} does not serve transcription", state.backend.model_id()),
        ));
    };
    match transcribe(Arc::clone(listener), request).await {
        Ok(transcript) => (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&transcript).unwrap_or_default(),
        )
            .into_response(),
        Err(error) => error_response(&error),
    }
}

fn listen_error(error: &ListenError) -> ApiError {
    if error.is_clients() {
        ApiError::invalid("file", error.to_string())
    } else {
        ApiError::new(ErrorCode::Internal, error.to_string())
    }
}

async fn transcribe(
    listener: Arc<Listener>,
    request: ProviderTranscriptionRequest,
) -> Result<Transcript, ApiError> {
    let audio = request.audio_bytes()?;
    let samples = listener
        .decode(&audio)
        .await
        .map_err(|error| listen_error(&error))?;
    let language = request.language.clone();
    let heard = tokio::task::spawn_blocking(move || {
        listener.transcribe(&samples, language.as_deref(), request.timed)
    })
    .await
    .map_err(|_| ApiError::new(ErrorCode::Internal, "the transcription thread failed"))?
    .map_err(|error| listen_error(&error))?;
    Ok(Transcript {
        text: heard.text,
        language: heard.language,
        duration: heard.duration,
        segments: heard
            .segments
            .into_iter()
            .map(|segment| TimedText {
                text: segment.text,
                start: segment.start,
                end: segment.end,
            })
            .collect(),
        // Word timings are not produced (see `transcribe`): segments only.
        words: Vec::new(),
    })
}
