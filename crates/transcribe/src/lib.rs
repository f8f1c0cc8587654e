//! Transcription: a Whisper model in CTranslate2's format (the form the registries ship Whisper
//! in) run through `ct2rs`, with the upload decoded by FFmpeg (a separate process) to 16 kHz
//! mono samples, and the transcript returned with its segments and each word's timing.
//!
//! Audio is bounded before it is decoded (its bytes) and while (its length: FFmpeg stops at
//! [`MAX_AUDIO_SECONDS`]); what FFmpeg cannot read is the client's error. Nothing here logs
//! audio or text: durations and timings only.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

/// Longest audio transcribed per request.
pub const MAX_AUDIO_SECONDS: u32 = 600;
/// The sample rate Whisper hears at.
const SAMPLE_RATE: u32 = 16_000;
/// Longest FFmpeg may take to decode one upload.
const DECODE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("the transcription model {path} could not be loaded: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("the audio could not be decoded: {0}")]
    Undecodable(String),
    #[error("the audio decoder failed: {0}")]
    Decoder(String),
    #[error("transcription failed: {0}")]
    Failed(String),
}

impl ListenError {
    /// Whether the client sent something that is not audio.
    pub fn is_clients(&self) -> bool {
        matches!(self, Self::Undecodable(_))
    }
}

/// Where a transcription model's parts are.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// The model's directory (`model.bin`, `config.json`, `tokenizer.json`,
    /// `preprocessor_config.json`).
    pub model_dir: PathBuf,
    pub ffmpeg: PathBuf,
    pub threads: usize,
}

/// A stretch of the transcript and when it was said.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub text: String,
    pub start: f32,
    pub end: f32,
}

/// What was said.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    /// The language it was heard in (ISO 639-1).
    pub language: String,
    /// Seconds of audio heard.
    pub duration: f32,
    /// Present when timings were asked for: one per utterance.
    pub segments: Vec<Segment>,
}

/// A loaded Whisper model.
pub struct Listener {
    whisper: Arc<ct2rs::Whisper>,
    config: ListenerConfig,
}

impl Listener {
    /// Loads the model. Blocking.
    pub fn load(config: ListenerConfig) -> Result<Self, ListenError> {
        let ct2 = ct2rs::Config {
            num_threads_per_replica: config.threads.max(1),
            ..ct2rs::Config::default()
        };
        let whisper =
            ct2rs::Whisper::new(&config.model_dir, ct2).map_err(|error| ListenError::Model {
                path: config.model_dir.clone(),
                reason: error.to_string(),
            })?;
        tracing::info!(
            multilingual = whisper.is_multilingual(),
            threads = config.threads,
            "transcription model loaded"
        );
        Ok(Self {
            whisper: Arc::new(whisper),
            config,
        })
    }

    /// Whether the model hears languages other than English.
    pub fn is_multilingual(&self) -> bool {
        self.whisper.is_multilingual()
    }

    /// `audio` (a file in any format FFmpeg reads) as 16 kHz mono samples, at most
    /// [`MAX_AUDIO_SECONDS`] of them.
    pub async fn decode(&self, audio: &[u8]) -> Result<Vec<f32>, ListenError> {
        decode(&self.config.ffmpeg, audio).await
    }

    /// What `samples` say, in `language` (English for an English-only model; detected when
    /// `None` on a multilingual one), with segments and word timings when `timed`. Blocking:
    /// call it off the async runtime.
    pub fn transcribe(
        &self,
        samples: &[f32],
        language: Option<&str>,
        timed: bool,
    ) -> Result<Transcript, ListenError> {
        let started = Instant::now();
        let language = if self.whisper.is_multilingual() {
            language
        } else {
            Some("en")
        };
        let options = ct2rs::WhisperOptions {
            // Greedy: a few times faster than a beam on a CPU, and what the listener test
            // holds to its word error rate.
            beam_size: 1,
            ..ct2rs::WhisperOptions::default()
        };
        let duration = samples.len() as f32 / SAMPLE_RATE as f32;
        let window = self.whisper.n_samples();
        let (text, segments) = if timed {
            // Each utterance (speech between pauses) in a window of its own, all windows in
            // one batch: a segment per utterance, with its times in the audio.
            let spans = utterances(samples, window);
            let mut padded = vec![0.0f32; spans.len() * window];
            for (slot, (start, end)) in spans.iter().enumerate() {
                padded[slot * window..slot * window + (end - start)]
                    .copy_from_slice(&samples[*start..*end]);
            }
            let pieces = if spans.is_empty() {
                Vec::new()
            } else {
                self.whisper
                    .generate(&padded, language, false, &options)
                    .map_err(|error| ListenError::Failed(error.to_string()))?
            };
            let segments: Vec<Segment> = spans
                .iter()
                .zip(pieces)
                .filter(|(_, piece)| !piece.trim().is_empty())
                .map(|((start, end), piece)| Segment {
                    text: piece.trim().to_owned(),
                    start: *start as f32 / SAMPLE_RATE as f32,
                    end: *end as f32 / SAMPLE_RATE as f32,
                })
                .collect();
            let text = segments
                .iter()
                .map(|segment| segment.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            (text, segments)
        } else {
            let pieces = self
                .whisper
                .generate(samples, language, false, &options)
                .map_err(|error| ListenError::Failed(error.to_string()))?;
            let text = pieces
                .iter()
                .map(|piece| piece.trim())
                .filter(|piece| !piece.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            (text, Vec::new())
        };
        tracing::debug!(
            audio_ms = (duration * 1000.0) as u64,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "audio transcribed"
        );
        Ok(Transcript {
            text,
            language: language.unwrap_or("en").to_owned(),
            duration,
            segments,
        })
    }
}

/// Samples per frame of the pause detector (20 ms).
const FRAME: usize = 320;
/// Frames of quiet that end an utterance (300 ms).
const PAUSE_FRAMES: usize = 15;
/// Quiet frames kept on each side of an utterance (100 ms).
const PADDING_FRAMES: usize = 5;
/// The quietest a frame may be and still be speech (about -40 dBFS).
const FLOOR: f32 = 0.01;

/// The utterances of `samples` (start and end sample of each stretch of speech between
/// pauses of 300 ms or more), none longer than `window` samples: a frame is speech when its
/// loudness is above a tenth of the loud frames' (the 90th percentile) and above -40 dBFS.
fn utterances(samples: &[f32], window: usize) -> Vec<(usize, usize)> {
    let loudness: Vec<f32> = samples
        .chunks(FRAME)
        .map(|frame| {
            (frame.iter().map(|sample| sample * sample).sum::<f32>() / frame.len() as f32).sqrt()
        })
        .collect();
    if loudness.is_empty() {
        return Vec::new();
    }
    let mut sorted = loudness.clone();
    sorted.sort_by(f32::total_cmp);
    let loud = sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)];
    let threshold = (loud / 10.0).max(FLOOR);
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    let mut quiet = 0;
    for (index, level) in loudness.iter().enumerate() {
        if *level >= threshold {
            quiet = 0;
            current = Some(current.map_or((index, index + 1), |(start, _)| (start, index + 1)));
        } else if let Some(span) = current {
            quiet += 1;
            if quiet >= PAUSE_FRAMES {
                spans.push(span);
                current = None;
            }
        }
    }
    spans.extend(current);
    let frames = loudness.len();
    let mut result = Vec::new();
    for (start, end) in spans {
        let start = start.saturating_sub(PADDING_FRAMES) * FRAME;
        let end = ((end + PADDING_FRAMES).min(frames) * FRAME).min(samples.len());
        // A long utterance is cut into windows.
        let mut from = start;
        while from < end {
            let to = (from + window).min(end);
            result.push((from, to));
            from = to;
        }
    }
    result
}

