//! Python sessions: one live code-runner instance per session, holding the
//! session's globals between runs, under the runner's policy.
//!
//! A run that kills its instance (a timeout, fuel, a crash) is reported as
//! that error, and the session starts again from a fresh instance; the result
//! says so (`session_restarted`). A Python `MemoryError` does not kill it.

use crate::bindings::exports::witbox::agent::runner::{RunFailure, RunOptions};
use crate::bindings::{CodeRunner, CodeRunnerPre};
use crate::engine::{Engine, EngineOptions};
use crate::error::{ErrorKind, ToolError};
use crate::manifest::{Manifest, RunnerEntry};
use crate::registry::Registry;
use crate::sandbox::{Sandbox, State, tail};
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::{Store, Trap};

/// The native stack a Python run may use. CPython 3.14 ends deep C recursion
/// (`repr`, `==`, `json`, `pickle`, the compiler) with a `RecursionError` when the
/// stack it sees, the 1 MiB shadow stack in linear memory, is nearly full. The
/// same calls compiled by Cranelift take up to 30 times more native stack (a
/// nested `json.loads` needs 28-32 MiB before Python's check fires), so with
/// wasmtime's default of 512 KiB the wasm stack ran out first and trapped the
/// instance. This is twice the worst case measured; a wasm stack is reserved, not
/// committed, so only a run that recurses this deep touches it.
const PYTHON_WASM_STACK: usize = 64 << 20;

/// The code-runner component, compiled and linked, with the policy its sessions get.
///
/// It keeps a few fresh instances ready (`warm-sessions`), so a new session does not
/// wait for an instantiation; each one taken is replaced in the background.
pub struct Runner {
    engine: Engine,
    pre: CodeRunnerPre<State>,
    sandbox: Arc<Sandbox>,
    registry: Arc<Registry>,
    warm: Mutex<Vec<(Store<State>, CodeRunner)>>,
    /// Instances being made for `warm`.
    filling: AtomicUsize,
    warm_target: usize,
}

impl Runner {
    /// Loads the runner of a manifest; its sessions call tools from `registry`.
    pub fn load(
        manifest: &Manifest,
        entry: &RunnerEntry,
        registry: Arc<Registry>,
    ) -> Result<Arc<Self>> {
        // Its own engine: the same code cache, but memory slots reset in full
        // (see `EngineOptions::full_reset`); tools it calls run on the registry's.
        // Room for every session, the warm ones, and a restart in flight for each.
        let engine = Engine::new(EngineOptions {
            full_reset: true,
            max_instances: 2 * (entry.max_sessions + entry.warm_sessions) as u32 + 4,
            max_wasm_stack: PYTHON_WASM_STACK,
            ..registry.engine().options().clone()
        })?;
        let path = manifest.resolve(&entry.path);
        if !path.exists() {
            anyhow::bail!(
                "the code runner `{}` does not exist (run `cargo xtask build` to build it)",
                path.display()
            );
        }
        let component = engine
            .compile_file("python-runner", &path)
            .with_context(|| format!("failed to load the code runner from `{}`", path.display()))?;
        let linker = crate::registry::new_linker(&engine)?;
        let pre = crate::wasi::without_sockets(&linker, &component, "python-runner")?
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("failed to link the code runner `{}`", path.display()))?;
        let pre = CodeRunnerPre::new(pre)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "`{}` is not a code runner: it does not export `witbox:agent/runner`",
                    path.display()
                )
            })?;
        let sandbox = Sandbox::new("runner", &entry.policy, &Default::default(), manifest)
            .context("invalid runner policy")?;
        Ok(Arc::new(Self {
            engine,
            pre,
            sandbox: Arc::new(sandbox),
            registry,
            warm: Mutex::new(Vec::new()),
            filling: AtomicUsize::new(0),
            warm_target: entry.warm_sessions,
        }))
    }

    /// The limits and grants every session of this runner gets.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The tools a session may call, by name.
    pub fn tool_names(&self) -> Vec<String> {
        self.sandbox
            .callable(&self.registry)
            .map(|t| t.name.clone())
            .collect()
    }

    /// Starts a new session: a fresh instance with empty globals, from the warm
    /// pool when one is ready.
    pub async fn session(self: &Arc<Self>) -> Result<Session> {
        let ready = self.warm.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let (store, bindings) = match ready {
            Some(instance) => instance,
            None => self.instantiate().await?,
        };
        self.refill();
        Ok(Session {
            runner: self.clone(),
            store,
            bindings,
            caller: None,
        })
    }

    /// Starts making instances in the background until the pool is full.
    fn refill(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let ready = || self.warm.lock().unwrap_or_else(|p| p.into_inner()).len();
        while ready() + self.filling.load(Ordering::Acquire) < self.warm_target {
            self.filling.fetch_add(1, Ordering::AcqRel);
            let runner = self.clone();
            runtime.spawn(async move {
                if let Ok(instance) = runner.instantiate_warm().await {
                    let mut warm = runner.warm.lock().unwrap_or_else(|p| p.into_inner());
                    warm.push(instance);
                }
                runner.filling.fetch_sub(1, Ordering::AcqRel);
            });
        }
    }

    /// A fresh instance that has run an empty cell and been reset: the pages a
    /// first run touches are already faulted in, and nothing of the cell is left
    /// (no globals; the next cell is `<cell 1>` again).
    async fn instantiate_warm(&self) -> Result<(Store<State>, CodeRunner)> {
        let (mut store, bindings) = self.instantiate().await?;
        let runner = bindings.witbox_agent_runner();
        let options = RunOptions {
            max_output_bytes: 1024,
        };
        runner
            .call_run(&mut store, "pass", options)
            .await
            .map_err(anyhow::Error::from)?
            .map_err(|e| anyhow::anyhow!("the warm-up cell failed: {e:?}"))?;
        runner
            .call_reset(&mut store)
            .await
            .map_err(anyhow::Error::from)?;
        Ok((store, bindings))
    }

    async fn instantiate(&self) -> Result<(Store<State>, CodeRunner)> {
        let mut store = self
            .sandbox
            .store(&self.engine, Some(self.registry.clone()), 0)?;
        let bindings = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(anyhow::Error::from)
            .context("failed to instantiate the code runner")?;
        Ok((store, bindings))
    }
}

