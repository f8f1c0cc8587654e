// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// The staking contract as DIEM sees it: it mints and burns DIEM, sets DIEM's parameters, and
/// is told of every transfer and every DIEM staking operation, so that emissions accrue and the
/// accounts' rewards are settled where Gondola's ledger does it.
interface IDiemStaking {
    function onTransfer(address from, address to) external;
    function touch(address account) external;
}

/// DIEM: one staked DIEM is a dollar of inference a day, for as long as it stays staked
/// (18 decimals, transferable). Minted by the staking contract against locked sVVV and burned
/// there to unlock it; staked here, with a cooldown to unstake. Staked DIEM below the spendable
/// minimum gives no allowance.
contract Diem is ERC20, ERC20Permit {
    IDiemStaking public immutable staking;

    uint64 public unstakeCooldownSeconds = 1 days;
    /// Staked DIEM below this gives no allowance.
    uint256 public minimumSpendableStaked = 1e17;

    /// One account's staked DIEM.
    struct StakedDiem {
        uint256 staked;
        uint256 cooling;
        /// When the cooling DIEM may be withdrawn; zero when nothing is cooling.
        uint64 unlockAt;
    }

    mapping(address => StakedDiem) public stakes;
    uint256 public totalStaked;
    uint256 public totalCooling;

    error NotStaking();
    error ZeroAmount();
    error InsufficientDiem();
    error InsufficientStakedDiem();
    error NoDiemCoolingDown();
    error DiemCooldownNotElapsed(uint64 unlockAt);
    error Overflow();

    event DiemStaked(address indexed account, uint256 diem);
    event DiemUnstakeInitiated(address indexed account, uint256 coolingDiem, uint64 unlockAt);
    event DiemUnstakeFinalized(address indexed account, uint256 diem);
    event DiemParametersSet(uint64 unstakeCooldownSeconds, uint256 minimumSpendableStaked);

    constructor(IDiemStaking staking_) ERC20("Diem", "DIEM") ERC20Permit("Diem") {
        staking = staking_;
    }

    modifier onlyStaking() {
        if (msg.sender != address(staking)) revert NotStaking();
        _;
    }

    function mint(address to, uint256 amount) external onlyStaking {
        _mint(to, amount);
    }

    function burn(address from, uint256 amount) external onlyStaking {
        _burn(from, amount);
    }

    function setParameters(uint64 cooldownSeconds, uint256 minimumSpendable) external onlyStaking {
        unstakeCooldownSeconds = cooldownSeconds;
        minimumSpendableStaked = minimumSpendable;
        emit DiemParametersSet(cooldownSeconds, minimumSpendable);
    }

    function stake(uint256 amount) external {
        staking.touch(msg.sender);
        if (amount == 0) revert ZeroAmount();
        if (balanceOf(msg.sender) < amount) revert InsufficientDiem();
        stakes[msg.sender].staked += amount;
        totalStaked += amount;
        _transfer(msg.sender, address(this), amount);
        emit DiemStaked(msg.sender, amount);
    }

    function initiateUnstake(uint256 amount) external {
        staking.touch(msg.sender);
        if (amount == 0) revert ZeroAmount();
        StakedDiem storage position = stakes[msg.sender];
        if (position.staked < amount) revert InsufficientStakedDiem();
        uint256 unlockAt = block.timestamp + unstakeCooldownSeconds;
        if (unlockAt > type(uint64).max) revert Overflow();
        position.staked -= amount;
        position.cooling += amount;
        position.unlockAt = uint64(unlockAt);
        totalStaked -= amount;
        totalCooling += amount;
        emit DiemUnstakeInitiated(msg.sender, position.cooling, uint64(unlockAt));
    }

    function finalizeUnstake() external {
        staking.touch(msg.sender);
        StakedDiem storage position = stakes[msg.sender];
        uint256 amount = position.cooling;
        if (amount == 0) revert NoDiemCoolingDown();
        if (block.timestamp < position.unlockAt) revert DiemCooldownNotElapsed(position.unlockAt);
        position.cooling = 0;
        position.unlockAt = 0;
        totalCooling -= amount;
        _transfer(address(this), msg.sender, amount);
        emit DiemUnstakeFinalized(msg.sender, amount);
    }

    /// The DIEM part of `account`'s daily allowance, in USD base units a day: its staked DIEM,
    /// or zero below the spendable minimum.
    function allowanceOf(address account) external view returns (uint256) {
        uint256 staked = stakes[account].staked;
        return staked >= minimumSpendableStaked ? staked : 0;
    }

    /// Every move of DIEM between two holders tells the staking contract first. Mints, burns and
    /// moves into or out of staking here come from operations that told it already.
    function _update(address from, address to, uint256 value) internal override {
        if (from != address(0) && to != address(0) && from != address(this) && to != address(this)) {
            staking.onTransfer(from, to);
        }
        super._update(from, to, value);
    }
}
