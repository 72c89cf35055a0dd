//! The wasmtime engine: configuration, the epoch ticker that enforces wall-time
//! limits, and the on-disk cache of compiled components.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::Component;
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; wall-time limits are enforced at this granularity.
pub const TICK: Duration = Duration::from_millis(10);

/// Options that change how components are compiled or run.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Compile with fuel metering, so policies may set `fuel` (about 30% slower code).
    pub fuel: bool,
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Reset a freed memory slot by copying back its whole resident part, instead
    /// of scanning for the pages that were written. For big, scattered heaps (the
    /// Python runner): the scan keeps at most 32 runs of pages, and every page it
    /// misses is a copy-on-write fault in the next instance, each a TLB shootdown
    /// when other threads run. For small tools the scan is cheaper.
    pub full_reset: bool,
    /// How many component instances may be alive at once (0: 1000). The pool's
    /// stacks, memories and tables are reserved up front for this many.
    pub max_instances: u32,
    /// The most native stack one call's wasm code may use (0: wasmtime's 512 KiB).
    pub max_wasm_stack: usize,
    /// Where every tool call and code run is recorded, if anywhere.
    pub audit: Option<std::sync::Arc<crate::audit::AuditLog>>,
}

/// A configured wasmtime engine with its epoch ticker.
#[derive(Clone)]
pub struct Engine {
    engine: wasmtime::Engine,
    options: EngineOptions,
    _ticker: Arc<Ticker>,
}

impl Engine {
    /// Builds the engine: pooling allocator, epoch interruption, fuel if asked.
    pub fn new(options: EngineOptions) -> Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.consume_fuel(options.fuel);
        config.wasm_component_model(true);
        config.parallel_compilation(true);
        if options.max_wasm_stack > 0 {
            config.max_wasm_stack(options.max_wasm_stack);
            // Host functions the guest calls run on the same fiber stack, above its
            // wasm frames: keep at least wasmtime's default room (1.5 MiB) for them.
            config.async_stack_size(options.max_wasm_stack + (2 << 20));
        }
        let mut pool = PoolingAllocationConfig::new();
        // A componentize-py component holds a dozen core instances and two tables;
        // a tool, one or two of each.
        let (n, core, tables) = match options.max_instances {
            0 => (1000, 2000, 2000),
            n => (n, 16 * n, 4 * n),
        };
        pool.total_component_instances(n)
            .total_core_instances(core)
            .total_memories(n)
            .total_tables(tables)
            .total_stacks(n)
            .max_memory_size(4 << 30)
            .max_tables_per_module(4)
            .max_memories_per_module(1)
            .max_core_instance_size(8 << 20)
            .max_component_instance_size(8 << 20)
            .table_elements(100_000)
            // A freed memory slot keeps the pages it dirtied in its first 16 MiB
            // resident: with PAGEMAP_SCAN (Linux 6.7+) only those are restored, so
            // the next instance in the slot starts without page faults or madvise.
            // Bounded: 16 MiB per slot ever used.
            .linear_memory_keep_resident(16 << 20)
            .table_keep_resident(1 << 20)
            .pagemap_scan(if options.full_reset {
                wasmtime::Enabled::No
            } else {
                wasmtime::Enabled::Auto
            });
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = wasmtime::Engine::new(&config).map_err(anyhow::Error::from)?;
        let ticker = Ticker::start(engine.clone());
        Ok(Self {
            engine,
            options,
            _ticker: Arc::new(ticker),
        })
    }

    /// The wasmtime engine.
    pub fn inner(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// The options it was built with.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Whether fuel metering is compiled in.
    pub fn fuel_enabled(&self) -> bool {
        self.options.fuel
    }

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
        let index = self.options.cache_dir.as_ref().and_then(|dir| {
            let meta = std::fs::metadata(path).ok()?;
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
            Some(dir.join("by-file").join(hex16(&h.finalize())))
        });
        if let Some(index) = &index
            && let Ok(key) = std::fs::read_to_string(index)
            && let Some(dir) = &self.options.cache_dir
            && let Ok(Some(c)) = self.cached(dir, key.trim())
        {
            return Ok(c);
        }
        let bytes =
            std::fs::read(path).with_context(|| format!("failed to read `{}`", path.display()))?;
        let (component, key) = self.compile_keyed(name, &bytes)?;
        if let (Some(index), Some(key)) = (index, key) {
            let _ = std::fs::create_dir_all(index.parent().expect("index has a folder"))
                .and_then(|()| std::fs::write(&index, key));
        }
        Ok(component)
    }

    fn compile_keyed(&self, name: &str, wasm: &[u8]) -> Result<(Component, Option<String>)> {
        check_is_component(wasm)?;
        let Some(dir) = &self.options.cache_dir else {
            return Ok((self.compile_now(name, wasm)?, None));
        };
        let key = self.cache_key(wasm);
        match self.cached(dir, &key) {
            Ok(Some(c)) => return Ok((c, Some(key))),
            Ok(None) => {}
            Err(e) => eprintln!("witbox: ignoring stale cache entry `{key}.cwasm`: {e:#}"),
        }
        let component = self.compile_now(name, wasm)?;
        let path = dir.join(format!("{key}.cwasm"));
        if let Err(e) = write_cache(&path, &component) {
            eprintln!(
                "witbox: could not cache `{name}` in `{}`: {e:#}",
                dir.display()
            );
        }
        Ok((component, Some(key)))
    }

    /// The compiled component cached under `key`: `None` if there is none,
    /// an error if the file is there but does not fit this engine.
    fn cached(&self, dir: &Path, key: &str) -> Result<Option<Component>> {
        let path = dir.join(format!("{key}.cwasm"));
        if !path.exists() {
            return Ok(None);
        }
        // SAFETY: the file was written by `Component::serialize` (`write_cache`), into
        // witbox's own cache folder, and wasmtime checks that it matches this engine.
        unsafe { Component::deserialize_file(&self.engine, &path) }
            .map(Some)
            .map_err(anyhow::Error::from)
    }

    fn compile_now(&self, name: &str, wasm: &[u8]) -> Result<Component> {
        let progress = Progress::start(name, wasm.len());
        let result = Component::new(&self.engine, wasm);
        progress.finish();
        result.map_err(anyhow::Error::from)
    }

    /// The wasm's SHA-256 plus a hash of everything in the engine that changes compiled code
    /// (wasmtime version, target, fuel, epochs, ...).
    fn cache_key(&self, wasm: &[u8]) -> String {
        format!("{}-{:016x}", hex16(&Sha256::digest(wasm)), self.compat())
    }

    /// A hash of everything in the engine that changes compiled code.
    fn compat(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        h.finish()
    }
}

/// The first 16 bytes of a digest, in hex.
fn hex16(digest: &[u8]) -> String {
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
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

fn write_cache(path: &Path, component: &Component) -> Result<()> {
    let dir = path.parent().context("cache path has no folder")?;
    std::fs::create_dir_all(dir).context("failed to create the cache folder")?;
    let bytes = component.serialize().map_err(anyhow::Error::from)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).context("failed to write the cache file")?;
    std::fs::rename(&tmp, path).context("failed to move the cache file in place")?;
    Ok(())
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

/// Advances the engine's epoch every [`TICK`] until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: wasmtime::Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("witbox-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .expect("failed to start the epoch ticker thread");
        Self { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
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
                eprintln!(
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
