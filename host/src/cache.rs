//! Compiling components (and the data runner's core module), and the on-disk
//! cache of compiled code: keyed by
//! the wasm's SHA-256 and everything in the engine that changes compiled code,
//! written atomically, with a small index from a file's path, size and
//! modification time to its key (so a 25 MB runner is not hashed on every start).
//! Bounded: a load marks an entry used (its modification time), and a write that
//! takes the folder past its size removes the entries used longest ago.

use crate::engine::Engine;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::Component;

/// What the cache holds: a compiled component, or a compiled core module (the
/// data runner, `data/`).
pub(crate) trait Compiled: Sized {
    /// Names the problem when `bytes` are not this kind of WebAssembly.
    fn check(bytes: &[u8]) -> Result<()>;
    fn compile(engine: &wasmtime::Engine, bytes: &[u8]) -> wasmtime::Result<Self>;
    /// # Safety
    /// `path` was written by [`Compiled::serialize`] of an engine like this one.
    unsafe fn deserialize_file(engine: &wasmtime::Engine, path: &Path) -> wasmtime::Result<Self>;
    fn serialize(&self) -> wasmtime::Result<Vec<u8>>;
}

impl Compiled for Component {
    fn check(bytes: &[u8]) -> Result<()> {
        check_is_component(bytes)
    }
    fn compile(engine: &wasmtime::Engine, bytes: &[u8]) -> wasmtime::Result<Self> {
        Component::new(engine, bytes)
    }
    unsafe fn deserialize_file(engine: &wasmtime::Engine, path: &Path) -> wasmtime::Result<Self> {
        // SAFETY: as the caller promises.
        unsafe { Component::deserialize_file(engine, path) }
    }
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Component::serialize(self)
    }
}

impl Compiled for wasmtime::Module {
    fn check(bytes: &[u8]) -> Result<()> {
        if !bytes.starts_with(b"\0asm") || !wasmparser::Parser::is_core_wasm(bytes) {
            anyhow::bail!("it is not a core WebAssembly module");
        }
        Ok(())
    }
    fn compile(engine: &wasmtime::Engine, bytes: &[u8]) -> wasmtime::Result<Self> {
        wasmtime::Module::new(engine, bytes)
    }
    unsafe fn deserialize_file(engine: &wasmtime::Engine, path: &Path) -> wasmtime::Result<Self> {
        // SAFETY: as the caller promises.
        unsafe { wasmtime::Module::deserialize_file(engine, path) }
    }
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        wasmtime::Module::serialize(self)
    }
}

impl Engine {
    /// Compiles a component, or loads it from the cache if these bytes were
    /// compiled before by an engine with the same configuration.
    pub fn compile(&self, name: &str, wasm: &[u8]) -> Result<Component> {
        self.compile_keyed(name, wasm).map(|(c, _)| c)
    }

    /// Like [`Engine::compile`] for a file, without reading or hashing it when
    /// the cache already holds it: a small index maps the file's path, size and
    /// modification time to the content key of its compiled form. (The Python
    /// runner is 25 MB: hashing it would take longer than starting a session.)
    pub fn compile_file(&self, name: &str, path: &Path) -> Result<Component> {
        self.compile_indexed(name, path, None)
    }

    /// [`Engine::compile_file`] for a file the caller has read already: `bytes`
    /// are compiled (and hashed) only when the cache does not hold the file.
    pub fn compile_read_file(&self, name: &str, path: &Path, bytes: &[u8]) -> Result<Component> {
        self.compile_indexed(name, path, Some(bytes))
    }

    /// [`Engine::compile_file`] for a core module (the data runner's).
    pub(crate) fn compile_module_file(&self, name: &str, path: &Path) -> Result<wasmtime::Module> {
        self.compile_indexed(name, path, None)
    }

