//! `witbox`: the command-line front of the library. Each command is a struct in
//! its own file with `execute(self, &Context)`, a few lines over the library.
//! Errors print with their whole cause chain (`{:#}`) and exit 1.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod agent;
mod call;
mod check;
mod compose;
mod context;
mod flags;
mod mcp;
mod new;
mod repl;
mod run;
mod runner;
mod serve;
mod state;
mod tools;

use context::{Context, GlobalFlags};

/// Run agent tools and agent-written code in WebAssembly sandboxes.
///
/// Every component listed in the manifest is loaded with its own policy:
/// no files, no environment, no network and no tools unless the policy grants them.
#[derive(Parser)]
#[command(name = "witbox", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    global: GlobalFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the tools of every component: name, description and JSON Schema of the arguments.
    Tools(tools::ToolsCommand),
    /// Call a tool with JSON arguments and print its JSON result.
    ///
    /// On failure prints the error (with --json: `{"error": {"kind": ..., "message": ...}}`) and exits 1.
    /// Only the components the call can reach are loaded.
    Call(call::CallCommand),
    /// Run Python cells in one fresh sandboxed session and print each cell's output.
    ///
    /// The session has no files, no environment, no network and no tools unless the
    /// runner policy (`[runner.policy]` in the manifest) or `--tool` grants them.
    /// Exits 0 when the last cell succeeded, 1 otherwise.
    ///
    /// Example: witbox run --tool quadratic_solve -c 'quadratic_solve(1, -3, 2)'
    Run(run::RunCommand),
    /// Run a task through the agent loop: a model calls the tools, or writes Python that calls them.
    ///
    /// The default model is `offline`: a deterministic built-in planner, NOT a language
    /// model. It reads three shapes of task by parsing them: quadratic equations
    /// ("solve x^2 + 3x + 2 = 0"), weather questions ("what's the weather in Paris?")
    /// and small computations, which it answers in `--mode code` ("what is the sum of
    /// the squares of 1..100?"). For anything else use `--model NAME` with an
    /// OpenAI-compatible server (`OPENAI_BASE_URL`, `OPENAI_API_KEY`, `WITBOX_MODEL`).
    ///
    /// The transcript goes to stderr, the final answer to stdout. Exits 1 without an answer.
    ///
    /// Examples:
    ///   witbox agent "solve 2x² - 4x = -2"
    ///   witbox agent --mode code "mean and standard deviation of 3, 5, 8, 13"
    ///   OPENAI_API_KEY=... witbox agent --model gpt-4o-mini --mode code "what is the weather in Oslo in °F?"
    ///   witbox agent --model llama3.1 --base-url http://localhost:11434/v1 "solve x^2 = 9"
    #[command(verbatim_doc_comment)]
    Agent(agent::AgentCommand),
    /// Serve every tool, and sandboxed Python, to MCP clients (Claude Desktop, VS Code, Cursor, ...).
    ///
    /// Over stdio by default (logs go to stderr), or the streamable HTTP transport with
    /// `--http ADDR`. Tools: every registry tool, plus `run_python` (code, optional
    /// session_id) and `reset_session` when the Python runner is built. Each client's
    /// sessions are its own and close when it disconnects.
    ///
    /// Claude Desktop / VS Code: {"command": "/path/to/witbox", "args": ["--manifest", "/path/to/witbox.toml", "mcp"]}
    #[command(verbatim_doc_comment)]
    Mcp(mcp::McpCommand),
    /// Serve many clients over HTTP: MCP (streamable HTTP) at `/mcp`, a REST API under `/v1/`, `GET /healthz`, `GET /readyz`, `GET /metrics`.
    ///
    /// The REST API (described at `GET /v1/openapi.json`): `POST /v1/sessions`, then
    /// `POST /v1/sessions/ID/run` with `{"code": "..."}` (or `/v1/session/run` with an
    /// `X-Witbox-Session` or `X-Sandbox-ID` header), files, snapshots, tools.
    /// Without tokens it listens on loopback only. With `--tokens FILE` (or `WITBOX_TOKENS`)
    /// every `/mcp` and `/v1/` request needs `Authorization: Bearer TOKEN`, each token is a
    /// principal whose sessions no other can reach, and any address may be used. With
    /// `--store redis://HOST:PORT/DB`, replicas share their sessions. `/readyz` answers 200
    /// once the tools and the runner are loaded, the warm pool is filled and the store
    /// answers, else 503 with what it waits for. `/metrics` is Prometheus text (calls and
    /// runs by outcome, durations, fuel, memory peaks, sessions, warm pool, run slots,
    /// saves and restores). SIGTERM drains: the port closes, calls in flight get 15 s.
    /// Example:
    ///   witbox serve --listen 0.0.0.0:8765 --tokens tokens.txt --store redis://redis:6379/0
    #[command(verbatim_doc_comment)]
    Serve(serve::ServeCommand),
    /// An interactive Python session (history, multi-line input, `:reset`, `:tools`, `:quit`).
    Repl(repl::ReplCommand),
    /// Start a new tool from a template: `witbox new tool NAME --lang rust|python`.
    #[command(subcommand)]
    New(new::NewCommand),
    /// Build the tool in DIR (default `.`) into DIR/NAME.wasm, with its WIT docs embedded.
    ///
    /// Rust tools are built with cargo for wasm32-wasip2 (the target is added with rustup
    /// if missing); Python tools with componentize-py (`$WITBOX_COMPONENTIZE_PY`, a
    /// `.venv/bin/componentize-py` in DIR or above, or one on the PATH).
    Build(new::BuildCommand),
    /// Plug components into another one and write one self-contained component.
    ///
    /// Every import of SOCKET that a plug exports (same interface, semver-compatible
    /// version) is satisfied by it, as `wac plug` does. The result needs no `link`
    /// in the manifest. Example:
    ///   witbox compose target/guests/equation-report.wasm --plug target/guests/quadratic.wasm -o report.wasm
    #[command(verbatim_doc_comment)]
    Compose(compose::ComposeCommand),
    /// Check that a file is a loadable agent-tool component and show the tools it would give.
    Check(check::CheckCommand),
    /// The Python runner: `witbox runner build` adds the manifest's `[runner] packages`.
    #[command(subcommand)]
    Runner(runner::RunnerCommand),
}

impl Command {
    /// Whether the command serves many callers at once (`mcp`, `serve`).
    fn serves_many(&self) -> bool {
        matches!(self, Self::Mcp(_) | Self::Serve(_))
    }

    async fn execute(self, cx: &Context) -> anyhow::Result<ExitCode> {
        match self {
            Self::Tools(c) => c.execute(cx).await,
            Self::Call(c) => c.execute(cx).await,
            Self::Run(c) => c.execute(cx).await,
            Self::Agent(c) => c.execute(cx).await,
            Self::Mcp(c) => c.execute(cx).await,
            Self::Serve(c) => c.execute(cx).await,
            Self::Repl(c) => c.execute(cx).await,
            Self::New(c) => c.execute(cx).await,
            Self::Build(c) => c.execute(cx).await,
            Self::Compose(c) => c.execute(cx).await,
            Self::Check(c) => c.execute(cx).await,
            Self::Runner(c) => c.execute(cx).await,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server runs sessions side by side on every core; a command that serves
    // one caller runs one thing at a time, and starting worker threads would
    // cost it more than it gains.
    let mut builder = if cli.command.serves_many() {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = async {
        let cx = Context::new(cli.global)?;
        cli.command.execute(&cx).await
    };
    match runtime.block_on(run) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
