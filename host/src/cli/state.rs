//! `--state-dir` / `--session` for `witbox run` and `witbox repl`: a session
//! continued from, and saved to, the folder `witbox mcp --state-dir` uses.

use crate::flags::StateFlags;
use anyhow::{Context as _, Result, bail};
use std::path::PathBuf;
use std::sync::Arc;
use witbox::{Runner, Session};

/// Where the session is kept, and its id.
pub struct Kept {
    file: PathBuf,
    id: String,
}

/// The session to run in: continued from the state dir, or new.
pub async fn open(runner: &Arc<Runner>, flags: &StateFlags) -> Result<(Session, Option<Kept>)> {
    let Some(dir) = &flags.state_dir else {
        return Ok((runner.session().await?, None));
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("failed to make the state dir `{}`", dir.display()))?;
    let id = match &flags.session {
        Some(id) => id.clone(),
        None => witbox::python::new_id(),
    };
    let Some(file) = witbox::python::state_file(dir, &id) else {
        bail!("`--session {id}` is not a session id (`s-` and 32 hex digits)");
    };
    let session = if file.is_file() {
        let bytes = witbox::limits::read_file(&file, witbox::python::MAX_SNAPSHOT_BYTES as u64)?;
        restore(runner, &bytes, &file)
            .await
            .with_context(|| format!("failed to continue session `{id}`"))?
    } else if flags.session.is_some() {
        bail!(
            "no session `{id}` in `{}`: it was closed, or it sat idle past its TTL",
            dir.display()
        );
    } else {
        eprintln!(
            "[witbox] session {id}, kept in {} (continue it with --session {id})",
            dir.display()
        );
        runner.session().await?
    };
    Ok((session, Some(Kept { file, id })))
}

/// A new session from the snapshot `bytes` read from `file`; says on stderr
/// what it could not put back.
pub async fn restore(
    runner: &Arc<Runner>,
    bytes: &[u8],
    file: &std::path::Path,
) -> Result<Session> {
    let (session, missing) = runner
        .restore(bytes)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    for line in missing {
        eprintln!("[witbox] not restored from `{}`: {line}", file.display());
    }
    Ok(session)
}

/// Writes a snapshot of the session to `file` (aside, then moved into place).
pub async fn write(session: &mut Session, file: &std::path::Path) -> Result<()> {
    let bytes = session
        .snapshot()
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    witbox::limits::write_aside(file, &bytes)
        .with_context(|| format!("failed to write `{}`", file.display()))
}

/// Saves the session to the state dir.
pub async fn save(session: &mut Session, kept: &Kept) -> Result<()> {
    write(session, &kept.file)
        .await
        .with_context(|| format!("failed to save session `{}`", kept.id))
}
