"""Host callbacks: Python functions of the host that sandboxed code calls.

A function becomes a tool: its JSON Schema comes from its type hints, its
description from its docstring (the first paragraph; an ``Args:`` section
describes the parameters). A call's arguments are checked against the hints
before the function runs; what it raises comes back to the sandbox as a
``ToolError``. The sandbox only sees the JSON result, never the function.
"""

from __future__ import annotations

import json
import typing
from typing import Any, Callable, Dict, List, Optional, Tuple

# `inspect` and `re` are imported where a callback is made: `import witbox`
# stays quick.

_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean"}


def _schema(hint: Any) -> Tuple[Dict[str, Any], bool]:
    """The JSON Schema of a type hint, and whether it allows None."""
    import inspect

    if hint is inspect.Parameter.empty or hint is Any:
        return {}, False
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        rest = [a for a in args if a is not type(None)]
        nullable = len(rest) < len(args)
        if len(rest) == 1:
            schema, _ = _schema(rest[0])
            return schema, nullable
        return {"anyOf": [_schema(a)[0] for a in rest]}, nullable
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}, False
    if hint in (list, tuple) or origin in (list, tuple, typing.List):
        schema: Dict[str, Any] = {"type": "array"}
        if args and args[-1] is not Ellipsis:
            schema["items"] = _schema(args[0])[0]
        return schema, False
    if hint is dict or origin in (dict, typing.Dict):
        return {"type": "object"}, False
    if origin is typing.Literal:
        return {"enum": list(args)}, False
    return {}, False


def _doc(fn: Callable) -> Tuple[str, Dict[str, str]]:
    """The description (the docstring's first paragraph) and, from an
    ``Args:`` section, each parameter's words."""
    import inspect
    import re

    doc = inspect.getdoc(fn) or ""
    description = doc.split("\n\n")[0].strip()
    params: Dict[str, str] = {}
    section = re.search(r"^(?:Args|Arguments|Parameters):\s*\n((?:[ \t]+.*\n?)+)", doc, re.M)
    if section:
        for line in section.group(1).splitlines():
            m = re.match(r"\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)", line)
            if m:
                params[m.group(1)] = m.group(2).strip()
    return description, params


class Callback:
    """One host function as a tool."""

    def __init__(
        self,
        fn: Callable,
        name: Optional[str] = None,
        description: Optional[str] = None,
        parameters: Optional[Dict[str, Any]] = None,
    ):
        import inspect

        if not callable(fn):
            raise TypeError(f"a tool must be a function, not {type(fn).__name__}")
        self.fn = fn
        self.name = name or fn.__name__
        doc, words = _doc(fn)
        self.description = description or doc or f"The host function `{self.name}`."
        self.signature = inspect.signature(fn)
        if parameters is not None:  # a schema of its own (a smolagents Tool's inputs)
            self.parameters = parameters
            required = set(parameters.get("required", []))
            self.checks = {
                k: (p, k not in required) for k, p in parameters.get("properties", {}).items()
            }
            return
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # noqa: BLE001 - unresolvable hints: untyped parameters
            hints = {}
        properties: Dict[str, Any] = {}
        required: List[str] = []
        self.checks: Dict[str, Tuple[Dict[str, Any], bool]] = {}
        for p in self.signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            schema, nullable = _schema(hints.get(p.name, p.annotation))
            self.checks[p.name] = (schema, nullable)
            prop = dict(schema)
            if p.name in words:
                prop["description"] = words[p.name]
            properties[p.name] = prop
            if p.default is p.empty and not nullable:
                required.append(p.name)
        self.parameters = {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": any(
                p.kind == p.VAR_KEYWORD for p in self.signature.parameters.values()
            ),
        }

    def spec(self) -> Dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    def check(self, args: Dict[str, Any]) -> Optional[str]:
        """Why `args` do not fit the function's hints, if they do not."""
        for name in self.parameters["required"]:
            if name not in args:
                return f"`{self.name}` needs the argument `{name}`"
        if not self.parameters["additionalProperties"]:
            extra = sorted(set(args) - set(self.checks))
            if extra:
                return f"`{self.name}` has no argument `{extra[0]}`; it takes {', '.join(self.checks) or 'none'}"
        for name, value in args.items():
            schema, nullable = self.checks.get(name, ({}, True))
            if value is None and nullable:
                continue
            why = _mismatch(value, schema)
            if why:
                return f"the argument `{name}` of `{self.name}` {why}"
        return None


def _mismatch(value: Any, schema: Dict[str, Any]) -> Optional[str]:
    kind = schema.get("type")
    ok = {
        None: lambda v: True,
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }.get(kind, lambda v: True)
    if not ok(value):
        article = "an" if kind[0] in "aeiou" else "a"
        return f"must be {article} {kind}, not {json.dumps(value)[:80]}"
    if "enum" in schema and value not in schema["enum"]:
        return f"must be one of {', '.join(map(json.dumps, schema['enum']))}"
    if "anyOf" in schema and all(_mismatch(value, s) for s in schema["anyOf"]):
        return "matches none of its types"
    if kind == "array" and "items" in schema:
        for i, item in enumerate(value):
            why = _mismatch(item, schema["items"])
            if why:
                return f"[{i}] {why}"
    return None


class Callbacks:
    """A session's host functions, and the dispatcher the native module calls."""

    def __init__(self) -> None:
        self.by_name: Dict[str, Callback] = {}

    def add(self, cb: Callback) -> None:
        self.by_name[cb.name] = cb

    def specs_json(self) -> str:
        return json.dumps([cb.spec() for cb in self.by_name.values()])

    def dispatch(self, name: str, args_json: str) -> str:
        """Runs a call from the sandbox; its reply as JSON: ``{"ok": result}`` or
        ``{"error": {"kind", "message", "detail"}}``."""
        cb = self.by_name[name]
        args = json.loads(args_json)
        why = cb.check(args)
        if why:
            return json.dumps({"error": {"kind": "invalid-arguments", "message": why}})
        try:
            result = cb.fn(**args)
        except Exception as e:  # noqa: BLE001 - the sandbox gets it as a ToolError
            kind = type(e).__name__
            return json.dumps(
                {
                    "error": {
                        "kind": "tool-error",
                        "message": f"`{name}` raised {kind}: {e}",
                        "detail": {"type": kind, "message": str(e)},
                    }
                }
            )
        try:
            return json.dumps({"ok": result})
        except (TypeError, ValueError) as e:
            return json.dumps(
                {
                    "error": {
                        "kind": "tool-error",
                        "message": f"`{name}` returned a value that is not JSON: {e}",
                        "detail": {"type": "TypeError", "message": str(e)},
                    }
                }
            )