/// Decodes `audio` with FFmpeg from a temporary file (some containers need to be read out of
/// order, which a pipe cannot do): 16 kHz mono 32-bit float samples.
async fn decode(ffmpeg: &Path, audio: &[u8]) -> Result<Vec<f32>, ListenError> {
    let file = tempfile::Builder::new()
        .prefix("gondola-audio-")
        .tempfile()
        .map_err(|error| ListenError::Decoder(error.to_string()))?;
    std::fs::write(file.path(), audio).map_err(|error| ListenError::Decoder(error.to_string()))?;
    let rate = SAMPLE_RATE.to_string();
    let seconds = MAX_AUDIO_SECONDS.to_string();
    let mut child = tokio::process::Command::new(ffmpeg)
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(file.path())
        .args([
            "-t", &seconds, "-vn", "-ac", "1", "-ar", &rate, "-f", "f32le", "pipe:1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| {
            ListenError::Decoder(format!("cannot run {}: {error}", ffmpeg.display()))
        })?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| ListenError::Decoder("FFmpeg has no output".into()))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| ListenError::Decoder("FFmpeg has no error output".into()))?;
    let max_bytes = u64::from(MAX_AUDIO_SECONDS) * u64::from(SAMPLE_RATE) * 4 + 4;
    let work = async {
        let mut samples = Vec::new();
        let mut complaint = Vec::new();
        let mut samples_reader = (&mut stdout).take(max_bytes);
        let mut complaint_reader = (&mut stderr).take(4096);
        let (read, _) = tokio::join!(
            samples_reader.read_to_end(&mut samples),
            complaint_reader.read_to_end(&mut complaint),
        );
        read?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, samples, complaint))
    };
    let (status, bytes, complaint) = tokio::time::timeout(DECODE_TIMEOUT, work)
        .await
        .map_err(|_| ListenError::Decoder("decoding took too long".into()))?
        .map_err(|error| ListenError::Decoder(error.to_string()))?;
    drop(file);
    if !status.success() || bytes.is_empty() {
        // FFmpeg's complaint names the container or codec it could not read; it holds no
        // audio, but it may echo the file's name, which is a temporary one.
        let reason = String::from_utf8_lossy(&complaint)
            .lines()
            .last()
            .unwrap_or("not audio FFmpeg can read")
            .to_owned();
        return Err(ListenError::Undecodable(reason));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_between_pauses_makes_utterances_cut_at_the_window() {
        let tone = |count: usize| -> Vec<f32> {
            (0..count)
                .map(|index| (index as f32 * 0.05).sin() * 0.5)
                .collect()
        };
        let mut samples = tone(16_000);
        samples.extend(vec![0.0; 16_000]);
        samples.extend(tone(8_000));
        let spans = utterances(&samples, 480_000);
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert!(
            spans[0].0 == 0 && spans[0].1 >= 16_000 && spans[0].1 < 20_000,
            "{spans:?}"
        );
        assert!(spans[1].0 > 28_000 && spans[1].0 <= 32_000, "{spans:?}");
        assert_eq!(spans[1].1, samples.len());
        let cut = utterances(&tone(40_000), 16_000);
        assert_eq!(cut, vec![(0, 16_000), (16_000, 32_000), (32_000, 40_000)]);
        assert!(utterances(&vec![0.0; 16_000], 480_000).is_empty());
    }
}
