//! Images at a provider: `POST /provider/v1/images/generations` (images made by the engine
//! behind this provider, in the format and size the gateway asked for), `/image/edit` and
//! `/image/upscale` (an upload changed or enlarged by it, or by the embedded Real-ESRGAN),
//! `/image/background-remove` (the embedded U²-Net), and the images of a sealed request. The engines' own APIs are spoken by
//! [`engine`].
//!
//! Whatever an engine answers is decoded (within bounds), resized if the engine made another
//! size, and encoded in the asked format (WebP losslessly): what the engine wrote into the file
//! (AUTOMATIC1111 writes the prompt) does not come along. Nothing here logs a prompt or an
//! image.

mod engine;

use std::io::Cursor;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use wire::error::{ApiError, ErrorCode};
use wire::images::{
    ImageFormat, ImageLimits, MAX_IMAGE_BYTES, MAX_VARIANTS, ProviderImageRequest, ProviderImages,
};
use wire::models::ModelType;

use engine::Engine;
pub use engine::{COMFYUI_TXT2IMG_WORKFLOW, check_comfyui_workflow};

use crate::{AppState, Backend, UpstreamApi, accept, error_response};

/// Widest and tallest image decoded from an engine.
const MAX_DECODED_SIDE: u32 = 4096;
/// Most memory a decoder may allocate for one engine image (an upscaled one of 16.7
/// megapixels in RGBA is 67 MB).
const MAX_DECODE_ALLOCATION: u64 = 160 * 1024 * 1024;
/// Widest and tallest upscaled image taken from an engine.
const MAX_UPSCALED_SIDE: u32 = 16_384;
/// Most bytes of an upscaled image once encoded.
pub(crate) const MAX_UPSCALED_BYTES: usize = 96 * 1024 * 1024;

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

/// The images a sealed request asks for, in Venice's answer, and how many were made.
pub(crate) async fn sealed_images(
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

/// `POST /provider/v1/image/edit`: the image changed as its prompt says, by an image model
/// whose engine edits (AUTOMATIC1111's img2img, OpenAI's `/images/edits`), as the image's
/// bytes in the asked format.
pub(crate) async fn edit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer_upload(
        &state,
        &headers,
        &body,
        "an image edit",
        |request: &wire::images::ProviderEditRequest| &request.model,
        edit_image,
    )
    .await
}

/// The head and the answer every upload route shares: the request accepted as [`accept`]
/// does, run by `run` while its place is held, answered with the image or the error.
async fn answer_upload<'a, T, Run>(
    state: &'a AppState,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
    model: impl FnOnce(&T) -> &str,
    run: impl FnOnce(&'a AppState, T) -> Run,
) -> Response
where
    T: serde::de::DeserializeOwned,
    Run: std::future::Future<Output = Result<(ImageFormat, Vec<u8>), ApiError>>,
{
    let (_permit, request) = match accept::<T>(state, headers, body, what, model).await {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    match run(state, request).await {
        Ok((format, bytes)) => (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, format.content_type())],
            bytes,
        )
            .into_response(),
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
    let engine = Engine::new(state, base_url, upstream_model, api_key.as_deref());
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

/// `POST /provider/v1/image/upscale`: the image `scale` times as wide and tall, as a PNG:
/// from the embedded Real-ESRGAN, or from AUTOMATIC1111's upscaler this model names.
pub(crate) async fn upscale(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer_upload(
        &state,
        &headers,
        &body,
        "an upscale",
        |request: &wire::images::ProviderUpscaleRequest| &request.model,
        upscale_image,
    )
    .await
}

async fn upscale_image(
    state: &AppState,
    request: wire::images::ProviderUpscaleRequest,
) -> Result<(ImageFormat, Vec<u8>), ApiError> {
    let (width, height) = (
        request.width.saturating_mul(request.scale),
        request.height.saturating_mul(request.scale),
    );
    let pixels = usize::try_from(u64::from(width) * u64::from(height)).unwrap_or(usize::MAX);
    if !matches!(request.scale, 2 | 4) || pixels > wire::images::MAX_UPSCALED_PIXELS {
        return Err(ApiError::invalid(
            "scale",
            "an image is upscaled 2 or 4 times, to at most 16,777,216 pixels",
        ));
    }
    let made = match &state.backend {
        // The embedded upscaler writes the PNG itself, at the size asked.
        Backend::EmbeddedUpscaler { upscaler, .. } => {
            let source = base64::engine::general_purpose::STANDARD
                .decode(&request.image)
                .map_err(|_| ApiError::invalid("image", "the image is not base64"))?;
            let upscaler = Arc::clone(upscaler);
            let scale = request.scale;
            let made = tokio::task::spawn_blocking(move || upscaler.upscale(&source, scale))
                .await
                .map_err(|_| ApiError::new(ErrorCode::Internal, "the upscaling thread failed"))?
                .map_err(|error| {
                    if error.is_clients() {
                        ApiError::invalid("image", error.to_string())
                    } else {
                        ApiError::new(ErrorCode::InferenceFailed, error.to_string())
                    }
                });
            return made.map(|png| (ImageFormat::Png, png));
        }
        Backend::Upstream {
            api: UpstreamApi::Automatic1111,
            base_url,
            upstream_model,
            api_key,
            model_type: ModelType::Upscale,
            ..
        } => {
            Engine::new(state, base_url, upstream_model, api_key.as_deref())
                .extras(&request)
                .await?
        }
        _ => {
            return Err(ApiError::invalid(
                "model",
                format!("{} does not upscale images", state.backend.model_id()),
            ));
        }
    };
    let image = tokio::task::spawn_blocking(move || {
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
    .map_err(|_| ApiError::new(ErrorCode::Internal, "the image encoding thread failed"))??;
    Ok((ImageFormat::Png, image))
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
    let engine = Engine::new(state, base_url, upstream_model, api_key.as_deref());
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
