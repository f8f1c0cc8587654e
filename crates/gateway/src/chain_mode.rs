//! Chain mode's side of the gateway: the meter's stake as the chain's follower counts it, the
//! follower's figures in `/metrics`, and the operator's duties on the chain (the journal's
//! anchor and the day's utilization) for a gateway given the operator's key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// How often the operator's loop looks at the clock and the journal, at the most.
const OPERATOR_TICK: Duration = Duration::from_secs(3_600);

/// Chain mode with an operator key (`anchor_key`): the operator's duties on the chain.
/// - Every `anchor_every`, the journal's head is anchored if it moved since the last anchor.
/// - Once a UTC day, yesterday's utilization is reported to the staking contract (spending
///   settled in the journal over the network's capacity plus the DIEM staked on the chain),
///   as the ledger's operator reports it in the journal.
///
/// A failure is logged and tried again at the next tick.
pub(crate) async fn operator_loop(
    economy: std::sync::Weak<economy::Economy>,
    config: chain::stakes::ChainConfig,
    signer: alloy::signers::local::PrivateKeySigner,
) {
    let contract = config.deployment.journal_anchor;
    let mut ticker = tokio::time::interval(config.anchor_every.min(OPERATOR_TICK));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut anchored: Option<u64> = None;
    let mut anchor_tried: Option<Instant> = None;
    let mut reported_day: Option<u64> = None;
    loop {
        ticker.tick().await;
        let Some(economy) = economy.upgrade() else {
            return;
        };
        let today = economy.clock.now() / economy::SECONDS_PER_DAY;
        let (sequence, record_hash, spent_yesterday) = economy.read(|store| {
            (
                store.last_sequence(),
                store.last_record_hash(),
                today
                    .checked_sub(1)
                    .map(|yesterday| economy::spent_on_day(store.ledger(), yesterday)),
            )
        });
        let network_capacity = economy.config.network_capacity_usd_units_per_day;
        drop(economy);
        if reported_day != Some(today)
            && let Some(spent) = spent_yesterday
        {
            match chain::utilization::total_staked_diem(&config.rpc_url, config.deployment.diem)
                .await
            {
                Ok(staked_diem) => {
                    let bps = economy::utilization_of(
                        spent,
                        network_capacity.saturating_add(staked_diem),
                    );
                    match chain::utilization::report(
                        &config.rpc_url,
                        signer.clone(),
                        config.deployment.staking,
                        bps,
                    )
                    .await
                    {
                        Ok(Some(block)) => {
                            tracing::info!(
                                utilization_bps = bps,
                                block,
                                "utilization reported on the chain"
                            );
                            reported_day = Some(today);
                        }
                        Ok(None) => {
                            tracing::debug!(
                                utilization_bps = bps,
                                "utilization unchanged on the chain"
                            );
                            reported_day = Some(today);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "cannot report utilization on the chain")
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot read the staked DIEM"),
            }
        }
        if anchor_tried.is_some_and(|at| at.elapsed() < config.anchor_every) {
            continue;
        }
        if anchored.is_none() {
            match chain::anchor::last_anchored(&config.rpc_url, contract).await {
                Ok(last) => anchored = Some(last),
                Err(error) => {
                    tracing::warn!(%error, "cannot read the journal's anchors");
                    continue;
                }
            }
        }
        if anchored.is_some_and(|last| sequence <= last) {
            continue;
        }
        anchor_tried = Some(Instant::now());
        match chain::anchor::post(
            &config.rpc_url,
            signer.clone(),
            contract,
            sequence,
            record_hash.0.into(),
        )
        .await
        {
            Ok(block) => {
                tracing::info!(sequence, block, "journal anchored on the chain");
                anchored = Some(sequence);
            }
            Err(error) => {
                tracing::warn!(%error, sequence, "cannot anchor the journal");
                // Read the chain's last anchor again next time (another replica may have).
                anchored = None;
            }
        }
    }
}

/// The meter's stake in chain mode: what the chain says, held back for confirmations.
pub(crate) struct ChainStakeSource(pub(crate) Arc<chain::stakes::Stakes>);

impl economy::meter::StakeSource for ChainStakeSource {
    fn stake_of(&self, account: ledger::Address) -> economy::meter::OnChainStake {
        let stake = self.0.get(wallet::to_alloy(account));
        economy::meter::OnChainStake {
            staked_svvv_units: stake.svvv_units,
            diem_allowance_usd_units_per_day: stake.diem_allowance_units,
        }
    }
}

/// Brings the follower's figures in `metrics` up to date, for a scrape of `/metrics`.
pub(crate) fn record_follower(stakes: &chain::stakes::Stakes, metrics: &Metrics) {
    metrics
        .chain_head_block
        .set(i64::try_from(stakes.head()).unwrap_or(i64::MAX));
    metrics
        .chain_followed_accounts
        .set(i64::try_from(stakes.followed()).unwrap_or(i64::MAX));
    // The follower counts its reads; the counter catches up with it.
    let reads = stakes.reads();
    let counted = metrics.chain_account_reads.get();
    metrics
        .chain_account_reads
        .inc_by(reads.saturating_sub(counted));
    metrics.chain_seconds_since_poll.set(
        stakes
            .since_last_poll()
            .map_or(-1, |age| i64::try_from(age.as_secs()).unwrap_or(i64::MAX)),
    );
}
