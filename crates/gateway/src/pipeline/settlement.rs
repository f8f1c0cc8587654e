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

use std::sync::Arc;
use std::time::Instant;

use wire::chat::Usage;

use super::pricing::{UsageBound, cost};
use crate::AppState;
use crate::config::ModelPricing;
use crate::metrics::{ModelLabels, ProviderLabels, RequestLabels, TokenLabels};
use crate::registry::Provider;

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
        // The provider's details, held within the counts charged.
        let details = self.reported.unwrap_or_default();
        Settled {
            usage: Usage {
                prompt_tokens_details: details.prompt_tokens_details.map(|mut cached| {
                    cached.cached_tokens = cached.cached_tokens.min(prompt_tokens);
                    cached
                }),
                completion_tokens_details: details.completion_tokens_details.map(
                    |mut reasoning| {
                        reasoning.reasoning_tokens =
                            reasoning.reasoning_tokens.min(completion_tokens);
                        reasoning
                    },
                ),
                ..Usage::counts(prompt_tokens, completion_tokens)
            },
            overshoot,
        }
    }
}

/// One request that reached a provider, from its first byte to its end: what it used, and
/// on drop (whether it finished, failed or was left by its client) everything that is done
/// once per request: the charge, the metrics, the rate limiter's token count and the one log
/// line. Every operation's relay holds one.
pub(crate) struct Record {
    pub(crate) state: Arc<AppState>,
    /// The operation's route (a metric label) and log message.
    route: &'static str,
    message: &'static str,
    pub(crate) request_id: String,
    pub(crate) model_id: String,
    pub(crate) provider: Arc<Provider>,
    attempts: u32,
    /// `tokens`, `account` (an account's key, metered) or `none`.
    paid_with: &'static str,
    /// The rate limiter's identity for the request; `None` when paid with tokens.
    rate_key: Option<String>,
    metering: Option<economy::Metering>,
    pricing: ModelPricing,
    /// What was reserved: the charge never exceeds it.
    max_cost: u128,
    started: Instant,
    pub(crate) first_token_at: Option<Instant>,
    /// The gateway's own count and the provider's report: what is charged.
    pub(crate) tally: Tally,
    /// The status the log line gives: 200, an error's, or `None` for a client that left
    /// before the end (499).
    pub(crate) status: Option<u16>,
    /// Sealed bytes passed on, for operations whose replies the gateway cannot read.
    pub(crate) sealed_bytes: Option<usize>,
    /// In a cluster, the request's barrier: its response ends once this record's usage is
    /// durable (see `recording.rs`).
    barrier: Option<Arc<super::recording::Barrier>>,
}

/// What a [`Record`] starts from: the admitted request and the provider that took it.
pub(crate) struct Started {
    pub(crate) route: &'static str,
    pub(crate) message: &'static str,
    pub(crate) request_id: String,
    pub(crate) model_id: String,
    pub(crate) provider: Arc<Provider>,
    pub(crate) attempts: u32,
    pub(crate) paid_with: &'static str,
    pub(crate) rate_key: Option<String>,
    pub(crate) metering: Option<economy::Metering>,
    pub(crate) pricing: ModelPricing,
    pub(crate) max_cost: u128,
    pub(crate) started: Instant,
    pub(crate) tally: Tally,
}

impl Record {
    /// Starts the record of a request in flight (counted in the in-flight gauge until dropped).
    pub(crate) fn start(state: Arc<AppState>, started: Started) -> Self {
        state.metrics.in_flight.inc();
        Self {
            state,
            route: started.route,
            message: started.message,
            request_id: started.request_id,
            model_id: started.model_id,
            provider: started.provider,
            attempts: started.attempts,
            paid_with: started.paid_with,
            rate_key: started.rate_key,
            metering: started.metering,
            pricing: started.pricing,
            max_cost: started.max_cost,
            started: started.started,
            first_token_at: None,
            tally: started.tally,
            status: None,
            sealed_bytes: None,
            barrier: super::recording::join(),
        }
    }

    /// What the request is charged for (see [`Tally::settle`]).
    pub(crate) fn usage(&self) -> Usage {
        self.tally.settle().usage
    }

    /// What the request costs: its usage at the model's prices, at most what it reserved.
    pub(crate) fn cost(&self) -> u128 {
        let usage = self.usage();
        let cached = usage
            .prompt_tokens_details
            .map_or(0, |details| details.cached_tokens);
        cost(
            self.pricing,
            usage.prompt_tokens,
            cached,
            usage.completion_tokens,
        )
        .min(self.max_cost)
    }

