//! The `allow-http` list: parsing grants, checking a request's `scheme://host:port`
//! against them (names resolved here), and the canonical authority a granted
//! request carries.

use anyhow::{Context, Result, bail};
use std::net::{IpAddr, SocketAddr};
use wasmtime_wasi_http::Error as HttpError;

/// A parsed `allow-http` list.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    scheme: String,
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, PartialEq)]
enum Host {
    /// An exact name, lower-case.
    Name(String),
    /// `*.example.com`: any name ending in `.example.com`.
    Suffix(String),
    /// An IP literal: the only way to grant a private or loopback address.
    Ip(IpAddr),
}

/// Where a granted request goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The checked address to connect to.
    pub addr: SocketAddr,
    /// The granted authority in its canonical spelling: what `Host` carries.
    pub authority: String,
}

/// Why a request did not go out. `Display` gives the reason alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The policy does not allow it.
    #[error("{0}")]
    Denied(String),
    /// The policy allows it, but the name has no address.
    #[error("`{host}` could not be resolved: {reason}")]
    Unresolved {
        /// The name, lower-case, without a trailing dot.
        host: String,
        /// The `rcode` the guest's `DNS-error` carries.
        rcode: String,
        /// Why, in words.
        reason: String,
    },
}

impl Refused {
    /// The clause the host adds to the error message of the tool that sent it.
    pub fn note(&self) -> String {
        match self {
            Self::Denied(_) => format!("the host denied a request: {self}"),
            Self::Unresolved { .. } => format!("the host could not send a request: {self}"),
        }
    }

    /// The error the guest gets.
    pub(super) fn to_http_error(&self) -> HttpError {
        match self {
            Self::Denied(_) => HttpError::HttpRequestDenied,
            Self::Unresolved { rcode, .. } => HttpError::DnsError {
                rcode: Some(rcode.clone()),
                info_code: None,
            },
        }
    }
}

impl AllowList {
    /// Parses `scheme://host[:port]` entries.
    pub fn parse(entries: &[String]) -> Result<Self> {
        let entries = entries
            .iter()
            .map(|e| Entry::parse(e).with_context(|| format!("`{e}`")))
            .collect::<Result<_>>()?;
        Ok(Self { entries })
    }

    /// Checks a request target and returns where it may go.
    pub async fn check(&self, scheme: &str, authority: &str) -> Result<Target, Refused> {
        let origin = format!("{scheme}://{authority}");
        if authority.contains('@') {
            return Err(Refused::Denied(format!(
                "`{origin}` has user information, which is never allowed"
            )));
        }
        let (host, port) = split_authority(authority, scheme).ok_or_else(|| {
            Refused::Denied(format!("`{origin}` is not a valid `scheme://host:port`"))
        })?;
        if !self
            .entries
            .iter()
            .any(|e| e.scheme == scheme && e.port == port && e.host.matches(&host))
        {
            return Err(Refused::Denied(format!(
                "`{origin}` is not in `allow-http`"
            )));
        }
        let (addrs, canonical_host) = match host.parse::<IpAddr>() {
            Ok(ip) => {
                let spelled = match canonical(ip) {
                    IpAddr::V4(v4) => v4.to_string(),
                    IpAddr::V6(v6) => format!("[{v6}]"),
                };
                (vec![SocketAddr::new(ip, port)], spelled)
            }
            Err(_) => (resolve(&host, port).await?, host),
        };
        for addr in &addrs {
            let ip = canonical(addr.ip());
            if !is_public(ip) && !self.grants_address(scheme, ip, port) {
                return Err(Refused::Denied(format!(
                    "`{origin}` resolves to the non-public address {ip}, which needs its own grant (`{scheme}://{}`)",
                    SocketAddr::new(ip, port)
                )));
            }
        }
        let authority = if port == default_port(scheme) {
            canonical_host
        } else {
            format!("{canonical_host}:{port}")
        };
        Ok(Target {
            addr: addrs[0],
            authority,
        })
    }

    /// Whether `scheme://ip:port` is granted as an address of its own.
    fn grants_address(&self, scheme: &str, ip: IpAddr, port: u16) -> bool {
        self.entries
            .iter()
            .any(|e| e.scheme == scheme && e.port == port && e.host == Host::Ip(ip))
    }
}

