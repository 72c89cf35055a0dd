//! Bad input at load time: each a clear error naming the component and the problem.

use crate::support::*;

fn load_file(name: &str, bytes: &[u8]) -> String {
    let dir = TempDir::new("malformed");
    dir.write(&format!("{name}.wasm"), bytes);
    let manifest = format!("[[component]]\nname = \"{name}\"\npath = \"{name}.wasm\"\n");
    let manifest = witbox::Manifest::parse(&manifest, dir.path()).unwrap();
    let err = witbox::Registry::load(&manifest, options())
        .err()
        .expect("loading should fail");
    format!("{err:#}")
}

#[test]
fn a_file_that_is_not_wasm() {
    let e = load_file("notwasm", b"#!/bin/sh\necho hi\n");
    assert!(
        e.starts_with("failed to load component `notwasm` from `"),
        "{e}"
    );
    assert!(
        e.ends_with("it is not WebAssembly (the file does not start with `\\0asm`)"),
        "{e}"
    );
}

#[test]
fn a_core_module() {
    let e = load_file("core", b"\0asm\x01\0\0\0");
    assert!(
        e.ends_with("it is a core WebAssembly module, not a component; build it for `wasm32-wasip2` or wrap it with `wasm-tools component new`"),
        "{e}"
    );
}

#[test]
fn a_component_without_exports() {
    let e = load_file("empty", b"\0asm\x0d\0\x01\0");
    assert_eq!(
        e,
        "component `empty` exports no functions, so it gives no tools"
    );
}

#[test]
fn a_truncated_component() {
    let bytes = std::fs::read(guest("quadratic")).unwrap();
    let e = load_file("cut", &bytes[..bytes.len() / 2]);
    assert!(
        e.starts_with("failed to load component `cut` from `"),
        "{e}"
    );
}

#[test]
fn a_missing_file_says_how_to_build_it() {
    let e = witbox::Registry::load(
        &witbox::Manifest::parse(
            "[[component]]\nname = \"ghost\"\npath = \"nowhere/ghost.wasm\"\n",
            &root(),
        )
        .unwrap(),
        options(),
    )
    .err()
    .unwrap();
    let e = format!("{e:#}");
    assert!(
        e.starts_with("failed to read component `ghost` from `"),
        "{e}"
    );
    assert!(
        e.contains("(run `cargo xtask build` to build the guests)"),
        "{e}"
    );
}

#[test]
fn bad_manifests() {
    let cases = [
        (
            "[[component]]\nname = \"q\"\npath = \"q.wasm\"\nbogus = 1\n",
            "unknown field `bogus`",
        ),
        (
            "[[component]]\nname = \"q\"\npath = \"q.wasm\"\n[component.policy]\nallow-net = []\n",
            "unknown field `allow-net`",
        ),
        (
            "[[component]]\nname = \"Q!\"\npath = \"q.wasm\"\n",
            "invalid component name `Q!`",
        ),
        (
            "[[component]]\nname = \"q\"\npath = \"q.wasm\"\n[component.policy]\nallow-http = [\"ftp://x\"]\n",
            "component `q`: invalid `allow-http`: `ftp://x`: the scheme must be `http` or `https`",
        ),
        (
            "[[component]]\nname = \"q\"\npath = \"q.wasm\"\n[component.policy]\nallow-http = [\"http://x/path\"]\n",
            "only `scheme://host[:port]` is allowed",
        ),
        (
            "[[component]]\nname = \"q\"\npath = \"q.wasm\"\n[component.policy]\ntimeout-ms = 0\n",
            "must be above 0",
        ),
        (
            "[[component]]\nname = \"q\"\npath = \"a.wasm\"\n[[component]]\nname = \"q\"\npath = \"b.wasm\"\n",
            "component `q` is listed twice",
        ),
    ];
    for (text, expected) in cases {
        let e = format!("{:#}", witbox::Manifest::parse(text, &root()).unwrap_err());
        assert!(e.contains(expected), "{text}\n→ {e}");
    }
}

#[test]
fn a_resource_in_a_tool_signature() {
    let e = format!(
        "{:#}",
        load(&entry("badtype", "badtype", "")).err().unwrap()
    );
    assert!(
        e.starts_with("failed to load component `badtype` from `"),
        "{e}"
    );
    assert!(
        e.ends_with("the result of function `make` of `witbox:badtype/counters@0.1.0` is a resource, which a tool cannot take or return"),
        "{e}"
    );
}

#[test]
fn tool_name_collisions_are_load_errors() {
    // `testkit` + `get-env` and `testkit_get` + `env` both give `testkit_get_env`.
    let manifest = entry("testkit", "testkit", "") + &entry("testkit_get", "clash", "");
    let e = format!("{:#}", load(&manifest).err().unwrap());
    assert_eq!(
        e,
        "tool name collision: `testkit_get_env` comes from both `testkit` and `testkit_get`; rename one component in the manifest"
    );
    // Under another name it loads and works.
    assert!(load(&(entry("testkit", "testkit", "") + &entry("other", "clash", ""))).is_ok());
}
