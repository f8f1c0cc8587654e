//! The operation codec: an explicit, versioned-by-the-journal binary encoding of
//! [`ledger::Op`], one permanent tag byte per variant and fixed-width little-endian integers. It
//! owns this encoding only; the ledger's types are plain data and must never become a format by
//! derivation. Decoding is total (random bytes give an error, never a panic) and canonical (an
//! input that decodes re-encodes to the same bytes), so a record hash names exactly one op.
//!
//! Layout: `tag: u8`, then the variant's fields in declaration order. `u32`, `u64` and `u128`
//! are little-endian; an address is its 20 bytes; an [`Asset`] is a byte (1 VVV, 2 DIEM); a list
//! is a `u32` count followed by its elements; a [`Box`] is its contents. Structs (genesis
//! configuration, parameters, curve points, allocations, usage charges) are their fields in
//! declaration order. A usage settlement's entry list is bounded by
//! [`ledger::MAXIMUM_USAGE_ENTRIES`] in the encoding itself: a longer one does not decode.
//! Tags and asset numbers are permanent: a new variant gets a new number, a removed one keeps
//! its number unused.

use ledger::{
    Address, Allocation, Asset, CurvePoint, GenesisConfig, MAXIMUM_USAGE_ENTRIES, Op, Parameters,
    SplitPoint, UsageCharge, UtilizationSplit,
};

/// Permanent tag bytes, one per [`Op`] variant.
pub mod tag {
    pub const GENESIS: u8 = 1;
    pub const TRANSFER: u8 = 2;
    pub const CLAIM_AIRDROP: u8 = 3;
    pub const BURN_UNCLAIMED_AIRDROP: u8 = 4;
    pub const CLAIM_VESTED: u8 = 5;
    pub const STAKE: u8 = 6;
    pub const INITIATE_UNSTAKE: u8 = 7;
    pub const FINALIZE_UNSTAKE: u8 = 8;
    pub const CLAIM_REWARDS: u8 = 9;
    pub const CLAIM_AND_STAKE_REWARDS: u8 = 10;
    pub const MINT_DIEM: u8 = 11;
    pub const BURN_DIEM: u8 = 12;
    pub const STAKE_DIEM: u8 = 13;
    pub const INITIATE_DIEM_UNSTAKE: u8 = 14;
    pub const FINALIZE_DIEM_UNSTAKE: u8 = 15;
    pub const SET_EMISSION_RATE: u8 = 16;
    pub const SET_MINT_CURVE: u8 = 17;
    pub const SET_PARAMETERS: u8 = 18;
    pub const REPORT_UTILIZATION: u8 = 19;
    pub const BUYBACK_AND_BURN: u8 = 20;
    pub const CREDIT_ACCOUNT: u8 = 21;
    pub const SETTLE_USAGE: u8 = 22;
}

const ASSET_VVV: u8 = 1;
const ASSET_DIEM: u8 = 2;

const ADDRESS_BYTES: usize = 20;
const ALLOCATION_BYTES: usize = ADDRESS_BYTES + 16;
const CURVE_POINT_BYTES: usize = 8 + 16;
const SPLIT_POINT_BYTES: usize = 4 + 4;
const USAGE_CHARGE_BYTES: usize = ADDRESS_BYTES + 3 * 8 + 3 * 16;

/// Why bytes are not an encoded operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the encoding ends early: {needed_bytes} more bytes needed, {remaining_bytes} left")]
    UnexpectedEnd {
        needed_bytes: usize,
        remaining_bytes: usize,
    },
    #[error("unknown operation tag {0}")]
    UnknownTag(u8),
    #[error("unknown asset {0}")]
    UnknownAsset(u8),
    #[error("a list claims {count} elements but only {remaining_bytes} bytes are left")]
    CountTooLarge { count: u32, remaining_bytes: usize },
    #[error("{0} bytes left over after the operation")]
    TrailingBytes(usize),
    #[error("a usage settlement claims {count} entries, more than the {maximum} allowed")]
    TooManyUsageEntries { count: u32, maximum: usize },
}

