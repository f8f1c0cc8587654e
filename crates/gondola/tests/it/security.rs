//! The security suite: each attack that once got through, made again through real sockets
//! against the real binary, and the bound that now holds it. A test here fails on a gateway
//! with the hole open and passes with it shut:
//!
//! - a stream cut before its end pays for what was delivered, sealed or not (and a provider
//!   that reports no usage is charged from the gateway's own count);
//! - idle connections, silent or HTTP/2 after the preface, cannot lock out a client with a
//!   request;
//! - concurrent requests cannot spend past a key's cap;
//! - a provider's inflated usage report, or a reply longer than `max_tokens`, costs the client
//!   no more than it reserved, and counts against the provider;
//! - an account's ADMIN key has no operator powers;
//! - web3 key challenges cannot be exhausted, and each is used once;
//! - forged or spent privacy tokens cost at most one RSA verification per request, and forged
//!   tokens mixed with good ones lose the good ones;
//! - a captured provider registration cannot be sent again;
//! - tool schemas llama.cpp cannot build a grammar from are the client's 400 and cannot trip
//!   the only provider's breaker (a schema that refers to itself included).
//!
//! Stand-in providers appear only where a real engine cannot misbehave on cue (a report of a
//! billion tokens, a reply past its `max_tokens`, a stream with no usage).

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use futures_util::StreamExt;
use privacypass::Serialize as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::economy::{decimal_units, gondola, ledger_config, staked_account_key};
use crate::support::{
    Fault, chat_body, client, fault_provider, gateway, gateway_with, registration_challenge, serve,
    sse_events,
};
use crate::tokens::{buy, chat_paid, issuer_key, paid};

const MODEL: &str = "smollm2-135m-instruct";
const ADMIN_SECRET: &str = "sk-security-operator";
/// $1,000 per million tokens: one token costs 10^15 base units.
const USD_PER_MILLION: &str = "1000";
const UNITS_PER_TOKEN: u128 = 1_000_000_000_000_000;
/// A prompt the default model answers with all the 200 tokens it is given, with or without
/// the operator's system prompt.
const LONG_ANSWER: &str = "Write a long story about a fox who travels around the world.";

/// Waits for `check` to hold, looking again every few milliseconds, for at most 30 s.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// What the account of `key` can spend now, in base units (allowance, bundled credits, USD).
async fn spendable(http: &reqwest::Client, url: &str, key: &str) -> u128 {
    // Read as text: amounts are JSON numbers with up to 18 decimals, which no float holds.
    let text = http
        .get(format!("{url}/api/v1/billing/balance"))
        .bearer_auth(key)
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    ["diem", "usd", "bundledCredits"]
        .iter()
        .map(|name| decimal_units(&number_after(&text, &format!("\"{name}\":"))))
        .sum()
}

/// The JSON number written right after `key` in `text`, as its exact digits.
fn number_after(text: &str, key: &str) -> String {
    let start = text.find(key).unwrap_or_else(|| panic!("{key} in {text}")) + key.len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect()
}

/// The exact cost of a reply, in base units: its `cost.usd` and `cost.diem` (the parts paid in
/// each currency) added up, read from the text (a JSON number with 18 decimals does not
/// survive a float).
fn reply_cost_units(text: &str) -> u128 {
    let cost = &text[text.find("\"cost\":{").expect("a cost")..];
    decimal_units(&number_after(cost, "\"usd\":")) + decimal_units(&number_after(cost, "\"diem\":"))
}

