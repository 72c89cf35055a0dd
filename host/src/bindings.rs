//! The only place that runs `bindgen!`: Rust types for the `witbox:agent` WIT package.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "witbox:agent/code-runner",
    imports: { default: async },
    exports: { default: async },
});

pub use self::witbox::agent::host;
