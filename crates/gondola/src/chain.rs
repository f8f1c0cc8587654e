//! `gondola chain`: the economy's contracts on an EVM chain. `deploy` puts the suite (VVV,
//! staking, DIEM, the airdrop and team vesting) on a chain from the same genesis the ledger
//! starts with: the seed's allocations, the launch emission rate, the default mint curve. The
//! other commands are a wallet's real transactions on the deployed suite (signed here with
//! the wallet key, sent over JSON-RPC), each tried first so a refusal is named and costs
//! nothing, and `balance` reads what an account holds there.

mod admin;

use std::path::PathBuf;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, bail};
use chain::bindings::{Airdrop, Diem, JournalAnchor, Staking, TeamVesting, VVV};
use chain::deploy::{AirdropProof, Deployment};
use clap::{Args, Subcommand};
use ledger::{Allocation, GenesisConfig};

#[derive(Args)]
pub(crate) struct ChainArgs {
    #[command(subcommand)]
    command: ChainCommand,
}

#[derive(Subcommand)]
enum ChainCommand {
    /// Deploy the contract suite with the genesis allocations, signed by the key in --key
    /// (the admin of every contract, as the operator key is the ledger's admin). Prints the
    /// contracts' addresses (--json: the deployment file the other commands read); with
    /// --airdrop, writes each allocation's Merkle proof to --proofs.
    Deploy(DeployArgs),
    /// What the wallet holds on chain: VVV, staked, cooling and locked sVVV, pending rewards,
    /// DIEM, staked DIEM and the allowance it gives, vested team VVV, the mint rate.
    Balance(OnChain),
    /// Send VVV or DIEM (unstaked) to another address.
    Transfer {
        #[command(flatten)]
        on: OnChain,
        /// The recipient (0x and 40 hex digits).
        #[arg(long)]
        to: String,
        /// VVV to send.
        #[arg(long, conflicts_with = "diem", required_unless_present = "diem")]
        vvv: Option<String>,
        /// DIEM to send.
        #[arg(long)]
        diem: Option<String>,
    },
    /// Stake VVV (approving the staking contract for it first, if needed).
    Stake {
        #[command(flatten)]
        on: OnChain,
        vvv: String,
    },
    /// Start the unstake cooldown of SVVV staked sVVV.
    Unstake {
        #[command(flatten)]
        on: OnChain,
        svvv: String,
    },
    /// Take back, as VVV, sVVV whose cooldown has ended.
    FinalizeUnstake(OnChain),
    /// Claim staking rewards; with --stake, stake them instead.
    Claim {
        #[command(flatten)]
        on: OnChain,
        #[arg(long)]
        stake: bool,
    },
    /// Claim the wallet's airdrop allocation with its proof (from the file `deploy` wrote).
    ClaimAirdrop {
        #[command(flatten)]
        on: OnChain,
        #[arg(long)]
        proofs: PathBuf,
    },
    /// Claim what has vested of the wallet's team grant.
    ClaimVested(OnChain),
    /// DIEM: mint (lock sVVV), burn (unlock it), stake, unstake, finalize.
    Diem {
        #[command(flatten)]
        on: OnChain,
        #[command(subcommand)]
        command: DiemCommand,
    },
    /// The operator's transactions: the emission rate, utilization, buy-back and burn, and the
    /// unclaimed airdrop's burn (--wallet holds the role: the deployer's key holds them all).
    Admin {
        #[command(flatten)]
        on: OnChain,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Anchor the ledger journal's head on chain (the operator, daily): its last record's
    /// sequence and hash, after checking the whole journal. --wallet is the operator key.
    Anchor {
        #[command(flatten)]
        on: OnChain,
        /// The gateway's data directory (the journal is in DATA_DIR/ledger).
        #[arg(long, env = "GONDOLA_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Check a copy of the ledger journal against every anchor on chain: each anchored record
    /// must be in it with the anchored hash. Needs no wallet.
    VerifyAnchors {
        /// The chain's JSON-RPC endpoint.
        #[arg(long, env = "GONDOLA_RPC_URL")]
        rpc_url: String,
        /// The deployment, as `gondola chain deploy --json` printed it.
        #[arg(long, env = "GONDOLA_DEPLOYMENT")]
        deployment: PathBuf,
        /// The data directory holding the journal copy (DATA_DIR/ledger).
        #[arg(long, env = "GONDOLA_DATA_DIR")]
        data_dir: PathBuf,
    },
}

#[derive(Args)]
struct DeployArgs {
    /// The chain's JSON-RPC endpoint (a local anvil, Base Sepolia, Base).
    #[arg(long, env = "GONDOLA_RPC_URL")]
    rpc_url: String,
    /// The deployer's key file (64 hex digits, as `gondola wallet` writes): the admin.
    #[arg(long, env = "GONDOLA_DEPLOYER_KEY")]
    key: PathBuf,
    /// Genesis accounts (0x addresses); each defaults to the deployer.
    #[arg(long)]
    treasury: Option<String>,
    #[arg(long)]
    incentive_fund: Option<String>,
    #[arg(long)]
    liquidity: Option<String>,
    /// The team grant's holder: a quarter at genesis, the rest vesting over 730 days.
    #[arg(long)]
    team: Option<String>,
    /// The airdrop: a CSV file of `address,VVV` lines (whole VVV, decimals allowed).
    #[arg(long)]
    airdrop: Option<PathBuf>,
    /// How long the airdrop can be claimed, in days.
    #[arg(long, default_value_t = 45)]
    airdrop_window_days: u64,
    /// Where to write the airdrop's proofs (JSON).
    #[arg(long, default_value = "airdrop-proofs.json")]
    proofs: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: ChainArgs) -> anyhow::Result<()> {
    match args.command {
        ChainCommand::Deploy(args) => deploy(args).await,
        ChainCommand::Balance(on) => balance(on).await,
        ChainCommand::Stake { on, vvv } => stake(on, vvv).await,
        ChainCommand::Transfer { on, to, vvv, diem } => transfer(on, &to, vvv, diem).await,
        ChainCommand::Unstake { on, svvv } => {
            let session = Session::open(&on).await?;
            let amount = amount(&svvv, "sVVV")?;
            session
                .send(
                    "start the unstake cooldown",
                    session.deployment.staking,
                    Staking::initiateUnstakeCall { amount },
                )
                .await
        }
        ChainCommand::FinalizeUnstake(on) => {
            let session = Session::open(&on).await?;
            session
                .send(
                    "finalize the unstake",
                    session.deployment.staking,
                    Staking::finalizeUnstakeCall {},
                )
                .await
        }
        ChainCommand::Claim { on, stake } => {
            let session = Session::open(&on).await?;
            let to = session.deployment.staking;
            if stake {
                session
                    .send(
                        "claim and stake rewards",
                        to,
                        Staking::claimAndStakeRewardsCall {},
                    )
                    .await
            } else {
                session
                    .send("claim rewards", to, Staking::claimRewardsCall {})
                    .await
            }
        }
        ChainCommand::ClaimAirdrop { on, proofs } => claim_airdrop(on, proofs).await,
        ChainCommand::ClaimVested(on) => {
            let session = Session::open(&on).await?;
            session
                .send(
                    "claim vested VVV",
                    session.deployment.team_vesting,
                    TeamVesting::claimCall {},
                )
                .await
        }
        ChainCommand::Diem { on, command } => diem_command(on, command).await,
        ChainCommand::Admin { on, command } => admin::run(on, command).await,
        ChainCommand::Anchor { on, data_dir } => anchor(on, data_dir).await,
        ChainCommand::VerifyAnchors {
            rpc_url,
            deployment,
            data_dir,
        } => verify_anchors(&rpc_url, &deployment, &data_dir).await,
    }
}

async fn anchor(on: OnChain, data_dir: PathBuf) -> anyhow::Result<()> {
    let journal = data_dir.join("ledger");
    // The whole journal is checked before its head is vouched for.
    let verified = tokio::task::spawn_blocking(move || ledger_store::verify(&journal))
        .await
        .context("the journal check stopped")?
        .context("the journal does not verify; nothing was anchored")?;
    let session = Session::open(&on).await?;
    session
        .send(
            &format!("anchor record {}", verified.last_sequence),
            session.deployment.journal_anchor,
            JournalAnchor::anchorCall {
                sequence: verified.last_sequence,
                recordHash: verified.last_record_hash.0.into(),
            },
        )
        .await
}

async fn verify_anchors(
    rpc_url: &str,
    deployment: &std::path::Path,
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let deployment = read_deployment(deployment)?;
    let provider = ProviderBuilder::new().connect_http(rpc_url.parse().context("the RPC URL")?);
    let contract = JournalAnchor::new(deployment.journal_anchor, &provider);
    let count = u64::try_from(
        contract
            .count()
            .call()
            .await
            .context("cannot read the anchors")?,
    )
    .unwrap_or(u64::MAX);
    let mut anchored = std::collections::BTreeMap::new();
    for index in 0..count {
        let anchor = contract
            .anchors(U256::from(index))
            .call()
            .await
            .with_context(|| format!("cannot read anchor {index}"))?;
        anchored.insert(anchor.sequence, (index, anchor.recordHash));
    }
    let journal = data_dir.join("ledger");
    let wanted = anchored.clone();
    let found = tokio::task::spawn_blocking(move || {
        let mut found = std::collections::BTreeMap::new();
        ledger_store::read_records(&journal, |record| {
            if wanted.contains_key(&record.sequence) {
                found.insert(record.sequence, record.record_hash.0);
            }
            Ok(())
        })
        .map(|report| (found, report.last_sequence))
    })
    .await
    .context("the journal read stopped")?
    .context("cannot read the journal")?;
    let (found, last_sequence) = found;
    let mut problems = Vec::new();
    for (sequence, (index, hash)) in &anchored {
        match found.get(sequence) {
            Some(held) if held.as_slice() == hash.as_slice() => {}
            Some(held) => problems.push(format!(
                "anchor {index}: record {sequence} is 0x{} here, 0x{} on chain",
                hex::encode(held),
                hex::encode(hash)
            )),
            None => problems.push(format!(
                "anchor {index}: record {sequence} is not in this journal (it ends at {last_sequence})"
            )),
        }
    }
    if !problems.is_empty() {
        bail!(
            "the journal does not match the chain:\n{}",
            problems.join("\n")
        );
    }
    match anchored.keys().next_back() {
        Some(last) => println!(
            "{count} anchors match this journal; the last covers records 1 to {last} of {last_sequence}"
        ),
        None => println!("no anchors on chain yet"),
    }
    Ok(())
}

fn read_deployment(path: &std::path::Path) -> anyhow::Result<Deployment> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text).context("the deployment file is not a deployment")
}

