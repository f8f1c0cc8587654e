//! `[gateway.chain]`: chain mode's settings, read and checked: the chain's endpoints, the
//! deployment, confirmations and polling, the operator's key, and the airdrop's proofs (each
//! proof checked against the deployment's root before it is served).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::url_or_reference;

/// `[gateway.chain]`: chain mode. Staked sVVV and staked DIEM (and so capacity shares, DIEM
/// allowances, and who may mint a key with a wallet) come from the contracts `gondola chain
/// deploy` put on a chain; usage, credits and keys stay in the ledger.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChain {
    /// The chain's JSON-RPC endpoint; `env::NAME` where it carries a provider's key.
    pub rpc_url: String,
    /// The JSON-RPC URL browsers use: the wallet page reads balances and sends its
    /// transactions through it directly. Unset, the page shows the contracts and points to
    /// the CLI; `rpc_url` itself is never published (it may hold a provider's key).
    pub public_rpc_url: Option<String>,
    /// The deployment file `gondola chain deploy --json` wrote.
    pub deployment: PathBuf,
    /// How deep in the chain a stake's increase must be before it counts (a decrease counts
    /// at once); default 2.
    pub confirmations: Option<u64>,
    /// How often the stakes are read; default 2,000 ms.
    pub poll_ms: Option<u64>,
    /// The operator's key file on the chain: a wallet holding the journal anchor's role and the
    /// staking contract's reporter role (the deployer's key holds both, or grant them to
    /// another): with it the gateway anchors its journal's head on the chain, and reports
    /// yesterday's utilization to the staking contract once a UTC day.
    pub anchor_key: Option<PathBuf>,
    /// How often it anchors (when the journal has grown); default a day.
    pub anchor_every_ms: Option<u64>,
    /// The airdrop's proofs, as `gondola chain deploy --proofs` wrote them: served at
    /// `/chain/airdrop/{address}`, so that the wallet page can claim.
    pub airdrop_proofs: Option<PathBuf>,
}

/// Chain mode's settings, from `[gateway.chain]`.
pub fn chain_config(raw: Option<&RawChain>) -> anyhow::Result<Option<chain::stakes::ChainConfig>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let text = std::fs::read(&raw.deployment).with_context(|| {
        format!(
            "gateway.chain.deployment: cannot read {}",
            raw.deployment.display()
        )
    })?;
    let deployment = serde_json::from_slice(&text)
        .context("gateway.chain.deployment: not a deployment (gondola chain deploy --json)")?;
    if let Some(url) = &raw.public_rpc_url {
        let parsed = reqwest::Url::parse(url)
            .with_context(|| format!("gateway.chain.public_rpc_url: {url:?} is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.host_str().is_none()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            bail!("gateway.chain.public_rpc_url: {url:?} must be an http(s) URL without a user");
        }
    }
    let airdrop = match &raw.airdrop_proofs {
        None => std::collections::HashMap::new(),
        Some(path) => airdrop_proofs(path, &deployment)?,
    };
    Ok(Some(chain::stakes::ChainConfig {
        airdrop: std::sync::Arc::new(airdrop),
        rpc_url: url_or_reference(&raw.rpc_url, "gateway.chain.rpc_url")?,
        public_rpc_url: raw.public_rpc_url.clone(),
        deployment,
        confirmations: raw.confirmations.unwrap_or(2),
        poll: Duration::from_millis(raw.poll_ms.unwrap_or(2_000).max(50)),
        anchor_key: raw.anchor_key.clone(),
        anchor_every: Duration::from_millis(raw.anchor_every_ms.unwrap_or(86_400_000).max(100)),
    }))
}

/// The airdrop's proofs by address, from the file `gondola chain deploy --proofs` wrote; each
/// must prove its allocation against the deployment's root (another deployment's file, or an
/// edited one, is refused).
fn airdrop_proofs(
    path: &Path,
    deployment: &chain::deploy::Deployment,
) -> anyhow::Result<
    std::collections::HashMap<alloy::primitives::Address, chain::deploy::AirdropProof>,
> {
    let text = std::fs::read(path).with_context(|| {
        format!(
            "gateway.chain.airdrop_proofs: cannot read {}",
            path.display()
        )
    })?;
    let proofs: Vec<chain::deploy::AirdropProof> = serde_json::from_slice(&text).context(
        "gateway.chain.airdrop_proofs: not airdrop proofs (gondola chain deploy --proofs)",
    )?;
    let mut by_account = std::collections::HashMap::with_capacity(proofs.len());
    for proof in proofs {
        let leaf = chain::merkle::leaf(proof.account, proof.amount);
        if !chain::merkle::verify(&proof.proof, deployment.airdrop_root, leaf) {
            bail!(
                "gateway.chain.airdrop_proofs: the proof for {} does not verify against the \
                 deployment's airdrop root",
                proof.account
            );
        }
        by_account.insert(proof.account, proof);
    }
    Ok(by_account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airdrop_proofs_are_served_only_when_they_prove_the_deployments_root() {
        let at = |byte: u8| ledger::Address([byte; 20]);
        let mut genesis =
            ledger::GenesisConfig::venice(at(1), at(2), at(3), at(4), at(5), Vec::new());
        genesis.airdrop = vec![
            ledger::Allocation {
                address: at(7),
                vvv_units: 5,
            },
            ledger::Allocation {
                address: at(8),
                vvv_units: 9,
            },
        ];
        let (tree, proofs) = chain::deploy::airdrop_proofs(&genesis);
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("proofs.json");
        std::fs::write(&file, serde_json::to_vec(&proofs).expect("JSON")).expect("write");
        let mut deployment = chain::deploy::Deployment {
            chain_id: 31337,
            vvv: alloy::primitives::Address::repeat_byte(0x11),
            staking: alloy::primitives::Address::repeat_byte(0x12),
            diem: alloy::primitives::Address::repeat_byte(0x13),
            airdrop: alloy::primitives::Address::repeat_byte(0x14),
            team_vesting: alloy::primitives::Address::repeat_byte(0x15),
            journal_anchor: alloy::primitives::Address::repeat_byte(0x16),
            airdrop_root: tree.root(),
            genesis_seconds: 0,
            block: 1,
        };
        let served = airdrop_proofs(&file, &deployment).expect("they prove the root");
        assert_eq!(served.len(), 2);
        assert_eq!(
            served[&alloy::primitives::Address::repeat_byte(8)].amount,
            alloy::primitives::U256::from(9)
        );
        // Another deployment's root: refused, rather than serving proofs that cannot claim.
        deployment.airdrop_root = alloy::primitives::B256::repeat_byte(0xEE);
        let error = airdrop_proofs(&file, &deployment).expect_err("another root");
        assert!(
            format!("{error:#}").contains("does not verify"),
            "{error:#}"
        );
    }
}
