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
pub use model::{Message, Model, Request, Role, Sampling, ToolCall, ToolSpec};
pub use offline::Offline;
pub use openai::OpenAi;
pub use prompt::{FINAL_ANSWER, MODULES, final_answer_spec};
pub use reply::{TextCall, split_code, text_tool_calls};

use reply::{final_answer_line, final_answer_of};

use crate::engine::EngineOptions;
use crate::manifest::Manifest;
use crate::python::{Runner, Session, observe};
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

/// Where a `code`-mode step is: its number, its deadline, the corrections spent.
struct CodeStep<'a> {
    step: u32,
    deadline: Instant,
    corrections: &'a mut u32,
}

/// A model, the tools it may use, and (in `code` mode) the Python runner.
pub struct Agent {
    model: Arc<dyn Model>,
    registry: Arc<Registry>,
    runner: Option<Arc<Runner>>,
    tools: Vec<ToolSpec>,
    mode: Mode,
    limits: Limits,
    text_tool_calls: bool,
}

/// How many times a `code`-mode reply without code is corrected before it counts
/// as the answer.
pub const MAX_CORRECTIONS: u32 = 2;

/// What a `code`-mode reply with neither code nor `final_answer` is told.
const NO_CODE: &str = "No code block found. Write Python in a ```python block (it runs, and you see what it printed), or give your answer with `final_answer(answer)` in one.";

