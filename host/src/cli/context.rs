//! What every command gets: the global flags, read once.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use witbox::{EngineOptions, Manifest};

/// Flags every command takes.
#[derive(Args, Debug)]
pub struct GlobalFlags {
    /// The manifest listing the components and their policies.
    #[arg(
        long,
        global = true,
        default_value = "witbox.toml",
        env = "WITBOX_MANIFEST"
    )]
    manifest: PathBuf,
    /// Append one JSON line per tool call and code run to FILE: time, caller, tool,
    /// a keyed digest of the arguments, duration, fuel, peak memory, outcome and error kind.
    #[arg(long, global = true, value_name = "FILE", env = "WITBOX_AUDIT_LOG")]
    audit_log: Option<PathBuf>,
    /// Do not read or write the compiled-component cache (`~/.cache/witbox`, or `$WITBOX_CACHE_DIR`).
    #[arg(long, global = true)]
    no_cache: bool,
}

/// The global flags, made ready: the manifest's path and the engine options.
pub struct Context {
    /// Where the manifest is.
    pub manifest_path: PathBuf,
    /// The engine options every load uses (cache, audit log).
    pub options: EngineOptions,
}

impl Context {
    /// Opens the audit log and finds the cache.
    pub fn new(flags: GlobalFlags) -> Result<Self> {
        let audit = match &flags.audit_log {
            Some(path) => Some(Arc::new(witbox::audit::AuditLog::open(path)?)),
            None => None,
        };
        Ok(Self {
            manifest_path: flags.manifest,
            options: EngineOptions {
                cache_dir: if flags.no_cache {
                    None
                } else {
                    witbox::engine::default_cache_dir()
                },
                cache_max_bytes: cache_max_bytes()?,
                audit,
                ..Default::default()
            },
        })
    }

    /// Reads and checks the manifest.
    pub fn manifest(&self) -> Result<Manifest> {
        Manifest::load(&self.manifest_path)
    }
}

/// `$WITBOX_CACHE_MAX_MB`, in bytes; 0 (the default size) when it is not set.
fn cache_max_bytes() -> Result<u64> {
    let Some(value) = std::env::var_os("WITBOX_CACHE_MAX_MB") else {
        return Ok(0);
    };
    let text = value.to_string_lossy();
    match text.trim().parse::<u64>() {
        Ok(mb) if mb > 0 && mb <= 1 << 30 => Ok(mb << 20),
        _ => anyhow::bail!(
            "invalid WITBOX_CACHE_MAX_MB `{text}`: give the most MiB the compile cache may keep, for example 4096"
        ),
    }
}
