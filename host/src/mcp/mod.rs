//! The MCP server: every registry tool, plus `run_python`, `reset_session` and
//! `close_session`,
//! over stdio or the streamable HTTP transport (rmcp, the official Rust SDK).
//!
//! Tools are discovered at run time, so [`Handler`] implements `list_tools` and
//! `call_tool` itself. Each client gets its own handler: the Python sessions it
//! creates are its own, no other client can use (or cancel) them, they count
//! against its quota (`max-sessions-per-client`), and they close when the
//! client goes away.
//!
//! `run_python` with a `_meta.progressToken` sends the run's output as it comes
//! in `notifications/progress` (`progress`).
//!
//! Between the client and rmcp: `guard.rs` (a size cap and a JSON-RPC answer for
//! every message the server will not act on) and, on HTTP, `http.rs` and `front.rs`.

mod auth;
mod files;
mod front;
mod guard;
mod handler;
mod http;
mod later;
mod progress;
mod rest;
mod snapshots;

pub use auth::{Access, MIN_TOKEN_CHARS, Quota, Tokens};
pub use guard::MAX_MESSAGE_BYTES;
pub use handler::Handler;
pub use http::require_loopback;
pub use rest::{OPENAPI, SESSION_HEADERS};

use crate::engine::EngineOptions;
use crate::manifest::Manifest;
use crate::python::{Keep, Overrides, Runner, Sessions};
use crate::tools::Registry;
use anyhow::{Context, Result};
use rmcp::ServiceExt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// The Python tool's name.
pub const RUN_PYTHON: &str = "run_python";
/// The tool that clears a session's globals.
pub const RESET_SESSION: &str = "reset_session";
/// The tool that closes a session.
pub const CLOSE_SESSION: &str = "close_session";
/// Code longer than this is refused before it reaches the interpreter.
pub const MAX_CODE_BYTES: usize = crate::limits::MAX_CODE_BYTES;

/// What every client of one server shares: the tools and the session manager.
pub struct Server {
    /// The tools (maybe still loading).
    registry: Tools,
    /// The Python sessions, when the runner is built (maybe still loading).
    python: Option<Python>,
    /// The data runner's sessions (`[runner.data]`), made at their first use.
    data: Option<DataRunner>,
    /// The most sessions one client may hold at once.
    per_client: usize,
    instructions: String,
}

/// The data runner of a server: what to load, and once loaded, its sessions.
struct DataRunner {
    manifest: Manifest,
    entry: crate::manifest::RunnerEntry,
    sessions: tokio::sync::OnceCell<Result<Arc<Sessions>, String>>,
}

impl Server {
    /// Loads a manifest's components and, if its runner is built, the Python
    /// sessions, whose policy `overrides` changes (`witbox mcp --tool ...`). The
    /// tool patterns are checked before the runner is loaded.
    pub fn load(
        manifest: &Manifest,
        options: EngineOptions,
        overrides: &Overrides,
    ) -> Result<Arc<Self>> {
        Self::load_with_state(manifest, options, overrides, &Keep::Memory)
    }

    /// [`Server::load`], with sessions kept where `keep` says (see [`Sessions`]):
    /// over stdio, a client may continue any session it finds in a state dir.
    pub fn load_with_state(
        manifest: &Manifest,
        options: EngineOptions,
        overrides: &Overrides,
        keep: &Keep,
    ) -> Result<Arc<Self>> {
        Self::load_inner(manifest, options, overrides, keep, false)
    }

    /// [`Server::load_with_state`], but the runner (slow to compile on a cold
    /// cache) loads in the background: the server answers `initialize` at once,
    /// and a call that needs a Python session waits for it. `witbox mcp`.
    pub fn load_in_background(
        manifest: &Manifest,
        options: EngineOptions,
        overrides: &Overrides,
        keep: &Keep,
    ) -> Result<Arc<Self>> {
        Self::load_inner(manifest, options, overrides, keep, true)
    }

