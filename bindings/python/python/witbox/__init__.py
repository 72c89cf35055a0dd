"""witbox: run agent-written Python in WebAssembly sandboxes.

Each session is a CPython 3.14 interpreter in its own WebAssembly instance,
with no files (but a private scratch folder), no environment, no network and
no tools unless its policy grants them, and limits on time, memory, output,
fuel and tool calls. Globals persist between runs, like a notebook::

    import witbox

    print(witbox.run("print(1 + 1)").stdout)          # "2\\n"

    with witbox.Session(timeout_ms=2000) as s:
        s.run("x = 21")
        print(s.run("x * 2").value)                    # "42"

The convention: ``run`` reports what the code did, it never raises for it. A
Python exception in the code, or a limit the run hit, is ``result.error`` (a
:class:`RunError` whose ``type`` is the exception's name or the limit's:
``"Timeout"``, ``"MemoryLimit"``, ``"OutputLimit"``, ``"FuelExhausted"``,
``"ToolCallLimit"``, ``"FileLimit"``, ``"Crash"``); ``result.raise_for_error()``
raises it as the matching exception class (:class:`Timeout`, ...). What the
host refuses (a bad policy, a closed session, a path outside the scratch
folder) raises :class:`WitboxError` subclasses at once.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from . import _native
from ._callbacks import Callback, Callbacks

__all__ = [
    "run",
    "Session",
    "Tools",
    "Result",
    "RunError",
    "FileEntry",
    "WitboxError",
    "InvalidArguments",
    "NotFound",
    "Denied",
    "SessionClosed",
    "RunFailed",
    "PythonError",
    "Timeout",
    "MemoryLimit",
    "OutputLimit",
    "FuelExhausted",
    "ToolCallLimit",
    "FileLimit",
    "Crash",
]

__version__: str = _native.__version__

# ---------------------------------------------------------------- errors


class WitboxError(Exception):
    """The host refused or failed an operation. ``kind`` names why
    (``invalid-arguments``, ``not-found``, ``denied``, ``closed``, ``busy``: the
    session is running a cell, ``full``: every instance the runner has room for
    is live, so close sessions that are done or raise ``max_sessions``, ...)."""

    kind: str = "internal"

    def __init__(self, message: str, kind: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        if kind is not None:
            self.kind = kind


class InvalidArguments(WitboxError, ValueError):
    """A bad policy, manifest, path or argument."""

    kind = "invalid-arguments"


class NotFound(WitboxError, LookupError):
    """No such file, tool or runner."""

    kind = "not-found"


class Denied(WitboxError, PermissionError):
    """The policy does not grant it."""

    kind = "denied"


class SessionClosed(WitboxError):
    """The session was closed."""

    kind = "closed"


_HOST_ERRORS = {c.kind: c for c in (InvalidArguments, NotFound, Denied, SessionClosed)}


def _host_error(e: _native.HostError) -> WitboxError:
    kind, message = e.args if len(e.args) == 2 else ("internal", str(e))
    return _HOST_ERRORS.get(kind, WitboxError)(message, kind)


def _native_call(f):
    """Turns the native module's ``HostError`` into the typed exceptions."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except _native.HostError as e:
            raise _host_error(e) from None

    return wrapper


class RunFailed(WitboxError):
    """A run ended with an error (raised by :meth:`Result.raise_for_error`);
    ``error`` is the :class:`RunError`."""

    def __init__(self, error: "RunError") -> None:
        super().__init__(f"{error.type}: {error.message}", error.type)
        self.error = error


class PythonError(RunFailed):
    """The code raised a Python exception (its name is ``error.type``)."""


class Timeout(RunFailed):
    """The run passed ``timeout_ms``."""


class MemoryLimit(RunFailed):
    """The interpreter needed more than ``memory_mb``."""


class OutputLimit(RunFailed):
    """Output, value and error together passed ``max_output_bytes``."""


class FuelExhausted(RunFailed):
    """The run used up its ``fuel``."""


class ToolCallLimit(RunFailed):
    """The run called more tools than ``max_tool_calls``."""


class FileLimit(RunFailed):
    """The session's files passed ``scratch_mb`` (the data runner)."""


class Crash(RunFailed):
    """The interpreter crashed (the session starts again at the next run)."""


_LIMITS = {
    c.__name__: c
    for c in (Timeout, MemoryLimit, OutputLimit, FuelExhausted, ToolCallLimit, FileLimit, Crash)
}

# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class RunError:
    """Why a run failed: a Python exception (``type`` is its name) or a limit."""

    type: str
    message: str
    traceback: Optional[str] = None
    #: The line of the innermost frame in the cell (1-based).
    line: Optional[int] = None
    #: The column of a syntax error (1-based).
    column: Optional[int] = None

    @property
    def is_limit(self) -> bool:
        """Whether a limit of the policy stopped the run (not the code's own exception)."""
        return self.type in _LIMITS

    def exception(self) -> RunFailed:
        """The error as an exception of its class (:class:`Timeout`, :class:`PythonError`, ...)."""
        return _LIMITS.get(self.type, PythonError)(self)

    def __str__(self) -> str:
        return self.traceback or f"{self.type}: {self.message}"


@dataclass(frozen=True)
class Result:
    """What one run produced."""

    stdout: str = ""
    stderr: str = ""
    #: The ``repr`` of the code's trailing expression, if it has one.
    value: Optional[str] = None
    error: Optional[RunError] = None
    #: The value passed to ``final_answer(...)``, as JSON data.
    final_answer: Any = None
    #: The session started again from a fresh instance (this run killed it, or
    #: the previous run was cancelled); see ``restart_reason``.
    session_restarted: bool = False
    restart_reason: Optional[str] = None
    #: After a restart: whether the last completed cell's globals were put back,
    #: and each one that was not, as ``name: why``.
    globals_restored: bool = False
    not_restored: List[str] = field(default_factory=list)
    tool_calls: int = 0
    fuel_used: Optional[int] = None
    #: Wall time of the run, in seconds.
    duration: float = 0.0
    #: The PNG files the run wrote into the session's folder (the data runner's
    #: ``plt.savefig`` and ``plt.show()``), as paths for :meth:`Session.read_file`.
    images: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The run ended without an error."""
        return self.error is None

    def raise_for_error(self) -> "Result":
        """Raises the run's error as its exception class; returns the result if none."""
        if self.error is not None:
            raise self.error.exception()
        return self

    @classmethod
    def _from_native(cls, d: Dict[str, Any]) -> "Result":
        # The native module gives every field; filling `__dict__` skips the frozen
        # dataclass's `__init__`, which was most of the Python side of a warm run.
        error = d["error"]
        if error is not None:
            d["error"] = _filled(RunError, error)
        answer = d["final_answer"]
        if answer is not None:
            d["final_answer"] = json.loads(answer)
        return _filled(cls, d)


def _filled(cls: type, fields: Dict[str, Any]) -> Any:
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


@dataclass(frozen=True)
class FileEntry:
    """One entry of :meth:`Session.list_files`."""

    name: str
    type: str  # "file", "dir" or "symlink"
    size: int


# ---------------------------------------------------------------- policy

# Paths as text: pathlib would be a sixth of `import witbox`.
_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_data")

#: The policy keywords, with the manifest's names (``timeout_ms`` is ``timeout-ms``).
_POLICY_KEYS = (
    "timeout_ms",
    "memory_mb",
    "max_output_bytes",
    "fuel",
    "max_tool_calls",
    "allow_http",
    "env",
    "secrets",
    "call_tools",
)
_RUNNER_KEYS = ("scratch_mb", "warm_sessions", "max_sessions", "checkpoints")


@functools.lru_cache(maxsize=None)
def _runner_path() -> str:
    path = os.environ.get("WITBOX_RUNNER") or os.path.join(_DATA, "python-runner.wasm")
    if not os.path.isfile(path):
        raise NotFound(
            f"the Python runner `{path}` is missing: this install of witbox has no runner "
            "(reinstall the wheel, or set WITBOX_RUNNER to a built python-runner.wasm)"
        )
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    raise InvalidArguments(f"cannot put {type(value).__name__} {value!r} in a policy")


_SHIPPED_TOOLS = os.path.join(_DATA, "tools.toml")


