"""asyncio in the sandbox: an event loop of timers, callbacks, tasks and futures.

The sandbox has no sockets, threads, processes or signals, so nothing can wake a
loop but its own timers: `Loop` sleeps until the next one is due, and what would
wait on a file descriptor, a thread or a process raises the sandbox's message.
`asyncio.run`, `asyncio.new_event_loop` and `asyncio.EventLoop` make one; a
cell with a top-level `await` runs on the session's own loop (`session_loop`),
whose tasks live on between cells, as in a notebook.
"""

import asyncio
import asyncio.base_events
import asyncio.events
import asyncio.streams
import asyncio.subprocess
import asyncio.threads
import asyncio.unix_events
import time


def _refuse(what, why):
    def refused(*args, **kwargs):
        raise NotImplementedError(f"{what} is not available in the witbox sandbox: it has {why}")

    refused.__name__ = refused.__qualname__ = what.rsplit(".", 1)[-1]
    return refused


class _Timers:
    """The loop's selector: no file descriptors, so a wait is a sleep."""

    def select(self, timeout):
        if timeout is None:  # nothing ready, nothing scheduled: a real loop would block forever
            raise RuntimeError(
                "the event loop has nothing left to run: every task waits for something"
                " that nothing will do (the witbox sandbox has no sockets, threads or"
                " signals to wake it)"
            )
        if timeout > 0:
            time.sleep(timeout)
        return []

    def close(self):
        pass


class Loop(asyncio.base_events.BaseEventLoop):
    """An asyncio event loop without I/O: timers, callbacks, tasks, futures, queues."""

    def __init__(self):
        super().__init__()
        self._selector = _Timers()

    def _process_events(self, event_list):
        pass

    def _write_to_self(self):
        pass  # there is no other thread to wake the loop from


_LOOP_REFUSED = {
    "no sockets": (
        "create_connection create_server create_datagram_endpoint create_unix_connection"
        " create_unix_server connect_accepted_socket sock_recv sock_recv_into sock_recvfrom"
        " sock_recvfrom_into sock_sendall sock_sendto sock_connect sock_accept sock_sendfile"
        " sendfile start_tls getaddrinfo getnameinfo add_reader add_writer remove_reader"
        " remove_writer"
    ),
    "no processes": "subprocess_exec subprocess_shell connect_read_pipe connect_write_pipe",
    "no signals": "add_signal_handler remove_signal_handler",
    "no threads": "run_in_executor set_default_executor",
}
for _why, _names in _LOOP_REFUSED.items():
    for _name in _names.split():
        setattr(Loop, _name, _refuse(f"loop.{_name}", _why))

_MODULE_REFUSED = {
    "no sockets": [
        (asyncio.streams, "open_connection start_server open_unix_connection start_unix_server"),
    ],
    "no processes": [(asyncio.subprocess, "create_subprocess_exec create_subprocess_shell")],
    "no threads": [(asyncio.threads, "to_thread")],
}
for _why, _places in _MODULE_REFUSED.items():
    for _module, _names in _places:
        for _name in _names.split():
            _f = _refuse(f"asyncio.{_name}", _why)
            setattr(_module, _name, _f)
            if hasattr(asyncio, _name):
                setattr(asyncio, _name, _f)


def _new_event_loop():
    return Loop()


asyncio.events.new_event_loop = asyncio.new_event_loop = _new_event_loop
for _module in (asyncio, asyncio.unix_events):
    for _name in ("EventLoop", "SelectorEventLoop"):
        if hasattr(_module, _name):
            setattr(_module, _name, Loop)

_session = None


def session_loop():
    """The loop of this session's top-level `await` cells (made on first use)."""
    global _session
    if _session is None or _session.is_closed():
        _session = Loop()
    return _session


def run(coroutine):
    """Runs a cell's coroutine on the session's loop and returns its value."""
    loop = session_loop()
    return loop.run_until_complete(coroutine)


def forget():
    """Ends the session's loop (on reset): its pending tasks are cancelled."""
    global _session
    loop, _session = _session, None
    if loop is None or loop.is_closed():
        return
    try:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()
    except BaseException:  # noqa: BLE001 - a task that refuses to end is dropped with the loop
        pass
