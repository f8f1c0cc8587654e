//! The web app: Gondola's chat page, served at `/` from files built into the binary
//! (`crates/gateway/web/`).
//!
//! The app is plain ES modules and CSS, served as written, plus two third-party scripts that
//! `build.rs` bundles from `web/lib` when its `node_modules` is installed (and otherwise
//! replaces with modules that say what this build lacks): `/signing.js`, viem's local accounts
//! for the wallet page, and `/privacy.js`, HPKE, blind RSA and Ed25519 for the chat page's
//! private mode. Every response carries a strict Content-Security-Policy (scripts and styles
//! from this origin only, connections to it and to the relays the operator lists, no inline
//! code, no framing), a strong ETag of its bytes and `Cache-Control: no-cache`, so browsers
//! revalidate and pick up a new binary's app at once.
//!
//! `/app-config.json` tells the app those relays (`gateway.relays`), for its private mode.
//!
//! Nothing here reads or stores conversations or wallet keys: they live in the browser,
//! encrypted in IndexedDB, and the wallet page sends only signatures. The app talks to the same
//! `/v1` and `/api/v1` API as any other client.

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};

/// No inline script or style, nothing fetched or framed from elsewhere: model output rendered
/// into the page can never run, and the page can never be embedded to trick a user.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// [`CONTENT_SECURITY_POLICY`], with the page also allowed to connect to `relays` (origins).
pub fn content_security_policy(relays: &[String]) -> String {
    let mut connect = String::from("connect-src 'self'");
    for relay in relays {
        connect.push(' ');
        connect.push_str(relay);
    }
    CONTENT_SECURITY_POLICY.replace("connect-src 'self'", &connect)
}

/// One file of the app.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// The whole app. `sw.js` lists the same paths as its offline shell (checked by a test).
const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../web/index.html"),
    },
    Asset {
        path: "/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../web/app.css"),
    },
    Asset {
        path: "/app.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("../web/app.js"),
    },
    Asset {
        path: "/api.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("../web/api.js"),
    },
    Asset {
        path: "/markdown.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("../web/markdown.js"),
    },
    Asset {
        path: "/store.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("../web/store.js"),
    },
    Asset {
        path: "/wallet.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("../web/wallet.js"),
    },
    Asset {
        path: "/browser-wallets.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("../web/browser-wallets.js"),
    },
    Asset {
        path: "/chain.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("../web/chain.js"),
    },
    Asset {
        path: "/amounts.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("../web/amounts.js"),
    },
    Asset {
        path: "/signing.js",
        content_type: JAVASCRIPT,
        body: include_bytes!(concat!(env!("OUT_DIR"), "/signing.js")),
    },
    Asset {
        path: "/transactions.js",
        content_type: JAVASCRIPT,
        body: include_bytes!(concat!(env!("OUT_DIR"), "/transactions.js")),
    },
    Asset {
        path: "/privacy.js",
        content_type: JAVASCRIPT,
        body: include_bytes!(concat!(env!("OUT_DIR"), "/privacy.js")),
    },
    Asset {
        path: "/oblivious.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("../web/oblivious.js"),
    },
    Asset {
        path: "/sw.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("../web/sw.js"),
    },
    Asset {
        path: "/manifest.webmanifest",
        content_type: "application/manifest+json",
        body: include_bytes!("../web/manifest.webmanifest"),
    },
    Asset {
        path: "/icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../web/icon.svg"),
    },
];

/// A route for every file of the app (GET and HEAD), and `/app-config.json`. `relays` are the
/// origins the private mode may send through; in chain mode, `chain` says where the contracts
/// are, and the wallet page may connect to its public JSON-RPC URL.
pub(crate) fn routes(relays: &[String], chain: Option<&chain::stakes::ChainConfig>) -> Router {
    let mut origins = relays.to_vec();
    let rpc_origin = chain
        .and_then(|chain| chain.public_rpc_url.as_deref())
        .and_then(origin);
    origins.extend(rpc_origin);
    // Origins are ASCII (checked when the configuration was read); one that is not would leave
    // the strict policy in place rather than none.
    let policy = HeaderValue::from_str(&content_security_policy(&origins))
        .unwrap_or_else(|_| HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    let config = serde_json::json!({
        "relays": relays,
        "chain": chain.map(|chain| serde_json::json!({
            "chain_id": chain.deployment.chain_id,
            "rpc_url": chain.public_rpc_url,
            "confirmations": chain.confirmations,
            "contracts": {
                "vvv": chain.deployment.vvv,
                "staking": chain.deployment.staking,
                "diem": chain.deployment.diem,
                "airdrop": chain.deployment.airdrop,
            },
        })),
    })
    .to_string();
    let assets = ASSETS
        .iter()
        .enumerate()
        .fold(Router::new(), |router, (index, asset)| {
            let policy = policy.clone();
            router.route(
                asset.path,
                get(move |headers: HeaderMap| async move { respond(index, &headers, policy) }),
            )
        });
    assets.route(
        "/app-config.json",
        get(move || async move {
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                config,
            )
        }),
    )
}

