"""Checkpoints of a runner session: its globals as bytes, and back.

This module does not import `wit_world`, so it runs (and is tested) in a plain
Python too: `tests/python/checkpoint_test.py`.

A checkpoint is `MAGIC`, the length of a header and a CRC-32 of what follows,
the header (marshal: the
Python it was made by, the names it holds, the names it left out and why, the
source of the cells its code comes from, the runner's own `meta`) and the body:
one pickle of the globals, so values that share an object still share it after
`restore`. Functions and classes defined in cells cannot be pickled by
reference (there is no module to import them from), so they are pickled by
value: functions as their marshalled code plus the rest of their state,
classes as a skeleton plus their namespace, both rebuilt over the session's
globals. Modules are stored by name and imported again.

Whether a cell may have changed anything is decided from its code objects
(`Checkpoints.after`), so a cell like `print(x)` costs a set lookup or two,
not a pickle.
"""

import binascii
import builtins
import dataclasses
import enum
import functools
import importlib
import importlib.util
import io
import linecache
import marshal
import opcode
import pickle
import struct
import sys
import types
import typing

MAGIC = b"WBCK\x01"
# Code objects are marshalled, and marshal (and bytecode) is per CPython version:
# a checkpoint is read back only by the same one.
PYTHON = sys.implementation.cache_tag + ":" + importlib.util.MAGIC_NUMBER.hex()
_PROTOCOL = 5
_HEAD = struct.Struct("<II")  # the header's length, the CRC-32 of header and body
_REASON_CHARS = 300

_CodeType = types.CodeType
_FunctionType = types.FunctionType
_ModuleType = types.ModuleType
_CellType = types.CellType
_BuiltinFunctionType = types.BuiltinFunctionType
_MISSING = object()
# The builtins as they were before the runner (or a cell) added to them: a name
# found there is a builtin's; one found only in `builtins` now may be anything.
_BUILTINS = builtins.__dict__
_ORIGINAL_BUILTINS = dict(_BUILTINS)
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement or type()


class _CannotCheckpoint(Exception):
    """A value this module knows cannot be checkpointed, and why, in words."""


# --- Deciding that a cell cannot have changed anything ---------------------------

def _ops(*names):
    return frozenset(opcode.opmap[n] for n in names if n in opcode.opmap)


# Instructions that bind, delete or mutate something by themselves (a local of a
# function or comprehension is not state: STORE_FAST is not here).
_STORES = _ops(
    "STORE_NAME", "DELETE_NAME", "STORE_GLOBAL", "DELETE_GLOBAL",
    "STORE_ATTR", "DELETE_ATTR", "STORE_SUBSCR", "DELETE_SUBSCR", "STORE_SLICE",
    "IMPORT_NAME", "IMPORT_FROM", "IMPORT_STAR", "SETUP_ANNOTATIONS", "LOAD_BUILD_CLASS",
)
# Instructions that look up an attribute (a method call is one): on a mutable
# value they may be how it is changed (`xs.append(1)`, `heapq.heappush(xs, 1)`).
_ATTRS = _ops("LOAD_ATTR", "LOAD_METHOD", "LOAD_SUPER_ATTR")
# Names (of builtins or attributes) through which code can reach and change
# globals without a store instruction, or reach objects it does not name: a cell
# that uses one is checkpointed. (A global of that name is judged by its value.)
_DOUBT = frozenset("""
exec eval compile globals locals vars setattr delattr getattr __import__ breakpoint
memoryview
f_globals f_locals f_back f_builtins gi_frame cr_frame ag_frame tb_frame tb_next
__globals__ __dict__ __closure__ __code__ __defaults__ __kwdefaults__ __self__ __func__
__wrapped__ __subclasses__ __class__ __bases__ __mro__ __base__ __builtins__
_getframe currentframe stack trace getouterframes get_objects get_referrers
get_referents modules _globals __setattr__ __delattr__ __setitem__ __delitem__
""".split())

_SCALARS = frozenset({int, float, complex, str, bytes, bool, type(None), range, type(...)})
_STATIC, _DATA, _OTHER = "static", "data", "other"
# How many items the data check looks at in one global before it gives up
# (and so counts the global as something a cell could change).
_DATA_BUDGET = 10_000


