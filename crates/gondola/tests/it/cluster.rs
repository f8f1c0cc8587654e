//! Many gateways as one service: three `gondola gateway` processes share a real Redis
//! (`[gateway.cluster]`), and one provider keeps a lease with each of them, so every replica
//! routes to it. A key's per-minute budget of 4 admits 4 requests in all, whichever replicas
//! they reach; with Redis gone, requests are refused with a 503 naming the store and the
//! processes stay up; when it returns, they are served again. The replicas publish the same
//! Oblivious HTTP keys and token issuer key, derived from the cluster's one seed.

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
