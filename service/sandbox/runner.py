"""Run a model in a contained child process and bring back only its predictions.

Loading an MLflow model runs code the model's author chose (cloudpickle, a python_model, a
flavor's loader). Even after the security gate passed, the gatekeeper treats that code as
hostile: it runs `service/sandbox/child.py` inside bubblewrap (service/sandbox/isolation.py
says how and why), so the model finds no secret in its environment, no file of the host
except its own directory, its rows and the Python installation (all read-only), no network,
no other process, and limits on memory, CPU, processes, files and disk it cannot raise.

- A narrow pipe. Rows go in as a read-only parquet file, a JSON request comes in on stdin,
  JSON lines come back on stdout (bounded); the parent takes from them only predictions,
  scores, classes, the stage names and the child's timings, each validated. Everything else
  about the sandbox (namespaces, uid, capabilities, limits) is measured by the parent.
- Wall timeout. The child is killed with every descendant when its time is up: its process
  group, its PID namespace (its init dies with bwrap) and, for a root worker, its cgroup.
- Exactly its input columns. The rows the model gets are its signature's columns, else (no
  signature) the ones the fitted model names inside the sandbox (service/sandbox/inputs.py);
  the target and the sensitive features stay here.
- Nothing the model printed is published. A failure is a `SandboxError` whose message is made
  of a fixed kind and stage, numbers the parent knows and classified, row-free reasons
  (service/sandbox/reasons.py: a missing or unexpected column of the gatekeeper's own data, a
  dtype mismatch, an exception's type from a fixed list); the model's stderr tail, exception
  text and network attempts go to `diagnostics` (the worker log and an admin-only field of the
  run JSON), truncated.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from gates.mlmodel import read_mlmodel
from gates.robustness import GiskardIssue, GiskardLevel, GiskardScan
from service.errors import GatekeeperError
from service.sandbox.inputs import InputMismatch, ModelInputs, SentColumns, select_model_inputs
from service.sandbox.isolation import (
    MODEL_MOUNT,
    ROWS_MOUNT,
    IsolationConfig,
    IsolationError,
    Launched,
    ResourceLimits,
    bwrap_command,
    launch_bwrap,
    launch_unconfined,
    resolve_bwrap,
    write_etc,
)
from service.sandbox.reasons import exception_type

log = logging.getLogger("gatekeeper.sandbox")

SANDBOX_KINDS = frozenset(
    {"isolation", "input", "timeout", "memory", "crash", "network", "load", "predict", "protocol"}
)
STAGES = ("start", "rows", "import", "load", "predict", "giskard")
CHILD_SCRIPT = Path(__file__).with_name("child.py")
STDERR_TAIL_BYTES = 64 * 1024
DIAGNOSTIC_CHARS = 4000  # what of the model's own output an admin gets to see
STDOUT_MAX_BYTES = 256 * 1024**2
_POLL_S = 0.02
_DRAIN_S = 5.0
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
_FIXED_ENV = {
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "PYTHONHASHSEED": "0",  # same rows, same predictions, also for models that hash
    "PYTHONDONTWRITEBYTECODE": "1",  # never write .pyc next to the model's code
    "PYTHONNOUSERSITE": "1",  # no ~/.local site-packages
    # One thread per library: the CPU and process limits are predictable this way.
    **dict.fromkeys(_THREAD_VARS, "1"),
    # Opt-outs of every phone-home we know of in the libraries a model loads.
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_ENV_CREATION": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "GSK_DISABLE_ANALYTICS": "true",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
# Every key the child's environment may hold; `scrubbed_env` never adds another.
# PWD: bwrap sets it to the working directory it enters (/tmp).
SANDBOX_ENV_KEYS = frozenset({"HOME", "TMPDIR", "PWD", *_FIXED_ENV})


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int = 4 * 1024**3  # RLIMIT_AS, per process
    cpu_seconds: int = 300  # RLIMIT_CPU (soft; SIGKILL 5 s later)
    wall_seconds: float = 600.0  # the parent kills everything after this
    open_files: int = 256  # RLIMIT_NOFILE
    file_bytes: int = 1024**3  # RLIMIT_FSIZE

    def resources(self) -> ResourceLimits:
        return ResourceLimits(
            memory_bytes=self.memory_bytes,
            cpu_seconds=self.cpu_seconds,
            file_bytes=self.file_bytes,
            open_files=self.open_files,
        )


@dataclass
class Predictions:
    predictions: list[Any]
    scores: list[list[float]] | None
    classes: list[Any] | None
    evidence: dict[str, Any] = field(default_factory=dict)
    giskard: GiskardScan | None = None  # when the request asked for Giskard's scan
    # answers for the rows after the first `n_primary` (robustness probes), or why there are
    # none; the primary predictions stand either way
    extra_predictions: list[Any] | None = None
    extra_error: str | None = None
    # why there are no scores although the model has predict_proba (classified, row-free)
    scores_error: str | None = None
    # what the model's process wrote that admins may read (the Giskard scan's exception)
    diagnostics: dict[str, Any] = field(default_factory=dict)


class SandboxError(GatekeeperError):
    """The model could not be evaluated in the sandbox; the gate is an error, the run fails.

    `message` is safe to publish (kind, stage, the parent's own numbers and the classified
    `reasons`); `diagnostics` holds what the model itself wrote and is for the worker log and
    admins only.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        stage: str | None = None,
        diagnostics: dict[str, Any] | None = None,
        evidence: dict[str, Any] | None = None,
        reasons: list[str] | None = None,
    ) -> None:
        if kind not in SANDBOX_KINDS:
            raise ValueError(f"unknown sandbox error kind {kind!r}")
        self.kind = kind
        self.stage = stage
        self.diagnostics = diagnostics or {}
        self.evidence = evidence or {}
        self.reasons = reasons or []
        self.message = f"sandbox {kind} error: {message}"
        super().__init__(self.message)