def _code_names(codes):
    """The names the code objects (and the code nested in them) use, and whether
    they look up attributes; None when an instruction may change state itself."""
    names, attrs = set(), False
    stack = [c for c in codes if c is not None]
    while stack:
        code = stack.pop()
        ops = code.co_code[::2]  # wordcode: the opcodes sit at even offsets
        if not _STORES.isdisjoint(ops):
            return None, True
        if not attrs and not _ATTRS.isdisjoint(ops):
            attrs = True
        names.update(code.co_names)
        for const in code.co_consts:
            if type(const) is _CodeType:
                stack.append(const)
    return names, attrs


def _resolves(obj):
    """Whether pickle can find `obj` again by its module and qualified name."""
    try:
        module = sys.modules.get(obj.__module__)
        found = module
        for part in obj.__qualname__.split("."):
            found = getattr(found, part)
    except Exception:  # noqa: BLE001 - any failure means "not by reference"
        return False
    return module is not None and found is obj


# --- Pickling --------------------------------------------------------------------

class _Entry:
    """One global, when the globals are pickled one by one to learn which fail."""

    __slots__ = ("name", "value")

    def __init__(self, name, value):
        self.name = name
        self.value = value


class _Pickler(pickle.Pickler):
    """Pickles functions, classes, code, cells and modules of a session by value,
    and the rest as pickle does."""

    def __init__(self, file, session):
        super().__init__(file, protocol=_PROTOCOL)
        self._session = session
        self._g = session.globals
        self._foreign = {}  # id(globals of a by-value function) -> the dict rebuilt
        self._injected = None
        self.sources = set()  # cell files whose code is in the checkpoint
        self.current = None  # the name of the global being pickled (with _Entry)

    def reducer_override(self, obj):
        # Called for every object that is not an int, float, str, bytes, None,
        # bool or builtin container: keep the common path short.
        t = type(obj)
        reduce = _REDUCERS.get(t)
        if reduce is not None:
            return reduce(self, obj)
        if issubclass(t, type):
            return self._class(obj)
        return NotImplemented

    def _entry(self, e):
        self.current = e.name
        return _entry, (e.name, e.value)

    def _function(self, f):
        g = f.__globals__
        if g is self._g:
            where = None
        elif f.__module__ not in ("__main__", None) and _resolves(f):
            return NotImplemented
        else:
            name = self._injected_name(f)
            if name is not None:
                return _builtin, (name,)
            where = self._globals_of(f)
        code = f.__code__
        cells = f.__closure__
        state = {"qualname": f.__qualname__}
        if f.__defaults__:
            state["defaults"] = f.__defaults__
        if f.__kwdefaults__:
            state["kwdefaults"] = f.__kwdefaults__
        if f.__dict__:
            state["dict"] = f.__dict__
        if f.__doc__ is not None:
            state["doc"] = f.__doc__
        if f.__module__ != "__main__":
            state["module"] = f.__module__
        # 3.14 evaluates annotations lazily: take the function that makes them
        # (reading `__annotations__` runs it, and it may raise), unless it reads
        # a class's namespace, which only the rebuilt class has.
        annotate = getattr(f, "__annotate__", None)
        if annotate is not None and not _reads_class_dict(annotate):
            state["annotate"] = annotate
        else:
            annotations = _annotations(f)
            if annotations:
                state["annotations"] = annotations
        params = getattr(f, "__type_params__", None)
        if params:
            state["type_params"] = params
        if cells:
            state["cells"] = tuple(_cell_value(c) for c in cells)
        if type(where) is dict:
            state["globals"] = {n: where[n] for n in _global_names(code) if n in f.__globals__}
            where = self._foreign.setdefault(id(g), {})
        return (_make_function, (code, where, f.__name__, cells), state, None, None,
                _set_function_state)

    def _globals_of(self, f):
        """Where a function that is not the session's finds its globals: a module
        by name, or else (a function made by `exec`, as dataclasses and
        namedtuple make them) the names its code uses."""
        g = f.__globals__
        module = sys.modules.get(g.get("__name__")) if type(g.get("__name__")) is str else None
        if module is not None and getattr(module, "__dict__", None) is g and _resolves_module(module):
            return module.__name__
        return g  # rebuilt from the names the code uses (see _function)

    def _injected_name(self, obj):
        if self._injected is None:
            self._injected = {}
            for name in self._session.injected():
                value = getattr(builtins, name, None)
                if value is not None:
                    self._injected[id(value)] = name
        return self._injected.get(id(obj))

    def _code(self, code):
        filename = code.co_filename
        if filename in linecache.cache and filename.startswith(self._session.source_prefix):
            self.sources.add(filename)
        return marshal.loads, (marshal.dumps(code),)

    def _class(self, cls):
        if not cls.__flags__ & _HEAPTYPE or cls.__module__ != "__main__" and _resolves(cls):
            return NotImplemented  # a type of C code, or one pickle finds by name
        name = self._injected_name(cls)
        if name is not None:
            return _builtin, (name,)
        meta = type(cls)
        if isinstance(cls, enum.EnumMeta):
            return self._enum(cls)
        namespace = dict(cls.__dict__)
        kwds = {}
        slots = namespace.get("__slots__")
        if slots is not None:
            slots = (slots,) if isinstance(slots, str) else tuple(slots)
            kwds["__slots__"] = slots
            for slot in slots:
                namespace.pop(_mangle(cls.__name__, slot), None)
        for key in ("__slots__", "__dict__", "__weakref__", "_abc_impl"):
            namespace.pop(key, None)
        # `class Box(Generic[T])`: its bases are (Generic,), made from what it was
        # written with, which types.new_class resolves again (not `NamedTuple` or
        # `TypedDict`, functions whose classes are made as their bases say).
        bases = cls.__bases__
        orig = cls.__dict__.get("__orig_bases__")
        if type(orig) is tuple and all(isinstance(b, type) or hasattr(b, "__origin__") for b in orig):
            bases = orig
            namespace.pop("__orig_bases__")
        # 3.14: the function that makes the annotations reads the class's own
        # dict: store them made (as 3.13 kept them) instead.
        if "__annotate_func__" in namespace or "__annotate__" in namespace:
            for key in ("__annotate_func__", "__annotate__", "__annotations_cache__"):
                namespace.pop(key, None)
            annotations = _annotations(cls)
            if annotations:
                namespace["__annotations__"] = annotations
        return (_make_class, (meta, cls.__name__, bases, kwds),
                (cls.__qualname__, namespace), None, None, _set_class_state)

    def _enum(self, cls):
        members = {k: m._value_ for k, m in cls.__members__.items()}
        at_creation, after = {}, {}
        for key, value in cls.__dict__.items():
            if key in members or key in _ENUM_INTERNAL:
                continue
            if key.startswith("__") or hasattr(type(value), "__get__"):
                at_creation[key] = value  # methods, properties, __init__, ...
            else:
                after[key] = value
        new = cls.__dict__.get("__new_member__")
        if type(new) is _FunctionType and new.__globals__ is self._g:
            at_creation["__new__"] = new
        return (_make_enum, (type(cls), cls.__name__, cls.__bases__, at_creation, members),
                (cls.__qualname__, after), None, None, _set_class_state)

    def _module(self, module):
        name = module.__name__
        if not _resolves_module(module):
            raise _CannotCheckpoint(f"the module `{name}` cannot be imported again")
        return _import_module, (name,)

    def _typevar(self, tv):
        module = sys.modules.get(tv.__module__)
        if tv.__module__ != "__main__" and getattr(module, tv.__name__, None) is tv:
            return NotImplemented  # typing.AnyStr and the like, by name
        kwds = {"bound": tv.__bound__, "covariant": tv.__covariant__,
                "contravariant": tv.__contravariant__}
        return _make_typevar, (tv.__name__, tv.__constraints__, kwds)

    def _lru_cache(self, f):
        params = f.cache_parameters()
        return _make_lru_cache, (f.__wrapped__, params["maxsize"], params["typed"])


