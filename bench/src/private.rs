//! `gondola-bench private MODEL.gguf`: what the private path adds to a request, side by side
//! with the plain path, in interleaved rounds.
//!
//! 1. Sealing cost, in process, with no model and no network: a streamed reply of
//!    [`EVENTS`] chat-completion events from a fixed API router, taken plainly (`oneshot`) or
//!    sealed as a chunked OHTTP request, run through the gateway's oblivious handler, and
//!    opened and read by the client. Sequential, so the time per request is the CPU it costs.
//! 2. End to end with the real model: the same streamed chat request straight to the gateway,
//!    or sealed through an in-process `gondola relay` by the proxy's client.
//!
//! Results go to `bench/results/private.{md,json}`.

use std::time::Instant;

use anyhow::Context;
use axum::body::Body;
use axum::routing::post;
use futures_util::StreamExt;
use serde::Serialize;
use tower::ServiceExt;

use crate::{ROUNDS, Run, Side, median, timed_reply};

/// Events in the synthetic reply (one per token, like a real stream).
const EVENTS: usize = 128;
/// Requests per side per round in the sealing measurement.
const SEAL_REQUESTS: usize = 200;
const SEAL_ROUNDS: usize = 5;

#[derive(Serialize)]
struct SealingCost {
    events_per_reply: usize,
    requests_per_round: usize,
    rounds: usize,
    plain_us_per_request: Vec<f64>,
    private_us_per_request: Vec<f64>,
    plain_median_us: f64,
    private_median_us: f64,
    added_us_per_request: f64,
    plain_reply_bytes: usize,
    sealed_reply_bytes: usize,
    sealed_request_bytes: usize,
}

#[derive(Serialize)]
struct Report {
    sealing: SealingCost,
    model: String,
    threads: u32,
    tokens_per_run: u32,
    rounds: usize,
    plain: Side,
    private: Side,
    added_first_token_ms: f64,
    ratio_decode: f64,
}

/// A fixed API: a streamed reply of [`EVENTS`] events shaped like a real chat stream.
fn synthetic_api() -> axum::Router {
    let mut stream = String::new();
    for index in 0..EVENTS {
        let chunk = serde_json::json!({
            "id": "chatcmpl-0123456789abcdef",
            "object": "chat.completion.chunk",
            "created": 1_764_000_000,
            "model": "smollm2-135m-instruct",
            "choices": [{"index": 0, "delta": {"content": format!(" word{index}")}, "finish_reason": null}],
        });
        stream.push_str(&format!("data: {chunk}\n\n"));
    }
    stream.push_str("data: [DONE]\n\n");
    let stream = bytes::Bytes::from(stream);
    axum::Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let stream = stream.clone();
            async move {
                // One frame per event, as the gateway streams them.
                let events: Vec<Result<bytes::Bytes, std::io::Error>> = stream
                    .split_inclusive(|&byte| byte == b'\n')
                    .collect::<Vec<_>>()
                    .chunks(2)
                    .map(|lines| Ok(bytes::Bytes::from(lines.concat())))
                    .collect();
                (
                    [(http::header::CONTENT_TYPE, "text/event-stream")],
                    Body::from_stream(futures_util::stream::iter(events)),
                )
            }
        }),
    )
}

fn request_body() -> Vec<u8> {
    serde_json::to_vec(&crate::chat_request()).unwrap_or_default()
}

async fn plain_once(api: &axum::Router, body: &[u8]) -> anyhow::Result<usize> {
    let request = http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))?;
    let response = api.clone().oneshot(request).await?;
    Ok(axum::body::to_bytes(response.into_body(), 1 << 24)
        .await?
        .len())
}

/// Returns (sealed request bytes, sealed reply bytes, plaintext reply bytes).
async fn private_once(
    api: &axum::Router,
    gateway: &gateway::oblivious::ObliviousGateway,
    keys: &privacy::client::GatewayKeys,
    body: &[u8],
) -> anyhow::Result<(usize, usize, usize)> {
    let (sealed, opener) = privacy::client::seal_chunked(
        keys,
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        body,
    )
    .await?;
    let request_bytes = sealed.len();
    let content_type =
        http::HeaderValue::from_static(gateway::oblivious::CHUNKED_REQUEST_MEDIA_TYPE);
    let response = gateway::oblivious::handle(
        gateway,
        api.clone(),
        Some(&content_type),
        sealed.into(),
        1 << 24,
    )
    .await;
    let reply = axum::body::to_bytes(response.into_body(), 1 << 24).await?;
    let reply_bytes = reply.len();
    let mut opened = opener
        .open(futures_util::stream::iter([Ok::<_, std::io::Error>(reply)]))
        .await?;
    let mut plaintext = 0;
    while let Some(piece) = opened.body.next().await {
        plaintext += piece?.len();
    }
    Ok((request_bytes, reply_bytes, plaintext))
}

