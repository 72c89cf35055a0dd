//! Static composition: plug components into another one, as `wac plug` does
//! (with the `wac-graph` library behind it), and write one self-contained
//! component that needs no dynamic link.

use crate::embed::custom_section;
use crate::tools::{EMBEDDED_WIT_SECTION, custom_section as find_section};
use anyhow::{Context, Result};
use std::path::Path;
use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions};

/// Satisfies the imports of `socket` with the exports of `plugs` (matching
/// interface names, semver-compatible), and returns the composed component.
/// It exports what the socket exports and keeps the socket's WIT docs.
pub fn plug(socket: &Path, plugs: &[&Path]) -> Result<Vec<u8>> {
    let read = |path: &Path| {
        std::fs::read(path).with_context(|| format!("failed to read `{}`", path.display()))
    };
    let socket_bytes = read(socket)?;
    let docs = find_section(&socket_bytes, EMBEDDED_WIT_SECTION)
        .map(|wit| custom_section(EMBEDDED_WIT_SECTION, wit));
    let mut graph = CompositionGraph::new();
    let package = Package::from_bytes("witbox:socket", None, socket_bytes, graph.types_mut())
        .with_context(|| format!("`{}` is not a component", socket.display()))?;
    let socket_id = graph.register_package(package)?;
    let mut plug_ids = Vec::new();
    for (i, path) in plugs.iter().enumerate() {
        let package = Package::from_bytes(
            &format!("witbox:plug{i}"),
            None,
            read(path)?,
            graph.types_mut(),
        )
        .with_context(|| format!("`{}` is not a component", path.display()))?;
        plug_ids.push(graph.register_package(package)?);
    }
    wac_graph::plug(&mut graph, plug_ids, socket_id).with_context(|| {
        format!(
            "failed to plug into `{}`: none of the plugs exports an interface it imports",
            socket.display()
        )
    })?;
    let mut bytes = graph
        .encode(EncodeOptions::default())
        .context("failed to encode the composed component")?;
    bytes.extend(docs.unwrap_or_default());
    Ok(bytes)
}
