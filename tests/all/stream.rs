//! Streamed output: a run's output reaches a sink while the cell runs
//! (`Session::run_streaming`), redacted and within the output limit, and the
//! CLI prints it as it comes.

use crate::support::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use witbox::OutputSink;
use witbox::python::Stream;

/// What a sink saw: each chunk, its stream, and when it came.
type Seen = Arc<Mutex<Vec<(Instant, Stream, String)>>>;

fn recording() -> (OutputSink, Seen) {
    let seen: Seen = Arc::default();
    let into = seen.clone();
    let sink = OutputSink::new(move |stream, chunk| {
        into.lock().unwrap().push((Instant::now(), stream, chunk))
    });
    (sink, seen)
}

/// The chunks of one stream, joined.
fn joined(seen: &Seen, stream: Stream) -> String {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(_, s, _)| *s == stream)
        .map(|(_, _, c)| c.as_str())
        .collect()
}

const SECRET: &str = "s3cr3t-Value-42";

fn marker(max: usize) -> String {
    format!("\n[witbox: output truncated: the run reached its limit of {max} bytes]\n")
}

#[tokio::test]
async fn a_sink_gets_the_output_in_order_while_the_cell_runs() {
    let mut s = session("").await;
    let (sink, seen) = recording();
    let o = s
        .run_streaming(
            "import sys, time\nprint('first')\nprint('oops', file=sys.stderr)\ntime.sleep(0.2)\nprint('second')\n7",
            sink,
        )
        .await
        .unwrap();
    let ended = Instant::now();
    assert!(o.ok(), "{o:?}");
    // The outcome is what it is without a sink; the chunks are the same text.
    assert_eq!(o.stdout, "first\nsecond\n");
    assert_eq!(o.stderr, "oops\n");
    assert_eq!(o.value.as_deref(), Some("7"));
    assert_eq!(joined(&seen, Stream::Stdout), o.stdout);
    assert_eq!(joined(&seen, Stream::Stderr), o.stderr);
    let seen = seen.lock().unwrap().clone();
    let order: String = seen.iter().map(|(_, _, c)| c.as_str()).collect();
    assert_eq!(order, "first\noops\nsecond\n");
    // The first line came before the cell slept its 0.2 s, not when it ended.
    let (first_at, stream, first) = &seen[0];
    assert_eq!((*stream, first.as_str()), (Stream::Stdout, "first"));
    assert!(
        ended.duration_since(*first_at) >= Duration::from_millis(190),
        "the first chunk came {:?} before the end",
        ended.duration_since(*first_at)
    );
    // A run without a sink streams nothing and gives the same outcome.
    let o = cell(&mut s, "print('plain')").await;
    assert_eq!(o.stdout, "plain\n");
}

#[tokio::test]
async fn a_secret_written_in_pieces_never_shows_in_a_chunk() {
    let mut s = session("secrets = { API_KEY = \"WITBOX_TEST_SECRET\" }\ntimeout-ms = 2000").await;
    let (sink, seen) = recording();
    let o = s
        .run_streaming(
            "import os, sys, time\nk = os.environ['API_KEY']\n\
             sys.stdout.write(k[:7]); sys.stdout.flush(); time.sleep(0.05)\n\
             sys.stdout.write(k[7:] + ' ok\\n')\n\
             for c in repr(k): print(c, end='', file=sys.stderr)\n\
             print('s3cr', end='')",
            sink,
        )
        .await
        .unwrap();
    assert!(o.ok(), "{o:?}");
    assert_eq!(o.stdout, "[REDACTED] ok\ns3cr");
    assert_eq!(joined(&seen, Stream::Stdout), o.stdout);
    assert_eq!(joined(&seen, Stream::Stderr), "'[REDACTED]'");
    for (_, _, chunk) in seen.lock().unwrap().iter() {
        assert!(
            !chunk.contains("s3cr3t"),
            "a chunk shows part of the secret: {chunk:?}"
        );
    }
    // A run that dies holding the start of a secret drops it.
    let (sink, seen) = recording();
    let o = s
        .run_streaming(
            "print('a', k[:9], end='', flush=True)\nwhile True: pass",
            sink,
        )
        .await;
    let o = o.unwrap();
    assert_eq!(error_of(&o).0, "Timeout");
    assert_eq!(joined(&seen, Stream::Stdout), "a ");
    assert!(!joined(&seen, Stream::Stdout).contains(&SECRET[..4]));
}

