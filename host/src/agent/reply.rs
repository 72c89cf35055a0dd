//! Reading a model's reply: the code of a `code`-mode reply, the tool calls a
//! model wrote as text instead of native `tool_calls`, the answer of a
//! `final_answer` call.

use serde_json::Value;

/// The thought before the code, and the code of the reply's fenced Python
/// blocks (or `<code>` blocks), joined; `None` when there is none, or when the
/// blocks hold only comments (a copied placeholder).
///
/// Small models often go on after their code with the output they imagine
/// (```` ```output ```` or `Observation:`) and more code built on it: the reply
/// is read only up to there, as the real output is still to come.
pub fn split_code(reply: &str) -> (String, Option<String>) {
    let mut tagged = Vec::new();
    let mut untagged = Vec::new();
    let mut thought = None;
    let mut after_last = 0;
    for fence in fences(reply) {
        let found = !tagged.is_empty() || !untagged.is_empty();
        if found && imagines_output(&reply[after_last..fence.start]) {
            break;
        }
        thought.get_or_insert_with(|| reply[..fence.start].trim().to_string());
        match fence.lang.as_str() {
            "python" | "py" | "python3" => tagged.push(fence.body.to_string()),
            "" => untagged.push(fence.body.to_string()),
            "output" | "result" | "observation" | "text" | "console" if found => break,
            _ => {}
        }
        after_last = fence.end;
    }
    if tagged.is_empty() && untagged.is_empty() {
        if let Some((before, after)) = reply.split_once("<code>") {
            let code = after.split("</code>").next().unwrap_or(after);
            let code = code.trim_matches('\n').to_string() + "\n";
            return (before.trim().to_string(), has_code(&code).then_some(code));
        }
        return (reply.trim().to_string(), None);
    }
    let blocks = if tagged.is_empty() { untagged } else { tagged };
    let code = blocks.join("\n");
    (thought.unwrap_or_default(), has_code(&code).then_some(code))
}

/// One ```` ``` ```` block of a reply: its language tag (lower case), its body,
/// and where it starts and ends in the reply. An unclosed block runs to the end.
struct Fence<'a> {
    start: usize,
    lang: String,
    body: &'a str,
    end: usize,
}

/// The fenced blocks of a text, in order.
fn fences(text: &str) -> impl Iterator<Item = Fence<'_>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let start = at + text[at..].find("```")?;
        let after = start + 3;
        let line_end = text[after..].find('\n').map_or(text.len(), |i| after + i);
        let body_start = (line_end + 1).min(text.len());
        let close = text[body_start..]
            .find("```")
            .map_or(text.len(), |i| body_start + i);
        at = (close + 3).min(text.len());
        Some(Fence {
            start,
            lang: text[after..line_end].trim().to_lowercase(),
            body: &text[body_start..close],
            end: at,
        })
    })
}

/// Whether text between two blocks is the model imagining the output of the first.
fn imagines_output(between: &str) -> bool {
    between.lines().any(|l| {
        let l = l.trim_start().to_lowercase();
        l.starts_with("observation:") || l.starts_with("output:")
    })
}

/// Whether code has a statement: not only blank lines and comments.
fn has_code(code: &str) -> bool {
    code.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#')
    })
}

/// The text after a `Final Answer:` line (the ReAct habit), if the reply has one.
pub(super) fn final_answer_line(reply: &str) -> Option<String> {
    let lower = reply.to_lowercase();
    let at = lower.find("final answer:")?;
    let answer = reply[at + "final answer:".len()..].trim();
    (!answer.is_empty()).then(|| answer.to_string())
}

/// The answer of a `final_answer` call's JSON arguments: its `answer`, the one
/// value of an object with one key (models rename it), or a bare value.
pub(super) fn final_answer_of(arguments: &str) -> Option<Value> {
    match serde_json::from_str(arguments).ok()? {
        Value::Object(mut o) => match o.remove("answer") {
            Some(answer) => Some(answer),
            None if o.len() == 1 => o.into_iter().next().map(|(_, v)| v),
            None => None,
        },
        Value::Null => None,
        other => Some(other),
    }
}

/// A tool call read from a reply's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextCall {
    /// The tool's name, as written.
    pub name: String,
    /// The arguments as JSON text (a string the model wrote is kept as it is).
    pub arguments: String,
}

/// Text longer than this is not searched for bare JSON calls (each `{` is a try).
const MAX_SCANNED: usize = 64 << 10;

