"""Throughput of `gatekeeper scan` on a 1 GiB PyTorch archive, against sha256sum and modelscan.

Why: the gate sits between registration and deployment; if scanning a large checkpoint takes
much longer than hashing it, people will skip it. Issue 3 sets the target at half the speed of
`sha256sum` on the same file (~263 MB/s for sha256 on this kind of machine). A tensor-dominated
archive is the common case: the scanner should parse the pickle and skip raw storages, not
read every byte through Python.

The archive is `torch.save` of a state_dict of 16 float32 tensors of 64 MiB each, written to
a temporary directory. The file is read once to put it in the page cache, then each command
runs three times and the best wall time is kept, all in this one run:

    .venv/bin/python -m bench.scan_throughput [--tensors 16] [--mib 64] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
REPEATS = 3
TIMEOUT_S = 600


def write_archive(path: Path, tensors: int, mib: int) -> int:
    """`torch.save` a state_dict of `tensors` float32 tensors of `mib` MiB; return its size."""
    import torch

    gen = torch.Generator().manual_seed(0)
    per = mib * (1 << 20) // 4
    state = {f"layers.{i}.weight": torch.rand(per, generator=gen) for i in range(tensors)}
    torch.save(state, path)
    return path.stat().st_size


def warm_page_cache(path: Path) -> None:
    """Read the file once so every timed run starts from the same (cached) state."""
    with path.open("rb") as f:
        while f.read(1 << 24):
            pass


def best_of(argv: list[str], cwd: Path) -> tuple[float | None, int | None, str]:
    """Best wall time over REPEATS runs, the last exit code and a short output excerpt."""
    best: float | None = None
    rc: int | None = None
    out = ""
    for _ in range(REPEATS):
        start = time.perf_counter()
        try:
            proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                                  errors="replace", timeout=TIMEOUT_S)  # fmt: skip
        except subprocess.TimeoutExpired:
            return None, None, "timeout"
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
        rc, out = proc.returncode, (proc.stdout or proc.stderr)[-300:]
    return best, rc, out


def gatekeeper_cli() -> str | None:
    """Path of the `gatekeeper` CLI when it has a `scan` command, else None (reported n/a)."""
    exe = VENV_BIN / "gatekeeper"
    if not exe.exists():
        return None
    probe = subprocess.run([str(exe), "scan", "--help"], capture_output=True, timeout=60)
    return str(exe) if probe.returncode == 0 else None


def _status(rc: int | None, out: str) -> str:
    try:
        return f"exit {rc}, status {json.loads(out).get('status')}"
    except (json.JSONDecodeError, AttributeError):
        return f"exit {rc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=16)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--keep", action="store_true", help="keep the archive")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="gk-throughput-"))
    archive = tmp / "model.pt"
    start = time.perf_counter()
    size = write_archive(archive, args.tensors, args.mib)
    print(f"# Scan throughput: {archive.name}, {size / 1e6:.0f} MB "
          f"({args.tensors} x {args.mib} MiB float32), written in "
          f"{time.perf_counter() - start:.0f} s; best of {REPEATS}, page cache warm\n")  # fmt: skip
    warm_page_cache(archive)

    gk = gatekeeper_cli()
    ms = VENV_BIN / "modelscan"
    commands: list[tuple[str, list[str] | None]] = [
        ("sha256sum", ["sha256sum", str(archive)]),
        ("gatekeeper scan", [gk, "scan", str(archive), "--format", "json"] if gk else None),
        ("modelscan", [str(ms), "-p", str(archive)] if ms.exists() else None),
    ]
    speeds: dict[str, float] = {}
    print("| command | best wall time (s) | MB/s | result |")
    print("|---|---|---|---|")
    for name, cmd in commands:
        if cmd is None:
            print(f"| {name} | n/a | n/a | CLI not available |")
            continue
        best, rc, out = best_of(cmd, tmp)
        if best is None:
            print(f"| {name} | > {TIMEOUT_S} | n/a | timeout |")
            continue
        speeds[name] = size / 1e6 / best
        result = _status(rc, out) if name == "gatekeeper scan" else f"exit {rc}"
        print(f"| {name} | {best:.2f} | {speeds[name]:.0f} | {result} |")
    print()
    if "gatekeeper scan" in speeds and "sha256sum" in speeds:
        ratio = speeds["gatekeeper scan"] / speeds["sha256sum"]
        print(f"gatekeeper/sha256sum speed ratio: {ratio:.2f} (target >= 0.5)")
    else:
        print("gatekeeper/sha256sum speed ratio: n/a")
    if "gatekeeper scan" in speeds and "modelscan" in speeds:
        print(f"gatekeeper/modelscan speed ratio: "
              f"{speeds['gatekeeper scan'] / speeds['modelscan']:.2f}")  # fmt: skip
    if args.keep:
        print(f"archive kept at {archive}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