def scrubbed_env(home: str, tmp: str) -> dict[str, str]:
    """The child's whole environment: an allowlist, never a copy of ours minus secrets."""
    env = dict(_FIXED_ENV)
    env["HOME"] = home
    env["TMPDIR"] = tmp
    if extra := set(env) - SANDBOX_ENV_KEYS:  # an invariant, checked even under python -O
        raise RuntimeError(f"sandbox environment outside the allowlist: {sorted(extra)}")
    return env


class _Reader(threading.Thread):
    """Drains one pipe so the child never blocks on it; keeps a bounded head or tail."""

    def __init__(self, stream: IO[bytes], limit: int, *, keep_tail: bool) -> None:
        super().__init__(daemon=True)
        self._stream = stream
        self._limit = limit
        self._keep_tail = keep_tail
        self.data = bytearray()
        self.overflowed = False

    def run(self) -> None:
        with self._stream:
            # read1: whatever is there now, so a chatty child never waits on a full pipe
            while chunk := self._stream.read1(65536):  # type: ignore[attr-defined]
                if self._keep_tail:
                    self.data += chunk
                    del self.data[: max(0, len(self.data) - self._limit)]
                elif len(self.data) + len(chunk) <= self._limit:
                    self.data += chunk
                else:
                    self.overflowed = True  # keep draining, discard


@dataclass
class _Outcome:
    returncode: int
    timed_out: bool
    started_at: float  # time.monotonic() just before the child was spawned
    ended_at: float  # ... and when it was reaped
    stdout: bytes
    stdout_overflowed: bool
    stdout_complete: bool
    stderr: str
    # how much of stdout we held when the follow-up (the scan's labels) went in, if it did
    committed_bytes: int | None = None


def _wait_exited(pid: int, deadline: float) -> bool:
    """Wait for the child to exit without reaping it (its pid keeps naming the group)."""
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
            return True
        time.sleep(_POLL_S)
    return False


