//! `cargo xtask bench`: times the things users feel, and prints a table.
//! Run after `cargo xtask build`. Never asserts a timing.

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use witbox::{EngineOptions, Manifest, Registry, Runner};

#[path = "witbox/data.rs"]
mod data;
#[path = "witbox/rest.rs"]
mod rest;

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

/// A table row for repeated samples: the median, and how many with the p90.
fn timing(name: &str, samples: Vec<Duration>) -> (String, String, String) {
    let n = samples.len();
    (
        name.to_string(),
        show(median(samples.clone())),
        format!("median of {n}, p90 {}", show(p90(samples))),
    )
}

fn show(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

/// Minor page faults of this process so far.
fn minflt() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split_whitespace().nth(7).unwrap().parse().unwrap()
}

/// The shipped manifest with only `quadratic` and `weather` (what the rows
/// measure, whatever else the shipped one loads), written to `target/bench/`.
fn bench_manifest() -> PathBuf {
    let shipped = std::fs::read_to_string(root().join("witbox.toml")).unwrap();
    let mut doc: toml::Table = toml::from_str(&shipped).unwrap();
    let absolute = |entry: &mut toml::Table| {
        if let Some(toml::Value::String(path)) = entry.get_mut("path") {
            *path = root().join(&*path).to_string_lossy().into_owned();
        }
    };
    if let Some(toml::Value::Array(components)) = doc.get_mut("component") {
        components.retain(|c| {
            matches!(
                c.get("name").and_then(|n| n.as_str()),
                Some("quadratic" | "weather")
            )
        });
        components
            .iter_mut()
            .filter_map(|c| c.as_table_mut())
            .for_each(absolute);
    }
    if let Some(toml::Value::Table(runner)) = doc.get_mut("runner") {
        absolute(runner);
    }
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("witbox.toml");
    std::fs::write(&path, toml::to_string(&doc).unwrap()).unwrap();
    // The runner's packages: the shipped lock, whose runner `cargo xtask build` built.
    std::fs::copy(root().join("witbox.lock"), dir.join("witbox.lock")).unwrap();
    path
}

