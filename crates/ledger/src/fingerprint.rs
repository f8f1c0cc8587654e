//! The canonical encoding of the whole state and its fingerprint. One byte stream, written by
//! [`write_state`], serves two purposes:
//!
//! - [`Ledger::state_hash`]: FNV-1a (128-bit) over the stream, for comparing a replay with the
//!   original. Not cryptographic: anyone can construct collisions, so it must never
//!   authenticate anything (files and records carry SHA-256 for that).
//! - [`Ledger::encode_state`]: the stream itself, which the store keeps as its snapshot and
//!   [`Ledger::decode_state`] (`snapshot.rs`) reads back. It opens with a version tag, so a
//!   state written by another version of this encoding is refused rather than misread.
//!
//! Every field is written (the exhaustive destructurings below stop compiling when a field is
//! added and not written), in a fixed order, big-endian, with maps in key order and every
//! variable-length part prefixed by its length.

use std::fmt;

use crate::account::{Account, Totals};
use crate::address::Address;
use crate::emissions::Emissions;
use crate::ledger::{GenesisTerms, Ledger, Supply};
use crate::params::Parameters;
use crate::usage_days::{AccountUsage, UsageDay, UsageTotals};

/// The first bytes of the encoding. v2: nonces, usage settlement and credit conservation
/// counters.
pub(crate) const STATE_TAG: &[u8] = b"gondola ledger state v2";

const FNV_128_OFFSET_BASIS: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
const FNV_128_PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

/// A 128-bit FNV-1a hash of the state: equal states give equal hashes; different states give
/// different hashes except by (unlikely, but constructible) collision.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateHash(pub u128);

impl StateHash {
    /// The fingerprint of the state whose [`Ledger::encode_state`] bytes these are, computed
    /// from the bytes alone (the fingerprint is the hash of that encoding).
    pub fn of_encoding(bytes: &[u8]) -> Self {
        let mut hash = Fnv1a128::new();
        hash.bytes(bytes);
        Self(hash.state)
    }
}

impl fmt::Display for StateHash {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:032x}", self.0)
    }
}

impl fmt::Debug for StateHash {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "StateHash({self})")
    }
}

/// FNV-1a, 128-bit. Its multiplication is modulo 2^128 by definition, the one place in this
/// crate where wrapping arithmetic is the intended meaning.
struct Fnv1a128 {
    state: u128,
}

impl Fnv1a128 {
    fn new() -> Self {
        Self {
            state: FNV_128_OFFSET_BASIS,
        }
    }
}

/// Where the encoding goes: the hash, or a buffer.
trait Sink {
    fn bytes(&mut self, bytes: &[u8]);

    fn u128(&mut self, value: u128) {
        self.bytes(&value.to_be_bytes());
    }

    fn u64(&mut self, value: u64) {
        self.bytes(&value.to_be_bytes());
    }

    fn u32(&mut self, value: u32) {
        self.bytes(&value.to_be_bytes());
    }

    fn address(&mut self, address: &Address) {
        self.bytes(&address.0);
    }

    /// Lengths prefix every variable-length part, so that no two different states encode to
    /// the same bytes.
    fn length(&mut self, length: usize) {
        self.u64(u64::try_from(length).unwrap_or(u64::MAX));
    }
}

impl Sink for Fnv1a128 {
    fn bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.state ^= u128::from(byte);
            self.state = self.state.wrapping_mul(FNV_128_PRIME);
        }
    }
}

impl Sink for Vec<u8> {
    fn bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

fn write_account(sink: &mut impl Sink, account: &Account) {
    let Account {
        vvv_units,
        staked_svvv_units,
        cooling_svvv_units,
        svvv_unlock_at_seconds,
        locked_svvv_units,
        diem_minted_outstanding_units,
        diem_units,
        staked_diem_units,
        cooling_diem_units,
        diem_unlock_at_seconds,
        rewards_owed_units,
        reward_per_share_paid,
        reward_per_locked_share_paid,
        usd_credit_units,
        bundled_credit_units,
        nonce,
    } = *account;
    for amount in [
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
    ] {
        sink.u128(amount);
    }
    sink.u64(svvv_unlock_at_seconds);
    sink.u64(diem_unlock_at_seconds);
    sink.u64(nonce);
}

fn write_usage(sink: &mut impl Sink, usage: &AccountUsage) {
    let AccountUsage {
        allowance_day,
        allowance_spent_units,
        days,
    } = usage;
    sink.u64(*allowance_day);
    sink.u128(*allowance_spent_units);
    sink.length(days.len());
    for (day, record) in days {
        let UsageDay {
            requests,
            prompt_tokens,
            completion_tokens,
            allowance_units,
            bundled_credit_units,
            usd_units,
        } = *record;
        sink.u64(*day);
        sink.u64(requests);
        sink.u64(prompt_tokens);
        sink.u64(completion_tokens);
        sink.u128(allowance_units);
        sink.u128(bundled_credit_units);
        sink.u128(usd_units);
    }
}

impl Ledger {
    /// The FNV-1a-128 fingerprint of the whole state: the hash of [`Ledger::encode_state`]'s
    /// bytes, computed without building them.
    pub fn state_hash(&self) -> StateHash {
        let mut hash = Fnv1a128::new();
        write_state(self, &mut hash);
        StateHash(hash.state)
    }

