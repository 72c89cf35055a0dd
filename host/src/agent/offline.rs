//! The offline planner: a deterministic stand-in for a model, so the demo and
//! the tests run with no model server. It is not a language model. It reads
//! three shapes of task by parsing them — quadratic equations, weather
//! questions, small computations — and answers like a model would: with a
//! tool call (`tools` mode) or Python (`code` mode), then a sentence from the
//! observation. Anything else gets a polite refusal.

use super::Mode;
use super::model::{BoxFuture, Message, Model, Request, Role, ToolCall};
use anyhow::Result;
use serde_json::{Value, json};

/// The built-in planner.
#[derive(Debug, Default, Clone, Copy)]
pub struct Offline;

/// What the header of a transcript says about it.
pub const DESCRIPTION: &str = "offline: a deterministic built-in planner, not a language model; it handles quadratic equations, weather questions and small computations (use --model for anything else)";

const CANNOT: &str = "The offline planner cannot do that: it only handles quadratic equations (`solve x^2 + 3x + 2 = 0`), weather questions (`what's the weather in Paris?`) and small computations (`what is the sum of the squares of 1..100?`). Use --model to ask a language model.";

/// A task the planner understood.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// `a·x² + b·x + c = 0`.
    Quadratic {
        /// The coefficient of x².
        a: f64,
        /// The coefficient of x.
        b: f64,
        /// The constant.
        c: f64,
    },
    /// The weather in a city.
    Weather {
        /// The city, as the task names it.
        city: String,
    },
    /// Python that computes the answer and calls `final_answer`.
    Compute {
        /// The code.
        code: String,
    },
}

impl Model for Offline {
    fn describe(&self) -> String {
        DESCRIPTION.to_string()
    }

    fn complete<'a>(&'a self, request: &'a Request<'a>) -> BoxFuture<'a, Result<Message>> {
        Box::pin(async move { Ok(reply(request)) })
    }
}

/// The next message: a first step from the task, or an answer from the last observation.
fn reply(request: &Request<'_>) -> Message {
    let Some(plan) = plan(request.task()) else {
        // In `code` mode a reply without code is corrected; this one is final.
        return Message::assistant(match request.mode {
            Mode::Tools => CANNOT.to_string(),
            Mode::Code => format!("Final Answer: {CANNOT}"),
        });
    };
    let started = request.messages.iter().any(|m| m.role == Role::Assistant);
    let last = request.messages.last().map_or("", |m| m.content.as_str());
    match (request.mode, started) {
        (Mode::Tools, false) => first_tool_call(&plan, request),
        (Mode::Tools, true) => Message::assistant(sentence(&plan, last)),
        (Mode::Code, false) => Message::assistant(format!(
            "I will compute it in Python.\n\n```python\n{}```",
            code(&plan)
        )),
        // The code ends with `final_answer`, so a second step means it failed.
        (Mode::Code, true) => Message::assistant(format!(
            "Final Answer: The offline planner's code did not reach an answer, and it cannot repair code. What the code gave:\n{last}"
        )),
    }
}

fn first_tool_call(plan: &Plan, request: &Request<'_>) -> Message {
    let (tool, arguments) = match plan {
        Plan::Quadratic { a, b, c } => ("quadratic_solve", json!({"a": a, "b": b, "c": c})),
        Plan::Weather { city } => ("weather_current", json!({ "city": city })),
        Plan::Compute { .. } => {
            return Message::assistant(
                "The offline planner answers computations by writing Python: run this task with `--mode code`.",
            );
        }
    };
    if !request.tools.iter().any(|t| t.name == tool) {
        return Message::assistant(format!(
            "This task needs the `{tool}` tool, and this agent was not given it."
        ));
    }
    let mut m = Message::assistant(String::new());
    m.tool_calls.push(ToolCall {
        id: "call_1".into(),
        name: tool.into(),
        arguments: arguments.to_string(),
    });
    m
}

/// The Python for a plan; it ends with `final_answer(...)`.
pub fn code(plan: &Plan) -> String {
    match plan {
        Plan::Quadratic { a, b, c } => format!(
            "roots = quadratic_solve({}, {}, {})\nprint(roots)\n\ndef show(r):\n    if r['im'] == 0:\n        return f\"x = {{r['re']:g}}\"\n    sign = '-' if r['im'] < 0 else '+'\n    return f\"x = {{r['re']:g}} {{sign}} {{abs(r['im']):g}}i\"\n\nfinal_answer(' or '.join(show(r) for r in roots))\n",
            num(*a),
            num(*b),
            num(*c)
        ),
        Plan::Weather { city } => format!(
            "w = weather_current(city={city:?})\nprint(w)\nfinal_answer(f\"In {{w['city']}}, {{w['country']}} it is {{w['temperature-c']}} °C and {{w['description']}}, with wind at {{w['wind-speed-kmh']}} km/h.\")\n"
        ),
        Plan::Compute { code } => code.clone(),
    }
}

