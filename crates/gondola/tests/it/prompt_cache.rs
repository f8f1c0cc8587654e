//! The prompt cache through `gondola serve` and the real model: a conversation's next turn
//! reads its earlier turns from the cache and says so in `usage`, and no other caller, nor the
//! same caller under another `prompt_cache_key`, can observe its prefix.

use serde_json::{Value, json};

use crate::support::{client, serve};

const ALICE: &str = "sk-prompt-cache-alice";
const BOB: &str = "sk-prompt-cache-bob";

fn config() -> String {
    format!(
        "[[gateway.keys]]\nname = \"alice\"\nsha256 = \"{}\"\n\n[[gateway.keys]]\nname = \"bob\"\nsha256 = \"{}\"\n",
        hex::encode(gateway::hash_secret(ALICE)),
        hex::encode(gateway::hash_secret(BOB))
    )
}

/// A chat: its reply, its prompt tokens, those read from the cache, and its cost in dollars.
async fn chat(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    messages: &[Value],
    cache_key: Option<&str>,
) -> (String, u64, u64, f64) {
    let mut body = json!({
        "model": "default",
        "messages": messages,
        "max_tokens": 8,
        "temperature": 0,
        "venice_parameters": {"include_venice_system_prompt": false},
    });
    if let Some(cache_key) = cache_key {
        body["prompt_cache_key"] = cache_key.into();
    }
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    (
        body["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
            .to_owned(),
        body["usage"]["prompt_tokens"]
            .as_u64()
            .expect("prompt tokens"),
        body["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .expect("cached tokens"),
        body["cost"]["usd"].as_f64().expect("cost"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conversation_reads_its_own_prefix_from_the_cache_and_nobody_else_can() {
    let (_process, url, _dir) = serve(&[], Some(&config()));
    let http = client();
    let system = "You answer questions about the weather at sea, briefly. ".repeat(10);
    let mut messages = vec![
        json!({"role": "system", "content": system}),
        json!({"role": "user", "content": "Is it windy today?"}),
    ];
    let (reply, first_prompt, cached, _) = chat(&http, &url, ALICE, &messages, None).await;
    assert_eq!(cached, 0, "a first request finds nothing");
    messages.push(json!({"role": "assistant", "content": reply}));
    messages.push(json!({"role": "user", "content": "And tomorrow?"}));

    // Bob sends Alice's conversation: nothing of it is in his cache, whatever is in hers.
    let (bob_reply, bob_prompt, bob_cached, bob_cost) =
        chat(&http, &url, BOB, &messages, None).await;
    assert_eq!(bob_cached, 0);
    // Alice under another prompt_cache_key: another cache of her own.
    let (_, _, keyed, _) = chat(&http, &url, ALICE, &messages, Some("another-thread")).await;
    assert_eq!(keyed, 0);
    // Alice's next turn reads the earlier one from the cache.
    let (reply, prompt, cached, cost) = chat(&http, &url, ALICE, &messages, None).await;
    assert!(
        cached >= first_prompt - 1 && cached < prompt,
        "{cached} of {prompt} prompt tokens cached; the first turn had {first_prompt}"
    );
    // The same reply as Bob's, for less: cached tokens cost half the input price.
    assert_eq!((reply, prompt), (bob_reply, bob_prompt));
    assert!(cost < bob_cost, "{cost} against {bob_cost}");
}
