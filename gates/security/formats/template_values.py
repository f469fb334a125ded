"""What a chat-template expression can evaluate to, worked out from the syntax tree alone.

The judge (`template_judge.py`) needs to know, at each item lookup and attribute-naming filter,
which names the template can spell there. This module computes that for an expression, given
what each variable can hold at that point (the judge tracks assignments in template order).
Nothing is rendered: literals are folded as Jinja would (`~`, `+`, `join`, `format`, `%`,
`replace`, `reverse`, case filters, slices of literal strings), everything else is abstracted:

- `Value.text(s)`: a string known exactly;
- `NOT_STRING`: provably not a string (numbers and arithmetic on them, `loop.index0`,
  `|length`, comparisons, booleans, None): Jinja's item lookup falls back to the attribute of
  that name only for strings, so such a key can never reach an attribute;
- `DICT`: a dict the template itself built (`{...}` or `dict(...)`);
- `LOOP`: the `loop` object of the enclosing `for`;
- `UNKNOWN`: anything else (data, macro output, namespace attributes, computed values).

A set of values says "one of these". Sets and strings are bounded (`MAX_VALUES`,
`MAX_TEXT`): past a bound a value becomes `UNKNOWN`, which the judge treats as a name it
cannot check. Format strings with large widths are not evaluated (no '%0999999999d'), and
the work per template is bounded (`STEPS_BASE` + `STEPS_PER_NODE` per node; past it the judge
gives up: SEC-TEMPLATE-004).
"""

from __future__ import annotations

import enum
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from jinja2 import nodes

MAX_VALUES = 32  # distinct values one expression may take before it is UNKNOWN
MAX_TEXT = 4096  # characters of a folded string
# Work per template (evaluations and statements): published templates take under one step per
# syntax-tree node; loops nested to force re-judging take exponentially many and stop here.
STEPS_BASE = 100_000
STEPS_PER_NODE = 10
FORMAT_FIELD_ACCESS = re.compile(r"\{[^{}]*[.\[][^{}]*\}")
_LARGE_NUMBER = re.compile(r"\d{4,}")
LOOP_NUMBERS = frozenset(
    {"index", "index0", "revindex", "revindex0", "length", "depth", "depth0", "first", "last"}
)
NUMBER_FILTERS = frozenset({"length", "count", "wordcount", "int", "float", "abs", "round"})
_CASE_FILTERS: Mapping[str, Callable[[str], str]] = {
    "lower": str.lower,
    "upper": str.upper,
    "trim": str.strip,
    "title": str.title,
    "capitalize": str.capitalize,
    "reverse": lambda s: s[::-1],
}
_SAME_TEXT_FILTERS = frozenset({"string", "e", "escape", "safe", "forceescape"})
_CASE_METHODS: Mapping[str, Callable[[str], str]] = {
    "lower": str.lower,
    "upper": str.upper,
    "strip": str.strip,
    "lstrip": str.lstrip,
    "rstrip": str.rstrip,
    "title": str.title,
    "capitalize": str.capitalize,
}


class TooComplex(Exception):
    """The template needs more evaluation steps than the judge allows: not judged."""


class Kind(enum.Enum):
    TEXT = "text"
    NOT_STRING = "not a string"
    DICT = "dict literal"
    LOOP = "loop"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Value:
    kind: Kind
    string: str = ""

    @classmethod
    def text(cls, string: str) -> Value:
        return cls(Kind.TEXT, string) if len(string) <= MAX_TEXT else cls(Kind.UNKNOWN)


Values = frozenset[Value]
NOT_STRING: Values = frozenset({Value(Kind.NOT_STRING)})
DICT: Values = frozenset({Value(Kind.DICT)})
LOOP: Values = frozenset({Value(Kind.LOOP)})
UNKNOWN: Values = frozenset({Value(Kind.UNKNOWN)})


def texts(values: Values) -> list[str] | None:
    """The strings, when every value is a known string."""
    if values and all(v.kind is Kind.TEXT for v in values):
        return sorted(v.string for v in values)
    return None


def bounded(values: Values) -> Values:
    return UNKNOWN if len(values) > MAX_VALUES else values