/// A sentence from a tool's JSON result (or its `{"error": …}`).
fn sentence(plan: &Plan, observation: &str) -> String {
    let v: Value = serde_json::from_str(observation).unwrap_or(Value::Null);
    if let Some(e) = v.get("error") {
        let message = e.get("message").and_then(Value::as_str).unwrap_or("");
        return format!("The tool failed: {message}");
    }
    match plan {
        Plan::Quadratic { a, .. } => roots_sentence(&v, *a != 0.0),
        Plan::Weather { .. } => {
            let f = |k: &str| {
                v.get(k)
                    .map(|x| x.as_str().map_or(x.to_string(), str::to_string))
            };
            match (
                f("city"),
                f("country"),
                f("temperature-c"),
                f("description"),
                f("wind-speed-kmh"),
            ) {
                (Some(city), Some(country), Some(t), Some(d), Some(w)) => {
                    format!("In {city}, {country} it is {t} °C and {d}, with wind at {w} km/h.")
                }
                _ => format!("The weather tool answered: {observation}"),
            }
        }
        Plan::Compute { .. } => observation.to_string(),
    }
}

/// `x = 1 or x = 2` from `[{"re": 1, "im": 0}, …]`.
fn roots_sentence(v: &Value, quadratic: bool) -> String {
    let Some(roots) = v.as_array() else {
        return format!("The solver answered: {v}");
    };
    let shown: Vec<String> = roots
        .iter()
        .map(|r| {
            let re = r.get("re").and_then(Value::as_f64).unwrap_or(f64::NAN);
            let im = r.get("im").and_then(Value::as_f64).unwrap_or(0.0);
            match (im == 0.0, re == 0.0) {
                (true, _) => format!("x = {}", num(re)),
                (false, true) => format!("x = {}i", num(im)),
                (false, false) => format!(
                    "x = {} {} {}i",
                    num(re),
                    if im < 0.0 { '-' } else { '+' },
                    num(im.abs())
                ),
            }
        })
        .collect();
    match shown.as_slice() {
        [] => "The equation has no solution.".into(),
        [one] if quadratic => format!("{one} (a double root)"),
        _ => shown.join(" or "),
    }
}

/// A number as people write it: `2`, `-0.5`, `1.414214`.
fn num(x: f64) -> String {
    if x == x.trunc() && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        let s = format!("{x:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Reads a task; `None` if it is none of the three shapes.
pub fn plan(task: &str) -> Option<Plan> {
    let lower = task.to_lowercase();
    if (lower.contains("weather") || lower.contains("temperature in"))
        && let Some(city) = city(task)
    {
        return Some(Plan::Weather { city });
    }
    if let Some((a, b, c)) = quadratic(task) {
        return Some(Plan::Quadratic { a, b, c });
    }
    computation(&lower).map(|code| Plan::Compute { code })
}

/// The city of `what's the weather in Paris?`, `weather in São Paulo today`.
fn city(task: &str) -> Option<String> {
    let lower = task.to_lowercase();
    let at = [" in ", " for ", " at "]
        .iter()
        .filter_map(|w| lower.rfind(w).map(|i| i + w.len()))
        .max()?;
    // Lower-casing can change byte lengths; find the same place in the original.
    let rest = task.get(at..).unwrap_or(&lower[at..]);
    let mut words: Vec<&str> = rest
        .split(|c: char| c.is_whitespace())
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '-' && c != '\''))
        .filter(|w| !w.is_empty())
        .collect();
    const FILLER: [&str; 7] = [
        "today",
        "now",
        "right",
        "currently",
        "please",
        "tonight",
        "like",
    ];
    while words
        .last()
        .is_some_and(|w| FILLER.contains(&w.to_lowercase().as_str()))
    {
        words.pop();
    }
    let city = words.join(" ");
    (!city.is_empty() && city.len() <= 60).then_some(city)
}

