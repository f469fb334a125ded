"""CONTRIBUTING.md names real places: every path it quotes exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_path_the_contributor_map_names_exists() -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    quoted = set(re.findall(r"`([\w./-]+/[\w./<>*-]*)`", text))
    paths = [q for q in quoted if "<" not in q and "*" not in q]
    assert len(paths) >= 20, paths
    missing = sorted(p for p in paths if not (ROOT / p.rstrip("/")).exists())
    assert not missing, missing