/// Appends the encoding of `op` to `out`.
///
/// A list longer than `u32::MAX` elements cannot be written exactly; its count saturates, and
/// the record that would carry it is refused by its size bound long before (each element is at
/// least 8 bytes, far beyond [`crate::MAXIMUM_RECORD_BYTES`]), so no such encoding reaches disk.
pub fn encode_op(op: &Op, out: &mut Vec<u8>) {
    let mut writer = Writer { out };
    match op {
        Op::Genesis(config) => {
            writer.u8(tag::GENESIS);
            writer.genesis(config);
        }
        Op::Transfer {
            asset,
            to,
            amount_units,
        } => {
            writer.u8(tag::TRANSFER);
            writer.asset(*asset);
            writer.address(to);
            writer.u128(*amount_units);
        }
        Op::ClaimAirdrop => writer.u8(tag::CLAIM_AIRDROP),
        Op::BurnUnclaimedAirdrop => writer.u8(tag::BURN_UNCLAIMED_AIRDROP),
        Op::ClaimVested => writer.u8(tag::CLAIM_VESTED),
        Op::Stake { vvv_units } => {
            writer.u8(tag::STAKE);
            writer.u128(*vvv_units);
        }
        Op::InitiateUnstake { svvv_units } => {
            writer.u8(tag::INITIATE_UNSTAKE);
            writer.u128(*svvv_units);
        }
        Op::FinalizeUnstake => writer.u8(tag::FINALIZE_UNSTAKE),
        Op::ClaimRewards => writer.u8(tag::CLAIM_REWARDS),
        Op::ClaimAndStakeRewards => writer.u8(tag::CLAIM_AND_STAKE_REWARDS),
        Op::MintDiem {
            svvv_to_lock_units,
            min_diem_out_units,
        } => {
            writer.u8(tag::MINT_DIEM);
            writer.u128(*svvv_to_lock_units);
            writer.u128(*min_diem_out_units);
        }
        Op::BurnDiem { diem_units } => {
            writer.u8(tag::BURN_DIEM);
            writer.u128(*diem_units);
        }
        Op::StakeDiem { diem_units } => {
            writer.u8(tag::STAKE_DIEM);
            writer.u128(*diem_units);
        }
        Op::InitiateDiemUnstake { diem_units } => {
            writer.u8(tag::INITIATE_DIEM_UNSTAKE);
            writer.u128(*diem_units);
        }
        Op::FinalizeDiemUnstake => writer.u8(tag::FINALIZE_DIEM_UNSTAKE),
        Op::SetEmissionRate {
            vvv_units_per_second,
        } => {
            writer.u8(tag::SET_EMISSION_RATE);
            writer.u128(*vvv_units_per_second);
        }
        Op::SetMintCurve { points } => {
            writer.u8(tag::SET_MINT_CURVE);
            writer.curve_points(points);
        }
        Op::SetParameters(parameters) => {
            writer.u8(tag::SET_PARAMETERS);
            writer.parameters(parameters);
        }
        Op::ReportUtilization { utilization_bps } => {
            writer.u8(tag::REPORT_UTILIZATION);
            writer.u32(*utilization_bps);
        }
        Op::BuybackAndBurn {
            vvv_units,
            revenue_usd_units,
        } => {
            writer.u8(tag::BUYBACK_AND_BURN);
            writer.u128(*vvv_units);
            writer.u128(*revenue_usd_units);
        }
        Op::CreditAccount {
            account,
            usd_units,
            bundled_credit_units,
        } => {
            writer.u8(tag::CREDIT_ACCOUNT);
            writer.address(account);
            writer.u128(*usd_units);
            writer.u128(*bundled_credit_units);
        }
        Op::SettleUsage { day, entries } => {
            writer.u8(tag::SETTLE_USAGE);
            writer.u64(*day);
            writer.usage_charges(entries);
        }
    }
}

