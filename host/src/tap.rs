//! A store's stdout or stderr ([`Tap`]): what the guest writes is kept in
//! memory, as wasmtime's `MemoryOutputPipe` keeps it, and while a listener is
//! attached (a streamed Python run) every write is also handed to it as it comes.

use bytes::{Bytes, BytesMut};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{OutputStream, StreamError, StreamResult};

/// What a listener gets: each write's bytes, in order.
pub(crate) type Listener = Box<dyn FnMut(&[u8]) + Send>;

/// The most bytes one write may carry while a listener is attached (the guest's
/// `blocking-write-and-flush` sends at most 4096).
const PERMIT: usize = 64 * 1024;

/// A store's stdout or stderr. Without a listener it is a `MemoryOutputPipe`:
/// it keeps the first `capacity` bytes and then refuses writes (the stream is
/// closed). With one, the kept copy starts again empty, every write goes to the
/// listener, and what passes the capacity is not kept but not refused either:
/// the listener holds the budget, and a session's later runs stream too.
#[derive(Clone)]
pub(crate) struct Tap {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    capacity: usize,
    kept: BytesMut,
    listener: Option<Listener>,
}

impl Tap {
    /// A tap that keeps up to `capacity` bytes.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                capacity,
                kept: BytesMut::new(),
                listener: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the guest wrote, up to the capacity (since the last listener was
    /// attached, if one was).
    pub(crate) fn contents(&self) -> Bytes {
        self.lock().kept.clone().freeze()
    }

    /// Forgets what was kept (a data runner's turn starts with none).
    pub(crate) fn clear(&self) {
        self.lock().kept.clear();
    }

    /// Hands every write from now on to `listener` too.
    pub(crate) fn attach(&self, listener: Listener) {
        let mut inner = self.lock();
        inner.kept.clear();
        inner.listener = Some(listener);
    }

    /// Stops handing writes on (and drops the listener).
    pub(crate) fn detach(&self) {
        self.lock().listener = None;
    }

    /// Takes `bytes`; `false` when they are refused (no listener, and full).
    fn take(&self, bytes: &[u8]) -> bool {
        let mut inner = self.lock();
        let room = inner.capacity - inner.kept.len();
        let Inner { kept, listener, .. } = &mut *inner;
        match listener {
            Some(listener) => {
                listener(bytes);
                kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
                true
            }
            None if bytes.len() > room => false,
            None => {
                kept.extend_from_slice(bytes);
                true
            }
        }
    }
}

#[wasmtime_wasi_io::async_trait]
impl Pollable for Tap {
    async fn ready(&mut self) {}
}

impl OutputStream for Tap {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.take(&bytes) {
            Ok(())
        } else {
            // As `MemoryOutputPipe` says it (a guest that ignored its permit).
            Err(StreamError::trap(
                "write beyond capacity of MemoryOutputPipe",
            ))
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let inner = self.lock();
        if inner.listener.is_some() {
            return Ok(PERMIT);
        }
        match inner.capacity - inner.kept.len() {
            // Full: no more bytes will ever be written.
            0 => Err(StreamError::Closed),
            room => Ok(room),
        }
    }
}

impl tokio::io::AsyncWrite for Tap {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let amount = {
            let inner = self.lock();
            if inner.listener.is_some() {
                buf.len()
            } else {
                buf.len().min(inner.capacity - inner.kept.len())
            }
        };
        self.take(&buf[..amount]);
        Poll::Ready(Ok(amount))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for Tap {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Tap {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_listener_it_keeps_and_refuses_like_a_memory_pipe() {
        let mut tap = Tap::new(4);
        assert_eq!(tap.check_write().unwrap(), 4);
        tap.write(Bytes::from_static(b"abc")).unwrap();
        assert!(tap.write(Bytes::from_static(b"de")).is_err());
        tap.write(Bytes::from_static(b"d")).unwrap();
        assert!(matches!(tap.check_write(), Err(StreamError::Closed)));
        assert_eq!(&tap.contents()[..], b"abcd");
    }

    #[test]
    fn a_listener_gets_every_write_and_the_stream_stays_open() {
        let mut tap = Tap::new(4);
        tap.write(Bytes::from_static(b"old")).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        tap.attach(Box::new(move |b| sink.lock().unwrap().extend_from_slice(b)));
        for _ in 0..3 {
            assert_eq!(tap.check_write().unwrap(), PERMIT);
            tap.write(Bytes::from_static(b"xyz")).unwrap();
        }
        assert_eq!(&seen.lock().unwrap()[..], b"xyzxyzxyz");
        // The kept copy is this listener's run only, up to the capacity.
        assert_eq!(&tap.contents()[..], b"xyzx");
        tap.detach();
        assert!(matches!(tap.check_write(), Err(StreamError::Closed)));
    }
}
