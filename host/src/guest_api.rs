//! What a guest may ask of the host (`witbox:agent/host`): call a tool it is
//! granted, list those tools, write a log line. Every call goes to the tool
//! layer's one guarded path through the store's [`ToolHost`], refused ones too,
//! so the audit log sees every attempt.

use crate::bindings::host::{self, LogLevel};
use crate::error::{ErrorKind, ToolError};
use crate::limits::{MAX_CALL_DEPTH, MAX_LOG_BYTES};
use crate::store::{Args, Reply, Request, State};

impl State {
    /// Why this store's policy refuses a call of `name` now, if it does.
    fn refusal(&mut self, name: &str) -> Option<ToolError> {
        let who = &self.sandbox.name;
        if !self.sandbox.may_call(name) {
            return Some(ToolError::new(
                ErrorKind::Denied,
                format!("`{who}` may not call `{name}`: it is not in its `call-tools`"),
            ));
        }
        let limit = self.sandbox.limits.max_tool_calls;
        if self.tool_calls >= limit {
            self.tool_limit_hit = true;
            return Some(ToolError::new(
                ErrorKind::Denied,
                format!("`{who}` reached its limit of {limit} tool calls (`max-tool-calls`)"),
            ));
        }
        self.tool_calls += 1;
        if self.depth >= MAX_CALL_DEPTH {
            return Some(ToolError::new(
                ErrorKind::Denied,
                format!("tool calls nest deeper than {MAX_CALL_DEPTH}"),
            ));
        }
        None
    }
}

impl host::Host for State {
    async fn call_tool(
        &mut self,
        name: String,
        args_json: String,
    ) -> Result<String, host::ToolError> {
        // The guest waits on the host from here: its run slot can serve another call.
        self.turn.waits_on_host();
        let refused = self.refusal(&name);
        let Some(tools) = self.tools.clone() else {
            return Err(host::ToolError::Unavailable("no tools are loaded".into()));
        };
        let caller = self.caller.clone();
        let request = Request {
            caller: &caller,
            depth: self.depth + 1,
            tool: &name,
            args: Args::Text(&args_json),
            refused,
        };
        match tools.call(request).await {
            Ok(Reply::Json(v)) => Ok(v.to_string()),
            Ok(Reply::Vals(_)) => Err(host::ToolError::Other(
                "the host answered a JSON call with component values".into(),
            )),
            Err(e) => Err(e.to_wit()),
        }
    }

    async fn list_tools(&mut self) -> Vec<host::ToolSpec> {
        let Some(tools) = &self.tools else {
            return Vec::new();
        };
        tools
            .specs()
            .into_iter()
            .filter(|t| self.sandbox.may_call(&t.name))
            .collect()
    }

    async fn log(&mut self, level: LogLevel, message: String) {
        let level = match level {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        // Redact the whole message before it is cut to its first line and a
        // length, so no cut splits a secret.
        let message = self.sandbox.redactor.redact(&message);
        let line = message.lines().next().unwrap_or("");
        let line = crate::text::head(line, MAX_LOG_BYTES);
        eprintln!("[{}] {level}: {line}", self.sandbox.name);
    }
}
