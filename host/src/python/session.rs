//! One Python session: a live instance of the runner and its globals.
//!
//! A run takes the same layers as a tool call (see `tools/invoke.rs`): validate
//! (the code) → admit → store (the session's own, armed for this run) → run →
//! classify → cap → redact → audit. A run that kills its instance (a timeout,
//! fuel, a crash) is reported as that error, and the session starts again from a
//! fresh instance; the result says so (`session_restarted`). A Python
//! `MemoryError` does not kill it.

use super::Runner;
use super::outcome::{self, Raw, RestartReason, RunError, RunErrorKind, RunOutcome};
use super::stream::{Live, OutputSink};
use crate::bindings::exports::witbox::agent::runner::{RunFailure, RunOptions};
use crate::error::{ErrorKind, ToolError};
use crate::limits::{self, Hit, MAX_CODE_BYTES, MAX_RUNNER_MESSAGE};
use crate::store::State;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Store;

/// One Python session: a live instance and its globals.
pub struct Session {
    pub(super) runner: Arc<Runner>,
    pub(super) store: Store<State>,
    pub(super) bindings: super::Bindings,
    /// Its scratch folder (the guest's `/`), kept across restarts.
    pub(super) scratch: Option<Arc<super::Scratch>>,
    /// Its name in the audit log, if it has one.
    pub(super) caller: Option<Arc<str>>,
    /// Set while a call into the instance is under way. Still set when the next
    /// call begins means the last one was dropped mid-run (a cancel, a client that
    /// stopped waiting): wasmtime unwound it, and the instance cannot be entered
    /// again, so the session starts again first.
    pub(super) in_flight: bool,
    /// The state after the last cell that completed (`checkpoints`), put back
    /// into the fresh instance when the session restarts. `None` after a cell
    /// completed means that cell left the globals as a fresh session has them.
    pub(super) checkpoint: Option<Vec<u8>>,
    /// Whether a cell completed since the session was fresh (made or reset).
    pub(super) completed: bool,
    /// Counts the changes to `checkpoint`; with the scratch folder's
    /// fingerprint it tells a state dir whether there is anything new to save.
    pub(super) generation: u64,
    /// What was last saved to the state dir.
    pub(super) saved: Option<(u64, (u64, u64, i128))>,
    /// The host's own functions in front of the runner's tools
    /// ([`Session::set_host_tools`]), kept across restarts.
    pub(super) host_tools: Option<Arc<crate::tools::HostTools>>,
}

