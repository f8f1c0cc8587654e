//! `POST /provider/v1/images/generations`: images from the engine behind this provider, in the
//! format and size the gateway asked for. Three engines' APIs are spoken:
//!
//! - an OpenAI-compatible images server (`/images/generations`, `b64_json`): prompt, count
//!   and size only, since OpenAI's API has no negative prompt, steps or seed;
//! - AUTOMATIC1111's web UI and its forks such as Forge (`/sdapi/v1/txt2img`), one call per
//!   variant with seeds `seed`, `seed + 1`, …, so that no engine setting can slip a grid
//!   image into the answer;
//! - ComfyUI (`/prompt`, `/history/{id}`, `/view`), with a workflow in its API format whose
//!   `"$prompt"`-style placeholders are filled in; its outputs are fetched, then its history
//!   entry deleted. The built-in workflow ends in a preview node, whose images ComfyUI keeps
//!   in its temporary folder only.
//!
//! Whatever the engine answers is decoded (within bounds), resized if the engine made another
//! size, and encoded in the asked format (WebP losslessly). Nothing here logs a prompt or an
//! image.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use wire::error::{ApiError, ErrorCode};
use wire::images::{
    ImageFormat, ImageLimits, MAX_IMAGE_BYTES, MAX_VARIANTS, ProviderImageRequest, ProviderImages,
};
use wire::models::ModelType;

use crate::{
    AppState, Backend, UpstreamApi, accept, call_upstream, error_response, upstream_error,
};

/// Most bytes of an engine's answer carrying images (four large PNGs in base64).
const MAX_ENGINE_REPLY_BYTES: usize = 64 * 1024 * 1024;
/// Most bytes of one image fetched from ComfyUI.
const MAX_ENGINE_IMAGE_BYTES: usize = 16 * 1024 * 1024;
/// Most bytes of ComfyUI's answers about a job.
const MAX_ENGINE_STATUS_BYTES: usize = 1024 * 1024;
/// Widest and tallest image decoded from an engine.
const MAX_DECODED_SIDE: u32 = 4096;
/// Most memory a decoder may allocate for one engine image (an upscaled one of 16.7
/// megapixels in RGBA is 67 MB).
const MAX_DECODE_ALLOCATION: u64 = 160 * 1024 * 1024;
/// Widest and tallest upscaled image taken from an engine.
const MAX_UPSCALED_SIDE: u32 = 16_384;
/// Most bytes of an upscaled image once encoded.
pub(crate) const MAX_UPSCALED_BYTES: usize = 96 * 1024 * 1024;
/// How often ComfyUI is asked whether a job is done.
const COMFYUI_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Longest a ComfyUI job may take.
const COMFYUI_JOB_TIMEOUT: Duration = Duration::from_secs(300);
/// The cfg scale asked for when a request gives none (the usual Stable Diffusion value).
const DEFAULT_CFG_SCALE: f32 = 7.0;
/// How far an edit may move from its source image (AUTOMATIC1111's usual img2img strength).
const EDIT_DENOISING: f32 = 0.75;

/// ComfyUI's built-in text-to-image workflow (a checkpoint, two prompts, one sampler, a
/// preview), in its API format with placeholders.
pub const COMFYUI_TXT2IMG_WORKFLOW: &str = include_str!("comfyui-txt2img.json");

/// Placeholders a ComfyUI workflow may hold, each a JSON string standing alone as a value.
const PLACEHOLDERS: [&str; 9] = [
    "$prompt",
    "$negative_prompt",
    "$width",
    "$height",
    "$steps",
    "$cfg_scale",
    "$seed",
    "$variants",
    "$model",
];

/// Checks a ComfyUI workflow before the provider starts: a JSON object of nodes in the API
/// format, with a `$prompt` placeholder somewhere.
pub fn check_comfyui_workflow(workflow: &Value) -> Result<(), String> {
    let nodes = workflow
        .as_object()
        .ok_or("a ComfyUI workflow in the API format is a JSON object of nodes")?;
    if nodes
        .values()
        .any(|node| node.get("class_type").and_then(Value::as_str).is_none())
    {
        return Err(
            "every node of a ComfyUI workflow has a class_type (use \"Save (API Format)\")".into(),
        );
    }
    if !holds_placeholder(workflow, "$prompt") {
        return Err("the ComfyUI workflow has no \"$prompt\" placeholder for the prompt".into());
    }
    Ok(())
}

