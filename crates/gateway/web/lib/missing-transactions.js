// Stands in for the web app's chain library (transactions.js bundled with viem) in a gateway
// built without its node_modules: same exports, and a plain statement of what is missing.

/** This build lacks the library. */
export const available = false;

export const missing =
  "This gateway was built without the web app's chain library (viem), so this page cannot read the chain or send transactions. " +
  "Build it with scripts/serve.sh, or run `npm ci` in crates/gateway/web/lib and build again. " +
  "The CLI sends the same transactions: gondola chain stake, gondola chain diem.";

function unavailable() {
  throw new Error(missing);
}

export const BaseError = Error;
export const ContractFunctionRevertedError = Error;
export const createClient = unavailable;
export const defineChain = unavailable;
export const estimateContractGas = unavailable;
export const getBlock = unavailable;
export const http = unavailable;
export const parseAbi = unavailable;
export const parseEventLogs = unavailable;
export const readContract = unavailable;
export const simulateContract = unavailable;
export const waitForTransactionReceipt = unavailable;
export const writeContract = unavailable;
