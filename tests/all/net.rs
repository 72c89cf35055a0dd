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
async fn a_granted_name_that_does_not_resolve_is_a_dns_error() {
    let r = testkit(&["http://nosuch.invalid".to_string()]);
    let code =
        "ErrorCode::DnsError(DnsErrorPayload { rcode: Some(\"NXDOMAIN\"), info-code: None })";
    for url in [
        "http://nosuch.invalid/",
        "http://NoSuch.Invalid./v1", // the same name, spelled otherwise
        "http://nosuch.invalid:80/",
    ] {
        let e = fetch(&r, url).await.unwrap_err();
        assert_eq!(e.kind, witbox::ErrorKind::ToolError, "{url}");
        assert_eq!(e.detail, Some(json!(code)), "{url}");
        assert_eq!(
            e.message,
            format!(
                "`testkit_fetch` returned an error: {}; the host could not send a request: `nosuch.invalid` could not be resolved: names under `.invalid` never resolve (RFC 6761)",
                json!(code)
            ),
            "{url}"
        );
    }
}

#[tokio::test]
async fn a_name_that_is_not_granted_is_denied_not_resolved() {
    let r = testkit(&["http://nosuch.invalid".to_string()]);
    let e = fetch(&r, "http://other.invalid/").await.unwrap_err();
    assert_eq!(e.detail, Some(json!("ErrorCode::HttpRequestDenied")));
    assert_eq!(
        e.message,
        "`testkit_fetch` returned an error: \"ErrorCode::HttpRequestDenied\"; the host denied a request: `http://other.invalid` is not in `allow-http`"
    );
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
