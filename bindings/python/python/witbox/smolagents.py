"""smolagents' ``CodeAgent`` with every code step in one witbox session.

    from smolagents import CodeAgent
    from witbox.smolagents import WitboxExecutor

    agent = CodeAgent(tools=[...], model=model, executor=WitboxExecutor())
    agent.run("...")

:class:`WitboxExecutor` is a smolagents ``PythonExecutor``. The agent's own
tools (``@tool`` functions, ``Tool`` objects, managed agents) are host
callbacks: functions inside the sandbox that run in this process, with their
arguments checked against their ``inputs`` first. Variables sent with
``send_variables`` (``agent.run(..., additional_args=...)``) are globals of the
session (JSON data). Print output is cut like smolagents' own
``max_print_outputs_length``; ``final_answer(x)`` ends the task; a failure is
raised as smolagents' ``InterpreterError`` in the words ``LocalPythonExecutor``
uses, so the agent sees it as an observation. When the session had to start
again (a crash, a memory bomb), the step's logs say so.

The sandbox has the standard library (and the packages of its runner), not
the host's packages: ``additional_authorized_imports`` lists what the agent's
prompt promises, and each is checked inside the sandbox when the executor
starts; one that is not there is refused with the reason, never ignored.
"""

from __future__ import annotations

import ast
import json
from typing import Any, Dict, Optional, Sequence

from smolagents.local_python_executor import (
    DEFAULT_MAX_LEN_OUTPUT,
    CodeOutput,
    InterpreterError,
    PythonExecutor,
)
from smolagents.utils import truncate_content

from . import InvalidArguments, Session
from ._callbacks import Callback

__all__ = ["WitboxExecutor"]

_OUT = "_witbox_out"

# smolagents' input types as JSON Schema.
_TYPES = {
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "array": {"type": "array"},
    "object": {"type": "object"},
}


def _parameters(inputs: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    properties, required = {}, []
    for name, spec in inputs.items():
        prop = dict(_TYPES.get(spec.get("type"), {}))
        if spec.get("description"):
            prop["description"] = spec["description"]
        properties[name] = prop
        if not spec.get("nullable"):
            required.append(name)
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _with_output(code: str, tree: ast.Module) -> str:
    """The code, made to end with the str() of what smolagents' executor calls
    the step's output: the last expression's value, or the value of a last
    assignment to a name. Lines keep their numbers."""
    if not tree.body:
        return code
    last = tree.body[-1]
    if isinstance(last, ast.Expr) and not isinstance(last.value, (ast.Yield, ast.YieldFrom, ast.Await)):
        lines = code.splitlines(True)
        line = lines[last.lineno - 1]
        # col_offset counts UTF-8 bytes.
        raw = line.encode()
        at = len(raw[: last.col_offset].decode(errors="ignore"))
        lines[last.lineno - 1] = line[:at] + f"{_OUT} = " + line[at:]
        code, name = "".join(lines), _OUT
    elif isinstance(last, ast.Assign) and len(last.targets) == 1 and isinstance(last.targets[0], ast.Name):
        name = last.targets[0].id
    else:
        return code
    return code.rstrip("\n") + f"\n(None if {name} is None else str({name}))\n"


class WitboxExecutor(PythonExecutor):
    """A smolagents executor whose steps run in one witbox session.

    Args:
        additional_authorized_imports: the modules the agent's prompt promises
            (pass the agent the same list); each must import in the sandbox.
        max_print_outputs_length: where print output is cut, as smolagents does.
        manifest: a ``witbox.toml`` whose runner (and WIT tools) to use.
        **policy: the session's policy keywords (``timeout_ms``, ``memory_mb``, ...).
    """

    def __init__(
        self,
        additional_authorized_imports: Sequence[str] = (),
        max_print_outputs_length: Optional[int] = None,
        *,
        manifest: Optional[str] = None,
        **policy: Any,
    ) -> None:
        self.max_print_outputs_length = max_print_outputs_length or DEFAULT_MAX_LEN_OUTPUT
        # The import probe uses a session of the same runner (its warm pool).
        self._fresh = lambda: Session(manifest=manifest, **policy)
        self.session = self._fresh()
        self.state: Dict[str, Any] = {}
        self._tools: Optional[set] = None
        self._pending: Dict[str, Any] = {}
        self.authorized_imports = list(additional_authorized_imports)
        self._check_imports()

    def _check_imports(self) -> None:
        names = [m for m in self.authorized_imports if m != "*"]
        if not names:
            return
        probe = self._fresh()
        try:
            r = probe.run(
                "import importlib.util\n"
                f"[m for m in {names!r} if importlib.util.find_spec(m.split('.')[0]) is None]"
            )
        finally:
            probe.close()
        missing = ast.literal_eval(r.value) if r.value else []
        if missing:
            raise InvalidArguments(
                f"the sandbox cannot import {', '.join(missing)}: it has the standard library "
                "and its runner's packages only; leave them out of additional_authorized_imports, "
                "or use a runner that has them (a manifest's `[runner] packages`, or runner=\"data\" "
                "for numpy and pandas)"
            )

    # -- smolagents' PythonExecutor ------------------------------------------

    def send_tools(self, tools: Dict[str, Any]) -> None:
        """The agent's tools (but ``final_answer``, which the sandbox has) as
        host callbacks."""
        wanted = {name: t for name, t in tools.items() if name != "final_answer"}
        if self._tools == set(wanted):
            return
        callbacks = [
            Callback(
                lambda _tool=tool, **kwargs: _tool(**kwargs),
                name=name,
                description=getattr(tool, "description", None),
                parameters=_parameters(getattr(tool, "inputs", None) or {}),
            )
            for name, tool in wanted.items()
        ]
        if callbacks:
            self.session._register(callbacks)
        self._tools = set(wanted)
        self._flush()

    def send_variables(self, variables: Dict[str, Any]) -> None:
        """Makes ``variables`` (JSON data) globals of the session."""
        if not variables:
            return
        try:
            json.dumps(variables)
        except (TypeError, ValueError) as e:
            raise InvalidArguments(f"the variables must be JSON data to enter the sandbox: {e}") from None
        self._pending.update(variables)
        if self._tools is not None:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            text = json.dumps(json.dumps(self._pending))
            self._pending = {}
            r = self.session.run(f"import json as _j\nglobals().update(_j.loads({text}))\ndel _j")
            r.raise_for_error()

    def __call__(self, code_action: str) -> CodeOutput:
        if self._tools is None:  # an executor used on its own
            self._tools = set()
            self._flush()
        try:
            tree = ast.parse(code_action)
        except SyntaxError as e:
            raise InterpreterError(
                f"Code parsing failed on line {e.lineno} due to: {type(e).__name__}: {str(e)}\n"
                f"{e.text}"
                f"{' ' * (e.offset or 0)}^"
            ) from None
        r = self.session.run(_with_output(code_action, tree))
        logs = r.stdout + r.stderr
        if r.session_restarted:
            restored = "its globals were put back" if r.globals_restored else "its globals are gone"
            logs = f"[the sandbox's session started again ({r.restart_reason}); {restored}]\n" + logs
        logs = truncate_content(logs, max_length=self.max_print_outputs_length)
        self.state["_print_outputs"] = logs
        if r.error is not None:
            line = self._statement(code_action, tree, r.error.line)
            raise InterpreterError(
                f"Code execution failed at line '{line}' due to: {r.error.type}: {r.error.message}"
            )
        if r.final_answer is not None:
            return CodeOutput(output=r.final_answer, logs=logs, is_final_answer=True)
        output = None
        if r.value is not None:
            try:
                output = ast.literal_eval(r.value)
            except (ValueError, SyntaxError):
                output = r.value
        return CodeOutput(output=output, logs=logs, is_final_answer=False)

    @staticmethod
    def _statement(code: str, tree: ast.Module, line: Optional[int]) -> str:
        """The top-level statement of ``code`` that holds ``line``."""
        for node in tree.body:
            if line is not None and node.lineno <= line <= (node.end_lineno or node.lineno):
                return ast.get_source_segment(code, node) or ""
        return tree.body[-1:] and ast.get_source_segment(code, tree.body[-1]) or ""

    def cleanup(self) -> None:
        self.session.close()
