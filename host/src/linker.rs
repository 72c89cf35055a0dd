//! The host linker every guest is instantiated with: WASI without sockets
//! (`wasi.rs`), `wasi:http` behind the policy hook (`net.rs`), `wasi:config`,
//! and `witbox:agent/host` (`guest_api.rs`). Tools and the Python runner use the
//! same one; a tool's imports from other components are added on top of it
//! (`tools/load.rs`).

use crate::engine::Engine;
use crate::store::State;
use anyhow::Result;
use wasmtime::component::Linker;

/// A new host linker for `engine`.
pub(crate) fn new(engine: &Engine) -> Result<Linker<State>> {
    let mut linker = Linker::new(engine.inner());
    crate::wasi::link(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(anyhow::Error::from)?;
    wasmtime_wasi_config::add_to_linker(&mut linker, |s: &mut State| {
        wasmtime_wasi_config::WasiConfig::from(&s.config)
    })
    .map_err(anyhow::Error::from)?;
    crate::guest_api::add_to_linker(&mut linker)?;
    Ok(linker)
}
