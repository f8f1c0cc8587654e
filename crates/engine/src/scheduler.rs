//! The scheduler thread: owns the llama.cpp context and runs continuous batching.
//!
//! Each step builds one batch from every running sequence: one token for each sequence that is
//! generating, then chunks of waiting prompts with whatever room is left. One `decode` serves
//! them all; then each sequence samples its next token. Requests join between steps and leave
//! when they finish or their receiver is dropped. Nothing here blocks on a reader: events go out
//! on unbounded channels whose length is bounded by `max_tokens`.
//!
//! Prompt cache: a finished request of a cache namespace leaves its prompt and reply in its
//! sequence's KV cache. A new request takes the free sequence holding the longest prefix of its
//! prompt in its own namespace and computes only the rest. When a sequence is taken for a prompt
//! that shares less with what it holds, what it held is first saved to host memory (bounded,
//! least recently used out), from where a later request of that namespace restores it into any
//! sequence. Requests without a namespace neither read nor leave anything.

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::session::{LlamaStateSeqFlags, SeqState};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;

use crate::text::{StopMatcher, StopScan, Utf8Decoder};
use crate::{
    Completion, Counters, EngineConfig, Event, FinishReason, KvFormat, LoadError, ModelInfo,
    Sampling, TokenLogprob,
};

/// llama.cpp's "pick a random seed" value.
const RANDOM_SEED: u32 = u32::MAX;
/// How far back repetition penalties look, in tokens (llama.cpp's default).
const PENALTY_LAST_TOKENS: i32 = 64;
/// Prompts shorter than this are not saved to host memory: computing them again is about as
/// quick as copying them back.
const MIN_SAVED_TOKENS: usize = 32;

/// A GBNF grammar the output must follow.
pub(crate) struct Grammar {
    pub(crate) text: String,
    /// Text that switches the grammar on; empty when it holds from the first token.
    pub(crate) triggers: Vec<String>,
}

impl Grammar {
    pub(crate) fn whole(text: String) -> Self {
        Self {
            text,
            triggers: Vec::new(),
        }
    }
}

/// A request, rendered and tokenized, waiting for a sequence.
pub(crate) struct Job {
    pub(crate) prompt_tokens: Vec<LlamaToken>,
    /// Built when the request was submitted, so that a grammar that cannot be built is the
    /// client's error, found before the request is accepted.
    pub(crate) sampler: LlamaSampler,
    pub(crate) max_tokens: u32,
    pub(crate) stop: Vec<String>,
    /// Token ids that end the generation.
    pub(crate) stop_tokens: Vec<u32>,
    /// Alternatives per token when log-probabilities are wanted.
    pub(crate) logprobs: Option<usize>,
    /// The prompt cache it reads and leaves its tokens in; `None` for neither.
    pub(crate) cache_namespace: Option<[u8; 32]>,
    pub(crate) events: UnboundedSender<Event>,
}

/// What a free sequence's KV cache still holds of the request that last had it.
struct Resident {
    namespace: [u8; 32],
    tokens: Vec<LlamaToken>,
    /// When it was left (the host cache's clock): the oldest is given away first.
    left_at: u64,
}

/// A sequence's KV cache saved in host memory.
struct Saved {
    namespace: [u8; 32],
    tokens: Vec<LlamaToken>,
    state: SeqState,
    used_at: u64,
}

/// Prompts saved to host memory, at most `budget` bytes, the least recently used out first.
struct HostCache {
    entries: Vec<Saved>,
    bytes: usize,
    budget: usize,
    clock: u64,
}

