//! Transcription: a Whisper model in CTranslate2's format (the form the registries ship Whisper
//! in) run through `ct2rs`, with the upload decoded by FFmpeg (a separate process) to 16 kHz
//! mono samples, and the transcript returned with its segments and each word's timing.
//!
//! Audio is bounded before it is decoded (its bytes) and while (its length: FFmpeg stops at
//! [`MAX_AUDIO_SECONDS`]); what FFmpeg cannot read is the client's error. Nothing here logs
//! audio or text: durations and timings only.

use std::path::{Path, PathBuf};
use std::process::Stdio;
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

/// A word and when it was said, in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub word: String,
    pub start: f32,
    pub end: f32,
}

/// Which timings a transcript carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timings {
    /// The text only.
    None,
    /// A segment per utterance (speech between pauses).
    Segments,
    /// Segments, and each word's times, from the decoder's attention to the audio.
    Words,
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
    /// Present when word timings were asked for.
    pub words: Vec<Word>,
}

/// Samples in one of Whisper's windows (30 s).
const WINDOW: usize = 480_000;
/// Spectrogram frames in a window (one per `HOP` samples).
const WINDOW_FRAMES: usize = 3000;
const N_FFT: usize = 400;
const HOP: usize = 160;
/// Encoder frames per second of audio (a frame is two hops: 20 ms).
const ENCODER_FRAMES_PER_SECOND: f32 = 50.0;
/// Windows encoded at once: bounds the features and encoder output held per request.
const BATCH: usize = 8;
/// Width of the median filter over the alignment heads' attention (what Whisper uses).
const MEDIAN_FILTER: i64 = 7;

/// A loaded Whisper model.
pub struct Listener {
    whisper: ct2rs::sys::Whisper,
    tokenizer: ct2rs::tokenizers::hf::Tokenizer,
    mel_filters: ndarray::Array2<f64>,
    n_mels: usize,
    /// `<|endoftext|>`: ids at or above it are special (timestamps, languages, tasks).
    end_of_text: u32,
    config: ListenerConfig,
}