/// The runner with the shipped packages against the stdlib-only one: size, a
/// fresh sandbox and a warm run; and a build of a runner with packages.
fn packages(
    manifest: &Manifest,
    options: &EngineOptions,
    rt: &tokio::runtime::Runtime,
    rows: &mut Vec<(String, String, String)>,
) {
    let registry = Registry::load(
        &Manifest {
            component: vec![],
            ..manifest.clone()
        },
        options.clone(),
    )
    .unwrap();
    let (with, lock) = witbox::packages::built_runner(manifest, &manifest.runner).unwrap();
    let without = manifest.resolve(&manifest.runner.path);
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64 / 1e6;
    rows.push((
        "runner component size: shipped packages / stdlib only".into(),
        format!("{:.1} MB", size(&with)),
        format!(
            "stdlib only {:.1} MB ({})",
            size(&without),
            lock.names().join(", ")
        ),
    ));
    let mut results = Vec::new();
    for packages in [true, false] {
        let entry = witbox::manifest::RunnerEntry {
            warm_sessions: 0,
            packages: if packages {
                manifest.runner.packages.clone()
            } else {
                vec![]
            },
            ..manifest.runner.clone()
        };
        let runner = Runner::load(manifest, &entry, registry.clone()).unwrap();
        results.push(rt.block_on(async {
            for _ in 0..20 {
                runner.session().await.unwrap().run("pass").await.unwrap();
            }
            let mut fresh = Vec::new();
            for _ in 0..200 {
                let t = Instant::now();
                let mut s = runner.session().await.unwrap();
                s.run("print(1+1)").await.unwrap();
                fresh.push(t.elapsed());
            }
            let mut s = runner.session().await.unwrap();
            let mut warm = Vec::new();
            for i in 0..1100 {
                let t = Instant::now();
                s.run("print(1+1)").await.unwrap();
                if i >= 100 {
                    warm.push(t.elapsed());
                }
            }
            let t = Instant::now();
            let o = s
                .run("import sympy\nsympy.solve('x**2-3*x+2')")
                .await
                .unwrap();
            let solve = t.elapsed();
            (median(fresh), median(warm), solve, o.value)
        }));
    }
    let [(f1, w1, solve, value), (f0, w0, _, _)] = &results[..] else {
        unreachable!()
    };
    assert_eq!(value.as_deref(), Some("[1, 2]"));
    rows.push((
        "packages: fresh sandbox, no warm pool (instance + first run)".into(),
        show(*f1),
        format!(
            "median of 200; stdlib only {} → {:.2}×",
            show(*f0),
            f1.as_secs_f64() / f0.as_secs_f64()
        ),
    ));
    rows.push((
        "packages: warm `run(\"print(1+1)\")`".into(),
        show(*w1),
        format!(
            "median of 1000; stdlib only {} → {:.2}×",
            show(*w0),
            w1.as_secs_f64() / w0.as_secs_f64()
        ),
    ));
    rows.push((
        "packages: first `sympy.solve('x**2-3*x+2')` in a session".into(),
        show(*solve),
        "1 run (sympy preloaded in the snapshot)".into(),
    ));
    // A build of a runner with the shipped packages from a warm pip cache, into a
    // folder of its own (so it is not the one already built).
    let dir = root().join("target/bench/build");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(root().join("witbox.lock"), dir.join("witbox.lock")).unwrap();
    let text = format!(
        "[runner]\npath = \"python-runner.wasm\"\npackages = {:?}\n",
        manifest.runner.packages
    );
    std::fs::write(dir.join("witbox.toml"), text).unwrap();
    let build = Manifest::load(&dir.join("witbox.toml")).unwrap();
    let options = witbox::packages::BuildOptions {
        locked: true,
        componentize_py: Some(root().join(".venv/bin/componentize-py")),
        ..Default::default()
    };
    let t = Instant::now();
    witbox::packages::build(&build, &build.runner, &options, &mut |_| {}).unwrap();
    rows.push((
        "`witbox runner build` of the shipped packages (warm pip cache)".into(),
        show(t.elapsed()),
        "1 run; pip install from witbox.lock + componentize-py, without the compile".into(),
    ));
}

/// `PROBE=1 cargo bench -p witbox --bench witbox`: where a fresh Python sandbox
/// spends its time (instantiate, first run, second run) and how many page faults each takes.
fn probe() {
    let manifest = Manifest::load(&root().join("witbox.toml")).unwrap();
    let options = EngineOptions {
        cache_dir: Some(root().join("target/bench-cache")),
        ..Default::default()
    };
    let registry = Registry::load(
        &Manifest {
            component: vec![],
            ..manifest.clone()
        },
        options,
    )
    .unwrap();
    let runner = Runner::load(&manifest, &manifest.runner, registry).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..30 { let mut s = runner.session().await.unwrap(); s.run("").await.unwrap(); }
        for code in ["", "pass", "print(1+1)"] {
            let f0 = minflt();
            let t = Instant::now();
            let mut s = runner.session().await.unwrap();
            let (t1, f1) = (t.elapsed(), minflt());
            let t = Instant::now();
            s.run(code).await.unwrap();
            let (t2, f2) = (t.elapsed(), minflt());
            let t = Instant::now();
            s.run(code).await.unwrap();
            let (t3, f3) = (t.elapsed(), minflt());
            println!("{code:?}: inst {t1:?} ({} faults) first {t2:?} ({} faults) second {t3:?} ({} faults)", f1 - f0, f2 - f1, f3 - f2);
        }
    });
}

