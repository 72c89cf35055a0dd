//! Every limit witbox enforces, with its reason, in one place: the numbers, the
//! ranges a policy may set, the memory limiter, [`arm`] (a call's run slot,
//! deadline and fuel) and [`classify`] (what a wasmtime error means).
//!
//! Tool calls and Python runs both arm and classify through this module, so a
//! limit means the same on every path.

use crate::manifest::Policy;
use crate::schedule::Admission;
use crate::store::State;
use anyhow::{Context, Result, bail};
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;
use wasmtime::{ResourceLimiter, Store, Trap};

/// How often the epoch advances: wall-time limits hold to within one tick, and a
/// cancelled call stops within one.
pub const TICK: Duration = Duration::from_millis(10);

/// How deep tools may call tools (A calls B calls C ...): deep enough for tools
/// built on tools, shallow enough that a cycle of grants ends quickly.
pub const MAX_CALL_DEPTH: u32 = 4;

/// The tool instances a one-caller registry (`witbox call`, `run`, `repl`) keeps
/// room for: one call chain is at most [`MAX_CALL_DEPTH`] deep, one instance a
/// level, with room to spare. A server's registry keeps room for a crowd.
pub const ONE_CALLER_INSTANCES: u32 = 4 * MAX_CALL_DEPTH;

/// Code longer than this is refused before it reaches the interpreter: a cell an
/// agent writes is kilobytes; a megabyte is a mistake or an attack.
pub const MAX_CODE_BYTES: usize = 1 << 20;

/// Tool arguments (JSON text from a guest's `call-tool`, the CLI or a client)
/// longer than this are refused before they are parsed. Large enough for a
/// multi-megabyte string argument, which the tool's schema then judges.
pub const MAX_ARGS_BYTES: usize = 8 << 20;

/// A tool name a guest passes to `call-tool` longer than this is refused before
/// it is copied: no tool's name is longer than 64 bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// The largest MCP message (one stdio line, one HTTP request body) the server
/// reads: 8 MiB. A message is held whole in memory while it is parsed, so the cap
/// bounds what one client can make the server hold per message. It is well above
/// what a legitimate call needs: `run_python` code is refused over
/// [`MAX_CODE_BYTES`] (1 MiB) anyway, and as JSON
/// escapes a byte into at most 6 (`\u0001`), code just over that limit is at
/// most about 6 MiB on the wire: it gets that tool-level error, not this one.
/// A 4 MB string argument still reaches the tool and its own checks.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// A refusal from the runner itself (a cell it would not run) is cut to this.
pub const MAX_RUNNER_MESSAGE: usize = 1000;

/// An exception type's name longer than this is cut: names are for reading.
pub const MAX_TYPE_NAME: usize = 200;

/// A `log` line from a guest is cut to this many bytes (after redaction): logs
/// are for people, and one line must not flood the host's stderr.
pub const MAX_LOG_BYTES: usize = 1000;

/// How much of a crashed guest's stderr its error message keeps (the end, where
/// a panic message is).
pub const CRASH_STDERR_BYTES: usize = 2000;

/// Component files larger than this are refused before they are read: the
/// Python runner is 25 MB; a file of gigabytes would be held in memory whole.
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// Manifests larger than this are refused before they are read.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// A guest's tables may not grow past this many elements (each costs host memory
/// outside `memory-mb`, and the pooling allocator reserves this many for each
/// table slot). The Python runner starts with about 5,700.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// `memory-mb`: at least 1 MiB; at most 4 GiB, the size of a memory slot in the
/// pooling allocator (wasm32 cannot address more).
pub const MEMORY_MB: RangeInclusive<u64> = 1..=4096;

/// `timeout-ms`: at most a day. A longer call is a mistake, and deadlines are
/// computed as `now + timeout`, which must not overflow.
pub const TIMEOUT_MS: RangeInclusive<u64> = 1..=86_400_000;

/// `max-output-bytes`: at most 1 GiB. Output is held in host memory until the
/// call ends.
pub const MAX_OUTPUT_BYTES: RangeInclusive<u64> = 1..=(1 << 30);

/// `max-sessions`: every session (and a warm instance for each, and a restart in
/// flight) is a pooled memory slot whose 4 GiB of address space is reserved up
/// front; 1024 sessions reserve about 8 TiB of the 128 TiB a process has.
pub const MAX_SESSIONS: RangeInclusive<u64> = 1..=1024;

/// `quota-mb` of a granted folder: at most 1 TiB (the count is in bytes, in a u64).
pub const QUOTA_MB: RangeInclusive<u64> = 1..=(1 << 20);

/// The most bytes a session's checkpoint may take (the runner leaves every
/// global out, and says so, past it): it is kept in host memory per session.
pub const MAX_CHECKPOINT_BYTES: usize = 16 << 20;

