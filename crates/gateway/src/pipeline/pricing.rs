//! Pricing: the most an operation may use and what that costs, the bound it is reserved for
//! and held to. Chat (plain and sealed) is priced per token, prompt and completion apart, at
//! the catalogue's per-million prices; an operation priced by another unit (characters, seconds
//! of audio, images) brings its own bound beside [`UsageBound`].

use wire::money::Amount;

use crate::config::ModelPricing;

/// Bytes of prompt text taken as one token when the provider reports no count: the usual
/// figure for English text with today's tokenizers (it over-counts code and under-counts
/// some scripts; a reported count, which honest providers send, always replaces it).
const ESTIMATE_BYTES_PER_TOKEN: usize = 4;
/// Tokens a chat template adds around each message, at most, in the bound.
const TEMPLATE_TOKENS_PER_MESSAGE: usize = 16;
/// Tokens a chat template adds around the whole conversation, at most, in the bound.
const TEMPLATE_TOKENS_PER_REQUEST: usize = 64;

/// The most a request may use: what it was priced and reserved for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UsageBound {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
}

impl UsageBound {
    /// A chat request's bound: every byte of its body a prompt token (tokenizers produce at
    /// most about one token per byte), a few template tokens per message, and `max_output`
    /// completion tokens.
    pub(crate) fn for_chat(
        body_bytes: usize,
        messages: usize,
        system_prompt_bytes: usize,
        max_output: u32,
    ) -> Self {
        let prompt = body_bytes
            .saturating_add(system_prompt_bytes)
            .saturating_add(TEMPLATE_TOKENS_PER_MESSAGE.saturating_mul(messages))
            .saturating_add(TEMPLATE_TOKENS_PER_REQUEST);
        Self {
            prompt_tokens: u64::try_from(prompt).unwrap_or(u64::MAX),
            completion_tokens: u64::from(max_output),
        }
    }

    /// What using all of it costs: the reservation a request makes.
    pub(crate) fn max_cost(&self, pricing: ModelPricing) -> u128 {
        // Nothing from the cache: the most the prompt can cost.
        cost(pricing, self.prompt_tokens, 0, self.completion_tokens)
    }
}

/// The price of `prompt` tokens, `cached` of them read from a prompt cache, and `completion`
/// tokens.
pub(crate) fn cost(pricing: ModelPricing, prompt: u64, cached: u64, completion: u64) -> u128 {
    let cached = cached.min(prompt);
    Amount::for_tokens(pricing.input_per_million, prompt - cached)
        .saturating_add(Amount::for_tokens(pricing.cache_input_per_million, cached))
        .saturating_add(Amount::for_tokens(pricing.output_per_million, completion))
        .0
}

/// The prompt tokens of `prompt_bytes` of text, estimated, for a request whose provider
/// reports none.
pub(crate) fn estimate_prompt_tokens(prompt_bytes: usize) -> u64 {
    u64::try_from(prompt_bytes.div_ceil(ESTIMATE_BYTES_PER_TOKEN)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_rounds_up_and_the_bound_counts_every_body_byte() {
        assert_eq!(estimate_prompt_tokens(0), 0);
        assert_eq!(estimate_prompt_tokens(1), 1);
        assert_eq!(estimate_prompt_tokens(9), 3);
        let bound = UsageBound::for_chat(1000, 2, 10, 7);
        assert_eq!(bound.prompt_tokens, 1000 + 10 + 2 * 16 + 64);
        assert_eq!(bound.completion_tokens, 7);
    }

    #[test]
    fn cached_prompt_tokens_cost_the_cache_price_and_never_more_than_the_prompt() {
        let pricing = ModelPricing {
            input_per_million: Amount(4_000_000),
            output_per_million: Amount(8_000_000),
            cache_input_per_million: Amount(1_000_000),
            per_image: Amount(5),
            per_video_second: Amount(7),
        };
        assert_eq!(cost(pricing, 1_000_000, 0, 0), 4_000_000);
        assert_eq!(cost(pricing, 1_000_000, 250_000, 0), 3_000_000 + 250_000);
        assert_eq!(
            cost(pricing, 1_000_000, 5_000_000, 1_000_000),
            1_000_000 + 8_000_000
        );
        let bound = UsageBound {
            prompt_tokens: 1_000_000,
            completion_tokens: 1_000_000,
        };
        assert_eq!(bound.max_cost(pricing), 12_000_000);
        // Priced per image: three images cost three times the image price, whatever the
        // token prices.
        let images = UsageBound {
            prompt_tokens: 3,
            completion_tokens: 0,
        };
        assert_eq!(images.max_cost(pricing.per_image_units()), 15);
    }
}
