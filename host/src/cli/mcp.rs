//! `witbox mcp`: the MCP server over stdio, or streamable HTTP with `--http`.

use crate::context::Context;
use crate::flags::SessionFlags;
use anyhow::{Context as _, Result};
use clap::Args;
use std::net::SocketAddr;
use std::process::ExitCode;
use witbox::mcp::Server;

/// `witbox mcp`'s arguments.
#[derive(Args, Debug)]
pub struct McpCommand {
    /// Serve the streamable HTTP transport at this address (for example
    /// `127.0.0.1:8765`; the endpoint is `http://ADDR/mcp`) instead of stdio.
    /// Only a loopback address is served (there is no authentication yet), and
    /// only loopback `Host` headers are accepted.
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
        // Before loading and binding: a public port is never opened, not even briefly.
        witbox::mcp::require_loopback(addr)?;
    }
    let manifest = cx.manifest()?;
    let server = Server::load_in_background(
        &manifest,
        cx.options.clone(),
        &args.session.overrides(),
        args.state_dir.as_deref(),
    )?;
    let tools = match server.registry() {
        Some(r) => format!("{} tools", r.tools().len()),
        None => format!("the tools of {} components", manifest.component.len()),
    };
    let python = if server.has_python() {
        "Python sessions (run_python, reset_session, close_session, write_file, read_file, list_files)"
    } else {
        "no run_python (the runner is not built)"
    };
    // Logs go to stderr: on stdio, stdout is the protocol stream.
    match args.http {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("failed to listen on {addr}"))?;
            let addr = listener.local_addr()?;
            eprintln!(
                "witbox mcp: {tools} tools and {python}, at http://{addr}/mcp (Ctrl-C stops)"
            );
            server.serve_http(listener, shutdown()).await?;
        }
        None => {
            eprintln!("witbox mcp: {tools} tools and {python}, on stdio");
            server
                .serve((tokio::io::stdin(), tokio::io::stdout()), shutdown())
                .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown() {
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
