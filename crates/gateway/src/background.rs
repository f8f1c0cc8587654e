//! `POST /image/background-remove`: an image's background taken away by the default
//! background remover (U²-Net, embedded in a provider), on the request pipeline. The image
//! comes as a multipart upload (a part named `image`) or as base64 in JSON (`image`, raw or a
//! `data:` URL); Venice's `image_url` is refused, since the gateway fetches no URL for a
//! client. It is checked to be a PNG, JPEG or WebP within the bounds before anything is paid,
//! priced per image, and answered with the provider's PNG, held to the upload's size.
//!
//! Nothing here logs or keeps the image; the request's one log line is its settlement record's.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use wire::chat::Usage;
use wire::error::{ApiError, ErrorCode};
use wire::images::{ImageFormat, MAX_UPLOAD_BYTES, ProviderBackgroundRequest};
use wire::models::ModelType;
use wire::provider::PROVIDER_BACKGROUND_REMOVAL_PATH;

use crate::AppState;
use crate::catalogue::LiveModels;
use crate::config::ModelPricing;
use crate::pipeline::dispatch::{Failure, dispatch_with, read_whole, send_to_provider};
use crate::pipeline::pricing::UsageBound;
use crate::pipeline::respond::insert_header;
use crate::pipeline::settlement::Tally;
use crate::pipeline::{Admitted, Operation, Resolved, resolve_typed};
use crate::registry::Provider;

/// Widest and tallest image taken (what the provider decodes).
pub(crate) const MAX_SIDE: usize = 4096;
/// Most parts of a multipart upload.
const MAX_PARTS: usize = 4;
/// Most bytes of the provider's PNG: a 4,096² RGBA image stored nearly raw.
const MAX_ANSWER_BYTES: usize = 80 * 1024 * 1024;
/// What a request's body is.
const SHAPE: &str = "a background removal takes the image as multipart/form-data (a part named `image`) or as JSON with `image` in base64";

/// The background removal operation.
pub(crate) struct BackgroundRemoval;

/// An upload, checked: its bytes and size.
pub(crate) struct Upload {
    image: Vec<u8>,
    width: usize,
    height: usize,
}

/// The uploaded image, from either form of body.
fn uploaded(headers: &HeaderMap, body: &Bytes) -> Result<Vec<u8>, ApiError> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let parts =
            crate::pipeline::admission::multipart_parts(headers, body, MAX_PARTS, "image", SHAPE)?;
        if parts.iter().any(|part| part.name == "image_url") {
            return Err(refused_url());
        }
        let part = parts
            .into_iter()
            .find(|part| part.name == "image")
            .ok_or_else(|| ApiError::invalid("image", SHAPE))?;
        // A file part is the image; a text part is base64, as in JSON.
        return if part.file_name.is_some() {
            Ok(part.bytes)
        } else {
            decode_base64(&String::from_utf8_lossy(&part.bytes))
        };
    }
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|error| {
            ApiError::invalid(
                "image",
                format!("not a background removal request: {error}"),
            )
        })?;
    if let Some(unknown) = fields
        .keys()
        .find(|name| !["image", "image_url"].contains(&name.as_str()))
    {
        return Err(ApiError::invalid(
            unknown.as_str(),
            format!("{unknown} is not a field of a background removal"),
        ));
    }
    if fields.contains_key("image_url") {
        return Err(refused_url());
    }
    match fields.get("image") {
        Some(serde_json::Value::String(text)) => decode_base64(text),
        _ => Err(ApiError::invalid("image", SHAPE)),
    }
}

fn refused_url() -> ApiError {
    ApiError::invalid(
        "image_url",
        "the gateway fetches no URL for a client: send the image itself in `image`",
    )
}

fn decode_base64(text: &str) -> Result<Vec<u8>, ApiError> {
    let payload = text
        .split_once("base64,")
        .map_or(text, |(_, payload)| payload);
    base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|_| ApiError::invalid("image", "the image is not base64"))
}

/// Checks an upload: within the size bound, a PNG, JPEG or WebP of at most [`MAX_SIDE`]
/// pixels a side.
fn checked(image: Vec<u8>) -> Result<Upload, ApiError> {
    if image.len() > MAX_UPLOAD_BYTES {
        return Err(ApiError::invalid(
            "image",
            format!(
                "the image is {} bytes; at most {MAX_UPLOAD_BYTES} are taken",
                image.len()
            ),
        ));
    }
    if ImageFormat::sniff(&image).is_none() {
        return Err(ApiError::invalid(
            "image",
            "the image is not a PNG, JPEG or WebP",
        ));
    }
    let size = imagesize::blob_size(&image)
        .map_err(|_| ApiError::invalid("image", "the image's size cannot be read"))?;
    if size.width == 0 || size.height == 0 || size.width > MAX_SIDE || size.height > MAX_SIDE {
        return Err(ApiError::invalid(
            "image",
            format!(
                "the image is {}x{}; at most {MAX_SIDE}x{MAX_SIDE} pixels are taken",
                size.width, size.height
            ),
        ));
    }
    Ok(Upload {
        image,
        width: size.width,
        height: size.height,
    })
}

