"""What a pickle stream does, as the symbolic machine (`pickle_vm`) saw it: the typed record
that the judge (`pickle_judge`) turns into findings.

The machine never decides what is dangerous and the judge never reads an opcode: this module is
the seam between them. A stream's record holds

- the symbolic values the machine pushes instead of objects (`Global`, `Call`, `Seq`, `DictV`,
  `Blob`, `Opaque`; constants are plain `str`, `int`, `float`, `bool`, `None`);
- its events, in the order the stream produced them: callables named (`Named`), module objects
  obtained at load time (`ModuleLoaded`), callables invoked while loading (`Invoked`), callables
  that cannot be named offline (`Unnamed`), module-level objects mutated
  (`ModuleObjectMutated`), code types named by value (`CodeTypeNamed`), and the joblib array
  bytes read again as `pickle.load` would read them (`PlainReading`, with its own record);
- the code objects embedded by value, the callables whose results got `BUILD` state, the
  persistent ids, and whether a plausible callable name was referenced at all;
- how the stream ended (`Stopped`, `Paused` after a bounded number of opcodes, `Broke`,
  `LimitHit`), with the `Site` (offset, opcode, protocol) where it did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias, TypedDict

# ---------------------------------------------------------------------------------------------
# Symbolic values. Constants are plain Python str/int/float/bool/None; the rest are these.


class Global:
    """A name resolved by GLOBAL/INST/STACK_GLOBAL (or a getattr chain): never imported."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    @property
    def qualified(self) -> str:
        return f"{self.module}.{self.name}" if self.name else self.module


class CodeObject(TypedDict):
    """Python code embedded by value, read from the constants in the stream (never built)."""

    function: str
    names: list[str]
    constants: list[str]


class Call:
    """The result of REDUCE/NEWOBJ/NEWOBJ_EX/OBJ/INST: an object nobody built."""

    __slots__ = ("args", "func", "offset", "opcode", "role", "size", "state", "symbol")

    def __init__(self, func: Value, args: Value, opcode: str, offset: int) -> None:
        self.func = func
        self.args = args
        self.opcode = opcode
        self.offset = offset
        self.size = 1 + size_of(args)
        self.role: str | None = None
        # role data: the code entry, the module or attribute named, or the type name
        self.symbol: CodeObject | Global | str | None = None
        self.state: list[Value] = []


class Seq:
    """list / tuple / set / frozenset by reference; `items` holds references, never copies."""

    __slots__ = ("items", "kind", "size")

    def __init__(self, kind: str, items: list[Value], size: int = 1) -> None:
        self.kind = kind
        self.items = items
        self.size = size  # values it expands to (shared references counted every time)


class DictV:
    """A dict by reference, as (key, value) pairs in insertion order."""

    __slots__ = ("items", "size")

    def __init__(self, items: list[tuple[Value, Value]], size: int = 1) -> None:
        self.items = items
        self.size = size

    def get(self, key: str, default: Value = None) -> Value:
        for k, v in self.items:
            if k == key and isinstance(k, str):
                return v
        return default


