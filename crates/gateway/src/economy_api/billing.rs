//! `/billing/*`, `/api_keys/rate_limits*` and `/admin/clock`: what an account can spend, its
//! limits and refusals, what it spent, and the test-only clock.

use base64::Engine as _;

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
        let caller = authenticated(&state, &headers)?;
        let key_expiration = caller_key_expiry(economy, account, caller.key_id.as_deref());
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
                .map(|(currency, amount)| (currency.to_owned(), DollarNumber(amount)))
                .collect(),
                key_expiration,
                next_epoch_begins: Timestamp((today + 1) * SECONDS_PER_DAY),
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
    let result = async {
        let (economy, account) = key_holder(&state, &headers, false)?;
        let hits = match &state.cluster {
            Some(cluster) => cluster
                .refusals(account)
                .await
                .map_err(|unavailable| unavailable.to_api_error())?,
            None => economy.rate_limit_log.recent(account),
        };
        let data = hits
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
    }
    .await;
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
        // Venice's shape: the balance itself, not wrapped in `data`.
        Ok(BillingBalance {
            can_consume: balance.free.total() > 0,
            consumption_currency: if balance.free.allowance > 0 {
                "DIEM"
            } else if balance.free.bundled > 0 {
                "BUNDLED_CREDITS"
            } else {
                "USD"
            }
            .into(),
            balances: BillingBalances {
                diem: DollarNumber(balance.free.allowance),
                usd: DollarNumber(balance.free.usd),
                bundled_credits: DollarNumber(balance.free.bundled),
            },
            diem_epoch_allocation: DollarNumber(balance.allowance_per_day),
        })
    })();
    respond(result, dialect)
}

/// When the calling key expires, if it is one of the account's keys with an expiry.
fn caller_key_expiry(
    economy: &economy::Economy,
    account: Address,
    key_id: Option<&str>,
) -> Option<Timestamp> {
    let key_id = key_id?;
    economy
        .keys
        .list(account)
        .into_iter()
        .find(|key| key.id == key_id)
        .and_then(|key| key.expires_at)
        .map(Timestamp)
}

/// The account's settled usage, one entry per UTC day (Gondola's shape: requests, tokens and
/// what each currency paid).
pub(crate) async fn usage_days(
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
        Ok(UsageDays {
            object: "list".into(),
            data,
            note: "settled usage by UTC day; requests of the last second may not be settled yet"
                .into(),
        })
    })();
    respond(result, dialect)
}

/// The query of `GET /billing/usage-history`, as Venice's API takes it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct UsageQuery {
    currency: Option<String>,
    cursor: Option<String>,
    start_timestamp: Option<String>,
    end_timestamp: Option<String>,
    page_size: Option<String>,
}

/// The currencies of a day's entries, in the order they are listed.
const CURRENCIES: [&str; 3] = ["DIEM", "BUNDLED_CREDITS", "USD"];
const DEFAULT_PAGE_SIZE: usize = 1000;
const MIN_PAGE_SIZE: usize = 10;

/// A walk through the history: its filters, and where the last page ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Walk {
    /// The last entry handed out: its day and currency.
    after: Option<(u64, usize)>,
    currency: Option<usize>,
    start: Option<u64>,
    end: Option<u64>,
    page_size: usize,
}

