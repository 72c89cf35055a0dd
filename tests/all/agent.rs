//! The agent loop against a local OpenAI-compatible server that plays scripted
//! replies, and the offline planner end to end through the real components.

use crate::fixture::Fixture;
use crate::support::*;
use serde_json::{Value, json};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use witbox::agent::{Event, Limits, Mode, Model, Offline, OpenAi};
use witbox::{Agent, Manifest};

/// A Chat Completions server on 127.0.0.1:0 that answers each request with the
/// next scripted `(status, body)` and records what it was sent.
pub struct Scripted {
    addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Scripted {
    pub fn start(replies: Vec<(u16, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let replies = Arc::new(Mutex::new(replies.into_iter()));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (seen, replies) = (seen.clone(), replies.clone());
                std::thread::spawn(move || answer(stream, &seen, &replies));
            }
        });
        Self { addr, requests }
    }

    /// The base URL, as `OPENAI_BASE_URL` would be.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The JSON bodies received so far.
    pub fn bodies(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.1.clone())
            .collect()
    }

    /// A client for it that retries quickly.
    pub fn model(&self) -> Arc<dyn Model> {
        let mut client = OpenAi::new(&self.url(), "scripted", Some("sk-test".into())).unwrap();
        client.backoff = Duration::from_millis(10);
        client.timeout = Duration::from_secs(10);
        Arc::new(client)
    }
}

fn answer(
    stream: TcpStream,
    seen: &Mutex<Vec<(String, Value)>>,
    replies: &Mutex<std::vec::IntoIter<(u16, String)>>,
) {
    let Ok(Some((head, body))) = crate::fixture::read_request(&stream) else {
        return;
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().unwrap().push((head, body));
    let (status, text) = replies.lock().unwrap().next().unwrap_or((
        400,
        json!({"error": {"message": "the script has no more replies"}}).to_string(),
    ));
    let _ = crate::fixture::write_json(&stream, status, &text);
}

/// A completion whose message is `content`.
pub fn says(content: &str) -> (u16, String) {
    let body = json!({"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
    ]});
    (200, body.to_string())
}

/// A completion that calls tools: `(id, name, arguments text)`.
pub fn calls(calls: &[(&str, &str, &str)]) -> (u16, String) {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
        .collect();
    let body = json!({"choices": [{"index": 0, "finish_reason": "tool_calls",
        "message": {"role": "assistant", "content": null, "tool_calls": calls}}]});
    (200, body.to_string())
}

/// The manifest: quadratic, weather (at `weather_url` when given), and the Python runner.
pub fn manifest(weather_url: Option<&str>) -> Manifest {
    let mut text = entry("quadratic", "quadratic", "");
    if let Some(url) = weather_url {
        text.push_str(&entry(
            "weather",
            "weather",
            &format!("[component.policy]\nallow-http = [{url:?}]\n[component.config]\ngeocoding-url = {url:?}\nforecast-url = {url:?}\n"),
        ));
    }
    text.push_str(&format!(
        "[runner]\npath = {:?}\n[runner.policy]\ntimeout-ms = 5000\n",
        guest("python-runner")
    ));
    Manifest::parse(&text, &root()).unwrap()
}

pub fn agent_with(
    model: Arc<dyn Model>,
    mode: Mode,
    limits: Limits,
    weather: Option<&str>,
) -> Agent {
    compiling(|| Agent::from_manifest(&manifest(weather), options(), model, mode, &[], limits))
        .unwrap()
}

pub fn agent(model: Arc<dyn Model>, mode: Mode) -> Agent {
    agent_with(model, mode, Limits::default(), None)
}

/// Runs a task; returns the answer (or the error's text) and the events.
pub async fn run(agent: &Agent, task: &str) -> (Result<witbox::agent::Answer, String>, Vec<Event>) {
    let mut events = Vec::new();
    let result = agent.run(task, &mut |e| events.push(e.clone())).await;
    (result.map_err(|e| format!("{e:#}")), events)
}

