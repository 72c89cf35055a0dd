"""The witbox Python code runner (world `witbox:agent/code-runner`).

componentize-py runs this module at build time and snapshots the interpreter,
so everything imported here is in the component and costs nothing at run time.
Each instance is one session: `run` executes a cell in the session's globals,
like a notebook, and `reset` forgets them. When asked, `run` also returns a
checkpoint of the globals, which `restore` puts back into a fresh instance
after the old one died (checkpoint.py).
"""

import ast
import builtins
import collections
import errno
import importlib
import inspect
import io
import json
import keyword
import linecache
import os
import sys
import traceback
import types

import checkpoint
from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.runner import (
    RunError,
    RunFailure_InvalidInput,
    RunOptions,
    RunResult,
)
from wit_world.imports import host

# The whole standard library. The component has no files at run time: a module
# is there only if it was imported now, when componentize-py snapshots the
# interpreter. So every module of the bundled stdlib is imported here, and what
# cannot load (its C library is not in this build, or it is for another
# system) is remembered with the reason, for `import` to give it.
_LEFT_OUT = {
    "test": "the CPython test suite is not included",
    "idlelib": "it has no GUI (Tk is not in this build)",
    "tkinter": "it has no GUI (Tk is not in this build)",
    "turtle": "it has no GUI (Tk is not in this build)",
    "turtledemo": "it has no GUI (Tk is not in this build)",
    "_pyrepl": "it has no terminal",
    "antigravity": "it has no web browser",
    "this": "it is an easter egg that prints at import",
    "ensurepip": "it has no pip: add packages to `[runner] packages` in the manifest",
    "venv": "it has no pip: add packages to `[runner] packages` in the manifest",
    "_ios_support": "it is not iOS",
}
# Why a module's C part is missing, by the part's name.
_NATIVE = {
    "_ctypes": "it runs no native code",
    "_multiprocessing": "it has no processes",
    "_posixsubprocess": "it has no processes",
    "_posixshmem": "it has no processes",
    "termios": "it has no terminal",
    "_curses": "it has no terminal",
    "_curses_panel": "it has no terminal",
    "readline": "it has no terminal",
    "_tkinter": "it has no GUI (Tk is not in this build)",
    "_interpreters": "it has no subinterpreters",
    "_interpchannels": "it has no subinterpreters",
    "_interpqueues": "it has no subinterpreters",
    "_remote_debugging": "it has no debugger attach",
    "mmap": "WASI has no memory mapping",
    "fcntl": "WASI has no file locks",
    "grp": "WASI has no users or groups",
    "pwd": "WASI has no users or groups",
    "resource": "WASI has no resource limits to read",
    "syslog": "WASI has no system log",
    "_ssl": "it has no sockets",
}
_WINDOWS = {"nt", "msvcrt", "winreg", "winsound", "_winapi", "_overlapped", "_wmi", "_scproxy"}
_MISSING = {}


def _unavailable(name, why):
    return ModuleNotFoundError(
        f"module `{name}` is not available in the witbox sandbox: {why}", name=name
    )


def _why_missing(name, exc):
    if name.split(".")[-1] == "__main__":
        return "it runs a program at import"
    windows = ("windows_events", "windows_utils", "win32", "windows_console", "mbcs", "oem")
    if name in _WINDOWS or name.endswith(windows):
        return "it is for Windows or macOS"
    part = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if part in _NATIVE:
        return _NATIVE[part]
    if part in _MISSING or part in _WINDOWS:
        return _MISSING.get(part) or "it is for Windows or macOS"
    if part and part.startswith("_"):
        return f"its C library is not in this build (`{part}`)"
    return f"it does not load under WASI ({type(exc).__name__}: {exc})"


# Parts of a module name that mark test code, which the snapshot leaves out.
_TESTS = {"test", "tests", "idle_test", "testing", "conftest"}


