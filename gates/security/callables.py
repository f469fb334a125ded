"""Which callables a model file may reach (SEC-PICKLE-001/002, SEC-SKOPS-*).

Allowlist, not blocklist: modelscan and picklescan list what is dangerous and pass everything
else, so every gadget they did not think of is a bypass. Here a callable is judged in three
tiers:

- DANGEROUS (CRITICAL): code execution, shells, import machinery and resolvers
  (`pkgutil.resolve_name`), attribute/method trampolines (`operator`, `getattr`), nested
  deserializers, file and network side effects, and the private aliases that reach them
  (`posix`/`nt`, `_posixsubprocess`, `_io`, `_operator`, `_pickle`).
- ALLOWED: constructors that real models need (numpy, scipy, scikit-learn, torch rebuild
  helpers, xgboost/lightgbm wrappers, collections, copyreg's reconstructor, datetime, ...).
- SAFE TO REFERENCE: a callable the pickle only stores (an estimator's `score_func`,
  `pooling_func`, a FunctionTransformer's `func`) and never calls while loading is judged
  against a wider tier: any function or class of the numerical libraries whose own objects we
  accept (numpy, scipy, pandas, scikit-learn, xgboost, lightgbm, ...), minus the dangerous
  tier, which still applies to references (model code may call a stored function later).
- everything else (HIGH): not known to be needed by a model, so not trusted.

The constructor allowlist is partly derived from the libraries: `data/library_factories.txt`
lists the factories that the installed numpy, scipy, pandas, scikit-learn, xgboost and
lightgbm emit from their own `__reduce__` methods, as found by pickling every estimator
(`python -m tests.corpus.library_factories` rewrites it; a test fails when a library upgrade
adds one that is not listed).

A policy may extend the allowlist (`allow_callables: ["mypkg.MyEstimator", "mypkg.*"]`); it
can never allow a DANGEROUS callable.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources

# module -> names ("*" = every name in the module and its submodules).
_DANGEROUS: dict[str, tuple[str, ...]] = {
    "os": ("*",), "posix": ("*",), "nt": ("*",), "_posixsubprocess": ("*",),
    "subprocess": ("*",), "pty": ("*",), "commands": ("*",), "popen2": ("*",),
    "shutil": ("*",), "tempfile": ("*",), "pathlib": ("*",), "glob": ("*",),
    "io": ("open", "open_code", "FileIO", "BufferedWriter", "BufferedReader", "TextIOWrapper"),
    "_io": ("*",), "codecs": ("open", "EncodedFile"), "fileinput": ("*",),
    "builtins": (
        "eval", "exec", "compile", "open", "__import__", "getattr", "setattr", "delattr",
        "globals", "locals", "vars", "breakpoint", "input", "help", "memoryview", "__loader__",
        "__builtins__", "classmethod", "staticmethod", "property", "super", "type",
    ),
    "__builtin__": ("*",), "importlib": ("*",), "imp": ("*",), "pkgutil": ("*",),
    "runpy": ("*",), "code": ("*",), "codeop": ("*",), "timeit": ("*",), "trace": ("*",),
    "pdb": ("*",), "bdb": ("*",), "cProfile": ("*",), "profile": ("*",), "doctest": ("*",),
    "operator": ("*",), "_operator": ("*",), "functools": ("partial", "reduce", "partialmethod"),
    "_functools": ("*",), "itertools": ("starmap",), "types": ("*",), "marshal": ("*",),
    "pickle": ("*",), "_pickle": ("*",), "cPickle": ("*",), "dill": ("*",), "shelve": ("*",),
    "joblib": ("load", "dump"),
    "numpy": ("load", "loads", "fromfile", "save", "savez", "savez_compressed", "savetxt",
              "loadtxt", "genfromtxt", "fromregex", "memmap", "DataSource", "lookfor", "info",
              "source", "who", "ctypeslib", "tofile"),
    "numpy.lib.npyio": ("*",), "numpy.lib.format": ("*",), "numpy.lib._npyio_impl": ("*",),
    "numpy.lib.utils": ("*",), "numpy.ctypeslib": ("*",),
    "pandas.io": ("*",), "pandas.core.computation": ("*",), "pandas.eval": ("*",),
    "pandas": ("read_pickle", "to_pickle", "eval", "read_csv", "read_table", "read_fwf",
               "read_json", "read_parquet", "read_orc", "read_feather", "read_excel",
               "read_hdf", "read_html", "read_xml", "read_sql", "read_sql_query",
               "read_sql_table", "read_stata", "read_sas", "read_spss", "read_clipboard",
               "read_gbq", "ExcelWriter", "HDFStore"),
    "scipy.io": ("*",), "scipy.weave": ("*",), "scipy._lib._testutils": ("*",),
    "sklearn.datasets": ("*",), "sklearn.externals": ("*",), "sklearn.utils._testing": ("*",),
    "sklearn.utils._show_versions": ("*",), "xgboost.tracker": ("*",),
    "lightgbm.dask": ("*",), "xgboost.dask": ("*",), "xgboost.spark": ("*",),
    "numpy.testing": ("*",), "numpy.f2py": ("*",), "numpy.distutils": ("*",),
    "torch": ("load", "hub", "package", "jit", "classes", "_C", "ops"),
    "torch.serialization": ("load",), "torch.hub": ("*",), "torch.jit": ("*",),
    "torch.package": ("*",), "yaml": ("load", "unsafe_load", "full_load", "load_all"),
    "ctypes": ("*",), "_ctypes": ("*",), "cffi": ("*",), "multiprocessing": ("*",),
    "_multiprocessing": ("*",), "concurrent": ("*",), "threading": ("*",), "_thread": ("*",),
    "signal": ("*",), "sys": ("*",), "gc": ("*",), "inspect": ("*",), "ast": ("*",),
    "socket": ("*",), "_socket": ("*",), "ssl": ("*",), "urllib": ("*",), "urllib2": ("*",),
    "http": ("*",), "httplib": ("*",), "ftplib": ("*",), "smtplib": ("*",), "telnetlib": ("*",),
    "requests": ("*",), "httpx": ("*",), "aiohttp": ("*",), "webbrowser": ("*",),
    "asyncio": ("*",), "selectors": ("*",), "select": ("*",), "mmap": ("*",),
    "site": ("*",), "sysconfig": ("*",), "distutils": ("*",), "setuptools": ("*",),
    "pip": ("*",), "venv": ("*",), "zipimport": ("*",), "linecache": ("*",),
    "logging": ("config", "FileHandler"), "logging.config": ("*",),
    "sqlite3": ("*",), "_sqlite3": ("*",), "uuid": ("_popen", "_get_command_stdout"),
    "platform": ("popen", "_syscmd_file", "_syscmd_ver"), "ensurepip": ("*",),
    "idlelib": ("*",), "lib2to3": ("*",), "tkinter": ("*",), "turtle": ("*",),
    "copyreg": ("add_extension", "_reconstructor_unsafe"),
    "cloudpickle": ("subimport", "dynamic_subimport"),
    "cloudpickle.cloudpickle": ("subimport", "dynamic_subimport"),
    "keras": ("*",), "tensorflow": ("*",), "mlflow": ("*",), "transformers": ("*",),
}  # fmt: skip

# Constructors real model files use. "Module.*" matches that module and its submodules.
_ALLOWED: tuple[str, ...] = (
    # python core containers and values
    "builtins.set", "builtins.frozenset", "builtins.list", "builtins.dict", "builtins.tuple",
    "builtins.slice", "builtins.complex", "builtins.bytearray", "builtins.bytes",
    "builtins.range", "builtins.int", "builtins.float", "builtins.bool", "builtins.str",
    "builtins.NotImplemented", "builtins.Ellipsis", "builtins.object",
    "__builtin__.set", "__builtin__.frozenset", "__builtin__.slice", "__builtin__.complex",
    "collections.OrderedDict", "collections.defaultdict", "collections.deque",
    "collections.Counter", "collections.namedtuple",
    "copyreg._reconstructor", "copy_reg._reconstructor", "copyreg.__newobj__",
    "copyreg.__newobj_ex__",
    "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta",
    "datetime.timezone", "decimal.Decimal", "fractions.Fraction", "uuid.UUID",
    "_codecs.encode", "codecs.encode", "enum.Enum", "re._compile",
    "numbers.*", "array.array", "array._array_reconstructor",
    # numpy (both the 1.x and 2.x private module names)
    "numpy.ndarray", "numpy.dtype", "numpy.core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar", "numpy.core.numeric._frombuffer",
    "numpy._core.numeric._frombuffer", "numpy.ma.core._mareconstruct",
    "numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random._pickle.__generator_ctor", "numpy.random.mtrand.RandomState",
    "numpy.random.__RandomState_ctor", "numpy.dtypes.*", "numpy.float64", "numpy.float32",
    "numpy.int64", "numpy.int32", "numpy.bool_", "numpy.str_", "numpy.object_",
    # scipy / pandas containers
    "scipy.sparse.*", "scipy.stats._distn_infrastructure.*", "scipy.stats._continuous_distns.*",
    "scipy.interpolate.*", "pandas.core.frame.DataFrame", "pandas.core.series.Series",
    "pandas.core.indexes.base._new_Index", "pandas.core.indexes.*", "pandas.core.internals.*",
    "pandas._libs.internals._unpickle_block", "pandas.core.arrays.*", "pandas._libs.*",
    "pandas.core.dtypes.dtypes.*",
    # scikit-learn and friends: estimators are classes (see _CLASS_ONLY_PREFIXES)
    "sklearn.tree._tree.Tree", "sklearn.utils._bunch.Bunch",
    "sklearn.neighbors._kd_tree.KDTree", "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neighbors._kd_tree.newObj", "sklearn.neighbors._ball_tree.newObj",
    "sklearn._loss.loss.*", "sklearn._loss._loss.*",
    "joblib.numpy_pickle.NumpyArrayWrapper", "joblib.numpy_pickle.NDArrayWrapper",
    "joblib.numpy_pickle_compat.NDArrayWrapper", "joblib.numpy_pickle_compat.ZNDArrayWrapper",
    "xgboost.core.Booster", "xgboost.sklearn.*", "lightgbm.basic.Booster", "lightgbm.sklearn.*",
    # torch rebuild helpers and storage/tensor classes
    "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3", "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state", "torch._utils._rebuild_sparse_tensor",
    "torch._utils._rebuild_device_tensor_from_numpy", "torch._utils._rebuild_qtensor",
    "torch._utils._rebuild_nested_tensor", "torch._utils._rebuild_meta_tensor_no_storage",
    "torch._tensor._rebuild_from_type_v2", "torch._tensor._rebuild_from_type",
    "torch.nn.parameter.Parameter", "torch.Tensor", "torch.Size", "torch.device",
    "torch.float32", "torch.float16", "torch.bfloat16", "torch.float64", "torch.int64",
    "torch.int32", "torch.int8", "torch.uint8", "torch.bool", "torch.storage.UntypedStorage",
    "torch.storage.TypedStorage", "torch.FloatStorage", "torch.DoubleStorage",
    "torch.HalfStorage", "torch.BFloat16Storage", "torch.LongStorage", "torch.IntStorage",
    "torch.ShortStorage", "torch.CharStorage", "torch.ByteStorage", "torch.BoolStorage",
    "torch.UntypedStorage", "torch.serialization._get_layout", "torch.strided",
    "torch.nn.modules.*", "torch.optim.*", "torch.distributions.*",
)  # fmt: skip

# Libraries whose functions and classes may be *stored* in a model (never called while
# loading): the dangerous tier above still applies to them.
_REFERENCE_SAFE_ROOTS: tuple[str, ...] = (
    "numpy", "scipy", "pandas", "sklearn", "xgboost", "lightgbm", "catboost", "statsmodels",
    "imblearn", "category_encoders", "math", "statistics",
)  # fmt: skip


def _library_factories() -> tuple[str, ...]:
    text = resources.files("gates.security").joinpath("data/library_factories.txt").read_text()
    return tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


_ALLOWED = (*_ALLOWED, *_library_factories())

_NUMPY_SCALARS = (
    "bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "longdouble", "complex64", "complex128", "clongdouble",
    "str_", "bytes_", "void", "datetime64", "timedelta64", "object_", "intc", "uintc",
)  # fmt: skip
# numpy ufuncs that sklearn FunctionTransformers and the like carry: math only. The module
# also holds fromfile/frombuffer-style functions, so it is not allowed wholesale.
_NUMPY_UFUNCS = (
    "log", "log1p", "log2", "log10", "exp", "expm1", "exp2", "sqrt", "square", "cbrt", "abs",
    "absolute", "fabs", "sign", "negative", "reciprocal", "floor", "ceil", "rint", "trunc",
    "sin", "cos", "tan", "tanh", "sinh", "cosh", "arcsinh", "arctan", "add", "subtract",
    "multiply", "divide", "true_divide", "power", "maximum", "minimum", "fmax", "fmin",
)  # fmt: skip
_ALLOWED = (
    *_ALLOWED,
    *(f"numpy.{n}" for n in _NUMPY_SCALARS),
    *(f"{m}.{n}" for m in ("numpy.core._multiarray_umath", "numpy._core._multiarray_umath",
                           "numpy") for n in _NUMPY_UFUNCS),
    "numpy.core.multiarray._ufunc_reconstruct", "numpy._core.multiarray._ufunc_reconstruct",
    "numpy.core._ufunc_reconstruct", "numpy._core._ufunc_reconstruct",
    "numpy.random._generator.Generator", "numpy.random._mt19937.MT19937",
    "numpy.random._pcg64.PCG64", "numpy.random._pcg64.PCG64DXSM",
    "numpy.random._philox.Philox", "numpy.random._sfc64.SFC64",
    "numpy.random.bit_generator.SeedSequence",
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
    "_loss.Cy*", "sklearn._loss._loss.Cy*",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "scipy.special._ufuncs.*",
)  # fmt: skip

# Packages whose classes (CapWords names) are safe to construct: estimator classes only run
# __init__/__setstate__ that set attributes. Their functions are NOT allowed by this rule.
_CLASS_ONLY_PREFIXES: tuple[str, ...] = (
    "sklearn.", "scipy.", "xgboost.", "lightgbm.", "catboost.", "statsmodels.",
    "imblearn.", "category_encoders.", "pandas.",
)  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    tier: str  # "dangerous" | "allowed" | "unknown"
    reason: str


# What a cloudpickled MLflow pyfunc (`python_model.pkl`) needs to rebuild its class and
# functions by value. Accepted only when the policy sets `allow_code: true` for the model: the
# owner has then said that this model may run its own code at load time.
CODE_CALLABLES: tuple[str, ...] = (
    "cloudpickle.*", "builtins.type", "types.CodeType", "types.FunctionType",
    "types.CellType", "types.MethodType", "mlflow.pyfunc.model.PythonModel",
    "mlflow.pyfunc.model.ChatModel", "mlflow.pyfunc.model.PythonModelContext",
    "mlflow.models.signature._TypeHints", "mlflow.types.*", "mlflow.pyfunc.utils.*",
    # annotations of by-value functions: typing's classes only (get_type_hints evaluates)
    "typing.[A-Z]*", "typing._GenericAlias", "typing._SpecialGenericAlias",
)  # fmt: skip


@dataclass(frozen=True)
class CallablePolicy:
    extra_allowed: tuple[str, ...] = field(default_factory=tuple)
    allow_code: bool = False

    @classmethod
    def from_config(cls, allow: Iterable[str] | None, allow_code: bool = False) -> CallablePolicy:
        return cls(extra_allowed=tuple(str(a) for a in (allow or ())), allow_code=allow_code)

    def judge(self, module: str, name: str) -> Verdict:
        """A callable the pickle calls while loading: the constructor allowlist."""
        if self.allow_code and _allowed(module, name, CODE_CALLABLES, class_rule=False):
            return Verdict("allowed", "code by value, allowed by the policy (allow_code)")
        return judge_callable(module, name, self.extra_allowed)

    def judge_reference(self, module: str, name: str) -> Verdict:
        """A callable the pickle only stores: the safe-to-reference tier."""
        verdict = self.judge(module, name)
        if verdict.tier != "unknown":
            return verdict
        root = module.split(".")[0]
        if root in _REFERENCE_SAFE_ROOTS and "__" not in name:
            return Verdict("allowed", f"a {root} function or class, stored and not called")
        return verdict


def _module_matches(module: str, key: str) -> bool:
    return module == key or module.startswith(key + ".")


def is_dangerous(module: str, name: str) -> str | None:
    """Why `module.name` is dangerous, or None. Dotted names are judged by every part."""
    qualified = f"{module}.{name}"
    for key, names in _DANGEROUS.items():
        if "*" in names and _module_matches(module, key):
            return f"{key} is a dangerous module"
        if module == key and name.split(".")[0] in names:
            return f"{key}.{name.split('.')[0]} is a dangerous callable"
    # getattr chains spelled as dotted names: "os.path" + "join" is fine only if os.path is.
    head = qualified.split(".")
    for i in range(1, len(head)):
        mod, rest = ".".join(head[:i]), head[i]
        dangerous = _DANGEROUS.get(mod)
        if dangerous and ("*" in dangerous or rest in dangerous):
            return f"{mod}.{rest} is a dangerous callable"
    if any(part.startswith("__") and part.endswith("__") and part not in _DUNDER_OK
           for part in name.split(".")):  # fmt: skip
        return f"dunder attribute access {name} reaches interpreter internals"
    return None


_DUNDER_OK = {"__newobj__", "__newobj_ex__", "__randomstate_ctor", "__bit_generator_ctor"}


def _allowed(module: str, name: str, extra: tuple[str, ...], *, class_rule: bool = True) -> bool:
    qualified = f"{module}.{name}"
    for pattern in (*(_ALLOWED if class_rule else ()), *extra):
        if pattern.endswith(".*"):
            if _module_matches(module, pattern[:-2]) or qualified.startswith(pattern[:-1]):
                return True
        elif "*" in pattern or "?" in pattern:
            if fnmatch.fnmatchcase(qualified, pattern):
                return True
        elif qualified == pattern:
            return True
    leaf = name.split(".")[-1]
    return (
        class_rule
        and "." not in name
        and leaf.lstrip("_")[:1].isupper()  # private classes too (_RemainderColsList)
        and qualified.startswith(_CLASS_ONLY_PREFIXES)
    )


def judge_callable(module: str, name: str, extra_allowed: tuple[str, ...] = ()) -> Verdict:
    reason = is_dangerous(module, name)
    if reason:
        return Verdict("dangerous", reason)
    if _allowed(module, name, extra_allowed):
        return Verdict("allowed", "on the allowlist of model constructors")
    return Verdict("unknown", f"{module}.{name} is not on the allowlist of model constructors")
