//! Emissions: VVV minted per second at an admin-set rate, split between the company and stakers by
//! API utilization, and handed to stakers through two per-share accumulators, one for unlocked
//! stake and one for stake locked behind DIEM. Pure arithmetic over the values it is given: it
//! never reads the clock and never touches an account.

use crate::params::Parameters;
use crate::wide::mul_div_floor;
use crate::{BASIS_POINTS, UNITS_PER_TOKEN};

/// Fixed-point scale of the per-share accumulators (reward base units per staked base unit).
///
/// A distribution loses less than `staked / scale` base units to rounding, about 10^-10 VVV
/// with all of the genesis supply staked. The scale is also the smallest stake that receives
/// emissions ([`MINIMUM_STAKE_FOR_EMISSIONS_UNITS`]), which bounds every accumulator increment
/// by the emission itself, so the accumulators cannot outgrow u128 while the supply fits in it.
pub const REWARD_PER_SHARE_SCALE: u128 = UNITS_PER_TOKEN;

/// While less than one whole sVVV is staked (unlocked and locked together), nothing is emitted
/// and the time passes unrewarded, as in MasterChef with an empty pool. Without a floor, a
/// single staked base unit would make the per-share increment as large as the emission times
/// the scale.
pub const MINIMUM_STAKE_FOR_EMISSIONS_UNITS: u128 = UNITS_PER_TOKEN;

/// Ceiling on the emission rate: 10 VVV a second (315M a year, three times the genesis supply
/// and twenty times the launch rate). With time in u64 seconds it keeps all emissions ever
/// below 2 · 10^38, inside u128, so accrual never has to refuse anything.
pub const MAXIMUM_EMISSION_RATE_UNITS_PER_SECOND: u128 = 10 * UNITS_PER_TOKEN;

/// The emission state that changes with time and admin operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Emissions {
    pub(crate) rate_vvv_units_per_second: u128,
    pub(crate) utilization_bps: u32,
    /// Rewards per unlocked staked base unit since genesis, times the scale.
    pub(crate) reward_per_share: u128,
    /// Rewards per locked base unit since genesis, times the scale.
    pub(crate) reward_per_locked_share: u128,
}

/// What passing `elapsed_seconds` at the current rate and utilization emits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Accrual {
    pub(crate) gross_units: u128,
    pub(crate) to_stakers_units: u128,
    pub(crate) to_company_units: u128,
    pub(crate) reward_per_share_after: u128,
    pub(crate) reward_per_locked_share_after: u128,
}

/// The company's share of the emissions that accrue to unlocked stake, from the utilization.
pub(crate) fn company_share_bps(emissions: &Emissions, parameters: &Parameters) -> u32 {
    parameters
        .utilization_split
        .company_share_bps(emissions.utilization_bps)
}

/// The stakers' share of the emissions that accrue to locked stake, in basis points of it:
/// locked stake earns `locked_yield_bps` of what unlocked stake earns, so it is that fraction
/// of the unlocked stakers' share. Rounded down.
pub(crate) fn locked_staker_share_bps(emissions: &Emissions, parameters: &Parameters) -> u128 {
    let unlocked_staker_share = BASIS_POINTS - u128::from(company_share_bps(emissions, parameters));
    unlocked_staker_share * u128::from(parameters.locked_yield_bps) / BASIS_POINTS
}

