//! MCP misuse gets the right answer: bad lines and bodies get JSON-RPC errors
//! (not silence), a cancel touches only the sender's own sessions, a client that
//! goes away over HTTP has its calls stopped, one client cannot take every
//! session slot, and HTTP is served only on loopback.

use super::{Client, manifest_text, server, text};
use crate::support::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use witbox::mcp::{MAX_MESSAGE_BYTES, Server};
use witbox::{Manifest, Sessions};

impl Client {
    async fn send_raw(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }

    /// The next message the server sends, whatever its id.
    async fn message(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(30), self.read.next_line())
            .await
            .expect("no answer within 30 s")
            .unwrap()
            .expect("the server closed the stream");
        serde_json::from_str(&line).unwrap()
    }
}

fn parse_error(message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": message}})
}

const TOO_LARGE: &str =
    "parse error: the message is over the limit of 8388608 bytes (8 MiB) and was not read";

#[test]
fn the_cap_is_8_mib() {
    assert_eq!(MAX_MESSAGE_BYTES, 8 << 20);
}

#[tokio::test]
async fn unreadable_lines_get_json_rpc_errors_and_the_server_reads_on() {
    let server = server("", Duration::from_secs(60));
    let mut client = Client::connect(&server).await;

    client.send_raw(b"{not json\n").await;
    assert_eq!(
        client.message().await,
        parse_error(
            "parse error: the message is not valid JSON: key must be a string at line 1 column 2"
        )
    );

    client
        .send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\",\"x\":\"\xff\xfe\"}\n")
        .await;
    assert_eq!(
        client.message().await,
        parse_error(
            "parse error: the message is not valid UTF-8 (the bytes after the first 45 are not)"
        )
    );

    // One byte over the cap: refused unread (the rest of the line is skipped).
    let mut long = vec![b' '; MAX_MESSAGE_BYTES + 1];
    long.push(b'\n');
    client.send_raw(&long).await;
    assert_eq!(client.message().await, parse_error(TOO_LARGE));
    // A line without an end is refused as soon as it passes the cap, and its
    // tail up to the next newline is skipped.
    client.send_raw(&vec![b'x'; MAX_MESSAGE_BYTES + 10]).await;
    assert_eq!(client.message().await, parse_error(TOO_LARGE));
    client.send_raw(b"still the same line\n").await;

    // JSON, but no JSON-RPC message: answered with its id.
    client.send(json!({"jsonrpc": "2.0", "id": 7})).await;
    let invalid = client.message().await;
    assert_eq!(invalid["id"], 7, "{invalid}");
    assert_eq!(invalid["error"]["code"], -32600, "{invalid}");
    assert!(
        invalid["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid request: the message is JSON but not an MCP request: "),
        "{invalid}"
    );
    // A `tools/call` without a name: its params are wrong, the method is not missing.
    let nameless = client.request("tools/call", json!({"arguments": {}})).await;
    assert_eq!(
        nameless["error"],
        json!({"code": -32602, "message": "invalid params for `tools/call`: missing field `name`"})
    );
    let unknown = client.request("tools/rm_rf", json!({})).await;
    assert_eq!(
        unknown["error"],
        json!({"code": -32601, "message": "method not found: `tools/rm_rf`"})
    );

    // A notification is never answered, even one the server cannot read.
    client
        .send(json!({"jsonrpc": "2.0", "method": "notifications/no_such_thing", "params": 5}))
        .await;
    let pong = client.request("ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");

    // After all that, a tool call works, and a 4 MB string argument still gets
    // the tool's own error (it is under the cap).
    let ok = client
        .call("quadratic_solve", json!({"a": 1, "b": -3, "c": 2}))
        .await;
    assert_eq!(ok["isError"], false, "{ok}");
    let big = client
        .call(
            "quadratic_solve",
            json!({"a": "9".repeat(4_000_000), "b": 0, "c": 0}),
        )
        .await;
    assert!(
        text(&big).contains("got a string of 4000000 bytes"),
        "{}",
        text(&big)
    );
}

