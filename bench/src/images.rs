//! `gondola-bench images [--rounds R]`: what an image costs on its way through Gondola. An
//! engine speaking AUTOMATIC1111's API answers at once with an image made beforehand (so the
//! engine's own time is nothing), asked directly and through the gateway and a provider in
//! front of it, in interleaved rounds, for 512² and 1024² images as PNG and WebP. The
//! difference is Gondola's overhead per image: the request's path, base64 both ways, and the
//! provider decoding the engine's PNG and encoding the format asked for (which also drops the
//! engine's metadata). Results go to `bench/results/images.{md,json}`.

use std::collections::HashMap;
use std::io::{Cursor, Write};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};

const ROUNDS: usize = 15;

#[derive(Serialize)]
struct Case {
    side: u32,
    format: &'static str,
    image_bytes: usize,
    engine_ms: f64,
    gateway_ms: f64,
    overhead_ms: f64,
    ratio: f64,
}

#[derive(Serialize)]
struct Report {
    rounds: usize,
    cases: Vec<Case>,
}

/// A photo-like image: smooth gradients with fine noise, as hard to compress as a render.
fn picture(side: u32) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut image = image::RgbImage::new(side, side);
    for (x, y, pixel) in image.enumerate_pixels_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state % 24) as u32;
        *pixel = image::Rgb([
            ((x * 255 / side + noise) % 256) as u8,
            ((y * 255 / side + noise) % 256) as u8,
            (((x + y) * 127 / side + noise) % 256) as u8,
        ]);
    }
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("png");
    bytes
}

/// `POST /sdapi/v1/txt2img`, answered with the image of the asked size made beforehand.
async fn txt2img(
    State(images): State<Arc<HashMap<u32, String>>>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let side = body["width"].as_u64().unwrap_or(512) as u32;
    Json(
        json!({"images": [images.get(&side).cloned().unwrap_or_default()], "parameters": {}, "info": "{}"}),
    )
}

async fn start_engine(sides: &[u32]) -> anyhow::Result<String> {
    let images: HashMap<u32, String> = sides
        .iter()
        .map(|side| {
            (
                *side,
                base64::engine::general_purpose::STANDARD.encode(picture(*side)),
            )
        })
        .collect();
    let app = axum::Router::new()
        .route("/sdapi/v1/txt2img", axum::routing::post(txt2img))
        .with_state(Arc::new(images));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub(crate) async fn run() -> anyhow::Result<()> {
    let rounds = crate::flag("--rounds")
        .map(|rounds| rounds.parse())
        .transpose()
        .context("--rounds is a number")?
        .unwrap_or(ROUNDS);
    let sides = [512u32, 1024];
    let engine = start_engine(&sides).await?;
    let (gateway, _data) = crate::start_stack_with(
        provider::Backend::Upstream {
            api: provider::UpstreamApi::Automatic1111,
            base_url: engine.clone(),
            upstream_model: "bench.safetensors".into(),
            model_id: "bench-image".into(),
            api_key: None,
            model_type: wire::models::ModelType::Image,
            context_tokens: 0,
            input_media: Vec::new(),
            image_limits: wire::images::ImageLimits::default(),
            video_limits: Box::default(),
        },
        8,
        false,
    )
    .await?;
    let http = reqwest::Client::new();
    let mut cases = Vec::new();
    for side in sides {
        for format in ["png", "webp"] {
            let mut direct = Vec::new();
            let mut through = Vec::new();
            let mut image_bytes = 0;
            for round in 0..=rounds {
                let started = Instant::now();
                let answer: Value = http
                    .post(format!("{engine}/sdapi/v1/txt2img"))
                    .json(&json!({"prompt": "a harbour", "width": side, "height": side, "steps": 20, "seed": 1}))
                    .send()
                    .await?
                    .json()
                    .await?;
                let engine_ms = started.elapsed().as_secs_f64() * 1e3;
                anyhow::ensure!(answer["images"][0].is_string(), "the engine answered");
                let started = Instant::now();
                let response = http
                    .post(format!("{gateway}/api/v1/image/generate"))
                    .json(&json!({"model": "bench-image", "prompt": "a harbour", "width": side, "height": side, "format": format, "seed": 1}))
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "the gateway answered {}",
                    response.status()
                );
                let answer: Value = response.json().await?;
                let gateway_ms = started.elapsed().as_secs_f64() * 1e3;
                image_bytes = answer["images"][0]
                    .as_str()
                    .map_or(0, |image| image.len() / 4 * 3);
                // The first round warms connections and is not counted.
                if round > 0 {
                    direct.push(engine_ms);
                    through.push(gateway_ms);
                }
            }
            let (engine_ms, gateway_ms) = (median(direct), median(through));
            cases.push(Case {
                side,
                format,
                image_bytes,
                engine_ms,
                gateway_ms,
                overhead_ms: gateway_ms - engine_ms,
                ratio: gateway_ms / engine_ms,
            });
        }
    }
    let report = Report { rounds, cases };
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::write(dir.join("images.json"), serde_json::to_vec_pretty(&report)?)?;
    let mut markdown = std::fs::File::create(dir.join("images.md"))?;
    writeln!(
        markdown,
        "# An image through Gondola\n\nAn engine speaking AUTOMATIC1111's API answers at once with a photo-like PNG made beforehand; each request is sent to it directly and through the gateway and a provider, in interleaved rounds (median of {rounds}). The difference is Gondola's cost per image.\n\n| size | format | image | engine directly | through Gondola | overhead | ratio |\n|---|---|---|---|---|---|---|"
    )?;
    for case in &report.cases {
        writeln!(
            markdown,
            "| {0}×{0} | {1} | {2:.0} KiB | {3:.1} ms | {4:.1} ms | {5:.1} ms | {6:.2}× |",
            case.side,
            case.format,
            case.image_bytes as f64 / 1024.0,
            case.engine_ms,
            case.gateway_ms,
            case.overhead_ms,
            case.ratio
        )?;
    }
    println!("{}", std::fs::read_to_string(dir.join("images.md"))?);
    Ok(())
}
