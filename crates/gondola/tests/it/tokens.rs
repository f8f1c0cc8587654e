//! Privacy Pass capacity tokens against the real binary and model: an account's key buys
//! blind-signed tokens from the issuer, each chat request pays with tokens instead of the key,
//! a token is good for one request of its own day only, and the issuer sells no more than the
//! account's allowance; `gondola proxy` (through `gondola relay`) buys and spends them by
//! itself, paying a long answer with as many as the gateway asks for and starting over on a
//! new day.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use privacy::tokens::{IssuerKey, authorization_value, request_batch};
use privacypass::public_tokens::PublicToken;

use crate::economy::{ledger_config, staked_account_key};
use crate::support::{chat_body, client, proxy, relay, serve};

const MODEL: &str = "smollm2-135m-instruct";
const ADMIN_SECRET: &str = "sk-tokens-operator";

/// A new account staking all the VVV there is, and an API key of its.
pub(crate) fn account_key(url: &str, dir: &std::path::Path) -> String {
    staked_account_key(url, dir, "user", "100").0
}

pub(crate) async fn issuer_key(http: &reqwest::Client, url: &str) -> IssuerKey {
    let response = http
        .get(format!("{url}{}", privacy::tokens::ISSUER_DIRECTORY_PATH))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        privacy::tokens::DIRECTORY_MEDIA_TYPE
    );
    IssuerKey::from_directory_json(&response.bytes().await.expect("body")).expect("a directory")
}

/// Asks the issuer for `count` tokens with `key`: the tokens, or the refusal's status and body.
pub(crate) async fn buy(
    http: &reqwest::Client,
    url: &str,
    issuer: &IssuerKey,
    key: &str,
    count: usize,
) -> Result<Vec<PublicToken>, (u16, serde_json::Value)> {
    let (body, pending) = request_batch(issuer, count).expect("a batch");
    let response = http
        .post(format!("{url}{}", privacy::tokens::ISSUE_PATH))
        .bearer_auth(key)
        .header("content-type", privacy::tokens::BATCH_REQUEST_MEDIA_TYPE)
        .body(body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("body");
    if status != 200 {
        return Err((status, serde_json::from_slice(&body).expect("an API error")));
    }
    Ok(pending.finish(&body).expect("tokens that verify"))
}

/// A chat request paid with `authorization` (a `PrivateToken` list): status, headers, body.
pub(crate) async fn chat_paid(
    http: &reqwest::Client,
    url: &str,
    authorization: &str,
    max_tokens: u32,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .header("authorization", authorization)
        .json(&chat_body(MODEL, "Say hello.", max_tokens, false))
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.expect("json"))
}

