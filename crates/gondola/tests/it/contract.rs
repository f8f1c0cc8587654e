//! The contract test: every operation of Venice's API (`../shared/reference/venice-openapi.yaml`)
//! that Gondola serves, called for real through the running binary with the real model, and
//! each answer (status, content type, body, each stream chunk) validated against Venice's
//! schema for that operation and status, and against Gondola's own `openapi.json`. The requests
//! and the validation are `venice_contract.py` (with `openapi-schema-validator`); a key minted
//! with a wallet's signature is requested here and its answer handed to the script.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::economy::{ledger_config, staked_account_key};
use crate::sdk::{python, run_script_with};
use crate::support::{client, serve};

/// Venice's operations that Gondola serves, as `(method, path)` in Venice's document. The
/// README lists the rest, each with its issue or reason.
const SERVED: [(&str, &str); 30] = [
    ("get", "/models"),
    ("get", "/models/traits"),
    ("get", "/models/compatibility_mapping"),
    ("post", "/chat/completions"),
    ("post", "/embeddings"),
    ("post", "/audio/speech"),
    ("post", "/audio/transcriptions"),
    ("post", "/image/generate"),
    ("post", "/images/generations"),
    ("get", "/image/styles"),
    ("post", "/image/background-remove"),
    ("post", "/image/edit"),
    ("post", "/image/upscale"),
    ("post", "/video/quote"),
    ("post", "/video/queue"),
    ("post", "/video/retrieve"),
    ("post", "/video/complete"),
    ("get", "/api_keys"),
    ("post", "/api_keys"),
    ("patch", "/api_keys"),
    ("delete", "/api_keys"),
    ("get", "/api_keys/{id}"),
    ("get", "/api_keys/rate_limits"),
    ("get", "/api_keys/rate_limits/log"),
    ("get", "/api_keys/generate_web3_key"),
    ("post", "/api_keys/generate_web3_key"),
    ("get", "/billing/balance"),
    ("get", "/billing/usage-history"),
    ("get", "/characters"),
    ("get", "/characters/{slug}"),
];

/// A character for the contract's requests.
const CHARACTER: &str = r#"
[[gateway.characters]]
slug = "ship-captain"
name = "The Captain"
description = "A ship's captain who answers in nautical terms"
system_prompt = "You are the captain of a sailing ship. Answer in nautical terms."
tags = ["roleplay", "sea"]
"#;

/// Venice's OpenAPI document, read where it is kept: `GONDOLA_VENICE_SPEC` if set, else
/// `shared/reference/` beside the repository, else the workspace's shared directory.
fn venice_spec() -> PathBuf {
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/venice-openapi.yaml");
    std::env::var_os("GONDOLA_VENICE_SPEC")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            beside.clone(),
            PathBuf::from("/work/shared/reference/venice-openapi.yaml"),
        ])
        .find(|path| path.exists())
        .unwrap_or(beside)
}