/// Why a run ended in error, as Python code and the caller see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunError {
    /// The exception type (`ZeroDivisionError`), or a host limit: `Timeout`,
    /// `OutputLimit`, `FuelExhausted`, `ToolCallLimit`, `MemoryLimit`, `Crash`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The exception message.
    pub message: String,
    /// The traceback, limited to the user's code.
    pub traceback: String,
    /// The line of the innermost frame in the user's code (1-based).
    pub line: Option<u32>,
    /// The column of a syntax error (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
}

impl RunError {
    fn host(kind: &str, message: String) -> Self {
        Self {
            kind: kind.into(),
            message,
            traceback: String::new(),
            line: None,
            column: None,
        }
    }
}

/// What one run produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunOutcome {
    /// What the code printed to stdout (capped at `max-output-bytes`, with a marker).
    pub stdout: String,
    /// What the code printed to stderr.
    pub stderr: String,
    /// The `repr` of a trailing expression.
    pub value: Option<String>,
    /// The error that stopped the run.
    pub error: Option<RunError>,
    /// The value passed to `final_answer(...)`.
    pub final_answer: Option<Value>,
    /// Whether the run killed the instance, so the session started again empty.
    pub session_restarted: bool,
    /// Why the session started again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_reason: Option<String>,
    /// Tools the run called.
    pub tool_calls: u32,
    /// Fuel the run used, when the policy sets `fuel`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
    /// Wall time of the run in microseconds.
    pub duration_us: u64,
}

impl RunOutcome {
    /// Whether the run ended without an error.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// One Python session: a live instance and its globals.
pub struct Session {
    runner: Arc<Runner>,
    store: Store<State>,
    bindings: CodeRunner,
    /// Its name in the audit log, if it has one.
    caller: Option<Arc<str>>,
}

impl Session {
    /// Names the session in the audit log: its runs, and the tool calls its code
    /// makes, are logged with `caller` (for example `session 3f2a…` or `agent`)
    /// instead of `host` and `runner`.
    pub fn set_caller(&mut self, caller: &str) {
        let caller: Arc<str> = caller.into();
        self.store.data_mut().caller = caller.clone();
        self.caller = Some(caller);
    }

