//! `gondola-bench embeddings MODEL.gguf [--venv DIR] [--gondola BIN]`: Gondola's embedding
//! engine beside llama.cpp's own server (the `xllamacpp` wheel, called in process by
//! `peers/llama_cpp_embed.py`, no HTTP on either side), on the same GGUF with the same
//! threads, in interleaved rounds: embeddings per second one text per request and 32 texts per
//! request, and resident memory. Then the whole product: `gondola serve` started cold (all
//! four embedded models: chat, embeddings, voice, Whisper), its time to ready, its first and
//! its warm embedding request over HTTP through gateway and provider, the first request of
//! each other kind, and its memory once every model has served. Results go to
//! `bench/results/embeddings.{md,json}`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;

/// Rounds of each measure, interleaved between the two sides.
const ROUNDS: usize = 5;
/// Texts embedded one per request, per round.
const SINGLES: usize = 64;
/// Texts per request in the batched measure, and requests per round.
const BATCH: usize = 32;
const BATCHES: usize = 8;

#[derive(Serialize, Clone, Copy)]
struct Rates {
    single_per_second: f64,
    batch_per_second: f64,
}

#[derive(Serialize)]
struct Side {
    name: &'static str,
    load_seconds: f64,
    rounds: Vec<Rates>,
    median: Rates,
    rss_mib: f64,
}

#[derive(Serialize)]
struct Product {
    ready_seconds: f64,
    first_request_ms: f64,
    warm_request_ms: f64,
    /// The first request of each other kind after start: a chat of 16 tokens, a sentence
    /// spoken as WAV, and that WAV transcribed.
    first_chat_ms: f64,
    first_speech_ms: f64,
    first_transcription_ms: f64,
    rss_mib: f64,
}

#[derive(Serialize)]
struct Report {
    model: String,
    threads: u32,
    rounds: usize,
    gondola: Side,
    llama_cpp: Side,
    ratio_single: f64,
    ratio_batch: f64,
    serve: Option<Product>,
}

