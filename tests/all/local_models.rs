//! The agent loop against replies real small local models gave
//! (`tests/fixtures/local-model-replies.jsonl`: Qwen2.5-Coder-0.5B behind
//! llama.cpp's server), replayed by a scripted server: each shape leads to the
//! right tool call or run; corrections, the step-limit ask, the tool guard.

use crate::agent::{Scripted, agent, agent_with, calls, manifest, run, says};
use crate::support::*;
use serde_json::{Value, json};
use std::sync::Arc;
use witbox::Runner;
use witbox::agent::{Event, Limits, MAX_CORRECTIONS, MODULES, Mode, Sampling};

/// The recorded replies of `mode`, in file order: (task, content).
fn recorded(mode: &str) -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/local-model-replies.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["mode"] == mode)
        .map(|v| {
            (
                v["task"].as_str().unwrap().to_string(),
                v["reply"]["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn tool_calls(events: &[Event]) -> Vec<(String, Value, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ToolCall {
                name,
                arguments,
                from_text,
                ..
            } => Some((
                name.clone(),
                serde_json::from_str(arguments).unwrap_or(Value::Null),
                *from_text,
            )),
            _ => None,
        })
        .collect()
}

fn observations(events: &[Event]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Observation { text, error, .. } => Some((text.clone(), *error)),
            _ => None,
        })
        .collect()
}

