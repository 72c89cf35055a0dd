"""witbox.langchain: tools invoked the way LangChain agents invoke them (a
ToolCall in, a ToolMessage out), sync and async, against real sandboxes."""

import asyncio
import json

from langchain_core.messages import ToolMessage

from witbox.langchain import python_tool, witbox_tools

from witbox_test import QUADRATIC, manifest


def call(tool, args, id="1"):
    return tool.invoke({"name": tool.name, "args": args, "id": id, "type": "tool_call"})


def test_the_python_tool_keeps_state_and_shows_errors():
    tool = python_tool(timeout_ms=2000)
    assert tool.name == "python"
    assert tool.args["code"]["type"] == "string"
    m = call(tool, {"code": "x = 6\nprint('set')"})
    assert isinstance(m, ToolMessage) and m.content == "set\n" and m.tool_call_id == "1"
    assert call(tool, {"code": "x * 7"}).content == "42\n"
    m = call(tool, {"code": "1/0"})
    assert "ZeroDivisionError: division by zero" in m.content
    m = call(tool, {"code": "while True: pass"})
    assert m.content.startswith("[the session started again (")
    assert "Timeout: the run was stopped after its time limit of 2000 ms" in m.content
    assert asyncio.run(tool.ainvoke({"code": "x + 1"})) == "7\n"


def test_wit_tools_become_langchain_tools(tmp_path):
    tools = {t.name: t for t in witbox_tools(manifest(tmp_path))}
    solve = tools["quadratic_solve"]
    assert set(solve.args) == {"a", "b", "c"}
    m = call(solve, {"a": 1, "b": -3, "c": 2})
    assert json.loads(m.content) == QUADRATIC
    # A failure is the tool's message, with its kind, for the model to read.
    m = call(solve, {"a": 0, "b": 0, "c": 1})
    assert (m.status, m.content) == ("error", 'tool-error: `quadratic_solve` returned an error: "no-solution"')
    m = call(solve, {"a": "x", "b": 0, "c": 1})
    assert m.status == "error"
    assert m.content == 'invalid-arguments: invalid arguments for `quadratic_solve`: `a`: expected a number, got the string "x"'
