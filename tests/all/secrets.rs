//! Secrets: a policy passes a host environment value to the guest, which can use
//! it, and every occurrence in what comes back is `[REDACTED]`.

use crate::support::*;
use serde_json::json;

/// Set for the tests in `.cargo/config.toml` (`[env]`).
const SECRET: &str = "s3cr3t-Value-42";

#[tokio::test]
async fn a_tool_uses_its_secret_and_never_shows_it() {
    assert_eq!(std::env::var("WITBOX_TEST_SECRET").as_deref(), Ok(SECRET));
    let r = registry(
        "testkit",
        "[component.policy]\nsecrets = { API_KEY = \"WITBOX_TEST_SECRET\" }",
    );
    // The guest has it (its length is not secret)...
    let v = r
        .call("testkit_get_env", &json!({"name": "API_KEY"}))
        .await
        .unwrap();
    assert_eq!(v, json!("[REDACTED]"));
    // ...in results and in trap messages (the guest's stderr).
    let e = r
        .call(
            "testkit_crash",
            &json!({"message": format!("key={SECRET}!")}),
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("key=[REDACTED]!"), "{}", e.message);
    assert!(!e.message.contains(SECRET));
    // Without the grant the variable does not exist.
    let plain = registry("testkit", "");
    let v = plain
        .call("testkit_get_env", &json!({"name": "API_KEY"}))
        .await
        .unwrap();
    assert_eq!(v, json!(null));
}

#[test]
fn a_secret_missing_from_the_host_is_a_load_error() {
    let e = load(&entry(
        "testkit",
        "testkit",
        "[component.policy]\nsecrets = { API_KEY = \"WITBOX_NO_SUCH_VARIABLE\" }",
    ))
    .err()
    .unwrap();
    assert_eq!(
        format!("{e:#}"),
        "invalid policy for `testkit`: the secret `API_KEY` comes from the host's `$WITBOX_NO_SUCH_VARIABLE`, which is not set"
    );
}

#[tokio::test]
async fn python_can_use_a_secret_but_not_print_return_or_raise_it() {
    let mut s = session("secrets = { API_KEY = \"WITBOX_TEST_SECRET\" }").await;
    let o = cell(
        &mut s,
        "import os\nk = os.environ['API_KEY']\nk == 's3cr3t-Value-42', len(k)",
    )
    .await;
    assert_eq!(o.value.as_deref(), Some("(True, 15)"));
    let o = cell(
        &mut s,
        "print(k)\nimport sys\nprint('err', k, file=sys.stderr)\nk",
    )
    .await;
    assert_eq!(o.stdout, "[REDACTED]\n");
    assert_eq!(o.stderr, "err [REDACTED]\n");
    assert_eq!(o.value.as_deref(), Some("'[REDACTED]'"));
    // One character at a time is still one output.
    let o = cell(&mut s, "for c in k:\n    print(c, end='')").await;
    assert_eq!(o.stdout, "[REDACTED]");
    let o = cell(&mut s, "raise ValueError('bad key ' + k)").await;
    let e = o.error.unwrap();
    assert_eq!(e.message, "bad key [REDACTED]");
    assert!(!e.traceback.contains(SECRET), "{}", e.traceback);
    let o = cell(&mut s, "final_answer({'key': k})").await;
    assert_eq!(o.final_answer, Some(json!({"key": "[REDACTED]"})));
}