impl HostCache {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The entry of `namespace` sharing the longest prefix with `prompt`, and that length.
    fn best(&self, namespace: &[u8; 32], prompt: &[LlamaToken]) -> Option<(usize, usize)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry.namespace == *namespace)
            .map(|(index, entry)| (index, common_prefix(&entry.tokens, prompt)))
            .max_by_key(|(_, shared)| *shared)
    }

    fn insert(&mut self, namespace: [u8; 32], tokens: Vec<LlamaToken>, state: SeqState) {
        let size = state.byte_len();
        if size > self.budget {
            return;
        }
        // What the new entry extends is superseded by it.
        self.entries.retain(|entry| {
            let superseded = entry.namespace == namespace && tokens.starts_with(&entry.tokens);
            if superseded {
                self.bytes -= entry.state.byte_len();
            }
            !superseded
        });
        while self.bytes + size > self.budget {
            let Some((oldest, _)) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, entry)| entry.used_at)
            else {
                break;
            };
            let evicted = self.entries.swap_remove(oldest);
            self.bytes -= evicted.state.byte_len();
        }
        let used_at = self.tick();
        self.bytes += size;
        self.entries.push(Saved {
            namespace,
            tokens,
            state,
            used_at,
        });
    }
}

/// How many tokens `a` and `b` share from their start.
fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A request holding a sequence of the context.
struct Slot {
    job: Job,
    /// Prompt tokens already in the KV cache.
    prompt_fed: usize,
    /// Tokens of this sequence in the KV cache (the position of the next one).
    n_past: u32,
    /// The sampled token to feed in the next step, once the prompt is in.
    next_token: Option<LlamaToken>,
    /// Generated tokens fed back (in the KV cache after the prompt).
    generated: Vec<LlamaToken>,
    /// Prompt tokens the prompt cache held.
    cached_tokens: u32,
    /// Index of this sequence's logits in the batch just decoded.
    logits_index: Option<i32>,
    /// Whether this step's batch holds tokens of this sequence.
    in_batch: bool,
    completion_tokens: u32,
    utf8: Utf8Decoder,
    stops: StopMatcher,
    started: Instant,
}

struct Limits {
    context_tokens: u32,
    batch_tokens: usize,
    prompt_cache_bytes: usize,
}

pub(crate) fn start(
    model: Arc<LlamaModel>,
    backend: &'static LlamaBackend,
    config: &EngineConfig,
    info: &ModelInfo,
    counters: Arc<Counters>,
) -> Result<(SyncSender<Job>, KvFormat), LoadError> {
    let capacity = usize::try_from(config.max_sequences)
        .unwrap_or(usize::MAX)
        .saturating_add(config.queue_depth);
    let (jobs, receiver) = std::sync::mpsc::sync_channel::<Job>(capacity);
    let (ready, ready_receiver) = std::sync::mpsc::channel::<Result<KvFormat, LoadError>>();
    let max_sequences = config.max_sequences.max(1);
    let limits = Limits {
        context_tokens: info.context_tokens,
        batch_tokens: usize::try_from(config.batch_tokens.max(1)).unwrap_or(512),
        prompt_cache_bytes: config.prompt_cache_bytes,
    };
    let total_context = NonZeroU32::new(info.context_tokens.saturating_mul(max_sequences));
    let batch_tokens = config.batch_tokens.max(1);
    let decode_threads = i32::try_from(config.decode_threads.get()).unwrap_or(1);
    let prompt_threads = i32::try_from(config.prompt_threads.get()).unwrap_or(1);
    let params = move |kv_format: KvFormat| {
        let kv_type = match kv_format {
            KvFormat::F16 => KvCacheType::F16,
            KvFormat::Q8_0 => KvCacheType::Q8_0,
        };
        LlamaContextParams::default()
            .with_n_ctx(total_context)
            .with_n_seq_max(max_sequences)
            .with_n_batch(batch_tokens)
            .with_n_ubatch(batch_tokens)
            .with_n_threads(decode_threads)
            .with_n_threads_batch(prompt_threads)
            // Each sequence gets its own slice of the cache, so one long request cannot starve
            // the others of KV slots mid-generation.
            .with_kv_unified(false)
            .with_type_k(kv_type)
            .with_type_v(kv_type)
    };
    let kv_format = config.kv_format;
    std::thread::Builder::new()
        .name("gondola-engine".into())
        .spawn(move || {
            // A quantized cache needs flash attention; a model that cannot use it gets F16.
            let (context, used) = match model.new_context(backend, params(kv_format)) {
                Err(error) if kv_format != KvFormat::F16 => {
                    tracing::warn!(
                        %error,
                        kv_format = kv_format.name(),
                        "the KV cache format is not available for this model; using f16"
                    );
                    (
                        model.new_context(backend, params(KvFormat::F16)),
                        KvFormat::F16,
                    )
                }
                other => (other, kv_format),
            };
            let context = match context {
                Ok(context) => context,
                Err(error) => {
                    let _ = ready.send(Err(LoadError::Context(error.to_string())));
                    return;
                }
            };
            let _ = ready.send(Ok(used));
            run(&model, context, receiver, max_sequences, &limits, &counters);
        })
        .map_err(|error| LoadError::Thread(error.to_string()))?;
    let used = ready_receiver
        .recv()
        .map_err(|error| LoadError::Thread(error.to_string()))??;
    Ok((jobs, used))
}

