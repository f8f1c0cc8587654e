//! The economy's terminal clients: the wallet (a secp256k1 key file), and commands that sign
//! ledger operations locally and submit them to a running gateway (`stake`, `diem mint`, …), or
//! read its state (`balance`, `ledger status`). The key never leaves this machine: the gateway
//! receives an EIP-712 signature, the operation, a nonce and a deadline.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use wallet::{JsonAddress, Operation, Scheme, SignedOperation, Units, Wallet};
use wire::economy::{
    BaseUnits, CreatedApiKey, KeyKind, LedgerAccount, LedgerReceipt, LedgerStatus, MintQuote,
    Succeeded, Web3Challenge, Web3KeyRequest,
};
use wire::money::Amount;

use crate::DEFAULT_GATEWAY_URL;

/// How long a signed operation stays valid.
const DEADLINE_SECONDS: u64 = 10 * 60;
/// Longest private key accepted on standard input.
const MAX_KEY_INPUT_BYTES: u64 = 1024;

#[derive(Args, Clone)]
pub(crate) struct WalletArgs {
    /// The wallet key file (64 hex digits, mode 0600). Default: DATA_DIR/wallet.key.
    #[arg(long, env = "GONDOLA_WALLET", global = true)]
    pub wallet: Option<PathBuf>,
    /// The gateway's base URL.
    #[arg(long, env = "GONDOLA_GATEWAY", default_value = DEFAULT_GATEWAY_URL, global = true)]
    pub gateway: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub(crate) enum WalletCommand {
    /// Create a new wallet key (refuses to overwrite one) and print its address.
    New,
    /// Print the wallet's address.
    Show,
    /// Import a private key (64 hex digits) read from standard input, or from the environment
    /// variable named by --from-env; never from the command line, where other users could see it.
    Import {
        #[arg(long)]
        from_env: Option<String>,
    },
    /// Print the private key, for moving the wallet to a browser or another machine.
    Export,
}

#[derive(Subcommand)]
pub(crate) enum DiemCommand {
    /// What minting costs now: give the sVVV to lock or the DIEM to mint.
    Quote {
        #[arg(long, conflicts_with = "diem", required_unless_present = "diem")]
        svvv: Option<String>,
        #[arg(long)]
        diem: Option<String>,
    },
    /// Lock staked sVVV and mint DIEM at the curve's price.
    Mint {
        /// sVVV to lock (whole tokens, decimals allowed).
        svvv: String,
        /// Refuse if fewer DIEM than this come out (default: the quote less --slippage-bps).
        #[arg(long)]
        min_diem: Option<String>,
        /// Tolerated shortfall against the quote, in basis points.
        #[arg(long, default_value_t = 50)]
        slippage_bps: u32,
    },
    /// Burn DIEM and unlock the proportional sVVV.
    Burn { diem: String },
    /// Stake DIEM: each staked DIEM is $1 a day of API credit (at least 0.1 staked).
    Stake { diem: String },
    /// Start unstaking DIEM (1-day cooldown), or with --finalize withdraw what has cooled.
    Unstake {
        #[arg(required_unless_present = "finalize")]
        diem: Option<String>,
        #[arg(long, conflicts_with = "diem")]
        finalize: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum AdminCommand {
    /// Credit USD balance and bundled credits to an account (operator key only).
    Credit {
        #[arg(long)]
        account: String,
        /// Dollars of USD balance.
        #[arg(long, default_value = "0")]
        usd: String,
        /// Dollars of bundled credits.
        #[arg(long, default_value = "0")]
        bundled: String,
    },
    /// Set the emission rate in whole VVV per year (operator key only).
    SetEmissions { vvv_per_year: String },
}

/// What every economy command takes: where the configuration and data live, the wallet and
/// the gateway.
#[derive(Args, Clone)]
pub(crate) struct EconomyArgs {
    #[command(flatten)]
    pub common: crate::CommonArgs,
    #[command(flatten)]
    pub wallet: WalletArgs,
}

/// The economy's commands, each declared here once: the top-level ones are subcommands of
/// `gondola`; `status` and `admin` are reached through `gondola ledger`.
#[derive(Subcommand)]
pub(crate) enum Action {
    /// Create, import, show or export the wallet key that signs your ledger operations.
    Wallet {
        #[command(flatten)]
        args: EconomyArgs,
        #[command(subcommand)]
        command: WalletCommand,
    },
    /// Show an account's tokens, credits and today's API allowance.
    Balance {
        #[command(flatten)]
        args: EconomyArgs,
        /// The account (default: the wallet's).
        address: Option<String>,
    },
    /// Send VVV or DIEM to another account.
    Transfer {
        #[command(flatten)]
        args: EconomyArgs,
        /// The receiving address.
        #[arg(long)]
        to: String,
        /// VVV to send (whole tokens, decimals allowed).
        #[arg(long)]
        vvv: Option<String>,
        /// DIEM to send.
        #[arg(long)]
        diem: Option<String>,
    },
    /// Stake VVV: staked sVVV earns emissions and a share of the network's daily capacity.
    Stake {
        #[command(flatten)]
        args: EconomyArgs,
        /// VVV to stake (whole tokens, decimals allowed).
        vvv: String,
    },
    /// Start unstaking sVVV (7-day cooldown), or with --finalize withdraw what has cooled.
    Unstake {
        #[command(flatten)]
        args: EconomyArgs,
        #[arg(required_unless_present = "finalize")]
        svvv: Option<String>,
        #[arg(long, conflicts_with = "svvv")]
        finalize: bool,
    },
    /// Claim staking rewards (or --stake them, or claim the --airdrop or --vested team grant).
    Claim {
        #[command(flatten)]
        args: EconomyArgs,
        #[arg(long)]
        stake: bool,
        #[arg(long)]
        airdrop: bool,
        #[arg(long)]
        vested: bool,
    },
    /// DIEM: quote, mint by locking sVVV, burn, stake for daily API credit, unstake.
    Diem {
        #[command(flatten)]
        args: EconomyArgs,
        #[command(subcommand)]
        command: DiemCommand,
    },
    /// Mint an API key for the wallet's account by signing a challenge (needs staked sVVV).
    Key {
        #[command(flatten)]
        args: EconomyArgs,
        /// An ADMIN key (it can manage the account's other keys) instead of INFERENCE.
        #[arg(long)]
        admin: bool,
        #[arg(long, default_value = "gondola CLI")]
        description: String,
    },
    /// `gondola ledger status`: the economy's figures from a running gateway.
    #[command(skip)]
    Status { args: EconomyArgs },
    /// `gondola ledger admin`: operations only the operator key may sign.
    #[command(skip)]
    Admin {
        args: EconomyArgs,
        command: AdminCommand,
    },
}

impl Action {
    fn args(&self) -> &EconomyArgs {
        match self {
            Self::Wallet { args, .. }
            | Self::Balance { args, .. }
            | Self::Transfer { args, .. }
            | Self::Stake { args, .. }
            | Self::Unstake { args, .. }
            | Self::Claim { args, .. }
            | Self::Diem { args, .. }
            | Self::Key { args, .. }
            | Self::Status { args }
            | Self::Admin { args, .. } => args,
        }
    }
}

fn default_wallet(data_dir: &Path) -> PathBuf {
    data_dir.join("wallet.key")
}

fn tokens(text: &str, what: &str) -> anyhow::Result<u128> {
    Ok(Amount::parse_decimal(text)
        .with_context(|| format!("{what}: {text:?} is not an amount (a decimal, up to 18 places)"))?
        .0)
}

fn show(units: BaseUnits) -> String {
    Amount(units.0).to_decimal_string()
}

/// Base units as a receipt's outcome writes them (a string of digits), shown as a decimal.
struct Client {
    http: reqwest::Client,
    gateway: String,
}

impl Client {
    fn new(gateway: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .context("cannot build the HTTP client")?,
            gateway: gateway.trim_end_matches('/').to_owned(),
        })
    }