    fn load_inner(
        manifest: &Manifest,
        options: EngineOptions,
        overrides: &Overrides,
        keep: &Keep,
        background: bool,
    ) -> Result<Arc<Self>> {
        let entry = overrides.apply(&manifest.runner)?;
        let data = match manifest.runner.data_runner() {
            Some(data)
                if manifest
                    .resolve(&data.path)
                    .join(crate::python::data::MODULE_FILE)
                    .exists() =>
            {
                Some(DataRunner {
                    manifest: manifest.clone(),
                    entry: overrides.apply(&data).context("runner.data")?,
                    sessions: tokio::sync::OnceCell::new(),
                })
            }
            _ => None,
        };
        let per_client = entry.sessions_per_client();
        let has_runner = manifest.resolve(&entry.path).exists();
        let engine = Registry::engine_for(manifest, options)?;
        let cold: Vec<&str> = manifest
            .component
            .iter()
            .filter(|c| !engine.is_cached(&manifest.resolve(&c.path)))
            .map(|c| c.name.as_str())
            .collect();
        let make_sessions = {
            let manifest = manifest.clone();
            let entry = entry.clone();
            let keep = keep.clone();
            move |registry: Arc<Registry>| -> Result<Arc<Sessions>> {
                let runner = Runner::load(&manifest, &entry, registry)?;
                let sessions = Sessions::new(
                    runner,
                    entry.max_sessions,
                    Duration::from_secs(entry.session_ttl_s),
                );
                Ok(Arc::new(sessions.keeping(&keep)?))
            }
        };
        if background && !cold.is_empty() {
            // `initialize` is answered from what the manifest says.
            log_line!(
                "witbox mcp: compiling {} in the background (the compile cache does not hold {}); tools/list and calls wait for them",
                cold.join(", "),
                if cold.len() == 1 { "it" } else { "them" },
            );
            let (registry, python) = load_cold(
                manifest,
                engine,
                &overrides.tools,
                has_runner,
                make_sessions,
            )?;
            let about = has_runner
                .then(|| RunnerInfo::new(manifest, &entry, None))
                .transpose()?;
            return Ok(Self::build(registry, python, data, per_client, about));
        }
        let registry = Registry::load_on(manifest, engine)?;
        registry.select(&overrides.tools)?;
        if !has_runner {
            return Ok(Self::build(
                later::Later::ready("the tools", registry),
                None,
                data,
                per_client,
                None,
            ));
        }
        let about = RunnerInfo::new(manifest, &entry, Some(&registry))?;
        let python = if background {
            let (later, promise) = later::Later::promised("the Python runner");
            let registry = registry.clone();
            later::in_background("witbox-runner-load", move || {
                let _ = promise.make(|| make_sessions(registry));
            })?;
            later
        } else {
            later::Later::ready("the Python runner", make_sessions(registry.clone())?)
        };
        Ok(Self::build(
            later::Later::ready("the tools", registry),
            Some(python),
            data,
            per_client,
            Some(about),
        ))
    }

    /// A server over a registry and (optionally) a session manager, each client
    /// limited to the default share of its sessions (see
    /// [`defaults::max_sessions_per_client`](crate::manifest::defaults::max_sessions_per_client)).
    pub fn new(registry: Arc<Registry>, sessions: Option<Arc<Sessions>>) -> Arc<Self> {
        let per_client = crate::manifest::defaults::max_sessions_per_client(
            sessions.as_ref().map_or(1, |s| s.max()),
        );
        Self::with_quota(registry, sessions, per_client)
    }

    /// A server whose clients may each hold up to `per_client` sessions.
    pub fn with_quota(
        registry: Arc<Registry>,
        sessions: Option<Arc<Sessions>>,
        per_client: usize,
    ) -> Arc<Self> {
        let about = sessions.as_ref().map(|s| RunnerInfo::of(s.runner()));
        let python = sessions.map(|s| later::Later::ready("the Python runner", s));
        Self::build(
            later::Later::ready("the tools", registry),
            python,
            None,
            per_client,
            about,
        )
    }

