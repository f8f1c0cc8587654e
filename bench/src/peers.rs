//! `gondola-bench peers`: Gondola's gateway side by side with TensorZero and LiteLLM, all in
//! front of the same instant upstream (nginx serving canned OpenAI replies), on this machine,
//! in interleaved rounds. `bench/peers/run.sh` installs the peers (pinned) and runs it.
//!
//! For each gateway, and for the upstream called directly:
//! - latency with one request in flight (p50, p99; "added" is the gateway's minus direct's),
//!   and the CPU each request costs the gateway's processes (from `/proc/PID/task/*/schedstat`,
//!   nanoseconds, so short runs measure it exactly);
//! - requests per second with 16 and 64 in flight, for a fixed time each;
//! - resident memory after the load;
//! - streaming: time to the first token and to the end of the stream, one in flight.
//!
//! Gondola runs as deployed: a gateway with an API key (authenticated, rate-limited, every
//! request logged) and a provider process fronting the upstream, so a request makes two hops;
//! its CPU is given for the gateway alone and for both processes. Results go to
//! `bench/results/peers.{md,json}`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;

/// Where the mock upstream listens (fixed by its nginx configuration).
pub(crate) const UPSTREAM: &str = "http://127.0.0.1:18080";
const ROUNDS: usize = 5;
/// Sequential requests per target per round (after a few to warm up).
const SEQUENTIAL: usize = 600;
const WARMUP: usize = 20;
/// Requests (and streams) a target gets in a row before the next target's turn.
const BLOCK: usize = 50;
const STREAM_BLOCK: usize = 20;
/// Unmeasured requests at the start of each block.
const BLOCK_WARMUP: usize = 5;
/// Streamed requests per target per round.
const STREAMED: usize = 200;
const IN_FLIGHT: [usize; 2] = [16, 64];
/// How long each target is loaded at each concurrency, per round.
const LOAD_FOR: Duration = Duration::from_secs(3);
const LOAD_ROUNDS: usize = 2;
pub(crate) const GONDOLA_KEY: &str = "sk-bench-gondola";
const LITELLM_KEY: &str = "sk-bench-master";
const PROMPT: &str = "Say hello in one short sentence. This is a benchmark request with a modest prompt size to resemble a small real chat turn.";
/// Longest a process may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A child process, killed when dropped.
pub(crate) struct Process {
    child: Child,
}