@functools.lru_cache(maxsize=None)
def _shipped_tools() -> str:
    """The `[[component]]` tables of the tools the package carries."""
    try:
        with open(_SHIPPED_TOOLS, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def _manifest(policy: Mapping[str, Any]) -> str:
    """The manifest text of a policy given as keywords (with the shipped tools
    when it grants any: ``call_tools=["quadratic_*"]``)."""
    unknown = sorted(set(policy) - set(_POLICY_KEYS) - set(_RUNNER_KEYS))
    if unknown:
        known = ", ".join(_POLICY_KEYS + _RUNNER_KEYS)
        raise InvalidArguments(
            f"unknown policy keyword{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}: the keywords are {known}"
        )
    lines = [_shipped_tools()] if policy.get("call_tools") else []
    lines += ["[runner]", f"path = {_toml(str(_runner_path()))}"]
    lines += [f"{k.replace('_', '-')} = {_toml(v)}" for k, v in policy.items() if k in _RUNNER_KEYS]
    lines.append("[runner.policy]")
    lines += [
        f"{k.replace('_', '-')} = {_toml(v)}"
        for k, v in policy.items()
        if k in _POLICY_KEYS and v is not None
    ]
    return "\n".join(lines) + "\n"


_runners: Dict[tuple, "_native.Runner"] = {}


@_native_call
def _runner(manifest: Optional[Union[str, os.PathLike]], policy: Mapping[str, Any], data: bool = False):
    """The runner for a manifest file or a policy, loaded once per process (so
    its warm pool serves every session of that policy)."""
    if manifest is not None:
        if policy:
            raise InvalidArguments(
                "pass either `manifest` or policy keywords, not both: a manifest's "
                "`[runner.policy]` is its policy"
            )
        path = os.path.realpath(os.fspath(manifest))
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise NotFound(f"cannot read the manifest `{path}`: {e.strerror}") from None
        key = ("file", path, text, data)
        base = os.path.dirname(path)
    else:
        text = _manifest(policy)
        key = ("policy", text, data)
        base = _DATA
    runner = _runners.get(key)
    if runner is None:
        runner = _runners[key] = _loading(lambda: _native.Runner(text, base, data))
    return runner


def _loading(load):
    """Runs ``load``; on a terminal, says so when it takes a while (the first
    use compiles the runner into the per-user cache, once)."""
    import sys
    import threading

    if not sys.stderr.isatty():
        return load()
    note = threading.Timer(
        0.5,
        lambda: print(
            "witbox: compiling the sandbox into the cache (once per runner build; about 15 s)...",
            file=sys.stderr,
            flush=True,
        ),
    )
    note.daemon = True
    note.start()
    try:
        return load()
    finally:
        note.cancel()


# ---------------------------------------------------------------- sessions


def _callback(fn: Callable[..., Any], name: Optional[str] = None, description: Optional[str] = None) -> Callback:
    try:
        return Callback(fn, name, description)
    except TypeError as e:
        raise InvalidArguments(str(e)) from None


class Session:
    """A sandboxed Python session whose globals persist between runs.

    The policy is given as keywords with the manifest's names and defaults
    (``timeout_ms=10000``, ``memory_mb=128``, ``max_output_bytes=1048576``,
    ``fuel=0`` (off), ``max_tool_calls=100``, ``allow_http=[]``, ``env={}``,
    ``secrets={}`` (guest name → host environment variable), ``scratch_mb``),
    or ``manifest="witbox.toml"`` uses a manifest's ``[runner]`` and its tools;
    ``runner="data"`` then picks its data runner (numpy, pandas, ...).
    Sessions of the same policy share one warm pool, so a new one starts in
    well under a millisecond.

    ``tools=[fn, ...]`` (or :meth:`add_tool`, or the :meth:`tool` decorator)
    makes functions of this process callable from the session's code under
    their names: host callbacks. Their JSON Schema comes from the type hints,
    their description from the docstring; arguments are checked before the
    function runs, what it raises is a ``ToolError`` in the sandbox, and each
    call counts against ``max_tool_calls``.
    """

    def __init__(
        self,
        *,
        manifest: Optional[Union[str, os.PathLike]] = None,
        runner: str = "python",
        tools: Sequence[Callable[..., Any]] = (),
        **policy: Any,
    ) -> None:
        if runner not in ("python", "data"):
            raise InvalidArguments(f"unknown runner {runner!r}: `python` or `data`")
        self._runner = _runner(manifest, policy, runner == "data")
        self._native = _native_call(self._runner.session)()
        self._callbacks = Callbacks()
        if tools:
            self._register([_callback(fn) for fn in tools])

    @classmethod
    def _wrap(cls, runner, native) -> "Session":
        self = cls.__new__(cls)
        self._runner, self._native = runner, native
        self._callbacks = Callbacks()
        return self

    def add_tool(
        self,
        fn: Callable[..., Any],
        *,
        name: Optional[str] = None,
        description: Optional[str] = None,
    ) -> Callable[..., Any]:
        """Makes ``fn`` callable from the session's code as ``name`` (its own
        name by default), from the next run on. Returns ``fn``."""
        self._register([_callback(fn, name, description)])
        return fn

    def _register(self, callbacks: Sequence[Callback]) -> None:
        """Adds host callbacks; the sandbox lists its tools again once for all."""
        for cb in callbacks:
            self._callbacks.add(cb)
        _native_call(self._native.set_host_tools)(
            self._callbacks.specs_json(), self._callbacks.dispatch
        )

    def tool(self, fn: Optional[Callable[..., Any]] = None, **options: Any):
        """:meth:`add_tool` as a decorator: ``@session.tool`` or
        ``@session.tool(name="lookup")``."""
        if fn is None:
            return lambda f: self.add_tool(f, **options)
        return self.add_tool(fn, **options)

    @_native_call
    def run(self, code: str) -> Result:
        """Runs ``code`` as the next cell; the result (never raises for what the code did)."""
        return Result._from_native(self._native.run(code))

    async def arun(self, code: str) -> Result:
        """:meth:`run` on a worker thread: the event loop goes on while the cell runs."""
        import asyncio  # not at import time: it takes most of `import witbox`

        return await asyncio.get_running_loop().run_in_executor(None, self.run, code)

    @_native_call
    def reset(self) -> None:
        """Forgets every global (the files and the tools stay)."""
        self._native.reset()

    @_native_call
    def write_file(self, path: str, data: Union[bytes, str]) -> None:
        """Writes a file into the session's scratch folder (``/``), making its folders."""
        if isinstance(data, str):
            data = data.encode()
        self._native.write_file(path, data)

    @_native_call
    def read_file(self, path: str) -> bytes:
        """Reads a file of the session's scratch folder."""
        return self._native.read_file(path)

    @_native_call
    def list_files(self, path: str = "/") -> List[FileEntry]:
        """The entries of a folder of the session's scratch folder."""
        return [FileEntry(**e) for e in json.loads(self._native.list_files(path))]

    @_native_call
    def snapshot(self) -> bytes:
        """The session as bytes: the globals of its last completed cell and its
        files, signed and bound to this runner build. See :meth:`restore`."""
        return self._native.snapshot()

    @classmethod
    def restore(
        cls,
        snapshot: bytes,
        *,
        manifest: Optional[Union[str, os.PathLike]] = None,
        runner: str = "python",
        tools: Sequence[Callable[..., Any]] = (),
        **policy: Any,
    ) -> "Session":
        """A new session from :meth:`snapshot` bytes (with the same policy).
        ``not_restored`` names each global that could not be put back. Host
        callbacks are this process's functions, so a snapshot does not hold
        them: give them again with ``tools=[fn, ...]``."""
        r = _runner(manifest, policy, runner == "data")
        native, missing = _native_call(r.restore)(snapshot)
        session = cls._wrap(r, native)
        session.not_restored = missing
        if tools:
            session._register([_callback(fn) for fn in tools])
        return session

    not_restored: List[str] = []

    @property
    def tools(self) -> List[str]:
        """The tools code in this session may call, as functions of the same name."""
        return _native_call(self._native.tools)()

    @property
    def closed(self) -> bool:
        return self._native.closed

    def close(self) -> None:
        """Ends the session (idempotent)."""
        self._native.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "Session":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<witbox.Session{' closed' if self.closed else ''}>"


def run(code: str, **policy: Any) -> Result:
    """Runs ``code`` in a fresh sandbox (from the warm pool) and closes it.
    Keywords are the policy, as for :class:`Session`."""
    with Session(**policy) as s:
        return s.run(code)


async def arun(code: str, **policy: Any) -> Result:
    """:func:`run` without blocking the event loop."""
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(
        None, functools.partial(run, code, **policy)
    )


# ---------------------------------------------------------------- tools


@dataclass(frozen=True)
class ToolSpec:
    """A tool of a manifest: its name, description and JSON Schema."""

    name: str
    description: str
    parameters: Dict[str, Any]


class Tools:
    """The WIT tool components of a manifest (by default the tools the package
    ships: ``quadratic``, ``weather``, ``equation-report``, ``text-stats``),
    callable from Python::

    tools = witbox.Tools()          # or witbox.Tools("witbox.toml")
    tools.call("quadratic_solve", a=1, b=-3, c=2)

    Each call runs in a fresh instance of its component, under its policy,
    through the same guarded path as calls from sandboxed code. A failed call
    raises :class:`WitboxError` (``kind`` says why: ``invalid-arguments``,
    ``denied``, ``tool-error``, ``timeout``, ...).
    """

    def __init__(self, manifest: Optional[Union[str, os.PathLike]] = None) -> None:
        self._runner = _runner(manifest, {} if manifest else {"call_tools": ["*"]})

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self.specs())

    def specs(self) -> List[ToolSpec]:
        return [
            ToolSpec(t["name"], t["description"], t["parameters"])
            for t in json.loads(self._runner.tools())
        ]

    def names(self) -> Sequence[str]:
        return [t.name for t in self.specs()]

    @_native_call
    def call(self, name: str, /, **args: Any) -> Any:
        """Calls the tool ``name`` with keyword arguments; its result as JSON data."""
        return json.loads(self._runner.call(name, json.dumps(args)))