    fn compile_indexed<C: Compiled>(
        &self,
        name: &str,
        path: &Path,
        bytes: Option<&[u8]>,
    ) -> Result<C> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("failed to read `{}`", path.display()))?;
        crate::limits::check_regular(path, &meta, crate::limits::MAX_COMPONENT_BYTES)?;
        let index = self.index_of(path, &meta);
        if let Some((dir, key)) = self.indexed_key(index.as_deref())
            && let Ok(Some(c)) = self.cached(dir, &key)
        {
            return Ok(c);
        }
        let read;
        let bytes = match bytes {
            Some(bytes) => bytes,
            None => {
                read = crate::limits::read_file(path, crate::limits::MAX_COMPONENT_BYTES)?;
                &read
            }
        };
        let (component, key) = self.compile_keyed(name, bytes)?;
        if let (Some(index), Some(key)) = (index, key) {
            let _ = std::fs::create_dir_all(index.parent().expect("index has a folder"))
                .and_then(|()| crate::limits::write_aside(&index, key.as_bytes()));
        }
        Ok(component)
    }

    /// Whether [`Engine::compile_file`] would find `path` in the cache (without
    /// loading it): when it would not, loading means compiling, for seconds.
    pub fn is_cached(&self, path: &Path) -> bool {
        let Ok(meta) = std::fs::metadata(path) else {
            return false;
        };
        self.indexed_key(self.index_of(path, &meta).as_deref())
            .is_some_and(|(dir, key)| dir.join(format!("{key}.cwasm")).is_file())
    }

    /// The cache folder and the content key a file's index entry names, if any.
    fn indexed_key(&self, index: Option<&Path>) -> Option<(&Path, String)> {
        let key = std::fs::read_to_string(index?).ok()?;
        Some((self.options.cache_dir.as_deref()?, key.trim().to_string()))
    }

    /// The index entry of a file: its path, size and modification time, and
    /// this engine's configuration.
    fn index_of(&self, path: &Path, meta: &std::fs::Metadata) -> Option<PathBuf> {
        let dir = self.options.cache_dir.as_ref()?;
        let mtime = meta
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        let full = std::fs::canonicalize(path).ok()?;
        let mut h = Sha256::new();
        h.update(full.as_os_str().as_encoded_bytes());
        h.update(meta.len().to_le_bytes());
        h.update(mtime.as_nanos().to_le_bytes());
        h.update(self.compat().to_le_bytes());
        Some(
            dir.join("by-file")
                .join(crate::text::hex(&h.finalize()[..16])),
        )
    }

    fn compile_keyed<C: Compiled>(&self, name: &str, wasm: &[u8]) -> Result<(C, Option<String>)> {
        C::check(wasm)?;
        let Some(dir) = &self.options.cache_dir else {
            return Ok((self.compile_now(name, wasm)?, None));
        };
        let key = self.cache_key(wasm);
        match self.cached(dir, &key) {
            Ok(Some(c)) => return Ok((c, Some(key))),
            Ok(None) => {}
            Err(e) => log_line!("witbox: ignoring stale cache entry `{key}.cwasm`: {e:#}"),
        }
        let component = self.compile_now(name, wasm)?;
        let path = dir.join(format!("{key}.cwasm"));
        match write_cache(&path, &component) {
            Ok(()) => {
                let max = match self.options.cache_max_bytes {
                    0 => DEFAULT_CACHE_MAX_BYTES,
                    n => n,
                };
                let removed = prune(dir, &path, max);
                if removed > 0 {
                    log_line!(
                        "witbox: removed {removed} compiled component(s) used longest ago from the cache `{}`, to keep it under {} MiB",
                        dir.display(),
                        max >> 20
                    );
                }
            }
            Err(e) => log_line!(
                "witbox: could not cache `{name}` in `{}`: {e:#}",
                dir.display()
            ),
        }
        Ok((component, Some(key)))
    }

    /// The compiled component cached under `key`: `None` if there is none,
    /// an error if the file is there but does not fit this engine.
    fn cached<C: Compiled>(&self, dir: &Path, key: &str) -> Result<Option<C>> {
        let path = dir.join(format!("{key}.cwasm"));
        if !path.exists() {
            return Ok(None);
        }
        // SAFETY: the file was written by `Compiled::serialize` (`write_cache`), into
        // witbox's own cache folder, and wasmtime checks that it matches this engine
        // (and that it is a component or a module, as asked).
        let component =
            unsafe { C::deserialize_file(&self.engine, &path) }.map_err(anyhow::Error::from)?;
        // Used now: the last to go when the cache is pruned. A read-only cache
        // (shared, or on a read-only disk) is still read.
        let _ = std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        Ok(Some(component))
    }

    fn compile_now<C: Compiled>(&self, name: &str, wasm: &[u8]) -> Result<C> {
        let progress = Progress::start(name, wasm.len());
        let result = C::compile(&self.engine, wasm);
        progress.finish();
        result.map_err(anyhow::Error::from)
    }

    /// The wasm's SHA-256 plus a hash of everything in the engine that changes compiled code
    /// (wasmtime version, target, fuel, epochs, ...).
    fn cache_key(&self, wasm: &[u8]) -> String {
        format!(
            "{}-{:016x}",
            crate::text::hex(&Sha256::digest(wasm)[..16]),
            self.compat()
        )
    }

    /// A hash of everything in the engine that changes compiled code.
    fn compat(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        h.finish()
    }
}

