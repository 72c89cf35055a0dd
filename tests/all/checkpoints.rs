//! Checkpoints: a session restarted after a timeout, a crash or a cancel gets
//! back the globals of its last completed cell, and is told what it did not get.

use crate::support::*;
use std::sync::Arc;
use witbox::python::RestartReason;
use witbox::{Manifest, Registry};

fn runner_with(runner_keys: &str, policy: &str) -> Arc<witbox::Runner> {
    compiling(|| {
        let text =
            runner_manifest(policy).replace("[runner]\n", &format!("[runner]\n{runner_keys}\n"));
        let manifest = Manifest::parse(&text, &root()).unwrap();
        let registry = Registry::load(&manifest, options()).unwrap();
        witbox::Runner::load(&manifest, &manifest.runner, registry).unwrap()
    })
}

const SPIN: &str = "import time\nwhile True: time.sleep(0.001)";

/// The caller stops waiting for a cell that never ends: the run is dropped mid-cell.
async fn cancel_mid_cell(s: &mut witbox::Session) {
    let dropped = tokio::time::timeout(std::time::Duration::from_millis(300), s.run(SPIN)).await;
    assert!(dropped.is_err());
}

#[tokio::test]
async fn a_timeout_keeps_functions_classes_and_shared_values() {
    let runner = runner_with("", "timeout-ms = 300");
    let mut s = runner.session().await.unwrap();
    let o = cell(
        &mut s,
        "import math as m\nK = 10\nxs = [1, 2]\nys = xs\ndef f(n): return n * K\n\
         class C:\n    def me(self): return C\nc = C()\ngen = (i for i in range(3))",
    )
    .await;
    assert!(o.ok(), "{o:?}");
    let o = cell(&mut s, SPIN).await;
    assert_eq!(error_of(&o).0, "Timeout");
    assert_eq!(o.restart_reason, Some(RestartReason::Timeout));
    assert!(o.globals_restored);
    assert_eq!(o.not_restored, ["gen: a generator cannot be checkpointed"]);
    let o = cell(
        &mut s,
        "ys.append(3)\n(xs, ys is xs, f(2), c.me() is C, round(m.pi, 2))",
    )
    .await;
    assert_eq!(
        o.value.as_deref(),
        Some("([1, 2, 3], True, 20, True, 3.14)"),
        "{o:?}"
    );
    // A cell that changed state moves the checkpoint on.
    let o = cell(&mut s, SPIN).await;
    assert!(o.globals_restored);
    let o = cell(&mut s, "xs").await;
    assert_eq!(o.value.as_deref(), Some("[1, 2, 3]"));
    // reset forgets the checkpoint too.
    s.reset().await.unwrap();
    let o = cell(&mut s, SPIN).await;
    assert!(!o.globals_restored);
    assert_eq!(error_of(&cell(&mut s, "xs").await).0, "NameError");
}

/// A cell that changes nothing leaves no checkpoint to make (the first one of a
/// session too): the restarted session has the same, fresh, globals, and says so.
#[tokio::test]
async fn a_cell_that_changes_nothing_is_restored_without_a_checkpoint() {
    let runner = runner_with("", "timeout-ms = 300");
    let mut s = runner.session().await.unwrap();
    assert_eq!(cell(&mut s, "print('hi')").await.stdout, "hi\n");
    let o = cell(&mut s, SPIN).await;
    assert_eq!(o.restart_reason, Some(RestartReason::Timeout));
    assert!(o.globals_restored);
    assert_eq!(
        witbox::python::observe(&o).lines().last().unwrap(),
        "(the Python session restarted because a run passed its time limit: the globals of the last completed cell were restored)"
    );
    assert_eq!(error_of(&cell(&mut s, "time").await).0, "NameError");
    // What the next cell defines is checkpointed as usual.
    cell(&mut s, "kept = 7").await;
    cell(&mut s, SPIN).await;
    assert_eq!(cell(&mut s, "kept").await.value.as_deref(), Some("7"));
}

#[tokio::test]
async fn checkpoints_false_turns_them_off() {
    let runner = runner_with("checkpoints = false", "timeout-ms = 300");
    let mut s = runner.session().await.unwrap();
    cell(&mut s, "x = 1").await;
    let o = cell(&mut s, SPIN).await;
    assert!(o.session_restarted);
    assert!(!o.globals_restored);
    assert_eq!(
        witbox::python::observe(&o).lines().last().unwrap(),
        "(the Python session restarted because a run passed its time limit: its globals are gone)"
    );
    let o = cell(&mut s, "x").await;
    assert_eq!(error_of(&o), ("NameError", "name 'x' is not defined"));
}

#[tokio::test]
async fn a_cancelled_run_restarts_from_the_checkpoint() {
    let runner = runner_with("", "timeout-ms = 60000");
    let mut s = runner.session().await.unwrap();
    cell(&mut s, "total = 41").await;
    cancel_mid_cell(&mut s).await;
    let o = cell(&mut s, "total + 1").await;
    assert_eq!(o.restart_reason, Some(RestartReason::Cancelled));
    assert!(o.globals_restored);
    assert_eq!(o.value.as_deref(), Some("42"));
    assert_eq!(
        witbox::python::observe(&o),
        "value: 42\n(the Python session restarted because the previous run was cancelled: the globals of the last completed cell were restored)\n"
    );
}

#[tokio::test]
async fn after_a_cancel_one_restart_is_enough() {
    let runner = runner_with("", "timeout-ms = 60000");
    let mut s = runner.session().await.unwrap();
    cell(&mut s, "total = 1").await;
    // A reset after a cancel starts the session again once; the run after it
    // is an ordinary one, and the reset's forgetting holds.
    cancel_mid_cell(&mut s).await;
    s.reset().await.unwrap();
    let o = cell(&mut s, "'total' in globals()").await;
    assert!(!o.session_restarted, "{o:?}");
    assert_eq!(o.value.as_deref(), Some("False"));
    // So does a snapshot taken after a cancel.
    cell(&mut s, "total = 2").await;
    cancel_mid_cell(&mut s).await;
    s.snapshot().await.unwrap();
    let o = cell(&mut s, "total").await;
    assert!(!o.session_restarted, "{o:?}");
    assert_eq!(o.value.as_deref(), Some("2"));
}