    async fn answer(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.send().await.map_err(|error| {
            anyhow::anyhow!(
                "cannot reach the gateway at {} ({error}); is `gondola serve` running?",
                self.gateway
            )
        })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("the gateway answered {status}: {}", error_message(&body));
        }
        Ok(body)
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let answer = self
            .answer(self.http.get(format!("{}/api/v1{path}", self.gateway)))
            .await?;
        typed(path, answer)
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<T> {
        let answer = self
            .answer(
                self.http
                    .post(format!("{}/api/v1{path}", self.gateway))
                    .json(body),
            )
            .await?;
        typed(path, answer)
    }

    /// Signs `operation` with the wallet's next nonce and the gateway's domain, and submits it.
    /// The gateway signs operations of its own with the operator's account (usage settlement),
    /// so an operator's nonce can be taken between reading and submitting: a refusal for the
    /// nonce alone (nothing was applied) is signed again with the new one, a few times at most.
    async fn submit(&self, wallet: &Wallet, operation: Operation) -> anyhow::Result<LedgerReceipt> {
        let path = "/ledger/operations";
        let mut attempt = 1;
        loop {
            let status: LedgerStatus = self.get("/ledger/status").await?;
            let salt = status
                .eip712_domain
                .salt
                .strip_prefix("0x")
                .and_then(|digits| hex::decode(digits).ok())
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .context("the gateway's ledger status has no EIP-712 domain")?;
            let account: LedgerAccount = self
                .get(&format!("/ledger/accounts/{}", wallet.address()))
                .await?;
            let signed = SignedOperation::sign(
                wallet,
                &wallet::Domain { salt },
                operation.clone(),
                account.nonce,
                status.now + DEADLINE_SECONDS,
                Scheme::Eip712,
            );
            let response = self
                .http
                .post(format!("{}/api/v1{path}", self.gateway))
                .json(&signed)
                .send()
                .await
                .map_err(|error| {
                    anyhow::anyhow!(
                        "cannot reach the gateway at {} ({error}); is `gondola serve` running?",
                        self.gateway
                    )
                })?;
            let code = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if code.is_success() {
                return typed(path, body);
            }
            // Venice's error shape (on /api/v1) has `param` beside `error`; OpenAI's inside it.
            let param = body
                .get("param")
                .or_else(|| body.pointer("/error/param"))
                .and_then(Value::as_str);
            let nonce_taken = code == reqwest::StatusCode::BAD_REQUEST && param == Some("nonce");
            if nonce_taken && attempt < NONCE_ATTEMPTS {
                attempt += 1;
                continue;
            }
            bail!("the gateway answered {code}: {}", error_message(&body));
        }
    }
}

/// The message of an error answer, in the API's shape or a bare `error` string.
fn error_message(body: &Value) -> &str {
    body.pointer("/error/message")
        .or_else(|| body.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("no details")
}

/// Times an operation is signed and submitted when its nonce was taken meanwhile.
const NONCE_ATTEMPTS: u32 = 4;

fn load_wallet(path: &Path) -> anyhow::Result<Wallet> {
    Wallet::load(path).with_context(|| {
        format!(
            "no wallet at {}; create one with `gondola wallet new` or import one",
            path.display()
        )
    })
}

/// An answer read as the typed body its route returns.
fn typed<T: serde::de::DeserializeOwned>(path: &str, answer: Value) -> anyhow::Result<T> {
    serde_json::from_value(answer).with_context(|| {
        format!("the gateway's answer to {path} is not in the shape this client reads")
    })
}

fn print<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce(&T) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string(value).unwrap_or_else(|_| "null".into())
        );
    } else {
        println!("{}", text(value));
    }
}