    /// Runs one cell. Errors of the code (exceptions, limits) are in the outcome;
    /// `Err` means the cell was not run (`invalid-arguments`) or the host failed.
    pub async fn run(&mut self, code: &str) -> Result<RunOutcome, ToolError> {
        self.run_within(code, self.runner.sandbox.timeout).await
    }

    /// Runs one cell with a wall-time limit of `limit` or the policy's
    /// `timeout-ms`, whichever is shorter (an agent step's remaining budget).
    pub async fn run_within(
        &mut self,
        code: &str,
        limit: Duration,
    ) -> Result<RunOutcome, ToolError> {
        if code.contains('\0') {
            return Err(ToolError::new(
                ErrorKind::InvalidArguments,
                "the code contains a NUL byte",
            ));
        }
        let sandbox = self.runner.sandbox.clone();
        let started = Instant::now();
        let timeout = limit.min(sandbox.timeout);
        let budget = if sandbox.fuel > 0 {
            sandbox.fuel
        } else {
            u64::MAX
        };
        self.arm(timeout, budget).await?;
        let options = RunOptions {
            max_output_bytes: sandbox.max_output as u64,
        };
        let call = self
            .bindings
            .witbox_agent_runner()
            .call_run(&mut self.store, code, options);
        let outcome = tokio::time::timeout(timeout, call).await;
        self.store.data_mut().turn.end();
        let fuel_used = (sandbox.fuel > 0)
            .then(|| self.store.get_fuel().ok().map(|left| budget - left))
            .flatten();
        let state = self.store.data();
        let (tool_limit_hit, memory_hit) = (state.tool_limit_hit, state.limiter.memory_hit);
        let mut result = RunOutcome {
            tool_calls: state.tool_calls,
            fuel_used,
            ..RunOutcome::default()
        };
        let killed = match outcome {
            Ok(Ok(Ok(r))) => {
                result.stdout = r.stdout;
                result.stderr = r.stderr;
                result.value = r.value;
                result.final_answer = r
                    .final_answer
                    .map(|a| serde_json::from_str(&a).unwrap_or(Value::String(a)));
                result.error = r.error.map(|e| RunError {
                    kind: e.type_,
                    message: e.message,
                    traceback: e.traceback,
                    line: e.line,
                    column: e.column,
                });
                None
            }
            Ok(Ok(Err(RunFailure::InvalidInput(m)))) => {
                return Err(ToolError::new(ErrorKind::InvalidArguments, m));
            }
            Ok(Ok(Err(RunFailure::Other(m)))) => {
                return Err(ToolError::new(ErrorKind::Internal, m));
            }
            Ok(Err(e)) => Some(self.killed(&e, timeout)),
            Err(_elapsed) => Some(RunError::host("Timeout", timeout_message(timeout))),
        };
        if let Some(why) = killed {
            self.restart(&why).await?;
            result.session_restarted = true;
            result.restart_reason = Some(format!(
                "{}: {}; the session's globals are gone",
                why.kind, why.message
            ));
            result.error = Some(why);
        } else if tool_limit_hit {
            result.error = Some(RunError::host(
                "ToolCallLimit",
                format!(
                    "the run reached its limit of {} tool calls (`max-tool-calls`)",
                    sandbox.max_tool_calls
                ),
            ));
        } else if let Some(e) = result.error.as_mut().filter(|e| e.kind == "MemoryError")
            && memory_hit
        {
            let limit = format!(
                "the session reached its memory limit of {} MiB (`memory-mb`)",
                sandbox.memory_bytes >> 20
            );
            e.message = if e.message.is_empty() {
                limit
            } else {
                format!("{}; {limit}", e.message)
            };
        }
        // The runner caps output itself; this only guards against a runner that does not.
        let cap = sandbox.max_output + 200;
        for text in [&mut result.stdout, &mut result.stderr] {
            if text.len() > cap {
                let mut end = cap;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
                text.push_str("\n[witbox: output truncated]\n");
            }
        }
        if sandbox.has_secrets() {
            redact(&sandbox, &mut result);
        }
        result.duration_us = started.elapsed().as_micros() as u64;
        if let Some(audit) = &self.runner.engine.options().audit {
            audit.record(&crate::audit::Entry {
                time: crate::audit::now(),
                kind: "run",
                caller: self.caller.as_deref().unwrap_or("host"),
                tool: &sandbox.name,
                args_sha256: crate::audit::digest(code.as_bytes()),
                duration_ms: crate::audit::ms(started.elapsed()),
                fuel: result.fuel_used,
                peak_memory_bytes: self.store.data().limiter.peak,
                outcome: if result.ok() { "ok" } else { "error" },
                error: result.error.as_ref().map(|e| e.kind.clone()),
            });
        }
        Ok(result)
    }

