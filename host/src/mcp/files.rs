//! `write_file`, `read_file` and `list_files`: files in and out of a session's
//! scratch folder (its `/`). Content is text when it is UTF-8 and base64 when it
//! is not (`encoding`), within `MAX_FILE_BYTES` per file.

use super::handler::{Handler, object, text_result, tool_error};
use super::{RUN_PYTHON, Server};
use crate::error::{ErrorKind, ToolError};
use crate::python::MAX_FILE_BYTES;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rmcp::model::{CallToolResult, JsonObject, Tool};
use serde_json::{Value, json};
use std::sync::Mutex;

/// Puts a file into a session.
pub const WRITE_FILE: &str = "write_file";
/// Gets a file out of a session.
pub const READ_FILE: &str = "read_file";
/// Lists a session's files.
pub const LIST_FILES: &str = "list_files";

pub(super) fn tools() -> Vec<Tool> {
    let session = json!({"type": "string", "description": "The session; for `write_file`, leave it out or pass \"\" to start a new one (its id is returned)."});
    let path = json!({"type": "string", "description": "A path in the session's scratch folder, which is the session's `/` and working directory: `data.csv`, `/out/report.txt`."});
    vec![
        Tool::new(
            WRITE_FILE,
            format!(
                "Writes a file into a Python session's scratch folder (its `/`, and working directory), making folders as needed. `content` is text, or base64 with `encoding: \"base64\"` for binary data; at most {MAX_FILE_BYTES} bytes."
            ),
            object(json!({
                "type": "object",
                "properties": {
                    "session_id": session,
                    "path": path,
                    "content": {"type": "string", "description": "The file's content."},
                    "encoding": {"type": "string", "enum": ["utf-8", "base64"], "description": "How `content` is written: `utf-8` (the default) or `base64`."}
                },
                "required": ["path", "content"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            READ_FILE,
            format!(
                "Reads a file from a Python session's scratch folder: `content` is the text when the file is UTF-8 (`encoding: \"utf-8\"`), else base64 (`encoding: \"base64\"`); at most {MAX_FILE_BYTES} bytes."
            ),
            object(json!({
                "type": "object",
                "properties": {"session_id": session, "path": path},
                "required": ["session_id", "path"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            LIST_FILES,
            "Lists a folder of a Python session's scratch folder (`/` by default): each entry's name, type (`file`, `dir`, `symlink`) and size.",
            object(json!({
                "type": "object",
                "properties": {"session_id": session, "path": path},
                "required": ["session_id"],
                "additionalProperties": false
            })),
        ),
    ]
}

fn invalid(m: String) -> ToolError {
    ToolError::new(ErrorKind::InvalidArguments, m)
}

/// A string argument, if given.
fn string<'a>(args: &'a JsonObject, key: &str) -> Result<Option<&'a str>, ToolError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(format!(
            "`{key}` must be a string, got {}",
            crate::value::kind(other)
        ))),
    }
}

impl Handler {
    pub(super) async fn file_tool(
        &self,
        tool: &str,
        args: &JsonObject,
        fresh: &Mutex<Option<String>>,
    ) -> CallToolResult {
        match self.files(tool, args, fresh).await {
            Ok(result) => result,
            Err(e) => tool_error(&e),
        }
    }

    async fn files(
        &self,
        tool: &str,
        args: &JsonObject,
        fresh: &Mutex<Option<String>>,
    ) -> Result<CallToolResult, ToolError> {
        let server: &Server = self.server();
        let sessions = server.python().await?;
        let known: &[&str] = match tool {
            WRITE_FILE => &["session_id", "path", "content", "encoding"],
            _ => &["session_id", "path"],
        };
        if let Some(extra) = args.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(invalid(format!(
                "`{tool}` has no argument `{extra}` (it takes {})",
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let id = match string(args, "session_id")? {
            Some(id) if !id.is_empty() => {
                self.check_owned(id)?;
                id.to_string()
            }
            _ if tool == WRITE_FILE => self.create_named(&sessions, fresh).await?,
            _ => {
                return Err(invalid(format!(
                    "`session_id` (a string) is required: the session whose files to see (`{RUN_PYTHON}` returns it)"
                )));
            }
        };
        let sessions = match id.starts_with("d-") {
            true => server.sessions_of(&id).await?,
            false => sessions,
        };
        let path = string(args, "path")?;
        let result = match tool {
            WRITE_FILE => {
                let path = path.ok_or_else(|| invalid("`path` is required".into()))?;
                let content = string(args, "content")?
                    .ok_or_else(|| invalid("`content` is required".into()))?;
                let bytes = match string(args, "encoding")?.unwrap_or("utf-8") {
                    "utf-8" => content.as_bytes().to_vec(),
                    "base64" => STANDARD
                        .decode(content)
                        .map_err(|e| invalid(format!("`content` is not valid base64: {e}")))?,
                    other => {
                        return Err(invalid(format!(
                            "`encoding` must be `utf-8` or `base64`, got `{other}`"
                        )));
                    }
                };
                sessions.write_file(&id, path, &bytes).await.map(|()| {
                    text_result(
                        format!("wrote {} bytes to `{path}` [session_id: {id}]", bytes.len()),
                        json!({"session_id": id, "path": path, "size": bytes.len()}),
                        false,
                    )
                })
            }
            READ_FILE => {
                let path = path.ok_or_else(|| invalid("`path` is required".into()))?;
                sessions.read_file(&id, path).await.map(|bytes| {
                    let size = bytes.len();
                    let (encoding, content) = match String::from_utf8(bytes) {
                        Ok(text) => ("utf-8", text),
                        Err(e) => ("base64", STANDARD.encode(e.into_bytes())),
                    };
                    text_result(
                        content.clone(),
                        json!({"session_id": id, "path": path, "size": size,
                               "encoding": encoding, "content": content}),
                        false,
                    )
                })
            }
            _ => {
                let path = path.unwrap_or("/");
                sessions.list_files(&id, path).await.map(|entries| {
                    let text = entries
                        .iter()
                        .map(|e| match e.kind {
                            "dir" => format!("{}/\n", e.name),
                            "file" => format!("{} ({} bytes)\n", e.name, e.size),
                            _ => format!("{} ({})\n", e.name, e.kind),
                        })
                        .collect::<String>();
                    text_result(
                        if text.is_empty() {
                            format!("(`{path}` is empty)")
                        } else {
                            text
                        },
                        json!({"session_id": id, "path": path, "entries": entries}),
                        false,
                    )
                })
            }
        };
        result.map_err(|e| self.expired(&id, e))
    }
}
