//! The wasmtime engine: configuration (pooling allocator, epoch interruption,
//! fuel) and the epoch ticker that enforces wall-time limits. Compiling, and the
//! on-disk cache of compiled components, is `cache.rs`.

use anyhow::Result;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use crate::cache::{DEFAULT_CACHE_MAX_BYTES, default_cache_dir};
pub use crate::limits::TICK;

/// Options that change how components are compiled or run.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Compile with fuel metering, so policies may set `fuel` (about 30% slower code).
    pub fuel: bool,
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// The most bytes of compiled components the cache folder keeps (0: 2 GiB,
    /// [`crate::cache::DEFAULT_CACHE_MAX_BYTES`]). Past it, writing a new one
    /// removes those used longest ago.
    pub cache_max_bytes: u64,
    /// Fill every function table when an instance is made, instead of each entry
    /// on its first use. For the Python runner: CPython calls through function
    /// pointers everywhere, and a fresh instance's first cell otherwise spends
    /// ~2 ms (of ~5) initialising entries one lookup at a time.
    pub eager_tables: bool,
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
    pub(crate) engine: wasmtime::Engine,
    pub(crate) options: EngineOptions,
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
        config.table_lazy_init(!options.eager_tables);
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
            .table_elements(crate::limits::MAX_TABLE_ELEMENTS)
            // A freed memory slot keeps the pages it dirtied in its first 16 MiB
            // resident: PAGEMAP_SCAN (Linux 6.7+) finds them (at most 32 runs of
            // them), only those are copied back from the image, and the rest is
            // decommitted, so an idle slot holds only what its last instance wrote.
            // Copying back the whole 16 MiB instead (no scan) saves the next
            // instance the faults of the pages the scan missed, but it made every
            // page of those 16 MiB the slot's own: 16 MiB kept per slot ever used
            // (827 MiB after 50 Python sessions closed, 57 MiB with the scan), and
            // a 16 MiB copy per freed instance: fewer fresh Python sandboxes per
            // second on one thread, as many on two (docs/internals.md, Bench).
            .linear_memory_keep_resident(16 << 20)
            .table_keep_resident(1 << 20)
            .pagemap_scan(wasmtime::Enabled::Auto);
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
