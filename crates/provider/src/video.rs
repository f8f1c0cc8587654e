//! Video jobs: `POST /provider/v1/video/queue` starts one at the engine behind this provider
//! (OpenAI's videos API: `POST /videos`, `GET /videos/{id}`, `GET /videos/{id}/content`,
//! `DELETE /videos/{id}`), and `/provider/v1/video/jobs/{id}` reports on it (asking the engine
//! while it runs), serves its video (`/content`) and removes it (`DELETE`).
//!
//! A job lives in this provider's data directory (`video-jobs/`): a small JSON record (the
//! engine's id for it, its state, when it was queued and finished; never the prompt) and,
//! once the engine has finished, the video itself, fetched from the engine and deleted there.
//! So a job outlives a restart of this provider: its record is read again and the engine asked
//! again. A job is removed when the gateway says the client has it (`DELETE`), and in any case
//! [`JOB_TTL`] after it was queued, by a sweep every [`SWEEP_INTERVAL`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as RoutePath, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use wire::clock::unix_millis;
use wire::error::{ApiError, ErrorCode};
use wire::models::ModelType;
use wire::video::{
    JobState, MAX_VIDEO_BYTES, ProviderJob, ProviderJobStatus, ProviderVideoRequest, is_job_id,
};

use crate::{
    AppState, Backend, accept, call_upstream, check_lease, error_response, upstream_error,
};

/// How long a job and its video are kept after it was queued.
pub const JOB_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How often expired jobs are removed.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Most jobs kept at once (queued, running or finished and not yet collected).
const MAX_JOBS: usize = 256;
/// Most bytes of an engine's answer about a job.
const MAX_ENGINE_STATUS_BYTES: usize = 1024 * 1024;

/// A job's record on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    engine_id: String,
    model: String,
    seconds: u32,
    state: JobState,
    progress: u8,
    queued_ms: u64,
    finished_ms: Option<u64>,
    error: Option<String>,
    bytes: Option<u64>,
}

/// The jobs this provider holds.
pub struct Jobs {
    dir: PathBuf,
    /// One lock per job being looked at, so that two reports on one job fetch its video once.
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Finished jobs' total and count of execution milliseconds, for the average reported.
    finished_ms: AtomicU64,
    finished: AtomicU64,
}

impl Jobs {
    /// The jobs kept in `dir` (created, private to this user, if absent).
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self {
            dir,
            locks: std::sync::Mutex::new(HashMap::new()),
            finished_ms: AtomicU64::new(0),
            finished: AtomicU64::new(0),
        })
    }

    fn record(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn video(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.mp4"))
    }

    fn lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Locks of jobs no one is looking at are dropped, so the table stays small.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        Arc::clone(locks.entry(id.to_owned()).or_default())
    }

    async fn read(&self, id: &str) -> Option<Job> {
        let bytes = tokio::fs::read(self.record(id)).await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes a job's record whole (a new file renamed over the old one).
    async fn write(&self, id: &str, job: &Job) -> std::io::Result<()> {
        let temporary = self.dir.join(format!("{id}.json.new"));
        tokio::fs::write(&temporary, serde_json::to_vec(job).unwrap_or_default()).await?;
        tokio::fs::rename(&temporary, self.record(id)).await
    }

    async fn remove(&self, id: &str) -> bool {
        let record = tokio::fs::remove_file(self.record(id)).await.is_ok();
        let _ = tokio::fs::remove_file(self.video(id)).await;
        let _ = tokio::fs::remove_file(self.dir.join(format!("{id}.mp4.part"))).await;
        record
    }

    fn count(&self) -> usize {
        std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "json"))
                    .count()
            })
            .unwrap_or(0)
    }

    fn average_ms(&self, fallback: u64) -> u64 {
        match self.finished.load(Ordering::Relaxed) {
            0 => fallback,
            count => self.finished_ms.load(Ordering::Relaxed) / count,
        }
    }
}

