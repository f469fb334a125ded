"""Secrets in the artifact and its data: keys, tokens and passwords that must not ship.

A model artifact is copied to every machine that serves it and often to a public registry;
credentials baked into a notebook export, a config file, a pickled object's attributes or a
training-data column leak with it. This engine runs Yelp's detect-secrets 1.5 through its
Python API with all of its detectors (AWS keys, GitHub/GitLab/Slack/Stripe/OpenAI/... tokens,
private-key blocks, JWTs, basic-auth URLs, `password = ...` keywords, high-entropy strings)
over:

- text files (`scan_text_file`): line by line, with detect-secrets' file-type rules;
- strings pulled out of binary files (`extract_strings` + `scan_strings`): printable ASCII
  runs of at least 8 bytes, at most 16 MiB of them per file;
- string columns of the logged datasets (`scan_dataframe`): each distinct value once, mapped
  back to the rows that hold it.

Rules (stable ids):

- SEC-SECRET-001 HIGH: a secret. The finding names the detector ("AWS Access Key", "Private
  Key", ...), the file, the line (or column and rows, or the index of the extracted string)
  and `sha256_12`, the first 12 hex digits of the SHA-256 of the secret, so the same secret can
  be recognised across files and runs (for prefix-captured tokens such as `ghp_...` the whole
  token is hashed, for a private key its header and first 64 body characters, since
  detect-secrets itself reports only `ghp` or the `BEGIN ... PRIVATE KEY` header). It never
  contains the secret, not even a part of it.
- SEC-SECRET-002 MEDIUM: a column with more distinct values than `max_values_per_column`; the
  rest were not scanned (said, not silently skipped).

Offline by construction: detect-secrets' verification (which calls AWS, Slack, ... to test a
key) runs only when its `is_ignored_due_to_verification_policies` filter is configured; it is
removed here. Its `pragma: allowlist secret` filter is removed too: the author of the artifact
does not get to mark its own secrets as fine. High-entropy-string hits are dropped where the
string is plainly an identifier: a 32/40/64-digit hex string (UUIDs, run ids, git and content
digests, which MLmodel files are full of) or a value under an id/hash/digest key, unless the
line also mentions a key/token/secret/password. All other detectors are kept as they are.

detect-secrets keeps its settings in a process-wide singleton, so scans are serialised with a
lock. Cost: ~12 ms per small text file, ~0.2-0.4 ms per distinct column value (all ~25 plugins
per line), so a column is capped at `max_values_per_column` (default 50,000) distinct values.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from detect_secrets.core import scan as ds_scan
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.filters.heuristic import IGNORED_FILE_EXTENSIONS
from detect_secrets.settings import default_settings

from gates.base import Finding
from gates.security import rules
from gates.security.columns import is_text_column
from gates.security.common import Location

MAX_TEXT_BYTES = 64 * 1024**2
MAX_STRINGS_BYTES = 16 * 1024**2
_EVIDENCE_CAP = 20

_VERIFY_FILTER = "detect_secrets.filters.common.is_ignored_due_to_verification_policies"
_ALLOWLIST_FILTER = "detect_secrets.filters.allowlist.is_line_allowlisted"
_HIGH_ENTROPY_TYPES = frozenset({"Base64 High Entropy String", "Hex High Entropy String"})
_HEX_ID = re.compile(r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64})$")
_SECRET_WORD = re.compile(r"key|token|secret|passw|pwd|auth|credential|private", re.IGNORECASE)
_ID_KEY = re.compile(
    r"(?:uuid|(?:^|[_\-\s.])id|digest|hash|sha\d*|md5|checksum|etag|commit|revision)\W*[:=]",
    re.IGNORECASE,
)
_PEM_BODY = re.compile(r"(BEGIN [A-Z ]*PRIVATE KEY)-*\s*([A-Za-z0-9+/=\s]{16,})")
_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")

_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Hit:
    line: int  # 1-based line of the scanned text
    secret_type: str
    digest: str  # first 12 hex of sha256(secret)


def scan_text_file(
    path: Path, where: Location, *, max_bytes: int = MAX_TEXT_BYTES
) -> list[Finding]:
    """Secrets in one text file, by line. A file that is not UTF-8 text, or is larger than
    `max_bytes`, is scanned as extracted strings instead (never skipped)."""
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    text = _as_text(data[:max_bytes]) if len(data) <= max_bytes else None
    if text is None:
        return scan_strings(extract_strings(data[:max_bytes]), where)
    suffix = path.suffix.lower()
    # detect-secrets picks its keyword rules by extension and skips some extensions outright
    # (.lock, .map, ...); scan a private copy named so that nothing is skipped.
    name = "scan" + ("" if suffix in IGNORED_FILE_EXTENSIONS else suffix)
    hits = _detect_in_text(text, name)
    return _findings(hits, where, lambda lines: {"line": lines[0], "lines": lines})


def extract_strings(data: bytes, min_len: int = 8, max_total: int = MAX_STRINGS_BYTES) -> list[str]:
    """Printable-ASCII runs of at least `min_len` bytes, like `strings(1)`, up to `max_total`
    bytes of them in all."""
    out: list[str] = []
    total = 0
    for match in _strings_regex(min_len).finditer(data):
        run = match.group()
        if total + len(run) > max_total:
            run = run[: max_total - total]
            if len(run) >= min_len:
                out.append(run.decode("ascii"))
            break
        out.append(run.decode("ascii"))
        total += len(run)
    return out


def scan_strings(strings: Iterable[str], where: Location) -> list[Finding]:
    """Secrets in free-standing strings (e.g. from a binary file); evidence gives the index of
    the string in `strings`."""
    values = [_one_line(s) for s in strings]
    hits = _detect_in_text("\n".join(values) + "\n", "strings.properties")
    return _findings(
        hits, where, lambda lines: {"string_index": lines[0] - 1, "strings": _minus_one(lines)}
    )


def scan_batch(items: Iterable[tuple[Location, list[str], str]]) -> list[Finding]:
    """Many blobs in one detect-secrets pass. Each item is (where, lines, kind) with kind
    "text" (evidence: line numbers) or "strings" (evidence: string index).

    detect-secrets costs ~3 ms of set-up per call (settings cache busts, a temp file); an
    archive with thousands of small members would spend seconds on that alone.
    """
    items = [(where, [_one_line(v) for v in lines], kind) for where, lines, kind in items]
    items = [item for item in items if item[1]]
    if not items:
        return []
    starts: list[int] = []
    all_lines: list[str] = []
    for _, lines, _kind in items:
        starts.append(len(all_lines))
        all_lines.extend(lines)
    hits = _detect_in_text("\n".join(all_lines) + "\n", "strings.properties")
    by_item: dict[int, list[_Hit]] = {}
    for hit in hits:
        index = bisect.bisect_right(starts, hit.line - 1) - 1
        local = dataclasses.replace(hit, line=hit.line - starts[index])
        by_item.setdefault(index, []).append(local)
    findings: list[Finding] = []
    for index, item_hits in sorted(by_item.items()):
        where, _lines, kind = items[index]
        if kind == "text":
            findings += _findings(item_hits, where, lambda ls: {"line": ls[0], "lines": ls})
        else:
            findings += _findings(
                item_hits, where, lambda ls: {"string_index": ls[0] - 1, "strings": _minus_one(ls)}
            )
    return findings


def scan_dataframe(
    df: pd.DataFrame, where: Location, *, max_values_per_column: int = 50_000
) -> list[Finding]:
    """Secrets in the string columns of `df`; each finding names the column and the rows
    (index labels) that hold the secret."""
    findings: list[Finding] = []
    for column in df.columns:
        series = df[column]
        if not is_text_column(series):
            continue
        values = series.dropna()
        values = values[[not isinstance(v, float) for v in values]]  # numbers in object columns
        codes, uniques = pd.factorize(values.map(_cell_text), sort=False)
        if len(uniques) > max_values_per_column:
            findings.append(_partial(where, column, len(uniques), max_values_per_column))
            uniques = uniques[:max_values_per_column]
        if len(uniques) == 0:
            continue
        hits = _detect_in_text("\n".join(uniques) + "\n", "column.properties")
        positions = _positions_by_value(codes, {hit.line - 1 for hit in hits})
        for hit_group in _group(hits):
            where_rows = sorted({p for hit in hit_group for p in positions[hit.line - 1]})
            rows = [_json_label(values.index[p]) for p in where_rows]
            types = _types(hit_group)
            digest = hit_group[0].digest
            findings.append(
                rules.SECRET_FOUND.finding(
                    f"{types[0]} in {_where_text(where)} column {column!r}, row "
                    f"{rows[0]!r}{_more(len(rows))} (sha256:{digest})",
                    where,
                    {
                        "secret_type": types[0],
                        "detectors": types,
                        "sha256_12": digest,
                        "column": str(column),
                        "row": rows[0],
                        "rows": rows[:_EVIDENCE_CAP],
                        "occurrences": len(rows),
                    },
                )
            )
    return findings


# --- detect-secrets -------------------------------------------------------------------------


def _detect_in_text(text: str, name: str) -> list[_Hit]:
    """Run every detect-secrets plugin over `text`, written to a private temp file `name`."""
    # detect-secrets reads the file in text mode: only \n, \r\n and \r end a line.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    with tempfile.TemporaryDirectory(prefix="gk-secrets-") as tmp:
        path = Path(tmp) / name
        path.write_text(text, encoding="utf-8")
        with _LOCK, default_settings() as settings:
            settings.disable_filters(_VERIFY_FILTER, _ALLOWLIST_FILTER)
            # scan_file, not SecretsCollection: the collection keeps one entry per distinct
            # secret per file, and we want every line it occurs on.
            found = list(ds_scan.scan_file(str(path)))
    hits: list[_Hit] = []
    for secret in found:
        line = lines[secret.line_number - 1] if 0 < secret.line_number <= len(lines) else ""
        value = _full_secret(secret.type, secret.secret_value or "", line)
        if secret.type == "Private Key":
            following = lines[secret.line_number] if secret.line_number < len(lines) else ""
            value = _private_key_material(value, f"{line} {following}")
        if secret.type in _HIGH_ENTROPY_TYPES and _is_identifier(value, line):
            continue
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]
        hits.append(_Hit(secret.line_number, secret.type, digest))
    # A named detector (GitHub, Slack, ...) already reports its line; the entropy plugins'
    # overlapping capture of the same token would be a second finding for one secret.
    named_lines = {hit.line for hit in hits if hit.secret_type not in _HIGH_ENTROPY_TYPES}
    hits = [
        h for h in hits if h.secret_type not in _HIGH_ENTROPY_TYPES or h.line not in named_lines
    ]
    return sorted(set(hits), key=lambda h: (h.line, h.secret_type, h.digest))


def _full_secret(secret_type: str, value: str, line: str) -> str:
    """The whole token when detect-secrets reported only its prefix.

    Its regex plugins use `re.findall`, which returns the capture group when a pattern has one:
    for `(ghp|gho|...)_[A-Za-z0-9_]{36}` the "secret" is just `ghp`, so every GitHub token
    would get the same hash. Where the reported value is a leading group of a match on the
    line, the whole match is the secret. Groups that capture the secret in the middle of its
    context (AWS secret keys, basic-auth passwords) are left as reported.
    """
    for regex in _denylists().get(secret_type, ()):
        for match in regex.finditer(line):
            whole = match.group(0)
            if len(whole) > len(value) and whole.startswith(value) and value in match.groups():
                return whole
    return value


def _private_key_material(header: str, text: str) -> str:
    """detect-secrets reports only the `BEGIN ... PRIVATE KEY` header, the same for every key;
    hash the header with the first 64 base64 characters of the key body instead."""
    match = _PEM_BODY.search(text)
    if match is None:
        return header
    body = re.sub(r"\s", "", match.group(2))[:64]
    return f"{match.group(1)}{body}"


@lru_cache(maxsize=1)
def _denylists() -> dict[str, tuple[re.Pattern[str], ...]]:
    plugins: dict[str, Any] = get_mapping_from_secret_type_to_class()
    return {
        secret_type: tuple(getattr(plugin, "denylist", ()) or ())
        for secret_type, plugin in plugins.items()
    }


def _is_identifier(value: str, line: str) -> bool:
    if _SECRET_WORD.search(line) and not _ID_KEY.search(line):
        return False
    return bool(_HEX_ID.match(value)) or bool(_ID_KEY.search(line))


# --- findings -------------------------------------------------------------------------------


def _group(hits: list[_Hit]) -> Iterator[list[_Hit]]:
    """One group per distinct secret: detectors that fire on the same value (an AWS secret is
    also a keyword hit and a high-entropy string) make one finding, not three."""
    groups: dict[str, list[_Hit]] = {}
    for hit in hits:
        groups.setdefault(hit.digest, []).append(hit)
    yield from groups.values()


def _types(group: list[_Hit]) -> list[str]:
    """Detector names, most specific first (named detectors, then keyword, then entropy)."""
    names = {hit.secret_type for hit in group}
    return sorted(names, key=lambda t: (t in _HIGH_ENTROPY_TYPES, t == "Secret Keyword", t))


def _findings(
    hits: list[_Hit], where: Location, place: Callable[[list[int]], dict[str, Any]]
) -> list[Finding]:
    out = []
    for group in _group(hits):
        types = _types(group)
        digest = group[0].digest
        lines = sorted({hit.line for hit in group})
        evidence = {
            "secret_type": types[0],
            "detectors": types,
            "sha256_12": digest,
            **place(lines[:_EVIDENCE_CAP]),
            "occurrences": len(lines),
        }
        position = (
            f"line {lines[0]}" if "line" in evidence else f"string #{evidence['string_index']}"
        )
        out.append(
            rules.SECRET_FOUND.finding(
                f"{types[0]} in {_where_text(where)} {position}{_more(len(lines))} "
                f"(sha256:{digest})",
                where,
                evidence,
            )
        )
    return out


def _partial(where: Location, column: object, distinct: int, cap: int) -> Finding:
    return rules.SECRET_COLUMN_PARTIAL.finding(
        f"{_where_text(where)} column {column!r} has {distinct} distinct values; only the first "
        f"{cap} were scanned for secrets",
        where,
        {"column": str(column), "distinct_values": distinct, "scanned_values": cap},
    )


# --- helpers --------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _strings_regex(min_len: int) -> re.Pattern[bytes]:
    return re.compile(rb"[\x20-\x7e\t]{%d,}" % max(1, min_len))


def _as_text(data: bytes) -> str | None:
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def _one_line(value: str) -> str:
    return _LINE_BREAKS.sub(" ", value)


def _cell_text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return _one_line(bytes(value).decode("utf-8", errors="replace"))
    return _one_line(str(value))


def _positions_by_value(codes: npt.NDArray[np.intp], wanted: set[int]) -> dict[int, list[int]]:
    """Row positions holding each wanted distinct-value code."""
    if not wanted:
        return {}
    hit_positions = np.flatnonzero(np.isin(codes, sorted(wanted)))
    out: dict[int, list[int]] = {code: [] for code in wanted}
    for position in hit_positions.tolist():
        out[int(codes[position])].append(position)
    return out


def _json_label(label: Any) -> Any:
    if hasattr(label, "item"):
        label = label.item()
    return label if isinstance(label, int | str) else str(label)


def _minus_one(lines: list[int]) -> list[int]:
    return [line - 1 for line in lines]


def _where_text(where: Location) -> str:
    return where.file + (f"!/{where.member}" if where.member else "")


def _more(count: int) -> str:
    return f" (+{count - 1} more)" if count > 1 else ""