def _import_trees(tops, load):
    """Imports each of `tops` with `load(name) -> bool`, and every submodule of
    the packages among them, tests left out (a `__main__` runs a program, so it
    is recorded as missing). Nothing a module prints at import is kept."""
    import pkgutil

    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = io.StringIO()
    try:
        for top in tops:
            if not load(top):
                continue
            path = getattr(sys.modules[top], "__path__", None)
            for info in pkgutil.walk_packages(path or [], top + ".", onerror=str):
                parts = info.name.split(".")
                if parts[-1] == "__main__":
                    _MISSING[info.name] = _why_missing(info.name, None)
                elif not _TESTS.intersection(parts):
                    load(info.name)
    finally:
        sys.stdout, sys.stderr = saved


def _import_stdlib():
    _MISSING.update(_LEFT_OUT)
    _import_trees(sorted(sys.stdlib_module_names - _LEFT_OUT.keys()), _import)


def _import(name):
    if name in sys.modules:
        return True
    try:
        importlib.import_module(name)
        return True
    except BaseException as e:  # noqa: BLE001 - not in this build: `import` will say why
        _MISSING[name] = _why_missing(name, e)
        return False


_import_stdlib()


class _StandIn(types.ModuleType):
    """A module the sandbox lacks, in place of it while a package imports: the
    import succeeds, names from it can be imported, and only using one raises the
    sandbox's message. ctypes' stand-in knows the sizes of wasm32's C types
    (sympy reads `sizeof(c_long)` at import)."""

    def __init__(self, name, why):
        super().__init__(name)
        self.__witbox_why__ = why
        if name == "ctypes":
            for ctype, size in _CTYPE_SIZES.items():
                setattr(self, ctype, type(ctype, (), {"_witbox_size": size, "__module__": "ctypes"}))
            self.sizeof = lambda t: t._witbox_size
            self.sizeof.__name__ = "sizeof"

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unusable(self.__name__, attr, self.__witbox_why__)


class _Unusable:
    """A name from a stand-in module: calling or using it raises the sandbox's message."""

    def __init__(self, module, name, why):
        self.__witbox__ = (module, name, why)

    def _refuse(self, *args, **kwargs):
        module, _, why = object.__getattribute__(self, "__witbox__")
        raise _unavailable(module, why)

    __call__ = _refuse

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        self._refuse()

    def __mro_entries__(self, bases):  # `class S(ctypes.Structure)` defines; making one raises
        refuse = self._refuse
        return (type("Unusable", (), {"__new__": lambda cls, *a, **k: refuse()}),)

    def __repr__(self):
        module, name, _ = object.__getattribute__(self, "__witbox__")
        return f"<{module}.{name}: not available in the witbox sandbox>"


# The sizes of C types on wasm32 (ILP32), for ctypes' stand-in.
_CTYPE_SIZES = {
    **dict.fromkeys("c_bool c_char c_byte c_ubyte c_int8 c_uint8".split(), 1),
    **dict.fromkeys("c_short c_ushort c_int16 c_uint16".split(), 2),
    **dict.fromkeys(
        "c_int c_uint c_long c_ulong c_int32 c_uint32 c_float c_size_t c_ssize_t c_void_p"
        " c_char_p c_wchar_p c_wchar".split(),
        4,
    ),
    **dict.fromkeys("c_longlong c_ulonglong c_int64 c_uint64 c_double".split(), 8),
    "c_longdouble": 16,
}


def _import_packages(names):
    """Imports the packages `witbox runner build` added, and all their submodules
    (so that lazy imports work). A package that imports a module the sandbox
    lacks at import time, without needing it, gets a stand-in for it."""
    stand_ins = {}
    try:
        _import_trees(names, lambda name: _import_with_stand_ins(name, stand_ins))
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]  # user code that imports it gets the message


def _import_with_stand_ins(name, stand_ins):
    for _ in range(8):
        if name in sys.modules:
            return True
        before = set(sys.modules)
        try:
            importlib.import_module(name)
            return True
        except ModuleNotFoundError as e:
            for added in set(sys.modules) - before:
                del sys.modules[added]
            lacking = e.name or ""
            if lacking.startswith("_") and lacking[1:] in _MISSING:
                lacking = lacking[1:]  # `_ctypes` failed inside `ctypes`: stand in for `ctypes`
            why = _MISSING.get(lacking) or _MISSING.get(lacking.split(".")[0])
            if not why or lacking in stand_ins or lacking == name:
                _MISSING[name] = _why_missing(name, e)
                return False
            stand_ins[lacking] = sys.modules[lacking] = _StandIn(lacking, why)
        except BaseException as e:  # noqa: BLE001 - `import` will say why
            _MISSING[name] = f"it failed to import when the runner was built ({type(e).__name__}: {e})"
            return False
    return False


