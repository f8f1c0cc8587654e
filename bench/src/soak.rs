//! `gondola-bench soak`: Gondola as deployed (gateway with an API key, provider in front of the
//! nginx mock upstream) under a fixed rate of streamed requests for a fixed time, sampled every
//! [`WINDOW`]: requests done, errors, latency (p50, p99) of the window's streams, and each
//! process's resident memory, file descriptors and threads. Memory that grows with time, or
//! descriptors that do, show here.
//!
//! `--minutes` (default 10) and `--rate` (requests per second, default 50) set the load;
//! requests beyond [`MAX_IN_FLIGHT`] at once are counted as not sent rather than queued without
//! bound. Results go to `bench/results/soak.{md,json}`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::peers::{Target, once, percentile, rss_kib, start_gondola, start_upstream};

const WINDOW: Duration = Duration::from_secs(10);
const MAX_IN_FLIGHT: usize = 256;

#[derive(Serialize, Default, Clone)]
struct Sample {
    at_seconds: u64,
    done: u64,
    errors: u64,
    not_sent: u64,
    p50_ms: f64,
    p99_ms: f64,
    gateway_rss_mib: f64,
    gateway_fds: usize,
    gateway_threads: usize,
    provider_rss_mib: f64,
    provider_fds: usize,
    provider_threads: usize,
}

fn count(path: String) -> usize {
    std::fs::read_dir(path).map_or(0, |entries| entries.count())
}

struct Args {
    minutes: f64,
    rate: f64,
    gondola: PathBuf,
    nginx: PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut parsed = Args {
        minutes: 10.0,
        rate: 50.0,
        gondola: root.join("../target/release/gondola"),
        nginx: PathBuf::from("/usr/sbin/nginx"),
    };
    let mut rest = std::env::args().skip(2);
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--minutes" => parsed.minutes = value.parse().context("--minutes: a number")?,
            "--rate" => parsed.rate = value.parse().context("--rate: requests per second")?,
            "--gondola" => parsed.gondola = value.into(),
            "--nginx" => parsed.nginx = value.into(),
            other => bail!("unknown flag {other} (try --minutes, --rate, --gondola, --nginx)"),
        }
    }
    anyhow::ensure!(
        parsed.minutes > 0.0 && parsed.rate > 0.0 && parsed.rate <= 10_000.0,
        "--minutes must be above 0 and --rate between 0 and 10000"
    );
    crate::peers::binaries_present(&parsed.gondola, &parsed.nginx)?;
    Ok(parsed)
}

/// Counts one finished request (its time in ms, or `None` for an error) in `window`.
fn record(result: Option<f64>, window: &mut Sample, latencies: &mut Vec<f64>) {
    match result {
        Some(ms) => {
            window.done += 1;
            latencies.push(ms);
        }
        None => window.errors += 1,
    }
}

