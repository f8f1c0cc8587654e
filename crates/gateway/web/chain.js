// The wallet page in chain mode: the account's VVV, sVVV and DIEM read from the contracts, and
// each operation the page offers sent as a transaction (viem: the chain library's client and
// actions, loaded only when needed). A key made or imported in the page signs it there and the
// page sends it straight to the chain's public JSON-RPC endpoint that the gateway publishes in
// /app-config.json (`gateway.chain.public_rpc_url`); a browser wallet (EIP-1193) signs and sends
// it itself, on its own connection to the chain, after the person approves it there. Reads go
// to the public endpoint, or through the browser wallet where there is none. The gateway never
// sees these transactions: it learns the stake from the chain, as anyone can.
//
// The operations are the ledger's JSON operations (`{type: "stake", vvv_units}` …), and what
// comes back has the ledger's field names, so the page draws both modes the same way. A refusal
// is found before anything is signed (the node simulates the call) and carries the contract's
// error as the ledger's rejection name (`CooldownNotElapsed` is `cooldown_not_elapsed`).

/** How long the page waits for a transaction to be mined. */
const RECEIPT_TIMEOUT_MS = 120_000;
/**
 * The gas limit a transaction is sent with, as crates/chain's `gas::limit`: the node's estimate
 * has no slack, and an accrual of emissions the estimate did not see (the block came a second
 * later) adds up to about 75,000 gas. Gas a transaction does not use is not charged.
 */
const ACCRUAL_HEADROOM = 120_000n;
export const gasLimit = (estimate) => estimate + estimate / 4n + ACCRUAL_HEADROOM;

const STAKING_ABI = [
  "function stake(uint256 amount)",
  "function initiateUnstake(uint256 amount)",
  "function finalizeUnstake()",
  "function claimRewards()",
  "function claimAndStakeRewards()",
  "function mintDiem(uint256 svvvToLock, uint256 minDiemOut)",
  "function burnDiem(uint256 amount)",
  "function previewMint(uint256 svvvToLock) view returns (bool, uint256, uint256)",
  "function pendingRewards(address account) view returns (uint256)",
  "function positions(address account) view returns (uint256 staked, uint256 cooling, uint256 locked, uint256 diemMintedOutstanding, uint256 rewardsOwed, uint256 rewardPerSharePaid, uint256 rewardPerLockedSharePaid, uint64 unlockAt)",
  "function unstakeCooldownSeconds() view returns (uint64)",
  "function diemSupply() view returns (uint256)",
  "function rateAt(uint256 supplyUnits) view returns (uint256)",
  "event Staked(address indexed account, uint256 svvv)",
  "event UnstakeInitiated(address indexed account, uint256 coolingSvvv, uint64 unlockAt)",
  "event UnstakeFinalized(address indexed account, uint256 vvv)",
  "event RewardsClaimed(address indexed account, uint256 vvv)",
  "event RewardsStaked(address indexed account, uint256 svvv)",
  "event DiemMinted(address indexed account, uint256 diem, uint256 svvvLocked, uint256 mintRateAfter)",
  "event DiemBurned(address indexed account, uint256 diem, uint256 svvvUnlocked)",
  "error ZeroAmount()",
  "error InsufficientVvv()",
  "error InsufficientStakedVvv()",
  "error NothingCoolingDown()",
  "error CooldownNotElapsed(uint64 unlockAt)",
  "error NoRewards()",
  "error Overflow()",
  "error InsufficientDiem()",
  "error BurnExceedsMintedDiem()",
  "error MintsNoDiem()",
  "error SlippageExceeded()",
];

const DIEM_ABI = [
  "function balanceOf(address account) view returns (uint256)",
  "function stakes(address account) view returns (uint256 staked, uint256 cooling, uint64 unlockAt)",
  "function unstakeCooldownSeconds() view returns (uint64)",
  "function minimumSpendableStaked() view returns (uint256)",
  "function stake(uint256 amount)",
  "function initiateUnstake(uint256 amount)",
  "function finalizeUnstake()",
  "event DiemStaked(address indexed account, uint256 diem)",
  "event DiemUnstakeInitiated(address indexed account, uint256 coolingDiem, uint64 unlockAt)",
  "event DiemUnstakeFinalized(address indexed account, uint256 diem)",
  "error ZeroAmount()",
  "error InsufficientDiem()",
  "error InsufficientStakedDiem()",
  "error NoDiemCoolingDown()",
  "error DiemCooldownNotElapsed(uint64 unlockAt)",
  "error Overflow()",
];

