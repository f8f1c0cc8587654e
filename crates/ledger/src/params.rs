//! Operator-set parameters: cooldowns, the locked-stake yield, the spendable-DIEM minimum and the
//! utilization → company-share curve, each with its published default and its validation.
//! Owns no balances; a parameter change never moves an amount by itself.

use crate::{BASIS_POINTS, SECONDS_PER_DAY, UNITS_PER_TOKEN};

/// Longest cooldown the operator may set: a year. A typo must not lock stake for a century.
pub const MAXIMUM_COOLDOWN_SECONDS: u64 = 365 * SECONDS_PER_DAY;

/// Most points a utilization split may have: enough for any piecewise-linear policy worth
/// writing down, and a bound on the work per emission accrual.
pub const MAXIMUM_SPLIT_POINTS: usize = 16;

/// Ceiling on the spendable-DIEM minimum: a thousand DIEM. Above that the minimum stops being a
/// dust guard and becomes a gate, which is a policy this ledger does not model.
pub const MAXIMUM_MINIMUM_SPENDABLE_STAKED_DIEM_UNITS: u128 = 1_000 * UNITS_PER_TOKEN;

/// sVVV unstake cooldown [V]: 7 days.
pub const DEFAULT_UNSTAKE_COOLDOWN_SECONDS: u64 = 7 * SECONDS_PER_DAY;

/// DIEM unstake cooldown [V]: 1 day.
pub const DEFAULT_DIEM_UNSTAKE_COOLDOWN_SECONDS: u64 = SECONDS_PER_DAY;

/// sVVV locked behind DIEM earns 80% of the yield of unlocked stake [3P].
pub const DEFAULT_LOCKED_YIELD_BPS: u32 = 8_000;

/// Staked DIEM below 0.1 is not spendable [V].
pub const DEFAULT_MINIMUM_SPENDABLE_STAKED_DIEM_UNITS: u128 = UNITS_PER_TOKEN / 10;

/// One point of the utilization split: at `utilization_bps` of API capacity used, the company
/// takes `company_share_bps` of the emissions that accrue to unlocked stake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitPoint {
    pub utilization_bps: u32,
    pub company_share_bps: u32,
}

/// The company's share of emissions as a piecewise-linear function of API utilization.
/// Published points [V]: stakers 80% at 0%, 20% at 50%, 80% at 100% utilization; linear between
/// them is an inference, hence configurable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UtilizationSplit {
    pub points: Vec<SplitPoint>,
}

impl UtilizationSplit {
    pub fn venice_default() -> Self {
        Self {
            points: vec![
                SplitPoint {
                    utilization_bps: 0,
                    company_share_bps: 2_000,
                },
                SplitPoint {
                    utilization_bps: 5_000,
                    company_share_bps: 8_000,
                },
                SplitPoint {
                    utilization_bps: 10_000,
                    company_share_bps: 2_000,
                },
            ],
        }
    }

    /// Valid when it has 2 to 16 points, starts at 0% and ends at 100% utilization with
    /// strictly rising utilizations, and every share is at most 100%.
    pub fn is_valid(&self) -> bool {
        let bps = BASIS_POINTS_U32;
        let (Some(first), Some(last)) = (self.points.first(), self.points.last()) else {
            return false;
        };
        (2..=MAXIMUM_SPLIT_POINTS).contains(&self.points.len())
            && first.utilization_bps == 0
            && last.utilization_bps == bps
            && self.points.iter().all(|point| point.company_share_bps <= bps)
            && self
                .points
                .windows(2)
                .all(|pair| matches!(pair, [before, after] if before.utilization_bps < after.utilization_bps))
    }

    /// The company's share at a utilization, interpolated between the neighbouring points and
    /// rounded down to a whole basis point. Only called on a valid split; utilization above 100%
    /// is treated as 100%.
    pub fn company_share_bps(&self, utilization_bps: u32) -> u32 {
        let utilization = utilization_bps.min(BASIS_POINTS_U32);
        for pair in self.points.windows(2) {
            if let [before, after] = pair
                && utilization <= after.utilization_bps
            {
                // A convex combination of the two shares, so it never leaves their range:
                // (s0 · (u1 − u) + s1 · (u − u0)) / (u1 − u0).
                let span = u64::from(after.utilization_bps - before.utilization_bps);
                let weighted = u64::from(before.company_share_bps)
                    * u64::from(after.utilization_bps - utilization)
                    + u64::from(after.company_share_bps)
                        * u64::from(utilization - before.utilization_bps);
                let share = weighted / span;
                return u32::try_from(share).unwrap_or(BASIS_POINTS_U32);
            }
        }
        self.points
            .last()
            .map_or(0, |point| point.company_share_bps)
    }
}

