//! Venice's asynchronous video API: `POST /video/quote` (the price of a video), `/video/queue`
//! (an operation of the request pipeline: priced per second of video, paid when a provider has
//! taken the job), `/video/retrieve` (the job's progress, then its video) and `/video/complete`
//! (the video deleted).
//!
//! The gateway keeps no table of jobs. A job lives with the provider that makes it (its record
//! and, once made, its video, in the provider's data directory, for at most a day); the queue
//! id the client gets names that provider and its job, bound by an HMAC under a key from the
//! gateway's data directory to the model and to whom the job belongs. So any restart of the
//! gateway keeps every job reachable, a provider's restart keeps its own (it registers again
//! under the same id), and a queue id is good only for its owner's key (or, for a job paid with
//! tokens or made anonymously, for whoever holds it). The video passes through the gateway as
//! it is read and is never stored here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use http::{HeaderMap, StatusCode};
use sha2::Sha256;
use wire::chat::Usage;
use wire::error::{ApiError, ErrorCode};
use wire::models::ModelType;
use wire::provider::{PROVIDER_VIDEO_JOBS_PATH, PROVIDER_VIDEO_QUEUE_PATH};
use wire::video::{
    JobState, MAX_VIDEO_BYTES, ProviderJob, ProviderJobStatus, ProviderVideoRequest, Queued,
    QuoteRequest, VideoLimits, VideoRequest,
};

use crate::AppState;
use crate::catalogue::LiveModels;
use crate::config::ModelPricing;
use crate::pipeline::dispatch::{
    Failure, dispatch_with, provider_error, read_whole, send_to_provider,
};
use crate::pipeline::pricing::UsageBound;
use crate::pipeline::respond::insert_header;
use crate::pipeline::settlement::Tally;
use crate::pipeline::{Admitted, Operation, Resolved, resolve_typed};
use crate::registry::Provider;

/// Largest request body of the video routes.
const MAX_BODY_BYTES: usize = 128 * 1024;
/// Longest wait for a provider's answer about a job.
const STATUS_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a video may take to pass through, start to end.
const CONTENT_TIMEOUT: Duration = Duration::from_secs(600);
/// Bytes of HMAC in a queue id.
const TAG_BYTES: usize = 16;

/// `POST /video/queue`.
pub(crate) struct VideoQueue;

fn limits_of(live: &LiveModels, model_id: &str) -> VideoLimits {
    live.get(model_id)
        .and_then(|(advert, _)| advert.video.clone())
        .unwrap_or_default()
}

/// The queue id of `provider`'s job `job`, of `model`, belonging to `owner`.
fn queue_id(key: &[u8; 32], provider: &str, job: &str, model: &str, owner: &str) -> String {
    format!(
        "{provider}.{job}.{}",
        hex::encode(tag(key, provider, job, model, owner))
    )
}

fn tag(key: &[u8; 32], provider: &str, job: &str, model: &str, owner: &str) -> [u8; TAG_BYTES] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(b"gondola video job v1");
    for part in [provider, job, model, owner] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    let mut tag = [0u8; TAG_BYTES];
    tag.copy_from_slice(&mac.finalize().into_bytes()[..TAG_BYTES]);
    tag
}

/// The provider and job a queue id names, if it is one of this gateway's for `model` and
/// `owner`.
fn open_queue_id(
    key: &[u8; 32],
    queue_id: &str,
    model: &str,
    owner: &str,
) -> Option<(String, String)> {
    let mut parts = queue_id.split('.');
    let (provider, job, presented) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !wire::video::is_job_id(job) || provider.len() > 64 {
        return None;
    }
    let presented = hex::decode(presented).ok()?;
    let expected = tag(key, provider, job, model, owner);
    bool::from(subtle::ConstantTimeEq::ct_eq(&presented[..], &expected[..]))
        .then(|| (provider.to_owned(), job.to_owned()))
}

