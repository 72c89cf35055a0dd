//! Process-wide Prometheus metrics (`witbox serve`'s `GET /metrics`): tool calls
//! and Python runs by outcome, their durations, fuel and memory peaks, and
//! gauges read when scraped. Every label value comes from the manifest (a tool
//! is named `<component>_<function>`) or from a fixed set (the outcome kinds):
//! never from a guest or a client, so no one can grow the series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::time::Duration;

/// A tool and how its call ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    tool: String,
    outcome: &'static str,
}

/// A tool.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabel {
    tool: String,
}

/// How a Python run ended, or whether a restore worked.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    outcome: &'static str,
}

/// Whether an open session is running a call (`running`) or not (`idle`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// Why a Python session restarted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RestartLabels {
    reason: &'static str,
}

struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    call_seconds: Family<ToolLabel, Histogram>,
    runs: Family<RunLabels, Counter>,
    run_seconds: Histogram,
    fuel: Counter,
    peak_memory: Histogram,
    checkpoint_bytes: Histogram,
    restores: Family<RunLabels, Counter>,
    restore_seconds: Histogram,
    restarts: Family<RestartLabels, Counter>,
    saves: Family<RunLabels, Counter>,
    save_seconds: Histogram,
    sessions: Family<StateLabel, Gauge>,
    warm_pool: Gauge,
    runs_in_flight: Gauge,
    runs_queued: Gauge,
}

fn seconds() -> Histogram {
    // 50 µs to ~100 s.
    Histogram::new(exponential_buckets(0.000_05, 4.0, 11))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("witbox");
    let calls = Family::<CallLabels, Counter>::default();
    registry.register(
        "tool_calls",
        "Tool calls, by tool (from the manifest) and outcome (`ok` or the error kind)",
        calls.clone(),
    );
    let call_seconds = Family::<ToolLabel, Histogram>::new_with_constructor(seconds as fn() -> _);
    registry.register(
        "tool_call_duration_seconds",
        "How long tool calls took, by tool",
        call_seconds.clone(),
    );
    let runs = Family::<RunLabels, Counter>::default();
    registry.register(
        "python_runs",
        "Python cells run, by outcome: `ok`, `exception` (the cell raised), a limit \
         (`timeout`, `output-limit`, `fuel`, `tool-call-limit`, `memory`), `crash`, or \
         `refused` (the code was not run)",
        runs.clone(),
    );
    let run_seconds = seconds();
    registry.register(
        "python_run_duration_seconds",
        "How long Python cells took",
        run_seconds.clone(),
    );
    let fuel = Counter::default();
    registry.register(
        "fuel_consumed",
        "Fuel used by tool calls and Python runs whose policy meters it",
        fuel.clone(),
    );
    // 64 KiB to 4 GiB.
    let peak_memory = Histogram::new(exponential_buckets(65_536.0, 4.0, 9));
    registry.register(
        "guest_memory_peak_bytes",
        "The largest linear memory each call or run reached",
        peak_memory.clone(),
    );
    // 256 B to 64 MiB.
    let checkpoint_bytes = Histogram::new(exponential_buckets(256.0, 4.0, 10));
    registry.register(
        "checkpoint_bytes",
        "The size of each checkpoint a completed cell made (a cell that changes nothing makes none)",
        checkpoint_bytes.clone(),
    );
    let restores = Family::<RunLabels, Counter>::default();
    registry.register(
        "restores",
        "Checkpoints and snapshots put back into a fresh session, by outcome (`ok`, `failed`)",
        restores.clone(),
    );
    let restore_seconds = seconds();
    registry.register(
        "restore_duration_seconds",
        "How long putting a checkpoint or snapshot back took",
        restore_seconds.clone(),
    );
    let saves = Family::<RunLabels, Counter>::default();
    registry.register(
        "session_saves",
        "Sessions saved to the state dir or the shared store after a call that changed them, by outcome (`ok`, `failed`)",
        saves.clone(),
    );
    let save_seconds = seconds();
    registry.register(
        "session_save_duration_seconds",
        "How long saving a session took (its snapshot, and writing it)",
        save_seconds.clone(),
    );
    let restarts = Family::<RestartLabels, Counter>::default();
    registry.register(
        "session_restarts",
        "Python sessions started again, by reason (`timeout`, `fuel`, `memory`, `crash`, `cancelled`)",
        restarts.clone(),
    );
    let gauge = |registry: &mut Registry, name: &str, help: &str| {
        let g = Gauge::default();
        registry.register(name, help, g.clone());
        g
    };
    let sessions = Family::<StateLabel, Gauge>::default();
    registry.register(
        "python_sessions",
        "Python sessions open in this process, by state (`running` a call, `idle`)",
        sessions.clone(),
    );
    let warm_pool = gauge(
        &mut registry,
        "warm_pool_instances",
        "Fresh Python instances ready in the warm pool",
    );
    let runs_in_flight = gauge(
        &mut registry,
        "run_slots_busy",
        "Top-level calls and runs holding a run slot",
    );
    let runs_queued = gauge(
        &mut registry,
        "run_slots_waiting",
        "Top-level calls and runs waiting for a run slot",
    );
    Metrics {
        registry,
        calls,
        call_seconds,
        runs,
        run_seconds,
        fuel,
        peak_memory,
        checkpoint_bytes,
        restores,
        restore_seconds,
        restarts,
        saves,
        save_seconds,
        sessions,
        warm_pool,
        runs_in_flight,
        runs_queued,
    }
});