fn receipt_text(receipt: &LedgerReceipt) -> String {
    let outcome = &receipt.outcome;
    let mut parts = vec![format!(
        "{} (ledger record {})",
        outcome.kind().replace('_', " "),
        receipt.sequence
    )];
    let (amounts, unlock_at) = outcome.amounts();
    for (name, units) in amounts {
        parts.push(format!("{name}: {}", show(units)));
    }
    if let Some(unlock_at) = unlock_at {
        parts.push(format!("unlocks at {unlock_at} (unix time)"));
    }
    parts.join("; ")
}

/// Runs an economy command: signs and submits its operation, or reads what it shows.
pub(crate) async fn run(action: Action) -> anyhow::Result<()> {
    let EconomyArgs {
        common,
        wallet: args,
    } = action.args().clone();
    let file = crate::config::FileConfig::load(common.config.as_deref())?;
    crate::init_logging(&common, &file);
    let data_dir = crate::data_dir(&common, &file)?;
    let data_dir = data_dir.as_path();
    let path = args
        .wallet
        .clone()
        .unwrap_or_else(|| default_wallet(data_dir));
    let client = Client::new(&args.gateway)?;
    let json = args.json;
    let submit = |operation: Operation| async {
        let wallet = load_wallet(&path)?;
        let receipt = client.submit(&wallet, operation).await?;
        print(json, &receipt, receipt_text);
        anyhow::Ok(())
    };
    match action {
        Action::Wallet { command, .. } => wallet_command(&path, json, command),
        Action::Balance { address, .. } => {
            let address = match address {
                Some(address) => address,
                None => load_wallet(&path)?.address().to_string(),
            };
            let account: LedgerAccount = client.get(&format!("/ledger/accounts/{address}")).await?;
            print(json, &account, balance_text);
            Ok(())
        }
        Action::Status { .. } => {
            let status: LedgerStatus = client.get("/ledger/status").await?;
            print(json, &status, status_text);
            Ok(())
        }
        Action::Transfer { to, vvv, diem, .. } => {
            let to = JsonAddress(
                ledger::Address::from_hex(&to).context("--to is 0x and 40 hex digits")?,
            );
            let (asset, amount) = match (vvv, diem) {
                (Some(vvv), None) => (wallet::AssetName::Vvv, tokens(&vvv, "--vvv")?),
                (None, Some(diem)) => (wallet::AssetName::Diem, tokens(&diem, "--diem")?),
                _ => bail!("give exactly one of --vvv or --diem"),
            };
            submit(Operation::Transfer {
                asset,
                to,
                amount_units: Units(amount),
            })
            .await
        }
        Action::Stake { vvv, .. } => {
            submit(Operation::Stake {
                vvv_units: Units(tokens(&vvv, "VVV")?),
            })
            .await
        }
        Action::Unstake { svvv, finalize, .. } => {
            if finalize {
                submit(Operation::FinalizeUnstake).await
            } else {
                let svvv = svvv.context("give the sVVV to unstake, or --finalize")?;
                submit(Operation::InitiateUnstake {
                    svvv_units: Units(tokens(&svvv, "sVVV")?),
                })
                .await
            }
        }
        Action::Claim {
            stake,
            airdrop,
            vested,
            ..
        } => {
            let operation = match (stake, airdrop, vested) {
                (false, false, false) => Operation::ClaimRewards,
                (true, false, false) => Operation::ClaimAndStakeRewards,
                (false, true, false) => Operation::ClaimAirdrop,
                (false, false, true) => Operation::ClaimVested,
                _ => bail!("give at most one of --stake, --airdrop, --vested"),
            };
            submit(operation).await
        }
        Action::Diem { command, .. } => match command {
            DiemCommand::Quote { svvv, diem } => {
                let query = match (svvv, diem) {
                    (Some(svvv), _) => format!("svvv_units={}", tokens(&svvv, "--svvv")?),
                    (None, Some(diem)) => format!("diem_units={}", tokens(&diem, "--diem")?),
                    (None, None) => bail!("give --svvv or --diem"),
                };
                let quote: MintQuote = client.get(&format!("/ledger/quote?{query}")).await?;
                print(json, &quote, |quote| {
                    format!(
                        "lock {} sVVV → mint {} DIEM (rate now {} sVVV per DIEM)",
                        show(quote.svvv_units),
                        show(quote.diem_units),
                        show(quote.mint_rate_svvv_units_per_diem)
                    )
                });
                Ok(())
            }
            DiemCommand::Mint {
                svvv,
                min_diem,
                slippage_bps,
            } => {
                let svvv = tokens(&svvv, "sVVV")?;
                let min_diem = match min_diem {
                    Some(min) => tokens(&min, "--min-diem")?,
                    None => {
                        let quote: MintQuote = client
                            .get(&format!("/ledger/quote?svvv_units={svvv}"))
                            .await?;
                        let quoted = quote.diem_units.0;
                        let keep = 10_000u128.saturating_sub(u128::from(slippage_bps.min(10_000)));
                        ledger::mul_div_floor(quoted, keep, 10_000).unwrap_or(0)
                    }
                };
                submit(Operation::MintDiem {
                    svvv_to_lock_units: Units(svvv),
                    min_diem_out_units: Units(min_diem),
                })
                .await
            }
            DiemCommand::Burn { diem } => {
                submit(Operation::BurnDiem {
                    diem_units: Units(tokens(&diem, "DIEM")?),
                })
                .await
            }
            DiemCommand::Stake { diem } => {
                submit(Operation::StakeDiem {
                    diem_units: Units(tokens(&diem, "DIEM")?),
                })
                .await
            }
            DiemCommand::Unstake { diem, finalize } => {
                if finalize {
                    submit(Operation::FinalizeDiemUnstake).await
                } else {
                    let diem = diem.context("give the DIEM to unstake, or --finalize")?;
                    submit(Operation::InitiateDiemUnstake {
                        diem_units: Units(tokens(&diem, "DIEM")?),
                    })
                    .await
                }
            }
        },
        Action::Key {
            admin, description, ..
        } => {
            let wallet = load_wallet(&path)?;
            let challenge: Succeeded<Web3Challenge> =
                client.get("/api_keys/generate_web3_key").await?;
            let token = challenge.data.token;
            let signature = wallet.personal_sign(token.as_bytes());
            let body = Web3KeyRequest {
                address: wallet.address().to_string(),
                signature: format!("0x{}", hex::encode(signature)),
                token,
                api_key_type: Some(if admin {
                    KeyKind::Admin
                } else {
                    KeyKind::Inference
                }),
                description: Some(description),
                consumption_limit: None,
                limit_period: None,
            };
            let key: Succeeded<CreatedApiKey> =
                client.post("/api_keys/generate_web3_key", &body).await?;
            print(json, &key, |key| {
                format!(
                    "{}\n(this {} key is shown once; keep it safe)",
                    key.data.api_key, key.data.api_key_type
                )
            });
            Ok(())
        }
        Action::Admin { command, .. } => match command {
            AdminCommand::Credit {
                account,
                usd,
                bundled,
            } => {
                let account = JsonAddress(
                    ledger::Address::from_hex(&account)
                        .context("--account is 0x and 40 hex digits")?,
                );
                submit(Operation::CreditAccount {
                    account,
                    usd_units: Units(tokens(&usd, "--usd")?),
                    bundled_credit_units: Units(tokens(&bundled, "--bundled")?),
                })
                .await
            }
            AdminCommand::SetEmissions { vvv_per_year } => {
                let per_year = tokens(&vvv_per_year, "VVV per year")?;
                submit(Operation::SetEmissionRate {
                    vvv_units_per_second: Units(per_year / (365 * 86_400)),
                })
                .await
            }
        },
    }
}

