"""witbox.smolagents.WitboxExecutor against smolagents' own LocalPythonExecutor:
the same scripted steps of a CodeAgent, and the observations the model sees
match (prints, values, errors, state); the agent's @tool runs as a host callback;
final_answer ends the task. No network: the model is scripted."""

import pytest
from smolagents.local_python_executor import InterpreterError
from smolagents import CodeAgent, tool
from smolagents.models import ChatMessage, Model

import witbox
from witbox.smolagents import WitboxExecutor

CALLS = []


@tool
def solve(a: float, b: float, c: float) -> list:
    """Solves a*x^2 + b*x + c = 0 for real roots.

    Args:
        a: the x^2 coefficient
        b: the x coefficient
        c: the constant
    """
    CALLS.append((a, b, c))
    d = (b * b - 4 * a * c) ** 0.5
    return [(-b + d) / (2 * a), (-b - d) / (2 * a)]


STEPS = [
    "Thought: solve it.\n<code>\nroots = solve(a=1, b=-3, c=2)\nprint(roots)\n</code>",
    "Thought: the sixth root.\n<code>\nprint('looking')\nprint(roots[5])\n</code>",
    "Thought: count them.\n<code>\nn = len(roots)\nn * 10\n</code>",
    "Thought: a label.\n<code>\nlabel = f'{n} roots of {scale}'\nlabel\n</code>",
    "Thought: done.\n<code>\nfinal_answer(sorted(roots))\n</code>",
]


class Scripted(Model):
    def __init__(self):
        super().__init__(model_id="scripted")
        self.turn = 0

    def generate(self, messages, stop_sequences=None, response_format=None, tools_to_call_from=None, **kwargs):
        self.turn += 1
        return ChatMessage(role="assistant", content=STEPS[self.turn - 1])


def observe(executor=None):
    CALLS.clear()
    agent = CodeAgent(tools=[solve], model=Scripted(), executor=executor, max_steps=6, verbosity_level=0)
    answer = agent.run("Solve x^2 - 3x + 2 = 0", additional_args={"scale": "ten"})
    steps = agent.memory.steps[1:]
    return {
        "answer": answer,
        "observations": [getattr(s, "observations", None) for s in steps],
        "errors": [str(getattr(s, "error", None) or "") for s in steps],
        "calls": list(CALLS),
    }


def test_the_observations_match_smolagents_own_executor():
    local = observe()
    executor = WitboxExecutor()
    try:
        sandboxed = observe(executor)
    finally:
        executor.cleanup()
    # smolagents' own interpreter words an error its way ("InterpreterError: Could
    # not index ..."); the sandbox's is CPython's. Both name the line and the error.
    local_errors, errors = local.pop("errors"), sandboxed.pop("errors")
    assert sandboxed == local, (sandboxed, local)
    for mine, theirs in zip(errors, local_errors):
        assert bool(mine) == bool(theirs)
        assert mine.split(" due to: ")[0] == theirs.split(" due to: ")[0]
        assert mine.split(": ", 1)[-1][-30:] == theirs[-30:], (mine, theirs)
    sandboxed["errors"] = errors
    assert sandboxed["answer"] == [1.0, 2.0]
    assert sandboxed["calls"] == [(1, -3, 2)]
    assert "IndexError: list index out of range" in sandboxed["errors"][1]
    assert sandboxed["observations"][2].endswith("Last output from code snippet:\n20")


def test_print_output_is_cut_like_smolagents():
    executor = WitboxExecutor(max_print_outputs_length=100)
    try:
        out = executor("print('x' * 1000)")
        assert len(out.logs) < 200
        assert "_This content has been truncated to stay below 100 characters_" in out.logs
    finally:
        executor.cleanup()


def test_imports_the_sandbox_lacks_are_refused_not_ignored():
    with pytest.raises(witbox.InvalidArguments, match="the sandbox cannot import numpy"):
        WitboxExecutor(additional_authorized_imports=["numpy", "json"])
    executor = WitboxExecutor(additional_authorized_imports=["json", "statistics"])
    executor.cleanup()


def test_a_restart_is_reported_to_the_agent():
    executor = WitboxExecutor(timeout_ms=300)
    try:
        executor("kept = 1")
        with pytest.raises(InterpreterError, match="due to: Timeout: the run was stopped after its time limit of 300 ms"):
            executor("while True: pass")
        assert executor.state["_print_outputs"].startswith("[the sandbox's session started again (")
        assert "its globals were put back]" in executor.state["_print_outputs"]
        assert executor("kept").output == "1"
    finally:
        executor.cleanup()
