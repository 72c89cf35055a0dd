//! Live sessions by id, for servers (MCP's `run_python`): ids no other client can
//! guess, a cap on how many live, and an idle TTL. With a state dir, each
//! session is saved there (a snapshot, `ID.snap`) after every call that changed
//! it, and a session id found there is continued, also by a later process: that
//! is what keeps a session across a client that starts a server per call, or a
//! server restart. Snapshots idle past the TTL are deleted.

use super::{RunOutcome, Runner, Session};
use crate::error::{ErrorKind, ToolError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Entry {
    session: Arc<tokio::sync::Mutex<Session>>,
    last_used: Instant,
}

/// Live sessions by id, capped in number, closed after an idle TTL.
pub struct Sessions {
    runner: Arc<Runner>,
    max: usize,
    ttl: Duration,
    live: Mutex<HashMap<String, Entry>>,
    state_dir: Option<PathBuf>,
}

impl Sessions {
    /// A session manager for `runner`.
    pub fn new(runner: Arc<Runner>, max: usize, ttl: Duration) -> Self {
        Self {
            runner,
            max,
            ttl,
            live: Mutex::new(HashMap::new()),
            state_dir: None,
        }
    }

    /// Keeps sessions in `dir` (made if missing), so later processes can go on
    /// with them; deletes the snapshots there idle past the TTL.
    pub fn with_state_dir(mut self, dir: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("failed to make the state dir `{}`", dir.display()))?;
        self.state_dir = Some(dir.to_path_buf());
        self.sweep();
        Ok(self)
    }

    /// The snapshot file of session `id` in the state dir (only for ids this
    /// module could have made: nothing else names a path).
    fn file(&self, id: &str) -> Option<PathBuf> {
        state_file(self.state_dir.as_ref()?, id)
    }

    /// Whether session `id` is saved in the state dir.
    pub fn persisted(&self, id: &str) -> bool {
        self.file(id).is_some_and(|f| f.is_file())
    }

    /// Deletes saved sessions idle for longer than the TTL.
    fn sweep(&self) {
        let Some(dir) = &self.state_dir else { return };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|idle| idle > self.ttl);
            if old && entry.file_name().to_string_lossy().ends_with(".snap") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Saves a session to the state dir if it changed since it was last saved.
    async fn save(&self, id: &str, session: &mut Session) {
        let Some(file) = self.file(id) else { return };
        let written = match session.snapshot_if_changed().await {
            Ok(None) => return,
            Ok(Some(bytes)) => crate::limits::write_aside(&file, &bytes).map_err(|e| e.to_string()),
            Err(e) => Err(e.message),
        };
        if let Err(e) = written {
            // The call itself went well; say so on the server's log.
            log_line!("witbox: failed to save session {id} to the state dir: {e}");
            session.saved = None;
        }
    }

    /// A saved session, restored into memory under its own id.
    async fn load(&self, id: &str) -> Result<(), ToolError> {
        let Some(file) = self.file(id).filter(|f| f.is_file()) else {
            return Err(self.no_session(id));
        };
        let bytes = std::fs::read(&file).map_err(|e| {
            ToolError::new(
                ErrorKind::Internal,
                format!("failed to read session `{id}` from the state dir: {e}"),
            )
        })?;
        self.check_room()?;
        let (mut session, _missing) = self.runner.restore(&bytes).await.map_err(|e| {
            ToolError::new(
                e.kind,
                format!(
                    "failed to continue session `{id}` from the state dir: {}",
                    e.message
                ),
            )
        })?;
        session.set_caller(&format!("session {id}"));
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.entry(id.to_string()).or_insert_with(|| Entry {
            session: Arc::new(tokio::sync::Mutex::new(session)),
            last_used: Instant::now(),
        });
        Ok(())
    }

    /// Closes a session and deletes it from the state dir (a client's
    /// `close_session`, where [`Sessions::close`] only lets it go from memory).
    pub fn close_for_good(&self, id: &str) -> bool {
        let was_saved = self
            .file(id)
            .is_some_and(|f| std::fs::remove_file(f).is_ok());
        self.close(id) || was_saved
    }

    /// The runner sessions are made from.
    pub fn runner(&self) -> &Arc<Runner> {
        &self.runner
    }

    /// The most sessions open at once (`max-sessions`).
    pub fn max(&self) -> usize {
        self.max
    }

    /// How long a session may sit idle (`session-ttl-s`).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether session `id` is open (idle ones past the TTL are closed first).
    pub fn contains(&self, id: &str) -> bool {
        self.evict_idle();
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    /// Starts a session and returns its id.
    pub async fn create(&self) -> Result<String, ToolError> {
        self.sweep();
        self.check_room()?;
        let session = self.runner.session().await.map_err(|e| {
            ToolError::new(
                ErrorKind::Internal,
                format!("failed to start a session: {e:#}"),
            )
        })?;
        self.insert(session)
    }

    /// Starts a session from a snapshot ([`Sessions::snapshot`]); returns its id
    /// and each global it could not put back.
    pub async fn restore(&self, snapshot: &[u8]) -> Result<(String, Vec<String>), ToolError> {
        self.check_room()?;
        let (session, missing) = self.runner.restore(snapshot).await?;
        Ok((self.insert(session)?, missing))
    }

    /// A session's globals and files as bytes ([`Session::snapshot`]).
    pub async fn snapshot(&self, id: &str) -> Result<Vec<u8>, ToolError> {
        let session = self.get(id).await?;
        let _touch = Touch(self, id);
        let mut session = session.lock().await;
        session.snapshot().await
    }

    fn check_room(&self) -> Result<(), ToolError> {
        self.evict_idle();
        if self.len() >= self.max {
            return Err(ToolError::new(
                ErrorKind::Denied,
                format!(
                    "too many sessions: {} are open, the limit is {} (`max-sessions`); close one, or wait {} s for idle ones to expire",
                    self.len(),
                    self.max,
                    self.ttl.as_secs()
                ),
            ));
        }
        Ok(())
    }

    fn insert(&self, mut session: Session) -> Result<String, ToolError> {
        let id = new_id();
        session.set_caller(&format!("session {id}"));
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.len() >= self.max {
            return Err(ToolError::new(
                ErrorKind::Denied,
                format!(
                    "too many sessions: the limit is {} (`max-sessions`)",
                    self.max
                ),
            ));
        }
        live.insert(
            id.clone(),
            Entry {
                session: Arc::new(tokio::sync::Mutex::new(session)),
                last_used: Instant::now(),
            },
        );
        Ok(id)
    }

    /// Runs a cell in a session. A run dropped before it ends (its caller
    /// cancelled) leaves the session open: the next run on it starts it again.
    pub async fn run(&self, id: &str, code: &str) -> Result<RunOutcome, ToolError> {
        let session = self.get(id).await?;
        let _touch = Touch(self, id);
        let mut session = session.lock().await;
        let outcome = session.run(code).await;
        self.save(id, &mut session).await;
        outcome
    }

    /// Runs a cell in a session as [`Sessions::run`] does, and hands its output
    /// to `sink` as the cell writes it ([`Session::run_streaming`]).
    pub async fn run_streaming(
        &self,
        id: &str,
        code: &str,
        sink: super::OutputSink,
    ) -> Result<RunOutcome, ToolError> {
        let session = self.get(id).await?;
        let _touch = Touch(self, id);
        let mut session = session.lock().await;
        let outcome = session.run_streaming(code, sink).await;
        self.save(id, &mut session).await;
        outcome
    }

    /// Forgets a session's globals.
    pub async fn reset(&self, id: &str) -> Result<(), ToolError> {
        let session = self.get(id).await?;
        let _touch = Touch(self, id);
        let mut session = session.lock().await;
        let reset = session.reset().await;
        self.save(id, &mut session).await;
        reset
    }

    /// Writes a file into a session's scratch folder (after its running cell).
    pub async fn write_file(&self, id: &str, path: &str, bytes: &[u8]) -> Result<(), ToolError> {
        let session = self.get(id).await?;
        let _touch = Touch(self, id);
        let mut session = session.lock().await;
        session.write_file(path, bytes)?;
        self.save(id, &mut session).await;
        Ok(())
    }

    /// Reads a file of a session's scratch folder.
    pub async fn read_file(&self, id: &str, path: &str) -> Result<Vec<u8>, ToolError> {
        let session = self.get(id).await?;
        let _touch = Touch(self, id);
        let session = session.lock().await;
        session.read_file(path)
    }

    /// Lists a folder of a session's scratch folder.
    pub async fn list_files(
        &self,
        id: &str,
        path: &str,
    ) -> Result<Vec<super::FileEntry>, ToolError> {
        let session = self.get(id).await?;
        let _touch = Touch(self, id);
        let session = session.lock().await;
        session.list_files(path)
    }

    /// Of `ids`, the open session idle the longest (not running), and for how long.
    pub fn oldest_idle<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a String>,
    ) -> Option<(String, Duration)> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        ids.into_iter()
            .filter_map(|id| live.get(id).map(|e| (id, e)))
            .filter(|(_, e)| e.session.try_lock().is_ok())
            .map(|(id, e)| (id.clone(), e.last_used.elapsed()))
            .max_by_key(|(_, idle)| *idle)
    }

    /// Closes a session; `false` if there was none with that id.
    pub fn close(&self, id: &str) -> bool {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
            .is_some()
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes sessions idle for longer than the TTL; returns how many.
    pub fn evict_idle(&self) -> usize {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let before = live.len();
        let ttl = self.ttl;
        // A session in use (its lock held) is never idle.
        live.retain(|_, e| e.last_used.elapsed() < ttl || e.session.try_lock().is_err());
        before - live.len()
    }

    fn no_session(&self, id: &str) -> ToolError {
        ToolError::new(
            ErrorKind::NotFound,
            format!(
                "no session `{id}`: it was closed, or it sat idle for more than {} s",
                self.ttl.as_secs()
            ),
        )
    }

    async fn get(&self, id: &str) -> Result<Arc<tokio::sync::Mutex<Session>>, ToolError> {
        self.evict_idle();
        let live = |s: &Self| {
            let mut live = s.live.lock().unwrap_or_else(|p| p.into_inner());
            live.get_mut(id).map(|entry| {
                entry.last_used = Instant::now();
                entry.session.clone()
            })
        };
        if let Some(session) = live(self) {
            return Ok(session);
        }
        self.load(id).await?;
        live(self).ok_or_else(|| self.no_session(id))
    }

    fn touch(&self, id: &str) {
        if let Some(e) = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(id)
        {
            e.last_used = Instant::now();
        }
    }
}

/// Marks a session used when its call ends, however it ends (a cancelled call
/// is dropped mid-way): a long run is never taken for idle time.
struct Touch<'a>(&'a Sessions, &'a str);

impl Drop for Touch<'_> {
    fn drop(&mut self) {
        self.0.touch(self.1);
    }
}

/// Where a state dir keeps session `id`; `None` for a string that is not a
/// session id (`s-` and 32 hex digits), so no id names another path.
pub fn state_file(dir: &Path, id: &str) -> Option<PathBuf> {
    let hex = id.strip_prefix("s-")?;
    (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| dir.join(format!("{id}.snap")))
}

/// A session id that other clients cannot guess: 122 random bits (a v4 UUID).
pub fn new_id() -> String {
    format!("s-{}", uuid::Uuid::new_v4().simple())
}
