//! The streamable HTTP transport: rmcp's `StreamableHttpService` behind a front
//! that caps and checks each request body before rmcp reads it, with a session
//! manager that tells a client's calls when its MCP session ends.
//!
//! A client is gone, and its in-flight `tools/call`s stop at the next epoch tick,
//! when the connection that carries a call's response closes (its response body
//! is dropped before its end), or when its MCP session ends (`DELETE /mcp`, or
//! rmcp's idle timeout). rmcp itself would let such a call run on: a closed
//! connection cancels nothing, and a closed session cancels its calls only after
//! waiting up to 5 s for them to finish (the drain in `service.rs`). hyper sees a
//! connection close while a response streams because it reads on (half-closed
//! connections are not allowed), so a client that shuts down its writing side
//! counts as gone too. How soon it sees it depends on the runtime: on a single
//! thread that a spinning guest keeps busy, tokio polls its I/O driver only
//! every 61 ticks of the scheduler.

use super::guard::{self, MAX_MESSAGE_BYTES, Refusal};
use super::{Gone, Handler};
use anyhow::{Result, bail};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use rmcp::RoleServer;
use rmcp::model::{ClientJsonRpcMessage, GetExtensions, JsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError, LocalSessionWorker,
};
use rmcp::transport::streamable_http_server::session::{
    EventStore, EventStream, SessionId, SessionManager,
};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::transport::{Transport, WorkerTransport};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio_util::sync::{CancellationToken, DropGuard};

/// Refuses to serve without tokens on an address other hosts can reach: whoever
/// reaches the server can run code in its sandboxes.
pub fn require_loopback(addr: SocketAddr) -> Result<()> {
    if addr.ip().to_canonical().is_loopback() {
        return Ok(());
    }
    bail!(
        "refusing to serve on {addr} without tokens: it is not a loopback address, so anyone who \
         can reach it could run code in its sandboxes; listen on 127.0.0.1 or [::1], or give \
         `witbox serve` bearer tokens (`--tokens FILE` or `WITBOX_TOKENS`)"
    )
}

pub(super) type Service = StreamableHttpService<Handler, Sessions>;

/// rmcp's service, stopped by `stop`, with its body limit set to ours: [`handle`]
/// has already refused larger bodies, so rmcp's plain-text `413` never shows.
/// Without tokens only loopback `Host` headers are accepted (rmcp's guard against
/// DNS rebinding); with them, the token is the guard, and any `Host` is served.
pub(super) fn service(
    make: impl Fn() -> Handler + Send + Sync + 'static,
    stop: CancellationToken,
    tokens: bool,
) -> (Service, Arc<Sessions>) {
    let mut config = StreamableHttpServerConfig::default()
        .with_max_request_body_bytes(MAX_MESSAGE_BYTES)
        .with_cancellation_token(stop);
    if tokens {
        config = config.disable_allowed_hosts();
    }
    let sessions = Arc::new(Sessions::default());
    let service = StreamableHttpService::new(move || Ok(make()), sessions.clone(), config);
    (service, sessions)
}

pub(super) type BoxResponse = Response<BoxBody<Bytes, Infallible>>;

/// One HTTP request: a `POST` body over the cap, or one [`guard::check`] refuses,
/// gets a JSON-RPC error; any other goes to rmcp, with a [`Gone`] that its
/// response body cancels if it is dropped before its end.
pub(super) async fn handle(
    service: &Service,
    request: Request<Incoming>,
    busy: Option<Busy>,
) -> BoxResponse {
    if request.method() != Method::POST {
        return service.handle(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_MESSAGE_BYTES as u64) {
        // Answered from the header alone: the body is never read.
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, &guard::too_large());
    }
    let body = match Limited::new(body, MAX_MESSAGE_BYTES).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, &guard::too_large());
        }
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("failed to read the request body: {e}"),
            );
        }
    };
    if let Err(refusal) = guard::check(&body) {
        return refuse(StatusCode::BAD_REQUEST, &refusal);
    }
    let gone = CancellationToken::new();
    parts.extensions.insert(Gone(gone.clone()));
    // Armed from here: if the connection closes before the response exists,
    // hyper drops this future, and with it the guard.
    let armed = gone.drop_guard();
    let response = service
        .handle(Request::from_parts(parts, Full::new(body)))
        .await;
    response.map(|body| {
        Watched {
            body,
            armed: Some(armed),
            _busy: busy,
        }
        .boxed()
    })
}

fn refuse(status: StatusCode, refusal: &Refusal) -> BoxResponse {
    respond(status, Some(JSON), refusal.to_json().to_string())
}

fn plain(status: StatusCode, text: String) -> BoxResponse {
    respond(status, Some("text/plain; charset=utf-8"), text)
}

/// The content type of the JSON this server answers with.
pub(super) const JSON: &str = "application/json";

/// A whole response: `status`, a `Content-Type` if any, and `body`.
pub(super) fn respond(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: impl Into<Bytes>,
) -> BoxResponse {
    let mut response = Response::builder().status(status);
    if let Some(content_type) = content_type {
        response = response.header(header::CONTENT_TYPE, content_type);
    }
    response
        .body(Full::new(body.into()).boxed())
        .expect("a valid response")
}

