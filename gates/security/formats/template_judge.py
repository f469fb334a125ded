"""The chat-template judge: Jinja2's syntax tree read in template order, never rendered.

Two passes over one parsed template (the rules are in `chat_template.py`'s docstring):

1. Every node, on its own: attributes and literal strings (and template text: the body of a
   `{% set x %}...{% endset %}` is text) naming underscores or dunders, attributes Jinja's
   own sandbox refuses (`gi_frame`, `f_globals`, `mro`, ...: `INTERNAL_ATTRIBUTES`), the
   globals that lead to Python objects, template loading, and calls. A call is allowed to
   the small vocabulary and to the template's macros only when the template never binds
   that name otherwise (`set`, `for`, `with`, a macro or call-block argument, an import): a
   re-bound name may hold any callable.
2. The statements in the order Jinja runs them, tracking what each variable can hold
   (`template_values.py`), to judge each item lookup (`x[key]`), each attribute-naming filter
   argument (`|attr`, `map`, `selectattr`, `sort`, `groupby`, `sum`, `join`, ...) and each
   string built from pieces where it is used. A name used before it is re-bound keeps the
   value it had there. Scopes are handled so that the judge never under-counts: after an
   `if`, a name can hold what any branch (or no branch) left in it; a `for` body is judged
   until what it assigns stops changing (then what it assigns is UNKNOWN), and what it sets
   is assumed to survive the loop too; macro, call-block and block bodies are judged with
   every outer name UNKNOWN, since they run wherever they are called.

An item key is fine when it is a known string not starting with `_`, or provably not a
string (Jinja's `getitem` falls back to `getattr` only for string keys): `messages[0]`,
`messages[loop.index0 - 1]`, `message['role']`. `loop.index0` counts as a number only inside
a `for` body and only when the template never binds `loop` itself (`{% with loop = {...} %}`
would make it anything). Any other key is SEC-TEMPLATE-002, except in
a dict the template itself wrote (`{'string': 'str'}[json_spec.type]`, as Command-R's tool
template does): a missed key there falls back to an attribute of that dict, one step that
leads nowhere without a call or a further computed name, each judged on its own.

Any node the ordered pass did not reach (a statement kind it does not know) is judged with
nothing known about any variable. Work is bounded (`STEPS_BASE` in template_values.py); past
it the template is SEC-TEMPLATE-004, not judged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from jinja2 import nodes

from gates.base import Finding
from gates.security import rules
from gates.security.common import Location
from gates.security.formats.template_values import (
    FORMAT_FIELD_ACCESS,
    NOT_STRING,
    UNKNOWN,
    Evaluator,
    Kind,
    Scope,
    Value,
    Values,
    bounded,
    combine,
    covers,
    texts,
)

MAX_FINDINGS = 50
MAX_LOOP_PASSES = 3
DUNDER = re.compile(r"__\w+__")

# Globals of Jinja (and of Flask-style environments) whose attributes lead to Python objects.
DANGEROUS_GLOBALS = frozenset(
    {"cycler", "joiner", "lipsum", "self", "config", "request", "session", "g",
     "url_for", "get_flashed_messages", "__builtins__", "__import__", "os", "sys"}
)  # fmt: skip
CALLABLE_GLOBALS = frozenset({"raise_exception", "strftime_now", "range", "namespace", "dict"})
# Attributes without a leading underscore that lead to interpreter internals: what Jinja's own
# sandbox refuses (generator, coroutine and async-generator frames and code, `type.mro`), and
# the frame, code and traceback attributes those lead to.
INTERNAL_ATTRIBUTES = frozenset(
    {"gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame",
     "ag_code", "ag_await", "f_globals", "f_builtins", "f_locals", "f_back", "f_code",
     "tb_frame", "tb_next", "co_code", "func_globals", "func_code", "im_func", "im_self", "mro"}
)  # fmt: skip
METHODS = frozenset(
    {"strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith",
     "upper", "lower", "title", "capitalize", "replace", "join", "find", "rfind", "count",
     "index", "isspace", "isdigit", "isalpha", "isalnum", "items", "keys", "values", "get",
     "append", "extend", "update", "pop", "copy", "cycle", "format"}
)  # fmt: skip
# Filters that read attributes named by an argument: (position of that argument, its keyword).
# Jinja splits these names on '.' (and `sort` also on ','), looking each part up in turn.
ATTRIBUTE_ARGUMENT = {
    "attr": (0, "name"), "selectattr": (0, None), "rejectattr": (0, None),
    "groupby": (0, "attribute"), "sum": (0, "attribute"), "unique": (1, "attribute"),
    "min": (1, "attribute"), "max": (1, "attribute"), "join": (1, "attribute"),
    "sort": (2, "attribute"),
}  # fmt: skip
_ATTRIBUTE_PARTS = re.compile(r"[.,]")
_STRING_BUILDERS = (nodes.Concat, nodes.Add, nodes.Mod, nodes.Filter, nodes.Call)
_LOOKUPS = (*_STRING_BUILDERS, nodes.Getitem)
# Scoped statements whose body runs where it stands, with the outer variables visible.
_INLINE_SCOPES = (nodes.Scope, nodes.OverlayScope, nodes.ScopedEvalContextModifier)


class TemplateJudge:
    def __init__(self, label: str, where: Location, tree: nodes.Template) -> None:
        self.label, self.where, self.tree = label, where, tree
        self.findings: list[Finding] = []
        self.seen: set[tuple[str, str]] = set()
        self.nodes = list(_walk(tree))
        self.macros = frozenset(n.name for n in self.nodes if isinstance(n, nodes.Macro))
        bound = _bound_names(self.nodes)
        self.values = Evaluator((self.macros | CALLABLE_GLOBALS) - bound, len(self.nodes))
        # `{% with loop = ... %}` inside a loop re-binds `loop`: then it is not the loop object
        self.loop_is_the_loop = "loop" not in bound
        self.visited: set[int] = set()

    def run(self) -> list[Finding]:
        """The findings; raises TooComplex past the work bound (RecursionError on a tree
        nested deeper than Python's stack), which the caller turns into SEC-TEMPLATE-004."""
        for node in self.nodes:
            self._judge_node(node)
        self._block(self.tree.body, Scope())
        for node in self.nodes:  # what a statement kind the ordered pass did not know holds
            if isinstance(node, _LOOKUPS) and id(node) not in self.visited:
                self._expression(node, Scope())
        return self.findings

    def _add(self, rule: rules.Rule, node: nodes.Node, what: str) -> None:
        line = getattr(node, "lineno", None)
        key = (rule.id, f"{what}@{line}")
        if key in self.seen or len(self.findings) >= MAX_FINDINGS:
            return
        self.seen.add(key)
        self.findings.append(
            rule.finding(
                f"{self.label} line {line}: {what}",
                self.where,
                {"template": self.label, "line": line, "construct": what[:200]},
            )
        )

    # -- pass 1: each node on its own ---------------------------------------------------------

    def _judge_node(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Getattr):
            self._underscore(node, node.attr, f"attribute .{node.attr}")
        elif isinstance(node, nodes.Name) and node.ctx == "load":
            if node.name in DANGEROUS_GLOBALS:
                self._add(rules.TEMPLATE_INTERNALS, node,
                          f"`{node.name}`, a global that leads to Python objects")  # fmt: skip
        elif isinstance(node, nodes.Call):
            self._call(node)
        elif isinstance(node, nodes.Include | nodes.Import | nodes.FromImport | nodes.Extends):
            self._add(rules.TEMPLATE_CALL, node,
                      f"`{type(node).__name__.lower()}` loads another template")  # fmt: skip
        elif isinstance(node, nodes.Const) and isinstance(node.value, str):
            if DUNDER.search(node.value):
                self._add(rules.TEMPLATE_INTERNALS, node,
                          f"a string naming a dunder ({node.value[:40]!r})")  # fmt: skip
        elif isinstance(node, nodes.TemplateData):
            found = DUNDER.search(node.data)
            if found:
                what = f"template text naming a dunder ({found.group(0)[:40]!r})"
                self._add(rules.TEMPLATE_INTERNALS, node, what)

    def _underscore(self, node: nodes.Node, name: str, what: str) -> None:
        if name.startswith("_"):
            self._add(rules.TEMPLATE_INTERNALS, node, f"{what} (an underscore name)")
        elif name in INTERNAL_ATTRIBUTES:
            self._add(rules.TEMPLATE_INTERNALS, node, f"{what} (an interpreter-internal name)")

    def _call(self, node: nodes.Call) -> None:
        callee = node.node
        if isinstance(callee, nodes.Name):
            name = callee.name
            if name in self.values.callable_names:
                return
            if name in self.macros or name in CALLABLE_GLOBALS:
                what = (
                    f"a call of `{name}`, a name the template re-binds (set, for, with or an "
                    "argument): it may hold any callable, not the macro or global"
                )
                self._add(rules.TEMPLATE_CALL, node, what)
            else:
                self._add(rules.TEMPLATE_CALL, node, f"a call of `{name}`")
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
        elif FORMAT_FIELD_ACCESS.search(receiver.value):
            self._add(rules.TEMPLATE_INTERNALS, node,
                      "`.format()` with attribute or item access in its fields")  # fmt: skip

    # -- pass 2: statements in order ----------------------------------------------------------

    def _block(self, body: Sequence[nodes.Node], scope: Scope) -> None:
        for node in body:
            self._statement(node, scope)

    def _statement(self, node: nodes.Node, scope: Scope) -> None:
        self.values.tick()
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                self._expression(child, scope)
        elif isinstance(node, nodes.Assign):
            self._bind(node.target, self._expression(node.node, scope), scope)
        elif isinstance(node, nodes.AssignBlock):
            self._assign_block(node, scope)
        elif isinstance(node, nodes.For):
            self._for(node, scope)
        elif isinstance(node, nodes.If):
            self._if(node, scope)
        elif isinstance(node, nodes.Macro | nodes.CallBlock):
            if isinstance(node, nodes.CallBlock):
                self._expression(node.call, scope)
            for default in node.defaults:
                self._expression(default, scope)
            self._block(node.body, Scope())  # runs where it is called: outer names unknown
            if isinstance(node, nodes.Macro):
                scope.env[node.name] = UNKNOWN
        elif isinstance(node, nodes.With):
            inner = scope.copy()
            for target, value in zip(node.targets, node.values, strict=False):
                self._bind(target, self._expression(value, scope), inner)
            self._block(node.body, inner)
            scope.merge(inner)
        elif isinstance(node, nodes.FilterBlock):
            inner = scope.copy()
            self._block(node.body, inner)
            self._expression(node.filter, scope)
            scope.merge(inner)
        elif isinstance(node, nodes.Block):
            self._block(node.body, Scope())
        elif isinstance(node, _INLINE_SCOPES):
            inner = scope.copy()
            self._block(node.body, inner)
            scope.merge(inner)
        else:  # Break, Continue, includes, imports, ExprStmt and kinds this pass does not know
            self._generic(node, scope)

    def _generic(self, node: nodes.Node, scope: Scope) -> None:
        for name in _import_names(node):
            scope.env[name] = UNKNOWN
        for child in node.iter_child_nodes():
            if isinstance(child, nodes.Stmt):
                inner = scope.copy()
                self._statement(child, inner)
                scope.merge(inner)
            else:
                self._expression(child, scope)

    def _assign_block(self, node: nodes.AssignBlock, scope: Scope) -> None:
        """`{% set x %}body{% endset %}`: x is the body's text, through the block's filter."""
        inner = scope.copy()
        value: Values
        outputs = [n for n in node.body if isinstance(n, nodes.Output)]
        if len(outputs) == len(node.body):
            pieces = [self._expression(c, inner) for n in outputs for c in n.nodes]
            value = combine(lambda *parts: "".join(parts), pieces) if pieces else _EMPTY
        else:
            self._block(node.body, inner)
            value = UNKNOWN
        if node.filter is not None:
            self._expression(node.filter, scope)
            value = self.values.evaluate(node.filter, scope, {}, block_input=value)
        scope.merge(inner)
        self._dunder_in(node, value, f"a `set {_target_name(node.target)}` block")
        self._bind(node.target, value, scope)

    def _for(self, node: nodes.For, scope: Scope) -> None:
        self._expression(node.iter, scope)
        items = self._items(node.iter, scope)
        head = scope.copy()
        self._bind(node.target, items, head)
        if node.test is not None:
            self._expression(node.test, head)
        entry = head.copy(in_loop=self.loop_is_the_loop)
        passes = []
        for attempt in range(MAX_LOOP_PASSES):
            if attempt == MAX_LOOP_PASSES - 1:  # still changing: what the body assigns is unknown
                body = [n for statement in node.body for n in _walk(statement)]
                entry.env.update(dict.fromkeys(_bound_names(body), UNKNOWN))
            passes.append(entry.copy())
            self._block(node.body, passes[-1])
            if all(covers(entry.lookup(n), v) for n, v in passes[-1].env.items()):
                break
            entry.merge(passes[-1])
        if node.else_:
            otherwise = scope.copy()
            self._block(node.else_, otherwise)
            scope.merge(otherwise)
        scope.merge(*passes)

    def _items(self, iterable: nodes.Node, scope: Scope) -> Values:
        """What a loop variable can hold: the items of a literal list, numbers from `range`."""
        if isinstance(iterable, nodes.List | nodes.Tuple):
            memo: dict[int, Values] = {}
            held = [self.values.evaluate(item, scope, memo) for item in iterable.items]
            return bounded(frozenset().union(*held)) if held else UNKNOWN
        if (
            isinstance(iterable, nodes.Call)
            and isinstance(iterable.node, nodes.Name)
            and iterable.node.name == "range"
            and "range" in self.values.callable_names
        ):
            return NOT_STRING
        return UNKNOWN

    def _if(self, node: nodes.If, scope: Scope) -> None:
        branches = []
        for branch in (node, *node.elif_):
            self._expression(branch.test, scope)
            inner = scope.copy()
            self._block(branch.body, inner)
            branches.append(inner)
        otherwise = scope.copy()
        self._block(node.else_, otherwise)
        scope.env = otherwise.env
        scope.merge(*branches)

    def _bind(self, target: nodes.Node, values: Values, scope: Scope) -> None:
        if isinstance(target, nodes.Name):
            scope.env[target.name] = values
        elif isinstance(target, nodes.Tuple):
            for item in target.items:
                self._bind(item, UNKNOWN, scope)
        # NSRef (`set ns.x = ...`): namespace attributes are always UNKNOWN when read

    # -- expressions --------------------------------------------------------------------------

    def _expression(self, expr: nodes.Node, scope: Scope) -> Values:
        """Judge every lookup in `expr` against `scope`; return `expr`'s possible values."""
        memo: dict[int, Values] = {}
        for node in _walk(expr):
            self.visited.add(id(node))
            if isinstance(node, nodes.Getitem):
                self._item(node, scope, memo)
            if isinstance(node, nodes.Filter):
                self._attribute_names(node, node.name, node.args, node.kwargs, scope, memo)
            if isinstance(node, _STRING_BUILDERS):
                self._dunder_in(node, self.values.evaluate(node, scope, memo), "a string built")
        return self.values.evaluate(expr, scope, memo)

    def _item(self, node: nodes.Getitem, scope: Scope, memo: dict[int, Values]) -> None:
        if isinstance(node.arg, nodes.Slice):
            return
        keys = self.values.evaluate(node.arg, scope, memo)
        built = "" if isinstance(node.arg, nodes.Const) else " built from literals"
        for value in keys:
            if value.kind is Kind.TEXT:
                self._underscore(node, value.string, f"item [{value.string[:40]!r}]{built}")
        if any(v.kind is Kind.UNKNOWN for v in keys):
            receiver = self.values.evaluate(node.node, scope, memo)
            if receiver and all(v.kind is Kind.DICT for v in receiver):
                return  # a dict literal of the template's own: see the module docstring
            what = f"an item name computed at render time ([{_describe(node.arg)}])"
            self._add(rules.TEMPLATE_COMPUTED_NAME, node, what)

    def _attribute_names(
        self,
        node: nodes.Filter,
        name: str,
        args: Sequence[nodes.Expr],
        kwargs: Sequence[nodes.Node],
        scope: Scope,
        memo: dict[int, Values],
        depth: int = 0,
    ) -> None:
        """The attribute names a filter reads; `map('attr', name)` applies `attr` by name."""
        if name == "map" and args and depth < 3:
            filters = self.values.evaluate(args[0], scope, memo)
            named = texts(filters)
            if named is None:
                self._add(rules.TEMPLATE_COMPUTED_NAME, node,
                          "|map with a filter name computed at render time")  # fmt: skip
                return
            for inner in named:
                self._attribute_names(node, inner, args[1:], kwargs, scope, memo, depth + 1)
            return
        if name not in ATTRIBUTE_ARGUMENT and name != "map":
            return
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            self._add(rules.TEMPLATE_COMPUTED_NAME, node,
                      f"|{name} with arguments unpacked at render time")  # fmt: skip
        position, keyword = ATTRIBUTE_ARGUMENT.get(name, (None, "attribute"))
        candidates = [
            kw.value for kw in kwargs if isinstance(kw, nodes.Keyword) and kw.key == keyword
        ]
        if position is not None and len(args) > position:
            candidates.append(args[position])
        for arg in candidates:
            values = self.values.evaluate(arg, scope, memo)
            built = "" if isinstance(arg, nodes.Const) else " built from literals"
            for value in values:
                if value.kind is not Kind.TEXT:
                    continue
                for part in _ATTRIBUTE_PARTS.split(value.string):
                    self._underscore(node, part, f"|{name}({value.string[:40]!r}){built}")
            if any(v.kind is Kind.UNKNOWN for v in values):
                self._add(rules.TEMPLATE_COMPUTED_NAME, node,
                          f"|{name} with an attribute name computed at render time")  # fmt: skip

    def _dunder_in(self, node: nodes.Node, values: Values, what: str) -> None:
        for value in values:
            found = DUNDER.search(value.string) if value.kind is Kind.TEXT else None
            if found:
                construct = f"{what} from literals naming a dunder ({found.group(0)[:40]!r})"
                self._add(rules.TEMPLATE_INTERNALS, node, construct)


_EMPTY: Values = frozenset({Value.text("")})


def _bound_names(tree: Sequence[nodes.Node]) -> frozenset[str]:
    """Every name these nodes bind other than by defining a macro."""
    names: set[str] = set()
    for node in tree:
        if isinstance(node, nodes.Name) and node.ctx in ("store", "param"):
            names.add(node.name)
        names.update(_import_names(node))
    return frozenset(names)


def _import_names(node: nodes.Node) -> list[str]:
    if isinstance(node, nodes.Import):
        return [node.target]
    if isinstance(node, nodes.FromImport):
        return [n[1] if isinstance(n, tuple) else n for n in node.names]
    return []


def _walk(expr: nodes.Node) -> Iterator[nodes.Node]:
    """`expr` and every node under it, without recursion (trees can be deep)."""
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(list(node.iter_child_nodes())))


def _target_name(target: nodes.Node) -> str:
    return target.name if isinstance(target, nodes.Name) else type(target).__name__.lower()


def _describe(expr: nodes.Node, depth: int = 0) -> str:
    """A short spelling of an expression for a message: `ns.key`, `key()`, `a ~ b`."""
    if depth > 3:
        return "..."
    if isinstance(expr, nodes.Name):
        return expr.name
    if isinstance(expr, nodes.Getattr):
        return f"{_describe(expr.node, depth + 1)}.{expr.attr}"
    if isinstance(expr, nodes.Getitem):
        return f"{_describe(expr.node, depth + 1)}[...]"
    if isinstance(expr, nodes.Call):
        return f"{_describe(expr.node, depth + 1)}()"
    if isinstance(expr, nodes.Filter):
        return f"...|{expr.name}"
    if isinstance(expr, nodes.Concat):
        return " ~ ".join(_describe(n, depth + 1) for n in expr.nodes[:3])
    if isinstance(expr, nodes.Const):
        return repr(expr.value)[:40]
    return type(expr).__name__.lower()
