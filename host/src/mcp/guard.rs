//! What stands between a client's bytes and rmcp: a size cap on every message,
//! read before anything of it is parsed or kept, and a JSON-RPC error for every
//! message the server will not act on, so a client is never left waiting.
//!
//! rmcp 3.11.0 on its own (`transport/async_rw.rs`) silently drops a line that is
//! not JSON or not UTF-8 (it fears an error storm with a peer that echoes errors
//! back, rust-sdk#938), drops a line over 16 MiB the same way, and reads a
//! `tools/call` whose `arguments` is not an object as a custom request (its
//! `ClientRequest` is an untagged enum), answered `-32601` "tools/call". Here
//! each gets an answer that says what is wrong. There is no storm: what this
//! server sends is a valid JSON-RPC error, and an error echoed back to it
//! parses, so it is never answered.
//!
//! [`check`] is shared by both transports; [`Guarded`] is the stdio (any byte
//! stream) transport built on it; `http.rs` applies it to request bodies.

use super::Gone;
use bytes::{Buf, BytesMut};
use rmcp::RoleServer;
use rmcp::model::{ErrorCode, GetExtensions, JsonRpcMessage, RequestId};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

pub use crate::limits::MAX_MESSAGE_BYTES;

/// A message the guard answers itself instead of passing it to rmcp.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The request's id, when it could be read.
    pub id: Option<RequestId>,
    /// The JSON-RPC error code.
    pub code: ErrorCode,
    /// What is wrong, for the person or model reading it.
    pub message: String,
}

impl Refusal {
    fn parse(message: String) -> Self {
        Self {
            id: None,
            code: ErrorCode::PARSE_ERROR,
            message,
        }
    }

    /// The error response on the wire; `id` is `null` when it is unknown
    /// (JSON-RPC 2.0, section 5).
    pub fn to_json(&self) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": self.id,
            "error": {"code": self.code.0, "message": self.message},
        })
    }

    fn to_line(&self) -> Vec<u8> {
        let mut line = self.to_json().to_string().into_bytes();
        line.push(b'\n');
        line
    }
}

/// The answer to a message over [`MAX_MESSAGE_BYTES`].
pub fn too_large() -> Refusal {
    Refusal::parse(format!(
        "parse error: the message is over the limit of {MAX_MESSAGE_BYTES} bytes (8 MiB) and was not read"
    ))
}

/// What [`check`] read of a message: enough to answer it, nothing of its values.
#[derive(Debug, Default)]
pub struct Seen {
    /// The request's id (`None` for a notification, or when it is unreadable).
    pub id: Option<RequestId>,
    /// Whether the message has a `method` and no `id`: a notification, which
    /// JSON-RPC forbids answering.
    pub notification: bool,
}

/// Checks one message (already within [`MAX_MESSAGE_BYTES`]): it must be UTF-8
/// and JSON, and a `tools/call` must have an object (or no) `arguments`. Whether
/// it is a well-formed MCP message is left to rmcp's own types.
pub fn check(message: &[u8]) -> Result<Seen, Refusal> {
    if let Err(e) = std::str::from_utf8(message) {
        return Err(Refusal::parse(format!(
            "parse error: the message is not valid UTF-8 (the bytes after the first {} are not)",
            e.valid_up_to()
        )));
    }
    let probe = match serde_json::from_slice::<Probe>(message) {
        Ok(probe) => probe,
        Err(e) if e.is_syntax() || e.is_eof() => {
            // serde_json names only the line and column of a syntax error, never
            // the text, so the client's bytes are not echoed.
            return Err(Refusal::parse(format!(
                "parse error: the message is not valid JSON: {e}"
            )));
        }
        // JSON, but not shaped like a request: rmcp's types say what is wrong.
        Err(_) => return Ok(Seen::default()),
    };
    let notification = probe.method.is_some() && probe.id.is_none();
    if probe.method.as_deref() == Some("tools/call")
        && let Some(kind) = &probe.arguments
        && !kind.is_object()
    {
        return Err(Refusal {
            id: probe.id,
            code: ErrorCode::INVALID_PARAMS,
            message: format!(
                "invalid params: `arguments` of `tools/call` must be an object of the tool's named arguments, got {kind}"
            ),
        });
    }
    Ok(Seen {
        id: probe.id,
        notification,
    })
}

