//! The real `witbox` binary.

use crate::support::*;
use serde_json::{Value, json};
use std::process::Output;

fn witbox(manifest: &std::path::Path, args: &[&str]) -> Output {
    witbox_command(manifest)
        .args(args)
        .output()
        .expect("failed to run witbox")
}

fn manifest() -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new("cli");
    let path = dir.write("witbox.toml", entry("quadratic", "quadratic", ""));
    (dir, path)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn call_prints_the_roots() {
    let (_dir, m) = manifest();
    let out = witbox(
        &m,
        &[
            "call",
            "quadratic_solve",
            r#"{"a":1,"b":-3,"c":2}"#,
            "--json",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v, json!([{"re": 1.0, "im": 0.0}, {"re": 2.0, "im": 0.0}]));
}

#[test]
fn bad_arguments_print_an_error_object_and_exit_1() {
    let (_dir, m) = manifest();
    let out = witbox(&m, &["call", "quadratic_solve", r#"{"a":300}"#, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["error"]["kind"], "invalid-arguments");
    assert_eq!(
        v["error"]["message"],
        "invalid arguments for `quadratic_solve`: missing required argument `b`"
    );

    let out = witbox(&m, &["call", "quadratic_solve", "{not json", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["error"]["kind"], "invalid-arguments");
}

#[test]
fn errors_without_json_are_readable_and_exit_1() {
    let (_dir, m) = manifest();
    let out = witbox(&m, &["call", "quadratic_solve", r#"{"a":0,"b":0,"c":1}"#]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error (tool-error): `quadratic_solve` returned an error: \"no-solution\""),
        "{err}"
    );
}

#[test]
fn tools_lists_names_descriptions_and_schemas() {
    let (_dir, m) = manifest();
    let out = witbox(&m, &["tools", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v[0]["name"], "quadratic_solve");
    assert!(
        v[0]["description"]
            .as_str()
            .unwrap()
            .starts_with("Solves `a·x² + b·x + c = 0`")
    );
    assert_eq!(v[0]["parameters"]["required"], json!(["a", "b", "c"]));
}

#[test]
fn check_shows_the_tools_of_a_file() {
    let (_dir, m) = manifest();
    let out = witbox(&m, &["check", guest("weather").to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("weather_current"), "{}", stdout(&out));
    let dir = TempDir::new("check");
    let bad = dir.write("bad.wasm", b"\0asm\x01\0\0\0");
    let out = witbox(&m, &["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a usable agent-tool component"),
        "{err}"
    );
    assert!(
        err.contains("it is a core WebAssembly module, not a component"),
        "{err}"
    );
}

#[test]
fn a_missing_manifest_is_a_clear_error() {
    let out = witbox(std::path::Path::new("/nonexistent/witbox.toml"), &["tools"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: failed to read manifest `/nonexistent/witbox.toml`"),
        "{err}"
    );
}

#[test]
fn call_with_json_reports_load_failures_as_json() {
    let out = witbox(
        std::path::Path::new("/nonexistent/witbox.toml"),
        &["call", "quadratic_solve", "{}", "--json"],
    );
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["error"]["kind"], "load");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("failed to read manifest `/nonexistent/witbox.toml`"),
        "{v}"
    );
}

/// `witbox` with a manifest that has the quadratic tool and the Python runner,
/// with stdin from `input`.
fn python(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    drop(runner("")); // compile once, in process, before the CLI reads the cache
    let dir = TempDir::new("cli-py");
    let m = dir.write("witbox.toml", runner_manifest(""));
    let mut child = witbox_command(&m)
        .args(args)
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("failed to run witbox");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn run_keeps_state_between_cells() {
    let out = python(&["run", "--json", "-c", "x = 41", "-c", "print(x + 1)"], "");
    assert!(out.status.success(), "{out:?}");
    let cells = json_lines(&out);
    assert_eq!(cells.len(), 2);
    assert_eq!(cells[1]["stdout"], "42\n");
    for key in [
        "stdout",
        "stderr",
        "value",
        "error",
        "final_answer",
        "session_restarted",
        "duration_us",
    ] {
        assert!(cells[0].get(key).is_some(), "no `{key}` in {}", cells[0]);
    }
}

#[test]
fn run_grants_tools_only_with_tool() {
    let out = python(
        &[
            "run",
            "--tool",
            "quadratic_solve",
            "-c",
            "quadratic_solve(1, -3, 2)",
        ],
        "",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        "[{'re': 1.0, 'im': 0.0}, {'re': 2.0, 'im': 0.0}]\n"
    );
    let out = python(&["run", "-c", "quadratic_solve(1, -3, 2)"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .ends_with("NameError: name 'quadratic_solve' is not defined\n"),
        "{out:?}"
    );
    let out = python(&["run", "--tool", "nope_*", "-c", "1"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: `--tool nope_*` matches no tool (loaded: quadratic_solve)\n"
    );
}

#[test]
fn run_reads_cells_from_a_file_or_stdin_and_exits_by_the_last_cell() {
    let out = python(
        &["run", "-c", "n = 2", "-"],
        "m = n * 10\n# %% second cell\nprint(m)\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "20\n");
    // An error in the last cell is exit 1; one before it is not.
    let out = python(&["run", "-c", "1/0", "-c", "'fine'"], "");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "'fine'\n");
    let out = python(
        &["run", "--timeout-ms", "200", "-c", "while True: pass"],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Timeout: the run was stopped after its time limit of 200 ms\n[witbox] the Python session restarted because a run passed its time limit: its globals are gone\n"
    );
    let out = python(&["run"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: nothing to run: give code with `-c CODE` or a file (see `witbox run --help`)\n"
    );
}

#[test]
fn repl_runs_lines_and_blocks_and_commands() {
    let out = python(
        &["repl", "--tool", "quadratic_solve"],
        "x = 2\ndef sq(v):\n    return v * v\n\nsq(x)\n:tools\n:reset\nx\n",
    );
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("4\n"), "{text}");
    assert!(
        text.contains("quadratic_solve  (help(quadratic_solve) shows its parameters)"),
        "{text}"
    );
    assert!(text.contains("(globals cleared)"), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NameError: name 'x' is not defined"),
        "{out:?}"
    );
}

#[test]
fn numbers_out_of_range_are_errors_naming_the_key() {
    for (flag, value, expected) in [
        (
            "--max-output-bytes",
            "18446744073709551615",
            "error: invalid runner limits: `max-output-bytes` must be above 0 and at most 1073741824, got 18446744073709551615\n",
        ),
        (
            "--memory-mb",
            "17592186044416",
            "error: invalid runner limits: `memory-mb` must be above 0 and at most 4096, got 17592186044416\n",
        ),
        (
            "--timeout-ms",
            "0",
            "error: invalid runner limits: `timeout-ms` must be above 0 and at most 86400000, got 0\n",
        ),
    ] {
        let out = python(&["run", flag, value, "-c", "1"], "");
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), expected);
    }
    let (_dir, m) = manifest();
    let out = witbox(&m, &["agent", "--timeout-s", "1e15", "solve x^2 = 4"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: `--timeout-s` must be a number of seconds above 0 and at most 86400, got 1000000000000000\n"
    );
}

#[test]
fn check_refuses_a_fifo_instead_of_waiting_on_it() {
    let dir = TempDir::new("check-fifo");
    let fifo = dir.path().join("tool.wasm");
    crate::support::fifo(&fifo);
    let mut child = witbox_command(&dir.path().join("witbox.toml"))
        .arg("check")
        .arg(&fifo)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!("`witbox check` blocked on a FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        stderr,
        format!(
            "error: `{0}` is not a usable agent-tool component: failed to read component `tool` from `{0}` (run `cargo xtask build` to build the guests): `{0}` is a FIFO, not a regular file\n",
            fifo.display()
        )
    );
}

#[test]
fn ctrl_c_in_the_repl_stops_the_cell_and_keeps_the_repl() {
    use std::io::{BufRead, BufReader, Write};
    drop(runner(""));
    let dir = TempDir::new("cli-repl-int");
    let m = dir.write("witbox.toml", runner_manifest("timeout-ms = 60000"));
    let mut child = witbox_command(&m)
        .arg("repl")
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("failed to run witbox");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // The cell prints once it runs, then spins for its 60 s.
    stdin
        .write_all(b"print('spinning', flush=True)\nwhile True: pass\n\n")
        .unwrap();
    let mut line = String::new();
    // Each cell is its own line: the print runs as one, the loop as the next.
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "spinning\n");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let int = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(int.success());
    stdin.write_all(b"print('alive')\n:quit\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "Ctrl-C did not stop the cell"
    );
    assert!(out.status.success(), "{out:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "alive\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "KeyboardInterrupt: the cell was stopped; the session starts again with the next cell\n\
         [witbox] the Python session restarted because the previous run was cancelled: the globals of the last completed cell were restored\n"
    );
}
