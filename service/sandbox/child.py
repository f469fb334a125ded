"""The sandbox's child side: the only code in the product that loads a model.

Run as `python -I child.py` by `service.sandbox.runner` inside bubblewrap, never imported by
the service, and importing nothing of it (the source tree is not in the sandbox). The parent
has already scrubbed the environment, set the limits and put this process in namespaces of its
own; what this module adds:

- The protocol stream is private. File descriptor 1 is duplicated for the protocol and then
  pointed at stderr (for Python and for native code alike), so a model that prints, or a C
  library that writes to stdout, cannot corrupt the answer.
- An audit hook (PEP 578) refuses socket connects, datagram sends and name lookups in this
  interpreter and records each attempt. It is a second layer under the network namespace: it
  holds when `unshare` is not available, and it catches a model that swallows the error.
  Native code (ctypes, a subprocess) bypasses it; only the namespace stops those.
- Progress is reported stage by stage (`rows`, `import`, `load`, `predict`), so a process that
  dies without a word can still be blamed on the right stage by the parent.

Protocol: the parent writes one JSON line on stdin, `{"model_dir", "rows_path", "columns",
"narrow_to_fitted"}`. The rows hold the model's input columns (its signature's) or, for a model
without a signature (`narrow_to_fitted`), every column the parent has beside the target: the
child then keeps the columns the fitted model names (`feature_names_in_`), which only this
process can read. The child writes JSON lines on the protocol stream: `{"event": "stage", ...}`
as it goes, one `{"event": "answers", ...}` with the predictions of every row (and the columns
it kept, and why predict_proba gave no scores), and exactly one final `{"event": "result", ...}`
or `{"event": "error", ...}` (with the exception's type and message, the names the model was
fitted on and the keys of KeyErrors it raised: the parent shows a viewer only a type from its
list and names that are columns of its own data). Between the two, it reads a second
line on stdin: empty (stdin closed) or `{"giskard": {...}}` with the labels of a scan, which
the parent sends only once it holds the answers. Only plain data
(lists of numbers and strings) leaves this process; the model object never does. The parent
trusts none of it beyond predictions, stage names and timings, which it validates: whatever
the model does to this interpreter (this module is in its reach) cannot forge the evidence.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
import traceback
from typing import IO, Any

# Audit events that mean "this code is trying to talk to another machine or process".
_NETWORK_EVENTS = frozenset(
    {
        "socket.connect",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
    }
)
_NETWORK_ERRNOS = frozenset(
    {
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EHOSTUNREACH,
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.EADDRNOTAVAIL,
        errno.ETIMEDOUT,
    }
)
_MAX_ATTEMPTS_KEPT = 20

# What a failure in each stage is called when the child reports it.
_KIND_BY_STAGE = {
    "start": "protocol",
    "rows": "protocol",
    "import": "load",
    "load": "load",
    "predict": "predict",
    "giskard": "predict",
}
_MAX_ISSUES = 200
_MAX_NAMES = 10_000  # fitted column names reported to the parent
_MAX_NAME_CHARS = 200

network_attempts: list[str] = []
current_stage = "start"
fitted_columns: list[str] | None = None  # what the loaded model says it was fitted on


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in _NETWORK_EVENTS:
        return
    if len(network_attempts) < _MAX_ATTEMPTS_KEPT:
        network_attempts.append(_describe(event, args))
    raise OSError(
        errno.ENETUNREACH, f"network access is blocked in the gatekeeper sandbox ({event})"
    )


def _describe(event: str, args: tuple[Any, ...]) -> str:
    """`socket.connect to ('127.0.0.1', 5432)`: what an operator needs to see."""
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        target = args[-1] if len(args) > 1 else None  # (socket, ..., address)
    elif event == "socket.getaddrinfo":
        target = args[:2]  # (host, port, family, type, proto)
    else:
        target = args[0] if args else None
    return f"{event} to {target!r}"[:200]


def _claim_protocol_stream() -> IO[str]:
    """Keep fd 1 for the protocol; everything else that writes to stdout goes to stderr."""
    protocol_fd = os.dup(1)  # non-inheritable: subprocesses of the model do not get it
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", encoding="utf-8")


def _emit(stream: IO[str], event: dict[str, Any]) -> None:
    stream.write(json.dumps(event, default=_plain, allow_nan=True) + "\n")
    stream.flush()


def _plain(value: Any) -> Any:
    """json.dumps fallback: numpy scalars become Python numbers, anything else its str()."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    return str(value)


def _is_network_error(exc: BaseException) -> bool:
    if isinstance(exc, socket.gaierror | socket.herror | ConnectionError | TimeoutError):
        return True
    return isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS


def _as_rows_list(output: Any) -> list[Any]:
    """Predictions as one plain value (or one list of values) per row."""
    import pandas as pd

    if isinstance(output, pd.DataFrame):
        if output.shape[1] == 1:
            return list(output.iloc[:, 0].tolist())
        return list(output.to_numpy().tolist())
    if isinstance(output, pd.Series):
        return list(output.tolist())
    tolist = getattr(output, "tolist", None)
    if callable(tolist):
        return list(tolist())
    return list(output)


