"""The symbolic pickle machine: hand-written opcode streams (never loaded) and real benign
pickles made here. Every malicious payload would create a marker file if it ever ran."""

from __future__ import annotations

import ast
import collections
import datetime
import decimal
import io
import pickle
import pickletools
import random
import struct
import sys
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import cloudpickle
import joblib
import numpy as np
import pytest
import torch

from gates.base import Severity
from gates.security import pickle_judge, pickle_record, pickle_vm
from gates.security.callables import CallablePolicy
from gates.security.common import Limits, Location
from gates.security.pickle_judge import PickleReport, analyze_pickle
from gates.security.pickle_vm import looks_like_pickle

WHERE = Location("model.pkl")
MARKER = "/tmp/gatekeeper-pickle-vm-MARKER"

# --- opcode builders ---------------------------------------------------------------------------


def proto(n: int) -> bytes:
    return b"\x80" + bytes([n])


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def uni(text: str) -> bytes:  # SHORT_BINUNICODE
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def binuni(text: str) -> bytes:  # BINUNICODE
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def sbs(text: str) -> bytes:  # SHORT_BINSTRING (non-unicode)
    return b"U" + bytes([len(text)]) + text.encode("latin-1")


def binstring(text: str) -> bytes:  # BINSTRING (non-unicode)
    return b"T" + struct.pack("<i", len(text)) + text.encode("latin-1")


def shell_call(payload: str = f"touch {MARKER}") -> bytes:
    """os.system(payload) via GLOBAL + REDUCE, protocol agnostic."""
    return glob("os", "system") + uni(payload) + b"\x85R"


def analyze(data: bytes, policy: CallablePolicy | None = None, **kw: object) -> PickleReport:
    return analyze_pickle(data, WHERE, Limits(), policy or CallablePolicy(), **kw)  # type: ignore[arg-type]


def rules(report: PickleReport) -> dict[str, Severity]:
    return {f.rule_id: f.severity for f in report.findings}


def by_rule(report: PickleReport, rule: str) -> list:
    return [f for f in report.findings if f.rule_id == rule]


@pytest.fixture(autouse=True)
def _no_marker() -> object:
    Path(MARKER).unlink(missing_ok=True)
    yield
    assert not Path(MARKER).exists(), "a payload ran"


# --- callables and opcodes ---------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_global_reduce_is_critical_in_every_protocol(protocol: int) -> None:
    head = proto(protocol) if protocol else b""
    report = analyze(head + shell_call() + b".")
    [hit] = by_rule(report, "SEC-PICKLE-001")
    assert hit.severity == Severity.CRITICAL
    assert hit.evidence["callable"] == "os.system"
    assert hit.evidence["opcode"] == "GLOBAL"
    assert hit.evidence["offset"] == len(head)
    assert hit.evidence["stream"] == 0
    assert hit.evidence["protocol"] == protocol
    assert report.callables == ["os.system"]
    assert report.streams == 1


def test_protocol0_text_pickle_with_inst() -> None:
    data = b"(S'touch " + MARKER.encode() + b"'\nios\nsystem\np0\n."
    report = analyze(data)
    assert rules(report) == {"SEC-PICKLE-001": Severity.CRITICAL}
    assert by_rule(report, "SEC-PICKLE-001")[0].evidence["opcode"] == "INST"


def test_obj_newobj_and_newobj_ex_reach_their_class() -> None:
    obj = proto(2) + b"(" + glob("subprocess", "Popen") + uni("id") + b"o."
    newobj = proto(2) + glob("pty", "spawn") + uni("sh") + b"\x85\x81."
    newobj_ex = proto(4) + glob("webbrowser", "open") + uni("x") + b"\x85}\x92."
    for data, callable_ in ((obj, "subprocess.Popen"), (newobj, "pty.spawn"),
                            (newobj_ex, "webbrowser.open")):  # fmt: skip
        report = analyze(data)
        assert [f.evidence["callable"] for f in by_rule(report, "SEC-PICKLE-001")] == [callable_]