def _resolves_module(module):
    name = getattr(module, "__name__", None)
    return type(name) is str and sys.modules.get(name) is module


def _mangle(cls_name, name):
    if name.startswith("__") and not name.endswith("__"):
        return "_" + cls_name.lstrip("_") + name
    return name


def _reads_class_dict(annotate):
    code = getattr(annotate, "__code__", None)
    return code is not None and "__classdict__" in code.co_freevars


def _annotations(obj):
    """The annotations of `obj` as a dict, or None if making them fails."""
    try:
        annotations = obj.__annotations__
    except Exception:  # noqa: BLE001 - a name an annotation uses is not defined
        return None
    return dict(annotations) if annotations else None


def _cell_value(cell):
    try:
        return cell.cell_contents
    except ValueError:  # a free variable not bound yet
        return _EMPTY_CELL


def _global_names(code):
    names, stack = set(), [code]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(k for k in c.co_consts if type(k) is _CodeType)
    return names


def _refuse(why):
    def reduce(self, obj):
        raise _CannotCheckpoint(why)
    return reduce


def _by(callable_, *attrs):
    def reduce(self, obj):
        return callable_, tuple(getattr(obj, a) for a in attrs)
    return reduce


def _sentinel(module, name):
    def reduce(self, obj):
        if obj is getattr(module, name):
            return getattr, (module, name)
        return NotImplemented
    return reduce


