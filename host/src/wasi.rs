//! The WASI a guest gets: all of WASI 0.2 except `wasi:sockets`, with the
//! filesystem guarded (`fs.rs`).
//!
//! `wasi:sockets` (TCP, UDP and `ip-name-lookup`) is never linked, whatever a
//! policy says: network access is `wasi:http` through the allow-list only. Many
//! toolchains import the sockets interfaces anyway (Rust std, CPython), so a
//! component that imports them gets functions that trap with a clear message
//! when called, and loads as usual.

use crate::fs::{FsView, Guarded};
use anyhow::{Context, Result};
use std::borrow::Cow;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasData, Linker, ResourceTable, ResourceType};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::random::WasiRandom;

/// Links every WASI 0.2 interface but `wasi:sockets/*`
/// (what `wasmtime_wasi::p2::add_to_linker_async` does, minus sockets).
pub(crate) fn link<T: WasiView + FsView + 'static>(l: &mut Linker<T>) -> Result<()> {
    fn go<T: WasiView + FsView + 'static>(l: &mut Linker<T>) -> wasmtime::Result<()> {
        use wasmtime_wasi_io::bindings::wasi::io;
        io::error::add_to_linker::<T, Io>(l, |t| t.ctx().table)?;
        io::poll::add_to_linker::<T, Io>(l, |t| t.ctx().table)?;
        io::streams::add_to_linker::<T, Io>(l, |t| t.ctx().table)?;
        clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
        clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
        // The guarded filesystem (`fs.rs`): no link out of a grant, `quota-mb`.
        filesystem::types::add_to_linker::<T, Guarded>(l, T::guarded_fs)?;
        filesystem::preopens::add_to_linker::<T, Guarded>(l, T::guarded_fs)?;
        random::random::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
        random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
        random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
        cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
        cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
        Ok(())
    }
    go(l).map_err(anyhow::Error::from)
}

struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

/// The host type behind every stubbed sockets resource; none is ever made.
struct NoSocket;

/// `linker`, plus a trapping stand-in for each `wasi:sockets` function
/// `component` (called `name`) imports; `linker` itself when it imports none.
pub(crate) fn without_sockets<'a, T: 'static>(
    linker: &'a Linker<T>,
    component: &Component,
    name: &str,
) -> Result<Cow<'a, Linker<T>>> {
    stub_sockets(linker, component)
        .with_context(|| format!("failed to stand in for the `wasi:sockets` imports of `{name}`"))
}

fn stub_sockets<'a, T: 'static>(
    linker: &'a Linker<T>,
    component: &Component,
) -> Result<Cow<'a, Linker<T>>> {
    let engine = component.engine();
    let ty = component.component_type();
    if !ty
        .imports(engine)
        .any(|(name, _)| name.starts_with("wasi:sockets/"))
    {
        return Ok(Cow::Borrowed(linker));
    }
    let mut linker = linker.clone();
    // Resources an interface only re-exports (`use network.{network}`,
    // `use wasi:io/poll.{pollable}`) must stay the type they alias.
    let mut seen: Vec<ResourceType> = Vec::new();
    for (name, item) in ty.imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if !name.starts_with("wasi:sockets/") {
            seen.extend(instance.exports(engine).filter_map(|(_, i)| match i.ty {
                ComponentItem::Resource(r) => Some(r),
                _ => None,
            }));
            continue;
        }
        let mut stub = linker.instance(name).map_err(anyhow::Error::from)?;
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::Resource(r) if !seen.contains(&r) => {
                    stub.resource(export, ResourceType::host::<NoSocket>(), |_, _| Ok(()))
                        .map_err(anyhow::Error::from)?;
                    seen.push(r);
                }
                ComponentItem::ComponentFunc(_) => {
                    let what = format!("{name}#{export}");
                    stub.func_new(export, move |_, _, _, _| {
                        wasmtime::bail!(
                            "`{what}` is not available: the witbox sandbox has no sockets (`wasi:sockets` is never linked; use `wasi:http` with `allow-http`)"
                        )
                    })
                    .map_err(anyhow::Error::from)?;
                }
                _ => {}
            }
        }
    }
    Ok(Cow::Owned(linker))
}
