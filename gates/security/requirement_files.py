"""The environment files of a model artifact, read the way pip and conda read them.

`read_environment_files(root)` finds every `requirements*.txt|in` / `constraints*.txt|in`,
`conda.yaml` / `environment.yaml` and `python_env.yaml` under `root` (symlinks not followed)
and turns each into typed records of what its lines ask for: requirements (name, exact pin,
or the VCS / URL / local source they come from), pip options, conda channels, packages and
variables, and the lines or files that could not be read. Files named by `-r` / `-c` inside the
artifact are read in place, once; one outside it (or a URL) is an `ExternalInclude`.

Nothing is judged here (`gates.security.requirements` makes the findings), nothing is
resolved against an index and nothing is executed; YAML is composed, never constructed, so line
numbers survive and no Python object is built. Values are kept as written: credentials in URLs
are redacted by the judge before they reach a finding.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

import yaml
from packaging.requirements import InvalidRequirement as _InvalidRequirement
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from gates.security.common import Location

MAX_ENV_FILE_BYTES = 5 * 1024**2

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
_VCS = re.compile(r"^(git|hg|svn|bzr)\+|^git://", re.IGNORECASE)
URL = re.compile(r"^[a-z][a-z0-9+.\-]*://", re.IGNORECASE)
_ARCHIVE = re.compile(r"\.(whl|zip|tar|tar\.gz|tgz|tar\.bz2|tbz|tar\.xz|txz)$", re.IGNORECASE)
_COMMENT = re.compile(r"(^|\s+)#.*$")
_CONDA_DEP = re.compile(
    r"^\s*(?:(?P<channel>[^\s:]+)::)?(?P<name>[A-Za-z0-9_][A-Za-z0-9_.\-]*)\s*(?P<spec>.*)$"
)

_REQ_NAMES = re.compile(r"(requirements|constraints)[^/]*\.(txt|in)$", re.IGNORECASE)
_CONDA_NAMES = frozenset({"conda.yaml", "conda.yml", "environment.yaml", "environment.yml"})
_PYENV_NAMES = frozenset({"python_env.yaml", "python_env.yml"})

# Where a package comes from when it is not a package index.
SourceKind: TypeAlias = Literal["vcs", "url", "file"]


# --- records: files that could not be read -------------------------------------------------


@dataclass(frozen=True)
class TooLarge:
    where: Location
    size: int


@dataclass(frozen=True)
class NotUtf8:
    where: Location
    error: str


@dataclass(frozen=True)
class InvalidYaml:
    where: Location
    error: str  # first line of the YAML error


@dataclass(frozen=True)
class NotAMapping:
    where: Location


# --- records: pip lines (requirements files, python_env.yaml, conda's pip section) ----------


@dataclass(frozen=True)
class NonStringPipEntry:
    where: Location
    line: int


@dataclass(frozen=True)
class UnknownOption:
    """An option pip's requirement files do not accept, or an ambiguous prefix of several."""

    where: Location
    line: int
    token: str


@dataclass(frozen=True)
class PipOption:
    """A pip option (canonical long name) and its value ("" when it takes none)."""

    where: Location
    line: int
    option: str
    value: str


@dataclass(frozen=True)
class ExternalInclude:
    """`-r` / `-c` naming a URL (`kind="url"`) or a file outside the artifact (`"file"`)."""

    where: Location
    line: int
    option: str
    value: str
    kind: SourceKind


@dataclass(frozen=True)
class InvalidRequirement:
    where: Location
    line: int
    text: str
    error: str


@dataclass(frozen=True)
class PipRequirement:
    """A requirement. `source` when it does not come from an index (then `name` and `pinned`
    are None unless PEP 508 `name @ url` named it); `pinned` is the version of an exact pin."""

    where: Location
    line: int
    text: str
    source: SourceKind | None
    name: str | None
    pinned: str | None


# --- records: conda.yaml ------------------------------------------------------------------


@dataclass(frozen=True)
class CondaChannel:
    """A channel, from `channels:` or a `channel::package` dependency."""

    where: Location
    line: int
    channel: str


@dataclass(frozen=True)
class CondaPackage:
    where: Location
    line: int
    text: str
    name: str
    pinned: str | None


@dataclass(frozen=True)
class CondaNonPackage:
    """A dependency that is a URL or a local path, not a package name."""

    where: Location
    line: int
    text: str
    kind: SourceKind


@dataclass(frozen=True)
class CondaVariable:
    """An entry of `variables:` (environment variables set when the env is activated)."""

    where: Location
    line: int
    key: str
    value: str


EnvRecord: TypeAlias = (
    TooLarge
    | NotUtf8
    | InvalidYaml
    | NotAMapping
    | NonStringPipEntry
    | UnknownOption
    | PipOption
    | ExternalInclude
    | InvalidRequirement
    | PipRequirement
    | CondaChannel
    | CondaPackage
    | CondaNonPackage
    | CondaVariable
)


def read_environment_files(root: Path) -> list[EnvRecord]:
    """Records of every environment file under `root`, file by file in path order; a file
    included with `-r`/`-c` is read where it is included, and only once."""
    reader = _Reader(root)
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or not reader.inside(path):
            continue
        name = path.name.lower()
        if name in _CONDA_NAMES:
            reader.conda_file(path)
        elif name in _PYENV_NAMES:
            reader.python_env_file(path)
        elif _REQ_NAMES.search(name):
            reader.requirements_file(path)
    return reader.records


