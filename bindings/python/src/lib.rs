//! `witbox._native`: the witbox library behind the Python package `witbox`.
//!
//! Thin on purpose: a [`Runner`] (a manifest's runner and its tools, with the
//! warm pool) and a [`Session`]; results cross as JSON text, and the Pythonic
//! API (result objects, exceptions, policy keywords, async twins) is
//! `python/witbox/__init__.py`. Every call that runs guest code releases the
//! GIL, so other Python threads (and an asyncio loop waiting in an executor)
//! go on meanwhile.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use witbox::{EngineOptions, Manifest, Registry, ToolError};

create_exception!(
    _native,
    HostError,
    PyException,
    "The host refused or failed an operation; `args` is (kind, message)."
);

/// The runtime every call runs on: two workers, for the timers and the epoch
/// ticker; a call itself runs on the calling thread (`block_on`).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("witbox")
            .enable_all()
            .build()
            .expect("failed to start the tokio runtime")
    })
}

fn tool_error(e: ToolError) -> PyErr {
    HostError::new_err((e.kind.as_str(), e.message))
}

fn host_error(e: anyhow::Error) -> PyErr {
    // All the runner's instances are live: the caller's to fix, by closing sessions.
    let kind = match e.downcast_ref::<witbox::RunnerFull>() {
        Some(_) => "full",
        None => "internal",
    };
    HostError::new_err((kind, format!("{e:#}")))
}

/// A manifest's runner (the Python runner, or with `data` the data runner) and
/// the tools its sessions may call.
#[pyclass(frozen, module = "witbox._native")]
struct Runner {
    inner: Arc<witbox::Runner>,
    registry: Arc<Registry>,
}

#[pymethods]
impl Runner {
    /// Loads the runner of the manifest `toml` (paths relative to `base_dir`);
    /// compiled code comes from `cache_dir` (compiled there on first use).
    #[new]
    #[pyo3(signature = (toml, base_dir, data = false, cache_dir = None))]
    fn new(
        py: Python<'_>,
        toml: &str,
        base_dir: &str,
        data: bool,
        cache_dir: Option<&str>,
    ) -> PyResult<Self> {
        let manifest = Manifest::parse(toml, Path::new(base_dir))
            .map_err(|e| HostError::new_err(("invalid-arguments", format!("{e:#}"))))?;
        let options = EngineOptions {
            cache_dir: match cache_dir {
                Some(dir) => Some(dir.into()),
                None => witbox::engine::default_cache_dir(),
            },
            ..Default::default()
        };
        py.detach(|| {
            let _entered = runtime().enter();
            let registry = Registry::load(&manifest, options).map_err(host_error)?;
            let inner = if data {
                let entry = manifest.runner.data_runner().ok_or_else(|| {
                    HostError::new_err((
                        "invalid-arguments",
                        "the manifest has no data runner: add a `[runner.data]` table",
                    ))
                })?;
                witbox::Runner::load_data(&manifest, &entry, registry.clone())
            } else {
                witbox::Runner::load(&manifest, &manifest.runner, registry.clone())
            }
            .map_err(host_error)?;
            Ok(Self { inner, registry })
        })
    }

    /// A new session (from the warm pool when it has one ready).
    fn session(&self, py: Python<'_>) -> PyResult<Session> {
        let runner = self.inner.clone();
        let session = py.detach(|| runtime().block_on(runner.session()).map_err(host_error))?;
        Ok(Session::new(session, self.registry.clone()))
    }

    /// A new session from a snapshot; with the globals that were not put back.
    fn restore(&self, py: Python<'_>, snapshot: &[u8]) -> PyResult<(Session, Vec<String>)> {
        let runner = self.inner.clone();
        let (session, missing) = py.detach(|| {
            runtime()
                .block_on(runner.restore(snapshot))
                .map_err(tool_error)
        })?;
        Ok((Session::new(session, self.registry.clone()), missing))
    }