pub async fn run() -> anyhow::Result<()> {
    let args = args()?;
    server::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .timeout(Duration::from_secs(30))
        .build()?;
    let _upstream = start_upstream(&http, &args.nginx, dir.path()).await?;
    let (processes, target) = start_gondola(&http, &args.gondola, dir.path()).await?;
    let (gateway, provider) = (processes[0].pid(), processes[1].pid());
    let target: Arc<Target> = Arc::new(target);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let (results, mut finished) = tokio::sync::mpsc::unbounded_channel::<Option<f64>>();

    let length = Duration::from_secs_f64(args.minutes * 60.0);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut samples = Vec::new();
    let mut window = Sample::default();
    let mut latencies = Vec::new();
    let mut window_started = Instant::now();
    eprintln!(
        "soak: {} requests/s for {:.1} min, sampled every {} s",
        args.rate,
        args.minutes,
        WINDOW.as_secs()
    );
    while started.elapsed() < length {
        tokio::select! {
            _ = ticker.tick() => {
                match Arc::clone(&in_flight).try_acquire_owned() {
                    Ok(permit) => {
                        let (http, target, results) = (http.clone(), Arc::clone(&target), results.clone());
                        tokio::spawn(async move {
                            let outcome = once(&http, &target, true).await;
                            let _ = results.send(outcome.ok().map(|(_, total)| total.as_secs_f64() * 1e3));
                            drop(permit);
                        });
                    }
                    Err(_) => window.not_sent += 1,
                }
            }
            Some(result) = finished.recv() => record(result, &mut window, &mut latencies),
        }
        if window_started.elapsed() >= WINDOW {
            window.at_seconds = started.elapsed().as_secs();
            window.p50_ms = percentile(&mut latencies, 0.5);
            window.p99_ms = percentile(&mut latencies, 0.99);
            window.gateway_rss_mib = rss_kib(gateway) as f64 / 1024.0;
            window.gateway_fds = count(format!("/proc/{gateway}/fd"));
            window.gateway_threads = count(format!("/proc/{gateway}/task"));
            window.provider_rss_mib = rss_kib(provider) as f64 / 1024.0;
            window.provider_fds = count(format!("/proc/{provider}/fd"));
            window.provider_threads = count(format!("/proc/{provider}/task"));
            eprintln!(
                "{:>5} s: {} done, {} errors, p99 {:.2} ms, gateway {:.1} MiB / {} fds",
                window.at_seconds,
                window.done,
                window.errors,
                window.p99_ms,
                window.gateway_rss_mib,
                window.gateway_fds
            );
            samples.push(std::mem::take(&mut window));
            latencies.clear();
            window_started = Instant::now();
        }
    }
    // Let what is in flight finish (each request is bounded by the client's timeout).
    drop(results);
    while let Some(result) = finished.recv().await {
        record(result, &mut window, &mut latencies);
    }
    anyhow::ensure!(!samples.is_empty(), "the soak was shorter than one window");

    let first = samples[0].clone();
    let last = samples[samples.len() - 1].clone();
    let errors: u64 = samples.iter().map(|sample| sample.errors).sum::<u64>() + window.errors;
    let done: u64 = samples.iter().map(|sample| sample.done).sum::<u64>() + window.done;
    let not_sent: u64 = samples.iter().map(|sample| sample.not_sent).sum::<u64>();
    let results_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&results_dir)?;
    std::fs::write(
        results_dir.join("soak.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "minutes": args.minutes,
            "rate_per_second": args.rate,
            "window_seconds": WINDOW.as_secs(),
            "done": done,
            "errors": errors,
            "not_sent": not_sent,
            "samples": samples,
        }))?,
    )?;
    let mut table = format!(
        "# Soak: Gondola (gateway + provider) at {} streamed requests/s for {:.1} min\n\n\
         {done} requests done, {errors} errors, {not_sent} not sent (more than {MAX_IN_FLIGHT} in flight). \
         Gateway memory {:.1} → {:.1} MiB, descriptors {} → {}, threads {} → {}; provider memory \
         {:.1} → {:.1} MiB, descriptors {} → {} (first window → last).\n\n\
         | at | done | errors | p50 | p99 | gateway RSS | gateway fds | provider RSS | provider fds |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        args.rate,
        args.minutes,
        first.gateway_rss_mib,
        last.gateway_rss_mib,
        first.gateway_fds,
        last.gateway_fds,
        first.gateway_threads,
        last.gateway_threads,
        first.provider_rss_mib,
        last.provider_rss_mib,
        first.provider_fds,
        last.provider_fds,
    );
    // One row a minute (every window in the JSON).
    let per_minute = (60 / WINDOW.as_secs()).max(1) as usize;
    for (index, sample) in samples.iter().enumerate() {
        if index % per_minute != per_minute - 1 && index != samples.len() - 1 {
            continue;
        }
        table.push_str(&format!(
            "| {} s | {} | {} | {:.2} ms | {:.2} ms | {:.1} MiB | {} | {:.1} MiB | {} |\n",
            sample.at_seconds,
            sample.done,
            sample.errors,
            sample.p50_ms,
            sample.p99_ms,
            sample.gateway_rss_mib,
            sample.gateway_fds,
            sample.provider_rss_mib,
            sample.provider_fds
        ));
    }
    std::fs::write(results_dir.join("soak.md"), &table)?;
    println!("{table}");
    Ok(())
}