/// The value of an unlabelled counter in the gateway's metrics (0 while it has no samples).
async fn counter(http: &reqwest::Client, url: &str, name: &str) -> u64 {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in the metrics:\n{text}"))
        .trim()
        .parse()
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_cut_after_its_first_tokens_pays_for_what_was_delivered() {
    let config = ledger_config("100", ADMIN_SECRET, USD_PER_MILLION);
    let (_gateway, url, dir) = serve(&[], Some(&config));
    let (key, _) = staked_account_key(&url, dir.path(), "cutter", "100");
    let http = client();
    let before = spendable(&http, &url, &key).await;

    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body(MODEL, LONG_ANSWER, 200, true))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    // Read until three pieces of text have arrived, then hang up.
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut delivered = 0u128;
    while delivered < 3 {
        let chunk = body
            .next()
            .await
            .expect("more of the stream")
            .expect("bytes");
        text.push_str(&String::from_utf8_lossy(&chunk));
        delivered = sse_events(&text)
            .iter()
            .filter_map(|event| serde_json::from_str::<Value>(event).ok())
            .filter(|event| {
                event
                    .pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
                    .is_some_and(|content| !content.is_empty())
            })
            .count() as u128;
    }
    drop(body);

    // The gateway settles when it notices the client is gone: at least the tokens delivered.
    wait_until("the cut stream to be charged", || {
        let http = http.clone();
        let (url, key) = (url.clone(), key.clone());
        async move { spendable(&http, &url, &key).await < before }
    })
    .await;
    let spent = before - spendable(&http, &url, &key).await;
    assert!(
        spent >= delivered * UNITS_PER_TOKEN,
        "a stream cut after {delivered} tokens was charged {spent} base units"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_stream_cut_after_its_first_pieces_pays_for_them() {
    let config = ledger_config("100", ADMIN_SECRET, USD_PER_MILLION);
    let (_gateway, url, dir) = gateway(&config);
    let (_provider, _) = crate::support::provider(&url);
    let (key, _) = staked_account_key(&url, dir.path(), "sealer", "100");
    let http = client();
    let providers: wire::sealed::SealingProviders = http
        .get(format!("{url}/v1/privacy/providers"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let targets = privacy::sealed::targets(&providers.data, MODEL);
    // A prompt the model answers at length (200 tokens, several seconds), so that the
    // reply is still being written when the client hangs up.
    let chat = chat_body(MODEL, LONG_ANSWER, 200, true);
    let sealed = privacy::sealed::seal_chat(
        &targets,
        MODEL,
        200,
        &serde_json::to_vec(&chat).expect("json"),
    )
    .await
    .expect("sealed");
    let before = spendable(&http, &url, &key).await;
    let response = http
        .post(format!("{url}/v1/privacy/chat"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(sealed.body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    // The gateway cannot read the pieces; it counts them. Hang up after five.
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while sse_events(&text).len() < 5 {
        let chunk = body
            .next()
            .await
            .expect("more of the stream")
            .expect("bytes");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let pieces = sse_events(&text)
        .iter()
        .filter(|event| event.contains("\"sealed\""))
        .count() as u128;
    drop(body);
    wait_until("the cut sealed stream to be charged", || {
        let http = http.clone();
        let (url, key) = (url.clone(), key.clone());
        async move { spendable(&http, &url, &key).await < before }
    })
    .await;
    let spent = before - spendable(&http, &url, &key).await;
    // Every piece but the reply's head stands for a token at least.
    assert!(
        spent >= (pieces - 1) * UNITS_PER_TOKEN,
        "a sealed stream cut after {pieces} pieces was charged {spent} base units"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_that_reports_no_usage_is_charged_from_the_gateways_count() {
    let config = ledger_config("100", ADMIN_SECRET, USD_PER_MILLION);
    let (_gateway, url, dir) = gateway(&config);
    let _provider = fault_provider(&url, MODEL, Fault::NoUsage).await;
    let (key, _) = staked_account_key(&url, dir.path(), "silent", "100");
    let http = client();
    let before = spendable(&http, &url, &key).await;
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body(MODEL, "Say ten words.", 32, false))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    let reply: Value = serde_json::from_str(&text).expect("json");
    // Ten pieces of text passed through the gateway: ten completion tokens at least.
    assert_eq!(reply["usage"]["completion_tokens"], 10, "{reply}");
    assert!(
        reply["usage"]["prompt_tokens"].as_u64().expect("a count") > 0,
        "{reply}"
    );
    let cost = reply_cost_units(&text);
    assert!(cost >= 10 * UNITS_PER_TOKEN, "{text}");
    assert_eq!(before - spendable(&http, &url, &key).await, cost);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_cannot_lock_out_a_client_with_a_request() {
    const SLOTS: usize = 64;
    let config = format!("[gateway.limits]\nmax_connections = {SLOTS}\n");
    let (_gateway, url, _dir) = gateway(&config);
    let address = url.trim_start_matches("http://").to_owned();
    // Every slot and more, held by connections that never ask anything: the first twenty
    // speak HTTP/2 (the preface and empty settings), then fall silent; the rest never send a
    // byte.
    let mut flood = Vec::new();
    for index in 0..SLOTS + 36 {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        if index < 20 {
            stream
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                .await
                .expect("preface");
        }
        flood.push(stream);
    }
    // A client with a request gets in at once: the connection idle longest made room.
    server::install_crypto_provider();
    let started = Instant::now();
    let legitimate = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
        .get(format!("{url}/healthz"))
        .send()
        .await
        .expect("served during the flood");
    assert_eq!(legitimate.status(), 200);
    let waited = started.elapsed();
    // Slots were made by closing the idlest: the oldest flood connections, HTTP/2 ones
    // included, are closed by the server (their reads end), the newest still open.
    let closed_for_room = flood.len() + 1 - SLOTS;
    for (index, stream) in flood.iter_mut().take(closed_for_room).enumerate() {
        let mut buffer = vec![0u8; 4096];
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "flood connection {index} was not closed to make room"
        );
    }
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_cannot_spend_past_a_keys_cap() {
    let config = ledger_config("100", ADMIN_SECRET, USD_PER_MILLION);
    let (_gateway, url, dir) = serve(&[], Some(&config));
    let (key, _) = staked_account_key(&url, dir.path(), "capped", "100");
    let wallet = dir.path().join("capped.key");
    let admin = gondola(
        &[
            "key",
            "--admin",
            "--wallet",
            wallet.to_str().expect("utf-8"),
        ],
        &url,
        &dir.path().join("data"),
    )["data"]["apiKey"]
        .as_str()
        .expect("an ADMIN key")
        .to_owned();
    let http = client();
    let request = chat_body(MODEL, "Say hello.", 16, false);
    // What one such request really costs.
    let one = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&request)
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    let cost = reply_cost_units(&one);
    assert!(cost > 0, "{one}");
    // A lifetime cap of twelve such requests, in whole micro-dollars.
    let cap_micro = (12 * cost).div_ceil(1_000_000_000_000);
    let cap = cap_micro * 1_000_000_000_000;
    let created: Value = http
        .post(format!("{url}/api/v1/api_keys"))
        .bearer_auth(&admin)
        .json(&json!({
            "apiKeyType": "INFERENCE",
            "description": "capped",
            "consumptionLimit": {"usd": serde_json::from_str::<Value>(&format!("{}.{:06}", cap_micro / 1_000_000, cap_micro % 1_000_000)).expect("a number")},
            "limitPeriod": "LIFETIME",
        }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let capped = created["data"]["apiKey"]
        .as_str()
        .expect("a key")
        .to_owned();
    let capped_id = created["data"]["id"].as_str().expect("an id").to_owned();

    // Twenty at once: together they would cost far more than the cap.
    let requests = (0..20).map(|_| {
        let http = http.clone();
        let (url, capped, request) = (url.clone(), capped.clone(), request.clone());
        async move {
            http.post(format!("{url}/v1/chat/completions"))
                .bearer_auth(&capped)
                .json(&request)
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        statuses.iter().all(|status| [200, 402].contains(status)),
        "{statuses:?}"
    );
    let keys: Value = http
        .get(format!("{url}/api/v1/api_keys"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let used = keys["data"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|key| key["id"] == capped_id.as_str())
        .expect("the capped key")["usage"]["trailingSevenDays"]["usd"]
        .as_str()
        .map(decimal_units)
        .expect("usage");
    assert!(
        used <= cap,
        "the key spent {used} base units past its cap of {cap} ({statuses:?})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inflated_usage_report_costs_no_more_than_was_reserved() {
    let config = ledger_config("100", ADMIN_SECRET, USD_PER_MILLION);
    let (_gateway, url, dir) = gateway(&config);
    let provider = fault_provider(&url, MODEL, Fault::InflatedUsage).await;
    let (key, _) = staked_account_key(&url, dir.path(), "victim", "100");
    let http = client();
    let before = spendable(&http, &url, &key).await;
    let request = chat_body(MODEL, "Hi", 5, false);
    let body_bytes = serde_json::to_vec(&request).expect("json").len() as u64;
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&request)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    let reply: Value = serde_json::from_str(&text).expect("json");
    // The provider claimed a billion tokens of each kind; the request paid for five
    // completion tokens and a prompt no longer than its body (plus the operator's prompt and
    // the template's tokens).
    assert!(
        reply["usage"]["completion_tokens"]
            .as_u64()
            .expect("a count")
            <= 5,
        "{reply}"
    );
    let prompt = reply["usage"]["prompt_tokens"].as_u64().expect("a count");
    assert!(prompt < body_bytes + 100_000, "{reply}");
    let spent = before - spendable(&http, &url, &key).await;
    assert_eq!(spent, reply_cost_units(&text));
    assert!(
        spent < 200_000 * UNITS_PER_TOKEN,
        "one request was charged {spent} base units"
    );
    // The overshoot is the provider's, and it is counted.
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(&format!(
            "gondola_provider_overshoots_total{{provider=\"{}\"}} 1",
            provider.id
        )),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_never_exceeds_the_max_tokens_paid_for() {
    let config = ledger_config("100", ADMIN_SECRET, USD_PER_MILLION);
    let (_gateway, url, dir) = gateway(&config);
    let _provider = fault_provider(&url, MODEL, Fault::Overlong).await;
    let (key, _) = staked_account_key(&url, dir.path(), "long", "100");
    let http = client();
    let text = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body(MODEL, "Say fifty words.", 5, true))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    let events: Vec<Value> = sse_events(&text)
        .iter()
        .filter_map(|event| serde_json::from_str(event).ok())
        .collect();
    let pieces = events
        .iter()
        .filter(|event| {
            event
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .is_some_and(|content| !content.is_empty())
        })
        .count();
    assert_eq!(pieces, 5, "{text}");
    let finish = events
        .iter()
        .filter_map(|event| event.pointer("/choices/0/finish_reason"))
        .find(|reason| !reason.is_null());
    assert_eq!(finish, Some(&json!("length")), "{text}");
    let usage = events
        .iter()
        .find_map(|event| event.get("usage").filter(|usage| !usage.is_null()))
        .expect("usage");
    assert_eq!(usage["completion_tokens"], 5, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_accounts_admin_key_has_no_operator_powers() {
    let config = ledger_config("100", ADMIN_SECRET, USD_PER_MILLION);
    let (_gateway, url, dir) = gateway_with(&config, &["--adjustable-clock"]);
    staked_account_key(&url, dir.path(), "staker", "100");
    let wallet = dir.path().join("staker.key");
    let minted = gondola(
        &[
            "key",
            "--admin",
            "--wallet",
            wallet.to_str().expect("utf-8"),
        ],
        &url,
        &dir.path().join("data"),
    );
    assert_eq!(minted["data"]["apiKeyType"], "ADMIN");
    let account_admin = minted["data"]["apiKey"].as_str().expect("a key").to_owned();
    let http = client();
    let providers = |key: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.get(format!("{url}/api/v1/providers"))
                .bearer_auth(key)
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        }
    };
    let clock = |key: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.post(format!("{url}/api/v1/admin/clock"))
                .bearer_auth(key)
                .json(&json!({"advance_seconds": 1}))
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        }
    };
    // The account's ADMIN key manages the account's keys, and nothing of the operator's.
    let own_keys = http
        .get(format!("{url}/api/v1/api_keys"))
        .bearer_auth(&account_admin)
        .send()
        .await
        .expect("send");
    assert_eq!(own_keys.status(), 200);
    assert_eq!(providers(account_admin.clone()).await, 403);
    assert_eq!(clock(account_admin.clone()).await, 403);
    // The operator's own key has both powers.
    assert_eq!(providers(ADMIN_SECRET.to_owned()).await, 200);
    assert_eq!(clock(ADMIN_SECRET.to_owned()).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn web3_key_challenges_cannot_be_exhausted_and_each_is_used_once() {
    let config = ledger_config("100", ADMIN_SECRET, USD_PER_MILLION);
    let (_gateway, url, dir) = gateway(&config);
    staked_account_key(&url, dir.path(), "minter", "100");
    let http = client();
    // More challenges than any table of outstanding ones could hold, unauthenticated.
    let challenge_url = format!("{url}/api/v1/api_keys/generate_web3_key");
    let statuses: Vec<u16> = futures_util::stream::iter(0..12_000)
        .map(|_| {
            let http = http.clone();
            let challenge_url = challenge_url.clone();
            async move {
                http.get(challenge_url)
                    .send()
                    .await
                    .expect("send")
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|status| *status == 200));

    // A wallet still mints a key, once per challenge.
    let wallet = wallet::Wallet::load(&dir.path().join("minter.key")).expect("the wallet");
    let challenge: Value = http
        .get(&challenge_url)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let token = challenge["data"]["token"].as_str().expect("a token");
    let signed = json!({
        "address": wallet.address().to_string(),
        "signature": format!("0x{}", hex::encode(wallet.personal_sign(token.as_bytes()))),
        "token": token,
        "apiKeyType": "INFERENCE",
    });
    let mint = |body: Value| {
        let http = http.clone();
        let challenge_url = challenge_url.clone();
        async move {
            let response = http
                .post(challenge_url)
                .json(&body)
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }
    };
    let (status, first) = mint(signed.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (status, replayed) = mint(signed).await;
    assert_eq!(status, 401, "{replayed}");
    // A challenge the gateway did not make, signed properly, is refused too.
    let forged = format!("{}0", &token[..token.len() - 1]);
    let (status, refused) = mint(json!({
        "address": wallet.address().to_string(),
        "signature": format!("0x{}", hex::encode(wallet.personal_sign(forged.as_bytes()))),
        "token": forged,
    }))
    .await;
    assert_eq!(status, 401, "{refused}");
}

/// `count` tokens shaped like `template` (type, key id, challenge) with random nonces and
/// signatures: as cheap to make as anything, and none of them valid.
fn forged_tokens(template: &privacypass::public_tokens::PublicToken, count: usize) -> Vec<String> {
    let bytes = template.tls_serialize_detached().expect("a token");
    (0..count)
        .map(|_| {
            let mut forged = bytes.clone();
            // type (2) | nonce (32) | challenge digest (32) | key id (32) | signature (256)
            rand::fill(&mut forged[2..34]);
            rand::fill(&mut forged[98..]);
            format!("PrivateToken token={}", URL_SAFE.encode(forged))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_spent_tokens_cost_at_most_one_signature_check() {
    let config = ledger_config("100", ADMIN_SECRET, "1");
    let (_gateway, url, dir) = gateway(&config);
    let _provider = fault_provider(&url, MODEL, Fault::NoUsage).await;
    let (key, _) = staked_account_key(&url, dir.path(), "holder", "100");
    let http = client();
    let issuer = issuer_key(&http, &url).await;
    let mut tokens = buy(&http, &url, &issuer, &key, 3).await.expect("tokens");
    let checks = || counter(&http, &url, "gondola_token_signature_checks_total");

    // Sixty-four forged tokens: refused after one verification.
    let before = checks().await;
    let (status, _, body) =
        chat_paid(&http, &url, &forged_tokens(&tokens[0], 64).join(", "), 8).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(checks().await - before, 1);

    // A spent token ahead of sixty-three forged ones: refused with no verification at all.
    let spent = tokens.remove(0);
    let (status, _, body) = chat_paid(&http, &url, &paid(std::slice::from_ref(&spent)), 8).await;
    assert_eq!(status, 200, "{body}");
    let before = checks().await;
    let header = format!(
        "{}, {}",
        paid(std::slice::from_ref(&spent)),
        forged_tokens(&spent, 63).join(", ")
    );
    let (status, _, body) = chat_paid(&http, &url, &header, 8).await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(checks().await - before, 0);

    // A good token with a forged one behind it: refused, and the good one is spent for it.
    let good = tokens.remove(0);
    let header = format!(
        "{}, {}",
        paid(std::slice::from_ref(&good)),
        forged_tokens(&good, 1)[0]
    );
    let (status, _, body) = chat_paid(&http, &url, &header, 8).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = chat_paid(&http, &url, &paid(&[good]), 8).await;
    assert_eq!(status, 402, "{body}");
    // The last good token pays once, even sent twice at the same moment.
    let header = paid(&tokens);
    let (first, second) = tokio::join!(
        chat_paid(&http, &url, &header, 8),
        chat_paid(&http, &url, &header, 8)
    );
    let mut statuses = [first.0, second.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 402], "{} / {}", first.2, second.2);
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_out_of_the_web_app_lead_nowhere() {
    // A probe that held: the web app's files are built into the binary, so no path reaches
    // the disk.
    let (_gateway, url, _dir) = gateway("");
    let address = url.trim_start_matches("http://").to_owned();
    for path in [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/app.js/../../Cargo.toml",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/v1/../../etc/passwd",
    ] {
        // Sent as written (an HTTP client would tidy the dots away first).
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .expect("send");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("an answer");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 404") || answer.starts_with("HTTP/1.1 400"),
            "{path}: {answer}"
        );
        assert!(!answer.contains("root:"), "{path}: {answer}");
        assert!(!answer.contains("[workspace]"), "{path}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_captured_registration_cannot_be_sent_again() {
    use wire::provider::{
        ModelAdvert, REGISTER_PATH, REGISTRATION_PURPOSE, Registration, SignedEnvelope,
    };
    let (_gateway, url, _dir) = gateway("");
    let http = client();
    let key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let registration = |challenge: String| Registration {
        purpose: REGISTRATION_PURPOSE.into(),
        issued_at_ms: u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_millis(),
        )
        .expect("ms"),
        challenge,
        endpoint: "http://127.0.0.1:9".into(),
        models: vec![ModelAdvert {
            model_type: wire::models::ModelType::Text,
            id: MODEL.into(),
            name: MODEL.into(),
            context_tokens: 2048,
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
    };
    let register = |envelope: &SignedEnvelope| {
        http.post(format!("{url}{REGISTER_PATH}"))
            .json(envelope)
            .send()
    };
    let captured = SignedEnvelope::sign(
        &key,
        &registration(registration_challenge(&http, &url).await),
    )
    .expect("sign");
    assert_eq!(register(&captured).await.expect("send").status(), 200);
    // Sent again, byte for byte, within every clock window: refused.
    let replayed = register(&captured).await.expect("send");
    assert_eq!(replayed.status(), 400);
    // Without a challenge of the gateway's: refused.
    let unchallenged = SignedEnvelope::sign(&key, &registration(String::new())).expect("sign");
    assert_eq!(register(&unchallenged).await.expect("send").status(), 400);
    // The provider itself registers again with a fresh challenge.
    let fresh = SignedEnvelope::sign(
        &key,
        &registration(registration_challenge(&http, &url).await),
    )
    .expect("sign");
    assert_eq!(register(&fresh).await.expect("send").status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn ledger_operations_and_key_changes_are_bounded_per_account() {
    let config = ledger_config("100", ADMIN_SECRET, USD_PER_MILLION).replace(
        "usage_flush_ms = 20\n",
        "usage_flush_ms = 20\noperations_per_minute_per_signer = 3\n",
    );
    let (_gateway, url, dir) = gateway(&config);
    let data = dir.path().join("data");
    // The operator funds and the account stakes: the operator is never limited.
    let (_, _) = staked_account_key(&url, dir.path(), "busy", "100");
    let wallet = dir.path().join("busy.key");
    let wallet = wallet.to_str().expect("utf-8");
    let address = wallet::Wallet::load(std::path::Path::new(wallet))
        .expect("the wallet")
        .address()
        .to_string();
    let operator = data.join("operator.key");
    gondola(
        &[
            "transfer",
            "--wallet",
            operator.to_str().expect("utf-8"),
            "--to",
            &address,
            "--vvv",
            "1",
        ],
        &url,
        &data,
    );
    let transfer = || {
        std::process::Command::new(crate::support::binary())
            .args(["transfer", "--wallet", wallet, "--to"])
            .arg(format!("0x{}", "5a".repeat(20)))
            .args(["--vvv", "0.000001", "--gateway", &url, "--data-dir"])
            .arg(&data)
            .arg("--json")
            .output()
            .expect("run gondola")
    };
    // Three a minute: the account staked (one) and minted a key (not a ledger operation), so
    // two transfers pass and the third is refused, with nothing written.
    assert!(transfer().status.success());
    assert!(transfer().status.success());
    let refused = transfer();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("too many ledger operations"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let account: Value = client()
        .get(format!("{url}/api/v1/ledger/accounts/{address}"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(account["nonce"], 3, "{account}");

    // Key changes: thirty a minute per account, then 429.
    let admin = gondola(&["key", "--admin", "--wallet", wallet], &url, &data)["data"]["apiKey"]
        .as_str()
        .expect("an ADMIN key")
        .to_owned();
    let http = client();
    let mut statuses = Vec::new();
    for index in 0..31 {
        statuses.push(
            http.post(format!("{url}/api/v1/api_keys"))
                .bearer_auth(&admin)
                .json(&json!({"apiKeyType": "INFERENCE", "description": format!("key {index}")}))
                .send()
                .await
                .expect("send")
                .status()
                .as_u16(),
        );
    }
    // Two changes were the web3 mints (the first key and the ADMIN key).
    assert_eq!(
        statuses.iter().filter(|status| **status == 200).count(),
        28,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_schemas_that_make_no_grammar_are_the_clients_error_and_trip_no_breaker() {
    let (_process, url, _dir) = serve(&[], None);
    let http = client();
    let hostile = [
        json!({"type": "array", "minItems": 100_000_000}),
        json!({"type": "string", "minLength": 100_000_000}),
        json!({"$ref": "#"}),
        json!({"$ref": "#/definitions/a", "definitions": {"a": {"$ref": "#/definitions/a"}}}),
    ];
    // More refusals than the breaker's threshold (3), each with the model's only provider.
    for parameters in hostile.iter().chain(hostile.iter()) {
        let mut body = chat_body(MODEL, "hi", 16, false);
        body["tools"] =
            json!([{"type": "function", "function": {"name": "f", "parameters": parameters}}]);
        body["tool_choice"] = "required".into();
        let response = http
            .post(format!("{url}/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 400, "{parameters}");
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["error"]["param"], "tools", "{error}");
    }
    let fine = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat_body(MODEL, "hi", 4, false))
        .send()
        .await
        .expect("send");
    assert_eq!(
        fine.status(),
        200,
        "the provider was taken out of service by bad requests"
    );
}
