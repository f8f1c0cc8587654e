//! The embedded inference engine: a GGUF model run by llama.cpp (through `llama-cpp-2`) with
//! continuous batching.
//!
//! This crate owns everything that touches llama.cpp: loading, chat templates, tokenization,
//! sampling and the scheduler thread. It knows nothing of HTTP, gateways or accounts, and it
//! never logs request content: only counts, sizes and timings.
//!
//! One scheduler thread owns the llama.cpp context (contexts are not thread-safe) with several
//! sequences; requests join the running batch as they arrive and leave it as they finish. A
//! request is a [`GenerationRequest`]; its output is a stream of [`Event`]s on a channel, and
//! dropping the receiving end cancels the generation at the next step.

pub mod embed;
mod quantize;
mod scheduler;
mod template;
mod text;
mod tools;

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

pub use embed::{
    EmbedError, EmbedInput, Embedder, EmbedderConfig, EmbedderInfo, Embeddings, Tokenized,
};
pub use quantize::{QuantizeError, WeightFormat, requantize};
pub use template::{ChatMessage, TemplateError, ToolCallMessage};
pub use tools::{ParsedReply, ReplyParser, ToolFormat, ToolMode, ToolSpec, ToolUse};

/// How the engine runs. Every field is a bound or a resource decision; see each for its reason.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub model_path: PathBuf,
    /// Threads for a step of one token (one sequence decoding). ggml threads spin at barriers;
    /// see [`default_decode_threads`] for what that means on small machines.
    pub decode_threads: NonZeroU32,
    /// Threads for a step of more than one token: prompts, and several sequences decoding
    /// together.
    pub prompt_threads: NonZeroU32,
    /// Sequences decoded together in one batch: the concurrency of the engine.
    pub max_sequences: u32,
    /// Context window of each sequence (prompt plus generated tokens).
    pub context_tokens_per_sequence: u32,
    /// Most tokens handed to llama.cpp in one decode call; long prompts are fed in chunks of this
    /// size so that running sequences keep producing tokens between chunks.
    pub batch_tokens: u32,
    /// Requests that may wait for a free sequence; beyond this, [`SubmitError::AtCapacity`].
    pub queue_depth: usize,
    /// Host memory for prompts kept for reuse beyond those left in the sequences (the KV cache
    /// of a finished request's prompt and reply, saved when its sequence is needed for another
    /// prompt); the least recently used go first. 0 keeps only what the sequences hold.
    pub prompt_cache_bytes: usize,
    /// How the KV cache holds keys and values.
    pub kv_format: KvFormat,
}

/// How the KV cache holds each key and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvFormat {
    /// 16-bit floats: llama.cpp's default.
    F16,
    /// 8-bit blocks with a scale each (near-lossless): half the memory of `F16`, and the
    /// faster attention for decoding on CPUs with this engine's llama.cpp (on two cores:
    /// batched decode 4–15% faster, a cached conversation turn 1.37× faster), but prompts
    /// computed from nothing lose llama.cpp's tiled attention kernel (1,500 tokens 1.47×
    /// slower). The default: conversations resend their history, which the prompt cache
    /// computes once. Needs flash attention; a model whose attention cannot use it gets `F16`.
    Q8_0,
}

impl KvFormat {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "f16" => Some(Self::F16),
            "q8_0" => Some(Self::Q8_0),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
        }
    }
}

/// One thread on machines with two cores or fewer, else one core is left for the network and
/// the rest, up to eight, compute.
///
/// Why one on two cores (`gondola-bench serving`, `bench/README.md`): with both cores to
/// itself, two threads decode one sequence 1.9× as fast and eight together 1.8× as fast; but
/// ggml's threads spin at every barrier, and with one busy process beside them (a test suite,
/// another model of `gondola serve`, anything) two threads fall to 0.46–0.77× of what one
/// thread does. One thread cannot be starved that way. A machine that runs nothing else gets
/// the two threads with `threads = 2`.
pub fn default_decode_threads() -> NonZeroU32 {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let threads = if cores <= 2 { 1 } else { (cores - 1).min(8) };
    NonZeroU32::new(u32::try_from(threads).unwrap_or(1)).unwrap_or(NonZeroU32::MIN)
}

impl EngineConfig {
    /// Defaults sized for a laptop: four concurrent sequences of 2,048 tokens each.
    pub fn new(model_path: PathBuf) -> Self {
        Self {
            model_path,
            decode_threads: default_decode_threads(),
            prompt_threads: default_decode_threads(),
            max_sequences: 4,
            context_tokens_per_sequence: 2048,
            batch_tokens: 512,
            queue_depth: 64,
            prompt_cache_bytes: 256 * 1024 * 1024,
            kv_format: KvFormat::Q8_0,
        }
    }
}

