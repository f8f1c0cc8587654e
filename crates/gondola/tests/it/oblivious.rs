//! Oblivious HTTP against `gondola serve` with the real model: the key configuration is
//! published at the well-known path, a sealed chat request is answered with a sealed reply the
//! client opens, a sealed request for a route outside the chat and model APIs is refused inside
//! the envelope, and a tampered or mislabelled envelope is refused without harming the gateway.

use ::privacy::client;
use gateway::oblivious;
use serde_json::Value;

use crate::support::{chat_body, client as http_client, serve};

const MODEL: &str = "smollm2-135m-instruct";

async fn send(http: &reqwest::Client, url: &str, body: Vec<u8>) -> reqwest::Response {
    http.post(format!("{url}{}", oblivious::GATEWAY_PATH))
        .header("content-type", oblivious::REQUEST_MEDIA_TYPE)
        .body(body)
        .send()
        .await
        .expect("send")
}

#[tokio::test(flavor = "multi_thread")]
async fn sealed_requests_reach_the_api_and_sealed_replies_open() {
    let (_process, url, _dir) = serve(&[], None);
    let http = http_client();

    let keys = http
        .get(format!("{url}{}", oblivious::KEYS_PATH))
        .send()
        .await
        .expect("keys");
    assert_eq!(keys.status(), 200);
    assert_eq!(keys.headers()["content-type"], oblivious::KEYS_MEDIA_TYPE);
    let keys = keys.bytes().await.expect("body").to_vec();

    // A chat completion, sealed.
    let body = serde_json::to_vec(&chat_body(MODEL, "Say hello.", 8, false)).expect("json");
    let sealed = client::seal(
        &keys,
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        &body,
    )
    .expect("sealed");
    assert!(
        !sealed.body.windows(5).any(|window| window == b"hello"),
        "the envelope holds no plaintext"
    );
    let response = send(&http, &url, sealed.body.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        oblivious::RESPONSE_MEDIA_TYPE
    );
    let envelope = response.bytes().await.expect("body");
    let opened = sealed.open(&envelope).expect("opens");
    assert_eq!(
        opened.status,
        200,
        "{}",
        String::from_utf8_lossy(&opened.body)
    );
    let completion: Value = serde_json::from_slice(&opened.body).expect("a completion");
    let text = completion["choices"][0]["message"]["content"]
        .as_str()
        .expect("text");
    assert!(!text.is_empty());
    assert!(
        completion["usage"]["completion_tokens"]
            .as_u64()
            .expect("tokens")
            > 0
    );

    // The model list, sealed.
    let sealed = client::seal(&keys, "GET", "/api/v1/models", &[], b"").expect("sealed");
    let envelope = send(&http, &url, sealed.body.clone())
        .await
        .bytes()
        .await
        .expect("body");
    let opened = sealed.open(&envelope).expect("opens");
    assert_eq!(opened.status, 200);
    let models: Value = serde_json::from_slice(&opened.body).expect("a list");
    assert!(
        models["data"]
            .as_array()
            .expect("models")
            .iter()
            .any(|model| model["id"] == MODEL)
    );

    // Any other route is refused inside the envelope.
    let sealed = client::seal(&keys, "GET", "/metrics", &[], b"").expect("sealed");
    let envelope = send(&http, &url, sealed.body.clone())
        .await
        .bytes()
        .await
        .expect("body");
    assert_eq!(sealed.open(&envelope).expect("opens").status, 400);

    // A tampered envelope and a mislabelled one are refused in the clear.
    let sealed = client::seal(&keys, "GET", "/v1/models", &[], b"").expect("sealed");
    let mut tampered = sealed.body.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(send(&http, &url, tampered).await.status(), 400);
    let mislabelled = http
        .post(format!("{url}{}", oblivious::GATEWAY_PATH))
        .header("content-type", "application/json")
        .body(sealed.body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(mislabelled.status(), 415);
    // The gateway is unharmed: the untampered envelope still opens.
    let envelope = send(&http, &url, sealed.body.clone())
        .await
        .bytes()
        .await
        .expect("body");
    assert_eq!(sealed.open(&envelope).expect("opens").status, 200);
}
