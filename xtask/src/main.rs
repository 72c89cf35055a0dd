//! `cargo xtask`: builds the guests and the host, runs the demo, the tests and the bench.
//!
//! Guests are built here, not by a build script, so `cargo test` never runs a
//! nested cargo build. Everything lands in `target/guests/`.

#[path = "../../host/src/embed.rs"]
#[allow(dead_code)] // the host uses the rest of it
mod embed;
#[allow(dead_code)] // the tests use the rest of it
mod fixture;

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
          build, install the pinned Python MCP SDK and smolagents into .venv, run every
          test, then a smoke run of each fuzz target (18 s each); ARGS go to `cargo test`
          and skip the smoke run
  bench   build in release mode, then print a table of timings
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
        Some("build") => build(),
        Some("demo") => build().and_then(|()| demo()),
        Some("test") => build().and_then(|()| test(&args[1..])),
        Some("bench") => build().and_then(|()| bench(&args[1..])),
        Some("load") => build().and_then(|()| load(&args[1..])),
        Some("fuzz") => build().and_then(|()| fuzz(&args[1..])),
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

/// The Rust guests in `guests/`, each with its WIT in `guests/NAME/wit` and a world named NAME.
const RUST_GUESTS: [&str; 6] = [
    "quadratic",
    "weather",
    "testkit",
    "badtype",
    "clash",
    "equation-report",
];

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

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("failed to start {shown}: {e}"))?;
    if !status.success() {
        return Err(format!("{shown} failed with {status}"));
    }
    Ok(())
}

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

fn step(what: &str) {
    eprintln!("\x1b[1m==> {what}\x1b[0m");
}

fn build() -> Result<(), String> {
    let root = root();
    step("checking the wasm32-wasip2 target");
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if !installed.lines().any(|l| l.trim() == "wasm32-wasip2") {
        run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))?;
    }

    step("building the Rust guests (guests/, wasm32-wasip2)");
    let guests = root.join("guests");
    run(Command::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(guests.join("Cargo.toml")))?;
    let out_dir = artifacts();
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("failed to create {}: {e}", out_dir.display()))?;
    let built = guests.join("target/wasm32-wasip2/release");
    for name in RUST_GUESTS {
        // cargo names a cdylib after its crate, with `-` as `_`.
        let from = built.join(format!("{}.wasm", name.replace('-', "_")));
        let wasm =
            std::fs::read(&from).map_err(|e| format!("failed to read {}: {e}", from.display()))?;
        let wit = embed::wit_section(&guests.join(name).join("wit"), name)?;
        let to = out_dir.join(format!("{name}.wasm"));
        std::fs::write(&to, [wasm, wit].concat())
            .map_err(|e| format!("failed to write {}: {e}", to.display()))?;
    }

    python_runner(&root, &out_dir)?;
    for name in PYTHON_GUESTS {
        python_tool(&root, &out_dir, name)?;
    }

    step("building the host (witbox)");
    run(Command::new("cargo")
        .current_dir(&root)
        .args(["build", "-p", "witbox"]))?;
    Ok(())
}

/// componentize-py, pinned: it bundles the CPython the runner is made of.
const COMPONENTIZE_PY: &str = "0.25.1";

/// Builds `guests/python-runner` with componentize-py from a local `.venv`
/// (made and filled on first use), unless the component is newer than its inputs.
fn python_runner(root: &Path, out_dir: &Path) -> Result<(), String> {
    let venv = root.join(".venv");
    let tool = venv.join("bin/componentize-py");
    let version = output(Command::new(&tool).arg("--version")).unwrap_or_default();
    if version.split_whitespace().nth(1) != Some(COMPONENTIZE_PY) {
        step(&format!(
            "installing componentize-py {COMPONENTIZE_PY} into .venv"
        ));
        if !venv.join("bin/pip").exists() {
            let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
            run(Command::new(&python).arg("-m").arg("venv").arg(&venv))?;
        }
        run(Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("componentize-py=={COMPONENTIZE_PY}"),
        ]))?;
    }
    let src = root.join("guests/python-runner");
    let out = out_dir.join("python-runner.wasm");
    let inputs = [
        src.join("app.py"),
        root.join("wit/host.wit"),
        root.join("wit/runner.wit"),
        root.join("wit/worlds.wit"),
        tool.clone(),
    ];
    if is_newer(&out, &inputs) {
        return Ok(());
    }
    step("building the Python runner (guests/python-runner, componentize-py)");
    run(Command::new(&tool)
        .arg("-d")
        .arg(root.join("wit"))
        .args([
            "-w",
            "witbox:agent/code-runner",
            "componentize",
            "app",
            "-p",
        ])
        .arg(&src)
        .arg("-o")
        .arg(&out))
}

