//! Replicas of `witbox serve` that share sessions through a real Redis
//! (`redis-server`, Debian's package, on 127.0.0.1): a client alternating
//! replicas keeps its globals, a replica killed with `kill -9` loses at most the
//! cell it was running, and a store that goes away is reported, not a crash.

use crate::serve::{Served, sample, scrape};
use crate::support::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// A `redis-server` on a free loopback port, with nothing saved to disk;
/// stopped when dropped.
pub struct Redis {
    child: std::process::Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Self {
        // Redis cannot listen on port 0: take a free port, and try again if
        // another process took it first.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = std::process::Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server (Debian's `redis-server`; `cargo xtask test` installs it)");
            let mut redis = Self { child, port };
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if redis.ping() {
                    return redis;
                }
                if redis.child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = redis.child.kill();
        }
        panic!("redis-server did not start");
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A REST call; the JSON answer.
fn call(server: &Served, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let headers = [("Content-Type", "application/json")];
    let (status, _, body) = server.request(method, path, &headers, &body.to_string());
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|_| json!({"raw": body})),
    )
}

fn run(server: &Served, id: &str, code: &str) -> Value {
    let (status, body) = call(
        server,
        "POST",
        &format!("/v1/sessions/{id}/run"),
        &json!({"code": code}),
    );
    assert_eq!(status, 200, "{body}");
    body
}

fn wait_ready(server: &Served) {
    let started = Instant::now();
    loop {
        let (status, _, body) = server.request("GET", "/readyz", &[], "");
        if status == 200 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never ready: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn replicas_share_sessions_through_redis_and_survive_kill_9() {
    let redis = Redis::start();
    let dir = TempDir::new("fleet");
    let manifest = dir.write("witbox.toml", runner_manifest("timeout-ms = 20000"));
    let store = redis.url();
    let mut a = Served::start(&manifest, &["--store", &store]);
    let b = Served::start(&manifest, &["--store", &store]);
    wait_ready(&a);
    wait_ready(&b);

    // Made on A, continued on B, A, B: each cell sees the one before, files too.
    let (status, created) = call(&a, "POST", "/v1/sessions", &json!({}));
    assert_eq!(status, 201, "{created}");
    let id = created["session_id"].as_str().unwrap().to_string();
    run(&a, &id, "x = 1");
    run(&b, &id, "x += 1\nopen('/notes.txt', 'w').write('from b')");
    run(&a, &id, "x += 1");
    let seen = run(&b, &id, "(x, open('/notes.txt').read())");
    assert_eq!(seen["value"], "(3, 'from b')", "{seen}");
    // B saved its cells to the store, and restored the session when A had run it since.
    let text = b.request("GET", "/metrics", &[], "").2;
    let metrics = scrape(&text);
    let ok = [("outcome", "ok")];
    assert!(
        sample(&metrics, "witbox_session_saves_total", &ok) >= 1.0,
        "{text}"
    );
    assert_eq!(
        sample(&metrics, "witbox_restores_total", &ok),
        2.0,
        "{text}"
    );
    assert!(
        text.contains("\nwitbox_session_save_duration_seconds_count "),
        "{text}"
    );
    // Both replicas list it, and by the header it is the same session.
    for server in [&a, &b] {
        let (_, listed) = call(server, "GET", "/v1/sessions", &json!({}));
        assert_eq!(listed, json!({"sessions": [id]}));
    }
    let (status, _, body) = a.request(
        "POST",
        "/v1/session/run",
        &[("X-Sandbox-ID", &id)],
        r#"{"code": "x"}"#,
    );
    assert_eq!(
        (status, body.contains(r#""value":"3""#)),
        (200, true),
        "{body}"
    );

    // A runs a cell that never ends; it is killed (`kill -9`) while it runs.
    // B takes the session over once A's lease lapses, from the last cell
    // that ended: the killed cell's `x = 99` is lost, nothing else is.
    let running = {
        let (addr, id) = (a.addr, id.clone());
        std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            let body = json!({"code": "x = 99\nwhile True: pass"}).to_string();
            let request = format!(
                "POST /v1/sessions/{id}/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(request.as_bytes()).unwrap();
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
        })
    };
    // Once the cell is under way on A (a busy run slot), so A holds the lease.
    let started = Instant::now();
    loop {
        let (_, _, metrics) = a.request("GET", "/metrics", &[], "");
        if metrics.lines().any(|l| l == "witbox_run_slots_busy 1") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the cell never started:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Instant::now();
    a.child.kill().unwrap(); // SIGKILL
    let _ = a.child.wait();
    running.join().unwrap();
    let after = run(&b, &id, "x");
    let takeover = killed.elapsed();
    assert_eq!(after["value"], "3", "{after}");
    assert_eq!(after["error"], Value::Null, "{after}");
    // Within the lease (3 s) and the call's own time, with room for a slow machine.
    assert!(takeover < Duration::from_secs(30), "took {takeover:?}");
    eprintln!("take-over after kill -9: {} ms", takeover.as_millis());

    // A replica holds at most `max-sessions` (4 here) in memory, and the
    // store any number: six sessions made on B, each then used on B and C.
    let c = Served::start(&manifest, &["--store", &store]);
    let ids: Vec<String> = (0..6)
        .map(|i| {
            let (status, made) = call(&b, "POST", "/v1/sessions", &json!({}));
            assert_eq!(status, 201, "{made}");
            let id = made["session_id"].as_str().unwrap().to_string();
            run(&b, &id, &format!("n = {i}"));
            id
        })
        .collect();
    for (i, id) in ids.iter().enumerate() {
        for server in [&c, &b] {
            assert_eq!(run(server, id, "n")["value"], i.to_string());
        }
    }

    // Closed on B: gone for every replica.
    let (status, closed) = call(&b, "DELETE", &format!("/v1/sessions/{id}"), &json!({}));
    assert_eq!((status, closed["closed"].as_bool()), (200, Some(true)));
    let (status, refused) = call(
        &c,
        "POST",
        &format!("/v1/sessions/{id}/run"),
        &json!({"code": "x"}),
    );
    assert_eq!(status, 404, "{refused}");

    // Without its store a replica is not ready, and says why; a call fails
    // with the store named, and the replica serves the next one.
    drop(redis);
    let (status, _, body) = b.request("GET", "/readyz", &[], "");
    assert_eq!(status, 503);
    assert!(body.contains("session store"), "{body}");
    let (status, refused) = call(&b, "POST", "/v1/sessions", &json!({}));
    assert_eq!(status, 500, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "the session store {store} failed to lease a session: "
        )),
        "{message}"
    );
    let (status, _, _) = b.request("GET", "/healthz", &[], "");
    assert_eq!(status, 200);
}
