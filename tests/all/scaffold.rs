//! `witbox new tool` + `witbox build` in both languages, end to end, and the
//! Python tool that ships (`text-stats`).

use crate::support::*;
use serde_json::json;
use std::process::Output;

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