/// The addresses of a granted name; never empty.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
    let unresolved = |rcode: &str, reason: &str| Refused::Unresolved {
        host: host.to_string(),
        rcode: rcode.to_string(),
        reason: reason.to_string(),
    };
    if host == "invalid" || host.ends_with(".invalid") {
        return Err(unresolved(
            "NXDOMAIN",
            "names under `.invalid` never resolve (RFC 6761)",
        ));
    }
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            let words = resolver_words(&e);
            return Err(unresolved(&words, &words));
        }
    };
    if addrs.is_empty() {
        return Err(unresolved("no address", "the resolver returned no address"));
    }
    Ok(addrs)
}

/// What the resolver said, without the prefix the standard library puts on it.
fn resolver_words(e: &std::io::Error) -> String {
    let text = e.to_string();
    text.strip_prefix("failed to lookup address information: ")
        .unwrap_or(&text)
        .to_string()
}

impl Entry {
    fn parse(s: &str) -> Result<Self> {
        let (scheme, rest) = s
            .split_once("://")
            .context("expected `scheme://host[:port]`")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            bail!("the scheme must be `http` or `https`");
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            bail!("only `scheme://host[:port]` is allowed, without a path, query or user");
        }
        let (host, port) = split_authority(authority, &scheme).context("invalid host or port")?;
        let host = if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                bail!("`*.` must be followed by a domain");
            }
            Host::Suffix(format!(".{suffix}"))
        } else if host.contains('*') {
            bail!("`*` is only allowed as the first label (`*.example.com`)");
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            Host::Ip(canonical(ip))
        } else {
            Host::Name(host)
        };
        Ok(Self { scheme, host, port })
    }
}

impl Host {
    fn matches(&self, host: &str) -> bool {
        match self {
            Host::Name(n) => n == host,
            Host::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
            Host::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| canonical(h) == *ip),
        }
    }
}

/// The port of `scheme` when the authority names none.
fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

/// Splits `host[:port]` (an IPv6 address in brackets, anything else without a
/// colon; a port of digits only), lower-cases the host, drops the one trailing
/// dot a fully-qualified name may have, and fills in the scheme's port.
fn split_authority(authority: &str, scheme: &str) -> Option<(String, u16)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (h, after) = rest.split_once(']')?;
            h.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                a => Some(a.strip_prefix(':')?),
            };
            (h, port)
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h.strip_suffix('.').unwrap_or(h), Some(p)),
            None => (authority.strip_suffix('.').unwrap_or(authority), None),
        },
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
        None => default_port(scheme),
    };
    let host = host.to_ascii_lowercase();
    (!host.is_empty() && !host.ends_with('.')).then_some((host, port))
}

/// IPv4-mapped IPv6 addresses are treated as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Whether an address is on the public internet (not loopback, private, link-local, ...).
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10, carrier-grade NAT
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15, benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 can reach any IPv4 address
                || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
        }
    }
}