/// `(a, b, c)` of the equation in a task: `solve x^2 + 3x + 2 = 0`, `2x² - 4x = -2`, `x^2 = 9`.
pub fn quadratic(task: &str) -> Option<(f64, f64, f64)> {
    // The longest run of equation characters that mentions x.
    let is_math = |c: char| c.is_ascii_digit() || " .xX^²*+-−=·()".contains(c);
    let mut best = "";
    for run in task.split(|c: char| !is_math(c)) {
        if run.contains(['x', 'X']) && run.trim().len() > best.trim().len() {
            best = run;
        }
    }
    let text: String = best
        .replace('²', "^2")
        .replace("**", "^")
        .replace('−', "-")
        .replace(['*', '·', ' '], "")
        .to_lowercase();
    let has_square = text.contains("x^2");
    if !(text.contains('=') || has_square) {
        return None;
    }
    let mut sides = text.splitn(2, '=');
    let left = polynomial(sides.next()?)?;
    let right = match sides.next() {
        Some(r) => polynomial(r)?,
        None => [0.0; 3],
    };
    let [c, b, a] = [left[0] - right[0], left[1] - right[1], left[2] - right[2]];
    (a != 0.0 || b != 0.0).then_some((a, b, c))
}

/// The coefficients `[c, b, a]` of a sum of terms like `-4x`, `2x^2`, `7.5`.
fn polynomial(text: &str) -> Option<[f64; 3]> {
    if text.is_empty() || text.contains(['(', ')']) {
        return None;
    }
    let mut out = [0.0; 3];
    let mut rest = text;
    while !rest.is_empty() {
        let sign = match rest.as_bytes()[0] {
            b'-' => -1.0,
            _ => 1.0,
        };
        rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
        let end = rest.find(['+', '-']).unwrap_or(rest.len());
        let (term, next) = rest.split_at(end);
        rest = next;
        let (coefficient, power) = match term.split_once('x') {
            None => (term, 0),
            Some((k, p)) => {
                let power = match p {
                    "" => 1,
                    "^2" => 2,
                    "^1" => 1,
                    "^0" => 0,
                    _ => return None,
                };
                (k, power)
            }
        };
        let value = match coefficient {
            "" if power > 0 => 1.0,
            k => k.parse::<f64>().ok().filter(|v| v.is_finite())?,
        };
        out[power] += sign * value;
    }
    Some(out)
}

/// Python for a small computation: `sum of the squares of 1..100`,
/// `mean and standard deviation of 3, 5, 8, 13`, `2**10 + 3*7`.
fn computation(lower: &str) -> Option<String> {
    let body = lower
        .trim()
        .trim_end_matches(['?', '.', '!'])
        .trim_start_matches("please ")
        .trim();
    let body = ["what is ", "what's ", "compute ", "calculate ", "evaluate "]
        .iter()
        .find_map(|p| body.strip_prefix(p))
        .unwrap_or(body)
        .trim();
    if let Some(expr) = arithmetic(body) {
        return Some(format!(
            "value = {expr}\nprint(value)\nfinal_answer(value)\n"
        ));
    }
    statistics(body)
}

fn arithmetic(body: &str) -> Option<String> {
    let ok = body
        .chars()
        .all(|c| c.is_ascii_digit() || " .+-*/^()%".contains(c));
    let has_op = body.chars().skip(1).any(|c| "+-*/^%".contains(c));
    (ok && has_op && body.chars().any(|c| c.is_ascii_digit())).then(|| body.replace('^', "**"))
}

/// (words that name it, its Python over `values`, its label)
const STATS: &[(&[&str], &str, &str)] = &[
    (
        &["standard deviation", "std dev", "stdev"],
        "statistics.stdev(values)",
        "standard deviation",
    ),
    (&["variance"], "statistics.variance(values)", "variance"),
    (&["sum", "total"], "sum(values)", "sum"),
    (&["product"], "math.prod(values)", "product"),
    (&["mean", "average"], "statistics.mean(values)", "mean"),
    (&["median"], "statistics.median(values)", "median"),
    (&["minimum", "smallest", "min "], "min(values)", "minimum"),
    (&["maximum", "largest", "max "], "max(values)", "maximum"),
];

fn statistics(body: &str) -> Option<String> {
    let mut found: Vec<(usize, &str, &str)> = STATS
        .iter()
        .filter_map(|(words, py, label)| {
            let at = words.iter().filter_map(|w| body.find(w)).min()?;
            Some((at, *py, *label))
        })
        .collect();
    found.sort();
    // `standard deviation` is not also a `mean`… but `mean` in `mean and standard deviation` is.
    if found.is_empty() {
        return None;
    }
    let numbers = numbers(body)?;
    let transform = if body.contains("square root") {
        "math.sqrt(n)"
    } else if body.contains("square") {
        "n ** 2"
    } else if body.contains("cube") {
        "n ** 3"
    } else {
        "n"
    };
    let mut code = format!(
        "import math, statistics\n\nnumbers = {numbers}\nvalues = [{transform} for n in numbers]\n"
    );
    for (_, py, label) in &found {
        let var = label.replace(' ', "_");
        code.push_str(&format!("{var} = {py}\nprint(\"{label}:\", {var})\n"));
    }
    if let [(_, _, label)] = found.as_slice() {
        code.push_str(&format!("final_answer({})\n", label.replace(' ', "_")));
    } else {
        let parts: Vec<String> = found
            .iter()
            .map(|(_, _, label)| format!("{label} = {{{}:.10g}}", label.replace(' ', "_")))
            .collect();
        code.push_str(&format!("final_answer(f\"{}\")\n", parts.join(", ")));
    }
    Some(code)
}

