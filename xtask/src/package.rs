//! The Python package `witbox` (`bindings/python`, PyO3 + maturin): built into
//! `.venv` for the pytest suite, and as a wheel (`cargo xtask wheel`) that
//! carries the Python runner. Both copy `target/guests/python-runner.wasm` into
//! the package's `witbox/_data/` first (git-ignored), which is where the
//! package looks for its runner.

use crate::{artifacts, root, run, step};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The package's folder.
fn package() -> PathBuf {
    root().join("bindings/python")
}

/// The shipped tools the package carries, beside its runner.
const TOOLS: [&str; 4] = ["quadratic", "weather", "equation-report", "text-stats"];

/// Puts the built runner and the shipped tools into the package (each only
/// when it changed), with `tools.toml`: the shipped manifest's components and
/// their policies, paths relative to the package's `_data/`.
fn copy_runner() -> Result<(), String> {
    let data = package().join("python/witbox/_data");
    std::fs::create_dir_all(&data)
        .map_err(|e| format!("failed to create {}: {e}", data.display()))?;
    let same = |a: &Path, b: &Path| match (std::fs::read(a), std::fs::read(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    for name in std::iter::once("python-runner").chain(TOOLS) {
        let from = artifacts().join(format!("{name}.wasm"));
        let to = data.join(format!("{name}.wasm"));
        if !same(&from, &to) {
            std::fs::copy(&from, &to)
                .map_err(|e| format!("failed to copy {} into the package: {e}", from.display()))?;
        }
    }
    let shipped = std::fs::read_to_string(root().join("witbox.toml"))
        .map_err(|e| format!("failed to read witbox.toml: {e}"))?;
    // The `[[component]]` tables come before `[runner]`.
    let components = shipped
        .split("\n[runner]")
        .next()
        .unwrap_or_default()
        .replace("target/guests/", "");
    let tools = format!(
        "# The shipped tools, from witbox.toml (written by `cargo xtask`).\n{components}\n"
    );
    std::fs::write(data.join("tools.toml"), tools)
        .map_err(|e| format!("failed to write tools.toml into the package: {e}"))
}

fn maturin() -> Command {
    let venv = root().join(".venv");
    let mut path = std::ffi::OsString::from(venv.join("bin"));
    if let Some(rest) = std::env::var_os("PATH") {
        path.push(":");
        path.push(rest);
    }
    let mut command = Command::new(venv.join("bin/maturin"));
    command
        .current_dir(package())
        .env("VIRTUAL_ENV", &venv)
        .env("PATH", path);
    command
}

/// `maturin develop` into `.venv` (the dev profile: the host's dependencies are
/// the tests' own build).
pub fn develop() -> Result<(), String> {
    copy_runner()?;
    step("building the Python package into .venv (maturin develop)");
    run(maturin().args(["develop", "--quiet"]))
}

/// Runs the pytest suite of the package (`tests/python/witbox_test.py`), then
/// builds a wheel, installs it into a fresh venv and runs the README's one-liner
/// there, with an empty compile cache.
pub fn test() -> Result<(), String> {
    develop()?;
    step(
        "running the Python package's tests (pytest: tests/python/witbox_test.py, smolagents_test.py, langchain_test.py)",
    );
    run(Command::new(root().join(".venv/bin/python"))
        .current_dir(root())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .args([
            "tests/python/witbox_test.py",
            "tests/python/smolagents_test.py",
        ])
        .arg("tests/python/langchain_test.py"))?;
    let wheel = wheel(false)?;
    step("installing the wheel into a fresh venv and running the one-liner there");
    let scratch = root().join("target/wheel-check");
    let _ = std::fs::remove_dir_all(&scratch);
    let python = venv_with("python3", &wheel, &scratch.join("venv"))?;
    let out = crate::output(
        Command::new(python)
            .current_dir(&scratch)
            .env("WITBOX_CACHE_DIR", scratch.join("cache"))
            .args([
                "-c",
                "import witbox; print(witbox.run('print(1+1)').stdout)",
            ]),
    )?;
    if out.trim() != "2" {
        return Err(format!("the installed wheel printed {out:?}, not 2"));
    }
    Ok(())
}

/// `maturin build` of the wheel into `target/wheels/`; its path.
pub fn wheel(release: bool) -> Result<PathBuf, String> {
    copy_runner()?;
    let out = root().join("target/wheels");
    let _ = std::fs::remove_dir_all(&out);
    step(&format!(
        "building the witbox wheel ({} profile) into target/wheels",
        if release { "release" } else { "dev" }
    ));
    let mut command = maturin();
    command.args(["build", "--quiet", "--out"]).arg(&out);
    if release {
        command.arg("--release");
    }
    run(&mut command)?;
    let found = std::fs::read_dir(&out)
        .map_err(|e| format!("failed to read {}: {e}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"));
    found.ok_or_else(|| format!("maturin wrote no wheel into {}", out.display()))
}

/// The Python rows of `cargo xtask bench`: the release wheel in a clean venv
/// (`target/bench/witbox-venv`), `bindings/python/bench.py` against native
/// `exec()` in the same process, and against pyeryx when the interpreter can
/// install it (`WITBOX_BENCH_PYTHON=python3.12 cargo xtask bench`).
pub fn bench() -> Result<(), String> {
    let wheel = wheel(true)?;
    step("installing the release wheel into a clean venv (target/bench/witbox-venv)");
    let interpreter = std::env::var("WITBOX_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let python = venv_with(
        &interpreter,
        &wheel,
        &root().join("target/bench/witbox-venv"),
    )?;
    let new_enough = Command::new(&python)
        .args(["-c", "import sys; sys.exit(sys.version_info < (3, 12))"])
        .status()
        .is_ok_and(|s| s.success());
    if new_enough {
        let (version, sha256) = crate::pins::BENCH_PYERYX;
        step(&format!(
            "installing pyeryx {version} beside it (the peer's column)"
        ));
        let pins = root().join("target/bench/pyeryx.txt");
        let requirement = format!("pyeryx=={version}");
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(crate::pip_pinned(&pins, &requirement, sha256)?))?;
    }
    step("running the Python package's bench (bindings/python/bench.py)");
    run(Command::new(python)
        .current_dir(root().join("target/bench"))
        .arg(package().join("bench.py")))
}

/// A new venv of the interpreter `python` at `venv` with only `wheel` installed
/// (no index: nothing else is fetched); its python.
fn venv_with(python: &str, wheel: &Path, venv: &Path) -> Result<PathBuf, String> {
    run(Command::new(python)
        .args(["-m", "venv", "--clear"])
        .arg(venv))?;
    run(Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--no-index",
            "--disable-pip-version-check",
        ])
        .arg(wheel))?;
    Ok(venv.join("bin/python"))
}
