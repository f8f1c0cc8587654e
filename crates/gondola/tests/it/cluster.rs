//! Many gateways as one service: three `gondola gateway` processes share a real Redis
//! (`[gateway.cluster]`), and one provider keeps a lease with each of them, so every replica
//! routes to it. A key's per-minute budget of 4 admits 4 requests in all, whichever replicas
//! they reach; with Redis gone, requests are refused with a 503 naming the store and the
//! processes stay up; when it returns, they are served again. The replicas publish the same
//! Oblivious HTTP keys and token issuer key, derived from the cluster's one seed, and a
//! privacy token sent to all three at once pays for one request. With
//! PostgreSQL too, they keep one ledger and one key table: an account's allowance spent through
//! all three at once is charged exactly what was served and never more than it holds, a key
//! deleted at one replica is refused by all, a web3 challenge is answered once in the cluster,
//! and every replica's copy of the journal verifies.

use std::time::Duration;

use serde_json::json;

use crate::support::{RedisServer, client, gateway, provider_with};

/// The UTC minute now: the shared rate window.
fn minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        / 60
}

#[tokio::test(flavor = "multi_thread")]
async fn three_gateways_share_one_budget_and_fail_closed_without_their_store() {
    let store = tempfile::tempdir().expect("temp dir");
    let mut redis = RedisServer::start(store.path());
    let secrets: Vec<String> = (0..3).map(|index| format!("sk-cluster-{index}")).collect();
    let mut config = String::new();
    for (index, secret) in secrets.iter().enumerate() {
        config.push_str(&format!(
            "[[gateway.keys]]\nname = \"replicated-{index}\"\nsha256 = \"{}\"\nrequests_per_minute = 4\n\n",
            hex::encode(gateway::hash_secret(secret))
        ));
    }
    config.push_str(&format!(
        "[gateway.cluster]\nredis_url = \"{}\"\nseed = \"{}\"\n",
        redis.url(),
        store.path().join("cluster.seed").display()
    ));
    let replicas: Vec<_> = (0..3).map(|_| gateway(&config)).collect();
    let urls: Vec<&str> = replicas.iter().map(|(_, url, _)| url.as_str()).collect();
    // One provider, a lease with each replica.
    let ((_provider, provider_id), _) =
        provider_with(urls[0], &["--gateway", urls[1], "--gateway", urls[2]]);
    let http = client();
    let ask = |url: &str, secret: &str| {
        http.post(format!("{url}/v1/chat/completions"))
            .bearer_auth(secret)
            .json(&json!({
                "model": "smollm2-135m-instruct",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 1,
            }))
            .send()
    };
    for url in &urls {
        let response = ask(url, &secrets[1]).await.expect("send");
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(
            response.headers()["x-gondola-provider"],
            provider_id.as_str()
        );
    }

    // Twelve requests, round the three replicas: four are let through. Should the minute turn
    // over mid-count, the count is taken again with the next key.
    let mut counted = false;
    for secret in [&secrets[0], &secrets[2]] {
        let before = minute();
        let mut admitted = 0;
        for request in 0..12 {
            let response = ask(urls[request % 3], secret).await.expect("send");
            if response.status() != 429 {
                admitted += 1;
            }
        }
        if minute() == before {
            assert_eq!(admitted, 4, "a budget of 4 admits 4 across three replicas");
            counted = true;
            break;
        }
    }
    assert!(counted, "three minutes turned over mid-count");

    // The store goes away: refused, naming it, and every process stays up.
    redis.stop();
    for url in &urls {
        let response = ask(url, &secrets[1]).await.expect("send");
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        let body = response.text().await.expect("body");
        assert!(body.contains("shared store"), "{body}");
    }
    // It returns: served again (the connections are made anew).
    redis.restart();
    for url in &urls {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let response = ask(url, "sk-cluster-unknown").await.expect("send");
            // An unknown key is refused by its own check, before the store; a known one is
            // counted in the store again.
            assert_eq!(response.status(), 401);
            let response = ask(url, &secrets[1]).await.expect("send");
            if response.status() != 503 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the replica did not reach the store again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A port free now (bound and let go): for nginx, which is told its port in its file.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The README's example as it is (`examples/cluster/`): three replicas behind nginx with
/// the example's configuration, only ports, paths and the key's secret changed. Requests
/// through nginx reach every replica and share one budget; when a replica is killed, nginx
/// sends the next requests to the others.
#[tokio::test(flavor = "multi_thread")]
async fn the_example_runs_three_replicas_behind_nginx_and_survives_losing_one() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster");
    let store = tempfile::tempdir().expect("temp dir");
    let redis = RedisServer::start(store.path());
    let secret = "sk-cluster-example";
    let socket = redis.url();
    let config = std::fs::read_to_string(example.join("gondola.toml"))
        .expect("the example's configuration")
        .replace("redis+unix:///run/gondola/redis.sock", &socket)
        .replace(
            "/etc/gondola/cluster.seed",
            &store.path().join("cluster.seed").display().to_string(),
        )
        .replace(
            "secret = \"env::GONDOLA_APP_KEY\"",
            &format!("sha256 = \"{}\"", hex::encode(gateway::hash_secret(secret))),
        )
        .replace("requests_per_minute = 600", "requests_per_minute = 6");
    let mut replicas: Vec<_> = (0..3).map(|_| gateway(&config)).collect();
    let urls: Vec<String> = replicas.iter().map(|(_, url, _)| url.clone()).collect();
    let ((_provider, provider_id), _) =
        provider_with(&urls[0], &["--gateway", &urls[1], "--gateway", &urls[2]]);
    let port = free_port();
    let mut nginx_config = std::fs::read_to_string(example.join("nginx.conf"))
        .expect("the example's nginx.conf")
        .replace("127.0.0.1:8844", &format!("127.0.0.1:{port}"));
    for (placeholder, url) in ["127.0.0.1:8845", "127.0.0.1:8846", "127.0.0.1:8847"]
        .iter()
        .zip(&urls)
    {
        nginx_config = nginx_config.replace(placeholder, url.trim_start_matches("http://"));
    }
    let nginx_dir = store.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir).expect("nginx's directory");
    std::fs::write(nginx_dir.join("nginx.conf"), &nginx_config).expect("written");
    let nginx_binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .unwrap_or("nginx");
    let mut nginx = std::process::Command::new(nginx_binary)
        .arg("-p")
        .arg(&nginx_dir)
        .arg("-c")
        .arg(nginx_dir.join("nginx.conf"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nginx runs (Debian's nginx-light package)");
    let front = format!("http://127.0.0.1:{port}");
    let http = client();
    // nginx has started once it answers (it writes nothing when ready).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while http.get(format!("{front}/healthz")).send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "nginx did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ask = || {
        http.post(format!("{front}/v1/chat/completions"))
            .bearer_auth(secret)
            .json(&json!({
                "model": "smollm2-135m-instruct",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 1,
            }))
            .send()
    };
    // Nine requests through nginx: six let through (the key's budget, counted across the
    // replicas), the rest refused; every answer from the one provider.
    let before = minute();
    let mut admitted = 0;
    for _ in 0..9 {
        let response = ask().await.expect("send");
        match response.status().as_u16() {
            200 => {
                admitted += 1;
                assert_eq!(
                    response.headers()["x-gondola-provider"],
                    provider_id.as_str()
                );
            }
            429 => {}
            other => panic!("through nginx: {other}"),
        }
    }
    if minute() == before {
        assert_eq!(
            admitted, 6,
            "the budget holds across the replicas behind nginx"
        );
    }
    // A replica dies: nginx sends what comes next to the others.
    replicas[0].0.kill();
    for _ in 0..6 {
        let response = http
            .get(format!("{front}/v1/models"))
            .bearer_auth(secret)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200, "a live replica answered");
    }
    let _ = nginx.kill();
    let _ = nginx.wait();
    drop(replicas);
}

/// `rediss://`: a Redis that speaks TLS is reached through it, its certificate checked against
/// the `ca_file` given; without it (the system's roots only), the gateway will not start.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_behind_tls_is_checked_against_the_given_authority() {
    let store = tempfile::tempdir().expect("temp dir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    let (cert, key) = (
        store.path().join("redis.pem"),
        store.path().join("redis.key"),
    );
    std::fs::write(&cert, certified.cert.pem()).expect("written");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("written");
    let port = free_port();
    let _redis = RedisServer::start_tls(store.path(), port, &cert, &key);
    let cluster = |ca_file: Option<&std::path::Path>| {
        format!(
            "[gateway.cluster]\nredis_url = \"rediss://127.0.0.1:{port}\"\nseed = \"{}\"\n{}",
            store.path().join("cluster.seed").display(),
            ca_file.map_or_else(String::new, |ca_file| format!(
                "ca_file = \"{}\"\n",
                ca_file.display()
            ))
        )
    };
    // Trusting the authority: the gateway connects, checks Redis's durability over TLS, and
    // serves.
    let (_gateway, url, _dir) = gateway(&cluster(Some(&cert)));
    let response = client()
        .get(format!("{url}/healthz"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    // Not trusting it: refused at start, naming the cluster.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, cluster(None)).expect("written");
    let output = std::process::Command::new(crate::support::binary())
        .args(["gateway", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("run gondola gateway");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot join the cluster"), "{stderr}");
}

/// A gateway replica as `gateway` starts it: the process, its URL and its directory.
type Replica = (
    crate::support::Process,
    String,
    std::sync::Arc<tempfile::TempDir>,
);

/// `[gateway.cluster]` for `redis`, the seed in `store`, and the shared ledger at
/// `postgres_url` if given.
fn cluster_section(
    redis: &RedisServer,
    store: &std::path::Path,
    postgres_url: Option<&str>,
) -> String {
    format!(
        "\n[gateway.cluster]\nredis_url = \"{}\"\nseed = \"{}\"\n{}",
        redis.url(),
        store.join("cluster.seed").display(),
        postgres_url.map_or_else(String::new, |url| format!("postgres_url = \"{url}\"\n"))
    )
}

/// `count` gateways on `config`, and one provider with a lease at each: the replicas, their
/// URLs and the provider.
fn replicas_with_provider(
    config: &str,
    count: usize,
) -> (Vec<Replica>, Vec<String>, crate::support::Process) {
    let replicas: Vec<Replica> = (0..count).map(|_| gateway(config)).collect();
    let urls: Vec<String> = replicas.iter().map(|(_, url, _)| url.clone()).collect();
    let others: Vec<&str> = urls[1..]
        .iter()
        .flat_map(|url| ["--gateway", url.as_str()])
        .collect();
    let ((provider, _), _) = provider_with(&urls[0], &others);
    (replicas, urls, provider)
}

/// Waits until `key` (made at one replica) works at every replica.
async fn key_works_everywhere(http: &reqwest::Client, urls: &[String], key: &str) {
    for url in urls {
        let (status, waited) = until_status(http, url, key, |status| status == 200).await;
        assert_eq!(status, 200, "the key works at {url} after {waited:?}");
    }
}

/// `gondola ledger verify` passes on each replica's copy of the shared journal.
fn every_copy_verifies(replicas: &[Replica]) {
    for (_, _, dir) in replicas {
        let verified = std::process::Command::new(crate::support::binary())
            .args(["ledger", "verify", "--json", "--data-dir"])
            .arg(dir.path().join("data"))
            .output()
            .expect("run gondola");
        assert!(
            verified.status.success(),
            "{}",
            String::from_utf8_lossy(&verified.stderr)
        );
    }
}

/// Asks `url` for the caller's usage with `key` until `wanted` holds for the status (at most
/// ten seconds): the last status, and how long it took.
async fn until_status(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    wanted: impl Fn(u16) -> bool,
) -> (u16, Duration) {
    let started = std::time::Instant::now();
    loop {
        let status = http
            .get(format!("{url}/api/v1/billing/usage-days"))
            .bearer_auth(key)
            .send()
            .await
            .expect("send")
            .status()
            .as_u16();
        if wanted(status) || started.elapsed() > Duration::from_secs(10) {
            return (status, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The usage of an account's key at `url`: requests and allowance spent, summed over days.
async fn settled(http: &reqwest::Client, url: &str, key: &str) -> (u64, u128) {
    let history: serde_json::Value = http
        .get(format!("{url}/api/v1/billing/usage-days"))
        .bearer_auth(key)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let days = history["data"].as_array().expect("days");
    let requests = days
        .iter()
        .map(|day| day["requests"].as_u64().expect("count"))
        .sum();
    let spent = days
        .iter()
        .map(|day| crate::economy::decimal_units(day["diem"].as_str().expect("decimal")))
        .sum();
    (requests, spent)
}

#[tokio::test(flavor = "multi_thread")]
async fn three_gateways_keep_one_ledger_and_never_let_an_account_spend_past_its_allowance() {
    const ADMIN: &str = "sk-cluster-operator";
    const UNITS_PER_TOKEN: u128 = 1_000_000_000_000; // $1 a million tokens
    let store = tempfile::tempdir().expect("temp dir");
    let redis = RedisServer::start(store.path());
    let postgres_dir = tempfile::tempdir().expect("temp dir");
    let postgres = test_servers::PostgresServer::start(postgres_dir.path());
    // $0.002 of capacity a day, all of it the one staker's allowance: 2,000 tokens.
    // Cached prompt tokens cost what others do, so a request's charge is its tokens.
    let mut config = crate::economy::ledger_config("0.002", ADMIN, "1").replace(
        "output_usd_per_million = \"1\"",
        "output_usd_per_million = \"1\"\ncache_input_usd_per_million = \"1\"",
    );
    assert!(config.contains("cache_input_usd_per_million"));
    config.push_str(&cluster_section(
        &redis,
        store.path(),
        Some(&postgres.url()),
    ));
    let (mut replicas, urls, _provider) = replicas_with_provider(&config, 3);
    // Every replica derived the one operator key from the cluster seed.
    let operator_key = |index: usize| {
        std::fs::read(replicas[index].2.path().join("data/operator.key")).expect("operator key")
    };
    assert_eq!(operator_key(0), operator_key(1));
    assert_eq!(operator_key(0), operator_key(2));

    // An account stakes and mints its keys at the first replica; the others take them from
    // the shared key table.
    let (key, key_id) =
        crate::economy::staked_account_key(&urls[0], replicas[0].2.path(), "user", "1000");
    let wallet = replicas[0].2.path().join("user.key");
    let wallet = wallet.to_str().expect("utf-8 path");
    // An ADMIN key minted with a challenge taken from one replica and answered at another;
    // the same answer at a third is a replay.
    let http = client();
    // Once a replica knows the key, it has followed the journal past the stake too.
    key_works_everywhere(&http, &urls, &key).await;
    let user = wallet::Wallet::load(std::path::Path::new(wallet)).expect("the user's wallet");
    let challenge = crate::support::get_json(
        &http,
        format!("{}/api/v1/api_keys/generate_web3_key", urls[1]),
    )
    .await;
    let token = challenge["data"]["token"].as_str().expect("a token");
    let answer = json!({
        "address": user.address().to_string(),
        "signature": format!("0x{}", hex::encode(user.personal_sign(token.as_bytes()))),
        "token": token,
        "apiKeyType": "ADMIN",
    });
    let mint = |url: &String| {
        http.post(format!("{url}/api/v1/api_keys/generate_web3_key"))
            .json(&answer)
            .send()
    };
    let minted = mint(&urls[2]).await.expect("send");
    assert_eq!(minted.status(), 200);
    let admin = minted.json::<serde_json::Value>().await.expect("json")["data"]["apiKey"]
        .as_str()
        .expect("an admin key")
        .to_owned();
    let replayed = mint(&urls[0]).await.expect("send");
    assert_eq!(
        replayed.status(),
        401,
        "a challenge is answered once in the cluster"
    );
    let keys: Vec<String> = vec![key.clone(); 3];

    // Rounds of ten requests at once to each replica, until a round is refused everywhere.
    let mut refused_for_allowance = false;
    let ask = |url: String, key: String| {
        let http = http.clone();
        async move {
            let response = http
                .post(format!("{url}/api/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&json!({
                    "model": "smollm2-135m-instruct",
                    "messages": [{"role": "user", "content": "Say hello."}],
                    "max_tokens": 8,
                    "venice_parameters": {"include_venice_system_prompt": false},
                }))
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.expect("json");
            (status, body)
        }
    };
    let (mut served, mut served_tokens) = (0u64, 0u128);
    for round in 0.. {
        assert!(round < 40, "the allowance was never spent");
        let asked = (0..30).map(|index| ask(urls[index % 3].clone(), keys[index % 3].clone()));
        let answers = futures_util::future::join_all(asked).await;
        let mut admitted = 0;
        for (status, body) in answers {
            // Refused for want of allowance, or (once refused often) for failing too often.
            assert!(matches!(status, 200 | 402 | 429), "{status}: {body}");
            refused_for_allowance |= status == 402;
            if status == 200 {
                admitted += 1;
                let usage = &body["usage"];
                served_tokens += u128::from(
                    usage["prompt_tokens"].as_u64().expect("prompt tokens")
                        + usage["completion_tokens"]
                            .as_u64()
                            .expect("completion tokens"),
                );
            }
        }
        served += admitted;
        if admitted == 0 && round > 0 {
            break;
        }
    }
    let allowance = 2_000 * UNITS_PER_TOKEN;
    assert!(served > 0, "something was served");
    assert!(refused_for_allowance, "the allowance ran out");
    assert!(
        served_tokens * UNITS_PER_TOKEN <= allowance,
        "served {served_tokens} tokens on an allowance of 2,000"
    );

    // The account's ADMIN key deletes the key at the second replica: refused there at once,
    // and at the others once they have followed the shared key table.
    let deleted = http
        .delete(format!("{}/api/v1/api_keys?id={key_id}", urls[1]))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("send");
    assert_eq!(deleted.status(), 200);
    let revoked = std::time::Instant::now();
    let ask_once = ask(urls[1].clone(), key.clone()).await;
    assert_eq!(ask_once.0, 401, "refused where it was deleted");
    for url in [&urls[0], &urls[2]] {
        let (status, _) = until_status(&http, url, &key, |status| status == 401).await;
        assert_eq!(status, 401);
    }
    let everywhere = revoked.elapsed();
    assert!(
        everywhere < Duration::from_secs(1),
        "refused by every replica after {everywhere:?}"
    );

    // The last two replicas stop (flushing what they metered); the first follows the journal
    // until it holds every served request, charged exactly once.
    for (process, _, _) in &mut replicas[1..] {
        assert!(process.terminate().success());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (requests, spent) = settled(&http, &urls[0], &admin).await;
        if requests == served {
            assert_eq!(
                spent,
                served_tokens * UNITS_PER_TOKEN,
                "charged what was served"
            );
            break;
        }
        assert!(requests < served, "settled {requests} of {served} requests");
        assert!(
            std::time::Instant::now() < deadline,
            "settled {requests} of {served} requests"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each replica's copy of the shared journal verifies, the one killed outright too.
    replicas[0].0.kill();
    every_copy_verifies(&replicas);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_privacy_token_sent_to_three_replicas_at_once_pays_once() {
    let store = tempfile::tempdir().expect("temp dir");
    let redis = RedisServer::start(store.path());
    let mut config = crate::economy::ledger_config("0.1", "sk-cluster-tokens", "1");
    config.push_str(&cluster_section(&redis, store.path(), None));
    let (replicas, urls, _provider) = replicas_with_provider(&config, 3);
    let http = client();
    // Bought at one replica, under the issuer key every replica derives from the seed.
    let key = crate::tokens::account_key(&urls[0], replicas[0].2.path());
    let issuer = crate::tokens::issuer_key(&http, &urls[0]).await;
    let mut directories = Vec::new();
    for url in &urls {
        directories.push(
            http.get(format!("{url}{}", privacy::tokens::ISSUER_DIRECTORY_PATH))
                .send()
                .await
                .expect("send")
                .bytes()
                .await
                .expect("body"),
        );
    }
    assert!(
        directories.windows(2).all(|pair| pair[0] == pair[1]),
        "one issuer key"
    );
    let tokens = crate::tokens::buy(&http, &urls[0], &issuer, &key, 2)
        .await
        .expect("tokens");
    // The same token at all three at once: one request is served, the others are refused.
    let paid = crate::tokens::paid(&tokens[..1]);
    let answers = futures_util::future::join_all(
        urls.iter()
            .map(|url| crate::tokens::chat_paid(&http, url, &paid, 8)),
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|(status, _, _)| *status).collect();
    assert_eq!(
        statuses.iter().filter(|status| **status == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|status| **status == 402).count(),
        2,
        "{statuses:?}"
    );
    // The other token is good at any replica, once.
    let paid = crate::tokens::paid(&tokens[1..]);
    assert_eq!(
        crate::tokens::chat_paid(&http, &urls[2], &paid, 8).await.0,
        200
    );
    assert_eq!(
        crate::tokens::chat_paid(&http, &urls[1], &paid, 8).await.0,
        402
    );
}

/// What the clients of one replica saw.
#[derive(Clone, Copy, Default)]
struct Tally {
    /// Requests answered in full, and their tokens.
    served: u64,
    tokens: u128,
    /// Requests that reached the replica but were not answered in full.
    cut_off: u64,
    /// Requests refused a connection (the replica was gone).
    refused: u64,
    /// The most tokens one request used.
    most_tokens: u128,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_under_load_loses_no_usage_it_answered_and_every_copy_verifies() {
    const UNITS_PER_TOKEN: u128 = 1_000_000_000_000; // $1 a million tokens
    let store = tempfile::tempdir().expect("temp dir");
    let redis = RedisServer::start(store.path());
    let postgres_dir = tempfile::tempdir().expect("temp dir");
    let postgres = test_servers::PostgresServer::start(postgres_dir.path());
    // $1 of allowance a day (a million tokens): nothing here runs out. Usage is flushed every
    // 20 ms.
    let mut config = crate::economy::ledger_config("1", "sk-cluster-operator", "1").replace(
        "output_usd_per_million = \"1\"",
        "output_usd_per_million = \"1\"\ncache_input_usd_per_million = \"1\"",
    );
    // However fast this machine serves, the key's per-minute budget is not what stops it.
    config.push_str(
        "\n[gateway.rate_limits.small]\nrequests_per_minute = 1000000\ntokens_per_minute = 1000000000\n",
    );
    config.push_str(&cluster_section(
        &redis,
        store.path(),
        Some(&postgres.url()),
    ));
    let (mut replicas, urls, _provider) = replicas_with_provider(&config, 3);
    let (key, _) =
        crate::economy::staked_account_key(&urls[0], replicas[0].2.path(), "user", "1000");
    let http = client();
    key_works_everywhere(&http, &urls, &key).await;

    // Twelve clients, each sending to the three replicas in turn, until told to stop; the
    // third replica is killed outright while they run.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients = (0..12).map(|client| {
        let (http, urls, key, stop) = (http.clone(), urls.clone(), key.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tally = [Tally::default(); 3];
            let mut next = client;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let replica = next % 3;
                next += 1;
                // Every other client streams: its usage comes in the last event, and the
                // response's end waits for the usage to be written.
                let stream = client % 2 == 0;
                let answer = http
                    .post(format!("{}/api/v1/chat/completions", urls[replica]))
                    .bearer_auth(&key)
                    .json(&json!({
                        "model": "smollm2-135m-instruct",
                        "messages": [{"role": "user", "content": "Say hello."}],
                        "max_tokens": 4,
                        "stream": stream,
                        "stream_options": {"include_usage": true},
                        "venice_parameters": {"include_venice_system_prompt": false},
                    }))
                    .send()
                    .await;
                let body = match answer {
                    Ok(response) if response.status() == 200 && stream => {
                        response.text().await.ok().and_then(|events| {
                            let mut data = events
                                .lines()
                                .filter_map(|line| line.strip_prefix("data: "))
                                .collect::<Vec<_>>();
                            if data.pop() != Some("[DONE]") {
                                return None;
                            }
                            data.iter()
                                .filter_map(|event| {
                                    serde_json::from_str::<serde_json::Value>(event).ok()
                                })
                                .find(|event| event["usage"].is_object())
                        })
                    }
                    Ok(response) if response.status() == 200 => {
                        response.json::<serde_json::Value>().await.ok()
                    }
                    Err(error) if error.is_connect() => {
                        tally[replica].refused += 1;
                        continue;
                    }
                    _ => None,
                };
                match body {
                    Some(body) => {
                        let usage = &body["usage"];
                        let tokens = u128::from(
                            usage["prompt_tokens"].as_u64().expect("prompt tokens")
                                + usage["completion_tokens"]
                                    .as_u64()
                                    .expect("completion tokens"),
                        );
                        tally[replica].served += 1;
                        tally[replica].tokens += tokens;
                        tally[replica].most_tokens = tally[replica].most_tokens.max(tokens);
                    }
                    None => tally[replica].cut_off += 1,
                }
            }
            tally
        })
    });
    let clients: Vec<_> = clients.collect();
    // Once every replica has served, the third is killed.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (requests, _) = settled(&http, &urls[0], &key).await;
        if requests >= 30 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "nothing was served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replicas[2].0.kill();
    // The others go on serving for a while after it.
    let (after_kill, _) = settled(&http, &urls[0], &key).await;
    loop {
        let (requests, _) = settled(&http, &urls[0], &key).await;
        if requests >= after_kill + 30 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the survivors stopped serving"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut tally = [Tally::default(); 3];
    for client in clients {
        for (total, part) in tally.iter_mut().zip(client.await.expect("a client")) {
            total.served += part.served;
            total.tokens += part.tokens;
            total.cut_off += part.cut_off;
            total.refused += part.refused;
            total.most_tokens = total.most_tokens.max(part.most_tokens);
        }
    }
    for survivor in &tally[..2] {
        assert_eq!(
            survivor.cut_off + survivor.refused,
            0,
            "the survivors failed no request"
        );
    }
    assert!(
        tally[2].served > 0,
        "the killed replica served before it was killed"
    );

    // Every response a client read in full was charged, the killed replica's too: its usage
    // was in the cluster's queue before its response ended, and a survivor settles what it
    // left. A request it was answering when it was killed may be charged without having been
    // read (its usage was written, its last bytes were not): at most one per client.
    let served = (
        tally.iter().map(|part| part.served).sum::<u64>(),
        tally.iter().map(|part| part.tokens).sum::<u128>(),
    );
    let (cut_off, most_tokens) = (
        tally[2].cut_off,
        tally.iter().map(|part| part.most_tokens).max().unwrap_or(0),
    );
    let stopped_at = std::time::Instant::now();
    let deadline = stopped_at + Duration::from_secs(30);
    let (requests, spent) = loop {
        let (requests, spent) = settled(&http, &urls[0], &key).await;
        if requests >= served.0 && spent >= served.1 * UNITS_PER_TOKEN {
            break (requests, spent);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "settled {requests} of the {} requests served ({} by the killed replica)",
            served.0,
            tally[2].served
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "the killed replica served {} requests ({} tokens), {} cut off; everything served was settled {} ms after the survivors stopped",
        tally[2].served,
        tally[2].tokens,
        cut_off,
        stopped_at.elapsed().as_millis()
    );
    assert!(
        requests <= served.0 + cut_off,
        "settled {requests} requests, served {} and cut off {cut_off}",
        served.0
    );
    assert!(
        spent <= (served.1 + u128::from(cut_off) * most_tokens) * UNITS_PER_TOKEN,
        "charged more than was served"
    );
    assert!(replicas[1].0.terminate().success());
    replicas[0].0.kill();
    every_copy_verifies(&replicas);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_behind_tls_is_checked_against_the_given_authority() {
    let store = tempfile::tempdir().expect("temp dir");
    let redis = RedisServer::start(store.path());
    let postgres_dir = tempfile::tempdir().expect("temp dir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    let (cert, key) = (
        store.path().join("postgres.pem"),
        store.path().join("postgres.key"),
    );
    std::fs::write(&cert, certified.cert.pem()).expect("written");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("written");
    let postgres =
        test_servers::PostgresServer::start_tls(postgres_dir.path(), free_port(), &cert, &key);
    let config = |ca_file: Option<&std::path::Path>| {
        format!(
            "[gateway.cluster]\nredis_url = \"{}\"\nseed = \"{}\"\npostgres_url = \"{}\"\n{}",
            redis.url(),
            store.path().join("cluster.seed").display(),
            postgres.tls_url(),
            ca_file.map_or_else(String::new, |ca_file| format!(
                "postgres_ca_file = \"{}\"\n",
                ca_file.display()
            ))
        )
    };
    // Trusting the authority: the gateway joins the shared ledger over TLS and serves from it.
    let (_gateway, url, _dir) = gateway(&config(Some(&cert)));
    let status = crate::support::get_json(&client(), format!("{url}/api/v1/ledger/status")).await;
    assert!(status.get("supply").is_some(), "{status}");
    // Not trusting it: refused at start, naming PostgreSQL.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config(None)).expect("written");
    let output = std::process::Command::new(crate::support::binary())
        .args(["gateway", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("run gondola gateway");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("PostgreSQL") && stderr.contains("certificate"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_accounts_rate_limit_refusals_are_logged_where_every_replica_reads_them() {
    let store = tempfile::tempdir().expect("temp dir");
    let redis = RedisServer::start(store.path());
    let postgres_dir = tempfile::tempdir().expect("temp dir");
    let postgres = test_servers::PostgresServer::start(postgres_dir.path());
    // Two requests a minute for the small tier, across the replicas.
    let mut config = crate::economy::ledger_config("1", "sk-cluster-operator", "1");
    config.push_str("\n[gateway.rate_limits.small]\nrequests_per_minute = 2\n");
    config.push_str(&cluster_section(
        &redis,
        store.path(),
        Some(&postgres.url()),
    ));
    let (replicas, urls, _provider) = replicas_with_provider(&config, 2);
    let (key, key_id) =
        crate::economy::staked_account_key(&urls[0], replicas[0].2.path(), "user", "1000");
    let http = client();
    key_works_everywhere(&http, &urls, &key).await;
    // The UTC minute may turn over between the requests: then the count is taken again.
    let mut refused = false;
    for _ in 0..3 {
        let before = minute();
        let mut statuses = Vec::new();
        for index in 0..3 {
            let response = http
                .post(format!("{}/api/v1/chat/completions", urls[index % 2]))
                .bearer_auth(&key)
                .json(&json!({
                    "model": "smollm2-135m-instruct",
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 1,
                }))
                .send()
                .await
                .expect("send");
            statuses.push(response.status().as_u16());
        }
        if minute() == before {
            assert_eq!(statuses, [200, 200, 429]);
            refused = true;
            break;
        }
    }
    assert!(refused, "three minutes turned over mid-count");
    // Refused at the first replica, read at the second.
    let log: serde_json::Value = http
        .get(format!("{}/api/v1/api_keys/rate_limits/log", urls[1]))
        .bearer_auth(&key)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    // Newest first (a minute that turned over mid-count may have left an earlier one).
    let entries = log["data"].as_array().expect("a list");
    assert!(!entries.is_empty(), "{log}");
    assert_eq!(entries[0]["apiKeyId"], key_id.as_str());
    assert_eq!(entries[0]["modelId"], "smollm2-135m-instruct");
    assert_eq!(entries[0]["rateLimitType"], "RPM");
    assert_eq!(entries[0]["rateLimitTier"], "small");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_ends_only_once_its_usage_is_durable_in_the_clusters_queue() {
    let store = tempfile::tempdir().expect("temp dir");
    let redis = RedisServer::start(store.path());
    let postgres_dir = tempfile::tempdir().expect("temp dir");
    let postgres = test_servers::PostgresServer::start(postgres_dir.path());
    let mut config = crate::economy::ledger_config("1", "sk-cluster-operator", "1");
    config.push_str(&cluster_section(
        &redis,
        store.path(),
        Some(&postgres.url()),
    ));
    let (mut replicas, urls, _provider) = replicas_with_provider(&config, 1);
    let (key, _) =
        crate::economy::staked_account_key(&urls[0], replicas[0].2.path(), "user", "1000");
    let http = client();
    key_works_everywhere(&http, &urls, &key).await;

    // The usage queue is locked, as a PostgreSQL busy elsewhere would hold it: the row of the
    // next request's usage cannot be written.
    let (lock, locked) = std::sync::mpsc::channel::<()>();
    let (held, hold) = std::sync::mpsc::sync_channel(1);
    let url = postgres.url();
    let locker = std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        client
            .batch_execute("BEGIN; LOCK TABLE gondola_usage_queue IN ACCESS EXCLUSIVE MODE")
            .expect("locked");
        held.send(()).expect("told");
        let _ = locked.recv();
        client.batch_execute("ROLLBACK").expect("unlocked");
    });
    hold.recv().expect("the queue is locked");
    let asking = {
        let (http, url, key) = (http.clone(), urls[0].clone(), key.clone());
        tokio::spawn(async move {
            let response = http
                .post(format!("{url}/api/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&json!({
                    "model": "smollm2-135m-instruct",
                    "messages": [{"role": "user", "content": "Say hello."}],
                    "max_tokens": 4,
                    "venice_parameters": {"include_venice_system_prompt": false},
                }))
                .send()
                .await?;
            response.bytes().await
        })
    };
    // Once the replica is writing the row (its insert waits on the lock), the response has
    // been produced, and not been sent.
    let url = postgres.url();
    let waited = tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        let started = std::time::Instant::now();
        loop {
            let waiting: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                     AND query LIKE 'INSERT INTO gondola_usage_queue%'",
                    &[],
                )
                .expect("asked")
                .get(0);
            if waiting > 0 {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the usage was never written"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await
    .expect("watched");
    assert!(
        !asking.is_finished(),
        "the response ended before its usage was durable (the insert waited {waited:?})"
    );
    // Killed now, the replica never answered the request, and never wrote its usage.
    replicas[0].0.kill();
    let answer = asking.await.expect("asked");
    assert!(answer.is_err(), "the client got no whole response");
    lock.send(()).expect("unlocked");
    locker.join().expect("the locker");
}