    /// Appends the canonical encoding of the whole state to `out`: what the store keeps as a
    /// snapshot, read back by [`Ledger::decode_state`]. The ledger's memory, not its history:
    /// O(accounts), a few hundred bytes per account.
    pub fn encode_state(&self, out: &mut Vec<u8>) {
        write_state(self, out);
    }
}

fn write_state(ledger: &Ledger, hash: &mut impl Sink) {
    let Ledger {
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
    } = ledger;
    hash.bytes(STATE_TAG);
    match genesis {
        None => hash.bytes(&[0]),
        Some(terms) => {
            let GenesisTerms {
                admin,
                treasury,
                genesis_seconds,
                team_vesting_seconds,
                airdrop_claim_deadline_seconds,
            } = *terms;
            hash.bytes(&[1]);
            hash.address(&admin);
            hash.address(&treasury);
            hash.u64(genesis_seconds);
            hash.u64(team_vesting_seconds);
            hash.u64(airdrop_claim_deadline_seconds);
        }
    }
    hash.u64(*now_seconds);
    let Parameters {
        unstake_cooldown_seconds,
        diem_unstake_cooldown_seconds,
        locked_yield_bps,
        minimum_spendable_staked_diem_units,
        utilization_split,
    } = parameters;
    hash.u64(*unstake_cooldown_seconds);
    hash.u64(*diem_unstake_cooldown_seconds);
    hash.u32(*locked_yield_bps);
    hash.u128(*minimum_spendable_staked_diem_units);
    hash.length(utilization_split.points.len());
    for point in &utilization_split.points {
        hash.u32(point.utilization_bps);
        hash.u32(point.company_share_bps);
    }
    // The curve's precomputed costs are a function of its points, so the points suffice.
    hash.length(mint_curve.points().len());
    for point in mint_curve.points() {
        hash.u64(point.supply_diem);
        hash.u128(point.rate_svvv_units_per_diem);
    }
    let Emissions {
        rate_vvv_units_per_second,
        utilization_bps,
        reward_per_share,
        reward_per_locked_share,
    } = *emissions;
    hash.u128(rate_vvv_units_per_second);
    hash.u32(utilization_bps);
    hash.u128(reward_per_share);
    hash.u128(reward_per_locked_share);
    let Supply {
        genesis_units,
        emitted_to_stakers_units,
        emitted_to_company_units,
        rewards_claimed_units,
        burned_unclaimed_airdrop_units,
        burned_by_buyback_units,
        buyback_revenue_usd_units,
        airdrop_unclaimed_units,
        team_unclaimed_units,
        diem_supply_units,
        credited_usd_units,
        credited_bundled_credit_units,
    } = *supply;
    for amount in [
        genesis_units,
        emitted_to_stakers_units,
        emitted_to_company_units,
        rewards_claimed_units,
        burned_unclaimed_airdrop_units,
        burned_by_buyback_units,
        buyback_revenue_usd_units,
        airdrop_unclaimed_units,
        team_unclaimed_units,
        diem_supply_units,
        credited_usd_units,
        credited_bundled_credit_units,
    ] {
        hash.u128(amount);
    }
    // The totals are a function of the accounts, but they are state that could drift, so
    // they are part of the fingerprint too.
    let Totals {
        vvv_units,
        staked_svvv_units,
        cooling_svvv_units,
        locked_svvv_units,
        diem_minted_outstanding_units,
        diem_units,
        staked_diem_units,
        cooling_diem_units,
        rewards_owed_units,
        usd_credit_units,
        bundled_credit_units,
    } = *totals;
    for amount in [
        vvv_units,
        staked_svvv_units,
        cooling_svvv_units,
        locked_svvv_units,
        diem_minted_outstanding_units,
        diem_units,
        staked_diem_units,
        cooling_diem_units,
        rewards_owed_units,
        usd_credit_units,
        bundled_credit_units,
    ] {
        hash.u128(amount);
    }
    hash.length(accounts.len());
    for (address, account) in accounts {
        hash.address(address);
        write_account(hash, account);
    }
    hash.length(vesting_grants.len());
    for (address, grant) in vesting_grants {
        hash.address(address);
        hash.u128(grant.vesting_units);
        hash.u128(grant.claimed_units);
    }
    hash.length(airdrop_unclaimed.len());
    for (address, amount) in airdrop_unclaimed {
        hash.address(address);
        hash.u128(*amount);
    }
    hash.length(buybacks_by_day.len());
    for (day, record) in buybacks_by_day {
        hash.u64(*day);
        hash.u128(record.vvv_burned_units);
        hash.u128(record.revenue_usd_units);
    }
    hash.length(usage.len());
    for (address, record) in usage {
        hash.address(address);
        write_usage(hash, record);
    }
    let UsageTotals {
        allowance_units,
        bundled_credit_units,
        usd_units,
    } = *usage_totals;
    hash.u128(allowance_units);
    hash.u128(bundled_credit_units);
    hash.u128(usd_units);
    hash.u64(*operations_accepted);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_128_matches_published_test_vectors() {
        let digest = |bytes: &[u8]| {
            let mut hash = Fnv1a128::new();
            Sink::bytes(&mut hash, bytes);
            hash.state
        };
        assert_eq!(digest(b""), 0x6c62272e07bb014262b821756295c58d);
        assert_eq!(digest(b"a"), 0xd228cb696f1a8caf78912b704e4a8964);
        assert_eq!(digest(b"foobar"), 0x343e1662793c64bf6f0d3597ba446f18);
    }

    #[test]
    fn the_hash_of_a_state_is_the_hash_of_its_encoding() {
        let ledger = Ledger::new();
        let mut bytes = Vec::new();
        ledger.encode_state(&mut bytes);
        assert_eq!(StateHash::of_encoding(&bytes), ledger.state_hash());
    }

    #[test]
    fn an_empty_ledger_has_a_stable_hash() {
        assert_eq!(Ledger::new().state_hash(), Ledger::new().state_hash());
    }
}
