"""Chat templates (Jinja2), found by content and judged from their syntax tree; never rendered.

A chat template is code: the serving stack renders it on every request. Rendered by a plain
`jinja2.Environment` (llama-cpp-python before CVE-2024-34359, and others since), `{{
''.__class__.__mro__[1].__subclasses__() }}` reaches the interpreter. So the template is
parsed with Jinja2's own parser (with the `loopcontrols` extension and the `{% generation %}`
tag transformers renders with) and the tree judged (`template_judge.py`), and nothing in it
is ever evaluated:

- SEC-TEMPLATE-001 (CRITICAL): an attribute or item whose name starts with `_` (or that
  Jinja's own sandbox refuses: `gi_frame`, `f_globals`, `mro`, ...), however the name is
  spelled (a literal, hex escapes, `~` concatenation, `join`, `format`, `%`, a
  `{% set x %}...{% endset %}` block, a variable set to any of those, in template order:
  names built from literals are folded here, as Jinja would), an attribute-naming filter
  argument with such a part (`map(attribute='role.__class__')`), a string or template text
  naming a dunder, and the globals that lead to Python objects (`cycler`, `joiner`, `lipsum`,
  `self`, `config`, `request`, ...).
- SEC-TEMPLATE-002 (HIGH): an item key or attribute-naming filter argument that is neither a
  literal the judge can fold nor provably a number (`x|attr(name)`, `x[a ~ b]`,
  `x[message.key]`): what it will read cannot be checked. A lookup in a dict literal the
  template defines itself is allowed (template_judge.py says why).
- SEC-TEMPLATE-003 (HIGH): a call outside the small vocabulary chat templates use
  (`raise_exception`, `strftime_now`, `range`, `namespace`, the template's own macros, and
  string, list and dict methods such as `strip`, `split`, `items`, `get`), a call of one of
  those names after the template re-binds it (`{% set macro_name = ... %}`), or template
  loading (`include`, `import`, `extends`), which no chat template needs.
- SEC-TEMPLATE-004 (HIGH): a template Jinja cannot parse, over `MAX_TEMPLATE_CHARS`, too
  complex for the judge's bounds, or in a file too large or too deeply nested to read, is not
  known to be safe. A `.template` / `.tmpl` file that is not Jinja at all (another engine's
  syntax) is reported MEDIUM: no Jinja renderer can run it.

Where templates are found (by content, not only by file name):

- every JSON document with a key containing `chat_template`, at any depth (transformers'
  `tokenizer_config.json`, `chat_template.json`, `processor_config.json`, or any other file):
  a string, a list of named templates `[{"name": ..., "template": ...}]`, or a map of name
  to template. Keys are read as the parser builds each object, so duplicate keys and escaped
  spellings (`"chat\\u005ftemplate"`) are all seen. Files over `MAX_JSON_BYTES` are not
  parsed (SEC-TEMPLATE-004 when they mention `chat_template`). A file that is not JSON is
  only text (searched for secrets, as every text is);
- YAML files (`*.yaml`, `*.yml`) with such a key (serving and fine-tuning configs);
- `*.jinja`, `*.jinja2`, `*.j2` files whatever their bytes (a NUL byte does not stop a
  renderer), and `*.template` / `*.tmpl` text files holding `{{` or `{%`;
- GGUF metadata (`formats/gguf.py`).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from jinja2 import Environment, nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser

from gates.base import Finding, Severity
from gates.security import rules
from gates.security.common import Location
from gates.security.format_scanner import TEMPLATE_SUFFIXES
from gates.security.formats.template_judge import TemplateJudge
from gates.security.formats.template_values import TooComplex

MAX_TEMPLATE_CHARS = 1_000_000
MAX_TEMPLATES_PER_FILE = 256
MAX_JSON_BYTES = 64 * 1024**2
MAX_YAML_BYTES = 4 * 1024**2
MAX_YAML_NODES = 200_000
TEMPLATE_KEY = "chat_template"
JINJA_SUFFIXES = TEMPLATE_SUFFIXES
MAYBE_JINJA_SUFFIXES = (".template", ".tmpl")
YAML_SUFFIXES = (".yaml", ".yml")
_JSON_START = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*[\[{]")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class TemplateSource:
    label: str  # e.g. "chat_template", "chat_template[tool_use]", "tokenizer.chat_template"
    text: str
    # False for a `.template` file, which may be another engine's syntax: judged if it parses
    declared_jinja: bool = True


@dataclass
class CarriedTemplates:
    """The templates a file carries, and why some of it could not be read (SEC-TEMPLATE-004)."""

    templates: list[TemplateSource] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)


def may_carry_templates(name: str, data: bytes) -> bool:
    """Cheap test on a text file's name and bytes: could it hold a chat template?"""
    lower = name.lower()
    if lower.endswith(JINJA_SUFFIXES):
        return True
    if lower.endswith(MAYBE_JINJA_SUFFIXES):
        return b"{{" in data or b"{%" in data
    mentions = TEMPLATE_KEY.encode() in data
    if lower.endswith(YAML_SUFFIXES):
        return mentions or b"\\" in data  # YAML escapes can spell the key too
    # an escaped key ("chat\u005ftemplate") has no "chat_template" in its bytes
    return bool(_JSON_START.match(data)) and (mentions or b"\\u" in data)


def carried_templates(name: str, data: bytes) -> CarriedTemplates | None:
    """The templates in a text file; None when it holds none (not JSON, or no such key)."""
    lower = name.lower()
    if lower.endswith(JINJA_SUFFIXES + MAYBE_JINJA_SUFFIXES):
        text = data.decode("utf-8", errors="replace")
        declared = lower.endswith(JINJA_SUFFIXES)
        return CarriedTemplates([TemplateSource(name, text, declared_jinja=declared)])
    if lower.endswith(YAML_SUFFIXES):
        return _yaml_templates(data)
    return _json_templates(data)


