// The wallet page: an account's key, balances, cooldowns and allowance, and the ledger
// operations it signs (stake, unstake, claim, DIEM mint with a live quote and slippage guard,
// burn, DIEM stake and unstake), and API keys minted with a signature.
//
// The private key is made (or imported) and used in this page only: it is kept in IndexedDB
// encrypted like the chats (store.js), or in memory only where that is not possible or not
// wanted, and it is never put in a request. Signing follows the CLI (crates/gondola's
// economy.rs) exactly: the EIP-712 domain and the clock come from GET /ledger/status, the
// nonce from GET /ledger/accounts/{address}, the deadline is the gateway's `now` plus ten
// minutes, and the gateway receives the operation, nonce, deadline and signature.
// The signing library (viem, /signing.js) is loaded the first time the page opens.
//
// A browser wallet (EIP-1193, found by EIP-6963's announcements or at window.ethereum) can be
// the account instead: it signs (eth_signTypedData_v4, personal_sign) and sends transactions
// itself, and the page never holds its key.
//
// In chain mode (the gateway's /app-config.json names a chain), VVV, sVVV and DIEM live in the
// contracts: the page reads the balances from the chain and sends each operation as a
// transaction the wallet's key signs (chain.js), straight to the chain's public JSON-RPC
// endpoint. The gateway still says what the account may spend today (it follows the chain) and
// mints API keys against the stake it sees there.

import { BrowserWallets, requestAccount, stillShares, walletAccount } from "/browser-wallets.js";
import { ChainWallet, chainConfig } from "/chain.js";
import { exactDecimal, formatAmount, formatCountdown, formatUsd, minimumAfterSlippage, parseAmount, parseSlippagePercent, units } from "/amounts.js";

const $ = (id) => document.getElementById(id);
const API = "/api/v1";
/** How long a signature stays valid, as the CLI's DEADLINE_SECONDS. */
const DEADLINE_SECONDS = 10 * 60;
/** Quiet time after the last keystroke before the mint quote is asked for. */
const QUOTE_DEBOUNCE_MS = 300;
const PRIVATE_KEY = /^(0x)?[0-9a-fA-F]{64}$/;

/**
 * The EIP-712 struct of each operation the page signs, as in crates/wallet/src/typed.rs: its
 * name, and its fields before `nonce` and `deadline` as [name, type, JSON field].
 */
const TYPED = {
  stake: ["Stake", [["vvv", "uint256", "vvv_units"]]],
  initiate_unstake: ["InitiateUnstake", [["svvv", "uint256", "svvv_units"]]],
  finalize_unstake: ["FinalizeUnstake", []],
  claim_rewards: ["ClaimRewards", []],
  claim_and_stake_rewards: ["ClaimAndStakeRewards", []],
  mint_diem: [
    "MintDiem",
    [
      ["svvvToLock", "uint256", "svvv_to_lock_units"],
      ["minDiemOut", "uint256", "min_diem_out_units"],
    ],
  ],
  burn_diem: ["BurnDiem", [["diem", "uint256", "diem_units"]]],
  stake_diem: ["StakeDiem", [["diem", "uint256", "diem_units"]]],
  initiate_diem_unstake: ["InitiateDiemUnstake", [["diem", "uint256", "diem_units"]]],
  finalize_diem_unstake: ["FinalizeDiemUnstake", []],
};

/** The typed data viem signs for `operation` (the JSON `Operation`) with `nonce` and `deadline`. */
export function typedData(domain, operation, nonce, deadline) {
  const entry = TYPED[operation.type];
  if (!entry) throw new Error(`the page does not sign ${operation.type} operations`);
  const [primaryType, fields] = entry;
  const message = {};
  for (const [name, type, field] of fields) message[name] = type === "uint256" ? BigInt(operation[field]) : operation[field];
  message.nonce = BigInt(nonce);
  message.deadline = BigInt(deadline);
  const types = {
    [primaryType]: [
      ...fields.map(([name, type]) => ({ name, type })),
      { name: "nonce", type: "uint64" },
      { name: "deadline", type: "uint64" },
    ],
  };
  return { domain: { name: domain.name, version: domain.version, salt: domain.salt }, types, primaryType, message };
}

/** What a ledger rejection means, in words (by its name in the gateway's message). */
const REJECTIONS = {
  zero_amount: "The amount must be more than zero.",
  insufficient_vvv: "This account does not have that much VVV.",
  insufficient_staked_vvv: "This account does not have that much free staked sVVV (sVVV that is cooling down or locked behind DIEM does not count).",
  insufficient_diem: "This account does not have that much DIEM.",
  insufficient_staked_diem: "This account does not have that much staked DIEM.",
  no_rewards: "There are no rewards to claim yet.",
  nothing_cooling_down: "No sVVV is cooling down.",
  cooldown_not_elapsed: "The cooldown has not ended yet.",
  no_diem_cooling_down: "No DIEM is cooling down.",
  diem_cooldown_not_elapsed: "The DIEM cooldown has not ended yet.",
  burn_exceeds_minted_diem: "Only DIEM this account minted (and has not burned) can be burned.",
  mints_no_diem: "That little sVVV does not buy any DIEM at the current rate.",
  slippage_exceeded: "The mint curve now gives fewer DIEM than your minimum.",
  overflow: "That amount is too large.",
  no_airdrop_allocation: "This address has no airdrop allocation left to claim.",
  airdrop_window_closed: "The airdrop's claim window has closed.",
};

/** A failed call to the gateway, with its message in words. */
class GatewayError extends Error {
  constructor(message, { status = 0, rejection = null } = {}) {
    super(message);
    this.status = status;
    this.rejection = rejection;
  }
}

