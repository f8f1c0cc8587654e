//! `/billing/*`, `/api_keys/rate_limits*` and `/admin/clock`: what an account can spend, its
//! limits and refusals, what it spent, and the test-only clock.

use super::*;

pub(crate) async fn rate_limits(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        let (economy, account) = key_holder(&state, &headers, false)?;
        let today = economy.clock.today();
        let balance = economy.meter.balance(account, today);
        let rate_limits = state
            .registry
            .live_models(std::time::Instant::now())
            .keys()
            .map(|model| {
                let limit = state.tiers.limit_for(model);
                ModelRateLimits {
                    api_model_id: model.clone(),
                    rate_limits: vec![
                        RateLimitAmount {
                            kind: "RPM".into(),
                            amount: u64::from(limit.requests_per_minute),
                        },
                        RateLimitAmount {
                            kind: "TPM".into(),
                            amount: limit.tokens_per_minute,
                        },
                    ],
                }
            })
            .collect();
        Ok(Data {
            data: RateLimits {
                access_permitted: balance.free.total() > 0,
                api_tier: ApiTier {
                    id: "staker".into(),
                    is_charged: true,
                },
                balances: [
                    ("DIEM", balance.free.allowance),
                    ("USD", balance.free.usd),
                    ("BUNDLED_CREDITS", balance.free.bundled),
                ]
                .into_iter()
                .map(|(currency, amount)| (currency.to_owned(), usd(amount)))
                .collect(),
                next_epoch_begins: (today + 1) * SECONDS_PER_DAY,
                rate_limits,
            },
        })
    })();
    respond(result, dialect)
}

/// The account's latest rate-limit refusals (at most 50, newest first; kept in memory, so a
/// restart clears them).
pub(crate) async fn rate_limit_log(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        let (economy, account) = key_holder(&state, &headers, false)?;
        let data = economy
            .rate_limit_log
            .recent(account)
            .into_iter()
            .map(|hit| RateLimitHit {
                api_key_id: hit.key_id,
                model_id: hit.model_id,
                rate_limit_tier: hit.tier,
                rate_limit_type: hit.limit_type.into(),
                timestamp: hit.timestamp_seconds,
            })
            .collect();
        Ok(List {
            object: "list".into(),
            data,
        })
    })();
    respond(result, dialect)
}

pub(crate) async fn billing_balance(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        let (economy, account) = key_holder(&state, &headers, false)?;
        let today = economy.clock.today();
        let balance = economy.meter.balance(account, today);
        Ok(Data {
            data: BillingBalance {
                can_consume: balance.free.total() > 0,
                consumption_currency: if balance.free.allowance > 0 {
                    "DIEM"
                } else {
                    "USD"
                }
                .into(),
                balances: BillingBalances {
                    diem: usd(balance.free.allowance),
                    usd: usd(balance.free.usd),
                    bundled_credits: usd(balance.free.bundled),
                },
                diem_epoch_allocation: usd(balance.allowance_per_day),
                next_epoch_begins: (today + 1) * SECONDS_PER_DAY,
            },
        })
    })();
    respond(result, dialect)
}

pub(crate) async fn usage_history(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        let (economy, account) = key_holder(&state, &headers, false)?;
        let data = economy.read(|store| {
            store
                .ledger()
                .usage_history(account)
                .map(|(day, usage)| UsageDay {
                    day,
                    date: day * SECONDS_PER_DAY,
                    requests: usage.requests,
                    prompt_tokens: usage.prompt_tokens,
                    completion_tokens: usage.completion_tokens,
                    diem: usd(usage.allowance_units),
                    bundled_credits: usd(usage.bundled_credit_units),
                    usd: usd(usage.usd_units),
                })
                .collect()
        });
        Ok(UsageHistory {
            object: "list".into(),
            data,
            note: "settled usage by UTC day; requests of the last second may not be settled yet"
                .into(),
        })
    })();
    respond(result, dialect)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    advance_seconds: u64,
}

pub(crate) async fn advance_clock(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let result = (|| {
        let economy = economy(&state)?;
        if !economy.config.adjustable_clock {
            return Err(error(ErrorCode::NotFound, "no such endpoint"));
        }
        let caller = authenticated(&state, &headers)?;
        if !caller.is_operator() {
            return Err(error(
                ErrorCode::Unauthorized,
                "moving the clock needs one of the operator's ADMIN keys",
            ));
        }
        let request: Advance = parse_json(&body)?;
        if request.advance_seconds > 400 * SECONDS_PER_DAY {
            return Err(ApiError::invalid(
                "advance_seconds",
                "at most 400 days at once",
            ));
        }
        economy.clock.advance(request.advance_seconds);
        economy.meter.roll_day(economy.clock.today());
        Ok(ClockAdvanced {
            now: economy.clock.now(),
        })
    })();
    respond(result, dialect)
}