_REDUCERS = {
    _FunctionType: _Pickler._function,
    _CodeType: _Pickler._code,
    _CellType: lambda self, cell: (_make_cell, ()),  # filled by the function's state
    _ModuleType: _Pickler._module,
    _Entry: _Pickler._entry,
    functools._lru_cache_wrapper: _Pickler._lru_cache,
    typing.TypeVar: _Pickler._typevar,
    types.MappingProxyType: lambda self, proxy: (_make_mappingproxy, (dict(proxy),)),
    classmethod: _by(classmethod, "__func__"),
    staticmethod: _by(staticmethod, "__func__"),
    property: _by(property, "fget", "fset", "fdel", "__doc__"),
    functools.cached_property: _by(functools.cached_property, "func"),
    types.GeneratorType: _refuse("a generator cannot be checkpointed"),
    types.CoroutineType: _refuse("a coroutine cannot be checkpointed"),
    types.AsyncGeneratorType: _refuse("an async generator cannot be checkpointed"),
    types.FrameType: _refuse("a frame cannot be checkpointed"),
    types.TracebackType: _refuse("a traceback cannot be checkpointed"),
    type(dataclasses.MISSING): _sentinel(dataclasses, "MISSING"),
    type(dataclasses.KW_ONLY): _sentinel(dataclasses, "KW_ONLY"),
    # The markers of dataclass fields are compared by identity.
    dataclasses._FIELD_BASE: lambda self, obj: (getattr, (dataclasses, obj.name)),
}


def _enum_internal():
    keys = set()
    for base in (enum.Enum, enum.IntEnum, enum.Flag, enum.IntFlag, getattr(enum, "StrEnum", enum.Enum)):
        keys |= set(vars(base("_Probe", "A")))
    keys -= {"A", "__module__", "__doc__", "__qualname__"}
    return frozenset(keys | {"__new_member__", "_member_names_", "_member_map_", "_value2member_map_"})


_ENUM_INTERNAL = _enum_internal()


# --- What unpickling calls (looked up by name, so they stay module functions) -----

class _EmptyCell:
    def __reduce__(self):
        return "_EMPTY_CELL"


_EMPTY_CELL = _EmptyCell()


def _entry(name, value):
    return name, value


def _make_cell():
    return _CellType()


def _make_mappingproxy(d):
    return types.MappingProxyType(d)


def _make_function(code, where, name, cells):
    raise RuntimeError("only a checkpoint's unpickler makes functions")  # see _Loader


def _import_module(name):
    raise RuntimeError("only a checkpoint's unpickler imports modules")  # see _Loader


def _builtin(name):
    raise RuntimeError("only a checkpoint's unpickler finds builtins")  # see _Loader


def _set_function_state(f, state):
    for key, value in state.items():
        if key == "cells":
            for cell, content in zip(f.__closure__, value):
                if content is not _EMPTY_CELL:
                    cell.cell_contents = content
        elif key == "globals":
            f.__globals__.update(value)
        elif key == "dict":
            f.__dict__.update(value)
        else:
            setattr(f, _FUNCTION_ATTRS[key], value)
    return f


_FUNCTION_ATTRS = {
    "qualname": "__qualname__", "defaults": "__defaults__", "kwdefaults": "__kwdefaults__",
    "doc": "__doc__", "module": "__module__", "annotate": "__annotate__",
    "annotations": "__annotations__", "type_params": "__type_params__",
}


def _make_class(meta, name, bases, kwds):
    return types.new_class(name, bases, {"metaclass": meta}, lambda ns: ns.update(kwds))


def _make_enum(meta, name, bases, at_creation, members):
    namespace = meta.__prepare__(name, bases)
    for key, value in at_creation.items():
        namespace[key] = value
    for key, value in members.items():
        namespace[key] = value
    return meta(name, bases, namespace)


