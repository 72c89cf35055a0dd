//! `cargo xtask`: builds the guests and the host, runs the demo, the tests and the bench.
//!
//! Guests are built here, not by a build script, so `cargo test` never runs a
//! nested cargo build. Everything lands in `target/guests/`.

mod build;
mod data;
mod demo;
mod demo_manifest;
#[path = "../../host/src/embed.rs"]
#[allow(dead_code)] // the host uses the rest of it
mod embed;
mod eval;
#[allow(dead_code)] // the tests use the rest of it
mod fixture;
mod fuzz;
mod node;
mod package;
mod pins;
#[path = "../../host/src/scaffold/toolchain.rs"]
#[allow(dead_code)] // `witbox new tool` uses the wit-bindgen pin
mod toolchain;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  build   add the wasm32-wasip2 target if missing, build every guest into target/guests/
          (the Python runner with a pinned componentize-py in .venv/), build the host
  demo    build, then list the tools, call each one (weather against a local fixture server),
          link and compose tools, run Python cells, and run the agent loop with the
          offline planner on three tasks
  test [ARGS]
          build, install the pinned Python MCP SDK and smolagents into .venv and the
          pinned TypeScript MCP SDK into tests/node/node_modules (npm ci), run every
          test, build the Python package into .venv (maturin develop) and run its
          pytest suite, install its wheel into a fresh venv and run the one-liner, the
          agent eval (`eval --check`), then a smoke run of each fuzz target (18 s
          each); ARGS go to `cargo test` and skip the Python package, the eval and
          the smoke run
  bench   build in release mode, then print a table of timings; then the Python
          package's rows (its release wheel in a clean venv, against native exec(); with
          WITBOX_BENCH_PYTHON=python3.12 or newer, against pyeryx 0.11.0 too)
  wheel   build, then the release wheel of the Python package `witbox` (abi3, CPython
          3.9+, with the Python runner inside) into target/wheels/
  eval [--base-url URL --model M] [--mode tools|code|both] [--repeat K] [--check] ...
          run the agent suite (xtask/eval/tasks.toml, ~20 tasks) through `witbox agent`,
          check each answer, and print solve rate, steps, tool calls and wall time per
          task; without a URL, the offline planner and a scripted model (`eval --help`)
  load [SESSIONS] [SECONDS]
          concurrent Python sessions (200) for SECONDS (20) under a workload mix that
          hits every limit, through the library and `witbox mcp --http`; prints figures
  fuzz [TARGET] [SECONDS]
          run the cargo-fuzz targets (json_value, manifest, load; all by default) for
          SECONDS each (600); installs cargo-fuzz if missing (no nightly needed: the
          targets are built without a sanitizer)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build") => build::build(),
        Some("demo") => build::build().and_then(|()| demo::demo()),
        Some("test") => build::build().and_then(|()| test(&args[1..])),
        Some("bench") => build::build().and_then(|()| bench(&args[1..])),
        Some("eval") if args.iter().any(|a| a == "-h" || a == "--help") => eval::eval(&args[1..]),
        Some("eval") => build::build().and_then(|()| eval::eval(&args[1..])),
        Some("load") => build::build().and_then(|()| load(&args[1..])),
        Some("wheel") => build::build()
            .and_then(|()| package::wheel(true))
            .map(|wheel| eprintln!("built {}", wheel.display())),
        Some("fuzz") => build::build().and_then(|()| fuzz::fuzz(&args[1..])),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The folder every built guest is copied into.
fn artifacts() -> PathBuf {
    root().join("target").join("guests")
}

/// Runs a command with its output shown; the error names the command.
fn run(cmd: &mut Command) -> Result<(), String> {
    toolchain::run(cmd, &mut |_| {})
}

/// Runs a command and returns its stdout; the error names the command and has its stderr.
fn output(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("failed to start {shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `pip` arguments that install (or download) only the wheel whose sha256 the
/// requirements file `file` names, written here from `requirement` and `sha256`.
fn pip_pinned(
    file: &Path,
    requirement: &str,
    sha256: &str,
) -> Result<Vec<std::ffi::OsString>, String> {
    std::fs::write(file, format!("{requirement} --hash=sha256:{sha256}\n"))
        .map_err(|e| format!("failed to write {}: {e}", file.display()))?;
    let args = ["--only-binary=:all:", "--require-hashes", "-r"];
    Ok(args
        .into_iter()
        .map(Into::into)
        .chain([file.into()])
        .collect())
}

fn step(what: &str) {
    eprintln!("\x1b[1m==> {what}\x1b[0m");
}

fn test(extra: &[String]) -> Result<(), String> {
    build::python_test_deps(&root())?;
    node::node_test_deps(&root())?;
    redis_server()?;
    step("running the runner's checkpoint tests (tests/python/checkpoint_test.py)");
    run(Command::new(root().join(".venv/bin/python"))
        .current_dir(root())
        .arg("tests/python/checkpoint_test.py"))?;
    step("running the tests");
    run(toolchain::cargo()
        .current_dir(root())
        .args(["test", "-p", "witbox", "-p", "xtask"])
        .args(extra))?;
    if extra.is_empty() {
        package::test()?;
    }
    if extra.is_empty() {
        step("running the agent eval against the offline planner and the scripted model");
        eval::eval(&["--check".into()])?;
        fuzz::smoke()?;
    }
    Ok(())
}

/// The tests of replicas that share sessions start a real `redis-server`
/// (Debian's package): installed with apt when it is missing.
fn redis_server() -> Result<(), String> {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Ok(());
    }
    step("installing redis-server (apt-get) for the tests of replicas sharing sessions");
    let apt = |args: &[&str]| {
        let mut command = Command::new("apt-get");
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut command)
    };
    if apt(&["install", "-y", "--no-install-recommends", "redis-server"]).is_err() {
        apt(&["update"])?;
        apt(&["install", "-y", "--no-install-recommends", "redis-server"]).map_err(|e| {
            format!("{e}\nthe tests need `redis-server`: install Debian's package (`apt-get install redis-server`) as root")
        })?;
    }
    Ok(())
}

fn load(extra: &[String]) -> Result<(), String> {
    if extra.iter().any(|a| a == "--replicas") {
        redis_server()?;
    }
    step("building the release host for `witbox mcp --http`");
    run(toolchain::cargo()
        .current_dir(root())
        .args(["build", "--release", "-p", "witbox"]))?;
    step("running the load test (release build)");
    run(toolchain::cargo()
        .current_dir(root())
        .args(["bench", "-p", "witbox", "--bench", "load", "--"])
        .args(extra))
}

fn bench(extra: &[String]) -> Result<(), String> {
    let numpy = data::native_numpy(&root())?;
    step("running the bench (release build)");
    run(toolchain::cargo()
        .current_dir(root())
        .env("WITBOX_BENCH_NUMPY", numpy)
        .args(["bench", "-p", "witbox", "--bench", "witbox"])
        .args(extra))?;
    package::bench()
}
