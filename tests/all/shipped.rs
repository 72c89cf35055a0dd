//! The shipped `witbox.toml`: it loads every shipped tool, and the demo's manifest,
//! which `cargo xtask demo` derives from it, lists the same components.

#[path = "../../xtask/src/demo_manifest.rs"]
mod demo_manifest;

use crate::fixture::Fixture;
use crate::support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use witbox::{Manifest, Registry};

/// The tools `witbox tools` lists in `cargo xtask demo`, in its order.
const DEMO_TOOLS: [&str; 4] = [
    "quadratic_solve",
    "weather_current",
    "equation_report_report",
    "text_stats_analyze",
];

/// Guests in `guests/` that exist for the tests only: built to break limits or to fail loading.
const TEST_GUESTS: [&str; 3] = ["testkit", "badtype", "clash"];

fn shipped() -> Manifest {
    Manifest::load(&root().join("witbox.toml")).unwrap()
}

fn file(manifest: &Manifest, path: &Path) -> PathBuf {
    let path = manifest.resolve(path);
    path.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}: run `cargo xtask build` first", path.display()))
}

fn names(registry: &Registry) -> Vec<String> {
    registry.tools().iter().map(|t| t.name.clone()).collect()
}

#[test]
fn the_shipped_manifest_loads_every_shipped_tool() {
    // Every tool folder in `guests/` (a `wit/world.wit`) that is not a test guest.
    let mut tools: Vec<String> = std::fs::read_dir(root().join("guests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("wit/world.wit").exists())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|name| !TEST_GUESTS.contains(&name.as_str()))
        .collect();
    tools.sort();
    let manifest = shipped();
    let mut components: Vec<String> = manifest.component.iter().map(|c| c.name.clone()).collect();
    components.sort();
    assert_eq!(components, tools);
    assert_eq!(
        file(&manifest, &manifest.runner.path),
        guest("python-runner").canonicalize().unwrap()
    );

    // What a person sees after `cargo xtask demo`, from the real binary. The
    // first run compiles text-stats (a CPython): one test at a time.
    let out = compiling(|| {
        witbox_command(&root().join("witbox.toml"))
            .args(["tools", "--json"])
            .output()
            .unwrap()
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<&str> = listed.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(listed, DEMO_TOOLS);
}

#[tokio::test]
async fn the_demo_manifest_is_the_shipped_one_with_weather_on_the_fixture() {
    let server = Fixture::start();
    let text = std::fs::read_to_string(root().join("witbox.toml")).unwrap();
    let derived = demo_manifest::derive(&text, &server.url()).unwrap();
    // Where the demo writes it; its paths are relative to that folder.
    let dir = root().join("target/demo");
    std::fs::create_dir_all(&dir).unwrap();
    let demo = Manifest::parse(&derived, &dir).unwrap();

    let shipped = shipped();
    assert_eq!(demo.component.len(), shipped.component.len());
    for (d, s) in demo.component.iter().zip(&shipped.component) {
        assert_eq!(d.name, s.name);
        assert_eq!(file(&demo, &d.path), file(&shipped, &s.path), "{}", d.name);
        if d.name == "weather" {
            let mut policy = s.policy.clone();
            policy.allow_http = vec![server.url()];
            assert_eq!(d.policy, policy);
            let urls: Vec<(&str, &str)> = d
                .config
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let url = server.url();
            assert_eq!(
                urls,
                [
                    ("forecast-url", url.as_str()),
                    ("geocoding-url", url.as_str())
                ]
            );
        } else {
            assert_eq!(d.policy, s.policy, "{}", d.name);
            assert_eq!(d.config, s.config, "{}", d.name);
        }
    }
    assert_eq!(
        file(&demo, &demo.runner.path),
        file(&shipped, &shipped.runner.path)
    );
    assert_eq!(demo.runner.policy, shipped.runner.policy);
    assert_eq!(demo.runner.max_sessions, shipped.runner.max_sessions);
    assert_eq!(demo.runner.session_ttl_s, shipped.runner.session_ttl_s);

    let registry = compiling(|| Registry::load(&demo, options())).unwrap();
    assert_eq!(names(&registry), DEMO_TOOLS);
    let paris = registry
        .call("weather_current", &serde_json::json!({"city": "Paris"}))
        .await
        .unwrap();
    assert_eq!(paris["city"], "Paris");
    assert_eq!(server.hits().len(), 2, "{:?}", server.hits());
}

#[test]
fn a_shipped_manifest_without_weather_is_a_clear_demo_error() {
    let text = "[[component]]\nname = \"quadratic\"\npath = \"target/guests/quadratic.wasm\"\n";
    assert_eq!(
        demo_manifest::derive(text, "http://127.0.0.1:1").unwrap_err(),
        "witbox.toml has no `weather` component to point at the fixture"
    );
}

#[test]
fn the_shipped_runner_has_its_locked_packages() {
    // `cargo xtask build` ran `witbox runner build` for the checked-in witbox.lock.
    let manifest = shipped();
    let lock = witbox::packages::Lock::read(&witbox::packages::lock_path(&manifest))
        .unwrap()
        .expect("witbox.lock is checked in");
    assert_eq!(
        lock.requested,
        witbox::packages::requested(&manifest, &manifest.runner).unwrap()
    );
    let out = compiling(|| {
        witbox_command(&root().join("witbox.toml"))
            .args(["run", "-c"])
            .arg(
                "import sympy, dateutil.parser, tabulate, more_itertools\n\
                 (sympy.solve('x**2-3*x+2'), dateutil.parser.parse('2026-12-02T10:00Z').year, \
                 tabulate.tabulate([[1]]), list(more_itertools.chunked(range(3), 2)))",
            )
            .output()
            .unwrap()
    });
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "([1, 2], 2026, '-\\n1\\n-', [[0, 1], [2]])\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_mcp_instructions_list_the_shipped_packages() {
    use std::io::{BufRead, Write};
    let mut child = witbox_command(&root().join("witbox.toml"))
        .arg("mcp")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"}}});
    writeln!(child.stdin.as_mut().unwrap(), "{init}").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let reply: Value = serde_json::from_str(&line).unwrap();
    let instructions = reply["result"]["instructions"].as_str().unwrap();
    assert!(
        instructions.contains(
            "the packages more-itertools 10.8.0, mpmath 1.3.0, python-dateutil 2.9.0.post0, \
             six 1.17.0, sympy 1.14.0, tabulate 0.9.0 (no others can be installed)"
        ),
        "{instructions}"
    );
}