def _set_class_state(cls, state):
    qualname, namespace = state
    cls.__qualname__ = qualname
    for key, value in namespace.items():
        try:
            setattr(cls, key, value)
        except (AttributeError, TypeError):
            continue
        set_name = getattr(type(value), "__set_name__", None)
        if set_name is not None:
            try:
                set_name(value, cls, key)
            except Exception:  # noqa: BLE001 - as when the class was first made
                pass
    return cls


def _make_typevar(name, constraints, kwds):
    return typing.TypeVar(name, *constraints, **kwds)


def _make_lru_cache(f, maxsize, typed):
    return functools.lru_cache(maxsize=maxsize, typed=typed)(f)


class _Missing:
    """Stands in for what could not be restored (a module that no longer imports)."""

    def __init__(self, why):
        self.why = why

    def __repr__(self):
        return f"<not restored: {self.why}>"


class _Loader:
    """What a checkpoint's unpickler needs beyond pickle: the session's globals
    for rebuilt functions, and the list of what could not be put back."""

    def __init__(self, target):
        self.target = target
        self.missing = []  # the _Missing placeholders made
        self.broken = []  # why objects were left without the state they refused
        self._calls = {
            "_make_function": self.make_function,
            "_import_module": self.import_module,
            "_builtin": self.builtin,
        }

    def find_class(self, module, name):
        if module == __name__:
            call = self._calls.get(name)
            if call is not None:
                return call
        return None

    def make_function(self, code, where, name, cells):
        if where is None:
            globals_ = self.target
        elif type(where) is str:
            globals_ = importlib.import_module(where).__dict__
        else:
            globals_ = where
        return _FunctionType(code, globals_, name, None, cells)

    def import_module(self, name):
        try:
            return importlib.import_module(name)
        except BaseException as e:  # noqa: BLE001 - reported, not raised
            return self._missing(f"the module `{name}` cannot be imported: {_why(e)}")

    def builtin(self, name):
        try:
            return getattr(builtins, name)
        except AttributeError:
            return self._missing(f"`{name}` is not in this session")

    def _missing(self, why):
        m = _Missing(why)
        self.missing.append(m)
        return m


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, loader):
        super().__init__(file)
        self._loader = loader

    def find_class(self, module, name):
        return self._loader.find_class(module, name) or super().find_class(module, name)


def _safe_unpickler():
    """The pure-Python unpickler, where a value whose reconstruction raises (a
    class's `__setstate__`, an exception whose `__init__` wants other arguments)
    becomes a `_Missing` instead of ending the whole restore. Slow: it is used only
    after the C unpickler failed."""
    base = pickle._Unpickler

    class _SafeUnpickler(base):
        dispatch = dict(base.dispatch)

        def __init__(self, file, loader):
            super().__init__(file)
            self._loader = loader

        def find_class(self, module, name):
            try:
                return self._loader.find_class(module, name) or super().find_class(module, name)
            except Exception as e:  # noqa: BLE001 - a placeholder, and a report
                return self._loader._missing(f"`{module}.{name}` is not there: {_why(e)}")

    def contain(code, pops):
        load = base.dispatch[code[0]]

        def safe(self):
            depth = len(self.stack)
            try:
                load(self)
            except Exception as e:  # noqa: BLE001 - a placeholder, and a report
                del self.stack[depth - pops:]
                self.append(self._loader._missing(f"it could not be rebuilt: {_why(e, True)}"))

        _SafeUnpickler.dispatch[code[0]] = safe

    # How many stack items each instruction takes (it leaves one result).
    contain(pickle.REDUCE, 2)
    contain(pickle.NEWOBJ, 2)
    contain(pickle.NEWOBJ_EX, 3)

    def build(self):
        depth = len(self.stack)
        try:
            base.load_build(self)
        except Exception as e:  # noqa: BLE001 - the object stays, without that state
            del self.stack[depth - 1:]
            self._loader.broken.append(_why(e, True))

    _SafeUnpickler.dispatch[pickle.BUILD[0]] = build
    return _SafeUnpickler


