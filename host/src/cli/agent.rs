//! `witbox agent`: one task through the agent loop, with a transcript.

use crate::context::Context;
use anyhow::{Context as _, Result};
use clap::Args;
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use witbox::Agent;
use witbox::agent::{Event, Limits, Mode, Model, Offline, OpenAi, Sampling};

/// `witbox agent`'s arguments.
#[derive(Args, Debug)]
pub struct AgentCommand {
    /// The task, in words; several words are joined, `-` reads it from stdin.
    #[arg(required = true, value_name = "TASK")]
    task: Vec<String>,
    /// `tools`: the model calls tools with JSON arguments. `code`: the model writes
    /// Python that calls the tools as functions, in a sandboxed session.
    #[arg(long, default_value = "tools", value_parser = ["tools", "code"])]
    mode: String,
    /// `offline` (the built-in planner, no server needed), or a model name on an
    /// OpenAI-compatible server (`gpt-4o-mini`, `llama3.1`, `qwen2.5-coder`, ...).
    #[arg(long, env = "WITBOX_MODEL", default_value = "offline")]
    model: String,
    /// The server's base URL: OpenAI, or Ollama (`http://localhost:11434/v1`), vLLM,
    /// llama.cpp server, LM Studio.
    #[arg(long, env = "OPENAI_BASE_URL", default_value = OpenAi::DEFAULT_BASE_URL)]
    base_url: String,
    /// The API key, if the server needs one.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Give the agent only these tools (repeatable, `*` globs); all of them by default.
    #[arg(long = "tool", value_name = "NAME")]
    tools: Vec<String>,
    /// Model replies per task before giving up.
    #[arg(long, default_value_t = 10, value_name = "N")]
    max_steps: u32,
    /// Time for one step (the model's reply and what it runs), in seconds.
    #[arg(long, default_value_t = 120.0, value_name = "S")]
    step_timeout_s: f64,
    /// Time for the whole task, in seconds.
    #[arg(long, default_value_t = 600.0, value_name = "S")]
    timeout_s: f64,
    /// `on`: when the server returns no native tool calls, run the calls the model
    /// wrote in its text (a JSON object with `name` and `arguments`, in a fenced
    /// block or bare; `<tool_call>…</tool_call>`; `Action: {…}`), as small local
    /// models do. The transcript marks them. `off`: such a reply is the answer.
    #[arg(long, default_value = "on", value_parser = ["on", "off"], value_name = "on|off")]
    text_tool_calls: String,
    /// Sampling temperature sent to the server (0 to 2; 0 for repeatable runs).
    /// Unset: the server's default (llama.cpp: 0.8).
    #[arg(long, env = "WITBOX_TEMPERATURE", value_name = "T")]
    temperature: Option<f64>,
    /// Nucleus sampling (`top_p`, above 0 and at most 1) sent to the server.
    #[arg(long, env = "WITBOX_TOP_P", value_name = "P")]
    top_p: Option<f64>,
    /// Sampling seed sent to the server, for servers that honour it.
    #[arg(long, env = "WITBOX_SEED", value_name = "N")]
    seed: Option<u64>,
    /// The longest reply, in tokens (`max_tokens`) sent to the server.
    #[arg(long, env = "WITBOX_MAX_TOKENS", value_name = "N")]
    max_tokens: Option<u32>,
    /// Print one JSON event per line on stdout (start, thought, code, tool_call,
    /// correction, observation, answer or failed) instead of the transcript.
    #[arg(long)]
    json: bool,
}

/// A task longer than this (from stdin) is refused: it goes into every request.
const MAX_TASK_BYTES: u64 = 1 << 20;

/// The longest a step or a task may be given: a day.
const MAX_SECONDS: f64 = 86_400.0;

impl AgentCommand {
    pub async fn execute(self, cx: &Context) -> Result<ExitCode> {
        agent(cx, self).await
    }
}

