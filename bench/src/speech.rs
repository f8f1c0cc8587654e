//! `gondola-bench speech VOICE.onnx [--venv DIR]`: Gondola's voice beside Piper's own engine
//! (the `piper-tts` package, called in process by `peers/piper_speak.py`), on the same voice
//! with the same threads, in interleaved rounds: time to the first sentence's audio, time to
//! the whole paragraph, and the real-time factor (seconds of work per second of speech). ONNX
//! Runtime's library is the one the model store pulled beside the voice. Results go to
//! `bench/results/speech.{md,json}`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

const ROUNDS: usize = 5;
/// Five sentences, about twenty seconds of speech.
const PARAGRAPH: &str = "The harbour was quiet in the early morning. A few boats rocked gently \
    against the pier, and the gulls were already circling overhead. Down the street, the baker \
    opened his shutters and set out the first loaves of the day. Nobody was in a hurry. It was \
    going to be a long and sunny afternoon.";

#[derive(Serialize, Clone, Copy)]
struct Run {
    first_audio_ms: f64,
    total_ms: f64,
    audio_seconds: f64,
    real_time_factor: f64,
}

#[derive(Serialize)]
struct Side {
    name: &'static str,
    load_seconds: f64,
    runs: Vec<Run>,
    median: Run,
}

#[derive(Serialize)]
struct Report {
    voice: String,
    threads: u32,
    rounds: usize,
    gondola: Side,
    piper: Side,
    ratio_real_time_factor: f64,
}

fn median(runs: &[Run]) -> Run {
    let pick = |key: fn(&Run) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(key).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Run {
        first_audio_ms: pick(|run| run.first_audio_ms),
        total_ms: pick(|run| run.total_ms),
        audio_seconds: pick(|run| run.audio_seconds),
        real_time_factor: pick(|run| run.real_time_factor),
    }
}

struct Piper {
    child: std::process::Child,
    lines: BufReader<std::process::ChildStdout>,
    load_seconds: f64,
}

impl Piper {
    fn start(
        python: &std::path::Path,
        voice: &std::path::Path,
        threads: u32,
    ) -> anyhow::Result<Self> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/piper_speak.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(voice)
            .arg(threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", python.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut ready = String::new();
        lines.read_line(&mut ready)?;
        let ready: serde_json::Value =
            serde_json::from_str(&ready).context("piper-tts did not start")?;
        Ok(Self {
            load_seconds: ready["load_seconds"].as_f64().unwrap_or(0.0),
            child,
            lines,
        })
    }

    fn speak(&mut self, text: &str) -> anyhow::Result<Run> {
        let stdin = self.child.stdin.as_mut().context("no stdin")?;
        serde_json::to_writer(&mut *stdin, text)?;
        stdin.write_all(b"\n")?;
        stdin.flush()?;
        let mut line = String::new();
        self.lines.read_line(&mut line)?;
        let value: serde_json::Value = serde_json::from_str(&line).context("piper-tts failed")?;
        let audio_seconds = value["samples"].as_f64().unwrap_or(0.0)
            / value["sample_rate"].as_f64().unwrap_or(22_050.0);
        let total = value["total_seconds"].as_f64().unwrap_or(0.0);
        Ok(Run {
            first_audio_ms: value["first_seconds"].as_f64().unwrap_or(0.0) * 1e3,
            total_ms: total * 1e3,
            audio_seconds,
            real_time_factor: total / audio_seconds.max(1e-9),
        })
    }
}

impl Drop for Piper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn gondola_run(voice: &Arc<voice::Voice>) -> anyhow::Result<Run> {
    let started = Instant::now();
    let mut units = voice.speak(PARAGRAPH.to_owned(), 1.0);
    let mut first = None;
    let mut samples = 0usize;
    while let Some(unit) = units.recv().await {
        let unit = unit?;
        first.get_or_insert_with(|| started.elapsed());
        samples += unit.len();
    }
    let total = started.elapsed().as_secs_f64();
    let audio_seconds = samples as f64 / f64::from(voice.info().sample_rate);
    Ok(Run {
        first_audio_ms: first.map_or(0.0, |first| first.as_secs_f64() * 1e3),
        total_ms: total * 1e3,
        audio_seconds,
        real_time_factor: total / audio_seconds.max(1e-9),
    })
}

pub async fn run() -> anyhow::Result<()> {
    let model = PathBuf::from(
        std::env::args()
            .nth(2)
            .context("usage: gondola-bench speech VOICE.onnx [--venv DIR]")?,
    );
    let python = crate::peer_python("piper-tts", "speech")?;
    let directory = model.parent().context("the voice has no directory")?;
    let threads = engine::default_decode_threads();
    let config = voice::VoiceConfig {
        config_path: PathBuf::from(format!("{}.json", model.display())),
        runtime_library: directory.join("libonnxruntime.so.1.31.1"),
        model_path: model.clone(),
        espeak: PathBuf::from("espeak-ng"),
        ffmpeg: PathBuf::from("ffmpeg"),
        name: "joe".into(),
        threads,
    };
    let loading = Instant::now();
    let voice = Arc::new(tokio::task::spawn_blocking(move || voice::Voice::load(config)).await??);
    let gondola_load = loading.elapsed().as_secs_f64();
    let mut piper = Piper::start(&python, &model, threads.get())?;
    // Warm both.
    gondola_run(&voice).await?;
    piper.speak(PARAGRAPH)?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}", round + 1);
        ours.push(gondola_run(&voice).await?);
        theirs.push(piper.speak(PARAGRAPH)?);
    }
    let gondola = Side {
        name: "Gondola's voice (ort, espeak-ng process)",
        load_seconds: gondola_load,
        median: median(&ours),
        runs: ours,
    };
    let peer = Side {
        name: "Piper (piper-tts 1.8.0, onnxruntime)",
        load_seconds: piper.load_seconds,
        median: median(&theirs),
        runs: theirs,
    };
    let report = Report {
        voice: model
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        threads: threads.get(),
        rounds: ROUNDS,
        ratio_real_time_factor: peer.median.real_time_factor / gondola.median.real_time_factor,
        gondola,
        piper: peer,
    };
    let results = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(
        results.join("speech.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let mut table = format!(
        "# Speech: Gondola's voice beside Piper's own engine\n\n\
         {} · {} thread(s) · a paragraph of five sentences · medians of {} interleaved rounds\n\n\
         | engine | load | first audio | whole paragraph | audio | real-time factor |\n\
         |---|---|---|---|---|---|\n",
        report.voice, report.threads, report.rounds
    );
    for side in [&report.gondola, &report.piper] {
        table.push_str(&format!(
            "| {} | {:.2} s | {:.0} ms | {:.0} ms | {:.1} s | {:.3} |\n",
            side.name,
            side.load_seconds,
            side.median.first_audio_ms,
            side.median.total_ms,
            side.median.audio_seconds,
            side.median.real_time_factor
        ));
    }
    table.push_str(&format!(
        "\nGondola speaks at {:.2}× Piper's speed (the ratio of their real-time factors).\n",
        report.ratio_real_time_factor
    ));
    std::fs::write(results.join("speech.md"), &table)?;
    println!("{table}");
    Ok(())
}