def covers(wide: Values, narrow: Values) -> bool:
    """Does `wide` stand for everything `narrow` can be? UNKNOWN stands for anything."""
    return Value(Kind.UNKNOWN) in wide or narrow <= wide


@dataclass
class Scope:
    """What each variable can hold at one point of the template, and whether `loop` is the
    loop object of an enclosing `for` there. A name not in `env` is a context variable (or
    undefined): UNKNOWN."""

    env: dict[str, Values] = field(default_factory=dict)
    in_loop: bool = False

    def copy(self, *, in_loop: bool | None = None) -> Scope:
        return Scope(dict(self.env), self.in_loop if in_loop is None else in_loop)

    def lookup(self, name: str) -> Values:
        if name == "loop" and self.in_loop:
            return LOOP
        return self.env.get(name, UNKNOWN)

    def merge(self, *others: Scope) -> None:
        """After branches of which any may have run: each name can hold what it held in any
        of them (a name one branch leaves unbound is a context variable there: UNKNOWN)."""
        names = set(self.env).union(*(o.env for o in others))
        for name in names:
            held = [s.env.get(name, UNKNOWN) for s in (self, *others)]
            self.env[name] = bounded(frozenset().union(*held))


class Evaluator:
    """Evaluates expressions against a Scope; `callable_names` are the globals and macros the
    template never re-binds (so `dict(...)` and `range(...)` mean the builtins)."""

    def __init__(self, callable_names: frozenset[str], node_count: int) -> None:
        self.callable_names = callable_names
        self.steps = 0
        self.max_steps = STEPS_BASE + STEPS_PER_NODE * node_count

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise TooComplex(f"more than {self.max_steps} evaluation steps")

    def evaluate(
        self,
        expr: nodes.Node,
        scope: Scope,
        memo: dict[int, Values],
        block_input: Values | None = None,
    ) -> Values:
        """`expr`'s possible values; `block_input` is what a filter with no operand (the
        filter of `{% set x | f %}` or `{% filter f %}`) applies to."""
        key = id(expr)
        if key in memo and block_input is None:
            return memo[key]
        self.tick()
        result = bounded(self._evaluate(expr, scope, memo, block_input))
        if block_input is None:
            memo[key] = result
        return result

    def _evaluate(
        self, expr: nodes.Node, scope: Scope, memo: dict[int, Values], block: Values | None
    ) -> Values:
        def ev(node: nodes.Node) -> Values:
            return self.evaluate(node, scope, memo)

        if isinstance(expr, nodes.Const):
            if isinstance(expr.value, str):
                return frozenset({Value.text(expr.value)})
            if expr.value is None or isinstance(expr.value, int | float):
                return NOT_STRING
            return UNKNOWN
        if isinstance(expr, nodes.TemplateData):
            return frozenset({Value.text(expr.data)})
        if isinstance(expr, nodes.Name):
            return scope.lookup(expr.name)
        if isinstance(expr, nodes.Getattr):
            if ev(expr.node) == LOOP and expr.attr in LOOP_NUMBERS:
                return NOT_STRING
            return UNKNOWN
        if isinstance(expr, nodes.Getitem):
            return self._substring(ev(expr.node), expr.arg)
        if isinstance(expr, nodes.Concat):
            return combine(lambda *parts: "".join(parts), [ev(n) for n in expr.nodes])
        if isinstance(expr, nodes.Add):
            left, right = ev(expr.left), ev(expr.right)
            if left == NOT_STRING and right == NOT_STRING:
                return NOT_STRING
            return combine(lambda a, b: a + b, [left, right])
        if isinstance(expr, nodes.Mod):
            left = ev(expr.left)
            if left == NOT_STRING and ev(expr.right) == NOT_STRING:
                return NOT_STRING
            return self._percent(left, [expr.right], scope, memo)
        if isinstance(expr, nodes.Sub | nodes.Mul | nodes.Div | nodes.FloorDiv | nodes.Pow):
            both = ev(expr.left) == NOT_STRING and ev(expr.right) == NOT_STRING
            return NOT_STRING if both else UNKNOWN  # 'x' * n is a string of unknown length
        if isinstance(expr, nodes.Neg | nodes.Pos):
            return NOT_STRING if ev(expr.node) == NOT_STRING else UNKNOWN
        if isinstance(expr, nodes.Not | nodes.Compare | nodes.Test):
            return NOT_STRING
        if isinstance(expr, nodes.And | nodes.Or):  # Python's and/or return an operand
            return ev(expr.left) | ev(expr.right)
        if isinstance(expr, nodes.CondExpr):
            return ev(expr.expr1) | (ev(expr.expr2) if expr.expr2 is not None else NOT_STRING)
        if isinstance(expr, nodes.Dict):
            return DICT
        if isinstance(expr, nodes.MarkSafe | nodes.MarkSafeIfAutoescape):
            return ev(expr.expr)
        if isinstance(expr, nodes.Filter):
            return self._filter(expr, scope, memo, block)
        if isinstance(expr, nodes.Call):
            return self._call(expr, scope, memo)
        return UNKNOWN

    def _substring(self, receiver: Values, arg: nodes.Node) -> Values:
        """`'abc'[1]`, `'abc'[1:]` of a literal string; anything else is not folded."""
        strings = texts(receiver)
        if strings is None:
            return UNKNOWN
        if isinstance(arg, nodes.Const) and type(arg.value) is int:
            index = arg.value
            return frozenset(
                Value.text(s[index]) if -len(s) <= index < len(s) else Value(Kind.UNKNOWN)
                for s in strings
            )
        if isinstance(arg, nodes.Slice):
            try:
                start, stop, step = (_slice_bound(p) for p in (arg.start, arg.stop, arg.step))
            except _NotLiteral:
                return UNKNOWN
            if step == 0:
                return UNKNOWN
            return frozenset(Value.text(s[start:stop:step]) for s in strings)
        return UNKNOWN

    def _filter(
        self, expr: nodes.Filter, scope: Scope, memo: dict[int, Values], block: Values | None
    ) -> Values:
        if expr.node is None:
            inner = block if block is not None else UNKNOWN
        else:
            inner = self.evaluate(expr.node, scope, memo, block if _ends_in_block(expr) else None)
        name = expr.name
        args = [self.evaluate(a, scope, memo) for a in expr.args]
        if expr.dyn_args is not None or expr.dyn_kwargs is not None:
            return UNKNOWN
        if name in NUMBER_FILTERS:
            return NOT_STRING
        if name in ("default", "d"):
            return inner | (args[0] if args else frozenset({Value.text("")}))
        if expr.kwargs:
            return UNKNOWN
        if name in _CASE_FILTERS and not args:
            return combine(_CASE_FILTERS[name], [inner])
        if name in _SAME_TEXT_FILTERS and not args:
            return inner if texts(inner) is not None else UNKNOWN
        if name == "replace" and len(args) in (2, 3):
            try:
                count = _slice_bound(expr.args[2]) if len(args) == 3 else -1
            except _NotLiteral:
                return UNKNOWN
            if count is None:
                return UNKNOWN
            return combine(
                lambda s, old, new: _replace(s, old, new, count), [inner, args[0], args[1]]
            )
        if name == "join" and isinstance(expr.node, nodes.List | nodes.Tuple) and len(args) <= 1:
            parts = [self.evaluate(item, scope, memo) for item in expr.node.items]
            separator = args[0] if args else frozenset({Value.text("")})
            return combine(lambda sep, *p: sep.join(p), [separator, *parts])
        if name == "format":
            return self._percent(inner, list(expr.args), scope, memo)
        return UNKNOWN

    def _call(self, expr: nodes.Call, scope: Scope, memo: dict[int, Values]) -> Values:
        callee = expr.node
        if isinstance(callee, nodes.Name):
            return DICT if callee.name == "dict" and "dict" in self.callable_names else UNKNOWN
        if not isinstance(callee, nodes.Getattr) or expr.kwargs or expr.dyn_args:
            return UNKNOWN
        receiver = self.evaluate(callee.node, scope, memo)
        method = callee.attr
        if method == "format":
            return self._format(receiver, list(expr.args), scope, memo)
        args = [self.evaluate(a, scope, memo) for a in expr.args]
        if method in _CASE_METHODS and not args:
            return combine(_CASE_METHODS[method], [receiver])
        if method == "replace" and len(args) == 2:
            return combine(lambda s, old, new: _replace(s, old, new, -1), [receiver, *args])
        if method == "join" and len(args) == 1 and isinstance(expr.args[0], nodes.List):
            parts = [self.evaluate(item, scope, memo) for item in expr.args[0].items]
            return combine(lambda sep, *p: sep.join(p), [receiver, *parts])
        return UNKNOWN

    def _percent(
        self, template: Values, args: Sequence[nodes.Node], scope: Scope, memo: dict[int, Values]
    ) -> Values:
        literals = literal_values(args)
        if literals is None:
            return UNKNOWN

        def apply(fmt: str) -> str | None:
            if _LARGE_NUMBER.search(fmt):
                return None
            try:
                return fmt % tuple(literals)
            except (TypeError, ValueError, OverflowError, KeyError):
                return None

        return combine(apply, [template])

    def _format(
        self, template: Values, args: Sequence[nodes.Node], scope: Scope, memo: dict[int, Values]
    ) -> Values:
        literals = literal_values(args)
        if literals is None:
            return UNKNOWN

        def apply(fmt: str) -> str | None:
            if FORMAT_FIELD_ACCESS.search(fmt) or _LARGE_NUMBER.search(fmt):
                return None  # a field with . or [ is judged on its own; never evaluated here
            try:
                return fmt.format(*literals)
            except (IndexError, KeyError, ValueError, TypeError, OverflowError):
                return None

        return combine(apply, [template])


