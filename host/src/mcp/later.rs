//! What a server has now or will have soon: `witbox mcp` answers `initialize`
//! at once and compiles in the background what the compile cache does not hold
//! (12-17 s for the 25 MB Python runner, about 10 s for a Python tool; clients
//! give up on `initialize` after 5-10 s). A call that needs it waits for it.

use crate::error::{ErrorKind, ToolError};
use tokio::sync::watch;

type Loaded<T> = Option<Result<T, String>>;

/// A value (the tools, the session manager), now or once it has loaded.
pub(super) struct Later<T> {
    what: &'static str,
    ready: watch::Receiver<Loaded<T>>,
}

/// Where a background load sends what it made.
pub(super) struct Promise<T> {
    what: &'static str,
    tx: watch::Sender<Loaded<T>>,
}

impl<T: Clone> Later<T> {
    /// A value that is ready.
    pub(super) fn ready(what: &'static str, value: T) -> Self {
        let (_tx, ready) = watch::channel(Some(Ok(value)));
        Self { what, ready }
    }

    /// A value to come, and the promise to keep.
    pub(super) fn promised(what: &'static str) -> (Self, Promise<T>) {
        let (tx, ready) = watch::channel(None);
        (Self { what, ready }, Promise { what, tx })
    }

    /// The value if it has loaded.
    pub(super) fn now(&self) -> Option<T> {
        match &*self.ready.borrow() {
            Some(Ok(v)) => Some(v.clone()),
            _ => None,
        }
    }

    /// The value, once it has loaded.
    pub(super) async fn get(&self) -> Result<T, ToolError> {
        let mut ready = self.ready.clone();
        let loaded = ready.wait_for(Option::is_some).await.map_err(|_| {
            ToolError::new(ErrorKind::Internal, format!("{} never loaded", self.what))
        })?;
        match &*loaded {
            Some(Ok(v)) => Ok(v.clone()),
            Some(Err(e)) => Err(ToolError::new(
                ErrorKind::Load,
                format!("{} failed to load: {e}", self.what),
            )),
            None => unreachable!("waited for a value"),
        }
    }
}

impl<T: Clone> Promise<T> {
    /// Keeps the promise with what `load` makes, and gives it back too; the
    /// server's log (stderr) says when it took long, or failed.
    pub(super) fn make(self, load: impl FnOnce() -> anyhow::Result<T>) -> Result<T, String> {
        let started = std::time::Instant::now();
        let loaded = load().map_err(|e| format!("{e:#}"));
        let took = started.elapsed();
        match &loaded {
            Ok(_) if took > std::time::Duration::from_secs(1) => log_line!(
                "witbox mcp: {}: ready in {:.1} s (compiled and cached; the next start takes milliseconds)",
                self.what,
                took.as_secs_f64()
            ),
            Ok(_) => {}
            Err(e) => log_line!("witbox mcp: {}: failed to load: {e}", self.what),
        }
        let _ = self.tx.send(Some(loaded.clone()));
        loaded
    }
}

/// Runs `work` on a thread of its own, named `name`.
pub(super) fn in_background(
    name: &str,
    work: impl FnOnce() + Send + 'static,
) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(work)
        .map(drop)
        .map_err(|e| anyhow::anyhow!("failed to start a thread: {e}"))
}