/// Decodes exactly one operation from `bytes`; anything left over is an error.
pub fn decode_op(bytes: &[u8]) -> Result<Op, DecodeError> {
    let mut reader = Reader { bytes };
    let op = match reader.u8()? {
        tag::GENESIS => Op::Genesis(Box::new(reader.genesis()?)),
        tag::TRANSFER => Op::Transfer {
            asset: reader.asset()?,
            to: reader.address()?,
            amount_units: reader.u128()?,
        },
        tag::CLAIM_AIRDROP => Op::ClaimAirdrop,
        tag::BURN_UNCLAIMED_AIRDROP => Op::BurnUnclaimedAirdrop,
        tag::CLAIM_VESTED => Op::ClaimVested,
        tag::STAKE => Op::Stake {
            vvv_units: reader.u128()?,
        },
        tag::INITIATE_UNSTAKE => Op::InitiateUnstake {
            svvv_units: reader.u128()?,
        },
        tag::FINALIZE_UNSTAKE => Op::FinalizeUnstake,
        tag::CLAIM_REWARDS => Op::ClaimRewards,
        tag::CLAIM_AND_STAKE_REWARDS => Op::ClaimAndStakeRewards,
        tag::MINT_DIEM => Op::MintDiem {
            svvv_to_lock_units: reader.u128()?,
            min_diem_out_units: reader.u128()?,
        },
        tag::BURN_DIEM => Op::BurnDiem {
            diem_units: reader.u128()?,
        },
        tag::STAKE_DIEM => Op::StakeDiem {
            diem_units: reader.u128()?,
        },
        tag::INITIATE_DIEM_UNSTAKE => Op::InitiateDiemUnstake {
            diem_units: reader.u128()?,
        },
        tag::FINALIZE_DIEM_UNSTAKE => Op::FinalizeDiemUnstake,
        tag::SET_EMISSION_RATE => Op::SetEmissionRate {
            vvv_units_per_second: reader.u128()?,
        },
        tag::SET_MINT_CURVE => Op::SetMintCurve {
            points: reader.curve_points()?,
        },
        tag::SET_PARAMETERS => Op::SetParameters(Box::new(reader.parameters()?)),
        tag::REPORT_UTILIZATION => Op::ReportUtilization {
            utilization_bps: reader.u32()?,
        },
        tag::BUYBACK_AND_BURN => Op::BuybackAndBurn {
            vvv_units: reader.u128()?,
            revenue_usd_units: reader.u128()?,
        },
        tag::CREDIT_ACCOUNT => Op::CreditAccount {
            account: reader.address()?,
            usd_units: reader.u128()?,
            bundled_credit_units: reader.u128()?,
        },
        tag::SETTLE_USAGE => Op::SettleUsage {
            day: reader.u64()?,
            entries: reader.usage_charges()?,
        },
        unknown => return Err(DecodeError::UnknownTag(unknown)),
    };
    if !reader.bytes.is_empty() {
        return Err(DecodeError::TrailingBytes(reader.bytes.len()));
    }
    Ok(op)
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn u8(&mut self, value: u8) {
        self.out.push(value);
    }

    fn u32(&mut self, value: u32) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    fn u64(&mut self, value: u64) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    fn u128(&mut self, value: u128) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    fn address(&mut self, address: &Address) {
        self.out.extend_from_slice(&address.0);
    }

    fn count(&mut self, count: usize) {
        self.u32(u32::try_from(count).unwrap_or(u32::MAX));
    }

    fn asset(&mut self, asset: Asset) {
        self.u8(match asset {
            Asset::Vvv => ASSET_VVV,
            Asset::Diem => ASSET_DIEM,
        });
    }

    fn allocation(&mut self, allocation: &Allocation) {
        let Allocation { address, vvv_units } = allocation;
        self.address(address);
        self.u128(*vvv_units);
    }

    fn allocations(&mut self, allocations: &[Allocation]) {
        self.count(allocations.len());
        for allocation in allocations {
            self.allocation(allocation);
        }
    }

    fn curve_points(&mut self, points: &[CurvePoint]) {
        self.count(points.len());
        for point in points {
            let CurvePoint {
                supply_diem,
                rate_svvv_units_per_diem,
            } = point;
            self.u64(*supply_diem);
            self.u128(*rate_svvv_units_per_diem);
        }
    }

    fn usage_charges(&mut self, entries: &[UsageCharge]) {
        self.count(entries.len());
        for entry in entries {
            // Exhaustive destructuring: a new field stops this compiling until it is encoded.
            let UsageCharge {
                account,
                requests,
                prompt_tokens,
                completion_tokens,
                allowance_units,
                bundled_credit_units,
                usd_units,
            } = entry;
            self.address(account);
            self.u64(*requests);
            self.u64(*prompt_tokens);
            self.u64(*completion_tokens);
            self.u128(*allowance_units);
            self.u128(*bundled_credit_units);
            self.u128(*usd_units);
        }
    }

    fn parameters(&mut self, parameters: &Parameters) {
        // Exhaustive destructuring: a new field stops this compiling until it is encoded.
        let Parameters {
            unstake_cooldown_seconds,
            diem_unstake_cooldown_seconds,
            locked_yield_bps,
            minimum_spendable_staked_diem_units,
            utilization_split: UtilizationSplit { points },
        } = parameters;
        self.u64(*unstake_cooldown_seconds);
        self.u64(*diem_unstake_cooldown_seconds);
        self.u32(*locked_yield_bps);
        self.u128(*minimum_spendable_staked_diem_units);
        self.count(points.len());
        for point in points {
            let SplitPoint {
                utilization_bps,
                company_share_bps,
            } = point;
            self.u32(*utilization_bps);
            self.u32(*company_share_bps);
        }
    }

    fn genesis(&mut self, config: &GenesisConfig) {
        let GenesisConfig {
            admin,
            treasury,
            incentive_fund,
            liquidity,
            team_grants,
            team_unlocked_at_genesis_bps,
            team_vesting_seconds,
            airdrop,
            airdrop_claim_window_seconds,
            emission_rate_vvv_units_per_second,
            parameters,
            mint_curve_points,
        } = config;
        self.address(admin);
        self.allocation(treasury);
        self.allocation(incentive_fund);
        self.allocation(liquidity);
        self.allocations(team_grants);
        self.u32(*team_unlocked_at_genesis_bps);
        self.u64(*team_vesting_seconds);
        self.allocations(airdrop);
        self.u64(*airdrop_claim_window_seconds);
        self.u128(*emission_rate_vvv_units_per_second);
        self.parameters(parameters);
        self.curve_points(mint_curve_points);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, tail) =
            self.bytes
                .split_first_chunk::<N>()
                .ok_or(DecodeError::UnexpectedEnd {
                    needed_bytes: N,
                    remaining_bytes: self.bytes.len(),
                })?;
        self.bytes = tail;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let [byte] = self.array::<1>()?;
        Ok(byte)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn u128(&mut self) -> Result<u128, DecodeError> {
        Ok(u128::from_le_bytes(self.array()?))
    }

    fn address(&mut self) -> Result<Address, DecodeError> {
        Ok(Address(self.array()?))
    }

    /// A list's count, refused before anything is allocated when the bytes left cannot hold
    /// that many elements: a corrupt count must not become a huge allocation.
    fn count(&mut self, element_bytes: usize) -> Result<usize, DecodeError> {
        let count = self.u32()?;
        self.fits(count, element_bytes)
    }

    /// `count` as a length, if the bytes left can hold that many elements.
    fn fits(&self, count: u32, element_bytes: usize) -> Result<usize, DecodeError> {
        let remaining_bytes = self.bytes.len();
        let fits = usize::try_from(count)
            .ok()
            .and_then(|count| count.checked_mul(element_bytes))
            .is_some_and(|needed| needed <= remaining_bytes);
        if !fits {
            return Err(DecodeError::CountTooLarge {
                count,
                remaining_bytes,
            });
        }
        Ok(count as usize)
    }

    fn asset(&mut self) -> Result<Asset, DecodeError> {
        match self.u8()? {
            ASSET_VVV => Ok(Asset::Vvv),
            ASSET_DIEM => Ok(Asset::Diem),
            unknown => Err(DecodeError::UnknownAsset(unknown)),
        }
    }

    fn allocation(&mut self) -> Result<Allocation, DecodeError> {
        Ok(Allocation {
            address: self.address()?,
            vvv_units: self.u128()?,
        })
    }

    fn allocations(&mut self) -> Result<Vec<Allocation>, DecodeError> {
        let count = self.count(ALLOCATION_BYTES)?;
        (0..count).map(|_| self.allocation()).collect()
    }

    fn curve_points(&mut self) -> Result<Vec<CurvePoint>, DecodeError> {
        let count = self.count(CURVE_POINT_BYTES)?;
        (0..count)
            .map(|_| {
                Ok(CurvePoint {
                    supply_diem: self.u64()?,
                    rate_svvv_units_per_diem: self.u128()?,
                })
            })
            .collect()
    }

    /// A usage settlement's entries. The count is refused above the ledger's maximum (and, like
    /// every count, when the bytes left cannot hold it) before anything is allocated.
    fn usage_charges(&mut self) -> Result<Vec<UsageCharge>, DecodeError> {
        let count = self.u32()?;
        if usize::try_from(count).map_or(true, |count| count > MAXIMUM_USAGE_ENTRIES) {
            return Err(DecodeError::TooManyUsageEntries {
                count,
                maximum: MAXIMUM_USAGE_ENTRIES,
            });
        }
        let count = self.fits(count, USAGE_CHARGE_BYTES)?;
        (0..count)
            .map(|_| {
                Ok(UsageCharge {
                    account: self.address()?,
                    requests: self.u64()?,
                    prompt_tokens: self.u64()?,
                    completion_tokens: self.u64()?,
                    allowance_units: self.u128()?,
                    bundled_credit_units: self.u128()?,
                    usd_units: self.u128()?,
                })
            })
            .collect()
    }

    fn parameters(&mut self) -> Result<Parameters, DecodeError> {
        let unstake_cooldown_seconds = self.u64()?;
        let diem_unstake_cooldown_seconds = self.u64()?;
        let locked_yield_bps = self.u32()?;
        let minimum_spendable_staked_diem_units = self.u128()?;
        let count = self.count(SPLIT_POINT_BYTES)?;
        let points = (0..count)
            .map(|_| {
                Ok(SplitPoint {
                    utilization_bps: self.u32()?,
                    company_share_bps: self.u32()?,
                })
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        Ok(Parameters {
            unstake_cooldown_seconds,
            diem_unstake_cooldown_seconds,
            locked_yield_bps,
            minimum_spendable_staked_diem_units,
            utilization_split: UtilizationSplit { points },
        })
    }

    fn genesis(&mut self) -> Result<GenesisConfig, DecodeError> {
        Ok(GenesisConfig {
            admin: self.address()?,
            treasury: self.allocation()?,
            incentive_fund: self.allocation()?,
            liquidity: self.allocation()?,
            team_grants: self.allocations()?,
            team_unlocked_at_genesis_bps: self.u32()?,
            team_vesting_seconds: self.u64()?,
            airdrop: self.allocations()?,
            airdrop_claim_window_seconds: self.u64()?,
            emission_rate_vvv_units_per_second: self.u128()?,
            parameters: self.parameters()?,
            mint_curve_points: self.curve_points()?,
        })
    }
}

/// Sample operations for this crate's unit tests.
#[cfg(test)]
pub(crate) mod samples {
    use super::*;
    use ledger::MintCurve;

    pub(crate) const ALICE: Address = Address([0xA1; 20]);

    /// One operation of every variant, with fields chosen so that no two fields share a value
    /// (a swapped field would still round-trip otherwise) and integers use their high bytes.
    pub(crate) fn one_of_each() -> Vec<Op> {
        let big = u128::MAX - 0x0102_0304;
        let mut genesis = GenesisConfig::venice(
            Address([1; 20]),
            Address([2; 20]),
            Address([3; 20]),
            Address([4; 20]),
            Address([5; 20]),
            vec![
                Allocation {
                    address: ALICE,
                    vvv_units: 11,
                },
                Allocation {
                    address: Address([0xB0; 20]),
                    vvv_units: big,
                },
            ],
        );
        genesis.team_vesting_seconds = u64::MAX - 3;
        vec![
            Op::Genesis(Box::new(genesis)),
            Op::Transfer {
                asset: Asset::Vvv,
                to: ALICE,
                amount_units: big,
            },
            Op::Transfer {
                asset: Asset::Diem,
                to: Address([0xB0; 20]),
                amount_units: 12,
            },
            Op::ClaimAirdrop,
            Op::BurnUnclaimedAirdrop,
            Op::ClaimVested,
            Op::Stake { vvv_units: 13 },
            Op::InitiateUnstake {
                svvv_units: big - 1,
            },
            Op::FinalizeUnstake,
            Op::ClaimRewards,
            Op::ClaimAndStakeRewards,
            Op::MintDiem {
                svvv_to_lock_units: 14,
                min_diem_out_units: 15,
            },
            Op::BurnDiem { diem_units: 16 },
            Op::StakeDiem { diem_units: 17 },
            Op::InitiateDiemUnstake { diem_units: 18 },
            Op::FinalizeDiemUnstake,
            Op::SetEmissionRate {
                vvv_units_per_second: 19,
            },
            Op::SetMintCurve {
                points: MintCurve::venice_default_points(),
            },
            Op::SetParameters(Box::new(Parameters {
                unstake_cooldown_seconds: 20,
                diem_unstake_cooldown_seconds: 21,
                locked_yield_bps: 22,
                minimum_spendable_staked_diem_units: 23,
                utilization_split: UtilizationSplit {
                    points: vec![
                        SplitPoint {
                            utilization_bps: 0,
                            company_share_bps: 24,
                        },
                        SplitPoint {
                            utilization_bps: 10_000,
                            company_share_bps: 25,
                        },
                    ],
                },
            })),
            Op::ReportUtilization {
                utilization_bps: 26,
            },
            Op::BuybackAndBurn {
                vvv_units: 27,
                revenue_usd_units: 28,
            },
            Op::CreditAccount {
                account: ALICE,
                usd_units: 29,
                bundled_credit_units: big,
            },
            Op::SettleUsage {
                day: u64::MAX - 30,
                entries: vec![
                    UsageCharge {
                        account: ALICE,
                        requests: 31,
                        prompt_tokens: 32,
                        completion_tokens: u64::MAX - 33,
                        allowance_units: 34,
                        bundled_credit_units: 35,
                        usd_units: big - 36,
                    },
                    UsageCharge {
                        account: Address([0xB0; 20]),
                        requests: 37,
                        prompt_tokens: 38,
                        completion_tokens: 39,
                        allowance_units: big - 40,
                        bundled_credit_units: 41,
                        usd_units: 42,
                    },
                ],
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::samples::{ALICE, one_of_each};
    use super::*;

    fn encoded(op: &Op) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_op(op, &mut bytes);
        bytes
    }

    /// SplitMix64, for the fuzz-style tests: deterministic, so a failure reproduces.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound.max(1) as u64) as usize
        }
    }

    #[test]
    fn every_variant_round_trips_and_has_its_own_tag() {
        let ops = one_of_each();
        let mut tags = BTreeSet::new();
        for op in &ops {
            let bytes = encoded(op);
            assert_eq!(decode_op(&bytes).as_ref(), Ok(op), "{op:?}");
            tags.insert(bytes[0]);
        }
        // 22 variants, tags 1..=22: a new variant without a tag (or a sample) fails here.
        assert_eq!(tags, (1..=22).collect::<BTreeSet<u8>>());
    }

    #[test]
    fn the_encoding_is_the_documented_one() {
        // Written out by hand from the module documentation, so that a change to the layout
        // fails a test instead of silently changing the journal format.
        let op = Op::Transfer {
            asset: Asset::Diem,
            to: ALICE,
            amount_units: 0x0102,
        };
        let mut expected = vec![tag::TRANSFER, ASSET_DIEM];
        expected.extend_from_slice(&[0xA1; 20]);
        expected.extend_from_slice(&[0x02, 0x01]);
        expected.extend_from_slice(&[0; 14]);
        assert_eq!(encoded(&op), expected);
        assert_eq!(encoded(&Op::ClaimRewards), vec![9]);
        assert_eq!(
            encoded(&Op::ReportUtilization {
                utilization_bps: 0x0A0B
            }),
            vec![19, 0x0B, 0x0A, 0, 0]
        );
        let settle = Op::SettleUsage {
            day: 0x0102,
            entries: vec![UsageCharge {
                account: ALICE,
                requests: 3,
                prompt_tokens: 4,
                completion_tokens: 5,
                allowance_units: 6,
                bundled_credit_units: 7,
                usd_units: 0x0809,
            }],
        };
        let mut expected = vec![22, 0x02, 0x01, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        expected.extend_from_slice(&[0xA1; 20]);
        for count in [3u8, 4, 5] {
            expected.push(count);
            expected.extend_from_slice(&[0; 7]);
        }
        for amount in [6u8, 7] {
            expected.push(amount);
            expected.extend_from_slice(&[0; 15]);
        }
        expected.extend_from_slice(&[0x09, 0x08]);
        expected.extend_from_slice(&[0; 14]);
        assert_eq!(encoded(&settle), expected);
        assert_eq!(expected.len(), 1 + 8 + 4 + USAGE_CHARGE_BYTES);
    }

    #[test]
    fn every_proper_prefix_and_any_extension_is_refused() {
        for op in one_of_each() {
            let bytes = encoded(&op);
            for length in 0..bytes.len() {
                assert!(
                    decode_op(&bytes[..length]).is_err(),
                    "{op:?} cut at {length}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(decode_op(&longer), Err(DecodeError::TrailingBytes(1)));
        }
    }

    #[test]
    fn unknown_tags_and_assets_are_refused() {
        for unknown in [0u8, 23, 255] {
            assert_eq!(decode_op(&[unknown]), Err(DecodeError::UnknownTag(unknown)));
        }
        let mut bytes = encoded(&Op::Transfer {
            asset: Asset::Vvv,
            to: ALICE,
            amount_units: 1,
        });
        bytes[1] = 3;
        assert_eq!(decode_op(&bytes), Err(DecodeError::UnknownAsset(3)));
    }

    #[test]
    fn a_huge_count_is_refused_before_allocating() {
        let mut bytes = vec![tag::SET_MINT_CURVE];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_op(&bytes),
            Err(DecodeError::CountTooLarge {
                count: u32::MAX,
                remaining_bytes: 0
            })
        );
    }

    #[test]
    fn a_usage_settlement_longer_than_the_ledger_allows_is_refused_before_allocating() {
        let header = |count: u32| {
            let mut bytes = vec![tag::SETTLE_USAGE];
            bytes.extend_from_slice(&7u64.to_le_bytes());
            bytes.extend_from_slice(&count.to_le_bytes());
            bytes
        };
        let too_many = u32::try_from(MAXIMUM_USAGE_ENTRIES + 1).expect("small");
        for count in [too_many, u32::MAX] {
            // Refused by the bound even though the bytes to hold the entries are there.
            let mut bytes = header(count);
            bytes.resize(
                bytes.len() + MAXIMUM_USAGE_ENTRIES * USAGE_CHARGE_BYTES + 200,
                0,
            );
            assert_eq!(
                decode_op(&bytes),
                Err(DecodeError::TooManyUsageEntries {
                    count,
                    maximum: MAXIMUM_USAGE_ENTRIES
                })
            );
        }
        // At the bound, the count is still checked against the bytes left.
        let at_most = u32::try_from(MAXIMUM_USAGE_ENTRIES).expect("small");
        assert_eq!(
            decode_op(&header(at_most)),
            Err(DecodeError::CountTooLarge {
                count: at_most,
                remaining_bytes: 0
            })
        );
        // And the largest settlement round-trips.
        let largest = Op::SettleUsage {
            day: 20_115,
            entries: (0..MAXIMUM_USAGE_ENTRIES)
                .map(|index| UsageCharge {
                    account: Address([(index % 251) as u8; 20]),
                    requests: index as u64,
                    usd_units: index as u128 * 1_000,
                    ..UsageCharge::default()
                })
                .collect(),
        };
        let bytes = encoded(&largest);
        assert_eq!(bytes.len(), 13 + MAXIMUM_USAGE_ENTRIES * USAGE_CHARGE_BYTES);
        assert_eq!(decode_op(&bytes), Ok(largest));
    }

    #[test]
    fn random_bytes_never_panic_and_whatever_decodes_re_encodes_identically() {
        let mut random = Random(0x5EED_0001);
        let samples: Vec<Vec<u8>> = one_of_each().iter().map(encoded).collect();
        let mut decoded = 0u32;
        for round in 0..20_000 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                // Pure noise, with a valid tag half the time so decoding gets past the first byte.
                let length = random.below(96);
                let mut noise: Vec<u8> = (0..length).map(|_| random.next() as u8).collect();
                if let Some(first) = noise.first_mut()
                    && round % 4 == 0
                {
                    *first = (random.below(22) + 1) as u8;
                }
                noise
            } else {
                // A valid encoding with a few bytes changed, cut short or lengthened.
                let mut mutated = samples[random.below(samples.len())].clone();
                for _ in 0..=random.below(3) {
                    let index = random.below(mutated.len());
                    mutated[index] = random.next() as u8;
                }
                match random.below(3) {
                    0 => mutated.truncate(random.below(mutated.len() + 1)),
                    1 => mutated.push(random.next() as u8),
                    _ => {}
                }
                mutated
            };
            if let Ok(op) = decode_op(&bytes) {
                decoded += 1;
                assert_eq!(encoded(&op), bytes, "decoding is canonical");
            }
        }
        // Mutations of fixed-width fields still decode; the canonical check above had work.
        assert!(decoded > 100, "only {decoded} inputs decoded");
    }
}