try:
    import _witbox_packages  # written by `witbox runner build`
except ImportError:
    PACKAGES = ()
else:
    PACKAGES = tuple(_witbox_packages.NAMES)
    _import_packages(PACKAGES)

# Sockets: the stdlib's modules that hold `socket` (asyncio, logging.handlers,
# email.utils) get errors, not a crash: the host links no `wasi:sockets`, and
# calling one of its functions would trap the instance.
_socket_module = sys.modules["socket"]


def _no_sockets(*args, **kwargs):
    raise OSError(errno.ENOTSUP, "the witbox sandbox has no sockets")


_socket_module.socket.__init__ = _no_sockets
for _name in (
    "create_connection create_server socketpair fromfd getaddrinfo getnameinfo gethostbyname"
    " gethostbyname_ex gethostbyaddr getservbyname getservbyport getprotobyname getfqdn"
).split():
    setattr(_socket_module, _name, _no_sockets)
del _socket_module

# What the sandbox has but does not allow, and the words to say so. The stdlib's
# own modules imported above keep their references (asyncio holds `socket`);
# user code cannot import them. The network clients (`urllib.request`,
# `http.client`, `smtplib`, ...) import, for what needs no network (a `Request`,
# `pathname2url`, `http.client.responses`); connecting fails (below).
BLOCKED = {
    "subprocess": "it has no processes",
    "multiprocessing": "it has no processes",
    "pty": "it has no processes",
    "socket": "it has no sockets",
    "_socket": "it has no sockets",
    "ssl": "it has no sockets",
    "select": "it has no sockets",
    "selectors": "it has no sockets",
    "socketserver": "it has no sockets",
    "ctypes": "it runs no native code",
}


