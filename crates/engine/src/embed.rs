//! Embeddings: a GGUF embedding model (BERT and its kin) run by llama.cpp with its pooling,
//! one vector per input, normalized to unit length (cosine similarity is then a dot product,
//! as OpenAI's embeddings are).
//!
//! One thread owns the llama.cpp context. Requests queue on a bounded channel; the thread takes
//! every request waiting and packs their inputs into as few decode calls as the batch allows
//! (many short inputs in one call is where the speed comes from). An encoder sees a whole input
//! at once, so an input must fit the model's trained context and one batch: a longer one is
//! refused before it reaches llama.cpp, which would abort the process on it.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::oneshot;

use crate::{LoadError, backend, default_decode_threads, file_stem};

/// How the embedder runs.
#[derive(Debug, Clone)]
pub struct EmbedderConfig {
    pub model_path: PathBuf,
    pub threads: NonZeroU32,
    /// Most tokens in one decode call (every input's tokens, all sequences together); also
    /// the longest input, whatever the model's trained context.
    pub batch_tokens: u32,
    /// Most inputs in one decode call.
    pub max_sequences: u32,
    /// Requests waiting for the thread; beyond this, [`EmbedError::AtCapacity`].
    pub queue_depth: usize,
}

impl EmbedderConfig {
    pub fn new(model_path: PathBuf) -> Self {
        Self {
            model_path,
            threads: default_decode_threads(),
            batch_tokens: 2048,
            max_sequences: 64,
            queue_depth: 64,
        }
    }
}

/// What the embedder learned about its model.
#[derive(Debug, Clone)]
pub struct EmbedderInfo {
    pub name: String,
    /// Length of every vector.
    pub dimensions: u32,
    /// Most tokens in one input (special tokens included).
    pub max_input_tokens: u32,
    pub parameters: u64,
    pub size_bytes: u64,
    /// Token ids an input may hold (`0..vocabulary`).
    pub vocabulary: u32,
}

/// One input: text, or token ids of the model's own vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedInput {
    Text(String),
    Tokens(Vec<u32>),
}

/// The vectors of a request's inputs, in order, and the tokens they took.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedError {
    #[error("input {index} is {tokens} tokens; this model takes at most {limit} per input")]
    TooLong {
        index: usize,
        tokens: usize,
        limit: u32,
    },
    #[error("input {index} is empty")]
    Empty { index: usize },
    #[error(
        "input {index} holds token id {token}, which is not in this model's vocabulary of {vocabulary}"
    )]
    UnknownToken {
        index: usize,
        token: u32,
        vocabulary: u32,
    },
    #[error("the embedding engine is at capacity ({waiting} requests waiting)")]
    AtCapacity { waiting: usize },
    #[error("the embedding engine failed: {0}")]
    Failed(String),
    #[error("the embedding engine has stopped")]
    Stopped,
}

/// A request's inputs as the model's tokens, checked against its bounds.
#[derive(Debug, Clone)]
pub struct Tokenized(Vec<Vec<LlamaToken>>);

impl Tokenized {
    /// Tokens in all, special tokens included.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|input| input.len() as u64).sum()
    }
}

struct Job {
    inputs: Vec<Vec<LlamaToken>>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>,
}

/// A loaded embedding model and its thread. Cheap to share behind an `Arc`.
pub struct Embedder {
    model: Arc<LlamaModel>,
    info: EmbedderInfo,
    config: EmbedderConfig,
    jobs: SyncSender<Job>,
    waiting: Arc<AtomicUsize>,
}

