//! `witbox tools`: every tool with its description and JSON Schema.

use crate::context::Context;
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;
use witbox::Registry;

/// `witbox tools`' arguments.
#[derive(Args, Debug)]
pub struct ToolsCommand {
    /// Print one JSON array instead of text.
    #[arg(long)]
    json: bool,
}

impl ToolsCommand {
    pub async fn execute(self, cx: &Context) -> Result<ExitCode> {
        let registry = Registry::load(&cx.manifest()?, cx.options.clone())?;
        print(&registry, self.json)?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Prints the tools as text (name, indented description, schema) or as JSON.
pub fn print(registry: &Registry, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(registry.tools())?);
        return Ok(());
    }
    for tool in registry.tools() {
        println!("{}", tool.name);
        for line in tool.description.lines() {
            println!("    {line}");
        }
        println!(
            "    parameters: {}",
            serde_json::to_string(&tool.parameters)?
        );
        println!();
    }
    Ok(())
}
