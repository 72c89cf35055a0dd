//! The front of `witbox serve`: the paths it answers (`/mcp`, `/v1/`,
//! `/healthz`, `/readyz`, `/metrics`), and with tokens, who may use `/mcp` and
//! `/v1/` and how much (and, with an ops token, who may see the other three).

use super::auth::{Access, Rates};
use super::http::{BoxResponse, InFlight, JSON, Service, Sessions, handle, respond};
use http::{Method, Request, StatusCode, header};
use hyper::body::Incoming;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a stopping server (`SIGTERM`, Ctrl-C) waits for the calls in flight:
/// longer than the shipped runner's `timeout-ms`, shorter than Kubernetes'
/// default grace period (30 s).
pub const DRAIN: Duration = Duration::from_secs(15);

/// The front of the HTTP server: the paths it serves, and who may use `/mcp`.
pub(super) struct Front {
    pub(super) service: Service,
    pub(super) sessions: Arc<Sessions>,
    pub(super) access: Access,
    pub(super) rates: Rates,
    pub(super) server: Arc<super::Server>,
    /// The `POST /mcp` requests being answered.
    pub(super) in_flight: Arc<InFlight>,
    /// Set when the server stops: `/mcp` and `/readyz` answer `503`.
    pub(super) draining: AtomicBool,
}

