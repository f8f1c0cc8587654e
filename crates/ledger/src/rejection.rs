//! Rejections as data: why an operation was refused, as a numbered enum whose discriminants are
//! part of the journal's meaning and must never change. Owns no checks; the ledger runs them in
//! the order the variants are listed.

use std::fmt;

/// Why [`crate::Ledger::apply`] refused an operation. A rejected operation changes nothing.
///
/// Variants up to `Overflow` are listed in the order the checks run: lifecycle, time, authority,
/// the operation's own arguments, balances, windows and cooldowns, pricing, and last arithmetic
/// range. Numbers are explicit and permanent: a new reason gets a new number after the last, an
/// obsolete one keeps its number and is never reused; so reasons added later are listed after
/// `Overflow`, each saying where among the others its check runs.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rejection {
    /// The ledger has no genesis yet; only a genesis operation is accepted.
    NotInitialized = 1,
    /// Genesis has already been applied.
    AlreadyInitialized = 2,
    /// `now` is earlier than the time of the last applied operation.
    TimeWentBackwards = 3,
    /// An admin operation (or genesis) signed by someone other than the admin.
    NotAdmin = 4,
    /// The genesis configuration is inconsistent or out of range.
    InvalidGenesis = 5,
    /// An amount that must move something is zero (or a usage entry records nothing at all).
    ZeroAmount = 6,
    /// A transfer from an account to itself.
    SelfTransfer = 7,
    /// A proposed mint curve is not 256 valid points.
    InvalidMintCurve = 8,
    /// Proposed parameters are out of range.
    InvalidParameters = 9,
    /// Reported utilization is above 100% (10,000 basis points).
    UtilizationOutOfRange = 10,
    /// The emission rate is above the ledger's ceiling.
    EmissionRateTooHigh = 11,
    /// Not enough liquid VVV.
    InsufficientVvv = 12,
    /// Not enough unlocked staked sVVV.
    InsufficientStakedVvv = 13,
    /// Not enough liquid DIEM.
    InsufficientDiem = 14,
    /// Not enough staked DIEM.
    InsufficientStakedDiem = 15,
    /// The signer has no unclaimed airdrop allocation.
    NoAirdropAllocation = 16,
    /// The airdrop claim window has closed.
    AirdropWindowClosed = 17,
    /// The airdrop claim window is still open, so nothing can be burned yet.
    AirdropWindowOpen = 18,
    /// There is no unclaimed airdrop left to burn.
    NoUnclaimedAirdrop = 19,
    /// The signer has no team vesting grant.
    NoVestingGrant = 20,
    /// Nothing more of the signer's grant has vested since the last claim.
    NothingVestedYet = 21,
    /// The signer has no staking rewards to claim.
    NoRewards = 22,
    /// The signer has no sVVV cooling down.
    NothingCoolingDown = 23,
    /// The sVVV cooldown has not elapsed.
    CooldownNotElapsed = 24,
    /// The signer has no DIEM cooling down.
    NoDiemCoolingDown = 25,
    /// The DIEM cooldown has not elapsed.
    DiemCooldownNotElapsed = 26,
    /// A DIEM burn larger than the DIEM this account minted and has not yet burned.
    BurnExceedsMintedDiem = 27,
    /// The sVVV offered does not buy a single base unit of DIEM at the current rate.
    MintsNoDiem = 28,
    /// The mint would yield less DIEM than `min_diem_out`.
    SlippageExceeded = 29,
    /// A result would not fit the ledger's integers (a credit beyond u128, a mint beyond any
    /// representable supply, a cooldown ending after the year 584 billion). Listed last, but
    /// reported by whichever step's arithmetic leaves range.
    Overflow = 30,
    /// A usage settlement for a day after today (UTC). Checked after authority, first among the
    /// settlement's own arguments.
    UsageDayInFuture = 31,
    /// A usage settlement with no entries. Checked after the day.
    EmptyUsageSettlement = 32,
    /// A usage settlement with more than `MAXIMUM_USAGE_ENTRIES` entries. Checked after
    /// emptiness.
    TooManyUsageEntries = 33,
    /// A usage settlement that names one account twice. Checked after the entry count and before
    /// an entry that charges nothing (`ZeroAmount`).
    DuplicateUsageAccount = 34,
    /// A usage entry would overdraw the account's bundled or USD credits. Checked after the
    /// settlement's arguments and before `Overflow`.
    InsufficientCredit = 35,
}

