//! The MCP server: in process over `tokio::io::duplex` (raw JSON-RPC lines, so the
//! wire is what is tested), and out of process with clients no one here wrote: the
//! official Python and TypeScript MCP SDKs over stdio and HTTP, and smolagents'
//! CodeAgent.

use crate::support::*;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use witbox::mcp::Server;
use witbox::{Manifest, Registry, Runner, Sessions};

fn manifest_text(policy: &str) -> String {
    format!(
        "{}[runner]\npath = {:?}\n[runner.policy]\ncall-tools = [\"quadratic_solve\"]\n{policy}\n",
        entry("quadratic", "quadratic", ""),
        guest("python-runner")
    )
}

fn server(policy: &str, ttl: Duration) -> Arc<Server> {
    compiling(|| {
        let manifest = Manifest::parse(&manifest_text(policy), &root()).unwrap();
        let registry = Registry::load(&manifest, options()).unwrap();
        let runner = Runner::load(&manifest, &manifest.runner, registry.clone()).unwrap();
        Server::new(registry, Some(Arc::new(Sessions::new(runner, 8, ttl))))
    })
}

/// A client speaking newline-delimited JSON-RPC to an in-process server.
struct Client {
    write: tokio::io::WriteHalf<tokio::io::DuplexStream>,
    read: tokio::io::Lines<BufReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>>,
    next: u64,
    init: Value,
}

