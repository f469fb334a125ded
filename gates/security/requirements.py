"""What the model's environment files would make pip and conda install.

A deploy job that serves an MLflow model with `env_manager=virtualenv|uv|conda` (or builds its
image) installs whatever the artifact's `requirements.txt`, `python_env.yaml` and `conda.yaml`
say, with the deploy machine's credentials and network. Those files are written by whoever
logged the model, so they are attacker-controlled input: a package source or a package name is
as good as code. Every such file anywhere in the artifact is read (never executed, never
resolved against an index, no network); files named by `-r`/`-c` inside the artifact are read
too.

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
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from gates.base import Finding, Severity
from gates.security.common import Location, finding

MAX_ENV_FILE_BYTES = 5 * 1024**2
MIN_TYPOSQUAT_NAME_LEN = 5

# pip's requirement-file options (pip/_internal/req/req_file.py SUPPORTED_OPTIONS plus the
# per-requirement ones). pip parses them with optparse, which accepts any unambiguous prefix of
# a long option, so `--extra-index https://x` means `--extra-index-url`; we resolve the same way.
_LONG_OPTIONS = (
    "--index-url",
    "--extra-index-url",
    "--no-index",
    "--constraint",
    "--requirement",
    "--editable",
    "--find-links",
    "--no-binary",
    "--only-binary",
    "--prefer-binary",
    "--require-hashes",
    "--pre",
    "--trusted-host",
    "--use-feature",
    "--hash",
    "--config-settings",
    "--global-option",
)
_SHORT_OPTIONS = {
    "-i": "--index-url",
    "-f": "--find-links",
    "-c": "--constraint",
    "-r": "--requirement",
    "-e": "--editable",
}
_TAKES_VALUE = {
    "--index-url",
    "--extra-index-url",
    "--constraint",
    "--requirement",
    "--editable",
    "--find-links",
    "--no-binary",
    "--only-binary",
    "--trusted-host",
    "--use-feature",
    "--hash",
    "--config-settings",
    "--global-option",
}
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
_VCS = re.compile(r"^(git|hg|svn|bzr)\+|^git://", re.IGNORECASE)
_URL = re.compile(r"^[a-z][a-z0-9+.\-]*://", re.IGNORECASE)
_ARCHIVE = re.compile(r"\.(whl|zip|tar|tar\.gz|tgz|tar\.bz2|tbz|tar\.xz|txz)$", re.IGNORECASE)
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_COMMENT = re.compile(r"(^|\s+)#.*$")
_CONDA_DEP = re.compile(
    r"^\s*(?:(?P<channel>[^\s:]+)::)?(?P<name>[A-Za-z0-9_][A-Za-z0-9_.\-]*)\s*(?P<spec>.*)$"
)

_REQ_NAMES = re.compile(r"(requirements|constraints)[^/]*\.(txt|in)$", re.IGNORECASE)
_CONDA_NAMES = frozenset({"conda.yaml", "conda.yml", "environment.yaml", "environment.yml"})
_PYENV_NAMES = frozenset({"python_env.yaml", "python_env.yml"})


@dataclass(frozen=True)
class VulnerablePin:
    package: str
    specifier: SpecifierSet
    advisory: str
    summary: str
    rce: bool


def check_requirements(root: Path) -> list[Finding]:
    """All SEC-REQ findings for the environment files under `root` (symlinks not followed)."""
    scanner = _Scanner(root)
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or not scanner.inside(path):
            continue
        name = path.name.lower()
        if name in _CONDA_NAMES:
            scanner.conda_file(path)
        elif name in _PYENV_NAMES:
            scanner.python_env_file(path)
        elif _REQ_NAMES.search(name):
            scanner.requirements_file(path)
    return scanner.findings


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


# --- the scanner --------------------------------------------------------------------------


class _Scanner:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.findings: list[Finding] = []
        self._seen: set[Path] = set()

    def inside(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self.root)

    def _rel(self, path: Path) -> str:
        return path.resolve().relative_to(self.root).as_posix()

    def _add(
        self,
        rule: str,
        severity: Severity,
        message: str,
        where: Location,
        **evidence: Any,
    ) -> None:
        self.findings.append(finding(rule, severity, message, where, evidence))

    def _read(self, path: Path) -> str | None:
        where = Location(self._rel(path))
        if path.stat().st_size > MAX_ENV_FILE_BYTES:
            self._add(
                "SEC-REQ-005",
                Severity.HIGH,
                f"{where.file} is larger than {MAX_ENV_FILE_BYTES} bytes; not read",
                where,
                size=path.stat().st_size,
            )
            return None
        try:
            return path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            message = f"{where.file} is not UTF-8 text"
            self._add("SEC-REQ-005", Severity.HIGH, message, where, error=str(exc))
            return None

    # requirements.txt -------------------------------------------------------------------

    def requirements_file(self, path: Path) -> None:
        resolved = path.resolve()
        if resolved in self._seen:
            return
        self._seen.add(resolved)
        text = self._read(path)
        if text is None:
            return
        where = Location(self._rel(path))
        for lineno, line in _logical_lines(text):
            self.pip_line(line, where, lineno, base=path.parent)

    def pip_line(self, line: str, where: Location, lineno: int, base: Path) -> None:
        """One logical line of a pip requirements file (also a python_env/conda pip entry)."""
        args, options = _split_args_options(line)
        if args:
            self._requirement(args, where, lineno, base)
        if not options:
            return
        try:
            tokens = shlex.split(options)
        except ValueError:
            tokens = options.split()
        self._options(tokens, where, lineno, base)

    def _options(self, tokens: list[str], where: Location, lineno: int, base: Path) -> None:
        i = 0
        while i < len(tokens):
            token = tokens[i]
            option, value = _resolve_option(token)
            if option is None:
                self._add(
                    "SEC-REQ-005",
                    Severity.HIGH,
                    f"{where.file}:{lineno}: option {redact_url(token)!r} is not one pip's "
                    "requirement files accept, or is ambiguous; not checked",
                    where,
                    line=lineno,
                    option=redact_url(token),
                )
                return
            if option in _TAKES_VALUE and value is None:
                i += 1
                value = tokens[i] if i < len(tokens) else ""
            i += 1
            self._option(option, value or "", where, lineno, base)

    def _option(self, option: str, value: str, where: Location, lineno: int, base: Path) -> None:
        shown = redact_url(value)
        if option in _SOURCE_OVERRIDES:
            self._add(
                "SEC-REQ-001",
                Severity.HIGH,
                f"{where.file}:{lineno}: {option} {shown} changes where packages come from",
                where,
                line=lineno,
                option=option,
                value=shown,
            )
        elif option == "--editable":
            self._add(
                "SEC-REQ-002",
                Severity.HIGH,
                f"{where.file}:{lineno}: editable install {shown} is not a package from an index",
                where,
                line=lineno,
                kind="editable",
                requirement=shown,
            )
        elif option in {"--requirement", "--constraint"}:
            self._included_file(option, value, where, lineno, base)

    def _included_file(
        self, option: str, value: str, where: Location, lineno: int, base: Path
    ) -> None:
        shown = redact_url(value)
        if _URL.match(value) or value.lower().startswith("file:"):
            kind = "url"
        else:
            target = (base / value).resolve()
            if target.is_relative_to(self.root):
                if target.is_file():
                    self.requirements_file(target)
                return
            kind = "file"
        self._add(
            "SEC-REQ-002",
            Severity.HIGH,
            f"{where.file}:{lineno}: {option} {shown} reads requirements from outside the artifact",
            where,
            line=lineno,
            kind=kind,
            requirement=f"{option} {shown}",
        )

    def _requirement(self, text: str, where: Location, lineno: int, base: Path) -> None:
        shown = redact_url(text)
        kind = _direct_reference_kind(text) or ("file" if _looks_like_path(text) else None)
        req: Requirement | None = None
        if kind is None:
            try:
                req = Requirement(text)
            except InvalidRequirement as exc:
                self._add(
                    "SEC-REQ-005",
                    Severity.HIGH,
                    f"{where.file}:{lineno}: cannot parse requirement {shown!r}; not checked",
                    where,
                    line=lineno,
                    requirement=shown,
                    error=redact_url(str(exc)),
                )
                return
            else:
                kind = _direct_reference_kind(req.url) if req.url else None
        if kind is not None:
            self._add(
                "SEC-REQ-002",
                Severity.HIGH,
                f"{where.file}:{lineno}: {shown} is installed from a {_KIND_WORDS[kind]}, "
                "not from a package index",
                where,
                line=lineno,
                kind=kind,
                requirement=shown,
            )
        if req is not None:
            self._name_checks(req.name, _exact_pin(req.specifier), where, lineno, shown)

    def _name_checks(
        self, name: str, pinned: str | None, where: Location, lineno: int, shown: str
    ) -> None:
        target = typosquat_target(name)
        if target is not None:
            self._add(
                "SEC-REQ-003",
                Severity.HIGH,
                f"{where.file}:{lineno}: package {name!r} is one edit away from the popular "
                f"package {target!r} (possible typosquat)",
                where,
                line=lineno,
                package=name,
                looks_like=target,
                requirement=shown,
            )
        if pinned is None:
            return
        try:
            version = Version(pinned)
        except InvalidVersion:
            return
        canonical = canonicalize_name(name)
        for pin in vulnerable_pins():
            if pin.package == canonical and pin.specifier.contains(version, prereleases=True):
                self._add(
                    "SEC-REQ-004",
                    Severity.HIGH if pin.rce else Severity.MEDIUM,
                    f"{where.file}:{lineno}: {name}=={version} is affected by {pin.advisory} "
                    f"({pin.summary})",
                    where,
                    line=lineno,
                    package=name,
                    version=str(version),
                    advisory=pin.advisory,
                    affected=str(pin.specifier),
                    summary=pin.summary,
                    code_execution=pin.rce,
                )

    # python_env.yaml --------------------------------------------------------------------

    def python_env_file(self, path: Path) -> None:
        node = self._yaml(path)
        if node is None:
            return
        where = Location(self._rel(path))
        for key in ("build_dependencies", "dependencies"):
            for item in _sequence(_mapping_get(node, key)):
                self._pip_item(item, where, path.parent)

    def _pip_item(self, item: yaml.Node, where: Location, base: Path) -> None:
        lineno = item.start_mark.line + 1
        if isinstance(item, yaml.ScalarNode):
            line = _COMMENT.sub("", str(item.value)).strip()
            if line:
                self.pip_line(line, where, lineno, base)
        else:
            self._add(
                "SEC-REQ-005",
                Severity.HIGH,
                f"{where.file}:{lineno}: a pip entry that is not a string; not checked",
                where,
                line=lineno,
            )

    # conda.yaml -------------------------------------------------------------------------

    def conda_file(self, path: Path) -> None:
        node = self._yaml(path)
        if node is None:
            return
        where = Location(self._rel(path))
        for item in _sequence(_mapping_get(node, "channels")):
            if isinstance(item, yaml.ScalarNode):
                self._channel(str(item.value), where, item.start_mark.line + 1)
        for item in _sequence(_mapping_get(node, "dependencies")):
            if isinstance(item, yaml.ScalarNode):
                self._conda_dependency(str(item.value), where, item.start_mark.line + 1)
            elif isinstance(item, yaml.MappingNode):
                for pip_item in _sequence(_mapping_get(item, "pip")):
                    self._pip_item(pip_item, where, path.parent)
        variables = _mapping_get(node, "variables")
        if isinstance(variables, yaml.MappingNode):
            for key_node, value_node in variables.value:
                key = str(key_node.value)
                if _SOURCE_ENV_VARS.match(key):
                    value = redact_url(str(getattr(value_node, "value", "")))
                    lineno = key_node.start_mark.line + 1
                    self._add(
                        "SEC-REQ-001",
                        Severity.HIGH,
                        f"{where.file}:{lineno}: variable {key}={value} changes where packages "
                        "come from",
                        where,
                        line=lineno,
                        option=key,
                        value=value,
                    )

    def _channel(self, channel: str, where: Location, lineno: int) -> None:
        if channel.strip().lower() in _PUBLIC_CONDA_CHANNELS:
            return
        shown = redact_url(channel)
        self._add(
            "SEC-REQ-001",
            Severity.HIGH,
            f"{where.file}:{lineno}: conda channel {shown!r} is not a well-known public channel",
            where,
            line=lineno,
            option="channel",
            value=shown,
        )

    def _conda_dependency(self, text: str, where: Location, lineno: int) -> None:
        text = _COMMENT.sub("", text).strip()
        if not text:
            return
        match = _CONDA_DEP.match(text)
        if match is None or _URL.match(text) or _looks_like_path(text):
            self._add(
                "SEC-REQ-002",
                Severity.HIGH,
                f"{where.file}:{lineno}: conda dependency {redact_url(text)!r} is not a package "
                "name",
                where,
                line=lineno,
                kind="url" if _URL.match(text) else "file",
                requirement=redact_url(text),
            )
            return
        if match["channel"]:
            self._channel(match["channel"], where, lineno)
        spec = match["spec"].strip()
        pinned = spec[2:].strip() if spec.startswith("==") and "*" not in spec else None
        self._name_checks(match["name"], pinned, where, lineno, redact_url(text))

    # yaml -------------------------------------------------------------------------------

    def _yaml(self, path: Path) -> yaml.Node | None:
        text = self._read(path)
        if text is None:
            return None
        where = Location(self._rel(path))
        try:
            # compose, not load: we keep line numbers and never construct Python objects.
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            self._add(
                "SEC-REQ-005",
                Severity.HIGH,
                f"{where.file} is not valid YAML; not checked",
                where,
                error=str(exc).splitlines()[0],
            )
            return None
        if node is None:
            return None
        if not isinstance(node, yaml.MappingNode):
            self._add(
                "SEC-REQ-005",
                Severity.HIGH,
                f"{where.file} is not a YAML mapping; not checked",
                where,
            )
            return None
        return node


_KIND_WORDS = {
    "vcs": "version-control URL",
    "url": "direct URL",
    "file": "local path or file: URL",
    "editable": "editable checkout",
}


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """pip's preprocessing: join backslash continuations, drop comments, skip blanks."""
    pending: list[str] = []
    start = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = lineno
        if raw.endswith("\\"):
            pending.append(raw[:-1])
            continue
        pending.append(raw)
        line = _COMMENT.sub("", "".join(pending)).strip()
        pending = []
        if line:
            yield start, line
    if pending:
        line = _COMMENT.sub("", "".join(pending)).strip()
        if line:
            yield start, line


