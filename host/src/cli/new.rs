//! `witbox new tool NAME` and `witbox build [DIR]`: start a tool from a template, build it.

use crate::context::Context;
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use witbox::scaffold::Lang;

/// What `witbox new` makes.
#[derive(Subcommand, Debug)]
pub enum NewCommand {
    /// Write a ready tool: a WIT world that includes `witbox:agent/agent-tool` and
    /// exports one documented function, its code, and a `witbox.toml` entry.
    ///
    /// Then: `witbox build NAME` and
    /// `witbox --manifest NAME/witbox.toml call NAME_greet '{"name": "Ada"}'`.
    Tool {
        /// The tool's name: lower-case letters, digits and `-` (tools are `NAME_<function>`).
        name: String,
        /// `rust` (wit-bindgen, wasm32-wasip2) or `python` (componentize-py).
        #[arg(long, default_value = "rust", value_parser = ["rust", "python"])]
        lang: String,
        /// The folder to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

impl NewCommand {
    pub async fn execute(self, _cx: &Context) -> Result<ExitCode> {
        let Self::Tool { name, lang, dir } = self;
        let lang: Lang = lang.parse()?;
        let root = witbox::scaffold::new_tool(&name, lang, &dir)?;
        let shown = root.display();
        println!(
            "made `{shown}`: wit/world.wit (the tool's contract and docs), {}, witbox.toml\n\nnext:\n  witbox build {shown}\n  witbox --manifest {shown}/witbox.toml call {}_greet '{{\"name\": \"Ada\"}}'",
            if lang == Lang::Rust {
                "src/lib.rs"
            } else {
                "app.py"
            },
            name.replace('-', "_")
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// `witbox build`'s arguments.
#[derive(Args, Debug)]
pub struct BuildCommand {
    /// The tool's folder, as `witbox new tool` made it.
    #[arg(default_value = ".")]
    dir: PathBuf,
}

impl BuildCommand {
    pub async fn execute(self, _cx: &Context) -> Result<ExitCode> {
        let out = witbox::scaffold::build(&self.dir, &mut |cmd| eprintln!("$ {cmd}"))?;
        println!("built `{}`", out.display());
        Ok(ExitCode::SUCCESS)
    }
}