async function call(path, { method = "GET", body = undefined, apiKey = "" } = {}) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  let response;
  try {
    response = await fetch(`${API}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  } catch {
    throw new GatewayError(`Can't reach the gateway at ${location.origin}. Check that it is running, then try again.`);
  }
  let json = null;
  try {
    json = await response.json();
  } catch {
    // A proxy's error page, say: the status alone says what happened.
  }
  if (response.ok) return json;
  const said = typeof json?.error === "string" ? json.error : (json?.error?.message ?? "");
  const named = /refused the operation: ([a-z_]+) \(rejection \d+\)/.exec(said);
  const rejection = named ? named[1] : null;
  const words = rejection && REJECTIONS[rejection] ? `${REJECTIONS[rejection]} ` : "";
  const detail = said ? `The gateway said: “${said}”` : `The gateway answered ${response.status}.`;
  throw new GatewayError(`${words}${detail}`, { status: response.status, rejection });
}

/** Puts `value` base units into `node` for reading, with the exact amount in `data-units` and its title. */
function showUnits(node, value, suffix = "") {
  node.textContent = `${formatAmount(value)}${suffix}`;
  node.dataset.units = value.toString();
  node.title = `${exactDecimal(value)}${suffix}`;
}

function setResult(node, state, text) {
  node.dataset.state = state;
  node.dataset.rejection = "";
  node.textContent = text;
  node.classList.toggle("op-error", state === "error");
}