fn wallet_command(path: &Path, json: bool, command: WalletCommand) -> anyhow::Result<()> {
    let report = |wallet: &Wallet, what: &str| {
        let value = serde_json::json!({
            "address": wallet.address().to_string(),
            "path": path.display().to_string(),
        });
        print(json, &value, |_| {
            format!("{what} {} ({})", wallet.address(), path.display())
        });
    };
    match command {
        WalletCommand::New => {
            let wallet = Wallet::generate();
            wallet.save(path)?;
            report(&wallet, "created wallet");
        }
        WalletCommand::Show => report(&load_wallet(path)?, "wallet"),
        WalletCommand::Import { from_env } => {
            let text = match from_env {
                Some(name) => std::env::var(&name)
                    .with_context(|| format!("the environment variable {name} is not set"))?,
                None => {
                    if std::io::stdin().is_terminal() {
                        eprintln!(
                            "paste the private key (64 hex digits), then press Enter and Ctrl-D:"
                        );
                    }
                    let mut text = String::new();
                    std::io::stdin()
                        .take(MAX_KEY_INPUT_BYTES)
                        .read_to_string(&mut text)
                        .context("cannot read the key from standard input")?;
                    text
                }
            };
            let wallet = Wallet::from_hex(&text)?;
            wallet.save(path)?;
            report(&wallet, "imported wallet");
        }
        WalletCommand::Export => {
            let wallet = load_wallet(path)?;
            println!("{}", wallet.secret_hex());
        }
    }
    Ok(())
}

