//! The DIEM mint curve: 256 (DIEM supply, mint rate) points, interpolated linearly and integrated
//! exactly to price a mint, with a default generated from `90 · exp(2 · (S / 38,000)^3)` in
//! integer arithmetic. Owns pricing only: it never touches balances and never uses floats.

use crate::UNITS_PER_TOKEN;
use crate::wide::{U256, mul_div_floor};

/// The on-chain curve is a table of exactly this many points [3P]; a table of another length is
/// refused rather than guessed at.
pub const CURVE_POINT_COUNT: usize = 256;

/// Ceiling on a point's supply. One million DIEM is $1M a day of inference, far past any
/// deployment this ledger targets, and the bound keeps the exact cost integral inside 256 bits.
pub const MAXIMUM_CURVE_SUPPLY_DIEM: u64 = 1_000_000;

/// Ceiling on a mint rate: a billion sVVV for one DIEM is ten times the genesis supply, which
/// means "minting is closed"; the bound keeps the exact cost integral inside 256 bits.
pub const MAXIMUM_MINT_RATE_SVVV_UNITS_PER_DIEM: u128 = 1_000_000_000 * UNITS_PER_TOKEN;

/// Launch base rate in whole sVVV per DIEM [V].
pub const DEFAULT_BASE_RATE_SVVV_PER_DIEM: u128 = 90;

/// Launch adjustment power [V]: the factor in front of the cubic exponent.
pub const DEFAULT_ADJUSTMENT_POWER: u128 = 2;

/// Launch target supply in whole DIEM [V]; at this supply the rate is `90 · e²`.
pub const DEFAULT_TARGET_SUPPLY_DIEM: u128 = 38_000;

/// Spacing of the on-chain table's supply points, in whole DIEM [3P].
pub const DEFAULT_SUPPLY_STEP_DIEM: u64 = 500;

/// Fixed-point scale of the integer exponential: 30 decimal digits, so its rounding stays about
/// ten digits below the last base unit of any rate it produces.
const EXP_SCALE: u128 = 1_000_000_000_000_000_000_000_000_000_000;

/// Euler's number times `EXP_SCALE`, rounded to the nearest integer
/// (e = 2.718281828459045235360287471352662497757…).
const E_TIMES_EXP_SCALE: u128 = 2_718_281_828_459_045_235_360_287_471_353;

/// One row of the table: from `supply_diem` whole DIEM of supply on, one DIEM costs
/// `rate_svvv_units_per_diem` sVVV base units (interpolated towards the next row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurvePoint {
    pub supply_diem: u64,
    pub rate_svvv_units_per_diem: u128,
}

/// Why a proposed table was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurveError {
    WrongPointCount { found: usize },
    FirstSupplyNotZero,
    SupplyNotIncreasing { index: usize },
    SupplyTooLarge { index: usize },
    ZeroRate,
    RateDecreasing { index: usize },
    RateTooLarge { index: usize },
}

/// What a mint costs: `diem_units` minted for `svvv_units` locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MintQuote {
    pub diem_units: u128,
    pub svvv_units: u128,
}

/// A validated table, with the exact cost of every whole segment below each point precomputed.
///
/// The price of moving supply from `a` to `b` is `F(b) − F(a)`, where `F(x)` is the exact
/// integral of the interpolated rate from 0 to `x`, rounded up to a base unit. Because every
/// mint is priced as a difference of the same function, prices telescope: one mint of `X` and
/// `k` mints that add up to `X` lock exactly the same sVVV, with no rounding bound at all, and
/// each mint is within one base unit of the exact integral.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MintCurve {
    points: Vec<CurvePoint>,
    /// `doubled_cost_before[k]` is twice the exact sVVV base units that moving supply from zero
    /// to point `k` costs. Doubled because a trapezoid over whole DIEM can end in a half unit.
    doubled_cost_before: Vec<u128>,
}

