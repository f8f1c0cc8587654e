//! Builds the web app's one third-party script, `/signing.js`: viem's local accounts, bundled
//! by esbuild from `web/signing/index.js` into `OUT_DIR`, where `web.rs` embeds it.
//!
//! npm installs the library (`npm ci` in `web/signing`, which `scripts/serve.sh` and
//! `scripts/test.sh` run); this script only bundles what is installed and never downloads
//! anything. Without `node_modules` the gateway still builds: `web/signing/missing.js` is
//! embedded instead, and the wallet page says that this build cannot sign and how to get one
//! that can. With `node_modules` installed, a failed bundle fails the build, so a broken
//! install is never mistaken for a missing one.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let package = manifest_dir.join("web").join("signing");
    let output = out_dir.join("signing.js");
    for file in [
        "index.js",
        "missing.js",
        "bundle.mjs",
        "package.json",
        "package-lock.json",
    ] {
        println!("cargo::rerun-if-changed={}", package.join(file).display());
    }
    println!("cargo::rerun-if-env-changed=GONDOLA_NODE");

    // npm writes this file last, at the end of every install.
    let installed = package.join("node_modules").join(".package-lock.json");
    if installed.is_file() {
        println!("cargo::rerun-if-changed={}", installed.display());
        bundle(&package, &output);
    } else {
        // Watching the folder (a handful of files without node_modules) notices an install.
        println!("cargo::rerun-if-changed={}", package.display());
        println!(
            "cargo::warning=the web app's signing library is not installed (run `npm ci` in {}); \
             this gateway's wallet page will say it cannot sign",
            package.display()
        );
        if let Err(error) = std::fs::copy(package.join("missing.js"), &output) {
            panic!("cannot copy missing.js to {}: {error}", output.display());
        }
    }
}

/// Runs `node bundle.mjs OUTPUT` in the package folder; any failure ends the build.
fn bundle(package: &Path, output: &Path) {
    let node = std::env::var_os("GONDOLA_NODE").unwrap_or_else(|| "node".into());
    let result = Command::new(&node)
        .arg("bundle.mjs")
        .arg(output)
        .current_dir(package)
        .output();
    match result {
        Ok(result) if result.status.success() && output.is_file() => {}
        Ok(result) => panic!(
            "bundling the web app's signing library failed ({}):\n{}{}",
            result.status,
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        ),
        Err(error) => panic!(
            "{} has node_modules installed but `{}` cannot run ({error}); install Node.js, or \
             remove node_modules to build without the signing library",
            package.display(),
            node.to_string_lossy()
        ),
    }
}
