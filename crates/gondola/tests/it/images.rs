//! Images end to end: a real gateway and real provider processes in front of stand-ins for
//! each image engine (`image_engines.rs`; no text-to-image model can run here). Every route
//! (Venice's `/image/generate` whole and binary, OpenAI's `/images/generations` as base64 and
//! data URLs, `/image/styles`, `/models?type=image`) against each engine's API; what each
//! engine received, field by field; the images decoded at the asked size and format; bad
//! requests refused before any engine is asked; failover when a provider dies mid-job; the
//! price per image and the 402 beyond the balance; and the prompt in no log, file or metric.

use std::io::Cursor;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::economy::{decimal_units, ledger_config, staked_account_key};
use crate::image_engines::{self, Engine};
use crate::support::{binary, canary, client, gateway, typed_provider};

const MODEL: &str = "sd-test";
const CHECKPOINT: &str = "dreamshaper_8.safetensors";

/// A provider of `MODEL` in front of `stand_in`.
fn image_provider(
    url: &str,
    stand_in: &image_engines::StandIn,
    engine: Engine,
) -> crate::support::Process {
    typed_provider(
        url,
        MODEL,
        "image",
        &[
            "--upstream",
            &stand_in.base_url,
            "--upstream-api",
            engine.api(),
            "--model",
            CHECKPOINT,
        ],
    )
}

fn decoded(base64: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(base64)
        .expect("base64")
}

