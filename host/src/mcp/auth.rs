//! Bearer tokens for `witbox serve`: each one is a principal, named in the tokens
//! file (`TOKEN NAME` per line). A request proves who it is with
//! `Authorization: Bearer TOKEN`; what it starts (an MCP session) is that
//! principal's, and no other principal can reach it.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// The fewest characters a token may have: guessing one must be hopeless.
pub const MIN_TOKEN_CHARS: usize = 32;

/// The tokens a server accepts, each with the name of its principal. Only their
/// SHA-256 is kept, so a token never sits in memory longer than parsing takes.
pub struct Tokens {
    entries: Vec<([u8; 32], Arc<str>)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(_, n)| &**n).collect();
        f.debug_struct("Tokens")
            .field("principals", &names)
            .finish()
    }
}

impl Tokens {
    /// The one token of the operators (`--ops-token`): `/healthz`, `/readyz`
    /// and `/metrics` need it.
    pub fn ops(token: &str) -> Result<Self> {
        if token.split_whitespace().count() != 1 {
            bail!(
                "the ops token (`--ops-token` or `WITBOX_OPS_TOKEN`) is one word, without spaces"
            );
        }
        Self::parse(&format!("{token} ops"), "the ops token")
    }

    /// Reads a tokens file (see [`Tokens::parse`]).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read the tokens file `{}`", path.display()))?;
        Self::parse(&text, &format!("`{}`", path.display()))
    }

    /// Parses `TOKEN NAME` pairs, one per line (or separated by `,`, for an
    /// environment variable); blank lines and `#` comments are skipped. `source`
    /// names where the text came from, for errors. A token has at least
    /// [`MIN_TOKEN_CHARS`] visible ASCII characters; a name is 1–64 letters,
    /// digits, `-`, `_`, `.` or `@`; neither may repeat.
    pub fn parse(text: &str, source: &str) -> Result<Self> {
        let mut entries: Vec<([u8; 32], Arc<str>)> = Vec::new();
        let lines = text.split(['\n', ',']).map(str::trim);
        for (i, line) in lines.enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("entry {} of {source}", i + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [token, name] = fields[..] else {
                bail!("{at}: expected `TOKEN NAME` (a token, a space, and the principal's name)");
            };
            let name_ok = name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
            if !name_ok {
                bail!(
                    "{at}: `{name}` is not a principal name: use 1 to 64 letters, digits, `-`, `_`, `.` or `@`"
                );
            }
            if token.len() < MIN_TOKEN_CHARS || !token.chars().all(|c| c.is_ascii_graphic()) {
                bail!(
                    "{at}: the token of `{name}` must be at least {MIN_TOKEN_CHARS} visible ASCII characters, and random (for example from `openssl rand -hex 32`)"
                );
            }
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            if entries.iter().any(|(_, n)| &**n == name) {
                bail!("{at}: the principal `{name}` has another token already");
            }
            if entries.iter().any(|(d, _)| *d == digest) {
                bail!("{at}: the token of `{name}` is another principal's too");
            }
            entries.push((digest, name.into()));
        }
        if entries.is_empty() {
            bail!("{source} has no tokens: add lines of `TOKEN NAME`");
        }
        Ok(Self { entries })
    }

    /// The principal an `Authorization` header proves, if any: `Bearer TOKEN`
    /// with a known token. Every token is compared, in time that does not depend
    /// on where the bytes differ.
    pub fn principal(&self, authorization: Option<&[u8]>) -> Option<Arc<str>> {
        let value = std::str::from_utf8(authorization?).ok()?.trim();
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        let mut found = None;
        for (known, name) in &self.entries {
            let differ = known
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if differ == 0 {
                found = Some(name.clone());
            }
        }
        found
    }

    /// How many principals there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none (never, for a parsed set).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Who may use a served `/mcp`, and how much: without tokens, anyone who
/// reaches a loopback address; with them, each principal within its quota.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The bearer tokens, if any.
    pub tokens: Option<Arc<Tokens>>,
    /// What each principal may use (only with tokens).
    pub quota: Quota,
    /// The token `/healthz`, `/readyz` and `/metrics` need, if any.
    pub ops: Option<Arc<Tokens>>,
}

