//! What a run gives back ([`RunOutcome`]), why it failed ([`RunError`]), the cap
//! and redaction every outcome passes before anyone sees it, and the text a model
//! reads about it ([`observe`]).

use crate::limits::MAX_TYPE_NAME;
use crate::policy::Redactor;
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::fmt;

/// Why a run ended in error: a limit the host enforces, or a Python exception.
/// Serialized as the string Python code and callers see (`Timeout`, `ZeroDivisionError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunErrorKind {
    /// The run passed its `timeout-ms` (or an agent step's budget).
    Timeout,
    /// The run's output, value, final answer and error together passed `max-output-bytes`.
    OutputLimit,
    /// The run used up its `fuel`.
    FuelExhausted,
    /// The run called more tools than `max-tool-calls`.
    ToolCallLimit,
    /// The interpreter died of a refused memory grow (`memory-mb`).
    MemoryLimit,
    /// The session's files passed `scratch-mb` (the data runner, whose writes
    /// are measured while a cell runs, not refused one by one).
    FileLimit,
    /// The interpreter crashed (a trap), or the run was cancelled.
    Crash,
    /// A Python exception, by its type's name (`ZeroDivisionError`).
    Python(String),
}

impl RunErrorKind {
    /// The name, as serialized.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Timeout => "Timeout",
            Self::OutputLimit => "OutputLimit",
            Self::FuelExhausted => "FuelExhausted",
            Self::ToolCallLimit => "ToolCallLimit",
            Self::MemoryLimit => "MemoryLimit",
            Self::FileLimit => "FileLimit",
            Self::Crash => "Crash",
            Self::Python(name) => name,
        }
    }

    /// The kind of an error the runner reported: its own `OutputLimit`, else the
    /// exception's type.
    pub(crate) fn from_runner(name: String) -> Self {
        match name.as_str() {
            "OutputLimit" => Self::OutputLimit,
            _ => Self::Python(name),
        }
    }
}

impl fmt::Display for RunErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for RunErrorKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for RunErrorKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Why a session started again from a fresh instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartReason {
    /// A run passed its time limit.
    Timeout,
    /// A run used up its fuel.
    Fuel,
    /// The interpreter died of a refused memory grow.
    Memory,
    /// The interpreter crashed (a trap, a reset that failed).
    Crash,
    /// A run took the session's files past `scratch-mb` (the data runner).
    Files,
    /// A run was cancelled or abandoned before it ended (an MCP cancel, a client
    /// that stopped waiting, Ctrl-C): the next run starts again.
    Cancelled,
}

impl RestartReason {
    /// The reason, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Fuel => "fuel",
            Self::Memory => "memory",
            Self::Crash => "crash",
            Self::Files => "files",
            Self::Cancelled => "cancelled",
        }
    }

    /// What happened, for a sentence: "the session restarted after …".
    fn phrase(self) -> &'static str {
        match self {
            Self::Timeout => "a run passed its time limit",
            Self::Fuel => "a run used up its fuel",
            Self::Memory => "the interpreter ran out of memory",
            Self::Crash => "the interpreter crashed",
            Self::Files => "a run passed the session's file limit",
            Self::Cancelled => "the previous run was cancelled",
        }
    }
}

impl fmt::Display for RestartReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run ended in error, as Python code and the caller see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunError {
    /// The exception type (`ZeroDivisionError`), or a host limit.
    #[serde(rename = "type")]
    pub kind: RunErrorKind,
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
    /// A host-side error: a limit, a crash.
    pub(crate) fn host(kind: RunErrorKind, message: String) -> Self {
        Self {
            kind,
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
    /// Whether the session started again from a fresh instance: this run killed
    /// it, or the previous run was cancelled before it ended.
    pub session_restarted: bool,
    /// Why the session started again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_reason: Option<RestartReason>,
    /// Whether a restart put back the globals of the last completed cell.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub globals_restored: bool,
    /// After a restart, each global that was not put back, as `name: why`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_restored: Vec<String>,
    /// Tools the run called.
    pub tool_calls: u32,
    /// Fuel the run used, when the policy sets `fuel`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
    /// Wall time of the run in microseconds.
    pub duration_us: u64,
    /// PNG images the run wrote into the session's folder (the data runner's
    /// `plt.savefig`, `plt.show()`), which MCP hands to the client as images.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
}

/// A PNG image a run wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Image {
    /// Its path in the session's folder.
    pub path: String,
    /// Its bytes.
    #[serde(skip)]
    pub png: Vec<u8>,
}

impl RunOutcome {
    /// Notes a restart and what it put back.
    pub(crate) fn restarted(&mut self, reason: RestartReason, restored: super::session::Restored) {
        self.session_restarted = true;
        self.restart_reason = Some(reason);
        self.globals_restored = restored.globals;
        self.not_restored = restored.missing;
    }

    /// Whether the run ended without an error.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// What the runner returned, before the cap and redaction.
pub(crate) struct Raw {
    pub stdout: String,
    pub stderr: String,
    pub value: Option<String>,
    pub error: Option<RunError>,
    pub final_answer: Option<String>,
}

/// The marker that ends a stream (or field) cut at the output limit.
pub(crate) fn marker(max: usize) -> String {
    format!("\n[witbox: output truncated: the run reached its limit of {max} bytes]\n")
}

/// The runner's words when it stopped a run for writing too much.
const FLOODED: &str = "the run wrote more than its output limit, so it was stopped";

/// Puts what the runner returned into `outcome` within `max` bytes in all:
/// stdout, stderr, the error, the value and the final answer, in that order, each
/// redacted before it is measured and cut, so no cut shows part of a secret. The
/// runner cuts its streams itself, but this does not trust it (its Python objects
/// are the user's to change). A cut field ends with the marker, and a run that
/// had no error ends with `OutputLimit`.
pub(crate) fn cap(outcome: &mut RunOutcome, raw: Raw, max: usize, redactor: &Redactor) {
    let marker = marker(max);
    let mut left = max;
    let mut cut_any = false;
    let mut take = |text: &str, left: &mut usize| -> String {
        let (body, cut_before) = match text.strip_suffix(marker.as_str()) {
            Some(body) => (body, true),
            None => (text, false),
        };
        let (mut out, cut) = redactor.head(body, *left, cut_before);
        *left -= out.len();
        if cut || cut_before {
            out.push_str(&marker);
            cut_any = true;
        }
        out
    };
    outcome.stdout = take(&raw.stdout, &mut left);
    outcome.stderr = take(&raw.stderr, &mut left);
    outcome.error = raw.error.map(|mut e| {
        if e.kind == RunErrorKind::OutputLimit {
            // Ours, whatever the runner said.
            return RunError::host(RunErrorKind::OutputLimit, FLOODED.into());
        }
        if let RunErrorKind::Python(name) = &e.kind {
            let (name, _) = redactor.head(name, MAX_TYPE_NAME, false);
            e.kind = RunErrorKind::Python(name);
        }
        e.message = take(&e.message, &mut left);
        e.traceback = take(&e.traceback, &mut left);
        e
    });
    outcome.value = raw.value.map(|v| take(&v, &mut left));
    outcome.final_answer = raw.final_answer.and_then(|text| {
        // Sized before it is parsed.
        if text.len() > left {
            cut_any = true;
            return None;
        }
        let mut v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        redactor.redact_json(&mut v);
        Some(v)
    });
    if cut_any && outcome.error.is_none() {
        outcome.error = Some(RunError::host(
            RunErrorKind::OutputLimit,
            format!(
                "the run's output, value, final answer and error together passed its output limit of {max} bytes (`max-output-bytes`), so they were cut"
            ),
        ));
    }
}

/// One line on a restart, for people and models.
pub fn restart_note(o: &RunOutcome, why: RestartReason) -> String {
    let after = if !o.globals_restored {
        "its globals are gone".to_string()
    } else if o.not_restored.is_empty() {
        "the globals of the last completed cell were restored".to_string()
    } else {
        format!(
            "the globals of the last completed cell were restored, except {}",
            o.not_restored.join("; ")
        )
    };
    format!(
        "the Python session restarted because {}: {after}",
        why.phrase()
    )
}

/// What a model is told about a run: what it printed, its value, its error, and
/// whether the session restarted. Cut at [`MAX_OBSERVATION`] bytes.
pub fn observe(o: &RunOutcome) -> String {
    let mut out = String::new();
    if !o.stdout.is_empty() {
        out.push_str(&format!("stdout:\n{}", o.stdout));
        if !o.stdout.ends_with('\n') {
            out.push('\n');
        }
    }
    if !o.stderr.is_empty() {
        out.push_str(&format!("stderr:\n{}", o.stderr));
        if !o.stderr.ends_with('\n') {
            out.push('\n');
        }
    }
    if let Some(v) = &o.value {
        out.push_str(&format!("value: {v}\n"));
    }
    if let Some(e) = &o.error {
        if e.traceback.is_empty() {
            out.push_str(&format!("error: {}: {}\n", e.kind, e.message));
        } else {
            out.push_str(&format!("error:\n{}", e.traceback));
        }
    }
    if let Some(why) = o.restart_reason {
        out.push_str(&format!("({})\n", restart_note(o, why)));
    }
    if let Some(a) = &o.final_answer {
        out.push_str(&format!("final answer: {a}\n"));
    }
    if out.is_empty() {
        out.push_str("(the code ran and printed nothing; print what you want to see)\n");
    }
    if out.len() > MAX_OBSERVATION {
        out.truncate(crate::text::head(&out, MAX_OBSERVATION).len());
        out.push_str(&format!("\n[observation cut at {MAX_OBSERVATION} bytes]\n"));
    }
    out
}

/// An observation longer than this is cut, so one flood cannot fill a model's context.
pub const MAX_OBSERVATION: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(stdout: &str) -> Raw {
        Raw {
            stdout: stdout.into(),
            stderr: String::new(),
            value: None,
            error: None,
            final_answer: None,
        }
    }

    #[test]
    fn everything_a_run_returns_counts_against_the_limit() {
        let r = Redactor::default();
        let mut o = RunOutcome::default();
        let mut big = raw("12345");
        big.value = Some("x".repeat(20));
        cap(&mut o, big, 10, &r);
        assert_eq!(o.stdout, "12345");
        assert_eq!(
            o.value.as_deref(),
            Some(format!("xxxxx{}", marker(10)).as_str())
        );
        assert_eq!(o.error.unwrap().kind, RunErrorKind::OutputLimit);
        // A runner that ignores its limit is cut all the same.
        let mut o = RunOutcome::default();
        cap(&mut o, raw(&"y".repeat(50)), 10, &r);
        assert_eq!(o.stdout, format!("{}{}", "y".repeat(10), marker(10)));
        // A final answer that does not fit is dropped, not cut into bad JSON.
        let mut o = RunOutcome::default();
        let mut answer = raw("");
        answer.final_answer = Some(format!("\"{}\"", "z".repeat(20)));
        cap(&mut o, answer, 10, &r);
        assert_eq!(o.final_answer, None);
        assert_eq!(o.error.unwrap().kind, RunErrorKind::OutputLimit);
    }

    #[test]
    fn secrets_are_redacted_before_the_cut() {
        let r = Redactor::new(&["s3cr3t-Value-42".to_string()]);
        let mut o = RunOutcome::default();
        // The runner cut its stream in the middle of the secret.
        let cut = format!("key=s3cr3t-Val{}", marker(14));
        cap(&mut o, raw(&cut), 14, &r);
        assert_eq!(o.stdout, format!("key={}", marker(14)));
        let mut o = RunOutcome::default();
        let mut named = raw("");
        named.error = Some(RunError::host(
            RunErrorKind::Python("s3cr3t-Value-42".into()),
            "m".into(),
        ));
        cap(&mut o, named, 100, &r);
        assert_eq!(o.error.unwrap().kind, "[REDACTED]");
    }
}
