//! The contracts' bindings, generated at compile time from `contracts/out/*.json`.

#![allow(missing_docs, clippy::too_many_arguments)]

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    VVV,
    "../../contracts/out/VVV.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    Staking,
    "../../contracts/out/Staking.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    Diem,
    "../../contracts/out/Diem.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    Airdrop,
    "../../contracts/out/Airdrop.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    TeamVesting,
    "../../contracts/out/TeamVesting.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    JournalAnchor,
    "../../contracts/out/JournalAnchor.json"
);

/// Planted bugs, compiled from `contracts/src` with one line changed, for tests that show the
/// differential test catches them.
pub mod mutants {
    /// `Staking` whose cooldown ends one second late (`<` for `<=`).
    pub const STAKING_COOLDOWN_OFF_BY_ONE: &str =
        include_str!("../../../contracts/out/mutants/StakingCooldownOffByOne.json");
}