const AIRDROP_ABI = [
  "function claim(uint256 amount, bytes32[] proof)",
  "function claimed(address account) view returns (bool)",
  "event AirdropClaimed(address indexed account, uint256 vvv)",
  "error NoAirdropAllocation()",
  "error AirdropWindowClosed()",
];

const VVV_ABI = [
  "function balanceOf(address account) view returns (uint256)",
  "function allowance(address owner, address spender) view returns (uint256)",
  "function approve(address spender, uint256 value) returns (bool)",
  "error ERC20InsufficientBalance(address sender, uint256 balance, uint256 needed)",
];

/**
 * Each operation: the contract and function it calls, its arguments, and the event whose fields
 * are its outcome (with the ledger's names).
 */
const OPERATIONS = {
  stake: { contract: "staking", call: "stake", args: (o) => [BigInt(o.vvv_units)], event: "Staked", outcome: (e) => ({ svvv_units: e.svvv }) },
  initiate_unstake: {
    contract: "staking",
    call: "initiateUnstake",
    args: (o) => [BigInt(o.svvv_units)],
    event: "UnstakeInitiated",
    outcome: (e) => ({ cooling_svvv_units: e.coolingSvvv, unlock_at: Number(e.unlockAt) }),
  },
  finalize_unstake: { contract: "staking", call: "finalizeUnstake", args: () => [], event: "UnstakeFinalized", outcome: (e) => ({ vvv_units: e.vvv }) },
  claim_rewards: { contract: "staking", call: "claimRewards", args: () => [], event: "RewardsClaimed", outcome: (e) => ({ vvv_units: e.vvv }) },
  claim_and_stake_rewards: { contract: "staking", call: "claimAndStakeRewards", args: () => [], event: "RewardsStaked", outcome: (e) => ({ svvv_units: e.svvv }) },
  mint_diem: {
    contract: "staking",
    call: "mintDiem",
    args: (o) => [BigInt(o.svvv_to_lock_units), BigInt(o.min_diem_out_units)],
    event: "DiemMinted",
    outcome: (e) => ({ diem_units: e.diem, svvv_locked_units: e.svvvLocked }),
  },
  burn_diem: {
    contract: "staking",
    call: "burnDiem",
    args: (o) => [BigInt(o.diem_units)],
    event: "DiemBurned",
    outcome: (e) => ({ diem_units: e.diem, svvv_unlocked_units: e.svvvUnlocked }),
  },
  stake_diem: { contract: "diem", call: "stake", args: (o) => [BigInt(o.diem_units)], event: "DiemStaked", outcome: (e) => ({ diem_units: e.diem }) },
  initiate_diem_unstake: {
    contract: "diem",
    call: "initiateUnstake",
    args: (o) => [BigInt(o.diem_units)],
    event: "DiemUnstakeInitiated",
    outcome: (e) => ({ cooling_diem_units: e.coolingDiem, unlock_at: Number(e.unlockAt) }),
  },
  finalize_diem_unstake: { contract: "diem", call: "finalizeUnstake", args: () => [], event: "DiemUnstakeFinalized", outcome: (e) => ({ diem_units: e.diem }) },
  // Not a ledger operation: the airdrop is claimed on the chain, with the proof the gateway serves.
  claim_airdrop: {
    contract: "airdrop",
    call: "claim",
    args: (o) => [BigInt(o.amount_units), o.proof],
    event: "AirdropClaimed",
    outcome: (e) => ({ vvv_units: e.vvv }),
  },
};

/** `CooldownNotElapsed` → `cooldown_not_elapsed`, the ledger's name for the same refusal. */
const snake = (name) => name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();

/** A transaction the chain refused (found by simulating it, so nothing was sent). */
export class ChainRefusal extends Error {
  constructor(message, rejection) {
    super(message);
    this.rejection = rejection;
  }
}

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

/** The chain part of /app-config.json, checked: {chainId, rpcUrl, confirmations, contracts} or null. */
export function chainConfig(appConfig) {
  const chain = appConfig?.chain;
  if (!chain || typeof chain !== "object") return null;
  const contracts = chain.contracts ?? {};
  if (!Number.isSafeInteger(chain.chain_id) || !["vvv", "staking", "diem"].every((name) => ADDRESS.test(contracts[name] ?? ""))) return null;
  return {
    chainId: chain.chain_id,
    rpcUrl: typeof chain.rpc_url === "string" ? chain.rpc_url : null,
    confirmations: Number(chain.confirmations ?? 0),
    contracts: { vvv: contracts.vvv, staking: contracts.staking, diem: contracts.diem, airdrop: contracts.airdrop ?? null },
  };
}

