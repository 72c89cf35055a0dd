//! The one guarded path every tool call takes, whoever makes it: the CLI, an MCP
//! client, the agent loop, a guest's `call-tool`, a linked import, the library.
//! Its layers, in order, each named by what it adds:
//!
//! 1. **validate**: the caller's policy allows the call, the tool exists, the
//!    arguments fit their size cap and the tool's types (nothing has run yet);
//! 2. **admit**: a run slot, for top-level calls (`schedule.rs`);
//! 3. **store**: a fresh store from the callee's policy, its limits armed;
//! 4. **run**: instantiate and call, under the deadline;
//! 5. **classify**: a failure becomes a limit hit or a crash (`limits::classify`);
//! 6. **cap**: output and result within `max-output-bytes`, measured before the
//!    result is copied into JSON;
//! 7. **redact**: the callee's secrets out of the result and of any error;
//! 8. **audit**: one line per attempt, however far it got.

use super::{Loaded, Registry, Tool};
use crate::error::{ErrorKind, ToolError};
use crate::limits::{self, Hit, MAX_ARGS_BYTES};
use crate::policy::{Redactor, Sandbox};
use crate::store::{self, Args, Reply, Request, State, ToolHost};
use crate::value;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::Store;
use wasmtime::component::Val;

/// What the audit log keeps of a call besides its outcome.
#[derive(Default)]
struct Trace {
    fuel: Option<u64>,
    peak: usize,
}

impl Registry {
    /// Runs one call through every layer, and records it.
    pub(crate) async fn invoke(self: &Arc<Self>, request: Request<'_>) -> Result<Reply, ToolError> {
        let started = Instant::now();
        let audit = self.engine.options().audit.clone();
        let digest = audit
            .as_ref()
            .map(|log| log.digest(&args_bytes(&request.args)));
        let (caller, name) = (request.caller, request.tool);
        let mut trace = Trace::default();
        let result = self.guarded(request, &mut trace).await;
        // 8. audit, and the metrics
        let known = self.tool(name).is_some();
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind.as_str(),
        };
        let tool_label = if known { name } else { "(unknown)" };
        crate::metrics::call(
            tool_label,
            outcome,
            started.elapsed(),
            trace.fuel,
            trace.peak,
        );
        if let Some(log) = audit {
            log.record(&crate::audit::Entry {
                time: crate::audit::now(),
                kind: "call",
                caller,
                // A name that is no tool is the caller's text: it is not logged.
                tool: tool_label,
                args_hmac: digest.unwrap_or_default(),
                duration_ms: crate::text::ms(started.elapsed()),
                fuel: trace.fuel,
                peak_memory_bytes: trace.peak,
                outcome: if result.is_ok() { "ok" } else { "error" },
                error: result.as_ref().err().map(|e| e.kind.as_str().to_string()),
            });
        }
        result
    }

    async fn guarded(
        self: &Arc<Self>,
        request: Request<'_>,
        trace: &mut Trace,
    ) -> Result<Reply, ToolError> {
        // 1. validate
        if let Some(refused) = request.refused {
            return Err(refused);
        }
        let tool = self.find(request.tool)?;
        let loaded = &self.components[tool.index];
        let (args, typed) = validate(tool, loaded, request.args)?;
        let sandbox = &loaded.sandbox;
        let result = self
            .run(tool, loaded, args, typed, request.depth, trace)
            .await;
        // 7. redact
        redact(&tool.name, &sandbox.redactor, result)
    }

    async fn run(
        self: &Arc<Self>,
        tool: &Tool,
        loaded: &Loaded,
        args: Vec<Val>,
        typed: bool,
        depth: u32,
        trace: &mut Trace,
    ) -> Result<Reply, ToolError> {
        let (name, sandbox) = (&tool.name, &loaded.sandbox);
        let limits = &sandbox.limits;
        // 2. admit
        let admission = crate::schedule::admit(depth).await;
        // 3. store
        let host: Arc<dyn ToolHost> = self.clone();
        let set_up = |e: anyhow::Error| {
            ToolError::new(
                ErrorKind::Internal,
                format!("failed to set up `{name}`: {e:#}"),
            )
        };
        let mut store =
            store::new(&self.engine, sandbox, Some(host), depth, None).map_err(set_up)?;
        let armed = limits::arm(&mut store, admission, limits, limits.timeout).map_err(set_up)?;
        // 4. run
        let ran = tokio::time::timeout(limits.timeout, call(&mut store, loaded, tool, args)).await;
        trace.fuel = armed.fuel_used(&store);
        trace.peak = store.data().memory.peak;
        // 5. classify
        let hit = match ran {
            Ok(Ok(results)) => Ok(results),
            Ok(Err(e)) => Err(limits::classify(&e, store.data().memory.hit)),
            Err(_elapsed) => Err(Hit::Timeout),
        };
        let results = hit.map_err(|hit| hit_error(name, sandbox, store.data(), hit))?;
        // 6. cap
        cap(tool, sandbox, store.data(), &results)?;
        if typed {
            return Ok(Reply::Vals(results));
        }
        to_json(tool, store.data(), results).map(Reply::Json)
    }
}

