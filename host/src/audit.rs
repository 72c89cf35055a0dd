//! The audit log: one JSON line per tool call and per code run, written when the
//! call ends, however it ends (a trap, a timeout, a limit).

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// An append-only JSON Lines file.
pub struct AuditLog {
    file: Mutex<std::fs::File>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

/// One line of the log.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// When the call ended, RFC 3339 in UTC.
    pub time: String,
    /// `call` (a tool) or `run` (code in a Python session).
    pub kind: &'a str,
    /// Who asked: `host` (the CLI, an MCP client's tool call, the library),
    /// `agent` (the agent loop, and the tools its Python calls), `session ID` (a
    /// session of the session manager, as MCP's `run_python` uses, and the tools
    /// its code calls), `runner` (an unnamed Python session's tool calls), or the
    /// component whose code made the call.
    pub caller: &'a str,
    /// The tool called, or the code runner.
    pub tool: &'a str,
    /// The first 16 bytes of the SHA-256 of the arguments (or the code), in hex.
    pub args_sha256: String,
    pub duration_ms: f64,
    /// Fuel used, when the policy meters it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// The largest linear memory the guest reached, in bytes.
    pub peak_memory_bytes: usize,
    /// `ok` or `error`.
    pub outcome: &'a str,
    /// The error kind (`timeout`, `trap`, `tool-error`, … or a Python exception type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AuditLog {
    /// Opens (or creates) the log for appending.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("failed to open the audit log `{}`", path.display()))?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    /// Appends one entry; a write error is reported on stderr, never to the caller.
    pub fn record(&self, entry: &Entry<'_>) {
        let mut line = serde_json::to_vec(entry).unwrap_or_default();
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(&line) {
            eprintln!("witbox: failed to write the audit log: {e}");
        }
    }
}

/// The digest the log keeps instead of the arguments themselves.
pub fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `2026-11-23T18:40:12.345Z`
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_rfc3339() {
        let t = super::now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    }
}