#[tokio::test]
async fn streamed_output_stays_within_the_output_limit() {
    let mut s = session("max-output-bytes = 1000").await;
    let (sink, seen) = recording();
    let o = s
        .run_streaming("for i in range(500): print('x' * 9)", sink)
        .await
        .unwrap();
    assert_eq!(error_of(&o).0, "OutputLimit");
    let streamed = joined(&seen, Stream::Stdout);
    assert_eq!(streamed, o.stdout);
    assert_eq!(
        streamed,
        format!("{}\n", "x".repeat(9)).repeat(100) + &marker(1000)
    );
    // A cut inside a character: the runner keeps less than the limit, then its
    // marker, and the stream shows just that too.
    let (sink, seen) = recording();
    let o = s
        .run_streaming("print('x' + 'é' * 1000)", sink)
        .await
        .unwrap();
    assert_eq!(error_of(&o).0, "OutputLimit");
    assert_eq!(o.stdout, format!("x{}{}", "é".repeat(499), marker(1000)));
    assert_eq!(joined(&seen, Stream::Stdout), o.stdout);
    // Code that writes past the runner (`os.write`) is held to the limit too.
    let (sink, seen) = recording();
    let o = s
        .run_streaming(
            "import os\nfor _ in range(10): os.write(1, b'y' * 300)\nos.write(2, b'z' * 300)",
            sink,
        )
        .await
        .unwrap();
    assert!(o.ok(), "{o:?}");
    let all: String = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, c)| c.as_str())
        .collect();
    assert_eq!(all, "y".repeat(1000) + &marker(1000));
    // The next run has its whole budget again.
    let (sink, seen) = recording();
    s.run_streaming("print('again')", sink).await.unwrap();
    assert_eq!(joined(&seen, Stream::Stdout), "again\n");
}

#[tokio::test]
async fn a_crash_message_still_ends_with_the_guests_stderr() {
    let mut s = session("timeout-ms = 120000").await;
    let (sink, seen) = recording();
    let o = s
        .run_streaming(
            "import sys\nprint('before the crash', file=sys.stderr, flush=True)\n\
             t = ()\nfor _ in range(2 * 10**6): t = (t,)\nhash(t)",
            sink,
        )
        .await
        .unwrap();
    let (kind, message) = error_of(&o);
    assert_eq!(kind, "Crash");
    assert!(
        message.ends_with("\nguest stderr:\nbefore the crash"),
        "{message}"
    );
    assert_eq!(joined(&seen, Stream::Stderr), "before the crash\n");
}

#[test]
fn witbox_run_prints_each_line_as_the_cell_writes_it() {
    use std::io::{BufRead, BufReader, Read};
    drop(runner("")); // compile once, in process, before the CLI reads the cache
    let dir = TempDir::new("stream-cli");
    // The cell waits for a file that the test makes only once it has read the
    // first line: without streaming, that line would not come until the cell's
    // time limit ended it.
    let gate = dir.path().join("gate");
    std::fs::create_dir(&gate).unwrap();
    let m = dir.write(
        "witbox.toml",
        runner_manifest(&format!(
            "timeout-ms = 60000\ndirs = [{{ host = {gate:?}, guest = \"/gate\" }}]"
        )),
    );
    let mut child = witbox_command(&m)
        .args([
            "run",
            "-c",
            "import os, time\nprint('first')\n\
             while not os.path.exists('/gate/go'): time.sleep(0.02)\n\
             print('second')\n'done'",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("failed to run witbox");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "first\n");
    assert!(
        child.try_wait().unwrap().is_none(),
        "witbox had exited before its first line was read"
    );
    std::fs::write(gate.join("go"), "").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    // Printed once: the result's stdout is not printed again.
    assert_eq!(rest, "second\n'done'\n");
}
