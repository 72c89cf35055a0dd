//! The audit log: one JSON line per tool call and per code run, written when the
//! call ends, however it ends (a trap, a timeout, a limit, or refused before it
//! ran: invalid arguments, a tool the caller may not call, no such tool).
//!
//! It keeps no arguments and no error text, only a keyed digest of the arguments:
//! HMAC-SHA-256 under a random key made when the log is opened and never written
//! down. The same arguments give the same digest within one log (so repeated
//! calls can be told apart from new ones), but nobody can check a guess of what
//! the arguments were (a plain hash of a short secret is easy to guess).

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// An append-only JSON Lines file.
pub struct AuditLog {
    file: Mutex<std::fs::File>,
    key: [u8; 32],
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
    /// The tool called, or the code runner; `(unknown)` for a name that is no tool.
    pub tool: &'a str,
    /// The keyed digest of the arguments (or the code): the first 16 bytes of
    /// their HMAC-SHA-256 under this log's key, in hex.
    pub args_hmac: String,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
    /// Fuel used, when the policy meters it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// The largest linear memory the guest reached, in bytes (0 if it never ran).
    pub peak_memory_bytes: usize,
    /// `ok` or `error`.
    pub outcome: &'a str,
    /// The error kind (`timeout`, `trap`, `denied`, `not-found`, … or a Python exception type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AuditLog {
    /// Opens (or creates) the log for appending. It must be a regular file: a
    /// FIFO would block every call on its reader.
    pub fn open(path: &Path) -> Result<Self> {
        if let Ok(meta) = std::fs::metadata(path)
            && !meta.is_file()
        {
            bail!(
                "the audit log `{}` exists and is not a regular file",
                path.display()
            );
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("failed to open the audit log `{}`", path.display()))?;
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)
            .map_err(|e| anyhow::anyhow!("no random numbers for the audit log's key: {e}"))?;
        Ok(Self {
            file: Mutex::new(file),
            key,
        })
    }

    /// Appends one entry; a write error is reported on stderr, never to the caller.
    pub fn record(&self, entry: &Entry<'_>) {
        let mut line = serde_json::to_vec(entry).unwrap_or_default();
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(&line) {
            log_line!("witbox: failed to write the audit log: {e}");
        }
    }

    /// The digest the log keeps instead of the arguments themselves.
    pub fn digest(&self, bytes: &[u8]) -> String {
        crate::text::hex(&hmac_sha256(&self.key, bytes)[..16])
    }
}

/// HMAC (RFC 2104) with SHA-256, for a key of one block or less.
pub(crate) fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let (mut inner, mut outer) = ([0x36u8; 64], [0x5cu8; 64]);
    for (i, k) in key.iter().enumerate() {
        inner[i] ^= k;
        outer[i] ^= k;
    }
    let inner = Sha256::new()
        .chain_update(inner)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(outer)
        .chain_update(inner)
        .finalize()
        .into()
}

/// `2026-11-23T18:40:12.345Z`
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2 needs a 4-byte key; case 1's 20 bytes of 0x0b,
        // padded with zeros to 32, is the same key to HMAC.
        let mut key = [0u8; 32];
        key[..20].copy_from_slice(&[0x0b; 20]);
        assert_eq!(
            crate::text::hex(&hmac_sha256(&key, b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }
}
