//! The acceptance cases of the Python runner, run through `witbox run --json`
//! exactly as their file describes. Cases come from `tests/acceptance/` and, when
//! the shared folder next to the repository exists, from `../shared/acceptance/`
//! too (a case there replaces the one with the same id here).

use crate::support::*;
use serde_json::Value;

fn cases() -> Vec<Value> {
    let mut cases: Vec<Value> = Vec::new();
    let files = [
        root().join("tests/acceptance/python-runner.json"),
        root().join("../shared/acceptance/python-runner.json"),
    ];
    for file in files.iter().filter(|f| f.exists()) {
        let text = std::fs::read_to_string(file).unwrap();
        let doc: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
        for case in doc["cases"].as_array().expect("a `cases` array") {
            cases.retain(|c| c["id"] != case["id"]);
            cases.push(case.clone());
        }
    }
    assert!(
        cases.len() >= 35,
        "only {} acceptance cases found",
        cases.len()
    );
    cases
}

fn run_case(manifest: &std::path::Path, case: &Value) -> Result<(), String> {
    let mut cmd = witbox_command(manifest);
    cmd.args(["run", "--json"]);
    let options = case["options"].as_object().cloned().unwrap_or_default();
    for (key, value) in &options {
        let flag = match key.as_str() {
            "timeout_ms" => "--timeout-ms",
            "memory_mb" => "--memory-mb",
            "max_output_bytes" => "--max-output-bytes",
            other => return Err(format!("unknown option `{other}`")),
        };
        cmd.arg(flag).arg(value.to_string());
    }
    for tool in case["tools"].as_array().into_iter().flatten() {
        cmd.arg("--tool").arg(tool.as_str().unwrap());
    }
    for cell in case["cells"].as_array().unwrap() {
        cmd.arg("-c").arg(cell.as_str().unwrap());
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON: {l:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let expects = case["expect"].as_array().unwrap();
    if results.len() != expects.len() {
        return Err(format!(
            "{} results for {} cells; stderr: {}",
            results.len(),
            expects.len(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    for (i, (got, want)) in results.iter().zip(expects).enumerate() {
        check(got, want).map_err(|e| format!("cell {}: {e}\n  result: {got}", i + 1))?;
    }
    Ok(())
}

fn check(got: &Value, want: &Value) -> Result<(), String> {
    let text = |k: &str| got[k].as_str().unwrap_or("").to_string();
    let error_type = got["error"]["type"].as_str().unwrap_or("");
    for (key, expected) in want.as_object().unwrap() {
        let ok = match key.as_str() {
            "stdout" | "value" | "final_answer" | "session_restarted" => got[key] == *expected,
            "error" if expected.is_null() => got["error"].is_null(),
            "stdout_contains" => text("stdout").contains(expected.as_str().unwrap()),
            "stdout_not_contains" => !text("stdout").contains(expected.as_str().unwrap()),
            "stderr_contains" => text("stderr").contains(expected.as_str().unwrap()),
            "error_type" => error_type == expected,
            "error_type_in" => expected.as_array().unwrap().iter().any(|t| t == error_type),
            "error_message_contains" => got["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(expected.as_str().unwrap())),
            "error_line" => got["error"]["line"] == *expected,
            // A limit check, not a benchmark: the run must be stopped near its limit.
            "max_seconds" => {
                got["duration_us"].as_f64().unwrap() / 1e6 <= expected.as_f64().unwrap()
            }
            "host_file_absent" => !std::path::Path::new(expected.as_str().unwrap()).exists(),
            other => return Err(format!("unknown expectation `{other}`")),
        };
        if !ok {
            return Err(format!("expected {key} = {expected}"));
        }
    }
    Ok(())
}

#[test]
fn acceptance_cases_pass_through_the_cli() {
    let dir = TempDir::new("acceptance");
    let manifest = dir.write("witbox.toml", runner_manifest(""));
    // Compile once, in process, before the CLI runs read the cache.
    drop(runner(""));
    let failures: Vec<String> = cases()
        .iter()
        .filter_map(|case| {
            run_case(&manifest, case)
                .err()
                .map(|e| format!("case `{}`: {e}", case["id"].as_str().unwrap_or("?")))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