impl Walk {
    fn from_query(query: UsageQuery) -> Result<Self, ApiError> {
        if let Some(cursor) = query.cursor {
            let filtered = query.currency.is_some()
                || query.start_timestamp.is_some()
                || query.end_timestamp.is_some()
                || query.page_size.is_some();
            if filtered {
                return Err(ApiError::invalid(
                    "cursor",
                    "a cursor carries the filters of its walk: send it alone",
                ));
            }
            return Self::decode(&cursor)
                .ok_or_else(|| ApiError::invalid("cursor", "not a cursor this server gave"));
        }
        let currency = query
            .currency
            .map(|currency| {
                CURRENCIES
                    .iter()
                    .position(|known| *known == currency)
                    .ok_or_else(|| {
                        ApiError::invalid("currency", "currency is USD, DIEM or BUNDLED_CREDITS")
                    })
            })
            .transpose()?;
        let moment = |text: Option<String>, param: &str| {
            text.map(|text| {
                // Venice's examples write a space where RFC 3339 has a T.
                Timestamp::parse(&text.replacen(' ', "T", 1))
                    .map(|moment| moment.0)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            param,
                            format!("{param} is ISO 8601 in UTC, e.g. 2026-12-01T00:00:00Z"),
                        )
                    })
            })
            .transpose()
        };
        let start = moment(query.start_timestamp, "startTimestamp")?;
        let end = moment(query.end_timestamp, "endTimestamp")?;
        if let (Some(start), Some(end)) = (start, end)
            && end <= start
        {
            return Err(ApiError::invalid(
                "endTimestamp",
                "endTimestamp must be later than startTimestamp",
            ));
        }
        let page_size = match query.page_size {
            None => DEFAULT_PAGE_SIZE,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|size| (MIN_PAGE_SIZE..=DEFAULT_PAGE_SIZE).contains(size))
                .ok_or_else(|| {
                    ApiError::invalid(
                        "pageSize",
                        format!("pageSize is {MIN_PAGE_SIZE} to {DEFAULT_PAGE_SIZE}"),
                    )
                })?,
        };
        Ok(Self {
            after: None,
            currency,
            start,
            end,
            page_size,
        })
    }

    /// `1.<day>.<currency>.<filter>.<start>.<end>.<size>` in URL-safe base64: opaque to
    /// clients, and carrying the walk's filters.
    fn encode(&self) -> String {
        let field =
            |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |value| value.to_string());
        let (day, currency) = self.after.unwrap_or_default();
        let text = format!(
            "1.{day}.{currency}.{}.{}.{}.{}",
            field(self.currency.map(|index| index as u64)),
            field(self.start),
            field(self.end),
            self.page_size
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    fn decode(cursor: &str) -> Option<Self> {
        if cursor.len() > 512 {
            return None;
        }
        let text = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(cursor)
                .ok()?,
        )
        .ok()?;
        let fields: Vec<&str> = text.split('.').collect();
        let [version, day, currency_after, currency, start, end, size] = fields.as_slice() else {
            return None;
        };
        let optional = |field: &str| -> Option<Option<u64>> {
            if field == "-" {
                Some(None)
            } else {
                field.parse().ok().map(Some)
            }
        };
        let currency_after: usize = currency_after.parse().ok()?;
        let currency =
            optional(currency)?.map(|index| usize::try_from(index).unwrap_or(usize::MAX));
        let page_size: usize = size.parse().ok()?;
        let valid = *version == "1"
            && currency_after < CURRENCIES.len()
            && currency.is_none_or(|index| index < CURRENCIES.len())
            && (MIN_PAGE_SIZE..=DEFAULT_PAGE_SIZE).contains(&page_size);
        valid.then_some(Self {
            after: Some((day.parse().ok()?, currency_after)),
            currency,
            start: optional(start)?,
            end: optional(end)?,
            page_size,
        })
    }
}

/// One page of `walk` through `days` (ascending): its entries, and the walk that goes on
/// from them when more are left.
fn page<'a>(
    days: impl IntoIterator<Item = (u64, &'a ledger::UsageDay)>,
    mut walk: Walk,
) -> (Vec<UsageEntry>, Option<Walk>) {
    let mut data = Vec::new();
    for (day, usage) in days {
        let at = day * SECONDS_PER_DAY;
        if walk.start.is_some_and(|start| at < start) || walk.end.is_some_and(|end| at >= end) {
            continue;
        }
        let paid = [
            usage.allowance_units,
            usage.bundled_credit_units,
            usage.usd_units,
        ];
        for (index, units) in paid.into_iter().enumerate() {
            let skip = units == 0
                || walk.currency.is_some_and(|only| only != index)
                || walk.after.is_some_and(|after| (day, index) <= after);
            if skip {
                continue;
            }
            if data.len() == walk.page_size {
                return (data, Some(walk));
            }
            walk.after = Some((day, index));
            data.push(UsageEntry {
                amount: Charge(units),
                currency: CURRENCIES[index].into(),
                inference_details: None,
                notes: format!(
                    "API inference on UTC day {day} ({}), one entry per day and currency: {} requests, {} prompt and {} completion tokens that day",
                    Timestamp(at).to_iso().get(..10).unwrap_or_default(),
                    usage.requests,
                    usage.prompt_tokens,
                    usage.completion_tokens,
                ),
                price_per_unit_usd: DollarNumber(10u128.pow(18)),
                sku: "api-inference-day".into(),
                timestamp: Timestamp(at),
                units: DollarNumber(units),
            });
        }
    }
    (data, None)
}

