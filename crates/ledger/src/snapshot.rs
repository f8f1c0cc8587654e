//! Reading a state back from its canonical encoding ([`Ledger::encode_state`], written in
//! `fingerprint.rs`), for recovery from a snapshot. It mirrors the writer field by field and
//! trusts nothing: every length is bounded by the bytes that remain, the curve and parameters
//! are validated as an operation would validate them, maps must come in strictly increasing key
//! order, and the decoded state must encode back to exactly the bytes it came from. The full
//! invariant audit ([`Ledger::assert_invariants_full`]) is the caller's last step.

use std::collections::BTreeMap;
use std::fmt;

use crate::account::{Account, Totals};
use crate::address::Address;
use crate::curve::{CurvePoint, MintCurve};
use crate::emissions::Emissions;
use crate::fingerprint::STATE_TAG;
use crate::ledger::{BuybackDay, GenesisTerms, Ledger, Supply, VestingGrant};
use crate::params::{Parameters, SplitPoint, UtilizationSplit};
use crate::usage_days::{AccountUsage, UsageDay, UsageTotals};

/// Why bytes are not a state this build can read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDecodeError {
    /// Where in the bytes the problem was found.
    pub offset: usize,
    pub reason: &'static str,
}

impl fmt::Display for StateDecodeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} (at byte {})", self.reason, self.offset)
    }
}

impl std::error::Error for StateDecodeError {}

