//! The official `openai` Python package, unmodified, against `/v1`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{serve, shared_dir};

/// Pinned so that the test means the same thing every run.
const OPENAI_PACKAGE: &str = "openai==3.54.0";

/// A venv with the `openai` package, made once per test run.
fn python() -> PathBuf {
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
                .args(["-c", "import openai"])
                .status()
                .expect("run python");
            if !check.success() {
                let status = Command::new(&python)
                    .args(["-m", "pip", "install", "--quiet", OPENAI_PACKAGE])
                    .status()
                    .expect("pip");
                assert!(status.success(), "pip install {OPENAI_PACKAGE} failed");
            }
            python
        })
        .clone()
}

/// Runs `openai_sdk.py` against `base_url` (an OpenAI `/v1` base) and checks what it saw: a
/// completion, a stream with usage, the model list, and a refused request with its status.
pub async fn check_the_openai_script_against(base_url: String) {
    let python = python();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/openai_sdk.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("OPENAI_BASE_URL", base_url)
            .env("OPENAI_API_KEY", "unused-locally")
            .output()
    })
    .await
    .expect("join")
    .expect("run the script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().expect("a result line")).expect("json");
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
