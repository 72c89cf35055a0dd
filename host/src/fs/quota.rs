//! `quota-mb`: a grant with `quota-mb` counts the bytes of its files (apparent sizes,
//! each hard-linked file once, plus files the guest removed but still has open),
//! measured when a store is made. Every write, stream write, append and
//! `set-size` is charged what it makes its file grow (so a sparse file costs its
//! whole length), and nothing that would pass the quota is written: a `write`
//! writes what fits and then fails with `insufficient-space`, as a full disk does;
//! a stream offers (`check-write`) only what fits and refuses a write past it
//! whole; `set-size` growth must fit whole. (wasi-libc, under Rust's std and
//! CPython, reports any failed stream write as `EIO`; guests that ask
//! `filesystem-error-code` get `insufficient-space`, and the Python runner gives
//! the `OSError` back its `ENOSPC`.) Charges are not refunded as
//! they happen; when one does not fit after the guest removed, truncated or
//! renamed something, the folder is measured again. The count is shared by every
//! store of the policy, and the count and the write happen under one lock, so
//! concurrent calls and sessions cannot pass it together.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use wasmtime_wasi_io::bytes::Bytes;
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{DynOutputStream, OutputStream, StreamError, StreamResult};

/// What a quota'd stream accepts per `write`: it writes inline (see [`QuotaStream`]),
/// so each write is kept short.
const CHUNK: usize = 64 * 1024;

/// One grant's `quota-mb`.
pub(super) struct Quota {
    root: PathBuf,
    limit: u64,
    ledger: Mutex<Ledger>,
}

struct Ledger {
    /// The folder's size when last measured, plus every charge since.
    used: u64,
    /// Whether the guest may have freed bytes since the last measure.
    maybe_freed: bool,
    /// Files opened through the grant: once removed they are not in the folder,
    /// yet their bytes stay on disk while open.
    open: Vec<Weak<File>>,
}

impl Quota {
    pub(super) fn new(root: PathBuf, limit: u64) -> Arc<Self> {
        let ledger = Ledger {
            used: 0,
            maybe_freed: false,
            open: Vec::new(),
        };
        Arc::new(Self {
            root,
            limit,
            ledger: Mutex::new(ledger),
        })
    }

    /// Counts the folder again from scratch.
    pub(super) fn measure_again(&self) -> anyhow::Result<()> {
        let mut ledger = self.lock();
        ledger.used = self.measure(&mut ledger).map_err(|e| {
            anyhow::anyhow!(
                "failed to measure the granted dir `{}` for its `quota-mb`: {e}",
                self.root.display()
            )
        })?;
        ledger.maybe_freed = false;
        Ok(())
    }