class _Blocked:
    """Refuses to import what the sandbox cannot provide, with a clear message."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            prefix = ".".join(parts[:i])
            why = BLOCKED.get(prefix) or _MISSING.get(prefix)
            if why:
                raise _unavailable(name, why)
        return None


for _name in list(sys.modules):
    if any(_name == b or _name.startswith(b + ".") for b in BLOCKED):
        del sys.modules[_name]
sys.meta_path.insert(0, _Blocked)

# Threads: the modules import (the stdlib and many packages take a lock or two),
# but none can start.
import _thread  # noqa: E402
import threading  # noqa: E402


def _no_thread(*args, **kwargs):
    raise RuntimeError("can't start a new thread: the witbox sandbox has no threads")


threading.Thread.start = _no_thread
for _name in ("start_new_thread", "start_new", "start_joinable_thread"):
    if hasattr(_thread, _name):
        setattr(_thread, _name, _no_thread)

import aio  # noqa: E402

_RUNNER_FILES = {aio.__file__, __file__ if "__file__" in globals() else "app.py"}
_MARKER = "\n[witbox: output truncated: the run reached its limit of {} bytes]\n"


class _Stop(BaseException):
    """Ends a run from inside; `except Exception` in user code cannot catch it."""


class _FinalAnswer(_Stop):
    pass


class _OutputLimit(_Stop):
    pass


class ToolError(Exception):
    """A tool call failed.

    `.tool` is the tool's name, `.kind` why it failed (`invalid-arguments`,
    `denied`, `unavailable`, `failed`, `other`), `.message` the details, and for
    `failed` `.error` is the tool's own error value.
    """

    def __init__(self, tool, kind, message, error=None):
        super().__init__(message)
        self.tool = tool
        self.kind = kind
        self.message = message
        self.error = error

    def __reduce__(self):  # for checkpoints: BaseException's would call ToolError(message)
        return ToolError, (self.tool, self.kind, self.message, self.error), self.__dict__


ToolError.__module__ = "builtins"


class _Capture(io.TextIOBase):
    """stdout or stderr of one run; both share one byte budget. With `fd` (1 or 2)
    what it keeps also goes to that WASI stream as it comes (`run-options.stream`)."""

    def __init__(self, budget, fd=None):
        self._parts = [] if fd is None else _Tee(fd)
        self._budget = budget

    def writable(self):
        return True

    @property
    def encoding(self):
        return "utf-8"

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        chars = len(s)
        if type(s) is not str:  # a subclass's methods are the user's code
            s = str.__str__(s)
        b = self._budget
        if b.hit:
            raise _OutputLimit()
        unsendable = None
        if s.isascii():
            n = len(s)
        else:
            try:
                n = len(s.encode("utf-8"))
            except UnicodeEncodeError as e:
                # The host takes UTF-8, which has no lone surrogates. The text still
                # shows, escaped, and the code gets what a strict UTF-8 stream raises.
                unsendable = e
                s = _sendable(s)
                n = len(s.encode("utf-8"))
        if b.used + n > b.limit:
            room = b.limit - b.used
            head = s.encode("utf-8")[:room].decode("utf-8", "ignore")
            self._parts.append(head)
            self._parts.append(_MARKER.format(b.limit))
            b.used = b.limit
            b.hit = True
            raise _OutputLimit()
        b.used += n
        self._parts.append(s)
        if unsendable is not None:
            raise unsendable
        return chars

    def text(self):
        return "".join(self._parts)


class _Tee(list):
    """The parts of a streamed run's output: each one is also written at once to
    the real stdout or stderr, which the host reads while the run goes on.
    `os.write` goes straight to the WASI stream: `sys.__stdout__` would buffer."""

    __slots__ = ("fd",)

    def __init__(self, fd):
        super().__init__()
        self.fd = fd

    def append(self, text):
        list.append(self, text)
        if self.fd is None:
            return
        data = text.encode("utf-8", "backslashreplace")
        try:
            while data:
                n = os.write(self.fd, data)
                if n <= 0:
                    break
                data = data[n:]
        except OSError:
            self.fd = None  # the stream is gone: the result still has it all


class _Budget:
    def __init__(self, limit):
        self.limit = limit
        self.used = 0
        self.hit = False


class _Run:
    """What the current run has produced so far."""

    final = None
    codes = ()  # the code objects the cell ran (for the checkpoint)


_run = _Run()


def final_answer(answer):
    """Ends the run with `answer` as its final answer (JSON if it can be, else its repr)."""
    if _run.final is None:
        try:
            text = json.dumps(answer, ensure_ascii=False)
        except (TypeError, ValueError):
            text = json.dumps(repr(answer), ensure_ascii=False)
        # The host reads the answer as UTF-8 JSON, which cannot hold a lone
        # surrogate: the call raises UnicodeEncodeError, so the code can react.
        text.encode("utf-8")
        _run.final = text
    raise _FinalAnswer()


def _tool_function(spec):
    """A Python function that calls the tool `spec` through the host."""
    schema = json.loads(spec.parameters_json)
    props = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    params, py_to_json = [], {}
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    for json_name in props:
        py = json_name + "_" if keyword.iskeyword(json_name) else json_name
        py_to_json[py] = json_name
        if json_name in required:
            default = inspect.Parameter.empty
        else:
            default, kind = None, inspect.Parameter.KEYWORD_ONLY
        params.append(inspect.Parameter(py, kind, default=default))
    signature = inspect.Signature(params)
    json_names = list(py_to_json.values())
    name = spec.name

    positional = [json_names[i] for i, p in enumerate(params) if p.kind == p.POSITIONAL_OR_KEYWORD]

    def call(*args, **kwargs):
        if not kwargs and len(args) == len(positional) == len(params):
            payload = dict(zip(positional, args))  # the common case, without inspect
        else:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as e:
                raise TypeError(f"{name}(): {e}") from None
            payload = {py_to_json[k]: v for k, v in bound.arguments.items()}
        try:
            text = json.dumps(payload)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name}(): the arguments are not JSON: {e}") from None
        try:
            result = host.call_tool(name, text)
        except Err as e:
            raise _tool_error(name, e.value) from None
        return json.loads(result)

    call.__name__ = call.__qualname__ = name
    call.__signature__ = signature
    doc = [spec.description.strip(), ""]
    if props:
        doc.append("Arguments:")
    for py, json_name in py_to_json.items():
        p = props[json_name]
        what = p.get("description", "")
        optional = "" if json_name in required else ", optional"
        doc.append(f"    {py} ({_json_type(p)}{optional}): {what}".rstrip(": "))
    doc.append("")
    doc.append("Returns the tool's result as Python objects; raises ToolError if it fails.")
    call.__doc__ = "\n".join(doc)
    call.__module__ = "tools"
    return call


def _json_type(p):
    t = p.get("type")
    if isinstance(t, list):
        return " or ".join(t)
    if t:
        return t
    if "enum" in p:
        return "one of " + ", ".join(repr(v) for v in p["enum"])
    return "value"


def _tool_error(name, case):
    kind = type(case).__name__.split("_", 1)[-1]
    kind = {"InvalidArguments": "invalid-arguments"}.get(kind, kind.lower())
    text = case.value
    if kind == "failed":
        try:
            error = json.loads(text)
        except ValueError:
            error = text
        return ToolError(name, kind, f"`{name}` returned an error: {text}", error)
    if f"`{name}`" not in text:
        text = f"`{name}`: {text}"
    return ToolError(name, kind, text)


def _help(obj=None):
    """Prints the documentation of `obj` (a tool, function, module or class)."""
    import pydoc

    if obj is None:
        print("Call help(obj) to see the documentation of obj; tools() lists the tools.")
        return
    print(pydoc.render_doc(obj, title="%s", renderer=pydoc.plaintext))


def _install_tools():
    global _tool_names
    names = []
    for spec in host.list_tools():
        setattr(builtins, spec.name, _tool_function(spec))
        names.append(spec.name)
    names = tuple(names)

    def tools():
        return list(names)

    builtins.tools = tools
    _tool_names = names


def _injected():
    """The names the runner put into `builtins`: a checkpoint stores them by name."""
    return (*_tool_names, "final_answer", "ToolError", "help", "tools")


builtins.final_answer = final_answer
builtins.ToolError = ToolError
builtins.help = _help
_tools_installed = False
_tool_names = ()
_cell = 0
_globals = {}
_checkpoints = checkpoint.Checkpoints(
    _globals, skip=("__builtins__", "__name__", "__doc__"), injected=_injected
)


def _fresh_globals():
    _globals.clear()
    _globals.update({"__name__": "__main__", "__builtins__": builtins, "__doc__": None})


_fresh_globals()


# Of a deeper traceback (a recursion under a raised recursion limit) only the
# first and last this many frames are shown: extracting a million frames would
# take longer than the run may, and memory the run may not have left.
_KEEP_FRAMES = 500


def _user_frames(tb):
    """The traceback without the runner's own frames, as (the first frames, how
    many were left out, the last frames)."""
    head, tail, left_out = [], collections.deque(maxlen=_KEEP_FRAMES), 0
    # A cell that awaits runs under the event loop's frames: they are not the user's.
    first = tb
    while first is not None and not first.tb_frame.f_code.co_filename.startswith("<cell"):
        first = first.tb_next
    if first is not None:
        tb = first
    while tb is not None:
        if tb.tb_frame.f_code.co_filename not in _RUNNER_FILES:
            if len(head) < _KEEP_FRAMES:
                head.append(tb)
            else:
                left_out += len(tail) == _KEEP_FRAMES
                tail.append(tb)
        tb = tb.tb_next
    return _extract(head), left_out, _extract(tail)


def _extract(entries):
    chain = None
    for tb in reversed(entries):
        chain = types.TracebackType(chain, tb.tb_frame, tb.tb_lasti, tb.tb_lineno)
    return traceback.extract_tb(chain)


def _cell_line(frames):
    """The line of the innermost frame in a cell, if any."""
    head, _, tail = frames
    cells = [f for f in [*head, *tail] if f.filename.startswith("<cell")]
    return _u32(cells[-1].lineno) if cells else None


def _sendable(text):
    """`text` as the host can take it: WIT strings are UTF-8, which has no lone
    surrogates (`'\\udcff'` from `surrogateescape`, or `chr(0xD800)`), and handing
    one over traps the whole instance. They are written as escapes instead."""
    if type(text) is not str:
        text = str.__str__(text)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _u32(n):
    """A line or column the host can take (`option<u32>`), or None."""
    return n if type(n) is int and 0 <= n < 1 << 32 else None


def _type_name(exc):
    # Past any metaclass that overrides `__name__`: the name must be a plain str.
    return _sendable(type.__dict__["__name__"].__get__(type(exc)))


def _error(exc):
    """The run's error for `exc`. Never raises: user code decides what `str(exc)`
    does, and an exception that escaped `run` would trap the instance. When
    describing `exc` raises (its `__str__` raises, recurses forever or returns a
    non-str), the error is what describing it raised, after `exc` in the traceback,
    as Python shows an exception raised while handling another."""
    first = exc
    for _ in range(3):
        try:
            return _describe(exc, None if exc is first else first)
        except BaseException as e:  # noqa: BLE001 - each step tells the next
            exc = e
    return RunError(
        type=_type_name(exc),
        message="<the error could not be described>",
        traceback="",
        line=None,
        column=None,
    )


def _describe(exc, during):
    """`exc` as a RunError; `during` is the exception whose description raised it."""
    filename = getattr(exc, "filename", None) if isinstance(exc, SyntaxError) else None
    if type(filename) is str and filename.startswith("<cell"):
        lines = traceback.format_exception_only(type(exc), exc)
        msg = exc.msg
        return RunError(
            type=_type_name(exc),
            message=_sendable(msg if type(msg) is str and msg else str(exc)),
            traceback=_sendable("".join(lines)),
            line=_u32(exc.lineno),
            column=_u32(exc.offset),
        )
    message = str(exc)
    if type(exc) is ModuleNotFoundError and message == f"No module named {exc.name!r}":
        if not getattr(exc, "__notes__", None):
            exc.add_note(_NOT_INSTALLED)
    frames = _user_frames(exc.__traceback__)
    line = _cell_line(frames)
    text = ""
    if during is not None:
        before = _user_frames(during.__traceback__)
        text = _traceback_text(during, before)
        text += "\nDuring handling of the above exception, another exception occurred:\n\n"
        if line is None:  # raised by str() itself (a non-str result): point at the raise
            line = _cell_line(before)
    text += _traceback_text(exc, frames)
    return RunError(
        type=_type_name(exc),
        message=_sendable(message),
        traceback=_sendable(text),
        line=line,
        column=None,
    )


# What a missing package's error adds: where packages come from.
_NOT_INSTALLED = (
    "The witbox sandbox has the standard library and "
    + (f"the packages {', '.join(PACKAGES)}" if PACKAGES else "no other packages")
    + "; add one to `[runner] packages` in the manifest."
)


def _traceback_text(exc, frames):
    head, left_out, tail = frames
    text = "Traceback (most recent call last):\n" if head else ""
    text += _format_frames(head)
    if left_out:
        text += f"  [... {left_out} more frames ...]\n"
    text += _format_frames(tail)
    # format_exception_only survives a failing `__str__` (`<exception str() failed>`).
    return text + "".join(_collapse(traceback.format_exception_only(type(exc), exc)))


def _format_frames(frames):
    """`traceback.format_list`, but each distinct frame is formatted once and a
    run of one frame is shown three times, as Python shows it: formatting a frame
    parses its line (for the `^^^` marks), a millisecond each here."""
    out, seen, last, count = [], {}, None, 0
    for f in frames:
        key = (f.filename, f.lineno, f.end_lineno, f.colno, f.end_colno, f.name)
        if key != last:
            if count > 3:
                out.append(_repeated(count - 3))
            last, count = key, 0
        count += 1
        if count <= 3:
            if key not in seen:
                seen[key] = "".join(traceback.format_list([f]))
            out.append(seen[key])
    if count > 3:
        out.append(_repeated(count - 3))
    return "".join(out)


def _repeated(n):
    return f"  [Previous line repeated {n} more time{'s' if n > 1 else ''}]\n"


def _collapse(lines):
    """Runs of one repeated line shown once with a count, as tracebacks show frames:
    json adds a note for each level of nesting it unwinds, thousands of them."""
    out, last, repeats = [], None, 0
    for line in lines:
        if line == last:
            repeats += 1
            continue
        if repeats:
            out.append(f"[Previous line repeated {repeats} more times]\n")
        out.append(line)
        last, repeats = line, 0
    if repeats:
        out.append(f"[Previous line repeated {repeats} more times]\n")
    return out


# A cell may `await` at the top level, as in a notebook: its code is then a
# coroutine, run on the session's event loop (aio.py).
_AWAIT = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


def _compile(code, filename):
    """The cell as (statements, trailing expression or None), both code objects."""
    try:
        # Most cells an agent sends are one expression (a call, a name): compiling
        # the source directly is twice as fast as going through the AST.
        return None, compile(code, filename, "eval", flags=_AWAIT)
    except SyntaxError:
        pass
    tree = ast.parse(code, filename=filename, mode="exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = compile(ast.Expression(tree.body.pop().value), filename, "eval", flags=_AWAIT)
    return compile(tree, filename, "exec", flags=_AWAIT), last


def _awaits(code):
    return code is not None and code.co_flags & inspect.CO_COROUTINE


async def _run_async(body, last):
    """A cell that awaits: both its parts run inside the session's loop, so the
    statements can start tasks that the last expression awaits."""
    if body is not None:
        done = eval(body, _globals)
        if _awaits(body):
            await done
    if last is not None:
        value = eval(last, _globals)
        return await value if _awaits(last) else value
    return None


def _no_space(code, offset, exc):
    """Gives a write past a folder's quota its errno. The host refuses it with
    ENOSPC (`insufficient-space`), but the WASI layer under CPython reports every
    failed stream write as EIO, and a write to a folder the host grants fails
    for no other reason. Called when an exception is raised."""
    if isinstance(exc, OSError) and exc.errno == errno.EIO:
        exc.errno = errno.ENOSPC
        exc.strerror = (
            "No space left on device (the folder is at its quota: `scratch-mb` for"
            " the session's scratch folder, `quota-mb` for a granted one)"
        )
        exc.args = (exc.errno, exc.strerror)


_MONITOR = 4  # a free sys.monitoring tool id (0-2 and 5 are taken by convention)
sys.monitoring.use_tool_id(_MONITOR, "witbox")
sys.monitoring.register_callback(_MONITOR, sys.monitoring.events.RAISE, _no_space)
sys.monitoring.set_events(_MONITOR, sys.monitoring.events.RAISE)


def _execute(code, filename):
    """Runs a cell; returns (value repr or None, RunError or None)."""
    _run.codes = ()
    if not code or code.isspace():
        return None, None
    try:
        # Deeply nested source fails here too: MemoryError from the parser, or
        # RecursionError from the compiler.
        body, last = _compile(code, filename)
    except BaseException as e:  # noqa: BLE001 - every user error is a result
        return None, _error(e)
    _run.codes = (body, last)
    try:
        if _awaits(body) or _awaits(last):
            value = aio.run(_run_async(body, last))
        else:
            if body is not None:
                exec(body, _globals)
            value = None if last is None else eval(last, _globals)
        if value is not None:
            return _value(repr(value))
        return None, None
    except _Stop:  # final_answer, or the output limit (which `run` reports)
        return None, None
    except BaseException as e:  # noqa: BLE001 - every user error is a result
        if _run.final is not None:
            return None, None
        error = _error(e)
        # Describing it ran user code, which may have given the answer.
        return None, None if _run.final is not None else error


def _value(text):
    """The repr of a trailing expression, and the error if it cannot go as it is."""
    if type(text) is not str:
        text = str.__str__(text)
    sendable = _sendable(text)
    if sendable is text:
        return text, None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        e.add_note("(raised by the repr of the cell's last expression; `value` shows it escaped)")
        return sendable, _error(e)
    return sendable, None


class Runner(exports.Runner):
    def run(self, code: str, options: RunOptions) -> RunResult:
        global _tools_installed, _cell
        if "\x00" in code:
            raise Err(RunFailure_InvalidInput("the code contains a NUL byte"))
        if not _tools_installed:
            _install_tools()
            _tools_installed = True
            _checkpoints.note_injected()
        _cell += 1
        filename = f"<cell {_cell}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        budget = _Budget(options.max_output_bytes)
        if options.stream:
            out, err = _Capture(budget, 1), _Capture(budget, 2)
        else:
            out, err = _Capture(budget), _Capture(budget)
        _run.final = None
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            value, error = _execute(code, filename)
        finally:
            sys.stdout, sys.stderr = saved
        if budget.hit:
            error = RunError(
                type="OutputLimit",
                message="the run wrote more than its output limit, so it was stopped",
                traceback="",
                line=None,
                column=None,
            )
        final, _run.final = _run.final, None
        if options.checkpoint:
            state = _checkpoint(options.checkpoint_max_bytes)
        else:
            state = None
            _checkpoints.forget()  # this cell may change anything unseen
        return RunResult(
            stdout=out.text(),
            stderr=err.text(),
            value=value,
            error=error,
            final_answer=final,
            checkpoint=state,
        )

    def reset(self) -> None:
        global _cell
        _fresh_globals()
        _checkpoints.clean()
        aio.forget()
        _cell = 0
        for name in [n for n in linecache.cache if n.startswith("<cell")]:
            del linecache.cache[name]

    def restore(self, state: bytes) -> list[str]:
        global _tools_installed, _cell
        try:
            if not _tools_installed:  # a checkpoint may name the tools
                try:
                    _install_tools()
                    _tools_installed = True
                except Exception:  # noqa: BLE001 - what needs them says so, the next run retries
                    pass
            problems, meta = _checkpoints.restore(state)
            cell = meta.get("cell") if type(meta) is dict else None
            if type(cell) is int and cell > _cell:
                _cell = cell  # new cells do not reuse the names of restored code
            return [_sendable(p) for p in problems]
        except BaseException as e:  # noqa: BLE001 - an exception here traps the instance
            return [f"the checkpoint could not be restored: {_type_name(e)}"]


def _checkpoint(max_bytes):
    """The checkpoint after the cell just run, or None if it changed nothing. Never
    raises; what a `__reduce__` prints or answers is not the cell's."""
    codes, _run.codes = _run.codes, ()
    try:
        return _checkpoints.after(codes, max_bytes, {"cell": _cell})
    except BaseException as e:  # noqa: BLE001 - say so, in a checkpoint that keeps nothing
        _checkpoints.forget()
        try:
            return _checkpoints.failed(f"no checkpoint could be made: {_type_name(e)}", {"cell": _cell})
        except BaseException:  # noqa: BLE001
            return None
    finally:
        _run.final = None


