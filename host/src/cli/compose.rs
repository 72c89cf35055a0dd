//! `witbox compose SOCKET --plug PLUG... -o OUT`: static composition, as `wac plug`.

use crate::context::Context;
use anyhow::{Context as _, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `witbox compose`'s arguments.
#[derive(Args, Debug)]
pub struct ComposeCommand {
    /// The component whose imports are satisfied.
    socket: PathBuf,
    /// A component whose exports satisfy them (repeatable).
    #[arg(long = "plug", required = true, value_name = "PLUG")]
    plugs: Vec<PathBuf>,
    /// Where to write the composed component.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
}

impl ComposeCommand {
    pub async fn execute(self, _cx: &Context) -> Result<ExitCode> {
        let plugs: Vec<&Path> = self.plugs.iter().map(PathBuf::as_path).collect();
        let bytes = witbox::compose::plug(&self.socket, &plugs)?;
        let output = &self.output;
        std::fs::write(output, &bytes)
            .with_context(|| format!("failed to write `{}`", output.display()))?;
        eprintln!(
            "wrote `{}` ({} bytes); `witbox check {}` shows its tools",
            output.display(),
            bytes.len(),
            output.display()
        );
        Ok(ExitCode::SUCCESS)
    }
}
