"""Derive `gates/security/data/library_factories.txt` from the installed libraries.

Writes every artifact of `tests.corpus.estimators` (all scikit-learn estimators, pipelines,
xgboost / lightgbm wrappers, pandas and scipy objects), scans each, and lists the callables
those pickles *call* while loading that the hand-written allowlist does not hold: the
factories the libraries' own `__reduce__` methods emit (e.g.
`sklearn.metrics._dist_metrics.newObj`). A dangerous callable is never listed.

    python -m tests.corpus.library_factories          # rewrite the file
    python -m tests.corpus.library_factories --check  # exit 1 if it would change
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from gates.security import scan_path
from gates.security.callables import is_dangerous
from gates.security.config import SecurityConfig
from tests.corpus.estimators import write_artifacts

TARGET = Path(__file__).resolve().parents[2] / "gates/security/data/library_factories.txt"
HEADER = """\
# Factories the installed numerical libraries emit from their own __reduce__ methods, found by
# pickling every scikit-learn estimator (and the xgboost / lightgbm wrappers, pandas and scipy
# objects) and collecting the callables those pickles call that the hand-written allowlist
# in callables.py does not already hold. Regenerate with: python -m tests.corpus.library_factories
"""


def derive(existing: set[str]) -> list[str]:
    found = set(existing)
    with tempfile.TemporaryDirectory() as tmp:
        for path in write_artifacts(Path(tmp)):
            result = scan_path(path, SecurityConfig(modelscan=False))
            for finding in result.findings:
                name = str(finding.evidence.get("callable", ""))
                module, _, attr = name.rpartition(".")
                if (
                    finding.rule_id == "SEC-PICKLE-002"
                    and finding.evidence.get("called")
                    and not is_dangerous(module, attr)
                ):
                    found.add(name)
    return sorted(found)


def current() -> set[str]:
    lines = TARGET.read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def main(argv: list[str]) -> int:
    listed = current()
    names = derive(listed)
    if "--check" in argv:
        missing = sorted(set(names) - listed)
        print("up to date" if not missing else f"missing: {missing}")
        return 1 if missing else 0
    TARGET.write_text(HEADER + "".join(f"{n}\n" for n in names))
    print(f"{len(names)} factories in {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
