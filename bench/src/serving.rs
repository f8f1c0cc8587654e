//! `gondola-bench serving MODEL.gguf [--venv DIR] [--threads N] [--batch-threads N]
//! [--kv f16|q8_0] [--requantize q4_0] [--rounds R]`: Gondola's engine beside llama.cpp's own server (the `xllamacpp` wheel) under
//! concurrent load, alone and each behind Gondola's gateway.
//!
//! Four sides serve the same GGUF with the same slots (the most requests in flight), the same
//! context per slot, the same KV cache format and the same threads:
//! - Gondola's engine, as its provider runs it (in this process, no HTTP);
//! - llama.cpp's server, over loopback HTTP (`/v1/chat/completions`, streamed);
//! - Gondola's gateway and provider in front of Gondola's engine (what `gondola serve` runs);
//! - Gondola's gateway and a provider with `--upstream` in front of llama.cpp's server.
//!
//! At 1, 4, 8 and 16 requests in flight, each round sends that many streamed requests to each
//! side in turn (the order rotating every round, so that drift on a shared machine hits all
//! alike) and records the aggregate generated tokens per second (all tokens over the wall time
//! from the first request sent to the last token received) and each request's time to its first
//! token. Every request is the same, and greedy decoding of [`crate::PROMPT`] never ends early:
//! each computes the same prompt (52 tokens) and generates exactly [`crate::TOKENS`]. Neither
//! side caches prompts here (llama.cpp's server is started with `cache_prompt` off and no host
//! cache; Gondola's gateway gives anonymous requests no cache namespace), so each computes the
//! whole prompt: `gondola-bench prompt-cache` measures the cache.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use engine::{ChatMessage, Engine, EngineConfig, Event, KvFormat};
use serde::Serialize;

use crate::{PROMPT, TOKENS, flag, peer_python, reply_times};

const CONCURRENCY: [usize; 4] = [1, 4, 8, 16];
/// Context of each slot: the prompt (about 40 tokens) and the reply fit many times over.
const CONTEXT_PER_SLOT: u32 = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
enum Side {
    Engine,
    LlamaServer,
    GatewayEngine,
    GatewayLlamaServer,
}

impl Side {
    const ALL: [Side; 4] = [
        Side::Engine,
        Side::LlamaServer,
        Side::GatewayEngine,
        Side::GatewayLlamaServer,
    ];

    fn label(self) -> &'static str {
        match self {
            Side::Engine => "Gondola's engine (in the provider's process)",
            Side::LlamaServer => "llama.cpp's server (HTTP)",
            Side::GatewayEngine => "Gondola gateway + provider → Gondola's engine",
            Side::GatewayLlamaServer => "Gondola gateway + provider → llama.cpp's server",
        }
    }
}

/// One request: when it was sent, when each piece of its text came, and how many tokens it
/// generated.
struct Sample {
    started: Instant,
    times: Vec<Instant>,
    tokens: u64,
}

impl Sample {
    fn first_token_ms(&self) -> f64 {
        self.times.first().map_or(f64::NAN, |first| {
            first.duration_since(self.started).as_secs_f64() * 1e3
        })
    }
}

#[derive(Serialize)]
struct Cell {
    side: Side,
    in_flight: usize,
    /// Aggregate generated tokens/s of each round, prompts included.
    rounds: Vec<f64>,
    median_tokens_per_second: f64,
    /// Batched decode tokens/s of each round (see [`Burst::decode_per_second`]).
    decode_rounds: Vec<f64>,
    median_decode_per_second: f64,
    first_token_p50_ms: f64,
    first_token_p99_ms: f64,
    /// Requests whose first token is counted.
    requests: usize,
}

#[derive(Serialize)]
struct Report {
    model: String,
    /// Threads for one sequence's decode step.
    threads: u32,
    /// Threads for steps of more than one token (prompts, and several sequences decoding).
    batch_threads: u32,
    kv_format: &'static str,
    slots: u32,
    context_per_slot: u32,
    tokens_per_request: u32,
    rounds: usize,
    llama_server_load_seconds: f64,
    cells: Vec<Cell>,
}

/// llama.cpp's server in a Python process, until dropped.
struct LlamaServer {
    child: std::process::Child,
    url: String,
}

