"""Detection and false positives of `gatekeeper scan`, modelscan and picklescan, one run.

Builds the malicious corpus (raw opcodes and formats, `tests/corpus/malicious.py`) and the
benign one (real libraries, `tests/corpus/benign.py`) into a temporary directory, or reuses
`--corpus DIR` (with `malicious/` and `benign/` each holding a `manifest.json`), then scans
every sample with each tool as a subprocess (60 s timeout each) and prints markdown tables:
totals per tool, and detections per technique class. Finally it checks that the marker
directory is still empty: if any scanner had executed a payload, a marker file would be there.

    .venv/bin/python -m bench.scan_corpus [--corpus DIR] [--jobs N] [--json results.json]

Counting (issue 3, "What it must show" 1 and 2):
- gatekeeper: exit 1 (findings) or 2 (could not scan: fail closed) is a detection; exit 2 is
  also shown on its own. On a benign sample either is a false positive.
- modelscan: exit 1 is a detection; 2 and 3 (error, nothing scanned) are errors.
- picklescan: exit 1 is a detection; 2 (scan error) is an error. Exit 2 hides detections
  (picklescan returns 2 when anything failed to parse, even with infected files), so those
  are counted in their own column, not as detections.
Scanners run in subprocesses, never in this process: a scanner that hangs or dies on a bomb
costs one timeout, not the benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.corpus import Sample, read_manifest

TIMEOUT_S = 60
VENV_BIN = Path(sys.executable).parent


@dataclass
class Outcome:
    """One tool on one sample: exit code (None on timeout), wall time, verdict flags."""

    rc: int | None
    seconds: float
    detected: bool = False
    error: bool = False
    fail_closed: bool = False
    hidden_detection: bool = False
    note: str = ""


@dataclass
class Tool:
    """A scanner CLI and how to read its exit code."""

    name: str
    argv: Callable[[Path], list[str]]
    judge: Callable[[int, str], Outcome]
    available: bool = True
    results: dict[str, Outcome] = field(default_factory=dict)


def _exe(name: str) -> str | None:
    local = VENV_BIN / name
    return str(local) if local.exists() else shutil.which(name)


def _judge_gatekeeper(rc: int, out: str) -> Outcome:
    o = Outcome(rc, 0.0, detected=rc in (1, 2), fail_closed=rc == 2, error=rc not in (0, 1, 2))
    try:
        o.note = str(json.loads(out).get("status", ""))
    except (json.JSONDecodeError, AttributeError):
        o.note = "non-json output"
    return o


def _judge_modelscan(rc: int, out: str) -> Outcome:
    return Outcome(rc, 0.0, detected=rc == 1, error=rc not in (0, 1))


def _judge_picklescan(rc: int, out: str) -> Outcome:
    infected = re.search(r"Infected files: (\d+)", out)
    hidden = rc == 2 and infected is not None and int(infected.group(1)) > 0
    return Outcome(rc, 0.0, detected=rc == 1, error=rc not in (0, 1), hidden_detection=hidden)


def gatekeeper_available() -> bool:
    """True when `gatekeeper scan` exists (the CLI is being written alongside this bench)."""
    exe = _exe("gatekeeper")
    if exe is None:
        return False
    try:
        probe = subprocess.run([exe, "scan", "--help"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def make_tools() -> list[Tool]:
    """The three scanners; ours is marked unavailable (reported n/a) if its CLI is missing."""
    gk, ms, ps = _exe("gatekeeper"), _exe("modelscan"), _exe("picklescan")
    return [
        Tool("gatekeeper", lambda p: [str(gk), "scan", str(p), "--format", "json"],
             _judge_gatekeeper, available=gatekeeper_available()),
        Tool("modelscan", lambda p: [str(ms), "-p", str(p)], _judge_modelscan,
             available=ms is not None),
        Tool("picklescan", lambda p: [str(ps), "--path", str(p)], _judge_picklescan,
             available=ps is not None),
    ]  # fmt: skip


def run_one(tool: Tool, path: Path, cwd: Path) -> Outcome:
    """Run one scanner on one sample; a timeout is an error, never a detection."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            tool.argv(path), cwd=cwd, capture_output=True, text=True, errors="replace",
            timeout=TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return Outcome(None, time.perf_counter() - start, error=True, note="timeout")
    outcome = tool.judge(proc.returncode, proc.stdout)
    outcome.seconds = time.perf_counter() - start
    return outcome


def build_corpus(root: Path) -> tuple[Path, Path, Path]:
    """Build both corpora under `root`; return (malicious dir, benign dir, marker dir)."""
    from tests.corpus.benign import build_benign_corpus
    from tests.corpus.malicious import build_malicious_corpus

    mal, ben, markers = root / "malicious", root / "benign", root / "markers"
    build_malicious_corpus(mal, markers)
    build_benign_corpus(ben)
    return mal, ben, markers


def _pct(n: int, d: int) -> str:
    return f"{n}/{d} ({100 * n / d:.1f}%)" if d else "0/0"


