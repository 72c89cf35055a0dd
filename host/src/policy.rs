//! A component's policy, checked: what it may reach (environment, secrets, folders,
//! tools, config, HTTP) and its [`Limits`], plus the [`Redactor`] that keeps its
//! secrets out of everything it gives back.
//!
//! What a guest gets from an empty policy: no files, no environment variables, no
//! arguments, an empty stdin, stdout and stderr captured up to `max-output-bytes`,
//! no TCP, no UDP, no name lookups, no outbound HTTP, no tools; the wall and
//! monotonic clocks and random numbers, which WASI requires.

use crate::limits::Limits;
use crate::manifest::{DirMode, Manifest, Policy};
use crate::net::AllowList;
use anyhow::{Context, Result};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::Val;

/// What a secret is replaced by.
pub const REDACTED: &str = "[REDACTED]";

/// A component's policy, checked and ready to build stores from.
pub struct Sandbox {
    /// The component's name (`runner` for the Python runner).
    pub name: String,
    pub(crate) allow_http: Arc<AllowList>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) dirs: Vec<(PathBuf, String, DirMode)>,
    /// The same folders, for the guarded filesystem (`fs`): their quotas, shared
    /// by every store of this policy.
    pub(crate) grants: Arc<crate::fs::Grants>,
    call_tools: Vec<glob::Pattern>,
    pub(crate) config: Vec<(String, String)>,
    /// Its limits.
    pub limits: Limits,
    /// Its secrets, and how to find them in what it gives back.
    pub redactor: Redactor,
}

impl Sandbox {
    /// Checks a policy; relative `dirs` are resolved against the manifest's folder.
    pub fn new(
        name: &str,
        policy: &Policy,
        config: &BTreeMap<String, String>,
        manifest: &Manifest,
    ) -> Result<Self> {
        let dirs: Vec<(PathBuf, String, DirMode)> = policy
            .dirs
            .iter()
            .map(|d| {
                let host = manifest.resolve(&d.host);
                anyhow::ensure!(
                    host.is_dir(),
                    "the granted dir `{}` does not exist",
                    host.display()
                );
                Ok((host, d.guest.clone(), d.mode))
            })
            .collect::<Result<_>>()?;
        let grants =
            crate::fs::Grants::new(dirs.iter().zip(&policy.dirs).map(|((host, ..), d)| {
                (
                    host.clone(),
                    d.quota_mb.map(|mb| mb.saturating_mul(1 << 20)),
                )
            }));
        let call_tools = policy
            .call_tools
            .iter()
            .map(|p| {
                glob::Pattern::new(p).with_context(|| format!("invalid `call-tools` pattern `{p}`"))
            })
            .collect::<Result<_>>()?;
        let mut env: Vec<(String, String)> = policy
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut secrets = Vec::new();
        for (guest, host) in &policy.secrets {
            let value = std::env::var(host)
                .ok()
                .filter(|v| !v.is_empty())
                .with_context(|| {
                    format!(
                        "the secret `{guest}` comes from the host's `${host}`, which is not set"
                    )
                })?;
            env.push((guest.clone(), value.clone()));
            secrets.push(value);
        }
        Ok(Self {
            name: name.to_string(),
            allow_http: Arc::new(AllowList::parse(&policy.allow_http)?),
            env,
            dirs,
            grants,
            call_tools,
            config: config.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            limits: Limits::new(policy)?,
            redactor: Redactor::new(&secrets),
        })
    }

    /// Whether this component may call the tool `name` through `host.call-tool`.
    pub fn may_call(&self, name: &str) -> bool {
        self.call_tools.iter().any(|p| p.matches(name))
    }
}

/// Finds a policy's secrets in what a guest gives back, spelled as they are and
/// as the common escapes spell them: JSON strings (with and without non-ASCII
/// escaped), Python's `repr` and `ascii`. A guest that encodes a secret some other
/// way (base64, reversed, one character per call of a tool) is not caught: a
/// secret is for a guest that is trusted not to leak it on purpose.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Every spelling of every secret, longest first.
    needles: Vec<String>,
}