impl LlamaServer {
    fn start(
        python: &Path,
        model: &Path,
        slots: u32,
        (threads, batch_threads): (u32, u32),
        kv_format: KvFormat,
    ) -> anyhow::Result<Self> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/llama_chat_server.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(model)
            .arg(slots.to_string())
            .arg(CONTEXT_PER_SLOT.to_string())
            .arg(threads.to_string())
            .arg(batch_threads.to_string())
            .arg(kv_format.name())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", python.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let line = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.starts_with("listening on "))
            .context("llama.cpp's server did not start")?;
        let url = line.trim_start_matches("listening on ").trim().to_owned();
        Ok(Self { child, url })
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn engine_request(engine: &Engine) -> anyhow::Result<Sample> {
    let request = crate::greedy_request(vec![ChatMessage::text("user", PROMPT)], TOKENS, None);
    let started = Instant::now();
    let mut events = engine.submit(request)?;
    let mut times = Vec::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Text(_) => times.push(Instant::now()),
            Event::Done(done) => {
                return Ok(Sample {
                    started,
                    times,
                    tokens: u64::from(done.completion_tokens),
                });
            }
            Event::Failed(reason) => bail!("generation failed: {reason}"),
            Event::Logprob(_) => {}
        }
    }
    bail!("the engine stopped")
}

/// A streamed chat request to an OpenAI-compatible `base` (`…/v1`).
async fn http_request(http: &reqwest::Client, base: &str) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let response = http
        .post(format!("{base}/chat/completions"))
        .json(&crate::chat_request())
        .send()
        .await?
        .error_for_status()?;
    let (times, tokens) = reply_times(response.bytes_stream()).await?;
    Ok(Sample {
        started,
        times,
        tokens,
    })
}

struct Sides {
    engine: Arc<Engine>,
    http: reqwest::Client,
    llama: String,
    gateway_engine: String,
    gateway_llama: String,
}

impl Sides {
    async fn one(&self, side: Side) -> anyhow::Result<Sample> {
        match side {
            Side::Engine => engine_request(&self.engine).await,
            Side::LlamaServer => http_request(&self.http, &self.llama).await,
            Side::GatewayEngine => http_request(&self.http, &self.gateway_engine).await,
            Side::GatewayLlamaServer => http_request(&self.http, &self.gateway_llama).await,
        }
    }

    /// `in_flight` requests at once.
    async fn burst(&self, side: Side, in_flight: usize) -> anyhow::Result<Burst> {
        let started = Instant::now();
        let samples = futures_util::future::join_all((0..in_flight).map(|_| self.one(side)))
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?;
        if let Some(sample) = samples
            .iter()
            .find(|sample| sample.tokens != u64::from(TOKENS) || sample.times.is_empty())
        {
            bail!(
                "{}: a request generated {} tokens, not {TOKENS}",
                side.label(),
                sample.tokens
            );
        }
        Burst::of(started, samples)
    }
}

/// What one burst of requests in flight measured.
struct Burst {
    /// All generated tokens over the wall time, prompts included.
    tokens_per_second: f64,
    /// Tokens generated while every request was generating (from the last first token to the
    /// first last token), per second: the batched decode rate, prompts excluded. Counted as
    /// pieces of text received, scaled by the burst's tokens per piece (a character split over
    /// several byte-level tokens arrives as one piece).
    decode_per_second: f64,
    first_token_ms: Vec<f64>,
}

impl Burst {
    fn of(started: Instant, samples: Vec<Sample>) -> anyhow::Result<Self> {
        let firsts = samples.iter().filter_map(|sample| sample.times.first());
        let lasts = samples.iter().filter_map(|sample| sample.times.last());
        let (Some(all_started), Some(first_done), Some(last_done)) = (
            firsts.max().copied(),
            lasts.clone().min().copied(),
            lasts.max().copied(),
        ) else {
            bail!("no tokens");
        };
        let tokens: u64 = samples.iter().map(|sample| sample.tokens).sum();
        let window = first_done
            .saturating_duration_since(all_started)
            .as_secs_f64();
        let in_window = samples
            .iter()
            .flat_map(|sample| &sample.times)
            .filter(|time| **time > all_started && **time <= first_done)
            .count();
        Ok(Self {
            tokens_per_second: tokens as f64
                / last_done
                    .duration_since(started)
                    .as_secs_f64()
                    .max(f64::EPSILON),
            decode_per_second: if window > 0.0 {
                let pieces: usize = samples.iter().map(|sample| sample.times.len()).sum();
                in_window as f64 / window * tokens as f64 / pieces.max(1) as f64
            } else {
                f64::NAN
            },
            first_token_ms: samples.iter().map(Sample::first_token_ms).collect(),
        })
    }
}

fn percentile(values: &mut [f64], fraction: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 * fraction).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

