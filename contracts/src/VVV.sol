// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Burnable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Burnable.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// The staking contract as VVV sees it: it mints emissions, and is told of every transfer so
/// that emissions accrue, and the two accounts' rewards are settled, exactly where Gondola's
/// ledger does it (at every operation, for the accounts the operation loads).
interface IVVVStaking {
    function onTransfer(address from, address to) external;
}

/// VVV: Gondola's staking token (18 decimals). The genesis supply is minted in the constructor
/// to the genesis holders; afterwards only the staking contract mints (emissions), and anyone
/// may burn their own.
contract VVV is ERC20, ERC20Burnable, ERC20Permit {
    /// The one address that may set the staking contract, once.
    address public immutable deployer;
    /// The staking contract, once set: the only minter.
    IVVVStaking public staking;

    error StakingAlreadySet();
    error NotDeployer();
    error NotStaking();
    error LengthMismatch();

    event StakingSet(address staking);

    constructor(address[] memory holders, uint256[] memory amounts)
        ERC20("Venice Token", "VVV")
        ERC20Permit("Venice Token")
    {
        if (holders.length != amounts.length) revert LengthMismatch();
        deployer = msg.sender;
        for (uint256 i = 0; i < holders.length; i++) {
            _mint(holders[i], amounts[i]);
        }
    }

    /// Names the staking contract; once, by the deployer.
    function setStaking(IVVVStaking staking_) external {
        if (msg.sender != deployer) revert NotDeployer();
        if (address(staking) != address(0)) revert StakingAlreadySet();
        staking = staking_;
        emit StakingSet(address(staking_));
    }

    /// Emissions: the staking contract mints stakers' rewards to itself and the company's share
    /// to the treasury.
    function mint(address to, uint256 amount) external {
        if (msg.sender != address(staking)) revert NotStaking();
        _mint(to, amount);
    }

    /// Every move of VVV between two holders tells the staking contract first. Moves into or
    /// out of the staking contract are its own (it accrued and settled already), and so are
    /// its mints.
    function _update(address from, address to, uint256 value) internal override {
        IVVVStaking staking_ = staking;
        if (
            address(staking_) != address(0) && from != address(0) && from != address(staking_)
                && to != address(staking_)
        ) {
            staking_.onTransfer(from, to);
        }
        super._update(from, to, value);
    }
}
