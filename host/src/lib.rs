//! witbox: a WebAssembly Component Model host that runs agent tools and
//! agent-written code in capability-scoped sandboxes.
//!
//! - [`manifest`]: `witbox.toml`, the components and their policies.
//! - [`engine`]: wasmtime configuration, epoch ticker, compiled-component cache.
//! - [`sandbox`]: one store per call, built from a policy (deny by default), and the limits.
//! - [`net`]: the outbound HTTP allow-list, the one network choke point.
//! - [`registry`]: loading components, deriving tools, invoking them.
//! - [`schedule`]: how running guests share the cores (long calls take turns).
//! - [`session`]: Python sessions on the code runner: runs, limits, restarts, the session manager.
//! - [`agent`]: the agent loop: a model (OpenAI-compatible, or the offline planner) calls tools or writes Python.
//! - [`mcp`]: the MCP server (stdio and streamable HTTP): the tools, `run_python`, `reset_session`.
//! - [`compose`], [`embed`]: static composition (`wac plug`), guests' WIT docs in a custom section.
//! - [`scaffold`]: `witbox new tool` and `witbox build`.
//! - [`audit`]: the audit log, one JSON line per call and run.
//! - [`schema`], [`value`]: WIT types ⇄ JSON Schema and JSON values.

pub mod agent;
pub mod audit;
pub mod bindings;
pub mod compose;
pub mod embed;
pub mod engine;
pub mod error;
mod fs;
pub mod manifest;
pub mod mcp;
pub mod net;
pub mod registry;
pub mod sandbox;
pub mod scaffold;
pub mod schedule;
pub mod schema;
pub mod session;
pub mod value;
mod wasi;

pub use agent::{Agent, Mode};
pub use engine::{Engine, EngineOptions};
pub use error::{ErrorKind, ToolError};
pub use manifest::Manifest;
pub use registry::{Registry, Tool};
pub use session::{RunOutcome, Runner, Session, Sessions};
