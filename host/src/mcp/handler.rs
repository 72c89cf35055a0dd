//! One client's view of the server ([`Handler`]): the tools it sees, its own
//! Python sessions (its quota, ownership, cancellation), and rmcp's
//! `ServerHandler` for it.

use super::progress::Progress;
use super::{CLOSE_SESSION, Gone, MAX_CODE_BYTES, RESET_SESSION, RUN_PYTHON, Server, guard};
use crate::error::{ErrorKind, ToolError};
use crate::python::{Sessions, observe};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, CustomRequest,
    CustomResult, ErrorCode, Implementation, JsonObject, ListToolsResult, PaginatedRequestParams,
    ProtocolVersion, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One client's view of the server: its own sessions.
pub struct Handler {
    server: Arc<Server>,
    owned: Arc<Mutex<HashSet<String>>>,
    /// Sessions being created for this client (they count against its quota:
    /// calls run concurrently, and each would otherwise see the same count).
    starting: AtomicUsize,
    /// Whether it may continue any session saved in the state dir (stdio: the
    /// client is whoever runs the command).
    trusts_state_dir: bool,
    /// Sessions it closed (`close_session`), to say so when it names one again.
    closed: Mutex<HashSet<String>>,
}

impl Handler {
    pub(super) fn server(&self) -> &Server {
        &self.server
    }

    /// A handler for one new client of `server`.
    pub(super) fn new(server: Arc<Server>) -> Self {
        Self {
            server,
            owned: Arc::new(Mutex::new(HashSet::new())),
            starting: AtomicUsize::new(0),
            trusts_state_dir: false,
            closed: Mutex::new(HashSet::new()),
        }
    }

    /// This client may continue the sessions saved in the state dir.
    pub(super) fn trusting_state_dir(mut self) -> Self {
        self.trusts_state_dir = true;
        self
    }
}

pub(super) struct Starting<'a>(&'a AtomicUsize);

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        // The client is gone: its sessions go with it.
        if let Some(sessions) = self.server.sessions() {
            for id in self.owned.lock().unwrap_or_else(|p| p.into_inner()).drain() {
                sessions.close(&id);
            }
        }
    }
}

pub(super) fn object(v: Value) -> Arc<JsonObject> {
    match v {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

pub(super) fn text_result(text: String, structured: Value, is_error: bool) -> CallToolResult {
    let mut result = if is_error {
        CallToolResult::error(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::success(vec![ContentBlock::text(text)])
    };
    result.structured_content = Some(structured);
    result
}

/// The one argument of a tool that takes a single non-empty string `key`
/// (`session_id`, `snapshot`), and nothing else.
pub(super) fn only_arg<'a>(
    args: &'a JsonObject,
    tool: &str,
    key: &str,
) -> Result<&'a str, ToolError> {
    let invalid = |m: String| ToolError::new(ErrorKind::InvalidArguments, m);
    if let Some(extra) = args.keys().find(|k| *k != key) {
        return Err(invalid(format!(
            "`{tool}` has no argument `{extra}` (it takes `{key}`)"
        )));
    }
    match args.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(invalid(format!("`{key}` (a string) is required"))),
    }
}

pub(super) fn tool_error(e: &ToolError) -> CallToolResult {
    text_result(format!("{}: {}", e.kind, e.message), e.to_json(), true)
}

