//! A server's Python sessions, which may still be loading: `witbox mcp` answers
//! `initialize` at once and compiles the runner in the background when the
//! compile cache is cold (12-17 s for the 25 MB runner; clients give up on
//! `initialize` after 5-10 s). A call that needs a session waits for it.

use crate::error::{ErrorKind, ToolError};
use crate::python::Sessions;
use std::sync::Arc;
use tokio::sync::watch;

type Loaded = Option<Result<Arc<Sessions>, String>>;

/// The session manager, now or once it has loaded.
pub(super) struct Python {
    ready: watch::Receiver<Loaded>,
}

impl Python {
    /// Sessions that are ready.
    pub(super) fn loaded(sessions: Arc<Sessions>) -> Self {
        let (_tx, ready) = watch::channel(Some(Ok(sessions)));
        Self { ready }
    }

    /// Sessions that `load` makes on a thread of its own; the server's log (stderr)
    /// says when it takes long and when it is done.
    pub(super) fn loading(
        load: impl FnOnce() -> anyhow::Result<Arc<Sessions>> + Send + 'static,
    ) -> Self {
        let (tx, ready) = watch::channel(None);
        std::thread::Builder::new()
            .name("witbox-runner-load".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let loaded = load().map_err(|e| format!("{e:#}"));
                let took = started.elapsed();
                if took > std::time::Duration::from_secs(1) {
                    eprintln!(
                        "witbox mcp: the Python runner is ready ({:.1} s: it was compiled and cached; the next start takes milliseconds)",
                        took.as_secs_f64()
                    );
                }
                if let Err(e) = &loaded {
                    eprintln!("witbox mcp: the Python runner failed to load: {e}");
                }
                let _ = tx.send(Some(loaded));
            })
            .expect("failed to start a thread");
        Self { ready }
    }

    /// The sessions if they have loaded.
    pub(super) fn now(&self) -> Option<Arc<Sessions>> {
        match &*self.ready.borrow() {
            Some(Ok(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// The sessions, once they have loaded.
    pub(super) async fn get(&self) -> Result<Arc<Sessions>, ToolError> {
        let mut ready = self.ready.clone();
        let loaded = ready
            .wait_for(Option::is_some)
            .await
            .map_err(|_| ToolError::new(ErrorKind::Internal, "the Python runner never loaded"))?;
        match &*loaded {
            Some(Ok(s)) => Ok(s.clone()),
            Some(Err(e)) => Err(ToolError::new(
                ErrorKind::Load,
                format!("the Python runner failed to load: {e}"),
            )),
            None => unreachable!("waited for a value"),
        }
    }
}