#[tokio::test]
async fn tools_call_with_arguments_that_are_not_an_object_is_invalid_params() {
    let server = server("", Duration::from_secs(60));
    let mut client = Client::connect(&server).await;
    for (arguments, got) in [
        (json!("a=1"), "the string \"a=1\""),
        (json!([1, -3, 2]), "an array of 3 items"),
        (json!(42), "the number 42"),
        (json!(true), "the boolean true"),
    ] {
        let response = client
            .request(
                "tools/call",
                json!({"name": "quadratic_solve", "arguments": arguments}),
            )
            .await;
        let id = client.next;
        assert_eq!(
            response,
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": format!(
                "invalid params: `arguments` of `tools/call` must be an object of the tool's named arguments, got {got}"
            )}})
        );
    }
    // `null` is no arguments, as rmcp reads it: the tool says what is missing.
    let null = client.call("quadratic_solve", json!(null)).await;
    assert_eq!(
        text(&null),
        "invalid-arguments: invalid arguments for `quadratic_solve`: missing required argument `a`"
    );
}

/// Sends `cancelled` for request `id` of `client`.
async fn cancel(client: &mut Client, id: u64) {
    client
        .send(
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                     "params": {"requestId": id, "reason": "test"}}),
        )
        .await;
}

#[tokio::test]
async fn a_cancel_touches_only_the_senders_own_sessions() {
    let server = server("timeout-ms = 60000", Duration::from_secs(60));
    let sessions = server.sessions().unwrap().clone();
    let (mut a, mut b) = (
        Client::connect(&server).await,
        Client::connect(&server).await,
    );
    let first = a.call("run_python", json!({"code": "secret = 41"})).await;
    let id = first["structuredContent"]["session_id"]
        .as_str()
        .unwrap()
        .to_string();

    // B calls with A's session id and cancels each call at once, many times, so
    // that the cancel often lands before the call is answered.
    for _ in 0..64 {
        b.next += 1;
        let request = b.next;
        b.send(json!({"jsonrpc": "2.0", "id": request, "method": "tools/call",
                      "params": {"name": "run_python", "arguments": {"code": "del secret", "session_id": id}}}))
            .await;
        cancel(&mut b, request).await;
    }
    // Every call before the ping has been handled (or dropped as cancelled).
    let pong = b.request("ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");

    let again = a
        .call(
            "run_python",
            json!({"code": "secret + 1", "session_id": id}),
        )
        .await;
    assert_eq!(again["isError"], false, "{again}");
    assert_eq!(again["structuredContent"]["value"], "42");
    assert_eq!(sessions.len(), 1);

    // A's own cancel stops its own run at once; the session keeps its id, and
    // its next run starts it again and says why.
    let mine = a.call("run_python", json!({"code": "y = 1"})).await;
    let mine = mine["structuredContent"]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    a.next += 1;
    let request = a.next;
    a.send(json!({"jsonrpc": "2.0", "id": request, "method": "tools/call",
                  "params": {"name": "run_python", "arguments": {"code": "import time\nwhile True: time.sleep(0.001)", "session_id": mine}}}))
    .await;
    // Long enough for the run to be under way.
    tokio::time::sleep(Duration::from_millis(300)).await;
    cancel(&mut a, request).await;
    let cancelled = Instant::now();
    let next = a
        .call(
            "run_python",
            json!({"code": "print('again')\ny", "session_id": mine}),
        )
        .await;
    // The run had 60 s: the next one got the session at once, not after them.
    assert!(
        cancelled.elapsed() < Duration::from_secs(20),
        "the cancel did not stop the run"
    );
    let next = &next["structuredContent"];
    assert_eq!(next["stdout"], "again\n", "{next}");
    assert_eq!(next["session_restarted"], true, "{next}");
    assert_eq!(next["restart_reason"], "cancelled", "{next}");
    // The checkpoint of the last completed cell is back.
    assert_eq!(next["globals_restored"], true, "{next}");
    assert_eq!(next["value"], "1", "{next}");
    assert_eq!(next["session_id"], mine.as_str());
    assert_eq!(sessions.len(), 2);
    // The one after that is an ordinary run in the same session.
    let after = a
        .call(
            "run_python",
            json!({"code": "y = 2\ny", "session_id": mine}),
        )
        .await;
    assert_eq!(after["structuredContent"]["value"], "2", "{after}");
    assert_eq!(after["structuredContent"]["session_restarted"], false);
    let kept = a
        .call("run_python", json!({"code": "secret", "session_id": id}))
        .await;
    assert_eq!(kept["structuredContent"]["value"], "41", "{kept}");
}