/// The account's charges in Venice's shape: one entry per UTC day and currency (Gondola keeps
/// no record of single requests), ascending, a page at a time.
pub(crate) async fn usage_history(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
    crate::query::ApiQuery(query): crate::query::ApiQuery<UsageQuery>,
) -> Response {
    let result = (|| {
        let (economy, account) = key_holder(&state, &headers, false)?;
        let walk = Walk::from_query(query)?;
        let (data, next) = economy.read(|store| page(store.ledger().usage_history(account), walk));
        Ok(UsageHistory {
            data,
            next_cursor: next.map(|walk| walk.encode()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_carries_its_walk_and_nothing_else_reads_as_one() {
        let walk = Walk {
            after: Some((20_431, 2)),
            currency: Some(0),
            start: Some(1_700_000_000),
            end: None,
            page_size: 10,
        };
        let cursor = walk.encode();
        assert!(cursor.len() <= 512);
        assert!(
            cursor
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        );
        assert_eq!(Walk::decode(&cursor), Some(walk));
        for forged in ["", "bm90LWEtY3Vyc29y", &"A".repeat(600)] {
            assert_eq!(Walk::decode(forged), None, "{forged}");
        }
        // A cursor with filters beside it is refused: the cursor already carries them.
        let error = Walk::from_query(UsageQuery {
            cursor: Some(cursor),
            currency: Some("USD".into()),
            ..UsageQuery::default()
        })
        .expect_err("filters beside a cursor");
        assert_eq!(error.param.as_deref(), Some("cursor"));
    }

    #[test]
    fn pages_walk_the_history_without_gaps_or_overlaps() {
        // Twelve days, each paid in DIEM and some also in dollars: 18 entries.
        let days: Vec<(u64, ledger::UsageDay)> = (100..112)
            .map(|day| {
                (
                    day,
                    ledger::UsageDay {
                        requests: 1,
                        allowance_units: u128::from(day),
                        usd_units: if day % 2 == 0 { 7 } else { 0 },
                        ..ledger::UsageDay::default()
                    },
                )
            })
            .collect();
        let walk = Walk {
            after: None,
            currency: None,
            start: None,
            end: None,
            page_size: 10,
        };
        let (first, next) = page(days.iter().map(|(day, usage)| (*day, usage)), walk);
        assert_eq!(first.len(), 10);
        // The walk goes on through its cursor, as a client would send it.
        let next = Walk::decode(&next.expect("more").encode()).expect("a cursor");
        let (second, last) = page(days.iter().map(|(day, usage)| (*day, usage)), next);
        assert_eq!(second.len(), 8);
        assert!(last.is_none());
        let all: Vec<(String, String)> = first
            .iter()
            .chain(&second)
            .map(|entry| (entry.timestamp.to_iso(), entry.currency.clone()))
            .collect();
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(all, sorted, "ascending, each entry once");
        assert_eq!(
            all.iter().filter(|(_, currency)| currency == "USD").count(),
            6
        );
        // A currency filter and a time window.
        let (dollars, _) = page(
            days.iter().map(|(day, usage)| (*day, usage)),
            Walk {
                currency: Some(2),
                start: Some(104 * SECONDS_PER_DAY),
                end: Some(108 * SECONDS_PER_DAY),
                ..walk
            },
        );
        assert_eq!(
            dollars
                .iter()
                .map(|entry| entry.timestamp.0 / SECONDS_PER_DAY)
                .collect::<Vec<_>>(),
            vec![104, 106]
        );
        assert_eq!(dollars[0].units, DollarNumber(7));
    }

    #[test]
    fn filters_are_read_as_venice_writes_them_and_bounded() {
        let walk = Walk::from_query(UsageQuery {
            currency: Some("BUNDLED_CREDITS".into()),
            start_timestamp: Some("2026-07-01 00:00:00+00:00".into()),
            end_timestamp: Some("2026-08-01T00:00:00Z".into()),
            page_size: Some("10".into()),
            ..UsageQuery::default()
        })
        .expect("valid");
        assert_eq!(walk.currency, Some(1));
        assert_eq!(walk.start, Some(1_782_864_000));
        assert_eq!(walk.end, Some(1_785_542_400));
        for (query, param) in [
            (
                UsageQuery {
                    page_size: Some("5".into()),
                    ..UsageQuery::default()
                },
                "pageSize",
            ),
            (
                UsageQuery {
                    page_size: Some("1001".into()),
                    ..UsageQuery::default()
                },
                "pageSize",
            ),
            (
                UsageQuery {
                    currency: Some("VCU".into()),
                    ..UsageQuery::default()
                },
                "currency",
            ),
            (
                UsageQuery {
                    start_timestamp: Some("2026-08-01T00:00:00Z".into()),
                    end_timestamp: Some("2026-07-01T00:00:00Z".into()),
                    ..UsageQuery::default()
                },
                "endTimestamp",
            ),
            (
                UsageQuery {
                    start_timestamp: Some("soon".into()),
                    ..UsageQuery::default()
                },
                "startTimestamp",
            ),
        ] {
            let error = Walk::from_query(query).expect_err(param);
            assert_eq!(error.param.as_deref(), Some(param));
        }
    }
}
