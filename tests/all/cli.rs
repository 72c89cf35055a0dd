//! The real `witbox` binary.

use crate::support::*;
use serde_json::{Value, json};
use std::process::{Command, Output};

fn witbox(manifest: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_witbox"))
        .arg("--manifest")
        .arg(manifest)
        .args(args)
        .env("WITBOX_CACHE_DIR", root().join("target/test-cache"))
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