# Warm the paths a first run takes (parse, compile, exec, capture), so every
# instance starts from a snapshot that has already run a cell.
_saved = sys.stdout, sys.stderr
sys.stdout = sys.stderr = _Capture(_Budget(1 << 20))
_execute("x = 1 + 1\nprint(x)\nx", "<cell 0>")
# ... and a checkpoint: a change, no change, one left out, and restore.
_execute(
    "import math as m\n"
    "def f(a, b=2):\n    return a + b + len(xs)\n"
    "class C:\n    def me(self):\n        return C\n"
    "c = C()\nxs = [1, 2, {'k': (1.5, 's')}]\ng = (i for i in ())\n",
    "<cell 0>",
)
_blob = _checkpoint(1 << 20)
_execute("import asyncio\nasync def a(): await asyncio.sleep(0); return 1\nawait a()", "<cell 0>")
_execute("asyncio.run(a())", "<cell 0>")
_execute("print(xs[0], x)\nxs", "<cell 0>")
_checkpoint(1 << 20)
_checkpoints.restore(_blob)
sys.stdout, sys.stderr = _saved
_fresh_globals()
_checkpoints.clean()
aio.forget()
del _blob
# Everything so far lives as long as the instance. Freezing it keeps the garbage
# collector from walking (and so writing to, and copying) the snapshot's pages
# in every instance: cheaper first runs and less memory per session.
import gc  # noqa: E402

gc.collect()
gc.freeze()
