//! `gondola chain`: the economy's contracts on an EVM chain. `deploy` puts the suite (VVV,
//! staking, DIEM, the airdrop and team vesting) on a chain from the same genesis the ledger
//! starts with: the seed's allocations, the launch emission rate, the default mint curve.

use std::path::PathBuf;

use anyhow::{Context, bail};
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
    /// contracts' addresses; with --airdrop, writes each allocation's Merkle proof to --proofs.
    Deploy(DeployArgs),
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
    }
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