def test_stack_global_through_the_memo() -> None:
    data = (
        proto(4) + uni("os") + b"\x94" + uni("system") + b"\x94"  # memo 0, 1
        + b"h\x00h\x01\x93" + uni("id") + b"\x85R."
    )  # fmt: skip
    [hit] = by_rule(analyze(data), "SEC-PICKLE-001")
    assert (hit.evidence["callable"], hit.evidence["opcode"]) == ("os.system", "STACK_GLOBAL")


def test_stack_global_with_non_unicode_strings_and_escapes() -> None:
    text = proto(2) + b"S'o\\x73'\n" + binstring("system") + b"\x93" + uni("id") + b"\x85R."
    short = proto(2) + sbs("posix") + sbs("system") + b"\x93."
    assert by_rule(analyze(text), "SEC-PICKLE-001")[0].evidence["callable"] == "os.system"
    assert by_rule(analyze(short), "SEC-PICKLE-001")[0].evidence["callable"] == "posix.system"


def test_stack_global_fed_by_a_call_result_is_critical() -> None:
    # _codecs.encode is allowed (numpy uses it for bytes) but here it computes "os" via rot13
    module = glob("_codecs", "encode") + uni("bf") + uni("rot13") + b"\x86R"
    data = proto(4) + module + uni("system") + b"\x93" + uni("id") + b"\x85R."
    report = analyze(data)
    assert rules(report)["SEC-PICKLE-003"] == Severity.CRITICAL
    assert "SEC-PICKLE-001" not in rules(report)


def test_dotted_names_and_attribute_chains_are_judged_whole() -> None:
    dotted = proto(4) + uni("os.path") + uni("join") + b"\x93."
    chain = proto(4) + uni("collections") + uni("OrderedDict.__init__.__globals__") + b"\x93."
    assert rules(analyze(dotted))["SEC-PICKLE-001"] == Severity.CRITICAL
    assert rules(analyze(chain))["SEC-PICKLE-001"] == Severity.CRITICAL


def test_getattr_chain_is_resolved_and_judged() -> None:
    data = (
        proto(2) + glob("builtins", "getattr") + glob("collections", "OrderedDict")
        + uni("fromkeys") + b"\x86R)R."
    )  # fmt: skip
    report = analyze(data)
    assert "collections.OrderedDict.fromkeys" in report.callables
    assert "builtins.getattr" in {f.evidence["callable"] for f in by_rule(report, "SEC-PICKLE-001")}


def test_unknown_callable_is_high_and_allowed_is_silent() -> None:
    unknown = proto(2) + glob("mypkg.models", "Net") + b")\x81."
    allowed = proto(2) + glob("collections", "OrderedDict") + b")R."
    assert rules(analyze(unknown)) == {"SEC-PICKLE-002": Severity.HIGH}
    assert analyze(allowed).findings == []


def test_policy_extension_allows_a_callable() -> None:
    data = proto(2) + glob("mypkg.models", "Net") + b")\x81."
    assert analyze(data, CallablePolicy.from_config(["mypkg.*"])).findings == []


def test_callable_popped_or_built_is_still_judged() -> None:
    popped = proto(2) + glob("os", "system") + b"0N."
    built = proto(2) + glob("mypkg", "Thing") + b")\x81}b."
    assert rules(analyze(popped)) == {"SEC-PICKLE-001": Severity.CRITICAL}
    report = analyze(built)
    assert rules(report) == {"SEC-PICKLE-002": Severity.HIGH}
    assert report.built == ["mypkg.Thing"]


def test_one_finding_per_callable_per_stream() -> None:
    data = proto(2) + shell_call("a") + b"0" + shell_call("b") + b"0N."
    assert len(by_rule(analyze(data), "SEC-PICKLE-001")) == 1


def test_python2_names_are_mapped_like_the_unpickler() -> None:
    evil = b"c__builtin__\neval\n(S'1'\ntR."
    benign = b"c__builtin__\nset\n((lp0\nI1\natR."
    assert by_rule(analyze(evil), "SEC-PICKLE-001")[0].evidence["callable"] == "builtins.eval"
    assert analyze(benign).findings == []


