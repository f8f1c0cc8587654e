//! `gondola-bench cluster [--gondola BIN] [--nginx BIN]`: what sharing state in Redis costs,
//! and what replicas add, on this machine. Gondola's gateway(s) and one provider in front of the
//! nginx mock upstream (as `gondola-bench peers` runs them), in four set-ups:
//!
//! - one gateway keeping its state in the process (the default);
//! - one gateway sharing it in Redis (`[gateway.cluster]`, a `redis-server` on a Unix socket
//!   with `appendfsync always`);
//! - two and three gateways sharing Redis, the provider leased to each, the client spreading
//!   requests over them in turn (what a load balancer does);
//! - metered: an account's key paying for each request, with the ledger in the gateway's
//!   process, and with one and three gateways keeping one ledger in PostgreSQL (`postgres_url`,
//!   a server on a Unix socket) beside Redis.
//!
//! For each: latency with one request in flight (p50, p99), the gateways' CPU per request (and
//! with the provider's and Redis's), and requests per second with 64 in flight. The set-ups run
//! in turn, twice, and the better round of each is kept. Results go to
//! `bench/results/cluster.{md,json}`.

use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::peers::{
    GONDOLA_KEY, Process, Target, UPSTREAM, binaries_present, body, cpu_ns, free_port,
    gondola_config, once, percentile, start_upstream, wait_until,
};

const SEQUENTIAL: usize = 400;
const WARMUP: usize = 20;
const IN_FLIGHT: usize = 64;
const LOAD_FOR: Duration = Duration::from_secs(4);
const ROUNDS: usize = 2;

#[derive(Serialize, Clone, Default)]
struct Figures {
    setup: String,
    gateways: usize,
    shared: bool,
    metered: bool,
    p50_ms: f64,
    p99_ms: f64,
    gateway_cpu_ms_per_request: f64,
    all_cpu_ms_per_request: f64,
    requests_per_second: f64,
    errors_under_load: u64,
}

/// A `redis-server` on a Unix socket in `dir`, syncing its append-only file before answering.
fn start_redis(dir: &Path) -> anyhow::Result<(Process, PathBuf)> {
    let socket = dir.join("redis.sock");
    let process = Process::start(
        "redis",
        Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(dir)
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ]),
        dir,
    )?;
    Ok((process, socket))
}

