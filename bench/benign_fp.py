"""False positives on the models people register: gatekeeper vs modelscan vs picklescan.

The benign set of `tests/corpus/estimators.py` (every scikit-learn estimator fitted with
defaults, the pipelines teams ship, xgboost / lightgbm wrappers, pandas and scipy objects, a
torch state dict; pickle, joblib and compressed joblib), written once, then scanned by the
three tools in the same run. Per file a tool either passes it, flags it (a false positive:
every file here is benign), or cannot scan it (a CI gate that fails closed blocks it too).

    .venv/bin/python -m bench.benign_fp
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from gates.base import Status
from gates.security import scan_path
from gates.security.config import SecurityConfig
from tests.corpus.estimators import write_artifacts


def _gatekeeper(paths: list[Path]) -> dict[str, str]:
    verdicts = {}
    for path in paths:
        result = scan_path(path, SecurityConfig(modelscan=False))
        verdicts[path.name] = "pass" if result.status == Status.PASS else "flagged"
    return verdicts


def _modelscan(root: Path, names: list[str], work: Path) -> dict[str, str]:
    report = work / "modelscan.json"
    exe = Path(sys.executable).parent / "modelscan"
    subprocess.run([str(exe), "-p", str(root), "-r", "json", "-o", str(report)],
                   cwd=work, capture_output=True, timeout=1800, check=False)  # fmt: skip
    data = json.loads(report.read_text())
    verdicts = dict.fromkeys(names, "pass")
    for error in data.get("errors", []):
        verdicts[Path(str(error.get("source", ""))).name] = "could not scan"
    for issue in data.get("issues", []):
        verdicts[Path(str(issue.get("source", ""))).name] = "flagged"
    return verdicts


def _picklescan(root: Path, names: list[str]) -> dict[str, str]:
    exe = Path(sys.executable).parent / "picklescan"
    proc = subprocess.run([str(exe), "-p", str(root)], capture_output=True, text=True,
                          timeout=1800, check=False)  # fmt: skip
    verdicts = dict.fromkeys(names, "pass")
    known = set(names)
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.startswith(("ERROR: parsing pickle in ", "WARNING: could not parse ")):
            if line.startswith("ERROR"):
                path = line.removeprefix("ERROR: parsing pickle in ").split(":")[0]
            else:
                path = line.removeprefix("WARNING: could not parse ").split(" as pickle")[0]
            name = Path(path).name
            if name in known:
                verdicts[name] = "could not scan"
            else:
                print(f"picklescan line not matched to a file: {line}")
        elif "dangerous import" in line:
            verdicts[Path(line.split(":")[0]).name] = "flagged"
    return verdicts


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-benign-"))
    root = work / "artifacts"
    paths = write_artifacts(root)
    names = [p.name for p in paths]
    timings = {}
    started = time.perf_counter()
    results = {"gatekeeper": _gatekeeper(paths)}
    timings["gatekeeper"] = time.perf_counter() - started
    started = time.perf_counter()
    results["modelscan"] = _modelscan(root, names, work)
    timings["modelscan"] = time.perf_counter() - started
    started = time.perf_counter()
    results["picklescan"] = _picklescan(root, names)
    timings["picklescan"] = time.perf_counter() - started
    print(f"{len(paths)} benign files ({sum(1 for n in names if n.endswith('.pkl'))} pickle, "
          f"{sum(1 for n in names if n.endswith('.joblib'))} joblib, 1 torch)\n")  # fmt: skip
    print("| tool | passed | flagged (false positive) | could not scan | seconds |")
    print("|---|---|---|---|---|")
    for tool, verdicts in results.items():
        counts = Counter(verdicts.values())
        print(f"| {tool} | {counts['pass']} | {counts['flagged']} | "
              f"{counts['could not scan']} | {timings[tool]:.1f} |")  # fmt: skip
    for tool, verdicts in results.items():
        bad = sorted(n for n, v in verdicts.items() if v != "pass")
        if bad:
            print(f"\n{tool} did not pass {len(bad)}, e.g. {bad[:6]}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
