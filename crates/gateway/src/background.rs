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
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use wire::chat::Usage;
use wire::error::{ApiError, ErrorCode};
use wire::images::{ImageFormat, ProviderBackgroundRequest};
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
use crate::upload::{self, Upload};

/// Widest and tallest image taken (what the provider decodes).
pub(crate) const MAX_SIDE: usize = 4096;
/// Most bytes of the provider's PNG: a 4,096² RGBA image stored nearly raw.
const MAX_ANSWER_BYTES: usize = 80 * 1024 * 1024;
/// What a request's body is.
const SHAPE: &str = "a background removal takes the image as multipart/form-data (a part named `image`) or as JSON with `image` in base64";

/// The background removal operation.
pub(crate) struct BackgroundRemoval;

impl Operation for BackgroundRemoval {
    const ROUTE: &'static str = "background_remove";
    const ID_PREFIX: &'static str = "background";
    type Request = Upload;

    fn body_limit(_state: &AppState) -> usize {
        // The largest upload in base64, and the rest.
        upload::MAX_BODY_BYTES
    }

    fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
        upload::check_content_type(headers)
    }

    fn parse(_state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<Upload, ApiError> {
        upload::read(headers, body, &[], MAX_SIDE, SHAPE)
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
                image: upload::encoded(&request.image),
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
    upload::check_answer(&png, ImageFormat::Png, size)
        .map_err(|why| Failure::fault(ErrorCode::UpstreamError, why))?;
    Ok(png)
}
