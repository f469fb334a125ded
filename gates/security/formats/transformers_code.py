"""Transformers `auto_map`: the Python files `trust_remote_code=True` imports and runs.

`config.json` and `tokenizer_config.json` map Auto classes to `module.Class` (or
`repo--module.Class`, code from another repository); `from_pretrained(...,
trust_remote_code=True)` imports `<module>.py` from the model directory. Each reference is
SEC-AUTOMAP-001 (HIGH, lowered by `allow_code`), and every file it names is analysed with
bandit like shipped code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gates.base import Finding
from gates.security import rules
from gates.security.common import Location
from gates.security.mlflow_format import bandit_findings

CONFIG_NAMES = ("config.json", "tokenizer_config.json")
MAX_CONFIG_BYTES = 16 * 1024**2
MAX_CONFIGS = 200


def _references(value: Any) -> Iterator[str]:
    """`auto_map` values: "module.Class", "repo--module.Class", or [slow, fast] lists."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                yield item


def check_auto_map(root: Path) -> list[Finding]:
    if not root.is_dir():
        return []
    findings: list[Finding] = []
    code_files: set[Path] = set()
    configs = [p for name in CONFIG_NAMES for p in root.rglob(name) if p.is_file()]
    for config in sorted(configs)[:MAX_CONFIGS]:
        if config.stat().st_size > MAX_CONFIG_BYTES:
            continue
        try:
            document = json.loads(config.read_bytes())
        except (ValueError, RecursionError):
            continue  # not JSON: the text scan still searched it for secrets
        auto_map = document.get("auto_map") if isinstance(document, dict) else None
        if not isinstance(auto_map, dict):
            continue
        rel_config = config.relative_to(root).as_posix()
        for auto_class, value in auto_map.items():
            for reference in _references(value):
                findings.append(_finding(root, config, rel_config, str(auto_class), reference))
                module = reference.split("--", 1)[-1].rsplit(".", 1)[0]
                candidate = config.parent / (module.replace(".", "/") + ".py")
                if "--" not in reference and candidate.is_file():
                    code_files.add(candidate)
    return findings + bandit_findings(root, sorted(code_files))


def _finding(root: Path, config: Path, rel: str, auto_class: str, reference: str) -> Finding:
    remote = "--" in reference
    module = reference.split("--", 1)[-1].rsplit(".", 1)[0]
    target = config.parent / (module.replace(".", "/") + ".py")
    if remote:
        what = f"code from another repository ({reference.split('--', 1)[0]})"
    elif target.is_file():
        what = f"{target.relative_to(root).as_posix()}, shipped with the model"
    else:
        what = f"{module}.py, which is not in the artifact"
    return rules.REMOTE_CODE.finding(
        f"{rel}: auto_map {auto_class} -> {reference}: trust_remote_code=True runs {what}",
        Location(rel),
        {"auto_class": auto_class, "reference": reference, "remote_repository": remote},
    )
