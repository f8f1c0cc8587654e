//! Chaos: three real `gondola provider` processes serve one model, each in front of an upstream
//! engine that misbehaves at random (two of them) or never (the third), while a stream of
//! streamed requests runs through a real gateway, and one provider process is killed halfway
//! (with requests in flight).
//!
//! The upstreams inject, per request: a 500, a stall, garbage, a dropped connection, a slow but
//! complete drip, and after the first token a dropped connection, a stall or a garbled event.
//! They count what they injected. The client must see:
//! - no failure from any fault before the first token (a healthy provider always remains);
//! - for a fault after the first token, the text so far, then exactly one well-formed error
//!   event as the last event, and the end of the stream, within the idle timeout;
//! - otherwise the whole reply.
//!
//! Afterwards the gateway holds no request in flight, and neither the gateway nor the surviving
//! providers hold more file descriptors, threads or memory than after a calm warm-up.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use futures_util::StreamExt;
use rand::{Rng, SeedableRng};

use crate::support::{Process, chat_body, client, gateway, sse_events, streamed_text};

/// Tokens of a healthy reply.
const TOKENS: usize = 6;
const REQUESTS: usize = 120;
const IN_FLIGHT: usize = 6;
/// The gateway's bounds in this test.
const IDLE_TIMEOUT: Duration = Duration::from_millis(1000);
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Healthy,
    /// Healthy, with a pause between tokens well under the idle timeout.
    SlowDrip,
    ServerError,
    Stall,
    Garbage,
    DropBeforeFirstToken,
    DropAfterFirstToken,
    StallAfterFirstToken,
    GarbleAfterFirstToken,
}

impl Behaviour {
    fn after_first_token(self) -> bool {
        matches!(
            self,
            Self::DropAfterFirstToken | Self::StallAfterFirstToken | Self::GarbleAfterFirstToken
        )
    }
}

/// An OpenAI-compatible upstream engine that misbehaves on cue.
struct Upstream {
    url: String,
    /// Whether it picks faults (off: always healthy).
    chaotic: Arc<AtomicBool>,
    /// Faults after the first token it injected.
    after_first_token: Arc<AtomicUsize>,
    /// Every behaviour it chose, in order.
    chosen: Arc<Mutex<Vec<Behaviour>>>,
    _task: tokio::task::JoinHandle<()>,
}

fn chunk(content: &str, finish: Option<&str>) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({
            "id": "chatcmpl-chaos",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "chaos",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
        })
    )
}

type Body = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>,
>;

fn stream_response(body: Body) -> axum::response::Response {
    let mut response = axum::response::Response::new(axum::body::Body::from_stream(body));
    response.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("text/event-stream"),
    );
    response
}

fn tokens(pause: Duration) -> Body {
    futures_util::stream::iter(0..=TOKENS)
        .then(move |index| async move {
            if index > 0 {
                tokio::time::sleep(pause).await;
            }
            let event = if index < TOKENS {
                chunk(&format!("t{index} "), None)
            } else {
                format!("{}data: [DONE]\n\n", chunk("", Some("stop")))
            };
            Ok(bytes::Bytes::from(event))
        })
        .boxed()
}

fn respond(behaviour: Behaviour) -> axum::response::Response {
    let first = || futures_util::stream::once(async { Ok(bytes::Bytes::from(chunk("t0 ", None))) });
    match behaviour {
        Behaviour::Healthy => stream_response(tokens(Duration::ZERO)),
        Behaviour::SlowDrip => stream_response(tokens(IDLE_TIMEOUT / 5)),
        Behaviour::ServerError => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "{\"error\":{\"message\":\"the engine fell over\"}}",
        )
            .into_response(),
        Behaviour::Stall => stream_response(futures_util::stream::pending().boxed()),
        Behaviour::Garbage => stream_response(
            futures_util::stream::once(async {
                Ok(bytes::Bytes::from_static(
                    b"\x00\x01 not SSE at all\n\ndata: {nope\n\n",
                ))
            })
            .boxed(),
        ),
        Behaviour::DropBeforeFirstToken => stream_response(
            futures_util::stream::once(async { Err(std::io::Error::other("crash")) }).boxed(),
        ),
        Behaviour::DropAfterFirstToken => stream_response(
            first()
                .chain(futures_util::stream::once(async {
                    // The server writes out the token it holds before it asks the body again:
                    // one turn, and the connection drops with the token sent.
                    tokio::task::yield_now().await;
                    Err(std::io::Error::other("crash"))
                }))
                .boxed(),
        ),
        Behaviour::StallAfterFirstToken => {
            stream_response(first().chain(futures_util::stream::pending()).boxed())
        }
        Behaviour::GarbleAfterFirstToken => stream_response(
            first()
                .chain(futures_util::stream::once(async {
                    Ok(bytes::Bytes::from_static(b"data: {garbled\n\n"))
                }))
                .boxed(),
        ),
    }
}

