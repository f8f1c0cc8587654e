//! `gondola-bench private MODEL.gguf`: what the private path adds to a request, side by side
//! with the plain path, in interleaved rounds.
//!
//! 1. Sealing cost, in process, with no model and no network: a streamed reply of
//!    [`EVENTS`] chat-completion events from a fixed API router, taken plainly (`oneshot`) or
//!    sealed as a chunked OHTTP request (to an X25519 key, or to an X-Wing key), run through
//!    the gateway's oblivious handler, and opened and read by the client. Sequential, so the
//!    time per request is the CPU it costs.
//! 2. The inner layer, in process: a chat request sealed to a provider's key, opened by the
//!    provider, answered with [`EVENTS`] events sealed one by one and a signed receipt, and
//!    opened and checked by the client (X25519 and X-Wing).
//! 3. End to end with the real model: the same streamed chat request straight to the gateway,
//!    sealed to the gateway through an in-process `gondola relay` by the proxy's client, and
//!    sealed to the provider inside that (`send_chat`, receipt checked).
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

/// One way of taking a request in the in-process measurements.
#[derive(Serialize)]
struct Way {
    name: &'static str,
    us_per_request: Vec<f64>,
    median_us: f64,
    request_bytes: usize,
    reply_bytes: usize,
}

#[derive(Serialize)]
struct SealingCost {
    events_per_reply: usize,
    requests_per_round: usize,
    rounds: usize,
    /// Plain, then sealed to the gateway (X25519, X-Wing), then sealed to a provider (X25519,
    /// X-Wing).
    ways: Vec<Way>,
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
    sealed: Side,
    added_first_token_ms: f64,
    ratio_decode: f64,
    sealed_added_first_token_ms: f64,
    sealed_ratio_decode: f64,
}