/// What the engine learned about its model when loading it.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// `general.name` from the GGUF, or the file stem.
    pub name: String,
    /// Context window each request gets (the smaller of the configured and the trained one).
    pub context_tokens: u32,
    pub trained_context_tokens: u32,
    pub parameters: u64,
    pub size_bytes: u64,
    /// Quantization as named in the file name (e.g. `Q4_1`), or `unknown`.
    pub quantization: String,
    /// Whether the chat template mentions reasoning controls (`enable_thinking`).
    pub supports_reasoning: bool,
    /// How tools reach this model and its calls come back (every model can call tools).
    pub tool_format: ToolFormat,
    /// How the KV cache holds keys and values: the configured format, or `F16` where the
    /// model cannot use it.
    pub kv_format: KvFormat,
}

/// Sampling controls. Temperature 0 means greedy decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: i32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// Same seed and same request give the same output; `None` picks a random one.
    pub seed: Option<u32>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_p: 0.9,
            top_k: 40,
            min_p: 0.05,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: None,
        }
    }
}

/// The log-probability of one generated token under the model (its raw distribution, before
/// sampling settings), and of the likeliest tokens at that step.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The token's bytes (a piece of a character, for some tokens).
    pub bytes: Vec<u8>,
    pub logprob: f32,
    /// The likeliest tokens at this step, likeliest first.
    pub top: Vec<(Vec<u8>, f32)>,
}

/// Most alternatives a request may ask for per token (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// Constrains the output to a grammar.
#[derive(Debug, Clone)]
pub enum OutputFormat {
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching this JSON Schema (the schema's JSON text).
    JsonSchema(String),
}

/// One chat completion to run.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    pub messages: Vec<ChatMessage>,
    pub sampling: Sampling,
    pub max_tokens: u32,
    pub stop: Vec<String>,
    /// Token ids that end the generation when sampled (they are not emitted).
    pub stop_tokens: Vec<u32>,
    pub format: OutputFormat,
    /// Passed to templates that support it (`enable_thinking`).
    pub enable_thinking: bool,
    /// The functions the model may call; `None` when it must answer in text. Read the reply
    /// with a [`ReplyParser`] of the model's [`ModelInfo::tool_format`].
    pub tools: Option<ToolUse>,
    /// Emit an [`Event::Logprob`] per token with this many alternatives (at most
    /// [`MAX_TOP_LOGPROBS`]); `None` emits none.
    pub logprobs: Option<u32>,
    /// The prompt cache this request may read and leave its prompt in: a request reuses the
    /// longest prefix of its prompt that an earlier request of the same namespace left, and
    /// never sees another namespace's. `None`: it neither reuses nor leaves anything.
    pub cache_namespace: Option<[u8; 32]>,
}

/// What a generation emits, in order: any number of `Text` (and, when asked for, one
/// `Logprob` per generated token, before its text), then exactly one `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Text(String),
    Logprob(TokenLogprob),
    Done(Completion),
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub finish_reason: FinishReason,
    pub prompt_tokens: u32,
    /// Prompt tokens that came from the prompt cache rather than being computed.
    pub cached_tokens: u32,
    pub completion_tokens: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End of generation token or a stop string.
    Stop,
    /// `max_tokens` or the context window reached.
    Length,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("model file {0} does not exist")]
    Missing(PathBuf),
    #[error("llama.cpp could not load {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("llama.cpp could not create a context: {0}")]
    Context(String),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("the engine thread could not start: {0}")]
    Thread(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the engine is at capacity ({in_flight} requests running or queued)")]
    AtCapacity { in_flight: usize },
    #[error("the prompt is {prompt_tokens} tokens; this model accepts at most {limit} per request")]
    PromptTooLong { prompt_tokens: usize, limit: u32 },
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("the JSON schema cannot be turned into a grammar: {0}")]
    Schema(String),
    #[error("{0}")]
    Tools(String),
    #[error("the engine has stopped")]
    Stopped,
}

/// Live load figures, for heartbeats and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    /// Requests holding a sequence right now.
    pub running: usize,
    /// Requests accepted and waiting for a sequence.
    pub queued: usize,
    /// Tokens generated since the engine started (a rate comes from two readings).
    pub generated_tokens_total: u64,
}

/// Counters shared between the scheduler thread and the engine handle.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicUsize,
    pub(crate) running: AtomicUsize,
    pub(crate) generated_tokens_total: AtomicU64,
}

