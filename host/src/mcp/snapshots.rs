//! `snapshot_session` and `restore_session`: a session as base64 bytes a client
//! keeps, and a new session made from them, in this server or another one (of
//! the same runner build, run by the same user).

use super::handler::{Handler, object, only_arg, text_result, tool_error};
use crate::error::{ErrorKind, ToolError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rmcp::model::{CallToolResult, JsonObject, Tool};
use serde_json::json;

/// Gives a session as bytes.
pub const SNAPSHOT_SESSION: &str = "snapshot_session";
/// Makes a session from those bytes.
pub const RESTORE_SESSION: &str = "restore_session";

/// The most bytes a snapshot may take over MCP: base64 and JSON around it still
/// fit a message (8 MiB).
pub const MAX_MCP_SNAPSHOT: usize = 5 << 20;

pub(super) fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            SNAPSHOT_SESSION,
            format!(
                "Saves a Python session: the variables of its last completed cell and its files, as base64 `snapshot` bytes that `restore_session` turns into a new session later, here or in another witbox server of the same build. At most {MAX_MCP_SNAPSHOT} bytes."
            ),
            object(json!({
                "type": "object",
                "properties": {"session_id": {"type": "string", "description": "The session to save."}},
                "required": ["session_id"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            RESTORE_SESSION,
            "Starts a new session of the runner that made a `snapshot_session` snapshot (Python or data) and returns its `session_id`, with `not_restored` naming each variable that could not be put back.",
            object(json!({
                "type": "object",
                "properties": {"snapshot": {"type": "string", "description": "The base64 `snapshot` that `snapshot_session` returned."}},
                "required": ["snapshot"],
                "additionalProperties": false
            })),
        ),
    ]
}

fn invalid(m: String) -> ToolError {
    ToolError::new(ErrorKind::InvalidArguments, m)
}

impl Handler {
    pub(super) async fn snapshot_tool(&self, tool: &str, args: &JsonObject) -> CallToolResult {
        let result = match tool {
            SNAPSHOT_SESSION => self.snapshot_session(args).await,
            _ => self.restore_session(args).await,
        };
        result.unwrap_or_else(|e| tool_error(&e))
    }

    async fn snapshot_session(&self, args: &JsonObject) -> Result<CallToolResult, ToolError> {
        let id = only_arg(args, SNAPSHOT_SESSION, "session_id")?;
        let sessions = self.server().sessions_of(id).await?;
        self.check_owned(id)?;
        let bytes = sessions
            .snapshot(id)
            .await
            .map_err(|e| self.expired(id, e))?;
        if bytes.len() > MAX_MCP_SNAPSHOT {
            return Err(ToolError::new(
                ErrorKind::Denied,
                format!(
                    "the snapshot is {} bytes; over MCP it may take at most {MAX_MCP_SNAPSHOT} (take files out with `read_file` and delete them first, or use `witbox run --snapshot-to`)",
                    bytes.len()
                ),
            ));
        }
        let encoded = STANDARD.encode(&bytes);
        Ok(text_result(
            format!(
                "saved session `{id}` ({} bytes); pass `snapshot` to `{RESTORE_SESSION}` to continue it",
                bytes.len()
            ),
            json!({"session_id": id, "size": bytes.len(), "snapshot": encoded}),
            false,
        ))
    }

    async fn restore_session(&self, args: &JsonObject) -> Result<CallToolResult, ToolError> {
        let text = only_arg(args, RESTORE_SESSION, "snapshot")?;
        if text.len() > MAX_MCP_SNAPSHOT / 3 * 4 + 4 {
            return Err(invalid(format!(
                "`snapshot` is {} characters of base64; the limit is {MAX_MCP_SNAPSHOT} bytes",
                text.len()
            )));
        }
        let bytes = STANDARD
            .decode(text)
            .map_err(|e| invalid(format!("`snapshot` is not valid base64: {e}")))?;
        let sessions = self.server().sessions_for_snapshot(&bytes).await?;
        let _starting = self.start(&sessions)?;
        let (id, missing) = sessions.restore(&bytes).await?;
        self.own(&id);
        let mut said = format!("restored into session `{id}`");
        if !missing.is_empty() {
            said.push_str(&format!("; not restored: {}", missing.join("; ")));
        }
        Ok(text_result(
            said,
            json!({"session_id": id, "not_restored": missing}),
            false,
        ))
    }
}
