//! The economy's HTTP API, a module per part: ledger state and signed operations
//! (`ledger_routes.rs`, `/ledger/*`), API keys (`keys.rs`, `/api_keys*`, wallet-signed minting
//! included), balances, limits and usage (`billing.rs`, `/billing/*`, `/api_keys/rate_limits*`,
//! `/admin/clock`). This file holds what they share: finding the economy and the caller, and
//! answering. Amounts a client computes with are base units (10^-18) as decimal strings
//! (`*_units`); amounts in Venice's own shapes are exact decimal dollars.

mod billing;
mod keys;
mod ledger_routes;

pub(crate) use billing::{
    advance_clock, billing_balance, rate_limit_log, rate_limits, usage_days, usage_history,
};
pub(crate) use keys::{
    create_key, delete_key, get_key, list_keys, update_key, web3_challenge, web3_key,
};
pub(crate) use ledger_routes::{account, airdrop, quote, status, submit};

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::HeaderMap;
use ledger::{Address, Outcome, Rejection};
use serde::Deserialize;
use serde_json::Value;
use wallet::{Operation, SignedOperation, Units};
use wire::economy::{
    Allowance, ApiKey, ApiTier, Apr, BaseUnits, BillingBalance, BillingBalances, Charge,
    ClockAdvanced, ConsumptionLimits, CreateApiKey, CreatedApiKey, Data, Deleted, DiemLiability,
    DollarNumber, Dollars, Eip712Domain, Emissions, KeyUsage, LedgerAccount, LedgerReceipt,
    LedgerStatus, List, MintQuote, ModelRateLimits, Parameters, PeriodUsage, RateLimitAmount,
    RateLimitHit, RateLimits, ReceiptOutcome, RequestedLimit, Spendable, SpentAmounts, Succeeded,
    Supply, Timestamp, UpdateApiKey, UsageDay, UsageDays, UsageEntry, UsageHistory, Web3Challenge,
    Web3KeyRequest,
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
