//! `witbox repl`: an interactive Python session.

use crate::context::Context;
use crate::flags::{SessionFlags, StateFlags};
use crate::run::{exiting, print_outcome, terminal};
use anyhow::{Context as _, Result};
use clap::Args;
use std::io::IsTerminal;
use std::process::ExitCode;
use witbox::Runner;

/// `witbox repl`'s arguments.
#[derive(Args, Debug)]
pub struct ReplCommand {
    #[command(flatten)]
    session: SessionFlags,
    #[command(flatten)]
    state: StateFlags,
}

impl ReplCommand {
    pub async fn execute(self, cx: &Context) -> Result<ExitCode> {
        let manifest = cx.manifest()?;
        let runner =
            Runner::for_one_session(&manifest, cx.options.clone(), &self.session.overrides())?;
        let (mut session, kept) = crate::state::open(&runner, &self.state).await?;
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
            // Ctrl-C stops the cell (within one epoch tick) and keeps the REPL;
            // the next cell starts the session again and says so.
            let ran = tokio::select! {
                ran = session.run_streaming(&cell, terminal()) => Some(ran),
                _ = tokio::signal::ctrl_c() => None,
            };
            if let Some(kept) = &kept
                && let Err(e) = crate::state::save(&mut session, kept).await
            {
                eprintln!("error: {e:#}");
            }
            match ran {
                Some(Ok(o)) => print_outcome(&o),
                Some(Err(e)) => eprintln!("error: {}", e.message),
                None => eprintln!(
                    "KeyboardInterrupt: the cell was stopped; the session starts again with the next cell"
                ),
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
    fn blocks_need_more_lines() {
        assert!(opens_block("def f():\n"));
        assert!(opens_block("x = [1,\n"));
        assert!(opens_block("s = \"\"\"a\n"));
        assert!(!opens_block("x = '(' # (\n"));
        assert!(!opens_block("print(1)\n"));
    }
}