impl Client {
    async fn connect(server: &Arc<Server>) -> Self {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let server = server.clone();
        tokio::spawn(async move {
            let (r, w) = tokio::io::split(theirs);
            server.serve((r, w), std::future::pending()).await
        });
        let (r, w) = tokio::io::split(ours);
        let mut client = Self {
            write: w,
            read: BufReader::new(r).lines(),
            next: 0,
            init: Value::Null,
        };
        client.init = client
            .request(
                "initialize",
                json!({"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "test", "version": "0"}}),
            )
            .await;
        client
            .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        client
    }

    async fn send(&mut self, message: Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.write.write_all(line.as_bytes()).await.unwrap();
    }

    /// Sends a request and returns the whole response message.
    async fn request(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        loop {
            let line = self
                .read
                .next_line()
                .await
                .unwrap()
                .expect("the server closed the stream");
            let message: Value = serde_json::from_str(&line).unwrap();
            if message["id"] == id {
                return message;
            }
        }
    }

    async fn call(&mut self, name: &str, arguments: Value) -> Value {
        let response = self
            .request("tools/call", json!({"name": name, "arguments": arguments}))
            .await;
        assert!(
            response.get("error").is_none(),
            "protocol error: {response}"
        );
        response["result"].clone()
    }
}

fn text(result: &Value) -> String {
    result["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap_or(""))
        .collect()
}

#[tokio::test]
async fn tools_are_listed_with_their_wit_schemas_and_the_instructions_say_what_the_sandbox_is() {
    let server = server("", Duration::from_secs(60));
    let mut client = Client::connect(&server).await;
    let info = &client.init["result"];
    assert_eq!(info["serverInfo"]["name"], "witbox");
    assert_eq!(info["protocolVersion"], "2025-06-18");
    let instructions = info["instructions"].as_str().unwrap();
    assert!(
        instructions.contains("no files, no environment, no network unless granted"),
        "{instructions}"
    );
    assert!(
        instructions.contains("Inside Python these tools are functions: quadratic_solve."),
        "{instructions}"
    );
    assert!(
        instructions.contains(
            "the standard library (asyncio without sockets; top-level `await` works), no third-party packages,"
        ),
        "{instructions}"
    );

    let tools = client.request("tools/list", json!({})).await;
    let tools = tools["result"]["tools"].as_array().unwrap().clone();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "quadratic_solve",
            "run_python",
            "reset_session",
            "close_session",
            "write_file",
            "read_file",
            "list_files",
            "snapshot_session",
            "restore_session"
        ]
    );
    let registry = load(&entry("quadratic", "quadratic", "")).unwrap();
    let quadratic = registry.tool("quadratic_solve").unwrap();
    assert_eq!(tools[0]["inputSchema"], quadratic.parameters);
    assert_eq!(tools[0]["description"], quadratic.description.as_str());
    assert_eq!(tools[1]["inputSchema"]["required"], json!(["code"]));
}

#[tokio::test]
async fn failures_are_error_results_and_bad_requests_are_protocol_errors() {
    let server = server("", Duration::from_secs(60));
    let mut client = Client::connect(&server).await;

    let ok = client
        .call("quadratic_solve", json!({"a": 1, "b": -3, "c": 2}))
        .await;
    assert_eq!(ok["isError"], false);
    assert_eq!(
        ok["structuredContent"],
        json!({"result": [{"re": 1.0, "im": 0.0}, {"re": 2.0, "im": 0.0}]})
    );

    let bad = client
        .call("quadratic_solve", json!({"a": 1, "b": "x", "c": 2}))
        .await;
    assert_eq!(bad["isError"], true);
    assert_eq!(
        text(&bad),
        "invalid-arguments: invalid arguments for `quadratic_solve`: `b`: expected a number, got the string \"x\""
    );

    let own = client
        .call("quadratic_solve", json!({"a": 0, "b": 0, "c": 1}))
        .await;
    assert_eq!(own["isError"], true);
    assert_eq!(own["structuredContent"]["error"]["kind"], "tool-error");

    let huge = "9".repeat(4_000_000);
    let big = client
        .call("quadratic_solve", json!({"a": huge, "b": 0, "c": 0}))
        .await;
    assert_eq!(big["isError"], true);
    assert!(
        text(&big).contains("got a string of 4000000 bytes"),
        "{}",
        text(&big)
    );
    let big = client
        .call("run_python", json!({"code": "#".repeat(2 << 20)}))
        .await;
    assert_eq!(
        text(&big),
        "invalid-arguments: the code is 2097152 bytes; the limit is 1048576"
    );

    let unknown = client
        .request("tools/call", json!({"name": "rm_rf", "arguments": {}}))
        .await;
    assert_eq!(unknown["error"]["code"], -32602);
    assert_eq!(unknown["error"]["message"], "unknown tool `rm_rf`");

    let missing = client.call("run_python", json!({"session_id": "x"})).await;
    assert_eq!(text(&missing), "invalid-arguments: `code` is required");
    let extra = client
        .call("run_python", json!({"code": "1", "cwd": "/"}))
        .await;
    assert_eq!(
        text(&extra),
        "invalid-arguments: `run_python` has no argument `cwd` (it takes `code` and `session_id`)"
    );

    // After all that, the server still serves.
    let again = client
        .call("run_python", json!({"code": "quadratic_solve(1, 0, -4)"}))
        .await;
    assert_eq!(again["isError"], false, "{again}");
    assert_eq!(
        again["structuredContent"]["value"],
        "[{'re': -2.0, 'im': 0.0}, {'re': 2.0, 'im': 0.0}]"
    );
}

#[tokio::test]
async fn sessions_keep_state_and_belong_to_the_client_that_made_them() {
    let server = server("", Duration::from_secs(60));
    let (mut a, mut b) = (
        Client::connect(&server).await,
        Client::connect(&server).await,
    );
    let first = a.call("run_python", json!({"code": "secret = 41"})).await;
    let id = first["structuredContent"]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text(&first).ends_with(&format!("[session_id: {id}]")),
        "{}",
        text(&first)
    );
    let second = a
        .call(
            "run_python",
            json!({"code": "secret + 1", "session_id": id}),
        )
        .await;
    assert_eq!(second["structuredContent"]["value"], "42");

    let stolen = b
        .call("run_python", json!({"code": "secret", "session_id": id}))
        .await;
    assert_eq!(stolen["isError"], true);
    assert_eq!(
        text(&stolen),
        format!(
            "not-found: unknown session `{id}`: this client did not create it; call `run_python` without `session_id` to start one"
        )
    );
    let own = b
        .call("run_python", json!({"code": "'secret' in globals()"}))
        .await;
    assert_eq!(own["structuredContent"]["value"], "False");

    let reset = a.call("reset_session", json!({"session_id": id})).await;
    assert_eq!(
        text(&reset),
        format!("session `{id}` was reset: its variables are gone")
    );
    let gone = a
        .call("run_python", json!({"code": "secret", "session_id": id}))
        .await;
    assert_eq!(gone["isError"], true);
    assert_eq!(gone["structuredContent"]["error"]["type"], "NameError");
    assert_eq!(server.sessions().unwrap().len(), 2);

