"""Rego modules evaluated in process with regopy (no OPA server, nothing on the network).

The gatekeeper's own module (default.rego) and a policy's modules share `package gatekeeper`;
the engine asks for `deny`, `warn` and `waived`. Anything that goes wrong (a module that
does not compile, a rule that errors at run time, an answer of the wrong shape) is a
`RegoError` naming the file and line where regopy or we can tell: the caller turns it into a
decision `error`, never a pass.

Built-in errors are errors here (`strict_built_in_errors`): by default Rego turns
`to_number("x")` into "undefined", which would silently drop a `deny`.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import ConfigError

DEFAULT_MODULE_PATH = Path(__file__).with_name("default.rego")
QUERY = "deny = data.gatekeeper.deny; warn = data.gatekeeper.warn; waived = data.gatekeeper.waived"


class RegoError(ConfigError):
    """A policy module failed to compile or to evaluate."""


@dataclass(frozen=True)
class RegoModule:
    """One Rego source file: where it came from (for messages) and its text."""

    path: str
    text: str

    @classmethod
    def read(cls, path: Path) -> RegoModule:
        try:
            return cls(str(path), path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise RegoError(f"{path}: cannot read Rego module: {exc}") from exc


DEFAULT_MODULE = RegoModule("gatekeeper/default.rego", DEFAULT_MODULE_PATH.read_text())


@dataclass(frozen=True)
class RegoOutcome:
    deny: list[str]
    warn: list[str]
    waived: list[dict[str, Any]]  # {"gate", "waivers", "message"} per gate let through


@dataclass
class _Compiled:
    """One set of modules compiled into a regopy bundle (~30 ms), queried many times (~1 ms).
    regopy's interpreter is not documented as thread-safe: one query at a time."""

    interpreter: Any
    bundle: Any
    lock: threading.Lock


@functools.lru_cache(maxsize=32)
def _compile(every: tuple[RegoModule, ...]) -> _Compiled:
    from regopy import Interpreter
    from regopy.rego_shared import RegoError as RegopyError

    for module in every:
        if not _PACKAGE.search(module.text):
            raise RegoError(
                f"{module.path}:1: a decision module must declare `package gatekeeper` (rules "
                "in another package would never be asked, and the module would seem to hold)"
            )
    interpreter = Interpreter()
    interpreter.strict_built_in_errors = True
    try:
        for module in every:
            interpreter.add_module(_module_name(module), module.text)
        bundle = interpreter.build(QUERY)
    except RegopyError as exc:
        raise RegoError(_located(str(exc), every, "does not compile")) from exc
    return _Compiled(interpreter, bundle, threading.Lock())


def evaluate(modules: tuple[RegoModule, ...], document: dict[str, Any]) -> RegoOutcome:
    """`deny`, `warn` and `waived` of the default module plus `modules` for this input."""
    from regopy.rego_shared import RegoError as RegopyError

    every = (DEFAULT_MODULE, *modules)
    compiled = _compile(every)
    # as a JSON term: regopy's `set_input` keeps strings unescaped and then prints a quote or
    # a backslash from the input raw into its answer, which is then no longer JSON
    term = json.dumps(document, allow_nan=False)
    try:
        with compiled.lock:
            compiled.interpreter.set_input_term(term)
            output = compiled.interpreter.query_bundle(compiled.bundle)
    except RegopyError as exc:
        raise RegoError(_located(str(exc), every, "failed at run time")) from exc
    except ValueError as exc:  # regopy could not print its own answer as JSON
        raise RegoError(f"the decision rules gave an answer regopy cannot read: {exc}") from exc
    if str(output) == "<error>":
        raw = _error_text(output.node())
        if _LOCATION.search(raw) is None:  # regopy gave no place: find the module and rule
            raw += "\n" + _failing_rule(modules, term)
        raise RegoError(_located(raw, every, "failed at run time"))
    if not output.ok():
        raise RegoError(
            "the decision rules gave no answer (is every module `package gatekeeper`, and are "
            "`deny` and `warn` sets?)"
        )
    deny, warn, waived = (output.binding(name) for name in ("deny", "warn", "waived"))
    return RegoOutcome(
        deny=_messages(deny, "deny"),
        warn=_messages(warn, "warn"),
        waived=[_waived(entry) for entry in _set(waived, "waived")],
    )