    /// Readies the instance for one call into it: waits for a run slot, then
    /// starts the call's time limit and fuel budget.
    async fn arm(&mut self, timeout: Duration, fuel: u64) -> Result<(), ToolError> {
        let admission = crate::schedule::admit(0).await;
        self.store.data_mut().begin_run(timeout, admission);
        self.store.set_epoch_deadline(1);
        if self.runner.engine.fuel_enabled() {
            self.store.set_fuel(fuel).map_err(internal)?;
        }
        Ok(())
    }

    /// Forgets every global, as if the session had just started.
    pub async fn reset(&mut self) -> Result<(), ToolError> {
        self.arm(self.runner.sandbox.timeout, u64::MAX).await?;
        let call = self
            .bindings
            .witbox_agent_runner()
            .call_reset(&mut self.store);
        let outcome = tokio::time::timeout(self.runner.sandbox.timeout, call).await;
        self.store.data_mut().turn.end();
        match outcome {
            Ok(Ok(())) => Ok(()),
            // A reset that fails leaves nothing worth keeping: start again.
            _ => {
                let why = RunError::host("Crash", "the reset failed".into());
                self.restart(&why).await
            }
        }
    }

    /// The tools this session may call.
    pub fn tools(&self) -> Vec<String> {
        self.runner.tool_names()
    }

    /// Names what killed the instance.
    fn killed(&self, e: &wasmtime::Error, timeout: Duration) -> RunError {
        let sandbox = &self.runner.sandbox;
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => RunError::host("Timeout", timeout_message(timeout)),
            Some(Trap::OutOfFuel) => RunError::host(
                "FuelExhausted",
                format!("the run used up its fuel of {}", sandbox.fuel),
            ),
            _ if self.store.data().limiter.memory_hit => RunError::host(
                "MemoryLimit",
                format!(
                    "the session ran out of memory: its limit is {} MiB",
                    sandbox.memory_bytes >> 20
                ),
            ),
            trap => {
                let what = match trap {
                    // CPython checks the depth of most recursion, not all of it.
                    Some(Trap::StackOverflow) => "its call stack overflowed in C code that \
                        Python does not guard (such as `hash()` of deeply nested tuples, a long \
                        chain of nested iterators, or freeing data nested over 100000 levels deep)"
                        .to_string(),
                    Some(t) => t.to_string(),
                    None => e.root_cause().to_string(),
                };
                let mut message = format!("the interpreter crashed: {what}");
                let stderr = tail(&self.store.data().stderr, 2000);
                if !stderr.is_empty() {
                    message.push_str(&format!("\nguest stderr:\n{stderr}"));
                }
                RunError::host("Crash", message)
            }
        }
    }

    /// Replaces a dead instance with a fresh one.
    async fn restart(&mut self, why: &RunError) -> Result<(), ToolError> {
        let (store, bindings) = self.runner.instantiate().await.map_err(|e| {
            ToolError::new(
                ErrorKind::Internal,
                format!("failed to restart the session after `{}`: {e:#}", why.kind),
            )
        })?;
        self.store = store;
        self.bindings = bindings;
        if let Some(caller) = &self.caller {
            self.store.data_mut().caller = caller.clone();
        }
        Ok(())
    }
}

/// Replaces the session's secrets in everything a run gives back.
fn redact(sandbox: &Sandbox, o: &mut RunOutcome) {
    o.stdout = sandbox.redact(&o.stdout);
    o.stderr = sandbox.redact(&o.stderr);
    o.value = o.value.as_deref().map(|v| sandbox.redact(v));
    o.restart_reason = o.restart_reason.as_deref().map(|v| sandbox.redact(v));
    if let Some(e) = &mut o.error {
        e.message = sandbox.redact(&e.message);
        e.traceback = sandbox.redact(&e.traceback);
    }
    if let Some(a) = &mut o.final_answer {
        sandbox.redact_json(a);
    }
}