    fn build(
        registry: Tools,
        python: Option<Python>,
        data: Option<DataRunner>,
        per_client: usize,
        about: Option<RunnerInfo>,
    ) -> Arc<Self> {
        let mut instructions = instructions(registry.now().as_deref(), about.as_ref());
        if data.is_some() {
            instructions.push_str(DATA_INSTRUCTIONS);
        }
        Arc::new(Self {
            registry,
            python,
            data,
            per_client,
            instructions,
        })
    }

    /// Whether this server has Python sessions (loaded or loading).
    pub fn has_python(&self) -> bool {
        self.python.is_some()
    }

    /// The Python sessions, once loaded.
    pub(crate) async fn python(&self) -> Result<Arc<Sessions>, crate::error::ToolError> {
        match &self.python {
            Some(p) => p.get().await,
            None => Err(crate::error::ToolError::new(
                crate::error::ErrorKind::NotFound,
                "no Python runner",
            )),
        }
    }

    /// Whether this server has the data runner (`run_python`'s `runner: "data"`).
    pub fn has_data(&self) -> bool {
        self.data.is_some()
    }

    /// The data runner's sessions if a call has loaded them (listing sessions
    /// does not load the runner).
    pub(crate) fn loaded_data(&self) -> Option<Arc<Sessions>> {
        self.data.as_ref()?.sessions.get()?.as_ref().ok().cloned()
    }

    /// The data runner's sessions, loaded at the first call that needs them.
    pub(crate) async fn data(&self) -> Result<Arc<Sessions>, crate::error::ToolError> {
        use crate::error::{ErrorKind, ToolError};
        let Some(data) = &self.data else {
            return Err(ToolError::new(
                ErrorKind::NotFound,
                "no data runner: the manifest has no `[runner.data]`, or `cargo xtask build` has not downloaded it",
            ));
        };
        let loaded = data
            .sessions
            .get_or_init(|| async {
                let registry = self.tools().await.map_err(|e| e.message)?;
                let (manifest, entry) = (data.manifest.clone(), data.entry.clone());
                let load = move || -> Result<Arc<Sessions>> {
                    let runner = Runner::load_data(&manifest, &entry, registry)?;
                    Ok(Arc::new(Sessions::new(
                        runner,
                        entry.max_sessions,
                        Duration::from_secs(entry.session_ttl_s),
                    )))
                };
                match tokio::task::spawn_blocking(load).await {
                    Ok(Ok(sessions)) => Ok(sessions),
                    Ok(Err(e)) => Err(format!("{e:#}")),
                    Err(e) => Err(format!("the data runner failed to load: {e}")),
                }
            })
            .await;
        loaded
            .clone()
            .map_err(|e| ToolError::new(ErrorKind::Internal, e))
    }

    /// The sessions `id` belongs to: the data runner's (`d-…`) or the Python runner's.
    pub(crate) async fn sessions_of(
        &self,
        id: &str,
    ) -> Result<Arc<Sessions>, crate::error::ToolError> {
        if id.starts_with("d-") && self.data.is_some() {
            self.data().await
        } else {
            self.python().await
        }
    }

    /// The sessions a snapshot restores into: the data runner's if the Python
    /// runner did not make it and there is a data runner (whose restore then
    /// checks that it did).
    pub(crate) async fn sessions_for_snapshot(
        &self,
        bytes: &[u8],
    ) -> Result<Arc<Sessions>, crate::error::ToolError> {
        let python = self.python().await?;
        let made_by = crate::python::snapshot::made_by(bytes);
        let ours = python.runner().build_id().ok();
        if self.data.is_some() && made_by.is_some() && made_by != ours {
            return self.data().await;
        }
        Ok(python)
    }

    /// The tools, when they have loaded (see [`Server::load_in_background`]).
    pub fn registry(&self) -> Option<Arc<Registry>> {
        self.registry.now()
    }

