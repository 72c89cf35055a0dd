//! `witbox runner build`: the Python runner with the manifest's `[runner] packages`.

use crate::context::Context;
use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use std::process::ExitCode;
use witbox::packages::{self, BuildOptions};
use witbox::python::Overrides;

/// `witbox runner`'s commands.
#[derive(Subcommand, Debug)]
pub enum RunnerCommand {
    /// Resolve `[runner] packages` into witbox.lock and build a runner that has them.
    ///
    /// pip resolves the packages (and their dependencies) as wheels only, and only
    /// pure-Python ones (`py3-none-any`): a source distribution would run its build
    /// script on this machine, and compiled code cannot run in the sandbox. The exact
    /// versions and sha256 hashes go to `witbox.lock` beside the manifest (check it in);
    /// a later build installs exactly those, and fails if a download differs.
    /// componentize-py then builds the runner with the packages and their submodules
    /// imported, and the runner is compiled into the cache, so the first session
    /// starts at once. `witbox run`, `repl` and `mcp` use it from then on.
    ///
    /// Example manifest:
    ///   [runner]
    ///   packages = ["sympy==1.14.0", "python-dateutil==2.9.0.post0"]
    #[command(verbatim_doc_comment)]
    Build(BuildArgs),
}

/// `witbox runner build`'s arguments.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Fail if witbox.lock is missing or not for the manifest's packages, instead of writing it (for CI).
    #[arg(long)]
    locked: bool,
    /// Resolve again (newer versions within the requirements), even if witbox.lock is up to date.
    #[arg(long, conflicts_with = "locked")]
    update: bool,
}

impl RunnerCommand {
    pub async fn execute(self, cx: &Context) -> Result<ExitCode> {
        let Self::Build(args) = self;
        let manifest = cx.manifest()?;
        let options = BuildOptions {
            locked: args.locked,
            update: args.update,
            componentize_py: None,
        };
        let built = packages::build(&manifest, &manifest.runner, &options, &mut |line| {
            eprintln!("[witbox] {line}")
        })?;
        if built.wrote_lock {
            eprintln!(
                "[witbox] wrote {}",
                packages::lock_path(&manifest).display()
            );
        }
        println!(
            "{:<24} {:<14} {:<16} {:<14} {:>10}",
            "package", "version", "license", "sha256", "size"
        );
        for (i, p) in built.lock.packages.iter().enumerate() {
            let size = built
                .sizes
                .get(i)
                .map_or_else(|| "-".to_string(), |b| format!("{:.1} MB", *b as f64 / 1e6));
            println!(
                "{:<24} {:<14} {:<16} {:<14} {:>10}",
                p.name,
                p.version,
                if p.license.is_empty() {
                    "?"
                } else {
                    witbox::text::head(&p.license, 16)
                },
                format!("{}…", &p.sha256[..12.min(p.sha256.len())]),
                size
            );
        }
        let bytes = std::fs::metadata(&built.path).map(|m| m.len()).unwrap_or(0);
        if built.up_to_date {
            println!(
                "\nthe runner is up to date: {} ({:.1} MB)",
                built.path.display(),
                bytes as f64 / 1e6
            );
        } else {
            println!(
                "\nbuilt {} ({:.1} MB)",
                built.path.display(),
                bytes as f64 / 1e6
            );
        }
        // Compiled now (and kept in the cache), the first session starts at once.
        eprintln!("[witbox] compiling the runner into the cache");
        witbox::Runner::for_one_session(&manifest, cx.options.clone(), &Overrides::default())
            .context("the runner was built but does not load")?;
        Ok(ExitCode::SUCCESS)
    }
}
