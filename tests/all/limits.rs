//! Each limit, hit by a guest built to break it; after each, the host serves the next call.

use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};
use witbox::ErrorKind;

async fn still_serves(r: &std::sync::Arc<witbox::Registry>) {
    let v = r
        .call("testkit_add_small", &json!({"x": 2, "y": 3}))
        .await
        .unwrap();
    assert_eq!(v, json!(5));
}

#[tokio::test]
async fn a_spin_loop_times_out() {
    let r = registry("testkit", "[component.policy]\ntimeout-ms = 300\n");
    let start = Instant::now();
    let e = r.call("testkit_spin", &json!({})).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert_eq!(
        e.message,
        "`testkit_spin` ran past its time limit of 300 ms"
    );
    assert!(
        start.elapsed() < Duration::from_millis(1300),
        "took {:?}",
        start.elapsed()
    );
    still_serves(&r).await;
}

#[tokio::test]
async fn a_blocking_sleep_times_out() {
    let r = registry("testkit", "[component.policy]\ntimeout-ms = 300\n");
    let start = Instant::now();
    let e = r
        .call("testkit_nap", &json!({"ms": 10000}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert!(
        start.elapsed() < Duration::from_millis(1300),
        "took {:?}",
        start.elapsed()
    );
    still_serves(&r).await;
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_limit() {
    let r = registry("testkit", "[component.policy]\nmemory-mb = 16\n");
    let e = r
        .call("testkit_grow", &json!({"mb": 64}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Memory);
    assert!(
        e.message
            .starts_with("`testkit_grow` ran out of memory: its limit is 16 MiB"),
        "{}",
        e.message
    );
    // Within the limit it works.
    assert_eq!(
        r.call("testkit_grow", &json!({"mb": 4})).await.unwrap(),
        json!(4)
    );
    still_serves(&r).await;
}

#[tokio::test]
async fn an_output_flood_hits_the_output_limit() {
    let r = registry("testkit", "[component.policy]\nmax-output-bytes = 4096\n");
    let e = r
        .call("testkit_flood", &json!({"bytes": 10_000_000}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::OutputLimit);
    assert_eq!(
        e.message,
        "`testkit_flood` wrote more than its limit of 4096 bytes to stdout"
    );
    assert_eq!(
        r.call("testkit_flood", &json!({"bytes": 100}))
            .await
            .unwrap(),
        json!(null)
    );
    still_serves(&r).await;
}

#[tokio::test]
async fn a_huge_result_hits_the_output_limit() {
    let r = registry("testkit", "[component.policy]\nmax-output-bytes = 4096\n");
    let e = r
        .call("testkit_big_result", &json!({"bytes": 100_000}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::OutputLimit);
    assert_eq!(
        e.message,
        "`testkit_big_result` returned 100002 bytes, more than its limit of 4096 bytes"
    );
    still_serves(&r).await;
}

#[tokio::test]
async fn a_panic_is_a_trap_with_the_panic_message() {
    let r = registry("testkit", "");
    let e = r
        .call("testkit_crash", &json!({"message": "boom at the guest"}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Trap);
    assert!(
        e.message.starts_with("`testkit_crash` crashed: "),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("boom at the guest"),
        "the panic message is missing: {}",
        e.message
    );
    still_serves(&r).await;
}

#[tokio::test]
async fn fuel_stops_a_spin_loop_deterministically() {
    let r = registry(
        "testkit",
        "[component.policy]\nfuel = 5000000\ntimeout-ms = 10000\n",
    );
    let start = Instant::now();
    let e = r.call("testkit_spin", &json!({})).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Fuel);
    assert_eq!(e.message, "`testkit_spin` used up its fuel of 5000000");
    assert!(start.elapsed() < Duration::from_secs(5));
    still_serves(&r).await;
}

#[tokio::test]
async fn concurrent_calls_do_not_share_limits() {
    let r = registry("testkit", "[component.policy]\ntimeout-ms = 500\n");
    let empty = json!({});
    let spin = r.call("testkit_spin", &empty);
    let add = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        r.call("testkit_add_small", &json!({"x": 1})).await
    };
    let (spin, add) = tokio::join!(spin, add);
    assert_eq!(spin.unwrap_err().kind, ErrorKind::Timeout);
    assert_eq!(add.unwrap(), json!(1));
}
