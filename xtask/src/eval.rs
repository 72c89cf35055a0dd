//! `cargo xtask eval`: a fixed suite of tasks (`xtask/eval/tasks.toml`) through
//! `witbox agent --json`, each answer checked here, each task run `--repeat`
//! times; a table of solve rates, steps, tool calls and wall time.
//!
//! With no `--base-url` it runs the offline planner and a scripted model: a
//! Chat Completions server on 127.0.0.1:0 that replays each task's script (the
//! reply shapes of small local models), so CI runs the whole loop with no model.
//! With `--base-url` it runs against that OpenAI-compatible server.

use crate::{demo_manifest, fixture, root, step};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const USAGE: &str = "\
usage: cargo xtask eval [--base-url URL --model M] [--mode tools|code|both] [--repeat K]
                        [--task ID]... [--tasks FILE] [--temperature T] [--top-p P]
                        [--seed N] [--max-tokens N] [--check]

  without --base-url   the offline planner and the scripted model (CI)
  --base-url URL       an OpenAI-compatible server (Ollama: http://localhost:11434/v1);
                       --model names the model (`local` by default), OPENAI_API_KEY the key
  --mode               tools, code or both (both)
  --repeat K           runs per task (3): sampling makes runs differ, so rates count
  --task ID            only these tasks (repeatable)
  --check              fail unless the scripted model solves every run
  sampling flags       passed to `witbox agent`

Transcripts (one JSON event per line) are kept in target/eval/runs/.
";

/// One task of the suite.
struct Task {
    id: String,
    text: String,
    numbers: Vec<f64>,
    tolerance: f64,
    words: Vec<String>,
    max_steps: Option<u32>,
    scripts: HashMap<&'static str, Vec<Value>>,
}

/// What one `witbox agent` run gave.
struct Run {
    solved: bool,
    steps: u32,
    tool_calls: u32,
    seconds: f64,
}

struct Options {
    base_url: Option<String>,
    model: String,
    modes: Vec<&'static str>,
    repeat: u32,
    only: Vec<String>,
    tasks: PathBuf,
    passed: Vec<String>,
    check: bool,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        base_url: None,
        model: "local".into(),
        modes: vec!["tools", "code"],
        repeat: 3,
        only: Vec::new(),
        tasks: root().join("xtask/eval/tasks.toml"),
        passed: Vec::new(),
        check: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| format!("`{arg}` needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--base-url" => o.base_url = Some(value()?),
            "--model" => o.model = value()?,
            "--mode" => {
                o.modes = match value()?.as_str() {
                    "tools" => vec!["tools"],
                    "code" => vec!["code"],
                    "both" => vec!["tools", "code"],
                    other => return Err(format!("unknown mode `{other}`: tools, code or both")),
                }
            }
            "--repeat" => {
                o.repeat = value()?
                    .parse()
                    .ok()
                    .filter(|&k| k > 0)
                    .ok_or("`--repeat` takes a number above 0")?
            }
            "--task" => o.only.push(value()?),
            "--tasks" => o.tasks = PathBuf::from(value()?),
            "--temperature" | "--top-p" | "--seed" | "--max-tokens" => {
                let v = value()?;
                o.passed.extend([arg.clone(), v]);
            }
            "--check" => o.check = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n\n{USAGE}")),
        }
    }
    Ok(o)
}

