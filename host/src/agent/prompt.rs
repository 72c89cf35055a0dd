//! What the model is told: the system prompt of each mode (`host/prompts/`),
//! with the tools as a list (`tools` mode) or as Python signatures (`code` mode),
//! and the `final_answer` tool `tools` mode adds.

use super::{Mode, ToolSpec};
use serde_json::{Value, json};

/// The system prompts; `{tools}` is replaced by the tools.
const TOOLS_PROMPT: &str = include_str!("../../prompts/tools.md");
const CODE_PROMPT: &str = include_str!("../../prompts/code.md");

/// The system prompt of `mode`, with `tools`.
pub(super) fn system(mode: Mode, tools: &[ToolSpec]) -> String {
    match mode {
        Mode::Tools => {
            let names: Vec<String> = tools.iter().map(|t| format!("- `{}`", t.name)).collect();
            TOOLS_PROMPT.replace("{tools}", &names.join("\n"))
        }
        Mode::Code => {
            let defs: Vec<String> = tools.iter().map(python_signature).collect();
            let tools = if defs.is_empty() {
                "(no tools: plain Python only)".to_string()
            } else {
                defs.join("\n\n")
            };
            CODE_PROMPT.replace("{tools}", &tools)
        }
    }
}

/// The tool `tools` mode adds to end a task.
pub const FINAL_ANSWER: &str = "final_answer";

/// The `final_answer` tool's spec, which `tools` mode adds to the registry's.
pub fn final_answer_spec() -> ToolSpec {
    ToolSpec {
        name: FINAL_ANSWER.into(),
        description:
            "Give the final answer to the task. Call it once you know the answer; the task ends."
                .into(),
        parameters: json!({
            "type": "object",
            "properties": {"answer": {"type": "string", "description": "The answer to the task, in words."}},
            "required": ["answer"],
            "additionalProperties": false
        }),
    }
}

/// Python for one tool, as the code prompt shows it.
fn python_signature(tool: &ToolSpec) -> String {
    let props = tool.parameters["properties"].as_object();
    let required: Vec<&str> = tool.parameters["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut params = Vec::new();
    let mut keyword_only = false;
    let mut docs = Vec::new();
    for (name, schema) in props.into_iter().flatten() {
        let ty = match schema["type"].as_str() {
            Some("integer") => "int",
            Some("number") => "float",
            Some("string") => "str",
            Some("boolean") => "bool",
            Some("array") => "list",
            Some("object") => "dict",
            _ => "Any",
        };
        if required.contains(&name.as_str()) {
            params.push(format!("{name}: {ty}"));
        } else {
            if !keyword_only {
                params.push("*".into());
                keyword_only = true;
            }
            params.push(format!("{name}: {ty} | None = None"));
        }
        if let Some(d) = schema["description"].as_str() {
            docs.push(format!("        {name}: {d}"));
        }
    }
    let mut out = format!("def {}({}):\n    \"\"\"", tool.name, params.join(", "));
    for (i, line) in tool.description.lines().enumerate() {
        if i > 0 && !line.is_empty() {
            out.push_str("    ");
        }
        out.push_str(line);
        out.push('\n');
    }
    if !docs.is_empty() {
        out.push_str("\n    Arguments:\n");
        out.push_str(&docs.join("\n"));
        out.push('\n');
    }
    out.push_str("    \"\"\"");
    out
}