pub(crate) fn paid(tokens: &[PublicToken]) -> String {
    authorization_value(tokens).expect("a header")
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_pay_once_on_their_own_day_and_the_issuer_sells_only_the_allowance() {
    // A $0.10 network: the only staker's allowance is 100 tokens of $0.001 a day. A price
    // high enough that a long answer needs several tokens.
    let config = ledger_config("0.1", ADMIN_SECRET, "1");
    let (gateway, url, dir) = serve(&["--adjustable-clock"], Some(&config));
    let key = account_key(&url, dir.path());
    let http = client();
    let issuer = issuer_key(&http, &url).await;

    // The issuer sells at most the day's allowance, and only to an account's key.
    let (status, _) = buy(&http, &url, &issuer, "sk-not-a-key", 1)
        .await
        .expect_err("an unknown key");
    assert_eq!(status, 401);
    let mut tokens = buy(&http, &url, &issuer, &key, 40).await.expect("tokens");
    assert_eq!(tokens.len(), 40);
    let (status, refusal) = buy(&http, &url, &issuer, &key, 61)
        .await
        .expect_err("$0.061 of tokens with $0.06 of the allowance left");
    assert_eq!(status, 402, "{refusal}");
    assert_eq!(refusal["error"]["code"], "insufficient_quota", "{refusal}");

    // A token pays for one request, without the key; the reply names no account.
    let first = tokens.remove(0);
    let (status, headers, body) =
        chat_paid(&http, &url, &paid(std::slice::from_ref(&first)), 8).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body["choices"][0]["message"]["content"]
            .as_str()
            .expect("text")
            .is_empty()
    );
    assert!(headers.get("x-venice-balance-usd").is_none());
    // Spent is spent: 402, and the same token twice in one request too.
    let (status, _, body) = chat_paid(&http, &url, &paid(&[first]), 8).await;
    assert_eq!(status, 402, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("already spent"),
        "{body}"
    );
    let twice = tokens.remove(0);
    let (status, _, _) = chat_paid(&http, &url, &paid(&[twice.clone(), twice]), 8).await;
    assert_eq!(status, 402);

    // A tampered token is refused, and the gateway goes on serving.
    let header = paid(&[tokens.remove(0)]);
    let encoded = header
        .strip_prefix("PrivateToken token=")
        .expect("one token");
    let mut bytes = URL_SAFE.decode(encoded).expect("base64url");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let tampered = format!("PrivateToken token={}", URL_SAFE.encode(&bytes));
    let (status, _, body) = chat_paid(&http, &url, &tampered, 8).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = chat_paid(&http, &url, "PrivateToken token=%%%", 8).await;
    assert_eq!(status, 401, "{body}");

    // A long answer costs more than one token: the refusal says how many, and that many pay.
    let (status, headers, body) = chat_paid(&http, &url, &paid(&tokens[..1]), 4000).await;
    assert_eq!(status, 402, "{body}");
    let required: usize = headers[privacy::tokens::TOKENS_REQUIRED_HEADER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a count");
    assert!(required > 1, "{required}");
    // The refused request spent nothing: the same tokens (and more) now pay.
    let (status, _, body) = chat_paid(&http, &url, &paid(&tokens[..required]), 4000).await;
    assert_eq!(status, 200, "{body}");
    tokens.drain(..required);

    // The model list takes a token without spending it.
    let models = http
        .get(format!("{url}/v1/models"))
        .header("authorization", paid(&tokens[..1]))
        .send()
        .await
        .expect("send");
    assert_eq!(models.status(), 200);
    let (status, _, body) = chat_paid(&http, &url, &paid(&tokens[..1]), 8).await;
    assert_eq!(status, 200, "{body}");
    tokens.remove(0);

    // `gondola proxy` with the account's key does the same by itself, through a relay: it buys
    // a batch (20 of the 60 left), and a long answer's refusal tells it how many to send.
    let (_relay, relay_url) = relay(&url);
    let (_proxy, proxy_url) = proxy(&relay_url, &["--api-key", &key]);
    let through_proxy = |max_tokens: u32| {
        let http = http.clone();
        let proxy_url = proxy_url.clone();
        async move {
            let response = http
                .post(format!("{proxy_url}/v1/chat/completions"))
                .json(&chat_body(MODEL, "Say hello.", max_tokens, false))
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            (
                status,
                response.json::<serde_json::Value>().await.expect("json"),
            )
        }
    };
    let (status, body) = through_proxy(4000).await;
    assert_eq!(status, 200, "{body}");
    let (status, refusal) = buy(&http, &url, &issuer, &key, 41)
        .await
        .expect_err("the proxy bought 20 of the 60");
    assert_eq!(status, 402, "{refusal}");

    // The next day has a new key: yesterday's tokens are refused, today's allowance is new.
    let advanced = http
        .post(format!("{url}/api/v1/admin/clock"))
        .bearer_auth(ADMIN_SECRET)
        .json(&serde_json::json!({"advance_seconds": 86_400}))
        .send()
        .await
        .expect("send");
    assert_eq!(advanced.status(), 200);
    let (status, _, body) = chat_paid(&http, &url, &paid(&tokens[..1]), 8).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("another epoch"),
        "{body}"
    );
    let today = issuer_key(&http, &url).await;
    assert_eq!(today.epoch, issuer.epoch + 1);
    assert_ne!(today.key_id, issuer.key_id);
    let (status, _) = buy(&http, &url, &issuer, &key, 1)
        .await
        .expect_err("a request under yesterday's key");
    assert_eq!(status, 400);
    // The proxy's purse holds yesterday's tokens: refused, it buys today's and goes on.
    let (status, body) = through_proxy(8).await;
    assert_eq!(status, 200, "{body}");
    let fresh = buy(&http, &url, &today, &key, 50)
        .await
        .expect("a new day's allowance");
    let (status, _, body) = chat_paid(&http, &url, &paid(&fresh[..1]), 8).await;
    assert_eq!(status, 200, "{body}");

    // The gateway logged each paid request as paid with tokens, and never a token.
    let log = gateway.stderr();
    assert!(log.contains("paid_with=\"tokens\""), "{log}");
    assert!(!log.contains("paid_with=\"account\""), "{log}");
    let spent_header = paid(&fresh[..1]);
    let spent_token = spent_header.trim_start_matches("PrivateToken token=");
    assert!(!log.contains(spent_token));
    assert!(!log.contains(&key));
}