def templates_in_value(label: str, value: Any, depth: int = 0) -> Iterator[TemplateSource]:
    """The templates under a `chat_template` key: one string, a list of named ones
    (`[{"name": ..., "template": ...}]`), or a map of name to template."""
    if isinstance(value, str):
        yield TemplateSource(label, value)
    elif depth >= 2:
        return
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict) and "template" in item:
                name = str(item.get("name", i))[:64]
                yield from templates_in_value(f"{label}[{name}]", item["template"], depth + 1)
            else:
                yield from templates_in_value(f"{label}[{i}]", item, depth + 1)
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from templates_in_value(f"{label}[{str(name)[:64]}]", item, depth + 1)


def _json_templates(data: bytes) -> CarriedTemplates | None:
    mentions = TEMPLATE_KEY.encode() in data
    if len(data) > MAX_JSON_BYTES:
        if not mentions:
            return None
        why = f"{len(data)} bytes, over the {MAX_JSON_BYTES}-byte limit for reading JSON"
        return CarriedTemplates(unread=[why])
    carried = CarriedTemplates()

    def keys_of(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        for key, value in pairs:  # every pair, duplicates included
            if TEMPLATE_KEY in key:
                carried.templates.extend(templates_in_value(key[:64], value))
        return dict(pairs)

    try:
        json.loads(data, object_pairs_hook=keys_of)
    except RecursionError:
        if not mentions:
            return None
        return CarriedTemplates(unread=["JSON nested too deeply to read"])
    except ValueError:  # not JSON (or not UTF-8): a text file like any other
        return None
    return carried if carried.templates else None


def _yaml_templates(data: bytes) -> CarriedTemplates | None:
    if len(data) > MAX_YAML_BYTES:
        if TEMPLATE_KEY.encode() not in data:
            return None
        return CarriedTemplates(unread=[f"{len(data)} bytes, over the YAML reading limit"])
    try:
        document = yaml.load(data, Loader=_YAML_LOADER)  # a safe loader: no Python objects
    except (yaml.YAMLError, RecursionError, ValueError):
        return None
    carried = CarriedTemplates()
    stack, seen = [document], set()
    while stack:  # aliases share objects: each visited once, so an alias bomb stays small
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if len(seen) > MAX_YAML_NODES:
            carried.unread.append(f"more than {MAX_YAML_NODES} YAML nodes")
            break
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and TEMPLATE_KEY in key:
                    carried.templates.extend(templates_in_value(key[:64], value))
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return carried if carried.templates or carried.unread else None


def judge_carried(carried: CarriedTemplates, where: Location) -> Iterator[Finding]:
    for why in carried.unread:
        yield rules.TEMPLATE_UNPARSEABLE.finding(
            f"chat templates in this file could not be read: {why}", where, {"reason": why}
        )
    for template in carried.templates[:MAX_TEMPLATES_PER_FILE]:
        yield from judge_template(template, where)
    if len(carried.templates) > MAX_TEMPLATES_PER_FILE:
        skipped = len(carried.templates) - MAX_TEMPLATES_PER_FILE
        yield rules.TEMPLATE_UNPARSEABLE.finding(
            f"{len(carried.templates)} chat templates in one file; the last {skipped} were not "
            f"judged (limit {MAX_TEMPLATES_PER_FILE})",
            where,
            {"templates": len(carried.templates)},
        )


def judge_template(source: TemplateSource, where: Location) -> list[Finding]:
    evidence = {"template": source.label}
    if len(source.text) > MAX_TEMPLATE_CHARS:
        return [
            rules.TEMPLATE_UNPARSEABLE.finding(
                f"{source.label}: {len(source.text)} characters, over the "
                f"{MAX_TEMPLATE_CHARS}-character limit; not judged",
                where,
                evidence,
            )
        ]
    try:
        tree = _environment().parse(source.text)
    except (TemplateSyntaxError, RecursionError) as exc:
        line = getattr(exc, "lineno", None)
        if not source.declared_jinja:
            return [
                rules.TEMPLATE_UNPARSEABLE.finding(
                    f"{source.label} is not Jinja2 (another template engine's syntax?), so no "
                    f"Jinja renderer runs it; not judged: {str(exc)[:200]}",
                    where,
                    {**evidence, "line": line},
                    severity=Severity.MEDIUM,
                )
            ]
        return [
            rules.TEMPLATE_UNPARSEABLE.finding(
                f"{source.label} does not parse as Jinja2: {str(exc)[:200]}",
                where,
                {**evidence, "line": line},
            )
        ]
    judge = TemplateJudge(source.label, where, tree)
    try:
        return judge.run()
    except (TooComplex, RecursionError) as exc:
        why = str(exc) if isinstance(exc, TooComplex) else "nested deeper than the judge reads"
        return [
            *judge.findings,
            rules.TEMPLATE_UNPARSEABLE.finding(
                f"{source.label} is too complex to judge ({why}); not known to be safe",
                where,
                evidence,
            ),
        ]


def iter_template_findings(templates: list[TemplateSource], where: Location) -> Iterator[Finding]:
    for template in templates:
        yield from judge_template(template, where)


class _GenerationTag(Extension):
    """transformers' `{% generation %}...{% endgeneration %}` (it marks the assistant's
    tokens); parsed as a plain scope, so its body is judged like the rest."""

    tags = {"generation"}  # noqa: RUF012 (jinja2's Extension declares it a plain set)

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


@functools.cache
def _environment() -> Environment:
    """Parses only: the syntax transformers renders chat templates with."""
    return Environment(extensions=[loopcontrols, _GenerationTag])