    // A client that goes away takes its sessions with it.
    drop(b);
    let started = Instant::now();
    while server.sessions().unwrap().len() != 1 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the sessions of a gone client stayed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_idle_session_expires_with_a_clear_error() {
    let server = server("", Duration::from_millis(300));
    let mut client = Client::connect(&server).await;
    let first = client.call("run_python", json!({"code": "x = 1"})).await;
    let id = first["structuredContent"]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late = client
        .call("run_python", json!({"code": "x", "session_id": id}))
        .await;
    assert_eq!(
        text(&late),
        format!(
            "not-found: session `{id}` has expired: it sat idle for more than its TTL and its variables are gone; call `run_python` without `session_id` to start a new one"
        )
    );
}

#[tokio::test]
async fn a_client_that_disconnects_mid_call_cancels_it() {
    let server = server("timeout-ms = 60000", Duration::from_secs(60));
    let sessions = server.sessions().unwrap().clone();
    let mut client = Client::connect(&server).await;
    client.next += 1;
    let id = client.next;
    client
        .send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                     "params": {"name": "run_python", "arguments": {"code": "while True: pass"}}}))
        .await;
    let started = Instant::now();
    while sessions.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the run never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(client);
    // The run would take 60 s; the server cancels it at the next epoch tick
    // and drops the session.
    let gone = Instant::now();
    while !sessions.is_empty() {
        assert!(
            gone.elapsed() < Duration::from_secs(1),
            "the cancelled session stayed open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And it still serves new clients.
    let mut next = Client::connect(&server).await;
    let r = next
        .call("run_python", json!({"code": "print('alive')"}))
        .await;
    assert_eq!(r["structuredContent"]["stdout"], "alive\n");
}

#[tokio::test]
async fn a_secret_never_reaches_the_client_in_any_part_of_a_result() {
    let secret = "s3cr3t-Value-42";
    let server = server(
        "secrets = { K = \"WITBOX_TEST_SECRET\" }",
        Duration::from_secs(60),
    );
    let mut client = Client::connect(&server).await;
    let mut session = Value::Null;
    for code in [
        "import os, json\nk = os.environ['K']\nprint(json.dumps({k: k}))\nfinal_answer({k: [k, ascii(k)]})",
        "raise type(k, (Exception,), {})(k)",
        "k",
    ] {
        let response = client
            .request(
                "tools/call",
                json!({"name": "run_python", "arguments": {"code": code, "session_id": session}}),
            )
            .await;
        session = response["result"]["structuredContent"]["session_id"].clone();
        let wire = response.to_string();
        assert!(!wire.contains(secret), "{wire}");
        assert!(wire.contains("[REDACTED]"), "{wire}");
    }
}

/// `.venv/bin/python`, where `cargo xtask test` installs the pinned `mcp` and `smolagents`.
fn python() -> PathBuf {
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "missing {}: run `cargo xtask test`, which installs the pinned Python MCP SDK and smolagents",
        python.display()
    );
    python
}

