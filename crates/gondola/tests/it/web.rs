//! The web app as the real binary serves it: the page and its modules with their content
//! types, the Content-Security-Policy, revalidation by ETag, and API 404s left as they were.

use crate::support::{client, gateway};

const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

#[tokio::test(flavor = "multi_thread")]
async fn the_chat_page_is_served_at_the_root_with_a_strict_policy() {
    let (_gateway, url, _dir) = gateway("");
    let http = client();
    let page = http.get(format!("{url}/")).send().await.expect("send");
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["content-security-policy"], POLICY);
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let html = page.text().await.expect("body");
    assert!(html.contains(r#"<script type="module" src="/app.js"></script>"#));

    for (path, content_type) in [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/markdown.js", "text/javascript; charset=utf-8"),
        ("/sw.js", "text/javascript; charset=utf-8"),
        ("/app.css", "text/css; charset=utf-8"),
        ("/manifest.webmanifest", "application/manifest+json"),
        ("/icon.svg", "image/svg+xml"),
    ] {
        let response = http.get(format!("{url}{path}")).send().await.expect("send");
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
        assert_eq!(response.headers()["content-security-policy"], POLICY);
    }

    let etag = headers["etag"].to_str().expect("etag").to_owned();
    let again = http
        .get(format!("{url}/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("send");
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.text().await.expect("body").is_empty());

    let missing = http
        .get(format!("{url}/no-such-file.js"))
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), 404);
    let error: serde_json::Value = missing.json().await.expect("json");
    assert_eq!(error["error"]["code"], "not_found");
    let models = http
        .get(format!("{url}/v1/models"))
        .send()
        .await
        .expect("send");
    assert_eq!(models.headers()["content-type"], "application/json");
}