impl Redactor {
    /// A redactor for these secret values.
    pub fn new(secrets: &[String]) -> Self {
        let mut needles: Vec<String> = secrets.iter().flat_map(|s| spellings(s)).collect();
        needles.retain(|n| !n.is_empty());
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        needles.dedup();
        Self { needles }
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every spelling of a secret replaced by `[REDACTED]`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = Cow::Owned(out.replace(needle.as_str(), REDACTED));
            }
        }
        out
    }

    /// `text` redacted, then cut to at most `max` bytes; `true` if it was cut here.
    /// Redacting first means no cut point shows part of a secret. `cut_before` says
    /// the text was already cut upstream (a guest's budget, a full pipe), where a
    /// secret may have been cut in half: that partial secret at its end is dropped.
    pub fn head(&self, text: &str, max: usize, cut_before: bool) -> (String, bool) {
        let redacted = self.redact(text);
        let cut = redacted.len() > max;
        let mut out = crate::text::head(&redacted, max).to_string();
        if cut_before && !cut {
            let partial = self.partial_end(&out);
            out.truncate(out.len() - partial);
        }
        (out, cut)
    }

    /// The last `max` bytes of `text`, redacted first (see [`Redactor::head`] for
    /// `cut_before`).
    pub fn tail(&self, text: &str, max: usize, cut_before: bool) -> String {
        let mut redacted = self.redact(text).into_owned();
        if cut_before {
            let partial = self.partial_end(&redacted);
            redacted.truncate(redacted.len() - partial);
        }
        crate::text::tail(&redacted, max).to_string()
    }

    /// How many bytes at the end of `text` (already redacted) to hold back while
    /// more of it may come (a streamed run): the longest end that could begin a
    /// secret's spelling, so at most the longest spelling less one byte, and 0
    /// without secrets. What comes before it can be handed on: nothing written
    /// later makes a secret of it.
    pub fn held_back(&self, text: &str) -> usize {
        self.partial_end(text)
    }

    /// Redacts a JSON value in place: strings, object keys, and numbers whose text
    /// is a secret (those become the string `[REDACTED]`).
    pub fn redact_json(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            // `2.0` is the secret `2` too, as a typed value's number is (`redact_vals`).
            Value::Number(n)
                if self.is_secret_text(&n.to_string())
                    || n.as_f64()
                        .is_some_and(|f| self.is_secret_text(&f.to_string())) =>
            {
                *value = Value::String(REDACTED.into());
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut v) in entries {
                    self.redact_json(&mut v);
                    map.insert(self.redact(&key).into_owned(), v);
                }
            }
            _ => {}
        }
    }

    /// Redacts the strings in component values, in place (a linked call's result).
    /// A number whose text is a secret cannot be replaced in a typed value: that
    /// is an error, and the value is not handed on.
    pub fn redact_vals(&self, vals: &mut [Val]) -> Result<(), String> {
        if self.is_empty() {
            return Ok(());
        }
        vals.iter_mut().try_for_each(|v| self.redact_val(v))
    }

    fn redact_val(&self, v: &mut Val) -> Result<(), String> {
        let number = match v {
            Val::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
                return Ok(());
            }
            Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
                return items.iter_mut().try_for_each(|v| self.redact_val(v));
            }
            Val::Record(fields) => {
                return fields.iter_mut().try_for_each(|(_, v)| self.redact_val(v));
            }
            Val::Map(pairs) => {
                return pairs.iter_mut().try_for_each(|(k, v)| {
                    self.redact_val(k)?;
                    self.redact_val(v)
                });
            }
            Val::Variant(_, Some(p)) | Val::Option(Some(p)) => return self.redact_val(p),
            Val::Result(Ok(Some(p)) | Err(Some(p))) => return self.redact_val(p),
            Val::S8(n) => n.to_string(),
            Val::U8(n) => n.to_string(),
            Val::S16(n) => n.to_string(),
            Val::U16(n) => n.to_string(),
            Val::S32(n) => n.to_string(),
            Val::U32(n) => n.to_string(),
            Val::S64(n) => n.to_string(),
            Val::U64(n) => n.to_string(),
            Val::Float32(x) => x.to_string(),
            Val::Float64(x) => x.to_string(),
            Val::Char(c) => c.to_string(),
            _ => return Ok(()),
        };
        if self.is_secret_text(&number) {
            return Err(format!(
                "a number or character in it is a secret ({REDACTED})"
            ));
        }
        Ok(())
    }

    fn is_secret_text(&self, text: &str) -> bool {
        self.needles.iter().any(|n| n == text)
    }

    /// How many bytes at the end of `text` are the start of a secret's spelling.
    fn partial_end(&self, text: &str) -> usize {
        self.needles
            .iter()
            .flat_map(|n| {
                (1..n.len())
                    .filter(|&k| n.is_char_boundary(k))
                    .map(move |k| &n[..k])
            })
            .filter(|prefix| text.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0)
    }
}

