//! `witbox serve`'s REST API under `/v1/` for code-execution clients, described
//! by `openapi.json` (served at `/v1/openapi.json`): Python sessions (create,
//! list, close, run a cell, reset, files, snapshot and restore) and the tools.
//!
//! A session is named in the path (`/v1/sessions/ID/run`) or, under
//! `/v1/session/` (singular), by an `X-Witbox-Session` or `X-Sandbox-ID` header,
//! so a proxy that routes by header (agent-sandbox's router) keeps a client on
//! one replica. With tokens, a session is its principal's: another principal
//! naming it gets the same `404` as for a session that does not exist.

use super::front::Front;
use super::http::{BoxResponse, Busy, JSON, counted, respond};
use crate::error::{ErrorKind, ToolError};
use crate::python::Sessions;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The headers that name a session for the `/v1/session/...` paths.
pub const SESSION_HEADERS: [&str; 2] = ["x-witbox-session", "x-sandbox-id"];

/// The owner of the sessions made without tokens (a loopback server's).
const NO_TOKEN: &str = "(no token)";

/// The largest request body (a cell, a file, a snapshot).
const MAX_BODY_BYTES: usize = crate::limits::MAX_MESSAGE_BYTES;

/// A refusal: the status, and why.
struct Refused(StatusCode, String);

impl From<ToolError> for Refused {
    fn from(e: ToolError) -> Self {
        let status = match e.kind {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::InvalidArguments => StatusCode::BAD_REQUEST,
            ErrorKind::Denied => StatusCode::FORBIDDEN,
            ErrorKind::Load => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, e.message)
    }
}

fn bad(message: impl Into<String>) -> Refused {
    Refused(StatusCode::BAD_REQUEST, message.into())
}

/// An error response: `{"error": {"kind", "message"}}`.
pub(super) fn error(status: StatusCode, message: &str) -> BoxResponse {
    let kind = match status {
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => "invalid-arguments",
        StatusCode::FORBIDDEN => "denied",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::TOO_MANY_REQUESTS => "too-many-requests",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ => "internal",
    };
    let body = json!({"error": {"kind": kind, "message": message}});
    let mut response = respond(status, Some(JSON), body.to_string());
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry = http::HeaderValue::from(1u64);
        response.headers_mut().insert(header::RETRY_AFTER, retry);
    }
    response
}

fn ok(status: StatusCode, body: &Value) -> BoxResponse {
    respond(status, Some(JSON), body.to_string())
}

impl Front {
    /// A `/v1/` request of `principal` (`None`: the server has no tokens).
    pub(super) async fn rest(
        &self,
        request: Request<Incoming>,
        principal: Option<Arc<str>>,
        busy: Busy,
    ) -> BoxResponse {
        let mut busy = Some(busy);
        let response = match self
            .rest_inner(request, principal.as_deref(), &mut busy)
            .await
        {
            Ok(response) => response,
            Err(Refused(status, message)) => error(status, &message),
        };
        // In flight (for a stopping server) until the answer is sent.
        match busy {
            Some(busy) => counted(response, busy),
            None => response,
        }
    }

