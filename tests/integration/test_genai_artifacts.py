"""GenAI artifacts through the security gate: chat templates, GGUF, transformers remote code.

Real files in tmp_path, the gate as the service runs it. The malicious templates are
tests/corpus/chat_templates/malicious (each file's expected construct in EXPECTED.txt: direct,
obfuscated with hex escapes, `~`, `join`, `format`, `%`, `replace`, `reverse`, set-then-use,
filters taking attribute names, dangerous globals, calls and includes, and the bypasses of
issue 20: set blocks, names assigned twice, re-bound macros); the benign ones are the major
model families' published templates (SOURCES.md). Each goes through five carriers: a
`tokenizer_config.json`, a `chat_template.json` (what transformers processors load), a JSON
file of any other name with a `chat_template` key, a `.jinja` file and GGUF metadata.

promptfoo/modelaudit publishes its own chat-template test files; they are scanned where they
lie (tests/corpus/modelaudit_templates.py says where and what each deserves; never copied
here), and those tests are skipped when that folder is absent.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from gates.base import GateContext, Status
from gates.security import check, scan_path
from gates.security.config import SecurityConfig
from tests.corpus import modelaudit_templates
from tests.corpus.gguf_files import gguf_bytes, huge_string_gguf, oversized_gguf, write_gguf

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "chat_templates"
MALICIOUS = sorted((CORPUS / "malicious").glob("*.jinja"))
BENIGN = sorted((CORPUS / "benign").glob("*.jinja"))
EXPECTED = dict(
    line.split(": ", 1)
    for line in (CORPUS / "malicious" / "EXPECTED.txt").read_text().splitlines()
    if line and not line.startswith("#")
)
PAYLOAD = "{{ cycler.__init__.__globals__.os.popen('id').read() }}"


def _gate(root: Path, **config: object) -> tuple[Status, list[dict[str, object]]]:
    result = check(GateContext(artifact_dir=root), SecurityConfig(modelscan=False, **config))  # type: ignore[arg-type]
    return result.status, [f.to_dict() for f in result.findings]


def _model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return root


def _tokenizer_config(root: Path, template: object) -> str:
    document = {"bos_token": "<s>", "eos_token": "</s>", "chat_template": template}
    (root / "tokenizer_config.json").write_text(json.dumps(document))
    return "tokenizer_config.json"


def _chat_template_json(root: Path, template: str) -> str:
    (root / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    return "chat_template.json"


def _any_json(root: Path, template: str) -> str:
    settings = {"serving": {"max_tokens": 512, "chat_template": template}}
    (root / "my_settings.json").write_text(json.dumps(settings, indent=2))
    return "my_settings.json"


def _jinja_file(root: Path, template: str) -> str:
    (root / "chat_template.jinja").write_text(template)
    return "chat_template.jinja"


def _gguf(root: Path, template: str) -> str:
    write_gguf(root / "model.gguf", template)
    return "model.gguf"


CARRIERS: dict[str, Callable[[Path, str], str]] = {
    "tokenizer_config.json": _tokenizer_config,
    "chat_template.json": _chat_template_json,
    "my_settings.json": _any_json,
    ".jinja": _jinja_file,
    "gguf": _gguf,
}


def _template_findings(findings: list[dict[str, object]]) -> list[dict[str, object]]:
    return [f for f in findings if str(f["rule_id"]).startswith("SEC-TEMPLATE-")]


def test_the_corpora_are_the_size_the_issues_ask() -> None:
    assert len(MALICIOUS) >= 39 and len(EXPECTED) == len(MALICIOUS)
    assert {p.name for p in MALICIOUS} == set(EXPECTED)
    assert len(BENIGN) >= 12


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("template", MALICIOUS, ids=lambda p: p.stem)
def test_a_malicious_chat_template_is_blocked_in_every_carrier_naming_the_construct(
    tmp_path: Path, template: Path, carrier: str
) -> None:
    root = _model_dir(tmp_path)
    file = CARRIERS[carrier](root, template.read_text())
    status, findings = _gate(root)
    assert status == Status.FAIL
    ours = _template_findings(findings)
    assert ours and {f["file"] for f in ours} == {file}
    construct = EXPECTED[template.name]
    assert any(construct in str(f["message"]) for f in ours), [f["message"] for f in ours]


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("template", BENIGN, ids=lambda p: p.stem)
def test_the_published_templates_of_the_major_families_pass_in_every_carrier(
    tmp_path: Path, template: Path, carrier: str
) -> None:
    root = _model_dir(tmp_path)
    CARRIERS[carrier](root, template.read_text())
    status, findings = _gate(root)
    assert status == Status.PASS, [f["message"] for f in findings]
    assert not _template_findings(findings)


# -- the bypasses of issue 20, one test each ---------------------------------------------------


def _judged(tmp_path: Path, template: str) -> tuple[Status, list[dict[str, object]]]:
    root = _model_dir(tmp_path)
    _chat_template_json(root, template)
    return _gate(root)


def test_a_template_hiding_dunder_in_a_set_block_is_blocked(tmp_path: Path) -> None:
    status, findings = _judged(tmp_path, "{% set n %}__class__{% endset %}{{ ''[n] }}")
    assert status == Status.FAIL
    assert any("item ['__class__']" in str(f["message"]) for f in findings)


def test_a_template_building_a_set_block_from_pieces_is_blocked(tmp_path: Path) -> None:
    template = "{% set n | lower %}{{ '_' }}_CLASS_{{ '_' }}{% endset %}{{ ''[n] }}"
    status, findings = _judged(tmp_path, template)
    assert status == Status.FAIL
    assert any("a `set n` block" in str(f["message"]) for f in findings)


def test_a_template_re_assigning_a_name_after_using_it_is_judged_by_the_value_in_use(
    tmp_path: Path,
) -> None:
    template = "{% set n = '_' ~ '_class__' %}{{ ''[n] }}{% set n = 'role' %}"
    status, findings = _judged(tmp_path, template)
    assert status == Status.FAIL
    assert any("item ['__class__'] built from literals" in str(f["message"]) for f in findings)


def test_a_template_re_binding_a_macro_name_to_call_anything_is_blocked(tmp_path: Path) -> None:
    template = (
        "{% macro show(v) %}{{ v }}{% endmacro %}"
        "{% set show = ('{0.' ~ '_' ~ '_class_' ~ '_}').format %}{{ show('') }}"
    )
    status, findings = _judged(tmp_path, template)
    assert status == Status.FAIL
    assert any(
        f["rule_id"] == "SEC-TEMPLATE-003" and "a call of `show`" in str(f["message"])
        for f in findings
    )


def test_a_template_reaching_subclasses_and_popen_through_set_blocks_is_blocked(
    tmp_path: Path,
) -> None:
    """Before issue 20 this passed with no finding; rendered by plain Jinja2 it runs `id`."""
    template = (CORPUS / "malicious" / "32_set_blocks_subclasses_popen.jinja").read_text()
    status, findings = _judged(tmp_path, template)
    assert status == Status.FAIL
    messages = " ".join(str(f["message"]) for f in findings)
    assert "__subclasses__" in messages and "a call of `run`" in messages


def test_a_value_set_in_any_if_branch_counts_where_the_name_is_used(tmp_path: Path) -> None:
    template = (
        "{% if messages %}{% set n = '_' ~ '_class__' %}{% else %}{% set n = 'role' %}"
        "{% endif %}{{ messages[0][n] }}"
    )
    status, findings = _judged(tmp_path, template)
    assert status == Status.FAIL
    assert any("item ['__class__']" in str(f["message"]) for f in findings)


def test_a_name_a_loop_body_re_binds_is_judged_with_every_value_it_may_hold(
    tmp_path: Path,
) -> None:
    """Jinja 3 starts each iteration from the values before the loop; the judge does not rely
    on that and assumes a value set in one iteration may be seen by the next."""
    template = (
        "{% set n = 'role' %}{% for m in messages %}{{ m[n] }}"
        "{% set n = '_' ~ '_class__' %}{% endfor %}"
    )
    status, findings = _judged(tmp_path, template)
    assert status == Status.FAIL
    assert any("item ['__class__']" in str(f["message"]) for f in findings)


def test_a_template_reading_a_generator_frame_without_underscores_is_blocked(
    tmp_path: Path,
) -> None:
    """`map` returns a generator; its frame reaches module globals and builtins with no `_`."""
    status, findings = _judged(tmp_path, "{{ (messages|map('string')).gi_frame.f_builtins }}")
    assert status == Status.FAIL
    assert any("gi_frame (an interpreter-internal name)" in str(f["message"]) for f in findings)


def test_a_template_re_binding_loop_with_a_with_block_is_not_read_as_a_number(
    tmp_path: Path,
) -> None:
    template = (
        "{% for m in messages %}{% with loop = {'index0': 'role'} %}"
        "{{ m[loop.index0] }}{% endwith %}{% endfor %}"
    )
    status, findings = _judged(tmp_path, template)
    assert status == Status.FAIL
    assert any("[loop.index0]" in str(f["message"]) for f in findings)


def test_an_item_key_taken_from_request_data_is_a_computed_name(tmp_path: Path) -> None:
    status, findings = _judged(tmp_path, "{{ messages[0][tools[0].name] }}")
    assert status == Status.FAIL
    assert [f["rule_id"] for f in _template_findings(findings)] == ["SEC-TEMPLATE-002"]


def test_keys_that_are_numbers_known_names_or_lookups_in_the_template_own_dict_pass(
    tmp_path: Path,
) -> None:
    template = (
        "{% set types = {'string': 'str', 'integer': 'int'} %}"
        "{% set key = 'role' %}{{ messages[0][key] }}{% set key = 'content' %}"
        "{% for m in messages %}{% if loop.index0 > 8 %}{% break %}{% endif %}"
        "{{ messages[loop.index0 - 1][key] }}{{ messages[(messages|length - 1) - loop.index0] }}"
        "{% generation %}{{ types[m.type] }}{% endgeneration %}{% endfor %}"
    )
    status, findings = _judged(tmp_path, template)
    assert status == Status.PASS, [f["message"] for f in findings]


# -- where templates are found ---------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        '{"processor": {"settings": {"chat_template": "PAYLOAD"}}}',
        '{"chat\\u005ftemplate": "PAYLOAD"}',
        '{"chat_template": "{{ messages }}", "chat_template": "PAYLOAD"}',
        '[{"name": "x", "custom_chat_template": "PAYLOAD"}]',
        '{"chat_template": {"default": "{{ messages }}", "tool_use": "PAYLOAD"}}',
    ],
    ids=["nested", "escaped key", "duplicate key", "list of objects", "map of names"],
)
def test_a_template_hidden_anywhere_in_any_json_file_is_found(
    tmp_path: Path, document: str
) -> None:
    root = _model_dir(tmp_path)
    (root / "extra.json").write_text(document.replace("PAYLOAD", PAYLOAD))
    status, findings = _gate(root)
    assert status == Status.FAIL
    assert {f["file"] for f in _template_findings(findings)} == {"extra.json"}


@pytest.mark.parametrize("padding", [0, 200_000], ids=["small", "over the sniff window"])
def test_a_jinja_file_starting_with_a_nul_byte_is_still_judged(
    tmp_path: Path, padding: int
) -> None:
    """transformers reads chat_template.jinja as UTF-8, where NUL is a character like any
    other; a scanner that calls the file binary would not judge it."""
    root = _model_dir(tmp_path)
    (root / "chat_template.jinja").write_bytes(b"\0" + b" " * padding + PAYLOAD.encode())
    status, findings = _gate(root)
    assert status == Status.FAIL
    assert {f["file"] for f in _template_findings(findings)} == {"chat_template.jinja"}


def test_a_template_in_a_yaml_serving_config_is_found(tmp_path: Path) -> None:
    root = _model_dir(tmp_path)
    (root / "serving.yaml").write_text(f"engine: vllm\nchat_template: {json.dumps(PAYLOAD)}\n")
    status, findings = _gate(root)
    assert status == Status.FAIL
    assert {f["file"] for f in _template_findings(findings)} == {"serving.yaml"}


def test_a_payload_split_into_a_list_of_named_templates_is_blocked(tmp_path: Path) -> None:
    benign = (CORPUS / "benign" / "chatml.jinja").read_text()
    named = [{"name": "default", "template": benign}, {"name": "tool_use", "template": PAYLOAD}]
    root = _model_dir(tmp_path)
    _tokenizer_config(root, named)
    status, findings = _gate(root)
    assert status == Status.FAIL
    assert any("chat_template[tool_use]" in str(f["message"]) for f in findings)
    assert not any("chat_template[default]" in str(f["message"]) for f in findings)


def test_a_json_file_with_a_template_is_still_searched_for_secrets(tmp_path: Path) -> None:
    root = _model_dir(tmp_path)
    key = "AKIA" + "QYLPMN5HHHFPZAM2"  # an AWS key id shape, split so no scanner flags this file
    (root / "chat_template.json").write_text(
        json.dumps({"chat_template": "{{ messages }}", "aws_access_key_id": key})
    )
    (root / "broken.json").write_text('{"chat_template": "{{ x }}", "key": "' + key + '",')
    status, findings = _gate(root)
    assert status == Status.FAIL
    secrets = {f["file"] for f in findings if f["rule_id"] == "SEC-SECRET-001"}
    assert secrets == {"chat_template.json", "broken.json"}
    assert not _template_findings(findings)  # broken.json is not JSON: only text


def test_a_template_nested_too_deep_to_read_is_not_called_safe(tmp_path: Path) -> None:
    root = _model_dir(tmp_path)
    depth = 100_000
    (root / "deep.json").write_text('{"chat_template": ' + "[" * depth + "]" * depth + "}")
    status, findings = _gate(root)
    assert status == Status.FAIL
    assert any(f["rule_id"] == "SEC-TEMPLATE-004" for f in findings)


def test_a_template_too_complex_to_judge_is_not_called_safe(tmp_path: Path) -> None:
    loops = "".join(f"{{% for a in x %}}{{% set n = 'a{i}' %}}" for i in range(30))
    template = "{% set n = 'b' %}" + loops + "{{ y[n] }}" + "{% endfor %}" * 30
    status, findings = _judged(tmp_path, template)
    assert status == Status.FAIL
    assert any(
        f["rule_id"] == "SEC-TEMPLATE-004" and "too complex" in str(f["message"]) for f in findings
    )


def test_a_template_that_does_not_parse_is_a_finding(tmp_path: Path) -> None:
    status, findings = _judged(tmp_path, "{% for m in messages %}{{ m")
    assert status == Status.FAIL
    assert any(f["rule_id"] == "SEC-TEMPLATE-004" for f in findings)


# -- promptfoo/modelaudit's published chat-template samples, scanned where they lie -----------

MODELAUDIT_SAMPLES = modelaudit_templates.samples()


@pytest.mark.skipif(not MODELAUDIT_SAMPLES, reason=f"{modelaudit_templates.ROOT} is absent")
def test_modelaudit_ships_the_samples_this_test_judges() -> None:
    groups = Counter(s.group for s in MODELAUDIT_SAMPLES)
    assert groups == {"malicious": 25, "benign": 13, "edge case": 5}


@pytest.mark.skipif(not MODELAUDIT_SAMPLES, reason=f"{modelaudit_templates.ROOT} is absent")
@pytest.mark.parametrize(
    "sample", MODELAUDIT_SAMPLES or [None], ids=lambda s: s.rel if s else "absent"
)
def test_modelaudit_chat_template_samples_get_the_verdict_their_content_deserves(
    sample: modelaudit_templates.TemplateSample,
) -> None:
    result = scan_path(sample.path, SecurityConfig(modelscan=False))
    found = {f.rule_id for f in result.findings}
    if sample.rule is None:
        assert result.status == Status.PASS, [f.message for f in result.findings]
    else:
        assert result.status == Status.FAIL and sample.rule in found, found


# -- GGUF --------------------------------------------------------------------------------------


def test_gguf_with_a_malicious_named_template_is_blocked_and_a_benign_one_passes(
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


# -- transformers remote code ------------------------------------------------------------------

MODELING = '''"""A custom architecture, as a Hub repository ships it."""
import torch.nn as nn


class EvilConfigModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
'''
CONFIG_FILES = [
    "config.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
]


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
    # the file auto_map names is reported there, not again as a loose .py file
    assert not [f for f in findings if f["rule_id"] == "SEC-CODE-003"]
    status, findings = _gate(root, allow_code=True)
    assert status == Status.PASS, [f["message"] for f in findings if f["severity"] != "LOW"]
    assert all(f["severity"] == "LOW" for f in findings if f["rule_id"] == "SEC-AUTOMAP-001")


@pytest.mark.parametrize("config", CONFIG_FILES)
def test_auto_map_is_found_in_every_config_file_transformers_reads(
    tmp_path: Path, config: str
) -> None:
    root = tmp_path / "model"
    root.mkdir()
    document = {"processor_class": "EvilProcessor",
                "auto_map": {"AutoProcessor": "processing_evil.EvilProcessor"}}  # fmt: skip
    (root / config).write_text(json.dumps(document))
    (root / "processing_evil.py").write_text("import os\n\nos.system('id')\n")
    status, findings = _gate(root)
    assert status == Status.FAIL
    remote = [f for f in findings if f["rule_id"] == "SEC-AUTOMAP-001"]
    assert [f["file"] for f in remote] == [config]
    assert "processing_evil.py, shipped with the model" in str(remote[0]["message"])
    analysed = [f for f in findings if f["rule_id"] == "SEC-CODE-001"]
    assert analysed and {f["file"] for f in analysed} == {"processing_evil.py"}
    assert len(analysed) == len({f["message"] for f in analysed})  # analysed once


def test_custom_pipelines_in_config_json_is_remote_code(tmp_path: Path) -> None:
    root = tmp_path / "model"
    root.mkdir()
    (root / "config.json").write_text(json.dumps({
        "model_type": "bert",
        "custom_pipelines": {"pair-classification": {
            "impl": "pair_pipeline.PairClassificationPipeline",
            "pt": ["AutoModelForSequenceClassification"], "tf": [], "type": "text"}},
    }))  # fmt: skip
    (root / "pair_pipeline.py").write_text("from transformers import Pipeline\n")
    status, findings = _gate(root)
    assert status == Status.FAIL
    remote = [f for f in findings if f["rule_id"] == "SEC-AUTOMAP-001"]
    assert len(remote) == 1 and "custom_pipelines pair-classification" in str(remote[0]["message"])
    assert remote[0]["evidence"]["task"] == "pair-classification"  # type: ignore[index]
    assert not [f for f in findings if f["rule_id"] == "SEC-CODE-003"]