/// A fixed API: the streamed reply of [`reply_events`], one frame per event, as the gateway
/// streams them.
fn synthetic_api() -> axum::Router {
    let stream = bytes::Bytes::from(reply_events());
    axum::Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let stream = stream.clone();
            async move {
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

/// A streamed reply of [`EVENTS`] events shaped like a real chat stream.
fn reply_events() -> Vec<u8> {
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
    stream.into_bytes()
}

/// A provider for the inner layer: its identity, its keys and how the gateway lists it.
struct InnerProvider {
    signer: ed25519_dalek::SigningKey,
    keys: privacy::sealed::ProviderKeys,
    listed: wire::sealed::SealingProvider,
}

impl InnerProvider {
    fn new(post_quantum: bool) -> anyhow::Result<Self> {
        let signer = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let keys = privacy::sealed::ProviderKeys::derive(&signer.to_bytes(), post_quantum)?;
        let listed = wire::sealed::SealingProvider {
            id: wire::provider::provider_id(&signer.verifying_key()),
            public_key: signer
                .verifying_key()
                .as_bytes()
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect(),
            keys: keys.encoded_base64(),
            models: vec!["smollm2-135m-instruct".into()],
        };
        Ok(Self {
            signer,
            keys,
            listed,
        })
    }
}

/// The inner layer once: sealed to the provider, opened there, answered with `events` and a
/// signed receipt, passed on as the gateway does (one `{"sealed": …}` event per piece), opened
/// and checked by the client. Returns (sealed request bytes, sealed reply bytes).
async fn inner_once(
    provider: &InnerProvider,
    body: &[u8],
    events: &[u8],
) -> anyhow::Result<(usize, usize)> {
    use base64::Engine as _;
    use tokio::io::AsyncReadExt;
    let base64 = base64::engine::general_purpose::STANDARD;
    let request =
        privacy::sealed::seal_chat(&[&provider.listed], "smollm2-135m-instruct", 128, body).await?;
    let declared: wire::sealed::SealedChat = serde_json::from_slice(&request.body)?;
    let sealed = base64.decode(&declared.sealed[0].request)?;
    let (_, _, mut sealer, mut output) = provider.keys.open(&sealed).await?;
    let id = provider.listed.id.clone();
    let signer = &provider.signer;
    let writer = async move {
        sealer.head(200, "text/event-stream").await?;
        sealer.events(events).await?;
        let request_sha256 = sealer.request_sha256();
        sealer
            .finish(|response_sha256| {
                let receipt = wire::provider::Receipt {
                    purpose: wire::provider::RECEIPT_PURPOSE.into(),
                    provider: id,
                    model: "smollm2-135m-instruct".into(),
                    quantization: "Q4_1".into(),
                    request_sha256,
                    response_sha256,
                    prompt_tokens: 30,
                    completion_tokens: EVENTS as u64,
                    issued_at_ms: 1,
                };
                wire::provider::SignedEnvelope::sign(signer, &receipt)
                    .and_then(|envelope| serde_json::to_string(&envelope))
                    .unwrap_or_default()
            })
            .await
    };
    // The gateway reads the provider's reply as it comes and passes each piece on as an event.
    let reader = async move {
        let mut frames = Vec::new();
        let mut sealed_bytes = 0;
        let mut buffer = vec![0u8; 4096];
        loop {
            let read = output.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            sealed_bytes += read;
            let event = serde_json::json!({ "sealed": base64.encode(&buffer[..read]) });
            frames.push(Ok::<_, std::io::Error>(bytes::Bytes::from(format!(
                "data: {event}\n\n"
            ))));
        }
        frames.push(Ok(bytes::Bytes::from_static(b"data: [DONE]\n\n")));
        Ok::<_, std::io::Error>((frames, sealed_bytes))
    };
    let (written, read) = tokio::join!(writer, reader);
    written?;
    let (frames, reply_bytes) = read?;
    let opened = request
        .open(&provider.listed.id, futures_util::stream::iter(frames))
        .await?;
    let mut body = opened.body;
    while let Some(piece) = body.next().await {
        piece?;
    }
    opened
        .receipt
        .await
        .context("no verdict on the receipt")?
        .context("the receipt")?;
    Ok((sealed.len(), reply_bytes))
}

async fn sealing_cost() -> anyhow::Result<SealingCost> {
    let api = synthetic_api();
    let body = request_body();
    let events = reply_events();
    let classic = gateway::oblivious::ObliviousGateway::from_seed(&[9; 32], false)?;
    let hybrid = gateway::oblivious::ObliviousGateway::from_seed(&[9; 32], true)?;
    let classic_keys = privacy::client::GatewayKeys::decode(classic.encoded_keys())?;
    let hybrid_keys = privacy::client::GatewayKeys::decode(hybrid.encoded_keys())?;
    let providers = [InnerProvider::new(false)?, InnerProvider::new(true)?];
    let plain_reply_bytes = plain_once(&api, &body).await?;
    let mut ways = vec![Way {
        name: "plain (API router only)",
        us_per_request: Vec::new(),
        median_us: 0.0,
        request_bytes: body.len(),
        reply_bytes: plain_reply_bytes,
    }];
    for (name, gateway, keys) in [
        ("sealed to the gateway, X25519", &classic, &classic_keys),
        ("sealed to the gateway, X-Wing", &hybrid, &hybrid_keys),
    ] {
        let (request_bytes, reply_bytes, opened_bytes) =
            private_once(&api, gateway, keys, &body).await?;
        anyhow::ensure!(
            opened_bytes >= plain_reply_bytes,
            "the opened reply is shorter than the plain one"
        );
        ways.push(Way {
            name,
            us_per_request: Vec::new(),
            median_us: 0.0,
            request_bytes,
            reply_bytes,
        });
    }
    for (name, provider) in [
        (
            "sealed to a provider, X25519 (receipt signed and checked)",
            &providers[0],
        ),
        (
            "sealed to a provider, X-Wing (receipt signed and checked)",
            &providers[1],
        ),
    ] {
        let (request_bytes, reply_bytes) = inner_once(provider, &body, &events).await?;
        ways.push(Way {
            name,
            us_per_request: Vec::new(),
            median_us: 0.0,
            request_bytes,
            reply_bytes,
        });
    }
    let per_request =
        |started: Instant| started.elapsed().as_secs_f64() * 1e6 / SEAL_REQUESTS as f64;
    for round in 0..SEAL_ROUNDS {
        eprintln!("sealing round {}/{SEAL_ROUNDS}", round + 1);
        let started = Instant::now();
        for _ in 0..SEAL_REQUESTS {
            plain_once(&api, &body).await?;
        }
        ways[0].us_per_request.push(per_request(started));
        for (index, (gateway, keys)) in [(&classic, &classic_keys), (&hybrid, &hybrid_keys)]
            .into_iter()
            .enumerate()
        {
            let started = Instant::now();
            for _ in 0..SEAL_REQUESTS {
                private_once(&api, gateway, keys, &body).await?;
            }
            ways[1 + index].us_per_request.push(per_request(started));
        }
        for (index, provider) in providers.iter().enumerate() {
            let started = Instant::now();
            for _ in 0..SEAL_REQUESTS {
                inner_once(provider, &body, &events).await?;
            }
            ways[3 + index].us_per_request.push(per_request(started));
        }
    }
    for way in &mut ways {
        let mut sorted = way.us_per_request.clone();
        sorted.sort_by(f64::total_cmp);
        way.median_us = sorted[sorted.len() / 2];
    }
    Ok(SealingCost {
        events_per_reply: EVENTS,
        requests_per_round: SEAL_REQUESTS,
        rounds: SEAL_ROUNDS,
        ways,
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

/// The chat sealed to the provider inside the seal to the gateway; the receipt must verify.
async fn sealed_to_provider(client: &privacy::proxy::PrivateClient) -> anyhow::Result<Run> {
    let body = request_body();
    let started = Instant::now();
    let reply = client
        .send_chat("/v1/chat/completions", None, &body)
        .await?;
    anyhow::ensure!(reply.status == 200, "the gateway answered {}", reply.status);
    let (_, receipt) = reply
        .sealed
        .context("the request was not sealed to a provider")?;
    let run = timed_reply(started, reply.body).await?;
    receipt
        .await
        .context("no verdict on the receipt")?
        .context("the receipt")?;
    Ok(run)
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
    sealed_to_provider(&private).await?;
    let (mut plain_runs, mut private_runs, mut sealed_runs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}", round + 1);
        plain_runs.push(crate::through_gateway(&http, &url).await?);
        private_runs.push(through_relay(&private).await.context("the private path")?);
        sealed_runs.push(
            sealed_to_provider(&private)
                .await
                .context("the path sealed to the provider")?,
        );
    }
    let (plain_median, private_median, sealed_median) = (
        median(&plain_runs),
        median(&private_runs),
        median(&sealed_runs),
    );
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
        sealed_added_first_token_ms: sealed_median.first_token_ms - plain_median.first_token_ms,
        sealed_ratio_decode: sealed_median.decode_tokens_per_second
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
        sealed: Side {
            name: "sealed to the provider, inside that (receipt checked)",
            runs: sealed_runs,
            median: sealed_median,
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
         A streamed reply of {} events; sequential requests, medians of {} interleaved rounds of {}. \
         Sealed to the gateway: the client seals, the gateway's handler opens, runs the API and \
         seals each event, the client opens. Sealed to a provider: the client seals to its key, \
         the provider opens, seals each event and signs a receipt, the client opens and checks it \
         (the outer layer not included).\n\n\
         | way | µs per request | added µs | request bytes | reply bytes |\n|---|---|---|---|---|\n",
        sealing.events_per_reply, sealing.rounds, sealing.requests_per_round,
    );
    let base = sealing.ways.first().map_or(0.0, |way| way.median_us);
    for way in &sealing.ways {
        table.push_str(&format!(
            "| {} | {:.0} | {:+.0} | {} | {} |\n",
            way.name,
            way.median_us,
            way.median_us - base,
            way.request_bytes,
            way.reply_bytes
        ));
    }
    table.push('\n');
    table.push_str(&format!(
        "## End to end with the real model\n\n{} · {} decode thread(s) · {} greedy tokens per run · medians of {} interleaved rounds\n\n\
         | path | time to first token | decode tokens/s | total |\n|---|---|---|---|\n",
        report.model, report.threads, report.tokens_per_run, report.rounds
    ));
    for side in [&report.plain, &report.private, &report.sealed] {
        table.push_str(&format!(
            "| {} | {:.1} ms | {:.1} | {:.0} ms |\n",
            side.name,
            side.median.first_token_ms,
            side.median.decode_tokens_per_second,
            side.median.total_ms
        ));
    }
    table.push_str(&format!(
        "\nSealed to the gateway: first token {:+.1} ms, decode at {:.3}× the plain path's rate. \
         Sealed to the provider as well: first token {:+.1} ms, decode at {:.3}×.\n",
        report.added_first_token_ms,
        report.ratio_decode,
        report.sealed_added_first_token_ms,
        report.sealed_ratio_decode
    ));
    std::fs::write(results.join("private.md"), &table)?;
    println!("{table}");
    Ok(())
}