fn address(text: &str, what: &str) -> anyhow::Result<ledger::Address> {
    ledger::Address::from_hex(text).with_context(|| format!("{what} {text:?} is not an address"))
}

fn airdrop(path: &std::path::Path) -> anyhow::Result<Vec<Allocation>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut allocations = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((account, amount)) = line.split_once(',') else {
            bail!("{}:{}: expected address,VVV", path.display(), number + 1);
        };
        let vvv_units = wire::money::Amount::parse_decimal(amount.trim())
            .map_err(|error| anyhow::anyhow!("{}:{}: {error:?}", path.display(), number + 1))?
            .0;
        allocations.push(Allocation {
            address: address(account.trim(), "the airdrop account")?,
            vvv_units,
        });
    }
    Ok(allocations)
}

async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let wallet = wallet::Wallet::load(&args.key)
        .with_context(|| format!("cannot read the key in {}", args.key.display()))?;
    let signer: alloy::signers::local::PrivateKeySigner = wallet
        .secret_hex()
        .parse()
        .context("the key is not a secp256k1 key")?;
    let deployer = wallet.address();
    let pick = |given: &Option<String>, what: &str| match given {
        Some(text) => address(text, what),
        None => Ok(deployer),
    };
    let allocations = match &args.airdrop {
        Some(path) => airdrop(path)?,
        None => Vec::new(),
    };
    let mut genesis = GenesisConfig::venice(
        deployer,
        pick(&args.treasury, "--treasury")?,
        pick(&args.incentive_fund, "--incentive-fund")?,
        pick(&args.liquidity, "--liquidity")?,
        pick(&args.team, "--team")?,
        allocations,
    );
    genesis.airdrop_claim_window_seconds = args
        .airdrop_window_days
        .checked_mul(ledger::SECONDS_PER_DAY)
        .context("--airdrop-window-days is too long")?;
    let deployment = chain::deploy::deploy(&args.rpc_url, signer, &genesis).await?;
    if !genesis.airdrop.is_empty() {
        let (_, proofs) = chain::deploy::airdrop_proofs(&genesis);
        std::fs::write(&args.proofs, serde_json::to_vec_pretty(&proofs)?)
            .with_context(|| format!("cannot write {}", args.proofs.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&deployment)?);
    } else {
        println!("chain id       {}", deployment.chain_id);
        println!("VVV            {}", deployment.vvv);
        println!("staking        {}", deployment.staking);
        println!("DIEM           {}", deployment.diem);
        println!("airdrop        {}", deployment.airdrop);
        println!("team vesting   {}", deployment.team_vesting);
        println!("genesis time   {}", deployment.genesis_seconds);
        println!("last block     {}", deployment.block);
        if !genesis.airdrop.is_empty() {
            println!("airdrop proofs {}", args.proofs.display());
        }
    }
    Ok(())
}