/// Removes jobs queued longer than [`JOB_TTL`] ago, every [`SWEEP_INTERVAL`], for as long as
/// the provider runs.
pub(crate) async fn sweep(state: Arc<AppState>) {
    let Some(jobs) = &state.jobs else { return };
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        ticks.tick().await;
        let now = unix_millis();
        let ttl = u64::try_from(JOB_TTL.as_millis()).unwrap_or(u64::MAX);
        let Ok(entries) = std::fs::read_dir(&jobs.dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if !is_job_id(id) {
                continue;
            }
            let lock = jobs.lock(id);
            let _held = lock.lock().await;
            if let Some(job) = jobs.read(id).await
                && now.saturating_sub(job.queued_ms) > ttl
            {
                if matches!(job.state, JobState::Queued | JobState::Running)
                    && let Ok(engine) = Engine::of(&state)
                {
                    engine.delete(&job.engine_id).await;
                }
                jobs.remove(id).await;
                tracing::info!(job = id, "video job expired and removed");
            }
        }
    }
}

/// The engine behind this provider, for video.
struct Engine<'a> {
    http: &'a reqwest::Client,
    base_url: &'a str,
    model: &'a str,
    api_key: Option<&'a str>,
}

impl<'a> Engine<'a> {
    fn of(state: &'a AppState) -> Result<Self, ApiError> {
        match &state.backend {
            Backend::Upstream {
                base_url,
                upstream_model,
                api_key,
                model_type: ModelType::Video,
                ..
            } => Ok(Self {
                http: state.http.get(),
                base_url: base_url.trim_end_matches('/'),
                model: upstream_model,
                api_key: api_key.as_deref(),
            }),
            _ => Err(ApiError::invalid(
                "model",
                format!("{} does not serve video", state.backend.model_id()),
            )),
        }
    }

    fn call(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let call = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        match self.api_key {
            Some(key) => call.bearer_auth(key),
            None => call,
        }
    }

    async fn json(&self, call: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        let (status, reply) = call_upstream(call, MAX_ENGINE_STATUS_BYTES).await?;
        if !(200..300).contains(&status) {
            return Err(upstream_error(status, &reply));
        }
        serde_json::from_slice(&reply).map_err(|_| {
            ApiError::new(
                ErrorCode::UpstreamError,
                "the video engine answered something that is not JSON",
            )
        })
    }

    /// Starts the video; the engine's id for it.
    async fn create(&self, request: &ProviderVideoRequest) -> Result<String, ApiError> {
        let (width, height) =
            wire::video::frame_size(&request.resolution, request.aspect_ratio.as_deref());
        let answer = self
            .json(self.call(reqwest::Method::POST, "/videos").json(&json!({
                "model": self.model,
                "prompt": request.prompt,
                "seconds": request.seconds.to_string(),
                "size": format!("{width}x{height}"),
            })))
            .await?;
        answer
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty() && id.len() <= 256)
            .map(str::to_owned)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::UpstreamError,
                    "the video engine queued the video without an id",
                )
            })
    }

    /// The engine's state of a video: its state, progress and error.
    async fn status(&self, engine_id: &str) -> Result<(JobState, u8, Option<String>), ApiError> {
        let answer = self
            .json(self.call(reqwest::Method::GET, &format!("/videos/{engine_id}")))
            .await?;
        let state = match answer.get("status").and_then(Value::as_str) {
            Some("queued") => JobState::Queued,
            Some("in_progress") => JobState::Running,
            Some("completed") => JobState::Completed,
            Some("failed") => JobState::Failed,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::UpstreamError,
                    "the video engine gave the video no known status",
                ));
            }
        };
        let progress = answer
            .get("progress")
            .and_then(Value::as_u64)
            .map_or(0, |progress| progress.min(100) as u8);
        let error = answer
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(|message| message.chars().take(500).collect());
        Ok((state, progress, error))
    }

    /// Fetches the finished video into `path`, at most [`MAX_VIDEO_BYTES`]; its size.
    async fn fetch(&self, engine_id: &str, path: &Path) -> Result<u64, ApiError> {
        let broke = || {
            ApiError::new(
                ErrorCode::UpstreamError,
                "the video engine's video broke off",
            )
        };
        let response = self
            .call(
                reqwest::Method::GET,
                &format!("/videos/{engine_id}/content"),
            )
            .send()
            .await
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::UpstreamError,
                    "the video engine could not be reached",
                )
            })?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap_or_default();
            return Err(upstream_error(status, &body));
        }
        let partial = path.with_extension("mp4.part");
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(|_| ApiError::new(ErrorCode::Internal, "the video cannot be stored"))?;
        let mut written = 0u64;
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|_| broke())?;
            written += chunk.len() as u64;
            if written > MAX_VIDEO_BYTES {
                drop(file);
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(ApiError::new(
                    ErrorCode::UpstreamError,
                    "the engine's video is larger than allowed",
                ));
            }
            file.write_all(&chunk)
                .await
                .map_err(|_| ApiError::new(ErrorCode::Internal, "the video cannot be stored"))?;
        }
        file.sync_all()
            .await
            .map_err(|_| ApiError::new(ErrorCode::Internal, "the video cannot be stored"))?;
        drop(file);
        tokio::fs::rename(&partial, path)
            .await
            .map_err(|_| ApiError::new(ErrorCode::Internal, "the video cannot be stored"))?;
        Ok(written)
    }

    /// Asks the engine to forget the video (what it answers does not matter).
    async fn delete(&self, engine_id: &str) {
        let _ = call_upstream(
            self.call(reqwest::Method::DELETE, &format!("/videos/{engine_id}")),
            MAX_ENGINE_STATUS_BYTES,
        )
        .await;
    }
}

