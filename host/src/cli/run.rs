//! `witbox run`: Python cells, in order, in one fresh session; each cell's output
//! is printed as it is written, then its value or error.

use crate::context::Context;
use crate::flags::{SessionFlags, StateFlags};
use anyhow::{Context as _, Result, bail};
use clap::Args;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use witbox::limits::MAX_CODE_BYTES;
use witbox::python::Stream;
use witbox::{OutputSink, RunOutcome, Runner, Session};

/// `witbox run`'s arguments.
#[derive(Args, Debug)]
pub struct RunCommand {
    #[command(flatten)]
    session: SessionFlags,
    #[command(flatten)]
    state: StateFlags,
    /// A cell of Python code. Repeatable: the cells run in order in one session.
    #[arg(short = 'c', value_name = "CODE")]
    cells: Vec<String>,
    /// A Python file to run after the `-c` cells (`-` reads stdin). Lines that start
    /// with `# %%` split it into cells, as in Jupyter's percent format.
    file: Option<PathBuf>,
    /// Put a local file into the session's scratch folder before the first cell:
    /// `data.csv` (as `/data.csv`) or `data.csv:/in/d.csv`. Repeatable. The
    /// scratch folder is the session's `/`; it is removed when the run ends.
    #[arg(long = "file", value_name = "LOCAL[:GUEST]")]
    files: Vec<String>,
    /// Start from a snapshot (`--snapshot-to` of an earlier run): its globals and
    /// files, instead of an empty session.
    #[arg(long, value_name = "FILE")]
    restore: Option<PathBuf>,
    /// After the last cell, write the session (globals and files) to FILE, for
    /// `--restore` or MCP `restore_session`.
    #[arg(long, value_name = "FILE")]
    snapshot_to: Option<PathBuf>,
    /// Print one JSON object per cell, when it ends: stdout, stderr, value, error, final_answer,
    /// session_restarted (and restart_reason), tool_calls, fuel_used (with --fuel), duration_us.
    #[arg(long)]
    json: bool,
}

impl RunCommand {
    pub async fn execute(self, cx: &Context) -> Result<ExitCode> {
        let mut cells = self.cells;
        if let Some(file) = &self.file {
            cells.extend(split_cells(&read_code(file)?));
        }
        if cells.is_empty() {
            bail!("nothing to run: give code with `-c CODE` or a file (see `witbox run --help`)");
        }
        // Read before the (slow) load, so a missing file fails at once.
        let files = self
            .files
            .iter()
            .map(|f| local_file(f))
            .collect::<Result<Vec<_>>>()?;
        let snapshot = match &self.restore {
            Some(file) => Some(
                witbox::limits::read_file(file, witbox::python::MAX_SNAPSHOT_BYTES as u64)
                    .context("failed to read the snapshot")?,
            ),
            None => None,
        };
        let manifest = cx.manifest()?;
        let runner =
            Runner::for_one_session(&manifest, cx.options.clone(), &self.session.overrides())?;
        let mut state = None;
        let mut session = match (&snapshot, &self.restore) {
            (Some(bytes), Some(file)) => crate::state::restore(&runner, bytes, file)
                .await
                .with_context(|| format!("failed to restore the snapshot `{}`", file.display()))?,
            _ => {
                let (session, kept) = crate::state::open(&runner, &self.state).await?;
                state = kept;
                session
            }
        };
        for (local, guest, bytes) in &files {
            if let Err(e) = session.write_file(guest, bytes) {
                session.leak();
                bail!(
                    "failed to put `{local}` into the session as `{guest}`: {}",
                    e.message
                );
            }
        }
        let mut ok = false;
        for (i, cell) in cells.iter().enumerate() {
            // Output shows as the cell writes it; `--json` prints each cell's whole.
            let ran = if self.json {
                session.run(cell).await
            } else {
                session.run_streaming(cell, terminal()).await
            };
            let outcome = match ran {
                Ok(o) => o,
                Err(e) => {
                    if self.json {
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
            if self.json {
                println!("{}", serde_json::to_string(&outcome)?);
            } else {
                print_outcome(&outcome);
            }
        }
        if let Some(kept) = &state
            && let Err(e) = crate::state::save(&mut session, kept).await
        {
            session.leak();
            return Err(e);
        }
        if let Some(file) = &self.snapshot_to
            && let Err(e) = crate::state::write(&mut session, file).await
        {
            session.leak();
            return Err(e.context("failed to snapshot the session"));
        }
        exiting(session);
        Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

/// The code of a file, or of stdin for `-`; a file of cells is held to the limit
/// of one cell, and must be a regular file (a FIFO would block).
fn read_code(file: &std::path::Path) -> Result<String> {
    let bytes = if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(MAX_CODE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .context("failed to read the code from stdin")?;
        if bytes.len() > MAX_CODE_BYTES {
            bail!("the code on stdin is larger than the limit of {MAX_CODE_BYTES} bytes");
        }
        bytes
    } else {
        witbox::limits::read_file(file, MAX_CODE_BYTES as u64)?
    };
    String::from_utf8(bytes).with_context(|| format!("`{}` is not UTF-8 text", file.display()))
}

/// `LOCAL[:GUEST]`: the local path, the guest path (`/` and the file name when
/// not given), and the file's bytes.
fn local_file(arg: &str) -> Result<(String, String, Vec<u8>)> {
    let (local, guest) = match arg.split_once(':') {
        Some((local, guest)) => (local.to_string(), guest.to_string()),
        None => {
            let name = std::path::Path::new(arg)
                .file_name()
                .with_context(|| format!("`--file {arg}` names no file"))?;
            (arg.to_string(), format!("/{}", name.to_string_lossy()))
        }
    };
    let bytes = witbox::limits::read_file(
        std::path::Path::new(&local),
        witbox::python::MAX_FILE_BYTES as u64,
    )
    .with_context(|| format!("`--file {arg}`"))?;
    Ok((local, guest, bytes))
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

/// Where a cell's output goes as it is written: this process's stdout and
/// stderr, flushed at each chunk.
pub fn terminal() -> OutputSink {
    OutputSink::new(|stream, chunk| match stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(chunk.as_bytes());
            let _ = out.flush();
        }
        Stream::Stderr => {
            let _ = std::io::stderr().lock().write_all(chunk.as_bytes());
        }
    })
}

/// Prints the rest of a cell's result like a notebook, after its output (which
/// [`terminal`] printed as it came): the value or the error.
pub fn print_outcome(o: &RunOutcome) {
    let mut out = std::io::stdout().lock();
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
    if let Some(why) = o.restart_reason {
        let _ = writeln!(err, "[witbox] {}", witbox::python::restart_note(o, why));
    }
}

/// The process is about to exit: dropping the session would reset its memory
/// slot for reuse (a copy of the whole heap), which nothing will use.
pub fn exiting(session: Session) {
    session.leak();
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
}