fn quota_server() -> Arc<Server> {
    compiling(|| {
        let text = manifest_text("").replace(
            "[runner]\n",
            // No warm instances: each creation waits for one, so concurrent
            // calls overlap in it.
            "[runner]\nmax-sessions = 8\nmax-sessions-per-client = 2\nsession-ttl-s = 60\nwarm-sessions = 0\n",
        );
        let manifest = Manifest::parse(&text, &root()).unwrap();
        Server::load(&manifest, options(), &Default::default()).unwrap()
    })
}

#[tokio::test]
async fn one_client_cannot_take_every_session_slot() {
    let server = quota_server();
    let (mut a, mut b) = (
        Client::connect(&server).await,
        Client::connect(&server).await,
    );
    let mut ids = Vec::new();
    // A strict-mode model always sends `session_id`: "" starts a new session.
    for session_id in [json!(null), json!("")] {
        let r = a
            .call("run_python", json!({"code": "1", "session_id": session_id}))
            .await;
        assert_eq!(r["isError"], false, "{r}");
        ids.push(
            r["structuredContent"]["session_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_ne!(ids[0], ids[1]);
    // The second is used again, so the first is the one idle longest.
    let r = a
        .call("run_python", json!({"code": "2", "session_id": ids[1]}))
        .await;
    assert_eq!(r["structuredContent"]["value"], "2", "{r}");
    let third = a.call("run_python", json!({"code": "1"})).await;
    assert_eq!(third["isError"], true);
    let said = text(&third);
    let (head, tail) = said.split_once(" s), ").unwrap_or_else(|| panic!("{said}"));
    assert!(
        head.starts_with(&format!(
            "denied: too many sessions for this client: it has 2 open and its quota is 2 (`max-sessions-per-client`, so that no client takes all 8 of `max-sessions`); close the one idle longest, `{}` (idle ",
            ids[0]
        )),
        "{said}"
    );
    assert_eq!(
        tail,
        "with `close_session`, or pass its `session_id` to reuse it (`reset_session` clears it)"
    );
    // The model closes it, and has room again.
    let closed = a.call("close_session", json!({"session_id": ids[0]})).await;
    assert_eq!(text(&closed), format!("session `{}` was closed", ids[0]));
    assert_eq!(closed["structuredContent"]["closed"], true);
    let again = a.call("close_session", json!({"session_id": ids[0]})).await;
    assert_eq!(
        text(&again),
        format!(
            "not-found: session `{}` was closed (`close_session`): its variables and files are gone; call `run_python` without `session_id` to start a new one",
            ids[0]
        )
    );
    for (args, said) in [
        (
            json!({"session_id": ""}),
            "invalid-arguments: `session_id` (a string) is required",
        ),
        (
            json!({}),
            "invalid-arguments: `session_id` (a string) is required",
        ),
        (
            json!({"session_id": ids[1], "force": true}),
            "invalid-arguments: `close_session` has no argument `force` (it takes `session_id`)",
        ),
    ] {
        let r = a.call("close_session", args).await;
        assert_eq!(text(&r), said);
    }
    let r = a.call("run_python", json!({"code": "1"})).await;
    assert_eq!(r["isError"], false, "{r}");
    let replaced = r["structuredContent"]["session_id"].as_str().unwrap();
    let closed = a
        .call("close_session", json!({"session_id": replaced}))
        .await;
    assert_eq!(closed["isError"], false, "{closed}");
    let r = a.call("run_python", json!({"code": "1"})).await;
    assert_eq!(r["isError"], false, "{r}");
    // Another client cannot close A's.
    let theirs = b.call("close_session", json!({"session_id": ids[1]})).await;
    assert_eq!(
        text(&theirs),
        format!(
            "not-found: unknown session `{}`: this client did not create it; call `run_python` without `session_id` to start one",
            ids[1]
        )
    );
    // Other clients still get theirs.
    let other = b.call("run_python", json!({"code": "1"})).await;
    assert_eq!(other["isError"], false, "{other}");
    assert_eq!(server.sessions().unwrap().len(), 3);

    // Calls made at once are counted as they start: 2 of 4 get a session.
    let mut c = Client::connect(&server).await;
    let first = c.next + 1;
    for _ in 0..4 {
        c.next += 1;
        let id = c.next;
        c.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": "run_python", "arguments": {"code": "1"}}}))
            .await;
    }
    let mut denied = 0;
    for _ in 0..4 {
        let answer = c.message().await;
        let id = answer["id"].as_u64().unwrap();
        assert!((first..first + 4).contains(&id), "{answer}");
        if answer["result"]["isError"] == true {
            assert!(
                text(&answer["result"]).starts_with(
                    "denied: too many sessions for this client: it has 2 open and its quota is 2"
                ),
                "{answer}"
            );
            denied += 1;
        }
    }
    assert_eq!(denied, 2);
    assert_eq!(server.sessions().unwrap().len(), 5);
}

#[test]
fn the_session_quota_is_checked_and_defaults_to_a_quarter() {
    let parse = |runner: &str| {
        let text = manifest_text("").replace("[runner]\n", &format!("[runner]\n{runner}\n"));
        Manifest::parse(&text, &root())
    };
    let m = parse("").unwrap();
    assert_eq!(m.runner.max_sessions, 64);
    assert_eq!(m.runner.sessions_per_client(), 16);
    assert_eq!(
        parse("max-sessions = 2")
            .unwrap()
            .runner
            .sessions_per_client(),
        1
    );
    for bad in [
        "max-sessions-per-client = 0",
        "max-sessions = 8\nmax-sessions-per-client = 9",
    ] {
        let e = parse(bad).unwrap_err();
        let n = if bad.ends_with('0') { 0 } else { 9 };
        let max = if n == 0 { 64 } else { 8 };
        assert_eq!(
            format!("{e:#}"),
            format!(
                "runner: `max-sessions-per-client` is {n}; it must be between 1 and `max-sessions` ({max})"
            )
        );
    }
}

const REFUSED: &str = "refusing to serve on {addr} without tokens: it is not a loopback address, so anyone who can reach it could run code in its sandboxes; listen on 127.0.0.1 or [::1], or give `witbox serve` bearer tokens (`--tokens FILE` or `WITBOX_TOKENS`)";

#[test]
fn http_is_served_only_on_loopback() {
    for addr in [
        "0.0.0.0:8765",
        "192.168.1.5:80",
        "[::]:80",
        "[2001:db8::1]:80",
    ] {
        let addr: SocketAddr = addr.parse().unwrap();
        let e = witbox::mcp::require_loopback(addr).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            REFUSED.replace("{addr}", &addr.to_string())
        );
    }
    for addr in [
        "127.0.0.1:0",
        "127.5.6.7:80",
        "[::1]:80",
        "[::ffff:127.0.0.1]:80",
    ] {
        witbox::mcp::require_loopback(addr.parse().unwrap()).unwrap();
    }

    // The CLI refuses before it loads anything or opens a port.
    let dir = TempDir::new("mcp-public");
    let manifest = dir.write("witbox.toml", manifest_text(""));
    let mut child = witbox_command(&manifest)
        .args(["mcp", "--http", "0.0.0.0:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A server that did start would serve forever: fail instead of hanging.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("`witbox mcp --http 0.0.0.0:0` started serving");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!("error: {}\n", REFUSED.replace("{addr}", "0.0.0.0:0"))
    );
}

/// A streamable HTTP server on 127.0.0.1 port 0; it stops when the test ends.
async fn http_server(server: Arc<Server>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve_http(listener, std::future::pending()).await });
    addr
}

/// The head of a `POST /mcp` with `length` bytes of body (chunked when `None`).
fn post_head(addr: SocketAddr, session: Option<&str>, length: Option<usize>) -> String {
    let mut head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-06-18\r\nConnection: close\r\n"
    );
    if let Some(session) = session {
        head.push_str(&format!("Mcp-Session-Id: {session}\r\n"));
    }
    match length {
        Some(n) => head.push_str(&format!("Content-Length: {n}\r\n\r\n")),
        None => head.push_str("Transfer-Encoding: chunked\r\n\r\n"),
    }
    head
}