/// Mints an ADMIN key of the wallet's account through Venice's web3 route; returns the raw
/// answer and the key.
async fn mint_admin_key(url: &str, wallet: &wallet::Wallet) -> (u16, Value) {
    let http = client();
    let challenge_url = format!("{url}/api/v1/api_keys/generate_web3_key");
    let challenge: Value = http
        .get(&challenge_url)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let token = challenge["data"]["token"].as_str().expect("a token");
    let response = http
        .post(&challenge_url)
        .json(&json!({
            "address": wallet.address().to_string(),
            "signature": format!("0x{}", hex::encode(wallet.personal_sign(token.as_bytes()))),
            "token": token,
            "apiKeyType": "ADMIN",
            "description": "contract admin",
        }))
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_served_venice_operation_answers_as_venices_spec_says() {
    let spec = venice_spec();
    assert!(
        spec.exists(),
        "Venice's OpenAPI document is read from {}",
        spec.display()
    );
    let config = format!(
        "{}{CHARACTER}",
        ledger_config("100", "sk-contract-operator", "1")
    );
    let (_process, url, dir) = serve(&[], Some(&config));
    // Images come from a provider in front of a stand-in engine (no image model runs here).
    let engine =
        crate::image_engines::start(crate::image_engines::Engine::Automatic1111, "sd15", None)
            .await;
    let _image_provider = crate::support::typed_provider(
        &url,
        "contract-image",
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
    let _upscale_provider = crate::support::typed_provider(
        &url,
        "contract-upscale",
        "upscale",
        &[
            "--upstream",
            &engine.base_url,
            "--upstream-api",
            "automatic1111",
            "--model",
            "sd15",
        ],
    );
    // Video comes from a provider in front of a stand-in with OpenAI's videos API, whose
    // videos move on a step at each report.
    let video_engine = crate::video_engine::start_with("sora-2", true).await;
    let _video_provider = crate::support::typed_provider(
        &url,
        "contract-video",
        "video",
        &["--upstream", &video_engine.base_url, "--model", "sora-2"],
    );
    let (inference_key, _) = staked_account_key(&url, dir.path(), "contract", "100");
    let wallet = wallet::Wallet::load(&dir.path().join("contract.key")).expect("the wallet");
    let (status, minted) = mint_admin_key(&url, &wallet).await;
    assert_eq!(status, 200, "{minted}");
    let admin_key = minted["data"]["apiKey"].as_str().expect("a key").to_owned();
    let extra = dir.path().join("contract-extra.json");
    std::fs::write(
        &extra,
        serde_json::to_vec(&json!([{
            "path": "/api_keys/generate_web3_key", "method": "post", "status": status, "body": minted,
        }]))
        .expect("json"),
    )
    .expect("write");
    let result = run_script_with(
        "venice_contract.py",
        &[
            ("GONDOLA_URL", url.clone()),
            ("ACCOUNT_ADMIN_KEY", admin_key),
            ("ACCOUNT_INFERENCE_KEY", inference_key),
            ("VENICE_SPEC", spec.display().to_string()),
            ("IMAGE_MODEL", "contract-image".to_owned()),
            ("VIDEO_MODEL", "contract-video".to_owned()),
            ("CONTRACT_EXTRA", extra.display().to_string()),
        ],
    )
    .await;
    let violations = result["violations"].as_array().expect("violations");
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let checked = result["checked"].as_array().expect("checked");
    for (method, path) in SERVED {
        assert!(
            checked.iter().any(|entry| entry["method"] == method
                && entry["path"] == path
                && entry["status"].as_u64().is_some_and(|status| status < 300)),
            "{method} {path} was not exercised with a successful answer"
        );
    }
    assert!(checked.iter().any(|entry| entry["what"] == "stream chunk"));
}

/// Property-based fuzzing of the whole API from Gondola's own `openapi.json` (schemathesis):
/// thousands of generated requests, valid and not, to every route a client may call, and no
/// answer may be a 5xx, an undocumented status or content type, or a body (or stream event)
/// outside its documented schema. The account's ADMIN key authenticates it; deleting and
/// changing keys are left out, since a fuzzer would revoke the very key it uses (the contract
/// test covers both).
#[tokio::test(flavor = "multi_thread")]
async fn the_whole_api_holds_to_its_openapi_document_under_fuzzing() {
    // Replies of at most 4 tokens keep thousands of chat requests to seconds.
    let config = format!(
        "{}{CHARACTER}\n[gateway.limits]\nmax_output_tokens = 4\n",
        ledger_config("100", "sk-fuzz-operator", "1")
    );
    let (_process, url, dir) = serve(&[], Some(&config));
    staked_account_key(&url, dir.path(), "fuzzer", "100");
    let wallet = wallet::Wallet::load(&dir.path().join("fuzzer.key")).expect("the wallet");
    let (status, minted) = mint_admin_key(&url, &wallet).await;
    assert_eq!(status, 200, "{minted}");
    let admin_key = minted["data"]["apiKey"].as_str().expect("a key").to_owned();
    let document = dir.path().join("openapi.json");
    let served = client()
        .get(format!("{url}/api/v1/openapi.json"))
        .send()
        .await
        .expect("send")
        .bytes()
        .await
        .expect("the document");
    std::fs::write(&document, served).expect("write");
    let schemathesis = python().with_file_name("schemathesis");
    let work_dir = dir.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(schemathesis)
            // It keeps a cache of what it found where it runs: in the test's own directory.
            .current_dir(work_dir)
            .arg("run")
            .arg(&document)
            .args(["--url", &url])
            .args(["-H", &format!("Authorization: Bearer {admin_key}")])
            .args(["--max-examples", "30", "--generation-deterministic"])
            .args([
                "--checks",
                "not_a_server_error,response_schema_conformance,response_headers_conformance,status_code_conformance,content_type_conformance",
            ])
            // The provider protocol and Oblivious HTTP are for providers and relays, with
            // signed or encrypted bodies a generator cannot make; privacy tokens take a binary
            // batch; the clock is the operator's test control.
            .args([
                "--exclude-path-regex",
                "^/(provider|ohttp|\\.well-known)|/privacy/tokens|/admin/clock",
            ])
            .args(["--exclude-method", "DELETE", "--exclude-method", "PATCH"])
            .output()
    })
    .await
    .expect("join")
    .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("passed"), "{stdout}");
}