/// The tool calls written in a reply's text, in the forms models use when the
/// server gives them no native tool calls:
///
/// - `<tool_call>{"name": …, "arguments": {…}}</tool_call>` (Qwen, Hermes);
/// - a fenced block (```` ```json ````, ```` ```tool_call ````, bare ```` ``` ````)
///   holding such an object, or a list of them;
/// - `Action: {…}` (ReAct with JSON), and `Action: NAME` then `Action Input: {…}`;
/// - a bare JSON object anywhere in the text.
///
/// The object names the tool with `name` (or `tool`, `action`, `function.name`)
/// and gives the arguments as `arguments` (or `parameters`, `args`, `input`,
/// `action_input`, `tool_input`); an object without both is not a call.
pub fn text_tool_calls(reply: &str) -> Vec<TextCall> {
    let tagged = tagged_calls(reply);
    if !tagged.is_empty() {
        return tagged;
    }
    let fenced = fenced_calls(reply);
    if !fenced.is_empty() {
        return fenced;
    }
    if let Some(call) = react_call(reply) {
        return vec![call];
    }
    if reply.len() <= MAX_SCANNED {
        for (at, _) in reply.match_indices(['{', '[']) {
            let calls = json_prefix(&reply[at..])
                .map(|v| calls_in(&v))
                .unwrap_or_default();
            if !calls.is_empty() {
                return calls;
            }
        }
    }
    Vec::new()
}

fn tagged_calls(reply: &str) -> Vec<TextCall> {
    let mut calls = Vec::new();
    let mut rest = reply;
    while let Some(open) = rest.find("<tool_call>") {
        let body = &rest[open + "<tool_call>".len()..];
        let close = body.find("</tool_call>").unwrap_or(body.len());
        let inner = strip_fence(body[..close].trim());
        if let Some(v) = json_prefix(inner) {
            calls.extend(calls_in(&v));
        }
        rest = &body[close..];
    }
    calls
}

fn fenced_calls(reply: &str) -> Vec<TextCall> {
    fences(reply)
        .filter(|f| {
            matches!(
                f.lang.as_str(),
                "" | "json" | "tool_call" | "tool_code" | "javascript"
            )
        })
        .filter_map(|f| serde_json::from_str::<Value>(f.body.trim()).ok())
        .flat_map(|v| calls_in(&v))
        .collect()
}

/// `Action: {json}`, or `Action: NAME` followed by `Action Input: {json}`.
fn react_call(reply: &str) -> Option<TextCall> {
    let mut lines = reply.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(action) = strip_prefix_ci(line, "action:") else {
            continue;
        };
        let action = strip_fence(action.trim());
        if action.starts_with('{') {
            let start = reply.find(action)?;
            return json_prefix(&reply[start..]).and_then(|v| calls_in(&v).into_iter().next());
        }
        let name = action.trim_matches(['`', '"', '\'', ' ']);
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return None;
        }
        let input = lines.find_map(|l| strip_prefix_ci(l, "action input:"))?;
        let start = reply.find(input)?;
        let arguments = match json_prefix(&reply[start..]) {
            Some(v) => v.to_string(),
            None => input.trim().to_string(),
        };
        return Some(TextCall {
            name: name.to_string(),
            arguments,
        });
    }
    None
}

fn strip_prefix_ci<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let head = line.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &line[prefix.len()..])
}

/// The text inside one fenced block, if it is one.
fn strip_fence(text: &str) -> &str {
    let Some(body) = text.strip_prefix("```") else {
        return text;
    };
    let body = body.split_once('\n').map_or("", |(_, b)| b);
    body.rsplit_once("```").map_or(body, |(b, _)| b).trim()
}

/// The JSON value at the start of `text`, ignoring what follows it.
fn json_prefix(text: &str) -> Option<Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .next()?
        .ok()
}

/// The calls a JSON value describes: one object, or a list of them.
fn calls_in(v: &Value) -> Vec<TextCall> {
    match v {
        Value::Array(items) => {
            let calls: Vec<TextCall> = items.iter().filter_map(call_of).collect();
            // A list counts only if every item is a call.
            if calls.len() == items.len() {
                calls
            } else {
                Vec::new()
            }
        }
        v => call_of(v).into_iter().collect(),
    }
}

