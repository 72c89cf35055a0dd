//! Live sessions by id, for servers (MCP's `run_python`): ids no other client can
//! guess, a cap on how many live, and an idle TTL. With a state dir, each
//! session is saved there (a snapshot, `ID.snap`) after every call that changed
//! it, and a session id found there is continued, also by a later process: that
//! is what keeps a session across a client that starts a server per call, or a
//! server restart. Snapshots idle past the TTL are deleted. With a shared store
//! (Redis, `shared.rs`), replicas serve each other's sessions: what one holds in
//! memory is a cache of the store, checked before each call under a lease.

use super::shared::{LEASE, Lease, Shared};
use super::{RunOutcome, Runner, Session};
use crate::error::{ErrorKind, ToolError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Entry {
    session: Arc<tokio::sync::Mutex<Session>>,
    last_used: Instant,
    /// The principal that made it (`witbox serve`'s REST API), if any.
    owner: Option<String>,
    /// With a shared store: the store's `version` this copy is.
    version: u64,
}

/// A session locked for one call, and with a shared store, leased.
struct Held {
    session: tokio::sync::OwnedMutexGuard<Session>,
    lease: Option<Lease>,
}

/// Where a server keeps its sessions besides memory.
#[derive(Clone, Default)]
pub enum Keep {
    /// Nowhere: they end with the process.
    #[default]
    Memory,
    /// In a state dir, for later processes on this machine (`--state-dir`).
    Dir(PathBuf),
    /// In a store that replicas share (`--store redis://...`).
    Shared(Arc<Shared>),
}

/// Live sessions by id, capped in number, closed after an idle TTL.
pub struct Sessions {
    runner: Arc<Runner>,
    max: usize,
    ttl: Duration,
    live: Mutex<HashMap<String, Entry>>,
    keep: Keep,
}

impl Sessions {
    /// A session manager for `runner`.
    pub fn new(runner: Arc<Runner>, max: usize, ttl: Duration) -> Self {
        Self {
            runner,
            max,
            ttl,
            live: Mutex::new(HashMap::new()),
            keep: Keep::Memory,
        }
    }

    /// Keeps sessions where `keep` says.
    pub fn keeping(self, keep: &Keep) -> anyhow::Result<Self> {
        match keep {
            Keep::Memory => Ok(self),
            Keep::Dir(dir) => self.with_state_dir(dir),
            Keep::Shared(shared) => Ok(self.with_shared(shared.clone())),
        }
    }

    /// Keeps sessions in a store that replicas share (see `shared.rs`).
    pub fn with_shared(mut self, shared: Arc<Shared>) -> Self {
        self.keep = Keep::Shared(shared);
        self
    }

    /// The shared store, if sessions are kept in one.
    pub fn shared(&self) -> Option<&Arc<Shared>> {
        match &self.keep {
            Keep::Shared(shared) => Some(shared),
            _ => None,
        }
    }

    fn state_dir(&self) -> Option<&Path> {
        match &self.keep {
            Keep::Dir(dir) => Some(dir),
            _ => None,
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
        self.keep = Keep::Dir(dir.to_path_buf());
        self.sweep();
        Ok(self)
    }

    /// The snapshot file of session `id` in the state dir (only for ids this
    /// module could have made: nothing else names a path).
    fn file(&self, id: &str) -> Option<PathBuf> {
        state_file(self.state_dir()?, id)
    }

    /// Whether session `id` is saved in the state dir.
    pub fn persisted(&self, id: &str) -> bool {
        self.file(id).is_some_and(|f| f.is_file())
    }

    /// Deletes saved sessions idle for longer than the TTL.
    fn sweep(&self) {
        let Some(dir) = self.state_dir() else { return };
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
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if old && name.ends_with(".snap") {
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(path.with_extension("owner"));
            } else if old && name.ends_with(".owner") && !path.with_extension("snap").exists() {
                // Its session's snapshot is gone.
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// Saves a session to the state dir if it changed since it was last saved.
    async fn save(&self, id: &str, session: &mut Session) {
        let Some(file) = self.file(id) else { return };
        let started = Instant::now();
        let written = match session.snapshot_if_changed().await {
            Ok(None) => return,
            Ok(Some(bytes)) => crate::limits::write_aside(&file, &bytes).map_err(|e| e.to_string()),
            Err(e) => Err(e.message),
        };
        crate::metrics::save(written.is_ok(), started.elapsed());
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
        let session = self.revive(id, &bytes, "the state dir").await?;
        let owner = std::fs::read_to_string(file.with_extension("owner")).ok();
        self.adopt(id, session, owner, 0);
        Ok(())
    }

    /// Closes a session and deletes it from the state dir or the shared store
    /// (a client's `close_session`, where [`Sessions::close`] only lets it go
    /// from memory).
    pub async fn close_for_good(&self, id: &str) -> bool {
        let was_saved = match (self.shared(), self.file(id)) {
            (Some(shared), _) => shared.delete(id).await,
            (None, Some(file)) => {
                let _ = std::fs::remove_file(file.with_extension("owner"));
                std::fs::remove_file(file).is_ok()
            }
            (None, None) => false,
        };
        self.close(id) || was_saved
    }

    /// Who made session `id`: `None` if there is no such session, `Some(None)`
    /// if no principal did (an MCP client's, or one made through the library).
    pub async fn owner(&self, id: &str) -> Result<Option<Option<String>>, ToolError> {
        if let Some(entry) = self.live.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(Some(entry.owner.clone()));
        }
        if let Some(shared) = self.shared() {
            return shared.owner(id).await;
        }
        Ok(self
            .file(id)
            .filter(|f| f.is_file())
            .map(|f| std::fs::read_to_string(f.with_extension("owner")).ok()))
    }

    /// The open sessions `owner` made (with a shared store, all replicas').
    pub async fn owned_by(&self, owner: &str) -> Result<Vec<String>, ToolError> {
        if let Some(shared) = self.shared() {
            return shared.owned_by(owner).await;
        }
        self.evict_idle();
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let mut ids: Vec<String> = live
            .iter()
            .filter(|(_, e)| e.owner.as_deref() == Some(owner))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        Ok(ids)
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
        self.create_for(None).await
    }

    /// Starts a session that `owner` makes ([`Sessions::owner`]).
    pub async fn create_for(&self, owner: Option<&str>) -> Result<String, ToolError> {
        self.sweep();
        self.check_room()?;
        let session = self.runner.session().await.map_err(|e| {
            ToolError::new(
                ErrorKind::Internal,
                format!("failed to start a session: {e:#}"),
            )
        })?;
        self.keep(session, owner).await
    }

    /// Starts a session from a snapshot ([`Sessions::snapshot`]); returns its id
    /// and each global it could not put back.
    pub async fn restore(&self, snapshot: &[u8]) -> Result<(String, Vec<String>), ToolError> {
        self.restore_for(snapshot, None).await
    }

    /// [`Sessions::restore`], for `owner`.
    pub async fn restore_for(
        &self,
        snapshot: &[u8],
        owner: Option<&str>,
    ) -> Result<(String, Vec<String>), ToolError> {
        self.check_room()?;
        let (session, missing) = self.runner.restore(snapshot).await?;
        Ok((self.keep(session, owner).await?, missing))
    }

    /// A new session under a new id, saved to the store at once (so that
    /// other replicas, and later processes, find it).
    async fn keep(&self, session: Session, owner: Option<&str>) -> Result<String, ToolError> {
        let id = self.insert(session, owner)?;
        let lease = match self.shared() {
            Some(shared) => match shared.lease(&id, self.ttl, LEASE, true).await {
                Ok(lease) => lease.map(|(lease, ..)| lease),
                Err(e) => {
                    self.close(&id);
                    return Err(e);
                }
            },
            None => {
                if let (Some(owner), Some(file)) = (owner, self.file(&id))
                    && let Err(e) =
                        crate::limits::write_aside(&file.with_extension("owner"), owner.as_bytes())
                {
                    log_line!("witbox: failed to save session {id}'s owner to the state dir: {e}");
                }
                None
            }
        };
        let session = self.local(&id).ok_or_else(|| self.no_session(&id))?;
        let session = session.lock_owned().await;
        self.leave(&id, Held { session, lease }).await;
        Ok(id)
    }

    /// A session's globals and files as bytes ([`Session::snapshot`]).
    pub async fn snapshot(&self, id: &str) -> Result<Vec<u8>, ToolError> {
        let mut held = self.enter(id).await?;
        let _touch = Touch(self, id);
        let snapshot = held.session.snapshot().await;
        self.leave(id, held).await;
        snapshot
    }

    fn check_room(&self) -> Result<(), ToolError> {
        self.evict_idle();
        if self.shared().is_some() {
            self.make_room();
        }
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

    /// With a shared store, what a replica holds is a cache of it: when
    /// `max-sessions` are in memory, the copy idle the longest goes (the store
    /// has it, as of its last call), so `max-sessions` bounds a replica's memory.
    fn make_room(&self) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.len() < self.max {
            return;
        }
        let oldest = live
            .iter()
            .filter(|(_, e)| e.session.try_lock().is_ok())
            .max_by_key(|(_, e)| e.last_used.elapsed())
            .map(|(id, _)| id.clone());
        if let Some(id) = oldest {
            live.remove(&id);
        }
    }

    fn insert(&self, mut session: Session, owner: Option<&str>) -> Result<String, ToolError> {
        // The data runner's sessions are told apart by their id (`d-`).
        let id = match self.runner.is_data() {
            true => format!("d-{}", &new_id()[2..]),
            false => new_id(),
        };
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
                owner: owner.map(str::to_string),
                version: 0,
            },
        );
        Ok(id)
    }

    /// Runs a cell in a session. A run dropped before it ends (its caller
    /// cancelled) leaves the session open: the next run on it starts it again.
    pub async fn run(&self, id: &str, code: &str) -> Result<RunOutcome, ToolError> {
        let mut held = self.enter(id).await?;
        let _touch = Touch(self, id);
        let outcome = held.session.run(code).await;
        self.leave(id, held).await;
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
        let mut held = self.enter(id).await?;
        let _touch = Touch(self, id);
        let outcome = held.session.run_streaming(code, sink).await;
        self.leave(id, held).await;
        outcome
    }

    /// Forgets a session's globals.
    pub async fn reset(&self, id: &str) -> Result<(), ToolError> {
        let mut held = self.enter(id).await?;
        let _touch = Touch(self, id);
        let reset = held.session.reset().await;
        self.leave(id, held).await;
        reset
    }

    /// Writes a file into a session's scratch folder (after its running cell).
    pub async fn write_file(&self, id: &str, path: &str, bytes: &[u8]) -> Result<(), ToolError> {
        let held = self.enter(id).await?;
        let _touch = Touch(self, id);
        let written = held.session.write_file(path, bytes);
        self.leave(id, held).await;
        written
    }

    /// Reads a file of a session's scratch folder.
    pub async fn read_file(&self, id: &str, path: &str) -> Result<Vec<u8>, ToolError> {
        let held = self.enter(id).await?;
        let _touch = Touch(self, id);
        let read = held.session.read_file(path);
        self.leave(id, held).await;
        read
    }

    /// Lists a folder of a session's scratch folder.
    pub async fn list_files(
        &self,
        id: &str,
        path: &str,
    ) -> Result<Vec<super::FileEntry>, ToolError> {
        let held = self.enter(id).await?;
        let _touch = Touch(self, id);
        let listed = held.session.list_files(path);
        self.leave(id, held).await;
        listed
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

    /// How many open sessions are running a call, and how many are idle.
    pub fn running_and_idle(&self) -> (usize, usize) {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let running = live
            .values()
            .filter(|e| e.session.try_lock().is_err())
            .count();
        (running, live.len() - running)
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

    /// The session in memory, if it is there.
    fn local(&self, id: &str) -> Option<Arc<tokio::sync::Mutex<Session>>> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.get_mut(id).map(|entry| {
            entry.last_used = Instant::now();
            entry.session.clone()
        })
    }

    /// Session `id`, locked for a call. With a shared store, also leased, and
    /// as the store has it: a copy in memory another replica has run since is
    /// replaced by the store's.
    async fn enter(&self, id: &str) -> Result<Held, ToolError> {
        let Some(shared) = self.shared() else {
            let session = self.get(id).await?;
            let session = session.lock_owned().await;
            return Ok(Held {
                session,
                lease: None,
            });
        };
        self.evict_idle();
        let session = match self.local(id) {
            Some(session) => session,
            None => self.fetch(shared, id).await?,
        };
        let mut session = session.lock_owned().await;
        // A cell on another replica runs for at most the runner's timeout, and
        // a dead replica's lease lapses within `LEASE`.
        let wait = self.runner.sandbox().limits.timeout + LEASE + Duration::from_secs(2);
        let Some((lease, version, _)) = shared.lease(id, self.ttl, wait, false).await? else {
            self.close(id);
            return Err(self.no_session(id));
        };
        let known = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|e| e.version);
        if known != Some(version) {
            let stored = shared.load(id).await?.ok_or_else(|| self.no_session(id))?;
            let mut fresh = self.revive(id, &stored.snapshot, "the store").await?;
            fresh.mark_saved();
            let stale = std::mem::replace(&mut *session, fresh);
            // Freeing an instance's memory takes a while: not on the caller's time.
            tokio::task::spawn_blocking(move || drop(stale));
            self.set_version(id, stored.version);
        }
        Ok(Held {
            session,
            lease: Some(lease),
        })
    }

    /// Session `id` from the shared store, into memory.
    async fn fetch(
        &self,
        shared: &Shared,
        id: &str,
    ) -> Result<Arc<tokio::sync::Mutex<Session>>, ToolError> {
        let stored = shared.load(id).await?.ok_or_else(|| self.no_session(id))?;
        self.check_room()?;
        let mut session = self.revive(id, &stored.snapshot, "the store").await?;
        // What was just restored is what the store has.
        session.mark_saved();
        Ok(self.adopt(id, session, stored.owner, stored.version))
    }

    /// Puts a restored session in memory under `id`, unless a call made the
    /// same meanwhile; the one in memory.
    fn adopt(
        &self,
        id: &str,
        session: Session,
        owner: Option<String>,
        version: u64,
    ) -> Arc<tokio::sync::Mutex<Session>> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let entry = live.entry(id.to_string()).or_insert_with(|| Entry {
            session: Arc::new(tokio::sync::Mutex::new(session)),
            last_used: Instant::now(),
            owner,
            version,
        });
        entry.session.clone()
    }

    /// With a shared store: the store's `version` the copy of `id` in memory is.
    fn set_version(&self, id: &str, version: u64) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = live.get_mut(id) {
            e.version = version;
        }
    }

    /// Session `id`, restored from the snapshot `from` (the state dir, the
    /// store) keeps of it.
    async fn revive(&self, id: &str, snapshot: &[u8], from: &str) -> Result<Session, ToolError> {
        let (mut session, _missing) = self.runner.restore(snapshot).await.map_err(|e| {
            ToolError::new(
                e.kind,
                format!(
                    "failed to continue session `{id}` from {from}: {}",
                    e.message
                ),
            )
        })?;
        session.set_caller(&format!("session {id}"));
        Ok(session)
    }

    /// Ends a call on a session: saves it if it changed, lets its lease go.
    async fn leave(&self, id: &str, mut held: Held) {
        let (Some(shared), Some(lease)) = (self.shared(), held.lease.take()) else {
            self.save(id, &mut held.session).await;
            return;
        };
        let started = Instant::now();
        let failed = match held.session.snapshot_if_changed().await {
            // Dropped, the lease goes without the caller waiting for it.
            Ok(None) => return,
            Ok(Some(bytes)) => {
                let owner = self
                    .live
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(id)
                    .and_then(|e| e.owner.clone());
                match shared.save(lease, &bytes, owner.as_deref(), self.ttl).await {
                    Ok(version) => {
                        self.set_version(id, version);
                        None
                    }
                    Err(e) => Some(e.message),
                }
            }
            Err(e) => Some(e.message),
        };
        crate::metrics::save(failed.is_none(), started.elapsed());
        if let Some(e) = failed {
            // The call itself went well; the next one starts from the store.
            log_line!("witbox: failed to save session {id} to the store: {e}");
            held.session.saved = None;
            self.set_version(id, u64::MAX);
        }
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