@pytest.mark.parametrize("ext", [b"\x82\x01", b"\x83\x01\x02", b"\x84\x01\x00\x00\x00"])
def test_extension_codes_are_unresolvable(ext: bytes) -> None:
    report = analyze(proto(2) + ext + b")R.")
    assert rules(report)["SEC-PICKLE-003"] == Severity.CRITICAL


def test_calling_a_computed_value_is_critical() -> None:
    # the callee is the result of a call, not a name: it cannot be judged offline
    data = proto(2) + glob("collections", "OrderedDict") + b")R" + uni("x") + b"\x85R."
    assert rules(analyze(data))["SEC-PICKLE-003"] == Severity.CRITICAL


def test_persistent_ids_are_counted_and_opaque() -> None:
    data = proto(2) + b"](" + uni("storage") + b"\x85Q" + b"Pkey0\n" + b"e."
    report = analyze(data)
    assert report.persistent_ids == 2
    assert report.findings == []
    called = proto(2) + uni("x") + b"Q)R."
    assert rules(analyze(called))["SEC-PICKLE-003"] == Severity.CRITICAL


def test_build_or_setitem_on_a_module_level_object_is_monkey_patching() -> None:
    build = proto(2) + glob("collections", "OrderedDict") + b"N}" + uni("x") + b"K\x01s\x86b."
    setitem = proto(2) + glob("copyreg", "_extension_registry") + uni("k") + b"K\x01s."
    assert rules(analyze(build))["SEC-PICKLE-007"] == Severity.HIGH
    assert rules(analyze(setitem))["SEC-PICKLE-007"] == Severity.HIGH


def test_containers_memo_and_stack_opcodes_resolve_cleanly() -> None:
    data = (
        proto(4) + b"\x95" + struct.pack("<Q", 10)  # FRAME (length is not trusted)
        + b"}(" + uni("a") + b"](K\x01M\x02\x00J\x03\x00\x00\x00e" + uni("b")
        + b"\x8f(K\x01\x90" + uni("c") + b"(K\x01\x91" + uni("d") + b")" + uni("e")
        + b"K\x01K\x02K\x03\x87u" + b"2q\x05r\x06\x00\x00\x00j\x06\x00\x00\x000"
        + b"(N1" + b"\x88\x89\x86" + b"G" + struct.pack(">d", 1.5) + b"\x8a\x01\x05\x86"
        + b"B\x02\x00\x00\x00hi" + b"C\x01x" + b"\x8e" + struct.pack("<Q", 1) + b"y"
        + b"\x96" + struct.pack("<Q", 1) + b"z" + b"\x8d" + struct.pack("<Q", 1) + b"w"
        + b"(I1\nL2L\nF1.0\nV\\u0041\nl" + b"(K\x01K\x02d" + b"0000000" + b"."
    )  # fmt: skip
    report = analyze(data)
    assert report.findings == [], [f.to_dict() for f in report.findings]
    assert report.streams == 1


def test_pop_on_an_empty_stack_pops_the_mark_like_pickle_does() -> None:
    assert analyze(proto(2) + b"(0N.").findings == []


def test_every_pickletools_opcode_has_a_handler() -> None:
    assert {ord(op.code) for op in pickletools.opcodes} == set(pickle_vm.OPCODE_NAMES)
    assert all(pickle_vm._DISPATCH[code] for code in pickle_vm.OPCODE_NAMES)


# --- broken streams, several streams, trailing data -------------------------------------------


