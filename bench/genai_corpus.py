"""GenAI artifacts through `gatekeeper scan`, modelscan and picklescan, in one run.

The corpora of tests/corpus/chat_templates: every malicious template (39: direct, obfuscated,
set-then-use, dangerous globals, calls, includes, and the set-block / assign-twice /
re-bound-macro bypasses of issue 20 and their kin) as a model directory's
`tokenizer_config.json`, as a `chat_template.json` (what transformers processors load) and
inside a GGUF file's metadata;
every benign family template (Llama 2/3/3.1 tools, Mistral, Mixtral, Qwen 2/2.5 tools, Gemma,
Phi-3, ChatML, Zephyr, DeepSeek, Command-R and its tool template, Falcon) the same three ways;
three malformed GGUF headers (truncated, 2^40 keys claimed, a 2^50-byte string claimed); and
promptfoo/modelaudit's own chat-template samples, each file scanned where it lies
(tests/corpus/modelaudit_templates.py: 25 malicious, 13 benign, 5 edge cases; skipped when
the folder is absent). Each sample is a directory or file; each tool is run on it as a CI
step would (exit codes read as in bench/scan_corpus.py).

    .venv/bin/python -m bench.genai_corpus
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from bench.scan_corpus import make_tools, run_one
from tests.corpus import modelaudit_templates
from tests.corpus.gguf_files import gguf_bytes, huge_string_gguf, oversized_gguf

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "corpus" / "chat_templates"


def _samples(root: Path) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {}
    for kind in ("malicious", "benign"):
        for template in sorted((CORPUS / kind).glob("*.jinja")):
            text = template.read_text()
            config_dir = root / kind / "tokenizer_config" / template.stem
            config_dir.mkdir(parents=True)
            document = {"bos_token": "<s>", "eos_token": "</s>", "chat_template": text}
            (config_dir / "tokenizer_config.json").write_text(json.dumps(document))
            groups.setdefault(f"{kind} templates in tokenizer_config.json", []).append(config_dir)
            processor_dir = root / kind / "chat_template_json" / template.stem
            processor_dir.mkdir(parents=True)
            (processor_dir / "chat_template.json").write_text(json.dumps({"chat_template": text}))
            groups.setdefault(f"{kind} templates in chat_template.json", []).append(processor_dir)
            gguf_dir = root / kind / "gguf" / template.stem
            gguf_dir.mkdir(parents=True)
            (gguf_dir / "model.gguf").write_bytes(gguf_bytes(text))
            groups.setdefault(f"{kind} templates in GGUF metadata", []).append(gguf_dir)
    for name, data in (
        ("truncated", gguf_bytes("{{ messages }}")[:40]),
        ("oversized-count", oversized_gguf()),
        ("oversized-string", huge_string_gguf()),
    ):
        folder = root / "malformed" / name
        folder.mkdir(parents=True)
        (folder / "model.gguf").write_bytes(data)
        groups.setdefault("malformed GGUF headers", []).append(folder)
    for sample in modelaudit_templates.samples():  # scanned in place, never copied
        groups.setdefault(f"modelaudit jinja2 samples: {sample.group}", []).append(sample.path)
    return groups


def main() -> None:
    tools = [t for t in make_tools() if t.available]
    with tempfile.TemporaryDirectory(prefix="bench-genai-") as tmp:
        root = Path(tmp)
        cwd = root / "cwd"
        cwd.mkdir()
        groups = _samples(root / "corpus")
        header = " | ".join(f"{t.name} flagged" for t in tools)
        names = ", ".join(t.name for t in tools)
        print(f"| samples | count | {header} | median s per sample ({names}) |")
        print("|---|---|" + "---|" * len(tools) + "---|")
        for label, paths in groups.items():
            flagged, times = [], []
            for tool in tools:
                outcomes = [run_one(tool, p, cwd) for p in paths]
                flagged.append(sum(o.detected for o in outcomes))
                times.append(statistics.median(o.seconds for o in outcomes))
            cells = " | ".join(f"{n}/{len(paths)}" for n in flagged)
            print(f"| {label} | {len(paths)} | {cells} | {', '.join(f'{t:.2f}' for t in times)} |")


if __name__ == "__main__":
    main()