/// Reads a whole response: its status, its headers (lower-case names), its body.
async fn read_response(stream: &mut TcpStream) -> (u16, Vec<(String, String)>, String) {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("no response within 30 s")
        .unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap_or_default()
        .split(' ')
        .nth(1)
        .unwrap_or("0");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers.contains(&("transfer-encoding".into(), "chunked".into()));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status.parse().unwrap(), headers, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

/// One request on its own connection; returns the status, the session header and
/// the body (for an SSE response, the JSON of its last `data:` line).
async fn post(
    addr: SocketAddr,
    session: Option<&str>,
    body: &[u8],
) -> (u16, Option<String>, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(post_head(addr, session, Some(body.len())).as_bytes())
        .await
        .unwrap();
    stream.write_all(body).await.unwrap();
    let (status, headers, body) = read_response(&mut stream).await;
    let session = headers
        .iter()
        .find(|(k, _)| k == "mcp-session-id")
        .map(|(_, v)| v.clone());
    let json = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .rfind(|d| !d.trim().is_empty())
        .unwrap_or(&body);
    let value = serde_json::from_str(json.trim()).unwrap_or(Value::String(body.clone()));
    (status, session, value)
}

/// Initializes an MCP session over HTTP; returns its `Mcp-Session-Id`.
async fn http_session(addr: SocketAddr) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
    let (status, session, body) = post(addr, None, init.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    let session = session.expect("an Mcp-Session-Id");
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, body) = post(addr, Some(&session), note.to_string().as_bytes()).await;
    assert_eq!(status, 202, "{body}");
    session
}

