//! `run_python`'s output as it comes: when the client's `tools/call` carries
//! `_meta.progressToken`, the run streams ([`Sessions::run_streaming`]) and what
//! it writes goes to the client in `notifications/progress`, one per
//! [`BATCH`] at most. `message` is the new output (stdout and stderr as they
//! were written, redacted, within `max-output-bytes` in all), `progress` the
//! bytes of output so far. The result is the same as without a token, and comes
//! after the last notification.

use crate::error::ToolError;
use crate::python::{OutputSink, RunOutcome, Sessions, Stream};
use rmcp::RoleServer;
use rmcp::model::{CallToolRequestParams, ProgressNotificationParam, ProgressToken};
use rmcp::service::{Peer, RequestContext};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// Output that arrives within this long of the first piece goes out together.
const BATCH: Duration = Duration::from_millis(50);

/// Where a call's progress goes: the client that asked for it, and its token.
pub(super) struct Progress {
    peer: Peer<RoleServer>,
    token: ProgressToken,
}

impl Progress {
    /// The progress a call asked for (`_meta.progressToken`), if any.
    pub(super) fn of(
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Option<Self> {
        let token = context.meta.get_progress_token().or_else(|| {
            request
                .meta
                .as_ref()
                .and_then(|meta| meta.get_progress_token())
        })?;
        Some(Self {
            peer: context.peer.clone(),
            token,
        })
    }

    /// Runs a cell, sending its output to the client as it comes; returns once
    /// the last of it is sent. Both halves run in the call's task, so a call that
    /// is cancelled stops both.
    pub(super) async fn run(
        self,
        sessions: &Sessions,
        id: &str,
        code: &str,
    ) -> Result<RunOutcome, ToolError> {
        let (sink, chunks) = OutputSink::channel();
        // The run drops its sink when it ends, which ends `forward`.
        let (ran, ()) = tokio::join!(sessions.run_streaming(id, code, sink), self.forward(chunks));
        ran
    }

    async fn forward(self, mut chunks: UnboundedReceiver<(Stream, String)>) {
        let mut sent = 0usize;
        while let Some((_, mut batch)) = chunks.recv().await {
            let window = tokio::time::sleep(BATCH);
            tokio::pin!(window);
            loop {
                tokio::select! {
                    () = &mut window => break,
                    next = chunks.recv() => match next {
                        Some((_, chunk)) => batch.push_str(&chunk),
                        None => break,
                    },
                }
            }
            // Every chunk has text, so `progress` grows with each notification.
            sent += batch.len();
            let note =
                ProgressNotificationParam::new(self.token.clone(), sent as f64).with_message(batch);
            if self.peer.notify_progress(note).await.is_err() {
                // The client is gone; the run goes on (its own call notices).
                return;
            }
        }
    }
}
