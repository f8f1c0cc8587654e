//! HTTPS served directly with rustls (`--tls-cert`/`--tls-key`).

use std::sync::Arc;

use crate::support::{Process, cache_dir, chat_body, model_path, url_in};

#[tokio::test(flavor = "multi_thread")]
async fn serve_speaks_https_with_the_given_certificate() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("certificate");
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).expect("write cert");
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("write key");
    model_path();
    let data = dir.path().join("data").display().to_string();
    let cache = cache_dir().display().to_string();
    let (cert, key) = (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    );
    let mut process = Process::start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
            "--cache-dir",
            &cache,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        Arc::clone(&dir),
    );
    let url = url_in(&process.wait_for_line("gateway listening on"));
    assert!(url.starts_with("https://"), "{url}");
    process.wait_for_line("ready:");
    server::install_crypto_provider();
    let root = reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).expect("root");
    let http = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .expect("client");
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat_body("default", "Hi", 3, false))
        .send()
        .await
        .expect("https request");
    assert_eq!(response.status(), 200);
    let plain = url.replace("https://", "http://");
    let refused = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .send()
        .await;
    assert!(
        refused.is_err() || !refused.expect("response").status().is_success(),
        "plain HTTP is not served on the TLS port"
    );
}
