//! The only place that runs `bindgen!`: Rust types for the `witbox:agent` WIT package.

// Generated code: its docs are the WIT's, which `missing_docs` cannot see.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "witbox:agent/code-runner",
    imports: { default: async },
    exports: { default: async },
});

pub use self::witbox::agent::host;
