//! `gondola-bench prompt-cache MODEL.gguf`: the fifth turn of a conversation whose history is
//! about 1,500 tokens (a long system prompt and four earlier exchanges), on the embedded engine
//! with the same settings, in interleaved rounds: the time to its first token when the
//! conversation's earlier turns are in the prompt cache (its namespace) and when they are not
//! (no namespace). Also the tokens each computed, and the time to restore the prefix from host
//! memory when another conversation has taken its sequence. The same two turns also run, in the
//! same rounds, on an engine whose KV cache is f16 instead of the default q8_0. Results go to
//! `bench/results/prompt-cache.{md,json}`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use engine::{ChatMessage, Engine, EngineConfig, Event, GenerationRequest};

use crate::greedy_request;
use serde::Serialize;

const ROUNDS: usize = 5;
const NAMESPACE: [u8; 32] = [1; 32];

#[derive(Serialize, Clone, Copy)]
struct Run {
    first_token_ms: f64,
    prompt_tokens: u32,
    cached_tokens: u32,
}

#[derive(Serialize)]
struct Report {
    model: String,
    prompt_threads: u32,
    decode_threads: u32,
    rounds: usize,
    uncached: Vec<Run>,
    cached: Vec<Run>,
    restored: Vec<Run>,
    /// The same turns with an f16 KV cache.
    f16_uncached: Vec<Run>,
    f16_cached: Vec<Run>,
    median_uncached_ms: f64,
    median_cached_ms: f64,
    median_restored_ms: f64,
    speedup: f64,
    speedup_restored: f64,
}

/// Runs `request`: its reply, the time to its first text, and its completion.
async fn run(engine: &Engine, request: GenerationRequest) -> anyhow::Result<(String, Run)> {
    let started = Instant::now();
    let mut events = engine.submit(request)?;
    let mut text = String::new();
    let mut first = None;
    while let Some(event) = events.recv().await {
        match event {
            Event::Text(piece) => {
                first.get_or_insert_with(|| started.elapsed());
                text.push_str(&piece);
            }
            Event::Logprob(_) => {}
            Event::Done(done) => {
                return Ok((
                    text,
                    Run {
                        first_token_ms: first.unwrap_or_else(|| started.elapsed()).as_secs_f64()
                            * 1e3,
                        prompt_tokens: done.prompt_tokens,
                        cached_tokens: done.cached_tokens,
                    },
                ));
            }
            Event::Failed(reason) => bail!("generation failed: {reason}"),
        }
    }
    bail!("the engine stopped")
}