/// Where a reply's tool calls came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Native,
    Text,
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
            text_tool_calls: true,
        })
    }

    /// Whether `tools` mode reads tool calls a model wrote in its text when the
    /// server returned none (on by default; `--text-tool-calls off`).
    pub fn with_text_tool_calls(mut self, on: bool) -> Self {
        self.text_tool_calls = on;
        self
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

    /// The system prompt of this agent's mode, with its tools (and, in `code`
    /// mode, the limits of the session).
    pub fn system_prompt(&self) -> String {
        let session = self.runner.as_ref().map(|r| {
            prompt::SessionFacts::of(
                r.sandbox().limits.clone(),
                r.scratch_mb,
                r.packages().to_vec(),
            )
        });
        prompt::system(self.mode, &self.tools, session.as_ref())
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
            sampling: self.model.sampling(),
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
                after_step_limit: a.after_step_limit,
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
        let answer = |value: Value, steps: u32, after_step_limit: bool| Answer {
            text: match &value {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            },
            value,
            steps,
            duration: started.elapsed(),
            after_step_limit,
        };
        let mut corrections = 0;
        let last = self.limits.max_steps + 1;
        for step in 1..=last {
            let at_limit = step == last;
            if at_limit {
                if Instant::now() >= deadline {
                    break;
                }
                let ask = prompt::at_step_limit(self.mode, self.limits.max_steps);
                // After an observation: one user message, as some chat templates
                // refuse two in a row.
                match messages.last_mut() {
                    Some(last) if last.role == Role::User => {
                        last.content = format!("{}\n\n{ask}", last.content.trim_end());
                    }
                    _ => messages.push(Message::user(ask)),
                }
            }
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
                    // The last ask takes a reply without code as the answer.
                    let mut spent = MAX_CORRECTIONS;
                    let step = CodeStep {
                        step,
                        deadline: step_deadline,
                        corrections: if at_limit {
                            &mut spent
                        } else {
                            &mut corrections
                        },
                    };
                    self.code_step(session, step, reply, &mut messages, on_event)
                        .await
                }
                None => {
                    self.tools_step(step, reply, step_deadline, &budget, &mut messages, on_event)
                        .await
                }
            };
            if let Some(value) = ended {
                return Ok(answer(value, step, at_limit));
            }
            if Instant::now() >= deadline {
                bail!("{}", budget(deadline));
            }
        }
        bail!(
            "the agent reached its limit of {} steps without a final answer (`--max-steps`), and gave none when asked for one",
            self.limits.max_steps
        )
    }

    /// Runs the Python of a `code`-mode reply and tells the model what happened;
    /// `Some` answer when the task ends (`final_answer`, a `Final Answer:` line,
    /// or a reply with no code once the corrections are spent).
    async fn code_step(
        &self,
        session: &mut Session,
        at: CodeStep<'_>,
        reply: Message,
        messages: &mut Vec<Message>,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Option<Value> {
        let step = at.step;
        let (thought, code) = split_code(&reply.content);
        if code.is_none() {
            if let Some(answer) = final_answer_line(&reply.content) {
                return Some(Value::String(answer));
            }
            if *at.corrections >= MAX_CORRECTIONS {
                return Some(Value::String(reply.content.trim().to_string()));
            }
        }
        if !thought.is_empty() {
            on_event(&Event::Thought {
                step,
                text: thought,
            });
        }
        let Some(code) = code else {
            *at.corrections += 1;
            on_event(&Event::Correction {
                step,
                text: NO_CODE.to_string(),
            });
            messages.push(Message::assistant(reply.content));
            messages.push(Message::user(NO_CODE));
            return None;
        };
        on_event(&Event::Code {
            step,
            code: code.clone(),
        });
        messages.push(Message::assistant(reply.content));
        let t0 = Instant::now();
        let (text, error, value, calls) = match self.redefined(session, &code).await {
            Some(refusal) => (refusal, true, None, 0),
            None => {
                let outcome = session
                    .run_within(&code, at.deadline.saturating_duration_since(t0))
                    .await;
                match outcome {
                    Ok(o) => (observe(&o), o.error.is_some(), o.final_answer, o.tool_calls),
                    Err(e) => (format!("error: {}", e.message), true, None, 0),
                }
            }
        };
        on_event(&Event::Observation {
            step,
            tool_call_id: None,
            text: text.clone(),
            error,
            duration_ms: ms(t0.elapsed()),
            tool_calls: Some(calls),
        });
        if value.is_some() {
            return value;
        }
        messages.push(Message::user(format!("Observation:\n{text}")));
        None
    }

    /// The refusal of code that binds a tool's name (`def quadratic_solve(...)`,
    /// `final_answer = ...`), which would hide the real tool from the model; `None`
    /// when it binds none. Python's own parser reads the code, in the session.
    async fn redefined(&self, session: &mut Session, code: &str) -> Option<String> {
        let names: Vec<&str> = self
            .tools
            .iter()
            .map(|t| t.name.as_str())
            .chain([FINAL_ANSWER])
            .filter(|name| code.contains(name))
            .collect();
        if names.is_empty() {
            return None;
        }
        let check = prompt::guard_cell(code, &names);
        let found = session.run(&check).await.ok()?;
        let bound: Vec<&str> = found.stdout.split_whitespace().collect();
        let first = *bound.first()?;
        let call = self
            .tools
            .iter()
            .find(|t| t.name == first)
            .map_or_else(|| format!("{FINAL_ANSWER}(answer)"), prompt::python_call);
        let shown: Vec<String> = bound.iter().map(|n| format!("`{n}`")).collect();
        Some(format!(
            "error: the code was not run: it defines {}, which {} already defined in this session. Do not define, assign or import {}; call it instead, for example `{call}`.",
            shown.join(", "),
            if bound.len() == 1 {
                "is a tool"
            } else {
                "are tools"
            },
            if bound.len() == 1 { "it" } else { "them" },
        ))
    }

    /// Runs the tool calls of a `tools`-mode reply (native, or written in its text)
    /// and answers each; `Some` answer when the task ends (`final_answer`, or a
    /// reply with no call).
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
        let (source, calls) = if !reply.tool_calls.is_empty() {
            (Source::Native, reply.tool_calls.clone())
        } else if self.text_tool_calls {
            let calls = text_tool_calls(&content)
                .into_iter()
                .enumerate()
                .map(|(i, c)| ToolCall {
                    id: format!("text_{step}_{}", i + 1),
                    name: c.name,
                    arguments: c.arguments,
                })
                .collect();
            (Source::Text, calls)
        } else {
            (Source::Native, Vec::new())
        };
        if calls.is_empty() {
            if !content.is_empty() {
                return Some(Value::String(content));
            }
            messages.push(reply);
            messages.push(Message::user(
                "Your reply was empty. Call a tool, or answer the task in words.",
            ));
            return None;
        }
        if source == Source::Native && !content.is_empty() {
            on_event(&Event::Thought {
                step,
                text: content,
            });
        }
        messages.push(reply);
        let mut results = Vec::new();
        for call in &calls {
            on_event(&Event::ToolCall {
                step,
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
                from_text: source == Source::Text,
            });
            if call.name == FINAL_ANSWER {
                let written = (source == Source::Text)
                    .then(|| call.arguments.trim())
                    .filter(|a| !a.is_empty() && serde_json::from_str::<Value>(a).is_err());
                if let Some(value) = final_answer_of(&call.arguments)
                    .or_else(|| written.map(|a| Value::String(a.to_string())))
                {
                    return Some(value);
                }
            }
            let t0 = Instant::now();
            let (text, error) = self.call(call, step_deadline, budget).await;
            on_event(&Event::Observation {
                step,
                tool_call_id: Some(call.id.clone()),
                text: text.clone(),
                error,
                duration_ms: ms(t0.elapsed()),
                tool_calls: None,
            });
            match source {
                Source::Native => messages.push(Message::tool(&call.id, text)),
                Source::Text => results.push(format!("`{}` returned: {text}", call.name)),
            }
        }
        // Calls read from text are answered in text: the server never issued them,
        // and a model without native calls may not read tool messages.
        if source == Source::Text {
            results.push(prompt::AFTER_TEXT_CALL.to_string());
            messages.push(Message::user(results.join("\n")));
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
