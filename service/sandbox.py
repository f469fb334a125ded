"""Run a candidate model in a locked-down child process and bring back only its predictions.

Loading an MLflow model runs code the model's author chose (cloudpickle, a python_model, a
flavor's loader). Even after the security gate passed, the gatekeeper treats that code as
hostile, so it runs in `python -m service.sandbox_child` under these restrictions, each for a
reason:

- Scrubbed environment. The child starts from an empty environment plus an allowlist
  (`SANDBOX_ENV_KEYS`): no MLflow token or tracking URI, no `GATEKEEPER_*` (the database URL,
  the signing key path), no cloud keys. A model that reads its environment finds nothing to
  steal. Telemetry opt-outs are set so that nothing phones home either.
- Its own directory. HOME, TMPDIR and the working directory are a fresh temp dir under the
  caller's `workdir`, removed afterwards; nothing the model writes survives the call.
- No network where the OS allows it. The child runs under `unshare --net`: a new network
  namespace with only a loopback that is down, so every connect fails, to the internet, to
  the MLflow server and to the database alike. Whether that worked is in the evidence (the
  caller records it on the run). Inside the child an audit hook also refuses connects and name
  lookups and reports any attempt, so a model that tries is an error even when it hides it.
- Resource limits (applied with prlimit before the child is sent any work, so no model code
  runs unlimited): address space (a model cannot take the worker's memory), CPU seconds, no
  core files (they would hold the rows), few open files, a cap on file size (the disk).
- Wall timeout. The child leads its own process group (`start_new_session`); when the wall
  time is up the whole group is killed, so a model that sleeps, blocks or forks cannot hold
  the worker.
- A narrow pipe. Rows go in as a parquet file, a JSON request comes in on stdin, JSON lines
  come back on stdout (bounded); stderr is kept only as its last 64 KiB, for the message.

Any failure is a `SandboxError` whose `kind` says what happened (timeout, memory, crash,
network, load, predict, protocol) and whose message ends with the child's last stderr lines:
the calling gate records an `error`, and the run fails closed.

What this does not stop (documented, not pretended): native code reading files the worker's
user can read, or a process that escapes the group with setsid and keeps running after the
call. A container or a dedicated unprivileged user is the next layer for those.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd

import service
from service.errors import GatekeeperError

log = logging.getLogger("gatekeeper.sandbox")

SANDBOX_KINDS = frozenset({"timeout", "memory", "crash", "network", "load", "predict", "protocol"})
STDERR_TAIL_BYTES = 64 * 1024
STDOUT_MAX_BYTES = 256 * 1024**2
_STDERR_LINES_IN_MESSAGE = 15
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
    "PYTHONHASHSEED": "0",  # same rows, same predictions, also for models that hash
    "PYTHONDONTWRITEBYTECODE": "1",  # never write .pyc next to the model's code
    "PYTHONNOUSERSITE": "1",  # no ~/.local site-packages: HOME is empty anyway
    # One thread per library: the CPU limit is per process and predictable this way.
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
SANDBOX_ENV_KEYS = frozenset({"PATH", "HOME", "TMPDIR", "PYTHONPATH", *_FIXED_ENV})


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int = 4 * 1024**3  # RLIMIT_AS
    cpu_seconds: int = 300  # RLIMIT_CPU (soft; SIGKILL 5 s later)
    wall_seconds: float = 600.0  # parent kills the process group after this
    open_files: int = 256  # RLIMIT_NOFILE
    file_bytes: int = 1024**3  # RLIMIT_FSIZE


@dataclass
class Predictions:
    predictions: list[Any]
    scores: list[list[float]] | None
    classes: list[Any] | None
    evidence: dict[str, Any] = field(default_factory=dict)


class SandboxError(GatekeeperError):
    """The model could not be evaluated in the sandbox; the gate is an error, the run fails."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        stage: str | None = None,
        stderr_tail: str = "",
        evidence: dict[str, Any] | None = None,
    ) -> None:
        if kind not in SANDBOX_KINDS:
            raise ValueError(f"unknown sandbox error kind {kind!r}")
        self.kind = kind
        self.stage = stage
        self.stderr_tail = stderr_tail
        self.evidence = evidence or {}
        lines = stderr_tail.strip().splitlines()[-_STDERR_LINES_IN_MESSAGE:]
        self.message = message + (
            "\nlast lines of the model's stderr:\n" + "\n".join(lines) if lines else ""
        )
        super().__init__(self.message)


@dataclass(frozen=True)
class NetworkIsolation:
    prefix: tuple[str, ...]
    isolated: bool
    how: str


