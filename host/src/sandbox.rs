//! One store per call, built from a component's policy. Everything a guest can
//! reach is granted here, and nothing else.
//!
//! What a guest gets by default (an empty policy): no files, no environment
//! variables, no arguments, an empty stdin, stdout and stderr captured up to
//! `max-output-bytes`, no TCP, no UDP, no name lookups, no outbound HTTP, no
//! tools; the wall and monotonic clocks and random numbers, which WASI requires.

use crate::bindings::host::{self, LogLevel};
use crate::engine::Engine;
use crate::manifest::{DirMode, Manifest, Policy};
use crate::net::{AllowList, HttpPolicy};
use crate::registry::{Registry, Tool};
use crate::schedule::{Admission, Turn};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// How deep tools may call tools (A calls B calls C ...).
pub const MAX_CALL_DEPTH: u32 = 4;

/// What a secret is replaced by.
pub const REDACTED: &str = "[REDACTED]";

/// A component's policy, checked and ready to build stores from.
pub struct Sandbox {
    /// The component's name.
    pub name: String,
    allow_http: Arc<AllowList>,
    env: Vec<(String, String)>,
    /// Secret values, longest first: redacted from everything the guest gives back.
    secrets: Vec<String>,
    dirs: Vec<(PathBuf, String, DirMode)>,
    /// The same folders, for the guarded filesystem (`fs`): their quotas.
    grants: Arc<crate::fs::Grants>,
    call_tools: Vec<glob::Pattern>,
    config: Vec<(String, String)>,
    /// Linear memory cap in bytes.
    pub memory_bytes: usize,
    /// Wall-time limit per call.
    pub timeout: Duration,
    /// Output and result cap in bytes.
    pub max_output: usize,
    /// Fuel per call; 0 = unlimited.
    pub fuel: u64,
    /// Tool calls per call (or per run of the code runner).
    pub max_tool_calls: u32,
}

impl Sandbox {
    /// Checks a policy; relative `dirs` are resolved against the manifest's folder.
    pub fn new(
        name: &str,
        policy: &Policy,
        config: &std::collections::BTreeMap<String, String>,
        manifest: &Manifest,
    ) -> Result<Self> {
        let dirs: Vec<(PathBuf, String, DirMode)> = policy
            .dirs
            .iter()
            .map(|d| {
                let host = manifest.resolve(&d.host);
                anyhow::ensure!(
                    host.is_dir(),
                    "the granted dir `{}` does not exist",
                    host.display()
                );
                Ok((host, d.guest.clone(), d.mode))
            })
            .collect::<Result<_>>()?;
        let grants =
            crate::fs::Grants::new(dirs.iter().zip(&policy.dirs).map(|((host, ..), d)| {
                (
                    host.clone(),
                    d.quota_mb.map(|mb| mb.saturating_mul(1 << 20)),
                )
            }));
        let call_tools = policy
            .call_tools
            .iter()
            .map(|p| {
                glob::Pattern::new(p).with_context(|| format!("invalid `call-tools` pattern `{p}`"))
            })
            .collect::<Result<_>>()?;
        let mut env: Vec<(String, String)> = policy
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut secrets = Vec::new();
        for (guest, host) in &policy.secrets {
            let value = std::env::var(host)
                .ok()
                .filter(|v| !v.is_empty())
                .with_context(|| {
                    format!(
                        "the secret `{guest}` comes from the host's `${host}`, which is not set"
                    )
                })?;
            env.push((guest.clone(), value.clone()));
            secrets.push(value);
        }
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Ok(Self {
            name: name.to_string(),
            allow_http: Arc::new(AllowList::parse(&policy.allow_http)?),
            env,
            secrets,
            dirs,
            grants,
            call_tools,
            config: config.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            memory_bytes: usize::try_from(policy.memory_mb << 20).unwrap_or(usize::MAX),
            timeout: Duration::from_millis(policy.timeout_ms),
            max_output: usize::try_from(policy.max_output_bytes).unwrap_or(usize::MAX),
            fuel: policy.fuel,
            max_tool_calls: policy.max_tool_calls,
        })
    }

