//! `witbox check PATH`: is this file a loadable agent-tool component, and which tools would it give.

use crate::context::Context;
use anyhow::{Context as _, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use witbox::Registry;

/// `witbox check`'s arguments.
#[derive(Args, Debug)]
pub struct CheckCommand {
    /// The `.wasm` component file.
    path: PathBuf,
    /// Print the tools as JSON.
    #[arg(long)]
    json: bool,
}

impl CheckCommand {
    pub async fn execute(self, cx: &Context) -> Result<ExitCode> {
        let path = &self.path;
        let registry = Registry::check_file(path, cx.options.clone()).with_context(|| {
            format!("`{}` is not a usable agent-tool component", path.display())
        })?;
        if !self.json {
            println!("`{}` is a loadable agent-tool component.\n", path.display());
        }
        crate::tools::print(&registry, self.json)?;
        Ok(ExitCode::SUCCESS)
    }
}
