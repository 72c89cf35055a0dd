//! The agent loop: a model picks tools, or writes Python that calls them;
//! witbox runs each in its sandbox and feeds the result back, until an answer.
//!
//! - `tools` mode: the model gets every tool's name, description and JSON Schema
//!   and answers with tool calls; each result (or structured error) goes back as a
//!   tool message. A reply without a tool call, or a call of `final_answer`, ends it.
//! - `code` mode (CodeAct): the model writes Python in a fenced block; it runs in
//!   the agent's own session of the code runner, where the tools are functions;
//!   what it printed, its value and its error are the observation. `final_answer(x)`
//!   ends it, as does a reply with no code.
//!
//! Every [`Agent::run`] has its own Python session: two runs share nothing.

mod event;
pub mod model;
pub mod offline;
pub mod openai;
mod prompt;
mod reply;

pub use event::{Answer, Event};
pub use model::{Message, Model, Request, Role, ToolCall, ToolSpec};
pub use offline::Offline;
pub use openai::OpenAi;
pub use prompt::{FINAL_ANSWER, final_answer_spec};
pub use reply::split_code;

use reply::final_answer_of;

use crate::engine::EngineOptions;
use crate::manifest::Manifest;
use crate::python::{RunOutcome, Runner, Session, observe};
use crate::text::ms;
use crate::tools::Registry;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::timeout_at;

/// How the model acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The model answers with tool calls (OpenAI function calling).
    Tools,
    /// The model writes Python that calls the tools as functions (CodeAct).
    Code,
}

impl std::str::FromStr for Mode {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tools" => Ok(Self::Tools),
            "code" => Ok(Self::Code),
            other => bail!("unknown agent mode `{other}`: use `tools` or `code`"),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tools => "tools",
            Self::Code => "code",
        })
    }
}

/// How long and how far one task may go.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Model replies per task.
    pub max_steps: u32,
    /// One step: the model's reply and running what it asked for.
    pub step_timeout: Duration,
    /// The whole task.
    pub task_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_steps: 10,
            step_timeout: Duration::from_secs(120),
            task_timeout: Duration::from_secs(600),
        }
    }
}

/// A model, the tools it may use, and (in `code` mode) the Python runner.
pub struct Agent {
    model: Arc<dyn Model>,
    registry: Arc<Registry>,
    runner: Option<Arc<Runner>>,
    tools: Vec<ToolSpec>,
    mode: Mode,
    limits: Limits,
}

impl Agent {
    /// An agent over the registry's tools whose names are in `tools`. `code` mode
    /// needs a runner, and its policy decides which tools Python can call.
    pub fn new(
        model: Arc<dyn Model>,
        registry: Arc<Registry>,
        runner: Option<Arc<Runner>>,
        tools: &[String],
        mode: Mode,
        limits: Limits,
    ) -> Result<Self> {
        if mode == Mode::Code && runner.is_none() {
            bail!("`code` mode needs the Python runner (`[runner]` in the manifest)");
        }
        let tools = registry
            .tools()
            .iter()
            .filter(|t| tools.contains(&t.name))
            .map(|t| ToolSpec {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters: t.parameters.clone(),
            })
            .collect();
        Ok(Self {
            model,
            registry,
            runner,
            tools,
            mode,
            limits,
        })
    }

    /// Loads a manifest's components and gives the agent the tools matching
    /// `patterns` (`*` globs; every tool if empty). In `code` mode the runner's
    /// sessions are granted exactly those tools.
    pub fn from_manifest(
        manifest: &Manifest,
        options: EngineOptions,
        model: Arc<dyn Model>,
        mode: Mode,
        patterns: &[String],
        limits: Limits,
    ) -> Result<Self> {
        let registry = Registry::load(manifest, options)?;
        let names = registry.select(patterns)?;
        let runner = match mode {
            Mode::Tools => None,
            Mode::Code => {
                // One session per task, one task at a time: none is kept warm.
                let mut entry = manifest.runner.clone();
                entry.policy.call_tools = names.clone();
                entry.warm_sessions = 0;
                Some(Runner::load(manifest, &entry, registry.clone())?)
            }
        };
        Self::new(model, registry, runner, &names, mode, limits)
    }