/// The last message of the `n`th request the server received.
fn last_message(server: &Scripted, n: usize) -> Value {
    server.bodies()[n]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn recorded_text_tool_calls_run_like_native_ones() {
    let replies = recorded("tools");
    assert_eq!(replies.len(), 4);
    let expected = [
        (
            json!({"a": 1, "b": -3, "c": 2}),
            json!([{"re": 1.0, "im": 0.0}, {"re": 2.0, "im": 0.0}]),
        ),
        (
            json!({"a": 1, "b": 0, "c": 10}),
            json!([{"re": 0.0, "im": -3.1622776601683795}, {"re": 0.0, "im": 3.1622776601683795}]),
        ),
        (json!({"a": 17, "b": 0, "c": 1}), Value::Null),
        (
            json!({"a": 2, "b": 4, "c": 10}),
            json!([{"re": -1.0, "im": -2.0}, {"re": -1.0, "im": 2.0}]),
        ),
    ];
    for ((task, content), (arguments, roots)) in replies.iter().zip(expected) {
        let server = Scripted::start(vec![says(content), says("done")]);
        let (answer, events) = run(&agent(server.model(), Mode::Tools), task).await;
        assert_eq!(answer.unwrap().text, "done", "{task}");
        assert_eq!(
            tool_calls(&events),
            [("quadratic_solve".to_string(), arguments, true)],
            "{task}"
        );
        let observed = observations(&events);
        assert_eq!(observed.len(), 1);
        assert!(!observed[0].1, "{task}: {observed:?}");
        if !roots.is_null() {
            let got: Value = serde_json::from_str(&observed[0].0).unwrap();
            assert_eq!(got, roots, "{task}");
        }
        // The result goes back as text, with what to do next.
        let told = last_message(&server, 1);
        assert_eq!(told["role"], "user");
        let told = told["content"].as_str().unwrap();
        assert!(
            told.starts_with(&format!("`quadratic_solve` returned: {}", observed[0].0)),
            "{told}"
        );
        assert!(told.contains("call `final_answer`"), "{told}");
    }
}

#[tokio::test]
async fn the_other_text_forms_and_an_invented_tool() {
    let server = Scripted::start(vec![
        says(
            "<tool_call>\n{\"name\": \"sum_of_squares\", \"arguments\": {\"n\": 10}}\n</tool_call>",
        ),
        says(
            "Thought: I will use the solver.\nAction: quadratic_solve\nAction Input: {\"a\": 1, \"b\": 0, \"c\": -4}",
        ),
        says(
            "Action: {\"action\": \"final_answer\", \"action_input\": {\"answer\": \"x = -2 or x = 2\"}}",
        ),
    ]);
    let (answer, events) = run(&agent(server.model(), Mode::Tools), "solve x^2 = 4").await;
    assert_eq!(answer.unwrap().text, "x = -2 or x = 2");
    let called: Vec<String> = tool_calls(&events).into_iter().map(|c| c.0).collect();
    assert_eq!(
        called,
        ["sum_of_squares", "quadratic_solve", "final_answer"]
    );
    let observed = observations(&events);
    assert_eq!(
        observed[0],
        (
            json!({"error": {"kind": "not-found", "message": "there is no tool named `sum_of_squares`; the tools are: quadratic_solve, final_answer"}}).to_string(),
            true
        )
    );
    assert_eq!(
        serde_json::from_str::<Value>(&observed[1].0).unwrap(),
        json!([{"re": -2.0, "im": 0.0}, {"re": 2.0, "im": 0.0}])
    );
}

#[tokio::test]
async fn text_tool_calls_can_be_turned_off() {
    let (_, content) = recorded("tools").remove(0);
    let server = Scripted::start(vec![says(&content)]);
    let agent = agent(server.model(), Mode::Tools).with_text_tool_calls(false);
    let (answer, events) = run(&agent, "Solve x^2 - 3x + 2 = 0").await;
    assert_eq!(answer.unwrap().text, content.trim());
    assert!(tool_calls(&events).is_empty());
}

#[tokio::test]
async fn a_native_call_is_not_marked_as_text() {
    let server = Scripted::start(vec![
        calls(&[("c1", "quadratic_solve", r#"{"a": 1, "b": -3, "c": 2}"#)]),
        says("x = 1 or x = 2"),
    ]);
    let (_, events) = run(&agent(server.model(), Mode::Tools), "solve").await;
    assert!(!tool_calls(&events)[0].2);
    let json = serde_json::to_value(&events[1]).unwrap();
    assert!(json.get("from_text").is_none(), "{json}");
}

#[tokio::test]
async fn recorded_code_replies_run_up_to_their_imagined_output() {
    // The model printed the roots, imagined the output, then used a name it
    // never defined: only the code before the imagined output runs.
    let (task, content) = recorded("code").remove(0);
    let server = Scripted::start(vec![
        says(&content),
        says("```python\nfinal_answer(sorted((root1, root2)))\n```"),
    ]);
    let (answer, events) = run(&agent(server.model(), Mode::Code), &task).await;
    assert_eq!(answer.unwrap().value, json!([1.0, 2.0]));
    let code: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Code { code, .. } => Some(code),
            _ => None,
        })
        .collect();
    assert!(!code[0].contains("final_answer(x1)"), "{}", code[0]);
    assert_eq!(
        observations(&events)[0],
        ("stdout:\n(2.0, 1.0)\n".to_string(), false)
    );
}

#[tokio::test]
async fn a_reply_without_code_is_corrected_then_answered() {
    let (task, content) = recorded("code").remove(1);
    let server = Scripted::start(vec![
        says(&content),
        says("```python\nfinal_answer(sum(i * i for i in range(1, 11)))\n```"),
    ]);
    let (answer, events) = run(&agent(server.model(), Mode::Code), &task).await;
    let answer = answer.unwrap();
    assert_eq!(answer.value, json!(385));
    assert_eq!(answer.steps, 2);
    let told = last_message(&server, 1);
    assert_eq!(
        told,
        json!({"role": "user", "content": "No code block found. Write Python in a ```python block (it runs, and you see what it printed), or give your answer with `final_answer(answer)` in one."})
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Correction { step: 1, .. }))
    );
}