fn run(
    model: &LlamaModel,
    mut context: LlamaContext<'_>,
    jobs: Receiver<Job>,
    max_sequences: u32,
    limits: &Limits,
    counters: &Counters,
) {
    let sequences = usize::try_from(max_sequences).unwrap_or(1);
    let mut slots: Vec<Option<Slot>> = (0..sequences).map(|_| None).collect();
    let mut residents: Vec<Option<Resident>> = (0..sequences).map(|_| None).collect();
    let mut host = HostCache {
        entries: Vec::new(),
        bytes: 0,
        budget: limits.prompt_cache_bytes,
        clock: 0,
    };
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut batch = LlamaBatch::new(
        limits.batch_tokens,
        i32::try_from(max_sequences).unwrap_or(1),
    );
    let mut senders_gone = false;
    loop {
        let busy = slots.iter().any(Option::is_some) || !waiting.is_empty();
        if !busy {
            if senders_gone {
                return;
            }
            match jobs.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return,
            }
        }
        loop {
            match jobs.try_recv() {
                Ok(job) => waiting.push_back(job),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    senders_gone = true;
                    break;
                }
            }
        }
        waiting.retain(|job| {
            let cancelled = job.events.is_closed();
            if cancelled {
                counters.accepted.fetch_sub(1, Ordering::AcqRel);
            }
            !cancelled
        });
        admit(
            &mut context,
            &mut slots,
            &mut residents,
            &mut host,
            &mut waiting,
            counters,
        );
        release_cancelled(&mut context, &mut slots, counters);
        if !fill_batch(&mut batch, &mut slots, limits.batch_tokens) {
            continue;
        }
        if let Err(error) = context.decode(&mut batch) {
            tracing::error!(%error, tokens = batch.n_tokens(), "llama.cpp decode failed");
            for (seq, entry) in slots.iter_mut().enumerate() {
                let in_batch = entry.as_ref().is_some_and(|slot| slot.in_batch);
                if let Some(slot) = entry.take_if(|_| in_batch) {
                    finish_slot(&mut context, seq, counters);
                    let _ = slot
                        .job
                        .events
                        .send(Event::Failed(format!("decode failed: {error}")));
                }
            }
            continue;
        }
        sample_all(
            model,
            &mut context,
            &mut slots,
            &mut residents,
            &mut host,
            limits,
            counters,
        );
    }
}

