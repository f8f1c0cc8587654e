// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {VVV, IVVVStaking} from "./VVV.sol";
import {Diem, IDiemStaking} from "./Diem.sol";

/// Staked VVV (sVVV, 1:1) and its emissions, as Gondola's ledger keeps them (crates/ledger):
/// stake, a cooldown to unstake, and VVV minted every second at an admin-set rate, split between
/// the company (its treasury) and stakers by API utilization, and handed to stakers through two
/// per-share accumulators, one for unlocked stake and one for stake locked behind DIEM. DIEM is
/// minted here by locking sVVV at the rate of a 256-point curve that rises with DIEM's supply,
/// and burning it unlocks the sVVV in proportion. Every rounding is the ledger's, at the same
/// points: emissions accrue before each operation (and each VVV or DIEM transfer), and an
/// account's rewards are settled whenever the ledger loads it.
contract Staking is AccessControl, IVVVStaking, IDiemStaking {
    /// Sets the emission rate and the parameters.
    bytes32 public constant PARAMETERS_ROLE = keccak256("PARAMETERS_ROLE");
    /// Reports API utilization (the gateway's operator).
    bytes32 public constant REPORTER_ROLE = keccak256("REPORTER_ROLE");
    /// Burns VVV from the treasury with the revenue that bought it back.
    bytes32 public constant BUYBACK_ROLE = keccak256("BUYBACK_ROLE");

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
    /// The mint curve has exactly this many points.
    uint256 public constant CURVE_POINT_COUNT = 256;
    /// Ceiling on a point's supply, in whole DIEM.
    uint256 public constant MAXIMUM_CURVE_SUPPLY_DIEM = 1_000_000;
    /// Ceiling on a mint rate (sVVV base units per DIEM).
    uint256 public constant MAXIMUM_MINT_RATE_SVVV_UNITS_PER_DIEM = 1_000_000_000 * UNITS_PER_TOKEN;
    /// Ceiling on the spendable-DIEM minimum.
    uint256 public constant MAXIMUM_MINIMUM_SPENDABLE_STAKED_DIEM_UNITS = 1_000 * UNITS_PER_TOKEN;
    uint256 internal constant U128_MAX = type(uint128).max;

    /// One point of the mint curve: from `supplyDiem` whole DIEM on, one DIEM locks
    /// `rateSvvvUnitsPerDiem` sVVV base units (interpolated towards the next point).
    struct CurvePoint {
        uint64 supplyDiem;
        uint256 rateSvvvUnitsPerDiem;
    }

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
        /// DIEM this account minted and has not burned: the claim its locked sVVV answers to.
        uint256 diemMintedOutstanding;
        /// Rewards settled and not yet claimed.
        uint256 rewardsOwed;
        /// The accumulators at the last settlement.
        uint256 rewardPerSharePaid;
        uint256 rewardPerLockedSharePaid;
        /// When the cooling sVVV may be withdrawn; zero when nothing is cooling.
        uint64 unlockAt;
    }

    VVV public immutable vvv;
    /// DIEM, once set.
    Diem public diem;
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

    /// Buy-back-and-burn on one UTC day (seconds since the epoch / 86,400).
    struct BuybackDay {
        uint256 vvvBurned;
        uint256 revenueUsd;
    }

    mapping(uint256 => BuybackDay) public buybacksByDay;
    uint256 public burnedByBuyback;
    /// USD base units of revenue every buy-back was bought with.
    uint256 public buybackRevenueUsd;

    /// DIEM minted and not burned.
    uint256 public diemSupply;
    /// The mint curve, a point to a word: supply in whole DIEM (32 bits), rate (112 bits), and
    /// twice the exact cost of moving supply from zero to the point (112 bits).
    uint256[CURVE_POINT_COUNT] internal curve;

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
    error NotDiem();
    error DiemAlreadySet();
    error InsufficientDiem();
    error BurnExceedsMintedDiem();
    error MintsNoDiem();
    error SlippageExceeded();
    error InvalidMintCurve();

    event Accrued(uint256 toStakers, uint256 toCompany, uint256 rewardPerShare, uint256 rewardPerLockedShare);
    event Staked(address indexed account, uint256 svvv);
    event UnstakeInitiated(address indexed account, uint256 coolingSvvv, uint64 unlockAt);
    event UnstakeFinalized(address indexed account, uint256 vvv);
    event RewardsClaimed(address indexed account, uint256 vvv);
    event RewardsStaked(address indexed account, uint256 svvv);
    event EmissionRateSet(uint256 vvvPerSecond);
    event UtilizationReported(uint32 utilizationBps, uint32 companyShareBps);
    event ParametersSet(uint64 unstakeCooldownSeconds, uint32 lockedYieldBps);
    event DiemSet(address diem);
    event DiemMinted(address indexed account, uint256 diem, uint256 svvvLocked, uint256 mintRateAfter);
    event DiemBurned(address indexed account, uint256 diem, uint256 svvvUnlocked);
    event MintCurveSet();
    event BoughtBackAndBurned(uint256 indexed day, uint256 vvv, uint256 revenueUsd);

    constructor(VVV vvv_, address treasury_, address admin, uint256 emissionRate_, CurvePoint[] memory curve_) {
        if (emissionRate_ > MAXIMUM_EMISSION_RATE_UNITS_PER_SECOND) revert EmissionRateTooHigh();
        if (!_storeCurve(curve_)) revert InvalidMintCurve();
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
        _grantRole(BUYBACK_ROLE, admin);
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

    // --- DIEM ---

    /// Locks at most `svvvToLock` staked sVVV for as much DIEM as it buys at the curve's rate
    /// from the current supply on, and no less than `minDiemOut`.
    function mintDiem(uint256 svvvToLock, uint256 minDiemOut) external {
        _accrue();
        if (svvvToLock == 0) revert ZeroAmount();
        Position storage position = _settle(msg.sender);
        if (position.staked < svvvToLock) revert InsufficientStakedVvv();
        (bool ok, uint256 diemOut, uint256 cost) = _mintForBudget(diemSupply, svvvToLock);
        if (!ok) revert Overflow();
        if (diemOut == 0) revert MintsNoDiem();
        if (diemOut < minDiemOut) revert SlippageExceeded();
        uint256 supplyAfter = diemSupply + diemOut;
        if (supplyAfter > U128_MAX) revert Overflow();
        position.staked -= cost;
        position.locked += cost;
        position.diemMintedOutstanding += diemOut;
        totalStaked -= cost;
        totalLocked += cost;
        diemSupply = supplyAfter;
        diem.mint(msg.sender, diemOut);
        emit DiemMinted(msg.sender, diemOut, cost, rateAt(supplyAfter));
    }

    /// Burns `amount` of the DIEM this account minted, unlocking its share of the locked sVVV
    /// (all of it with the last burn).
    function burnDiem(uint256 amount) external {
        _accrue();
        if (amount == 0) revert ZeroAmount();
        Position storage position = _settle(msg.sender);
        if (diem.balanceOf(msg.sender) < amount) revert InsufficientDiem();
        uint256 outstanding = position.diemMintedOutstanding;
        if (amount > outstanding) revert BurnExceedsMintedDiem();
        uint256 unlocked =
            amount == outstanding ? position.locked : Math.mulDiv(position.locked, amount, outstanding);
        position.diemMintedOutstanding -= amount;
        position.locked -= unlocked;
        position.staked += unlocked;
        totalLocked -= unlocked;
        totalStaked += unlocked;
        diemSupply -= amount;
        diem.burn(msg.sender, amount);
        emit DiemBurned(msg.sender, amount, unlocked);
    }

    /// Accrues emissions up to now; anyone may call it.
    function accrue() external {
        _accrue();
    }

    /// VVV or DIEM moved between two holders: accrue, then settle both, as the ledger's transfer
    /// does.
    function onTransfer(address from, address to) external override(IVVVStaking, IDiemStaking) {
        if (msg.sender != address(vvv) && msg.sender != address(diem)) revert NotVvv();
        _accrue();
        _settle(from);
        if (to != address(0)) {
            _settle(to);
        }
    }

    /// A DIEM operation of `account` (staking DIEM): accrue, then settle it, as the ledger
    /// does for every operation.
    function touch(address account) external {
        if (msg.sender != address(diem)) revert NotDiem();
        _accrue();
        _settle(account);
    }

    // --- Admin ---

    /// Burns `amount` VVV from the treasury (which approves this contract), bought back with
    /// `revenueUsd` of revenue, and records both on today's buy-back day.
    function buybackAndBurn(uint256 amount, uint256 revenueUsd) external onlyRole(BUYBACK_ROLE) {
        _accrue();
        if (amount == 0) revert ZeroAmount();
        _settle(treasury);
        if (vvv.balanceOf(treasury) < amount) revert InsufficientVvv();
        if (revenueUsd > U128_MAX - buybackRevenueUsd) revert Overflow();
        uint256 day = block.timestamp / 1 days;
        buybacksByDay[day].vvvBurned += amount;
        buybacksByDay[day].revenueUsd += revenueUsd;
        burnedByBuyback += amount;
        buybackRevenueUsd += revenueUsd;
        vvv.burnFrom(treasury, amount);
        emit BoughtBackAndBurned(day, amount, revenueUsd);
    }

    /// Names the DIEM contract; once.
    function setDiem(Diem diem_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (address(diem) != address(0)) revert DiemAlreadySet();
        diem = diem_;
        emit DiemSet(address(diem_));
    }

    /// Replaces the mint curve (256 points, the first at supply zero, supplies strictly rising
    /// up to a million DIEM, rates non-zero, non-decreasing and at most a billion sVVV).
    function setMintCurve(CurvePoint[] calldata points) external onlyRole(PARAMETERS_ROLE) {
        _accrue();
        if (!_storeCurve(points)) revert InvalidMintCurve();
        emit MintCurveSet();
    }

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

    /// The parameters: the unstake cooldown, locked stake's yield, DIEM's unstake cooldown and
    /// spendable minimum, and the utilization split (2 to 16 points from 0% to 100%
    /// utilization, strictly rising, shares at most 100%).
    function setParameters(
        uint64 cooldownSeconds,
        uint32 lockedYield,
        uint64 diemCooldownSeconds,
        uint256 minimumSpendableStakedDiem,
        SplitPoint[] calldata points
    ) external onlyRole(PARAMETERS_ROLE) {
        _accrue();
        if (
            cooldownSeconds > MAXIMUM_COOLDOWN_SECONDS || diemCooldownSeconds > MAXIMUM_COOLDOWN_SECONDS
                || lockedYield > BASIS_POINTS
                || minimumSpendableStakedDiem > MAXIMUM_MINIMUM_SPENDABLE_STAKED_DIEM_UNITS || !_validSplit(points)
        ) {
            revert InvalidParameters();
        }
        unstakeCooldownSeconds = cooldownSeconds;
        lockedYieldBps = lockedYield;
        delete split;
        for (uint256 i = 0; i < points.length; i++) {
            split.push(points[i]);
        }
        diem.setParameters(diemCooldownSeconds, minimumSpendableStakedDiem);
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

    /// The mint curve's points.
    function curvePoints() external view returns (CurvePoint[] memory points) {
        points = new CurvePoint[](CURVE_POINT_COUNT);
        for (uint256 i = 0; i < CURVE_POINT_COUNT; i++) {
            (uint256 supply, uint256 rate,) = _point(i);
            points[i] = CurvePoint(uint64(supply), rate);
        }
    }

    /// The mint rate at a DIEM supply (base units), interpolated and rounded down; flat past
    /// the last point.
    function rateAt(uint256 supplyUnits) public view returns (uint256) {
        uint256 index = _segmentIndex(supplyUnits);
        (uint256 startSupply, uint256 rate,) = _point(index);
        if (index + 1 == CURVE_POINT_COUNT) {
            return rate;
        }
        (uint256 endSupply, uint256 endRate,) = _point(index + 1);
        uint256 startUnits = startSupply * UNITS_PER_TOKEN;
        uint256 widthUnits = (endSupply - startSupply) * UNITS_PER_TOKEN;
        uint256 rise = endRate - rate;
        return rate + Math.mulDiv(rise, supplyUnits - startUnits, widthUnits);
    }

    /// What `svvvToLock` would mint now: (whether it can be priced, DIEM out, sVVV locked).
    function previewMint(uint256 svvvToLock) external view returns (bool, uint256, uint256) {
        return _mintForBudget(diemSupply, svvvToLock);
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

    function _point(uint256 index) internal view returns (uint256 supply, uint256 rate, uint256 doubledCostBefore) {
        uint256 word = curve[index];
        supply = word >> 224;
        rate = (word >> 112) & ((1 << 112) - 1);
        doubledCostBefore = word & ((1 << 112) - 1);
    }

    /// Validates and stores a curve (the ledger's `MintCurve::new`); false if it is invalid.
    function _storeCurve(CurvePoint[] memory points) internal returns (bool) {
        if (points.length != CURVE_POINT_COUNT || points[0].supplyDiem != 0 || points[0].rateSvvvUnitsPerDiem == 0) {
            return false;
        }
        for (uint256 i = 0; i < CURVE_POINT_COUNT; i++) {
            if (
                points[i].supplyDiem > MAXIMUM_CURVE_SUPPLY_DIEM
                    || points[i].rateSvvvUnitsPerDiem > MAXIMUM_MINT_RATE_SVVV_UNITS_PER_DIEM
            ) {
                return false;
            }
            if (
                i > 0
                    && (
                        points[i].supplyDiem <= points[i - 1].supplyDiem
                            || points[i].rateSvvvUnitsPerDiem < points[i - 1].rateSvvvUnitsPerDiem
                    )
            ) {
                return false;
            }
        }
        // The bounds keep every running cost below 2^112, so it packs.
        uint256 running = 0;
        for (uint256 i = 0; i < CURVE_POINT_COUNT; i++) {
            if (i > 0) {
                running += (points[i - 1].rateSvvvUnitsPerDiem + points[i].rateSvvvUnitsPerDiem)
                    * (points[i].supplyDiem - points[i - 1].supplyDiem);
            }
            curve[i] = (uint256(points[i].supplyDiem) << 224) | (points[i].rateSvvvUnitsPerDiem << 112) | running;
        }
        return true;
    }

    /// The last point at or below `supplyUnits`.
    function _segmentIndex(uint256 supplyUnits) internal view returns (uint256) {
        uint256 low = 0;
        uint256 high = CURVE_POINT_COUNT;
        // The first index whose supply is above `supplyUnits`, then the one before it.
        while (low < high) {
            uint256 middle = (low + high) / 2;
            (uint256 supply,,) = _point(middle);
            if (supply * UNITS_PER_TOKEN <= supplyUnits) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        return low - 1;
    }

    /// One segment of the curve, read once for many evaluations.
    struct Segment {
        uint256 startUnits;
        uint256 rate;
        uint256 doubledBefore;
        uint256 widthUnits;
        uint256 rise;
        bool last;
    }

    function _segment(uint256 index) internal view returns (Segment memory segment) {
        (uint256 startSupply, uint256 rate, uint256 doubledBefore) = _point(index);
        segment.startUnits = startSupply * UNITS_PER_TOKEN;
        segment.rate = rate;
        segment.doubledBefore = doubledBefore;
        if (index + 1 == CURVE_POINT_COUNT) {
            segment.last = true;
        } else {
            (uint256 endSupply, uint256 endRate,) = _point(index + 1);
            segment.widthUnits = (endSupply - startSupply) * UNITS_PER_TOKEN;
            segment.rise = endRate - rate;
        }
    }

    /// F(x): the sVVV that moving DIEM supply from zero to `supplyUnits` costs, the exact
    /// integral of the interpolated rate rounded up; not ok where the ledger's 256-bit
    /// arithmetic or its u128 result would overflow.
    function _cumulativeCost(uint256 supplyUnits) internal view returns (bool, uint256) {
        return _costIn(_segment(_segmentIndex(supplyUnits)), supplyUnits);
    }

    /// F(x) for an `x` in `segment`.
    function _costIn(Segment memory segment, uint256 supplyUnits) internal pure returns (bool, uint256) {
        uint256 offset = supplyUnits - segment.startUnits;
        uint256 halfBefore = segment.doubledBefore % 2;
        uint256 numerator;
        uint256 partialCost;
        bool ok;
        if (segment.last) {
            // (half · w + 2 · offset · rate) / (2 · w), rounded up.
            (ok, numerator) = Math.tryMul(offset * segment.rate, 2);
            if (!ok) return (false, 0);
            (ok, numerator) = Math.tryAdd(numerator, halfBefore * UNITS_PER_TOKEN);
            if (!ok) return (false, 0);
            partialCost = Math.ceilDiv(numerator, 2 * UNITS_PER_TOKEN);
        } else {
            uint256 width = segment.widthUnits;
            // (half · W · w + 2 · W · offset · r + rise · offset²) / (2 · W · w), rounded up.
            uint256 term;
            (ok, term) = Math.tryMul(offset * segment.rate, 2 * width);
            if (!ok) return (false, 0);
            (ok, numerator) = Math.tryAdd(halfBefore * width * UNITS_PER_TOKEN, term);
            if (!ok) return (false, 0);
            (ok, term) = Math.tryMul(offset * offset, segment.rise);
            if (!ok) return (false, 0);
            (ok, numerator) = Math.tryAdd(numerator, term);
            if (!ok) return (false, 0);
            partialCost = Math.ceilDiv(Math.ceilDiv(numerator, 2 * width), UNITS_PER_TOKEN);
        }
        if (partialCost > U128_MAX) return (false, 0);
        uint256 cost = segment.doubledBefore / 2 + partialCost;
        if (cost > U128_MAX) return (false, 0);
        return (true, cost);
    }

    /// The cost of `diemUnits` more at `supplyUnits` whose F is `costBefore`.
    function _costOf(uint256 supplyUnits, uint256 costBefore, uint256 diemUnits) internal view returns (bool, uint256) {
        if (diemUnits > U128_MAX - supplyUnits) return (false, 0);
        (bool ok, uint256 costAfter) = _cumulativeCost(supplyUnits + diemUnits);
        if (!ok) return (false, 0);
        return (true, costAfter - costBefore);
    }

    /// The most DIEM that at most `budget` sVVV buys at `supplyUnits`, and its exact cost: the
    /// ledger's `MintCurve::mint_for_budget`. The ledger bisects the amount on the whole range;
    /// since the cost only rises with the amount, the largest affordable amount is one number,
    /// found here in fewer steps: the segment it ends in by the segments' own costs, then a
    /// bisection inside that one segment.
    function _mintForBudget(uint256 supplyUnits, uint256 budget) internal view returns (bool, uint256, uint256) {
        (bool ok, uint256 costBefore) = _cumulativeCost(supplyUnits);
        if (!ok) return (false, 0, 0);
        uint256 tooMany = U128_MAX - supplyUnits;
        if (budget < U128_MAX) {
            uint256 bound = Math.mulDiv(budget + 1, UNITS_PER_TOKEN, rateAt(supplyUnits));
            if (bound < U128_MAX && bound + 1 < tooMany) {
                tooMany = bound + 1;
            }
        }
        uint256 cost;
        (ok, cost) = _costOf(supplyUnits, costBefore, tooMany);
        if (ok && cost <= budget) {
            return (true, tooMany, cost);
        }
        if (budget > U128_MAX) {
            return _bisect(supplyUnits, costBefore, budget, tooMany);
        }
        return _mintWithin(supplyUnits, costBefore, costBefore + budget, supplyUnits + tooMany - 1);
    }

    /// The largest supply from `supplyUnits` to `lastSupply` whose F is at most `target`: the
    /// DIEM it mints and what that costs.
    function _mintWithin(uint256 supplyUnits, uint256 costBefore, uint256 target, uint256 lastSupply)
        internal
        view
        returns (bool, uint256, uint256)
    {
        // Its segment: the last one from supplyUnits' to lastSupply's whose start costs at most
        // the target (F at a point is its doubled cost halved, rounded up).
        uint256 low = _segmentIndex(supplyUnits);
        uint256 high = _segmentIndex(lastSupply);
        while (low < high) {
            uint256 middle = (low + high + 1) / 2;
            (,, uint256 doubledBefore) = _point(middle);
            if ((doubledBefore + 1) / 2 <= target) {
                low = middle;
            } else {
                high = middle - 1;
            }
        }
        (bool ok, uint256 reached, uint256 cost) = _searchSegment(_segment(low), supplyUnits, lastSupply, target);
        if (!ok) return (false, 0, 0);
        return (true, reached - supplyUnits, cost - costBefore);
    }

    /// The largest supply in `segment`, from `supplyUnits` to `lastSupply`, whose F is at most
    /// `target`, and its F. The root of the segment's cost is estimated (`_estimate`) and the
    /// estimate checked with F itself, so the answer is exact whatever the estimate: it is taken
    /// only where F at it fits and F one unit past it does not; otherwise, a bisection between
    /// what is known to fit and what is known not to.
    function _searchSegment(Segment memory segment, uint256 supplyUnits, uint256 lastSupply, uint256 target)
        internal
        pure
        returns (bool, uint256, uint256)
    {
        uint256 affordable = supplyUnits > segment.startUnits ? supplyUnits : segment.startUnits;
        uint256 beyond = lastSupply;
        if (!segment.last && segment.startUnits + segment.widthUnits - 1 < beyond) {
            beyond = segment.startUnits + segment.widthUnits - 1;
        }
        (bool estimated, uint256 candidate) = _estimate(segment, target);
        if (estimated && affordable < beyond) {
            if (candidate < affordable) candidate = affordable;
            if (candidate > beyond) candidate = beyond;
            (bool fits, uint256 cost) = _costIn(segment, candidate);
            if (fits && cost <= target) {
                if (candidate == beyond || !_fitsIn(segment, candidate + 1, target)) return (true, candidate, cost);
                affordable = candidate + 1;
            } else {
                // The estimate is at or above the root: one unit below it is the answer if it fits.
                (fits, cost) = _costIn(segment, candidate - 1);
                if (fits && cost <= target) return (true, candidate - 1, cost);
                beyond = candidate - 2;
            }
        }
        while (affordable < beyond) {
            uint256 middle = affordable + (beyond - affordable + 1) / 2;
            (bool fits, uint256 cost) = _costIn(segment, middle);
            if (fits && cost <= target) {
                affordable = middle;
            } else {
                beyond = middle - 1;
            }
        }
        (bool ok, uint256 reachedCost) = _costIn(segment, affordable);
        return (ok, affordable, reachedCost);
    }

    /// Whether F at `supplyUnits` in `segment` is at most `target`.
    function _fitsIn(Segment memory segment, uint256 supplyUnits, uint256 target) internal pure returns (bool) {
        (bool ok, uint256 cost) = _costIn(segment, supplyUnits);
        return ok && cost <= target;
    }

    /// The supply in `segment` where F reaches `target`, rounded down, or just above it: F is
    /// at most the target exactly where N(o) = h·W·w + 2·W·r·o + rise·o² is at most 2·W·w·T
    /// (o the offset into the segment, T the target less the cost before it, h the half unit
    /// carried, w a token's units; on the last segment, 2·r·o + h·w at most 2·w·T). That is
    /// solved with Newton's method from K / (2·W·r), above the root, where every step stays at
    /// or above it and a few reach it. Not estimated (false) where a product would overflow.
    function _estimate(Segment memory segment, uint256 target) internal pure returns (bool, uint256) {
        uint256 before = segment.doubledBefore / 2;
        if (target < before || segment.rate == 0) return (false, 0);
        uint256 half = segment.doubledBefore % 2;
        // The last segment is a line: its width counts as one.
        uint256 width = segment.last ? 1 : segment.widthUnits;
        (bool ok, uint256 room) = Math.tryMul(2 * width * UNITS_PER_TOKEN, target - before);
        if (!ok || room < half * width * UNITS_PER_TOKEN) return (false, 0);
        room -= half * width * UNITS_PER_TOKEN;
        uint256 slope;
        (ok, slope) = Math.tryMul(2 * width, segment.rate);
        if (!ok) return (false, 0);
        uint256 offset = room / slope;
        if (segment.last || segment.rise == 0 || offset > width) return (true, segment.startUnits + offset);
        (ok, offset) = _newton(segment.rise, slope, room, offset);
        return (ok, segment.startUnits + offset);
    }

    /// Newton's method on g(o) = rise·o² + slope·o − room from an `offset` above its root: each
    /// step, rounded down, stays at or above the root.
    function _newton(uint256 rise, uint256 slope, uint256 room, uint256 offset) internal pure returns (bool, uint256) {
        for (uint256 step = 0; step < 8; step++) {
            (bool ok, uint256 value) = Math.tryMul(rise * offset, offset);
            if (!ok) return (false, 0);
            (ok, value) = Math.tryAdd(value, slope * offset);
            if (!ok) return (false, 0);
            if (value <= room) break;
            uint256 fall = (value - room) / (2 * rise * offset + slope);
            if (fall == 0) break;
            offset -= fall;
        }
        return (true, offset);
    }

    /// The ledger's bisection as it is, for budgets past what it can hold.
    function _bisect(uint256 supplyUnits, uint256 costBefore, uint256 budget, uint256 tooMany)
        internal
        view
        returns (bool, uint256, uint256)
    {
        bool ok;
        uint256 cost;
        uint256 affordable = 0;
        while (tooMany - affordable > 1) {
            uint256 middle = affordable + (tooMany - affordable) / 2;
            (ok, cost) = _costOf(supplyUnits, costBefore, middle);
            if (ok && cost <= budget) {
                affordable = middle;
            } else {
                tooMany = middle;
            }
        }
        (ok, cost) = _costOf(supplyUnits, costBefore, affordable);
        if (!ok) return (false, 0, 0);
        return (true, affordable, cost);
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
