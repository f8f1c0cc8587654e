//! The embedded engine through its own API, on the real model: reproducible seeds, stop
//! strings, grammar-constrained JSON, cancellation, and its bounds.

use std::time::Duration;

use engine::{
    ChatMessage, Engine, EngineConfig, Event, FinishReason, GenerationRequest, OutputFormat,
    Sampling, SubmitError,
};

use crate::support::model_path;

fn engine(max_sequences: u32, queue_depth: usize, context: u32) -> Engine {
    let mut config = EngineConfig::new(model_path());
    config.max_sequences = max_sequences;
    config.queue_depth = queue_depth;
    config.context_tokens_per_sequence = context;
    Engine::load(config).expect("the default model loads")
}

fn request(content: &str, max_tokens: u32, sampling: Sampling) -> GenerationRequest {
    GenerationRequest {
        messages: vec![ChatMessage::text("user", content)],
        sampling,
        max_tokens,
        stop: Vec::new(),
        stop_tokens: Vec::new(),
        format: OutputFormat::Text,
        enable_thinking: true,
        tools: None,
        logprobs: None,
        cache_namespace: None,
    }
}

/// A prompt on which greedy decoding loops (`☃☃☃…`) and never emits an end token, so the
/// generation runs until `max_tokens`: 8,000 tokens take the engine about a minute.
pub fn endless_request() -> GenerationRequest {
    request(
        ENDLESS_PROMPT,
        8000,
        Sampling {
            temperature: 0.0,
            ..Sampling::default()
        },
    )
}

pub const ENDLESS_PROMPT: &str = "Count from 0 to 10 in words. Ünïcödé ☃";

