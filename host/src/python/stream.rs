//! A run's output as it comes ([`OutputSink`]): the runner writes what it keeps
//! to its WASI stdout and stderr too (`run-options.stream`), the store's taps
//! hand each write here, and this hands it on redacted and within the output
//! limit, the same text the result gets.
//!
//! A secret may arrive in pieces (one `print` per character): the end of a
//! stream that could begin a secret's spelling is held back until more comes or
//! the cell ends ([`Redactor::held_back`]), so no chunk, and no run of chunks,
//! shows one. At most `max-output-bytes` go out in all (stdout and stderr
//! together, counted after redaction); a stream that reaches the limit ends with
//! the truncation marker the result has, and nothing more goes out.

use super::outcome::marker;
use crate::policy::Redactor;
use crate::store::State;
use std::sync::{Arc, Mutex, MutexGuard};
use wasmtime::Store;

/// Which stream a chunk of output was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output (`print`).
    Stdout,
    /// Standard error (`print(..., file=sys.stderr)`, warnings).
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Where a streamed run's output goes: called with each chunk, in order, while
/// the cell runs, already redacted and within `max-output-bytes`. It is called on
/// the thread that runs the guest, which waits for it: hand the chunk on quickly
/// (write it to a terminal, send it on a channel).
#[derive(Clone)]
pub struct OutputSink(Arc<dyn Fn(Stream, String) + Send + Sync>);

impl OutputSink {
    /// A sink that calls `f` with each chunk.
    pub fn new(f: impl Fn(Stream, String) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// A sink that sends each chunk on a channel, and the channel's receiver. The
    /// receiver sees the end of the channel once the run has ended (its last
    /// chunk is in) and the sink's clones are dropped.
    pub fn channel() -> (Self, tokio::sync::mpsc::UnboundedReceiver<(Stream, String)>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = Self::new(move |stream, chunk| {
            let _ = tx.send((stream, chunk));
        });
        (sink, rx)
    }

    fn send(&self, stream: Stream, chunk: String) {
        (self.0)(stream, chunk)
    }
}

impl std::fmt::Debug for OutputSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutputSink")
    }
}

/// One streamed run: its budgets, and what each stream holds back.
struct Streamer {
    sink: OutputSink,
    redactor: Redactor,
    max: usize,
    /// The runner's truncation marker, which ends a stream it cut.
    marker: String,
    /// Bytes taken from the guest so far, both streams (the runner's own count).
    taken: usize,
    /// Bytes handed to the sink so far, both streams, after redaction.
    sent: usize,
    /// The output reached its limit: the marker went out, nothing more goes.
    done: bool,
    held: [Held; 2],
}

/// What a stream holds back: the bytes of a character not yet whole, and text
/// that could begin a secret.
#[derive(Default)]
struct Held {
    bytes: Vec<u8>,
    text: String,
}

/// How much of a stream's held-back text goes out.
#[derive(Clone, Copy, PartialEq)]
enum Flush {
    /// All but an end that could begin a secret (more may come).
    Hold,
    /// All of it (the cell ended).
    All,
    /// All but an end that could begin a secret, which is dropped: the output
    /// was cut there (its limit, or a run that was killed), and the rest of the
    /// secret never comes.
    Cut,
}

impl Streamer {
    fn new(sink: OutputSink, redactor: Redactor, max: usize) -> Self {
        Self {
            sink,
            redactor,
            max,
            marker: marker(max),
            taken: 0,
            sent: 0,
            done: false,
            held: Default::default(),
        }
    }