def _answers_seen(out: _Reader) -> bool:
    """Whether a complete `answers` line is in what the child has written so far."""
    data = bytes(out.data)
    end = data.rfind(b"\n")
    for line in data[: end + 1].splitlines():
        if b'"answers"' in line:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("event") == "answers":
                return True
    return False


def _send_after_answers(proc: Any, out: _Reader, follow_up: bytes, deadline: float) -> int | None:
    """Write `follow_up` once the child's answers are in our buffer; returns how many bytes of
    stdout we held then (the answers are in them, beyond the child's reach), or None when the
    child died, overflowed or ran out of time first and never got it."""
    while time.monotonic() < deadline and not out.overflowed:
        if _answers_seen(out):
            committed = len(out.data)
            try:
                proc.stdin.write(follow_up)
                proc.stdin.close()
            except BrokenPipeError:
                pass
            return committed
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
            break
        time.sleep(_POLL_S)
    return None


def _converse(
    launched: Launched,
    request: bytes,
    started_at: float,
    wall_s: float,
    follow_up: bytes | None = None,
) -> _Outcome:
    """Send the request (and, once the answers are in, the follow-up), wait until the wall
    time is up, kill everything, collect the output."""
    proc = launched.proc
    assert proc.stdin and proc.stdout and proc.stderr
    out = _Reader(proc.stdout, STDOUT_MAX_BYTES, keep_tail=False)
    err = _Reader(proc.stderr, STDERR_TAIL_BYTES, keep_tail=True)
    out.start()
    err.start()
    deadline = started_at + wall_s
    committed = None
    try:
        proc.stdin.write(request + b"\n")
        proc.stdin.flush()
        if follow_up is not None:
            committed = _send_after_answers(proc, out, follow_up + b"\n", deadline)
    except BrokenPipeError:
        pass  # the child died before reading; its exit status says why
    finally:
        if not proc.stdin.closed:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
    exited = _wait_exited(proc.pid, deadline)
    # The leader is a zombie or still running, so its pid cannot have been reused: kill the
    # group, the namespace and the cgroup, including anything the model left running.
    launched.kill()
    returncode = proc.wait()
    if launched.evidence.get("sandbox") == "bwrap" and 128 < returncode < 128 + 65:
        returncode = 128 - returncode  # bwrap exits 128+N when its command died of signal N
    ended_at = time.monotonic()
    out.join(_DRAIN_S)
    err.join(_DRAIN_S)
    return _Outcome(
        returncode=returncode,
        timed_out=not exited,
        started_at=started_at,
        ended_at=ended_at,
        stdout=bytes(out.data),
        stdout_overflowed=out.overflowed,
        stdout_complete=not out.is_alive(),
        stderr=bytes(err.data).decode("utf-8", "replace"),
        committed_bytes=committed,
    )


def _parse_events(stdout: bytes) -> tuple[list[dict[str, Any]], bool]:
    events: list[dict[str, Any]] = []
    malformed = False
    for line in stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            malformed = True
            continue
        if isinstance(event, dict):
            events.append(event)
        else:
            malformed = True
    return events, malformed


def _stage(value: Any) -> str:
    """A stage name from the child, accepted only from the fixed list."""
    return value if isinstance(value, str) and value in STAGES else "unknown"


def _signal_error(returncode: int, stage: str, limits: SandboxLimits) -> tuple[str, str]:
    sig = -returncode
    name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
    if sig == signal.SIGXCPU:
        return "timeout", f"model used more than {limits.cpu_seconds} s of CPU; killed (SIGXCPU)"
    if sig == signal.SIGKILL:
        return "memory", (
            f"model process was killed by SIGKILL during {stage}: out of memory (kernel "
            f"OOM killer; the address-space limit is {limits.memory_bytes} bytes) or it "
            f"ignored the CPU limit of {limits.cpu_seconds} s"
        )
    if sig == signal.SIGXFSZ:
        return "crash", f"model wrote a file larger than {limits.file_bytes} bytes; killed"
    return "crash", f"model process died of signal {name} during {stage}"


