//! Gondola's benchmark harness. `path` measures what the whole serving path costs: the same
//! engine, the same requests, once called directly and once through gateway + provider over
//! loopback HTTP, in interleaved rounds (A B A B …) so that drift on a shared machine hits both
//! sides alike. Results go to `bench/results/path.{md,json}`. `metering` measures the quota
//! check on the request path (see `metering.rs`); `private` what the private path (Oblivious
//! HTTP through a relay) adds to a request (see `private.rs`); `tokens` what privacy tokens
//! cost to issue and redeem (see `tokens.rs`); `peers` Gondola's gateway beside TensorZero and
//! LiteLLM in front of the same instant upstream (see `peers.rs`); `soak` Gondola under a fixed
//! rate for minutes, sampled for growth (see `soak.rs`); `engine` Gondola's engine beside
//! llama.cpp itself (see `engine_vs.rs`); `serving` the engine beside llama.cpp's server under
//! concurrent load, alone and behind the gateway (see `serving.rs`).

mod background;
mod cluster;
mod embeddings;
mod engine_vs;
mod images;
mod metering;
mod peers;
mod private;
mod prompt_cache;
mod serving;
mod soak;
mod speech;
mod tokens;
mod transcription;
mod upscale;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use engine::{ChatMessage, Engine, EngineConfig, Event, GenerationRequest, OutputFormat, Sampling};
use futures_util::StreamExt;
use serde::Serialize;
use wire::sse::{SseEvent, SseParser};

/// Greedy decoding loops on this prompt (`☃☃☃…`) and never ends early, so every run generates
/// exactly `TOKENS` tokens.
const PROMPT: &str = "Count from 0 to 10 in words. Ünïcödé ☃";
const TOKENS: u32 = 128;
const ROUNDS: usize = 7;
/// Requests in flight for the batching measurement.
const CONCURRENCY: [usize; 3] = [1, 4, 8];
/// Sequences the path benchmark's engine decodes at once (the most of [`CONCURRENCY`]).
const PATH_SEQUENCES: u32 = 8;

#[derive(Debug, Clone, Copy, Serialize)]
struct Run {
    first_token_ms: f64,
    decode_tokens_per_second: f64,
    total_ms: f64,
    /// Generated tokens.
    tokens: u64,
}

#[derive(Serialize)]
struct Side {
    name: &'static str,
    runs: Vec<Run>,
    median: Run,
}

#[derive(Serialize)]
struct Report {
    model: String,
    threads: u32,
    tokens_per_run: u32,
    rounds: usize,
    engine: Side,
    gateway: Side,
    ratio_decode: f64,
    added_first_token_ms: f64,
    /// Aggregate generated tokens per second through the gateway, by requests in flight.
    concurrency: Vec<(usize, f64)>,
}

fn median(runs: &[Run]) -> Run {
    let pick = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Run {
        first_token_ms: pick(runs.iter().map(|run| run.first_token_ms).collect()),
        decode_tokens_per_second: pick(
            runs.iter()
                .map(|run| run.decode_tokens_per_second)
                .collect(),
        ),
        total_ms: pick(runs.iter().map(|run| run.total_ms).collect()),
        tokens: runs.first().map_or(0, |run| run.tokens),
    }
}

/// `text_times` are when text arrived (one event may carry several tokens: a character split
/// over byte-level tokens arrives whole); `tokens` is the engine's count of generated tokens.
fn run_from(started: Instant, text_times: &[Instant], tokens: u64) -> anyhow::Result<Run> {
    let (Some(first), Some(last)) = (text_times.first(), text_times.last()) else {
        bail!("no tokens")
    };
    let decode_seconds = last.duration_since(*first).as_secs_f64().max(f64::EPSILON);
    Ok(Run {
        first_token_ms: first.duration_since(started).as_secs_f64() * 1e3,
        decode_tokens_per_second: tokens.saturating_sub(1) as f64 / decode_seconds,
        total_ms: last.duration_since(started).as_secs_f64() * 1e3,
        tokens,
    })
}