const BASIS_POINTS_U32: u32 = 10_000;
const _: () = assert!(BASIS_POINTS_U32 as u128 == BASIS_POINTS);

/// Everything the operator may change after genesis with `Op::SetParameters`. Genesis terms
/// (vesting, the airdrop window) are deliberately not here: changing them later would rewrite
/// promises already made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parameters {
    pub unstake_cooldown_seconds: u64,
    pub diem_unstake_cooldown_seconds: u64,
    /// Yield of locked sVVV as a share of the yield of unlocked sVVV, in basis points.
    pub locked_yield_bps: u32,
    pub minimum_spendable_staked_diem_units: u128,
    pub utilization_split: UtilizationSplit,
}

impl Default for Parameters {
    fn default() -> Self {
        Self {
            unstake_cooldown_seconds: DEFAULT_UNSTAKE_COOLDOWN_SECONDS,
            diem_unstake_cooldown_seconds: DEFAULT_DIEM_UNSTAKE_COOLDOWN_SECONDS,
            locked_yield_bps: DEFAULT_LOCKED_YIELD_BPS,
            minimum_spendable_staked_diem_units: DEFAULT_MINIMUM_SPENDABLE_STAKED_DIEM_UNITS,
            utilization_split: UtilizationSplit::venice_default(),
        }
    }
}

impl Parameters {
    pub fn is_valid(&self) -> bool {
        self.unstake_cooldown_seconds <= MAXIMUM_COOLDOWN_SECONDS
            && self.diem_unstake_cooldown_seconds <= MAXIMUM_COOLDOWN_SECONDS
            && self.locked_yield_bps <= BASIS_POINTS_U32
            && self.minimum_spendable_staked_diem_units
                <= MAXIMUM_MINIMUM_SPENDABLE_STAKED_DIEM_UNITS
            && self.utilization_split.is_valid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_split_hits_the_published_points() {
        let split = UtilizationSplit::venice_default();
        assert!(split.is_valid());
        assert_eq!(split.company_share_bps(0), 2_000);
        assert_eq!(split.company_share_bps(2_500), 5_000);
        assert_eq!(split.company_share_bps(5_000), 8_000);
        assert_eq!(split.company_share_bps(7_500), 5_000);
        assert_eq!(split.company_share_bps(10_000), 2_000);
        assert_eq!(split.company_share_bps(60_000), 2_000);
        // 0.2 + 1.2 · 0.0001 = 0.20012 → 2001.2 bps, rounded down.
        assert_eq!(split.company_share_bps(1), 2_001);
        // 0.8 − 1.2 · 0.0001 = 0.79988 → 7998.8 bps, rounded down.
        assert_eq!(split.company_share_bps(5_001), 7_998);
    }

    #[test]
    fn invalid_splits_and_parameters_are_refused() {
        let point = |utilization_bps, company_share_bps| SplitPoint {
            utilization_bps,
            company_share_bps,
        };
        for points in [
            vec![],
            vec![point(0, 0)],
            vec![point(1, 0), point(10_000, 0)],
            vec![point(0, 0), point(9_999, 0)],
            vec![point(0, 0), point(5_000, 10_001), point(10_000, 0)],
            vec![
                point(0, 0),
                point(5_000, 0),
                point(5_000, 0),
                point(10_000, 0),
            ],
        ] {
            assert!(!UtilizationSplit { points }.is_valid());
        }
        assert!(Parameters::default().is_valid());
        let long_cooldown = Parameters {
            unstake_cooldown_seconds: MAXIMUM_COOLDOWN_SECONDS + 1,
            ..Parameters::default()
        };
        assert!(!long_cooldown.is_valid());
        let generous = Parameters {
            locked_yield_bps: 10_001,
            ..Parameters::default()
        };
        assert!(!generous.is_valid());
    }
}
