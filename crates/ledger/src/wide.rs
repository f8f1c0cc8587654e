//! Exact 256-bit intermediates for 128-bit money arithmetic: `a × b / d` without overflow, rounded
//! in the direction the caller names. Owns no state; must never round silently or lose a carry.

use std::cmp::Ordering;

/// The low 64 bits of a `u128`, for splitting a factor into two limbs.
const LOW_64_BITS: u128 = 0xFFFF_FFFF_FFFF_FFFF;

/// An unsigned 256-bit integer, only as capable as the ledger's intermediates need: products of
/// two `u128`s, sums, multiplication by a `u128`, and division by a `u128`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct U256 {
    high: u128,
    low: u128,
}

impl Ord for U256 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.high.cmp(&other.high).then(self.low.cmp(&other.low))
    }
}

impl PartialOrd for U256 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl U256 {
    pub(crate) const fn from_u128(value: u128) -> Self {
        Self {
            high: 0,
            low: value,
        }
    }

    /// The exact product of two `u128`s, which always fits in 256 bits.
    pub(crate) fn product(left: u128, right: u128) -> Self {
        let (left_high, left_low) = (left >> 64, left & LOW_64_BITS);
        let (right_high, right_low) = (right >> 64, right & LOW_64_BITS);
        // Each partial product of two 64-bit limbs fits in a u128; the carries below are the
        // schoolbook ones, kept exactly.
        let low_low = left_low * right_low;
        let low_high = left_low * right_high;
        let high_low = left_high * right_low;
        let high_high = left_high * right_high;
        let (middle, middle_carry) = low_high.overflowing_add(high_low);
        let (low, low_carry) = low_low.overflowing_add(middle << 64);
        // This cannot overflow: the true product is below 2^256.
        let high =
            high_high + (middle >> 64) + (u128::from(middle_carry) << 64) + u128::from(low_carry);
        Self { high, low }
    }

    pub(crate) fn checked_add(self, other: Self) -> Option<Self> {
        let (low, carry) = self.low.overflowing_add(other.low);
        let high = self
            .high
            .checked_add(other.high)?
            .checked_add(u128::from(carry))?;
        Some(Self { high, low })
    }

    pub(crate) fn checked_mul_u128(self, factor: u128) -> Option<Self> {
        let low_part = Self::product(self.low, factor);
        let high_part = Self::product(self.high, factor);
        if high_part.high != 0 {
            return None;
        }
        let high = low_part.high.checked_add(high_part.low)?;
        Some(Self {
            high,
            low: low_part.low,
        })
    }

    /// Quotient and remainder of division by a non-zero `u128`.
    pub(crate) fn div_rem_u128(self, divisor: u128) -> (Self, u128) {
        assert!(divisor != 0, "division by zero in ledger arithmetic");
        if self.high == 0 {
            return (Self::from_u128(self.low / divisor), self.low % divisor);
        }
        let quotient_high = self.high / divisor;
        let mut remainder = self.high % divisor;
        let mut quotient_low: u128 = 0;
        // Restoring long division, one bit of the low half at a time. The remainder stays below
        // the divisor, so doubling it needs at most one extra bit, which `carried_out` holds.
        for bit in (0..128).rev() {
            let carried_out = remainder >> 127 == 1;
            let shifted = (remainder << 1) | ((self.low >> bit) & 1);
            if carried_out {
                // The true value is `shifted + 2^128`, which lies in [divisor, 2 · divisor); its
                // difference with the divisor is computed without leaving u128.
                remainder = shifted + (u128::MAX - divisor) + 1;
                quotient_low |= 1 << bit;
            } else if shifted >= divisor {
                remainder = shifted - divisor;
                quotient_low |= 1 << bit;
            } else {
                remainder = shifted;
            }
        }
        (
            Self {
                high: quotient_high,
                low: quotient_low,
            },
            remainder,
        )
    }

    pub(crate) fn div_floor_u128(self, divisor: u128) -> Self {
        self.div_rem_u128(divisor).0
    }

    pub(crate) fn div_ceil_u128(self, divisor: u128) -> Option<Self> {
        let (quotient, remainder) = self.div_rem_u128(divisor);
        if remainder == 0 {
            Some(quotient)
        } else {
            quotient.checked_add(Self::from_u128(1))
        }
    }

    pub(crate) fn to_u128(self) -> Option<u128> {
        (self.high == 0).then_some(self.low)
    }
}

/// `⌊left × right / divisor⌋`, or `None` when the divisor is zero or the quotient does not fit.
pub fn mul_div_floor(left: u128, right: u128, divisor: u128) -> Option<u128> {
    if divisor == 0 {
        return None;
    }
    U256::product(left, right).div_floor_u128(divisor).to_u128()
}