def _diagnostics(outcome: _Outcome, final: dict[str, Any] | None) -> dict[str, Any]:
    """What the model wrote, truncated: for the worker log and admins, never published."""
    diagnostics: dict[str, Any] = {"stderr_tail": outcome.stderr[-DIAGNOSTIC_CHARS:]}
    if final is not None and final.get("event") == "error":
        diagnostics["exception"] = f"{final.get('type')}: {final.get('message')}"[:DIAGNOSTIC_CHARS]
        attempts = final.get("network_attempts")
        if isinstance(attempts, list):
            diagnostics["network_attempts"] = [str(a)[:200] for a in attempts[:20]]
    return diagnostics


def _interpret(
    outcome: _Outcome,
    limits: SandboxLimits,
    n_rows: int,
    evidence: dict[str, Any],
    columns: SentColumns | None = None,
) -> Predictions:
    columns = columns or SentColumns()
    events, malformed = _parse_events(outcome.stdout)
    stages = [e for e in events if e.get("event") == "stage"]
    stage = _stage(stages[-1].get("stage")) if stages else "start"
    final = events[-1] if events and events[-1].get("event") in ("result", "error") else None
    _add_stage_timings(evidence, stages, final, outcome)
    answers = next((e for e in events if e.get("event") == "answers"), None)

    def fail(kind: str, message: str, reasons: list[str] | None = None) -> SandboxError:
        return SandboxError(
            kind,
            message,
            stage=stage,
            diagnostics=_diagnostics(outcome, final),
            evidence=evidence,
            reasons=reasons,
        )

    if outcome.committed_bytes is not None and answers is not None:
        # The scan's labels went in after these answers: they stand whatever happens next,
        # and what happens next decides only the scan (a network attempt fails everything).
        predictions = _predictions(answers, n_rows, evidence, fail, columns)
        failure = _failure(outcome, final, stage, limits, columns)
        if failure is not None and failure[0] == "network":
            raise fail(*failure)
        if failure is not None or malformed or final is None:
            predictions.giskard = _failed_scan(failure)
        else:
            predictions.giskard = _giskard_scan(final.get("giskard"))
            predictions.diagnostics.update(_scan_diagnostics(final.get("giskard")))
        return predictions
    failure = _failure(outcome, final, stage, limits, columns)
    if failure is not None:
        raise fail(*failure)
    if malformed or final is None or answers is None:
        raise fail("protocol", "the sandbox's answer was not the JSON it should be")
    return _predictions(answers, n_rows, evidence, fail, columns)


def _failure(
    outcome: _Outcome,
    final: dict[str, Any] | None,
    stage: str,
    limits: SandboxLimits,
    columns: SentColumns,
) -> tuple[str, str, list[str]] | None:
    """What went wrong with the child, in the parent's words (kind, message, the classified
    reasons in it), or None."""
    if outcome.timed_out:
        why = f"model did not finish within {limits.wall_seconds:g} s (in {stage}); killed"
        return "timeout", why, []
    if outcome.returncode < 0:
        return (*_signal_error(outcome.returncode, stage, limits), [])
    if final is not None and final.get("event") == "error":
        reported = final.get("kind")
        kind = reported if isinstance(reported, str) and reported in SANDBOX_KINDS else "crash"
        # only the parent says "isolation" or "input"
        kind = "crash" if kind in ("isolation", "input") else kind
        where = _stage(final.get("stage"))
        reasons = []
        if kind not in ("network", "memory"):
            raised = f"{exception_type(final.get('type'))} raised in {where}"
            reasons = [*columns.reasons(final), raised]
        return kind, _child_error_message(kind, where, limits, reasons), reasons
    if outcome.returncode != 0:
        return "crash", f"model process exited with status {outcome.returncode} in {stage}", []
    if outcome.stdout_overflowed or not outcome.stdout_complete:
        return "protocol", "the sandbox's answer was cut off or its output left open", []
    return None


