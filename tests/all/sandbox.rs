//! Deny by default: each capability denied without its grant (exact error text), and working with it.

use crate::fixture::Fixture;
use crate::support::*;
use serde_json::json;
use witbox::ErrorKind;

#[tokio::test]
async fn no_files_without_a_grant() {
    let r = registry("testkit", "");
    for path in ["/etc/passwd", "/", ".", "/proc/self/environ"] {
        let e = r
            .call("testkit_read_file", &json!({"path": path}))
            .await
            .unwrap_err();
        assert_eq!(
            e.detail,
            Some(json!("No such file or directory (os error 44)")),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_granted_dir_is_readable_and_read_only() {
    let dir = TempDir::new("dirs");
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/hello.txt"), "hi there").unwrap();
    let manifest = format!(
        "{}[component.policy]\ndirs = [{{ host = \"data\", guest = \"/data\" }}]\n",
        entry("testkit", "testkit", "")
    );
    let manifest = witbox::Manifest::parse(&manifest, dir.path()).unwrap();
    let r = witbox::Registry::load(&manifest, options()).unwrap();
    let v = r
        .call("testkit_read_file", &json!({"path": "/data/hello.txt"}))
        .await
        .unwrap();
    assert_eq!(v, json!("hi there"));
    // Nothing outside the grant.
    let e = r
        .call(
            "testkit_read_file",
            &json!({"path": "/data/../../etc/passwd"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ToolError);
}

#[tokio::test]
async fn no_environment_without_a_grant() {
    // SAFETY of the test: the host process has variables (PATH, HOME); none may leak.
    let r = registry("testkit", "");
    assert_eq!(
        r.call("testkit_env_count", &json!({})).await.unwrap(),
        json!(0)
    );
    assert_eq!(
        r.call("testkit_get_env", &json!({"name": "PATH"}))
            .await
            .unwrap(),
        json!(null)
    );
}

#[tokio::test]
async fn granted_environment_is_visible() {
    let r = registry(
        "testkit",
        "[component.policy]\nenv = { UNITS = \"metric\" }\n",
    );
    assert_eq!(
        r.call("testkit_env_count", &json!({})).await.unwrap(),
        json!(1)
    );
    assert_eq!(
        r.call("testkit_get_env", &json!({"name": "UNITS"}))
            .await
            .unwrap(),
        json!("metric")
    );
}

#[tokio::test]
async fn no_sockets_even_to_loopback() {
    let server = Fixture::start();
    // Even a granted HTTP address does not open raw sockets: `wasi:sockets` is not
    // linked at all, so the guest's socket call traps and the next call is served.
    let r = registry(
        "testkit",
        &format!("[component.policy]\nallow-http = [{:?}]\n", server.url()),
    );
    let e = r
        .call("testkit_connect", &json!({"addr": server.addr.to_string()}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Trap, "{}", e.message);
    assert_eq!(
        e.message,
        "`testkit_connect` crashed: `wasi:sockets/tcp-create-socket@0.2.12#create-tcp-socket` is not available: the witbox sandbox has no sockets (`wasi:sockets` is never linked; use `wasi:http` with `allow-http`)"
    );
    // A name needs `ip-name-lookup`, which is not linked either.
    let e = r
        .call(
            "testkit_connect",
            &json!({"addr": format!("localhost:{}", server.addr.port())}),
        )
        .await
        .unwrap_err();
    assert!(
        e.message.starts_with("`testkit_connect` crashed: `wasi:sockets/")
            && e.message.ends_with("` is not available: the witbox sandbox has no sockets (`wasi:sockets` is never linked; use `wasi:http` with `allow-http`)"),
        "{}",
        e.message
    );
    assert!(server.hits().is_empty());
    let ok = r
        .call(
            "testkit_fetch",
            &json!({"url": format!("{}/v1/search?name=Paris", server.url())}),
        )
        .await
        .unwrap();
    assert!(ok.as_str().unwrap().starts_with("200 "), "{ok}");
}

#[tokio::test]
async fn no_http_without_a_grant() {
    let server = Fixture::start();
    let r = registry("testkit", "");
    let e = r
        .call(
            "testkit_fetch",
            &json!({"url": format!("{}/v1/search?name=Paris", server.url())}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.detail, Some(json!("ErrorCode::HttpRequestDenied")));
    assert!(e.message.ends_with(&format!(
        "the host denied a request: `{}` is not in `allow-http`",
        server.url()
    )));
    assert!(server.hits().is_empty());
}

#[tokio::test]
async fn link_local_metadata_address_is_denied() {
    let r = registry(
        "testkit",
        "[component.policy]\nallow-http = [\"http://*.example.com\"]\n",
    );
    let e = r
        .call(
            "testkit_fetch",
            &json!({"url": "http://169.254.169.254/latest/meta-data/"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.detail, Some(json!("ErrorCode::HttpRequestDenied")));
    assert!(
        e.message.ends_with(
            "the host denied a request: `http://169.254.169.254` is not in `allow-http`"
        )
    );
}

#[tokio::test]
async fn no_tool_calls_without_a_grant() {
    let manifest = entry("testkit", "testkit", "") + &entry("quadratic", "quadratic", "");
    let r = load(&manifest).unwrap();
    let e = r
        .call(
            "testkit_call",
            &json!({"name": "quadratic_solve", "args": "{\"a\":1,\"b\":-3,\"c\":2}"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.detail,
        Some(json!(
            "ToolError::Denied(\"`testkit` may not call `quadratic_solve`: it is not in its `call-tools`\")"
        ))
    );
}

#[tokio::test]
async fn granted_tool_calls_run_in_the_callees_sandbox() {
    let manifest = entry(
        "testkit",
        "testkit",
        "[component.policy]\ncall-tools = [\"quadratic_*\"]\n",
    ) + &entry("quadratic", "quadratic", "");
    let r = load(&manifest).unwrap();
    let v = r
        .call(
            "testkit_call",
            &json!({"name": "quadratic_solve", "args": "{\"a\":1,\"b\":-3,\"c\":2}"}),
        )
        .await
        .unwrap();
    let roots: serde_json::Value = serde_json::from_str(v.as_str().unwrap()).unwrap();
    assert_eq!(
        roots,
        json!([{"re": 1.0, "im": 0.0}, {"re": 2.0, "im": 0.0}])
    );
    // The callee's own errors come back typed.
    let e = r
        .call(
            "testkit_call",
            &json!({"name": "quadratic_solve", "args": "{\"a\":300}"}),
        )
        .await
        .unwrap_err();
    assert!(
        e.detail
            .unwrap()
            .as_str()
            .unwrap()
            .starts_with("ToolError::InvalidArguments(")
    );
    let e = r
        .call(
            "testkit_call",
            &json!({"name": "quadratic_solve", "args": "{\"a\":0,\"b\":0,\"c\":1}"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.detail,
        Some(json!("ToolError::Failed(\"\\\"no-solution\\\"\")"))
    );
}

#[tokio::test]
async fn tool_calls_cannot_recurse_forever() {
    let r = registry(
        "testkit",
        "[component.policy]\ncall-tools = [\"testkit_call\"]\n",
    );
    let inner = json!({"name": "testkit_call", "args": "{}"}).to_string();
    let args = json!({"name": "testkit_call", "args": json!({"name": "testkit_call", "args": json!({"name": "testkit_call", "args": json!({"name": "testkit_call", "args": inner}).to_string()}).to_string()}).to_string()});
    let e = r.call("testkit_call", &args).await.unwrap_err();
    assert!(
        e.message.contains("tool calls nest deeper than 4"),
        "{}",
        e.message
    );
}