fn main() {
    if std::env::var_os("PROBE").is_some() {
        return probe();
    }
    if std::env::var_os("ONLY_DATA").is_some() {
        return only_data();
    }
    let cache = root().join("target/bench-cache");
    let manifest_path = bench_manifest();
    let manifest = Manifest::load(&manifest_path).expect("run `cargo xtask build` first");
    let mut rows: Vec<(String, String, String)> = Vec::new();

    let options = EngineOptions {
        cache_dir: Some(cache.clone()),
        ..Default::default()
    };

    // Compile from scratch vs. load from the on-disk cache.
    let cold = EngineOptions {
        cache_dir: Some(root().join("target/bench-cache-cold")),
        ..Default::default()
    };
    let _ = std::fs::remove_dir_all(cold.cache_dir.as_ref().unwrap());
    let t = Instant::now();
    Registry::load(&manifest, cold).unwrap();
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
    rows.push(timing(
        "whole process `witbox call quadratic_solve` (warm cache)",
        whole,
    ));

    // In process: one tool call in a fresh instance (new store + instantiate + call + JSON both ways).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let registry = Registry::load(&manifest, options.clone()).unwrap();
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
        rows.push(timing(
            "in process: `quadratic_solve` in a fresh instance",
            calls,
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

    python(&manifest, &manifest_path, &options, &rt, &mut rows);
    packages(&manifest, &options, &rt, &mut rows);
    mcp(&manifest_path, &cache, &mut rows);
    rest::rest(&manifest_path, &cache, &mut rows);
    data::data(&options, &rt, &mut rows);

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("\nwitbox bench ({cores} cores, release build, wasmtime 48.0.8)\n");
    let w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    println!("| {:w$} | {:>10} | samples |", "measure", "time");
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

/// `ONLY_DATA=1`: the data runner's rows alone.
fn only_data() {
    let options = EngineOptions {
        cache_dir: Some(root().join("target/bench-cache")),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    data::data(&options, &rt, &mut rows);
    for (name, time, note) in rows {
        println!("| {name} | {time} | {note} |");
    }
}

/// Python: whole process, fresh sandboxes, warm runs, tool round trips, CPU-bound
/// code against native CPython, memory per session, throughput.
fn python(
    manifest: &Manifest,
    manifest_path: &Path,
    options: &EngineOptions,
    rt: &tokio::runtime::Runtime,
    rows: &mut Vec<(String, String, String)>,
) {
    let mut with_tools = manifest.clone();
    with_tools.runner.policy.call_tools = vec!["quadratic_solve".into()];
    let registry = Registry::load(&with_tools, options.clone()).unwrap();
    let t = Instant::now();
    let runner = Runner::load(&with_tools, &with_tools.runner, registry.clone()).unwrap();
    rows.push((
        "load the Python runner (cache warm after the first bench)".into(),
        show(t.elapsed()),
        "1 run".into(),
    ));

    // Whole process, interleaved with native CPython.
    let cache = options.cache_dir.clone().unwrap();
    let witbox_run = || {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_witbox"))
            .arg("--manifest")
            .arg(manifest_path)
            .args(["run", "-c", "print(1+1)"])
            .env("WITBOX_CACHE_DIR", &cache)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "2\n", "{out:?}");
        t.elapsed()
    };
    let native_run = || {
        let t = Instant::now();
        let out = Command::new(python3())
            .args(["-c", "print(1+1)"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "2\n");
        t.elapsed()
    };
    // A clean interpreter too: `-I` skips site-packages and the user's site,
    // which a crowded environment makes slow.
    let isolated_run = || {
        let t = Instant::now();
        let out = Command::new(python3())
            .args(["-I", "-c", "print(1+1)"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "2\n");
        t.elapsed()
    };
    witbox_run();
    native_run();
    isolated_run();
    let (mut ours, mut native, mut isolated) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..20 {
        ours.push(witbox_run());
        native.push(native_run());
        isolated.push(isolated_run());
    }
    let (ours, native, isolated) = (median(ours), median(native), median(isolated));
    rows.push((
        "whole process `witbox run -c 'print(1+1)'` (warm cache)".into(),
        show(ours),
        format!(
            "median of 20; `{} -I -c` {} → {:.2}× native; without `-I` {} → {:.2}×",
            python3().display(),
            show(isolated),
            ours.as_secs_f64() / isolated.as_secs_f64(),
            show(native),
            ours.as_secs_f64() / native.as_secs_f64()
        ),
    ));

    // Without the warm pool, every session is instantiated on demand.
    let mut cold_entry = with_tools.runner.clone();
    cold_entry.warm_sessions = 0;
    let on_demand = Runner::load(&with_tools, &cold_entry, registry).unwrap();
    rt.block_on(async {
        // A fresh sandbox: new store + instance + first run.
        for _ in 0..20 {
            let mut s = on_demand.session().await.unwrap();
            s.run("print(1+1)").await.unwrap();
        }
        let (mut inst, mut first, mut fresh) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..300 {
            let t = Instant::now();
            let mut s = on_demand.session().await.unwrap();
            inst.push(t.elapsed());
            let t = Instant::now();
            s.run("print(1+1)").await.unwrap();
            first.push(t.elapsed());
            fresh.push(inst[inst.len() - 1] + first[first.len() - 1]);
        }
        rows.push(timing(
            "fresh sandbox, no warm pool: new instance + first run",
            fresh,
        ));
        rows.push((
            "  of which: new store + instantiate".into(),
            show(median(inst)),
            "median of 300".into(),
        ));
        rows.push((
            "  of which: the first run".into(),
            show(median(first)),
            "median of 300".into(),
        ));
        // With the warm pool (`warm-sessions`, 2 by default): the instance was made
        // in the background after the previous session was taken.
        let mut fresh = Vec::new();
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(3)).await;
            let t = Instant::now();
            let mut s = runner.session().await.unwrap();
            let o = s.run("print(1+1)").await.unwrap();
            fresh.push(t.elapsed());
            assert_eq!(o.stdout, "2\n");
        }
        rows.push(timing(
            "fresh sandbox from the warm pool + first `run(\"print(1+1)\")`",
            fresh,
        ));

        let mut s = runner.session().await.unwrap();
        let mut warm = Vec::new();
        for i in 0..3000 {
            let t = Instant::now();
            s.run("print(1+1)").await.unwrap();
            if i >= 100 {
                warm.push(t.elapsed());
            }
        }
        rows.push(timing("warm `run(\"print(1+1)\")` in a session", warm));

        // Checkpoints: the same cells with them off, interleaved by block.
        let mut off_entry = with_tools.runner.clone();
        off_entry.checkpoints = false;
        let off_runner = Runner::load(
            &with_tools,
            &off_entry,
            Registry::load(&with_tools, options.clone()).unwrap(),
        )
        .unwrap();
        let mut off = off_runner.session().await.unwrap();
        let setup = "data = {'a': list(range(20)), 'b': 'text'}\nn = 0";
        s.run(setup).await.unwrap();
        off.run(setup).await.unwrap();
        for (name, code) in [
            ("a cell that changes nothing (`print(1+1)`)", "print(1+1)"),
            ("a cell that changes a small state (`n += 1`)", "n += 1"),
        ] {
            let (mut on_t, mut off_t) = (Vec::new(), Vec::new());
            for i in 0..1100 {
                let t = Instant::now();
                s.run(code).await.unwrap();
                let on = t.elapsed();
                let t = Instant::now();
                off.run(code).await.unwrap();
                if i >= 100 {
                    on_t.push(on);
                    off_t.push(t.elapsed());
                }
            }
            let (on, off) = (median(on_t), median(off_t));
            rows.push((
                format!("checkpoints on: {name}"),
                show(on),
                format!(
                    "median of 1000; off: {} → +{}",
                    show(off),
                    show(on.saturating_sub(off))
                ),
            ));
        }
        s.write_file("in.bin", &vec![7u8; 100 << 10]).unwrap();
        let mut snap_t = Vec::new();
        let mut bytes = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            bytes = s.snapshot().await.unwrap();
            snap_t.push(t.elapsed());
        }
        rows.push((
            "snapshot of a session (small state + a 100 KiB file)".into(),
            show(median(snap_t)),
            format!("median of 50; {} bytes", bytes.len()),
        ));
        let mut restore_t = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            let (mut r, _) = runner.restore(&bytes).await.unwrap();
            restore_t.push(t.elapsed());
            assert_eq!(r.run("n > 0").await.unwrap().value.as_deref(), Some("True"));
        }
        rows.push((
            "restore it into a new session (from the warm pool)".into(),
            show(median(restore_t)),
            "median of 50".into(),
        ));

        let mut trips = Vec::new();
        for i in 0..1100 {
            let t = Instant::now();
            let o = s.run("r = quadratic_solve(1, -3, 2)").await.unwrap();
            if i >= 100 {
                trips.push(t.elapsed());
            }
            assert!(o.ok(), "{o:?}");
        }
        rows.push(timing(
            "run with one Python → host → quadratic → Python call",
            trips,
        ));

        // CPU-bound code, guest vs native in-process exec, interleaved.
        for (name, code) in CPU {
            let mut guest = Vec::new();
            let mut native = Vec::new();
            s.run(code).await.unwrap();
            for _ in 0..7 {
                let t = Instant::now();
                let o = s.run(code).await.unwrap();
                guest.push(t.elapsed());
                assert!(o.ok(), "{o:?}");
                native.push(native_exec(code));
            }
            let (g, n) = (median(guest), median(native));
            rows.push((
                format!("CPU: {name}"),
                show(g),
                format!(
                    "median of 7; native exec {} → {:.2}× native",
                    show(n),
                    g.as_secs_f64() / n.as_secs_f64()
                ),
            ));
        }

        // Memory per live, idle session: RSS counts the runner's shared snapshot pages
        // again in every instance that maps them; PSS shares them out, and the
        // private pages are what a session costs on its own.
        let before = memory();
        let mut live = Vec::new();
        for _ in 0..50 {
            let mut s = runner.session().await.unwrap();
            s.run("x = [i * i for i in range(100)]").await.unwrap();
            live.push(s);
        }
        let after = memory();
        let per = |i: usize| (after[i] - before[i]) / 50.0;
        drop(live);
        rows.push((
            "memory per live idle session: RSS / PSS / private".into(),
            format!("{:.2} MiB", per(0)),
            format!(
                "50 sessions, each ran a cell; PSS {:.2} MiB, private {:.2} MiB",
                per(1),
                per(2)
            ),
        ));
    });

    // Throughput: fresh sandboxes per second on 2 threads.
    let rt2 = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (runner, which) in [(&on_demand, "no warm pool"), (&runner, "warm pool")] {
        let n = 2000;
        let t = Instant::now();
        rt2.block_on(async {
            let tasks: Vec<_> = (0..2)
                .map(|_| {
                    let r = runner.clone();
                    tokio::spawn(async move {
                        for _ in 0..n / 2 {
                            let mut s = r.session().await.unwrap();
                            s.run("print(1+1)").await.unwrap();
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        });
        rows.push((
            format!("fresh sandboxes (instance + first run) per second, 2 threads, {which}"),
            format!("{:.0}/s", n as f64 / t.elapsed().as_secs_f64()),
            format!("{n} sandboxes"),
        ));
    }
}

/// The same code in the sandbox and in native CPython.
const CPU: [(&str, &str); 3] = [
    (
        "fib(25)",
        "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\nfib(25)",
    ),
    (
        "JSON round trip, 20k records",
        "import json\nrows = [{'id': i, 'name': f'item {i}', 'tags': ['a', 'b'], 'price': i * 0.5} for i in range(20000)]\nlen(json.loads(json.dumps(rows)))",
    ),
    (
        "regex over 2 MB of text",
        "import re\ntext = ' '.join(f'user{i}@example.com called +1-555-{i:04d} on 2024-01-{i % 28 + 1:02d}' for i in range(30000))\nlen(re.findall(r'[\\w.]+@[\\w.]+|\\+\\d-\\d{3}-\\d{4}|\\d{4}-\\d{2}-\\d{2}', text))",
    ),
];

/// `witbox mcp` over stdio, as an MCP client sees it: one `tools/call` round trip.
fn mcp(manifest_path: &Path, cache: &Path, rows: &mut Vec<(String, String, String)>) {
    use std::io::{BufRead, BufReader, Write};
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_witbox"))
        .arg("--manifest")
        .arg(manifest_path)
        .arg("mcp")
        .env("WITBOX_CACHE_DIR", cache)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut id = 0;
    let mut request = |method: &str, params: serde_json::Value| -> serde_json::Value {
        id += 1;
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        writeln!(stdin, "{message}").unwrap();
        loop {
            let reply: serde_json::Value =
                serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
            if reply["id"] == id {
                return reply;
            }
        }
    };
    request(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}),
    );
    let initialized = started.elapsed();
    let first_run = request(
        "tools/call",
        json!({"name": "run_python", "arguments": {"code": "print(1+1)"}}),
    );
    assert_eq!(first_run["result"]["isError"], false, "{first_run}");
    rows.push((
        "MCP stdio: `initialize` answered, from exec (warm cache)".into(),
        show(initialized),
        format!(
            "1 run; the first `run_python` answered at {}",
            show(started.elapsed())
        ),
    ));
    let call = |request: &mut dyn FnMut(&str, serde_json::Value) -> serde_json::Value,
                name: &str,
                args: serde_json::Value| {
        let t = Instant::now();
        let reply = request("tools/call", json!({"name": name, "arguments": args}));
        assert_eq!(reply["result"]["isError"], false, "{reply}");
        (t.elapsed(), reply)
    };
    let args = json!({"a": 1, "b": -3, "c": 2});
    let samples: Vec<Duration> = (0..300)
        .map(|_| call(&mut request, "quadratic_solve", args.clone()).0)
        .skip(20)
        .collect();
    rows.push(timing("MCP stdio: `tools/call quadratic_solve`", samples));
    let (_, first) = call(&mut request, "run_python", json!({"code": "x = 1"}));
    let session = first["result"]["structuredContent"]["session_id"].clone();
    let code = json!({"code": "print(1+1)", "session_id": session});
    let samples: Vec<Duration> = (0..300)
        .map(|_| call(&mut request, "run_python", code.clone()).0)
        .skip(20)
        .collect();
    rows.push(timing(
        "MCP stdio: `run_python('print(1+1)')` in a session",
        samples,
    ));
    drop(stdin);
    let _ = child.wait();
}

/// Native CPython running `code` with `exec` in its own process (start-up not counted).
fn native_exec(code: &str) -> Duration {
    let script = format!(
        "import time\ncode = compile({code:?}, '<cell>', 'exec')\nt = time.perf_counter()\nexec(code, {{}})\nprint(time.perf_counter() - t)"
    );
    let out = Command::new(python3())
        .args(["-c", &script])
        .output()
        .unwrap();
    let secs: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("native python failed: {out:?}"));
    Duration::from_secs_f64(secs)
}

/// The native baseline: of the `python3` executables here (the real one behind
/// `python3` on the PATH, not a pyenv shim, which adds ~100 ms per start; and the
/// system's), the one that starts fastest, so witbox is never compared with a
/// slow build. (Here pyenv's 3.11 takes ~83 ms to start with `-I`, Debian's ~20.)
fn python3() -> PathBuf {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        let mut found: Vec<PathBuf> = ["/usr/bin/python3", "/usr/local/bin/python3"]
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .collect();
        if let Ok(out) = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
        {
            found.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
        let start = |exe: &PathBuf| {
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    let ok = Command::new(exe)
                        .args(["-I", "-c", "pass"])
                        .output()
                        .is_ok_and(|o| o.status.success());
                    if ok { t.elapsed() } else { Duration::MAX }
                })
                .min()
                .unwrap_or(Duration::MAX)
        };
        found
            .into_iter()
            .map(|exe| (start(&exe), exe))
            .min()
            .filter(|(t, _)| *t < Duration::MAX)
            .map(|(_, exe)| exe)
            .expect("python3 is needed for the native baselines")
    })
    .clone()
}

/// This process's RSS, PSS and private memory in MiB (`/proc/self/smaps_rollup`).
fn memory() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
    let kb = |key: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let mib = |k: f64| k / 1024.0;
    [
        mib(kb("Rss:")),
        mib(kb("Pss:")),
        mib(kb("Private_Clean:") + kb("Private_Dirty:")),
    ]
}
