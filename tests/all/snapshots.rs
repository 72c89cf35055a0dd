//! Snapshots: a session's globals and files as bytes another session (here, or
//! in another process of the same runner build and user) starts from; and the
//! state dir, which keeps sessions across processes.

use crate::support::*;
use serde_json::{Value, json};
use witbox::ErrorKind;

#[tokio::test]
async fn a_snapshot_restores_globals_and_files_in_a_new_session() {
    let runner = runner("");
    let mut s = runner.session().await.unwrap();
    let o = cell(
        &mut s,
        "import json as j\ndata = {'a': [1, 2]}\ndef total(): return sum(data['a'])\nimport os\nos.makedirs('notes', exist_ok=True)\nopen('notes/n.txt', 'w').write('kept')\ngen = (i for i in range(2))",
    )
    .await;
    assert!(o.ok(), "{o:?}");
    let bytes = s.snapshot().await.unwrap();
    drop(s);
    let (mut t, missing) = runner.restore(&bytes).await.unwrap();
    assert_eq!(missing, ["gen: a generator cannot be checkpointed"]);
    let o = cell(&mut t, "total(), j.dumps(data), open('notes/n.txt').read()").await;
    assert_eq!(
        o.value.as_deref(),
        Some("(3, '{\"a\": [1, 2]}', 'kept')"),
        "{o:?}"
    );
}

#[tokio::test]
async fn a_damaged_changed_or_foreign_snapshot_is_refused() {
    let runner = runner("");
    let mut s = runner.session().await.unwrap();
    cell(&mut s, "x = 1").await;
    let good = s.snapshot().await.unwrap();
    let refused = |bytes: Vec<u8>| {
        let runner = runner.clone();
        async move {
            let e = runner.restore(&bytes).await.err().expect("restored");
            assert_eq!(e.kind, ErrorKind::InvalidArguments);
            e.message
        }
    };
    assert_eq!(
        refused(b"hello".to_vec()).await,
        "the data is not a witbox snapshot"
    );
    let mut changed = good.clone();
    let at = changed.len() - 40;
    changed[at] ^= 1;
    assert_eq!(
        refused(changed).await,
        "the snapshot is damaged or was changed: its signature does not match (or it was made by another user, whose key this is not)"
    );
    assert_eq!(
        refused(good[..good.len() - 1].to_vec()).await,
        "the snapshot is damaged or was changed: its signature does not match (or it was made by another user, whose key this is not)"
    );
    let mut version = good.clone();
    version[10] = 9;
    assert_eq!(
        refused(version).await,
        "the snapshot has format version 9; this witbox reads version 1"
    );
    // Bytes 12..44 name the runner build that made it.
    let mut foreign = good.clone();
    foreign[12] ^= 0xff;
    let said = refused(foreign).await;
    assert!(
        said.starts_with("the snapshot was made by another build of the Python runner (sha256 ")
            && said.ends_with("…): restore it where it was made"),
        "{said}"
    );
    assert!(runner.restore(&good).await.is_ok());
}

