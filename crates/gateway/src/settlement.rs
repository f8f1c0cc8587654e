//! What a request is charged: the gateway's own count of what it passed on, the provider's
//! report, and the bound the request paid for, put together so that neither side can move
//! the charge where it likes.
//!
//! - A client cannot get tokens for free by leaving early or by using a provider that reports
//!   nothing: every piece of the reply the gateway passes on counts as at least one token, and
//!   a prompt with no reported size is charged at an estimate from its bytes.
//! - A provider cannot charge more than was paid for: a report above the request's bound is
//!   cut to the bound, and the excess is counted against the provider (its loss, a metric
//!   and a fault on its breaker). The charge can therefore never exceed the reservation that
//!   was made from the same bound.

use std::time::Instant;

use wire::chat::Usage;
use wire::money::Amount;

use crate::AppState;
use crate::config::ModelPricing;
use crate::metrics::ProviderLabels;
use crate::registry::Provider;

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
        cost(pricing, self.prompt_tokens, self.completion_tokens)
    }
}

/// The price of `prompt` and `completion` tokens.
pub(crate) fn cost(pricing: ModelPricing, prompt: u64, completion: u64) -> u128 {
    Amount::for_tokens(pricing.input_per_million, prompt)
        .saturating_add(Amount::for_tokens(pricing.output_per_million, completion))
        .0
}

/// The prompt tokens of `prompt_bytes` of text, estimated, for a request whose provider
/// reports none.
pub(crate) fn estimate_prompt_tokens(prompt_bytes: usize) -> u64 {
    u64::try_from(prompt_bytes.div_ceil(ESTIMATE_BYTES_PER_TOKEN)).unwrap_or(u64::MAX)
}

/// A request's usage as it goes: what the gateway passed on and what the provider reported.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tally {
    bound: UsageBound,
    prompt_estimate: u64,
    /// Pieces of the reply passed on to the client, each at least one token.
    delivered: u64,
    /// The provider's latest report.
    reported: Option<Usage>,
    /// The provider sent more pieces than the bound allows (and the relay cut it off).
    sent_past_bound: bool,
    /// Whether a piece is one token only as a floor for a reply with no report: sealed replies,
    /// whose pieces the gateway cannot read, carry a few pieces that are not tokens (the head,
    /// the end, the receipt), so there a report, when it comes, is taken as it is.
    pieces_floor_only_without_report: bool,
}

/// What a request is charged, and whether its provider went past what was paid for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settled {
    pub(crate) usage: Usage,
    pub(crate) overshoot: bool,
}

impl Tally {
    pub(crate) fn new(bound: UsageBound, prompt_estimate: u64) -> Self {
        Self {
            bound,
            prompt_estimate,
            delivered: 0,
            reported: None,
            sent_past_bound: false,
            pieces_floor_only_without_report: false,
        }
    }

    /// A sealed reply's tally: its pieces are counted, but stand for tokens only when the
    /// provider reports nothing (a reply cut short).
    pub(crate) fn sealed(bound: UsageBound, prompt_estimate: u64) -> Self {
        Self {
            pieces_floor_only_without_report: true,
            ..Self::new(bound, prompt_estimate)
        }
    }

    /// Whether the reply has as many pieces as were paid for: another would be past it.
    pub(crate) fn at_bound(&self) -> bool {
        self.delivered >= self.bound.completion_tokens
    }

    /// One more piece of the reply passed on.
    pub(crate) fn delivered_one(&mut self) {
        self.delivered = self.delivered.saturating_add(1);
    }

    /// The provider sent a piece past the bound (which was not passed on).
    pub(crate) fn sent_past_bound(&mut self) {
        self.sent_past_bound = true;
    }

    /// The provider's report of its usage so far (the last one counts).
    pub(crate) fn report(&mut self, usage: Usage) {
        self.reported = Some(usage);
    }

    pub(crate) fn has_report(&self) -> bool {
        self.reported.is_some()
    }

    /// The usage charged: the provider's prompt count (or the estimate), its completion
    /// count but never fewer than the pieces delivered, each at most the bound.
    pub(crate) fn settle(&self) -> Settled {
        let reported_prompt = self.reported.map(|usage| usage.prompt_tokens);
        let reported_completion = self.reported.map_or(0, |usage| usage.completion_tokens);
        let prompt_tokens = reported_prompt
            .unwrap_or(self.prompt_estimate)
            .min(self.bound.prompt_tokens);
        let floor = if self.pieces_floor_only_without_report && self.reported.is_some() {
            0
        } else {
            self.delivered
        };
        let completion_tokens = reported_completion
            .max(floor)
            .min(self.bound.completion_tokens);
        let overshoot = self.sent_past_bound
            || reported_prompt.is_some_and(|prompt| prompt > self.bound.prompt_tokens)
            || reported_completion > self.bound.completion_tokens;
        Settled {
            usage: Usage {
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens.saturating_add(completion_tokens),
            },
            overshoot,
        }
    }
}

