//! Stand-ins for the image engines a provider fronts, for the engines that cannot run here (no
//! text-to-image weights can be had offline): each speaks its engine's exact HTTP API on
//! loopback, checks every field it receives as the real engine would read it (a request the
//! real engine would refuse or misread is answered 400, and the test sees it), and answers
//! with real images: PNGs of the asked size, encoded by the `image` crate, whose pixels follow
//! the seed.
//!
//! - [`Engine::Automatic1111`]: `POST /sdapi/v1/txt2img`, `/sdapi/v1/img2img` and
//!   `/sdapi/v1/extra-single-image` (AUTOMATIC1111's web UI and Forge).
//! - [`Engine::ComfyUi`]: `POST /prompt`, `GET /history/{id}` (not done at the first ask),
//!   `GET /view`, `POST /history` with `delete`.
//! - [`Engine::OpenAi`]: `POST /v1/images/generations` with `b64_json`, and
//!   `/v1/images/edits` (multipart).
//!
//! Stand-ins can share a [`Hold`]: the first job any of them gets is held unanswered (and a
//! signal sent) until its connection drops, for failover tests.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Which engine a stand-in speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Automatic1111,
    ComfyUi,
    OpenAi,
}

impl Engine {
    /// `--upstream-api`'s value.
    pub fn api(self) -> &'static str {
        match self {
            Self::Automatic1111 => "automatic1111",
            Self::ComfyUi => "comfyui",
            Self::OpenAi => "openai",
        }
    }
}

/// What a stand-in received: each request body (JSON), and the problems it found in them.
#[derive(Default)]
pub struct Received {
    pub bodies: Vec<Value>,
    pub problems: Vec<String>,
    /// ComfyUI: the job ids whose history was deleted.
    pub deleted: Vec<String>,
}

struct Shared {
    checkpoint: String,
    received: Mutex<Received>,
    /// ComfyUI's jobs: id → (graph, times its history was asked for).
    jobs: Mutex<HashMap<String, (Value, u32)>>,
    hold: Option<Hold>,
}

/// Holds the first job that reaches any stand-in sharing it, and signals it.
pub type Hold = Arc<Mutex<Option<mpsc::UnboundedSender<()>>>>;

/// A hold, and the signal of the job it holds.
pub fn hold() -> (Hold, mpsc::UnboundedReceiver<()>) {
    let (signal, held) = mpsc::unbounded_channel();
    (Arc::new(Mutex::new(Some(signal))), held)
}

