//! `POST /audio/speech`: the speech operation on the request pipeline, and `GET /audio/voices`.
//! Its body is parsed and checked, its model resolved through the catalogue (ids and the
//! `tts-*` aliases) and held to be a speech model, its voice to be one of the model's; it is
//! priced per character of text. A provider is tried until one starts answering with audio,
//! and the audio is relayed as it comes, whole or streamed sentence by sentence.
//!
//! The provider receives the text, the voice, the speed and the format. Nothing here logs or
//! stores text or audio; the request's one log line is its settlement record's.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode};
use wire::chat::Usage;
use wire::error::{ApiError, ErrorCode};
use wire::models::ModelType;
use wire::provider::PROVIDER_SPEECH_PATH;
use wire::speech::{ProviderSpeechRequest, SpeechRequest, VoiceEntry, choose_voice};

use crate::AppState;
use crate::catalogue::LiveModels;
use crate::pipeline::dispatch::{Failure, dispatch_with, send_to_provider};
use crate::pipeline::pricing::UsageBound;
use crate::pipeline::respond::insert_header;
use crate::pipeline::settlement::Tally;
use crate::pipeline::{Admitted, Operation, Resolved, resolve_typed};
use crate::registry::Provider;

/// The model a request that names none is for: Venice's default, an alias of whatever speech
/// model this gateway serves.
const DEFAULT_MODEL: &str = "tts-kokoro";
/// Most bytes of audio relayed for one request (4,096 characters at a quarter speed as 24 kHz
/// PCM are about 60 MB).
const MAX_AUDIO_BYTES: usize = 96 * 1024 * 1024;
/// The format of a request that names none (OpenAI's default).
const DEFAULT_FORMAT: &str = "mp3";

/// The speech operation.
pub(crate) struct Speech;

/// The voice `request` gets on `model_id`, as its live advert lists them.
fn voice_for(
    live: &LiveModels,
    model_id: &str,
    request: &SpeechRequest,
) -> Result<String, ApiError> {
    let voices = live
        .get(model_id)
        .map(|(advert, _)| advert.voices.clone())
        .unwrap_or_default();
    choose_voice(&voices, request.voice.as_deref())
        .map_err(|message| ApiError::invalid("voice", message))
}

impl Operation for Speech {
    const ROUTE: &'static str = "speech";
    const ID_PREFIX: &'static str = "speech";
    type Request = SpeechRequest;

    fn body_limit(state: &AppState) -> usize {
        state.config.limits.max_body_bytes
    }

    fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
        crate::pipeline::check_json_content_type(headers)
    }

    fn parse(
        _state: &AppState,
        _headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<SpeechRequest, ApiError> {
        SpeechRequest::parse(body, DEFAULT_MODEL)
    }

    fn resolve(
        state: &AppState,
        request: &SpeechRequest,
        live: &LiveModels,
    ) -> Result<Resolved, ApiError> {
        let resolved = resolve_typed(state, &request.model, live, ModelType::Tts, "speech")?;
        voice_for(live, &resolved.model_id, request)?;
        Ok(resolved)
    }

    fn bound(_state: &AppState, request: &SpeechRequest, _body: &Bytes) -> UsageBound {
        // Speech is priced per character, at the model's input price.
        UsageBound {
            prompt_tokens: request.characters(),
            completion_tokens: 0,
        }
    }

    async fn respond(admitted: Admitted<SpeechRequest>) -> Result<Response, ApiError> {
        let Admitted { request, paid } = admitted;
        let state = Arc::clone(&paid.state);
        let model_id = paid.model.model_id.clone();
        let model_name = paid.model.model_name.clone();
        let voice = voice_for(
            &state.registry.live_models(Instant::now()),
            &model_id,
            &request,
        )?;
        let characters = request.characters();
        let body = Bytes::from(
            serde_json::to_vec(&ProviderSpeechRequest {
                model: model_id.clone(),
                input: request.input,
                voice,
                speed: request.speed,
                response_format: request
                    .response_format
                    .unwrap_or_else(|| DEFAULT_FORMAT.to_owned()),
                streaming: request.streaming,
            })
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::Internal,
                    "the provider request could not be encoded",
                )
            })?,
        );
        let (attempt, attempts, response) = dispatch_with(&state, &model_id, None, |provider| {
            start(&state, provider, body.clone())
        })
        .await?;
        let bound = paid.bound;
        let mut record = paid
            .commit(
                Self::ROUTE,
                "speech",
                &attempt.provider,
                attempts,
                Tally::new(bound, characters),
            )
            .await?;
        // The gateway counts the characters itself; a provider reports nothing for speech.
        record.tally.report(Usage::counts(characters, 0));
        record.first_token_at = Some(Instant::now());
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
        let provider_id = attempt.provider.id.clone();
        let idle = state.config.limits.idle_chunk_timeout;
        let upstream = response.bytes_stream();
        let audio = futures_util::stream::unfold(
            Some((record, upstream, 0usize)),
            move |relay| async move {
                let (mut record, mut upstream, relayed) = relay?;
                match tokio::time::timeout(idle, upstream.next()).await {
                    Ok(Some(Ok(chunk))) if relayed + chunk.len() <= MAX_AUDIO_BYTES => {
                        let relayed = relayed + chunk.len();
                        Some((
                            Ok::<Bytes, std::io::Error>(chunk),
                            Some((record, upstream, relayed)),
                        ))
                    }
                    Ok(None) => {
                        record.status = Some(200);
                        None
                    }
                    Ok(Some(Ok(_))) => {
                        record.status = Some(502);
                        Some((
                            Err(std::io::Error::other("the audio is longer than allowed")),
                            None,
                        ))
                    }
                    Ok(Some(Err(_))) | Err(_) => {
                        record.status = Some(502);
                        tracing::info!(request_id = %record.request_id, "speech stream failed after its first byte");
                        Some((
                            Err(std::io::Error::other("the provider's audio broke off")),
                            None,
                        ))
                    }
                }
            },
        );
        let mut response = (StatusCode::OK, Body::from_stream(audio)).into_response();
        let headers = response.headers_mut();
        headers.insert(http::header::CONTENT_TYPE, content_type);
        insert_header(headers, "x-venice-model-id", &model_id);
        insert_header(headers, "x-venice-model-name", &model_name);
        insert_header(headers, "x-gondola-provider", &provider_id);
        Ok(response)
    }
}

/// Sends the request to one provider and waits for its answer's head (the first sentence is
/// spoken by then): the answer, whose body is the audio.
async fn start(
    state: &AppState,
    provider: Arc<Provider>,
    body: Bytes,
) -> Result<reqwest::Response, Failure> {
    let deadline = tokio::time::Instant::now() + state.config.limits.first_byte_timeout;
    let request_id = economy::random_hex(16);
    let response = send_to_provider(
        state,
        &provider,
        PROVIDER_SPEECH_PATH,
        &[
            (http::header::CONTENT_TYPE.as_str(), "application/json"),
            ("x-request-id", &request_id),
        ],
        body,
        deadline,
    )
    .await?;
    let audio = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("audio/") || value == "application/octet-stream");
    if !audio {
        return Err(Failure::fault(
            ErrorCode::UpstreamError,
            "the provider's answer is not audio",
        ));
    }
    Ok(response)
}

/// `GET /audio/voices`: every voice of every live speech model.
pub(crate) fn voices(live: &LiveModels) -> Vec<VoiceEntry> {
    let mut entries: Vec<VoiceEntry> = live
        .iter()
        .filter(|(_, (advert, _))| advert.model_type == ModelType::Tts)
        .flat_map(|(model, (advert, _))| {
            advert
                .voices
                .iter()
                .enumerate()
                .map(move |(index, voice)| VoiceEntry {
                    id: voice.clone(),
                    object: "voice".into(),
                    model: model.clone(),
                    default: index == 0,
                })
        })
        .collect();
    entries.sort_by(|a, b| (&a.model, &a.id).cmp(&(&b.model, &b.id)));
    entries
}
