//! `witbox mcp`: the MCP server over stdio, or streamable HTTP with `--http`.

use crate::context::Context;
use crate::flags::SessionFlags;
use anyhow::{Context as _, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use witbox::mcp::{Access, Server};
use witbox::python::Keep;

/// `witbox mcp`'s arguments.
#[derive(Args, Debug)]
pub struct McpCommand {
    /// Serve the streamable HTTP transport at this address (for example
    /// `127.0.0.1:8765`; the endpoint is `http://ADDR/mcp`) instead of stdio:
    /// `witbox serve --listen ADDR` without tokens. Only a loopback address is
    /// served, and only loopback `Host` headers are accepted.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Keep the Python sessions in DIR: each is saved there after every call
    /// that changed it, and a later `witbox mcp --state-dir DIR` continues any
    /// session id it finds there (over stdio: whoever runs the command owns
    /// them; over HTTP a client continues only its own). For clients that start
    /// a server per call (LangChain's `get_tools()`), and server restarts.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<std::path::PathBuf>,
    /// Limits and tool grants of the `run_python` sessions.
    #[command(flatten)]
    session: SessionFlags,
}

impl McpCommand {
    pub async fn execute(self, cx: &Context) -> Result<ExitCode> {
        mcp(cx, self).await
    }
}

async fn mcp(cx: &Context, args: McpCommand) -> Result<ExitCode> {
    if let Some(addr) = args.http {
        let keep = keep_in(args.state_dir.as_deref());
        let access = Access::default();
        return serve_http(cx, "mcp", addr, access, &keep, &args.session).await;
    }
    let keep = keep_in(args.state_dir.as_deref());
    let (server, tools, python) = load(cx, &keep, &args.session)?;
    // Logs go to stderr: on stdio, stdout is the protocol stream.
    eprintln!("witbox mcp: {tools} and {python}, on stdio");
    server
        .serve((tokio::io::stdin(), tokio::io::stdout()), shutdown())
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// `witbox serve` and `witbox mcp --http`: the HTTP server on `addr`, with
/// `access`'s tokens if any (without, `addr` must be a loopback address).
pub(crate) async fn serve_http(
    cx: &Context,
    command: &str,
    addr: SocketAddr,
    access: Access,
    keep: &Keep,
    session: &SessionFlags,
) -> Result<ExitCode> {
    if access.tokens.is_none() {
        // Before loading and binding: a public port is never opened, not even briefly.
        witbox::mcp::require_loopback(addr)?;
    }
    let (server, tools, python) = load(cx, keep, session)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to listen on {addr}"))?;
    let addr = listener.local_addr()?;
    let who = match &access.tokens {
        Some(t) => format!("{} principals with bearer tokens", t.len()),
        None => "no tokens (loopback only)".to_string(),
    };
    let kept = match keep {
        Keep::Memory => "in memory".to_string(),
        Keep::Dir(dir) => format!("in {}", dir.display()),
        Keep::Shared(shared) => format!("in {}, shared with other replicas", shared.shown()),
    };
    eprintln!(
        "witbox {command}: {tools} and {python} (sessions kept {kept}), at http://{addr}/mcp and /v1/ (REST; /v1/openapi.json), /healthz, /readyz, /metrics; {who}; Ctrl-C stops"
    );
    server.serve_http_with(listener, access, shutdown()).await?;
    Ok(ExitCode::SUCCESS)
}

/// The server, and what it serves in words (its tools, its Python sessions).
/// Sessions kept in `state_dir`, or in memory.
fn keep_in(state_dir: Option<&Path>) -> Keep {
    state_dir.map_or(Keep::Memory, |d| Keep::Dir(d.to_path_buf()))
}

fn load(
    cx: &Context,
    keep: &Keep,
    session: &SessionFlags,
) -> Result<(Arc<Server>, String, &'static str)> {
    let manifest = cx.manifest()?;
    let server =
        Server::load_in_background(&manifest, cx.options.clone(), &session.overrides(), keep)?;
    let tools = match server.registry() {
        Some(r) => format!("{} tools", r.tools().len()),
        None => format!("the tools of {} components", manifest.component.len()),
    };
    let python = if server.has_python() {
        "Python sessions (run_python, reset_session, close_session, write_file, read_file, list_files)"
    } else {
        "no run_python (the runner is not built)"
    };
    Ok((server, tools, python))
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
