//! `cargo xtask demo`: the tools, linking and composing, Python cells, limits and
//! the agent loop, each shown as the `witbox` command a person would type.

use crate::{artifacts, demo_manifest, fixture, root, step};
use std::path::{Path, PathBuf};
use std::process::Command;

fn witbox() -> PathBuf {
    root().join("target/debug/witbox")
}

pub fn demo() -> Result<(), String> {
    let root = root();
    let server = fixture::Fixture::start();
    let dir = root.join("target/demo");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // The shipped manifest, with weather pointed at the fixture: `witbox tools`
    // with the shipped one lists what the demo shows.
    let shipped = root.join("witbox.toml");
    let shipped = std::fs::read_to_string(&shipped)
        .map_err(|e| format!("failed to read {}: {e}", shipped.display()))?;
    let manifest = dir.join("witbox.toml");
    let text = demo_manifest::derive(&shipped, &server.url())?;
    std::fs::write(&manifest, text).map_err(|e| e.to_string())?;
    // The runner's packages are found through the lock beside the manifest.
    std::fs::copy(root.join("witbox.lock"), dir.join("witbox.lock"))
        .map_err(|e| format!("failed to copy witbox.lock: {e}"))?;

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

    step("demo: Python cells in a sandboxed session (the runner was compiled at build time)");
    witbox(&["run", "-c", "x = 5 + 3", "-c", "x * 2"])?;
    // The whole stdlib, asyncio without sockets, and the shipped packages (witbox.lock).
    witbox(&[
        "run",
        "-c",
        "import asyncio, sympy\nasync def roots(eq):\n    await asyncio.sleep(0.01)\n    return sympy.solve(eq)\nawait asyncio.gather(roots('x**2-3*x+2'), roots('x**2-4'))",
    ])?;
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
