//! `witbox serve`: one HTTP server for many clients: MCP at `/mcp`, health at
//! `/healthz` and `/readyz`, bearer tokens for anything but loopback.

use crate::context::Context;
use crate::flags::SessionFlags;
use anyhow::Result;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use witbox::mcp::{Access, Quota, Tokens};

/// `witbox serve`'s arguments.
#[derive(Args, Debug)]
pub struct ServeCommand {
    /// The address to listen on, for example `127.0.0.1:8765` or `0.0.0.0:8765`
    /// (port 0 picks a free one; the address is printed). An address other hosts
    /// can reach needs tokens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8765")]
    listen: SocketAddr,
    /// Bearer tokens, one `TOKEN NAME` per line (`#` comments): each is a
    /// principal, whose MCP sessions no other principal can reach. Every `/mcp`
    /// request then needs `Authorization: Bearer TOKEN`. Or `WITBOX_TOKENS`, the
    /// same pairs separated by newlines or `,`. Tokens have at least 32 random
    /// characters (`openssl rand -hex 32`).
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// With tokens: the most MCP sessions one principal may have open; past it,
    /// starting one is `429` (0: no limit).
    #[arg(long, value_name = "N", default_value_t = Quota::default().sessions)]
    sessions_per_principal: usize,
    /// With tokens: the most `/mcp` requests (tool calls, runs, ...) one principal
    /// may send per second, on average, in bursts of up to that many; past it,
    /// `429` with `Retry-After` (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 100)]
    requests_per_second: u32,
    /// Keep the Python sessions in DIR, as `witbox mcp --state-dir` does.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
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
        let access = Access {
            tokens,
            quota: Quota {
                sessions: self.sessions_per_principal,
                per_second: self.requests_per_second,
            },
        };
        crate::mcp::serve_http(
            cx,
            "serve",
            self.listen,
            access,
            self.state_dir.as_deref(),
            &self.session,
        )
        .await
    }
}
