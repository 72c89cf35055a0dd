//! `witbox serve`'s REST API as an HTTP client sees it (one keep-alive
//! connection): a cell in a session kept in memory, in Redis, and on a replica
//! that did not run the session's last cell (so restores it from Redis).

use super::timing;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type Rows = Vec<(String, String, String)>;

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Client(BufReader<TcpStream>);

impl Client {
    fn connect(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        Self(BufReader::new(stream))
    }

    fn call(
        &mut self,
        method: &str,
        path: &str,
        session: Option<&str>,
        body: &str,
    ) -> (u16, Value) {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(s) = session {
            head.push_str(&format!("X-Witbox-Session: {s}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(body);
        self.0.get_mut().write_all(head.as_bytes()).unwrap();
        let mut status = String::new();
        self.0.read_line(&mut status).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.0.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.0.read_exact(&mut body).unwrap();
        let code = status.split_whitespace().nth(1).unwrap().parse().unwrap();
        (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

fn serve(manifest: &Path, cache: &Path, args: &[&str]) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_witbox"))
        .arg("--manifest")
        .arg(manifest)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("WITBOX_CACHE_DIR", cache)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut banner = String::new();
    stderr.read_line(&mut banner).unwrap();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let addr = banner
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_string();
    let child = Killed(child);
    let started = Instant::now();
    while Client::connect(&addr).call("GET", "/readyz", None, "").0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(120), "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, addr)
}

fn session(client: &mut Client) -> String {
    let (status, created) = client.call("POST", "/v1/sessions", None, "");
    assert_eq!(status, 201, "{created}");
    created["session_id"].as_str().unwrap().to_string()
}

/// `n` runs of `code` in `id`, alternating over `clients`.
fn runs(clients: &mut [Client], id: &str, code: &str, n: usize) -> Vec<Duration> {
    let body = json!({"code": code}).to_string();
    (0..n)
        .map(|i| {
            let client = &mut clients[i % clients.len()];
            let t = Instant::now();
            let (status, result) = client.call("POST", "/v1/session/run", Some(id), &body);
            assert!(status == 200 && result["error"].is_null(), "{result}");
            t.elapsed()
        })
        .skip(20)
        .collect()
}

pub fn rest(manifest: &Path, cache: &Path, rows: &mut Rows) {
    let (_server, addr) = serve(manifest, cache, &[]);
    let mut client = [Client::connect(&addr)];
    let id = session(&mut client[0]);
    let samples = runs(&mut client, &id, "print(1+1)", 300);
    rows.push(timing(
        "REST: `run print(1+1)` in a session (keep-alive)",
        samples,
    ));

    let redis_found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if !redis_found.is_ok_and(|s| s.success()) {
        rows.push((
            "REST + Redis store".into(),
            "-".into(),
            "skipped: no redis-server".into(),
        ));
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _redis = Killed(
        Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let store = format!("redis://127.0.0.1:{port}/0");
    let (_a, a) = serve(manifest, cache, &["--store", &store]);
    let (_b, b) = serve(manifest, cache, &["--store", &store]);
    let mut one = [Client::connect(&a)];
    let id = session(&mut one[0]);
    rows.push(timing(
        "REST + Redis: `print(1+1)` (a lease, no save)",
        runs(&mut one, &id, "print(1+1)", 300),
    ));
    one[0].call("POST", "/v1/session/run", Some(&id), r#"{"code": "x = 0"}"#);
    rows.push(timing(
        "REST + Redis: `x += 1` (a lease and a save)",
        runs(&mut one, &id, "x += 1", 300),
    ));
    let mut both = [Client::connect(&a), Client::connect(&b)];
    rows.push(timing(
        "REST + Redis: `x += 1` alternating 2 replicas (a restore each)",
        runs(&mut both, &id, "x += 1", 200),
    ));
}