/// What a restart put back.
#[derive(Default)]
pub(crate) struct Restored {
    /// Whether the last checkpoint was restored.
    pub(crate) globals: bool,
    /// `name: why` for each global it did not hold or could not put back.
    pub(crate) missing: Vec<String>,
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
        self.run_within(code, self.runner.sandbox.limits.timeout)
            .await
    }

    /// Runs one cell with a wall-time limit of `limit` or the policy's
    /// `timeout-ms`, whichever is shorter (an agent step's remaining budget).
    pub async fn run_within(
        &mut self,
        code: &str,
        limit: Duration,
    ) -> Result<RunOutcome, ToolError> {
        self.run_to(code, limit, None).await
    }

    /// Runs one cell as [`Session::run`] does, and hands its output to `sink` as
    /// the cell writes it (redacted, within `max-output-bytes`; see
    /// [`OutputSink`]). The outcome still has all of it.
    pub async fn run_streaming(
        &mut self,
        code: &str,
        sink: OutputSink,
    ) -> Result<RunOutcome, ToolError> {
        self.run_to(code, self.runner.sandbox.limits.timeout, Some(sink))
            .await
    }

    async fn run_to(
        &mut self,
        code: &str,
        limit: Duration,
        sink: Option<OutputSink>,
    ) -> Result<RunOutcome, ToolError> {
        let started = Instant::now();
        let written_since = std::time::SystemTime::now();
        let mut result = self.guarded(code, limit, sink).await;
        if let (Ok(outcome), Some(scratch), true) =
            (&mut result, &self.scratch, self.runner.is_data())
        {
            outcome.images = scratch.pngs_since(written_since, limits::MAX_IMAGES);
        }
        let fuel = result.as_ref().ok().and_then(|o| o.fuel_used);
        let peak = self.store.data().memory.peak;
        crate::metrics::run(run_outcome(&result), started.elapsed(), fuel, peak);
        // audit
        if let Some(audit) = &self.runner.engine.options().audit {
            let redactor = &self.runner.sandbox.redactor;
            let error = match &result {
                Ok(o) => o.error.as_ref().map(|e| e.kind.as_str().to_string()),
                Err(e) => Some(e.kind.as_str().to_string()),
            };
            audit.record(&crate::audit::Entry {
                time: crate::audit::now(),
                kind: "run",
                caller: self.caller.as_deref().unwrap_or("host"),
                tool: &self.runner.sandbox.name,
                args_hmac: audit.digest(code.as_bytes()),
                duration_ms: crate::text::ms(started.elapsed()),
                fuel: result.as_ref().ok().and_then(|o| o.fuel_used),
                peak_memory_bytes: self.store.data().memory.peak,
                outcome: if result.as_ref().is_ok_and(RunOutcome::ok) {
                    "ok"
                } else {
                    "error"
                },
                // An exception's type is the guest's to name: redacted too.
                error: error.map(|e| redactor.redact(&e).into_owned()),
            });
        }
        if let Ok(o) = &mut result {
            o.duration_us = started.elapsed().as_micros() as u64;
        }
        result
    }

    async fn guarded(
        &mut self,
        code: &str,
        limit: Duration,
        sink: Option<OutputSink>,
    ) -> Result<RunOutcome, ToolError> {
        // validate
        if code.contains('\0') {
            return Err(ToolError::new(
                ErrorKind::InvalidArguments,
                "the code contains a NUL byte",
            ));
        }
        if code.len() > MAX_CODE_BYTES {
            return Err(ToolError::new(
                ErrorKind::InvalidArguments,
                format!(
                    "the code is {} bytes; the limit is {MAX_CODE_BYTES}",
                    code.len()
                ),
            ));
        }
        let recovered = self.recover().await?;
        let checkpoints = self.runner.checkpoints;
        let sandbox = self.runner.sandbox.clone();
        let limits = &sandbox.limits;
        let timeout = limit.min(limits.timeout);
        // admit, and arm the session's store for this run
        let admission = crate::schedule::admit(0).await;
        let armed = limits::arm(&mut self.store, admission, limits, timeout).map_err(internal)?;
        // run
        let options = RunOptions {
            max_output_bytes: limits.max_output as u64,
            checkpoint: checkpoints,
            checkpoint_max_bytes: limits::MAX_CHECKPOINT_BYTES as u64,
            stream: sink.is_some(),
        };
        let live = sink.map(|sink| Live::attach(&mut self.store, sink));
        let call = self.bindings.call_run(&mut self.store, code, options);
        self.in_flight = true;
        let ran = tokio::time::timeout(timeout, call).await;
        self.in_flight = false;
        if let Some(live) = live {
            live.finish(matches!(ran, Ok(Ok(_))));
        }
        self.store.data_mut().turn.end();
        let state = self.store.data();
        let mut outcome = RunOutcome {
            tool_calls: state.tool_calls,
            fuel_used: armed.fuel_used(&self.store),
            ..RunOutcome::default()
        };
        if let Some((reason, restored)) = recovered {
            outcome.restarted(reason, restored);
        }
        let (tool_limit_hit, memory_hit) = (state.tool_limit_hit, state.memory.hit);
        // The data runner's files, measured while it ran (a stop) and now.
        let files_hit = state.files.as_ref().is_some_and(|f| f.hit);
        let files_over = !files_hit && state.files.as_ref().is_some_and(|f| f.grew_past());
        let redactor = &sandbox.redactor;
        // classify
        let hit = match ran {
            Ok(Ok(Ok(r))) => {
                let raw = Raw {
                    stdout: r.stdout,
                    stderr: r.stderr,
                    value: r.value,
                    error: r.error.map(|e| RunError {
                        kind: RunErrorKind::from_runner(e.type_),
                        message: e.message,
                        traceback: e.traceback,
                        line: e.line,
                        column: e.column,
                    }),
                    final_answer: r.final_answer,
                };
                if let Some(state) = r.checkpoint {
                    crate::metrics::checkpoint(state.len());
                    self.checkpoint = Some(state);
                    self.generation += 1;
                }
                self.completed = true;
                // cap and redact
                outcome::cap(&mut outcome, raw, limits.max_output, redactor);
                None
            }
            Ok(Ok(Err(failure))) => {
                let (kind, m) = match failure {
                    RunFailure::InvalidInput(m) => (ErrorKind::InvalidArguments, m),
                    RunFailure::Other(m) => (ErrorKind::Internal, m),
                };
                let (m, _) = redactor.head(&m, MAX_RUNNER_MESSAGE, false);
                return Err(ToolError::new(kind, m));
            }
            Ok(Err(_)) if files_hit => None,
            Ok(Err(e)) => Some(limits::classify(&e, memory_hit)),
            Err(_elapsed) => Some(Hit::Timeout),
        };
        if files_hit || files_over {
            if files_hit {
                let restored = self.restart(RestartReason::Files).await?;
                outcome.restarted(RestartReason::Files, restored);
            }
            outcome.error = Some(self.files_error(files_hit));
        } else if let Some(hit) = hit {
            let reason = match hit {
                Hit::Timeout => RestartReason::Timeout,
                Hit::Fuel => RestartReason::Fuel,
                Hit::Memory => RestartReason::Memory,
                Hit::StackOverflow | Hit::Crash(_) => RestartReason::Crash,
            };
            let why = self.hit_error(hit, timeout);
            let restored = self.restart(reason).await?;
            outcome.restarted(reason, restored);
            outcome.error = Some(why);
        } else if tool_limit_hit {
            outcome.error = Some(RunError::host(
                RunErrorKind::ToolCallLimit,
                format!(
                    "the run reached its limit of {} tool calls (`max-tool-calls`)",
                    limits.max_tool_calls
                ),
            ));
        } else if let Some(e) = outcome.error.as_mut().filter(|e| e.kind == "MemoryError")
            && memory_hit
        {
            let limit = format!(
                "the session reached its memory limit of {} MiB (`memory-mb`)",
                limits.memory_mb()
            );
            e.message = if e.message.is_empty() {
                limit
            } else {
                format!("{}; {limit}", e.message)
            };
        }
        Ok(outcome)
    }

    /// Names the file limit a cell passed (`stopped`: while it ran).
    fn files_error(&self, stopped: bool) -> RunError {
        let limit = self.runner.scratch_mb;
        let used = self
            .scratch
            .as_ref()
            .map(|s| s.fingerprint().1)
            .unwrap_or_default();
        let what = if stopped {
            "the run was stopped: it"
        } else {
            "the run"
        };
        RunError::host(
            RunErrorKind::FileLimit,
            format!(
                "{what} took the session's files past their limit of {limit} MiB (`scratch-mb`): they hold {:.1} MiB; remove some to write more",
                used as f64 / (1 << 20) as f64
            ),
        )
    }

    /// Names what killed the instance.
    fn hit_error(&self, hit: Hit, timeout: Duration) -> RunError {
        let sandbox = &self.runner.sandbox;
        let limits = &sandbox.limits;
        match hit {
            Hit::Timeout => RunError::host(RunErrorKind::Timeout, timeout_message(timeout)),
            Hit::Fuel => RunError::host(
                RunErrorKind::FuelExhausted,
                format!("the run used up its fuel of {}", limits.fuel),
            ),
            Hit::Memory => RunError::host(
                RunErrorKind::MemoryLimit,
                format!(
                    "the session ran out of memory: its limit is {} MiB",
                    limits.memory_mb()
                ),
            ),
            Hit::StackOverflow | Hit::Crash(_) => {
                let what = match hit {
                    Hit::Crash(what) => sandbox.redactor.redact(&what).into_owned(),
                    // CPython checks the depth of most recursion, not all of it.
                    _ => "its call stack overflowed in C code that Python does not guard \
                        (such as `hash()` of deeply nested tuples, a long chain of nested \
                        iterators, or freeing data nested over 100000 levels deep)"
                        .to_string(),
                };
                let mut message = format!("the interpreter crashed: {what}");
                let stderr = self.store.data().stderr_tail();
                if !stderr.is_empty() {
                    message.push_str(&format!("\nguest stderr:\n{stderr}"));
                }
                RunError::host(RunErrorKind::Crash, message)
            }
        }
    }

    /// Starts again if the last call was dropped before it ended; says so.
    async fn recover(&mut self) -> Result<Option<(RestartReason, Restored)>, ToolError> {
        if !self.in_flight {
            return Ok(None);
        }
        let restored = self.restart(RestartReason::Cancelled).await?;
        Ok(Some((RestartReason::Cancelled, restored)))
    }

    /// Forgets every global, as if the session had just started.
    pub async fn reset(&mut self) -> Result<(), ToolError> {
        // Forgotten before a restart could put it back.
        self.checkpoint = None;
        self.completed = false;
        self.generation += 1;
        if self.recover().await?.is_some() {
            // A fresh instance (with no checkpoint to restore) has nothing to forget.
            return Ok(());
        }
        let limits = &self.runner.sandbox.limits;
        let admission = crate::schedule::admit(0).await;
        let no_fuel_limit = limits::Limits {
            fuel: 0,
            ..limits.clone()
        };
        limits::arm(&mut self.store, admission, &no_fuel_limit, limits.timeout)
            .map_err(internal)?;
        let call = self.bindings.call_reset(&mut self.store);
        self.in_flight = true;
        let outcome = tokio::time::timeout(limits.timeout, call).await;
        self.in_flight = false;
        self.store.data_mut().turn.end();
        match outcome {
            Ok(Ok(())) => Ok(()),
            // A reset that fails leaves nothing worth keeping: start again.
            _ => self.restart(RestartReason::Crash).await.map(drop),
        }
    }

    /// For a process about to exit: removes the scratch folder and leaks the
    /// rest (dropping the instance would reset its memory slot for reuse, a copy
    /// of the whole heap, which nothing will use).
    pub fn leak(mut self) {
        drop(self.scratch.take());
        std::mem::forget(self);
    }

    fn scratch(&self) -> Result<&super::Scratch, ToolError> {
        self.scratch.as_deref().ok_or_else(|| {
            ToolError::new(
                ErrorKind::Denied,
                "this session has no files: its runner has `scratch-mb = 0`",
            )
        })
    }

    /// Writes a file into the session's scratch folder (`/`), making the folders
    /// above it. `path` may start with `/`; it may not leave the folder.
    pub fn write_file(&self, path: &str, bytes: &[u8]) -> Result<(), ToolError> {
        self.scratch()?.write(path, bytes)
    }

    /// Reads a file of the session's scratch folder.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, ToolError> {
        self.scratch()?.read(path)
    }

    /// Lists a folder of the session's scratch folder (`/` for all of it).
    pub fn list_files(&self, path: &str) -> Result<Vec<super::FileEntry>, ToolError> {
        self.scratch()?.list(path)
    }

    /// The tools this session may call: the runner's granted ones and the
    /// host's own ([`Session::set_host_tools`]).
    pub fn tools(&self) -> Vec<String> {
        let mut names = self.runner.tool_names();
        if let Some(host) = &self.host_tools {
            names.extend(host.names().map(str::to_string));
        }
        names
    }

    /// Puts the host's own functions in front of the runner's tools: the
    /// session's code calls them as functions of their names from its next
    /// cell on (the host's grant: no `call-tools` entry needed; `max-tool-calls`
    /// counts them). Replaces the host functions it had; the interpreter lists
    /// its tools again, under the run limits.
    pub async fn set_host_tools(
        &mut self,
        tools: crate::tools::HostTools,
    ) -> Result<(), ToolError> {
        let tools = Arc::new(tools);
        self.store.data_mut().tools = Some(tools.clone());
        self.host_tools = Some(tools);
        self.recover().await?;
        self.restore_raw(LIST_TOOLS).await.map(drop).map_err(|e| {
            ToolError::new(
                ErrorKind::Internal,
                format!("the session could not list its tools: {e}"),
            )
        })
    }

    /// Replaces a dead instance with a fresh one, and puts the last checkpoint
    /// back into it.
    async fn restart(&mut self, why: RestartReason) -> Result<Restored, ToolError> {
        crate::metrics::restart(why.as_str());
        self.fresh_instance(why).await?;
        let Some(state) = self.checkpoint.take() else {
            // The fresh instance is what the last completed cell left, if one did
            // (a cell that changes nothing has no checkpoint to restore).
            return Ok(Restored {
                globals: self.runner.checkpoints && self.completed,
                missing: Vec::new(),
            });
        };
        match self.restore(&state).await {
            Ok(missing) => {
                self.checkpoint = Some(state);
                Ok(Restored {
                    globals: true,
                    missing,
                })
            }
            // The restore itself broke the instance: start once more, empty.
            Err(e) => {
                self.fresh_instance(why).await?;
                Ok(Restored {
                    globals: false,
                    missing: vec![format!("(all): the checkpoint could not be restored: {e}")],
                })
            }
        }
    }

    /// A new instance in place of the current one, on the same scratch folder.
    async fn fresh_instance(&mut self, why: RestartReason) -> Result<(), ToolError> {
        let instance = self
            .runner
            .instantiate(self.scratch.clone())
            .await
            .map_err(|e| {
                ToolError::new(
                    ErrorKind::Internal,
                    format!("failed to restart the session (after: {why}): {e:#}"),
                )
            })?;
        self.store = instance.store;
        self.bindings = instance.bindings;
        // Nothing is under way in a fresh instance.
        self.in_flight = false;
        if let Some(caller) = &self.caller {
            self.store.data_mut().caller = caller.clone();
        }
        if let Some(tools) = &self.host_tools {
            self.store.data_mut().tools = Some(tools.clone());
        }
        Ok(())
    }

    /// The session as bytes another process (of this runner build, this user)
    /// can restore ([`super::Runner::restore`]): the globals of its last
    /// completed cell and its files. Needs checkpoints (`[runner] checkpoints`).
    pub async fn snapshot(&mut self) -> Result<Vec<u8>, ToolError> {
        if !self.runner.checkpoints {
            return Err(ToolError::new(
                ErrorKind::Denied,
                "snapshots need checkpoints, and this runner has `checkpoints = false`",
            ));
        }
        if let Some((reason, _)) = self.recover().await? {
            debug_assert_eq!(reason, RestartReason::Cancelled);
        }
        let internal = |e: anyhow::Error| ToolError::new(ErrorKind::Internal, format!("{e:#}"));
        let contents = super::snapshot::Contents {
            checkpoint: self.checkpoint.clone().unwrap_or_default(),
            files: match &self.scratch {
                Some(s) => s.export()?,
                None => Vec::new(),
            },
        };
        super::snapshot::encode(
            &self.runner.build_id().map_err(internal)?,
            &contents,
            &super::snapshot::key().map_err(internal)?,
        )
    }

    /// A snapshot if anything changed since the last one this returned.
    pub(super) async fn snapshot_if_changed(&mut self) -> Result<Option<Vec<u8>>, ToolError> {
        let now = self.state();
        if self.saved == Some(now) {
            return Ok(None);
        }
        let bytes = self.snapshot().await?;
        self.saved = Some(now);
        Ok(Some(bytes))
    }

    /// Takes the session as it is now for saved (it was just restored from
    /// what is saved).
    pub(super) fn mark_saved(&mut self) {
        self.saved = Some(self.state());
    }

    fn state(&self) -> (u64, (u64, u64, i128)) {
        (
            self.generation,
            self.scratch
                .as_ref()
                .map(|s| s.fingerprint())
                .unwrap_or_default(),
        )
    }

    /// Puts a snapshot's checkpoint into this fresh session.
    pub(super) async fn put_back(&mut self, checkpoint: Vec<u8>) -> Result<Vec<String>, ToolError> {
        if checkpoint.is_empty() {
            return Ok(Vec::new());
        }
        match self.restore(&checkpoint).await {
            Ok(missing) => {
                self.checkpoint = Some(checkpoint);
                Ok(missing)
            }
            Err(e) => Err(ToolError::new(
                ErrorKind::InvalidArguments,
                format!("the snapshot's globals could not be restored: {e}"),
            )),
        }
    }

    /// Puts a checkpoint into the (fresh) instance, under the run limits. The
    /// lines it returns (and its error) are the guest's words: redacted and cut.
    async fn restore(&mut self, state: &[u8]) -> Result<Vec<String>, String> {
        let redactor = self.runner.sandbox.redactor.clone();
        let said = |line: &str| redactor.head(line, limits::MAX_TYPE_NAME, false).0;
        let started = Instant::now();
        let restored = self.restore_raw(state).await;
        crate::metrics::restore(restored.is_ok(), started.elapsed());
        match restored {
            Ok(lines) => Ok(lines
                .iter()
                .take(limits::MAX_NOT_RESTORED)
                .map(|l| said(l))
                .collect()),
            Err(e) => Err(said(&e)),
        }
    }

    async fn restore_raw(&mut self, state: &[u8]) -> Result<Vec<String>, String> {
        let limits = &self.runner.sandbox.limits;
        let admission = crate::schedule::admit(0).await;
        limits::arm(&mut self.store, admission, limits, limits.timeout)
            .map_err(|e| format!("{e:#}"))?;
        let call = self.bindings.call_restore(&mut self.store, state);
        self.in_flight = true;
        let restored = tokio::time::timeout(limits.timeout, call).await;
        self.in_flight = false;
        self.store.data_mut().turn.end();
        match restored {
            Ok(Ok(missing)) => Ok(missing),
            Ok(Err(e)) => Err(format!(
                "{:?}",
                limits::classify(&e, self.store.data().memory.hit)
            )),
            Err(_) => Err(format!(
                "it took longer than the time limit of {} ms",
                limits.timeout.as_millis()
            )),
        }
    }
}

/// What the runners' `restore` takes as "list the tools again" (`cells.py`).
const LIST_TOOLS: &[u8] = b"witbox:list-tools";

fn timeout_message(timeout: Duration) -> String {
    format!(
        "the run was stopped after its time limit of {} ms",
        timeout.as_millis()
    )
}

fn internal(e: anyhow::Error) -> ToolError {
    ToolError::new(ErrorKind::Internal, format!("{e:#}"))
}

/// How a run ended, as the metrics name it: a fixed set, whatever the guest
/// called its exception.
fn run_outcome(result: &Result<RunOutcome, ToolError>) -> &'static str {
    use super::outcome::RunErrorKind as K;
    let Ok(outcome) = result else {
        return "refused";
    };
    match outcome.error.as_ref().map(|e| &e.kind) {
        None => "ok",
        Some(K::Timeout) => "timeout",
        Some(K::OutputLimit) => "output-limit",
        Some(K::FuelExhausted) => "fuel",
        Some(K::ToolCallLimit) => "tool-call-limit",
        Some(K::MemoryLimit) => "memory",
        Some(K::FileLimit) => "file-limit",
        Some(K::Crash) => "crash",
        Some(K::Python(_)) => "exception",
    }
}