async fn upstream(seed: u64, chaotic: bool) -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("address"));
    let chaotic = Arc::new(AtomicBool::new(chaotic));
    let after_first_token = Arc::new(AtomicUsize::new(0));
    let chosen = Arc::new(Mutex::new(Vec::new()));
    let rng = Arc::new(Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)));
    let state = (
        Arc::clone(&chaotic),
        Arc::clone(&after_first_token),
        Arc::clone(&chosen),
    );
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let (chaotic, after_first_token, chosen) = state.clone();
            let rng = Arc::clone(&rng);
            async move {
                let behaviour = if chaotic.load(Ordering::SeqCst) {
                    let roll: u32 = rng.lock().expect("lock").random_range(0..100);
                    match roll {
                        0..40 => Behaviour::Healthy,
                        40..48 => Behaviour::SlowDrip,
                        48..56 => Behaviour::ServerError,
                        56..63 => Behaviour::Stall,
                        63..70 => Behaviour::Garbage,
                        70..78 => Behaviour::DropBeforeFirstToken,
                        78..86 => Behaviour::DropAfterFirstToken,
                        86..93 => Behaviour::StallAfterFirstToken,
                        _ => Behaviour::GarbleAfterFirstToken,
                    }
                } else {
                    Behaviour::Healthy
                };
                if behaviour.after_first_token() {
                    after_first_token.fetch_add(1, Ordering::SeqCst);
                }
                chosen.lock().expect("lock").push(behaviour);
                respond(behaviour)
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Upstream {
        url,
        chaotic,
        after_first_token,
        chosen,
        _task: task,
    }
}

/// A real `gondola provider` for model `chaos` in front of `upstream`.
fn provider(gateway_url: &str, upstream: &str) -> Process {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let data = dir.path().join("data").display().to_string();
    let mut process = Process::start(
        &[
            "provider",
            "--gateway",
            gateway_url,
            "--upstream",
            upstream,
            "--model",
            "chaos",
            "--max-in-flight",
            "64",
            "--data-dir",
            &data,
        ],
        dir,
    );
    process.wait_for_line("ready: provider");
    process
}

/// File descriptors, threads and resident KiB of process `pid`.
fn footprint(pid: u32) -> (usize, usize, u64) {
    let count = |path: String| std::fs::read_dir(path).map_or(0, |entries| entries.count());
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    (
        count(format!("/proc/{pid}/fd")),
        count(format!("/proc/{pid}/task")),
        rss,
    )
}

/// What the client saw of one streamed request.
struct Outcome {
    status: u16,
    events: Vec<String>,
    took: Duration,
}

async fn stream_once(http: &reqwest::Client, url: &str) -> Outcome {
    let started = Instant::now();
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat_body("chaos", "Go.", 50, true))
        .send()
        .await
        .expect("the gateway answers");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    Outcome {
        status,
        events: sse_events(&body),
        took: started.elapsed(),
    }
}

/// `count` requests, `IN_FLIGHT` at a time.
async fn run(http: &reqwest::Client, url: &str, count: usize) -> Vec<Outcome> {
    futures_util::stream::iter(0..count)
        .map(|_| stream_once(http, url))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await
}

fn in_flight(metrics: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with("gondola_in_flight_requests "))
        .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread")]
