//! `POST /image/generate` (Venice's shape) and `POST /images/generations` (OpenAI's): the image
//! operations on the request pipeline, and `GET /image/styles`. A body is parsed and checked
//! against the API's bounds, its model resolved among image models (ids, the `default` trait,
//! OpenAI's model names) and the request held to what that model takes (size, its divisor,
//! steps); a style preset is applied here, so every engine gets the same prompt. A request
//! is priced per image and reserved for every variant asked for.
//!
//! A provider is tried until one answers with every image; each image is checked to be in the
//! asked format and of the asked size before anything reaches the client, and a provider that
//! answers otherwise is at fault and another is tried. The images pass through memory only:
//! nothing here logs, stores or hashes a prompt or an image; the request's one log line is its
//! settlement record's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use wire::chat::Usage;
use wire::error::{ApiError, ErrorCode};
use wire::images::{
    Answer, ImageLimits, ImageRequest, MAX_IMAGE_BYTES, MAX_SEED, OpenAiImage, OpenAiImages,
    ProviderImageRequest, ProviderImages, STYLES, StyleList, Timing, VeniceImages,
};
use wire::models::ModelType;
use wire::provider::PROVIDER_IMAGES_PATH;

use crate::AppState;
use crate::catalogue::LiveModels;
use crate::config::ModelPricing;
use crate::pipeline::dispatch::{Failure, dispatch_with, read_whole, send_to_provider};
use crate::pipeline::pricing::UsageBound;
use crate::pipeline::respond::insert_header;
use crate::pipeline::settlement::Tally;
use crate::pipeline::{Admitted, Operation, Resolved, resolve_typed};
use crate::registry::Provider;

/// The model a request that names none is for: the `default` trait of image models.
const DEFAULT_MODEL: &str = "default";
/// Largest request body: two prompts of 7,500 characters of up to four bytes, and the rest.
const MAX_BODY_BYTES: usize = 128 * 1024;
/// Longest wait for a provider's images: four large images on a busy engine.
const IMAGE_TIMEOUT: Duration = Duration::from_secs(300);

/// Venice's `/image/generate`.
pub(crate) struct VeniceImage;
/// OpenAI's `/images/generations`.
pub(crate) struct OpenAiImageGeneration;

/// The limits of `model_id` as its live advert gives them (a model with no advert of its
/// own, configured but offline, takes the usual ones).
fn limits_of(live: &LiveModels, model_id: &str) -> ImageLimits {
    live.get(model_id)
        .and_then(|(advert, _)| advert.image)
        .unwrap_or_default()
}

/// Resolves an image request's model and checks the request against it.
fn resolve_image(
    state: &AppState,
    request: &ImageRequest,
    live: &LiveModels,
    fall_back_to_default: bool,
) -> Result<Resolved, ApiError> {
    let resolved = match resolve_typed(state, &request.model, live, ModelType::Image, "image") {
        Err(error) if fall_back_to_default && error.code == ErrorCode::ModelNotFound => {
            // OpenAI's route runs a model name it does not know on the default image model,
            // as Venice's does.
            resolve_typed(state, DEFAULT_MODEL, live, ModelType::Image, "image")
                .map_err(|_| error)?
        }
        other => other?,
    };
    request.check_limits(&limits_of(live, &resolved.model_id))?;
    request.style()?;
    Ok(resolved)
}

fn image_bound(request: &ImageRequest) -> UsageBound {
    UsageBound {
        prompt_tokens: u64::from(request.variants),
        completion_tokens: 0,
    }
}

/// What tells the two image routes apart: how the body is read, and what a model name not
/// served here means.
pub(crate) trait Shape: Send + Sync + 'static {
    /// The route's metric label.
    const ROUTE: &'static str;
    /// Whether a model name not served here runs on the default image model (OpenAI's route,
    /// as Venice's does) rather than being refused.
    const FALLS_BACK: bool;
    fn parse(body: &[u8]) -> Result<ImageRequest, ApiError>;
}

impl Shape for VeniceImage {
    const ROUTE: &'static str = "image_generate";
    const FALLS_BACK: bool = false;
    fn parse(body: &[u8]) -> Result<ImageRequest, ApiError> {
        ImageRequest::parse_venice(body, DEFAULT_MODEL)
    }
}

impl Shape for OpenAiImageGeneration {
    const ROUTE: &'static str = "images_generations";
    const FALLS_BACK: bool = true;
    fn parse(body: &[u8]) -> Result<ImageRequest, ApiError> {
        ImageRequest::parse_openai(body, DEFAULT_MODEL)
    }
}

/// The image operation, on either route.
pub(crate) struct ImageGeneration<S>(std::marker::PhantomData<S>);

impl<S: Shape> Operation for ImageGeneration<S> {
    const ROUTE: &'static str = S::ROUTE;
    const ID_PREFIX: &'static str = "image";
    type Request = ImageRequest;

