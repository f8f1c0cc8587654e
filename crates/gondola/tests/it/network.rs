//! The provider network's rules: admission by signature and policy, API key kinds, a provider
//! fronting an OpenAI-compatible engine, and the terminal clients.

use std::process::Command;

use ed25519_dalek::SigningKey;
use wire::provider::{
    ModelAdvert, REGISTER_PATH, REGISTRATION_PURPOSE, Registration, SignedEnvelope,
};

use crate::support::{
    Fault, Process, binary, chat_body, client, fault_provider, gateway, get_json, holds, post_json,
    registration_challenge, serve, sse_events, tap,
};

fn registration(endpoint: &str, challenge: String) -> Registration {
    Registration {
        purpose: REGISTRATION_PURPOSE.into(),
        challenge,
        issued_at_ms: u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_millis(),
        )
        .expect("ms"),
        endpoint: endpoint.into(),
        models: vec![ModelAdvert {
            model_type: wire::models::ModelType::Text,
            id: "m".into(),
            name: "m".into(),
            context_tokens: 1,
            quantization: "Q4_1".into(),
            parameters: 1,
            supports_response_schema: false,
            supports_reasoning: false,
            supports_function_calling: true,
            supports_logprobs: true,
            input_media: Vec::new(),
            backend: "embedded".into(),
            voices: Vec::new(),
            image: None,
            video: None,
        }],
        max_in_flight: 1,
        software_version: "test".into(),
        sealing_keys: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_needs_a_valid_signature_and_the_operators_admission() {
    let admitted = SigningKey::from_bytes(&[7; 32]);
    let stranger = SigningKey::from_bytes(&[8; 32]);
    let config = format!(
        "[gateway]\nadmission = \"allowlist\"\nallowed_providers = [\"{}\"]\n",
        hex::encode(admitted.verifying_key().as_bytes())
    );
    let (_gateway, url, _dir) = gateway(&config);
    let http = client();
    let register = |envelope: SignedEnvelope| {
        http.post(format!("{url}{REGISTER_PATH}"))
            .json(&envelope)
            .send()
    };
    let fresh = || registration_challenge(&http, &url);
    let ok = register(
        SignedEnvelope::sign(
            &admitted,
            &registration("http://127.0.0.1:9", fresh().await),
        )
        .expect("sign"),
    )
    .await
    .expect("send");
    assert_eq!(ok.status(), 200);
    let refused = register(
        SignedEnvelope::sign(
            &stranger,
            &registration("http://127.0.0.1:9", fresh().await),
        )
        .expect("sign"),
    )
    .await
    .expect("send");
    assert_eq!(refused.status(), 403);
    let mut forged = SignedEnvelope::sign(
        &stranger,
        &registration("http://127.0.0.1:9", fresh().await),
    )
    .expect("sign");
    forged.public_key = hex::encode(admitted.verifying_key().as_bytes());
    assert_eq!(register(forged).await.expect("send").status(), 401);
    let mut stale = registration("http://127.0.0.1:9", fresh().await);
    stale.issued_at_ms -= 3_600_000;
    assert_eq!(
        register(SignedEnvelope::sign(&admitted, &stale).expect("sign"))
            .await
            .expect("send")
            .status(),
        400
    );
    let garbage = http
        .post(format!("{url}{REGISTER_PATH}"))
        .body("not json")
        .send()
        .await
        .expect("send");
    assert_eq!(garbage.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn inference_and_admin_keys_have_their_own_rights() {
    let inference = "sk-inference-test";
    let admin = "sk-admin-test";
    let config = format!(
        "[[gateway.keys]]\nname = \"app\"\nsha256 = \"{}\"\n\n[[gateway.keys]]\nname = \"ops\"\nkind = \"admin\"\nsha256 = \"{}\"\n",
        hex::encode(gateway::hash_secret(inference)),
        hex::encode(gateway::hash_secret(admin))
    );
    let (_gateway, url, _dir) = gateway(&config);
    let _provider = fault_provider(&url, "m", Fault::ServerError).await;
    let http = client();
    let providers = |key: Option<&'static str>| {
        let request = http.get(format!("{url}/api/v1/providers"));
        let request = match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        async move { request.send().await.expect("send") }
    };
    assert_eq!(providers(None).await.status(), 401);
    assert_eq!(providers(Some("sk-wrong")).await.status(), 401);
    assert_eq!(providers(Some(inference)).await.status(), 403);
    let listed: serde_json::Value = providers(Some(admin)).await.json().await.expect("json");
    assert_eq!(listed["data"][0]["models"][0], "m");
    assert_eq!(listed["data"][0]["breaker"], "closed");
    let anonymous = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat_body("m", "x", 1, false))
        .send()
        .await
        .expect("send");
    assert_eq!(
        anonymous.status(),
        401,
        "keys are configured, so anonymous use is off"
    );
    let keyed = http.post(format!("{url}/v1/models")).bearer_auth(inference);
    assert_eq!(
        keyed.send().await.expect("send").status(),
        405,
        "models is GET only"
    );
    let models = http
        .get(format!("{url}/v1/models"))
        .bearer_auth(inference)
        .send()
        .await
        .expect("send");
    assert_eq!(models.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_can_front_an_openai_compatible_engine() {
    // The upstream engine is another Gondola's OpenAI-compatible /v1.
    let (_engine, engine_url, _engine_dir) = serve(&[], None);
    let (_gateway, url, dir) = gateway("");
    let data = dir.path().join("upstream-provider").display().to_string();
    let upstream = format!("{engine_url}/v1");
    let mut provider = Process::start(
        &[
            "provider",
            "--gateway",
            &url,
            "--upstream",
            &upstream,
            "--model",
            "default",
            "--model-id",
            "relayed",
            "--data-dir",
            &data,
        ],
        std::sync::Arc::clone(&dir),
    );
    provider.wait_for_line("ready: provider");
    let http = client();
    let reply = post_json(
        &http,
        format!("{url}/v1/chat/completions"),
        &chat_body("relayed", "Hi", 6, false),
    )
    .await;
    assert!(
        !reply["choices"][0]["message"]["content"]
            .as_str()
            .expect("text")
            .is_empty(),
        "{reply}"
    );
    assert!(reply["usage"]["completion_tokens"].as_u64().expect("usage") > 0);
    assert_eq!(reply["model"], "relayed");
    let models = get_json(&http, format!("{url}/v1/models")).await;
    assert_eq!(models["data"][0]["model_spec"]["modelSource"], "upstream");
    assert_eq!(
        models["data"][0]["model_spec"]["capabilities"]["supportsFunctionCalling"],
        true
    );

    // Tools pass through to the engine and its calls come back, streamed and whole.
    let mut with_tools = chat_body("relayed", "Weather in Paris?", 64, true);
    with_tools["temperature"] = 0.into();
    with_tools["tools"] = serde_json::json!([{"type": "function", "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }}]);
    with_tools["tool_choice"] = "required".into();
    let streamed = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&with_tools)
        .send()
        .await
        .expect("send");
    assert_eq!(streamed.status(), 200);
    let events = sse_events(&streamed.text().await.expect("body"));
    let chunks: Vec<serde_json::Value> = events
        .iter()
        .filter(|event| *event != "[DONE]")
        .map(|event| serde_json::from_str(event).expect("a chunk"))
        .collect();
    let mut arguments = String::new();
    let mut names = Vec::new();
    for chunk in &chunks {
        for call in chunk["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(name) = call["function"]["name"].as_str() {
                names.push(name.to_owned());
            }
            arguments.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
    }
    assert_eq!(names, ["get_weather"], "{events:?}");
    let arguments: serde_json::Value = serde_json::from_str(&arguments).expect("JSON arguments");
    assert!(arguments["city"].is_string(), "{arguments}");
    assert!(
        chunks
            .iter()
            .any(|chunk| chunk["choices"][0]["finish_reason"] == "tool_calls"),
        "{events:?}"
    );
    with_tools["stream"] = false.into();
    let whole = post_json(&http, format!("{url}/v1/chat/completions"), &with_tools).await;
    let message = &whole["choices"][0]["message"];
    assert_eq!(message["content"], serde_json::Value::Null, "{whole}");
    assert_eq!(message["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_terminal_clients_list_models_and_stream_a_reply() {
    let (_process, url, _dir) = serve(&[], None);
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            Command::new(binary())
                .args(args)
                .output()
                .expect("run gondola")
        })
    };
    let models = run(vec!["models".into(), "--gateway".into(), url.clone()])
        .await
        .expect("join");
    assert!(models.status.success());
    let listing = String::from_utf8_lossy(&models.stdout);
    assert!(
        listing.contains("smollm2-135m-instruct") && listing.contains("default"),
        "{listing}"
    );
    let chat = run(vec![
        "chat".into(),
        "--gateway".into(),
        url.clone(),
        "--max-tokens".into(),
        "8".into(),
        "Say hi.".into(),
    ])
    .await
    .expect("join");
    assert!(
        chat.status.success(),
        "{}",
        String::from_utf8_lossy(&chat.stderr)
    );
    assert!(!String::from_utf8_lossy(&chat.stdout).trim().is_empty());
    let summary = String::from_utf8_lossy(&chat.stderr);
    assert!(
        summary.contains("pv-") && summary.contains("completion tokens"),
        "{summary}"
    );
    let down = run(vec![
        "chat".into(),
        "--gateway".into(),
        "http://127.0.0.1:9".into(),
        "hi".into(),
    ])
    .await
    .expect("join");
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot reach the gateway"));
}

#[tokio::test(flavor = "multi_thread")]
async fn images_reach_an_upstream_that_takes_them_as_sent_and_a_text_model_refuses_them() {
    // The upstream engine is another Gondola's /v1, behind a wiretap that keeps what reaches it.
    let (_engine, engine_url, _engine_dir) = serve(&[], None);
    let upstream_link = tap(&engine_url).await;
    let (_gateway, url, dir) = gateway("");
    let data = dir.path().join("vision-provider").display().to_string();
    let upstream = format!("{}/v1", upstream_link.url);
    let mut provider = Process::start(
        &[
            "provider",
            "--gateway",
            &url,
            "--upstream",
            &upstream,
            "--model",
            "default",
            "--model-id",
            "seeing",
            "--upstream-inputs",
            "image,file",
            "--data-dir",
            &data,
        ],
        std::sync::Arc::clone(&dir),
    );
    provider.wait_for_line("ready: provider");
    let http = client();
    let models = get_json(&http, format!("{url}/v1/models")).await;
    let capabilities = &models["data"][0]["model_spec"]["capabilities"];
    assert_eq!(capabilities["supportsVision"], true, "{capabilities}");
    assert_eq!(capabilities["supportsAudioInput"], false);

    let image = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let mut body = chat_body("seeing", "unused", 4, false);
    body["messages"] = serde_json::json!([{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": image, "detail": "low"}},
    ]}]);
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("send");
    // The upstream (a text model, as it happens) got the image as sent and answered for itself.
    let status = response.status();
    let answer: serde_json::Value = response.json().await.expect("json");
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("image")),
        "{answer}"
    );
    let sent = upstream_link.sent.lock().expect("log").clone();
    assert!(
        holds(&sent, image),
        "the image reached the upstream as sent"
    );
    assert!(holds(&sent, "\"detail\":\"low\""));

    // Audio is not among the upstream's inputs: the gateway refuses it, naming what it takes.
    body["messages"][0]["content"][1] = serde_json::json!({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}});
    let refused = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 400);
    let error: serde_json::Value = refused.json().await.expect("json");
    let message = error["error"]["message"].as_str().expect("a message");
    assert!(
        message.contains("text and file, image") && message.contains("audio"),
        "{message}"
    );
    // The embedded default model takes text only, and says so.
    let text_only = http
        .post(format!("{engine_url}/v1/chat/completions"))
        .json(&{
            let mut body = body.clone();
            body["model"] = "default".into();
            body["messages"][0]["content"][1] =
                serde_json::json!({"type": "image_url", "image_url": {"url": image}});
            body
        })
        .send()
        .await
        .expect("send");
    assert_eq!(text_only.status(), 400);
    let error: serde_json::Value = text_only.json().await.expect("json");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("takes text only")),
        "{error}"
    );
}
