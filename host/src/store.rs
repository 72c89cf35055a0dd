//! The data of one store: the WASI context a policy grants, HTTP behind the
//! policy's hook, `wasi:config`, the memory limiter, captured output, and the
//! counters of the current call (deadline, tool calls, depth, run slot).
//!
//! A guest reaches other tools only through [`ToolHost`], which the tool layer
//! implements: the store holds an `Arc<dyn ToolHost>`, so this module (and WASI,
//! and the guest API) never depends on the registry.

use crate::bindings::host;
use crate::engine::Engine;
use crate::error::ToolError;
use crate::limits::{CRASH_STDERR_BYTES, Memory};
use crate::manifest::DirMode;
use crate::net::HttpPolicy;
use crate::policy::Sandbox;
use crate::schedule::{Admission, Turn};
use anyhow::{Context, Result};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{ResourceTable, Val};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// A future a [`ToolHost`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a guest's tool calls go: the tool layer, through its one guarded path.
pub trait ToolHost: Send + Sync {
    /// Runs one call (validate → admit → store → run → classify → cap → redact →
    /// audit), on the caller's task.
    fn call<'a>(self: Arc<Self>, request: Request<'a>) -> BoxFuture<'a, Result<Reply, ToolError>>;

    /// Every tool there is, in order, as `list-tools` describes them.
    fn specs(&self) -> Vec<host::ToolSpec>;

    /// Whether the host itself grants `name` to the guest, beyond its policy's
    /// `call-tools`: the embedding program's own functions it chose to expose
    /// ([`crate::tools::HostTools`]). None by default.
    fn grants(&self, _name: &str) -> bool {
        false
    }
}

/// One tool call, from whoever makes it.
pub struct Request<'a> {
    /// Who asks, as the audit log names it (`host`, `agent`, a component, `session ID`).
    pub caller: &'a str,
    /// How deep in tool calls: 0 for a top-level call.
    pub depth: u32,
    /// The tool's name.
    pub tool: &'a str,
    /// The arguments.
    pub args: Args<'a>,
    /// Set when the caller's own policy refused the call (not in its `call-tools`,
    /// past its `max-tool-calls`): the call is audited and not run.
    pub refused: Option<ToolError>,
}

