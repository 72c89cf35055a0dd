//! `witbox serve`'s REST API (`/v1/`), through the real binary on 127.0.0.1 port
//! 0: sessions, cells, files, snapshots, tools, header routing, server-sent
//! events, and with tokens, sessions that are their principal's.

use crate::serve::{ALICE, BOB, Served, sample, scrape};
use crate::support::*;
use serde_json::{Value, json};

const OPS: &str = "ops-0123456789abcdef0123456789abcdef000";

impl Served {
    /// A JSON request to the REST API as `token`: (status, head, JSON body).
    fn v1(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, Value) {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(b) = &bearer {
            headers.push(("Authorization", b));
        }
        headers.extend_from_slice(extra);
        let (status, head, body) = self.request(method, path, &headers, body);
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body:?}"));
        (status, head, json)
    }

    /// Runs `code` in session `id` as `token`; the result.
    fn run(&self, token: Option<&str>, id: &str, code: &str) -> Value {
        let path = format!("/v1/sessions/{id}/run");
        let (status, _, body) = self.v1(
            token,
            "POST",
            &path,
            &[],
            &json!({"code": code}).to_string(),
        );
        assert_eq!(status, 200, "{body}");
        body
    }
}

#[test]
fn rest_runs_cells_files_snapshots_and_tools_in_sessions() {
    let dir = TempDir::new("rest");
    let manifest = dir.write("witbox.toml", runner_manifest("timeout-ms = 2000"));
    let server = Served::start(&manifest, &[]);

    // The document describes every path the server routes.
    let (status, _, doc) = server.v1(None, "GET", "/v1/openapi.json", &[], "");
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 14, "{paths:?}");
    for (path, ops) in paths {
        let concrete = path
            .replace("{id}", "s-00000000000000000000000000000000")
            .replace("{path}", "a.txt")
            .replace("{name}", "quadratic_solve");
        for method in ops
            .as_object()
            .unwrap()
            .keys()
            .filter(|m| *m != "parameters")
        {
            let method = method.to_uppercase();
            let (_, _, body) =
                server.request(&method, &concrete, &[("X-Witbox-Session", "s-1")], "{}");
            assert!(!body.contains("no endpoint"), "{method} {concrete}: {body}");
        }
    }

    // A session, a cell, and the next cell sees its globals.
    let (status, _, created) = server.v1(None, "POST", "/v1/sessions", &[], "");
    assert_eq!(status, 201, "{created}");
    let id = created["session_id"].as_str().unwrap().to_string();
    let first = server.run(None, &id, "x = 41\nx");
    assert_eq!(first["value"], "41");
    assert_eq!(first["error"], Value::Null);
    let second = server.run(None, &id, "print(x + 1)");
    assert_eq!(second["stdout"], "42\n");
    let failed = server.run(None, &id, "1/0");
    assert_eq!(failed["error"]["type"], "ZeroDivisionError");
    assert_eq!(failed["error"]["line"], 1);
    // This one, and the one the walk over the document made.
    let (_, _, listed) = server.v1(None, "GET", "/v1/sessions", &[], "");
    let listed = listed["sessions"].as_array().unwrap();
    assert!(
        listed.len() == 2 && listed.contains(&json!(id)),
        "{listed:?}"
    );

    // The session named by a header, as a header-routing proxy sends it.
    for header in ["X-Witbox-Session", "X-Sandbox-ID"] {
        let body = json!({"code": "x += 1\nx"}).to_string();
        let (status, _, ran) = server.v1(None, "POST", "/v1/session/run", &[(header, &id)], &body);
        assert_eq!(status, 200, "{ran}");
        assert!(ran["value"] == "42" || ran["value"] == "43", "{ran}");
    }
    let other = "s-11111111111111111111111111111111";
    let (status, _, refused) = server.v1(
        None,
        "POST",
        &format!("/v1/sessions/{id}/run"),
        &[("X-Witbox-Session", other)],
        r#"{"code": "1"}"#,
    );
    assert_eq!(status, 400);
    assert_eq!(
        refused["error"]["message"],
        format!("the path names session `{id}` and the header `{other}`: name one")
    );
    let (status, _, refused) = server.v1(None, "POST", "/v1/session/run", &[], r#"{"code": "1"}"#);
    assert_eq!(status, 400);
    assert_eq!(
        refused["error"]["message"],
        "`/v1/session/...` takes the session from an `X-Witbox-Session` (or `X-Sandbox-ID`) header, and there is none"
    );

    // Bad requests get a named error, and the server serves the next one.
    let run_path = format!("/v1/sessions/{id}/run");
    for (body, message) in [
        (
            "not json",
            "the body is not JSON: expected ident at line 1 column 2",
        ),
        (
            r#"{"cell": "1"}"#,
            r#"the body is `{"code": "..."}`, with the cell as a string"#,
        ),
        ("[1]", r#"the body is `{"code": "..."}`, a JSON object"#),
    ] {
        let (status, _, refused) = server.v1(None, "POST", &run_path, &[], body);
        assert_eq!(
            (status, refused["error"]["message"].as_str()),
            (400, Some(message))
        );
    }
    let (status, _, refused) = server.v1(None, "GET", "/v1/sessions/nope/run", &[], "");
    assert_eq!(status, 404, "{refused}");

    // Files in and out, and a listing.
    let file = format!("/v1/sessions/{id}/files/data/in.bin");
    let bytes: Vec<u8> = (0..=255).collect();
    let (status, _, _) = server.request_bytes("PUT", &file, &[], &bytes);
    assert_eq!(status, 200);
    let (status, head, back) = server.request_bytes("GET", &file, &[], b"");
    assert_eq!((status, back), (200, bytes.clone()));
    assert!(
        head.contains("content-type: application/octet-stream"),
        "{head}"
    );
    let read = server.run(None, &id, "len(open('/data/in.bin', 'rb').read())");
    assert_eq!(read["value"], "256");
    let (status, _, listing) = server.v1(
        None,
        "GET",
        &format!("/v1/sessions/{id}/list/data"),
        &[],
        "",
    );
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["entries"][0]["name"], "in.bin", "{listing}");
    let (status, _, missing) = server.v1(
        None,
        "GET",
        &format!("/v1/sessions/{id}/files/none.txt"),
        &[],
        "",
    );
    assert_eq!(status, 404, "{missing}");

    // A snapshot restores as a new session with the same globals and files.
    let (status, _, snapshot) =
        server.request_bytes("GET", &format!("/v1/sessions/{id}/snapshot"), &[], b"");
    assert_eq!(status, 200);
    let (status, _, restored) = server.request_bytes(
        "POST",
        "/v1/sessions/restore",
        &[("Content-Type", "application/octet-stream")],
        &snapshot,
    );
    assert_eq!(status, 201);
    let restored: Value = serde_json::from_slice(&restored).unwrap();
    let copy = restored["session_id"].as_str().unwrap();
    assert_ne!(copy, id);
    let again = server.run(None, copy, "(x, len(open('/data/in.bin', 'rb').read()))");
    assert_eq!(again["value"], "(43, 256)");
    let (status, _, refused) = server.request_bytes("POST", "/v1/sessions/restore", &[], b"junk");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&refused));

    // Reset forgets the globals; close ends the session.
    let (status, _, _) = server.v1(None, "POST", &format!("/v1/sessions/{id}/reset"), &[], "");
    assert_eq!(status, 200);
    let gone = server.run(None, &id, "x");
    assert_eq!(gone["error"]["type"], "NameError");
    let (status, _, closed) = server.v1(None, "DELETE", &format!("/v1/sessions/{id}"), &[], "");
    assert_eq!((status, closed["closed"].as_bool()), (200, Some(true)));
    let (status, _, refused) = server.v1(None, "POST", &run_path, &[], r#"{"code": "1"}"#);
    assert_eq!(status, 404);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("no session `{id}`: it was closed")),
        "{refused}"
    );

    // Tools: listed with their schema, called with JSON arguments.
    let (_, _, tools) = server.v1(None, "GET", "/v1/tools", &[], "");
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"quadratic_solve"), "{tools}");
    let (status, _, solved) = server.v1(
        None,
        "POST",
        "/v1/tools/quadratic_solve",
        &[],
        r#"{"a": 1, "b": -3, "c": 2}"#,
    );
    assert_eq!(status, 200, "{solved}");
    assert!(solved["result"].to_string().contains('2'), "{solved}");
    let (status, _, refused) = server.v1(
        None,
        "POST",
        "/v1/tools/quadratic_solve",
        &[],
        r#"{"a": "x"}"#,
    );
    assert_eq!(status, 400, "{refused}");
    let (status, _, refused) = server.v1(None, "POST", "/v1/tools/rm_rf", &[], "{}");
    assert_eq!(status, 404);
    assert_eq!(
        refused["error"]["message"],
        "no tool `rm_rf`: `GET /v1/tools` lists them"
    );
}