impl Listener {
    /// Loads the model. Blocking.
    pub fn load(config: ListenerConfig) -> Result<Self, ListenError> {
        let model_error = |reason: String| ListenError::Model {
            path: config.model_dir.clone(),
            reason,
        };
        let ct2 = ct2rs::Config {
            num_threads_per_replica: config.threads.max(1),
            ..ct2rs::Config::default()
        };
        let whisper = ct2rs::sys::Whisper::new(&config.model_dir, ct2)
            .map_err(|error| model_error(error.to_string()))?;
        let tokenizer = ct2rs::tokenizers::hf::Tokenizer::new(&config.model_dir)
            .map_err(|error| model_error(error.to_string()))?;
        let end_of_text = tokenizer
            .token_to_id("<|endoftext|>")
            .ok_or_else(|| model_error("the tokenizer has no <|endoftext|>".into()))?;
        let n_mels = whisper.n_mels();
        let mel_filters = mel_spec::mel::mel(
            f64::from(SAMPLE_RATE),
            N_FFT,
            n_mels,
            None,
            None,
            false,
            true,
        );
        tracing::info!(
            multilingual = whisper.is_multilingual(),
            threads = config.threads,
            "transcription model loaded"
        );
        Ok(Self {
            whisper,
            tokenizer,
            mel_filters,
            n_mels,
            end_of_text,
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
    /// `None` on a multilingual one), with the `timings` asked for. Blocking: call it off the
    /// async runtime.
    pub fn transcribe(
        &self,
        samples: &[f32],
        language: Option<&str>,
        timings: Timings,
    ) -> Result<Transcript, ListenError> {
        let started = Instant::now();
        let duration = samples.len() as f32 / SAMPLE_RATE as f32;
        // Timed, each utterance (speech between pauses) is a window of its own, padded with
        // silence: a segment per utterance, with its times in the audio. Untimed, the audio is
        // cut every 30 s.
        let spans = if timings == Timings::None {
            (0..samples.len())
                .step_by(WINDOW)
                .map(|start| (start, (start + WINDOW).min(samples.len())))
                .collect()
        } else {
            utterances(samples, WINDOW)
        };
        let mut language = if self.whisper.is_multilingual() {
            language.map(str::to_owned)
        } else {
            Some("en".to_owned())
        };
        let mut segments = Vec::new();
        let mut words = Vec::new();
        for batch in spans.chunks(BATCH) {
            let windows: Vec<&[f32]> = batch
                .iter()
                .map(|(start, end)| &samples[*start..*end])
                .collect();
            let heard = self.hear(&windows, &mut language, timings, timings != Timings::None)?;
            for ((start, end), (text, mut timed)) in batch.iter().zip(heard) {
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                let (start, end) = (
                    *start as f32 / SAMPLE_RATE as f32,
                    *end as f32 / SAMPLE_RATE as f32,
                );
                for word in &mut timed {
                    word.start = (word.start + start).min(end);
                    word.end = (word.end + start).min(end);
                }
                words.extend(timed);
                segments.push(Segment {
                    text: text.to_owned(),
                    start,
                    end,
                });
            }
        }
        let text = segments
            .iter()
            .map(|segment| segment.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        if timings == Timings::None {
            segments.clear();
        }
        tracing::debug!(
            audio_ms = (duration * 1000.0) as u64,
            elapsed_ms = started.elapsed().as_millis() as u64,
            windows = spans.len(),
            "audio transcribed"
        );
        Ok(Transcript {
            text,
            language: language.unwrap_or_else(|| "en".to_owned()),
            duration,
            segments,
            words,
        })
    }

    /// The text of each window, and its words' times within the window when asked for. The
    /// language is detected from the first batch when not known.
    fn hear(
        &self,
        windows: &[&[f32]],
        language: &mut Option<String>,
        timings: Timings,
        pad: bool,
    ) -> Result<Vec<(String, Vec<Word>)>, ListenError> {
        let mut features = self.features(windows, pad);
        let shape = [windows.len(), self.n_mels, WINDOW_FRAMES];
        let features = ct2rs::sys::StorageView::new(&shape, &mut features, Default::default())
            .map_err(failed)?;
        if language.is_none() {
            let detected = self.whisper.detect_language(&features).map_err(failed)?;
            let best = detected
                .first()
                .and_then(|ranked| ranked.first())
                .map(|result| {
                    result
                        .language
                        .trim_start_matches("<|")
                        .trim_end_matches("|>")
                })
                .unwrap_or("en");
            *language = Some(best.to_owned());
        }
        let mut prompt = vec!["<|startoftranscript|>".to_owned()];
        if self.whisper.is_multilingual() {
            prompt.push(format!("<|{}|>", language.as_deref().unwrap_or("en")));
            prompt.push("<|transcribe|>".to_owned());
        }
        prompt.push("<|notimestamps|>".to_owned());
        let encoded = self.whisper.encode(&features, false).map_err(failed)?;
        let options = ct2rs::WhisperOptions {
            // Greedy: a few times faster than a beam on a CPU, and what the listener test
            // holds to its word error rate.
            beam_size: 1,
            ..ct2rs::WhisperOptions::default()
        };
        let generated = self
            .whisper
            .generate(&encoded, &vec![prompt.clone(); windows.len()], &options)
            .map_err(failed)?;
        let tokens: Vec<Vec<usize>> = generated
            .iter()
            .map(|result| {
                result
                    .sequences_ids
                    .first()
                    .map(|ids| {
                        ids.iter()
                            .copied()
                            .filter(|id| *id < self.end_of_text as usize)
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        let texts = tokens
            .iter()
            .map(|ids| {
                let ids: Vec<u32> = ids.iter().map(|id| *id as u32).collect();
                self.tokenizer.decode(&ids, true).map_err(failed)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut timed = vec![Vec::new(); windows.len()];
        // Alignment needs text in every window of the batch; a silent one gets no words.
        if timings == Timings::Words && tokens.iter().all(|ids| !ids.is_empty()) {
            let start: Vec<usize> = prompt
                .iter()
                .map(|token| {
                    self.tokenizer
                        .token_to_id(token)
                        .map(|id| id as usize)
                        .ok_or_else(|| ListenError::Failed(format!("no token {token}")))
                })
                .collect::<Result<_, _>>()?;
            let frames: Vec<usize> = windows
                .iter()
                .map(|window| (window.len() / HOP).min(WINDOW_FRAMES))
                .collect();
            let alignments = self
                .whisper
                .align(&encoded, &start, &tokens, &frames, MEDIAN_FILTER)
                .map_err(failed)?;
            for ((slot, ids), alignment) in timed.iter_mut().zip(&tokens).zip(&alignments) {
                let path: Vec<(i64, i64)> = alignment
                    .alignments
                    .iter()
                    .map(|step| (step.token_x, step.frame_x))
                    .collect();
                *slot = self.words(ids, &path)?;
            }
        } else if timings == Timings::Words {
            // Some window of the batch heard nothing: align the others on their own.
            let spoken: Vec<usize> = (0..windows.len())
                .filter(|index| !tokens[*index].is_empty())
                .collect();
            if !spoken.is_empty() {
                let again: Vec<&[f32]> = spoken.iter().map(|index| windows[*index]).collect();
                let heard = self.hear(&again, language, timings, pad)?;
                for (index, (_, words)) in spoken.into_iter().zip(heard) {
                    timed[index] = words;
                }
            }
        }
        Ok(texts.into_iter().zip(timed).collect())
    }

    /// Log-mel features of each window, `[windows, n_mels, 3000]`, as ct2rs computes them;
    /// `pad`: each window is heard as 30 s, the rest silence.
    fn features(&self, windows: &[&[f32]], pad: bool) -> Vec<f32> {
        let per_window = self.n_mels * WINDOW_FRAMES;
        let mut features = vec![0.0f32; windows.len() * per_window];
        let silence = vec![0.0f32; HOP];
        for (slot, window) in windows.iter().enumerate() {
            let mut stft = mel_spec::stft::Spectrogram::new(N_FFT, HOP);
            let heard = if pad { WINDOW } else { window.len() };
            let hops = window
                .chunks(HOP)
                .chain(std::iter::repeat_n(
                    silence.as_slice(),
                    heard.saturating_sub(window.len()).div_ceil(HOP),
                ))
                .take(WINDOW_FRAMES);
            for (frame, hop) in hops.enumerate() {
                if let Some(fft) = stft.add(hop) {
                    let mel = mel_spec::mel::norm_mel(&mel_spec::mel::log_mel_spectrogram(
                        &fft,
                        &self.mel_filters,
                    ));
                    for bin in 0..self.n_mels {
                        features[slot * per_window + bin * WINDOW_FRAMES + frame] =
                            mel[[bin, 0]] as f32;
                    }
                }
            }
        }
        features
    }

    /// The words of a window's text tokens and their times in it, from the alignment path
    /// (token index, encoder frame): a word starts where the path first reaches its first
    /// token and ends where the next word (or the end of text) starts.
    fn words(&self, ids: &[usize], path: &[(i64, i64)]) -> Result<Vec<Word>, ListenError> {
        // Where each token (and the end of text after them) starts, in encoder frames.
        let mut starts: Vec<i64> = Vec::with_capacity(ids.len() + 1);
        for (token, frame) in path {
            if *token as usize == starts.len() {
                starts.push(*frame);
            }
        }
        let last = starts.last().copied().unwrap_or(0);
        starts.resize(ids.len() + 1, last);
        // A word begins with a token that begins with a space (`Ġ` in byte-level BPE).
        let mut bounds: Vec<usize> = Vec::new();
        for (index, id) in ids.iter().enumerate() {
            let begins = self
                .tokenizer
                .id_to_token(*id as u32)
                .is_some_and(|token| token.starts_with('Ġ') || token.starts_with(' '));
            if index == 0 || begins {
                bounds.push(index);
            }
        }
        bounds.push(ids.len());
        let mut words = Vec::new();
        for pair in bounds.windows(2) {
            let range: Vec<u32> = ids[pair[0]..pair[1]].iter().map(|id| *id as u32).collect();
            let text = self.tokenizer.decode(&range, true).map_err(failed)?;
            let word = text
                .trim()
                .trim_matches(|c: char| c.is_ascii_punctuation() && c != '\'')
                .to_owned();
            if word.is_empty() {
                continue;
            }
            words.push(Word {
                word,
                start: starts[pair[0]] as f32 / ENCODER_FRAMES_PER_SECOND,
                end: starts[pair[1]] as f32 / ENCODER_FRAMES_PER_SECOND,
            });
        }
        Ok(words)
    }
}

fn failed(error: impl std::fmt::Display) -> ListenError {
    ListenError::Failed(error.to_string())
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
