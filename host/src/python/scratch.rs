//! A session's scratch folder: the guest's `/` (so its working directory, and
//! `/tmp` for `tempfile`), writable, empty at start, private to the session,
//! capped at `scratch-mb`, removed when the session closes. The guest reaches it
//! through the guarded `wasi:filesystem` (`fs.rs`: no link out, the quota); the
//! host reaches it for `write_file` / `read_file` / `list_files` through
//! cap-primitives, which resolves every path beneath the folder, so neither a
//! `..` nor a symlink can lead out of it. No host path is ever shown.

use crate::error::{ErrorKind, ToolError};
use cap_primitives::fs::{DirOptions, FollowSymlinks, OpenOptions};
use serde::Serialize;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// The most bytes one `write_file` or `read_file` moves: with base64 and JSON
/// around it, the answer still fits an MCP message (8 MiB).
pub const MAX_FILE_BYTES: usize = 4 << 20;

/// The most entries `list_files` returns.
pub const MAX_LIST_ENTRIES: usize = 10_000;

/// One session's folder, removed on drop.
pub(crate) struct Scratch {
    root: PathBuf,
    dir: File,
    limit: u64,
}

/// One entry of `list_files`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileEntry {
    /// Its name in the folder listed.
    pub name: String,
    /// `file`, `dir` or `symlink`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Its size in bytes (files).
    pub size: u64,
}

impl Scratch {
    /// A new empty folder (with `tmp/`) of at most `limit_mb` MiB.
    pub(crate) fn new(limit_mb: u64) -> anyhow::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let root =
            std::env::temp_dir().join(format!("witbox-scratch-{}", uuid::Uuid::new_v4().simple()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&root)
            .map_err(|e| anyhow::anyhow!("failed to make a scratch folder: {e}"))?;
        let scratch = Self {
            dir: File::open(&root)
                .map_err(|e| anyhow::anyhow!("failed to open the scratch folder: {e}"))?,
            root,
            limit: limit_mb << 20,
        };
        std::fs::create_dir(scratch.root.join("tmp"))
            .map_err(|e| anyhow::anyhow!("failed to make the scratch folder's tmp/: {e}"))?;
        Ok(scratch)
    }

    /// The host folder (for the guest's preopen only).
    pub(crate) fn host_path(&self) -> &Path {
        &self.root
    }

