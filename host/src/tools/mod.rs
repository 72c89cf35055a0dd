//! The tools: one per exported function of every loaded component.
//!
//! - `load.rs`: compile each component of a manifest, order them by their links,
//!   link each import to the component that exports it.
//! - `describe.rs`: the component's WIT (with its docs) → tools with JSON Schemas.
//! - `invoke.rs`: the one guarded path every call takes, from every entry point.

mod describe;
mod hosted;
mod invoke;
mod load;

pub use describe::{EMBEDDED_WIT_SECTION, custom_section};
pub use hosted::{HostFn, HostTool, HostTools};

use crate::bindings::host;
use crate::engine::Engine;
use crate::error::{ErrorKind, ToolError};
use crate::policy::Sandbox;
use crate::store::{Args, BoxFuture, Reply, Request, State, ToolHost};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::{ComponentExportIndex, InstancePre, Linker, Val};
use wit_parser::{Resolve, Type};

/// A tool: one exported function of one component.
#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    /// `<component>_<function>` in snake_case.
    pub name: String,
    /// From the function's WIT docs.
    pub description: String,
    /// The JSON Schema of the arguments object.
    pub parameters: Value,
    /// The component that exports it.
    #[serde(skip)]
    pub component: String,
    /// The WIT function name.
    #[serde(skip)]
    pub function: String,
    /// The exported interface it belongs to (`witbox:quadratic/solver@0.1.0`), if any.
    #[serde(skip)]
    pub interface: Option<String>,
    #[serde(skip)]
    params: Vec<(String, Type)>,
    #[serde(skip)]
    returns_result: bool,
    #[serde(skip)]
    export: ComponentExportIndex,
    /// Its component's index in the registry.
    #[serde(skip)]
    index: usize,
}

/// A loaded, pre-linked component.
pub struct Loaded {
    /// Its name in the manifest.
    pub name: String,
    /// The `.wasm` file it came from.
    pub path: PathBuf,
    pre: InstancePre<State>,
    sandbox: Arc<Sandbox>,
    resolve: Arc<Resolve>,
    /// The instances (interfaces) it exports, by name.
    exports: Vec<String>,
}

/// Every loaded component and the tools they give.
pub struct Registry {
    engine: Engine,
    linker: Linker<State>,
    components: Vec<Loaded>,
    tools: Vec<Tool>,
    by_name: HashMap<String, usize>,
}

impl Registry {
    /// The engine every component of this registry runs on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Every tool, in manifest order.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// A tool by name.
    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    /// The loaded components.
    pub fn components(&self) -> &[Loaded] {
        &self.components
    }

    /// Every tool of the registry matching one of the patterns (all if none); a
    /// pattern that matches nothing is an error naming the tools there are.
    pub fn select(&self, patterns: &[String]) -> Result<Vec<String>> {
        let all: Vec<&str> = self.tools().iter().map(|t| t.name.as_str()).collect();
        select(&all, patterns)
    }

    /// Calls a tool with a JSON arguments object and returns its JSON result.
    pub async fn call(self: &Arc<Self>, name: &str, args: &Value) -> Result<Value, ToolError> {
        self.call_as("host", name, args).await
    }

    /// [`Registry::call`] on behalf of `caller`, as the audit log names it
    /// (`agent` for the agent loop).
    pub async fn call_as(
        self: &Arc<Self>,
        caller: &str,
        name: &str,
        args: &Value,
    ) -> Result<Value, ToolError> {
        let request = Request {
            caller,
            depth: 0,
            tool: name,
            args: Args::Json(args),
            refused: None,
        };
        json_reply(self.invoke(request).await)
    }

    /// Calls a tool with its arguments as JSON text, on behalf of `caller`: the
    /// text is sized and parsed by the guarded path, so a bad one is audited too.
    pub async fn call_text(
        self: &Arc<Self>,
        caller: &str,
        name: &str,
        args: &str,
    ) -> Result<Value, ToolError> {
        let request = Request {
            caller,
            depth: 0,
            tool: name,
            args: Args::Text(args),
            refused: None,
        };
        json_reply(self.invoke(request).await)
    }

    /// Calls a tool with component values (for embedders that already have typed
    /// values) and returns its JSON result.
    pub async fn call_vals(
        self: &Arc<Self>,
        name: &str,
        args: Vec<Val>,
    ) -> Result<Value, ToolError> {
        let request = Request {
            caller: "host",
            depth: 0,
            tool: name,
            args: Args::Vals(args),
            refused: None,
        };
        json_reply(self.invoke(request).await)
    }

    fn find(&self, name: &str) -> Result<&Tool, ToolError> {
        self.tool(name).ok_or_else(|| {
            let known: Vec<&str> = self.tools.iter().map(|t| t.name.as_str()).collect();
            ToolError::new(
                ErrorKind::NotFound,
                format!("no tool named `{name}` (loaded: {})", known.join(", ")),
            )
        })
    }
}

/// The names in `all` matching one of `patterns` (all of them if there are no
/// patterns), in order; a pattern that matches nothing is an error.
pub(crate) fn select(all: &[&str], patterns: &[String]) -> Result<Vec<String>> {
    if patterns.is_empty() {
        return Ok(all.iter().map(|s| s.to_string()).collect());
    }
    let mut out = Vec::new();
    for pattern in patterns {
        let p = glob::Pattern::new(pattern)
            .with_context(|| format!("invalid tool pattern `{pattern}`"))?;
        let hits: Vec<&&str> = all.iter().filter(|n| p.matches(n)).collect();
        if hits.is_empty() {
            bail!(
                "`--tool {pattern}` matches no tool (loaded: {})",
                if all.is_empty() {
                    "none".to_string()
                } else {
                    all.join(", ")
                }
            );
        }
        for name in hits {
            if !out.iter().any(|n: &String| n == *name) {
                out.push(name.to_string());
            }
        }
    }
    Ok(out)
}

fn json_reply(reply: Result<Reply, ToolError>) -> Result<Value, ToolError> {
    match reply? {
        Reply::Json(v) => Ok(v),
        Reply::Vals(_) => Err(ToolError::new(
            ErrorKind::Internal,
            "a JSON call was answered with component values",
        )),
    }
}

impl ToolHost for Registry {
    fn call<'a>(self: Arc<Self>, request: Request<'a>) -> BoxFuture<'a, Result<Reply, ToolError>> {
        Box::pin(async move { self.invoke(request).await })
    }

    fn specs(&self) -> Vec<host::ToolSpec> {
        self.tools
            .iter()
            .map(|t| host::ToolSpec {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters_json: t.parameters.to_string(),
            })
            .collect()
    }
}