impl MintCurve {
    /// Validates a table: exactly 256 points, the first at supply zero, supplies strictly rising
    /// up to [`MAXIMUM_CURVE_SUPPLY_DIEM`], rates non-zero, non-decreasing and at most
    /// [`MAXIMUM_MINT_RATE_SVVV_UNITS_PER_DIEM`].
    pub fn new(points: Vec<CurvePoint>) -> Result<Self, CurveError> {
        if points.len() != CURVE_POINT_COUNT {
            return Err(CurveError::WrongPointCount {
                found: points.len(),
            });
        }
        let Some(first) = points.first() else {
            return Err(CurveError::WrongPointCount { found: 0 });
        };
        if first.supply_diem != 0 {
            return Err(CurveError::FirstSupplyNotZero);
        }
        if first.rate_svvv_units_per_diem == 0 {
            return Err(CurveError::ZeroRate);
        }
        for (index, point) in points.iter().enumerate() {
            if point.supply_diem > MAXIMUM_CURVE_SUPPLY_DIEM {
                return Err(CurveError::SupplyTooLarge { index });
            }
            if point.rate_svvv_units_per_diem > MAXIMUM_MINT_RATE_SVVV_UNITS_PER_DIEM {
                return Err(CurveError::RateTooLarge { index });
            }
        }
        for (offset, pair) in points.windows(2).enumerate() {
            let index = offset + 1;
            if let [before, after] = pair {
                if after.supply_diem <= before.supply_diem {
                    return Err(CurveError::SupplyNotIncreasing { index });
                }
                if after.rate_svvv_units_per_diem < before.rate_svvv_units_per_diem {
                    return Err(CurveError::RateDecreasing { index });
                }
            }
        }
        let mut doubled_cost_before = Vec::with_capacity(points.len());
        let mut running: u128 = 0;
        doubled_cost_before.push(running);
        for (offset, pair) in points.windows(2).enumerate() {
            if let [before, after] = pair {
                // Whole DIEM times a rate per DIEM is base units; the bounds above keep the sum
                // below 2 · 10^6 · 2 · 10^27, far inside u128, but it is checked all the same.
                let width_diem = u128::from(after.supply_diem - before.supply_diem);
                let segment = before
                    .rate_svvv_units_per_diem
                    .checked_add(after.rate_svvv_units_per_diem)
                    .and_then(|sum| sum.checked_mul(width_diem))
                    .and_then(|segment| segment.checked_add(running));
                let Some(next) = segment else {
                    return Err(CurveError::SupplyTooLarge { index: offset + 1 });
                };
                running = next;
                doubled_cost_before.push(running);
            }
        }
        Ok(Self {
            points,
            doubled_cost_before,
        })
    }

    /// The default table: supply `500 · i` DIEM for `i` in `0..256`, rate
    /// `90 · exp(2 · (S / 38,000)^3)` computed in integers, capped at
    /// [`MAXIMUM_MINT_RATE_SVVV_UNITS_PER_DIEM`] (reached above 76,000 DIEM).
    pub fn venice_default() -> Self {
        match Self::new(Self::venice_default_points()) {
            Ok(curve) => curve,
            Err(error) => panic!("the default mint curve is invalid: {error:?}"),
        }
    }

    /// The points of [`MintCurve::venice_default`], e.g. to propose a modified table.
    pub fn venice_default_points() -> Vec<CurvePoint> {
        (0..CURVE_POINT_COUNT as u64)
            .map(|index| {
                let supply_diem = index * DEFAULT_SUPPLY_STEP_DIEM;
                CurvePoint {
                    supply_diem,
                    rate_svvv_units_per_diem: default_rate_svvv_units_per_diem(u128::from(
                        supply_diem,
                    )),
                }
            })
            .collect()
    }

    pub fn points(&self) -> &[CurvePoint] {
        &self.points
    }

    /// The index of the segment that holds `supply_units`: the last point at or below it.
    fn segment_index(&self, supply_units: u128) -> usize {
        let at_or_below = self.points.partition_point(|point| {
            u128::from(point.supply_diem) * UNITS_PER_TOKEN <= supply_units
        });
        assert!(at_or_below >= 1, "the first curve point is at supply zero");
        at_or_below - 1
    }