fn holds_placeholder(value: &Value, placeholder: &str) -> bool {
    match value {
        Value::String(text) => text == placeholder,
        Value::Array(items) => items
            .iter()
            .any(|item| holds_placeholder(item, placeholder)),
        Value::Object(fields) => fields
            .values()
            .any(|item| holds_placeholder(item, placeholder)),
        _ => false,
    }
}

pub(crate) async fn images(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_permit, request) = match accept::<ProviderImageRequest>(
        &state,
        &headers,
        &body,
        "an image request",
        |request| &request.model,
    )
    .await
    {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    match generate(&state, &request).await {
        Ok(answer) => (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&answer).unwrap_or_default(),
        )
            .into_response(),
        Err(error) => error_response(&error),
    }
}

/// Largest request from the gateway carrying an upload (background removal, edit, upscale):
/// the largest upload in base64, and the rest.
pub(crate) const MAX_UPLOAD_BODY_BYTES: usize = wire::images::MAX_UPLOAD_BYTES / 3 * 4 + 64 * 1024;

/// `POST /provider/v1/image/background-remove`: the uploaded image as a PNG whose alpha is
/// its subject's mask, from the embedded U²-Net.
pub(crate) async fn remove_background(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_permit, request) = match accept::<wire::images::ProviderBackgroundRequest>(
        &state,
        &headers,
        &body,
        "a background removal",
        |request| &request.model,
    )
    .await
    {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    let Backend::EmbeddedBackgroundRemoval { remover, .. } = &state.backend else {
        return error_response(&ApiError::invalid(
            "model",
            format!("{} does not remove backgrounds", state.backend.model_id()),
        ));
    };
    let image = match base64::engine::general_purpose::STANDARD.decode(&request.image) {
        Ok(image) => image,
        Err(_) => return error_response(&ApiError::invalid("image", "the image is not base64")),
    };
    let remover = Arc::clone(remover);
    match tokio::task::spawn_blocking(move || remover.remove(&image)).await {
        Ok(Ok(png)) => (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "image/png")],
            png,
        )
            .into_response(),
        Ok(Err(error)) if error.is_clients() => {
            error_response(&ApiError::invalid("image", error.to_string()))
        }
        Ok(Err(error)) => error_response(&ApiError::new(
            ErrorCode::InferenceFailed,
            error.to_string(),
        )),
        Err(_) => error_response(&ApiError::new(
            ErrorCode::Internal,
            "the background removal thread failed",
        )),
    }
}

/// A sealed image request (Venice's `/image/generate` body, opened by the caller), held to
/// the images it was paid for: the images made and the Venice-shaped answer written through
/// `sealer`, ended with this provider's receipt (whose prompt count is the images made). A
/// refusal that may quote the request is said inside the seal; busy and broken are said in the
/// clear, so that the gateway tries another provider.
pub(crate) async fn sealed(
    state: Arc<AppState>,
    body: &[u8],
    paid: u32,
    mut sealer: privacy::sealed::ReplySealer,
    sealed_reply: tokio::io::DuplexStream,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    let model_id = state.backend.model_id().to_owned();
    let outcome = sealed_images(&state, body, paid, &model_id).await;
    if let Err(error) = &outcome
        && (error.status() == 429 || error.status() >= 500)
    {
        return error_response(error);
    }
    let (usage_sender, usage) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let written = async {
            let usage = match outcome {
                Err(error) => {
                    sealer.head(error.status(), "application/json").await?;
                    sealer
                        .whole(error.body(wire::error::Dialect::Venice).as_bytes())
                        .await?;
                    wire::chat::Usage::default()
                }
                Ok((answer, made)) => {
                    sealer.head(200, "application/json").await?;
                    sealer
                        .whole(&serde_json::to_vec(&answer).unwrap_or_default())
                        .await?;
                    wire::chat::Usage::counts(made, 0)
                }
            };
            crate::sealed::finish_with_receipt(&state, sealer, usage).await?;
            Ok::<_, std::io::Error>(usage)
        }
        .await;
        drop(permit);
        match written {
            Ok(usage) => {
                let _ = usage_sender.send(usage);
            }
            Err(error) => tracing::debug!(%error, "a sealed image reply ended early"),
        }
    });
    crate::sealed::sealed_response(sealed_reply, usage)
}