/// Gives waiting requests free sequences: each the one holding the longest prefix of its
/// prompt in its namespace (restored from host memory when that holds a longer one), with only
/// the rest of the prompt left to compute.
fn admit(
    context: &mut LlamaContext<'_>,
    slots: &mut [Option<Slot>],
    residents: &mut [Option<Resident>],
    host: &mut HostCache,
    waiting: &mut VecDeque<Job>,
    counters: &Counters,
) {
    while !waiting.is_empty() {
        let shared_with =
            |resident: &Option<Resident>, job: &Job| match (resident, job.cache_namespace) {
                (Some(resident), Some(namespace)) if resident.namespace == namespace => {
                    common_prefix(&resident.tokens, &job.prompt_tokens)
                }
                _ => 0,
            };
        let Some(job) = waiting.pop_front() else {
            return;
        };
        // The longest shared prefix; then a sequence holding nothing; then the one left longest.
        let Some((seq, mut reuse)) = (0..slots.len())
            .filter(|seq| slots[*seq].is_none())
            .map(|seq| (seq, shared_with(&residents[seq], &job)))
            .max_by_key(|(seq, shared)| {
                let left_at = residents[*seq].as_ref().map(|resident| resident.left_at);
                (*shared, left_at.is_none(), Reverse(left_at))
            })
        else {
            waiting.push_front(job);
            return;
        };
        // What the sequence holds beyond the shared prefix is about to go: saved first.
        if let Some(resident) = residents[seq].take_if(|resident| {
            resident.tokens.len() > reuse && resident.tokens.len() >= MIN_SAVED_TOKENS
        }) && host.budget > 0
        {
            match context.state_seq_get(seq as i32, LlamaStateSeqFlags::empty()) {
                Ok(state) => host.insert(resident.namespace, resident.tokens, state),
                Err(error) => tracing::debug!(%error, "a prompt could not be saved"),
            }
        }
        // Host memory may hold a longer prefix of this namespace's prompts.
        if let Some(namespace) = job.cache_namespace
            && let Some((index, shared)) = host.best(&namespace, &job.prompt_tokens)
            && shared > reuse
        {
            let used_at = host.tick();
            let entry = &mut host.entries[index];
            match context.state_seq_set(&entry.state, seq as i32) {
                Ok(()) => {
                    entry.used_at = used_at;
                    reuse = shared;
                }
                Err(error) => {
                    tracing::debug!(%error, "a saved prompt could not be restored");
                    reuse = 0;
                }
            }
        }
        residents[seq] = None;
        // The shared prefix stays; the rest goes. The prompt's last token is always computed
        // again: its logits give the first token.
        let keep = reuse.min(job.prompt_tokens.len().saturating_sub(1));
        let kept = if keep > 0
            && context
                .clear_kv_cache_seq(Some(seq as u32), Some(keep as u32), None)
                .unwrap_or(false)
        {
            keep
        } else {
            let _ = context.clear_kv_cache_seq(Some(seq as u32), None, None);
            0
        };
        counters.running.fetch_add(1, Ordering::AcqRel);
        let stops = StopMatcher::new(job.stop.clone());
        slots[seq] = Some(Slot {
            job,
            prompt_fed: kept,
            n_past: u32::try_from(kept).unwrap_or(0),
            next_token: None,
            generated: Vec::new(),
            cached_tokens: u32::try_from(kept).unwrap_or(0),
            logits_index: None,
            in_batch: false,
            completion_tokens: 0,
            utf8: Utf8Decoder::default(),
            stops,
            started: Instant::now(),
        });
    }
}

/// The sampler chain for `sampling`, held to `grammar` if there is one.
pub(crate) fn build_sampler(
    model: &LlamaModel,
    sampling: &Sampling,
    grammar: Option<&Grammar>,
) -> Result<LlamaSampler, String> {
    let mut chain = Vec::with_capacity(8);
    if let Some(grammar) = grammar {
        let sampler = if grammar.triggers.is_empty() {
            LlamaSampler::grammar(model, &grammar.text, "root")
        } else {
            LlamaSampler::grammar_lazy(model, &grammar.text, "root", &grammar.triggers, &[])
        };
        chain.push(sampler.map_err(|error| format!("the output grammar is invalid: {error}"))?);
    }
    let penalised = sampling.repetition_penalty != 1.0
        || sampling.frequency_penalty != 0.0
        || sampling.presence_penalty != 0.0;
    if penalised {
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            PENALTY_LAST_TOKENS,
            sampling.repetition_penalty,
            sampling.frequency_penalty,
            sampling.presence_penalty,
        ));
    }
    if sampling.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if sampling.top_k > 0 {
            chain.push(LlamaSampler::top_k(sampling.top_k));
        }
        if sampling.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(sampling.top_p, 1));
        }
        if sampling.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(sampling.min_p, 1));
        }
        chain.push(LlamaSampler::temp(sampling.temperature));
        chain.push(LlamaSampler::dist(sampling.seed.unwrap_or(RANDOM_SEED)));
    }
    Ok(LlamaSampler::chain_simple(chain))
}

