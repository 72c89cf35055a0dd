"""Run smolagents' CodeAgent with every code step in a witbox sandbox.

`WitboxExecutor` is a smolagents `PythonExecutor`: it starts `witbox mcp` and
sends each code step to its `run_python` tool, in one session, so variables
persist between steps. The witbox tools the runner is granted (`--tool NAME`)
are plain functions inside the sandbox, and `final_answer(x)` ends the task
with `x`. `witbox_tools(executor)` describes those same tools to the agent, so
its system prompt lists them with their WIT docs.

    from smolagents import CodeAgent
    from witbox_executor import WitboxExecutor, witbox_tools

    executor = WitboxExecutor(tools=["quadratic_solve"])
    agent = CodeAgent(tools=witbox_tools(executor), model=model, executor=executor)
    agent.run("Solve x^2 - 3x + 2 = 0")

Only the standard library and smolagents are needed: the executor speaks MCP's
JSON-RPC over the pipe itself.
"""

import json
import os
import subprocess
from typing import Any

from smolagents import Tool
from smolagents.local_python_executor import CodeOutput, PythonExecutor


class WitboxError(Exception):
    """The code failed in the sandbox (the message is the traceback) or witbox did."""


class WitboxExecutor(PythonExecutor):
    def __init__(self, witbox="witbox", manifest=None, tools=(), timeout_ms=None, memory_mb=None):
        args = [witbox]
        if manifest:
            args += ["--manifest", str(manifest)]
        args.append("mcp")
        for name in tools:
            args += ["--tool", name]
        if timeout_ms:
            args += ["--timeout-ms", str(timeout_ms)]
        if memory_mb:
            args += ["--memory-mb", str(memory_mb)]
        self._process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self._next_id = 0
        self.session_id = None
        info = self._request(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "witbox-smolagents", "version": "0.1.0"},
            },
        )
        self.instructions = info.get("instructions", "")
        self._notify("notifications/initialized")
        self.tools = [t for t in self._request("tools/list")["tools"] if t["name"] not in ("run_python", "reset_session")]

    # --- JSON-RPC over the pipe -------------------------------------------------

    def _send(self, message):
        self._process.stdin.write(json.dumps(message) + "\n")
        self._process.stdin.flush()

    def _notify(self, method, params=None):
        self._send({"jsonrpc": "2.0", "method": method, **({"params": params} if params else {})})

    def _request(self, method, params=None):
        self._next_id += 1
        self._send({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params or {}})
        while True:
            line = self._process.stdout.readline()
            if not line:
                raise WitboxError(f"witbox exited (code {self._process.poll()}) during `{method}`")
            message = json.loads(line)
            if message.get("id") != self._next_id:
                continue  # a notification
            if "error" in message:
                raise WitboxError(f"`{method}` failed: {message['error'].get('message')}")
            return message["result"]

    def call_tool(self, name, arguments):
        """Calls a witbox tool directly; returns its structured result, raises WitboxError on failure."""
        result = self._request("tools/call", {"name": name, "arguments": arguments})
        text = "".join(c.get("text", "") for c in result.get("content", []))
        if result.get("isError"):
            raise WitboxError(text)
        return result.get("structuredContent", {}).get("result", result.get("structuredContent"))

    # --- smolagents' PythonExecutor ---------------------------------------------

    def send_tools(self, tools: dict[str, Tool]) -> None:
        # The witbox tools already are functions in the sandbox, and witbox has its
        # own `final_answer`; Python tools of the host process cannot run in there.
        foreign = sorted(set(tools) - {t["name"] for t in self.tools} - {"final_answer"})
        if foreign:
            raise WitboxError(
                f"these tools are not witbox tools and cannot run in the sandbox: {', '.join(foreign)}"
            )

    def send_variables(self, variables: dict[str, Any]) -> None:
        if variables:
            self(f"import json as _json\nglobals().update(_json.loads({json.dumps(json.dumps(variables))}))\ndel _json")

    def __call__(self, code_action: str) -> CodeOutput:
        arguments = {"code": code_action}
        if self.session_id:
            arguments["session_id"] = self.session_id
        result = self._request("tools/call", {"name": "run_python", "arguments": arguments})
        run = result.get("structuredContent") or {}
        if "session_id" not in run:  # a failure before the code ran
            raise WitboxError("".join(c.get("text", "") for c in result.get("content", [])))
        self.session_id = run["session_id"]
        logs = run["stdout"] + run["stderr"]
        if run["error"]:
            error = run["error"]
            raise WitboxError(f"{logs}{error['traceback'] or error['type'] + ': ' + error['message']}")
        if run["final_answer"] is not None:
            return CodeOutput(output=run["final_answer"], logs=logs, is_final_answer=True)
        return CodeOutput(output=run["value"], logs=logs, is_final_answer=False)

    def cleanup(self):
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()


_TYPES = {"number": "number", "integer": "integer", "string": "string", "boolean": "boolean", "array": "array", "object": "object"}


def witbox_tools(executor: WitboxExecutor) -> list[Tool]:
    """smolagents Tools describing the witbox tools, so the agent's prompt lists them.
    Called from the host they go through witbox too (`tools/call`)."""
    out = []
    for spec in executor.tools:
        schema = spec.get("inputSchema", {})
        required = set(schema.get("required", []))
        inputs = {}
        for name, p in schema.get("properties", {}).items():
            inputs[name] = {"type": _TYPES.get(p.get("type"), "any"), "description": p.get("description", name)}
            if name not in required:
                inputs[name]["nullable"] = True

        class WitboxTool(Tool):
            skip_forward_signature_validation = True

            def __init__(self, spec=spec, inputs=inputs):
                self.name = spec["name"]
                self.description = spec.get("description") or spec["name"]
                self.inputs = inputs
                self.output_type = "any"
                super().__init__()

            def forward(self, **kwargs):
                return executor.call_tool(self.name, kwargs)

        out.append(WitboxTool())
    return out


if __name__ == "__main__":
    # Run me with: cargo xtask build && .venv/bin/python examples/smolagents/witbox_executor.py
    # (OPENAI_API_KEY and WITBOX_MODEL set to use a real model through smolagents' OpenAIModel.)
    from smolagents import CodeAgent, OpenAIModel

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    executor = WitboxExecutor(
        witbox=os.path.join(root, "target/debug/witbox"),
        manifest=os.path.join(root, "witbox.toml"),
        tools=["quadratic_solve"],
    )
    model = OpenAIModel(model_id=os.environ.get("WITBOX_MODEL", "gpt-4o-mini"))
    agent = CodeAgent(tools=witbox_tools(executor), model=model, executor=executor)
    print(agent.run("Solve 2x^2 - 4x + 2 = 0 and give the roots."))
    executor.cleanup()