    /// The mint rate at a DIEM supply (in base units), interpolated and rounded down; past the
    /// last point the rate stays at the last point's.
    pub fn rate_at(&self, supply_units: u128) -> u128 {
        let index = self.segment_index(supply_units);
        let start = self.points[index];
        let Some(end) = self.points.get(index + 1) else {
            return start.rate_svvv_units_per_diem;
        };
        let start_units = u128::from(start.supply_diem) * UNITS_PER_TOKEN;
        let width_units = u128::from(end.supply_diem - start.supply_diem) * UNITS_PER_TOKEN;
        let rise = end.rate_svvv_units_per_diem - start.rate_svvv_units_per_diem;
        // The offset is below the width, so the interpolated rise is at most `rise`.
        let partial_rise =
            mul_div_floor(rise, supply_units - start_units, width_units).unwrap_or(rise);
        start.rate_svvv_units_per_diem + partial_rise
    }

    /// `F(x)`: the sVVV base units that moving DIEM supply from zero to `supply_units` costs,
    /// the exact integral of the interpolated rate rounded up. `None` when it exceeds u128
    /// (only far past the last point of an extreme table), which callers read as unaffordable.
    pub fn cumulative_cost_svvv_units(&self, supply_units: u128) -> Option<u128> {
        let index = self.segment_index(supply_units);
        let start = self.points[index];
        let start_units = u128::from(start.supply_diem) * UNITS_PER_TOKEN;
        let offset_units = supply_units - start_units;
        let doubled_before = self.doubled_cost_before[index];
        let (whole_before, half_before) = (doubled_before / 2, doubled_before % 2);
        let rate = start.rate_svvv_units_per_diem;
        let partial = match self.points.get(index + 1) {
            // Past the last point the rate is flat:
            // half/2 + offset · rate / w = (half · w + 2 · offset · rate) / (2 · w).
            None => U256::product(offset_units, rate)
                .checked_mul_u128(2)?
                .checked_add(U256::from_u128(half_before * UNITS_PER_TOKEN))?
                .div_ceil_u128(2 * UNITS_PER_TOKEN)?
                .to_u128()?,
            // Within a segment of width W (base units) the rate is r + rise · t / W, so
            // half/2 + ∫₀^offset rate / w
            //   = (half · W · w + 2 · W · offset · r + rise · offset²) / (2 · W · w),
            // divided in two exact ceiling steps (⌈⌈n / a⌉ / b⌉ = ⌈n / ab⌉).
            Some(end) => {
                let width_units = u128::from(end.supply_diem - start.supply_diem) * UNITS_PER_TOKEN;
                let rise = end.rate_svvv_units_per_diem - rate;
                U256::product(half_before * width_units, UNITS_PER_TOKEN)
                    .checked_add(
                        U256::product(offset_units, rate).checked_mul_u128(2 * width_units)?,
                    )?
                    .checked_add(U256::product(offset_units, offset_units).checked_mul_u128(rise)?)?
                    .div_ceil_u128(2 * width_units)?
                    .div_ceil_u128(UNITS_PER_TOKEN)?
                    .to_u128()?
            }
        };
        whole_before.checked_add(partial)
    }

    /// The sVVV base units that minting `diem_units` more DIEM at supply `supply_units` locks,
    /// or `None` when that is beyond representable amounts.
    pub fn quote_svvv_units(&self, supply_units: u128, diem_units: u128) -> Option<u128> {
        let before = self.cumulative_cost_svvv_units(supply_units)?;
        let after = self.cumulative_cost_svvv_units(supply_units.checked_add(diem_units)?)?;
        Some(after - before)
    }