    async fn rest_inner(
        &self,
        request: Request<Incoming>,
        principal: Option<&str>,
        busy: &mut Option<Busy>,
    ) -> Result<BoxResponse, Refused> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().trim_start_matches("/v1/").to_string();
        let segments: Vec<&str> = path.split('/').collect();
        let method = parts.method.clone();
        let route = |s: &[&str]| s.join("/");
        match (&method, segments.as_slice()) {
            (&Method::GET, ["openapi.json"]) => {
                return Ok(respond(StatusCode::OK, Some(JSON), OPENAPI));
            }
            (&Method::GET, ["tools"]) => {
                let registry = self.server.tools().await?;
                return Ok(ok(StatusCode::OK, &json!({"tools": registry.tools()})));
            }
            (&Method::POST, ["tools", name]) => {
                let registry = self.server.tools().await?;
                if registry.tool(name).is_none() {
                    return Err(Refused(
                        StatusCode::NOT_FOUND,
                        format!("no tool `{}`: `GET /v1/tools` lists them", shown(name)),
                    ));
                }
                let args = read_json(body).await?;
                if !args.is_object() {
                    return Err(bad("the body is the tool's arguments, a JSON object"));
                }
                return Ok(match registry.call(name, &args).await {
                    Ok(result) => ok(StatusCode::OK, &json!({"result": result})),
                    Err(e) if is_request_error(&e) => return Err(e.into()),
                    Err(e) => ok(StatusCode::OK, &json!({"error": e.to_json()})),
                });
            }
            _ => {}
        }
        let sessions = self.server.python().await?;
        let owner = principal.unwrap_or(NO_TOKEN);
        match (&method, segments.as_slice()) {
            (&Method::GET, ["sessions"]) => {
                let mut ids = sessions.owned_by(owner).await?;
                if let Some(data) = self.server.loaded_data() {
                    ids.extend(data.owned_by(owner).await?);
                }
                return Ok(ok(StatusCode::OK, &json!({"sessions": ids})));
            }
            (&Method::POST, ["sessions"]) => {
                // `?runner=data`: a session of the data runner.
                let sessions = match parts.uri.query() {
                    Some("runner=data") => self.server.data().await?,
                    None | Some("runner=python") => sessions,
                    Some(other) => {
                        return Err(bad(format!(
                            "unknown query `{}`: `POST /v1/sessions` takes `?runner=data` or `?runner=python`",
                            shown(other)
                        )));
                    }
                };
                self.room_for(&sessions, principal).await?;
                let id = sessions.create_for(Some(owner)).await?;
                return Ok(ok(StatusCode::CREATED, &json!({"session_id": id})));
            }
            (&Method::POST, ["sessions", "restore"]) => {
                let snapshot = read_body(body).await?;
                let sessions = self.server.sessions_for_snapshot(&snapshot).await?;
                self.room_for(&sessions, principal).await?;
                let (id, missing) = sessions.restore_for(&snapshot, Some(owner)).await?;
                let body = json!({"session_id": id, "missing": missing});
                return Ok(ok(StatusCode::CREATED, &body));
            }
            _ => {}
        }
        // The rest name a session: in the path, or by a header.
        let (id, action) = match segments.as_slice() {
            ["sessions", id, action @ ..] => {
                if let Some(named) = header_session(&parts.headers)?
                    && named != *id
                {
                    return Err(bad(format!(
                        "the path names session `{}` and the header `{}`: name one",
                        shown(id),
                        shown(&named)
                    )));
                }
                (id.to_string(), action)
            }
            ["session", action @ ..] => match header_session(&parts.headers)? {
                Some(id) => (id, action),
                None => {
                    return Err(bad(
                        "`/v1/session/...` takes the session from an `X-Witbox-Session` (or `X-Sandbox-ID`) header, and there is none",
                    ));
                }
            },
            _ => return Err(not_here(&method, &path)),
        };
        let sessions = match id.starts_with("d-") {
            true => self.server.sessions_of(&id).await?,
            false => sessions,
        };
        self.check_owner(&sessions, &id, principal).await?;
        let tail = |from: usize| route(&action[from..]);
        match (&method, action) {
            (&Method::DELETE, []) => {
                sessions.close_for_good(&id).await;
                Ok(ok(
                    StatusCode::OK,
                    &json!({"session_id": id, "closed": true}),
                ))
            }
            (&Method::POST, ["run"]) => {
                let accept = parts.headers.get(header::ACCEPT);
                let stream = accept
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("text/event-stream"));
                let code = read_code(body).await?;
                if let (true, Some(busy)) = (stream, busy.take()) {
                    return Ok(run_streamed(sessions, id, code, busy));
                }
                let outcome = sessions.run(&id, &code).await?;
                Ok(ok(StatusCode::OK, &json!(outcome)))
            }
            (&Method::POST, ["reset"]) => {
                sessions.reset(&id).await?;
                Ok(ok(
                    StatusCode::OK,
                    &json!({"session_id": id, "reset": true}),
                ))
            }
            (&Method::GET, ["snapshot"]) => {
                let bytes = sessions.snapshot(&id).await?;
                Ok(respond(
                    StatusCode::OK,
                    Some("application/octet-stream"),
                    bytes,
                ))
            }
            (&Method::PUT, ["files", _, ..]) => {
                let bytes = read_body(body).await?;
                sessions.write_file(&id, &tail(1), &bytes).await?;
                let body = json!({"path": tail(1), "bytes": bytes.len()});
                Ok(ok(StatusCode::OK, &body))
            }
            (&Method::GET, ["files", _, ..]) => {
                let bytes = sessions.read_file(&id, &tail(1)).await?;
                Ok(respond(
                    StatusCode::OK,
                    Some("application/octet-stream"),
                    bytes,
                ))
            }
            (&Method::GET, ["list", ..]) => {
                let entries = sessions.list_files(&id, &tail(1)).await?;
                Ok(ok(
                    StatusCode::OK,
                    &json!({"path": tail(1), "entries": entries}),
                ))
            }
            _ => Err(not_here(&method, &path)),
        }
    }

    /// With tokens, a principal may hold up to its quota of sessions.
    async fn room_for(&self, sessions: &Sessions, principal: Option<&str>) -> Result<(), Refused> {
        let quota = self.access.quota.sessions;
        let Some(principal) = principal.filter(|_| quota > 0) else {
            return Ok(());
        };
        if sessions.owned_by(principal).await?.len() >= quota {
            return Err(Refused(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "`{principal}` has {quota} sessions open, its quota (`--sessions-per-principal`): close one (`DELETE /v1/sessions/ID`) before starting another"
                ),
            ));
        }
        Ok(())
    }

    /// With tokens, session `id` must be the principal's; another's is "no
    /// session", word for word.
    async fn check_owner(
        &self,
        sessions: &Sessions,
        id: &str,
        principal: Option<&str>,
    ) -> Result<(), Refused> {
        let owner = sessions.owner(id).await?;
        let theirs = match (principal, &owner) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(p), Some(owner)) => owner.as_deref() == Some(p),
        };
        if theirs {
            return Ok(());
        }
        Err(Refused(
            StatusCode::NOT_FOUND,
            format!(
                "no session `{}`: it was closed, or it sat idle for more than {} s",
                shown(id),
                sessions.ttl().as_secs()
            ),
        ))
    }
}

