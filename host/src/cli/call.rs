//! `witbox call TOOL [JSON]`: one call, through the same guarded path as every other.

use crate::context::Context;
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;
use witbox::{ErrorKind, Registry, ToolError};

/// `witbox call`'s arguments.
#[derive(Args, Debug)]
pub struct CallCommand {
    /// The tool's name, as `witbox tools` lists it (for example `quadratic_solve`).
    tool: String,
    /// The arguments as a JSON object (for example '{"a": 1, "b": -3, "c": 2}'); `{}` if left out.
    args: Option<String>,
    /// Print the result or the error as JSON only.
    #[arg(long)]
    json: bool,
}

impl CallCommand {
    pub async fn execute(self, cx: &Context) -> Result<ExitCode> {
        // Only the components this call can reach are loaded (and compiled).
        let loaded = cx.manifest().and_then(|m| {
            Registry::load_for(&m, cx.options.clone(), std::slice::from_ref(&self.tool))
        });
        let registry = match loaded {
            Ok(r) => r,
            Err(e) if self.json => {
                let err = ToolError::new(ErrorKind::Load, format!("{e:#}"));
                return Ok(fail(&err, true));
            }
            Err(e) => return Err(e),
        };
        let args = self.args.as_deref().unwrap_or("{}");
        match registry.call_text("host", &self.tool, args).await {
            Ok(v) => {
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(fail(&e, self.json)),
        }
    }
}

fn fail(e: &ToolError, json: bool) -> ExitCode {
    if json {
        println!("{}", e.to_json());
    } else {
        eprintln!("error ({}): {}", e.kind, e.message);
        if let Some(detail) = &e.detail {
            eprintln!("detail: {detail}");
        }
    }
    ExitCode::FAILURE
}
