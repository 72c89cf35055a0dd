//! `witbox new tool NAME` and `witbox build [DIR]`: start a tool from a template, build it.

use crate::context::Context;
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use witbox::scaffold::Template;

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
        /// `rust` (wit-bindgen, wasm32-wasip2) or `python` (componentize-py); the
        /// default is `rust`, or `python` with `--http`.
        #[arg(long, value_parser = ["rust", "python"])]
        lang: Option<String>,
        /// The folder to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Instead of the greeting, a Python tool `NAME_get` that fetches a URL with
        /// `requests` over `wasi:http` (its `requirements.txt` has `requests` and
        /// `requests-wasi-http`; its `witbox.toml` must grant the origins in `allow-http`).
        #[arg(long)]
        http: bool,
    },
}

impl NewCommand {
    pub async fn execute(self, _cx: &Context) -> Result<ExitCode> {
        let Self::Tool {
            name,
            lang,
            dir,
            http,
        } = self;
        let template = Template {
            lang: lang
                .as_deref()
                .unwrap_or(if http { "python" } else { "rust" })
                .parse()?,
            http,
        };
        let root = witbox::scaffold::new_tool(&name, template, &dir)?;
        let shown = root.display();
        let tool = format!("{}_{}", name.replace('-', "_"), template.function());
        let grant = if http {
            format!(
                "  (grant the origins it may reach first: `allow-http = [\"https://example.com\"]` in {shown}/witbox.toml)\n"
            )
        } else {
            String::new()
        };
        println!(
            "made `{shown}`: wit/world.wit (the tool's contract and docs), {}{}, witbox.toml\n\nnext:\n  witbox build {shown}\n{grant}  witbox --manifest {shown}/witbox.toml call {tool} '{}'",
            template.code_file(),
            if http { ", requirements.txt" } else { "" },
            template.example_args(),
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