impl Operation for VideoQueue {
    const ROUTE: &'static str = "video_queue";
    const ID_PREFIX: &'static str = "video";
    type Request = VideoRequest;

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
    ) -> Result<VideoRequest, ApiError> {
        VideoRequest::parse(body)
    }

    fn resolve(
        state: &AppState,
        request: &VideoRequest,
        live: &LiveModels,
    ) -> Result<Resolved, ApiError> {
        let resolved = resolve_typed(state, &request.model, live, ModelType::Video, "video")?;
        request.check_limits(&limits_of(live, &resolved.model_id))?;
        Ok(resolved)
    }

    fn bound(_state: &AppState, request: &VideoRequest, _body: &Bytes) -> UsageBound {
        UsageBound {
            prompt_tokens: u64::from(request.seconds),
            completion_tokens: 0,
        }
    }

    fn priced(pricing: ModelPricing) -> ModelPricing {
        pricing.per_video_second_units()
    }

    async fn respond(admitted: Admitted<VideoRequest>) -> Result<Response, ApiError> {
        let Admitted { request, paid } = admitted;
        let state = Arc::clone(&paid.state);
        let model_id = paid.model.model_id.clone();
        let resolution = request.check_limits(&limits_of(
            &state.registry.live_models(Instant::now()),
            &model_id,
        ))?;
        let body = Bytes::from(
            serde_json::to_vec(&ProviderVideoRequest {
                model: model_id.clone(),
                prompt: request.prompt,
                negative_prompt: request.negative_prompt,
                seconds: request.seconds,
                resolution,
                aspect_ratio: request.aspect_ratio,
                audio: request.audio,
            })
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::Internal,
                    "the provider request could not be encoded",
                )
            })?,
        );
        let (attempt, attempts, job) = dispatch_with(&state, &model_id, None, |provider| {
            queue_at(&state, provider, body.clone())
        })
        .await?;
        let owner = paid.owner.clone();
        let bound = paid.bound;
        let mut record = paid
            .commit(
                Self::ROUTE,
                "video queued",
                &attempt.provider,
                attempts,
                Tally::new(bound, bound.prompt_tokens),
            )
            .await?;
        // The job is paid when a provider has taken it, for the seconds asked.
        record.tally.report(Usage::counts(bound.prompt_tokens, 0));
        record.status = Some(200);
        let provider_id = record.provider.id.clone();
        drop(record);
        let answer = Queued {
            model: model_id.clone(),
            queue_id: queue_id(
                &state.video_key,
                &provider_id,
                &job.job_id,
                &model_id,
                &owner,
            ),
        };
        let mut response = json_answer(&answer);
        insert_header(response.headers_mut(), "x-venice-model-id", &model_id);
        insert_header(response.headers_mut(), "x-gondola-provider", &provider_id);
        Ok(response)
    }
}

fn json_answer<T: serde::Serialize>(value: &T) -> Response {
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(value).unwrap_or_default(),
    )
        .into_response()
}

async fn queue_at(
    state: &AppState,
    provider: Arc<Provider>,
    body: Bytes,
) -> Result<ProviderJob, Failure> {
    let deadline = tokio::time::Instant::now() + state.config.limits.first_byte_timeout;
    let response = send_to_provider(
        state,
        &provider,
        PROVIDER_VIDEO_QUEUE_PATH,
        &[(http::header::CONTENT_TYPE.as_str(), "application/json")],
        body,
        deadline,
    )
    .await?;
    let reply = read_whole(response, deadline, 64 * 1024, "job").await?;
    serde_json::from_slice::<ProviderJob>(&reply)
        .ok()
        .filter(|job| wire::video::is_job_id(&job.job_id))
        .ok_or_else(|| {
            Failure::fault(
                ErrorCode::UpstreamError,
                "the provider's answer is not a job",
            )
        })
}

/// The body of a video route, read within its bound.
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    crate::pipeline::admission::read_body(body, MAX_BODY_BYTES).await
}

fn unknown_job() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such video job: it may have expired or been deleted",
    )
}

/// The served model id a retrieve or complete names (an alias resolved; an id that no
/// longer resolves, as given).
fn model_id(state: &AppState, model: &str) -> String {
    state
        .catalogue
        .resolve_for(
            model,
            &state.registry.live_models(Instant::now()),
            ModelType::Video,
        )
        .map_or_else(|| model.to_owned(), |resolved| resolved.model_id)
}

