//! `gondola serve` with the real default model: chat both ways, both dialects, the catalogue,
//! bad input, cancellation, and the operational endpoints.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::support::{chat_body, client, get_json, post_json, serve, sse_events, streamed_text};

const MODEL: &str = "smollm2-135m-instruct";

#[tokio::test(flavor = "multi_thread")]
async fn chat_streams_and_answers_with_usage_cost_and_provider() {
    let (_process, url, _dir) = serve(&[], None);
    let http = client();

    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat_body("default", "Name a color.", 16, false))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let provider = response.headers()["x-gondola-provider"]
        .to_str()
        .expect("header")
        .to_owned();
    assert!(provider.starts_with("pv-"));
    assert_eq!(
        response.headers()["x-venice-model-id"],
        "smollm2-135m-instruct"
    );
    assert!(
        response
            .headers()
            .contains_key("x-ratelimit-remaining-requests")
    );
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        !body["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
            .is_empty()
    );
    assert_eq!(body["object"], "chat.completion");
    let usage = &body["usage"];
    assert!(usage["prompt_tokens"].as_u64().expect("prompt") > 0);
    assert!(usage["completion_tokens"].as_u64().expect("completion") > 0);
    assert!(body["cost"]["usd"].as_f64().expect("cost") > 0.0);
    // A first request finds nothing in the prompt cache, and this model does not reason.
    assert_eq!(
        body["usage"]["prompt_tokens_details"]["cached_tokens"], 0,
        "{body}"
    );
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );
    // Nobody's allowance paid (no ledger here): the price is in dollars.
    assert_eq!(body["cost"]["diem"].as_f64(), Some(0.0), "{body}");

    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat_body("default", "Count to five.", 24, true))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse_events(&response.text().await.expect("body"));
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(events.len() > 3, "streamed in several chunks: {events:?}");
    assert!(!streamed_text(&events).is_empty());
    let usage_event: serde_json::Value =
        serde_json::from_str(&events[events.len() - 2]).expect("usage chunk");
    assert_eq!(usage_event["choices"], serde_json::json!([]));
    assert!(
        usage_event["usage"]["completion_tokens"]
            .as_u64()
            .expect("tokens")
            > 0
    );
    assert!(usage_event["cost"]["usd"].as_f64().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn venice_requests_with_parameters_and_a_model_suffix_work_on_api_v1() {
    let operator_prompt = "You are the assistant of this Gondola instance. Always answer in plain English, in one short sentence, \
        without lists, without markdown, and without repeating the question. If you do not know, say so. Be kind and precise.";
    let (_process, url, _dir) = serve(&["--system-prompt", operator_prompt], None);
    let http = client();
    let body = serde_json::json!({
        "model": "default:strip_thinking_response=true&enable_web_search=auto",
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 12,
        "venice_parameters": {"include_venice_system_prompt": false, "enable_e2ee": true},
        "user": "someone",
    });
    let response = http
        .post(format!("{url}/api/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    // What had no effect is named in a header too, for streamed replies that carry no echo.
    let named = response.headers()["x-gondola-ignored-parameters"]
        .to_str()
        .expect("text")
        .to_owned();
    for name in ["enable_e2ee", "enable_web_search", "user"] {
        assert!(named.contains(name), "{named}");
    }
    let body: serde_json::Value = response.json().await.expect("json");
    let echo = &body["venice_parameters"];
    assert_eq!(echo["strip_thinking_response"], true);
    assert_eq!(echo["include_venice_system_prompt"], false);
    let ignored: Vec<&str> = echo["ignored_parameters"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    assert!(
        ignored.contains(&"enable_e2ee") && ignored.contains(&"enable_web_search"),
        "{ignored:?}"
    );

    // The operator's system prompt is added (a longer prompt) unless the request opts out.
    let with_prompt = serde_json::json!({"model": "default", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1});
    let mut without_prompt = with_prompt.clone();
    without_prompt["venice_parameters"] =
        serde_json::json!({"include_venice_system_prompt": false});
    let prompt_tokens = |body: serde_json::Value| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let value = post_json(&http, format!("{url}/api/v1/chat/completions"), &body).await;
            value["usage"]["prompt_tokens"].as_u64().expect("tokens")
        }
    };
    assert!(prompt_tokens(with_prompt).await > prompt_tokens(without_prompt).await);

    let error = post_json(&http, format!("{url}/api/v1/chat/completions"), &serde_json::json!({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})).await;
    assert!(error["error"].is_string(), "Venice error shape: {error}");
    assert_eq!(error["code"], "MODEL_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_catalogue_lists_the_served_model_with_its_spec() {
    let (_process, url, _dir) = serve(&[], None);
    let http = client();
    let models = get_json(&http, format!("{url}/v1/models")).await;
    let model = &models["data"][0];
    assert_eq!(model["id"], "smollm2-135m-instruct");
    assert_eq!(model["type"], "text");
    let spec = &model["model_spec"];
    assert_eq!(spec["privacy"], "private");
    // Venice's name for the weights' format; the GGUF's own is in the description.
    assert_eq!(spec["capabilities"]["quantization"], "int4");
    assert!(
        spec["description"]
            .as_str()
            .is_some_and(|text| text.contains("Q4_1")),
        "{spec}"
    );
    assert_eq!(spec["capabilities"]["supportsResponseSchema"], true);
    assert_eq!(spec["capabilities"]["supportsFunctionCalling"], true);
    assert_eq!(models["type"], "text");
    assert_eq!(model["owned_by"], "gondola");
    let venice = get_json(&http, format!("{url}/api/v1/models")).await;
    assert_eq!(venice["data"][0]["owned_by"], "venice.ai");
    assert!(spec["pricing"]["output"]["usd"].as_f64().expect("price") > 0.0);
    assert_eq!(spec["availableContextTokens"], 2048);
    assert_eq!(spec["maxCompletionTokens"], 2048);
    assert_eq!(spec["providers"], 1);
    let images = get_json(&http, format!("{url}/v1/models?type=image")).await;
    assert_eq!(images["data"], serde_json::json!([]));
    assert_eq!(images["type"], "image");
    let traits = get_json(&http, format!("{url}/api/v1/models/traits")).await;
    assert_eq!(traits["data"]["default"], "smollm2-135m-instruct");
    let aliases = get_json(&http, format!("{url}/api/v1/models/compatibility_mapping")).await;
    assert_eq!(aliases["data"]["gpt-4o-mini"], "smollm2-135m-instruct");
    let alias_reply = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat_body("gpt-4o-mini", "Hi", 2, false))
        .send()
        .await
        .expect("send");
    assert_eq!(alias_reply.status(), 200);

    let openapi = get_json(&http, format!("{url}/api/v1/openapi.json")).await;
    let paths = openapi["paths"].as_object().expect("paths");
    for path in [
        "/v1/chat/completions",
        "/api/v1/chat/completions",
        "/v1/models",
        "/api/v1/models/traits",
        "/healthz",
        "/metrics",
        "/provider/v1/register",
        "/v1/privacy/tokens",
        "/v1/privacy/chat",
        "/api/v1/privacy/providers",
        "/.well-known/private-token-issuer-directory",
    ] {
        assert!(paths.contains_key(path), "OpenAPI document lacks {path}");
    }
    let health = get_json(&http, format!("{url}/healthz")).await;
    // `serve` runs six providers: the chat model's, the embedding model's, the voice's, the
    // transcription model's, the background remover's and the upscaler's.
    assert_eq!(health["providers"], 6);
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            "gondola_requests_total{route=\"chat\",model=\"smollm2-135m-instruct\",status=\"200\"}"
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_the_right_status_and_names_the_problem_and_the_process_stays_up() {
    let (_process, url, _dir) = serve(&[], None);
    let http = client();
    let post = |body: Vec<u8>, content_type: &'static str| {
        let request = http
            .post(format!("{url}/v1/chat/completions"))
            .header("content-type", content_type)
            .body(body);
        async move {
            let response = request.send().await.expect("send");
            let status = response.status().as_u16();
            let value: serde_json::Value = response.json().await.expect("error body is JSON");
            (status, value)
        }
    };
    let json = |value: serde_json::Value| value.to_string().into_bytes();
    // Body, content type, expected status, code and field.
    type Case = (
        Vec<u8>,
        &'static str,
        u16,
        &'static str,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            b"{not json".to_vec(),
            "application/json",
            400,
            "invalid_request",
            None,
        ),
        (
            json(
                serde_json::json!({"model": "default", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
            ),
            "application/json",
            400,
            "invalid_request",
            Some("temperature"),
        ),
        (
            json(
                serde_json::json!({"model": "default", "messages": [{"role": "user", "content": "x"}], "top_p": 7}),
            ),
            "application/json",
            400,
            "invalid_request",
            Some("top_p"),
        ),
        (
            json(
                serde_json::json!({"model": "missing-model", "messages": [{"role": "user", "content": "x"}]}),
            ),
            "application/json",
            404,
            "model_not_found",
            Some("model"),
        ),
        (
            json(serde_json::json!({"model": "default", "messages": []})),
            "application/json",
            400,
            "invalid_request",
            Some("messages"),
        ),
        (
            json(
                serde_json::json!({"model": "default", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1_000_000}),
            ),
            "application/json",
            400,
            "context_length_exceeded",
            Some("max_tokens"),
        ),
        (
            vec![b'a'; 3 * 1024 * 1024],
            "application/json",
            413,
            "payload_too_large",
            None,
        ),
        (
            b"<xml/>".to_vec(),
            "application/xml",
            415,
            "invalid_content_type",
            None,
        ),
    ];
    for (body, content_type, status, code, param) in cases {
        let (got_status, value) = post(body, content_type).await;
        assert_eq!(got_status, status, "{value}");
        assert_eq!(value["error"]["code"], code, "{value}");
        assert!(
            !value["error"]["message"]
                .as_str()
                .expect("message")
                .is_empty()
        );
        if let Some(param) = param {
            assert_eq!(value["error"]["param"], param, "{value}");
        }
    }
    // Nulls and fields generic clients send are accepted.
    let liberal = serde_json::json!({
        "model": "default", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2,
        "user": "u-123", "store": false, "metadata": {"k": "v"}, "max_completion_tokens": null, "stream_options": null,
    });
    let (status, value) = post(json(liberal), "application/json").await;
    assert_eq!(status, 200, "{value}");
    let health = http
        .get(format!("{url}/healthz"))
        .send()
        .await
        .expect("still up");
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_cancels_its_generation() {
    // One sequence only: a second request can start only once the first lets go of it.
    let (_process, url, _dir) = serve(
        &["--parallel", "1", "--context", "8192"],
        Some("[gateway.limits]\nmax_output_tokens = 8000\n"),
    );
    let http = client();
    // Greedy decoding loops on this prompt and would run to all 8000 tokens.
    let long = serde_json::json!({
        "model": "default", "messages": [{"role": "user", "content": crate::engine_direct::ENDLESS_PROMPT}],
        "max_tokens": 8000, "stream": true, "temperature": 0,
        "venice_parameters": {"include_venice_system_prompt": false},
    });
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&long)
        .send()
        .await
        .expect("send");
    let mut stream = response.bytes_stream();
    let first = stream.next().await.expect("a first chunk").expect("bytes");
    assert!(!first.is_empty());
    drop(stream);
    // 8000 tokens take the engine well over a minute; the next request gets the sequence now.
    let started = Instant::now();
    let next = tokio::time::timeout(
        Duration::from_secs(45),
        http.post(format!("{url}/v1/chat/completions"))
            .json(&chat_body("default", "Hi", 4, false))
            .send(),
    )
    .await
    .expect("the abandoned generation was cancelled and freed its sequence")
    .expect("send");
    assert_eq!(next.status(), 200);
    eprintln!(
        "second request served {} ms after the first client left",
        started.elapsed().as_millis()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_character_is_listed_and_its_prompt_and_model_play_the_request() {
    let config = r#"
[[gateway.characters]]
slug = "lighthouse-keeper"
name = "The Keeper"
system_prompt = "You keep a lighthouse on a rocky island. You speak of storms, ships and the light, always in a calm and patient voice, and you never leave your post."
model = "default"
tags = ["roleplay"]
"#;
    let (_process, url, _dir) = serve(&[], Some(config));
    let http = client();
    let listed = get_json(&http, format!("{url}/api/v1/characters?tags=roleplay")).await;
    assert_eq!(listed["data"][0]["slug"], "lighthouse-keeper", "{listed}");
    assert_eq!(listed["data"][0]["modelId"], "default");
    let prompt_tokens = |body: serde_json::Value| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let reply = post_json(&http, format!("{url}/api/v1/chat/completions"), &body).await;
            assert_eq!(reply["object"], "chat.completion", "{reply}");
            (
                reply["usage"]["prompt_tokens"].as_u64().expect("a count"),
                reply["venice_parameters"].clone(),
                reply["model"].clone(),
            )
        }
    };
    // The same request, once plain, once as the character (by parameter, then by suffix): the
    // character's prompt reaches the model, so the prompt is longer by about its length.
    let mut plain = chat_body(
        "no-such-model-but-the-character-names-one",
        "Hello",
        1,
        false,
    );
    let (without, _, _) = prompt_tokens(chat_body(MODEL, "Hello", 1, false)).await;
    plain["venice_parameters"] = serde_json::json!({"character_slug": "lighthouse-keeper"});
    let (with, echo, model) = prompt_tokens(plain).await;
    assert_eq!(model, MODEL, "the character's model served it");
    assert_eq!(echo["character_slug"], "lighthouse-keeper");
    assert!(
        with >= without + 25,
        "{with} prompt tokens with the character, {without} without"
    );
    let (by_suffix, _, _) = prompt_tokens(chat_body(
        &format!("{MODEL}:character_slug=lighthouse-keeper"),
        "Hello",
        1,
        false,
    ))
    .await;
    assert_eq!(by_suffix, with);
    // An unknown character is the client's mistake, named.
    let mut unknown = chat_body(MODEL, "Hello", 1, false);
    unknown["venice_parameters"] = serde_json::json!({"character_slug": "ghost"});
    let response = http
        .post(format!("{url}/api/v1/chat/completions"))
        .json(&unknown)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 404);
    let error: serde_json::Value = response.json().await.expect("json");
    assert_eq!(error["param"], "character_slug", "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn log_probabilities_come_with_every_token_streamed_and_not() {
    let (_process, url, _dir) = serve(&[], None);
    let http = client();
    let mut body = chat_body(MODEL, "Name three colours.", 6, false);
    body["temperature"] = 0.into();
    body["logprobs"] = true.into();
    body["top_logprobs"] = 3.into();
    let reply = post_json(&http, format!("{url}/v1/chat/completions"), &body).await;
    let choice = &reply["choices"][0];
    let entries = choice["logprobs"]["content"].as_array().expect("entries");
    // One entry per generated token; their bytes make the text.
    assert_eq!(
        entries.len() as u64,
        reply["usage"]["completion_tokens"]
            .as_u64()
            .expect("a count"),
        "{reply}"
    );
    let bytes: Vec<u8> = entries
        .iter()
        .flat_map(|entry| entry["bytes"].as_array().expect("bytes").clone())
        .map(|byte| u8::try_from(byte.as_u64().expect("a byte")).expect("a byte"))
        .collect();
    assert_eq!(
        String::from_utf8(bytes).expect("UTF-8"),
        choice["message"]["content"].as_str().expect("text")
    );
    for entry in entries {
        let logprob = entry["logprob"].as_f64().expect("a number");
        assert!(logprob <= 0.0, "{entry}");
        let top = entry["top_logprobs"].as_array().expect("alternatives");
        assert_eq!(top.len(), 3, "{entry}");
        // Greedy decoding picks the likeliest token, and the alternatives come likeliest first.
        assert_eq!(top[0]["token"], entry["token"], "{entry}");
        assert!(
            top.windows(2)
                .all(|pair| pair[0]["logprob"].as_f64() >= pair[1]["logprob"].as_f64())
        );
    }
    // Streamed, each chunk carries the entries of the tokens its text came from.
    body["stream"] = true.into();
    let streamed = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    let streamed_entries: usize = sse_events(&streamed)
        .iter()
        .filter(|event| *event != "[DONE]")
        .map(|event| serde_json::from_str::<serde_json::Value>(event).expect("a chunk"))
        .map(|chunk| {
            chunk["choices"][0]["logprobs"]["content"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .sum();
    assert_eq!(streamed_entries, entries.len());
    // Asking for alternatives without log-probabilities is the client's mistake, named.
    let mut wrong = chat_body(MODEL, "Hi", 2, false);
    wrong["top_logprobs"] = 2.into();
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&wrong)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    let error: serde_json::Value = response.json().await.expect("json");
    assert_eq!(error["error"]["param"], "top_logprobs");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_choices_come_back_each_whole_streamed_and_not() {
    let (_process, url, _dir) = serve(&[], None);
    let http = client();
    let mut body = chat_body(MODEL, "Name a colour.", 6, false);
    body["n"] = 3.into();
    body["temperature"] = 1.0.into();
    body["seed"] = 7.into();
    let reply = post_json(&http, format!("{url}/v1/chat/completions"), &body).await;
    let choices = reply["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 3, "{reply}");
    for (index, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], index, "{reply}");
        assert!(
            !choice["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{reply}"
        );
        assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap_or_default()));
    }
    // Each choice is a generation of its own (a seed gives each its own), paid for together.
    let completion = reply["usage"]["completion_tokens"]
        .as_u64()
        .expect("a count");
    assert!((3..=18).contains(&completion), "{reply}");

    body["stream"] = true.into();
    body["stream_options"] = serde_json::json!({"include_usage": true});
    let streamed = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    let mut texts = [String::new(), String::new(), String::new()];
    let mut roles = [0, 0, 0];
    let mut finished = [false, false, false];
    for event in sse_events(&streamed)
        .iter()
        .filter(|event| *event != "[DONE]")
    {
        let chunk: serde_json::Value = serde_json::from_str(event).expect("a chunk");
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            let index =
                usize::try_from(choice["index"].as_u64().expect("an index")).expect("small");
            texts[index].push_str(choice["delta"]["content"].as_str().unwrap_or_default());
            roles[index] += usize::from(choice["delta"]["role"] == "assistant");
            finished[index] |= choice["finish_reason"].is_string();
        }
    }
    assert!(texts.iter().all(|text| !text.is_empty()), "{texts:?}");
    assert_eq!(roles, [1, 1, 1], "each choice announces its role once");
    assert_eq!(finished, [true, true, true]);

    // More choices than allowed is the client's mistake, named.
    body["n"] = 9.into();
    let refused = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 400);
    let error: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(error["error"]["param"], "n");
}