/** One wallet's view of the contracts and its transactions. */
export class ChainWallet {
  #viem;
  #chain;
  /** The client that reads (and, for a key in the page, sends). */
  #reader;
  /** The client that sends: the reader, or the browser wallet's. */
  #writer;
  #external;
  #account;
  #contracts;
  #abi;

  /**
   * `viem` is the chain library (transactions.js in web/lib); `config` is chainConfig()'s;
   * `account` is viem's local account for a key in the page (`config` then needs an rpcUrl),
   * or, with `external` (an EIP-1193 provider), the browser wallet's address.
   */
  constructor(viem, config, account, external = null) {
    this.#chain = viem.defineChain({
      id: config.chainId,
      name: `chain ${config.chainId}`,
      nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
      rpcUrls: { default: { http: config.rpcUrl ? [config.rpcUrl] : [] } },
    });
    this.#viem = viem;
    const chain = this.#chain;
    const rpc = config.rpcUrl ? viem.http(config.rpcUrl, { retryCount: 1, timeout: 30_000 }) : null;
    if (external) {
      this.#writer = viem.createClient({ account, chain, transport: viem.custom(external) });
      this.#reader = rpc ? viem.createClient({ chain, transport: rpc }) : this.#writer;
    } else {
      this.#reader = viem.createClient({ account, chain, transport: rpc });
      this.#writer = this.#reader;
    }
    this.#external = external;
    this.#account = typeof account === "string" ? { address: account } : account;
    this.#contracts = config.contracts;
    this.#abi = { staking: viem.parseAbi(STAKING_ABI), diem: viem.parseAbi(DIEM_ABI), vvv: viem.parseAbi(VVV_ABI), airdrop: viem.parseAbi(AIRDROP_ABI) };
  }

  #read(contract, functionName, args = []) {
    return this.#viem.readContract(this.#reader, { address: this.#contracts[contract], abi: this.#abi[contract], functionName, args });
  }

  /**
   * The account as the contracts hold it, with the ledger account view's field names (decimal
   * strings of base units; times in seconds, null when nothing is cooling), and the chain's
   * head: {account, block, now, parameters}.
   */
  async read() {
    await this.#readingThroughWallet();
    const me = this.#account.address;
    const [block, vvv, position, rewards, diem, stakedDiem, cooldown, diemCooldown, minimum] = await Promise.all([
      this.#viem.getBlock(this.#reader, { blockTag: "latest" }),
      this.#read("vvv", "balanceOf", [me]),
      this.#read("staking", "positions", [me]),
      this.#read("staking", "pendingRewards", [me]),
      this.#read("diem", "balanceOf", [me]),
      this.#read("diem", "stakes", [me]),
      this.#read("staking", "unstakeCooldownSeconds"),
      this.#read("diem", "unstakeCooldownSeconds"),
      this.#read("diem", "minimumSpendableStaked"),
    ]);
    const [staked, cooling, locked, , , , , unlockAt] = position;
    const [diemStaked, diemCooling, diemUnlockAt] = stakedDiem;
    return {
      block: block.number,
      now: Number(block.timestamp),
      account: {
        vvv_units: vvv.toString(),
        staked_svvv_units: staked.toString(),
        cooling_svvv_units: cooling.toString(),
        locked_svvv_units: locked.toString(),
        pending_rewards_units: rewards.toString(),
        svvv_unlock_at: cooling > 0n ? Number(unlockAt) : null,
        diem_units: diem.toString(),
        staked_diem_units: diemStaked.toString(),
        cooling_diem_units: diemCooling.toString(),
        diem_unlock_at: diemCooling > 0n ? Number(diemUnlockAt) : null,
      },
      parameters: {
        unstake_cooldown_seconds: Number(cooldown),
        diem_unstake_cooldown_seconds: Number(diemCooldown),
        minimum_spendable_staked_diem_units: minimum.toString(),
      },
    };
  }

  /** Whether this account has claimed its airdrop (false where the deployment names no airdrop). */
  async airdropClaimed() {
    if (!this.#contracts.airdrop) return false;
    await this.#readingThroughWallet();
    return this.#read("airdrop", "claimed", [this.#account.address]);
  }

  /** What `svvv` base units buy now, as the ledger's quote: {diem_units, svvv_units, mint_rate_svvv_units_per_diem}. */
  async quote(svvv) {
    await this.#readingThroughWallet();
    const [[ok, diem, locked], supply] = await Promise.all([this.#read("staking", "previewMint", [svvv]), this.#read("staking", "diemSupply")]);
    if (!ok) throw new ChainRefusal("That amount is too large for the mint curve.", "overflow");
    const rate = await this.#read("staking", "rateAt", [supply]);
    return { diem_units: diem.toString(), svvv_units: locked.toString(), mint_rate_svvv_units_per_diem: rate.toString() };
  }

  /**
   * Sends `operation` as a transaction and waits for it to be mined: {outcome, hash, block}.
   * `onStep(text)` hears what is happening (an approval first, for a stake).
   */
  async execute(operation, onStep = () => {}) {
    const spec = OPERATIONS[operation.type];
    if (!spec) throw new Error(`the page has no transaction for ${operation.type}`);
    const args = spec.args(operation);
    if (operation.type === "stake") {
      // Staking takes the VVV with transferFrom: approve exactly this amount first, if needed
      // (and never for more VVV than the account holds: that approval would be gas for nothing).
      const held = await this.#read("vvv", "balanceOf", [this.#account.address]);
      if (held < args[0]) throw new ChainRefusal("The chain refused it: InsufficientVvv.", "insufficient_vvv");
      const allowed = await this.#read("vvv", "allowance", [this.#account.address, this.#contracts.staking]);
      if (allowed < args[0]) {
        onStep("Approving the staking contract to take the VVV…");
        await this.#send("vvv", "approve", [this.#contracts.staking, args[0]]);
      }
    }
    onStep("Sending the transaction…");
    const receipt = await this.#send(spec.contract, spec.call, args);
    const [event] = this.#viem.parseEventLogs({ abi: this.#abi[spec.contract], logs: receipt.logs, eventName: spec.event });
    if (!event) throw new Error(`The transaction ${receipt.transactionHash} was mined, but without its ${spec.event} event.`);
    const outcome = Object.fromEntries(Object.entries(spec.outcome(event.args)).map(([name, value]) => [name, typeof value === "bigint" ? value.toString() : value]));
    return { outcome, hash: receipt.transactionHash, block: receipt.blockNumber };
  }

  /** Simulates the call (a refusal sends nothing), then signs and sends it, and waits for its receipt. */
  async #send(contract, functionName, args) {
    const account = this.#external ? this.#account.address : this.#account;
    const call = { address: this.#contracts[contract], abi: this.#abi[contract], functionName, args, account };
    let estimate;
    await this.#readingThroughWallet();
    try {
      await this.#viem.simulateContract(this.#reader, call);
      estimate = await this.#viem.estimateContractGas(this.#reader, call);
    } catch (error) {
      throw this.#refusal(error);
    }
    if (this.#external) await this.#onChain();
    const hash = await this.#viem.writeContract(this.#writer, { ...call, gas: gasLimit(estimate) });
    const receipt = await this.#viem.waitForTransactionReceipt(this.#reader, { hash, timeout: RECEIPT_TIMEOUT_MS });
    if (receipt.status !== "success") throw new Error(`The transaction ${hash} reverted in block ${receipt.blockNumber}.`);
    return receipt;
  }

  /** Asks the browser wallet onto this chain (adding it where the wallet does not know it) before it sends. */
  async #onChain() {
    const { getChainId, switchChain, addChain } = this.#viem;
    const id = this.#chain.id;
    if ((await getChainId(this.#writer)) === id) return;
    try {
      await switchChain(this.#writer, { id });
    } catch (error) {
      // 4902: the wallet does not know the chain; with the public RPC URL it can be added.
      const unknown = error?.code === 4902 || error?.cause?.code === 4902;
      if (!unknown || this.#chain.rpcUrls.default.http.length === 0) {
        throw new Error(`Switch the browser wallet to chain ${id} (it is on another), then try again.`);
      }
      await addChain(this.#writer, { chain: this.#chain });
      // Some wallets switch to a chain they add; the others are asked again.
      if ((await getChainId(this.#writer)) !== id) await switchChain(this.#writer, { id });
    }
  }

  /** Where the page reads through the browser wallet (no public RPC URL), the wallet must be on this chain first. */
  async #readingThroughWallet() {
    if (this.#external && this.#reader === this.#writer) await this.#onChain();
  }

  /** A simulation's failure in words, with the contract's error as the ledger's rejection name. */
  #refusal(error) {
    const { BaseError, ContractFunctionRevertedError } = this.#viem;
    const reverted = error instanceof BaseError ? error.walk((cause) => cause instanceof ContractFunctionRevertedError) : null;
    const name = reverted?.data?.errorName;
    if (!name) return new Error(`The chain did not take the transaction: ${error?.shortMessage ?? error?.message ?? error}`);
    const fields = reverted.data.args?.length ? ` (${reverted.data.args.map(String).join(", ")})` : "";
    return new ChainRefusal(`The chain refused it: ${name}${fields}.`, snake(name));
  }
}