#[test]
fn rest_runs_stream_as_server_sent_events() {
    let dir = TempDir::new("rest-sse");
    let manifest = dir.write("witbox.toml", runner_manifest("timeout-ms = 2000"));
    let server = Served::start(&manifest, &[]);
    let (_, _, created) = server.v1(None, "POST", "/v1/sessions", &[], "");
    let id = created["session_id"].as_str().unwrap();
    let code = json!({"code": "import sys\nprint('one')\nprint('two', file=sys.stderr)\n7 * 6"});
    let (status, head, body) = server.request(
        "POST",
        &format!("/v1/sessions/{id}/run"),
        &[
            ("Accept", "text/event-stream"),
            ("Content-Type", "application/json"),
        ],
        &code.to_string(),
    );
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    let events: Vec<(&str, Value)> = body
        .split("event: ")
        .skip(1)
        .map(|e| {
            let (name, rest) = e.split_once('\n').unwrap();
            let data = rest.strip_prefix("data: ").unwrap().lines().next().unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect();
    // The output as it was written (`print` writes its text and its end apart).
    let written = |stream: &str| -> String {
        events
            .iter()
            .filter(|(n, d)| *n == "output" && d["stream"] == stream)
            .map(|(_, d)| d["text"].as_str().unwrap())
            .collect()
    };
    assert_eq!(written("stdout"), "one\n", "{body}");
    assert_eq!(written("stderr"), "two\n", "{body}");
    let (last, result) = events.last().unwrap();
    assert_eq!(*last, "result", "{body}");
    assert_eq!(result["value"], "42");
    assert_eq!(result["stdout"], "one\n");
}

#[test]
fn rest_sessions_are_their_principals() {
    let dir = TempDir::new("rest-tokens");
    let manifest = dir.write("witbox.toml", runner_manifest("timeout-ms = 2000"));
    let tokens = dir.write("tokens", format!("{ALICE} alice\n{BOB} bob\n"));
    let server = Served::start(
        &manifest,
        &[
            "--tokens",
            tokens.to_str().unwrap(),
            "--sessions-per-principal",
            "1",
            "--ops-token",
            OPS,
        ],
    );
    let (status, head, refused) = server.v1(None, "POST", "/v1/sessions", &[], "");
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    assert_eq!(
        refused,
        json!({"error": {"kind": "unauthorized", "message": "this server needs a bearer token: send `Authorization: Bearer TOKEN` with a token from its tokens file"}})
    );
    let (status, _, _) = server.v1(Some(&"x".repeat(40)), "GET", "/v1/sessions", &[], "");
    assert_eq!(status, 401);

    let (status, _, created) = server.v1(Some(ALICE), "POST", "/v1/sessions", &[], "");
    assert_eq!(status, 201, "{created}");
    let id = created["session_id"].as_str().unwrap();
    server.run(Some(ALICE), id, "secret = 'alice only'");

    // Bob gets what a session that does not exist gets, word for word.
    let never = "s-22222222222222222222222222222222";
    let body = json!({"code": "secret"}).to_string();
    let (status, _, theirs) = server.v1(
        Some(BOB),
        "POST",
        &format!("/v1/sessions/{id}/run"),
        &[],
        &body,
    );
    let (_, _, nobody) = server.v1(
        Some(BOB),
        "POST",
        &format!("/v1/sessions/{never}/run"),
        &[],
        &body,
    );
    assert_eq!(status, 404);
    assert_eq!(
        theirs["error"]["message"]
            .as_str()
            .unwrap()
            .replace(id, "ID"),
        nobody["error"]["message"]
            .as_str()
            .unwrap()
            .replace(never, "ID")
    );
    for (method, path) in [
        ("DELETE", format!("/v1/sessions/{id}")),
        ("GET", format!("/v1/sessions/{id}/snapshot")),
        ("GET", format!("/v1/sessions/{id}/list/")),
        ("POST", format!("/v1/sessions/{id}/reset")),
    ] {
        let (status, _, body) = server.v1(Some(BOB), method, &path, &[], "");
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    let (status, _, body) = server.v1(
        Some(BOB),
        "POST",
        "/v1/session/run",
        &[("X-Sandbox-ID", id)],
        r#"{"code": "secret"}"#,
    );
    assert_eq!(status, 404, "{body}");
    let (_, _, listed) = server.v1(Some(BOB), "GET", "/v1/sessions", &[], "");
    assert_eq!(listed, json!({"sessions": []}));
    let (_, _, listed) = server.v1(Some(ALICE), "GET", "/v1/sessions", &[], "");
    assert_eq!(listed, json!({"sessions": [id]}));
    // Alice's session is untouched.
    assert_eq!(
        server.run(Some(ALICE), id, "secret")["value"],
        "'alice only'"
    );

    // One session each: Alice's second is refused, Bob's first is not.
    let (status, head, refused) = server.v1(Some(ALICE), "POST", "/v1/sessions", &[], "");
    assert_eq!(status, 429);
    assert!(head.contains("retry-after: 1"), "{head}");
    assert_eq!(
        refused["error"]["message"],
        "`alice` has 1 sessions open, its quota (`--sessions-per-principal`): close one (`DELETE /v1/sessions/ID`) before starting another"
    );
    let (status, _, _) = server.v1(Some(BOB), "POST", "/v1/sessions", &[], "");
    assert_eq!(status, 201);

    // The operators' endpoints need the ops token, and only it.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, head, _) = server.request(
            "GET",
            path,
            &[("Authorization", &format!("Bearer {ALICE}"))],
            "",
        );
        assert_eq!(status, 401, "{path}");
        assert!(
            head.contains("www-authenticate: bearer realm=\"witbox ops\""),
            "{head}"
        );
    }
    let bearer = format!("Bearer {OPS}");
    let (status, _, text) = server.request("GET", "/metrics", &[("Authorization", &bearer)], "");
    assert_eq!(status, 200);
    let metrics = scrape(&text);
    assert_eq!(
        sample(&metrics, "witbox_python_runs_total", &[("outcome", "ok")]),
        2.0
    );
    assert_eq!(sample(&metrics, "witbox_python_sessions", &[]), 2.0);
    // The ops token is not a principal's.
    let (status, _, _) = server.v1(Some(OPS), "GET", "/v1/sessions", &[], "");
    assert_eq!(status, 401);
}

#[test]
fn rest_starts_data_sessions_and_lists_them() {
    let dir = TempDir::new("rest-data");
    let manifest = dir.write("witbox.toml", crate::data::data_manifest(""));
    let server = Served::start(&manifest, &[]);
    let (status, _, python) = server.v1(None, "POST", "/v1/sessions", &[], "");
    assert_eq!(status, 201, "{python}");
    let (status, _, data) = server.v1(None, "POST", "/v1/sessions?runner=data", &[], "");
    assert_eq!(status, 201, "{data}");
    let (python, data) = (
        python["session_id"].as_str().unwrap(),
        data["session_id"].as_str().unwrap(),
    );
    assert!(data.starts_with("d-"), "{data}");

    // Cells of the data session run on the data runner, and keep their globals.
    server.run(None, data, "import numpy as np\nx = np.arange(4)");
    assert_eq!(server.run(None, data, "int(x.sum())")["value"], "6");
    assert_eq!(
        server.run(None, python, "import sys; sys.version_info[:2]")["value"],
        "(3, 14)"
    );
    assert_eq!(
        server.run(None, data, "import sys; sys.version_info[:2]")["value"],
        "(3, 15)"
    );

    // Both are listed; an unknown runner is refused with the ones there are.
    let (status, _, listed) = server.v1(None, "GET", "/v1/sessions", &[], "");
    assert_eq!(status, 200, "{listed}");
    let ids: Vec<&str> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(ids.contains(&python) && ids.contains(&data), "{listed}");
    let (status, _, refused) = server.v1(None, "POST", "/v1/sessions?runner=r", &[], "");
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"]["message"],
        "unknown query `runner=r`: `POST /v1/sessions` takes `?runner=data` or `?runner=python`"
    );

    // A data session's snapshot restores into a new data session with its globals.
    server.run(None, data, "import pandas as pd\ndf = pd.DataFrame({'v': [1, 2, 3]})\nopen('kept.txt', 'w').write('kept')");
    let (status, _, snapshot) =
        server.request_bytes("GET", &format!("/v1/sessions/{data}/snapshot"), &[], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&snapshot));
    let (status, _, restored) = server.request_bytes(
        "POST",
        "/v1/sessions/restore",
        &[("Content-Type", "application/octet-stream")],
        &snapshot,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&restored));
    let restored: Value = serde_json::from_slice(&restored).unwrap();
    let copy = restored["session_id"].as_str().unwrap();
    assert!(copy.starts_with("d-") && copy != data, "{restored}");
    let again = server.run(
        None,
        copy,
        "(int(df.v.sum()), int(x.sum()), open('kept.txt').read())",
    );
    assert_eq!(again["value"], "(6, 6, 'kept')", "{again}");

    // Closing a data session routes by its id.
    let (status, _, closed) = server.v1(None, "DELETE", &format!("/v1/sessions/{data}"), &[], "");
    assert_eq!((status, &closed["closed"]), (200, &json!(true)), "{closed}");
    let (_, _, listed) = server.v1(None, "GET", "/v1/sessions", &[], "");
    assert!(!listed.to_string().contains(data), "{listed}");
}