/// Sentences of a dozen tokens or so, all different.
fn texts(count: usize) -> Vec<String> {
    const SUBJECTS: [&str; 8] = [
        "the baker",
        "a river",
        "our neighbour",
        "the old train",
        "a small bird",
        "the council",
        "my sister",
        "the market",
    ];
    const VERBS: [&str; 8] = [
        "waited near",
        "sang about",
        "moved past",
        "looked at",
        "wrote to",
        "ran beside",
        "dreamed of",
        "forgot",
    ];
    const PLACES: [&str; 8] = [
        "the harbour at dawn",
        "a quiet library",
        "the busy station",
        "the mountain pass",
        "a crowded stadium",
        "the kitchen window",
        "an empty field",
        "the city hall",
    ];
    (0..count)
        .map(|index| {
            format!(
                "Note {index}: {} {} {}.",
                SUBJECTS[index % 8],
                VERBS[(index / 8) % 8],
                PLACES[(index / 64) % 8]
            )
        })
        .collect()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn median_rates(rounds: &[Rates]) -> Rates {
    let mut single: Vec<f64> = rounds.iter().map(|rates| rates.single_per_second).collect();
    let mut batch: Vec<f64> = rounds.iter().map(|rates| rates.batch_per_second).collect();
    Rates {
        single_per_second: median(&mut single),
        batch_per_second: median(&mut batch),
    }
}

/// llama.cpp's server in a Python process, embedding each list of texts it is sent.
struct LlamaEmbed {
    child: std::process::Child,
    lines: BufReader<std::process::ChildStdout>,
    load_seconds: f64,
}

impl LlamaEmbed {
    fn start(
        python: &std::path::Path,
        model: &std::path::Path,
        threads: u32,
    ) -> anyhow::Result<Self> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/llama_cpp_embed.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(model)
            .arg(threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", python.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut ready = String::new();
        lines.read_line(&mut ready)?;
        let ready: serde_json::Value =
            serde_json::from_str(&ready).context("llama.cpp's server did not start")?;
        Ok(Self {
            load_seconds: ready["load_seconds"].as_f64().unwrap_or(0.0),
            child,
            lines,
        })
    }

    /// Seconds to embed `texts` in one request.
    fn embed(&mut self, texts: &[String]) -> anyhow::Result<f64> {
        let stdin = self.child.stdin.as_mut().context("no stdin")?;
        serde_json::to_writer(&mut *stdin, texts)?;
        stdin.write_all(b"\n")?;
        stdin.flush()?;
        let mut line = String::new();
        self.lines.read_line(&mut line)?;
        let value: serde_json::Value =
            serde_json::from_str(&line).context("llama.cpp's server failed")?;
        if value["count"].as_u64() != Some(texts.len() as u64) {
            bail!("llama.cpp's server answered {value}");
        }
        Ok(value["seconds"].as_f64().unwrap_or(0.0))
    }
}

impl Drop for LlamaEmbed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn gondola_seconds(embedder: &engine::Embedder, texts: &[String]) -> anyhow::Result<f64> {
    let inputs: Vec<engine::EmbedInput> = texts
        .iter()
        .map(|text| engine::EmbedInput::Text(text.clone()))
        .collect();
    let started = Instant::now();
    let out = embedder.embed(&inputs).await?;
    let seconds = started.elapsed().as_secs_f64();
    if out.vectors.len() != texts.len() {
        bail!("{} vectors for {} texts", out.vectors.len(), texts.len());
    }
    Ok(seconds)
}

/// `gondola serve` from cold: time to ready, first and warm embedding requests, memory.
async fn product(binary: &str) -> anyhow::Result<Product> {
    let data = tempfile::tempdir()?;
    let started = Instant::now();
    let mut args = vec![
        "serve".to_owned(),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--data-dir".to_owned(),
        data.path().display().to_string(),
    ];
    if let Some(cache) = crate::flag("--cache-dir") {
        args.extend(["--cache-dir".to_owned(), cache]);
    }
    let mut child = Command::new(binary)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {binary}"))?;
    let lines = BufReader::new(child.stdout.take().context("no stdout")?);
    let mut url = None;
    for line in lines.lines() {
        let line = line?;
        if line.contains("gateway listening on") {
            url = line.split_whitespace().last().map(str::to_owned);
        }
        if line.contains("ready:") {
            break;
        }
    }
    let ready_seconds = started.elapsed().as_secs_f64();
    let url = url.context("gondola serve printed no address")?;
    let http = reqwest::Client::new();
    let request = |text: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let begin = Instant::now();
            let response = http
                .post(format!("{url}/v1/embeddings"))
                .json(&serde_json::json!({"model": "text-embedding-3-small", "input": text}))
                .send()
                .await?;
            if !response.status().is_success() {
                bail!("gondola serve answered {}", response.status());
            }
            response.bytes().await?;
            Ok::<f64, anyhow::Error>(begin.elapsed().as_secs_f64() * 1e3)
        }
    };
    let first_request_ms = request("The first request after start.".into()).await?;
    let mut warm = Vec::new();
    for index in 0..20 {
        warm.push(request(format!("A warm request, number {index}.")).await?);
    }
    let checked = |response: reqwest::Response| {
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(anyhow::anyhow!(
                "gondola serve answered {}",
                response.status()
            ))
        }
    };
    let begin = Instant::now();
    checked(
        http.post(format!("{url}/v1/chat/completions"))
            .json(&serde_json::json!({
                "model": "default",
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 16,
            }))
            .send()
            .await?,
    )?
    .bytes()
    .await?;
    let first_chat_ms = begin.elapsed().as_secs_f64() * 1e3;
    let begin = Instant::now();
    let wav = checked(
        http.post(format!("{url}/v1/audio/speech"))
            .json(&serde_json::json!({
                "input": "The first sentence spoken after start.",
                "response_format": "wav",
            }))
            .send()
            .await?,
    )?
    .bytes()
    .await?;
    let first_speech_ms = begin.elapsed().as_secs_f64() * 1e3;
    let begin = Instant::now();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(wav.to_vec()).file_name("speech.wav"),
    );
    checked(
        http.post(format!("{url}/v1/audio/transcriptions"))
            .multipart(form)
            .send()
            .await?,
    )?
    .bytes()
    .await?;
    let first_transcription_ms = begin.elapsed().as_secs_f64() * 1e3;
    let rss_mib = crate::peers::rss_kib(child.id()) as f64 / 1024.0;
    let _ = child.kill();
    let _ = child.wait();
    Ok(Product {
        ready_seconds,
        first_request_ms,
        warm_request_ms: median(&mut warm),
        first_chat_ms,
        first_speech_ms,
        first_transcription_ms,
        rss_mib,
    })
}

