//! Ways around the HTTP allow-list, each tried from a guest against a local
//! server whose exact address is the only grant. None reaches the server.

use crate::fixture::Fixture;
use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn no_spelling_of_another_address_gets_through() {
    let server = Fixture::start();
    let port = server.addr.port();
    let r = registry(
        "testkit",
        &format!("[component.policy]\nallow-http = [\"http://127.0.0.1:{port}\"]\n"),
    );
    // The grant works...
    let ok = r
        .call(
            "testkit_fetch",
            &json!({"url": format!("http://127.0.0.1:{port}/v1/search?name=Paris")}),
        )
        .await
        .unwrap();
    assert!(ok.as_str().unwrap().starts_with("200 "), "{ok}");
    assert_eq!(server.hits().len(), 1);
    // ...and nothing else does.
    for url in [
        format!("http://[::1]:{port}/"),                      // IPv6 loopback
        format!("http://[::ffff:127.0.0.2]:{port}/"),         // IPv4-mapped, another address
        "http://[::ffff:169.254.169.254]/".to_string(),       // IPv4-mapped metadata address
        format!("http://[0:0:0:0:0:ffff:7f00:2]:{port}/"),    // the same, spelled out
        format!("http://127.0.0.1:{port}@127.0.0.2:{port}/"), // userinfo trick
        format!("http://127.0.0.2:{port}/"),                  // another loopback address
        format!("http://2130706434:{port}/"),                 // 127.0.0.2 as one number
        format!("http://127.1:{port}/"),                      // shorthand for 127.0.0.1
        format!("http://localhost:{port}/"),                  // a name for it
        format!("http://127.0.0.1:{}/", port.wrapping_add(1)), // another port
        format!("https://127.0.0.1:{port}/"),                 // another scheme
    ] {
        let e = r
            .call("testkit_fetch", &json!({ "url": url }))
            .await
            .unwrap_err();
        assert_eq!(
            e.detail,
            Some(json!("ErrorCode::HttpRequestDenied")),
            "{url}"
        );
        let origin = url.trim_end_matches('/');
        let why = if url.contains('@') {
            format!("`{origin}` has user information, which is never allowed")
        } else {
            format!("`{origin}` is not in `allow-http`")
        };
        assert!(
            e.message
                .ends_with(&format!("the host denied a request: {why}")),
            "{url}: {}",
            e.message
        );
    }
    assert_eq!(
        server.hits().len(),
        1,
        "a denied request reached the server"
    );
}

#[tokio::test]
async fn a_guest_cannot_set_the_host_header() {
    // The connection goes to the granted address whatever the guest writes, but a
    // `Host` header could still pick another site behind a shared proxy. wasi:http
    // refuses it however it is spelled or set, and the request carries the granted
    // authority.
    let server = Fixture::start();
    let r = registry(
        "testkit",
        &format!("[component.policy]\nallow-http = [{:?}]\n", server.url()),
    );
    for name in ["host", "Host", "HOST"] {
        let out = r
            .call(
                "testkit_fetch_with_header",
                &json!({
                    "url": format!("{}/v1/search?name=Paris", server.url()),
                    "name": name,
                    "value": "metadata.internal",
                }),
            )
            .await
            .unwrap();
        let out = out.as_str().unwrap();
        assert!(
            out.starts_with(
                "from-list: Err(HeaderError::Forbidden), set: Err(HeaderError::Forbidden), append: Err(HeaderError::Forbidden)\n200 "
            ),
            "{name}: {out}"
        );
    }
    assert_eq!(server.hosts(), vec![server.addr.to_string(); 3]);
}
