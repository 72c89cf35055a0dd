//! How calls share the cores (`host/src/schedule.rs`): a call waiting on the
//! network holds no run slot, so it never holds back the calls behind it.

use crate::fixture::Fixture;
use crate::support::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_on_the_network_hold_nobody_up() {
    let server = Fixture::holding();
    let r = registry(
        "testkit",
        &format!(
            "[component.policy]\nallow-http = [{:?}]\ntimeout-ms = 120000\n",
            server.url()
        ),
    );
    // More waiting calls than there are run slots (4 per core).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let waiting = 4 * cores + 2;
    let url = format!("{}/v1/search?name=Paris", server.url());
    let calls: Vec<_> = (0..waiting)
        .map(|_| {
            let (r, url) = (r.clone(), url.clone());
            tokio::spawn(async move { r.call("testkit_fetch", &json!({ "url": url })).await })
        })
        .collect();
    for _ in 0..3000 {
        if server.hits().len() == waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        server.hits().len(),
        waiting,
        "not every call reached the server: a waiting call holds a run slot"
    );
    // Every run slot would be taken if waiting held one; another call still runs.
    let sum = tokio::time::timeout(
        Duration::from_secs(60),
        r.call("testkit_add_small", &json!({"x": 1, "y": 2})),
    )
    .await
    .expect("a call behind the waiting ones never started")
    .unwrap();
    assert_eq!(sum, json!(3));
    assert!(calls.iter().all(|c| !c.is_finished()));
    server.release();
    for call in calls {
        let out = call.await.unwrap().unwrap();
        assert!(out.as_str().unwrap().starts_with("200 "), "{out}");
    }
}
