"""promptfoo/modelaudit's published chat-template samples, and the verdict each deserves.

The files (MIT, promptfoo/modelaudit@5ddfcdc `tests/assets/samples/jinja2`; SOURCE and LICENSE
next to them) are read where they lie, `/work/shared/thirdparty/modelaudit/jinja2`, and never
copied into this repository. Callers skip when the folder is absent.

Verdicts, read from the file's folder and name and checked by hand against every file:

- malicious (25): everything under `malicious/` and `obfuscated/`, the `malicious_*` files
  (JSON, a `.template`, a YAML config, a standalone `.jinja`) and the root
  `tokenizer_config.json` (the CVE-2024-34359 proof of concept): each reaches interpreter
  internals, so each must fail with SEC-TEMPLATE-001;
- benign (13): the `benign*` files, `standalone/suspicious_benign.template` (`message.class`
  is an ordinary attribute) and `yaml/model_config.yaml`: each must pass;
- edge cases (5), `edge_cases/`: a template Jinja cannot parse fails closed
  (SEC-TEMPLATE-004); a payload under `custom_chat_template` fails (every key naming
  `chat_template` is judged: a serving config can point a renderer at any of them); an
  empty template, a file with no template and a 60 kB benign template pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/work/shared/thirdparty/modelaudit/jinja2")

EDGE_CASES = {
    "edge_cases/malformed_template.json": "SEC-TEMPLATE-004",
    "edge_cases/multiple_templates.json": "SEC-TEMPLATE-001",
    "edge_cases/empty_template.json": None,
    "edge_cases/no_template.json": None,
    "edge_cases/oversized_template.json": None,
}


@dataclass(frozen=True)
class TemplateSample:
    path: Path
    rel: str
    group: str  # "malicious", "benign" or "edge case"
    rule: str | None  # the rule it must fail with; None: it must pass


def samples(root: Path = ROOT) -> list[TemplateSample]:
    """Every file of the folder with its verdict; [] when the folder is absent."""
    if not root.is_dir():
        return []
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return [_sample(p, p.relative_to(root).as_posix()) for p in files]


def _sample(path: Path, rel: str) -> TemplateSample:
    if rel in EDGE_CASES:
        return TemplateSample(path, rel, "edge case", EDGE_CASES[rel])
    name = rel.rsplit("/", 1)[-1]
    hostile = rel.startswith(("malicious", "obfuscated/")) or name.startswith("malicious")
    if hostile or rel == "tokenizer_config.json":
        return TemplateSample(path, rel, "malicious", "SEC-TEMPLATE-001")
    if "benign" in name or rel.startswith("benign") or rel == "yaml/model_config.yaml":
        return TemplateSample(path, rel, "benign", None)
    raise ValueError(f"{rel}: a sample this corpus has not judged; add it here")
