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
    /// Host folders the component sees. Example: `[{ host = "data", guest = "/data", mode = "ro" }]`.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// Tools the component may call through `host.call-tool`; `*` globs allowed.
    /// Example: `["quadratic_*"]`.
    #[serde(default)]
    pub call_tools: Vec<String>,
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
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allow_http: Vec::new(),
            env: BTreeMap::new(),
            dirs: Vec::new(),
            call_tools: Vec::new(),
            memory_mb: defaults::memory_mb(),
            timeout_ms: defaults::timeout_ms(),
            max_output_bytes: defaults::max_output_bytes(),
            fuel: 0,
        }
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
        let text = std::fs::read_to_string(path)
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
            let p = &c.policy;
            crate::net::AllowList::parse(&p.allow_http)
                .with_context(|| format!("component `{}`: invalid `allow-http`", c.name))?;
            if p.memory_mb == 0 || p.timeout_ms == 0 || p.max_output_bytes == 0 {
                bail!(
                    "component `{}`: `memory-mb`, `timeout-ms` and `max-output-bytes` must be above 0",
                    c.name
                );
            }
            for d in &p.dirs {
                if !d.guest.starts_with('/') {
                    bail!(
                        "component `{}`: the guest path `{}` of a dir must be absolute",
                        c.name,
                        d.guest
                    );
                }
            }
        }
        Ok(())
    }

    /// A path from the manifest, resolved against its folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }
}

fn check_name(name: &str) -> Result<()> {
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