/// The images a sealed request asks for, in Venice's answer, and how many were made.
async fn sealed_images(
    state: &AppState,
    body: &[u8],
    paid: u32,
    model_id: &str,
) -> Result<(wire::images::VeniceImages, u64), ApiError> {
    let request = wire::images::ImageRequest::parse_venice(body, model_id)?;
    if request.model != model_id {
        return Err(ApiError::new(
            ErrorCode::ModelNotFound,
            format!("this provider serves {model_id}"),
        )
        .with_param("model"));
    }
    if request.variants > paid {
        return Err(ApiError::invalid(
            "variants",
            format!(
                "the request asks for {} images but was paid for {paid}",
                request.variants
            ),
        ));
    }
    if request.answer != (wire::images::Answer::Venice { binary: false }) {
        return Err(ApiError::invalid(
            "return_binary",
            "a sealed image request is answered in JSON: leave return_binary out",
        ));
    }
    let limits = state.backend.advert().image.unwrap_or_default();
    let mut seed = [0u8; 8];
    rand::fill(&mut seed);
    let seed = i64::try_from(u64::from_le_bytes(seed) % 999_999_999).unwrap_or(0) + 1;
    let asked = request.to_provider(model_id, &limits, seed)?;
    let started = std::time::Instant::now();
    let made = generate(state, &asked).await?;
    let total = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let count = u64::try_from(made.images.len()).unwrap_or(u64::MAX);
    let mut id = [0u8; 12];
    rand::fill(&mut id);
    Ok((
        wire::images::VeniceImages {
            id: format!("generate-image-{}", hex::encode(id)),
            images: made.images,
            request: None,
            timing: wire::images::Timing {
                inference_duration: made.inference_ms.min(total),
                inference_preprocessing_time: 0,
                inference_queue_time: total.saturating_sub(made.inference_ms),
                total,
            },
        },
        count,
    ))
}

fn image_answer(format: ImageFormat, bytes: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, format.content_type())],
        bytes,
    )
        .into_response()
}

/// `POST /provider/v1/image/edit`: the image changed as its prompt says, by an image model
/// whose engine edits (AUTOMATIC1111's img2img, OpenAI's `/images/edits`), as the image's
/// bytes in the asked format.
pub(crate) async fn edit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_permit, request) = match accept::<wire::images::ProviderEditRequest>(
        &state,
        &headers,
        &body,
        "an image edit",
        |request| &request.model,
    )
    .await
    {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    match edit_image(&state, request).await {
        Ok((format, bytes)) => image_answer(format, bytes),
        Err(error) => error_response(&error),
    }
}

async fn edit_image(
    state: &AppState,
    request: wire::images::ProviderEditRequest,
) -> Result<(ImageFormat, Vec<u8>), ApiError> {
    let Backend::Upstream {
        api,
        base_url,
        upstream_model,
        api_key,
        model_type: ModelType::Image,
        image_limits,
        ..
    } = &state.backend
    else {
        return Err(ApiError::invalid(
            "model",
            format!("{} does not edit images", state.backend.model_id()),
        ));
    };
    if !image_limits.edits {
        return Err(ApiError::invalid(
            "model",
            format!(
                "{}'s engine makes images but does not edit them",
                state.backend.model_id()
            ),
        ));
    }
    let asked = ProviderImageRequest {
        model: request.model.clone(),
        prompt: request.prompt.clone(),
        negative_prompt: None,
        width: request.width,
        height: request.height,
        steps: request.steps,
        cfg_scale: None,
        seed: request.seed,
        variants: 1,
        format: request.format,
    };
    check(&asked, image_limits)?;
    let source = base64::engine::general_purpose::STANDARD
        .decode(&request.image)
        .map_err(|_| ApiError::invalid("image", "the image is not base64"))?;
    let engine = Engine {
        http: state.http.get(),
        base_url: base_url.trim_end_matches('/'),
        model: upstream_model,
        api_key: api_key.as_deref(),
    };
    let made = match api {
        UpstreamApi::Automatic1111 => engine.img2img(&request).await?,
        UpstreamApi::OpenAi => engine.openai_edit(&request, source).await?,
        UpstreamApi::ComfyUi { .. } | UpstreamApi::Piper { .. } => {
            return Err(ApiError::invalid(
                "model",
                "this model's engine does not edit images",
            ));
        }
    };
    let (format, width, height) = (request.format, request.width, request.height);
    let image = tokio::task::spawn_blocking(move || reencode(&made, format, width, height))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "the image encoding thread failed"))??;
    Ok((format, image))
}