    /// The guest wrote `data` to `stream`.
    fn push(&mut self, stream: Stream, data: &[u8]) {
        if self.done {
            return;
        }
        // The runner writes its marker on its own, as the last write of a run
        // it cut. A guest that writes to the stream past the runner (`os.write`)
        // is held to the same budget.
        let (mut data, mut over) = match data.strip_suffix(self.marker.as_bytes()) {
            Some(body) => (body, true),
            None => (data, false),
        };
        let room = self.max - self.taken;
        if data.len() > room {
            data = &data[..room];
            over = true;
        }
        self.taken += data.len();
        let held = &mut self.held[stream.index()];
        held.bytes.extend_from_slice(data);
        let whole = whole_chars(&held.bytes);
        held.text
            .push_str(&String::from_utf8_lossy(&held.bytes[..whole]));
        held.bytes.drain(..whole);
        if over {
            self.flush(stream, Flush::Cut);
            self.cut(stream);
        } else {
            self.flush(stream, Flush::Hold);
        }
    }

    /// Hands on what `stream` holds, as `how` says.
    fn flush(&mut self, stream: Stream, how: Flush) {
        let held = &mut self.held[stream.index()];
        if how != Flush::Hold && !held.bytes.is_empty() {
            // A character that never became whole shows as U+FFFD, as in the result.
            held.text
                .push_str(&String::from_utf8_lossy(&std::mem::take(&mut held.bytes)));
        }
        if held.text.is_empty() {
            return;
        }
        let text = std::mem::take(&mut held.text);
        let mut redacted = self.redactor.redact(&text).into_owned();
        let keep = match how {
            Flush::All => 0,
            Flush::Hold | Flush::Cut => self.redactor.held_back(&redacted),
        };
        let rest = redacted.split_off(redacted.len() - keep);
        if how == Flush::Hold {
            self.held[stream.index()].text = rest;
        }
        self.send(stream, redacted);
    }

    /// Sends `chunk` within the budget; past it, its head and the marker.
    fn send(&mut self, stream: Stream, chunk: String) {
        if chunk.is_empty() || self.done {
            return;
        }
        let room = self.max - self.sent;
        if chunk.len() <= room {
            self.sent += chunk.len();
            self.sink.send(stream, chunk);
            return;
        }
        let head = crate::text::head(&chunk, room).to_string();
        self.sent += head.len();
        if !head.is_empty() {
            self.sink.send(stream, head);
        }
        self.cut(stream);
    }

    /// The output reached its limit on `stream`: the marker, then nothing more.
    fn cut(&mut self, stream: Stream) {
        if !self.done {
            self.done = true;
            self.sink.send(stream, self.marker.clone());
        }
    }

    /// The cell ended: everything held back goes out, except a partial secret
    /// at the end of a run that was killed.
    fn finish(&mut self, completed: bool) {
        let how = if completed { Flush::All } else { Flush::Cut };
        self.flush(Stream::Stdout, how);
        self.flush(Stream::Stderr, how);
    }
}

/// The length of the part of `bytes` that ends on a whole character (or on
/// bytes that are not UTF-8): the rest, at most 3 bytes, may still become one.
fn whole_chars(bytes: &[u8]) -> usize {
    let n = bytes.len();
    for back in 1..=n.min(4) {
        let b = bytes[n - back];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for its lead
        }
        let width = match b {
            0xF8.. => 1, // never UTF-8: taken as it is (U+FFFD)
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if width > back { n - back } else { n };
    }
    n
}

/// A streamed run in progress: its taps hand each write to the streamer. Dropped
/// (a finished run, or one whose caller stopped waiting), it detaches them.
pub(crate) struct Live {
    streamer: Arc<Mutex<Streamer>>,
    taps: [crate::tap::Tap; 2],
}

fn lock(streamer: &Mutex<Streamer>) -> MutexGuard<'_, Streamer> {
    streamer.lock().unwrap_or_else(|p| p.into_inner())
}

impl Live {
    /// Starts streaming the output of the next run of `store` to `sink`.
    pub(crate) fn attach(store: &mut Store<State>, sink: OutputSink) -> Self {
        let state = store.data();
        let sandbox = &state.sandbox;
        let max = sandbox.limits.max_output;
        let streamer = Arc::new(Mutex::new(Streamer::new(
            sink,
            sandbox.redactor.clone(),
            max,
        )));
        let taps = [state.stdout.clone(), state.stderr.clone()];
        for (tap, stream) in taps.iter().zip([Stream::Stdout, Stream::Stderr]) {
            let streamer = streamer.clone();
            tap.attach(Box::new(move |bytes| lock(&streamer).push(stream, bytes)));
        }
        Self { streamer, taps }
    }