impl Rejection {
    /// Every rejection, in number order (check order up to `Overflow`).
    pub const ALL: [Self; 35] = [
        Self::NotInitialized,
        Self::AlreadyInitialized,
        Self::TimeWentBackwards,
        Self::NotAdmin,
        Self::InvalidGenesis,
        Self::ZeroAmount,
        Self::SelfTransfer,
        Self::InvalidMintCurve,
        Self::InvalidParameters,
        Self::UtilizationOutOfRange,
        Self::EmissionRateTooHigh,
        Self::InsufficientVvv,
        Self::InsufficientStakedVvv,
        Self::InsufficientDiem,
        Self::InsufficientStakedDiem,
        Self::NoAirdropAllocation,
        Self::AirdropWindowClosed,
        Self::AirdropWindowOpen,
        Self::NoUnclaimedAirdrop,
        Self::NoVestingGrant,
        Self::NothingVestedYet,
        Self::NoRewards,
        Self::NothingCoolingDown,
        Self::CooldownNotElapsed,
        Self::NoDiemCoolingDown,
        Self::DiemCooldownNotElapsed,
        Self::BurnExceedsMintedDiem,
        Self::MintsNoDiem,
        Self::SlippageExceeded,
        Self::Overflow,
        Self::UsageDayInFuture,
        Self::EmptyUsageSettlement,
        Self::TooManyUsageEntries,
        Self::DuplicateUsageAccount,
        Self::InsufficientCredit,
    ];

    /// The permanent number of this rejection.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The rejection with this number, if there is one.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|rejection| rejection.code() == code)
    }

    /// A short, stable, snake_case name for logs and API errors.
    pub const fn name(self) -> &'static str {
        match self {
            Self::NotInitialized => "not_initialized",
            Self::AlreadyInitialized => "already_initialized",
            Self::TimeWentBackwards => "time_went_backwards",
            Self::NotAdmin => "not_admin",
            Self::InvalidGenesis => "invalid_genesis",
            Self::ZeroAmount => "zero_amount",
            Self::SelfTransfer => "self_transfer",
            Self::InvalidMintCurve => "invalid_mint_curve",
            Self::InvalidParameters => "invalid_parameters",
            Self::UtilizationOutOfRange => "utilization_out_of_range",
            Self::EmissionRateTooHigh => "emission_rate_too_high",
            Self::InsufficientVvv => "insufficient_vvv",
            Self::InsufficientStakedVvv => "insufficient_staked_vvv",
            Self::InsufficientDiem => "insufficient_diem",
            Self::InsufficientStakedDiem => "insufficient_staked_diem",
            Self::NoAirdropAllocation => "no_airdrop_allocation",
            Self::AirdropWindowClosed => "airdrop_window_closed",
            Self::AirdropWindowOpen => "airdrop_window_open",
            Self::NoUnclaimedAirdrop => "no_unclaimed_airdrop",
            Self::NoVestingGrant => "no_vesting_grant",
            Self::NothingVestedYet => "nothing_vested_yet",
            Self::NoRewards => "no_rewards",
            Self::NothingCoolingDown => "nothing_cooling_down",
            Self::CooldownNotElapsed => "cooldown_not_elapsed",
            Self::NoDiemCoolingDown => "no_diem_cooling_down",
            Self::DiemCooldownNotElapsed => "diem_cooldown_not_elapsed",
            Self::BurnExceedsMintedDiem => "burn_exceeds_minted_diem",
            Self::MintsNoDiem => "mints_no_diem",
            Self::SlippageExceeded => "slippage_exceeded",
            Self::Overflow => "overflow",
            Self::UsageDayInFuture => "usage_day_in_future",
            Self::EmptyUsageSettlement => "empty_usage_settlement",
            Self::TooManyUsageEntries => "too_many_usage_entries",
            Self::DuplicateUsageAccount => "duplicate_usage_account",
            Self::InsufficientCredit => "insufficient_credit",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} ({})", self.name(), self.code())
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_dense_permanent_and_in_listing_order() {
        for (position, rejection) in Rejection::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(rejection.code()), position + 1, "{rejection}");
            assert_eq!(Rejection::from_code(rejection.code()), Some(rejection));
        }
        // Spot checks written out, so that renumbering fails a test rather than passing quietly.
        assert_eq!(Rejection::NotAdmin.code(), 4);
        assert_eq!(Rejection::SlippageExceeded.code(), 29);
        assert_eq!(Rejection::Overflow.code(), 30);
        assert_eq!(Rejection::UsageDayInFuture.code(), 31);
        assert_eq!(Rejection::InsufficientCredit.code(), 35);
        assert_eq!(Rejection::from_code(0), None);
        assert_eq!(Rejection::from_code(36), None);
        assert_eq!(
            Rejection::CooldownNotElapsed.to_string(),
            "cooldown_not_elapsed (24)"
        );
        let names: std::collections::BTreeSet<&str> =
            Rejection::ALL.into_iter().map(Rejection::name).collect();
        assert_eq!(names.len(), Rejection::ALL.len(), "names are unique");
    }
}
