"""Stopping a child that runs in its own process group (start_new_session=True), with every
process it started: the embedded MLflow server and its workers, the sandbox, test servers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def kill_process_group(pid: int) -> None:
    """SIGKILL the group led by `pid`; already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def stop_process_group(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the group, wait up to `grace_s` for the leader, then SIGKILL the group."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        kill_process_group(process.pid)
        process.wait(timeout=10)