pub async fn run() -> anyhow::Result<()> {
    server::install_crypto_provider();
    let usage = "usage: gondola-bench serving MODEL.gguf [--venv DIR] [--threads N] [--batch-threads N] [--kv f16|q8_0] [--requantize q4_0] [--rounds R]";
    let source = PathBuf::from(std::env::args().nth(2).context(usage)?);
    let python = peer_python("xllamacpp", "serving")?;
    let threads = match flag("--threads") {
        Some(text) => text.parse().context("--threads is a number")?,
        None => engine::default_decode_threads().get(),
    };
    let batch_threads = match flag("--batch-threads") {
        Some(text) => text.parse().context("--batch-threads is a number")?,
        None => threads,
    };
    let kv_format = match flag("--kv") {
        Some(text) => KvFormat::parse(&text).context("--kv f16|q8_0")?,
        None => KvFormat::Q8_0,
    };
    let rounds: usize = match flag("--rounds") {
        Some(text) => text.parse().context("--rounds is a number")?,
        None => 3,
    };
    let model = match flag("--requantize") {
        Some(format) => {
            let format = engine::WeightFormat::parse(&format).context("--requantize q4_0|q8_0")?;
            let target = std::env::temp_dir().join(format!(
                "gondola-bench-{}.{}.gguf",
                std::process::id(),
                format.tag()
            ));
            let (from, to) = (source.clone(), target.clone());
            tokio::task::spawn_blocking(move || engine::requantize(&from, &to, format, threads))
                .await??;
            target
        }
        None => source.clone(),
    };
    let slots = *CONCURRENCY.iter().max().unwrap_or(&16) as u32;

    let mut config = EngineConfig::new(model.clone());
    config.max_sequences = slots;
    config.context_tokens_per_sequence = CONTEXT_PER_SLOT;
    config.decode_threads = std::num::NonZeroU32::new(threads).context("--threads 1 or more")?;
    config.prompt_threads =
        std::num::NonZeroU32::new(batch_threads).context("--batch-threads 1 or more")?;
    config.kv_format = kv_format;
    config.queue_depth = 64;
    config.prompt_cache_bytes = 0;
    let engine = Arc::new(tokio::task::spawn_blocking(move || Engine::load(config)).await??);

    let loading = Instant::now();
    let llama = LlamaServer::start(&python, &model, slots, (threads, batch_threads), kv_format)?;
    let llama_server_load_seconds = loading.elapsed().as_secs_f64();

    let limit = slots;
    let (gateway_engine, engine_data) = crate::start_stack_with(
        provider::Backend::Embedded {
            engine: Arc::clone(&engine),
            model_id: "bench-model".into(),
        },
        limit,
        false,
    )
    .await?;
    let (gateway_llama, llama_data) = crate::start_stack_with(
        provider::Backend::Upstream {
            api: provider::UpstreamApi::OpenAi,
            base_url: format!("{}/v1", llama.url),
            upstream_model: "default".into(),
            model_id: "bench-model".into(),
            api_key: None,
            model_type: wire::models::ModelType::Text,
            context_tokens: CONTEXT_PER_SLOT,
            input_media: Vec::new(),
            image_limits: wire::images::ImageLimits::default(),
            video_limits: Box::default(),
        },
        limit,
        false,
    )
    .await?;
    let sides = Sides {
        engine,
        http: reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            .build()?,
        llama: format!("{}/v1", llama.url),
        gateway_engine: format!("{gateway_engine}/v1"),
        gateway_llama: format!("{gateway_llama}/v1"),
    };
    // Warm every side (page cache, connection pools, the engines' first batch).
    for side in Side::ALL {
        sides.burst(side, 2).await?;
    }

    let mut cells = Vec::new();
    for in_flight in CONCURRENCY {
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); Side::ALL.len()];
        let mut decodes: Vec<Vec<f64>> = vec![Vec::new(); Side::ALL.len()];
        let mut first_tokens: Vec<Vec<f64>> = vec![Vec::new(); Side::ALL.len()];
        for round in 0..rounds {
            eprintln!("{in_flight} in flight, round {}/{rounds}", round + 1);
            for turn in 0..Side::ALL.len() {
                let index = (turn + round) % Side::ALL.len();
                let burst = sides.burst(Side::ALL[index], in_flight).await?;
                rates[index].push(burst.tokens_per_second);
                decodes[index].push(burst.decode_per_second);
                first_tokens[index].extend(burst.first_token_ms);
            }
        }
        for (index, side) in Side::ALL.into_iter().enumerate() {
            let requests = first_tokens[index].len();
            cells.push(Cell {
                side,
                in_flight,
                rounds: rates[index].clone(),
                median_tokens_per_second: percentile(&mut rates[index].clone(), 0.5),
                decode_rounds: decodes[index].clone(),
                median_decode_per_second: percentile(&mut decodes[index].clone(), 0.5),
                first_token_p50_ms: percentile(&mut first_tokens[index], 0.5),
                first_token_p99_ms: percentile(&mut first_tokens[index], 0.99),
                requests,
            });
        }
    }
    drop(llama);
    for data in [engine_data, llama_data] {
        let _ = std::fs::remove_dir_all(data);
    }
    if model != source {
        let _ = std::fs::remove_file(&model);
    }

    let report = Report {
        model: model_name(&source, flag("--requantize").as_deref()),
        threads,
        batch_threads,
        kv_format: kv_format.name(),
        slots,
        context_per_slot: CONTEXT_PER_SLOT,
        tokens_per_request: TOKENS,
        rounds,
        llama_server_load_seconds,
        cells,
    };
    let table = render(&report);
    let results = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&results)?;
    let stem = format!(
        "serving-{}-kv-{}-threads-{threads}-{batch_threads}",
        flag("--requantize").map_or_else(
            || "as-published".to_owned(),
            |format| format.to_ascii_lowercase()
        ),
        kv_format.name()
    );
    std::fs::write(
        results.join(format!("{stem}.json")),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(results.join(format!("{stem}.md")), &table)?;
    println!("{table}");
    Ok(())
}