/// The image's format and size, read by the `image` crate.
fn read_image(bytes: &[u8]) -> (image::ImageFormat, u32, u32) {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .expect("a format");
    let format = reader.format().expect("a known format");
    let image = reader.decode().expect("decodes");
    (format, image.width(), image.height())
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> reqwest::Response {
    http.post(url).json(body).send().await.expect("send")
}

#[tokio::test(flavor = "multi_thread")]
async fn each_image_engine_serves_venices_and_openais_routes() {
    let (gateway_process, url, dir) = gateway("");
    let http = client();
    let secret = canary();
    for engine in [Engine::Automatic1111, Engine::ComfyUi, Engine::OpenAi] {
        let stand_in = image_engines::start(engine, CHECKPOINT, None).await;
        let mut provider = image_provider(&url, &stand_in, engine);

        // Venice's shape: two variants, a style, every field the engine can take.
        let response = post(
            &http,
            &format!("{url}/api/v1/image/generate"),
            &json!({
                "model": MODEL, "prompt": format!("a red fox {secret}"), "negative_prompt": "rain",
                "width": 96, "height": 64, "steps": 7, "cfg_scale": 5.5, "seed": 42,
                "style_preset": "Anime", "format": "png", "variants": 2, "safe_mode": true,
                "hide_watermark": true
            }),
        )
        .await;
        assert_eq!(
            response.status(),
            200,
            "{engine:?}: {:?}",
            stand_in.received().problems
        );
        assert_eq!(response.headers()["x-venice-model-id"], MODEL);
        assert_eq!(response.headers()["x-venice-is-blurred"], "false");
        let answer: Value = response.json().await.expect("json");
        assert!(
            answer["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("generate-image-"))
        );
        assert!(answer["timing"]["total"].as_u64().is_some());
        let images = answer["images"].as_array().expect("images");
        assert_eq!(images.len(), 2, "{engine:?}");
        for image in images {
            let bytes = decoded(image.as_str().expect("base64"));
            assert_eq!(
                read_image(&bytes),
                (image::ImageFormat::Png, 96, 64),
                "{engine:?}"
            );
            // Re-encoded by the provider: what the engine wrote into the file (AUTOMATIC1111
            // writes the prompt) does not come along; Venice embeds no metadata unless asked.
            assert!(
                !crate::support::holds(&bytes, "a red fox"),
                "{engine:?}: the engine's metadata was passed on"
            );
        }
        {
            let received = stand_in.received();
            assert!(
                received.problems.is_empty(),
                "{engine:?}: {:?}",
                received.problems
            );
            let sent = received
                .bodies
                .iter()
                .map(Value::to_string)
                .collect::<String>();
            assert!(sent.contains("a red fox"), "{engine:?} got the prompt");
            match engine {
                Engine::Automatic1111 => {
                    assert_eq!(received.bodies.len(), 2, "one call per variant");
                    let seeds: Vec<u64> = received
                        .bodies
                        .iter()
                        .map(|body| body["seed"].as_u64().expect("seed"))
                        .collect();
                    assert_eq!(seeds, [42, 43]);
                    let first = &received.bodies[0];
                    assert_eq!(first["steps"], 7);
                    assert_eq!(first["cfg_scale"], 5.5);
                    assert_eq!(
                        (first["width"].as_u64(), first["height"].as_u64()),
                        (Some(96), Some(64))
                    );
                    let prompt = first["prompt"].as_str().expect("prompt");
                    assert!(
                        prompt.contains("anime") && prompt.contains("a red fox"),
                        "the style was applied: {prompt}"
                    );
                    assert!(
                        first["negative_prompt"]
                            .as_str()
                            .expect("negative")
                            .starts_with("rain, ")
                    );
                }
                Engine::ComfyUi => {
                    assert_eq!(received.bodies.len(), 1, "one job for the batch");
                    let graph = received.bodies[0]["prompt"]
                        .as_object()
                        .expect("graph")
                        .clone();
                    let node = |class: &str| {
                        graph
                            .values()
                            .find(|node| node["class_type"] == class)
                            .expect("node")
                            .clone()
                    };
                    assert_eq!(node("KSampler")["inputs"]["seed"], 42);
                    assert_eq!(node("KSampler")["inputs"]["steps"], 7);
                    assert_eq!(node("EmptyLatentImage")["inputs"]["batch_size"], 2);
                    assert_eq!(received.deleted.len(), 1, "the job's history was deleted");
                }
                Engine::OpenAi => {
                    let body = &received.bodies[0];
                    assert_eq!(body["n"], 2);
                    assert_eq!(body["size"], "96x64");
                }
            }
        }

        // Venice's binary answer, as WebP.
        let response = post(
            &http,
            &format!("{url}/api/v1/image/generate"),
            &json!({"model": MODEL, "prompt": "a lighthouse", "width": 64, "height": 64, "return_binary": true}),
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "image/webp");
        let bytes = response.bytes().await.expect("bytes");
        assert_eq!(read_image(&bytes), (image::ImageFormat::WebP, 64, 64));

        // OpenAI's shape through an OpenAI model name: a wide size scaled to fit the model,
        // JPEG, as a data URL.
        let response = post(
            &http,
            &format!("{url}/v1/images/generations"),
            &json!({"model": "dall-e-3", "prompt": "a harbour at dawn", "size": "1792x1024",
                    "response_format": "url", "output_format": "jpeg", "quality": "hd", "user": "someone"}),
        )
        .await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.expect("json");
        let data_url = answer["data"][0]["url"].as_str().expect("a url");
        let payload = data_url
            .strip_prefix("data:image/jpeg;base64,")
            .expect("a JPEG data URL");
        assert_eq!(
            read_image(&decoded(payload)),
            (image::ImageFormat::Jpeg, 1280, 728)
        );
        assert!(
            !stand_in
                .received()
                .bodies
                .iter()
                .any(|body| body.to_string().contains("someone")),
            "the user field is never passed on"
        );
        provider.kill();
    }

    // The catalogue lists the image model with Venice's image pricing and constraints.
    let stand_in = image_engines::start(Engine::Automatic1111, CHECKPOINT, None).await;
    let _provider = image_provider(&url, &stand_in, Engine::Automatic1111);
    let model = crate::support::listed_model(&http, &url, "?type=image", MODEL).await;
    assert_eq!(model["type"], "image");
    assert_eq!(
        model["model_spec"]["pricing"]["generation"]["usd"],
        json!(0.01)
    );
    assert_eq!(model["model_spec"]["constraints"]["widthHeightDivisor"], 8);
    assert_eq!(model["model_spec"]["constraints"]["steps"]["max"], 50);
    let styles: Value = http
        .get(format!("{url}/api/v1/image/styles"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(
        styles["data"]
            .as_array()
            .expect("styles")
            .iter()
            .any(|style| style == "Anime")
    );

    // The prompt is in no log, file or metric of the gateway.
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("image_generate"), "the route is counted");
    assert!(!metrics.contains(&secret));
    let log = gateway_process.stderr();
    assert!(!log.contains(&secret), "the log holds the prompt");
    let leaked = crate::privacy::files_containing(dir.path(), secret.as_bytes());
    assert!(leaked.is_empty(), "files hold the prompt: {leaked:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_image_requests_are_refused_naming_the_bound_before_any_engine_is_asked() {
    let (_gateway, url, _dir) = gateway("");
    let stand_in = image_engines::start(Engine::Automatic1111, CHECKPOINT, None).await;
    let _provider = image_provider(&url, &stand_in, Engine::Automatic1111);
    let http = client();
    let venice = format!("{url}/api/v1/image/generate");
    for (body, param) in [
        (
            json!({"model": MODEL, "prompt": "a", "width": 1281}),
            "width",
        ),
        (
            json!({"model": MODEL, "prompt": "a", "width": 100, "height": 64}),
            "width",
        ),
        (json!({"model": MODEL, "prompt": "a", "steps": 51}), "steps"),
        (
            json!({"model": MODEL, "prompt": "a", "variants": 5}),
            "variants",
        ),
        (
            json!({"model": MODEL, "prompt": "a", "variants": 2, "return_binary": true}),
            "variants",
        ),
        (
            json!({"model": MODEL, "prompt": "a", "style_preset": "Oil on Velvet"}),
            "style_preset",
        ),
        (
            json!({"model": MODEL, "prompt": "a", "format": "gif"}),
            "format",
        ),
        (json!({"model": MODEL, "prompt": ""}), "prompt"),
        (
            json!({"model": MODEL, "prompt": "a", "seed": 1_000_000_000}),
            "seed",
        ),
        (
            json!({"model": MODEL, "prompt": "a", "enable_web_search": true}),
            "enable_web_search",
        ),
        (
            json!({"model": MODEL, "prompt": "a", "colour": "red"}),
            "colour",
        ),
    ] {
        let response = post(&http, &venice, &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["param"], param, "{body}: {error}");
    }
    // A text model's name on the image route, and an unknown one.
    let response = post(
        &http,
        &venice,
        &json!({"model": "no-such-model", "prompt": "a"}),
    )
    .await;
    assert_eq!(response.status(), 404);
    // Not JSON, the wrong content type, and a body past the route's bound.
    let response = http
        .post(&venice)
        .header("content-type", "application/json")
        .body("{\"prompt\":")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    let response = http
        .post(&venice)
        .header("content-type", "image/png")
        .body(image_engines::png(8, 8, 0))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 415);
    let huge = json!({"model": MODEL, "prompt": "a".repeat(200 * 1024)});
    let response = post(&http, &venice, &huge).await;
    assert_eq!(response.status(), 413);
    let response = post(
        &http,
        &format!("{url}/v1/images/generations"),
        &json!({"prompt": "a", "n": 9}),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(stand_in.received().bodies.is_empty(), "no engine was asked");
    // And the gateway still serves.
    let response = post(
        &http,
        &venice,
        &json!({"model": MODEL, "prompt": "a", "width": 64, "height": 64}),
    )
    .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_request_fails_over_when_its_provider_dies_mid_job() {
    let (_gateway, url, _dir) = gateway("");
    let (hold, mut holding) = image_engines::hold();
    let first = image_engines::start(Engine::ComfyUi, CHECKPOINT, Some(hold.clone())).await;
    let second = image_engines::start(Engine::ComfyUi, CHECKPOINT, Some(hold)).await;
    let mut providers = [
        image_provider(&url, &first, Engine::ComfyUi),
        image_provider(&url, &second, Engine::ComfyUi),
    ];
    let http = client();
    let request = tokio::spawn({
        let http = http.clone();
        let url = url.clone();
        async move {
            let response = post(
                &http,
                &format!("{url}/api/v1/image/generate"),
                &json!({"model": MODEL, "prompt": "a fox", "width": 64, "height": 64, "format": "png"}),
            )
            .await;
            let status = response.status();
            (status, response.json::<Value>().await.expect("json"))
        }
    });
    // One engine holds the job: its provider dies with the job in hand.
    holding.recv().await.expect("a job is held");
    let held_by_first = first.received().bodies.len() == 1;
    providers[usize::from(!held_by_first)].kill();
    let (status, answer) =
        match tokio::time::timeout(std::time::Duration::from_secs(60), request).await {
            Ok(joined) => joined.expect("the request task"),
            Err(_) => panic!("the request did not finish"),
        };
    assert_eq!(status, 200, "{answer}");
    let bytes = decoded(answer["images"][0].as_str().expect("an image"));
    assert_eq!(read_image(&bytes), (image::ImageFormat::Png, 64, 64));
    let survivor = if held_by_first { &second } else { &first };
    assert_eq!(
        survivor.received().bodies.len(),
        1,
        "the other engine made the image"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn images_are_charged_per_image_and_refused_beyond_the_balance() {
    // A dollar a day of capacity, all the account's; thirty cents an image.
    let config = format!(
        "{}\n[gateway.models.pricing.{MODEL}]\nimage_usd = \"0.30\"\n",
        ledger_config("1", "sk-image-operator", "1")
    );
    let (_gateway, url, dir) = gateway(&config);
    let stand_in = image_engines::start(Engine::OpenAi, CHECKPOINT, None).await;
    let _provider = image_provider(&url, &stand_in, Engine::OpenAi);
    let (key, _) = staked_account_key(&url, dir.path(), "painter", "100");
    let http = client();
    let generate = |variants: u32| {
        let http = http.clone();
        let url = url.clone();
        let key = key.clone();
        async move {
            let response = http
                .post(format!("{url}/api/v1/image/generate"))
                .bearer_auth(&key)
                .json(&json!({"model": MODEL, "prompt": "a fox", "width": 64, "height": 64, "variants": variants}))
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            let balance = response
                .headers()
                .get("x-venice-balance-diem")
                .map(|value| decimal_units(value.to_str().expect("text")));
            let _ = response.bytes().await.expect("body");
            (status, balance)
        }
    };
    let (status, before) = generate(2).await;
    assert_eq!(status, 200);
    // Four images cost $1.20, more than is left: refused before any engine is asked.
    let asked = stand_in.received().bodies.len();
    let (status, _) = generate(4).await;
    assert_eq!(status, 402);
    assert_eq!(
        stand_in.received().bodies.len(),
        asked,
        "no engine was asked"
    );
    let (status, after) = generate(1).await;
    assert_eq!(status, 200);
    assert_eq!(
        before.expect("a balance") - after.expect("a balance"),
        2 * 3 * 10u128.pow(17),
        "the two images of the first request, at thirty cents each"
    );
    // Anonymous callers are refused on a gateway with accounts.
    let response = post(
        &http,
        &format!("{url}/api/v1/image/generate"),
        &json!({"model": MODEL, "prompt": "free?"}),
    )
    .await;
    assert_eq!(response.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_writes_each_image_in_the_format_of_its_file() {
    let (_gateway, url, dir) = gateway("");
    let stand_in = image_engines::start(Engine::Automatic1111, CHECKPOINT, None).await;
    let _provider = image_provider(&url, &stand_in, Engine::Automatic1111);
    let target = dir.path().join("fox.webp");
    let output = tokio::process::Command::new(binary())
        .args([
            "image",
            "a red fox",
            "--gateway",
            &url,
            "--size",
            "64x48",
            "-n",
            "2",
            "--seed",
            "7",
            "--style",
            "pixel art",
            "-o",
        ])
        .arg(&target)
        .output()
        .await
        .expect("run gondola image");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for name in ["fox-1.webp", "fox-2.webp"] {
        let bytes = std::fs::read(dir.path().join(name)).expect(name);
        assert_eq!(
            read_image(&bytes),
            (image::ImageFormat::WebP, 64, 48),
            "{name}"
        );
    }
    {
        let received = stand_in.received();
        assert_eq!(received.bodies[0]["seed"], 7);
        assert!(
            received.bodies[0]["prompt"]
                .as_str()
                .expect("prompt")
                .contains("pixel-art")
        );
    }
    // Standard output takes one PNG; a file without an image extension is refused.
    let output = tokio::process::Command::new(binary())
        .args(["image", "a red fox", "--gateway", &url, "--size", "64x64"])
        .output()
        .await
        .expect("run gondola image");
    assert!(output.status.success());
    assert_eq!(
        read_image(&output.stdout),
        (image::ImageFormat::Png, 64, 64)
    );
    let output = tokio::process::Command::new(binary())
        .args(["image", "a red fox", "--gateway", &url, "-o"])
        .arg(dir.path().join("fox.txt"))
        .output()
        .await
        .expect("run gondola image");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("image extension"));
}

/// A provider of an upscale model `name` in front of an AUTOMATIC1111 stand-in.
fn upscale_provider(url: &str, stand_in: &image_engines::StandIn) -> crate::support::Process {
    typed_provider(
        url,
        "r-esrgan-4x",
        "upscale",
        &[
            "--upstream",
            &stand_in.base_url,
            "--upstream-api",
            "automatic1111",
            "--model",
            "R-ESRGAN 4x+",
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn images_are_edited_and_upscaled_by_the_engines_that_can() {
    let (_gateway, url, _dir) = gateway("");
    let http = client();
    let source = image_engines::png(300, 260, 9);
    let route = |path: &str| format!("{url}/api/v1/image/{path}");
    for engine in [Engine::Automatic1111, Engine::OpenAi, Engine::ComfyUi] {
        let stand_in = image_engines::start(engine, CHECKPOINT, None).await;
        let mut provider = image_provider(&url, &stand_in, engine);
        // A file upload and a prompt: the image keeps its size, rounded to the model's
        // divisor (300x260 -> 296x256), as WebP.
        let form = reqwest::multipart::Form::new()
            .part(
                "image",
                reqwest::multipart::Part::bytes(source.clone())
                    .file_name("fox.png")
                    .mime_str("image/png")
                    .expect("mime"),
            )
            .text("prompt", "make it winter")
            .text("model", MODEL)
            .text("output_format", "webp");
        let response = http
            .post(route("edit"))
            .multipart(form)
            .send()
            .await
            .expect("send");
        if engine == Engine::ComfyUi {
            // The built-in workflow makes images and does not edit them: refused before the
            // engine is asked.
            assert_eq!(response.status(), 400, "{engine:?}");
            let error: Value = response.json().await.expect("json");
            assert_eq!(error["param"], "model");
            assert!(stand_in.received().bodies.is_empty());
        } else {
            assert_eq!(
                response.status(),
                200,
                "{engine:?}: {:?}",
                stand_in.received().problems
            );
            assert_eq!(response.headers()["content-type"], "image/webp");
            let bytes = response.bytes().await.expect("image");
            assert_eq!(read_image(&bytes), (image::ImageFormat::WebP, 296, 256));
            let received = stand_in.received();
            assert!(received.problems.is_empty(), "{:?}", received.problems);
            assert!(
                received.bodies[0].to_string().contains("make it winter"),
                "{engine:?} got the prompt"
            );
        }
        provider.kill();
    }

    // Upscaling: base64 JSON, four times; and a source too large to be made four times as
    // large comes out twice as large.
    let stand_in = image_engines::start(Engine::Automatic1111, "R-ESRGAN 4x+", None).await;
    let _upscaler = upscale_provider(&url, &stand_in);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&source);
    let response = post(
        &http,
        &route("upscale"),
        &json!({"image": encoded, "scale": 4}),
    )
    .await;
    assert_eq!(response.status(), 200, "{:?}", stand_in.received().problems);
    assert_eq!(response.headers()["content-type"], "image/png");
    let bytes = response.bytes().await.expect("image");
    assert_eq!(read_image(&bytes), (image::ImageFormat::Png, 1200, 1040));
    let large = image_engines::png(1500, 1500, 1);
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(large)
                .file_name("large.png")
                .mime_str("image/png")
                .expect("mime"),
        )
        .text("scale", "4");
    let response = http
        .post(route("upscale"))
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.expect("image");
    assert_eq!(read_image(&bytes), (image::ImageFormat::Png, 3000, 3000));

    // A body past the bound (25 MiB of image, in base64) is refused whole.
    let huge = json!({"image": "A".repeat(36 * 1024 * 1024)});
    let response = post(&http, &route("upscale"), &huge).await;
    assert_eq!(response.status(), 413);
    // Refusals: too small, a URL, a bad scale, no prompt.
    let small = base64::engine::general_purpose::STANDARD.encode(image_engines::png(100, 100, 0));
    for (path, body, param) in [
        ("upscale", json!({"image": small}), "image"),
        (
            "upscale",
            json!({"image_url": "https://example.com/x.png"}),
            "image_url",
        ),
        ("upscale", json!({"image": encoded, "scale": 3}), "scale"),
        ("edit", json!({"image": encoded, "model": MODEL}), "prompt"),
    ] {
        let response = post(&http, &route(path), &body).await;
        assert_eq!(response.status(), 400, "{path} {body}");
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["param"], param, "{path}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_image_request_is_made_by_its_provider_alone_and_held_to_what_was_paid() {
    use futures_util::StreamExt as _;
    let (_gateway, url, _dir) = gateway("");
    let stand_in = image_engines::start(Engine::Automatic1111, CHECKPOINT, None).await;
    let _provider = image_provider(&url, &stand_in, Engine::Automatic1111);
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
    assert_eq!(targets.len(), 1, "the image provider takes sealed requests");
    let send = |declared: u32, variants: u32| {
        let http = http.clone();
        let url = url.clone();
        let targets: Vec<wire::sealed::SealingProvider> =
            targets.iter().map(|target| (*target).clone()).collect();
        async move {
            let body = json!({"model": MODEL, "prompt": "a sealed fox", "width": 64, "height": 64,
                              "format": "png", "variants": variants});
            let targets: Vec<&wire::sealed::SealingProvider> = targets.iter().collect();
            let sealed = privacy::sealed::seal_images(
                &targets,
                MODEL,
                declared,
                &serde_json::to_vec(&body).expect("json"),
            )
            .await
            .expect("sealed");
            let response = http
                .post(format!("{url}/v1/privacy/images"))
                .header("content-type", "application/json")
                .body(sealed.body.clone())
                .send()
                .await
                .expect("send");
            assert_eq!(response.status(), 200);
            let provider = response.headers()[wire::sealed::PROVIDER_HEADER]
                .to_str()
                .expect("text")
                .to_owned();
            let mut reply = sealed
                .open(&provider, response.bytes_stream())
                .await
                .expect("opened");
            let mut content = Vec::new();
            while let Some(piece) = reply.body.next().await {
                content.extend_from_slice(&piece.expect("a piece"));
            }
            let receipt = reply
                .receipt
                .await
                .expect("a verdict")
                .expect("the receipt verifies");
            (reply.status, content, receipt)
        }
    };
    // Three images asked for inside the seal, one paid for: refused inside the seal, and the
    // engine is not asked.
    let (status, content, _) = send(1, 3).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&content).contains("paid for 1"));
    assert!(stand_in.received().bodies.is_empty());
    // Two paid, two made: the images, and a receipt counting them.
    let (status, content, receipt) = send(2, 2).await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&content).expect("json");
    let images = answer["images"].as_array().expect("images");
    assert_eq!(images.len(), 2);
    for image in images {
        let bytes = decoded(image.as_str().expect("base64"));
        assert_eq!(read_image(&bytes), (image::ImageFormat::Png, 64, 64));
    }
    assert_eq!(receipt.prompt_tokens, 2, "the receipt counts the images");
    assert_eq!(receipt.model, MODEL);
}
