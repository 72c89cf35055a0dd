//! Tools built on tools: `equation-report` imports `witbox:quadratic/solver`,
//! linked by the host at run time or plugged in statically by `witbox compose`.

use crate::support::*;
use serde_json::{Value, json};

const EQUATIONS: [&str; 9] = [
    "2x^2 - 4x + 2 = 0",
    "x² = 9",
    "x^2 + 2x + 5 = 0",
    "3x + 1 = 0",
    "x**2 - 1e8x + 1 = 0",
    "0x = 1",
    "0 = 0",
    "x^3 = 1",
    "what is love",
];

fn report_of(r: &std::sync::Arc<witbox::Registry>, equation: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match rt.block_on(r.call("equation_report_report", &json!({ "equation": equation }))) {
        Ok(v) => json!({ "ok": v }),
        Err(e) => json!({ "kind": e.kind.as_str(), "detail": e.detail }),
    }
}

fn linked() -> std::sync::Arc<witbox::Registry> {
    // The importer comes first: the host loads components in the order their links need.
    load(&format!(
        "{}{}",
        entry(
            "equation-report",
            "equation-report",
            "[component.policy]\nlink = [\"quadratic\"]"
        ),
        entry("quadratic", "quadratic", "")
    ))
    .unwrap()
}

#[test]
fn the_host_links_an_import_to_the_component_that_exports_it() {
    let r = linked();
    let names: Vec<&str> = r.tools().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["quadratic_solve", "equation_report_report"]);
    assert_eq!(
        report_of(&r, "2x^2 - 4x + 2 = 0"),
        json!({"ok": "double root x = 1"})
    );
    assert_eq!(
        report_of(&r, "x² = 9"),
        json!({"ok": "two real roots: x = -3 and x = 3"})
    );
    assert_eq!(
        report_of(&r, "x^2 + 2x + 5 = 0"),
        json!({"ok": "two complex roots: x = -1 - 2i and x = -1 + 2i"})
    );
    assert_eq!(
        report_of(&r, "0x = 1"),
        json!({"kind": "tool-error", "detail": {"solver": "the equation has no solution"}})
    );
    assert_eq!(
        report_of(&r, "what is love"),
        json!({"kind": "tool-error", "detail": {"not-an-equation": "`w` is not part of an equation in x"}})
    );
}

#[test]
fn a_missing_or_ungranted_link_is_a_load_error_naming_the_interface() {
    let ungranted = load(&format!(
        "{}{}",
        entry("equation-report", "equation-report", ""),
        entry("quadratic", "quadratic", "")
    ));
    assert_eq!(
        format!("{:#}", ungranted.err().unwrap()),
        "`equation-report` imports `witbox:quadratic/solver@0.1.0`, which `quadratic` exports, but its policy does not allow it: add `link = [\"quadratic\"]` to `equation-report`'s policy"
    );
    let missing = load(&entry(
        "equation-report",
        "equation-report",
        "[component.policy]\nlink = [\"quadratic\"]",
    ));
    assert_eq!(
        format!("{:#}", missing.err().unwrap()),
        "`equation-report` imports `witbox:quadratic/solver@0.1.0`, which no loaded component exports; add the component that exports it to the manifest, and to `link` in `equation-report`'s policy"
    );
}

#[test]
fn static_composition_gives_the_same_results_as_dynamic_linking() {
    let dir = TempDir::new("compose");
    let composed = dir.path().join("report.wasm");
    let out = witbox_command(&root().join("witbox.toml"))
        .arg("compose")
        .arg(guest("equation-report"))
        .arg("--plug")
        .arg(guest("quadratic"))
        .arg("-o")
        .arg(&composed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Self-contained: no quadratic component, no `link`.
    let statically = load(&format!(
        "[[component]]\nname = \"equation-report\"\npath = {composed:?}\n"
    ))
    .unwrap();
    let tool = statically.tool("equation_report_report").unwrap();
    assert!(
        tool.description
            .starts_with("Solves an equation written as text"),
        "{}",
        tool.description
    );
    let dynamically = linked();
    assert_eq!(
        tool.parameters,
        dynamically
            .tool("equation_report_report")
            .unwrap()
            .parameters
    );
    for equation in EQUATIONS {
        assert_eq!(
            report_of(&statically, equation),
            report_of(&dynamically, equation),
            "{equation}"
        );
    }
}