    fn body_limit(_state: &AppState) -> usize {
        MAX_BODY_BYTES
    }

    fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
        crate::pipeline::check_json_content_type(headers)
    }

    fn parse(
        _state: &AppState,
        _headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<ImageRequest, ApiError> {
        S::parse(body)
    }

    fn resolve(
        state: &AppState,
        request: &ImageRequest,
        live: &LiveModels,
    ) -> Result<Resolved, ApiError> {
        resolve_image(state, request, live, S::FALLS_BACK)
    }

    fn bound(_state: &AppState, request: &ImageRequest, _body: &Bytes) -> UsageBound {
        image_bound(request)
    }

    fn priced(pricing: ModelPricing) -> ModelPricing {
        pricing.per_image_units()
    }

    async fn respond(admitted: Admitted<ImageRequest>) -> Result<Response, ApiError> {
        generate(admitted, S::ROUTE).await
    }
}

/// A seed for a request that gave none.
pub(crate) fn drawn_seed() -> i64 {
    let mut bytes = [0u8; 8];
    rand::fill(&mut bytes);
    i64::try_from(u64::from_le_bytes(bytes) % u64::try_from(MAX_SEED).unwrap_or(1)).unwrap_or(0) + 1
}

/// What the provider is asked for.
fn provider_request(
    request: &ImageRequest,
    model_id: &str,
    live: &LiveModels,
) -> Result<ProviderImageRequest, ApiError> {
    request.to_provider(model_id, &limits_of(live, model_id), drawn_seed())
}

async fn generate(
    admitted: Admitted<ImageRequest>,
    route: &'static str,
) -> Result<Response, ApiError> {
    let Admitted { request, paid } = admitted;
    let state = Arc::clone(&paid.state);
    let model_id = paid.model.model_id.clone();
    let model_name = paid.model.model_name.clone();
    let asked = provider_request(
        &request,
        &model_id,
        &state.registry.live_models(Instant::now()),
    )?;
    let body = Bytes::from(serde_json::to_vec(&asked).map_err(|_| {
        ApiError::new(
            ErrorCode::Internal,
            "the provider request could not be encoded",
        )
    })?);
    let (attempt, attempts, (answer, images)) =
        dispatch_with(&state, &model_id, None, |provider| {
            fetch(&state, provider, body.clone(), &asked)
        })
        .await?;
    let bound = paid.bound;
    let started = paid.started;
    let mut record = paid
        .commit(
            route,
            "image",
            &attempt.provider,
            attempts,
            Tally::new(bound, u64::from(asked.variants)),
        )
        .await?;
    record.tally.report(Usage::counts(
        u64::try_from(images.len()).unwrap_or(u64::MAX),
        0,
    ));
    record.first_token_at = Some(Instant::now());
    record.status = Some(200);
    let provider_id = record.provider.id.clone();
    drop(record);
    let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut response = match request.answer {
        Answer::Venice { binary: true } => (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, asked.format.content_type())],
            images.into_iter().next().unwrap_or_default(),
        )
            .into_response(),
        Answer::Venice { binary: false } => {
            let id = format!("generate-image-{}", economy::random_hex(12));
            json_response(&VeniceImages {
                id,
                images: answer.images,
                request: None,
                timing: Timing {
                    inference_duration: answer.inference_ms.min(elapsed),
                    inference_preprocessing_time: 0,
                    inference_queue_time: elapsed.saturating_sub(answer.inference_ms),
                    total: elapsed,
                },
            })
        }
        Answer::OpenAi { data_url } => json_response(&OpenAiImages {
            created: wire::clock::unix_seconds(),
            data: answer
                .images
                .into_iter()
                .map(|b64_json| {
                    if data_url {
                        OpenAiImage::Url {
                            url: format!("data:{};base64,{b64_json}", asked.format.content_type()),
                        }
                    } else {
                        OpenAiImage::B64 { b64_json }
                    }
                })
                .collect(),
        }),
    };
    let headers = response.headers_mut();
    insert_header(headers, "x-venice-model-id", &model_id);
    insert_header(headers, "x-venice-model-name", &model_name);
    insert_header(headers, "x-venice-is-blurred", "false");
    insert_header(headers, "x-venice-is-content-violation", "false");
    insert_header(headers, "x-gondola-provider", &provider_id);
    Ok(response)
}