#[tokio::test]
async fn http_bodies_over_the_cap_or_unreadable_get_json_rpc_errors() {
    let addr = http_server(server("", Duration::from_secs(60))).await;
    let too_large = parse_error(TOO_LARGE);

    // A declared length over the cap is refused from the header; no body is sent.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(post_head(addr, None, Some(100 << 20)).as_bytes())
        .await
        .unwrap();
    let (status, headers, body) = read_response(&mut stream).await;
    assert_eq!(status, 413, "{body}");
    assert!(headers.contains(&("content-type".into(), "application/json".into())));
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), too_large);

    // A chunked body is read up to the cap and no further.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(post_head(addr, None, None).as_bytes())
        .await
        .unwrap();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..8 {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        stream.write_all(&chunk).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
    }
    stream.write_all(b"1\r\n \r\n").await.unwrap();
    let (status, _, body) = read_response(&mut stream).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), too_large);

    let (status, _, body) = post(addr, None, b"{not json").await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        parse_error(
            "parse error: the message is not valid JSON: key must be a string at line 1 column 2"
        )
    );
    let (status, _, body) = post(addr, None, b"{\"id\": \"\xc3\"}").await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        parse_error(
            "parse error: the message is not valid UTF-8 (the bytes after the first 8 are not)"
        )
    );

    let session = http_session(addr).await;
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                      "params": {"name": "quadratic_solve", "arguments": [1, -3, 2]}});
    let (status, _, body) = post(addr, Some(&session), call.to_string().as_bytes()).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"jsonrpc": "2.0", "id": 5, "error": {"code": -32602, "message":
            "invalid params: `arguments` of `tools/call` must be an object of the tool's named arguments, got an array of 3 items"}})
    );

    // Under the cap, what the stdio tests send still reaches the tools.
    let call = json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
                      "params": {"name": "run_python", "arguments": {"code": "#".repeat(2 << 20)}}});
    let (status, _, body) = post(addr, Some(&session), call.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["content"][0]["text"],
        "invalid-arguments: the code is 2097152 bytes; the limit is 1048576"
    );
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "quadratic_solve", "arguments": {"a": "9".repeat(4_000_000), "b": 0, "c": 0}}});
    let (status, _, body) = post(addr, Some(&session), call.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["isError"], true, "{body}");
}