def _failed_scan(failure: tuple[str, str, list[str]] | None) -> GiskardScan:
    if failure is not None and failure[0] == "timeout":
        return GiskardScan(error="the Giskard scan did not finish within the sandbox's wall time")
    if failure is not None:
        why = f" ({'; '.join(failure[2])})" if failure[2] else ""
        return GiskardScan(error=f"the Giskard scan failed: sandbox {failure[0]} error{why}")
    return GiskardScan(error="the Giskard scan's answer was not the JSON it should be")


@dataclass(frozen=True)
class GiskardRequest:
    """What the child needs to run giskard.scan on the rows it was given."""

    target_values: list[Any]
    task: str  # classification | regression
    cat_columns: list[str]
    detectors: list[str]
    row_indices: list[int]  # which primary rows the scan uses (a seeded sample)
    budget_s: float  # the child stops the scan at this; the wall limit bounds the rest

    def as_request(self) -> dict[str, Any]:
        return asdict(self)


_MAX_GISKARD_ISSUES = 200
_MAX_REPORT_CHARS = 8 * 1024**2
_MAX_TEXT = 1000


def _giskard_scan(raw: Any) -> GiskardScan:
    """The child's scan report, bounded and typed: it came from the model's process, so every
    field is text we cut to size, and a malformed report is an error, never a clean scan."""
    if isinstance(raw, dict) and raw.get("error") == "timeout":
        return GiskardScan(
            error="the Giskard scan did not finish within its budget and was stopped"
        )
    if isinstance(raw, dict) and "error" in raw:
        # its type from the fixed list, never its message (which may quote rows): the scan's
        # own exception is for admins (`_scan_diagnostics`)
        raised = exception_type(raw.get("type"))
        return GiskardScan(
            error=f"the Giskard scan failed in the sandbox: {raised} raised in the Giskard scan"
        )
    if not isinstance(raw, dict) or not isinstance(raw.get("issues"), list):
        return GiskardScan(error="the Giskard scan returned no issue list")
    issues = []
    for item in raw["issues"][:_MAX_GISKARD_ISSUES]:
        if not isinstance(item, dict):
            return GiskardScan(error="the Giskard scan returned a malformed issue")
        try:
            level = GiskardLevel(str(item.get("level", "")).lower())
        except ValueError:
            return GiskardScan(error="the Giskard scan returned an issue of unknown level")
        features = item.get("features")
        issues.append(
            GiskardIssue(
                level=level,
                detector=_text(item.get("detector")),
                group=_text(item.get("group")),
                features=tuple(_text(f) for f in features[:20])
                if isinstance(features, list)
                else (),
                metric=_text(item.get("metric")),
                deviation=_text(item.get("deviation")),
                description="",  # free text written in the model's process: not kept
            )
        )
    seconds = raw.get("seconds")
    if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
        seconds = 0.0
    html = raw.get("html")
    if not isinstance(html, str) or len(html) > _MAX_REPORT_CHARS:
        html = None  # kept only when it is text of a sane size
    return GiskardScan(issues=tuple(issues), seconds=float(seconds), html=html)


def _scan_diagnostics(raw: Any) -> dict[str, Any]:
    """The scan's exception, as the model's process reported it: for admins only."""
    if not isinstance(raw, dict) or raw.get("error") != "exception":
        return {}
    return {"giskard_exception": f"{raw.get('type')}: {raw.get('message')}"[:DIAGNOSTIC_CHARS]}


_SAFE_TEXT = re.compile(r"[^A-Za-z0-9 _.,:%+<>=()/-]")


def _text(value: Any) -> str:
    """A short field of the model's process, cut to a plain charset and 120 characters: it is
    shown (escaped) as evidence, never used as a message."""
    if not isinstance(value, str | int | float):
        return ""
    return _SAFE_TEXT.sub("", str(value))[:120]