/// The numbers a computation runs over, as Python: `range(1, 101)` or `[3, 5, 8, 13]`.
fn numbers(body: &str) -> Option<String> {
    let tail = body.rsplit(" of ").next().unwrap_or(body);
    let ints = |s: &str| -> Vec<i64> {
        s.split(|c: char| !c.is_ascii_digit() && c != '-')
            .filter_map(|w| w.parse().ok())
            .collect()
    };
    for sep in ["..", " to ", " through ", " and "] {
        if let Some((from, to)) = tail.split_once(sep) {
            let (from, to) = (ints(from), ints(to));
            if from.len() == 1 && to.len() == 1 && sep != " and " || tail.contains("between") {
                let (Some(&a), Some(&b)) = (from.last(), to.first()) else {
                    continue;
                };
                if a <= b && b - a <= 10_000_000 {
                    return Some(format!("list(range({a}, {}))", b + 1));
                }
            }
        }
    }
    if let Some(n) = tail
        .strip_prefix("the first ")
        .and_then(|r| r.split_whitespace().next()?.parse::<i64>().ok())
    {
        return Some(format!("list(range(1, {}))", n + 1));
    }
    let list: Vec<&str> = tail
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|w| w.trim())
        .filter(|w| !w.is_empty() && *w != "and")
        .collect();
    let all_numbers = !list.is_empty() && list.iter().all(|w| w.parse::<f64>().is_ok());
    all_numbers.then(|| format!("[{}]", list.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equations_as_people_write_them() {
        assert_eq!(quadratic("solve x^2 + 3x + 2 = 0"), Some((1.0, 3.0, 2.0)));
        assert_eq!(quadratic("2x² - 4x = -2"), Some((2.0, -4.0, 2.0)));
        assert_eq!(quadratic("x^2 = 9"), Some((1.0, 0.0, -9.0)));
        assert_eq!(
            quadratic("Solve 3x**2 - 12 = 0 for x"),
            Some((3.0, 0.0, -12.0))
        );
        assert_eq!(
            quadratic("find the roots of -x^2 + 0.5x"),
            Some((-1.0, 0.5, 0.0))
        );
        assert_eq!(quadratic("what is 2 + 2?"), None);
        assert_eq!(quadratic("x^3 = 1"), None);
    }

    #[test]
    fn cities() {
        assert_eq!(
            city("what's the weather in Paris?").as_deref(),
            Some("Paris")
        );
        assert_eq!(
            city("Weather in São Paulo today").as_deref(),
            Some("São Paulo")
        );
        assert_eq!(
            city("how is the weather for New York right now?").as_deref(),
            Some("New York")
        );
        assert_eq!(city("the weather"), None);
    }

    #[test]
    fn computations() {
        let code = computation("what is the sum of the squares of 1..100?").unwrap();
        assert!(code.contains("numbers = list(range(1, 101))"), "{code}");
        assert!(
            code.contains("values = [n ** 2 for n in numbers]"),
            "{code}"
        );
        let code = computation("mean and standard deviation of 3, 5, 8, 13").unwrap();
        assert!(code.contains("numbers = [3, 5, 8, 13]"), "{code}");
        assert!(code.find("mean =").unwrap() < code.find("standard_deviation =").unwrap());
        assert!(
            computation("what is 2^10 + 3*7?")
                .unwrap()
                .contains("2**10 + 3*7")
        );
        assert_eq!(computation("write me a poem"), None);
    }

    #[test]
    fn roots_read_like_sentences() {
        let v = json!([{"re": -2.0, "im": 0.0}, {"re": -1.0, "im": 0.0}]);
        assert_eq!(roots_sentence(&v, true), "x = -2 or x = -1");
        let v = json!([{"re": 1.0, "im": 0.0}]);
        assert_eq!(roots_sentence(&v, true), "x = 1 (a double root)");
        let v = json!([{"re": -1.0, "im": -2.0}, {"re": -1.0, "im": 2.0}]);
        assert_eq!(roots_sentence(&v, true), "x = -1 - 2i or x = -1 + 2i");
    }
}