/// Whether Redis answers PING on `socket`.
fn redis_answers(socket: &Path) -> bool {
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

/// `gateways` gateways (sharing Redis at `socket` if given) and one provider leased to each.
/// One set-up: how many gateways, whether they share Redis (and PostgreSQL, when metered),
/// and whether requests are paid by an account.
#[derive(Clone, Copy)]
struct Setup {
    gateways: usize,
    shared: bool,
    metered: bool,
}

/// The metered set-ups' ledger: a day's capacity no request runs out of, a per-minute budget
/// for account keys as the configured key's, and the mock model priced, so every request
/// reserves and settles.
const LEDGER: &str = "\n[gateway.ledger]\nnetwork_capacity_usd_per_day = \"1000000000\"\n\n\
    [gateway.rate_limits.small]\nrequests_per_minute = 100000000\n\
    tokens_per_minute = 100000000000\n\n\
    [gateway.models.pricing.mock-gpt]\ninput_usd_per_million = \"0.01\"\n\
    output_usd_per_million = \"0.01\"\n";

async fn start_setup(
    http: &reqwest::Client,
    gondola: &Path,
    dir: &Path,
    setup: Setup,
    socket: &Path,
    postgres_url: &str,
) -> anyhow::Result<(Vec<Process>, Vec<String>, Vec<u32>)> {
    std::fs::create_dir_all(dir)?;
    let gateways = setup.gateways;
    let mut extra = if setup.metered {
        LEDGER.to_owned()
    } else {
        String::new()
    };
    if setup.shared {
        // A prefix of its own: each set-up starts from an empty shared ledger and key table.
        let prefix: String = dir
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("bench")
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        extra.push_str(&format!(
            "\n[gateway.cluster]\nredis_url = \"redis+unix://{}\"\nseed = \"{}\"\nprefix = \"b{prefix}\"\n",
            socket.display(),
            dir.join("cluster.seed").display()
        ));
        if setup.metered {
            extra.push_str(&format!("postgres_url = \"{postgres_url}\"\n"));
        }
    }
    let config = gondola_config(dir, &extra)?;
    let mut processes = Vec::new();
    let mut urls = Vec::new();
    for index in 0..gateways {
        let port = free_port()?;
        urls.push(format!("http://127.0.0.1:{port}"));
        processes.push(Process::start(
            ["gateway-1", "gateway-2", "gateway-3"][index.min(2)],
            Command::new(gondola)
                .args([
                    "gateway",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--data-dir",
                ])
                .arg(dir.join(format!("gateway-{index}")))
                .arg("--config")
                .arg(&config),
            dir,
        )?);
    }
    let gateway_pids: Vec<u32> = processes.iter().map(Process::pid).collect();
    let mut provider = Command::new(gondola);
    provider.arg("provider");
    for url in &urls {
        provider.args(["--gateway", url]);
    }
    provider
        .args([
            "--upstream",
            &format!("{UPSTREAM}/stream/v1"),
            "--model",
            "mock-gpt",
            "--max-in-flight",
            "512",
            "--data-dir",
        ])
        .arg(dir.join("provider"));
    processes.push(Process::start("provider", &mut provider, dir)?);
    for url in &urls {
        let models = format!("{url}/v1/models");
        wait_until(
            http,
            "the gateways and the provider",
            async |http| match http.get(&models).bearer_auth(GONDOLA_KEY).send().await {
                Ok(response) => response
                    .text()
                    .await
                    .is_ok_and(|text| text.contains("mock-gpt")),
                Err(_) => false,
            },
        )
        .await?;
    }
    Ok((processes, urls, gateway_pids))
}

/// An account with staked VVV (the whole day's capacity is its allowance) and a key of it,
/// made with the CLI at the first gateway: the key's secret.
fn account_key(gondola: &Path, url: &str, dir: &Path) -> anyhow::Result<String> {
    let data = dir.join("gateway-0");
    let run = |args: &[&str]| -> anyhow::Result<serde_json::Value> {
        let output = Command::new(gondola)
            .args(args)
            .args(["--gateway", url, "--json", "--data-dir"])
            .arg(&data)
            .output()?;
        if !output.status.success() {
            bail!(
                "gondola {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    };
    let wallet = dir.join("user.key");
    let wallet = wallet.to_str().context("a UTF-8 path")?;
    let operator = data.join("operator.key");
    let operator = operator.to_str().context("a UTF-8 path")?;
    let address = run(&["wallet", "new", "--wallet", wallet])?["address"]
        .as_str()
        .context("an address")?
        .to_owned();
    run(&[
        "transfer", "--wallet", operator, "--to", &address, "--vvv", "1000",
    ])?;
    run(&["stake", "--wallet", wallet, "1000"])?;
    Ok(run(&["key", "--wallet", wallet])?["data"]["apiKey"]
        .as_str()
        .context("a key")?
        .to_owned())
}

fn target(url: &str, key: &str) -> Target {
    Target {
        name: "Gondola",
        url: format!("{url}/v1/chat/completions"),
        authorization: Some(format!("Bearer {key}")),
        body: body("mock-gpt", false),
        stream_body: body("mock-gpt", true),
        gateway_pids: Vec::new(),
        all_pids: Vec::new(),
    }
}

async fn measure(
    http: &reqwest::Client,
    urls: &[String],
    key: &str,
    gateway_pids: &[u32],
    all_pids: &[u32],
) -> anyhow::Result<Figures> {
    let targets: Vec<Target> = urls.iter().map(|url| target(url, key)).collect();
    // Every replica takes the key (from the shared key table, where there is one).
    for target in &targets {
        wait_until(http, "the key at every gateway", async |http| {
            once(http, target, false).await.is_ok()
        })
        .await?;
    }
    for request in 0..WARMUP {
        once(http, &targets[request % targets.len()], false).await?;
    }
    let cpu = |pids: &[u32]| pids.iter().map(|pid| cpu_ns(*pid)).sum::<u64>();
    let (gateway_before, all_before) = (cpu(gateway_pids), cpu(all_pids));
    let mut latencies = Vec::with_capacity(SEQUENTIAL);
    for request in 0..SEQUENTIAL {
        let (_, took) = once(http, &targets[request % targets.len()], false).await?;
        latencies.push(took.as_secs_f64() * 1e3);
    }
    let per_request =
        |before: u64, after: u64| after.saturating_sub(before) as f64 / 1e6 / SEQUENTIAL as f64;
    let gateway_cpu = per_request(gateway_before, cpu(gateway_pids));
    let all_cpu = per_request(all_before, cpu(all_pids));
    // Load: each worker sends to the replicas in turn.
    let deadline = Instant::now() + LOAD_FOR;
    let workers = (0..IN_FLIGHT).map(|worker| {
        let targets = &targets;
        async move {
            let (mut done, mut failed) = (0u64, 0u64);
            let mut next = worker;
            while Instant::now() < deadline {
                match once(http, &targets[next % targets.len()], false).await {
                    Ok(_) => done += 1,
                    Err(_) => failed += 1,
                }
                next += 1;
            }
            (done, failed)
        }
    });
    let started = Instant::now();
    let (done, failed) = futures_util::future::join_all(workers)
        .await
        .into_iter()
        .fold((0, 0), |(done, failed), (d, f)| (done + d, failed + f));
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Figures {
        p50_ms: percentile(&mut latencies.clone(), 0.5),
        p99_ms: percentile(&mut latencies, 0.99),
        gateway_cpu_ms_per_request: gateway_cpu,
        all_cpu_ms_per_request: all_cpu,
        requests_per_second: done as f64 / elapsed,
        errors_under_load: failed,
        ..Figures::default()
    })
}

pub(crate) async fn run() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let gondola = crate::flag("--gondola")
        .map_or_else(|| root.join("../target/release/gondola"), PathBuf::from);
    let nginx =
        crate::flag("--nginx").map_or_else(|| PathBuf::from("/usr/sbin/nginx"), PathBuf::from);
    binaries_present(&gondola, &nginx)?;
    server::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    let _upstream = start_upstream(&http, &nginx, dir.path()).await?;
    let (redis, socket) = start_redis(dir.path())?;
    wait_until(&http, "redis-server", async |_| redis_answers(&socket)).await?;
    let postgres_dir = dir.path().join("postgres");
    std::fs::create_dir_all(&postgres_dir)?;
    let postgres = test_servers::PostgresServer::start(&postgres_dir);
    let setup = |gateways, shared, metered| Setup {
        gateways,
        shared,
        metered,
    };
    let setups = [
        setup(1, false, false),
        setup(1, true, false),
        setup(2, true, false),
        setup(3, true, false),
        setup(1, false, true),
        setup(1, true, true),
        setup(3, true, true),
    ];
    let mut best: Vec<Figures> = Vec::new();
    for round in 0..ROUNDS {
        for (index, setup) in setups.iter().copied().enumerate() {
            let Setup {
                gateways,
                shared,
                metered,
            } = setup;
            let setup_dir = dir.path().join(format!("round-{round}-setup-{index}"));
            let (processes, urls, gateway_pids) =
                start_setup(&http, &gondola, &setup_dir, setup, &socket, &postgres.url()).await?;
            let key = if metered {
                account_key(&gondola, &urls[0], &setup_dir)?
            } else {
                GONDOLA_KEY.to_owned()
            };
            let mut all_pids: Vec<u32> = processes.iter().map(Process::pid).collect();
            if shared {
                all_pids.push(redis.pid());
            }
            if shared && metered {
                all_pids.extend(postgres.pids());
            }
            let mut figures = measure(&http, &urls, &key, &gateway_pids, &all_pids)
                .await
                .with_context(|| format!("{gateways} gateway(s), shared {shared}"))?;
            drop(processes);
            figures.setup = match (gateways, shared, metered) {
                (count, false, false) => format!("{count} gateway(s), state in the process"),
                (count, true, false) => format!("{count} gateway(s), state in Redis"),
                (count, false, true) => format!("{count} gateway, metered, ledger in the process"),
                (count, _, true) => {
                    format!("{count} gateway(s), metered, ledger in PostgreSQL, Redis")
                }
            };
            figures.gateways = gateways;
            figures.shared = shared;
            figures.metered = metered;
            if round == 0 {
                best.push(figures);
            } else if figures.requests_per_second > best[index].requests_per_second {
                // The round with more throughput keeps its latency and CPU figures too.
                best[index] = figures;
            }
        }
    }
    if best.iter().any(|figures| figures.errors_under_load > 0) {
        bail!(
            "requests failed under load: {:?}",
            best.iter().map(|f| f.errors_under_load).collect::<Vec<_>>()
        );
    }
    let results = root.join("results");
    std::fs::write(
        results.join("cluster.json"),
        serde_json::to_vec_pretty(&best)?,
    )?;
    // Each row beside the one gateway keeping its state in the process, paid the same way.
    let base = |metered: bool| {
        best.iter()
            .find(|figures| figures.metered == metered)
            .map_or(1.0, |figures| figures.requests_per_second)
    };
    let mut markdown = std::fs::File::create(results.join("cluster.md"))?;
    writeln!(
        markdown,
        "# Gateways sharing state in Redis and PostgreSQL\n\n{} cores; the nginx mock upstream, one provider, {SEQUENTIAL} sequential requests and {IN_FLIGHT} in flight for {}s; the better of {ROUNDS} rounds. The last column divides by the first row paid the same way (a configured key, or an account's).\n\n| set-up | p50 | p99 | gateway CPU / request | all CPU / request | req/s | ÷ in-process |\n|---|---|---|---|---|---|---|",
        std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get),
        LOAD_FOR.as_secs()
    )?;
    for figures in &best {
        writeln!(
            markdown,
            "| {} | {:.2} ms | {:.2} ms | {:.3} ms | {:.3} ms | {:.0} | {:.2}× |",
            figures.setup,
            figures.p50_ms,
            figures.p99_ms,
            figures.gateway_cpu_ms_per_request,
            figures.all_cpu_ms_per_request,
            figures.requests_per_second,
            figures.requests_per_second / base(figures.metered)
        )?;
    }
    println!("{}", std::fs::read_to_string(results.join("cluster.md"))?);
    Ok(())
}