fn timeout_message(timeout: Duration) -> String {
    format!(
        "the run was stopped after its time limit of {} ms",
        timeout.as_millis()
    )
}

fn internal(e: wasmtime::Error) -> ToolError {
    ToolError::new(ErrorKind::Internal, format!("{e:#}"))
}

struct Entry {
    session: Arc<tokio::sync::Mutex<Session>>,
    last_used: Instant,
}

/// Live sessions by id, capped in number, closed after an idle TTL.
pub struct Sessions {
    runner: Arc<Runner>,
    max: usize,
    ttl: Duration,
    live: Mutex<HashMap<String, Entry>>,
}

impl Sessions {
    /// A session manager for `runner`.
    pub fn new(runner: Arc<Runner>, max: usize, ttl: Duration) -> Self {
        Self {
            runner,
            max,
            ttl,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// The runner sessions are made from.
    pub fn runner(&self) -> &Arc<Runner> {
        &self.runner
    }

    /// Starts a session and returns its id.
    pub async fn create(&self) -> Result<String, ToolError> {
        self.evict_idle();
        if self.len() >= self.max {
            return Err(ToolError::new(
                ErrorKind::Denied,
                format!(
                    "too many sessions: {} are open, the limit is {} (`max-sessions`); close one, or wait {} s for idle ones to expire",
                    self.len(),
                    self.max,
                    self.ttl.as_secs()
                ),
            ));
        }
        let mut session = self.runner.session().await.map_err(|e| {
            ToolError::new(
                ErrorKind::Internal,
                format!("failed to start a session: {e:#}"),
            )
        })?;
        let id = new_id();
        session.set_caller(&format!("session {id}"));
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.len() >= self.max {
            return Err(ToolError::new(
                ErrorKind::Denied,
                format!(
                    "too many sessions: the limit is {} (`max-sessions`)",
                    self.max
                ),
            ));
        }
        live.insert(
            id.clone(),
            Entry {
                session: Arc::new(tokio::sync::Mutex::new(session)),
                last_used: Instant::now(),
            },
        );
        Ok(id)
    }

    /// Runs a cell in a session.
    pub async fn run(&self, id: &str, code: &str) -> Result<RunOutcome, ToolError> {
        let session = self.get(id)?;
        let mut session = session.lock().await;
        let outcome = session.run(code).await;
        self.touch(id);
        outcome
    }

    /// Forgets a session's globals.
    pub async fn reset(&self, id: &str) -> Result<(), ToolError> {
        let session = self.get(id)?;
        let mut session = session.lock().await;
        session.reset().await?;
        self.touch(id);
        Ok(())
    }

    /// Closes a session; `false` if there was none with that id.
    pub fn close(&self, id: &str) -> bool {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
            .is_some()
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes sessions idle for longer than the TTL; returns how many.
    pub fn evict_idle(&self) -> usize {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let before = live.len();
        let ttl = self.ttl;
        // A session in use (its lock held) is never idle.
        live.retain(|_, e| e.last_used.elapsed() < ttl || e.session.try_lock().is_err());
        before - live.len()
    }

    fn get(&self, id: &str) -> Result<Arc<tokio::sync::Mutex<Session>>, ToolError> {
        self.evict_idle();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let entry = live.get_mut(id).ok_or_else(|| {
            ToolError::new(
                ErrorKind::NotFound,
                format!(
                    "no session `{id}`: it was closed, or it sat idle for more than {} s",
                    self.ttl.as_secs()
                ),
            )
        })?;
        entry.last_used = Instant::now();
        Ok(entry.session.clone())
    }

    fn touch(&self, id: &str) {
        if let Some(e) = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(id)
        {
            e.last_used = Instant::now();
        }
    }
}

/// A session id that other clients cannot guess: 122 random bits (a v4 UUID).
fn new_id() -> String {
    format!("s-{}", uuid::Uuid::new_v4().simple())
}
