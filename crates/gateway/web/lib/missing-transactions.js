// Stands in for the web app's chain library (transactions.js bundled with viem) in a gateway
// built without its node_modules: same exports, and a plain statement of what is missing.

/** This build lacks the library. */
export const available = false;

export const missing =
  "This gateway was built without the web app's chain library (viem), so this page cannot read the chain, send transactions or use a browser wallet. " +
  "Build it with scripts/serve.sh, or run `npm ci` in crates/gateway/web/lib and build again. " +
  "The CLI sends the same transactions: gondola chain stake, gondola chain diem.";

function unavailable() {
  throw new Error(missing);
}

export const BaseError = Error;
export const ContractFunctionRevertedError = Error;
export const addChain = unavailable;
export const createClient = unavailable;
export const custom = unavailable;
export const defineChain = unavailable;
export const estimateContractGas = unavailable;
export const getAddress = unavailable;
export const getBlock = unavailable;
export const getChainId = unavailable;
export const http = unavailable;
export const parseAbi = unavailable;
export const parseEventLogs = unavailable;
export const readContract = unavailable;
export const requestAddresses = unavailable;
export const signMessage = unavailable;
export const signTypedData = unavailable;
export const simulateContract = unavailable;
export const switchChain = unavailable;
export const waitForTransactionReceipt = unavailable;
export const writeContract = unavailable;