@functools.cache
def network_isolation() -> NetworkIsolation:
    """Find out once whether this host lets us give the child a network namespace."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return NetworkIsolation((), False, "unshare not found on PATH; the child has network")
    reasons = []
    # Root (or CAP_SYS_ADMIN) can make a network namespace directly; an unprivileged user
    # needs a user namespace first, where the kernel allows that.
    for extra in ((), ("--user", "--map-root-user")):
        cmd = (unshare, *extra, "--net")
        try:
            probe = subprocess.run(
                [*cmd, "true"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            reasons.append(f"{' '.join(cmd)}: {exc}")
            continue
        if probe.returncode == 0:
            return NetworkIsolation(
                cmd, True, f"{' '.join(cmd)}: own network namespace, loopback down"
            )
        reasons.append(f"{' '.join(cmd)}: {probe.stderr.strip() or probe.returncode}")
    return NetworkIsolation((), False, "no network namespace: " + "; ".join(reasons))


def scrubbed_env(sandbox_dir: Path) -> dict[str, str]:
    """The child's whole environment: an allowlist, never a copy of ours minus secrets."""
    env = dict(_FIXED_ENV)
    env["PATH"] = os.environ.get("PATH") or os.defpath
    env["HOME"] = str(sandbox_dir / "home")
    env["TMPDIR"] = str(sandbox_dir / "tmp")
    # `service` must be importable from the child's cwd (the sandbox dir), installed or not.
    env["PYTHONPATH"] = str(Path(service.__file__).resolve().parent.parent)
    if extra := set(env) - SANDBOX_ENV_KEYS:  # an invariant, checked even under python -O
        raise RuntimeError(f"sandbox environment outside the allowlist: {sorted(extra)}")
    return env


def _apply_limits(pid: int, limits: SandboxLimits) -> dict[str, Any]:
    cpu = limits.cpu_seconds
    applied = {
        "RLIMIT_AS": (limits.memory_bytes, limits.memory_bytes),
        "RLIMIT_CPU": (cpu, cpu + 5),  # soft: SIGXCPU; hard: SIGKILL if that is ignored
        "RLIMIT_CORE": (0, 0),
        "RLIMIT_NOFILE": (limits.open_files, limits.open_files),
        "RLIMIT_FSIZE": (limits.file_bytes, limits.file_bytes),
    }
    for name, value in applied.items():
        resource.prlimit(pid, getattr(resource, name), value)
    return {name: soft for name, (soft, _hard) in applied.items()}


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
            while chunk := self._stream.read1(65536):
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


def _wait_exited(pid: int, deadline: float) -> bool:
    """Wait for the child to exit without reaping it (its pid keeps naming the group)."""
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
            return True
        time.sleep(_POLL_S)
    return False


def _converse(
    proc: subprocess.Popen[bytes], request: bytes, started_at: float, wall_s: float
) -> _Outcome:
    """Send the request, wait until the wall time is up, kill the group, collect the output."""
    assert proc.stdin and proc.stdout and proc.stderr
    out = _Reader(proc.stdout, STDOUT_MAX_BYTES, keep_tail=False)
    err = _Reader(proc.stderr, STDERR_TAIL_BYTES, keep_tail=True)
    out.start()
    err.start()
    try:
        proc.stdin.write(request)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the child died before reading; its exit status says why
    exited = _wait_exited(proc.pid, started_at + wall_s)
    # The leader is a zombie or still running, so its pid cannot have been reused: kill
    # the whole group, including anything the model started in the background.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    returncode = proc.wait()
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


def _interpret(
    outcome: _Outcome, limits: SandboxLimits, n_rows: int, evidence: dict[str, Any]
) -> Predictions:
    events, malformed = _parse_events(outcome.stdout)
    stages = [e for e in events if e.get("event") == "stage"]
    stage = str(stages[-1].get("stage")) if stages else "start"
    final = events[-1] if events and events[-1].get("event") in ("result", "error") else None
    if final is not None and isinstance(final.get("evidence"), dict):
        evidence.update(final["evidence"])
    _add_stage_timings(evidence, stages, final, outcome)

    def fail(kind: str, message: str) -> SandboxError:
        return SandboxError(
            kind, message, stage=stage, stderr_tail=outcome.stderr, evidence=evidence
        )

    if outcome.timed_out:
        raise fail(
            "timeout",
            f"model did not finish within {limits.wall_seconds:g} s (in {stage}); killed",
        )
    if outcome.returncode < 0:
        raise fail(*_signal_error(outcome.returncode, stage, limits))
    if final is not None and final.get("event") == "error":
        kind = final.get("kind") if final.get("kind") in SANDBOX_KINDS else "crash"
        raise fail(kind, _child_error_message(kind, final, limits))
    if outcome.returncode != 0:
        raise fail("crash", f"model process exited with status {outcome.returncode} in {stage}")
    if outcome.stdout_overflowed or not outcome.stdout_complete:
        raise fail("protocol", "the sandbox's answer was cut off or its output left open")
    if malformed or final is None:
        raise fail("protocol", "the sandbox's answer was not the JSON it should be")
    return _predictions(final, n_rows, evidence, fail)


