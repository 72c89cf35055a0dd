//! A session as bytes that move between processes: its checkpoint (the
//! runner's own format) and its scratch folder, bound to the runner build that
//! made them and signed, so a snapshot from another build, a damaged one or a
//! changed one is refused with an error that says which.
//!
//! Layout (integers little-endian):
//! `WITBOXSNAP` · version u16 · the runner's sha256 (32) · checkpoint length u64 ·
//! checkpoint · entry count u32 · entries (kind u8 `d`/`f`/`l`, path length u16,
//! path, data length u64, data) · HMAC-SHA256 of everything before it (32).
//!
//! The key is the user's (`snapshot.key` in witbox's data folder, made on first
//! use, readable only by its owner): a snapshot moves between the processes of
//! one user on one machine. What is inside a snapshot can do no more than the
//! code and files a client could send anyway (it is unpickled inside the
//! sandbox); the signature is there so nothing is restored by mistake.

use super::scratch::Saved;
use crate::error::{ErrorKind, ToolError};
use std::path::PathBuf;

const MAGIC: &[u8; 10] = b"WITBOXSNAP";
const VERSION: u16 = 1;
const MAC: usize = 32;

/// The most bytes a snapshot may take: a checkpoint and a full scratch folder.
pub const MAX_SNAPSHOT_BYTES: usize = 1 << 30;

/// What a snapshot holds.
pub(crate) struct Contents {
    pub(crate) checkpoint: Vec<u8>,
    pub(crate) files: Vec<Saved>,
}

fn invalid(m: String) -> ToolError {
    ToolError::new(ErrorKind::InvalidArguments, m)
}

