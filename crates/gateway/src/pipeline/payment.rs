//! Payment: a request that may cost up to its price is paid for before it is dispatched, with
//! privacy tokens (their nonces reserved, committed once a provider has the request) or from
//! the caller's account (a reservation under its balance and its key's cap, settled with the
//! real cost when the request ends). Callers without an account pay nothing.

use wire::error::{ApiError, ErrorCode};
use wire::money::Amount;

use super::admission::Tokens;
use super::{Refusal, Seen};
use crate::AppState;

/// What a request paid with, held until it ends.
pub(crate) struct Payment {
    /// Its tokens' nonces, reserved until [`Payment::commit_tokens`].
    pub(crate) tokens: Option<crate::tokens::spent::Reservation>,
    /// Its account's reservation, settled by the request's record.
    pub(crate) metering: Option<economy::Metering>,
}

impl Payment {
    /// A provider has the request: its tokens are spent for good (until now a failure released
    /// them, so the client may send them again).
    pub(crate) async fn commit_tokens(&mut self) -> Result<(), ApiError> {
        if let Some(reservation) = self.tokens.take() {
            reservation.commit().await.map_err(|error| {
                tracing::error!(error = %error, "cannot record spent tokens");
                crate::tokens::Refusal::Unavailable.to_api_error()
            })?;
        }
        Ok(())
    }

    /// The account's balance before the request, for its headers.
    pub(crate) fn balance(&self) -> Option<economy::meter::Balance> {
        self.metering.as_ref().map(|metering| metering.balance)
    }
}

/// Takes payment for a request that may cost up to `max_cost`: reserves its tokens, or
/// reserves the amount on the caller's account (callers without one pay nothing).
pub(crate) async fn pay(
    state: &AppState,
    tokens: &Tokens,
    caller: &crate::auth::Caller,
    max_cost: u128,
    model_id: &str,
    seen: &mut Seen,
) -> Result<Payment, Refusal> {
    let reservation = match tokens {
        Some(tokens) => Some(
            redeem(state, tokens, max_cost, seen)
                .await
                .map_err(|error| (error, model_id.to_owned()))?,
        ),
        None => None,
    };
    let metering = match (&state.economy, caller.account) {
        (Some(economy), Some(account)) => {
            match economy::Metering::begin(economy, account, caller.key_id.as_deref(), max_cost) {
                Ok(metering) => {
                    seen.balance = Some(metering.balance);
                    Some(metering)
                }
                Err(refusal) => return Err((metering_error(refusal, seen), model_id.to_owned())),
            }
        }
        _ => None,
    };
    Ok(Payment {
        tokens: reservation,
        metering,
    })
}

/// Checks the tokens a request carries and reserves them: enough of them to pay `max_cost`,
/// each valid for today and unspent.
pub(crate) async fn redeem(
    state: &AppState,
    tokens: &[privacypass::public_tokens::PublicToken],
    max_cost: u128,
    seen: &mut Seen,
) -> Result<crate::tokens::spent::Reservation, ApiError> {
    let issuer = state
        .tokens
        .as_ref()
        .ok_or_else(super::admission::tokens_not_taken)?;
    let value = issuer.token_value();
    let required = max_cost.div_ceil(value).max(1);
    let sent = u128::try_from(tokens.len()).unwrap_or(u128::MAX);
    if sent < required {
        seen.tokens_required = Some(required);
        return Err(ApiError::new(
            ErrorCode::InsufficientBalance,
            format!(
                "this request may cost up to ${}, {required} tokens of ${} each; it carried \
                 {sent} (lower max_tokens to need fewer)",
                Amount(max_cost).to_decimal_string(),
                Amount(value).to_decimal_string(),
            ),
        ));
    }
    issuer
        .redeem(tokens)
        .await
        .map_err(|refusal| refusal.to_api_error())
}

pub(crate) fn metering_error(refusal: economy::MeterRefusal, seen: &mut Seen) -> ApiError {
    if let economy::MeterRefusal::Insufficient(shortfall) = &refusal {
        seen.balance = Some(shortfall.balance);
    }
    crate::economy_api::meter_refusal_error(refusal)
}

#[cfg(test)]
mod tests {
    use economy::keys::{LimitPeriod, SpendLimit};
    use economy::{EconomyConfig, KeyKind, Signing};
    use ledger::{Address, Op, UNITS_PER_TOKEN};
    use wallet::Units;

    use super::*;
    use crate::config::GatewayConfig;
    use crate::pipeline::testing;

    #[tokio::test]
    async fn an_account_pays_by_reservation_and_its_keys_cap_bounds_what_is_in_flight() {
        let dir = tempfile::tempdir().expect("temp dir");
        let gateway = testing::gateway(GatewayConfig {
            economy: Some(EconomyConfig::in_dir(dir.path())),
            ..GatewayConfig::default()
        });
        let state = testing::state(&gateway);
        let economy = state.economy.as_ref().expect("a ledger");
        let account = Address([7; 20]);
        economy
            .submit(
                economy.operator,
                Op::CreditAccount {
                    account,
                    usd_units: UNITS_PER_TOKEN,
                    bundled_credit_units: 0,
                },
                Signing::Operator,
            )
            .await
            .expect("$1 credited");
        // A key that may spend 300 base units in its lifetime.
        let minted = economy
            .keys
            .create(
                account,
                KeyKind::Inference,
                "capped".into(),
                None,
                Some(SpendLimit {
                    usd_units: Units(300),
                    period: LimitPeriod::Lifetime,
                }),
                economy.clock.now(),
            )
            .expect("a key");
        economy.refresh_account(account);
        let caller = crate::auth::Caller {
            name: minted.key.id.clone(),
            kind: Some(KeyKind::Inference),
            rate: state.tiers.limit_for(""),
            account: Some(account),
            key_id: Some(minted.key.id.clone()),
        };
        let mut seen = Seen::default();
        let Ok(first) = pay(state, &None, &caller, 200, "m", &mut seen).await else {
            panic!("a request within the cap and the balance was refused");
        };
        assert!(first.tokens.is_none());
        assert_eq!(
            first.balance().map(|balance| balance.free.usd),
            Some(UNITS_PER_TOKEN),
            "the balance before the request, for its headers"
        );
        // A second at once would pass the cap together with the first: refused.
        let Err((refusal, model)) =
            pay(state, &None, &caller, 200, "m", &mut Seen::default()).await
        else {
            panic!("a request past the cap was let in");
        };
        assert_eq!(refusal.code, ErrorCode::ApiKeyLifetimeSpendLimitExceeded);
        assert_eq!(model, "m");
        // The first ends without running: its reservation comes back.
        drop(first);
        let again = pay(state, &None, &caller, 200, "m", &mut Seen::default()).await;
        assert!(again.is_ok());
        // A request that may cost more than the whole balance is refused, saying what is left.
        let mut seen = Seen::default();
        let uncapped = crate::auth::Caller {
            key_id: None,
            ..caller
        };
        let Err((refusal, _)) =
            pay(state, &None, &uncapped, 2 * UNITS_PER_TOKEN, "m", &mut seen).await
        else {
            panic!("a request past the balance was let in");
        };
        assert_eq!(refusal.status(), 402);
        assert!(seen.balance.is_some());
    }
}