/// `POST /provider/v1/image/upscale`: the image `scale` times as wide and tall, from
/// AUTOMATIC1111's upscaler this model names, as a PNG.
pub(crate) async fn upscale(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_permit, request) = match accept::<wire::images::ProviderUpscaleRequest>(
        &state,
        &headers,
        &body,
        "an upscale",
        |request| &request.model,
    )
    .await
    {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    match upscale_image(&state, request).await {
        Ok(bytes) => image_answer(ImageFormat::Png, bytes),
        Err(error) => error_response(&error),
    }
}

async fn upscale_image(
    state: &AppState,
    request: wire::images::ProviderUpscaleRequest,
) -> Result<Vec<u8>, ApiError> {
    let Backend::Upstream {
        api: UpstreamApi::Automatic1111,
        base_url,
        upstream_model,
        api_key,
        model_type: ModelType::Upscale,
        ..
    } = &state.backend
    else {
        return Err(ApiError::invalid(
            "model",
            format!("{} does not upscale images", state.backend.model_id()),
        ));
    };
    let (width, height) = (
        request.width.saturating_mul(request.scale),
        request.height.saturating_mul(request.scale),
    );
    let pixels = usize::try_from(u64::from(width) * u64::from(height)).unwrap_or(usize::MAX);
    if !(2..=4).contains(&request.scale) || pixels > wire::images::MAX_UPSCALED_PIXELS {
        return Err(ApiError::invalid(
            "scale",
            "an image is upscaled 2 or 4 times, to at most 16,777,216 pixels",
        ));
    }
    let engine = Engine {
        http: state.http.get(),
        base_url: base_url.trim_end_matches('/'),
        model: upstream_model,
        api_key: api_key.as_deref(),
    };
    let made = engine.extras(&request).await?;
    tokio::task::spawn_blocking(move || {
        reencode_within(
            &made,
            ImageFormat::Png,
            width,
            height,
            MAX_UPSCALED_SIDE,
            MAX_UPSCALED_BYTES,
        )
    })
    .await
    .map_err(|_| ApiError::new(ErrorCode::Internal, "the image encoding thread failed"))?
}

async fn generate(
    state: &AppState,
    request: &ProviderImageRequest,
) -> Result<ProviderImages, ApiError> {
    let Backend::Upstream {
        api,
        base_url,
        upstream_model,
        api_key,
        model_type: ModelType::Image,
        image_limits,
        ..
    } = &state.backend
    else {
        return Err(ApiError::invalid(
            "model",
            format!(
                "{} does not serve image generation",
                state.backend.model_id()
            ),
        ));
    };
    check(request, image_limits)?;
    let engine = Engine {
        http: state.http.get(),
        base_url: base_url.trim_end_matches('/'),
        model: upstream_model,
        api_key: api_key.as_deref(),
    };
    let started = Instant::now();
    let made = match api {
        UpstreamApi::OpenAi => engine.openai(request).await?,
        UpstreamApi::Automatic1111 => engine.automatic1111(request).await?,
        UpstreamApi::ComfyUi { workflow } => engine.comfyui(workflow, request).await?,
        UpstreamApi::Piper { .. } => {
            return Err(ApiError::invalid(
                "model",
                "Piper's server makes speech, not images",
            ));
        }
    };
    let inference_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (format, width, height) = (request.format, request.width, request.height);
    let images = tokio::task::spawn_blocking(move || {
        made.iter()
            .map(|bytes| reencode(bytes, format, width, height))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|_| ApiError::new(ErrorCode::Internal, "the image encoding thread failed"))??;
    Ok(ProviderImages {
        format,
        images: images
            .iter()
            .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes))
            .collect(),
        inference_ms,
    })
}