def _why(exc, typed=False):
    """Why pickling or unpickling failed, in a line; `typed`: always with the
    exception's type (pickle's own messages say enough without)."""
    try:
        if isinstance(exc, _CannotCheckpoint):
            text = str(exc)
        elif isinstance(exc, RecursionError):
            text = "it is nested too deeply to checkpoint"
        elif isinstance(exc, MemoryError):
            text = "there was not enough memory to checkpoint it"
        elif not typed and isinstance(exc, (TypeError, pickle.PicklingError)) and str(exc):
            text = str(exc)
        else:
            message = str(exc)
            text = type(exc).__name__ + (f": {message}" if message else "")
    except BaseException:  # noqa: BLE001 - str() of a user exception may raise
        text = type(exc).__name__
    text = " ".join(text.split())
    if len(text) > _REASON_CHARS:
        text = text[: _REASON_CHARS - 3] + "..."
    return text


# --- The output of the pickler ------------------------------------------------------

class _Sink:
    """Keeps what the pickler writes up to `limit` bytes, and past it only counts."""

    __slots__ = ("parts", "size", "limit")

    def __init__(self, limit):
        self.parts = []
        self.size = 0
        self.limit = limit

    def write(self, data):
        n = len(data) if type(data) is bytes else memoryview(data).nbytes
        self.size += n
        if self.size <= self.limit:
            self.parts.append(data if type(data) is bytes else bytes(data))
        elif self.parts:
            self.parts = []
        return n


class _Quiet:
    """stdout and stderr while a checkpoint is made or read: what a `__reduce__`
    or `__setstate__` prints is not the cell's output."""

    def write(self, s):
        return len(s)

    def flush(self):
        pass


_QUIET = _Quiet()


# --- The session's checkpoints ------------------------------------------------------

