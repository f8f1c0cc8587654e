//! `gondola-bench transcription WHISPER_DIR VOICE.onnx [--venv DIR]`: Gondola's listener
//! beside faster-whisper (the `faster-whisper` package, called in process by
//! `peers/whisper_transcribe.py`), on the same Whisper model directory with the same threads,
//! greedy, in English, in interleaved rounds: the time to transcribe about forty seconds of
//! speech (two of Whisper's windows) as text only and with word timings, the real-time factor,
//! and the word error rate of each against the text spoken. The speech is the paragraph read
//! by Gondola's voice, decoded once by FFmpeg to 16 kHz samples that both sides are given.
//! Results go to `bench/results/transcription.{md,json}`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use transcribe::{Listener, ListenerConfig, Timings};

const ROUNDS: usize = 5;
/// Ten sentences, about forty seconds of speech.
const SPOKEN: &str = "The harbour was quiet in the early morning. A few boats rocked gently \
    against the pier, and the gulls were already circling overhead. Down the street, the baker \
    opened his shutters and set out the first loaves of the day. Nobody was in a hurry. It was \
    going to be a long and sunny afternoon. By noon the market square was full of people. \
    Children ran between the stalls while their parents bought fruit and fresh fish. An old man \
    played the accordion near the fountain. The sun was warm, and the sea was calm. Everyone \
    agreed it was the best day of the summer.";

#[derive(Serialize, Clone)]
struct Run {
    ms: f64,
    real_time_factor: f64,
    word_error_rate: f64,
}

#[derive(Serialize)]
struct Side {
    name: &'static str,
    load_seconds: f64,
    text_only: Vec<Run>,
    with_words: Vec<Run>,
    median_text_only: Run,
    median_with_words: Run,
    last_text: String,
}

#[derive(Serialize)]
struct Report {
    model: String,
    threads: u32,
    rounds: usize,
    audio_seconds: f64,
    gondola: Side,
    faster_whisper: Side,
    ratio_text_only: f64,
    ratio_with_words: f64,
}

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Edits from the words said to the words heard, over the words said.
fn word_error_rate(said: &str, heard: &str) -> f64 {
    let (said, heard) = (words(said), words(heard));
    let mut previous: Vec<usize> = (0..=heard.len()).collect();
    for (i, said_word) in said.iter().enumerate() {
        let mut current = vec![i + 1; heard.len() + 1];
        for (j, heard_word) in heard.iter().enumerate() {
            current[j + 1] = (previous[j + 1] + 1)
                .min(current[j] + 1)
                .min(previous[j] + usize::from(said_word != heard_word));
        }
        previous = current;
    }
    previous[heard.len()] as f64 / said.len().max(1) as f64
}

fn median(runs: &[Run]) -> Run {
    let pick = |key: fn(&Run) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(key).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Run {
        ms: pick(|run| run.ms),
        real_time_factor: pick(|run| run.real_time_factor),
        word_error_rate: pick(|run| run.word_error_rate),
    }
}

struct FasterWhisper {
    child: std::process::Child,
    lines: BufReader<std::process::ChildStdout>,
    load_seconds: f64,
}

impl FasterWhisper {
    fn start(python: &Path, model: &Path, threads: u32) -> anyhow::Result<Self> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/whisper_transcribe.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(model)
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
            serde_json::from_str(&ready).context("faster-whisper did not start")?;
        Ok(Self {
            load_seconds: ready["load_seconds"].as_f64().unwrap_or(0.0),
            child,
            lines,
        })
    }

    fn transcribe(&mut self, samples: &Path, words: bool) -> anyhow::Result<(f64, String)> {
        let stdin = self.child.stdin.as_mut().context("no stdin")?;
        serde_json::to_writer(
            &mut *stdin,
            &serde_json::json!({"samples": samples, "words": words}),
        )?;
        stdin.write_all(b"\n")?;
        stdin.flush()?;
        let mut line = String::new();
        self.lines.read_line(&mut line)?;
        let value: serde_json::Value =
            serde_json::from_str(&line).context("faster-whisper failed")?;
        Ok((
            value["seconds"].as_f64().unwrap_or(0.0),
            value["text"].as_str().unwrap_or_default().to_owned(),
        ))
    }
}

impl Drop for FasterWhisper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_of(seconds: f64, audio_seconds: f64, text: &str) -> Run {
    Run {
        ms: seconds * 1e3,
        real_time_factor: seconds / audio_seconds,
        word_error_rate: word_error_rate(SPOKEN, text),
    }
}

/// The paragraph spoken by Gondola's voice, as 16 kHz samples decoded by FFmpeg.
async fn speech(
    voice_model: &Path,
    listener: &Listener,
    threads: std::num::NonZeroU32,
) -> anyhow::Result<Vec<f32>> {
    let directory = voice_model.parent().context("the voice has no directory")?;
    let config = voice::VoiceConfig {
        config_path: PathBuf::from(format!("{}.json", voice_model.display())),
        runtime_library: directory.join("libonnxruntime.so.1.31.1"),
        model_path: voice_model.to_path_buf(),
        espeak: PathBuf::from("espeak-ng"),
        ffmpeg: PathBuf::from("ffmpeg"),
        name: "joe".into(),
        threads,
    };
    let voice = Arc::new(tokio::task::spawn_blocking(move || voice::Voice::load(config)).await??);
    let mut units = voice.speak(SPOKEN.to_owned(), 1.0);
    let mut samples = Vec::new();
    while let Some(unit) = units.recv().await {
        samples.extend(unit?);
    }
    let mut wav = voice::audio::wav_header(voice.info().sample_rate, Some(samples.len()));
    wav.extend(voice::audio::pcm_bytes(&samples));
    Ok(listener.decode(&wav).await?)
}

