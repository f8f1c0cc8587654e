//! Privacy: nothing a client sends reaches a log line, a file or a metric, and a provider gets
//! only what the model needs: no client header, address, key or `user`.

use std::path::Path;

use crate::support::{Fault, client, fault_provider, serve};

fn canary() -> String {
    let mut bytes = [0u8; 8];
    rand::fill(&mut bytes);
    format!("CANARY{}", hex::encode(bytes))
}

pub(crate) fn files_containing(root: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|window| window == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_appears_in_no_log_file_or_metric_and_providers_get_no_identity() {
    let secret = canary();
    let (process, url, dir) = serve(&[], None);
    let http = client();
    let message = format!("Repeat this word: {secret}");
    let base = serde_json::json!({"model": "default", "messages": [{"role": "user", "content": message}], "max_tokens": 8, "user": secret});

    let plain = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&base)
        .send()
        .await
        .expect("send");
    assert_eq!(plain.status(), 200);
    let mut streaming = base.clone();
    streaming["stream"] = true.into();
    let streamed = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&streaming)
        .send()
        .await
        .expect("send");
    assert_eq!(streamed.status(), 200);
    streamed.text().await.expect("body");
    // Error paths: the canary as a bad value, as an unknown model, and as an API key.
    let mut bad = base.clone();
    bad["temperature"] = secret.clone().into();
    assert_eq!(
        http.post(format!("{url}/v1/chat/completions"))
            .json(&bad)
            .send()
            .await
            .expect("send")
            .status(),
        400
    );
    let mut unknown = base.clone();
    unknown["model"] = secret.clone().into();
    assert_eq!(
        http.post(format!("{url}/v1/chat/completions"))
            .json(&unknown)
            .send()
            .await
            .expect("send")
            .status(),
        404
    );
    // No keys are configured, so a presented key is not checked, but it still passes through.
    let keyed = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&base)
        .send()
        .await
        .expect("send");
    assert_eq!(keyed.status(), 200);
    // A provider that crashes mid-stream, seeing the request: it must see no identity.
    let crashing = fault_provider(&url, "crashy", Fault::DisconnectMidStream).await;
    let mut crash = streaming.clone();
    crash["model"] = "crashy".into();
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-client-marker", &secret)
        .json(&crash)
        .send()
        .await
        .expect("send");
    assert!(response.text().await.expect("body").contains("\"error\""));

    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(!metrics.contains(&secret), "metrics hold the canary");
    let log = process.stderr();
    assert!(
        log.contains("chat completion"),
        "debug logs were captured: {log}"
    );
    assert!(!log.contains(&secret), "the log holds the canary");
    let leaked = files_containing(dir.path(), secret.as_bytes());
    assert!(leaked.is_empty(), "files hold the canary: {leaked:?}");

    let seen = crashing.seen.lock().expect("lock");
    let (headers, body) = &seen.requests[0];
    assert!(
        body.contains(&secret),
        "the provider gets the prompt it must run"
    );
    let request: serde_json::Value = serde_json::from_str(body).expect("json");
    assert!(request.get("user").is_none(), "no user field: {body}");
    let names: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
    assert!(
        !names.contains(&"x-forwarded-for") && !names.contains(&"x-client-marker"),
        "{names:?}"
    );
    assert!(
        headers
            .iter()
            .all(|(_, value)| !value.contains(&secret) && !value.contains("203.0.113.7")),
        "{headers:?}"
    );
    let request_id = headers
        .iter()
        .find(|(name, _)| name == "x-request-id")
        .map(|(_, value)| value.clone())
        .expect("a request id");
    assert!(
        !request_id.starts_with("chatcmpl-"),
        "a fresh id, not the client's"
    );
}