def check_modules(modules: tuple[RegoModule, ...]) -> None:
    """Compile the modules with the gatekeeper's own: what `gatekeeper serve` checks at start,
    so a module that cannot compile stops the service, naming the file and line. (What fails
    only at run time, on some input, is that run's decision `error`.)"""
    _compile((DEFAULT_MODULE, *modules))


# a rule's head starts a line: `deny contains msg if {`, `level := "a"`, `allowed(x) if ...`
_RULE_HEAD = re.compile(
    r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\b(?=[^\n]*(?::=|=|\bif\b|\bcontains\b|\{))", re.M
)


def _failing_rule(modules: tuple[RegoModule, ...], term: str) -> str:
    """A location regopy did not give (a built-in's error on an input value, a conflict):
    ask each module alone, then each of its rules, which one fails; `name|offset|0` of the
    first definition of that rule, in the form `_located` reads."""
    from regopy import Interpreter

    for module in modules:
        heads: dict[str, int] = {}
        for head in _RULE_HEAD.finditer(module.text):
            if head.group("name") not in ("package", "import", "default"):
                heads.setdefault(head.group("name"), head.start())
        for name, offset in heads.items():
            interpreter = Interpreter()
            interpreter.strict_built_in_errors = True
            interpreter.add_module(_module_name(DEFAULT_MODULE), DEFAULT_MODULE.text)
            interpreter.add_module(_module_name(module), module.text)
            interpreter.set_input_term(term)
            try:
                failed = str(interpreter.query(f"x = data.gatekeeper.{name}")) == "<error>"
            except Exception:  # this probe only looks for a place; the error stands anyway
                continue
            if failed:
                name_bytes = _module_name(module)
                byte_offset = len(module.text[:offset].encode())
                return f"{len(name_bytes)}:{name_bytes}|{byte_offset}|0"
    return ""


def _error_text(node: Any) -> str:
    """regopy's error tree as text: its S-expression print, found on the `error` children."""
    parts = [str(node.json())]
    for index in range(len(node)):
        parts.append(_error_text(node.at(index)))
    return "\n".join(parts)


def _module_name(module: RegoModule) -> str:
    """regopy names modules in its errors; a name without `|` keeps them parseable."""
    return module.path.replace("|", "_")


def _set(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    items = json.loads(value.json()) if hasattr(value, "json") else value
    if not isinstance(items, list):
        raise RegoError(f"`{name}` must be a set, the rules made it {type(items).__name__}")
    return items


def _messages(value: Any, name: str) -> list[str]:
    items = _set(value, name)
    if not all(isinstance(item, str) for item in items):
        raise RegoError(f"every `{name}` entry must be a message string")
    return sorted(items)


def _waived(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise RegoError("every `waived` entry must be an object")
    return {
        "gate": str(entry.get("gate", "")),
        "waivers": sorted(str(w) for w in entry.get("waivers") or []),
        "message": str(entry.get("message", "")),
    }


_PACKAGE = re.compile(r"^\s*package\s+gatekeeper\s*(#.*)?$", re.M)
# `8:bad.rego|59|2`: the name's length, the name, a byte offset and a length
_LOCATION = re.compile(r"\d+:(?P<file>[^\s|()]+)\|(?P<offset>\d+)\|(?P<length>\d+)")
_MESSAGE = re.compile(r"errormsg \d+:(?P<text>[^)\n]*)")


def _located(raw: str, modules: tuple[RegoModule, ...], what: str) -> str:
    """`file:line: message` from regopy's error tree (a byte offset into the module)."""
    by_name = {_module_name(m): m for m in modules}
    text = (m.group("text").strip() for m in _MESSAGE.finditer(raw))
    message = next(text, "") or raw.strip().splitlines()[0][:300]
    for match in _LOCATION.finditer(raw):
        module = by_name.get(match.group("file"))
        if module is not None:
            line = module.text.encode()[: int(match.group("offset"))].count(b"\n") + 1
            return f"{module.path}:{line}: Rego {what}: {message}"
    files = ", ".join(m.path for m in modules[1:]) or DEFAULT_MODULE.path
    return f"{files}: Rego {what}: {message}"