/// Where the suite is and who signs: what every on-chain command takes.
#[derive(Args)]
struct OnChain {
    /// The chain's JSON-RPC endpoint.
    #[arg(long, env = "GONDOLA_RPC_URL")]
    rpc_url: String,
    /// The deployment, as `gondola chain deploy --json` printed it.
    #[arg(long, env = "GONDOLA_DEPLOYMENT")]
    deployment: PathBuf,
    /// The wallet key file (64 hex digits, as `gondola wallet` writes).
    #[arg(long, env = "GONDOLA_WALLET")]
    wallet: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum DiemCommand {
    /// Lock at most SVVV staked sVVV for DIEM at the curve's rate now, refusing less than the
    /// quote minus --slippage-bps.
    Mint {
        svvv: String,
        #[arg(long, default_value_t = 50)]
        slippage_bps: u32,
    },
    /// Burn DIEM you minted, unlocking its share of your locked sVVV.
    Burn { diem: String },
    /// Stake DIEM: each staked DIEM is $1 of inference a day.
    Stake { diem: String },
    /// Start DIEM's unstake cooldown.
    Unstake { diem: String },
    /// Take back DIEM whose cooldown has ended.
    Finalize,
}

/// A connected wallet and the suite's contracts.
struct Session {
    provider: alloy::providers::DynProvider,
    account: Address,
    deployment: Deployment,
    json: bool,
}

impl Session {
    async fn open(on: &OnChain) -> anyhow::Result<Self> {
        let deployment = read_deployment(&on.deployment)?;
        let wallet = wallet::Wallet::load(&on.wallet)
            .with_context(|| format!("cannot read the key in {}", on.wallet.display()))?;
        let signer: PrivateKeySigner = wallet.secret_hex().parse().context("not a key")?;
        let account = signer.address();
        let url = on.rpc_url.parse().context("the RPC URL")?;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_http(url)
            .erased();
        let chain_id = provider
            .get_chain_id()
            .await
            .context("cannot reach the chain")?;
        if chain_id != deployment.chain_id {
            bail!(
                "the RPC URL serves chain {chain_id}, the deployment is on chain {}",
                deployment.chain_id
            );
        }
        Ok(Self {
            provider,
            account,
            deployment,
            json: on.json,
        })
    }