/// Runs a Python script with the test cache; returns the JSON object it prints last.
fn python_json(script: &str, args: &[&str]) -> Value {
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .env("WITBOX_CACHE_DIR", root().join("target/test-cache"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{stdout}"))
}

fn check_python_sdk_session(seen: &Value) {
    assert_eq!(seen["server"], "witbox");
    assert_eq!(
        seen["tools"],
        json!([
            "close_session",
            "list_files",
            "quadratic_solve",
            "read_file",
            "reset_session",
            "restore_session",
            "run_python",
            "snapshot_session",
            "write_file"
        ])
    );
    assert_eq!(seen["quadratic_schema"]["required"], json!(["a", "b", "c"]));
    assert_eq!(seen["solve"]["is_error"], false);
    assert_eq!(
        seen["solve"]["structured"],
        json!({"result": [{"re": 1.0, "im": 0.0}, {"re": 2.0, "im": 0.0}]})
    );
    assert_eq!(seen["bad_args"]["is_error"], true);
    assert_eq!(seen["python"]["first"]["stdout"], "set\n");
    assert_eq!(seen["python"]["second"]["value"], "42");
    assert_eq!(seen["python"]["same_session"], true);
    check_progress(seen);
    assert_eq!(seen["denied"]["is_error"], true);
    assert!(
        seen["denied"]["text"].as_str().unwrap().contains(
            "ModuleNotFoundError: module `socket` is not available in the witbox sandbox: it has no sockets"
        ),
        "{seen}"
    );
    assert_eq!(seen["no_files"]["error"]["type"], "FileNotFoundError");
    assert_eq!(seen["foreign_session"]["is_error"], true);
    assert_eq!(seen["after_reset"]["type"], "NameError");
    // The SDK's own timeout cancels the call; the same id runs again at once.
    assert_eq!(
        seen["cancel"],
        json!({"raised": true, "timeout": "MCPError", "is_error": false, "stdout": "next\n",
               "restarted": true, "reason": "cancelled"}),
        "{seen}"
    );
    assert_eq!(seen["close"]["is_error"], false, "{seen}");
    let files = &seen["files"];
    assert_eq!(files["value"], "256", "{seen}");
    assert_eq!(files["round_trip"], true, "{seen}");
    assert_eq!(files["encoding"], "base64");
    assert_eq!(files["note"]["content"], "héllo");
    assert_eq!(files["note"]["encoding"], "utf-8");
    assert_eq!(files["note"]["size"], 6);
    assert_eq!(files["listed"], json!(["in", "note.txt", "out.bin", "tmp"]));
    assert_eq!(
        files["escape"],
        "invalid-arguments: the path `../etc/passwd` leaves the session's scratch folder: `..` is not allowed"
    );
    assert_eq!(seen["unknown_tool"]["raised"], true, "{seen}");
}

/// A `run_python` with a progress token: every line came in a notification
/// before the result, the first one while the loop still ran, and `progress`
/// (bytes of output so far) grew with each.
fn check_progress(seen: &Value) {
    let progress = &seen["progress"];
    assert_eq!(progress["stdout"], "0\n1\n2\n3\n4\n", "{seen}");
    assert_eq!(progress["at_result"], progress["stdout"], "{seen}");
    let notes = progress["notes"].as_array().unwrap();
    // Each `print` is two writes (the text, then the newline) that come within
    // microseconds: batched, they make fewer notifications than writes.
    assert!(notes.len() < 10, "not batched: {seen}");
    let first = notes[0]["message"].as_str().unwrap();
    assert!(
        !first.contains('4'),
        "the first notification came at the end: {seen}"
    );
    let mut last = 0.0;
    for note in notes {
        let p = note["progress"].as_f64().unwrap();
        assert!(p > last, "progress did not grow: {seen}");
        last = p;
        assert_eq!(note["total"], Value::Null);
    }
    assert_eq!(last, 10.0);
}

#[test]
fn the_official_python_sdk_drives_witbox_mcp_over_stdio_and_http() {
    let dir = TempDir::new("mcp-python-sdk");
    let manifest = dir.write("witbox.toml", manifest_text(""));
    let manifest = manifest.to_str().unwrap();
    let witbox = env!("CARGO_BIN_EXE_witbox");
    let script = root().join("tests/python/mcp_client.py");
    let script = script.to_str().unwrap();

    let seen = python_json(script, &[witbox, manifest]);
    check_python_sdk_session(&seen);

    let mut child = witbox_command(std::path::Path::new(manifest))
        .args(["mcp", "--http", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = served_url(&mut child);
    let seen = python_json(script, &[witbox, manifest, &url]);
    let _ = child.kill();
    let _ = child.wait();
    check_python_sdk_session(&seen);
}

#[tokio::test]
async fn http_transport_serves_on_port_0_and_stops_on_its_shutdown_signal() {
    use tokio::io::AsyncReadExt;
    let server = server("", Duration::from_secs(60));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        server
            .serve_http(listener, async {
                let _ = stopped.await;
            })
            .await
    });
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
    .to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        addr.port(),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    let _ =
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.to_lowercase().contains("mcp-session-id: "),
        "{response}"
    );
    assert!(
        response.contains(r#""serverInfo":{"name":"witbox""#),
        "{response}"
    );

    // A Host that is not loopback is refused (DNS rebinding).
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let evil = request.replace(
        &format!("Host: 127.0.0.1:{}", addr.port()),
        "Host: evil.example",
    );
    stream.write_all(evil.as_bytes()).await.unwrap();
    let mut response = String::new();
    let _ =
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response)).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("the server did not stop")
        .unwrap()
        .unwrap();
}