/// The arguments as component values, and whether the caller wants them back typed.
fn validate(tool: &Tool, loaded: &Loaded, args: Args<'_>) -> Result<(Vec<Val>, bool), ToolError> {
    let name = &tool.name;
    let invalid = |m: String| ToolError::new(ErrorKind::InvalidArguments, m);
    let parsed;
    let json = match args {
        Args::Vals(vals) => return Ok((vals, false)),
        Args::Linked(vals) => return Ok((vals, true)),
        Args::Json(v) => v,
        Args::Text(text) => {
            // Sized before it is parsed: a parse holds several times the text in memory.
            if text.len() > MAX_ARGS_BYTES {
                return Err(invalid(format!(
                    "the arguments of `{name}` are {} bytes; the limit is {MAX_ARGS_BYTES}",
                    text.len()
                )));
            }
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| invalid(format!("the arguments are not valid JSON: {e}")))?;
            &parsed
        }
    };
    let vals = value::args_from_json(&loaded.resolve, &tool.params, json)
        .map_err(|e| invalid(format!("invalid arguments for `{name}`: {e}")))?;
    Ok((vals, false))
}

async fn call(
    store: &mut Store<State>,
    loaded: &Loaded,
    tool: &Tool,
    args: Vec<Val>,
) -> wasmtime::Result<Vec<Val>> {
    let instance = loaded.pre.instantiate_async(&mut *store).await?;
    let func = instance
        .get_func(&mut *store, tool.export)
        .ok_or_else(|| wasmtime::format_err!("the export of `{}` vanished", tool.function))?;
    let mut results = vec![Val::Bool(false); func.ty(&*store).results().len()];
    func.call_async(&mut *store, &args, &mut results).await?;
    Ok(results)
}

/// The words for a limit hit or a crash; a crash shows the end of the guest's
/// stderr (where a panic message is), redacted before it is cut.
fn hit_error(name: &str, sandbox: &Sandbox, state: &State, hit: Hit) -> ToolError {
    let limits = &sandbox.limits;
    match hit {
        Hit::Timeout => ToolError::new(
            ErrorKind::Timeout,
            format!(
                "`{name}` ran past its time limit of {} ms",
                limits.timeout.as_millis()
            ),
        ),
        Hit::Fuel => ToolError::new(
            ErrorKind::Fuel,
            format!("`{name}` used up its fuel of {}", limits.fuel),
        ),
        Hit::Memory => ToolError::new(
            ErrorKind::Memory,
            format!(
                "`{name}` ran out of memory: its limit is {} MiB",
                limits.memory_mb()
            ),
        ),
        Hit::StackOverflow | Hit::Crash(_) => {
            let what = match hit {
                Hit::Crash(what) => what,
                _ => wasmtime::Trap::StackOverflow.to_string(),
            };
            let mut message = format!("`{name}` crashed: {what}");
            let stderr = state.stderr_tail();
            if !stderr.is_empty() {
                message.push_str(&format!("\nguest stderr:\n{stderr}"));
            }
            ToolError::new(ErrorKind::Trap, message)
        }
    }
}