/// A job's provider and id, for the caller's queue id.
async fn job_of(
    state: &AppState,
    headers: &HeaderMap,
    model: &str,
    queue_id: &str,
) -> Result<(String, String, String), ApiError> {
    let caller = crate::pipeline::admission::authenticated(state, headers).await?;
    let model_id = model_id(state, model);
    let (provider, job) = open_queue_id(&state.video_key, queue_id, &model_id, &caller.owner())
        .ok_or_else(unknown_job)?;
    Ok((model_id, provider, job))
}

/// Asks the job's provider (and no other) with `path` and `method`: its answer.
async fn ask(
    state: &Arc<AppState>,
    model_id: &str,
    provider_id: &str,
    method: reqwest::Method,
    path: String,
    timeout: Duration,
) -> Result<reqwest::Response, ApiError> {
    let allowed = [provider_id.to_owned()];
    let (_attempt, _, response) = dispatch_with(state, model_id, Some(&allowed), |provider| {
        let path = path.clone();
        let method = method.clone();
        async move { call(state, &provider, method, &path, timeout).await }
    })
    .await
    .map_err(|error| {
        if error.status() >= 500 {
            ApiError::new(
                ErrorCode::ModelOffline,
                "the provider that holds this video job cannot be reached; ask again once it is back",
            )
            .with_retry_after(5)
        } else {
            error
        }
    })?;
    Ok(response)
}

/// One call to a provider's job route with the lease's secret: a successful answer, or the
/// failure (the provider's 404 says the job is gone, and is the client's).
async fn call(
    state: &AppState,
    provider: &Provider,
    method: reqwest::Method,
    path: &str,
    timeout: Duration,
) -> Result<reqwest::Response, Failure> {
    let deadline = tokio::time::Instant::now() + timeout;
    let url = format!("{}{path}", provider.endpoint.trim_end_matches('/'));
    let sent = state
        .http
        .get()
        .request(method, url)
        .bearer_auth(&provider.lease_token)
        .send();
    let response = tokio::time::timeout_at(deadline, sent)
        .await
        .map_err(|_| {
            Failure::fault(
                ErrorCode::RequestTimeout,
                "the provider did not answer in time",
            )
        })?
        .map_err(|_| {
            Failure::fault(
                ErrorCode::UpstreamError,
                "the provider could not be reached",
            )
        })?;
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(provider_error(response, deadline).await)
    }
}

/// `POST /video/retrieve`: `PROCESSING` with its progress, or the video (and, with
/// `delete_media_on_completion`, the job deleted once the video has passed whole).
pub(crate) async fn retrieve(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body).await?;
    let request: wire::video::RetrieveRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::invalid("queue_id", format!("not a retrieve request: {error}"))
    })?;
    let (model_id, provider_id, job) =
        job_of(&state, &headers, &request.model, &request.queue_id).await?;
    let job_path = format!("{PROVIDER_VIDEO_JOBS_PATH}/{job}");
    let response = ask(
        &state,
        &model_id,
        &provider_id,
        reqwest::Method::GET,
        job_path.clone(),
        STATUS_TIMEOUT,
    )
    .await?;
    let status: ProviderJobStatus = response.json().await.map_err(|_| {
        ApiError::new(
            ErrorCode::UpstreamError,
            "the provider's answer is not a job's status",
        )
    })?;
    match status.state {
        JobState::Queued | JobState::Running => Ok(json_answer(&wire::video::Processing {
            status: "PROCESSING".into(),
            average_execution_time: status.average_ms,
            execution_duration: status.execution_ms,
            progress: status.progress,
        })),
        JobState::Failed => Err(ApiError::new(
            ErrorCode::InferenceFailed,
            format!(
                "the video could not be made: {}",
                status.error.unwrap_or_else(|| "the engine failed".into())
            ),
        )),
        JobState::Completed => {
            let response = ask(
                &state,
                &model_id,
                &provider_id,
                reqwest::Method::GET,
                format!("{job_path}/content"),
                CONTENT_TIMEOUT,
            )
            .await?;
            let length = response
                .content_length()
                .filter(|length| *length <= MAX_VIDEO_BYTES);
            let Some(length) = length else {
                return Err(ApiError::new(
                    ErrorCode::UpstreamError,
                    "the provider's video has no size, or too large a one",
                ));
            };
            let delete = request.delete_media_on_completion.then(|| {
                (
                    Arc::clone(&state),
                    model_id.clone(),
                    provider_id.clone(),
                    job_path,
                )
            });
            Ok(relay_video(response, length, delete))
        }
    }
}

