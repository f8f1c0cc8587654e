// Browser wallets (EIP-1193) for the wallet page: the ones this browser has, found by EIP-6963's
// announcements (or, for wallets from before it, at window.ethereum), and an account over one
// that signs as viem's local accounts do (`signMessage`, `signTypedData`), so the page uses a
// key of its own and a browser wallet the same way. The wallet keeps its key and asks its owner
// to approve each request; `lib` is the chain library (transactions.js in web/lib).

/** The browser wallets in this page: {name, rdns, provider} each. */
export class BrowserWallets {
  /** Announced wallets, by their uuid. */
  #announced = new Map();

  /** Listens for announcements (calling `onChange` at each) and asks the wallets to announce. */
  constructor(onChange) {
    window.addEventListener("eip6963:announceProvider", (event) => {
      const { info, provider } = event.detail ?? {};
      if (typeof info?.uuid !== "string" || typeof provider?.request !== "function") return;
      const name = typeof info.name === "string" && info.name.trim() ? info.name.trim().slice(0, 60) : "Browser wallet";
      const rdns = typeof info.rdns === "string" && info.rdns ? info.rdns : info.uuid;
      this.#announced.set(info.uuid, { name, rdns, provider });
      onChange();
    });
    window.dispatchEvent(new Event("eip6963:requestProvider"));
  }

  /** The wallets to offer: every announced one, or else window.ethereum. */
  offered() {
    if (this.#announced.size > 0) return [...this.#announced.values()];
    const legacy = window.ethereum;
    return typeof legacy?.request === "function" ? [{ name: "Browser wallet", rdns: "window.ethereum", provider: legacy }] : [];
  }

  /** The offered wallet with this `rdns`, or null. */
  find(rdns) {
    return this.offered().find((entry) => entry.rdns === rdns) ?? null;
  }
}

/** Asks `entry` for an account (its owner approves, the first time): the first it shares. */
export async function requestAccount(lib, entry) {
  const [first] = await lib.requestAddresses(lib.createClient({ transport: lib.custom(entry.provider) }));
  if (!first) throw new Error("it shared no account");
  return lib.getAddress(first);
}

/** Whether `entry` still shares `address` without asking (eth_accounts); false when it is locked or refuses. */
export async function stillShares(entry, address) {
  try {
    const accounts = await entry.provider.request({ method: "eth_accounts" });
    return Array.isArray(accounts) && accounts.some((account) => String(account).toLowerCase() === String(address).toLowerCase());
  } catch {
    return false;
  }
}

/** An account over `address` in `entry`: {address, signMessage, signTypedData}, each signed by the wallet. */
export function walletAccount(lib, entry, address) {
  const client = lib.createClient({ transport: lib.custom(entry.provider) });
  address = lib.getAddress(address);
  return {
    address,
    signMessage: ({ message }) => lib.signMessage(client, { account: address, message }),
    signTypedData: (typedData) => lib.signTypedData(client, { account: address, ...typedData }),
  };
}