async fn random_faults_never_reach_the_client_before_the_first_token_and_end_cleanly_after_it() {
    let (gateway_process, url, _dir) = gateway(&format!(
        "[gateway.limits]\nidle_chunk_timeout_ms = {}\nfirst_byte_timeout_ms = {}\nmax_attempts = 3\n\
         breaker_failure_threshold = 1000000\n",
        IDLE_TIMEOUT.as_millis(),
        FIRST_BYTE_TIMEOUT.as_millis()
    ));
    let upstreams = [
        upstream(11, false).await,
        upstream(22, false).await,
        upstream(33, false).await,
    ];
    let mut providers: Vec<Process> = upstreams
        .iter()
        .map(|upstream| provider(&url, &upstream.url))
        .collect();
    let http = client();

    // A calm warm-up: every connection pool filled, every lazy start done.
    for outcome in run(&http, &url, 3 * IN_FLIGHT).await {
        assert_eq!(outcome.status, 200);
        assert!(outcome.events.last().is_some_and(|event| event == "[DONE]"));
    }
    let gateway_pid = gateway_process.pid();
    let survivors = [providers[0].pid(), providers[2].pid()];
    let before: Vec<(usize, usize, u64)> = std::iter::once(gateway_pid)
        .chain(survivors)
        .map(footprint)
        .collect();

    // Chaos on the first two upstreams; the second provider's process is killed halfway,
    // with requests in flight.
    upstreams[0].chaotic.store(true, Ordering::SeqCst);
    upstreams[1].chaotic.store(true, Ordering::SeqCst);
    let mut outcomes = Vec::with_capacity(REQUESTS);
    let mut requests = futures_util::stream::iter(0..REQUESTS)
        .map(|_| stream_once(&http, &url))
        .buffer_unordered(IN_FLIGHT);
    while let Some(outcome) = requests.next().await {
        outcomes.push(outcome);
        if outcomes.len() == REQUESTS / 2 {
            providers[1].kill();
        }
    }
    drop(requests);

    let expected_text: String = (0..TOKENS).map(|index| format!("t{index} ")).collect();
    let mut broken = 0;
    for outcome in &outcomes {
        // Faults before the first token are the gateway's to absorb.
        assert_eq!(outcome.status, 200, "{:?}", outcome.events);
        let errors = outcome
            .events
            .iter()
            .filter(|event| event.contains("\"error\""))
            .count();
        if errors == 0 {
            assert_eq!(
                outcome.events.last().map(String::as_str),
                Some("[DONE]"),
                "{:?}",
                outcome.events
            );
            assert_eq!(streamed_text(&outcome.events), expected_text);
        } else {
            broken += 1;
            assert_eq!(errors, 1, "{:?}", outcome.events);
            let last = outcome.events.last().expect("events");
            let error: serde_json::Value = serde_json::from_str(last).expect("well-formed error");
            assert!(
                error["error"]["message"].is_string() && error["error"]["code"].is_string(),
                "{error}"
            );
            assert!(
                streamed_text(&outcome.events).starts_with("t0"),
                "{:?}",
                outcome.events
            );
        }
        // No request outlives its bounds: two failed first bytes and a healthy reply, or the
        // idle timeout after a first token.
        assert!(
            outcome.took < 2 * FIRST_BYTE_TIMEOUT + 2 * IDLE_TIMEOUT,
            "took {:?}: {:?}",
            outcome.took,
            outcome.events
        );
    }
    // Every fault after a first token reached its client as one error; the only other
    // breaks are streams that were on the killed provider.
    let injected: usize = upstreams
        .iter()
        .map(|upstream| upstream.after_first_token.load(Ordering::SeqCst))
        .sum();
    assert!(
        broken >= injected && broken <= injected + IN_FLIGHT,
        "{broken} streams broke; {injected} faults after a first token were injected"
    );
    let chosen: Vec<Behaviour> = upstreams[..2]
        .iter()
        .flat_map(|upstream| upstream.chosen.lock().expect("lock").clone())
        .collect();
    for behaviour in [
        Behaviour::ServerError,
        Behaviour::Stall,
        Behaviour::Garbage,
        Behaviour::DropBeforeFirstToken,
        Behaviour::SlowDrip,
    ] {
        assert!(
            chosen.contains(&behaviour),
            "the run injected no {behaviour:?}: {chosen:?}"
        );
    }
    assert!(
        injected > 0,
        "the run injected no fault after a first token"
    );
    eprintln!(
        "chaos: {} requests, {broken} broken after a first token ({injected} such faults injected), \
         behaviours of the chaotic upstreams: {chosen:?}",
        outcomes.len()
    );

    // Calm again: the same load as the warm-up, then nothing in flight and nothing kept.
    upstreams[0].chaotic.store(false, Ordering::SeqCst);
    for outcome in run(&http, &url, 3 * IN_FLIGHT).await {
        assert_eq!(outcome.status, 200);
    }
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(in_flight(&metrics), 0.0, "requests left in flight");
    // Connections the faults cut are closed as each side notices, not all at once: the
    // descriptors must come back within the bound in a few seconds, and a leak never would.
    let pids: Vec<u32> = std::iter::once(gateway_pid).chain(survivors).collect();
    let settled = std::time::Instant::now() + Duration::from_secs(10);
    let after: Vec<(usize, usize, u64)> = loop {
        let after: Vec<(usize, usize, u64)> = pids.iter().copied().map(footprint).collect();
        let within = before
            .iter()
            .zip(&after)
            .all(|((fds, _, _), (fds_after, _, _))| *fds_after <= fds + IN_FLIGHT);
        if within || std::time::Instant::now() > settled {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (index, ((fds, threads, rss), (fds_after, threads_after, rss_after))) in
        before.iter().zip(&after).enumerate()
    {
        let who = ["gateway", "provider 1", "provider 3"][index];
        // Idle pooled connections may differ by a few; a leak per fault would be dozens.
        assert!(
            *fds_after <= fds + IN_FLIGHT,
            "{who}: {fds} file descriptors before, {fds_after} after"
        );
        assert!(
            *threads_after <= threads + 2,
            "{who}: {threads} threads before, {threads_after} after"
        );
        assert!(
            *rss_after <= rss + 32 * 1024,
            "{who}: {rss} KiB before, {rss_after} KiB after"
        );
    }
}
