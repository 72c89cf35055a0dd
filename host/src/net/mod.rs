//! Outbound HTTP: the one choke point every guest request passes through.
//!
//! A request goes out only if its `scheme://host:port` is in the component's
//! `allow-http` list, and only to addresses that are public, unless the list
//! grants that exact IP address (same scheme and port). Names are resolved here,
//! and plain-HTTP requests are pinned to the address that was checked, so DNS
//! cannot swap it afterwards. Redirects are handed to the guest, never followed
//! by the host.
//!
//! When a request does not go out, the guest gets a `wasi:http` error code and
//! the host adds one clause to the tool's error message ([`Refused::note`]):
//! - not allowed: `HTTP-request-denied`, and "the host denied a request: WHY";
//! - a granted name that does not resolve: `DNS-error` (its `rcode` is the
//!   resolver's words), and "the host could not send a request: `NAME` could not
//!   be resolved: WHY". Names under `.invalid` never resolve (RFC 6761 6.4): the
//!   host answers `NXDOMAIN` for them itself and asks no resolver.
//!
//! The policy is checked before any name is resolved, so a name that is not
//! granted is denied, never looked up.
//!
//! A granted request carries `Host:` = the granted authority in its canonical
//! spelling, whatever spelling the guest used (wasi:http copies the guest's
//! authority into `Host` before the hook runs; a guest cannot set `Host`
//! itself): the host in lower case without a trailing dot, an IP address in its
//! standard form (an IPv4-mapped IPv6 address as the IPv4 address it carries,
//! IPv6 in RFC 5952 form in brackets), and `:port` only when the port is not the
//! scheme's default (RFC 3986 6.2.3). A name stays a name, never the address it
//! resolved to, so virtual hosting works. HTTPS also connects, and sends its TLS
//! server name, under that spelling.

mod allow;

pub use allow::{AllowList, Refused, Target, is_public};

use std::sync::{Arc, Mutex};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// The `wasi:http` hook of one store: checks each request against the policy.
pub struct HttpPolicy {
    allow: Arc<AllowList>,
    /// What the host has to say about the requests that did not go out during
    /// this call ([`Refused::note`]), for the error message.
    pub notes: Arc<Mutex<Vec<String>>>,
}

impl HttpPolicy {
    /// A hook enforcing `allow`.
    pub fn new(allow: Arc<AllowList>) -> Self {
        Self {
            allow,
            notes: Default::default(),
        }
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        drop(fut);
        let allow = self.allow.clone();
        let notes = self.notes.clone();
        Box::new(async move {
            let uri = request.uri();
            let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
            let authority = uri
                .authority()
                .map(|a| a.as_str().to_string())
                .unwrap_or_default();
            let target = match allow.check(&scheme, &authority).await {
                Ok(target) => target,
                Err(refused) => {
                    notes.lock().unwrap().push(refused.note());
                    return Err(refused.to_http_error());
                }
            };
            target.aim(&mut request)?;
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}
