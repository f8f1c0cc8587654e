//! The economy end to end, with the real binary, the real model and the CLI as a user runs it:
//! a wallet is funded, stakes, mints and stakes DIEM, mints an API key with a signature, and
//! its requests draw down the daily allowance until 402; the next UTC day (the gateway's
//! clock moved by its operator) restores it; concurrent requests cannot overspend; replayed
//! and forged operations are refused; the journal verifies.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use sha2::Digest;

use crate::support::{binary, chat_body, client, get_json, serve};

const ADMIN_SECRET: &str = "sk-economy-operator";
const MODEL: &str = "smollm2-135m-instruct";

pub(crate) fn gondola(args: &[&str], gateway: &str, data: &Path) -> Value {
    let output = Command::new(binary())
        .args(args)
        .args(["--gateway", gateway, "--data-dir"])
        .arg(data)
        .arg("--json")
        .output()
        .expect("run gondola");
    assert!(
        output.status.success(),
        "gondola {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

fn units(value: &Value) -> u128 {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("not base units: {value}"))
}

/// A decimal string ("0.25") as 18-decimal base units, exactly.
pub(crate) fn decimal_units(text: &str) -> u128 {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    assert!(fraction.len() <= 18, "{text}");
    let fraction = format!("{fraction:0<18}");
    whole.parse::<u128>().expect("whole part") * 10u128.pow(18)
        + fraction.parse::<u128>().expect("fraction")
}

fn dollars(text: &str) -> f64 {
    text.parse().expect("a decimal")
}

async fn chat(
    http: &reqwest::Client,
    url: &str,
    key: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = http
        .post(format!("{url}/api/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat_body(MODEL, "Say hello.", 8, false))
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.expect("json"))
}

fn balance_header(headers: &reqwest::header::HeaderMap) -> f64 {
    dollars(
        headers
            .get("x-venice-balance-diem")
            .expect("a balance header")
            .to_str()
            .expect("text"),
    )
}

/// A gateway configuration with a ledger whose network capacity is `capacity_usd` a day, an
/// ADMIN key `admin_secret` (which may move the clock), and `MODEL` priced at
/// `usd_per_million` for input and output alike.
pub(crate) fn ledger_config(
    capacity_usd: &str,
    admin_secret: &str,
    usd_per_million: &str,
) -> String {
    let admin_sha = hex::encode(sha2::Sha256::digest(admin_secret.as_bytes()));
    format!(
        r#"
[gateway.ledger]
network_capacity_usd_per_day = "{capacity_usd}"
usage_flush_ms = 20

[[gateway.keys]]
name = "operator"
kind = "admin"
sha256 = "{admin_sha}"

[gateway.models.pricing.{MODEL}]
input_usd_per_million = "{usd_per_million}"
output_usd_per_million = "{usd_per_million}"
"#
    )
}

/// A new wallet (`name` in `dir`) given `vvv` VVV by the operator, all staked, and an API key
/// of its account: the key's secret and id.
pub(crate) fn staked_account_key(url: &str, dir: &Path, name: &str, vvv: &str) -> (String, String) {
    let data = dir.join("data");
    let operator_wallet = data.join("operator.key");
    let operator_wallet = operator_wallet.to_str().expect("utf-8 path");
    let wallet = dir.join(format!("{name}.key"));
    let wallet = wallet.to_str().expect("utf-8 path");
    let address = gondola(&["wallet", "new", "--wallet", wallet], url, &data)["address"]
        .as_str()
        .expect("address")
        .to_owned();
    gondola(
        &[
            "transfer",
            "--wallet",
            operator_wallet,
            "--to",
            &address,
            "--vvv",
            vvv,
        ],
        url,
        &data,
    );
    gondola(&["stake", "--wallet", wallet, vvv], url, &data);
    let minted = gondola(&["key", "--wallet", wallet], url, &data);
    (
        minted["data"]["apiKey"].as_str().expect("a key").to_owned(),
        minted["data"]["id"].as_str().expect("an id").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn staking_buys_a_daily_allowance_that_requests_draw_down_and_the_next_day_restores() {
    // Prices high enough that a one-dollar allowance lasts a handful of requests.
    let config = ledger_config("0", ADMIN_SECRET, "1000");
    let (mut process, url, dir) = serve(&["--adjustable-clock"], Some(&config));
    let data = dir.path().join("data");
    let user_wallet = dir.path().join("user.key");
    let user_wallet = user_wallet.to_str().expect("utf-8 path");
    let operator_wallet = data.join("operator.key");
    let operator_wallet = operator_wallet.to_str().expect("utf-8 path");
    let http = client();

    let created = gondola(&["wallet", "new", "--wallet", user_wallet], &url, &data);
    let user = created["address"].as_str().expect("address").to_owned();
    gondola(
        &[
            "transfer",
            "--wallet",
            operator_wallet,
            "--to",
            &user,
            "--vvv",
            "10000",
        ],
        &url,
        &data,
    );
    // Without stake, a wallet cannot mint a key.
    let refused = Command::new(binary())
        .args(["key", "--wallet", user_wallet, "--gateway", &url])
        .output()
        .expect("run gondola");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("staked sVVV"));

    let staked = gondola(&["stake", "--wallet", user_wallet, "5000"], &url, &data);
    assert_eq!(
        units(&staked["outcome"]["svvv_units"]),
        5_000 * 10u128.pow(18)
    );
    let quote = gondola(&["diem", "quote", "--svvv", "900"], &url, &data);
    let minted = gondola(
        &["diem", "mint", "--wallet", user_wallet, "900"],
        &url,
        &data,
    );
    assert_eq!(
        units(&minted["outcome"]["diem_units"]),
        units(&quote["diem_units"]),
        "nothing happened between quote and mint, so the mint gets the quote"
    );
    // 0.05 staked DIEM is below the 0.1 minimum: no allowance yet.
    gondola(
        &["diem", "stake", "--wallet", user_wallet, "0.05"],
        &url,
        &data,
    );
    let account = gondola(&["balance", "--wallet", user_wallet], &url, &data);
    assert_eq!(units(&account["allowance"]["total_usd_units_per_day"]), 0);
    gondola(
        &["diem", "stake", "--wallet", user_wallet, "0.95"],
        &url,
        &data,
    );
    let account = gondola(&["balance", "--wallet", user_wallet], &url, &data);
    assert_eq!(
        units(&account["allowance"]["total_usd_units_per_day"]),
        10u128.pow(18),
        "one staked DIEM is one dollar a day"
    );

    let key = gondola(&["key", "--wallet", user_wallet], &url, &data);
    let key = key["data"]["apiKey"].as_str().expect("a key").to_owned();

    // Requests draw the allowance down until the next one could cost more than what is left.
    let mut balances = Vec::new();
    let mut refusal = None;
    for _ in 0..60 {
        let (status, headers, body) = chat(&http, &url, &key).await;
        match status {
            200 => {
                // The allowance paid: the whole cost is in DIEM.
                assert_eq!(body["cost"]["usd"].as_f64(), Some(0.0), "{body}");
                balances.push((
                    balance_header(&headers),
                    body["cost"]["diem"].as_f64().expect("cost"),
                ));
            }
            402 => {
                refusal = Some((headers, body));
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let (headers, body) = refusal.expect("the allowance ran out");
    assert!(
        balances.len() >= 2,
        "a dollar pays for a few requests: {balances:?}"
    );
    assert_eq!(body["code"], "INSUFFICIENT_BALANCE", "{body}");
    for pair in balances.windows(2) {
        let ((before, cost), (after, _)) = (pair[0], pair[1]);
        assert!(
            (before - cost - after).abs() < 1e-9,
            "each request's cost comes off the balance: {balances:?}"
        );
    }
    let left = balance_header(&headers);
    assert!((0.0..1.0).contains(&left));

    // The next UTC day restores the allowance.
    let advanced = http
        .post(format!("{url}/api/v1/admin/clock"))
        .bearer_auth(ADMIN_SECRET)
        .json(&serde_json::json!({"advance_seconds": 86_400}))
        .send()
        .await
        .expect("send");
    assert_eq!(advanced.status(), 200);
    let (status, headers, _) = chat(&http, &url, &key).await;
    assert_eq!(status, 200);
    assert!(
        (balance_header(&headers) - 1.0).abs() < 1e-12,
        "a fresh day: {headers:?}"
    );

    // Concurrent requests cannot spend more than the day's allowance.
    let results = futures_util::future::join_all((0..8).map(|_| chat(&http, &url, &key))).await;
    let statuses: Vec<u16> = results.iter().map(|(status, _, _)| *status).collect();
    assert!(
        statuses
            .iter()
            .all(|status| *status == 200 || *status == 402),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&402),
        "eight requests that may cost $0.5 each cannot all hold a reservation on $1: {statuses:?}"
    );

    // Usage reaches the ledger; the day's spend is within the allowance.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let history = loop {
        let history =
            get_json_with_key(&http, &format!("{url}/api/v1/billing/usage-days"), &key).await;
        let requests: u64 = history["data"]
            .as_array()
            .expect("days")
            .iter()
            .map(|day| day["requests"].as_u64().expect("count"))
            .sum();
        let served =
            balances.len() as u64 + 1 + statuses.iter().filter(|s| **s == 200).count() as u64;
        if requests == served {
            break history;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "settled {requests} requests of {served}: {history}"
        );
        tokio::task::yield_now().await;
    };
    for day in history["data"].as_array().expect("days") {
        assert!(
            dollars(day["diem"].as_str().expect("decimal")) <= 1.0,
            "{day}"
        );
    }

    // The first day's utilization reaches the ledger once that day is over: everything spent
    // on it over the day's capacity (no network share here, one staked DIEM: $1).
    let first_day = &history["data"][0];
    let spent = decimal_units(first_day["diem"].as_str().expect("decimal"))
        + decimal_units(first_day["bundledCredits"].as_str().expect("decimal"))
        + decimal_units(first_day["usd"].as_str().expect("decimal"));
    let expected_bps = (spent * 10_000 / 10u128.pow(18)).min(10_000) as u64;
    assert!(
        expected_bps > 0,
        "the first day spent something: {first_day}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status = get_json(&http, format!("{url}/api/v1/ledger/status")).await;
        if status["emissions"]["utilization_bps"].as_u64() == Some(expected_bps) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "utilization {} ≠ {expected_bps}",
            status["emissions"]
        );
        tokio::task::yield_now().await;
    }

    // A replayed signed operation and a forged one are refused.
    replay_and_forgery_are_refused(&http, &url, user_wallet).await;

    process.kill();
    let verified = Command::new(binary())
        .args(["ledger", "verify", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .expect("run gondola");
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let report: Value = serde_json::from_slice(&verified.stdout).expect("JSON");
    assert!(
        report["records"].as_u64().expect("records") >= 9,
        "{report}"
    );
    assert_eq!(
        report["signatures_checked"], report["records"],
        "every record, the operator's and the user's, carries a signature that holds"
    );
}

async fn get_json_with_key(http: &reqwest::Client, url: &str, key: &str) -> Value {
    http.get(url)
        .bearer_auth(key)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json")
}

async fn replay_and_forgery_are_refused(http: &reqwest::Client, url: &str, wallet_path: &str) {
    let wallet = wallet::Wallet::load(Path::new(wallet_path)).expect("wallet");
    let status = get_json(http, format!("{url}/api/v1/ledger/status")).await;
    let salt: [u8; 32] = hex::decode(
        status["eip712_domain"]["salt"]
            .as_str()
            .expect("salt")
            .trim_start_matches("0x"),
    )
    .expect("hex")
    .try_into()
    .expect("32 bytes");
    let now = status["now"].as_u64().expect("now");
    let account = get_json(
        http,
        format!("{url}/api/v1/ledger/accounts/{}", wallet.address()),
    )
    .await;
    let nonce = account["nonce"].as_u64().expect("nonce");
    let signed = wallet::SignedOperation::sign(
        &wallet,
        &wallet::Domain { salt },
        wallet::Operation::ClaimRewards,
        nonce,
        now + 600,
        wallet::Scheme::Eip191,
    );
    let post = |body: Value| async move {
        let response = http
            .post(format!("{url}/api/v1/ledger/operations"))
            .json(&body)
            .send()
            .await
            .expect("send");
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.expect("json"))
    };
    let body = serde_json::to_value(&signed).expect("json");
    let (first, receipt) = post(body.clone()).await;
    assert_eq!(first, 200, "{receipt}");
    let (again, error) = post(body.clone()).await;
    assert_eq!(again, 400, "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap_or_default()
            .contains("nonce"),
        "{error}"
    );
    let mut forged = body;
    forged["operation"] = serde_json::json!({"type": "stake", "vvv_units": "1"});
    forged["nonce"] = Value::from(nonce + 1);
    let (status, error) = post(forged).await;
    assert_eq!(status, 401, "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_accounts_rate_limit_refusals_are_logged_for_it_alone() {
    // Two requests a minute for the small tier (every model is small unless configured).
    let config = r#"
[gateway.rate_limits.small]
requests_per_minute = 2
"#;
    let (_process, url, dir) = serve(&[], Some(config));
    let (key, key_id) = staked_account_key(&url, dir.path(), "user", "100");

    let http = client();
    let log_url = format!("{url}/api/v1/api_keys/rate_limits/log");
    let empty = get_json_with_key(&http, &log_url, &key).await;
    assert_eq!(empty["data"], serde_json::json!([]), "{empty}");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(chat(&http, &url, &key).await.0);
    }
    assert_eq!(statuses, [200, 200, 429]);

    let log = get_json_with_key(&http, &log_url, &key).await;
    let entries = log["data"].as_array().expect("a list");
    assert_eq!(entries.len(), 1, "{log}");
    assert_eq!(entries[0]["apiKeyId"], key_id.as_str());
    assert_eq!(entries[0]["modelId"], MODEL);
    assert_eq!(entries[0]["rateLimitTier"], "small");
    assert_eq!(entries[0]["rateLimitType"], "RPM");
    assert!(
        entries[0]["timestamp"]
            .as_u64()
            .is_some_and(|at| at > 1_700_000_000)
    );

    // Another account sees nothing of it.
    let (other_key, _) = staked_account_key(&url, dir.path(), "other", "1");
    let theirs = get_json_with_key(&http, &log_url, &other_key).await;
    assert_eq!(theirs["data"], serde_json::json!([]), "{theirs}");
}
