//! `witbox run` and `witbox repl`: Python cells in one session of the code runner.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use witbox::{EngineOptions, Manifest, Registry, RunOutcome, Runner, Session};

/// Limits and grants that override the manifest's `[runner.policy]` for this session.
#[derive(Args, Debug, Clone)]
pub struct SessionFlags {
    /// Wall-time limit per cell in milliseconds (default: the runner policy's `timeout-ms`, 10000).
    #[arg(long, value_name = "N")]
    timeout_ms: Option<u64>,
    /// Memory limit of the session in MiB (default: the runner policy's `memory-mb`: 256 in the shipped witbox.toml, 128 if unset).
    #[arg(long, value_name = "N")]
    memory_mb: Option<u64>,
    /// Cap on what one cell may print, stdout and stderr together (default: `max-output-bytes`, 1 MiB).
    #[arg(long, value_name = "N")]
    max_output_bytes: Option<u64>,
    /// Instruction budget per cell (deterministic; the result reports `fuel_used`). 0 = off.
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Grant the session a tool, callable from Python as a function of the same name.
    /// Repeatable; `*` globs allowed (`--tool 'quadratic_*'`). Without it the session gets
    /// the tools the runner policy's `call-tools` lists (none in the shipped witbox.toml).
    #[arg(long = "tool", value_name = "NAME")]
    tools: Vec<String>,
}

/// `witbox run`'s own arguments.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    session: SessionFlags,
    /// A cell of Python code. Repeatable: the cells run in order in one session.
    #[arg(short = 'c', value_name = "CODE")]
    cells: Vec<String>,
    /// A Python file to run after the `-c` cells (`-` reads stdin). Lines that start
    /// with `# %%` split it into cells, as in Jupyter's percent format.
    file: Option<PathBuf>,
    /// Print one JSON object per cell: stdout, stderr, value, error, final_answer,
    /// session_restarted, duration_us.
    #[arg(long)]
    json: bool,
}

/// Starts one session of the manifest's runner with the flags applied.
pub async fn start(
    manifest_path: &std::path::Path,
    options: EngineOptions,
    flags: &SessionFlags,
) -> Result<Session> {
    let mut manifest = Manifest::load(manifest_path)?;
    flags.apply(&mut manifest)?;
    // One session: nothing to keep warm.
    manifest.runner.warm_sessions = 0;
    // Tool components are only loaded when the session may call one.
    let mut tool_manifest = manifest.clone();
    if manifest.runner.policy.call_tools.is_empty() {
        tool_manifest.component.clear();
    }
    let registry = Registry::load(&tool_manifest, options)?;
    let runner = Runner::load(&manifest, &manifest.runner, registry.clone())?;
    registry.select(&flags.tools)?;
    runner.session().await
}

impl SessionFlags {
    /// The `--tool` patterns.
    pub fn tools(&self) -> &[String] {
        &self.tools
    }

    /// Writes the flags into the manifest's runner policy.
    pub fn apply(&self, manifest: &mut Manifest) -> Result<()> {
        let (flags, policy) = (self, &mut manifest.runner.policy);
        if let Some(v) = flags.timeout_ms {
            policy.timeout_ms = v;
        }
        if let Some(v) = flags.memory_mb {
            policy.memory_mb = v;
        }
        if let Some(v) = flags.max_output_bytes {
            policy.max_output_bytes = v;
        }
        if let Some(v) = flags.fuel {
            policy.fuel = v;
        }
        if !flags.tools.is_empty() {
            policy.call_tools = flags.tools.clone();
        }
        policy.check().context("invalid runner limits")
    }
}

/// Splits a file into cells at `# %%` lines.
fn split_cells(text: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with("# %%") {
            cells.push(String::new());
        } else {
            cells.last_mut().expect("one cell").push_str(line);
        }
    }
    cells.retain(|c| !c.trim().is_empty());
    if cells.is_empty() {
        cells.push(String::new());
    }
    cells
}

pub async fn run(
    manifest: &std::path::Path,
    options: EngineOptions,
    args: RunArgs,
) -> Result<ExitCode> {
    let mut cells = args.cells;
    if let Some(file) = &args.file {
        let text = if file.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("failed to read the code from stdin")?;
            s
        } else {
            std::fs::read_to_string(file)
                .with_context(|| format!("failed to read `{}`", file.display()))?
        };
        cells.extend(split_cells(&text));
    }
    if cells.is_empty() {
        bail!("nothing to run: give code with `-c CODE` or a file (see `witbox run --help`)");
    }
    let mut session = start(manifest, options, &args.session).await?;
    let mut ok = false;
    for (i, cell) in cells.iter().enumerate() {
        let outcome = match session.run(cell).await {
            Ok(o) => o,
            Err(e) => {
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({"error": {"type": "InvalidInput", "message": e.message}})
                    );
                } else {
                    eprintln!("error in cell {}: {}", i + 1, e.message);
                }
                ok = false;
                continue;
            }
        };
        ok = outcome.ok();
        if args.json {
            println!("{}", serde_json::to_string(&outcome)?);
        } else {
            print_outcome(&outcome);
        }
    }
    exiting(session);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints a cell's result like a notebook: output, then the value or the error.