impl Handler {
    /// Every tool: the registry's (waiting for them if they are still compiling)
    /// and the server's own.
    async fn tools(&self) -> Result<Vec<Tool>, ToolError> {
        let registry = self.server.tools().await?;
        let mut tools: Vec<Tool> = registry
            .tools()
            .iter()
            .map(|t| {
                Tool::new(
                    t.name.clone(),
                    t.description.clone(),
                    object(t.parameters.clone()),
                )
            })
            .collect();
        if self.server.has_python() {
            tools.push(Tool::new(
                RUN_PYTHON,
                "Runs Python code in a sandboxed session and returns what it printed (stdout, stderr), \
                 the repr of a trailing expression, the error with its traceback, and the value given to \
                 `final_answer(x)`. Variables persist between calls with the same `session_id`; without \
                 one, a new session starts and its id is returned.",
                object(json!({
                    "type": "object",
                    "properties": {
                        "code": {"type": "string", "description": "The Python code to run."},
                        "session_id": {"type": "string", "description": "A session id a previous `run_python` returned; leave it out, or pass \"\", to start a new session."}
                    },
                    "required": ["code"],
                    "additionalProperties": false
                })),
            ));
            if self.server.has_data()
                && let Some(Tool { input_schema, .. }) = tools.last_mut()
            {
                let mut schema = (**input_schema).clone();
                schema["properties"]["runner"] = json!({
                    "type": "string",
                    "enum": ["python", "data"],
                    "description": "`data` for numpy, pandas, scipy, scikit-learn and matplotlib (CPython 3.15, 32-bit: numpy's default int is int32); `python` (the default) for the rest. A session stays on the runner that started it."
                });
                *input_schema = Arc::new(schema);
            }
            tools.push(Tool::new(
                RESET_SESSION,
                "Clears every variable of a Python session, as if it had just started.",
                object(json!({
                    "type": "object",
                    "properties": {
                        "session_id": {"type": "string", "description": "The session to clear."}
                    },
                    "required": ["session_id"],
                    "additionalProperties": false
                })),
            ));
            tools.push(Tool::new(
                CLOSE_SESSION,
                "Closes a Python session: its variables are gone and it no longer counts against this client's sessions.",
                object(json!({
                    "type": "object",
                    "properties": {
                        "session_id": {"type": "string", "description": "The session to close."}
                    },
                    "required": ["session_id"],
                    "additionalProperties": false
                })),
            ));
            tools.extend(super::files::tools());
            tools.extend(super::snapshots::tools());
        }
        Ok(tools)
    }

    /// A session a client names must be one it created.
    pub(super) fn check_owned(&self, id: &str) -> Result<(), ToolError> {
        let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        if owned.contains(id) {
            return Ok(());
        }
        if self.trusts_state_dir && self.server.sessions().is_some_and(|s| s.persisted(id)) {
            owned.insert(id.to_string());
            return Ok(());
        }
        if self
            .closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
        {
            return Err(ToolError::new(
                ErrorKind::NotFound,
                format!(
                    "session `{id}` was closed (`{CLOSE_SESSION}`): its variables and files are gone; call `{RUN_PYTHON}` without `session_id` to start a new one"
                ),
            ));
        }
        Err(ToolError::new(
            ErrorKind::NotFound,
            format!(
                "unknown session `{id}`: this client did not create it; call `{RUN_PYTHON}` without `session_id` to start one"
            ),
        ))
    }

    /// The session manager's `not-found` for a session this client created means
    /// it expired (the manager evicts idle sessions on every lookup).
    pub(super) fn expired(&self, id: &str, e: ToolError) -> ToolError {
        // (A file that is not there is `not-found` too, in other words.)
        if e.kind != ErrorKind::NotFound || !e.message.starts_with("no session `") {
            return e;
        }
        self.forget(id);
        ToolError::new(
            ErrorKind::NotFound,
            format!(
                "session `{id}` has expired: it sat idle for more than its TTL and its variables are gone; call `{RUN_PYTHON}` without `session_id` to start a new one"
            ),
        )
    }

    /// Records a session as this client's.
    pub(super) fn own(&self, id: &str) {
        self.owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
    }

    fn forget(&self, id: &str) {
        self.owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Starts a session for this client, within its quota.
    async fn create(&self, sessions: &Sessions) -> Result<String, ToolError> {
        let _starting = self.start(sessions)?;
        let id = sessions.create().await?;
        self.owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone());
        Ok(id)
    }