/// A call's arguments, as its caller has them.
pub enum Args<'a> {
    /// A JSON object (the CLI, MCP, the agent loop, the library).
    Json(&'a Value),
    /// JSON text, not yet parsed (a guest's `call-tool`).
    Text(&'a str),
    /// Component values, already typed (an embedder); the result comes back as JSON.
    Vals(Vec<Val>),
    /// Component values from a component's import of another's export; the result
    /// comes back as component values, for the importer.
    Linked(Vec<Val>),
}

/// A call's result: JSON, or component values for [`Args::Linked`].
pub enum Reply {
    /// The JSON result.
    Json(Value),
    /// The results of a linked call.
    Vals(Vec<Val>),
}

/// What a core module's store holds besides [`State`]'s (the data runner, `python/data`).
pub(crate) struct P1 {
    pub(crate) wasi: wasmtime_wasi::p1::WasiP1Ctx,
    /// The host's request the guest takes through its door in this turn.
    pub(crate) request: Option<Value>,
    /// What the guest gave back through its door in this turn.
    pub(crate) result: Option<Value>,
}

/// A scratch folder that WASI preview 1 writes to unguarded (the data runner):
/// measured every [`Files::EVERY`] ticks while a run goes on, and the run
/// stopped when the files passed their limit and grew in this run (so a run may
/// still remove files from a folder that is over it).
pub(crate) struct Files {
    root: std::path::PathBuf,
    limit: u64,
    /// Bytes when the run began.
    start: u64,
    ticks: u32,
    /// Whether the run was stopped for it.
    pub(crate) hit: bool,
}

impl Files {
    /// 50 ms at 10 ms ticks: a run writing at disk speed passes the limit by
    /// what it writes in that time, at most.
    const EVERY: u32 = 5;

    fn begin(&mut self) {
        self.start = crate::python::scratch_bytes(&self.root);
        self.ticks = 0;
        self.hit = false;
    }

    /// Whether the run must stop now.
    fn tick(&mut self) -> bool {
        self.ticks += 1;
        if self.ticks.is_multiple_of(Self::EVERY) && self.grew_past() {
            self.hit = true;
        }
        self.hit
    }

    /// Whether the files are past their limit and grew since the run began.
    pub(crate) fn grew_past(&self) -> bool {
        let now = crate::python::scratch_bytes(&self.root);
        now > self.limit && now > self.start
    }
}

/// The state of one store.
pub struct State {
    wasi: WasiCtx,
    /// A core module's (the data runner's): its WASI preview 1 context, which
    /// holds its own (`wasi` is then empty and unused), and its door.
    pub(crate) p1: Option<Box<P1>>,
    table: ResourceTable,
    fs: crate::fs::Tracker,
    http: WasiHttpCtx,
    hooks: HttpPolicy,
    pub(crate) config: WasiConfigVariables,
    pub(crate) memory: Memory,
    pub(crate) stdout: crate::tap::Tap,
    pub(crate) stderr: crate::tap::Tap,
    /// The guest's checked policy.
    pub(crate) sandbox: Arc<Sandbox>,
    /// Where its tool calls and linked imports go, if anywhere.
    pub(crate) tools: Option<Arc<dyn ToolHost>>,
    /// Its depth in tool calls (0 for a top-level call or a Python session).
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
    /// A data runner session's scratch folder, measured while a run goes on.
    pub(crate) files: Option<Files>,
    /// Its share of the cores.
    pub(crate) turn: Turn,
}

/// A fresh store for `sandbox`'s guest: its grants, its memory cap, its output
/// captured up to `max-output-bytes`. [`crate::limits::arm`] starts each call's
/// deadline and fuel.
pub(crate) fn new(
    engine: &Engine,
    sandbox: &Arc<Sandbox>,
    tools: Option<Arc<dyn ToolHost>>,
    depth: u32,
    scratch: Option<&crate::python::Scratch>,
) -> Result<Store<State>> {
    new_with(engine, sandbox, tools, depth, scratch, None)
}

/// A fresh store for a core module that imports WASI preview 1 (the data
/// runner): as [`new`], plus `read_only` folders (host path, guest path) it
/// sees before the grants.
pub(crate) fn new_p1(
    engine: &Engine,
    sandbox: &Arc<Sandbox>,
    tools: Option<Arc<dyn ToolHost>>,
    scratch: Option<&crate::python::Scratch>,
    read_only: &[(std::path::PathBuf, String)],
) -> Result<Store<State>> {
    new_with(engine, sandbox, tools, 0, scratch, Some(read_only))
}

fn new_with(
    engine: &Engine,
    sandbox: &Arc<Sandbox>,
    tools: Option<Arc<dyn ToolHost>>,
    depth: u32,
    scratch: Option<&crate::python::Scratch>,
    p1: Option<&[(std::path::PathBuf, String)]>,
) -> Result<Store<State>> {
    let limits = &sandbox.limits;
    let stdout = crate::tap::Tap::new(limits.max_output);
    let stderr = crate::tap::Tap::new(limits.max_output);
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(stdout.clone()).stderr(stderr.clone());
    wasi.envs(&sandbox.env);
    if p1.is_some() {
        wasi.arg(crate::python::data::ARGV0);
    }
    for (host, guest) in p1.unwrap_or_default() {
        wasi.preopened_dir(host, guest, FsPerms::ReadOnly)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("failed to open `{}`", host.display()))?;
    }
    for (host, guest, mode) in &sandbox.dirs {
        let perms = match mode {
            DirMode::Ro => FsPerms::ReadOnly,
            DirMode::Rw => FsPerms::ReadWrite,
        };
        wasi.preopened_dir(host, guest, perms)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("failed to open the granted dir `{}`", host.display()))?;
    }
    // A session's scratch folder is its `/`, after the grants (which it holds:
    // the guest resolves a path through the longest preopen that matches).
    let grants = match scratch {
        Some(s) => {
            wasi.preopened_dir(s.host_path(), "/", FsPerms::ReadWrite)
                .map_err(anyhow::Error::from)
                .context("failed to open the session's scratch folder")?;
            sandbox.grants.and(s.host_path().to_path_buf(), s.limit())
        }
        None => sandbox.grants.clone(),
    };
    // WASI preview 1 writes files without the guarded filesystem of
    // `fs.rs`: the scratch folder is measured instead.
    let files = match (&p1, scratch) {
        (Some(_), Some(s)) => Some(Files {
            root: s.host_path().to_path_buf(),
            limit: s.limit(),
            start: 0,
            ticks: 0,
            hit: false,
        }),
        _ => None,
    };
    let (wasi, p1) = match p1 {
        Some(_) => {
            let p1 = P1 {
                wasi: wasi.build_p1(),
                request: None,
                result: None,
            };
            (WasiCtx::builder().build(), Some(Box::new(p1)))
        }
        None => (wasi.build(), None),
    };
    let state = State {
        wasi,
        p1,
        table: ResourceTable::new(),
        fs: grants.for_store()?,
        http: WasiHttpCtx::new(),
        hooks: HttpPolicy::new(sandbox.allow_http.clone()),
        config: WasiConfigVariables::from_iter(sandbox.config.iter().cloned()),
        memory: Memory::new(limits.memory_bytes),
        stdout,
        stderr,
        sandbox: sandbox.clone(),
        tools,
        depth,
        caller: sandbox.name.as_str().into(),
        tool_calls: 0,
        tool_limit_hit: false,
        deadline: Instant::now() + limits.timeout,
        files,
        turn: Turn::new(depth),
    };
    let mut store = Store::new(engine.inner(), state);
    store.limiter(|s| &mut s.memory);
    // Unmetered until a call is armed (instantiation runs guest code too).
    if engine.fuel_enabled() {
        store.set_fuel(u64::MAX).map_err(anyhow::Error::from)?;
    }
    // At every epoch tick the guest yields to the async runtime (so one busy
    // guest never holds a worker thread, and a dropped call stops at once),
    // waits for a long-call slot if it needs one (`schedule`), and goes on
    // until its deadline, where it traps with `Interrupt`.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut store| {
        let now = Instant::now();
        let state = store.data_mut();
        let files_past = state.files.as_mut().is_some_and(Files::tick);
        Ok(if now >= state.deadline || files_past {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::YieldCustom(1, state.turn.tick(now))
        })
    });
    Ok(store)
}

impl State {
    /// Starts counting a new call (or a new run of a long-lived session).
    pub(crate) fn begin_call(&mut self, timeout: Duration, admission: Admission) {
        self.deadline = Instant::now() + timeout;
        self.turn.begin(admission);
        self.tool_calls = 0;
        self.tool_limit_hit = false;
        self.memory.hit = false;
        if let Some(files) = &mut self.files {
            files.begin();
        }
    }

    /// The end of what the guest wrote to stderr (where a panic message is),
    /// redacted before it is cut, for a crash message.
    pub(crate) fn stderr_tail(&self) -> String {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        // A full pipe may have cut a secret in half at its end.
        let full = bytes.len() >= self.sandbox.limits.max_output;
        self.sandbox
            .redactor
            .tail(&text, CRASH_STDERR_BYTES, full)
            .trim()
            .to_string()
    }

    /// What the HTTP hook has to say about the requests that did not go out
    /// during this call, one clause each.
    pub fn http_notes(&self) -> Vec<String> {
        self.hooks
            .notes
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }
}

impl crate::fs::FsView for State {
    fn guarded_fs(&mut self) -> crate::fs::GuardedFs<'_> {
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
