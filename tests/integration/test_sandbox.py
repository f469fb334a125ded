"""The sandbox against real, hostile pyfunc models saved with mlflow in tmp_path.

Each model below does one thing a malicious or broken model would do; each test asserts what
an operator would see: an error of the right kind with a readable message, the service
process unharmed, nothing left behind in the work dir.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow.pyfunc
import mlflow.sklearn
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from service.sandbox.isolation import IsolationConfig
from service.sandbox.runner import (
    SANDBOX_ENV_KEYS,
    GiskardRequest,
    Predictions,
    SandboxError,
    SandboxLimits,
    _interpret,
    _Outcome,
    predict_in_sandbox,
    scrubbed_env,
)
from tests.helpers import Listener

# `make test-fast` leaves these out: every test starts a sandboxed model process (seconds each)
pytestmark = pytest.mark.slow

SECRETS = ("MLFLOW_TRACKING_TOKEN", "GATEKEEPER_DATABASE_URL", "AWS_SECRET_ACCESS_KEY")
QUICK = SandboxLimits(wall_seconds=30)


# --- models (pickled by value, so the child loads them like any user's model) ---------------


class EnvReader(mlflow.pyfunc.PythonModel):
    """Looks for credentials; also prints to stdout, which must not corrupt the protocol."""

    def predict(self, context: Any, model_input: pd.DataFrame) -> list[str]:
        print("noise from print() on stdout")
        os.write(1, b"noise written straight to fd 1\n")
        found = [k for k in SECRETS if k in os.environ] or "none found"
        report = {
            "found": found,
            "home": os.environ.get("HOME"),
            "cwd": os.getcwd(),
            "keys": sorted(os.environ),
        }
        return [json.dumps(report)] * len(model_input)


class LoopsForever(mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: pd.DataFrame) -> list[int]:
        while True:
            pass


class Allocates20GiB(mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: pd.DataFrame) -> list[int]:
        hog = bytearray(20 * 1024**3)
        return [len(hog)] * len(model_input)


class CallsHome(mlflow.pyfunc.PythonModel):
    """Connects to a port on 127.0.0.1; optionally hides the failure and predicts anyway."""

    def __init__(self, port: int, swallow: bool) -> None:
        self.port = port
        self.swallow = swallow

    def predict(self, context: Any, model_input: pd.DataFrame) -> list[int]:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=3) as conn:
                conn.sendall(b"rows follow")
        except OSError:
            if not self.swallow:
                raise
        return [0] * len(model_input)


class CallsHomeFromSubprocess(mlflow.pyfunc.PythonModel):
    """A fresh interpreter has no audit hook: only the network namespace can stop this."""

    def __init__(self, port: int) -> None:
        self.port = port

    def predict(self, context: Any, model_input: pd.DataFrame) -> list[str]:
        import subprocess

        code = f"import socket; socket.create_connection(('127.0.0.1', {self.port}), timeout=3)"
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        outcome = done.stderr.strip().splitlines()[-1:] or ["connected"]
        return outcome * len(model_input)


class ExitsHard(mlflow.pyfunc.PythonModel):
    def __init__(self, when: str) -> None:
        self.when = when

    def load_context(self, context: Any) -> None:
        if self.when == "load":
            os._exit(3)

    def predict(self, context: Any, model_input: pd.DataFrame) -> list[int]:
        os._exit(3)


class TouchesMarker(mlflow.pyfunc.PythonModel):
    def __init__(self, path: str) -> None:
        self.path = path

    def load_context(self, context: Any) -> None:
        with open(self.path, "w") as marker:
            marker.write("loaded")

    def predict(self, context: Any, model_input: pd.DataFrame) -> list[int]:
        return [0] * len(model_input)


class FailsToLoad(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        raise RuntimeError("weights file is corrupt")

    def predict(self, context: Any, model_input: pd.DataFrame) -> list[int]:
        return [0] * len(model_input)


class PeeksForLabels(mlflow.pyfunc.PythonModel):
    """Waits a second for anything on its stdin (where the scan's labels arrive) before it
    answers: a model that saw labels could answer its scored rows perfectly."""

    def predict(self, context: Any, model_input: pd.DataFrame) -> list[int]:
        import select

        readable, _, _ = select.select([0], [], [], 1.0)
        saw = bool(readable) and b"target_values" in os.read(0, 1 << 20)
        return [int(saw)] * len(model_input)


class CountsCalls(mlflow.pyfunc.PythonModel):
    """Answers each row with `call:position`, as a model telling probes apart would see them."""

    calls = 0

    def predict(self, context: Any, model_input: pd.DataFrame) -> list[str]:
        CountsCalls.calls += 1
        return [f"{CountsCalls.calls}:{i}" for i in range(len(model_input))]


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    X, _ = make_classification(n_samples=50, n_features=4, random_state=0)
    return pd.DataFrame(X, columns=["a", "b", "c", "d"])


@pytest.fixture(scope="module")
def sklearn_model(tmp_path_factory: pytest.TempPathFactory, rows: pd.DataFrame) -> Path:
    _, y = make_classification(n_samples=50, n_features=4, random_state=0)
    path = tmp_path_factory.mktemp("models") / "logreg"
    model = LogisticRegression().fit(rows, y)
    mlflow.sklearn.save_model(model, path, serialization_format="pickle")
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "sandboxes"
    yield path
    assert not list(path.iterdir()), "the sandbox left files behind"


def save_pyfunc(tmp_path: Path, python_model: mlflow.pyfunc.PythonModel) -> Path:
    path = tmp_path / type(python_model).__name__
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        # Explicit requirements: inferring them would load the model in this process.
        mlflow.pyfunc.save_model(path, python_model=python_model, pip_requirements=["mlflow"])
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    return path


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    # Prove the listener works from this process, so "no connection" below means something.
    socket.create_connection(("127.0.0.1", server.port), timeout=3).close()
    deadline = time.monotonic() + 3
    while server.accepted < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.accepted == 1
    server.accepted = 0
    yield server
    server.close()


# --- what works ------------------------------------------------------------------------------


def test_sklearn_model_predicts_with_scores(
    sklearn_model: Path, rows: pd.DataFrame, workdir: Path
) -> None:
    result = predict_in_sandbox(sklearn_model, rows, limits=QUICK, workdir=workdir, run_id="t1")

    assert isinstance(result, Predictions)
    assert len(result.predictions) == len(rows)
    assert set(result.predictions) <= {0, 1}
    assert result.classes == [0, 1]
    assert result.scores is not None and len(result.scores) == len(rows)
    assert all(abs(sum(s) - 1) < 1e-9 for s in result.scores)
    ev = result.evidence
    assert {"start", "load", "predict", "total"} <= set(ev["timings_s"])
    # measured by the parent from outside, read back from the kernel
    assert ev["sandbox"] == "bwrap"
    assert set(ev["namespaces"].values()) == {"own"}
    assert set(ev["namespaces"]) == {"user", "pid", "mnt", "net", "ipc", "uts", "cgroup"}
    assert ev["capabilities"] == "none" and ev["no_new_privs"] is True
    assert ev["uid_in_sandbox"] == 65534
    assert ev["limits"]["RLIMIT_AS"] == QUICK.memory_bytes
    assert ev["limits"]["RLIMIT_CORE"] == 0
    assert ev["process_limit"]["max"] == 64


def test_giskard_scans_the_model_in_the_sandbox_without_a_network_attempt(
    sklearn_model: Path, rows: pd.DataFrame, workdir: Path
) -> None:
    """giskard.scan runs in the bubblewrap child (it calls the model). Importing and running
    it there makes no network attempt: the child's audit hook would have turned any attempt,
    even a swallowed one, into a `network` error instead of this result."""
    _, y = make_classification(n_samples=50, n_features=4, random_state=0)
    request = GiskardRequest(
        target_values=[int(v) for v in y], task="classification", cat_columns=[],
        detectors=["robustness", "performance"], row_indices=list(range(len(rows))),
        budget_s=100.0,
    )  # fmt: skip
    result = predict_in_sandbox(
        sklearn_model, rows, limits=SandboxLimits(wall_seconds=120), workdir=workdir,
        giskard=request,
    )  # fmt: skip

    assert result.giskard is not None and result.giskard.error is None
    assert result.giskard.seconds > 0
    assert "giskard" in result.evidence["timings_s"]
    for issue in result.giskard.issues:
        assert issue.level.value in ("major", "medium", "minor") and issue.detector


def test_the_scan_labels_reach_the_model_only_after_its_answers(
    tmp_path: Path, rows: pd.DataFrame, workdir: Path
) -> None:
    """Giskard's scan runs in the candidate's own process, so its labels are sent only once the
    parent holds the answers: a model that waits for them while answering sees nothing, and
    the scan still gets them afterwards."""
    model = save_pyfunc(tmp_path, PeeksForLabels())
    request = GiskardRequest(
        target_values=[0, 1] * 25, task="classification", cat_columns=[],
        detectors=["robustness"], row_indices=list(range(len(rows))), budget_s=100.0,
    )  # fmt: skip
    result = predict_in_sandbox(
        model, rows, limits=SandboxLimits(wall_seconds=120), workdir=workdir, giskard=request
    )
    assert result.predictions == [0] * len(rows)  # no label was there to see
    assert result.giskard is not None and result.giskard.error is None


def test_probe_rows_are_mixed_in_and_answered_in_one_call(
    tmp_path: Path, rows: pd.DataFrame, workdir: Path
) -> None:
    """The model cannot tell the robustness probes from the evaluation rows by call or by
    position: one `predict` call, the probes scattered among the rows in an unsent order."""
    model = save_pyfunc(tmp_path, CountsCalls())
    probes = rows.head(10).assign(a=0.0)
    result = predict_in_sandbox(
        model, pd.concat([rows, probes], ignore_index=True), limits=QUICK, workdir=workdir,
        n_primary=len(rows),
    )  # fmt: skip
    assert result.extra_predictions is not None and len(result.extra_predictions) == 10
    answers = [str(a).split(":") for a in [*result.predictions, *result.extra_predictions]]
    assert {call for call, _ in answers} == {"1"}
    positions = [int(position) for _, position in answers]
    assert sorted(positions) == list(range(len(rows) + 10))
    assert positions[: len(rows)] != list(range(len(rows)))  # not first, not in order
    assert max(positions[len(rows) :]) - min(positions[len(rows) :]) > 10  # not bunched


def test_probe_rows_the_model_refuses_cost_only_the_probes(
    sklearn_model: Path, rows: pd.DataFrame, workdir: Path
) -> None:
    """When the model raises on the rows with the probes mixed in, the evaluation rows are
    asked again alone: their predictions come back, and the probes' failure is told in the
    parent's own words."""
    probes = rows.head(5).assign(a=float("nan"))  # LogisticRegression refuses NaN
    result = predict_in_sandbox(
        sklearn_model, pd.concat([rows, probes], ignore_index=True), limits=QUICK,
        workdir=workdir, n_primary=len(rows),
    )  # fmt: skip
    assert len(result.predictions) == len(rows)
    assert result.extra_predictions is None
    assert result.extra_error is not None and "probe rows" in result.extra_error


def test_a_giskard_scan_past_its_budget_is_stopped_and_the_predictions_stand(
    sklearn_model: Path, rows: pd.DataFrame, workdir: Path
) -> None:
    _, y = make_classification(n_samples=50, n_features=4, random_state=0)
    request = GiskardRequest(
        target_values=[int(v) for v in y], task="classification", cat_columns=[],
        detectors=["robustness", "performance"], row_indices=list(range(len(rows))),
        budget_s=0.001,
    )  # fmt: skip
    result = predict_in_sandbox(
        sklearn_model, rows, limits=SandboxLimits(wall_seconds=120), workdir=workdir,
        giskard=request,
    )  # fmt: skip
    assert len(result.predictions) == len(rows)
    assert result.giskard is not None and result.giskard.error is not None
    assert "budget" in result.giskard.error


def test_model_finds_no_credentials_and_lives_in_its_own_dir(
    tmp_path: Path, rows: pd.DataFrame, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-should-not-leak")
    monkeypatch.setenv("GATEKEEPER_DATABASE_URL", "postgresql://gk:pw@db/gk")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-should-not-leak")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    model = save_pyfunc(tmp_path, EnvReader())

    result = predict_in_sandbox(model, rows.head(3), limits=QUICK, workdir=workdir)

    report = json.loads(result.predictions[0])
    assert report["found"] == "none found"
    assert set(report["keys"]) <= SANDBOX_ENV_KEYS
    assert "MLFLOW_TRACKING_URI" not in report["keys"]
    assert report["home"] == "/tmp" and report["cwd"] == "/tmp"  # the sandbox's own tmpfs


def test_scrubbed_env_holds_only_allowlisted_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in (*SECRETS, "MLFLOW_TRACKING_URI", "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_KEY"):
        monkeypatch.setenv(key, "secret")
    env = scrubbed_env("/tmp", "/tmp")
    assert set(env) <= SANDBOX_ENV_KEYS
    assert not [k for k in env if k.startswith(("GATEKEEPER_", "AWS_", "GOOGLE_", "AZURE_"))]
    assert "secret" not in env.values()
    assert str(tmp_path) not in env.values() and "PYTHONPATH" not in env
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true" and env["DO_NOT_TRACK"] == "true"


# --- what must fail closed -------------------------------------------------------------------


def test_endless_loop_is_killed_at_the_wall_timeout(
    tmp_path: Path, rows: pd.DataFrame, workdir: Path
) -> None:
    model = save_pyfunc(tmp_path, LoopsForever())
    started = time.monotonic()
    with pytest.raises(SandboxError) as caught:
        predict_in_sandbox(model, rows, limits=SandboxLimits(wall_seconds=5), workdir=workdir)
    elapsed = time.monotonic() - started
    assert caught.value.kind == "timeout"
    assert "did not finish within 5 s" in caught.value.message
    assert caught.value.stage == "predict"
    # the failure is a loop that runs forever; the margin is for a loaded machine
    assert elapsed < 5 + 25, elapsed


def test_cpu_limit_ends_a_busy_model_as_timeout(
    tmp_path: Path, rows: pd.DataFrame, workdir: Path
) -> None:
    model = save_pyfunc(tmp_path, LoopsForever())
    limits = SandboxLimits(cpu_seconds=4, wall_seconds=30)
    with pytest.raises(SandboxError) as caught:
        predict_in_sandbox(model, rows, limits=limits, workdir=workdir)
    assert caught.value.kind == "timeout"
    assert "CPU" in caught.value.message


def test_20_gib_allocation_is_a_memory_error_and_the_service_is_fine(
    tmp_path: Path, rows: pd.DataFrame, workdir: Path, sklearn_model: Path
) -> None:
    model = save_pyfunc(tmp_path, Allocates20GiB())
    own_limit = resource.getrlimit(resource.RLIMIT_AS)
    own_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    with pytest.raises(SandboxError) as caught:
        predict_in_sandbox(model, rows, limits=QUICK, workdir=workdir)

    assert caught.value.kind == "memory"
    assert "out of memory" in caught.value.message
    assert resource.getrlimit(resource.RLIMIT_AS) == own_limit  # limits hit the child only
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - own_rss < 200 * 1024  # KiB
    # and the service keeps serving
    after = predict_in_sandbox(sklearn_model, rows, limits=QUICK, workdir=workdir)
    assert len(after.predictions) == len(rows)


@pytest.mark.parametrize("swallow", [False, True], ids=["raises", "hides-the-error"])
def test_socket_to_localhost_is_a_network_error(
    tmp_path: Path, rows: pd.DataFrame, workdir: Path, listener: Listener, swallow: bool
) -> None:
    model = save_pyfunc(tmp_path, CallsHome(listener.port, swallow))
    with pytest.raises(SandboxError) as caught:
        predict_in_sandbox(model, rows, limits=QUICK, workdir=workdir)
    assert caught.value.kind == "network"
    assert "model tried to reach the network in predict" in caught.value.message
    # the address the model tried is for admins, not in the published message
    assert f"127.0.0.1', {listener.port}" in str(caught.value.diagnostics["network_attempts"])
    assert str(listener.port) not in caught.value.message
    assert listener.accepted == 0


def test_unconfined_mode_is_recorded_and_the_audit_hook_still_catches_the_attempt(
    tmp_path: Path, rows: pd.DataFrame, workdir: Path, listener: Listener
) -> None:
    model = save_pyfunc(tmp_path, CallsHome(listener.port, swallow=True))
    with pytest.raises(SandboxError) as caught:
        predict_in_sandbox(
            model,
            rows,
            limits=QUICK,
            workdir=workdir,
            isolation=IsolationConfig(mode="unconfined"),
        )
    assert caught.value.kind == "network"
    assert caught.value.evidence["sandbox"] == "unconfined"
    assert set(caught.value.evidence["namespaces"].values()) == {"shared with the worker"}
    assert listener.accepted == 0


def test_network_namespace_stops_what_the_audit_hook_cannot_see(
    tmp_path: Path, rows: pd.DataFrame, workdir: Path, listener: Listener
) -> None:
    model = save_pyfunc(tmp_path, CallsHomeFromSubprocess(listener.port))

    result = predict_in_sandbox(model, rows.head(2), limits=QUICK, workdir=workdir)

    assert "Connection refused" in result.predictions[0], result.predictions
    assert listener.accepted == 0
    assert result.evidence["namespaces"]["net"] == "own"


def test_without_bubblewrap_the_model_is_not_loaded(
    tmp_path: Path, rows: pd.DataFrame, workdir: Path
) -> None:
    marker = tmp_path / "loaded"
    model = save_pyfunc(tmp_path, TouchesMarker(str(marker)))
    missing = IsolationConfig(bwrap=str(tmp_path / "no-such-bwrap"))
    with pytest.raises(SandboxError) as caught:
        predict_in_sandbox(model, rows, limits=QUICK, workdir=workdir, isolation=missing)
    assert caught.value.kind == "isolation"
    assert "could not be set up" in caught.value.message and "bubblewrap" in caught.value.message
    assert not marker.exists()


@pytest.mark.parametrize("when", ["load", "predict"])
def test_hard_exit_is_a_crash_blamed_on_its_stage(
    tmp_path: Path, rows: pd.DataFrame, workdir: Path, when: str
) -> None:
    model = save_pyfunc(tmp_path, ExitsHard(when))
    with pytest.raises(SandboxError) as caught:
        predict_in_sandbox(model, rows, limits=QUICK, workdir=workdir)
    assert caught.value.kind == "crash"
    assert caught.value.stage == when
    assert f"exited with status 3 in {when}" in caught.value.message


def test_load_error_names_the_stage_and_quotes_the_traceback(
    tmp_path: Path, rows: pd.DataFrame, workdir: Path
) -> None:
    model = save_pyfunc(tmp_path, FailsToLoad())
    with pytest.raises(SandboxError) as caught:
        predict_in_sandbox(model, rows, limits=QUICK, workdir=workdir)
    assert caught.value.kind == "load"
    assert caught.value.message == (
        "sandbox load error: model failed in load: RuntimeError raised in load "
        "(its message is in the run's admin diagnostics)"
    )
    diagnostics = caught.value.diagnostics
    assert diagnostics["exception"] == "RuntimeError: weights file is corrupt"
    assert "load_context" in diagnostics["stderr_tail"]


# --- the parent's reading of what came back (no process needed) ------------------------------


def _outcome(stdout: bytes, returncode: int = 0) -> _Outcome:
    return _Outcome(
        returncode=returncode,
        timed_out=False,
        started_at=0.0,
        ended_at=1.0,
        stdout=stdout,
        stdout_overflowed=False,
        stdout_complete=True,
        stderr="Traceback ...\nsomething the model said\n",
    )


def _lines(*events: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


ANSWERS = {"event": "answers", "predictions": [1, 0], "scores": None, "classes": None}
RESULT = {"event": "result"}


@pytest.mark.parametrize(
    ("stdout", "returncode", "kind", "words"),
    [
        (b"not json at all\n" + _lines(ANSWERS, RESULT), 0, "protocol", "not the JSON"),
        (_lines(RESULT), 0, "protocol", "not the JSON"),  # no answers
        (_lines({"event": "stage", "stage": "load"}), 0, "protocol", "not the JSON"),
        (_lines({"event": "stage", "stage": "predict"}), -24, "timeout", "CPU"),  # SIGXCPU
        (_lines({"event": "stage", "stage": "predict"}), -9, "memory", "SIGKILL"),
        (_lines({"event": "stage", "stage": "load"}), -11, "crash", "SIGSEGV during load"),
        (_lines({**ANSWERS, "predictions": [1]}, RESULT), 0, "predict", "1 predictions for 2 rows"),
    ],
)
def test_answers_that_are_not_predictions_fail_closed(
    stdout: bytes, returncode: int, kind: str, words: str
) -> None:
    with pytest.raises(SandboxError) as caught:
        _interpret(_outcome(stdout, returncode), SandboxLimits(), 2, {})
    assert caught.value.kind == kind
    assert words in caught.value.message
    assert "something the model said" not in caught.value.message
    assert "something the model said" in caught.value.diagnostics["stderr_tail"]


def test_after_the_scan_labels_went_in_the_answers_stand_and_only_the_scan_can_fail() -> None:
    """Once the labels were sent, the answers held then are final: a crash in the scan costs
    the scan, a later `answers` line changes nothing, a network attempt still fails it all."""
    crashed = _lines(ANSWERS, {"event": "stage", "stage": "giskard"})
    outcome = dataclasses.replace(_outcome(crashed, -11), committed_bytes=len(crashed))
    result = _interpret(outcome, SandboxLimits(), 2, {})
    assert result.predictions == [1, 0]
    assert result.giskard is not None and "failed" in (result.giskard.error or "")

    forged = _lines(ANSWERS, {**ANSWERS, "predictions": [0, 1]}, {"event": "result", "giskard": {
        "issues": [], "seconds": 1.0}})  # fmt: skip
    outcome = dataclasses.replace(_outcome(forged, 0), committed_bytes=len(_lines(ANSWERS)))
    assert _interpret(outcome, SandboxLimits(), 2, {}).predictions == [1, 0]

    network = _lines(ANSWERS, {"event": "error", "kind": "network", "stage": "giskard"})
    outcome = dataclasses.replace(_outcome(network, 1), committed_bytes=len(_lines(ANSWERS)))
    with pytest.raises(SandboxError) as caught:
        _interpret(outcome, SandboxLimits(), 2, {})
    assert caught.value.kind == "network"