class Blob:
    """A bytes payload kept as offsets into the scanned data."""

    __slots__ = ("end", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end


class Opaque:
    """A value the machine cannot know: persistent id, extension code, buffer, long string."""

    __slots__ = ("detail", "kind")

    def __init__(self, kind: str, detail: Value = None) -> None:
        self.kind = kind
        self.detail = detail


Value: TypeAlias = str | int | float | Global | Call | Seq | DictV | Blob | Opaque | None


def size_of(value: Value) -> int:
    """Values `value` expands to (a container counts its items, shared ones every time)."""
    return value.size if isinstance(value, (Seq, DictV, Call)) else 1


def describe(value: Value) -> str:
    """A value as a finding names it: a dotted name, a call result or `<kind>`."""
    if isinstance(value, Global):
        return value.qualified
    if isinstance(value, Call):
        return f"result of {describe(value.func)}(...)"
    if isinstance(value, Opaque):
        return f"<{value.kind}>"
    return f"<{type(value).__name__}>"


# ---------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class Site:
    """Where the machine was: the opcode's byte offset and name, and the stream's protocol."""

    offset: int
    opcode: str
    protocol: int


@dataclass(frozen=True, slots=True)
class Named:
    """The stream names a callable: GLOBAL, INST, STACK_GLOBAL, a getattr(x, "name") chain,
    or a type fetched by name (cloudpickle `_builtin_type`)."""

    ref: Global
    site: Site


@dataclass(frozen=True, slots=True)
class ModuleLoaded:
    """The stream obtains a module object while loading (`cloudpickle.subimport`,
    `builtins.__import__`, `importlib.import_module`)."""

    ref: Global
    site: Site


@dataclass(frozen=True, slots=True)
class CodeTypeNamed:
    """The stream fetches `types.CodeType` / `types.FunctionType` by name: code by value,
    recorded among the callables seen but described by its `CodeObject`."""

    qualified: str


@dataclass(frozen=True, slots=True)
class Invoked:
    """The stream calls `ref` while loading (REDUCE, NEWOBJ, INST/OBJ), or hands it to a call
    that may call it (the class argument of `copyreg._reconstructor`)."""

    ref: Global
    site: Site


class UnnamedCause(StrEnum):
    """Why a callable cannot be named offline."""

    COMPUTED_GLOBAL = "computed-global"  # STACK_GLOBAL fed by values that are not constants
    EXTENSION = "extension"  # EXT1/2/4 extension-registry code
    OPAQUE_CALLEE = "opaque-callee"  # calling a persistent id, extension code or buffer
    COMPUTED_CALLEE = "computed-callee"  # calling the result of a call that has no known role
    TYPE_NAME = "type-name"  # a type getter fed by a computed name
    MODULE_NAME = "module-name"  # a module getter fed by a computed name
    ATTRIBUTE_NAME = "attribute-name"  # getattr fed by a computed attribute name


@dataclass(frozen=True, slots=True)
class Unnamed:
    """A callable (or its name) only known at load time; `what` describes it."""

    what: str
    cause: UnnamedCause
    site: Site


@dataclass(frozen=True, slots=True)
class ModuleObjectMutated:
    """BUILD / SETITEM(S) / APPEND(S) / ADDITEMS applied to a module-level object."""

    target: Global
    opname: str
    site: Site


@dataclass(frozen=True, slots=True)
class PlainReading:
    """joblib array bytes read as `pickle.load` (not joblib) would read them: as opcodes, from
    the machine's state at the array. `object_array`: the bytes are joblib's nested stream of
    an object-dtype array (so the plain reading shares the outer memo)."""

    reading: StreamReading
    object_array: bool
    site: Site


Event: TypeAlias = (
    Named | ModuleLoaded | CodeTypeNamed | Invoked | Unnamed | ModuleObjectMutated | PlainReading
)


# ---------------------------------------------------------------------------------------------
# How a stream ends


@dataclass(frozen=True, slots=True)
class Stopped:
    """The stream reached STOP."""

    site: Site


@dataclass(frozen=True, slots=True)
class Paused:
    """The machine ran the number of opcodes it was given without reaching STOP."""

    site: Site


@dataclass(frozen=True, slots=True)
class Broke:
    """The stream cannot be resolved past `site` (a real unpickler would fail there too)."""

    site: Site
    reason: str
    truncated: bool  # the data ended (e.g. only the head of a file was given)


@dataclass(frozen=True, slots=True)
class LimitHit:
    """A bound (`Limits.max_pickle_ops`, `max_pickle_values`, time) stopped the machine."""

    site: Site
    limit: str
    detail: str


StreamEnd: TypeAlias = Stopped | Paused | Broke | LimitHit


# ---------------------------------------------------------------------------------------------
# Records


@dataclass
class StreamRecord:
    """What one stream (and the joblib object-array streams nested in it) did.

    `events` holds the first time the stream does each thing (names `os.system`, invokes it,
    mutates it...): a repeat changes no verdict, and keeping only first times bounds the record
    by the distinct callables, not by the opcodes (a list of a million numpy scalars is one
    `Invoked`)."""

    index: int  # position of the stream in the blob (0 for the first)
    events: list[Event] = field(default_factory=list)
    code_objects: list[CodeObject] = field(default_factory=list)
    first_code_offset: int = -1
    code_called: bool = False  # a function embedded by value is called while loading
    built: dict[str, None] = field(default_factory=dict)  # callables whose results got BUILD
    persistent_ids: int = 0
    significant: bool = False  # a plausible callable name was referenced
    _done: set[tuple[str, str, str]] = field(default_factory=set, repr=False)

    def first_time(self, kind: str, key: str, detail: str = "") -> bool:
        """True the first time the stream does `kind` to `key` (then remembered)."""
        done = (kind, key, detail)
        if done in self._done:
            return False
        self._done.add(done)
        return True


@dataclass(frozen=True, slots=True)
class StreamReading:
    """A stream's record and how it ended."""

    record: StreamRecord
    end: StreamEnd


@dataclass(frozen=True, slots=True)
class PickleReading:
    """Every stream of a blob that is part of the pickle (the last one may not have stopped),
    and where the bytes that are not another pickle start, if any."""

    streams: tuple[StreamReading, ...]
    trailing_offset: int | None