    /// The tools the model sees.
    pub fn tools(&self) -> &[ToolSpec] {
        &self.tools
    }

    /// The system prompt of this agent's mode, with its tools.
    pub fn system_prompt(&self) -> String {
        prompt::system(self.mode, &self.tools)
    }

    /// Runs one task to its answer, telling `on_event` each step as it happens.
    /// `Err` when it ends without an answer: out of steps or time, or the model failed.
    pub async fn run(
        &self,
        task: &str,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Answer> {
        let started = Instant::now();
        on_event(&Event::Start {
            task: task.to_string(),
            mode: self.mode,
            model: self.model.describe(),
            tools: self.tools.iter().map(|t| t.name.clone()).collect(),
        });
        let mut steps = 0;
        let result = self.steps(task, started, &mut steps, on_event).await;
        let duration_ms = ms(started.elapsed());
        match &result {
            Ok(a) => on_event(&Event::Answer {
                answer: a.text.clone(),
                steps,
                duration_ms,
            }),
            Err(e) => on_event(&Event::Failed {
                error: format!("{e:#}"),
                steps,
                duration_ms,
            }),
        }
        result
    }

    async fn steps(
        &self,
        task: &str,
        started: Instant,
        steps: &mut u32,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Answer> {
        let deadline = started + self.limits.task_timeout;
        let mut session = match &self.runner {
            Some(runner) if self.mode == Mode::Code => {
                let mut session = runner
                    .session()
                    .await
                    .context("failed to start the agent's Python session")?;
                session.set_caller("agent");
                Some(session)
            }
            _ => None,
        };
        let mut messages = vec![Message::system(self.system_prompt()), Message::user(task)];
        let mut offered = self.tools.clone();
        if self.mode == Mode::Tools {
            offered.push(final_answer_spec());
        }
        let answer = |value: Value, steps: u32| Answer {
            text: match &value {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            },
            value,
            steps,
            duration: started.elapsed(),
        };
        for step in 1..=self.limits.max_steps {
            *steps = step;
            let step_deadline = deadline.min(Instant::now() + self.limits.step_timeout);
            let budget = |at: Instant| {
                if at == deadline {
                    format!(
                        "the task ran past its time budget of {} s (`--timeout-s`)",
                        self.limits.task_timeout.as_secs_f64()
                    )
                } else {
                    format!(
                        "step {step} ran past its time budget of {} s (`--step-timeout-s`)",
                        self.limits.step_timeout.as_secs_f64()
                    )
                }
            };
            let request = Request {
                mode: self.mode,
                messages: &messages,
                tools: &offered,
            };
            let reply = match timeout_at(step_deadline.into(), self.model.complete(&request)).await
            {
                Ok(reply) => reply.with_context(|| format!("step {step}: the model failed"))?,
                Err(_) => bail!(
                    "{}: the model did not answer in time",
                    budget(step_deadline)
                ),
            };
            let ended = match session.as_mut() {
                Some(session) => {
                    self.code_step(session, step, reply, step_deadline, &mut messages, on_event)
                        .await
                }
                None => {
                    self.tools_step(step, reply, step_deadline, &budget, &mut messages, on_event)
                        .await
                }
            };
            if let Some(value) = ended {
                return Ok(answer(value, step));
            }
            if Instant::now() >= deadline {
                bail!("{}", budget(deadline));
            }
        }
        bail!(
            "the agent reached its limit of {} steps without a final answer (`--max-steps`)",
            self.limits.max_steps
        )
    }

    /// Runs the Python of a `code`-mode reply and tells the model what happened;
    /// `Some` answer when the task ends (`final_answer`, or a reply with no code).
    async fn code_step(
        &self,
        session: &mut Session,
        step: u32,
        reply: Message,
        step_deadline: Instant,
        messages: &mut Vec<Message>,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Option<Value> {
        let (thought, code) = split_code(&reply.content);
        let Some(code) = code else {
            return Some(Value::String(reply.content.trim().to_string()));
        };
        if !thought.is_empty() {
            on_event(&Event::Thought {
                step,
                text: thought,
            });
        }
        on_event(&Event::Code {
            step,
            code: code.clone(),
        });
        messages.push(Message::assistant(reply.content));
        let t0 = Instant::now();
        let outcome = session
            .run_within(&code, step_deadline.saturating_duration_since(t0))
            .await;
        let (text, error) = match &outcome {
            Ok(o) => (observe(o), o.error.is_some()),
            Err(e) => (format!("error: {}", e.message), true),
        };
        on_event(&Event::Observation {
            step,
            tool_call_id: None,
            text: text.clone(),
            error,
            duration_ms: ms(t0.elapsed()),
        });
        if let Ok(RunOutcome {
            final_answer: Some(value),
            ..
        }) = outcome
        {
            return Some(value);
        }
        messages.push(Message::user(format!("Observation:\n{text}")));
        None
    }

    /// Runs the tool calls of a `tools`-mode reply and answers each under its id;
    /// `Some` answer when the task ends (`final_answer`, or a reply with no call).
    async fn tools_step(
        &self,
        step: u32,
        reply: Message,
        step_deadline: Instant,
        budget: &dyn Fn(Instant) -> String,
        messages: &mut Vec<Message>,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Option<Value> {
        let content = reply.content.trim().to_string();
        if reply.tool_calls.is_empty() {
            if !content.is_empty() {
                return Some(Value::String(content));
            }
            messages.push(reply);
            messages.push(Message::user(
                "Your reply was empty. Call a tool, or answer the task in words.",
            ));
            return None;
        }
        if !content.is_empty() {
            on_event(&Event::Thought {
                step,
                text: content,
            });
        }
        messages.push(reply.clone());
        for call in &reply.tool_calls {
            on_event(&Event::ToolCall {
                step,
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            });
            if call.name == FINAL_ANSWER
                && let Some(value) = final_answer_of(&call.arguments)
            {
                return Some(value);
            }
            let t0 = Instant::now();
            let (text, error) = self.call(call, step_deadline, budget).await;
            on_event(&Event::Observation {
                step,
                tool_call_id: Some(call.id.clone()),
                text: text.clone(),
                error,
                duration_ms: ms(t0.elapsed()),
            });
            messages.push(Message::tool(&call.id, text));
        }
        None
    }

    /// Runs one tool call; returns the tool message and whether it is an error.
    async fn call(
        &self,
        call: &ToolCall,
        deadline: Instant,
        budget: &dyn Fn(Instant) -> String,
    ) -> (String, bool) {
        let fail = |kind: &str, message: String| {
            (
                json!({"error": {"kind": kind, "message": message}}).to_string(),
                true,
            )
        };
        if call.name == FINAL_ANSWER {
            return fail(
                "invalid-arguments",
                format!("`{FINAL_ANSWER}` takes a JSON object like {{\"answer\": \"...\"}}"),
            );
        }
        if !self.tools.iter().any(|t| t.name == call.name) {
            let names: Vec<&str> = self.tools.iter().map(|t| t.name.as_str()).collect();
            return fail(
                "not-found",
                format!(
                    "there is no tool named `{}`; the tools are: {}, {FINAL_ANSWER}",
                    call.name,
                    names.join(", ")
                ),
            );
        }
        let args: Value = if call.arguments.trim().is_empty() {
            json!({})
        } else {
            match serde_json::from_str(&call.arguments) {
                Ok(v) => v,
                Err(e) => {
                    return fail(
                        "invalid-arguments",
                        format!(
                            "the arguments of `{}` are not valid JSON ({e}); send one JSON object matching the tool's parameters",
                            call.name
                        ),
                    );
                }
            }
        };
        match timeout_at(
            deadline.into(),
            self.registry.call_as("agent", &call.name, &args),
        )
        .await
        {
            Ok(Ok(v)) => (v.to_string(), false),
            Ok(Err(e)) => (e.to_json().to_string(), true),
            Err(_) => fail(
                "timeout",
                format!("{}; the call was cancelled", budget(deadline)),
            ),
        }
    }
}
