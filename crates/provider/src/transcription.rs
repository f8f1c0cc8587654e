//! `POST /provider/v1/audio/transcriptions`: the transcript of an upload from the embedded
//! Whisper model (the audio decoded by FFmpeg and heard on a blocking thread; a file that is
//! not audio is the client's error), or from an OpenAI-compatible engine's
//! `/audio/transcriptions`, asked for `verbose_json` so that it says how long the audio was.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use transcribe::{ListenError, Listener, Timings};
use wire::error::{ApiError, ErrorCode};
use wire::models::ModelType;
use wire::transcription::{ProviderTranscriptionRequest, TimedText, TimedWord, Transcript};

use crate::{AppState, Backend, UpstreamApi, accept, error_response};

/// Largest request from the gateway: the largest upload, in base64, and the rest.
pub(crate) const MAX_BODY_BYTES: usize = wire::transcription::MAX_UPLOAD_BYTES / 3 * 4 + 64 * 1024;

pub(crate) async fn transcriptions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_permit, request) = match accept::<ProviderTranscriptionRequest>(
        &state,
        &headers,
        &body,
        "a transcription request",
        |request| &request.model,
    )
    .await
    {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    let result = match &state.backend {
        Backend::EmbeddedTranscription { listener, .. } => {
            transcribe(Arc::clone(listener), request).await
        }
        Backend::Upstream {
            api: UpstreamApi::OpenAi,
            base_url,
            upstream_model,
            api_key,
            model_type: ModelType::Asr,
            ..
        } => {
            upstream(
                state.http.get(),
                base_url,
                upstream_model,
                api_key.as_deref(),
                &request,
            )
            .await
        }
        _ => Err(ApiError::invalid(
            "model",
            format!("{} does not serve transcription", state.backend.model_id()),
        )),
    };
    match result {
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
    let timings = if request.words {
        Timings::Words
    } else if request.timed {
        Timings::Segments
    } else {
        Timings::None
    };
    let heard = tokio::task::spawn_blocking(move || {
        listener.transcribe(&samples, language.as_deref(), timings)
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
        words: heard
            .words
            .into_iter()
            .map(|word| TimedWord {
                word: word.word,
                start: word.start,
                end: word.end,
            })
            .collect(),
    })
}

/// Most bytes of an engine's transcript: ten minutes of speech with every word timed is well
/// under a megabyte.
const MAX_UPSTREAM_REPLY_BYTES: usize = 8 * 1024 * 1024;

/// What an OpenAI-compatible engine answers in `verbose_json`.
#[derive(serde::Deserialize)]
struct VerboseTranscript {
    text: String,
    #[serde(default)]
    language: Option<String>,
    duration: Option<f32>,
    #[serde(default)]
    segments: Vec<TimedText>,
    #[serde(default)]
    words: Vec<TimedWord>,
}

async fn upstream(
    http: &reqwest::Client,
    base_url: &str,
    upstream_model: &str,
    api_key: Option<&str>,
    request: &ProviderTranscriptionRequest,
) -> Result<Transcript, ApiError> {
    let audio = request.audio_bytes()?;
    // The engine reads the format from the file's name: a neutral one, with the extension
    // of what the bytes are.
    let name = format!("audio.{}", wire::transcription::audio_extension(&audio));
    let mut form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(audio).file_name(name),
        )
        .text("model", upstream_model.to_owned())
        .text("response_format", "verbose_json")
        .text("timestamp_granularities[]", "segment");
    if request.words {
        form = form.text("timestamp_granularities[]", "word");
    }
    if let Some(language) = &request.language {
        form = form.text("language", language.clone());
    }
    let mut call = http
        .post(format!(
            "{}/audio/transcriptions",
            base_url.trim_end_matches('/')
        ))
        .multipart(form);
    if let Some(key) = api_key {
        call = call.bearer_auth(key);
    }
    let (status, reply) = crate::call_upstream(call, MAX_UPSTREAM_REPLY_BYTES).await?;
    if !(200..300).contains(&status) {
        return Err(crate::upstream_error(status, &reply));
    }
    let heard: VerboseTranscript = serde_json::from_slice(&reply).map_err(|_| {
        ApiError::new(
            ErrorCode::UpstreamError,
            "the upstream engine's answer is not a verbose_json transcript",
        )
    })?;
    // The request is charged by the second: an engine that does not say how long the audio
    // was cannot be charged for.
    let duration = heard
        .duration
        .filter(|duration| duration.is_finite() && *duration >= 0.0)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::UpstreamError,
                "the upstream engine did not say how long the audio was",
            )
        })?;
    Ok(Transcript {
        text: heard.text.trim().to_owned(),
        language: heard
            .language
            .as_deref()
            .map(wire::transcription::language_code)
            .or_else(|| request.language.clone())
            .unwrap_or_else(|| "en".to_owned()),
        duration,
        segments: if request.timed {
            heard.segments
        } else {
            Vec::new()
        },
        words: if request.words {
            heard.words
        } else {
            Vec::new()
        },
    })
}
