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

/// `p@ss"w\ord-é` (`.cargo/config.toml`): its JSON, `repr` and `ascii` spellings differ from it.
const ODD: &str = "p@ss\"w\\ord-é";

#[tokio::test]
async fn escaped_spellings_of_a_secret_are_redacted_too() {
    assert_eq!(std::env::var("WITBOX_TEST_ODD_SECRET").as_deref(), Ok(ODD));
    let mut s = session("secrets = { K = \"WITBOX_TEST_ODD_SECRET\" }").await;
    let o = cell(
        &mut s,
        "import os, json\nk = os.environ['K']\n\
         print(repr(k)); print(ascii(k)); print(json.dumps(k)); print(json.dumps(k, ensure_ascii=False))\n\
         print(json.dumps({'k': [k]}))\n[k]",
    )
    .await;
    assert_eq!(
        o.stdout,
        "'[REDACTED]'\n'[REDACTED]'\n\"[REDACTED]\"\n\"[REDACTED]\"\n{\"k\": [\"[REDACTED]\"]}\n"
    );
    assert_eq!(o.value.as_deref(), Some("['[REDACTED]']"));
    for needle in ["p@ss", "ord-"] {
        assert!(!format!("{o:?}").contains(needle), "{o:?}");
    }
}

#[tokio::test]
async fn a_secret_is_redacted_in_exception_names_json_keys_and_numbers() {
    let mut s =
        session("secrets = { API_KEY = \"WITBOX_TEST_SECRET\", PIN = \"WITBOX_TEST_PIN\" }").await;
    let o = cell(
        &mut s,
        "import os\nk = os.environ['API_KEY']\nraise type(k, (Exception,), {})('named after the key')",
    )
    .await;
    let e = o.error.unwrap();
    assert_eq!(e.kind, "[REDACTED]");
    assert!(!e.traceback.contains(SECRET), "{}", e.traceback);
    let o = cell(
        &mut s,
        "pin = int(os.environ['PIN'])\nfinal_answer({k: pin, 'pin': pin, 'list': [pin, 1]})",
    )
    .await;
    assert_eq!(
        o.final_answer,
        Some(json!({"[REDACTED]": "[REDACTED]", "pin": "[REDACTED]", "list": ["[REDACTED]", 1]}))
    );
}

#[tokio::test]
async fn a_cut_at_the_output_limit_never_shows_part_of_a_secret() {
    let mut s =
        session("secrets = { API_KEY = \"WITBOX_TEST_SECRET\" }\nmax-output-bytes = 100").await;
    // The runner's own cut falls six bytes into the secret.
    let o = cell(&mut s, "import os\nprint('x' * 94 + os.environ['API_KEY'])").await;
    assert_eq!(error_of(&o).0, "OutputLimit");
    assert!(o.stdout.starts_with(&"x".repeat(94)), "{:?}", o.stdout);
    assert!(!o.stdout.contains("s3cr3t"), "{:?}", o.stdout);
}

#[test]
fn a_log_line_is_redacted_before_it_is_cut() {
    let dir = TempDir::new("secret-log");
    let manifest = dir.write(
        "witbox.toml",
        format!(
            "[runner]\npath = {:?}\n[runner.policy]\nsecrets = {{ API_KEY = \"WITBOX_TEST_SECRET\" }}\n",
            guest("python-runner")
        ),
    );
    // A log line is cut at 1000 bytes; the secret starts 5 bytes before that.
    let code = "import os\nfrom wit_world.imports import host\n\
                host.log(host.LogLevel.INFO, 'x' * 995 + os.environ['API_KEY'])";
    let out = witbox_command(&manifest)
        .args(["run", "-c", code])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("[runner] info: xxxxx"), "{stderr}");
    assert!(!stderr.contains("s3cr"), "{stderr}");
}

#[tokio::test]
async fn a_linked_call_never_hands_on_a_secret() {
    // The solver's secret is `2`, a root of x² - 3x + 2: its result cannot go to
    // the report unredacted, and a typed number cannot be redacted.
    let manifest = entry(
        "quadratic",
        "quadratic",
        "[component.policy]\nsecrets = { ROOT = \"WITBOX_TEST_ROOT\" }",
    ) + &entry(
        "equation-report",
        "equation-report",
        "[component.policy]\nlink = [\"quadratic\"]",
    );
    let r = load(&manifest).unwrap();
    // Called directly, the root that is the secret is redacted in the JSON.
    let roots = r
        .call("quadratic_solve", &json!({"a": 1, "b": -3, "c": 2}))
        .await
        .unwrap();
    assert_eq!(
        roots,
        json!([{"re": 1.0, "im": 0.0}, {"re": "[REDACTED]", "im": 0.0}])
    );
    let e = r
        .call(
            "equation_report_report",
            &json!({"equation": "x^2 - 3x + 2 = 0"}),
        )
        .await
        .unwrap_err();
    assert!(
        e.message.contains(
            "the linked call `equation-report` → `quadratic_solve` failed: denied: the result of `quadratic_solve` cannot be handed on: a number or character in it is a secret ([REDACTED])"
        ),
        "{}",
        e.message
    );
    // Roots that are not the secret go through.
    let v = r
        .call(
            "equation_report_report",
            &json!({"equation": "x^2 - 4x + 3 = 0"}),
        )
        .await
        .unwrap();
    assert!(v.as_str().unwrap().contains('3'), "{v}");
}