/// Emissions over an interval, split and turned into accumulator increments.
///
/// The gross emission is divided between unlocked and locked stake pro rata (rounded down for
/// unlocked, the rest to locked). Unlocked stakers get `10,000 − company_share_bps` of theirs;
/// locked stakers get `locked_yield_bps` of that rate; the company gets everything else, so the
/// three parts always add up to the gross exactly. Each increment is rounded down, so the sum
/// of what accounts can claim never exceeds what was emitted to stakers.
pub(crate) fn accrual(
    emissions: &Emissions,
    parameters: &Parameters,
    elapsed_seconds: u64,
    staked_units: u128,
    locked_units: u128,
) -> Accrual {
    let unchanged = Accrual {
        reward_per_share_after: emissions.reward_per_share,
        reward_per_locked_share_after: emissions.reward_per_locked_share,
        ..Accrual::default()
    };
    let Some(stake_units) = staked_units.checked_add(locked_units) else {
        panic!("staked plus locked sVVV exceeds u128, so supply was not conserved");
    };
    if stake_units < MINIMUM_STAKE_FOR_EMISSIONS_UNITS
        || emissions.rate_vvv_units_per_second == 0
        || elapsed_seconds == 0
    {
        return unchanged;
    }
    let Some(gross_units) = emissions
        .rate_vvv_units_per_second
        .checked_mul(u128::from(elapsed_seconds))
    else {
        panic!("the emission rate ceiling keeps rate × elapsed inside u128");
    };
    let gross_to_unlocked = floor(gross_units, staked_units, stake_units);
    let gross_to_locked = gross_units - gross_to_unlocked;
    let company_bps = u128::from(company_share_bps(emissions, parameters));
    let to_unlocked_stakers = floor(gross_to_unlocked, BASIS_POINTS - company_bps, BASIS_POINTS);
    let to_locked_stakers = floor(
        gross_to_locked,
        (BASIS_POINTS - company_bps) * u128::from(parameters.locked_yield_bps),
        BASIS_POINTS * BASIS_POINTS,
    );
    let to_stakers_units = to_unlocked_stakers + to_locked_stakers;
    let increment = |reward: u128, shares: u128| {
        if shares == 0 {
            0
        } else {
            floor(reward, REWARD_PER_SHARE_SCALE, shares)
        }
    };
    let Some(reward_per_share_after) = emissions
        .reward_per_share
        .checked_add(increment(to_unlocked_stakers, staked_units))
    else {
        panic!("the unlocked accumulator is bounded by all emissions, which fit in u128");
    };
    let Some(reward_per_locked_share_after) = emissions
        .reward_per_locked_share
        .checked_add(increment(to_locked_stakers, locked_units))
    else {
        panic!("the locked accumulator is bounded by all emissions, which fit in u128");
    };
    Accrual {
        gross_units,
        to_stakers_units,
        to_company_units: gross_units - to_stakers_units,
        reward_per_share_after,
        reward_per_locked_share_after,
    }
}

/// `⌊value × numerator / denominator⌋` where the caller knows the result is at most `value`.
fn floor(value: u128, numerator: u128, denominator: u128) -> u128 {
    match mul_div_floor(value, numerator, denominator) {
        Some(result) => result,
        None => panic!("a share of an amount is at most the amount"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emissions_at(rate: u128, utilization_bps: u32) -> Emissions {
        Emissions {
            rate_vvv_units_per_second: rate,
            utilization_bps,
            ..Emissions::default()
        }
    }

    #[test]
    fn parts_add_up_to_the_gross_at_every_utilization() {
        let parameters = Parameters::default();
        for utilization_bps in [0, 1, 2_500, 5_000, 7_777, 10_000] {
            let emissions = emissions_at(443_937_087_772_704_211, utilization_bps);
            let accrual = accrual(
                &emissions,
                &parameters,
                86_400,
                3 * UNITS_PER_TOKEN + 1,
                7 * UNITS_PER_TOKEN,
            );
            assert_eq!(accrual.gross_units, 443_937_087_772_704_211 * 86_400);
            assert_eq!(
                accrual.to_stakers_units + accrual.to_company_units,
                accrual.gross_units
            );
        }
    }

    #[test]
    fn locked_stake_earns_eighty_percent_of_unlocked_yield() {
        let parameters = Parameters::default();
        // Utilization 0: the company takes 20% of unlocked stake's emissions.
        let emissions = emissions_at(UNITS_PER_TOKEN, 0);
        let accrual = accrual(
            &emissions,
            &parameters,
            1_000,
            500 * UNITS_PER_TOKEN,
            500 * UNITS_PER_TOKEN,
        );
        let per_unlocked = accrual.reward_per_share_after;
        let per_locked = accrual.reward_per_locked_share_after;
        // Half the gross (500 VVV) accrues to each half: unlocked stakers get 80% = 400 VVV,
        // locked stakers 80% of that rate = 320 VVV.
        assert_eq!(per_unlocked, 400 * REWARD_PER_SHARE_SCALE / 500);
        assert_eq!(per_locked, 320 * REWARD_PER_SHARE_SCALE / 500);
        assert_eq!(accrual.to_company_units, 280 * UNITS_PER_TOKEN);
    }

    #[test]
    fn nothing_is_emitted_below_the_minimum_stake() {
        let parameters = Parameters::default();
        let emissions = emissions_at(UNITS_PER_TOKEN, 0);
        let accrual = accrual(&emissions, &parameters, 1_000, UNITS_PER_TOKEN - 1, 0);
        assert_eq!(accrual.gross_units, 0);
        assert_eq!(accrual.reward_per_share_after, 0);
    }
}