    /// Tries the call first (so a refusal is named, and nothing is sent), then sends it and
    /// waits for its receipt.
    async fn send<C: alloy::sol_types::SolCall>(
        &self,
        what: &str,
        to: Address,
        call: C,
    ) -> anyhow::Result<()> {
        let request = alloy::rpc::types::TransactionRequest::default()
            .to(to)
            .input(call.abi_encode().into());
        let receipt = match chain::transact::send(&self.provider, self.account, request).await {
            Ok(receipt) => receipt,
            Err(chain::transact::SendError::Refused(error)) => {
                bail!("{what} refused: {}", refusal(&error))
            }
            Err(error) => bail!("{what} {error}"),
        };
        if !self.json {
            println!(
                "{what}: {} (gas {})",
                receipt.transaction_hash, receipt.gas_used
            );
        }
        Ok(())
    }
}

/// A revert's custom error by name (with its fields), from any of the suite's contracts.
fn refusal(error: &alloy::transports::TransportError) -> String {
    use alloy::sol_types::SolInterface;
    let Some(data) = error.as_error_resp().and_then(|resp| resp.as_revert_data()) else {
        return error.to_string();
    };
    let decoded = Staking::StakingErrors::abi_decode(&data)
        .map(|error| format!("{error:?}"))
        .or_else(|_| Diem::DiemErrors::abi_decode(&data).map(|error| format!("{error:?}")))
        .or_else(|_| VVV::VVVErrors::abi_decode(&data).map(|error| format!("{error:?}")))
        .or_else(|_| Airdrop::AirdropErrors::abi_decode(&data).map(|error| format!("{error:?}")))
        .or_else(|_| {
            TeamVesting::TeamVestingErrors::abi_decode(&data).map(|error| format!("{error:?}"))
        })
        .or_else(|_| {
            JournalAnchor::JournalAnchorErrors::abi_decode(&data).map(|error| format!("{error:?}"))
        });
    match decoded {
        // `Name(Name { field: value })` reads as `Name { field: value }`.
        Ok(debug) => match debug.split_once('(') {
            Some((_, inner)) => inner.strip_suffix(')').unwrap_or(inner).to_owned(),
            None => debug,
        },
        Err(_) => format!("reverted with {data}"),
    }
}

fn amount(text: &str, what: &str) -> anyhow::Result<U256> {
    Ok(U256::from(
        wire::money::Amount::parse_decimal(text)
            .map_err(|error| anyhow::anyhow!("{what}: {text:?} is not an amount: {error:?}"))?
            .0,
    ))
}

fn show(units: U256) -> String {
    match u128::try_from(units) {
        Ok(units) => wire::money::Amount(units).to_decimal_string(),
        Err(_) => units.to_string(),
    }
}

async fn balance(on: OnChain) -> anyhow::Result<()> {
    let session = Session::open(&on).await?;
    let deployment = &session.deployment;
    let vvv = VVV::new(deployment.vvv, &session.provider);
    let staking = Staking::new(deployment.staking, &session.provider);
    let diem = Diem::new(deployment.diem, &session.provider);
    let vesting = TeamVesting::new(deployment.team_vesting, &session.provider);
    let who = session.account;
    let position = staking.positions(who).call().await?;
    let staked_diem = diem.stakes(who).call().await?;
    let figures = serde_json::json!({
        "account": who.to_string(),
        "vvv": show(vvv.balanceOf(who).call().await?),
        "staked_svvv": show(position.staked),
        "cooling_svvv": show(position.cooling),
        "svvv_unlock_at": position.unlockAt,
        "locked_svvv": show(position.locked),
        "diem_minted_outstanding": show(position.diemMintedOutstanding),
        "pending_rewards": show(staking.pendingRewards(who).call().await?),
        "diem": show(diem.balanceOf(who).call().await?),
        "staked_diem": show(staked_diem.staked),
        "cooling_diem": show(staked_diem.cooling),
        "diem_unlock_at": staked_diem.unlockAt,
        "diem_allowance_usd_per_day": show(diem.allowanceOf(who).call().await?),
        "vesting_claimable": show(vesting.claimable(who).call().await?),
        "mint_rate_svvv_per_diem": show(staking.rateAt(staking.diemSupply().call().await?).call().await?),
    });
    if session.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else if let Some(fields) = figures.as_object() {
        for (name, value) in fields {
            println!(
                "{name:28} {}",
                value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned)
            );
        }
    }
    Ok(())
}

