"""LangChain tools backed by witbox (needs ``langchain-core``).

    from witbox.langchain import python_tool, witbox_tools

    tools = [python_tool(timeout_ms=5000), *witbox_tools("witbox.toml")]
    model.bind_tools(tools)    # then the agent calls them like any other tool

:func:`python_tool` is a Python REPL in one sandboxed session (globals kept
between calls); :func:`witbox_tools` turns the WIT tools of a manifest into
LangChain tools, each call in its component's sandbox. Both have sync and
async forms (``invoke`` / ``ainvoke``), and a failure reaches the model as the
tool's message, not as an exception of the agent.
"""

from __future__ import annotations

from typing import Any, List, Optional, Union
import os

from langchain_core.tools import StructuredTool, ToolException

from . import Result, Session, Tools, WitboxError

__all__ = ["python_tool", "witbox_tools", "observation"]

_CODE_SCHEMA = {
    "type": "object",
    "properties": {
        "code": {
            "type": "string",
            "description": "Python code to run. Variables persist between calls; the value of a "
            "last expression is shown; print() to show more.",
        }
    },
    "required": ["code"],
}


def observation(result: Result) -> str:
    """What the model reads of a run: its output, its value and its error."""
    parts = [result.stdout, result.stderr]
    if result.session_restarted:
        parts.insert(0, f"[the session started again ({result.restart_reason})]\n")
    if result.error is not None:
        parts.append(str(result.error))
    elif result.final_answer is not None:
        parts.append(f"final answer: {result.final_answer!r}")
    elif result.value is not None:
        parts.append(result.value)
    text = "".join(p if p.endswith("\n") or not p else p + "\n" for p in parts if p)
    return text or "(no output)"


def python_tool(
    session: Optional[Session] = None,
    *,
    name: str = "python",
    description: str = (
        "Runs Python 3 code in a sandbox: the standard library, no network, no host files, "
        "limits on time and memory. State persists between calls."
    ),
    **policy: Any,
) -> StructuredTool:
    """A LangChain tool that runs code in ``session`` (a new one with ``policy`` if none)."""
    s = session if session is not None else Session(**policy)

    def run(code: str) -> str:
        return observation(s.run(code))

    async def arun(code: str) -> str:
        return observation(await s.arun(code))

    return StructuredTool.from_function(
        func=run,
        coroutine=arun,
        name=name,
        description=description,
        args_schema=_CODE_SCHEMA,
    )


def witbox_tools(manifest: Union[str, os.PathLike]) -> List[StructuredTool]:
    """The WIT tools of a manifest as LangChain tools (name, description and JSON
    Schema from the components' WIT); a failed call is the tool's message."""
    tools = Tools(manifest)
    out = []
    for spec in tools.specs():

        def call(_name: str = spec.name, **args: Any) -> Any:
            try:
                return tools.call(_name, **args)
            except WitboxError as e:
                raise ToolException(f"{e.kind}: {e}") from None

        out.append(
            StructuredTool.from_function(
                func=call,
                name=spec.name,
                description=spec.description or spec.name,
                args_schema=spec.parameters,
                handle_tool_error=True,
            )
        )
    return out