pub fn eval(args: &[String]) -> Result<(), String> {
    let o = options(args)?;
    let mut tasks = load(&o.tasks)?;
    if !o.only.is_empty() {
        for id in &o.only {
            if !tasks.iter().any(|t| &t.id == id) {
                return Err(format!("there is no task `{id}` in {}", o.tasks.display()));
            }
        }
        tasks.retain(|t| o.only.contains(&t.id));
    }
    let weather = fixture::Fixture::start();
    let dir = root().join("target/eval");
    let runs_dir = dir.join("runs");
    let _ = std::fs::remove_dir_all(&runs_dir);
    std::fs::create_dir_all(&runs_dir).map_err(|e| e.to_string())?;
    let shipped = std::fs::read_to_string(root().join("witbox.toml"))
        .map_err(|e| format!("failed to read witbox.toml: {e}"))?;
    let manifest = dir.join("witbox.toml");
    let text = demo_manifest::derive(&shipped, &weather.url())?;
    std::fs::write(&manifest, text).map_err(|e| e.to_string())?;
    // The runner's packages are found through the lock beside the manifest.
    std::fs::copy(root().join("witbox.lock"), dir.join("witbox.lock"))
        .map_err(|e| format!("failed to copy witbox.lock: {e}"))?;

    let tasks = Arc::new(tasks);
    let scripted;
    let models: Vec<(String, Vec<String>)> = match &o.base_url {
        Some(url) => vec![(
            o.model.clone(),
            ["--model", &o.model, "--base-url", url]
                .map(String::from)
                .to_vec(),
        )],
        None => {
            scripted = Scripted::start(tasks.clone())?;
            vec![
                ("offline".into(), vec!["--model".into(), "offline".into()]),
                (
                    "scripted".into(),
                    ["--model", "scripted", "--base-url", &scripted.url()]
                        .map(String::from)
                        .to_vec(),
                ),
            ]
        }
    };
    let total = models.len() * o.modes.len() * tasks.len() * o.repeat as usize;
    step(&format!(
        "eval: {} tasks × {} mode(s) × {} model(s) × {} runs = {total} runs of `witbox agent`",
        tasks.len(),
        o.modes.len(),
        models.len(),
        o.repeat
    ));
    let terminal = std::io::stderr().is_terminal();
    let mut done = 0;
    let mut tables = Vec::new();
    let mut failed_scripted = Vec::new();
    for (label, model_args) in &models {
        for mode in &o.modes {
            let mut rows = Vec::new();
            for task in tasks.iter() {
                let mut runs = Vec::new();
                for k in 1..=o.repeat {
                    let log = runs_dir.join(format!("{label}-{mode}-{}-{k}.jsonl", task.id));
                    let run = run_once(&manifest, model_args, mode, task, &o.passed, &log)?;
                    done += 1;
                    if terminal {
                        eprint!(
                            "\r[{done}/{total}] {label} {mode} {:<20} {}\x1b[K",
                            task.id,
                            if run.solved { "solved" } else { "not solved" }
                        );
                    }
                    if !run.solved && label == "scripted" {
                        failed_scripted.push(log.display().to_string());
                    }
                    runs.push(run);
                }
                rows.push((task.id.clone(), runs));
            }
            if !terminal {
                eprintln!("[{done}/{total}] {label} · {mode} mode done");
            }
            tables.push((label.clone(), *mode, rows));
        }
    }
    if terminal {
        eprintln!();
    }
    print_tables(&tables, o.repeat);
    if o.check && !failed_scripted.is_empty() {
        return Err(format!(
            "the scripted model did not solve {} run(s); see {}",
            failed_scripted.len(),
            failed_scripted.join(", ")
        ));
    }
    Ok(())
}

/// The tasks of a suite file.
fn load(path: &Path) -> Result<Vec<Task>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("failed to read {}: {e}", path.display()))?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e| format!("{} is not valid TOML: {e}", path.display()))?;
    let entries = doc
        .get("task")
        .and_then(toml::Value::as_array)
        .ok_or_else(|| format!("{} has no [[task]] list", path.display()))?;
    let mut tasks = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry = entry.as_table().ok_or("a [[task]] is not a table")?;
        let field = |key: &str| entry.get(key);
        let string = |key: &str| -> Result<String, String> {
            field(key)
                .and_then(toml::Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("task {} has no `{key}` string", i + 1))
        };
        let id = string("id")?;
        let numbers = field("numbers")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
            .map(|v| {
                v.as_float()
                    .or_else(|| v.as_integer().map(|n| n as f64))
                    .ok_or_else(|| format!("task `{id}`: `numbers` holds a non-number"))
            })
            .collect::<Result<Vec<f64>, String>>()?;
        let words: Vec<String> = field("text")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_lowercase))
            .collect();
        if numbers.is_empty() && words.is_empty() {
            return Err(format!(
                "task `{id}` checks nothing: give `numbers` or `text`"
            ));
        }
        let mut scripts = HashMap::new();
        for (mode, key) in [("tools", "tools-script"), ("code", "code-script")] {
            let script: Vec<Value> = field(key)
                .and_then(toml::Value::as_array)
                .into_iter()
                .flatten()
                .map(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?;
            if script.is_empty() {
                return Err(format!("task `{id}` has no `{key}`"));
            }
            scripts.insert(mode, script);
        }
        tasks.push(Task {
            text: string("task")?,
            numbers,
            tolerance: field("tolerance")
                .and_then(toml::Value::as_float)
                .unwrap_or(1e-3),
            words,
            max_steps: field("max-steps")
                .and_then(toml::Value::as_integer)
                .map(|n| n as u32),
            scripts,
            id,
        });
    }
    Ok(tasks)
}

