//! The audit log: one JSON line per tool call and code run, however it ends.

use crate::support::*;
use serde_json::{Value, json};
use std::sync::Arc;
use witbox::audit::AuditLog;
use witbox::{Manifest, Registry, Runner};

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A registry and runner (granted `quadratic_solve`) of quadratic (with `quadratic`'s
/// policy lines) and testkit (with `testkit`'s), logging to `DIR/audit.jsonl`.
fn logged(
    label: &str,
    quadratic: &str,
    testkit: &str,
) -> (TempDir, std::path::PathBuf, Arc<Registry>, Arc<Runner>) {
    let dir = TempDir::new(label);
    let path = dir.path().join("audit.jsonl");
    let mut options = options();
    options.audit = Some(Arc::new(AuditLog::open(&path).unwrap()));
    let text = format!(
        "{}{}[runner]\npath = {:?}\n[runner.policy]\ncall-tools = [\"quadratic_solve\"]\n",
        entry("quadratic", "quadratic", quadratic),
        entry("testkit", "testkit", testkit),
        guest("python-runner")
    );
    let manifest = Manifest::parse(&text, &root()).unwrap();
    let (registry, runner) = compiling(|| {
        let registry = Registry::load(&manifest, options).unwrap();
        let runner = Runner::load(&manifest, &manifest.runner, registry.clone()).unwrap();
        (registry, runner)
    });
    (dir, path, registry, runner)
}

#[tokio::test]
async fn every_call_and_run_is_logged_even_when_it_traps() {
    let (_dir, path, registry, runner) = logged(
        "audit",
        "[component.policy]\nfuel = 10000000",
        "[component.policy]\ntimeout-ms = 200",
    );
    registry
        .call("quadratic_solve", &json!({"a": 1, "b": -3, "c": 2}))
        .await
        .unwrap();
    registry
        .call("testkit_crash", &json!({"message": "boom"}))
        .await
        .unwrap_err();
    registry.call("testkit_spin", &json!({})).await.unwrap_err();
    let mut s = runner.session().await.unwrap();
    s.run("quadratic_solve(1, 0, -1)").await.unwrap();
    s.run("1 / 0").await.unwrap();
    // A managed session (MCP's `run_python`) names itself in its runs and calls.
    let sessions = witbox::Sessions::new(runner.clone(), 2, std::time::Duration::from_secs(60));
    let id = sessions.create().await.unwrap();
    sessions
        .run(&id, "quadratic_solve(1, 0, -4)")
        .await
        .unwrap();
    let named = format!("session {id}");

    let log = lines(&path);
    let brief: Vec<Value> = log
        .iter()
        .map(|l| json!([l["kind"], l["caller"], l["tool"], l["outcome"], l["error"]]))
        .collect();
    assert_eq!(
        brief,
        vec![
            json!(["call", "host", "quadratic_solve", "ok", null]),
            json!(["call", "host", "testkit_crash", "error", "trap"]),
            json!(["call", "host", "testkit_spin", "error", "timeout"]),
            json!(["call", "runner", "quadratic_solve", "ok", null]),
            json!(["run", "host", "runner", "ok", null]),
            json!(["run", "host", "runner", "error", "ZeroDivisionError"]),
            json!(["call", named, "quadratic_solve", "ok", null]),
            json!(["run", named, "runner", "ok", null]),
        ]
    );
    for line in &log {
        assert_eq!(line["args_hmac"].as_str().unwrap().len(), 32, "{line}");
        assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
        assert!(line["duration_ms"].as_f64().unwrap() >= 0.0, "{line}");
        assert!(line["peak_memory_bytes"].as_u64().unwrap() > 0, "{line}");
    }
    // Fuel appears where the policy meters it; the same call uses the same fuel.
    assert!(log[0]["fuel"].as_u64().unwrap() > 0, "{}", log[0]);
    assert!(log[1].get("fuel").is_none());
    // The same arguments give the same digest, different ones a different one.
    assert_ne!(log[0]["args_hmac"], log[3]["args_hmac"]);
    assert!(log[2]["duration_ms"].as_f64().unwrap() >= 200.0);
    // Fuel is deterministic: the same call again uses the same fuel.
    registry
        .call("quadratic_solve", &json!({"a": 1, "b": -3, "c": 2}))
        .await
        .unwrap();
    let again = lines(&path).pop().unwrap();
    assert_eq!(again["fuel"], log[0]["fuel"]);
    assert_eq!(again["args_hmac"], log[0]["args_hmac"]);
}

#[tokio::test]
async fn refused_calls_are_logged_too_and_digests_are_keyed() {
    let (dir, path, registry, runner) = logged("audit-refused", "", "");
    let args = json!({"a": 1, "b": -3, "c": 2});
    registry.call("quadratic_solve", &args).await.unwrap();
    registry
        .call("quadratic_solve", &json!({"a": "x"}))
        .await
        .unwrap_err();
    registry.call("no_such_tool", &json!({})).await.unwrap_err();
    let mut s = runner.session().await.unwrap();
    // Not granted, and not a tool: refused before anything runs, logged all the same.
    s.run("from wit_world.imports import host\n\
           for name in ['testkit_get_env', 'nope']:\n    try:\n        host.call_tool(name, '{}')\n    except Exception:\n        pass")
        .await
        .unwrap();
    let log = lines(&path);
    let brief: Vec<Value> = log
        .iter()
        .map(|l| json!([l["kind"], l["caller"], l["tool"], l["outcome"], l["error"]]))
        .collect();
    assert_eq!(
        brief,
        vec![
            json!(["call", "host", "quadratic_solve", "ok", null]),
            json!([
                "call",
                "host",
                "quadratic_solve",
                "error",
                "invalid-arguments"
            ]),
            json!(["call", "host", "(unknown)", "error", "not-found"]),
            json!(["call", "runner", "testkit_get_env", "error", "denied"]),
            json!(["call", "runner", "(unknown)", "error", "denied"]),
            json!(["run", "host", "runner", "ok", null]),
        ]
    );
    assert_eq!(log[1]["peak_memory_bytes"], 0);
    // The digest is keyed: not the plain SHA-256 of the arguments, and another
    // log (another key) gives the same arguments another digest.
    let plain = <sha2::Sha256 as sha2::Digest>::digest(serde_json::to_vec(&args).unwrap());
    let plain = witbox::text::hex(&plain[..16]);
    assert_ne!(log[0]["args_hmac"], json!(plain));
    let other = AuditLog::open(&dir.path().join("other.jsonl")).unwrap();
    let same = AuditLog::open(&path).unwrap();
    let bytes = serde_json::to_vec(&args).unwrap();
    assert_ne!(other.digest(&bytes), same.digest(&bytes));
}