    /// The cap in bytes.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Writes `bytes` to `path`, making the folders above it; within `scratch-mb`.
    pub(crate) fn write(&self, path: &str, bytes: &[u8]) -> Result<(), ToolError> {
        let rel = relative(path, false)?;
        if bytes.len() > MAX_FILE_BYTES {
            return Err(ToolError::new(
                ErrorKind::InvalidArguments,
                format!(
                    "the file is {} bytes; `write_file` takes at most {MAX_FILE_BYTES}",
                    bytes.len()
                ),
            ));
        }
        let old = cap_primitives::fs::stat(&self.dir, &rel, FollowSymlinks::No)
            .map(|m| if m.is_file() { m.len() } else { 0 })
            .unwrap_or(0);
        let used = tally(&self.root).bytes;
        if used.saturating_sub(old) + bytes.len() as u64 > self.limit {
            return Err(ToolError::new(
                ErrorKind::Denied,
                format!(
                    "writing {} bytes to `{path}` would take the session's scratch folder past its limit of {} MiB (`scratch-mb`; {used} bytes are used)",
                    bytes.len(),
                    self.limit >> 20
                ),
            ));
        }
        let mut parent = PathBuf::new();
        for c in rel.parent().into_iter().flat_map(Path::components) {
            parent.push(c);
            match cap_primitives::fs::create_dir(&self.dir, &parent, &DirOptions::new()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error(path, e)),
            }
        }
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        let mut file =
            cap_primitives::fs::open(&self.dir, &rel, &options).map_err(|e| io_error(path, e))?;
        file.write_all(bytes).map_err(|e| io_error(path, e))
    }

    /// The bytes of the file at `path`.
    pub(crate) fn read(&self, path: &str) -> Result<Vec<u8>, ToolError> {
        let rel = relative(path, false)?;
        let mut options = OpenOptions::new();
        options.read(true);
        let file =
            cap_primitives::fs::open(&self.dir, &rel, &options).map_err(|e| io_error(path, e))?;
        let meta = file.metadata().map_err(|e| io_error(path, e))?;
        if meta.is_dir() {
            return Err(ToolError::new(
                ErrorKind::InvalidArguments,
                format!("`{path}` is a folder; `list_files` lists it"),
            ));
        }
        if meta.len() > MAX_FILE_BYTES as u64 {
            return Err(ToolError::new(
                ErrorKind::Denied,
                format!(
                    "`{path}` is {} bytes; `read_file` gives at most {MAX_FILE_BYTES}",
                    meta.len()
                ),
            ));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_FILE_BYTES as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(path, e))?;
        Ok(bytes)
    }

    /// The entries of the folder at `path` (`/` or `""` for the whole scratch
    /// folder), by name.
    pub(crate) fn list(&self, path: &str) -> Result<Vec<FileEntry>, ToolError> {
        let rel = relative(path, true)?;
        let entries = if rel.as_os_str().is_empty() {
            cap_primitives::fs::read_base_dir(&self.dir)
        } else {
            cap_primitives::fs::read_dir(&self.dir, &rel)
        }
        .map_err(|e| io_error(path, e))?;
        let mut out = Vec::new();
        for entry in entries.take(MAX_LIST_ENTRIES) {
            let entry = entry.map_err(|e| io_error(path, e))?;
            let meta = entry.metadata().map_err(|e| io_error(path, e))?;
            let kind = if meta.is_dir() {
                "dir"
            } else if meta.file_type().is_symlink() {
                "symlink"
            } else {
                "file"
            };
            out.push(FileEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                kind,
                size: if kind == "file" { meta.len() } else { 0 },
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// One entry of a scratch folder in a snapshot, by its path below the folder.
pub(crate) enum Saved {
    Dir(String),
    File(String, Vec<u8>),
    Link(String, String),
}

impl Scratch {
    /// Every folder, file and link below the folder, parents first.
    pub(crate) fn export(&self) -> Result<Vec<Saved>, ToolError> {
        let mut out = Vec::new();
        let mut todo = vec![PathBuf::new()];
        while let Some(dir) = todo.pop() {
            let entries = if dir.as_os_str().is_empty() {
                cap_primitives::fs::read_base_dir(&self.dir)
            } else {
                cap_primitives::fs::read_dir(&self.dir, &dir)
            }
            .map_err(|e| io_error(&dir.to_string_lossy(), e))?;
            let mut names: Vec<_> = entries.flatten().collect();
            names.sort_by_key(|e| e.file_name());
            for entry in names {
                let rel = dir.join(entry.file_name());
                let name = rel.to_string_lossy().into_owned();
                let meta = entry.metadata().map_err(|e| io_error(&name, e))?;
                if meta.file_type().is_symlink() {
                    let target = cap_primitives::fs::read_link(&self.dir, &rel)
                        .map_err(|e| io_error(&name, e))?;
                    out.push(Saved::Link(name, target.to_string_lossy().into_owned()));
                } else if meta.is_dir() {
                    out.push(Saved::Dir(name));
                    todo.push(rel);
                } else if meta.is_file() {
                    let mut bytes = Vec::new();
                    let mut options = OpenOptions::new();
                    options.read(true);
                    cap_primitives::fs::open(&self.dir, &rel, &options)
                        .and_then(|f| f.take(self.limit).read_to_end(&mut bytes))
                        .map_err(|e| io_error(&name, e))?;
                    out.push(Saved::File(name, bytes));
                }
            }
        }
        Ok(out)
    }

    /// What changes when anything below the folder changes: entries, bytes and
    /// the latest modification (metadata only).
    pub(crate) fn fingerprint(&self) -> (u64, u64, i128) {
        let t = tally(&self.root);
        (t.entries, t.bytes, t.latest)
    }

    /// Puts saved entries back (into an empty folder), within `scratch-mb`;
    /// a link must stay inside, as one the guest makes.
    pub(crate) fn import(&self, saved: &[Saved]) -> Result<(), ToolError> {
        let total: u64 = saved
            .iter()
            .map(|s| match s {
                Saved::File(_, b) => b.len() as u64,
                _ => 0,
            })
            .sum();
        if total > self.limit {
            return Err(ToolError::new(
                ErrorKind::Denied,
                format!(
                    "the snapshot's files take {total} bytes, over this runner's `scratch-mb` of {} MiB",
                    self.limit >> 20
                ),
            ));
        }
        for s in saved {
            let done = match s {
                Saved::Dir(p) => {
                    let rel = relative(p, false)?;
                    match cap_primitives::fs::create_dir(&self.dir, &rel, &DirOptions::new()) {
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                        other => other,
                    }
                    .map_err(|e| io_error(p, e))
                }
                Saved::File(p, bytes) => {
                    let rel = relative(p, false)?;
                    let mut options = OpenOptions::new();
                    options.write(true).create(true).truncate(true);
                    cap_primitives::fs::open(&self.dir, &rel, &options)
                        .and_then(|mut f| f.write_all(bytes))
                        .map_err(|e| io_error(p, e))
                }
                Saved::Link(p, target) => {
                    let rel = relative(p, false)?;
                    if !crate::fs::stays_inside(target) {
                        return Err(ToolError::new(
                            ErrorKind::InvalidArguments,
                            format!("the snapshot's link `{p}` points outside its folder"),
                        ));
                    }
                    cap_primitives::fs::symlink(Path::new(target), &self.dir, &rel)
                        .map_err(|e| io_error(p, e))
                }
            };
            done?;
        }
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A guest path (`/out.csv`, `tmp/x`, `data/a.txt`) as a path below the folder:
/// no `..`, no NUL, not empty unless `root_ok`.
fn relative(path: &str, root_ok: bool) -> Result<PathBuf, ToolError> {
    let invalid = |m: String| ToolError::new(ErrorKind::InvalidArguments, m);
    if path.contains('\0') {
        return Err(invalid("the path contains a NUL byte".into()));
    }
    if path.len() > 4096 {
        return Err(invalid(format!(
            "the path is {} bytes; the limit is 4096",
            path.len()
        )));
    }
    let mut rel = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => rel.push(part),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid(format!(
                    "the path `{path}` leaves the session's scratch folder: `..` is not allowed"
                )));
            }
        }
    }
    if rel.as_os_str().is_empty() && !root_ok {
        return Err(invalid(format!("the path `{path}` names no file")));
    }
    Ok(rel)
}

fn io_error(path: &str, e: std::io::Error) -> ToolError {
    use std::io::ErrorKind as Io;
    let kind = match e.kind() {
        Io::NotFound => ErrorKind::NotFound,
        Io::PermissionDenied => ErrorKind::Denied,
        _ => ErrorKind::InvalidArguments,
    };
    // cap-primitives says "a path led outside of the filesystem" for an escape
    // through a symlink; the OS error text never names a host path.
    let why = match e.kind() {
        Io::NotFound => "no such file or folder".to_string(),
        _ if e.to_string().contains("outside of the filesystem") => {
            "it leads outside the session's scratch folder".to_string()
        }
        _ => e.to_string(),
    };
    ToolError::new(kind, format!("`{path}`: {why}"))
}

/// What is below a folder (symlinks not followed).
#[derive(Default)]
struct Tally {
    entries: u64,
    /// Of the files.
    bytes: u64,
    /// The latest modification, in ns since the epoch.
    latest: i128,
}

impl Scratch {
    /// Up to `max` PNG files (by their signature) written since `since`, each at
    /// most [`MAX_FILE_BYTES`], by path, in path order.
    pub(crate) fn pngs_since(&self, since: std::time::SystemTime, max: usize) -> Vec<super::Image> {
        let mut found = Vec::new();
        let mut todo = vec![self.root.clone()];
        let mut seen = 0;
        while let Some(dir) = todo.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                seen += 1;
                if seen > MAX_LIST_ENTRIES {
                    break;
                }
                let Ok(m) = entry.metadata() else { continue };
                let path = entry.path();
                if m.is_dir() {
                    todo.push(path);
                } else if m.is_file()
                    && path
                        .extension()
                        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
                    && m.len() <= MAX_FILE_BYTES as u64
                    && m.modified().is_ok_and(|t| t >= since)
                {
                    found.push(path);
                }
            }
        }
        found.sort();
        found
            .into_iter()
            .filter_map(|path| {
                let png = std::fs::read(&path).ok()?;
                let inside = path.strip_prefix(&self.root).ok()?.display().to_string();
                png.starts_with(b"\x89PNG\r\n\x1a\n").then(|| super::Image {
                    path: format!("/{inside}"),
                    png,
                })
            })
            .take(max)
            .collect()
    }
}

/// The bytes of the files under `root`.
pub(crate) fn bytes(root: &Path) -> u64 {
    tally(root).bytes
}

fn tally(root: &Path) -> Tally {
    use std::os::unix::fs::MetadataExt;
    let mut t = Tally::default();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(m) = entry.metadata() else { continue };
            t.entries += 1;
            t.latest = t
                .latest
                .max(m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128);
            if m.is_dir() {
                todo.push(entry.path());
            } else if m.is_file() {
                t.bytes += m.len();
            }
        }
    }
    t
}