fn balance_text(account: &LedgerAccount) -> String {
    let line = |label: &str, units: BaseUnits| format!("{label:<28}{}", show(units));
    let mut lines = vec![
        format!("account {}", account.address),
        line("VVV", account.vvv_units),
        line("staked sVVV", account.staked_svvv_units),
        line("cooling sVVV", account.cooling_svvv_units),
        line("locked sVVV (behind DIEM)", account.locked_svvv_units),
        line("pending rewards (VVV)", account.pending_rewards_units),
        line("DIEM", account.diem_units),
        line("staked DIEM", account.staked_diem_units),
        line("cooling DIEM", account.cooling_diem_units),
        line("USD credit", account.usd_credit_units),
        line("bundled credits (USD)", account.bundled_credit_units),
        format!(
            "{:<28}{} of {} (next day begins at {})",
            "allowance left today ($)",
            show(account.allowance.remaining_usd_units),
            show(account.allowance.total_usd_units_per_day),
            account.allowance.next_epoch_begins
        ),
    ];
    if let Some(unlock) = account.svvv_unlock_at {
        lines.push(format!("{:<28}{unlock} (unix time)", "sVVV unlocks at"));
    }
    if let Some(unlock) = account.diem_unlock_at {
        lines.push(format!("{:<28}{unlock} (unix time)", "DIEM unlocks at"));
    }
    lines.join("\n")
}

