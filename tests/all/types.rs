//! The JSON ⇄ WIT mapping, end to end through a guest that echoes every kind of value.

use crate::support::*;
use serde_json::{Value, json};
use witbox::ErrorKind;

fn everything() -> Value {
    json!({
        "small": 255, "medium": -32768, "big": i64::MIN, "huge": u64::MAX, "ratio": 0.5,
        "flag": true, "letter": "é", "name": "text", "tag": "t",
        "color": "green", "perms": ["read", "exec"], "shape": {"circle": 1.5},
        "pair": [65535, false], "points": [{"x": 1, "y": -2}]
    })
}

#[tokio::test]
async fn schema_matches_golden() {
    golden("testkit.tools.json", &tools_json(&registry("testkit", "")));
}

#[tokio::test]
async fn every_kind_of_value_round_trips() {
    let r = registry("testkit", "");
    let v = everything();
    assert_eq!(
        r.call("testkit_echo", &json!({"value": v})).await.unwrap(),
        v
    );
    let mut other = everything();
    other["tag"] = Value::Null;
    other["shape"] = json!("nothing");
    other["perms"] = json!([]);
    other["points"] = json!([]);
    assert_eq!(
        r.call("testkit_echo", &json!({"value": other}))
            .await
            .unwrap(),
        other
    );
}

#[tokio::test]
async fn option_fields_may_be_left_out() {
    let r = registry("testkit", "");
    let mut v = everything();
    v.as_object_mut().unwrap().remove("tag");
    let out = r.call("testkit_echo", &json!({"value": v})).await.unwrap();
    assert_eq!(out["tag"], Value::Null);
    assert_eq!(
        r.call("testkit_add_small", &json!({"x": 1})).await.unwrap(),
        json!(1)
    );
    assert_eq!(
        r.call("testkit_add_small", &json!({"x": 1, "y": null}))
            .await
            .unwrap(),
        json!(1)
    );
    assert_eq!(
        r.call("testkit_add_small", &json!({"x": 1.0, "y": 2}))
            .await
            .unwrap(),
        json!(3)
    );
}

#[tokio::test]
async fn a_result_error_is_a_tool_error_with_detail() {
    let r = registry("testkit", "");
    let e = r
        .call("testkit_add_small", &json!({"x": 200, "y": 100}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ToolError);
    assert_eq!(e.detail, Some(json!("200 + 100 does not fit in a u8")));
}

#[tokio::test]
async fn each_invalid_shape_is_rejected_with_its_path() {
    let r = registry("testkit", "");
    let cases: &[(&str, Value, &str)] = &[
        (
            "small",
            json!(256),
            "`value.small`: 256 is out of range for u8 (0 to 255)",
        ),
        (
            "small",
            json!(-1),
            "`value.small`: -1 is out of range for u8 (0 to 255)",
        ),
        (
            "small",
            json!(1.5),
            "`value.small`: expected an integer (u8, 0 to 255), got the number 1.5",
        ),
        (
            "medium",
            json!("1"),
            "`value.medium`: expected an integer (s16, -32768 to 32767), got the string \"1\"",
        ),
        (
            "ratio",
            json!(1e300),
            "`value.ratio`: 1e+300 is out of range for f32",
        ),
        (
            "flag",
            json!(1),
            "`value.flag`: expected a boolean, got the number 1",
        ),
        (
            "letter",
            json!("ab"),
            "`value.letter`: expected exactly one character, got \"ab\"",
        ),
        (
            "color",
            json!("purple"),
            "`value.color`: \"purple\" is not one of `red`, `green`, `blue`",
        ),
        (
            "perms",
            json!(["read", "read"]),
            "`value.perms`: flag \"read\" is listed twice",
        ),
        (
            "perms",
            json!(["fly"]),
            "`value.perms`: \"fly\" is not one of `read`, `write`, `exec`",
        ),
        (
            "shape",
            json!("circle"),
            "`value.shape`: case `circle` needs a value: {\"circle\": …}",
        ),
        (
            "shape",
            json!({"nothing": 1}),
            "`value.shape`: case `nothing` takes no value; write it as \"nothing\"",
        ),
        (
            "shape",
            json!({"circle": 1, "square": 2}),
            "`value.shape`: expected a case name or a one-key object {\"case\": value}, got an object",
        ),
        ("pair", json!([1]), "`value.pair`: expected 2 items, got 1"),
        (
            "points",
            json!([{"x": 1}]),
            "missing required field `value.points[0].y`",
        ),
        (
            "points",
            json!([{"x": 1, "y": 2, "z": 3}]),
            "`value.points[0]`: unknown field `z` (expected `x`, `y`)",
        ),
    ];
    for (field, bad, message) in cases {
        let mut v = everything();
        v[*field] = bad.clone();
        let e = r
            .call("testkit_echo", &json!({"value": v}))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArguments, "{field} = {bad}");
        assert_eq!(
            e.message,
            format!("invalid arguments for `testkit_echo`: {message}"),
            "{field} = {bad}"
        );
    }
}
