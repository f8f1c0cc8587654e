//! The economy's HTTP API: ledger state and signed operations (`/ledger/*`), API keys
//! (`/api_keys*`, wallet-signed minting included), balances and usage (`/billing/*`). Amounts
//! a client computes with are base units (10^-18) as decimal strings (`*_units`); amounts in
//! Venice's own shapes are exact decimal dollars.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::HeaderMap;
use ledger::{Address, Outcome, Rejection};
use serde::Deserialize;
use serde_json::{Value, json};
use wallet::{JsonAddress, Operation, SignedOperation, Units};
use wire::economy::{
    Allowance, ApiKey, ApiTier, Apr, BaseUnits, BillingBalance, BillingBalances, ClockAdvanced,
    ConsumptionLimit, Data, Deleted, DiemLiability, Dollars, Eip712Domain, Emissions, KeyUsage,
    LedgerAccount, LedgerReceipt, LedgerStatus, List, MintQuote, ModelRateLimits, Parameters,
    RateLimitAmount, RateLimitHit, RateLimits, Spendable, Succeeded, Supply, UsageDay,
    UsageHistory, Web3Challenge,
};
use wire::error::{ApiError, Dialect, ErrorCode};
use wire::money::Amount;

use economy::keys::{KeyError, LimitPeriod, MAX_DESCRIPTION_CHARS, SpendLimit, StoredKey};
use economy::{Economy, KeyKind, MAX_DEADLINE_AHEAD_SECONDS, Refusal, SECONDS_PER_DAY, Signing};

use crate::auth::Caller;
use crate::{AppState, error_response};

/// Longest body of an economy request.
pub(crate) const MAX_ECONOMY_BODY_BYTES: usize = 64 * 1024;
/// Changes to an account's keys (create, update, delete, mint) a minute: each rewrites the key
/// table on disk.
const KEY_CHANGES_PER_MINUTE: u32 = 30;

fn per_minute(requests_per_minute: u32) -> crate::config::RateLimit {
    crate::config::RateLimit {
        requests_per_minute,
        tokens_per_minute: u64::MAX,
    }
}

fn slow_down(what: &str, wait: std::time::Duration) -> ApiError {
    error(
        ErrorCode::RateLimitExceeded,
        format!("too many {what} this minute; wait before the next"),
    )
    .with_retry_after(wait.as_secs().max(1))
}

/// Counts a change to `account`'s keys, or refuses it when the account made too many this
/// minute.
fn count_key_change(state: &AppState, account: Address) -> Result<(), ApiError> {
    let now = std::time::Instant::now();
    let status = state.rate.check(
        &format!("keys/{account}"),
        per_minute(KEY_CHANGES_PER_MINUTE),
        now,
    );
    if status.allowed {
        Ok(())
    } else {
        Err(slow_down("key changes", status.reset_after))
    }
}

/// What a client is told when its account cannot pay for what it asked.
pub(crate) fn meter_refusal_error(refusal: economy::MeterRefusal) -> ApiError {
    use economy::MeterRefusal;
    match refusal {
        MeterRefusal::Insufficient(shortfall) => {
            let free = shortfall.balance.free;
            ApiError::new(
                ErrorCode::InsufficientBalance,
                format!(
                    "insufficient balance: this may cost up to ${}; the account has \
                     ${} of today's allowance, ${} of bundled credits and ${} left",
                    Amount(shortfall.needed).to_decimal_string(),
                    Amount(free.allowance).to_decimal_string(),
                    Amount(free.bundled).to_decimal_string(),
                    Amount(free.usd).to_decimal_string(),
                ),
            )
        }
        MeterRefusal::KeyCap { remaining, period } => ApiError::new(
            period.error_code(),
            format!(
                "this API key's spend limit is reached: ${} left this period",
                Amount(remaining).to_decimal_string()
            ),
        ),
        MeterRefusal::Unavailable => ApiError::new(
            ErrorCode::ModelAtCapacity,
            "the ledger is unavailable, so metered requests are refused",
        )
        .with_retry_after(5),
    }
}