fn json_response<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Sends the request to one provider and reads its images: the answer as sent (base64) and
/// each image's bytes, every one checked to be an image of the asked format and size.
async fn fetch(
    state: &AppState,
    provider: Arc<Provider>,
    body: Bytes,
    asked: &ProviderImageRequest,
) -> Result<(ProviderImages, Vec<Vec<u8>>), Failure> {
    let deadline = tokio::time::Instant::now() + IMAGE_TIMEOUT;
    let request_id = economy::random_hex(16);
    let response = send_to_provider(
        state,
        &provider,
        PROVIDER_IMAGES_PATH,
        &[
            (http::header::CONTENT_TYPE.as_str(), "application/json"),
            ("x-request-id", &request_id),
        ],
        body,
        deadline,
    )
    .await?;
    let most = (MAX_IMAGE_BYTES / 3 * 4 + 1024) * usize::try_from(asked.variants).unwrap_or(1);
    let reply = read_whole(response, deadline, most, "images").await?;
    let answer: ProviderImages = serde_json::from_slice(&reply).map_err(|_| {
        Failure::fault(
            ErrorCode::UpstreamError,
            "the provider's answer is not a set of images",
        )
    })?;
    let images = check_images(&answer, asked)
        .map_err(|message| Failure::fault(ErrorCode::UpstreamError, message))?;
    Ok((answer, images))
}

/// Each image of `answer` decoded, or why the answer is not what was asked for.
fn check_images(
    answer: &ProviderImages,
    asked: &ProviderImageRequest,
) -> Result<Vec<Vec<u8>>, String> {
    if answer.format != asked.format {
        return Err(format!(
            "the provider answered {} images for a {} request",
            answer.format.as_str(),
            asked.format.as_str()
        ));
    }
    if answer.images.is_empty()
        || answer.images.len() > usize::try_from(asked.variants).unwrap_or(1)
    {
        return Err(format!(
            "the provider answered {} images for {} asked",
            answer.images.len(),
            asked.variants
        ));
    }
    answer
        .images
        .iter()
        .map(|encoded| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| "an image from the provider is not base64".to_owned())?;
            if bytes.len() > MAX_IMAGE_BYTES {
                return Err("an image from the provider is larger than allowed".to_owned());
            }
            if wire::images::ImageFormat::sniff(&bytes) != Some(asked.format) {
                return Err(format!(
                    "an image from the provider is not {}",
                    asked.format.as_str()
                ));
            }
            let size = imagesize::blob_size(&bytes)
                .map_err(|_| "an image from the provider cannot be read".to_owned())?;
            if (size.width, size.height)
                != (
                    usize::try_from(asked.width).unwrap_or(0),
                    usize::try_from(asked.height).unwrap_or(0),
                )
            {
                return Err(format!(
                    "an image from the provider is {}x{}, not the {}x{} asked for",
                    size.width, size.height, asked.width, asked.height
                ));
            }
            Ok(bytes)
        })
        .collect()
}

/// `GET /image/styles`.
pub(crate) fn styles() -> StyleList {
    StyleList {
        object: "list".into(),
        data: STYLES.iter().map(|style| style.name.to_owned()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::images::ImageFormat;

    fn png(width: u32, height: u32) -> Vec<u8> {
        // A PNG's signature and IHDR chunk are all a reader of sizes needs.
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        bytes.extend_from_slice(&width.to_be_bytes());
        bytes.extend_from_slice(&height.to_be_bytes());
        bytes.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        bytes
    }

    fn asked(variants: u32) -> ProviderImageRequest {
        ProviderImageRequest {
            model: "m".into(),
            prompt: "p".into(),
            negative_prompt: None,
            width: 64,
            height: 32,
            steps: 4,
            cfg_scale: None,
            seed: 1,
            variants,
            format: ImageFormat::Png,
        }
    }

    fn answer(images: &[Vec<u8>], format: ImageFormat) -> ProviderImages {
        ProviderImages {
            format,
            images: images
                .iter()
                .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes))
                .collect(),
            inference_ms: 5,
        }
    }

    #[test]
    fn a_providers_images_are_held_to_the_asked_format_size_and_count() {
        let good = png(64, 32);
        assert_eq!(
            check_images(
                &answer(&[good.clone(), good.clone()], ImageFormat::Png),
                &asked(2)
            )
            .expect("good")
            .len(),
            2
        );
        for (reply, why) in [
            (answer(&[png(32, 32)], ImageFormat::Png), "size"),
            (
                answer(&[b"GIF89a....".to_vec()], ImageFormat::Png),
                "format",
            ),
            (
                answer(std::slice::from_ref(&good), ImageFormat::Webp),
                "declared format",
            ),
            (answer(&[], ImageFormat::Png), "none"),
            (
                answer(
                    &[good.clone(), good.clone(), good.clone()],
                    ImageFormat::Png,
                ),
                "too many",
            ),
        ] {
            assert!(check_images(&reply, &asked(2)).is_err(), "{why}");
        }
        let mut not_base64 = answer(&[good], ImageFormat::Png);
        not_base64.images[0].push('!');
        assert!(check_images(&not_base64, &asked(1)).is_err());
    }

    #[test]
    fn drawn_seeds_are_within_venices_range() {
        for _ in 0..1000 {
            let seed = drawn_seed();
            assert!((1..=MAX_SEED).contains(&seed), "{seed}");
        }
    }
}
