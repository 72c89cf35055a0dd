use crate::fixture::Fixture;
use crate::support::*;
use serde_json::json;
use witbox::ErrorKind;

/// A weather registry whose config points at `url`, with `allow` as its allow-list.
fn weather(url: &str, allow: &[String]) -> std::sync::Arc<witbox::Registry> {
    let allow: Vec<String> = allow.iter().map(|a| format!("{a:?}")).collect();
    registry(
        "weather",
        &format!(
            "[component.policy]\nallow-http = [{}]\ntimeout-ms = 5000\n[component.config]\ngeocoding-url = {url:?}\nforecast-url = {url:?}\n",
            allow.join(", ")
        ),
    )
}

async fn paris(
    r: &std::sync::Arc<witbox::Registry>,
) -> Result<serde_json::Value, witbox::ToolError> {
    r.call("weather_current", &json!({"city": "Paris"})).await
}

#[tokio::test]
async fn schema_matches_golden() {
    golden("weather.tools.json", &tools_json(&registry("weather", "")));
}

#[tokio::test]
async fn works_when_granted() {
    let server = Fixture::start();
    let r = weather(&server.url(), &[server.url()]);
    let v = paris(&r).await.unwrap();
    assert_eq!(
        v,
        json!({
            "city": "Paris", "country": "France", "latitude": 48.85341, "longitude": 2.3488,
            "temperature-c": 21.5, "wind-speed-kmh": 11.2, "weather-code": 3, "description": "overcast"
        })
    );
    let hits = server.hits();
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert!(
        hits[0].starts_with("GET /v1/search?name=Paris&count=1"),
        "{hits:?}"
    );
    assert!(
        hits[1].starts_with("GET /v1/forecast?latitude=48.85341&longitude=2.3488&current="),
        "{hits:?}"
    );
}

#[tokio::test]
async fn city_names_are_url_encoded() {
    let server = Fixture::start();
    let r = weather(&server.url(), &[server.url()]);
    let v = r
        .call("weather_current", &json!({"city": "São Paulo"}))
        .await
        .unwrap();
    assert_eq!(v["country"], "Brazil");
    assert!(server.hits()[0].starts_with("GET /v1/search?name=S%C3%A3o%20Paulo&"));
}

#[tokio::test]
async fn unknown_city_is_a_tool_error() {
    let server = Fixture::start();
    let r = weather(&server.url(), &[server.url()]);
    let e = r
        .call("weather_current", &json!({"city": "Atlantis"}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ToolError);
    assert_eq!(
        e.detail,
        Some(json!({"city-not-found": "no city named `Atlantis` is known"}))
    );
}

#[tokio::test]
async fn upstream_errors_carry_status_and_body() {
    let server = Fixture::start();
    let base = server.url();
    let r = registry(
        "weather",
        &format!(
            "[component.policy]\nallow-http = [{base:?}]\n[component.config]\ngeocoding-url = {base:?}\nforecast-url = \"{base}/nope\"\n"
        ),
    );
    let e = paris(&r).await.unwrap_err();
    assert_eq!(
        e.detail,
        Some(
            json!({"upstream": {"status": 404, "body": "{\"error\":true,\"reason\":\"not found\"}"}})
        )
    );
}

/// The guest sees `denied`; the host's message says exactly why.
async fn assert_denied(r: &std::sync::Arc<witbox::Registry>, why: &str) {
    let e = paris(r).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ToolError);
    assert_eq!(
        e.detail,
        Some(json!({"denied": "the host's policy does not allow this address"}))
    );
    assert_eq!(
        e.message,
        format!(
            "`weather_current` returned an error: {{\"denied\":\"the host's policy does not allow this address\"}}; the host denied a request: {why}"
        )
    );
}

#[tokio::test]
async fn denied_without_a_grant() {
    let server = Fixture::start();
    let r = weather(&server.url(), &[]);
    assert_denied(&r, &format!("`{}` is not in `allow-http`", server.url())).await;
    assert!(
        server.hits().is_empty(),
        "a denied request reached the server"
    );
}

