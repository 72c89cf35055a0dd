use crate::support::*;
use serde_json::{Value, json};
use wasmtime::component::Val;
use witbox::ErrorKind;

fn roots(v: &Value) -> Vec<(f64, f64)> {
    v.as_array()
        .expect("roots are an array")
        .iter()
        .map(|r| (r["re"].as_f64().unwrap(), r["im"].as_f64().unwrap()))
        .collect()
}

async fn solve(a: f64, b: f64, c: f64) -> Result<Vec<(f64, f64)>, witbox::ToolError> {
    let r = registry("quadratic", "");
    r.call("quadratic_solve", &json!({"a": a, "b": b, "c": c}))
        .await
        .map(|v| roots(&v))
}

#[tokio::test]
async fn schema_matches_golden() {
    golden(
        "quadratic.tools.json",
        &tools_json(&registry("quadratic", "")),
    );
}

#[tokio::test]
async fn real_roots_are_sorted() {
    assert_eq!(
        solve(1.0, -3.0, 2.0).await.unwrap(),
        vec![(1.0, 0.0), (2.0, 0.0)]
    );
    assert_eq!(
        solve(-1.0, 3.0, -2.0).await.unwrap(),
        vec![(1.0, 0.0), (2.0, 0.0)]
    );
}

#[tokio::test]
async fn complex_roots_come_in_conjugate_pairs() {
    assert_eq!(
        solve(1.0, 2.0, 5.0).await.unwrap(),
        vec![(-1.0, -2.0), (-1.0, 2.0)]
    );
}

#[tokio::test]
async fn double_root_is_listed_once() {
    assert_eq!(solve(1.0, -2.0, 1.0).await.unwrap(), vec![(1.0, 0.0)]);
}

#[tokio::test]
async fn no_cancellation_for_widely_separated_roots() {
    let r = solve(1.0, -1e8, 1.0).await.unwrap();
    assert_eq!(r.len(), 2);
    let rel = |x: f64, want: f64| ((x - want) / want).abs();
    // Exact roots: 1e8 - 1e-8 (to double precision) and 1e-8 + 1e-24.
    assert!(rel(r[0].0, 1e-8) < 1e-12, "small root {}", r[0].0);
    assert!(rel(r[1].0, 1e8) < 1e-12, "large root {}", r[1].0);
}

#[tokio::test]
async fn linear_and_degenerate_equations() {
    assert_eq!(solve(0.0, 2.0, -4.0).await.unwrap(), vec![(2.0, 0.0)]);
    let no = solve(0.0, 0.0, 1.0).await.unwrap_err();
    assert_eq!(no.kind, ErrorKind::ToolError);
    assert_eq!(no.detail, Some(json!("no-solution")));
    let every = solve(0.0, 0.0, 0.0).await.unwrap_err();
    assert_eq!(every.detail, Some(json!("every-number")));
}

#[tokio::test]
async fn huge_coefficients_do_not_overflow() {
    assert_eq!(
        solve(1e300, -3e300, 2e300).await.unwrap(),
        vec![(1.0, 0.0), (2.0, 0.0)]
    );
}

#[tokio::test]
async fn non_finite_inputs_are_rejected_by_the_guest() {
    // JSON has no NaN, so these go through the typed-value API.
    let r = registry("quadratic", "");
    for (a, b, c) in [
        (f64::NAN, 1.0, 1.0),
        (1.0, f64::INFINITY, 1.0),
        (1.0, 1.0, f64::NEG_INFINITY),
    ] {
        let e = r
            .call_vals(
                "quadratic_solve",
                vec![Val::Float64(a), Val::Float64(b), Val::Float64(c)],
            )
            .await
            .unwrap_err();
        assert_eq!(e.detail, Some(json!("not-finite")), "{a} {b} {c}");
    }
}

#[tokio::test]
async fn invalid_arguments_are_rejected_before_the_guest_runs() {
    let r = registry("quadratic", "");
    let cases = [
        (
            json!({"a": 1, "b": 2}),
            "invalid arguments for `quadratic_solve`: missing required argument `c`",
        ),
        (
            json!({"a": 1, "b": 2, "c": "3"}),
            "invalid arguments for `quadratic_solve`: `c`: expected a number, got the string \"3\"",
        ),
        (
            json!({"a": 1, "b": 2, "c": 3, "d": 4}),
            "invalid arguments for `quadratic_solve`: unknown argument `d` (expected `a`, `b`, `c`)",
        ),
        (
            json!([1, 2, 3]),
            "invalid arguments for `quadratic_solve`: the arguments must be a JSON object, got an array of 3 items",
        ),
    ];
    for (args, message) in cases {
        let e = r.call("quadratic_solve", &args).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArguments, "{args}");
        assert_eq!(e.message, message);
    }
}

#[tokio::test]
async fn unknown_tool_is_not_found() {
    let r = registry("quadratic", "");
    let e = r.call("quadratic_solvee", &json!({})).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(
        e.message,
        "no tool named `quadratic_solvee` (loaded: quadratic_solve)"
    );
}