mod misuse;

/// `cargo xtask build` compiles the shipped tools and the runner into the
/// user's compile cache, so the first `initialize` after a build does not wait
/// for the 25 MB runner to compile (12-17 s; clients give up at 5-10 s).
#[test]
fn the_first_initialize_after_a_build_answers_at_once() {
    use std::io::{BufRead, BufReader, Write};
    let started = std::time::Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_witbox"))
        .arg("--manifest")
        .arg(root().join("witbox.toml"))
        .arg("mcp")
        .env_remove("WITBOX_CACHE_DIR")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(
        stdin,
        "{}",
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}})
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let elapsed = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["result"]["serverInfo"]["name"], "witbox", "{answer}");
    // A cold compile takes 12-17 s here; a warm start, milliseconds.
    assert!(
        elapsed < Duration::from_secs(1),
        "initialize took {elapsed:?}: the build did not leave the runner compiled"
    );
}

/// `node mcp_client.mjs` from `tests/node`, where `cargo xtask test` runs `npm ci`
/// for the pinned official TypeScript MCP SDK. Without node, or with the modules
/// missing or at another version than the pin, the test fails and says so.
fn node_client() -> PathBuf {
    let dir = root().join("tests/node");
    let install = "run `cargo xtask test`, which installs the pinned TypeScript MCP SDK (npm ci in tests/node)";
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "`node --version` did not run: put Node.js 20 or newer on PATH, then {install}"
    );
    let read = |path: PathBuf| -> Value {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("missing {} ({e}): {install}", path.display()));
        serde_json::from_str(&text).unwrap()
    };
    let pinned =
        read(dir.join("package.json"))["dependencies"]["@modelcontextprotocol/sdk"].clone();
    let installed =
        read(dir.join("node_modules/@modelcontextprotocol/sdk/package.json"))["version"].clone();
    assert_eq!(
        installed, pinned,
        "tests/node/node_modules holds another @modelcontextprotocol/sdk than the pin: {install}"
    );
    dir.join("mcp_client.mjs")
}

