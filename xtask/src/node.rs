//! The official TypeScript MCP SDK for the MCP tests: `npm ci` of
//! `tests/node/package-lock.json` into `tests/node/node_modules`.

use crate::{output, run, step};
use std::path::Path;
use std::process::Command;

/// The oldest Node.js the pinned SDK and its dependencies support (`engines` in
/// `tests/node/package.json`; `@hono/node-server` 2 needs 20).
const NODE_MAJOR: u32 = 20;

/// Written next to the modules after an install: a copy of the lock it installed.
/// `npm ci` deletes `node_modules` first, so a failed install leaves no stamp.
const STAMP: &str = "node_modules/.witbox-installed-lock.json";

/// Installs the locked SDK unless `node_modules` already holds that lock.
pub fn node_test_deps(root: &Path) -> Result<(), String> {
    let dir = root.join("tests/node");
    let version = output(Command::new("node").arg("--version")).map_err(|e| {
        format!("the TypeScript MCP SDK test needs Node.js {NODE_MAJOR} or newer: {e}")
    })?;
    let major = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    if major.is_none_or(|m| m < NODE_MAJOR) {
        return Err(format!(
            "the TypeScript MCP SDK test needs Node.js {NODE_MAJOR} or newer; `node --version` says {}",
            version.trim()
        ));
    }
    let lock = std::fs::read(dir.join("package-lock.json"))
        .map_err(|e| format!("failed to read tests/node/package-lock.json: {e}"))?;
    if std::fs::read(dir.join(STAMP)).is_ok_and(|stamp| stamp == lock) {
        return Ok(());
    }
    step("installing the TypeScript MCP SDK into tests/node/node_modules (npm ci)");
    run(Command::new("npm").current_dir(&dir).args([
        "ci",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
    ]))?;
    std::fs::write(dir.join(STAMP), &lock)
        .map_err(|e| format!("failed to write tests/node/{STAMP}: {e}"))
}