fn model_name(source: &Path, requantized: Option<&str>) -> String {
    let name = source
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    match requantized {
        Some(format) => format!("{name}, requantized to {}", format.to_ascii_uppercase()),
        None => name,
    }
}

fn render(report: &Report) -> String {
    let cell = |side: Side, in_flight: usize| {
        report
            .cells
            .iter()
            .find(|cell| cell.side == side && cell.in_flight == in_flight)
    };
    let mut table = format!(
        "# Serving under concurrent load: Gondola's engine beside llama.cpp's server\n\n\
         {} · {} thread(s) for one sequence's decode step, {} for larger steps (prompts, several sequences) · KV cache {} · {} slots of {} tokens · {} greedy tokens per request, 52-token prompt, no prompt cache · {} rounds per cell, sides interleaved\n\n\
         | side | in flight | batched decode tokens/s | all tokens / wall time | first token p50 | first token p99 | requests |\n|---|---|---|---|---|---|---|\n",
        report.model,
        report.threads,
        report.batch_threads,
        report.kv_format,
        report.slots,
        report.context_per_slot,
        report.tokens_per_request,
        report.rounds
    );
    for in_flight in CONCURRENCY {
        for side in Side::ALL {
            if let Some(cell) = cell(side, in_flight) {
                table.push_str(&format!(
                    "| {} | {} | {:.1} | {:.1} | {:.0} ms | {:.0} ms | {} |\n",
                    side.label(),
                    in_flight,
                    cell.median_decode_per_second,
                    cell.median_tokens_per_second,
                    cell.first_token_p50_ms,
                    cell.first_token_p99_ms,
                    cell.requests
                ));
            }
        }
    }
    let decode = |side, in_flight| {
        cell(side, in_flight).map_or(f64::NAN, |cell| cell.median_decode_per_second)
    };
    table.push_str("\n| in flight | decode: engine ÷ llama.cpp's server | through the gateway | engine's decode ÷ its own at 1 | llama.cpp's ÷ its own at 1 |\n|---|---|---|---|---|\n");
    for in_flight in CONCURRENCY {
        table.push_str(&format!(
            "| {in_flight} | {:.2}× | {:.2}× | {:.2}× | {:.2}× |\n",
            decode(Side::Engine, in_flight) / decode(Side::LlamaServer, in_flight),
            decode(Side::GatewayEngine, in_flight) / decode(Side::GatewayLlamaServer, in_flight),
            decode(Side::Engine, in_flight) / decode(Side::Engine, 1),
            decode(Side::LlamaServer, in_flight) / decode(Side::LlamaServer, 1),
        ));
    }
    table.push_str(&format!(
        "\nBatched decode: text received while every request of the burst was generating (from the last first token to the first last token), per second. All tokens / wall time includes the prompts. First-token percentiles are over every request of the cell (p99 is the slowest where a cell has fewer than 100). llama.cpp's server was ready {:.1} s after it was started.\n",
        report.llama_server_load_seconds
    ));
    table
}
