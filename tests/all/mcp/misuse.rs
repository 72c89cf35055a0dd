//! MCP misuse gets the right answer: bad lines get JSON-RPC errors (not
//! silence), and a cancel touches only the sender's own sessions.

use super::{Client, server, text};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use witbox::mcp::MAX_MESSAGE_BYTES;

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

    // A's own cancel stops its own run at once and closes the session the run
    // was in (a new one here, so that the test sees when the run has started).
    a.next += 1;
    let request = a.next;
    a.send(
        json!({"jsonrpc": "2.0", "id": request, "method": "tools/call",
                  "params": {"name": "run_python", "arguments": {"code": "while True: pass"}}}),
    )
    .await;
    let started = Instant::now();
    while sessions.len() != 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the run never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cancel(&mut a, request).await;
    let cancelled = Instant::now();
    while sessions.len() != 1 {
        assert!(
            cancelled.elapsed() < Duration::from_secs(1),
            "the cancelled run's session stayed open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kept = a
        .call("run_python", json!({"code": "secret", "session_id": id}))
        .await;
    assert_eq!(kept["structuredContent"]["value"], "41", "{kept}");
}