    /// The run ended (`completed`: the runner returned its result, rather than
    /// the instance dying): hands on what was held back.
    pub(crate) fn finish(self, completed: bool) {
        lock(&self.streamer).finish(completed);
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        for tap in &self.taps {
            tap.detach();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Seen = Arc<Mutex<Vec<(Stream, String)>>>;

    fn streamer(secrets: &[&str], max: usize) -> (Streamer, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let sink = OutputSink::new(move |s, c| into.lock().unwrap().push((s, c)));
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        let streamer = Streamer::new(sink, Redactor::new(&secrets), max);
        (streamer, seen)
    }

    fn texts(seen: &Mutex<Vec<(Stream, String)>>) -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|(_, c)| c.clone())
            .collect()
    }

    #[test]
    fn a_secret_in_pieces_never_shows() {
        let (mut s, seen) = streamer(&["s3cr3t-Value-42"], 1000);
        s.push(Stream::Stdout, b"key=s3cr3t");
        assert_eq!(texts(&seen), ["key="]);
        s.push(Stream::Stdout, b"-Value-42 ok\n");
        s.push(Stream::Stdout, b"s3");
        s.finish(true);
        assert_eq!(texts(&seen), ["key=", "[REDACTED] ok\n", "s3"]);
        // A killed run drops the piece it was holding.
        let (mut s, seen) = streamer(&["s3cr3t-Value-42"], 1000);
        s.push(Stream::Stderr, b"x s3cr3t-V");
        s.finish(false);
        assert_eq!(texts(&seen), ["x "]);
    }

    #[test]
    fn characters_split_across_writes_are_whole() {
        let (mut s, seen) = streamer(&[], 1000);
        let e = "é".as_bytes();
        s.push(Stream::Stdout, &[b'a', e[0]]);
        s.push(Stream::Stdout, &[e[1], b'\n']);
        s.push(Stream::Stdout, &[0xff]);
        assert_eq!(texts(&seen), ["a", "é\n", "\u{fffd}"]);
        assert_eq!(whole_chars(&[0xe2, 0x82]), 0);
        assert_eq!(whole_chars(&[0xe2, 0x82, 0xac]), 3);
    }

    #[test]
    fn the_output_limit_holds_across_both_streams() {
        let (mut s, seen) = streamer(&[], 10);
        s.push(Stream::Stdout, b"123456");
        s.push(Stream::Stderr, b"7890abc");
        s.push(Stream::Stdout, b"more");
        s.finish(true);
        let m = marker(10);
        assert_eq!(texts(&seen), ["123456", "7890", m.as_str()]);
        assert_eq!(seen.lock().unwrap()[2].0, Stream::Stderr);
        // The runner's own marker (after the bytes it kept) ends the stream once.
        let (mut s, seen) = streamer(&[], 10);
        s.push(Stream::Stdout, b"12345678");
        s.push(Stream::Stdout, m.as_bytes());
        assert_eq!(texts(&seen), ["12345678", m.as_str()]);
        // The guest's bytes count as the runner counts them, before redaction
        // shortens them; an end cut in a secret is dropped.
        let (mut s, seen) = streamer(&["0123456789abcdef"], 20);
        s.push(Stream::Stdout, b"0123456789abcdef0123456789abcdef");
        assert_eq!(texts(&seen), ["[REDACTED]", marker(20).as_str()]);
        // Redaction can lengthen text; the limit counts what goes out.
        let (mut s, seen) = streamer(&["ab"], 10);
        s.push(Stream::Stdout, b"ab ab");
        assert_eq!(texts(&seen), ["[REDACTED]", m.as_str()]);
    }
}