class Checkpoints:
    """The checkpoints of one session's globals.

    - `globals`: the session's globals dict (rebuilt functions use it).
    - `skip`: the names the runner itself put there.
    - `injected`: a function returning the names the runner put into `builtins`
      (tool functions, `final_answer`, `help`...): values that are them are stored
      by name.
    - `source_prefix`: the file names of cells, whose source goes along.
    """

    def __init__(self, globals_, skip=("__builtins__", "__name__", "__doc__"),
                 injected=lambda: (), source_prefix="<cell"):
        self.globals = globals_
        self.skip = frozenset(skip)
        self.injected = injected
        self.source_prefix = source_prefix
        self.forget()

    def forget(self):
        """The next checkpoint is a full one: after `reset`, after `restore`, after
        a run that did not ask for a checkpoint (it may have changed anything)."""
        self._ids = None
        self._kinds = {}
        self._injected_ids = frozenset()

    def clean(self):
        """The globals are as a fresh session has them, and the host keeps no
        checkpoint for a fresh session: the next cell needs one only if it changes
        them (after `reset`, and in a new instance)."""
        self._ids = {k: id(v) for k, v in self.globals.items()}
        self._kinds = {}
        self.note_injected()

    def note_injected(self):
        """Takes in what the runner put into `builtins` (the tools, when they are
        installed): a cell that only calls them changes nothing."""
        b = builtins.__dict__
        self._injected_ids = frozenset(id(b[n]) for n in self.injected() if n in b)

    # -- after a cell --

    def after(self, codes, max_bytes, meta=None):
        """The checkpoint after a cell that ran `codes` (its code objects; none
        when nothing ran), or None when the cell cannot have changed the globals
        since the last checkpoint."""
        if self._ids is not None and self.unchanged(codes):
            return None
        return self.take(max_bytes, meta)

    def unchanged(self, codes):
        """Whether a cell that ran `codes` cannot have changed the globals since
        the last checkpoint. Conservative: any doubt is a change."""
        ids = self._ids
        if ids is None:
            return False
        g = self.globals
        if len(g) != len(ids):
            return False
        names, attrs = _code_names(codes)
        if names is None:
            return False
        mutable = False
        kinds = self._kinds
        for name in names:
            value = g.get(name, _MISSING)
            if value is _MISSING:
                if name in _DOUBT:
                    return False
                value = _BUILTINS.get(name, _MISSING)
                if value is _MISSING or value is _ORIGINAL_BUILTINS.get(name, _MISSING) \
                        or id(value) in self._injected_ids:
                    continue  # a builtin (or a tool), an attribute, or a NameError
                kind = self._kind(value)  # a cell put it into builtins
            else:
                if ids.get(name) != id(value):
                    return False
                kind = kinds.get(name)
                if kind is None:
                    kind = kinds[name] = self._kind(value)
            if kind is _OTHER:
                return False
            if kind is _DATA:
                mutable = True
        # A method call or module function may change a list it is handed.
        return not (mutable and attrs)

    def _kind(self, value):
        """_STATIC: nothing a cell does with it changes it (an int, a module, a
        function of the standard library); _DATA: containers of such values,
        which only a store or an attribute (a method) changes; _OTHER: anything
        that may run the session's code or change in other ways."""
        t = type(value)
        if t in _SCALARS or t is _ModuleType:
            return _STATIC
        if t is _BuiltinFunctionType:
            owner = value.__self__
            return _STATIC if owner is None or type(owner) is _ModuleType else _OTHER
        if t is _FunctionType:
            g = value.__globals__
            module = sys.modules.get(value.__module__) if type(value.__module__) is str else None
            if g is not self.globals and value.__module__ != "__main__" and module is not None \
                    and getattr(module, "__dict__", None) is g:
                return _STATIC
            return _OTHER
        if issubclass(t, type):
            return _STATIC if value.__module__ != "__main__" and _resolves(value) else _OTHER
        if t not in (list, dict, set, tuple, frozenset, bytearray):
            return _OTHER
        mutable, budget, stack = False, _DATA_BUDGET, [value]
        while stack:
            x = stack.pop()
            tx = type(x)
            if tx in _SCALARS:
                continue
            if tx is dict:
                mutable = True
                stack.extend(x.keys())
                stack.extend(x.values())
            elif tx is list or tx is set:
                mutable = True
                stack.extend(x)
            elif tx is tuple or tx is frozenset:
                stack.extend(x)
            elif tx is bytearray:
                mutable = True
            else:
                return _OTHER
            budget -= len(x) + 1
            if budget < 0:
                return _OTHER
        return _DATA if mutable else _STATIC

    # -- making one --

    def names(self):
        """The globals a checkpoint holds: all but the runner's."""
        skip, builtin = self.skip, builtins.__dict__
        out = []
        for name, value in self.globals.items():
            if name in skip or type(name) is not str:
                continue
            if builtin.get(name, _MISSING) is value:
                continue  # a builtin (a tool, `final_answer`), there after restore too
            out.append(name)
        return out

    def take(self, max_bytes, meta=None):
        """A full checkpoint, within `max_bytes`."""
        g = self.globals
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = _QUIET
        try:
            kept, left_out, body, fmt, pickler, size = self._pickle(self.names(), max_bytes)
        finally:
            sys.stdout, sys.stderr = saved
        sources = {}
        if pickler is not None:
            for filename in pickler.sources:
                entry = linecache.cache.get(filename)
                if entry is not None and type(entry[2]) is list:
                    sources[filename] = "".join(entry[2])
        meta = meta if meta is not None else {}
        header = {
            "python": PYTHON, "format": fmt, "names": kept, "left_out": left_out,
            "sources": sources, "meta": meta, "size": size,
        }
        head = marshal.dumps(header)
        total = len(MAGIC) + _HEAD.size + len(head) + size
        if total > max_bytes:
            over = f"the checkpoint would take {total} bytes, over its limit of {max_bytes}"
            blob = _empty(left_out + [f"{n}: {over}" for n in kept], meta)
        else:
            blob = _blob(head, body)
        self._ids = {k: id(v) for k, v in g.items()}
        self._kinds = {}
        self.note_injected()
        return blob

    def failed(self, why, meta=None):
        """A checkpoint that keeps nothing and names every global with `why`
        (when making one failed in a way no one global explains)."""
        self.forget()
        return _empty([f"{n}: {why}" for n in self.names()], meta if meta is not None else {})

    def _pickle(self, names, max_bytes):
        """(names kept, `name: why` left out, body, format, pickler, body size):
        one pickle of the globals as a dict; if that fails, the globals one by one
        (as `_Entry`s) until the one that fails is known, then again without it,
        and so on. Only a failure pickles twice."""
        g = self.globals
        sink = _Sink(max_bytes)
        pickler = _Pickler(sink, self)
        try:
            pickler.dump({n: g[n] for n in names})
            return names, [], b"".join(sink.parts), "dict", pickler, sink.size
        except BaseException as e:  # noqa: BLE001 - user code runs in __reduce__
            first = e
        left_out, todo = [], list(names)
        while True:
            sink = _Sink(max_bytes)
            pickler = _Pickler(sink, self)
            try:
                pickler.dump([_Entry(n, g[n]) for n in todo])
                return todo, left_out, b"".join(sink.parts), "entries", pickler, sink.size
            except BaseException as e:  # noqa: BLE001
                name = pickler.current
                if name is None or name not in todo:
                    # The failure is in no one global (they fail only together):
                    # none is kept, and each is reported with why.
                    why = _why(first if name is None else e)
                    return [], left_out + [f"{n}: {why}" for n in todo], b"", "dict", None, 0
                left_out.append(f"{name}: {_why(e)}")
                todo.remove(name)
                first = e

    # -- reading one back --

    def restore(self, blob):
        """Puts the globals of `blob` into the session's globals. Returns
        (`name: why` lines, the runner's meta). Never raises."""
        self.forget()
        try:
            header, body = _parse(blob)
        except _Corrupt as e:
            return [str(e)], {}
        problems = list(header.get("left_out", ()))
        meta = header.get("meta") or {}
        for filename, source in (header.get("sources") or {}).items():
            if filename not in linecache.cache:
                linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        names = header.get("names") or []
        if not names:
            return problems, meta
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = _QUIET
        try:
            values, loader, broken = self._load(body, header.get("format"))
        except BaseException as e:  # noqa: BLE001 - never out of restore
            why = _why(e)
            return problems + [f"{n}: it could not be restored: {why}" for n in names], meta
        finally:
            sys.stdout, sys.stderr = saved
        placeholders = {id(m) for m in loader.missing}
        for name, value in values:
            if type(value) is _Missing:
                placeholders.discard(id(value))
                problems.append(f"{name}: {value.why}")
                continue
            self.globals[name] = value
        for m in loader.missing:
            if id(m) in placeholders:
                problems.append(f"(a part of a value): {m.why}; a placeholder stands in for it")
        for why in broken:
            problems.append(f"(a part of a value): its state could not be set back: {why}")
        return problems, meta

    def _load(self, body, fmt):
        """[(name, value)], the loader and the broken-state reasons: with the C
        unpickler, or where it fails, with the pure-Python one that contains
        failures to the values that raise."""
        loader = _Loader(self.globals)
        try:
            data = _Unpickler(io.BytesIO(body), loader).load()
        except Exception:  # noqa: BLE001 - try again, containing the failure
            loader = _Loader(self.globals)
            data = _safe_unpickler()(io.BytesIO(body), loader).load()
        items = data.items() if fmt == "dict" else data
        return list(items), loader, loader.broken