async fn sealing_cost() -> anyhow::Result<SealingCost> {
    let api = synthetic_api();
    let gateway = gateway::oblivious::ObliviousGateway::from_seed(&[9; 32])?;
    let keys = privacy::client::GatewayKeys::decode(gateway.encoded_keys())?;
    let body = request_body();
    let plain_reply_bytes = plain_once(&api, &body).await?;
    let (sealed_request_bytes, sealed_reply_bytes, opened_bytes) =
        private_once(&api, &gateway, &keys, &body).await?;
    anyhow::ensure!(
        opened_bytes >= plain_reply_bytes,
        "the opened reply is shorter than the plain one"
    );
    let (mut plain, mut private) = (Vec::new(), Vec::new());
    for round in 0..SEAL_ROUNDS {
        eprintln!("sealing round {}/{SEAL_ROUNDS}", round + 1);
        let started = Instant::now();
        for _ in 0..SEAL_REQUESTS {
            plain_once(&api, &body).await?;
        }
        plain.push(started.elapsed().as_secs_f64() * 1e6 / SEAL_REQUESTS as f64);
        let started = Instant::now();
        for _ in 0..SEAL_REQUESTS {
            private_once(&api, &gateway, &keys, &body).await?;
        }
        private.push(started.elapsed().as_secs_f64() * 1e6 / SEAL_REQUESTS as f64);
    }
    let middle = |values: &[f64]| {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    let (plain_median_us, private_median_us) = (middle(&plain), middle(&private));
    Ok(SealingCost {
        events_per_reply: EVENTS,
        requests_per_round: SEAL_REQUESTS,
        rounds: SEAL_ROUNDS,
        plain_median_us,
        private_median_us,
        added_us_per_request: private_median_us - plain_median_us,
        plain_us_per_request: plain,
        private_us_per_request: private,
        plain_reply_bytes,
        sealed_reply_bytes,
        sealed_request_bytes,
    })
}

async fn through_relay(client: &privacy::proxy::PrivateClient) -> anyhow::Result<Run> {
    let body = request_body();
    let started = Instant::now();
    let opened = client
        .send(
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            &body,
        )
        .await?;
    anyhow::ensure!(
        opened.status == 200,
        "the gateway answered {}",
        opened.status
    );
    timed_reply(started, opened.body).await
}

pub async fn run() -> anyhow::Result<()> {
    let sealing = sealing_cost().await?;

    let (model, threads, engine) = crate::load_engine().await?;
    let (url, data) = crate::start_stack(&engine).await?;
    let relay_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let relay_url = format!("http://{}", relay_listener.local_addr()?);
    let relay = privacy::relay::router(privacy::relay::RelayConfig::new(url.clone()))?;
    tokio::spawn(server::serve(
        relay_listener,
        relay,
        None,
        server::ServeLimits::default(),
        std::future::pending(),
    ));
    let private = privacy::proxy::PrivateClient::new(privacy::proxy::ProxyConfig::new(relay_url))?;
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    // Warm both paths once (keys fetched, connections pooled).
    crate::through_gateway(&http, &url).await?;
    through_relay(&private).await?;
    let (mut plain_runs, mut private_runs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}", round + 1);
        plain_runs.push(crate::through_gateway(&http, &url).await?);
        private_runs.push(through_relay(&private).await.context("the private path")?);
    }
    let (plain_median, private_median) = (median(&plain_runs), median(&private_runs));
    let report = Report {
        sealing,
        model: model
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        threads,
        tokens_per_run: crate::TOKENS,
        rounds: ROUNDS,
        added_first_token_ms: private_median.first_token_ms - plain_median.first_token_ms,
        ratio_decode: private_median.decode_tokens_per_second
            / plain_median.decode_tokens_per_second,
        plain: Side {
            name: "plain: client → gateway",
            runs: plain_runs,
            median: plain_median,
        },
        private: Side {
            name: "private: client → relay → gateway (chunked OHTTP)",
            runs: private_runs,
            median: private_median,
        },
    };
    let _ = std::fs::remove_dir_all(&data);
    let results = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(
        results.join("private.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let sealing = &report.sealing;
    let mut table = format!(
        "# The private path: plain vs sealed through a relay\n\n\
         ## Sealing, framing and opening (in process, no model, no network)\n\n\
         A streamed reply of {} events; sequential requests, medians of {} interleaved rounds of {}.\n\n\
         | path | µs per request | reply bytes |\n|---|---|---|\n\
         | plain (API router only) | {:.0} | {} |\n\
         | sealed (seal, gateway handler, open) | {:.0} | {} |\n\n\
         Sealing adds {:.0} µs of CPU per request ({:.1} µs per event); the sealed request is {} bytes; \
         padding and sealing make the reply {:.2}× as large.\n\n",
        sealing.events_per_reply,
        sealing.rounds,
        sealing.requests_per_round,
        sealing.plain_median_us,
        sealing.plain_reply_bytes,
        sealing.private_median_us,
        sealing.sealed_reply_bytes,
        sealing.added_us_per_request,
        sealing.added_us_per_request / sealing.events_per_reply as f64,
        sealing.sealed_request_bytes,
        sealing.sealed_reply_bytes as f64 / sealing.plain_reply_bytes as f64,
    );
    table.push_str(&format!(
        "## End to end with the real model\n\n{} · {} decode thread(s) · {} greedy tokens per run · medians of {} interleaved rounds\n\n\
         | path | time to first token | decode tokens/s | total |\n|---|---|---|---|\n",
        report.model, report.threads, report.tokens_per_run, report.rounds
    ));
    for side in [&report.plain, &report.private] {
        table.push_str(&format!(
            "| {} | {:.1} ms | {:.1} | {:.0} ms |\n",
            side.name,
            side.median.first_token_ms,
            side.median.decode_tokens_per_second,
            side.median.total_ms
        ));
    }
    table.push_str(&format!(
        "\nThe private path: first token {:+.1} ms, decode at {:.3}× the plain path's rate.\n",
        report.added_first_token_ms, report.ratio_decode
    ));
    std::fs::write(results.join("private.md"), &table)?;
    println!("{table}");
    Ok(())
}
