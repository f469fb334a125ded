"""Chat templates (Jinja2), judged from their syntax tree; never rendered.

A chat template is code: the serving stack renders it on every request. Rendered by a plain
`jinja2.Environment` (llama-cpp-python before CVE-2024-34359, and others since), `{{
''.__class__.__mro__[1].__subclasses__() }}` reaches the interpreter. So the template is
parsed with Jinja2's own parser and the tree judged, and nothing in it is ever evaluated:

- SEC-TEMPLATE-001 (CRITICAL): an attribute or item whose name starts with `_`, however the
  name is spelled (a literal, hex escapes, `~` concatenation, `join`, `format`, `%`: names
  built from literals are folded here, as Jinja would), and the globals that lead to Python
  objects (`cycler`, `joiner`, `lipsum`, `self`, `config`, `request`, ...).
- SEC-TEMPLATE-002 (HIGH): an attribute or item name computed at render time from something
  that is not a literal (`x|attr(name)`, `x[a ~ b]`): what it will be cannot be checked.
- SEC-TEMPLATE-003 (HIGH): a call outside the small vocabulary chat templates use
  (`raise_exception`, `strftime_now`, `range`, `namespace`, the template's own macros, and
  string, list and dict methods such as `strip`, `split`, `items`, `get`), or template
  loading (`include`, `import`, `extends`), which no chat template needs.
- SEC-TEMPLATE-004 (HIGH): a template Jinja cannot parse is not known to be safe.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, nodes
from jinja2.exceptions import TemplateSyntaxError

from gates.base import Finding
from gates.security import rules
from gates.security.common import Location

MAX_TEMPLATE_CHARS = 1_000_000
MAX_FINDINGS = 50

# Globals of Jinja (and of Flask-style environments) whose attributes lead to Python objects.
DANGEROUS_GLOBALS = frozenset(
    {"cycler", "joiner", "lipsum", "self", "config", "request", "session", "g",
     "url_for", "get_flashed_messages", "__builtins__", "__import__", "os", "sys"}
)  # fmt: skip
CALLABLE_GLOBALS = frozenset({"raise_exception", "strftime_now", "range", "namespace", "dict"})
METHODS = frozenset(
    {"strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith",
     "upper", "lower", "title", "capitalize", "replace", "join", "find", "rfind", "count",
     "index", "isspace", "isdigit", "isalpha", "isalnum", "items", "keys", "values", "get",
     "append", "extend", "update", "pop", "copy", "cycle", "format"}
)  # fmt: skip
# filters and tests whose arguments name an attribute to read
ATTRIBUTE_ARGS = frozenset({"attr", "map", "selectattr", "rejectattr", "sort", "groupby",
                            "sum", "unique", "min", "max", "dictsort"})  # fmt: skip
_FORMAT_FIELD_ACCESS = re.compile(r"\{[^{}]*[.\[][^{}]*\}")


@dataclass(frozen=True)
class TemplateSource:
    label: str  # e.g. "chat_template", "chat_template[tool_use]", "tokenizer.chat_template"
    text: str


def templates_in_tokenizer_config(document: Any) -> list[TemplateSource]:
    """`chat_template` of a tokenizer_config.json: one string, or a list of named ones."""
    if not isinstance(document, dict):
        return []
    value = document.get("chat_template")
    if isinstance(value, str):
        return [TemplateSource("chat_template", value)]
    found = []
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict) and isinstance(item.get("template"), str):
                name = str(item.get("name", i))[:64]
                found.append(TemplateSource(f"chat_template[{name}]", item["template"]))
    elif isinstance(value, dict):  # some tools write {name: template}
        for name, text in value.items():
            if isinstance(text, str):
                found.append(TemplateSource(f"chat_template[{str(name)[:64]}]", text))
    return found


def tokenizer_config_templates(data: bytes) -> list[TemplateSource] | None:
    """The templates of a tokenizer_config.json's bytes; None when it is not JSON."""
    try:
        return templates_in_tokenizer_config(json.loads(data))
    except (ValueError, RecursionError):
        return None


def judge_template(source: TemplateSource, where: Location) -> list[Finding]:
    if len(source.text) > MAX_TEMPLATE_CHARS:
        return [
            rules.TEMPLATE_UNPARSEABLE.finding(
                f"{source.label}: {len(source.text)} characters, over the "
                f"{MAX_TEMPLATE_CHARS}-character limit; not judged",
                where,
                {"template": source.label},
            )
        ]
    try:
        tree = Environment().parse(source.text)
    except (TemplateSyntaxError, RecursionError) as exc:
        return [
            rules.TEMPLATE_UNPARSEABLE.finding(
                f"{source.label} does not parse as Jinja2: {str(exc)[:200]}",
                where,
                {"template": source.label, "line": getattr(exc, "lineno", None)},
            )
        ]
    judge = _Judge(source.label, where, tree)
    return judge.run()