    /// `text` with every secret of this policy replaced by `[REDACTED]`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }

    /// Redacts every string in a JSON value, in place.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        if self.secrets.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(s) => *s = self.redact(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.redact_json(v)),
            _ => {}
        }
    }

    /// Whether this policy has secrets to redact.
    pub fn has_secrets(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// Whether this component may call the tool `name` through `host.call-tool`.
    pub fn may_call(&self, name: &str) -> bool {
        self.call_tools.iter().any(|p| p.matches(name))
    }

    /// The tools of `registry` this component may call, in registry order.
    pub fn callable<'a>(&'a self, registry: &'a Registry) -> impl Iterator<Item = &'a Tool> + 'a {
        registry.tools().iter().filter(|t| self.may_call(&t.name))
    }

    /// A fresh store for one call, with the deadline, memory cap and fuel armed.
    pub fn store(
        self: &Arc<Self>,
        engine: &Engine,
        registry: Option<Arc<Registry>>,
        depth: u32,
    ) -> Result<Store<State>> {
        let stdout = MemoryOutputPipe::new(self.max_output);
        let stderr = MemoryOutputPipe::new(self.max_output);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        wasi.envs(&self.env);
        for (host, guest, mode) in &self.dirs {
            let perms = match mode {
                DirMode::Ro => FsPerms::ReadOnly,
                DirMode::Rw => FsPerms::ReadWrite,
            };
            wasi.preopened_dir(host, guest, perms)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("failed to open the granted dir `{}`", host.display()))?;
        }
        let state = State {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            fs: self.grants.for_store()?,
            http: WasiHttpCtx::new(),
            hooks: HttpPolicy::new(self.allow_http.clone()),
            config: WasiConfigVariables::from_iter(self.config.iter().cloned()),
            limiter: Limiter {
                memory_bytes: self.memory_bytes,
                memory_hit: false,
                peak: 0,
            },
            stdout,
            stderr,
            sandbox: self.clone(),
            registry,
            depth,
            caller: self.name.as_str().into(),
            tool_calls: 0,
            tool_limit_hit: false,
            deadline: Instant::now() + self.timeout,
            turn: Turn::new(depth),
        };
        let mut store = Store::new(engine.inner(), state);
        store.limiter(|s| &mut s.limiter);
        // At every epoch tick the guest yields to the async runtime (so one busy
        // guest never holds a worker thread, and a dropped call stops at once),
        // waits for a long-call slot if it needs one (`schedule`), and goes on
        // until its deadline, where it traps with `Interrupt`.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut store| {
            let now = Instant::now();
            let state = store.data_mut();
            Ok(if now >= state.deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::YieldCustom(1, state.turn.tick(now))
            })
        });
        if engine.fuel_enabled() {
            store
                .set_fuel(if self.fuel > 0 { self.fuel } else { u64::MAX })
                .map_err(anyhow::Error::from)?;
        }
        Ok(store)
    }
}

/// The state of one store: WASI, HTTP, config, limits and captured output.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    fs: crate::fs::Tracker,
    http: WasiHttpCtx,
    hooks: HttpPolicy,
    pub(crate) config: WasiConfigVariables,
    pub(crate) limiter: Limiter,
    pub(crate) stdout: MemoryOutputPipe,
    pub(crate) stderr: MemoryOutputPipe,
    sandbox: Arc<Sandbox>,
    pub(crate) registry: Option<Arc<Registry>>,
    pub(crate) depth: u32,
    /// Who this store's tool calls are from, in the audit log: the component, or
    /// `session ID` / `agent` for a Python session that has been named.
    pub(crate) caller: Arc<str>,
    /// Tool calls made since the call (or run) began.
    pub(crate) tool_calls: u32,
    /// Whether a tool call was refused for going past `max-tool-calls`.
    pub(crate) tool_limit_hit: bool,
    /// When the current call (or run) must stop.
    pub(crate) deadline: Instant,
    /// Its share of the cores.
    pub(crate) turn: Turn,
}

