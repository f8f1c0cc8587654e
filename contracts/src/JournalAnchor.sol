// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// Anchors of the gateway's off-chain ledger journal: now and then (daily) the operator posts
/// the sequence and record hash of the journal's last record. The journal is hash-chained, so
/// a record hash commits to every record before it: anyone holding a copy of the journal can
/// check it against the chain (`gondola chain verify-anchors`), and a history rewritten after
/// an anchor no longer matches it.
contract JournalAnchor is AccessControl {
    bytes32 public constant ANCHOR_ROLE = keccak256("ANCHOR_ROLE");

    struct Anchor {
        uint64 sequence;
        bytes32 recordHash;
        uint64 anchoredAt;
    }

    Anchor[] public anchors;

    error SequenceNotAfterLast(uint64 last);

    event Anchored(uint256 indexed index, uint64 sequence, bytes32 recordHash);

    constructor(address admin) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(ANCHOR_ROLE, admin);
    }

    /// Posts the journal's record `sequence` and its hash; sequences only grow.
    function anchor(uint64 sequence, bytes32 recordHash) external onlyRole(ANCHOR_ROLE) {
        uint64 last = anchors.length == 0 ? 0 : anchors[anchors.length - 1].sequence;
        if (sequence <= last) revert SequenceNotAfterLast(last);
        anchors.push(Anchor(sequence, recordHash, uint64(block.timestamp)));
        emit Anchored(anchors.length - 1, sequence, recordHash);
    }

    function count() external view returns (uint256) {
        return anchors.length;
    }
}
