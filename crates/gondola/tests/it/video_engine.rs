//! A stand-in for a video engine with OpenAI's videos API (no video model can run here):
//! `POST /v1/videos` (only OpenAI's fields, `seconds` a string, `size` `WIDTHxHEIGHT`),
//! `GET /v1/videos/{id}` (`queued`, then `in_progress` with its progress, then `completed` or
//! `failed` when the test says), `GET /v1/videos/{id}/content` (a real MP4 of the asked
//! length and size, made by FFmpeg) and `DELETE /v1/videos/{id}`.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

#[derive(Clone)]
struct Video {
    model: String,
    seconds: u32,
    width: u32,
    height: u32,
    status: &'static str,
    progress: u64,
}

#[derive(Default)]
struct Shared {
    model: String,
    /// Each report moves a video on: queued, in progress, completed (for a test that cannot
    /// say when).
    by_itself: bool,
    videos: Mutex<HashMap<String, Video>>,
    bodies: Mutex<Vec<Value>>,
    problems: Mutex<Vec<String>>,
    deleted: Mutex<Vec<String>>,
}

/// A running stand-in.
pub struct VideoEngine {
    /// The base URL a provider is given with `--upstream`.
    pub base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for VideoEngine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl VideoEngine {
    /// Every video not yet finished is done.
    pub fn finish_all(&self) {
        for video in self.shared.videos.lock().expect("lock").values_mut() {
            if video.status != "failed" {
                video.status = "completed";
                video.progress = 100;
            }
        }
    }

    /// Every video not yet finished fails.
    pub fn fail_all(&self) {
        for video in self.shared.videos.lock().expect("lock").values_mut() {
            if video.status != "completed" {
                video.status = "failed";
            }
        }
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.shared.bodies.lock().expect("lock").clone()
    }

    pub fn problems(&self) -> Vec<String> {
        self.shared.problems.lock().expect("lock").clone()
    }

    pub fn deleted(&self) -> Vec<String> {
        self.shared.deleted.lock().expect("lock").clone()
    }

    /// Videos the engine still holds.
    pub fn held(&self) -> usize {
        self.shared.videos.lock().expect("lock").len()
    }
}

/// Starts a stand-in serving `model`; its videos finish when the test says.
pub async fn start(model: &str) -> VideoEngine {
    start_with(model, false).await
}

/// Starts a stand-in serving `model`; with `by_itself`, each report on a video moves it on a
/// step (queued, in progress, completed).
pub async fn start_with(model: &str, by_itself: bool) -> VideoEngine {
    let shared = Arc::new(Shared {
        model: model.to_owned(),
        by_itself,
        ..Shared::default()
    });
    let app = Router::new()
        .route("/v1/videos", post(create))
        .route("/v1/videos/{id}", get(status).delete(delete))
        .route("/v1/videos/{id}/content", get(content))
        .with_state(Arc::clone(&shared));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    VideoEngine {
        base_url: format!("http://{address}/v1"),
        shared,
        task,
    }
}

fn problem(shared: &Shared, what: String) -> Response {
    shared.problems.lock().expect("lock").push(what.clone());
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": {"message": what, "type": "invalid_request_error"}})),
    )
        .into_response()
}

fn object(id: &str, video: &Video) -> Value {
    let mut object = json!({
        "id": id, "object": "video", "model": video.model, "status": video.status,
        "progress": video.progress, "created_at": 1_700_000_000,
        "size": format!("{}x{}", video.width, video.height), "seconds": video.seconds.to_string(),
    });
    if video.status == "failed" {
        object["error"] = json!({"code": "generation_failed", "message": "the sampler diverged"});
    }
    object
}

async fn create(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    shared.bodies.lock().expect("lock").push(body.clone());
    let known = ["model", "prompt", "seconds", "size", "input_reference"];
    if let Some(unknown) = body
        .as_object()
        .and_then(|fields| fields.keys().find(|name| !known.contains(&name.as_str())))
    {
        return problem(&shared, format!("Unknown parameter: '{unknown}'."));
    }
    if body["model"] != json!(shared.model) || !body["prompt"].is_string() {
        return problem(&shared, "model or prompt is wrong".into());
    }
    let Some(seconds) = body["seconds"]
        .as_str()
        .and_then(|text| text.parse::<u32>().ok())
    else {
        return problem(&shared, "seconds is a string of a whole number".into());
    };
    let Some((width, height)) = body["size"].as_str().and_then(|size| {
        let (width, height) = size.split_once('x')?;
        Some((width.parse::<u32>().ok()?, height.parse::<u32>().ok()?))
    }) else {
        return problem(&shared, "size is WIDTHxHEIGHT".into());
    };
    let mut id = [0u8; 12];
    rand::fill(&mut id);
    let id = format!("video_{}", hex::encode(id));
    let video = Video {
        model: shared.model.clone(),
        seconds,
        width,
        height,
        status: "queued",
        progress: 0,
    };
    let answer = object(&id, &video);
    shared.videos.lock().expect("lock").insert(id, video);
    Json(answer).into_response()
}

async fn status(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut videos = shared.videos.lock().expect("lock");
    let Some(video) = videos.get_mut(&id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"message": "no such video"}})),
        )
            .into_response();
    };
    if video.status == "queued" {
        video.status = "in_progress";
        video.progress = 40;
    } else if video.status == "in_progress" && shared.by_itself {
        video.status = "completed";
        video.progress = 100;
    }
    Json(object(&id, video)).into_response()
}

async fn content(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Some(video) = shared.videos.lock().expect("lock").get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, "no such video").into_response();
    };
    if video.status != "completed" {
        return problem(&shared, format!("video {id} is not completed"));
    }
    let bytes = tokio::task::spawn_blocking(move || mp4(video.width, video.height, video.seconds))
        .await
        .expect("ffmpeg thread");
    ([(axum::http::header::CONTENT_TYPE, "video/mp4")], bytes).into_response()
}

async fn delete(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    shared.videos.lock().expect("lock").remove(&id);
    shared.deleted.lock().expect("lock").push(id.clone());
    Json(json!({"id": id, "object": "video.deleted", "deleted": true})).into_response()
}

/// A real MP4 (MPEG-4 Part 2 video, FFmpeg's test pattern) of `seconds` at `width` × `height`.
pub fn mp4(width: u32, height: u32, seconds: u32) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("video.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={width}x{height}:rate=8"))
        .args([
            "-t",
            &seconds.to_string(),
            "-c:v",
            "mpeg4",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&path)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg made the test video");
    std::fs::read(&path).expect("the video")
}

/// Seconds of video in `bytes`, as FFprobe reads them.
pub fn duration(bytes: &[u8]) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("got.mp4");
    std::fs::write(&path, bytes).expect("write");
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("run ffprobe");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a video: {}", String::from_utf8_lossy(&output.stderr)))
}