    /// The most DIEM that at most `budget_svvv_units` buys at supply `supply_units`, and its
    /// exact cost. Found by bisection on the cost, which rises with the amount, so the answer is
    /// the largest amount whose cost fits: one more base unit of DIEM would not.
    pub fn mint_for_budget(
        &self,
        supply_units: u128,
        budget_svvv_units: u128,
    ) -> Option<MintQuote> {
        let cost_before = self.cumulative_cost_svvv_units(supply_units)?;
        let cost_of = |diem_units: u128| -> Option<u128> {
            let after = self.cumulative_cost_svvv_units(supply_units.checked_add(diem_units)?)?;
            Some(after - cost_before)
        };
        let headroom = u128::MAX - supply_units;
        // The rate never falls as supply rises and F is within one unit of the exact integral,
        // so any amount above (budget + 1) · w / rate_now costs more than the budget.
        let rate_now = self.rate_at(supply_units);
        let mut too_many = budget_svvv_units
            .checked_add(1)
            .and_then(|budget| mul_div_floor(budget, UNITS_PER_TOKEN, rate_now))
            .and_then(|bound| bound.checked_add(1))
            .map_or(headroom, |bound| bound.min(headroom));
        if let Some(cost) = cost_of(too_many)
            && cost <= budget_svvv_units
        {
            return Some(MintQuote {
                diem_units: too_many,
                svvv_units: cost,
            });
        }
        let mut affordable: u128 = 0;
        while too_many - affordable > 1 {
            let middle = affordable + (too_many - affordable) / 2;
            match cost_of(middle) {
                Some(cost) if cost <= budget_svvv_units => affordable = middle,
                _ => too_many = middle,
            }
        }
        Some(MintQuote {
            diem_units: affordable,
            svvv_units: cost_of(affordable)?,
        })
    }
}

/// `90 · exp(2 · (S / 38,000)^3)` in sVVV base units per DIEM, rounded down, capped at the
/// maximum rate. The exponent `2 · S³ / 38,000³` is an exact fraction, so the only rounding is
/// in the fixed-point exponential.
fn default_rate_svvv_units_per_diem(supply_diem: u128) -> u128 {
    let numerator = DEFAULT_ADJUSTMENT_POWER * supply_diem * supply_diem * supply_diem;
    let denominator =
        DEFAULT_TARGET_SUPPLY_DIEM * DEFAULT_TARGET_SUPPLY_DIEM * DEFAULT_TARGET_SUPPLY_DIEM;
    exp_times_scale(numerator, denominator)
        .and_then(|exponential| {
            mul_div_floor(
                exponential,
                DEFAULT_BASE_RATE_SVVV_PER_DIEM * UNITS_PER_TOKEN,
                EXP_SCALE,
            )
        })
        .map_or(MAXIMUM_MINT_RATE_SVVV_UNITS_PER_DIEM, |rate| {
            rate.min(MAXIMUM_MINT_RATE_SVVV_UNITS_PER_DIEM)
        })
}

