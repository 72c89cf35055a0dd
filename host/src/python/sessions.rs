//! Live sessions by id, for servers (MCP's `run_python`): ids no other client can
//! guess, a cap on how many live, and an idle TTL.

use super::{RunOutcome, Runner, Session};
use crate::error::{ErrorKind, ToolError};
use std::collections::HashMap;
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
}

impl Sessions {
    /// A session manager for `runner`.
    pub fn new(runner: Arc<Runner>, max: usize, ttl: Duration) -> Self {
        Self {
            runner,
            max,
            ttl,
            live: Mutex::new(HashMap::new()),
        }
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
        let mut session = self.runner.session().await.map_err(|e| {
            ToolError::new(
                ErrorKind::Internal,
                format!("failed to start a session: {e:#}"),
            )
        })?;
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
        let session = self.get(id)?;
        let _touch = Touch(self, id);
        let mut session = session.lock().await;
        session.run(code).await
    }

    /// Forgets a session's globals.
    pub async fn reset(&self, id: &str) -> Result<(), ToolError> {
        let session = self.get(id)?;
        let _touch = Touch(self, id);
        let mut session = session.lock().await;
        session.reset().await
    }

    /// Writes a file into a session's scratch folder (after its running cell).
    pub async fn write_file(&self, id: &str, path: &str, bytes: &[u8]) -> Result<(), ToolError> {
        let session = self.get(id)?;
        let _touch = Touch(self, id);
        let session = session.lock().await;
        session.write_file(path, bytes)
    }

    /// Reads a file of a session's scratch folder.
    pub async fn read_file(&self, id: &str, path: &str) -> Result<Vec<u8>, ToolError> {
        let session = self.get(id)?;
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
        let session = self.get(id)?;
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

    fn get(&self, id: &str) -> Result<Arc<tokio::sync::Mutex<Session>>, ToolError> {
        self.evict_idle();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let entry = live.get_mut(id).ok_or_else(|| {
            ToolError::new(
                ErrorKind::NotFound,
                format!(
                    "no session `{id}`: it was closed, or it sat idle for more than {} s",
                    self.ttl.as_secs()
                ),
            )
        })?;
        entry.last_used = Instant::now();
        Ok(entry.session.clone())
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

/// A session id that other clients cannot guess: 122 random bits (a v4 UUID).
fn new_id() -> String {
    format!("s-{}", uuid::Uuid::new_v4().simple())
}