pub async fn run() -> anyhow::Result<()> {
    server::install_crypto_provider();
    let model = PathBuf::from(
        std::env::args()
            .nth(2)
            .context("usage: gondola-bench embeddings MODEL.gguf [--venv DIR] [--gondola BIN]")?,
    );
    let python = crate::peer_python("xllamacpp", "embeddings")?;
    let threads = engine::default_decode_threads().get();
    let mut config = engine::EmbedderConfig::new(model.clone());
    config.threads = engine::default_decode_threads();
    let loading = Instant::now();
    let embedder = tokio::task::spawn_blocking(move || engine::Embedder::load(config)).await??;
    let gondola_load = loading.elapsed().as_secs_f64();
    let mut llama = LlamaEmbed::start(&python, &model, threads)?;

    let pool = texts(SINGLES + BATCH * BATCHES);
    let (singles, batched) = pool.split_at(SINGLES);
    // Warm both.
    gondola_seconds(&embedder, &batched[..BATCH]).await?;
    llama.embed(&batched[..BATCH])?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}", round + 1);
        let mut measure_ours = Rates {
            single_per_second: 0.0,
            batch_per_second: 0.0,
        };
        let mut measure_theirs = measure_ours;
        let (mut our_single, mut their_single) = (0.0, 0.0);
        for text in singles {
            let one = std::slice::from_ref(text);
            our_single += gondola_seconds(&embedder, one).await?;
            their_single += llama.embed(one)?;
        }
        let (mut our_batch, mut their_batch) = (0.0, 0.0);
        for chunk in batched.chunks(BATCH) {
            our_batch += gondola_seconds(&embedder, chunk).await?;
            their_batch += llama.embed(chunk)?;
        }
        measure_ours.single_per_second = SINGLES as f64 / our_single;
        measure_ours.batch_per_second = (BATCH * BATCHES) as f64 / our_batch;
        measure_theirs.single_per_second = SINGLES as f64 / their_single;
        measure_theirs.batch_per_second = (BATCH * BATCHES) as f64 / their_batch;
        ours.push(measure_ours);
        theirs.push(measure_theirs);
    }
    let gondola = Side {
        name: "Gondola's embedding engine (llama-cpp-2)",
        load_seconds: gondola_load,
        median: median_rates(&ours),
        rounds: ours,
        rss_mib: crate::peers::rss_kib(std::process::id()) as f64 / 1024.0,
    };
    let llama_cpp = Side {
        name: "llama.cpp's server (xllamacpp, in process)",
        load_seconds: llama.load_seconds,
        median: median_rates(&theirs),
        rounds: theirs,
        rss_mib: crate::peers::rss_kib(llama.child.id()) as f64 / 1024.0,
    };
    drop(llama);
    let serve = match crate::flag("--gondola") {
        Some(binary) => Some(product(&binary).await?),
        None => None,
    };
    let report = Report {
        model: model
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        threads,
        rounds: ROUNDS,
        ratio_single: gondola.median.single_per_second / llama_cpp.median.single_per_second,
        ratio_batch: gondola.median.batch_per_second / llama_cpp.median.batch_per_second,
        gondola,
        llama_cpp,
        serve,
    };
    let results = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(
        results.join("embeddings.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let mut table = format!(
        "# Embeddings: Gondola's engine beside llama.cpp's server\n\n\
         {} · {} thread(s) · {SINGLES} texts one per request and {} in requests of {BATCH}, per round · medians of {} interleaved rounds\n\n\
         | engine | load | embeddings/s, 1 per request | embeddings/s, {BATCH} per request | RSS |\n\
         |---|---|---|---|---|\n",
        report.model,
        report.threads,
        BATCH * BATCHES,
        report.rounds
    );
    for side in [&report.gondola, &report.llama_cpp] {
        table.push_str(&format!(
            "| {} | {:.2} s | {:.0} | {:.0} | {:.0} MiB |\n",
            side.name,
            side.load_seconds,
            side.median.single_per_second,
            side.median.batch_per_second,
            side.rss_mib
        ));
    }
    table.push_str(&format!(
        "\nGondola at {:.2}× llama.cpp's server one text per request, {:.2}× in batches of {BATCH}.\n",
        report.ratio_single, report.ratio_batch
    ));
    if let Some(serve) = &report.serve {
        table.push_str(&format!(
            "\n`gondola serve` from cold (all four embedded models: chat, embeddings, voice, Whisper): ready in {:.2} s; first embedding request {:.1} ms, warm {:.1} ms (median of 20), over HTTP through gateway and provider; then the first chat of 16 tokens {:.0} ms, the first sentence spoken {:.0} ms, and it transcribed {:.0} ms; {:.0} MiB resident once every model has served.\n",
            serve.ready_seconds, serve.first_request_ms, serve.warm_request_ms, serve.first_chat_ms, serve.first_speech_ms, serve.first_transcription_ms, serve.rss_mib
        ));
    }
    std::fs::write(results.join("embeddings.md"), &table)?;
    println!("{table}");
    Ok(())
}
