//! What a granted request looks like when it leaves the host, and what a guest
//! (and the tool's caller) hears when it cannot: `host/src/net.rs`.

use crate::fixture::Fixture;
use crate::support::*;
use serde_json::json;
use std::net::ToSocketAddrs;

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
async fn the_host_header_is_the_granted_address_however_it_is_spelled() {
    let server = Fixture::start();
    let port = server.addr.port();
    let r = testkit(&[format!("http://127.0.0.1:{port}")]);
    let spellings = [
        format!("127.0.0.1:{port}"),
        format!("127.0.0.1.:{port}"),              // a trailing dot
        format!("127.0.0.1:0{port}"),              // a leading zero in the port
        format!("[::ffff:127.0.0.1]:{port}"),      // IPv4-mapped IPv6
        format!("[::FFFF:7F00:1]:{port}"),         // the same, upper-case hex
        format!("[0:0:0:0:0:ffff:7f00:1]:{port}"), // the same, spelled out
    ];
    for authority in &spellings {
        let url = format!("http://{authority}/v1/search?name=Paris");
        let ok = fetch(&r, &url).await.unwrap();
        assert!(ok.as_str().unwrap().starts_with("200 "), "{url}: {ok}");
    }
    assert_eq!(
        server.hosts(),
        vec![format!("127.0.0.1:{port}"); spellings.len()]
    );
}

#[tokio::test]
async fn a_granted_name_is_the_host_header_not_its_address() {
    // `localhost` resolves to loopback addresses, which need grants of their
    // own; the server listens on the first one, where the host connects.
    let resolved: Vec<_> = ("localhost", 0)
        .to_socket_addrs()
        .expect("`localhost` does not resolve here")
        .map(|a| a.ip())
        .collect();
    let server = Fixture::start_on(resolved[0]);
    let port = server.addr.port();
    let mut allow = vec![format!("http://localhost:{port}")];
    allow.extend(
        resolved
            .iter()
            .map(|ip| format!("http://{}", std::net::SocketAddr::new(*ip, port))),
    );
    let r = testkit(&allow);
    let spellings = [
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),  // upper case
        format!("localhost.:{port}"), // a trailing dot
    ];
    for authority in &spellings {
        let url = format!("http://{authority}/v1/search?name=Paris");
        let ok = fetch(&r, &url).await.unwrap();
        assert!(ok.as_str().unwrap().starts_with("200 "), "{url}: {ok}");
    }
    assert_eq!(
        server.hosts(),
        vec![format!("localhost:{port}"); spellings.len()]
    );
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
