//! Several providers behind one gateway: a provider killed mid-run, and providers that fail
//! before their first token, are routed around without the client noticing.

use crate::support::{
    Fault, chat_body, client, fault_provider, gateway, post_json, provider, serve,
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