fn call_of(v: &Value) -> Option<TextCall> {
    let v = v.as_object()?;
    if let Some(function) = v.get("function").and_then(Value::as_object) {
        return call_of(&Value::Object(function.clone()));
    }
    let name = ["name", "tool", "action", "tool_name"]
        .iter()
        .find_map(|k| v.get(*k)?.as_str())?
        .trim();
    let arguments = [
        "arguments",
        "parameters",
        "args",
        "input",
        "action_input",
        "tool_input",
    ]
    .iter()
    .find_map(|k| v.get(*k))?;
    if name.is_empty() {
        return None;
    }
    Some(TextCall {
        name: name.to_string(),
        arguments: match arguments {
            Value::String(s) => s.clone(),
            Value::Null => "{}".into(),
            other => other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_blocks_are_found() {
        let (thought, code) =
            split_code("Let me see.\n```python\nx = 1\n```\nand\n```py\nprint(x)\n```");
        assert_eq!(thought, "Let me see.");
        assert_eq!(code.as_deref(), Some("x = 1\n\nprint(x)\n"));
        assert_eq!(split_code("```\n1 + 1\n```").1.as_deref(), Some("1 + 1\n"));
        assert_eq!(
            split_code("Thought: go\n<code>\nfinal_answer(2)\n</code>")
                .1
                .as_deref(),
            Some("final_answer(2)\n")
        );
        assert_eq!(split_code("The answer is 4.").1, None);
        assert_eq!(split_code("```json\n{}\n```").1, None);
    }

    #[test]
    fn a_placeholder_is_not_code() {
        assert_eq!(split_code("```python\n# your code\n```").1, None);
        assert_eq!(split_code("<code>\n# todo\n\n</code>").1, None);
    }

    #[test]
    fn imagined_output_ends_the_code() {
        let reply = "Compute.\n```python\nr = 1 + 1\nprint(r)\n```\n```output\n3\n```\nSo:\n```python\nfinal_answer(r2)\n```";
        assert_eq!(
            split_code(reply).1.as_deref(),
            Some("r = 1 + 1\nprint(r)\n")
        );
        let reply = "```py\nprint(2)\n```\nObservation: 2\n```py\nfinal_answer(2)\n```";
        assert_eq!(split_code(reply).1.as_deref(), Some("print(2)\n"));
    }

    fn call(name: &str, arguments: &str) -> TextCall {
        TextCall {
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn tool_calls_written_as_text_are_read() {
        let q = call("quadratic_solve", r#"{"a":1,"b":-3,"c":2}"#);
        for reply in [
            "```json\n{\n  \"name\": \"quadratic_solve\",\n  \"arguments\": {\"a\": 1, \"b\": -3, \"c\": 2}\n}\n```",
            r#"{"name": "quadratic_solve", "arguments": {"a": 1, "b": -3, "c": 2}}"#,
            r#"I will solve it. {"name": "quadratic_solve", "parameters": {"a": 1, "b": -3, "c": 2}} and then answer."#,
            "<tool_call>\n{\"name\": \"quadratic_solve\", \"arguments\": {\"a\": 1, \"b\": -3, \"c\": 2}}\n</tool_call>",
            "Thought: solve it\nAction: {\"action\": \"quadratic_solve\", \"action_input\": {\"a\": 1, \"b\": -3, \"c\": 2}}",
            "Thought: solve it\nAction: quadratic_solve\nAction Input: {\"a\": 1, \"b\": -3, \"c\": 2}\n",
            r#"```
{"type": "function", "function": {"name": "quadratic_solve", "arguments": "{\"a\":1,\"b\":-3,\"c\":2}"}}
```"#,
        ] {
            assert_eq!(text_tool_calls(reply), std::slice::from_ref(&q), "{reply}");
        }
        let two = "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n<tool_call>{\"name\": \"b\", \"arguments\": {\"x\": 1}}</tool_call>";
        assert_eq!(
            text_tool_calls(two),
            [call("a", "{}"), call("b", r#"{"x":1}"#)]
        );
    }

    #[test]
    fn prose_and_plain_json_are_not_calls() {
        for reply in [
            "The roots are x = 1 and x = 2.",
            r#"{"name": "Paris"}"#,
            r#"```json
{"roots": [1, 2]}
```"#,
            "Action: I will think more.",
            "[1, 2, 3]",
        ] {
            assert_eq!(text_tool_calls(reply), [], "{reply}");
        }
    }

    #[test]
    fn final_answer_lines() {
        assert_eq!(
            final_answer_line("Thought: done\nFinal Answer: 385").as_deref(),
            Some("385")
        );
        assert_eq!(final_answer_line("final answer:"), None);
        assert_eq!(final_answer_line("385"), None);
    }
}
