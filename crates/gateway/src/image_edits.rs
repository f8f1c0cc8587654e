//! `POST /image/edit` and `POST /image/upscale`: an uploaded image changed by an image model
//! whose engine edits (as its prompt says), or made larger by an upscaler, on the request
//! pipeline. The upload is read and checked as `upload.rs` does; each is priced per image.
//!
//! An edit keeps the upload's size, rounded down to the model's divisor and held to its
//! largest; an upscale is 2 or 4 times as wide and tall, 4 coming down to 2 where the result
//! would pass 16.7 megapixels (as Venice does). The provider's answer is checked to be an
//! image of that format and size before it is passed on. Nothing here logs or keeps an image
//! or a prompt.

use std::sync::Arc;
use std::time::Instant;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use wire::chat::Usage;
use wire::error::{ApiError, ErrorCode};
use wire::images::{
    ImageFormat, MAX_EDIT_PROMPT_CHARS, MIN_SOURCE_PIXELS, ProviderEditRequest,
    ProviderUpscaleRequest,
};
use wire::models::ModelType;
use wire::provider::{PROVIDER_IMAGE_EDIT_PATH, PROVIDER_UPSCALE_PATH};

use crate::AppState;
use crate::catalogue::LiveModels;
use crate::config::ModelPricing;
use crate::pipeline::dispatch::{Failure, dispatch_with, read_whole, send_to_provider};
use crate::pipeline::pricing::UsageBound;
use crate::pipeline::respond::insert_header;
use crate::pipeline::settlement::Tally;
use crate::pipeline::{Admitted, Operation, Paid, Resolved, resolve_typed};
use crate::upload::{self, Upload};

/// Widest and tallest image taken to edit or upscale.
const MAX_SOURCE_SIDE: usize = 4096;
/// Most bytes of an edited image from a provider.
const MAX_EDITED_BYTES: usize = 16 * 1024 * 1024;
/// Most bytes of an upscaled image from a provider.
const MAX_UPSCALED_BYTES: usize = 96 * 1024 * 1024;
/// What an edit's body is.
const EDIT_SHAPE: &str = "an edit takes `prompt` and the image (a multipart part named `image`, or base64 `image` in JSON)";
/// What an upscale's body is.
const UPSCALE_SHAPE: &str = "an upscale takes the image (a multipart part named `image`, or base64 `image` in JSON) and `scale`, 2 or 4";

/// `/image/edit`.
pub(crate) struct ImageEdit;
/// `/image/upscale`.
pub(crate) struct ImageUpscale;

/// An edit, read and checked.
pub(crate) struct EditRequest {
    upload: Upload,
    model: String,
    prompt: String,
    format: ImageFormat,
}

/// An upscale, read and checked.
pub(crate) struct UpscaleRequest {
    upload: Upload,
    scale: u32,
}

fn big_enough(upload: &Upload) -> Result<(), ApiError> {
    if upload.width * upload.height < MIN_SOURCE_PIXELS {
        return Err(ApiError::invalid(
            "image",
            format!(
                "the image is {}x{}; at least {MIN_SOURCE_PIXELS} pixels (256x256) are taken",
                upload.width, upload.height
            ),
        ));
    }
    Ok(())
}

/// The size an edit of `upload` is made at on a model with `limits`.
fn edit_size(upload: &Upload, limits: &wire::images::ImageLimits) -> Result<(u32, u32), ApiError> {
    let divisor = limits.divisor.max(1) as usize;
    let (width, height) = (
        upload.width / divisor * divisor,
        upload.height / divisor * divisor,
    );
    if width > limits.max_width as usize || height > limits.max_height as usize {
        return Err(ApiError::invalid(
            "image",
            format!(
                "the image is {}x{}; this model edits images up to {}x{}",
                upload.width, upload.height, limits.max_width, limits.max_height
            ),
        ));
    }
    Ok((
        u32::try_from(width).unwrap_or(0),
        u32::try_from(height).unwrap_or(0),
    ))
}

fn limits_of(live: &LiveModels, model_id: &str) -> wire::images::ImageLimits {
    live.get(model_id)
        .and_then(|(advert, _)| advert.image)
        .unwrap_or_default()
}

fn one_image() -> UsageBound {
    UsageBound {
        prompt_tokens: 1,
        completion_tokens: 0,
    }
}

impl Operation for ImageEdit {
    const ROUTE: &'static str = "image_edit";
    const ID_PREFIX: &'static str = "edit";
    type Request = EditRequest;