fn release_cancelled(
    context: &mut LlamaContext<'_>,
    slots: &mut [Option<Slot>],
    counters: &Counters,
) {
    for (seq, slot) in slots.iter_mut().enumerate() {
        if slot
            .as_ref()
            .is_some_and(|slot| slot.job.events.is_closed())
        {
            if let Some(slot) = slot.take() {
                tracing::debug!(
                    completion_tokens = slot.completion_tokens,
                    elapsed_ms = slot.started.elapsed().as_millis() as u64,
                    "generation cancelled by its client"
                );
            }
            finish_slot(context, seq, counters);
        }
    }
}

/// Fills the batch for one step; false when there is nothing to decode.
fn fill_batch(batch: &mut LlamaBatch, slots: &mut [Option<Slot>], batch_tokens: usize) -> bool {
    batch.clear();
    let mut used = 0usize;
    // Generating sequences first: one token each keeps every stream moving.
    for (seq, slot) in slots.iter_mut().enumerate() {
        let Some(slot) = slot else { continue };
        slot.logits_index = None;
        slot.in_batch = false;
        if let Some(token) = slot.next_token
            && used < batch_tokens
            && batch
                .add(token, slot.n_past as i32, &[seq as i32], true)
                .is_ok()
        {
            slot.logits_index = Some(batch.n_tokens() - 1);
            slot.in_batch = true;
            slot.n_past += 1;
            slot.generated.push(token);
            used += 1;
        }
    }
    // Then prompts, in chunks that fit what is left of the batch.
    for (seq, slot) in slots.iter_mut().enumerate() {
        let Some(slot) = slot else { continue };
        if slot.next_token.is_some() || slot.prompt_fed >= slot.job.prompt_tokens.len() {
            continue;
        }
        let room = batch_tokens.saturating_sub(used);
        if room == 0 {
            break;
        }
        let end = (slot.prompt_fed + room).min(slot.job.prompt_tokens.len());
        let last = slot.job.prompt_tokens.len() - 1;
        for index in slot.prompt_fed..end {
            let token = slot.job.prompt_tokens[index];
            if batch
                .add(token, index as i32, &[seq as i32], index == last)
                .is_err()
            {
                break;
            }
            used += 1;
            slot.in_batch = true;
            slot.prompt_fed = index + 1;
            if index == last {
                slot.logits_index = Some(batch.n_tokens() - 1);
            }
        }
        slot.n_past = slot.prompt_fed as u32;
    }
    used > 0
}