/// The most PNG images one run of the data runner hands to an MCP client (each
/// at most [`crate::python::MAX_FILE_BYTES`]): a result stays a few MiB.
pub const MAX_IMAGES: usize = 4;

/// The most `not_restored` lines a restart reports.
pub const MAX_NOT_RESTORED: usize = 100;

/// `scratch-mb` of a session: 0 (no files) to 1 TiB, as `quota-mb`.
pub const SCRATCH_MB: RangeInclusive<u64> = 0..=(1 << 20);

/// `session-ttl-s`: at most a week.
pub const SESSION_TTL_S: RangeInclusive<u64> = 1..=604_800;

/// The native stack a Python run may use. CPython 3.14 ends deep C recursion
/// (`repr`, `==`, `json`, `pickle`, the compiler) with a `RecursionError` when the
/// stack it sees, the 1 MiB shadow stack in linear memory, is nearly full. The
/// same calls compiled by Cranelift take up to 30 times more native stack (a
/// nested `json.loads` needs 28-32 MiB before Python's check fires), so with
/// wasmtime's default of 512 KiB the wasm stack ran out first and trapped the
/// instance. This is twice the worst case measured; a wasm stack is reserved, not
/// committed, so only a run that recurses this deep touches it.
pub const PYTHON_WASM_STACK: usize = 64 << 20;

/// Checks that a manifest number is in its range; the error names the key.
pub fn check_range(key: &str, value: u64, range: &RangeInclusive<u64>) -> Result<()> {
    if !range.contains(&value) {
        let (low, high) = (range.start(), range.end());
        if *low == 1 {
            bail!("`{key}` must be above 0 and at most {high}, got {value}");
        }
        bail!("`{key}` must be between {low} and {high}, got {value}");
    }
    Ok(())
}

/// Reads a file a user named: refused unless it is a regular file (a FIFO would
/// block the host, a device may never end) of at most `max` bytes.
pub fn read_file(path: &Path, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    // Checked before it is opened: opening a FIFO blocks until a writer comes.
    let meta =
        std::fs::metadata(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    check_regular(path, &meta, max)?;
    let file = std::fs::File::open(path)
        .with_context(|| format!("failed to open `{}`", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    check_regular(path, &meta, max)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // `take`: a file that grows while it is read still stops at the cap.
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    if bytes.len() as u64 > max {
        bail!(
            "`{}` is larger than the limit of {max} bytes",
            path.display()
        );
    }
    Ok(bytes)
}

/// Writes a file another process may read at any moment (a compiled component in
/// the cache, a snapshot, a session in a state dir): beside `path` under a name of
/// its own first, then moved into place, so no reader sees half of one.
pub fn write_aside(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let aside = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let written = std::fs::write(&aside, bytes).and_then(|()| std::fs::rename(&aside, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&aside);
    }
    written
}

/// Refuses what is not a regular file, or is larger than `max` bytes.
pub fn check_regular(path: &Path, meta: &std::fs::Metadata, max: u64) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        ""
    };
    if !what.is_empty() {
        bail!("`{}` is {what}, not a regular file", path.display());
    }
    if meta.len() > max {
        bail!(
            "`{}` is {} bytes, more than the limit of {max} bytes",
            path.display(),
            meta.len()
        );
    }
    Ok(())
}

/// The limits of one call (or one run of a Python session), from a checked policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Linear memory cap in bytes (`memory-mb`).
    pub memory_bytes: usize,
    /// Wall time per call (`timeout-ms`).
    pub timeout: Duration,
    /// Output and result cap in bytes (`max-output-bytes`).
    pub max_output: usize,
    /// Fuel per call; 0 = unlimited (`fuel`).
    pub fuel: u64,
    /// Tool calls per call or run (`max-tool-calls`).
    pub max_tool_calls: u32,
}

impl Limits {
    /// The limits a policy sets; an error names the first key out of its range.
    pub fn new(policy: &Policy) -> Result<Self> {
        check_range("memory-mb", policy.memory_mb, &MEMORY_MB)?;
        check_range("timeout-ms", policy.timeout_ms, &TIMEOUT_MS)?;
        check_range(
            "max-output-bytes",
            policy.max_output_bytes,
            &MAX_OUTPUT_BYTES,
        )?;
        Ok(Self {
            // In range, so neither the shift nor the casts can overflow.
            memory_bytes: (policy.memory_mb << 20) as usize,
            timeout: Duration::from_millis(policy.timeout_ms),
            max_output: policy.max_output_bytes as usize,
            fuel: policy.fuel,
            max_tool_calls: policy.max_tool_calls,
        })
    }

