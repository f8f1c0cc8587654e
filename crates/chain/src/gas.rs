//! The gas limit a transaction is sent with.
//!
//! A node's estimate is the least gas the transaction needs against the state and block time it
//! was estimated at, and nodes find it by bisection, so it has no slack. The suite's costs move
//! with the block time: a VVV transfer, a stake or a DIEM operation first accrues the emissions
//! since the last accrual, which writes the accumulators and mints to the stakers and the
//! treasury when any time has passed, and writes nothing when the estimate ran in the same second
//! as the last accrual. A transaction estimated in that second and mined in a later one would run
//! out of gas. So every transaction is sent with [`limit`]: its estimate, a quarter more, and
//! the most an accrual adds. Gas a transaction does not use is not charged.

use alloy::network::{Network, TransactionBuilder};
use alloy::providers::Provider;

/// The most gas an accrual can add to a transaction: the accumulators written, two mints (each
/// settling its recipient's position) and the event, with every slot cold. Measured at about
/// 75,000 on anvil (`tests/anvil.rs`); this leaves room.
pub const ACCRUAL_HEADROOM: u64 = 120_000;

/// The gas limit to send a transaction whose estimate is `estimate` with.
pub fn limit(estimate: u64) -> u64 {
    estimate
        .saturating_add(estimate / 4)
        .saturating_add(ACCRUAL_HEADROOM)
}

/// `request` with its gas limit set from the node's estimate (see [`limit`]). The estimate
/// also refuses a transaction that would revert, before anything is signed.
pub async fn with_limit<N: Network, P: Provider<N>>(
    provider: &P,
    request: N::TransactionRequest,
) -> Result<N::TransactionRequest, alloy::transports::TransportError> {
    let estimate = provider.estimate_gas(request.clone()).await?;
    Ok(request.with_gas_limit(limit(estimate)))
}
