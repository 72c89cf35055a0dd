//! The toolchain guests are built with, shared by `witbox build` and `cargo xtask
//! build`: the pinned versions and the build steps (wasm32-wasip2 with cargo,
//! componentize-py for Python tools, the WIT docs embedded in each component).
//!
//! Only `std` and [`crate::embed`]: `xtask` includes this file (and `embed.rs`)
//! with `#[path]`, so it builds the guests before the host exists and both stay
//! one copy. Errors are strings that name the command or file that failed.

use crate::embed::wit_section;
use std::path::{Path, PathBuf};
use std::process::Command;

/// wit-bindgen, pinned, for the Rust guests. `guests/Cargo.toml` cannot import
/// this constant, so it repeats the pin and a test checks that the two agree.
pub const WIT_BINDGEN: &str = "0.61.1";

/// componentize-py, pinned: it bundles the CPython the Python runner and the
/// Python tools are made of.
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// The target every Rust guest is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Runs `cmd` after showing it to `log`.
pub fn run(cmd: &mut Command, log: &mut dyn FnMut(&str)) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    log(&shown);
    let status = cmd
        .status()
        .map_err(|e| format!("failed to start {shown}: {e}"))?;
    if !status.success() {
        return Err(format!("{shown} failed with {status}"));
    }
    Ok(())
}

/// Adds the wasm32-wasip2 target with rustup when it is not installed. Without
/// rustup (a toolchain from elsewhere) nothing is done: cargo then says what is missing.
pub fn ensure_target(log: &mut dyn FnMut(&str)) -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
        })
        .unwrap_or(true);
    if installed {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", TARGET]), log)
}

/// `cargo`, without the variables `cargo run` sets for the program it runs (the
/// xtask): ring's build script reads `CARGO_MANIFEST_DIR`, so with the xtask's it
/// would be rebuilt (and everything above it) whenever cargo is next run directly.
pub fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    for (key, _) in std::env::vars_os() {
        let set_by_cargo_run = key.to_str().is_some_and(|k| {
            k.starts_with("CARGO_PKG_")
                || matches!(
                    k,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_MANIFEST_LINKS"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                )
        });
        if set_by_cargo_run {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// `cargo build --release --target wasm32-wasip2` of the package or workspace
/// whose `Cargo.toml` is `manifest`; returns the folder the `.wasm` files land in
/// (under `$CARGO_TARGET_DIR` when it is set, as cargo does).
pub fn cargo_build(manifest: &Path, log: &mut dyn FnMut(&str)) -> Result<PathBuf, String> {
    run(
        cargo()
            .args(["build", "--release", "--target", TARGET, "--manifest-path"])
            .arg(manifest),
        log,
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.parent().unwrap_or(Path::new("")).join("target"));
    Ok(target.join(TARGET).join("release"))
}

/// The file cargo writes in `dir` for the cdylib crate `name`: cargo names it
/// after the crate, with `-` as `_`.
pub fn built_wasm(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{}.wasm", name.replace('-', "_")))
}

/// Builds a Python tool with componentize-py (`tool`): `src/app.py` against the
/// WIT in `src/wit`, world `world`, into `out`, with that WIT embedded. `site`
/// is a folder of installed packages to put on its Python path, if any.
pub fn componentize(
    tool: &Path,
    src: &Path,
    world: &str,
    site: Option<&Path>,
    out: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let mut cmd = Command::new(tool);
    cmd.current_dir(src)
        .args(["-d", "wit", "-w", world, "componentize", "app"]);
    if let Some(site) = site {
        cmd.args(["-p", "."]).arg("-p").arg(site);
    }
    run(cmd.arg("-o").arg(out), log)?;
    embed_wit(out, &src.join("wit"), world, out)
}

/// Builds the Python code runner with componentize-py (`tool`): `app.py` in the
/// first of `paths` (the others, such as installed packages, join its Python
/// path) against the `witbox:agent` WIT in `wit`, world `code-runner`, into
/// `out`. No WIT is embedded: it is not a tool.
pub fn componentize_runner(
    tool: &Path,
    wit: &Path,
    paths: &[&Path],
    out: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let mut cmd = Command::new(tool);
    cmd.arg("-d")
        .arg(wit)
        .args(["-w", "witbox:agent/code-runner", "componentize", "app"]);
    for path in paths {
        cmd.arg("-p").arg(path);
    }
    run(cmd.arg("-o").arg(out), log)
}

/// Writes `to`: the component in `from` with the WIT in `wit` (world `world`)
/// appended as a `witbox-wit` section, which is where the host reads the docs.
/// `from` and `to` may be the same file.
pub fn embed_wit(from: &Path, wit: &Path, world: &str, to: &Path) -> Result<(), String> {
    let wasm =
        std::fs::read(from).map_err(|e| format!("failed to read `{}`: {e}", from.display()))?;
    let section = wit_section(wit, world)?;
    std::fs::write(to, [wasm, section].concat())
        .map_err(|e| format!("failed to write `{}`: {e}", to.display()))
}
