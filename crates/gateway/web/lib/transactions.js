// The chain library of Gondola's web app: what the wallet page uses of viem to read the
// contracts and send transactions in chain mode (chain.js), and to have a browser wallet
// (EIP-1193) sign for it, and nothing more: a bare client and the actions it runs, imported one
// by one so the bundle holds only those.
// crates/gateway/build.rs bundles this module (with esbuild, see bundle.mjs) into the
// /transactions.js the gateway serves, loaded only in chain mode or for a browser wallet; missing-transactions.js stands
// in for it in a build made without node_modules, with the same exports.

export { BaseError, ContractFunctionRevertedError, createClient, custom, defineChain, getAddress, http, parseAbi, parseEventLogs } from "viem";
export {
  addChain,
  estimateContractGas,
  getBlock,
  getChainId,
  readContract,
  requestAddresses,
  signMessage,
  signTypedData,
  simulateContract,
  switchChain,
  waitForTransactionReceipt,
  writeContract,
} from "viem/actions";

/** This build has the library. */
export const available = true;
