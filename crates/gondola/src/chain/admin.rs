//! `gondola chain admin`: the operator's transactions on the suite, each sent by a wallet
//! holding the contract's role (the deployer's key holds them all): the emission rate, the
//! day's utilization (which a gateway with `anchor_key` reports by itself), a buy-back and burn
//! from the treasury, and the burn of the airdrop left unclaimed after its window. Each is tried
//! first, so a refusal is named (`AccessControlUnauthorizedAccount { … }` for a key without the
//! role) and costs nothing.

use alloy::primitives::U256;
use clap::Subcommand;

use super::{OnChain, Session, amount};
use chain::bindings::{Airdrop, Staking, VVV};

/// Seconds in the year an emission rate is given per, as the ledger's `set-emissions`.
const SECONDS_PER_YEAR: u64 = 365 * 86_400;

#[derive(Subcommand)]
pub(super) enum AdminCommand {
    /// Set the emission rate, in whole VVV per year (PARAMETERS_ROLE).
    SetEmissions { vvv_per_year: String },
    /// Report a day's utilization in basis points of capacity (REPORTER_ROLE); a gateway with
    /// `anchor_key` reports yesterday's once a day by itself.
    ReportUtilization { bps: u32 },
    /// Burn VVV from the treasury, bought back with --revenue-usd of revenue (BUYBACK_ROLE;
    /// the treasury approves the staking contract for it, which this does when the wallet is
    /// the treasury).
    Buyback {
        #[arg(long)]
        vvv: String,
        #[arg(long)]
        revenue_usd: String,
    },
    /// Burn the airdrop's unclaimed VVV once its window has closed (the airdrop's admin).
    BurnUnclaimedAirdrop,
}

pub(super) async fn run(on: OnChain, command: AdminCommand) -> anyhow::Result<()> {
    let session = Session::open(&on).await?;
    let staking = session.deployment.staking;
    match command {
        AdminCommand::SetEmissions { vvv_per_year } => {
            let per_year = amount(&vvv_per_year, "VVV per year")?;
            let per_second = per_year / U256::from(SECONDS_PER_YEAR);
            session
                .send(
                    "set the emission rate",
                    staking,
                    Staking::setEmissionRateCall {
                        vvvPerSecond: per_second,
                    },
                )
                .await
        }
        AdminCommand::ReportUtilization { bps } => {
            session
                .send(
                    "report utilization",
                    staking,
                    Staking::reportUtilizationCall { bps },
                )
                .await
        }
        AdminCommand::Buyback { vvv, revenue_usd } => {
            let burned = amount(&vvv, "VVV")?;
            let revenue = amount(&revenue_usd, "revenue in USD")?;
            let treasury = Staking::new(staking, &session.provider)
                .treasury()
                .call()
                .await?;
            if treasury == session.account {
                let token = VVV::new(session.deployment.vvv, &session.provider);
                if token.allowance(treasury, staking).call().await? < burned {
                    session
                        .send(
                            "approve the buy-back",
                            session.deployment.vvv,
                            VVV::approveCall {
                                spender: staking,
                                value: burned,
                            },
                        )
                        .await?;
                }
            }
            session
                .send(
                    "buy back and burn",
                    staking,
                    Staking::buybackAndBurnCall {
                        amount: burned,
                        revenueUsd: revenue,
                    },
                )
                .await
        }
        AdminCommand::BurnUnclaimedAirdrop => {
            session
                .send(
                    "burn the unclaimed airdrop",
                    session.deployment.airdrop,
                    Airdrop::burnUnclaimedCall {},
                )
                .await
        }
    }
}