def _plain_json(value: Any) -> Any:
    """numpy scalars in target values: JSON as their Python value."""
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _child_error_message(
    kind: str, stage: str, limits: SandboxLimits, reasons: list[str] | None = None
) -> str:
    if kind == "network":
        return f"model tried to reach the network in {stage}; refused"
    if kind == "memory":
        limit = f"address-space limit {limits.memory_bytes / 1024**3:g} GiB"
        return f"model ran out of memory in {stage} ({limit})"
    if reasons:
        why = "; ".join(reasons)
        return f"model failed in {stage}: {why} (its message is in the run's admin diagnostics)"
    return f"model failed in {stage} (its exception is in the run's admin diagnostics)"


_SCALARS = (str, int, float, bool, type(None))


def _plain_values(values: list[Any]) -> bool:
    """Predictions are numbers, strings or booleans (or short lists of them), nothing else."""
    for value in values:
        if isinstance(value, list):
            if not all(isinstance(v, _SCALARS) for v in value):
                return False
        elif not isinstance(value, _SCALARS):
            return False
    return True


def _predictions(
    final: dict[str, Any], n_rows: int, evidence: dict[str, Any], fail: Any, columns: SentColumns
) -> Predictions:
    predictions = final.get("predictions")
    scores, classes = final.get("scores"), final.get("classes")
    if not isinstance(predictions, list) or len(predictions) != n_rows:
        count = len(predictions) if isinstance(predictions, list) else "no list of"
        raise fail("predict", f"model returned {count} predictions for {n_rows} rows")
    if not _plain_values(predictions):
        raise fail("predict", "model returned predictions that are not plain values")
    if scores is not None and (
        not isinstance(scores, list)
        or len(scores) != n_rows
        or not all(isinstance(row, list) for row in scores)
        or not _plain_values(scores)
    ):
        scores, evidence["scores_error"] = None, "predict_proba did not give one row per input"
    if classes is not None and (not isinstance(classes, list) or not _plain_values(classes)):
        classes = None
    scores_error = None
    report = final.get("scores_error")
    if scores is None and isinstance(report, dict):
        raised = f"{exception_type(report.get('type'))} raised in predict_proba"
        scores_error = "; ".join([raised, *columns.reasons(report)])
        evidence["scores_error"] = scores_error
    if columns.sent:
        evidence["model_inputs"] = columns.evidence(final.get("model_columns"))
    return Predictions(
        predictions=predictions,
        scores=scores,
        classes=classes,
        evidence=evidence,
        scores_error=scores_error,
    )


def _add_stage_timings(
    evidence: dict[str, Any],
    stages: list[dict[str, Any]],
    final: dict[str, Any] | None,
    outcome: _Outcome,
) -> None:
    """Seconds per stage from the child's announcements, clamped to what the parent saw."""
    spawned, ended = outcome.started_at, outcome.ended_at

    def clock(value: Any) -> float | None:
        if isinstance(value, int | float) and math.isfinite(value):
            return min(max(float(value), spawned), ended)
        return None

    announced = [(_stage(e.get("stage")), clock(e.get("t"))) for e in stages[: len(STAGES) + 1]]
    marks = [(name, t) for name, t in announced if t is not None]
    timings: dict[str, float] = {"total": round(ended - spawned, 4)}
    if marks:
        # "start": process creation, sandbox set-up, interpreter start-up, the request.
        marks[0] = ("start", spawned)
        end_of_last = clock(final.get("t")) if final is not None else None
        ends = [t for _name, t in marks[1:]]
        ends.append(end_of_last if end_of_last is not None else ended)
        for (name, began), end in zip(marks, ends, strict=True):
            timings[name] = round(max(0.0, end - began), 4)
    evidence["timings_s"] = timings


def _write_rows(rows: pd.DataFrame, path: Path) -> list[Any]:
    """Parquet keeps dtypes; names travel in the JSON request (parquet wants strings)."""
    columns = [c.item() if hasattr(c, "item") else c for c in rows.columns]
    frame = rows.reset_index(drop=True)
    frame.columns = [str(c) for c in columns]
    frame.to_parquet(path, index=False)
    return columns