fn median(runs: &[Run]) -> f64 {
    let mut values: Vec<f64> = runs.iter().map(|run| run.first_token_ms).collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub async fn run_bench() -> anyhow::Result<()> {
    let model = PathBuf::from(
        std::env::args()
            .nth(2)
            .context("usage: gondola-bench prompt-cache MODEL.gguf")?,
    );
    let config = EngineConfig::new(model.clone());
    let (prompt_threads, decode_threads) =
        (config.prompt_threads.get(), config.decode_threads.get());
    let mut f16 = config.clone();
    f16.kv_format = engine::KvFormat::F16;
    let engine = Engine::load(config)?;
    let f16 = Engine::load(f16)?;
    // A harbour office's long instructions, then four exchanges.
    let system =
        "You work at the harbour office. Ships arrive and leave every hour; keep track of \
        their names, their berths, their cargo and the weather they report, and answer the \
        captains' questions briefly and correctly. "
            .repeat(30);
    let mut history = vec![ChatMessage::text("system", &system)];
    for turn in 1..=4 {
        history.push(ChatMessage::text(
            "user",
            format!("Turn {turn}: the ship at berth {turn} reports calm seas and carries timber. Note it, please."),
        ));
        let (reply, _) = run(
            &engine,
            greedy_request(history.clone(), 48, Some(NAMESPACE)),
        )
        .await?;
        history.push(ChatMessage::text("assistant", &reply));
    }
    // Each round asks a question of its own: the history is what the cache can hold, the
    // question is computed.
    let questions = [
        "Which berths have timber?",
        "What is the weather at berth two?",
        "How many ships reported calm seas?",
        "Is berth four free tomorrow morning?",
        "Who carries the heaviest cargo?",
        "When does the next ship leave?",
    ];
    let fifth = |question: &str| {
        let mut messages = history.clone();
        messages.push(ChatMessage::text("user", question));
        messages
    };
    let other = vec![ChatMessage::text(
        "user",
        "Describe a lighthouse keeper's day in detail. ".repeat(40),
    )];
    // What the cache holds is the fourth turn, as the conversation left it.
    run(&f16, greedy_request(history.clone(), 1, Some(NAMESPACE))).await?;
    let (mut uncached, mut cached, mut restored) = (Vec::new(), Vec::new(), Vec::new());
    let (mut f16_uncached, mut f16_cached) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}", round + 1);
        let question = questions[round % questions.len()];
        uncached.push(
            run(&engine, greedy_request(fifth(question), 1, None))
                .await?
                .1,
        );
        f16_uncached.push(run(&f16, greedy_request(fifth(question), 1, None)).await?.1);
        cached.push(
            run(&engine, greedy_request(fifth(question), 1, Some(NAMESPACE)))
                .await?
                .1,
        );
        f16_cached.push(
            run(&f16, greedy_request(fifth(question), 1, Some(NAMESPACE)))
                .await?
                .1,
        );
    }
    drop(f16);
    // With one sequence, another conversation takes it between turns: the prefix comes back
    // from host memory.
    let mut single = EngineConfig::new(model.clone());
    single.max_sequences = 1;
    let single = Engine::load(single)?;
    run(&single, greedy_request(history.clone(), 1, Some(NAMESPACE))).await?;
    for round in 0..ROUNDS {
        run(&single, greedy_request(other.clone(), 1, Some([2; 32]))).await?;
        let question = questions[(round + 1) % questions.len()];
        restored.push(
            run(&single, greedy_request(fifth(question), 1, Some(NAMESPACE)))
                .await?
                .1,
        );
    }
    let report = Report {
        model: model
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        prompt_threads,
        decode_threads,
        rounds: ROUNDS,
        median_uncached_ms: median(&uncached),
        median_cached_ms: median(&cached),
        median_restored_ms: median(&restored),
        speedup: median(&uncached) / median(&cached),
        speedup_restored: median(&uncached) / median(&restored),
        uncached,
        cached,
        restored,
        f16_uncached,
        f16_cached,
    };
    let results = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(
        results.join("prompt-cache.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let table = format!(
        "# Prompt cache: the fifth turn of a conversation\n\n\
         {} · {} prompt / {} decode thread(s) · a {}-token prompt (system prompt and four \
         exchanges, then the question) · medians of {} interleaved rounds\n\n\
         | fifth turn | prompt tokens computed | first token |\n|---|---|---|\n\
         | no cache | {} | {:.0} ms |\n\
         | earlier turns in its sequence | {} | {:.0} ms |\n\
         | earlier turns restored from host memory (one sequence, another conversation between) | {} | {:.0} ms |\n\
         | no cache, f16 KV cache | {} | {:.0} ms |\n\
         | earlier turns in its sequence, f16 KV cache | {} | {:.0} ms |\n\n\
         The cached turn's first token comes {:.1}× sooner; restored from host memory, {:.1}× sooner. \
         KV cache q8_0 (the default) unless the row says f16.\n",
        report.model,
        report.prompt_threads,
        report.decode_threads,
        report.cached[0].prompt_tokens,
        report.rounds,
        report.uncached[0].prompt_tokens - report.uncached[0].cached_tokens,
        report.median_uncached_ms,
        report.cached[0].prompt_tokens - report.cached[0].cached_tokens,
        report.median_cached_ms,
        report.restored[0].prompt_tokens - report.restored[0].cached_tokens,
        report.median_restored_ms,
        report.f16_uncached[0].prompt_tokens - report.f16_uncached[0].cached_tokens,
        median(&report.f16_uncached),
        report.f16_cached[0].prompt_tokens - report.f16_cached[0].cached_tokens,
        median(&report.f16_cached),
        report.speedup,
        report.speedup_restored,
    );
    std::fs::write(results.join("prompt-cache.md"), &table)?;
    println!("{table}");
    Ok(())
}
