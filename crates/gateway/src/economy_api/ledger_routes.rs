//! `/ledger/*`: the ledger's public state, mint quotes, and operations signed by accounts.

use super::*;

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
    let chain = state.chain.as_ref().map(|stakes| {
        let account = wallet::to_alloy(address);
        let stake = stakes.get(account);
        wire::economy::ChainStake {
            head_block: stakes.head(),
            confirmations: stakes.confirmations(),
            followed: stakes.follows(account),
            svvv_units: units(stake.svvv_units),
            diem_allowance_usd_units_per_day: units(stake.diem_allowance_units),
        }
    });
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
                diem_usd_units_per_day: chain.as_ref().map_or_else(
                    || units(balances.diem_allowance_usd_units_per_day),
                    |chain| chain.diem_allowance_usd_units_per_day,
                ),
                total_usd_units_per_day: units(balance.allowance_per_day),
                remaining_usd_units: units(balance.free.allowance),
                next_epoch_begins: (today + 1) * SECONDS_PER_DAY,
            },
            spendable: Spendable {
                allowance_usd_units: units(balance.free.allowance),
                bundled_credit_units: units(balance.free.bundled),
                usd_units: units(balance.free.usd),
            },
            chain,
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
    crate::query::ApiQuery(query): crate::query::ApiQuery<QuoteQuery>,
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
        outcome: receipt_outcome(&receipt.outcome),
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
        Refusal::Unavailable(message) | Refusal::NotTaken(message) => {
            error(ErrorCode::ModelAtCapacity, message).with_retry_after(1)
        }
        // Only the gateway's own usage settlements are answered so.
        Refusal::AlreadySettled => error(ErrorCode::Internal, "the operation was already settled"),
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

fn receipt_outcome(outcome: &Outcome) -> ReceiptOutcome {
    let u = |value: u128| units(value);
    match *outcome {
        Outcome::GenesisApplied {
            genesis_supply_units,
        } => ReceiptOutcome::GenesisApplied {
            genesis_supply_units: u(genesis_supply_units),
        },
        Outcome::Transferred { amount_units, .. } => ReceiptOutcome::Transferred {
            amount_units: u(amount_units),
        },
        Outcome::AirdropClaimed { vvv_units } => ReceiptOutcome::AirdropClaimed {
            vvv_units: u(vvv_units),
        },
        Outcome::UnclaimedAirdropBurned { vvv_units } => ReceiptOutcome::UnclaimedAirdropBurned {
            vvv_units: u(vvv_units),
        },
        Outcome::VestedClaimed { vvv_units } => ReceiptOutcome::VestedClaimed {
            vvv_units: u(vvv_units),
        },
        Outcome::Staked { svvv_units } => ReceiptOutcome::Staked {
            svvv_units: u(svvv_units),
        },
        Outcome::UnstakeInitiated {
            cooling_svvv_units,
            unlock_at_seconds,
        } => ReceiptOutcome::UnstakeInitiated {
            cooling_svvv_units: u(cooling_svvv_units),
            unlock_at: unlock_at_seconds,
        },
        Outcome::UnstakeFinalized { vvv_units } => ReceiptOutcome::UnstakeFinalized {
            vvv_units: u(vvv_units),
        },
        Outcome::RewardsClaimed { vvv_units } => ReceiptOutcome::RewardsClaimed {
            vvv_units: u(vvv_units),
        },
        Outcome::RewardsStaked { svvv_units } => ReceiptOutcome::RewardsStaked {
            svvv_units: u(svvv_units),
        },
        Outcome::DiemMinted {
            diem_units,
            svvv_locked_units,
            mint_rate_after_svvv_units_per_diem,
        } => ReceiptOutcome::DiemMinted {
            diem_units: u(diem_units),
            svvv_locked_units: u(svvv_locked_units),
            mint_rate_after_svvv_units_per_diem: u(mint_rate_after_svvv_units_per_diem),
        },
        Outcome::DiemBurned {
            diem_units,
            svvv_unlocked_units,
        } => ReceiptOutcome::DiemBurned {
            diem_units: u(diem_units),
            svvv_unlocked_units: u(svvv_unlocked_units),
        },
        Outcome::DiemStaked { diem_units } => ReceiptOutcome::DiemStaked {
            diem_units: u(diem_units),
        },
        Outcome::DiemUnstakeInitiated {
            cooling_diem_units,
            unlock_at_seconds,
        } => ReceiptOutcome::DiemUnstakeInitiated {
            cooling_diem_units: u(cooling_diem_units),
            unlock_at: unlock_at_seconds,
        },
        Outcome::DiemUnstakeFinalized { diem_units } => ReceiptOutcome::DiemUnstakeFinalized {
            diem_units: u(diem_units),
        },
        Outcome::EmissionRateSet {
            vvv_units_per_second,
        } => ReceiptOutcome::EmissionRateSet {
            vvv_units_per_second: u(vvv_units_per_second),
        },
        Outcome::MintCurveSet => ReceiptOutcome::MintCurveSet,
        Outcome::ParametersSet => ReceiptOutcome::ParametersSet,
        Outcome::UtilizationReported {
            utilization_bps,
            company_share_bps,
        } => ReceiptOutcome::UtilizationReported {
            utilization_bps,
            company_share_bps,
        },
        Outcome::BoughtBackAndBurned {
            vvv_units,
            revenue_usd_units,
        } => ReceiptOutcome::BoughtBackAndBurned {
            vvv_units: u(vvv_units),
            revenue_usd_units: u(revenue_usd_units),
        },
        Outcome::AccountCredited {
            usd_units,
            bundled_credit_units,
        } => ReceiptOutcome::AccountCredited {
            usd_units: u(usd_units),
            bundled_credit_units: u(bundled_credit_units),
        },
        Outcome::UsageSettled {
            entries,
            usd_units,
            bundled_credit_units,
            allowance_units,
        } => ReceiptOutcome::UsageSettled {
            entries,
            usd_units: u(usd_units),
            bundled_credit_units: u(bundled_credit_units),
            allowance_units: u(allowance_units),
        },
    }
}

/// `GET /chain/airdrop/{address}`: the address's airdrop allocation and its proof, in chain mode
/// with `airdrop_proofs`; 404 where it has none.
pub(crate) async fn airdrop(
    State(state): State<Arc<AppState>>,
    Extension(dialect): Extension<Dialect>,
    Path(address): Path<String>,
) -> Response {
    respond(airdrop_body(&state, &address), dialect)
}

fn airdrop_body(
    state: &AppState,
    address: &str,
) -> Result<wire::economy::AirdropAllocation, ApiError> {
    let address = parse_address(address)?;
    let none = || {
        error(
            ErrorCode::NotFound,
            "this address has no airdrop allocation here",
        )
    };
    let config = state.chain.as_ref().ok_or_else(none)?.config();
    let allocation = config
        .airdrop
        .get(&wallet::to_alloy(address))
        .ok_or_else(none)?;
    // Allocations come from a ledger genesis, whose amounts are u128.
    let amount = u128::try_from(allocation.amount).map_err(|_| none())?;
    Ok(wire::economy::AirdropAllocation {
        object: "chain.airdrop".into(),
        address: address.to_string(),
        chain_id: config.deployment.chain_id,
        contract: config.deployment.airdrop.to_string(),
        amount_units: units(amount),
        proof: allocation.proof.iter().map(ToString::to_string).collect(),
    })
}