/// Runs `witbox agent --json` once and reads its events.
fn run_once(
    manifest: &Path,
    model: &[String],
    mode: &str,
    task: &Task,
    passed: &[String],
    log: &Path,
) -> Result<Run, String> {
    let mut cmd = Command::new(root().join("target/debug/witbox"));
    cmd.arg("--manifest")
        .arg(manifest)
        .args(["agent", "--json", "--mode", mode])
        .args(model)
        .args(passed);
    if let Some(n) = task.max_steps {
        cmd.args(["--max-steps", &n.to_string()]);
    }
    cmd.arg(&task.text);
    let t0 = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("failed to start witbox: {e}"))?;
    let seconds = t0.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut log_text = stdout.to_string();
    if !out.stderr.is_empty() {
        log_text.push_str(&json!({"stderr": String::from_utf8_lossy(&out.stderr)}).to_string());
        log_text.push('\n');
    }
    std::fs::write(log, log_text).map_err(|e| e.to_string())?;
    let events: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut tool_calls = 0;
    let mut steps = 0;
    let mut answer = None;
    for e in &events {
        match e["event"].as_str() {
            Some("tool_call") if e["name"] != "final_answer" => tool_calls += 1,
            Some("observation") => tool_calls += e["tool_calls"].as_u64().unwrap_or(0) as u32,
            Some("answer") => {
                answer = e["answer"].as_str().map(str::to_string);
                steps = e["steps"].as_u64().unwrap_or(0) as u32;
            }
            Some("failed") => steps = e["steps"].as_u64().unwrap_or(0) as u32,
            _ => {}
        }
    }
    Ok(Run {
        solved: answer.is_some_and(|a| check(task, &a)),
        steps,
        tool_calls,
        seconds,
    })
}

/// Whether an answer holds every number and every text the task expects.
fn check(task: &Task, answer: &str) -> bool {
    let found = numbers_in(answer);
    let close = |want: f64| {
        found
            .iter()
            .any(|&got| (got - want).abs() <= task.tolerance * want.abs().max(1.0))
    };
    let lower = answer.to_lowercase();
    task.numbers.iter().all(|&n| close(n))
        && task
            .words
            .iter()
            .all(|w| w.split('|').any(|alt| lower.contains(alt)))
}

/// The numbers written in a text: `-2`, `7.25`, `3.5e+14`, `355,687,428,096,000`.
fn numbers_in(text: &str) -> Vec<f64> {
    let text = text.replace('−', "-");
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let negative = i > 0 && chars[i - 1] == '-';
        // An exponent (`x^2`, `x**2`) is not an answer.
        let exponent = i > 0 && (chars[i - 1] == '^' || chars[i - 1] == '*');
        let start = i;
        let mut s = String::new();
        while i < chars.len() {
            let c = chars[i];
            let next_digits = chars.get(i + 1..i + 4).is_some_and(|d| {
                d.iter().all(char::is_ascii_digit)
                    && !chars.get(i + 4).is_some_and(char::is_ascii_digit)
            });
            if c.is_ascii_digit() {
                s.push(c);
            } else if c == ',' && next_digits && !s.contains('.') {
                // a thousands separator
            } else if c == '.'
                && !s.contains(['.', 'e'])
                && chars.get(i + 1).is_some_and(char::is_ascii_digit)
            {
                s.push(c);
            } else if (c == 'e' || c == 'E')
                && !s.contains('e')
                && chars
                    .get(i + 1)
                    .is_some_and(|&d| d.is_ascii_digit() || d == '-' || d == '+')
            {
                s.push('e');
                if let Some(&sign @ ('-' | '+')) = chars.get(i + 1) {
                    s.push(sign);
                    i += 1;
                }
            } else {
                break;
            }
            i += 1;
        }
        // Nor is a coefficient (`3x`).
        let coefficient = chars.get(i) == Some(&'x');
        if let Ok(n) = s.parse::<f64>()
            && !exponent
            && !coefficient
        {
            out.push(if negative { -n } else { n });
        }
        if i == start {
            i += 1;
        }
    }
    out
}

