//! Speech synthesis: a Piper voice (VITS, exported to ONNX) run by ONNX Runtime, with its
//! phonemes from espeak-ng and its audio written in every format the speech API offers.
//!
//! Text is split into sentences ([`text`]), phonemized by espeak-ng in a separate process
//! ([`espeak`]), and each sentence synthesized in turn on a blocking thread, so that a long
//! input is heard from its first sentence on; [`audio`] writes the samples as WAV or has
//! FFmpeg (also a separate process) encode them. ONNX Runtime is loaded at run time from the
//! library the model store pulled. Nothing here logs text or audio: counts and timings only.

pub mod audio;
mod espeak;
pub mod text;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;
use tokio::sync::mpsc;

pub use audio::AudioFormat;

/// Sentences synthesized ahead of the reader (each a few seconds of audio at most).
const SENTENCES_AHEAD: usize = 2;
/// Most phoneme ids in one synthesis unit; a longer sentence is spoken clause by clause.
const MAX_UNIT_IDS: usize = 1200;
/// The peak a sentence's samples are scaled to (Piper's own normalization).
const PEAK: f32 = 32_767.0;

#[derive(Debug, thiserror::Error, Clone)]
pub enum VoiceError {
    #[error("ONNX Runtime could not be loaded from {path}: {reason}")]
    Runtime { path: PathBuf, reason: String },
    #[error("the voice {path} could not be loaded: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("the phonemizer failed: {0}")]
    Phonemizer(String),
    #[error("synthesis failed: {0}")]
    Synthesis(String),
    #[error("the audio encoder failed: {0}")]
    Encoder(String),
}

/// Where a voice's parts are.
#[derive(Debug, Clone)]
pub struct VoiceConfig {
    /// The voice's `.onnx` model.
    pub model_path: PathBuf,
    /// Its `.onnx.json` configuration (phoneme map, sample rate, espeak-ng voice).
    pub config_path: PathBuf,
    /// ONNX Runtime's shared library.
    pub runtime_library: PathBuf,
    /// The espeak-ng program.
    pub espeak: PathBuf,
    /// The FFmpeg program.
    pub ffmpeg: PathBuf,
    /// The voice's name, as clients ask for it.
    pub name: String,
    pub threads: NonZeroU32,
}

#[derive(Deserialize)]
struct PiperConfig {
    audio: PiperAudio,
    espeak: PiperEspeak,
    inference: PiperInference,
    phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default)]
    language: Option<PiperLanguage>,
}

#[derive(Deserialize)]
struct PiperAudio {
    sample_rate: u32,
}

#[derive(Deserialize)]
struct PiperEspeak {
    voice: String,
}

#[derive(Deserialize, Clone, Copy)]
struct PiperInference {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

#[derive(Deserialize)]
struct PiperLanguage {
    code: String,
}

/// What a loaded voice is.
#[derive(Debug, Clone)]
pub struct VoiceInfo {
    pub name: String,
    /// e.g. `en_US`.
    pub language: String,
    pub sample_rate: u32,
}

/// A loaded voice. Synthesis holds its session for one sentence at a time.
pub struct Voice {
    session: Mutex<Session>,
    ids: text::PhonemeIds,
    espeak_voice: String,
    inference: PiperInference,
    info: VoiceInfo,
    config: VoiceConfig,
}

/// ONNX Runtime's environment (one per process, shared with the image models).
fn environment(
    library: &std::path::Path,
) -> Result<&'static ort::environment::Environment, VoiceError> {
    onnx::environment(library).map_err(|reason| VoiceError::Runtime {
        path: library.to_path_buf(),
        reason,
    })
}

impl Voice {
    /// Loads ONNX Runtime (once per process) and the voice. Blocking.
    pub fn load(config: VoiceConfig) -> Result<Self, VoiceError> {
        let model_error = |reason: String| VoiceError::Model {
            path: config.model_path.clone(),
            reason,
        };
        let piper: PiperConfig = serde_json::from_slice(
            &std::fs::read(&config.config_path).map_err(|error| model_error(error.to_string()))?,
        )
        .map_err(|error| model_error(format!("its configuration: {error}")))?;
        let ids = text::PhonemeIds::new(&piper.phoneme_id_map).map_err(model_error)?;
        let environment = environment(&config.runtime_library)?;
        let threads = usize::try_from(config.threads.get()).unwrap_or(1);
        let mut builder = Session::builder(environment)
            .map_err(|error| model_error(error.to_string()))?
            .with_intra_threads(threads)
            .map_err(|error| model_error(error.to_string()))?;
        let session = builder
            .commit_from_file(&config.model_path)
            .map_err(|error| model_error(error.to_string()))?;
        let info = VoiceInfo {
            name: config.name.clone(),
            language: piper
                .language
                .map_or_else(|| piper.espeak.voice.clone(), |language| language.code),
            sample_rate: piper.audio.sample_rate,
        };
        tracing::info!(voice = %info.name, sample_rate = info.sample_rate, threads, "voice loaded");
        Ok(Self {
            session: Mutex::new(session),
            ids,
            espeak_voice: piper.espeak.voice,
            inference: piper.inference,
            info,
            config,
        })
    }

