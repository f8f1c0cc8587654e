// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {VVV, IVVVStaking} from "./VVV.sol";

/// Staked VVV (sVVV, 1:1) and its emissions, as Gondola's ledger keeps them (crates/ledger):
/// stake, a cooldown to unstake, and VVV minted every second at an admin-set rate, split between
/// the company (its treasury) and stakers by API utilization, and handed to stakers through two
/// per-share accumulators, one for unlocked stake and one for stake locked behind DIEM. Every
/// rounding is the ledger's, at the same points: emissions accrue before each operation (and
/// each VVV transfer), and an account's rewards are settled whenever the ledger loads it.
contract Staking is AccessControl, IVVVStaking {
    /// Sets the emission rate and the parameters.
    bytes32 public constant PARAMETERS_ROLE = keccak256("PARAMETERS_ROLE");
    /// Reports API utilization (the gateway's operator).
    bytes32 public constant REPORTER_ROLE = keccak256("REPORTER_ROLE");

    uint256 public constant UNITS_PER_TOKEN = 1e18;
    uint256 public constant BASIS_POINTS = 10_000;
    /// Fixed-point scale of the accumulators.
    uint256 public constant REWARD_PER_SHARE_SCALE = UNITS_PER_TOKEN;
    /// Below one whole sVVV staked, nothing is emitted.
    uint256 public constant MINIMUM_STAKE_FOR_EMISSIONS_UNITS = UNITS_PER_TOKEN;
    /// 10 VVV a second at most.
    uint256 public constant MAXIMUM_EMISSION_RATE_UNITS_PER_SECOND = 10 * UNITS_PER_TOKEN;
    uint64 public constant MAXIMUM_COOLDOWN_SECONDS = 365 days;
    uint256 public constant MAXIMUM_SPLIT_POINTS = 16;

    /// One point of the utilization split.
    struct SplitPoint {
        uint32 utilizationBps;
        uint32 companyShareBps;
    }

    /// One account's stake.
    struct Position {
        /// Unlocked staked sVVV: earns at the full rate.
        uint256 staked;
        /// sVVV in its unstake cooldown: earns nothing.
        uint256 cooling;
        /// sVVV locked behind DIEM this account minted.
        uint256 locked;
        /// Rewards settled and not yet claimed.
        uint256 rewardsOwed;
        /// The accumulators at the last settlement.
        uint256 rewardPerSharePaid;
        uint256 rewardPerLockedSharePaid;
        /// When the cooling sVVV may be withdrawn; zero when nothing is cooling.
        uint64 unlockAt;
    }

    VVV public immutable vvv;
    /// Where the company's share of emissions is minted.
    address public immutable treasury;

    uint256 public emissionRate;
    uint32 public utilizationBps;
    uint64 public unstakeCooldownSeconds = 7 days;
    /// Yield of locked sVVV as a share of unlocked sVVV's, in basis points.
    uint32 public lockedYieldBps = 8_000;
    SplitPoint[] internal split;

    uint256 public rewardPerShare;
    uint256 public rewardPerLockedShare;
    /// Emissions have accrued up to this time.
    uint64 public lastAccrual;

    uint256 public totalStaked;
    uint256 public totalCooling;
    uint256 public totalLocked;
    uint256 public emittedToStakers;
    uint256 public emittedToCompany;
    uint256 public rewardsClaimed;

    mapping(address => Position) public positions;

    error ZeroAmount();
    error InsufficientVvv();
    error InsufficientStakedVvv();
    error NothingCoolingDown();
    error CooldownNotElapsed(uint64 unlockAt);
    error NoRewards();
    error EmissionRateTooHigh();
    error UtilizationOutOfRange();
    error InvalidParameters();
    error Overflow();
    error NotVvv();

    event Accrued(uint256 toStakers, uint256 toCompany, uint256 rewardPerShare, uint256 rewardPerLockedShare);
    event Staked(address indexed account, uint256 svvv);
    event UnstakeInitiated(address indexed account, uint256 coolingSvvv, uint64 unlockAt);
    event UnstakeFinalized(address indexed account, uint256 vvv);
    event RewardsClaimed(address indexed account, uint256 vvv);
    event RewardsStaked(address indexed account, uint256 svvv);
    event EmissionRateSet(uint256 vvvPerSecond);
    event UtilizationReported(uint32 utilizationBps, uint32 companyShareBps);
    event ParametersSet(uint64 unstakeCooldownSeconds, uint32 lockedYieldBps);

    constructor(VVV vvv_, address treasury_, address admin, uint256 emissionRate_) {
        if (emissionRate_ > MAXIMUM_EMISSION_RATE_UNITS_PER_SECOND) revert EmissionRateTooHigh();
        vvv = vvv_;
        treasury = treasury_;
        emissionRate = emissionRate_;
        lastAccrual = uint64(block.timestamp);
        // Stakers 80% at 0% utilization, 20% at 50%, 80% at 100%.
        split.push(SplitPoint(0, 2_000));
        split.push(SplitPoint(5_000, 8_000));
        split.push(SplitPoint(10_000, 2_000));
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(PARAMETERS_ROLE, admin);
        _grantRole(REPORTER_ROLE, admin);
    }

    // --- Staking ---

    function stake(uint256 amount) external {
        _accrue();
        if (amount == 0) revert ZeroAmount();
        Position storage position = _settle(msg.sender);
        if (vvv.balanceOf(msg.sender) < amount) revert InsufficientVvv();
        position.staked += amount;
        totalStaked += amount;
        vvv.transferFrom(msg.sender, address(this), amount);
        emit Staked(msg.sender, amount);
    }

    function initiateUnstake(uint256 amount) external {
        _accrue();
        if (amount == 0) revert ZeroAmount();
        Position storage position = _settle(msg.sender);
        if (position.staked < amount) revert InsufficientStakedVvv();
        uint256 unlockAt = block.timestamp + unstakeCooldownSeconds;
        if (unlockAt > type(uint64).max) revert Overflow();
        position.staked -= amount;
        position.cooling += amount;
        position.unlockAt = uint64(unlockAt);
        totalStaked -= amount;
        totalCooling += amount;
        emit UnstakeInitiated(msg.sender, position.cooling, uint64(unlockAt));
    }

    function finalizeUnstake() external {
        _accrue();
        Position storage position = _settle(msg.sender);
        uint256 amount = position.cooling;
        if (amount == 0) revert NothingCoolingDown();
        if (block.timestamp < position.unlockAt) revert CooldownNotElapsed(position.unlockAt);
        position.cooling = 0;
        position.unlockAt = 0;
        totalCooling -= amount;
        vvv.transfer(msg.sender, amount);
        emit UnstakeFinalized(msg.sender, amount);
    }

    function claimRewards() external {
        _accrue();
        Position storage position = _settle(msg.sender);
        uint256 amount = _takeRewards(position);
        vvv.transfer(msg.sender, amount);
        emit RewardsClaimed(msg.sender, amount);
    }

    function claimAndStakeRewards() external {
        _accrue();
        Position storage position = _settle(msg.sender);
        uint256 amount = _takeRewards(position);
        position.staked += amount;
        totalStaked += amount;
        emit RewardsStaked(msg.sender, amount);
    }

    /// Accrues emissions up to now; anyone may call it.
    function accrue() external {
        _accrue();
    }

    /// VVV moved between two holders: accrue, then settle both, as the ledger's transfer does.
    function onTransfer(address from, address to) external {
        if (msg.sender != address(vvv)) revert NotVvv();
        _accrue();
        _settle(from);
        if (to != address(0)) {
            _settle(to);
        }
    }

    // --- Admin ---

    function setEmissionRate(uint256 vvvPerSecond) external onlyRole(PARAMETERS_ROLE) {
        _accrue();
        if (vvvPerSecond > MAXIMUM_EMISSION_RATE_UNITS_PER_SECOND) revert EmissionRateTooHigh();
        emissionRate = vvvPerSecond;
        emit EmissionRateSet(vvvPerSecond);
    }

    function reportUtilization(uint32 bps) external onlyRole(REPORTER_ROLE) {
        _accrue();
        if (bps > BASIS_POINTS) revert UtilizationOutOfRange();
        utilizationBps = bps;
        emit UtilizationReported(bps, companyShareBps());
    }

    /// The staking parameters: the unstake cooldown, locked stake's yield, and the utilization
    /// split (2 to 16 points from 0% to 100% utilization, strictly rising, shares at most 100%).
    function setParameters(uint64 cooldownSeconds, uint32 lockedYield, SplitPoint[] calldata points)
        external
        onlyRole(PARAMETERS_ROLE)
    {
        _accrue();
        if (cooldownSeconds > MAXIMUM_COOLDOWN_SECONDS || lockedYield > BASIS_POINTS || !_validSplit(points)) {
            revert InvalidParameters();
        }
        unstakeCooldownSeconds = cooldownSeconds;
        lockedYieldBps = lockedYield;
        delete split;
        for (uint256 i = 0; i < points.length; i++) {
            split.push(points[i]);
        }
        emit ParametersSet(cooldownSeconds, lockedYield);
    }

    // --- Views ---

    function splitPoints() external view returns (SplitPoint[] memory) {
        return split;
    }

    /// The company's share of emissions to unlocked stake at the reported utilization,
    /// interpolated between the neighbouring points, rounded down.
    function companyShareBps() public view returns (uint32) {
        uint256 utilization = utilizationBps > BASIS_POINTS ? BASIS_POINTS : utilizationBps;
        for (uint256 i = 0; i + 1 < split.length; i++) {
            SplitPoint memory before = split[i];
            SplitPoint memory next = split[i + 1];
            if (utilization <= next.utilizationBps) {
                uint256 span = next.utilizationBps - before.utilizationBps;
                uint256 weighted = uint256(before.companyShareBps) * (next.utilizationBps - utilization)
                    + uint256(next.companyShareBps) * (utilization - before.utilizationBps);
                return uint32(weighted / span);
            }
        }
        return split[split.length - 1].companyShareBps;
    }

    /// Settled plus unsettled rewards of `account`, at the accumulators as of the last accrual.
    function pendingRewards(address account) external view returns (uint256) {
        Position storage position = positions[account];
        return position.rewardsOwed + _unsettled(position);
    }

    // --- Internals ---

    function _validSplit(SplitPoint[] calldata points) internal pure returns (bool) {
        if (points.length < 2 || points.length > MAXIMUM_SPLIT_POINTS) return false;
        if (points[0].utilizationBps != 0 || points[points.length - 1].utilizationBps != BASIS_POINTS) return false;
        for (uint256 i = 0; i < points.length; i++) {
            if (points[i].companyShareBps > BASIS_POINTS) return false;
            if (i > 0 && points[i - 1].utilizationBps >= points[i].utilizationBps) return false;
        }
        return true;
    }

    function _unsettled(Position storage position) internal view returns (uint256) {
        return Math.mulDiv(position.staked, rewardPerShare - position.rewardPerSharePaid, REWARD_PER_SHARE_SCALE)
            + Math.mulDiv(position.locked, rewardPerLockedShare - position.rewardPerLockedSharePaid, REWARD_PER_SHARE_SCALE);
    }

    /// Moves earned rewards into `rewardsOwed` and checkpoints the accumulators: the ledger's
    /// `load`.
    function _settle(address account) internal returns (Position storage position) {
        position = positions[account];
        if (position.staked != 0 || position.locked != 0) {
            position.rewardsOwed += _unsettled(position);
        }
        position.rewardPerSharePaid = rewardPerShare;
        position.rewardPerLockedSharePaid = rewardPerLockedShare;
    }

    function _takeRewards(Position storage position) internal returns (uint256 amount) {
        amount = position.rewardsOwed;
        if (amount == 0) revert NoRewards();
        position.rewardsOwed = 0;
        rewardsClaimed += amount;
    }

    /// Emissions since the last accrual: the gross divided between unlocked and locked stake pro
    /// rata, each part split with the company, the stakers' parts into the accumulators (and
    /// minted here), the company's minted to the treasury.
    function _accrue() internal {
        uint256 elapsed = block.timestamp - lastAccrual;
        lastAccrual = uint64(block.timestamp);
        uint256 stakeUnits = totalStaked + totalLocked;
        if (stakeUnits < MINIMUM_STAKE_FOR_EMISSIONS_UNITS || emissionRate == 0 || elapsed == 0) {
            return;
        }
        uint256 gross = emissionRate * elapsed;
        uint256 grossToUnlocked = Math.mulDiv(gross, totalStaked, stakeUnits);
        uint256 grossToLocked = gross - grossToUnlocked;
        uint256 stakerBps = BASIS_POINTS - companyShareBps();
        uint256 toUnlocked = Math.mulDiv(grossToUnlocked, stakerBps, BASIS_POINTS);
        uint256 toLocked = Math.mulDiv(grossToLocked, stakerBps * lockedYieldBps, BASIS_POINTS * BASIS_POINTS);
        if (totalStaked != 0) {
            rewardPerShare += Math.mulDiv(toUnlocked, REWARD_PER_SHARE_SCALE, totalStaked);
        }
        if (totalLocked != 0) {
            rewardPerLockedShare += Math.mulDiv(toLocked, REWARD_PER_SHARE_SCALE, totalLocked);
        }
        uint256 toStakers = toUnlocked + toLocked;
        uint256 toCompany = gross - toStakers;
        emittedToStakers += toStakers;
        emittedToCompany += toCompany;
        if (toStakers > 0) {
            vvv.mint(address(this), toStakers);
        }
        if (toCompany > 0) {
            _settle(treasury);
            vvv.mint(treasury, toCompany);
        }
        emit Accrued(toStakers, toCompany, rewardPerShare, rewardPerLockedShare);
    }
}
