//! What the agent loop and a model say to each other: chat messages in the
//! OpenAI shape, the tools on offer, and the [`Model`] trait a backend implements.

use super::Mode;
use serde::Serialize;
use serde_json::Value;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The instructions (the system prompt).
    System,
    /// The task, and observations in `code` mode.
    User,
    /// The model.
    Assistant,
    /// The result of one tool call, answering the call with the same id.
    Tool,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// The text; empty for an assistant message that only calls tools.
    pub content: String,
    /// The tools an assistant message calls.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a tool message: the id of the call it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// The answer to the tool call `id`.
    pub fn tool(id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(id.into()),
            ..Self::new(Role::Tool, content)
        }
    }
}

/// A tool call as the model wrote it. `arguments` is the model's raw text, which
/// may not be JSON at all: the loop checks it and tells the model when it is not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    /// The call's id, which its answer names.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, as the model wrote them.
    pub arguments: String,
}

/// A tool as the model sees it: the OpenAI `function` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    /// The tool's name.
    pub name: String,
    /// What it does, from its WIT docs.
    pub description: String,
    /// The JSON Schema of the arguments object.
    pub parameters: Value,
}

/// One request to the model: the conversation so far and the tools it may call.
pub struct Request<'a> {
    /// In `tools` mode the model answers with tool calls; in `code` mode with Python.
    pub mode: Mode,
    /// The conversation so far.
    pub messages: &'a [Message],
    /// The registry's tools (in `code` mode they are Python functions instead).
    pub tools: &'a [ToolSpec],
}

impl Request<'_> {
    /// The task: the first user message.
    pub fn task(&self) -> &str {
        self.messages
            .iter()
            .find(|m| m.role == Role::User)
            .map_or("", |m| m.content.as_str())
    }
}

/// How the server samples the model's replies; each `None` leaves its default.
/// Set them for an eval: the servers' defaults (llama.cpp's temperature 0.8)
/// make two runs of one task differ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sampling {
    /// `temperature`: 0 picks the likeliest token every time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// `top_p`: sample only from the tokens that make up this much probability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// `seed`, for servers that honour it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// `max_tokens`: the longest a reply may be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

impl Sampling {
    /// Checks each value set is in the range servers accept.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(t) = self.temperature {
            anyhow::ensure!(
                (0.0..=2.0).contains(&t),
                "the temperature must be between 0 and 2, got {t}"
            );
        }
        if let Some(p) = self.top_p {
            anyhow::ensure!(
                p > 0.0 && p <= 1.0,
                "top-p must be above 0 and at most 1, got {p}"
            );
        }
        if let Some(n) = self.max_tokens {
            anyhow::ensure!(n > 0, "max-tokens must be at least 1");
        }
        Ok(())
    }

    /// `temperature 0, seed 7`, or `server defaults` when none is set.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.temperature {
            parts.push(format!("temperature {t}"));
        }
        if let Some(p) = self.top_p {
            parts.push(format!("top-p {p}"));
        }
        if let Some(s) = self.seed {
            parts.push(format!("seed {s}"));
        }
        if let Some(n) = self.max_tokens {
            parts.push(format!("max-tokens {n}"));
        }
        if parts.is_empty() {
            "server defaults".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A boxed future, as [`Model::complete`] returns.
pub use crate::store::BoxFuture;

/// A model backend: given the conversation, it writes the next assistant message.
pub trait Model: Send + Sync {
    /// One line for the transcript header: what this model is.
    fn describe(&self) -> String;

    /// The sampling settings it sends (the transcript header shows them); `None`
    /// for a model that does not sample (the offline planner).
    fn sampling(&self) -> Option<Sampling> {
        None
    }

    /// The next assistant message. `Err` is a failure of the backend itself
    /// (unreachable, refused, out of retries); the loop stops on it.
    fn complete<'a>(&'a self, request: &'a Request<'a>) -> BoxFuture<'a, anyhow::Result<Message>>;
}