/// Counts a provider's overshoot against it: a metric, a log line with its id, and a fault on
/// its breaker (a provider that keeps doing it stops getting requests for a while).
pub(crate) fn charge_overshoot(state: &AppState, provider: &Provider, request_id: &str) {
    state
        .metrics
        .provider_overshoots
        .get_or_create(&ProviderLabels {
            provider: provider.id.clone(),
        })
        .inc();
    tracing::warn!(
        request_id = %request_id,
        provider = %provider.id,
        "the provider reported or sent more than the request paid for; charged at the bound"
    );
    state.registry.record_failure(provider, Instant::now());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound() -> UsageBound {
        UsageBound {
            prompt_tokens: 100,
            completion_tokens: 5,
        }
    }

    fn usage(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }

    #[test]
    fn a_cut_reply_with_no_report_pays_for_what_was_delivered_and_the_estimated_prompt() {
        let mut tally = Tally::new(bound(), 12);
        tally.delivered_one();
        tally.delivered_one();
        assert_eq!(
            tally.settle(),
            Settled {
                usage: usage(12, 2),
                overshoot: false
            }
        );
    }

    #[test]
    fn an_honest_report_is_charged_as_it_is() {
        let mut tally = Tally::new(bound(), 12);
        for _ in 0..3 {
            tally.delivered_one();
        }
        tally.report(usage(40, 4));
        assert_eq!(tally.settle().usage, usage(40, 4));
        assert!(!tally.settle().overshoot);
    }

    #[test]
    fn a_report_below_what_was_delivered_is_raised_to_it() {
        let mut tally = Tally::new(bound(), 12);
        for _ in 0..4 {
            tally.delivered_one();
        }
        tally.report(usage(40, 0));
        assert_eq!(tally.settle().usage, usage(40, 4));
    }

    #[test]
    fn an_inflated_report_is_cut_to_the_bound_and_counted_against_the_provider() {
        let mut tally = Tally::new(bound(), 12);
        tally.delivered_one();
        tally.report(usage(1_000_000_000, 1_000_000_000));
        let settled = tally.settle();
        assert_eq!(settled.usage, usage(100, 5));
        assert!(settled.overshoot);
        let pricing = ModelPricing {
            input_per_million: Amount(3 * wire::money::BASE_UNITS_PER_WHOLE),
            output_per_million: Amount(7 * wire::money::BASE_UNITS_PER_WHOLE),
        };
        assert_eq!(
            cost(
                pricing,
                settled.usage.prompt_tokens,
                settled.usage.completion_tokens
            ),
            bound().max_cost(pricing),
            "the charge is at most the reservation"
        );
    }

    #[test]
    fn pieces_past_the_bound_are_an_overshoot_and_the_bound_is_known() {
        let mut tally = Tally::new(bound(), 12);
        for _ in 0..5 {
            assert!(!tally.at_bound());
            tally.delivered_one();
        }
        assert!(tally.at_bound());
        tally.sent_past_bound();
        let settled = tally.settle();
        assert_eq!(settled.usage.completion_tokens, 5);
        assert!(settled.overshoot);
    }

    #[test]
    fn a_sealed_reply_counts_its_pieces_only_when_it_was_cut_before_its_report() {
        let mut cut = Tally::sealed(bound(), 30);
        for _ in 0..3 {
            cut.delivered_one();
        }
        assert_eq!(cut.settle().usage, usage(30, 3));
        let mut whole = Tally::sealed(bound(), 30);
        for _ in 0..5 {
            whole.delivered_one();
        }
        whole.report(usage(20, 1));
        assert_eq!(whole.settle().usage, usage(20, 1));
    }

    #[test]
    fn the_estimate_rounds_up_and_the_bound_counts_every_body_byte() {
        assert_eq!(estimate_prompt_tokens(0), 0);
        assert_eq!(estimate_prompt_tokens(1), 1);
        assert_eq!(estimate_prompt_tokens(9), 3);
        let bound = UsageBound::for_chat(1000, 2, 10, 7);
        assert_eq!(bound.prompt_tokens, 1000 + 10 + 2 * 16 + 64);
        assert_eq!(bound.completion_tokens, 7);
    }
}