impl Target {
    /// Points `request` here: plain HTTP connects to the checked address (not
    /// to a fresh DNS answer), HTTPS to the canonical authority (TLS needs the
    /// name); `Host` is the canonical authority either way.
    pub(super) fn aim<B>(&self, request: &mut http::Request<B>) -> Result<(), HttpError> {
        let scheme = request
            .uri()
            .scheme_str()
            .unwrap_or("")
            .to_ascii_lowercase();
        let connect = match scheme.as_str() {
            "http" => self.addr.to_string(),
            _ => self.authority.clone(),
        };
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = http::Uri::builder()
            .scheme(scheme.as_str())
            .authority(connect)
            .path_and_query(path)
            .build()
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
        let host = http::HeaderValue::from_str(&self.authority)
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
        request.headers_mut().insert(http::header::HOST, host);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    async fn check(l: &AllowList, scheme: &str, authority: &str) -> Result<SocketAddr, String> {
        l.check(scheme, authority)
            .await
            .map(|t| t.addr)
            .map_err(|e| e.to_string())
    }

    /// The `Host` a request to `authority` carries.
    async fn host(l: &AllowList, scheme: &str, authority: &str) -> String {
        match l.check(scheme, authority).await {
            Ok(t) => t.authority,
            Err(e) => panic!("{scheme}://{authority}: {e}"),
        }
    }

    #[tokio::test]
    async fn the_host_header_is_the_grant_spelled_canonically() {
        let l = list(&["http://127.0.0.1:8080", "http://127.0.0.1", "http://[::1]"]);
        for spelling in [
            "127.0.0.1:8080",
            "127.0.0.1.:8080",
            "127.0.0.1:08080",
            "[::ffff:127.0.0.1]:8080",
            "[::FFFF:7F00:1]:8080",
            "[0:0:0:0:0:ffff:7f00:1]:8080",
        ] {
            assert_eq!(host(&l, "http", spelling).await, "127.0.0.1:8080");
        }
        for spelling in ["127.0.0.1", "127.0.0.1:80", "[::ffff:127.0.0.1]:0080"] {
            assert_eq!(host(&l, "http", spelling).await, "127.0.0.1");
        }
        for spelling in ["[::1]", "[0:0:0:0:0:0:0:1]:80", "[0::0001]"] {
            assert_eq!(host(&l, "http", spelling).await, "[::1]");
        }
        let tls = list(&["https://[::1]:8443", "https://[::1]"]);
        assert_eq!(host(&tls, "https", "[0::1]:8443").await, "[::1]:8443");
        assert_eq!(host(&tls, "https", "[::1]:443").await, "[::1]");
    }

    #[tokio::test]
    async fn a_granted_name_stays_the_host_header() {
        // `localhost` resolves to loopback, so its addresses need grants of their own.
        let l = list(&[
            "http://localhost",
            "http://127.0.0.1",
            "http://[::1]",
            "https://localhost:8443",
            "https://127.0.0.1:8443",
            "https://[::1]:8443",
        ]);
        for spelling in ["localhost", "LocalHost.", "LOCALHOST:80", "localhost.:080"] {
            assert_eq!(host(&l, "http", spelling).await, "localhost");
        }
        assert_eq!(host(&l, "https", "Localhost.:8443").await, "localhost:8443");
    }

    #[tokio::test]
    async fn a_granted_name_that_does_not_resolve_is_not_a_denial() {
        let l = list(&["http://nosuch.invalid", "https://*.invalid"]);
        for (scheme, authority, name) in [
            ("http", "nosuch.invalid", "nosuch.invalid"),
            ("http", "NoSuch.Invalid.:80", "nosuch.invalid"),
            ("https", "a.b.invalid", "a.b.invalid"),
        ] {
            let refused = l.check(scheme, authority).await.unwrap_err();
            assert_eq!(
                refused,
                Refused::Unresolved {
                    host: name.to_string(),
                    rcode: "NXDOMAIN".to_string(),
                    reason: "names under `.invalid` never resolve (RFC 6761)".to_string(),
                }
            );
            assert_eq!(
                refused.note(),
                format!(
                    "the host could not send a request: `{name}` could not be resolved: names under `.invalid` never resolve (RFC 6761)"
                )
            );
        }
        // The policy comes first: a name that is not granted is not looked up.
        let refused = l.check("http", "other.invalid").await.unwrap_err();
        assert_eq!(
            refused.note(),
            "the host denied a request: `http://other.invalid` is not in `allow-http`"
        );
    }

    #[test]
    fn the_resolver_speaks_for_itself() {
        let e = std::io::Error::other(
            "failed to lookup address information: Name or service not known",
        );
        assert_eq!(resolver_words(&e), "Name or service not known");
        assert_eq!(resolver_words(&std::io::Error::other("odd")), "odd");
    }

    #[test]
    fn a_request_is_aimed_at_the_checked_target() {
        let aimed = |uri: &str, target: &Target| {
            let mut request = http::Request::builder()
                .uri(uri)
                .header(http::header::HOST, "guest.spelling")
                .body(())
                .unwrap();
            target.aim(&mut request).unwrap();
            let host = request.headers().get_all(http::header::HOST);
            let host: Vec<_> = host.iter().map(|h| h.to_str().unwrap()).collect();
            (request.uri().to_string(), host.join(" | "))
        };
        let named = Target {
            addr: "192.0.2.7:8080".parse().unwrap(),
            authority: "api.example.com:8080".to_string(),
        };
        assert_eq!(
            aimed("http://API.Example.com.:8080/v1?x=1", &named),
            (
                "http://192.0.2.7:8080/v1?x=1".to_string(),
                "api.example.com:8080".to_string()
            )
        );
        assert_eq!(
            aimed("https://API.Example.com.:8080/v1?x=1", &named),
            (
                "https://api.example.com:8080/v1?x=1".to_string(),
                "api.example.com:8080".to_string()
            )
        );
        let v6 = Target {
            addr: "[2001:db8::1]:80".parse().unwrap(),
            authority: "[2001:db8::1]".to_string(),
        };
        assert_eq!(
            aimed("http://[2001:DB8:0::1]:80", &v6),
            (
                "http://[2001:db8::1]:80/".to_string(),
                "[2001:db8::1]".to_string()
            )
        );
    }

    #[tokio::test]
    async fn loopback_needs_the_exact_address() {
        let l = list(&["http://127.0.0.1:8080"]);
        assert_eq!(
            check(&l, "http", "127.0.0.1:8080")
                .await
                .unwrap()
                .to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            check(&l, "http", "127.0.0.1:8081").await.unwrap_err(),
            "`http://127.0.0.1:8081` is not in `allow-http`"
        );
        assert_eq!(
            check(&l, "http", "localhost:8080").await.unwrap_err(),
            "`http://localhost:8080` is not in `allow-http`"
        );
    }

    #[tokio::test]
    async fn a_name_reaches_a_private_address_only_when_the_list_grants_it() {
        // `localhost` resolves to loopback: the name alone is not enough.
        let only_the_name = list(&["http://localhost"]);
        let e = check(&only_the_name, "http", "localhost")
            .await
            .unwrap_err();
        assert!(e.contains("which needs its own grant (`http://"), "{e}");
        let both = list(&["http://localhost", "http://127.0.0.1", "http://[::1]"]);
        assert!(check(&both, "http", "localhost").await.is_ok());
        let other_port = list(&["http://localhost", "http://127.0.0.1:81", "http://[::1]:81"]);
        let e = check(&other_port, "http", "localhost").await.unwrap_err();
        assert!(e.contains("which needs its own grant (`http://"), "{e}");
    }

    #[tokio::test]
    async fn ipv4_mapped_ipv6_is_the_ipv4_address() {
        let l = list(&["http://127.0.0.1:8080"]);
        assert!(check(&l, "http", "[::ffff:127.0.0.1]:8080").await.is_ok());
        let public = list(&["http://[::ffff:127.0.0.1]:80"]);
        assert!(check(&public, "http", "127.0.0.1").await.is_ok());
        let named = list(&["http://*.example.com"]);
        assert!(
            check(&named, "http", "[::ffff:169.254.169.254]")
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn only_digits_make_a_port() {
        let l = list(&["http://127.0.0.1:8080"]);
        assert_eq!(
            check(&l, "http", "127.0.0.1:+8080").await.unwrap_err(),
            "`http://127.0.0.1:+8080` is not a valid `scheme://host:port`"
        );
    }

    #[tokio::test]
    async fn userinfo_is_never_allowed() {
        let l = list(&["http://allowed.example"]);
        assert_eq!(
            check(&l, "http", "allowed.example@evil.example")
                .await
                .unwrap_err(),
            "`http://allowed.example@evil.example` has user information, which is never allowed"
        );
    }

    #[tokio::test]
    async fn wildcards_match_subdomains_only() {
        let l = list(&["https://*.open-meteo.com"]);
        let err = |host: &str| format!("`https://{host}` is not in `allow-http`");
        assert_eq!(
            check(&l, "https", "open-meteo.com").await.unwrap_err(),
            err("open-meteo.com")
        );
        assert_eq!(
            check(&l, "https", "evilopen-meteo.com").await.unwrap_err(),
            err("evilopen-meteo.com")
        );
        assert_eq!(
            check(&l, "http", "api.open-meteo.com").await.unwrap_err(),
            "`http://api.open-meteo.com` is not in `allow-http`"
        );
        assert_eq!(
            check(&l, "https", "api.open-meteo.com:8443")
                .await
                .unwrap_err(),
            err("api.open-meteo.com:8443")
        );
    }

    #[test]
    fn bad_entries_are_rejected() {
        for bad in [
            "ftp://x",
            "http://x/path",
            "http://u@x",
            "http://a.*.com",
            "http://*.",
            "x",
            "http://x:99999",
            "http://x:+80",
            "http://x:",
            "http://x..",
            "http://.",
            "http://a:b:c",
            "http://::1",
            "http://[x.example]",
            "http://[127.0.0.1]",
            "http://[::1]junk",
            "http://[fe80::1%eth0]",
        ] {
            assert!(AllowList::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn private_ranges_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
