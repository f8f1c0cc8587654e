// The chain library of Gondola's web app: what the wallet page's chain mode (chain.js) uses of
// viem to read the contracts and send transactions signed in the page, and nothing more: a bare
// client and the actions it runs, imported one by one so the bundle holds only those.
// crates/gateway/build.rs bundles this module (with esbuild, see bundle.mjs) into the
// /transactions.js the gateway serves, loaded only in chain mode; missing-transactions.js stands
// in for it in a build made without node_modules, with the same exports.

export { BaseError, ContractFunctionRevertedError, createClient, defineChain, http, parseAbi, parseEventLogs } from "viem";
export { estimateContractGas, getBlock, readContract, simulateContract, waitForTransactionReceipt, writeContract } from "viem/actions";

/** This build has the library. */
export const available = true;