/// Tools written in Python: `guests/NAME/app.py` with its WIT in `guests/NAME/wit`, world NAME.
const PYTHON_GUESTS: [&str; 1] = ["text-stats"];

/// Builds a Python tool with componentize-py and embeds its WIT, unless it is up to date.
fn python_tool(root: &Path, out_dir: &Path, name: &str) -> Result<(), String> {
    let src = root.join("guests").join(name);
    let out = out_dir.join(format!("{name}.wasm"));
    let tool = root.join(".venv/bin/componentize-py");
    let inputs = [src.join("app.py"), src.join("wit/world.wit"), tool.clone()];
    if is_newer(&out, &inputs) {
        return Ok(());
    }
    step(&format!(
        "building the Python tool {name} (guests/{name}, componentize-py)"
    ));
    run(Command::new(&tool)
        .current_dir(&src)
        .args(["-d", "wit", "-w", name, "componentize", "app", "-o"])
        .arg(&out))?;
    let wasm = std::fs::read(&out).map_err(|e| format!("failed to read {}: {e}", out.display()))?;
    let wit = embed::wit_section(&src.join("wit"), name)?;
    std::fs::write(&out, [wasm, wit].concat())
        .map_err(|e| format!("failed to write {}: {e}", out.display()))
}

/// Whether `out` exists and is newer than every input.
fn is_newer(out: &Path, inputs: &[PathBuf]) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(out) else {
        return false;
    };
    inputs
        .iter()
        .all(|i| modified(i).is_some_and(|m| m < built))
}

fn witbox() -> PathBuf {
    root().join("target/debug/witbox")
}