/// A loaded model and its scheduler thread. Cheap to share behind an `Arc`.
pub struct Engine {
    model: Arc<LlamaModel>,
    template: template::ChatTemplate,
    info: ModelInfo,
    config: EngineConfig,
    jobs: std::sync::mpsc::SyncSender<scheduler::Job>,
    counters: Arc<Counters>,
}

/// The process-wide llama.cpp backend: it may be initialised only once per process.
pub(crate) fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        let mut backend = match LlamaBackend::init() {
            Ok(backend) => backend,
            // Only this function initialises the backend, under the OnceLock.
            Err(error) => panic!("llama.cpp backend initialisation failed: {error}"),
        };
        // llama.cpp logs to stderr by default; its lines can include prompt fragments in debug
        // builds, and content must never reach logs.
        backend.void_logs();
        backend
    })
}

impl Engine {
    /// Loads the model and starts the scheduler thread. Blocking: call it from a blocking context.
    pub fn load(config: EngineConfig) -> Result<Self, LoadError> {
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
        let template_source = model.meta_val_str("tokenizer.chat_template").ok();
        let supports_reasoning = template_source
            .as_deref()
            .is_some_and(|source| source.contains("enable_thinking"));
        let tool_format = tools::ToolFormat::of_template(template_source.as_deref());
        let vocab = model.vocab();
        let bos_token = piece_text(&model, vocab.bos());
        let eos_token = piece_text(&model, vocab.eos());
        let template = template::ChatTemplate::new(template_source, bos_token, eos_token)?;
        let trained_context_tokens = model.n_ctx_train();
        let info = ModelInfo {
            name: model
                .meta_val_str("general.name")
                .ok()
                .filter(|name| !name.trim().is_empty())
                .unwrap_or_else(|| file_stem(&config.model_path)),
            context_tokens: config
                .context_tokens_per_sequence
                .min(trained_context_tokens.max(1)),
            trained_context_tokens,
            parameters: model.n_params(),
            size_bytes: model.size(),
            quantization: quantization_from_file_name(&config.model_path),
            supports_reasoning,
            tool_format,
            kv_format: config.kv_format,
        };
        let counters = Arc::new(Counters::default());
        let (jobs, kv_format) = scheduler::start(
            Arc::clone(&model),
            backend,
            &config,
            &info,
            Arc::clone(&counters),
        )?;
        let info = ModelInfo { kv_format, ..info };
        tracing::info!(
            model = %info.name,
            parameters = info.parameters,
            context_tokens = info.context_tokens,
            max_sequences = config.max_sequences,
            decode_threads = config.decode_threads.get(),
            prompt_threads = config.prompt_threads.get(),
            kv_format = info.kv_format.name(),
            "engine loaded"
        );
        Ok(Self {
            model,
            template,
            info,
            config,
            jobs,
            counters,
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn load_figures(&self) -> Load {
        let accepted = self.counters.accepted.load(Ordering::Relaxed);
        let running = self.counters.running.load(Ordering::Relaxed);
        Load {
            running,
            queued: accepted.saturating_sub(running),
            generated_tokens_total: self.counters.generated_tokens_total.load(Ordering::Relaxed),
        }
    }

    /// Renders and tokenizes the request, then queues it. Returns the event stream; dropping it
    /// cancels the generation.
    pub fn submit(
        &self,
        request: GenerationRequest,
    ) -> Result<mpsc::UnboundedReceiver<Event>, SubmitError> {
        let tool_format = self.info.tool_format;
        let (messages, template_tools) = match &request.tools {
            None => (tools::generic_history(tool_format, request.messages), None),
            Some(tools) => (
                tools.prepare(tool_format, &request.messages),
                tools.template_tools(tool_format),
            ),
        };
        let prompt = self.template.render(
            &messages,
            request.enable_thinking,
            template_tools.as_deref(),
        )?;
        let prompt_tokens = self.tokenize_prompt(&prompt);
        let limit = self.info.context_tokens;
        // At least one token must fit after the prompt.
        if prompt_tokens.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
            return Err(SubmitError::PromptTooLong {
                prompt_tokens: prompt_tokens.len(),
                limit,
            });
        }
        let grammar = match (&request.tools, &request.format) {
            (Some(_), OutputFormat::JsonObject | OutputFormat::JsonSchema(_)) => {
                return Err(SubmitError::Tools(
                    "response_format cannot be combined with tools on this model".into(),
                ));
            }
            (Some(tools), OutputFormat::Text) => Some(
                tools
                    .grammar(tool_format, |schema| {
                        json_grammar(schema).map_err(|error| error.to_string())
                    })
                    .map(|grammar| scheduler::Grammar {
                        text: grammar.grammar,
                        triggers: grammar.triggers,
                    })
                    .map_err(SubmitError::Tools)?,
            ),
            (None, OutputFormat::Text) => None,
            (None, OutputFormat::JsonObject) => Some(scheduler::Grammar::whole(json_grammar(
                r#"{"type":"object"}"#,
            )?)),
            (None, OutputFormat::JsonSchema(schema)) => {
                Some(scheduler::Grammar::whole(json_grammar(schema)?))
            }
        };
        // Built here rather than on the engine thread: a grammar llama.cpp refuses is the
        // request's fault, answered before the request is accepted.
        let sampler = scheduler::build_sampler(&self.model, &request.sampling, grammar.as_ref())
            .map_err(|error| {
                let error = format!(
                    "{error}; llama.cpp cannot build this grammar (large repetition bounds such as minItems, maxItems, minLength or maxLength are the usual cause)"
                );
                match request.tools {
                    Some(_) => SubmitError::Tools(format!("the functions' parameter schemas: {error}")),
                    None => SubmitError::Schema(error),
                }
            })?;
        let capacity = usize::try_from(self.config.max_sequences)
            .unwrap_or(usize::MAX)
            .saturating_add(self.config.queue_depth);
        let previous = self.counters.accepted.fetch_add(1, Ordering::AcqRel);
        if previous >= capacity {
            self.counters.accepted.fetch_sub(1, Ordering::AcqRel);
            return Err(SubmitError::AtCapacity {
                in_flight: previous,
            });
        }
        // Unbounded in type, bounded in fact: a generation sends at most `max_tokens` text events
        // plus one final event, and the scheduler must never block on a slow reader.
        let (events, receiver) = mpsc::unbounded_channel();
        let job = scheduler::Job {
            prompt_tokens,
            logprobs: request
                .logprobs
                .map(|top| usize::try_from(top.min(MAX_TOP_LOGPROBS)).unwrap_or(0)),
            sampler,
            max_tokens: request.max_tokens,
            stop: request.stop,
            stop_tokens: request.stop_tokens,
            cache_namespace: request.cache_namespace,
            events,
        };
        if self.jobs.try_send(job).is_err() {
            self.counters.accepted.fetch_sub(1, Ordering::AcqRel);
            return Err(SubmitError::Stopped);
        }
        Ok(receiver)
    }

    /// The token ids `text` encodes to, with the model's own tokenizer (no special tokens).
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .into_iter()
            .filter_map(|token| u32::try_from(token.0).ok())
            .collect()
    }

    /// Number of tokens `text` encodes to, with the same tokenizer the model uses.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .len()
    }