fn sample_all(
    model: &LlamaModel,
    context: &mut LlamaContext<'_>,
    slots: &mut [Option<Slot>],
    residents: &mut [Option<Resident>],
    host: &mut HostCache,
    limits: &Limits,
    counters: &Counters,
) {
    let vocab = model.vocab();
    for (seq, entry) in slots.iter_mut().enumerate() {
        let Some(slot) = entry.as_mut() else {
            continue;
        };
        let Some(index) = slot.logits_index.take() else {
            continue;
        };
        let token = slot.job.sampler.sample(context, index);
        let stop_token = u32::try_from(token.0).is_ok_and(|id| slot.job.stop_tokens.contains(&id));
        if let Some(top) = slot.job.logprobs
            && !vocab.is_eog(token)
            && !stop_token
        {
            let (logprob, likeliest) =
                crate::text::logprobs(context.get_logits_ith(index), token.0, top);
            let piece = |id: i32| vocab.token_to_piece(LlamaToken(id), true, None);
            let _ = slot.job.events.send(Event::Logprob(TokenLogprob {
                bytes: piece(token.0),
                logprob,
                top: likeliest
                    .into_iter()
                    .map(|(id, logprob)| (piece(id), logprob))
                    .collect(),
            }));
        }
        let finish = if vocab.is_eog(token) || stop_token {
            Some(FinishReason::Stop)
        } else {
            slot.completion_tokens += 1;
            counters
                .generated_tokens_total
                .fetch_add(1, Ordering::Relaxed);
            let piece = vocab.token_to_piece(token, false, None);
            let text = slot.utf8.push(&piece);
            match slot.stops.push(&text) {
                StopScan::Stopped(before) => {
                    send_text(&slot.job.events, before);
                    Some(FinishReason::Stop)
                }
                StopScan::Continue(released) => {
                    send_text(&slot.job.events, released);
                    let context_full = slot.n_past + 1 >= limits.context_tokens;
                    (slot.completion_tokens >= slot.job.max_tokens || context_full)
                        .then_some(FinishReason::Length)
                }
            }
        };
        match finish {
            None => slot.next_token = Some(token),
            Some(reason) => {
                if let Some(mut slot) = entry.take() {
                    if reason == FinishReason::Length {
                        let tail = slot.utf8.finish();
                        let mut rest = match slot.stops.push(&tail) {
                            StopScan::Continue(text) | StopScan::Stopped(text) => text,
                        };
                        rest.push_str(&slot.stops.finish());
                        send_text(&slot.job.events, rest);
                    }
                    let completion = Completion {
                        finish_reason: reason,
                        prompt_tokens: u32::try_from(slot.job.prompt_tokens.len())
                            .unwrap_or(u32::MAX),
                        cached_tokens: slot.cached_tokens,
                        completion_tokens: slot.completion_tokens,
                    };
                    tracing::debug!(
                        prompt_tokens = completion.prompt_tokens,
                        cached_tokens = completion.cached_tokens,
                        completion_tokens = completion.completion_tokens,
                        elapsed_ms = slot.started.elapsed().as_millis() as u64,
                        "generation finished"
                    );
                    // Release first: whoever sees `Done` may submit again at once and must
                    // find the sequence free. Its prompt and reply stay for its namespace.
                    match slot.job.cache_namespace {
                        Some(namespace) => {
                            let mut tokens = std::mem::take(&mut slot.job.prompt_tokens);
                            tokens.extend_from_slice(&slot.generated);
                            residents[seq] = Some(Resident {
                                namespace,
                                tokens,
                                left_at: host.tick(),
                            });
                            counters.running.fetch_sub(1, Ordering::AcqRel);
                            counters.accepted.fetch_sub(1, Ordering::AcqRel);
                        }
                        None => finish_slot(context, seq, counters),
                    }
                    let _ = slot.job.events.send(Event::Done(completion));
                } else {
                    finish_slot(context, seq, counters);
                }
            }
        }
    }
}

fn send_text(events: &UnboundedSender<Event>, text: String) {
    if !text.is_empty() {
        let _ = events.send(Event::Text(text));
    }
}

/// Frees a sequence's part of the KV cache and its place in the counters.
fn finish_slot(context: &mut LlamaContext<'_>, seq: usize, counters: &Counters) {
    if let Err(error) = context.clear_kv_cache_seq(Some(seq as u32), None, None) {
        tracing::error!(%error, "could not clear a finished sequence from the KV cache");
    }
    counters.running.fetch_sub(1, Ordering::AcqRel);
    counters.accepted.fetch_sub(1, Ordering::AcqRel);
}
