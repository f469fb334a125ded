"""Transformers remote code: the Python files `trust_remote_code=True` imports and runs.

Every `*config.json` of the artifact is read (config.json, tokenizer_config.json,
preprocessor_config.json, processor_config.json, video_preprocessor_config.json, ...: each
of transformers' Auto classes reads its own, and all of them honour `auto_map`):

- `auto_map` maps Auto classes to `module.Class` (or `repo--module.Class`, code from another
  repository, or a `[slow, fast]` pair); `from_pretrained(..., trust_remote_code=True)`
  imports `<module>.py` from the model directory;
- `custom_pipelines` maps a task to `{"impl": "module.Class", "pt": [...], ...}`;
  `pipeline(task, model, trust_remote_code=True)` imports `impl` the same way.

Each reference is SEC-AUTOMAP-001 (HIGH, lowered by `allow_code`), and every file it names
that the artifact ships is analysed with bandit like shipped code (once: files another engine
already analysed are recorded in `ReviewedCode`). Bounds: `MAX_CONFIGS` files and
`MAX_CONFIG_BYTES` each; past either, SEC-LIMIT-001 (what was not read was not checked). A
config that is not JSON is not loadable by transformers either; the text scan still searched
it for secrets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gates.base import Finding
from gates.security import rules
from gates.security.common import Location, ReviewedCode, files_under
from gates.security.mlflow_format import bandit_findings

CONFIG_SUFFIX = "config.json"
MAX_CONFIG_BYTES = 64 * 1024**2
MAX_CONFIGS = 200


def _auto_map_references(value: Any) -> Iterator[str]:
    """`auto_map` values: "module.Class", "repo--module.Class", or [slow, fast] lists."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                yield item


def _references(document: Any) -> Iterator[tuple[str, str, str]]:
    """(key, entry, reference) for each remote-code class a config names: key `auto_map`
    with the Auto class, or `custom_pipelines` with the task."""
    if not isinstance(document, dict):
        return
    auto_map = document.get("auto_map")
    if isinstance(auto_map, dict):
        for auto_class, value in auto_map.items():
            for reference in _auto_map_references(value):
                yield "auto_map", str(auto_class)[:200], reference
    pipelines = document.get("custom_pipelines")
    if isinstance(pipelines, dict):
        for task, spec in pipelines.items():
            impl = spec.get("impl") if isinstance(spec, dict) else None
            if isinstance(impl, str):
                yield "custom_pipelines", str(task)[:200], impl


def check_auto_map(root: Path, reviewed: ReviewedCode | None = None) -> list[Finding]:
    if not root.is_dir():
        return []
    reviewed = reviewed if reviewed is not None else ReviewedCode()
    findings: list[Finding] = []
    code_files: list[Path] = []
    configs, more = files_under(root, lambda n: n.lower().endswith(CONFIG_SUFFIX), MAX_CONFIGS)
    if more:
        findings.append(
            rules.SCAN_LIMIT.finding(
                f"more than {MAX_CONFIGS} *config.json files; the rest were not read for "
                "auto_map or custom_pipelines",
                Location("."),
                {"limit": "config_files"},
            )
        )
    for config in configs:
        rel = config.relative_to(root).as_posix()
        size = config.stat().st_size
        if size > MAX_CONFIG_BYTES:
            findings.append(
                rules.SCAN_LIMIT.finding(
                    f"{size} bytes, over the {MAX_CONFIG_BYTES}-byte limit for a config file; "
                    "its auto_map and custom_pipelines were not read",
                    Location(rel),
                    {"limit": "config_size"},
                )
            )
            continue
        try:
            document = json.loads(config.read_bytes())
        except (ValueError, RecursionError):
            continue  # not JSON: the text scan still searched it for secrets
        for key, entry, reference in _references(document):
            finding, target = _finding(root, config, rel, (key, entry), reference)
            findings.append(finding)
            if target is not None:
                code_files.append(target)
    return findings + bandit_findings(root, code_files, reviewed)


def _target(root: Path, config: Path, reference: str) -> Path | None:
    """The shipped file a local reference imports (inside the artifact), if there is one."""
    if "--" in reference:
        return None
    module = reference.rsplit(".", 1)[0]
    candidate = config.parent / (module.replace(".", "/") + ".py")
    inside = candidate.resolve().is_relative_to(root.resolve())
    return candidate if inside and candidate.is_file() and not candidate.is_symlink() else None


def _finding(
    root: Path, config: Path, rel: str, named_by: tuple[str, str], reference: str
) -> tuple[Finding, Path | None]:
    remote = "--" in reference
    module = reference.split("--", 1)[-1].rsplit(".", 1)[0]
    target = _target(root, config, reference)
    if remote:
        what = f"code from another repository ({reference.split('--', 1)[0]})"
    elif target is not None:
        what = f"{target.relative_to(root).as_posix()}, shipped with the model"
    else:
        what = f"{module}.py, which is not in the artifact"
    key, entry = named_by
    finding = rules.REMOTE_CODE.finding(
        f"{rel}: {key} {entry} -> {reference}: trust_remote_code=True runs {what}",
        Location(rel),
        {
            "key": key,
            "auto_class" if key == "auto_map" else "task": entry,
            "reference": reference,
            "remote_repository": remote,
        },
    )
    return finding, target
