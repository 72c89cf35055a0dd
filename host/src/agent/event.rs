//! What an agent run reports: its [`Event`]s as they happen, and the [`Answer`].

use super::{Mode, Sampling};
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// What happens during a run, as it happens (`--json` prints one per line).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
// The fields are named for the JSON events they become; each variant says what it is.
#[allow(missing_docs)]
pub enum Event {
    /// The task starts: what it is, the mode, the model and the tools offered.
    Start {
        task: String,
        mode: Mode,
        model: String,
        /// The sampling settings sent to the server (`{}`: its defaults); none
        /// for a model that does not sample.
        #[serde(skip_serializing_if = "Option::is_none")]
        sampling: Option<Sampling>,
        tools: Vec<String>,
    },
    /// The model's text that is not code or a call.
    Thought { step: u32, text: String },
    /// The Python the model wrote (`code` mode).
    Code { step: u32, code: String },
    /// A tool call the model made (`tools` mode); `arguments` as the model wrote
    /// them. `from_text`: read from the reply's text, not a native tool call.
    ToolCall {
        step: u32,
        id: String,
        name: String,
        arguments: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        from_text: bool,
    },
    /// What the model is told when its reply had no code (`code` mode).
    Correction { step: u32, text: String },
    /// What the model is told about its code or call; `tool_calls`: how many
    /// tools its code called (`code` mode).
    Observation {
        step: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        tool_call_id: Option<String>,
        text: String,
        error: bool,
        duration_ms: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        tool_calls: Option<u32>,
    },
    /// The task ended with an answer.
    /// `after_step_limit`: the model gave it when asked, at the step limit.
    Answer {
        answer: String,
        steps: u32,
        duration_ms: f64,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        after_step_limit: bool,
    },
    /// The task ended without one (steps, time, or the model failed).
    Failed {
        error: String,
        steps: u32,
        duration_ms: f64,
    },
}

/// The end of a task.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The answer as text: a string as it is, anything else as JSON.
    pub text: String,
    /// The answer as JSON (`final_answer`'s value, or the model's text).
    pub value: Value,
    /// Model replies it took.
    pub steps: u32,
    /// How long the task took.
    pub duration: Duration,
    /// The steps ran out, and the model gave this answer when asked for one.
    pub after_step_limit: bool,
}