impl Embedder {
    /// Loads the model and starts its thread. Blocking: call it from a blocking context.
    pub fn load(config: EmbedderConfig) -> Result<Self, LoadError> {
        if !config.model_path.exists() {
            return Err(LoadError::Missing(config.model_path.clone()));
        }
        let backend = backend();
        let model =
            LlamaModel::load_from_file(backend, &config.model_path, &LlamaModelParams::default())
                .map_err(|error| LoadError::Model {
                path: config.model_path.clone(),
                reason: error.to_string(),
            })?;
        let model = Arc::new(model);
        let batch_tokens = config.batch_tokens.max(16);
        let info = EmbedderInfo {
            name: model
                .meta_val_str("general.name")
                .ok()
                .filter(|name| !name.trim().is_empty())
                .unwrap_or_else(|| file_stem(&config.model_path)),
            dimensions: u32::try_from(model.n_embd()).unwrap_or(0),
            max_input_tokens: model.n_ctx_train().clamp(1, batch_tokens),
            parameters: model.n_params(),
            size_bytes: model.size(),
            vocabulary: u32::try_from(model.n_vocab()).unwrap_or(0),
        };
        let max_sequences = config.max_sequences.clamp(1, 256);
        let params = LlamaContextParams::default()
            .with_embeddings(true)
            .with_pooling_type(LlamaPoolingType::Mean)
            .with_n_ctx(NonZeroU32::new(batch_tokens))
            .with_n_seq_max(max_sequences)
            // An encoder sees a whole input at once: every call fits one micro-batch.
            .with_n_batch(batch_tokens)
            .with_n_ubatch(batch_tokens)
            .with_n_threads(i32::try_from(config.threads.get()).unwrap_or(1))
            .with_n_threads_batch(i32::try_from(config.threads.get()).unwrap_or(1));
        let (jobs, receiver) = std::sync::mpsc::sync_channel::<Job>(config.queue_depth.max(1));
        let (ready, ready_receiver) = std::sync::mpsc::channel::<Result<(), LoadError>>();
        let thread_model = Arc::clone(&model);
        let dimensions = usize::try_from(info.dimensions).unwrap_or(0);
        let waiting = Arc::new(AtomicUsize::new(0));
        let thread_waiting = Arc::clone(&waiting);
        std::thread::Builder::new()
            .name("gondola-embed".into())
            .spawn(move || {
                let context = match thread_model.new_context(backend, params) {
                    Ok(context) => context,
                    Err(error) => {
                        let _ = ready.send(Err(LoadError::Context(error.to_string())));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                run(
                    context,
                    &receiver,
                    &Packing {
                        batch_tokens: usize::try_from(batch_tokens).unwrap_or(2048),
                        max_sequences: usize::try_from(max_sequences).unwrap_or(1),
                        dimensions,
                    },
                    &thread_waiting,
                );
            })
            .map_err(|error| LoadError::Thread(error.to_string()))?;
        ready_receiver
            .recv()
            .map_err(|error| LoadError::Thread(error.to_string()))??;
        tracing::info!(
            model = %info.name,
            dimensions = info.dimensions,
            max_input_tokens = info.max_input_tokens,
            threads = config.threads.get(),
            "embedding engine loaded"
        );
        Ok(Self {
            model,
            info,
            config,
            jobs,
            waiting,
        })
    }

    pub fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    pub fn config(&self) -> &EmbedderConfig {
        &self.config
    }

    /// Requests accepted and not yet answered.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The tokens each input is run as (the model's special tokens around it), checked
    /// against the model's bounds. CPU-bound in the inputs' size: call it off the async
    /// runtime for large requests.
    pub fn tokenize(&self, inputs: &[EmbedInput]) -> Result<Tokenized, EmbedError> {
        self.tokens_of(inputs).map(Tokenized)
    }

    fn tokens_of(&self, inputs: &[EmbedInput]) -> Result<Vec<Vec<LlamaToken>>, EmbedError> {
        let vocab = self.model.vocab();
        let limit = self.info.max_input_tokens;
        let too_long = |index: usize, tokens: usize| EmbedError::TooLong {
            index,
            tokens,
            limit,
        };
        inputs
            .iter()
            .enumerate()
            .map(|(index, input)| {
                let tokens = match input {
                    EmbedInput::Text(text) => {
                        // A text of more bytes than can be tokens is refused before it is
                        // tokenized (a WordPiece token is at least one byte, bar the two
                        // special tokens).
                        if text.len() > 8 * limit as usize {
                            return Err(too_long(index, text.len()));
                        }
                        vocab.tokenize(text.as_bytes(), true, false)
                    }
                    EmbedInput::Tokens(ids) => {
                        if ids.len() > limit as usize {
                            return Err(too_long(index, ids.len()));
                        }
                        if let Some(token) = ids.iter().find(|id| **id >= self.info.vocabulary) {
                            return Err(EmbedError::UnknownToken {
                                index,
                                token: *token,
                                vocabulary: self.info.vocabulary,
                            });
                        }
                        let mut tokens = Vec::with_capacity(ids.len() + 2);
                        let first = vocab.bos();
                        if first.0 >= 0 {
                            tokens.push(first);
                        }
                        tokens.extend(
                            ids.iter()
                                .map(|id| LlamaToken(i32::try_from(*id).unwrap_or(0))),
                        );
                        let last = vocab.sep();
                        if last.0 >= 0 {
                            tokens.push(last);
                        }
                        tokens
                    }
                };
                let content = tokens.len().saturating_sub(2);
                if content == 0 {
                    return Err(EmbedError::Empty { index });
                }
                if tokens.len() > limit as usize {
                    return Err(too_long(index, tokens.len()));
                }
                Ok(tokens)
            })
            .collect()
    }

    /// The vectors of `inputs`: [`Self::tokenize`] on the caller's thread, then
    /// [`Self::embed_tokenized`].
    pub async fn embed(&self, inputs: &[EmbedInput]) -> Result<Embeddings, EmbedError> {
        let tokens = self.tokenize(inputs)?;
        self.embed_tokenized(tokens).await
    }

    /// The vectors of inputs tokenized already, once the engine thread has run them.
    pub async fn embed_tokenized(&self, tokens: Tokenized) -> Result<Embeddings, EmbedError> {
        let tokens = tokens.0;
        let prompt_tokens = tokens.iter().map(|input| input.len() as u64).sum();
        let previous = self.waiting.fetch_add(1, Ordering::AcqRel);
        if previous >= self.config.queue_depth {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(EmbedError::AtCapacity { waiting: previous });
        }
        let (reply, answer) = oneshot::channel();
        if let Err(error) = self.jobs.try_send(Job {
            inputs: tokens,
            reply,
        }) {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(match error {
                std::sync::mpsc::TrySendError::Full(_) => {
                    EmbedError::AtCapacity { waiting: previous }
                }
                std::sync::mpsc::TrySendError::Disconnected(_) => EmbedError::Stopped,
            });
        }
        let vectors = answer.await.map_err(|_| EmbedError::Stopped)??;
        Ok(Embeddings {
            vectors,
            prompt_tokens,
        })
    }
}

struct Packing {
    batch_tokens: usize,
    max_sequences: usize,
    dimensions: usize,
}

/// The engine thread: takes every waiting request, runs their inputs in as few decode calls
/// as fit, and answers each.
fn run(
    mut context: LlamaContext<'_>,
    jobs: &Receiver<Job>,
    packing: &Packing,
    waiting: &AtomicUsize,
) {
    let mut batch = LlamaBatch::new(
        packing.batch_tokens,
        i32::try_from(packing.max_sequences).unwrap_or(1),
    );
    while let Ok(first) = jobs.recv() {
        let mut round = vec![first];
        while let Ok(job) = jobs.try_recv() {
            round.push(job);
        }
        // Every input of the round, as (job, input) in order.
        let mut results: Vec<Result<Vec<Vec<f32>>, EmbedError>> = round
            .iter()
            .map(|job| Ok(Vec::with_capacity(job.inputs.len())))
            .collect();
        let order: Vec<(usize, usize)> = round
            .iter()
            .enumerate()
            .flat_map(|(job, request)| (0..request.inputs.len()).map(move |input| (job, input)))
            .collect();
        let mut next = 0;
        while next < order.len() {
            batch.clear();
            let mut packed: Vec<usize> = Vec::new();
            let mut tokens = 0usize;
            while next < order.len() && packed.len() < packing.max_sequences {
                let (job, input) = order[next];
                let length = round[job].inputs[input].len();
                if !packed.is_empty() && tokens + length > packing.batch_tokens {
                    break;
                }
                packed.push(next);
                tokens += length;
                next += 1;
            }
            let vectors = decode(&mut context, &mut batch, &round, &order, &packed, packing);
            match vectors {
                Ok(vectors) => {
                    for (slot, vector) in packed.iter().zip(vectors) {
                        let (job, _) = order[*slot];
                        if let Ok(done) = &mut results[job] {
                            done.push(vector);
                        }
                    }
                }
                Err(error) => {
                    for slot in &packed {
                        let (job, _) = order[*slot];
                        results[job] = Err(error.clone());
                    }
                }
            }
            context.clear_kv_cache();
        }
        for (job, result) in round.into_iter().zip(results) {
            waiting.fetch_sub(1, Ordering::AcqRel);
            let _ = job.reply.send(result);
        }
    }
}

/// One decode call over the inputs `packed` (positions in `order`), each its own sequence:
/// their pooled, normalized vectors.
fn decode(
    context: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch<'_>,
    round: &[Job],
    order: &[(usize, usize)],
    packed: &[usize],
    packing: &Packing,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    for (sequence, slot) in packed.iter().enumerate() {
        let (job, input) = order[*slot];
        let sequence = i32::try_from(sequence).unwrap_or(0);
        for (position, token) in round[job].inputs[input].iter().enumerate() {
            batch
                .add(
                    *token,
                    i32::try_from(position).unwrap_or(0),
                    &[sequence],
                    true,
                )
                .map_err(|error| EmbedError::Failed(error.to_string()))?;
        }
    }
    context
        .decode(batch)
        .map_err(|error| EmbedError::Failed(error.to_string()))?;
    (0..packed.len())
        .map(|sequence| {
            let pooled = context
                .embeddings_seq_ith(i32::try_from(sequence).unwrap_or(0))
                .map_err(|error| EmbedError::Failed(error.to_string()))?;
            if pooled.len() != packing.dimensions {
                return Err(EmbedError::Failed(format!(
                    "a vector of {} numbers, not {}",
                    pooled.len(),
                    packing.dimensions
                )));
            }
            Ok(normalized(pooled))
        })
        .collect()
}

/// `vector` scaled to unit length (a zero vector stays zero).
fn normalized(vector: &[f32]) -> Vec<f32> {
    let norm = vector
        .iter()
        .map(|value| f64::from(*value) * f64::from(*value))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 {
        return vector.to_vec();
    }
    vector
        .iter()
        .map(|value| (f64::from(*value) / norm) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_scaled_to_unit_length() {
        let unit = normalized(&[3.0, 4.0]);
        assert!((unit[0] - 0.6).abs() < 1e-6 && (unit[1] - 0.8).abs() < 1e-6);
        assert_eq!(normalized(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