    pub fn info(&self) -> &VoiceInfo {
        &self.info
    }

    pub fn ffmpeg(&self) -> &std::path::Path {
        &self.config.ffmpeg
    }

    /// The phonemes of `input`'s sentences, each cut into units of at most
    /// [`MAX_UNIT_IDS`] ids.
    pub async fn phonemize(&self, input: &str) -> Result<Vec<String>, VoiceError> {
        let sentences = text::sentences(input);
        let clauses: Vec<&str> = sentences
            .iter()
            .flatten()
            .map(|clause| clause.text.as_str())
            .collect();
        let phonemes = espeak::phonemize(&self.config.espeak, &self.espeak_voice, &clauses).await?;
        let mut next = phonemes.into_iter();
        let mut units = Vec::new();
        for sentence in &sentences {
            let mut unit: Vec<(String, Option<char>)> = Vec::new();
            let mut unit_chars = 0;
            for clause in sentence {
                let phonemes = next.next().unwrap_or_default();
                if phonemes.is_empty() {
                    continue;
                }
                let chars = phonemes.chars().count();
                if !unit.is_empty() && (unit_chars + chars) * 2 > MAX_UNIT_IDS {
                    units.push(text::join_clauses(&unit));
                    unit.clear();
                    unit_chars = 0;
                }
                unit_chars += chars;
                unit.push((phonemes, clause.punctuation));
            }
            if !unit.is_empty() {
                units.push(text::join_clauses(&unit));
            }
        }
        Ok(units)
    }

    /// The samples of one unit of phonemes at `speed` (1 is the voice's own pace), scaled to
    /// full volume. Blocking: tens of milliseconds per second of speech.
    pub fn synthesize(&self, phonemes: &str, speed: f32) -> Result<Vec<i16>, VoiceError> {
        let mut ids = self.ids.ids(phonemes);
        ids.truncate(MAX_UNIT_IDS);
        let length = ids.len();
        let failed = |error: ort::Error| VoiceError::Synthesis(error.to_string());
        let input = Tensor::from_array(([1usize, length], ids)).map_err(failed)?;
        let lengths = Tensor::from_array(([1usize], vec![length as i64])).map_err(failed)?;
        let scales = Tensor::from_array((
            [3usize],
            vec![
                self.inference.noise_scale,
                self.inference.length_scale / speed.clamp(0.25, 4.0),
                self.inference.noise_w,
            ],
        ))
        .map_err(failed)?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| VoiceError::Synthesis("the voice's session was poisoned".into()))?;
        let outputs = session
            .run(ort::inputs![
                "input" => input,
                "input_lengths" => lengths,
                "scales" => scales,
            ])
            .map_err(failed)?;
        let (_, audio) = outputs[0].try_extract_tensor::<f32>().map_err(failed)?;
        let peak = audio
            .iter()
            .fold(0.01f32, |peak, sample| peak.max(sample.abs()));
        let scale = PEAK / peak;
        Ok(audio
            .iter()
            .map(|sample| (sample * scale).clamp(-PEAK, PEAK) as i16)
            .collect())
    }

    /// Speaks `input` sentence by sentence: the samples of each unit on the returned channel as
    /// soon as it is made, then the channel closes (after an error, if one happens). A closed
    /// receiver stops the synthesis at the next unit.
    pub fn speak(
        self: &std::sync::Arc<Self>,
        input: String,
        speed: f32,
    ) -> mpsc::Receiver<Result<Vec<i16>, VoiceError>> {
        let (sender, receiver) = mpsc::channel(SENTENCES_AHEAD);
        let voice = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            let started = Instant::now();
            let units = match voice.phonemize(&input).await {
                Ok(units) => units,
                Err(error) => {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
            };
            let mut samples = 0usize;
            for unit in units {
                let voice = std::sync::Arc::clone(&voice);
                let made = tokio::task::spawn_blocking(move || voice.synthesize(&unit, speed))
                    .await
                    .unwrap_or_else(|error| Err(VoiceError::Synthesis(error.to_string())));
                let failed = made.is_err();
                if let Ok(chunk) = &made {
                    samples += chunk.len();
                }
                if sender.send(made).await.is_err() || failed {
                    return;
                }
            }
            tracing::debug!(
                samples,
                audio_ms = samples as u64 * 1000 / u64::from(voice.info.sample_rate.max(1)),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "speech synthesized"
            );
        });
        receiver
    }
}
