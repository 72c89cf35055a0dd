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

#[test]
fn a_witbox_wit_section_that_contradicts_the_component_is_a_load_error() {
    // The quadratic solver, with docs that say `a` is a string: every call would fail.
    let bytes = std::fs::read(guest("quadratic")).unwrap();
    let payload = witbox::tools::custom_section(&bytes, "witbox-wit")
        .unwrap()
        .to_vec();
    let section = witbox::embed::custom_section("witbox-wit", &payload);
    let wasm = bytes
        .strip_suffix(section.as_slice())
        .expect("the section is appended last");
    let lie = String::from_utf8(payload)
        .unwrap()
        .replace("a: f64", "a: string");
    let bad = [
        wasm,
        &witbox::embed::custom_section("witbox-wit", lie.as_bytes()),
    ]
    .concat();
    let e = load_file("liar", &bad);
    assert!(
        e.starts_with("failed to load component `liar` from `"),
        "{e}"
    );
    assert!(
        e.ends_with("the embedded WIT (`witbox-wit` section) does not match the component: parameter `a` of function `solve` of `witbox:quadratic/solver@0.1.0` is `a: string` in the WIT but `a: f64` in the component"),
        "{e}"
    );
}

#[test]
fn component_paths_must_be_regular_files_of_a_sane_size() {
    let dir = TempDir::new("paths");
    let fifo = dir.path().join("fifo.wasm");
    crate::support::fifo(&fifo);
    let big = dir.path().join("big.wasm");
    // Sparse: 300 MiB on paper, nothing on disk.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    let cases = [
        (
            fifo.clone(),
            format!("`{}` is a FIFO, not a regular file", fifo.display()),
        ),
        (
            "/dev/zero".into(),
            "`/dev/zero` is a character device, not a regular file".to_string(),
        ),
        (
            big.clone(),
            format!(
                "`{}` is 314572800 bytes, more than the limit of 268435456 bytes",
                big.display()
            ),
        ),
    ];
    for (path, expected) in cases {
        let manifest = format!("[[component]]\nname = \"odd\"\npath = {path:?}\n");
        let manifest = witbox::Manifest::parse(&manifest, dir.path()).unwrap();
        // On a thread: a FIFO that is opened blocks until a writer comes.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let e = witbox::Registry::load(&manifest, options()).err().unwrap();
            let _ = tx.send(format!("{e:#}"));
        });
        let e = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("loading blocked");
        assert!(e.ends_with(&expected), "{e}");
        assert!(
            e.starts_with("failed to read component `odd` from `"),
            "{e}"
        );
    }
}

#[test]
fn a_file_name_that_is_no_tool_prefix_says_how_to_name_it() {
    let dir = TempDir::new("check-name");
    let path = dir.write("2fast.wasm", std::fs::read(guest("quadratic")).unwrap());
    let e = witbox::Registry::check_file(&path, options())
        .err()
        .unwrap();
    assert_eq!(
        format!("{e:#}"),
        "the file name `2fast.wasm` gives the tool prefix `2fast`, which is not a valid component name: rename the file to up to 32 lower-case letters, digits, `_` or `-`, starting with a letter (for example `my-tool.wasm`)"
    );
}

#[test]
fn limits_out_of_range_name_their_key() {
    for (line, expected) in [
        (
            "memory-mb = 17592186044416",
            "`memory-mb` must be above 0 and at most 4096, got 17592186044416",
        ),
        (
            "timeout-ms = 99999999999",
            "`timeout-ms` must be above 0 and at most 86400000, got 99999999999",
        ),
        (
            "max-output-bytes = 18446744073709551615",
            "`max-output-bytes` must be above 0 and at most 1073741824, got 18446744073709551615",
        ),
    ] {
        let text =
            format!("[[component]]\nname = \"q\"\npath = \"q.wasm\"\n[component.policy]\n{line}\n");
        let e = format!("{:#}", witbox::Manifest::parse(&text, &root()).unwrap_err());
        assert_eq!(e, format!("component `q`: {expected}"));
    }
    let e = witbox::Manifest::parse("[runner]\nmax-sessions = 100000\n", &root()).unwrap_err();
    assert_eq!(
        format!("{e:#}"),
        "runner: `max-sessions` must be above 0 and at most 1024, got 100000"
    );
}