class _Judge:
    def __init__(self, label: str, where: Location, tree: nodes.Template) -> None:
        self.label, self.where, self.tree = label, where, tree
        self.findings: list[Finding] = []
        self.seen: set[tuple[str, str]] = set()
        self.macros = {m.name for m in tree.find_all(nodes.Macro)}
        self.assigned: dict[str, nodes.Node] = {}
        for assign in tree.find_all(nodes.Assign):
            if isinstance(assign.target, nodes.Name):
                self.assigned[assign.target.name] = assign.node

    def run(self) -> list[Finding]:
        for node in self.tree.find_all(nodes.Node):
            self._judge(node)
            if len(self.findings) >= MAX_FINDINGS:
                break
        return self.findings

    def _add(self, rule: rules.Rule, node: nodes.Node, what: str) -> None:
        line = getattr(node, "lineno", None)
        key = (rule.id, f"{what}@{line}")
        if key in self.seen:
            return
        self.seen.add(key)
        self.findings.append(
            rule.finding(
                f"{self.label} line {line}: {what}",
                self.where,
                {"template": self.label, "line": line, "construct": what[:200]},
            )
        )

    def _judge(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Getattr):
            self._name_use(node, node.attr, f"attribute .{node.attr}")
        elif isinstance(node, nodes.Getitem):
            self._item(node)
        elif isinstance(node, nodes.Name) and node.ctx == "load":
            if node.name in DANGEROUS_GLOBALS:
                self._add(rules.TEMPLATE_INTERNALS, node,
                          f"`{node.name}`, a global that leads to Python objects")  # fmt: skip
        elif isinstance(node, nodes.Filter | nodes.Test):
            self._attribute_args(node)
        elif isinstance(node, nodes.Call):
            self._call(node)
        elif isinstance(node, nodes.Include | nodes.Import | nodes.FromImport | nodes.Extends):
            self._add(rules.TEMPLATE_CALL, node,
                      f"`{type(node).__name__.lower()}` loads another template")  # fmt: skip
        elif isinstance(node, nodes.Const) and isinstance(node.value, str):
            if re.search(r"__\w+__", node.value):
                self._add(rules.TEMPLATE_INTERNALS, node,
                          f"a string naming a dunder ({node.value[:40]!r})")  # fmt: skip

    def _name_use(self, node: nodes.Node, name: str, what: str) -> None:
        if name.startswith("_"):
            self._add(rules.TEMPLATE_INTERNALS, node, f"{what} (an underscore name)")

    def _item(self, node: nodes.Getitem) -> None:
        arg = node.arg
        if isinstance(arg, nodes.Const):
            if isinstance(arg.value, str):
                self._name_use(node, arg.value, f"item [{arg.value[:40]!r}]")
            return
        if isinstance(arg, nodes.Slice):
            return
        folded = self._fold(arg)
        if folded is not None:
            self._name_use(node, folded, f"item [{folded[:40]!r}] built from literals")
        elif self._builds_string(arg):
            self._add(rules.TEMPLATE_COMPUTED_NAME, node,
                      "an item name built at render time")  # fmt: skip

    def _attribute_args(self, node: nodes.Filter | nodes.Test) -> None:
        name = node.name
        candidates: list[nodes.Expr] = []
        if name in ATTRIBUTE_ARGS:
            candidates += [kw.value for kw in node.kwargs if kw.key == "attribute"]
            if name in ("attr", "selectattr", "rejectattr") and node.args:
                candidates.append(node.args[0])
            if name == "map" and node.args:
                candidates.append(node.args[0])
        for arg in candidates:
            if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                self._name_use(node, arg.value, f"|{name}({arg.value[:40]!r})")
                continue
            folded = self._fold(arg)
            if folded is not None:
                self._name_use(node, folded, f"|{name}({folded[:40]!r}) built from literals")
            elif name == "attr" or self._builds_string(arg):
                self._add(rules.TEMPLATE_COMPUTED_NAME, node,
                          f"|{name} with a name computed at render time")  # fmt: skip

    def _call(self, node: nodes.Call) -> None:
        callee = node.node
        if isinstance(callee, nodes.Name):
            if callee.name not in CALLABLE_GLOBALS and callee.name not in self.macros:
                self._add(rules.TEMPLATE_CALL, node, f"a call of `{callee.name}`")
            return
        if isinstance(callee, nodes.Getattr):
            method = callee.attr
            if method not in METHODS:
                self._add(rules.TEMPLATE_CALL, node, f"a call of method `.{method}()`")
            elif method == "format":
                self._format_call(node, callee)
            return
        self._add(rules.TEMPLATE_CALL, node, "a call of a computed value")

    def _format_call(self, node: nodes.Call, callee: nodes.Getattr) -> None:
        """str.format reads attributes from its format string: '{0.__class__}'."""
        receiver = callee.node
        if not isinstance(receiver, nodes.Const) or not isinstance(receiver.value, str):
            self._add(rules.TEMPLATE_CALL, node, "`.format()` of a string built at render time")
        elif _FORMAT_FIELD_ACCESS.search(receiver.value):
            self._add(rules.TEMPLATE_INTERNALS, node,
                      "`.format()` with attribute or item access in its fields")  # fmt: skip

    # -- names built from literals ----------------------------------------------------------

    def _fold(self, expr: nodes.Node, depth: int = 0) -> str | None:
        """The string `expr` evaluates to when it is made of literals only, else None."""
        if depth > 20:
            return None
        if isinstance(expr, nodes.Const):
            return expr.value if isinstance(expr.value, str) else None
        if isinstance(expr, nodes.Name) and expr.name in self.assigned:
            return self._fold(self.assigned[expr.name], depth + 1)
        if isinstance(expr, nodes.Concat):
            parts = [self._fold(n, depth + 1) for n in expr.nodes]
            return "".join(p for p in parts if p is not None) if None not in parts else None
        if isinstance(expr, nodes.Add):
            left, right = self._fold(expr.left, depth + 1), self._fold(expr.right, depth + 1)
            return left + right if left is not None and right is not None else None
        if isinstance(expr, nodes.Filter) and expr.node is not None:
            return self._fold_filter(expr, depth)
        if isinstance(expr, nodes.Mod):
            return self._fold_percent(expr.left, [expr.right], depth)
        if isinstance(expr, nodes.Call) and isinstance(expr.node, nodes.Getattr):
            if expr.node.attr == "format":
                return self._fold_format(expr.node.node, expr.args, depth)
        return None

    def _fold_filter(self, expr: nodes.Filter, depth: int) -> str | None:
        assert expr.node is not None
        if expr.name == "join" and isinstance(expr.node, nodes.List | nodes.Tuple):
            parts = [self._fold(n, depth + 1) for n in expr.node.items]
            sep = self._fold(expr.args[0], depth + 1) if expr.args else ""
            if None in parts or sep is None:
                return None
            return sep.join(p for p in parts if p is not None)
        inner = self._fold(expr.node, depth + 1)
        if inner is None:
            return None
        if expr.name in ("lower", "upper", "trim", "string", "e", "escape", "safe"):
            return {"lower": inner.lower(), "upper": inner.upper(), "trim": inner.strip()}.get(
                expr.name, inner
            )
        if expr.name == "replace" and len(expr.args) >= 2:
            old, new = (self._fold(a, depth + 1) for a in expr.args[:2])
            return inner.replace(old, new) if old is not None and new is not None else None
        if expr.name == "reverse":
            return inner[::-1]
        if expr.name == "format":
            return self._fold_percent(expr.node, list(expr.args), depth)
        return None

    def _fold_percent(self, fmt: nodes.Node, args: Sequence[nodes.Node], depth: int) -> str | None:
        template = self._fold(fmt, depth + 1)
        values = _literal_values(args)
        if template is None or values is None:
            return None
        try:
            return template % tuple(values)
        except (TypeError, ValueError, OverflowError):
            return None

    def _fold_format(self, fmt: nodes.Node, args: Sequence[nodes.Node], depth: int) -> str | None:
        template = self._fold(fmt, depth + 1)
        values = _literal_values(args)
        if template is None or values is None or _FORMAT_FIELD_ACCESS.search(template):
            return None  # a field with . or [ is judged on its own; never evaluated here
        try:
            return template.format(*values)
        except (IndexError, KeyError, ValueError, TypeError, OverflowError):
            return None

    def _builds_string(self, expr: nodes.Node) -> bool:
        """`a ~ b`, `a + 'x'`, `x|join`, `'%s'|format(x)`, `'{}'.format(x)`, or a variable
        set to one of those: a name spelled at render time."""
        if isinstance(expr, nodes.Name) and expr.name in self.assigned:
            return self._builds_string(self.assigned[expr.name])
        if isinstance(expr, nodes.Concat | nodes.Mod):
            return True
        if isinstance(expr, nodes.Add):
            return any(isinstance(n, nodes.Const) and isinstance(n.value, str)
                       for n in (expr.left, expr.right))  # fmt: skip
        if isinstance(expr, nodes.Filter):
            return expr.name in ("join", "format", "replace", "string", "lower", "upper",
                                 "reverse", "trim")  # fmt: skip
        if isinstance(expr, nodes.Call) and isinstance(expr.node, nodes.Getattr):
            return expr.node.attr in ("format", "join", "replace")
        return False


def _literal_values(args: Sequence[nodes.Node]) -> list[Any] | None:
    values: list[Any] = []
    for arg in args:
        if isinstance(arg, nodes.Const) and isinstance(arg.value, str | int | float):
            values.append(arg.value)
        elif isinstance(arg, nodes.Tuple | nodes.List):
            inner = _literal_values(list(arg.items))
            if inner is None:
                return None
            values.extend(inner)
        else:
            return None
    return values


def iter_template_findings(templates: list[TemplateSource], where: Location) -> Iterator[Finding]:
    for template in templates:
        yield from judge_template(template, where)