def _underlying_model(loaded: Any) -> Any:
    """The flavor's own model object (sklearn estimator, PythonModel instance), or None."""
    try:
        return loaded.get_raw_model()
    except Exception:
        pass
    try:
        return loaded.unwrap_python_model()
    except Exception:
        return None


def _scores(raw: Any, rows: Any) -> tuple[list[list[float]] | None, dict[str, Any] | None]:
    """predict_proba's scores, or None and what went wrong (for the parent to classify)."""
    predict_proba = getattr(raw, "predict_proba", None)
    if not callable(predict_proba):
        return None, None
    try:
        return _as_rows_list(predict_proba(rows)), None
    except (MemoryError, OSError):
        raise  # out of memory or a network attempt: the parent fails the run, not just scores
    except Exception as exc:  # scores are optional: keep the predictions, say why
        traceback.print_exc(file=sys.stderr)
        return None, _exception_report(exc)


def _fitted_names(raw: Any) -> list[str] | None:
    """The column names the fitted model reports (scikit-learn's `feature_names_in_`)."""
    try:
        names = getattr(raw, "feature_names_in_", None)
        if names is None:
            return None
        listed = [str(n)[:_MAX_NAME_CHARS] for n in list(names)[: _MAX_NAMES + 1]]
    except Exception:
        return None
    return listed if 0 < len(listed) <= _MAX_NAMES else None


def _missing_keys(exc: BaseException) -> list[str]:
    """The text keys of KeyErrors in the exception's chain: a column the model looked for."""
    keys: list[str] = []
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, KeyError) and seen.args and isinstance(seen.args[0], str):
            keys.append(seen.args[0][:_MAX_NAME_CHARS])
        seen = seen.__cause__ or seen.__context__
    return keys


def _exception_report(exc: BaseException) -> dict[str, Any]:
    """What the parent may classify (type, names) and show admins (message)."""
    return {
        "type": type(exc).__name__,
        "message": str(exc)[:2000],
        "fitted_columns": fitted_columns,
        "missing_keys": _missing_keys(exc),
    }


def _classes(raw: Any) -> list[Any] | None:
    classes = getattr(raw, "classes_", None)
    if classes is None:
        return None
    try:
        return _as_rows_list(classes)
    except Exception:
        return None


def _enter(stream: IO[str], stage: str) -> None:
    """Announce a stage; the parent times stages from these (CLOCK_MONOTONIC is system-wide)."""
    global current_stage
    current_stage = stage
    _emit(stream, {"event": "stage", "stage": stage, "t": time.monotonic()})


def _answer(request: dict[str, Any], stream: IO[str]) -> tuple[Any, Any, Any, list[Any]]:
    """Load the model and answer every row in one call; returns what a scan needs after."""
    global fitted_columns
    _enter(stream, "rows")
    import pandas as pd

    rows = pd.read_parquet(request["rows_path"])
    rows.columns = request["columns"]

    _enter(stream, "import")
    import mlflow.pyfunc

    _enter(stream, "load")
    loaded = mlflow.pyfunc.load_model(request["model_dir"])

    _enter(stream, "predict")
    raw = _underlying_model(loaded)
    fitted_columns = _fitted_names(raw)
    kept = None
    if request.get("narrow_to_fitted") and fitted_columns:
        if set(fitted_columns) <= set(rows.columns):
            rows = rows[fitted_columns]  # no signature: the columns it was fitted on, in order
            kept = fitted_columns
    # One call for every row. The parent mixed the robustness probes in among the evaluation
    # rows in an order only it knows, so this process cannot tell which answers are scored
    # as evaluation and which as probes by call or by position.
    predictions = _as_rows_list(loaded.predict(rows))
    scores, scores_error = _scores(raw, rows)
    classes = _classes(raw) if scores is not None else None
    answers: dict[str, Any] = {
        "event": "answers",
        "predictions": predictions,
        "scores": scores,
        "classes": classes,
        "model_columns": kept,
        "scores_error": scores_error,
    }
    _emit(stream, answers)
    return loaded, raw, rows, predictions


def _run(request: dict[str, Any], stream: IO[str]) -> dict[str, Any]:
    loaded, raw, rows, predictions = _answer(request, stream)
    # The labels for Giskard's scan come only now, after the parent has the answers above: no
    # label is ever in this process while an answer it will be scored on can still change.
    follow_up = sys.stdin.readline()
    if not follow_up.strip():
        return {}
    spec = json.loads(follow_up)["giskard"]
    _enter(stream, "giskard")
    subset = rows.iloc[spec["row_indices"]].reset_index(drop=True)
    answered = [predictions[i] for i in spec["row_indices"]]
    scan = _bounded(spec["budget_s"], lambda: _giskard_scan(spec, loaded, raw, subset, answered))
    return {"giskard": scan}


class _OutOfTime(Exception):
    pass


