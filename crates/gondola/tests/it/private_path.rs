//! The private path end to end, with real processes: a client (the official `openai` Python
//! package through `gondola proxy`, and `gondola chat --private`) → `gondola relay` →
//! `gondola serve` with the real model, paid with privacy tokens where an account's key is
//! given. Wiretaps on both links keep every byte that crossed
//! them, so the tests check what a relay or an eavesdropper could see, not what the code says.

use std::process::Command;

use crate::sdk::check_the_openai_script_against;
use crate::support::{
    binary, canary, chat_body, client, holds, proxy, relay, requests, serve, sse_events,
    streamed_text, tap,
};
use crate::tokens::account_key;

const MODEL: &str = "smollm2-135m-instruct";

/// The header names of each HTTP/1.1 request in `bytes`.
fn request_header_names(bytes: &[u8]) -> Vec<Vec<String>> {
    requests(bytes)
        .into_iter()
        .map(|(fields, _)| fields.into_iter().map(|(name, _)| name).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_openai_python_client_streams_through_the_proxy_and_relay() {
    let (_gateway, gateway_url, _dir) = serve(&[], None);
    let (_relay, relay_url) = relay(&gateway_url);
    let (_proxy, proxy_url) = proxy(&relay_url, &[]);
    // Completion, stream with usage, models, and a request the gateway refuses coming back
    // with the gateway's own status and error.
    check_the_openai_script_against(format!("{proxy_url}/v1")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_chat_crosses_relay_and_gateway_with_nothing_readable_on_either_link() {
    let secret = canary();
    let prompt = format!("Repeat this word: {secret}");
    let (gateway, gateway_url, dir) = serve(&[], None);
    // An account's key: it buys privacy tokens, and the requests carry tokens instead.
    let api_key = account_key(&gateway_url, dir.path());
    let gateway_link = tap(&gateway_url).await;
    let (relay_process, relay_url) = relay(&gateway_link.url);
    let client_link = tap(&relay_url).await;

    // `gondola chat --private`, through the tapped link to the relay.
    let chat = {
        let args = vec![
            "chat".to_owned(),
            "--private".to_owned(),
            "--relay".to_owned(),
            client_link.url.clone(),
            "--api-key".to_owned(),
            api_key.clone(),
            "--max-tokens".to_owned(),
            "12".to_owned(),
            prompt.clone(),
        ];
        tokio::task::spawn_blocking(move || Command::new(binary()).args(args).output())
            .await
            .expect("join")
            .expect("run gondola chat")
    };
    let chat_stderr = String::from_utf8_lossy(&chat.stderr);
    assert!(chat.status.success(), "{chat_stderr}");
    assert!(!String::from_utf8_lossy(&chat.stdout).trim().is_empty());
    assert!(
        chat_stderr.contains(", sealed, receipt verified: "),
        "{chat_stderr}"
    );

    // A streamed request through `gondola proxy`: events arrive as events.
    let (proxy_process, proxy_url) = proxy(&client_link.url, &["--api-key", &api_key]);
    let http = client();
    let response = http
        .post(format!("{proxy_url}/v1/chat/completions"))
        .json(&chat_body(MODEL, &prompt, 12, true))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse_events(&response.text().await.expect("body"));
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let reply = streamed_text(&events);
    assert!(!reply.is_empty());
    // Routes the proxy does not carry are refused in the API's own error shape.
    let refused = http
        .get(format!("{proxy_url}/v1/api_keys"))
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 404);
    let refused: serde_json::Value = refused.json().await.expect("json");
    assert!(refused["error"]["message"].as_str().is_some());

    // Neither link carried the prompt, the API key or the reply in a readable form.
    let links = [
        (
            "client to relay",
            client_link.sent.lock().expect("log").clone(),
        ),
        (
            "relay to client",
            client_link.received.lock().expect("log").clone(),
        ),
        (
            "relay to gateway",
            gateway_link.sent.lock().expect("log").clone(),
        ),
        (
            "gateway to relay",
            gateway_link.received.lock().expect("log").clone(),
        ),
    ];
    for (link, bytes) in &links {
        assert!(bytes.len() > 1000, "{link} carried the exchange");
        assert!(!holds(bytes, &secret), "the prompt crossed {link}");
        assert!(!holds(bytes, &api_key), "the API key crossed {link}");
        assert!(
            !holds(bytes, "Repeat this word"),
            "the prompt crossed {link}"
        );
        if reply.len() >= 12 {
            assert!(!holds(bytes, &reply), "the reply crossed {link}");
        }
        assert!(!holds(bytes, "\"choices\""), "a reply crossed {link}");
    }
    // The relay passed on nothing of the client's request but the sealed body and its type.
    for names in request_header_names(&links[2].1) {
        for name in &names {
            assert!(
                ["host", "content-type", "content-length", "accept"].contains(&name.as_str()),
                "the relay sent the gateway a {name} header"
            );
        }
    }
    // The gateway was paid with tokens: it never learned which account asked.
    let gateway_log = gateway.stderr();
    assert_eq!(
        gateway_log.matches("paid_with=\"tokens\"").count(),
        2,
        "{gateway_log}"
    );
    assert!(!gateway_log.contains("paid_with=\"account\""));
    // No process wrote the prompt or the key to its log.
    for (name, log) in [
        ("gateway", gateway.stderr()),
        ("relay", relay_process.stderr()),
        ("proxy", proxy_process.stderr()),
    ] {
        assert!(!log.contains(&secret), "the {name}'s log holds the prompt");
        assert!(!log.contains(&api_key), "the {name}'s log holds the key");
    }
    assert!(relay_process.stderr().contains("relayed"));

    // The relay refuses what is not a sealed request.
    let mislabelled = http
        .post(format!("{relay_url}/ohttp"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(mislabelled.status(), 415);
    let elsewhere = http
        .get(format!("{relay_url}/v1/models"))
        .send()
        .await
        .expect("send");
    assert_eq!(elsewhere.status(), 404);
}

/// Embeddings, speech, transcription and images down the private path: through `gondola proxy` and `gondola relay`,
/// paid with privacy tokens, the text readable on neither link, and the answers the same as
/// those the gateway gives directly.
#[tokio::test(flavor = "multi_thread")]
async fn embeddings_and_speech_cross_relay_and_gateway_sealed_and_paid_with_tokens() {
    let secret = canary();
    let text = format!("The word {secret} is spoken and embedded.");
    let (gateway, gateway_url, dir) = serve(&[], None);
    let api_key = account_key(&gateway_url, dir.path());
    let gateway_link = tap(&gateway_url).await;
    let (_relay_process, relay_url) = relay(&gateway_link.url);
    let client_link = tap(&relay_url).await;
    let (proxy_process, proxy_url) = proxy(&client_link.url, &["--api-key", &api_key]);
    let http = client();

    let embedded = |base: String, key: Option<String>| {
        let http = http.clone();
        let text = text.clone();
        async move {
            let mut request = http
                .post(format!("{base}/v1/embeddings"))
                .json(&serde_json::json!({"model": "text-embedding-3-small", "input": [text]}));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await.expect("send");
            assert_eq!(response.status(), 200);
            let body: serde_json::Value = response.json().await.expect("json");
            body["data"][0]["embedding"]
                .as_array()
                .expect("a vector")
                .iter()
                .map(|value| value.as_f64().expect("a number"))
                .collect::<Vec<f64>>()
        }
    };
    let private = embedded(proxy_url.clone(), None).await;
    let direct = embedded(gateway_url.clone(), Some(api_key.clone())).await;
    assert_eq!(private.len(), 384);
    let difference = private
        .iter()
        .zip(&direct)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(difference < 1e-4, "{difference}");

    let spoken = http
        .post(format!("{proxy_url}/v1/audio/speech"))
        .json(&serde_json::json!({"input": text, "response_format": "wav"}))
        .send()
        .await
        .expect("send");
    assert_eq!(spoken.status(), 200);
    assert_eq!(spoken.headers()["content-type"], "audio/wav");
    let audio = spoken.bytes().await.expect("audio");
    assert_eq!(&audio[..4], b"RIFF");
    assert!(
        audio.len() > 44 + 22_050,
        "more than half a second of speech"
    );
    // The speech, transcribed back down the same path: a multipart upload, sealed.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(audio.to_vec()).file_name("speech.wav"),
        )
        .text("response_format", "text");
    let heard = http
        .post(format!("{proxy_url}/v1/audio/transcriptions"))
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(heard.status(), 200);
    let heard = heard.text().await.expect("text");
    assert!(heard.to_lowercase().contains("spoken"), "{heard}");
    let voices: serde_json::Value = http
        .get(format!("{proxy_url}/v1/audio/voices"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(voices["data"][0]["id"], "joe");
    // An image, down the same path, from a provider in front of a stand-in engine.
    let engine =
        crate::image_engines::start(crate::image_engines::Engine::Automatic1111, "sd15", None)
            .await;
    let _image_provider = crate::support::typed_provider(
        &gateway_url,
        "private-image",
        "image",
        &[
            "--upstream",
            &engine.base_url,
            "--upstream-api",
            "automatic1111",
            "--model",
            "sd15",
        ],
    );
    let painted = http
        .post(format!("{proxy_url}/v1/images/generations"))
        .json(&serde_json::json!({"model": "private-image", "prompt": text, "size": "64x64"}))
        .send()
        .await
        .expect("send");
    assert_eq!(painted.status(), 200);
    let painted: serde_json::Value = painted.json().await.expect("json");
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        painted["data"][0]["b64_json"].as_str().expect("an image"),
    )
    .expect("base64");
    assert!(png.starts_with(b"\x89PNG"));
    assert!(
        engine.received().bodies[0]["prompt"]
            .as_str()
            .expect("prompt")
            .contains(&secret)
    );
    // Venice's shape goes sealed to the image model's provider, which signs a receipt over the
    // request and the images; the proxy checks it.
    let sealed = http
        .post(format!("{proxy_url}/api/v1/image/generate"))
        .json(&serde_json::json!({"model": "private-image", "prompt": text, "width": 64, "height": 64, "format": "png"}))
        .send()
        .await
        .expect("send");
    assert_eq!(sealed.status(), 200);
    let sealed: serde_json::Value = sealed.json().await.expect("json");
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        sealed["images"][0].as_str().expect("an image"),
    )
    .expect("base64");
    assert!(png.starts_with(b"\x89PNG"));
    assert_eq!(engine.received().bodies.len(), 2);

    for (link, bytes) in [
        (
            "client to relay",
            client_link.sent.lock().expect("log").clone(),
        ),
        (
            "relay to gateway",
            gateway_link.sent.lock().expect("log").clone(),
        ),
        (
            "gateway to relay",
            gateway_link.received.lock().expect("log").clone(),
        ),
    ] {
        assert!(!holds(&bytes, &secret), "the text crossed {link}");
        assert!(!holds(&bytes, &api_key), "the API key crossed {link}");
        assert!(!holds(&bytes, "\"embedding\""), "a vector crossed {link}");
        assert!(!holds(&bytes, "RIFF"), "audio crossed {link}");
        assert!(!holds(&bytes, "iVBORw0KGgo"), "an image crossed {link}");
    }
    let log = gateway.stderr();
    assert_eq!(log.matches("paid_with=\"tokens\"").count(), 5, "{log}");
    let sealed_lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("sealed image"))
        .collect();
    assert_eq!(sealed_lines.len(), 1, "{log}");
    assert!(
        sealed_lines[0].contains("model=private-image"),
        "{}",
        sealed_lines[0]
    );
    let proxy_log = proxy_process.stderr();
    assert!(
        proxy_log.contains("the provider's receipt verified"),
        "{proxy_log}"
    );
    assert!(!log.contains(&secret));
}

#[test]
fn chat_private_without_a_relay_says_what_is_missing() {
    let output = Command::new(binary())
        .args(["chat", "--private", "hello"])
        .env_remove("GONDOLA_RELAY")
        .output()
        .expect("run gondola chat");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--relay"), "{stderr}");
}