#[tokio::test]
async fn corrections_are_bounded_then_the_reply_is_the_answer() {
    let server = Scripted::start(vec![
        says("It is 385."),
        says("```python\n# your code\n```"),
        says("The answer is 385."),
    ]);
    let (answer, events) = run(&agent(server.model(), Mode::Code), "sum of squares").await;
    let answer = answer.unwrap();
    assert_eq!(answer.text, "The answer is 385.");
    assert_eq!(answer.steps, MAX_CORRECTIONS + 1);
    let corrections = events
        .iter()
        .filter(|e| matches!(e, Event::Correction { .. }))
        .count();
    assert_eq!(corrections, MAX_CORRECTIONS as usize);
    // A placeholder block is not run.
    assert!(!events.iter().any(|e| matches!(e, Event::Code { .. })));
}

#[tokio::test]
async fn a_final_answer_line_ends_the_task() {
    let server = Scripted::start(vec![says("Thought: I know it.\nFinal Answer: 385")]);
    let (answer, _) = run(&agent(server.model(), Mode::Code), "sum of squares").await;
    assert_eq!(answer.unwrap().text, "385");
}

#[tokio::test]
async fn code_that_redefines_a_tool_is_refused_and_not_run() {
    // The recorded reply redefines the tool, and is cut off at its token limit.
    let (task, content) = recorded("code").remove(3);
    let fixed = "```python\nprint(quadratic_solve(2, 4, 10))\n```";
    let server = Scripted::start(vec![
        says(&content),
        says("```python\ndef final_answer(x):\n    print(x)\nsolved = True\n```"),
        says("```python\nquadratic_solve = lambda a, b, c: []\nsolved = True\n```"),
        says(fixed),
        says("```python\nfinal_answer(globals().get('solved', 'never ran'))\n```"),
    ]);
    let (answer, events) = run(&agent(server.model(), Mode::Code), &task).await;
    assert_eq!(answer.unwrap().value, json!("never ran"));
    let observed = observations(&events);
    assert_eq!(
        observed[0],
        (
            "error: the code was not run: it defines `quadratic_solve`, which is a tool already defined in this session. Do not define, assign or import it; call it instead, for example `quadratic_solve(a=..., b=..., c=...)`.".to_string(),
            true
        )
    );
    assert!(
        observed[1]
            .0
            .starts_with("error: the code was not run: it defines `final_answer`"),
        "{}",
        observed[1].0
    );
    assert!(
        observed[2]
            .0
            .starts_with("error: the code was not run: it defines `quadratic_solve`"),
        "{}",
        observed[2].0
    );
    assert_eq!(
        observed[3],
        (
            "stdout:\n[{'re': -1.0, 'im': -2.0}, {'re': -1.0, 'im': 2.0}]\n".to_string(),
            false
        )
    );
}

#[tokio::test]
async fn using_a_tool_name_without_binding_it_runs() {
    let server = Scripted::start(vec![says(
        "```python\nf = quadratic_solve\nroots = [quadratic_solve(1, 0, -1)]\nprint('quadratic_solve' in dir(), len(roots))\nfinal_answer(f is quadratic_solve)\n```",
    )]);
    let (answer, _) = run(&agent(server.model(), Mode::Code), "use the tool").await;
    assert_eq!(answer.unwrap().value, json!(true));
}