/// `scheme://host[:port]` of an http(s) URL.
fn origin(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri
        .scheme_str()
        .filter(|scheme| matches!(*scheme, "http" | "https"))?;
    let authority = uri.authority()?.as_str();
    (!authority.contains('@')).then(|| format!("{scheme}://{authority}"))
}

/// `"` + the first 16 bytes of the SHA-256 of each asset, in hex, + `"`; computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(asset.body);
                format!("\"{}\"", hex::encode(&digest[..16]))
            })
            .collect()
    })
}

/// Whether an `If-None-Match` header names this entity tag (or `*`).
fn matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

fn respond(index: usize, request_headers: &HeaderMap, policy: HeaderValue) -> Response {
    let (Some(asset), Some(etag)) = (ASSETS.get(index), etags().get(index)) else {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    let not_modified = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| matches(value, etag));
    let mut response = if not_modified {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        Response::new(Body::from(asset.body))
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    // Revalidate every time: the URLs carry no version, and a 304 costs one round trip.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset_index(path: &str) -> usize {
        ASSETS
            .iter()
            .position(|asset| asset.path == path)
            .expect("asset")
    }

    fn text(path: &str) -> &'static str {
        std::str::from_utf8(ASSETS[asset_index(path)].body).expect("utf-8")
    }

    #[test]
    fn every_file_is_served_with_its_type_the_policy_and_a_validator() {
        for (index, asset) in ASSETS.iter().enumerate() {
            let response = respond(
                index,
                &HeaderMap::new(),
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            );
            assert_eq!(response.status(), StatusCode::OK, "{}", asset.path);
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            let etag = headers[header::ETAG].to_str().expect("etag");
            assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
        }
        assert!(
            ASSETS[asset_index("/")]
                .content_type
                .starts_with("text/html"),
            "the page is HTML"
        );
    }

    #[test]
    fn a_public_rpc_urls_origin_is_its_scheme_and_authority() {
        assert_eq!(
            origin("https://base.example:8443/v1/rpc?x=1").as_deref(),
            Some("https://base.example:8443")
        );
        assert_eq!(
            origin("http://127.0.0.1:8545").as_deref(),
            Some("http://127.0.0.1:8545")
        );
        assert_eq!(origin("ws://127.0.0.1:8545"), None);
        assert_eq!(origin("https://user:secret@base.example/"), None);
    }

    #[test]
    fn listed_relays_are_the_only_other_origins_the_page_may_connect_to() {
        assert_eq!(content_security_policy(&[]), CONTENT_SECURITY_POLICY);
        let policy = content_security_policy(&[
            "https://relay.example".to_owned(),
            "http://127.0.0.1:8090".to_owned(),
        ]);
        assert!(
            policy.contains("; connect-src 'self' https://relay.example http://127.0.0.1:8090; ")
        );
        // Only connections: scripts, styles and frames stay this origin's alone.
        assert_eq!(
            policy.replace(" https://relay.example http://127.0.0.1:8090", ""),
            CONTENT_SECURITY_POLICY
        );
    }

    #[test]
    fn a_matching_etag_gets_304_and_a_stale_one_the_file() {
        let index = asset_index("/app.js");
        let etag = etags()[index].clone();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"stale\", W/{etag}")).expect("header"),
        );
        let policy = HeaderValue::from_static(CONTENT_SECURITY_POLICY);
        let response = respond(index, &headers, policy.clone());
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[header::ETAG], etag.as_str());
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"stale\""));
        assert_eq!(respond(index, &headers, policy).status(), StatusCode::OK);
        assert_ne!(etags()[index], etags()[asset_index("/api.js")]);
    }

    #[test]
    fn the_page_loads_only_served_files_and_the_offline_shell_is_exactly_the_app() {
        let served: Vec<&str> = ASSETS.iter().map(|asset| asset.path).collect();
        let page = text("/");
        for reference in page
            .split(['"', '\''])
            .filter(|part| part.starts_with('/') && part.len() > 1)
        {
            assert!(
                served.contains(&reference),
                "index.html refers to {reference}, which is not served"
            );
        }
        // Modules import each other by absolute path.
        for asset in ASSETS.iter().filter(|asset| asset.path.ends_with(".js")) {
            let source = std::str::from_utf8(asset.body).expect("utf-8");
            for line in source.lines().filter(|line| line.starts_with("import ")) {
                let target = line.split(['"', '\'']).nth(1).expect("import path");
                assert!(
                    served.contains(&target),
                    "{} imports {target}, which is not served",
                    asset.path
                );
            }
        }
        let worker = text("/sw.js");
        let start = worker.find("const SHELL = [").expect("shell list");
        let end = start + worker[start..].find("];").expect("end of shell list");
        let mut shell: Vec<&str> = worker[start..end]
            .split(['"', '\''])
            .filter(|part| part.starts_with('/'))
            .collect();
        shell.sort_unstable();
        let mut expected: Vec<&str> = served
            .iter()
            .copied()
            .filter(|path| *path != "/sw.js")
            .collect();
        expected.sort_unstable();
        assert_eq!(shell, expected, "the service worker caches the app shell");
    }

    /// The names a page takes from a bundled library, whichever module a build embedded.
    fn exported_names(module: &str) -> Vec<String> {
        let mut names: Vec<String> = if let Some(start) = module.rfind("export{") {
            // esbuild's bundle ends with one `export{local as name, …}`.
            let list = &module[start + "export{".len()..];
            let list = &list[..list.find('}').expect("end of the export list")];
            list.split(',')
                .map(|item| item.rsplit(" as ").next().unwrap_or(item).trim().to_owned())
                .collect()
        } else {
            module
                .lines()
                .filter_map(|line| line.strip_prefix("export const "))
                .filter_map(|rest| rest.split([' ', '=']).next())
                .map(str::to_owned)
                .collect()
        };
        names.sort_unstable();
        names.retain(|name| name != "missing");
        names
    }

    /// One of the web app's third-party libraries: what it offers, built or missing, the page
    /// that loads it on demand, and pages that must not (a static import would cost them its
    /// size: 75 KB, 205 KB and 136 KB).
    struct Library {
        path: &'static str,
        entry: &'static str,
        missing: &'static str,
        names: &'static [&'static str],
        loaded_by: &'static str,
        not_by: &'static [&'static str],
    }

    #[test]
    fn each_library_offers_the_same_names_built_or_missing_and_loads_on_demand() {
        let libraries = [
            Library {
                path: "/signing.js",
                entry: include_str!("../web/lib/signing.js"),
                missing: include_str!("../web/lib/missing-signing.js"),
                names: &["available", "generatePrivateKey", "privateKeyToAccount"],
                loaded_by: "/wallet.js",
                not_by: &["/app.js", "/api.js"],
            },
            Library {
                path: "/transactions.js",
                entry: include_str!("../web/lib/transactions.js"),
                missing: include_str!("../web/lib/missing-transactions.js"),
                names: &[
                    "BaseError",
                    "ContractFunctionRevertedError",
                    "addChain",
                    "available",
                    "createClient",
                    "custom",
                    "defineChain",
                    "estimateContractGas",
                    "getAddress",
                    "getBlock",
                    "getChainId",
                    "http",
                    "parseAbi",
                    "parseEventLogs",
                    "readContract",
                    "requestAddresses",
                    "signMessage",
                    "signTypedData",
                    "simulateContract",
                    "switchChain",
                    "waitForTransactionReceipt",
                    "writeContract",
                ],
                // In chain mode, or for a browser wallet.
                loaded_by: "/wallet.js",
                not_by: &["/app.js", "/api.js", "/chain.js", "/browser-wallets.js"],
            },
            Library {
                path: "/privacy.js",
                entry: include_str!("../web/lib/privacy.js"),
                missing: include_str!("../web/lib/missing-privacy.js"),
                names: &[
                    "Aes128Gcm",
                    "Aes256Gcm",
                    "CipherSuite",
                    "DhkemX25519HkdfSha256",
                    "HkdfSha256",
                    "RSABSSA",
                    "XWing",
                    "available",
                    "ed25519",
                    "sha256",
                ],
                loaded_by: "/oblivious.js",
                not_by: &["/app.js", "/api.js", "/wallet.js"],
            },
        ];
        for library in libraries {
            let path = library.path;
            assert_eq!(exported_names(text(path)), library.names, "{path}");
            assert_eq!(exported_names(library.missing), library.names, "{path}");
            assert!(library.missing.contains("export const available = false;"));
            assert!(library.entry.contains("export const available = true;"));
            assert!(
                text(library.loaded_by).contains(&format!("import(\"{path}\")")),
                "{path} from {}",
                library.loaded_by
            );
            for page in library.not_by {
                assert!(!text(page).contains(path), "{page} names {path}");
            }
        }
        assert!(include_str!("../web/lib/signing.js").contains(
            "export { generatePrivateKey, privateKeyToAccount } from \"viem/accounts\";"
        ));
    }

    #[test]
    fn no_script_writes_markup_or_evaluates_strings() {
        let forbidden = [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setTimeout('",
            "setTimeout(\"",
        ];
        for asset in ASSETS.iter().filter(|asset| asset.path.ends_with(".js")) {
            let source = std::str::from_utf8(asset.body).expect("utf-8");
            for word in forbidden {
                assert!(!source.contains(word), "{} uses {word}", asset.path);
            }
        }
        let page = text("/");
        assert!(
            !page.contains("<script>") && !page.contains(" style="),
            "no inline script or style in index.html"
        );
        let handlers: Vec<&str> = page
            .split(|c: char| c.is_whitespace())
            .filter(|word| {
                word.strip_prefix("on").is_some_and(|rest| {
                    rest.split_once('=')
                        .is_some_and(|(name, _)| name.chars().all(|c| c.is_ascii_alphabetic()))
                })
            })
            .collect();
        assert!(handlers.is_empty(), "inline handlers: {handlers:?}");
    }
}