/// Parses a checked message into rmcp's type, or says why it is not an MCP message.
/// `Ok(None)`: a notification it cannot read, which is dropped unanswered.
fn decode(message: &[u8]) -> Result<Option<RxJsonRpcMessage<RoleServer>>, Refusal> {
    let message = message.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(message);
    let seen = check(message)?;
    match serde_json::from_slice(message) {
        Ok(message) => Ok(Some(message)),
        // Such as a notification of an extension this server does not know.
        Err(_) if seen.notification => Ok(None),
        Err(e) => Err(Refusal {
            id: seen.id,
            code: ErrorCode::INVALID_REQUEST,
            message: format!(
                "invalid request: the message is JSON but not an MCP request: {}",
                shorten(&e.to_string(), 300)
            ),
        }),
    }
}

/// serde's messages quote the offending value, which may be megabytes long.
pub(super) fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The parts of a message the guard looks at; everything else is skipped
/// unread (serde's `IgnoredAny`), so no value of the client's is copied.
/// Only an object is a message: anything else fails to deserialize, as a
/// "data" error, and is left to rmcp's types to describe.
#[derive(Default)]
struct Probe {
    id: Option<RequestId>,
    method: Option<String>,
    /// The kind of `params.arguments`, when `params` is an object that has it.
    arguments: Option<Kind>,
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Probe;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON-RPC message (an object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Probe, A::Error> {
                let mut probe = Probe::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match &*key {
                        "id" => probe.id = map.next_value()?,
                        "method" => probe.method = map.next_value()?,
                        "params" => probe.arguments = map.next_value::<Params>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(probe)
            }
        }
        d.deserialize_map(V)
    }
}

/// `params`: the kind of its `arguments` if it is an object that has them; any
/// other `params` is skipped for rmcp to judge.
struct Params(Option<Kind>);

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Kind::deserialize(d)? {
            Kind::Object(arguments) => Ok(Params(arguments.map(|a| *a))),
            _ => Ok(Params(None)),
        }
    }
}

/// A JSON value's kind, in the words of [`crate::value::kind`], read without
/// keeping the value. Of an object, the kind of its `arguments` member, which is
/// all [`Params`] needs.
enum Kind {
    Object(Option<Box<Kind>>),
    Other(String),
}

impl Kind {
    fn is_object(&self) -> bool {
        matches!(self, Kind::Object(_))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Kind::Object(_) => f.write_str("an object"),
            Kind::Other(kind) => f.write_str(kind),
        }
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Kind, E> {
                Ok(Kind::Other(format!("the boolean {b}")))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Kind, E> {
                Ok(Kind::Other(format!("the number {n}")))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Kind, E> {
                Ok(Kind::Other(format!("the number {n}")))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Kind, E> {
                Ok(Kind::Other(format!("the number {n}")))
            }
            fn visit_str<E>(self, s: &str) -> Result<Kind, E> {
                Ok(Kind::Other(if s.len() > 40 {
                    format!("a string of {} bytes", s.len())
                } else {
                    format!("the string {s:?}")
                }))
            }
            fn visit_unit<E>(self) -> Result<Kind, E> {
                Ok(Kind::Other("null".into()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
                let mut n = 0usize;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Kind::Other(format!("an array of {n} items")))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
                let mut arguments = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "arguments" {
                        // `null` arguments are no arguments, as rmcp reads them.
                        arguments = map.next_value::<Option<Kind>>()?.map(Box::new);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Kind::Object(arguments))
            }
        }
        d.deserialize_any(V)
    }
}

/// The stdio transport (any byte stream): newline-delimited JSON-RPC, each line
/// checked before rmcp sees it, and [`Gone`] cancelled when the stream ends.
pub struct Guarded<R, W> {
    read: BufReader<R>,
    /// The line being read; never longer than [`MAX_MESSAGE_BYTES`].
    line: Vec<u8>,
    /// Skipping the rest of a line over the cap, up to its newline. On the
    /// struct, not in a local, because `receive` is polled in rmcp's `select!`
    /// and may be dropped and called again mid-line.
    discarding: bool,
    out: Arc<tokio::sync::Mutex<Output<W>>>,
    /// A refusal not yet handed to `out`: kept here, so a `receive` dropped while
    /// it waits for the writer does not lose it.
    pending: Option<Pending>,
    gone: CancellationToken,
}

/// The writing half, shared by rmcp's sends and the guard's refusals. A message
/// is appended to `buf` whole, under the lock, so two never interleave; the
/// bytes leave `buf` only once written, so a send cancelled mid-write leaves
/// the rest for the next one instead of a torn line.
struct Output<W> {
    io: Option<W>,
    buf: BytesMut,
}

impl<W: AsyncWrite + Unpin> Output<W> {
    async fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        let Some(io) = self.io.as_mut() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the MCP stream is closed",
            ));
        };
        self.buf.extend_from_slice(line);
        while !self.buf.is_empty() {
            let n = io.write(&self.buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.buf.advance(n);
        }
        io.flush().await
    }
}