/// A greedy request for `messages`, at most `max_tokens` long, reading and leaving its prompt in
/// the cache of `cache_namespace` if it has one.
fn greedy_request(
    messages: Vec<ChatMessage>,
    max_tokens: u32,
    cache_namespace: Option<[u8; 32]>,
) -> GenerationRequest {
    GenerationRequest {
        messages,
        sampling: Sampling {
            temperature: 0.0,
            ..Sampling::default()
        },
        max_tokens,
        stop: Vec::new(),
        stop_tokens: Vec::new(),
        format: OutputFormat::Text,
        enable_thinking: true,
        tools: None,
        logprobs: None,
        cache_namespace,
    }
}

async fn direct(engine: &Engine) -> anyhow::Result<Run> {
    Ok(direct_counted(engine).await?.0)
}

/// As [`direct`], with the number of prompt tokens the engine fed.
async fn direct_counted(engine: &Engine) -> anyhow::Result<(Run, u32)> {
    let request = greedy_request(vec![ChatMessage::text("user", PROMPT)], TOKENS, None);
    let started = Instant::now();
    let mut events = engine.submit(request)?;
    let mut times = Vec::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Text(_) => times.push(Instant::now()),
            Event::Done(done) => {
                let run = run_from(started, &times, u64::from(done.completion_tokens))?;
                return Ok((run, done.prompt_tokens));
            }
            Event::Failed(reason) => bail!("generation failed: {reason}"),
            // Not asked for.
            Event::Logprob(_) => {}
        }
    }
    bail!("the engine stopped")
}

/// The streamed chat request both paths send.
fn chat_request() -> serde_json::Value {
    serde_json::json!({
        "model": "default",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": TOKENS,
        "temperature": 0,
        "stream": true,
        "stream_options": {"include_usage": true},
        "venice_parameters": {"include_venice_system_prompt": false},
    })
}

/// Reads a streamed chat reply, noting when text arrived.
async fn timed_reply<E>(
    started: Instant,
    stream: impl futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
) -> anyhow::Result<Run>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let (times, tokens) = reply_times(stream).await?;
    run_from(started, &times, tokens)
}

/// When each piece of text of a streamed chat reply arrived, and the number of generated
/// tokens its usage reports.
async fn reply_times<E>(
    mut stream: impl futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
) -> anyhow::Result<(Vec<Instant>, u64)>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let mut parser = SseParser::new(1 << 20);
    let mut times = Vec::new();
    let mut tokens = 0;
    while let Some(bytes) = stream.next().await {
        let bytes = bytes?;
        let now = Instant::now();
        for event in parser.push(&bytes)? {
            if let SseEvent::Data(data) = event {
                let value: serde_json::Value = serde_json::from_str(&data)?;
                if value
                    .pointer("/choices/0/delta/content")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|text| !text.is_empty())
                {
                    times.push(now);
                }
                if let Some(completion_tokens) = value
                    .pointer("/usage/completion_tokens")
                    .and_then(serde_json::Value::as_u64)
                {
                    tokens = completion_tokens;
                }
            }
        }
    }
    Ok((times, tokens))
}

async fn through_gateway(http: &reqwest::Client, url: &str) -> anyhow::Result<Run> {
    let started = Instant::now();
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat_request())
        .send()
        .await?
        .error_for_status()?;
    timed_reply(started, response.bytes_stream()).await
}

fn model_path() -> anyhow::Result<PathBuf> {
    let path = std::env::args()
        .nth(2)
        .map(PathBuf::from)
        .context("usage: gondola-bench path|private MODEL.gguf")?;
    if !path.exists() {
        bail!(
            "{} does not exist (run `gondola pull` and pass the path it prints)",
            path.display()
        );
    }
    Ok(path)
}

/// A gateway (with an Oblivious HTTP key) and one provider serving `engine`, in this process
/// on loopback. Returns the gateway's URL and the provider's data directory.
async fn start_stack(engine: &Arc<Engine>) -> anyhow::Result<(String, PathBuf)> {
    let backend = provider::Backend::Embedded {
        engine: Arc::clone(engine),
        model_id: "bench-model".into(),
    };
    start_stack_with(backend, 8, true).await
}