impl Operation for BackgroundRemoval {
    const ROUTE: &'static str = "background_remove";
    const ID_PREFIX: &'static str = "background";
    type Request = Upload;

    fn body_limit(_state: &AppState) -> usize {
        // The largest upload in base64, and the rest.
        MAX_UPLOAD_BYTES / 3 * 4 + 64 * 1024
    }

    fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            Ok(())
        } else {
            crate::pipeline::check_json_content_type(headers)
        }
    }

    fn parse(_state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<Upload, ApiError> {
        checked(uploaded(headers, body)?)
    }

    fn resolve(
        state: &AppState,
        _request: &Upload,
        live: &LiveModels,
    ) -> Result<Resolved, ApiError> {
        resolve_typed(
            state,
            "default",
            live,
            ModelType::BackgroundRemoval,
            "background removal",
        )
    }

    fn bound(_state: &AppState, _request: &Upload, _body: &Bytes) -> UsageBound {
        UsageBound {
            prompt_tokens: 1,
            completion_tokens: 0,
        }
    }

    fn priced(pricing: ModelPricing) -> ModelPricing {
        pricing.per_image_units()
    }

    async fn respond(admitted: Admitted<Upload>) -> Result<Response, ApiError> {
        let Admitted { request, paid } = admitted;
        let state = Arc::clone(&paid.state);
        let model_id = paid.model.model_id.clone();
        let body = Bytes::from(
            serde_json::to_vec(&ProviderBackgroundRequest {
                model: model_id.clone(),
                image: base64::engine::general_purpose::STANDARD.encode(&request.image),
            })
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::Internal,
                    "the provider request could not be encoded",
                )
            })?,
        );
        let size = (request.width, request.height);
        let (attempt, attempts, png) = dispatch_with(&state, &model_id, None, |provider| {
            remove_at(&state, provider, body.clone(), size)
        })
        .await?;
        let bound = paid.bound;
        let mut record = paid
            .commit(
                Self::ROUTE,
                "background removed",
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
            [(http::header::CONTENT_TYPE, "image/png")],
            png,
        )
            .into_response();
        insert_header(response.headers_mut(), "x-venice-model-id", &model_id);
        insert_header(response.headers_mut(), "x-gondola-provider", &provider_id);
        Ok(response)
    }
}

/// Sends the image to one provider: its PNG, checked to be a PNG of the upload's size.
async fn remove_at(
    state: &AppState,
    provider: Arc<Provider>,
    body: Bytes,
    size: (usize, usize),
) -> Result<Vec<u8>, Failure> {
    let deadline = tokio::time::Instant::now() + state.config.limits.first_byte_timeout;
    let response = send_to_provider(
        state,
        &provider,
        PROVIDER_BACKGROUND_REMOVAL_PATH,
        &[(http::header::CONTENT_TYPE.as_str(), "application/json")],
        body,
        deadline,
    )
    .await?;
    let png = read_whole(response, deadline, MAX_ANSWER_BYTES, "image").await?;
    let fits = ImageFormat::sniff(&png) == Some(ImageFormat::Png)
        && imagesize::blob_size(&png).is_ok_and(|answer| (answer.width, answer.height) == size);
    if fits {
        Ok(png)
    } else {
        Err(Failure::fault(
            ErrorCode::UpstreamError,
            "the provider's answer is not a PNG of the image's size",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(body: serde_json::Value) -> Result<Vec<u8>, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().expect("header"),
        );
        uploaded(&headers, &Bytes::from(body.to_string()))
    }

    #[test]
    fn an_upload_is_read_from_json_and_held_to_its_bounds() {
        let png =
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x08\x08\x06\0\0\0\0\0\0\0".to_vec();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&png);
        assert_eq!(
            json(serde_json::json!({"image": encoded})).expect("read"),
            png
        );
        let data_url = format!("data:image/png;base64,{encoded}");
        assert_eq!(
            json(serde_json::json!({"image": data_url})).expect("read"),
            png
        );
        let upload = checked(png).expect("a 16x8 PNG");
        assert_eq!((upload.width, upload.height), (16, 8));
        for (body, param) in [
            (
                serde_json::json!({"image_url": "https://example.com/a.png"}),
                "image_url",
            ),
            (serde_json::json!({"image": "not base64!"}), "image"),
            (serde_json::json!({}), "image"),
            (serde_json::json!({"image": "aGk=", "scale": 2}), "scale"),
        ] {
            assert_eq!(
                json(body.clone()).expect_err("refused").param.as_deref(),
                Some(param),
                "{body}"
            );
        }
        assert!(checked(b"GIF89a".to_vec()).is_err());
        let mut huge = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        huge.extend_from_slice(&5000u32.to_be_bytes());
        huge.extend_from_slice(&16u32.to_be_bytes());
        huge.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        let error = checked(huge).err().expect("too wide");
        assert!(error.message.contains("4096"), "{}", error.message);
    }
}