pub async fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: gondola-bench transcription WHISPER_DIR VOICE.onnx [--venv DIR]";
    let model = PathBuf::from(args.get(2).context(usage)?);
    let voice_model = PathBuf::from(args.get(3).context(usage)?);
    let python = crate::peer_python("faster-whisper", "transcription")?;
    let threads = engine::default_decode_threads();
    let config = ListenerConfig {
        model_dir: model.clone(),
        ffmpeg: PathBuf::from("ffmpeg"),
        threads: threads.get() as usize,
    };
    let loading = Instant::now();
    let listener = Arc::new(tokio::task::spawn_blocking(move || Listener::load(config)).await??);
    let gondola_load = loading.elapsed().as_secs_f64();
    let samples = Arc::new(speech(&voice_model, &listener, threads).await?);
    let audio_seconds = samples.len() as f64 / 16_000.0;
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(
        file.path(),
        samples
            .iter()
            .flat_map(|sample| sample.to_le_bytes())
            .collect::<Vec<u8>>(),
    )?;
    let mut peer = FasterWhisper::start(&python, &model, threads.get())?;
    let ours = |timings: Timings| {
        let (listener, samples) = (Arc::clone(&listener), Arc::clone(&samples));
        async move {
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let heard = listener.transcribe(&samples, Some("en"), timings)?;
                Ok::<_, anyhow::Error>((started.elapsed().as_secs_f64(), heard.text))
            })
            .await?
        }
    };
    // Warm both.
    ours(Timings::Words).await?;
    peer.transcribe(file.path(), true)?;
    let (mut our_text, mut our_words, mut their_text, mut their_words) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut our_last, mut their_last) = (String::new(), String::new());
    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}", round + 1);
        let (seconds, text) = ours(Timings::None).await?;
        our_text.push(run_of(seconds, audio_seconds, &text));
        let (seconds, text) = peer.transcribe(file.path(), false)?;
        their_text.push(run_of(seconds, audio_seconds, &text));
        let (seconds, text) = ours(Timings::Words).await?;
        our_words.push(run_of(seconds, audio_seconds, &text));
        our_last = text;
        let (seconds, text) = peer.transcribe(file.path(), true)?;
        their_words.push(run_of(seconds, audio_seconds, &text));
        their_last = text;
    }
    let side = |name, load_seconds, text_only: Vec<Run>, with_words: Vec<Run>, last_text| Side {
        name,
        load_seconds,
        median_text_only: median(&text_only),
        median_with_words: median(&with_words),
        text_only,
        with_words,
        last_text,
    };
    let gondola = side(
        "Gondola's listener (ct2rs, CTranslate2 with Ruy)",
        gondola_load,
        our_text,
        our_words,
        our_last,
    );
    let faster_whisper = side(
        "faster-whisper 1.2.1 (CTranslate2 wheel)",
        peer.load_seconds,
        their_text,
        their_words,
        their_last,
    );
    let report = Report {
        model: model
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        threads: threads.get(),
        rounds: ROUNDS,
        audio_seconds,
        ratio_text_only: faster_whisper.median_text_only.ms / gondola.median_text_only.ms,
        ratio_with_words: faster_whisper.median_with_words.ms / gondola.median_with_words.ms,
        gondola,
        faster_whisper,
    };
    let results = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(
        results.join("transcription.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let mut table = format!(
        "# Transcription: Gondola's listener beside faster-whisper\n\n\
         {} · {} thread(s) · {:.1} s of speech from Gondola's voice · greedy, English · \
         medians of {} interleaved rounds\n\n\
         | engine | load | text only | real-time factor | with word timings | real-time factor | word error rate |\n\
         |---|---|---|---|---|---|---|\n",
        report.model, report.threads, report.audio_seconds, report.rounds
    );
    for side in [&report.gondola, &report.faster_whisper] {
        table.push_str(&format!(
            "| {} | {:.2} s | {:.0} ms | {:.3} | {:.0} ms | {:.3} | {:.1}% |\n",
            side.name,
            side.load_seconds,
            side.median_text_only.ms,
            side.median_text_only.real_time_factor,
            side.median_with_words.ms,
            side.median_with_words.real_time_factor,
            side.median_with_words.word_error_rate * 100.0
        ));
    }
    table.push_str(&format!(
        "\nGondola transcribes at {:.2}× faster-whisper's speed as text only and {:.2}× with word \
         timings (the ratio of their times). Gondola hears each utterance in a window of its own \
         when timings are asked for; faster-whisper decodes 30-s windows with timestamp tokens.\n",
        report.ratio_text_only, report.ratio_with_words
    ));
    std::fs::write(results.join("transcription.md"), &table)?;
    println!("{table}");
    Ok(())
}