fn units(value: u128) -> BaseUnits {
    BaseUnits(value)
}

/// Dollars as an exact decimal string (a JSON number would pass through a float here).
fn usd(value: u128) -> Dollars {
    Dollars(value)
}

fn error(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

fn economy(state: &AppState) -> Result<&Arc<Economy>, ApiError> {
    state.economy.as_ref().ok_or_else(|| {
        error(
            ErrorCode::NotFound,
            "this gateway runs without a ledger (no data directory)",
        )
    })
}

fn respond<T: serde::Serialize>(result: Result<T, ApiError>, dialect: Dialect) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(error) => error_response(&error, dialect),
    }
}

fn parse_address(text: &str) -> Result<Address, ApiError> {
    Address::from_hex(text)
        .ok_or_else(|| ApiError::invalid("address", "an address is 0x and 40 hex digits"))
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let param = if path == "." { None } else { Some(path) };
        let mut api = ApiError::new(ErrorCode::InvalidRequest, error.inner().to_string());
        if let Some(param) = param {
            api = api.with_param(param);
        }
        api
    })
}

/// The account a key-holding caller acts for, and whether it may manage keys.
fn account_of(caller: &Caller) -> Result<Address, ApiError> {
    caller.account.ok_or_else(|| {
        error(
            ErrorCode::Unauthorized,
            "this endpoint needs an API key that belongs to an account (minted with \
             /api_keys/generate_web3_key or created by one)",
        )
    })
}

fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.kind == Some(KeyKind::Admin) {
        Ok(())
    } else {
        Err(error(
            ErrorCode::Unauthorized,
            "this endpoint needs an ADMIN key",
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Ledger

pub(crate) async fn status(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
) -> Response {
    respond(status_body(&state), dialect)
}

fn status_body(state: &AppState) -> Result<LedgerStatus, ApiError> {
    let economy = economy(state)?;
    let now = economy.clock.now();
    Ok(economy.read(|store| {
        let ledger = store.ledger();
        let supply = ledger.supply();
        let split = ledger.emission_split();
        let apr = ledger.staking_apr();
        let liability = ledger.diem_liability();
        let parameters = ledger.parameters();
        LedgerStatus {
            object: "ledger.status".into(),
            sequence: store.last_sequence(),
            record_hash: store.last_record_hash().to_string(),
            now,
            today: now / SECONDS_PER_DAY,
            next_epoch_begins: (now / SECONDS_PER_DAY + 1) * SECONDS_PER_DAY,
            operator: economy.operator.to_string(),
            genesis_seconds: ledger.genesis_seconds(),
            eip712_domain: Eip712Domain {
                name: wallet::Domain::NAME.into(),
                version: wallet::Domain::VERSION.into(),
                salt: format!("0x{}", hex::encode(economy.domain.salt)),
            },
            supply: Supply {
                genesis_vvv_units: units(supply.genesis_vvv_units),
                total_vvv_units: units(supply.total_vvv_units),
                circulating_vvv_units: units(supply.circulating_vvv_units),
                burned_vvv_units: units(supply.burned_vvv_units),
                burned_by_buyback_vvv_units: units(supply.burned_by_buyback_vvv_units),
                burned_unclaimed_airdrop_vvv_units: units(
                    supply.burned_unclaimed_airdrop_vvv_units,
                ),
                emitted_to_stakers_vvv_units: units(supply.emitted_to_stakers_vvv_units),
                emitted_to_company_vvv_units: units(supply.emitted_to_company_vvv_units),
                liquid_vvv_units: units(supply.liquid_vvv_units),
                staked_svvv_units: units(supply.staked_svvv_units),
                cooling_svvv_units: units(supply.cooling_svvv_units),
                locked_svvv_units: units(supply.locked_svvv_units),
                reward_pool_vvv_units: units(supply.reward_pool_vvv_units),
                diem_supply_units: units(supply.diem_supply_units),
                staked_diem_units: units(supply.staked_diem_units),
                buyback_revenue_usd_units: units(supply.buyback_revenue_usd_units),
                usage_revenue_usd_units: units(supply.usage_revenue_usd_units),
            },
            mint_rate_svvv_units_per_diem: units(ledger.mint_rate_svvv_units_per_diem()),
            emissions: Emissions {
                rate_vvv_units_per_second: units(split.emission_rate_vvv_units_per_second),
                utilization_bps: split.utilization_bps,
                company_share_of_unlocked_bps: split.company_share_of_unlocked_bps,
                stakers_share_of_unlocked_bps: split.stakers_share_of_unlocked_bps,
                stakers_share_of_locked_bps: split.stakers_share_of_locked_bps,
            },
            apr_bps: Apr {
                unlocked: apr.unlocked.basis_points().map(units),
                locked: apr.locked.basis_points().map(units),
            },
            diem_liability: DiemLiability {
                outstanding_diem_units: units(liability.outstanding_diem_units),
                liability_usd_units_per_day: units(liability.liability_usd_units_per_day),
                staked_diem_units: units(liability.staked_diem_units),
                locked_svvv_units: units(liability.locked_svvv_units),
                locked_svvv_units_per_diem: liability.locked_svvv_units_per_diem.map(units),
            },
            parameters: Parameters {
                unstake_cooldown_seconds: parameters.unstake_cooldown_seconds,
                diem_unstake_cooldown_seconds: parameters.diem_unstake_cooldown_seconds,
                locked_yield_bps: parameters.locked_yield_bps,
                minimum_spendable_staked_diem_units: units(
                    parameters.minimum_spendable_staked_diem_units,
                ),
            },
        }
    }))
}

pub(crate) async fn account(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    Path(address): Path<String>,
) -> Response {
    respond(account_body(&state, &address), dialect)
}

fn account_body(state: &AppState, address: &str) -> Result<LedgerAccount, ApiError> {
    let economy = economy(state)?;
    let address = parse_address(address)?;
    let now = economy.clock.now();
    let today = now / SECONDS_PER_DAY;
    let balance = economy.meter.balance(address, today);
    Ok(economy.read(|store| {
        let ledger = store.ledger();
        let balances = ledger.balances(address, now.max(ledger.now_seconds()));
        LedgerAccount {
            object: "ledger.account".into(),
            address: address.to_string(),
            nonce: balances.nonce,
            vvv_units: units(balances.vvv_units),
            staked_svvv_units: units(balances.staked_svvv_units),
            cooling_svvv_units: units(balances.cooling_svvv_units),
            svvv_unlock_at: balances.svvv_unlock_at_seconds,
            locked_svvv_units: units(balances.locked_svvv_units),
            diem_minted_outstanding_units: units(balances.diem_minted_outstanding_units),
            diem_units: units(balances.diem_units),
            staked_diem_units: units(balances.staked_diem_units),
            cooling_diem_units: units(balances.cooling_diem_units),
            diem_unlock_at: balances.diem_unlock_at_seconds,
            pending_rewards_units: units(balances.pending_rewards_units),
            usd_credit_units: units(balances.usd_credit_units),
            bundled_credit_units: units(balances.bundled_credit_units),
            airdrop_claimable_units: units(balances.airdrop_claimable_units),
            vesting_claimable_units: units(balances.vesting_claimable_units),
            vesting_unvested_units: units(balances.vesting_unvested_units),
            allowance: Allowance {
                day: today,
                diem_usd_units_per_day: units(balances.diem_allowance_usd_units_per_day),
                total_usd_units_per_day: units(balance.allowance_per_day),
                remaining_usd_units: units(balance.free.allowance),
                next_epoch_begins: (today + 1) * SECONDS_PER_DAY,
            },
            spendable: Spendable {
                allowance_usd_units: units(balance.free.allowance),
                bundled_credit_units: units(balance.free.bundled),
                usd_units: units(balance.free.usd),
            },
        }
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuoteQuery {
    svvv_units: Option<String>,
    diem_units: Option<String>,
}

pub(crate) async fn quote(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    Query(query): Query<QuoteQuery>,
) -> Response {
    respond(quote_body(&state, &query), dialect)
}

fn quote_body(state: &AppState, query: &QuoteQuery) -> Result<MintQuote, ApiError> {
    let economy = economy(state)?;
    let parse = |name: &str, text: &str| {
        text.parse::<u128>().map_err(|_| {
            ApiError::invalid(name, "base units (10^-18) as a string of decimal digits")
        })
    };
    economy.read(|store| {
        let ledger = store.ledger();
        let rate = ledger.mint_rate_svvv_units_per_diem();
        match (&query.svvv_units, &query.diem_units) {
            (Some(svvv), None) => {
                let svvv = parse("svvv_units", svvv)?;
                let quote = ledger.preview_mint(svvv).ok_or_else(|| {
                    ApiError::invalid("svvv_units", "the curve cannot price this mint")
                })?;
                Ok(MintQuote {
                    object: "ledger.mint_quote".into(),
                    svvv_units: units(quote.svvv_units),
                    diem_units: units(quote.diem_units),
                    mint_rate_svvv_units_per_diem: units(rate),
                })
            }
            (None, Some(diem)) => {
                let diem = parse("diem_units", diem)?;
                let svvv = ledger.quote_mint_svvv_units(diem).ok_or_else(|| {
                    ApiError::invalid("diem_units", "the curve cannot price this mint")
                })?;
                Ok(MintQuote {
                    object: "ledger.mint_quote".into(),
                    svvv_units: units(svvv),
                    diem_units: units(diem),
                    mint_rate_svvv_units_per_diem: units(rate),
                })
            }
            _ => Err(ApiError::invalid(
                "svvv_units",
                "give exactly one of svvv_units (what to lock) or diem_units (what to mint)",
            )),
        }
    })
}

pub(crate) async fn submit(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    body: bytes::Bytes,
) -> Response {
    match submit_body(&state, &body).await {
        Ok(body) => Json(body).into_response(),
        Err(error) => error_response(&error, dialect),
    }
}

async fn submit_body(state: &AppState, body: &[u8]) -> Result<LedgerReceipt, ApiError> {
    let economy = economy(state)?;
    let signed: SignedOperation = parse_json(body)?;
    let op = signed.operation.to_op();
    let now = economy.clock.now();
    if signed.deadline < now {
        return Err(ApiError::invalid(
            "deadline",
            format!(
                "the signature expired at {}; it is now {now}",
                signed.deadline
            ),
        ));
    }
    if signed.deadline > now + MAX_DEADLINE_AHEAD_SECONDS {
        return Err(ApiError::invalid(
            "deadline",
            format!("a deadline may be at most {MAX_DEADLINE_AHEAD_SECONDS} s ahead"),
        ));
    }
    let authorization = signed.authorization();
    let recovered = wallet::recover_signer(&economy.domain, &op, &authorization)
        .map_err(|failure| ApiError::invalid("signature", failure.to_string()))?;
    if recovered != signed.signer.0 {
        return Err(error(
            ErrorCode::AuthenticationFailed,
            "the signature was not made by `signer` over this operation, nonce, deadline and \
             this ledger's EIP-712 domain",
        ));
    }
    // A signer is counted only for operations the ledger commits (a refused one writes
    // nothing), so a stranger's signatures fill no table. The operator's own are not limited.
    let rate_key = format!("ledger/{recovered}");
    let limit = per_minute(economy.config.operations_per_minute_per_signer);
    let limited = recovered != economy.operator;
    if let Some(wait) = limited
        .then(|| {
            state
                .rate
                .over_budget(&rate_key, limit, std::time::Instant::now())
        })
        .flatten()
    {
        return Err(slow_down("ledger operations", wait));
    }
    let receipt = economy
        .submit(recovered, op, Signing::User(authorization))
        .await
        .map_err(refusal_error)?;
    if limited {
        state
            .rate
            .check(&rate_key, limit, std::time::Instant::now());
    }
    tracing::info!(
        sequence = receipt.sequence,
        operation = kind_of(&signed.operation),
        "ledger operation committed"
    );
    Ok(LedgerReceipt {
        object: "ledger.receipt".into(),
        sequence: receipt.sequence,
        record_hash: receipt.record_hash.to_string(),
        outcome: outcome_json(&receipt.outcome),
    })
}

fn kind_of(operation: &Operation) -> String {
    serde_json::to_value(operation)
        .ok()
        .and_then(|value| value.get("type").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

fn refusal_error(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Nonce { expected, got } => ApiError::invalid(
            "nonce",
            format!(
                "nonce {got} is not the account's next nonce {expected} (replayed or out of order)"
            ),
        ),
        Refusal::Expired { deadline, now } => ApiError::invalid(
            "deadline",
            format!(
                "the signature's deadline {deadline} passed before it was committed (now {now})"
            ),
        ),
        Refusal::Rejected(rejection) => rejection_error(rejection),
        Refusal::Unavailable(message) => {
            error(ErrorCode::ModelAtCapacity, message).with_retry_after(1)
        }
    }
}

fn rejection_error(rejection: Rejection) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!(
            "the ledger refused the operation: {} (rejection {})",
            rejection.name(),
            rejection.code()
        ),
    )
}

fn outcome_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::GenesisApplied {
            genesis_supply_units,
        } => {
            json!({"type": "genesis_applied", "genesis_supply_units": units(*genesis_supply_units)})
        }
        Outcome::Transferred { amount_units, .. } => {
            json!({"type": "transferred", "amount_units": units(*amount_units)})
        }
        Outcome::AirdropClaimed { vvv_units } => {
            json!({"type": "airdrop_claimed", "vvv_units": units(*vvv_units)})
        }
        Outcome::UnclaimedAirdropBurned { vvv_units } => {
            json!({"type": "unclaimed_airdrop_burned", "vvv_units": units(*vvv_units)})
        }
        Outcome::VestedClaimed { vvv_units } => {
            json!({"type": "vested_claimed", "vvv_units": units(*vvv_units)})
        }
        Outcome::Staked { svvv_units } => {
            json!({"type": "staked", "svvv_units": units(*svvv_units)})
        }
        Outcome::UnstakeInitiated {
            cooling_svvv_units,
            unlock_at_seconds,
        } => {
            json!({"type": "unstake_initiated", "cooling_svvv_units": units(*cooling_svvv_units), "unlock_at": unlock_at_seconds})
        }
        Outcome::UnstakeFinalized { vvv_units } => {
            json!({"type": "unstake_finalized", "vvv_units": units(*vvv_units)})
        }
        Outcome::RewardsClaimed { vvv_units } => {
            json!({"type": "rewards_claimed", "vvv_units": units(*vvv_units)})
        }
        Outcome::RewardsStaked { svvv_units } => {
            json!({"type": "rewards_staked", "svvv_units": units(*svvv_units)})
        }
        Outcome::DiemMinted {
            diem_units,
            svvv_locked_units,
            mint_rate_after_svvv_units_per_diem,
        } => {
            json!({"type": "diem_minted", "diem_units": units(*diem_units), "svvv_locked_units": units(*svvv_locked_units), "mint_rate_after_svvv_units_per_diem": units(*mint_rate_after_svvv_units_per_diem)})
        }
        Outcome::DiemBurned {
            diem_units,
            svvv_unlocked_units,
        } => {
            json!({"type": "diem_burned", "diem_units": units(*diem_units), "svvv_unlocked_units": units(*svvv_unlocked_units)})
        }
        Outcome::DiemStaked { diem_units } => {
            json!({"type": "diem_staked", "diem_units": units(*diem_units)})
        }
        Outcome::DiemUnstakeInitiated {
            cooling_diem_units,
            unlock_at_seconds,
        } => {
            json!({"type": "diem_unstake_initiated", "cooling_diem_units": units(*cooling_diem_units), "unlock_at": unlock_at_seconds})
        }
        Outcome::DiemUnstakeFinalized { diem_units } => {
            json!({"type": "diem_unstake_finalized", "diem_units": units(*diem_units)})
        }
        Outcome::EmissionRateSet {
            vvv_units_per_second,
        } => {
            json!({"type": "emission_rate_set", "vvv_units_per_second": units(*vvv_units_per_second)})
        }
        Outcome::MintCurveSet => json!({"type": "mint_curve_set"}),
        Outcome::ParametersSet => json!({"type": "parameters_set"}),
        Outcome::UtilizationReported {
            utilization_bps,
            company_share_bps,
        } => {
            json!({"type": "utilization_reported", "utilization_bps": utilization_bps, "company_share_bps": company_share_bps})
        }
        Outcome::BoughtBackAndBurned {
            vvv_units,
            revenue_usd_units,
        } => {
            json!({"type": "bought_back_and_burned", "vvv_units": units(*vvv_units), "revenue_usd_units": units(*revenue_usd_units)})
        }
        Outcome::AccountCredited {
            usd_units,
            bundled_credit_units,
        } => {
            json!({"type": "account_credited", "usd_units": units(*usd_units), "bundled_credit_units": units(*bundled_credit_units)})
        }
        other => json!({"type": format!("{other:?}")}),
    }
}

// ---------------------------------------------------------------------------------------------
// API keys

fn key_json(key: &StoredKey) -> ApiKey {
    ApiKey {
        id: key.id.clone(),
        api_key_type: key.kind.as_str().into(),
        description: key.description.clone(),
        last6_chars: key.last6.clone(),
        created_at: key.created_at,
        expires_at: key.expires_at,
        last_used_at: key.last_used_at,
        consumption_limit: key.limit.map(|limit| ConsumptionLimit {
            usd: usd(limit.usd_units.0),
        }),
        limit_period: key.limit.map(|limit| limit.period.as_str().into()),
        usage: KeyUsage {
            usd: usd(key.lifetime_units.0),
        },
        api_key: None,
    }
}

fn key_error(failure: KeyError) -> ApiError {
    match failure {
        KeyError::NotFound => error(ErrorCode::NotFound, "no such API key"),
        KeyError::TooMany | KeyError::TooManyForAccount => {
            error(ErrorCode::InvalidRequest, failure.to_string())
        }
        KeyError::Io { .. } => {
            tracing::error!(error = %failure, "cannot save the key table");
            error(ErrorCode::Internal, "the key table could not be saved")
        }
    }
}

fn authenticated(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    crate::pipeline::admission::authenticate(state, headers)
}

/// The economy and the account of a caller whose key belongs to one (an ADMIN key if
/// `admin`).
fn key_holder<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    admin: bool,
) -> Result<(&'a Arc<Economy>, Address), ApiError> {
    let economy = economy(state)?;
    let caller = authenticated(state, headers)?;
    if admin {
        require_admin(&caller)?;
    }
    Ok((economy, account_of(&caller)?))
}

pub(crate) async fn list_keys(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        let (economy, account) = key_holder(&state, &headers, true)?;
        Ok(List {
            object: "list".into(),
            data: economy.keys.list(account).iter().map(key_json).collect(),
        })
    })();
    respond(result, dialect)
}

pub(crate) async fn get_key(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = (|| {
        let (economy, account) = key_holder(&state, &headers, true)?;
        economy
            .keys
            .list(account)
            .iter()
            .find(|key| key.id == id)
            .map(|key| Data {
                data: key_json(key),
            })
            .ok_or_else(|| error(ErrorCode::NotFound, "no such API key"))
    })();
    respond(result, dialect)
}

/// A spend cap as a request gives it (Venice's: a JSON number of dollars).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RequestedLimit {
    usd: Option<serde_json::Number>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateKey {
    api_key_type: KeyKind,
    description: String,
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(default)]
    consumption_limit: Option<RequestedLimit>,
    #[serde(default)]
    limit_period: Option<LimitPeriod>,
    /// Only for the operator's own (configured) ADMIN keys: the account to create the key for.
    #[serde(default)]
    account: Option<JsonAddress>,
}