#[tokio::test]
async fn tools_mode_sends_schemas_runs_calls_and_returns_results() {
    let server = Scripted::start(vec![
        calls(&[("call_q", "quadratic_solve", r#"{"a": 1, "b": -3, "c": 2}"#)]),
        says("The roots are x = 1 and x = 2."),
    ]);
    let agent = agent(server.model(), Mode::Tools);
    let (answer, events) = run(&agent, "solve x^2 - 3x + 2 = 0").await;
    let answer = answer.unwrap();
    assert_eq!(answer.text, "The roots are x = 1 and x = 2.");
    assert_eq!(answer.steps, 2);

    let bodies = server.bodies();
    assert_eq!(bodies.len(), 2);
    let first = &bodies[0];
    assert_eq!(first["model"], "scripted");
    let names: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["quadratic_solve", "final_answer"]);
    let registry = load(&entry("quadratic", "quadratic", "")).unwrap();
    let quadratic = registry.tool("quadratic_solve").unwrap();
    assert_eq!(first["tools"][0]["type"], "function");
    assert_eq!(
        first["tools"][0]["function"]["parameters"],
        quadratic.parameters
    );
    assert_eq!(
        first["tools"][0]["function"]["description"],
        quadratic.description.as_str()
    );
    assert_eq!(first["messages"][0]["role"], "system");
    assert!(
        first["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("`quadratic_solve`")
    );
    assert_eq!(
        first["messages"][1],
        json!({"role": "user", "content": "solve x^2 - 3x + 2 = 0"})
    );

    // The second request carries the call and its result, under the call's id.
    let messages = bodies[1]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(messages[2]["content"], Value::Null);
    assert_eq!(messages[2]["tool_calls"][0]["id"], "call_q");
    assert_eq!(
        messages[2]["tool_calls"][0]["function"]["name"],
        "quadratic_solve"
    );
    assert_eq!(messages[3]["role"], "tool");
    assert_eq!(messages[3]["tool_call_id"], "call_q");
    let result: Value = serde_json::from_str(messages[3]["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        result,
        json!([{"re": 1.0, "im": 0.0}, {"re": 2.0, "im": 0.0}])
    );

    // The API key went as a bearer token.
    let head = &server.requests.lock().unwrap()[0].0;
    assert!(
        head.starts_with("POST /v1/chat/completions HTTP/1.1"),
        "{head}"
    );
    assert!(
        head.contains("authorization: Bearer sk-test")
            || head.contains("Authorization: Bearer sk-test"),
        "{head}"
    );

    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            Event::Start { .. } => "start",
            Event::Thought { .. } => "thought",
            Event::Code { .. } => "code",
            Event::ToolCall { .. } => "tool_call",
            Event::Correction { .. } => "correction",
            Event::Observation { .. } => "observation",
            Event::Answer { .. } => "answer",
            Event::Failed { .. } => "failed",
        })
        .collect();
    assert_eq!(kinds, ["start", "tool_call", "observation", "answer"]);
}

#[tokio::test]
async fn the_final_answer_tool_ends_the_task() {
    let server = Scripted::start(vec![calls(&[(
        "c1",
        "final_answer",
        r#"{"answer": "42"}"#,
    )])]);
    let (answer, _) = run(
        &agent(server.model(), Mode::Tools),
        "what is six times seven?",
    )
    .await;
    assert_eq!(answer.unwrap().text, "42");
    assert_eq!(server.bodies().len(), 1);
}

#[tokio::test]
async fn the_loop_stops_at_max_steps() {
    let call = calls(&[("c", "quadratic_solve", r#"{"a": 1, "b": 0, "c": -1}"#)]);
    let server = Scripted::start(vec![call.clone(), call.clone(), call]);
    let limits = Limits {
        max_steps: 2,
        ..Limits::default()
    };
    let agent = agent_with(server.model(), Mode::Tools, limits, None);
    let (answer, events) = run(&agent, "loop forever").await;
    assert_eq!(
        answer.unwrap_err(),
        "the agent reached its limit of 2 steps without a final answer (`--max-steps`), and gave none when asked for one"
    );
    // Two steps, then the ask for a final answer.
    let bodies = server.bodies();
    assert_eq!(bodies.len(), 3);
    let ask = bodies[2]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(ask["role"], "user");
    assert!(
        ask["content"]
            .as_str()
            .unwrap()
            .starts_with("You have used all 2 steps."),
        "{ask}"
    );
    assert!(matches!(
        events.last(),
        Some(Event::Failed { steps: 3, .. })
    ));
}

#[tokio::test]
async fn bad_tool_calls_are_observations_not_crashes() {
    let server = Scripted::start(vec![
        calls(&[
            ("c1", "quadratic_solve", "{a: 1"),
            ("c2", "rm_rf", "{}"),
            ("c3", "quadratic_solve", r#"{"a": "one", "b": 0, "c": 0}"#),
        ]),
        says("I could not solve it."),
    ]);
    let (answer, _) = run(&agent(server.model(), Mode::Tools), "solve something").await;
    assert_eq!(answer.unwrap().text, "I could not solve it.");
    let messages = server.bodies()[1]["messages"].as_array().unwrap().clone();
    let tool = |id: &str| -> Value {
        let m = messages.iter().find(|m| m["tool_call_id"] == id).unwrap();
        serde_json::from_str(m["content"].as_str().unwrap()).unwrap()
    };
    let e1 = tool("c1");
    assert_eq!(e1["error"]["kind"], "invalid-arguments");
    assert!(
        e1["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("the arguments of `quadratic_solve` are not valid JSON"),
        "{e1}"
    );
    assert_eq!(
        tool("c2")["error"],
        json!({"kind": "not-found", "message": "there is no tool named `rm_rf`; the tools are: quadratic_solve, final_answer"})
    );
    let e3 = tool("c3");
    assert_eq!(e3["error"]["kind"], "invalid-arguments", "{e3}");
    assert!(
        e3["error"]["message"].as_str().unwrap().contains("`a`"),
        "{e3}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let server = Scripted::start(vec![
        (500, r#"{"error": {"message": "overloaded"}}"#.into()),
        (429, r#"{"error": {"message": "slow down"}}"#.into()),
        says("fine now"),
    ]);
    let (answer, _) = run(&agent(server.model(), Mode::Tools), "hello").await;
    assert_eq!(answer.unwrap().text, "fine now");
    assert_eq!(server.bodies().len(), 3);
}

#[tokio::test]
async fn client_errors_are_clear_and_not_retried() {
    let cases = [
        (
            (
                401,
                r#"{"error": {"message": "Incorrect API key provided: sk-test"}}"#,
            ),
            "step 1: the model failed: the model server refused the API key (HTTP 401: Incorrect API key provided: sk-test); set `OPENAI_API_KEY` or `--api-key`",
        ),
        (
            (
                400,
                r#"{"error": {"message": "registry.ollama.ai/library/gemma:2b does not support tools"}}"#,
            ),
            "step 1: the model failed: the model `scripted` does not support tool calling (HTTP 400: registry.ollama.ai/library/gemma:2b does not support tools); try `--mode code`, which needs no tool-call support",
        ),
        (
            (200, "<html>not json</html>"),
            "step 1: the model failed: the model at `http://ADDR/v1/chat/completions` gave an answer witbox cannot read: the answer is not JSON (expected value at line 1 column 1): <html>not json</html>",
        ),
    ];
    for ((status, body), expected) in cases {
        let server = Scripted::start(vec![(status, body.to_string())]);
        let (answer, _) = run(&agent(server.model(), Mode::Tools), "hello").await;
        assert_eq!(
            answer.unwrap_err(),
            expected.replace("ADDR", &server.addr.to_string())
        );
        assert_eq!(
            server.bodies().len(),
            1,
            "HTTP {status} must not be retried"
        );
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut client = OpenAi::new(&format!("http://127.0.0.1:{port}/v1"), "m", None).unwrap();
    client.backoff = Duration::from_millis(5);
    let (answer, _) = run(&agent(Arc::new(client), Mode::Tools), "hello").await;
    let e = answer.unwrap_err();
    assert!(
        e.starts_with(&format!(
            "step 1: the model failed: failed to reach the model at `http://127.0.0.1:{port}/v1/chat/completions`: failed to connect to 127.0.0.1:{port}"
        )),
        "{e}"
    );
}

#[tokio::test]
async fn code_mode_runs_python_that_calls_tools() {
    let server = Scripted::start(vec![
        says("Solve it first.\n```python\nr = quadratic_solve(1, -3, 2)\nprint(len(r))\n```"),
        says("```python\nfinal_answer([z['re'] for z in r])\n```"),
    ]);
    let (answer, events) = run(&agent(server.model(), Mode::Code), "roots of x^2-3x+2").await;
    let answer = answer.unwrap();
    assert_eq!(answer.value, json!([1.0, 2.0]));
    assert_eq!(answer.text, "[1.0,2.0]");
    let bodies = server.bodies();
    assert!(
        bodies[0].get("tools").is_none(),
        "code mode sends no tool schemas"
    );
    let system = bodies[0]["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("def quadratic_solve(a: float, b: float, c: float):"),
        "{system}"
    );
    assert!(system.contains("Solves `a·x² + b·x + c = 0`"), "{system}");
    assert_eq!(
        bodies[1]["messages"][3],
        json!({"role": "user", "content": "Observation:\nstdout:\n2\n"})
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Thought { text, .. } if text == "Solve it first."))
    );
}

#[tokio::test]
async fn code_mode_keeps_state_across_a_failed_step() {
    let server = Scripted::start(vec![
        says("```python\ny = 10\n1 / 0\n```"),
        says("```python\nfinal_answer(y * 2)\n```"),
    ]);
    let (answer, events) = run(&agent(server.model(), Mode::Code), "double ten").await;
    assert_eq!(answer.unwrap().value, json!(20));
    let observation = server.bodies()[1]["messages"][3]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        observation.starts_with("Observation:\nerror:\nTraceback"),
        "{observation}"
    );
    assert!(
        observation.ends_with("ZeroDivisionError: division by zero\n"),
        "{observation}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Observation { error: true, .. }))
    );
}

#[tokio::test]
async fn a_step_budget_stops_runaway_code_and_the_task_goes_on() {
    let server = Scripted::start(vec![
        says("```python\nkept = 1\n```"),
        says("```python\nwhile True: pass\n```"),
        says("```python\nfinal_answer(globals().get('kept', 'gone'))\n```"),
    ]);
    let limits = Limits {
        step_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let agent = agent_with(server.model(), Mode::Code, limits, None);
    let started = std::time::Instant::now();
    let (answer, _) = run(&agent, "spin").await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // The timeout killed the instance; the restarted session has the globals
    // of the last completed step back.
    assert_eq!(answer.unwrap().value, json!(1));
    let observation = server.bodies()[2]["messages"][5]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        observation.starts_with(
            "Observation:\nerror: Timeout: the run was stopped after its time limit of"
        ),
        "{observation}"
    );
    assert!(
        observation.contains(
            "(the Python session restarted because a run passed its time limit: the globals of the last completed cell were restored)"
        ),
        "{observation}"
    );
}

#[tokio::test]
async fn agents_and_runs_share_nothing() {
    let a = Scripted::start(vec![
        says("```python\nsecret = 'A'\nimport time\ntime.sleep(0.2)\nfinal_answer(secret)\n```"),
        says("```python\nfinal_answer(globals().get('secret'))\n```"),
    ]);
    let b = Scripted::start(vec![says(
        "```python\nfinal_answer(globals().get('secret'))\n```",
    )]);
    let (agent_a, agent_b) = (agent(a.model(), Mode::Code), agent(b.model(), Mode::Code));
    let ((first, _), (other, _)) = tokio::join!(run(&agent_a, "set"), run(&agent_b, "peek"));
    assert_eq!(first.unwrap().value, json!("A"));
    assert_eq!(
        other.unwrap().value,
        Value::Null,
        "another agent saw the secret"
    );
    // A second run of the same agent gets a fresh session too.
    let (again, _) = run(&agent_a, "peek").await;
    assert_eq!(
        again.unwrap().value,
        Value::Null,
        "a second run saw the first run's globals"
    );
}

#[tokio::test]
async fn offline_planner_solves_equations_as_people_write_them() {
    let agent = agent(Arc::new(Offline), Mode::Tools);
    for (task, expected) in [
        ("solve x^2 + 3x + 2 = 0", "x = -2 or x = -1"),
        ("2x² - 4x = -2", "x = 1 (a double root)"),
        ("x^2 = 9", "x = -3 or x = 3"),
        (
            "Solve x^2 + 2x + 5 = 0 please",
            "x = -1 - 2i or x = -1 + 2i",
        ),
    ] {
        let (answer, events) = run(&agent, task).await;
        assert_eq!(answer.unwrap().text, expected, "{task}");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::ToolCall { name, .. } if name == "quadratic_solve"))
        );
    }
    let code = witbox::agent::Agent::from_manifest(
        &manifest(None),
        options(),
        Arc::new(Offline),
        Mode::Code,
        &[],
        Limits::default(),
    )
    .unwrap();
    let (answer, _) = run(&code, "solve x^2 - 5x + 6 = 0").await;
    assert_eq!(answer.unwrap().text, "x = 2 or x = 3");
}

#[tokio::test]
async fn offline_planner_answers_weather_questions_through_the_tool() {
    let server = Fixture::start();
    let url = server.url();
    let tools = agent_with(
        Arc::new(Offline),
        Mode::Tools,
        Limits::default(),
        Some(&url),
    );
    let (answer, _) = run(&tools, "what's the weather in Paris?").await;
    assert_eq!(
        answer.unwrap().text,
        "In Paris, France it is 21.5 °C and overcast, with wind at 11.2 km/h."
    );
    let code = agent_with(Arc::new(Offline), Mode::Code, Limits::default(), Some(&url));
    let (answer, _) = run(&code, "How is the weather in Tokyo today?").await;
    assert_eq!(
        answer.unwrap().text,
        "In Tokyo, Japan it is 26.3 °C and clear sky, with wind at 7.5 km/h."
    );
    let (answer, _) = run(&tools, "weather in Atlantis").await;
    assert!(answer.unwrap().text.starts_with("The tool failed: "));
    assert_eq!(server.hits().len(), 2 + 2 + 1);
}

#[tokio::test]
async fn offline_planner_computes_in_code_mode() {
    let agent = agent(Arc::new(Offline), Mode::Code);
    let (answer, events) = run(&agent, "what is the sum of the squares of 1..100?").await;
    assert_eq!(answer.unwrap().value, json!(338350));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Code { code, .. } if code.contains("range(1, 101)")))
    );
    let (answer, _) = run(&agent, "mean and standard deviation of 3, 5, 8, 13").await;
    assert_eq!(
        answer.unwrap().text,
        "mean = 7.25, standard deviation = 4.34932945"
    );
    let (answer, _) = run(&agent, "what is 2^10 + 3*7?").await;
    assert_eq!(answer.unwrap().value, json!(1045));
}

