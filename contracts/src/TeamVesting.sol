// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {VVV} from "./VVV.sol";

/// The vesting part of the team's grants: each vests linearly from `start` over `duration`,
/// rounded down, and its beneficiary claims what has vested. It holds the grants' VVV until
/// then. As the ledger's `ClaimVested`.
contract TeamVesting {
    VVV public immutable vvv;
    uint64 public immutable start;
    uint64 public immutable duration;

    struct Grant {
        bool exists;
        uint256 vesting;
        uint256 claimed;
    }

    mapping(address => Grant) public grants;

    error NoVestingGrant();
    error NothingVestedYet();
    error LengthMismatch();

    event VestedClaimed(address indexed account, uint256 vvv);

    constructor(VVV vvv_, address[] memory beneficiaries, uint256[] memory amounts, uint64 start_, uint64 duration_) {
        if (beneficiaries.length != amounts.length) revert LengthMismatch();
        vvv = vvv_;
        start = start_;
        duration = duration_;
        for (uint256 i = 0; i < beneficiaries.length; i++) {
            grants[beneficiaries[i]] = Grant(true, amounts[i], 0);
        }
    }

    /// What of `account`'s grant has vested by now.
    function vested(address account) public view returns (uint256) {
        Grant storage grant = grants[account];
        uint256 elapsed = block.timestamp > start ? block.timestamp - start : 0;
        if (elapsed >= duration) {
            return grant.vesting;
        }
        return Math.mulDiv(grant.vesting, elapsed, duration);
    }

    /// Vested and not yet claimed.
    function claimable(address account) external view returns (uint256) {
        return vested(account) - grants[account].claimed;
    }

    function claim() external {
        Grant storage grant = grants[msg.sender];
        if (!grant.exists) revert NoVestingGrant();
        uint256 amount = vested(msg.sender) - grant.claimed;
        if (amount == 0) revert NothingVestedYet();
        grant.claimed += amount;
        vvv.transfer(msg.sender, amount);
        emit VestedClaimed(msg.sender, amount);
    }
}