#[tokio::test]
async fn denied_on_another_port() {
    let server = Fixture::start();
    let other = Fixture::start();
    let r = weather(&server.url(), &[other.url()]);
    assert_denied(&r, &format!("`{}` is not in `allow-http`", server.url())).await;
    assert!(server.hits().is_empty());
}

#[tokio::test]
async fn denied_on_another_host() {
    let server = Fixture::start();
    let r = weather(
        &server.url(),
        &[format!("http://127.0.0.2:{}", server.addr.port())],
    );
    assert_denied(&r, &format!("`{}` is not in `allow-http`", server.url())).await;
}

#[tokio::test]
async fn denied_on_another_scheme() {
    let server = Fixture::start();
    let r = weather(
        &server.url(),
        &[format!("https://127.0.0.1:{}", server.addr.port())],
    );
    assert_denied(&r, &format!("`{}` is not in `allow-http`", server.url())).await;
}

#[tokio::test]
async fn localhost_is_not_127_0_0_1() {
    let server = Fixture::start();
    let port = server.addr.port();
    let r = weather(&format!("http://localhost:{port}"), &[server.url()]);
    assert_denied(
        &r,
        &format!("`http://localhost:{port}` is not in `allow-http`"),
    )
    .await;
    assert!(server.hits().is_empty());
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_needs_the_address_granted() {
    let server = Fixture::start();
    let port = server.addr.port();
    let url = format!("http://localhost:{port}");
    let r = weather(&url, std::slice::from_ref(&url));
    let e = paris(&r).await.unwrap_err();
    assert!(
        e.message.contains(&format!("the host denied a request: `http://localhost:{port}` resolves to the non-public address")),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("which needs its own grant (`http://"),
        "{}",
        e.message
    );
    assert!(server.hits().is_empty());
}

#[tokio::test]
async fn a_granted_name_that_does_not_resolve_is_unreachable_not_denied() {
    let url = "http://nosuch.invalid".to_string();
    let r = weather(&url, std::slice::from_ref(&url));
    let e = paris(&r).await.unwrap_err();
    let code =
        "ErrorCode::DnsError(DnsErrorPayload { rcode: Some(\"NXDOMAIN\"), info-code: None })";
    let detail = json!({ "unreachable": code });
    assert_eq!(e.kind, ErrorKind::ToolError);
    assert_eq!(e.detail, Some(detail.clone()));
    assert_eq!(
        e.message,
        format!(
            "`weather_current` returned an error: {detail}; the host could not send a request: `nosuch.invalid` could not be resolved: names under `.invalid` never resolve (RFC 6761)"
        )
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let target = Fixture::start();
    let redirector = Fixture::redirecting(target.addr);
    let r = weather(&redirector.url(), &[redirector.url()]);
    let e = paris(&r).await.unwrap_err();
    assert_eq!(
        e.detail,
        Some(json!({"upstream": {"status": 302, "body": ""}}))
    );
    assert_eq!(redirector.hits().len(), 1);
    assert!(target.hits().is_empty(), "the redirect was followed");
}

#[tokio::test]
async fn the_shipped_manifest_allows_only_open_meteo() {
    let manifest = witbox::Manifest::load(&root().join("witbox.toml")).unwrap();
    let shipped = manifest
        .component
        .iter()
        .find(|c| c.name == "weather")
        .unwrap();
    assert_eq!(
        shipped.policy.allow_http,
        vec![
            "https://geocoding-api.open-meteo.com".to_string(),
            "https://api.open-meteo.com".to_string()
        ]
    );
    // Pointed at a local server, the shipped policy denies it.
    let server = Fixture::start();
    let r = weather(&server.url(), &shipped.policy.allow_http);
    assert_denied(&r, &format!("`{}` is not in `allow-http`", server.url())).await;
}