#[tokio::test]
async fn offline_planner_declines_what_it_cannot_do() {
    let agent = agent(Arc::new(Offline), Mode::Tools);
    let (answer, _) = run(&agent, "write a poem about wasm").await;
    let text = answer.unwrap().text;
    assert!(
        text.starts_with("The offline planner cannot do that"),
        "{text}"
    );
    assert!(
        text.ends_with("Use --model to ask a language model."),
        "{text}"
    );
    let (answer, _) = run(&agent, "what is the sum of 1..10?").await;
    assert_eq!(
        answer.unwrap().text,
        "The offline planner answers computations by writing Python: run this task with `--mode code`."
    );
}

#[test]
fn the_cli_prints_the_transcript_and_the_answer() {
    let dir = TempDir::new("agent-cli");
    let manifest = dir.write(
        "witbox.toml",
        format!(
            "{}[runner]\npath = {:?}\n",
            entry("quadratic", "quadratic", ""),
            guest("python-runner")
        ),
    );
    let out = witbox_command(&manifest)
        .args(["agent", "solve 2x² - 4x = -2"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "x = 1 (a double root)\n");
    assert!(
        stderr.contains("model: offline: a deterministic built-in planner, not a language model"),
        "{stderr}"
    );
    assert!(
        stderr.contains("→ quadratic_solve {\"a\":2.0,\"b\":-4.0,\"c\":2.0}"),
        "{stderr}"
    );

    let out = witbox_command(&manifest)
        .args([
            "agent",
            "--json",
            "--mode",
            "code",
            "what is the sum of the squares of 1..100?",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["start", "thought", "code", "observation", "answer"]);
    assert_eq!(events[4]["answer"], "338350");

    let out = witbox_command(&manifest)
        .args(["agent", "--model", "m", "--base-url", "ftp://x", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: the model base URL `ftp://x` must start with http:// or https:// and name a host\n"
    );

    let help = witbox_command(&manifest)
        .args(["agent", "--help"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout)
            .contains("a deterministic built-in planner, NOT a language\nmodel")
    );
}
