//! `cargo xtask bench`: times the things users feel, and prints a table.
//! Run after `cargo xtask build`. Never asserts a timing.

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use witbox::{EngineOptions, Manifest, Registry};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn p90(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() * 9 / 10]
}

fn show(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

fn main() {
    let cache = root().join("target/bench-cache");
    let manifest_path = root().join("witbox.toml");
    let manifest = Manifest::load(&manifest_path).expect("run `cargo xtask build` first");
    let mut rows: Vec<(String, String, String)> = Vec::new();

    let options = EngineOptions {
        cache_dir: Some(cache.clone()),
        ..Default::default()
    };

    // Compile from scratch vs. load from the on-disk cache.
    let _ = std::fs::remove_dir_all(&cache);
    let t = Instant::now();
    Registry::load(&manifest, options.clone()).unwrap();
    rows.push((
        "load quadratic + weather, cold (Cranelift compile)".into(),
        show(t.elapsed()),
        "1 run".into(),
    ));
    let warm: Vec<Duration> = (0..10)
        .map(|_| {
            let t = Instant::now();
            Registry::load(&manifest, options.clone()).unwrap();
            t.elapsed()
        })
        .collect();
    rows.push((
        "load quadratic + weather, warm cache".into(),
        show(median(warm)),
        "median of 10".into(),
    ));

    // Whole process: `witbox call quadratic_solve` with a warm cache.
    let args = r#"{"a":1,"b":-3,"c":2}"#;
    let run = || {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_witbox"))
            .arg("--manifest")
            .arg(&manifest_path)
            .args(["call", "quadratic_solve", args, "--json"])
            .env("WITBOX_CACHE_DIR", &cache)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        t.elapsed()
    };
    run();
    let whole: Vec<Duration> = (0..20).map(|_| run()).collect();
    rows.push((
        "whole process `witbox call quadratic_solve` (warm cache)".into(),
        show(median(whole.clone())),
        format!("median of 20, p90 {}", show(p90(whole))),
    ));

    // In process: one tool call in a fresh instance (new store + instantiate + call + JSON both ways).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let registry = Registry::load(&manifest, options).unwrap();
    let args = json!({"a": 1, "b": -3, "c": 2});
    rt.block_on(async {
        for _ in 0..200 {
            registry.call("quadratic_solve", &args).await.unwrap();
        }
        let mut calls = Vec::new();
        for _ in 0..5000 {
            let t = Instant::now();
            registry.call("quadratic_solve", &args).await.unwrap();
            calls.push(t.elapsed());
        }
        rows.push((
            "in process: `quadratic_solve` in a fresh instance".into(),
            show(median(calls.clone())),
            format!("median of 5000, p90 {}", show(p90(calls))),
        ));
        let bad = json!({"a": 300});
        let mut rejects = Vec::new();
        for _ in 0..5000 {
            let t = Instant::now();
            registry.call("quadratic_solve", &bad).await.unwrap_err();
            rejects.push(t.elapsed());
        }
        rows.push((
            "in process: invalid arguments rejected".into(),
            show(median(rejects)),
            "median of 5000".into(),
        ));
        // Throughput on every core.
        let n = 4000;
        let t = Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let r = registry.clone();
                let a = args.clone();
                tokio::spawn(async move {
                    for _ in 0..n / 4 {
                        r.call("quadratic_solve", &a).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let per_sec = n as f64 / t.elapsed().as_secs_f64();
        rows.push((
            "fresh-instance calls per second, 4 tasks".into(),
            format!("{per_sec:.0}/s"),
            format!("{n} calls"),
        ));
    });

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("\nwitbox bench ({cores} cores, release build, wasmtime 48.0.8)\n");
    let w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    println!("| {:w$} | {:>10} | {} |", "measure", "time", "samples");
    println!(
        "|{}|{}|{}|",
        "-".repeat(w + 2),
        "-".repeat(12),
        "-".repeat(30)
    );
    for (name, time, note) in rows {
        println!("| {name:w$} | {time:>10} | {note} |");
    }
}