/// The provider's video passed on as it comes, held to its declared length; the job deleted
/// after the last byte when `delete` says so.
fn relay_video(
    response: reqwest::Response,
    length: u64,
    delete: Option<(Arc<AppState>, String, String, String)>,
) -> Response {
    let deadline = tokio::time::Instant::now() + CONTENT_TIMEOUT;
    let stream = futures_util::stream::unfold(
        Some((response.bytes_stream(), 0u64, delete)),
        move |relay| async move {
            let (mut upstream, relayed, delete) = relay?;
            match tokio::time::timeout_at(deadline, upstream.next()).await {
                Ok(Some(Ok(chunk))) if relayed + chunk.len() as u64 <= length => {
                    let relayed = relayed + chunk.len() as u64;
                    Some((
                        Ok::<Bytes, std::io::Error>(chunk),
                        Some((upstream, relayed, delete)),
                    ))
                }
                Ok(None) if relayed == length => {
                    if let Some((state, model_id, provider_id, path)) = delete {
                        tokio::spawn(async move {
                            let _ = ask(
                                &state,
                                &model_id,
                                &provider_id,
                                reqwest::Method::DELETE,
                                path,
                                STATUS_TIMEOUT,
                            )
                            .await;
                        });
                    }
                    None
                }
                _ => Some((
                    Err(std::io::Error::other("the provider's video broke off")),
                    None,
                )),
            }
        },
    );
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let headers = response.headers_mut();
    insert_header(headers, "content-type", "video/mp4");
    insert_header(headers, "content-length", &length.to_string());
    response
}

/// `POST /video/complete`: the job and its video deleted at its provider.
pub(crate) async fn complete(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body).await?;
    let request: wire::video::CompleteRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::invalid("queue_id", format!("not a complete request: {error}"))
    })?;
    let (model_id, provider_id, job) =
        job_of(&state, &headers, &request.model, &request.queue_id).await?;
    ask(
        &state,
        &model_id,
        &provider_id,
        reqwest::Method::DELETE,
        format!("{PROVIDER_VIDEO_JOBS_PATH}/{job}"),
        STATUS_TIMEOUT,
    )
    .await?;
    Ok(json_answer(&wire::video::Completed { success: true }))
}

/// `POST /video/quote`: what the video would cost, in dollars.
pub(crate) async fn quote(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    crate::pipeline::check_json_content_type(&headers)?;
    let body = read_body(body).await?;
    let request = QuoteRequest::parse(&body)?;
    let live = state.registry.live_models(Instant::now());
    let resolved = resolve_typed(&state, &request.model, &live, ModelType::Video, "video")?;
    wire::video::check_limits(
        request.seconds,
        request.resolution.as_deref(),
        &limits_of(&live, &resolved.model_id),
    )?;
    let bound = UsageBound {
        prompt_tokens: u64::from(request.seconds),
        completion_tokens: 0,
    };
    let price = bound.max_cost(
        state
            .catalogue
            .pricing(&resolved.model_id)
            .per_video_second_units(),
    );
    Ok(json_answer(&wire::video::Quote {
        quote: wire::money::Amount(price),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_id_opens_only_for_its_model_owner_and_key() {
        let key = [7u8; 32];
        let job = "0123456789abcdef0123456789abcdef";
        let id = queue_id(&key, "pv-1", job, "wan", "account 0xabc");
        assert_eq!(
            open_queue_id(&key, &id, "wan", "account 0xabc"),
            Some(("pv-1".into(), job.into()))
        );
        assert_eq!(open_queue_id(&key, &id, "other", "account 0xabc"), None);
        assert_eq!(open_queue_id(&key, &id, "wan", "account 0xdef"), None);
        assert_eq!(open_queue_id(&[8u8; 32], &id, "wan", "account 0xabc"), None);
        let swapped = id.replacen("pv-1", "pv-2", 1);
        assert_eq!(open_queue_id(&key, &swapped, "wan", "account 0xabc"), None);
        assert_eq!(open_queue_id(&key, "pv-1.../etc.00", "wan", ""), None);
    }
}