def _launch(
    isolation: IsolationConfig,
    limits: SandboxLimits,
    sandbox_dir: Path,
    model_dir: Path,
    rows_path: Path,
) -> tuple[Launched, dict[str, str]]:
    """Start the child; returns it and the paths it must be told (inside its own view)."""
    if isolation.mode == "unconfined":
        home, tmp = sandbox_dir / "home", sandbox_dir / "tmp"
        home.mkdir()
        tmp.mkdir()
        cmd = [sys.executable, "-I", str(CHILD_SCRIPT)]
        env = scrubbed_env(str(home), str(tmp))
        launched = launch_unconfined(cmd, env=env, cwd=sandbox_dir, limits=limits.resources())
        paths = {"model_dir": str(model_dir), "rows_path": str(rows_path)}
        return launched, paths
    bwrap = resolve_bwrap(isolation.bwrap)
    etc_dir = write_etc(sandbox_dir / "etc")
    env = scrubbed_env("/tmp", "/tmp")

    def command(info_fd: int, block_fd: int) -> list[str]:
        return bwrap_command(
            bwrap,
            python=sys.executable,
            child_script=CHILD_SCRIPT,
            model_dir=model_dir,
            rows_path=rows_path,
            etc_dir=etc_dir,
            env=env,
            config=isolation,
            info_fd=info_fd,
            block_fd=block_fd,
        )

    launched = launch_bwrap(command, config=isolation, limits=limits.resources())
    return launched, {"model_dir": MODEL_MOUNT, "rows_path": ROWS_MOUNT}


def predict_in_sandbox(
    model_dir: Path,
    rows: pd.DataFrame,
    *,
    limits: SandboxLimits,
    workdir: Path,
    isolation: IsolationConfig | None = None,
    run_id: str | None = None,
    giskard: GiskardRequest | None = None,
    n_primary: int | None = None,
    data_columns: Collection[Any] | None = None,
) -> Predictions:
    """Load the model in a contained child process and return its predictions for `rows`
    (and, when asked, Giskard's scan of the model on the rows `giskard.row_indices` names).

    The model gets only its input columns of `rows` (service/sandbox/inputs.py). A failure's
    published reasons may name the columns of `data_columns` (the evaluation data the
    gatekeeper loaded; by default the columns of `rows`) and no other name a model reports.

    Rows after the first `n_primary` are extra rows (the robustness probes). The child gets
    every row in one file, in an order drawn here from the OS's entropy and never sent, and
    answers them in one `predict` call: a model cannot answer the probes differently from the
    evaluation rows by telling which call or which position they are in. Their answers come
    back in `extra_predictions`. When the model fails on the mixed rows, the evaluation rows
    are asked again alone and `extra_error` says why the probes have no answers.

    Raises SandboxError (kind isolation, input, timeout, memory, crash, network, load, predict
    or protocol); an isolation that cannot be set up is an error, never a run without it.
    """
    primary = len(rows) if n_primary is None else n_primary
    # judged on the evaluation rows: a probe row MLflow refuses costs the probes only (below)
    selected = _select_inputs(model_dir, rows.iloc[:primary])
    known = rows.columns if data_columns is None else data_columns
    call = _Call(isolation or IsolationConfig(), run_id, SentColumns.of(selected, known))
    rows = rows[list(selected.rows.columns)]
    if primary == len(rows):
        return _predict_once(model_dir, rows, limits, workdir, call, giskard)
    order = np.random.default_rng().permutation(len(rows))  # unseeded: the OS's entropy
    position = np.empty_like(order)
    position[order] = np.arange(len(rows))  # where row i went in the shuffled file
    shuffled_scan = None
    if giskard is not None:
        rows_scanned = [int(position[i]) for i in giskard.row_indices]
        shuffled_scan = dataclasses.replace(giskard, row_indices=rows_scanned)
    try:
        mixed = _predict_once(model_dir, rows.iloc[order], limits, workdir, call, shuffled_scan)
    except SandboxError as exc:
        if exc.kind != "predict":
            raise
        log.warning("run=%s model failed on the rows with probes; asking without them", run_id)
        alone = _predict_once(model_dir, rows.iloc[:primary], limits, workdir, call, giskard)
        alone.extra_error = (
            "the model failed when the probe rows were among the evaluation rows "
            "(an unseen category?); the evaluation rows were answered alone"
        )
        return alone
    answers = [mixed.predictions[p] for p in position]
    mixed.predictions, mixed.extra_predictions = answers[:primary], answers[primary:]
    if mixed.scores is not None:
        mixed.scores = [mixed.scores[p] for p in position[:primary]]
    return mixed