#[tokio::test]
async fn at_the_step_limit_the_model_is_asked_for_a_final_answer() {
    let server = Scripted::start(vec![
        says("```python\nimport math\nprint(math.factorial(17))\n```"),
        says("```python\nx = math.factorial(17)\n```"),
        says("```python\nfinal_answer(x)\n```"),
    ]);
    let limits = Limits {
        max_steps: 2,
        ..Limits::default()
    };
    let agent = agent_with(server.model(), Mode::Code, limits, None);
    let (answer, events) = run(&agent, "What is 17 factorial?").await;
    let answer = answer.unwrap();
    assert_eq!(answer.value, json!(355687428096000u64));
    assert!(answer.after_step_limit);
    assert_eq!(answer.steps, 3);
    // The ask follows the last observation, in the same user message.
    let ask = last_message(&server, 2);
    assert_eq!(ask["role"], "user");
    let ask = ask["content"].as_str().unwrap();
    assert!(
        ask.starts_with("Observation:\n") && ask.contains("\n\nYou have used all 2 steps."),
        "{ask}"
    );
    let json = serde_json::to_value(events.last().unwrap()).unwrap();
    assert_eq!(json["event"], "answer");
    assert_eq!(json["after_step_limit"], true);

    // In tools mode, a reply in words is the answer.
    let call = calls(&[("c", "quadratic_solve", r#"{"a": 1, "b": 0, "c": -1}"#)]);
    let server = Scripted::start(vec![call.clone(), call, says("x = -1 or x = 1")]);
    let agent = agent_with(server.model(), Mode::Tools, limits, None);
    let (answer, _) = run(&agent, "solve x^2 = 1").await;
    let answer = answer.unwrap();
    assert_eq!(answer.text, "x = -1 or x = 1");
    assert!(answer.after_step_limit);
}

#[tokio::test]
async fn sampling_settings_reach_the_server_only_when_set() {
    let server = Scripted::start(vec![says("a"), says("b")]);
    let mut client = witbox::agent::OpenAi::new(&server.url(), "scripted", None).unwrap();
    let plain = agent(Arc::new(client.clone()), Mode::Tools);
    run(&plain, "first").await.0.unwrap();
    client.sampling = Sampling {
        temperature: Some(0.0),
        top_p: Some(0.9),
        seed: Some(7),
        max_tokens: Some(512),
    };
    let set = agent(Arc::new(client), Mode::Tools);
    let (_, events) = run(&set, "second").await;
    let bodies = server.bodies();
    for key in ["temperature", "top_p", "seed", "max_tokens"] {
        assert!(bodies[0].get(key).is_none(), "{key} sent unset");
    }
    assert_eq!(bodies[1]["temperature"], json!(0.0));
    assert_eq!(bodies[1]["top_p"], json!(0.9));
    assert_eq!(bodies[1]["seed"], json!(7));
    assert_eq!(bodies[1]["max_tokens"], json!(512));
    let start = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(
        start["sampling"],
        json!({"temperature": 0.0, "top_p": 0.9, "seed": 7, "max_tokens": 512})
    );
}

#[test]
fn the_cli_shows_sampling_and_checks_it() {
    let dir = TempDir::new("agent-sampling");
    let path = dir.0.join("witbox.toml");
    let text = entry("quadratic", "quadratic", "");
    std::fs::write(&path, &text).unwrap();
    let server = Scripted::start(vec![says("4")]);
    let out = witbox_command(&path)
        .args(["agent", "--model", "m", "--base-url", &server.url()])
        .args(["--temperature", "0", "--seed", "7", "what is 2+2?"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("sampling: temperature 0, seed 7"),
        "{stderr}"
    );
    assert_eq!(server.bodies()[0]["seed"], json!(7));

    let out = witbox_command(&path)
        .args(["agent", "--model", "m", "--base-url", &server.url()])
        .args(["--temperature", "3", "what is 2+2?"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("invalid sampling settings: the temperature must be between 0 and 2, got 3"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_code_prompt_has_examples_limits_and_modules_that_import() {
    let agent = agent(Arc::new(witbox::agent::Offline), Mode::Code);
    let prompt = agent.system_prompt();
    assert!(!prompt.contains("# your code"), "{prompt}");
    assert!(prompt.contains("exchange_rate(base=\"EUR\", quote=\"JPY\")"));
    assert!(prompt.contains("def quadratic_solve(a: float, b: float, c: float):"));
    assert!(
        prompt.contains("Each block may run 5 s, use 128 MiB of memory"),
        "{prompt}"
    );
    // Every module the prompt names imports in a session.
    let manifest = manifest(None);
    let registry = load(&entry("quadratic", "quadratic", "")).unwrap();
    let runner = compiling(|| Runner::load(&manifest, &manifest.runner, registry)).unwrap();
    let mut session = runner.session().await.unwrap();
    let code = format!("import {}\nprint('ok')", MODULES.join(", "));
    let outcome = session.run(&code).await.unwrap();
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.stdout, "ok\n");
}