    /// The memory cap in MiB, for messages.
    pub fn memory_mb(&self) -> usize {
        self.memory_bytes >> 20
    }
}

/// Caps linear memory and remembers whether the cap was hit, so a crash that
/// follows a refused allocation is reported as `memory`, not as a generic trap.
pub struct Memory {
    memory_bytes: usize,
    /// Whether a memory grow was refused since the call began.
    pub hit: bool,
    /// The largest linear memory allowed so far, in bytes.
    pub peak: usize,
}

impl Memory {
    /// A limiter for `memory_bytes` of linear memory.
    pub fn new(memory_bytes: usize) -> Self {
        Self {
            memory_bytes,
            hit: false,
            peak: 0,
        }
    }
}

impl ResourceLimiter for Memory {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// A call whose limits are running: what [`arm`] started.
pub struct Armed {
    /// The fuel the call started with, when the policy meters fuel.
    budget: Option<u64>,
}

impl Armed {
    /// The fuel the call used, when the policy meters fuel.
    pub fn fuel_used(&self, store: &Store<State>) -> Option<u64> {
        let budget = self.budget?;
        Some(budget - store.get_fuel().ok()?)
    }
}

/// Starts one call's limits on `store`: it holds `admission` (its run slot), its
/// deadline is `timeout` from now (after the wait for the slot, so a crowd does
/// not eat the call's time), its per-call counters start at zero, and its fuel
/// is `limits.fuel` (unlimited when 0).
pub fn arm(
    store: &mut Store<State>,
    admission: Admission,
    limits: &Limits,
    timeout: Duration,
) -> Result<Armed> {
    store.data_mut().begin_call(timeout, admission);
    // With epoch interruption on, a store traps at once unless it has a deadline;
    // the store's callback (see `store.rs`) yields at every tick until `timeout`.
    store.set_epoch_deadline(1);
    // `get_fuel` fails exactly when the engine was built without fuel metering.
    if store.get_fuel().is_err() {
        return Ok(Armed { budget: None });
    }
    let budget = if limits.fuel > 0 {
        limits.fuel
    } else {
        u64::MAX
    };
    store.set_fuel(budget).map_err(anyhow::Error::from)?;
    Ok(Armed {
        budget: (limits.fuel > 0).then_some(budget),
    })
}

/// Which limit a failed call hit, or what crashed it.
#[derive(Debug, Clone, PartialEq)]
pub enum Hit {
    /// Past its deadline (`timeout-ms`).
    Timeout,
    /// Out of fuel (`fuel`).
    Fuel,
    /// A memory grow past `memory-mb` was refused, and the guest died of it.
    Memory,
    /// The guest's native stack ran out (deep recursion its code does not guard).
    StackOverflow,
    /// Anything else: the trap (or the host error) in words.
    Crash(String),
}

/// What a wasmtime error from instantiating or calling a guest means. The trap
/// codes of the limits win: a guest that hit its memory cap, caught that, and
/// then spun until its deadline timed out.
pub fn classify(error: &wasmtime::Error, memory_hit: bool) -> Hit {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Hit::Timeout,
        Some(Trap::OutOfFuel) => Hit::Fuel,
        _ if memory_hit => Hit::Memory,
        Some(Trap::StackOverflow) => Hit::StackOverflow,
        // The trap itself (not the whole wasm backtrace), or the host's own error.
        Some(trap) => Hit::Crash(trap.to_string()),
        None => Hit::Crash(error.root_cause().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_out_of_range_name_their_key() {
        let policy = Policy {
            memory_mb: 17_592_186_044_416,
            ..Policy::default()
        };
        assert_eq!(
            Limits::new(&policy).unwrap_err().to_string(),
            "`memory-mb` must be above 0 and at most 4096, got 17592186044416"
        );
        let policy = Policy {
            max_output_bytes: u64::MAX,
            ..Policy::default()
        };
        assert_eq!(
            Limits::new(&policy).unwrap_err().to_string(),
            "`max-output-bytes` must be above 0 and at most 1073741824, got 18446744073709551615"
        );
        let limits = Limits::new(&Policy::default()).unwrap();
        assert_eq!(limits.memory_mb(), 128);
    }

    #[test]
    fn limit_traps_win_over_a_memory_hit() {
        let interrupt = wasmtime::Error::from(Trap::Interrupt);
        assert_eq!(classify(&interrupt, true), Hit::Timeout);
        let fuel = wasmtime::Error::from(Trap::OutOfFuel);
        assert_eq!(classify(&fuel, false), Hit::Fuel);
        let unreachable = wasmtime::Error::from(Trap::UnreachableCodeReached);
        assert_eq!(classify(&unreachable, true), Hit::Memory);
        assert!(matches!(classify(&unreachable, false), Hit::Crash(_)));
    }
}
