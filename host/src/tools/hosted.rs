//! Host functions as tools: functions of the embedding program (a Python
//! callback of the `witbox` package, a Rust closure) that a session's code
//! calls like the manifest's tools. [`HostTools`] puts them in front of a
//! [`Registry`]: a call of one of its names runs the function, any other goes
//! to the registry's guarded path, as before.
//!
//! Adding them is the host's own grant ([`ToolHost::grants`]): the embedding
//! program chose to expose them to this session, so they need no `call-tools`
//! entry, and a session without them cannot reach them. They count against
//! `max-tool-calls` and the nesting depth like every tool; their arguments are
//! JSON objects of at most [`MAX_ARGS_BYTES`], parsed by the host before the
//! function runs, and a result over that size is refused.

use super::Registry;
use crate::bindings::host;
use crate::error::{ErrorKind, ToolError};
use crate::limits::MAX_ARGS_BYTES;
use crate::store::{Args, BoxFuture, Reply, Request, ToolHost};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A host function: called with the arguments object, returns the result or a
/// [`ToolError`] (whose kind and message the guest's `ToolError` carries).
pub type HostFn = Arc<dyn Fn(Value) -> BoxFuture<'static, Result<Value, ToolError>> + Send + Sync>;

/// One host function and how the guest's `list-tools` describes it.
#[derive(Clone)]
pub struct HostTool {
    /// Its name: a Python identifier, unique among the session's tools.
    pub name: String,
    /// What the model and `help()` read.
    pub description: String,
    /// The JSON Schema of its arguments object.
    pub parameters: Value,
    /// The function.
    pub call: HostFn,
}

/// Host functions in front of a registry.
pub struct HostTools {
    registry: Arc<Registry>,
    tools: BTreeMap<String, HostTool>,
}

impl HostTools {
    /// `tools` in front of `registry`. A name that is not a Python identifier,
    /// or that a manifest tool already has, is an error.
    pub fn new(registry: Arc<Registry>, tools: Vec<HostTool>) -> Result<Self, ToolError> {
        let mut by_name = BTreeMap::new();
        for tool in tools {
            let name = tool.name.clone();
            let identifier = name
                .chars()
                .next()
                .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
                && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
            if !identifier || name.len() > crate::limits::MAX_NAME_BYTES {
                return Err(ToolError::new(
                    ErrorKind::InvalidArguments,
                    format!(
                        "a host tool's name must be a Python identifier (ASCII letters, digits and `_`), not {name:?}"
                    ),
                ));
            }
            if registry.tools().iter().any(|t| t.name == name) {
                return Err(ToolError::new(
                    ErrorKind::InvalidArguments,
                    format!("`{name}` is already a tool of the manifest"),
                ));
            }
            if !tool.parameters.is_object() {
                return Err(ToolError::new(
                    ErrorKind::InvalidArguments,
                    format!("the parameters of `{name}` must be a JSON Schema object"),
                ));
            }
            if by_name.insert(name.clone(), tool).is_some() {
                return Err(ToolError::new(
                    ErrorKind::InvalidArguments,
                    format!("two host tools are named `{name}`"),
                ));
            }
        }
        Ok(Self {
            registry,
            tools: by_name,
        })
    }

    /// The host functions' names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }
}

/// The arguments of a call of a host function, as a JSON object.
fn arguments(name: &str, args: &Args<'_>) -> Result<Value, ToolError> {
    let invalid = |m: String| ToolError::new(ErrorKind::InvalidArguments, m);
    let value = match args {
        Args::Json(v) => (*v).clone(),
        Args::Text(text) => serde_json::from_str(text)
            .map_err(|e| invalid(format!("the arguments of `{name}` are not JSON: {e}")))?,
        Args::Vals(_) | Args::Linked(_) => {
            return Err(invalid(format!(
                "`{name}` is a host function: call it with JSON arguments"
            )));
        }
    };
    if !value.is_object() {
        return Err(invalid(format!(
            "the arguments of `{name}` must be a JSON object"
        )));
    }
    Ok(value)
}

impl ToolHost for HostTools {
    fn call<'a>(self: Arc<Self>, request: Request<'a>) -> BoxFuture<'a, Result<Reply, ToolError>> {
        Box::pin(async move {
            // A refused call (past `max-tool-calls`, too deep) goes to the
            // registry, which records the refusal.
            let tool = match self.tools.get(request.tool) {
                Some(tool) if request.refused.is_none() => tool.clone(),
                _ => return self.registry.clone().call(request).await,
            };
            let args = arguments(&tool.name, &request.args)?;
            let result = (tool.call)(args).await?;
            let size = result.to_string().len();
            if size > MAX_ARGS_BYTES {
                return Err(ToolError::new(
                    ErrorKind::OutputLimit,
                    format!(
                        "the result of `{}` is {size} bytes of JSON; the limit is {MAX_ARGS_BYTES}",
                        tool.name
                    ),
                ));
            }
            Ok(Reply::Json(result))
        })
    }

    fn specs(&self) -> Vec<host::ToolSpec> {
        let mut specs = self.registry.specs();
        specs.extend(self.tools.values().map(|t| host::ToolSpec {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters_json: t.parameters.to_string(),
        }));
        specs
    }

    fn grants(&self, name: &str) -> bool {
        self.tools.contains_key(name)
    }
}