/// Holds a request to what this model takes (the gateway checks the same limits first).
fn check(request: &ProviderImageRequest, limits: &ImageLimits) -> Result<(), ApiError> {
    if request.width == 0
        || request.height == 0
        || request.width > limits.max_width
        || request.height > limits.max_height
    {
        return Err(ApiError::invalid(
            "width",
            format!(
                "this model makes images up to {}x{}",
                limits.max_width, limits.max_height
            ),
        ));
    }
    if request.steps == 0 || request.steps > limits.max_steps {
        return Err(ApiError::invalid(
            "steps",
            format!("this model takes 1 to {} steps", limits.max_steps),
        ));
    }
    if request.variants == 0 || request.variants > MAX_VARIANTS {
        return Err(ApiError::invalid(
            "variants",
            format!("1 to {MAX_VARIANTS} images are made per request"),
        ));
    }
    Ok(())
}

/// An engine's image decoded (held to bounds), brought to `width` × `height` if it is not,
/// and encoded as `format`.
fn reencode(
    bytes: &[u8],
    format: ImageFormat,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, ApiError> {
    reencode_within(
        bytes,
        format,
        width,
        height,
        MAX_DECODED_SIDE,
        MAX_IMAGE_BYTES,
    )
}

/// As [`reencode`], the engine's image up to `max_side` pixels a side and the result up to
/// `max_bytes` (an upscaled image is larger than a generated one).
fn reencode_within(
    bytes: &[u8],
    format: ImageFormat,
    width: u32,
    height: u32,
    max_side: u32,
    max_bytes: usize,
) -> Result<Vec<u8>, ApiError> {
    let broken = || {
        ApiError::new(
            ErrorCode::UpstreamError,
            "the engine's image cannot be read",
        )
    };
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| broken())?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    limits.max_alloc = Some(MAX_DECODE_ALLOCATION);
    reader.limits(limits);
    let mut decoded = reader.decode().map_err(|_| broken())?;
    if (decoded.width(), decoded.height()) != (width, height) {
        decoded = decoded.resize_exact(width, height, image::imageops::FilterType::Lanczos3);
    }
    let mut out = Vec::new();
    let encoded = match format {
        // Fast deflate: a tenth larger than the default level, in well under half the time.
        ImageFormat::Png => {
            decoded.write_with_encoder(image::codecs::png::PngEncoder::new_with_quality(
                &mut out,
                image::codecs::png::CompressionType::Fast,
                image::codecs::png::FilterType::Adaptive,
            ))
        }
        ImageFormat::Webp => image::DynamicImage::ImageRgba8(decoded.to_rgba8())
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::WebP),
        ImageFormat::Jpeg => image::DynamicImage::ImageRgb8(decoded.to_rgb8()).write_with_encoder(
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90),
        ),
    };
    encoded.map_err(|_| ApiError::new(ErrorCode::Internal, "the image could not be encoded"))?;
    if out.len() > max_bytes {
        return Err(ApiError::new(
            ErrorCode::UpstreamError,
            "the engine's image is larger than allowed once encoded",
        ));
    }
    Ok(out)
}

/// The engine behind this provider, for one request.
struct Engine<'a> {
    http: &'a reqwest::Client,
    base_url: &'a str,
    model: &'a str,
    api_key: Option<&'a str>,
}

fn engine_broke(what: &str) -> ApiError {
    ApiError::new(ErrorCode::UpstreamError, format!("the image engine {what}"))
}

fn decode_base64(text: &str) -> Result<Vec<u8>, ApiError> {
    // Some engines send a data URL.
    let payload = text
        .split_once("base64,")
        .map_or(text, |(_, payload)| payload);
    base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|_| engine_broke("answered an image that is not base64"))
}