    /// What the request costs, split by the currency that pays it: DIEM for an account's
    /// daily allowance and for privacy tokens (bought with that allowance), dollars for
    /// bundled credits and dollar credit, and for a gateway without a ledger (its price).
    pub(crate) fn cost_split(&self) -> (u128, u128) {
        let cost = self.cost();
        match (&self.metering, self.paid_with) {
            (_, "tokens") => (0, cost),
            (Some(metering), _) => {
                let draw = metering.split(cost);
                (draw.bundled.saturating_add(draw.usd), draw.allowance)
            }
            (None, _) => (cost, 0),
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let settled = self.tally.settle();
        let usage = settled.usage;
        if settled.overshoot {
            charge_overshoot(&self.state, &self.provider, &self.request_id);
        }
        let status = self.status.unwrap_or(499);
        let metrics = &self.state.metrics;
        let model = self.model_id.clone();
        metrics
            .requests
            .get_or_create(&RequestLabels {
                route: self.route,
                model: model.clone(),
                status,
            })
            .inc();
        metrics
            .request_seconds
            .get_or_create(&ModelLabels {
                model: model.clone(),
            })
            .observe(self.started.elapsed().as_secs_f64());
        if let Some(first) = self.first_token_at {
            metrics
                .first_token_seconds
                .get_or_create(&ModelLabels {
                    model: model.clone(),
                })
                .observe(first.duration_since(self.started).as_secs_f64());
        }
        for (kind, count) in [
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
        ] {
            metrics
                .tokens
                .get_or_create(&TokenLabels {
                    model: model.clone(),
                    kind,
                })
                .inc_by(count);
        }
        metrics.in_flight.dec();
        if let Some(rate_key) = &self.rate_key {
            match &self.state.cluster {
                Some(cluster) => cluster.record_tokens(rate_key, usage.total_tokens),
                None => self.state.rate.record_tokens(rate_key, usage.total_tokens),
            }
        }
        let cost = self.cost();
        let recorded = self.metering.as_mut().and_then(|metering| {
            metering.finish(cost, usage.prompt_tokens, usage.completion_tokens)
        });
        if let Some(barrier) = self.barrier.take() {
            barrier.close(recorded);
        }
        let first_token_ms = self
            .first_token_at
            .map(|first| first.duration_since(self.started).as_millis() as u64);
        let duration_ms = self.started.elapsed().as_millis() as u64;
        match self.sealed_bytes {
            Some(sealed_bytes) => tracing::info!(
                request_id = %self.request_id,
                model = %self.model_id,
                provider = %self.provider.id,
                attempts = self.attempts,
                paid_with = self.paid_with,
                status,
                prompt_tokens = usage.prompt_tokens,
                completion_tokens = usage.completion_tokens,
                sealed_bytes,
                usage_reported = self.tally.has_report(),
                first_token_ms,
                duration_ms,
                "{}",
                self.message
            ),
            None => tracing::info!(
                request_id = %self.request_id,
                model = %self.model_id,
                provider = %self.provider.id,
                attempts = self.attempts,
                paid_with = self.paid_with,
                status,
                prompt_tokens = usage.prompt_tokens,
                completion_tokens = usage.completion_tokens,
                usage_reported = self.tally.has_report(),
                first_token_ms,
                duration_ms,
                "{}",
                self.message
            ),
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
    use wire::money::Amount;

    fn bound() -> UsageBound {
        UsageBound {
            prompt_tokens: 100,
            completion_tokens: 5,
        }
    }

    fn usage(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage::counts(prompt_tokens, completion_tokens)
    }

    #[test]
    fn a_providers_token_details_pass_within_the_counts_charged() {
        let mut tally = Tally::new(bound(), 12);
        tally.report(Usage {
            prompt_tokens_details: Some(wire::chat::PromptTokensDetails {
                cached_tokens: u64::MAX,
            }),
            completion_tokens_details: Some(wire::chat::CompletionTokensDetails {
                reasoning_tokens: 3,
            }),
            ..usage(10, 5)
        });
        let settled = tally.settle().usage;
        assert_eq!(settled.prompt_tokens, 10);
        // A cache hit larger than the prompt is held to the prompt.
        assert_eq!(
            settled
                .prompt_tokens_details
                .map(|details| details.cached_tokens),
            Some(10)
        );
        assert_eq!(
            settled
                .completion_tokens_details
                .map(|details| details.reasoning_tokens),
            Some(3)
        );
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
            cache_input_per_million: Amount(wire::money::BASE_UNITS_PER_WHOLE),
            per_image: Amount(0),
            per_video_second: Amount(0),
        };
        assert_eq!(
            cost(
                pricing,
                settled.usage.prompt_tokens,
                0,
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
}