def test_truncated_stream_reports_the_callables_seen_before_the_break() -> None:
    report = analyze(proto(2) + shell_call())  # no STOP
    assert rules(report) == {"SEC-PICKLE-001": Severity.CRITICAL, "SEC-PICKLE-004": Severity.HIGH}
    assert report.callables == ["os.system"]
    assert report.streams == 0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (proto(2) + b"\xff.", "unknown opcode"),
        (proto(2) + b"R.", "stack underflow"),
        (proto(2) + b"N(R.", "stack underflow"),  # REDUCE may not reach below a MARK
        (proto(2) + b"h\x07.", "memo key"),
        (proto(2) + b"X\xff\x00\x00\x00ab", "past the end"),
        (proto(9) + b"N.", "unsupported pickle protocol"),
        (b"cos\nsys", "newline"),
        (b"", "truncated"),
    ],
)
def test_unparseable_streams_are_high_never_a_pass(data: bytes, reason: str) -> None:
    [hit] = by_rule(analyze(data), "SEC-PICKLE-004")
    assert hit.severity == Severity.HIGH
    assert reason in hit.evidence["reason"]


def test_streams_back_to_back_are_each_analysed() -> None:
    benign = pickle.dumps(collections.OrderedDict(a=1), protocol=2)
    report = analyze(benign + proto(4) + shell_call() + b".")
    assert report.streams == 2
    [hit] = by_rule(report, "SEC-PICKLE-001")
    assert hit.evidence["stream"] == 1


def test_second_stream_truncated_after_a_payload_is_still_reported() -> None:
    benign = pickle.dumps([1, 2], protocol=2)
    report = analyze(benign + shell_call(), allow_trailing=True)  # protocol 0, no STOP
    assert {"SEC-PICKLE-001", "SEC-PICKLE-004"} <= set(rules(report))


def test_trailing_bytes_are_low_unless_allowed() -> None:
    data = pickle.dumps([1, 2], protocol=2) + b"\x00\x01garbage"
    report = analyze(data)
    assert rules(report) == {"SEC-PICKLE-006": Severity.LOW}
    assert report.trailing_bytes == 9
    allowed = analyze(data, allow_trailing=True)
    assert allowed.findings == [] and allowed.trailing_bytes == 9


def test_trailing_bytes_that_start_like_a_pickle_are_trailing_not_broken() -> None:
    # e.g. a legacy torch storage whose element count is 640: b"\x80\x02\x00..."
    data = pickle.dumps([1], protocol=2) + struct.pack("<q", 640) + b"\x00" * 64
    report = analyze(data, allow_trailing=True)
    assert report.findings == [] and report.trailing_bytes == 72


# --- code by value -----------------------------------------------------------------------------


def _shell_function(x: list) -> int:  # pickled by value, never called
    import os

    return os.system("echo hi") + len(x)


def test_cloudpickle_function_code_names_are_read_without_loading() -> None:
    fn = _shell_function
    fn.__module__ = "__main__"  # force pickling by value
    try:
        data = cloudpickle.dumps(fn, protocol=5)
    finally:
        fn.__module__ = __name__
    report = analyze(data)
    [code] = report.code_objects
    assert code["function"] == "_shell_function"
    assert {"os", "system", "len"} <= set(code["names"])
    assert "echo hi" in code["constants"]
    [hit] = by_rule(report, "SEC-PICKLE-005")
    assert hit.severity == Severity.CRITICAL
    assert hit.evidence["dangerous_names"] == ["system"]
    assert hit.evidence["functions"] == ["_shell_function"]


def test_benign_cloudpickle_lambda_is_high_code_finding() -> None:
    report = analyze(cloudpickle.dumps(lambda x: x + 1))
    [hit] = by_rule(report, "SEC-PICKLE-005")
    assert hit.severity == Severity.HIGH
    assert report.code_objects[0]["function"].endswith("<lambda>")


def test_embedded_function_called_at_load_is_critical() -> None:
    code_args = (
        b"(K\x00K\x00K\x00K\x00K\x00K\x00C\x00" + b"N\x85" + b"(" + uni("system") + b"t"
        + b")" + uni("f.py") + uni("evil") + uni("evil") + b"K\x00C\x00C\x00))t"
    )  # fmt: skip
    data = (
        proto(2) + glob("cloudpickle.cloudpickle", "_make_function")
        + b"(" + glob("cloudpickle.cloudpickle", "_builtin_type") + uni("CodeType") + b"\x85R"
        + code_args + b"R}" + uni("evil") + b"NNtR)R."
    )  # fmt: skip
    report = analyze(data)
    [hit] = by_rule(report, "SEC-PICKLE-005")
    assert hit.severity == Severity.CRITICAL
    assert hit.evidence["called_at_load"] is True
    assert report.code_objects[0]["names"] == ["system"]