def _bounded(budget_s: float, work: Any) -> dict[str, Any]:
    """`work()` under a SIGALRM budget; past it, or when it raises, an error record. The
    parent's wall limit still bounds the whole process if native code ignores the alarm."""
    import signal

    def out_of_time(_signum: int, _frame: Any) -> None:
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, out_of_time)
    signal.setitimer(signal.ITIMER_REAL, max(float(budget_s), 0.001))
    try:
        answer: dict[str, Any] = work()
        return answer
    except _OutOfTime:
        return {"error": "timeout", "budget_s": budget_s}
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return {"error": "exception", **_exception_report(exc)}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _giskard_scan(
    spec: dict[str, Any], loaded: Any, raw: Any, rows: Any, predictions: list[Any]
) -> dict[str, Any]:
    """giskard.scan on these rows and their target values; it calls the model, so it runs
    here. Its analytics are switched off before it is imported (the network namespace and the
    audit hook would refuse them anyway, and an attempt would fail this run)."""
    os.environ["GSK_DISABLE_ANALYTICS"] = "true"
    import giskard
    import numpy as np

    # the rows hold exactly the model's input columns (narrowed above when it had to be), so
    # the scan's dataset and the wrapper below give the model nothing else
    features = [str(c) for c in rows.columns]
    cat_columns = [c for c in spec["cat_columns"] if c in features]
    target = "__gatekeeper_target__"
    data = rows.copy()
    data.columns = features
    data[target] = spec["target_values"]
    if spec["task"] == "classification":
        labels = list(getattr(raw, "classes_", [])) or sorted(
            {*spec["target_values"], *predictions}, key=str
        )

        def probabilities(frame: Any) -> Any:
            frame = frame[features]  # giskard's own columns (the target, ...) never reach it
            if raw is not None and hasattr(raw, "predict_proba"):
                proba = np.asarray(raw.predict_proba(frame), dtype=float)
                order = [list(raw.classes_).index(label) for label in labels]
                return proba[:, order]
            out = _as_rows_list(loaded.predict(frame))
            return np.array([[1.0 if o == label else 0.0 for label in labels] for o in out])

        model = giskard.Model(
            model=probabilities, model_type="classification",
            classification_labels=labels, feature_names=features,
        )  # fmt: skip
    else:
        model = giskard.Model(
            model=lambda frame: np.asarray(_as_rows_list(loaded.predict(frame[features])), float),
            model_type="regression", feature_names=features,
        )  # fmt: skip
    dataset = giskard.Dataset(df=data, target=target, cat_columns=cat_columns)
    started = time.monotonic()
    # raise_exceptions: a detector that crashes fails the scan (with its type, classified by
    # the parent), where giskard's default would log it and report "no issues"
    report = giskard.scan(
        model, dataset, only=spec["detectors"] or None, raise_exceptions=True, verbose=False
    )
    seconds = time.monotonic() - started
    try:
        html = report.to_html()
    except Exception:  # the report page is a convenience; the issues above are the verdict
        html = None
    return {
        "issues": [_issue(i) for i in report.issues[:_MAX_ISSUES]],
        "seconds": seconds,
        "html": html,
    }


def _issue(issue: Any) -> dict[str, Any]:
    meta = getattr(issue, "meta", {}) or {}
    level = getattr(issue, "level", "")
    return {
        "level": str(getattr(level, "value", level)),
        "detector": str(getattr(issue, "detector_name", "") or type(issue).__name__),
        "group": str(getattr(getattr(issue, "group", None), "name", "")),
        "features": [str(f) for f in (getattr(issue, "features", None) or [])],
        "metric": str(meta.get("metric", "")),
        "deviation": str(meta.get("deviation", "")),
        "description": str(getattr(issue, "description", ""))[:1000],
    }


def main() -> int:
    stream = _claim_protocol_stream()
    sys.addaudithook(_audit)
    _enter(stream, "start")
    try:
        request = json.loads(sys.stdin.readline())
        result = _run(request, stream)
        if network_attempts:
            raise ConnectionRefusedError("the model caught the refusal and carried on")
    except BaseException as exc:  # everything, SystemExit included, is reported to the parent
        if isinstance(exc, MemoryError):
            kind = "memory"
        elif network_attempts or _is_network_error(exc):
            kind = "network"
        else:
            kind = _KIND_BY_STAGE.get(current_stage, "crash")
        try:  # the parent quotes the end of stderr in its message: make it the traceback
            traceback.print_exc(file=sys.stderr)
        except BaseException:
            pass
        _emit(
            stream,
            {
                "event": "error",
                "t": time.monotonic(),
                "kind": kind,
                "stage": current_stage,
                **_exception_report(exc),
                "network_attempts": network_attempts,
            },
        )
        return 1
    _emit(stream, {"event": "result", "t": time.monotonic(), **result})
    return 0


if __name__ == "__main__":
    exit_code = main()
    sys.stderr.flush()
    # Skip interpreter teardown: it costs a quarter second with mlflow imported, and it would
    # run atexit hooks and finalizers the model registered, after the answer was sent.
    os._exit(exit_code)