    /// Takes a place in this client's quota for a session about to be created.
    /// The place is counted under the same lock as the check, so two calls at
    /// once cannot both take the last one, and given back (when the guard drops)
    /// once the session is in `owned`, or if its creation fails or is cancelled.
    pub(super) fn start(&self, sessions: &Sessions) -> Result<Starting<'_>, ToolError> {
        let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        // Sessions that expired or were closed no longer count.
        owned.retain(|id| sessions.contains(id));
        let held = owned.len() + self.starting.load(Ordering::Acquire);
        if held >= self.server.per_client {
            return Err(ToolError::new(
                ErrorKind::Denied,
                format!(
                    "too many sessions for this client: it has {held} open and its quota is {} (`max-sessions-per-client`, so that no client takes all {} of `max-sessions`); {}",
                    self.server.per_client,
                    sessions.max(),
                    self.what_to_close(sessions, &owned)
                ),
            ));
        }
        self.starting.fetch_add(1, Ordering::AcqRel);
        Ok(Starting(&self.starting))
    }

    /// How a client out of sessions gets one back: the oldest idle one it could close.
    fn what_to_close(&self, sessions: &Sessions, owned: &HashSet<String>) -> String {
        match sessions.oldest_idle(owned) {
            Some((id, idle)) => format!(
                "close the one idle longest, `{id}` (idle {} s), with `{CLOSE_SESSION}`, or pass its `session_id` to reuse it (`{RESET_SESSION}` clears it)",
                idle.as_secs()
            ),
            None => format!(
                "all of them are running; wait for one to finish and close it with `{CLOSE_SESSION}`, or wait {} s for idle ones to expire",
                sessions.ttl().as_secs()
            ),
        }
    }

    /// Starts a session for this client; when the server is full, the error
    /// names one of this client's it could close.
    pub(super) async fn create_named(
        &self,
        sessions: &Sessions,
        fresh: &Mutex<Option<String>>,
    ) -> Result<String, ToolError> {
        match self.create(sessions).await {
            Ok(id) => {
                *fresh.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
                Ok(id)
            }
            Err(mut e)
                if e.kind == ErrorKind::Denied && e.message.starts_with("too many sessions:") =>
            {
                let owned = self.owned.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if !owned.is_empty() {
                    e.message =
                        format!("{}; or {}", e.message, self.what_to_close(sessions, &owned));
                }
                Err(e)
            }
            other => other,
        }
    }

    async fn close_session(&self, args: &JsonObject) -> CallToolResult {
        let id = match only_arg(args, CLOSE_SESSION, "session_id") {
            Ok(id) => id,
            Err(e) => return tool_error(&e),
        };
        let sessions = match self.server.sessions_of(id).await {
            Ok(s) => s,
            Err(e) => return tool_error(&e),
        };
        if let Err(e) = self.check_owned(id) {
            return tool_error(&e);
        }
        self.forget(id);
        {
            let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
            // Bounded: a client that closes very many forgets the oldest word.
            if closed.len() >= 4096 {
                closed.clear();
            }
            closed.insert(id.to_string());
        }
        if sessions.close_for_good(id).await {
            text_result(
                format!("session `{id}` was closed"),
                json!({"session_id": id, "closed": true}),
                false,
            )
        } else {
            tool_error(&ToolError::new(
                ErrorKind::NotFound,
                format!("session `{id}` had already expired: it sat idle for more than its TTL"),
            ))
        }
    }

    /// `fresh` is set to the session this call creates, whose id the client has
    /// not seen yet: a cancel closes that one (nothing could name it again).
    /// With `progress`, the output goes to the client as it comes too.
    async fn run_python(
        &self,
        args: &JsonObject,
        fresh: &Mutex<Option<String>>,
        progress: Option<Progress>,
    ) -> CallToolResult {
        let invalid = |m: String| tool_error(&ToolError::new(ErrorKind::InvalidArguments, m));
        let data = self.server.has_data();
        let known: &[&str] = match data {
            true => &["code", "session_id", "runner"],
            false => &["code", "session_id"],
        };
        if let Some(extra) = args.keys().find(|k| !known.contains(&k.as_str())) {
            let takes = match data {
                true => "`code`, `session_id` and `runner`",
                false => "`code` and `session_id`",
            };
            return invalid(format!(
                "`{RUN_PYTHON}` has no argument `{extra}` (it takes {takes})"
            ));
        }
        // The runner: as asked, else the one the session belongs to.
        let named = args.get("session_id").and_then(Value::as_str).unwrap_or("");
        let on_data = match args.get("runner") {
            None | Some(Value::Null) => named.starts_with("d-"),
            Some(Value::String(r)) if r == "data" || r == "python" => {
                let wanted = r == "data";
                if !named.is_empty() && named.starts_with("d-") != wanted {
                    let (is, other) = match wanted {
                        true => ("the Python runner's", "python"),
                        false => ("the data runner's", "data"),
                    };
                    return invalid(format!(
                        "session `{named}` is {is}: pass `runner: \"{other}\"`, or leave `session_id` out to start a new session on `{r}`"
                    ));
                }
                wanted
            }
            Some(other) => {
                return invalid(format!(
                    "`runner` must be \"python\" or \"data\", got {}",
                    crate::value::kind(other)
                ));
            }
        };
        let sessions = match on_data {
            true => self.server.data().await,
            false => self.server.python().await,
        };
        let sessions = match sessions {
            Ok(s) => s,
            Err(e) => return tool_error(&e),
        };
        let code = match args.get("code") {
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return invalid(format!(
                    "`code` must be a string, got {}",
                    crate::value::kind(other)
                ));
            }
            None => return invalid("`code` is required".into()),
        };
        if code.len() > MAX_CODE_BYTES {
            return invalid(format!(
                "the code is {} bytes; the limit is {MAX_CODE_BYTES}",
                code.len()
            ));
        }
        let id = match args.get("session_id") {
            // Strict-mode models must send every field: "" means "new" too.
            None | Some(Value::Null) => match self.create_named(&sessions, fresh).await {
                Ok(id) => id,
                Err(e) => return tool_error(&e),
            },
            Some(Value::String(id)) if id.is_empty() => {
                match self.create_named(&sessions, fresh).await {
                    Ok(id) => id,
                    Err(e) => return tool_error(&e),
                }
            }
            Some(Value::String(id)) => match self.check_owned(id) {
                Ok(()) => id.clone(),
                Err(e) => return tool_error(&e),
            },
            Some(other) => {
                return invalid(format!(
                    "`session_id` must be a string, got {}",
                    crate::value::kind(other)
                ));
            }
        };
        let ran = match progress {
            Some(progress) => progress.run(&sessions, &id, code).await,
            None => sessions.run(&id, code).await,
        };
        match ran {
            Ok(outcome) => {
                let text = format!("{}[session_id: {id}]", observe(&outcome));
                let mut structured = serde_json::to_value(&outcome).unwrap_or_default();
                structured["session_id"] = json!(id);
                let mut result = text_result(text, structured, outcome.error.is_some());
                // The plots a data cell wrote, for the client to show.
                for image in &outcome.images {
                    result.content.push(ContentBlock::image(
                        STANDARD.encode(&image.png),
                        "image/png",
                    ));
                }
                result
            }
            Err(e) => tool_error(&self.expired(&id, e)),
        }
    }

    async fn reset_session(&self, args: &JsonObject) -> CallToolResult {
        let id = match only_arg(args, RESET_SESSION, "session_id") {
            Ok(id) => id,
            Err(e) => return tool_error(&e),
        };
        let sessions = match self.server.sessions_of(id).await {
            Ok(s) => s,
            Err(e) => return tool_error(&e),
        };
        if let Err(e) = self.check_owned(id) {
            return tool_error(&e);
        }
        match sessions.reset(id).await {
            Ok(()) => text_result(
                format!("session `{id}` was reset: its variables are gone"),
                json!({"session_id": id}),
                false,
            ),
            Err(e) => tool_error(&self.expired(id, e)),
        }
    }

    async fn call(
        &self,
        name: &str,
        args: JsonObject,
        fresh: &Mutex<Option<String>>,
        progress: Option<Progress>,
    ) -> Result<CallToolResult, ErrorData> {
        match name {
            RUN_PYTHON if self.server.has_python() => {
                Ok(self.run_python(&args, fresh, progress).await)
            }
            RESET_SESSION if self.server.has_python() => Ok(self.reset_session(&args).await),
            CLOSE_SESSION if self.server.has_python() => Ok(self.close_session(&args).await),
            super::files::WRITE_FILE | super::files::READ_FILE | super::files::LIST_FILES
                if self.server.has_python() =>
            {
                Ok(self.file_tool(name, &args, fresh).await)
            }
            super::snapshots::SNAPSHOT_SESSION | super::snapshots::RESTORE_SESSION
                if self.server.has_python() =>
            {
                Ok(self.snapshot_tool(name, &args).await)
            }
            _ => self.call_registry_tool(name, args).await,
        }
    }

    /// A call of a registry tool, once the tools have loaded.
    async fn call_registry_tool(
        &self,
        name: &str,
        args: JsonObject,
    ) -> Result<CallToolResult, ErrorData> {
        let registry = match self.server.tools().await {
            Ok(r) => r,
            Err(e) => return Ok(tool_error(&e)),
        };
        if registry.tool(name).is_none() {
            let tools = self.tools().await.unwrap_or_default();
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{name}`"),
                Some(
                    json!({"tools": tools.iter().map(|t| t.name.to_string()).collect::<Vec<_>>()}),
                ),
            ));
        }
        match registry.call(name, &Value::Object(args)).await {
            Ok(v) => {
                let text = serde_json::to_string(&v).unwrap_or_default();
                let structured = match v {
                    Value::Object(_) => v,
                    other => json!({ "result": other }),
                };
                Ok(text_result(text, structured, false))
            }
            Err(e) => Ok(tool_error(&e)),
        }
    }
}

/// The newest protocol revision served. `2026-07-28` made HTTP stateless (no
/// `initialize`, no `Mcp-Session-Id`), so a server could no longer tell whose
/// Python session a call names; clients negotiate down to this one.
const PROTOCOL: ProtocolVersion = ProtocolVersion::V_2025_11_25;

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_protocol_version(PROTOCOL)
            .with_server_info(Implementation::new("witbox", env!("CARGO_PKG_VERSION")))
            .with_instructions(self.server.instructions.clone())
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&PROTOCOL))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = self
            .tools()
            .await
            .map_err(|e| ErrorData::internal_error(e.message, None))?;
        Ok(ListToolsResult::with_all_items(tools))
    }

    /// rmcp reads a standard request whose params do not fit its type (a
    /// `tools/call` without a `name`) as a custom one, which would be answered
    /// "method not found": the method is there, its params are wrong.
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        if request.method != "tools/call" {
            return Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!("method not found: `{}`", request.method),
                None,
            ));
        }
        let why = match request.params_as::<CallToolRequestParams>() {
            Ok(None) => "`params` with the tool's `name` are required".to_string(),
            Ok(Some(_)) => "they do not match the MCP schema".to_string(),
            Err(e) => guard::shorten(&e.to_string(), 300),
        };
        Err(ErrorData::invalid_params(
            format!("invalid params for `tools/call`: {why}"),
            None,
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let progress = Progress::of(&request, &context);
        let args = request.arguments.unwrap_or_default();
        let fresh = Mutex::new(None);
        tokio::select! {
            result = self.call(&request.name, args, &fresh, progress) => result.map(CallToolResponse::from),
            () = cancelled(&context) => {
                // The client cancelled or went away mid-call: dropping the call
                // stopped the run at once (the guest yields at every epoch tick).
                // The session stays open under its id; its next run starts it
                // again and says so (`restart_reason: cancelled`). One this call
                // created is closed: the client never saw its id. A client that
                // went away has its sessions closed when its handler drops.
                let fresh = fresh.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let (Some(sessions), Some(id)) = (self.server.sessions(), fresh) {
                    sessions.close(&id);
                    self.forget(&id);
                }
                Err(ErrorData::internal_error("the call was cancelled", None))
            }
        }
    }
}

/// Completes when the client cancels the request (`notifications/cancelled`,
/// which rmcp maps to `context.ct` for the sender's own request ids only) or
/// goes away (a [`Gone`] of the request's transport).
async fn cancelled(context: &RequestContext<RoleServer>) {
    let gone = |token: Option<&Gone>| {
        let token = token.map(|g| g.0.clone());
        async move {
            match token {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        }
    };
    let session = gone(context.extensions.get::<Gone>());
    let connection = gone(
        context
            .extensions
            .get::<::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Gone>()),
    );
    tokio::select! {
        () = context.ct.cancelled() => {}
        () = session => {}
        () = connection => {}
    }
}
