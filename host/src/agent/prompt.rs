//! What the model is told: the system prompt of each mode (`host/prompts/`),
//! with the tools as a list (`tools` mode) or as Python signatures and the
//! session's limits (`code` mode); the `final_answer` tool `tools` mode adds;
//! the ask at the step limit; the check for code that redefines a tool.

use super::{Mode, ToolSpec};
use crate::limits::Limits;
use serde_json::{Value, json};

/// The system prompts; `{tools}` is replaced by the tools.
const TOOLS_PROMPT: &str = include_str!("../../prompts/tools.md");
const CODE_PROMPT: &str = include_str!("../../prompts/code.md");

/// Modules of the standard library the code prompt names (a test imports each
/// one in a session).
pub const MODULES: &[&str] = &[
    "math",
    "cmath",
    "statistics",
    "fractions",
    "decimal",
    "random",
    "itertools",
    "functools",
    "collections",
    "re",
    "json",
    "datetime",
    "calendar",
    "string",
    "textwrap",
    "csv",
    "heapq",
    "bisect",
    "hashlib",
];

/// What the code prompt says about the agent's Python session.
pub(super) struct SessionFacts {
    limits: Limits,
    scratch_mb: u64,
    packages: Vec<String>,
}

impl SessionFacts {
    pub(super) fn of(limits: Limits, scratch_mb: u64, packages: Vec<String>) -> Self {
        Self {
            limits,
            scratch_mb,
            packages,
        }
    }

    fn describe(&self) -> String {
        let l = &self.limits;
        let files = if self.scratch_mb > 0 {
            format!(
                "a private working folder for files ({} MiB)",
                self.scratch_mb
            )
        } else {
            "no files".into()
        };
        format!(
            "the standard library ({}, ..., and asyncio without sockets), {}; {files}; no network, \
             no subprocesses, no threads (use the tools for the outside world). \
             Each block may run {} s, use {} MiB of memory, print {} KiB and make {} tool calls.",
            MODULES.join(", "),
            crate::packages::describe(&self.packages),
            l.timeout.as_secs_f64(),
            l.memory_bytes >> 20,
            l.max_output >> 10,
            l.max_tool_calls
        )
    }
}

/// The system prompt of `mode`, with `tools` (and in `code` mode, the session).
pub(super) fn system(mode: Mode, tools: &[ToolSpec], session: Option<&SessionFacts>) -> String {
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
            let session = session.map_or_else(|| "plain Python.".into(), SessionFacts::describe);
            CODE_PROMPT
                .replace("{tools}", &tools)
                .replace("{session}", &session)
        }
    }
}

/// What the model is told at the step limit: answer now.
pub(super) fn at_step_limit(mode: Mode, max_steps: u32) -> String {
    let how = match mode {
        Mode::Tools => "call `final_answer`, or reply with the answer in words",
        Mode::Code => {
            "reply with `final_answer(answer)` in a ```python block, or with `Final Answer:` and the answer"
        }
    };
    format!(
        "You have used all {max_steps} steps. From what you found above, give your final answer to the task now: {how}. If you could not finish, give your best answer and say what is missing."
    )
}

/// What follows the results of calls a model wrote as text.
pub(super) const AFTER_TEXT_CALL: &str = "Call another tool the same way if you need one, or give the answer: call `final_answer`, or reply with the answer in words.";

/// A cell that prints which of `names` the code `code` binds (defines, assigns,
/// imports, deletes), reading it with Python's own parser; it runs nothing of
/// `code` and leaves no global behind. Code that does not parse (a reply cut
/// off at its token limit) is read line by line for `def`, `class` and `=`.
pub(super) fn guard_cell(code: &str, names: &[&str]) -> String {
    let code = serde_json::to_string(code).expect("a string serializes");
    let names = serde_json::to_string(names).expect("strings serialize");
    format!(
        r#"def __witbox_binds(src, names):
    import ast, re
    try:
        tree = ast.parse(src)
    except SyntaxError:
        line = re.compile(r"\s*(?:async\s+def|def|class)\s+(\w+)|\s*(\w+)\s*(?::[^=]*)?=(?!=)")
        bound = {{g for m in map(line.match, src.splitlines()) if m for g in m.groups() if g}}
        return [n for n in names if n in bound]
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, ast.alias):
            bound.add(node.asname or node.name.split(".")[0])
    return [n for n in names if n in bound]
print(*__witbox_binds({code}, {names}))
del __witbox_binds
"#
    )
}

/// A call of a tool with its parameters as placeholders: `f(a=..., b=...)`.
pub(super) fn python_call(tool: &ToolSpec) -> String {
    let args: Vec<String> = tool.parameters["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, _)| format!("{name}=..."))
        .collect();
    format!("{}({})", tool.name, args.join(", "))
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