/// How reading one line ended.
enum Line {
    Whole,
    TooLong,
    End,
}

impl<R, W> Guarded<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    /// A transport over `(read, write)`; `gone` is cancelled when `read` ends.
    pub fn new(read: R, write: W, gone: CancellationToken) -> Self {
        Self {
            read: BufReader::new(read),
            line: Vec::new(),
            discarding: false,
            out: Arc::new(tokio::sync::Mutex::new(Output {
                io: Some(write),
                buf: BytesMut::new(),
            })),
            pending: None,
            gone,
        }
    }

    /// Reads up to a newline into `self.line` without letting it grow past the
    /// cap: the length is checked before each append, so an endless line costs
    /// no memory. Cancel-safe: bytes are consumed from the reader only in the
    /// same synchronous step that appends (or skips) them.
    async fn read_line(&mut self) -> Line {
        loop {
            let available = match self.read.fill_buf().await {
                Ok([]) | Err(_) => return Line::End,
                Ok(available) => available,
            };
            let newline = available.iter().position(|b| *b == b'\n');
            let take = newline.map_or(available.len(), |i| i + 1);
            let mut ended = None;
            if self.discarding {
                self.discarding = newline.is_none();
            } else if self.line.len() + take > MAX_MESSAGE_BYTES + 1 {
                // `+ 1`: the newline is not part of the message.
                self.line.clear();
                self.discarding = newline.is_none();
                ended = Some(Line::TooLong);
            } else {
                self.line.extend_from_slice(&available[..take]);
                if newline.is_some() {
                    ended = Some(Line::Whole);
                }
            }
            self.read.consume(take);
            if let Some(line) = ended {
                return line;
            }
        }
    }

    /// Writes a refusal that is waiting. Cancel-safe: the line moves into the
    /// shared buffer in one step with the state change, and a write cut short
    /// is finished by the next call (or the next send).
    async fn flush_pending(&mut self) -> std::io::Result<()> {
        if self.pending.is_none() {
            return Ok(());
        }
        let mut out = self.out.lock().await;
        if let Some(Pending::Queued(line)) = self.pending.replace(Pending::Writing) {
            out.buf.extend_from_slice(&line);
        }
        out.write(&[]).await?;
        self.pending = None;
        Ok(())
    }
}

enum Pending {
    Queued(Vec<u8>),
    Writing,
}

impl<R, W> Transport<RoleServer> for Guarded<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let out = self.out.clone();
        async move {
            let mut line = serde_json::to_vec(&item)?;
            line.push(b'\n');
            out.lock().await.write(&line).await
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            if self.flush_pending().await.is_err() {
                // The client stopped reading: it is gone as well.
                self.gone.cancel();
                return None;
            }
            match self.read_line().await {
                Line::Whole => {}
                Line::TooLong => {
                    self.pending = Some(Pending::Queued(too_large().to_line()));
                    continue;
                }
                Line::End => {
                    self.gone.cancel();
                    return None;
                }
            }
            let line = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let decoded = if line.is_empty() {
                Ok(None)
            } else {
                decode(line)
            };
            self.line.clear();
            match decoded {
                Ok(Some(mut message)) => {
                    if let JsonRpcMessage::Request(request) = &mut message {
                        request
                            .request
                            .extensions_mut()
                            .insert(Gone(self.gone.clone()));
                    }
                    return Some(message);
                }
                Ok(None) => {}
                Err(refusal) => self.pending = Some(Pending::Queued(refusal.to_line())),
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        let mut out = self.out.lock().await;
        if let Some(mut io) = out.io.take() {
            let _ = io.shutdown().await;
        }
        Ok(())
    }
}