const ADDRESS_BYTES: usize = 20;
/// The fewest bytes one entry of each map or list takes, to bound a count before allocating.
const ACCOUNT_ENTRY_BYTES: usize = ADDRESS_BYTES + 13 * 16 + 3 * 8;
const GRANT_ENTRY_BYTES: usize = ADDRESS_BYTES + 2 * 16;
const AIRDROP_ENTRY_BYTES: usize = ADDRESS_BYTES + 16;
const BUYBACK_ENTRY_BYTES: usize = 8 + 2 * 16;
const USAGE_ENTRY_BYTES: usize = ADDRESS_BYTES + 8 + 16 + 8;
const USAGE_DAY_BYTES: usize = 4 * 8 + 3 * 16;
const SPLIT_POINT_BYTES: usize = 2 * 4;
const CURVE_POINT_BYTES: usize = 8 + 16;

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, reason: &'static str) -> Result<T, StateDecodeError> {
        Err(StateDecodeError {
            offset: self.offset,
            reason,
        })
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], StateDecodeError> {
        let end = self.offset.checked_add(count);
        match end.and_then(|end| self.bytes.get(self.offset..end)) {
            Some(taken) => {
                self.offset += count;
                Ok(taken)
            }
            None => self.fail("the state ends early"),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StateDecodeError> {
        let taken = self.take(N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(taken);
        Ok(array)
    }

    fn u128(&mut self) -> Result<u128, StateDecodeError> {
        Ok(u128::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, StateDecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, StateDecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn address(&mut self) -> Result<Address, StateDecodeError> {
        Ok(Address(self.array()?))
    }

    /// A length prefix, refused when `minimum_entry_bytes` per entry could not fit in what is
    /// left, so that no count can make the decoder allocate more than the input justifies.
    fn length(&mut self, minimum_entry_bytes: usize) -> Result<usize, StateDecodeError> {
        let length = self.u64()?;
        let remaining = self.bytes.len() - self.offset;
        match usize::try_from(length) {
            Ok(length)
                if length
                    .checked_mul(minimum_entry_bytes)
                    .is_some_and(|needed| needed <= remaining) =>
            {
                Ok(length)
            }
            _ => self.fail("a length runs past the end of the state"),
        }
    }

    /// Reads `length` entries of a map whose keys must strictly increase (as the writer's
    /// `BTreeMap` iteration gives them), so that one state has exactly one encoding.
    fn map<K: Ord + Copy, V>(
        &mut self,
        minimum_entry_bytes: usize,
        mut entry: impl FnMut(&mut Self) -> Result<(K, V), StateDecodeError>,
    ) -> Result<BTreeMap<K, V>, StateDecodeError> {
        let length = self.length(minimum_entry_bytes)?;
        let mut map = BTreeMap::new();
        let mut previous: Option<K> = None;
        for _ in 0..length {
            let (key, value) = entry(self)?;
            if previous.is_some_and(|previous| previous >= key) {
                return self.fail("map keys are not in increasing order");
            }
            previous = Some(key);
            map.insert(key, value);
        }
        Ok(map)
    }
}

fn read_account(reader: &mut Reader<'_>) -> Result<Account, StateDecodeError> {
    let mut amounts = [0u128; 13];
    for amount in &mut amounts {
        *amount = reader.u128()?;
    }
    let [
        vvv_units,
        staked_svvv_units,
        cooling_svvv_units,
        locked_svvv_units,
        diem_minted_outstanding_units,
        diem_units,
        staked_diem_units,
        cooling_diem_units,
        rewards_owed_units,
        reward_per_share_paid,
        reward_per_locked_share_paid,
        usd_credit_units,
        bundled_credit_units,
    ] = amounts;
    Ok(Account {
        vvv_units,
        staked_svvv_units,
        cooling_svvv_units,
        svvv_unlock_at_seconds: reader.u64()?,
        locked_svvv_units,
        diem_minted_outstanding_units,
        diem_units,
        staked_diem_units,
        cooling_diem_units,
        diem_unlock_at_seconds: reader.u64()?,
        rewards_owed_units,
        reward_per_share_paid,
        reward_per_locked_share_paid,
        usd_credit_units,
        bundled_credit_units,
        nonce: reader.u64()?,
    })
}

fn read_usage(reader: &mut Reader<'_>) -> Result<AccountUsage, StateDecodeError> {
    let allowance_day = reader.u64()?;
    let allowance_spent_units = reader.u128()?;
    let days = reader.map(USAGE_DAY_BYTES, |reader| {
        let day = reader.u64()?;
        Ok((
            day,
            UsageDay {
                requests: reader.u64()?,
                prompt_tokens: reader.u64()?,
                completion_tokens: reader.u64()?,
                allowance_units: reader.u128()?,
                bundled_credit_units: reader.u128()?,
                usd_units: reader.u128()?,
            },
        ))
    })?;
    Ok(AccountUsage {
        allowance_day,
        allowance_spent_units,
        days,
    })
}

fn read_totals(reader: &mut Reader<'_>) -> Result<Totals, StateDecodeError> {
    Ok(Totals {
        vvv_units: reader.u128()?,
        staked_svvv_units: reader.u128()?,
        cooling_svvv_units: reader.u128()?,
        locked_svvv_units: reader.u128()?,
        diem_minted_outstanding_units: reader.u128()?,
        diem_units: reader.u128()?,
        staked_diem_units: reader.u128()?,
        cooling_diem_units: reader.u128()?,
        rewards_owed_units: reader.u128()?,
        usd_credit_units: reader.u128()?,
        bundled_credit_units: reader.u128()?,
    })
}

fn read_supply(reader: &mut Reader<'_>) -> Result<Supply, StateDecodeError> {
    Ok(Supply {
        genesis_units: reader.u128()?,
        emitted_to_stakers_units: reader.u128()?,
        emitted_to_company_units: reader.u128()?,
        rewards_claimed_units: reader.u128()?,
        burned_unclaimed_airdrop_units: reader.u128()?,
        burned_by_buyback_units: reader.u128()?,
        buyback_revenue_usd_units: reader.u128()?,
        airdrop_unclaimed_units: reader.u128()?,
        team_unclaimed_units: reader.u128()?,
        diem_supply_units: reader.u128()?,
        credited_usd_units: reader.u128()?,
        credited_bundled_credit_units: reader.u128()?,
    })
}

fn read_genesis(reader: &mut Reader<'_>) -> Result<Option<GenesisTerms>, StateDecodeError> {
    match reader.array::<1>()? {
        [0] => Ok(None),
        [1] => Ok(Some(GenesisTerms {
            admin: reader.address()?,
            treasury: reader.address()?,
            genesis_seconds: reader.u64()?,
            team_vesting_seconds: reader.u64()?,
            airdrop_claim_deadline_seconds: reader.u64()?,
        })),
        _ => reader.fail("the genesis marker is neither 0 nor 1"),
    }
}

fn read_parameters(reader: &mut Reader<'_>) -> Result<Parameters, StateDecodeError> {
    let unstake_cooldown_seconds = reader.u64()?;
    let diem_unstake_cooldown_seconds = reader.u64()?;
    let locked_yield_bps = reader.u32()?;
    let minimum_spendable_staked_diem_units = reader.u128()?;
    let length = reader.length(SPLIT_POINT_BYTES)?;
    let mut points = Vec::with_capacity(length);
    for _ in 0..length {
        points.push(SplitPoint {
            utilization_bps: reader.u32()?,
            company_share_bps: reader.u32()?,
        });
    }
    let parameters = Parameters {
        unstake_cooldown_seconds,
        diem_unstake_cooldown_seconds,
        locked_yield_bps,
        minimum_spendable_staked_diem_units,
        utilization_split: UtilizationSplit { points },
    };
    if !parameters.is_valid() {
        return reader.fail("the parameters are not valid");
    }
    Ok(parameters)
}

fn read_curve(reader: &mut Reader<'_>) -> Result<MintCurve, StateDecodeError> {
    let length = reader.length(CURVE_POINT_BYTES)?;
    let mut points = Vec::with_capacity(length);
    for _ in 0..length {
        points.push(CurvePoint {
            supply_diem: reader.u64()?,
            rate_svvv_units_per_diem: reader.u128()?,
        });
    }
    match MintCurve::new(points) {
        Ok(curve) => Ok(curve),
        Err(_) => reader.fail("the mint curve is not valid"),
    }
}

impl Ledger {
    /// Reads a state written by [`Ledger::encode_state`]. Refuses bytes of another encoding
    /// version, truncated or trailing bytes, invalid curves and parameters, unordered maps, and
    /// anything that does not encode back to exactly `bytes`. It does not run the invariant
    /// audit: call [`Ledger::assert_invariants_full`] on the result before trusting it.
    pub fn decode_state(bytes: &[u8]) -> Result<Ledger, StateDecodeError> {
        let mut reader = Reader { bytes, offset: 0 };
        if reader.take(STATE_TAG.len())? != STATE_TAG {
            return reader.fail("not a state of this encoding version");
        }
        let genesis = read_genesis(&mut reader)?;
        let now_seconds = reader.u64()?;
        let parameters = read_parameters(&mut reader)?;
        let mint_curve = read_curve(&mut reader)?;
        let emissions = Emissions {
            rate_vvv_units_per_second: reader.u128()?,
            utilization_bps: reader.u32()?,
            reward_per_share: reader.u128()?,
            reward_per_locked_share: reader.u128()?,
        };
        let supply = read_supply(&mut reader)?;
        let totals = read_totals(&mut reader)?;
        let accounts = reader.map(ACCOUNT_ENTRY_BYTES, |reader| {
            Ok((reader.address()?, read_account(reader)?))
        })?;
        let vesting_grants = reader.map(GRANT_ENTRY_BYTES, |reader| {
            let address = reader.address()?;
            Ok((
                address,
                VestingGrant {
                    vesting_units: reader.u128()?,
                    claimed_units: reader.u128()?,
                },
            ))
        })?;
        let airdrop_unclaimed = reader.map(AIRDROP_ENTRY_BYTES, |reader| {
            Ok((reader.address()?, reader.u128()?))
        })?;
        let buybacks_by_day = reader.map(BUYBACK_ENTRY_BYTES, |reader| {
            let day = reader.u64()?;
            Ok((
                day,
                BuybackDay {
                    vvv_burned_units: reader.u128()?,
                    revenue_usd_units: reader.u128()?,
                },
            ))
        })?;
        let usage = reader.map(USAGE_ENTRY_BYTES, |reader| {
            Ok((reader.address()?, read_usage(reader)?))
        })?;
        let usage_totals = UsageTotals {
            allowance_units: reader.u128()?,
            bundled_credit_units: reader.u128()?,
            usd_units: reader.u128()?,
        };
        let operations_accepted = reader.u64()?;
        if reader.offset != bytes.len() {
            return reader.fail("bytes follow the end of the state");
        }
        let ledger = Ledger {
            genesis,
            now_seconds,
            parameters,
            mint_curve,
            emissions,
            supply,
            totals,
            accounts,
            vesting_grants,
            airdrop_unclaimed,
            buybacks_by_day,
            usage,
            usage_totals,
            operations_accepted,
        };
        // The reader mirrors the writer by hand; this catches any field the two disagree on.
        let mut again = Vec::with_capacity(bytes.len());
        ledger.encode_state(&mut again);
        if again != bytes {
            return Err(StateDecodeError {
                offset: 0,
                reason: "the state does not encode back to the same bytes",
            });
        }
        Ok(ledger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(ledger: &Ledger) -> Vec<u8> {
        let mut bytes = Vec::new();
        ledger.encode_state(&mut bytes);
        bytes
    }

    #[test]
    fn an_empty_ledger_round_trips() {
        let ledger = Ledger::new();
        let bytes = encoded(&ledger);
        assert_eq!(Ledger::decode_state(&bytes), Ok(ledger));
    }

    #[test]
    fn truncated_extended_and_retagged_states_are_refused() {
        let bytes = encoded(&Ledger::new());
        for cut in [0, 1, STATE_TAG.len(), bytes.len() / 2, bytes.len() - 1] {
            let error = Ledger::decode_state(bytes.get(..cut).unwrap_or_default());
            assert!(error.is_err(), "a state cut at {cut} bytes was accepted");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Ledger::decode_state(&longer).map(|_| ()),
            Err(StateDecodeError {
                offset: bytes.len(),
                reason: "bytes follow the end of the state"
            })
        );
        let mut retagged = bytes.clone();
        if let Some(last_tag_byte) = retagged.get_mut(STATE_TAG.len() - 1) {
            *last_tag_byte = b'1';
        }
        assert_eq!(
            Ledger::decode_state(&retagged)
                .map(|_| ())
                .map_err(|e| e.reason),
            Err("not a state of this encoding version")
        );
    }

    #[test]
    fn a_huge_length_is_refused_before_anything_is_allocated() {
        let mut bytes = encoded(&Ledger::new());
        // The account count follows the tag, genesis marker, time, parameters, curve,
        // emissions, supply and totals; it is the u64 right before the remaining maps' five
        // zero counts and the trailing counters. Overwrite the map count of accounts.
        let tail = 5 * 8 + 3 * 16 + 8;
        let accounts_at = bytes.len() - tail;
        bytes
            .get_mut(accounts_at..accounts_at + 8)
            .unwrap_or_default()
            .copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            Ledger::decode_state(&bytes)
                .map(|_| ())
                .map_err(|e| e.reason),
            Err("a length runs past the end of the state")
        );
    }
}