    fn body_limit(_state: &AppState) -> usize {
        upload::MAX_BODY_BYTES
    }

    fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
        upload::check_content_type(headers)
    }

    fn parse(
        _state: &AppState,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<EditRequest, ApiError> {
        let upload = upload::read(
            headers,
            body,
            &[
                "prompt",
                "model",
                "modelId",
                "output_format",
                "safe_mode",
                "aspect_ratio",
                "resolution",
                "enhance_prompt",
                "disable_prompt_optimization_thinking",
            ],
            MAX_SOURCE_SIDE,
            EDIT_SHAPE,
        )?;
        big_enough(&upload)?;
        let prompt = upload
            .text("prompt")?
            .filter(|prompt| !prompt.trim().is_empty())
            .ok_or_else(|| {
                ApiError::invalid("prompt", "prompt is required: say how to change the image")
            })?;
        let characters = prompt.chars().count();
        if characters > MAX_EDIT_PROMPT_CHARS {
            return Err(ApiError::invalid(
                "prompt",
                format!(
                    "prompt is {characters} characters; at most {MAX_EDIT_PROMPT_CHARS} are allowed"
                ),
            ));
        }
        if matches!(
            upload.fields.get("enhance_prompt"),
            Some(serde_json::Value::Bool(true))
        ) || upload.text("enhance_prompt").ok().flatten().as_deref() == Some("true")
        {
            return Err(ApiError::invalid(
                "enhance_prompt",
                "Rewriting the prompt is not offered by this gateway; leave enhance_prompt out",
            ));
        }
        let format = match upload.text("output_format")?.as_deref() {
            None | Some("png") => ImageFormat::Png,
            Some("jpeg" | "jpg") => ImageFormat::Jpeg,
            Some("webp") => ImageFormat::Webp,
            Some(other) => {
                return Err(ApiError::invalid(
                    "output_format",
                    format!("output_format is jpeg, png or webp, not {other:?}"),
                ));
            }
        };
        let model = upload
            .text("model")?
            .or(upload.text("modelId")?)
            .unwrap_or_else(|| "default".to_owned());
        Ok(EditRequest {
            upload,
            model,
            prompt,
            format,
        })
    }

    fn resolve(
        state: &AppState,
        request: &EditRequest,
        live: &LiveModels,
    ) -> Result<Resolved, ApiError> {
        let resolved = resolve_typed(state, &request.model, live, ModelType::Image, "image")?;
        let limits = limits_of(live, &resolved.model_id);
        if !limits.edits {
            return Err(ApiError::invalid(
                "model",
                format!(
                    "model {:?} makes images but does not edit them",
                    resolved.model_id
                ),
            ));
        }
        edit_size(&request.upload, &limits)?;
        Ok(resolved)
    }

    fn bound(_state: &AppState, _request: &EditRequest, _body: &Bytes) -> UsageBound {
        one_image()
    }

    fn priced(pricing: ModelPricing) -> ModelPricing {
        pricing.per_image_units()
    }

    async fn respond(admitted: Admitted<EditRequest>) -> Result<Response, ApiError> {
        let Admitted { request, paid } = admitted;
        let state = Arc::clone(&paid.state);
        let model_id = paid.model.model_id.clone();
        let limits = limits_of(&state.registry.live_models(Instant::now()), &model_id);
        let (width, height) = edit_size(&request.upload, &limits)?;
        let body = ProviderEditRequest {
            model: model_id.clone(),
            prompt: request.prompt,
            image: upload::encoded(&request.upload.image),
            width,
            height,
            steps: limits.default_steps,
            seed: crate::images::drawn_seed(),
            format: request.format,
        };
        let body = Bytes::from(serde_json::to_vec(&body).map_err(|_| upload::encode_failed())?);
        let size = (width as usize, height as usize);
        relay_image(
            paid,
            Self::ROUTE,
            PROVIDER_IMAGE_EDIT_PATH,
            body,
            request.format,
            size,
            MAX_EDITED_BYTES,
        )
        .await
    }
}

impl Operation for ImageUpscale {
    const ROUTE: &'static str = "image_upscale";
    const ID_PREFIX: &'static str = "upscale";
    type Request = UpscaleRequest;

    fn body_limit(_state: &AppState) -> usize {
        upload::MAX_BODY_BYTES
    }

    fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
        upload::check_content_type(headers)
    }

    fn parse(
        _state: &AppState,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<UpscaleRequest, ApiError> {
        let upload = upload::read(
            headers,
            body,
            &["scale", "creativity", "model"],
            MAX_SOURCE_SIDE,
            UPSCALE_SHAPE,
        )?;
        big_enough(&upload)?;
        let asked = match upload.number("scale")? {
            None => 2,
            Some(2.0) => 2,
            Some(4.0) => 4,
            Some(scale) => {
                return Err(ApiError::invalid(
                    "scale",
                    format!("scale is 2 or 4, not {scale}"),
                ));
            }
        };
        if let Some(creativity) = upload.number("creativity")?
            && !(0.0..=1.0).contains(&creativity)
        {
            return Err(ApiError::invalid("creativity", "creativity is from 0 to 1"));
        }
        let scale =
            wire::images::upscale_factor(asked, upload.width, upload.height).ok_or_else(|| {
                ApiError::invalid(
                    "image",
                    format!(
                        "the image is {}x{}; twice as large would pass {} pixels",
                        upload.width,
                        upload.height,
                        wire::images::MAX_UPSCALED_PIXELS
                    ),
                )
            })?;
        Ok(UpscaleRequest { upload, scale })
    }

    fn resolve(
        state: &AppState,
        request: &UpscaleRequest,
        live: &LiveModels,
    ) -> Result<Resolved, ApiError> {
        let model = request
            .upload
            .text("model")?
            .unwrap_or_else(|| "default".to_owned());
        resolve_typed(state, &model, live, ModelType::Upscale, "upscale")
    }

    fn bound(_state: &AppState, _request: &UpscaleRequest, _body: &Bytes) -> UsageBound {
        one_image()
    }

    fn priced(pricing: ModelPricing) -> ModelPricing {
        pricing.per_image_units()
    }

    async fn respond(admitted: Admitted<UpscaleRequest>) -> Result<Response, ApiError> {
        let Admitted { request, paid } = admitted;
        let scale = request.scale;
        let (width, height) = (request.upload.width, request.upload.height);
        let body = ProviderUpscaleRequest {
            model: paid.model.model_id.clone(),
            image: upload::encoded(&request.upload.image),
            scale,
            width: u32::try_from(width).unwrap_or(0),
            height: u32::try_from(height).unwrap_or(0),
        };
        let body = Bytes::from(serde_json::to_vec(&body).map_err(|_| upload::encode_failed())?);
        let size = (width * scale as usize, height * scale as usize);
        relay_image(
            paid,
            Self::ROUTE,
            PROVIDER_UPSCALE_PATH,
            body,
            ImageFormat::Png,
            size,
            MAX_UPSCALED_BYTES,
        )
        .await
    }
}

/// Sends `body` to a provider's `path` (failing over), holds its answer to an image of
/// `format` and `size`, settles one image and answers with it.
async fn relay_image(
    paid: Paid,
    route: &'static str,
    path: &'static str,
    body: Bytes,
    format: ImageFormat,
    size: (usize, usize),
    max_bytes: usize,
) -> Result<Response, ApiError> {
    let state = Arc::clone(&paid.state);
    let model_id = paid.model.model_id.clone();
    let (attempt, attempts, image) = dispatch_with(&state, &model_id, None, |provider| {
        let state = Arc::clone(&state);
        let body = body.clone();
        async move {
            let deadline = tokio::time::Instant::now() + state.config.limits.first_byte_timeout;
            let response = send_to_provider(
                &state,
                &provider,
                path,
                &[(http::header::CONTENT_TYPE.as_str(), "application/json")],
                body,
                deadline,
            )
            .await?;
            let image = read_whole(response, deadline, max_bytes, "image").await?;
            upload::check_answer(&image, format, size)
                .map_err(|why| Failure::fault(ErrorCode::UpstreamError, why))?;
            Ok(image)
        }
    })
    .await?;
    let bound = paid.bound;
    let mut record = paid
        .commit(
            route,
            "image",
            &attempt.provider,
            attempts,
            Tally::new(bound, 1),
        )
        .await?;
    record.tally.report(Usage::counts(1, 0));
    record.status = Some(200);
    let provider_id = record.provider.id.clone();
    drop(record);
    let mut response = (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, format.content_type())],
        image,
    )
        .into_response();
    insert_header(response.headers_mut(), "x-venice-model-id", &model_id);
    insert_header(response.headers_mut(), "x-gondola-provider", &provider_id);
    Ok(response)
}
