//! A provider that fails after its first token: the client gets the token, then exactly one
//! well-formed error event, then the end of the stream, within the idle timeout.

use std::time::{Duration, Instant};

use crate::support::{Fault, chat_body, client, fault_provider, gateway, sse_events};

#[tokio::test(flavor = "multi_thread")]
async fn mid_stream_faults_end_the_stream_with_one_error_event() {
    let (_gateway, url, _dir) = gateway("[gateway.limits]\nidle_chunk_timeout_ms = 1000\n");
    let http = client();
    for fault in [
        Fault::DisconnectMidStream,
        Fault::StallMidStream,
        Fault::GarbageMidStream,
    ] {
        let model = format!("fault-{}", format!("{fault:?}").to_lowercase());
        let _provider = fault_provider(&url, &model, fault).await;
        let started = Instant::now();
        let response = http
            .post(format!("{url}/v1/chat/completions"))
            .json(&chat_body(&model, "Hi", 50, true))
            .send()
            .await
            .expect("send");
        assert_eq!(
            response.status(),
            200,
            "{fault:?}: the first token was relayed"
        );
        let body = tokio::time::timeout(Duration::from_secs(10), response.text())
            .await
            .expect("the stream ended")
            .expect("body");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{fault:?} took {:?}",
            started.elapsed()
        );
        let events = sse_events(&body);
        assert!(events[0].contains("partial"), "{fault:?}: {events:?}");
        let errors: Vec<&String> = events
            .iter()
            .filter(|event| event.contains("\"error\""))
            .collect();
        assert_eq!(errors.len(), 1, "{fault:?}: {events:?}");
        assert_eq!(
            events.last(),
            errors.last().copied(),
            "{fault:?}: the error event is the last"
        );
        let error: serde_json::Value = serde_json::from_str(errors[0]).expect("well-formed");
        assert!(
            error["error"]["message"].is_string() && error["error"]["code"].is_string(),
            "{error}"
        );

        // Non-streaming: the same failure is an error response, not a partial answer.
        let response = http
            .post(format!("{url}/v1/chat/completions"))
            .json(&chat_body(&model, "Hi", 50, false))
            .send()
            .await
            .expect("send");
        assert!(
            response.status().is_server_error(),
            "{fault:?}: {}",
            response.status()
        );
        let value: serde_json::Value = response.json().await.expect("json error");
        assert!(value["error"]["code"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_every_provider_failing_the_client_gets_a_clear_error_in_bounded_time() {
    let (_gateway, url, _dir) =
        gateway("[gateway.limits]\nfirst_byte_timeout_ms = 800\nmax_attempts = 2\n");
    let _stalled = fault_provider(&url, "lonely", Fault::Stall).await;
    let http = client();
    let started = Instant::now();
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat_body("lonely", "Hi", 5, false))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(5));
    let offline = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat_body("nobody-serves-this", "Hi", 5, false))
        .send()
        .await
        .expect("send");
    assert_eq!(offline.status(), 404);
}
