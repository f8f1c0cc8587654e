//! `/api_keys*`: an account's API keys, created by its ADMIN key or minted with a wallet
//! signature over a stateless challenge.

use super::*;

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

/// A key as Venice lists it, with what it spent in the week to `today`.
fn key_json(key: &StoredKey, today: u64) -> ApiKey {
    ApiKey {
        id: key.id.clone(),
        api_key_type: key.kind.as_str().into(),
        description: key.description.clone(),
        last6_chars: key.last6.clone(),
        created_at: Some(Timestamp(key.created_at)),
        expires_at: key.expires_at.map(Timestamp),
        last_used_at: key.last_used_at.map(Timestamp),
        consumption_limits: limits_json(key.limit),
        limit_period: limit_period(key.limit),
        model_privacy: MODEL_PRIVACY.into(),
        usage: Some(KeyUsage {
            trailing_seven_days: SpentAmounts {
                usd: usd(key.spent_in_week_to(today)),
                vcu: Dollars(0),
                diem: Dollars(0),
            },
        }),
        current_period_usage: key.limit.map(|_| PeriodUsage {
            usd: usd(key.spent_in_period_of(today)),
            diem: Dollars(0),
        }),
    }
}

/// A key just made, with its secret.
fn created_json(minted: economy::keys::Minted) -> CreatedApiKey {
    let key = minted.key;
    CreatedApiKey {
        id: key.id,
        api_key: minted.secret,
        api_key_type: key.kind.as_str().into(),
        description: key.description,
        expires_at: key.expires_at.map(Timestamp),
        consumption_limit: limits_json(key.limit),
        limit_period: limit_period(key.limit),
        model_privacy: MODEL_PRIVACY.into(),
    }
}

/// Every model here is private, so a key is never narrowed to private ones.
const MODEL_PRIVACY: &str = "ALL";

/// The one cap, in dollars and in DIEM (worth a dollar each).
fn limits_json(limit: Option<SpendLimit>) -> ConsumptionLimits {
    let cap = limit.map(|limit| DollarNumber(limit.usd_units.0));
    ConsumptionLimits {
        usd: cap,
        diem: cap,
    }
}

/// The limit's period; a key without a limit reads as Venice's default, the UTC day.
fn limit_period(limit: Option<SpendLimit>) -> String {
    limit
        .map_or(LimitPeriod::Epoch, |limit| limit.period)
        .as_str()
        .into()
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
        KeyError::Unavailable(_) => {
            tracing::warn!(error = %failure, "a key change did not reach the shared key table");
            error(
                ErrorCode::ModelAtCapacity,
                "the gateway's shared key table cannot be reached; try again shortly",
            )
            .with_retry_after(1)
        }
    }
}

pub(crate) async fn list_keys(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        let (economy, account) = key_holder(&state, &headers, true)?;
        let today = economy.clock.today();
        Ok(List {
            object: "list".into(),
            data: economy
                .keys
                .list(account)
                .iter()
                .map(|key| key_json(key, today))
                .collect(),
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
                data: key_json(key, economy.clock.today()),
            })
            .ok_or_else(|| error(ErrorCode::NotFound, "no such API key"))
    })();
    respond(result, dialect)
}

fn spend_limit(
    limit: Option<RequestedLimit>,
    period: Option<LimitPeriod>,
) -> Result<Option<SpendLimit>, ApiError> {
    let Some(limit) = limit else {
        return Ok(None);
    };
    let parse = |number: serde_json::Number, param: &str| {
        Amount::parse_decimal(&number.to_string())
            .map_err(|failure| ApiError::invalid(param, failure.to_string()))
    };
    let amount = match (limit.usd, limit.diem) {
        (None, None) => return Ok(None),
        (Some(usd), None) => parse(usd, "consumptionLimit.usd")?,
        (None, Some(diem)) => parse(diem, "consumptionLimit.diem")?,
        (Some(usd), Some(diem)) => {
            let (usd, diem) = (
                parse(usd, "consumptionLimit.usd")?,
                parse(diem, "consumptionLimit.diem")?,
            );
            if usd != diem {
                return Err(ApiError::invalid(
                    "consumptionLimit",
                    "a key has one cap here (DIEM is worth a dollar): give usd or diem, or the same amount in both",
                ));
            }
            usd
        }
    };
    Ok(Some(SpendLimit {
        usd_units: Units(amount.0),
        period: period.unwrap_or(LimitPeriod::Epoch),
    }))
}

