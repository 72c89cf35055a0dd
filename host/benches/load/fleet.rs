//! `cargo xtask load --replicas N`: `witbox serve --store redis://...` replicas
//! behind a loopback balancer, driven through the REST API.

use super::{Stats, WORKLOADS, exchange, manifest_text, pick, record, report, root, served_addr};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the balancer picks a replica for a request.
#[derive(Clone, Copy, PartialEq)]
pub enum Route {
    /// The next replica, whatever the session: a call may land on a replica
    /// that did not run the session's last cell (and restores it).
    RoundRobin,
    /// By the `X-Witbox-Session` header: a session stays on one replica.
    Affinity,
}

/// A process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Child {
    fn peak_rss(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default()
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn redis() -> (Child, u16) {
    let port = free_port();
    let child = std::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (Debian's `redis-server`)");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (Child(child), port)
}

/// `witbox serve` on a free port with `store`, and its address, once ready.
async fn replica(manifest: &std::path::Path, store: &str) -> (Child, String) {
    let mut child = std::process::Command::new(root().join("target/release/witbox"))
        .arg("--manifest")
        .arg(manifest)
        .args(["serve", "--listen", "127.0.0.1:0", "--store", store])
        .env("WITBOX_CACHE_DIR", root().join("target/bench-cache"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("target/release/witbox (cargo build --release -p witbox)");
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut banner = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut banner).unwrap();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let addr = served_addr(&banner);
    let started = Instant::now();
    while request(&addr, "GET", "/readyz", None, "")
        .await
        .map(|r| r.0)
        != Ok(200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "replica {addr} never ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (Child(child), addr)
}

/// One HTTP/1.1 request on its own connection: the status and the JSON body.
async fn request(
    addr: &str,
    method: &str,
    path: &str,
    session: Option<&str>,
    body: &str,
) -> Result<(u16, Value), String> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(s) = session {
        head.push_str(&format!("X-Witbox-Session: {s}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(body);
    let text = exchange(addr, &head).await?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no response head")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// A balancer on a loopback port: reads each connection's request head, picks
/// a replica by `route`, and pipes the bytes both ways.
async fn balancer(replicas: Vec<String>, route: Route) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let replicas = Arc::new(replicas);
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            let (replicas, next) = (replicas.clone(), next.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut byte).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&byte[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).to_lowercase();
                let session = text
                    .lines()
                    .find_map(|l| l.strip_prefix("x-witbox-session:"))
                    .map(str::trim);
                let i = match (route, session) {
                    (Route::Affinity, Some(s)) => s
                        .bytes()
                        .fold(0usize, |h, b| h.wrapping_mul(31) ^ usize::from(b)),
                    _ => next.fetch_add(1, Ordering::Relaxed),
                } % replicas.len();
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&replicas[i]).await else {
                    return;
                };
                if upstream.write_all(&head).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    addr
}

/// `sessions` clients, each with a REST session, for `seconds`, through a
/// balancer to `count` replicas.
pub async fn fleet(sessions: usize, seconds: u64, count: usize, route: Route) -> bool {
    let dir = root().join("target/load");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("witbox.toml");
    std::fs::write(&manifest, manifest_text(sessions)).unwrap();
    let (_redis, port) = redis();
    let store = format!("redis://127.0.0.1:{port}/0");
    let mut replicas = Vec::new();
    for _ in 0..count {
        replicas.push(replica(&manifest, &store).await);
    }
    let addrs = replicas.iter().map(|(_, a)| a.clone()).collect();
    let front = balancer(addrs, route).await;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let stats = Arc::new(Mutex::new(Stats {
        until: Some(deadline),
        ..Stats::default()
    }));
    let started = Instant::now();
    let tasks: Vec<_> = (0..sessions)
        .map(|t| {
            let (stats, front) = (stats.clone(), front.clone());
            tokio::spawn(async move {
                let (status, created) = request(&front, "POST", "/v1/sessions", None, "")
                    .await
                    .expect("a session");
                assert_eq!(status, 201, "{created}");
                let id = created["session_id"].as_str().unwrap().to_string();
                let mut n = t as u64 * 7919;
                while Instant::now() < deadline {
                    n += 1;
                    let i = pick(n);
                    let body = json!({"code": WORKLOADS[i].1}).to_string();
                    let t0 = Instant::now();
                    let outcome =
                        match request(&front, "POST", "/v1/session/run", Some(&id), &body).await {
                            Ok((200, r)) => match &r["error"] {
                                Value::Null => "ok".to_string(),
                                e => e["type"].as_str().unwrap_or("?").to_string(),
                            },
                            Ok((status, r)) => format!("HTTP {status}: {}", r["error"]["message"]),
                            Err(e) => format!("transport {e}"),
                        };
                    record(&stats, i, t0.elapsed(), &outcome);
                }
                let _ = request(&front, "DELETE", "/v1/session", Some(&id), "").await;
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let how = match (count, route) {
        (1, _) => "1 replica".to_string(),
        (n, Route::RoundRobin) => format!("{n} replicas, round robin per request"),
        (n, Route::Affinity) => format!("{n} replicas, affinity by X-Witbox-Session"),
    };
    let ok = report(
        &format!("witbox serve + Redis, {how}, {sessions} clients"),
        &stats.lock().unwrap(),
        seconds,
        elapsed,
    );
    let rss: Vec<String> = replicas.iter().map(|(c, _)| c.peak_rss()).collect();
    println!("replica peak RSS: {}", rss.join(", "));
    ok
}
