// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {VVV} from "./VVV.sol";

/// The genesis airdrop: each allocation is a leaf of a Merkle tree (OpenZeppelin's standard
/// leaf, the double hash of the ABI-encoded account and amount), claimed whole with its proof
/// until the claim deadline; after it, the admin burns whatever was not claimed. It holds the
/// airdrop's VVV until then. As the ledger's `ClaimAirdrop` and `BurnUnclaimedAirdrop`.
contract Airdrop is AccessControl {
    VVV public immutable vvv;
    bytes32 public immutable merkleRoot;
    uint64 public immutable claimDeadline;

    mapping(address => bool) public claimed;
    /// Whether the unclaimed rest was burned: no allocation can be claimed after it.
    bool public burned;

    error NoAirdropAllocation();
    error AirdropWindowClosed();
    error AirdropWindowOpen();
    error NoUnclaimedAirdrop();

    event AirdropClaimed(address indexed account, uint256 vvv);
    event UnclaimedAirdropBurned(uint256 vvv);

    constructor(VVV vvv_, bytes32 merkleRoot_, uint64 claimDeadline_, address admin) {
        vvv = vvv_;
        merkleRoot = merkleRoot_;
        claimDeadline = claimDeadline_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// Pays the caller's whole allocation, `amount`, proven by `proof`.
    function claim(uint256 amount, bytes32[] calldata proof) external {
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(msg.sender, amount))));
        if (burned || claimed[msg.sender] || !MerkleProof.verifyCalldata(proof, merkleRoot, leaf)) {
            revert NoAirdropAllocation();
        }
        if (block.timestamp >= claimDeadline) revert AirdropWindowClosed();
        claimed[msg.sender] = true;
        vvv.transfer(msg.sender, amount);
        emit AirdropClaimed(msg.sender, amount);
    }

    /// Burns what was not claimed, once the window has closed.
    function burnUnclaimed() external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (block.timestamp < claimDeadline) revert AirdropWindowOpen();
        uint256 rest = vvv.balanceOf(address(this));
        if (rest == 0) revert NoUnclaimedAirdrop();
        burned = true;
        vvv.burn(rest);
        emit UnclaimedAirdropBurned(rest);
    }
}
