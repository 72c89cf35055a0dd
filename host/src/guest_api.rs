//! What a guest may ask of the host (`witbox:agent/host`): call a tool it is
//! granted, list those tools, write a log line. Every call goes to the tool
//! layer's one guarded path through the store's [`crate::store::ToolHost`],
//! refused ones too, so the audit log sees every attempt.
//!
//! The interface is linked by hand, not with `bindgen!`'s `add_to_linker`: its
//! strings arrive as [`WasmStr`], views of the guest's memory, so each is sized
//! before it is copied into the host (bindgen's `String`s are copies of whatever
//! length the guest passes).

use crate::bindings::host::{LogLevel, ToolError as WitError, ToolSpec};
use crate::error::{ErrorKind, ToolError};
use crate::limits::{MAX_ARGS_BYTES, MAX_CALL_DEPTH, MAX_LOG_BYTES, MAX_NAME_BYTES};
use crate::store::{Args, Reply, Request, State};
use anyhow::Result;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmStr};

/// The interface's name in a component's imports.
const INTERFACE: &str = "witbox:agent/host@0.1.0";

/// Adds `witbox:agent/host` to a linker.
pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> Result<()> {
    let mut host = linker.instance(INTERFACE).map_err(anyhow::Error::from)?;
    host.func_wrap_async(
        "call-tool",
        |store: StoreContextMut<'_, State>, (name, args): (WasmStr, WasmStr)| {
            Box::new(async move { Ok((call_tool(store, name, args).await,)) })
        },
    )
    .map_err(anyhow::Error::from)?;
    host.func_wrap_async("list-tools", |store: StoreContextMut<'_, State>, (): ()| {
        Box::new(async move { Ok((list_tools(store.data()),)) })
    })
    .map_err(anyhow::Error::from)?;
    host.func_wrap_async(
        "log",
        |store: StoreContextMut<'_, State>, (level, message): (LogLevel, WasmStr)| {
            Box::new(async move {
                log(store, level, message);
                Ok(())
            })
        },
    )
    .map_err(anyhow::Error::from)?;
    Ok(())
}

/// The text of `s`, if it is at most `max` bytes: sized in the guest's memory,
/// copied only then. Not UTF-8, or longer: the error says which.
fn bounded(store: &StoreContextMut<'_, State>, s: &WasmStr, max: usize) -> Result<String, usize> {
    match s.to_str(store) {
        Ok(text) if text.len() <= max => Ok(text.into_owned()),
        Ok(text) => Err(text.len()),
        // wasmtime validates UTF-8 (the canonical ABI requires it); a guest that
        // passes anything else gets the same refusal as an oversized one.
        Err(_) => Err(usize::MAX),
    }
}

async fn call_tool(
    store: StoreContextMut<'_, State>,
    name: WasmStr,
    args: WasmStr,
) -> Result<String, WitError> {
    let name = bounded(&store, &name, MAX_NAME_BYTES).map_err(|_| {
        WitError::InvalidArguments(format!(
            "a tool name is at most {MAX_NAME_BYTES} bytes of UTF-8"
        ))
    })?;
    let args = bounded(&store, &args, MAX_ARGS_BYTES);
    call_text(store, name, args).await
}

/// A guest's call of the tool `name` with `args` (JSON text, or the length of
/// what was too long to take), through the store's [`crate::store::ToolHost`]:
/// refused here when the guest's policy refuses it, audited either way. Also the
/// data runner's door (`python/data/door.rs`).
pub(crate) async fn call_text(
    mut store: StoreContextMut<'_, State>,
    name: String,
    args: Result<String, usize>,
) -> Result<String, WitError> {
    let state = store.data_mut();
    // The guest waits on the host from here: its run slot can serve another call.
    state.turn.waits_on_host();
    let refused = state.refusal(&name).or_else(|| match &args {
        Err(len) => Some(ToolError::new(
            ErrorKind::InvalidArguments,
            if *len == usize::MAX {
                format!("the arguments of `{name}` are not UTF-8")
            } else {
                format!("the arguments of `{name}` are {len} bytes; the limit is {MAX_ARGS_BYTES}")
            },
        )),
        Ok(_) => None,
    });
    let Some(tools) = state.tools.clone() else {
        return Err(WitError::Unavailable("no tools are loaded".into()));
    };
    let caller = state.caller.clone();
    let text = args.as_deref().unwrap_or("");
    let request = Request {
        caller: &caller,
        depth: state.depth + 1,
        tool: &name,
        args: Args::Text(text),
        refused,
    };
    match tools.call(request).await {
        Ok(Reply::Json(v)) => Ok(v.to_string()),
        Ok(Reply::Vals(_)) => Err(WitError::Other(
            "the host answered a JSON call with component values".into(),
        )),
        Err(e) => Err(e.to_wit()),
    }
}

/// The tools the guest may call.
pub(crate) fn list_tools(state: &State) -> Vec<ToolSpec> {
    let Some(tools) = &state.tools else {
        return Vec::new();
    };
    tools
        .specs()
        .into_iter()
        .filter(|t| state.sandbox.may_call(&t.name) || tools.grants(&t.name))
        .collect()
}

fn log(store: StoreContextMut<'_, State>, level: LogLevel, message: WasmStr) {
    let level = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let Ok(text) = message.to_str(&store) else {
        return;
    };
    // Only the start of a long message is copied; it is redacted before it is
    // cut to its first line and its length, so no cut splits a secret.
    let state = store.data();
    let redactor = &state.sandbox.redactor;
    let start = crate::text::head(&text, 4 * MAX_LOG_BYTES);
    let (message, _) = redactor.head(start, usize::MAX, start.len() < text.len());
    let line = message.lines().next().unwrap_or("");
    let line = crate::text::head(line, MAX_LOG_BYTES);
    log_line!("[{}] {level}: {line}", state.sandbox.name);
}

impl State {
    /// Why this store's policy refuses a call of `name` now, if it does.
    fn refusal(&mut self, name: &str) -> Option<ToolError> {
        let who = &self.sandbox.name;
        let granted = self.tools.as_ref().is_some_and(|t| t.grants(name));
        if !self.sandbox.may_call(name) && !granted {
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
