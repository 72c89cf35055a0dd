//! `witbox new tool` + `witbox build` in both languages, end to end, and the
//! Python tool that ships (`text-stats`).

use crate::fixture::Fixture;
use crate::support::*;
use serde_json::json;
use std::process::Output;

fn ok(out: Output) -> String {
    String::from_utf8_lossy(&ok_bytes(out)).into_owned()
}

fn ok_bytes(out: Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The three commands of the README: new, build, call.
fn scaffold(lang: &str, name: &str) {
    let dir = TempDir::new(&format!("new-{lang}"));
    let manifest = dir.path().join(name).join("witbox.toml");
    let said = ok(witbox_command(&manifest)
        .args(["new", "tool", name, "--lang", lang, "--dir"])
        .arg(dir.path())
        .output()
        .unwrap());
    assert!(said.contains("witbox build"), "{said}");
    ok(witbox_command(&manifest)
        .arg("build")
        .arg(dir.path().join(name))
        // Shared between test runs, so wit-bindgen is compiled once.
        .env("CARGO_TARGET_DIR", root().join("target/scaffold-target"))
        .output()
        .unwrap());
    let tool = format!("{}_greet", name.replace('-', "_"));
    let tools: serde_json::Value = serde_json::from_str(&ok(witbox_command(&manifest)
        .args(["tools", "--json"])
        .output()
        .unwrap()))
    .unwrap();
    assert_eq!(
        tools,
        json!([{
            "name": tool,
            "description": "Greets someone by name.",
            "parameters": {
                "type": "object",
                "properties": {"name": {"type": "string", "description": "Who to greet, for example `Ada`."}},
                "required": ["name"],
                "additionalProperties": false
            }
        }])
    );
    let answer = ok(witbox_command(&manifest)
        .args(["call", &tool, r#"{"name": "Ada"}"#])
        .output()
        .unwrap());
    assert_eq!(answer, "\"Hello, Ada!\"\n");
}

#[test]
fn a_new_rust_tool_builds_loads_and_answers() {
    scaffold("rust", "hello-rs");
}

#[test]
fn a_new_python_tool_builds_loads_and_answers() {
    scaffold("python", "hello-py");
}

#[test]
fn bad_tool_names_and_folders_are_clear_errors() {
    let dir = TempDir::new("new-bad");
    let manifest = dir.path().join("witbox.toml");
    let out = witbox_command(&manifest)
        .args(["new", "tool", "Hello World", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: `Hello World` is not a valid tool name: use lower-case letters, digits and single `-` (for example `word-count`), starting with a letter\n"
    );
    let out = witbox_command(&manifest)
        .args(["new", "tool", "fetch", "--http", "--lang", "rust", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: `--http` makes a Python tool (`requests` over `wasi:http`); a Rust tool reaches `wasi:http` through the `wasip2` crate, as `guests/weather` does\n"
    );
    assert!(!dir.path().join("fetch").exists());
    let out = witbox_command(&manifest)
        .arg("build")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: failed to read `"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn text_stats_is_a_tool_written_in_python() {
    let r = registry("text-stats", "[component.policy]\nmemory-mb = 64");
    let tool = r.tool("text_stats_analyze").unwrap();
    assert!(
        tool.description
            .starts_with("Counts the words, sentences and syllables")
    );
    let v = r
        .call(
            "text_stats_analyze",
            &json!({"text": "The cat sat on the mat. It was happy! Readability formulas estimate how hard a text is to read."}),
        )
        .await
        .unwrap();
    assert_eq!(
        v,
        json!({"words": 19, "sentences": 3, "syllables": 28, "characters": 77,
               "words-per-sentence": 6.33, "flesch-reading-ease": 75.7})
    );
    let empty = r
        .call("text_stats_analyze", &json!({"text": "  "}))
        .await
        .unwrap();
    assert_eq!(empty["words"], 0);
    let bad = r
        .call("text_stats_analyze", &json!({"text": 5}))
        .await
        .unwrap_err();
    assert_eq!(bad.kind, witbox::ErrorKind::InvalidArguments);
}

/// `guests/Cargo.toml` cannot import the pin `witbox new tool` writes, so it repeats
/// it; this is where the two copies are kept in step.
#[test]
fn the_guests_pin_the_wit_bindgen_that_new_tools_get() {
    use witbox::scaffold::toolchain::WIT_BINDGEN;
    let read = |path: &str| -> toml::Table {
        let path = root().join(path);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .parse()
            .unwrap()
    };
    let workspace = read("guests/Cargo.toml");
    assert_eq!(
        workspace["workspace"]["dependencies"]["wit-bindgen"].as_str(),
        Some(format!("={WIT_BINDGEN}").as_str()),
        "guests/Cargo.toml and host/src/scaffold/toolchain.rs pin different wit-bindgen versions"
    );
    // No guest pins its own.
    for member in workspace["workspace"]["members"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        let guest = read(&format!("guests/{member}/Cargo.toml"));
        assert_eq!(
            guest["dependencies"]["wit-bindgen"].get("workspace"),
            Some(&toml::Value::Boolean(true)),
            "guests/{member}/Cargo.toml pins its own wit-bindgen: use `wit-bindgen.workspace = true`"
        );
    }
}

#[test]
fn a_python_tool_builds_with_its_locked_packages() {
    let dir = TempDir::new("new-python-packages");
    let name = "table-py";
    let manifest = dir.path().join(name).join("witbox.toml");
    ok(witbox_command(&manifest)
        .args(["new", "tool", name, "--lang", "python", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap());
    let tool_dir = dir.path().join(name);
    std::fs::write(
        tool_dir.join("requirements.txt"),
        "tabulate==0.9.0  # tables\n",
    )
    .unwrap();
    std::fs::write(
        tool_dir.join("app.py"),
        "import tabulate\nfrom wit_world import exports\n\n\nclass Tool(exports.Tool):\n    \
         def greet(self, name: str) -> str:\n        \
         return tabulate.tabulate([['Hello', name]], tablefmt='plain')\n",
    )
    .unwrap();
    let out = witbox_command(&manifest)
        .arg("build")
        .arg(&tool_dir)
        .output()
        .unwrap();
    ok(out);
    let lock = witbox::packages::Lock::read(&tool_dir.join("witbox.lock"))
        .unwrap()
        .expect("the build wrote the tool's lock");
    assert_eq!(lock.requested, ["tabulate==0.9.0"]);
    assert_eq!(lock.packages[0].wheel, "tabulate-0.9.0-py3-none-any.whl");
    let answer = ok(witbox_command(&manifest)
        .args(["call", "table_py_greet", r#"{"name": "Ada"}"#])
        .output()
        .unwrap());
    assert_eq!(answer, "\"Hello  Ada\"\n");
}

/// `witbox new tool --http`: `requests` over `wasi:http`, under the tool's own
/// `allow-http`, against fixtures on 127.0.0.1; it reaches the granted origin and
/// nothing else, not even through a redirect.
#[test]
fn a_python_tool_with_requests_reaches_only_its_granted_origin() {
    let dir = TempDir::new("new-python-http");
    let name = "web-get";
    let tool_dir = dir.path().join(name);
    let manifest = tool_dir.join("witbox.toml");
    let said = ok(witbox_command(&manifest)
        .args(["new", "tool", name, "--http", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap());
    assert!(said.contains("allow-http"), "{said}");
    ok(witbox_command(&manifest)
        .arg("build")
        .arg(&tool_dir)
        .output()
        .unwrap());
    let lock = witbox::packages::Lock::read(&tool_dir.join("witbox.lock"))
        .unwrap()
        .expect("the build wrote the tool's lock");
    assert_eq!(
        lock.requested,
        ["requests==2.32.5", "requests-wasi-http==0.1.0"]
    );
    let locked: Vec<&str> = lock.packages.iter().map(|p| p.name.as_str()).collect();
    for dependency in ["urllib3", "idna", "certifi", "charset-normalizer"] {
        assert!(locked.contains(&dependency), "{locked:?}");
    }

    let granted = Fixture::start();
    let other = Fixture::start();
    let redirector = Fixture::redirecting(other.addr);
    let call = |url: String| {
        witbox_command(&manifest)
            .args(["call", "web_get_get"])
            .arg(json!({ "url": url }).to_string())
            .output()
            .unwrap()
    };
    let denied = |out: Output, origin: &str| {
        assert!(!out.status.success());
        let reason = "wasi-http request failed: ErrorCode_HttpRequestDenied()";
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "error (tool-error): `web_get_get` returned an error: \"{reason}\"; the host denied a request: `{origin}` is not in `allow-http`\ndetail: \"{reason}\"\n"
            )
        );
    };
    // The template grants nothing.
    denied(
        call(format!("{}/v1/search?name=Paris", granted.url())),
        &granted.url(),
    );
    assert!(granted.hits().is_empty());

    let text = std::fs::read_to_string(&manifest).unwrap();
    let grants = format!(
        "allow-http = [\"{}\", \"{}\"]",
        granted.url(),
        redirector.url()
    );
    std::fs::write(
        &manifest,
        text.replace("# allow-http = [\"https://example.com\"]", &grants),
    )
    .unwrap();
    let page: serde_json::Value =
        serde_json::from_str(&ok(call(format!("{}/v1/search?name=Paris", granted.url())))).unwrap();
    assert_eq!(page["status"], 200);
    assert_eq!(page["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(page["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["results"][0]["country"], "France");
    assert_eq!(granted.hits(), ["GET /v1/search?name=Paris HTTP/1.1"]);
    // An HTTP error is a page, not a failure.
    let missing: serde_json::Value =
        serde_json::from_str(&ok(call(format!("{}/nothing", granted.url())))).unwrap();
    assert_eq!(missing["status"], 404);

    // Not granted: refused by the host before anything is sent.
    denied(
        call(format!("{}/v1/search?name=Paris", other.url())),
        &other.url(),
    );
    // requests follows the redirect, and the host refuses where it leads.
    denied(
        call(format!("{}/v1/search?name=Paris", redirector.url())),
        &other.url(),
    );
    assert_eq!(redirector.hits().len(), 1);
    assert!(other.hits().is_empty(), "{:?}", other.hits());
}

/// The WASI WIT that `witbox new tool --http` writes is the one the host links:
/// the pinned `wasmtime-wasi-http`'s own.
#[test]
fn the_wasi_http_wit_of_new_tools_is_the_pinned_wasmtimes() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(root().join("Cargo.toml"))
        .output()
        .unwrap();
    let metadata: serde_json::Value = serde_json::from_slice(&ok_bytes(out)).unwrap();
    let crate_dir = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "wasmtime-wasi-http")
        .map(|p| std::path::PathBuf::from(p["manifest_path"].as_str().unwrap()))
        .expect("wasmtime-wasi-http is a dependency");
    let deps = crate_dir.parent().unwrap().join("wit/deps");
    let mut theirs: Vec<String> = std::fs::read_dir(&deps)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    theirs.sort();
    let ours: Vec<&str> = witbox::scaffold::WASI_HTTP_WIT
        .iter()
        .map(|(f, _)| *f)
        .collect();
    assert_eq!(ours, theirs);
    for (file, text) in witbox::scaffold::WASI_HTTP_WIT {
        let pinned = std::fs::read_to_string(deps.join(file)).unwrap();
        assert!(
            text == pinned,
            "host/src/scaffold/wasi-http/{file} differs from {}: copy it again",
            deps.join(file).display()
        );
    }
}