async fn transfer(
    on: OnChain,
    to: &str,
    vvv: Option<String>,
    diem: Option<String>,
) -> anyhow::Result<()> {
    let session = Session::open(&on).await?;
    let to = wallet::to_alloy(address(to, "--to")?);
    match (vvv, diem) {
        (Some(vvv), None) => {
            let value = amount(&vvv, "VVV")?;
            session
                .send(
                    "send VVV",
                    session.deployment.vvv,
                    VVV::transferCall { to, value },
                )
                .await
        }
        (None, Some(diem)) => {
            let value = amount(&diem, "DIEM")?;
            session
                .send(
                    "send DIEM",
                    session.deployment.diem,
                    Diem::transferCall { to, value },
                )
                .await
        }
        _ => bail!("give exactly one of --vvv and --diem"),
    }
}

async fn stake(on: OnChain, vvv_amount: String) -> anyhow::Result<()> {
    let session = Session::open(&on).await?;
    let value = amount(&vvv_amount, "VVV")?;
    let deployment = &session.deployment;
    let vvv = VVV::new(deployment.vvv, &session.provider);
    let allowed = vvv
        .allowance(session.account, deployment.staking)
        .call()
        .await?;
    if allowed < value {
        session
            .send(
                "approve",
                deployment.vvv,
                VVV::approveCall {
                    spender: deployment.staking,
                    value,
                },
            )
            .await?;
    }
    session
        .send(
            "stake",
            deployment.staking,
            Staking::stakeCall { amount: value },
        )
        .await?;
    Ok(())
}