impl State {
    /// Starts counting a new run of a long-lived instance (a session).
    pub(crate) fn begin_run(&mut self, timeout: Duration, admission: Admission) {
        self.deadline = Instant::now() + timeout;
        self.turn.begin(admission);
        self.tool_calls = 0;
        self.tool_limit_hit = false;
        self.limiter.memory_hit = false;
    }

    /// Why the HTTP hook denied requests during this call.
    pub fn http_denials(&self) -> Vec<String> {
        self.hooks
            .denials
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }
}

impl State {
    /// wasmtime-wasi's filesystem with this store's grants, for `fs::Guarded`.
    pub(crate) fn guarded_fs(&mut self) -> crate::fs::GuardedFs<'_> {
        crate::fs::GuardedFs {
            fs: wasmtime_wasi::filesystem::WasiFilesystemCtxView {
                ctx: self.wasi.filesystem(),
                table: &mut self.table,
            },
            tracker: &mut self.fs,
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        self.turn.waits_on_host();
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Caps linear memory and remembers whether the cap was hit, so a crash that
/// follows a refused allocation is reported as `memory`, not as a generic trap.
pub struct Limiter {
    memory_bytes: usize,
    /// Whether a memory grow was refused.
    pub memory_hit: bool,
    /// The largest linear memory allowed so far, in bytes.
    pub peak: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_hit = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl host::Host for State {
    async fn call_tool(
        &mut self,
        name: String,
        args_json: String,
    ) -> Result<String, host::ToolError> {
        self.turn.waits_on_host();
        if !self.sandbox.may_call(&name) {
            return Err(host::ToolError::Denied(format!(
                "`{}` may not call `{name}`: it is not in its `call-tools`",
                self.sandbox.name
            )));
        }
        if self.tool_calls >= self.sandbox.max_tool_calls {
            self.tool_limit_hit = true;
            return Err(host::ToolError::Denied(format!(
                "`{}` reached its limit of {} tool calls (`max-tool-calls`)",
                self.sandbox.name, self.sandbox.max_tool_calls
            )));
        }
        self.tool_calls += 1;
        if self.depth >= MAX_CALL_DEPTH {
            return Err(host::ToolError::Unavailable(format!(
                "tool calls nest deeper than {MAX_CALL_DEPTH}"
            )));
        }
        let Some(registry) = self.registry.clone() else {
            return Err(host::ToolError::Unavailable("no tools are loaded".into()));
        };
        let args: serde_json::Value = serde_json::from_str(&args_json).map_err(|e| {
            host::ToolError::InvalidArguments(format!("the arguments are not valid JSON: {e}"))
        })?;
        let depth = self.depth + 1;
        let caller = self.caller.clone();
        let call: std::pin::Pin<Box<dyn Future<Output = _> + Send>> =
            Box::pin(async move { registry.call_at_depth(&caller, &name, &args, depth).await });
        call.await
            .map(|v| v.to_string())
            .map_err(|e| crate::registry::to_wit_error(&e))
    }

    async fn list_tools(&mut self) -> Vec<host::ToolSpec> {
        let Some(registry) = &self.registry else {
            return Vec::new();
        };
        self.sandbox
            .callable(registry)
            .map(|t| host::ToolSpec {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters_json: t.parameters.to_string(),
            })
            .collect()
    }

    async fn log(&mut self, level: LogLevel, message: String) {
        let level = match level {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        let message: String = message
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(1000)
            .collect();
        eprintln!(
            "[{}] {level}: {}",
            self.sandbox.name,
            self.sandbox.redact(&message)
        );
    }
}

/// Keeps the last `max` bytes of captured output, for error messages.
pub fn tail(pipe: &MemoryOutputPipe, max: usize) -> String {
    let bytes = pipe.contents();
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}
