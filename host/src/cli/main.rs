//! `witbox`: the command-line front of the library. Each subcommand is a few lines
//! over [`witbox::Registry`].

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use witbox::{EngineOptions, Manifest, Registry};

mod agent;
mod mcp;
mod run;

/// Run agent tools and agent-written code in WebAssembly sandboxes.
///
/// Every component listed in the manifest is loaded with its own policy:
/// no files, no environment, no network and no tools unless the policy grants them.
#[derive(Parser)]
#[command(name = "witbox", version, about, long_about)]
struct Cli {
    /// The manifest listing the components and their policies.
    #[arg(
        long,
        global = true,
        default_value = "witbox.toml",
        env = "WITBOX_MANIFEST"
    )]
    manifest: PathBuf,
    /// Append one JSON line per tool call and code run to FILE: time, caller, tool,
    /// a digest of the arguments, duration, fuel, peak memory, outcome and error kind.
    #[arg(long, global = true, value_name = "FILE", env = "WITBOX_AUDIT_LOG")]
    audit_log: Option<PathBuf>,
    /// Do not read or write the compiled-component cache (`~/.cache/witbox`, or `$WITBOX_CACHE_DIR`).
    #[arg(long, global = true)]
    no_cache: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum New {
    /// Write a ready tool: a WIT world that includes `witbox:agent/agent-tool` and
    /// exports one documented function, its code, and a `witbox.toml` entry.
    ///
    /// Then: `witbox build NAME` and
    /// `witbox --manifest NAME/witbox.toml call NAME_greet '{"name": "Ada"}'`.
    Tool {
        /// The tool's name: lower-case letters, digits and `-` (tools are `NAME_<function>`).
        name: String,
        /// `rust` (wit-bindgen, wasm32-wasip2) or `python` (componentize-py).
        #[arg(long, default_value = "rust", value_parser = ["rust", "python"])]
        lang: String,
        /// The folder to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum Command {
    /// List the tools of every component: name, description and JSON Schema of the arguments.
    Tools {
        /// Print one JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Call a tool with JSON arguments and print its JSON result.
    ///
    /// On failure prints the error (with --json: `{"error": {"kind": ..., "message": ...}}`) and exits 1.
    Call {
        /// The tool's name, as `witbox tools` lists it (for example `quadratic_solve`).
        tool: String,
        /// The arguments as a JSON object (for example '{"a": 1, "b": -3, "c": 2}'); `{}` if left out.
        args: Option<String>,
        /// Print the result or the error as JSON only.
        #[arg(long)]
        json: bool,
    },
    /// Run Python cells in one fresh sandboxed session and print each cell's output.
    ///
    /// The session has no files, no environment, no network and no tools unless the
    /// runner policy (`[runner.policy]` in the manifest) or `--tool` grants them.
    /// Exits 0 when the last cell succeeded, 1 otherwise.
    ///
    /// Example: witbox run --tool quadratic_solve -c 'quadratic_solve(1, -3, 2)'
    Run(run::RunArgs),
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
    Agent(agent::AgentArgs),
    /// Serve every tool, and sandboxed Python, to MCP clients (Claude Desktop, VS Code, Cursor, ...).
    ///
    /// Over stdio by default (logs go to stderr), or the streamable HTTP transport with
    /// `--http ADDR`. Tools: every registry tool, plus `run_python` (code, optional
    /// session_id) and `reset_session` when the Python runner is built. Each client's
    /// sessions are its own and close when it disconnects.
    ///
    /// Claude Desktop / VS Code: {"command": "/path/to/witbox", "args": ["--manifest", "/path/to/witbox.toml", "mcp"]}
    #[command(verbatim_doc_comment)]
    Mcp(mcp::McpArgs),
    /// An interactive Python session (history, multi-line input, `:reset`, `:tools`, `:quit`).
    Repl(run::SessionFlags),
    /// Start a new tool from a template: `witbox new tool NAME --lang rust|python`.
    #[command(subcommand)]
    New(New),
    /// Build the tool in DIR (default `.`) into DIR/NAME.wasm, with its WIT docs embedded.
    ///
    /// Rust tools are built with cargo for wasm32-wasip2 (the target is added with rustup
    /// if missing); Python tools with componentize-py (`$WITBOX_COMPONENTIZE_PY`, a
    /// `.venv/bin/componentize-py` in DIR or above, or one on the PATH).
    Build {
        /// The tool's folder, as `witbox new tool` made it.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Plug components into another one and write one self-contained component.
    ///
    /// Every import of SOCKET that a plug exports (same interface, semver-compatible
    /// version) is satisfied by it, as `wac plug` does. The result needs no `link`
    /// in the manifest. Example:
    ///   witbox compose target/guests/equation-report.wasm --plug target/guests/quadratic.wasm -o report.wasm
    #[command(verbatim_doc_comment)]
    Compose {
        /// The component whose imports are satisfied.
        socket: PathBuf,
        /// A component whose exports satisfy them (repeatable).
        #[arg(long = "plug", required = true, value_name = "PLUG")]
        plugs: Vec<PathBuf>,
        /// Where to write the composed component.
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
    },
    /// Check that a file is a loadable agent-tool component and show the tools it would give.
    Check {
        /// The `.wasm` component file.
        path: PathBuf,
        /// Print the tools as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let options = EngineOptions {
        cache_dir: if cli.no_cache {
            None
        } else {
            witbox::engine::default_cache_dir()
        },
        audit: match &cli.audit_log {
            Some(path) => Some(std::sync::Arc::new(witbox::audit::AuditLog::open(path)?)),
            None => None,
        },
        ..Default::default()
    };
    let load = || -> Result<_> {
        let manifest = Manifest::load(&cli.manifest)?;
        Registry::load(&manifest, options.clone())
    };
    match cli.command {
        Command::Run(args) => run::run(&cli.manifest, options, args).await,
        Command::Mcp(args) => mcp::mcp(&cli.manifest, options, args).await,
        Command::Agent(args) => agent::agent(&cli.manifest, options, args).await,
        Command::Repl(flags) => run::repl(&cli.manifest, options, flags).await,
        Command::Tools { json } => {
            let registry = load()?;
            print_tools(&registry, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::New(New::Tool { name, lang, dir }) => {
            let lang = lang.parse()?;
            let root = witbox::scaffold::new_tool(&name, lang, &dir)?;
            let shown = root.display();
            println!(
                "made `{shown}`: wit/world.wit (the tool's contract and docs), {}, witbox.toml\n\nnext:\n  witbox build {shown}\n  witbox --manifest {shown}/witbox.toml call {}_greet '{{\"name\": \"Ada\"}}'",
                if lang == witbox::scaffold::Lang::Rust {
                    "src/lib.rs"
                } else {
                    "app.py"
                },
                name.replace('-', "_")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Build { dir } => {
            let out = witbox::scaffold::build(&dir, &mut |cmd| eprintln!("$ {cmd}"))?;
            println!("built `{}`", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Compose {
            socket,
            plugs,
            output,
        } => {
            let plugs: Vec<&std::path::Path> = plugs.iter().map(PathBuf::as_path).collect();
            let bytes = witbox::compose::plug(&socket, &plugs)?;
            std::fs::write(&output, &bytes)
                .with_context(|| format!("failed to write `{}`", output.display()))?;
            eprintln!(
                "wrote `{}` ({} bytes); `witbox check {}` shows its tools",
                output.display(),
                bytes.len(),
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { path, json } => {
            let registry = Registry::check_file(&path, options.clone()).with_context(|| {
                format!("`{}` is not a usable agent-tool component", path.display())
            })?;
            if !json {
                println!("`{}` is a loadable agent-tool component.\n", path.display());
            }
            print_tools(&registry, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Call { tool, args, json } => {
            let registry = match load() {
                Ok(r) => r,
                Err(e) if json => {
                    let err = witbox::ToolError::new(witbox::ErrorKind::Load, format!("{e:#}"));
                    return Ok(fail(&err, json));
                }
                Err(e) => return Err(e),
            };
            let args: Value = match args.as_deref() {
                None => Value::Object(Default::default()),
                Some(text) => match serde_json::from_str(text) {
                    Ok(v) => v,
                    Err(e) => {
                        let err = witbox::ToolError::new(
                            witbox::ErrorKind::InvalidArguments,
                            format!("the arguments are not valid JSON: {e}"),
                        );
                        return Ok(fail(&err, json));
                    }
                },
            };
            match registry.call(&tool, &args).await {
                Ok(v) => {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(fail(&e, json)),
            }
        }
    }
}

fn fail(e: &witbox::ToolError, json: bool) -> ExitCode {
    if json {
        println!("{}", e.to_json());
    } else {
        eprintln!("error ({}): {}", e.kind, e.message);
        if let Some(detail) = &e.detail {
            eprintln!("detail: {detail}");
        }
    }
    ExitCode::FAILURE
}

fn print_tools(registry: &Registry, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(registry.tools())?);
        return Ok(());
    }
    for tool in registry.tools() {
        println!("{}", tool.name);
        for line in tool.description.lines() {
            println!("    {line}");
        }
        println!(
            "    parameters: {}",
            serde_json::to_string(&tool.parameters)?
        );
        println!();
    }
    Ok(())
}
