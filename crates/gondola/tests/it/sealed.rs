//! Sealed chat end to end, with real processes and the real model: `gondola proxy` (with an
//! account's key, paying with privacy tokens) → `gondola relay` → `gondola gateway` → a
//! separate `gondola provider`, with a wiretap on the gateway-to-provider link. The tests check
//! what each party could see: the gateway neither the prompt nor the reply, the provider the
//! prompt (opened here with the provider's own key) but no key, token or address.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::economy::ledger_config;
use crate::support::{
    canary, chat_body, client, gateway, holds, provider_with, proxy, relay, requests, sse_events,
    streamed_text, tap,
};
use crate::tokens::account_key;

const MODEL: &str = "smollm2-135m-instruct";

#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_chat_is_read_by_its_provider_alone_and_comes_back_with_a_verified_receipt() {
    let secret = canary();
    let prompt = format!("Repeat this word: {secret}");
    let (gateway_process, gateway_url, dir) =
        gateway(&ledger_config("0.1", "sk-sealed-operator", "1"));
    // The provider listens on a port of its own and tells the gateway to reach it through a
    // wiretap, which keeps everything the gateway sends it and gets back.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let provider_link = tap(&format!("http://127.0.0.1:{port}")).await;
    let listen = format!("127.0.0.1:{port}");
    let ((provider_process, provider_id), provider_data) = provider_with(
        &gateway_url,
        &["--listen", &listen, "--advertise", &provider_link.url],
    );
    let api_key = account_key(&gateway_url, dir.path());
    let (relay_process, relay_url) = relay(&gateway_url);
    let (proxy_process, proxy_url) = proxy(&relay_url, &["--api-key", &api_key]);
    let http = client();

    // The gateway lists the provider with its sealing key and its signing key.
    let listed: serde_json::Value = http
        .get(format!("{gateway_url}/v1/privacy/providers"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let listed = &listed["data"];
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["id"], provider_id.as_str());
    assert_eq!(listed[0]["models"][0], MODEL);
    assert!(
        listed[0]["keys"]
            .as_str()
            .is_some_and(|keys| !keys.is_empty())
    );

    // A streamed chat and a whole one, through proxy and relay, sealed to the provider.
    let streamed = http
        .post(format!("{proxy_url}/v1/chat/completions"))
        .json(&chat_body(MODEL, &prompt, 12, true))
        .send()
        .await
        .expect("send");
    assert_eq!(streamed.status(), 200);
    assert_eq!(streamed.headers()["content-type"], "text/event-stream");
    assert_eq!(
        streamed.headers()["x-gondola-provider"],
        provider_id.as_str()
    );
    let events = sse_events(&streamed.text().await.expect("a verified reply"));
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let reply = streamed_text(&events);
    assert!(!reply.is_empty());
    let whole: serde_json::Value = {
        let response = http
            .post(format!("{proxy_url}/v1/chat/completions"))
            .json(&chat_body(MODEL, &prompt, 8, false))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200);
        response.json().await.expect("a completion")
    };
    assert_eq!(whole["object"], "chat.completion");
    assert!(
        whole["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|text| !text.is_empty()),
        "{whole}"
    );
    assert!(
        whole["usage"]["completion_tokens"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    );

    // Tools travel sealed too: the provider's engine calls the named function.
    let mut tool_request = chat_body(MODEL, &prompt, 64, false);
    tool_request["temperature"] = 0.into();
    tool_request["tools"] = serde_json::json!([{"type": "function", "function": {
        "name": "remember_word",
        "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
    }}]);
    tool_request["tool_choice"] =
        serde_json::json!({"type": "function", "function": {"name": "remember_word"}});
    let called: serde_json::Value = {
        let response = http
            .post(format!("{proxy_url}/v1/chat/completions"))
            .json(&tool_request)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200);
        response.json().await.expect("a completion")
    };
    assert_eq!(
        called["choices"][0]["finish_reason"], "tool_calls",
        "{called}"
    );
    let call = &called["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "remember_word", "{called}");
    let arguments: serde_json::Value = serde_json::from_str(
        call["function"]["arguments"]
            .as_str()
            .expect("arguments text"),
    )
    .expect("arguments are JSON");
    assert!(arguments["word"].is_string(), "{arguments}");

    // What the gateway sent the provider: sealed requests and nothing of the client.
    let sent = provider_link.sent.lock().expect("log").clone();
    let received = provider_link.received.lock().expect("log").clone();
    let sealed_requests: Vec<_> = requests(&sent)
        .into_iter()
        .filter(|(fields, _)| {
            fields
                .iter()
                .any(|(name, value)| name == "content-type" && value == "message/ohttp-chunked-req")
        })
        .collect();
    assert_eq!(sealed_requests.len(), 3);
    for (link, bytes) in [
        ("gateway to provider", &sent),
        ("provider to gateway", &received),
    ] {
        assert!(!holds(bytes, &secret), "the prompt crossed {link} readably");
        assert!(
            !holds(bytes, "Repeat this word"),
            "the prompt crossed {link}"
        );
        assert!(!holds(bytes, &api_key), "the API key crossed {link}");
        assert!(!holds(bytes, "PrivateToken"), "a token crossed {link}");
        assert!(!holds(bytes, "remember_word"), "a tool crossed {link}");
        assert!(
            !holds(bytes, "\"choices\""),
            "a reply crossed {link} readably"
        );
        if reply.len() >= 12 {
            assert!(!holds(bytes, &reply), "the reply crossed {link} readably");
        }
    }
    // The provider's view: opened with its own key (derived from its identity, as it does),
    // each request is the client's chat request, prompt and all, and holds no key or token.
    let secret_key: [u8; 32] = hex::decode(
        std::fs::read_to_string(provider_data.join("provider").join("provider-ed25519.key"))
            .expect("the provider's key")
            .trim(),
    )
    .expect("hex")
    .try_into()
    .expect("32 bytes");
    let keys = privacy::sealed::ProviderKeys::derive(&secret_key, false).expect("keys");
    for (fields, body) in &sealed_requests {
        for (name, _) in fields {
            assert!(
                [
                    "host",
                    "authorization",
                    "content-type",
                    "content-length",
                    "accept",
                    "x-request-id",
                    "x-gondola-model",
                    "x-gondola-max-tokens",
                ]
                .contains(&name.as_str()),
                "the gateway sent the provider a {name} header"
            );
        }
        let (_, plaintext, _, _) = keys.open(body).await.expect("the provider opens it");
        let plaintext = String::from_utf8(plaintext).expect("JSON");
        assert!(plaintext.contains(&secret), "{plaintext}");
        assert!(!plaintext.contains(&api_key));
        assert!(!plaintext.contains("PrivateToken"));
        assert!(!plaintext.contains("127.0.0.1"));
    }

    // The gateway charged tokens and logged sizes, never content.
    let gateway_log = gateway_process.stderr();
    assert_eq!(
        gateway_log.matches("sealed chat completion").count(),
        3,
        "{gateway_log}"
    );
    assert_eq!(gateway_log.matches("paid_with=\"tokens\"").count(), 3);
    for (name, log) in [
        ("gateway", gateway_process.stderr()),
        ("provider", provider_process.stderr()),
        ("relay", relay_process.stderr()),
        ("proxy", proxy_process.stderr()),
    ] {
        assert!(!log.contains(&secret), "the {name}'s log holds the prompt");
        assert!(!log.contains(&api_key), "the {name}'s log holds the key");
    }

    // A sealed request tampered with on the way is refused, and nothing falls over: the same
    // gateway and provider serve the next one.
    let mut tampered = sealed_requests[0].1.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 1;
    let refused = http
        .post(format!("{gateway_url}/v1/privacy/chat"))
        .bearer_auth(&api_key)
        .json(&serde_json::json!({
            "model": MODEL,
            "max_tokens": 8,
            "sealed": [{"provider": provider_id, "request": BASE64.encode(&tampered)}],
        }))
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 400);
    let refused: serde_json::Value = refused.json().await.expect("json");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("decrypted")),
        "{refused}"
    );
    // Declared for another provider, or with nothing sealed: refused before any provider.
    for body in [
        serde_json::json!({"model": MODEL, "max_tokens": 8, "sealed": []}),
        serde_json::json!({"model": MODEL, "max_tokens": 8,
            "sealed": [{"provider": "pv-0000000000000000", "request": BASE64.encode(b"x")}]}),
        serde_json::json!({"model": "no-such-model", "max_tokens": 8,
            "sealed": [{"provider": provider_id, "request": BASE64.encode(b"x")}]}),
    ] {
        let response = http
            .post(format!("{gateway_url}/v1/privacy/chat"))
            .bearer_auth(&api_key)
            .json(&body)
            .send()
            .await
            .expect("send");
        assert!(
            [400, 404, 503].contains(&response.status().as_u16()),
            "{body}: {}",
            response.status()
        );
        let error: serde_json::Value = response.json().await.expect("json");
        assert!(error["error"]["message"].as_str().is_some(), "{error}");
    }
    let again = http
        .post(format!("{proxy_url}/v1/chat/completions"))
        .json(&chat_body(MODEL, &prompt, 4, true))
        .send()
        .await
        .expect("send");
    assert_eq!(again.status(), 200);
    let events = sse_events(&again.text().await.expect("a verified reply"));
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}