/// `exp(numerator / denominator) · EXP_SCALE`, rounded down, or `None` when it exceeds u128.
/// The whole part of the argument is `e` multiplied in that many times; the fraction, in
/// `[0, 1)`, goes through its Taylor series, whose terms shrink at least as fast as `1 / k!`.
fn exp_times_scale(numerator: u128, denominator: u128) -> Option<u128> {
    let whole = numerator / denominator;
    let fraction_numerator = numerator % denominator;
    let mut sum = EXP_SCALE;
    let mut term = EXP_SCALE;
    let mut order: u128 = 1;
    while term > 0 {
        term = mul_div_floor(term, fraction_numerator, denominator.checked_mul(order)?)?;
        sum = sum.checked_add(term)?;
        order += 1;
    }
    let mut result = sum;
    for _ in 0..whole {
        result = mul_div_floor(result, E_TIMES_EXP_SCALE, EXP_SCALE)?;
    }
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact values of `90 · exp(2 · (500 i / 38,000)^3) · 10^18`, truncated, computed with
    /// 80-digit decimal arithmetic (Python `decimal`), independent of this file.
    const REFERENCE_RATES: [(usize, u128); 9] = [
        (0, 90_000_000_000_000_000_000),
        (1, 90_000_410_046_130_188_937),
        (20, 93_340_876_623_854_780_700),
        (76, 665_015_048_903_758_520_450),
        (80, 927_517_099_401_857_441_475),
        (100, 8_568_666_552_634_058_495_350),
        (150, 428_801_439_092_341_216_672_351_416),
        (152, 799_749_946_845_708_537_308_672_136),
        (153, 1_000_000_000_000_000_000_000_000_000),
    ];

    #[test]
    fn default_points_match_high_precision_reference_values() {
        let points = MintCurve::venice_default_points();
        for (index, expected) in REFERENCE_RATES {
            let actual = points[index].rate_svvv_units_per_diem;
            assert!(
                actual.abs_diff(expected) <= 1,
                "point {index}: {actual} vs {expected}"
            );
        }
        assert_eq!(points[0].rate_svvv_units_per_diem, 90 * UNITS_PER_TOKEN);
        assert!(
            points[153..].iter().all(
                |point| point.rate_svvv_units_per_diem == MAXIMUM_MINT_RATE_SVVV_UNITS_PER_DIEM
            )
        );
    }

    #[test]
    fn default_points_match_the_formula_in_floating_point() {
        // f64 carries 53 bits (about 16 digits), fewer than the table's integers, and exp turns
        // the relative error of its argument x into a relative error of the result about x
        // times as large; so the check is agreement within (8 + 4x) f64 epsilons. Exactness to
        // the base unit is checked against high-precision values above.
        for point in MintCurve::venice_default_points() {
            let supply = point.supply_diem as f64;
            let exponent = 2.0 * (supply / 38_000.0).powi(3);
            let expected = 90.0 * exponent.exp() * 1e18;
            if expected >= MAXIMUM_MINT_RATE_SVVV_UNITS_PER_DIEM as f64 {
                assert_eq!(
                    point.rate_svvv_units_per_diem,
                    MAXIMUM_MINT_RATE_SVVV_UNITS_PER_DIEM
                );
                continue;
            }
            let actual = point.rate_svvv_units_per_diem as f64;
            let tolerance = expected * f64::EPSILON * (8.0 + 4.0 * exponent);
            assert!(
                (actual - expected).abs() <= tolerance,
                "supply {}: {actual} vs {expected}",
                point.supply_diem
            );
        }
    }

    #[test]
    fn exponential_of_whole_numbers_is_e_to_the_power() {
        assert_eq!(exp_times_scale(0, 1), Some(EXP_SCALE));
        assert_eq!(exp_times_scale(1, 1), Some(E_TIMES_EXP_SCALE));
        // e² = 7.389056098930650227230427460575007813180…
        let e_squared = exp_times_scale(4, 2).expect("fits");
        assert!(e_squared.abs_diff(7_389_056_098_930_650_227_230_427_460_575) <= 2);
        assert_eq!(exp_times_scale(200, 1), None);
    }

    fn flat_curve(rate: u128) -> MintCurve {
        MintCurve::new(
            (0..CURVE_POINT_COUNT as u64)
                .map(|index| CurvePoint {
                    supply_diem: index * 10,
                    rate_svvv_units_per_diem: rate,
                })
                .collect(),
        )
        .expect("valid flat curve")
    }

    #[test]
    fn a_flat_curve_costs_rate_times_amount_rounded_up() {
        let curve = flat_curve(90 * UNITS_PER_TOKEN);
        assert_eq!(
            curve.quote_svvv_units(0, UNITS_PER_TOKEN),
            Some(90 * UNITS_PER_TOKEN)
        );
        assert_eq!(curve.quote_svvv_units(0, 1), Some(90));
        // Past the last point (2,550 DIEM) the rate stays flat.
        assert_eq!(
            curve.quote_svvv_units(5_000 * UNITS_PER_TOKEN, 3 * UNITS_PER_TOKEN),
            Some(270 * UNITS_PER_TOKEN)
        );
        let odd = flat_curve(3);
        // Three base units per DIEM: one DIEM base unit costs 3 · 10^-18 units, rounded up to 1.
        assert_eq!(odd.cumulative_cost_svvv_units(1), Some(1));
        assert_eq!(odd.cumulative_cost_svvv_units(UNITS_PER_TOKEN), Some(3));
    }

    #[test]
    fn a_linear_segment_costs_its_trapezoid() {
        let curve = MintCurve::venice_default();
        // From 0 to 500 DIEM the rate rises linearly between the first two points, so the cost
        // is their trapezoid, exactly (500 · the sum is even, so no half unit is left over).
        let points = curve.points();
        let expected =
            (points[0].rate_svvv_units_per_diem + points[1].rate_svvv_units_per_diem) * 500 / 2;
        assert_eq!(
            curve.cumulative_cost_svvv_units(500 * UNITS_PER_TOKEN),
            Some(expected)
        );
        // A quarter of the way in: 125 · r0 + (r1 − r0) · 125² / (2 · 500), rounded up.
        let (rate_start, rate_end) = (
            points[0].rate_svvv_units_per_diem,
            points[1].rate_svvv_units_per_diem,
        );
        let expected = (125_000 * rate_start + 15_625 * (rate_end - rate_start)).div_ceil(1_000);
        assert_eq!(
            curve.cumulative_cost_svvv_units(125 * UNITS_PER_TOKEN),
            Some(expected)
        );
    }

    #[test]
    fn rates_interpolate_between_points() {
        let curve = MintCurve::venice_default();
        let points = curve.points();
        assert_eq!(curve.rate_at(0), points[0].rate_svvv_units_per_diem);
        assert_eq!(
            curve.rate_at(10_000 * UNITS_PER_TOKEN),
            points[20].rate_svvv_units_per_diem
        );
        let middle = curve.rate_at(10_250 * UNITS_PER_TOKEN);
        let expected =
            (points[20].rate_svvv_units_per_diem + points[21].rate_svvv_units_per_diem) / 2;
        assert!(middle.abs_diff(expected) <= 1);
        assert_eq!(
            curve.rate_at(u128::MAX),
            MAXIMUM_MINT_RATE_SVVV_UNITS_PER_DIEM
        );
    }

    #[test]
    fn a_budget_buys_the_largest_affordable_amount() {
        let curve = MintCurve::venice_default();
        for (supply_diem, budget_svvv) in [
            (0u128, 1u128),
            (0, 900_000),
            (9_999, 12_345),
            (37_000, 5_000_000),
            (80_000, 3),
        ] {
            let supply = supply_diem * UNITS_PER_TOKEN;
            let budget = budget_svvv * UNITS_PER_TOKEN + 7;
            let quote = curve.mint_for_budget(supply, budget).expect("quotes");
            assert!(quote.svvv_units <= budget);
            assert_eq!(
                curve.quote_svvv_units(supply, quote.diem_units),
                Some(quote.svvv_units)
            );
            let one_more = curve
                .quote_svvv_units(supply, quote.diem_units + 1)
                .expect("fits");
            assert!(
                one_more > budget,
                "supply {supply_diem}: one more unit still affordable"
            );
        }
        assert_eq!(
            curve.mint_for_budget(0, 0),
            Some(MintQuote {
                diem_units: 0,
                svvv_units: 0
            })
        );
    }

    #[test]
    fn invalid_tables_are_refused() {
        let good = MintCurve::venice_default_points();
        assert_eq!(
            MintCurve::new(good[..255].to_vec()),
            Err(CurveError::WrongPointCount { found: 255 })
        );
        let mut shifted = good.clone();
        shifted[0].supply_diem = 1;
        assert_eq!(MintCurve::new(shifted), Err(CurveError::FirstSupplyNotZero));
        let mut repeated = good.clone();
        repeated[9].supply_diem = repeated[8].supply_diem;
        assert_eq!(
            MintCurve::new(repeated),
            Err(CurveError::SupplyNotIncreasing { index: 9 })
        );
        let mut falling = good.clone();
        falling[30].rate_svvv_units_per_diem = 1;
        assert_eq!(
            MintCurve::new(falling),
            Err(CurveError::RateDecreasing { index: 30 })
        );
        let mut free = good.clone();
        free[0].rate_svvv_units_per_diem = 0;
        assert_eq!(MintCurve::new(free), Err(CurveError::ZeroRate));
        let mut huge = good.clone();
        huge[255].rate_svvv_units_per_diem = MAXIMUM_MINT_RATE_SVVV_UNITS_PER_DIEM + 1;
        assert_eq!(
            MintCurve::new(huge),
            Err(CurveError::RateTooLarge { index: 255 })
        );
        let mut far = good;
        far[255].supply_diem = MAXIMUM_CURVE_SUPPLY_DIEM + 1;
        assert_eq!(
            MintCurve::new(far),
            Err(CurveError::SupplyTooLarge { index: 255 })
        );
    }
}