pub fn print_outcome(o: &RunOutcome) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(o.stdout.as_bytes());
    if let Some(v) = &o.value {
        let _ = writeln!(out, "{v}");
    }
    if let Some(a) = &o.final_answer {
        match a {
            serde_json::Value::String(s) => {
                let _ = writeln!(out, "final answer: {s}");
            }
            v => {
                let _ = writeln!(out, "final answer: {v}");
            }
        }
    }
    let _ = out.flush();
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(o.stderr.as_bytes());
    if let Some(e) = &o.error {
        if e.traceback.is_empty() {
            let _ = writeln!(err, "{}: {}", e.kind, e.message);
        } else {
            let _ = err.write_all(e.traceback.as_bytes());
            if !e.message.is_empty() && !e.traceback.contains(&e.message) {
                let _ = writeln!(err, "({})", e.message);
            }
        }
    }
    if let Some(why) = &o.restart_reason {
        let _ = writeln!(err, "[witbox] the session restarted ({why})");
    }
}

/// `witbox repl`: an interactive session.
pub async fn repl(
    manifest: &std::path::Path,
    options: EngineOptions,
    flags: SessionFlags,
) -> Result<ExitCode> {
    let mut session = start(manifest, options, &flags).await?;
    let tools = session.tools();
    let mut editor: rustyline::DefaultEditor =
        rustyline::DefaultEditor::new().context("failed to open the terminal")?;
    let history = witbox::engine::default_cache_dir().map(|d| d.join("repl-history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    if std::io::stdin().is_terminal() {
        println!(
            "witbox Python session ({}). :reset forgets globals, :tools lists tools, :quit or Ctrl-D ends.",
            if tools.is_empty() {
                "no tools".to_string()
            } else {
                format!("tools: {}", tools.join(", "))
            }
        );
    }
    loop {
        let Some(cell) = read_cell(&mut editor)? else {
            break;
        };
        let trimmed = cell.trim();
        match trimmed {
            "" => continue,
            ":quit" | ":q" | ":exit" => break,
            ":reset" => {
                session
                    .reset()
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
                println!("(globals cleared)");
                continue;
            }
            ":tools" => {
                if tools.is_empty() {
                    println!("(no tools: start with --tool NAME to grant one)");
                }
                for t in &tools {
                    println!("{t}  (help({t}) shows its parameters)");
                }
                continue;
            }
            _ => {}
        }
        let _ = editor.add_history_entry(cell.trim_end());
        match session.run(&cell).await {
            Ok(o) => print_outcome(&o),
            Err(e) => eprintln!("error: {}", e.message),
        }
    }
    if let Some(h) = &history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(h);
    }
    exiting(session);
    Ok(ExitCode::SUCCESS)
}

/// The process is about to exit: dropping the session would reset its memory
/// slot for reuse (a copy of the whole heap), which nothing will use.
fn exiting(session: Session) {
    std::mem::forget(session);
}

/// Reads one cell: a line, or, after a line that opens a block (ends with `:`, `\`,
/// or leaves a bracket or triple quote open), more lines until an empty one.
fn read_cell(editor: &mut rustyline::DefaultEditor) -> Result<Option<String>> {
    use rustyline::error::ReadlineError;
    let mut cell = String::new();
    let mut prompt = ">>> ";
    loop {
        match editor.readline(prompt) {
            Ok(line) => {
                let continued = !cell.is_empty();
                cell.push_str(&line);
                cell.push('\n');
                if continued && line.trim().is_empty() {
                    return Ok(Some(cell));
                }
                if !opens_block(&cell) {
                    return Ok(Some(cell));
                }
                prompt = "... ";
            }
            Err(ReadlineError::Interrupted) => {
                cell.clear();
                prompt = ">>> ";
            }
            Err(ReadlineError::Eof) => {
                return Ok(if cell.trim().is_empty() {
                    None
                } else {
                    Some(cell)
                });
            }
            Err(e) => return Err(e).context("failed to read a line"),
        }
    }
}

/// Whether the code so far needs more lines.
fn opens_block(code: &str) -> bool {
    let last = code.trim_end_matches('\n');
    if last.ends_with('\\') || last.lines().any(|l| l.trim_end().ends_with(':')) {
        return true;
    }
    let mut depth = 0i32;
    let mut quote: Option<&str> = None;
    let mut rest = code;
    while let Some(c) = rest.chars().next() {
        if let Some(q) = quote {
            if rest.starts_with('\\') {
                rest = &rest[rest.chars().take(2).map(char::len_utf8).sum::<usize>()..];
                continue;
            }
            if rest.starts_with(q) {
                rest = &rest[q.len()..];
                quote = None;
                continue;
            }
            if q.len() == 1 && c == '\n' {
                quote = None;
            }
        } else {
            for q in ["\"\"\"", "'''", "\"", "'"] {
                if rest.starts_with(q) {
                    quote = Some(q);
                    break;
                }
            }
            if let Some(q) = quote {
                rest = &rest[q.len()..];
                continue;
            }
            match c {
                '#' => {
                    let skip = rest.find('\n').unwrap_or(rest.len());
                    rest = &rest[skip..];
                    continue;
                }
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            }
        }
        rest = &rest[c.len_utf8()..];
    }
    depth > 0 || quote.is_some_and(|q| q.len() == 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_split_at_percent_markers() {
        assert_eq!(
            split_cells("x = 1\n# %%\nprint(x)\n"),
            vec!["x = 1\n", "print(x)\n"]
        );
        assert_eq!(split_cells(""), vec![""]);
    }

    #[test]
    fn blocks_need_more_lines() {
        assert!(opens_block("def f():\n"));
        assert!(opens_block("x = [1,\n"));
        assert!(opens_block("s = \"\"\"a\n"));
        assert!(!opens_block("x = '(' # (\n"));
        assert!(!opens_block("print(1)\n"));
    }
}