    /// The tools, once loaded.
    pub(crate) async fn tools(&self) -> Result<Arc<Registry>, crate::error::ToolError> {
        self.registry.get().await
    }

    /// The Python sessions, when the runner is there and has loaded.
    pub fn sessions(&self) -> Option<Arc<Sessions>> {
        self.python.as_ref().and_then(later::Later::now)
    }

    /// A handler for one client.
    pub fn handler(self: &Arc<Self>) -> Handler {
        Handler::new(self.clone())
    }

    /// A handler for the one client of a stdio server: whoever runs the command
    /// may continue the sessions in its state dir.
    fn stdio_handler(self: &Arc<Self>) -> Handler {
        Handler::new(self.clone()).trusting_state_dir()
    }

    /// Serves one client over a byte stream (stdio, or `tokio::io::duplex` in tests)
    /// until it disconnects or `shutdown` completes. Each line is one message of
    /// at most [`MAX_MESSAGE_BYTES`]; a line the server will not act on (too long,
    /// not UTF-8, not JSON, not an MCP message) is answered with a JSON-RPC error
    /// and the server reads on.
    pub async fn serve<R, W>(
        self: &Arc<Self>,
        transport: (R, W),
        shutdown: impl Future<Output = ()>,
    ) -> Result<()>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let transport = guard::Guarded::new(transport.0, transport.1, CancellationToken::new());
        let running = self
            .stdio_handler()
            .serve(transport)
            .await
            .context("the MCP handshake failed")?;
        let cancel = running.cancellation_token();
        tokio::select! {
            quit = running.waiting() => { quit.context("the MCP server task failed")?; }
            () = shutdown => cancel.cancel(),
        }
        Ok(())
    }

    /// Serves the streamable HTTP transport at `/mcp` on `listener` until `shutdown`.
    /// Only a loopback listener is served ([`require_loopback`]), and only loopback
    /// `Host` headers are accepted (rmcp's DNS-rebinding guard). A request body
    /// over [`MAX_MESSAGE_BYTES`] gets `413` and a JSON-RPC error, unread.
    pub async fn serve_http(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        self.serve_http_with(listener, Access::default(), shutdown)
            .await
    }

    /// [`Server::serve_http`], the way `witbox serve` does it: MCP at `/mcp`,
    /// the REST API under `/v1/` (`rest.rs`), `GET /healthz` (alive),
    /// `GET /readyz` (the tools and the runner loaded, the warm pool filled, the
    /// session store answering: `200`, else `503` with what it waits for) and
    /// `GET /metrics` ([`crate::metrics`]). With tokens in `access`, `/mcp` and
    /// `/v1/` need `Authorization: Bearer TOKEN`, each session is the
    /// principal's that started it, `quota` bounds each principal's sessions
    /// and requests per second (`429` with `Retry-After` past it), and any
    /// address and `Host` are served; without, only loopback ones. `/healthz`,
    /// `/readyz` and `/metrics` are open unless `access` has an ops token.
    /// When `shutdown` completes the server drains: its port closes, new
    /// requests get `503`, and the calls in flight get up to 15 s to end.
    pub async fn serve_http_with(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
        access: Access,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let addr = listener
            .local_addr()
            .context("failed to read the listener's address")?;
        let tokens = access.tokens.is_some();
        if !tokens {
            require_loopback(addr)?;
        }
        let stop = CancellationToken::new();
        let server = self.clone();
        let (service, sessions) = http::service(move || server.handler(), stop.clone(), tokens);
        let front = Arc::new(front::Front {
            service,
            sessions,
            access,
            rates: Default::default(),
            server: self.clone(),
            in_flight: Default::default(),
            draining: Default::default(),
        });
        // Each connection is watched: a stopping server lets the ones that
        // answer finish (their last bytes sent), and closes the idle ones.
        let connections = hyper_util::server::graceful::GracefulShutdown::new();
        let accept = async {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        log_line!("[witbox mcp] accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let front = front.clone();
                let service = hyper::service::service_fn(move |request| {
                    let front = front.clone();
                    async move { Ok::<_, std::convert::Infallible>(front.route(request).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let connection =
                    hyper::server::conn::http1::Builder::new().serve_connection(io, service);
                let connection = connections.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
        };
        tokio::select! {
            () = accept => {}
            () = shutdown => {}
        }
        // Stopping: no new connections (the listener closes), `503` for new
        // requests on open ones, and the calls in flight get up to `DRAIN` to end.
        drop(listener);
        front
            .draining
            .store(true, std::sync::atomic::Ordering::Release);
        let waiting = front.in_flight.count();
        let draining = std::time::Instant::now();
        if waiting > 0 {
            log_line!(
                "witbox: stopping: waiting up to {} s for {waiting} call(s) in flight",
                front::DRAIN.as_secs()
            );
            if tokio::time::timeout(front::DRAIN, front.in_flight.idle())
                .await
                .is_err()
            {
                log_line!(
                    "witbox: stopped with {} call(s) still in flight after {} s",
                    front.in_flight.count(),
                    front::DRAIN.as_secs()
                );
            }
        }
        // The answers of the calls that ended go out whole; a connection that
        // streams on (an MCP client's open GET) is cut at the end of the drain.
        stop.cancel();
        let left = front::DRAIN
            .saturating_sub(draining.elapsed())
            .max(Duration::from_millis(100));
        let _ = tokio::time::timeout(left, connections.shutdown()).await;
        Ok(())
    }

    /// What the server is not ready for yet: `tools` (still loading), `runner`
    /// (still loading), `warm pool` (not filled; filling starts here), `session
    /// store` (it does not answer). Empty when ready.
    pub async fn waiting_for(&self) -> Vec<&'static str> {
        let mut waiting = Vec::new();
        if self.registry.now().is_none() {
            waiting.push("tools");
        }
        if let Some(python) = &self.python {
            match python.now() {
                None => waiting.push("runner"),
                Some(sessions) => {
                    if !sessions.runner().warm_pool_full() {
                        waiting.push("warm pool");
                    }
                    if let Some(shared) = sessions.shared()
                        && !shared.reachable().await
                    {
                        waiting.push("session store");
                    }
                }
            }
        }
        waiting
    }
}

/// The tools, now or once they have loaded.
type Tools = later::Later<Arc<Registry>>;
/// The Python sessions, now or once the runner has loaded.
type Python = later::Later<Arc<Sessions>>;

/// The tools, then the runner, loaded on a thread of their own: what
/// [`Server::load_in_background`] does when the compile cache is cold.
fn load_cold(
    manifest: &Manifest,
    engine: crate::engine::Engine,
    patterns: &[String],
    has_runner: bool,
    make_sessions: impl FnOnce(Arc<Registry>) -> Result<Arc<Sessions>> + Send + 'static,
) -> Result<(Tools, Option<Python>)> {
    let (registry, tools_promise) = later::Later::promised("the tools");
    let (python, python_promise) = match has_runner {
        true => {
            let (later, promise) = later::Later::promised("the Python runner");
            (Some(later), Some(promise))
        }
        false => (None, None),
    };
    let (manifest, patterns) = (manifest.clone(), patterns.to_vec());
    later::in_background("witbox-load", move || {
        let loaded = tools_promise.make(|| {
            Registry::load_on(&manifest, engine).and_then(|r| r.select(&patterns).map(|_| r))
        });
        if let Some(promise) = python_promise {
            let _ = promise.make(|| match loaded {
                Ok(registry) => make_sessions(registry),
                Err(e) => Err(anyhow::anyhow!("the tools it calls failed to load: {e}")),
            });
        }
    })?;
    Ok((registry, python))
}

/// What the instructions say of the runner, known before it has loaded.
struct RunnerInfo {
    timeout_ms: u128,
    memory_mb: usize,
    tools: Vec<String>,
    packages: Vec<String>,
}

impl RunnerInfo {
    fn new(
        manifest: &Manifest,
        entry: &crate::manifest::RunnerEntry,
        registry: Option<&Registry>,
    ) -> Result<Self> {
        let sandbox =
            crate::policy::Sandbox::new("runner", &entry.policy, &Default::default(), manifest)
                .context("invalid runner policy")?;
        Ok(Self {
            timeout_ms: sandbox.limits.timeout.as_millis(),
            memory_mb: sandbox.limits.memory_mb(),
            tools: registry.map_or_else(Vec::new, |r| {
                r.tools()
                    .iter()
                    .filter(|t| sandbox.may_call(&t.name))
                    .map(|t| t.name.clone())
                    .collect()
            }),
            packages: crate::packages::listed(manifest, entry),
        })
    }

    fn of(runner: &Runner) -> Self {
        Self {
            timeout_ms: runner.sandbox().limits.timeout.as_millis(),
            memory_mb: runner.sandbox().limits.memory_mb(),
            tools: runner.tool_names(),
            packages: runner.packages().to_vec(),
        }
    }
}

/// What the model is told about the server, in `initialize`.
/// What the instructions add when the server has the data runner: what it has,
/// and how it differs from the Python a model knows.
pub const DATA_INSTRUCTIONS: &str = "\n`run_python` with `runner: \"data\"` runs the data runner instead: CPython 3.15 \
     with numpy, pandas, scipy, scikit-learn, statsmodels, matplotlib, pillow, sympy, networkx, openpyxl and lxml \
     (no others; nothing can be installed). Its sessions have ids that start with `d-`. It is 32-bit WebAssembly: \
     numpy's default integer is int32, so `np.arange(10**6).sum()` overflows where 64-bit numpy does not; pass \
     `dtype=np.int64` when sums or products grow large. No threads or processes (scikit-learn's `n_jobs` stays 1). \
     matplotlib draws with Agg: `plt.savefig('plot.png')` or `plt.show()` writes a PNG into the session's folder, \
     and the result carries the PNGs a call wrote as images.\n";

fn instructions(registry: Option<&Registry>, about: Option<&RunnerInfo>) -> String {
    let mut out = String::from(
        "witbox runs each tool in its own WebAssembly sandbox, with only what its policy grants: \
         no files, no environment, no network unless granted, and limits on time, memory and output. \
         A failed call returns isError with the reason; fix the arguments and call again.\n",
    );
    if let Some(about) = about {
        let tools = &about.tools;
        out.push_str(&format!(
            "\n`{RUN_PYTHON}` runs Python 3.14 in a sandbox: the standard library (asyncio without sockets; top-level `await` works), {}, a private scratch \
             folder as `/` for files (`write_file`, `read_file`, `list_files`), but no network, no subprocesses, no threads. Each call may take {} ms and {} MiB. \
             Without `session_id` it starts a new session and returns its id; pass that id to keep \
             variables between calls, `{RESET_SESSION}` to clear them and `{CLOSE_SESSION}` when done. Call `final_answer(x)` to return a value. \
             Inside Python these tools are functions: {}.\n",
            crate::packages::describe(&about.packages),
            about.timeout_ms,
            about.memory_mb,
            if registry.is_none() {
                "those of `tools/list` that its policy grants".to_string()
            } else if tools.is_empty() {
                "none".to_string()
            } else {
                tools.join(", ")
            }
        ));
    }
    match registry {
        None => out.push_str(
            "\nThe tools are still compiling (the server's compile cache was cold): `tools/list` answers once they are ready.\n",
        ),
        Some(r) if r.tools().is_empty() && about.is_none() => {
            out.push_str("\nThis server has no tools loaded.\n");
        }
        Some(_) => {}
    }
    out
}

/// Cancelled when a client goes away (its stream ends, its HTTP connection
/// closes, its MCP session ends), so its calls stop at the next epoch tick.
/// The transports put one on each request's extensions (on HTTP, one for the
/// connection on the request's `http::request::Parts`, one for the session).
#[derive(Clone)]
pub(crate) struct Gone(pub(crate) CancellationToken);