/// A running stand-in.
pub struct StandIn {
    /// The base URL a provider is given with `--upstream`.
    pub base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    pub fn received(&self) -> std::sync::MutexGuard<'_, Received> {
        self.shared.received.lock().expect("lock")
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `png` with a `tEXt` chunk after its header, as AUTOMATIC1111 writes its generation
/// parameters (the prompt among them) into every image.
fn with_text(png: &[u8], keyword: &str, text: &str) -> Vec<u8> {
    // The signature (8 bytes) and the IHDR chunk (8 + 13 + 4) come first.
    let (head, rest) = png.split_at(33);
    let mut data = keyword.as_bytes().to_vec();
    data.push(0);
    data.extend_from_slice(text.as_bytes());
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(b"tEXt");
    hasher.update(&data);
    chunk.extend_from_slice(b"tEXt");
    chunk.extend_from_slice(&data);
    chunk.extend_from_slice(&hasher.finalize().to_be_bytes());
    [head, &chunk, rest].concat()
}

/// A real PNG, `width` × `height`, whose pixels depend on `seed`.
pub fn png(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let mut image = image::RgbImage::new(width, height);
    let shade = (seed % 251) as u8;
    for (x, y, pixel) in image.enumerate_pixels_mut() {
        *pixel = image::Rgb([(x % 256) as u8, (y % 256) as u8, shade]);
    }
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("png");
    bytes
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Starts a stand-in for `engine` whose checkpoint (model) is `checkpoint`, sharing `hold`
/// if given.
pub async fn start(engine: Engine, checkpoint: &str, hold: Option<Hold>) -> StandIn {
    let shared = Arc::new(Shared {
        checkpoint: checkpoint.to_owned(),
        received: Mutex::new(Received::default()),
        jobs: Mutex::new(HashMap::new()),
        hold,
    });
    // Only the engine's own routes: a provider that called another engine's gets a 404.
    let app = match engine {
        Engine::Automatic1111 => Router::new()
            .route("/sdapi/v1/txt2img", post(txt2img))
            .route("/sdapi/v1/img2img", post(img2img))
            .route("/sdapi/v1/extra-single-image", post(extras)),
        Engine::ComfyUi => Router::new()
            .route("/prompt", post(comfy_prompt))
            .route("/history/{id}", get(comfy_history))
            .route("/history", post(comfy_delete))
            .route("/view", get(comfy_view)),
        Engine::OpenAi => Router::new()
            .route("/v1/images/generations", post(openai_images))
            .route("/v1/images/edits", post(openai_edits)),
    }
    .with_state(Arc::clone(&shared));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let base_url = match engine {
        Engine::OpenAi => format!("http://{address}/v1"),
        Engine::Automatic1111 | Engine::ComfyUi => format!("http://{address}"),
    };
    StandIn {
        base_url,
        shared,
        task,
    }
}

/// Holds this job if it is the first under the stand-in's hold: never returns while the
/// connection lasts.
async fn maybe_hold(shared: &Shared) {
    let signal = shared
        .hold
        .as_ref()
        .and_then(|hold| hold.lock().expect("lock").take());
    if let Some(signal) = signal {
        let _ = signal.send(());
        std::future::pending::<()>().await;
    }
}

/// Notes a problem with a request; the answer is 400 with it.
fn problem(shared: &Shared, what: String) -> Response {
    shared
        .received
        .lock()
        .expect("lock")
        .problems
        .push(what.clone());
    (StatusCode::BAD_REQUEST, Json(json!({"error": what}))).into_response()
}

fn int(body: &Value, field: &str) -> Option<u64> {
    body.get(field).and_then(Value::as_u64)
}

/// `POST /sdapi/v1/txt2img`, as AUTOMATIC1111 reads it.
async fn txt2img(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    shared
        .received
        .lock()
        .expect("lock")
        .bodies
        .push(body.clone());
    for field in ["prompt", "negative_prompt"] {
        if !body.get(field).is_some_and(Value::is_string) {
            return problem(&shared, format!("{field} is not a string"));
        }
    }
    for field in ["width", "height", "steps", "seed", "batch_size", "n_iter"] {
        if int(&body, field).is_none() {
            return problem(&shared, format!("{field} is not a whole number"));
        }
    }
    if !body.get("cfg_scale").is_some_and(Value::is_number) {
        return problem(&shared, "cfg_scale is not a number".into());
    }
    if int(&body, "batch_size") != Some(1) || int(&body, "n_iter") != Some(1) {
        return problem(&shared, "one image per call was expected".into());
    }
    if body.get("send_images") != Some(&json!(true))
        || body.get("save_images") != Some(&json!(false))
    {
        return problem(&shared, "images must be sent back and not saved".into());
    }
    if body.pointer("/override_settings/sd_model_checkpoint") != Some(&json!(shared.checkpoint)) {
        return problem(&shared, "the checkpoint was not chosen".into());
    }
    let (width, height) = (
        int(&body, "width").unwrap_or(0),
        int(&body, "height").unwrap_or(0),
    );
    if width % 8 != 0 || height % 8 != 0 {
        return problem(&shared, "sizes are multiples of 8".into());
    }
    maybe_hold(&shared).await;
    let image = with_text(
        &png(width as u32, height as u32, int(&body, "seed").unwrap_or(0)),
        "parameters",
        body["prompt"].as_str().unwrap_or_default(),
    );
    Json(json!({
        "images": [b64(&image)],
        "parameters": body,
        "info": "{\"infotexts\": []}",
    }))
    .into_response()
}

/// `POST /prompt`, as ComfyUI reads it: a graph in the API format, every input filled.
async fn comfy_prompt(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    shared
        .received
        .lock()
        .expect("lock")
        .bodies
        .push(body.clone());
    let Some(graph) = body.get("prompt").and_then(Value::as_object) else {
        return problem(&shared, "prompt is not a graph".into());
    };
    if !body.get("client_id").is_some_and(Value::is_string) {
        return problem(&shared, "client_id is not a string".into());
    }
    if body.to_string().contains("\"$") {
        return problem(&shared, "a placeholder was left in the graph".into());
    }
    let node = |class: &str| {
        graph
            .values()
            .find(|node| node.get("class_type").and_then(Value::as_str) == Some(class))
            .cloned()
    };
    let (Some(sampler), Some(latent), Some(checkpoint)) = (
        node("KSampler"),
        node("EmptyLatentImage"),
        node("CheckpointLoaderSimple"),
    ) else {
        return problem(
            &shared,
            "the graph lacks a sampler, a latent or a checkpoint".into(),
        );
    };
    for field in ["seed", "steps"] {
        if sampler["inputs"][field].as_u64().is_none() {
            return problem(&shared, format!("KSampler.{field} is not a whole number"));
        }
    }
    if !sampler["inputs"]["cfg"].is_number() {
        return problem(&shared, "KSampler.cfg is not a number".into());
    }
    for field in ["width", "height", "batch_size"] {
        if latent["inputs"][field].as_u64().is_none() {
            return problem(
                &shared,
                format!("EmptyLatentImage.{field} is not a whole number"),
            );
        }
    }
    if checkpoint["inputs"]["ckpt_name"] != json!(shared.checkpoint) {
        return problem(&shared, "the checkpoint was not chosen".into());
    }
    let mut id = [0u8; 16];
    rand::fill(&mut id);
    let id = hex::encode(id);
    shared
        .jobs
        .lock()
        .expect("lock")
        .insert(id.clone(), (Value::Object(graph.clone()), 0));
    Json(json!({"prompt_id": id, "number": 1, "node_errors": {}})).into_response()
}

/// `GET /history/{id}`: nothing at the first ask (the job is running), then the finished job
/// with one output image per batch item.
async fn comfy_history(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let graph = {
        let mut jobs = shared.jobs.lock().expect("lock");
        let Some((graph, asked)) = jobs.get_mut(&id) else {
            return Json(json!({})).into_response();
        };
        *asked += 1;
        if *asked == 1 {
            return Json(json!({})).into_response();
        }
        graph.clone()
    };
    maybe_hold(&shared).await;
    let batch = graph
        .as_object()
        .and_then(|nodes| {
            nodes
                .values()
                .find(|node| node["class_type"] == "EmptyLatentImage")
        })
        .and_then(|node| node["inputs"]["batch_size"].as_u64())
        .unwrap_or(1);
    let images: Vec<Value> = (0..batch)
        .map(|index| {
            json!({"filename": format!("ComfyUI_temp_{id}_{index:05}_.png"), "subfolder": "", "type": "temp"})
        })
        .collect();
    Json(json!({
        id.clone(): {
            "prompt": [1, id, graph, {}, ["7"]],
            "outputs": {"7": {"images": images}},
            "status": {"status_str": "success", "completed": true, "messages": []},
            "meta": {}
        }
    }))
    .into_response()
}

/// `GET /view?filename=&subfolder=&type=`: the image of a finished job.
async fn comfy_view(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let filename = query.get("filename").cloned().unwrap_or_default();
    if query.get("type").map(String::as_str) != Some("temp") || !query.contains_key("subfolder") {
        return problem(&shared, format!("/view was asked for {query:?}"));
    }
    let job = filename
        .strip_prefix("ComfyUI_temp_")
        .and_then(|rest| rest.split('_').next())
        .unwrap_or_default()
        .to_owned();
    let Some((graph, _)) = shared.jobs.lock().expect("lock").get(&job).cloned() else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let nodes = graph.as_object().cloned().unwrap_or_default();
    let input = |class: &str, field: &str| {
        nodes
            .values()
            .find(|node| node["class_type"] == class)
            .and_then(|node| node["inputs"][field].as_u64())
            .unwrap_or(8)
    };
    let image = png(
        input("EmptyLatentImage", "width") as u32,
        input("EmptyLatentImage", "height") as u32,
        input("KSampler", "seed"),
    );
    ([(axum::http::header::CONTENT_TYPE, "image/png")], image).into_response()
}

/// `POST /history` with `{"delete": [ids]}`.
async fn comfy_delete(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    let ids: Vec<String> = body["delete"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect();
    let mut jobs = shared.jobs.lock().expect("lock");
    for id in &ids {
        jobs.remove(id);
    }
    shared.received.lock().expect("lock").deleted.extend(ids);
    StatusCode::OK.into_response()
}

/// `POST /v1/images/generations`, as OpenAI's API reads it: only its own fields.
async fn openai_images(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    shared
        .received
        .lock()
        .expect("lock")
        .bodies
        .push(body.clone());
    let known = ["model", "prompt", "n", "size", "response_format"];
    if let Some(unknown) = body
        .as_object()
        .and_then(|fields| fields.keys().find(|name| !known.contains(&name.as_str())))
    {
        return problem(
            &shared,
            format!("Unrecognized request argument supplied: {unknown}"),
        );
    }
    if body["model"] != json!(shared.checkpoint) || !body["prompt"].is_string() {
        return problem(&shared, "model or prompt is wrong".into());
    }
    if body["response_format"] != "b64_json" {
        return problem(&shared, "b64_json was expected".into());
    }
    let Some((width, height)) = body["size"].as_str().and_then(|size| {
        let (width, height) = size.split_once('x')?;
        Some((width.parse::<u32>().ok()?, height.parse::<u32>().ok()?))
    }) else {
        return problem(&shared, "size is not WIDTHxHEIGHT".into());
    };
    let count = int(&body, "n").unwrap_or(1);
    maybe_hold(&shared).await;
    let data: Vec<Value> = (0..count)
        .map(|index| json!({"b64_json": b64(&png(width, height, index))}))
        .collect();
    Json(json!({"created": 1_700_000_000, "data": data})).into_response()
}

/// The size of the image in base64 `text`, if it is one.
fn source_size(text: Option<&str>) -> Option<(u32, u32)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text?)
        .ok()?;
    let image = image::load_from_memory(&bytes).ok()?;
    Some((image.width(), image.height()))
}

/// `POST /sdapi/v1/img2img`, as AUTOMATIC1111 reads it.
async fn img2img(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    shared
        .received
        .lock()
        .expect("lock")
        .bodies
        .push(body.clone());
    if source_size(body.pointer("/init_images/0").and_then(Value::as_str)).is_none() {
        return problem(&shared, "init_images[0] is not a base64 image".into());
    }
    if !body["prompt"].is_string()
        || !body["denoising_strength"]
            .as_f64()
            .is_some_and(|strength| strength > 0.0 && strength <= 1.0)
    {
        return problem(&shared, "prompt or denoising_strength is wrong".into());
    }
    let (Some(width), Some(height), Some(_), Some(seed)) = (
        int(&body, "width"),
        int(&body, "height"),
        int(&body, "steps"),
        int(&body, "seed"),
    ) else {
        return problem(
            &shared,
            "width, height, steps and seed are whole numbers".into(),
        );
    };
    if width % 8 != 0 || height % 8 != 0 {
        return problem(&shared, "sizes are multiples of 8".into());
    }
    Json(json!({"images": [b64(&png(width as u32, height as u32, seed))], "parameters": {}, "info": "{}"})).into_response()
}

/// `POST /sdapi/v1/extra-single-image`: the image upscaled by the named upscaler.
async fn extras(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    shared
        .received
        .lock()
        .expect("lock")
        .bodies
        .push(body.clone());
    let Some((width, height)) = source_size(body["image"].as_str()) else {
        return problem(&shared, "image is not a base64 image".into());
    };
    let scale = int(&body, "upscaling_resize").unwrap_or(0) as u32;
    if ![2, 4].contains(&scale)
        || body["upscaler_1"] != json!(shared.checkpoint)
        || body["resize_mode"] != 0
    {
        return problem(
            &shared,
            "upscaling_resize, upscaler_1 or resize_mode is wrong".into(),
        );
    }
    Json(json!({"image": b64(&png(width * scale, height * scale, 0)), "html_info": "<p></p>"}))
        .into_response()
}

/// `POST /v1/images/edits`, as OpenAI's API reads it: a multipart body.
async fn openai_edits(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let boundary = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| multer::parse_boundary(value).ok());
    let Some(boundary) = boundary else {
        return problem(&shared, "an edit is multipart/form-data".into());
    };
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut fields = serde_json::Map::new();
    let mut image = None;
    while let Ok(Some(field)) = multipart.next_field().await {
        let name = field.name().unwrap_or_default().to_owned();
        let is_file = field.file_name().is_some();
        let bytes = field.bytes().await.unwrap_or_default();
        if name == "image" && is_file {
            image = image::load_from_memory(&bytes)
                .ok()
                .map(|image| (image.width(), image.height()));
        } else {
            fields.insert(
                name,
                Value::String(String::from_utf8_lossy(&bytes).into_owned()),
            );
        }
    }
    shared
        .received
        .lock()
        .expect("lock")
        .bodies
        .push(Value::Object(fields.clone()));
    if image.is_none() {
        return problem(&shared, "image is not an image file".into());
    }
    let known = ["model", "prompt", "n", "size", "response_format"];
    if let Some(unknown) = fields.keys().find(|name| !known.contains(&name.as_str())) {
        return problem(
            &shared,
            format!("Unrecognized request argument supplied: {unknown}"),
        );
    }
    if fields.get("model") != Some(&json!(shared.checkpoint))
        || fields.get("response_format") != Some(&json!("b64_json"))
    {
        return problem(&shared, "model or response_format is wrong".into());
    }
    let Some((width, height)) = fields.get("size").and_then(Value::as_str).and_then(|size| {
        let (width, height) = size.split_once('x')?;
        Some((width.parse::<u32>().ok()?, height.parse::<u32>().ok()?))
    }) else {
        return problem(&shared, "size is not WIDTHxHEIGHT".into());
    };
    Json(json!({"created": 1_700_000_000, "data": [{"b64_json": b64(&png(width, height, 3))}]}))
        .into_response()
}