/// `response`, counted in flight until its body is gone (sent, or dropped).
pub(super) fn counted(response: BoxResponse, busy: Busy) -> BoxResponse {
    response.map(|body| {
        Watched {
            body,
            armed: None,
            _busy: Some(busy),
        }
        .boxed()
    })
}

/// A response body that cancels its [`Gone`] if it is dropped before its end:
/// hyper drops it when the client's connection closes (hyper reads on while a
/// response streams, and sees the EOF).
struct Watched {
    body: BoxBody<Bytes, Infallible>,
    /// Disarmed at the body's end; dropped (so cancelling) with the body before it.
    armed: Option<DropGuard>,
    /// Counts the request as in flight until its response is gone.
    _busy: Option<Busy>,
}

/// The `POST /mcp` requests whose response has not ended: a stopping server
/// waits for them.
#[derive(Default)]
pub(super) struct InFlight {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One request in flight, until dropped.
pub(super) struct Busy(Arc<InFlight>);

impl InFlight {
    /// Counts one more request until the [`Busy`] is dropped.
    pub(super) fn enter(self: &Arc<Self>) -> Busy {
        self.count.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// How many there are now.
    pub(super) fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Completes when there are none.
    pub(super) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Watched {
    fn disarm(&mut self) {
        if let Some(armed) = self.armed.take() {
            armed.disarm();
        }
    }
}

impl Body for Watched {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.disarm();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // hyper does not poll a body that says it has ended (an empty `202`):
        // that one was sent whole.
        if self.body.is_end_stream() {
            self.disarm();
        }
    }
}

/// rmcp's in-memory session manager, plus a [`Gone`] per MCP session, cancelled
/// the moment the session is closed (`DELETE`) or its worker ends.
#[derive(Default)]
pub(super) struct Sessions {
    inner: LocalSessionManager,
    live: Mutex<HashMap<SessionId, CancellationToken>>,
    /// With tokens: the principal that started each session.
    owners: Mutex<HashMap<Vec<u8>, Arc<str>>>,
}

impl Sessions {
    /// Records that `principal` started the session `id`.
    pub(super) fn claim(&self, id: &[u8], principal: Arc<str>) {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        owners.insert(id.to_vec(), principal);
    }

    /// How many open sessions `principal` started (the ones whose worker ended,
    /// by rmcp's idle timeout, are forgotten here).
    pub(super) async fn held_by(&self, principal: &str) -> usize {
        let ids: Vec<Vec<u8>> = {
            let owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
            owners
                .iter()
                .filter(|(_, owner)| &***owner == principal)
                .map(|(id, _)| id.clone())
                .collect()
        };
        let mut open = 0;
        for id in ids {
            let session: SessionId = String::from_utf8_lossy(&id).into_owned().into();
            if self.inner.has_session(&session).await.unwrap_or(false) {
                open += 1;
            } else {
                let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
                owners.remove(&id);
            }
        }
        open
    }

    /// Whether `principal` may use the session `id`: it started it, or no one
    /// did (an id that does not exist, which rmcp then refuses).
    pub(super) fn may_use(&self, id: &[u8], principal: &str) -> bool {
        let owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        owners.get(id).is_none_or(|owner| &**owner == principal)
    }

    fn end(&self, id: &SessionId) {
        self.owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id.as_bytes());
        let gone = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Some(gone) = gone {
            gone.cancel();
        }
    }
}

// The streams are boxed (rmcp's own `EventStream`) only so that their type can be
// named without a `Stream` trait in scope.
#[allow(refining_impl_trait)]
impl SessionManager for Sessions {
    type Error = LocalSessionManagerError;
    type Transport = Ending;

    async fn create_session(&self) -> Result<(SessionId, Ending), Self::Error> {
        let (id, inner) = self.inner.create_session().await?;
        let gone = CancellationToken::new();
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), gone.clone());
        Ok((id, Ending { inner, gone }))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        // Before rmcp's close, which lets calls run on while it drains them.
        self.end(id);
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<EventStream, Self::Error> {
        Ok(Box::pin(self.inner.create_stream(id, message).await?))
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(&self, id: &SessionId) -> Result<EventStream, Self::Error> {
        Ok(Box::pin(self.inner.create_standalone_stream(id).await?))
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<EventStream, Self::Error> {
        Ok(Box::pin(self.inner.resume(id, last_event_id).await?))
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.inner.event_store()
    }
}

/// One MCP session's transport: rmcp's, with the session's [`Gone`] on every
/// request, cancelled when the session's worker ends (for any reason).
pub(super) struct Ending {
    inner: WorkerTransport<LocalSessionWorker>,
    gone: CancellationToken,
}

impl Transport<RoleServer> for Ending {
    type Error = <WorkerTransport<LocalSessionWorker> as Transport<RoleServer>>::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        let Some(mut message) = self.inner.receive().await else {
            self.gone.cancel();
            return None;
        };
        if let JsonRpcMessage::Request(request) = &mut message {
            request
                .request
                .extensions_mut()
                .insert(Gone(self.gone.clone()));
        }
        Some(message)
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.gone.cancel();
        self.inner.close().await
    }
}