@dataclass(frozen=True)
class _Call:
    """What every sandbox call of one `predict_in_sandbox` shares."""

    isolation: IsolationConfig
    run_id: str | None
    columns: SentColumns


def _select_inputs(model_dir: Path, rows: pd.DataFrame) -> ModelInputs:
    """The model's input columns of `rows`; rows that do not fit its signature are an
    `input` error before anything is loaded, worded from what the gatekeeper knows."""
    try:
        return select_model_inputs(read_mlmodel(Path(model_dir)), rows)
    except InputMismatch as exc:
        raise SandboxError(
            "input",
            f"the evaluation data do not fit the model's signature: {exc}; "
            "the model was not loaded",
            stage="start",
            reasons=exc.reasons,
        ) from exc


def _predict_once(
    model_dir: Path,
    rows: pd.DataFrame,
    limits: SandboxLimits,
    workdir: Path,
    call: _Call,
    giskard: GiskardRequest | None,
) -> Predictions:
    """One sandbox call: every row of `rows` answered, then the scan when asked."""
    isolation, run_id = call.isolation, call.run_id
    workdir.mkdir(parents=True, exist_ok=True)
    sandbox_dir = Path(tempfile.mkdtemp(prefix="sandbox-", dir=workdir))
    evidence: dict[str, Any] = {"sandbox": isolation.mode, "wall_limits": asdict(limits)}
    if isolation.mode == "unconfined":
        log.warning(
            "run=%s sandbox is UNCONFINED (GATEKEEPER_SANDBOX=unconfined): model code can "
            "read what the worker can read",
            run_id,
        )
    try:
        rows_path = sandbox_dir / "rows.parquet"
        columns = _write_rows(rows, rows_path)
        spawned_at = time.monotonic()
        try:
            launched, paths = _launch(
                isolation, limits, sandbox_dir, Path(model_dir).resolve(), rows_path
            )
        except IsolationError as exc:
            log.error("run=%s sandbox isolation could not be set up: %s", run_id, exc)
            raise SandboxError(
                "isolation",
                f"the sandbox could not be set up, so the model was not loaded: {exc}",
                stage="start",
                evidence=evidence,
            ) from exc
        evidence.update(launched.evidence)
        narrow = call.columns.source is None  # no signature: the child narrows, if it can
        request = json.dumps({**paths, "columns": columns, "narrow_to_fitted": narrow}).encode()
        follow_up = None
        if giskard is not None:  # the labels: sent only once the answers are in our hands
            scan = {"giskard": giskard.as_request()}
            follow_up = json.dumps(scan, default=_plain_json).encode()
        try:
            outcome = _converse(launched, request, spawned_at, limits.wall_seconds, follow_up)
        finally:
            launched.close()
        try:
            result = _interpret(outcome, limits, len(rows), evidence, call.columns)
        except SandboxError as exc:
            log.warning(
                "run=%s %s (stage %s); model diagnostics (truncated): %r",
                run_id,
                exc.message,
                exc.stage,
                exc.diagnostics,
            )
            raise
        log.info(
            "run=%s sandbox (%s) predicted %d rows in %.2f s",
            run_id,
            isolation.mode,
            len(rows),
            outcome.ended_at - outcome.started_at,
        )
        return result
    finally:
        shutil.rmtree(sandbox_dir, ignore_errors=True)