fn spend_limit(
    limit: Option<RequestedLimit>,
    period: Option<LimitPeriod>,
) -> Result<Option<SpendLimit>, ApiError> {
    let Some(usd) = limit.and_then(|limit| limit.usd) else {
        return Ok(None);
    };
    let amount = Amount::parse_decimal(&usd.to_string())
        .map_err(|failure| ApiError::invalid("consumptionLimit.usd", failure.to_string()))?;
    Ok(Some(SpendLimit {
        usd_units: Units(amount.0),
        period: period.unwrap_or(LimitPeriod::Epoch),
    }))
}

fn check_description(description: &str) -> Result<(), ApiError> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS || description.trim().is_empty() {
        return Err(ApiError::invalid(
            "description",
            format!("a description is 1 to {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(())
}

pub(crate) async fn create_key(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let result = (|| {
        let economy = economy(&state)?;
        let caller = authenticated(&state, &headers)?;
        require_admin(&caller)?;
        let request: CreateKey = parse_json(&body)?;
        let account = match (caller.account, request.account) {
            (Some(own), None) => own,
            (Some(own), Some(named)) if named.0 == own => own,
            (Some(_), Some(_)) => {
                return Err(error(
                    ErrorCode::Unauthorized,
                    "an account's key can only create keys for its own account",
                ));
            }
            (None, Some(named)) => named.0,
            (None, None) => {
                return Err(ApiError::invalid(
                    "account",
                    "the operator's keys must name the account to create a key for",
                ));
            }
        };
        check_description(&request.description)?;
        count_key_change(&state, account)?;
        let now = economy.clock.now();
        if request.expires_at.is_some_and(|expiry| expiry <= now) {
            return Err(ApiError::invalid("expiresAt", "the expiry is in the past"));
        }
        let limit = spend_limit(request.consumption_limit, request.limit_period)?;
        let minted = economy
            .keys
            .create(
                account,
                request.api_key_type,
                request.description,
                request.expires_at,
                limit,
                now,
            )
            .map_err(key_error)?;
        economy.refresh_account(account);
        let data = ApiKey {
            api_key: Some(minted.secret),
            ..key_json(&minted.key)
        };
        tracing::info!(key = %minted.key.id, "API key created");
        Ok(Data { data })
    })();
    respond(result, dialect)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateKey {
    id: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    expires_at: Option<Option<u64>>,
    #[serde(default)]
    consumption_limit: Option<RequestedLimit>,
    #[serde(default)]
    limit_period: Option<LimitPeriod>,
}

pub(crate) async fn update_key(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let result = (|| {
        let (economy, account) = key_holder(&state, &headers, true)?;
        let request: UpdateKey = parse_json(&body)?;
        count_key_change(&state, account)?;
        if let Some(description) = &request.description {
            check_description(description)?;
        }
        let limit = match request.consumption_limit {
            Some(limit) => Some(spend_limit(Some(limit), request.limit_period)?),
            None => None,
        };
        let updated = economy
            .keys
            .update(account, &request.id, |key| {
                if let Some(description) = request.description {
                    key.description = description;
                }
                if let Some(expires_at) = request.expires_at {
                    key.expires_at = expires_at;
                }
                if let Some(limit) = limit {
                    key.limit = limit;
                }
            })
            .map_err(key_error)?;
        Ok(Data {
            data: key_json(&updated),
        })
    })();
    respond(result, dialect)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdQuery {
    id: String,
}

pub(crate) async fn delete_key(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
    Query(query): Query<IdQuery>,
) -> Response {
    let result = (|| {
        let (economy, account) = key_holder(&state, &headers, true)?;
        count_key_change(&state, account)?;
        economy.keys.delete(account, &query.id).map_err(key_error)?;
        tracing::info!(key = %query.id, "API key deleted");
        Ok(Deleted { success: true })
    })();
    respond(result, dialect)
}

pub(crate) async fn web3_challenge(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
) -> Response {
    let result = (|| {
        // Only a gateway with a ledger mints keys.
        economy(&state)?;
        // Stateless: nothing is kept per challenge, so asking for many fills nothing.
        let (token, expires_at) = state.key_challenges.issue();
        Ok(Succeeded {
            success: true,
            data: Web3Challenge { token, expires_at },
        })
    })();
    respond(result, dialect)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Web3Key {
    address: JsonAddress,
    signature: wallet::SignatureBytes,
    token: String,
    #[serde(default)]
    api_key_type: Option<KeyKind>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    consumption_limit: Option<RequestedLimit>,
    #[serde(default)]
    limit_period: Option<LimitPeriod>,
}

pub(crate) async fn web3_key(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    body: bytes::Bytes,
) -> Response {
    let result = (|| {
        let economy = economy(&state)?;
        let request: Web3Key = parse_json(&body)?;
        let now = economy.clock.now();
        // Cheapest first: the challenge's own MAC, then the signature, then the ledger.
        let stamp = state.key_challenges.check(&request.token).map_err(|_| {
            error(
                ErrorCode::AuthenticationFailed,
                "unknown or expired token; GET /api_keys/generate_web3_key for a new one",
            )
        })?;
        let recovered = alloy_primitives::Signature::from_raw(&request.signature.0)
            .and_then(|signature| signature.recover_address_from_msg(request.token.as_bytes()))
            .map_err(|failure| ApiError::invalid("signature", failure.to_string()))?;
        let recovered = wallet::from_alloy(recovered);
        if recovered != request.address.0 {
            return Err(error(
                ErrorCode::AuthenticationFailed,
                "the signature was not made by `address` over the token (personal_sign)",
            ));
        }
        let staked = economy.read(|store| {
            let balances = store
                .ledger()
                .balances(recovered, store.ledger().now_seconds());
            balances
                .staked_svvv_units
                .saturating_add(balances.locked_svvv_units)
        });
        if staked == 0 {
            return Err(error(
                ErrorCode::Unauthorized,
                "minting a key with a wallet needs staked sVVV in that wallet",
            ));
        }
        let description = request.description.unwrap_or_else(|| "Web3 key".to_owned());
        check_description(&description)?;
        let limit = spend_limit(request.consumption_limit, request.limit_period)?;
        count_key_change(&state, recovered)?;
        // The challenge is spent now: a wallet signs in with each token at most once.
        state
            .key_challenge_uses
            .take(&recovered, stamp, state.key_challenges.ttl_nanos())
            .map_err(|refusal| match refusal {
                crate::challenge::ChallengeError::Busy => error(
                    ErrorCode::ModelAtCapacity,
                    "too many wallets are minting keys; try again shortly",
                )
                .with_retry_after(60),
                _ => error(
                    ErrorCode::AuthenticationFailed,
                    "this token was already used; GET /api_keys/generate_web3_key for a new one",
                ),
            })?;
        let minted = economy
            .keys
            .create(
                recovered,
                request.api_key_type.unwrap_or(KeyKind::Inference),
                description,
                None,
                limit,
                now,
            )
            .map_err(key_error)?;
        economy.refresh_account(recovered);
        let data = ApiKey {
            api_key: Some(minted.secret),
            ..key_json(&minted.key)
        };
        tracing::info!(key = %minted.key.id, "API key minted with a wallet signature");
        Ok(Succeeded {
            success: true,
            data,
        })
    })();
    respond(result, dialect)
}

// ---------------------------------------------------------------------------------------------
// Balances, limits and usage

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