type Table = (String, &'static str, Vec<(String, Vec<Run>)>);

fn print_tables(tables: &[Table], repeat: u32) {
    let mean = |runs: &[&Run], f: &dyn Fn(&Run) -> f64| {
        runs.iter().map(|r| f(r)).sum::<f64>() / runs.len().max(1) as f64
    };
    let mut summary = Vec::new();
    for (model, mode, rows) in tables {
        println!("\n{model} · {mode} mode ({repeat} run(s) per task)");
        println!(
            "{:<20} {:>7} {:>6} {:>11} {:>8}",
            "task", "solved", "steps", "tool calls", "wall s"
        );
        let mut all = Vec::new();
        for (id, runs) in rows {
            let runs: Vec<&Run> = runs.iter().collect();
            let solved = runs.iter().filter(|r| r.solved).count();
            println!(
                "{:<20} {:>7} {:>6.1} {:>11.1} {:>8.2}",
                id,
                format!("{solved}/{}", runs.len()),
                mean(&runs, &|r| r.steps as f64),
                mean(&runs, &|r| r.tool_calls as f64),
                mean(&runs, &|r| r.seconds),
            );
            all.extend(runs);
        }
        let solved = all.iter().filter(|r| r.solved).count();
        let line = format!(
            "{:<20} {:>7} {:>6.1} {:>11.1} {:>8.2}",
            "total (mean/run)",
            format!("{solved}/{}", all.len()),
            mean(&all, &|r| r.steps as f64),
            mean(&all, &|r| r.tool_calls as f64),
            mean(&all, &|r| r.seconds),
        );
        println!("{line}");
        let rate = 100.0 * solved as f64 / all.len().max(1) as f64;
        let wall: f64 = all.iter().map(|r| r.seconds).sum();
        summary.push(format!(
            "{:<10} {:<6} {:>9} {:>6.0}% {:>6.1} {:>11.1} {:>9.1}",
            model,
            mode,
            format!("{solved}/{}", all.len()),
            rate,
            mean(&all, &|r| r.steps as f64),
            mean(&all, &|r| r.tool_calls as f64),
            wall
        ));
    }
    println!(
        "\n{:<10} {:<6} {:>9} {:>7} {:>6} {:>11} {:>9}",
        "model", "mode", "solved", "rate", "steps", "tool calls", "wall s"
    );
    for line in summary {
        println!("{line}");
    }
}

/// The scripted model: a Chat Completions server on 127.0.0.1:0. It finds the
/// task by the request's first user message and the step by how many assistant
/// messages it holds, and answers with that step of the task's script.
struct Scripted {
    addr: std::net::SocketAddr,
}

impl Scripted {
    fn start(tasks: Arc<Vec<Task>>) -> Result<Self, String> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("failed to bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let tasks = tasks.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &tasks);
                });
            }
        });
        Ok(Self { addr })
    }

    fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

fn serve(stream: TcpStream, tasks: &[Task]) -> std::io::Result<()> {
    let Some((_, body)) = fixture::read_request(&stream)? else {
        return Ok(());
    };
    let (status, text) = match serde_json::from_slice::<Value>(&body) {
        Ok(request) => reply(&request, tasks),
        Err(e) => (400, error(&format!("the body is not JSON: {e}"))),
    };
    fixture::write_json(&stream, status, &text)
}

fn error(message: &str) -> String {
    json!({"error": {"message": message}}).to_string()
}

fn reply(request: &Value, tasks: &[Task]) -> (u16, String) {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let task = messages
        .iter()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    let Some(task) = tasks.iter().find(|t| t.text == task) else {
        return (
            400,
            error(&format!("the scripted model knows no task {task:?}")),
        );
    };
    let mode = if request.get("tools").is_some() {
        "tools"
    } else {
        "code"
    };
    let step = messages.iter().filter(|m| m["role"] == "assistant").count();
    let script = &task.scripts[mode];
    let said = &script[step.min(script.len() - 1)];
    let message = match (said.get("say"), said.get("call")) {
        (Some(content), _) => json!({"role": "assistant", "content": content}),
        (None, Some(name)) => json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": format!("call_{step}"), "type": "function",
            "function": {"name": name, "arguments": said.get("arguments").and_then(Value::as_str).unwrap_or("{}")}
        }]}),
        _ => {
            return (
                500,
                error(&format!(
                    "step {step} of `{}` has neither `say` nor `call`",
                    task.id
                )),
            );
        }
    };
    let body = json!({"id": "scripted", "object": "chat.completion", "model": "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]});
    (200, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_as_people_write_them() {
        assert_eq!(numbers_in("x = -2 or x = 2.5"), [-2.0, 2.5]);
        assert_eq!(numbers_in("355,687,428,096,000"), [355687428096000.0]);
        assert_eq!(numbers_in("3.55687428096e+14."), [355687428096000.0]);
        assert_eq!(numbers_in("[1, 2]"), [1.0, 2.0]);
        assert_eq!(numbers_in("5 - 3"), [5.0, 3.0]);
        assert_eq!(numbers_in("It is 21.5 °C."), [21.5]);
        assert_eq!(numbers_in("x^2 + 3x + 2 = 0, 2**10"), [2.0, 0.0, 2.0]);
        assert_eq!(numbers_in("x = -1 - 2i, 3 km"), [-1.0, 2.0, 3.0]);
    }
}
