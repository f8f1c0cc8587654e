// Compiles contracts/src with solc-js (the version package.json pins) and writes one artifact per
// contract to out/: its ABI and bytecode, which the Rust bindings (crates/chain, alloy's `sol!`)
// read at compile time. It also compiles each planted bug of MUTANTS into out/mutants/, for the
// differential test to show that it catches them. The artifacts are committed;
// `node build.mjs --check` recompiles and fails if any differs from what is committed.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");
const here = path.dirname(fileURLToPath(import.meta.url));
const check = process.argv.includes("--check");

const sources = {};
for (const file of fs.readdirSync(path.join(here, "src")).sort()) {
  if (file.endsWith(".sol")) {
    sources[`src/${file}`] = { content: fs.readFileSync(path.join(here, "src", file), "utf8") };
  }
}

// Planted bugs: one source line changed. The differential test must find each.
const MUTANTS = [
  {
    name: "StakingCooldownOffByOne",
    contract: "Staking",
    file: "src/Staking.sol",
    // `<` for `<=`: finalizing at the very second the cooldown ends is refused.
    from: "if (block.timestamp < position.unlockAt)",
    to: "if (block.timestamp <= position.unlockAt)",
  },
];

function findImports(name) {
  const candidates = [path.join(here, "node_modules", name), path.join(here, name)];
  for (const candidate of candidates) {
    if (fs.existsSync(candidate)) {
      return { contents: fs.readFileSync(candidate, "utf8") };
    }
  }
  return { error: `not found: ${name}` };
}

function compile(sources) {
  const input = {
    language: "Solidity",
    sources,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: "cancun",
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const errors = (output.errors ?? []).filter((e) => e.severity === "error");
  for (const message of output.errors ?? []) {
    process.stderr.write(message.formattedMessage);
  }
  if (errors.length > 0) {
    process.exit(1);
  }
  return output;
}

function artifact(name, source, contract) {
  return `${JSON.stringify(
    {
      contractName: name,
      sourceName: source,
      compiler: solc.version(),
      abi: contract.abi,
      bytecode: { object: `0x${contract.evm.bytecode.object}` },
      deployedBytecode: { object: `0x${contract.evm.deployedBytecode.object}` },
    },
    null,
    2,
  )}\n`;
}

let differs = 0;
function write(file, text) {
  if (check) {
    const committed = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
    if (committed !== text) {
      process.stderr.write(`${path.relative(here, file)} differs from what ${solc.version()} compiles\n`);
      differs += 1;
    }
  } else {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
  }
}

const out = path.join(here, "out");
const output = compile(sources);
for (const [source, contracts] of Object.entries(output.contracts)) {
  if (!source.startsWith("src/")) {
    continue;
  }
  for (const [name, contract] of Object.entries(contracts)) {
    if (contract.evm.bytecode.object === "") {
      continue; // an interface
    }
    write(path.join(out, `${name}.json`), artifact(name, source, contract));
  }
}
for (const mutant of MUTANTS) {
  const original = sources[mutant.file].content;
  if (original.split(mutant.from).length !== 2) {
    process.stderr.write(`mutant ${mutant.name}: "${mutant.from}" is not once in ${mutant.file}\n`);
    process.exit(1);
  }
  const mutated = { ...sources, [mutant.file]: { content: original.replace(mutant.from, mutant.to) } };
  const contract = compile(mutated).contracts[mutant.file][mutant.contract];
  write(path.join(out, "mutants", `${mutant.name}.json`), artifact(mutant.contract, mutant.file, contract));
}
if (differs > 0) {
  process.exit(1);
}
