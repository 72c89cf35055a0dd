//! Reading a model's reply: the code of a `code`-mode reply, the answer of a
//! `final_answer` call.

use serde_json::Value;

/// The thought before the code, and the code of the reply's fenced Python
/// blocks (or `<code>` blocks), joined; `None` when there is none.
pub fn split_code(reply: &str) -> (String, Option<String>) {
    let mut tagged = Vec::new();
    let mut untagged = Vec::new();
    let mut thought = None;
    let mut rest = reply;
    while let Some(open) = rest.find("```") {
        thought.get_or_insert_with(|| reply[..reply.len() - rest.len() + open].trim().to_string());
        let after = &rest[open + 3..];
        let line_end = after.find('\n').unwrap_or(after.len());
        let lang = after[..line_end].trim().to_lowercase();
        let body = &after[(line_end + 1).min(after.len())..];
        let close = body.find("```").unwrap_or(body.len());
        let code = body[..close].to_string();
        match lang.as_str() {
            "python" | "py" | "python3" => tagged.push(code),
            "" => untagged.push(code),
            _ => {}
        }
        rest = &body[(close + 3).min(body.len())..];
    }
    if tagged.is_empty() && untagged.is_empty() {
        if let Some((before, after)) = reply.split_once("<code>") {
            let code = after.split("</code>").next().unwrap_or(after);
            return (
                before.trim().to_string(),
                Some(code.trim_matches('\n').to_string() + "\n"),
            );
        }
        return (reply.trim().to_string(), None);
    }
    let blocks = if tagged.is_empty() { untagged } else { tagged };
    (thought.unwrap_or_default(), Some(blocks.join("\n")))
}

/// The `answer` of a `final_answer` call's JSON arguments.
pub(super) fn final_answer_of(arguments: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(arguments).ok()?;
    v.get("answer").cloned()
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
}