impl Engine<'_> {
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let call = self.http.post(format!("{}{path}", self.base_url));
        match self.api_key {
            Some(key) => call.bearer_auth(key),
            None => call,
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let call = self.http.get(format!("{}{path}", self.base_url));
        match self.api_key {
            Some(key) => call.bearer_auth(key),
            None => call,
        }
    }

    /// A successful answer's JSON, or the engine's error as this provider's.
    async fn json(
        &self,
        call: reqwest::RequestBuilder,
        max_bytes: usize,
    ) -> Result<Value, ApiError> {
        let (status, reply) = call_upstream(call, max_bytes).await?;
        if !(200..300).contains(&status) {
            return Err(upstream_error(status, &reply));
        }
        serde_json::from_slice(&reply)
            .map_err(|_| engine_broke("answered something that is not JSON"))
    }

    async fn openai(&self, request: &ProviderImageRequest) -> Result<Vec<Vec<u8>>, ApiError> {
        let answer = self
            .json(
                self.post("/images/generations").json(&json!({
                    "model": self.model,
                    "prompt": request.prompt,
                    "n": request.variants,
                    "size": format!("{}x{}", request.width, request.height),
                    "response_format": "b64_json",
                })),
                MAX_ENGINE_REPLY_BYTES,
            )
            .await?;
        let images = answer
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| engine_broke("answered without data"))?;
        images
            .iter()
            .take(usize::try_from(request.variants).unwrap_or(1))
            .map(|image| {
                image
                    .get("b64_json")
                    .and_then(Value::as_str)
                    .ok_or_else(|| engine_broke("answered an image without b64_json"))
                    .and_then(decode_base64)
            })
            .collect()
    }

    async fn automatic1111(
        &self,
        request: &ProviderImageRequest,
    ) -> Result<Vec<Vec<u8>>, ApiError> {
        let mut images = Vec::new();
        for variant in 0..request.variants {
            let mut body = json!({
                "prompt": request.prompt,
                "negative_prompt": request.negative_prompt.clone().unwrap_or_default(),
                "width": request.width,
                "height": request.height,
                "steps": request.steps,
                "cfg_scale": request.cfg_scale.unwrap_or(DEFAULT_CFG_SCALE),
                "seed": request.seed.unsigned_abs() + u64::from(variant),
                "batch_size": 1,
                "n_iter": 1,
                "send_images": true,
                "save_images": false,
            });
            if !self.model.is_empty() {
                body["override_settings"] = json!({ "sd_model_checkpoint": self.model });
                body["override_settings_restore_afterwards"] = json!(false);
            }
            let answer = self
                .json(
                    self.post("/sdapi/v1/txt2img").json(&body),
                    MAX_ENGINE_REPLY_BYTES,
                )
                .await?;
            let first = answer
                .get("images")
                .and_then(Value::as_array)
                .and_then(|images| images.first())
                .and_then(Value::as_str)
                .ok_or_else(|| engine_broke("answered without images"))?;
            images.push(decode_base64(first)?);
        }
        Ok(images)
    }

    async fn img2img(
        &self,
        request: &wire::images::ProviderEditRequest,
    ) -> Result<Vec<u8>, ApiError> {
        let mut body = json!({
            "init_images": [request.image],
            "prompt": request.prompt,
            "negative_prompt": "",
            "width": request.width,
            "height": request.height,
            "steps": request.steps,
            "cfg_scale": DEFAULT_CFG_SCALE,
            "seed": request.seed.unsigned_abs(),
            "denoising_strength": EDIT_DENOISING,
            "batch_size": 1,
            "n_iter": 1,
            "send_images": true,
            "save_images": false,
        });
        if !self.model.is_empty() {
            body["override_settings"] = json!({ "sd_model_checkpoint": self.model });
            body["override_settings_restore_afterwards"] = json!(false);
        }
        let answer = self
            .json(
                self.post("/sdapi/v1/img2img").json(&body),
                MAX_ENGINE_REPLY_BYTES,
            )
            .await?;
        let first = answer
            .get("images")
            .and_then(Value::as_array)
            .and_then(|images| images.first())
            .and_then(Value::as_str)
            .ok_or_else(|| engine_broke("answered without images"))?;
        decode_base64(first)
    }

    async fn openai_edit(
        &self,
        request: &wire::images::ProviderEditRequest,
        source: Vec<u8>,
    ) -> Result<Vec<u8>, ApiError> {
        let name = match ImageFormat::sniff(&source) {
            Some(ImageFormat::Jpeg) => "image.jpg",
            Some(ImageFormat::Webp) => "image.webp",
            _ => "image.png",
        };
        let form = reqwest::multipart::Form::new()
            .part(
                "image",
                reqwest::multipart::Part::bytes(source).file_name(name),
            )
            .text("model", self.model.to_owned())
            .text("prompt", request.prompt.clone())
            .text("n", "1")
            .text("size", format!("{}x{}", request.width, request.height))
            .text("response_format", "b64_json");
        let answer = self
            .json(
                self.post("/images/edits").multipart(form),
                MAX_ENGINE_REPLY_BYTES,
            )
            .await?;
        answer
            .pointer("/data/0/b64_json")
            .and_then(Value::as_str)
            .ok_or_else(|| engine_broke("answered without b64_json"))
            .and_then(decode_base64)
    }

    async fn extras(
        &self,
        request: &wire::images::ProviderUpscaleRequest,
    ) -> Result<Vec<u8>, ApiError> {
        let answer = self
            .json(
                self.post("/sdapi/v1/extra-single-image").json(&json!({
                    "image": request.image,
                    "resize_mode": 0,
                    "upscaling_resize": request.scale,
                    "upscaler_1": self.model,
                    "show_extras_results": true,
                })),
                MAX_UPSCALED_BYTES,
            )
            .await?;
        answer
            .get("image")
            .and_then(Value::as_str)
            .ok_or_else(|| engine_broke("answered without an image"))
            .and_then(decode_base64)
    }

    async fn comfyui(
        &self,
        workflow: &Value,
        request: &ProviderImageRequest,
    ) -> Result<Vec<Vec<u8>>, ApiError> {
        let graph = fill(workflow, request, self.model);
        let mut client_id = [0u8; 16];
        rand::fill(&mut client_id);
        let queued = self
            .json(
                self.post("/prompt").json(&json!({
                    "prompt": graph,
                    "client_id": hex::encode(client_id),
                })),
                MAX_ENGINE_STATUS_BYTES,
            )
            .await?;
        let prompt_id = queued
            .get("prompt_id")
            .and_then(Value::as_str)
            .ok_or_else(|| engine_broke("queued the workflow without a prompt_id"))?
            .to_owned();
        let fetched = self.comfyui_outputs(&prompt_id, request.variants).await;
        // The job's record goes whatever happened; its images were read already.
        let _ = call_upstream(
            self.post("/history")
                .json(&json!({ "delete": [prompt_id] })),
            MAX_ENGINE_STATUS_BYTES,
        )
        .await;
        fetched
    }

    /// Waits for ComfyUI's job `prompt_id` and fetches its images (at most `variants`).
    async fn comfyui_outputs(
        &self,
        prompt_id: &str,
        variants: u32,
    ) -> Result<Vec<Vec<u8>>, ApiError> {
        let deadline = tokio::time::Instant::now() + COMFYUI_JOB_TIMEOUT;
        let entry = loop {
            let history = self
                .json(
                    self.get(&format!("/history/{prompt_id}")),
                    MAX_ENGINE_STATUS_BYTES,
                )
                .await?;
            if let Some(entry) = history.get(prompt_id) {
                let status = entry.pointer("/status/status_str").and_then(Value::as_str);
                if status == Some("error") {
                    return Err(engine_broke("failed to run the workflow"));
                }
                if entry.pointer("/status/completed").and_then(Value::as_bool) == Some(true)
                    || status == Some("success")
                {
                    break entry.clone();
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::new(
                    ErrorCode::RequestTimeout,
                    "the image engine did not finish in time",
                ));
            }
            tokio::time::sleep(COMFYUI_POLL_INTERVAL).await;
        };
        let mut files: Vec<(String, String, String)> = Vec::new();
        if let Some(outputs) = entry.get("outputs").and_then(Value::as_object) {
            for output in outputs.values() {
                for image in output
                    .get("images")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let field = |name: &str| {
                        image
                            .get(name)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    files.push((field("filename"), field("subfolder"), field("type")));
                }
            }
        }
        if files.is_empty() {
            return Err(engine_broke("finished the workflow without an image"));
        }
        let mut images = Vec::new();
        for (filename, subfolder, kind) in files
            .into_iter()
            .take(usize::try_from(variants).unwrap_or(1))
        {
            let url = reqwest::Url::parse_with_params(
                &format!("{}/view", self.base_url),
                [
                    ("filename", filename.as_str()),
                    ("subfolder", subfolder.as_str()),
                    ("type", kind.as_str()),
                ],
            )
            .map_err(|_| engine_broke("named an image that cannot be fetched"))?;
            let call = match self.api_key {
                Some(key) => self.http.get(url).bearer_auth(key),
                None => self.http.get(url),
            };
            let (status, bytes) = call_upstream(call, MAX_ENGINE_IMAGE_BYTES).await?;
            if !(200..300).contains(&status) {
                return Err(upstream_error(status, &bytes));
            }
            images.push(bytes);
        }
        Ok(images)
    }
}