def test_marshal_payload_names_are_listed() -> None:
    import marshal

    payload = marshal.dumps(compile("import os; os.system('id')", "x", "exec"))  # never run
    data = proto(2) + glob("marshal", "loads") + b"B" + struct.pack("<I", len(payload))
    data += payload + b"\x85R."
    report = analyze(data)
    assert rules(report)["SEC-PICKLE-001"] == Severity.CRITICAL
    assert "system" in report.code_objects[0]["names"]
    assert by_rule(report, "SEC-PICKLE-005")[0].severity == Severity.CRITICAL


# --- joblib ------------------------------------------------------------------------------------


def _joblib_bytes(tmp_path: Path, value: object, **kw: object) -> bytes:
    path = tmp_path / "v.joblib"
    joblib.dump(value, path, **kw)
    return path.read_bytes()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_joblib_numpy_arrays_are_skipped_exactly(tmp_path: Path, protocol: int) -> None:
    value = {
        "f": np.random.default_rng(0).normal(size=(50, 7)),
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "i8": np.arange(5, dtype=">i8"),
        "scalar": np.array(3.5),
        "empty": np.zeros((0, 4)),
        "structured": np.zeros(4, dtype=[("a", "<f8"), ("b", "<i4"), ("s", "U5")]),
        "dt": np.array(["2024-01-01"], dtype="M8[ns]"),
        "objects": np.array([{"k": 1}, "x", None], dtype=object),
        "mixed": np.zeros(2, dtype=[("a", "f8"), ("o", "O")]),
    }
    report = analyze(_joblib_bytes(tmp_path, value, protocol=protocol))
    assert report.findings == [], [f.to_dict() for f in report.findings]
    assert (report.streams, report.trailing_bytes) == (1, 0)


def test_joblib_without_array_skipping_is_unparseable(tmp_path: Path) -> None:
    data = _joblib_bytes(tmp_path, np.arange(1000.0))
    assert "SEC-PICKLE-004" in rules(analyze(data, joblib_arrays=False))


def test_joblib_wrapper_with_a_computed_dtype_fails_closed() -> None:
    data = (
        proto(2) + glob("joblib.numpy_pickle", "NumpyArrayWrapper") + b")\x81}("
        + uni("shape") + b"K\x03\x85" + uni("dtype") + glob("mypkg", "dt") + b")R"
        + uni("order") + uni("C") + b"ub" + b"\x00" * 24 + b"."
    )  # fmt: skip
    assert "SEC-PICKLE-004" in rules(analyze(data))


def test_opcodes_hidden_after_a_joblib_array_are_still_seen(tmp_path: Path) -> None:
    data = _joblib_bytes(tmp_path, [np.arange(4.0)])
    evil = data[:-1] + b"0" + shell_call() + b"."  # drop STOP, pop the list, add a payload
    assert rules(analyze(evil))["SEC-PICKLE-001"] == Severity.CRITICAL


# --- benign real pickles: zero findings -------------------------------------------------------


def _pending_allowlist() -> tuple[str, ...]:
    """Entries these benign models need that callables.py may not have yet (see report)."""
    needed = {("_loss", "CyHalfBinomialLoss"): "_loss.Cy*"}
    policy = CallablePolicy()
    return tuple(p for (m, n), p in needed.items() if policy.judge(m, n).tier != "allowed")


def _models() -> dict[str, object]:
    import lightgbm
    import xgboost
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    x, y = make_classification(120, 6, random_state=0)
    return {
        "logistic": LogisticRegression().fit(x, y),
        "forest": RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y),
        "pipeline": Pipeline([("s", StandardScaler()), ("svc", SVC())]).fit(x, y),
        "gboost": GradientBoostingClassifier(n_estimators=3).fit(x, y),
        "xgboost": xgboost.XGBClassifier(n_estimators=2).fit(x, y),
        "lightgbm": lightgbm.LGBMClassifier(n_estimators=2, verbose=-1).fit(x, y),
    }


