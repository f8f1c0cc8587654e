//! Video end to end: a real gateway and provider processes in front of a stand-in engine with
//! OpenAI's videos API (`video_engine.rs`; no video model can run here). A job quoted, queued
//! (charged per second when a provider takes it), reported while it runs, retrieved as a real
//! MP4 once made, refused to another account, completed (deleted at the provider and the
//! engine); a failed job; bad requests; and a job that outlives a restart of its provider and
//! of the gateway.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use crate::economy::{decimal_units, ledger_config, staked_account_key};
use crate::support::{Process, client, typed_provider_in, url_in};
use crate::video_engine::{self, VideoEngine};

const MODEL: &str = "wan-test";
const ENGINE_MODEL: &str = "sora-2";

/// A provider of `MODEL` in front of `engine`, keeping its identity and jobs in `data`.
fn video_provider(url: &str, engine: &VideoEngine, data: &std::path::Path) -> Process {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    typed_provider_in(
        url,
        MODEL,
        "video",
        data,
        dir,
        &["--upstream", &engine.base_url, "--model", ENGINE_MODEL],
    )
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let request = http.post(url).json(body);
    let request = match key {
        Some(key) => request.bearer_auth(key),
        None => request,
    };
    request.send().await.expect("send")
}

/// A gateway on `port` (0: any) with `config`, keeping its data in `dir`.
fn gateway_at(dir: &Arc<tempfile::TempDir>, port: u16, config: &str) -> (Process, String) {
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config).expect("write config");
    let listen = format!("127.0.0.1:{port}");
    let data = dir.path().join("data");
    let mut process = Process::start(
        &[
            "gateway",
            "--listen",
            &listen,
            "--log",
            "debug",
            "--config",
            path.to_str().expect("utf-8"),
            "--data-dir",
            data.to_str().expect("utf-8"),
        ],
        Arc::clone(dir),
    );
    let url = url_in(&process.wait_for_line("gateway listening on"));
    (process, url)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_video_job_is_quoted_queued_reported_retrieved_and_completed() {
    // A dollar a day of capacity per account; a dime per second of video.
    let config = format!(
        "{}\n[gateway.models.pricing.{MODEL}]\nvideo_usd_per_second = \"0.10\"\n",
        ledger_config("2", "sk-video-operator", "1")
    );
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let (gateway_process, url) = gateway_at(&dir, 0, &config);
    let engine = video_engine::start(ENGINE_MODEL).await;
    let secret = crate::support::canary();
    let provider_dir = tempfile::tempdir().expect("temp dir");
    let provider_data = provider_dir.path().join("data");
    let _provider = video_provider(&url, &engine, &provider_data);
    let (key, _) = staked_account_key(&url, dir.path(), "director", "100");
    let (other_key, _) = staked_account_key(&url, dir.path(), "onlooker", "100");
    let http = client();
    let api = |route: &str| format!("{url}/api/v1/video/{route}");

    let quote: Value = post(
        &http,
        &api("quote"),
        Some(&key),
        &json!({"model": MODEL, "duration": "4s"}),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(quote["quote"], json!(0.4), "{quote}");

    let response = post(
        &http,
        &api("queue"),
        Some(&key),
        &json!({"model": MODEL, "prompt": format!("a fox runs through snow {secret}"), "duration": "4s",
                "resolution": "480p", "aspect_ratio": "1:1", "audio": false}),
    )
    .await;
    assert_eq!(response.status(), 200, "{:?}", engine.problems());
    let before = decimal_units(
        response.headers()["x-venice-balance-diem"]
            .to_str()
            .expect("text"),
    );
    let queued: Value = response.json().await.expect("json");
    assert_eq!(queued["model"], MODEL);
    let queue_id = queued["queue_id"].as_str().expect("a queue id").to_owned();
    let asked = engine.bodies();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["seconds"], "4");
    assert_eq!(asked[0]["size"], "480x480");
    assert_eq!(asked[0]["model"], ENGINE_MODEL);

    // While the engine works: its progress.
    let retrieve = json!({"model": MODEL, "queue_id": queue_id});
    let response = post(&http, &api("retrieve"), Some(&key), &retrieve).await;
    assert_eq!(response.status(), 200);
    let processing: Value = response.json().await.expect("json");
    assert_eq!(processing["status"], "PROCESSING");
    assert_eq!(processing["progress"], 40);
    assert!(processing["execution_duration"].as_u64().is_some());

    // Another account's key cannot see the job; nor can a changed queue id.
    let response = post(&http, &api("retrieve"), Some(&other_key), &retrieve).await;
    assert_eq!(response.status(), 404);
    let mut forged = queue_id.clone();
    let last = forged.pop().expect("a digit");
    forged.push(if last == '0' { '1' } else { '0' });
    let response = post(
        &http,
        &api("retrieve"),
        Some(&key),
        &json!({"model": MODEL, "queue_id": forged}),
    )
    .await;
    assert_eq!(response.status(), 404);

    // The job's record at the provider holds no prompt; nor does the gateway's log or data.
    assert!(
        engine.bodies()[0]["prompt"]
            .as_str()
            .expect("prompt")
            .contains(&secret)
    );
    let jobs = provider_data.join("provider/video-jobs");
    for entry in std::fs::read_dir(&jobs)
        .expect("the jobs folder")
        .filter_map(Result::ok)
    {
        let bytes = std::fs::read(entry.path()).expect("a job file");
        assert!(
            !crate::support::holds(&bytes, &secret),
            "{} holds the prompt",
            entry.path().display()
        );
    }
    assert!(
        !gateway_process.stderr().contains(&secret),
        "the gateway's log holds the prompt"
    );
    let leaked = crate::privacy::files_containing(dir.path(), secret.as_bytes());
    assert!(
        leaked.is_empty(),
        "the gateway's files hold the prompt: {leaked:?}"
    );

    // Made: the video, a real MP4 of the length asked for; the engine's copy is gone.
    engine.finish_all();
    let response = post(&http, &api("retrieve"), Some(&key), &retrieve).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "video/mp4");
    let video = response.bytes().await.expect("video");
    assert!((video_engine::duration(&video) - 4.0).abs() < 0.5);
    assert_eq!(
        engine.held(),
        0,
        "the provider took the video and the engine deleted it"
    );
    assert_eq!(engine.deleted().len(), 1);
    // Charged once, for four seconds at a dime, when the job was queued.
    let response = post(
        &http,
        &api("queue"),
        Some(&key),
        &json!({"model": MODEL, "prompt": "again", "duration": "4s"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let now = decimal_units(
        response.headers()["x-venice-balance-diem"]
            .to_str()
            .expect("text"),
    );
    assert_eq!(before - now, 4 * 10u128.pow(17), "four seconds at a dime");

    // The video again, until completed; then nothing is left at the provider.
    let response = post(&http, &api("retrieve"), Some(&key), &retrieve).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.expect("video").len(), video.len());
    let response = post(&http, &api("complete"), Some(&key), &retrieve).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"success": true})
    );
    let response = post(&http, &api("retrieve"), Some(&key), &retrieve).await;
    assert_eq!(response.status(), 404);
    let left: Vec<String> = std::fs::read_dir(provider_data.join("provider/video-jobs"))
        .expect("the jobs folder")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 1, "only the second job is kept: {left:?}");

    // A job that fails at the engine says so.
    let second = post(
        &http,
        &api("queue"),
        Some(&key),
        &json!({"model": MODEL, "prompt": "a storm", "duration": "8s"}),
    )
    .await
    .json::<Value>()
    .await
    .expect("json");
    engine.fail_all();
    let response = post(
        &http,
        &api("retrieve"),
        Some(&key),
        &json!({"model": MODEL, "queue_id": second["queue_id"]}),
    )
    .await;
    assert_eq!(response.status(), 500);
    let error: Value = response.json().await.expect("json");
    assert!(
        error["error"]
            .as_str()
            .expect("message")
            .contains("sampler diverged"),
        "{error}"
    );

    // Bad requests, refused before any engine is asked.
    let asked = engine.bodies().len();
    for (body, param) in [
        (
            json!({"model": MODEL, "prompt": "a", "duration": "5s"}),
            "duration",
        ),
        (
            json!({"model": MODEL, "prompt": "a", "duration": "4s", "resolution": "1080p"}),
            "resolution",
        ),
        (
            json!({"model": MODEL, "prompt": "a", "duration": "4s", "image_url": "https://example.com/a.png"}),
            "image_url",
        ),
        (json!({"model": MODEL, "duration": "4s"}), "prompt"),
    ] {
        let response = post(&http, &api("queue"), Some(&key), &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["param"], param, "{body}: {error}");
    }
    assert_eq!(engine.bodies().len(), asked);
    let response = post(&http, &api("retrieve"), None, &retrieve).await;
    assert_eq!(response.status(), 401, "a key is needed");

    // Four, four and eight seconds at a dime are $1.60 of the day's $2: twelve more seconds
    // ($1.20) are refused before any engine is asked.
    let response = post(
        &http,
        &api("queue"),
        Some(&key),
        &json!({"model": MODEL, "prompt": "a long take", "duration": "12s"}),
    )
    .await;
    assert_eq!(response.status(), 402);
    assert_eq!(engine.bodies().len(), asked);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_video_job_outlives_restarts_of_its_provider_and_of_the_gateway() {
    let config = "[gateway.limits]\nlease_ttl_ms = 2000\nheartbeat_interval_ms = 100\n";
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let (mut gateway, url) = gateway_at(&dir, port, config);
    let engine = video_engine::start(ENGINE_MODEL).await;
    let provider_dir = tempfile::tempdir().expect("temp dir");
    let provider_data = provider_dir.path().join("data");
    let mut provider = video_provider(&url, &engine, &provider_data);
    let http = client();
    let queued: Value = post(
        &http,
        &format!("{url}/api/v1/video/queue"),
        None,
        &json!({"model": MODEL, "prompt": "a lighthouse at night", "duration": "4s"}),
    )
    .await
    .json()
    .await
    .expect("json");
    let retrieve = json!({"model": MODEL, "queue_id": queued["queue_id"]});

    // The provider goes away: its job is unreachable, not lost.
    provider.kill();
    engine.finish_all();
    let response = post(
        &http,
        &format!("{url}/api/v1/video/retrieve"),
        None,
        &retrieve,
    )
    .await;
    assert_eq!(
        response.status(),
        503,
        "{}",
        response.text().await.unwrap_or_default()
    );
    let restarted = Instant::now();
    let _provider = video_provider(&url, &engine, &provider_data);
    let response = post(
        &http,
        &format!("{url}/api/v1/video/retrieve"),
        None,
        &retrieve,
    )
    .await;
    assert_eq!(response.status(), 200);
    let recovered = restarted.elapsed();
    let video = response.bytes().await.expect("video");
    assert!((video_engine::duration(&video) - 4.0).abs() < 0.5);
    eprintln!(
        "a job's provider was back and its video retrieved {recovered:?} after it was restarted"
    );

    // The gateway restarts on its address: the queue id still opens, once the provider has
    // registered again.
    gateway.kill();
    let (_gateway, url) = gateway_at(&dir, port, config);
    let restarted = Instant::now();
    let mut response = post(
        &http,
        &format!("{url}/api/v1/video/retrieve"),
        None,
        &retrieve,
    )
    .await;
    while response.status() == 503 && restarted.elapsed() < std::time::Duration::from_secs(30) {
        // The provider re-registers at its next heartbeat (every 100 ms here).
        tokio::task::yield_now().await;
        response = post(
            &http,
            &format!("{url}/api/v1/video/retrieve"),
            None,
            &retrieve,
        )
        .await;
    }
    assert_eq!(response.status(), 200, "{:?}", restarted.elapsed());
    assert_eq!(response.bytes().await.expect("video"), video);
    eprintln!(
        "after a gateway restart, the job was reachable again in {:?}",
        restarted.elapsed()
    );
}