fn demo() -> Result<(), String> {
    let root = root();
    let server = fixture::Fixture::start();
    let dir = root.join("target/demo");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // The shipped witbox.toml allows only the public Open-Meteo hosts; the demo
    // points the weather tool at the local fixture and grants only that address.
    let manifest = dir.join("witbox.toml");
    let text = format!(
        r#"[[component]]
name = "quadratic"
path = "../guests/quadratic.wasm"

[[component]]
name = "weather"
path = "../guests/weather.wasm"
[component.policy]
allow-http = ["{url}"]
timeout-ms = 5000
[component.config]
geocoding-url = "{url}"
forecast-url = "{url}"

# A tool built on a tool: the host links its import to `quadratic`.
[[component]]
name = "equation-report"
path = "../guests/equation-report.wasm"
[component.policy]
link = ["quadratic"]

# A tool written in Python.
[[component]]
name = "text-stats"
path = "../guests/text-stats.wasm"
[component.policy]
memory-mb = 64

[runner]
path = "../guests/python-runner.wasm"
"#,
        url = server.url()
    );
    std::fs::write(&manifest, text).map_err(|e| e.to_string())?;

    let limits = dir.join("limits.toml");
    let text = r#"# The test kit, with tight limits, to show what hitting each one looks like.
[[component]]
name = "testkit"
path = "../guests/testkit.wasm"
[component.policy]
timeout-ms = 300
memory-mb = 16
max-output-bytes = 4096
"#;
    std::fs::write(&limits, text).map_err(|e| e.to_string())?;

    let run_with = |manifest: &Path, args: &[&str]| -> Result<(), String> {
        let shown: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
        println!("\n$ witbox {}", shown.join(" "));
        let status = Command::new(witbox())
            .arg("--manifest")
            .arg(manifest)
            .args(args)
            .status()
            .map_err(|e| e.to_string())?;
        println!("(exit {})", status.code().unwrap_or(-1));
        Ok(())
    };
    let witbox = |args: &[&str]| run_with(&manifest, args);
    step(&format!(
        "demo: tools, served by a local Open-Meteo fixture at {}",
        server.url()
    ));
    witbox(&["tools"])?;
    witbox(&["call", "quadratic_solve", r#"{"a": 1, "b": -3, "c": 2}"#])?;
    witbox(&["call", "quadratic_solve", r#"{"a": 1, "b": 2, "c": 5}"#])?;
    witbox(&["call", "weather_current", r#"{"city": "Paris"}"#])?;
    step("demo: a tool built on a tool, linked by the host, then composed statically");
    witbox(&[
        "call",
        "equation_report_report",
        r#"{"equation": "2x^2 - 4x + 2 = 0"}"#,
    ])?;
    let composed = dir.join("report.wasm");
    let composed = composed.to_str().ok_or("a non-UTF-8 path")?;
    let socket = artifacts().join("equation-report.wasm");
    let plug = artifacts().join("quadratic.wasm");
    witbox(&[
        "compose",
        socket.to_str().ok_or("a non-UTF-8 path")?,
        "--plug",
        plug.to_str().ok_or("a non-UTF-8 path")?,
        "-o",
        composed,
    ])?;
    witbox(&["check", composed])?;
    step("demo: a tool written in Python (the first call compiles it once, ~7 s)");
    witbox(&[
        "call",
        "text_stats_analyze",
        r#"{"text": "The cat sat on the mat. It was happy! Readability formulas estimate how hard a text is to read."}"#,
    ])?;
    step("demo: what failure looks like");
    witbox(&[
        "call",
        "quadratic_solve",
        r#"{"a": 300, "b": "x"}"#,
        "--json",
    ])?;
    witbox(&[
        "call",
        "quadratic_solve",
        r#"{"a": 0, "b": 0, "c": 1}"#,
        "--json",
    ])?;
    witbox(&[
        "call",
        "weather_current",
        r#"{"city": "Atlantis"}"#,
        "--json",
    ])?;
    step(
        "demo: limits (target/demo/limits.toml: timeout 300 ms, memory 16 MiB, output 4096 bytes, no grants)",
    );
    run_with(&limits, &["call", "testkit_spin"])?;
    run_with(&limits, &["call", "testkit_grow", r#"{"mb": 64}"#])?;
    run_with(
        &limits,
        &["call", "testkit_flood", r#"{"bytes": 10000000}"#],
    )?;
    run_with(
        &limits,
        &["call", "testkit_read_file", r#"{"path": "/etc/passwd"}"#],
    )?;
    run_with(&limits, &["call", "testkit_get_env", r#"{"name": "HOME"}"#])?;

    step(
        "demo: Python cells in a sandboxed session (the first run compiles the runner once, ~15 s)",
    );
    witbox(&["run", "-c", "x = 5 + 3", "-c", "x * 2"])?;
    witbox(&[
        "run",
        "--tool",
        "quadratic_solve",
        "--tool",
        "weather_current",
        "-c",
        "print(quadratic_solve(1, -3, 2))\nw = weather_current(city='Paris')\nprint(w['city'], w['temperature-c'], w['description'])",
    ])?;
    step("demo: Python limits");
    witbox(&["run", "--timeout-ms", "500", "-c", "while True: pass"])?;
    witbox(&["run", "--memory-mb", "64", "-c", "x = bytes(10**9)"])?;
    witbox(&["run", "-c", "open('/etc/passwd').read()"])?;
    witbox(&["run", "-c", "import socket"])?;
    witbox(&["run", "-c", "quadratic_solve(1, -3, 2)"])?;

    step(
        "demo: the agent loop with the offline planner (a deterministic parser, not a language model; `--model` picks a real one)",
    );
    witbox(&["agent", "solve 2x² - 4x = -2"])?;
    witbox(&["agent", "what's the weather in Paris?"])?;
    witbox(&[
        "agent",
        "--mode",
        "code",
        "mean and standard deviation of 3, 5, 8, 13",
    ])?;
    Ok(())
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    {
        s.to_string()
    } else if !s.contains('\'') {
        format!("'{s}'")
    } else if !s.contains(['"', '$', '`', '\\', '!']) {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What the MCP tests drive witbox with: the official Python MCP SDK and smolagents, pinned.
const PYTHON_TEST_DEPS: [(&str, &str); 2] = [("mcp", "2.3.0"), ("smolagents", "1.26.0")];

/// Installs the Python test dependencies into `.venv` unless they are there at their pins.
fn python_test_deps(root: &Path) -> Result<(), String> {
    let python = root.join(".venv/bin/python");
    let check = PYTHON_TEST_DEPS
        .iter()
        .map(|(name, _)| format!("importlib.metadata.version({name:?})"))
        .collect::<Vec<_>>()
        .join(", ");
    let have = output(Command::new(&python).args([
        "-c",
        &format!("import importlib.metadata; print(' '.join([{check}]))"),
    ]))
    .unwrap_or_default();
    let want: Vec<&str> = PYTHON_TEST_DEPS.iter().map(|(_, v)| *v).collect();
    if have.split_whitespace().collect::<Vec<_>>() == want {
        return Ok(());
    }
    let pins: Vec<String> = PYTHON_TEST_DEPS
        .iter()
        .map(|(name, version)| format!("{name}=={version}"))
        .collect();
    step(&format!(
        "installing {} into .venv for the MCP tests",
        pins.join(" ")
    ));
    run(Command::new(root.join(".venv/bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(&pins))
}

fn test(extra: &[String]) -> Result<(), String> {
    python_test_deps(&root())?;
    step("running the tests");
    run(Command::new("cargo")
        .current_dir(root())
        .args(["test", "-p", "witbox"])
        .args(extra))?;
    if extra.is_empty() {
        fuzz_run(&FUZZ_TARGETS, 18, Corpus::Smoke)?;
    }
    Ok(())
}

fn load(extra: &[String]) -> Result<(), String> {
    step("building the release host for `witbox mcp --http`");
    run(Command::new("cargo")
        .current_dir(root())
        .args(["build", "--release", "-p", "witbox"]))?;
    step("running the load test (release build)");
    run(Command::new("cargo")
        .current_dir(root())
        .args(["bench", "-p", "witbox", "--bench", "load", "--"])
        .args(extra))
}

/// The fuzz targets in `fuzz/fuzz_targets/`.
const FUZZ_TARGETS: [&str; 3] = ["json_value", "manifest", "load"];
const CARGO_FUZZ: &str = "0.13.2";

/// Where a fuzz run keeps its inputs.
#[derive(Clone, Copy, PartialEq)]
enum Corpus {
    /// `fuzz/corpus/TARGET/`, kept between runs.
    Kept,
    /// A fresh folder per run, so the smoke run in `cargo xtask test` takes the
    /// same time on every machine, whatever a long run left in the kept corpus.
    Smoke,
}

/// Builds the fuzz targets (optimised, no sanitizer: the host is safe Rust, and
/// what is looked for is panics, aborts, timeouts and memory blow-ups, which need
/// none; that is also why the stable toolchain will do) and runs each for
/// `seconds`. The `load` target is seeded with the real guests, and every target
/// replays `fuzz/regressions/TARGET/` (minimised crashers) first. Crashes land in
/// `fuzz/artifacts/TARGET/`.
fn fuzz_run(targets: &[&str], seconds: u64, corpus: Corpus) -> Result<(), String> {
    let root = root();
    let have = output(Command::new("cargo").args(["fuzz", "--version"])).unwrap_or_default();
    if !have.contains(CARGO_FUZZ) {
        step(&format!("installing cargo-fuzz {CARGO_FUZZ}"));
        run(Command::new("cargo").args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            CARGO_FUZZ,
        ]))?;
    }
    let fuzz = root.join("fuzz");
    step("building the fuzz targets");
    run(Command::new("cargo")
        .current_dir(&fuzz)
        .args(["fuzz", "build", "-s", "none", "-O"]))?;
    for target in targets {
        let dir = match corpus {
            Corpus::Kept => fuzz.join("corpus").join(target),
            Corpus::Smoke => fuzz.join("target/smoke").join(target),
        };
        if corpus == Corpus::Smoke {
            let _ = std::fs::remove_dir_all(&dir);
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if *target == "load" {
            for name in RUST_GUESTS {
                let from = artifacts().join(format!("{name}.wasm"));
                let _ = std::fs::copy(&from, dir.join(format!("{name}.wasm")));
            }
        }
        step(&format!("fuzzing `{target}` for {seconds} s"));
        let regressions = fuzz.join("regressions").join(target);
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&fuzz)
            .args(["fuzz", "run", "-s", "none", "-O", target])
            .arg(&dir)
            .args(regressions.is_dir().then_some(&regressions))
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-rss_limit_mb=4096",
                "-timeout=30",
                "-print_final_stats=1",
            ]);
        if corpus == Corpus::Kept {
            run(&mut cmd)?;
            continue;
        }
        // The smoke run keeps libFuzzer's progress lines in a log and shows its totals.
        let log = fuzz.join("target/smoke").join(format!("{target}.log"));
        let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let result = run(cmd.stderr(file));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if let Err(e) = result {
            eprintln!("{}", lines[lines.len().saturating_sub(40)..].join("\n"));
            return Err(format!("{e} (the whole log: {})", log.display()));
        }
        for line in lines {
            if line.starts_with("Done ") || line.starts_with("stat::") {
                println!("{line}");
            }
        }
    }
    Ok(())
}

fn fuzz(extra: &[String]) -> Result<(), String> {
    let targets: Vec<&str> = match extra.first().map(String::as_str) {
        Some(t) if FUZZ_TARGETS.contains(&t) => vec![t],
        Some(t) if t.parse::<u64>().is_err() => {
            return Err(format!(
                "unknown fuzz target `{t}` (targets: {})",
                FUZZ_TARGETS.join(", ")
            ));
        }
        _ => FUZZ_TARGETS.to_vec(),
    };
    let seconds = extra.iter().find_map(|a| a.parse().ok()).unwrap_or(600);
    fuzz_run(&targets, seconds, Corpus::Kept)
}

fn bench(extra: &[String]) -> Result<(), String> {
    step("running the bench (release build)");
    run(Command::new("cargo")
        .current_dir(root())
        .args(["bench", "-p", "witbox", "--bench", "witbox"])
        .args(extra))
}