/// Output and the result within `max-output-bytes`. The result is measured as
/// the JSON it would become, before anything is copied into JSON.
fn cap(tool: &Tool, sandbox: &Sandbox, state: &State, results: &[Val]) -> Result<(), ToolError> {
    let (name, max) = (&tool.name, sandbox.limits.max_output);
    for (stream, pipe) in [("stdout", &state.stdout), ("stderr", &state.stderr)] {
        if pipe.contents().len() >= max {
            return Err(ToolError::new(
                ErrorKind::OutputLimit,
                format!("`{name}` wrote more than its limit of {max} bytes to {stream}"),
            ));
        }
    }
    // What the caller gets: the value, or for a `result`, its ok or err payload.
    let payload = match results.first() {
        Some(Val::Result(Ok(v) | Err(v))) if tool.returns_result => v.as_deref(),
        other => other,
    };
    let size = payload.map_or(4, value::json_len);
    if size > max {
        return Err(ToolError::new(
            ErrorKind::OutputLimit,
            format!("`{name}` returned {size} bytes, more than its limit of {max} bytes"),
        ));
    }
    Ok(())
}

/// The result as JSON; the tool's own error (the `E` of its `result`) as a
/// `tool-error`, with the host's notes on requests that did not go out.
fn to_json(tool: &Tool, state: &State, results: Vec<Val>) -> Result<Value, ToolError> {
    match results.first() {
        None => Ok(Value::Null),
        Some(Val::Result(r)) if tool.returns_result => match r {
            Ok(v) => Ok(v.as_deref().map(value::to_json).unwrap_or(Value::Null)),
            Err(e) => {
                let detail = e.as_deref().map(value::to_json).unwrap_or(Value::Null);
                let mut message = format!("`{}` returned an error: {detail}", tool.name);
                for note in state.http_notes() {
                    message.push_str(&format!("; {note}"));
                }
                Err(ToolError {
                    kind: ErrorKind::ToolError,
                    message,
                    detail: Some(detail),
                })
            }
        },
        Some(v) => Ok(value::to_json(v)),
    }
}

/// The callee's secrets out of its result and its error.
fn redact(
    name: &str,
    redactor: &Redactor,
    result: Result<Reply, ToolError>,
) -> Result<Reply, ToolError> {
    if redactor.is_empty() {
        return result;
    }
    match result {
        Ok(Reply::Json(mut v)) => {
            redactor.redact_json(&mut v);
            Ok(Reply::Json(v))
        }
        Ok(Reply::Vals(mut vals)) => match redactor.redact_vals(&mut vals) {
            Ok(()) => Ok(Reply::Vals(vals)),
            Err(why) => Err(ToolError::new(
                ErrorKind::Denied,
                format!("the result of `{name}` cannot be handed on: {why}"),
            )),
        },
        Err(mut e) => {
            e.message = redactor.redact(&e.message).into_owned();
            if let Some(detail) = &mut e.detail {
                redactor.redact_json(detail);
            }
            Err(e)
        }
    }
}

/// The bytes the audit log's keyed digest is made from.
fn args_bytes(args: &Args<'_>) -> Vec<u8> {
    match args {
        Args::Json(v) => serde_json::to_vec(v).unwrap_or_default(),
        Args::Text(t) => t.as_bytes().to_vec(),
        Args::Vals(vals) | Args::Linked(vals) => format!("{vals:?}").into_bytes(),
    }
}