/// An address field (`0x` and 40 hex digits), or the client's 400 naming it.
fn address_field(text: &str, param: &str) -> Result<Address, ApiError> {
    Address::from_hex(text)
        .ok_or_else(|| ApiError::invalid(param, "an address is 0x and 40 hex digits"))
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
    let result = async {
        let economy = economy(&state)?;
        let caller = authenticated(&state, &headers)?;
        require_admin(&caller)?;
        let request: CreateApiKey = parse_json(&body)?;
        let named = request
            .account
            .as_deref()
            .map(|text| address_field(text, "account"))
            .transpose()?;
        let account = match (caller.account, named) {
            (Some(own), None) => own,
            (Some(own), Some(named)) if named == own => own,
            (Some(_), Some(_)) => {
                return Err(error(
                    ErrorCode::Unauthorized,
                    "an account's key can only create keys for its own account",
                ));
            }
            (None, Some(named)) => named,
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
        if request.expires_at.is_some_and(|expiry| expiry.0 <= now) {
            return Err(ApiError::invalid("expiresAt", "the expiry is in the past"));
        }
        let limit = spend_limit(request.consumption_limit, request.limit_period)?;
        let minted = economy
            .create_key(
                account,
                request.api_key_type,
                request.description,
                request.expires_at.map(|expiry| expiry.0),
                limit,
                now,
            )
            .await
            .map_err(key_error)?;
        economy.refresh_account(account);
        tracing::info!(key = %minted.key.id, "API key created");
        Ok(Succeeded {
            success: true,
            data: created_json(minted),
        })
    }
    .await;
    respond(result, dialect)
}

pub(crate) async fn update_key(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let result = async {
        let (economy, account) = key_holder(&state, &headers, true)?;
        let request: UpdateApiKey = parse_json(&body)?;
        count_key_change(&state, account)?;
        if let Some(description) = &request.description {
            check_description(description)?;
        }
        let limit = match request.consumption_limit {
            Some(limit) => Some(spend_limit(Some(limit), request.limit_period)?),
            None => None,
        };
        let updated = economy
            .update_key(account, &request.id, |key| {
                if let Some(description) = request.description {
                    key.description = description;
                }
                if let Some(expires_at) = request.expires_at {
                    key.expires_at = expires_at.map(|expiry| expiry.0);
                }
                if let Some(limit) = limit {
                    key.limit = limit;
                }
            })
            .await
            .map_err(key_error)?;
        // Venice's answer to an update carries no usage.
        let data = ApiKey {
            usage: None,
            current_period_usage: None,
            ..key_json(&updated, economy.clock.today())
        };
        Ok(Succeeded {
            success: true,
            data,
        })
    }
    .await;
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
    crate::query::ApiQuery(query): crate::query::ApiQuery<IdQuery>,
) -> Response {
    let result = async {
        let (economy, account) = key_holder(&state, &headers, true)?;
        count_key_change(&state, account)?;
        economy
            .delete_key(account, &query.id)
            .await
            .map_err(key_error)?;
        tracing::info!(key = %query.id, "API key deleted");
        Ok(Deleted { success: true })
    }
    .await;
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

pub(crate) async fn web3_key(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    body: bytes::Bytes,
) -> Response {
    let result = async {
        let economy = economy(&state)?;
        let request: Web3KeyRequest = parse_json(&body)?;
        let address = address_field(&request.address, "address")?;
        let signature = wallet::SignatureBytes::from_hex(&request.signature)
            .ok_or_else(|| ApiError::invalid("signature", wallet::SIGNATURE_FORM))?;
        let now = economy.clock.now();
        // Cheapest first: the challenge's own MAC, then the signature, then the ledger.
        let stamp = state.key_challenges.check(&request.token).map_err(|_| {
            error(
                ErrorCode::AuthenticationFailed,
                "unknown or expired token; GET /api_keys/generate_web3_key for a new one",
            )
        })?;
        let recovered = alloy_primitives::Signature::from_raw(&signature.0)
            .and_then(|signature| signature.recover_address_from_msg(request.token.as_bytes()))
            .map_err(|failure| ApiError::invalid("signature", failure.to_string()))?;
        let recovered = wallet::from_alloy(recovered);
        if recovered != address {
            return Err(error(
                ErrorCode::AuthenticationFailed,
                "the signature was not made by `address` over the token (personal_sign)",
            ));
        }
        let staked = match &state.chain {
            // In chain mode the stake is on the chain, read now (held back for confirmations).
            Some(stakes) => {
                stakes
                    .read_now(wallet::to_alloy(recovered))
                    .await
                    .map_err(|reason| {
                        tracing::warn!(%reason, "cannot read a stake from the chain");
                        error(
                            ErrorCode::ModelAtCapacity,
                            "the chain cannot be read right now; try again shortly",
                        )
                        .with_retry_after(5)
                    })?
                    .svvv_units
            }
            None => economy.read(|store| {
                let balances = store
                    .ledger()
                    .balances(recovered, store.ledger().now_seconds());
                balances
                    .staked_svvv_units
                    .saturating_add(balances.locked_svvv_units)
            }),
        };
        if staked == 0 {
            return Err(error(
                ErrorCode::Unauthorized,
                match &state.chain {
                    Some(stakes) => format!(
                        "minting a key with a wallet needs staked sVVV in that wallet, on the \
                         chain and {} blocks deep",
                        stakes.confirmations()
                    ),
                    None => "minting a key with a wallet needs staked sVVV in that wallet".into(),
                },
            ));
        }
        let description = request.description.unwrap_or_else(|| "Web3 key".to_owned());
        check_description(&description)?;
        let limit = spend_limit(request.consumption_limit, request.limit_period)?;
        count_key_change(&state, recovered)?;
        // The challenge is spent now: a wallet signs in with each token at most once (at any
        // replica of a cluster).
        let used = || {
            error(
                ErrorCode::AuthenticationFailed,
                "this token was already used; GET /api_keys/generate_web3_key for a new one",
            )
        };
        let ttl_nanos = state.key_challenges.ttl_nanos();
        match &state.cluster {
            Some(cluster) => {
                let taken = cluster
                    .take_stamp(&recovered.to_string(), stamp, ttl_nanos)
                    .await
                    .map_err(|unavailable| unavailable.to_api_error())?;
                if !taken {
                    return Err(used());
                }
            }
            None => state
                .key_challenge_uses
                .take(&recovered, stamp, ttl_nanos)
                .map_err(|refusal| match refusal {
                    crate::challenge::ChallengeError::Busy => error(
                        ErrorCode::ModelAtCapacity,
                        "too many wallets are minting keys; try again shortly",
                    )
                    .with_retry_after(60),
                    _ => used(),
                })?,
        }
        let minted = economy
            .create_key(
                recovered,
                request.api_key_type.unwrap_or(KeyKind::Inference),
                description,
                None,
                limit,
                now,
            )
            .await
            .map_err(key_error)?;
        economy.refresh_account(recovered);
        tracing::info!(key = %minted.key.id, "API key minted with a wallet signature");
        Ok(Succeeded {
            success: true,
            data: created_json(minted),
        })
    }
    .await;
    respond(result, dialect)
}