/// As [`start_stack`], with any backend, `max_in_flight` requests at the provider, and
/// anonymous callers sharing the prompt cache or not.
async fn start_stack_with(
    backend: provider::Backend,
    max_in_flight: u32,
    share_prompt_cache: bool,
) -> anyhow::Result<(String, PathBuf)> {
    static STACKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let data = std::env::temp_dir().join(format!(
        "gondola-bench-{}-{}",
        std::process::id(),
        STACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let gateway_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", gateway_listener.local_addr()?);
    let gateway_config = gateway::GatewayConfig {
        auth: gateway::config::AuthConfig {
            keys: Vec::new(),
            anonymous: Some(gateway::config::RateLimit {
                requests_per_minute: 1_000_000,
                tokens_per_minute: u64::MAX,
            }),
            anonymous_share_prompt_cache: share_prompt_cache,
        },
        oblivious_seed: Some(data.join("ohttp.seed")),
        ..gateway::GatewayConfig::default()
    };
    tokio::spawn(gateway::run(
        gateway_listener,
        gateway_config,
        None,
        std::future::pending(),
    ));
    let provider_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (ready, registered) = tokio::sync::oneshot::channel();
    let provider_config = provider::ProviderConfig {
        gateway_urls: vec![url.clone()],
        advertise_url: None,
        data_dir: data.clone(),
        max_in_flight,
        x_wing: false,
    };
    tokio::spawn(provider::run(
        provider_listener,
        provider_config,
        backend,
        Some(ready),
        std::future::pending(),
    ));
    tokio::time::timeout(Duration::from_secs(30), registered)
        .await
        .context("the provider did not register")??;
    Ok((url, data))
}

/// The value after `name` on the command line.
fn flag(name: &str) -> Option<String> {
    std::env::args()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|pair| pair[0] == name)
        .map(|pair| pair[1].clone())
}

/// The Python of the peers' venv (`--venv DIR`, else `target/bench-peers/venv`), which
/// `bench/peers/run.sh CASE` fills with `package`.
fn peer_python(package: &str, case: &str) -> anyhow::Result<PathBuf> {
    let venv = flag("--venv").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-peers/venv"),
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    if !python.is_file() {
        bail!(
            "no venv with {package} at {} (bench/peers/run.sh {case} makes it)",
            venv.display()
        );
    }
    Ok(python)
}

async fn load_engine() -> anyhow::Result<(PathBuf, u32, Arc<Engine>)> {
    load_engine_with(None).await
}

/// As [`load_engine`], decoding `max_sequences` at once where given (the default otherwise).
async fn load_engine_with(
    max_sequences: Option<u32>,
) -> anyhow::Result<(PathBuf, u32, Arc<Engine>)> {
    server::install_crypto_provider();
    let model = model_path()?;
    let mut config = EngineConfig::new(model.clone());
    if let Some(max_sequences) = max_sequences {
        config.max_sequences = max_sequences;
    }
    let threads = config.decode_threads.get();
    let engine = Arc::new(tokio::task::spawn_blocking(move || Engine::load(config)).await??);
    Ok((model, threads, engine))
}

async fn path_bench() -> anyhow::Result<()> {
    let (model, threads, engine) = load_engine_with(Some(PATH_SEQUENCES)).await?;
    let (url, data) = start_stack(&engine).await?;

    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    // Warm both paths once (page cache, connection pool).
    direct(&engine).await?;
    through_gateway(&http, &url).await?;
    let (mut direct_runs, mut gateway_runs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}", round + 1);
        direct_runs.push(direct(&engine).await?);
        gateway_runs.push(through_gateway(&http, &url).await?);
    }
    let (engine_median, gateway_median) = (median(&direct_runs), median(&gateway_runs));
    let mut concurrency = Vec::new();
    for in_flight in CONCURRENCY {
        let started = Instant::now();
        let runs =
            futures_util::future::join_all((0..in_flight).map(|_| through_gateway(&http, &url)))
                .await;
        let tokens = runs.into_iter().collect::<anyhow::Result<Vec<_>>>()?.len() * TOKENS as usize;
        concurrency.push((in_flight, tokens as f64 / started.elapsed().as_secs_f64()));
    }
    let report = Report {
        model: model
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        threads,
        tokens_per_run: TOKENS,
        rounds: ROUNDS,
        ratio_decode: gateway_median.decode_tokens_per_second
            / engine_median.decode_tokens_per_second,
        added_first_token_ms: gateway_median.first_token_ms - engine_median.first_token_ms,
        concurrency,
        engine: Side {
            name: "engine alone",
            runs: direct_runs,
            median: engine_median,
        },
        gateway: Side {
            name: "gateway + provider over HTTP",
            runs: gateway_runs,
            median: gateway_median,
        },
    };
    let _ = std::fs::remove_dir_all(&data);
    let results = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(
        results.join("path.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let mut table = format!(
        "# Serving path: engine alone vs through gateway + provider\n\n{} · {} decode thread(s) · {} greedy tokens per run · medians of {} interleaved rounds\n\n\
         | path | time to first token | decode tokens/s | total |\n|---|---|---|---|\n",
        report.model, report.threads, report.tokens_per_run, report.rounds
    );
    for side in [&report.engine, &report.gateway] {
        table.push_str(&format!(
            "| {} | {:.1} ms | {:.1} | {:.0} ms |\n",
            side.name,
            side.median.first_token_ms,
            side.median.decode_tokens_per_second,
            side.median.total_ms
        ));
    }
    table.push_str(&format!(
        "\nThrough the gateway: decode at {:.3}× the engine's rate, first token {:+.1} ms.\n",
        report.ratio_decode, report.added_first_token_ms
    ));
    table.push_str("\nContinuous batching, through the gateway (aggregate generated tokens/s):\n\n| requests in flight | tokens/s |\n|---|---|\n");
    for (in_flight, rate) in &report.concurrency {
        table.push_str(&format!("| {in_flight} | {rate:.1} |\n"));
    }
    std::fs::write(results.join("path.md"), &table)?;
    println!("{table}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match std::env::args().nth(1).as_deref() {
        Some("path") => runtime.block_on(path_bench()),
        Some("metering") => metering::run(),
        Some("private") => runtime.block_on(private::run()),
        Some("tokens") => runtime.block_on(tokens::run()),
        Some("peers") => runtime.block_on(peers::run()),
        Some("soak") => runtime.block_on(soak::run()),
        Some("engine") => runtime.block_on(engine_vs::run()),
        Some("embeddings") => runtime.block_on(embeddings::run()),
        Some("speech") => runtime.block_on(speech::run()),
        Some("transcription") => runtime.block_on(transcription::run()),
        Some("prompt-cache") => runtime.block_on(prompt_cache::run_bench()),
        Some("serving") => runtime.block_on(serving::run()),
        Some("images") => runtime.block_on(images::run()),
        Some("background") => runtime.block_on(background::run()),
        Some("upscale") => runtime.block_on(upscale::run()),
        Some("cluster") => runtime.block_on(cluster::run()),
        _ => bail!(
            "usage: gondola-bench path MODEL.gguf | gondola-bench private MODEL.gguf | gondola-bench metering | gondola-bench tokens | gondola-bench peers [--gondola BIN] [--nginx BIN] [--venv DIR] | gondola-bench soak [--minutes M] [--rate R] [--gondola BIN] [--nginx BIN] | gondola-bench engine MODEL.gguf [--venv DIR] | gondola-bench embeddings MODEL.gguf [--venv DIR] [--gondola BIN] [--cache-dir DIR] | gondola-bench speech VOICE.onnx [--venv DIR] | gondola-bench transcription WHISPER_DIR VOICE.onnx [--venv DIR] | gondola-bench prompt-cache MODEL.gguf | gondola-bench serving MODEL.gguf [--venv DIR] [--threads N] [--requantize q4_0] [--rounds R] | gondola-bench images [--rounds R] | gondola-bench background [--venv DIR] [--threads N] [--rounds R] | gondola-bench upscale [--venv DIR] [--threads N] [--rounds R] | gondola-bench cluster [--gondola BIN] [--nginx BIN]"
        ),
    }
}