function shortDate(seconds) {
  return new Date(seconds * 1000).toLocaleString(undefined, { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
}

/**
 * The wallet page. `confirm(title, detail, ok)` asks the person (the app's dialog);
 * `useApiKey(key, address)` makes a minted key the chat's; `apiKeyFor(address)` is the chat's
 * key if it was minted for `address` (for today's usage), or "".
 */
export class WalletPage {
  #store;
  #confirm;
  #useApiKey;
  #apiKeyFor;
  #signing = null;
  /** {account, privateKey, remembered} or null. */
  #wallet = null;
  #status = null;
  #balances = null;
  /** The gateway's clock less this browser's, in seconds (countdowns use the gateway's). */
  #clockOffset = 0;
  #busy = false;
  #opened = false;
  #visible = false;
  #ticker = 0;
  /** The quote on screen: {svvv (the budget typed), diem, locked (what that DIEM costs), rate} as BigInts, or null. */
  #quote = null;
  #quoteTimer = 0;
  #quoteSequence = 0;
  #mintedKey = "";
  /** chain.js's chainConfig() of /app-config.json: null outside chain mode. */
  #chainConfig = null;
  /** The wallet's ChainWallet, in chain mode with a public RPC URL. */
  #chain = null;
  /** /transactions.js (viem's client and actions), loaded the first time it is needed. */
  #transactions = null;
  /** In chain mode, the account's airdrop allocation from GET /chain/airdrop ({address, allocation}; allocation null where none). */
  #airdrop = null;
  /** The browser wallets this browser has (browser-wallets.js). */
  #extensions;

  constructor({ store, confirm, useApiKey, apiKeyFor }) {
    this.#store = store;
    this.#confirm = confirm;
    this.#useApiKey = useApiKey;
    this.#apiKeyFor = apiKeyFor;
    this.#wire();
    this.#extensions = new BrowserWallets(() => this.#renderExtensions());
    this.#renderExtensions();
  }

  /** Chain mode, from the gateway's /app-config.json (see api.js's readAppConfig). */
  useChain(appConfig) {
    this.#chainConfig = chainConfig(appConfig);
  }

  /** The chain library (viem's client and actions), loaded the first time. */
  async #loadTransactions() {
    if (!this.#transactions) {
      try {
        this.#transactions = await import("/transactions.js");
      } catch (error) {
        this.#transactions = { available: false, missing: `The chain library did not load (${error?.message ?? error}). Reload the page.` };
      }
    }
    return this.#transactions;
  }

  /**
   * The wallet's ChainWallet in chain mode: for a key in the page where the chain has a public
   * RPC URL, and for a browser wallet always (it reaches the chain itself). Where the chain
   * library cannot load, the page says so.
   */
  async #connectChain() {
    const config = this.#chainConfig;
    const wallet = this.#wallet;
    this.#chain = null;
    if (!config || !wallet || (!config.rpcUrl && !wallet.external)) return;
    const lib = await this.#loadTransactions();
    if (!lib.available) {
      this.#fail(lib.missing);
      return;
    }
    this.#chain = wallet.external
      ? new ChainWallet(lib, config, wallet.account.address, wallet.external.provider)
      : new ChainWallet(lib, config, wallet.account);
  }

  // ------------------------------------------------------------ browser wallets

  #renderExtensions() {
    // Wallets announce themselves while BrowserWallets is being made; it is drawn once made.
    if (!this.#extensions) return;
    const offered = this.#extensions.offered();
    $("wallet-extension-list").replaceChildren(
      ...offered.map((entry) => {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "button";
        button.textContent = `Connect ${entry.name}`;
        button.addEventListener("click", () => this.#connectExtension(entry));
        return button;
      }),
    );
    $("wallet-extensions").hidden = offered.length === 0;
  }

  /**
   * Makes the browser wallet's first account this page's account (the wallet asks its owner
   * first), and remembers the connection (not a key: the wallet's name and the address) where
   * the person chose to be remembered.
   */
  async #connectExtension(entry) {
    $("wallet-key-error").textContent = "";
    const lib = await this.#loadTransactions();
    if (!lib.available) {
      $("wallet-key-error").textContent = lib.missing;
      return;
    }
    try {
      const address = await requestAccount(lib, entry);
      const remember = Boolean(this.#store) && $("wallet-remember").checked;
      this.#adoptExternal(lib, entry, address, remember);
      if (remember) {
        await this.#store.saveWallet({ external: { rdns: entry.rdns, name: entry.name }, address: this.#wallet.account.address, created_at: Date.now() });
      }
      await this.#connectChain();
      this.#render();
      await this.refresh();
    } catch (error) {
      $("wallet-key-error").textContent = `The browser wallet did not connect: ${error?.shortMessage ?? error?.message ?? error}`;
    }
  }

  /**
   * A browser wallet connected before (`stored`): taken up again when it is in this browser and
   * still shares that account without asking (eth_accounts); otherwise the page offers to
   * connect, as at first.
   */
  async #reconnect(stored) {
    const entry = this.#extensions.find(stored.external.rdns);
    if (!entry || !(await stillShares(entry, stored.address))) return;
    const lib = await this.#loadTransactions();
    if (lib.available) this.#adoptExternal(lib, entry, stored.address, true);
  }

  /** Makes `address` in the browser wallet `entry` this page's account. */
  #adoptExternal(lib, entry, address, remembered) {
    const account = walletAccount(lib, entry, address);
    if (!entry.watched) {
      entry.watched = true;
      // Another account chosen in the wallet becomes this page's; none left, none here either.
      entry.provider.on?.("accountsChanged", (accounts) => {
        if (this.#wallet?.external !== entry) return;
        if (Array.isArray(accounts) && accounts.length > 0) this.#connectExtension(entry);
        else {
          this.#forgetInMemory();
          this.#render();
        }
      });
    }
    this.#wallet = { account, privateKey: null, remembered, external: entry };
    this.#mintedKey = "";
  }

  /** The page is on screen: load the library and the key the first time, then refresh. */
  async show() {
    this.#visible = true;
    if (!this.#opened) {
      this.#opened = true;
      await this.#load();
    } else if (this.#wallet) {
      await this.refresh();
    }
    this.#startTicker();
  }

  hide() {
    this.#visible = false;
    clearInterval(this.#ticker);
    this.#ticker = 0;
  }

  /** After "Delete everything": the key is gone from storage; forget it here too. */
  async reset(store) {
    this.#store = store;
    this.#forgetInMemory();
    if (this.#opened) this.#render();
  }

  // ------------------------------------------------------------ loading

  async #load() {
    const view = $("wallet-view");
    view.dataset.state = "loading";
    try {
      this.#signing = await import("/signing.js");
    } catch (error) {
      this.#signing = { available: false, missing: `The signing library did not load (${error?.message ?? error}). Reload the page.` };
    }
    if (!this.#signing.available) {
      $("wallet-unavailable").textContent = this.#signing.missing;
      $("wallet-unavailable").hidden = false;
    } else if (this.#store) {
      try {
        const stored = await this.#store.loadWallet();
        if (stored?.external) await this.#reconnect(stored);
        else if (stored) this.#wallet = { account: this.#signing.privateKeyToAccount(stored.privateKey), privateKey: stored.privateKey, remembered: true };
      } catch (error) {
        this.#fail(`The stored wallet key could not be read (${error?.message ?? error}).`);
      }
    }
    await this.#connectChain();
    this.#render();
    if (this.#wallet) await this.refresh();
    view.dataset.state = "ready";
  }

  #fail(text) {
    $("wallet-failure").textContent = text;
    $("wallet-failure").hidden = !text;
  }

  // ------------------------------------------------------------ the key

  async #adopt(privateKey, source) {
    const account = this.#signing.privateKeyToAccount(privateKey);
    const remember = Boolean(this.#store) && $("wallet-remember").checked;
    if (remember) {
      await this.#store.saveWallet({ privateKey, address: account.address, created_at: Date.now(), source });
    }
    this.#wallet = { account, privateKey, remembered: remember };
    this.#mintedKey = "";
    await this.#connectChain();
    this.#render();
    await this.refresh();
  }

  async #generate() {
    $("wallet-key-error").textContent = "";
    try {
      await this.#adopt(this.#signing.generatePrivateKey(), "generated");
    } catch (error) {
      $("wallet-key-error").textContent = `Could not create a key: ${error?.message ?? error}`;
    }
  }

  async #import(event) {
    event.preventDefault();
    const input = $("wallet-import");
    const text = input.value.trim();
    $("wallet-key-error").textContent = "";
    if (!PRIVATE_KEY.test(text)) {
      $("wallet-key-error").textContent = "A private key is 64 hex digits (0-9, a-f), with or without 0x in front.";
      return;
    }
    const privateKey = `0x${text.replace(/^0x/, "").toLowerCase()}`;
    try {
      this.#signing.privateKeyToAccount(privateKey);
    } catch {
      $("wallet-key-error").textContent = "Those 64 hex digits are not a valid secp256k1 private key.";
      return;
    }
    input.value = "";
    try {
      await this.#adopt(privateKey, "imported");
    } catch (error) {
      $("wallet-key-error").textContent = `Could not keep the key: ${error?.message ?? error}`;
    }
  }

  #forgetInMemory() {
    this.#wallet = null;
    this.#chain = null;
    this.#airdrop = null;
    this.#balances = null;
    this.#quote = null;
    this.#mintedKey = "";
    $("wallet-secret-text").textContent = "";
  }

  async #forget() {
    if (this.#wallet?.external) {
      // The key stays in the browser wallet: this page only lets go of the account.
      if (this.#wallet.remembered && this.#store) await this.#store.deleteWallet();
      this.#forgetInMemory();
      this.#render();
      return;
    }
    const sure = await this.#confirm(
      "Forget this key?",
      "The key will be deleted from this browser. Without a copy of it (Show private key), the account and everything in it cannot be used again.",
      "Forget the key",
    );
    if (!sure) return;
    if (this.#wallet?.remembered && this.#store) await this.#store.deleteWallet();
    this.#forgetInMemory();
    this.#render();
  }

  #toggleSecret() {
    const secret = $("wallet-secret");
    const show = secret.hidden;
    // The key goes into the page only while it is asked for.
    $("wallet-secret-text").textContent = show ? this.#wallet.privateKey : "";
    secret.hidden = !show;
    $("wallet-export").textContent = show ? "Hide private key" : "Show private key";
    $("wallet-export").setAttribute("aria-expanded", String(show));
  }

  // ------------------------------------------------------------ state from the gateway

  #now() {
    return Date.now() / 1000 + this.#clockOffset;
  }

  /** Reads the ledger's status and this account, and redraws. */
  async refresh() {
    if (!this.#wallet) return;
    const balances = $("wallet-balances");
    balances.dataset.state = "loading";
    $("wallet-refresh").disabled = true;
    const address = this.#wallet.account.address;
    try {
      const chain = this.#chain;
      const [status, account, onChain] = await Promise.all([
        call("/ledger/status"),
        call(`/ledger/accounts/${address}`),
        chain?.read().catch((error) => {
          const why = error?.shortMessage ?? error?.message ?? String(error);
          // Through a browser wallet, its own words say it (on another chain, say).
          throw new Error(this.#chainConfig.rpcUrl ? `the chain at ${this.#chainConfig.rpcUrl} did not answer (${why})` : why);
        }),
      ]);
      if (this.#wallet?.account.address !== address) return;
      if (onChain) {
        // The tokens are the chain's; what may be spent today is still the gateway's to say.
        this.#clockOffset = onChain.now - Date.now() / 1000;
        this.#status = { ...status, parameters: { ...status.parameters, ...onChain.parameters } };
        this.#balances = { ...account, ...onChain.account };
      } else {
        this.#clockOffset = status.now - Date.now() / 1000;
        this.#status = status;
        this.#balances = account;
      }
      this.#renderChain(onChain);
      await this.#renderAirdrop(address);
      this.#fail(this.#chainConfig?.rpcUrl && !this.#chain ? (this.#transactions?.missing ?? "") : "");
      const apiKey = this.#apiKeyFor(address);
      let today = null;
      if (apiKey) {
        try {
          const history = await call("/billing/usage-days", { apiKey });
          today = (history?.data ?? []).find((day) => day.day === status.today) ?? { requests: 0, promptTokens: 0, completionTokens: 0 };
        } catch {
          // The key may have been deleted since; the ledger's figures still stand.
        }
      }
      this.#renderBalances(today);
    } catch (error) {
      this.#fail(`Could not read the account: ${error.message}`);
    } finally {
      balances.dataset.state = this.#balances ? "ready" : "empty";
      $("wallet-refresh").disabled = false;
    }
  }

  // ------------------------------------------------------------ drawing

  #render() {
    const ready = Boolean(this.#signing?.available);
    const has = Boolean(this.#wallet);
    $("wallet-none").hidden = !ready || has;
    $("wallet-some").hidden = !has;
    $("wallet-refresh").hidden = !has;
    for (const id of ["balances-card", "api-key-card"]) $(id).hidden = !has;
    // On a chain the page cannot reach, it has no tokens to show or move: the CLI does that.
    const tokens = has && (!this.#chainConfig || Boolean(this.#chain));
    for (const id of ["stake-card", "diem-card"]) $(id).hidden = !tokens;
    this.#renderChain(null);
    const canStore = Boolean(this.#store);
    $("wallet-remember").disabled = !canStore;
    if (!canStore) {
      $("wallet-remember").checked = false;
      $("wallet-remember-hint").textContent = "(not possible here: this browser context offers no encrypted storage, so the key lasts until this tab closes)";
    }
    $("wallet-secret").hidden = true;
    $("wallet-secret-text").textContent = "";
    $("wallet-export").textContent = "Show private key";
    $("wallet-export").setAttribute("aria-expanded", "false");
    $("minted-key").hidden = !this.#mintedKey;
    $("minted-key-text").textContent = this.#mintedKey;
    if (!has) {
      $("wallet-balances").dataset.state = "empty";
      return;
    }
    $("wallet-address").textContent = this.#wallet.account.address;
    const external = this.#wallet.external;
    $("wallet-export").hidden = Boolean(external);
    $("wallet-forget").textContent = external ? "Disconnect" : "Forget this key";
    $("wallet-storage").textContent = external
      ? `The key stays in ${external.name}: it asks you to approve each signature and transaction, and this page never sees the key.${this.#wallet.remembered ? " The page reconnects to it when it opens." : ""}`
      : this.#wallet.remembered
        ? "The key is stored in this browser only, encrypted (AES-GCM, under a key page script cannot read)."
        : "The key is kept in memory only: it is forgotten when this tab closes. Show it and keep a copy if you want this account later.";
  }

  /** The chain line: where the tokens are, and how much of the stake the gateway counts yet. */
  #renderChain(onChain) {
    const line = $("wallet-chain");
    const config = this.#chainConfig;
    line.hidden = !config || !this.#wallet;
    if (line.hidden) return;
    if (!this.#chain) {
      line.textContent = config.rpcUrl
        ? `This gateway follows VVV and DIEM on chain ${config.chainId}, but the page cannot reach the chain.`
        : `This gateway follows VVV and DIEM on chain ${config.chainId} (staking contract ${config.contracts.staking}), but publishes no RPC URL for browsers, ` +
          "so a key made in this page cannot read or send transactions there. A browser wallet on that chain can (Forget this key, then connect it), and so can the CLI: gondola chain stake, gondola chain diem mint and stake.";
      return;
    }
    if (!onChain) return;
    const seen = this.#balances?.chain;
    const depth = `${config.confirmations} block${config.confirmations === 1 ? "" : "s"} deep`;
    const counted = !seen
      ? ""
      : !seen.followed
        ? ` The gateway counts this account's stake from its first API key on: mint one below once some sVVV is staked ${depth}.`
        : ` The gateway counts a stake ${depth}: at block ${seen.head_block} it counts ${formatAmount(units(seen.svvv_units))} sVVV and ${formatUsd(units(seen.diem_allowance_usd_units_per_day))} a day of staked DIEM.`;
    const external = this.#wallet.external;
    const sent = external ? `transactions signed and sent by ${external.name}` : `transactions signed here and sent to ${config.rpcUrl}`;
    line.textContent = `On chain ${config.chainId}, block ${onChain.block}: balances read from the contracts, ${sent}.${counted}`;
    line.dataset.block = String(onChain.block);
  }

  #renderBalances(today) {
    const account = this.#balances;
    const status = this.#status;
    if (!account || !status) return;
    showUnits($("balance-vvv"), units(account.vvv_units));
    showUnits($("balance-svvv"), units(account.staked_svvv_units));
    showUnits($("balance-svvv-cooling"), units(account.cooling_svvv_units));
    showUnits($("balance-svvv-locked"), units(account.locked_svvv_units));
    showUnits($("balance-rewards"), units(account.pending_rewards_units));
    showUnits($("balance-diem"), units(account.diem_units));
    showUnits($("balance-diem-staked"), units(account.staked_diem_units));
    showUnits($("balance-diem-cooling"), units(account.cooling_diem_units));
    $("balance-usd").textContent = formatUsd(units(account.usd_credit_units));
    $("balance-bundled").textContent = formatUsd(units(account.bundled_credit_units));

    const total = units(account.allowance.total_usd_units_per_day);
    const left = units(account.allowance.remaining_usd_units);
    const spent = total > left ? total - left : 0n;
    const todayLine = $("wallet-today");
    todayLine.dataset.totalUnits = total.toString();
    todayLine.dataset.remainingUnits = left.toString();
    todayLine.textContent =
      total > 0n
        ? `API allowance: ${formatUsd(left)} left of ${formatUsd(total)} today (${formatUsd(spent)} spent).`
        : "No API allowance today: stake DIEM (at least the minimum) or sVVV for one.";
    $("wallet-usage").textContent = today
      ? `Today with this page's API key: ${today.requests} request${today.requests === 1 ? "" : "s"}, ${today.promptTokens + today.completionTokens} tokens (settled usage; the last second may be missing).`
      : "";

    const parameters = status.parameters ?? {};
    const days = (seconds) => {
      const value = Number(seconds) / 86_400;
      return `${value} day${value === 1 ? "" : "s"}`;
    };
    $("unstake-cooldown-hint").textContent = `(cools down for ${days(parameters.unstake_cooldown_seconds)}, then you withdraw it as VVV)`;
    $("diem-cooldown-hint").textContent = `(cools down for ${days(parameters.diem_unstake_cooldown_seconds)})`;
    const minimum = parameters.minimum_spendable_staked_diem_units;
    $("diem-minimum-hint").textContent = minimum ? `(an allowance needs at least ${formatAmount(units(minimum))} staked)` : "";
    const rewards = units(account.pending_rewards_units);
    $("claim-rewards").textContent = rewards > 0n ? `Claim ${formatAmount(rewards)} VVV` : "Claim rewards";
    this.#tick();
  }

  /** Redraws what the clock changes: cooldown countdowns and the finalize buttons. */
  #tick() {
    const account = this.#balances;
    if (!account) return;
    const now = this.#now();
    const cooldown = (amount, unlockAt, countdown, button, hint, what) => {
      const cooling = units(amount) > 0n;
      const left = cooling && unlockAt !== null ? unlockAt - now : 0;
      const node = $(countdown);
      if (!cooling) {
        node.textContent = "";
        delete node.dataset.unlockAt;
        $(hint).textContent = `Nothing ${what} is cooling down.`;
      } else if (left > 0) {
        node.textContent = `unlocks in ${formatCountdown(left)}`;
        node.dataset.unlockAt = String(unlockAt);
        $(hint).textContent = `Ready ${shortDate(unlockAt)}.`;
      } else {
        node.textContent = "ready to withdraw";
        node.dataset.unlockAt = String(unlockAt);
        $(hint).textContent = "The cooldown is over.";
      }
      $(button).disabled = this.#busy || !cooling || left > 0;
    };
    cooldown(account.cooling_svvv_units, account.svvv_unlock_at, "svvv-countdown", "finalize-unstake", "finalize-unstake-hint", "sVVV");
    cooldown(account.cooling_diem_units, account.diem_unlock_at, "diem-countdown", "finalize-diem", "finalize-diem-hint", "DIEM");
  }

  #startTicker() {
    clearInterval(this.#ticker);
    this.#ticker = setInterval(() => {
      if (this.#visible) this.#tick();
    }, 1000);
  }

  #setBusy(busy) {
    this.#busy = busy;
    $("wallet-view").setAttribute("aria-busy", String(busy));
    for (const node of document.querySelectorAll("#wallet-view .op-form button")) {
      if (node.id !== "finalize-unstake" && node.id !== "finalize-diem" && node.id !== "minted-key-use" && node.id !== "minted-key-copy") node.disabled = busy;
    }
    this.#tick();
  }

  // ------------------------------------------------------------ operations

  /**
   * Signs `operation` as the CLI does and submits it; resolves with {outcome, done} (`done`
   * says where it was recorded). In chain mode it is a transaction on the chain instead.
   */
  async #submit(operation, onStep) {
    if (this.#chain) {
      try {
        const { outcome, hash, block } = await this.#chain.execute(operation, onStep);
        return { outcome, done: `transaction ${hash.slice(0, 10)}…${hash.slice(-4)} in block ${block}`, transaction: hash };
      } catch (error) {
        const words = error.rejection && REJECTIONS[error.rejection] ? `${REJECTIONS[error.rejection]} ` : "";
        throw new GatewayError(`${words}${error.message}`, { rejection: error.rejection ?? null });
      }
    }
    const receipt = await this.#signAndPost(operation);
    return { outcome: receipt.outcome, done: `ledger record ${receipt.sequence}`, transaction: "" };
  }

  /** Signs `operation` as the CLI does and posts it to the gateway's ledger; resolves with the receipt. */
  async #signAndPost(operation) {
    const { account } = this.#wallet;
    const [status, ledgerAccount] = await Promise.all([call("/ledger/status"), call(`/ledger/accounts/${account.address}`)]);
    const domain = status.eip712_domain;
    if (!domain?.salt) throw new GatewayError("The gateway's ledger status has no EIP-712 domain.");
    const deadline = status.now + DEADLINE_SECONDS;
    const signature = await account.signTypedData(typedData(domain, operation, ledgerAccount.nonce, deadline));
    return call("/ledger/operations", {
      method: "POST",
      body: { operation, signer: account.address, nonce: ledgerAccount.nonce, deadline, scheme: "eip712", signature },
    });
  }

  /**
   * Runs one operation for a form: `build()` makes the operation (throwing in words when the
   * input is wrong), `describe(outcome)` says what happened. The balances are read again before
   * the result is shown, so what the page shows next to it is the ledger's state after it.
   */
  async #run(resultId, build, describe, onRefused = null) {
    const result = $(resultId);
    if (this.#busy || !this.#wallet) return;
    let operation;
    try {
      operation = build();
    } catch (error) {
      setResult(result, "error", error.message);
      return;
    }
    this.#setBusy(true);
    setResult(result, "pending", "Signing and sending…");
    let outcome = null;
    let done = "";
    let failure = null;
    result.dataset.transaction = "";
    try {
      const submitted = await this.#submit(operation, (step) => setResult(result, "pending", step));
      outcome = submitted.outcome;
      done = submitted.done;
      result.dataset.transaction = submitted.transaction;
    } catch (error) {
      failure = error;
    }
    await this.refresh();
    this.#setBusy(false);
    if (failure) {
      setResult(result, "error", onRefused?.(failure) ?? failure.message);
      result.dataset.rejection = failure.rejection ?? "";
    } else {
      setResult(result, "done", `${describe(outcome)} (${done})`);
    }
    return outcome;
  }

  #amount(id, what) {
    try {
      const value = parseAmount($(id).value);
      if (value === 0n) throw new Error("Enter an amount more than zero.");
      return value;
    } catch (error) {
      throw new Error(`${what}: ${error.message}`);
    }
  }

  #outcomeUnits(outcome, field) {
    return formatAmount(units(outcome[field]));
  }

  async #stake(event) {
    event.preventDefault();
    const outcome = await this.#run(
      "stake-result",
      () => ({ type: "stake", vvv_units: this.#amount("stake-amount", "VVV to stake").toString() }),
      (o) => `Staked: ${this.#outcomeUnits(o, "svvv_units")} sVVV.`,
    );
    if (outcome) $("stake-amount").value = "";
  }

  async #unstake(event) {
    event.preventDefault();
    const outcome = await this.#run(
      "unstake-result",
      () => ({ type: "initiate_unstake", svvv_units: this.#amount("unstake-amount", "sVVV to unstake").toString() }),
      (o) => `Cooling down: ${this.#outcomeUnits(o, "cooling_svvv_units")} sVVV, ready ${shortDate(o.unlock_at)}.`,
    );
    if (outcome) $("unstake-amount").value = "";
  }

  #finalizeUnstake() {
    return this.#run("unstake-result", () => ({ type: "finalize_unstake" }), (o) => `Withdrawn: ${this.#outcomeUnits(o, "vvv_units")} VVV.`);
  }

  /**
   * In chain mode: offers the account's airdrop while it is unclaimed. The allocation and its
   * proof come from the gateway once per address; whether it was claimed, from the chain.
   */
  async #renderAirdrop(address) {
    const box = $("airdrop-claim");
    const chain = this.#chain;
    if (!chain) {
      box.hidden = true;
      return;
    }
    try {
      if (this.#airdrop?.address !== address) {
        let allocation = null;
        try {
          allocation = await call(`/chain/airdrop/${address}`);
        } catch (error) {
          if (error.status !== 404) throw error;
        }
        this.#airdrop = { address, allocation };
      }
      const allocation = this.#airdrop.allocation;
      const open = Boolean(allocation) && !(await chain.airdropClaimed());
      box.hidden = !open;
      if (open) {
        const amount = units(allocation.amount_units);
        $("airdrop-text").textContent = `The airdrop holds ${formatAmount(amount)} VVV for this address, to claim before its window closes.`;
        $("airdrop-claim-button").textContent = `Claim ${formatAmount(amount)} VVV`;
      }
    } catch {
      // Nothing to offer where the gateway or the chain cannot say; the balances still stand.
      box.hidden = true;
    }
  }

  #claimAirdrop() {
    const allocation = this.#airdrop?.allocation;
    return this.#run(
      "airdrop-result",
      () => {
        if (!allocation) throw new Error("This address has no airdrop allocation here.");
        return { type: "claim_airdrop", amount_units: allocation.amount_units, proof: allocation.proof };
      },
      (o) => `Claimed ${this.#outcomeUnits(o, "vvv_units")} VVV from the airdrop.`,
    );
  }

  #claim(andStake) {
    return this.#run(
      "claim-result",
      () => ({ type: andStake ? "claim_and_stake_rewards" : "claim_rewards" }),
      (o) => (andStake ? `Staked ${this.#outcomeUnits(o, "svvv_units")} sVVV of rewards.` : `Claimed ${this.#outcomeUnits(o, "vvv_units")} VVV.`),
    );
  }

  async #stakeDiem(event) {
    event.preventDefault();
    const outcome = await this.#run(
      "diem-stake-result",
      () => ({ type: "stake_diem", diem_units: this.#amount("diem-stake-amount", "DIEM to stake").toString() }),
      (o) => `Staked: ${this.#outcomeUnits(o, "diem_units")} DIEM.`,
    );
    if (outcome) $("diem-stake-amount").value = "";
  }

  async #unstakeDiem(event) {
    event.preventDefault();
    const outcome = await this.#run(
      "diem-unstake-result",
      () => ({ type: "initiate_diem_unstake", diem_units: this.#amount("diem-unstake-amount", "DIEM to unstake").toString() }),
      (o) => `Cooling down: ${this.#outcomeUnits(o, "cooling_diem_units")} DIEM, ready ${shortDate(o.unlock_at)}.`,
    );
    if (outcome) $("diem-unstake-amount").value = "";
  }

  #finalizeDiem() {
    return this.#run("diem-unstake-result", () => ({ type: "finalize_diem_unstake" }), (o) => `Withdrawn: ${this.#outcomeUnits(o, "diem_units")} DIEM.`);
  }

  async #burn(event) {
    event.preventDefault();
    const outcome = await this.#run(
      "burn-result",
      () => ({ type: "burn_diem", diem_units: this.#amount("burn-amount", "DIEM to burn").toString() }),
      (o) => `Burned ${this.#outcomeUnits(o, "diem_units")} DIEM; ${this.#outcomeUnits(o, "svvv_unlocked_units")} sVVV unlocked.`,
    );
    if (outcome) $("burn-amount").value = "";
  }

  // ------------------------------------------------------------ minting DIEM

  #slippageBps() {
    return parseSlippagePercent($("mint-slippage").value);
  }

  /** Shows the quote on screen and the minimum it means at the slippage set. */
  #renderQuote() {
    const node = $("mint-quote");
    const minimum = $("mint-minimum");
    if (!this.#quote) {
      minimum.textContent = "";
      delete minimum.dataset.units;
      return;
    }
    const { diem, locked, rate } = this.#quote;
    node.replaceChildren();
    const amount = document.createElement("strong");
    showUnits(amount, diem, " DIEM");
    amount.id = "mint-quote-diem";
    const cost = document.createElement("span");
    showUnits(cost, locked, " sVVV");
    // The curve sells whole base units of DIEM: what they cost may be a hair under the budget.
    node.append("You get ", amount, " for ", cost, ` now (${formatAmount(rate)} sVVV per DIEM at the current point of the curve).`);
    node.dataset.state = "ready";
    node.dataset.diemUnits = diem.toString();
    node.dataset.svvvUnits = locked.toString();
    try {
      const least = minimumAfterSlippage(diem, this.#slippageBps());
      minimum.dataset.units = least.toString();
      minimum.textContent = `Refused, with nothing minted, if fewer than ${formatAmount(least)} DIEM would come out.`;
      minimum.title = `${exactDecimal(least)} DIEM`;
    } catch (error) {
      delete minimum.dataset.units;
      minimum.textContent = error.message;
    }
  }

  #quoteSoon() {
    clearTimeout(this.#quoteTimer);
    this.#quote = null;
    const node = $("mint-quote");
    delete node.dataset.diemUnits;
    delete node.dataset.svvvUnits;
    const text = $("mint-svvv").value.trim();
    if (text === "") {
      node.dataset.state = "empty";
      node.textContent = "";
      this.#renderQuote();
      return;
    }
    let svvv;
    try {
      svvv = parseAmount(text);
    } catch (error) {
      node.dataset.state = "error";
      node.textContent = error.message;
      this.#renderQuote();
      return;
    }
    node.dataset.state = "pending";
    node.textContent = "Getting a quote…";
    this.#renderQuote();
    const sequence = ++this.#quoteSequence;
    this.#quoteTimer = setTimeout(() => this.#fetchQuote(svvv, sequence), QUOTE_DEBOUNCE_MS);
  }

  async #fetchQuote(svvv, sequence) {
    const node = $("mint-quote");
    try {
      const quote = this.#chain ? await this.#chain.quote(svvv) : await call(`/ledger/quote?svvv_units=${svvv}`);
      if (sequence !== this.#quoteSequence) return;
      this.#quote = { svvv, diem: units(quote.diem_units), locked: units(quote.svvv_units), rate: units(quote.mint_rate_svvv_units_per_diem) };
      this.#renderQuote();
    } catch (error) {
      if (sequence !== this.#quoteSequence) return;
      node.dataset.state = "error";
      node.textContent = `No quote: ${error.message}`;
    }
  }

  async #mint(event) {
    event.preventDefault();
    const quote = this.#quote;
    const outcome = await this.#run(
      "mint-result",
      () => {
        const svvv = this.#amount("mint-svvv", "sVVV to lock");
        // The guard is only worth anything against the quote the person saw: never re-quote here.
        if (!quote || quote.svvv !== svvv) throw new Error("Wait for the quote for this amount, then mint.");
        const least = minimumAfterSlippage(quote.diem, this.#slippageBps());
        return { type: "mint_diem", svvv_to_lock_units: svvv.toString(), min_diem_out_units: least.toString() };
      },
      (o) => `Minted ${this.#outcomeUnits(o, "diem_units")} DIEM for ${this.#outcomeUnits(o, "svvv_locked_units")} sVVV.`,
      (failure) =>
        failure.rejection === "slippage_exceeded"
          ? `Refused: the price moved since your quote, and the mint curve now gives fewer DIEM than your minimum of ${formatAmount(minimumAfterSlippage(quote.diem, this.#slippageBps()))}. Nothing was minted and no sVVV was locked. The new quote is above; mint again to accept it, or allow more slippage.`
          : null,
    );
    const result = $("mint-result");
    if (outcome) {
      result.dataset.diemUnits = outcome.diem_units;
      $("mint-svvv").value = "";
      this.#quoteSoon();
    } else if (result.dataset.rejection === "slippage_exceeded") {
      this.#quoteSoon();
    }
  }

  // ------------------------------------------------------------ API keys

  async #mintKey(event) {
    event.preventDefault();
    const result = $("api-key-result");
    if (this.#busy || !this.#wallet) return;
    const { account } = this.#wallet;
    this.#setBusy(true);
    setResult(result, "pending", "Signing the gateway's challenge…");
    try {
      const challenge = await call("/api_keys/generate_web3_key");
      const token = challenge?.data?.token;
      if (typeof token !== "string") throw new GatewayError("The gateway sent no challenge.");
      const signature = await account.signMessage({ message: token });
      const description = $("api-key-description").value.trim() || "Web app";
      const minted = await call("/api_keys/generate_web3_key", {
        method: "POST",
        body: { address: account.address, signature, token, apiKeyType: "INFERENCE", description },
      });
      this.#mintedKey = minted?.data?.apiKey ?? "";
      $("minted-key-text").textContent = this.#mintedKey;
      $("minted-key").hidden = !this.#mintedKey;
      setResult(result, "done", `Minted an INFERENCE key ending in ${this.#mintedKey.slice(-6) || "?"}.`);
    } catch (error) {
      setResult(result, "error", error.status === 401 ? `${error.message} Stake some VVV first.` : error.message);
    } finally {
      this.#setBusy(false);
    }
  }

  async #useMintedKey() {
    if (!this.#mintedKey || !this.#wallet) return;
    await this.#useApiKey(this.#mintedKey, this.#wallet.account.address);
    setResult($("api-key-result"), "done", "Chats now use this key (saved in Settings).");
    await this.refresh();
  }

  // ------------------------------------------------------------ events

  #wire() {
    $("wallet-generate").addEventListener("click", () => this.#generate());
    $("wallet-import-form").addEventListener("submit", (event) => this.#import(event));
    $("wallet-export").addEventListener("click", () => this.#toggleSecret());
    $("wallet-forget").addEventListener("click", () => this.#forget());
    $("wallet-copy-address").addEventListener("click", () => navigator.clipboard?.writeText(this.#wallet?.account.address ?? ""));
    $("wallet-refresh").addEventListener("click", () => this.refresh());
    $("stake-form").addEventListener("submit", (event) => this.#stake(event));
    $("stake-max").addEventListener("click", () => this.#fill("stake-amount", "vvv_units"));
    $("unstake-form").addEventListener("submit", (event) => this.#unstake(event));
    $("finalize-unstake").addEventListener("click", () => this.#finalizeUnstake());
    $("claim-rewards").addEventListener("click", () => this.#claim(false));
    $("claim-and-stake").addEventListener("click", () => this.#claim(true));
    $("airdrop-claim-button").addEventListener("click", () => this.#claimAirdrop());
    $("mint-form").addEventListener("submit", (event) => this.#mint(event));
    $("mint-svvv").addEventListener("input", () => this.#quoteSoon());
    $("mint-max").addEventListener("click", () => {
      this.#fill("mint-svvv", "staked_svvv_units");
      this.#quoteSoon();
    });
    $("mint-slippage").addEventListener("input", () => this.#renderQuote());
    $("burn-form").addEventListener("submit", (event) => this.#burn(event));
    $("diem-stake-form").addEventListener("submit", (event) => this.#stakeDiem(event));
    $("diem-stake-max").addEventListener("click", () => this.#fill("diem-stake-amount", "diem_units"));
    $("diem-unstake-form").addEventListener("submit", (event) => this.#unstakeDiem(event));
    $("finalize-diem").addEventListener("click", () => this.#finalizeDiem());
    $("api-key-form").addEventListener("submit", (event) => this.#mintKey(event));
    $("minted-key-use").addEventListener("click", () => this.#useMintedKey());
    $("minted-key-copy").addEventListener("click", () => navigator.clipboard?.writeText(this.#mintedKey));
  }

  /** Puts the whole balance `field` into the input `id`, exactly. */
  #fill(id, field) {
    if (!this.#balances) return;
    $(id).value = exactDecimal(units(this.#balances[field]));
  }
}