/// A `404` that says what there is.
fn not_here(method: &Method, path: &str) -> Refused {
    Refused(
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint `{method} /v1/{}`: `GET /v1/openapi.json` describes the API",
            shown(path)
        ),
    )
}

/// Errors of the request rather than of the tool's run.
fn is_request_error(e: &ToolError) -> bool {
    matches!(
        e.kind,
        ErrorKind::InvalidArguments | ErrorKind::NotFound | ErrorKind::Load | ErrorKind::Internal
    )
}

/// What a client sent, cut for a message.
fn shown(text: &str) -> String {
    crate::text::shown(text, 100)
}

/// The session a header names, if one does.
fn header_session(headers: &HeaderMap) -> Result<Option<String>, Refused> {
    for name in SESSION_HEADERS {
        if let Some(value) = headers.get(name) {
            let id = value
                .to_str()
                .map_err(|_| bad(format!("the `{name}` header is not text")))?;
            return Ok(Some(id.trim().to_string()));
        }
    }
    Ok(None)
}

async fn read_body(body: Incoming) -> Result<Bytes, Refused> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over {} MiB", MAX_BODY_BYTES >> 20),
        )),
        Err(e) => Err(bad(format!("failed to read the request body: {e}"))),
    }
}

async fn read_json(body: Incoming) -> Result<Value, Refused> {
    let bytes = read_body(body).await?;
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("the body is not JSON: {e}")))
}

/// The cell of a `run`: `{"code": "..."}`.
async fn read_code(body: Incoming) -> Result<String, Refused> {
    match read_json(body).await? {
        Value::Object(mut o) => match o.remove("code") {
            Some(Value::String(code)) => Ok(code),
            _ => Err(bad(
                r#"the body is `{"code": "..."}`, with the cell as a string"#,
            )),
        },
        _ => Err(bad(r#"the body is `{"code": "..."}`, a JSON object"#)),
    }
}

/// A run as server-sent events: `output` events (`{"stream", "text"}`) as the
/// cell writes, then one `result` (the outcome, as without streaming) or
/// `error` (`{"kind", "message"}`). A client that goes away cancels the run.
fn run_streamed(sessions: Arc<Sessions>, id: String, code: String, busy: Busy) -> BoxResponse {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let (sink, mut output) = crate::python::OutputSink::channel();
    let task = tokio::spawn(async move {
        let run = sessions.run_streaming(&id, &code, sink);
        tokio::pin!(run);
        let outcome = loop {
            tokio::select! {
                outcome = &mut run => break outcome,
                Some((stream, text)) = output.recv() => {
                    let _ = tx.send(event("output", &json!({"stream": stream, "text": text})));
                }
            }
        };
        while let Ok((stream, text)) = output.try_recv() {
            let _ = tx.send(event("output", &json!({"stream": stream, "text": text})));
        }
        let _ = tx.send(match outcome {
            Ok(outcome) => event("result", &json!(outcome)),
            Err(e) => event("error", &json!({"kind": e.kind, "message": e.message})),
        });
    });
    let body = Events {
        rx,
        task: task.abort_handle(),
        _busy: busy,
    };
    http::Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body.boxed())
        .expect("a valid response")
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The body of a streamed run; dropping it (the client went away) stops the run.
struct Events {
    rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
    task: tokio::task::AbortHandle,
    /// In flight (for a stopping server) until the last event is sent.
    _busy: Busy,
}

impl Drop for Events {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}