/// Runs the TypeScript client with the test cache; returns the JSON object it prints last.
fn node_json(args: &[&str]) -> Value {
    let script = node_client();
    let out = Command::new("node")
        .arg(&script)
        .args(args)
        .env("WITBOX_CACHE_DIR", root().join("target/test-cache"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{} printed no JSON ({e}):\n{stdout}", script.display()))
}

/// `witbox mcp --http 127.0.0.1:0`, killed when dropped (also when a check panics).
struct HttpServer {
    child: std::process::Child,
    url: String,
}

impl HttpServer {
    fn start(manifest: &std::path::Path) -> Self {
        let mut child = witbox_command(manifest)
            .args(["mcp", "--http", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let url = served_url(&mut child);
        Self { child, url }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn check_typescript_sdk_session(seen: &Value, transport: &str) {
    assert_eq!(seen["transport"], transport);
    assert_eq!(seen["server"], "witbox");
    assert_eq!(seen["has_instructions"], true);
    assert_eq!(
        seen["tools"],
        json!([
            "close_session",
            "list_files",
            "quadratic_solve",
            "read_file",
            "reset_session",
            "restore_session",
            "run_python",
            "snapshot_session",
            "write_file"
        ])
    );
    assert_eq!(seen["quadratic_schema"]["required"], json!(["a", "b", "c"]));
    assert_eq!(seen["quadratic_schema"]["additionalProperties"], false);
    // JavaScript has one number type: 1.0 comes back as 1.
    assert_eq!(
        seen["solve"],
        json!({"is_error": false, "text": r#"[{"re":1.0,"im":0.0},{"re":2.0,"im":0.0}]"#,
               "structured": {"result": [{"re": 1, "im": 0}, {"re": 2, "im": 0}]}})
    );

    let sid = seen["python"]["session_id"].as_str().unwrap();
    assert!(sid.starts_with("s-"), "{seen}");
    assert_eq!(
        seen["python"],
        json!({"session_id": sid,
               "first": {"is_error": false, "stdout": "set\n"},
               "second": {"is_error": false, "value": "42",
                          "text": format!("value: 42\n[session_id: {sid}]")},
               "same_session": true})
    );

    // The SDK stops the call (an AbortController signal after 300 ms, then its
    // `timeout` option of 500 ms) with `notifications/cancelled`; the same id runs
    // again at once, restarted from the last completed cell.
    let restarted = |value: &str| {
        json!({"is_error": false, "session_id_kept": true, "value": value,
               "session_restarted": true, "restart_reason": "cancelled", "globals_restored": true,
               "text": format!("value: {value}\n(the Python session restarted because the previous run was cancelled: the globals of the last completed cell were restored)\n[session_id: {sid}]")})
    };
    for (case, error, value) in [
        (
            "abort",
            json!({"name": "McpError", "code": -32001, "data": null,
                   "message": "MCP error -32001: AbortError: This operation was aborted"}),
            "22",
        ),
        (
            "timeout",
            json!({"name": "McpError", "code": -32001, "data": {"timeout": 500},
                   "message": "MCP error -32001: Request timed out"}),
            "(21, 63)",
        ),
    ] {
        let stopped = &seen[case];
        assert_eq!(stopped["rejected"], true, "{case}: {seen}");
        assert_eq!(stopped["error"], error, "{case}: {seen}");
        assert_eq!(stopped["next"], restarted(value), "{case}: {seen}");
        // witbox's own limit is 10 s: the cancel, not the limit, ended the loop.
        let next_ms = stopped["next_ms"].as_u64().unwrap();
        assert!(next_ms < 5000, "{case}: the next run took {next_ms} ms");
    }

    assert_eq!(
        seen["write"],
        json!({"is_error": false, "structured": {"session_id": sid, "path": "in/blob.bin", "size": 256}})
    );
    assert_eq!(
        seen["files"],
        json!({"value": "256", "encoding": "base64", "size": 256, "reversed": true, "round_trip": true})
    );
    assert_eq!(
        seen["close"],
        json!({"is_error": false, "text": format!("session `{sid}` was closed"),
               "after_is_error": true,
               "after": format!("not-found: session `{sid}` was closed (`close_session`): its variables and files are gone; call `run_python` without `session_id` to start a new one")})
    );
    // No response came for a cancelled request, nor anything else unexpected.
    assert_eq!(seen["transport_errors"], json!([]), "{seen}");
}

#[test]
fn the_typescript_sdk_drives_witbox_mcp_over_stdio_and_http() {
    let dir = TempDir::new("mcp-typescript-sdk");
    let manifest = dir.write("witbox.toml", manifest_text(""));
    let witbox = env!("CARGO_BIN_EXE_witbox");
    let manifest_arg = manifest.to_str().unwrap();

    let seen = node_json(&[witbox, manifest_arg]);
    check_typescript_sdk_session(&seen, "stdio");
    assert_eq!(seen["http_session"], Value::Null);

    let server = HttpServer::start(&manifest);
    let seen = node_json(&[witbox, manifest_arg, &server.url]);
    check_typescript_sdk_session(&seen, "streamable-http");
    assert_eq!(seen["protocol"], "2025-11-25");
    assert_eq!(seen["http_session"], true);
    // The SDK's `terminateSession` (DELETE) ended the MCP session.
    assert_eq!(
        seen["after_delete"],
        json!({"status": 404, "body": "Not Found: Session not found"})
    );
}

/// With a cold compile cache, `witbox mcp` answers `initialize` before the
/// tools (here an 18 MB Python tool) and the runner have compiled (they compile
/// in the background), and `tools/list` and `run_python` wait for them instead
/// of failing.
#[test]
fn with_a_cold_cache_initialize_does_not_wait_for_the_tools_or_the_runner() {
    use std::io::{BufRead, BufReader, Write};
    let dir = TempDir::new("mcp-cold");
    let m = dir.write(
        "witbox.toml",
        format!(
            "{}{}",
            entry("text-stats", "text-stats", ""),
            runner_manifest("")
        ),
    );
    let mut child = witbox_command(&m)
        .arg("mcp")
        .env("WITBOX_CACHE_DIR", dir.path().join("cold-cache"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // The log, line by line, with when each line came.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let log = std::thread::spawn(move || {
        stderr
            .lines()
            .map_while(Result::ok)
            .map(|l| (std::time::Instant::now(), l))
            .collect::<Vec<_>>()
    });
    let mut send = |m: Value| writeln!(stdin, "{m}").unwrap();
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}}),
    );
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let initialized = std::time::Instant::now();
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["result"]["serverInfo"]["name"], "witbox", "{answer}");
    let instructions = answer["result"]["instructions"].as_str().unwrap();
    assert!(
        instructions.contains("The tools are still compiling"),
        "{instructions}"
    );
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}));
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let answer: Value = serde_json::from_str(&line).unwrap();
    let names: Vec<&str> = answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"text_stats_analyze"), "{names:?}");
    assert!(names.contains(&"quadratic_solve"), "{names:?}");
    assert!(names.contains(&"run_python"), "{names:?}");
    send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "run_python", "arguments": {"code": "print(1+1)"}}}));
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        answer["result"]["structuredContent"]["stdout"], "2\n",
        "{answer}"
    );
    let _ = child.kill();
    let _ = child.wait();
    let log = log.join().unwrap();
    let when = |prefix: &str| {
        log.iter()
            .find(|(_, l)| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in {log:?}"))
            .0
    };
    when("witbox mcp: compiling text-stats, quadratic in the background");
    // The tools, then the runner, finished compiling after `initialize` was
    // answered (seconds later). That `tools/list` waited for the tools is its
    // answer listing them: when the log line and the answer are read by two
    // threads from two pipes, their times do not order them.
    let tools = when("witbox mcp: the tools: ready in ");
    assert!(tools > initialized, "{log:?}");
    assert!(
        when("witbox mcp: the Python runner: ready in ") > tools,
        "{log:?}"
    );
}

