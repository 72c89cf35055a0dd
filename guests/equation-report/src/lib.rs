//! The `equation-report` tool: parses an equation written as text, solves it with
//! the imported `witbox:quadratic/solver`, and describes the roots in a sentence.

wit_bindgen::generate!({ path: "wit", world: "equation-report", generate_all });

use exports::witbox::equation_report::report::{Guest, ReportError};
use witbox::quadratic::solver::{Root, SolveError, solve};

struct EquationReport;

impl Guest for EquationReport {
    fn report(equation: String) -> Result<String, ReportError> {
        let (a, b, c) = parse(&equation).map_err(ReportError::NotAnEquation)?;
        let roots = solve(a, b, c).map_err(|e| {
            ReportError::Solver(
                match e {
                    SolveError::NoSolution => "the equation has no solution",
                    SolveError::EveryNumber => "every number is a solution",
                    SolveError::NotFinite => "a coefficient or a root is not a finite number",
                }
                .into(),
            )
        })?;
        Ok(describe(&roots, a != 0.0))
    }
}

export!(EquationReport);

/// `x = 1`, `x = -1 + 2i`.
fn root(r: &Root) -> String {
    if r.im == 0.0 {
        format!("x = {}", num(r.re))
    } else if r.re == 0.0 {
        format!("x = {}i", num(r.im))
    } else {
        let sign = if r.im < 0.0 { '-' } else { '+' };
        format!("x = {} {sign} {}i", num(r.re), num(r.im.abs()))
    }
}

fn describe(roots: &[Root], quadratic: bool) -> String {
    let shown: Vec<String> = roots.iter().map(root).collect();
    let complex = roots.iter().any(|r| r.im != 0.0);
    match shown.as_slice() {
        [one] if quadratic => format!("double root {one}"),
        [one] => format!("one root: {one}"),
        [a, b] if complex => format!("two complex roots: {a} and {b}"),
        [a, b] => format!("two real roots: {a} and {b}"),
        _ => format!("roots: {}", shown.join(", ")),
    }
}

fn num(x: f64) -> String {
    if x == x.trunc() && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        let s = format!("{x:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// `(a, b, c)` of `a·x² + b·x + c = 0` from text like `2x^2 - 4x = -2`.
fn parse(text: &str) -> Result<(f64, f64, f64), String> {
    let clean: String = text
        .replace('²', "^2")
        .replace("**", "^")
        .replace('−', "-")
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '*' | '·'))
        .collect::<String>()
        .to_lowercase();
    if clean.is_empty() {
        return Err("the equation is empty".into());
    }
    if let Some(bad) = clean.chars().find(|c| !(c.is_ascii_digit() || "x^+-=.".contains(*c))) {
        return Err(format!("`{bad}` is not part of an equation in x"));
    }
    let mut sides = clean.splitn(2, '=');
    let left = polynomial(sides.next().unwrap_or(""))?;
    let right = match sides.next() {
        Some(r) => polynomial(r)?,
        None => [0.0; 3],
    };
    let [c, b, a] = [left[0] - right[0], left[1] - right[1], left[2] - right[2]];
    Ok((a, b, c))
}

/// `[c, b, a]` of a sum of terms like `-4x`, `2x^2`, `7.5`.
fn polynomial(text: &str) -> Result<[f64; 3], String> {
    if text.is_empty() {
        return Err("one side of the equation is empty".into());
    }
    let mut out = [0.0; 3];
    let mut rest = text;
    while !rest.is_empty() {
        let sign = if rest.starts_with('-') { -1.0 } else { 1.0 };
        rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
        let end = rest.find(['+', '-']).unwrap_or(rest.len());
        let (term, next) = rest.split_at(end);
        rest = next;
        let (coefficient, power) = match term.split_once('x') {
            None => (term, 0),
            Some((k, "")) => (k, 1),
            Some((k, "^0")) => (k, 0),
            Some((k, "^1")) => (k, 1),
            Some((k, "^2")) => (k, 2),
            Some((_, p)) => return Err(format!("`x{p}`: only powers up to 2 are solved")),
        };
        let value = match coefficient {
            "" if power > 0 => 1.0,
            "" => return Err("a sign with no term after it".into()),
            k => k
                .parse::<f64>()
                .map_err(|_| format!("`{k}` is not a number"))?,
        };
        out[power] += sign * value;
    }
    Ok(out)
}
