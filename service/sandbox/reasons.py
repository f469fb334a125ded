"""Why a sandboxed model failed, in words a viewer may read: classified and row-free.

The model's own words (its exception's message, what it printed) can carry evaluation rows,
so they stay in the admin-only diagnostics. What a viewer gets instead is built here from a
fixed vocabulary and from names the gatekeeper itself knows:

- an exception's TYPE, only when it is on `EXCEPTION_TYPES` (builtin and common library
  classes), else "an exception"; never its message;
- column names the model reports (scikit-learn's `feature_names_in_`, the key of a
  `KeyError`) only when they are columns of the evaluation data the gatekeeper loaded, printable
  ASCII and at most `MAX_NAME_CHARS` long; any other name is counted, never shown;
- signature names (the MLmodel the security gate already read) shown the same bounded way.

So whatever a hostile model does, the most it can put in a published reason is a choice of
some of the data's own column names (shown in a fixed order), a count up to ten and one of a
few dozen exception type names.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

MAX_NAME_CHARS = 100
MAX_NAMES_SHOWN = 5  # per kind of reason; the rest are counted
MAX_COUNT_SHOWN = 10  # a count of names a model reported, shown up to this
MAX_REPORTED_NAMES = 10_000  # a longer list from the child is ignored

EXCEPTION_TYPES = frozenset(
    {
        # builtins
        "ArithmeticError",
        "AssertionError",
        "AttributeError",
        "EOFError",
        "FileNotFoundError",
        "FloatingPointError",
        "ImportError",
        "IndexError",
        "KeyError",
        "LookupError",
        "ModuleNotFoundError",
        "NameError",
        "NotImplementedError",
        "OSError",
        "OverflowError",
        "PermissionError",
        "RecursionError",
        "RuntimeError",
        "StopIteration",
        "SystemExit",
        "TypeError",
        "UnicodeDecodeError",
        "UnicodeEncodeError",
        "UnboundLocalError",
        "ValueError",
        "ZeroDivisionError",
        # libraries a model is loaded and scored with
        "MlflowException",
        "NotFittedError",
        "UnpicklingError",
        "PicklingError",
        "LinAlgError",
        "IntCastingNaNError",
        "InvalidIndexError",
        "XGBoostError",
        "LightGBMError",
        "CatBoostError",
        "GiskardImportError",
    }
)


def exception_type(name: Any) -> str:
    """The exception class's name when it is on the allow-list, else "an exception"."""
    return name if isinstance(name, str) and name in EXCEPTION_TYPES else "an exception"


def printable(name: Any) -> bool:
    """Short printable ASCII text: safe to show in a message and a page."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NAME_CHARS
        and all(" " <= ch <= "~" for ch in name)
    )


def quoted(name: str) -> str:
    """A name the gatekeeper knows, as a reason shows it (unprintable ones are not shown)."""
    return f"'{name}'" if printable(name) else "a column whose name is not printable"


def reported_names(value: Any) -> list[str] | None:
    """Column names the child reported, or None when they are not a plain list of text."""
    if not isinstance(value, list) or len(value) > MAX_REPORTED_NAMES:
        return None
    if not all(isinstance(v, str) for v in value):
        return None
    return list(value)


def _named(kind: str, names: Sequence[str]) -> list[str]:
    shown = [f"{kind} {quoted(n)}" for n in names[:MAX_NAMES_SHOWN]]
    if len(names) > MAX_NAMES_SHOWN:
        shown.append(f"{len(names) - MAX_NAMES_SHOWN} more {kind}(s)")
    return shown


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def input_reasons(
    *,
    sent: Sequence[str],
    known: Collection[str],
    fitted: Sequence[str] | None,
    missing_keys: Sequence[str] = (),
    report_unexpected: bool = True,
) -> list[str]:
    """What the model said about its columns, against what it was sent.

    `sent`: the columns the model got; `known`: the columns of the evaluation data the
    gatekeeper loaded (the only names a model-reported name may be shown as); `fitted`: the
    names the model says it was fitted on; `missing_keys`: names of `KeyError`s it raised
    (counted only when they are data columns it was not sent: a KeyError is not always a
    column).
    """
    given = set(sent)
    claimed = [*(fitted or []), *(k for k in missing_keys if k in known)]
    missing = _unique(n for n in claimed if n not in given)
    # sorted: the order a model reports names in would be one more thing it could choose
    shown = sorted(n for n in missing if n in known and printable(n))
    reasons = _named("missing input column", shown)
    unknown = len(missing) - len(shown)
    if unknown:
        count = str(unknown) if unknown <= MAX_COUNT_SHOWN else f"more than {MAX_COUNT_SHOWN}"
        reasons.append(
            f"the model expects {count} input column(s) the evaluation data does not have"
        )
    if fitted and report_unexpected:
        expected = set(fitted)
        extra = [n for n in sent if n not in expected and n in known and printable(n)]
        reasons += _named("unexpected column", extra)
    return reasons