/// Starts `while True: pass` in a new session over HTTP; returns the connection
/// that waits for its answer once the run has started.
async fn start_endless_run(addr: SocketAddr, session: &str, sessions: &Sessions) -> TcpStream {
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "run_python", "arguments": {"code": "while True: pass"}}})
    .to_string();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(post_head(addr, Some(session), Some(call.len())).as_bytes())
        .await
        .unwrap();
    stream.write_all(call.as_bytes()).await.unwrap();
    let started = Instant::now();
    while sessions.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the run never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stream
}

async fn assert_closed_within_a_second(sessions: &Sessions, what: &str) {
    let gone = Instant::now();
    while !sessions.is_empty() {
        assert!(
            gone.elapsed() < Duration::from_secs(1),
            "{what}: the run went on"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// On several threads, as `witbox mcp --http` runs: on one thread, a spinning
// guest holds it between epoch ticks and the I/O driver that sees the client
// go is polled only every 61 of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_client_whose_connection_closes_mid_call_has_it_stopped() {
    let server = server("timeout-ms = 60000", Duration::from_secs(60));
    let sessions = server.sessions().unwrap().clone();
    let addr = http_server(server).await;
    let session = http_session(addr).await;
    let stream = start_endless_run(addr, &session, &sessions).await;
    drop(stream);
    // The run would take 60 s; it stops at the next epoch tick.
    assert_closed_within_a_second(&sessions, "the connection closed").await;
    // The MCP session itself lives on.
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "run_python", "arguments": {"code": "print('alive')"}}});
    let (status, _, body) = post(addr, Some(&session), call.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["structuredContent"]["stdout"], "alive\n",
        "{body}"
    );
}

// On several threads, as `witbox mcp --http` runs: on one thread, a spinning
// guest holds it between epoch ticks and the I/O driver that sees the client
// go is polled only every 61 of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_client_that_deletes_its_session_mid_call_has_it_stopped() {
    let server = server("timeout-ms = 60000", Duration::from_secs(60));
    let sessions = server.sessions().unwrap().clone();
    let addr = http_server(server).await;
    let session = http_session(addr).await;
    // The call's connection stays open; the DELETE comes on another.
    let _waiting = start_endless_run(addr, &session, &sessions).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("DELETE /mcp HTTP/1.1\r\nHost: {addr}\r\nMcp-Session-Id: {session}\r\nMCP-Protocol-Version: 2025-06-18\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let (status, _, body) = read_response(&mut stream).await;
    assert_eq!(status, 202, "{body}");
    assert_closed_within_a_second(&sessions, "the session was deleted").await;
    let ping = json!({"jsonrpc": "2.0", "id": 4, "method": "ping"});
    let (status, _, _) = post(addr, Some(&session), ping.to_string().as_bytes()).await;
    assert_eq!(status, 404);
}
