"""Scanner corpora: malicious samples written from raw bytes, benign ones made by real libraries.

Both builders return `Sample` rows and write a `manifest.json`, so the benchmark and the tests
read the same description of what each file is and what a scanner should say about it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """One artifact of a corpus.

    `path` is relative to the corpus directory and may name a directory (an MLflow model or a
    TF SavedModel). `technique` is the class of attack (or of benign artifact) used for the
    per-class breakdown; `payload` says what would run if the file were ever loaded.
    """

    path: str
    technique: str
    description: str
    expected: bool
    payload: str = ""


def write_manifest(out_dir: Path, samples: list[Sample], **extra: object) -> Path:
    """Write `manifest.json` so a scanner benchmark can be run on a corpus built elsewhere."""
    manifest = out_dir / "manifest.json"
    body = {**extra, "count": len(samples), "samples": [asdict(s) for s in samples]}
    manifest.write_text(json.dumps(body, indent=2, sort_keys=False) + "\n")
    return manifest


def read_manifest(corpus_dir: Path) -> list[Sample]:
    """Samples listed in a corpus directory's `manifest.json`."""
    body = json.loads((corpus_dir / "manifest.json").read_text())
    return [Sample(**row) for row in body["samples"]]