MODELS = _models()
VALUES: dict[str, object] = {
    "ordereddict": collections.OrderedDict(a=1, b=[1, 2]),
    "defaultdict": collections.defaultdict(list, {"a": [1]}),
    "datetime": datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC),
    "decimal": decimal.Decimal("1.25"),
    "array": np.arange(12.0).reshape(3, 4),
    "structured": np.zeros(3, dtype=[("a", "f8"), ("b", "i4")]),
    "rng": np.random.RandomState(0),
}


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
@pytest.mark.parametrize("name", sorted({**MODELS, **VALUES}))
def test_benign_pickles_have_no_findings(name: str, protocol: int) -> None:
    value = {**MODELS, **VALUES}[name]
    data = pickle.dumps(value, protocol=protocol)
    report = analyze(data, CallablePolicy.from_config(_pending_allowlist()))
    assert report.findings == [], [f.to_dict() for f in report.findings]
    assert report.streams == 1
    assert looks_like_pickle(data)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_benign_joblib_models_have_no_findings(tmp_path: Path, name: str) -> None:
    data = _joblib_bytes(tmp_path, MODELS[name])
    report = analyze(data, CallablePolicy.from_config(_pending_allowlist()))
    assert report.findings == [], [f.to_dict() for f in report.findings]


def _state_dict() -> dict:
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    return net.state_dict()


def test_torch_zip_state_dict_has_no_findings() -> None:
    buf = io.BytesIO()
    torch.save(_state_dict(), buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as archive:
        data = archive.read("archive/data.pkl")
    report = analyze(data)
    assert report.findings == []
    assert report.persistent_ids == 7
    assert "torch._utils._rebuild_tensor_v2" in report.callables


def test_legacy_torch_stream_of_pickles_and_storages() -> None:
    buf = io.BytesIO()
    torch.save(_state_dict(), buf, _use_new_zipfile_serialization=False)
    report = analyze(buf.getvalue(), allow_trailing=True)
    assert report.findings == []
    assert report.streams == 5 and report.trailing_bytes > 0


# --- bounds ------------------------------------------------------------------------------------


def _timed(fn: Callable[[], PickleReport]) -> tuple[PickleReport, float, int]:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        report = fn()
        return report, time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "body",
    [b"]" + b"2a" * 2**20, b"]" + b"2\x86" * 2**20, b"]q\x00" + b"(h\x00h\x00lq\x00" * 2**20],
    ids=["dup-append", "dup-tuple2", "memo-get-doubling"],
)
def test_exponential_dup_get_bombs_end_in_a_limit_finding_fast(body: bytes) -> None:
    report, seconds, peak = _timed(lambda: analyze(proto(2) + body + b"."))
    [hit] = by_rule(report, "SEC-LIMIT-001")
    assert hit.evidence["limit"] == "pickle_values"
    # unbounded, the doubling takes hours and gigabytes; the margin is for a loaded machine
    assert seconds < 10.0 and peak < 50 * 2**20


def test_op_limit_and_time_budget_end_the_stream() -> None:
    many = proto(2) + b"N0" * 10_000 + b"N."
    ops = analyze_pickle(many, WHERE, Limits(max_pickle_ops=1000), CallablePolicy())
    assert by_rule(ops, "SEC-LIMIT-001")[0].evidence["limit"] == "pickle_ops"
    late = Limits(time_budget_s=0.0, started=time.monotonic() - 1)
    timed = analyze_pickle(many, WHERE, late, CallablePolicy())
    assert by_rule(timed, "SEC-LIMIT-001")[0].evidence["limit"] == "time"


def test_two_million_linear_opcodes_run_in_seconds() -> None:
    data = proto(2) + b"](" + b"K\x01" * 2**20 + b"e."
    started = time.perf_counter()
    report = analyze(data)
    # quadratic work would take minutes; the margin is for a loaded machine
    assert report.findings == [] and time.perf_counter() - started < 20.0


