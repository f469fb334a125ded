"""Bounds hold on hostile input: each case ends in a SEC-LIMIT (or format) finding, quickly and
in bounded memory, never a crash or a hang. Each runs `gatekeeper scan` as a process so its
peak memory (ru_maxrss from wait4) is its own."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

GATEKEEPER = str(Path(sys.executable).parent / "gatekeeper")
MAX_RSS_MIB = 1024  # the scanner process itself (Python + numpy + engines) is ~300 MiB


def _scan(path: Path) -> tuple[int, dict, float]:
    """Exit code, JSON report and the scanner process's own peak RSS in MiB."""
    out_file = path.with_suffix(".report.json")
    with out_file.open("wb") as out:
        process = subprocess.Popen(
            [GATEKEEPER, "scan", str(path), "--format", "json", "--no-modelscan"],
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        watchdog = threading.Timer(120, process.kill)
        watchdog.start()
        _, status, usage = os.wait4(process.pid, 0)
        watchdog.cancel()
    code = os.waitstatus_to_exitcode(status)
    assert code >= 0, f"gatekeeper scan was killed (hung or crashed) on {path.name}"
    return code, json.loads(out_file.read_text()), usage.ru_maxrss / 1024


def _rules(report: dict) -> set[str]:
    return {f["rule_id"] for f in report["findings"]}


@pytest.mark.slow
def test_zip_bomb(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("archive/data/0", "w", force_zip64=True) as member:
            zeros = bytes(16 * 1024 * 1024)
            for _ in range(64):  # 1 GiB of zeros, about 1 MiB compressed
                member.write(zeros)
    code, report, rss = _scan(path)
    assert code == 1 and "SEC-LIMIT-001" in _rules(report), report
    assert report["duration_s"] < 5, report["duration_s"]
    assert rss < MAX_RSS_MIB, rss


def test_ten_level_nested_zip(tmp_path: Path) -> None:
    payload = b"cos\nsystem\n(S'touch /tmp/gk-nested-marker'\ntR."
    blob = payload
    for level in range(10):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            zf.writestr(f"level{level}.bin", blob)
        blob = buffer.getvalue()
    path = tmp_path / "nested.zip"
    path.write_bytes(blob)
    code, report, rss = _scan(path)
    assert code == 1
    limit = [f for f in report["findings"] if f["rule_id"] == "SEC-LIMIT-001"]
    assert limit and limit[0]["evidence"]["limit"] == "depth"
    assert report["duration_s"] < 5 and rss < MAX_RSS_MIB


def test_exponential_dup_get_pickle(tmp_path: Path) -> None:
    ops = bytearray(b"\x80\x02]q\x00")  # PROTO 2, EMPTY_LIST, BINPUT 0
    for i in range(200):  # each list holds the previous one twice: 2**200 leaves if copied
        ops += b"(h" + bytes([i]) + b"h" + bytes([i]) + b"lq" + bytes([i + 1])
    ops += b"."
    path = tmp_path / "laughs.pkl"
    path.write_bytes(bytes(ops))
    code, report, rss = _scan(path)
    assert code == 1 and "SEC-LIMIT-001" in _rules(report), report
    assert report["duration_s"] < 5 and rss < MAX_RSS_MIB


def test_two_gib_safetensors_header(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 2 * 1024**3) + b'{"__metadata__": {}}' + bytes(64))
    code, report, rss = _scan(path)
    assert code == 1
    assert any(r.startswith("SEC-SAFETENSORS") for r in _rules(report)), report
    assert report["duration_s"] < 5 and rss < MAX_RSS_MIB
