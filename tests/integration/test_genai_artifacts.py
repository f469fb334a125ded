"""GenAI artifacts through the security gate: chat templates, GGUF, transformers auto_map.

Real files in tmp_path, the gate as the service runs it. The malicious templates are
tests/corpus/chat_templates/malicious (each file's expected construct in EXPECTED.txt: direct,
obfuscated with hex escapes, `~`, `join`, `format`, `%`, `replace`, `reverse`, set-then-use,
filters taking attribute names, dangerous globals, calls and includes); the benign ones are
the major model families' published templates (SOURCES.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gates.base import GateContext, Status
from gates.security import check
from gates.security.config import SecurityConfig
from tests.corpus.gguf_files import gguf_bytes, huge_string_gguf, oversized_gguf, write_gguf

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "chat_templates"
MALICIOUS = sorted((CORPUS / "malicious").glob("*.jinja"))
BENIGN = sorted((CORPUS / "benign").glob("*.jinja"))
EXPECTED = dict(
    line.split(": ", 1)
    for line in (CORPUS / "malicious" / "EXPECTED.txt").read_text().splitlines()
    if line and not line.startswith("#")
)


def _gate(root: Path, **config: object) -> tuple[Status, list[dict[str, object]]]:
    result = check(GateContext(artifact_dir=root), SecurityConfig(modelscan=False, **config))  # type: ignore[arg-type]
    return result.status, [f.to_dict() for f in result.findings]


def _tokenizer_dir(tmp_path: Path, chat_template: object) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    (root / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "chat_template": chat_template})
    )
    (root / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return root


def test_the_corpora_are_the_size_the_issue_asks() -> None:
    assert len(MALICIOUS) >= 25 and len(EXPECTED) == len(MALICIOUS)
    assert len(BENIGN) >= 12


@pytest.mark.parametrize("template", MALICIOUS, ids=lambda p: p.stem)
def test_a_malicious_chat_template_in_tokenizer_config_is_blocked_naming_the_construct(
    tmp_path: Path, template: Path
) -> None:
    status, findings = _gate(_tokenizer_dir(tmp_path, template.read_text()))
    assert status == Status.FAIL
    ours = [f for f in findings if str(f["rule_id"]).startswith("SEC-TEMPLATE-")]
    assert ours and {f["file"] for f in ours} == {"tokenizer_config.json"}
    construct = EXPECTED[template.name]
    assert any(construct in str(f["message"]) for f in ours), [f["message"] for f in ours]


@pytest.mark.parametrize("template", MALICIOUS[:5], ids=lambda p: p.stem)
def test_a_malicious_jinja_file_beside_the_model_is_blocked(tmp_path: Path, template: Path) -> None:
    root = _tokenizer_dir(tmp_path, None)
    (root / "chat_template.jinja").write_text(template.read_text())
    status, findings = _gate(root)
    assert status == Status.FAIL
    assert any(f["file"] == "chat_template.jinja" for f in findings)


def test_a_payload_split_into_a_list_of_named_templates_is_blocked(tmp_path: Path) -> None:
    benign = (CORPUS / "benign" / "chatml.jinja").read_text()
    named = [
        {"name": "default", "template": benign},
        {"name": "tool_use", "template": "{{ cycler.__init__.__globals__.os.popen('id') }}"},
    ]
    status, findings = _gate(_tokenizer_dir(tmp_path, named))
    assert status == Status.FAIL
    assert any("chat_template[tool_use]" in str(f["message"]) for f in findings)
    assert not any("chat_template[default]" in str(f["message"]) for f in findings)


@pytest.mark.parametrize("template", BENIGN, ids=lambda p: p.stem)
def test_the_published_templates_of_the_major_families_pass(tmp_path: Path, template: Path) -> None:
    root = _tokenizer_dir(tmp_path, template.read_text())
    (root / "chat_template.jinja").write_text(template.read_text())
    status, findings = _gate(root)
    assert status == Status.PASS, [f["message"] for f in findings]
    assert not [f for f in findings if str(f["rule_id"]).startswith("SEC-TEMPLATE-")]


def test_a_template_that_does_not_parse_is_a_finding(tmp_path: Path) -> None:
    status, findings = _gate(_tokenizer_dir(tmp_path, "{% for m in messages %}{{ m"))
    assert status == Status.FAIL
    assert any(f["rule_id"] == "SEC-TEMPLATE-004" for f in findings)


def test_gguf_with_a_malicious_template_is_blocked_and_a_benign_one_passes(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    payload = (CORPUS / "malicious" / "10_attr_concat_tilde.jinja").read_text()
    write_gguf(bad / "model.gguf", (CORPUS / "benign" / "llama3.jinja").read_text(),
               named={"tool_use": payload})  # fmt: skip
    status, findings = _gate(bad)
    assert status == Status.FAIL
    flagged = [f for f in findings if f["rule_id"] == "SEC-TEMPLATE-001"]
    assert flagged and all(f["file"] == "model.gguf" for f in flagged)
    assert "tokenizer.chat_template.tool_use" in str(flagged[0]["message"])

    good = tmp_path / "good"
    good.mkdir()
    write_gguf(good / "model.gguf", (CORPUS / "benign" / "llama3.jinja").read_text())
    status, findings = _gate(good)
    assert status == Status.PASS, findings


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (gguf_bytes("{{ messages }}")[:40], "truncated"),
        (oversized_gguf(), "metadata keys claimed"),
        (huge_string_gguf(), "over the"),
        (b"GGUF" + (1).to_bytes(4, "little") + b"\0" * 16, "version 1"),
    ],
    ids=["truncated", "2^40 keys", "2^50-byte string", "version 1"],
)
def test_a_malformed_gguf_header_is_a_finding_within_bounds(
    tmp_path: Path, content: bytes, words: str
) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "model.gguf").write_bytes(content)
    status, findings = _gate(root)
    assert status == Status.FAIL
    malformed = [f for f in findings if f["rule_id"] == "SEC-GGUF-001"]
    assert malformed and words in str(malformed[0]["message"]), findings


MODELING = '''"""A custom architecture, as a Hub repository ships it."""
import torch.nn as nn


class EvilConfigModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
'''


def test_auto_map_code_is_blocked_unless_allow_code(tmp_path: Path) -> None:
    root = tmp_path / "model"
    root.mkdir()
    (root / "config.json").write_text(json.dumps({
        "model_type": "evil", "architectures": ["EvilConfigModel"],
        "auto_map": {"AutoModel": "modeling_evil.EvilConfigModel",
                     "AutoConfig": "other-org/repo--configuration_evil.EvilConfig"},
    }))  # fmt: skip
    (root / "modeling_evil.py").write_text(MODELING)
    (root / "MLmodel").write_text("flavors:\n  transformers:\n    transformers_version: 4.44.0\n")
    status, findings = _gate(root)
    assert status == Status.FAIL
    remote = [f for f in findings if f["rule_id"] == "SEC-AUTOMAP-001"]
    assert {f["severity"] for f in remote} == {"HIGH"}
    messages = " ".join(str(f["message"]) for f in remote)
    assert "modeling_evil.py, shipped with the model" in messages
    assert "another repository (other-org/repo)" in messages
    status, findings = _gate(root, allow_code=True)
    assert status == Status.PASS, [f["message"] for f in findings if f["severity"] != "LOW"]
    assert all(f["severity"] == "LOW" for f in findings if f["rule_id"] == "SEC-AUTOMAP-001")