def test_large_joblib_of_float_arrays_is_mostly_skipped(tmp_path: Path) -> None:
    data = _joblib_bytes(tmp_path, {"w": np.zeros(4_000_000), "b": np.ones((1000, 500))})
    started = time.perf_counter()
    report = analyze(data)
    seconds = time.perf_counter() - started
    assert report.findings == []
    assert len(data) / seconds > 300e6  # bytes per second


# --- sniffing ----------------------------------------------------------------------------------


def test_sniff_recognises_pickles_of_every_protocol() -> None:
    for protocol in range(6):
        assert looks_like_pickle(pickle.dumps({"a": [1, 2.5]}, protocol=protocol))
    assert looks_like_pickle(shell_call() + b".")
    assert looks_like_pickle(pickle.dumps(list(range(20_000)), protocol=0)[:65_536])
    assert looks_like_pickle(b"]" + b"2a" * 100 + b".")  # a bomb is still a pickle


def test_sniff_rejects_random_bytes_and_tensor_bytes() -> None:
    rng = random.Random(1234)
    blobs = [rng.randbytes(rng.choice((64, 512, 4096))) for _ in range(20_000)]
    tensors = [
        np.random.default_rng(0).normal(size=4096).astype(np.float32).tobytes(),
        np.arange(4096, dtype=np.int64).tobytes(),
        np.ones(4096, dtype=np.float64).tobytes(),
        torch.randn(4096).numpy().tobytes(),
    ]
    assert [b for b in blobs + tensors if looks_like_pickle(b)] == []


# --- never executes ----------------------------------------------------------------------------


def test_module_named_in_a_pickle_is_never_imported() -> None:
    data = proto(2) + glob("gk_never_imported_mod", "boom") + b")R."
    analyze(data)
    assert "gk_never_imported_mod" not in sys.modules


def _imports(module: ModuleType) -> set[str]:
    tree = ast.parse(Path(str(module.__file__)).read_text())
    return {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }


@pytest.mark.parametrize("module", [pickle_vm, pickle_record, pickle_judge])
def test_the_machine_imports_no_loader(module: ModuleType) -> None:
    imported = {name.split(".")[0] for name in _imports(module)}
    assert not imported & {"pickle", "marshal", "importlib", "joblib", "cloudpickle", "dill"}
    source = Path(str(module.__file__)).read_text()
    assert "find_class" not in source.replace("no `find_class`", "")


def test_the_machine_records_and_the_judge_decides() -> None:
    # the interpreter never consults the allowlist or makes findings; the judge never reads
    # opcodes: what the stream does crosses between them only as a pickle_record
    assert not _imports(pickle_vm) & {"gates.security.callables", "gates.security.rules"}
    assert "gates.security.pickle_record" in _imports(pickle_judge)
    assert not {"struct", "pickletools", "codecs"} & _imports(pickle_judge)


def test_joblib_array_bytes_read_as_plain_pickle_are_judged_too(tmp_path: Path) -> None:
    # pickle.load (e.g. MLflow's pickle flavor) does not skip array bytes: a wrapper without
    # alignment whose "array" is opcodes runs them. joblib skips them; we read both ways.
    payload = shell_call() + b"0"  # 8-byte-aligned "float64" data that is also opcodes
    payload += b"N" * (-len(payload) % 8)
    data = (
        proto(2) + glob("joblib.numpy_pickle", "NumpyArrayWrapper") + b")\x81}("
        + uni("shape") + b"K" + bytes([len(payload) // 8]) + b"\x85" + uni("dtype")
        + glob("numpy", "dtype") + uni("f8") + b"\x89\x88\x87R" + uni("order") + uni("C")
        + b"ub" + payload + b"."
    )  # fmt: skip
    report = analyze(data)
    assert rules(report)["SEC-PICKLE-001"] == Severity.CRITICAL
    assert report.callables[-1] == "os.system"