#[test]
fn the_cli_snapshots_a_run_and_restores_it_in_another_process() {
    drop(runner(""));
    let dir = TempDir::new("cli-snap");
    let m = dir.write("witbox.toml", runner_manifest(""));
    let snap = dir.path().join("s.snap");
    let run = |args: &[&str]| {
        witbox_command(&m)
            .env("WITBOX_DATA_DIR", dir.path())
            .arg("run")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "-c",
        "x = 20\nopen('f.txt', 'w').write('file')",
        "--snapshot-to",
        snap.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = run(&[
        "--restore",
        snap.to_str().unwrap(),
        "-c",
        "x + 1, open('f.txt').read()",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "(21, 'file')\n");
    // Another user's key does not sign it.
    let other = TempDir::new("cli-snap-other");
    let out = witbox_command(&m)
        .env("WITBOX_DATA_DIR", other.path())
        .args(["run", "--restore", snap.to_str().unwrap(), "-c", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: failed to restore the snapshot `{}`: the snapshot is damaged or was changed: its signature does not match (or it was made by another user, whose key this is not)\n",
            snap.display()
        )
    );
}

/// Runs `tests/python/mcp_sessions.py` (the official Python MCP SDK) against
/// real `witbox mcp` processes.
fn sessions_script(dir: &TempDir) -> Value {
    drop(runner(""));
    let m = dir.write("witbox.toml", runner_manifest(""));
    let out = std::process::Command::new(root().join(".venv/bin/python"))
        .arg(root().join("tests/python/mcp_sessions.py"))
        .arg(env!("CARGO_BIN_EXE_witbox"))
        .arg(&m)
        .arg(dir.path().join("state"))
        .env("WITBOX_CACHE_DIR", root().join("target/test-cache"))
        .env("WITBOX_DATA_DIR", dir.path())
        .output()
        .expect("run `cargo xtask test` to install the Python MCP SDK into .venv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON ({e}):\n{stdout}"))
}

#[test]
fn mcp_sessions_move_between_processes() {
    let dir = TempDir::new("mcp-sessions");
    let seen = sessions_script(&dir);
    // snapshot_session in one `witbox mcp`, restore_session in another.
    assert_eq!(
        seen["moved"],
        json!({"value": "(42, 'moved')", "not_restored": []}),
        "{seen}"
    );
    // A client that starts a new `witbox mcp --state-dir` per call keeps `x`.
    assert_eq!(seen["per_call"], json!(["1", "2", "3"]), "{seen}");
    // close_session deletes it from the state dir: the next process cannot find it.
    assert!(
        seen["after_close"]
            .as_str()
            .unwrap()
            .starts_with("not-found: unknown session `s-"),
        "{seen}"
    );
    assert_eq!(seen["state_files_after_close"], 0, "{seen}");
}

#[test]
fn witbox_run_continues_a_session_from_the_state_dir() {
    drop(runner(""));
    let dir = TempDir::new("cli-state");
    let m = dir.write("witbox.toml", runner_manifest(""));
    let state = dir.path().join("state");
    let run = |args: &[&str]| {
        witbox_command(&m)
            .env("WITBOX_DATA_DIR", dir.path())
            .arg("run")
            .arg("--state-dir")
            .arg(&state)
            .args(args)
            .output()
            .unwrap()
    };
    let first = run(&["-c", "x = 1"]);
    assert!(first.status.success(), "{first:?}");
    let said = String::from_utf8_lossy(&first.stderr).into_owned();
    let id = said
        .split_whitespace()
        .find(|w| w.starts_with("s-"))
        .unwrap_or_else(|| panic!("{said}"))
        .trim_end_matches(',')
        .to_string();
    assert_eq!(
        said,
        format!(
            "[witbox] session {id}, kept in {} (continue it with --session {id})\n",
            state.display()
        )
    );
    let second = run(&["--session", &id, "-c", "x += 1", "-c", "x"]);
    assert_eq!(String::from_utf8_lossy(&second.stdout), "2\n", "{second:?}");
    let third = run(&["--session", &id, "-c", "x"]);
    assert_eq!(String::from_utf8_lossy(&third.stdout), "2\n", "{third:?}");
    for (session, said) in [
        (
            "s-bad",
            "error: `--session s-bad` is not a session id (`s-` and 32 hex digits)\n".to_string(),
        ),
        (
            "s-00000000000000000000000000000000",
            format!(
                "error: no session `s-00000000000000000000000000000000` in `{}`: it was closed, or it sat idle past its TTL\n",
                state.display()
            ),
        ),
        // A path is never an id.
        (
            "../../etc/passwd",
            "error: `--session ../../etc/passwd` is not a session id (`s-` and 32 hex digits)\n"
                .to_string(),
        ),
    ] {
        let out = run(&["--session", session, "-c", "x"]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(String::from_utf8_lossy(&out.stderr), said);
    }
}
