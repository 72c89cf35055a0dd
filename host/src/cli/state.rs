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
        let (session, missing) = runner
            .restore(&bytes)
            .await
            .map_err(|e| anyhow::anyhow!("failed to continue session `{id}`: {}", e.message))?;
        for line in missing {
            eprintln!("[witbox] not restored: {line}");
        }
        session
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

/// Saves the session to the state dir (written aside, then moved into place).
pub async fn save(session: &mut Session, kept: &Kept) -> Result<()> {
    let bytes = session
        .snapshot()
        .await
        .map_err(|e| anyhow::anyhow!("failed to save session `{}`: {}", kept.id, e.message))?;
    let aside = kept.file.with_extension("snap.tmp");
    std::fs::write(&aside, bytes)
        .and_then(|()| std::fs::rename(&aside, &kept.file))
        .with_context(|| format!("failed to save session `{}`", kept.id))
}
