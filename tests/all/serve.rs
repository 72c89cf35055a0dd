//! `witbox serve`: the real binary on 127.0.0.1 port 0, spoken to in raw HTTP/1.1:
//! health and readiness, unknown paths, bearer tokens, and MCP sessions that
//! belong to the principal that started them.

use crate::support::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub const ALICE: &str = "alice-0123456789abcdef0123456789abcdef";
pub const BOB: &str = "bob-0123456789abcdef0123456789abcdef00";

/// `witbox serve --listen 127.0.0.1:0 ARGS`, killed when dropped.
pub struct Served {
    pub child: std::process::Child,
    pub addr: SocketAddr,
}

impl Served {
    pub fn start(manifest: &std::path::Path, args: &[&str]) -> Self {
        let mut child = witbox_command(manifest)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let url = served_url(&mut child);
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches("/mcp")
            .parse()
            .unwrap();
        Self { child, addr }
    }

    /// One request on its own connection: (status, lower-cased head, body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, String) {
        let (status, head, body) = self.request_bytes(method, path, headers, body.as_bytes());
        (status, head, String::from_utf8(body).expect("a text body"))
    }

    /// [`Served::request`] with bytes in and out.
    pub fn request_bytes(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, Vec<u8>) {
        let mut stream = std::net::TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            head.push_str(&format!("Host: 127.0.0.1:{}\r\n", self.addr.port()));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        stream.write_all(format!("{head}\r\n").as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(response.len());
        let head = String::from_utf8_lossy(&response[..end]).into_owned();
        let body = response.get(end + 4..).unwrap_or_default().to_vec();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        (status, head.to_lowercase(), body)
    }

    /// An MCP message to `/mcp` as `token`, in session `session` if any.
    fn mcp(
        &self,
        token: Option<&str>,
        session: Option<&str>,
        message: &Value,
    ) -> (u16, String, String) {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        if let Some(b) = &bearer {
            headers.push(("Authorization", b));
        }
        if let Some(s) = session {
            headers.push(("Mcp-Session-Id", s));
            headers.push(("MCP-Protocol-Version", "2025-06-18"));
        }
        self.request("POST", "/mcp", &headers, &message.to_string())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/metrics` text, parsed as a Prometheus server would (`prometheus-parse`).
pub fn scrape(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text")
}

/// The value of `metric` with `labels` (0 if it has no sample yet).
pub fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus_parse::Value;
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{metric} is not a number: {other:?}"),
        })
        .sum()
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}})
}

fn session_of(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("mcp-session-id: "))
        .unwrap_or_else(|| panic!("no session id in {head}"))
        .trim()
        .to_string()
}

#[test]
fn serve_answers_health_readiness_and_unknown_paths() {
    let dir = TempDir::new("serve-health");
    let manifest = dir.write("witbox.toml", runner_manifest("timeout-ms = 1000"));
    let server = Served::start(&manifest, &[]);
    let (status, head, body) = server.request("GET", "/healthz", &[], "");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    assert!(head.contains("content-type: application/json"), "{head}");
    // Ready once the runner is loaded and its warm pool is full.
    let started = Instant::now();
    loop {
        let (status, _, body) = server.request("GET", "/readyz", &[], "");
        let body: Value = serde_json::from_str(&body).unwrap();
        if status == 200 {
            assert_eq!(body, json!({"status": "ready"}));
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "not ready");
        let waiting = body["waiting_for"].as_array().unwrap();
        assert!(
            waiting
                .iter()
                .all(|w| ["tools", "runner", "warm pool"].contains(&w.as_str().unwrap())),
            "{body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never ready: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _, body) = server.request("GET", "/nothing", &[], "");
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": "no endpoint `/nothing`: this server has /mcp (MCP, streamable HTTP), /v1/ (REST, described at /v1/openapi.json), /healthz, /readyz and /metrics"}).to_string()
    );
    // Without tokens, MCP is open on loopback.
    let (status, head, _) = server.mcp(None, None, &initialize());
    assert_eq!(status, 200);
    let session = session_of(&head);
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(server.mcp(None, Some(&session), &initialized).0, 202);

    // Metrics: a run that works, one that raises an exception whose name a guest
    // chose, a checkpoint, and a run over its time limit (a restart that restores
    // the checkpoint); labels come from fixed sets only.
    let run = |id: u64, code: &str, python: Option<&str>| {
        let mut arguments = json!({"code": code});
        if let Some(p) = python {
            arguments["session_id"] = json!(p);
        }
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "run_python", "arguments": arguments}});
        let (status, _, body) = server.mcp(None, Some(&session), &call);
        assert_eq!(status, 200, "{body}");
        // The SSE event's JSON: the Python session it ran in.
        let at = body.find("\"session_id\":\"").expect("a session id") + 14;
        body[at..].split('"').next().unwrap().to_string()
    };
    let before = scrape(&server.request("GET", "/metrics", &[], "").2);
    assert_eq!(
        sample(&before, "witbox_python_runs_total", &[("outcome", "ok")]),
        0.0
    );
    let python = run(2, "print(1 + 1)", None);
    run(
        3,
        "class Chosen_By_The_Guest(Exception): pass\nraise Chosen_By_The_Guest('x')",
        Some(&python),
    );
    run(4, "x = 41", Some(&python));
    run(5, "while True: pass", Some(&python));
    let (status, head, text) = server.request("GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    for line in [
        "# TYPE witbox_python_runs counter",
        "witbox_python_runs_total{outcome=\"ok\"} 2",
        "witbox_python_runs_total{outcome=\"exception\"} 1",
        "witbox_python_runs_total{outcome=\"timeout\"} 1",
        "# TYPE witbox_python_run_duration_seconds histogram",
        "witbox_python_run_duration_seconds_count 4",
        "witbox_session_restarts_total{reason=\"timeout\"} 1",
        "witbox_restores_total{outcome=\"ok\"} 1",
        "witbox_restore_duration_seconds_count 1",
        "# TYPE witbox_guest_memory_peak_bytes histogram",
        "witbox_python_sessions{state=\"idle\"} 1",
        "witbox_python_sessions{state=\"running\"} 0",
        "# TYPE witbox_warm_pool_instances gauge",
        "witbox_run_slots_busy 0",
        "witbox_run_slots_waiting 0",
        "# EOF",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(!text.contains("Chosen_By_The_Guest"), "{text}");
    // As a Prometheus server reads it: every sample parses, and the counters moved.
    let after = scrape(&text);
    assert_eq!(
        sample(&after, "witbox_python_runs_total", &[("outcome", "ok")]),
        2.0
    );
    assert_eq!(
        sample(
            &after,
            "witbox_python_runs_total",
            &[("outcome", "timeout")]
        ),
        1.0
    );
    assert_eq!(
        sample(&after, "witbox_python_sessions", &[("state", "idle")]),
        1.0
    );
    assert!(after.samples.len() > 20, "{text}");
    // At least the one of `x = 41` (the first cells may make one too).
    let checkpoints: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("witbox_checkpoint_bytes_count "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(checkpoints >= 1, "{text}");
}

#[test]
fn serve_needs_tokens_for_other_addresses_and_checks_them() {
    let dir = TempDir::new("serve-tokens");
    let manifest = dir.write("witbox.toml", runner_manifest(""));
    let out = witbox_command(&manifest)
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: refusing to serve on 0.0.0.0:0 without tokens: it is not a loopback address, so anyone who can reach it could run code in its sandboxes; listen on 127.0.0.1 or [::1], or give `witbox serve` bearer tokens (`--tokens FILE` or `WITBOX_TOKENS`)\n"
    );
    let weak = dir.write("weak.txt", "secret alice\n");
    let out = witbox_command(&manifest)
        .args(["serve", "--tokens"])
        .arg(&weak)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: entry 1 of `{}`: the token of `alice` must be at least 32 visible ASCII characters, and random (for example from `openssl rand -hex 32`)\n",
            weak.display()
        )
    );

    let tokens = dir.write(
        "tokens.txt",
        format!("# who may run code\n{ALICE} alice\n{BOB} bob\n"),
    );
    let server = Served::start(&manifest, &["--tokens", tokens.to_str().unwrap()]);
    // Health needs no token.
    assert_eq!(server.request("GET", "/healthz", &[], "").0, 200);
    // No token, a wrong one, another scheme: 401, and nothing else said.
    let refusal = json!({"error": "this server needs a bearer token: send `Authorization: Bearer TOKEN` with a token from its tokens file"}).to_string();
    for token in [None, Some("alice-0123456789abcdef0123456789abcdeX")] {
        let (status, head, body) = server.mcp(token, None, &initialize());
        assert_eq!(
            (status, body.as_str()),
            (401, refusal.as_str()),
            "{token:?}"
        );
        assert!(
            head.contains("www-authenticate: bearer realm=\"witbox\""),
            "{head}"
        );
    }
    let basic = format!("Basic {ALICE}");
    let (status, _, _) = server.request("POST", "/mcp", &[("Authorization", &basic)], "{}");
    assert_eq!(status, 401);

    // alice starts a session; it is hers.
    let (status, head, body) = server.mcp(Some(ALICE), None, &initialize());
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""serverInfo":{"name":"witbox""#), "{body}");
    let session = session_of(&head);
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(server.mcp(Some(ALICE), Some(&session), &initialized).0, 202);
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (status, _, body) = server.mcp(Some(ALICE), Some(&session), &list);
    assert_eq!(status, 200);
    assert!(body.contains(r#""name":"run_python""#), "{body}");
    // bob cannot reach it: to him it does not exist.
    let (status, _, body) = server.mcp(Some(BOB), Some(&session), &list);
    assert_eq!(
        (status, body.as_str()),
        (404, "Not Found: Session not found")
    );
    let (status, _, _) = server.request(
        "DELETE",
        "/mcp",
        &[
            ("Authorization", &format!("Bearer {BOB}")),
            ("Mcp-Session-Id", &session),
        ],
        "",
    );
    assert_eq!(status, 404);
    // ... and it is still alice's.
    assert_eq!(server.mcp(Some(ALICE), Some(&session), &list).0, 200);

    // With tokens, the token guards the server, not the Host header.
    let (status, _, _) = server.request(
        "POST",
        "/mcp",
        &[
            ("Host", "witbox.internal:8765"),
            ("Authorization", &format!("Bearer {BOB}")),
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        &initialize().to_string(),
    );
    assert_eq!(status, 200);
}

/// Tool calls are counted by the manifest's tool name and a fixed outcome; a name
/// that is no tool is `(unknown)`, whatever the caller sent.
#[tokio::test]
async fn tool_calls_are_counted_by_manifest_names_only() {
    let r = registry("quadratic", "");
    r.call("quadratic_solve", &json!({"a": 1, "b": -3, "c": 2}))
        .await
        .unwrap();
    r.call("quadratic_solve", &json!({"a": "one"}))
        .await
        .unwrap_err();
    r.call("chosen_by_the_caller", &json!({}))
        .await
        .unwrap_err();
    let text = witbox::metrics::encode(witbox::metrics::Now::default());
    let count = |labels: &str| -> u64 {
        let prefix = format!("witbox_tool_calls_total{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in:\n{text}"))
            .parse()
            .unwrap()
    };
    // Other tests in this process call tools too: at least these.
    assert!(count(r#"tool="quadratic_solve",outcome="ok""#) >= 1);
    assert!(count(r#"tool="quadratic_solve",outcome="invalid-arguments""#) >= 1);
    assert!(count(r#"tool="(unknown)",outcome="not-found""#) >= 1);
    assert!(!text.contains("chosen_by_the_caller"), "{text}");
    assert!(
        text.contains("# TYPE witbox_tool_call_duration_seconds histogram"),
        "{text}"
    );
}

/// Each principal has its own quota of MCP sessions and of requests per second;
/// past either, `429` with `Retry-After`.
#[test]
fn quotas_are_per_principal() {
    let dir = TempDir::new("serve-quotas");
    let manifest = dir.write("witbox.toml", runner_manifest(""));
    let tokens = dir.write("tokens.txt", format!("{ALICE} alice\n{BOB} bob\n"));
    let server = Served::start(
        &manifest,
        &[
            "--tokens",
            tokens.to_str().unwrap(),
            "--sessions-per-principal",
            "1",
            "--requests-per-second",
            "2",
        ],
    );
    let (status, head, body) = server.mcp(Some(ALICE), None, &initialize());
    assert_eq!(status, 200, "{body}");
    let session = session_of(&head);
    let (status, head, body) = server.mcp(Some(ALICE), None, &initialize());
    assert_eq!(status, 429);
    assert_eq!(
        body,
        json!({"error": "`alice` has 1 MCP sessions open, its quota (`--sessions-per-principal`): close one (`DELETE /mcp` with its `Mcp-Session-Id`) before starting another"}).to_string()
    );
    assert!(head.contains("retry-after: 1\r\n"), "{head}");
    // bob's quota is his own.
    assert_eq!(server.mcp(Some(BOB), None, &initialize()).0, 200);
    // Two a second, in bursts of two: ten at once cannot all pass.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let limited = (0..10)
        .map(|_| server.mcp(Some(ALICE), Some(&session), &list))
        .find(|(status, _, _)| *status == 429)
        .expect("ten requests at once all passed a limit of two a second");
    let (_, head, body) = limited;
    assert!(
        body.starts_with(
            r#"{"error":"`alice` sent more than its 2 requests per second (`--requests-per-second`): retry after "#
        ),
        "{body}"
    );
    assert!(head.contains("retry-after: 1\r\n"), "{head}");
}

/// `SIGTERM` stops the server without cutting the calls in flight: a run that
/// started before it ends, and is answered; then the process exits. Its stderr
/// is closed first: the lines it logs while it stops are lost, not the process.
#[test]
fn sigterm_lets_the_calls_in_flight_end() {
    let dir = TempDir::new("serve-drain");
    let manifest = dir.write("witbox.toml", runner_manifest(""));
    let state = dir.0.join("state");
    let mut child = witbox_command(&manifest)
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&state)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stderr.take().unwrap()),
        &mut banner,
    )
    .unwrap(); // and the pipe's reading end is closed here
    let url = banner
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap();
    let addr = url.trim_end_matches("/mcp").parse().unwrap();
    let mut server = Served { child, addr };
    let (_, head, _) = server.mcp(None, None, &initialize());
    let session = session_of(&head);
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(server.mcp(None, Some(&session), &initialized).0, 202);
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "run_python",
        "arguments": {"code": "import time\ntime.sleep(2)\nprint('finished')"}}});
    // And a REST cell, in a session of its own.
    let (_, _, created) = server.request("POST", "/v1/sessions", &[], "");
    let rest: Value = serde_json::from_str(&created).unwrap();
    let rest = rest["session_id"].as_str().unwrap().to_string();
    let cell = json!({"code": "import time\ntime.sleep(2)\ny = 'kept'"}).to_string();
    let path = format!("/v1/sessions/{rest}/run");
    let (answered, ran) = std::thread::scope(|scope| {
        let running = scope.spawn(|| server.mcp(None, Some(&session), &call));
        let cell = scope.spawn(|| server.request("POST", &path, &[], &cell));
        // Once both cells run (their sessions are busy).
        let started = Instant::now();
        loop {
            let metrics = scrape(&server.request("GET", "/metrics", &[], "").2);
            if sample(&metrics, "witbox_python_sessions", &[("state", "running")]) == 2.0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the cells never ran"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let term = std::process::Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        (running.join().unwrap(), cell.join().unwrap())
    });
    assert_eq!(answered.0, 200);
    assert!(answered.2.contains("finished"), "{}", answered.2);
    assert_eq!(ran.0, 200, "{}", ran.2);
    assert!(ran.2.contains(r#""error":null"#), "{}", ran.2);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the server did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    // Its port is closed.
    assert!(std::net::TcpStream::connect(server.addr).is_err());
    // The drained cell was saved: the next server on the state dir goes on from it.
    let next = Served::start(&manifest, &["--state-dir", state.to_str().unwrap()]);
    let body = json!({"code": "y"}).to_string();
    let (status, _, after) = next.request("POST", &format!("/v1/sessions/{rest}/run"), &[], &body);
    assert_eq!(status, 200, "{after}");
    assert!(after.contains(r#""value":"'kept'""#), "{after}");
}
