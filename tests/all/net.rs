//! What a granted request looks like when it leaves the host, and what a guest
//! (and the tool's caller) hears when it cannot: `host/src/net.rs`.

use crate::fixture::Fixture;
use crate::support::*;
use serde_json::json;

/// The testkit guest, allowed `allow` only.
fn testkit(allow: &[String]) -> std::sync::Arc<witbox::Registry> {
    let allow: Vec<String> = allow.iter().map(|a| format!("{a:?}")).collect();
    registry(
        "testkit",
        &format!(
            "[component.policy]\nallow-http = [{}]\ntimeout-ms = 20000\n",
            allow.join(", ")
        ),
    )
}

async fn fetch(
    r: &std::sync::Arc<witbox::Registry>,
    url: &str,
) -> Result<serde_json::Value, witbox::ToolError> {
    r.call("testkit_fetch", &json!({ "url": url })).await
}

#[tokio::test]
async fn a_port_is_digits_only() {
    let server = Fixture::start();
    let port = server.addr.port();
    let r = testkit(&[server.url()]);
    let e = fetch(&r, &format!("http://127.0.0.1:+{port}/"))
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        format!(
            "`testkit_fetch` returned an error: \"ErrorCode::HttpRequestDenied\"; the host denied a request: `http://127.0.0.1:+{port}` is not a valid `scheme://host:port`"
        )
    );
    assert!(server.hits().is_empty());
}
