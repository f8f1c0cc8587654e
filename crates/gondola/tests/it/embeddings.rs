//! Embeddings against the real binary and the real all-MiniLM-L6-v2: vectors that match an
//! independent numpy reference and rank similar texts higher, through the official SDKs;
//! batches equal to single requests, base64 equal to floats; bad input refused in the API's
//! shape with the process up; inputs kept out of the logs; charged per input token; and a
//! provider fronting an OpenAI-compatible embedding engine, with failover to another.

use std::process::Command;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::economy::{decimal_units, staked_account_key};
use crate::sdk::run_script;
use crate::support::{binary, client, embedding_model_path, gateway, serve};

const EMBEDDING_MODEL: &str = "all-minilm-l6-v2";
const ADMIN_SECRET: &str = "sk-embeddings-operator";

async fn embed(
    http: &reqwest::Client,
    url: &str,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = http
        .post(format!("{url}/v1/embeddings"))
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.expect("json"))
}

fn floats(item: &Value) -> Vec<f32> {
    item["embedding"]
        .as_array()
        .expect("an array of numbers")
        .iter()
        .map(|value| value.as_f64().expect("a number") as f32)
        .collect()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[tokio::test(flavor = "multi_thread")]
async fn embeddings_match_a_reference_rank_similar_texts_higher_and_work_from_the_sdks() {
    let (_process, url, _dir) = serve(&[], None);
    let result = run_script("openai_embeddings.py", format!("{url}/v1")).await;
    assert_eq!(result["count"], 4, "{result}");
    assert_eq!(result["dimensions"], 384, "{result}");
    assert_eq!(result["model"], EMBEDDING_MODEL, "{result}");
    assert!(
        result["prompt_tokens"].as_u64().expect("usage") > 4 * 2,
        "{result}"
    );
    let number = |name: &str| result[name].as_f64().expect(name);
    // The same vectors as sentence-transformers would give, to float precision.
    assert!(number("min_cosine_to_reference") > 0.9999, "{result}");
    // Bread is nearer bread than the stock market, and the market nearer the market.
    assert!(
        number("bread_bread") > number("bread_stock") + 0.2,
        "{result}"
    );
    assert!(
        number("stock_stock") > number("stock_bread") + 0.2,
        "{result}"
    );
    assert!(number("base64_vs_float") < 1e-5, "{result}");
    assert_eq!(result["langchain_documents"], 2, "{result}");
    assert!(number("langchain_query_vs_sdk") > 0.9999, "{result}");
}

#[tokio::test(flavor = "multi_thread")]
async fn embedding_requests_are_checked_batched_and_kept_out_of_the_logs() {
    let (mut process, url, _dir) = serve(&[], None);
    let http = client();
    let canary = "canary-embedding-4f1c9e unforgettable turquoise giraffes";
    let plain = "The cat sat on the mat.";

    // A batch gives each input the vector it gets alone.
    let (status, headers, single) = embed(
        &http,
        &url,
        json!({"model": EMBEDDING_MODEL, "input": plain}),
    )
    .await;
    assert_eq!(status, 200, "{single}");
    assert_eq!(headers["x-venice-model-id"], EMBEDDING_MODEL);
    assert_eq!(single["object"], "list");
    assert_eq!(single["data"][0]["object"], "embedding");
    let alone = floats(&single["data"][0]);
    assert_eq!(alone.len(), 384);
    let norm: f32 = alone.iter().map(|value| value * value).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "vectors are unit length: {norm}");
    let batch_inputs = json!([
        canary,
        plain,
        "A third, longer sentence about nothing at all."
    ]);
    let (status, _, batch) = embed(
        &http,
        &url,
        json!({"model": "text-embedding-3-small", "input": batch_inputs}),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    let data = batch["data"].as_array().expect("data");
    assert_eq!(data.len(), 3);
    for (index, item) in data.iter().enumerate() {
        assert_eq!(item["index"], index);
    }
    assert!(max_difference(&floats(&data[1]), &alone) < 1e-4);
    assert!(
        batch["usage"]["prompt_tokens"].as_u64().expect("usage")
            > single["usage"]["prompt_tokens"].as_u64().expect("usage")
    );
    assert_eq!(
        batch["usage"]["prompt_tokens"],
        batch["usage"]["total_tokens"]
    );

    // base64 is the same floats, little-endian.
    let (status, _, encoded) = embed(
        &http,
        &url,
        json!({"model": EMBEDDING_MODEL, "input": plain, "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(status, 200, "{encoded}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(
            encoded["data"][0]["embedding"]
                .as_str()
                .expect("base64 text"),
        )
        .expect("base64");
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes(chunk.try_into().expect("4 bytes")))
        .collect();
    assert_eq!(decoded, alone);

    // Token ids of the model's vocabulary ("this is a test ." in BERT's uncased WordPiece)
    // embed like the text they stand for.
    let (status, _, by_ids) = embed(
        &http,
        &url,
        json!({"model": EMBEDDING_MODEL, "input": [2023, 2003, 1037, 3231, 1012]}),
    )
    .await;
    assert_eq!(status, 200, "{by_ids}");
    let (_, _, by_text) = embed(
        &http,
        &url,
        json!({"model": EMBEDDING_MODEL, "input": "This is a test."}),
    )
    .await;
    assert!(max_difference(&floats(&by_ids["data"][0]), &floats(&by_text["data"][0])) < 1e-4);
    // The most inputs a request may hold, each answered.
    let most: Vec<String> = (0..2048).map(|index| format!("item {index}")).collect();
    let (status, _, all) = embed(
        &http,
        &url,
        json!({"model": EMBEDDING_MODEL, "input": most}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(all["data"].as_array().map(Vec::len), Some(2048));
    assert_eq!(all["data"][2047]["index"], 2047);
    // The vector length is the model's own.
    let (status, _, same) = embed(
        &http,
        &url,
        json!({"model": EMBEDDING_MODEL, "input": plain, "dimensions": 384}),
    )
    .await;
    assert_eq!(status, 200, "{same}");

    // Bad input: refused in the API's shape, naming the field, and the process stays up. An
    // input past the model's 512 tokens would abort llama.cpp if it reached it.
    let too_long = "word ".repeat(2000);
    let many: Vec<&str> = vec!["a"; 2049];
    for (body, param) in [
        (
            json!({"model": EMBEDDING_MODEL, "input": too_long}),
            "input",
        ),
        (
            json!({"model": EMBEDDING_MODEL, "input": ["fine", ""]}),
            "input",
        ),
        (json!({"model": EMBEDDING_MODEL, "input": many}), "input"),
        (
            json!({"model": EMBEDDING_MODEL, "input": [99_999_999]}),
            "input",
        ),
        (
            json!({"model": EMBEDDING_MODEL, "input": "x", "dimensions": 8}),
            "dimensions",
        ),
        (
            json!({"model": EMBEDDING_MODEL, "input": "x", "encoding_format": "int8"}),
            "encoding_format",
        ),
        (
            json!({"model": "smollm2-135m-instruct", "input": "x"}),
            "model",
        ),
    ] {
        let (status, _, error) = embed(&http, &url, body.clone()).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
        assert!(
            !error["error"]["message"]
                .as_str()
                .expect("message")
                .is_empty()
        );
    }
    let (status, _, error) = embed(
        &http,
        &url,
        json!({"model": EMBEDDING_MODEL, "input": too_long}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "context_length_exceeded", "{error}");
    // Venice's dialect on /api/v1.
    let response = http
        .post(format!("{url}/api/v1/embeddings"))
        .json(&json!({"model": EMBEDDING_MODEL, "input": ""}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    let venice: Value = response.json().await.expect("json");
    assert!(venice["error"].is_string(), "{venice}");
    // A chat request for the embedding model is refused.
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&crate::support::chat_body(EMBEDDING_MODEL, "hi", 4, false))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    let (status, _, after) = embed(
        &http,
        &url,
        json!({"model": EMBEDDING_MODEL, "input": plain}),
    )
    .await;
    assert_eq!(status, 200, "still serving after the refusals: {after}");

    // The catalogue lists it under its type.
    let listed = |query: &'static str| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let list: Value = http
                .get(format!("{url}/v1/models{query}"))
                .send()
                .await
                .expect("send")
                .json()
                .await
                .expect("json");
            list["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|model| {
                    (
                        model["id"].as_str().expect("id").to_owned(),
                        model["type"].as_str().expect("type").to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let embedding = (EMBEDDING_MODEL.to_owned(), "embedding".to_owned());
    assert_eq!(listed("?type=embedding").await, vec![embedding.clone()]);
    assert!(!listed("").await.contains(&embedding));
    assert!(listed("?type=all").await.contains(&embedding));

    // The command line: one JSON array per text.
    let output = Command::new(binary())
        .args(["embed", "--gateway", &url, plain, "A second text."])
        .output()
        .expect("run gondola embed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Vec<f32>> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON array"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(max_difference(&lines[0], &alone) < 1e-4);

    // Nothing of the inputs reached the logs.
    process.kill();
    let log = process.stderr();
    assert!(
        log.contains("embeddings"),
        "the request's log line is there"
    );
    assert!(!log.contains("canary-embedding"), "{log}");
    assert!(!log.contains("turquoise"));
}

#[tokio::test(flavor = "multi_thread")]
async fn embeddings_are_charged_per_input_token_at_the_models_price() {
    // $1,000 per million input tokens: a thousandth of a dollar per token.
    let config = format!(
        "{}\n[gateway.models.pricing.{EMBEDDING_MODEL}]\ninput_usd_per_million = \"1000\"\noutput_usd_per_million = \"0\"\n",
        crate::economy::ledger_config("1", ADMIN_SECRET, "1")
    );
    let (_process, url, dir) = serve(&[], Some(&config));
    let (key, _) = staked_account_key(&url, dir.path(), "user", "100");
    let http = client();
    let request = |input: Value| {
        let http = http.clone();
        let url = url.clone();
        let key = key.clone();
        async move {
            let response = http
                .post(format!("{url}/v1/embeddings"))
                .bearer_auth(&key)
                .json(&json!({"model": EMBEDDING_MODEL, "input": input}))
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            let balance = decimal_units(
                response.headers()["x-venice-balance-diem"]
                    .to_str()
                    .expect("text"),
            );
            let body: Value = response.json().await.expect("json");
            (status, balance, body)
        }
    };
    let (status, before, first) =
        request(json!(["one sentence to embed", "and another one"])).await;
    assert_eq!(status, 200, "{first}");
    let (status, after, second) = request(json!("a third")).await;
    assert_eq!(status, 200, "{second}");
    let tokens = u128::from(first["usage"]["prompt_tokens"].as_u64().expect("usage"));
    assert!(tokens > 4);
    // The balance each answer reports is from before its request: the first request cost
    // exactly its tokens at the price.
    assert_eq!(before - after, tokens * 10u128.pow(15), "{first}");
    // Without a key, nothing is served on a gateway with a ledger.
    let (status, _, refusal) = embed(
        &http,
        &url,
        json!({"model": EMBEDDING_MODEL, "input": "free?"}),
    )
    .await;
    assert_eq!(status, 401, "{refusal}");
}

/// llama.cpp's own server (`llama_server.py`, from the `xllamacpp` wheel) serving a GGUF:
/// stopped when dropped.
pub(crate) struct LlamaServer {
    child: std::process::Child,
    pub(crate) url: String,
}

impl LlamaServer {
    pub(crate) fn start(model: &std::path::Path, kind: &str) -> Self {
        use std::io::BufRead as _;
        let script = format!("{}/tests/it/llama_server.py", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(crate::sdk::python())
            .arg(script)
            .arg(model)
            .arg(kind)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start llama.cpp's server");
        let stdout = child.stdout.take().expect("stdout");
        let line = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.starts_with("listening on "))
            .expect("llama.cpp's server started");
        let url = line.trim_start_matches("listening on ").trim().to_owned();
        Self { child, url }
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_fronts_llama_cpps_server_for_embeddings_and_fails_over() {
    // The engine: llama.cpp's own server with the GGUF Gondola converted.
    let model = embedding_model_path();
    let mut engine = LlamaServer::start(&model, "embedding");
    let (_gateway, url, _dir) = gateway("");
    let engine_base = format!("{}/v1", engine.url);
    let _upstream = crate::support::typed_provider(
        &url,
        "team-embeddings",
        "embedding",
        &["--upstream", &engine_base, "--model", "all-MiniLM-L6-v2"],
    );
    let http = client();
    let (status, _, through_upstream) = embed(
        &http,
        &url,
        json!({"model": "team-embeddings", "input": ["bread", "stocks"]}),
    )
    .await;
    assert_eq!(status, 200, "{through_upstream}");
    assert_eq!(through_upstream["model"], "team-embeddings");
    assert!(
        through_upstream["usage"]["prompt_tokens"]
            .as_u64()
            .expect("usage")
            > 0
    );
    // The gateway's aliases reach it too.
    let (status, _, aliased) = embed(
        &http,
        &url,
        json!({"model": "text-embedding-ada-002", "input": "bread"}),
    )
    .await;
    assert_eq!(status, 200, "{aliased}");

    // A second provider of the same model, embedded: its vectors are llama.cpp server's to
    // float precision. Then the engine goes away without a word, and requests keep being
    // served by the other provider.
    let model_arg = model.display().to_string();
    let _embedded = crate::support::typed_provider(
        &url,
        "team-embeddings",
        "embedding",
        &["--model", &model_arg],
    );
    engine.stop();
    for _ in 0..4 {
        let (status, _, body) = embed(
            &http,
            &url,
            json!({"model": "team-embeddings", "input": ["bread", "stocks"]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        for index in 0..2 {
            assert!(
                max_difference(
                    &floats(&body["data"][index]),
                    &floats(&through_upstream["data"][index])
                ) < 1e-4
            );
        }
    }
}
