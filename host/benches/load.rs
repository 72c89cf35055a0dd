//! `cargo xtask load [SESSIONS] [SECONDS] [--replicas N]`: many concurrent
//! Python sessions running a mix of workloads, some built to hit every limit,
//! through the library and through `witbox mcp --http`; with `--replicas N`,
//! through `witbox serve`'s REST API instead, to 1 and then N replicas sharing
//! their sessions through a `redis-server`, behind a loopback balancer written
//! here (round robin per request, the worst case for affinity; then by the
//! `X-Witbox-Session` header). Prints throughput, latency per workload,
//! outcomes by kind and the peak RSS; fails if anything unexpected happened.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use witbox::{EngineOptions, Manifest, Registry, Runner, Sessions};

#[path = "load/fleet.rs"]
mod fleet;
use fleet::Route;

/// (name, code, the outcome it must have: "ok" or the error type, weight)
const WORKLOADS: [(&str, &str, &str, u32); 6] = [
    ("print", "print('hello')", "ok", 30),
    ("cpu", "sum(i * i for i in range(20000))", "ok", 20),
    ("tool", "quadratic_solve(1, -3, 2)", "ok", 20),
    ("timeout", "while True: pass", "Timeout", 1),
    ("memory bomb", "x = bytes(10**9)", "MemoryError", 4),
    (
        "output flood",
        "for i in range(10**6): print(i)",
        "OutputLimit",
        4,
    ),
];

/// The time limit is wall time, which counts the time a cell waits for a core:
/// with 200 sessions on 2 cores a 10 ms cell can wait a second for its turn.
const POLICY: &str = "memory-mb = 48\ntimeout-ms = 5000\nmax-output-bytes = 8192\ncall-tools = [\"quadratic_solve\"]";

#[derive(Default)]
struct Stats {
    /// When the sessions stop starting runs.
    until: Option<Instant>,
    /// Runs that ended by then.
    in_window: u64,
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    outcomes: BTreeMap<String, u64>,
    unexpected: Vec<String>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn manifest_text(sessions: usize) -> String {
    let guests = root().join("target/guests");
    format!(
        "[[component]]\nname = \"quadratic\"\npath = {:?}\n[runner]\npath = {:?}\nmax-sessions = {}\nsession-ttl-s = 600\n[runner.policy]\n{POLICY}\n",
        guests.join("quadratic.wasm"),
        guests.join("python-runner.wasm"),
        sessions + 8
    )
}

/// Picks a workload by weight from a counter.
fn pick(n: u64) -> usize {
    let total: u32 = WORKLOADS.iter().map(|w| w.3).sum();
    let mut x = (n.wrapping_mul(2654435761) % u64::from(total)) as u32;
    for (i, w) in WORKLOADS.iter().enumerate() {
        if x < w.3 {
            return i;
        }
        x -= w.3;
    }
    0
}

fn record(stats: &Mutex<Stats>, i: usize, took: Duration, outcome: &str) {
    let (name, _, expected, _) = WORKLOADS[i];
    let mut s = stats.lock().unwrap();
    s.in_window += u64::from(s.until.is_some_and(|t| Instant::now() <= t));
    s.latencies.entry(name).or_default().push(took);
    *s.outcomes.entry(outcome.to_string()).or_default() += 1;
    if outcome != expected {
        s.unexpected
            .push(format!("{name}: expected {expected}, got {outcome}"));
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time (user + system) this process has used so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap_or(0)).collect();
    // utime and stime are fields 14 and 15 of the line, in clock ticks (100 per second).
    Duration::from_millis((f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0)) * 10)
}

