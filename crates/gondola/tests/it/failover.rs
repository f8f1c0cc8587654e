//! Several providers behind one gateway: a provider killed mid-run, and providers that fail
//! before their first token, are routed around without the client noticing.

use crate::embeddings::LlamaServer;
use crate::support::{
    Fault, Process, chat_body, client, fault_provider, gateway, model_path, post_json, provider,
    serve, sse_events, streamed_text,
};

const MODEL: &str = "smollm2-135m-instruct";

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_provider_is_routed_around_and_the_survivor_is_named() {
    let (_gateway, url, _dir) = gateway("[gateway.limits]\nconnect_timeout_ms = 1000\n");
    let (mut first, first_id) = provider(&url);
    let (_second, second_id) = provider(&url);
    let http = client();
    let ask = || {
        http.post(format!("{url}/v1/chat/completions"))
            .json(&chat_body(MODEL, "Hi", 3, false))
            .send()
    };
    let mut served_by = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let response = ask().await.expect("send");
        assert_eq!(response.status(), 200);
        served_by.insert(
            response.headers()["x-gondola-provider"]
                .to_str()
                .expect("header")
                .to_owned(),
        );
    }
    assert!(
        served_by
            .iter()
            .all(|id| *id == first_id || *id == second_id),
        "{served_by:?}"
    );
    first.kill();
    for _ in 0..6 {
        let response = ask().await.expect("send");
        assert_eq!(
            response.status(),
            200,
            "{}",
            response.text().await.unwrap_or_default()
        );
        assert_eq!(response.headers()["x-gondola-provider"], second_id.as_str());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_before_the_first_token_fail_over_without_a_client_visible_error() {
    let config = "[gateway.limits]\nfirst_byte_timeout_ms = 1500\nbreaker_failure_threshold = 1000\nmax_attempts = 5\n";
    let (_process, url, _dir) = serve(&[], Some(config));
    let http = client();
    let healthy = post_json(
        &http,
        format!("{url}/v1/chat/completions"),
        &chat_body(MODEL, "Hi", 2, false),
    )
    .await;
    assert!(healthy["id"].is_string());
    let faults = [
        Fault::Stall,
        Fault::ServerError,
        Fault::Garbage,
        Fault::DisconnectEarly,
    ];
    let mut faulty = Vec::new();
    for fault in faults {
        faulty.push((fault, fault_provider(&url, MODEL, fault).await));
    }
    // Keep asking until every faulty provider was tried at least once (routing is random).
    for round in 0..60 {
        let stream = round % 2 == 0;
        let response = http
            .post(format!("{url}/v1/chat/completions"))
            .json(&chat_body(MODEL, "Hi", 3, stream))
            .send()
            .await
            .expect("send");
        assert_eq!(
            response.status(),
            200,
            "round {round}: {}",
            response.text().await.unwrap_or_default()
        );
        let provider = response.headers()["x-gondola-provider"]
            .to_str()
            .expect("header")
            .to_owned();
        assert!(
            faulty.iter().all(|(_, fault)| fault.id != provider),
            "a faulty provider was named"
        );
        let text = response.text().await.expect("body");
        assert!(!text.contains("\"error\""), "round {round}: {text}");
        if faulty
            .iter()
            .all(|(_, fault)| !fault.seen.lock().expect("lock").requests.is_empty())
        {
            return;
        }
    }
    let untried: Vec<_> = faulty
        .iter()
        .filter(|(_, fault)| fault.seen.lock().expect("lock").requests.is_empty())
        .map(|(kind, _)| *kind)
        .collect();
    panic!("some faulty providers were never tried: {untried:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_breaker_stops_traffic_to_a_failing_provider() {
    let config = "[gateway.limits]\nbreaker_failure_threshold = 2\nbreaker_open_ms = 600000\nmax_attempts = 3\n";
    let (_process, url, _dir) = serve(&[], Some(config));
    let failing = fault_provider(&url, MODEL, Fault::ServerError).await;
    let http = client();
    for _ in 0..30 {
        let response = http
            .post(format!("{url}/v1/chat/completions"))
            .json(&chat_body(MODEL, "Hi", 2, false))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200);
    }
    let hits = failing.seen.lock().expect("lock").requests.len();
    assert_eq!(
        hits, 2,
        "the breaker opens after two failures and stays open"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_fronts_llama_cpps_server_for_chat_and_fails_over_to_the_embedded_engine() {
    // The engine: llama.cpp's own server with the default model's GGUF.
    let mut engine = LlamaServer::start(&model_path(), "chat");
    let (_gateway, url, _dir) = gateway("");
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("temp dir"));
    let data = dir.path().join("data").display().to_string();
    let engine_base = format!("{}/v1", engine.url);
    let mut upstream = Process::start(
        &[
            "provider",
            "--gateway",
            &url,
            "--upstream",
            &engine_base,
            "--model",
            "smollm2",
            "--model-id",
            MODEL,
            "--data-dir",
            &data,
        ],
        dir,
    );
    upstream.wait_for_line("ready: provider");
    let http = client();

    // Whole: llama.cpp's reply and its token counts, in OpenAI's shape.
    let whole = post_json(
        &http,
        format!("{url}/v1/chat/completions"),
        &chat_body(MODEL, "Name a colour.", 12, false),
    )
    .await;
    assert!(
        !whole["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
            .is_empty(),
        "{whole}"
    );
    assert!(whole["usage"]["prompt_tokens"].as_u64().expect("prompt") > 0);
    assert!(
        whole["usage"]["completion_tokens"]
            .as_u64()
            .expect("completion")
            > 0
    );
    // Streamed: the text in pieces, then the usage.
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat_body(MODEL, "Name a colour.", 12, true))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let events = sse_events(&response.text().await.expect("body"));
    assert!(events.len() > 3, "{events:?}");
    assert!(!streamed_text(&events).is_empty());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    // The embedded engine serves the model too; llama.cpp's server goes away without a word,
    // and requests are served by the other provider.
    let (_embedded, embedded_id) = provider(&url);
    engine.stop();
    for _ in 0..3 {
        let response = http
            .post(format!("{url}/v1/chat/completions"))
            .json(&chat_body(MODEL, "Hi", 4, false))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["x-gondola-provider"],
            embedded_id.as_str()
        );
    }
}