/// The data runner over MCP: `runner: "data"` starts a `d-` session, its
/// plots come back as image content, a session stays on its runner.
#[tokio::test]
async fn run_python_on_the_data_runner_returns_plots_as_images() {
    let with_data = format!(
        "{}[runner.data]\npath = {:?}\nmax-sessions = 2\nwarm-sessions = 0\n[runner.data.policy]\nmemory-mb = 1024\ntimeout-ms = 30000\n",
        manifest_text(""),
        root().join("target/guests/data"),
    );
    let server = compiling(|| {
        let manifest = Manifest::parse(&with_data, &root()).unwrap();
        Server::load(&manifest, options(), &Default::default()).unwrap()
    });
    let mut client = Client::connect(&server).await;
    let instructions = client.init["result"]["instructions"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        instructions.contains("numpy's default integer is int32"),
        "{instructions}"
    );
    let listed = client.request("tools/list", json!({})).await;
    let run = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "run_python")
        .unwrap()
        .clone();
    assert_eq!(
        run["inputSchema"]["properties"]["runner"]["enum"],
        json!(["python", "data"])
    );

    let result = client
        .call(
            "run_python",
            json!({"runner": "data", "code": "import matplotlib.pyplot as plt\nplt.plot([1, 2], [3, 4])\nplt.savefig('p.png')\nlen(plt.get_fignums())"}),
        )
        .await;
    assert_eq!(result["isError"], false, "{result}");
    let id = result["structuredContent"]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(id.starts_with("d-"), "{id}");
    assert_eq!(
        result["structuredContent"]["images"],
        json!([{"path": "/p.png"}])
    );
    let content = result["content"].as_array().unwrap();
    assert_eq!(content[1]["type"], "image");
    assert_eq!(content[1]["mimeType"], "image/png");
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode(content[1]["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));

    // The session keeps its runner: no `runner` needed, and the other one is refused.
    let again = client
        .call(
            "run_python",
            json!({"session_id": id, "code": "import sys; sys.version_info[:2]"}),
        )
        .await;
    assert_eq!(again["structuredContent"]["value"], "(3, 15)");
    let wrong = client
        .call(
            "run_python",
            json!({"session_id": id, "runner": "python", "code": "1"}),
        )
        .await;
    assert_eq!(
        text(&wrong),
        format!(
            "invalid-arguments: session `{id}` is the data runner's: pass `runner: \"data\"`, or leave `session_id` out to start a new session on `python`"
        )
    );
    let files = client
        .call("list_files", json!({"session_id": id, "path": "/"}))
        .await;
    assert!(text(&files).contains("p.png"), "{}", text(&files));
    // The Python runner still answers, in its own session.
    let plain = client
        .call(
            "run_python",
            json!({"code": "import sys; sys.version_info[:2]"}),
        )
        .await;
    assert_eq!(plain["structuredContent"]["value"], "(3, 14)");
}
