"""The OpenAI Agents SDK with a code tool that runs in a witbox session.

    pip install witbox openai-agents     # witbox: the wheel of `cargo xtask wheel`
    OPENAI_API_KEY=... python examples/openai_agents/sandbox_tool.py

The agent's `run_python` tool runs each snippet in one sandboxed session (its
globals persist between calls), with no network, no host files and limits on
time and memory. A host function given to the session (`exchange_rate`) is
callable from the sandboxed code, and only from there. (An example: the test
suite covers the witbox calls it makes, not the SDK, which needs a model.)
"""

import asyncio

from agents import Agent, Runner, function_tool

import witbox


def exchange_rate(base: str, quote: str) -> float:
    """The exchange rate from `base` to `quote` (a fixed table, for the example)."""
    return {("EUR", "USD"): 1.08, ("USD", "EUR"): 0.93}.get((base, quote), 1.0)


session = witbox.Session(timeout_ms=5000, memory_mb=256, tools=[exchange_rate])


@function_tool
async def run_python(code: str) -> str:
    """Runs Python code in a sandbox and returns what it printed, its last value
    or its error. Variables persist between calls. `exchange_rate(base, quote)` is
    available as a function."""
    result = await session.arun(code)
    if result.error is not None:
        return f"{result.stdout}{result.error}"
    return result.stdout + (result.value or "")


agent = Agent(
    name="analyst",
    instructions="Answer with the help of run_python; compute, do not guess.",
    tools=[run_python],
)


async def main():
    answer = await Runner.run(agent, "How many US dollars are 250 euros, to the cent?")
    print(answer.final_output)
    session.close()


if __name__ == "__main__":
    asyncio.run(main())