def _blob(head, body):
    crc = binascii.crc32(body, binascii.crc32(head))
    return b"".join((MAGIC, _HEAD.pack(len(head), crc), head, body))


def _empty(left_out, meta):
    """A checkpoint that holds no value, only the lines that say why."""
    header = {
        "python": PYTHON, "format": "dict", "names": [], "left_out": left_out,
        "sources": {}, "meta": meta, "size": 0,
    }
    return _blob(marshal.dumps(header), b"")


class _Corrupt(Exception):
    pass


def _parse(blob):
    """(header, body) of a checkpoint, or _Corrupt saying in one line what is wrong."""
    if type(blob) is not bytes:
        blob = bytes(blob)
    if not blob.startswith(MAGIC[:4]):
        raise _Corrupt("the checkpoint is not one of this runner's: nothing was restored")
    if not blob.startswith(MAGIC):
        raise _Corrupt(f"the checkpoint has format version {blob[4:5].hex() or 'none'}, "
                       f"this runner reads version {MAGIC[4:5].hex()}: nothing was restored")
    start = len(MAGIC) + _HEAD.size
    if len(blob) < start:
        raise _Corrupt("the checkpoint is corrupt (cut short): nothing was restored")
    head_len, crc = _HEAD.unpack_from(blob, len(MAGIC))
    if len(blob) < start + head_len or binascii.crc32(memoryview(blob)[start:]) != crc:
        raise _Corrupt("the checkpoint is corrupt (its checksum does not match): nothing was restored")
    try:
        header = marshal.loads(memoryview(blob)[start:start + head_len])
    except Exception:  # noqa: BLE001 - a checkpoint of another marshal
        header = None
    if type(header) is not dict:
        raise _Corrupt("the checkpoint is corrupt (its header does not read): nothing was restored")
    if header.get("python") != PYTHON:
        raise _Corrupt(f"the checkpoint was made by another Python ({header.get('python')}); "
                       f"this runner is {PYTHON}: nothing was restored")
    body = blob[start + head_len:]
    if len(body) != header.get("size"):
        raise _Corrupt("the checkpoint is corrupt (its size does not match): nothing was restored")
    return header, body