def combine(fold: Callable[..., str | None], operands: Sequence[Values]) -> Values:
    """`fold` over every combination of known strings; UNKNOWN when an operand is not all
    known strings, a combination fails, or there are too many combinations."""
    strings = [texts(v) for v in operands]
    if any(s is None for s in strings):
        return UNKNOWN
    count = 1
    for s in strings:
        count *= len(s or ())
        if count > MAX_VALUES:
            return UNKNOWN
    results = set()
    for combination in itertools.product(*(s or () for s in strings)):
        if sum(map(len, combination)) > MAX_TEXT:
            return UNKNOWN
        folded = fold(*combination)
        results.add(Value(Kind.UNKNOWN) if folded is None else Value.text(folded))
    return frozenset(results)


def literal_values(args: Sequence[nodes.Node]) -> list[str | int | float] | None:
    """Literal operands of `%` and `format` (small numbers only: widths come from them)."""
    values: list[str | int | float] = []
    for arg in args:
        if isinstance(arg, nodes.Const) and isinstance(arg.value, str | int | float):
            if isinstance(arg.value, int | float) and abs(arg.value) > 1000:
                return None
            values.append(arg.value)
        elif isinstance(arg, nodes.Tuple | nodes.List):
            inner = literal_values(list(arg.items))
            if inner is None:
                return None
            values.extend(inner)
        else:
            return None
    return values


def _replace(text: str, old: str, new: str, count: int) -> str | None:
    occurrences = text.count(old) if old else len(text) + 1
    if len(text) + occurrences * len(new) > MAX_TEXT:
        return None
    return text.replace(old, new, count)


class _NotLiteral(Exception):
    pass


def _slice_bound(node: nodes.Node | None) -> int | None:
    """A literal int, `-int`, or an absent / None bound; anything else is not folded."""
    if node is None or (isinstance(node, nodes.Const) and node.value is None):
        return None
    if isinstance(node, nodes.Const) and type(node.value) is int:
        return int(node.value)
    if isinstance(node, nodes.Neg) and isinstance(node.node, nodes.Const):
        if type(node.node.value) is int:
            return -int(node.node.value)
    raise _NotLiteral


def _ends_in_block(expr: nodes.Filter) -> bool:
    """Is the innermost operand of this filter chain the block's body (no operand)?"""
    node: nodes.Node | None = expr.node
    while isinstance(node, nodes.Filter):
        node = node.node
    return node is None