    /// Remembers a file opened through the grant, for when it is removed while open.
    pub(super) fn opened(&self, file: &Arc<File>) {
        let mut ledger = self.lock();
        ledger.open.retain(|f| f.strong_count() > 0);
        ledger.open.push(Arc::downgrade(file));
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The guest may have freed bytes: the next charge that does not fit measures again.
    pub(super) fn freed(&self) {
        self.lock().maybe_freed = true;
    }

    /// How many of `want` bytes written at `start` into a file of `len` bytes fit
    /// (bytes before the end replace what is there and cost nothing).
    fn fit(&self, ledger: &mut Ledger, len: u64, start: u64, want: u64) -> u64 {
        let room = self.limit.saturating_sub(ledger.used);
        let fit = |room: u64| want.min(len.saturating_add(room).saturating_sub(start));
        if fit(room) < want && ledger.maybe_freed {
            // Left as it was when the folder cannot be read.
            if let Ok(used) = self.measure(ledger) {
                ledger.used = used;
                ledger.maybe_freed = false;
            }
        }
        fit(self.limit.saturating_sub(ledger.used))
    }

    /// How many of `want` bytes fit at `at` (`None`: the end) of `file` now.
    fn room(&self, file: &File, at: Option<u64>, want: u64) -> io::Result<u64> {
        let mut ledger = self.lock();
        let len = file.metadata()?.len();
        Ok(self.fit(&mut ledger, len, at.unwrap_or(len), want))
    }

    /// Runs `op(len, n)` on `file` (now `len` bytes long), which writes the first
    /// `n` of `want` bytes at `at` (`None`: the end): as many as fit, all of them
    /// if `whole`, and never none. The lock is held across the count and `op`, so
    /// a measure (by any store) never misses bytes that were charged.
    pub(super) fn write<R>(
        &self,
        file: &File,
        at: Option<u64>,
        want: u64,
        whole: bool,
        op: impl FnOnce(u64, u64) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut ledger = self.lock();
        let len = file.metadata()?.len();
        let start = at.unwrap_or(len);
        let n = self.fit(&mut ledger, len, start, want);
        if n < want && (whole || n == 0) {
            return Err(no_space());
        }
        ledger.used += start.saturating_add(n).saturating_sub(len);
        let done = op(len, n);
        // A failed op may have written less than was charged.
        ledger.maybe_freed |= done.is_err();
        done
    }

    /// Sets the length of `file`: a shrink frees bytes, growth must fit whole.
    pub(super) fn set_len(&self, file: &File, size: u64) -> io::Result<()> {
        let len = file.metadata()?.len();
        if size <= len {
            file.set_len(size)?;
            self.freed();
            return Ok(());
        }
        self.write(file, None, size - len, true, |_, _| file.set_len(size))
    }

    /// The bytes of the folder's files, not following symlinks, each file once
    /// however many links it has, plus removed files still open through the grant.
    fn measure(&self, ledger: &mut Ledger) -> io::Result<u64> {
        let mut seen = HashSet::new();
        let mut count = |m: &std::fs::Metadata| {
            if m.nlink() <= 1 || seen.insert((m.dev(), m.ino())) {
                m.len()
            } else {
                0
            }
        };
        let mut total = 0u64;
        let mut folders = vec![self.root.clone()];
        while let Some(folder) = folders.pop() {
            // What is removed while we walk is simply gone; only the root must be there.
            let entries = match std::fs::read_dir(&folder) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound && folder != self.root => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let Ok((path, meta)) = entry.and_then(|e| Ok((e.path(), e.metadata()?))) else {
                    continue;
                };
                if meta.is_dir() {
                    folders.push(path);
                } else if meta.is_file() {
                    total = total.saturating_add(count(&meta));
                }
            }
        }
        ledger.open.retain(|f| f.strong_count() > 0);
        for file in ledger.open.iter().filter_map(Weak::upgrade) {
            match file.metadata() {
                Ok(m) if m.nlink() == 0 => total = total.saturating_add(count(&m)),
                _ => {}
            }
        }
        Ok(total)
    }
}

/// The error of a write past the quota; wasmtime-wasi maps `ENOSPC` to WASI's
/// `insufficient-space`, also when it comes out of a stream.
fn no_space() -> io::Error {
    // ENOSPC is 28 on Linux, macOS and the BSDs.
    io::Error::from_raw_os_error(28)
}

/// An output stream into a file of a quota'd grant. Unlike wasmtime-wasi's file
/// stream it writes inside `write` instead of in the background: the bytes must
/// be charged and written under one lock, and a write still running in the
/// background could land after a measure that did not see it.
pub(super) struct QuotaStream {
    file: Arc<File>,
    /// Where the next write goes; `None` appends.
    at: Option<u64>,
    quota: Arc<Quota>,
    /// After a failed write, as WASI streams are.
    closed: bool,
}

#[wasmtime_wasi::async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        let (at, n) = (self.at, bytes.len() as u64);
        let file = &self.file;
        // All or nothing: a stream cannot say it took part of a write.
        let done = self.quota.write(file, at, n, true, |len, _| {
            file.write_all_at(&bytes, at.unwrap_or(len))
        });
        self.at = at.map(|p| p.saturating_add(n));
        done.map_err(|e| self.fail(e))
    }

    fn flush(&mut self) -> StreamResult<()> {
        match self.closed {
            true => Err(StreamError::Closed),
            false => Ok(()),
        }
    }

    /// What fits, so a guest fills the quota exactly. When nothing does, a full
    /// chunk anyway: the refusal comes from `write`, and a flush (which waits on
    /// `check-write`) after the write that filled the quota still succeeds.
    fn check_write(&mut self) -> StreamResult<usize> {
        self.flush()?;
        match self.quota.room(&self.file, self.at, CHUNK as u64) {
            Ok(0) => Ok(CHUNK),
            Ok(n) => Ok(n as usize),
            Err(e) => Err(self.fail(e)),
        }
    }
}

impl QuotaStream {
    pub(super) fn boxed(file: Arc<File>, at: Option<u64>, quota: Arc<Quota>) -> DynOutputStream {
        Box::new(Self {
            file,
            at,
            quota,
            closed: false,
        })
    }

    fn fail(&mut self, e: io::Error) -> StreamError {
        self.closed = true;
        StreamError::LastOperationFailed(e.into())
    }
}