def _child_error_message(kind: str, final: dict[str, Any], limits: SandboxLimits) -> str:
    detail = str(final.get("type"))
    if final.get("message"):
        detail += f": {final.get('message')}"
    if kind == "network":
        attempts = ", ".join(map(str, final.get("network_attempts") or [])) or "no detail"
        return f"model tried to reach the network ({attempts}); {detail}"
    if kind == "memory":
        limit = f"address-space limit {limits.memory_bytes / 1024**3:g} GiB"
        return f"model ran out of memory in {final.get('stage')} ({limit}); {detail}"
    return f"model failed in {final.get('stage')}: {detail}"


def _predictions(
    final: dict[str, Any], n_rows: int, evidence: dict[str, Any], fail: Any
) -> Predictions:
    predictions = final.get("predictions")
    scores, classes = final.get("scores"), final.get("classes")
    if not isinstance(predictions, list) or len(predictions) != n_rows:
        count = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
        raise fail("predict", f"model returned {count} predictions for {n_rows} rows")
    if scores is not None and (not isinstance(scores, list) or len(scores) != n_rows):
        scores, evidence["scores_error"] = None, "predict_proba did not give one row per input"
    if classes is not None and not isinstance(classes, list):
        classes = None
    return Predictions(predictions=predictions, scores=scores, classes=classes, evidence=evidence)


def _add_stage_timings(
    evidence: dict[str, Any],
    stages: list[dict[str, Any]],
    final: dict[str, Any] | None,
    outcome: _Outcome,
) -> None:
    """Seconds per stage from the child's announcements, also when it never finished."""
    spawned, ended = outcome.started_at, outcome.ended_at
    marks = [(str(e.get("stage")), e.get("t")) for e in stages]
    marks = [(name, t) for name, t in marks if isinstance(t, int | float)]
    timings: dict[str, float] = {"total": round(ended - spawned, 4)}
    if marks:
        # "start": process creation, interpreter start-up and reading the request.
        marks[0] = ("start", spawned)
        end_of_last = final.get("t") if final is not None else None
        ends = [t for _name, t in marks[1:]]
        ends.append(end_of_last if isinstance(end_of_last, int | float) else ended)
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


def predict_in_sandbox(
    model_dir: Path,
    rows: pd.DataFrame,
    *,
    limits: SandboxLimits,
    workdir: Path,
    run_id: str | None = None,
) -> Predictions:
    """Load the model in a locked-down child process and return its predictions for `rows`.

    Raises SandboxError (kind timeout, memory, crash, network, load, predict or protocol).
    """
    isolation = network_isolation()
    workdir.mkdir(parents=True, exist_ok=True)
    sandbox_dir = Path(tempfile.mkdtemp(prefix="sandbox-", dir=workdir))
    evidence: dict[str, Any] = {
        "network_isolated": isolation.isolated,
        "network_isolation": isolation.how,
        "network_guard": "audit hook refuses socket connect/send and DNS in the interpreter",
        "limits": asdict(limits),
    }
    if not isolation.isolated:
        log.warning("run=%s sandbox has network access: %s", run_id, isolation.how)
    try:
        (sandbox_dir / "home").mkdir()
        (sandbox_dir / "tmp").mkdir()
        rows_path = sandbox_dir / "rows.parquet"
        columns = _write_rows(rows, rows_path)
        request = json.dumps(
            {
                "model_dir": str(Path(model_dir).resolve()),
                "rows_path": str(rows_path),
                "columns": columns,
            }
        ).encode()
        env = scrubbed_env(sandbox_dir)
        evidence["env_keys"] = sorted(env)
        cmd = [*isolation.prefix, sys.executable, "-m", "service.sandbox_child"]
        spawned_at = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=sandbox_dir,
            start_new_session=True,
            close_fds=True,
        )
        try:
            evidence["limits_applied"] = _apply_limits(proc.pid, limits)
        except OSError as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise SandboxError("crash", f"could not limit the sandbox process: {exc}") from exc
        outcome = _converse(proc, request, spawned_at, limits.wall_seconds)
        try:
            result = _interpret(outcome, limits, len(rows), evidence)
        except SandboxError as exc:
            log.warning("run=%s sandbox %s error: %s", run_id, exc.kind, exc.message)
            raise
        log.info(
            "run=%s sandbox predicted %d rows in %.2f s (isolated=%s)",
            run_id,
            len(rows),
            outcome.ended_at - outcome.started_at,
            isolation.isolated,
        )
        return result
    finally:
        shutil.rmtree(sandbox_dir, ignore_errors=True)