async fn claim_airdrop(on: OnChain, proofs: PathBuf) -> anyhow::Result<()> {
    let session = Session::open(&on).await?;
    let text =
        std::fs::read(&proofs).with_context(|| format!("cannot read {}", proofs.display()))?;
    let proofs: Vec<AirdropProof> = serde_json::from_slice(&text).context("not airdrop proofs")?;
    let Some(mine) = proofs
        .into_iter()
        .find(|proof| proof.account == session.account)
    else {
        bail!("{} has no allocation in the airdrop", session.account);
    };
    session
        .send(
            "claim the airdrop",
            session.deployment.airdrop,
            Airdrop::claimCall {
                amount: mine.amount,
                proof: mine.proof,
            },
        )
        .await?;
    Ok(())
}

async fn diem_command(on: OnChain, command: DiemCommand) -> anyhow::Result<()> {
    let session = Session::open(&on).await?;
    let (staking, diem) = (session.deployment.staking, session.deployment.diem);
    match command {
        DiemCommand::Mint { svvv, slippage_bps } => {
            let lock = amount(&svvv, "sVVV")?;
            let quote = Staking::new(staking, &session.provider)
                .previewMint(lock)
                .call()
                .await?;
            if !quote._0 || quote._1.is_zero() {
                bail!("{svvv} sVVV mints no DIEM at the current rate");
            }
            let floor =
                quote._1 * U256::from(10_000 - slippage_bps.min(10_000)) / U256::from(10_000);
            if !session.json {
                println!("quote: {} DIEM for {} sVVV", show(quote._1), show(quote._2));
            }
            session
                .send(
                    "mint DIEM",
                    staking,
                    Staking::mintDiemCall {
                        svvvToLock: lock,
                        minDiemOut: floor,
                    },
                )
                .await?;
        }
        DiemCommand::Burn { diem: burned } => {
            session
                .send(
                    "burn DIEM",
                    staking,
                    Staking::burnDiemCall {
                        amount: amount(&burned, "DIEM")?,
                    },
                )
                .await?;
        }
        DiemCommand::Stake { diem: staked } => {
            session
                .send(
                    "stake DIEM",
                    diem,
                    Diem::stakeCall {
                        amount: amount(&staked, "DIEM")?,
                    },
                )
                .await?;
        }
        DiemCommand::Unstake { diem: unstaked } => {
            session
                .send(
                    "unstake DIEM",
                    diem,
                    Diem::initiateUnstakeCall {
                        amount: amount(&unstaked, "DIEM")?,
                    },
                )
                .await?;
        }
        DiemCommand::Finalize => {
            session
                .send(
                    "finalize DIEM's unstake",
                    diem,
                    Diem::finalizeUnstakeCall {},
                )
                .await?;
        }
    }
    Ok(())
}