fn jobs_of(state: &AppState) -> Result<&Jobs, ApiError> {
    state.jobs.as_ref().ok_or_else(|| {
        ApiError::invalid(
            "model",
            format!("{} does not serve video", state.backend.model_id()),
        )
    })
}

fn json_answer<T: Serialize>(value: &T) -> Response {
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(value).unwrap_or_default(),
    )
        .into_response()
}

fn no_job() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such video job here")
}

/// `POST /provider/v1/video/queue`.
pub(crate) async fn queue(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_permit, request) = match accept::<ProviderVideoRequest>(
        &state,
        &headers,
        &body,
        "a video request",
        |request| &request.model,
    )
    .await
    {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    match start(&state, &request).await {
        Ok(job_id) => json_answer(&ProviderJob { job_id }),
        Err(error) => error_response(&error),
    }
}

async fn start(state: &AppState, request: &ProviderVideoRequest) -> Result<String, ApiError> {
    let jobs = jobs_of(state)?;
    let engine = Engine::of(state)?;
    if let Backend::Upstream { video_limits, .. } = &state.backend {
        wire::video::check_limits(request.seconds, Some(&request.resolution), video_limits)?;
    }
    if jobs.count() >= MAX_JOBS {
        return Err(ApiError::new(
            ErrorCode::ModelAtCapacity,
            "this provider holds as many video jobs as it keeps",
        )
        .with_retry_after(60));
    }
    let engine_id = engine.create(request).await?;
    let mut id = [0u8; 16];
    rand::fill(&mut id);
    let job_id = hex::encode(id);
    let job = Job {
        engine_id,
        model: request.model.clone(),
        seconds: request.seconds,
        state: JobState::Queued,
        progress: 0,
        queued_ms: unix_millis(),
        finished_ms: None,
        error: None,
        bytes: None,
    };
    jobs.write(&job_id, &job)
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "the video job cannot be recorded"))?;
    tracing::info!(job = %job_id, seconds = request.seconds, "video job queued");
    Ok(job_id)
}

/// `GET /provider/v1/video/jobs/{id}`: the job's state, the engine asked while it runs; a
/// finished video is fetched here then.
pub(crate) async fn status(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RoutePath(id): RoutePath<String>,
) -> Response {
    if let Err(error) = check_lease(&state, &headers).await {
        return error_response(&error);
    }
    match report(&state, &id).await {
        Ok(status) => json_answer(&status),
        Err(error) => error_response(&error),
    }
}

