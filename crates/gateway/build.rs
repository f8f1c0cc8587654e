//! Builds the web app's three third-party scripts, bundled by esbuild from `web/lib` into
//! `OUT_DIR`, where `web.rs` embeds them: `/signing.js` (viem's local accounts, for the wallet
//! page), `/transactions.js` (viem's client and contract actions, for its chain mode) and `/privacy.js` (HPKE, blind RSA and Ed25519, for the chat page's private mode).
//!
//! npm installs the libraries (`npm ci` in `web/lib`, which `scripts/serve.sh` and
//! `scripts/test.sh` run); this script only bundles what is installed and never downloads
//! anything. Without `node_modules` the gateway still builds: `web/lib/missing-*.js` are
//! embedded instead, and the pages say what this build cannot do and how to get one that can.
//! With `node_modules` installed, a failed bundle fails the build, so a broken install is never
//! mistaken for a missing one.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The entry points of `web/lib`, each bundled into `OUT_DIR` under its own name.
const ENTRIES: [&str; 3] = ["signing", "transactions", "privacy"];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let package = manifest_dir.join("web").join("lib");
    let mut inputs = vec![
        "bundle.mjs".to_owned(),
        "package.json".to_owned(),
        "package-lock.json".to_owned(),
    ];
    for entry in ENTRIES {
        inputs.push(format!("{entry}.js"));
        inputs.push(format!("missing-{entry}.js"));
    }
    for file in &inputs {
        println!("cargo::rerun-if-changed={}", package.join(file).display());
    }
    println!("cargo::rerun-if-env-changed=GONDOLA_NODE");

    // npm writes this file last, at the end of every install.
    let installed = package.join("node_modules").join(".package-lock.json");
    if installed.is_file() {
        println!("cargo::rerun-if-changed={}", installed.display());
        bundle(&package, &out_dir);
    } else {
        // Watching the folder (a handful of files without node_modules) notices an install.
        println!("cargo::rerun-if-changed={}", package.display());
        println!(
            "cargo::warning=the web app's libraries are not installed (run `npm ci` in {}); \
             this gateway's wallet page will say it cannot sign, and its private mode that it \
             cannot seal",
            package.display()
        );
        for entry in ENTRIES {
            let output = out_dir.join(format!("{entry}.js"));
            if let Err(error) = std::fs::copy(package.join(format!("missing-{entry}.js")), &output)
            {
                panic!(
                    "cannot copy missing-{entry}.js to {}: {error}",
                    output.display()
                );
            }
        }
    }
}

/// Runs `node bundle.mjs OUT_DIR` in the package folder; any failure ends the build.
fn bundle(package: &Path, out_dir: &Path) {
    let node = std::env::var_os("GONDOLA_NODE").unwrap_or_else(|| "node".into());
    let result = Command::new(&node)
        .arg("bundle.mjs")
        .arg(out_dir)
        .current_dir(package)
        .output();
    let bundled = || {
        ENTRIES
            .iter()
            .all(|entry| out_dir.join(format!("{entry}.js")).is_file())
    };
    match result {
        Ok(result) if result.status.success() && bundled() => {}
        Ok(result) => panic!(
            "bundling the web app's libraries failed ({}):\n{}{}",
            result.status,
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        ),
        Err(error) => panic!(
            "{} has node_modules installed but `{}` cannot run ({error}); install Node.js, or \
             remove node_modules to build without the web app's libraries",
            package.display(),
            node.to_string_lossy()
        ),
    }
}