/// What one principal may use at once: MCP sessions, and `/mcp` requests per
/// second (a token bucket that holds a second's worth).
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    /// The most MCP sessions a principal may have open (0: no limit).
    pub sessions: usize,
    /// The most `/mcp` requests per second, on average, a principal may send
    /// (0: no limit); each tool call or run is one.
    pub per_second: u32,
}

impl Default for Quota {
    fn default() -> Self {
        Self {
            sessions: 16,
            per_second: 0,
        }
    }
}

/// The request buckets of the principals (see [`Quota::per_second`]).
#[derive(Default)]
pub(super) struct Rates {
    buckets: std::sync::Mutex<std::collections::HashMap<Arc<str>, (f64, std::time::Instant)>>,
}

impl Rates {
    /// Takes one request from `principal`'s bucket, or says how long until
    /// there is one.
    pub(super) fn take(
        &self,
        principal: &Arc<str>,
        per_second: u32,
    ) -> Result<(), std::time::Duration> {
        if per_second == 0 {
            return Ok(());
        }
        let rate = f64::from(per_second);
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(principal.clone()).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(std::time::Duration::from_secs_f64((1.0 - *tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa0001";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb0002";

    #[test]
    fn tokens_name_their_principals() {
        let t = Tokens::parse(&format!("# team\n{A} alice\n\n{B} bob@ci\n"), "the file").unwrap();
        assert_eq!(t.len(), 2);
        let header = |v: &str| t.principal(Some(v.as_bytes())).map(|p| p.to_string());
        assert_eq!(header(&format!("Bearer {A}")).as_deref(), Some("alice"));
        assert_eq!(header(&format!("bearer  {B}")).as_deref(), Some("bob@ci"));
        assert_eq!(header(&format!("Basic {A}")), None);
        assert_eq!(header(&format!("Bearer {A}x")), None);
        assert_eq!(header("Bearer"), None);
        assert_eq!(t.principal(None), None);
        // An environment variable may separate them with commas.
        let env = Tokens::parse(&format!("{A} alice, {B} bob"), "WITBOX_TOKENS").unwrap();
        assert_eq!(env.len(), 2);
    }

    #[test]
    fn bad_tokens_files_are_refused_with_where_and_why() {
        let err = |text: &str| Tokens::parse(text, "`t.txt`").unwrap_err().to_string();
        assert_eq!(
            err("short alice"),
            "entry 1 of `t.txt`: the token of `alice` must be at least 32 visible ASCII characters, and random (for example from `openssl rand -hex 32`)"
        );
        assert_eq!(
            err(A),
            "entry 1 of `t.txt`: expected `TOKEN NAME` (a token, a space, and the principal's name)"
        );
        assert_eq!(
            err(&format!("{A} al/ice")),
            "entry 1 of `t.txt`: `al/ice` is not a principal name: use 1 to 64 letters, digits, `-`, `_`, `.` or `@`"
        );
        assert_eq!(
            err(&format!("{A} alice\n{B} alice")),
            "entry 2 of `t.txt`: the principal `alice` has another token already"
        );
        assert_eq!(
            err(&format!("{A} alice\n{A} bob")),
            "entry 2 of `t.txt`: the token of `bob` is another principal's too"
        );
        assert_eq!(
            err("# nothing\n"),
            "`t.txt` has no tokens: add lines of `TOKEN NAME`"
        );
    }

    #[test]
    fn a_bucket_holds_a_seconds_worth_and_refills() {
        let rates = Rates::default();
        let alice: Arc<str> = "alice".into();
        let bob: Arc<str> = "bob".into();
        for _ in 0..5 {
            rates.take(&alice, 5).unwrap();
        }
        let wait = rates.take(&alice, 5).unwrap_err();
        assert!(wait <= std::time::Duration::from_millis(200), "{wait:?}");
        // Another principal has a bucket of its own; no limit is no limit.
        rates.take(&bob, 5).unwrap();
        for _ in 0..100 {
            rates.take(&alice, 0).unwrap();
        }
        std::thread::sleep(wait);
        rates.take(&alice, 5).unwrap();
    }

    #[test]
    fn debug_shows_names_not_tokens() {
        let t = Tokens::parse(&format!("{A} alice"), "x").unwrap();
        let shown = format!("{t:?}");
        assert!(shown.contains("alice") && !shown.contains(A), "{shown}");
    }
}