/// `workflow` with each placeholder replaced by the request's value, typed as ComfyUI's
/// nodes take it.
fn fill(workflow: &Value, request: &ProviderImageRequest, model: &str) -> Value {
    match workflow {
        Value::String(text) if PLACEHOLDERS.contains(&text.as_str()) => match text.as_str() {
            "$prompt" => json!(request.prompt),
            "$negative_prompt" => json!(request.negative_prompt.clone().unwrap_or_default()),
            "$width" => json!(request.width),
            "$height" => json!(request.height),
            "$steps" => json!(request.steps),
            "$cfg_scale" => json!(request.cfg_scale.unwrap_or(DEFAULT_CFG_SCALE)),
            "$seed" => json!(request.seed.unsigned_abs()),
            "$variants" => json!(request.variants),
            _ => json!(model),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| fill(item, request, model))
                .collect(),
        ),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, item)| (name.clone(), fill(item, request, model)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ProviderImageRequest {
        ProviderImageRequest {
            model: "m".into(),
            prompt: "a \"quoted\" fox".into(),
            negative_prompt: None,
            width: 64,
            height: 48,
            steps: 6,
            cfg_scale: Some(5.5),
            seed: -12,
            variants: 2,
            format: ImageFormat::Webp,
        }
    }

    #[test]
    fn the_built_in_workflow_is_filled_with_typed_values() {
        let workflow: Value = serde_json::from_str(COMFYUI_TXT2IMG_WORKFLOW).expect("json");
        check_comfyui_workflow(&workflow).expect("a valid workflow");
        let filled = fill(&workflow, &request(), "sd15.safetensors");
        let text = filled.to_string();
        for placeholder in PLACEHOLDERS {
            assert!(
                !text.contains(&format!("\"{placeholder}\"")),
                "{placeholder} left"
            );
        }
        let nodes = filled.as_object().expect("nodes");
        let sampler = nodes
            .values()
            .find(|node| node["class_type"] == "KSampler")
            .expect("a sampler");
        assert_eq!(sampler["inputs"]["seed"], 12);
        assert_eq!(sampler["inputs"]["steps"], 6);
        assert_eq!(sampler["inputs"]["cfg"], 5.5);
        let latent = nodes
            .values()
            .find(|node| node["class_type"] == "EmptyLatentImage")
            .expect("a latent");
        assert_eq!(latent["inputs"]["batch_size"], 2);
        assert_eq!(latent["inputs"]["width"], 64);
        assert!(text.contains("sd15.safetensors"));
        assert!(
            text.contains(r#"a \"quoted\" fox"#),
            "the prompt is a JSON string, escaped"
        );
    }

    #[test]
    fn a_workflow_without_a_prompt_or_in_the_wrong_format_is_refused() {
        assert!(check_comfyui_workflow(&json!([])).is_err());
        assert!(check_comfyui_workflow(&json!({"1": {"inputs": {}}})).is_err());
        assert!(
            check_comfyui_workflow(&json!({"1": {"class_type": "X", "inputs": {"text": "hi"}}}))
                .is_err()
        );
    }

    #[test]
    fn engine_images_are_reencoded_and_resized_to_what_was_asked() {
        let mut source = image::RgbImage::new(32, 24);
        for (x, y, pixel) in source.enumerate_pixels_mut() {
            *pixel = image::Rgb([(x * 8) as u8, (y * 10) as u8, 128]);
        }
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(source)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("png");
        for format in [ImageFormat::Png, ImageFormat::Webp, ImageFormat::Jpeg] {
            let out = reencode(&png, format, 64, 48).expect("re-encoded");
            assert_eq!(ImageFormat::sniff(&out), Some(format));
            let back = image::load_from_memory(&out).expect("decodes");
            assert_eq!((back.width(), back.height()), (64, 48));
        }
        assert!(reencode(b"not an image", ImageFormat::Png, 8, 8).is_err());
    }

    #[test]
    fn requests_beyond_the_models_limits_are_refused() {
        let limits = ImageLimits {
            max_width: 32,
            ..ImageLimits::default()
        };
        assert_eq!(
            check(&request(), &limits)
                .expect_err("too wide")
                .param
                .as_deref(),
            Some("width")
        );
        let mut many = request();
        many.variants = 5;
        assert!(check(&many, &ImageLimits::default()).is_err());
    }
}