    fn tokenize_prompt(&self, prompt: &str) -> Vec<LlamaToken> {
        let vocab = self.model.vocab();
        let bos = piece_text(&self.model, vocab.bos());
        // Templates that print the BOS token themselves must not get a second one.
        let add_bos = vocab.should_add_bos() && !(bos.is_empty() || prompt.starts_with(&bos));
        vocab.tokenize(prompt.as_bytes(), add_bos, true)
    }
}

fn json_grammar(schema: &str) -> Result<String, SubmitError> {
    llama_cpp_2::json_schema_to_grammar(schema)
        .map_err(|error| SubmitError::Schema(error.to_string()))
}

fn piece_text(model: &LlamaModel, token: LlamaToken) -> String {
    if token.0 < 0 {
        return String::new();
    }
    String::from_utf8_lossy(&model.vocab().token_to_piece(token, true, None)).into_owned()
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// GGUF files name their quantization in the file name by convention (`…Q4_1.gguf`,
/// `…-q8_0.gguf`, `…-F16.gguf`).
fn quantization_from_file_name(path: &Path) -> String {
    let stem = file_stem(path).to_ascii_uppercase();
    stem.rsplit(['.', '-'])
        .find(|part| is_quantization(part))
        .map(str::to_owned)
        .unwrap_or_else(|| "unknown".into())
}

fn is_quantization(part: &str) -> bool {
    let digits_after = |prefix: &str| {
        part.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    };
    matches!(part, "F16" | "F32" | "BF16") || digits_after("Q") || digits_after("IQ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantization_is_read_from_the_file_name() {
        assert_eq!(
            quantization_from_file_name(Path::new("/m/SmolLM2-135M-Instruct.Q4_1.gguf")),
            "Q4_1"
        );
        assert_eq!(
            quantization_from_file_name(Path::new("qwen2.5-0.5b-instruct-q8_0.gguf")),
            "Q8_0"
        );
        assert_eq!(
            quantization_from_file_name(Path::new("model-f16.gguf")),
            "F16"
        );
        assert_eq!(
            quantization_from_file_name(Path::new("model.gguf")),
            "unknown"
        );
    }
}
