//! `witbox serve`: one HTTP server for many clients: MCP at `/mcp`, REST under
//! `/v1/`, health at `/healthz` and `/readyz`, metrics, bearer tokens for
//! anything but loopback, and sessions shared by replicas through Redis.

use crate::context::Context;
use crate::flags::SessionFlags;
use anyhow::Result;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use witbox::mcp::{Access, Quota, Tokens};
use witbox::python::{Keep, Shared};

/// `witbox serve`'s arguments.
#[derive(Args, Debug)]
pub struct ServeCommand {
    /// The address to listen on, for example `127.0.0.1:8765` or `0.0.0.0:8765`
    /// (port 0 picks a free one; the address is printed). An address other hosts
    /// can reach needs tokens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8765")]
    listen: SocketAddr,
    /// Bearer tokens, one `TOKEN NAME` per line (`#` comments): each is a
    /// principal, whose sessions (MCP and REST) no other principal can reach.
    /// Every `/mcp` and `/v1/` request then needs `Authorization: Bearer TOKEN`. Or `WITBOX_TOKENS`, the
    /// same pairs separated by newlines or `,`. Tokens have at least 32 random
    /// characters (`openssl rand -hex 32`).
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// With tokens: the most MCP sessions, and the most REST sessions, one
    /// principal may have open; past it, starting one is `429` (0: no limit).
    #[arg(long, value_name = "N", default_value_t = Quota::default().sessions)]
    sessions_per_principal: usize,
    /// With tokens: the most `/mcp` and `/v1/` requests (tool calls, runs, ...) one principal
    /// may send per second, on average, in bursts of up to that many; past it,
    /// `429` with `Retry-After` (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 100)]
    requests_per_second: u32,
    /// Keep the Python sessions in DIR, as `witbox mcp --state-dir` does.
    #[arg(long, value_name = "DIR", conflicts_with = "store")]
    state_dir: Option<PathBuf>,
    /// Keep the Python sessions in Redis (`redis://HOST:PORT/DB`), shared by
    /// every replica pointed at it: any replica serves any session (restoring
    /// it from the store when another ran it last), one at a time under a
    /// lease, and a replica that dies loses at most the cell it was running.
    /// Replicas need the same snapshot key (`WITBOX_DATA_DIR/snapshot.key`).
    #[arg(long, value_name = "URL", env = "WITBOX_STORE")]
    store: Option<String>,
    /// A bearer token for `/healthz`, `/readyz` and `/metrics` (or
    /// `WITBOX_OPS_TOKEN`); without, they are open to whoever reaches the port.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "WITBOX_OPS_TOKEN",
        hide_env_values = true
    )]
    ops_token: Option<String>,
    /// Limits and tool grants of the `run_python` sessions.
    #[command(flatten)]
    session: SessionFlags,
}

impl ServeCommand {
    pub async fn execute(self, cx: &Context) -> Result<ExitCode> {
        let tokens = match (&self.tokens, std::env::var("WITBOX_TOKENS")) {
            (Some(file), _) => Some(Arc::new(Tokens::read(file)?)),
            (None, Ok(text)) => Some(Arc::new(Tokens::parse(&text, "WITBOX_TOKENS")?)),
            (None, Err(_)) => None,
        };
        let ops = self.ops_token.map(|t| Tokens::ops(&t)).transpose()?;
        let access = Access {
            tokens,
            quota: Quota {
                sessions: self.sessions_per_principal,
                per_second: self.requests_per_second,
            },
            ops: ops.map(Arc::new),
        };
        let keep = match (&self.store, &self.state_dir) {
            (Some(url), _) => Keep::Shared(Shared::open(url)?),
            (None, Some(dir)) => Keep::Dir(dir.clone()),
            (None, None) => Keep::Memory,
        };
        crate::mcp::serve_http(cx, "serve", self.listen, access, &keep, &self.session).await
    }
}