impl Front {
    /// `/mcp` (with a principal's token, when there are tokens), `/healthz`,
    /// `/readyz`; anything else is a `404` that says what is served.
    pub(super) async fn route(&self, request: Request<Incoming>) -> BoxResponse {
        let path = request.uri().path();
        if let Some(ops) = &self.access.ops
            && matches!(path, "/healthz" | "/readyz" | "/metrics")
            && ops
                .principal(
                    request
                        .headers()
                        .get(header::AUTHORIZATION)
                        .map(|v| v.as_bytes()),
                )
                .is_none()
        {
            return Denial {
                status: StatusCode::UNAUTHORIZED,
                message: format!("{path} needs the ops token: send `Authorization: Bearer TOKEN` with the server's `--ops-token`"),
                header: Some((
                    header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer realm=\"witbox ops\""),
                )),
            }
            .plain();
        }
        match request.uri().path() {
            "/mcp" => self.mcp(request).await,
            path if path.starts_with("/v1/") => self.v1(request).await,
            "/healthz" => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
            "/metrics" => {
                let sessions = self.server.sessions();
                let (running, idle) = sessions.as_ref().map_or((0, 0), |s| s.running_and_idle());
                let now = crate::metrics::Now {
                    running,
                    idle,
                    warm_pool: sessions.as_ref().map_or(0, |s| s.runner().warm_len()),
                };
                respond(
                    StatusCode::OK,
                    Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                    crate::metrics::encode(now),
                )
            }
            "/readyz" if self.draining.load(Ordering::Acquire) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"status": "stopping"}),
            ),
            "/readyz" => {
                let waiting = self.server.waiting_for().await;
                if waiting.is_empty() {
                    json(StatusCode::OK, &serde_json::json!({"status": "ready"}))
                } else {
                    json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &serde_json::json!({"status": "not ready", "waiting_for": waiting}),
                    )
                }
            }
            path => {
                let shown = crate::text::shown(path, 100);
                json(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({"error": format!(
                        "no endpoint `{shown}`: this server has /mcp (MCP, streamable HTTP), /v1/ (REST, described at /v1/openapi.json), /healthz, /readyz and /metrics"
                    )}),
                )
            }
        }
    }

    /// Who sends `request`: `Ok(None)` without tokens; with them, a request
    /// without a known token is a `401`, and one past its principal's rate a `429`.
    fn principal(&self, request: &Request<Incoming>) -> Result<Option<Arc<str>>, Denial> {
        let Some(tokens) = &self.access.tokens else {
            return Ok(None);
        };
        let authorization = request.headers().get(header::AUTHORIZATION);
        let Some(principal) = tokens.principal(authorization.map(|v| v.as_bytes())) else {
            return Err(Denial {
                status: StatusCode::UNAUTHORIZED,
                message: "this server needs a bearer token: send `Authorization: Bearer TOKEN` with a token from its tokens file".into(),
                header: Some((
                    header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer realm=\"witbox\""),
                )),
            });
        };
        if let Err(wait) = self.rates.take(&principal, self.access.quota.per_second) {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(Denial {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!(
                    "`{principal}` sent more than its {} requests per second (`--requests-per-second`): retry after {} ms",
                    self.access.quota.per_second,
                    wait.as_millis().max(1)
                ),
                header: Some((header::RETRY_AFTER, http::HeaderValue::from(seconds.max(1)))),
            });
        }
        Ok(Some(principal))
    }

    /// A `503` while the server stops.
    fn stopping(&self) -> Option<Denial> {
        self.draining.load(Ordering::Acquire).then(|| Denial {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message:
                "this server is stopping: send the request to another one, or retry when it is back"
                    .into(),
            header: Some((header::RETRY_AFTER, http::HeaderValue::from(1u64))),
        })
    }

    /// `/v1/...`: the REST API (`rest.rs`), whose refusals all have its shape.
    async fn v1(&self, request: Request<Incoming>) -> BoxResponse {
        if let Some(denial) = self.stopping() {
            return denial.rest();
        }
        let busy = self.in_flight.enter();
        let principal = match self.principal(&request) {
            Ok(p) => p,
            Err(denial) => return denial.rest(),
        };
        self.rest(request, principal, busy).await
    }

    /// With tokens: a request without a known one is a `401`, and an MCP session is
    /// its principal's; another principal naming it gets rmcp's answer for a
    /// session that does not exist.
    async fn mcp(&self, request: Request<Incoming>) -> BoxResponse {
        if let Some(denial) = self.stopping() {
            return denial.plain();
        }
        let busy = (request.method() == Method::POST).then(|| self.in_flight.enter());
        let principal = match self.principal(&request) {
            Ok(Some(p)) => p,
            Ok(None) => return handle(&self.service, request, busy).await,
            Err(denial) => return denial.plain(),
        };
        let session = request.headers().get(SESSION_HEADER).cloned();
        if let Some(id) = &session
            && !self.sessions.may_use(id.as_bytes(), &principal)
        {
            // rmcp's own answer, to the byte (it sends no content type).
            return respond(StatusCode::NOT_FOUND, None, "Not Found: Session not found");
        }
        let opens = session.is_none() && request.method() == Method::POST;
        let quota = self.access.quota.sessions;
        if opens && quota > 0 && self.sessions.held_by(&principal).await >= quota {
            let message = format!(
                "`{principal}` has {quota} MCP sessions open, its quota (`--sessions-per-principal`): close one (`DELETE /mcp` with its `Mcp-Session-Id`) before starting another"
            );
            let header = (header::RETRY_AFTER, http::HeaderValue::from(1u64));
            let status = StatusCode::TOO_MANY_REQUESTS;
            return Denial {
                status,
                message,
                header: Some(header),
            }
            .plain();
        }
        let response = handle(&self.service, request, busy).await;
        if session.is_none()
            && let Some(id) = response.headers().get(SESSION_HEADER)
        {
            self.sessions.claim(id.as_bytes(), principal);
        }
        response
    }
}

/// A request turned away before it reached what it asked for.
struct Denial {
    status: StatusCode,
    message: String,
    header: Option<(http::HeaderName, http::HeaderValue)>,
}

impl Denial {
    /// As `/mcp` and the ops endpoints answer: `{"error": "..."}`.
    fn plain(self) -> BoxResponse {
        let body = serde_json::json!({"error": self.message});
        self.with_header(json(self.status, &body))
    }

    /// As the REST API answers: `{"error": {"kind", "message"}}`.
    fn rest(self) -> BoxResponse {
        let response = super::rest::error(self.status, &self.message);
        self.with_header(response)
    }

    fn with_header(&self, mut response: BoxResponse) -> BoxResponse {
        if let Some((name, value)) = &self.header {
            response.headers_mut().insert(name, value.clone());
        }
        response
    }
}

/// The header that names an MCP session over streamable HTTP.
const SESSION_HEADER: &str = "mcp-session-id";

fn json(status: StatusCode, body: &serde_json::Value) -> BoxResponse {
    respond(status, Some(JSON), body.to_string())
}
