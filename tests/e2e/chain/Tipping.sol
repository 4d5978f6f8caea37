// SPDX-License-Identifier: MIT
// Tipping: the contract the end-to-end tests of herald's `evm` source run against.
// Modelled on a creator-tipping app: a viewer tips a creator in ETH and the app's
// overlay shows TIP_SENT on the creator's channel. Settled and Noted exist only to
// carry the other ABI types (signed ints, bool, bytes, bytesN, arrays, an indexed
// string) through a real node and herald's decoder.
pragma solidity ^0.8.20;

contract Tipping {
    event TipSent(address indexed tipper, address indexed creator, uint256 amount, string tipMode);
    event Settled(bytes32 indexed id, int256 delta, bool ok, bytes memo, uint8[] parts);
    event Noted(string indexed tag, address who, bytes4 sel, uint64 seq, int8 small, uint16[2] pair);

    mapping(address => uint256) public received;
    uint64 public notes;

    function tip(address creator, string calldata tipMode) external payable {
        require(msg.value > 0, "tip: no value");
        require(creator != address(0), "tip: no creator");
        received[creator] += msg.value;
        emit TipSent(msg.sender, creator, msg.value, tipMode);
    }

    // Several tips in one transaction: logs with consecutive log indexes.
    function tipMany(address[] calldata creators, string calldata tipMode) external payable {
        require(creators.length > 0 && msg.value % creators.length == 0, "tipMany: uneven");
        uint256 each = msg.value / creators.length;
        for (uint256 i = 0; i < creators.length; i++) {
            received[creators[i]] += each;
            emit TipSent(msg.sender, creators[i], each, tipMode);
        }
    }

    function settle(bytes32 id, int256 delta, bool ok, bytes calldata memo, uint8[] calldata parts) external {
        emit Settled(id, delta, ok, memo, parts);
    }

    function note(string calldata tag, bytes4 sel, int8 small, uint16[2] calldata pair) external {
        notes += 1;
        emit Noted(tag, msg.sender, sel, notes, small, pair);
    }
}
