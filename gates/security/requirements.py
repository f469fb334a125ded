"""What the model's environment files would make pip and conda install.

A deploy job that serves an MLflow model with `env_manager=virtualenv|uv|conda` (or builds its
image) installs whatever the artifact's `requirements.txt`, `python_env.yaml` and `conda.yaml`
say, with the deploy machine's credentials and network. Those files are written by whoever
logged the model, so they are attacker-controlled input: a package source or a package name is
as good as code. Every such file anywhere in the artifact is read (never executed, never
resolved against an index, no network); files named by `-r`/`-c` inside the artifact are read
too. `gates.security.requirement_files` reads them into typed records (a requirement, a pip
option, a conda channel, package or variable, a line or file it could not parse); this module
judges those records.

Rules (stable ids):

- SEC-REQ-001 HIGH: the package source is overridden. pip options `-i`/`--index-url`,
  `--extra-index-url`, `-f`/`--find-links`, `--trusted-host` (also in pip's abbreviated
  `--extra-index=` form, which pip's option parser accepts); conda channels other than the
  well-known public ones (a URL, a local path or any other anaconda.org channel, also as
  `channel::package`); conda `variables:` that set `PIP_INDEX_URL`, `UV_INDEX_URL`,
  `CONDA_CHANNELS` and friends. `--extra-index-url` is the dependency-confusion primitive:
  pip picks the highest version from any index.
- SEC-REQ-002 HIGH: a package that does not come from an index: VCS (`git+`, `hg+`, `svn+`,
  `bzr+`), direct URLs (`pkg @ https://...`, a bare URL to a wheel or sdist), local paths and
  `file:` URLs, `-e`/`--editable`, and `-r`/`-c` pointing at a URL or outside the artifact.
  What these install is whatever the URL serves on the day, and sdists run `setup.py`.
- SEC-REQ-003 HIGH: a probable typosquat: the PEP 503 normalized name is one edit
  (Damerau-Levenshtein distance 1: insert, delete, substitute, swap two neighbours) away from a
  popular ML package in `gates/security/data/popular_packages.txt`, and not itself on that
  list. Names under 5 characters are not compared (one edit from `jax` or `six` is a crowd of
  real packages). Typosquats of `numpy`, `requests`, `torch` and friends have been used to
  steal credentials on install (PyPI malware reports, e.g. `torchtriton` 2022, `pandass`).
- SEC-REQ-004 MEDIUM, HIGH when the advisory is code execution: an exact pin (`==X` /
  `===X`; conda `==X`) of a version named in `gates/security/data/vulnerable_pins.csv`
  (package, affected specifier, CVE id, summary; checked with `packaging.specifiers`). Ranges
  are not judged: what they resolve to is decided at install time.
- SEC-REQ-005 HIGH: a line or file we could not parse (an unknown pip option, a malformed
  requirement, invalid YAML, a file over 5 MiB). pip may read it differently than we do, so a
  line we did not understand is a line we did not check: fail closed.

Evidence names the file, the line and the requirement; passwords in URLs
(`https://user:token@host`) are replaced by `***` before they reach a finding.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import assert_never

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from gates.base import Finding, Severity
from gates.security import rules
from gates.security.common import Location
from gates.security.requirement_files import (
    MAX_ENV_FILE_BYTES,
    CondaChannel,
    CondaNonPackage,
    CondaPackage,
    CondaVariable,
    EnvRecord,
    ExternalInclude,
    InvalidRequirement,
    InvalidYaml,
    NonStringPipEntry,
    NotAMapping,
    NotUtf8,
    PipOption,
    PipRequirement,
    TooLarge,
    UnknownOption,
    read_environment_files,
)

MIN_TYPOSQUAT_NAME_LEN = 5

_SOURCE_OVERRIDES = {"--index-url", "--extra-index-url", "--find-links", "--trusted-host"}

# The channels conda itself ships with, plus the vendor channels ML stacks document.
_PUBLIC_CONDA_CHANNELS = frozenset(
    {"defaults", "nodefaults", "conda-forge", "anaconda", "main", "r", "msys2", "free"}
    | {"pytorch", "nvidia", "bioconda"}  # vendor channels
)
_SOURCE_ENV_VARS = re.compile(
    r"^(PIP_(INDEX_URL|EXTRA_INDEX_URL|FIND_LINKS|TRUSTED_HOST)|"
    r"UV_(INDEX_URL|EXTRA_INDEX_URL|INDEX|DEFAULT_INDEX|FIND_LINKS)|"
    r"CONDA_(CHANNELS|CHANNEL_ALIAS|DEFAULT_CHANNELS))$",
    re.IGNORECASE,
)
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_KIND_WORDS = {
    "vcs": "version-control URL",
    "url": "direct URL",
    "file": "local path or file: URL",
}


@dataclass(frozen=True)
class VulnerablePin:
    package: str
    specifier: SpecifierSet
    advisory: str
    summary: str
    rce: bool


def check_requirements(root: Path) -> list[Finding]:
    """All SEC-REQ findings for the environment files under `root` (symlinks not followed)."""
    return judge_environment(read_environment_files(root))


def judge_environment(records: Iterable[EnvRecord]) -> list[Finding]:
    """The findings for records read by `requirement_files`, in the order of the records."""
    return [hit for record in records for hit in _judge(record)]


# --- shipped data -------------------------------------------------------------------------


@lru_cache(maxsize=1)
def popular_packages() -> frozenset[str]:
    text = resources.files("gates.security").joinpath("data/popular_packages.txt").read_text()
    return frozenset(
        canonicalize_name(line.split("#", 1)[0].strip())
        for line in text.splitlines()
        if line.split("#", 1)[0].strip()
    )


@lru_cache(maxsize=1)
def vulnerable_pins() -> tuple[VulnerablePin, ...]:
    text = resources.files("gates.security").joinpath("data/vulnerable_pins.csv").read_text()
    return tuple(
        VulnerablePin(
            package=canonicalize_name(row["package"]),
            specifier=SpecifierSet(row["specifier"]),
            advisory=row["advisory"],
            summary=row["summary"],
            rce=row["rce"].strip().lower() == "true",
        )
        for row in csv.DictReader(io.StringIO(text))
    )


def typosquat_target(name: str) -> str | None:
    """The popular package `name` is one edit away from, or None (exact matches are None)."""
    canonical = canonicalize_name(name)
    popular = popular_packages()
    if canonical in popular:
        return None
    for target in sorted(popular):
        if len(target) >= MIN_TYPOSQUAT_NAME_LEN and _one_edit_apart(canonical, target):
            return target
    return None


def _one_edit_apart(a: str, b: str) -> bool:
    """Damerau-Levenshtein (optimal string alignment) distance exactly 1.

    Hand-written: no edit-distance library is installed, and for distance 1 a linear scan is
    simpler and faster than filling a full matrix.
    """
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diffs = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if len(diffs) == 1:
            return True
        first, *rest = diffs
        return rest == [first + 1] and a[first] == b[first + 1] and a[first + 1] == b[first]
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long_[k]), len(short))
    return short[i:] == long_[i + 1 :]


def redact_url(text: str) -> str:
    """Drop credentials from URLs (`https://user:token@host` -> `https://***@host`)."""
    return _USERINFO.sub("***@", text)


# --- the judge ----------------------------------------------------------------------------


def _judge(record: EnvRecord) -> Iterator[Finding]:
    match record:
        case TooLarge() | NotUtf8() | InvalidYaml() | NotAMapping():
            yield _unreadable_file(record)
        case NonStringPipEntry() | UnknownOption() | InvalidRequirement():
            yield _unparsed_line(record)
        case PipOption():
            yield from _pip_option(record)
        case ExternalInclude(where, line, option, value, kind):
            shown = redact_url(value)
            message = (
                f"{where.file}:{line}: {option} {shown} reads requirements from outside the "
                "artifact"
            )
            evidence = {"line": line, "kind": kind, "requirement": f"{option} {shown}"}
            yield rules.REQ_UNINDEXED_PACKAGE.finding(message, where, evidence)
        case PipRequirement():
            yield from _pip_requirement(record)
        case CondaChannel(where, line, channel):
            yield from _conda_channel(channel, where, line)
        case CondaNonPackage(where, line, text, kind):
            shown = redact_url(text)
            message = f"{where.file}:{line}: conda dependency {shown!r} is not a package name"
            evidence = {"line": line, "kind": kind, "requirement": shown}
            yield rules.REQ_UNINDEXED_PACKAGE.finding(message, where, evidence)
        case CondaPackage(where, line, text, name, pinned):
            yield from _name_checks(name, pinned, where, line, redact_url(text))
        case CondaVariable():
            yield from _conda_variable(record)
        case _:
            assert_never(record)


def _unreadable_file(record: TooLarge | NotUtf8 | InvalidYaml | NotAMapping) -> Finding:
    where = record.where
    if isinstance(record, TooLarge):
        message = f"{where.file} is larger than {MAX_ENV_FILE_BYTES} bytes; not read"
        return rules.REQ_UNPARSEABLE.finding(message, where, {"size": record.size})
    if isinstance(record, NotUtf8):
        message = f"{where.file} is not UTF-8 text"
        return rules.REQ_UNPARSEABLE.finding(message, where, {"error": record.error})
    if isinstance(record, InvalidYaml):
        message = f"{where.file} is not valid YAML; not checked"
        return rules.REQ_UNPARSEABLE.finding(message, where, {"error": record.error})
    message = f"{where.file} is not a YAML mapping; not checked"
    return rules.REQ_UNPARSEABLE.finding(message, where)


def _unparsed_line(record: NonStringPipEntry | UnknownOption | InvalidRequirement) -> Finding:
    where, line = record.where, record.line
    evidence: dict[str, object] = {"line": line}
    if isinstance(record, NonStringPipEntry):
        message = f"{where.file}:{line}: a pip entry that is not a string; not checked"
    elif isinstance(record, UnknownOption):
        evidence["option"] = shown = redact_url(record.token)
        message = (
            f"{where.file}:{line}: option {shown!r} is not one pip's requirement files "
            "accept, or is ambiguous; not checked"
        )
    else:
        evidence["requirement"] = shown = redact_url(record.text)
        evidence["error"] = redact_url(record.error)
        message = f"{where.file}:{line}: cannot parse requirement {shown!r}; not checked"
    return rules.REQ_UNPARSEABLE.finding(message, where, evidence)


def _pip_option(record: PipOption) -> Iterator[Finding]:
    where, line, option = record.where, record.line, record.option
    shown = redact_url(record.value)
    if option in _SOURCE_OVERRIDES:
        message = f"{where.file}:{line}: {option} {shown} changes where packages come from"
        evidence = {"line": line, "option": option, "value": shown}
        yield rules.REQ_SOURCE_OVERRIDE.finding(message, where, evidence)
    elif option == "--editable":
        message = f"{where.file}:{line}: editable install {shown} is not a package from an index"
        evidence = {"line": line, "kind": "editable", "requirement": shown}
        yield rules.REQ_UNINDEXED_PACKAGE.finding(message, where, evidence)


def _pip_requirement(record: PipRequirement) -> Iterator[Finding]:
    where, line = record.where, record.line
    shown = redact_url(record.text)
    if record.source is not None:
        message = (
            f"{where.file}:{line}: {shown} is installed from a {_KIND_WORDS[record.source]}, "
            "not from a package index"
        )
        evidence = {"line": line, "kind": record.source, "requirement": shown}
        yield rules.REQ_UNINDEXED_PACKAGE.finding(message, where, evidence)
    if record.name is not None:
        yield from _name_checks(record.name, record.pinned, where, line, shown)


def _conda_channel(channel: str, where: Location, line: int) -> Iterator[Finding]:
    if channel.strip().lower() in _PUBLIC_CONDA_CHANNELS:
        return
    shown = redact_url(channel)
    message = f"{where.file}:{line}: conda channel {shown!r} is not a well-known public channel"
    evidence = {"line": line, "option": "channel", "value": shown}
    yield rules.REQ_SOURCE_OVERRIDE.finding(message, where, evidence)


def _conda_variable(record: CondaVariable) -> Iterator[Finding]:
    if not _SOURCE_ENV_VARS.match(record.key):
        return
    where, line, key = record.where, record.line, record.key
    value = redact_url(record.value)
    message = f"{where.file}:{line}: variable {key}={value} changes where packages come from"
    evidence = {"line": line, "option": key, "value": value}
    yield rules.REQ_SOURCE_OVERRIDE.finding(message, where, evidence)


def _name_checks(
    name: str, pinned: str | None, where: Location, line: int, shown: str
) -> Iterator[Finding]:
    """A package name: a probable typosquat, and an exact pin of a known vulnerable version."""
    target = typosquat_target(name)
    if target is not None:
        message = (
            f"{where.file}:{line}: package {name!r} is one edit away from the popular "
            f"package {target!r} (possible typosquat)"
        )
        evidence = {"line": line, "package": name, "looks_like": target, "requirement": shown}
        yield rules.REQ_TYPOSQUAT.finding(message, where, evidence)
    if pinned is None:
        return
    try:
        version = Version(pinned)
    except InvalidVersion:
        return
    canonical = canonicalize_name(name)
    for pin in vulnerable_pins():
        if pin.package == canonical and pin.specifier.contains(version, prereleases=True):
            yield _vulnerable_pin(pin, name, version, where, line)


def _vulnerable_pin(
    pin: VulnerablePin, name: str, version: Version, where: Location, line: int
) -> Finding:
    message = (
        f"{where.file}:{line}: {name}=={version} is affected by {pin.advisory} ({pin.summary})"
    )
    evidence = {
        "line": line,
        "package": name,
        "version": str(version),
        "advisory": pin.advisory,
        "affected": str(pin.specifier),
        "summary": pin.summary,
        "code_execution": pin.rce,
    }
    severity = Severity.HIGH if pin.rce else Severity.MEDIUM
    return rules.REQ_VULNERABLE_PIN.finding(message, where, evidence, severity=severity)