/// The bytes of a snapshot of `contents` made by the runner `runner_id`.
pub(crate) fn encode(
    runner_id: &[u8; 32],
    contents: &Contents,
    key: &[u8; 32],
) -> Result<Vec<u8>, ToolError> {
    let mut out = Vec::with_capacity(contents.checkpoint.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(runner_id);
    out.extend_from_slice(&(contents.checkpoint.len() as u64).to_le_bytes());
    out.extend_from_slice(&contents.checkpoint);
    out.extend_from_slice(&(contents.files.len() as u32).to_le_bytes());
    for entry in &contents.files {
        let (kind, path, data) = match entry {
            Saved::Dir(p) => (b'd', p, &[][..]),
            Saved::File(p, bytes) => (b'f', p, bytes.as_slice()),
            Saved::Link(p, target) => (b'l', p, target.as_bytes()),
        };
        let len = u16::try_from(path.len())
            .map_err(|_| invalid(format!("the path `{path}` is too long for a snapshot")))?;
        out.push(kind);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        out.extend_from_slice(data);
    }
    let mac = crate::audit::hmac_sha256(key, &out);
    out.extend_from_slice(&mac);
    if out.len() > MAX_SNAPSHOT_BYTES {
        return Err(invalid(format!(
            "the snapshot would take {} bytes, over the limit of {MAX_SNAPSHOT_BYTES}",
            out.len()
        )));
    }
    Ok(out)
}

/// The runner build a snapshot says made it (unchecked: [`decode`] checks).
pub(crate) fn made_by(bytes: &[u8]) -> Option<[u8; 32]> {
    let at = MAGIC.len() + 2;
    if bytes.get(..MAGIC.len())? != MAGIC {
        return None;
    }
    bytes.get(at..at + 32)?.try_into().ok()
}

/// Reads a snapshot made by this runner build and signed with `key`.
pub(crate) fn decode(
    bytes: &[u8],
    runner_id: &[u8; 32],
    key: &[u8; 32],
) -> Result<Contents, ToolError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(invalid("the data is not a witbox snapshot".into()));
    }
    let mut r = Reader(&bytes[MAGIC.len()..]);
    let version = u16::from_le_bytes(r.take(2)?.try_into().expect("2 bytes"));
    if version != VERSION {
        return Err(invalid(format!(
            "the snapshot has format version {version}; this witbox reads version {VERSION}"
        )));
    }
    let made_by: [u8; 32] = r.take(32)?.try_into().expect("32 bytes");
    if &made_by != runner_id {
        return Err(invalid(format!(
            "the snapshot was made by another build of the Python runner (sha256 {}…; this one is {}…): restore it where it was made",
            crate::text::hex(&made_by[..6]),
            crate::text::hex(&runner_id[..6])
        )));
    }
    if bytes.len() < MAGIC.len() + 2 + 32 + MAC {
        return Err(invalid("the snapshot is cut short".into()));
    }
    let (signed, mac) = bytes.split_at(bytes.len() - MAC);
    if crate::audit::hmac_sha256(key, signed) != mac {
        return Err(invalid(
            "the snapshot is damaged or was changed: its signature does not match (or it was made by another user, whose key this is not)".into(),
        ));
    }
    let mut r = Reader(&signed[MAGIC.len() + 2 + 32..]);
    let len = r.u64()?;
    let checkpoint = r.take(len)?.to_vec();
    let count = u32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes"));
    let mut files = Vec::new();
    for _ in 0..count {
        let kind = r.take(1)?[0];
        let path_len = u16::from_le_bytes(r.take(2)?.try_into().expect("2 bytes"));
        let path = String::from_utf8(r.take(path_len as u64)?.to_vec())
            .map_err(|_| invalid("a path in the snapshot is not UTF-8".into()))?;
        let len = r.u64()?;
        let data = r.take(len)?.to_vec();
        files.push(match kind {
            b'd' => Saved::Dir(path),
            b'f' => Saved::File(path, data),
            b'l' => Saved::Link(
                path,
                String::from_utf8(data)
                    .map_err(|_| invalid("a link in the snapshot is not UTF-8".into()))?,
            ),
            other => {
                return Err(invalid(format!(
                    "the snapshot has an entry of unknown kind {other}"
                )));
            }
        });
    }
    Ok(Contents { checkpoint, files })
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: u64) -> Result<&[u8], ToolError> {
        if n > self.0.len() as u64 {
            return Err(invalid("the snapshot is cut short".into()));
        }
        let (head, rest) = self.0.split_at(n as usize);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, ToolError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

/// The user's snapshot key: `$WITBOX_DATA_DIR`, `$XDG_DATA_HOME/witbox` or
/// `~/.local/share/witbox`, `snapshot.key`; made (mode 0600) on first use.
pub(crate) fn key() -> anyhow::Result<[u8; 32]> {
    use anyhow::Context;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = if let Some(d) = std::env::var_os("WITBOX_DATA_DIR") {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        PathBuf::from(d).join("witbox")
    } else {
        let home = std::env::var_os("HOME").context("no HOME for witbox's snapshot key")?;
        PathBuf::from(home).join(".local/share/witbox")
    };
    let path = dir.join("snapshot.key");
    if let Ok(bytes) = std::fs::read(&path) {
        return bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the snapshot key `{}` is not 32 bytes", path.display()));
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("failed to make `{}` for the snapshot key", dir.display()))?;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness for the key: {e}"))?;
    // Written aside and linked into place: a process that reads it never sees
    // half a key, and if another made it first, that one is used.
    let aside = dir.join(format!("snapshot.key.{}", uuid::Uuid::new_v4().simple()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&aside)
        .with_context(|| format!("failed to make `{}`", aside.display()))?;
    f.write_all(&key)
        .with_context(|| format!("failed to write `{}`", aside.display()))?;
    let linked = std::fs::hard_link(&aside, &path);
    let _ = std::fs::remove_file(&aside);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(&path)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("the snapshot key `{}` is not 32 bytes", path.display())),
        Err(e) => Err(e).with_context(|| format!("failed to make `{}`", path.display())),
    }
}
