"""A CodeAgent whose code runs in witbox, driven by a scripted model (no network).

Run by `tests/all/mcp.rs`: python scripted_run.py WITBOX MANIFEST
Prints one JSON object: the agent's answer and the steps' observations.
"""

import json
import sys

from smolagents import CodeAgent
from smolagents.models import ChatMessage, Model

from witbox_executor import WitboxExecutor, witbox_tools

STEPS = [
    # Step 1: call the witbox tool from sandboxed code; the variable stays for step 2.
    "Thought: solve it with the tool.\n<code>\nroots = quadratic_solve(a=1, b=-3, c=2)\nprint(roots)\n</code>",
    # Step 2: a mistake, which comes back as an observation.
    "Thought: look at the first root.\n<code>\nprint(roots[5])\n</code>",
    # Step 3: answer from the kept state.
    "Thought: done.\n<code>\nfinal_answer(sorted(r['re'] for r in roots))\n</code>",
]


class ScriptedModel(Model):
    def __init__(self):
        super().__init__(model_id="scripted")
        self.prompts = []

    def generate(self, messages, stop_sequences=None, response_format=None, tools_to_call_from=None, **kwargs):
        self.prompts.append(messages)
        return ChatMessage(role="assistant", content=STEPS[len(self.prompts) - 1])


def main():
    witbox, manifest = sys.argv[1], sys.argv[2]
    executor = WitboxExecutor(witbox=witbox, manifest=manifest, tools=["quadratic_solve"])
    model = ScriptedModel()
    agent = CodeAgent(tools=witbox_tools(executor), model=model, executor=executor, max_steps=5, verbosity_level=0)
    try:
        answer = agent.run("Solve x^2 - 3x + 2 = 0")
        system = agent.memory.system_prompt.system_prompt
        observations = [getattr(s, "observations", None) for s in agent.memory.steps[1:]]
        errors = [str(getattr(s, "error", None) or "") for s in agent.memory.steps[1:]]
        print(json.dumps({
            "answer": answer,
            "steps": len(model.prompts),
            "prompt_lists_tool": "quadratic_solve" in system,
            "observations": observations,
            "errors": errors,
            "session_id": executor.session_id,
        }, default=str))
    finally:
        executor.cleanup()


main()