/// Names the problem when the bytes are not a component.
pub(crate) fn check_is_component(bytes: &[u8]) -> Result<()> {
    if !bytes.starts_with(b"\0asm") {
        anyhow::bail!("it is not WebAssembly (the file does not start with `\\0asm`)");
    }
    if wasmparser::Parser::is_core_wasm(bytes) {
        anyhow::bail!(
            "it is a core WebAssembly module, not a component; build it for `wasm32-wasip2` or wrap it with `wasm-tools component new`"
        );
    }
    if !wasmparser::Parser::is_component(bytes) {
        anyhow::bail!("it is WebAssembly of an unknown version or kind");
    }
    Ok(())
}

fn write_cache<C: Compiled>(path: &Path, component: &C) -> Result<()> {
    let dir = path.parent().context("cache path has no folder")?;
    std::fs::create_dir_all(dir).context("failed to create the cache folder")?;
    let bytes = component.serialize().map_err(anyhow::Error::from)?;
    crate::limits::write_aside(path, &bytes).context("failed to write the cache file")
}

/// How many bytes of compiled components the cache keeps by default: the
/// shipped runner with its packages is about 150 MB compiled.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 2 << 30;

/// Removes the compiled components in `dir` used longest ago (oldest modification
/// time: [`Engine::cached`] renews it) until they take at most `max` bytes, and the
/// index entries that name them; `keep`, the one just written, stays. Returns how
/// many it removed. Another process that has one of them loaded keeps its mapping;
/// one about to load it compiles again.
fn prune(dir: &Path, keep: &Path, max: u64) -> usize {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut entries = Vec::new();
    let mut total = 0;
    for entry in listing.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if path.extension().is_some_and(|e| e == "cwasm") && meta.is_file() {
            total += meta.len();
            let used = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            entries.push((used, meta.len(), path));
        }
    }
    if total <= max {
        return 0;
    }
    entries.sort();
    let mut removed = std::collections::HashSet::new();
    for (_, len, path) in entries {
        if total <= max {
            break;
        }
        if path != keep && std::fs::remove_file(&path).is_ok() {
            total -= len;
            if let Some(key) = path.file_stem().and_then(|s| s.to_str()) {
                removed.insert(key.to_string());
            }
        }
    }
    if let Ok(index) = std::fs::read_dir(dir.join("by-file")) {
        for entry in index.flatten() {
            let names_removed =
                std::fs::read_to_string(entry.path()).is_ok_and(|key| removed.contains(key.trim()));
            if names_removed {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    removed.len()
}

/// The default cache folder: `$WITBOX_CACHE_DIR`, else `$XDG_CACHE_HOME/witbox`, else `~/.cache/witbox`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WITBOX_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("witbox"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("witbox"))
}

/// Shows "compiling `x`… 3s" on a terminal while a slow compile runs.
struct Progress {
    done: Option<Arc<AtomicBool>>,
}

impl Progress {
    fn start(name: &str, bytes: usize) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { done: None };
        }
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let label = format!(
            "compiling `{name}` ({:.1} MB, cached afterwards)",
            bytes as f64 / 1e6
        );
        std::thread::spawn(move || {
            let start = Instant::now();
            std::thread::sleep(Duration::from_millis(500));
            let mut shown = false;
            while !flag.load(Ordering::Relaxed) {
                eprint!("\r\x1b[2K{label}… {}s", start.elapsed().as_secs());
                shown = true;
                std::thread::sleep(Duration::from_millis(250));
            }
            if shown {
                log_line!(
                    "\r\x1b[2K{label}: done in {:.1}s",
                    start.elapsed().as_secs_f64()
                );
            }
        });
        Self { done: Some(done) }
    }

    fn finish(self) {
        if let Some(done) = self.done {
            done.store(true, Ordering::Relaxed);
        }
    }
}