fn report(title: &str, stats: &Stats, seconds: u64, elapsed: Duration) -> bool {
    let total: usize = stats.latencies.values().map(Vec::len).sum();
    println!(
        "\n{title}: {:.0} runs/s ({} runs ended in the {seconds} s window; {total} in all, the last at {:.1} s)",
        stats.in_window as f64 / seconds as f64,
        stats.in_window,
        elapsed.as_secs_f64(),
    );
    println!("| workload | runs | p50 | p99 |\n|---|---|---|---|");
    for (name, samples) in &stats.latencies {
        let mut s = samples.clone();
        s.sort();
        let at = |q: f64| s[((s.len() as f64 * q) as usize).min(s.len() - 1)];
        println!(
            "| {name} | {} | {:.2} ms | {:.2} ms |",
            s.len(),
            at(0.5).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3
        );
    }
    let outcomes: Vec<String> = stats
        .outcomes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!("outcomes: {}", outcomes.join(", "));
    if stats.unexpected.is_empty() {
        println!("unexpected: none");
        true
    } else {
        println!(
            "unexpected ({}): {:?}",
            stats.unexpected.len(),
            &stats.unexpected[..stats.unexpected.len().min(10)]
        );
        false
    }
}

async fn library(sessions: usize, seconds: u64) -> bool {
    let manifest = Manifest::parse(&manifest_text(sessions), &root()).unwrap();
    let options = EngineOptions {
        cache_dir: Some(root().join("target/bench-cache")),
        ..Default::default()
    };
    let registry = Registry::load(&manifest, options).unwrap();
    let runner = Runner::load(&manifest, &manifest.runner, registry).unwrap();
    let pool = Arc::new(Sessions::new(
        runner,
        manifest.runner.max_sessions,
        Duration::from_secs(600),
    ));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let stats = Arc::new(Mutex::new(Stats {
        until: Some(deadline),
        ..Stats::default()
    }));
    let started = Instant::now();
    let cpu = cpu_time();
    let tasks: Vec<_> = (0..sessions)
        .map(|t| {
            let (pool, stats) = (pool.clone(), stats.clone());
            tokio::spawn(async move {
                let id = pool.create().await.expect("a session");
                let mut n = t as u64 * 7919;
                while Instant::now() < deadline {
                    n += 1;
                    let i = pick(n);
                    let t0 = Instant::now();
                    let outcome = match pool.run(&id, WORKLOADS[i].1).await {
                        Ok(o) => o.error.map_or("ok".to_string(), |e| e.kind.to_string()),
                        Err(e) => format!("host error {}", e.kind),
                    };
                    record(&stats, i, t0.elapsed(), &outcome);
                }
                pool.close(&id);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (elapsed, cpu) = (started.elapsed(), cpu_time() - cpu);
    let ok = report(
        &format!("library, {sessions} sessions"),
        &stats.lock().unwrap(),
        seconds,
        elapsed,
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "library CPU: {:.1} s of {:.1} s on {cores} cores ({:.0}% busy)",
        cpu.as_secs_f64(),
        elapsed.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / (elapsed.as_secs_f64() * cores as f64)
    );
    ok
}

/// The `HOST:PORT` a `witbox serve` or `witbox mcp --http` prints first.
fn served_addr(banner: &str) -> String {
    banner
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .to_string()
}

/// Sends a whole HTTP/1.1 request (with `Connection: close`) on a connection of
/// its own; the whole response.
async fn exchange(addr: &str, request: &str) -> Result<String, String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// One JSON-RPC request over HTTP to `witbox mcp --http`; returns the response message.
async fn post(
    addr: &str,
    session: Option<&str>,
    body: Value,
) -> Result<(Option<String>, Value), String> {
    let body = body.to_string();
    let mut head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-06-18\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(s) = session {
        head.push_str(&format!("Mcp-Session-Id: {s}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(&body);
    let text = exchange(addr, &head).await?;
    let session = text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("mcp-session-id")
            .then(|| v.trim().to_string())
    });
    let message = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|m| m.get("id").is_some())
        .ok_or_else(|| format!("no JSON-RPC answer in: {}", &text[..text.len().min(300)]))?;
    Ok((session, message))
}

async fn mcp_http(sessions: usize, seconds: u64) -> bool {
    let dir = root().join("target/load");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("witbox.toml");
    std::fs::write(&manifest, manifest_text(sessions)).unwrap();
    let mut child = std::process::Command::new(root().join("target/release/witbox"))
        .arg("--manifest")
        .arg(&manifest)
        .args(["mcp", "--http", "127.0.0.1:0"])
        .env("WITBOX_CACHE_DIR", root().join("target/bench-cache"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("target/release/witbox (cargo build --release -p witbox)");
    let mut banner = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stderr.take().unwrap()),
        &mut banner,
    )
    .unwrap();
    let addr = served_addr(&banner);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let stats = Arc::new(Mutex::new(Stats {
        until: Some(deadline),
        ..Stats::default()
    }));
    let started = Instant::now();
    let tasks: Vec<_> = (0..sessions)
        .map(|t| {
            let (stats, addr) = (stats.clone(), addr.clone());
            tokio::spawn(async move {
                let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "load", "version": "0"}}});
                let (mcp, _) = post(&addr, None, init).await.expect("initialize");
                let mcp = mcp.expect("an Mcp-Session-Id");
                let _ = post(&addr, Some(&mcp), json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
                let mut python: Option<String> = None;
                let mut n = t as u64 * 7919;
                while Instant::now() < deadline {
                    n += 1;
                    let i = pick(n);
                    let mut args = json!({"code": WORKLOADS[i].1});
                    if let Some(id) = &python {
                        args["session_id"] = json!(id);
                    }
                    let t0 = Instant::now();
                    let call = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": "run_python", "arguments": args}});
                    let outcome = match post(&addr, Some(&mcp), call).await {
                        Ok((_, m)) => {
                            let s = &m["result"]["structuredContent"];
                            if let Some(id) = s["session_id"].as_str() {
                                python = Some(id.to_string());
                            }
                            match &s["error"] {
                                Value::Null if s.get("stdout").is_some() => "ok".to_string(),
                                // A Python error has a `type`; a failure before the code ran, a `kind`.
                                Value::Object(e) => match (e.get("type"), e.get("kind")) {
                                    (Some(t), _) => t.as_str().unwrap_or("?").to_string(),
                                    (None, Some(k)) => format!("host error {k}: {}", e["message"]),
                                    _ => format!("protocol {m}"),
                                },
                                _ => format!("protocol {}", m),
                            }
                        }
                        Err(e) => format!("transport {e}"),
                    };
                    record(&stats, i, t0.elapsed(), &outcome);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let server_peak = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    let ok = report(
        &format!("witbox mcp --http, {sessions} clients"),
        &stats.lock().unwrap(),
        seconds,
        elapsed,
    );
    println!("server peak RSS: {server_peak}");
    let _ = child.kill();
    let _ = child.wait();
    ok
}

fn main() {
    let mut replicas: Option<usize> = None;
    let mut args: Vec<String> = Vec::new();
    let mut all = std::env::args().skip(1);
    while let Some(arg) = all.next() {
        if arg == "--replicas" {
            let n = all.next().and_then(|n| n.parse().ok());
            replicas = Some(n.filter(|&n| n > 0).expect("--replicas N (N ≥ 1)"));
        } else if !arg.starts_with('-') {
            args.push(arg);
        }
    }
    let sessions: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(200);
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Some(n) = replicas {
        println!(
            "witbox load: {sessions} concurrent REST sessions, {seconds} s a round, replicas sharing sessions through redis-server, policy: {}",
            POLICY.replace('\n', "; ")
        );
        let mut ok = true;
        for (count, route) in [
            (1, Route::RoundRobin),
            (n, Route::RoundRobin),
            (n, Route::Affinity),
        ] {
            ok &= rt.block_on(fleet::fleet(sessions, seconds, count, route));
        }
        if !ok {
            eprintln!("load: FAILED");
            std::process::exit(1);
        }
        println!("\nload: no unexpected outcome, no crash, every limit hit as its own kind");
        return;
    }
    println!(
        "witbox load: {sessions} concurrent sessions, {seconds} s each way, policy: {}",
        POLICY.replace('\n', "; ")
    );
    let a = rt.block_on(library(sessions, seconds));
    let rss = peak_rss_mib();
    let bound = sessions as f64 * 48.0;
    println!(
        "library peak RSS: {rss:.0} MiB (bound: {sessions} sessions × 48 MiB = {bound:.0} MiB)"
    );
    let b = rt.block_on(mcp_http(sessions, seconds));
    if !(a && b && rss < bound) {
        eprintln!("load: FAILED");
        std::process::exit(1);
    }
    println!("\nload: no unexpected outcome, no crash, every limit hit as its own kind");
}