async fn agent(cx: &Context, args: AgentCommand) -> Result<ExitCode> {
    let mut task = args.task.join(" ");
    if task == "-" {
        task.clear();
        std::io::stdin()
            .take(MAX_TASK_BYTES)
            .read_to_string(&mut task)
            .context("failed to read the task from stdin")?;
    }
    let task = task.trim();
    anyhow::ensure!(!task.is_empty(), "the task is empty");
    let mode: Mode = args.mode.parse()?;
    let seconds = |s: f64, flag: &str| {
        Duration::try_from_secs_f64(s)
            .ok()
            .filter(|d| !d.is_zero() && s <= MAX_SECONDS)
            .with_context(|| {
                format!("`{flag}` must be a number of seconds above 0 and at most {MAX_SECONDS}, got {s}")
            })
    };
    let limits = Limits {
        max_steps: args.max_steps.max(1),
        step_timeout: seconds(args.step_timeout_s, "--step-timeout-s")?,
        task_timeout: seconds(args.timeout_s, "--timeout-s")?,
    };
    let sampling = Sampling {
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        max_tokens: args.max_tokens,
    };
    sampling.check().context("invalid sampling settings")?;
    let model: Arc<dyn Model> = if args.model == "offline" {
        Arc::new(Offline)
    } else {
        let mut client = OpenAi::new(&args.base_url, &args.model, args.api_key.clone())?;
        client.timeout = limits.step_timeout;
        client.sampling = sampling;
        Arc::new(client)
    };
    let manifest = cx.manifest()?;
    let agent = Agent::from_manifest(
        &manifest,
        cx.options.clone(),
        model,
        mode,
        &args.tools,
        limits,
    )?
    .with_text_tool_calls(args.text_tool_calls == "on");
    let mut transcript = Transcript::new(args.json);
    let result = agent.run(task, &mut |e| transcript.show(e)).await;
    Ok(match result {
        Ok(answer) => {
            if !args.json {
                println!("{}", answer.text);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if !args.json {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    })
}

/// Prints events: as JSON lines on stdout, or as a transcript on stderr
/// (coloured on a terminal unless `NO_COLOR` is set).
struct Transcript {
    json: bool,
    colour: bool,
    step: u32,
}

impl Transcript {
    fn new(json: bool) -> Self {
        let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Self {
            json,
            colour,
            step: 0,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn show(&mut self, event: &Event) {
        if self.json {
            let mut out = std::io::stdout().lock();
            let _ = serde_json::to_writer(&mut out, event);
            let _ = writeln!(out);
            let _ = out.flush();
            return;
        }
        let (bold, dim, cyan, green, red, yellow) = ("1", "2", "36", "32", "31", "33");
        if let Event::Thought { step, .. }
        | Event::Code { step, .. }
        | Event::ToolCall { step, .. }
        | Event::Correction { step, .. }
        | Event::Observation { step, .. } = event
            && *step != self.step
        {
            self.step = *step;
            eprintln!("{}", self.paint(bold, &format!("step {step}")));
        }
        let text = match event {
            Event::Start {
                task,
                mode,
                model,
                sampling,
                tools,
            } => format!(
                "{}\n{} {model}\n{}{} {task}\n{} {}\n",
                self.paint(bold, &format!("witbox agent · {mode} mode")),
                self.paint(dim, "model:"),
                sampling.map_or(String::new(), |s| format!(
                    "{} {}\n",
                    self.paint(dim, "sampling:"),
                    s.describe()
                )),
                self.paint(dim, "task: "),
                self.paint(dim, "tools:"),
                if tools.is_empty() {
                    "(none)".to_string()
                } else {
                    tools.join(", ")
                },
            ),
            Event::Thought { text, .. } => indent(&self.paint(yellow, text), "  "),
            Event::Code { code, .. } => format!(
                "  {}\n{}",
                self.paint(dim, "python:"),
                indent(&self.paint(cyan, code.trim_end()), "  │ ")
            ),
            Event::ToolCall {
                name,
                arguments,
                from_text,
                ..
            } => format!(
                "  {} {arguments}{}",
                self.paint(cyan, &format!("→ {name}")),
                if *from_text {
                    self.paint(dim, "  (read from the reply's text)")
                } else {
                    String::new()
                }
            ),
            Event::Correction { text, .. } => {
                format!("  {} {text}", self.paint(red, "↺ correction:"))
            }
            Event::Observation {
                text,
                error,
                duration_ms,
                ..
            } => {
                let head = format!("← {}", if *error { "error" } else { "result" });
                format!(
                    "  {} {}\n{}",
                    self.paint(if *error { red } else { green }, &head),
                    self.paint(dim, &format!("({duration_ms} ms)")),
                    indent(text.trim_end(), "    ")
                )
            }
            Event::Answer {
                steps,
                duration_ms,
                after_step_limit,
                ..
            } => self.paint(
                bold,
                &format!(
                    "answer after {steps} step(s), {duration_ms} ms{}:",
                    if *after_step_limit {
                        " (asked for at the step limit)"
                    } else {
                        ""
                    }
                ),
            ),
            Event::Failed {
                steps, duration_ms, ..
            } => self.paint(
                red,
                &format!("no answer after {steps} step(s), {duration_ms} ms"),
            ),
        };
        eprintln!("{text}");
    }
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| format!("{prefix}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
