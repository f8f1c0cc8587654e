//! `POST /provider/v1/audio/speech`: audio from the embedded voice (Piper through ONNX
//! Runtime, sentence by sentence, encoded as it is spoken), from an OpenAI-compatible
//! engine's `/audio/speech`, relayed as it comes, or from Piper's HTTP server (its WAV
//! encoded here).
//!
//! The answer starts only once the first sentence is spoken (or the engine answered), so a
//! request that cannot be spoken gets an error status the gateway can act on.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::sync::mpsc;
use voice::{AudioFormat, Voice, VoiceError};
use wire::error::{ApiError, ErrorCode};
use wire::models::ModelType;
use wire::speech::ProviderSpeechRequest;

use crate::{AppState, Backend, UpstreamApi, accept, error_response};

/// Encoded chunks buffered between the encoder and the connection.
const ENCODED_AHEAD: usize = 16;
/// Most bytes of a whole (not streamed) reply: 4,096 characters spoken at a quarter speed as
/// 24 kHz PCM are about 60 MB.
const MAX_WHOLE_REPLY_BYTES: usize = 96 * 1024 * 1024;

pub(crate) async fn speech(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (permit, request) = match accept::<ProviderSpeechRequest>(
        &state,
        &headers,
        &body,
        "a speech request",
        |request| &request.model,
    )
    .await
    {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    let result = match &state.backend {
        Backend::EmbeddedSpeech { voice, .. } => embedded(Arc::clone(voice), request).await,
        Backend::Upstream {
            api: UpstreamApi::Piper { ffmpeg },
            base_url,
            upstream_model,
            model_type: ModelType::Tts,
            ..
        } => piper(state.http.get(), ffmpeg, base_url, upstream_model, request).await,
        Backend::Upstream {
            api: UpstreamApi::OpenAi,
            base_url,
            upstream_model,
            api_key,
            model_type: ModelType::Tts,
            ..
        } => {
            upstream(
                state.http.get(),
                base_url,
                upstream_model,
                api_key.as_deref(),
                request,
            )
            .await
        }
        _ => Err(ApiError::invalid(
            "model",
            format!("{} does not serve speech", state.backend.model_id()),
        )),
    };
    match result {
        Ok(response) => crate::holding(permit, response),
        Err(error) => error_response(&error),
    }
}

fn voice_error(error: &VoiceError) -> ApiError {
    ApiError::new(ErrorCode::Internal, error.to_string())
}

fn audio_response(format: AudioFormat, body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}

async fn embedded(voice: Arc<Voice>, request: ProviderSpeechRequest) -> Result<Response, ApiError> {
    let format = AudioFormat::parse(&request.response_format).ok_or_else(|| {
        ApiError::invalid(
            "response_format",
            format!("{:?} is not an audio format", request.response_format),
        )
    })?;
    let own = &voice.info().name;
    if request.voice != *own && !wire::speech::PORTABLE_VOICES.contains(&request.voice.as_str()) {
        return Err(ApiError::invalid(
            "voice",
            format!("this provider's voice is {own:?}"),
        ));
    }
    let sample_rate = voice.info().sample_rate;
    let mut units = voice.speak(request.input, request.speed);
    // The first sentence before any answer: a failure is an error status, not a cut stream.
    let first = match units.recv().await {
        Some(Ok(samples)) => samples,
        Some(Err(error)) => return Err(voice_error(&error)),
        None => Vec::new(),
    };
    if format == AudioFormat::Wav && !request.streaming {
        let mut samples = first;
        while let Some(unit) = units.recv().await {
            samples.extend(unit.map_err(|error| voice_error(&error))?);
            if samples.len() * 2 > MAX_WHOLE_REPLY_BYTES {
                return Err(ApiError::new(ErrorCode::Internal, "the audio is too long"));
            }
        }
        let mut bytes = voice::audio::wav_header(sample_rate, Some(samples.len()));
        bytes.extend(voice::audio::pcm_bytes(&samples));
        return Ok(audio_response(format, Body::from(bytes)));
    }
    let (pcm, pcm_receiver) = mpsc::channel::<Vec<i16>>(2);
    let (encoded, encoded_receiver) = mpsc::channel(ENCODED_AHEAD);
    let failures = encoded.clone();
    tokio::spawn(async move {
        if pcm.send(first).await.is_err() {
            return;
        }
        while let Some(unit) = units.recv().await {
            match unit {
                Ok(samples) => {
                    if pcm.send(samples).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    let _ = failures.send(Err(error)).await;
                    return;
                }
            }
        }
    });
    let ffmpeg = voice.ffmpeg().to_path_buf();
    encoded_reply(
        ffmpeg,
        format,
        sample_rate,
        (pcm_receiver, encoded, encoded_receiver),
        request.streaming,
    )
    .await
}

/// What FFmpeg writes on the channel's sender as it encodes the PCM arriving on its receiver
/// (the PCM's producer may send its own failure on the same channel).
type EncodingChannels = (
    mpsc::Receiver<Vec<i16>>,
    mpsc::Sender<Result<Vec<u8>, VoiceError>>,
    mpsc::Receiver<Result<Vec<u8>, VoiceError>>,
);

/// The reply: the PCM encoded as `format` by FFmpeg, streamed as it is encoded or whole.
async fn encoded_reply(
    ffmpeg: std::path::PathBuf,
    format: AudioFormat,
    sample_rate: u32,
    (pcm_receiver, encoded, mut encoded_receiver): EncodingChannels,
    streaming: bool,
) -> Result<Response, ApiError> {
    tokio::spawn(async move {
        voice::audio::encode(&ffmpeg, format, sample_rate, pcm_receiver, encoded).await;
    });
    if streaming {
        let stream =
            futures_util::stream::poll_fn(move |context| encoded_receiver.poll_recv(context)).map(
                |item| {
                    item.map(Bytes::from)
                        .map_err(|error| std::io::Error::other(error.to_string()))
                },
            );
        return Ok(audio_response(format, Body::from_stream(stream)));
    }
    let mut whole = Vec::new();
    while let Some(chunk) = encoded_receiver.recv().await {
        whole.extend(chunk.map_err(|error| voice_error(&error))?);
        if whole.len() > MAX_WHOLE_REPLY_BYTES {
            return Err(ApiError::new(ErrorCode::Internal, "the audio is too long"));
        }
    }
    Ok(audio_response(format, Body::from(whole)))
}

/// Speech from Piper's HTTP server: `POST /synthesize` with the text, the voice and the
/// phoneme length (the inverse of the speed); its WAV is sent as it is when WAV is asked
/// for, and encoded here otherwise.
async fn piper(
    http: &reqwest::Client,
    ffmpeg: &std::path::Path,
    base_url: &str,
    own_voice: &str,
    request: ProviderSpeechRequest,
) -> Result<Response, ApiError> {
    let format = AudioFormat::parse(&request.response_format).ok_or_else(|| {
        ApiError::invalid(
            "response_format",
            format!("{:?} is not an audio format", request.response_format),
        )
    })?;
    // A portable name (OpenAI's `alloy`, …) is the server's own voice; another name is a
    // voice the server may hold beside it.
    let voice = if wire::speech::PORTABLE_VOICES.contains(&request.voice.as_str()) {
        own_voice
    } else {
        request.voice.as_str()
    };
    let body = serde_json::json!({
        "text": request.input,
        "voice": voice,
        "length_scale": 1.0 / f64::from(request.speed.clamp(0.25, 4.0)),
    });
    let call = http
        .post(format!("{}/synthesize", base_url.trim_end_matches('/')))
        .json(&body);
    let (status, reply) = crate::call_upstream(call, MAX_WHOLE_REPLY_BYTES).await?;
    if !(200..300).contains(&status) {
        return Err(crate::upstream_error(status, &reply));
    }
    let (sample_rate, samples) = voice::audio::read_wav(&reply).map_err(|reason| {
        ApiError::new(
            ErrorCode::UpstreamError,
            format!("the upstream engine's answer is {reason}"),
        )
    })?;
    if format == AudioFormat::Wav && !request.streaming {
        let mut bytes = voice::audio::wav_header(sample_rate, Some(samples.len()));
        bytes.extend(voice::audio::pcm_bytes(&samples));
        return Ok(audio_response(format, Body::from(bytes)));
    }
    let (pcm, pcm_receiver) = mpsc::channel::<Vec<i16>>(2);
    let (encoded, encoded_receiver) = mpsc::channel(ENCODED_AHEAD);
    tokio::spawn(async move {
        // A quarter second at a time, as the embedded voice's sentences would come.
        let step = (sample_rate as usize / 4).max(1);
        for chunk in samples.chunks(step) {
            if pcm.send(chunk.to_vec()).await.is_err() {
                return;
            }
        }
    });
    encoded_reply(
        ffmpeg.to_path_buf(),
        format,
        sample_rate,
        (pcm_receiver, encoded, encoded_receiver),
        request.streaming,
    )
    .await
}

async fn upstream(
    http: &reqwest::Client,
    base_url: &str,
    upstream_model: &str,
    api_key: Option<&str>,
    request: ProviderSpeechRequest,
) -> Result<Response, ApiError> {
    let mut body = serde_json::json!({
        "model": upstream_model,
        "input": request.input,
        "voice": request.voice,
        "speed": request.speed,
        "response_format": request.response_format,
    });
    if request.streaming {
        body["stream_format"] = "audio".into();
    }
    let mut call = http
        .post(format!("{}/audio/speech", base_url.trim_end_matches('/')))
        .json(&body);
    if let Some(key) = api_key {
        call = call.bearer_auth(key);
    }
    let response = call.send().await.map_err(|error| {
        let what = if error.is_connect() {
            "could not be reached"
        } else {
            "failed"
        };
        ApiError::new(
            ErrorCode::UpstreamError,
            format!("the upstream engine {what}"),
        )
    })?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        let mut reply = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(Ok(chunk)) = chunks.next().await {
            reply.extend_from_slice(&chunk);
            if reply.len() > 64 * 1024 {
                break;
            }
        }
        return Err(crate::upstream_error(status, &reply));
    }
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    let stream = response
        .bytes_stream()
        .map(|item| item.map_err(std::io::Error::other));
    let mut answer = Response::new(Body::from_stream(stream));
    *answer.status_mut() = StatusCode::OK;
    answer
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, content_type);
    Ok(answer)
}