/// Counts a tool call: `tool` is a loaded tool's name (or `(unknown)`), `outcome`
/// `ok` or an [`crate::ErrorKind`]'s name.
pub(crate) fn call(
    tool: &str,
    outcome: &'static str,
    took: Duration,
    fuel: Option<u64>,
    peak: usize,
) {
    let m = &*METRICS;
    let tool = tool.to_string();
    m.calls
        .get_or_create(&CallLabels {
            tool: tool.clone(),
            outcome,
        })
        .inc();
    m.call_seconds
        .get_or_create(&ToolLabel { tool })
        .observe(took.as_secs_f64());
    used(fuel, peak);
}

/// Counts a Python run; `outcome` is one of the fixed names in the help text.
pub(crate) fn run(outcome: &'static str, took: Duration, fuel: Option<u64>, peak: usize) {
    let m = &*METRICS;
    m.runs.get_or_create(&RunLabels { outcome }).inc();
    m.run_seconds.observe(took.as_secs_f64());
    used(fuel, peak);
}

/// Counts a checkpoint of `bytes`.
pub(crate) fn checkpoint(bytes: usize) {
    METRICS.checkpoint_bytes.observe(bytes as f64);
}

/// Counts a restore (of a checkpoint or a snapshot) that took `took`.
pub(crate) fn restore(ok: bool, took: Duration) {
    let m = &*METRICS;
    let outcome = if ok { "ok" } else { "failed" };
    m.restores.get_or_create(&RunLabels { outcome }).inc();
    m.restore_seconds.observe(took.as_secs_f64());
}

/// Counts a session saved to the state dir or the store, which took `took`.
pub(crate) fn save(ok: bool, took: Duration) {
    let m = &*METRICS;
    let outcome = if ok { "ok" } else { "failed" };
    m.saves.get_or_create(&RunLabels { outcome }).inc();
    m.save_seconds.observe(took.as_secs_f64());
}

/// Counts a session restart.
pub(crate) fn restart(reason: &'static str) {
    METRICS
        .restarts
        .get_or_create(&RestartLabels { reason })
        .inc();
}

fn used(fuel: Option<u64>, peak: usize) {
    let m = &*METRICS;
    if let Some(fuel) = fuel {
        m.fuel.inc_by(fuel);
    }
    if peak > 0 {
        m.peak_memory.observe(peak as f64);
    }
}

/// What the gauges read when the metrics are scraped.
#[derive(Debug, Default, Clone, Copy)]
pub struct Now {
    /// Open Python sessions running a call.
    pub running: usize,
    /// Open Python sessions between calls.
    pub idle: usize,
    /// Instances in the warm pool.
    pub warm_pool: usize,
}

/// The metrics in the OpenMetrics text format (which Prometheus reads), with the
/// gauges set from `now` and the run slots.
pub fn encode(now: Now) -> String {
    let m = &*METRICS;
    let (busy, waiting) = crate::schedule::occupancy();
    let state = |state| StateLabel { state };
    m.sessions
        .get_or_create(&state("running"))
        .set(now.running as i64);
    m.sessions
        .get_or_create(&state("idle"))
        .set(now.idle as i64);
    m.warm_pool.set(now.warm_pool as i64);
    m.runs_in_flight.set(busy as i64);
    m.runs_queued.set(waiting as i64);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &m.registry)
        .expect("writing to a String does not fail");
    text
}