impl Process {
    pub(crate) fn start(
        name: &'static str,
        command: &mut Command,
        logs: &Path,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Self { child })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL at once (a provider dying, in the failover measurement).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, so that a process with children of its own (nginx's workers, LiteLLM's) takes
    /// them down with it; SIGKILL if it has not exited within five seconds.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// CPU time of every thread of `pid` so far, in nanoseconds.
pub(crate) fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Resident memory of `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One way to the upstream: where to send, with what, and which processes it costs.
pub(crate) struct Target {
    pub(crate) name: &'static str,
    pub(crate) url: String,
    pub(crate) authorization: Option<String>,
    pub(crate) body: Bytes,
    pub(crate) stream_body: Bytes,
    /// The gateway's own processes (CPU is counted over these)...
    pub(crate) gateway_pids: Vec<u32>,
    /// ...and every process the request passes (for Gondola: the provider too).
    pub(crate) all_pids: Vec<u32>,
}

pub(crate) fn body(model: &str, stream: bool) -> Bytes {
    let mut body = serde_json::json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": PROMPT},
        ],
        "max_tokens": 64,
    });
    if stream {
        body["stream"] = serde_json::Value::Bool(true);
    }
    Bytes::from(body.to_string())
}

pub(crate) async fn wait_until(
    http: &reqwest::Client,
    what: &str,
    check: impl AsyncFnMut(&reqwest::Client) -> bool,
) -> anyhow::Result<()> {
    let mut check = check;
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if check(http).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{what} did not come up in {START_TIMEOUT:?}")
}

/// Sends one request; returns (time to the first token for a stream, time to the end).
pub(crate) async fn once(
    http: &reqwest::Client,
    target: &Target,
    stream: bool,
) -> anyhow::Result<(Option<Duration>, Duration)> {
    let started = Instant::now();
    let mut request = http
        .post(&target.url)
        .header("content-type", "application/json")
        .body(if stream {
            target.stream_body.clone()
        } else {
            target.body.clone()
        });
    if let Some(authorization) = &target.authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!(
            "{} answered {status}: {}",
            target.name,
            text.chars().take(300).collect::<String>()
        );
    }
    let mut first = None;
    let mut seen = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        if first.is_none() {
            seen.extend_from_slice(&chunk);
            if seen.windows(5).any(|window| window == b"Hello") {
                first = Some(started.elapsed());
            }
        }
    }
    let total = started.elapsed();
    if first.is_none() {
        bail!("{}: the reply holds no text", target.name);
    }
    Ok((stream.then_some(first).flatten(), total))
}

#[derive(Serialize, Default, Clone)]
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    added_p50_ms: f64,
    added_p99_ms: f64,
    /// The median of the rounds' own p99s: one slow spell of the machine moves one round's.
    round_p99_ms: f64,
    added_round_p99_ms: f64,
}

#[derive(Serialize, Default)]
struct Figures {
    name: &'static str,
    sequential: Latency,
    /// CPU per request of the gateway's processes (for Gondola: the gateway alone).
    cpu_ms_per_request: f64,
    /// CPU per request of every process on the way (for Gondola: gateway and provider).
    cpu_ms_per_request_all: f64,
    requests_per_second: Vec<(usize, f64)>,
    errors_under_load: u64,
    rss_mib_after_load: f64,
    first_token: Latency,
    stream_total: Latency,
}

pub(crate) fn percentile(values: &mut [f64], share: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64 - 1.0) * share).round() as usize;
    values.get(index).copied().unwrap_or(0.0)
}

/// Requests per second from `in_flight` workers sending back to back for [`LOAD_FOR`].
async fn load(http: &reqwest::Client, target: &Target, in_flight: usize) -> (u64, u64) {
    let deadline = Instant::now() + LOAD_FOR;
    let workers = (0..in_flight).map(|_| async {
        let (mut done, mut failed) = (0u64, 0u64);
        while Instant::now() < deadline {
            match once(http, target, false).await {
                Ok(_) => done += 1,
                Err(_) => failed += 1,
            }
        }
        (done, failed)
    });
    futures_util::future::join_all(workers)
        .await
        .into_iter()
        .fold((0, 0), |(done, failed), (d, f)| (done + d, failed + f))
}

/// Gondola with two providers, one of them killed: what failing over costs.
#[derive(Serialize)]
struct Failover {
    name: &'static str,
    /// With both providers alive.
    healthy_p50_ms: f64,
    healthy_p99_ms: f64,
    /// With the first killed; added over the healthy figures.
    latency: Latency,
    /// Requests the gateway logged as served on a second attempt.
    failed_over: usize,
    requests: usize,
}

/// Sequential requests through a gateway with two providers, both alive and then with the
/// first killed: the latency that adds (same stack, same phase), and how many requests failed
/// over.
async fn failover(
    http: &reqwest::Client,
    args: &Args,
    dir: &Path,
    name: &'static str,
    extra_limits: &str,
) -> anyhow::Result<Failover> {
    let (mut processes, target) =
        start_gondola_with(http, &args.gondola, dir, 2, extra_limits).await?;
    let measure = async |count: usize| -> anyhow::Result<Vec<f64>> {
        let mut latencies = Vec::with_capacity(count);
        for _ in 0..count {
            let (_, total) = once(http, &target, false).await?;
            latencies.push(total.as_secs_f64() * 1e3);
        }
        Ok(latencies)
    };
    measure(WARMUP).await?;
    let mut healthy = measure(SEQUENTIAL * 2).await?;
    processes[1].kill();
    measure(WARMUP).await?;
    let before = logged_failovers(dir);
    let mut dead = measure(SEQUENTIAL * 2).await?;
    let (healthy_p50, healthy_p99) = (
        percentile(&mut healthy, 0.5),
        percentile(&mut healthy, 0.99),
    );
    let (p50, p99) = (percentile(&mut dead, 0.5), percentile(&mut dead, 0.99));
    Ok(Failover {
        name,
        healthy_p50_ms: healthy_p50,
        healthy_p99_ms: healthy_p99,
        latency: Latency {
            p50_ms: p50,
            p99_ms: p99,
            added_p50_ms: p50 - healthy_p50,
            added_p99_ms: p99 - healthy_p99,
            ..Latency::default()
        },
        failed_over: logged_failovers(dir).saturating_sub(before),
        requests: SEQUENTIAL * 2,
    })
}

/// Chat completions the gateway in `dir` logged as served on a later attempt.
fn logged_failovers(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("gondola-gateway.log"))
        .unwrap_or_default()
        .lines()
        .filter(|line| {
            line.contains("chat completion")
                && line.contains("attempts=")
                && !line.contains("attempts=1 ")
        })
        .count()
}

struct Peers {
    /// Kept alive for the whole run (dropping them stops them).
    _processes: Vec<Process>,
    targets: Vec<Target>,
    skipped: Vec<String>,
}

pub(crate) fn gondola_config(dir: &Path, extra_limits: &str) -> anyhow::Result<PathBuf> {
    let digest: String = gateway::hash_secret(GONDOLA_KEY)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let path = dir.join("gondola.toml");
    let mut file = std::fs::File::create(&path)?;
    write!(
        file,
        "[gateway]\n\
         [[gateway.keys]]\nname = \"bench\"\nkind = \"inference\"\nsha256 = \"{digest}\"\n\
         requests_per_minute = 100000000\ntokens_per_minute = 100000000000\n\n\
         [gateway.limits]\nmax_in_flight_per_provider = 512\n{extra_limits}"
    )?;
    Ok(path)
}

/// The nginx mock upstream, answering.
pub(crate) async fn start_upstream(
    http: &reqwest::Client,
    nginx: &Path,
    dir: &Path,
) -> anyhow::Result<Process> {
    let nginx_dir = dir.join("nginx");
    std::fs::create_dir_all(&nginx_dir)?;
    let conf = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/nginx-mock.conf");
    let process = Process::start(
        "nginx",
        Command::new(nginx)
            .arg("-p")
            .arg(&nginx_dir)
            .arg("-c")
            .arg(conf),
        dir,
    )?;
    wait_until(http, "the nginx mock", async |http| {
        http.get(format!("{UPSTREAM}/v1/models"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await?;
    Ok(process)
}

/// Gondola as deployed in front of the mock: a gateway with an API key and a provider fronting
/// the upstream's stream, both registered and serving.
pub(crate) async fn start_gondola(
    http: &reqwest::Client,
    gondola: &Path,
    dir: &Path,
) -> anyhow::Result<(Vec<Process>, Target)> {
    start_gondola_with(http, gondola, dir, 1, "").await
}

/// As [`start_gondola`], with `providers` providers and `extra_limits` lines in the gateway's
/// `[gateway.limits]`; the processes are the gateway, then the providers.
async fn start_gondola_with(
    http: &reqwest::Client,
    gondola: &Path,
    dir: &Path,
    providers: usize,
    extra_limits: &str,
) -> anyhow::Result<(Vec<Process>, Target)> {
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    let gateway_url = format!("http://127.0.0.1:{port}");
    let config = gondola_config(dir, extra_limits)?;
    let gateway = Process::start(
        "gondola-gateway",
        Command::new(gondola)
            .args([
                "gateway",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir.join("gateway"))
            .arg("--config")
            .arg(&config),
        dir,
    )?;
    let mut processes = vec![gateway];
    for index in 0..providers {
        processes.push(Process::start(
            if index == 0 {
                "gondola-provider"
            } else {
                "gondola-provider-2"
            },
            Command::new(gondola)
                .args([
                    "provider",
                    "--gateway",
                    &gateway_url,
                    "--upstream",
                    &format!("{UPSTREAM}/stream/v1"),
                    "--model",
                    "mock-gpt",
                    "--max-in-flight",
                    "512",
                    "--data-dir",
                ])
                .arg(dir.join(format!("provider-{index}"))),
            dir,
        )?);
    }
    let models = format!("{gateway_url}/v1/models");
    let serving = format!("\"providers\":{providers}");
    wait_until(
        http,
        "Gondola's gateway and providers",
        async |http| match http.get(&models).bearer_auth(GONDOLA_KEY).send().await {
            Ok(response) => response.text().await.is_ok_and(|text| {
                text.contains("mock-gpt") && text.replace(' ', "").contains(&serving)
            }),
            Err(_) => false,
        },
    )
    .await?;
    let pids: Vec<u32> = processes.iter().map(Process::pid).collect();
    let target = Target {
        name: "Gondola (gateway + provider)",
        url: format!("{gateway_url}/v1/chat/completions"),
        authorization: Some(format!("Bearer {GONDOLA_KEY}")),
        body: body("mock-gpt", false),
        stream_body: body("mock-gpt", true),
        gateway_pids: vec![pids[0]],
        all_pids: pids,
    };
    Ok((processes, target))
}

async fn start(http: &reqwest::Client, args: &Args, dir: &Path) -> anyhow::Result<Peers> {
    let mut processes = vec![start_upstream(http, &args.nginx, dir).await?];
    let mut targets = vec![Target {
        name: "direct to the upstream",
        url: format!("{UPSTREAM}/v1/chat/completions"),
        authorization: None,
        body: body("mock-gpt", false),
        stream_body: body("mock-gpt", true),
        gateway_pids: Vec::new(),
        all_pids: Vec::new(),
    }];
    let mut skipped = Vec::new();
    let (gondola, target) = start_gondola(http, &args.gondola, dir).await?;
    processes.extend(gondola);
    targets.push(target);

    let python = args.venv.join("bin").join("python");
    if python.is_file() {
        let tensorzero = Process::start(
            "tensorzero",
            Command::new(&python)
                .arg(args.peers.join("run_tensorzero.py"))
                .arg(args.peers.join("tensorzero.toml")),
            dir,
        )?;
        let log = dir.join("tensorzero.log");
        let started = Instant::now();
        let base = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = text.lines().find(|line| line.starts_with("BASE_URL ")) {
                break line
                    .trim_start_matches("BASE_URL ")
                    .trim()
                    .trim_end_matches('/')
                    .to_owned();
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("TensorZero did not print its address:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        targets.push(Target {
            name: "TensorZero",
            // Its address already names the OpenAI-compatible API (`…/openai/v1`).
            url: if base.ends_with("/openai/v1") {
                format!("{base}/chat/completions")
            } else {
                format!("{base}/openai/v1/chat/completions")
            },
            authorization: None,
            body: body("tensorzero::model_name::mock-gpt", false),
            stream_body: body("tensorzero::model_name::mock-gpt-stream", true),
            gateway_pids: vec![tensorzero.pid()],
            all_pids: vec![tensorzero.pid()],
        });
        processes.push(tensorzero);

        let port = free_port()?;
        let litellm = Process::start(
            "litellm",
            Command::new(args.venv.join("bin").join("litellm"))
                .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
                .env("LITELLM_TELEMETRY", "False")
                .arg("--config")
                .arg(args.peers.join("litellm.yaml"))
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--num_workers",
                    "1",
                ]),
            dir,
        )?;
        let base = format!("http://127.0.0.1:{port}");
        let health = format!("{base}/health/liveliness");
        wait_until(http, "LiteLLM", async |http| {
            http.get(&health)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await?;
        targets.push(Target {
            name: "LiteLLM",
            url: format!("{base}/v1/chat/completions"),
            authorization: Some(format!("Bearer {LITELLM_KEY}")),
            body: body("mock-gpt", false),
            stream_body: body("mock-gpt-stream", true),
            gateway_pids: vec![litellm.pid()],
            all_pids: vec![litellm.pid()],
        });
        processes.push(litellm);
    } else {
        skipped.push(format!(
            "TensorZero and LiteLLM: no venv at {} (bench/peers/run.sh makes it)",
            args.venv.display()
        ));
    }
    Ok(Peers {
        _processes: processes,
        targets,
        skipped,
    })
}

struct Args {
    gondola: PathBuf,
    nginx: PathBuf,
    venv: PathBuf,
    peers: PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut parsed = Args {
        gondola: root.join("../target/release/gondola"),
        nginx: PathBuf::from("/usr/sbin/nginx"),
        venv: root.join("../target/bench-peers/venv"),
        peers: root.join("peers"),
    };
    let mut rest = std::env::args().skip(2);
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--gondola" => parsed.gondola = value.into(),
            "--nginx" => parsed.nginx = value.into(),
            "--venv" => parsed.venv = value.into(),
            other => bail!("unknown flag {other} (try --gondola, --nginx, --venv)"),
        }
    }
    binaries_present(&parsed.gondola, &parsed.nginx)?;
    Ok(parsed)
}

/// That the gondola binary and nginx are where the flags say.
pub(crate) fn binaries_present(gondola: &Path, nginx: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        gondola.is_file(),
        "no gondola binary at {} (cargo build --release -p gondola)",
        gondola.display()
    );
    anyhow::ensure!(
        nginx.is_file(),
        "no nginx at {} (apt-get install nginx-light)",
        nginx.display()
    );
    Ok(())
}

pub async fn run() -> anyhow::Result<()> {
    let args = args()?;
    server::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    let peers = start(&http, &args, dir.path()).await?;
    let targets = &peers.targets;
    let mut figures: Vec<Figures> = targets
        .iter()
        .map(|target| Figures {
            name: target.name,
            ..Figures::default()
        })
        .collect();

    // Latency and CPU, one in flight, interleaved.
    let mut sequential: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let mut cpu = vec![(0u64, 0u64); targets.len()];
    let mut first_tokens: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let mut stream_totals: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for round in 0..ROUNDS {
        eprintln!("latency round {}/{ROUNDS}", round + 1);
        // Short blocks in turn, so that a slow spell of the machine (tens of ms when the
        // scheduler packs everything on one core) falls on every target alike; each block
        // starts with a few unmeasured requests, so that what the previous target left running
        // (LiteLLM's callbacks, say) does not land on this one's figures.
        for _ in 0..SEQUENTIAL / BLOCK {
            for (index, target) in targets.iter().enumerate() {
                for _ in 0..BLOCK_WARMUP {
                    once(&http, target, false).await?;
                }
                let before: Vec<u64> = target.all_pids.iter().map(|&pid| cpu_ns(pid)).collect();
                for _ in 0..BLOCK {
                    let (_, total) = once(&http, target, false).await?;
                    sequential[index].push(total.as_secs_f64() * 1e3);
                }
                for (position, pid) in target.all_pids.iter().enumerate() {
                    let used = cpu_ns(*pid).saturating_sub(before[position]);
                    cpu[index].1 += used;
                    if target.gateway_pids.contains(pid) {
                        cpu[index].0 += used;
                    }
                }
            }
        }
        for _ in 0..STREAMED / STREAM_BLOCK {
            for (index, target) in targets.iter().enumerate() {
                for _ in 0..BLOCK_WARMUP {
                    once(&http, target, true).await?;
                }
                for _ in 0..STREAM_BLOCK {
                    let (first, total) = once(&http, target, true).await?;
                    first_tokens[index].push(first.unwrap_or_default().as_secs_f64() * 1e3);
                    stream_totals[index].push(total.as_secs_f64() * 1e3);
                }
            }
        }
    }
    let requests = (ROUNDS * SEQUENTIAL) as f64;
    let latency = |values: &[f64], base: &Latency| {
        // Each round's values are contiguous, the same count per round (so work on a copy:
        // sorting the values would mix the rounds).
        let mut values = values.to_vec();
        let values = &mut values;
        let per_round = values.len() / ROUNDS;
        let mut round_p99s: Vec<f64> = values
            .chunks_mut(per_round.max(1))
            .map(|round| percentile(round, 0.99))
            .collect();
        let round_p99 = percentile(&mut round_p99s, 0.5);
        let p50 = percentile(values, 0.5);
        let p99 = percentile(values, 0.99);
        Latency {
            p50_ms: p50,
            p99_ms: p99,
            added_p50_ms: p50 - base.p50_ms,
            added_p99_ms: p99 - base.p99_ms,
            round_p99_ms: round_p99,
            added_round_p99_ms: round_p99 - base.round_p99_ms,
        }
    };
    let zero = Latency::default();
    let direct = latency(&sequential[0], &zero);
    let direct_first = latency(&first_tokens[0], &zero);
    let direct_stream = latency(&stream_totals[0], &zero);
    for (index, figure) in figures.iter_mut().enumerate() {
        figure.sequential = latency(&sequential[index], &direct);
        figure.first_token = latency(&first_tokens[index], &direct_first);
        figure.stream_total = latency(&stream_totals[index], &direct_stream);
        figure.cpu_ms_per_request = cpu[index].0 as f64 / 1e6 / requests;
        figure.cpu_ms_per_request_all = cpu[index].1 as f64 / 1e6 / requests;
    }

    // Throughput, interleaved.
    let mut rates = vec![vec![0.0f64; IN_FLIGHT.len()]; targets.len()];
    for round in 0..LOAD_ROUNDS {
        eprintln!("load round {}/{LOAD_ROUNDS}", round + 1);
        for (column, &in_flight) in IN_FLIGHT.iter().enumerate() {
            for (index, target) in targets.iter().enumerate() {
                let (done, failed) = load(&http, target, in_flight).await;
                rates[index][column] += done as f64 / LOAD_FOR.as_secs_f64() / LOAD_ROUNDS as f64;
                figures[index].errors_under_load += failed;
            }
        }
    }
    for (index, figure) in figures.iter_mut().enumerate() {
        figure.requests_per_second = IN_FLIGHT
            .iter()
            .copied()
            .zip(rates[index].iter().copied())
            .collect();
        figure.rss_mib_after_load = targets[index]
            .all_pids
            .iter()
            .map(|&pid| rss_kib(pid))
            .sum::<u64>() as f64
            / 1024.0;
    }

    // Failover: Gondola alone (the peers' set-ups have no second provider).
    eprintln!("failover");
    let failovers = vec![
        failover(
            &http,
            &args,
            &dir.path().join("failover-breaker"),
            "breaker on (default: opens after 3 failures)",
            "",
        )
        .await?,
        failover(
            &http,
            &args,
            &dir.path().join("failover-no-breaker"),
            "breaker off (every request may try the dead provider)",
            "breaker_failure_threshold = 1000000\n",
        )
        .await?,
    ];

    let results = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(
        results.join("peers.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "rounds": ROUNDS,
            "sequential_per_round": SEQUENTIAL,
            "streamed_per_round": STREAMED,
            "load_seconds": LOAD_FOR.as_secs(),
            "load_rounds": LOAD_ROUNDS,
            "skipped": peers.skipped,
            "figures": figures,
            "failover": failovers,
        }))?,
    )?;
    let mut table = format!(
        "# Gateway overhead, side by side\n\n\
         Every gateway in front of the same instant upstream (nginx, canned replies) on this machine; \
         one in flight: {ROUNDS} rounds of {SEQUENTIAL} requests and {STREAMED} streams per gateway, interleaved in blocks of {BLOCK} (and {STREAM_BLOCK}) after {BLOCK_WARMUP} unmeasured; \
         load: {LOAD_ROUNDS} rounds of {} s per concurrency. Added = the gateway's figure minus the upstream's, direct.\n\n\
         p99 is over all requests; \"p99 of a round\" is the median of the {ROUNDS} rounds' own p99s.\n\n\
         | gateway | p50 (added) | p99 (added) | p99 of a round (added) | CPU ms per request | req/s at 16 | req/s at 64 | RSS after load |\n\
         |---|---|---|---|---|---|---|---|\n",
        LOAD_FOR.as_secs()
    );
    for figure in &figures {
        let cpu = if figure.cpu_ms_per_request_all > figure.cpu_ms_per_request + 1e-9 {
            format!(
                "{:.3} (gateway) / {:.3} (with provider)",
                figure.cpu_ms_per_request, figure.cpu_ms_per_request_all
            )
        } else {
            format!("{:.3}", figure.cpu_ms_per_request)
        };
        let rate = |column: usize| {
            figure
                .requests_per_second
                .get(column)
                .map_or(0.0, |(_, rate)| *rate)
        };
        table.push_str(&format!(
            "| {} | {:.3} ms ({:+.3}) | {:.3} ms ({:+.3}) | {:.3} ms ({:+.3}) | {} | {:.0} | {:.0} | {:.0} MiB |\n",
            figure.name,
            figure.sequential.p50_ms,
            figure.sequential.added_p50_ms,
            figure.sequential.p99_ms,
            figure.sequential.added_p99_ms,
            figure.sequential.round_p99_ms,
            figure.sequential.added_round_p99_ms,
            cpu,
            rate(0),
            rate(1),
            figure.rss_mib_after_load,
        ));
    }
    table.push_str("\nStreaming (16 events), one in flight:\n\n| gateway | first token p50 (added) | whole stream p50 (added) | whole stream p99 (added) | whole stream p99 of a round (added) |\n|---|---|---|---|---|\n");
    for figure in &figures {
        table.push_str(&format!(
            "| {} | {:.3} ms ({:+.3}) | {:.3} ms ({:+.3}) | {:.3} ms ({:+.3}) | {:.3} ms ({:+.3}) |\n",
            figure.name,
            figure.first_token.p50_ms,
            figure.first_token.added_p50_ms,
            figure.stream_total.p50_ms,
            figure.stream_total.added_p50_ms,
            figure.stream_total.p99_ms,
            figure.stream_total.added_p99_ms,
            figure.stream_total.round_p99_ms,
            figure.stream_total.added_round_p99_ms,
        ));
    }
    table.push_str(&format!(
        "\nFailover, Gondola with two providers: {} sequential requests with both alive, then as many with the first killed \
         (same stack; added = dead minus alive):\n\n\
         | breaker | both alive p50 / p99 | first killed p50 (added) | p99 (added) | requests that failed over |\n|---|---|---|---|---|\n",
        SEQUENTIAL * 2
    ));
    for failover in &failovers {
        table.push_str(&format!(
            "| {} | {:.3} / {:.3} ms | {:.3} ms ({:+.3}) | {:.3} ms ({:+.3}) | {} of {} |\n",
            failover.name,
            failover.healthy_p50_ms,
            failover.healthy_p99_ms,
            failover.latency.p50_ms,
            failover.latency.added_p50_ms,
            failover.latency.p99_ms,
            failover.latency.added_p99_ms,
            failover.failed_over,
            failover.requests
        ));
    }
    let errors: u64 = figures.iter().map(|figure| figure.errors_under_load).sum();
    if errors > 0 {
        table.push_str("\nFailed requests under load: ");
        for figure in &figures {
            table.push_str(&format!("{} {}; ", figure.name, figure.errors_under_load));
        }
        table.push('\n');
    }
    for skipped in &peers.skipped {
        table.push_str(&format!("\nNot measured: {skipped}.\n"));
    }
    std::fs::write(results.join("peers.md"), &table)?;
    println!("{table}");
    Ok(())
}
