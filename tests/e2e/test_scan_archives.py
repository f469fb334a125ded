"""`gatekeeper scan` on the archive and broken-pickle cases peers' own test files carry.

picklescan's tests/data holds a malicious pickle inside a 7z and pickles that stop parsing
after naming a callable; before this, the gate passed both. Run as a user runs it: the CLI.
"""

from __future__ import annotations

import pickle
import subprocess
from pathlib import Path

import pytest

from tests.corpus.malicious_formats import seven_zip
from tests.helpers import VENV_BIN


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (f"touch {self.marker}",)


def _scan(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "gatekeeper"), "scan", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("evil.7z", "SEC-PICKLE-001"),
        ("encrypted.7z", "SEC-FILE-004"),
        ("weights.zst", "SEC-FILE-004"),
        ("broken_exec.pkl", "callables seen before the break: builtins.exec"),
        ("broken_eval.bin", "builtins.eval"),
    ],
)
def test_scan_blocks_archives_and_broken_pickles(tmp_path: Path, name: str, expected: str) -> None:
    marker = tmp_path / "RAN"
    payload = pickle.dumps(_System(marker), protocol=4)
    contents = {
        "evil.7z": seven_zip({"model/model.pkl": payload}),
        "encrypted.7z": seven_zip({"model.pkl": payload}, password="infected"),
        "weights.zst": b"\x28\xb5\x2f\xfd\x04\x58" + bytes(200),
        "broken_exec.pkl": b"cbuiltins\nexec\n(Vimport os\\nos.system('id')\nt\x00garbage",
        "broken_eval.bin": b'cbuiltins\neval\n(S\'__import__("os").system("id")\'\n',
    }
    path = tmp_path / name
    path.write_bytes(contents[name])

    result = _scan(path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stdout, result.stdout
    assert not marker.exists()


def test_clean_7z_of_a_benign_pickle_passes(tmp_path: Path) -> None:
    path = tmp_path / "weights.7z"
    path.write_bytes(seven_zip({"state.pkl": pickle.dumps({"w": [1.0, 2.0]}, protocol=4)}))
    result = _scan(path)
    assert result.returncode == 0, result.stdout
    assert "7z" in _scan_json_formats(path)


def _scan_json_formats(path: Path) -> str:
    result = subprocess.run(
        [str(VENV_BIN / "gatekeeper"), "scan", str(path), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.stdout