/// `⌈left × right / divisor⌉`, or `None` when the divisor is zero or the quotient does not fit.
pub fn mul_div_ceil(left: u128, right: u128, divisor: u128) -> Option<u128> {
    if divisor == 0 {
        return None;
    }
    U256::product(left, right).div_ceil_u128(divisor)?.to_u128()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deliberately slow reference sharing no code with the fast path: the product is built
    /// by doubling and adding over four 64-bit limbs, then divided one bit at a time.
    fn slow_mul_div(left: u128, right: u128, divisor: u128) -> (u128, u128, bool) {
        fn double(limbs: &mut [u64; 4]) {
            let mut carry = 0u64;
            for limb in limbs.iter_mut() {
                let next_carry = *limb >> 63;
                *limb = (*limb << 1) | carry;
                carry = next_carry;
            }
        }
        fn add(limbs: &mut [u64; 4], value: u128) {
            let addend = [value as u64, (value >> 64) as u64, 0, 0];
            let mut carry = 0u128;
            for (limb, extra) in limbs.iter_mut().zip(addend) {
                let sum = u128::from(*limb) + u128::from(extra) + carry;
                *limb = sum as u64;
                carry = sum >> 64;
            }
        }
        let mut product = [0u64; 4];
        for bit in (0..128).rev() {
            double(&mut product);
            if (right >> bit) & 1 == 1 {
                add(&mut product, left);
            }
        }
        let mut remainder: u128 = 0;
        let mut quotient = [0u64; 4];
        for bit in (0..256).rev() {
            let next_bit = u128::from((product[bit / 64] >> (bit % 64)) & 1);
            let top = remainder >> 127;
            let shifted = (remainder << 1) | next_bit;
            if top == 1 || shifted >= divisor {
                remainder = shifted.wrapping_sub(divisor);
                quotient[bit / 64] |= 1 << (bit % 64);
            } else {
                remainder = shifted;
            }
        }
        let overflowed = quotient[2] != 0 || quotient[3] != 0;
        let low = u128::from(quotient[0]) | (u128::from(quotient[1]) << 64);
        (low, remainder, overflowed)
    }

    struct SplitMix64(u64);

    impl SplitMix64 {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut value = self.0;
            value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            value ^ (value >> 31)
        }

        fn next_u128_of_random_width(&mut self) -> u128 {
            let value = (u128::from(self.next()) << 64) | u128::from(self.next());
            let width = self.next() % 129;
            if width == 128 {
                value
            } else {
                value & ((1u128 << width) - 1)
            }
        }
    }

    #[test]
    fn small_values_agree_with_native_arithmetic() {
        for (left, right, divisor) in [(7u128, 9u128, 4u128), (0, 5, 3), (1, 1, 1), (10, 10, 7)] {
            assert_eq!(
                mul_div_floor(left, right, divisor),
                Some(left * right / divisor)
            );
            assert_eq!(
                mul_div_ceil(left, right, divisor),
                Some((left * right).div_ceil(divisor))
            );
        }
        assert_eq!(mul_div_floor(1, 1, 0), None);
    }

    #[test]
    fn extremes_are_exact_or_refused() {
        assert_eq!(
            mul_div_floor(u128::MAX, u128::MAX, u128::MAX),
            Some(u128::MAX)
        );
        assert_eq!(mul_div_floor(u128::MAX, 2, 2), Some(u128::MAX));
        assert_eq!(mul_div_floor(u128::MAX, 2, 1), None);
        assert_eq!(
            mul_div_ceil(u128::MAX, u128::MAX - 1, u128::MAX),
            Some(u128::MAX - 1)
        );
        assert_eq!(mul_div_ceil(u128::MAX, 1, u128::MAX - 1), Some(2));
        assert_eq!(mul_div_ceil(u128::MAX, 3, 2), None);
        let max_square = U256::product(u128::MAX, u128::MAX);
        assert_eq!(
            max_square.div_rem_u128(u128::MAX),
            (U256::from_u128(u128::MAX), 0)
        );
        assert_eq!(
            U256::from_u128(u128::MAX)
                .checked_add(U256::from_u128(1))
                .map(|v| v.high),
            Some(1)
        );
        assert_eq!(max_square.checked_mul_u128(2), None);
    }

    #[test]
    fn random_operands_agree_with_a_slow_reference() {
        let mut random = SplitMix64(0x5EED);
        for _ in 0..3_000 {
            let left = random.next_u128_of_random_width();
            let right = random.next_u128_of_random_width();
            let divisor = random.next_u128_of_random_width().max(1);
            let (expected, remainder, overflowed) = slow_mul_div(left, right, divisor);
            let floor = mul_div_floor(left, right, divisor);
            let ceil = mul_div_ceil(left, right, divisor);
            if overflowed {
                assert_eq!(floor, None, "{left} × {right} / {divisor}");
            } else {
                assert_eq!(floor, Some(expected), "{left} × {right} / {divisor}");
                let expected_ceil = if remainder == 0 {
                    Some(expected)
                } else {
                    expected.checked_add(1)
                };
                assert_eq!(ceil, expected_ceil, "{left} × {right} / {divisor}");
            }
        }
    }

    #[test]
    fn ordering_compares_the_high_half_first() {
        let big = U256::product(u128::MAX, 3);
        let small = U256::from_u128(u128::MAX);
        assert!(big > small);
        assert!(U256::from_u128(0) < small);
    }
}