def summary_table(tools: list[Tool], mal: list[Sample], ben: list[Sample]) -> str:
    """Per tool: detections on malicious, false positives on benign, errors and timeouts."""
    rows = [
        "| tool | detected / malicious | of which could-not-scan (fail closed) | "
        "false positives / benign | errors (mal / benign) | timeouts | detected but exit 2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in tools:
        if not t.available:
            rows.append(f"| {t.name} | n/a | n/a | n/a | n/a | n/a | n/a |")
            continue
        m = [t.results[s.path] for s in mal]
        b = [t.results[s.path] for s in ben]
        rows.append(
            f"| {t.name} | {_pct(sum(o.detected for o in m), len(m))} "
            f"| {sum(o.fail_closed for o in m)} "
            f"| {_pct(sum(o.detected for o in b), len(b))} "
            f"| {sum(o.error for o in m)} / {sum(o.error for o in b)} "
            f"| {sum(o.note == 'timeout' for o in m + b)} "
            f"| {sum(o.hidden_detection for o in m)} |"
        )
    return "\n".join(rows)


def class_table(tools: list[Tool], samples: list[Sample], header: str) -> str:
    """Detections (or false positives) per technique class, one column per tool."""
    by_class: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_class[s.technique].append(s)
    names = [t.name for t in tools]
    rows = [f"| {header} | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for technique in sorted(by_class):
        group = by_class[technique]
        cells = []
        for t in tools:
            hits = sum(t.results[s.path].detected for s in group) if t.available else None
            cells.append("n/a" if hits is None else str(hits))
        rows.append(f"| {technique} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def ratio_line(tools: list[Tool], mal: list[Sample]) -> str:
    """gatekeeper detections divided by modelscan's (issue target: at least 3x)."""
    by = {t.name: t for t in tools}
    if not by["gatekeeper"].available or not by["modelscan"].available:
        return "ratio gatekeeper/modelscan: n/a"
    ours = sum(by["gatekeeper"].results[s.path].detected for s in mal)
    theirs = sum(by["modelscan"].results[s.path].detected for s in mal)
    ratio = f"{ours / theirs:.2f}x" if theirs else "inf"
    # The ceiling is every sample detected: modelscan's own detections cap the ratio.
    ceiling = f"{len(mal) / theirs:.2f}x" if theirs else "inf"
    return (
        f"ratio gatekeeper/modelscan: {ours}/{theirs} = {ratio} (issue target >= 3x and >= 97%;"
        f" ceiling on this corpus {len(mal)}/{theirs} = {ceiling})"
    )


def misses(tools: list[Tool], mal: list[Sample], ben: list[Sample]) -> str:
    """What our scanner missed or wrongly blocked, for whoever fixes the gate next."""
    gk = next(t for t in tools if t.name == "gatekeeper")
    if not gk.available:
        return ""
    lines = [f"- missed: {s.path} ({s.technique}): {s.description}"
             for s in mal if not gk.results[s.path].detected]  # fmt: skip
    lines += [f"- false positive: {s.path} (exit {gk.results[s.path].rc})"
              for s in ben if gk.results[s.path].detected]  # fmt: skip
    return "\n".join(lines)


def check_markers(marker_dir: Path) -> list[str]:
    """Files in the marker directory: any one means a payload ran."""
    return sorted(p.name for p in marker_dir.iterdir()) if marker_dir.exists() else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="reuse a corpus (malicious/, benign/)")
    parser.add_argument("--jobs", type=int, default=max(2, os.cpu_count() or 2))
    parser.add_argument("--json", type=Path, help="write per-sample results here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary corpus")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="gk-corpus-"))
    if args.corpus:
        mal_dir, ben_dir = args.corpus / "malicious", args.corpus / "benign"
        body = json.loads((mal_dir / "manifest.json").read_text())
        marker_dir = Path(body["marker_dir"])
    else:
        mal_dir, ben_dir, marker_dir = build_corpus(tmp)
    built = time.perf_counter() - started
    mal, ben = read_manifest(mal_dir), read_manifest(ben_dir)
    tools = make_tools()
    cwd = tmp / "cwd"  # empty: modelscan reads ./modelscan-settings.toml when present
    cwd.mkdir(exist_ok=True)

    jobs = [(t, base / s.path, s.path) for t in tools if t.available
            for base, group in ((mal_dir, mal), (ben_dir, ben)) for s in group]  # fmt: skip
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        outcomes = pool.map(lambda j: (j[0], j[2], run_one(j[0], j[1], cwd)), jobs)
        for tool, key, outcome in outcomes:
            tool.results[key] = outcome
    scanned = time.perf_counter() - started - built

    print(f"# Scanner corpus: {len(mal)} malicious, {len(ben)} benign samples\n")
    how = "reused" if args.corpus else "built"
    print(f"corpus {how} in {built:.0f} s, scanned in {scanned:.0f} s with {args.jobs} workers,")
    print(f"timeout {TIMEOUT_S} s per scan\n")
    print(summary_table(tools, mal, ben), "\n")
    print(ratio_line(tools, mal), "\n")
    print("## Detections per technique class (malicious)\n")
    print(class_table(tools, mal, "technique class"), "\n")
    print("## False positives per artifact kind (benign)\n")
    print(class_table(tools, ben, "artifact kind"), "\n")
    detail = misses(tools, mal, ben)
    if detail:
        print("## gatekeeper misses and false positives\n")
        print(detail, "\n")
    if args.json:
        args.json.write_text(json.dumps({
            t.name: {k: vars(o) for k, o in t.results.items()} for t in tools if t.available
        }, indent=1))  # fmt: skip
    fired = check_markers(marker_dir)
    if fired:
        print(f"MARKER CHECK FAILED: {len(fired)} payload(s) ran: {', '.join(fired)}")
        return 3
    print(f"marker check: OK, {marker_dir} is empty (no payload ran during build or scans)")
    if args.keep:
        print(f"corpus kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
