"""The witbox Python code runner (world `witbox:agent/code-runner`).

componentize-py runs this module at build time and snapshots the interpreter,
so everything imported here is in the component and costs nothing at run time.
Each instance is one session: `run` executes a cell in the session's globals,
like a notebook (cells.py), and `reset` forgets them. When asked, `run` also
returns a checkpoint of the globals, which `restore` puts back into a fresh
instance after the old one died (checkpoint.py). This file is what only the
component has: its whole stdlib imported now, what the sandbox refuses, and the
WIT types.
"""

import errno
import importlib
import io
import sys
import types

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

import cells  # noqa: E402

cells.RUNNER_FILES.add(__file__ if "__file__" in globals() else "app.py")
cells.NOT_INSTALLED = (
    "The witbox sandbox has the standard library and "
    + (f"the packages {', '.join(PACKAGES)}" if PACKAGES else "no other packages")
    + "; add one to `[runner] packages` in the manifest."
)


def _tool_error(name, case):
    kind = type(case).__name__.split("_", 1)[-1]
    kind = {"InvalidArguments": "invalid-arguments"}.get(kind, kind.lower())
    return cells.tool_error(name, kind, case.value)


def _send(name, text):
    try:
        return host.call_tool(name, text)
    except Err as e:
        raise _tool_error(name, e.value) from None


def _tools():
    specs = [cells.ToolSpec(s.name, s.description, s.parameters_json) for s in host.list_tools()]
    return specs, _send


cells.tool_source = _tools


def _wit_error(e):
    if e is None:
        return None
    return RunError(
        type=e.type, message=e.message, traceback=e.traceback, line=e.line, column=e.column
    )


class Runner(exports.Runner):
    def run(self, code: str, options: RunOptions) -> RunResult:
        if "\x00" in code:
            raise Err(RunFailure_InvalidInput("the code contains a NUL byte"))
        r = cells.run(
            code,
            options.max_output_bytes,
            options.stream,
            options.checkpoint,
            options.checkpoint_max_bytes,
        )
        return RunResult(
            stdout=r.stdout,
            stderr=r.stderr,
            value=r.value,
            error=_wit_error(r.error),
            final_answer=r.final_answer,
            checkpoint=r.checkpoint,
        )

    def reset(self) -> None:
        cells.reset()

    def restore(self, state: bytes) -> list[str]:
        return cells.restore(state)


def _fill_heap_holes():
    """Fills the free chunks that the imports and the warm-up left in the heap, so
    that a session's first cell allocates from the top of the heap (a few pages in
    a row) instead of from holes spread over the whole snapshot, each of which
    copies its page: 100 pages fewer per session, measured with memprobe.py.
    CPython here allocates every object with wasi-libc's dlmalloc (chunks of 16
    bytes and up, 4 bytes of overhead). Largest first, each size until its
    allocations come from the top: one after another, above every live object.
    The filler lives as long as the instance, in the snapshot every session
    shares; if a stage cannot reach the top (another allocator), nothing is kept."""
    import gc

    gc.collect()
    gc.unfreeze()
    hi = max(map(id, gc.get_objects()))
    filler = []
    for chunk in (1 << 16, 1 << 14, 1 << 12, 1 << 10, 256, 128, 64, 48, 32):
        n = chunk - 21  # bytes(n) takes 17 + n bytes
        last = streak = 0
        for _ in range((8 << 20) // chunk):
            o = bytes(n)
            filler.append(o)
            a = id(o)
            streak = streak + 1 if a > hi and a == last + chunk else 0
            last = a
            if streak == 4:
                break
        else:
            filler = []
            break
    gc.collect()
    gc.freeze()
    return filler


def _gather_code(modules):
    """Gives the runner's own functions fresh copies of their code objects, made one
    after another at the top of the heap: a run writes to the code of every function
    it calls (refcounts and the interpreter's adaptive counters), and gathered they
    are a few pages instead of one page each among the stdlib's objects. The old
    code is held until all are copied, so that no copy takes the place of one."""
    old = []

    def fresh(code):
        old.append(code)
        consts = tuple(fresh(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
        return code.replace(co_consts=consts)

    def move(f):
        if isinstance(f, (staticmethod, classmethod)):
            f = f.__func__
        if isinstance(f, property):
            for g in (f.fget, f.fset, f.fdel):
                move(g)
        elif isinstance(f, types.FunctionType) and f.__module__ in names:
            f.__code__ = fresh(f.__code__)

    names = {m.__name__ for m in modules}
    for m in modules:
        for v in list(vars(m).values()):
            if isinstance(v, type) and v.__module__ in names:
                for a in list(vars(v).values()):
                    move(a)
            else:
                move(v)


def _warm_export():
    """Runs cells through the export as the host calls it (the WIT types, `cells.run`
    and its checkpoint), then forgets them: that path is quickened in the snapshot.
    The host cannot be called now, so the tools come from a stand-in that lists
    none; and componentize-py reseeds `random` at the first call, so that too."""
    import random

    source, cells.tool_source = cells.tool_source, lambda: ([], _send)
    options = RunOptions(max_output_bytes=1024, checkpoint=True, checkpoint_max_bytes=1 << 20, stream=False)
    for code in ("x = 1", "print(1+1)", "x = 2\nx", "print(1+1)"):
        cells._tools_installed = False
        Runner().run(code, options)
        random.seed()
    cells.tool_source = source
    cells._tools_installed = False
    cells.reset()


# What a session's first cell copies of the snapshot is what makes a live session's
# memory (bindings/python/memprobe.py shows it): warm the paths it takes, fill the
# heap's holes, gather the runner's code at the top, warm that code, fill again.
cells.warm_up()
_filler = _fill_heap_holes()
_gather_code([cells, cells.checkpoint, cells.aio, sys.modules[__name__], sys.modules[RunResult.__module__]])
_warm_export()
_filler += _fill_heap_holes()
