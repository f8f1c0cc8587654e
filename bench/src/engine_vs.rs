//! `gondola-bench engine MODEL.gguf`: Gondola's embedded engine beside llama.cpp itself
//! (llama-cpp-python, built from its sdist by `bench/peers/run.sh engine`), on the same GGUF
//! with the same thread counts, in interleaved rounds: time to the first token (and the prompt
//! rate it implies), decode tokens/s and resident memory. Also the machine's measured memory
//! read bandwidth, and the share of the weights-read bound (every weight read once per decoded
//! token) that each reaches. Results go to `bench/results/engine.{md,json}`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use crate::{PROMPT, ROUNDS, Run, TOKENS, median};

#[derive(Serialize)]
struct Side {
    name: &'static str,
    prompt_tokens: u64,
    runs: Vec<Run>,
    median: Run,
    prompt_tokens_per_second: f64,
    rss_mib: f64,
    share_of_bound: f64,
}

#[derive(Serialize)]
struct Report {
    model: String,
    model_bytes: u64,
    decode_threads: u32,
    prompt_threads: u32,
    tokens_per_run: u32,
    rounds: usize,
    read_gb_per_second: f64,
    bound_tokens_per_second: f64,
    gondola: Side,
    llama_cpp: Side,
    ratio_decode: f64,
}

/// Best of a few passes summing a 512 MiB buffer: the rate this machine streams memory at.
fn read_bandwidth() -> f64 {
    const WORDS: usize = 64 * 1024 * 1024;
    let buffer: Vec<u64> = (0..WORDS as u64).collect();
    let mut best = 0.0f64;
    for _ in 0..5 {
        let started = Instant::now();
        let sum = buffer.chunks(8).fold(0u64, |sum, chunk| {
            chunk.iter().fold(sum, |sum, &word| sum.wrapping_add(word))
        });
        let seconds = started.elapsed().as_secs_f64();
        std::hint::black_box(sum);
        best = best.max((WORDS * 8) as f64 / seconds / 1e9);
    }
    best
}

fn rss_mib(pid: u32) -> f64 {
    crate::peers::rss_kib(pid) as f64 / 1024.0
}

/// llama-cpp-python, serving one generation per line it reads.
struct LlamaCpp {
    child: std::process::Child,
    lines: BufReader<std::process::ChildStdout>,
    prompt_tokens: u64,
}

impl LlamaCpp {
    fn start(
        python: &std::path::Path,
        model: &std::path::Path,
        threads: u32,
        prompt_threads: u32,
    ) -> anyhow::Result<Self> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/llama_cpp_decode.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(model)
            .args([
                threads.to_string(),
                prompt_threads.to_string(),
                TOKENS.to_string(),
                PROMPT.to_owned(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot run {}", python.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut ready = String::new();
        lines.read_line(&mut ready)?;
        let ready: serde_json::Value =
            serde_json::from_str(&ready).context("llama-cpp-python did not start")?;
        Ok(Self {
            prompt_tokens: ready["prompt_tokens"].as_u64().unwrap_or(0),
            child,
            lines,
        })
    }

    fn once(&mut self) -> anyhow::Result<Run> {
        let stdin = self.child.stdin.as_mut().context("no stdin")?;
        stdin.write_all(b"run\n")?;
        stdin.flush()?;
        let mut line = String::new();
        self.lines.read_line(&mut line)?;
        let value: serde_json::Value =
            serde_json::from_str(&line).context("llama-cpp-python failed")?;
        Ok(Run {
            first_token_ms: value["first_token_ms"].as_f64().unwrap_or(0.0),
            decode_tokens_per_second: value["decode_tokens_per_second"].as_f64().unwrap_or(0.0),
            total_ms: value["total_ms"].as_f64().unwrap_or(0.0),
            tokens: u64::from(crate::TOKENS),
        })
    }
}

impl Drop for LlamaCpp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn run() -> anyhow::Result<()> {
    let python = crate::peer_python("llama-cpp-python", "engine")?;
    let (model, threads, engine) = crate::load_engine().await?;
    let prompt_threads = engine::EngineConfig::new(model.clone())
        .prompt_threads
        .get();
    let model_bytes = std::fs::metadata(&model)?.len();
    let mut llama = LlamaCpp::start(&python, &model, threads, prompt_threads)?;

    // Warm both (page cache, first-call set-up).
    let (_, prompt_tokens) = crate::direct_counted(&engine).await?;
    llama.once()?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}", round + 1);
        ours.push(crate::direct_counted(&engine).await?.0);
        theirs.push(llama.once()?);
    }
    let read_gb_per_second = read_bandwidth();
    let bound = read_gb_per_second * 1e9 / model_bytes as f64;
    let prompt_tokens = u64::from(prompt_tokens);
    let side = |name, prompt_tokens: u64, runs: Vec<Run>, rss_mib: f64| {
        let median = median(&runs);
        Side {
            name,
            prompt_tokens,
            prompt_tokens_per_second: prompt_tokens as f64 / (median.first_token_ms / 1e3),
            share_of_bound: median.decode_tokens_per_second / bound,
            median,
            runs,
            rss_mib,
        }
    };
    let gondola = side(
        "Gondola's engine (llama-cpp-2)",
        prompt_tokens,
        ours,
        rss_mib(std::process::id()),
    );
    let llama_cpp = side(
        "llama.cpp (llama-cpp-python)",
        llama.prompt_tokens,
        theirs,
        rss_mib(llama.child.id()),
    );
    let report = Report {
        model: model
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        model_bytes,
        decode_threads: threads,
        prompt_threads,
        tokens_per_run: TOKENS,
        rounds: ROUNDS,
        read_gb_per_second,
        bound_tokens_per_second: bound,
        ratio_decode: gondola.median.decode_tokens_per_second
            / llama_cpp.median.decode_tokens_per_second,
        gondola,
        llama_cpp,
    };
    let results = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(
        results.join("engine.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let mut table = format!(
        "# Engine: Gondola's beside llama.cpp itself\n\n\
         {} ({:.1} MB) · {} decode / {} prompt thread(s) · {} greedy tokens per run · medians of {} interleaved rounds\n\n\
         | engine | prompt tokens | time to first token | prompt tokens/s | decode tokens/s | share of the weights-read bound | RSS |\n\
         |---|---|---|---|---|---|---|\n",
        report.model,
        model_bytes as f64 / 1e6,
        report.decode_threads,
        report.prompt_threads,
        report.tokens_per_run,
        report.rounds
    );
    for side in [&report.gondola, &report.llama_cpp] {
        table.push_str(&format!(
            "| {} | {} | {:.1} ms | {:.0} | {:.1} | {:.0}% | {:.0} MiB |\n",
            side.name,
            side.prompt_tokens,
            side.median.first_token_ms,
            side.prompt_tokens_per_second,
            side.median.decode_tokens_per_second,
            side.share_of_bound * 100.0,
            side.rss_mib
        ));
    }
    table.push_str(&format!(
        "\nDecode at {:.3}× llama.cpp's rate. Memory reads at {:.1} GB/s here (best of five passes over 512 MiB), \
         so reading every weight once per token bounds decode at {:.0} tokens/s.\n",
        report.ratio_decode, report.read_gb_per_second, report.bound_tokens_per_second
    ));
    std::fs::write(results.join("engine.md"), &table)?;
    println!("{table}");
    Ok(())
}