/// A secret as it appears raw, inside a JSON string (as serde and JavaScript write
/// it, and with non-ASCII escaped as Python's `json.dumps` does), and inside the
/// quotes of Python's `repr` and `ascii`.
fn spellings(secret: &str) -> Vec<String> {
    // As serde (and JavaScript) write it; then with non-ASCII escaped as UTF-16
    // units, as Python's `json.dumps` does (lower-case hex), or upper-case.
    let quoted = serde_json::to_string(secret).unwrap_or_default();
    let json = quoted[1..quoted.len() - 1].to_string();
    let ascii = |upper: bool| {
        let mut out = String::new();
        for c in json.chars() {
            if c.is_ascii() {
                out.push(c);
                continue;
            }
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&if upper {
                    format!("\\u{unit:04X}")
                } else {
                    format!("\\u{unit:04x}")
                });
            }
        }
        out
    };
    // Python escapes the quote it uses: `'` unless the text has `'` and no `"`.
    let python = |ascii: bool, escape_quote: bool| {
        let mut out = String::new();
        for c in secret.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\'' if escape_quote => out.push_str("\\'"),
                // Not printable to Python (approximately: controls and odd spaces).
                c if c.is_control()
                    || (c.is_whitespace() && c != ' ')
                    || (ascii && !c.is_ascii()) =>
                {
                    let n = c as u32;
                    out.push_str(&match n {
                        0..=0xff => format!("\\x{n:02x}"),
                        0x100..=0xffff => format!("\\u{n:04x}"),
                        _ => format!("\\U{n:08x}"),
                    });
                }
                c => out.push(c),
            }
        }
        out
    };
    vec![
        secret.to_string(),
        ascii(false),
        ascii(true),
        json,
        python(false, true),
        python(false, false),
        python(true, true),
        python(true, false),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escaped_spellings_are_found() {
        let r = Redactor::new(&["pa\"ss\\wé\n".to_string()]);
        assert_eq!(r.redact("x pa\"ss\\wé\n y"), "x [REDACTED] y");
        // JSON, as serde writes it and as Python's json.dumps does.
        assert_eq!(
            r.redact(r#"{"k": "pa\"ss\\wé\n"}"#),
            r#"{"k": "[REDACTED]"}"#
        );
        assert_eq!(r.redact(r#""pa\"ss\\w\u00e9\n""#), r#""[REDACTED]""#);
        // Python's repr and ascii.
        assert_eq!(r.redact("'pa\"ss\\\\wé\\n'"), "'[REDACTED]'");
        assert_eq!(r.redact("'pa\"ss\\\\w\\xe9\\n'"), "'[REDACTED]'");
    }

    #[test]
    fn a_cut_never_shows_part_of_a_secret() {
        let r = Redactor::new(&["s3cr3t-Value-42".to_string()]);
        // Cut upstream in the middle of a secret: the partial secret goes.
        assert_eq!(r.head("abc s3cr3t-Va", 100, true), ("abc ".into(), false));
        // Cut here: after redaction, so the cut can only split the marker.
        assert_eq!(
            r.head("abc s3cr3t-Value-42 d", 9, false),
            ("abc [REDA".into(), true)
        );
        assert_eq!(
            r.head("abc s3cr3t-Value-42 d", 100, false).0,
            "abc [REDACTED] d"
        );
        assert_eq!(r.tail("xxxxs3cr3t-Value-42 tail", 11, false), "ACTED] tail");
        assert_eq!(r.tail("panic: s3cr3t", 100, true), "panic: ");
    }

    #[test]
    fn only_an_end_that_could_begin_a_secret_is_held_back() {
        let r = Redactor::new(&["s3cr3t-Value-42".to_string()]);
        assert_eq!(r.held_back("key=s3cr"), 4);
        assert_eq!(r.held_back("key=s3cr3t-Value-4"), 14);
        assert_eq!(r.held_back("key=[REDACTED]\n"), 0);
        assert_eq!(r.held_back("plain"), 0);
        assert_eq!(Redactor::default().held_back("s3cr"), 0);
    }

    #[test]
    fn json_keys_and_numbers_are_redacted() {
        let r = Redactor::new(&["12345".to_string()]);
        let mut v = json!({"12345": [12345, "a12345b", 7]});
        r.redact_json(&mut v);
        assert_eq!(v, json!({"[REDACTED]": ["[REDACTED]", "a[REDACTED]b", 7]}));
        let mut vals = vec![Val::String("12345".into())];
        r.redact_vals(&mut vals).unwrap();
        assert_eq!(vals, vec![Val::String(REDACTED.into())]);
        assert!(r.redact_vals(&mut [Val::U32(12345)]).is_err());
    }
}