    /// The tools the manifest has, as JSON: `[{name, description, parameters}]`.
    fn tools(&self) -> String {
        serde_json::to_string(&self.registry.tools()).unwrap_or_else(|_| "[]".into())
    }

    /// Calls the tool `name` with `args` (a JSON object's text) through the
    /// tool layer's guarded path; the result as JSON text.
    fn call(&self, py: Python<'_>, name: &str, args: &str) -> PyResult<String> {
        let registry = self.registry.clone();
        py.detach(|| {
            let value = runtime()
                .block_on(registry.call_text("python", name, args))
                .map_err(tool_error)?;
            Ok(value.to_string())
        })
    }

    /// The third-party packages of the runner, as `name version`.
    fn packages(&self) -> Vec<String> {
        self.inner.packages().to_vec()
    }
}

/// One live session: Python globals kept between runs.
#[pyclass(frozen, module = "witbox._native")]
struct Session {
    inner: Mutex<Option<witbox::Session>>,
    registry: Arc<Registry>,
}

/// A host callback's reply, as `witbox._callbacks.Callbacks.dispatch` writes it.
fn reply(text: &str) -> Result<serde_json::Value, ToolError> {
    use witbox::ErrorKind;
    let mut reply: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ToolError::new(ErrorKind::Internal, format!("a bad callback reply: {e}")))?;
    if let Some(ok) = reply.get_mut("ok") {
        return Ok(ok.take());
    }
    let error = &reply["error"];
    let message = error["message"]
        .as_str()
        .unwrap_or("the host function failed");
    let kind = match error["kind"].as_str() {
        Some("invalid-arguments") => ErrorKind::InvalidArguments,
        _ => ErrorKind::ToolError,
    };
    let mut e = ToolError::new(kind, message);
    if kind == ErrorKind::ToolError {
        e.detail = Some(error["detail"].clone());
    }
    Err(e)
}

impl Session {
    fn new(session: witbox::Session, registry: Arc<Registry>) -> Self {
        Self {
            inner: Mutex::new(Some(session)),
            registry,
        }
    }

    /// Runs `f` on the live session, without the GIL.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl AsyncFnOnce(&mut witbox::Session) -> Result<T, ToolError> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            // A callback that uses its own session would wait on itself.
            let mut guard = match self.inner.try_lock() {
                Ok(guard) => guard,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    return Err(HostError::new_err((
                        "busy",
                        "the session is running a cell (a session runs one at a time; use another session for this)",
                    )));
                }
            };
            let Some(session) = guard.as_mut() else {
                return Err(HostError::new_err(("closed", "the session is closed")));
            };
            runtime().block_on(f(session)).map_err(tool_error)
        })
    }
}

#[pymethods]
impl Session {
    /// Runs a cell; the outcome as a dict of `witbox.Result`'s fields (with
    /// `error` a dict of `RunError`'s, `final_answer` JSON text): made here, not
    /// as JSON text to parse, because the parse was a fifth of a warm run.
    fn run<'py>(&self, py: Python<'py>, code: &str) -> PyResult<Bound<'py, PyDict>> {
        let outcome = self.with(py, async |s| s.run(code).await)?;
        outcome_dict(py, outcome)
    }

    /// Forgets the globals.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, async |s| s.reset().await)
    }

    fn write_file(&self, py: Python<'_>, path: &str, data: &[u8]) -> PyResult<()> {
        self.with(py, async |s| s.write_file(path, data))
    }

    fn read_file<'py>(&self, py: Python<'py>, path: &str) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.with(py, async |s| s.read_file(path))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The entries of a folder as JSON: `[{name, type, size}]`.
    fn list_files(&self, py: Python<'_>, path: &str) -> PyResult<String> {
        let entries = self.with(py, async |s| s.list_files(path))?;
        serde_json::to_string(&entries).map_err(|e| host_error(e.into()))
    }

    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.with(py, async |s| s.snapshot().await)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Gives the session the host's functions: `specs` (JSON: `[{name,
    /// description, parameters}]`), each call of which runs `dispatch(name,
    /// args_json)` (with the GIL) for its reply.
    fn set_host_tools(&self, py: Python<'_>, specs: &str, dispatch: Py<PyAny>) -> PyResult<()> {
        let specs: Vec<serde_json::Value> = serde_json::from_str(specs).map_err(|e| {
            HostError::new_err(("invalid-arguments", format!("bad tool specs: {e}")))
        })?;
        let dispatch = Arc::new(dispatch);
        let tools = specs
            .into_iter()
            .map(|spec| {
                let name = spec["name"].as_str().unwrap_or_default().to_string();
                let dispatch = dispatch.clone();
                let called = name.clone();
                let call: witbox::tools::HostFn = Arc::new(move |args: serde_json::Value| {
                    let (dispatch, name) = (dispatch.clone(), called.clone());
                    Box::pin(async move {
                        let text = Python::attach(|py| {
                            dispatch
                                .call1(py, (name.as_str(), args.to_string()))
                                .and_then(|r| r.extract::<String>(py))
                        })
                        .map_err(|e| {
                            ToolError::new(
                                witbox::ErrorKind::Internal,
                                format!("the callback dispatcher failed: {e}"),
                            )
                        })?;
                        reply(&text)
                    })
                });
                witbox::HostTool {
                    name,
                    description: spec["description"].as_str().unwrap_or_default().to_string(),
                    parameters: spec["parameters"].clone(),
                    call,
                }
            })
            .collect();
        let host = witbox::HostTools::new(self.registry.clone(), tools).map_err(tool_error)?;
        self.with(py, async move |s| s.set_host_tools(host).await)
    }

    /// The tools the session may call.
    fn tools(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.with(py, async |s| Ok(s.tools()))
    }

    /// Ends the session. Its instance goes back to the pool's allocator on a
    /// worker thread (resetting its memory slot takes milliseconds), so this
    /// returns at once.
    fn close(&self, py: Python<'_>) {
        let session = py.detach(|| self.inner.lock().unwrap_or_else(|e| e.into_inner()).take());
        drop_later(session);
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }
}

/// A run's outcome as the fields of `witbox.Result`.
fn outcome_dict(py: Python<'_>, o: witbox::RunOutcome) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("stdout", o.stdout)?;
    d.set_item("stderr", o.stderr)?;
    d.set_item("value", o.value)?;
    let error = match o.error {
        None => None,
        Some(e) => {
            let error = PyDict::new(py);
            error.set_item("type", e.kind.as_str())?;
            error.set_item("message", e.message)?;
            error.set_item("traceback", e.traceback)?;
            error.set_item("line", e.line)?;
            error.set_item("column", e.column)?;
            Some(error)
        }
    };
    d.set_item("error", error)?;
    d.set_item("final_answer", o.final_answer.map(|v| v.to_string()))?;
    d.set_item("session_restarted", o.session_restarted)?;
    d.set_item("restart_reason", o.restart_reason.map(|r| r.as_str()))?;
    d.set_item("globals_restored", o.globals_restored)?;
    d.set_item("not_restored", o.not_restored)?;
    d.set_item("tool_calls", o.tool_calls)?;
    d.set_item("fuel_used", o.fuel_used)?;
    d.set_item("duration", o.duration_us as f64 / 1e6)?;
    let images: Vec<String> = o.images.into_iter().map(|i| i.path).collect();
    d.set_item("images", images)?;
    Ok(d)
}

/// Drops a session on a worker thread.
fn drop_later(session: Option<witbox::Session>) {
    if let Some(session) = session {
        runtime().spawn_blocking(move || drop(session));
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        drop_later(
            self.inner
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
    }
}

/// The module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Runner>()?;
    m.add_class::<Session>()?;
    m.add("HostError", m.py().get_type::<HostError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