def _split_args_options(line: str) -> tuple[str, str]:
    """Split like pip's `break_args_options`: options start at the first token with '-'."""
    tokens = line.split(" ")
    for index, token in enumerate(tokens):
        if token.startswith("-"):
            return " ".join(tokens[:index]).strip(), " ".join(tokens[index:]).strip()
    return line.strip(), ""


def _resolve_option(token: str) -> tuple[str | None, str | None]:
    """Map a token to (canonical long option, inline value), accepting optparse's forms."""
    if token.startswith("--"):
        name, sep, value = token.partition("=")
        matches = [opt for opt in _LONG_OPTIONS if opt == name] or [
            opt for opt in _LONG_OPTIONS if opt.startswith(name)
        ]
        if len(matches) != 1:
            return None, None
        return matches[0], value if sep else None
    if token.startswith("-") and len(token) >= 2 and token[:2] in _SHORT_OPTIONS:
        option = _SHORT_OPTIONS[token[:2]]
        rest = token[2:]
        return option, (rest.removeprefix("=") if rest else None)
    return None, None


def _direct_reference_kind(text: str) -> str | None:
    lowered = text.strip().lower()
    if _VCS.match(lowered):
        return "vcs"
    if lowered.startswith("file:"):
        return "file"
    if _URL.match(lowered):
        return "url"
    return None


def _looks_like_path(text: str) -> bool:
    """pip treats an argument as a path when it has a separator, starts with '.', or is an
    archive name (pip/_internal/req/constructors.py); we mirror that rule."""
    head = text.split(";", 1)[0].strip()
    if "@" in head:  # PEP 508 `name @ url`: packaging parses it and we judge the URL
        return False
    return "/" in head or "\\" in head or head.startswith((".", "~")) or bool(_ARCHIVE.search(head))


def _exact_pin(specifier: SpecifierSet) -> str | None:
    specs = list(specifier)
    if len(specs) == 1 and specs[0].operator in {"==", "==="} and "*" not in specs[0].version:
        return specs[0].version
    return None


def _mapping_get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return value_node
    return None


def _sequence(node: yaml.Node | None) -> list[yaml.Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []
