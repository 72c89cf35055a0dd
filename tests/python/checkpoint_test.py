"""Tests of the runner's checkpoints (guests/python-runner/checkpoint.py) in a plain
Python: a cell runs in a dict as the runner runs it, a checkpoint is made, and a
restart is a fresh dict the checkpoint is restored into.

Run me with: python3 tests/python/checkpoint_test.py
"""

import ast
import builtins
import contextlib
import io
import linecache
import os
import sys
import types
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the guest's folder: its build would bundle it
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "guests", "python-runner"))

import checkpoint  # noqa: E402

LIMIT = 1 << 24


class Session:
    """One runner session: globals, cells numbered as the runner numbers them, and
    a checkpoint after each cell."""

    def __init__(self):
        self.globals = {"__name__": "__main__", "__builtins__": builtins, "__doc__": None}
        self.checkpoints = checkpoint.Checkpoints(self.globals)
        self.cell = 0

    def codes(self, code):
        """The cell's code objects, compiled as app.py compiles them."""
        self.cell += 1
        filename = f"<cell {self.cell}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        try:
            return filename, None, compile(code, filename, "eval")
        except SyntaxError:
            pass
        try:
            tree = ast.parse(code, filename=filename, mode="exec")
        except SyntaxError:
            return filename, None, None  # nothing runs
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = compile(ast.Expression(tree.body.pop().value), filename, "eval")
        return filename, compile(tree, filename, "exec"), last

    def run(self, code, max_bytes=LIMIT):
        """Runs a cell; returns its checkpoint (None: nothing changed)."""
        _, body, last = self.codes(code)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                if body is not None:
                    exec(body, self.globals)
                if last is not None:
                    repr(eval(last, self.globals))
        except Exception:  # the globals it set before the error still count
            pass
        return self.checkpoints.after((body, last), max_bytes, {"cell": self.cell})

    def user(self):
        return {k: v for k, v in self.globals.items() if k not in ("__builtins__", "__name__", "__doc__")}


def restart(blob):
    """A fresh session (a new instance) with `blob` restored; and what restore said."""
    session = Session()
    problems, meta = session.checkpoints.restore(blob)
    session.cell = meta.get("cell", 0)
    return session, problems


class Values(unittest.TestCase):
    def test_shared_references_survive(self):
        s = Session()
        blob = s.run("n = 7\nxs = [1, [2, 3]]\nys = xs\nd = {'xs': xs, 'inner': xs[1], 't': (xs,)}\n")
        r, problems = restart(blob)
        self.assertEqual(problems, [])
        g = r.globals
        self.assertEqual(g["n"], 7)
        self.assertEqual(g["xs"], [1, [2, 3]])
        self.assertIs(g["ys"], g["xs"])
        self.assertIs(g["d"]["xs"], g["xs"])
        self.assertIs(g["d"]["inner"], g["xs"][1])
        self.assertIs(g["d"]["t"][0], g["xs"])
        self.assertEqual(set(r.user()), {"n", "xs", "ys", "d"})

    def test_function_with_a_global_and_a_default(self):
        s = Session()
        blob = s.run("K = 10\ndef f(x, y=3, *, z=4):\n    'adds'\n    return x + y + z + K\n")
        r, problems = restart(blob)
        self.assertEqual(problems, [])
        f = r.globals["f"]
        self.assertEqual(f(1), 18)
        self.assertEqual(f.__doc__, "adds")
        self.assertIs(f.__globals__, r.globals)
        r.globals["K"] = 0  # it reads the restored session's globals
        self.assertEqual(f(1), 8)

    def test_closures_and_shared_cells(self):
        s = Session()
        blob = s.run(
            "def counter():\n"
            "    n = 0\n"
            "    def up():\n        nonlocal n\n        n += 1\n        return n\n"
            "    def get():\n        return n\n"
            "    return up, get\n"
            "up, get = counter()\nup(); up()\n"
        )
        r, problems = restart(blob)
        self.assertEqual(problems, [])
        up, get = r.globals["up"], r.globals["get"]
        self.assertEqual(get(), 2)
        self.assertEqual(up(), 3)
        self.assertEqual(get(), 3)  # one cell, still shared

    def test_class_method_naming_the_class_and_an_instance(self):
        s = Session()
        blob = s.run(
            "class Node:\n"
            "    kind = 'node'\n"
            "    def __init__(self, v):\n        self.v = v\n"
            "    def next(self):\n        return Node(self.v + 1)\n"
            "    @property\n    def double(self):\n        return self.v * 2\n"
            "    @classmethod\n    def zero(cls):\n        return cls(0)\n"
            "    @staticmethod\n    def name():\n        return 'Node'\n"
            "class Leaf(Node):\n"
            "    def next(self):\n        return super().next()\n"
            "Node.default = Node(7)\n"
            "n = Node(3)\nleaf = Leaf(1)\n"
        )
        r, problems = restart(blob)
        self.assertEqual(problems, [])
        g = r.globals
        Node = g["Node"]
        self.assertIsInstance(g["n"], Node)
        self.assertEqual(g["n"].next().v, 4)
        self.assertIsInstance(g["n"].next(), Node)
        self.assertIs(type(Node.default), Node)
        self.assertEqual((g["n"].double, Node.zero().v, Node.name(), Node.kind), (6, 0, "Node", "node"))
        self.assertEqual(g["leaf"].next().v, 2)
        self.assertTrue(issubclass(g["Leaf"], Node))

    def test_recursive_function(self):
        s = Session()
        blob = s.run("def fact(n):\n    return 1 if n <= 1 else n * fact(n - 1)\n")
        r, problems = restart(blob)
        self.assertEqual(problems, [])
        self.assertEqual(r.globals["fact"](10), 3628800)

    def test_module_alias(self):
        s = Session()
        blob = s.run("import math as m\nimport os.path\nfrom json import dumps\n")
        r, problems = restart(blob)
        self.assertEqual(problems, [])
        self.assertIs(r.globals["m"], sys.modules["math"])
        self.assertIs(r.globals["os"], sys.modules["os"])
        self.assertIs(r.globals["dumps"], sys.modules["json"].dumps)

    def test_stdlib_kinds(self):
        s = Session()
        blob = s.run(
            "import dataclasses, enum, functools, collections\n"
            "from typing import NamedTuple\n"
            "@dataclasses.dataclass\nclass P:\n    x: int\n    y: int = 0\n"
            "class Color(enum.Enum):\n    RED = 1\n    GREEN = 2\n"
            "    def low(self):\n        return self.name.lower()\n"
            "class Pt(NamedTuple):\n    x: int\n    y: int = 5\n"
            "@functools.lru_cache\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
            "p = P(1, 2)\ncol = Color.GREEN\npt = Pt(1)\nsq = lambda v: v * v\n"
            "cnt = collections.Counter('hello')\n"
        )
        r, problems = restart(blob)
        self.assertEqual(problems, [])
        g = r.globals
        self.assertEqual(repr(g["p"]), "P(x=1, y=2)")
        self.assertEqual([f.name for f in sys.modules["dataclasses"].fields(g["p"])], ["x", "y"])
        self.assertIs(g["col"], g["Color"].GREEN)
        self.assertEqual(g["col"].low(), "green")
        self.assertEqual(g["pt"]._replace(x=3), (3, 5))
        self.assertEqual(g["fib"](60), 1548008755920)
        self.assertEqual(g["sq"](4), 16)
        self.assertEqual(g["cnt"].most_common(1), [("l", 2)])

    def test_more_kinds(self):
        s = Session()
        blob = s.run(
            "import abc, functools\nfrom typing import Generic, TypeVar\n"
            "cyc = [1]\ncyc.append(cyc)\n"
            "class Model(abc.ABC):\n    field: int\n"
            "    @abc.abstractmethod\n    def go(self) -> int: ...\n"
            "class Impl(Model):\n    def go(self) -> int:\n        return 4\n"
            "class Slots:\n    __slots__ = ('a', '__b')\n"
            "    def __init__(self):\n        self.a, self.__b = 1, 2\n"
            "    def b(self):\n        return self.__b\n"
            "class Meta(type):\n    def __new__(m, name, bases, ns):\n"
            "        ns['tag'] = name.lower()\n        return super().__new__(m, name, bases, ns)\n"
            "class Tagged(metaclass=Meta):\n    pass\n"
            "def deco(fn):\n    @functools.wraps(fn)\n"
            "    def wrapper(*a):\n        return fn(*a) * 10\n    return wrapper\n"
            "@deco\ndef one(v):\n    return v\n"
            "part = functools.partial(one, 2)\n"
            "class Outer:\n    class Inner:\n        def hi(self):\n            return 'hi'\n"
            "bound = Outer.Inner().hi\n"
            "T = TypeVar('T')\nclass Box(Generic[T]):\n    def __init__(self, v):\n        self.v = v\n"
            "impl, slots, box = Impl(), Slots(), Box[int](3)\n"
        )
        r, problems = restart(blob)
        self.assertEqual(problems, [])
        g = r.globals
        self.assertIs(g["cyc"][1], g["cyc"])
        self.assertEqual(g["impl"].go(), 4)
        self.assertIsInstance(g["impl"], g["Model"])
        self.assertEqual(g["Model"].__annotations__, {"field": int})
        with self.assertRaises(TypeError):
            g["Model"]()  # still abstract
        self.assertEqual((g["slots"].a, g["slots"].b()), (1, 2))
        self.assertEqual((g["Tagged"].tag, type(g["Tagged"]).__name__), ("tagged", "Meta"))
        self.assertEqual((g["one"](3), g["one"].__name__, g["part"]()), (30, "one", 20))
        self.assertEqual(g["bound"](), "hi")
        self.assertEqual(g["Outer"].Inner.__qualname__, "Outer.Inner")
        self.assertEqual(g["box"].v, 3)
        self.assertEqual(g["Box"].__parameters__, (g["T"],))

    def test_too_deep_is_left_out_with_why(self):
        s = Session()
        blob = s.run("deep = []\nfor _ in range(100000):\n    deep = [deep]\nok = 1\n")
        r, problems = restart(blob)
        self.assertEqual(problems, ["deep: it is nested too deeply to checkpoint"])
        self.assertEqual(r.globals["ok"], 1)

    def test_source_comes_back_for_tracebacks(self):
        s = Session()
        blob = s.run("def boom():\n    return 1 / 0\n")
        filename = s.globals["boom"].__code__.co_filename
        del linecache.cache[filename]  # a new instance has not seen the cell
        r, _ = restart(blob)
        self.assertEqual(linecache.getline(filename, 2).strip(), "return 1 / 0")
        self.assertEqual(r.cell, 1)

    def test_runner_names_are_skipped(self):
        s = Session()
        blob = s.run("x = 1\nprint = print\n")
        header, _ = checkpoint._parse(blob)
        self.assertEqual(header["names"], ["x"])


class LeftOut(unittest.TestCase):
    def test_generator_is_left_out_with_why(self):
        s = Session()
        blob = s.run(
            "xs = [1, 2]\ngen = (i for i in xs)\n"
            "def make():\n    g = (i for i in xs)\n    return lambda: next(g)\n"
            "next_one = make()\n"
            "by_name = lambda: next(gen)\nkeep = 5\n"
        )
        r, problems = restart(blob)
        self.assertEqual(
            problems,
            ["gen: a generator cannot be checkpointed", "next_one: a generator cannot be checkpointed"],
        )
        # `by_name` finds `gen` in the globals when called: it is kept.
        self.assertEqual(set(r.user()), {"xs", "make", "by_name", "keep"})

    def test_file_object_is_left_out_with_why(self):
        s = Session()
        blob = s.run("import io\nf = io.TextIOWrapper(io.BytesIO())\nok = 'yes'\n")
        r, problems = restart(blob)
        self.assertEqual(len(problems), 1)
        self.assertRegex(problems[0], r"^f: cannot pickle '(_io\.)?TextIOWrapper' (object|instances)$")
        self.assertEqual(r.globals["ok"], "yes")

    def test_module_made_in_a_cell_is_left_out(self):
        s = Session()
        blob = s.run("import types\nscratch = types.ModuleType('scratch')\n")
        _, problems = restart(blob)
        self.assertEqual(problems, ["scratch: the module `scratch` cannot be imported again"])

    def test_over_the_limit_keeps_only_the_names(self):
        s = Session()
        blob = s.run("big = 'x' * 5000\nsmall = 1\ngen = (i for i in ())\n", max_bytes=2000)
        self.assertLess(len(blob), 2000)
        r, problems = restart(blob)
        self.assertEqual(r.user(), {})
        self.assertEqual(problems[0], "gen: a generator cannot be checkpointed")
        self.assertEqual([p.split(":")[0] for p in problems[1:]], ["big", "small"])
        for p in problems[1:]:
            self.assertRegex(p, r"^\w+: the checkpoint would take \d+ bytes, over its limit of 2000$")

    def test_a_module_that_no_longer_imports(self):
        sys.modules["wb_gone"] = types.ModuleType("wb_gone")
        try:
            s = Session()
            blob = s.run("import wb_gone as gone\nx = 1\n")
        finally:
            del sys.modules["wb_gone"]
        r, problems = restart(blob)
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("gone: the module `wb_gone` cannot be imported: "), problems)
        self.assertEqual(r.user(), {"x": 1})

    def test_a_value_that_fails_to_rebuild_is_reported_and_the_rest_restored(self):
        s = Session()
        blob = s.run(
            "class Two(Exception):\n"
            "    def __init__(self, a, b):\n        super().__init__(a + b)\n"
            "err = Two(1, 2)\nx = [1]\n"
        )
        r, problems = restart(blob)
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("err: it could not be rebuilt: TypeError: "), problems)
        self.assertEqual(r.globals["x"], [1])
        self.assertIn("Two", r.globals)


class Unchanged(unittest.TestCase):
    def session(self, code="x = 5\nxs = [1, 2, 3]\nt = (1, 'a')\nimport math\n"
                           "def grow(v):\n    xs.append(v)\n"):
        s = Session()
        self.assertIsNotNone(s.run(code))
        return s

    def test_first_checkpoint_is_full(self):
        self.assertIsNotNone(Session().run("print(1 + 1)"))

    def test_after_clean_a_first_cell_that_changes_nothing_returns_none(self):
        # A fresh session (a new instance, or after `reset`): the host keeps no
        # checkpoint for it, so nothing is needed until the globals change.
        s = Session()
        s.checkpoints.clean()
        for cell in ["print(1 + 1)", "len('abc')", "undefined_name", "", "1 +"]:
            with self.subTest(cell=cell):
                self.assertIsNone(s.run(cell))
        self.assertIsNotNone(s.run("x = 1"))
        self.assertIsNone(s.run("x"))
        s.globals.pop("x")
        s.checkpoints.clean()  # as `reset` does, after clearing the globals
        self.assertIsNone(s.run("print(2)"))
        for cell in ["import json", "globals()['y'] = 1", "def g(): pass"]:
            with self.subTest(cell=cell):
                fresh = Session()
                fresh.checkpoints.clean()
                self.assertIsNotNone(fresh.run(cell))

    def test_cells_that_change_nothing_return_none(self):
        s = self.session()
        for cell in ["print(1 + 1)", "x", "print(x)", "x + 1", "len(xs)", "xs[0]", "xs",
                     "print(t, math.pi)", "math.sqrt(x)", "[v * 2 for v in xs]", "undefined_name",
                     "f'{x}'", "1 +", "", "sorted(xs, reverse=True)", "x.bit_length()"]:
            with self.subTest(cell=cell):
                self.assertIsNone(s.run(cell))

    def test_cells_that_may_change_something_checkpoint(self):
        for cell in ["x = 6", "del x", "xs.append(4)", "xs[0] = 9", "grow(4)", "x += 1",
                     "import json", "globals()['y'] = 1", "exec('y = 1')", "for i in range(2): pass",
                     "math.tau = 1", "def g(): pass", "class C: pass", "print(x := 3)",
                     "xs.sort()", "vars()['y'] = 2", "(lambda: grow(1))()"]:
            with self.subTest(cell=cell):
                s = self.session()
                blob = s.run(cell)
                self.assertIsNotNone(blob)

    def test_a_user_function_that_mutates_a_list_checkpoints(self):
        s = self.session()
        blob = s.run("grow(4)")
        self.assertIsNotNone(blob)
        r, _ = restart(blob)
        self.assertEqual(r.globals["xs"], [1, 2, 3, 4])
        self.assertIsNone(s.run("print(xs)"))

    def test_a_session_function_put_into_builtins_is_not_a_builtin(self):
        s = self.session()
        self.assertIsNotNone(s.run("import builtins\nbuiltins.helper = grow"))
        try:
            self.assertIsNotNone(s.run("helper(5)"))
            self.assertIsNone(s.run("print(len(xs))"))
        finally:
            del builtins.helper

    def test_restore_and_forget_make_the_next_one_full(self):
        s = self.session()
        self.assertIsNone(s.run("x"))
        r, _ = restart(s.run("y = 1"))
        self.assertIsNotNone(r.run("x"))
        self.assertIsNone(r.run("x"))
        r.checkpoints.forget()  # reset, or a run that asked for no checkpoint
        self.assertIsNotNone(r.run("x"))

    def test_identity_is_checked(self):
        s = self.session()
        s.globals["x"] = 1000  # as a run without a checkpoint would, had it not forgotten
        self.assertIsNotNone(s.run("x"))


class Corrupt(unittest.TestCase):
    def blob(self):
        return Session().run("x = [1, 2, 3]\ndef f():\n    return x\n")

    def assertOneLine(self, blob, start):
        s = Session()
        problems, meta = s.checkpoints.restore(blob)
        self.assertEqual(len(problems), 1, problems)
        self.assertTrue(problems[0].startswith(start), problems)
        self.assertEqual(s.user(), {})
        self.assertEqual(meta, {})

    def test_not_a_checkpoint(self):
        self.assertOneLine(b"hello", "the checkpoint is not one of this runner's")
        self.assertOneLine(b"", "the checkpoint is not one of this runner's")

    def test_wrong_version(self):
        blob = self.blob()
        self.assertOneLine(blob[:4] + b"\x09" + blob[5:], "the checkpoint has format version 09")

    def test_cut_short(self):
        blob = self.blob()
        for n in (5, 7, 20, len(blob) - 1):
            with self.subTest(n=n):
                self.assertOneLine(blob[:n], "the checkpoint is corrupt")

    def test_a_flipped_byte(self):
        good = self.blob()
        for at in (9, 12, 30, len(good) - 10):  # the checksum, the header, the body
            with self.subTest(at=at):
                blob = bytearray(good)
                blob[at] ^= 0xFF
                self.assertOneLine(bytes(blob), "the checkpoint is corrupt")

    def test_another_python(self):
        blob = self.blob()
        old, checkpoint.PYTHON = checkpoint.PYTHON, "cpython-299:0000"
        try:
            self.assertOneLine(blob, "the checkpoint was made by another Python")
        finally:
            checkpoint.PYTHON = old


if __name__ == "__main__":
    unittest.main()
