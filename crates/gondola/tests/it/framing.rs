//! How a streamed reply is framed on its way to the client: events that reach the gateway
//! together leave it together, in one HTTP chunk, instead of one chunk (and one client read)
//! per event. Real gateway and provider processes, in front of an upstream engine that writes
//! its whole reply at once, as a fast engine (or a cache) does.

use std::io::{BufRead, BufReader, Write};

use crate::support::{Process, gateway};

const TOKENS: usize = 16;

fn whole_reply() -> String {
    let mut body = String::new();
    for index in 0..TOKENS {
        body.push_str(&format!(
            "data: {}\n\n",
            serde_json::json!({
                "id": "chatcmpl-burst",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "burst",
                "choices": [{"index": 0, "delta": {"content": format!("t{index} ")}, "finish_reason": null}],
            })
        ));
    }
    body.push_str(&format!(
        "data: {}\n\ndata: [DONE]\n\n",
        serde_json::json!({
            "id": "chatcmpl-burst",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "burst",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": TOKENS, "total_tokens": TOKENS + 3},
        })
    ));
    body
}

/// The chunks of an HTTP/1.1 chunked body, as sent.
fn read_chunks(reader: &mut impl BufRead) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).expect("chunk size");
        let size = usize::from_str_radix(size.trim_end(), 16).expect("hex chunk size");
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).expect("chunk");
        assert_eq!(&chunk[size..], b"\r\n", "chunk not terminated");
        if size == 0 {
            return chunks;
        }
        chunk.truncate(size);
        chunks.push(chunk);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_arrive_together_reach_the_client_in_one_chunk() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = format!("http://{}/v1", listener.local_addr().expect("address"));
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async {
            (
                [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
                whole_reply(),
            )
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let (_gateway, url, _dir) = gateway("");
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("temp dir"));
    let data = dir.path().join("data").display().to_string();
    let mut provider = Process::start(
        &[
            "provider",
            "--gateway",
            &url,
            "--upstream",
            &upstream,
            "--model",
            "burst",
            "--data-dir",
            &data,
        ],
        dir,
    );
    provider.wait_for_line("ready: provider");

    let address = url.trim_start_matches("http://").to_owned();
    let replies = tokio::task::spawn_blocking(move || {
        let body = serde_json::json!({
            "model": "burst",
            "messages": [{"role": "user", "content": "Count."}],
            "stream": true,
        })
        .to_string();
        let mut stream = std::net::TcpStream::connect(&address).expect("connect");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut replies = Vec::new();
        for _ in 0..5 {
            write!(
                stream,
                "POST /v1/chat/completions HTTP/1.1\r\nhost: gondola\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .expect("send");
            let mut chunked = false;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("header");
                if line.to_ascii_lowercase().starts_with("transfer-encoding: chunked") {
                    chunked = true;
                }
                if line == "\r\n" {
                    break;
                }
            }
            assert!(chunked, "a streamed reply is chunked");
            replies.push(read_chunks(&mut reader));
        }
        replies
    })
    .await
    .expect("client");
    server.abort();

    for chunks in replies {
        let text: Vec<u8> = chunks.concat();
        let events = crate::support::sse_events(std::str::from_utf8(&text).expect("UTF-8"));
        let expected: String = (0..TOKENS).map(|index| format!("t{index} ")).collect();
        assert_eq!(crate::support::streamed_text(&events), expected);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        // One write from the upstream: the provider passes it on whole, and the gateway
        // re-frames its 17 events (and `[DONE]`) into one chunk. A stray split of the bytes on
        // the way may add one more; one chunk per event would be 18.
        assert!(
            chunks.len() <= 2,
            "{} events came in {} chunks",
            events.len(),
            chunks.len()
        );
    }
}