async fn collect(
    mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
) -> (String, Option<engine::Completion>) {
    let mut text = String::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Text(piece) => text.push_str(&piece),
            Event::Done(completion) => return (text, Some(completion)),
            Event::Failed(reason) => panic!("generation failed: {reason}"),
            Event::Logprob(_) => panic!("log-probabilities were not asked for"),
        }
    }
    (text, None)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_seed_gives_the_same_text_and_stop_strings_cut_it() {
    let engine = tokio::task::spawn_blocking(|| engine(2, 4, 1024))
        .await
        .expect("join");
    let sampled = Sampling {
        temperature: 0.9,
        seed: Some(1234),
        ..Sampling::default()
    };
    let prompt = "Tell me a short story about a cat.";
    let (first, done) = collect(
        engine
            .submit(request(prompt, 40, sampled.clone()))
            .expect("submit"),
    )
    .await;
    let (second, _) = collect(
        engine
            .submit(request(prompt, 40, sampled.clone()))
            .expect("submit"),
    )
    .await;
    assert_eq!(first, second);
    let done = done.expect("done");
    assert!(done.prompt_tokens > 0 && done.completion_tokens > 0);

    let greedy = Sampling {
        temperature: 0.0,
        ..Sampling::default()
    };
    let (full, _) = collect(
        engine
            .submit(request("List the days of the week.", 60, greedy.clone()))
            .expect("submit"),
    )
    .await;
    let words: Vec<&str> = full.split_whitespace().collect();
    assert!(words.len() > 4, "{full:?}");
    let stop = words[3].to_owned();
    let mut stopped = request("List the days of the week.", 60, greedy);
    stopped.stop = vec![stop.clone()];
    let (cut, done) = collect(engine.submit(stopped).expect("submit")).await;
    assert!(!cut.contains(&stop), "{cut:?} still holds {stop:?}");
    assert!(full.starts_with(&cut), "{cut:?} is a prefix of {full:?}");
    assert_eq!(done.expect("done").finish_reason, FinishReason::Stop);

    // A stop token id ends the reply where that token would have been, and is not emitted.
    let tokens = engine.tokenize(&full);
    let stop_token = tokens[4];
    let mut by_token = request(
        "List the days of the week.",
        60,
        Sampling {
            temperature: 0.0,
            ..Sampling::default()
        },
    );
    by_token.stop_tokens = vec![stop_token];
    let (cut_by_token, done) = collect(engine.submit(by_token).expect("submit")).await;
    assert!(
        full.starts_with(&cut_by_token),
        "{cut_by_token:?} is a prefix of {full:?}"
    );
    assert!(cut_by_token.len() < full.len(), "{cut_by_token:?}");
    assert!(
        !engine.tokenize(&cut_by_token).contains(&stop_token),
        "{cut_by_token:?}"
    );
    assert_eq!(done.expect("done").finish_reason, FinishReason::Stop);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_schema_constrains_the_output() {
    let engine = tokio::task::spawn_blocking(|| engine(1, 4, 1024))
        .await
        .expect("join");
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": false,
    });
    let mut constrained = request(
        "Describe a person as JSON.",
        80,
        Sampling {
            temperature: 0.0,
            ..Sampling::default()
        },
    );
    constrained.format = OutputFormat::JsonSchema(schema.to_string());
    let (text, done) = collect(engine.submit(constrained).expect("submit")).await;
    assert_eq!(
        done.expect("done").finish_reason,
        FinishReason::Stop,
        "{text}"
    );
    let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(
        value["name"].is_string() && value["age"].is_i64(),
        "{value}"
    );

    let mut broken = request("x", 5, Sampling::default());
    broken.format = OutputFormat::JsonSchema("{not a schema".into());
    assert!(matches!(engine.submit(broken), Err(SubmitError::Schema(_))));
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_receiver_frees_the_sequence_and_the_queue_is_bounded() {
    let engine = tokio::task::spawn_blocking(|| engine(1, 0, 8192))
        .await
        .expect("join");
    let mut events = engine.submit(endless_request()).expect("submit");
    let first = events.recv().await;
    assert!(matches!(first, Some(Event::Text(_))), "{first:?}");
    // It really does not end by itself: the next 200 events are all text.
    for _ in 0..200 {
        assert!(
            matches!(events.recv().await, Some(Event::Text(_))),
            "the endless prompt ended"
        );
    }
    assert!(
        matches!(
            engine.submit(request("x", 2, Sampling::default())),
            Err(SubmitError::AtCapacity { .. })
        ),
        "one sequence, no queue"
    );
    drop(events);
    // The engine notices at its next step; then the sequence is free for the next request.
    let next = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match engine.submit(request(
                "Hi",
                2,
                Sampling {
                    temperature: 0.0,
                    ..Sampling::default()
                },
            )) {
                Ok(events) => return collect(events).await,
                Err(SubmitError::AtCapacity { .. }) => tokio::task::yield_now().await,
                Err(other) => panic!("{other}"),
            }
        }
    })
    .await
    .expect("the cancelled generation let go of its sequence");
    assert!(next.1.is_some());
    assert_eq!(engine.load_figures().running, 0);

    let long = "word ".repeat(9000);
    assert!(matches!(
        engine.submit(request(&long, 5, Sampling::default())),
        Err(SubmitError::PromptTooLong { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_requantized_to_q4_0_loads_and_generates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir
        .path()
        .join("SmolLM2-135M-Instruct.requantized-Q4_0.gguf");
    let source = model_path();
    let written = output.clone();
    tokio::task::spawn_blocking(move || {
        engine::requantize(&source, &written, engine::WeightFormat::Q4_0, 2)
    })
    .await
    .expect("join")
    .expect("llama.cpp converts the model");
    let size = std::fs::metadata(&output).expect("written").len();
    assert!(
        size > 50_000_000 && size < 98_362_432,
        "a 4-bit model, smaller than the Q4_1 source: {size} bytes"
    );
    let loaded = output.clone();
    let engine = tokio::task::spawn_blocking(move || Engine::load(EngineConfig::new(loaded)))
        .await
        .expect("join")
        .expect("loads");
    assert_eq!(engine.info().quantization, "Q4_0");
    let (text, done) = collect(
        engine
            .submit(request(
                "Say hello.",
                8,
                Sampling {
                    temperature: 0.0,
                    ..Sampling::default()
                },
            ))
            .expect("submit"),
    )
    .await;
    assert!(!text.is_empty() && done.is_some());

    let not_a_model = dir.path().join("notes.txt");
    std::fs::write(&not_a_model, "not a model").expect("write");
    let failed = engine::requantize(
        &not_a_model,
        &dir.path().join("out.gguf"),
        engine::WeightFormat::Q8_0,
        1,
    );
    assert!(failed.is_err(), "garbage in is an error, not a crash");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kv_cache_is_held_as_configured_and_both_formats_decode_alike() {
    let load = |format: engine::KvFormat| {
        let mut config = EngineConfig::new(model_path());
        config.max_sequences = 1;
        config.context_tokens_per_sequence = 256;
        config.kv_format = format;
        tokio::task::spawn_blocking(move || Engine::load(config))
    };
    let greedy = || {
        request(
            ENDLESS_PROMPT,
            24,
            Sampling {
                temperature: 0.0,
                ..Sampling::default()
            },
        )
    };
    let mut texts = Vec::new();
    for format in [engine::KvFormat::F16, engine::KvFormat::Q8_0] {
        let engine = load(format).await.expect("join").expect("loads");
        assert_eq!(
            engine.info().kv_format,
            format,
            "the cache is held as asked"
        );
        let (text, done) = collect(engine.submit(greedy()).expect("submit")).await;
        assert_eq!(done.expect("completes").completion_tokens, 24);
        texts.push(text);
    }
    assert!(!texts[0].is_empty());
    assert_eq!(
        texts[0], texts[1],
        "greedy decoding reads the same from an 8-bit cache as from a 16-bit one"
    );
}

/// A conversation of `turns` exchanges after a long system prompt, and a new question.
fn conversation(turns: usize, question: &str) -> Vec<ChatMessage> {
    let mut messages = vec![ChatMessage::text(
        "system",
        "You are a careful assistant for a harbour office. Answer briefly and plainly. ".repeat(12),
    )];
    for turn in 0..turns {
        messages.push(ChatMessage::text(
            "user",
            format!("Question {turn}: name a boat."),
        ));
        messages.push(ChatMessage::text(
            "assistant",
            format!("The boat number {turn} is the Mary."),
        ));
    }
    messages.push(ChatMessage::text("user", question));
    messages
}

fn cached_request(messages: Vec<ChatMessage>, namespace: Option<[u8; 32]>) -> GenerationRequest {
    GenerationRequest {
        messages,
        cache_namespace: namespace,
        ..request(
            "",
            12,
            Sampling {
                temperature: 0.0,
                ..Sampling::default()
            },
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conversation_reuses_its_cached_prefix_within_its_namespace_only() {
    let engine = engine(2, 4, 2048);
    let (alice, bob) = (Some([1u8; 32]), Some([2u8; 32]));
    let run = |messages: Vec<ChatMessage>, namespace| {
        let events = engine
            .submit(cached_request(messages, namespace))
            .expect("submitted");
        async move {
            let (text, done) = collect(events).await;
            (text, done.expect("done"))
        }
    };
    // Without a namespace nothing is read; the first request of a namespace finds nothing.
    let (_, uncached) = run(conversation(3, "And the next one?"), None).await;
    assert_eq!(uncached.cached_tokens, 0);
    let (first_text, first) = run(conversation(3, "And the next one?"), alice).await;
    assert_eq!(first.cached_tokens, 0);
    // The same conversation one turn on: everything before the new turn comes from the cache,
    // and the reply is the one the uncached engine gives.
    let mut next = conversation(3, "And the next one?");
    next.push(ChatMessage::text("assistant", &first_text));
    next.push(ChatMessage::text("user", "Thank you. One more?"));
    let (cached_text, cached) = run(next.clone(), alice).await;
    assert!(
        cached.cached_tokens >= first.prompt_tokens - 1
            && cached.cached_tokens < cached.prompt_tokens,
        "{cached:?} after {first:?}"
    );
    let (plain_text, plain) = run(next.clone(), None).await;
    assert_eq!(plain.cached_tokens, 0);
    assert_eq!(
        cached_text, plain_text,
        "a cached prefix changes nothing of the reply"
    );
    // Another namespace sees none of it.
    let (_, other) = run(next.clone(), bob).await;
    assert_eq!(other.cached_tokens, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_pushed_out_of_its_sequence_comes_back_from_host_memory_within_its_bound() {
    for (budget, restored) in [(64 * 1024 * 1024, true), (0, false)] {
        let mut config = EngineConfig::new(model_path());
        config.max_sequences = 1;
        config.prompt_cache_bytes = budget;
        let engine = Engine::load(config).expect("loads");
        let namespace = Some([3u8; 32]);
        let run = |messages: Vec<ChatMessage>, namespace| {
            let events = engine
                .submit(cached_request(messages, namespace))
                .expect("submitted");
            async move { collect(events).await.1.expect("done") }
        };
        let first = run(conversation(4, "And the next one?"), namespace).await;
        // Another caller's conversation takes the only sequence.
        let other = run(
            vec![ChatMessage::text(
                "user",
                "Tell me about lighthouses and their keepers. ".repeat(8),
            )],
            Some([4u8; 32]),
        )
        .await;
        assert_eq!(other.cached_tokens, 0);
        let back = run(conversation(4, "And the one after?"), namespace).await;
        if restored {
            assert!(
                back.cached_tokens + 16 >= first.prompt_tokens,
                "{back:?} after {first:?}"
            );
        } else {
            assert_eq!(
                back.cached_tokens, 0,
                "nothing is kept beyond the sequences"
            );
        }
    }
}