class _Reader:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.records: list[EnvRecord] = []
        self._seen: set[Path] = set()

    def inside(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self.root)

    def _where(self, path: Path) -> Location:
        return Location(path.resolve().relative_to(self.root).as_posix())

    def _read(self, path: Path) -> str | None:
        where = self._where(path)
        size = path.stat().st_size
        if size > MAX_ENV_FILE_BYTES:
            self.records.append(TooLarge(where, size))
            return None
        try:
            return path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            self.records.append(NotUtf8(where, str(exc)))
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
        where = self._where(path)
        for lineno, line in _logical_lines(text):
            self.pip_line(line, where, lineno, base=path.parent)

    def pip_line(self, line: str, where: Location, lineno: int, base: Path) -> None:
        """One logical line of a pip requirements file (also a python_env/conda pip entry)."""
        args, options = _split_args_options(line)
        if args:
            self.records.append(_requirement(args, where, lineno))
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
                self.records.append(UnknownOption(where, lineno, token))
                return
            if option in _TAKES_VALUE and value is None:
                i += 1
                value = tokens[i] if i < len(tokens) else ""
            i += 1
            if option in {"--requirement", "--constraint"}:
                self._included_file(option, value or "", where, lineno, base)
            else:
                self.records.append(PipOption(where, lineno, option, value or ""))

    def _included_file(
        self, option: str, value: str, where: Location, lineno: int, base: Path
    ) -> None:
        kind: SourceKind
        if URL.match(value) or value.lower().startswith("file:"):
            kind = "url"
        else:
            target = (base / value).resolve()
            if target.is_relative_to(self.root):
                if target.is_file():
                    self.requirements_file(target)
                return
            kind = "file"
        self.records.append(ExternalInclude(where, lineno, option, value, kind))

    # python_env.yaml --------------------------------------------------------------------

    def python_env_file(self, path: Path) -> None:
        node = self._yaml(path)
        if node is None:
            return
        where = self._where(path)
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
            self.records.append(NonStringPipEntry(where, lineno))

    # conda.yaml -------------------------------------------------------------------------

    def conda_file(self, path: Path) -> None:
        node = self._yaml(path)
        if node is None:
            return
        where = self._where(path)
        for item in _sequence(_mapping_get(node, "channels")):
            if isinstance(item, yaml.ScalarNode):
                self.records.append(CondaChannel(where, item.start_mark.line + 1, str(item.value)))
        for item in _sequence(_mapping_get(node, "dependencies")):
            if isinstance(item, yaml.ScalarNode):
                self._conda_dependency(str(item.value), where, item.start_mark.line + 1)
            elif isinstance(item, yaml.MappingNode):
                for pip_item in _sequence(_mapping_get(item, "pip")):
                    self._pip_item(pip_item, where, path.parent)
        variables = _mapping_get(node, "variables")
        if isinstance(variables, yaml.MappingNode):
            for key_node, value_node in variables.value:
                value = str(getattr(value_node, "value", ""))
                line = key_node.start_mark.line + 1
                self.records.append(CondaVariable(where, line, str(key_node.value), value))

    def _conda_dependency(self, text: str, where: Location, lineno: int) -> None:
        text = _COMMENT.sub("", text).strip()
        if not text:
            return
        match = _CONDA_DEP.match(text)
        if match is None or URL.match(text) or _looks_like_path(text):
            kind: SourceKind = "url" if URL.match(text) else "file"
            self.records.append(CondaNonPackage(where, lineno, text, kind))
            return
        if match["channel"]:
            self.records.append(CondaChannel(where, lineno, match["channel"]))
        spec = match["spec"].strip()
        pinned = spec[2:].strip() if spec.startswith("==") and "*" not in spec else None
        self.records.append(CondaPackage(where, lineno, text, match["name"], pinned))

    # yaml -------------------------------------------------------------------------------

    def _yaml(self, path: Path) -> yaml.Node | None:
        text = self._read(path)
        if text is None:
            return None
        where = self._where(path)
        try:
            # compose, not load: we keep line numbers and never construct Python objects.
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            self.records.append(InvalidYaml(where, str(exc).splitlines()[0]))
            return None
        if node is None:
            return None
        if not isinstance(node, yaml.MappingNode):
            self.records.append(NotAMapping(where))
            return None
        return node


def _requirement(text: str, where: Location, lineno: int) -> PipRequirement | InvalidRequirement:
    """A requirement argument: a direct source (VCS, URL, path), or PEP 508 parsed."""
    source = _direct_reference_kind(text) or ("file" if _looks_like_path(text) else None)
    if source is not None:
        return PipRequirement(where, lineno, text, source, None, None)
    try:
        req = Requirement(text)
    except _InvalidRequirement as exc:
        return InvalidRequirement(where, lineno, text, str(exc))
    source = _direct_reference_kind(req.url) if req.url else None
    return PipRequirement(where, lineno, text, source, req.name, _exact_pin(req.specifier))


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


def _direct_reference_kind(text: str) -> SourceKind | None:
    lowered = text.strip().lower()
    if _VCS.match(lowered):
        return "vcs"
    if lowered.startswith("file:"):
        return "file"
    if URL.match(lowered):
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
            found: yaml.Node = value_node
            return found
    return None


def _sequence(node: yaml.Node | None) -> list[yaml.Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []
