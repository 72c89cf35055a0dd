//! The one error type a tool call returns: a kind callers can match on, and words a person or a model can read.

use serde::Serialize;
use std::fmt;

/// Why a tool call failed. Serialized in kebab-case (`invalid-arguments`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The arguments do not match the tool's schema; the tool did not run.
    InvalidArguments,
    /// No tool of that name is loaded.
    NotFound,
    /// The policy does not allow it.
    Denied,
    /// The call ran past its `timeout-ms`.
    Timeout,
    /// The guest needed more than its `memory-mb`.
    Memory,
    /// The guest's output or result was larger than `max-output-bytes`.
    OutputLimit,
    /// The guest used up its `fuel`.
    Fuel,
    /// The guest crashed (a panic, an `unreachable`, an out-of-bounds access).
    Trap,
    /// The tool ran and returned its own error (the `E` of its `result<T, E>`).
    ToolError,
    /// The manifest or a component could not be loaded, so no tool ran.
    Load,
    /// A fault in the host itself.
    Internal,
}

impl ErrorKind {
    /// The kebab-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArguments => "invalid-arguments",
            Self::NotFound => "not-found",
            Self::Denied => "denied",
            Self::Timeout => "timeout",
            Self::Memory => "memory",
            Self::OutputLimit => "output-limit",
            Self::Fuel => "fuel",
            Self::Trap => "trap",
            Self::ToolError => "tool-error",
            Self::Load => "load",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed tool call, as the caller (or the model) sees it: `{"kind": …, "message": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ToolError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// What happened, in words, with the whole cause chain.
    pub message: String,
    /// For `tool-error`: the tool's own error value as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl ToolError {
    /// A new error without detail.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            detail: None,
        }
    }

    /// The error as the JSON object `{"error": {...}}` that `witbox call --json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": self })
    }
}

impl ToolError {
    /// The WIT `tool-error` a guest sees when a tool it called failed.
    pub(crate) fn to_wit(&self) -> crate::bindings::host::ToolError {
        use crate::bindings::host::ToolError as Wit;
        match self.kind {
            ErrorKind::InvalidArguments => Wit::InvalidArguments(self.message.clone()),
            ErrorKind::Denied => Wit::Denied(self.message.clone()),
            ErrorKind::ToolError => Wit::Failed(
                self.detail
                    .clone()
                    .unwrap_or(serde_json::Value::Null)
                    .to_string(),
            ),
            ErrorKind::Internal => Wit::Other(self.message.clone()),
            _ => Wit::Unavailable(format!("{}: {}", self.kind, self.message)),
        }
    }
}