fn status_text(status: &LedgerStatus) -> String {
    let supply = &status.supply;
    let emissions = &status.emissions;
    let liability = &status.diem_liability;
    let bps = |bps: Option<u128>| {
        bps.map_or_else(
            || "n/a".to_owned(),
            |bps| format!("{}.{:02}%", bps / 100, bps % 100),
        )
    };
    let lines = [
        format!("ledger record {}, time {}", status.sequence, status.now),
        format!(
            "total VVV supply            {}",
            show(supply.total_vvv_units)
        ),
        format!(
            "circulating                 {}",
            show(supply.circulating_vvv_units)
        ),
        format!(
            "burned                      {}",
            show(supply.burned_vvv_units)
        ),
        format!(
            "staked sVVV                 {}",
            show(supply.staked_svvv_units)
        ),
        format!(
            "locked sVVV                 {}",
            show(supply.locked_svvv_units)
        ),
        format!(
            "DIEM supply                 {}",
            show(supply.diem_supply_units)
        ),
        format!(
            "mint rate (sVVV per DIEM)   {}",
            show(status.mint_rate_svvv_units_per_diem)
        ),
        format!(
            "utilization                 {}",
            bps(Some(u128::from(emissions.utilization_bps)))
        ),
        format!(
            "emission split              {} stakers / {} company (unlocked stake)",
            bps(Some(u128::from(emissions.stakers_share_of_unlocked_bps))),
            bps(Some(u128::from(emissions.company_share_of_unlocked_bps)))
        ),
        format!(
            "staking APR                 {}",
            bps(status.apr_bps.unlocked.map(|units| units.0))
        ),
        format!(
            "DIEM liability              ${}/day against {} locked sVVV",
            show(liability.liability_usd_units_per_day),
            show(liability.locked_svvv_units)
        ),
    ];
    lines.join("\n")
}