async fn report(state: &AppState, id: &str) -> Result<ProviderJobStatus, ApiError> {
    let jobs = jobs_of(state)?;
    if !is_job_id(id) {
        return Err(no_job());
    }
    let lock = jobs.lock(id);
    let _held = lock.lock().await;
    let mut job = jobs.read(id).await.ok_or_else(no_job)?;
    if matches!(job.state, JobState::Queued | JobState::Running) {
        let engine = Engine::of(state)?;
        let (engine_state, progress, error) = engine.status(&job.engine_id).await?;
        job.progress = progress;
        match engine_state {
            JobState::Completed => {
                let bytes = engine.fetch(&job.engine_id, &jobs.video(id)).await?;
                engine.delete(&job.engine_id).await;
                job.state = JobState::Completed;
                job.progress = 100;
                job.bytes = Some(bytes);
                job.finished_ms = Some(unix_millis());
                let took = unix_millis().saturating_sub(job.queued_ms);
                jobs.finished_ms.fetch_add(took, Ordering::Relaxed);
                jobs.finished.fetch_add(1, Ordering::Relaxed);
                tracing::info!(job = %id, bytes, took_ms = took, "video job finished");
            }
            JobState::Failed => {
                job.state = JobState::Failed;
                job.error =
                    Some(error.unwrap_or_else(|| "the engine could not make the video".into()));
                job.finished_ms = Some(unix_millis());
                tracing::info!(job = %id, "video job failed at the engine");
            }
            running => job.state = running,
        }
        jobs.write(id, &job)
            .await
            .map_err(|_| ApiError::new(ErrorCode::Internal, "the video job cannot be recorded"))?;
    }
    let execution_ms = job
        .finished_ms
        .unwrap_or_else(unix_millis)
        .saturating_sub(job.queued_ms);
    Ok(ProviderJobStatus {
        state: job.state,
        progress: job.progress,
        execution_ms,
        average_ms: jobs.average_ms(execution_ms),
        error: job.error,
        bytes: job.bytes,
    })
}

/// The head of a job's routes: the gateway's lease checked, this provider's jobs, and `id`
/// of a job's form. An error is the answer to send.
async fn job_route<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<&'a Jobs, Response> {
    check_lease(state, headers)
        .await
        .map_err(|error| error_response(&error))?;
    let jobs = jobs_of(state).map_err(|error| error_response(&error))?;
    if is_job_id(id) {
        Ok(jobs)
    } else {
        Err(error_response(&no_job()))
    }
}

/// `GET /provider/v1/video/jobs/{id}/content`: the finished video.
pub(crate) async fn content(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RoutePath(id): RoutePath<String>,
) -> Response {
    let jobs = match job_route(&state, &headers, &id).await {
        Ok(jobs) => jobs,
        Err(response) => return response,
    };
    match jobs.read(&id).await {
        Some(Job {
            state: JobState::Completed,
            bytes: Some(bytes),
            ..
        }) => match tokio::fs::File::open(jobs.video(&id)).await {
            Ok(file) => {
                let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
                (
                    StatusCode::OK,
                    [
                        (http::header::CONTENT_TYPE, "video/mp4".to_owned()),
                        (http::header::CONTENT_LENGTH, bytes.to_string()),
                    ],
                    body,
                )
                    .into_response()
            }
            Err(_) => error_response(&no_job()),
        },
        Some(_) => error_response(&ApiError::new(
            ErrorCode::InvalidRequest,
            "the video is not finished",
        )),
        None => error_response(&no_job()),
    }
}

/// `DELETE /provider/v1/video/jobs/{id}`: the job and its video removed (and the engine told,
/// if it is still making it).
pub(crate) async fn remove(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RoutePath(id): RoutePath<String>,
) -> Response {
    let jobs = match job_route(&state, &headers, &id).await {
        Ok(jobs) => jobs,
        Err(response) => return response,
    };
    let lock = jobs.lock(&id);
    let _held = lock.lock().await;
    let Some(job) = jobs.read(&id).await else {
        return error_response(&no_job());
    };
    if matches!(job.state, JobState::Queued | JobState::Running)
        && let Ok(engine) = Engine::of(&state)
    {
        engine.delete(&job.engine_id).await;
    }
    jobs.remove(&id).await;
    tracing::info!(job = %id, "video job removed");
    json_answer(&json!({"success": true}))
}
